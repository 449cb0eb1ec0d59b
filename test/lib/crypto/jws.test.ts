import { Buffer } from "node:buffer";
import { createHash, type KeyObject } from "node:crypto";
import { describe, expect, it } from "vitest";
import { encodeBase64url } from "../../../lib/crypto/base64url.ts";
import { generateEd25519KeyPair, jwkThumbprint, signEd25519 } from "../../../lib/crypto/ed25519.ts";
import {
  checkValidityTimes,
  DEFAULT_MAX_PAYLOAD_BYTES,
  decodeJwsUnverified,
  documentIdentity,
  signJws,
  type VerifyJwsOptions,
  verifyJws,
  verifyJwsAsync,
} from "../../../lib/crypto/jws.ts";
import { AgentdError } from "../../../lib/errors.ts";

const TYP = "agentd-consent+jwt";
const A = generateEd25519KeyPair();
const B = generateEd25519KeyPair();
const KID_A = jwkThumbprint(A.publicKey);
const KID_B = jwkThumbprint(B.publicKey);

const pinned: VerifyJwsOptions = {
  typ: TYP,
  resolveKey: (kid) => (kid === KID_A ? A.publicKey : undefined),
};

function refusal(f: () => unknown): AgentdError {
  try {
    f();
  } catch (err) {
    if (err instanceof AgentdError) return err;
    throw err;
  }
  throw new Error("accepted");
}

const codeOf = (token: string, options: VerifyJwsOptions = pinned): string =>
  refusal(() => verifyJws(token, options)).code;

const b64 = (text: string | Buffer) => encodeBase64url(Buffer.from(text));

/** A JWS with arbitrary header and payload text, genuinely signed, so each check is reached. */
function craft(
  headerJson: string,
  payload: string | Buffer,
  key: KeyObject = A.privateKey,
): string {
  const signingInput = `${b64(headerJson)}.${b64(payload)}`;
  return `${signingInput}.${encodeBase64url(signEd25519(key, Buffer.from(signingInput, "ascii")))}`;
}

const header = (over: Record<string, unknown> = {}) =>
  JSON.stringify({ alg: "EdDSA", kid: KID_A, typ: TYP, ...over });

describe("signJws / verifyJws", () => {
  const payload = { v: 1, seq: 7, nested: { list: [1, "two", null, true] }, exp: 1826836000 };
  const token = signJws({ typ: TYP, payload, privateKey: A.privateKey });

  it("round-trips, with the header exactly {alg, kid, typ}", () => {
    const parts = token.split(".");
    expect(parts).toHaveLength(3);
    expect(Buffer.from(parts[0] ?? "", "base64url").toString()).toBe(
      `{"alg":"EdDSA","kid":"${KID_A}","typ":"${TYP}"}`,
    );
    const v = verifyJws(token, pinned);
    expect(v.header).toEqual({ alg: "EdDSA", kid: KID_A, typ: TYP });
    expect(v.payload).toEqual(payload);
    expect(v.signingInput).toBe(`${parts[0]}.${parts[1]}`);
  });

  it("identity is sha256 hex of the ASCII signing input, without the signature", () => {
    const [h, p] = token.split(".");
    const expected = createHash("sha256").update(`${h}.${p}`).digest("hex");
    expect(verifyJws(token, pinned).identity).toBe(expected);
    expect(documentIdentity(token)).toBe(expected);
    // Another (well-formed) signature part does not change the identity.
    const other = `${h}.${p}.${encodeBase64url(Buffer.alloc(64, 7))}`;
    expect(documentIdentity(other)).toBe(expected);
    expect(codeOf(other)).toBe("AGENTD_E_JWS_SIGNATURE");
    // A different payload does.
    expect(
      documentIdentity(signJws({ typ: TYP, payload: { v: 2 }, privateKey: A.privateKey })),
    ).not.toBe(expected);
  });

  it("accepts any typ of an allowed list and refuses others", () => {
    const t = signJws({ typ: "agentd-revocation+jwt", payload: {}, privateKey: A.privateKey });
    expect(
      verifyJws(t, { ...pinned, typ: ["agentd-decommission+jwt", "agentd-revocation+jwt"] }).header
        .typ,
    ).toBe("agentd-revocation+jwt");
    expect(codeOf(t)).toBe("AGENTD_E_JWS_TYP");
    expect(codeOf(t, { ...pinned, typ: [] })).toBe("AGENTD_E_JWS_TYP");
  });

  it("signJws never produces what verifyJws refuses", () => {
    const big = { pad: "x".repeat(DEFAULT_MAX_PAYLOAD_BYTES) };
    expect(refusal(() => signJws({ typ: TYP, payload: big, privateKey: A.privateKey })).code).toBe(
      "AGENTD_E_JWS_TOO_LARGE",
    );
    expect(
      refusal(() => signJws({ typ: TYP, payload: { n: 2 ** 53 }, privateKey: A.privateKey })).code,
    ).toBe("AGENTD_E_JSON_INTEGER_RANGE");
    expect(
      refusal(() => signJws({ typ: TYP, payload: { n: Number.NaN }, privateKey: A.privateKey }))
        .code,
    ).toBe("AGENTD_E_JSON_NOT_CANONICALIZABLE");
  });
});

describe("verifyJws refuses, with the exact code", () => {
  const good = craft(header(), '{"v":1}');

  it("the crafted baseline is accepted (so each refusal below is due to its one change)", () => {
    expect(verifyJws(good, pinned).payload).toEqual({ v: 1 });
  });

  it("a token that is not three parts", () => {
    expect(codeOf(`${good}.${good.split(".")[2]}`)).toBe("AGENTD_E_JWS_MALFORMED");
    expect(codeOf(good.split(".").slice(0, 2).join("."))).toBe("AGENTD_E_JWS_MALFORMED");
    expect(codeOf("")).toBe("AGENTD_E_JWS_MALFORMED");
    expect(codeOf(42 as unknown as string)).toBe("AGENTD_E_JWS_MALFORMED");
  });

  it("an absurdly long token, before looking at its form", () => {
    expect(codeOf("a".repeat(1_000_000))).toBe("AGENTD_E_JWS_TOO_LARGE");
  });

  it("padding or characters outside the alphabet in any part", () => {
    const [h, p, s] = good.split(".") as [string, string, string];
    const bad = [
      `${h}.${p}.${s}==`,
      `${h}=.${p}.${s}`,
      `${h}.${p.slice(0, -1)}+.${s}`,
      `${h}.${p}.${s.slice(0, 10)}/${s.slice(11)}`,
      `${h}.${p} .${s}`,
    ];
    for (const t of bad) expect(codeOf(t), t).toBe("AGENTD_E_JWS_BASE64URL");
  });

  it("a signature whose last character encodes the same bits differently (malleability)", () => {
    const [h, p, s] = good.split(".") as [string, string, string];
    // 64 bytes = 85 full characters + 4 bits: the last character's 2 low bits are unused.
    const last = s.at(-1) ?? "";
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const i = alphabet.indexOf(last);
    expect(i % 4).toBe(0);
    const twin = `${s.slice(0, -1)}${alphabet[i + 1]}`;
    // The premise: Node decodes both to the same 64 bytes, so the signature itself is valid.
    expect(Buffer.from(twin, "base64url").equals(Buffer.from(s, "base64url"))).toBe(true);
    const err = refusal(() => verifyJws(`${h}.${p}.${twin}`, pinned));
    expect(err.code).toBe("AGENTD_E_JWS_BASE64URL");
    expect(err.context.what).toBe("signature");
    expect(err.context.reason).toBe("non-canonical");
  });

  it("a header with a member too many, too few, or not a string", () => {
    for (const h of [
      header({ crit: ["exp"] }),
      header({ jwk: {} }),
      JSON.stringify({ alg: "EdDSA", kid: KID_A }),
      JSON.stringify({ alg: "EdDSA", typ: TYP }),
      header({ kid: 5 }),
      header({ typ: null }),
      "[]",
      '"EdDSA"',
      "{",
      "",
    ]) {
      expect(codeOf(craft(h, '{"v":1}')), h).toBe("AGENTD_E_JWS_HEADER");
    }
  });

  it("a header with a duplicate member (one code, the parser's code in the context)", () => {
    const h = `{"alg":"EdDSA","kid":"${KID_A}","typ":"${TYP}","typ":"other"}`;
    const err = refusal(() => verifyJws(craft(h, '{"v":1}'), pinned));
    expect(err.code).toBe("AGENTD_E_JWS_HEADER");
    expect(err.context.cause_code).toBe("AGENTD_E_JSON_DUPLICATE_KEY");
  });

  it("an alg other than EdDSA", () => {
    for (const alg of ["none", "HS256", "ES256", "eddsa", "Ed25519"]) {
      expect(codeOf(craft(header({ alg }), '{"v":1}')), alg).toBe("AGENTD_E_JWS_ALG");
    }
  });

  it("another typ", () => {
    expect(codeOf(craft(header({ typ: "agentd-publication+jwt" }), '{"v":1}'))).toBe(
      "AGENTD_E_JWS_TYP",
    );
    expect(codeOf(craft(header({ typ: "JWT" }), '{"v":1}'))).toBe("AGENTD_E_JWS_TYP");
  });

  it("an unknown kid", () => {
    const t = signJws({ typ: TYP, payload: {}, privateKey: B.privateKey });
    expect(codeOf(t)).toBe("AGENTD_E_JWS_UNKNOWN_KEY");
  });

  it("a kid that is not the thumbprint of the key the resolver returns", () => {
    // A lax resolver (one default key for every kid) must not make kid meaningless.
    const lax: VerifyJwsOptions = { typ: TYP, resolveKey: () => A.publicKey };
    const t = signJws({ typ: TYP, payload: {}, privateKey: B.privateKey });
    expect(codeOf(t, lax)).toBe("AGENTD_E_JWS_KID_MISMATCH");
    const err = refusal(() => verifyJws(t, lax));
    expect(err.context).toMatchObject({ kid: KID_B, thumbprint: KID_A });
  });

  it("a bad signature: other signer, altered payload, wrong length", () => {
    expect(codeOf(craft(header(), '{"v":1}', B.privateKey))).toBe("AGENTD_E_JWS_SIGNATURE");
    const [h, , s] = good.split(".") as [string, string, string];
    expect(codeOf(`${h}.${b64('{"v":2}')}.${s}`)).toBe("AGENTD_E_JWS_SIGNATURE");
    const sig = Buffer.from(s, "base64url");
    expect(codeOf(`${h}.${good.split(".")[1]}.${encodeBase64url(sig.subarray(0, 63))}`)).toBe(
      "AGENTD_E_JWS_SIGNATURE",
    );
    expect(codeOf(`${h}.${good.split(".")[1]}.`)).toBe("AGENTD_E_JWS_SIGNATURE");
  });

  it("verifies the signature before parsing the payload", () => {
    // Unparseable payload and a signature by another key: the signature is what is refused.
    expect(codeOf(craft(header(), "{{{", B.privateKey))).toBe("AGENTD_E_JWS_SIGNATURE");
    expect(codeOf(craft(header(), "{{{"))).toBe("AGENTD_E_JSON_INVALID");
  });

  it("a payload over 64 KiB; exactly 64 KiB passes", () => {
    const sized = (n: number) => {
      const text = `{"pad":"${"x".repeat(n - 10)}"}`;
      expect(Buffer.byteLength(text)).toBe(n);
      return craft(header(), text);
    };
    expect(verifyJws(sized(65_536), pinned).payload.pad).toHaveLength(65_526);
    const err = refusal(() => verifyJws(sized(65_537), pinned));
    expect(err.code).toBe("AGENTD_E_JWS_TOO_LARGE");
    expect(err.context).toMatchObject({ bytes: 65_537, max: 65_536 });
    expect(codeOf(craft(header(), '{"v":12}'), { ...pinned, maxPayloadBytes: 7 })).toBe(
      "AGENTD_E_JWS_TOO_LARGE",
    );
  });

  it("duplicate members in the payload, at any depth", () => {
    expect(codeOf(craft(header(), '{"seq":1,"seq":9}'))).toBe("AGENTD_E_JSON_DUPLICATE_KEY");
    const err = refusal(() => verifyJws(craft(header(), '{"rules":{"a":1,"\\u0061":2}}'), pinned));
    expect(err.code).toBe("AGENTD_E_JSON_DUPLICATE_KEY");
    expect(err.context).toMatchObject({ member: "a", path: "$.rules.a" });
  });

  it("an integer outside ±(2^53 − 1) in the payload", () => {
    expect(codeOf(craft(header(), '{"seq":9007199254740992}'))).toBe("AGENTD_E_JSON_INTEGER_RANGE");
    expect(codeOf(craft(header(), '{"seq":-9007199254740992}'))).toBe(
      "AGENTD_E_JSON_INTEGER_RANGE",
    );
    expect(codeOf(craft(header(), '{"seq":1e300}'))).toBe("AGENTD_E_JSON_INTEGER_RANGE");
    expect(verifyJws(craft(header(), '{"seq":9007199254740991}'), pinned).payload.seq).toBe(
      Number.MAX_SAFE_INTEGER,
    );
  });

  it("a payload that is valid JSON but not an object, or not strict JSON, or not UTF-8", () => {
    expect(codeOf(craft(header(), "[1]"))).toBe("AGENTD_E_JWS_PAYLOAD");
    expect(codeOf(craft(header(), "null"))).toBe("AGENTD_E_JWS_PAYLOAD");
    expect(codeOf(craft(header(), '{"v":1,}'))).toBe("AGENTD_E_JSON_INVALID");
    expect(codeOf(craft(header(), '{"v":1} x'))).toBe("AGENTD_E_JSON_INVALID");
    expect(codeOf(craft(header(), Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])))).toBe(
      "AGENTD_E_JSON_INVALID",
    );
  });
});

describe("decodeJwsUnverified", () => {
  it("shows header and payload of a document no pinned key verifies", () => {
    const t = signJws({ typ: TYP, payload: { v: 1 }, privateKey: B.privateKey });
    expect(decodeJwsUnverified(t)).toEqual({
      header: { alg: "EdDSA", kid: KID_B, typ: TYP },
      payload: { v: 1 },
    });
    expect(refusal(() => decodeJwsUnverified("a.b")).code).toBe("AGENTD_E_JWS_MALFORMED");
  });
});

describe("checkValidityTimes", () => {
  const now = 1_795_300_000;
  const code = (claims: { iat?: number; nbf?: number; exp?: number }, skew?: number) => {
    try {
      checkValidityTimes(claims, now, skew);
      return "valid";
    } catch (err) {
      if (err instanceof AgentdError) return err.code;
      throw err;
    }
  };

  it("tolerates iat/nbf up to 60 s in the future, inclusive", () => {
    expect(code({ iat: now + 60, nbf: now + 60 })).toBe("valid");
    expect(code({ iat: now + 61 })).toBe("AGENTD_E_JWS_NOT_YET_VALID");
    expect(code({ nbf: now + 61 })).toBe("AGENTD_E_JWS_NOT_YET_VALID");
    expect(code({ nbf: now + 5 }, 0)).toBe("AGENTD_E_JWS_NOT_YET_VALID");
    expect(code({ iat: 0, nbf: now - 1000 })).toBe("valid");
  });

  it("is expired from the second exp on, with no skew", () => {
    expect(code({ exp: now + 1 })).toBe("valid");
    expect(code({ exp: now })).toBe("AGENTD_E_JWS_EXPIRED");
    expect(code({ exp: now - 30 })).toBe("AGENTD_E_JWS_EXPIRED");
    expect(code({})).toBe("valid");
  });

  it("reports not-yet-valid before expired, and refuses non-integer times", () => {
    expect(code({ nbf: now + 100, exp: now - 100 })).toBe("AGENTD_E_JWS_NOT_YET_VALID");
    expect(code({ exp: now + 0.5 })).toBe("AGENTD_E_JWS_PAYLOAD");
    expect(code({ iat: Number.NaN })).toBe("AGENTD_E_JWS_PAYLOAD");
  });
});

describe("verifyJwsAsync", () => {
  const good = signJws({ typ: TYP, payload: { v: 1 }, privateKey: A.privateKey });
  const [h, p, s] = good.split(".") as [string, string, string];
  // One token per check, each reaching a different refusal (and one that passes).
  const tokens: Record<string, string> = {
    good,
    "bad signature": `${h}.${b64(JSON.stringify({ v: 2 }))}.${s}`,
    "other signer": signJws({ typ: TYP, payload: { v: 1 }, privateKey: B.privateKey }),
    "wrong typ": craft(header({ typ: "agentd-heartbeat+jwt" }), "{}"),
    "alg none": craft(header({ alg: "none" }), "{}"),
    "duplicate member": craft(header(), '{"a":1,"a":2}'),
    "short signature": `${h}.${p}.${s.slice(0, 40)}`,
    "two parts": `${h}.${p}`,
  };

  it.each(Object.keys(tokens))("answers %s exactly as verifyJws does", async (name) => {
    const token = tokens[name] as string;
    let sync: unknown;
    try {
      sync = verifyJws(token, pinned);
    } catch (err) {
      sync = (err as AgentdError).code;
    }
    let async: unknown;
    try {
      async = await verifyJwsAsync(token, pinned);
    } catch (err) {
      async = (err as AgentdError).code;
    }
    expect(async).toEqual(sync);
    if (name === "good") expect((async as { payload: unknown }).payload).toEqual({ v: 1 });
    else expect(String(async)).toMatch(/^AGENTD_E_/);
  });

  it("verifies many signatures concurrently, each with its own answer", async () => {
    const tokensAndAnswers = Array.from({ length: 64 }, (_, i) => {
      const t = signJws({ typ: TYP, payload: { i }, privateKey: A.privateKey });
      if (i % 3 !== 0) return [t, true] as const;
      // One signature character changed (a middle one: the last carries padding bits).
      const at = t.length - 10;
      const c = t[at] === "A" ? "B" : "A";
      return [`${t.slice(0, at)}${c}${t.slice(at + 1)}`, false] as const;
    });
    const answers = await Promise.all(
      tokensAndAnswers.map(([t]) =>
        verifyJwsAsync(t, pinned).then(
          () => true,
          () => false,
        ),
      ),
    );
    expect(answers).toEqual(tokensAndAnswers.map(([, ok]) => ok));
  });
});
