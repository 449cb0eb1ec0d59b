import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readEnrollment } from "../../agent/enrollment.ts";
import {
  encodeEnrollmentToken,
  parseEnrollmentToken,
} from "../../control-plane/protocol/enrollment-token.ts";
import { openStore } from "../../control-plane/store/open.ts";
import { generateEd25519KeyPair, jwkThumbprint, publicJwk } from "../../lib/crypto/ed25519.ts";
import { readPublicKeyFile, writePublicKeyFile } from "../../lib/crypto/key-files.ts";
import { AGENTD_BIN, agentd } from "../support/cli.ts";

/**
 * `agentd enroll` against a real `agentd cp serve` over TLS: the owner registers, makes a
 * token, and the machine enrolls with it, pinned to the owner key the owner gave it. Tokens
 * whose pins do not match the server, an owner key that is not the token's owner, a used
 * token and a second enrollment are refused, each with its code, leaving nothing behind.
 */

const json = (text: string) => JSON.parse(text) as Record<string, unknown>;
const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);

describe("agentd enroll", () => {
  let base = "";
  let child: ChildProcess;
  let ready: Record<string, unknown> = {};
  let remote: string[] = [];
  let ownerKey = "";
  let ownerPub = "";
  let otherPub = "";
  const cp = (key: string, args: string[]) =>
    agentd(["cp", ...args, ...remote], { AGENTD_CP_API_KEY: key });
  const token = () => {
    const r = cp(ownerKey, ["token", "create", "--ttl", "10m"]);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.trim();
  };

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), "agentd-enroll-"));
    const init = agentd(["cp", "init", "--dir", join(base, "cp"), "--host", "127.0.0.1"]);
    expect(init.code, init.stderr).toBe(0);
    const out = json(init.stdout) as { api_key: string; ca_file: string };
    child = spawn(
      AGENTD_BIN,
      ["cp", "serve", "--dir", join(base, "cp"), "--listen", "127.0.0.1:0"],
      { env: { PATH: process.env.PATH ?? "", HOME: "/root" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    ready = await new Promise((resolve, reject) => {
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).once("line", (l) =>
        resolve(json(l)),
      );
      child.once("exit", (code) => reject(new Error(`cp serve exited ${code}`)));
    });
    remote = ["--url", String(ready.url), "--ca", out.ca_file];
    const owner = generateEd25519KeyPair();
    ownerPub = join(base, "owner.pub");
    writePublicKeyFile(ownerPub, owner.publicKey);
    otherPub = join(base, "other.pub");
    writePublicKeyFile(otherPub, generateEd25519KeyPair().publicKey);
    const added = cp(out.api_key, ["owner", "add", "--owner-pub", ownerPub, "--json"]);
    expect(added.code, added.stderr).toBe(0);
    ownerKey = String(json(added.stdout).api_key);
  }, 60_000);

  afterAll(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    rmSync(base, { recursive: true, force: true });
  });

  it("enrolls a fresh machine: key made, pins kept 0600, registered under the given owner", async () => {
    const state = join(base, "m1");
    const r = agentd([
      "enroll",
      "--token",
      token(),
      "--owner-pub",
      ownerPub,
      "--state-dir",
      state,
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const reply = json(r.stdout) as {
      worker_id: string;
      owner_id: string;
      url: string;
      root_kid: string;
    };
    const machinePub = readPublicKeyFile(join(state, "machine.pub.pem"));
    expect(reply).toEqual({
      worker_id: jwkThumbprint(machinePub),
      owner_id: jwkThumbprint(readPublicKeyFile(ownerPub)),
      url: ready.url,
      root_kid: ready.root_kid,
    });
    expect(mode(join(state, "enrollment.json"))).toBe("600");
    expect(mode(join(state, "machine.key.pem"))).toBe("600");
    const e = readEnrollment(state);
    expect(e?.record.owner_jwk).toEqual(publicJwk(readPublicKeyFile(ownerPub)));
    expect(e?.keyset.rootKid).toBe(ready.root_kid);
    expect(e?.record.ca_pem).toContain("BEGIN CERTIFICATE");
    // the control plane has it, with the machine's facts
    const store = openStore(`sqlite:${join(base, "cp", "cp.db")}`);
    try {
      const w = await store.getWorker(reply.worker_id);
      expect(w?.owner_id).toBe(reply.owner_id);
      expect(w?.facts).toMatchObject({
        agent_version: "0.1.0",
        os: expect.stringContaining("Linux"),
      });
    } finally {
      await store.close();
    }
    // enrolled already: refused without --force, the pins untouched
    const again = agentd([
      "enroll",
      "--token",
      token(),
      "--owner-pub",
      ownerPub,
      "--state-dir",
      state,
    ]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("AGENTD_E_FILE_EXISTS");
  });

  it("refuses a token whose CA or root pin the server does not match, sending nothing", () => {
    const good = parseEnrollmentToken(token());
    for (const bad of [
      { ...good, ca_sha256: "00".repeat(32) },
      { ...good, root_kid: jwkThumbprint(generateEd25519KeyPair().publicKey) },
    ]) {
      const state = join(base, `pin-${bad.ca_sha256.slice(0, 4)}`);
      const r = agentd([
        "enroll",
        "--token",
        encodeEnrollmentToken(bad),
        "--owner-pub",
        ownerPub,
        "--state-dir",
        state,
      ]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain("AGENTD_E_ENROLL_PIN_MISMATCH");
      expect(() => readFileSync(join(state, "enrollment.json"))).toThrow();
    }
  });

  it("refuses to be pinned to an owner key that is not the token's owner, before the token is used", () => {
    const t = token();
    const state = join(base, "m-other");
    const wrong = agentd(["enroll", "--token", t, "--owner-pub", otherPub, "--state-dir", state]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain("AGENTD_E_ENROLL_PIN_MISMATCH");
    expect(() => readFileSync(join(state, "enrollment.json"))).toThrow();
    // nothing was registered and the token was not spent: the right owner key enrolls with it
    const right = agentd(["enroll", "--token", t, "--owner-pub", ownerPub, "--state-dir", state]);
    expect(right.code, right.stderr).toBe(0);
    // now it is spent
    const reuse = agentd([
      "enroll",
      "--token",
      t,
      "--owner-pub",
      ownerPub,
      "--state-dir",
      join(base, "m-reuse"),
    ]);
    expect(reuse.code).not.toBe(0);
    expect(reuse.stderr).toContain("AGENTD_E_CP_TOKEN_INVALID");
  });

  it("reads the token from stdin with --token -", () => {
    const state = join(base, "m-stdin");
    const r = spawnWithStdin(
      ["enroll", "--token", "-", "--owner-pub", ownerPub, "--state-dir", state, "--json"],
      `${token()}\n`,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(json(r.stdout).url).toBe(ready.url);
  });
});

function spawnWithStdin(args: string[], input: string) {
  const r = spawnSync(AGENTD_BIN, args, {
    input,
    encoding: "utf8",
    env: { PATH: process.env.PATH ?? "", HOME: "/root" },
    timeout: 30_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
