/** `HOST:PORT` (IPv6 as `[::1]:3333`), as `--listen` and reconnect targets take it. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export function parseHostPort(text: string): HostPort | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[3]);
  const host = m[1] ?? m[2];
  if (host === undefined || host === "" || port > 65535) return undefined;
  return { host, port };
}
