import { Buffer } from "node:buffer";
import { describe, expect, it } from "vitest";
import {
  ASSIGNMENT_TYP,
  type AssignmentConsent,
  signAssignment,
  verifyAssignment,
} from "../../../control-plane/protocol/documents/assignment.ts";
import {
  ATTESTATION_TYP,
  signAttestation,
  verifyAttestation,
} from "../../../control-plane/protocol/documents/attestation.ts";
import {
  COMMAND_TYP,
  isActionAllowedByConsent,
  signCommand,
  verifyCommand,
} from "../../../control-plane/protocol/documents/command.ts";
import {
  COMMAND_RESULT_TYP,
  signCommandResult,
  verifyCommandResult,
} from "../../../control-plane/protocol/documents/command-result.ts";
import {
  HEARTBEAT_TYP,
  type HeartbeatBody,
  heartbeatAnomalies,
  signHeartbeat,
  verifyHeartbeat,
} from "../../../control-plane/protocol/documents/heartbeat.ts";
import type { HeartbeatPayload } from "../../../control-plane/protocol/schemas/heartbeat.ts";
import { fixedClock } from "../../../lib/clock.ts";
import { encodeBase64url } from "../../../lib/crypto/base64url.ts";
import { jwkThumbprint, privateKeyFromSeed, publicKeyOf } from "../../../lib/crypto/ed25519.ts";
import { decodeJwsUnverified, documentIdentity, signJws } from "../../../lib/crypto/jws.ts";
import { AgentdError } from "../../../lib/errors.ts";
import { parseConsentPayload } from "../../../policy-guard/documents.ts";
import { signConsent } from "../../../policy-guard/sign.ts";
import {
  CP_KEY,
  EXAMPLES,
  HEX,
  MACHINE_KEY,
  NOW,
  OWNER_KEY,
  UUID,
  WORKER,
} from "./schemas-examples.ts";

/**
 * The signed protocol documents: each round-trips, and each verifier refuses a tampered
 * document, another key, another typ, an unknown member, a binding that does not hold and a
 * document outside its time window.
 */

const OTHER_KEY = privateKeyFromSeed(Buffer.alloc(32, 44));
const machinePub = publicKeyOf(MACHINE_KEY);
const cpPub = publicKeyOf(CP_KEY);
const clock = () => fixedClock(NOW * 1000);

function refusal(f: () => unknown): AgentdError {
  try {
    f();
  } catch (err) {
    if (err instanceof AgentdError) return err;
    throw err;
  }
  throw new Error("accepted");
}

/** Flips one character of the payload part: the signature no longer matches. */
function tamper(jws: string): string {
  const [h, p, s] = jws.split(".") as [string, string, string];
  const i = Math.floor(p.length / 2);
  const c = p[i] === "A" ? "B" : "A";
  return `${h}.${p.slice(0, i)}${c}${p.slice(i + 1)}.${s}`;
}

/** A document signed as is, bypassing the module's own checks (what an attacker can do). */
function raw(typ: string, payload: Record<string, unknown>, key = MACHINE_KEY): string {
  return signJws({ typ, payload, privateKey: key });
}

const payloadOf = (jws: string) => decodeJwsUnverified(jws).payload as Record<string, unknown>;

const HEARTBEAT_BODY: HeartbeatBody = (() => {
  const { v: _v, worker: _w, iat: _i, ...body } = EXAMPLES.heartbeat[0] as HeartbeatPayload;
  return body;
})();

describe("heartbeat", () => {
  const hb = () => signHeartbeat({ privateKey: MACHINE_KEY, body: HEARTBEAT_BODY, clock: clock() });

  it("round-trips, with worker and iat from the key and the clock", () => {
    const doc = verifyHeartbeat(hb(), { key: machinePub, clock: clock() });
    expect(doc.payload).toEqual({ v: 1, worker: WORKER, iat: NOW, ...HEARTBEAT_BODY });
    expect(doc.kid).toBe(WORKER);
    expect(doc.identity).toBe(documentIdentity(doc.jws));
  });

  it("refuses tampering, another key, another typ, an unknown member", () => {
    const o = { key: machinePub, clock: clock() };
    expect(refusal(() => verifyHeartbeat(tamper(hb()), o)).code).toBe("AGENTD_E_JWS_SIGNATURE");
    expect(refusal(() => verifyHeartbeat(hb(), { ...o, key: publicKeyOf(OTHER_KEY) })).code).toBe(
      "AGENTD_E_JWS_UNKNOWN_KEY",
    );
    const asResult = raw(COMMAND_RESULT_TYP, payloadOf(hb()));
    expect(refusal(() => verifyHeartbeat(asResult, o)).code).toBe("AGENTD_E_JWS_TYP");
    const extra = raw(HEARTBEAT_TYP, { ...payloadOf(hb()), gpu: 1 });
    const e = refusal(() => verifyHeartbeat(extra, o));
    expect(e.code).toBe("AGENTD_E_SCHEMA");
    expect(e.context.pointer).toBe("/gpu");
  });

  it("refuses a heartbeat about another worker than its signer", () => {
    const other = jwkThumbprint(publicKeyOf(OTHER_KEY));
    const forged = raw(HEARTBEAT_TYP, { ...payloadOf(hb()), worker: other });
    const e = refusal(() => verifyHeartbeat(forged, { key: machinePub, clock: clock() }));
    expect(e.code).toBe("AGENTD_E_JWS_PAYLOAD");
    expect(e.context.member).toBe("worker");
  });

  it("refuses a heartbeat about another worker than the one of the request", () => {
    const resolveAny = (kid: string) =>
      kid === WORKER
        ? machinePub
        : kid === jwkThumbprint(publicKeyOf(OTHER_KEY))
          ? publicKeyOf(OTHER_KEY)
          : undefined;
    const other = jwkThumbprint(publicKeyOf(OTHER_KEY));
    expect(verifyHeartbeat(hb(), { key: resolveAny, clock: clock(), worker: WORKER }).kid).toBe(
      WORKER,
    );
    const e = refusal(() =>
      verifyHeartbeat(hb(), { key: resolveAny, clock: clock(), worker: other }),
    );
    expect(e.code).toBe("AGENTD_E_JWS_PAYLOAD");
    expect(e.context.member).toBe("worker");
  });

  it("refuses an iat more than 60 s away in either direction, accepts 60 s", () => {
    const at = (delta: number) => {
      const c = clock();
      c.advance(delta * 1000);
      return c;
    };
    const token = hb();
    expect(verifyHeartbeat(token, { key: machinePub, clock: at(60) }).payload.iat).toBe(NOW);
    expect(verifyHeartbeat(token, { key: machinePub, clock: at(-60) }).payload.iat).toBe(NOW);
    expect(refusal(() => verifyHeartbeat(token, { key: machinePub, clock: at(61) })).code).toBe(
      "AGENTD_E_JWS_EXPIRED",
    );
    expect(refusal(() => verifyHeartbeat(token, { key: machinePub, clock: at(-61) })).code).toBe(
      "AGENTD_E_JWS_NOT_YET_VALID",
    );
  });

  it("never signs what it would refuse", () => {
    const bad = { ...HEARTBEAT_BODY, counter: 0 };
    const e = refusal(() => signHeartbeat({ privateKey: MACHINE_KEY, body: bad, clock: clock() }));
    expect(e.code).toBe("AGENTD_E_SCHEMA");
    expect(e.context.pointer).toBe("/counter");
  });
});

describe("heartbeat anomaly flags", () => {
  const base = EXAMPLES.heartbeat[0] as HeartbeatPayload;
  const next = (over: Partial<HeartbeatPayload>, telemetry = {}): HeartbeatPayload => ({
    ...base,
    counter: base.counter + 1,
    iat: base.iat + 30,
    ...over,
    telemetry: { ...base.telemetry, uptime_s: base.telemetry.uptime_s + 30, ...telemetry },
  });

  it("flags nothing for a regular successor", () => {
    expect(heartbeatAnomalies(next({}), base, base.iat + 30)).toEqual([]);
    expect(heartbeatAnomalies(base, null, base.iat)).toEqual([]);
  });

  it("flags a counter gap, but not the next counter", () => {
    expect(heartbeatAnomalies(next({ counter: base.counter + 2 }), base, base.iat + 30)).toEqual([
      "counter_gap",
    ]);
  });

  it("flags clock skew beyond 10 s, not at 10 s", () => {
    expect(heartbeatAnomalies(next({}), base, base.iat + 40)).toEqual([]);
    expect(heartbeatAnomalies(next({}), base, base.iat + 41)).toEqual(["clock_skew"]);
    expect(heartbeatAnomalies(next({}), base, base.iat + 19)).toEqual(["clock_skew"]);
  });

  it("flags telemetry that contradicts itself or its predecessor", () => {
    const now = base.iat + 30;
    const flagged = (h: HeartbeatPayload) => heartbeatAnomalies(h, base, now);
    expect(flagged(next({}, { asics: 0 }))).toEqual(["telemetry_inconsistent"]);
    expect(flagged(next({ decision: { mining: false, reasons: [] } }))).toEqual([
      "telemetry_inconsistent",
    ]);
    expect(flagged(next({}, { shares_accepted: 5 }))).toEqual(["telemetry_inconsistent"]);
    expect(flagged(next({}, { uptime_s: base.telemetry.uptime_s + 30 + 121 }))).toEqual([
      "telemetry_inconsistent",
    ]);
    // A restart (uptime went down) resets the share counters legitimately.
    expect(flagged(next({}, { uptime_s: 5, shares_accepted: 0, shares_rejected: 0 }))).toEqual([]);
  });
});

describe("command", () => {
  const sign = (over: { ttlS?: number } = {}) =>
    signCommand({
      privateKey: CP_KEY,
      worker: WORKER,
      seq: 4,
      consentSha256: "ab".repeat(32),
      clock: clock(),
      cmdId: UUID,
      action: "service.restart",
      args: { service: "bitcoind" },
      ...over,
    });
  const o = { key: cpPub, worker: WORKER, clock: clock() };

  it("round-trips with typed args", () => {
    const { jws, payload } = sign();
    const doc = verifyCommand(jws, o);
    expect(doc.payload).toEqual(payload);
    expect(doc.payload).toMatchObject({
      cmd_id: UUID,
      seq: 4,
      consent_sha256: "ab".repeat(32),
      iat: NOW,
      exp: NOW + 600,
    });
    if (doc.payload.action === "service.restart") expect(doc.payload.args.service).toBe("bitcoind");
    const fresh = signCommand({
      privateKey: CP_KEY,
      worker: WORKER,
      seq: 5,
      consentSha256: "ab".repeat(32),
      clock: clock(),
      action: "mining.pause",
      args: {},
    });
    expect(fresh.payload.cmd_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(fresh.payload.cmd_id).not.toBe(UUID);
  });

  it("refuses tampering, a key of another use, another typ, another worker", () => {
    const { jws } = sign();
    expect(refusal(() => verifyCommand(tamper(jws), o)).code).toBe("AGENTD_E_JWS_SIGNATURE");
    // Only the pinned command keys resolve: the machine's own key cannot command it.
    const selfIssued = raw(COMMAND_TYP, payloadOf(jws), MACHINE_KEY);
    expect(refusal(() => verifyCommand(selfIssued, o)).code).toBe("AGENTD_E_JWS_UNKNOWN_KEY");
    const asAssignment = raw(ASSIGNMENT_TYP, payloadOf(jws), CP_KEY);
    expect(refusal(() => verifyCommand(asAssignment, o)).code).toBe("AGENTD_E_JWS_TYP");
    const other = jwkThumbprint(publicKeyOf(OTHER_KEY));
    const e = refusal(() => verifyCommand(jws, { ...o, worker: other }));
    expect(e.context.member).toBe("worker");
  });

  it("refuses free-form args and unknown members, even when validly signed", () => {
    const { jws } = sign();
    const image = raw(
      COMMAND_TYP,
      { ...payloadOf(jws), args: { service: "bitcoind", image: "evil" } },
      CP_KEY,
    );
    const e = refusal(() => verifyCommand(image, o));
    expect(e.code).toBe("AGENTD_E_SCHEMA");
    expect(e.context.pointer).toBe("/args/image");
    const extra = raw(COMMAND_TYP, { ...payloadOf(jws), env: {} }, CP_KEY);
    expect(refusal(() => verifyCommand(extra, o)).context.pointer).toBe("/env");
  });

  it("is dead from exp on, and may not live longer than a day", () => {
    const { jws } = sign({ ttlS: 30 });
    const later = clock();
    later.advance(29_000);
    expect(verifyCommand(jws, { ...o, clock: later }).payload.exp).toBe(NOW + 30);
    later.advance(1_000);
    expect(refusal(() => verifyCommand(jws, { ...o, clock: later })).code).toBe(
      "AGENTD_E_JWS_EXPIRED",
    );
    const long = raw(COMMAND_TYP, { ...payloadOf(jws), exp: NOW + 86_401 }, CP_KEY);
    expect(refusal(() => verifyCommand(long, o)).context.member).toBe("exp");
    expect(refusal(() => sign({ ttlS: 86_401 })).context.member).toBe("exp");
    const future = raw(COMMAND_TYP, { ...payloadOf(jws), iat: NOW + 61, exp: NOW + 200 }, CP_KEY);
    expect(refusal(() => verifyCommand(future, o)).code).toBe("AGENTD_E_JWS_NOT_YET_VALID");
  });

  it("is allowed only when the consent lists the action (an allowlist)", () => {
    expect(isActionAllowedByConsent("mining.pause", ["mining.pause", "mining.resume"])).toBe(true);
    expect(isActionAllowedByConsent("service.stop", ["mining.pause"])).toBe(false);
    expect(isActionAllowedByConsent("mining.pause", [])).toBe(false);
    expect(isActionAllowedByConsent("mining.pause", undefined)).toBe(false);
  });
});

describe("command result", () => {
  const sign = () =>
    signCommandResult({
      privateKey: MACHINE_KEY,
      cmdId: UUID,
      status: "refused",
      reason: "consent.command",
      clock: clock(),
    });
  const o = { key: machinePub, clock: clock() };

  it("round-trips, and may arrive late", () => {
    const later = clock();
    later.advance(3_600_000);
    const doc = verifyCommandResult(sign(), { ...o, clock: later, cmdId: UUID });
    expect(doc.payload).toEqual({
      v: 1,
      cmd_id: UUID,
      worker: WORKER,
      status: "refused",
      reason: "consent.command",
      iat: NOW,
    });
  });

  it("refuses another command, another signer, tampering, an unknown status", () => {
    const other = "00000000-0000-4000-8000-000000000000";
    expect(refusal(() => verifyCommandResult(sign(), { ...o, cmdId: other })).context.member).toBe(
      "cmd_id",
    );
    const notAddressee = jwkThumbprint(publicKeyOf(OTHER_KEY));
    expect(
      refusal(() => verifyCommandResult(sign(), { ...o, worker: notAddressee })).context.member,
    ).toBe("worker");
    expect(
      refusal(() => verifyCommandResult(sign(), { ...o, key: publicKeyOf(OTHER_KEY) })).code,
    ).toBe("AGENTD_E_JWS_UNKNOWN_KEY");
    expect(refusal(() => verifyCommandResult(tamper(sign()), o)).code).toBe(
      "AGENTD_E_JWS_SIGNATURE",
    );
    const odd = raw(COMMAND_RESULT_TYP, { ...payloadOf(sign()), status: "maybe" });
    expect(refusal(() => verifyCommandResult(odd, o)).context.pointer).toBe("/status");
  });
});

describe("attestation", () => {
  const CHALLENGE = encodeBase64url(Buffer.alloc(32, 5));
  const facts = EXAMPLES.attestation[0]?.facts ?? ({} as never);
  const sign = () =>
    signAttestation({ privateKey: MACHINE_KEY, challenge: CHALLENGE, facts, clock: clock() });
  const o = { key: machinePub, clock: clock(), challenge: CHALLENGE };

  it("round-trips", () => {
    expect(verifyAttestation(sign(), o).payload).toEqual({
      v: 1,
      worker: WORKER,
      challenge: CHALLENGE,
      iat: NOW,
      facts,
    });
  });

  it("refuses another challenge, a stale answer, unknown facts, another key", () => {
    const other = encodeBase64url(Buffer.alloc(32, 6));
    expect(
      refusal(() => verifyAttestation(sign(), { ...o, challenge: other })).context.member,
    ).toBe("challenge");
    const later = clock();
    later.advance(61_000);
    expect(refusal(() => verifyAttestation(sign(), { ...o, clock: later })).code).toBe(
      "AGENTD_E_JWS_EXPIRED",
    );
    const extra = raw(ATTESTATION_TYP, {
      ...payloadOf(sign()),
      facts: { ...facts, tpm: "yes" },
    });
    expect(refusal(() => verifyAttestation(extra, o)).context.pointer).toBe("/facts/tpm");
    expect(refusal(() => verifyAttestation(sign(), { ...o, key: cpPub })).code).toBe(
      "AGENTD_E_JWS_UNKNOWN_KEY",
    );
  });
});

describe("assignment", () => {
  const UPSTREAMS = [
    { url: "stratum+tcp://pool.example:3333", user: "owner1.farm-a" },
    { url: "stratum+ssl://backup.example:443", user: "owner1.farm-a" },
  ];
  const consentJws = signConsent({
    ownerKey: OWNER_KEY,
    worker: WORKER,
    rules: { upstreams: UPSTREAMS },
    seq: 1,
    policyId: "farm-a",
    iat: NOW - 100,
    exp: NOW + 86_400,
  });
  const consent: AssignmentConsent = {
    identity: documentIdentity(consentJws),
    payload: parseConsentPayload(payloadOf(consentJws)),
  };
  const sign = (upstream = UPSTREAMS[1] as { url: string; user: string }) =>
    signAssignment({
      privateKey: CP_KEY,
      worker: WORKER,
      consent,
      upstream,
      ttlS: 3600,
      clock: clock(),
    });
  const o = { key: cpPub, worker: WORKER, consent, clock: clock() };

  it("round-trips, naming the consent and one of its upstreams", () => {
    const { jws } = sign();
    expect(verifyAssignment(jws, o).payload).toEqual({
      v: 1,
      worker: WORKER,
      consent_sha256: consent.identity,
      upstream: UPSTREAMS[1],
      iat: NOW,
      exp: NOW + 3600,
    });
  });

  it("never signs an upstream outside the owner's rules", () => {
    for (const upstream of [
      { url: "stratum+tcp://evil.example:3333", user: "owner1.farm-a" },
      { url: "stratum+tcp://pool.example:3333", user: "attacker.1" },
      { url: "stratum+tcp://POOL.example:3333", user: "owner1.farm-a" },
    ]) {
      const e = refusal(() => sign(upstream));
      expect(e.code).toBe("AGENTD_E_JWS_PAYLOAD");
      expect(e.context.member).toBe("upstream");
    }
  });

  it("refuses a validly signed assignment outside the consent, or from another consent", () => {
    const { jws } = sign();
    const evil = raw(
      ASSIGNMENT_TYP,
      { ...payloadOf(jws), upstream: { url: "stratum+tcp://evil.example:3333", user: "x" } },
      CP_KEY,
    );
    expect(refusal(() => verifyAssignment(evil, o)).context.member).toBe("upstream");
    const stale = raw(ASSIGNMENT_TYP, { ...payloadOf(jws), consent_sha256: HEX }, CP_KEY);
    expect(refusal(() => verifyAssignment(stale, o)).context.member).toBe("consent_sha256");
    const none: AssignmentConsent = { ...consent, payload: { ...consent.payload, rules: {} } };
    expect(refusal(() => verifyAssignment(jws, { ...o, consent: none })).context.member).toBe(
      "upstream",
    );
  });

  it("refuses another key, another worker, expiry", () => {
    const { jws } = sign();
    const byMachine = raw(ASSIGNMENT_TYP, payloadOf(jws), MACHINE_KEY);
    expect(refusal(() => verifyAssignment(byMachine, o)).code).toBe("AGENTD_E_JWS_UNKNOWN_KEY");
    const other = jwkThumbprint(publicKeyOf(OTHER_KEY));
    expect(refusal(() => verifyAssignment(jws, { ...o, worker: other })).context.member).toBe(
      "worker",
    );
    const later = clock();
    later.advance(3_600_000);
    expect(refusal(() => verifyAssignment(jws, { ...o, clock: later })).code).toBe(
      "AGENTD_E_JWS_EXPIRED",
    );
  });
});
