/**
 * The messages between the agent and the driver host, their types, and the checks each side
 * makes of what it receives (schemas.ts). One message is one line of JSON (README.md: why
 * pipes and not Node's IPC channel). A message that fails its check is never acted on:
 * `decode*` throws AGENTD_E_DRIVER_MESSAGE_INVALID whose message and context say where and
 * what was wrong, never the value (a password sent in the wrong field must not reach a log).
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import { AgentdError, type ErrorCode, type ErrorContext } from "../../lib/errors.ts";
import { parseJsonObjectStrict } from "../../lib/json/strict-parse.ts";
import type {
  Confirmed,
  Credentials,
  DriverLimits,
  Family,
  Identity,
  MeterReading,
  MeterSpec,
  MinerEndpoint,
  PoolTarget,
  PowerMode,
  Reading,
} from "../driver.ts";
import { ENVELOPE_SCHEMA, OPS, type Op, REQUEST_SCHEMAS, RESULT_SCHEMAS } from "./schemas.ts";

export type { Op } from "./schemas.ts";

/** One miner as a request names it; `auto` (detect only) lets the host find the family. */
export interface MinerSpec<F extends Family | "auto" = Family> {
  readonly family: F;
  readonly endpoint: MinerEndpoint;
  readonly credentials: Credentials | null;
  readonly limits: DriverLimits;
}

interface Base<O extends Op> {
  readonly v: 1;
  readonly id: number;
  readonly op: O;
}

export type Request =
  | Base<"ping">
  | (Base<"detect"> & { readonly miner: MinerSpec<Family | "auto"> })
  | (Base<"read" | "sleep" | "wake" | "reboot"> & { readonly miner: MinerSpec })
  | (Base<"setPools"> & {
      readonly miner: MinerSpec;
      readonly args: { readonly slots: readonly PoolTarget[] };
    })
  | (Base<"setPowerMode"> & {
      readonly miner: MinerSpec;
      readonly args: { readonly mode: PowerMode };
    })
  | (Base<"setPowerTarget"> & {
      readonly miner: MinerSpec;
      readonly args: { readonly watts: number };
    })
  | (Base<"meter"> & {
      readonly meter: MeterSpec;
      readonly credentials: Credentials | null;
      readonly limits: DriverLimits;
    });

/** What a successful reply carries, by op. */
export interface Results {
  ping: "pong";
  detect: Identity;
  read: Reading;
  sleep: Confirmed;
  wake: Confirmed;
  reboot: Confirmed;
  setPools: Confirmed;
  setPowerMode: Confirmed;
  setPowerTarget: Confirmed;
  meter: MeterReading;
}

export interface WireError {
  readonly code: ErrorCode;
  readonly message: string;
  readonly context: ErrorContext;
}

export type HostMessage =
  | { readonly type: "hello"; readonly v: 1; readonly pid: number }
  | {
      readonly type: "reply";
      readonly v: 1;
      readonly id: number;
      readonly ok: true;
      readonly result: unknown;
    }
  | {
      readonly type: "reply";
      readonly v: 1;
      readonly id: number;
      readonly ok: false;
      readonly error: WireError;
    };

/** Deep enough for a Reading (message → result → boards → temps); deeper is refused. */
const MAX_DEPTH = 8;

let ajv: Ajv2020 | undefined;
const compiled = new Map<unknown, ValidateFunction>();

/** Compiled on first use: the host needs the request schemas, the agent the replies'. */
function validator(schema: object): ValidateFunction {
  let v = compiled.get(schema);
  if (v === undefined) {
    ajv ??= new Ajv2020({
      strict: true,
      allErrors: false,
      allowUnionTypes: true,
      verbose: false,
      messages: false,
    });
    v = ajv.compile(schema);
    compiled.set(schema, v);
  }
  return v;
}

/**
 * Throws when `value` fails `schema`. The context carries the message's `id` when it has a
 * valid one, so that the request it answers (or asks) can be failed at once rather than left
 * to its deadline.
 */
function check(what: string, schema: object, value: unknown, idFrom: unknown = value): void {
  const v = validator(schema);
  if (v(value)) return;
  const e = v.errors?.[0];
  const where = e === undefined ? "" : pointerOf(e);
  throw invalid(`${what}: ${where === "" ? "(root)" : where}: ${e?.keyword ?? "invalid"}`, {
    message: what,
    pointer: where,
    keyword: e?.keyword ?? "unknown",
    id: idOf(idFrom),
  });
}

function pointerOf(e: ErrorObject): string {
  const p = e.params as { missingProperty?: string; additionalProperty?: string };
  const member = p.missingProperty ?? p.additionalProperty;
  return member === undefined ? e.instancePath : `${e.instancePath}/${member}`;
}

export function invalid(message: string, context: ErrorContext = {}): AgentdError {
  return new AgentdError("AGENTD_E_DRIVER_MESSAGE_INVALID", message, { context });
}

/** A line as a JSON object, refusing duplicate keys and deep nesting. */
export function parseLine(line: string): Record<string, unknown> {
  try {
    return parseJsonObjectStrict(line, { maxDepth: MAX_DEPTH });
  } catch (e) {
    const reason = e instanceof AgentdError ? e.code : "unparsable";
    throw invalid(`not a JSON object (${reason})`, { message: "line", keyword: reason });
  }
}

/** The host's check of what the agent sent. */
export function decodeRequest(line: string): Request {
  const value = parseLine(line);
  const op = value.op;
  if (typeof op !== "string" || !(OPS as readonly string[]).includes(op)) {
    throw invalid("request: /op: not a known operation", {
      message: "request",
      pointer: "/op",
      id: idOf(value),
    });
  }
  check(`request ${op}`, REQUEST_SCHEMAS[op as Op], value);
  return value as unknown as Request;
}

/** The agent's check of a message's envelope; the result is checked once its op is known. */
export function decodeHostMessage(line: string): HostMessage {
  const value = parseLine(line);
  check("host message", ENVELOPE_SCHEMA, value);
  return value as unknown as HostMessage;
}

/** The agent's check of a successful result against the op it asked for (request `id`). */
export function checkResult<O extends Op>(op: O, id: number, result: unknown): Results[O] {
  check(`${op} result`, RESULT_SCHEMAS[op], result, { id });
  return result as Results[O];
}

/** A message's id when it has a valid one, else null. */
function idOf(value: unknown): number | null {
  if (value === null || typeof value !== "object") return null;
  const id = (value as { id?: unknown }).id;
  return typeof id === "number" && Number.isSafeInteger(id) && id > 0 ? id : null;
}

export function encode(message: Request | HostMessage): string {
  return `${JSON.stringify(message)}\n`;
}
