import type { KeyObject } from "node:crypto";
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { generateEd25519KeyPair, jwkThumbprint } from "../../lib/crypto/ed25519.ts";
import { verifyJws } from "../../lib/crypto/jws.ts";
import { writeKeyPair } from "../../lib/crypto/key-files.ts";
import { agentd } from "../support/cli.ts";
import { useTmpDir } from "../support/tmp.ts";

/**
 * `agentd consent sign` and `agentd consent revoke`, through the real binary. Every signed
 * document is checked with the JWS verifier and the owner's public key, and its payload is
 * compared with literals (not with what the signing code would compute).
 */

const tmp = useTmpDir();
const DAY_S = 86_400;
const IMAGE = `sha256:${"ab".repeat(32)}`;
const WORKER = jwkThumbprint(generateEd25519KeyPair().publicKey);

interface Setup {
  dir: string;
  ownerKey: string;
  ownerPub: KeyObject;
  ownerId: string;
}

function setup(): Setup {
  const dir = tmp();
  const pair = generateEd25519KeyPair();
  const ownerKey = join(dir, "owner.key");
  writeKeyPair(ownerKey, `${ownerKey}.pub`, pair.privateKey, { force: false });
  return { dir, ownerKey, ownerPub: pair.publicKey, ownerId: jwkThumbprint(pair.publicKey) };
}

function file(dir: string, name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

function verified(jws: string, key: KeyObject, typ: string): Record<string, unknown> {
  return verifyJws(jws, {
    typ,
    resolveKey: (kid) => (kid === jwkThumbprint(key) ? key : undefined),
  }).payload;
}

const RULES_TOML = `
[rules]
max_watts = 3600
max_temp_c = 85
services = { bitcoind = "${IMAGE}" }
commands = ["mining.pause", "mining.resume"]

[[rules.upstreams]]
url = "stratum+tcp://pool.example:3333"
user = "owner1.farm-a"

[[rules.schedule]]
days = ["mon", "tue"]
start = "22:00"
end = "06:00"
tz = "Europe/Berlin"
`;

const RULES = {
  max_watts: 3600,
  max_temp_c: 85,
  services: { bitcoind: IMAGE },
  commands: ["mining.pause", "mining.resume"],
  upstreams: [{ url: "stratum+tcp://pool.example:3333", user: "owner1.farm-a" }],
  schedule: [{ days: ["mon", "tue"], start: "22:00", end: "06:00", tz: "Europe/Berlin" }],
};

function sign(s: Setup, rulesFile: string, extra: string[] = [], seq = "7") {
  return agentd([
    "consent",
    "sign",
    "--owner-key",
    s.ownerKey,
    "--worker",
    WORKER,
    "--rules",
    rulesFile,
    "--seq",
    seq,
    ...extra,
  ]);
}

describe("agentd consent sign", { timeout: 120_000 }, () => {
  it("signs a consent from a TOML [rules] table and prints the JWS alone; defaults: policy id, 365 days", () => {
    const s = setup();
    const before = Math.floor(Date.now() / 1000);
    const r = sign(s, file(s.dir, "rules.toml", RULES_TOML));
    const after = Math.ceil(Date.now() / 1000);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$/);
    const p = verified(r.stdout.trim(), s.ownerPub, "agentd-consent+jwt");
    expect(Object.keys(p).sort()).toEqual(
      ["exp", "iat", "nbf", "nonce", "owner", "policy_id", "rules", "seq", "v", "worker"].sort(),
    );
    expect(p).toMatchObject({
      v: 1,
      owner: s.ownerId,
      worker: WORKER,
      policy_id: "default",
      seq: 7,
      rules: RULES,
    });
    expect(p.rules).toEqual(RULES);
    const iat = p.iat as number;
    expect(iat).toBeGreaterThanOrEqual(before);
    expect(iat).toBeLessThanOrEqual(after);
    expect(p.nbf).toBe(iat);
    expect(p.exp).toBe(iat + 365 * DAY_S);
    expect(p.nonce).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it("reads JSON rules at the top level, takes --policy-id and --days, and writes --out (0644) printing nothing", () => {
    const s = setup();
    const out = join(s.dir, "consent.jws");
    const r = sign(
      s,
      file(s.dir, "rules.json", JSON.stringify(RULES)),
      ["--policy-id", "farm-a-2026", "--days", "2", "--out", out],
      "12",
    );
    expect(r).toMatchObject({ code: 0, stdout: "", stderr: "" });
    const text = readFileSync(out, "utf8");
    expect(text).toMatch(/^[^\n]+\n$/);
    expect(statSync(out).mode & 0o777).toBe(0o644);
    const p = verified(text.trim(), s.ownerPub, "agentd-consent+jwt");
    expect(p).toMatchObject({ policy_id: "farm-a-2026", seq: 12, rules: RULES });
    expect((p.exp as number) - (p.iat as number)).toBe(2 * DAY_S);
  });

  it("without .json/.toml reads JSON if it is JSON, else TOML; {rules: …} is unwrapped in both", () => {
    const s = setup();
    const asJson = sign(s, file(s.dir, "rules-a.txt", JSON.stringify({ rules: RULES })));
    expect(asJson.code).toBe(0);
    expect(verified(asJson.stdout.trim(), s.ownerPub, "agentd-consent+jwt").rules).toEqual(RULES);
    const asToml = sign(s, file(s.dir, "rules-b", 'max_watts = 1200\nnetworks = ["10.0.0.0/8"]\n'));
    expect(asToml.code).toBe(0);
    expect(verified(asToml.stdout.trim(), s.ownerPub, "agentd-consent+jwt").rules).toEqual({
      max_watts: 1200,
      networks: ["10.0.0.0/8"],
    });
  });

  it("two signatures of the same input differ (fresh nonce)", () => {
    const s = setup();
    const rules = file(s.dir, "rules.toml", RULES_TOML);
    const a = verified(sign(s, rules).stdout.trim(), s.ownerPub, "agentd-consent+jwt");
    const b = verified(sign(s, rules).stdout.trim(), s.ownerPub, "agentd-consent+jwt");
    expect(a.nonce).not.toBe(b.nonce);
  });

  const badRules: Array<[string, string, string, string]> = [
    [
      "an out-of-range rule",
      "r.toml",
      "[rules]\nmax_watts = 0\n",
      "rules.max_watts: expected an integer from 1",
    ],
    ["an unknown rule", "r.json", '{"max_wats": 5}', "rules.max_wats: expected no such member"],
    [
      "a bad image id",
      "r.json",
      '{"rules": {"services": {"bitcoind": "latest"}}}',
      "rules.services.bitcoind: expected an image id",
    ],
    [
      "a bad upstream scheme",
      "r.toml",
      '[[upstreams]]\nurl = "http://pool.example:3333"\nuser = "u"\n',
      "rules.upstreams[0].url: expected a stratum+tcp",
    ],
    [
      "rules that are not an object",
      "r.json",
      "[1, 2]",
      "rules: expected an object, found an array",
    ],
    [
      "rules beside other members",
      "r.json",
      '{"rules": {}, "seq": 3}',
      'found "rules" beside "seq"',
    ],
    ["a JSON duplicate member", "r.json", '{"max_watts": 1, "max_watts": 2}', "duplicate member"],
    ["TOML syntax in a .json file", "r.json", "max_watts = 3", "the rules file is not valid JSON"],
    ["broken TOML", "r.toml", "[rules\n", "the rules file is not valid TOML: line 1"],
    ["neither JSON nor TOML", "r.txt", "{nope", "the rules file is neither JSON ("],
  ];
  for (const [name, fileName, text, message] of badRules) {
    it(`refuses ${name} with exit 2 and the member or position at fault`, () => {
      const s = setup();
      const r = sign(s, file(s.dir, fileName, text));
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(/^agentd: AGENTD_E_USAGE: /);
      expect(r.stderr).toContain(message);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    });
  }

  const badArgs: Array<[string, string[], string]> = [
    ["--seq 0", ["--seq", "0"], "--seq: expected a positive integer"],
    ["--seq -1", ["--seq", "-1"], "--seq: expected a positive integer"],
    ["--seq 1.5", ["--seq", "1.5"], "--seq: expected a positive integer"],
    ["--seq 01", ["--seq", "01"], "--seq: expected a positive integer"],
    ["--seq beyond 2^53", ["--seq", "9007199254740993"], "--seq: expected a positive integer"],
    ["--days 0", ["--days", "0"], "--days: expected a positive integer"],
    ["--days beyond any date", ["--days", "999999999999999"], "--days: "],
    [
      "a worker that is not a thumbprint",
      ["--worker", "miner-1"],
      "--worker: expected a worker id",
    ],
    ["a policy id with a space", ["--policy-id", "farm a"], "--policy-id: expected"],
  ];
  for (const [name, args, message] of badArgs) {
    it(`exits 2 for ${name}`, () => {
      const s = setup();
      const rules = file(s.dir, "rules.toml", RULES_TOML);
      // Later flags win in commander, so each bad value replaces the good one.
      const r = agentd([
        "consent",
        "sign",
        "--owner-key",
        s.ownerKey,
        "--worker",
        WORKER,
        "--rules",
        rules,
        "--seq",
        "3",
        ...args,
      ]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain(`agentd: AGENTD_E_USAGE: ${message}`);
    });
  }

  it("exits 2 when a required option is missing", () => {
    const s = setup();
    const r = agentd(["consent", "sign", "--owner-key", s.ownerKey, "--worker", WORKER]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("AGENTD_E_USAGE: required option");
  });

  it("exits 1 for a missing owner key, a private key others can read, or a missing rules file", () => {
    const s = setup();
    const rules = file(s.dir, "rules.toml", RULES_TOML);
    const missing = agentd([
      "consent",
      "sign",
      "--owner-key",
      join(s.dir, "nope.key"),
      "--worker",
      WORKER,
      "--rules",
      rules,
      "--seq",
      "1",
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^agentd: AGENTD_E_IO: .*nope\.key/);

    chmodSync(s.ownerKey, 0o644);
    const insecure = sign(s, rules);
    expect(insecure.code).toBe(1);
    expect(insecure.stderr).toContain("AGENTD_E_FILE_INSECURE_MODE");
    expect(insecure.stdout).toBe("");
    chmodSync(s.ownerKey, 0o600);

    const noRules = sign(s, join(s.dir, "absent.toml"));
    expect(noRules.code).toBe(1);
    expect(noRules.stderr).toMatch(/^agentd: AGENTD_E_IO: .*absent\.toml/);
  });
});

describe("agentd consent sign --renew", { timeout: 120_000 }, () => {
  it("signs the renewed consent's worker, rules and policy id again with the new seq, for as long as it lasted", () => {
    const s = setup();
    const rules = file(s.dir, "rules.toml", RULES_TOML);
    const first = sign(
      s,
      rules,
      ["--days", "7", "--policy-id", "short", "--out", join(s.dir, "c7.jws")],
      "7",
    );
    expect(first.code, first.stderr).toBe(0);
    const r = agentd([
      "consent",
      "sign",
      "--owner-key",
      s.ownerKey,
      "--renew",
      join(s.dir, "c7.jws"),
      "--seq",
      "8",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const old = verified(
      readFileSync(join(s.dir, "c7.jws"), "utf8").trim(),
      s.ownerPub,
      "agentd-consent+jwt",
    );
    const p = verified(r.stdout.trim(), s.ownerPub, "agentd-consent+jwt");
    expect(p).toMatchObject({
      worker: WORKER,
      policy_id: "short",
      seq: 8,
      rules: RULES,
      owner: s.ownerId,
    });
    expect((p.exp as number) - (p.iat as number)).toBe(7 * DAY_S);
    expect(p.nonce).not.toBe(old.nonce);
    expect(p.iat as number).toBeGreaterThanOrEqual(old.iat as number);
    // --days still chooses; the same worker and rules given again are fine
    const longer = agentd([
      "consent",
      "sign",
      "--owner-key",
      s.ownerKey,
      "--renew",
      join(s.dir, "c7.jws"),
      "--seq",
      "9",
      "--days",
      "30",
      "--worker",
      WORKER,
      "--rules",
      rules,
    ]);
    expect(longer.code, longer.stderr).toBe(0);
    const q = verified(longer.stdout.trim(), s.ownerPub, "agentd-consent+jwt");
    expect((q.exp as number) - (q.iat as number)).toBe(30 * DAY_S);
  });

  it("refuses a seq not higher than the renewed one's, another owner's consent, and changed rules (exit 2)", () => {
    const s = setup();
    const rules = file(s.dir, "rules.toml", RULES_TOML);
    expect(sign(s, rules, ["--out", join(s.dir, "c7.jws")], "7").code).toBe(0);
    const renew = (extra: string[], key = s.ownerKey) =>
      agentd(["consent", "sign", "--owner-key", key, "--renew", join(s.dir, "c7.jws"), ...extra]);
    const same = renew(["--seq", "7"]);
    expect(same.code).toBe(2);
    expect(same.stderr).toContain("a renewal needs a seq higher than the renewed consent's (7)");
    const other = setup();
    const foreign = renew(["--seq", "8"], other.ownerKey);
    expect(foreign.code).toBe(2);
    expect(foreign.stderr).toContain(
      "is not a consent signed by this owner key (AGENTD_E_JWS_UNKNOWN_KEY",
    );
    const changed = file(s.dir, "other.json", JSON.stringify({ upstreams: RULES.upstreams }));
    const widened = renew(["--seq", "8", "--rules", changed]);
    expect(widened.code).toBe(2);
    expect(widened.stderr).toContain("--rules differs from the renewed consent's");
    expect(`${same.stdout}${foreign.stdout}${widened.stdout}`).toBe("");
  });
});

describe("agentd consent revoke", { timeout: 120_000 }, () => {
  function revoke(s: Setup, extra: string[]) {
    return agentd(["consent", "revoke", "--owner-key", s.ownerKey, "--worker", WORKER, ...extra]);
  }

  it("prints the owner-signed revocation of every seq through N", () => {
    const s = setup();
    const before = Math.floor(Date.now() / 1000);
    const r = revoke(s, ["--through-seq", "7"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/^[^\n]+\n$/);
    const p = verified(r.stdout.trim(), s.ownerPub, "agentd-revocation+jwt");
    expect(Object.keys(p).sort()).toEqual(["iat", "nonce", "owner", "through_seq", "v", "worker"]);
    expect(p).toMatchObject({ v: 1, owner: s.ownerId, worker: WORKER, through_seq: 7 });
    expect(p.iat as number).toBeGreaterThanOrEqual(before);
    expect(p.iat as number).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000));
  });

  it("writes --out (0644) and prints nothing", () => {
    const s = setup();
    const out = join(s.dir, "revocation.jws");
    const r = revoke(s, ["--through-seq", "3", "--out", out]);
    expect(r).toMatchObject({ code: 0, stdout: "", stderr: "" });
    expect(statSync(out).mode & 0o777).toBe(0o644);
    const p = verified(readFileSync(out, "utf8").trim(), s.ownerPub, "agentd-revocation+jwt");
    expect(p.through_seq).toBe(3);
  });

  it("--apply with no agent running: still produces the revocation, says why it was not applied, exits 1", () => {
    const s = setup();
    const socket = ["--set", `api.socket=${join(s.dir, "no-agent.sock")}`];
    const r = revoke(s, ["--through-seq", "2", "--apply", ...socket]);
    expect(r.code).toBe(1);
    expect(verified(r.stdout.trim(), s.ownerPub, "agentd-revocation+jwt").through_seq).toBe(2);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^agentd: AGENTD_E_IO: cannot reach the local agent at .*no-agent\.sock/,
    );

    const out = join(s.dir, "rev.jws");
    const w = revoke(s, ["--through-seq", "2", "--apply", "--out", out, ...socket]);
    expect(w.code).toBe(1);
    expect(w.stdout).toBe("");
    expect(existsSync(out)).toBe(true);
  });

  it("exits 2 for a bad --through-seq or worker, 1 for a missing key", () => {
    const s = setup();
    for (const n of ["0", "x", "-3", "2e3"]) {
      const r = revoke(s, ["--through-seq", n]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("AGENTD_E_USAGE: --through-seq: expected a positive integer");
    }
    const w = agentd([
      "consent",
      "revoke",
      "--owner-key",
      s.ownerKey,
      "--worker",
      "abc",
      "--through-seq",
      "1",
    ]);
    expect(w.code).toBe(2);
    const k = agentd([
      "consent",
      "revoke",
      "--owner-key",
      join(s.dir, "missing"),
      "--worker",
      WORKER,
      "--through-seq",
      "1",
    ]);
    expect(k.code).toBe(1);
    expect(k.stderr).toContain("AGENTD_E_IO");
  });
});
