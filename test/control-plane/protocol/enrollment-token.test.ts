import { Buffer } from "node:buffer";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ENROLLMENT_TOKEN_PREFIX,
  type EnrollmentToken,
  encodeEnrollmentToken,
  newTokenId,
  newTokenSecret,
  parseEnrollmentToken,
  tokenSecretMatches,
  tokenSecretSha256,
} from "../../../control-plane/protocol/enrollment-token.ts";
import { decodeBase64urlStrict, encodeBase64url } from "../../../lib/crypto/base64url.ts";
import { AgentdError } from "../../../lib/errors.ts";

const b64 = (n: number, fill: number): string => encodeBase64url(Buffer.alloc(n, fill));

const GOOD: EnrollmentToken = {
  url: "https://cp.example:8443",
  ca_sha256: "ab".repeat(32),
  root_kid: b64(32, 1),
  id: b64(16, 2),
  secret: b64(32, 3),
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

/** A token whose body is exactly `json` (no validation on the way). */
const rawToken = (json: string, prefix = ENROLLMENT_TOKEN_PREFIX): string =>
  `${prefix}${encodeBase64url(Buffer.from(json, "utf8"))}`;

const canonicalJson = (t: Record<string, unknown>): string =>
  JSON.stringify(Object.fromEntries(Object.entries(t).sort(([a], [b]) => (a < b ? -1 : 1))));

const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const arbToken: fc.Arbitrary<EnrollmentToken> = fc.record({
  url: fc
    .tuple(
      fc.stringMatching(/^[a-z][a-z0-9]{0,15}(\.[a-z][a-z0-9]{0,15}){0,3}$/),
      fc.option(fc.integer({ min: 1, max: 65_535 }).filter((p) => p !== 443)),
    )
    .map(([host, port]) => `https://${host}${port === null ? "" : `:${port}`}`),
  ca_sha256: bytes(32).map((b) => Buffer.from(b).toString("hex")),
  root_kid: bytes(32).map(encodeBase64url),
  id: bytes(16).map(encodeBase64url),
  secret: bytes(32).map(encodeBase64url),
});

describe("enrollment token form", () => {
  it("is agentd1. + base64url of the canonical JSON", () => {
    const t = encodeEnrollmentToken(GOOD);
    expect(t.startsWith("agentd1.")).toBe(true);
    const json = decodeBase64urlStrict(t.slice(8), "t").toString("utf8");
    expect(json).toBe(canonicalJson({ ...GOOD }));
    expect(json.startsWith('{"ca_sha256":')).toBe(true);
  });

  it("round-trips every valid token", () => {
    fc.assert(
      fc.property(arbToken, (t) => {
        const s = encodeEnrollmentToken(t);
        expect(parseEnrollmentToken(s)).toEqual(t);
        expect(encodeEnrollmentToken(parseEnrollmentToken(s))).toBe(s);
      }),
    );
  });

  it("a single changed character is refused or is another token", () => {
    const chars = [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.+/ "];
    fc.assert(
      fc.property(arbToken, fc.nat(), fc.constantFrom(...chars), (t, where, c) => {
        const s = encodeEnrollmentToken(t);
        const i = where % s.length;
        if (s[i] === c) return;
        const mutated = s.slice(0, i) + c + s.slice(i + 1);
        let parsed: EnrollmentToken;
        try {
          parsed = parseEnrollmentToken(mutated);
        } catch (err) {
          expect(err).toBeInstanceOf(AgentdError);
          expect((err as AgentdError).code).toBe("AGENTD_E_CP_TOKEN_INVALID");
          return;
        }
        expect(parsed).not.toEqual(t);
        expect(encodeEnrollmentToken(parsed)).toBe(mutated);
      }),
      { numRuns: 2_000 },
    );
  });
});

describe("enrollment token refusals", () => {
  const json = canonicalJson({ ...GOOD });
  const withMember = (name: string, value: unknown): string =>
    rawToken(canonicalJson({ ...GOOD, [name]: value }));

  it.each([
    ["not a string", 42, "not a string"],
    ["wrong prefix", rawToken(json, "agentd2."), 'does not start with "agentd1."'],
    ["no prefix", encodeBase64url(Buffer.from(json)), "does not start with"],
    ["padding", `${rawToken(json)}=`, "not strict base64url"],
    [
      "standard base64",
      `${rawToken(json).replace(/_/g, "/").replace(/-/g, "+")}+`,
      "not strict base64url",
    ],
    ["too long", `agentd1.${"A".repeat(3000)}`, "longer than 2048"],
    ["not UTF-8", `agentd1.${encodeBase64url(Buffer.from([0xff, 0xfe]))}`, "UTF-8"],
    ["not JSON", rawToken("{ca_sha256:1}"), "not a strict JSON object"],
    ["an array", rawToken("[]"), "not a strict JSON object"],
    [
      "duplicate member",
      rawToken(json.replace("{", `{"id":"${GOOD.id}",`)),
      "not a strict JSON object",
    ],
    ["whitespace", rawToken(json.replace(",", ", ")), "not canonical"],
    ["member order", rawToken(JSON.stringify(GOOD)), "not canonical"],
    ["escaped character", rawToken(json.replace('"url"', '"\\u0075rl"')), "not canonical"],
    ["extra member", withMember("exp", 1), "members must be exactly"],
    [
      "missing member",
      rawToken(canonicalJson({ ...GOOD, secret: undefined })),
      "members must be exactly",
    ],
    ["http url", withMember("url", "http://cp.example"), "url is not https"],
    [
      "url with a path",
      withMember("url", "https://cp.example/v1"),
      "url must be exactly the origin",
    ],
    [
      "url with a slash",
      withMember("url", "https://cp.example/"),
      "url must be exactly the origin",
    ],
    [
      "url with credentials",
      withMember("url", "https://a:b@cp.example"),
      "url must be exactly the origin",
    ],
    ["url upper case", withMember("url", "https://CP.example"), "url must be exactly the origin"],
    [
      "url default port",
      withMember("url", "https://cp.example:443"),
      "url must be exactly the origin",
    ],
    ["url not a URL", withMember("url", "https://"), "url is not a URL"],
    ["url a number", withMember("url", 1), "url is not a string"],
    [
      "upper-case hex",
      withMember("ca_sha256", "AB".repeat(32)),
      "ca_sha256 is not 64 lowercase hex",
    ],
    ["short hex", withMember("ca_sha256", "ab".repeat(31)), "ca_sha256 is not 64 lowercase hex"],
    ["root_kid 31 bytes", withMember("root_kid", b64(31, 1)), "root_kid is not 32 bytes"],
    [
      "root_kid padded",
      withMember("root_kid", `${GOOD.root_kid}=`),
      "root_kid is not strict base64url",
    ],
    ["id 17 bytes", withMember("id", b64(17, 2)), "id is not 16 bytes"],
    [
      "secret trailing bits",
      withMember("secret", `${GOOD.secret.slice(0, -1)}B`),
      "secret is not strict base64url",
    ],
    ["secret 16 bytes", withMember("secret", b64(16, 3)), "secret is not 32 bytes"],
  ])("%s", (_what, token, message) => {
    const err = refusal(() => parseEnrollmentToken(token));
    expect(err.code).toBe("AGENTD_E_CP_TOKEN_INVALID");
    expect(err.message).toContain(message);
    expect(err.message).not.toContain(GOOD.secret);
    expect(JSON.stringify(err.context)).not.toContain(GOOD.secret);
  });

  it("names the member at fault in the context", () => {
    expect(refusal(() => parseEnrollmentToken(withMember("id", "x"))).context.member).toBe("id");
  });

  it("encode refuses what parse would refuse", () => {
    const err = refusal(() => encodeEnrollmentToken({ ...GOOD, url: "http://cp.example" }));
    expect(err.code).toBe("AGENTD_E_CP_TOKEN_INVALID");
    expect(
      refusal(() => encodeEnrollmentToken({ ...GOOD, extra: 1 } as EnrollmentToken)).code,
    ).toBe("AGENTD_E_CP_TOKEN_INVALID");
  });
});

describe("token credentials", () => {
  it("new ids are 16 random bytes, new secrets 32", () => {
    const [a, b] = [newTokenSecret(), newTokenSecret()];
    expect(decodeBase64urlStrict(a, "s").length).toBe(32);
    expect(a).not.toBe(b);
    expect(decodeBase64urlStrict(newTokenId(), "id").length).toBe(16);
    expect(newTokenId()).not.toBe(newTokenId());
    // and a token built from them parses
    const t = { ...GOOD, id: newTokenId(), secret: a };
    expect(parseEnrollmentToken(encodeEnrollmentToken(t))).toEqual(t);
  });

  it("the stored hash is the SHA-256 of the secret's bytes, compared in constant time", () => {
    const secret = newTokenSecret();
    const stored = tokenSecretSha256(secret);
    expect(stored).toMatch(/^[0-9a-f]{64}$/);
    expect(tokenSecretMatches(secret, stored)).toBe(true);
    expect(tokenSecretMatches(newTokenSecret(), stored)).toBe(false);
    expect(tokenSecretMatches("not base64url!", stored)).toBe(false);
    expect(tokenSecretMatches(secret, stored.toUpperCase())).toBe(false);
    expect(tokenSecretMatches(secret, "")).toBe(false);
  });
});
