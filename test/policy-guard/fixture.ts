import { Buffer } from "node:buffer";
import { createHash, createHmac } from "node:crypto";
import { expect } from "vitest";
import { encodeBase64url } from "../../lib/crypto/base64url.ts";
import {
  type Ed25519KeyPair,
  generateEd25519KeyPair,
  jwkThumbprint,
  signEd25519,
} from "../../lib/crypto/ed25519.ts";
import { type Decision, evaluate } from "../../policy-guard/decision.ts";
import { type Bundle, DOC_TYP } from "../../policy-guard/documents.ts";
import type { Reason } from "../../policy-guard/reasons.ts";
import {
  EMPTY_COUNTERS,
  type GuardCounters,
  type TrustAnchors,
  type VerifiedDocuments,
  verifyDocuments,
} from "../../policy-guard/verify.ts";

/**
 * The shared fixture of the policy-guard tests: keys (generated once per test file, since
 * vitest loads this module once per file), a baseline consent with EVERY rule present, its
 * publication, fresh facts and a fixed `now` inside a schedule window — a scenario that is
 * allowed — plus builders to change exactly one thing in it.
 *
 * Nothing here uses the code under test to produce expected values: JWS are assembled and
 * signed by hand (`rawJws`), identities are hashed here, and the expected service allowlist
 * is a literal.
 */

// ---- time ---------------------------------------------------------------------------------

export const DAY_S = 86_400;
/**
 * 2026-06-17T16:30:00Z, a Wednesday: 12:30 in New York (EDT, inside the wed 12:00–13:30
 * window), 18:30 in Berlin (CEST, outside the Berlin windows).
 */
export const NOW_S = 1_781_713_800;
export const NOW_MS = NOW_S * 1000;
export const NOW_ISO = "2026-06-17T16:30:00.000Z";

export const iso = (ms: number): string => new Date(ms).toISOString();

// ---- keys ---------------------------------------------------------------------------------

export const keys = Object.freeze({
  owner: generateEd25519KeyPair(),
  otherOwner: generateEd25519KeyPair(),
  /** The control plane's pinned `publication` key. */
  cpPublication: generateEd25519KeyPair(),
  /** The control plane's `command` key: pinned for commands, never for publications. */
  cpCommand: generateEd25519KeyPair(),
  /** A `publication`-looking key that this machine never pinned. */
  cpUnpinned: generateEd25519KeyPair(),
  machine: generateEd25519KeyPair(),
  otherMachine: generateEd25519KeyPair(),
});

export const kidOf = (pair: Ed25519KeyPair): string => jwkThumbprint(pair.publicKey);

export const OWNER_ID = kidOf(keys.owner);
export const OTHER_OWNER_ID = kidOf(keys.otherOwner);
export const CP_PUBLICATION_KID = kidOf(keys.cpPublication);
export const CP_COMMAND_KID = kidOf(keys.cpCommand);
export const WORKER = kidOf(keys.machine);
export const OTHER_WORKER = kidOf(keys.otherMachine);

export const TRUST: TrustAnchors = Object.freeze({
  owner: keys.owner.publicKey,
  publication: Object.freeze([keys.cpPublication.publicKey]),
});

// ---- the baseline rules -------------------------------------------------------------------

export const IMAGE_BITCOIND = `sha256:${"b1".repeat(32)}`;
export const IMAGE_LND = `sha256:${"1d".repeat(32)}`;
/** What services must be allowed whenever the consent is valid: a literal, not computed. */
export const EXPECTED_SERVICES = Object.freeze({ bitcoind: IMAGE_BITCOIND, lnd: IMAGE_LND });

export const UPSTREAM_URL = "stratum+tcp://pool.example:3333";
export const UPSTREAM_URL_2 = "sv2+tcp://pool2.example:34254";

export const MAX_WATTS = 3600;
export const MAX_TEMP_C = 85;
export const OFFLINE_GRACE_S = 7200; // not the default 3600, so a default cannot pass for it
export const MAX_PUBLICATION_TTL_S = 43_200; // not the default 86400
export const BASE_PUBLICATION_TTL_S = 21_600;

/** Schedule windows in two zones; NOW is inside the New York Wednesday window only. */
export function baseSchedule(): Record<string, unknown>[] {
  return [
    {
      days: ["mon", "tue", "wed", "thu", "fri"],
      start: "22:00",
      end: "06:00",
      tz: "Europe/Berlin",
    },
    { days: ["sat", "sun"], start: "08:00", end: "20:00", tz: "Europe/Berlin" },
    { days: ["wed"], start: "12:00", end: "13:30", tz: "America/New_York" },
    { days: ["sat"], start: "23:00", end: "01:00", tz: "America/New_York" },
  ];
}

/** The baseline rules object, every rule present; a fresh copy each call. */
export function baseRules(): Record<string, unknown> {
  return {
    schedule: baseSchedule(),
    max_watts: MAX_WATTS,
    max_temp_c: MAX_TEMP_C,
    upstreams: [
      { url: UPSTREAM_URL, user: "owner1.farm-a" },
      {
        url: UPSTREAM_URL_2,
        user: "owner1.farm-a",
        authority_pubkey: "9auqWEzQDVyLwRDk6Pbp3k9LT6fAWB9oHPeXCePjTjW5vBnhZo3",
      },
    ],
    payout: { address: "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh", threshold_sats: 100_000 },
    services: { bitcoind: IMAGE_BITCOIND, lnd: IMAGE_LND },
    commands: ["mining.pause", "mining.resume", "service.restart"],
    networks: ["192.168.10.0/24", "fd00::/8"],
    // sha256d-v2 is allowed and denied: deny wins.
    job_classes: { allow: ["sha256d", "sha256d-v2"], deny: ["sha256d-v2"] },
    offline_grace_s: OFFLINE_GRACE_S,
    max_publication_ttl_s: MAX_PUBLICATION_TTL_S,
  };
}

// ---- payloads -----------------------------------------------------------------------------

export const SEQ = 7;
export const VERSION = 42;
export const NONCE = encodeBase64url(Buffer.alloc(16, 0x5a));
export const OTHER_NONCE = encodeBase64url(Buffer.alloc(16, 0xa5));

export type Json = Record<string, unknown>;

export function consentPayload(over: Json = {}): Json {
  return {
    v: 1,
    owner: OWNER_ID,
    worker: WORKER,
    policy_id: "farm-a-2026",
    seq: SEQ,
    nonce: NONCE,
    iat: NOW_S - 30 * DAY_S,
    nbf: NOW_S - 30 * DAY_S,
    exp: NOW_S + 180 * DAY_S,
    rules: baseRules(),
    ...over,
  };
}

/** A publication of `consent` issued an hour before `atS` for BASE_PUBLICATION_TTL_S. */
export function publicationPayload(consent: string, over: Json = {}, atS = NOW_S): Json {
  return {
    v: 1,
    worker: WORKER,
    consent_sha256: identityOf(consent),
    version: VERSION,
    iat: atS - 3600,
    nbf: atS - 3600,
    exp: atS - 3600 + BASE_PUBLICATION_TTL_S,
    stop: false,
    ...over,
  };
}

// ---- a raw JWS builder --------------------------------------------------------------------

/** An Ed25519 key pair, any function of the signing input, or null for an empty signature. */
export type Signer = Ed25519KeyPair | ((signingInput: Buffer) => Uint8Array) | null;

const isPair = (s: Signer): s is Ed25519KeyPair => s !== null && typeof s === "object";

export const b64 = (text: string | Uint8Array): string =>
  encodeBase64url(typeof text === "string" ? Buffer.from(text, "utf8") : text);

const jsonText = (v: Json | string): string => (typeof v === "string" ? v : JSON.stringify(v));

/** Signs `h64.p64` (already encoded, possibly oddly) and appends the signature. */
export function assemble(h64: string, p64: string, signer: Signer): string {
  const signingInput = `${h64}.${p64}`;
  const input = Buffer.from(signingInput, "ascii");
  let sig: Uint8Array = Buffer.alloc(0);
  if (isPair(signer)) sig = signEd25519(signer.privateKey, input);
  else if (signer !== null) sig = signer(input);
  return `${signingInput}.${b64(sig)}`;
}

/** A JWS with any header and payload (objects, or JSON text used verbatim). */
export function rawJws(spec: { header: Json | string; payload: Json | string; signer: Signer }) {
  return assemble(b64(jsonText(spec.header)), b64(jsonText(spec.payload)), spec.signer);
}

/** HMAC-SHA256 keyed with `secret` (the classic "alg confusion" forgery). */
export const hmacSigner =
  (secret: Uint8Array) =>
  (input: Buffer): Uint8Array =>
    createHmac("sha256", secret).update(input).digest();

export interface DocOptions {
  /** Default: the role's genuine key (owner for consents, cp publication for publications). */
  readonly signer?: Signer;
  /** Merged over {alg: EdDSA, kid: signer's thumbprint, typ}; undefined removes; text: verbatim. */
  readonly header?: Json | string;
}

function signedDoc(typ: string, payload: Json | string, role: Ed25519KeyPair, o: DocOptions) {
  const signer = o.signer === undefined ? role : o.signer;
  const kid = kidOf(isPair(signer) ? signer : role);
  const header =
    typeof o.header === "string" ? o.header : { alg: "EdDSA", kid, typ, ...(o.header ?? {}) };
  return rawJws({ header, payload, signer });
}

export const consentJws = (payload: Json | string = consentPayload(), o: DocOptions = {}) =>
  signedDoc(DOC_TYP.consent, payload, keys.owner, o);

export const publicationJws = (payload: Json | string, o: DocOptions = {}) =>
  signedDoc(DOC_TYP.publication, payload, keys.cpPublication, o);

/** sha256 hex of the signing input (everything before the last dot), hashed here. */
export function identityOf(jws: string): string {
  return createHash("sha256")
    .update(jws.slice(0, Math.max(0, jws.lastIndexOf("."))), "utf8")
    .digest("hex");
}

export function segments(jws: string): [string, string, string] {
  const parts = jws.split(".");
  if (parts.length !== 3) throw new Error(`fixture: ${parts.length} segments`);
  return parts as [string, string, string];
}

/** The payload of a JWS, decoded without any verification (fixture use only). */
export function payloadOf(jws: string): Json {
  return JSON.parse(Buffer.from(segments(jws)[1], "base64url").toString("utf8")) as Json;
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
export const BASE64URL_ALPHABET = ALPHABET;

/**
 * The same bytes as the canonical `seg`, spelled with non-zero unused trailing bits. Throws
 * unless the length leaves unused bits (length ≡ 2 or 3 mod 4) and the bytes are unchanged.
 */
export function nonCanonical(seg: string): string {
  const rest = seg.length % 4;
  if (rest !== 2 && rest !== 3) throw new Error("fixture: no unused bits in this length");
  const last = ALPHABET.indexOf(seg.slice(-1));
  const spelled = `${seg.slice(0, -1)}${ALPHABET[last | 1]}`;
  const same = Buffer.from(spelled, "base64url").equals(Buffer.from(seg, "base64url"));
  if (spelled === seg || !same) throw new Error("fixture: not a re-spelling");
  return spelled;
}

// ---- the baseline -------------------------------------------------------------------------

export const BASE_CONSENT = consentJws();
export const BASE_PUBLICATION = publicationJws(publicationPayload(BASE_CONSENT));

export function freshFacts(nowMs = NOW_MS): Json {
  const at = iso(nowMs - 5000);
  return {
    watts: { value: 3400, source: "measured", at },
    temp_c: { max: 71, at },
    upstream: UPSTREAM_URL,
    job_class: "sha256d",
  };
}

export const BASE_COUNTERS: GuardCounters = Object.freeze({
  ...EMPTY_COUNTERS,
  clockFloorS: NOW_S - 7200,
});

export interface Scenario {
  readonly bundle: Partial<Bundle> | null;
  readonly trust: TrustAnchors;
  readonly worker: string;
  readonly counters: GuardCounters;
  readonly facts: unknown;
  readonly nowMs: number;
  readonly factsMaxAgeS?: number;
}

/** The allowed baseline: BASE_CONSENT, its publication, fresh facts, NOW. */
export function baseline(): Scenario {
  return {
    bundle: { consent: BASE_CONSENT, publication: BASE_PUBLICATION },
    trust: TRUST,
    worker: WORKER,
    counters: BASE_COUNTERS,
    facts: freshFacts(),
    nowMs: NOW_MS,
  };
}

/**
 * The baseline as it stands at another instant `ms` (a whole second): the control plane
 * has re-issued the same publication an hour before, the facts are 5 s old, the clock floor
 * two hours behind. Used for boundaries that need another `now` (schedule windows).
 */
export function scenarioAt(ms: number): Scenario {
  const atS = Math.floor(ms / 1000);
  return {
    ...baseline(),
    bundle: {
      consent: BASE_CONSENT,
      publication: publicationJws(publicationPayload(BASE_CONSENT, {}, atS)),
    },
    counters: { ...BASE_COUNTERS, clockFloorS: atS - 7200 },
    facts: freshFacts(ms),
    nowMs: ms,
  };
}

/** Replaces the consent and re-binds the publication (same payload otherwise) to it. */
export function withConsent(s: Scenario, consent: string): Scenario {
  const pub = s.bundle?.publication;
  if (pub === undefined) throw new Error("fixture: no publication to re-bind");
  const payload = { ...payloadOf(pub), consent_sha256: identityOf(consent) };
  return { ...s, bundle: { consent, publication: publicationJws(payload) } };
}

/** The baseline consent payload changed by `over` (re-signed by the owner, re-bound). */
export const withConsentPayload = (s: Scenario, over: Json, o: DocOptions = {}): Scenario =>
  withConsent(s, consentJws(consentPayload(over), o));

/** The baseline consent's rules changed by `over` (undefined removes a rule). */
export const withRules = (s: Scenario, over: Json): Scenario =>
  withConsentPayload(s, { rules: { ...baseRules(), ...over } });

export function withPublication(s: Scenario, publication: string): Scenario {
  return { ...s, bundle: { consent: s.bundle?.consent ?? BASE_CONSENT, publication } };
}

/** The current publication payload changed by `over`, re-signed (by `o.signer` or the cp key). */
export function withPublicationPayload(s: Scenario, over: Json, o: DocOptions = {}): Scenario {
  const pub = s.bundle?.publication ?? BASE_PUBLICATION;
  return withPublication(s, publicationJws({ ...payloadOf(pub), ...over }, o));
}

export const withFacts = (s: Scenario, over: Json): Scenario => ({
  ...s,
  facts: { ...(s.facts as Json), ...over },
});

export const withCounters = (s: Scenario, over: Partial<GuardCounters>): Scenario => ({
  ...s,
  counters: { ...s.counters, ...over },
});

// ---- deciding and asserting ---------------------------------------------------------------

export function verified(s: Scenario): VerifiedDocuments {
  return verifyDocuments({
    bundle: s.bundle,
    trust: s.trust,
    worker: s.worker,
    counters: s.counters,
  });
}

export function decide(s: Scenario): Decision {
  const options = s.factsMaxAgeS === undefined ? {} : { factsMaxAgeS: s.factsMaxAgeS };
  return evaluate(verified(s), s.facts, s.nowMs, options);
}

const sorted = (xs: readonly string[]): string[] => [...xs].sort();

/** Mining and services allowed, nothing reported, services exactly the consent's images. */
export function expectAllowed(d: Decision, label = "decision"): void {
  expect(d.mining.reasons, label).toEqual([]);
  expect(d.mining.allow, label).toBe(true);
  expect(d.services.allowed, label).toEqual(EXPECTED_SERVICES);
  expect(d.services.reasons, label).toEqual([]);
}

/**
 * Mining denied for exactly `reasons`. Services: denied with the consent's reasons when the
 * consent is at fault (any `consent.*` reason expected), else exactly the consent's images.
 */
export function expectDenied(d: Decision, reasons: readonly Reason[], label = "decision"): void {
  expect(sorted(d.mining.reasons), label).toEqual(sorted(reasons));
  expect(d.mining.allow, label).toBe(false);
  const consentReasons = reasons.filter((r) => r.startsWith("consent."));
  if (consentReasons.length > 0) {
    expect(d.services.allowed, label).toEqual({});
    expect(sorted(d.services.reasons), label).toEqual(sorted(consentReasons));
  } else {
    expect(d.services.allowed, label).toEqual(EXPECTED_SERVICES);
    expect(d.services.reasons, label).toEqual([]);
  }
}
