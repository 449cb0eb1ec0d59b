/**
 * The policy guard's hot paths: the decision (`evaluate`) per call, and bundle verification
 * (`verifyDocuments`) per bundle. Prints one line of JSON on stdout, then a table on stdout
 * (omitted with --json-only).
 *
 *   node bench/policy.ts [--evaluations N] [--warmup N] [--bundles N] [--cold N]
 *                        [--seed N] [--json-only]
 *
 * 1. evaluate(): a realistic consent (every rule present; 6 schedule windows in 4 zones, three
 *    crossing midnight, two containing DST changes) against `now` drawn uniformly over 2026 (so
 *    inside and outside windows and across every DST change of the four zones) and facts that
 *    vary per call (upstream allowed or not, watts measured/estimated, over/under the limit,
 *    fresh/stale/future/missing, temperature, job class). Facts are generated, untimed, for
 *    each block of 4096 calls from that block's instants, so every call has its own `now` and
 *    its own facts object. The documents are verified once, untimed: one consent for the year
 *    and a daily publication (TTL 36 h), the agent using the newest it has, sometimes one a few
 *    days old (offline). Baseline, same run, same instants and facts, interleaved block by
 *    block: evaluate() on a minimal consent (one upstream, nothing else).
 *    The timer's own cost is measured by timing an empty call the same way; nothing is
 *    subtracted.
 *    schedule.ts memoises UTC offsets per (zone, 8-day chunk) in a bounded FIFO; a year in four
 *    zones fits in it, so the main series runs with a warm memo (as a long-running agent,
 *    whose clock advances slowly, does). The `cold` series spreads `now` over 1970–2400 so
 *    that nearly every call misses the memo; it shows what the memo saves.
 * 2. verifyDocuments() on distinct bundles (each its own consent and publication, signed before
 *    timing). Baseline: node:crypto verify() of the same two signatures per bundle.
 */
import { createHash, generateKeyPairSync, type KeyObject, verify } from "node:crypto";
import { jwkThumbprint } from "../lib/crypto/ed25519.ts";
import { type Decision, evaluate } from "../policy-guard/decision.ts";
import type { Bundle } from "../policy-guard/documents.ts";
import type { ScheduleWindow } from "../policy-guard/schedule.ts";
import { signConsent, signPublication } from "../policy-guard/sign.ts";
import {
  EMPTY_COUNTERS,
  type TrustAnchors,
  type VerifiedDocuments,
  verifyDocuments,
} from "../policy-guard/verify.ts";
import { benchArgs, integer } from "./args.ts";
import {
  type LatencySummary,
  machineInfo,
  rng,
  round,
  summarizeNs,
  sumNs,
  table,
} from "./machine.ts";

// ---- options --------------------------------------------------------------------------------

const args = benchArgs("policy", {
  evaluations: integer(1_000_000, 1),
  warmup: integer(50_000, 0),
  bundles: integer(4000, 1),
  cold: integer(10_000, 0),
  seed: integer(1, 0),
});
const N = args.values.evaluations;
const WARMUP = args.values.warmup;
const BUNDLES = args.values.bundles;
const COLD = args.values.cold;
const SEED = args.values.seed;
const JSON_ONLY = args.jsonOnly;

const BLOCK = 4096;
const BUNDLE_BLOCK = 256;
const BUNDLE_WARMUP = Math.min(500, Math.max(10, Math.floor(BUNDLES / 8)));
const GOAL_P99_US = 20;

const SECOND = 1000;
const DAY = 86_400_000;
const YEAR_START = Date.UTC(2026, 0, 1);
const YEAR_DAYS = 365;
const PUBLICATION_TTL_S = 36 * 3600;

const wallStart = process.hrtime.bigint();
const machine = machineInfo();

// ---- the policies ---------------------------------------------------------------------------

const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"] as const;
const WINDOWS: readonly ScheduleWindow[] = [
  // weeknights, across midnight; the weekend whole days join Friday night to Monday 00:00
  { days: [...WEEKDAYS], start: "22:00", end: "06:00", tz: "Europe/Berlin" },
  { days: ["sat", "sun"], start: "00:00", end: "00:00", tz: "Europe/Berlin" },
  { days: ["mon", "wed", "fri"], start: "12:00", end: "14:30", tz: "America/New_York" },
  { days: ["tue", "thu"], start: "23:30", end: "01:15", tz: "America/New_York" },
  // every night; holds the Sydney DST changes (2026-04-05 03:00, 2026-10-04 02:00)
  { days: [...WEEKDAYS, "sat", "sun"], start: "01:00", end: "04:30", tz: "Australia/Sydney" },
  { days: ["sat"], start: "20:00", end: "08:00", tz: "Asia/Tokyo" },
];
const ZONES = [...new Set(WINDOWS.map((w) => w.tz))];

const UPSTREAMS = [
  { url: "stratum+tcp://pool-eu.example.org:3333", user: "owner.rig01" },
  { url: "stratum+ssl://pool-us.example.org:4443", user: "owner.rig01" },
  {
    url: "sv2+tcp://pool-sv2.example.org:34254",
    user: "owner.rig01",
    authority_pubkey: "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72",
  },
] as const;
/** Upstream facts that no consent allows (a near miss and a stranger). */
const UNLISTED = [
  "stratum+tcp://pool-eu.example.org:3334",
  "stratum+tcp://unlisted.example.net:3333",
];

const image = (name: string) => `sha256:${createHash("sha256").update(name).digest("hex")}`;

const MAX_WATTS = 3500;
const MAX_TEMP_C = 85;

function realisticRules(variant = 0): Record<string, unknown> {
  return {
    schedule: WINDOWS.slice(0, WINDOWS.length - (variant % 3)),
    max_watts: MAX_WATTS - (variant % 1000),
    max_temp_c: MAX_TEMP_C - (variant % 10),
    upstreams: UPSTREAMS,
    payout: {
      address: "bc1qbenchpayout0rig01example0000000000000",
      threshold_sats: 100_000 + variant,
    },
    services: {
      bitcoind: image("bitcoind-27.1"),
      "template-provider": image("sv2-tp-1.2"),
      lnd: image("lnd-0.18"),
    },
    commands: ["mining.pause", "mining.resume", "service.restart", "agent.update"],
    networks: ["192.168.10.0/24", "10.20.0.0/16", "fd00:10::/64"],
    job_classes: { allow: ["sha256d", "sha256d.sv2"], deny: ["test"] },
    offline_grace_s: 6 * 3600,
    max_publication_ttl_s: 48 * 3600,
  };
}
/**
 * The baseline: one upstream and nothing else the decision checks. The two document-level
 * limits are the realistic ones, so that both policies hold the same publications.
 */
const MINIMAL_RULES = {
  upstreams: [UPSTREAMS[0]],
  offline_grace_s: 6 * 3600,
  max_publication_ttl_s: 48 * 3600,
};

// ---- keys and documents ---------------------------------------------------------------------

const owner = generateKeyPairSync("ed25519");
const cp = [generateKeyPairSync("ed25519"), generateKeyPairSync("ed25519")] as const;
const worker = jwkThumbprint(generateKeyPairSync("ed25519").publicKey);
const trust: TrustAnchors = { owner: owner.publicKey, publication: cp.map((k) => k.publicKey) };

/** Unix seconds of an epoch-ms instant. */
const unix = (ms: number) => Math.floor(ms / SECOND);

/**
 * One consent for the year and a publication per day: publication k is issued during day
 * k - 1 (k = 0 … YEAR_DAYS), lives 36 h, and is countersigned by one of the two control-plane
 * keys. Verified once here, untimed.
 */
function dailyDocuments(
  rules: unknown,
  rnd: () => number,
): { docs: VerifiedDocuments[]; issued: Float64Array } {
  const consent = signConsent({
    ownerKey: owner.privateKey,
    worker,
    rules,
    seq: 1,
    policyId: "rig01-2026",
    iat: unix(YEAR_START - DAY),
    exp: unix(YEAR_START + 400 * DAY),
  });
  const docs: VerifiedDocuments[] = [];
  const issued = new Float64Array(YEAR_DAYS + 1);
  for (let k = 0; k <= YEAR_DAYS; k++) {
    const iat = unix(YEAR_START + (k - 1) * DAY + Math.floor(rnd() * 3600) * SECOND);
    issued[k] = iat * SECOND;
    const publication = signPublication({
      cpKey: (cp[k % 2] as (typeof cp)[number]).privateKey,
      consent,
      worker,
      version: k + 1,
      iat,
      ttlS: PUBLICATION_TTL_S,
      stop: k % 97 === 50, // now and then the control plane says stop
    });
    const v = verifyDocuments({
      bundle: { consent, publication },
      trust,
      worker,
      counters: EMPTY_COUNTERS,
    });
    if (v.consentReasons.length > 0 || v.publicationReasons.length > 0) {
      throw new Error(
        `bench: a generated bundle does not verify: ${[...v.consentReasons, ...v.publicationReasons]}`,
      );
    }
    docs.push(v);
  }
  return { docs, issued };
}

const docRnd = rng(SEED ^ 0x5eed);
const realistic = dailyDocuments(realisticRules(), docRnd);
const minimal = dailyDocuments(MINIMAL_RULES, rng(SEED ^ 0x5eed)); // same issue times

// ---- instants and facts ---------------------------------------------------------------------

interface Inputs {
  readonly nows: Float64Array;
  /** Index of the verified documents the agent holds at nows[i]. */
  readonly docIdx: Int32Array;
}

/** Instants uniform over [from, from + spanDays), and which daily documents hold then. */
function makeInputs(n: number, from: number, spanDays: number, rnd: () => number): Inputs {
  const nows = new Float64Array(n);
  const docIdx = new Int32Array(n);
  const issued = realistic.issued;
  for (let i = 0; i < n; i++) {
    const now = from + Math.floor(rnd() * spanDays * DAY);
    nows[i] = now;
    const day = Math.min(YEAR_DAYS - 1, Math.max(0, Math.floor((now - YEAR_START) / DAY)));
    // the newest publication issued by now (day + 1 is issued during this day)
    let k = now >= (issued[day + 1] as number) ? day + 1 : day;
    // 4%: the agent lost the control plane a few days ago and holds an old publication
    if (rnd() < 0.04) k = Math.max(0, k - 2 - Math.floor(rnd() * 3));
    docIdx[i] = k;
  }
  return { nows, docIdx };
}

const iso = (ms: number) => new Date(Math.round(ms)).toISOString();

/** When a sensor reading was taken: mostly fresh, sometimes stale, ahead, or not a time. */
function readingTime(now: number, rnd: () => number): string {
  const r = rnd();
  if (r < 0.88) return iso(now - rnd() * 45 * SECOND);
  if (r < 0.95) return iso(now - (61 + rnd() * 600) * SECOND); // stale (> 60 s)
  if (r < 0.98) return iso(now + (61 + rnd() * 300) * SECOND); // ahead beyond the skew
  return rnd() < 0.5 ? "" : "yesterday";
}

function makeFacts(now: number, rnd: () => number): Record<string, unknown> {
  const r = rnd();
  const upstream =
    r < 0.85
      ? UPSTREAMS[Math.floor(rnd() * 3)]?.url
      : r < 0.98
        ? UNLISTED[Math.floor(rnd() * 2)]
        : undefined;
  const facts: Record<string, unknown> = {
    upstream,
    job_class:
      rnd() < 0.95
        ? rnd() < 0.7
          ? "sha256d"
          : "sha256d.sv2"
        : rnd() < 0.5
          ? "test"
          : "merge-mined",
  };
  if (rnd() < 0.98) {
    facts.watts = {
      value: 200 + Math.floor(rnd() * 3600), // up to 3800 W: over max_watts 8% of the time
      source: rnd() < 0.92 ? "measured" : "estimated",
      at: readingTime(now, rnd),
    };
  }
  if (rnd() < 0.98) {
    facts.temp_c = { max: 40 + Math.round(rnd() * 500) / 10, at: readingTime(now, rnd) };
  }
  return facts;
}

function fillFacts(
  out: unknown[],
  nows: Float64Array,
  from: number,
  to: number,
  rnd: () => number,
): void {
  for (let i = from; i < to; i++) out[i - from] = makeFacts(nows[i] as number, rnd);
}

// ---- timing evaluate() ----------------------------------------------------------------------

class Tally {
  allow = 0;
  deny = 0;
  sink = 0;
  readonly reasons = new Map<string, number>();
  /** Per call: 1 when `now` was outside the schedule (to split the latencies by path). */
  readonly outside: Uint8Array;
  constructor(n = 0) {
    this.outside = new Uint8Array(n);
  }
  add(d: Decision, i: number): void {
    if (d.mining.allow) this.allow++;
    else this.deny++;
    let out = 0;
    for (const r of d.mining.reasons) {
      this.reasons.set(r, (this.reasons.get(r) ?? 0) + 1);
      if (r === "rules.schedule_outside") out = 1;
    }
    if (i < this.outside.length) this.outside[i] = out;
    this.sink += d.nextChangeAt === null ? 1 : d.nextChangeAt % 7;
  }
}

/** Times evaluate() per call over [from, to); samples (ns) go to out[i]. */
function timeEvaluate(
  docs: readonly VerifiedDocuments[],
  inputs: Inputs,
  facts: readonly unknown[],
  from: number,
  to: number,
  out: Float64Array,
  tally: Tally,
): void {
  const { nows, docIdx } = inputs;
  for (let i = from; i < to; i++) {
    const d = docs[docIdx[i] as number] as VerifiedDocuments;
    const f = facts[i - from];
    const now = nows[i] as number;
    const t0 = process.hrtime.bigint();
    const r = evaluate(d, f, now);
    const t1 = process.hrtime.bigint();
    out[i] = Number(t1 - t0);
    tally.add(r, i);
  }
}

function empty(_docs: VerifiedDocuments, _facts: unknown, now: number): number {
  return now;
}

/**
 * The same loop around an empty call: the timer's own cost. Written out again rather than
 * sharing timeEvaluate with a function parameter, so that each loop's call site stays
 * monomorphic and the baseline times exactly what the measurement does minus the work.
 */
function timeEmpty(
  docs: readonly VerifiedDocuments[],
  inputs: Inputs,
  facts: readonly unknown[],
  from: number,
  to: number,
  out: Float64Array,
  tally: Tally,
): void {
  const { nows, docIdx } = inputs;
  for (let i = from; i < to; i++) {
    const d = docs[docIdx[i] as number] as VerifiedDocuments;
    const f = facts[i - from];
    const now = nows[i] as number;
    const t0 = process.hrtime.bigint();
    const r = empty(d, f, now);
    const t1 = process.hrtime.bigint();
    out[i] = Number(t1 - t0);
    tally.sink += r % 7;
  }
}

interface Series {
  readonly run: typeof timeEvaluate;
  readonly docs: readonly VerifiedDocuments[];
  readonly out: Float64Array;
  readonly tally: Tally;
}

/**
 * Runs every series over the same inputs, block by block, the series' order rotating from
 * block to block so that drifting machine load hits them alike.
 */
function runSeries(inputs: Inputs, series: readonly Series[], rnd: () => number): void {
  const n = inputs.nows.length;
  const facts: unknown[] = new Array<unknown>(BLOCK);
  for (let b = 0, block = 0; b < n; b += BLOCK, block++) {
    const end = Math.min(n, b + BLOCK);
    fillFacts(facts, inputs.nows, b, end, rnd);
    for (let s = 0; s < series.length; s++) {
      const x = series[(s + block) % series.length] as Series;
      x.run(x.docs, inputs, facts, b, end, x.out, x.tally);
    }
  }
}

const factsRnd = rng(SEED ^ 0xfac7);

// Warm-up: JIT and the schedule memo, on instants of its own.
{
  const w = makeInputs(WARMUP, YEAR_START, YEAR_DAYS, rng(SEED ^ 0x3a3a));
  const scratch = new Float64Array(WARMUP);
  const t = new Tally();
  runSeries(
    w,
    [
      { run: timeEvaluate, docs: realistic.docs, out: scratch, tally: t },
      { run: timeEvaluate, docs: minimal.docs, out: scratch, tally: t },
      { run: timeEmpty, docs: realistic.docs, out: scratch, tally: t },
    ],
    factsRnd,
  );
}

const main = makeInputs(N, YEAR_START, YEAR_DAYS, rng(SEED));
const real: Series = {
  run: timeEvaluate,
  docs: realistic.docs,
  out: new Float64Array(N),
  tally: new Tally(N),
};
const base: Series = {
  run: timeEvaluate,
  docs: minimal.docs,
  out: new Float64Array(N),
  tally: new Tally(),
};
const timer: Series = {
  run: timeEmpty,
  docs: realistic.docs,
  out: new Float64Array(N),
  tally: new Tally(),
};
const evalStart = process.hrtime.bigint();
runSeries(main, [real, base, timer], factsRnd);
const evalWallS = Number(process.hrtime.bigint() - evalStart) / 1e9;

// ---- bundle verification --------------------------------------------------------------------

interface SignedBundle {
  readonly bundle: Bundle;
  /** The raw material of the two signatures, for the baseline. */
  readonly cData: Buffer;
  readonly cSig: Buffer;
  readonly pData: Buffer;
  readonly pSig: Buffer;
  readonly pKey: KeyObject;
}

function rawParts(jws: string): { data: Buffer; sig: Buffer } {
  const dot = jws.lastIndexOf(".");
  return {
    data: Buffer.from(jws.slice(0, dot), "ascii"),
    sig: Buffer.from(jws.slice(dot + 1), "base64url"),
  };
}

/** Distinct bundles: each its own consent (seq, nonce, rules, times) and publication. */
function signBundles(n: number, first: number, rnd: () => number): SignedBundle[] {
  const out: SignedBundle[] = [];
  for (let i = first; i < first + n; i++) {
    const iat = unix(YEAR_START) + i * 61 + Math.floor(rnd() * 60);
    const consent = signConsent({
      ownerKey: owner.privateKey,
      worker,
      rules: realisticRules(i),
      seq: i + 1,
      policyId: `rig01-${i}`,
      iat,
      exp: iat + 365 * 86_400,
    });
    const k = cp[i % 2] as (typeof cp)[number];
    const publication = signPublication({
      cpKey: k.privateKey,
      consent,
      worker,
      version: i + 1,
      iat: iat + 30,
      ttlS: 3600 + Math.floor(rnd() * 86_400),
    });
    const c = rawParts(consent);
    const p = rawParts(publication);
    out.push({
      bundle: { consent, publication },
      cData: c.data,
      cSig: c.sig,
      pData: p.data,
      pSig: p.sig,
      pKey: k.publicKey,
    });
  }
  return out;
}

interface VerifyTally {
  ok: number;
  bad: number;
}

function timeVerify(
  bundles: readonly SignedBundle[],
  from: number,
  to: number,
  out: Float64Array,
  t: VerifyTally,
) {
  for (let i = from; i < to; i++) {
    const b = (bundles[i] as SignedBundle).bundle;
    const t0 = process.hrtime.bigint();
    const v = verifyDocuments({ bundle: b, trust, worker, counters: EMPTY_COUNTERS });
    const t1 = process.hrtime.bigint();
    out[i] = Number(t1 - t0);
    const ok =
      v.consent !== null &&
      v.publication !== null &&
      v.consentReasons.length === 0 &&
      v.publicationReasons.length === 0;
    if (ok) t.ok++;
    else t.bad++;
  }
}

function timeRaw(
  bundles: readonly SignedBundle[],
  from: number,
  to: number,
  out: Float64Array,
  t: VerifyTally,
) {
  const ownerKey = trust.owner;
  for (let i = from; i < to; i++) {
    const b = bundles[i] as SignedBundle;
    const t0 = process.hrtime.bigint();
    const ok = verify(null, b.cData, ownerKey, b.cSig) && verify(null, b.pData, b.pKey, b.pSig);
    const t1 = process.hrtime.bigint();
    out[i] = Number(t1 - t0);
    if (ok) t.ok++;
    else t.bad++;
  }
}

function runVerify(
  bundles: readonly SignedBundle[],
  vOut: Float64Array,
  rOut: Float64Array,
  vt: VerifyTally,
  rt: VerifyTally,
) {
  for (let b = 0, block = 0; b < bundles.length; b += BUNDLE_BLOCK, block++) {
    const end = Math.min(bundles.length, b + BUNDLE_BLOCK);
    if (block % 2 === 0) {
      timeVerify(bundles, b, end, vOut, vt);
      timeRaw(bundles, b, end, rOut, rt);
    } else {
      timeRaw(bundles, b, end, rOut, rt);
      timeVerify(bundles, b, end, vOut, vt);
    }
  }
}

const signRnd = rng(SEED ^ 0xb0b);
const signStart = process.hrtime.bigint();
const warmBundles = signBundles(BUNDLE_WARMUP, 1_000_000, signRnd);
const bundles = signBundles(BUNDLES, 0, signRnd);
const signS = Number(process.hrtime.bigint() - signStart) / 1e9;
{
  const scratch = new Float64Array(BUNDLE_WARMUP);
  runVerify(warmBundles, scratch, scratch, { ok: 0, bad: 0 }, { ok: 0, bad: 0 });
}
const verifyOut = new Float64Array(BUNDLES);
const rawOut = new Float64Array(BUNDLES);
const verifyTally: VerifyTally = { ok: 0, bad: 0 };
const rawTally: VerifyTally = { ok: 0, bad: 0 };
runVerify(bundles, verifyOut, rawOut, verifyTally, rawTally);

// ---- the schedule memo, cold: instants over 1970–2400 (last: it evicts the year's chunks) ---

const cold: Series = {
  run: timeEvaluate,
  docs: realistic.docs,
  out: new Float64Array(COLD),
  tally: new Tally(),
};
if (COLD > 0) {
  const coldInputs = makeInputs(
    COLD,
    0,
    Math.floor((Date.UTC(2400, 0, 1) - 0) / DAY),
    rng(SEED ^ 0xc01d),
  );
  runSeries(coldInputs, [cold], factsRnd);
}

// ---- report ---------------------------------------------------------------------------------

const ratio = (a: number, b: number) => round(a / b, 3);

function mix(t: Tally, n: number) {
  const reasons = Object.fromEntries(
    [...t.reasons.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)),
  );
  return {
    allow: t.allow,
    deny: t.deny,
    allow_ratio: round(t.allow / n, 4),
    deny_reasons: reasons,
  };
}

const evalReal = summarizeNs(real.out);
const evalBase = summarizeNs(base.out);
const timerStats = summarizeNs(timer.out);
const verifyStats = summarizeNs(verifyOut);
const rawStats = summarizeNs(rawOut);
const coldStats: LatencySummary | null = COLD > 0 ? summarizeNs(cold.out) : null;
const verifyPerS = round((BUNDLES * 1e9) / sumNs(verifyOut), 1);
const rawPerS = round((BUNDLES * 1e9) / sumNs(rawOut), 1);
const outside = real.tally.reasons.get("rules.schedule_outside") ?? 0;

/** The realistic samples of calls whose `now` was inside (0) or outside (1) the schedule. */
function bySchedule(flag: number): LatencySummary {
  const picked = new Float64Array(flag === 1 ? outside : N - outside);
  for (let i = 0, j = 0; i < N; i++)
    if (real.tally.outside[i] === flag) picked[j++] = real.out[i] as number;
  return summarizeNs(picked);
}
const evalInside = bySchedule(0);
const evalOutside = bySchedule(1);

const report = {
  bench: "policy",
  machine,
  config: {
    evaluations: N,
    warmup_evaluations: WARMUP,
    facts_block: BLOCK,
    bundles: BUNDLES,
    bundle_warmup: BUNDLE_WARMUP,
    cold_evaluations: COLD,
    seed: SEED,
    timer: "process.hrtime.bigint() around each call; nothing subtracted",
    now: "uniform over 2026-01-01T00:00Z .. 2027-01-01T00:00Z, one instant per call",
    policy: {
      rules: Object.keys(realisticRules()),
      windows: WINDOWS,
      zones: ZONES,
      documents:
        "one consent for the year, a publication per day (TTL 36 h); 4% of calls hold one 2–4 days old",
    },
    baseline_policy: { rules: Object.keys(MINIMAL_RULES) },
  },
  results: {
    evaluate: {
      ...evalReal,
      ...mix(real.tally, N),
      schedule_inside_ratio: round(1 - outside / N, 4),
      by_schedule: { inside: evalInside, outside: evalOutside },
    },
    timer_overhead: timerStats,
    verify: {
      ...verifyStats,
      bundles_per_s: verifyPerS,
      ok: verifyTally.ok,
      failed: verifyTally.bad,
      signing_s: round(signS, 2),
    },
    schedule_memo: {
      memo: "schedule.ts: UTC offsets per (zone, 8-day UTC chunk), FIFO-bounded; warm for the year's instants",
      cold:
        coldStats === null
          ? null
          : { ...coldStats, now: "uniform over 1970..2400, so nearly every call misses the memo" },
    },
  },
  baseline: {
    evaluate_minimal: { ...evalBase, ...mix(base.tally, N) },
    raw_ed25519: {
      ...rawStats,
      signatures_per_bundle: 2,
      bundles_per_s: rawPerS,
      ok: rawTally.ok,
      failed: rawTally.bad,
    },
  },
  ratios: {
    evaluate_p50_realistic_over_minimal: ratio(evalReal.p50_us, evalBase.p50_us),
    evaluate_p99_realistic_over_minimal: ratio(evalReal.p99_us, evalBase.p99_us),
    evaluate_mean_realistic_over_minimal: ratio(evalReal.mean_us, evalBase.mean_us),
    verify_p50_over_raw: ratio(verifyStats.p50_us, rawStats.p50_us),
    verify_p99_over_raw: ratio(verifyStats.p99_us, rawStats.p99_us),
    verify_time_over_raw: ratio(rawPerS, verifyPerS),
    schedule_cold_p50_over_warm:
      coldStats === null ? null : ratio(coldStats.p50_us, evalReal.p50_us),
    schedule_cold_mean_over_warm:
      coldStats === null ? null : ratio(coldStats.mean_us, evalReal.mean_us),
  },
  goal: { p99_us: GOAL_P99_US, met: evalReal.p99_us < GOAL_P99_US },
  wall_s: {
    total: round(Number(process.hrtime.bigint() - wallStart) / 1e9, 2),
    evaluate_series: round(evalWallS, 2),
  },
  sink: (real.tally.sink + base.tally.sink + timer.tally.sink + cold.tally.sink) % 1000,
};

process.stdout.write(`${JSON.stringify(report)}\n`);

if (!JSON_ONLY) {
  const row = (name: string, s: LatencySummary, note: string) =>
    [name, s.count, s.p50_us, s.p90_us, s.p99_us, s.p99_9_us, s.max_us, s.mean_us, note] as const;
  const m = machine;
  const lines = [
    "",
    `machine: ${m.cpu}, ${m.cores} cores, ${m.memory_gib} GiB, Node ${m.node}, ${m.os} ${m.arch}, load ${m.loadavg_1m}`,
    "",
    table(
      ["µs per call", "count", "p50", "p90", "p99", "p99.9", "max", "mean", ""],
      [
        row("evaluate, realistic", evalReal, `allow ${round((100 * real.tally.allow) / N, 1)}%`),
        row("  now inside the schedule", evalInside, ""),
        row("  now outside the schedule", evalOutside, ""),
        row(
          "evaluate, minimal (baseline)",
          evalBase,
          `allow ${round((100 * base.tally.allow) / N, 1)}%`,
        ),
        row("timer overhead (empty call)", timerStats, ""),
        ...(coldStats === null
          ? []
          : [row("evaluate, schedule memo cold", coldStats, "1970..2400")]),
        row("verifyDocuments per bundle", verifyStats, `${verifyPerS}/s`),
        row("raw Ed25519 x2 (baseline)", rawStats, `${rawPerS}/s`),
      ],
    ),
    table(
      ["ratio", "value"],
      [
        ["evaluate p50 realistic / minimal", report.ratios.evaluate_p50_realistic_over_minimal],
        ["evaluate p99 realistic / minimal", report.ratios.evaluate_p99_realistic_over_minimal],
        ["verify p50 / raw Ed25519", report.ratios.verify_p50_over_raw],
        ["verify p99 / raw Ed25519", report.ratios.verify_p99_over_raw],
        ["verify time / raw (throughput)", report.ratios.verify_time_over_raw],
        ...(coldStats === null
          ? []
          : [
              ["evaluate p50 memo cold / warm", report.ratios.schedule_cold_p50_over_warm] as const,
            ]),
      ],
    ),
    `goal: evaluate p99 < ${GOAL_P99_US} µs: ${report.goal.met ? "met" : "NOT met"} (p99 ${evalReal.p99_us} µs)`,
    "",
  ];
  process.stdout.write(lines.join("\n"));
}
