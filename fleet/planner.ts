/**
 * The fleet planner (issue 18): pure, like the supervisor's (supervisor/plan.ts). From the
 * owner's policy, what the fleet last read, the time and its own small history, it returns
 * actions as data — at most one per miner, none for a miner with an action still pending —
 * and notes for status. It decides nothing the policy guard did not; it makes the machines
 * follow the decision. The rules, in the order they hold, are in fleet/README.md.
 */
import type { Reading } from "../plugins/driver.ts";
import { confirmedAsleep, fleetFacts } from "./facts.ts";
import { judgeProposals } from "./proposals.ts";
import {
  drawOf,
  hottestChip,
  type Step,
  slotsDrift,
  throttleStep,
  unthrottleStep,
  wantedSlots,
} from "./steps.ts";
import type { FleetAction, FleetMiner, FleetPolicy, FleetView, Proposal } from "./types.ts";

/** A miner moved for power or temperature stays so this long (at most one flip per 10 min). */
export const HOLD_MS = 10 * 60_000;
/** Within this of `maxTempC` a unit counts as hot and is throttled first. */
export const TEMP_MARGIN_C = 3;
/** A throttled unit goes back up only this far below `maxTempC` (temperature hysteresis). */
export const TEMP_RESUME_C = 8;
/**
 * Share of the cap kept free: a reduction aims this far under the cap, and a wake needs this
 * much headroom beyond the unit's nameplate, so that readings' noise neither leaves the fleet
 * over the cap nor wakes a unit that will have to sleep again.
 */
export const CAP_MARGIN = 0.05;
/** Default read interval: twice it is the policy guard's 60 s, so no older reading is used. */
export const DEFAULT_READ_INTERVAL_MS = 30_000;

/** Per miner: the last power or temperature move, and whether its target was lowered. */
export interface MinerHistory {
  readonly changedAt: number | null;
  readonly targetLowered: boolean;
}
/** Serializable: the caller stores it and passes it back to the next plan. */
export interface FleetHistory {
  readonly miners: Readonly<Record<string, MinerHistory>>;
}
export const EMPTY_HISTORY: FleetHistory = Object.freeze({ miners: Object.freeze({}) });

export interface PlanOptions {
  readonly history: FleetHistory;
  readonly proposals?: readonly Proposal[];
  readonly readIntervalMs?: number;
}
export interface FleetPlan {
  readonly actions: FleetAction[];
  readonly notes: string[];
  readonly history: FleetHistory;
}

interface Unit {
  readonly m: FleetMiner;
  readonly r: Reading;
}

export function plan(policy: FleetPolicy, view: FleetView, now: number, o: PlanOptions): FleetPlan {
  const actions = new Map<string, FleetAction>();
  const notes: string[] = [];
  const hist: Record<string, MinerHistory> = {};
  for (const m of view.miners) hist[m.id] = o.history.miners[m.id] ?? EMPTY_MINER;
  const pendingOf = (id: string) => view.states[id]?.pending ?? [];
  const units: Unit[] = [];
  for (const m of view.miners) {
    const r = view.states[m.id]?.reading ?? null;
    if (m.slots === "not_owned") notes.push(`${m.id}: may hash elsewhere when denied`);
    if (r === null) notes.push(`${m.id}: not read yet, nothing planned`);
    else units.push({ m, r });
  }
  const free = (u: Unit) => pendingOf(u.m.id).length === 0 && !actions.has(u.m.id);
  const held = (id: string) => {
    const at = hist[id]?.changedAt ?? null;
    return at !== null && now - at < HOLD_MS;
  };
  /** Records a power or temperature move (hysteresis); policy moves do not hold a miner. */
  const move = (s: Step) => {
    const a = s.action;
    actions.set(a.miner, a);
    const h = hist[a.miner] ?? EMPTY_MINER;
    const lowered = a.kind === "setPowerTarget" ? a.why.startsWith("down") : h.targetLowered;
    hist[a.miner] = { changedAt: now, targetLowered: lowered };
  };

  // 1. Pool slots: an owned miner's slots are the agent's, before anything else for it.
  for (const u of units) {
    if (u.m.slots !== "owned" || u.m.capabilities.pools !== "yes" || !free(u)) continue;
    const want = wantedSlots(policy, u.m);
    if (slotsDrift(want, u.r)) {
      actions.set(u.m.id, {
        miner: u.m.id,
        kind: "setPools",
        slots: want,
        why: "slots drifted from the agent's endpoints",
      });
    }
  }
  for (const u of units) {
    const p = pendingOf(u.m.id);
    if (p.length > 0) notes.push(`${u.m.id}: waiting for ${p.map((a) => a.kind).join(", ")}`);
  }

  // 2. Denied (or a window closed before the decision caught up): every miner that can sleep.
  const windowClosed =
    policy.nextChangeAt !== null &&
    now >= policy.nextChangeAt &&
    policy.allowAfterNextChange === false;
  if (!policy.mining.allow || windowClosed) {
    const why = windowClosed
      ? "the schedule window closed"
      : `mining denied: ${policy.mining.reasons.join(", ")}`;
    for (const u of units) {
      if (confirmedAsleep(u.r)) continue;
      if (u.m.capabilities.sleep !== "yes") {
        if (u.m.slots === "owned")
          notes.push(`${u.m.id}: cannot sleep, idles on the agent's slots`);
      } else if (free(u)) actions.set(u.m.id, { miner: u.m.id, kind: "sleep", why });
    }
    const opens = policy.nextChangeAt;
    if (policy.allowAfterNextChange === true && opens !== null && opens > now) {
      notes.push(`mining allowed from ${new Date(opens).toISOString()}: nothing wakes before`);
    }
    return done(actions, notes, hist);
  }

  // 3. Proposals: only less. Their sleeps hold their miners asleep.
  const judged = judgeProposals(policy, o.proposals ?? []);
  notes.push(...judged.notes);
  const askedAsleep = (id: string) => judged.sleepAll ?? judged.sleep.get(id) ?? null;
  for (const u of units) {
    const by = askedAsleep(u.m.id);
    if (by === null || u.r.mode === "sleep" || !free(u)) continue;
    if (u.m.capabilities.sleep === "yes") {
      actions.set(u.m.id, { miner: u.m.id, kind: "sleep", why: `asked by ${by}` });
    } else notes.push(`${u.m.id}: cannot sleep as ${by} asks`);
  }

  // 4. Temperature: hot units, hottest first, throttled where they can be, else asleep.
  const maxTemp = policy.maxTempC;
  const awake = units.filter((u) => u.r.mode !== "sleep");
  if (maxTemp !== null) {
    const hot = awake
      .map((u) => ({ u, t: hottestChip(u.r) }))
      .filter((x): x is { u: Unit; t: number } => x.t !== null && x.t >= maxTemp - TEMP_MARGIN_C)
      .sort((a, b) => b.t - a.t);
    for (const { u, t } of hot) {
      if (!free(u)) continue;
      const why = `down: chip ${t} °C near the ${maxTemp} °C cap`;
      const step = throttleStep(u.m, u.r, why);
      if (step !== null && t <= maxTemp) move(step);
      else if (u.m.capabilities.sleep === "yes")
        move({ action: { miner: u.m.id, kind: "sleep", why }, watts: drawOf(u.m, u.r) });
      else if (step !== null) move(step);
      else notes.push(`${u.m.id}: chip ${t} °C and nothing left to lower`);
    }
  }

  // 5. Power: measured total under the cap; steps up only with measured headroom.
  const cap = judged.maxWatts;
  const facts = fleetFacts(view, now, o.readIntervalMs ?? DEFAULT_READ_INTERVAL_MS);
  const total = facts.watts?.value ?? null;
  // Watts already on their way out: sleeps pending or planned above, throttles planned above.
  let expected = total ?? 0;
  let upInFlight = false;
  for (const u of units) {
    for (const a of pendingOf(u.m.id)) {
      if (a.kind === "sleep" && !confirmedAsleep(u.r)) expected -= drawOf(u.m, u.r);
      if (
        a.kind === "wake" ||
        a.kind === "setPowerTarget" ||
        (a.kind === "setPowerMode" && a.mode !== "low")
      )
        upInFlight = true;
    }
    const a = actions.get(u.m.id);
    if (a?.kind === "sleep") expected -= drawOf(u.m, u.r);
    else if (a?.kind === "setPowerMode" || a?.kind === "setPowerTarget")
      expected -= throttleStep(u.m, u.r, "")?.watts ?? 0;
  }
  if (cap !== null && total === null) {
    notes.push(
      `measured power unknown (${facts.reasons.join("; ")}): nothing goes up under the cap`,
    );
  } else if (cap !== null && expected > cap) {
    reduce(awake.filter(free), expected - (cap - cap * CAP_MARGIN), cap, held, move, notes);
    return done(actions, notes, hist);
  }
  if (cap !== null && upInFlight) return done(actions, notes, hist);
  if (cap !== null && total === null) return done(actions, notes, hist);

  // Candidates to go up, most efficient first (unknown efficiency last), never held ones.
  const ups: Step[] = [];
  for (const u of units) {
    if (!free(u) || held(u.m.id) || askedAsleep(u.m.id) !== null) continue;
    const t = hottestChip(u.r);
    if (maxTemp !== null && t !== null && t >= maxTemp - TEMP_RESUME_C) continue;
    const lowered = hist[u.m.id]?.targetLowered ?? false;
    const step =
      u.r.mode === "sleep"
        ? u.m.capabilities.sleep === "yes"
          ? ({
              action: { miner: u.m.id, kind: "wake", why: "up: allowed" },
              watts: u.m.nameplateW ?? Number.POSITIVE_INFINITY,
            } as Step)
          : null
        : unthrottleStep(u.m, u.r, lowered, "up: headroom");
    if (step !== null) ups.push(step);
  }
  const jth = (id: string) =>
    view.miners.find((m) => m.id === id)?.nameplateJth ?? Number.POSITIVE_INFINITY;
  ups.sort((a, b) => jth(a.action.miner) - jth(b.action.miner));
  if (cap === null) {
    for (const s of ups) move(s);
    return done(actions, notes, hist);
  }
  // One at a time, and only when measured headroom covers it with the margin to spare.
  const headroom = cap - expected;
  const first = ups.find((s) => s.watts + cap * CAP_MARGIN <= headroom);
  if (first !== undefined) move(first);
  else if (ups.length > 0) notes.push(`headroom ${Math.round(headroom)} W: nothing wakes`);
  return done(actions, notes, hist);
}

const EMPTY_MINER: MinerHistory = Object.freeze({ changedAt: null, targetLowered: false });

/**
 * Over the cap: first throttle (low mode, lower target), then sleep the least efficient
 * (nameplate J/TH, highest first; unknown counts as worst), until the expected draw is under
 * the target. A unit moved in the last 10 minutes goes last, so noise does not flip it back.
 */
function reduce(
  cands: readonly Unit[],
  need0: number,
  cap: number,
  held: (id: string) => boolean,
  move: (s: Step) => void,
  notes: string[],
): void {
  let need = need0;
  const order = [...cands].sort(
    (a, b) =>
      Number(held(a.m.id)) - Number(held(b.m.id)) ||
      (b.m.nameplateJth ?? Number.POSITIVE_INFINITY) -
        (a.m.nameplateJth ?? Number.POSITIVE_INFINITY) ||
      (a.m.id < b.m.id ? -1 : 1),
  );
  const why = `down: measured power over the ${cap} W cap`;
  const planned = new Map<string, number>();
  for (const u of order) {
    if (need <= 0) break;
    const s = throttleStep(u.m, u.r, why);
    if (s === null) continue;
    move(s);
    planned.set(u.m.id, s.watts);
    need -= s.watts;
  }
  for (const u of order) {
    if (need <= 0) break;
    if (u.m.capabilities.sleep !== "yes") continue;
    const draw = drawOf(u.m, u.r);
    move({ action: { miner: u.m.id, kind: "sleep", why }, watts: draw });
    need -= draw - (planned.get(u.m.id) ?? 0);
  }
  if (need > 0) notes.push(`${Math.round(need)} W over: nothing left to throttle or sleep`);
}

function done(
  actions: Map<string, FleetAction>,
  notes: string[],
  hist: Record<string, MinerHistory>,
): FleetPlan {
  return { actions: [...actions.values()], notes, history: { miners: hist } };
}
