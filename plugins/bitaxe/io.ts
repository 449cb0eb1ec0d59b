/**
 * One ESP-Miner's HTTP API (port 80 on hardware), bounded like every driver request. There is
 * no login: ESP-Miner instead answers 401 "Unauthorized" to any client outside 10/8,
 * 172.16/12 and 192.168/16 (main/http_server/http_server.c `is_network_allowed`; loopback is
 * not among them), so a 401 here is that refusal, said as such.
 */
import { AgentdError, isAgentdError } from "../../lib/errors.ts";
import type { DriverContext, MinerEndpoint } from "../driver.ts";
import { httpSend } from "../http/client.ts";
import { type AxeInfo, parseInfo } from "./info.ts";

export class AxeIo {
  readonly #endpoint: MinerEndpoint;
  readonly #ctx: DriverContext;

  constructor(endpoint: MinerEndpoint, ctx: DriverContext) {
    this.#endpoint = endpoint;
    this.#ctx = ctx;
  }

  async info(): Promise<AxeInfo> {
    return parseInfo(await this.send("GET", "/api/system/info", null));
  }

  /** One request; its body when the status is 200. */
  async send(method: "GET" | "POST" | "PATCH", path: string, body: unknown): Promise<string> {
    const h = this.#endpoint.host;
    const url = `http://${h.includes(":") ? `[${h}]` : h}:${this.#endpoint.webPort ?? 80}${path}`;
    const l = this.#ctx.limits;
    let reply: Awaited<ReturnType<typeof httpSend>>;
    try {
      reply = await httpSend(method, url, body === null ? null : JSON.stringify(body), {
        timers: this.#ctx.timers,
        maxReplyBytes: l.maxReplyBytes,
        timeoutMs: l.requestTimeoutMs,
        // ESP-Miner has no login: nothing to answer a challenge with.
        credentials: null,
      });
    } catch (err) {
      if (isAgentdError(err) && err.code === "AGENTD_E_MINER_AUTH") {
        throw new AgentdError(
          "AGENTD_E_MINER_AUTH",
          `${path}: ESP-Miner refused this host (it answers only clients in 10/8, 172.16/12, 192.168/16)`,
          { context: { path } },
        );
      }
      throw err;
    }
    if (reply.status !== 200) {
      throw new AgentdError("AGENTD_E_MINER_REFUSED", `${method} ${path}: HTTP ${reply.status}`, {
        context: { path, status: reply.status },
      });
    }
    return reply.body;
  }
}
