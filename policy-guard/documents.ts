import { isIP } from "node:net";
import { decodeBase64urlStrict } from "../lib/crypto/base64url.ts";
import { fail } from "../lib/errors.ts";
import { type ScheduleWindow, validateWindow } from "./schedule.ts";

/**
 * The owner's and the control plane's signed documents, exactly as DOCUMENTS.md sections 3–5
 * define them. Parsing is strict: a missing, unknown or mistyped member is refused
 * (AGENTD_E_JWS_PAYLOAD, the message naming the member), never ignored or defaulted.
 */

export const DOC_TYP = Object.freeze({
  consent: "agentd-consent+jwt",
  publication: "agentd-publication+jwt",
  revocation: "agentd-revocation+jwt",
  decommission: "agentd-decommission+jwt",
  rotation: "agentd-owner-rotation+jwt",
} as const);

export const SERVICE_KINDS = ["bitcoind", "template-provider", "translator", "lnd", "cln"] as const;
export type ServiceKind = (typeof SERVICE_KINDS)[number];

export const COMMAND_ACTIONS = [
  "mining.pause",
  "mining.resume",
  "service.start",
  "service.stop",
  "service.restart",
  "agent.update",
  "agent.rotate_key",
  "worker.quarantine",
] as const;
export type CommandAction = (typeof COMMAND_ACTIONS)[number];

export const UPSTREAM_SCHEMES = ["stratum+tcp", "stratum+ssl", "sv2+tcp"] as const;

export const DEFAULT_OFFLINE_GRACE_S = 3600;
export const DEFAULT_MAX_PUBLICATION_TTL_S = 86400;

export interface Upstream {
  readonly url: string;
  readonly user: string;
  readonly authority_pubkey?: string;
}

export interface Rules {
  readonly schedule?: readonly ScheduleWindow[];
  readonly max_watts?: number;
  readonly max_temp_c?: number;
  readonly upstreams?: readonly Upstream[];
  readonly payout?: { readonly address: string; readonly threshold_sats: number };
  readonly services?: Readonly<Partial<Record<ServiceKind, string>>>;
  readonly commands?: readonly CommandAction[];
  readonly networks?: readonly string[];
  readonly job_classes?: { readonly allow?: readonly string[]; readonly deny?: readonly string[] };
  readonly offline_grace_s?: number;
  readonly max_publication_ttl_s?: number;
}

export interface ConsentPayload {
  readonly v: 1;
  readonly owner: string;
  readonly worker: string;
  readonly policy_id: string;
  readonly seq: number;
  readonly nonce: string;
  readonly iat: number;
  readonly nbf: number;
  readonly exp: number;
  readonly rules: Rules;
}

export interface PublicationPayload {
  readonly v: 1;
  readonly worker: string;
  readonly consent_sha256: string;
  readonly version: number;
  readonly iat: number;
  readonly nbf: number;
  readonly exp: number;
  readonly stop: boolean;
}

export interface RevocationPayload {
  readonly v: 1;
  readonly owner: string;
  readonly worker: string;
  readonly through_seq: number;
  readonly iat: number;
  readonly nonce: string;
}

export interface DecommissionPayload {
  readonly v: 1;
  readonly owner: string;
  readonly worker: string;
  readonly iat: number;
  readonly nonce: string;
}

export interface OwnerRotationPayload {
  readonly v: 1;
  readonly owner: string;
  readonly worker: string;
  readonly new_owner_jwk: Readonly<Record<string, unknown>>;
  readonly iat: number;
  readonly nonce: string;
}

/** A bundle file: `{"consent": "<jws>", "publication": "<jws>"}`. */
export interface Bundle {
  readonly consent: string;
  readonly publication: string;
}

// ---- a small strict reader ----------------------------------------------------------------

type Obj = Readonly<Record<string, unknown>>;

function bad(path: string, expected: string, found: unknown): never {
  const shown =
    typeof found === "string"
      ? JSON.stringify(found.length > 60 ? `${found.slice(0, 57)}...` : found)
      : Array.isArray(found)
        ? "an array"
        : found === null
          ? "null"
          : typeof found === "object"
            ? "an object"
            : found === undefined
              ? "nothing"
              : String(found);
  throw fail("AGENTD_E_JWS_PAYLOAD", `${path}: expected ${expected}, found ${shown}`, { path });
}

function object(v: unknown, path: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) bad(path, "an object", v);
  return v as Obj;
}

/** Refuses members outside `required ∪ optional` and missing required ones. */
function members(
  o: Obj,
  path: string,
  required: readonly string[],
  optional: readonly string[] = [],
) {
  for (const k of Object.keys(o)) {
    if (!required.includes(k) && !optional.includes(k)) bad(`${path}.${k}`, "no such member", o[k]);
  }
  for (const k of required) if (!Object.hasOwn(o, k)) bad(`${path}.${k}`, "a member", undefined);
}

function int(v: unknown, path: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v)) bad(path, "an integer", v);
  if (v < min || v > max) bad(path, `an integer from ${min} to ${max}`, v);
  return v;
}

function str(v: unknown, path: string, maxLen = 256, pattern?: RegExp, what = "a string"): string {
  if (typeof v !== "string" || v.length === 0 || v.length > maxLen) {
    bad(path, `${what} of 1 to ${maxLen} characters`, v);
  }
  if (pattern !== undefined && !pattern.test(v)) bad(path, what, v);
  return v;
}

function array(v: unknown, path: string, maxLen = 256): readonly unknown[] {
  if (!Array.isArray(v)) bad(path, "an array", v);
  if (v.length > maxLen) bad(path, `at most ${maxLen} entries`, `${v.length} entries`);
  return v;
}

function uniqueStrings<T extends string>(
  v: unknown,
  path: string,
  check: (s: unknown, p: string) => T,
): readonly T[] {
  const out = array(v, path).map((x, i) => check(x, `${path}[${i}]`));
  const seen = new Set<string>();
  for (const [i, s] of out.entries()) {
    if (seen.has(s)) bad(`${path}[${i}]`, "no duplicate", s);
    seen.add(s);
  }
  return out;
}

const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const IMAGE_ID = /^sha256:[0-9a-f]{64}$/;
const JOB_CLASS = /^[a-z0-9][a-z0-9_.-]{0,31}$/;

const thumbprint = (v: unknown, path: string) =>
  str(v, path, 43, THUMBPRINT, "a JWK thumbprint (43 base64url characters)");

function nonce(v: unknown, path: string): string {
  const s = str(v, path, 22, /^[A-Za-z0-9_-]{22}$/, "base64url of 16 bytes");
  try {
    decodeBase64urlStrict(s, path);
  } catch {
    bad(path, "base64url of 16 bytes", s);
  }
  return s;
}

function version1(v: unknown, path: string): 1 {
  if (v !== 1) bad(path, "1", v);
  return 1;
}

// ---- documents ----------------------------------------------------------------------------

export function parseConsentPayload(p: Obj): ConsentPayload {
  members(p, "$", [
    "v",
    "owner",
    "worker",
    "policy_id",
    "seq",
    "nonce",
    "iat",
    "nbf",
    "exp",
    "rules",
  ]);
  const iat = int(p.iat, "$.iat", 0);
  const nbf = int(p.nbf, "$.nbf", 0);
  const exp = int(p.exp, "$.exp", 0);
  if (exp <= nbf || exp <= iat) bad("$.exp", "a time after iat and nbf", exp);
  return {
    v: version1(p.v, "$.v"),
    owner: thumbprint(p.owner, "$.owner"),
    worker: thumbprint(p.worker, "$.worker"),
    policy_id: str(p.policy_id, "$.policy_id", 128, /^[\x21-\x7e]+$/, "printable ASCII"),
    seq: int(p.seq, "$.seq", 1),
    nonce: nonce(p.nonce, "$.nonce"),
    iat,
    nbf,
    exp,
    rules: parseRules(p.rules, "$.rules"),
  };
}

export function parsePublicationPayload(p: Obj): PublicationPayload {
  members(p, "$", ["v", "worker", "consent_sha256", "version", "iat", "nbf", "exp", "stop"]);
  const iat = int(p.iat, "$.iat", 0);
  const nbf = int(p.nbf, "$.nbf", 0);
  const exp = int(p.exp, "$.exp", 0);
  if (exp <= iat || exp <= nbf) bad("$.exp", "a time after iat and nbf", exp);
  if (typeof p.stop !== "boolean") bad("$.stop", "true or false", p.stop);
  return {
    v: version1(p.v, "$.v"),
    worker: thumbprint(p.worker, "$.worker"),
    consent_sha256: str(p.consent_sha256, "$.consent_sha256", 64, SHA256_HEX, "64 lower-case hex"),
    version: int(p.version, "$.version", 1),
    iat,
    nbf,
    exp,
    stop: p.stop,
  };
}

export function parseRevocationPayload(p: Obj): RevocationPayload {
  members(p, "$", ["v", "owner", "worker", "through_seq", "iat", "nonce"]);
  return {
    v: version1(p.v, "$.v"),
    owner: thumbprint(p.owner, "$.owner"),
    worker: thumbprint(p.worker, "$.worker"),
    through_seq: int(p.through_seq, "$.through_seq", 1),
    iat: int(p.iat, "$.iat", 0),
    nonce: nonce(p.nonce, "$.nonce"),
  };
}

export function parseDecommissionPayload(p: Obj): DecommissionPayload {
  members(p, "$", ["v", "owner", "worker", "iat", "nonce"]);
  return {
    v: version1(p.v, "$.v"),
    owner: thumbprint(p.owner, "$.owner"),
    worker: thumbprint(p.worker, "$.worker"),
    iat: int(p.iat, "$.iat", 0),
    nonce: nonce(p.nonce, "$.nonce"),
  };
}

export function parseOwnerRotationPayload(p: Obj): OwnerRotationPayload {
  members(p, "$", ["v", "owner", "worker", "new_owner_jwk", "iat", "nonce"]);
  return {
    v: version1(p.v, "$.v"),
    owner: thumbprint(p.owner, "$.owner"),
    worker: thumbprint(p.worker, "$.worker"),
    new_owner_jwk: object(p.new_owner_jwk, "$.new_owner_jwk"),
    iat: int(p.iat, "$.iat", 0),
    nonce: nonce(p.nonce, "$.nonce"),
  };
}

// ---- rules --------------------------------------------------------------------------------

const RULE_KEYS = [
  "schedule",
  "max_watts",
  "max_temp_c",
  "upstreams",
  "payout",
  "services",
  "commands",
  "networks",
  "job_classes",
  "offline_grace_s",
  "max_publication_ttl_s",
] as const;

const DAY_S = 86400;

export function parseRules(v: unknown, path = "$.rules"): Rules {
  const r = object(v, path);
  members(r, path, [], RULE_KEYS);
  const out: Record<string, unknown> = {};
  if (r.schedule !== undefined) {
    out.schedule = array(r.schedule, `${path}.schedule`, 64).map((w, i) => {
      const problem = validateWindow(w, `${path}.schedule[${i}]`);
      if (problem !== null)
        throw fail("AGENTD_E_JWS_PAYLOAD", problem, { path: `${path}.schedule[${i}]` });
      return w as ScheduleWindow;
    });
  }
  if (r.max_watts !== undefined)
    out.max_watts = int(r.max_watts, `${path}.max_watts`, 1, 10_000_000);
  if (r.max_temp_c !== undefined) out.max_temp_c = int(r.max_temp_c, `${path}.max_temp_c`, 1, 200);
  if (r.upstreams !== undefined) {
    out.upstreams = array(r.upstreams, `${path}.upstreams`, 16).map((u, i) =>
      parseUpstream(u, `${path}.upstreams[${i}]`),
    );
  }
  if (r.payout !== undefined) {
    const p = object(r.payout, `${path}.payout`);
    members(p, `${path}.payout`, ["address", "threshold_sats"]);
    out.payout = {
      address: str(p.address, `${path}.payout.address`, 128, /^[A-Za-z0-9]+$/, "an address"),
      threshold_sats: int(p.threshold_sats, `${path}.payout.threshold_sats`, 0, 21e14),
    };
  }
  if (r.services !== undefined) {
    const s = object(r.services, `${path}.services`);
    members(s, `${path}.services`, [], SERVICE_KINDS);
    const services: Record<string, string> = {};
    for (const [kind, id] of Object.entries(s)) {
      services[kind] = str(
        id,
        `${path}.services.${kind}`,
        71,
        IMAGE_ID,
        "an image id sha256:<64 hex>",
      );
    }
    out.services = services;
  }
  if (r.commands !== undefined) {
    out.commands = uniqueStrings(r.commands, `${path}.commands`, (c, p) => {
      if (!(COMMAND_ACTIONS as readonly unknown[]).includes(c)) {
        bad(p, `one of ${COMMAND_ACTIONS.join(", ")}`, c);
      }
      return c as CommandAction;
    });
  }
  if (r.networks !== undefined) {
    out.networks = uniqueStrings(r.networks, `${path}.networks`, (n, p) => {
      const s = str(n, p, 64);
      if (!isCidr(s)) bad(p, "a CIDR network such as 192.168.10.0/24", s);
      return s;
    });
  }
  if (r.job_classes !== undefined) {
    const j = object(r.job_classes, `${path}.job_classes`);
    members(j, `${path}.job_classes`, [], ["allow", "deny"]);
    const jc: Record<string, readonly string[]> = {};
    for (const k of ["allow", "deny"] as const) {
      if (j[k] !== undefined) {
        jc[k] = uniqueStrings(j[k], `${path}.job_classes.${k}`, (c, p) =>
          str(c, p, 32, JOB_CLASS, "a job class name"),
        );
      }
    }
    out.job_classes = jc;
  }
  if (r.offline_grace_s !== undefined) {
    out.offline_grace_s = int(r.offline_grace_s, `${path}.offline_grace_s`, 0, 30 * DAY_S);
  }
  if (r.max_publication_ttl_s !== undefined) {
    out.max_publication_ttl_s = int(
      r.max_publication_ttl_s,
      `${path}.max_publication_ttl_s`,
      60,
      30 * DAY_S,
    );
  }
  // Frozen all the way down: verified rules are shared by the decision, the gates and caches.
  return deepFreeze(out) as Rules;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

function parseUpstream(v: unknown, path: string): Upstream {
  const u = object(v, path);
  members(u, path, ["url", "user"], ["authority_pubkey"]);
  const url = str(u.url, `${path}.url`, 256);
  const scheme = upstreamScheme(url);
  if (scheme === null) {
    bad(`${path}.url`, `a ${UPSTREAM_SCHEMES.join(" / ")} URL with host and port`, url);
  }
  const user = str(u.user, `${path}.user`, 128, /^[\x21-\x7e]+$/, "printable ASCII without spaces");
  if (u.authority_pubkey === undefined) return { url, user };
  if (scheme !== "sv2+tcp")
    bad(`${path}.authority_pubkey`, "no such member for a Stratum V1 URL", u.authority_pubkey);
  return {
    url,
    user,
    authority_pubkey: str(
      u.authority_pubkey,
      `${path}.authority_pubkey`,
      128,
      /^[1-9A-HJ-NP-Za-km-z]+$/,
      "a base58 key",
    ),
  };
}

/** The scheme of a valid upstream URL (`scheme://host:port` and nothing else), or null. */
export function upstreamScheme(url: string): (typeof UPSTREAM_SCHEMES)[number] | null {
  const m =
    /^([a-z0-9+]+):\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/.exec(
      url,
    );
  if (m === null) return null;
  const scheme = m[1] as string;
  if (!(UPSTREAM_SCHEMES as readonly string[]).includes(scheme)) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return scheme as (typeof UPSTREAM_SCHEMES)[number];
}

export function isCidr(s: string): boolean {
  const slash = s.indexOf("/");
  if (slash < 0) return false;
  const ip = s.slice(0, slash);
  const prefix = s.slice(slash + 1);
  const family = isIP(ip);
  if (family === 0 || !/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (family === 4 ? 32 : 128);
}
