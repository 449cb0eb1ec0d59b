import { mkdirSync, mkdtempSync } from "node:fs";
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
import { signConsent } from "../../policy-guard/sign.ts";
import type { ProfileName } from "../../sim/asic/profiles.ts";
import { globalsOf, loadCliConfig } from "../config-context.ts";
import type { CliIo } from "../io.ts";
import { type Run, VERSION } from "../program.ts";
import { untilSignal } from "../signals.ts";

const HELP = `
Runs the whole system on this machine, for a look and for trying things: the reference control
plane (SQLite in DIR/cp), an owner (key in DIR/owner.key) who registers, enrolls a machine
and publishes a demo consent (mine to the simulated pool, ASICs from 127.0.0.1), the agent of
that machine (state in DIR/agent, its Stratum proxy and local API), a simulated pool, and N
simulated ASICs doing real SHA-256d work through the proxy.

The first stdout line is {"ready": true, "dir", "cp", "worker_id", "owner_key", "api_socket",
"stratum", "pool", "asics"}; then one JSON line every few seconds: state, decision, miners,
shares at the pool. In another terminal, stop the data path as the owner would:

  agentd consent revoke --owner-key DIR/owner.key --worker ID --through-seq 1 --apply \\
    --set api.socket=DIR/agent/agentd.sock

Ctrl-C stops everything cleanly. --pool URL mines to an external pool instead of the simulated
one (shares are then counted there, not here). DIR defaults to a new temporary directory.
`;

/** Profiles whose miners take the proxy's difficulty (the rest suggest ASIC-sized ones). */
const PROFILES: readonly ProfileName[] = ["cpuminer", "s9", "s19"];

export function registerDevnet(program: Command, io: CliIo, run: Run): void {
  program
    .command("devnet")
    .description("run control plane, agent, simulated pool and ASICs together, on this machine")
    .addHelpText("after", HELP)
    .option("--dir <dir>", "where everything keeps its state (default: a new temp dir)")
    .option("--asics <n>", "simulated ASICs", "10")
    .option(
      "--pool <url>",
      "an external pool (stratum+tcp://host:port) instead of the simulated one",
    )
    .option("--status-interval <s>", "seconds between status lines", "5")
    .action(
      (
        opts: { dir?: string; asics: string; pool?: string; statusInterval: string },
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
          const dir = resolve(opts.dir ?? mkdtempSync(join(tmpdir(), "agentd-devnet-")));
          mkdirSync(dir, { recursive: true, mode: 0o700 });
          const agentDir = join(dir, "agent");
          const apiSocket = join(agentDir, "agentd.sock");
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
          ]);
          const logger = createLogger({ level: config.log.level as LogLevel });
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
              logger: logger.child({ component: "control-plane" }),
            });
            stops.push(() => cp.close());

            // The pool.
            let poolUrl = opts.pool;
            let poolStats: (() => { accepted: number }) | null = null;
            if (poolUrl === undefined) {
              const { SimPool } = await import("../../sim/pool/server.ts");
              const pool = await SimPool.start({ difficulty: 2 ** -16, jobIntervalMs: 10_000 });
              stops.push(() => pool.close());
              poolUrl = `stratum+tcp://127.0.0.1:${pool.address.port}`;
              poolStats = () => pool.stats();
            }

            // The owner: a key, registered, a token, and the machine enrolled with it.
            const owner = generateEd25519KeyPair();
            writeKeyPair(join(dir, "owner.key"), join(dir, "owner.key.pub"), owner.privateKey, {
              force: true,
            });
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

            // The agent, then the owner's consent for it.
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
                  upstreams: [{ url: poolUrl, user: "devnet.rig" }],
                  networks: ["127.0.0.1/32"],
                  commands: ["mining.pause", "mining.resume"],
                },
              }),
            );

            // The ASICs, mixed profiles, through the agent's proxy.
            const { SimCluster } = await import("../../sim/asic/cluster.ts");
            for (let i = 0; i < PROFILES.length; i++) {
              const count =
                Math.floor(asics / PROFILES.length) + (i < asics % PROFILES.length ? 1 : 0);
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
                cp: cp.url,
                worker_id: enrolled.worker_id,
                owner_key: join(dir, "owner.key"),
                api_socket: apiSocket,
                stratum: agent.stratum,
                pool: poolUrl,
                asics,
              })}\n`,
            );
            const timer = io.timers.setInterval(() => {
              const s = agent.status() as {
                state: string;
                decision: { mining: boolean; reasons: string[] };
                miners: number;
                heartbeats: { sent: number };
              };
              io.stdout(
                `${JSON.stringify({
                  at: new Date(clock.now()).toISOString(),
                  state: s.state,
                  mining: s.decision.mining,
                  reasons: s.decision.reasons,
                  miners: s.miners,
                  pool_accepted: poolStats?.().accepted ?? null,
                  heartbeats_sent: s.heartbeats.sent,
                })}\n`,
              );
            }, every * 1000);
            stops.push(() => io.timers.clearInterval(timer));
            const signal = await stopped;
            logger.info({ signal }, "devnet: shutting down");
          } finally {
            await stopAll();
          }
          return 0;
        }),
    );
}
