import type { Command } from "commander";
import { fail } from "../../lib/errors.ts";
import { type FaultSpec, parseFault } from "../../sim/asic/faults.ts";
import { parsePoolUrl } from "../../sim/asic/pool-url.ts";
import { isProfileName, PROFILE_NAMES } from "../../sim/asic/profiles.ts";
import { parseHostPort } from "../../sim/pool/address.ts";
import type { CliIo } from "../io.ts";
import type { Run } from "../program.ts";
import { untilSignal } from "../signals.ts";
import { simCommand } from "./sim.ts";

interface SimAsicOpts {
  count: string;
  profile?: string;
  pool?: string[];
  user: string;
  pass: string;
  apiListen: string;
  listen?: string;
  apiAllow: string;
  webListen: string;
  webPassword?: string;
  webApplyDelay: string;
  fault?: string[];
  silenceTimeout: string;
  retryDelay: string;
  rebootTime: string;
  suggestDifficulty?: string;
  maxHashrate?: string;
  events: boolean;
}

const repeat = (v: string, prev: string[] | undefined) => [...(prev ?? []), v];

/**
 * `agentd sim asic`: N simulated miners of one firmware profile (sim/README.md). stdout: the
 * ready line with each miner's API address, then (with --events) one JSON line per miner
 * event. Runs until SIGTERM or SIGINT, then disconnects every miner and exits 0.
 */
export function registerSimAsic(program: Command, io: CliIo, run: Run): void {
  simCommand(program)
    .command("asic")
    .description("run simulated ASICs: real SHA-256d shares, firmware dialects, the 4028 API")
    .option("--count <n>", "how many miners", "1")
    .option("--profile <name>", `firmware: ${PROFILE_NAMES.join("|")}`)
    .option(
      "--pool <url>",
      "pool slot URL, [stratum+tcp://]host:port[#xnsub]; repeat for slots 2, 3",
      repeat,
    )
    .option("--user <name>", "account; each miner authorizes as USER.<miner id>", "sim")
    .option("--pass <password>", "pool password", "x")
    .option(
      "--api-listen <host:port>",
      "management API address; port 0: free ports, else miner i gets port+i",
      "127.0.0.1:0",
    )
    .option(
      "--listen <host:port>",
      "the same as --api-listen (DOCUMENTS.md section 7: daemons take --listen)",
    )
    .option(
      "--api-allow <list>",
      "cgminer --api-allow list: W:addr[/bits] write, addr read-only, * any",
      "W:*",
    )
    .option(
      "--web-listen <host:port>",
      "Antminer web UI address (s9, s19); port 0: free ports, else miner i gets port+i",
      "127.0.0.1:0",
    )
    .option("--web-password <password>", "web UI password (default root, as shipped)")
    .option("--web-apply-delay <s>", "seconds set_miner_conf takes to apply", "20")
    .option("--fault <kind[:n]>", "inject a fault (sim/README.md); repeatable", repeat)
    .option("--silence-timeout <s>", "seconds without pool data before failing over", "90")
    .option("--retry-delay <s>", "seconds to wait once every slot has failed", "5")
    .option("--reboot-time <s>", "seconds a reboot keeps a miner down", "2")
    .option("--suggest-difficulty <d>", "send mining.suggest_difficulty with this value")
    .option("--max-hashrate <h/s>", "cap the real hashing of the whole process (nonces per second)")
    .option("--events", "print one JSON line per miner event", false)
    .action((opts: SimAsicOpts) =>
      run(false, async () => {
        const profile = opts.profile ?? "";
        if (!isProfileName(profile)) throw usage("--profile", PROFILE_NAMES.join("|"), profile);
        const pools = opts.pool ?? [];
        if (pools.length < 1 || pools.length > 3) {
          throw fail("AGENTD_E_USAGE", `--pool: give 1 to 3 pool URLs, found ${pools.length}`);
        }
        for (const p of pools) parsePoolUrl(p);
        const listen = opts.listen ?? opts.apiListen;
        const api = parseHostPort(listen);
        if (!api)
          throw usage(opts.listen === undefined ? "--api-listen" : "--listen", "HOST:PORT", listen);
        const web = parseHostPort(opts.webListen);
        if (!web) throw usage("--web-listen", "HOST:PORT", opts.webListen);
        const faults: FaultSpec[] = (opts.fault ?? []).map(parseFault);
        const count = integer("--count", opts.count, 1);
        const { SimCluster } = await import("../../sim/asic/cluster.ts");
        const cluster = await SimCluster.start({
          count,
          profile,
          pools,
          user: opts.user,
          pass: opts.pass,
          apiHost: api.host,
          apiPort: api.port,
          apiAllow: opts.apiAllow.split(",").filter((s) => s !== ""),
          faults,
          webHost: web.host,
          webPort: web.port,
          ...(opts.webPassword === undefined ? {} : { webPassword: opts.webPassword }),
          webApplyDelayMs: millis("--web-apply-delay", opts.webApplyDelay),
          silenceTimeoutMs: millis("--silence-timeout", opts.silenceTimeout),
          retryDelayMs: millis("--retry-delay", opts.retryDelay),
          rebootMs: millis("--reboot-time", opts.rebootTime),
          ...(opts.suggestDifficulty === undefined
            ? {}
            : { suggestDifficulty: positive("--suggest-difficulty", opts.suggestDifficulty) }),
          ...(opts.maxHashrate === undefined
            ? {}
            : { maxHashesPerSecond: positive("--max-hashrate", opts.maxHashrate) }),
          clock: io.clock,
          start: false,
          ...(opts.events
            ? {
                onEvent: ({ type, ...rest }) =>
                  io.stdout(`${JSON.stringify({ event: type, ...rest })}\n`),
              }
            : {}),
        });
        // Handlers first: a signal right after the ready line must still shut down cleanly.
        const stopped = untilSignal();
        io.stdout(`${JSON.stringify(cluster.ready())}\n`);
        // Only now: the ready line comes before any event line.
        cluster.startMining();
        await stopped;
        await cluster.stop();
        return 0;
      }),
    );
}

function usage(flag: string, expected: string, got: string) {
  return fail("AGENTD_E_USAGE", `${flag}: expected ${expected}, found ${JSON.stringify(got)}`);
}

function integer(flag: string, text: string, min: number): number {
  if (!/^\d+$/.test(text) || Number(text) < min) throw usage(flag, `an integer ≥ ${min}`, text);
  return Number(text);
}

function positive(flag: string, text: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n) || n <= 0) throw usage(flag, "a number > 0", text);
  return n;
}

function millis(flag: string, text: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n) || n < 0) throw usage(flag, "seconds ≥ 0", text);
  return Math.round(n * 1000);
}
