import { Buffer } from "node:buffer";
import { describe, expect, it } from "vitest";
import type { Reason } from "../../policy-guard/reasons.ts";
import { signConsent, signPublication } from "../../policy-guard/sign.ts";
import {
  BASE_CONSENT,
  BASE_PUBLICATION,
  BASE_PUBLICATION_TTL_S,
  baseline,
  baseRules,
  consentJws,
  consentPayload,
  DAY_S,
  decide,
  expectAllowed,
  expectDenied,
  identityOf,
  iso,
  keys,
  MAX_PUBLICATION_TTL_S,
  MAX_TEMP_C,
  MAX_WATTS,
  NOW_ISO,
  NOW_MS,
  NOW_S,
  OFFLINE_GRACE_S,
  OTHER_NONCE,
  type Scenario,
  SEQ,
  scenarioAt,
  UPSTREAM_URL,
  UPSTREAM_URL_2,
  VERSION,
  WORKER,
  withConsent,
  withConsentPayload,
  withCounters,
  withFacts,
  withPublicationPayload,
  withRules,
} from "./fixture.ts";

/**
 * Boundaries that must ALLOW, each paired with the first value beyond it, which must deny
 * with its exact reason, so the boundary is pinned from both sides. The semantics are those
 * of DOCUMENTS.md and docs/policy.md: iat/nbf may be up to 60 s ahead; exp is exclusive; a
 * publication keeps mining alive until exp + offline_grace_s (exclusive); window start
 * inclusive, end exclusive; a fact exactly facts_max_age_s old is fresh; values equal to a
 * maximum are allowed; exp - iat may equal max_publication_ttl_s; the clock may be exactly
 * 60 s behind its floor.
 */

interface Boundary {
  readonly name: string;
  /** At the boundary: allowed. */
  readonly at: (s: Scenario) => Scenario;
  /** One step beyond it: denied with exactly `reasons`. */
  readonly beyond: (s: Scenario) => Scenario;
  readonly reasons: readonly Reason[];
}

const PUB_IAT_S = NOW_S - 3600; // the baseline publication's iat

/** Facts `ageMs` old (both dated ones). */
const factsAged = (s: Scenario, ageMs: number) =>
  withFacts(s, {
    watts: { value: 3400, source: "measured", at: iso(s.nowMs - ageMs) },
    temp_c: { max: 71, at: iso(s.nowMs - ageMs) },
  });

/** The publication re-issued so that it expired at `expS` (same TTL). */
const publicationExpiringAt = (s: Scenario, expS: number) =>
  withPublicationPayload(s, {
    iat: expS - BASE_PUBLICATION_TTL_S,
    nbf: expS - BASE_PUBLICATION_TTL_S,
    exp: expS,
  });

const consentOfJsonBytes = (s: Scenario, bytes: number) => {
  const json = JSON.stringify(consentPayload());
  return withConsent(s, consentJws(`${json}${" ".repeat(bytes - Buffer.byteLength(json))}`));
};

// Schedule instants, from the calendar (not from the code under test).
const NY_WED_START = Date.UTC(2026, 5, 17, 16, 0, 0); // wed 12:00 EDT
const NY_WED_END = Date.UTC(2026, 5, 17, 17, 30, 0); // wed 13:30 EDT
const BERLIN_WED_START = Date.UTC(2026, 5, 17, 20, 0, 0); // wed 22:00 CEST
const BERLIN_WED_END = Date.UTC(2026, 5, 18, 4, 0, 0); // thu 06:00 CEST

const BOUNDARIES: readonly Boundary[] = [
  {
    name: "one second before the consent's expiry",
    at: (s) => withConsentPayload(s, { exp: NOW_S + 1 }),
    beyond: (s) => withConsentPayload(s, { exp: NOW_S }),
    reasons: ["consent.expired"],
  },
  {
    name: "one millisecond before the consent's expiry",
    at: (s) => ({ ...withConsentPayload(s, { exp: NOW_S }), nowMs: NOW_MS - 1 }),
    beyond: (s) => withConsentPayload(s, { exp: NOW_S }),
    reasons: ["consent.expired"],
  },
  {
    name: "one second before the end of the offline grace (consent's offline_grace_s)",
    at: (s) => publicationExpiringAt(s, NOW_S - OFFLINE_GRACE_S + 1),
    beyond: (s) => publicationExpiringAt(s, NOW_S - OFFLINE_GRACE_S),
    reasons: ["publication.offline_grace_exceeded"],
  },
  {
    name: "one second before the end of the default offline grace (3600 s, rule absent)",
    at: (s) => publicationExpiringAt(withRules(s, { offline_grace_s: undefined }), NOW_S - 3599),
    beyond: (s) =>
      publicationExpiringAt(withRules(s, { offline_grace_s: undefined }), NOW_S - 3600),
    reasons: ["publication.offline_grace_exceeded"],
  },
  {
    name: "the first second of a window (New York wed 12:00)",
    at: () => scenarioAt(NY_WED_START),
    beyond: () => scenarioAt(NY_WED_START - 1000),
    reasons: ["rules.schedule_outside"],
  },
  {
    name: "the last second before a window's end (New York wed 13:30)",
    at: () => scenarioAt(NY_WED_END - 1000),
    beyond: () => scenarioAt(NY_WED_END),
    reasons: ["rules.schedule_outside"],
  },
  {
    name: "the first second of a window crossing midnight (Berlin wed 22:00)",
    at: () => scenarioAt(BERLIN_WED_START),
    beyond: () => scenarioAt(BERLIN_WED_START - 1000),
    reasons: ["rules.schedule_outside"],
  },
  {
    name: "the last second of a window crossing midnight, on the next day (Berlin thu 05:59:59)",
    at: () => scenarioAt(BERLIN_WED_END - 1000),
    beyond: () => scenarioAt(BERLIN_WED_END),
    reasons: ["rules.schedule_outside"],
  },
  {
    name: "consent iat and nbf exactly now + 60 s",
    at: (s) => withConsentPayload(s, { iat: NOW_S + 60, nbf: NOW_S + 60 }),
    beyond: (s) => withConsentPayload(s, { iat: NOW_S + 61, nbf: NOW_S + 61 }),
    reasons: ["consent.not_yet_valid"],
  },
  {
    name: "consent nbf alone exactly now + 60 s",
    at: (s) => withConsentPayload(s, { nbf: NOW_S + 60 }),
    beyond: (s) => withConsentPayload(s, { nbf: NOW_S + 61 }),
    reasons: ["consent.not_yet_valid"],
  },
  {
    name: "publication iat and nbf exactly now + 60 s",
    at: (s) =>
      withPublicationPayload(s, { iat: NOW_S + 60, nbf: NOW_S + 60, exp: NOW_S + 60 + 3600 }),
    beyond: (s) =>
      withPublicationPayload(s, { iat: NOW_S + 61, nbf: NOW_S + 61, exp: NOW_S + 61 + 3600 }),
    reasons: ["publication.not_yet_valid"],
  },
  {
    name: "the highest version re-presented identically",
    at: (s) =>
      withCounters(s, { highestVersion: VERSION, highestVersionId: identityOf(BASE_PUBLICATION) }),
    beyond: (s) =>
      withPublicationPayload(
        withCounters(s, {
          highestVersion: VERSION,
          highestVersionId: identityOf(BASE_PUBLICATION),
        }),
        { iat: PUB_IAT_S + 1, nbf: PUB_IAT_S + 1 },
      ),
    reasons: ["publication.version_conflict"],
  },
  {
    name: "the highest seq re-presented identically",
    at: (s) => withCounters(s, { highestSeq: SEQ, highestSeqId: identityOf(BASE_CONSENT) }),
    beyond: (s) =>
      withConsentPayload(
        withCounters(s, { highestSeq: SEQ, highestSeqId: identityOf(BASE_CONSENT) }),
        { nonce: OTHER_NONCE },
      ),
    reasons: ["consent.seq_conflict"],
  },
  {
    name: "facts exactly facts_max_age_s (default 60 s) old",
    at: (s) => factsAged(s, 60_000),
    beyond: (s) => factsAged(s, 60_001),
    reasons: ["facts.watts_stale", "facts.temp_stale"],
  },
  {
    name: "facts exactly facts_max_age_s old when it is set to 10 s",
    at: (s) => factsAged({ ...s, factsMaxAgeS: 10 }, 10_000),
    beyond: (s) => factsAged({ ...s, factsMaxAgeS: 10 }, 10_001),
    reasons: ["facts.watts_stale", "facts.temp_stale"],
  },
  {
    name: "facts dated exactly 60 s (the skew) in the future",
    at: (s) => factsAged(s, -60_000),
    beyond: (s) => factsAged(s, -60_001),
    reasons: ["facts.watts_stale", "facts.temp_stale"],
  },
  {
    name: "measured watts exactly max_watts",
    at: (s) =>
      withFacts(s, { watts: { value: MAX_WATTS, source: "measured", at: iso(NOW_MS - 5000) } }),
    beyond: (s) =>
      withFacts(s, {
        watts: { value: MAX_WATTS + 0.5, source: "measured", at: iso(NOW_MS - 5000) },
      }),
    reasons: ["rules.max_watts_exceeded"],
  },
  {
    name: "temperature exactly max_temp_c",
    at: (s) => withFacts(s, { temp_c: { max: MAX_TEMP_C, at: iso(NOW_MS - 5000) } }),
    beyond: (s) => withFacts(s, { temp_c: { max: MAX_TEMP_C + 0.5, at: iso(NOW_MS - 5000) } }),
    reasons: ["rules.max_temp_exceeded"],
  },
  {
    name: "publication TTL exactly max_publication_ttl_s",
    at: (s) => withPublicationPayload(s, { exp: PUB_IAT_S + MAX_PUBLICATION_TTL_S }),
    beyond: (s) => withPublicationPayload(s, { exp: PUB_IAT_S + MAX_PUBLICATION_TTL_S + 1 }),
    reasons: ["publication.ttl_exceeds_max"],
  },
  {
    name: "publication TTL exactly the default maximum (86400 s, rule absent)",
    at: (s) =>
      withPublicationPayload(withRules(s, { max_publication_ttl_s: undefined }), {
        exp: PUB_IAT_S + 86_400,
      }),
    beyond: (s) =>
      withPublicationPayload(withRules(s, { max_publication_ttl_s: undefined }), {
        exp: PUB_IAT_S + 86_401,
      }),
    reasons: ["publication.ttl_exceeds_max"],
  },
  {
    name: "clock exactly 60 s behind its floor",
    at: (s) => withCounters(s, { clockFloorS: NOW_S + 60 }),
    beyond: (s) => withCounters(s, { clockFloorS: NOW_S + 61 }),
    reasons: ["clock.behind_floor"],
  },
  {
    name: "clock exactly 60 s behind its floor (one millisecond more denies)",
    at: (s) => withCounters(s, { clockFloorS: NOW_S + 60 }),
    beyond: (s) => ({ ...withCounters(s, { clockFloorS: NOW_S + 60 }), nowMs: NOW_MS - 1 }),
    reasons: ["clock.behind_floor"],
  },
  {
    name: "a consent payload of exactly 64 KiB",
    at: (s) => consentOfJsonBytes(s, 65_536),
    beyond: (s) => consentOfJsonBytes(s, 65_537),
    reasons: ["consent.too_large"],
  },
  {
    name: "an integer of exactly 2^53 - 1 (seq)",
    at: (s) => withConsentPayload(s, { seq: Number.MAX_SAFE_INTEGER }),
    beyond: (s) => withConsentPayload(s, { seq: 2 ** 53 }),
    reasons: ["consent.payload"],
  },
  {
    name: "constraint rules absent: unconstrained, and their facts not needed",
    at: (s) => ({
      ...withRules(s, {
        schedule: undefined,
        max_watts: undefined,
        max_temp_c: undefined,
        job_classes: undefined,
      }),
      facts: { upstream: UPSTREAM_URL },
    }),
    beyond: (s) => ({
      ...withRules(s, { schedule: undefined, max_temp_c: undefined, job_classes: undefined }),
      facts: { upstream: UPSTREAM_URL },
    }),
    reasons: ["facts.watts_missing"],
  },
  {
    name: "an empty schedule: always inside (checked outside the baseline's windows)",
    at: () => withRules(scenarioAt(NY_WED_END), { schedule: [] }),
    beyond: () => scenarioAt(NY_WED_END),
    reasons: ["rules.schedule_outside"],
  },
  {
    name: "job_classes with deny only: any other class is allowed",
    at: (s) => withFacts(withRules(s, { job_classes: { deny: ["scrypt"] } }), { job_class: "x11" }),
    beyond: (s) =>
      withFacts(withRules(s, { job_classes: { deny: ["scrypt"] } }), { job_class: "scrypt" }),
    reasons: ["rules.job_class_denied"],
  },
  {
    name: "the second listed upstream (sv2) in use",
    at: (s) => withFacts(s, { upstream: UPSTREAM_URL_2 }),
    beyond: (s) => withFacts(s, { upstream: `${UPSTREAM_URL_2}0` }),
    reasons: ["rules.upstream_not_allowed"],
  },
];

describe("boundaries that must allow (and the first step beyond, which denies)", () => {
  it("has at least 10 boundary cases, all names distinct", () => {
    expect(BOUNDARIES.length).toBeGreaterThanOrEqual(10);
    expect(new Set(BOUNDARIES.map((b) => b.name)).size).toBe(BOUNDARIES.length);
  });

  it("the fixture's NOW is Wed 12:30 in New York and 18:30 in Berlin", () => {
    expect(new Date(NOW_MS).toISOString()).toBe(NOW_ISO);
    const wall = (tz: string, ms: number) =>
      new Intl.DateTimeFormat("en-GB", {
        timeZone: tz,
        weekday: "short",
        hour: "2-digit",
        minute: "2-digit",
        second: "2-digit",
        hourCycle: "h23",
      }).format(ms);
    expect(wall("America/New_York", NOW_MS)).toBe("Wed 12:30:00");
    expect(wall("Europe/Berlin", NOW_MS)).toBe("Wed 18:30:00");
    expect(wall("America/New_York", NY_WED_START)).toBe("Wed 12:00:00");
    expect(wall("America/New_York", NY_WED_END)).toBe("Wed 13:30:00");
    expect(wall("Europe/Berlin", BERLIN_WED_START)).toBe("Wed 22:00:00");
    expect(wall("Europe/Berlin", BERLIN_WED_END)).toBe("Thu 06:00:00");
  });

  it.each(BOUNDARIES)("$name", (b) => {
    const base = baseline();
    expectAllowed(decide(base), "baseline");
    expectAllowed(decide(b.at(base)), `at: ${b.name}`);
    expectDenied(decide(b.beyond(base)), b.reasons, `beyond: ${b.name}`);
  });

  it("the baseline rules really carry every rule (the boundaries above are not vacuous)", () => {
    expect(Object.keys(baseRules()).sort()).toEqual(
      [
        "commands",
        "job_classes",
        "max_publication_ttl_s",
        "max_temp_c",
        "max_watts",
        "networks",
        "offline_grace_s",
        "payout",
        "schedule",
        "services",
        "upstreams",
      ].sort(),
    );
  });

  it("the same TTL boundary through sign.ts (signConsent / signPublication)", () => {
    const consent = signConsent({
      ownerKey: keys.owner.privateKey,
      worker: WORKER,
      rules: baseRules(),
      seq: SEQ,
      policyId: "farm-a-2026",
      iat: NOW_S - 30 * DAY_S,
      exp: NOW_S + 30 * DAY_S,
    });
    const publish = (ttlS: number) =>
      signPublication({
        cpKey: keys.cpPublication.privateKey,
        consent,
        worker: WORKER,
        version: VERSION,
        iat: PUB_IAT_S,
        ttlS,
      });
    const at = decide({
      ...baseline(),
      bundle: { consent, publication: publish(MAX_PUBLICATION_TTL_S) },
    });
    expectAllowed(at);
    const beyond = decide({
      ...baseline(),
      bundle: { consent, publication: publish(MAX_PUBLICATION_TTL_S + 1) },
    });
    expectDenied(beyond, ["publication.ttl_exceeds_max"]);
  });
});
