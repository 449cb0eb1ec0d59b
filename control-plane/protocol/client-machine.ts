import type { KeyObject } from "node:crypto";
import { jwkThumbprint, publicKeyOf } from "../../lib/crypto/ed25519.ts";
import { fail, isAgentdError } from "../../lib/errors.ts";
import { type CallOptions, call, createTransport, type TransportOptions } from "./client-http.ts";
import { openStream, type StreamHandle, type StreamOptions } from "./client-stream.ts";
import { signAttestation } from "./documents/attestation.ts";
import { signCommandResult } from "./documents/command-result.ts";
import { type HeartbeatBody, signHeartbeat } from "./documents/heartbeat.ts";
import { AUTHORIZATION_SCHEME, createProof, PROOF_HEADER } from "./proof.ts";
import type { KeysResponse } from "./schemas/api-admin.ts";
import type { AttestResponse, ChallengeResponse } from "./schemas/api-enrollment.ts";
import type { AssignmentResponse, WorkerPolicyResponse } from "./schemas/api-policy.ts";
import type {
  CommandResultResponse,
  HeartbeatResponse,
  WorkerCommandsResponse,
} from "./schemas/api-worker.ts";
import type { HostFacts } from "./schemas/attestation.ts";
import type { CommandStatus } from "./schemas/command-result.ts";
import type { HttpMethod } from "./schemas/proof.ts";

/**
 * What a registered machine says to its control plane (docs/protocol.md sections 3, 5, 7).
 *
 * Every call after attestation carries `Authorization: AgentD <access token>` and a fresh
 * proof signed by the machine key for exactly that method and URL (a new `jti` each time,
 * also when a request is retried), so the access token alone is worth nothing. The heartbeat
 * is the exception: the signed heartbeat (fresh `iat`, a counter never used before) is itself
 * the proof, so it is sent with the token alone. The access
 * token lives in this object: `attest` sets it, and the stream's reconnections pick up the
 * current one. Documents the machine signs (attestation, heartbeat, command result) are
 * signed here with the injected clock; documents it receives are returned schema-checked
 * but unverified — what to trust is the agent's policy guard's decision, with its pinned keys.
 */

export interface MachineClientOptions extends TransportOptions {
  readonly machineKey: KeyObject;
}

export type PolicyAnswer =
  /** A newer bundle (or the first); `etag` to send next time. */
  | { readonly changed: true; readonly etag: string; readonly bundle: WorkerPolicyResponse }
  /** 304: the bundle with the `etag` given is still current (or the long poll ran out). */
  | { readonly changed: false; readonly etag: string | null };

/** Why the control plane says a machine has no assignment. */
export type NoAssignment = "not_found" | "forbidden" | "quarantined";

export type AssignmentAnswer =
  | { readonly assignment: AssignmentResponse["assignment"] }
  | { readonly none: NoAssignment };

const NO_ASSIGNMENT: Readonly<Partial<Record<string, NoAssignment>>> = {
  AGENTD_E_CP_NOT_FOUND: "not_found",
  AGENTD_E_CP_FORBIDDEN: "forbidden",
  AGENTD_E_CP_QUARANTINED: "quarantined",
};

export interface MachineClient {
  readonly workerId: string;
  readonly origin: string;
  /** The access token and its expiry (Unix seconds), or null before `attest`. */
  session(): { readonly accessToken: string; readonly expiresAt: number } | null;
  challenge(): Promise<ChallengeResponse>;
  /** The control plane's root-signed key set (verify it: keyset.ts acceptKeySetUpdate). */
  getKeys(): Promise<KeysResponse>;
  /** A fresh challenge, the signed attestation and the access token (kept for later calls). */
  attest(facts: HostFacts): Promise<AttestResponse>;
  /** Signs `body` (counter, state, telemetry…) as of now and sends it. */
  heartbeat(body: HeartbeatBody): Promise<HeartbeatResponse>;
  /** Sends an already signed heartbeat (e.g. one persisted before a crash). */
  sendHeartbeat(jws: string): Promise<HeartbeatResponse>;
  /**
   * The policy bundle. With `etag`, a 304 answers "unchanged"; with `waitS` the control plane
   * holds the request until a newer bundle exists or the wait runs out (long poll).
   */
  getPolicy(o?: { readonly etag?: string | null; readonly waitS?: number }): Promise<PolicyAnswer>;
  /**
   * The machine's assignment, or the control plane's word that there is none for it now
   * (nothing published, the consent expired, the machine quarantined). Anything else that
   * goes wrong (the network, a stop or a publication being re-issued) throws: it is transient.
   */
  getAssignment(): Promise<AssignmentAnswer>;
  /** The events after `after` (the poll twin of the stream). */
  pollCommands(o?: { readonly after?: number }): Promise<WorkerCommandsResponse>;
  postCommandResult(r: {
    readonly cmdId: string;
    readonly status: CommandStatus;
    readonly reason: string;
  }): Promise<CommandResultResponse>;
  sendCommandResult(cmdId: string, jws: string): Promise<CommandResultResponse>;
  /** The push stream, resumable from the last event processed (client-stream.ts). */
  openStream(o: StreamOptions): StreamHandle;
  close(): void;
}

export function createMachineClient(o: MachineClientOptions): MachineClient {
  const t = createTransport(o);
  const key = o.machineKey;
  const workerId = jwkThumbprint(publicKeyOf(key));
  const worker = `/v1/workers/${workerId}`;
  let session: { accessToken: string; expiresAt: number } | null = null;

  const proof = (method: HttpMethod, path: string, accessToken?: string) =>
    createProof({
      privateKey: key,
      method,
      url: `${t.origin}${path}`,
      clock: o.clock,
      ...(accessToken === undefined ? {} : { accessToken }),
    });

  const authorized = (method: HttpMethod, path: string) => (): Record<string, string> => {
    if (session === null) {
      throw fail("AGENTD_E_CP_UNAUTHENTICATED", "no access token yet: attest first");
    }
    return {
      authorization: `${AUTHORIZATION_SCHEME} ${session.accessToken}`,
      [PROOF_HEADER]: proof(method, path, session.accessToken),
    };
  };

  const get = async <R>(path: string, options: Omit<CallOptions, "headers"> = {}) =>
    (await call(t, "GET", path, { ...options, headers: authorized("GET", path) })).body as R;
  const post = async <R>(path: string, body: unknown): Promise<R> =>
    (await call(t, "POST", path, { body, headers: authorized("POST", path) })).body as R;

  const challenge = async () =>
    (
      await call<"challenge-response">(t, "GET", "/v1/auth/agent/challenge", {
        query: { worker: workerId },
      })
    ).body;
  // No AgentD-Proof: the signed heartbeat is the request's proof (docs/protocol.md,
  // "Heartbeats"), which halves the signatures of the most frequent call.
  const sendHeartbeat = async (jws: string) =>
    (
      await call<"heartbeat-response">(t, "POST", `${worker}/heartbeat`, {
        body: { heartbeat: jws },
        headers: () => {
          if (session === null) {
            throw fail("AGENTD_E_CP_UNAUTHENTICATED", "no access token yet: attest first");
          }
          return { authorization: `${AUTHORIZATION_SCHEME} ${session.accessToken}` };
        },
      })
    ).body;
  const sendCommandResult = (cmdId: string, jws: string) =>
    post<CommandResultResponse>(`/v1/commands/${cmdId}/result`, { result: jws });

  return {
    workerId,
    origin: t.origin,
    session: () => (session === null ? null : { ...session }),
    challenge,
    getKeys: async () => (await call<"keys-response">(t, "GET", "/v1/keys")).body,
    async attest(facts) {
      const c = await challenge();
      const path = "/v1/auth/agent/attest";
      const attestation = signAttestation({
        privateKey: key,
        challenge: c.challenge,
        facts,
        clock: o.clock,
      });
      const r = await call<"attest-response">(t, "POST", path, {
        body: { attestation },
        headers: () => ({ [PROOF_HEADER]: proof("POST", path) }),
      });
      session = { accessToken: r.body.access_token, expiresAt: r.body.expires_at };
      return r.body;
    },
    heartbeat: (body) => sendHeartbeat(signHeartbeat({ privateKey: key, body, clock: o.clock })),
    sendHeartbeat,
    async getPolicy(p = {}) {
      const path = `${worker}/policy`;
      const waitS = p.waitS ?? 0;
      const r = await call<"worker-policy-response">(t, "GET", path, {
        allow: [304],
        headers: () => ({
          ...authorized("GET", path)(),
          ...(p.etag == null ? {} : { "if-none-match": p.etag }),
          ...(waitS > 0 ? { prefer: `wait=${waitS}` } : {}),
        }),
        // The server may hold a long poll for the whole wait: the deadline comes after it.
        ...(waitS > 0 ? { timeoutMs: waitS * 1000 + t.timeoutMs } : {}),
      });
      const etag = typeof r.headers.etag === "string" ? r.headers.etag : null;
      if (r.status === 304) return { changed: false, etag: etag ?? p.etag ?? null };
      if (etag === null) throw fail("AGENTD_E_HTTP", `GET ${path}: 200 without an ETag`);
      return { changed: true, etag, bundle: r.body };
    },
    async getAssignment() {
      try {
        const r = await get<AssignmentResponse>(`${worker}/assignment`);
        return { assignment: r.assignment };
      } catch (err) {
        const none = isAgentdError(err) ? NO_ASSIGNMENT[err.code] : undefined;
        if (none === undefined) throw err;
        return { none };
      }
    },
    async pollCommands(p = {}) {
      return get<WorkerCommandsResponse>(`${worker}/commands`, { query: { after: p.after ?? 0 } });
    },
    postCommandResult(r) {
      const jws = signCommandResult({
        privateKey: key,
        cmdId: r.cmdId,
        status: r.status,
        reason: r.reason,
        clock: o.clock,
      });
      return sendCommandResult(r.cmdId, jws);
    },
    sendCommandResult,
    openStream(s) {
      return openStream({
        origin: t.origin,
        caPem: o.caPem,
        path: `${worker}/stream`,
        headers: () => authorized("GET", `${worker}/stream`)(),
        timers: t.timers,
        ...s,
      });
    },
    close() {
      t.close();
    },
  };
}
