import type { Clock } from "../lib/clock.ts";
import { fail } from "../lib/errors.ts";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";
import {
  type AgentEvent,
  type AgentState,
  isAgentState,
  pathTo,
  transition,
} from "./state-machine.ts";

/**
 * The agent's state, persisted, every transition audited with its reason (BRIEF section 6).
 *
 * Order: the audit record is appended first (the log fsyncs it), the state file written
 * after. So nothing changes that was not recorded: if the log cannot be written (disk full,
 * an I/O error) the transition throws and the state stays as it was — the caller denies
 * mining until the log works again. A crash between the two leaves the log one transition
 * ahead of the file; the next start reads the file, and the transition is made (and
 * recorded) again, which is harmless: each is recorded with its time.
 */

export const STATE_FILE = "agent-state.json";
const FORMAT = 1;

/** What a transition record holds (the audit log adds its sequence and hash chain). */
export interface TransitionRecord {
  readonly type: "state.transition";
  readonly event: AgentEvent;
  readonly from: AgentState;
  readonly to: AgentState;
  readonly reason: string;
  /** Unix milliseconds. */
  readonly at: number;
}

/** Appends one record durably; throws when it cannot. */
export type AuditAppend = (record: TransitionRecord) => void;

export interface StoredAgentState {
  readonly state: AgentState;
  /** Unix milliseconds of the transition into it (0: never moved). */
  readonly since: number;
  readonly reason: string;
}

export interface AgentStateStore {
  current(): StoredAgentState;
  /**
   * Applies `event` (through REVOKED first for a decommission from a live state: pathTo),
   * each step audited then persisted. Throws AGENTD_E_STATE_TRANSITION when it cannot happen
   * here, with nothing changed.
   */
  apply(event: AgentEvent, reason: string): StoredAgentState;
}

export function openAgentState(path: string, audit: AuditAppend, clock: Clock): AgentStateStore {
  let current = read(path);
  return {
    current: () => current,
    apply(event, reason) {
      const steps = pathTo(current.state, event);
      if (steps.length === 0) {
        const t = transition(current.state, event);
        throw fail("AGENTD_E_STATE_TRANSITION", t.ok ? `${event}: no path` : t.reason, {
          state: current.state,
          event,
        });
      }
      for (const step of steps) {
        const t = transition(current.state, step);
        if (!t.ok) throw fail("AGENTD_E_INTERNAL", t.reason);
        const at = clock.now();
        const why = step === event ? reason : `${reason} (on the way to ${event})`;
        audit({ type: "state.transition", event: step, from: t.from, to: t.to, reason: why, at });
        const next: StoredAgentState = { state: t.to, since: at, reason: why };
        writeStateFile(path, FORMAT, next);
        current = next;
      }
      return current;
    },
  };
}

function read(path: string): StoredAgentState {
  const file = readStateFile(path, { format: FORMAT });
  if (file === undefined) return { state: "UNREGISTERED", since: 0, reason: "" };
  const d = file.data as Partial<Record<keyof StoredAgentState, unknown>> | null;
  if (
    d === null ||
    !isAgentState(d.state) ||
    typeof d.since !== "number" ||
    !Number.isSafeInteger(d.since) ||
    typeof d.reason !== "string"
  ) {
    throw fail("AGENTD_E_FILE_CORRUPT", `${path}: not an agent state`, { path });
  }
  return { state: d.state, since: d.since, reason: d.reason };
}
