/**
 * The two entry points the driver host calls: `detectFamily` finds which firmware answers at
 * an address, `createDriver` makes that family's driver. Detection as pyasic does it: the
 * 4028 `version` reply (`VERSION[0].Type`, the BMMiner version), then `stats` (`STATS[0].Type`)
 * for builds without `version`; when 4028 is closed, ESP-Miner's `GET /api/system/info`
 * (a Bitaxe has no 4028 at all: plugins/bitaxe/detect.ts), then the web UI's get_system_info
 * (`minertype`). Braiins OS says "BOSminer" or "BOSer" in its `version` reply (pyasic
 * `_parse_socket_type`): `braiins-os`, whatever model it runs on. LuxOS and VNish are recognised
 * by name in the 4028 reply too (as pyasic does). Other firmware that is not a stock Antminer
 * has no driver yet: AGENTD_E_MINER_UNKNOWN_FIRMWARE.
 */
import { AgentdError, isAgentdError } from "../lib/errors.ts";
import { AntminerIo } from "./antminer/io.ts";
import { parseVersionRow, type VersionFacts } from "./antminer/parse-legacy.ts";
import { AntminerS9Driver } from "./antminer/s9.ts";
import { AntminerS19Driver } from "./antminer/s19.ts";
import { parseSystemInfo } from "./antminer/web-conf.ts";
import { BitaxeDriver } from "./bitaxe/bitaxe.ts";
import { isBitaxe } from "./bitaxe/detect.ts";
import { BraiinsOsDriver } from "./braiins/driver.ts";
import { isBraiinsReply } from "./braiins/parse.ts";
import { section } from "./cgminer/client.ts";
import type { DriverContext, Family, MinerDriver, MinerEndpoint } from "./driver.ts";
import { LuxosDriver } from "./luxos/luxos.ts";
import { VnishDriver } from "./vnish/vnish.ts";

export function createDriver(
  family: Family,
  endpoint: MinerEndpoint,
  ctx: DriverContext,
): MinerDriver {
  switch (family) {
    case "antminer-s9":
      return new AntminerS9Driver(endpoint, ctx);
    case "antminer-s19":
      return new AntminerS19Driver(endpoint, ctx);
    case "luxos":
      return new LuxosDriver(endpoint, ctx);
    case "vnish":
      return new VnishDriver(endpoint, ctx);
    case "braiins-os":
      return new BraiinsOsDriver(endpoint, ctx);
    case "bitaxe":
      return new BitaxeDriver(endpoint, ctx);
  }
}

/** Other firmware that prints an Antminer model but is not stock bmminer. */
const FOREIGN = /luxminer|luxos|vnish|btminer|whatsminer|hive/i;

/**
 * Firmware with a driver of its own, found as pyasic finds it (`pyasic/miners/factory.py`
 * `_parse_socket_type`; asic-rs `identify_rpc`): its name anywhere in the 4028 reply
 * ("LUXminer" in the `version` reply's Description and VERSION[0]; "VNISH", any case).
 */
function ownFamily(reply: unknown): Family | null {
  const text = JSON.stringify(reply).toUpperCase();
  if (text.includes("LUXMINER")) return "luxos";
  if (text.includes("VNISH")) return "vnish";
  return null;
}

export async function detectFamily(endpoint: MinerEndpoint, ctx: DriverContext): Promise<Family> {
  // The credentials only matter for the web UI, and both families ship the same default.
  const io = new AntminerIo("antminer-s19", endpoint, ctx);
  let facts: VersionFacts | null = null;
  let description = "";
  try {
    const reply = await io.rpc("version");
    // BOSer's version row has no `Type` (the model is in `devdetails`): look before parsing.
    if (isBraiinsReply(reply)) return "braiins-os";
    const own = ownFamily(reply.body);
    if (own) return own;
    description = reply.status.Description;
    facts = parseVersionRow(section(reply, "VERSION")[0], "version");
  } catch (err) {
    if (!isAgentdError(err)) throw err;
    if (err.code === "AGENTD_E_MINER_UNSUPPORTED" || err.code === "AGENTD_E_MINER_REPLY_INVALID") {
      const reply = await io.rpc("stats");
      if (isBraiinsReply(reply)) return "braiins-os";
      const own = ownFamily(reply.body);
      if (own) return own;
      description = reply.status.Description;
      facts = parseVersionRow(section(reply, "STATS")[0], "stats");
    } else if (err.code !== "AGENTD_E_MINER_UNREACHABLE") throw err;
  }
  if (facts) {
    if (FOREIGN.test(`${description} ${facts.firmware}`)) throw unknown(endpoint, facts.model);
    return familyOf(facts.model, facts.bmminerMajor) ?? throwUnknown(endpoint, facts.model);
  }
  // No 4028: ESP-Miner (Bitaxe) has only its HTTP API (plugins/bitaxe/detect.ts).
  if (await isBitaxe(endpoint, ctx)) return "bitaxe";
  // 4028 closed (an owner may turn the API off): the web UI still says the model.
  const info = parseSystemInfo(await io.cgi("get_system_info"));
  return familyOf(info.model ?? "", null) ?? throwUnknown(endpoint, info.model ?? "no model");
}

/** S9/S9i/S9j/T9 run bmminer 2.x; S19/S19 Pro/S19j/T19 bmminer 1.x. */
export function familyOf(model: string, bmminerMajor: number | null): Family | null {
  if (/\b[ST]9/i.test(model)) return "antminer-s9";
  if (/\b[ST]19/i.test(model)) return "antminer-s19";
  if (/antminer/i.test(model) && bmminerMajor === 2) return "antminer-s9";
  if (/antminer/i.test(model) && bmminerMajor === 1) return "antminer-s19";
  return null;
}

function unknown(endpoint: MinerEndpoint, model: string): AgentdError {
  return new AgentdError(
    "AGENTD_E_MINER_UNKNOWN_FIRMWARE",
    `${endpoint.host}: no driver for ${JSON.stringify(model.slice(0, 80))}`,
    { context: { host: endpoint.host } },
  );
}

function throwUnknown(endpoint: MinerEndpoint, model: string): never {
  throw unknown(endpoint, model);
}
