import { describe, expect, it } from "vitest";
import type { MachineProofInput } from "../../../control-plane/http/auth.ts";
import { defineRoute, type Route } from "../../../control-plane/http/route.ts";
import { fail } from "../../../lib/errors.ts";
import {
  call,
  captureLogger,
  errorCode,
  fakeMachineAuth,
  machineHeaders,
  makeApiKeys,
  useServers,
  useTestCert,
} from "./helpers.ts";

/**
 * `machineProofOnly` (route.ts): on such a route a machine authenticates by its AgentD-Proof
 * alone, through the route's own authenticator, while every other route keeps requiring the
 * access token. The authenticator here: proof `proof-<worker>` is that worker; `jws-garbage`
 * is a malformed JWS; `replayed` a replay.
 */

const cert = useTestCert();
const start = useServers();
const json = { "content-type": "application/json" };

function setup() {
  const ran: string[] = [];
  const proofCalls: MachineProofInput[] = [];
  const proofOnly = async (input: MachineProofInput) => {
    proofCalls.push(input);
    if (input.proof === "jws-garbage") throw fail("AGENTD_E_JWS_MALFORMED", "not a JWS");
    if (input.proof === "replayed") throw fail("AGENTD_E_CP_REPLAY", "seen before");
    if (!input.proof.startsWith("proof-")) throw fail("AGENTD_E_CP_UNAUTHENTICATED", "unknown");
    return { worker_id: input.proof.slice("proof-".length) };
  };
  const routes: Route[] = [
    defineRoute({
      method: "POST",
      path: "/v1/auth/agent/attest",
      auth: ["machine"],
      machineProofOnly: proofOnly,
      body: {
        validate: (v) => {
          if (typeof (v as { a?: unknown }).a !== "string") {
            throw fail("AGENTD_E_SCHEMA", "a must be a string", { schema: "t", pointer: "/a" });
          }
          return v;
        },
      },
      async handler(c) {
        ran.push("attest");
        return { status: 200, body: { caller: c.caller } };
      },
    }),
    defineRoute({
      method: "GET",
      path: "/v1/workers/{id}/commands",
      auth: ["machine"],
      machineParam: "id",
      async handler(c) {
        ran.push("commands");
        return { status: 200, body: { caller: c.caller } };
      },
    }),
    defineRoute({
      method: "GET",
      path: "/v1/audit/events",
      auth: ["admin"],
      // Meaningless without `machine` in auth: must not open the route to proofs.
      machineProofOnly: proofOnly,
      async handler() {
        ran.push("audit");
        return { status: 200, body: {} };
      },
    }),
  ];
  const keys = makeApiKeys();
  const machine = fakeMachineAuth();
  return {
    ran,
    proofCalls,
    keys,
    machine,
    options: {
      routes,
      tls: cert(),
      findApiKey: keys.findApiKey,
      authenticateMachine: machine.authenticateMachine,
      logger: captureLogger().logger,
    },
  };
}

describe("machineProofOnly routes", () => {
  it("authenticate a machine by its proof alone through the route's authenticator", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const r = await call(port, cert().cert, {
      method: "POST",
      path: "/v1/auth/agent/attest",
      headers: { ...json, "agentd-proof": "proof-w1" },
      body: '{"a":"b"}',
    });
    expect(r.status).toBe(200);
    expect((r.json as { caller: unknown }).caller).toEqual({ kind: "machine", workerId: "w1" });
    expect(s.proofCalls).toEqual([
      {
        proof: "proof-w1",
        method: "POST",
        url: `https://127.0.0.1:${port}/v1/auth/agent/attest`,
      },
    ]);
    // The token authenticator was never asked.
    expect(s.machine.calls).toEqual([]);
  });

  it("check credentials before the body: none → 401, an API key of another role → 403", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const c = cert().cert;
    const bad = '{"a":1,"a":2';
    const none = await call(port, c, {
      method: "POST",
      path: "/v1/auth/agent/attest",
      headers: json,
      body: bad,
    });
    expect([none.status, errorCode(none)]).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    const admin = await call(port, c, {
      method: "POST",
      path: "/v1/auth/agent/attest",
      headers: { ...json, authorization: `Bearer ${s.keys.keys.admin}` },
      body: bad,
    });
    expect([admin.status, errorCode(admin)]).toEqual([403, "AGENTD_E_CP_FORBIDDEN"]);
    const badBody = await call(port, c, {
      method: "POST",
      path: "/v1/auth/agent/attest",
      headers: { ...json, "agentd-proof": "proof-w1" },
      body: bad,
    });
    expect([badBody.status, errorCode(badBody)]).toEqual([400, "AGENTD_E_JSON_DUPLICATE_KEY"]);
    expect(s.ran).toEqual([]);
  });

  it("refuse an access token there, and keep the authenticator's refusals as 401/409", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const c = cert().cert;
    const attest = (headers: Record<string, string>) =>
      call(port, c, {
        method: "POST",
        path: "/v1/auth/agent/attest",
        headers: { ...json, ...headers },
        body: '{"a":"b"}',
      });
    // A token the proof is not bound to: refused without asking either authenticator.
    const withToken = await attest(machineHeaders("w1"));
    expect([withToken.status, errorCode(withToken)]).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    expect(s.machine.calls).toEqual([]);
    expect(s.proofCalls).toEqual([]);
    const garbage = await attest({ "agentd-proof": "jws-garbage" });
    expect([garbage.status, errorCode(garbage)]).toEqual([401, "AGENTD_E_CP_PROOF_INVALID"]);
    const replay = await attest({ "agentd-proof": "replayed" });
    expect([replay.status, errorCode(replay)]).toEqual([409, "AGENTD_E_CP_REPLAY"]);
    const unknown = await attest({ "agentd-proof": "stranger" });
    expect([unknown.status, errorCode(unknown)]).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    expect(unknown.headers["www-authenticate"]).toMatch(/AgentD/);
    const empty = await attest({ "agentd-proof": "" });
    expect([empty.status, errorCode(empty)]).toEqual([401, "AGENTD_E_CP_PROOF_INVALID"]);
    const twice = await attest({ "agentd-proof": ["proof-w1", "proof-w1"] } as unknown as Record<
      string,
      string
    >);
    expect(twice.status).toBe(401);
    expect(s.ran).toEqual([]);
  });

  it("leave every other route as it was: a proof alone is not enough", async () => {
    const s = setup();
    const { port } = await start(s.options);
    const c = cert().cert;
    const commands = await call(port, c, {
      path: "/v1/workers/w1/commands",
      headers: { "agentd-proof": "proof-w1" },
    });
    expect([commands.status, errorCode(commands)]).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    const withToken = await call(port, c, {
      path: "/v1/workers/w1/commands",
      headers: machineHeaders("w1"),
    });
    expect(withToken.status).toBe(200);
    // Declared on a route without `machine`, the option opens nothing.
    const audit = await call(port, c, {
      path: "/v1/audit/events",
      headers: { "agentd-proof": "proof-w1" },
    });
    expect([audit.status, errorCode(audit)]).toEqual([401, "AGENTD_E_CP_UNAUTHENTICATED"]);
    expect(s.proofCalls).toEqual([]);
    expect(s.ran).toEqual(["commands"]);
  });
});
