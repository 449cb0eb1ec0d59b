/**
 * VNish (AnthillOS) on Antminers: 4028 for hashrate and uptime, REST for the rest (identity,
 * boards, fans, power, pools, state) and for every write, with its unlock token (io.ts). VNish
 * answers success even when a change failed (pyasic: "response will always be
 * {restart_required:false,…} even if unsuccessful"), so every write is read back and only the
 * read-back decides.
 */

import { checkSlots, confirmOptions, unsupported } from "../antminer/common.ts";
import { parseSummary as parse4028Summary } from "../antminer/parse-legacy.ts";
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
import { VnishIo } from "./io.ts";
import {
  parseInfo,
  parseSettingsPools,
  parseSummary,
  STOPPED_STATES,
  withoutScheme,
} from "./parse.ts";

export class VnishDriver implements MinerDriver {
  readonly family = "vnish" as const;
  readonly #io: VnishIo;
  readonly #ctx: DriverContext;

  constructor(endpoint: MinerEndpoint, ctx: DriverContext) {
    this.#ctx = ctx;
    this.#io = new VnishIo(endpoint, ctx);
  }

  async detect(): Promise<Identity> {
    const info = parseInfo(await this.#io.get("info"));
    const summary = parseSummary(await this.#io.get("summary"));
    return {
      family: this.family,
      model: info.model,
      firmware: info.firmware,
      mac: info.mac,
      serial: info.serial,
      capabilities: {
        pools: "yes",
        sleep: "yes",
        // Presets are per-model tuned values: not driven here yet (plugins/README.md).
        powerModes: [],
        powerTarget: null,
        reboot: "yes",
        power: summary.power === null ? "none" : "estimated",
      },
      // No VNish reply captured from hardware is public.
      verifiedOnHardware: false,
    };
  }

  async read(): Promise<Reading> {
    const s4028 = parse4028Summary(await this.#io.rpc("summary"));
    const rest = parseSummary(await this.#io.get("summary"));
    return {
      at: this.#ctx.clock.now(),
      hashrateGhs: s4028.hashrateGhs,
      boards: rest.boards,
      fans: rest.fans,
      power: rest.power,
      mode: STOPPED_STATES.has(rest.state) ? "sleep" : "normal",
      pools: rest.pools,
      uptimeS: s4028.uptimeS,
      errors: rest.state === "failure" ? ["miner state: failure", ...rest.errors] : rest.errors,
    };
  }

  /** `POST /api/v1/settings {"miner":{"pools":[…]}}`, read back from `GET settings`. */
  async setPools(slots: readonly PoolTarget[]): Promise<Confirmed> {
    checkSlots(slots);
    const pools = slots.map((s) => ({ url: withoutScheme(s.url), user: s.user, pass: s.password }));
    await this.#io.authed("POST", "settings", { miner: { pools } });
    return confirm(
      "setPools",
      async () => parseSettingsPools(await this.#io.authed("GET", "settings")),
      (read) =>
        read.length === slots.length &&
        slots.every(
          (t, i) =>
            withoutScheme(read[i]?.url ?? "") === withoutScheme(t.url) && read[i]?.user === t.user,
        ),
      confirmOptions(this.#ctx),
    );
  }

  /** `POST /api/v1/mining/pause`, read back as a stopped `miner_state`. */
  async sleep(): Promise<Confirmed> {
    await this.#io.authed("POST", "mining/pause");
    return confirm(
      "sleep",
      async () => parseSummary(await this.#io.get("summary")).state,
      (state) => STOPPED_STATES.has(state) && state !== "failure",
      confirmOptions(this.#ctx),
    );
  }

  async wake(): Promise<Confirmed> {
    await this.#io.authed("POST", "mining/resume");
    return confirm(
      "wake",
      async () => parseSummary(await this.#io.get("summary")).state,
      (state) => !STOPPED_STATES.has(state),
      confirmOptions(this.#ctx),
    );
  }

  setPowerMode(_mode: PowerMode): Promise<Confirmed> {
    return unsupported("setPowerMode", "VNish presets are not driven by agentd yet");
  }

  setPowerTarget(_watts: number): Promise<Confirmed> {
    return unsupported("setPowerTarget", "VNish presets are not driven by agentd yet");
  }

  /** `POST /api/v1/system/reboot`, confirmed when 4028 uptime starts again from zero. */
  async reboot(): Promise<Confirmed> {
    return rebootConfirmed(
      async () => parse4028Summary(await this.#io.rpc("summary")).uptimeS,
      () => this.#io.authed("POST", "system/reboot"),
      confirmOptions(this.#ctx),
    );
  }
}
