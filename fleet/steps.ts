/**
 * One miner's possible steps, for the planner (planner.ts): its pool slots, its power steps
 * down (low mode, a lower target) and back up, and the watts each is expected to move. Pure.
 */
import type { PoolTarget, Reading } from "../plugins/driver.ts";
import type { FleetAction, FleetMiner, FleetPolicy } from "./types.ts";

/**
 * What a low-power mode is assumed to save, as a share of the miner's draw. Deliberately
 * below what firmware reports (~25–30%): underestimating a saving only makes the planner take
 * one more step down, overestimating it would leave the fleet above the cap.
 */
export const LOW_MODE_SAVING = 0.2;
/** Each lower power target is this share of the current draw. */
export const TARGET_STEP = 0.8;

export interface Step {
  readonly action: FleetAction;
  /** Watts it is expected to remove (down) or add (up). */
  readonly watts: number;
}

/** The slots an owned miner must hold: exactly the agent's endpoints, with its worker. */
export function wantedSlots(policy: FleetPolicy, m: FleetMiner): PoolTarget[] {
  return policy.agentEndpoints.map((url) => ({ url, user: m.worker, password: "x" }));
}

/** Whether the slots read differ from the wanted ones (an empty slot is no slot). */
export function slotsDrift(want: readonly PoolTarget[], r: Reading): boolean {
  const have = r.pools.filter((p) => p.url !== "").sort((a, b) => a.index - b.index);
  return (
    have.length !== want.length ||
    have.some((p, i) => p.url !== want[i]?.url || p.user !== want[i]?.user)
  );
}

/** What the miner draws now, best known: measured, else the firmware's estimate, else nameplate. */
export function drawOf(m: FleetMiner, r: Reading): number {
  return r.power?.watts ?? m.nameplateW ?? 0;
}

export function hottestChip(r: Reading): number | null {
  const chips = r.boards.flatMap((b) => b.chipTempC).filter(Number.isFinite);
  return chips.length === 0 ? null : Math.max(...chips);
}

/** The next step down short of sleep: low mode first, then a lower target; null: none left. */
export function throttleStep(m: FleetMiner, r: Reading, why: string): Step | null {
  const draw = drawOf(m, r);
  if (m.capabilities.powerModes.includes("low") && r.mode !== "low") {
    return {
      action: { miner: m.id, kind: "setPowerMode", mode: "low", why },
      watts: draw * LOW_MODE_SAVING,
    };
  }
  const t = m.capabilities.powerTarget;
  if (t !== null) {
    const w = Math.max(t.minW, Math.floor(draw * TARGET_STEP));
    // Already at (or within a few percent of) the floor: no step left.
    if (draw - w >= draw * 0.05) {
      return { action: { miner: m.id, kind: "setPowerTarget", watts: w, why }, watts: draw - w };
    }
  }
  return null;
}

/**
 * The step back up from a throttle: normal mode, or the full target. `lowered`: whether the
 * planner lowered its target (a reading does not show the target). Null when not throttled,
 * or when nameplate power is unknown (the added watts could not be covered).
 */
export function unthrottleStep(
  m: FleetMiner,
  r: Reading,
  lowered: boolean,
  why: string,
): Step | null {
  const full = m.nameplateW;
  if (full === null) return null;
  const draw = drawOf(m, r);
  if (r.mode === "low" && m.capabilities.powerModes.includes("normal")) {
    return {
      action: { miner: m.id, kind: "setPowerMode", mode: "normal", why },
      watts: Math.max(full - draw, 0),
    };
  }
  const t = m.capabilities.powerTarget;
  if (lowered && t !== null) {
    const w = Math.min(t.maxW, full);
    return {
      action: { miner: m.id, kind: "setPowerTarget", watts: w, why },
      watts: Math.max(w - draw, 0),
    };
  }
  return null;
}
