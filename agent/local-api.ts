import { chmodSync, rmSync } from "node:fs";
import {
  createServer,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from "node:http";
import { fail, isAgentdError } from "../lib/errors.ts";
import { parseJsonStrict } from "../lib/json/strict-parse.ts";
import type { Logger } from "../lib/log/logger.ts";

/**
 * The agent's local API, first layer: HTTP on a unix socket (mode 0660: the agent's user and
 * group; no TCP, so no browser page can reach it), for the owner on the machine and the CLI.
 *
 *   GET  /v1/status        what `agentd status` shows
 *   POST /v1/revocations   an owner-signed revocation or decommission ({"document": JWS}),
 *                          applied through the policy guard as if the control plane had pushed
 *                          it: the owner can stop the machine with no control plane at all
 *                          (`agentd consent revoke --apply`)
 *
 * Errors are `{"error": {"code", "message"}}` with a stable code; bodies are at most 64 KiB
 * of strict JSON. Every document goes through the policy guard's checks like any other: the
 * socket's permissions say who may talk to it, the owner's signature says what it may do.
 */

export interface LocalApiHandlers {
  status(): Record<string, unknown>;
  /** Applies a revocation or decommission; what the policy guard answered. */
  revoke(jws: string): Promise<{ readonly accepted: boolean; readonly reasons: readonly string[] }>;
}

export interface LocalApi {
  readonly socket: string;
  close(): Promise<void>;
}

const MAX_BODY = 64 * 1024;

export async function startLocalApi(o: {
  readonly socket: string;
  readonly handlers: LocalApiHandlers;
  readonly logger: Logger;
}): Promise<LocalApi> {
  const server: Server = createServer((req, res) => {
    handle(req, res, o.handlers).catch((err: unknown) => {
      o.logger.error({ err }, "local API");
      reply(res, 500, { error: { code: "AGENTD_E_INTERNAL", message: "internal error" } });
    });
  });
  // A socket file left by a process that died: nothing listens on it any more.
  rmSync(o.socket, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.socket, () => {
      server.off("error", reject);
      resolve();
    });
  });
  chmodSync(o.socket, 0o660);
  let closed: Promise<void> | undefined;
  return {
    socket: o.socket,
    close: () => {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }).then(() => rmSync(o.socket, { force: true }));
      return closed;
    },
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, h: LocalApiHandlers) {
  const path = (req.url ?? "").split("?")[0];
  if (req.method === "GET" && path === "/v1/status") return reply(res, 200, h.status());
  if (req.method === "POST" && path === "/v1/revocations") {
    let document: unknown;
    try {
      const body = parseJsonStrict(await readBody(req)) as { document?: unknown } | null;
      document = body?.document;
      if (typeof document !== "string" || document === "") {
        throw fail("AGENTD_E_SCHEMA", 'the body must be {"document": "<JWS>"}');
      }
    } catch (err) {
      const code = isAgentdError(err) ? err.code : "AGENTD_E_SCHEMA";
      return reply(res, 400, { error: { code, message: (err as Error).message } });
    }
    const r = await h.revoke(document);
    return reply(res, r.accepted ? 200 : 422, { accepted: r.accepted, reasons: r.reasons });
  }
  return reply(res, 404, { error: { code: "AGENTD_E_CP_NOT_FOUND", message: "no such endpoint" } });
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(fail("AGENTD_E_CP_TOO_LARGE", `the body is larger than ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function reply(res: ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(text)),
    "cache-control": "no-store",
  });
  res.end(text);
}

/** A client of the local API (the CLI): one request, JSON both ways. */
export function localApiRequest(
  socket: string,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
): Promise<{ readonly status: number; readonly json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        socketPath: socket,
        path,
        method,
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
              json: JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>,
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
          `cannot reach the local agent at ${socket}: ${(err as Error).message} (is agentd run running?)`,
          { path: socket },
          err,
        ),
      ),
    );
    req.end(payload);
  });
}
