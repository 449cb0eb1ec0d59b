/**
 * Braiins OS's gRPC API (port 50051; lib/braiins/bos.proto) as the driver uses it: a login
 * token, kept and refreshed, sent in the `authorization` metadata of every call.
 *
 * - Login (AuthenticationService.Login) answers the token in its `authorization` response
 *   header — where pyasic reads it (pyasic/web/braiins_os/boser.py `_get_auth`) — and in
 *   `LoginResponse.token`; the header wins, the field is the fallback.
 * - The token lapses after `timeout_s` without use (refreshed by each request, per the
 *   proto's comment). It is renewed before it would lapse, and a call refused UNAUTHENTICATED
 *   logs in again once and is retried once (as pyasic's `send_command` does).
 * - The token and the password are never logged and never put in an error: errors name the
 *   RPC and the gRPC status code only (a status message is the miner's text and could echo
 *   anything).
 *
 * Each call opens its own channel and closes it after the reply: a driver has no close(), and
 * an idle HTTP/2 connection per miner would outlive it. A call is bounded by the context's
 * request timeout (on the injected timers, cancelling the call) and its reply by
 * `maxReplyBytes`.
 */
import {
  type Client,
  credentials as grpcCredentials,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import { type BosService, bosServices } from "../../lib/braiins/bos-proto.ts";
import { AgentdError, type ErrorCode } from "../../lib/errors.ts";
import { credentialsFor } from "../credentials.ts";
import type { DriverContext, MinerEndpoint } from "../driver.ts";

export const BOS_GRPC_PORT = 50051;

type Obj = Record<string, unknown>;

interface Reply {
  readonly body: Obj;
  readonly headers: Metadata;
}

/** Renew this long before the miner would let the token lapse. */
const RENEW_MARGIN_MS = 5_000;

export class BosGrpc {
  readonly #endpoint: MinerEndpoint;
  readonly #ctx: DriverContext;
  #token: string | null = null;
  /** When the token lapses on the miner, on the injected clock (it slides with each call). */
  #tokenUntil = 0;
  /** The token's validity as the last login gave it, less a margin. */
  #ttlMs = 0;
  #logins = 0;

  constructor(endpoint: MinerEndpoint, ctx: DriverContext) {
    this.#endpoint = endpoint;
    this.#ctx = ctx;
  }

  /** How many logins this client made (tests: a refresh is a second login). */
  get logins(): number {
    return this.#logins;
  }

  /** One authenticated call; logs in first when it has no live token. */
  async call(service: BosService, method: string, request: Obj): Promise<Obj> {
    const fresh = this.#token === null || this.#ctx.clock.now() >= this.#tokenUntil;
    if (fresh) await this.#login();
    try {
      return await this.#authed(service, method, request);
    } catch (err) {
      // The miner forgot the token (it lapsed, or bosminer restarted): once more, logged in.
      if (!(err instanceof Unauthenticated) || fresh) throw rethrow(err, method);
      await this.#login();
      try {
        return await this.#authed(service, method, request);
      } catch (again) {
        throw rethrow(again, method);
      }
    }
  }

  async #authed(service: BosService, method: string, request: Obj): Promise<Obj> {
    const md = new Metadata();
    md.set("authorization", this.#token ?? "");
    const sent = this.#ctx.clock.now();
    const reply = await this.#unary(service, method, request, md);
    this.#tokenUntil = Math.max(this.#tokenUntil, sent + this.#ttlMs);
    return reply.body;
  }

  async #login(): Promise<void> {
    this.#token = null;
    const creds = credentialsFor("braiins-os", this.#ctx.credentials);
    const sent = this.#ctx.clock.now();
    let reply: Reply;
    try {
      reply = await this.#unary(
        "AuthenticationService",
        "Login",
        { username: creds.username, password: creds.password },
        new Metadata(),
      );
    } catch (err) {
      if (err instanceof Unauthenticated || isStatus(err, status.PERMISSION_DENIED)) {
        throw new AgentdError(
          "AGENTD_E_MINER_AUTH",
          `${this.#endpoint.host}: Braiins OS gRPC login refused for user ${JSON.stringify(creds.username)}`,
          { context: { host: this.#endpoint.host, rpc: "Login" } },
        );
      }
      throw rethrow(err, "Login");
    }
    this.#logins++;
    const header = reply.headers.get("authorization")[0];
    const token = typeof header === "string" && header !== "" ? header : reply.body.token;
    if (typeof token !== "string" || token === "") {
      throw new AgentdError("AGENTD_E_MINER_REPLY_INVALID", "Login: no token in the reply", {
        context: { rpc: "Login" },
      });
    }
    const timeoutS = typeof reply.body.timeout_s === "number" ? reply.body.timeout_s : 0;
    // No timeout given: assume the hour pyasic assumes (3540 s before it logs in again).
    this.#ttlMs = (timeoutS > 0 ? timeoutS * 1000 : 3_600_000) - RENEW_MARGIN_MS;
    this.#token = token;
    this.#tokenUntil = sent + this.#ttlMs;
  }

  #unary(service: BosService, method: string, request: Obj, md: Metadata): Promise<Reply> {
    const Ctor = bosServices()[service];
    const host = this.#endpoint.host.includes(":")
      ? `[${this.#endpoint.host}]`
      : this.#endpoint.host;
    const limits = this.#ctx.limits;
    const client: Client = new Ctor(
      `${host}:${this.#endpoint.grpcPort ?? BOS_GRPC_PORT}`,
      grpcCredentials.createInsecure(),
      {
        "grpc.max_receive_message_length": limits.maxReplyBytes,
        // One request per channel: no retries behind our back, no reconnect loop after it.
        "grpc.enable_retries": 0,
      },
    );
    const fn = (client as unknown as Record<string, unknown>)[method];
    if (typeof fn !== "function") {
      client.close();
      return Promise.reject(new Error(`bos.proto has no ${service}.${method}`));
    }
    return new Promise<Reply>((resolve, reject) => {
      let headers = new Metadata();
      let timedOut = false;
      const call = (
        fn as (
          req: Obj,
          md: Metadata,
          cb: (err: ServiceError | null, body?: Obj) => void,
        ) => { cancel(): void; on(e: "metadata", l: (m: Metadata) => void): void }
      ).call(client, request, md, (err, body) => {
        this.#ctx.timers.clearTimeout(timer);
        client.close();
        if (timedOut) reject(fail("AGENTD_E_MINER_TIMEOUT", method, "no reply in time"));
        else if (err) reject(err.code === status.UNAUTHENTICATED ? new Unauthenticated() : err);
        else resolve({ body: body ?? {}, headers });
      });
      call.on("metadata", (m) => {
        headers = m;
      });
      const timer = this.#ctx.timers.setTimeout(() => {
        timedOut = true;
        call.cancel();
      }, limits.requestTimeoutMs);
    });
  }
}

/** UNAUTHENTICATED from the miner: the token is not (or no longer) good. */
class Unauthenticated extends Error {
  constructor() {
    super("UNAUTHENTICATED");
  }
}

function isStatus(err: unknown, code: status): boolean {
  return typeof err === "object" && err !== null && (err as ServiceError).code === code;
}

/** A gRPC failure as the AGENTD_E_MINER_* code it is; only the status code is kept. */
function rethrow(err: unknown, method: string): Error {
  if (err instanceof AgentdError) return err;
  if (err instanceof Unauthenticated) {
    return fail("AGENTD_E_MINER_AUTH", method, "token refused after a fresh login");
  }
  const code = (err as Partial<ServiceError>).code;
  if (typeof code !== "number") return err instanceof Error ? err : new Error(String(err));
  const name = status[code] ?? String(code);
  switch (code) {
    case status.UNAVAILABLE:
      return fail("AGENTD_E_MINER_UNREACHABLE", method, name);
    case status.DEADLINE_EXCEEDED:
      return fail("AGENTD_E_MINER_TIMEOUT", method, name);
    case status.RESOURCE_EXHAUSTED:
      return fail("AGENTD_E_MINER_REPLY_TOO_LARGE", method, name);
    case status.UNIMPLEMENTED:
      return fail("AGENTD_E_MINER_UNSUPPORTED", method, name);
    case status.PERMISSION_DENIED:
      return fail("AGENTD_E_MINER_ACCESS_DENIED", method, name);
    case status.INTERNAL:
      // grpc-js says INTERNAL for a reply it could not decode.
      return fail("AGENTD_E_MINER_REPLY_INVALID", method, name);
    default:
      return fail("AGENTD_E_MINER_REFUSED", method, name);
  }
}

function fail(code: ErrorCode, method: string, why: string): AgentdError {
  return new AgentdError(code, `gRPC ${method}: ${why}`, {
    context: { rpc: method, reason: why },
  });
}
