/**
 * The stock Antminer S19 (bmminer 1.x). Reads through 4028 — `stats` with `new_api` (per-board
 * rates, temperature arrays; the legacy `stats` when a build does not know it), `summary`,
 * `pools` — and the web UI (get_system_info: MAC and serial; get_miner_conf: the work mode).
 * Every write is the web UI's set_miner_conf with HTTP digest auth: always three pool slots,
 * `miner-mode` 0 normal, 1 sleep, 3 low power. The firmware answers success at once, applies
 * ~20 s later (bmminer restarts) or not at all, so each write is read back — get_miner_conf
 * and what 4028 reports — until the deadline.
 */
import { isAgentdError } from "../../lib/errors.ts";
import { section } from "../cgminer/client.ts";
import type {
  ActionName,
  Capabilities,
  Confirmed,
  DriverContext,
  Identity,
  MinerDriver,
  MinerEndpoint,
  MinerMode,
  PoolTarget,
  PowerMode,
  Reading,
  Support,
} from "../driver.ts";
import { confirm } from "../read-back.ts";
import { checkSlots, confirmOptions, poolsMatch, rebootCgi, unsupported } from "./common.ts";
import { AntminerIo } from "./io.ts";
import {
  type HardwareFacts,
  parseLegacyStats,
  parsePools,
  parseSummary,
  parseVersionRow,
} from "./parse-legacy.ts";
import { parseNewApiStats } from "./parse-new-api.ts";
import {
  buildConf,
  checkConfReply,
  confMode,
  confPools,
  MODE_NUMBER,
  parseSystemInfo,
} from "./web-conf.ts";

export class AntminerS19Driver implements MinerDriver {
  readonly family = "antminer-s19" as const;
  readonly #io: AntminerIo;
  readonly #ctx: DriverContext;

  constructor(endpoint: MinerEndpoint, ctx: DriverContext) {
    this.#ctx = ctx;
    this.#io = new AntminerIo(this.family, endpoint, ctx);
  }

  async detect(): Promise<Identity> {
    const version = parseVersionRow(
      section(await this.#io.rpc("version"), "VERSION")[0],
      "version",
    );
    let web: Support = "yes";
    let info = {
      mac: null as string | null,
      serial: null as string | null,
      fs: null as string | null,
    };
    try {
      const s = parseSystemInfo(await this.#io.cgi("get_system_info"));
      info = { mac: s.mac, serial: s.serial, fs: s.filesystemVersion };
    } catch (err) {
      // A changed password: the machine is there, its controls are not ours.
      if (!isAgentdError(err) || err.code !== "AGENTD_E_MINER_AUTH") throw err;
      web = "not_owned";
    }
    const capabilities: Capabilities = {
      pools: web,
      sleep: web,
      powerModes: web === "yes" ? ["normal", "low"] : [],
      powerTarget: null,
      reboot: web,
      power: "none",
    };
    return {
      family: this.family,
      model: version.model,
      firmware: info.fs === null ? version.firmware : `${version.firmware}, filesystem ${info.fs}`,
      mac: info.mac,
      serial: info.serial,
      capabilities,
      // new_api stats, get_miner_conf and set_miner_conf have no public capture (README).
      verifiedOnHardware: false,
    };
  }

  async read(): Promise<Reading> {
    const summary = parseSummary(await this.#io.rpc("summary"));
    const hw = await this.#hardware();
    const pools = parsePools(await this.#io.rpc("pools"));
    let mode: MinerMode = "unknown";
    try {
      mode = confMode(await this.#io.cgi("get_miner_conf"));
    } catch (err) {
      // The reading stands without the mode: 4028 still answered.
      if (!isAgentdError(err)) throw err;
    }
    return {
      at: this.#ctx.clock.now(),
      hashrateGhs: summary.hashrateGhs ?? ("hashrateGhs" in hw ? hw.hashrateGhs : null),
      boards: hw.boards,
      fans: hw.fans,
      power: null,
      mode,
      pools,
      uptimeS: summary.uptimeS ?? hw.uptimeS,
      errors: hw.errors,
    };
  }

  /** new_api stats when the build has it, else the legacy stats every bmminer prints. */
  async #hardware(): Promise<HardwareFacts & { hashrateGhs?: number | null }> {
    try {
      const facts = parseNewApiStats(await this.#io.rpc("stats", null, true));
      if (facts) return facts;
    } catch (err) {
      const older =
        isAgentdError(err) &&
        (err.code === "AGENTD_E_MINER_UNSUPPORTED" ||
          err.code === "AGENTD_E_MINER_REPLY_INVALID" ||
          err.code === "AGENTD_E_MINER_REFUSED");
      if (!older) throw err;
    }
    return parseLegacyStats(await this.#io.rpc("stats"));
  }

  async setPools(slots: readonly PoolTarget[]): Promise<Confirmed> {
    checkSlots(slots);
    await this.#write({ pools: slots });
    return confirm(
      "setPools",
      async () => ({
        conf: confPools(await this.#io.cgi("get_miner_conf")),
        live: parsePools(await this.#io.rpc("pools")),
      }),
      // Saved and running: the configuration and what bmminer mines with.
      (r) => poolsMatch(r.conf, slots) && poolsMatch(r.live, slots),
      confirmOptions(this.#ctx),
    );
  }

  /** Sleep holds once the configuration says so and the hash boards have stopped. */
  sleep(): Promise<Confirmed> {
    return this.#mode("sleep", "sleep", async () => {
      const mode = confMode(await this.#io.cgi("get_miner_conf"));
      const hashrate = parseSummary(await this.#io.rpc("summary")).hashrateGhs;
      return mode === "sleep" && hashrate === 0;
    });
  }

  wake(): Promise<Confirmed> {
    return this.#mode("wake", "normal");
  }

  setPowerMode(mode: PowerMode): Promise<Confirmed> {
    if (mode === "high") return unsupported("setPowerMode", "the stock S19 offers normal and low");
    return this.#mode("setPowerMode", mode);
  }

  setPowerTarget(_watts: number): Promise<Confirmed> {
    return unsupported("setPowerTarget", "stock firmware takes no power target (use a mode)");
  }

  async reboot(): Promise<Confirmed> {
    const before = parseSummary(await this.#io.rpc("summary")).uptimeS ?? 0;
    await rebootCgi(this.#io);
    return confirm(
      "reboot",
      async () => parseSummary(await this.#io.rpc("summary")).uptimeS,
      (uptime) => uptime !== null && uptime < before,
      confirmOptions(this.#ctx),
    );
  }

  async #mode(
    action: ActionName,
    mode: "normal" | "sleep" | "low",
    holds?: () => Promise<boolean>,
  ): Promise<Confirmed> {
    await this.#write({ mode: MODE_NUMBER[mode] });
    const check = holds ?? (async () => confMode(await this.#io.cgi("get_miner_conf")) === mode);
    return confirm(action, check, (ok) => ok, confirmOptions(this.#ctx));
  }

  /** get_miner_conf, the change on top, set_miner_conf; the firmware's own refusal rejects. */
  async #write(change: { pools?: readonly PoolTarget[]; mode?: number }): Promise<void> {
    const current = await this.#io.cgi("get_miner_conf");
    checkConfReply(await this.#io.cgi("set_miner_conf", buildConf(current, change)));
  }
}
