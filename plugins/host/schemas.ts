/**
 * The JSON Schemas (2020-12) of every message between the agent and the driver host
 * (README.md in this folder). Each side validates what it receives: the host every request,
 * the agent every reply and each result against what it asked for. Every object is closed
 * (`additionalProperties: false`) and every string and array bounded, so that a compromised
 * host can send nothing the agent's types do not describe, nor make one reply cost more than
 * its size.
 */
import { ERROR_CODES } from "../../lib/errors.ts";
import { FAMILIES } from "../driver.ts";

const str = (maxLength: number, minLength = 0) => ({ type: "string", minLength, maxLength });
const int = (minimum: number, maximum: number) => ({ type: "integer", minimum, maximum });
const num = { type: "number" } as const;
const numOrNull = { type: ["number", "null"] } as const;
const closed = (properties: Record<string, unknown>, required = Object.keys(properties)) => ({
  type: "object",
  additionalProperties: false,
  required,
  properties,
});
const list = (items: unknown, maxItems: number) => ({ type: "array", maxItems, items });

const SUPPORT = { enum: ["yes", "no", "not_owned"] };
const POWER_MODES = ["normal", "low", "high"];
const PROVENANCE = ["measured", "estimated"];
const ACTIONS = ["setPools", "sleep", "wake", "setPowerMode", "setPowerTarget", "reboot"];

/** A request id: the agent counts from 1; 2^53 is never reached. */
const ID = int(1, Number.MAX_SAFE_INTEGER);

// ---- what the agent sends -------------------------------------------------------------

const ENDPOINT = closed(
  {
    host: str(253, 1),
    apiPort: int(1, 65535),
    webPort: int(1, 65535),
    grpcPort: int(1, 65535),
  },
  ["host"],
);
const CREDENTIALS = {
  anyOf: [{ type: "null" }, closed({ username: str(256, 1), password: str(1024) })],
};
const LIMITS = closed({
  maxReplyBytes: int(1, 64 * 1024 * 1024),
  requestTimeoutMs: int(1, 600_000),
  confirmDeadlineMs: int(0, 3_600_000),
  confirmIntervalMs: int(1, 600_000),
});
const miner = (families: readonly string[]) =>
  closed({
    family: { enum: families },
    endpoint: ENDPOINT,
    credentials: CREDENTIALS,
    limits: LIMITS,
  });
const request = (op: string, extra: Record<string, unknown>) =>
  closed({ v: { const: 1 }, id: ID, op: { const: op }, ...extra });

const POOL_TARGET = closed({ url: str(512, 1), user: str(512), password: str(512) });

/** A meter as plugins/meter/spec.ts allows it (the agent parsed it already; checked again). */
const METER_URL = { type: "string", minLength: 8, maxLength: 2048, pattern: "^https?://" };
const HTTP_JSON_METER = closed(
  {
    kind: { const: "http-json" },
    id: str(64, 1),
    url: METER_URL,
    pointer: str(512),
    feeds: list(str(128, 1), 4096),
    scale: { type: "number", exclusiveMinimum: 0 },
  },
  ["id", "url", "pointer", "feeds"],
);
/** A Shelly Gen2+ switch (plugins/meter/shelly.ts). */
const SHELLY_METER = closed(
  {
    kind: { const: "shelly-gen2" },
    id: str(64, 1),
    url: METER_URL,
    channel: int(0, 255),
    feeds: list(str(128, 1), 4096),
  },
  ["kind", "id", "url", "feeds"],
);
const METER = { anyOf: [HTTP_JSON_METER, SHELLY_METER] };

export const REQUEST_SCHEMAS = {
  ping: request("ping", {}),
  detect: request("detect", { miner: miner([...FAMILIES, "auto"]) }),
  read: request("read", { miner: miner(FAMILIES) }),
  sleep: request("sleep", { miner: miner(FAMILIES) }),
  wake: request("wake", { miner: miner(FAMILIES) }),
  reboot: request("reboot", { miner: miner(FAMILIES) }),
  setPools: request("setPools", {
    miner: miner(FAMILIES),
    args: closed({ slots: list(POOL_TARGET, 8) }),
  }),
  setPowerMode: request("setPowerMode", {
    miner: miner(FAMILIES),
    args: closed({ mode: { enum: POWER_MODES } }),
  }),
  setPowerTarget: request("setPowerTarget", {
    miner: miner(FAMILIES),
    args: closed({ watts: { type: "number", exclusiveMinimum: 0, maximum: 100_000 } }),
  }),
  meter: request("meter", { meter: METER, credentials: CREDENTIALS, limits: LIMITS }),
} as const;

// ---- what the host sends --------------------------------------------------------------

/** The codes a host may answer with: a miner's, a meter's, a refused request, a driver's bug. */
export const HOST_ERROR_CODES: readonly string[] = Object.keys(ERROR_CODES).filter(
  (c) =>
    c.startsWith("AGENTD_E_MINER_") ||
    c === "AGENTD_E_METER_READ" ||
    c === "AGENTD_E_DRIVER_MESSAGE_INVALID" ||
    c === "AGENTD_E_INTERNAL",
);

export const MAX_ERROR_MESSAGE = 1024;
export const MAX_CONTEXT_KEYS = 16;
export const MAX_CONTEXT_STRING = 512;

const ERROR = closed({
  code: { enum: HOST_ERROR_CODES },
  message: str(MAX_ERROR_MESSAGE),
  context: {
    type: "object",
    maxProperties: MAX_CONTEXT_KEYS,
    propertyNames: { maxLength: 64 },
    additionalProperties: {
      anyOf: [str(MAX_CONTEXT_STRING), { type: ["number", "boolean", "null"] }],
    },
  },
});

export const ENVELOPE_SCHEMA = {
  oneOf: [
    closed({ type: { const: "hello" }, v: { const: 1 }, pid: int(1, 2 ** 31) }),
    closed({ type: { const: "reply" }, v: { const: 1 }, id: ID, ok: { const: true }, result: {} }),
    closed({
      type: { const: "reply" },
      v: { const: 1 },
      id: ID,
      ok: { const: false },
      error: ERROR,
    }),
  ],
};

const CAPABILITIES = closed({
  pools: SUPPORT,
  sleep: SUPPORT,
  powerModes: list({ enum: POWER_MODES }, 3),
  powerTarget: { anyOf: [{ type: "null" }, closed({ minW: num, maxW: num })] },
  reboot: SUPPORT,
  power: { enum: [...PROVENANCE, "none"] },
});

const IDENTITY = closed({
  family: { enum: FAMILIES },
  model: str(128),
  firmware: str(256),
  mac: { anyOf: [{ type: "null" }, { type: "string", pattern: "^[0-9a-f]{2}(:[0-9a-f]{2}){5}$" }] },
  serial: { anyOf: [{ type: "null" }, str(128)] },
  capabilities: CAPABILITIES,
  verifiedOnHardware: { type: "boolean" },
});

const temps = list(num, 256);
const READING = closed({
  at: num,
  hashrateGhs: numOrNull,
  boards: list(
    closed({
      index: int(0, 255),
      hashrateGhs: numOrNull,
      chips: { anyOf: [{ type: "null" }, int(0, 100_000)] },
      pcbTempC: temps,
      chipTempC: temps,
    }),
    16,
  ),
  fans: list(closed({ index: int(0, 255), rpm: num }), 16),
  power: {
    anyOf: [
      { type: "null" },
      closed({ watts: num, provenance: { enum: PROVENANCE }, source: str(128) }),
    ],
  },
  mode: { enum: ["normal", "sleep", "low", "high", "unknown"] },
  pools: list(
    closed({
      index: int(0, 255),
      url: str(512),
      user: str(512),
      status: { enum: ["alive", "dead", "disabled", "unknown"] },
      active: { type: "boolean" },
    }),
    16,
  ),
  uptimeS: numOrNull,
  errors: list(str(512), 64),
});

const CONFIRMED = closed({
  action: { enum: ACTIONS },
  confirmedAt: num,
  reads: int(0, 1_000_000),
});

const METER_READING = closed({
  id: str(64, 1),
  at: num,
  watts: { type: "number", minimum: 0, maximum: 1_000_000 },
  provenance: { const: "measured" },
  feeds: list(str(128, 1), 4096),
});

/** What a successful reply's `result` must be, by the request's op. */
export const RESULT_SCHEMAS = {
  ping: { const: "pong" },
  detect: IDENTITY,
  read: READING,
  sleep: CONFIRMED,
  wake: CONFIRMED,
  reboot: CONFIRMED,
  setPools: CONFIRMED,
  setPowerMode: CONFIRMED,
  setPowerTarget: CONFIRMED,
  meter: METER_READING,
} as const;

export type Op = keyof typeof REQUEST_SCHEMAS;
export const OPS = Object.keys(REQUEST_SCHEMAS) as readonly Op[];
