/**
 * Judging plugins' proposals (issue 18): a proposal may only ask for less than the consent
 * allows — miners asleep, a lower power cap. Anything else (a cap above the consent's, a wake,
 * any member the planner does not know) is refused with a note naming its source; what it
 * asked within the consent is still honoured, since asking for less is always safe.
 */
import type { FleetPolicy, Proposal } from "./types.ts";

const KNOWN = new Set(["source", "sleep", "maxWatts"]);

export interface Judged {
  /** The lowest of the consent's cap and every honoured proposal's; null: no cap. */
  readonly maxWatts: number | null;
  /** Miners a proposal wants asleep, by source (or every miner). */
  readonly sleep: ReadonlyMap<string, string>;
  readonly sleepAll: string | null;
  readonly notes: readonly string[];
}

export function judgeProposals(policy: FleetPolicy, proposals: readonly Proposal[]): Judged {
  let cap = policy.maxWatts;
  const sleep = new Map<string, string>();
  let sleepAll: string | null = null;
  const notes: string[] = [];
  for (const p of proposals) {
    // Proposals come from plugins at run time: the type is a promise, not a proof.
    for (const k of Object.keys(p).filter((k) => !KNOWN.has(k))) {
      const what = k === "wake" && !policy.mining.allow ? "wake while mining is denied" : k;
      notes.push(`proposal from ${p.source} refused: ${what} (a proposal may only ask for less)`);
    }
    const w = p.maxWatts;
    if (w !== undefined) {
      if (typeof w !== "number" || !Number.isFinite(w) || w < 0) {
        notes.push(`proposal from ${p.source} refused: maxWatts ${String(w)} is not a power`);
      } else if (policy.maxWatts !== null && w > policy.maxWatts) {
        notes.push(
          `proposal from ${p.source} refused: maxWatts ${w} W is above the consent's ${policy.maxWatts} W`,
        );
      } else {
        cap = cap === null ? w : Math.min(cap, w);
      }
    }
    if (p.sleep === "*") sleepAll ??= p.source;
    else if (Array.isArray(p.sleep)) for (const id of p.sleep) sleep.set(id, p.source);
  }
  return { maxWatts: cap, sleep, sleepAll, notes };
}
