import { DEFAULT_OFFLINE_GRACE_S, type Rules, type ServiceKind } from "./documents.ts";
import type { Reason } from "./reasons.ts";
import { scheduleState } from "./schedule.ts";
import type { VerifiedDocuments } from "./verify.ts";

/**
 * The decision: a pure function of (verified documents, facts, now). BRIEF section 7 and
 * DOCUMENTS.md section 3. Mining needs everything; services need only a valid, unrevoked
 * consent and its image allowlist, so a schedule window or a lost control plane stops mining
 * but never bitcoind or lnd. `nextChangeAt` is the next instant at which the decision can
 * change by time alone, so the engine wakes exactly then instead of polling.
 *
 * Never throws, whatever the facts: bad facts deny with a reason.
 */

export const SKEW_S = 60;
export const DEFAULT_FACTS_MAX_AGE_S = 60;

export interface Decision {
  readonly mining: { readonly allow: boolean; readonly reasons: readonly Reason[] };
  readonly services: {
    readonly allowed: Readonly<Partial<Record<ServiceKind, string>>>;
    readonly reasons: readonly Reason[];
  };
  /** Epoch milliseconds, or null when time alone will never change the decision. */
  readonly nextChangeAt: number | null;
}

export interface DecisionJson {
  mining: { allow: boolean; reasons: Reason[] };
  services: { allowed: Partial<Record<ServiceKind, string>>; reasons: Reason[] };
  next_change_at: string | null;
}

export interface EvaluateOptions {
  /** Facts older than this deny the rules that need them (DOCUMENTS.md section 6). */
  readonly factsMaxAgeS?: number;
}

const NO_SERVICES: Readonly<Partial<Record<ServiceKind, string>>> = Object.freeze({});

export function evaluate(
  docs: VerifiedDocuments,
  facts: unknown,
  nowMs: number,
  options: EvaluateOptions = {},
): Decision {
  const mining: Reason[] = [];
  let next = Number.POSITIVE_INFINITY;
  const at = (t: number) => {
    if (t > nowMs && t < next) next = t;
  };

  // ---- the consent: validity in time, then everything verification found
  const consentReasons: Reason[] = [...docs.consentReasons];
  const consent = docs.consent?.payload;
  if (consent !== undefined) {
    const validFrom = (Math.max(consent.iat, consent.nbf) - SKEW_S) * 1000;
    if (nowMs < validFrom) consentReasons.push("consent.not_yet_valid");
    at(validFrom);
    const expires = consent.exp * 1000;
    if (nowMs >= expires) consentReasons.push("consent.expired");
    at(expires);
  }
  mining.push(...consentReasons);

  // ---- the publication
  mining.push(...docs.publicationReasons);
  const publication = docs.publication?.payload;
  if (publication !== undefined) {
    const validFrom = (Math.max(publication.iat, publication.nbf) - SKEW_S) * 1000;
    if (nowMs < validFrom) mining.push("publication.not_yet_valid");
    at(validFrom);
    const grace = consent?.rules.offline_grace_s ?? DEFAULT_OFFLINE_GRACE_S;
    const graceEnd = (publication.exp + grace) * 1000;
    if (nowMs >= graceEnd) mining.push("publication.offline_grace_exceeded");
    at(graceEnd);
    if (publication.stop) mining.push("publication.stop");
  }

  // ---- the clock floor: an attacker who turns the clock back cannot revive documents
  const floorOk = (docs.clockFloorS - SKEW_S) * 1000;
  if (nowMs < floorOk) mining.push("clock.behind_floor");
  at(floorOk);

  // ---- the rules
  if (consent !== undefined) {
    next = checkRules(consent.rules, facts, nowMs, options, mining, next);
  }

  // ---- services: only the consent matters
  let allowed = NO_SERVICES;
  const serviceReasons: Reason[] = consentReasons;
  if (consentReasons.length === 0 && consent !== undefined) {
    allowed = consent.rules.services ?? NO_SERVICES;
    if (Object.keys(allowed).length === 0) serviceReasons.push("services.none_allowed");
  }

  return {
    mining: { allow: mining.length === 0, reasons: mining },
    services: { allowed, reasons: serviceReasons },
    nextChangeAt: next === Number.POSITIVE_INFINITY ? null : next,
  };
}

interface FactsView {
  readonly upstream?: unknown;
  readonly job_class?: unknown;
  readonly watts?: unknown;
  readonly temp_c?: unknown;
}

function checkRules(
  rules: Rules,
  rawFacts: unknown,
  nowMs: number,
  options: EvaluateOptions,
  reasons: Reason[],
  nextIn: number,
): number {
  let next = nextIn;
  const at = (t: number) => {
    if (t > nowMs && t < next) next = t;
  };
  let facts: FactsView = {};
  if (typeof rawFacts === "object" && rawFacts !== null && !Array.isArray(rawFacts)) {
    facts = rawFacts as FactsView;
  } else {
    reasons.push("facts.invalid");
  }
  const maxAgeMs = (options.factsMaxAgeS ?? DEFAULT_FACTS_MAX_AGE_S) * 1000;

  /** Whether a fact dated `t` (ms) is fresh now; records when that changes. */
  const fresh = (t: number): boolean => {
    const tooNew = t - SKEW_S * 1000; // dated in the future beyond the skew: not yet usable
    at(tooNew);
    const staleAt = t + maxAgeMs + 1; // older than the maximum age from this instant on
    at(staleAt);
    return nowMs >= tooNew && nowMs < staleAt;
  };

  // Allowlist: no upstream means nowhere to mine.
  const upstreams = rules.upstreams;
  if (upstreams === undefined || upstreams.length === 0) {
    reasons.push("rules.upstreams_empty");
  } else if (typeof facts.upstream !== "string") {
    reasons.push("facts.upstream_missing");
  } else if (!upstreams.some((u) => u.url === facts.upstream)) {
    reasons.push("rules.upstream_not_allowed");
  }

  const schedule = rules.schedule;
  if (schedule !== undefined && schedule.length > 0) {
    const s = scheduleState(schedule, nowMs);
    if (!s.inside) reasons.push("rules.schedule_outside");
    if (s.nextChangeMs !== null) at(s.nextChangeMs);
  }

  if (rules.max_watts !== undefined) {
    const w = facts.watts as { value?: unknown; source?: unknown; at?: unknown } | undefined;
    const t = timeOf(w?.at);
    if (
      typeof w !== "object" ||
      w === null ||
      typeof w.value !== "number" ||
      !Number.isFinite(w.value) ||
      (w.source !== "measured" && w.source !== "estimated") ||
      t === null
    ) {
      reasons.push("facts.watts_missing");
    } else if (!fresh(t)) {
      reasons.push("facts.watts_stale");
    } else if (w.source !== "measured") {
      reasons.push("facts.watts_estimated");
    } else if (w.value > rules.max_watts) {
      reasons.push("rules.max_watts_exceeded");
    }
  }

  if (rules.max_temp_c !== undefined) {
    const c = facts.temp_c as { max?: unknown; at?: unknown } | undefined;
    const t = timeOf(c?.at);
    if (
      typeof c !== "object" ||
      c === null ||
      typeof c.max !== "number" ||
      !Number.isFinite(c.max) ||
      t === null
    ) {
      reasons.push("facts.temp_missing");
    } else if (!fresh(t)) {
      reasons.push("facts.temp_stale");
    } else if (c.max > rules.max_temp_c) {
      reasons.push("rules.max_temp_exceeded");
    }
  }

  const jc = rules.job_classes;
  if (jc !== undefined) {
    const cls = facts.job_class;
    if (typeof cls !== "string") reasons.push("facts.job_class_missing");
    else if (
      (jc.allow !== undefined && !jc.allow.includes(cls)) ||
      jc.deny?.includes(cls) === true
    ) {
      reasons.push("rules.job_class_denied");
    }
  }
  return next;
}

/**
 * An ISO 8601 / RFC 3339 date-time with an explicit offset (`Z` or `±hh:mm`). Without one,
 * Date.parse reads the time in the host's zone (and accepts free-form dates), so the decision
 * would depend on the machine's TZ setting rather than on its inputs.
 */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$/;

/** An ISO time as epoch ms, or null if it is not one. */
function timeOf(v: unknown): number | null {
  if (typeof v !== "string" || v.length > 40 || !ISO_TIME.test(v)) return null;
  const t = Date.parse(v);
  return Number.isFinite(t) ? t : null;
}

export function decisionToJson(d: Decision): DecisionJson {
  return {
    mining: { allow: d.mining.allow, reasons: [...d.mining.reasons] },
    services: { allowed: { ...d.services.allowed }, reasons: [...d.services.reasons] },
    next_change_at: d.nextChangeAt === null ? null : new Date(d.nextChangeAt).toISOString(),
  };
}

/** Whether two decisions are the same (the engine acts only on changes). */
export function sameDecision(a: Decision, b: Decision): boolean {
  return (
    a.mining.allow === b.mining.allow &&
    sameList(a.mining.reasons, b.mining.reasons) &&
    sameList(a.services.reasons, b.services.reasons) &&
    sameServices(a.services.allowed, b.services.allowed)
  );
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameServices(
  a: Readonly<Partial<Record<string, string>>>,
  b: Readonly<Partial<Record<string, string>>>,
): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}
