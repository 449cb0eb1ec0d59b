/**
 * LuxOS (Luxor's LUXminer on Antminers): everything through its 4028 API. Reads are the
 * cgminer basics plus `config` (MAC, serial, curtail state, profile), `power` and `psuget`;
 * writes that change the miner's state (`curtail`, `atmset`, `profileset`, `rebootdevice`)
 * run inside a session of our own (io.ts); pools go through `addpool`/`switchpool`/
 * `removepool`, which take no session. Every write is read back.
 */
import { isAgentdError } from "../../lib/errors.ts";
import { sleep as wait } from "../../lib/timers.ts";
import { checkSlots, confirmOptions, poolsMatch, unsupported } from "../antminer/common.ts";
import { parseLegacyStats, parsePools, parseSummary } from "../antminer/parse-legacy.ts";
import { cgminerParams } from "../cgminer/client.ts";
import type {
  Confirmed,
  DriverContext,
  Identity,
  MinerDriver,
  MinerEndpoint,
  PoolTarget,
  PowerMode,
  Reading,
} from "../driver.ts";
import { confirm, rebootConfirmed } from "../read-back.ts";
import { LuxosIo } from "./io.ts";
import {
  type LuxProfile,
  parseConfig,
  parsePower,
  parseProfiles,
  parsePsuInputWatts,
  parseVersion,
  powerOf,
} from "./parse.ts";

export class LuxosDriver implements MinerDriver {
  readonly family = "luxos" as const;
  readonly #io: LuxosIo;
  readonly #ctx: DriverContext;

  constructor(endpoint: MinerEndpoint, ctx: DriverContext) {
    this.#ctx = ctx;
    this.#io = new LuxosIo(endpoint, ctx);
  }

  async detect(): Promise<Identity> {
    const version = parseVersion(await this.#io.rpc("version"));
    const config = parseConfig(await this.#io.rpc("config"));
    const profiles = await this.#profiles();
    const power = powerOf(parsePower(await this.#io.rpc("power")), await this.#psuWatts());
    const first = profiles[0];
    const last = profiles.at(-1);
    return {
      family: this.family,
      model: version.model,
      firmware: version.firmware,
      mac: config.mac,
      serial: config.serial,
      capabilities: {
        pools: "yes",
        sleep: "yes",
        powerModes: profiles.length > 0 ? ["low", "normal", "high"] : [],
        powerTarget: first && last ? { minW: first.watts, maxW: last.watts } : null,
        reboot: "yes",
        power: power.provenance,
      },
      // The session commands, curtail, profileset and psuget have no public capture.
      verifiedOnHardware: false,
    };
  }

  async read(): Promise<Reading> {
    const summary = parseSummary(await this.#io.rpc("summary"));
    const hw = parseLegacyStats(await this.#io.rpc("stats"));
    const pools = parsePools(await this.#io.rpc("pools"));
    const config = parseConfig(await this.#io.rpc("config"));
    const power = powerOf(parsePower(await this.#io.rpc("power")), await this.#psuWatts());
    return {
      at: this.#ctx.clock.now(),
      hashrateGhs: summary.hashrateGhs,
      boards: hw.boards,
      fans: hw.fans,
      power,
      mode: config.curtailed ? "sleep" : "normal",
      pools,
      uptimeS: summary.uptimeS ?? hw.uptimeS,
      errors: hw.errors,
    };
  }

  /** psuget where the firmware has it and the PSU reports input power; null otherwise. */
  async #psuWatts(): Promise<number | null> {
    try {
      return parsePsuInputWatts(await this.#io.rpc("psuget"));
    } catch (err) {
      // A miner that cannot answer is that miner's error; a LUXminer without psuget (or one
      // refusing it) leaves `power` alone to decide.
      const fatal =
        !isAgentdError(err) ||
        err.code === "AGENTD_E_MINER_UNREACHABLE" ||
        err.code === "AGENTD_E_MINER_TIMEOUT" ||
        err.code === "AGENTD_E_MINER_REPLY_TOO_LARGE";
      if (fatal) throw err;
      return null;
    }
  }

  async #profiles(): Promise<LuxProfile[]> {
    try {
      return parseProfiles(await this.#io.rpc("profiles"));
    } catch (err) {
      if (isAgentdError(err) && err.code === "AGENTD_E_MINER_UNSUPPORTED") return [];
      throw err;
    }
  }

  async #config() {
    return parseConfig(await this.#io.rpc("config"));
  }

  /**
   * As on cgminer: adds the targets, switches to the first of them once it shows, removes the
   * old slots highest index first; read back through `pools`. The new slots join group 0,
   * which LUXminer always has (the captured pools are all `GROUP` 0): no addgroup is needed.
   */
  async setPools(slots: readonly PoolTarget[]): Promise<Confirmed> {
    checkSlots(slots);
    const before = parsePools(await this.#io.rpc("pools"));
    for (const s of slots)
      await this.#io.rpc("addpool", cgminerParams([s.url, s.user, s.password]));
    const firstNew = before.length;
    const readPools = async () => parsePools(await this.#io.rpc("pools"));
    await confirm(
      "setPools",
      readPools,
      (p) => poolsMatch(p.slice(firstNew), slots),
      confirmOptions(this.#ctx),
    );
    await this.#io.rpc("switchpool", String(firstNew));
    for (const index of before.map((p) => p.index).sort((a, b) => b - a))
      await this.#removeWhenIdle(index);
    return confirm("setPools", readPools, (p) => poolsMatch(p, slots), confirmOptions(this.#ctx));
  }

  /** removepool refuses the pool being mined until the switch has taken effect. */
  async #removeWhenIdle(index: number): Promise<void> {
    const o = confirmOptions(this.#ctx);
    const start = o.clock.now();
    for (;;) {
      try {
        await this.#io.rpc("removepool", String(index));
        return;
      } catch (err) {
        const refused = isAgentdError(err) && err.code === "AGENTD_E_MINER_REFUSED";
        if (!refused) throw err;
        // What still stands at the deadline fails the final read-back.
        if (o.clock.now() - start >= o.deadlineMs) return;
      }
      await wait(o.timers, o.intervalMs);
    }
  }

  /** `curtail <sid>,sleep`: boards and PSU off; the state persists across a reboot. */
  async sleep(): Promise<Confirmed> {
    await this.#io.withSession((send) => send("curtail", ["sleep"]));
    return confirm(
      "sleep",
      () => this.#config(),
      (c) => c.curtailed,
      confirmOptions(this.#ctx),
    );
  }

  async wake(): Promise<Confirmed> {
    await this.#io.withSession((send) => send("curtail", ["wakeup"]));
    return confirm(
      "wake",
      () => this.#config(),
      (c) => !c.curtailed,
      confirmOptions(this.#ctx),
    );
  }

  /** low: the lowest-watt profile; high: the highest; normal: the model's default (step 0). */
  async setPowerMode(mode: PowerMode): Promise<Confirmed> {
    const profiles = await this.#profiles();
    if (profiles.length === 0) return unsupported("setPowerMode", "the firmware lists no profiles");
    const pick =
      mode === "low"
        ? profiles[0]
        : mode === "high"
          ? profiles.at(-1)
          : (profiles.find((p) => p.step === 0) ?? null);
    if (!pick) return unsupported("setPowerMode", `no profile for ${mode}`);
    return this.#setProfile("setPowerMode", pick.name);
  }

  /** The highest-watt profile at or under `watts` (as pyasic picks it). */
  async setPowerTarget(watts: number): Promise<Confirmed> {
    const profiles = await this.#profiles();
    const fits = profiles.filter((p) => p.watts <= watts);
    const pick = fits.at(-1);
    if (!pick) {
      return unsupported(
        "setPowerTarget",
        profiles.length === 0
          ? "the firmware lists no profiles"
          : `no profile at or under ${watts} W (lowest: ${profiles[0]?.watts} W)`,
      );
    }
    return this.#setProfile("setPowerTarget", pick.name);
  }

  /**
   * ATM (the firmware's thermal manager) changes profiles by itself, so it is turned off first
   * (vendor docs; pyasic does the same) and stays off: turning it back on would let it move the
   * profile away from what was asked. Read back: ATM off and the profile in `config`.
   */
  async #setProfile(action: "setPowerMode" | "setPowerTarget", name: string): Promise<Confirmed> {
    await this.#io.withSession(async (send) => {
      await send("atmset", ["enabled=false"]);
      await send("profileset", [name]);
    });
    return confirm(
      action,
      () => this.#config(),
      (c) => c.profile === name && c.atmEnabled !== true,
      confirmOptions(this.#ctx),
    );
  }

  /** `rebootdevice <sid>`, confirmed when uptime starts again from zero. */
  async reboot(): Promise<Confirmed> {
    return rebootConfirmed(
      async () => parseSummary(await this.#io.rpc("summary")).uptimeS,
      () => this.#io.withSession((send) => send("rebootdevice")),
      confirmOptions(this.#ctx),
    );
  }
}
