import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { startAgent } from "../../agent/daemon.ts";
import { enrollMachine } from "../../agent/enrollment.ts";
import { collectHostFacts } from "../../agent/host-facts.ts";
import { generateEd25519KeyPair, publicJwk } from "../../lib/crypto/ed25519.ts";
import { writeKeyPair } from "../../lib/crypto/key-files.ts";
import { fail } from "../../lib/errors.ts";
import { createLogger, type LogLevel } from "../../lib/log/logger.ts";
import { logRing } from "../../lib/log/ring.ts";
import { signConsent } from "../../policy-guard/sign.ts";
import type { ProfileName } from "../../sim/asic/profiles.ts";
import { globalsOf, loadCliConfig } from "../config-context.ts";
import { prepareServices, stopServiceProcesses } from "../devnet/services.ts";
import { devnetStatus } from "../devnet/status-line.ts";
import { agentdInvocation, tryCommands } from "../devnet/try-commands.ts";
import type { CliIo } from "../io.ts";
import { type Run, VERSION } from "../program.ts";
import { untilSignal } from "../signals.ts";

const HELP = `
Runs the whole system on this machine, for a look and for trying things: the reference control
plane (SQLite in DIR/cp), an owner (key in DIR/owner.key) who registers, enrolls a machine
and publishes a demo consent, the agent of that machine (state in DIR/agent, its Stratum
proxy and its local API), a simulated pool, N simulated ASICs doing real SHA-256d work through
the proxy, and the agent's supervised services: the simulated bitcoind (regtest), Template
Provider, SRI translator and lnd (sim/services/), run by the agent's process driver
(supervisor.driver = process) from DIR/services.toml, their data in DIR/services, all on
loopback ports. The consent allows mining to the pool from 127.0.0.1 and those four services
(their image id: the SHA-256 of the node executable that runs them); lnd has a channel to the
devnet's treasury, so eligibility sees bitcoind synced and a channel open, and still says
not eligible (uptime.window_incomplete): a new node waits 7 days (docs/eligibility.md).
The translator runs next to the data path, not in it (ASICs → proxy → pool): the simulated
translator sends no jobs.

stdout is JSON lines only (logs are JSON on stderr). The first line is the ready line:
{"ready": true, "dir", "state_dir", "cp", "worker_id", "owner_key", "api_socket", "stratum",
"pool", "asics", "services" (each service's address), "try"}, where "try" lists the commands to run next in another
terminal, paths filled in (agentd status, miners, services ls, eligibility, logs, doctor
--state-dir DIR/agent, and the owner's revocation, which stops mining and services):

  agentd consent revoke --owner-key DIR/owner.key --worker ID --through-seq 1 --apply \\
    --state-dir DIR/agent

Then a status line every --status-interval seconds: {"at", "state", "mining", "reasons",
"miners", "hashrate_hs", "proxy_accepted_total", "pool_accepted_total",
"heartbeats_sent_total", "upstream" ("URL connected|unreachable since … (why)"),
"services": {"bitcoind": "running", …}, "eligibility": {"eligible",
"reasons", "bitcoind", "lightning"}}; "…_total" counts since the devnet started,
"pool_accepted_total" is null with --pool (the shares are counted there), "services" is null
with --no-services. npm run prints its own banner first: run ./bin/agentd devnet (or npm run
--silent devnet) for JSON alone.

--no-services: no supervised services (the light devnet: control plane, agent, pool, ASICs).
--pool URL mines to an external pool instead of the simulated one. Ctrl-C stops everything
cleanly, the services too. DIR defaults to a new temporary directory, removed on exit (also
after a failed start); a --dir is kept for a look afterwards (a new run needs a new or empty
one).
`;

/** Profiles whose miners take the proxy's difficulty (the rest suggest ASIC-sized ones). */
const PROFILES: readonly ProfileName[] = ["cpuminer", "s9", "s19"];

export function registerDevnet(program: Command, io: CliIo, run: Run): void {
  program
    .command("devnet")
    .description(
      "run control plane, agent with its services, simulated pool and ASICs together, on this machine",
    )
    .addHelpText("after", HELP)
    .option(
      "--dir <dir>",
      "where everything keeps its state (default: a temp dir, removed on exit)",
    )
    .option("--asics <n>", "simulated ASICs", "10")
    .option(
      "--pool <url>",
      "an external pool (stratum+tcp://host:port) instead of the simulated one",
    )
    .option(
      "--no-services",
      "no supervised services (bitcoind, template provider, translator, lnd)",
    )
    .option("--status-interval <s>", "seconds between status lines", "5")
    .action(
      (
        opts: {
          dir?: string;
          asics: string;
          pool?: string;
          services: boolean;
          statusInterval: string;
        },
        cmd: Command,
      ) =>
        run(false, async () => {
          const asics = Number(opts.asics);
          if (!Number.isInteger(asics) || asics < 0 || asics > 1000) {
            throw fail("AGENTD_E_USAGE", "--asics: an integer 0..1000");
          }
          const every = Number(opts.statusInterval);
          if (!Number.isFinite(every) || every < 1 || every > 3600) {
            throw fail("AGENTD_E_USAGE", "--status-interval: seconds, 1..3600");
          }
          if (opts.pool !== undefined && !/^stratum\+tcp:\/\/[^/\s]+:\d+$/.test(opts.pool)) {
            throw fail("AGENTD_E_USAGE", "--pool: expected stratum+tcp://host:port");
          }
          if (opts.dir !== undefined && existsSync(join(resolve(opts.dir), "cp"))) {
            // Its control plane would refuse to initialise again, after a part had started.
            throw fail(
              "AGENTD_E_USAGE",
              `--dir ${opts.dir}: holds an earlier devnet (kept for a look); give a new or empty one`,
            );
          }
          const temporary = opts.dir === undefined;
          const dir = resolve(opts.dir ?? mkdtempSync(join(tmpdir(), "agentd-devnet-")));
          try {
            return await devnet(io, cmd, { ...opts, dir, asics, every });
          } finally {
            // Only after everything stopped (devnet() returns or throws after its stops), so
            // no part still writes into it; a --dir is the operator's and stays.
            if (temporary) rmSync(dir, { recursive: true, force: true });
          }
        }),
    );
}

/**
 * The devnet itself, each part's stop registered as it starts and run in reverse, once.
 *
 * Topology: ASICs → the agent's proxy → the pool, with the services supervised next to it. The
 * product's topology puts the SRI translator between the proxy and an SV2 pool; the simulated
 * translator (sim/services/translator.ts) answers the SV1 handshake but never contacts its
 * upstream and so never sends a job, and the simulated pool speaks SV1 only. Through it the
 * ASICs would hash nothing; so the translator runs supervised, configured by the supervisor
 * from the consent's sv2+tcp upstream as it would be in production, beside the data path.
 */
async function devnet(
  io: CliIo,
  cmd: Command,
  opts: {
    readonly dir: string;
    readonly asics: number;
    readonly every: number;
    readonly pool?: string;
    readonly services: boolean;
  },
): Promise<number> {
  const { dir, asics } = opts;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const agentDir = join(dir, "agent");
  const apiSocket = join(agentDir, "agentd.sock");
  const user = "devnet.rig";
  const services = opts.services ? await prepareServices(dir, user) : null;
  const tiny = (n: number) => String(2 ** n);
  const { config } = loadCliConfig(io, globalsOf(cmd), [
    { key: "paths.state_dir", value: agentDir, flag: "devnet" },
    { key: "api.socket", value: apiSocket, flag: "devnet" },
    { key: "stratum.listen", value: "127.0.0.1:0", flag: "devnet" },
    // CPU-hashing simulated miners need tiny difficulties.
    { key: "stratum.initial_difficulty", value: tiny(-18), flag: "devnet" },
    { key: "stratum.min_difficulty", value: tiny(-20), flag: "devnet" },
    { key: "stratum.share_interval_s", value: "2", flag: "devnet" },
    { key: "heartbeat.interval_s", value: "5", flag: "devnet" },
    ...(services === null
      ? []
      : [
          { key: "supervisor.driver", value: "process", flag: "devnet" },
          { key: "supervisor.services_file", value: services.file, flag: "devnet" },
          { key: "supervisor.data_dir", value: services.dataDir, flag: "devnet" },
          { key: "eligibility.treasury_pubkey", value: services.treasuryPubkey, flag: "devnet" },
        ]),
  ]);
  // The agent's lines and the devnet's own also go to a ring the local API serves (`agentd
  // logs`). The control plane logs every request it serves: to stderr only, or the agent's
  // last lines would be mostly the control plane's.
  const level = config.log.level as LogLevel;
  const ring = logRing(1000);
  const logger = createLogger({ level, tee: ring });
  const cpLogger = createLogger({ level, base: { pid: process.pid, component: "control-plane" } });
  const clock = io.clock;
  const stops: (() => Promise<unknown> | unknown)[] = [];
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) {
      try {
        await stop();
      } catch (err) {
        logger.error({ err }, "devnet: stopping a part failed");
      }
    }
  };
  try {
    // The control plane.
    const { initControlPlaneDir } = await import("../../control-plane/init-dir.ts");
    const admin = await initControlPlaneDir({ dir: join(dir, "cp"), clock });
    const { serveControlPlane } = await import("../../control-plane/serve.ts");
    const { createApiClient } = await import("../../control-plane/protocol/client-api.ts");
    const cp = await serveControlPlane({
      dir: join(dir, "cp"),
      listen: { host: "127.0.0.1", port: 0 },
      clock,
      logger: cpLogger,
    });
    stops.push(() => cp.close());

    // The pool.
    let poolUrl = opts.pool;
    let poolAccepted: (() => number) | null = null;
    if (poolUrl === undefined) {
      const { SimPool } = await import("../../sim/pool/server.ts");
      const pool = await SimPool.start({ difficulty: 2 ** -16, jobIntervalMs: 10_000 });
      stops.push(() => pool.close());
      poolUrl = `stratum+tcp://127.0.0.1:${pool.address.port}`;
      poolAccepted = () => pool.stats().accepted;
    }

    // The owner: a key, registered, a token, and the machine enrolled with it.
    const owner = generateEd25519KeyPair();
    const ownerKey = join(dir, "owner.key");
    writeKeyPair(ownerKey, join(dir, "owner.key.pub"), owner.privateKey, { force: true });
    const adminApi = createApiClient({
      url: cp.url,
      caPem: cp.caCertPem,
      clock,
      apiKey: admin.api_key,
    });
    const registered = await adminApi.createOwner({ jwk: publicJwk(owner.publicKey) });
    adminApi.close();
    const ownerApi = createApiClient({
      url: cp.url,
      caPem: cp.caCertPem,
      clock,
      apiKey: registered.api_key,
    });
    stops.push(() => ownerApi.close());
    const { token } = await ownerApi.createEnrollmentToken();
    const facts = collectHostFacts({ agentVersion: VERSION });
    const enrolled = await enrollMachine({
      stateDir: agentDir,
      token,
      ownerPub: owner.publicKey,
      facts,
      clock,
      force: true,
    });

    // The agent, then the owner's consent for it. The services' processes outlive the agent
    // (the process driver leaves them for the next agent to adopt): stopped after it closed.
    if (services !== null) {
      stops.push(() =>
        stopServiceProcesses({
          agentDir,
          workerId: enrolled.worker_id,
          timers: io.timers,
          logger: logger.child({ component: "devnet" }),
        }),
      );
    }
    const agent = await startAgent({
      stateDir: agentDir,
      clock,
      logger: logger.child({ component: "agent" }),
      agentVersion: VERSION,
      heartbeatIntervalS: config.heartbeat.interval_s,
      hostFacts: () => facts,
      apiSocket,
      config,
      stratum: { host: "127.0.0.1", port: 0 },
      longPollS: 5,
      recentLogs: (n) => ring.lines(n),
      // No drivers' user on a developer's machine: the driver host warns that it runs as you.
      driversAsInvokingUser: true,
    });
    stops.push(() => agent.close());
    const now = Math.floor(clock.now() / 1000);
    await ownerApi.postConsent(
      signConsent({
        ownerKey: owner.privateKey,
        worker: enrolled.worker_id,
        policyId: "devnet",
        seq: 1,
        iat: now,
        exp: now + 30 * 86_400,
        rules: {
          // The proxy mines to the first (it speaks Stratum V1 and skips sv2+tcp entries);
          // the supervised translator is configured from the second.
          upstreams: [{ url: poolUrl, user }, ...(services === null ? [] : [services.sv2Upstream])],
          networks: ["127.0.0.1/32"],
          commands: ["mining.pause", "mining.resume"],
          ...(services === null ? {} : { services: services.allowed }),
        },
      }),
    );

    // The ASICs, mixed profiles, through the agent's proxy.
    const { SimCluster } = await import("../../sim/asic/cluster.ts");
    for (let i = 0; i < PROFILES.length; i++) {
      const count = Math.floor(asics / PROFILES.length) + (i < asics % PROFILES.length ? 1 : 0);
      if (count === 0) continue;
      const cluster = await SimCluster.start({
        count,
        profile: PROFILES[i] as ProfileName,
        pools: [`stratum+tcp://127.0.0.1:${agent.stratum.port}`],
        user: "devnet",
        retryDelayMs: 500,
      });
      stops.push(() => cluster.stop());
    }

    const stopped = untilSignal();
    io.stdout(
      `${JSON.stringify({
        ready: true,
        dir,
        state_dir: agentDir,
        cp: cp.url,
        worker_id: enrolled.worker_id,
        owner_key: ownerKey,
        api_socket: apiSocket,
        stratum: agent.stratum,
        pool: poolUrl,
        asics,
        services: services?.endpoints ?? null,
        try: tryCommands({
          agentd: agentdInvocation(),
          stateDir: agentDir,
          ownerKey,
          workerId: enrolled.worker_id,
          services: services !== null,
        }),
      })}\n`,
    );

    // Status lines: gathered asynchronously (the local API), so one at a time, and none once
    // stopping has begun; each is written whole, one JSON object per line.
    let closing = false;
    let inFlight: Promise<void> | null = null;
    const tick = () => {
      if (closing || inFlight !== null) return;
      inFlight = devnetStatus({
        status: () => agent.status(),
        apiSocket,
        poolAccepted,
        clock,
        logger,
      })
        .then((line) => {
          if (!closing) io.stdout(`${JSON.stringify(line)}\n`);
        })
        .catch((err: unknown) => logger.warn({ err }, "devnet: a status line"))
        .finally(() => {
          inFlight = null;
        });
    };
    const timer = io.timers.setInterval(tick, opts.every * 1000);
    stops.push(async () => {
      closing = true;
      io.timers.clearInterval(timer);
      await inFlight;
    });
    const signal = await stopped;
    logger.info({ signal }, "devnet: shutting down");
    // A second Ctrl-C while the services stop would kill this process and leave them running
    // (they are in their own process groups): it is only acknowledged until everything stopped.
    const patience = (again: NodeJS.Signals) =>
      logger.warn({ signal: again }, "devnet: still stopping the services (SIGKILL abandons them)");
    process.on("SIGINT", patience);
    process.on("SIGTERM", patience);
    stops.unshift(() => {
      process.off("SIGINT", patience);
      process.off("SIGTERM", patience);
    });
  } finally {
    await stopAll();
  }
  return 0;
}
