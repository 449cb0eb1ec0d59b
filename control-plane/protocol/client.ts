/**
 * The protocol client: what an agent (and the `agentd cp` CLI) uses to talk to a control
 * plane over HTTPS, TLS 1.3 only, trusting exactly the control plane's CA. One module per
 * concern, gathered here:
 *
 * - client-http.ts — one exchange: pinned TLS, deadline, JSON bodies checked against the
 *   schemas roles.ts names, server error codes kept (AGENTD_E_HTTP for the rest);
 * - client-bootstrap.ts, client-enroll.ts — enrollment from a token alone: the CA and root
 *   pins are checked before the token's secret leaves the machine;
 * - client-machine.ts — the machine's calls, each with the access token and a fresh proof;
 * - client-stream.ts — the push stream, resumable from the last event processed;
 * - client-api.ts — the API-key calls of admins, operators, owners and auditors.
 *
 * It imports only lib/, policy-guard/ and control-plane/protocol/ (ARCHITECTURE.md): the
 * agent may use it without pulling in the server.
 */

export { type ApiClient, type ApiClientOptions, createApiClient } from "./client-api.ts";
export { type BootstrapOptions, fetchPinnedCa } from "./client-bootstrap.ts";
export { type EnrollInput, type Enrollment, enroll } from "./client-enroll.ts";
export {
  type CallOptions,
  type CallReply,
  call,
  createTransport,
  DEFAULT_TIMEOUT_MS,
  errorFromReply,
  originOf,
  type Transport,
  type TransportOptions,
} from "./client-http.ts";
export {
  createMachineClient,
  type MachineClient,
  type MachineClientOptions,
  type PolicyAnswer,
} from "./client-machine.ts";
export { openStream, type StreamHandle, type StreamOptions } from "./client-stream.ts";
