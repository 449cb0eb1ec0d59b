import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseEnrollmentToken } from "../../control-plane/protocol/enrollment-token.ts";
import { caSha256 } from "../../control-plane/protocol/tls.ts";
import { openStore } from "../../control-plane/store/open.ts";
import { generateEd25519KeyPair, jwkThumbprint } from "../../lib/crypto/ed25519.ts";
import { writePublicKeyFile } from "../../lib/crypto/key-files.ts";
import { AGENTD_BIN, agentd } from "../support/cli.ts";
import { useTmpDir } from "../support/tmp.ts";

const tmp = useTmpDir("agentd-cp-cli-");

const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);
const json = (text: string) => JSON.parse(text) as Record<string, unknown>;

function init(dir: string) {
  const r = agentd(["cp", "init", "--dir", dir, "--host", "127.0.0.1"]);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout.trim().split("\n")).toHaveLength(1);
  return json(r.stdout) as {
    api_key: string;
    key_id: string;
    ca_file: string;
    ca_sha256: string;
    root_kid: string;
  };
}

/** `agentd cp serve` as a real process; resolves with its first stdout line (caller kills it). */
function serve(dir: string): Promise<{ child: ChildProcess; ready: Record<string, unknown> }> {
  const child = spawn(AGENTD_BIN, ["cp", "serve", "--dir", dir, "--listen", "127.0.0.1:0"], {
    env: { PATH: process.env.PATH ?? "", HOME: "/root" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stderr: string[] = [];
  child.stderr?.on("data", (d: Buffer) => stderr.push(d.toString()));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).once("line", (line) =>
      resolve({ child, ready: json(line) }),
    );
    child.once("exit", (code) =>
      reject(new Error(`exited ${code} before ready: ${stderr.join("")}`)),
    );
  });
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once("exit", (code) => resolve(code));
  });
}

describe("agentd cp init", () => {
  it("creates keys and a 0600 database, prints the first admin key once, stores only its hash", async () => {
    const dir = join(tmp(), "cp");
    const out = init(dir);
    expect(out.api_key).toMatch(/^agentd_admin_[A-Za-z0-9_-]{43}$/);
    expect(out.ca_sha256).toBe(caSha256(readFileSync(out.ca_file, "utf8")));
    expect(mode(dir)).toBe("700");
    expect(mode(join(dir, "keys"))).toBe("700");
    expect(mode(join(dir, "cp.db"))).toBe("600");
    expect(mode(join(dir, "cp.json"))).toBe("600");
    expect(readFileSync(join(dir, "cp.db")).includes(out.api_key)).toBe(false);
    const store = openStore(`sqlite:${join(dir, "cp.db")}`);
    try {
      const sha = createHash("sha256").update(out.api_key).digest("hex");
      expect(await store.findApiKeyBySha256(sha)).toMatchObject({ id: out.key_id, role: "admin" });
      expect((await store.verifyAudit()).ok).toBe(true);
    } finally {
      await store.close();
    }
    const again = agentd(["cp", "init", "--dir", dir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("AGENTD_E_FILE_EXISTS");
    expect(json(again.stdout).error).toMatchObject({ code: "AGENTD_E_FILE_EXISTS" });
  });

  it("serve refuses a directory that init did not make", () => {
    const r = agentd(["cp", "serve", "--dir", tmp(), "--listen", "127.0.0.1:0"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("agentd cp init");
    expect(agentd(["cp", "serve", "--dir", tmp(), "--listen", "nowhere"]).code).toBe(2);
  });
});

describe("agentd cp serve and the administrative verbs", () => {
  // One control plane process for the verbs below, in order; the last test stops it.
  let base = "";
  let out: ReturnType<typeof init>;
  let child: ChildProcess;
  let ready: Record<string, unknown> = {};
  let remote: string[] = [];
  const keys: Record<string, string> = {};
  const as = (key: string, args: string[]) =>
    agentd(["cp", ...args, ...remote], { AGENTD_CP_API_KEY: key });

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), "agentd-cp-serve-"));
    out = init(join(base, "cp"));
    ({ child, ready } = await serve(join(base, "cp")));
    remote = ["--url", String(ready.url), "--ca", out.ca_file];
  });
  afterAll(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    rmSync(base, { recursive: true, force: true });
  });

  it("prints the ready line first", () => {
    expect(Object.keys(ready).sort()).toEqual([
      "ca_sha256",
      "host",
      "port",
      "ready",
      "root_kid",
      "url",
    ]);
    expect(ready).toMatchObject({ ready: true, host: "127.0.0.1", ca_sha256: out.ca_sha256 });
    expect(ready.root_kid).toBe(out.root_kid);
    expect(ready.url).toBe(`https://127.0.0.1:${ready.port}`);
  });

  it("owner add (admin) and token create (owner): the token pins this control plane", () => {
    const owner = generateEd25519KeyPair();
    writePublicKeyFile(join(base, "owner.pub"), owner.publicKey);
    const added = as(out.api_key, [
      "owner",
      "add",
      "--owner-pub",
      join(base, "owner.pub"),
      "--json",
    ]);
    expect(added.code, added.stderr).toBe(0);
    const ownerReply = json(added.stdout) as { owner: string; api_key: string };
    expect(ownerReply.owner).toBe(jwkThumbprint(owner.publicKey));
    expect(ownerReply.api_key).toMatch(/^agentd_owner_/);
    const token = as(ownerReply.api_key, ["token", "create", "--ttl", "10m"]);
    expect(token.code, token.stderr).toBe(0);
    const t = parseEnrollmentToken(token.stdout.trim());
    expect(t).toMatchObject({ url: ready.url, ca_sha256: out.ca_sha256, root_kid: out.root_kid });
    // the admin may not: 403 → exit 3, with the server's code
    const denied = as(out.api_key, ["token", "create"]);
    expect(denied.code).toBe(3);
    expect(denied.stderr).toContain("AGENTD_E_CP_FORBIDDEN");
  });

  it("apikey create (admin) and command send (operator): server and schema refusals", () => {
    const op = as(out.api_key, ["apikey", "create", "--role", "operator"]);
    expect(op.code, op.stderr).toBe(0);
    keys.operator = op.stdout.trim();
    expect(keys.operator).toMatch(/^agentd_operator_[A-Za-z0-9_-]{43}$/);
    const worker = jwkThumbprint(generateEd25519KeyPair().publicKey);
    const send = ["command", "send", "--worker", worker, "--action"];
    const unknown = as(keys.operator, [...send, "mining.pause"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("AGENTD_E_CP_NOT_FOUND");
    // checked against the request schema before it is sent
    const badArgs = as(keys.operator, [
      ...send,
      "service.restart",
      "--args",
      '{"service":"docker"}',
    ]);
    expect(badArgs.code).toBe(3);
    expect(badArgs.stderr).toContain("AGENTD_E_SCHEMA");
    expect(as(keys.operator, [...send, "mining.pause", "--args", "{"]).code).toBe(2);
  });

  it("takes --api-key over AGENTD_CP_API_KEY; a wrong key is 401, none is a usage error", () => {
    const bogus = `agentd_admin_${"A".repeat(43)}`;
    const flag = agentd(
      ["cp", "apikey", "create", "--role", "auditor", "--api-key", out.api_key, ...remote],
      { AGENTD_CP_API_KEY: bogus },
    );
    expect(flag.code, flag.stderr).toBe(0);
    const wrong = as(bogus, ["apikey", "create", "--role", "auditor"]);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toContain("AGENTD_E_CP_UNAUTHENTICATED");
    const none = agentd(["cp", "apikey", "create", "--role", "auditor", ...remote]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("AGENTD_E_USAGE");
  });

  it("keys rotate (admin): a new key set under the same root", () => {
    const rotated = as(out.api_key, ["keys", "rotate", "--json"]);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(json(rotated.stdout)).toMatchObject({ seq: 2, root_kid: out.root_kid });
  });

  it("audit export and verify; an edited or cut export is exit 3", () => {
    const file = join(base, "audit.jsonl");
    const exported = as(out.api_key, ["audit", "export", "--out", file, "--json"]);
    expect(exported.code, exported.stderr).toBe(0);
    const lines = readFileSync(file, "utf8").trim().split("\n");
    expect(json(exported.stdout).count).toBe(lines.length);
    const types = lines.map((l) => json(l).type);
    expect(types).toEqual(
      expect.arrayContaining(["apikey.created", "owner.created", "keys.rotated"]),
    );
    const verified = as(out.api_key, ["audit", "verify", file, "--json"]);
    expect(verified.code, verified.stderr).toBe(0);
    expect(json(verified.stdout)).toMatchObject({ valid: true, count: lines.length });
    const live = as(out.api_key, ["audit", "verify"]);
    expect(live.code, live.stderr).toBe(0);
    expect(live.stdout).toMatch(/^ok: \d+ events/);
    const edited = lines.map((l, i) =>
      i === 2 ? l.replace(/"actor":"[^"]*"/, '"actor":"system"') : l,
    );
    writeFileSync(join(base, "edited.jsonl"), `${edited.join("\n")}\n`);
    const e = as(out.api_key, ["audit", "verify", join(base, "edited.jsonl"), "--json"]);
    expect(e.code).toBe(3);
    expect(json(e.stdout)).toMatchObject({
      valid: false,
      code: "AGENTD_E_LOG_CHAIN_BROKEN",
      line: 3,
    });
    writeFileSync(join(base, "cut.jsonl"), `${lines.filter((_, i) => i !== 1).join("\n")}\n`);
    const c = as(out.api_key, ["audit", "verify", join(base, "cut.jsonl"), "--json"]);
    expect(c.code).toBe(3);
    expect(json(c.stdout)).toMatchObject({ valid: false, code: "AGENTD_E_LOG_SEQ_GAP" });
  });

  it("exits 0 on SIGTERM", async () => {
    child.kill("SIGTERM");
    expect(await exitOf(child)).toBe(0);
  });
});

describe("AGENTD_CP_API_KEY", () => {
  it("is a documented config key: accepted by every command, redacted", () => {
    const config = join(tmp(), "agentd.toml");
    writeFileSync(config, "", { mode: 0o600 });
    const env = { AGENTD_CP_API_KEY: `agentd_admin_${"B".repeat(43)}` };
    const check = agentd(["config", "check", "--config", config], env);
    expect(check.code, check.stderr).toBe(0);
    const show = agentd(["config", "show", "--json", "--config", config], env);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).not.toContain("B".repeat(43));
    expect(JSON.stringify(json(show.stdout))).toContain("[REDACTED]");
    expect(readFileSync(join(import.meta.dirname, "../../docs/config.md"), "utf8")).toContain(
      "`AGENTD_CP_API_KEY`",
    );
    // Exactly this name: the loader still refuses any other unknown AGENTD_ variable.
    const unknown = agentd(["config", "check", "--config", config], { AGENTD_CP_API_KEYS: "x" });
    expect(unknown.code).toBe(2);
  });
});
