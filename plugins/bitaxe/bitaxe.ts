/**
 * Bitaxe and other ESP-Miner boards (family `bitaxe`), through the only surface ESP-Miner has:
 * its HTTP API, no login (io.ts). Reads `GET /api/system/info` (info.ts); writes pools with
 * `PATCH /api/system`, which only saves them, then `POST /api/system/restart` to mine with
 * them; pauses and resumes with `POST /api/system/pause|resume` on v2.14.0 and later
 * (version.ts). Every write is read back from the info reply.
 *
 * Power: ESP-Miner's `power` is **estimated**. On TPS546 boards (Supra, Gamma and later) it is
 * the regulator's output power plus a fixed per-family offset "for the rest of the Bitaxe"
 * (main/power/power.c `Power_get_output`, whose own comment says so); only INA260 boards
 * (Max, Ultra) measure, and the reply does not say which chip a board has.
 *
 * Pause is not saved: ESP-Miner keeps `mining_paused` in memory and clears it at boot
 * (main/system.c), so a restart or a power cut wakes the miner. The fleet manager must read
 * the mode back after any reboot.
 */
import { confirmOptions, unsupported } from "../antminer/common.ts";
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
} from "../driver.ts";
import { confirm, lostToReboot } from "../read-back.ts";
import type { AxeInfo } from "./info.ts";
import { AxeIo } from "./io.ts";
import { axeTargets, patchBody, poolSlots, sameTarget } from "./pools.ts";
import { hasPause } from "./version.ts";

/** The boards by ASIC, as pyasic names them (pyasic/miners/factory.py, BitAxe*). */
const BOARDS: Readonly<Record<string, string>> = {
  BM1397: "Bitaxe Max",
  BM1366: "Bitaxe Ultra",
  BM1368: "Bitaxe Supra",
  BM1370: "Bitaxe Gamma",
};

export class BitaxeDriver implements MinerDriver {
  readonly family = "bitaxe" as const;
  readonly #io: AxeIo;
  readonly #ctx: DriverContext;

  constructor(endpoint: MinerEndpoint, ctx: DriverContext) {
    this.#ctx = ctx;
    this.#io = new AxeIo(endpoint, ctx);
  }

  async detect(): Promise<Identity> {
    const info = await this.#io.info();
    const capabilities: Capabilities = {
      pools: "yes",
      sleep: hasPause(info.version) ? "yes" : "no",
      powerModes: [],
      powerTarget: null,
      reboot: "yes",
      power: "estimated",
    };
    const board = BOARDS[info.asicModel] ?? "ESP-Miner board";
    return {
      family: this.family,
      model: `${board} (${info.asicModel}${info.boardVersion ? `, board ${info.boardVersion}` : ""})`,
      firmware: `ESP-Miner ${info.version}${
        info.axeOsVersion && info.axeOsVersion !== info.version
          ? `, AxeOS ${info.axeOsVersion}`
          : ""
      }`,
      mac: info.mac,
      // ESP-Miner reports no serial number.
      serial: null,
      capabilities,
      // Only /api/system/info (v2.4.5) is captured; PATCH, restart, pause are not (README).
      verifiedOnHardware: false,
    };
  }

  async read(): Promise<Reading> {
    const info = await this.#io.info();
    return {
      at: this.#ctx.clock.now(),
      hashrateGhs: info.hashrateGhs,
      boards: [
        {
          index: 0,
          hashrateGhs: info.hashrateGhs,
          chips: info.asicCount,
          // The regulator's sensor is the only board temperature ESP-Miner reports.
          pcbTempC: info.vrTempC === null ? [] : [info.vrTempC],
          chipTempC: info.chipTempC === null ? [] : [info.chipTempC],
        },
      ],
      fans: info.fanRpm.map((rpm, index) => ({ index, rpm })),
      power:
        info.powerW === null
          ? null
          : { watts: info.powerW, provenance: "estimated", source: "firmware" },
      mode: info.miningPaused === true ? "sleep" : "normal",
      pools: poolSlots(info),
      uptimeS: info.uptimeS,
      errors: info.errors,
    };
  }

  /** Saved by PATCH, used after the restart: holds once a restarted miner shows both slots. */
  async setPools(slots: readonly PoolTarget[]): Promise<Confirmed> {
    const targets = axeTargets(slots);
    const before = await this.#mark();
    await this.#io.send("PATCH", "/api/system", patchBody(targets));
    await this.#restart();
    return this.#confirm(
      "setPools",
      (i) =>
        this.#restarted(before, i) &&
        sameTarget(i.primary, targets[0]) &&
        sameTarget(i.fallback, targets[1]),
    );
  }

  sleep(): Promise<Confirmed> {
    return this.#pause(true);
  }

  wake(): Promise<Confirmed> {
    return this.#pause(false);
  }

  setPowerMode(_mode: PowerMode): Promise<Confirmed> {
    return unsupported("setPowerMode", "ESP-Miner has no power modes (frequency and voltage only)");
  }

  setPowerTarget(_watts: number): Promise<Confirmed> {
    return unsupported("setPowerTarget", "ESP-Miner takes no power target");
  }

  async reboot(): Promise<Confirmed> {
    const before = await this.#mark();
    await this.#restart();
    return this.#confirm("reboot", (i) => this.#restarted(before, i));
  }

  async #pause(on: boolean): Promise<Confirmed> {
    const action = on ? "sleep" : "wake";
    const info = await this.#io.info();
    if (!hasPause(info.version)) {
      return unsupported(action, `ESP-Miner ${info.version.slice(0, 40)} has no pause (v2.14.0+)`);
    }
    await this.#io.send("POST", on ? "/api/system/pause" : "/api/system/resume", null);
    return this.#confirm(action, (i) => i.miningPaused === on);
  }

  /** ESP-Miner answers, then restarts a second later: a reply lost on the way is no failure. */
  async #restart(): Promise<void> {
    try {
      await this.#io.send("POST", "/api/system/restart", null);
    } catch (err) {
      if (!lostToReboot(err)) throw err;
    }
  }

  async #mark(): Promise<Mark> {
    const info = await this.#io.info();
    return { uptimeS: info.uptimeS, at: this.#ctx.clock.now() };
  }

  /**
   * The restart happened: uptime is behind what it would be without one (a second's slack for
   * rounding). Not "uptime < before": a miner restarted a moment ago may show 0 both times.
   */
  #restarted(before: Mark, now: AxeInfo): boolean {
    const elapsedS = (this.#ctx.clock.now() - before.at) / 1000;
    return now.uptimeS < before.uptimeS + elapsedS - 1;
  }

  #confirm(action: Confirmed["action"], holds: (i: AxeInfo) => boolean): Promise<Confirmed> {
    return confirm(action, () => this.#io.info(), holds, confirmOptions(this.#ctx));
  }
}

/** The uptime before a restart, and when it was read. */
interface Mark {
  readonly uptimeS: number;
  readonly at: number;
}
