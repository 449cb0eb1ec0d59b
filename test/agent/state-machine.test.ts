import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openAgentState, STATE_FILE, type TransitionRecord } from "../../agent/agent-state.ts";
import {
  AGENT_EVENTS,
  AGENT_STATES,
  type AgentEvent,
  type AgentState,
  mayClearQuarantine,
  miningAllowedIn,
  pathTo,
  requarantines,
  transition,
} from "../../agent/state-machine.ts";
import { fixedClock } from "../../lib/clock.ts";
import { AgentdError } from "../../lib/errors.ts";
import { ChainLog, verifyChainLog } from "../../lib/fs/chain-log.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "agentd-state-"));
  dirs.push(d);
  return d;
}

/** Every (state, event) pair the brief allows, written out by hand from BRIEF section 6. */
const ALLOWED: Readonly<Record<string, AgentState>> = {
  "UNREGISTERED registered": "REGISTERED",
  "REGISTERED attested": "ATTESTED",
  "ATTESTED policy_synced": "POLICY_SYNCED",
  "POLICY_SYNCED eligible": "ELIGIBLE",
  "ELIGIBLE assigned": "ASSIGNED",
  "ASSIGNED mining_started": "MINING",
  "MINING paused": "PAUSED",
  "ASSIGNED paused": "PAUSED",
  "PAUSED resumed": "MINING",
  "ELIGIBLE ineligible": "POLICY_SYNCED",
  "ASSIGNED ineligible": "POLICY_SYNCED",
  "MINING ineligible": "POLICY_SYNCED",
  "PAUSED ineligible": "POLICY_SYNCED",
  "REVOKED consent_renewed": "POLICY_SYNCED",
  // issue 15: the owner's newer consent clears the control plane's quarantine (a guard the
  // persisted state applies: mayClearQuarantine)
  "QUARANTINED quarantine_cleared": "POLICY_SYNCED",
  "REVOKED decommissioned": "TERMINATED",
  "QUARANTINED decommissioned": "TERMINATED",
  ...Object.fromEntries(
    AGENT_STATES.filter((s) => !["REVOKED", "QUARANTINED", "TERMINATED"].includes(s)).map((s) => [
      `${s} revoked`,
      "REVOKED",
    ]),
  ),
  ...Object.fromEntries(
    AGENT_STATES.filter((s) => !["QUARANTINED", "TERMINATED"].includes(s)).map((s) => [
      `${s} quarantined`,
      "QUARANTINED",
    ]),
  ),
};

describe("state machine", () => {
  it("allows exactly the transitions of the brief, every other pair refused with a reason", () => {
    for (const s of AGENT_STATES) {
      for (const e of AGENT_EVENTS) {
        const t = transition(s, e);
        const want = ALLOWED[`${s} ${e}`];
        if (want === undefined) {
          expect(t.ok, `${s} ${e}`).toBe(false);
          if (!t.ok) expect(t.reason).toContain(e);
        } else expect(t, `${s} ${e}`).toEqual({ ok: true, from: s, to: want });
      }
    }
  });

  it("TERMINATED is final; mining only in ASSIGNED and MINING", () => {
    expect(AGENT_EVENTS.some((e) => transition("TERMINATED", e).ok)).toBe(false);
    expect(AGENT_STATES.filter(miningAllowedIn)).toEqual(["ASSIGNED", "MINING"]);
  });

  it("a decommission from a live state passes through REVOKED", () => {
    expect(pathTo("MINING", "decommissioned")).toEqual(["revoked", "decommissioned"]);
    expect(pathTo("REVOKED", "decommissioned")).toEqual(["decommissioned"]);
    expect(pathTo("TERMINATED", "decommissioned")).toEqual([]);
    expect(pathTo("ATTESTED", "mining_started")).toEqual([]);
  });
});

describe("quarantine origins", () => {
  it("only the owner's newer consent clears only the control plane's quarantine", () => {
    const cp = { origin: "control_plane", consent_seq: 4 } as const;
    expect(mayClearQuarantine(cp, 5)).toBe(true);
    expect(mayClearQuarantine(cp, 4)).toBe(false);
    expect(mayClearQuarantine(cp, 3)).toBe(false);
    expect(mayClearQuarantine({ origin: "control_plane", consent_seq: null }, 1)).toBe(true);
    expect(mayClearQuarantine({ origin: "clone", consent_seq: 4 }, 99)).toBe(false);
    expect(mayClearQuarantine(null, 99)).toBe(false);
  });

  it("a clone replaces the control plane's quarantine, never the other way round", () => {
    expect(requarantines({ origin: "control_plane", consent_seq: 1 }, "clone")).toBe(true);
    expect(requarantines({ origin: "clone", consent_seq: 1 }, "control_plane")).toBe(false);
    expect(requarantines({ origin: "control_plane", consent_seq: 1 }, "control_plane")).toBe(false);
    expect(requarantines(null, "clone")).toBe(false);
  });
});

describe("persisted agent state", () => {
  function open(dir: string, clock = fixedClock(1_790_000_000_000)) {
    const { log } = ChainLog.open(join(dir, "audit.jsonl"));
    const records: TransitionRecord[] = [];
    const store = openAgentState(
      join(dir, STATE_FILE),
      (r) => {
        log.append({ ...r });
        records.push(r);
      },
      clock,
    );
    return { store, records, log, clock };
  }

  it("starts UNREGISTERED, persists every transition and audits it with its reason", () => {
    const dir = tempDir();
    const { store, clock } = open(dir);
    expect(store.current()).toEqual({ state: "UNREGISTERED", since: 0, reason: "" });
    const walk: [AgentEvent, string][] = [
      ["registered", "enrolled with the control plane"],
      ["attested", "attestation accepted"],
      ["policy_synced", "bundle v7 accepted"],
      ["eligible", "decision allows mining"],
      ["assigned", "assignment received"],
      ["mining_started", "first share forwarded"],
    ];
    for (const [e, why] of walk) {
      clock.advance(1000);
      store.apply(e, why);
    }
    expect(store.current()).toEqual({
      state: "MINING",
      since: 1_790_000_006_000,
      reason: "first share forwarded",
    });
    // a fresh process reads the same state
    expect(open(dir).store.current().state).toBe("MINING");
    const lines = readFileSync(join(dir, "audit.jsonl"), "utf8").trim().split("\n");
    expect(lines.map((l) => JSON.parse(l).to)).toEqual([
      "REGISTERED",
      "ATTESTED",
      "POLICY_SYNCED",
      "ELIGIBLE",
      "ASSIGNED",
      "MINING",
    ]);
    expect(verifyChainLog(join(dir, "audit.jsonl")).ok).toBe(true);
  });

  it("refuses a transition the state does not allow, changing and auditing nothing", () => {
    const dir = tempDir();
    const { store, records } = open(dir);
    store.apply("registered", "enrolled");
    let err: unknown;
    try {
      store.apply("mining_started", "eager");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AgentdError);
    expect((err as AgentdError).code).toBe("AGENTD_E_STATE_TRANSITION");
    expect((err as AgentdError).context).toMatchObject({
      state: "REGISTERED",
      event: "mining_started",
    });
    expect(store.current().state).toBe("REGISTERED");
    expect(records).toHaveLength(1);
  });

  it("changes nothing when the audit log cannot be written", () => {
    const dir = tempDir();
    const path = join(dir, STATE_FILE);
    const store = openAgentState(
      path,
      () => {
        throw new Error("ENOSPC: no space left on device");
      },
      fixedClock(0),
    );
    expect(() => store.apply("registered", "enrolled")).toThrow("ENOSPC");
    expect(store.current().state).toBe("UNREGISTERED");
    expect(() => readFileSync(path)).toThrow();
  });

  it("a decommission while mining is recorded as a revocation, then the end", () => {
    const dir = tempDir();
    const { store, records } = open(dir);
    for (const e of ["registered", "attested", "policy_synced", "eligible", "assigned"] as const) {
      store.apply(e, "setup");
    }
    store.apply("decommissioned", "owner-signed decommission d1");
    expect(store.current().state).toBe("TERMINATED");
    expect(records.slice(-2).map((r) => [r.event, r.from, r.to, r.reason])).toEqual([
      [
        "revoked",
        "ASSIGNED",
        "REVOKED",
        "owner-signed decommission d1 (on the way to decommissioned)",
      ],
      ["decommissioned", "REVOKED", "TERMINATED", "owner-signed decommission d1"],
    ]);
  });

  it("keeps a quarantine's origin; clears the control plane's by a newer consent only, a clone's never", () => {
    const dir = tempDir();
    const { store, records } = open(dir);
    store.apply("registered", "enrolled");
    const refused = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return (err as AgentdError).code;
      }
      return "applied";
    };
    // an origin is required
    expect(refused(() => store.apply("quarantined", "no origin"))).toBe(
      "AGENTD_E_STATE_TRANSITION",
    );
    store.apply("quarantined", "command c1", {
      quarantine: { origin: "control_plane", consent_seq: 3 },
    });
    expect(open(dir).store.current().quarantine).toEqual({
      origin: "control_plane",
      consent_seq: 3,
    });
    expect(records.at(-1)).toMatchObject({
      to: "QUARANTINED",
      quarantine: { origin: "control_plane", consent_seq: 3 },
    });
    // the same consent, or none said: refused, nothing recorded
    const before = records.length;
    expect(refused(() => store.apply("quarantine_cleared", "seq 3", { consentSeq: 3 }))).toBe(
      "AGENTD_E_STATE_TRANSITION",
    );
    expect(refused(() => store.apply("quarantine_cleared", "none"))).toBe(
      "AGENTD_E_STATE_TRANSITION",
    );
    expect(records).toHaveLength(before);
    store.apply("quarantine_cleared", "seq 4", { consentSeq: 4 });
    expect(store.current()).toMatchObject({ state: "POLICY_SYNCED" });
    expect(store.current().quarantine).toBeUndefined();

    // a clone found under the control plane's quarantine replaces it, and is never cleared
    store.apply("quarantined", "command c2", {
      quarantine: { origin: "control_plane", consent_seq: 4 },
    });
    store.apply("quarantined", "another machine id", {
      quarantine: { origin: "clone", consent_seq: 4 },
    });
    expect(records.at(-1)).toMatchObject({ from: "QUARANTINED", to: "QUARANTINED" });
    expect(open(dir).store.current().quarantine?.origin).toBe("clone");
    expect(refused(() => store.apply("quarantine_cleared", "seq 9", { consentSeq: 9 }))).toBe(
      "AGENTD_E_STATE_TRANSITION",
    );
    // and the control plane's does not replace a clone's
    expect(
      refused(() =>
        store.apply("quarantined", "command c3", {
          quarantine: { origin: "control_plane", consent_seq: 9 },
        }),
      ),
    ).toBe("AGENTD_E_STATE_TRANSITION");
  });

  it("reads a quarantine written before origins were kept as a clone's (fail closed)", () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, STATE_FILE),
      '{"format":1,"data":{"reason":"the control plane quarantined this machine (ok)","since":5,"state":"QUARANTINED"}}\n',
      { mode: 0o600 },
    );
    const { store } = open(dir);
    expect(store.current().quarantine).toEqual({ origin: "clone", consent_seq: null });
    expect(() => store.apply("quarantine_cleared", "seq 9", { consentSeq: 9 })).toThrow();
  });

  it("refuses a state file it cannot read rather than starting over", () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, STATE_FILE),
      '{"format":1,"data":{"state":"FLYING","since":0,"reason":""}}\n',
      {
        mode: 0o600,
      },
    );
    expect(() => open(dir)).toThrow(/not an agent state/);
  });
});
