import type { KeyObject } from "node:crypto";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  generateEd25519KeyPair,
  jwkThumbprint,
  parsePublicKeyPem,
} from "../../lib/crypto/ed25519.ts";
import { documentIdentity, verifyJws } from "../../lib/crypto/jws.ts";
import { writeKeyPair } from "../../lib/crypto/key-files.ts";
import { signConsent, signPublication, signRevocation } from "../../policy-guard/sign.ts";
import { EMPTY_STATE, GUARD_STATE_FILE, saveGuardState } from "../../policy-guard/state.ts";
import { EMPTY_COUNTERS, type GuardCounters } from "../../policy-guard/verify.ts";
import { agentd } from "../support/cli.ts";
import { useTmpDir } from "../support/tmp.ts";

/**
 * `agentd policy publish | verify | explain`, through the real binary. Documents for verify and
 * explain are mostly made in-process at fixed times (policy-guard/sign.ts) so that `--now`
 * makes every result deterministic; the round trip makes them with the CLI itself.
 */

const tmp = useTmpDir();
const DAY_S = 86_400;
const IMAGE_BITCOIND = `sha256:${"b1".repeat(32)}`;
const IMAGE_TRANSLATOR = `sha256:${"7a".repeat(32)}`;
const POOL = "stratum+tcp://pool.example:3333";
const RULES = {
  max_watts: 3600,
  upstreams: [{ url: POOL, user: "owner1.farm-a" }],
  services: { bitcoind: IMAGE_BITCOIND, translator: IMAGE_TRANSLATOR },
  offline_grace_s: 3600,
  max_publication_ttl_s: 7200,
};
/** 2027-01-15T08:00:00Z: the documents made in-process are signed at this instant. */
const T0_S = 1_800_000_000;
const iso = (s: number): string => new Date(s * 1000).toISOString();

interface Fixture {
  dir: string;
  worker: string;
  ownerKey: string;
  ownerPub: string;
  cpKey: string;
  cpPub: string;
  owner: { privateKey: KeyObject; publicKey: KeyObject };
  cp: { privateKey: KeyObject; publicKey: KeyObject };
}

function fixture(): Fixture {
  const dir = tmp();
  const owner = generateEd25519KeyPair();
  const cp = generateEd25519KeyPair();
  const ownerKey = join(dir, "owner.key");
  const cpKey = join(dir, "cp.key");
  writeKeyPair(ownerKey, `${ownerKey}.pub`, owner.privateKey, { force: false });
  writeKeyPair(cpKey, `${cpKey}.pub`, cp.privateKey, { force: false });
  return {
    dir,
    worker: jwkThumbprint(generateEd25519KeyPair().publicKey),
    ownerKey,
    ownerPub: `${ownerKey}.pub`,
    cpKey,
    cpPub: `${cpKey}.pub`,
    owner,
    cp,
  };
}

function write(dir: string, name: string, content: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, typeof content === "string" ? content : JSON.stringify(content));
  return p;
}

/** A consent and publication signed in-process at T0 (or as told), written as a bundle file. */
function bundleFile(
  f: Fixture,
  o: { seq?: number; version?: number; stop?: boolean; ttlS?: number; rules?: unknown } = {},
): { path: string; consent: string; publication: string } {
  const consent = signConsent({
    ownerKey: f.owner.privateKey,
    worker: f.worker,
    rules: o.rules ?? RULES,
    seq: o.seq ?? 5,
    policyId: "farm-a",
    iat: T0_S,
    exp: T0_S + 30 * DAY_S,
  });
  const publication = signPublication({
    cpKey: f.cp.privateKey,
    consent,
    worker: f.worker,
    version: o.version ?? 9,
    iat: T0_S,
    ttlS: o.ttlS ?? 3600,
    stop: o.stop ?? false,
  });
  return { path: write(f.dir, "bundle.json", { consent, publication }), consent, publication };
}

function verify(f: Fixture, bundle: string, extra: string[] = []) {
  return agentd([
    "policy",
    "verify",
    bundle,
    "--owner-pub",
    f.ownerPub,
    "--cp-pub",
    f.cpPub,
    "--worker",
    f.worker,
    ...extra,
  ]);
}

function explain(f: Fixture, bundle: string, facts: string, extra: string[] = []) {
  return agentd([
    "policy",
    "explain",
    bundle,
    "--owner-pub",
    f.ownerPub,
    "--cp-pub",
    f.cpPub,
    "--worker",
    f.worker,
    "--facts",
    facts,
    ...extra,
  ]);
}

function json(stdout: string): unknown {
  expect(stdout.endsWith("\n")).toBe(true);
  expect(stdout.trim().split("\n")).toHaveLength(1);
  return JSON.parse(stdout);
}

function freshFacts(atS: number, watts = 3000): Record<string, unknown> {
  return {
    watts: { value: watts, source: "measured", at: iso(atS) },
    upstream: POOL,
  };
}

/** A state directory (0700) whose guard state has these counters, as the agent would keep it. */
function stateDir(f: Fixture, counters: Partial<GuardCounters>, name = "state"): string {
  const d = join(f.dir, name);
  mkdirSync(d, { mode: 0o700 });
  saveGuardState(join(d, GUARD_STATE_FILE), {
    ...EMPTY_STATE,
    counters: { ...EMPTY_COUNTERS, ...counters },
  });
  return d;
}

function payloadOf(jws: string, key: KeyObject, typ: string): Record<string, unknown> {
  const kid = jwkThumbprint(key);
  return verifyJws(jws, { typ, resolveKey: (k) => (k === kid ? key : undefined) }).payload;
}

const NOW = ["--now", iso(T0_S + 600)];

describe("agentd policy: the round trip through the CLI", { timeout: 120_000 }, () => {
  it("keygen → consent sign → publish → verify → explain (allowed, then over max_watts) → revoke → verify against the state", () => {
    const f = fixture();
    const owner = join(f.dir, "me.key");
    const ownerId = agentd(["owner", "keygen", "--out", owner]).stdout.trim();
    const rules = write(f.dir, "rules.json", { rules: RULES });
    const consentFile = join(f.dir, "consent.jws");
    const signed = agentd([
      "consent",
      "sign",
      "--owner-key",
      owner,
      "--worker",
      f.worker,
      "--rules",
      rules,
      "--seq",
      "4",
      "--out",
      consentFile,
    ]);
    expect(signed.code).toBe(0);
    const bundle = join(f.dir, "bundle.json");
    const published = agentd([
      "policy",
      "publish",
      "--cp-key",
      f.cpKey,
      "--consent",
      consentFile,
      "--version",
      "1",
      "--ttl",
      "2h",
      "--out",
      bundle,
    ]);
    expect(published).toMatchObject({ code: 0, stdout: "", stderr: "" });

    // Documents signed just now by the real clock; evaluate a minute later.
    const nowS = Math.floor(Date.now() / 1000) + 60;
    const now = ["--now", iso(nowS)];
    const args = (cmd: string) => [
      "policy",
      cmd,
      bundle,
      "--owner-pub",
      `${owner}.pub`,
      "--cp-pub",
      f.cpPub,
      "--worker",
      f.worker,
    ];
    const v = agentd([...args("verify"), ...now]);
    expect(v).toMatchObject({ code: 0, stdout: "valid\n" });
    const vj = agentd([...args("verify"), ...now, "--json"]);
    expect(vj.code).toBe(0);
    expect(vj.stdout).toBe('{"valid":true,"reasons":[]}\n');

    const okFacts = write(f.dir, "ok.json", freshFacts(nowS));
    const e = agentd([...args("explain"), "--facts", okFacts, ...now, "--json"]);
    expect(e.code).toBe(0);
    const d = json(e.stdout) as Record<string, unknown>;
    expect(Object.keys(d)).toEqual(["mining", "services", "next_change_at"]);
    expect(d.mining).toEqual({ allow: true, reasons: [] });
    expect(d.services).toEqual({
      allowed: { bitcoind: IMAGE_BITCOIND, translator: IMAGE_TRANSLATOR },
      reasons: [],
    });
    // The facts go stale 60 s after they were taken: the next change is then.
    expect(d.next_change_at).toBe(new Date((nowS + 60) * 1000 + 1).toISOString());

    const hotFacts = write(f.dir, "hot.json", freshFacts(nowS, 3601));
    const hot = agentd([...args("explain"), "--facts", hotFacts, ...now, "--json"]);
    expect(hot.code).toBe(3);
    expect((json(hot.stdout) as { mining: unknown }).mining).toEqual({
      allow: false,
      reasons: ["rules.max_watts_exceeded"],
    });

    const revoked = agentd([
      "consent",
      "revoke",
      "--owner-key",
      owner,
      "--worker",
      f.worker,
      "--through-seq",
      "4",
    ]);
    expect(revoked.code).toBe(0);
    // The agent applies a revocation by raising revokedThroughSeq in its guard state.
    const ownerPub = parsePublicKeyPem(readFileSync(`${owner}.pub`));
    expect(jwkThumbprint(ownerPub)).toBe(ownerId);
    const rev = payloadOf(revoked.stdout.trim(), ownerPub, "agentd-revocation+jwt");
    expect(rev).toMatchObject({ owner: ownerId, worker: f.worker, through_seq: 4 });
    const state = stateDir(f, { revokedThroughSeq: rev.through_seq as number });
    const after = agentd([...args("verify"), ...now, "--state-dir", state, "--json"]);
    expect(after.code).toBe(3);
    expect(after.stdout).toBe('{"valid":false,"reasons":["consent.revoked"]}\n');
    // Without the state, the documents alone are still valid: the revocation lives in the state.
    expect(agentd([...args("verify"), ...now]).code).toBe(0);
  });
});

describe("agentd policy publish", { timeout: 120_000 }, () => {
  function consentFile(f: Fixture, rules: unknown = RULES): { path: string; jws: string } {
    const jws = signConsent({
      ownerKey: f.owner.privateKey,
      worker: f.worker,
      rules,
      seq: 2,
      policyId: "p",
      iat: T0_S,
      exp: T0_S + DAY_S,
    });
    return { path: write(f.dir, "consent.jws", `${jws}\n`), jws };
  }

  function publish(f: Fixture, consent: string, extra: string[]) {
    return agentd(["policy", "publish", "--cp-key", f.cpKey, "--consent", consent, ...extra]);
  }

  it("prints the bundle: the consent as given and a publication for its worker, valid for 24h by default", () => {
    const f = fixture();
    // No max_publication_ttl_s: the default, 86400 s, admits the default ttl of 24h.
    const c = consentFile(f, { upstreams: RULES.upstreams });
    const before = Math.floor(Date.now() / 1000);
    const r = publish(f, c.path, ["--version", "42"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    const b = json(r.stdout) as Record<string, unknown>;
    expect(Object.keys(b)).toEqual(["consent", "publication"]);
    expect(b.consent).toBe(c.jws);
    const p = payloadOf(b.publication as string, f.cp.publicKey, "agentd-publication+jwt");
    expect(p).toMatchObject({
      v: 1,
      worker: f.worker,
      consent_sha256: documentIdentity(c.jws),
      version: 42,
      stop: false,
    });
    const iat = p.iat as number;
    expect(iat).toBeGreaterThanOrEqual(before);
    expect(iat).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000));
    expect(p.nbf).toBe(iat);
    expect(p.exp).toBe(iat + DAY_S);
  });

  it("takes --ttl and --stop, and writes --out (0644) printing nothing", () => {
    const f = fixture();
    const c = consentFile(f);
    const out = join(f.dir, "bundle.json");
    const r = publish(f, c.path, ["--version", "3", "--ttl", "90m", "--stop", "--out", out]);
    expect(r).toMatchObject({ code: 0, stdout: "", stderr: "" });
    expect(statSync(out).mode & 0o777).toBe(0o644);
    const b = JSON.parse(readFileSync(out, "utf8")) as { consent: string; publication: string };
    const p = payloadOf(b.publication, f.cp.publicKey, "agentd-publication+jwt");
    expect(p.stop).toBe(true);
    expect((p.exp as number) - (p.iat as number)).toBe(5400);
    for (const [ttl, s] of [
      ["7200s", 7200],
      ["2h", 7200],
      ["1m", 60],
    ] as const) {
      const q = publish(f, c.path, ["--version", "3", "--ttl", ttl]);
      const pub = (json(q.stdout) as { publication: string }).publication;
      const pp = payloadOf(pub, f.cp.publicKey, "agentd-publication+jwt");
      expect((pp.exp as number) - (pp.iat as number)).toBe(s);
    }
  });

  it("refuses a ttl above the consent's max_publication_ttl_s with exit 2 (the default 24h too)", () => {
    const f = fixture();
    const c = consentFile(f); // max_publication_ttl_s: 7200
    const over = publish(f, c.path, ["--version", "3", "--ttl", "121m"]);
    expect(over.code).toBe(2);
    expect(over.stdout).toBe("");
    expect(over.stderr).toContain(
      "agentd: AGENTD_E_USAGE: --ttl: 121m (7260 s) exceeds the consent's max_publication_ttl_s of 7200 s",
    );
    const byDefault = publish(f, c.path, ["--version", "3"]);
    expect(byDefault.code).toBe(2);
    expect(byDefault.stderr).toContain("--ttl: 24h (86400 s) exceeds");
    const plain = consentFile(f, {});
    expect(publish(f, plain.path, ["--version", "3", "--ttl", "1d"]).code).toBe(0);
    expect(publish(f, plain.path, ["--version", "3", "--ttl", "86401s"]).code).toBe(2);
  });

  it("exits 2 for a bad --ttl or --version", () => {
    const f = fixture();
    const c = consentFile(f);
    for (const ttl of ["24", "0h", "1w", "-1h", "1.5h", "h", "1 h"]) {
      const r = publish(f, c.path, ["--version", "3", "--ttl", ttl]);
      expect(r.code, ttl).toBe(2);
      expect(r.stderr).toContain("AGENTD_E_USAGE: --ttl: expected a positive whole number");
    }
    for (const v of ["0", "x", "1e3"]) {
      const r = publish(f, c.path, ["--version", v]);
      expect(r.code, v).toBe(2);
      expect(r.stderr).toContain("AGENTD_E_USAGE: --version: expected a positive integer");
    }
  });

  it("exits 3 when the consent file is not a consent, 1 when a file is missing", () => {
    const f = fixture();
    const garbage = publish(f, write(f.dir, "g.jws", "not a jws"), ["--version", "1"]);
    expect(garbage.code).toBe(3);
    expect(garbage.stderr).toMatch(
      /^agentd: AGENTD_E_JWS_MALFORMED: .*g\.jws: not a valid consent/,
    );
    const revocation = signRevocation({
      ownerKey: f.owner.privateKey,
      worker: f.worker,
      throughSeq: 1,
      iat: T0_S,
    });
    const wrongTyp = publish(f, write(f.dir, "r.jws", revocation), ["--version", "1"]);
    expect(wrongTyp.code).toBe(3);
    expect(wrongTyp.stderr).toContain("AGENTD_E_JWS_TYP");
    const noConsent = publish(f, join(f.dir, "absent.jws"), ["--version", "1"]);
    expect(noConsent.code).toBe(1);
    expect(noConsent.stderr).toContain("AGENTD_E_IO");
    const c = consentFile(f);
    const noKey = agentd([
      "policy",
      "publish",
      "--cp-key",
      join(f.dir, "absent.key"),
      "--consent",
      c.path,
      "--version",
      "1",
      "--ttl",
      "1h",
    ]);
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toMatch(/^agentd: AGENTD_E_IO: .*absent\.key/);
  });
});

describe("agentd policy verify", { timeout: 120_000 }, () => {
  it("exit 0 and `valid` for good documents; --json gives exactly {valid, reasons}", () => {
    const f = fixture();
    const b = bundleFile(f);
    expect(verify(f, b.path, NOW)).toMatchObject({ code: 0, stdout: "valid\n" });
    const j = verify(f, b.path, [...NOW, "--json"]);
    expect(j.code).toBe(0);
    expect(j.stdout).toBe('{"valid":true,"reasons":[]}\n');
  });

  it("ignores the rules and facts: a consent with no upstream (no mining) is still a valid document", () => {
    const f = fixture();
    const b = bundleFile(f, { rules: {} });
    expect(verify(f, b.path, NOW)).toMatchObject({ code: 0, stdout: "valid\n" });
  });

  it("a stopping publication is a valid document (explain denies mining with publication.stop)", () => {
    const f = fixture();
    const b = bundleFile(f, { stop: true });
    expect(verify(f, b.path, NOW)).toMatchObject({ code: 0, stdout: "valid\n" });
    const facts = write(f.dir, "facts.json", freshFacts(T0_S + 600));
    const e = explain(f, b.path, facts, [...NOW, "--json"]);
    expect(e.code).toBe(3);
    expect((json(e.stdout) as { mining: unknown }).mining).toEqual({
      allow: false,
      reasons: ["publication.stop"],
    });
  });

  it("far in the future: consent.expired and publication.offline_grace_exceeded, exit 3", () => {
    const f = fixture();
    const b = bundleFile(f);
    const r = verify(f, b.path, ["--now", "2099-01-01T00:00:00Z"]);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe("invalid: consent.expired, publication.offline_grace_exceeded\n");
    // One second before the grace ends the publication is still acceptable; at its end not.
    const graceEnd = T0_S + 3600 + 3600;
    expect(verify(f, b.path, ["--now", iso(graceEnd - 1)]).code).toBe(0);
    expect(verify(f, b.path, ["--now", iso(graceEnd), "--json"]).stdout).toBe(
      '{"valid":false,"reasons":["publication.offline_grace_exceeded"]}\n',
    );
  });

  it("before the documents' time: not_yet_valid (beyond the 60 s skew)", () => {
    const f = fixture();
    const b = bundleFile(f);
    expect(verify(f, b.path, ["--now", iso(T0_S - 60)]).code).toBe(0);
    const r = verify(f, b.path, ["--now", iso(T0_S - 61), "--json"]);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe(
      '{"valid":false,"reasons":["consent.not_yet_valid","publication.not_yet_valid"]}\n',
    );
  });

  it("with the owner and control-plane keys swapped: consent.unknown_key and publication.unknown_key", () => {
    const f = fixture();
    const b = bundleFile(f);
    const r = agentd([
      "policy",
      "verify",
      b.path,
      "--owner-pub",
      f.cpPub,
      "--cp-pub",
      f.ownerPub,
      "--worker",
      f.worker,
      ...NOW,
      "--json",
    ]);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe(
      '{"valid":false,"reasons":["consent.unknown_key","publication.unknown_key"]}\n',
    );
  });

  it("for another worker: both documents are bound to someone else", () => {
    const f = fixture();
    const b = bundleFile(f);
    const other = jwkThumbprint(generateEd25519KeyPair().publicKey);
    const r = agentd([
      "policy",
      "verify",
      b.path,
      "--owner-pub",
      f.ownerPub,
      "--cp-pub",
      f.cpPub,
      "--worker",
      other,
      ...NOW,
    ]);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe("invalid: consent.worker_mismatch, publication.worker_mismatch\n");
  });

  it("checks seq, version, revocation and the clock floor against --state-dir", () => {
    const f = fixture();
    const b = bundleFile(f, { seq: 5, version: 9 });
    const cases: Array<[Partial<GuardCounters>, string[]]> = [
      [{}, []],
      [{ revokedThroughSeq: 4 }, []],
      [{ revokedThroughSeq: 5 }, ["consent.revoked"]],
      [{ highestSeq: 6 }, ["consent.seq_rollback"]],
      [{ highestVersion: 10 }, ["publication.version_rollback"]],
      [{ highestSeq: 5, highestSeqId: "0".repeat(64) }, ["consent.seq_conflict"]],
      [{ clockFloorS: T0_S + 600 + 61 }, ["clock.behind_floor"]],
      [{ decommissioned: true }, ["consent.decommissioned"]],
    ];
    for (const [i, [counters, reasons]] of cases.entries()) {
      const d = stateDir(f, counters, `state-${i}`);
      const r = verify(f, b.path, [...NOW, "--state-dir", d, "--json"]);
      expect(r.stdout, JSON.stringify(counters)).toBe(
        `${JSON.stringify({ valid: reasons.length === 0, reasons })}\n`,
      );
      expect(r.code).toBe(reasons.length === 0 ? 0 : 3);
    }
    // A state directory without a guard state is a fresh machine.
    const empty = join(f.dir, "fresh");
    mkdirSync(empty, { mode: 0o700 });
    expect(verify(f, b.path, [...NOW, "--state-dir", empty]).code).toBe(0);
  });

  const notBundles: Array<[string, string, string[]]> = [
    ["text that is not JSON", "{consent:", ["consent.malformed", "publication.malformed"]],
    ["a JSON array", "[]", ["consent.malformed", "publication.malformed"]],
    [
      "a duplicated member",
      '{"consent":"a","consent":"b"}',
      ["consent.malformed", "publication.malformed"],
    ],
    [
      "an unknown member",
      '{"consent":"a","publication":"b","x":1}',
      ["consent.malformed", "publication.malformed"],
    ],
    ["an empty object", "{}", ["consent.missing", "publication.missing"]],
    [
      "members that are not strings",
      '{"consent":5,"publication":null}',
      ["consent.malformed", "publication.malformed"],
    ],
    [
      "members that are not JWS",
      '{"consent":"x.y","publication":"a.b.c.d"}',
      ["consent.malformed", "publication.malformed"],
    ],
  ];
  for (const [name, text, reasons] of notBundles) {
    it(`a bundle file with ${name} is invalid (exit 3), not an error`, () => {
      const f = fixture();
      const r = verify(f, write(f.dir, "b.json", text), [...NOW, "--json"]);
      expect(r.code).toBe(3);
      expect(r.stdout).toBe(`${JSON.stringify({ valid: false, reasons })}\n`);
    });
  }

  it("a bundle with only a good consent: publication.missing alone", () => {
    const f = fixture();
    const b = bundleFile(f);
    const r = verify(f, write(f.dir, "c.json", { consent: b.consent }), [...NOW, "--json"]);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('{"valid":false,"reasons":["publication.missing"]}\n');
  });

  it("a publication for another consent: publication.consent_mismatch", () => {
    const f = fixture();
    const a = bundleFile(f, { seq: 5 });
    const b = bundleFile(f, { seq: 6 });
    const mixed = write(f.dir, "m.json", { consent: a.consent, publication: b.publication });
    expect(verify(f, mixed, NOW).stdout).toBe("invalid: publication.consent_mismatch\n");
  });

  it("exit 1 for a missing key or bundle file (with --json, the error on stdout)", () => {
    const f = fixture();
    const b = bundleFile(f);
    const noKey = agentd([
      "policy",
      "verify",
      b.path,
      "--owner-pub",
      join(f.dir, "none.pub"),
      "--cp-pub",
      f.cpPub,
      "--worker",
      f.worker,
      "--json",
    ]);
    expect(noKey.code).toBe(1);
    expect(json(noKey.stdout)).toMatchObject({ error: { code: "AGENTD_E_IO" } });
    const noBundle = verify(f, join(f.dir, "none.json"), NOW);
    expect(noBundle.code).toBe(1);
    expect(noBundle.stderr).toMatch(/^agentd: AGENTD_E_IO: .*none\.json/);
    const noState = verify(f, b.path, [...NOW, "--state-dir", join(f.dir, "none")]);
    expect(noState.code).toBe(1);
  });

  it("exit 2 for a --now that is not an ISO time with a zone, or a bad worker id", () => {
    const f = fixture();
    const b = bundleFile(f);
    for (const now of [
      "yesterday",
      "2027-01-15",
      "2027-01-15T08:00:00",
      "2027-02-30T00:00:00Z",
      "2027-01-15T24:00:00Z",
      "1800000000",
    ]) {
      const r = verify(f, b.path, ["--now", now]);
      expect(r.code, now).toBe(2);
      expect(r.stderr).toContain("agentd: AGENTD_E_USAGE: --now: expected an ISO 8601 time");
    }
    // Offsets and fractions are honoured: these are all the same instant.
    for (const now of [
      "2027-01-15T09:10:00+01:00",
      "2027-01-15T08:10:00.000Z",
      "2027-01-15T08:10Z",
    ]) {
      expect(verify(f, b.path, ["--now", now]).code, now).toBe(0);
    }
    const w = agentd([
      "policy",
      "verify",
      b.path,
      "--owner-pub",
      f.ownerPub,
      "--cp-pub",
      f.cpPub,
      "--worker",
      "not-a-worker",
    ]);
    expect(w.code).toBe(2);
    expect(w.stderr).toContain("--worker: expected a worker id");
  });
});

describe("agentd policy explain", { timeout: 120_000 }, () => {
  it("allowed: exit 0, the decision JSON with the consent's services; a one-line summary without --json", () => {
    const f = fixture();
    const b = bundleFile(f);
    const facts = write(f.dir, "facts.json", freshFacts(T0_S + 600));
    const r = explain(f, b.path, facts, [...NOW, "--json"]);
    expect(r.code).toBe(0);
    expect(json(r.stdout)).toEqual({
      mining: { allow: true, reasons: [] },
      services: {
        allowed: { bitcoind: IMAGE_BITCOIND, translator: IMAGE_TRANSLATOR },
        reasons: [],
      },
      next_change_at: iso(T0_S + 660).replace(".000Z", ".001Z"),
    });
    const t = explain(f, b.path, facts, NOW);
    expect(t.code).toBe(0);
    expect(t.stdout).toBe(
      `mining: allowed; services: bitcoind, translator; next change: ${iso(T0_S + 660).replace(".000Z", ".001Z")}\n`,
    );
  });

  it("denied by the rules: exit 3 with the reasons; services stay allowed", () => {
    const f = fixture();
    const b = bundleFile(f);
    const facts = write(f.dir, "facts.json", {
      watts: { value: 3000, source: "estimated", at: iso(T0_S + 600) },
      upstream: "stratum+tcp://elsewhere.example:3333",
    });
    const r = explain(f, b.path, facts, [...NOW, "--json"]);
    expect(r.code).toBe(3);
    const d = json(r.stdout) as { mining: unknown; services: { allowed: unknown } };
    expect(d.mining).toEqual({
      allow: false,
      reasons: ["rules.upstream_not_allowed", "facts.watts_estimated"],
    });
    expect(d.services.allowed).toEqual({ bitcoind: IMAGE_BITCOIND, translator: IMAGE_TRANSLATOR });
    const t = explain(f, b.path, facts, NOW);
    expect(t.stdout).toMatch(
      /^mining: denied \(rules\.upstream_not_allowed, facts\.watts_estimated\); services: bitcoind, translator; next change: /,
    );
  });

  it("denied by the documents: nothing is allowed, services included", () => {
    const f = fixture();
    const b = bundleFile(f);
    const facts = write(f.dir, "facts.json", freshFacts(T0_S + 600));
    const state = stateDir(f, { revokedThroughSeq: 5 });
    const r = explain(f, b.path, facts, [...NOW, "--state-dir", state, "--json"]);
    expect(r.code).toBe(3);
    expect(json(r.stdout)).toMatchObject({
      mining: { allow: false, reasons: ["consent.revoked"] },
      services: { allowed: {}, reasons: ["consent.revoked"] },
    });
    const t = explain(f, b.path, facts, [...NOW, "--state-dir", state]);
    expect(t.stdout).toMatch(
      /^mining: denied \(consent\.revoked\); services: none \(consent\.revoked\);/,
    );
  });

  it("facts that are JSON but not an object are denied (facts.invalid), not an error", () => {
    const f = fixture();
    const b = bundleFile(f);
    const r = explain(f, b.path, write(f.dir, "facts.json", "[1, 2]"), [...NOW, "--json"]);
    expect(r.code).toBe(3);
    expect((json(r.stdout) as { mining: { reasons: string[] } }).mining.reasons).toContain(
      "facts.invalid",
    );
  });

  it("exit 2 for a facts file that is not strict JSON, 1 for a missing one", () => {
    const f = fixture();
    const b = bundleFile(f);
    for (const text of ["{watts: 1}", '{"a":1,"a":2}', ""]) {
      const r = explain(f, b.path, write(f.dir, "facts.json", text), NOW);
      expect(r.code, text).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toMatch(
        /^agentd: AGENTD_E_USAGE: .*facts\.json: the facts file is not valid JSON/,
      );
    }
    const missing = explain(f, b.path, join(f.dir, "nothing.json"), NOW);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("AGENTD_E_IO");
  });

  it("exit 2 without --facts", () => {
    const f = fixture();
    const b = bundleFile(f);
    const r = verify(f, b.path, NOW);
    expect(r.code).toBe(0);
    const e = agentd([
      "policy",
      "explain",
      b.path,
      "--owner-pub",
      f.ownerPub,
      "--cp-pub",
      f.cpPub,
      "--worker",
      f.worker,
    ]);
    expect(e.code).toBe(2);
    expect(e.stderr).toContain("required option '--facts <file>'");
  });
});
