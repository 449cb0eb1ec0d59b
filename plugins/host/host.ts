/**
 * The driver host: the process that runs the drivers (README.md in this folder), started by
 * the launcher as `agentd driver-host` under its own OS user, with an empty environment and
 * Node's permission model. It reads one request per line on stdin, runs it against a driver
 * made for that one miner, and writes one reply per line on stdout. It decides nothing and
 * keeps nothing: every request carries the miner, its credentials and its limits.
 *
 * Requests run concurrently (each miner's I/O is independent); replies go out in the order
 * they finish, matched by id. A request that fails its schema is answered with
 * AGENTD_E_DRIVER_MESSAGE_INVALID when its id can be read, and otherwise only logged.
 */
import type { Readable, Writable } from "node:stream";
import type { Clock } from "../../lib/clock.ts";
import { AgentdError, type ErrorCode, isAgentdError } from "../../lib/errors.ts";
import type { Logger } from "../../lib/log/logger.ts";
import type { Timers } from "../../lib/timers.ts";
import type { DriverContext, Family, MinerDriver, MinerEndpoint } from "../driver.ts";
import { readMeter } from "../meter/http-json.ts";
import { LineReader } from "./lines.ts";
import {
  decodeRequest,
  encode,
  type HostMessage,
  type Request,
  type WireError,
} from "./messages.ts";
import {
  HOST_ERROR_CODES,
  MAX_CONTEXT_KEYS,
  MAX_CONTEXT_STRING,
  MAX_ERROR_MESSAGE,
} from "./schemas.ts";

/** What the host needs of plugins/registry.ts (and what a test's fixture registry provides). */
export interface DriverRegistry {
  createDriver(family: Family, endpoint: MinerEndpoint, ctx: DriverContext): MinerDriver;
  detectFamily(endpoint: MinerEndpoint, ctx: DriverContext): Promise<Family>;
}

export interface HostOptions {
  readonly input: Readable;
  readonly output: Writable;
  readonly registry: DriverRegistry;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly logger: Logger;
  /** A request line longer than this ends the host (the agent never sends one). */
  readonly maxRequestBytes: number;
  readonly pid: number;
}

/** Runs until the agent closes stdin (its way of stopping the host), then resolves. */
export function runDriverHost(o: HostOptions): Promise<void> {
  const send = (m: HostMessage) => o.output.write(encode(m));
  const reply = (id: number, outcome: { result: unknown } | { error: WireError }) =>
    send(
      "result" in outcome
        ? { type: "reply", v: 1, id, ok: true, result: outcome.result }
        : { type: "reply", v: 1, id, ok: false, error: outcome.error },
    );

  const onLine = (line: string) => {
    let request: Request;
    try {
      request = decodeRequest(line);
    } catch (err) {
      const id = isAgentdError(err) ? err.context.id : undefined;
      // The code and where it failed; never the request (it may carry credentials).
      const why = isAgentdError(err) ? { code: err.code, ...err.context } : {};
      o.logger.warn({ ...why, why: err instanceof Error ? err.message : "" }, "request dropped");
      if (typeof id === "number") reply(id, { error: wireError(err) });
      return;
    }
    run(request, o).then(
      (result) => reply(request.id, { result }),
      (err: unknown) => reply(request.id, { error: wireError(err) }),
    );
  };

  return new Promise<void>((resolve, reject) => {
    const reader = new LineReader(o.maxRequestBytes, onLine, (bytes) => {
      reject(new AgentdError("AGENTD_E_DRIVER_MESSAGE_INVALID", `a request of ${bytes}+ bytes`));
    });
    o.input.on("data", (chunk: Buffer) => reader.push(chunk));
    o.input.once("end", () => resolve());
    o.input.once("error", reject);
    send({ type: "hello", v: 1, pid: o.pid });
  });
}

async function run(r: Request, o: HostOptions): Promise<unknown> {
  if (r.op === "ping") return "pong";
  if (r.op === "meter") {
    return readMeter(r.meter, {
      clock: o.clock,
      timers: o.timers,
      limits: r.limits,
      credentials: r.credentials,
    });
  }
  const ctx: DriverContext = {
    clock: o.clock,
    timers: o.timers,
    limits: r.miner.limits,
    credentials: r.miner.credentials,
  };
  const { endpoint } = r.miner;
  if (r.op === "detect") {
    const family =
      r.miner.family === "auto" ? await o.registry.detectFamily(endpoint, ctx) : r.miner.family;
    return o.registry.createDriver(family, endpoint, ctx).detect();
  }
  // A driver per request: drivers hold no state the next request needs, and a fresh one
  // cannot carry one miner's state (or credentials) into another's request.
  const driver = o.registry.createDriver(r.miner.family, endpoint, ctx);
  switch (r.op) {
    case "read":
      return driver.read();
    case "sleep":
      return driver.sleep();
    case "wake":
      return driver.wake();
    case "reboot":
      return driver.reboot();
    case "setPools":
      return driver.setPools(r.args.slots);
    case "setPowerMode":
      return driver.setPowerMode(r.args.mode);
    case "setPowerTarget":
      return driver.setPowerTarget(r.args.watts);
  }
}

/**
 * An error as the reply schema allows it: a code the host may answer with (a driver's other
 * errors, and anything not an AgentdError, are its bugs: AGENTD_E_INTERNAL), a bounded
 * message, a bounded flat context.
 */
export function wireError(err: unknown): WireError {
  if (isAgentdError(err) && HOST_ERROR_CODES.includes(err.code)) {
    return {
      code: err.code,
      message: clip(err.message, MAX_ERROR_MESSAGE),
      context: flat(err.context),
    };
  }
  const code: ErrorCode = "AGENTD_E_INTERNAL";
  const why = err instanceof Error ? err.message : String(err);
  return {
    code,
    message: clip(`driver failed: ${why}`, MAX_ERROR_MESSAGE),
    context: isAgentdError(err) ? { code: err.code } : {},
  };
}

function flat(context: Readonly<Record<string, unknown>>): WireError["context"] {
  const out: Record<string, string | number | boolean | null> = {};
  for (const [k, v] of Object.entries(context).slice(0, MAX_CONTEXT_KEYS)) {
    if (k.length > 64 || v === undefined) continue;
    if (typeof v === "string") out[k] = clip(v, MAX_CONTEXT_STRING);
    else if (typeof v === "number") out[k] = Number.isFinite(v) ? v : null;
    else if (typeof v === "boolean" || v === null) out[k] = v;
  }
  return out;
}

function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}
