import type { IncomingMessage, ServerResponse } from "node:http";
import type { StatusOverrides } from "../../lib/http/errors.ts";
import type { HttpResult } from "../../lib/http/respond.ts";
import type { Method } from "../../lib/http/router.ts";
import type {
  AuthenticateMachineProof,
  AuthenticateMachineToken,
  Caller,
  CallerKind,
} from "./auth.ts";

/**
 * How an endpoint is declared. The framework runs, in order: per-IP rate limit → route match
 * (404/405) → authentication against `auth` (401/403) → per-caller rate limit (429) → path
 * parameters (400) → `machineParam` binding (403) → `authorize` (403/404, for checks that need
 * the store: an owner's own workers, quarantine) → query, body (400/413/415) → `body.validate`
 * (400) → `handler`. Nothing a handler does can happen before the caller is known, and a caller
 * who may not act on a resource learns so before anything about the body.
 */

/** What `authorize` sees: who calls, on what; no body yet. */
export interface AuthorizeContext {
  readonly caller: Caller;
  readonly params: Readonly<Record<string, string>>;
  readonly req: IncomingMessage;
}

export interface HandlerContext<B = unknown> {
  readonly caller: Caller;
  /** Decoded and validated path parameters (lib/http/router.ts `decodeParams`). */
  readonly params: Readonly<Record<string, string>>;
  /** The query, restricted to the keys in `Route.query`, each at most once. */
  readonly query: Readonly<Record<string, string>>;
  /** The strict-parsed body, already passed through `body.validate` when given. */
  readonly body: B;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly clientIp: string;
  /** The absolute https URL the client used (`new URL` normalised), for proof `htu` checks. */
  readonly requestUrl: string;
  readonly requestId: string;
  /** Aborted when the client goes away or the server closes: long polls end on it. */
  readonly signal: AbortSignal;
}

/** What a handler answers (lib/http/respond.ts writes it). */
export type HandlerResult = HttpResult;

export interface RouteBody<B> {
  /** Largest body in bytes (default: the server's `bodyLimit`, itself 64 KiB by default). */
  readonly limit?: number;
  /** Whether an empty body is accepted; it then reaches `validate` as `undefined`. */
  readonly optional?: boolean;
  /** Schema check: returns the typed body or throws AGENTD_E_SCHEMA (400). */
  readonly validate?: (value: unknown) => B;
}

export interface Route<B = unknown> {
  readonly method: Method;
  /** A template: `/v1/workers/{id}/policy`. */
  readonly path: string;
  /** Who may call; `public` and `token` stand alone (no credentials are read). */
  readonly auth: readonly CallerKind[];
  /**
   * For worker-scoped routes: a machine caller must be the worker named by this path
   * parameter (else 403). Other callers are checked by the handler (ownership needs the store).
   */
  readonly machineParam?: string;
  /**
   * On a route whose `auth` lists `machine`: a machine authenticates by its `AgentD-Proof`
   * alone, with no `Authorization` header and no `ath` (`POST /v1/auth/agent/attest`, the call
   * that obtains the access token). The route supplies how the proof's signer is recognised
   * (its `kid` among the registered machine keys, the proof verified, its `jti` recorded),
   * since without a token only the endpoint knows whose key to ask for. `Authorization: AgentD`
   * is refused on such a route: a token there would be one the proof is not bound to.
   */
  readonly machineProofOnly?: AuthenticateMachineProof;
  /**
   * On a route whose `auth` lists `machine`: the body is itself a document signed by the
   * machine key, bound to the worker, fresh and single-use (a heartbeat: `iat` within the skew,
   * a counter above every stored one), which the handler verifies and must answer 401
   * AGENTD_E_CP_PROOF_INVALID when its signature fails. The `AgentD-Proof` may then be left
   * out, and the machine is recognised by its access token alone (this function); a proof that
   * is sent is checked as anywhere else. Why: a second signature over the same request proves
   * nothing more, and verifying it doubles the cost of the most frequent call.
   */
  readonly machineSignedBody?: AuthenticateMachineToken;
  /** Resource-level authorisation before the body is read; throws AGENTD_E_CP_FORBIDDEN etc. */
  authorize?(ctx: AuthorizeContext): Promise<void>;
  /** Query keys accepted (each at most once); any other key is 400. Default: none. */
  readonly query?: readonly string[];
  /** Absent: the route takes no body (any body byte is 413). */
  readonly body?: RouteBody<B>;
  /** Per-route status for error codes (for example AGENTD_E_SCHEMA → 422). */
  readonly errorStatus?: StatusOverrides;
  /** A method, not a property, so that a `Route<Foo>` fits in a `Route[]`. */
  handler(ctx: HandlerContext<B>): Promise<HandlerResult>;
}

/** Identity, for type inference: `defineRoute({... body: {validate: parseX}, handler(ctx) {…}})`. */
export function defineRoute<B>(route: Route<B>): Route<B> {
  return route;
}
