import { describe, expect, it } from "vitest";
import { assignmentInForce, type ConsentInForce, checkAssignment } from "../../agent/assignment.ts";
import { holdingGate } from "../../agent/mining-holds.ts";
import { allGroups } from "../../control-plane/api/index.ts";
import { decodeJwsUnverified, documentIdentity } from "../../lib/crypto/jws.ts";
import { parseConsentPayload } from "../../policy-guard/documents.ts";
import type { MiningGateInput } from "../../policy-guard/gates.ts";
import {
  consentFor,
  enrolledMachine as protocolMachine,
  until,
  useServedCp,
} from "../control-plane/protocol/client-fixture.ts";
import { enrolledMachine } from "./daemon-fixture.ts";

/**
 * The control plane's assignment on the agent's side: verified against the pinned
 * `assignment` keys and the consent in force (real documents from a real control plane), when
 * it counts, and the data path held without one (BRIEF section 6: mining only in ASSIGNED and
 * MINING).
 */

const inForce = (jws: string): ConsentInForce => ({
  identity: documentIdentity(jws),
  payload: parseConsentPayload(decodeJwsUnverified(jws).payload as Record<string, unknown>),
});

describe("assignments", () => {
  const serve = useServedCp();

  it("verify only for this worker, under an assignment key, from the consent in force", async () => {
    const cp = await serve();
    const m = await protocolMachine(cp);
    const c1 = consentFor(m, cp.clock, 1);
    await m.owner.postConsent(c1);
    const answer = await m.client.getAssignment();
    if (!("assignment" in answer)) throw new Error(`no assignment: ${answer.none}`);
    const { assignment } = answer;
    const base = {
      keyset: m.enrollment.keyset,
      worker: m.client.workerId,
      consent: inForce(c1),
      clock: cp.clock,
    };
    const ok = checkAssignment(assignment, base);
    expect(ok).toMatchObject({
      ok: true,
      assignment: { upstream: { url: "stratum+tcp://pool.example:3333", user: "owner1.rig" } },
    });
    // another consent (a newer one of the same owner): it does not derive from it
    const c2 = consentFor(m, cp.clock, 2);
    expect(checkAssignment(assignment, { ...base, consent: inForce(c2) })).toMatchObject({
      ok: false,
    });
    // another worker
    const other = await protocolMachine(cp);
    expect(checkAssignment(assignment, { ...base, worker: other.client.workerId })).toMatchObject({
      ok: false,
    });
    // expired: refused as such, and accepted for keeping only when asked
    const exp = ok.ok ? ok.assignment.exp : 0;
    const late = { now: () => exp * 1000 + 1000 };
    expect(checkAssignment(assignment, { ...base, clock: late })).toEqual({
      ok: false,
      reason: "AGENTD_E_JWS_EXPIRED",
    });
    expect(checkAssignment(assignment, { ...base, clock: late, acceptExpired: true }).ok).toBe(
      true,
    );
    // a forged one: the payload changed, the signature kept
    const [h, p, s] = assignment.split(".");
    const payload = JSON.parse(Buffer.from(p ?? "", "base64url").toString());
    payload.upstream.user = "thief.rig";
    const forged = `${h}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${s}`;
    expect(checkAssignment(forged, base)).toMatchObject({ ok: false });
  });

  it("count for the consent in force, until exp or, past it, while fetching fails", () => {
    const a = {
      jws: "x",
      consent: "c".repeat(64),
      upstream: { url: "stratum+tcp://p:1", user: "u" },
      exp: 1000,
    };
    expect(assignmentInForce(a, a.consent, 999_000, false)).toBe(true);
    expect(assignmentInForce(a, a.consent, 1_000_000, false)).toBe(false);
    expect(assignmentInForce(a, a.consent, 1_000_000, true)).toBe(true);
    expect(assignmentInForce(a, "d".repeat(64), 999_000, true)).toBe(false);
    expect(assignmentInForce(a, null, 999_000, true)).toBe(false);
    expect(assignmentInForce(null, a.consent, 999_000, true)).toBe(false);
  });

  it("the assigned upstream is dialled first, if and only if the owner allowed it exactly", () => {
    const seen: MiningGateInput[] = [];
    const g = holdingGate({ name: "proxy", apply: (i) => void seen.push(i) });
    const A = { url: "stratum+tcp://a:1", user: "o.a" };
    const B = { url: "stratum+tcp://b:1", user: "o.b" };
    g.apply({
      allow: true,
      reasons: [],
      upstreams: [A, B],
      networks: [],
      maxWatts: null,
      maxTempC: null,
      jobClasses: null,
    });
    g.prefer(B);
    expect(seen.at(-1)?.upstreams).toEqual([B, A]);
    g.prefer({ url: B.url, user: "someone.else" });
    expect(seen.at(-1)?.upstreams).toEqual([A, B]);
    g.prefer(null);
    expect(seen.at(-1)?.upstreams).toEqual([A, B]);
  });

  it("without an assignment the machine is ELIGIBLE and does not mine; with one, ASSIGNED", async () => {
    // a control plane that hands out no assignments
    const noAssignment = (ctx: Parameters<typeof allGroups>[0]) =>
      allGroups(ctx).map((g) => ({
        ...g,
        routes: g.routes.filter((r) => !r.path.endsWith("/assignment")),
      }));
    const cp = await serve({ groups: noAssignment });
    const m = await enrolledMachine(cp);
    const agent = await m.start();
    try {
      const published = await m.ownerApi.postConsent(m.consent(1));
      const status = () =>
        agent.status() as {
          policy: { version: number };
          decision: { mining: boolean; reasons: string[] };
          policy_decision: { mining: boolean };
        };
      await until(() => status().policy.version === published.version, "the publication");
      await until(() => agent.state() === "ELIGIBLE", "ELIGIBLE");
      await new Promise((r) => setTimeout(r, 300));
      expect(agent.state()).toBe("ELIGIBLE");
      expect(status().policy_decision.mining).toBe(true);
      expect(status().decision).toEqual({ mining: false, reasons: ["agent.unassigned"] });
    } finally {
      await agent.close();
    }
  });
});
