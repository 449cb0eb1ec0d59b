import { Buffer } from "node:buffer";
import { describe, expect, it } from "vitest";
import { rawPublicKey } from "../../lib/crypto/ed25519.ts";
import { DOC_TYP } from "../../policy-guard/documents.ts";
import type { Reason } from "../../policy-guard/reasons.ts";
import {
  assemble,
  BASE_CONSENT,
  BASE_PUBLICATION,
  b64,
  baseline,
  baseSchedule,
  CP_PUBLICATION_KID,
  consentJws,
  consentPayload,
  DAY_S,
  decide,
  expectAllowed,
  expectDenied,
  freshFacts,
  hmacSigner,
  identityOf,
  iso,
  keys,
  NOW_MS,
  NOW_S,
  nonCanonical,
  OFFLINE_GRACE_S,
  OTHER_NONCE,
  OTHER_OWNER_ID,
  OTHER_WORKER,
  OWNER_ID,
  publicationJws,
  publicationPayload,
  type Scenario,
  SEQ,
  segments,
  UPSTREAM_URL,
  VERSION,
  withConsent,
  withConsentPayload,
  withCounters,
  withFacts,
  withPublication,
  withPublicationPayload,
  withRules,
} from "./fixture.ts";

/**
 * The fail-closed matrix: every case changes ONE thing in the allowed baseline (asserted
 * allowed in the same test) and must deny mining with exactly the expected reasons; when the
 * consent is at fault, services are denied too (with the same consent reasons), otherwise
 * services stay exactly the consent's images.
 */

interface Case {
  readonly name: string;
  readonly change: (s: Scenario) => Scenario;
  readonly reasons: readonly Reason[];
}

const consentHeader = (over: Record<string, unknown> = {}) =>
  JSON.stringify({ alg: "EdDSA", kid: OWNER_ID, typ: DOC_TYP.consent, ...over });
const publicationHeader = (over: Record<string, unknown> = {}) =>
  JSON.stringify({ alg: "EdDSA", kid: CP_PUBLICATION_KID, typ: DOC_TYP.publication, ...over });

/** The baseline consent payload as JSON text, padded with spaces to exactly `bytes` bytes. */
function paddedConsentJson(bytes: number): string {
  const json = JSON.stringify(consentPayload());
  return `${json}${" ".repeat(bytes - Buffer.byteLength(json))}`;
}

/** `json` padded with trailing spaces so that its base64url leaves unused bits. */
function withUnusedBits(json: string): string {
  let out = json;
  while (Buffer.byteLength(out) % 3 === 0) out += " ";
  return out;
}

/** Every letter in the other case: a different kid that a case-insensitive lookup would match. */
const swapCase = (s: string): string =>
  [...s].map((c) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase())).join("");

const FAR = 9_007_199_254_740_992; // 2^53

const allFactsMissing: Reason[] = [
  "facts.invalid",
  "facts.upstream_missing",
  "facts.watts_missing",
  "facts.temp_missing",
  "facts.job_class_missing",
];

const CASES: readonly Case[] = [
  // ---- missing documents
  {
    name: "no consent in the bundle",
    change: (s) => ({ ...s, bundle: { publication: BASE_PUBLICATION } }),
    reasons: ["consent.missing"],
  },
  {
    name: "empty consent string",
    change: (s) => ({ ...s, bundle: { consent: "", publication: BASE_PUBLICATION } }),
    reasons: ["consent.missing"],
  },
  {
    name: "no publication in the bundle",
    change: (s) => ({ ...s, bundle: { consent: BASE_CONSENT } }),
    reasons: ["publication.missing"],
  },
  {
    name: "no bundle at all",
    change: (s) => ({ ...s, bundle: null }),
    reasons: ["consent.missing", "publication.missing"],
  },

  // ---- signatures
  {
    name: "consent signature made by another key (kid still the owner's)",
    change: (s) =>
      withConsent(
        s,
        consentJws(consentPayload(), { signer: keys.otherOwner, header: { kid: OWNER_ID } }),
      ),
    reasons: ["consent.signature"],
  },
  {
    name: "consent with an empty signature",
    change: (s) => withConsent(s, consentJws(consentPayload(), { signer: null })),
    reasons: ["consent.signature"],
  },
  {
    name: "consent carrying the signature of another document",
    change: (s) => {
      const [h, p] = segments(BASE_CONSENT);
      const other = segments(consentJws(consentPayload({ nonce: OTHER_NONCE })))[2];
      return withConsent(s, `${h}.${p}.${other}`);
    },
    reasons: ["consent.signature"],
  },
  {
    name: "consent payload bytes tampered after signing (seq 7 → 8)",
    change: (s) => {
      const [h, p, sig] = segments(BASE_CONSENT);
      const text = Buffer.from(p, "base64url").toString("utf8");
      const tampered = text.replace(`"seq":${SEQ}`, `"seq":${SEQ + 1}`);
      expect(tampered).not.toBe(text);
      return withConsent(s, `${h}.${b64(tampered)}.${sig}`);
    },
    reasons: ["consent.signature"],
  },
  {
    name: "publication signature made by another key (kid still the cp key's)",
    change: (s) =>
      withPublication(
        s,
        publicationJws(publicationPayload(BASE_CONSENT), {
          signer: keys.cpUnpinned,
          header: { kid: CP_PUBLICATION_KID },
        }),
      ),
    reasons: ["publication.signature"],
  },
  {
    name: "publication signed by the command key under the publication key's kid",
    change: (s) =>
      withPublication(
        s,
        publicationJws(publicationPayload(BASE_CONSENT), {
          signer: keys.cpCommand,
          header: { kid: CP_PUBLICATION_KID },
        }),
      ),
    reasons: ["publication.signature"],
  },
  {
    name: "publication payload bytes tampered after signing (exp one day later)",
    change: (s) => {
      const [h, p, sig] = segments(BASE_PUBLICATION);
      const payload = Buffer.from(p, "base64url").toString("utf8");
      const exp = NOW_S - 3600 + 21_600;
      const tampered = payload.replace(`"exp":${exp}`, `"exp":${exp + DAY_S}`);
      expect(tampered).not.toBe(payload);
      return withPublication(s, `${h}.${b64(tampered)}.${sig}`);
    },
    reasons: ["publication.signature"],
  },
  {
    name: "publication with an empty signature",
    change: (s) =>
      withPublication(s, publicationJws(publicationPayload(BASE_CONSENT), { signer: null })),
    reasons: ["publication.signature"],
  },

  // ---- keys of the wrong role, unpinned keys, wrong kid
  {
    name: "consent signed by the control plane's publication key",
    change: (s) => withConsent(s, consentJws(consentPayload(), { signer: keys.cpPublication })),
    reasons: ["consent.unknown_key"],
  },
  {
    name: "consent signed by the control plane's command key",
    change: (s) => withConsent(s, consentJws(consentPayload(), { signer: keys.cpCommand })),
    reasons: ["consent.unknown_key"],
  },
  {
    name: "consent signed by another owner's (unpinned) key",
    change: (s) =>
      withConsent(
        s,
        consentJws(consentPayload({ owner: OTHER_OWNER_ID }), { signer: keys.otherOwner }),
      ),
    reasons: ["consent.unknown_key"],
  },
  {
    name: "consent whose kid names an unpinned key (signed by the owner)",
    change: (s) =>
      withConsent(s, consentJws(consentPayload(), { header: { kid: OTHER_OWNER_ID } })),
    reasons: ["consent.unknown_key"],
  },
  {
    name: "consent whose kid is the owner thumbprint in another case",
    change: (s) =>
      withConsent(
        s,
        consentJws(consentPayload(), {
          header: { kid: swapCase(OWNER_ID) },
        }),
      ),
    reasons: ["consent.unknown_key"],
  },
  {
    name: "publication signed by the owner key",
    change: (s) =>
      withPublication(s, publicationJws(publicationPayload(BASE_CONSENT), { signer: keys.owner })),
    reasons: ["publication.unknown_key"],
  },
  {
    name: "publication signed by the control plane's command key",
    change: (s) =>
      withPublication(
        s,
        publicationJws(publicationPayload(BASE_CONSENT), { signer: keys.cpCommand }),
      ),
    reasons: ["publication.unknown_key"],
  },
  {
    name: "publication signed by an unpinned control-plane key",
    change: (s) =>
      withPublication(
        s,
        publicationJws(publicationPayload(BASE_CONSENT), { signer: keys.cpUnpinned }),
      ),
    reasons: ["publication.unknown_key"],
  },

  // ---- alg, typ, header members
  {
    name: 'consent with alg "none" and no signature',
    change: (s) =>
      withConsent(s, consentJws(consentPayload(), { header: { alg: "none" }, signer: null })),
    reasons: ["consent.alg"],
  },
  {
    name: "consent with alg HS256, HMAC keyed with the owner's public key bytes",
    change: (s) =>
      withConsent(
        s,
        consentJws(consentPayload(), {
          header: { alg: "HS256", kid: OWNER_ID },
          signer: hmacSigner(rawPublicKey(keys.owner.publicKey)),
        }),
      ),
    reasons: ["consent.alg"],
  },
  {
    name: 'publication with alg "none" and no signature',
    change: (s) =>
      withPublication(
        s,
        publicationJws(publicationPayload(BASE_CONSENT), { header: { alg: "none" }, signer: null }),
      ),
    reasons: ["publication.alg"],
  },
  {
    name: "publication with alg HS256, HMAC keyed with the cp public key bytes",
    change: (s) =>
      withPublication(
        s,
        publicationJws(publicationPayload(BASE_CONSENT), {
          header: { alg: "HS256", kid: CP_PUBLICATION_KID },
          signer: hmacSigner(rawPublicKey(keys.cpPublication.publicKey)),
        }),
      ),
    reasons: ["publication.alg"],
  },
  {
    name: "consent typed as a publication",
    change: (s) =>
      withConsent(s, consentJws(consentPayload(), { header: { typ: DOC_TYP.publication } })),
    reasons: ["consent.typ"],
  },
  {
    name: 'consent with typ "JWT"',
    change: (s) => withConsent(s, consentJws(consentPayload(), { header: { typ: "JWT" } })),
    reasons: ["consent.typ"],
  },
  {
    name: "publication typed as a consent",
    change: (s) =>
      withPublication(
        s,
        publicationJws(publicationPayload(BASE_CONSENT), { header: { typ: DOC_TYP.consent } }),
      ),
    reasons: ["publication.typ"],
  },
  {
    name: "consent header with an extra member (crit)",
    change: (s) => withConsent(s, consentJws(consentPayload(), { header: { crit: ["exp"] } })),
    reasons: ["consent.malformed"],
  },
  {
    name: "consent header embedding its own jwk",
    change: (s) =>
      withConsent(
        s,
        consentJws(consentPayload(), {
          header: {
            jwk: { kty: "OKP", crv: "Ed25519", x: b64(rawPublicKey(keys.owner.publicKey)) },
          },
        }),
      ),
    reasons: ["consent.malformed"],
  },
  {
    name: "consent header without typ",
    change: (s) => withConsent(s, consentJws(consentPayload(), { header: { typ: undefined } })),
    reasons: ["consent.malformed"],
  },
  {
    name: "consent header with a duplicate member",
    change: (s) =>
      withConsent(
        s,
        consentJws(consentPayload(), {
          header: `{"alg":"EdDSA","kid":"${OWNER_ID}","typ":"${DOC_TYP.consent}","typ":"${DOC_TYP.consent}"}`,
        }),
      ),
    reasons: ["consent.malformed"],
  },
  {
    name: "publication header with an extra member (x5u)",
    change: (s) =>
      withPublication(
        s,
        publicationJws(publicationPayload(BASE_CONSENT), {
          header: { x5u: "https://cp.example/k" },
        }),
      ),
    reasons: ["publication.malformed"],
  },

  // ---- strict base64url and JWS form
  {
    name: "consent signature spelled non-canonically (same bytes)",
    change: (s) => {
      const [h, p, sig] = segments(BASE_CONSENT);
      return withConsent(s, `${h}.${p}.${nonCanonical(sig)}`);
    },
    reasons: ["consent.malformed"],
  },
  {
    name: "consent header spelled non-canonically (genuinely signed)",
    change: (s) => {
      const h64 = b64(withUnusedBits(consentHeader()));
      const p64 = b64(JSON.stringify(consentPayload()));
      // Control: the same header, canonically spelled, is fine.
      expectAllowed(decide(withConsent(s, assemble(h64, p64, keys.owner))), "canonical control");
      return withConsent(s, assemble(nonCanonical(h64), p64, keys.owner));
    },
    reasons: ["consent.malformed"],
  },
  {
    name: "publication payload spelled non-canonically (genuinely signed)",
    change: (s) => {
      const h64 = b64(publicationHeader());
      const p64 = b64(withUnusedBits(JSON.stringify(publicationPayload(BASE_CONSENT))));
      // Control: the same payload, canonically spelled, is fine.
      expectAllowed(decide(withPublication(s, assemble(h64, p64, keys.cpPublication))), "control");
      return withPublication(s, assemble(h64, nonCanonical(p64), keys.cpPublication));
    },
    reasons: ["publication.malformed"],
  },
  {
    name: "consent signature with base64 padding",
    change: (s) => withConsent(s, `${BASE_CONSENT}==`),
    reasons: ["consent.malformed"],
  },
  {
    name: "consent in standard base64 (+ and /) instead of base64url",
    change: (s) => {
      // Find a genuinely signed consent whose spelling has a - or _ somewhere.
      for (let i = 0; i < 64; i++) {
        const jws = consentJws(consentPayload({ policy_id: `farm-a-${i}` }));
        if (/[-_]/.test(jws)) return withConsent(s, jws.replaceAll("-", "+").replaceAll("_", "/"));
      }
      throw new Error("no consent spelled with - or _");
    },
    reasons: ["consent.malformed"],
  },
  {
    name: "consent with only two segments",
    change: (s) => withConsent(s, BASE_CONSENT.slice(0, BASE_CONSENT.lastIndexOf("."))),
    reasons: ["consent.malformed"],
  },
  {
    name: "publication with four segments",
    change: (s) => withPublication(s, `${BASE_PUBLICATION}.AAAA`),
    reasons: ["publication.malformed"],
  },

  // ---- payload: duplicates, size, integer range, unknown members
  {
    name: "consent payload with a duplicate key (seq twice)",
    change: (s) => {
      const json = JSON.stringify(consentPayload()).replace(
        `"seq":${SEQ},`,
        `"seq":${SEQ},"seq":${SEQ},`,
      );
      return withConsent(s, consentJws(json));
    },
    reasons: ["consent.payload"],
  },
  {
    name: "consent rules with a duplicate key spelled with an escape (max_watts / max\\u005fwatts)",
    change: (s) => {
      const json = JSON.stringify(consentPayload()).replace(
        '"max_watts":3600',
        '"max_watts":3600,"max\\u005fwatts":999999',
      );
      return withConsent(s, consentJws(json));
    },
    reasons: ["consent.payload"],
  },
  {
    name: "publication payload with a duplicate key (stop: true, then stop: false)",
    change: (s) => {
      const json = JSON.stringify(publicationPayload(BASE_CONSENT)).replace(
        '"stop":false',
        '"stop":true,"stop":false',
      );
      return withPublication(s, publicationJws(json));
    },
    reasons: ["publication.payload"],
  },
  {
    name: "consent payload of 64 KiB + 1 byte (genuinely signed)",
    change: (s) => withConsent(s, consentJws(paddedConsentJson(65_537))),
    reasons: ["consent.too_large"],
  },
  {
    name: "publication payload of 64 KiB + 1 byte (genuinely signed)",
    change: (s) => {
      const json = JSON.stringify(publicationPayload(BASE_CONSENT));
      return withPublication(s, publicationJws(`${json}${" ".repeat(65_537 - json.length)}`));
    },
    reasons: ["publication.too_large"],
  },
  {
    name: "consent token far beyond any size bound",
    change: (s) => withConsent(s, consentJws(paddedConsentJson(200_000))),
    reasons: ["consent.too_large"],
  },
  {
    name: "consent seq = 2^53",
    change: (s) => withConsentPayload(s, { seq: FAR }),
    reasons: ["consent.payload"],
  },
  {
    name: "consent exp = 2^53 + 1 (as written in JSON)",
    change: (s) => {
      const exp = NOW_S + 180 * DAY_S;
      const json = JSON.stringify(consentPayload()).replace(
        `"exp":${exp}`,
        '"exp":9007199254740993',
      );
      return withConsent(s, consentJws(json));
    },
    reasons: ["consent.payload"],
  },
  {
    name: "consent rule value 1e300 (max_watts)",
    change: (s) => {
      const json = JSON.stringify(consentPayload()).replace(
        '"max_watts":3600',
        '"max_watts":1e300',
      );
      return withConsent(s, consentJws(json));
    },
    reasons: ["consent.payload"],
  },
  {
    name: "publication version = 2^53",
    change: (s) => withPublicationPayload(s, { version: FAR }),
    reasons: ["publication.payload"],
  },
  {
    name: "consent payload with an unknown member",
    change: (s) => withConsentPayload(s, { comment: "hello" }),
    reasons: ["consent.payload"],
  },
  {
    name: "consent rules with an unknown rule",
    change: (s) => withRules(s, { max_hashrate_th: 200 }),
    reasons: ["consent.payload"],
  },
  {
    name: "consent rule of the wrong type (max_watts as a string)",
    change: (s) => withRules(s, { max_watts: "3600" }),
    reasons: ["consent.payload"],
  },
  {
    name: "publication payload with an unknown member",
    change: (s) => withPublicationPayload(s, { widen: true }),
    reasons: ["publication.payload"],
  },
  {
    name: "publication payload is a JSON array, not an object",
    change: (s) => withPublication(s, publicationJws("[1,2,3]")),
    reasons: ["publication.payload"],
  },
  {
    name: "consent payload is not UTF-8",
    change: (s) =>
      withConsent(
        s,
        assemble(b64(consentHeader()), b64(Buffer.from([0x7b, 0xff, 0x7d])), keys.owner),
      ),
    reasons: ["consent.payload"],
  },

  // ---- binding
  {
    name: "consent owner member is not its kid (another owner's id)",
    change: (s) => withConsentPayload(s, { owner: OTHER_OWNER_ID }),
    reasons: ["consent.owner_mismatch"],
  },
  {
    name: "consent for another worker",
    change: (s) => withConsentPayload(s, { worker: OTHER_WORKER }),
    reasons: ["consent.worker_mismatch"],
  },
  {
    name: "publication for another worker",
    change: (s) => withPublicationPayload(s, { worker: OTHER_WORKER }),
    reasons: ["publication.worker_mismatch"],
  },
  {
    name: "publication bound to another consent (consent_sha256)",
    change: (s) =>
      withPublicationPayload(s, {
        consent_sha256: identityOf(consentJws(consentPayload({ nonce: OTHER_NONCE }))),
      }),
    reasons: ["publication.consent_mismatch"],
  },
  {
    name: "publication bound to the consent's full token hash instead of its signing input",
    change: (s) => withPublicationPayload(s, { consent_sha256: identityOf(`${BASE_CONSENT}.`) }),
    reasons: ["publication.consent_mismatch"],
  },

  // ---- validity in time
  {
    name: "consent expired: exp = now",
    change: (s) => withConsentPayload(s, { exp: NOW_S }),
    reasons: ["consent.expired"],
  },
  {
    name: "consent nbf 61 s in the future",
    change: (s) => withConsentPayload(s, { nbf: NOW_S + 61 }),
    reasons: ["consent.not_yet_valid"],
  },
  {
    name: "consent iat 61 s in the future",
    change: (s) => withConsentPayload(s, { iat: NOW_S + 61 }),
    reasons: ["consent.not_yet_valid"],
  },
  {
    name: "publication nbf 61 s in the future",
    change: (s) => withPublicationPayload(s, { nbf: NOW_S + 61 }),
    reasons: ["publication.not_yet_valid"],
  },
  {
    name: "publication iat 61 s in the future",
    change: (s) => withPublicationPayload(s, { iat: NOW_S + 61, exp: NOW_S + 61 + 3600 }),
    reasons: ["publication.not_yet_valid"],
  },
  {
    name: "publication expired and its offline grace over (exp + grace = now)",
    change: (s) =>
      withPublicationPayload(s, {
        iat: NOW_S - OFFLINE_GRACE_S - 21_600,
        nbf: NOW_S - OFFLINE_GRACE_S - 21_600,
        exp: NOW_S - OFFLINE_GRACE_S,
      }),
    reasons: ["publication.offline_grace_exceeded"],
  },
  {
    name: "publication TTL one second beyond the consent's max_publication_ttl_s",
    change: (s) => withPublicationPayload(s, { exp: NOW_S - 3600 + 43_201 }),
    reasons: ["publication.ttl_exceeds_max"],
  },

  // ---- monotonicity, revocation, decommission, stop, clock
  {
    name: "consent seq lower than the highest accepted",
    change: (s) => withCounters(s, { highestSeq: SEQ + 1, highestSeqId: "f".repeat(64) }),
    reasons: ["consent.seq_rollback"],
  },
  {
    name: "consent seq equal to the highest accepted, but another document",
    change: (s) =>
      withCounters(s, {
        highestSeq: SEQ,
        highestSeqId: identityOf(consentJws(consentPayload({ nonce: OTHER_NONCE }))),
      }),
    reasons: ["consent.seq_conflict"],
  },
  {
    name: "publication version lower than the highest accepted",
    change: (s) =>
      withCounters(s, { highestVersion: VERSION + 1, highestVersionId: "e".repeat(64) }),
    reasons: ["publication.version_rollback"],
  },
  {
    name: "publication version equal to the highest accepted, but another document",
    change: (s) =>
      withCounters(s, {
        highestVersion: VERSION,
        highestVersionId: identityOf(
          publicationJws(publicationPayload(BASE_CONSENT, { stop: true })),
        ),
      }),
    reasons: ["publication.version_conflict"],
  },
  {
    name: "consent revoked (revokedThroughSeq = seq)",
    change: (s) => withCounters(s, { revokedThroughSeq: SEQ }),
    reasons: ["consent.revoked"],
  },
  {
    name: "consent revoked by a later revocation (revokedThroughSeq > seq)",
    change: (s) => withCounters(s, { revokedThroughSeq: SEQ + 100 }),
    reasons: ["consent.revoked"],
  },
  {
    name: "machine decommissioned",
    change: (s) => withCounters(s, { decommissioned: true }),
    reasons: ["consent.decommissioned"],
  },
  {
    name: "publication with stop: true",
    change: (s) => withPublicationPayload(s, { stop: true }),
    reasons: ["publication.stop"],
  },
  {
    name: "clock 61 s behind the persisted floor",
    change: (s) => withCounters(s, { clockFloorS: NOW_S + 61 }),
    reasons: ["clock.behind_floor"],
  },

  // ---- rules that deny
  {
    name: "now outside every schedule window (the New York window removed)",
    change: (s) =>
      withRules(s, { schedule: baseSchedule().filter((w) => w.tz !== "America/New_York") }),
    reasons: ["rules.schedule_outside"],
  },
  {
    name: "upstream in use is not allowed",
    change: (s) => withFacts(s, { upstream: "stratum+tcp://evil.example:3333" }),
    reasons: ["rules.upstream_not_allowed"],
  },
  {
    name: "upstream in use differs from an allowed one only by scheme",
    change: (s) => withFacts(s, { upstream: UPSTREAM_URL.replace("stratum+tcp", "stratum+ssl") }),
    reasons: ["rules.upstream_not_allowed"],
  },
  {
    name: "consent with an empty upstreams list",
    change: (s) => withRules(s, { upstreams: [] }),
    reasons: ["rules.upstreams_empty"],
  },
  {
    name: "consent without upstreams",
    change: (s) => withRules(s, { upstreams: undefined }),
    reasons: ["rules.upstreams_empty"],
  },
  {
    name: "measured watts one over max_watts",
    change: (s) =>
      withFacts(s, { watts: { value: 3601, source: "measured", at: iso(NOW_MS - 5000) } }),
    reasons: ["rules.max_watts_exceeded"],
  },
  {
    name: "temperature a fraction over max_temp_c",
    change: (s) => withFacts(s, { temp_c: { max: 85.01, at: iso(NOW_MS - 5000) } }),
    reasons: ["rules.max_temp_exceeded"],
  },
  {
    name: "job class not in job_classes.allow",
    change: (s) => withFacts(s, { job_class: "scrypt" }),
    reasons: ["rules.job_class_denied"],
  },
  {
    name: "job class in allow and in deny (deny wins)",
    change: (s) => withFacts(s, { job_class: "sha256d-v2" }),
    reasons: ["rules.job_class_denied"],
  },

  // ---- facts missing, stale, untrusted
  {
    name: "watts fact missing",
    change: (s) => withFacts(s, { watts: undefined }),
    reasons: ["facts.watts_missing"],
  },
  {
    name: "watts fact with a non-numeric value",
    change: (s) =>
      withFacts(s, { watts: { value: "3400", source: "measured", at: iso(NOW_MS - 5000) } }),
    reasons: ["facts.watts_missing"],
  },
  {
    name: "watts fact without a time",
    change: (s) => withFacts(s, { watts: { value: 3400, source: "measured" } }),
    reasons: ["facts.watts_missing"],
  },
  {
    name: "watts fact time without a UTC offset (would be read in the host's zone)",
    change: (s) =>
      withFacts(s, {
        watts: { value: 3400, source: "measured", at: iso(NOW_MS - 5000).slice(0, -1) },
      }),
    reasons: ["facts.watts_missing"],
  },
  {
    name: "temperature fact time in free form (not ISO 8601)",
    change: (s) => withFacts(s, { temp_c: { max: 71, at: new Date(NOW_MS - 5000).toUTCString() } }),
    reasons: ["facts.temp_missing"],
  },
  {
    name: "watts fact 61 s old",
    change: (s) =>
      withFacts(s, { watts: { value: 3400, source: "measured", at: iso(NOW_MS - 61_000) } }),
    reasons: ["facts.watts_stale"],
  },
  {
    name: "watts fact dated 61 s in the future",
    change: (s) =>
      withFacts(s, { watts: { value: 3400, source: "measured", at: iso(NOW_MS + 61_000) } }),
    reasons: ["facts.watts_stale"],
  },
  {
    name: "watts only estimated (even if under max_watts)",
    change: (s) =>
      withFacts(s, { watts: { value: 100, source: "estimated", at: iso(NOW_MS - 5000) } }),
    reasons: ["facts.watts_estimated"],
  },
  {
    name: "temperature fact missing",
    change: (s) => withFacts(s, { temp_c: undefined }),
    reasons: ["facts.temp_missing"],
  },
  {
    name: "temperature fact 61 s old",
    change: (s) => withFacts(s, { temp_c: { max: 71, at: iso(NOW_MS - 61_000) } }),
    reasons: ["facts.temp_stale"],
  },
  {
    name: "upstream fact missing",
    change: (s) => withFacts(s, { upstream: undefined }),
    reasons: ["facts.upstream_missing"],
  },
  {
    name: "job_class fact missing",
    change: (s) => withFacts(s, { job_class: undefined }),
    reasons: ["facts.job_class_missing"],
  },
  {
    name: "facts null",
    change: (s) => ({ ...s, facts: null }),
    reasons: allFactsMissing,
  },
  {
    name: "facts an array",
    change: (s) => ({ ...s, facts: [s.facts] }),
    reasons: allFactsMissing,
  },
  {
    name: "facts a JSON string of the facts",
    change: (s) => ({ ...s, facts: JSON.stringify(s.facts) }),
    reasons: allFactsMissing,
  },
];

describe("fail-closed matrix: one change to an allowed bundle denies, with its exact reason", () => {
  it("has at least 40 named cases, all names distinct", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(40);
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
  });

  it.each(CASES)("$name", (c) => {
    const base = baseline();
    expectAllowed(decide(base), "baseline");
    expectDenied(decide(c.change(base)), c.reasons, c.name);
  });
});

describe("services: only the consent decides them", () => {
  const BITCOIND_AND_LND = {
    bitcoind: `sha256:${"b1".repeat(32)}`,
    lnd: `sha256:${"1d".repeat(32)}`,
  };
  const PUB_EXP_S = NOW_S - 3600 + 21_600; // the baseline publication's exp

  const keepServices: readonly Case[] = [
    {
      name: "outside every schedule window",
      change: (s) =>
        withRules(s, { schedule: baseSchedule().filter((w) => w.tz !== "America/New_York") }),
      reasons: ["rules.schedule_outside"],
    },
    {
      name: "publication missing (control plane never reached)",
      change: (s) => ({ ...s, bundle: { consent: BASE_CONSENT } }),
      reasons: ["publication.missing"],
    },
    {
      name: "the same bundle evaluated when the offline grace has run out (control plane lost)",
      change: (s) => {
        const later = (PUB_EXP_S + OFFLINE_GRACE_S) * 1000; // 23:30Z: inside the Berlin night window
        return { ...s, nowMs: later, facts: freshFacts(later) };
      },
      reasons: ["publication.offline_grace_exceeded"],
    },
    {
      name: "publication stop",
      change: (s) => withPublicationPayload(s, { stop: true }),
      reasons: ["publication.stop"],
    },
    {
      name: "clock behind its floor",
      change: (s) => withCounters(s, { clockFloorS: NOW_S + 3600 }),
      reasons: ["clock.behind_floor"],
    },
    {
      name: "stale facts",
      change: (s) => ({ ...s, facts: freshFacts(NOW_MS - 120_000) }),
      reasons: ["facts.watts_stale", "facts.temp_stale"],
    },
  ];

  it.each(keepServices)("$name: mining stops, services stay exactly the consent's images", (c) => {
    const base = baseline();
    expectAllowed(decide(base), "baseline");
    const d = decide(c.change(base));
    expect(d.mining.allow).toBe(false);
    expect(d.mining.reasons).toEqual(c.reasons);
    expect(d.services.allowed).toEqual(BITCOIND_AND_LND);
    expect(d.services.reasons).toEqual([]);
  });

  it("one second before the grace runs out, the lost control plane still mines", () => {
    const t = (PUB_EXP_S + OFFLINE_GRACE_S - 1) * 1000;
    expectAllowed(decide({ ...baseline(), nowMs: t, facts: freshFacts(t) }));
  });

  const denyServices: readonly Case[] = [
    {
      name: "revoked consent",
      change: (s) => withCounters(s, { revokedThroughSeq: SEQ }),
      reasons: ["consent.revoked"],
    },
    {
      name: "expired consent",
      change: (s) => withConsentPayload(s, { exp: NOW_S - 1 }),
      reasons: ["consent.expired"],
    },
    {
      name: "consent not yet valid",
      change: (s) => withConsentPayload(s, { nbf: NOW_S + 3600 }),
      reasons: ["consent.not_yet_valid"],
    },
    {
      name: "decommissioned machine",
      change: (s) => withCounters(s, { decommissioned: true }),
      reasons: ["consent.decommissioned"],
    },
    {
      name: "consent superseded (seq rollback)",
      change: (s) => withCounters(s, { highestSeq: SEQ + 1, highestSeqId: "a".repeat(64) }),
      reasons: ["consent.seq_rollback"],
    },
  ];

  it.each(denyServices)("$name: mining and services both stop", (c) => {
    const base = baseline();
    expectAllowed(decide(base), "baseline");
    const d = decide(c.change(base));
    expect(d.mining.allow).toBe(false);
    expect(d.mining.reasons).toEqual(c.reasons);
    expect(d.services.allowed).toEqual({});
    expect(d.services.reasons).toEqual(c.reasons);
  });

  it("a revoked consent stops services even with no publication at all", () => {
    const d = decide(
      withCounters(
        { ...baseline(), bundle: { consent: BASE_CONSENT } },
        { revokedThroughSeq: SEQ },
      ),
    );
    expect(d.services.allowed).toEqual({});
    expect(d.services.reasons).toEqual(["consent.revoked"]);
    expect([...d.mining.reasons].sort()).toEqual(["consent.revoked", "publication.missing"]);
  });

  it("a consent without services (absent or empty) allows mining but no service", () => {
    for (const services of [undefined, {}]) {
      const d = decide(withRules(baseline(), { services }));
      expect(d.mining).toEqual({ allow: true, reasons: [] });
      expect(d.services.allowed).toEqual({});
      expect(d.services.reasons).toEqual(["services.none_allowed"]);
    }
  });

  it("services are exactly the consent's allowlist, one kind only when one is listed", () => {
    const only = { "template-provider": `sha256:${"7".repeat(64)}` };
    const d = decide(withRules(baseline(), { services: only }));
    expect(d.mining.allow).toBe(true);
    expect(d.services.allowed).toEqual({ "template-provider": `sha256:${"7".repeat(64)}` });
    expect(d.services.reasons).toEqual([]);
  });
});
