import { join } from "node:path";
import type { TimerHandle } from "../lib/timers.ts";
import type { AgentContext } from "./agent-context.ts";
import {
  ASSIGNMENT_FILE,
  type Assignment,
  assignmentInForce,
  checkAssignment,
  consentInForce,
  readAssignmentJws,
  writeAssignmentJws,
} from "./assignment.ts";

/**
 * The control plane's assignment, kept current (assignment.ts says what it is and when it
 * counts). Fetched after every accepted bundle, after attestation, and again before the one
 * held expires: halfway through what is left, every 30 s while none is in force. One fetch at
 * a time. A fetch that fails keeps the one held; one that answers replaces
 * it; an answer that does not verify leaves none (fail closed), audited. Each fetch ends by
 * re-evaluating the state (`onSettled`).
 *
 * Never faster than `MIN_INTERVAL_MS` apart (issue 15: with the owner's `max_publication_ttl_s`
 * at 60 s every assignment lived a minute and was renewed about once a second), except when
 * the consent in force changes: the new consent's assignment is fetched at once. A fetch asked
 * for sooner is made when the floor allows; meanwhile an assignment that just expired counts,
 * as it does while a renewal is in flight.
 */
export interface AssignmentSync {
  current(): Assignment | null;
  /** Whether the assignment lets this machine mine now (an expired one starts its renewal). */
  assigned(): boolean;
  /** Holds or releases the data path by the assignment, and points it at the assigned pool. */
  apply(): void;
  fetch(why: string): Promise<void>;
  /** Called after every fetch, whatever its outcome. */
  onSettled(listener: (why: string) => void): void;
  stop(): void;
}

/** Polled this often while no assignment is in force; the renewal never waits longer than an hour. */
const RETRY_MS = 30_000;
const MAX_WAIT_MS = 3_600_000;
export const MIN_INTERVAL_MS = 10_000;

export function startAssignmentSync(ctx: AgentContext): AssignmentSync {
  const { clock, timers, signal } = ctx;
  const path = join(ctx.stateDir, ASSIGNMENT_FILE);
  const listeners: ((why: string) => void)[] = [];
  let assignment: Assignment | null = null;
  // Nothing fetched yet counts as a failed fetch: a kept assignment holds until one answers.
  let fetchFailed = true;
  let inFlight: Promise<void> | null = null;
  let timer: TimerHandle | undefined;
  // The floor: running from the start of the last fetch, made for `lastConsent`; a fetch asked
  // for meanwhile (for the same consent) waits for it (`pendingWhy`).
  let cooling: TimerHandle | undefined;
  let lastConsent: string | null = null;
  let pendingWhy: string | null = null;
  const consent = () => consentInForce(ctx.engine);

  // Kept across restarts, verified again.
  const kept = readAssignmentJws(path);
  const consentAtStart = consent();
  if (kept !== null && consentAtStart !== null) {
    const c = checkAssignment(kept, {
      keyset: ctx.keys.current(),
      worker: ctx.workerId,
      consent: consentAtStart,
      clock,
      acceptExpired: true,
    });
    if (c.ok) assignment = c.assignment;
  }

  const assigned = (): boolean => {
    const identity = consent()?.identity ?? null;
    const expired = assignment !== null && clock.now() >= assignment.exp * 1000;
    if (expired && assignment?.consent === identity && !fetchFailed) {
      // Just expired: a renewal is fetched, and until it answers the kept one counts, as it
      // does when none can be fetched (no gap at each renewal).
      if (inFlight === null && !signal.aborted) void fetch("expired");
      return inFlight !== null || pendingWhy !== null;
    }
    return assignmentInForce(assignment, identity, clock.now(), fetchFailed);
  };

  const fetchOnce = async (why: string): Promise<void> => {
    const c0 = consent();
    if (c0 === null) return;
    let jws: string;
    try {
      const answer = await ctx.client.getAssignment();
      if ("none" in answer) {
        // The control plane answered that there is none for this machine (nothing published,
        // the consent expired, quarantined): the one kept counts no more.
        assignment = null;
        fetchFailed = false;
        if (!signal.aborted) ctx.log.warn({ why, none: answer.none }, "no assignment");
        return;
      }
      jws = answer.assignment;
    } catch (err) {
      // A stop or a publication being re-issued, or the network: transient. The kept one
      // holds while the decision allows.
      fetchFailed = true;
      if (!signal.aborted) ctx.log.warn({ err, why }, "fetching the assignment failed");
      return;
    }
    const check = () =>
      checkAssignment(jws, {
        keyset: ctx.keys.current(),
        worker: ctx.workerId,
        consent: c0,
        clock,
      });
    const seq0 = ctx.keys.current().seq;
    let c = check();
    if (!c.ok && c.reason === "AGENTD_E_JWS_UNKNOWN_KEY") {
      if (await ctx.keys.refresh("unknown assignment key", seq0)) c = check();
    }
    // Already expired by this machine's clock (the clocks disagree, or the control plane
    // answers with an old one): everything else verified, it is kept as if no fresh one
    // could be fetched — it counts while the decision, which owns time (publication, offline
    // grace, clock floor), allows mining.
    let stale = false;
    if (!c.ok && c.reason === "AGENTD_E_JWS_EXPIRED") {
      const again = checkAssignment(jws, {
        keyset: ctx.keys.current(),
        worker: ctx.workerId,
        consent: c0,
        clock,
        acceptExpired: true,
      });
      if (again.ok) {
        c = again;
        stale = true;
      }
    }
    fetchFailed = stale;
    if (!c.ok) {
      assignment = null;
      ctx.audit.append({ type: "assignment.refused", reason: c.reason, why });
      ctx.log.warn({ reason: c.reason }, "the control plane's assignment was refused");
      return;
    }
    if (assignment?.jws !== c.assignment.jws) {
      assignment = c.assignment;
      writeAssignmentJws(path, jws);
      ctx.audit.append({
        type: "assignment.accepted",
        upstream: { ...c.assignment.upstream },
        exp: c.assignment.exp,
        why,
        ...(stale ? { stale: true } : {}),
      });
    }
  };

  const fetch = (why: string): Promise<void> => {
    if (inFlight !== null) return inFlight;
    const c = consent()?.identity ?? null;
    if (cooling !== undefined && c === lastConsent) {
      // Made when the floor allows (on the timers: a clock set back changes nothing).
      pendingWhy ??= why;
      return Promise.resolve();
    }
    timers.clearTimeout(cooling);
    pendingWhy = null;
    lastConsent = c;
    cooling = timers.setTimeout(() => {
      cooling = undefined;
      const w = pendingWhy;
      pendingWhy = null;
      if (w !== null && !signal.aborted) void fetch(w);
    }, MIN_INTERVAL_MS);
    inFlight ??= (async () => {
      // Yield first: the `finally` below must not run before this promise is assigned.
      await Promise.resolve();
      try {
        if (!signal.aborted) await fetchOnce(why);
      } finally {
        inFlight = null;
        for (const l of listeners) l(`assignment (${why})`);
        schedule();
        // The consent changed while this fetch was out: fetch for the new one.
        const c = consent();
        if (!signal.aborted && !assigned() && c !== null) {
          if (assignment?.consent !== c.identity && why !== "consent changed") {
            void fetch("consent changed");
          }
        }
      }
    })();
    return inFlight;
  };

  const schedule = () => {
    timers.clearTimeout(timer);
    if (signal.aborted) return;
    const held = assignment?.exp;
    const left = held === undefined ? 0 : held * 1000 - clock.now();
    // Renewed halfway through what is left, never sooner than the floor. (It was the earlier
    // of "a minute before" and "halfway": for a lifetime under two minutes, "a minute before"
    // was already past, and the renewal ran every second.)
    const inMs =
      held === undefined || fetchFailed || !assigned()
        ? RETRY_MS
        : Math.max(MIN_INTERVAL_MS, left / 2);
    timer = timers.setTimeout(() => void fetch("renewal"), Math.min(inMs, MAX_WAIT_MS));
  };

  return {
    current: () => assignment,
    assigned,
    apply() {
      const gate = ctx.dataPath.gate;
      if (assigned() && assignment !== null) {
        gate.prefer(assignment.upstream);
        gate.release("agent.unassigned");
      } else {
        gate.hold("agent.unassigned");
      }
    },
    fetch,
    onSettled: (l) => {
      listeners.push(l);
    },
    stop: () => {
      timers.clearTimeout(timer);
      timers.clearTimeout(cooling);
    },
  };
}
