/**
 * One LuxOS miner's 4028 API (LUXminer: cgminer-style, plugins/cgminer/client.ts), and its
 * write sessions. LuxOS lets one actor change configuration at a time: `logon` creates the
 * session only if none is active (docs.luxor.tech "Session management"), every privileged
 * command takes the session id as its first parameter, and the session expires after a minute
 * without use. So a write holds the session only while it writes — logon, the commands,
 * logoff — and reads back afterwards without it, leaving the miner free for its owner's tools.
 *
 * Someone else's session is never taken over (pyasic and asic-rs reuse the id `session`
 * prints, which would write under another actor's lock): the driver waits for it to end, up to
 * the read-back deadline, then reports AGENTD_E_MINER_REFUSED with reason `session_busy`.
 *
 * The session id is a secret: it is sent only as a request parameter, and any error that could
 * quote it (the firmware's own message) has it replaced before it leaves this file.
 */
import { AgentdError, isAgentdError } from "../../lib/errors.ts";
import { sleep } from "../../lib/timers.ts";
import { type CgminerReply, cgminerParams, cgminerRequest, section } from "../cgminer/client.ts";
import type { DriverContext, MinerEndpoint } from "../driver.ts";

export class LuxosIo {
  readonly #endpoint: MinerEndpoint;
  readonly #ctx: DriverContext;

  constructor(endpoint: MinerEndpoint, ctx: DriverContext) {
    this.#endpoint = endpoint;
    this.#ctx = ctx;
  }

  /** One request without a session (every read; pools, as pyasic and asic-rs send them). */
  rpc(command: string, parameter: string | null = null): Promise<CgminerReply> {
    const l = this.#ctx.limits;
    return cgminerRequest(
      { host: this.#endpoint.host, port: this.#endpoint.apiPort ?? 4028 },
      command,
      parameter,
      { timers: this.#ctx.timers, maxReplyBytes: l.maxReplyBytes, timeoutMs: l.requestTimeoutMs },
    );
  }

  /**
   * Runs `writes` inside a session of our own, and logs off afterwards whatever happened (a
   * session left behind would lock the owner out for a minute).
   */
  async withSession<T>(writes: (send: SessionSend) => Promise<T>): Promise<T> {
    let sid = await this.#logon();
    const once = async (command: string, params: readonly string[]) => {
      try {
        return await this.rpc(command, cgminerParams([sid, ...params]));
      } catch (err) {
        throw scrub(err, sid);
      }
    };
    const send: SessionSend = async (command, params = []) => {
      try {
        return await once(command, params);
      } catch (err) {
        // Expired (a minute unused, or a reboot ended it): log on again, once.
        if (!sessionRefused(err)) throw err;
        sid = await this.#logon();
        return await once(command, params);
      }
    };
    try {
      return await writes(send);
    } finally {
      try {
        await this.rpc("logoff", sid);
      } catch {
        // Expires by itself within a minute; the write's own outcome is what matters.
      }
    }
  }

  async #logon(): Promise<string> {
    const o = this.#ctx.limits;
    const start = this.#ctx.clock.now();
    for (;;) {
      try {
        const row = section(await this.rpc("logon"), "SESSION")[0];
        const sid = row?.SessionID;
        if (typeof sid === "string" && sid !== "") return sid;
        throw new AgentdError("AGENTD_E_MINER_REPLY_INVALID", "logon: no SessionID", {
          context: { command: "logon" },
        });
      } catch (err) {
        // An error status from logon: another actor holds the one session. Wait for it.
        const busy = isAgentdError(err) && err.code === "AGENTD_E_MINER_REFUSED";
        if (!busy) throw err;
        if (this.#ctx.clock.now() - start >= o.confirmDeadlineMs) {
          throw new AgentdError(
            "AGENTD_E_MINER_REFUSED",
            `logon: another session is active on the miner (LuxOS allows one); still held after ${o.confirmDeadlineMs} ms`,
            { context: { command: "logon", reason: "session_busy" } },
          );
        }
      }
      await sleep(this.#ctx.timers, o.confirmIntervalMs);
    }
  }
}

/** A privileged command: the session id goes first, then `params` (escaped). */
export type SessionSend = (command: string, params?: readonly string[]) => Promise<CgminerReply>;

/** The firmware refused the session id (its message names the session). */
function sessionRefused(err: unknown): boolean {
  if (!isAgentdError(err) || err.code !== "AGENTD_E_MINER_REFUSED") return false;
  const msg = (err.context as Record<string, unknown>).firmware_message;
  return typeof msg === "string" && /session/i.test(msg);
}

/** The same error with the session id replaced wherever the firmware's message quoted it. */
function scrub(err: unknown, sid: string): unknown {
  if (!isAgentdError(err)) return err;
  const clean = (v: unknown): unknown =>
    typeof v === "string" ? v.replaceAll(sid, "REDACTED") : v;
  const context = Object.fromEntries(
    Object.entries(err.context as Record<string, unknown>).map(([k, v]) => [k, clean(v)]),
  );
  // biome-ignore lint/suspicious/noExplicitAny: same code, same context shape, cleaned values
  return new AgentdError(err.code as any, String(clean(err.message)), { context: context as any });
}
