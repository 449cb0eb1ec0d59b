/**
 * One stock Antminer's two management surfaces, as its driver reaches them: the cgminer API
 * on 4028 (plugins/cgminer/client.ts) and the web UI's CGI behind HTTP digest auth
 * (plugins/http/client.ts). Bounds and timers come from the driver's context; credentials are
 * handed to the HTTP client only and never appear in an error (the client's messages name the
 * host and the path, nothing else).
 */
import { AgentdError } from "../../lib/errors.ts";
import { type CgminerReply, cgminerRequest, isObject } from "../cgminer/client.ts";
import { credentialsFor } from "../credentials.ts";
import type { DriverContext, Family, MinerEndpoint } from "../driver.ts";
import { httpSend } from "../http/client.ts";

export class AntminerIo {
  readonly #endpoint: MinerEndpoint;
  readonly #ctx: DriverContext;
  readonly #family: Family;

  constructor(family: Family, endpoint: MinerEndpoint, ctx: DriverContext) {
    this.#family = family;
    this.#endpoint = endpoint;
    this.#ctx = ctx;
  }

  get ctx(): DriverContext {
    return this.#ctx;
  }

  /** One 4028 request; `newApi` adds the S19's `"new_api": true`. */
  rpc(command: string, parameter: string | null = null, newApi = false): Promise<CgminerReply> {
    const l = this.#ctx.limits;
    return cgminerRequest(
      { host: this.#endpoint.host, port: this.#endpoint.apiPort ?? 4028 },
      command,
      parameter,
      {
        timers: this.#ctx.timers,
        maxReplyBytes: l.maxReplyBytes,
        timeoutMs: l.requestTimeoutMs,
        ...(newApi ? { extra: { new_api: true } } : {}),
      },
    );
  }

  /** One CGI request: its JSON object, or AGENTD_E_MINER_* (401 after the digest: _AUTH). */
  async cgi(
    script: string,
    body: Readonly<Record<string, unknown>> | null = null,
  ): Promise<Record<string, unknown>> {
    const l = this.#ctx.limits;
    const host = this.#endpoint.host.includes(":")
      ? `[${this.#endpoint.host}]`
      : this.#endpoint.host;
    const url = `http://${host}:${this.#endpoint.webPort ?? 80}/cgi-bin/${script}.cgi`;
    const reply = await httpSend(
      body === null ? "GET" : "POST",
      url,
      body === null ? null : JSON.stringify(body),
      {
        timers: this.#ctx.timers,
        maxReplyBytes: l.maxReplyBytes,
        timeoutMs: l.requestTimeoutMs,
        credentials: credentialsFor(this.#family, this.#ctx.credentials),
      },
    );
    if (reply.status !== 200) {
      throw new AgentdError("AGENTD_E_MINER_REFUSED", `${script}.cgi: HTTP ${reply.status}`, {
        context: { script, status: reply.status },
      });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(reply.body);
    } catch {
      // The body is not quoted: a configuration reply holds pool passwords.
      throw new AgentdError("AGENTD_E_MINER_REPLY_INVALID", `${script}.cgi: not JSON`, {
        context: { script },
      });
    }
    if (!isObject(parsed)) {
      throw new AgentdError("AGENTD_E_MINER_REPLY_INVALID", `${script}.cgi: not a JSON object`, {
        context: { script },
      });
    }
    return parsed;
  }
}
