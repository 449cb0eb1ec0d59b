import type { IncomingMessage } from "node:http";
import { type ErrorCode, fail } from "../errors.ts";
import { parseJsonStrict } from "../json/strict-parse.ts";
import type { HttpErrorCodes } from "./errors.ts";

/**
 * The request body as strict JSON, bounded.
 *
 * - A declared `Content-Length` above the limit is refused before a byte is read; a chunked
 *   body is counted as it arrives and reading stops at the first byte past the limit (413, the
 *   server's `codes.tooLarge`). The server then answers with `Connection: close`, so Node does
 *   not drain the rest of an unbounded body to keep the connection alive.
 * - With `codes.unsupportedMedia`, a non-empty body must say `Content-Type: application/json` (a
 *   `charset` parameter may only be utf-8) and no `Content-Encoding` (nothing is decompressed:
 *   no zip bombs): 415 with that code. Without it the type is not looked at (the agent's local
 *   API: its clients are the CLI and scripts on the machine, which never had to send one).
 * - Bytes must be UTF-8 (a bad sequence is AGENTD_E_JSON_INVALID), parsed by the strict parser
 *   (duplicate members → AGENTD_E_JSON_DUPLICATE_KEY, and the other AGENTD_E_JSON_* codes).
 * - An empty body is `undefined`, and refused (400 AGENTD_E_SCHEMA) unless `optional`.
 * - A route without a body has limit 0: any body byte is 413.
 */

export const DEFAULT_BODY_LIMIT = 64 * 1024;

export interface BodyOptions {
  /** Largest accepted body in bytes. */
  readonly limit: number;
  /** Whether an empty body is accepted (as `undefined`). */
  readonly optional?: boolean;
  /** The server's codes for a body past the limit (413) and of the wrong type (415). */
  readonly codes: Pick<HttpErrorCodes, "tooLarge" | "unsupportedMedia">;
}

export async function readJsonBody(
  req: IncomingMessage,
  options: BodyOptions,
): Promise<unknown | undefined> {
  const { tooLarge, unsupportedMedia } = options.codes;
  const bytes = await readBounded(req, options.limit, tooLarge);
  if (bytes.length === 0) {
    if (options.optional === true || options.limit === 0) return undefined;
    throw fail("AGENTD_E_SCHEMA", "this endpoint needs a JSON body", {
      schema: "body",
      pointer: "",
    });
  }
  if (unsupportedMedia !== undefined) checkContentType(req, unsupportedMedia);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw fail("AGENTD_E_JSON_INVALID", "the body is not UTF-8", { position: 0 });
  }
  return parseJsonStrict(text);
}

function tooLarge(limit: number, code: ErrorCode) {
  return fail(
    code,
    limit === 0 ? "this endpoint takes no body" : `the body is larger than ${limit} bytes`,
    { limit },
  );
}

function checkContentType(req: IncomingMessage, code: ErrorCode): void {
  const encoding = req.headers["content-encoding"];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== "identity") {
    throw fail(code, "Content-Encoding is not supported");
  }
  const type = req.headers["content-type"] ?? "";
  const [media = "", ...params] = type.split(";").map((s) => s.trim().toLowerCase());
  const paramsOk = params.every((p) => p === "charset=utf-8" || p === 'charset="utf-8"');
  if (media !== "application/json" || !paramsOk) {
    throw fail(code, "Content-Type must be application/json");
  }
}

/** Reads at most `limit` bytes; stops listening (without draining) as soon as it is exceeded. */
function readBounded(req: IncomingMessage, limit: number, code: ErrorCode): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(tooLarge(limit, code));
  }
  if (req.readableEnded) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("aborted", onAborted);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.pause();
        reject(tooLarge(limit, code));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(fail("AGENTD_E_HTTP", "the request body could not be read", {}, e));
    };
    const onAborted = () => onError(new Error("aborted"));
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("aborted", onAborted);
  });
}
