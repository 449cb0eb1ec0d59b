import type { Clock } from "../lib/clock.ts";
import { fail, isAgentdError } from "../lib/errors.ts";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";
import type { Logger } from "../lib/log/logger.ts";
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

/**
 * The state as the running agent moves it: a step that cannot happen here (a race of two
 * sources) or cannot be recorded (the audit log failed) leaves the state where it was and
 * answers false; every step taken is logged and reported to `onMoved` (the state metric).
 */
export interface AgentStates {
  current(): StoredAgentState;
  move(event: AgentEvent, reason: string): boolean;
}

export function agentStates(
  store: AgentStateStore,
  o: {
    readonly log: Logger;
    readonly onMoved: (state: AgentState) => void;
  },
): AgentStates {
  return {
    current: () => store.current(),
    move(event, reason) {
      try {
        store.apply(event, reason);
      } catch (err) {
        // Not allowed here (a race of two sources), or the audit log failed: either way the
        // state stays where it was, recorded or not at all.
        if (isAgentdError(err) && err.code === "AGENTD_E_STATE_TRANSITION") return false;
        o.log.error({ err, event }, "a state change could not be recorded; the state stays");
        return false;
      }
      o.log.info({ event, state: store.current().state, reason }, "state changed");
      o.onMoved(store.current().state);
      return true;
    },
  };
}

/**
 * The state the agent may start in: not after a decommission; registered once enrolled; and
 * never with the enrolled key on another machine — a clone is quarantined, recorded, and the
 * start refused until the machine is enrolled again.
 */
export function admitStart(
  states: AgentStates,
  o: {
    readonly stateDir: string;
    readonly url: string;
    readonly enrolledMachineId: string;
    /** This machine's id now. */
    readonly machineId: string;
  },
): void {
  if (states.current().state === "TERMINATED") {
    throw fail(
      "AGENTD_E_NOT_ENROLLED",
      "this machine was decommissioned by its owner: enroll it again to use it",
      { path: o.stateDir },
    );
  }
  if (states.current().state === "UNREGISTERED")
    states.move("registered", `enrolled with ${o.url}`);
  if (o.machineId !== o.enrolledMachineId) {
    states.move("quarantined", "the machine id is not the one enrolled: a cloned identity");
  }
  if (states.current().state === "QUARANTINED") {
    throw fail(
      "AGENTD_E_IDENTITY_CLONED",
      "this machine's identity is quarantined (its key is in use on another machine, or the control plane said so): enroll it again as a new machine",
      { path: o.stateDir },
    );
  }
}
