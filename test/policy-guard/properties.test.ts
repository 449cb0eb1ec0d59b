import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { evaluate, sameDecision } from "../../policy-guard/decision.ts";
import { isReason } from "../../policy-guard/reasons.ts";
import type { GuardCounters } from "../../policy-guard/verify.ts";
import {
  BASE_CONSENT,
  BASE_PUBLICATION,
  BASE64URL_ALPHABET,
  baseline,
  consentJws,
  consentPayload,
  DAY_S,
  decide,
  EXPECTED_SERVICES,
  expectAllowed,
  iso,
  NOW_MS,
  NOW_S,
  publicationJws,
  publicationPayload,
  type Scenario,
  SEQ,
  UPSTREAM_URL,
  VERSION,
  verified,
  withConsent,
  withPublication,
} from "./fixture.ts";

/** A replacement character: mostly ones that keep the token in the base64url alphabet. */
const replacement = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...BASE64URL_ALPHABET) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(".", "=", "+", "/", " ", "\n", "\u0000", "é", "\u{1F600}"),
  },
  { weight: 1, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
);

/** Any position of `token`, with every segment (and each segment's last character) well hit. */
function position(token: string) {
  const d1 = token.indexOf(".");
  const d2 = token.lastIndexOf(".");
  const n = token.length;
  return fc.oneof(
    fc.integer({ min: 0, max: n - 1 }),
    fc.integer({ min: 0, max: d1 }),
    fc.integer({ min: d1, max: d2 }),
    fc.integer({ min: d2, max: n - 1 }),
    fc.constantFrom(d1 - 1, d2 - 1, n - 1, 0, d1, d2),
  );
}

const replaceAt = (s: string, i: number, c: string) => `${s.slice(0, i)}${c}${s.slice(i + 1)}`;

describe("any single-character change of a JWS denies mining", () => {
  it("the baseline those changes start from is allowed", () => {
    expectAllowed(decide(baseline()));
  });

  it("consent: mining and services denied for a consent reason (publication re-bound to it)", () => {
    fc.assert(
      fc.property(position(BASE_CONSENT), replacement, (i, c) => {
        fc.pre(BASE_CONSENT[i] !== c);
        const mutated = replaceAt(BASE_CONSENT, i, c);
        // Re-binding makes the consent's own defect the only possible reason.
        const d = decide(withConsent(baseline(), mutated));
        expect(d.mining.allow).toBe(false);
        expect(d.mining.reasons.some((r) => r.startsWith("consent."))).toBe(true);
        expect(d.services.allowed).toEqual({});
      }),
      { numRuns: 1000 },
    );
  });

  it("publication: mining denied for a publication reason, services untouched", () => {
    fc.assert(
      fc.property(position(BASE_PUBLICATION), replacement, (i, c) => {
        fc.pre(BASE_PUBLICATION[i] !== c);
        const d = decide(withPublication(baseline(), replaceAt(BASE_PUBLICATION, i, c)));
        expect(d.mining.allow).toBe(false);
        expect(d.mining.reasons.length).toBeGreaterThan(0);
        expect(d.mining.reasons.every((r) => r.startsWith("publication."))).toBe(true);
        expect(d.services).toEqual({ allowed: EXPECTED_SERVICES, reasons: [] });
      }),
      { numRuns: 1000 },
    );
  });
});

// ---- arbitrary facts ----------------------------------------------------------------------

const isoAround = fc.integer({ min: -600_000, max: 600_000 }).map((off) => iso(NOW_MS + off));

/** Facts with the right members but any kind of wrong (or right) values. */
const structuredFacts = fc.record(
  {
    watts: fc.oneof(
      fc.anything(),
      fc.record(
        {
          value: fc.oneof(
            fc.double(),
            fc.integer({ min: 0, max: 5000 }),
            fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, -0, "3400", null),
          ),
          source: fc.oneof(fc.constantFrom("measured", "estimated", "Measured", ""), fc.anything()),
          at: fc.oneof(
            isoAround,
            fc.string(),
            fc.integer(),
            fc.date().map((d) => d),
            fc.anything(),
          ),
        },
        { requiredKeys: [] },
      ),
    ),
    temp_c: fc.oneof(
      fc.anything(),
      fc.record(
        {
          max: fc.oneof(fc.double(), fc.integer({ min: -40, max: 120 }), fc.anything()),
          at: fc.oneof(isoAround, fc.string({ maxLength: 50 }), fc.anything()),
        },
        { requiredKeys: [] },
      ),
    ),
    upstream: fc.oneof(fc.constant(UPSTREAM_URL), fc.string(), fc.anything()),
    job_class: fc.oneof(fc.constantFrom("sha256d", "sha256d-v2", "scrypt"), fc.anything()),
  },
  { requiredKeys: [] },
);

const anyFacts = fc.oneof(
  fc.anything({
    withBoxedValues: true,
    withMap: true,
    withSet: true,
    withNullPrototype: true,
    withBigInt: true,
    withDate: true,
    withTypedArray: true,
    withSparseArray: true,
    withObjectString: true,
  }),
  structuredFacts,
);

/** A few verified bundles of different kinds, evaluated against arbitrary facts. */
const SCENARIOS: readonly Scenario[] = [
  baseline(),
  { ...baseline(), bundle: null },
  withPublication(baseline(), publicationJws(publicationPayload(BASE_CONSENT, { stop: true }))),
  withConsent(baseline(), consentJws(consentPayload({ exp: NOW_S + 10 }))),
  withConsent(
    baseline(),
    consentJws(consentPayload({ rules: { upstreams: [{ url: UPSTREAM_URL, user: "u" }] } })),
  ),
];

describe("evaluate never throws, whatever the facts", () => {
  it("returns a well-formed decision for fc.anything() and structured-but-wrong facts", () => {
    const docs = SCENARIOS.map(verified);
    fc.assert(
      fc.property(
        fc.constantFrom(...docs),
        anyFacts,
        fc.integer({ min: -DAY_S * 1000, max: DAY_S * 1000 }),
        fc.option(fc.integer({ min: 0, max: 3600 }), { nil: undefined }),
        (v, facts, off, maxAge) => {
          const nowMs = NOW_MS + off;
          const d = evaluate(v, facts, nowMs, maxAge === undefined ? {} : { factsMaxAgeS: maxAge });
          expect(typeof d.mining.allow).toBe("boolean");
          expect(d.mining.allow).toBe(d.mining.reasons.length === 0);
          for (const r of [...d.mining.reasons, ...d.services.reasons])
            expect(isReason(r)).toBe(true);
          if (d.nextChangeAt !== null) expect(d.nextChangeAt).toBeGreaterThan(nowMs);
        },
      ),
      { numRuns: 1500 },
    );
  });

  it("facts that are not a plain object always deny mining with facts.invalid", () => {
    const docs = verified(baseline());
    fc.assert(
      fc.property(
        fc.oneof(
          fc.constantFrom(null, undefined, 0, "", true, Number.NaN),
          fc.string(),
          fc.double(),
          fc.array(fc.anything()),
          fc.bigInt(),
        ),
        (facts) => {
          const d = evaluate(docs, facts, NOW_MS);
          expect(d.mining.allow).toBe(false);
          expect(d.mining.reasons).toContain("facts.invalid");
          expect(d.services).toEqual({ allowed: EXPECTED_SERVICES, reasons: [] });
        },
      ),
      { numRuns: 300 },
    );
  });
});

// ---- determinism --------------------------------------------------------------------------

const counters = fc.record({
  highestSeq: fc.constantFrom(0, SEQ - 1, SEQ, SEQ + 1),
  highestSeqId: fc.constantFrom(null, "0".repeat(64)),
  highestVersion: fc.constantFrom(0, VERSION, VERSION + 1),
  highestVersionId: fc.constantFrom(null, "1".repeat(64)),
  versionConsentId: fc.constantFrom(null, "2".repeat(64)),
  revokedThroughSeq: fc.constantFrom(0, SEQ - 1, SEQ),
  clockFloorS: fc.integer({ min: NOW_S - DAY_S, max: NOW_S + 600 }),
  decommissioned: fc.boolean(),
}) satisfies fc.Arbitrary<GuardCounters>;

describe("the decision is deterministic", () => {
  it("evaluating structurally equal inputs twice gives deep-equal decisions", () => {
    fc.assert(
      fc.property(
        fc.nat({ max: SCENARIOS.length - 1 }),
        counters,
        fc.oneof(structuredFacts, fc.jsonValue()),
        fc.integer({ min: -2 * DAY_S * 1000, max: 2 * DAY_S * 1000 }),
        (k, c, facts, off) => {
          const s = SCENARIOS[k] ?? baseline();
          const bundle = s.bundle === null ? null : { ...s.bundle };
          const factsCopy = structuredClone(facts);
          const a = evaluate(verified({ ...s, bundle, counters: c }), facts, NOW_MS + off);
          const b = evaluate(
            verified({ ...s, bundle: bundle === null ? null : { ...bundle }, counters: { ...c } }),
            factsCopy,
            NOW_MS + off,
          );
          expect(b).toEqual(a);
          expect(sameDecision(a, b)).toBe(true);
          // Evaluation reads its inputs only.
          expect(facts).toEqual(factsCopy);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("the decision does not depend on the host's time zone", () => {
  /** Evaluates with process.env.TZ set to `tz` (Node re-reads it on assignment). */
  function inZone<T>(tz: string, f: () => T): T {
    const saved = process.env.TZ;
    process.env.TZ = tz;
    try {
      return f();
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  }

  it("the host zone really changes local-time parsing here (the check below is not vacuous)", () => {
    const local = "2026-06-17T16:29:55";
    expect(inZone("UTC", () => Date.parse(local))).not.toBe(
      inZone("Asia/Tokyo", () => Date.parse(local)),
    );
  });

  const timeText = fc.oneof(
    fc.integer({ min: -120_000, max: 120_000 }).map((off) => iso(NOW_MS + off)),
    fc.integer({ min: -120_000, max: 120_000 }).map((off) => iso(NOW_MS + off).slice(0, -1)),
    fc.integer({ min: -120_000, max: 120_000 }).map((off) => iso(NOW_MS + off).slice(0, 16)),
    fc.integer({ min: -120_000, max: 120_000 }).map((off) => new Date(NOW_MS + off).toString()),
    fc.integer({ min: -120_000, max: 120_000 }).map((off) => new Date(NOW_MS + off).toUTCString()),
    fc.constantFrom("1", "2026", "June 17, 2026 16:30", "2026-06-17"),
  );

  it("equal facts give equal decisions under UTC, Tokyo and Los Angeles", () => {
    const docs = verified(baseline());
    fc.assert(
      fc.property(timeText, timeText, (wattsAt, tempAt) => {
        const facts = {
          watts: { value: 3400, source: "measured", at: wattsAt },
          temp_c: { max: 71, at: tempAt },
          upstream: UPSTREAM_URL,
          job_class: "sha256d",
        };
        const [a, b, c] = ["UTC", "Asia/Tokyo", "America/Los_Angeles"].map((tz) =>
          inZone(tz, () => evaluate(docs, facts, NOW_MS)),
        );
        expect(b).toEqual(a);
        expect(c).toEqual(a);
      }),
      { numRuns: 300 },
    );
  });
});

// ---- nextChangeAt -------------------------------------------------------------------------

describe("nextChangeAt", () => {
  const times = fc.record({
    consentNbf: fc.integer({ min: -3 * DAY_S, max: DAY_S }),
    consentExp: fc.integer({ min: -DAY_S, max: 3 * DAY_S }),
    pubIat: fc.integer({ min: -DAY_S, max: 3600 }),
    pubTtl: fc.integer({ min: 60, max: 43_200 }),
    floor: fc.integer({ min: -DAY_S, max: DAY_S }),
    wattsAt: fc.integer({ min: -300_000, max: 300_000 }),
    tempAt: fc.integer({ min: -300_000, max: 300_000 }),
    now: fc.integer({ min: -DAY_S * 1000, max: DAY_S * 1000 }),
    fraction: fc.double({ min: 0, max: 1, noNaN: true }),
  });

  it("is after now; the decision holds until just before it and changes at it", () => {
    fc.assert(
      fc.property(times, (t) => {
        const nbf = NOW_S + t.consentNbf;
        const consent = consentJws(
          consentPayload({ iat: nbf, nbf, exp: Math.max(nbf + 1, NOW_S + t.consentExp) }),
        );
        const s = withConsent(baseline(), consent);
        const pubIat = NOW_S + t.pubIat;
        const scenario: Scenario = {
          ...withPublication(
            s,
            publicationJws(
              publicationPayload(consent, { iat: pubIat, nbf: pubIat, exp: pubIat + t.pubTtl }),
            ),
          ),
          counters: { ...s.counters, clockFloorS: NOW_S + t.floor },
        };
        const facts = {
          watts: { value: 3400, source: "measured", at: iso(NOW_MS + t.wattsAt) },
          temp_c: { max: 71, at: iso(NOW_MS + t.tempAt) },
          upstream: UPSTREAM_URL,
          job_class: "sha256d",
        };
        const docs = verified(scenario);
        const now = NOW_MS + t.now;
        const d = evaluate(docs, facts, now);
        if (d.nextChangeAt === null) return;
        const next = d.nextChangeAt;
        expect(next).toBeGreaterThan(now);
        const inside = Math.min(next - 1, now + Math.floor(t.fraction * (next - now)));
        for (const u of [now + 1, inside, next - 1]) {
          if (u <= now || u >= next) continue;
          const e = evaluate(docs, facts, u);
          expect(sameDecision(e, d)).toBe(true);
          expect(e.nextChangeAt).toBe(next);
        }
        expect(sameDecision(evaluate(docs, facts, next), d)).toBe(false);
      }),
      { numRuns: 400 },
    );
  });
});
