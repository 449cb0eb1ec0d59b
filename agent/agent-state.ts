import type { Clock } from "../lib/clock.ts";
import { fail, isAgentdError } from "../lib/errors.ts";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";
import type { Logger } from "../lib/log/logger.ts";
import {
  type AgentEvent,
  type AgentState,
  isAgentState,
  isQuarantineOrigin,
  mayClearQuarantine,
  pathTo,
  type QuarantineRecord,
  requarantines,
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
 *
 * In QUARANTINED the file also keeps where the quarantine came from (`quarantine`, see
 * state-machine.ts). A file written before origins were kept has none: it is read as a clone's
 * quarantine (fail closed: the start is refused and only a new enrollment ends it, as before).
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
  /** Entering (or replacing) a quarantine: where it came from. */
  readonly quarantine?: QuarantineRecord;
}

/** Appends one record durably; throws when it cannot. */
export type AuditAppend = (record: TransitionRecord) => void;

export interface StoredAgentState {
  readonly state: AgentState;
  /** Unix milliseconds of the transition into it (0: never moved). */
  readonly since: number;
  readonly reason: string;
  /** In QUARANTINED only: where the quarantine came from. */
  readonly quarantine?: QuarantineRecord;
}

/** What some events need besides their reason. */
export interface TransitionDetail {
  /** `quarantined`: its origin and the consent in force. */
  readonly quarantine?: QuarantineRecord;
  /** `quarantine_cleared`: the seq of the owner's consent in force now. */
  readonly consentSeq?: number;
}

export interface AgentStateStore {
  current(): StoredAgentState;
  /**
   * Applies `event` (through REVOKED first for a decommission from a live state: pathTo),
   * each step audited then persisted. Throws AGENTD_E_STATE_TRANSITION when it cannot happen
   * here, with nothing changed: also a `quarantine_cleared` that `mayClearQuarantine` refuses,
   * and a `quarantined` without an origin.
   */
  apply(event: AgentEvent, reason: string, detail?: TransitionDetail): StoredAgentState;
}

export function openAgentState(path: string, audit: AuditAppend, clock: Clock): AgentStateStore {
  let current = read(path);
  const step = (event: AgentEvent, to: AgentState, reason: string, q?: QuarantineRecord) => {
    const at = clock.now();
    const from = current.state;
    audit({
      type: "state.transition",
      event,
      from,
      to,
      reason,
      at,
      ...(q === undefined ? {} : { quarantine: q }),
    });
    const next: StoredAgentState = {
      state: to,
      since: at,
      reason,
      ...(q === undefined ? {} : { quarantine: q }),
    };
    writeStateFile(path, FORMAT, next);
    current = next;
  };
  const refuse = (event: AgentEvent, why: string) =>
    fail("AGENTD_E_STATE_TRANSITION", why, { state: current.state, event });
  return {
    current: () => current,
    apply(event, reason, detail = {}) {
      if (event === "quarantined") {
        const q = detail.quarantine;
        if (q === undefined) throw refuse(event, "a quarantine needs its origin");
        // A clone found under the control plane's quarantine replaces it (state-machine.ts).
        if (
          current.state === "QUARANTINED" &&
          requarantines(current.quarantine ?? null, q.origin)
        ) {
          step(event, "QUARANTINED", reason, q);
          return current;
        }
      }
      if (event === "quarantine_cleared") {
        const seq = detail.consentSeq;
        if (seq === undefined || !mayClearQuarantine(current.quarantine ?? null, seq)) {
          throw refuse(
            event,
            `the quarantine in force (${current.quarantine?.origin ?? "none"}) is not cleared by consent seq ${seq ?? "none"}`,
          );
        }
      }
      const steps = pathTo(current.state, event);
      if (steps.length === 0) {
        const t = transition(current.state, event);
        throw fail("AGENTD_E_STATE_TRANSITION", t.ok ? `${event}: no path` : t.reason, {
          state: current.state,
          event,
        });
      }
      for (const e of steps) {
        const t = transition(current.state, e);
        if (!t.ok) throw fail("AGENTD_E_INTERNAL", t.reason);
        const why = e === event ? reason : `${reason} (on the way to ${event})`;
        step(e, t.to, why, t.to === "QUARANTINED" ? detail.quarantine : undefined);
      }
      return current;
    },
  };
}

function read(path: string): StoredAgentState {
  const file = readStateFile(path, { format: FORMAT });
  if (file === undefined) return { state: "UNREGISTERED", since: 0, reason: "" };
  const d = file.data as Partial<Record<keyof StoredAgentState, unknown>> | null;
  const corrupt = () => fail("AGENTD_E_FILE_CORRUPT", `${path}: not an agent state`, { path });
  if (
    d === null ||
    !isAgentState(d.state) ||
    typeof d.since !== "number" ||
    !Number.isSafeInteger(d.since) ||
    typeof d.reason !== "string"
  ) {
    throw corrupt();
  }
  const base = { state: d.state, since: d.since, reason: d.reason };
  if (d.state !== "QUARANTINED") return base;
  // Written before origins were kept: a clone's (fail closed, see above).
  if (d.quarantine === undefined)
    return { ...base, quarantine: { origin: "clone", consent_seq: null } };
  const q = d.quarantine as Partial<Record<keyof QuarantineRecord, unknown>> | null;
  const seq = q?.consent_seq;
  if (
    q === null ||
    typeof q !== "object" ||
    !isQuarantineOrigin(q.origin) ||
    !(seq === null || (typeof seq === "number" && Number.isSafeInteger(seq)))
  ) {
    throw corrupt();
  }
  return { ...base, quarantine: { origin: q.origin, consent_seq: seq } };
}

/**
 * The state as the running agent moves it: a step that cannot happen here (a race of two
 * sources) or cannot be recorded (the audit log failed) leaves the state where it was and
 * answers false; every step taken is logged and reported to `onMoved` (the state metric).
 */
export interface AgentStates {
  current(): StoredAgentState;
  move(event: AgentEvent, reason: string, detail?: TransitionDetail): boolean;
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
    move(event, reason, detail) {
      try {
        store.apply(event, reason, detail);
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
 * start refused until the machine is enrolled again. A quarantine the control plane set does
 * not refuse the start: the agent runs, holds mining (`agent.quarantined`) and waits for the
 * owner's next consent (state-machine.ts).
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
  const cloned = o.machineId !== o.enrolledMachineId;
  if (cloned) {
    states.move("quarantined", "the machine id is not the one enrolled: a cloned identity", {
      quarantine: { origin: "clone", consent_seq: null },
    });
  }
  const s = states.current();
  // A clone is refused even if its quarantine could not be recorded (the audit log failed).
  if (cloned || (s.state === "QUARANTINED" && s.quarantine?.origin !== "control_plane")) {
    throw fail(
      "AGENTD_E_IDENTITY_CLONED",
      "this machine's identity is quarantined (its key is in use on another machine): enroll it again as a new machine",
      { path: o.stateDir },
    );
  }
}
