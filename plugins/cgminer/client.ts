/**
 * One request to a cgminer-family management API (TCP 4028; PROTOCOLS.md section 2): connect,
 * write one JSON request, read to EOF — bounded in bytes and in time —, repair the firmware's
 * quirks, and check the STATUS envelope. One connection per request, as the firmware wants.
 */
import { createConnection, type Socket } from "node:net";
import { AgentdError } from "../../lib/errors.ts";
import type { Timers } from "../../lib/timers.ts";
import { parseCgminerReply } from "./repair.ts";

export interface CgminerTarget {
  readonly host: string;
  readonly port: number;
}

export interface CgminerRequestOptions {
  readonly timers: Timers;
  readonly maxReplyBytes: number;
  readonly timeoutMs: number;
  /** Extra request fields: the S19's `new_api: true`. */
  readonly extra?: Readonly<Record<string, unknown>>;
  /** Injected for tests (undici's `connect`); Node's by default. */
  readonly connect?: (host: string, port: number) => Socket;
}

/** The STATUS[0] of a reply. */
export interface CgminerStatus {
  readonly STATUS: string;
  readonly Code: number | null;
  readonly Msg: string;
  readonly Description: string;
}

export interface CgminerReply {
  readonly status: CgminerStatus;
  /** The whole reply object, sections included. */
  readonly body: Readonly<Record<string, unknown>>;
}

/** cgminer's codes the drivers act on. */
export const CODE = Object.freeze({ INVALID_COMMAND: 14, ACCESS_DENIED: 45 });

/**
 * Sends `command` with `parameter` and returns the raw text (NUL and all). Rejects
 * AGENTD_E_MINER_UNREACHABLE (refused, reset before a whole reply), _TIMEOUT, _REPLY_TOO_LARGE.
 */
export async function cgminerRaw(
  target: CgminerTarget,
  command: string,
  parameter: string | null,
  o: CgminerRequestOptions,
): Promise<string> {
  const request: Record<string, unknown> = { command, ...o.extra };
  if (parameter !== null) request.parameter = parameter;
  const socket = (o.connect ?? ((h, p) => createConnection({ host: h, port: p })))(
    target.host,
    target.port,
  );
  return await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const done = (err: AgentdError | null, text?: string) => {
      if (settled) return;
      settled = true;
      // Cleared, not left to fire: a fleet read every 15 s must not pile up pending timers.
      o.timers.clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(text ?? "");
    };
    const where = `${target.host}:${target.port}`;
    const onAbort = () =>
      done(
        new AgentdError(
          "AGENTD_E_MINER_TIMEOUT",
          `${where} did not answer ${command} in ${o.timeoutMs} ms`,
          {
            context: { command },
          },
        ),
      );
    const timer = o.timers.setTimeout(onAbort, o.timeoutMs);
    socket.on("connect", () => socket.write(JSON.stringify(request)));
    socket.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > o.maxReplyBytes) {
        done(
          new AgentdError(
            "AGENTD_E_MINER_REPLY_TOO_LARGE",
            `${where} sent more than ${o.maxReplyBytes} bytes for ${command}: cut off unread`,
            { context: { command, limit: o.maxReplyBytes } },
          ),
        );
        return;
      }
      chunks.push(chunk);
      // The reply ends with a NUL; some builds then keep the socket open.
      if (chunk.at(-1) === 0) done(null, Buffer.concat(chunks).toString("utf8"));
    });
    socket.on("end", () => {
      if (size === 0) {
        done(
          new AgentdError(
            "AGENTD_E_MINER_UNREACHABLE",
            `${where} closed without answering ${command}`,
            {
              context: { command },
            },
          ),
        );
      } else done(null, Buffer.concat(chunks).toString("utf8"));
    });
    // A close with neither an end nor an error (a destroyed socket) is still an answer.
    socket.on("close", () =>
      done(
        new AgentdError("AGENTD_E_MINER_UNREACHABLE", `${where} closed during ${command}`, {
          context: { command },
        }),
      ),
    );
    socket.on("error", (err: NodeJS.ErrnoException) => {
      done(
        new AgentdError(
          "AGENTD_E_MINER_UNREACHABLE",
          `${where} ${command}: ${err.code ?? err.message}${size > 0 ? " mid-reply" : ""}`,
          { context: { command, errno: err.code ?? null } },
        ),
      );
    });
  });
}

/**
 * A request whose reply must be an envelope with STATUS "S" or "I" (or "W": a warning that
 * still carries data). Code 45 rejects AGENTD_E_MINER_ACCESS_DENIED, 14 _UNSUPPORTED, any
 * other error _REFUSED; a reply without the envelope _REPLY_INVALID.
 */
export async function cgminerRequest(
  target: CgminerTarget,
  command: string,
  parameter: string | null,
  o: CgminerRequestOptions,
): Promise<CgminerReply> {
  const raw = await cgminerRaw(target, command, parameter, o);
  return checkEnvelope(command, parseCgminerReply(raw));
}

export function checkEnvelope(command: string, parsed: unknown): CgminerReply {
  if (!isObject(parsed)) invalidReply(command, "not an object");
  const list = parsed.STATUS;
  // `restart`/`quit` answer a bare {"STATUS":"RESTART"} / "BYE"; the S19's `new_api` replies
  // carry STATUS as one object ({"STATUS":"S","when":…,"Msg":"stats","api_version":…}).
  const first = Array.isArray(list)
    ? list[0]
    : typeof list === "string"
      ? { STATUS: list }
      : isObject(list)
        ? list
        : null;
  if (!isObject(first) || typeof first.STATUS !== "string") invalidReply(command, "no STATUS");
  const status: CgminerStatus = {
    STATUS: first.STATUS,
    Code: typeof first.Code === "number" ? first.Code : null,
    Msg: typeof first.Msg === "string" ? first.Msg : "",
    Description: typeof first.Description === "string" ? first.Description : "",
  };
  if (status.STATUS === "E" || status.STATUS === "F") {
    const context = { command, code: status.Code, firmware_message: status.Msg };
    if (status.Code === CODE.ACCESS_DENIED) {
      throw new AgentdError("AGENTD_E_MINER_ACCESS_DENIED", `${command}: access denied (45)`, {
        context,
      });
    }
    if (status.Code === CODE.INVALID_COMMAND) {
      throw new AgentdError(
        "AGENTD_E_MINER_UNSUPPORTED",
        `${command}: the firmware has no such command (14)`,
        {
          context,
        },
      );
    }
    throw new AgentdError(
      "AGENTD_E_MINER_REFUSED",
      `${command}: ${status.Msg || "error"} (${status.Code})`,
      {
        context,
      },
    );
  }
  return { status, body: parsed };
}

/** The rows of a section (`SUMMARY`, `POOLS`, `STATS`), or AGENTD_E_MINER_REPLY_INVALID. */
export function section(reply: CgminerReply, name: string): readonly Record<string, unknown>[] {
  const rows = reply.body[name];
  if (!Array.isArray(rows)) invalidReply(name.toLowerCase(), `no ${name} section`);
  return rows.filter(isObject);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function invalidReply(command: string, why: string): never {
  throw new AgentdError("AGENTD_E_MINER_REPLY_INVALID", `${command}: ${why}`, {
    context: { command },
  });
}

/** cgminer's parameter separator is `,`; a comma inside a value is escaped with `\`. */
export function cgminerParams(values: readonly string[]): string {
  return values.map((v) => v.replaceAll("\\", "\\\\").replaceAll(",", "\\,")).join(",");
}
