import { describe, expect, it } from "vitest";
import { AgentdError } from "../../lib/errors.ts";
import {
  parseConsentPayload,
  parseDecommissionPayload,
  parseOwnerRotationPayload,
  parsePublicationPayload,
  parseRevocationPayload,
  parseRules,
} from "../../policy-guard/documents.ts";
import {
  BASE_CONSENT,
  baseline,
  baseRules,
  consentJws,
  consentPayload,
  DAY_S,
  decide,
  expectAllowed,
  type Json,
  NONCE,
  NOW_S,
  OWNER_ID,
  publicationPayload,
  verified,
  WORKER,
  withConsent,
  withConsentPayload,
} from "./fixture.ts";

/**
 * The schema of the signed documents (DOCUMENTS.md sections 3–5): every rule's validation,
 * every payload member, and the same refusals seen through verification (`consent.payload`),
 * so that a consent the parser refuses can never be enforced.
 */

function refusal(f: () => unknown): AgentdError {
  try {
    f();
  } catch (err) {
    if (err instanceof AgentdError) return err;
    throw err;
  }
  throw new Error("accepted");
}

/** parseRules refuses `rules` with AGENTD_E_JWS_PAYLOAD naming `path`. */
function expectRulesRefused(rules: unknown, path: string): void {
  const e = refusal(() => parseRules(rules));
  expect(e.code).toBe("AGENTD_E_JWS_PAYLOAD");
  expect(e.context.path).toBe(path);
}

const HEX64 = "0123456789abcdef".repeat(4);
const IMAGE = `sha256:${HEX64}`;
const weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const win = (over: Json = {}): Json => ({
  days: ["mon"],
  start: "22:00",
  end: "06:00",
  tz: "Europe/Berlin",
  ...over,
});

interface RuleCase {
  readonly name: string;
  readonly rules: Json;
  /** The path the refusal names; absent: the rules are valid. */
  readonly path?: string;
}

/** Each case changes one rule of the full baseline rules. */
const R = (name: string, over: Json, path?: string): RuleCase =>
  path === undefined
    ? { name, rules: { ...baseRules(), ...over } }
    : { name, rules: { ...baseRules(), ...over }, path };

const RULE_CASES: readonly RuleCase[] = [
  // the rules object
  R("the baseline (every rule)", {}),
  { name: "no rules at all", rules: {} },
  R("an unknown rule", { max_hashrate: 5 }, "$.rules.max_hashrate"),
  R("a misspelled rule", { max_watt: 3600 }, "$.rules.max_watt"),

  // schedule
  R("schedule: empty list", { schedule: [] }),
  R("schedule: every day, start == end (whole day)", {
    schedule: [win({ days: weekdays, start: "00:00", end: "00:00" })],
  }),
  R("schedule: 23:59 and UTC", { schedule: [win({ start: "00:00", end: "23:59", tz: "UTC" })] }),
  R("schedule: 64 windows", { schedule: Array.from({ length: 64 }, () => win()) }),
  R(
    "schedule: 65 windows",
    { schedule: Array.from({ length: 65 }, () => win()) },
    "$.rules.schedule",
  ),
  R("schedule: not a list", { schedule: win() }, "$.rules.schedule"),
  R(
    "schedule: a window that is a string",
    { schedule: ["mon 22:00-06:00"] },
    "$.rules.schedule[0]",
  ),
  R("schedule: a window without tz", { schedule: [win({ tz: undefined })] }, "$.rules.schedule[0]"),
  R(
    "schedule: a window with an extra member",
    { schedule: [win({ note: "x" })] },
    "$.rules.schedule[0]",
  ),
  R("schedule: no days", { schedule: [win({ days: [] })] }, "$.rules.schedule[0]"),
  R("schedule: day 'monday'", { schedule: [win({ days: ["monday"] })] }, "$.rules.schedule[0]"),
  R("schedule: day 'Mon'", { schedule: [win({ days: ["Mon"] })] }, "$.rules.schedule[0]"),
  R(
    "schedule: duplicate day",
    { schedule: [win({ days: ["mon", "mon"] })] },
    "$.rules.schedule[0]",
  ),
  R("schedule: start 24:00", { schedule: [win({ start: "24:00" })] }, "$.rules.schedule[0]"),
  R("schedule: start 7:00", { schedule: [win({ start: "7:00" })] }, "$.rules.schedule[0]"),
  R("schedule: end 06:60", { schedule: [win({ end: "06:60" })] }, "$.rules.schedule[0]"),
  R("schedule: end with seconds", { schedule: [win({ end: "06:00:00" })] }, "$.rules.schedule[0]"),
  R("schedule: start a number", { schedule: [win({ start: 2200 })] }, "$.rules.schedule[0]"),
  R(
    "schedule: unknown zone",
    { schedule: [win({ tz: "Mars/Olympus_Mons" })] },
    "$.rules.schedule[0]",
  ),
  R(
    "schedule: offset instead of a zone",
    { schedule: [win({ tz: "+01:00" })] },
    "$.rules.schedule[0]",
  ),
  R("schedule: empty zone", { schedule: [win({ tz: "" })] }, "$.rules.schedule[0]"),
  R(
    "schedule: the third window bad",
    { schedule: [win(), win(), win({ days: ["xyz"] })] },
    "$.rules.schedule[2]",
  ),

  // max_watts, max_temp_c
  R("max_watts: 1", { max_watts: 1 }),
  R("max_watts: 10 MW", { max_watts: 10_000_000 }),
  R("max_watts: 0", { max_watts: 0 }, "$.rules.max_watts"),
  R("max_watts: negative", { max_watts: -1 }, "$.rules.max_watts"),
  R("max_watts: above 10 MW", { max_watts: 10_000_001 }, "$.rules.max_watts"),
  R("max_watts: fractional", { max_watts: 3600.5 }, "$.rules.max_watts"),
  R("max_watts: a string", { max_watts: "3600" }, "$.rules.max_watts"),
  R("max_watts: null", { max_watts: null }, "$.rules.max_watts"),
  R("max_temp_c: 1 and 200", { max_temp_c: 200 }),
  R("max_temp_c: 0", { max_temp_c: 0 }, "$.rules.max_temp_c"),
  R("max_temp_c: 201", { max_temp_c: 201 }, "$.rules.max_temp_c"),
  R("max_temp_c: fractional", { max_temp_c: 85.5 }, "$.rules.max_temp_c"),
  R("max_temp_c: boolean", { max_temp_c: true }, "$.rules.max_temp_c"),

  // upstreams
  R("upstreams: empty (valid, but nothing to mine on)", { upstreams: [] }),
  R("upstreams: the three schemes, IPv4 and IPv6 hosts", {
    upstreams: [
      { url: "stratum+tcp://10.0.0.1:3333", user: "a" },
      { url: "stratum+ssl://[2001:db8::1]:443", user: "b" },
      { url: "sv2+tcp://pool.example:34254", user: "c" },
    ],
  }),
  R("upstreams: 16 entries", {
    upstreams: Array.from({ length: 16 }, (_, i) => ({
      url: `stratum+tcp://p${i}.example:3333`,
      user: "u",
    })),
  }),
  R(
    "upstreams: 17 entries",
    {
      upstreams: Array.from({ length: 17 }, (_, i) => ({
        url: `stratum+tcp://p${i}.example:3333`,
        user: "u",
      })),
    },
    "$.rules.upstreams",
  ),
  R(
    "upstreams: not a list",
    { upstreams: { url: "stratum+tcp://p.example:1", user: "u" } },
    "$.rules.upstreams",
  ),
  R(
    "upstreams: an entry that is a URL string",
    { upstreams: ["stratum+tcp://p.example:1"] },
    "$.rules.upstreams[0]",
  ),
  R(
    "upstreams: no user",
    { upstreams: [{ url: "stratum+tcp://p.example:1" }] },
    "$.rules.upstreams[0].user",
  ),
  R(
    "upstreams: an extra member (password)",
    { upstreams: [{ url: "stratum+tcp://p.example:1", user: "u", password: "x" }] },
    "$.rules.upstreams[0].password",
  ),
  R(
    "upstreams: http scheme",
    { upstreams: [{ url: "http://p.example:80", user: "u" }] },
    "$.rules.upstreams[0].url",
  ),
  R(
    "upstreams: no port",
    { upstreams: [{ url: "stratum+tcp://p.example", user: "u" }] },
    "$.rules.upstreams[0].url",
  ),
  R(
    "upstreams: port 0",
    { upstreams: [{ url: "stratum+tcp://p.example:0", user: "u" }] },
    "$.rules.upstreams[0].url",
  ),
  R(
    "upstreams: port 65536",
    { upstreams: [{ url: "stratum+tcp://p.example:65536", user: "u" }] },
    "$.rules.upstreams[0].url",
  ),
  R(
    "upstreams: a path after the port",
    { upstreams: [{ url: "stratum+tcp://p.example:3333/x", user: "u" }] },
    "$.rules.upstreams[0].url",
  ),
  R(
    "upstreams: credentials in the URL",
    { upstreams: [{ url: "stratum+tcp://me:pw@p.example:3333", user: "u" }] },
    "$.rules.upstreams[0].url",
  ),
  R(
    "upstreams: upper-case scheme",
    { upstreams: [{ url: "STRATUM+TCP://p.example:3333", user: "u" }] },
    "$.rules.upstreams[0].url",
  ),
  R(
    "upstreams: a user with a space",
    { upstreams: [{ url: "stratum+tcp://p.example:1", user: "owner 1" }] },
    "$.rules.upstreams[0].user",
  ),
  R(
    "upstreams: an empty user",
    { upstreams: [{ url: "stratum+tcp://p.example:1", user: "" }] },
    "$.rules.upstreams[0].user",
  ),
  R(
    "upstreams: authority_pubkey on a Stratum V1 URL",
    { upstreams: [{ url: "stratum+tcp://p.example:1", user: "u", authority_pubkey: "9auqWEzQ" }] },
    "$.rules.upstreams[0].authority_pubkey",
  ),
  R(
    "upstreams: authority_pubkey that is not base58",
    { upstreams: [{ url: "sv2+tcp://p.example:1", user: "u", authority_pubkey: "0OIl" }] },
    "$.rules.upstreams[0].authority_pubkey",
  ),

  // payout
  R("payout: threshold 0", { payout: { address: "bc1qabc", threshold_sats: 0 } }),
  R("payout: threshold 21e14 (every sat there is)", {
    payout: { address: "bc1qabc", threshold_sats: 21e14 },
  }),
  R(
    "payout: threshold above 21e14",
    { payout: { address: "bc1qabc", threshold_sats: 21e14 + 1 } },
    "$.rules.payout.threshold_sats",
  ),
  R(
    "payout: negative threshold",
    { payout: { address: "bc1qabc", threshold_sats: -1 } },
    "$.rules.payout.threshold_sats",
  ),
  R("payout: no threshold", { payout: { address: "bc1qabc" } }, "$.rules.payout.threshold_sats"),
  R(
    "payout: an extra member",
    { payout: { address: "bc1qabc", threshold_sats: 1, memo: "x" } },
    "$.rules.payout.memo",
  ),
  R(
    "payout: an address with punctuation",
    { payout: { address: "bc1q-abc", threshold_sats: 1 } },
    "$.rules.payout.address",
  ),
  R("payout: a list", { payout: ["bc1qabc", 1] }, "$.rules.payout"),

  // services
  R("services: every kind", {
    services: {
      bitcoind: IMAGE,
      "template-provider": IMAGE,
      translator: IMAGE,
      lnd: IMAGE,
      cln: IMAGE,
    },
  }),
  R("services: none", { services: {} }),
  R("services: an unknown kind", { services: { docker: IMAGE } }, "$.rules.services.docker"),
  R(
    "services: upper-case hex",
    { services: { bitcoind: IMAGE.toUpperCase().replace("SHA256", "sha256") } },
    "$.rules.services.bitcoind",
  ),
  R(
    "services: 63 hex digits",
    { services: { bitcoind: IMAGE.slice(0, -1) } },
    "$.rules.services.bitcoind",
  ),
  R("services: no sha256: prefix", { services: { bitcoind: HEX64 } }, "$.rules.services.bitcoind"),
  R(
    "services: a tag instead of an id",
    { services: { lnd: "lightninglabs/lnd:v0.18" } },
    "$.rules.services.lnd",
  ),
  R("services: a list", { services: [IMAGE] }, "$.rules.services"),

  // commands
  R("commands: every action", {
    commands: [
      "mining.pause",
      "mining.resume",
      "service.start",
      "service.stop",
      "service.restart",
      "agent.update",
      "agent.rotate_key",
      "worker.quarantine",
    ],
  }),
  R("commands: none", { commands: [] }),
  R(
    "commands: an unknown action",
    { commands: ["mining.pause", "mining.start"] },
    "$.rules.commands[1]",
  ),
  R("commands: upper case", { commands: ["MINING.PAUSE"] }, "$.rules.commands[0]"),
  R("commands: a duplicate", { commands: ["mining.pause", "mining.pause"] }, "$.rules.commands[1]"),
  R("commands: not a list", { commands: "mining.pause" }, "$.rules.commands"),

  // networks
  R("networks: IPv4, IPv6, everything", {
    networks: ["10.0.0.0/8", "fd00::/8", "0.0.0.0/0", "::/0"],
  }),
  R("networks: no prefix", { networks: ["192.168.10.0"] }, "$.rules.networks[0]"),
  R("networks: IPv4 prefix 33", { networks: ["192.168.10.0/33"] }, "$.rules.networks[0]"),
  R("networks: IPv6 prefix 129", { networks: ["fd00::/129"] }, "$.rules.networks[0]"),
  R("networks: a host name", { networks: ["lan.example/24"] }, "$.rules.networks[0]"),
  R("networks: a negative prefix", { networks: ["10.0.0.0/-1"] }, "$.rules.networks[0]"),
  R("networks: a duplicate", { networks: ["10.0.0.0/8", "10.0.0.0/8"] }, "$.rules.networks[1]"),
  R("networks: a number", { networks: [10] }, "$.rules.networks[0]"),

  // job_classes
  R("job_classes: empty object (unconstrained)", { job_classes: {} }),
  R("job_classes: empty allow", { job_classes: { allow: [] } }),
  R(
    "job_classes: an unknown member",
    { job_classes: { prefer: ["sha256d"] } },
    "$.rules.job_classes.prefer",
  ),
  R(
    "job_classes: upper case",
    { job_classes: { allow: ["SHA256D"] } },
    "$.rules.job_classes.allow[0]",
  ),
  R(
    "job_classes: 33 characters",
    { job_classes: { deny: ["a".repeat(33)] } },
    "$.rules.job_classes.deny[0]",
  ),
  R(
    "job_classes: a duplicate",
    { job_classes: { deny: ["x11", "x11"] } },
    "$.rules.job_classes.deny[1]",
  ),
  R(
    "job_classes: allow not a list",
    { job_classes: { allow: "sha256d" } },
    "$.rules.job_classes.allow",
  ),
  R("job_classes: a list", { job_classes: ["sha256d"] }, "$.rules.job_classes"),

  // offline_grace_s, max_publication_ttl_s
  R("offline_grace_s: 0", { offline_grace_s: 0 }),
  R("offline_grace_s: 30 days", { offline_grace_s: 30 * DAY_S }),
  R("offline_grace_s: negative", { offline_grace_s: -1 }, "$.rules.offline_grace_s"),
  R(
    "offline_grace_s: above 30 days",
    { offline_grace_s: 30 * DAY_S + 1 },
    "$.rules.offline_grace_s",
  ),
  R("offline_grace_s: a string", { offline_grace_s: "1h" }, "$.rules.offline_grace_s"),
  R("max_publication_ttl_s: 60", { max_publication_ttl_s: 60 }),
  R("max_publication_ttl_s: 30 days", { max_publication_ttl_s: 30 * DAY_S }),
  R("max_publication_ttl_s: 59", { max_publication_ttl_s: 59 }, "$.rules.max_publication_ttl_s"),
  R(
    "max_publication_ttl_s: above 30 days",
    { max_publication_ttl_s: 30 * DAY_S + 1 },
    "$.rules.max_publication_ttl_s",
  ),
];

/** The JSON form: what a signed consent carries (undefined members disappear). */
const asJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

describe("rules: each rule's validation (parseRules)", () => {
  it.each(RULE_CASES)("$name", (c) => {
    const rules = asJson(c.rules);
    if (c.path === undefined) {
      expect(parseRules(rules)).toEqual(rules);
    } else {
      expectRulesRefused(rules, c.path);
    }
  });

  it.each([
    ["a list", []],
    ["null", null],
    ["a string", "max_watts=3600"],
    ["a number", 1],
  ])("rules that are %s are refused", (_, rules) => {
    expectRulesRefused(rules, "$.rules");
  });

  it("an own __proto__ member is an unknown rule, not a prototype", () => {
    const rules = JSON.parse('{"__proto__":{"max_watts":1}}') as unknown;
    expectRulesRefused(rules, "$.rules.__proto__");
  });
});

describe("rules: verification refuses exactly what the parser refuses", () => {
  const refused = RULE_CASES.filter((c) => c.path !== undefined);
  const accepted = RULE_CASES.filter((c) => c.path === undefined);

  it.each(refused)("refused, signed by the owner: $name → consent.payload", (c) => {
    const s = withConsent(baseline(), consentJws(consentPayload({ rules: c.rules })));
    const v = verified(s);
    expect(v.consent).toBeNull();
    expect(v.consentReasons).toEqual(["consent.payload"]);
    expect(decide(s).services).toEqual({ allowed: {}, reasons: ["consent.payload"] });
  });

  it.each(accepted)("accepted, signed by the owner: $name", (c) => {
    const s = withConsentPayload(baseline(), { rules: c.rules });
    const v = verified(s);
    expect(v.consentReasons).toEqual([]);
    expect(v.consent?.payload.rules).toEqual(asJson(c.rules));
  });

  it("the baseline consent is allowed", () => {
    expectAllowed(decide(baseline()));
    expect(verified(baseline()).consent?.payload.rules).toEqual(baseRules());
  });
});

// ---- payload members ----------------------------------------------------------------------

function expectPayloadRefused(parse: (p: Json) => unknown, payload: Json, path: string): void {
  const e = refusal(() => parse(asJson(payload) as Json));
  expect(e.code).toBe("AGENTD_E_JWS_PAYLOAD");
  expect(e.context.path).toBe(path);
}

describe("consent payload", () => {
  it("the baseline parses to itself", () => {
    expect(parseConsentPayload(asJson(consentPayload()) as Json)).toEqual(asJson(consentPayload()));
  });

  it.each(["v", "owner", "worker", "policy_id", "seq", "nonce", "iat", "nbf", "exp", "rules"])(
    "a missing %s is refused",
    (member) => {
      expectPayloadRefused(
        parseConsentPayload,
        consentPayload({ [member]: undefined }),
        `$.${member}`,
      );
    },
  );

  it.each<[string, Json, string]>([
    ["an unknown member", { extra: 1 }, "$.extra"],
    ["v 2", { v: 2 }, "$.v"],
    ['v "1"', { v: "1" }, "$.v"],
    ["owner of 42 characters", { owner: OWNER_ID.slice(1) }, "$.owner"],
    ["owner with padding", { owner: `${OWNER_ID.slice(1)}=` }, "$.owner"],
    ["worker with a + (base64, not base64url)", { worker: `+${WORKER.slice(1)}` }, "$.worker"],
    ["empty policy_id", { policy_id: "" }, "$.policy_id"],
    ["policy_id with a space", { policy_id: "farm a" }, "$.policy_id"],
    ["policy_id of 129 characters", { policy_id: "p".repeat(129) }, "$.policy_id"],
    ["seq 0", { seq: 0 }, "$.seq"],
    ["seq fractional", { seq: 7.5 }, "$.seq"],
    ["seq as a string", { seq: "7" }, "$.seq"],
    ["nonce of 15 bytes", { nonce: NONCE.slice(0, 20) }, "$.nonce"],
    ["nonce of 23 characters", { nonce: `${NONCE}A` }, "$.nonce"],
    ["nonce with non-canonical trailing bits", { nonce: `${NONCE.slice(0, 21)}b` }, "$.nonce"],
    ["negative iat", { iat: -1 }, "$.iat"],
    ["exp equal to nbf", { iat: NOW_S - 10, nbf: NOW_S, exp: NOW_S }, "$.exp"],
    ["exp before iat", { iat: NOW_S, nbf: NOW_S - 10, exp: NOW_S - 1 }, "$.exp"],
    ["rules a string", { rules: "max_watts=1" }, "$.rules"],
  ])("%s is refused", (_, over, path) => {
    expectPayloadRefused(parseConsentPayload, consentPayload(over), path);
  });
});

describe("publication payload", () => {
  const base = (): Json => publicationPayload(BASE_CONSENT);

  it("the baseline parses to itself", () => {
    expect(parsePublicationPayload(base())).toEqual(base());
  });

  it.each(["v", "worker", "consent_sha256", "version", "iat", "nbf", "exp", "stop"])(
    "a missing %s is refused",
    (member) => {
      expectPayloadRefused(
        parsePublicationPayload,
        { ...base(), [member]: undefined },
        `$.${member}`,
      );
    },
  );

  it.each<[string, Json, string]>([
    ["an unknown member", { widen: true }, "$.widen"],
    ["v 2", { v: 2 }, "$.v"],
    ["consent_sha256 in upper case", { consent_sha256: "A".repeat(64) }, "$.consent_sha256"],
    ["consent_sha256 of 63 digits", { consent_sha256: "a".repeat(63) }, "$.consent_sha256"],
    ["version 0", { version: 0 }, "$.version"],
    ['stop "false"', { stop: "false" }, "$.stop"],
    ["stop 0", { stop: 0 }, "$.stop"],
    ["stop null", { stop: null }, "$.stop"],
    ["exp equal to iat", { iat: NOW_S, nbf: NOW_S - 10, exp: NOW_S }, "$.exp"],
    ["exp before nbf", { iat: NOW_S - 10, nbf: NOW_S + 10, exp: NOW_S }, "$.exp"],
    ["worker not a thumbprint", { worker: "machine-1" }, "$.worker"],
  ])("%s is refused", (_, over, path) => {
    expectPayloadRefused(parsePublicationPayload, { ...base(), ...over }, path);
  });
});

describe("owner control documents", () => {
  const revocation = (over: Json = {}): Json => ({
    v: 1,
    owner: OWNER_ID,
    worker: WORKER,
    through_seq: 7,
    iat: NOW_S,
    nonce: NONCE,
    ...over,
  });

  it("a revocation parses; through_seq 0, a missing nonce or an extra member are refused", () => {
    expect(parseRevocationPayload(revocation())).toEqual(revocation());
    expectPayloadRefused(parseRevocationPayload, revocation({ through_seq: 0 }), "$.through_seq");
    expectPayloadRefused(parseRevocationPayload, revocation({ nonce: undefined }), "$.nonce");
    expectPayloadRefused(parseRevocationPayload, revocation({ reason: "x" }), "$.reason");
  });

  it("a decommission parses; a through_seq member (a revocation's) is refused", () => {
    const d = asJson(revocation({ through_seq: undefined })) as Json;
    expect(parseDecommissionPayload(d)).toEqual(d);
    expectPayloadRefused(parseDecommissionPayload, revocation(), "$.through_seq");
  });

  it("an owner rotation needs new_owner_jwk as an object", () => {
    const jwk = { kty: "OKP", crv: "Ed25519", x: "A".repeat(43) };
    const r = asJson(revocation({ through_seq: undefined, new_owner_jwk: jwk })) as Json;
    expect(parseOwnerRotationPayload(r)).toEqual(r);
    expectPayloadRefused(
      parseOwnerRotationPayload,
      { ...r, new_owner_jwk: "jwk" },
      "$.new_owner_jwk",
    );
    expectPayloadRefused(
      parseOwnerRotationPayload,
      { ...r, new_owner_jwk: [jwk] },
      "$.new_owner_jwk",
    );
  });
});
