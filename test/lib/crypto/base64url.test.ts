import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { decodeBase64urlStrict, encodeBase64url } from "../../../lib/crypto/base64url.ts";
import { AgentdError } from "../../../lib/errors.ts";

function refusal(s: string): AgentdError {
  try {
    decodeBase64urlStrict(s, "part");
  } catch (err) {
    if (err instanceof AgentdError) return err;
    throw err;
  }
  throw new Error(`${JSON.stringify(s)} was accepted`);
}

describe("base64url", () => {
  it("round-trips every length, unpadded, with the url alphabet", () => {
    for (let n = 0; n <= 70; n++) {
      const bytes = randomBytes(n);
      const s = encodeBase64url(bytes);
      expect(s).toMatch(/^[A-Za-z0-9_-]*$/);
      expect(s.length).toBe(Math.ceil((n * 4) / 3));
      expect(decodeBase64urlStrict(s, "x").equals(bytes)).toBe(true);
    }
  });

  it("encodes a subarray view, not its whole backing buffer", () => {
    const backing = Buffer.from("xxhelloxx");
    expect(encodeBase64url(new Uint8Array(backing.buffer, backing.byteOffset + 2, 5))).toBe(
      "aGVsbG8",
    );
  });

  it("encodes the RFC 4648 section 10 vectors (padding stripped)", () => {
    const vectors: [string, string][] = [
      ["", ""],
      ["f", "Zg"],
      ["fo", "Zm8"],
      ["foo", "Zm9v"],
      ["foob", "Zm9vYg"],
      ["fooba", "Zm9vYmE"],
      ["foobar", "Zm9vYmFy"],
    ];
    for (const [plain, enc] of vectors) {
      expect(encodeBase64url(Buffer.from(plain))).toBe(enc);
      expect(decodeBase64urlStrict(enc, "x").toString()).toBe(plain);
    }
    // The two characters where base64url differs from base64.
    expect(encodeBase64url(Buffer.from([0xfb, 0xff]))).toBe("-_8");
  });

  it("refuses padding, foreign characters and impossible lengths, saying where", () => {
    const cases: [string, string, number | undefined][] = [
      ["Zg==", "padding", 2],
      ["Zm9vYg=", "padding", 6],
      ["Zm+v", "character outside the base64url alphabet", 2],
      ["Zm/v", "character outside the base64url alphabet", 2],
      ["Zm9 v", "character outside the base64url alphabet", 3],
      ["Zm9v\n", "character outside the base64url alphabet", 4],
      ["Zm9v.", "character outside the base64url alphabet", 4],
      ["Zm9vY", "length", undefined],
      ["A", "length", undefined],
    ];
    for (const [input, reason, position] of cases) {
      const err = refusal(input);
      expect(err.code, input).toBe("AGENTD_E_JWS_BASE64URL");
      expect(err.context.reason, input).toBe(reason);
      expect(err.context.position, input).toBe(position);
      expect(err.context.what).toBe("part");
    }
  });

  it("refuses non-canonical trailing bits that Node's decoder would accept", () => {
    // One byte uses 8 of the 12 bits of two characters, two bytes 16 of 18: the rest must be 0.
    const cases: [canonical: string, variants: string[]][] = [
      ["Zg", ["Zh", "Zo", "Zv"]], // "f"
      ["Zm8", ["Zm9", "Zm-", "Zm_"]], // "fo"
    ];
    for (const [canonical, variants] of cases) {
      const bytes = decodeBase64urlStrict(canonical, "x");
      for (const v of variants) {
        // The premise: Node decodes the variant to the very same bytes...
        expect(Buffer.from(v, "base64url").equals(bytes), v).toBe(true);
        // ...and the strict decoder refuses it.
        const err = refusal(v);
        expect(err.code).toBe("AGENTD_E_JWS_BASE64URL");
        expect(err.context.reason, v).toBe("non-canonical");
      }
    }
  });
});
