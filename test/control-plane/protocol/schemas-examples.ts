import { Buffer } from "node:buffer";
import type { SchemaName, SchemaTypes } from "../../../control-plane/protocol/schemas/index.ts";
import { encodeBase64url } from "../../../lib/crypto/base64url.ts";
import {
  jwkThumbprint,
  privateKeyFromSeed,
  publicJwk,
  publicKeyOf,
} from "../../../lib/crypto/ed25519.ts";
import { signJws } from "../../../lib/crypto/jws.ts";

/**
 * Valid examples of every wire schema, typed with the schema's TypeScript type, so that tsc
 * checks the types against the examples and the tests check the schemas against them. Every
 * optional member appears in at least one example, so that the mutation walk reaches it.
 */

const key = (n: number) => privateKeyFromSeed(Buffer.alloc(32, n));
export const MACHINE_KEY = key(1);
export const OWNER_KEY = key(2);
export const CP_KEY = key(3);

export const WORKER = jwkThumbprint(publicKeyOf(MACHINE_KEY));
export const OWNER = jwkThumbprint(publicKeyOf(OWNER_KEY));
export const HEX = "ab".repeat(32);
export const HEX2 = "cd".repeat(32);
export const UUID = "123e4567-e89b-42d3-a456-426614174000";
export const ID16 = encodeBase64url(Buffer.alloc(16, 7));
export const B32 = encodeBase64url(Buffer.alloc(32, 9));
export const NOW = 1_795_300_000;
export const JWK = publicJwk(publicKeyOf(MACHINE_KEY));
export const ROOT_JWK = publicJwk(publicKeyOf(CP_KEY));
export const API_KEY = `agentd_operator_${B32}`;
export const ACCESS_TOKEN = `agentd_at_${B32}`;
export const JWS = signJws({ typ: "agentd-test+jwt", payload: { a: 1 }, privateKey: CP_KEY });
export const TOKEN = `agentd1.${encodeBase64url(Buffer.from('{"a":1}'))}`;

const FACTS = {
  machine_id_sha256: HEX,
  binary_sha256: HEX2,
  os: "Debian GNU/Linux 13 (trixie) x86_64",
  boot_time: NOW - 3600,
  agent_version: "0.1.0",
};

const HEARTBEAT: SchemaTypes["heartbeat"] = {
  v: 1,
  worker: WORKER,
  counter: 7,
  iat: NOW,
  state: "MINING",
  policy: { version: 42, consent_sha256: HEX },
  decision: { mining: true, reasons: ["publication.expired"] },
  telemetry: {
    asics: 3,
    hashrate_hs: 3.1e14,
    shares_accepted: 1200,
    shares_rejected: 3,
    uptime_s: 86_400,
  },
  services: { bitcoind: "running", translator: "unhealthy", lnd: "absent" },
  agent: { version: "0.1.0", binary_sha256: HEX2 },
  audit_head: HEX,
};

const commandFields = {
  v: 1 as const,
  cmd_id: UUID,
  worker: WORKER,
  iat: NOW,
  exp: NOW + 600,
  consent_sha256: HEX,
  seq: 3,
};

export type Examples = { readonly [N in SchemaName]: readonly SchemaTypes[N][] };

export const EXAMPLES: Examples = {
  keyset: [
    {
      v: 1,
      seq: 1,
      iat: NOW,
      root: ROOT_JWK,
      keys: (["publication", "command", "assignment", "token"] as const).map((use) => ({
        kid: WORKER,
        use,
        jwk: { ...JWK },
      })),
    },
  ],
  "enrollment-token": [
    { url: "https://cp.example:8443", ca_sha256: HEX, root_kid: OWNER, id: ID16, secret: B32 },
  ],
  attestation: [{ v: 1, worker: WORKER, challenge: B32, iat: NOW, facts: FACTS }],
  heartbeat: [
    HEARTBEAT,
    { ...HEARTBEAT, policy: { version: null, consent_sha256: null }, audit_head: null },
    {
      ...HEARTBEAT,
      telemetry: {
        ...HEARTBEAT.telemetry,
        upstream: {
          url: "stratum+tcp://pool.example:3333",
          state: "unreachable",
          since: NOW - 600,
          last_error: "ECONNREFUSED",
        },
      },
    },
    {
      ...HEARTBEAT,
      telemetry: {
        ...HEARTBEAT.telemetry,
        upstream: {
          url: "stratum+ssl://[2001:db8::1]:443",
          state: "connected",
          since: NOW - 60,
          last_error: null,
        },
      },
    },
    { ...HEARTBEAT, telemetry: { ...HEARTBEAT.telemetry, upstream: null } },
  ],
  command: [
    { ...commandFields, action: "mining.pause", args: {} },
    { ...commandFields, action: "mining.resume", args: {} },
    { ...commandFields, action: "service.start", args: { service: "bitcoind" } },
    { ...commandFields, action: "service.stop", args: { service: "translator" } },
    { ...commandFields, action: "service.restart", args: { service: "cln" } },
    { ...commandFields, action: "agent.update", args: { version: "0.2.0", manifest_sha256: HEX } },
    { ...commandFields, action: "agent.rotate_key", args: {} },
    { ...commandFields, action: "worker.quarantine", args: { reason: "clone suspected" } },
  ],
  "command-result": [
    { v: 1, cmd_id: UUID, worker: WORKER, status: "done", reason: "", iat: NOW },
    { v: 1, cmd_id: UUID, worker: WORKER, status: "refused", reason: "consent.command", iat: NOW },
  ],
  assignment: [
    {
      v: 1,
      worker: WORKER,
      consent_sha256: HEX,
      upstream: { url: "stratum+tcp://pool.example:3333", user: "owner1.farm-a" },
      iat: NOW,
      exp: NOW + 3600,
    },
  ],
  proof: [
    {
      htm: "POST",
      htu: "https://cp.example:8443/v1/workers/x/heartbeat",
      iat: NOW,
      jti: ID16,
      ath: B32,
    },
    { htm: "POST", htu: "https://cp.example/v1/machines/register", iat: NOW, jti: ID16 },
  ],
  error: [
    { error: { code: "AGENTD_E_SCHEMA", message: "heartbeat: /counter: must be at least 1" } },
  ],
  "health-response": [{ status: "ok" }, { status: "not_ready" }],
  "keys-response": [{ keyset: JWS }],
  "keys-rotate-request": [{ keep_previous: false }, {}],
  "owner-create-request": [{ jwk: JWK, label: "farm A" }],
  "owner-create-response": [{ owner: OWNER, key_id: ID16, api_key: `agentd_owner_${B32}` }],
  "apikey-create-request": [
    { role: "operator", label: "night shift" },
    { role: "owner", owner: OWNER },
  ],
  "apikey-create-response": [
    { key_id: ID16, role: "operator", owner: null, api_key: API_KEY },
    { key_id: ID16, role: "owner", owner: OWNER, api_key: `agentd_owner_${B32}` },
  ],
  "apikey-revoke-response": [
    { key_id: ID16, role: "operator", owner: null, revoked: true, revoked_at: NOW },
    { key_id: ID16, role: "owner", owner: OWNER, revoked: true, revoked_at: NOW },
  ],
  "enrollment-token-create-request": [{ ttl_s: 3600, label: "rack 4" }, {}],
  "enrollment-token-create-response": [{ id: ID16, token: TOKEN, expires_at: NOW + 3600 }],
  "machine-register-request": [{ token: TOKEN, jwk: JWK, facts: FACTS }],
  "machine-register-response": [{ worker: WORKER, owner: OWNER, keyset: JWS }],
  "challenge-query": [{ worker: WORKER }, {}],
  "challenge-response": [{ challenge: B32, expires_at: NOW + 60 }],
  "attest-request": [{ attestation: JWS }],
  "attest-response": [
    {
      verdict: "clone",
      quarantined: true,
      access_token: ACCESS_TOKEN,
      token_type: "AgentD",
      expires_at: NOW + 900,
    },
  ],
  "policy-create-request": [{ consent: JWS }],
  "policy-create-response": [
    { worker: WORKER, seq: 7, version: 1_795_300_000, consent_sha256: HEX, publication: JWS },
  ],
  "worker-policy-response": [{ consent: JWS, publication: JWS }],
  "revocation-create-request": [{ document: JWS }],
  "revocation-create-response": [
    { worker: WORKER, kind: "revocation", identity: HEX, event_id: 12 },
  ],
  "owner-rotation-create-request": [{ document: JWS }],
  "owner-rotation-create-response": [
    { worker: WORKER, identity: HEX, from_owner: OWNER, to_owner: WORKER, event_id: 13 },
  ],
  "assignment-response": [{ assignment: JWS }],
  "heartbeat-request": [{ heartbeat: JWS }],
  "heartbeat-response": [
    {
      accepted: true,
      counter: 7,
      flags: ["counter_gap"],
      pending_commands: [UUID],
      server_time: NOW,
      policy_version: 42,
    },
  ],
  "command-create-request": [
    { worker: WORKER, action: "service.restart", args: { service: "bitcoind" }, ttl_s: 600 },
    { worker: WORKER, action: "mining.pause", args: {} },
  ],
  "command-create-response": [
    {
      cmd_id: UUID,
      worker: WORKER,
      seq: 3,
      consent_sha256: HEX,
      exp: NOW + 600,
      command: JWS,
      event_id: 5,
    },
  ],
  "worker-commands-query": [{ after: "12" }, {}],
  "worker-commands-response": [
    {
      events: [
        { id: 1, kind: "publication", jws: JWS, consent: JWS },
        { id: 2, kind: "command", jws: JWS },
      ],
      last_event_id: 2,
    },
  ],
  "command-result-request": [{ result: JWS }],
  "command-result-response": [{ cmd_id: UUID, status: "failed" }],
  "stream-client-message": [{ type: "hello", v: 1, after: 0 }],
  "stream-server-message": [
    { type: "ready", last_event_id: 9 },
    { type: "event", id: 9, kind: "publication", jws: JWS, consent: JWS },
    { type: "event", id: 10, kind: "decommission", jws: JWS },
    { type: "event", id: 11, kind: "owner_rotation", jws: JWS },
  ],
  "quarantine-request": [{ reason: "same key seen from two machine ids" }],
  "quarantine-response": [{ worker: WORKER, quarantined: true, at: NOW }],
  "quarantine-lift-response": [
    {
      worker: WORKER,
      quarantined: false,
      at: NOW,
      lifted: { reason: "attestation.clone", at: NOW - 3600 },
    },
  ],
  "emergency-stop-request": [
    { scope: "all", reason: "pool compromised" },
    { scope: "cohort", cohort: "hall-b", reason: "rack fire" },
  ],
  "emergency-stop-response": [
    {
      stop_id: UUID,
      status: "executed",
      scope: "cohort",
      cohort: "hall-b",
      approvals: [ID16, encodeBase64url(Buffer.alloc(16, 8))],
      required_approvals: 2,
      expires_at: NOW + 900,
      executed_at: NOW + 30,
      workers_stopped: 1000,
    },
  ],
  "emergency-stop-approve-request": [{}],
  "audit-events-query": [
    {
      after: "100",
      limit: "1000",
      type: "command.created",
      actor: `apikey:${ID16}`,
      object: `worker:${WORKER}`,
    },
  ],
  "audit-events-response": [
    {
      events: [
        {
          seq: 1,
          at: NOW,
          actor: `apikey:${ID16}`,
          type: "owner.created",
          object: `owner:${OWNER}`,
          data: {
            label: "farm A",
            keys: 1,
            active: true,
            note: null,
            flags: ["counter_gap"],
            nested: { depth: 2 },
          },
          prev_hash: "0".repeat(64),
          hash: HEX,
        },
      ],
      next_cursor: "1",
    },
  ],
};
