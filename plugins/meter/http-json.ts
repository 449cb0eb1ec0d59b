/**
 * A generic HTTP JSON power meter (docs/drivers.md, "Power meters"): one GET, the reply
 * parsed strictly, the watts found at the spec's RFC 6901 pointer. Stock Antminers report no
 * power, so a meter is the only source of `measured` watts for them; its watts are those of
 * every miner in `feeds` together.
 *
 * Nothing is cached: every call is one request, so every reading is what the meter said now.
 *
 * Errors: the transport's own codes from the HTTP client, unchanged (a meter that does not
 * answer is AGENTD_E_MINER_UNREACHABLE or _TIMEOUT, one that sends too much
 * AGENTD_E_MINER_REPLY_TOO_LARGE, one that refuses the credentials AGENTD_E_MINER_AUTH), each
 * prefixed with the meter's id; everything wrong with what it said — a status other than 200,
 * text that is not strict JSON, nothing at the pointer, a value no meter reports — is
 * AGENTD_E_METER_READ. Messages name the meter's id and pointer, never its URL's password.
 */
import { type AgentdError, fail } from "../../lib/errors.ts";
import { parseJsonStrict } from "../../lib/json/strict-parse.ts";
import type { DriverContext, HttpJsonMeterSpec, MeterReading, MeterSpec } from "../driver.ts";
import { type HttpReply, httpSend, redactUrl } from "../http/client.ts";
import { transportError } from "./errors.ts";
import { resolvePointer } from "./pointer.ts";
import { readShelly } from "./shelly.ts";
import { toWatts } from "./watts.ts";

/**
 * Reads the meter once, as its kind says (the one entry the driver host calls).
 * `ctx.credentials`: the meter's, or none.
 */
export function readMeter(spec: MeterSpec, ctx: DriverContext): Promise<MeterReading> {
  return spec.kind === "shelly-gen2" ? readShelly(spec, ctx) : readHttpJson(spec, ctx);
}

async function readHttpJson(spec: HttpJsonMeterSpec, ctx: DriverContext): Promise<MeterReading> {
  let reply: HttpReply;
  try {
    reply = await httpSend("GET", spec.url, null, {
      timers: ctx.timers,
      maxReplyBytes: ctx.limits.maxReplyBytes,
      timeoutMs: ctx.limits.requestTimeoutMs,
      credentials: ctx.credentials,
      // Some meters speak nothing else; the password is the meter's own (docs/drivers.md).
      allowBasic: true,
      headers: { accept: "application/json" },
    });
  } catch (err) {
    throw transportError(spec, err);
  }
  if (reply.status !== 200) throw meterError(spec, `answered HTTP ${reply.status}, not 200`);

  let document: unknown;
  try {
    // Strict: NaN, a trailing comma, duplicate keys (which "apower" would win?) are refused.
    document = parseJsonStrict(reply.body);
  } catch (err) {
    const why = err instanceof Error ? err.message.slice(0, 200) : "unreadable";
    throw meterError(spec, `reply is not strict JSON (${why})`, err);
  }
  const found = resolvePointer(document, spec.pointer);
  if (!found.found) {
    throw meterError(spec, `nothing at pointer "${spec.pointer}": ${found.at}: ${found.why}`);
  }
  const w = toWatts(found.value, spec.scale ?? 1);
  if (!w.ok) throw meterError(spec, `the value at pointer "${spec.pointer}" is ${w.why}`);
  return Object.freeze({
    id: spec.id,
    // When the reply came: the reading is the meter's at that instant.
    at: ctx.clock.now(),
    watts: w.watts,
    provenance: "measured",
    feeds: spec.feeds,
  });
}

function meterError(spec: HttpJsonMeterSpec, why: string, cause?: unknown): AgentdError {
  return fail(
    "AGENTD_E_METER_READ",
    `meter ${spec.id}: ${why}`,
    { meter: spec.id, pointer: spec.pointer, url: redactUrl(spec.url) },
    cause,
  );
}
