import { Buffer } from "node:buffer";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { decodeBase64urlStrict, encodeBase64url } from "../../../lib/crypto/base64url.ts";
import {
  generateEd25519KeyPair,
  jwkThumbprint,
  parsePrivateKeyPem,
  parsePublicKeyPem,
  privateKeyToPem,
  publicKeyOf,
  publicKeyToPem,
  rawPublicKey,
  verifyEd25519,
} from "../../../lib/crypto/ed25519.ts";
import { signJws, verifyJws } from "../../../lib/crypto/jws.ts";

/**
 * Cross-checks against the real OpenSSL (DOCUMENTS.md section 2: key files must be readable by
 * `openssl`, and other implementations must agree with ours on every signature).
 */
const OPENSSL = "/usr/bin/openssl";
const dir = mkdtempSync(join(tmpdir(), "agentd-openssl-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function openssl(...args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(OPENSSL, args, { encoding: "utf8" });
  if (r.error) throw r.error;
  return { status: r.status, stderr: r.stderr };
}

const file = (name: string, content?: string | Buffer): string => {
  const path = join(dir, name);
  if (content !== undefined) writeFileSync(path, content, { mode: 0o600 });
  return path;
};

describe("openssl cross-check", () => {
  it("openssl verifies a JWS signed by signJws, and refuses a tampered signing input", () => {
    const { privateKey, publicKey } = generateEd25519KeyPair();
    const token = signJws({ typ: "agentd-consent+jwt", payload: { v: 1, seq: 3 }, privateKey });
    const [h, p, s] = token.split(".") as [string, string, string];
    const pub = file("a.pub.pem", publicKeyToPem(publicKey));
    const msg = file("a.msg", `${h}.${p}`);
    const sig = file("a.sig", decodeBase64urlStrict(s, "signature"));
    const ok = openssl(
      "pkeyutl",
      "-verify",
      "-pubin",
      "-inkey",
      pub,
      "-rawin",
      "-in",
      msg,
      "-sigfile",
      sig,
    );
    expect(ok.status, ok.stderr).toBe(0);

    const tampered = file("a.tampered", `${h}.${p}x`);
    const bad = openssl(
      "pkeyutl",
      "-verify",
      "-pubin",
      "-inkey",
      pub,
      "-rawin",
      "-in",
      tampered,
      "-sigfile",
      sig,
    );
    expect(bad.status).not.toBe(0);
  });

  it("openssl reads our PKCS#8 private key file and derives the same public key", () => {
    const { privateKey, publicKey } = generateEd25519KeyPair();
    const priv = file("b.key.pem", privateKeyToPem(privateKey));
    const out = file("b.pub.pem");
    const r = openssl("pkey", "-in", priv, "-pubout", "-out", out);
    expect(r.status, r.stderr).toBe(0);
    const derived = parsePublicKeyPem(readFileSync(out));
    expect(rawPublicKey(derived).equals(rawPublicKey(publicKey))).toBe(true);
  });

  it("a key and signature made by openssl are loaded and verified by agentd", () => {
    const priv = file("c.key.pem");
    const gen = openssl("genpkey", "-algorithm", "ed25519", "-out", priv);
    expect(gen.status, gen.stderr).toBe(0);
    const pubPath = file("c.pub.pem");
    expect(openssl("pkey", "-in", priv, "-pubout", "-out", pubPath).status).toBe(0);

    const privateKey = parsePrivateKeyPem(readFileSync(priv));
    const publicKey = parsePublicKeyPem(readFileSync(pubPath));
    expect(rawPublicKey(publicKeyOf(privateKey)).equals(rawPublicKey(publicKey))).toBe(true);

    // A JWS whose signature comes from openssl.
    const kid = jwkThumbprint(publicKey);
    const header = { alg: "EdDSA", kid, typ: "agentd-publication+jwt" };
    const signingInput = `${encodeBase64url(Buffer.from(JSON.stringify(header)))}.${encodeBase64url(Buffer.from('{"v":1,"version":42}'))}`;
    const msg = file("c.msg", signingInput);
    const sigPath = file("c.sig");
    const sign = openssl("pkeyutl", "-sign", "-inkey", priv, "-rawin", "-in", msg, "-out", sigPath);
    expect(sign.status, sign.stderr).toBe(0);
    const sig = readFileSync(sigPath);
    expect(sig.length).toBe(64);
    expect(verifyEd25519(publicKey, Buffer.from(signingInput), sig)).toBe(true);
    expect(verifyEd25519(publicKey, Buffer.from(`${signingInput}x`), sig)).toBe(false);

    const v = verifyJws(`${signingInput}.${encodeBase64url(sig)}`, {
      typ: "agentd-publication+jwt",
      resolveKey: (k) => (k === kid ? publicKey : undefined),
    });
    expect(v.payload).toEqual({ v: 1, version: 42 });
    expect(v.header.kid).toBe(kid);
  });
});
