/**
 * Fault injection. Each fault fires on a count of shares the miner has found, so a test can
 * say exactly which share goes wrong: `stale:3` holds back every 3rd share until its job is
 * replaced, `overheat:5` overheats after the 5th share (`overheat` alone: from the start).
 */
import { fail } from "../../lib/errors.ts";

export const FAULT_KINDS = [
  /** The miner drops its pool connection and reconnects (same slot). */
  "disconnect",
  /** The share is held back and submitted after the next notify: a real stale share. */
  "stale",
  /** The share is submitted twice. */
  "duplicate",
  /** A nonce whose hash misses the job's difficulty is submitted instead. */
  "lowdiff",
  /** A mining.submit with bad parameters is sent instead (variants in rotation). */
  "malformed",
  /** Hostile bytes go to the pool: an oversized line, binary garbage, deep nesting… */
  "hostile",
  /** Chips overheat: temperatures above the limit, hashing stops (protection). */
  "overheat",
  /** A fan stops: speed 0 in the API, hashing stops. */
  "fan",
  /** The miner reboots: pool connection and API down for a while, counters reset. */
  "reboot",
  /** The S9's stats come out with `}{` and no comma between the STATS objects. */
  "api-glitch",
  /** Every 4028 reply carries bare `nan` and `inf` numbers (bmminer prints C's %f). */
  "api-nan",
  /** Every 4028 reply has trailing commas (`,}` and `,]`) and a leading one (`[,{`). */
  "api-trailing-comma",
  /** 4028 replies end without the NUL byte (the socket just closes). */
  "api-no-nul",
  /** The 4028 socket is destroyed half-way through the reply. */
  "api-reset",
  /** Every 4028 reply is 10 MB long. */
  "api-huge",
  /**
   * Writes are acknowledged and not applied: the web UI's set_miner_conf answers success and
   * changes nothing, 4028 addpool/removepool/switchpool/enablepool/disablepool answer their
   * success codes and change nothing (firmware that ignores what it acknowledged).
   */
  "write-ignored",
  /** The web UI's socket is destroyed half-way through the reply body. */
  "web-reset",
  /** Every web UI CGI reply is 10 MB long. */
  "web-huge",
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Faults that change one share (at most one applies to a share). */
export const SHARE_FAULTS: readonly FaultKind[] = ["stale", "duplicate", "lowdiff", "malformed"];
/** Faults that are a lasting condition once they fire. */
export const CONDITION_FAULTS: readonly FaultKind[] = [
  "overheat",
  "fan",
  "api-glitch",
  "api-nan",
  "api-trailing-comma",
  "api-no-nul",
  "api-reset",
  "api-huge",
  "write-ignored",
  "web-reset",
  "web-huge",
];

/** How big the `api-huge` and `web-huge` replies are. */
export const HUGE_REPLY_BYTES = 10 * 1024 * 1024;

export interface FaultSpec {
  readonly kind: FaultKind;
  /** Share faults and events: every Nth found share. Conditions: after N shares (0: at once). */
  readonly every: number;
}

const DEFAULT_EVERY: Readonly<Record<FaultKind, number>> = {
  disconnect: 10,
  stale: 3,
  duplicate: 3,
  lowdiff: 3,
  malformed: 3,
  hostile: 5,
  overheat: 0,
  fan: 0,
  reboot: 10,
  "api-glitch": 0,
  "api-nan": 0,
  "api-trailing-comma": 0,
  "api-no-nul": 0,
  "api-reset": 0,
  "api-huge": 0,
  "write-ignored": 0,
  "web-reset": 0,
  "web-huge": 0,
};

/** Parses `KIND[:N]`. */
export function parseFault(text: string): FaultSpec {
  const [kind, n, ...rest] = text.split(":");
  if (kind === undefined || !(FAULT_KINDS as readonly string[]).includes(kind) || rest.length) {
    throw fail(
      "AGENTD_E_USAGE",
      `--fault: expected KIND[:N] with KIND one of ${FAULT_KINDS.join(", ")}; got ${JSON.stringify(text)}`,
    );
  }
  const k = kind as FaultKind;
  if (n === undefined) return { kind: k, every: DEFAULT_EVERY[k] };
  const min = CONDITION_FAULTS.includes(k) ? 0 : 1;
  if (!/^\d+$/.test(n) || Number(n) < min) {
    throw fail(
      "AGENTD_E_USAGE",
      `--fault ${k}: N must be an integer ≥ ${min}; got ${JSON.stringify(n)}`,
    );
  }
  return { kind: k, every: Number(n) };
}

/** Which faults fire on the n-th found share (n counts from 1). */
export function faultsFiring(specs: readonly FaultSpec[], n: number): FaultKind[] {
  const out: FaultKind[] = [];
  for (const s of specs) {
    const fires = CONDITION_FAULTS.includes(s.kind)
      ? s.every > 0 && n === s.every
      : n % s.every === 0;
    if (fires) out.push(s.kind);
  }
  return out;
}

/** Conditions active from the start (`overheat`, `fan:0`…). */
export function initialConditions(specs: readonly FaultSpec[]): FaultKind[] {
  return specs.filter((s) => CONDITION_FAULTS.includes(s.kind) && s.every === 0).map((s) => s.kind);
}

/**
 * Malformed mining.submit parameter lists, in rotation. Each is what a buggy or corrupted
 * miner could send; a pool must reject it without harm.
 */
export function malformedSubmit(
  variant: number,
  good: readonly string[],
): { name: string; params: unknown } {
  const [worker = "", jobId = "", en2 = "", ntime = "", nonce = ""] = good;
  const variants: { name: string; params: unknown }[] = [
    { name: "nonce-not-hex", params: [worker, jobId, en2, ntime, "zzzzzzzz"] },
    { name: "extranonce2-wrong-size", params: [worker, jobId, en2.slice(2), ntime, nonce] },
    { name: "missing-params", params: [worker, jobId, en2] },
    { name: "ntime-short", params: [worker, jobId, en2, ntime.slice(0, 3), nonce] },
    { name: "params-not-array", params: `${worker},${jobId},${nonce}` },
    { name: "job-id-number", params: [worker, 12345, en2, ntime, nonce] },
  ];
  return variants[variant % variants.length] as { name: string; params: unknown };
}

/** Hostile payloads a pool (or proxy) must survive, in rotation; each ends with a newline. */
export function hostilePayload(variant: number): { name: string; data: string | Buffer } {
  switch (variant % 6) {
    case 0:
      return { name: "oversized-line", data: `${"A".repeat(256 * 1024)}\n` };
    case 1:
      return {
        name: "binary-garbage",
        data: Buffer.concat([
          Buffer.from([0x00, 0xff, 0xfe, 0xc3, 0x28, 0x80, 0x00, 0x1b]),
          Buffer.from("\n"),
        ]),
      };
    case 2:
      return { name: "deep-nesting", data: `${"[".repeat(10_000)}${"]".repeat(10_000)}\n` };
    case 3:
      return { name: "wrong-types", data: '{"id":{"x":1},"method":42,"params":"zzz"}\n' };
    case 4:
      return {
        name: "proto-pollution",
        data: '{"id":9,"method":"mining.submit","params":{"__proto__":{"polluted":true}}}\n',
      };
    default:
      return { name: "unknown-method", data: '{"id":10,"method":"mining.rm_rf","params":[]}\n' };
  }
}
