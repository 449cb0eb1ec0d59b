import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  accessTokenHash,
  createProof,
  normalizeHtu,
  PROOF_TYP,
  verifyProof,
} from "../../../control-plane/protocol/proof.ts";
import { fixedClock } from "../../../lib/clock.ts";
import { encodeBase64url } from "../../../lib/crypto/base64url.ts";
import { privateKeyFromSeed, publicKeyOf } from "../../../lib/crypto/ed25519.ts";
import { decodeJwsUnverified, signJws } from "../../../lib/crypto/jws.ts";
import { AgentdError } from "../../../lib/errors.ts";
import { ACCESS_TOKEN, MACHINE_KEY, NOW, WORKER } from "./schemas-examples.ts";

/** The per-request proof of possession: every reason it can be refused, and htu normalisation. */

const URL_ = `https://cp.example:8443/v1/workers/${WORKER}/heartbeat`;
const pub = publicKeyOf(MACHINE_KEY);
const OTHER = privateKeyFromSeed(Buffer.alloc(32, 77));
const clock = (deltaS = 0) => fixedClock((NOW + deltaS) * 1000);

function reasonOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    if (err instanceof AgentdError) {
      expect(err.code).toBe("AGENTD_E_CP_PROOF_INVALID");
      return String(err.context.reason);
    }
    throw err;
  }
  throw new Error("accepted");
}

const proof = (over: Partial<Parameters<typeof createProof>[0]> = {}) =>
  createProof({
    privateKey: MACHINE_KEY,
    method: "POST",
    url: URL_,
    accessToken: ACCESS_TOKEN,
    clock: clock(),
    ...over,
  });

const check = { method: "POST", url: URL_, accessToken: ACCESS_TOKEN, key: pub, clock: clock() };

const payloadOf = (jws: string) => decodeJwsUnverified(jws).payload as Record<string, unknown>;

describe("request proof", () => {
  it("verifies, returning jti, iat and the signer (the caller checks the jti is new)", () => {
    const p = proof();
    const v = verifyProof(p, check);
    expect(v.kid).toBe(WORKER);
    expect(v.iat).toBe(NOW);
    expect(v.jti).toMatch(/^[A-Za-z0-9_-]{21}[AQgw]$/);
    expect(v.jti).toBe(payloadOf(p).jti);
    // Fresh jti per proof; verifying twice succeeds here (replay is the store's check).
    expect(verifyProof(proof(), check).jti).not.toBe(v.jti);
    expect(verifyProof(p, check).jti).toBe(v.jti);
  });

  it("binds the access token: ath = base64url(sha256(token))", () => {
    const ath = encodeBase64url(createHash("sha256").update(ACCESS_TOKEN).digest());
    expect(accessTokenHash(ACCESS_TOKEN)).toBe(ath);
    expect(payloadOf(proof()).ath).toBe(ath);
    const stolen = { ...check, accessToken: `agentd_at_${"B".repeat(42)}A` };
    expect(reasonOf(() => verifyProof(proof(), stolen))).toBe("ath_mismatch");
    expect(reasonOf(() => verifyProof(proof({ accessToken: undefined } as never), check))).toBe(
      "ath_missing",
    );
  });

  it("carries no ath where no token is sent (register, attest), and refuses one there", () => {
    const register = "https://cp.example:8443/v1/machines/register";
    const p = createProof({
      privateKey: MACHINE_KEY,
      method: "POST",
      url: register,
      clock: clock(),
    });
    expect(payloadOf(p).ath).toBeUndefined();
    const o = { method: "POST", url: register, key: pub, clock: clock() };
    expect(verifyProof(p, o).kid).toBe(WORKER);
    const withAth = createProof({
      privateKey: MACHINE_KEY,
      method: "POST",
      url: register,
      accessToken: ACCESS_TOKEN,
      clock: clock(),
    });
    expect(reasonOf(() => verifyProof(withAth, o))).toBe("ath_unexpected");
  });

  it("refuses another method or URL", () => {
    expect(reasonOf(() => verifyProof(proof(), { ...check, method: "GET" }))).toBe("htm");
    const other = `https://cp.example:8443/v1/workers/${WORKER}/assignment`;
    expect(reasonOf(() => verifyProof(proof(), { ...check, url: other }))).toBe("htu");
    const otherHost = URL_.replace("cp.example", "cp2.example");
    expect(reasonOf(() => verifyProof(proof(), { ...check, url: otherHost }))).toBe("htu");
  });

  it("accepts iat within ±60 s and refuses beyond", () => {
    const p = proof();
    expect(verifyProof(p, { ...check, clock: clock(60) }).iat).toBe(NOW);
    expect(verifyProof(p, { ...check, clock: clock(-60) }).iat).toBe(NOW);
    expect(reasonOf(() => verifyProof(p, { ...check, clock: clock(61) }))).toBe("iat");
    expect(reasonOf(() => verifyProof(p, { ...check, clock: clock(-61) }))).toBe("iat");
  });

  it("refuses another key, tampering, another typ, bad payloads, garbage", () => {
    expect(reasonOf(() => verifyProof(proof({ privateKey: OTHER }), check))).toBe("key");
    const [h, p, s] = proof().split(".") as [string, string, string];
    const flipped = `${h}.${p.slice(0, 10)}${p[10] === "A" ? "B" : "A"}${p.slice(11)}.${s}`;
    expect(reasonOf(() => verifyProof(flipped, check))).toBe("signature");
    const body = payloadOf(proof());
    const asHeartbeat = signJws({
      typ: "agentd-heartbeat+jwt",
      payload: body,
      privateKey: MACHINE_KEY,
    });
    expect(reasonOf(() => verifyProof(asHeartbeat, check))).toBe("typ");
    const extra = signJws({
      typ: PROOF_TYP,
      payload: { ...body, nonce: "x" },
      privateKey: MACHINE_KEY,
    });
    expect(reasonOf(() => verifyProof(extra, check))).toBe("payload");
    const shortJti = signJws({
      typ: PROOF_TYP,
      payload: { ...body, jti: "abc" },
      privateKey: MACHINE_KEY,
    });
    expect(reasonOf(() => verifyProof(shortJti, check))).toBe("payload");
    expect(reasonOf(() => verifyProof("not-a-jws", check))).toBe("malformed");
    expect(reasonOf(() => verifyProof(undefined, check))).toBe("malformed");
    expect(reasonOf(() => verifyProof("x".repeat(100_000), check))).toBe("malformed");
  });

  it("accepts a resolver over registered keys instead of one key", () => {
    const resolve = (kid: string) => (kid === WORKER ? pub : undefined);
    expect(verifyProof(proof(), { ...check, key: resolve }).kid).toBe(WORKER);
    expect(
      reasonOf(() => verifyProof(proof({ privateKey: OTHER }), { ...check, key: resolve })),
    ).toBe("key");
  });
});

describe("htu normalisation", () => {
  it("lower-cases scheme and host, drops the default port, the query and the fragment", () => {
    expect(normalizeHtu("HTTPS://CP.Example:443/v1/keys?x=1#f")).toBe("https://cp.example/v1/keys");
    expect(normalizeHtu("https://cp.example:8443/v1/a/../keys")).toBe(
      "https://cp.example:8443/v1/keys",
    );
    expect(normalizeHtu("https://[::1]:8443/v1")).toBe("https://[::1]:8443/v1");
    expect(normalizeHtu("https://127.0.0.1")).toBe("https://127.0.0.1/");
  });

  it("writes a WebSocket URL as the HTTPS request it upgrades", () => {
    expect(normalizeHtu("wss://cp.example:443/v1/workers/x/stream")).toBe(
      "https://cp.example/v1/workers/x/stream",
    );
  });

  it("refuses plain HTTP, user information and non-URLs", () => {
    for (const bad of [
      "http://cp.example/v1",
      "https://u:p@cp.example/v1",
      "cp.example/v1",
      "ftp://x/",
    ]) {
      expect(reasonOf(() => normalizeHtu(bad))).toBe("htu");
    }
  });

  it("matches a proof made for one spelling of the URL against another spelling", () => {
    const p = proof({ url: `https://CP.example:8443/v1/workers/${WORKER}/heartbeat?x=1` });
    expect(verifyProof(p, check).kid).toBe(WORKER);
  });
});
