import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { fail, isAgentdError } from "../../lib/errors.ts";

/**
 * Who is calling: the first step after routing, before the query, the body or any schema is
 * looked at (so a caller without credentials learns 401, never what a valid body looks like).
 *
 * - `Authorization: Bearer agentd_<role>_<43 base64url chars>`: an API key, looked up by the
 *   SHA-256 of the whole key string (keys are stored only hashed). Looking up by hash keeps the
 *   secret out of any comparison the store does; when the store also returns the hash, it is
 *   compared again here in constant time.
 * - `Authorization: AgentD <access token>` with `AgentD-Proof: <proof JWS>`: a machine; both
 *   are checked by the injected `authenticateMachine` (token, proof signature, htm/htu, iat,
 *   jti, ath), which throws AGENTD_E_CP_* errors. Signature and JSON errors it lets through are
 *   turned into AGENTD_E_CP_PROOF_INVALID so they stay 401.
 * - `Authorization: AgentD <access token>` without a proof, on a route declared
 *   `machineSignedBody` (heartbeat): the body is a document signed by the machine key, fresh
 *   and single-use, which the handler verifies (a bad signature there is 401 too); the token
 *   alone only says which worker's key must have signed it. A proof that is sent is checked.
 * - `AgentD-Proof: <proof JWS>` alone, on a route declared `machineProofOnly` (attest: the
 *   machine has no access token yet): the route's own authenticator recognises the signer by
 *   the proof's `kid` and checks the proof without `ath`. Its errors are treated as above.
 * - `public` routes (health, key set, challenge) and `token` routes (register: the
 *   enrollment token is in the body and the handler checks it) ignore any credentials.
 *
 * Missing or unknown credentials are 401 AGENTD_E_CP_UNAUTHENTICATED; a valid caller whose kind
 * the route does not list is 403 AGENTD_E_CP_FORBIDDEN. A header sent twice is refused rather
 * than picking one (Node would silently keep the first `Authorization`).
 */

/** What `WWW-Authenticate` says on 401: the two schemes this API accepts. */
export const WWW_AUTHENTICATE = 'Bearer realm="agentd", AgentD realm="agentd"';

export const ROLES = ["admin", "operator", "owner", "auditor"] as const;
export type Role = (typeof ROLES)[number];

export const CALLER_KINDS = [...ROLES, "machine", "token", "public"] as const;
export type CallerKind = (typeof CALLER_KINDS)[number];

export type Caller =
  | { readonly kind: "admin" | "operator" | "auditor"; readonly keyId: string }
  | { readonly kind: "owner"; readonly keyId: string; readonly ownerId: string }
  | {
      readonly kind: "machine";
      readonly workerId: string;
      /**
       * Set when only the access token was checked so far (`machineSignedBody`): the handler
       * has yet to verify the signed body. Such a caller is rate-limited by its token, not as
       * the machine, so that a stolen token cannot spend the machine's own allowance.
       */
      readonly tokenSha256?: string;
    }
  | { readonly kind: "token" }
  | { readonly kind: "public" };

export interface ApiKeyRecord {
  readonly id: string;
  readonly role: Role;
  readonly owner_id: string | null;
  /** When given, compared in constant time with the hash that was looked up. */
  readonly key_sha256?: string;
}

export type FindApiKey = (
  sha256hex: string,
) => Promise<ApiKeyRecord | undefined> | ApiKeyRecord | undefined;

export interface MachineAuthInput {
  /** The request (an authenticator may remember what it read for it). */
  readonly req: IncomingMessage;
  readonly accessToken: string;
  readonly proof: string;
  /** The request method, upper case. */
  readonly method: string;
  /** The absolute https URL the client used, query included (normalised by `new URL`). */
  readonly url: string;
}

export type AuthenticateMachine = (
  input: MachineAuthInput,
) => Promise<{ readonly worker_id: string }> | { readonly worker_id: string };

export interface MachineProofInput {
  readonly proof: string;
  /** The request method, upper case. */
  readonly method: string;
  /** The absolute https URL the client used, query included (normalised by `new URL`). */
  readonly url: string;
}

/** A route's authenticator for machines whose signed body is their proof (an access token alone). */
export type AuthenticateMachineToken = (
  accessToken: string,
  req: IncomingMessage,
) => Promise<{ readonly worker_id: string }> | { readonly worker_id: string };

/** A route's authenticator for machines that present a proof and no access token. */
export type AuthenticateMachineProof = (
  input: MachineProofInput,
) => Promise<{ readonly worker_id: string }> | { readonly worker_id: string };

export interface AuthOptions {
  /** The route's `machineProofOnly` (route.ts); honoured only when `machine` is allowed. */
  readonly machineProofOnly?: AuthenticateMachineProof | undefined;
  /** The route's `machineSignedBody` (route.ts); honoured only when `machine` is allowed. */
  readonly machineSignedBody?: AuthenticateMachineToken | undefined;
}

export interface AuthDeps {
  readonly findApiKey: FindApiKey;
  readonly authenticateMachine: AuthenticateMachine;
}

/** Refuses route declarations that mix `public`/`token` with anything (they skip auth). */
export function checkAllowedCallers(where: string, allowed: readonly CallerKind[]): void {
  if (allowed.length === 0) throw fail("AGENTD_E_INTERNAL", `${where}: no caller allowed`);
  for (const k of allowed) {
    if (!(CALLER_KINDS as readonly string[]).includes(k)) {
      throw fail("AGENTD_E_INTERNAL", `${where}: unknown caller kind ${k}`);
    }
  }
  const open = allowed.filter((k) => k === "public" || k === "token");
  if (open.length > 0 && allowed.length > 1) {
    throw fail("AGENTD_E_INTERNAL", `${where}: ${open[0]} must be the only caller kind`);
  }
}

const API_KEY = /^agentd_(admin|operator|owner|auditor)_[A-Za-z0-9_-]{43}$/;
const TOKEN68 = /^[A-Za-z0-9._~+/-]+=*$/;
const MAX_CREDENTIAL_LENGTH = 8192;

export async function authenticate(
  req: IncomingMessage,
  allowed: readonly CallerKind[],
  requestUrl: string,
  deps: AuthDeps,
  options: AuthOptions = {},
): Promise<Caller> {
  if (allowed.includes("public")) return { kind: "public" };
  if (allowed.includes("token")) return { kind: "token" };
  const proofOnly = allowed.includes("machine") ? options.machineProofOnly : undefined;
  const authorization = singleHeader(req, "authorization");
  if (authorization === undefined) {
    if (proofOnly !== undefined && singleHeader(req, "agentd-proof") !== undefined) {
      return proofOnlyCaller(req, requestUrl, proofOnly);
    }
    throw unauthenticated("credentials are required");
  }
  const m = /^([A-Za-z]+) +(\S+)$/.exec(authorization);
  if (m === null || authorization.length > MAX_CREDENTIAL_LENGTH) {
    throw unauthenticated("the Authorization header is malformed");
  }
  const scheme = (m[1] as string).toLowerCase();
  const credential = m[2] as string;
  let caller: Caller;
  if (scheme === "bearer") caller = await apiKeyCaller(credential, deps);
  else if (scheme === "agentd") {
    if (proofOnly !== undefined) {
      throw unauthenticated("this endpoint takes the AgentD-Proof alone, without an access token");
    }
    const signedBody = allowed.includes("machine") ? options.machineSignedBody : undefined;
    caller = await machineCaller(req, credential, requestUrl, deps, signedBody);
  } else throw unauthenticated("unsupported authorization scheme");
  if (!allowed.includes(caller.kind)) {
    throw fail("AGENTD_E_CP_FORBIDDEN", `a ${caller.kind} may not call this endpoint`, {
      caller: caller.kind,
    });
  }
  return caller;
}

async function apiKeyCaller(key: string, deps: AuthDeps): Promise<Caller> {
  const m = API_KEY.exec(key);
  if (m === null) throw unauthenticated("unknown API key");
  const hash = createHash("sha256").update(key, "utf8").digest("hex");
  const record = await deps.findApiKey(hash);
  if (record === undefined) throw unauthenticated("unknown API key");
  if (record.key_sha256 !== undefined && !sameHex(record.key_sha256, hash)) {
    throw unauthenticated("unknown API key");
  }
  // The role spelled in the key is a hint for humans; the stored role decides, and a key
  // whose spelling disagrees with its record is treated as not ours.
  if (m[1] !== record.role) throw unauthenticated("unknown API key");
  if (record.role === "owner") {
    if (record.owner_id === null) throw unauthenticated("unknown API key");
    return { kind: "owner", keyId: record.id, ownerId: record.owner_id };
  }
  return { kind: record.role, keyId: record.id };
}

async function machineCaller(
  req: IncomingMessage,
  accessToken: string,
  url: string,
  deps: AuthDeps,
  signedBody: AuthenticateMachineToken | undefined,
): Promise<Caller> {
  if (!TOKEN68.test(accessToken)) throw unauthenticated("the access token is malformed");
  const proof = singleHeader(req, "agentd-proof");
  if (proof === undefined && signedBody !== undefined) {
    const caller = await machineResult(() => signedBody(accessToken, req));
    const tokenSha256 = createHash("sha256").update(accessToken, "utf8").digest("hex");
    return { ...(caller as { kind: "machine"; workerId: string }), tokenSha256 };
  }
  if (proof === undefined || proof === "" || proof.length > MAX_CREDENTIAL_LENGTH) {
    throw fail("AGENTD_E_CP_PROOF_INVALID", "a machine request needs one AgentD-Proof header");
  }
  return machineResult(() =>
    deps.authenticateMachine({ req, accessToken, proof, method: req.method ?? "", url }),
  );
}

async function proofOnlyCaller(
  req: IncomingMessage,
  url: string,
  authenticateProof: AuthenticateMachineProof,
): Promise<Caller> {
  const proof = singleHeader(req, "agentd-proof");
  if (proof === undefined || proof === "" || proof.length > MAX_CREDENTIAL_LENGTH) {
    throw fail("AGENTD_E_CP_PROOF_INVALID", "a machine request needs one AgentD-Proof header");
  }
  return machineResult(() => authenticateProof({ proof, method: req.method ?? "", url }));
}

/** A machine authenticator's answer as a caller; its signature and JSON errors stay 401. */
async function machineResult(
  run: () => Promise<{ readonly worker_id: string }> | { readonly worker_id: string },
): Promise<Caller> {
  let result: { readonly worker_id: string };
  try {
    result = await run();
  } catch (e) {
    if (isAgentdError(e) && /^AGENTD_E_(JWS|JSON)_|^AGENTD_E_SCHEMA$/.test(e.code)) {
      throw fail("AGENTD_E_CP_PROOF_INVALID", "the request proof is invalid", {}, e);
    }
    throw e;
  }
  if (typeof result?.worker_id !== "string" || result.worker_id === "") {
    throw fail("AGENTD_E_INTERNAL", "the machine authenticator returned no worker id");
  }
  return { kind: "machine", workerId: result.worker_id };
}

/** The header's one value; undefined when absent; refused when sent more than once. */
function singleHeader(req: IncomingMessage, name: string): string | undefined {
  let value: string | undefined;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() !== name) continue;
    if (value !== undefined) throw unauthenticated(`the ${name} header is sent more than once`);
    value = (raw[i + 1] as string).trim();
  }
  return value;
}

function sameHex(a: string, b: string): boolean {
  const x = Buffer.from(a.toLowerCase(), "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length === y.length && timingSafeEqual(x, y);
}

function unauthenticated(message: string) {
  return fail("AGENTD_E_CP_UNAUTHENTICATED", message);
}

/** The bucket key for per-caller rate limits; `undefined` for callers without an identity. */
export function callerKey(caller: Caller): string | undefined {
  switch (caller.kind) {
    case "machine":
      return caller.tokenSha256 === undefined
        ? `machine:${caller.workerId}`
        : `token:${caller.tokenSha256}`;
    case "token":
    case "public":
      return undefined;
    default:
      return `key:${caller.keyId}`;
  }
}

/** A short, non-secret description of the caller for the access log. */
export function callerLabel(caller: Caller | undefined): string {
  if (caller === undefined) return "-";
  const key = callerKey(caller);
  return key === undefined ? caller.kind : `${caller.kind}:${key.slice(key.indexOf(":") + 1)}`;
}
