/**
 * Braiins OS (bosminer, BOSer) on any model it runs on. Reads through the 4028 API
 * (`version`, `devdetails`, `summary`, `devs`, `temps`, `fans`, `tunerstatus`, `pools`);
 * pool slots, the power target, MAC/serial and reboot through the gRPC API (its 4028 API has
 * no `addpool`), behind a login token (grpc.ts); sleep and wake through 4028 `pause`/`resume`.
 *
 * Every write is read back through 4028: the pools through `pools`, the power target through
 * `tunerstatus` `PowerLimit` (some releases acknowledge a raise and ignore it), a pause by no
 * board hashing (`devs` `MHS 5s`, pyasic's test), a reboot by `Elapsed` starting again.
 * Power is the firmware's estimate (`ApproximateMinerPowerConsumption`), never a measurement.
 */
import { isAgentdError } from "../../lib/errors.ts";
import { checkSlots, confirmOptions, poolsMatch, unsupported } from "../antminer/common.ts";
import { parsePools } from "../antminer/parse-legacy.ts";
import { normalizeMac, str } from "../antminer/values.ts";
import { type CgminerReply, cgminerRequest } from "../cgminer/client.ts";
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
import { confirm, rebootConfirmed } from "../read-back.ts";
import { BosGrpc } from "./grpc.ts";
import {
  anyBoardHashing,
  parseBoards,
  parseChips,
  parseDevs,
  parseFans,
  parseFirmware,
  parseModel,
  parseSummary,
  parseTuner,
} from "./parse.ts";
import { checkWatts, POWER_TARGET_RANGE } from "./power.ts";

/** SetPoolGroups replaces every group with this one (common.proto SaveAction: apply now). */
const GROUP_NAME = "agentd";
const SAVE_AND_APPLY = "SAVE_ACTION_SAVE_AND_APPLY";

export class BraiinsOsDriver implements MinerDriver {
  readonly family = "braiins-os" as const;
  readonly #endpoint: MinerEndpoint;
  readonly #ctx: DriverContext;
  readonly #grpc: BosGrpc;

  constructor(endpoint: MinerEndpoint, ctx: DriverContext) {
    this.#endpoint = endpoint;
    this.#ctx = ctx;
    this.#grpc = new BosGrpc(endpoint, ctx);
  }

  /** The gRPC client (tests count its logins). */
  get grpc(): BosGrpc {
    return this.#grpc;
  }

  rpc(command: string, parameter: string | null = null): Promise<CgminerReply> {
    const l = this.#ctx.limits;
    return cgminerRequest(
      { host: this.#endpoint.host, port: this.#endpoint.apiPort ?? 4028 },
      command,
      parameter,
      { timers: this.#ctx.timers, maxReplyBytes: l.maxReplyBytes, timeoutMs: l.requestTimeoutMs },
    );
  }

  async detect(): Promise<Identity> {
    const firmware = parseFirmware(await this.rpc("version"));
    const model = parseModel(await this.rpc("devdetails"));
    // 4028 says neither MAC nor serial; gRPC GetMinerDetails says both. Without gRPC (a
    // release before it, or a refused login) the writes that need it are not ours either.
    let grpc: Support = "yes";
    let mac: string | null = null;
    let serial: string | null = null;
    try {
      const d = await this.#grpc.call("MinerService", "GetMinerDetails", {});
      mac = normalizeMac(d.mac_address);
      serial = str(d.serial_number);
    } catch (err) {
      if (!isAgentdError(err)) throw err;
      if (err.code === "AGENTD_E_MINER_AUTH") grpc = "not_owned";
      else if (
        err.code === "AGENTD_E_MINER_UNREACHABLE" ||
        err.code === "AGENTD_E_MINER_UNSUPPORTED"
      )
        grpc = "no";
      else throw err;
    }
    const capabilities: Capabilities = {
      pools: grpc,
      sleep: "yes",
      powerModes: [],
      powerTarget: grpc === "yes" ? POWER_TARGET_RANGE : null,
      reboot: grpc,
      power: "estimated",
    };
    return {
      family: this.family,
      model,
      firmware,
      mac,
      serial,
      capabilities,
      // Only the 4028 `version` reply is captured from hardware (plugins/README.md).
      verifiedOnHardware: false,
    };
  }

  async read(): Promise<Reading> {
    const summary = parseSummary(await this.rpc("summary"));
    const devs = parseDevs(await this.rpc("devs"));
    const chips = parseChips(await this.rpc("devdetails"));
    const boards = parseBoards(await this.rpc("temps"), devs, chips);
    const fans = parseFans(await this.rpc("fans"));
    const tuner = parseTuner(await this.rpc("tunerstatus"));
    const pools = parsePools(await this.rpc("pools"));
    return {
      at: this.#ctx.clock.now(),
      hashrateGhs: summary.hashrateGhs,
      boards,
      fans,
      power:
        tuner.approxWatts === null
          ? null
          : { watts: tuner.approxWatts, provenance: "estimated", source: "firmware" },
      // 4028 has no mode field: hashing is normal; idle may be paused or poolless, unknown.
      mode: anyBoardHashing(devs) ? "normal" : "unknown",
      pools,
      uptimeS: summary.uptimeS,
      errors: tuner.errors,
    };
  }

  /** One pool group holding the targets in order, replacing every group (SetPoolGroups). */
  async setPools(slots: readonly PoolTarget[]): Promise<Confirmed> {
    checkSlots(slots);
    await this.#grpc.call("PoolService", "SetPoolGroups", {
      save_action: SAVE_AND_APPLY,
      pool_groups: [
        {
          name: GROUP_NAME,
          quota: { value: 1 },
          pools: slots.map((s) => ({
            url: s.url,
            user: s.user,
            password: s.password,
            enabled: true,
          })),
        },
      ],
    });
    return confirm(
      "setPools",
      async () => parsePools(await this.rpc("pools")),
      (pools) => poolsMatch(pools, slots),
      confirmOptions(this.#ctx),
    );
  }

  async sleep(): Promise<Confirmed> {
    await this.rpc("pause");
    return confirm(
      "sleep",
      async () => parseDevs(await this.rpc("devs")),
      (devs) => devs.size > 0 && !anyBoardHashing(devs),
      confirmOptions(this.#ctx),
    );
  }

  async wake(): Promise<Confirmed> {
    await this.rpc("resume");
    return confirm(
      "wake",
      async () => parseDevs(await this.rpc("devs")),
      anyBoardHashing,
      confirmOptions(this.#ctx),
    );
  }

  setPowerMode(_mode: PowerMode): Promise<Confirmed> {
    return unsupported("setPowerMode", "Braiins OS takes a power target in watts, not a mode");
  }

  async setPowerTarget(watts: number): Promise<Confirmed> {
    checkWatts(watts);
    await this.#grpc.call("PerformanceService", "SetPowerTarget", {
      save_action: SAVE_AND_APPLY,
      power_target: { watt: watts },
    });
    // The reply echoes the target even when a raise is then ignored: only the tuner counts.
    return confirm(
      "setPowerTarget",
      async () => parseTuner(await this.rpc("tunerstatus")),
      (t) => t.powerLimitW === watts,
      confirmOptions(this.#ctx),
    );
  }

  async reboot(): Promise<Confirmed> {
    return rebootConfirmed(
      async () => parseSummary(await this.rpc("summary")).uptimeS,
      () => this.#grpc.call("ActionsService", "Reboot", {}),
      confirmOptions(this.#ctx),
    );
  }
}
