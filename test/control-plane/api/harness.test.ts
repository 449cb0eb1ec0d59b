import { describe, expect, it } from "vitest";
import { defineRoute } from "../../../control-plane/http/route.ts";
import { createProof } from "../../../control-plane/protocol/proof.ts";
import { useTestCp } from "./harness.ts";

describe("API test harness (real TLS, store, machine proofs)", () => {
  const start = useTestCp();
  const echo = () => [
    {
      routes: [
        defineRoute({
          method: "GET",
          path: "/v1/workers/{id}/echo",
          auth: ["machine"],
          machineParam: "id",
          async handler(c) {
            return { status: 200, body: { caller: c.caller } };
          },
        }),
      ],
    },
  ];

  it("authenticates a machine by token + proof and refuses a replayed proof", async () => {
    const t = await start({ groups: echo });
    const m = await t.machine(await t.owner());
    const ok = await t.call("GET", `/v1/workers/${m.workerId}/echo`, { machine: m });
    expect(ok.status).toBe(200);
    expect(ok.json.caller).toEqual({ kind: "machine", workerId: m.workerId });
    // the same proof twice: the second is a replay, audited
    const path = `/v1/workers/${m.workerId}/echo`;
    const headers = {
      authorization: `AgentD ${m.accessToken}`,
      "agentd-proof": createProof({
        privateKey: m.privateKey,
        method: "GET",
        url: `${t.url}${path}`,
        accessToken: m.accessToken,
        clock: t.clock,
      }),
    };
    expect((await t.call("GET", path, { headers })).status).toBe(200);
    const replay = await t.call("GET", path, { headers });
    expect(replay.status).toBe(409);
    expect(replay.json.error.code).toBe("AGENTD_E_CP_REPLAY");
    const audit = await t.store.listAudit({ type: "auth.proof_refused" });
    expect(audit.map((e) => e.data.reason)).toEqual(["replay"]);
    // a proof older than the skew bound is refused
    t.clock.advance(61_000);
    expect((await t.call("GET", path, { headers })).status).toBe(401);
    const other = await t.machine(await t.owner());
    const forbidden = await t.call("GET", `/v1/workers/${m.workerId}/echo`, { machine: other });
    expect(forbidden.status).toBe(403);
    const stolen = await t.call("GET", `/v1/workers/${m.workerId}/echo`, {
      headers: { authorization: `AgentD ${m.accessToken}` },
    });
    expect(stolen.status).toBe(401);
  });
});
