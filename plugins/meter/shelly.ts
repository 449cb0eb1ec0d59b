/**
 * A Shelly Gen2+ smart plug or relay as a power meter (docs/drivers.md, "Power meters"): the
 * second meter kind, `shelly-gen2`. Chosen over Tasmota because its RPC is one documented
 * JSON API across the whole Gen2/Gen3/Gen4 line (Plus Plug S, Plus 1PM, Pro 4PM…), with digest
 * authentication (SHA-256, RFC 7616) rather than a password in the query string, and because
 * miners are commonly fed through its 16 A relays.
 *
 * `GET {url}/rpc/Switch.GetStatus?id={channel}` answers the Switch component's status
 * (shelly-api-docs.shelly.cloud, gen2 ComponentsAndServices/Switch): `id`, `output` (the
 * relay), `apower` (active power, W, measured by the device's metering chip), `voltage`,
 * `current`, `aenergy`. What is made of it:
 *
 * - `apower` is the reading: measured, ≥ 0, finite (watts.ts). A relay that is **off** reports
 *   0 W: that is a measurement (nothing flows to the miners), not a failure.
 * - no `apower` at all: a switch without power metering (a Plus 1, not a Plus 1PM) — it can
 *   never be a meter: AGENTD_E_METER_READ saying so.
 * - an `id` other than the channel asked for: another switch's status, refused.
 * - a JSON-RPC error object (`{"code":-105,"message":…}`, e.g. no such switch): refused with
 *   its code.
 * - authentication enabled: the device answers 401 with a SHA-256 digest challenge (user
 *   `admin`); the HTTP client answers it once from the meter's credentials. Basic is never
 *   answered: Shelly Gen2 does not speak it, so a Basic challenge is a downgrade.
 */
import { type AgentdError, fail } from "../../lib/errors.ts";
import { parseJsonStrict } from "../../lib/json/strict-parse.ts";
import type { DriverContext, MeterReading, ShellyMeterSpec } from "../driver.ts";
import { type HttpReply, httpSend, redactUrl } from "../http/client.ts";
import { transportError } from "./errors.ts";
import { describe } from "./pointer.ts";
import { toWatts } from "./watts.ts";

/** The request path for a switch: fixed by the device's RPC, never configuration's. */
export function shellyStatusUrl(spec: ShellyMeterSpec): string {
  const base = spec.url.replace(/\/+$/, "");
  return `${base}/rpc/Switch.GetStatus?id=${spec.channel ?? 0}`;
}

export async function readShelly(spec: ShellyMeterSpec, ctx: DriverContext): Promise<MeterReading> {
  const channel = spec.channel ?? 0;
  let reply: HttpReply;
  try {
    reply = await httpSend("GET", shellyStatusUrl(spec), null, {
      timers: ctx.timers,
      maxReplyBytes: ctx.limits.maxReplyBytes,
      timeoutMs: ctx.limits.requestTimeoutMs,
      credentials: ctx.credentials,
      headers: { accept: "application/json" },
    });
  } catch (err) {
    throw transportError(spec, err);
  }
  let doc: unknown;
  try {
    doc = parseJsonStrict(reply.body);
  } catch (err) {
    // A Shelly's reply is cJSON/mJSON output: anything not strict JSON is a broken reply.
    const why = err instanceof Error ? err.message.slice(0, 200) : "unreadable";
    if (reply.status !== 200) throw shellyError(spec, `answered HTTP ${reply.status}, not 200`);
    throw shellyError(spec, `reply is not strict JSON (${why})`, err);
  }
  const o = isRecord(doc) ? doc : null;
  if (o !== null && typeof o.code === "number" && typeof o.message === "string") {
    throw shellyError(spec, `RPC error ${o.code}: ${o.message.slice(0, 160)}`);
  }
  if (reply.status !== 200) throw shellyError(spec, `answered HTTP ${reply.status}, not 200`);
  if (o === null) throw shellyError(spec, `the status is ${describe(doc)}, not an object`);
  if (o.id !== channel) throw shellyError(spec, `the status is not switch ${channel}'s`);
  if (!Object.hasOwn(o, "apower")) {
    throw shellyError(spec, `switch ${channel} reports no "apower": it has no power metering`);
  }
  const w = toWatts(o.apower, 1);
  if (!w.ok) throw shellyError(spec, `"apower" is ${w.why}`);
  if (o.output === false && w.watts > 0) {
    // An open relay carries no current: watts through it mean the status is not to be believed.
    throw shellyError(spec, `the relay is off but "apower" says ${w.watts} W`);
  }
  return Object.freeze({
    id: spec.id,
    at: ctx.clock.now(),
    watts: w.watts,
    provenance: "measured",
    feeds: spec.feeds,
  });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function shellyError(spec: ShellyMeterSpec, why: string, cause?: unknown): AgentdError {
  return fail(
    "AGENTD_E_METER_READ",
    `meter ${spec.id}: ${why}`,
    { meter: spec.id, kind: "shelly-gen2", channel: spec.channel ?? 0, url: redactUrl(spec.url) },
    cause,
  );
}
