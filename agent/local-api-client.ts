import { request } from "node:http";
import { type AgentdError, ERROR_CODES, type ErrorCode, fail } from "../lib/errors.ts";

/**
 * The local API's client side (the CLI): one request over the unix socket, JSON both ways,
 * and the agent's error answer back as the AgentdError it was.
 */

type Json = Record<string, unknown>;

/** One request over the unix socket, JSON both ways. */
export function localApiRequest(
  socket: string,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
): Promise<{ readonly status: number; readonly json: Json }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        socketPath: socket,
        path,
        method,
        // One request, one connection: a pooled keep-alive socket to an agent that has since
        // restarted would fail the next request (EPIPE) for nothing.
        agent: false,
        headers:
          payload === undefined
            ? {}
            : {
                "content-type": "application/json",
                "content-length": String(Buffer.byteLength(payload)),
              },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          try {
            resolve({
              status: res.statusCode ?? 0,
              json: JSON.parse(Buffer.concat(chunks).toString("utf8")) as Json,
            });
          } catch (err) {
            reject(
              fail("AGENTD_E_HTTP", "the local API answered something that is not JSON", {}, err),
            );
          }
        });
      },
    );
    req.on("error", (err) =>
      reject(
        fail(
          "AGENTD_E_IO",
          `cannot reach the local agent at ${socket}: ${(err as Error).message} (is agentd run running? Name its state directory with --state-dir)`,
          { path: socket },
          err,
        ),
      ),
    );
    req.end(payload);
  });
}

/**
 * The local API's answer, or its error as an AgentdError (its code when it is one of ours):
 * what every CLI verb reading through the API does.
 */
export async function localApiGet(socket: string, path: string): Promise<Json> {
  const r = await localApiRequest(socket, "GET", path);
  if (r.status === 200) return r.json;
  throw apiError(r);
}

export function apiError(r: { readonly status: number; readonly json: Json }): AgentdError {
  const e = (r.json.error ?? {}) as { code?: unknown; message?: unknown };
  const message = typeof e.message === "string" ? e.message : `the local API answered ${r.status}`;
  // The agent's own code when it is one of ours (so the CLI's exit class is the agent's).
  if (typeof e.code === "string" && Object.hasOwn(ERROR_CODES, e.code)) {
    return fail(e.code as ErrorCode, message, { status: r.status });
  }
  return fail("AGENTD_E_HTTP", message, {
    status: r.status,
    code: typeof e.code === "string" ? e.code : null,
  });
}
