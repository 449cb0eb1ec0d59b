import { createECDH, createHash } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join, resolve } from "node:path";
import { fail } from "../../lib/errors.ts";
import type { Logger } from "../../lib/log/logger.ts";
import type { Timers } from "../../lib/timers.ts";
import type { Upstream } from "../../policy-guard/documents.ts";
import { processDriver } from "../../supervisor/process-driver.ts";

/**
 * The devnet's supervised services: the simulated bitcoind, Template Provider, SRI translator
 * and lnd (sim/services/), run by the agent's own supervisor on its process driver, exactly as
 * an operator without Docker would run the real ones. This file prepares what the agent and
 * the owner's consent need for that, and cleans up after the agent is gone:
 *
 * - the services file (supervisor/specs-file.ts): each kind's command is the node executable
 *   running its simulator, on free loopback ports, its data under DIR/services/<kind>;
 * - the image id the consent allows for every kind: the SHA-256 of that node executable
 *   (the process driver's image id, supervisor/process-driver.ts);
 * - the translator's SV2 upstream for the consent (the supervisor writes the translator's
 *   configuration from it, and refuses to run a translator without one) and the treasury's
 *   Lightning node id, which lnd's simulator has a channel to, so eligibility can see one.
 */

export const DEVNET_SERVICE_KINDS = ["bitcoind", "template-provider", "translator", "lnd"] as const;
export type DevnetServiceKind = (typeof DEVNET_SERVICE_KINDS)[number];

export interface DevnetServices {
  /** The services file (config supervisor.services_file). */
  readonly file: string;
  /** Where they keep their data (config supervisor.data_dir). */
  readonly dataDir: string;
  /** The image id the consent allows for every kind: sha256 of the node executable. */
  readonly image: string;
  /** The consent's `rules.services`. */
  readonly allowed: Readonly<Record<DevnetServiceKind, string>>;
  /** The upstream the translator is configured with (an `sv2+tcp` URL and its authority key). */
  readonly sv2Upstream: Upstream;
  /** The treasury's Lightning node id (config eligibility.treasury_pubkey). */
  readonly treasuryPubkey: string;
  /** Where each one answers (its main port), for the ready line. */
  readonly endpoints: Readonly<Record<DevnetServiceKind, string>>;
}

/** sim/services/ of this checkout; the simulators are not part of a packaged binary. */
export function simServicesDir(): string {
  const dir = resolve(import.meta.dirname, "..", "..", "sim", "services");
  if (!existsSync(join(dir, "bitcoind.ts"))) {
    throw fail(
      "AGENTD_E_USAGE",
      `the simulated services are not here (${dir}): run the devnet from a checkout, or with --no-services`,
    );
  }
  return dir;
}

export async function prepareServices(dir: string, user: string): Promise<DevnetServices> {
  const sim = simServicesDir();
  const node = process.execPath;
  const image = `sha256:${await sha256File(node)}`;
  const dataDir = join(dir, "services");
  const data = (kind: string) => join(dataDir, kind);
  for (const k of DEVNET_SERVICE_KINDS) mkdirSync(data(k), { recursive: true, mode: 0o700 });
  const [rpc, tp, sv1, translatorMonitor, lndRest, sv2] = (await freePorts(6)) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const cookie = join(data("bitcoind"), "regtest", ".cookie");
  const run = (script: string, ...args: (string | number)[]) =>
    toml([node, "--disable-warning=ExperimentalWarning", join(sim, script), ...args.map(String)]);
  // A supervised service is restarted quickly here (a simulator starts in well under a second)
  // and stopped without the long grace real bitcoind needs to flush its chainstate.
  const common = ["ports = []", "stop_timeout_s = 5", "restart = { min_ms = 500, max_ms = 10000 }"];
  const bitcoind = `127.0.0.1:${rpc}`;
  const treasuryPubkey = createECDH("secp256k1").generateKeys("hex", "compressed");
  const lines = [
    "# Written by agentd devnet: the simulated services (sim/services/) on the process driver.",
    "",
    "[bitcoind]",
    `command = ${run("bitcoind.ts", "--datadir", data("bitcoind"), "--chain", "regtest", "--rpcbind", "127.0.0.1", "--rpcport", rpc)}`,
    `volumes = [{ source = ${toml(data("bitcoind"))}, target = "/data" }]`,
    `health = { type = "bitcoind-rpc", port = ${rpc}, cookie_file = ${toml(cookie)} }`,
    ...common,
    "",
    "[template-provider]",
    `command = ${run("template-provider.ts", "--bind", "127.0.0.1", "--port", tp, "--datadir", data("template-provider"), "--bitcoind", bitcoind, "--bitcoind-cookie", cookie)}`,
    `volumes = [{ source = ${toml(data("template-provider"))}, target = "/data" }]`,
    // The SV2 port opens only once bitcoind is synced: accepting a connection is its health.
    `health = { type = "tcp", port = ${tp} }`,
    ...common,
    "",
    "[translator]",
    // -c names the file the supervisor writes from the consent (the only one it may read);
    // the file says 0.0.0.0:34255, so the simulator's own flags move it to a free loopback port.
    `command = ${run("translator.ts", "-c", join(data("translator"), "config", "translator.toml"), "--downstream-address", "127.0.0.1", "--downstream-port", sv1, "--monitor-port", translatorMonitor)}`,
    `health = { type = "http", port = ${translatorMonitor}, path = "/api/v1/health" }`,
    ...common,
    "",
    "[lnd]",
    `command = ${run("lnd.ts", "--lnddir", data("lnd"), "--network", "regtest", "--restlisten", `127.0.0.1:${lndRest}`, "--bitcoind", bitcoind, "--bitcoind-cookie", cookie, "--treasury-pubkey", treasuryPubkey)}`,
    `volumes = [{ source = ${toml(data("lnd"))}, target = "/data" }]`,
    `health = { type = "lnd-rest", port = ${lndRest}, macaroon_file = ${toml(join(data("lnd"), "data", "chain", "bitcoin", "regtest", "readonly.macaroon"))}, tls = true }`,
    ...common,
    "",
  ];
  const file = join(dir, "services.toml");
  writeFileSync(file, lines.join("\n"), { mode: 0o600 });
  return {
    file,
    dataDir,
    image,
    allowed: Object.fromEntries(DEVNET_SERVICE_KINDS.map((k) => [k, image])) as Record<
      DevnetServiceKind,
      string
    >,
    // Nothing listens there: the simulated translator never contacts its upstream (it sends
    // no jobs), so the SV1 data path cannot go through it (cli/commands/devnet.ts says more).
    sv2Upstream: {
      url: `sv2+tcp://127.0.0.1:${sv2}`,
      user,
      authority_pubkey: authorityPubkey(),
    },
    treasuryPubkey,
    endpoints: {
      bitcoind,
      "template-provider": `127.0.0.1:${tp}`,
      translator: `127.0.0.1:${sv1}`,
      lnd: `127.0.0.1:${lndRest}`,
    },
  };
}

/**
 * Stops and forgets the service processes the agent started. The process driver leaves its
 * processes running when the agent stops (a restarted agent adopts them), which is right for
 * `agentd run` and wrong for a devnet that is going away: so, once the agent is closed, the
 * same driver over the same records stops each one (its process group, SIGTERM then SIGKILL)
 * and removes it. Only this worker's records are touched, nothing else.
 */
export async function stopServiceProcesses(o: {
  readonly agentDir: string;
  readonly workerId: string;
  readonly timers: Timers;
  readonly logger: Logger;
}): Promise<void> {
  const driver = processDriver({
    stateDir: join(o.agentDir, "services"),
    worker: o.workerId,
    timers: o.timers,
    logger: o.logger,
  });
  try {
    const all = await driver.list();
    const results = await Promise.allSettled(
      all.map(async (s) => {
        await driver.stop(s.id, 5);
        await driver.remove(s.id);
      }),
    );
    for (const r of results) {
      if (r.status === "rejected") o.logger.error({ err: r.reason }, "devnet: a service stop");
    }
  } finally {
    driver.close();
  }
}

/** A TOML basic string or array of strings: JSON's escapes are TOML's for these. */
function toml(v: string | readonly string[]): string {
  return typeof v === "string"
    ? JSON.stringify(v)
    : `[${v.map((s) => JSON.stringify(s)).join(", ")}]`;
}

/** Hashed as a stream: the node executable is ~100 MB. */
function sha256File(path: string): Promise<string> {
  return new Promise((ok, ko) => {
    const h = createHash("sha256");
    createReadStream(path)
      .on("data", (c) => h.update(c))
      .on("error", ko)
      .on("end", () => ok(h.digest("hex")));
  });
}

/** Distinct free loopback ports: all held open at once, then released for the services. */
async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const s = createServer();
      servers.push(s);
      ports.push(
        await new Promise<number>((ok, ko) => {
          s.once("error", ko);
          s.listen(0, "127.0.0.1", () => ok((s.address() as { port: number }).port));
        }),
      );
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise((ok) => s.close(ok))));
  }
}

/**
 * An SV2 pool's authority key in the form SRI's configs use (key_utils): base58check of the
 * version (1, as u16 little-endian) followed by a 32-byte x-only secp256k1 key. A fresh key:
 * there is no SV2 pool in the devnet whose key this would have to be.
 */
function authorityPubkey(): string {
  const uncompressed = createECDH("secp256k1").generateKeys();
  const payload = Buffer.concat([Buffer.from([1, 0]), uncompressed.subarray(1, 33)]);
  const sha = (b: Buffer) => createHash("sha256").update(b).digest();
  return base58(Buffer.concat([payload, sha(sha(payload)).subarray(0, 4)]));
}

const BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

function base58(bytes: Buffer): string {
  let n = BigInt(`0x${bytes.toString("hex") || "0"}`);
  let out = "";
  while (n > 0n) {
    out = (BASE58[Number(n % 58n)] as string) + out;
    n /= 58n;
  }
  // Each leading zero byte is a leading "1".
  for (const b of bytes) {
    if (b !== 0) break;
    out = `1${out}`;
  }
  return out;
}
