/** A raw cgminer API client for tests: one request per connection, the reply as bytes. */
import { connect } from "node:net";

export interface RawReply {
  /** Everything the server sent before closing. */
  readonly raw: Buffer;
  /** The JSON text (without the NUL). */
  readonly text: string;
}

export function apiRequest(port: number, request: string): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port });
    const chunks: Buffer[] = [];
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("error", reject);
    s.on("end", () => {
      const raw = Buffer.concat(chunks);
      resolve({ raw, text: raw.toString("utf8").replace(/\0$/, "") });
      s.end();
    });
    s.write(request);
  });
}

export async function apiJson(port: number, command: string, parameter?: string) {
  const req = JSON.stringify(parameter === undefined ? { command } : { command, parameter });
  const r = await apiRequest(port, req);
  return JSON.parse(r.text) as Record<string, unknown> & {
    STATUS: { STATUS: string; Code: number; Msg: string; Description: string; When: number }[];
  };
}
