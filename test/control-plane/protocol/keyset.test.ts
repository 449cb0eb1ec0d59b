import type { KeyObject } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  acceptKeySetUpdate,
  KEY_USES,
  KEYSET_TYP,
  type KeyUse,
  resolverFor,
  signKeySet,
  verifyKeySet,
} from "../../../control-plane/protocol/keyset.ts";
import {
  type Ed25519KeyPair,
  generateEd25519KeyPair,
  jwkThumbprint,
  publicJwk,
} from "../../../lib/crypto/ed25519.ts";
import { signJws, verifyJws } from "../../../lib/crypto/jws.ts";
import { AgentdError } from "../../../lib/errors.ts";

const ROOT = generateEd25519KeyPair();
const ROOT_KID = jwkThumbprint(ROOT.publicKey);
const KEYS = Object.fromEntries(KEY_USES.map((u) => [u, generateEd25519KeyPair()])) as Record<
  KeyUse,
  Ed25519KeyPair
>;
const ENTRIES = KEY_USES.map((use) => ({ use, publicKey: KEYS[use].publicKey }));

const sign = (seq: number, root: KeyObject = ROOT.privateKey, keys = ENTRIES): string =>
  signKeySet({ rootPrivateKey: root, seq, iat: 1_700_000_000 + seq, keys });

function refusal(f: () => unknown): AgentdError {
  try {
    f();
  } catch (err) {
    if (err instanceof AgentdError) return err;
    throw err;
  }
  throw new Error("accepted");
}

const entry = (use: string, k: KeyObject) => ({ kid: jwkThumbprint(k), use, jwk: publicJwk(k) });
const goodPayload = (seq: number): Record<string, unknown> => ({
  v: 1,
  seq,
  iat: 1,
  root: publicJwk(ROOT.publicKey),
  keys: KEY_USES.map((u) => entry(u, KEYS[u].publicKey)),
});
/** Signs any payload as a key set, bypassing signKeySet's checks. */
const forge = (payload: Record<string, unknown>, key: KeyObject = ROOT.privateKey): string =>
  signJws({ typ: KEYSET_TYP, payload, privateKey: key });

describe("key set", () => {
  it("verifies with only the pinned root thumbprint", () => {
    const ks = verifyKeySet(sign(1), { rootKid: ROOT_KID });
    expect(ks.seq).toBe(1);
    expect(ks.rootKid).toBe(ROOT_KID);
    expect(jwkThumbprint(ks.root)).toBe(ROOT_KID);
    for (const use of KEY_USES) {
      expect(Object.keys(ks.keys[use])).toEqual([jwkThumbprint(KEYS[use].publicKey)]);
    }
    expect(Object.isFrozen(ks)).toBe(true);
    expect(Object.isFrozen(ks.keys)).toBe(true);
    expect(Object.isFrozen(ks.keys.command)).toBe(true);
    expect(ks.identity).toMatch(/^[0-9a-f]{64}$/);
  });

  it("the resolver of a use returns only keys of that use", () => {
    const ks = verifyKeySet(sign(1), { rootKid: ROOT_KID });
    const command = resolverFor(ks, "command");
    const commandKid = jwkThumbprint(KEYS.command.publicKey);
    expect(command(commandKid)).toBe(ks.keys.command[commandKid]);
    expect(command(jwkThumbprint(KEYS.publication.publicKey))).toBeUndefined();
    expect(command(ROOT_KID)).toBeUndefined();
    expect(command("__proto__")).toBeUndefined();
    expect(command("constructor")).toBeUndefined();
    // a command signed by the command key verifies; one signed by the publication key does not
    const doc = (k: KeyObject) =>
      signJws({ typ: "agentd-command+jwt", payload: { v: 1 }, privateKey: k });
    expect(
      verifyJws(doc(KEYS.command.privateKey), { typ: "agentd-command+jwt", resolveKey: command })
        .header.kid,
    ).toBe(commandKid);
    expect(
      refusal(() =>
        verifyJws(doc(KEYS.publication.privateKey), {
          typ: "agentd-command+jwt",
          resolveKey: command,
        }),
      ).code,
    ).toBe("AGENTD_E_JWS_UNKNOWN_KEY");
  });

  it("is refused when its root is not the pinned one", () => {
    const other = generateEd25519KeyPair();
    const err = refusal(() => verifyKeySet(sign(1, other.privateKey), { rootKid: ROOT_KID }));
    expect(err.code).toBe("AGENTD_E_ENROLL_PIN_MISMATCH");
  });

  it("is refused when signed by a key other than the root it names", () => {
    const err = refusal(() =>
      verifyKeySet(forge(goodPayload(1), KEYS.publication.privateKey), { rootKid: ROOT_KID }),
    );
    expect(err.code).toBe("AGENTD_E_JWS_UNKNOWN_KEY");
  });

  it("is refused when altered after signing", () => {
    const [h, , s] = sign(1).split(".");
    const [, p] = sign(2).split(".");
    expect(refusal(() => verifyKeySet(`${h}.${p}.${s}`, { rootKid: ROOT_KID })).code).toBe(
      "AGENTD_E_JWS_SIGNATURE",
    );
  });

  it("another document type is refused", () => {
    const jws = signJws({
      typ: "agentd-publication+jwt",
      payload: goodPayload(1),
      privateKey: ROOT.privateKey,
    });
    expect(refusal(() => verifyKeySet(jws, { rootKid: ROOT_KID })).code).toBe("AGENTD_E_JWS_TYP");
  });

  const pub = KEYS.publication.publicKey;
  it.each<[string, (p: Record<string, unknown>) => void, string]>([
    [
      "a key with two uses",
      (p) => (p.keys as unknown[]).push(entry("command", pub)),
      "/keys/4/kid",
    ],
    [
      "a key listed twice",
      (p) => (p.keys as unknown[]).push(entry("publication", pub)),
      "/keys/4/kid",
    ],
    ["a use without a key", (p) => (p.keys as unknown[]).splice(1, 1), "/keys"],
    [
      "an unknown use",
      (p) => ((p.keys as Record<string, unknown>[])[0] = entry("admin", pub)),
      "/keys/0/use",
    ],
    [
      "a kid that is not the thumbprint",
      (p) =>
        ((p.keys as Record<string, unknown>[])[0] = {
          ...entry("publication", pub),
          kid: jwkThumbprint(KEYS.command.publicKey),
        }),
      "/keys/0/kid",
    ],
    [
      "the root as a use key",
      (p) => (p.keys as unknown[]).push(entry("token", ROOT.publicKey)),
      "/keys/4/kid",
    ],
    [
      "an extra member in a key",
      (p) =>
        ((p.keys as Record<string, unknown>[])[0] = { ...entry("publication", pub), alg: "EdDSA" }),
      "/keys/0",
    ],
    [
      "a private member in a jwk",
      (p) =>
        ((p.keys as Record<string, unknown>[])[0] = {
          ...entry("publication", pub),
          jwk: { ...publicJwk(pub), d: "AA" },
        }),
      "/keys/0/jwk",
    ],
    ["an extra top-level member", (p) => (p.exp = 5), ""],
    ["v 2", (p) => (p.v = 2), "/v"],
    ["seq 0", (p) => (p.seq = 0), "/seq"],
    ["seq 1.5", (p) => (p.seq = 1.5), "/seq"],
    ["iat as a string", (p) => (p.iat = "1"), "/iat"],
    ["keys not an array", (p) => (p.keys = {}), "/keys"],
  ])("refuses %s (AGENTD_E_SCHEMA)", (_what, edit, pointer) => {
    const p = goodPayload(1);
    edit(p);
    const err = refusal(() => verifyKeySet(forge(p), { rootKid: ROOT_KID }));
    expect(err.code).toBe("AGENTD_E_SCHEMA");
    expect(err.context).toMatchObject({ schema: "keyset", pointer });
  });

  it("signKeySet refuses to sign a key with two uses or a missing use", () => {
    const twoUses = [...ENTRIES, { use: "command" as const, publicKey: pub }];
    expect(refusal(() => sign(1, ROOT.privateKey, twoUses)).code).toBe("AGENTD_E_SCHEMA");
    expect(refusal(() => sign(1, ROOT.privateKey, ENTRIES.slice(1))).code).toBe("AGENTD_E_SCHEMA");
  });

  it("several keys of one use are allowed (rotation overlap) and sorted deterministically", () => {
    const extra = generateEd25519KeyPair().publicKey;
    const a = sign(1, ROOT.privateKey, [
      ...ENTRIES,
      { use: "publication" as const, publicKey: extra },
    ]);
    const b = sign(
      1,
      ROOT.privateKey,
      [{ use: "publication" as const, publicKey: extra }, ...ENTRIES].reverse(),
    );
    expect(a).toBe(b);
    expect(Object.keys(verifyKeySet(a, { rootKid: ROOT_KID }).keys.publication).length).toBe(2);
  });
});

describe("key set rotation", () => {
  const current = verifyKeySet(sign(5), { rootKid: ROOT_KID });
  const fresh = KEY_USES.map((use) => ({ use, publicKey: generateEd25519KeyPair().publicKey }));

  it("accepts a set signed by the root with a higher seq", () => {
    const next = acceptKeySetUpdate(current, sign(6, ROOT.privateKey, fresh));
    expect(next.seq).toBe(6);
    expect(next.rootKid).toBe(ROOT_KID);
    expect(resolverFor(next, "token")(jwkThumbprint(KEYS.token.publicKey))).toBeUndefined();
    expect(acceptKeySetUpdate(current, sign(100)).seq).toBe(100);
  });

  it("refuses a set signed by a publication key", () => {
    const jws = forge({ ...goodPayload(6) }, KEYS.publication.privateKey);
    expect(refusal(() => acceptKeySetUpdate(current, jws)).code).toBe("AGENTD_E_JWS_UNKNOWN_KEY");
  });

  it("refuses a set signed by a fresh key naming itself root", () => {
    const other = generateEd25519KeyPair();
    expect(refusal(() => acceptKeySetUpdate(current, sign(6, other.privateKey, fresh))).code).toBe(
      "AGENTD_E_ENROLL_PIN_MISMATCH",
    );
  });

  it("refuses a set signed by a fresh key naming the real root", () => {
    const other = generateEd25519KeyPair();
    expect(
      refusal(() => acceptKeySetUpdate(current, forge(goodPayload(6), other.privateKey))).code,
    ).toBe("AGENTD_E_JWS_UNKNOWN_KEY");
  });

  it.each([5, 4, 1])("refuses seq %i (not above 5)", (seq) => {
    const err = refusal(() => acceptKeySetUpdate(current, sign(seq, ROOT.privateKey, fresh)));
    expect(err.code).toBe("AGENTD_E_CP_CONFLICT");
    expect(err.context).toMatchObject({ seq, current_seq: 5 });
  });
});
