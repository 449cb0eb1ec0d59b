/**
 * The stock Antminer S9 (bmminer 2.x): everything through the cgminer API on 4028 — reads
 * (`summary`, legacy `stats` with chains at 6–8, `pools`), pool slots through
 * `addpool`/`switchpool`/`removepool` (write access needed: code 45 otherwise, reported as
 * `pools: "not_owned"`), and the web UI only for its MAC (get_system_info) and a reboot. The
 * S9 has no sleep and no power modes.
 */
import { isAgentdError } from "../../lib/errors.ts";
import { sleep as wait } from "../../lib/timers.ts";
import { cgminerParams, section } from "../cgminer/client.ts";
import type {
  Capabilities,
  Confirmed,
  DriverContext,
  Identity,
  MinerDriver,
  MinerEndpoint,
  PoolTarget,
  PowerMode,
  Reading,
  Support,
} from "../driver.ts";
import { confirm } from "../read-back.ts";
import { checkSlots, confirmOptions, poolsMatch, rebootCgi, unsupported } from "./common.ts";
import { AntminerIo } from "./io.ts";
import { parseLegacyStats, parsePools, parseSummary, parseVersionRow } from "./parse-legacy.ts";
import { parseSystemInfo } from "./web-conf.ts";

export class AntminerS9Driver implements MinerDriver {
  readonly family = "antminer-s9" as const;
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
    const pools = await this.#writeAccess();
    let mac: string | null = null;
    let reboot: Support = "yes";
    try {
      mac = parseSystemInfo(await this.#io.cgi("get_system_info")).mac;
    } catch (err) {
      if (!isAgentdError(err)) throw err;
      // The MAC is a bonus on the S9 (4028 does not say it); without the web UI, no reboot.
      reboot = err.code === "AGENTD_E_MINER_AUTH" ? "not_owned" : "no";
    }
    const capabilities: Capabilities = {
      pools,
      sleep: "no",
      powerModes: [],
      powerTarget: null,
      reboot,
      power: "none",
    };
    return {
      family: this.family,
      model: version.model,
      firmware: version.firmware,
      mac,
      serial: null,
      capabilities,
      // No S9 reply captured from hardware is public (plugins/README.md).
      verifiedOnHardware: false,
    };
  }

  /** cgminer's `privileged`: 46 with write access, 45 without (then the slots are not ours). */
  async #writeAccess(): Promise<Support> {
    try {
      await this.#io.rpc("privileged");
      return "yes";
    } catch (err) {
      if (isAgentdError(err) && err.code === "AGENTD_E_MINER_ACCESS_DENIED") return "not_owned";
      // A build without the command: a write will tell.
      if (isAgentdError(err) && err.code === "AGENTD_E_MINER_UNSUPPORTED") return "yes";
      throw err;
    }
  }

  async read(): Promise<Reading> {
    const summary = parseSummary(await this.#io.rpc("summary"));
    const hw = parseLegacyStats(await this.#io.rpc("stats"));
    const pools = parsePools(await this.#io.rpc("pools"));
    return {
      at: this.#ctx.clock.now(),
      hashrateGhs: summary.hashrateGhs,
      boards: hw.boards,
      fans: hw.fans,
      power: null,
      // The S9 has one mode.
      mode: "normal",
      pools,
      uptimeS: summary.uptimeS ?? hw.uptimeS,
      errors: hw.errors,
    };
  }

  /**
   * Adds the targets as new slots, switches to the first of them (cgminer also makes it the
   * highest priority), then removes the old slots, highest index first so the others keep
   * their numbers; read back through `pools`.
   */
  async setPools(slots: readonly PoolTarget[]): Promise<Confirmed> {
    checkSlots(slots);
    const before = parsePools(await this.#io.rpc("pools"));
    for (const s of slots)
      await this.#io.rpc("addpool", cgminerParams([s.url, s.user, s.password]));
    const firstNew = before.length;
    // Firmware can acknowledge an addpool it did not do: switch only to slots that exist.
    await confirm(
      "setPools",
      async () => parsePools(await this.#io.rpc("pools")),
      (pools) => poolsMatch(pools.slice(firstNew), slots),
      confirmOptions(this.#ctx),
    );
    await this.#io.rpc("switchpool", String(firstNew));
    const old = before.map((p) => p.index).sort((a, b) => b - a);
    for (const index of old) await this.#removeWhenIdle(index);
    return confirm(
      "setPools",
      async () => parsePools(await this.#io.rpc("pools")),
      (pools) => poolsMatch(pools, slots),
      confirmOptions(this.#ctx),
    );
  }

  /**
   * removepool refuses the slot being mined (67) until the switch has taken effect: retried
   * until the read-back deadline; what still stands then fails the read-back.
   */
  async #removeWhenIdle(index: number): Promise<void> {
    const o = confirmOptions(this.#ctx);
    const start = o.clock.now();
    for (;;) {
      try {
        await this.#io.rpc("removepool", String(index));
        return;
      } catch (err) {
        const active = isAgentdError(err) && err.code === "AGENTD_E_MINER_REFUSED";
        if (!active || o.clock.now() - start >= o.deadlineMs) {
          if (active) return;
          throw err;
        }
      }
      await wait(o.timers, o.intervalMs);
    }
  }

  sleep(): Promise<Confirmed> {
    return unsupported("sleep", "the stock S9 has no sleep mode");
  }

  wake(): Promise<Confirmed> {
    return unsupported("wake", "the stock S9 has no sleep mode");
  }

  setPowerMode(_mode: PowerMode): Promise<Confirmed> {
    return unsupported("setPowerMode", "the stock S9 has no power modes");
  }

  setPowerTarget(_watts: number): Promise<Confirmed> {
    return unsupported("setPowerTarget", "the stock S9 takes no power target");
  }

  /** reboot.cgi, confirmed when bmminer's uptime has started again from zero. */
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
}
