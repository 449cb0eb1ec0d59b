import { resolve } from "node:path";
import type { Command } from "commander";
import { apiError, localApiRequest } from "../../agent/local-api.ts";
import { fail } from "../../lib/errors.ts";
import { FAMILIES } from "../../plugins/driver.ts";
import { agentSocket, STATE_DIR_HELP } from "../agent-socket.ts";
import { formatAgo, formatHashrate, table } from "../format.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import type { Run } from "../program.ts";

type Json = Record<string, unknown>;

/**
 * `agentd miners adopt ADDR` and `agentd miners forget ID`: the running agent's fleet
 * (agent/fleet.ts), through its local API. Adoption detects the miner through the driver host,
 * saves its slots and moves them onto the agent; forgetting restores them.
 */
export function registerMinersFleet(miners: Command, io: CliIo, run: Run): void {
  miners
    .command("adopt")
    .description(
      "adopt an ASIC: the agent owns its pool slots and makes it follow the owner's policy",
    )
    .argument("<addr>", "the miner's address (host)")
    .option("--firmware <family>", `auto, or one of: ${FAMILIES.join(", ")}`, "auto")
    .option("--credentials <file>", "a 0600 JSON file {username, password} (default: the family's)")
    .option("--api-port <port>", "its cgminer API port (default 4028)")
    .option("--web-port <port>", "its web UI port (default 80)")
    .option("--grpc-port <port>", "its gRPC port (Braiins OS; default 50051)")
    .option("--json", "machine-readable output", false)
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .action(
      (
        addr: string,
        opts: {
          firmware: string;
          credentials?: string;
          apiPort?: string;
          webPort?: string;
          grpcPort?: string;
          json: boolean;
        },
        cmd: Command,
      ) =>
        run(opts.json, async () => {
          const body: Json = { address: addr, firmware: opts.firmware };
          // the agent reads the file: an absolute path, as the agent sees it
          if (opts.credentials !== undefined) body.credentials = resolve(opts.credentials);
          for (const [k, v] of [
            ["api_port", opts.apiPort],
            ["web_port", opts.webPort],
            ["grpc_port", opts.grpcPort],
          ] as const) {
            if (v !== undefined) body[k] = port(v, k);
          }
          const r = await localApiRequest(agentSocket(io, cmd), "POST", "/v1/fleet/adopt", body);
          if (r.status !== 200) throw apiError(r);
          const m = r.json.miner as {
            id: string;
            model: string;
            slots: string;
            mac: string | null;
          };
          const how =
            r.json.moved === true
              ? " (known at another address: moved)"
              : r.json.created === false
                ? " (adopted already)"
                : "";
          const warn =
            m.slots === "not_owned"
              ? "\nslots not owned: this miner may hash elsewhere when mining is denied"
              : "";
          printResult(
            io,
            opts.json,
            r.json,
            `adopted ${m.id}: ${m.model}, MAC ${m.mac ?? "unknown"}${how}${warn}`,
          );
          return 0;
        }),
    );
  miners
    .command("forget")
    .description("forget an adopted ASIC, giving back the pool slots it had before")
    .argument("<id>", "the miner's id (agentd miners)")
    .option("--json", "machine-readable output", false)
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .action((id: string, opts: { json: boolean }, cmd: Command) =>
      run(opts.json, async () => {
        const r = await localApiRequest(agentSocket(io, cmd), "POST", "/v1/fleet/forget", { id });
        if (r.status !== 200) throw apiError(r);
        printResult(
          io,
          opts.json,
          r.json,
          `forgot ${id}: previous slots ${String(r.json.previous_slots)}`,
        );
        return 0;
      }),
    );
}

function port(text: string, name: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 65_535) {
    throw fail("AGENTD_E_USAGE", `--${name.replace("_", "-")}: expected a port 1..65535`);
  }
  return n;
}

/** The fleet's table under `agentd miners`: each adopted miner as the agent last read it. */
export function fleetText(doc: Json, now: number): string {
  const miners = (doc.miners ?? []) as {
    id: string;
    model: string;
    family: string;
    slots: string;
    verifiedOnHardware?: boolean;
    state: {
      reading: {
        mode: string;
        hashrateGhs: number | null;
        power: { watts: number; provenance: string } | null;
        boards: { chipTempC: number[] }[];
      } | null;
      readAt: number | null;
      lastError: { code: string } | null;
    } | null;
  }[];
  if (miners.length === 0) return "adopted: none (agentd miners adopt ADDR)";
  const rows = miners.map((m) => {
    const r = m.state?.reading ?? null;
    const hot = r === null ? null : Math.max(...r.boards.flatMap((b) => b.chipTempC), -Infinity);
    return [
      m.id,
      m.model,
      r?.mode ?? "-",
      r?.hashrateGhs == null ? "-" : formatHashrate(r.hashrateGhs * 1e9),
      hot === null || !Number.isFinite(hot) ? "-" : `${hot} °C`,
      r?.power == null ? "none" : `${Math.round(r.power.watts)} W ${r.power.provenance}`,
      m.slots === "owned" ? "agent" : "not owned: may hash elsewhere when denied",
      m.state?.readAt == null ? "never" : formatAgo(m.state.readAt, now),
      m.state?.lastError?.code ?? "",
      m.verifiedOnHardware === true ? "" : "not verified on hardware",
    ];
  });
  return table(
    ["adopted", "model", "mode", "hashrate", "chip", "watts", "slots", "read", "error", "driver"],
    rows,
  );
}
