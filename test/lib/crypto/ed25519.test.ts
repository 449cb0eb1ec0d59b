import { Buffer } from "node:buffer";
import { createHash, createPublicKey, generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { encodeBase64url } from "../../../lib/crypto/base64url.ts";
import {
  generateEd25519KeyPair,
  jwkThumbprint,
  parsePrivateKeyPem,
  parsePublicKeyPem,
  privateKeyFromSeed,
  privateKeyToPem,
  publicJwk,
  publicKeyFromJwk,
  publicKeyOf,
  publicKeyToPem,
  rawPublicKey,
  signEd25519,
  verifyEd25519,
} from "../../../lib/crypto/ed25519.ts";
import { AgentdError } from "../../../lib/errors.ts";

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    if (err instanceof AgentdError) return err.code;
    throw err;
  }
  return "accepted";
}

const hex = (s: string) => Buffer.from(s, "hex");

/** RFC 8032 section 7.1 (Ed25519), secret key (seed), public key, message, signature. */
const RFC8032: { name: string; seed: string; pub: string; msg: string; sig: string }[] = [
  {
    name: "TEST 1 (empty message)",
    seed: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
    pub: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    msg: "",
    sig:
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555" +
      "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
  },
  {
    name: "TEST 2 (one byte)",
    seed: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    pub: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    msg: "72",
    sig:
      "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da" +
      "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
  },
  {
    name: "TEST 3 (two bytes)",
    seed: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
    pub: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
    msg: "af82",
    sig:
      "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac" +
      "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
  },
  {
    name: "TEST SHA(abc) (message = SHA-512 of 'abc')",
    seed: "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
    pub: "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
    msg:
      "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a" +
      "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    sig:
      "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589" +
      "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
  },
];

describe("Ed25519: RFC 8032 section 7.1 vectors", () => {
  for (const v of RFC8032) {
    it(v.name, () => {
      const priv = privateKeyFromSeed(hex(v.seed));
      const pub = publicKeyOf(priv);
      expect(rawPublicKey(pub).toString("hex")).toBe(v.pub);
      const sig = signEd25519(priv, hex(v.msg));
      expect(sig.toString("hex")).toBe(v.sig);
      expect(verifyEd25519(pub, hex(v.msg), sig)).toBe(true);
      // The key rebuilt from the vector's public bytes verifies too; a changed message does not.
      const fromJwk = publicKeyFromJwk({
        kty: "OKP",
        crv: "Ed25519",
        x: encodeBase64url(hex(v.pub)),
      });
      expect(verifyEd25519(fromJwk, hex(v.msg), sig)).toBe(true);
      expect(verifyEd25519(fromJwk, Buffer.concat([hex(v.msg), hex("00")]), sig)).toBe(false);
    });
  }

  it("the SHA(abc) message is indeed SHA-512('abc')", () => {
    const v = RFC8032[3];
    expect(createHash("sha512").update("abc").digest("hex")).toBe(v?.msg);
  });
});

describe("Ed25519 signatures", () => {
  const { privateKey, publicKey } = generateEd25519KeyPair();
  const msg = Buffer.from("consent");
  const sig = signEd25519(privateKey, msg);

  it("verify is false, not an exception, for a wrong-length or altered signature", () => {
    expect(sig.length).toBe(64);
    expect(verifyEd25519(publicKey, msg, sig.subarray(0, 63))).toBe(false);
    expect(verifyEd25519(publicKey, msg, Buffer.concat([sig, hex("00")]))).toBe(false);
    expect(verifyEd25519(publicKey, msg, Buffer.alloc(0))).toBe(false);
    const flipped = Buffer.from(sig);
    flipped[10] = (flipped[10] ?? 0) ^ 1;
    expect(verifyEd25519(publicKey, msg, flipped)).toBe(false);
    expect(verifyEd25519(generateEd25519KeyPair().publicKey, msg, sig)).toBe(false);
  });

  it("refuses the malleable twin S + L of a valid signature", () => {
    // RFC 8032 section 5.1.7 requires 0 <= S < L; S + L would verify under a lax implementation.
    const L = (1n << 252n) + 27742317777372353535851937790883648493n;
    const s = BigInt(`0x${Buffer.from(sig.subarray(32)).reverse().toString("hex")}`);
    const twinS = Buffer.from((s + L).toString(16).padStart(64, "0"), "hex").reverse();
    const twin = Buffer.concat([sig.subarray(0, 32), twinS]);
    expect(twin.equals(sig)).toBe(false);
    expect(verifyEd25519(publicKey, msg, twin)).toBe(false);
  });

  it("throws AGENTD_E_KEY_INVALID for a key of the wrong kind (a caller's bug)", () => {
    expect(codeOf(() => signEd25519(publicKey, msg))).toBe("AGENTD_E_KEY_INVALID");
    expect(codeOf(() => verifyEd25519(privateKey, msg, sig))).toBe("AGENTD_E_KEY_INVALID");
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    expect(codeOf(() => signEd25519(ec.privateKey, msg))).toBe("AGENTD_E_KEY_INVALID");
    expect(codeOf(() => jwkThumbprint(ec.publicKey))).toBe("AGENTD_E_KEY_INVALID");
  });

  it("privateKeyFromSeed refuses a seed that is not 32 bytes", () => {
    expect(codeOf(() => privateKeyFromSeed(new Uint8Array(31)))).toBe("AGENTD_E_KEY_INVALID");
    expect(codeOf(() => privateKeyFromSeed(new Uint8Array(33)))).toBe("AGENTD_E_KEY_INVALID");
  });
});

describe("Ed25519 PEM files", () => {
  const { privateKey, publicKey } = generateEd25519KeyPair();

  it("round-trips PKCS#8 and SPKI PEM", () => {
    const privPem = privateKeyToPem(privateKey);
    const pubPem = publicKeyToPem(publicKey);
    expect(privPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n[\s\S]+-----END PRIVATE KEY-----\n$/);
    expect(pubPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n[\s\S]+-----END PUBLIC KEY-----\n$/);
    const priv2 = parsePrivateKeyPem(Buffer.from(privPem));
    const pub2 = parsePublicKeyPem(pubPem);
    expect(rawPublicKey(publicKeyOf(priv2)).equals(rawPublicKey(publicKey))).toBe(true);
    expect(rawPublicKey(pub2).equals(rawPublicKey(publicKey))).toBe(true);
    expect(verifyEd25519(pub2, Buffer.from("m"), signEd25519(priv2, Buffer.from("m")))).toBe(true);
  });

  it("tolerates explanatory text and CRLF line ends around one block", () => {
    const pem = `comment line\r\n${publicKeyToPem(publicKey).replace(/\n/g, "\r\n")}trailer\n`;
    expect(rawPublicKey(parsePublicKeyPem(pem)).equals(rawPublicKey(publicKey))).toBe(true);
  });

  it("refuses a private PEM where a public key is expected, though Node would accept it", () => {
    const privPem = privateKeyToPem(privateKey);
    // The premise: node:crypto derives a public key from a private PEM without complaint.
    expect(createPublicKey(privPem).type).toBe("public");
    expect(codeOf(() => parsePublicKeyPem(privPem))).toBe("AGENTD_E_KEY_INVALID");
    // Refused for its label already, before any DER is parsed.
    let found: unknown;
    try {
      parsePublicKeyPem(privPem);
    } catch (err) {
      found = err instanceof AgentdError ? err.context.found : err;
    }
    expect(found).toBe("PRIVATE KEY");
    expect(codeOf(() => parsePrivateKeyPem(publicKeyToPem(publicKey)))).toBe(
      "AGENTD_E_KEY_INVALID",
    );
  });

  it("refuses keys of other algorithms and legacy PEM types", () => {
    const others = [
      generateKeyPairSync("ec", { namedCurve: "P-256" }),
      generateKeyPairSync("x25519"),
      generateKeyPairSync("ed448"),
      generateKeyPairSync("rsa", { modulusLength: 1024 }),
    ];
    for (const kp of others) {
      const priv = kp.privateKey.export({ type: "pkcs8", format: "pem" }) as string;
      const pub = kp.publicKey.export({ type: "spki", format: "pem" }) as string;
      expect(
        codeOf(() => parsePrivateKeyPem(priv)),
        kp.privateKey.asymmetricKeyType,
      ).toBe("AGENTD_E_KEY_INVALID");
      expect(
        codeOf(() => parsePublicKeyPem(pub)),
        kp.publicKey.asymmetricKeyType,
      ).toBe("AGENTD_E_KEY_INVALID");
    }
    const rsa = others[3];
    const legacy = rsa?.privateKey.export({ type: "pkcs1", format: "pem" }) as string;
    expect(legacy).toContain("BEGIN RSA PRIVATE KEY");
    expect(codeOf(() => parsePrivateKeyPem(legacy))).toBe("AGENTD_E_KEY_INVALID");
  });

  it("refuses two blocks, an empty or broken body, and no PEM at all", () => {
    const pubPem = publicKeyToPem(publicKey);
    const other = publicKeyToPem(generateEd25519KeyPair().publicKey);
    const body = pubPem.split("\n")[1] ?? "";
    const bad = [
      pubPem + other,
      "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n",
      pubPem.replace(body, `${body.slice(0, -4)}!!!!`),
      pubPem.replace(body, body.slice(0, 20)),
      "not a key",
      "",
    ];
    for (const pem of bad) {
      expect(
        codeOf(() => parsePublicKeyPem(pem)),
        pem,
      ).toBe("AGENTD_E_KEY_INVALID");
    }
  });
});

describe("Ed25519 JWK and RFC 7638 thumbprint", () => {
  // RFC 8037 appendix A: its Ed25519 key is the RFC 8032 TEST 1 key.
  const RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
  const RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

  it("reproduces RFC 8037 appendix A.3", () => {
    const fromJwk = publicKeyFromJwk({ kty: "OKP", crv: "Ed25519", x: RFC8037_X });
    expect(jwkThumbprint(fromJwk)).toBe(RFC8037_THUMBPRINT);
    const fromSeed = publicKeyOf(privateKeyFromSeed(hex(RFC8032[0]?.seed ?? "")));
    expect(publicJwk(fromSeed)).toEqual({ kty: "OKP", crv: "Ed25519", x: RFC8037_X });
    expect(jwkThumbprint(fromSeed)).toBe(RFC8037_THUMBPRINT);
    // Another key, another thumbprint: the function depends on x.
    expect(jwkThumbprint(generateEd25519KeyPair().publicKey)).not.toBe(RFC8037_THUMBPRINT);
  });

  it("publicJwk gives exactly kty, crv, x, and round-trips", () => {
    const { publicKey } = generateEd25519KeyPair();
    const jwk = publicJwk(publicKey);
    expect(Object.keys(jwk).sort()).toEqual(["crv", "kty", "x"]);
    expect(rawPublicKey(publicKeyFromJwk(jwk)).equals(rawPublicKey(publicKey))).toBe(true);
    expect(rawPublicKey(publicKey).length).toBe(32);
  });

  it("publicKeyFromJwk is strict", () => {
    const x = RFC8037_X;
    const bad: unknown[] = [
      null,
      "x",
      [x],
      { kty: "OKP", crv: "Ed25519" },
      { kty: "OKP", crv: "Ed25519", x, kid: "k" },
      { kty: "OKP", crv: "Ed25519", x, d: "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A" },
      { kty: "OKP", crv: "X25519", x },
      { kty: "EC", crv: "Ed25519", x },
      { kty: "OKP", crv: "Ed25519", x: 5 },
      { kty: "OKP", crv: "Ed25519", x: `${x}=` },
      { kty: "OKP", crv: "Ed25519", x: `${x.slice(0, -1)}p` }, // non-canonical last char
      { kty: "OKP", crv: "Ed25519", x: encodeBase64url(Buffer.alloc(31)) },
      { kty: "OKP", crv: "Ed25519", x: encodeBase64url(Buffer.alloc(33)) },
    ];
    for (const jwk of bad) {
      expect(
        codeOf(() => publicKeyFromJwk(jwk)),
        JSON.stringify(jwk),
      ).toBe("AGENTD_E_KEY_INVALID");
    }
  });
});
