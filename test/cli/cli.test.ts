import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { jwkThumbprint, parsePublicKeyPem } from "../../lib/crypto/ed25519.ts";
import { agentd, REPO_ROOT } from "../support/cli.ts";
import { useTmpDir } from "../support/tmp.ts";

const tmp = useTmpDir();
const VERSION = (
  JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string }
).version;
const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;

describe("agentd --version and usage", () => {
  it("prints the version alone", () => {
    const r = agentd(["--version"]);
    expect(r).toMatchObject({ code: 0, stdout: `${VERSION}\n` });
  });

  it("exits 2 on an unknown command or option, with one line on stderr", () => {
    const a = agentd(["frobnicate"]);
    expect(a.code).toBe(2);
    expect(a.stdout).toBe("");
    expect(a.stderr).toMatch(/^agentd: AGENTD_E_USAGE: unknown command 'frobnicate'/);
    const b = agentd(["init", "--nope"]);
    expect(b.code).toBe(2);
    expect(b.stderr).toContain("unknown option '--nope'");
  });
});

describe("agentd init", () => {
  it("creates the machine key pair and prints the worker id, which is the key's thumbprint", () => {
    const state = join(tmp(), "state");
    const r = agentd(["init", "--state-dir", state]);
    expect(r.code).toBe(0);
    const workerId = r.stdout.trim();
    expect(workerId).toMatch(THUMBPRINT);
    expect(r.stdout).toBe(`${workerId}\n`);

    const key = join(state, "machine.key.pem");
    const pub = join(state, "machine.pub.pem");
    expect(statSync(key).mode & 0o777).toBe(0o600);
    expect(statSync(state).mode & 0o777).toBe(0o700);
    expect(jwkThumbprint(parsePublicKeyPem(readFileSync(pub)))).toBe(workerId);
    // openssl reads both files and derives the same public key from the private one.
    const derived = execFileSync("openssl", ["pkey", "-in", key, "-pubout"], { encoding: "utf8" });
    expect(derived).toBe(readFileSync(pub, "utf8"));
  });

  it("is idempotent: a second run keeps the key and prints the same id; --force replaces it", () => {
    const state = join(tmp(), "state");
    const first = agentd(["init", "--state-dir", state, "--json"]);
    const before = readFileSync(join(state, "machine.key.pem"));
    const second = agentd(["init", "--state-dir", state, "--json"]);
    expect(second.code).toBe(0);
    const a = JSON.parse(first.stdout) as Record<string, unknown>;
    const b = JSON.parse(second.stdout) as Record<string, unknown>;
    expect(a.created).toBe(true);
    expect(b).toEqual({ ...a, created: false });
    expect(readFileSync(join(state, "machine.key.pem"))).toEqual(before);

    const forced = agentd(["init", "--state-dir", state, "--force"]);
    expect(forced.code).toBe(0);
    expect(forced.stdout.trim()).not.toBe(a.worker_id);
    expect(readFileSync(join(state, "machine.key.pem"))).not.toEqual(before);
  });

  it("rewrites a missing public key from the private key", () => {
    const state = join(tmp(), "state");
    const id = agentd(["init", "--state-dir", state]).stdout.trim();
    rmSync(join(state, "machine.pub.pem"));
    expect(agentd(["init", "--state-dir", state]).stdout.trim()).toBe(id);
    expect(jwkThumbprint(parsePublicKeyPem(readFileSync(join(state, "machine.pub.pem"))))).toBe(id);
  });

  it("refuses a private key others can read (0644), and leaves it untouched", () => {
    const state = join(tmp(), "state");
    agentd(["init", "--state-dir", state]);
    const key = join(state, "machine.key.pem");
    chmodSync(key, 0o644);
    const before = readFileSync(key);
    const r = agentd(["init", "--state-dir", state]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(
      /^agentd: AGENTD_E_FILE_INSECURE_MODE: .*machine\.key\.pem: private key has mode 0644/,
    );
    expect(readFileSync(key)).toEqual(before);
    expect(statSync(key).mode & 0o777).toBe(0o644);

    const j = agentd(["init", "--state-dir", state, "--json"]);
    expect(JSON.parse(j.stdout)).toMatchObject({ error: { code: "AGENTD_E_FILE_INSECURE_MODE" } });
  });

  it("refuses a state directory others can write", () => {
    const state = join(tmp(), "state");
    mkdirSync(state, { mode: 0o777 });
    chmodSync(state, 0o777);
    const r = agentd(["init", "--state-dir", state]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("AGENTD_E_FILE_INSECURE_MODE");
  });

  it("accepts a relative --state-dir, resolved against the working directory", () => {
    const cwd = tmp();
    const r = agentd(["init", "--state-dir", "st", "--json"], {}, cwd);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as { key_file: string };
    expect(doc.key_file).toBe(join(cwd, "st", "machine.key.pem"));
    expect(statSync(doc.key_file).mode & 0o777).toBe(0o600);
  });

  it("takes the state dir from the config when no flag is given", () => {
    const state = join(tmp(), "from-env");
    const r = agentd(["init"], { AGENTD_PATHS__STATE_DIR: state });
    expect(r.code).toBe(0);
    expect(statSync(join(state, "machine.key.pem")).isFile()).toBe(true);
  });
});

describe("agentd owner keygen", () => {
  it("writes F (0600) and F.pub and prints the owner thumbprint; refuses to overwrite", () => {
    const f = join(tmp(), "owner.key");
    const r = agentd(["owner", "keygen", "--out", f]);
    expect(r.code).toBe(0);
    expect(statSync(f).mode & 0o777).toBe(0o600);
    expect(jwkThumbprint(parsePublicKeyPem(readFileSync(`${f}.pub`)))).toBe(r.stdout.trim());
    const again = agentd(["owner", "keygen", "--out", f]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("AGENTD_E_FILE_EXISTS");
  });
});

describe("agentd config check", () => {
  function withFile(text: string): Record<string, string> {
    const p = join(tmp(), "agentd.toml");
    writeFileSync(p, text, { mode: 0o600 });
    return { AGENTD_CONFIG: p };
  }

  it("accepts a valid configuration", () => {
    const r = agentd(["config", "check"], withFile('[stratum]\nlisten = "127.0.0.1:0"\n'));
    expect(r).toMatchObject({ code: 0, stdout: "ok\n" });
    const j = agentd(
      ["config", "check", "--json"],
      withFile('[stratum]\nlisten = "127.0.0.1:0"\n'),
    );
    expect(JSON.parse(j.stdout)).toMatchObject({ valid: true });
  });

  const cases: Array<[string, () => Record<string, string>, string[], string]> = [
    [
      "unknown key",
      () => withFile("[stratum]\nlistn = 'a:1'\n"),
      [],
      "AGENTD_E_CONFIG_UNKNOWN_KEY: stratum.listn: expected one of",
    ],
    [
      "wrong type",
      () => withFile("[heartbeat]\ninterval_s = 'soon'\n"),
      [],
      'AGENTD_E_CONFIG_TYPE: heartbeat.interval_s: expected an integer, found "soon"',
    ],
    [
      "out of range",
      () => withFile("[heartbeat]\ninterval_s = 0\n"),
      [],
      "AGENTD_E_CONFIG_RANGE: heartbeat.interval_s: expected an integer from 1 to 3600, found 0",
    ],
    ["broken TOML", () => withFile("[stratum\n"), [], "AGENTD_E_CONFIG_PARSE:"],
    ["unreadable file", () => ({ AGENTD_CONFIG: tmp() }), [], "AGENTD_E_CONFIG_UNREADABLE:"],
    [
      "missing explicit file",
      () => ({}),
      ["--config", "/nonexistent/agentd.toml"],
      "AGENTD_E_CONFIG_NOT_FOUND: /nonexistent/agentd.toml: expected a config file, found no such file",
    ],
    [
      "unknown env",
      () => ({ AGENTD_STRATUM__LISTN: "a:1" }),
      [],
      "AGENTD_E_CONFIG_UNKNOWN_ENV: AGENTD_STRATUM__LISTN:",
    ],
    [
      "bad env value",
      () => ({ AGENTD_STRATUM__MAX_LINE_BYTES: "-5" }),
      [],
      "AGENTD_E_CONFIG_RANGE: stratum.max_line_bytes: expected an integer from 1024 to 1048576, found -5 (env AGENTD_STRATUM__MAX_LINE_BYTES)",
    ],
    [
      "bad --set",
      () => ({}),
      ["--set", "stratum.vardiff=maybe"],
      'AGENTD_E_CONFIG_TYPE: stratum.vardiff: expected true or false, found "maybe" (flag --set)',
    ],
  ];
  for (const [name, env, extra, line] of cases) {
    it(`exits 2 with one line for: ${name}`, () => {
      const r = agentd([...extra, "config", "check"], env());
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      const lines = r.stderr.split("\n").filter((l) => l !== "");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(`agentd: ${line}`);
    });
  }
});

describe("agentd config show", () => {
  it("shows the effective configuration with secrets redacted, as TOML or JSON", () => {
    const env = { AGENTD_API__TOKEN: "very-secret-1234", AGENTD_STRATUM__LISTEN: "127.0.0.1:0" };
    const j = agentd(
      ["--set", "heartbeat.interval_s=15", "config", "show", "--json", "--set", "log.level=debug"],
      env,
    );
    expect(j.code).toBe(0);
    const doc = JSON.parse(j.stdout) as {
      config: Record<string, Record<string, unknown>>;
      origins: Record<string, string>;
    };
    expect(doc.config.api?.token).toBe("[REDACTED]");
    expect(doc.config.stratum?.listen).toBe("127.0.0.1:0");
    expect(doc.config.log?.level).toBe("debug");
    expect(doc.config.heartbeat?.interval_s).toBe(15); // --set before and after the command

    expect(doc.origins).toMatchObject({
      "api.token": "env",
      "log.level": "flag",
      "paths.state_dir": "default",
    });
    const t = agentd(["config", "show"], env);
    expect(t.code).toBe(0);
    expect(t.stdout).toContain('listen = "127.0.0.1:0"');
    expect(t.stdout).toContain('token = "[REDACTED]"');
    expect(t.stdout + t.stderr).not.toContain("very-secret-1234");
  });
});

describe("daemons take --listen (DOCUMENTS.md section 7)", () => {
  it("agentd sim asic validates --listen like --api-listen", () => {
    const r = agentd([
      "sim",
      "asic",
      "--count",
      "1",
      "--profile",
      "s19",
      "--pool",
      "stratum+tcp://127.0.0.1:1",
      "--listen",
      "nope",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--listen");
  });
});
