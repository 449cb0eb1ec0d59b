import type { KeyObject } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli } from "../../cli/program.ts";
import { generateEd25519KeyPair, jwkThumbprint, publicJwk } from "../../lib/crypto/ed25519.ts";
import { documentIdentity, verifyJws } from "../../lib/crypto/jws.ts";
import { writeKeyPair } from "../../lib/crypto/key-files.ts";
import { systemTimers } from "../../lib/timers.ts";
import { enrolledMachine } from "../agent/daemon-fixture.ts";
import { useServedCp } from "../control-plane/protocol/client-fixture.ts";
import { agentd } from "../support/cli.ts";
import { useTmpDir } from "../support/tmp.ts";

/**
 * `agentd owner rotate` through the real binary (the document checked with the JWS verifier
 * and the old key, its payload against literals), and `agentd cp owner rotate` relaying it to
 * a running control plane (in-process). Applying it to a running agent is in
 * test/agent/daemon-rotation.test.ts.
 */

const tmp = useTmpDir();
const WORKER = jwkThumbprint(generateEd25519KeyPair().publicKey);

function keyPair(dir: string, name: string) {
  const pair = generateEd25519KeyPair();
  const file = join(dir, name);
  writeKeyPair(file, `${file}.pub`, pair.privateKey, { force: false });
  return { file, pub: `${file}.pub`, publicKey: pair.publicKey, id: jwkThumbprint(pair.publicKey) };
}

function verified(jws: string, key: KeyObject): Record<string, unknown> {
  return verifyJws(jws, {
    typ: "agentd-owner-rotation+jwt",
    resolveKey: (kid) => (kid === jwkThumbprint(key) ? key : undefined),
  }).payload;
}

const rotate = (oldKey: string, newKey: string, extra: string[] = []) =>
  agentd([
    "owner",
    "rotate",
    "--old-key",
    oldKey,
    "--new-key",
    newKey,
    "--worker",
    WORKER,
    ...extra,
  ]);

describe("agentd owner rotate", { timeout: 120_000 }, () => {
  it("prints the rotation signed by the old key, naming the new key's .pub or private key", () => {
    const dir = tmp();
    const a = keyPair(dir, "a.key");
    const b = keyPair(dir, "b.key");
    for (const newKey of [b.pub, b.file]) {
      const r = rotate(a.file, newKey);
      expect([r.code, r.stderr]).toEqual([0, ""]);
      expect(r.stdout.trim().split("\n")).toHaveLength(1);
      const p = verified(r.stdout.trim(), a.publicKey);
      expect(Object.keys(p).sort()).toEqual([
        "iat",
        "new_owner_jwk",
        "nonce",
        "owner",
        "v",
        "worker",
      ]);
      expect(p).toMatchObject({
        v: 1,
        owner: a.id,
        worker: WORKER,
        new_owner_jwk: { ...publicJwk(b.publicKey) },
      });
      expect(Math.abs((p.iat as number) - Date.now() / 1000)).toBeLessThan(60);
    }
  });

  it("--out writes it (0644) and prints nothing; --json prints a summary with the document", () => {
    const dir = tmp();
    const a = keyPair(dir, "a.key");
    const b = keyPair(dir, "b.key");
    const out = join(dir, "rotation.jws");
    const w = rotate(a.file, b.pub, ["--out", out]);
    expect([w.code, w.stdout, w.stderr]).toEqual([0, "", ""]);
    expect(statSync(out).mode & 0o777).toBe(0o644);
    expect(verified(readFileSync(out, "utf8").trim(), a.publicKey).owner).toBe(a.id);
    const j = rotate(a.file, b.pub, ["--json"]);
    expect(j.code).toBe(0);
    const summary = JSON.parse(j.stdout) as Record<string, unknown>;
    expect(summary).toMatchObject({ owner: a.id, new_owner: b.id, worker: WORKER, applied: null });
    expect(summary.identity).toBe(documentIdentity(summary.document as string));
    expect(verified(summary.document as string, a.publicKey).iat).toBe(summary.iat);
  });

  it("exit 2 for the same key twice or a bad worker, 1 for a file that is not a key", () => {
    const dir = tmp();
    const a = keyPair(dir, "a.key");
    const same = rotate(a.file, a.pub);
    expect(same.code).toBe(2);
    expect(same.stderr).toContain("--new-key is the same key as --old-key");
    const badWorker = agentd([
      "owner",
      "rotate",
      "--old-key",
      a.file,
      "--new-key",
      keyPair(dir, "b.key").pub,
      "--worker",
      "abc",
    ]);
    expect(badWorker.code).toBe(2);
    const junk = join(dir, "junk.pem");
    writeFileSync(junk, "not a key\n", { mode: 0o600 });
    const notKey = rotate(a.file, junk);
    expect(notKey.code).toBe(1);
    expect(notKey.stderr).toContain("AGENTD_E_KEY_INVALID: --new-key:");
    expect(notKey.stdout).toBe("");
  });

  it("--apply with no agent running: still prints the rotation, says why, exits 1", () => {
    const dir = tmp();
    const a = keyPair(dir, "a.key");
    const b = keyPair(dir, "b.key");
    const r = rotate(a.file, b.pub, [
      "--apply",
      "--set",
      `api.socket=${join(dir, "no-agent.sock")}`,
    ]);
    expect(r.code).toBe(1);
    expect(verified(r.stdout.trim(), a.publicKey).worker).toBe(WORKER);
    expect(r.stderr).toMatch(
      /^agentd: AGENTD_E_IO: cannot reach the local agent at .*no-agent\.sock/,
    );
  });
});

describe("agentd cp owner rotate", () => {
  const serve = useServedCp();

  it("relays the rotation with the owner's API key; the control plane refuses it a second time", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    const dir = tmp();
    const ca = join(dir, "ca.pem");
    writeFileSync(ca, cp.caPem, { mode: 0o644 });
    const oldKey = join(dir, "a.key");
    writeKeyPair(oldKey, `${oldKey}.pub`, m.owner.privateKey, { force: false });
    const b = keyPair(dir, "b.key");
    const doc = join(dir, "rotation.jws");
    const signed = agentd([
      "owner",
      "rotate",
      "--old-key",
      oldKey,
      "--new-key",
      b.pub,
      "--worker",
      m.enrolled.worker_id,
      "--out",
      doc,
    ]);
    expect(signed.code, signed.stderr).toBe(0);
    // An owner API key of that owner (the fixture keeps its own).
    const ownerKey = await cp.api(cp.adminKey).createApiKey({
      role: "owner",
      owner: jwkThumbprint(m.owner.publicKey),
    });
    const relay = async () => {
      let stdout = "";
      let stderr = "";
      const code = await runCli(
        ["cp", "owner", "rotate", "--worker", m.enrolled.worker_id, "--document", doc],
        {
          stdout: (s) => {
            stdout += s;
          },
          stderr: (s) => {
            stderr += s;
          },
          env: {
            AGENTD_CP_API_KEY: ownerKey.api_key,
            AGENTD_CONTROL_PLANE__URL: cp.url(),
            AGENTD_CONTROL_PLANE__CA_FILE: ca,
          },
          clock: cp.clock,
          timers: systemTimers,
        },
      );
      return { code, stdout, stderr };
    };
    const r = await relay();
    expect([r.code, r.stderr]).toEqual([0, ""]);
    expect(r.stdout.trim()).toBe(documentIdentity(readFileSync(doc, "utf8").trim()));
    const stored = await cp.serving.store.listOwnerRotations(m.enrolled.worker_id);
    expect(stored.map((x) => [x.from_owner, x.to_owner])).toEqual([
      [jwkThumbprint(m.owner.publicKey), b.id],
    ]);
    const again = await relay();
    // sent again: its signer is retired now
    expect(again.code).toBe(3);
    expect(again.stderr).toContain("AGENTD_E_JWS_UNKNOWN_KEY");
  });
});
