/**
 * One VNish miner's two surfaces: the cgminer-style 4028 API (reads) and its REST API on the
 * web port (`/api/v1/…`; asic-rs `meta/vnish/v1.3.4/api-doc (JSON)`, pyasic `pyasic/web/vnish.py`).
 * Writes carry a bearer token from `POST /api/v1/unlock {"pw": password}` (200 `{token}`; 403
 * a wrong password). The token is held by this object only, sent only in the Authorization
 * header, and never put in an error or a log; a 401 means it expired or the miner restarted:
 * the driver unlocks again once and repeats the request (pyasic and asic-rs do the same).
 */
import { AgentdError, isAgentdError } from "../../lib/errors.ts";
import { type CgminerReply, cgminerRequest, isObject } from "../cgminer/client.ts";
import { credentialsFor } from "../credentials.ts";
import type { DriverContext, MinerEndpoint } from "../driver.ts";
import { httpSend } from "../http/client.ts";

export class VnishIo {
  readonly #endpoint: MinerEndpoint;
  readonly #ctx: DriverContext;
  #token: string | null = null;

  constructor(endpoint: MinerEndpoint, ctx: DriverContext) {
    this.#endpoint = endpoint;
    this.#ctx = ctx;
  }

  rpc(command: string): Promise<CgminerReply> {
    const l = this.#ctx.limits;
    return cgminerRequest(
      { host: this.#endpoint.host, port: this.#endpoint.apiPort ?? 4028 },
      command,
      null,
      { timers: this.#ctx.timers, maxReplyBytes: l.maxReplyBytes, timeoutMs: l.requestTimeoutMs },
    );
  }

  /** A read that needs no token (summary, info). */
  get(path: string): Promise<Record<string, unknown>> {
    return this.#send("GET", path, null, null);
  }

  /** A request with the bearer token; unlocks first, and again once on a 401. */
  async authed(
    method: "GET" | "POST",
    path: string,
    body: Readonly<Record<string, unknown>> | null = null,
  ): Promise<Record<string, unknown>> {
    const token = this.#token ?? (await this.#unlock());
    try {
      return await this.#send(method, path, body, token);
    } catch (err) {
      if (!isAgentdError(err) || err.code !== "AGENTD_E_MINER_AUTH") throw err;
      this.#token = null;
      return await this.#send(method, path, body, await this.#unlock());
    }
  }

  async #unlock(): Promise<string> {
    const { password } = credentialsFor("vnish", this.#ctx.credentials);
    const reply = await this.#raw("POST", "unlock", JSON.stringify({ pw: password }), null);
    if (reply.status === 403) {
      throw new AgentdError("AGENTD_E_MINER_AUTH", `${this.#host()}: unlock: password refused`, {
        context: { path: "/api/v1/unlock", status: 403 },
      });
    }
    const obj = this.#json("unlock", reply);
    if (typeof obj.token !== "string" || obj.token === "") {
      throw new AgentdError("AGENTD_E_MINER_REPLY_INVALID", "unlock: no token", {
        context: { path: "/api/v1/unlock" },
      });
    }
    this.#token = obj.token;
    return obj.token;
  }

  async #send(
    method: "GET" | "POST",
    path: string,
    body: Readonly<Record<string, unknown>> | null,
    token: string | null,
  ): Promise<Record<string, unknown>> {
    // pyasic posts `{}` where a command has no body; the api-doc needs none.
    const text = method === "POST" ? JSON.stringify(body ?? {}) : null;
    const reply = await this.#raw(method, path, text, token);
    if (reply.status === 401) {
      throw new AgentdError("AGENTD_E_MINER_AUTH", `${this.#host()}: ${path}: token refused`, {
        context: { path: `/api/v1/${path}`, status: 401 },
      });
    }
    return this.#json(path, reply);
  }

  #raw(method: "GET" | "POST", path: string, body: string | null, token: string | null) {
    const l = this.#ctx.limits;
    return httpSend(method, `http://${this.#host()}/api/v1/${path}`, body, {
      timers: this.#ctx.timers,
      maxReplyBytes: l.maxReplyBytes,
      timeoutMs: l.requestTimeoutMs,
      ...(token === null ? {} : { headers: { authorization: `Bearer ${token}` } }),
    });
  }

  #json(path: string, reply: { status: number; body: string }): Record<string, unknown> {
    if (reply.status !== 200) {
      throw new AgentdError("AGENTD_E_MINER_REFUSED", `/api/v1/${path}: HTTP ${reply.status}`, {
        context: { path: `/api/v1/${path}`, status: reply.status },
      });
    }
    // Pause and resume answer 200 with an empty body (api-doc: no content).
    if (reply.body.trim() === "") return {};
    let parsed: unknown;
    try {
      parsed = JSON.parse(reply.body);
    } catch {
      // Not quoted: a settings reply holds pool passwords.
      throw new AgentdError("AGENTD_E_MINER_REPLY_INVALID", `/api/v1/${path}: not JSON`, {
        context: { path: `/api/v1/${path}` },
      });
    }
    if (!isObject(parsed)) {
      throw new AgentdError("AGENTD_E_MINER_REPLY_INVALID", `/api/v1/${path}: not an object`, {
        context: { path: `/api/v1/${path}` },
      });
    }
    return parsed;
  }

  #host(): string {
    const h = this.#endpoint.host.includes(":") ? `[${this.#endpoint.host}]` : this.#endpoint.host;
    return `${h}:${this.#endpoint.webPort ?? 80}`;
  }
}
