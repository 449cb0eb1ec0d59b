import { existsSync, readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";

/**
 * What every simulated service shares: flags, JSON logs on stderr, clean-ups run once on
 * SIGTERM/SIGINT (exit 0) or a crash, the health switch file, --crash-after-s, and watching a
 * bitcoind over JSON-RPC. The image copies the whole sim/services directory
 * (test/support/podman.ts), so each service still runs as `node /sim/services/<name>.ts`.
 */

let SIM = "sim";
/** The service's name in every log line. */
export function simName(name: string): void {
  SIM = name;
}

export type FlagKind = "value" | "boolean" | "list";

export class Flags {
  readonly #values = new Map<string, string[]>();
  constructor(argv: readonly string[], known: Record<string, FlagKind>) {
    for (let i = 0; i < argv.length; i++) {
      const arg = argv[i] as string;
      if (!arg.startsWith("--")) usage(`unexpected argument ${JSON.stringify(arg)}`);
      const eq = arg.indexOf("=");
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      const kind = known[name];
      if (kind === undefined) usage(`unknown flag --${name}`);
      let value: string;
      if (eq !== -1) value = arg.slice(eq + 1);
      else if (kind === "boolean") value = "true";
      else {
        const next = argv[++i];
        if (next === undefined) usage(`--${name} needs a value`);
        value = next;
      }
      const list = this.#values.get(name) ?? [];
      if (kind !== "list") list.length = 0;
      list.push(value);
      this.#values.set(name, list);
    }
  }
  str(name: string): string | undefined {
    return this.#values.get(name)?.at(-1);
  }
  num(name: string, fallback: number): number {
    const v = this.str(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n)) usage(`--${name} must be a number`);
    return n;
  }
  bool(name: string): boolean {
    const v = this.str(name);
    return v !== undefined && v !== "false" && v !== "0";
  }
  list(name: string): string[] {
    return [...(this.#values.get(name) ?? [])];
  }
}

export function log(level: string, msg: string, extra: Record<string, unknown> = {}): void {
  process.stderr.write(`${JSON.stringify({ level, sim: SIM, msg, ...extra })}\n`);
}

export function usage(msg: string): never {
  log("error", msg, { code: "AGENTD_E_USAGE" });
  process.exit(2);
}

export const cleanups: (() => void)[] = [];
let exiting = false;
/** Runs the clean-ups (close servers, remove files) and exits at once. */
export function exit(code: number, why: string): void {
  if (exiting) return;
  exiting = true;
  log(code === 0 ? "info" : "error", why, { exitCode: code });
  for (const c of cleanups.splice(0).reverse()) {
    try {
      c();
    } catch {
      // best effort: exiting anyway
    }
  }
  process.exit(code);
}
process.on("SIGTERM", () => exit(0, "SIGTERM: stopping"));
process.on("SIGINT", () => exit(0, "SIGINT: stopping"));

/** The contents of the health switch file (trimmed), or null when it does not exist. */
export function unhealthyMode(path: string | undefined): string | null {
  if (path === undefined || !existsSync(path)) return null;
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return "";
  }
}

export function crashAfter(seconds: number): void {
  if (seconds > 0) {
    setTimeout(() => exit(1, `crashing as told (--crash-after-s ${seconds})`), seconds * 1000);
  }
}

// ---- bitcoind, as a service that needs it sees it (polled over JSON-RPC with its cookie) ----

export interface BitcoindView {
  readonly configured: boolean;
  readonly reachable: boolean;
  readonly blocks: number;
  readonly headers: number;
  readonly initialblockdownload: boolean;
  readonly error: string | null;
}

export function watchBitcoind(
  target: string | undefined,
  cookiePath: string | undefined,
  pollMs: number,
): () => BitcoindView {
  if (target === undefined) {
    return () => ({
      configured: false,
      reachable: false,
      blocks: 0,
      headers: 0,
      initialblockdownload: false,
      error: null,
    });
  }
  const colon = target.lastIndexOf(":");
  const host = colon === -1 ? target : target.slice(0, colon).replace(/^\[|\]$/g, "");
  const port = colon === -1 ? 8332 : Number(target.slice(colon + 1));
  let view: BitcoindView = {
    configured: true,
    reachable: false,
    blocks: 0,
    headers: 0,
    initialblockdownload: true,
    error: "not polled yet",
  };
  const fail = (error: string) => {
    view = { ...view, reachable: false, error };
  };
  const poll = () => {
    let auth = "";
    try {
      if (cookiePath !== undefined) auth = readFileSync(cookiePath, "utf8").trim();
    } catch (e) {
      fail(`cookie: ${(e as Error).message}`);
      return;
    }
    const body = JSON.stringify({
      jsonrpc: "1.0",
      id: "sim",
      method: "getblockchaininfo",
      params: [],
    });
    const req = httpRequest(
      {
        host,
        port,
        method: "POST",
        path: "/",
        timeout: Math.max(500, pollMs),
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          ...(auth === ""
            ? {}
            : { authorization: `Basic ${Buffer.from(auth).toString("base64")}` }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          if (res.statusCode !== 200) {
            fail(`HTTP ${res.statusCode}`);
            return;
          }
          try {
            const r = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
              result: { blocks: number; headers: number; initialblockdownload: boolean };
            };
            view = {
              configured: true,
              reachable: true,
              blocks: r.result.blocks,
              headers: r.result.headers,
              initialblockdownload: r.result.initialblockdownload,
              error: null,
            };
          } catch (e) {
            fail(`bad answer: ${(e as Error).message}`);
          }
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (e) => fail(e.message));
    req.end(body);
  };
  poll();
  const timer = setInterval(poll, pollMs);
  timer.unref();
  return () => view;
}
