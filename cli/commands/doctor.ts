import { existsSync, statSync } from "node:fs";
import { request } from "node:http";
import { createServer } from "node:net";
import { join } from "node:path";
import type { Command } from "commander";
import { readEnrollment } from "../../agent/enrollment.ts";
import { loadMachineIdentity } from "../../agent/identity.ts";
import { localApiGet } from "../../agent/local-api.ts";
import { createApiClient } from "../../control-plane/protocol/client-api.ts";
import type { AgentdConfig } from "../../lib/config/schema.ts";
import { isAgentdError } from "../../lib/errors.ts";
import { verifyChainLog } from "../../lib/fs/chain-log.ts";
import { checkTrustedDirectory } from "../../lib/fs/trust.ts";
import { parseHostPort } from "../../lib/http/host-port.ts";
import { stopwatch } from "../../lib/timers.ts";
import { GUARD_STATE_FILE, loadGuardState } from "../../policy-guard/state.ts";
import { agentAddress, withStateDir } from "../agent-socket.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import type { Run } from "../program.ts";

/**
 * `agentd doctor`: what an operator checks first when something is wrong, in one command.
 * Each check is ok, warn (works, but look at it) or fail (this stops the agent or mining);
 * exit 0 without a fail, 1 with one. Read-only: it changes nothing and never prints a secret.
 *
 *   config         the configuration loads and validates (and from where)
 *   state_dir      exists, owned by this user, not writable by others
 *   machine_key    the machine key passes the trust checks (0600), its worker id
 *   enrollment     enrolled, with which control plane and owner
 *   clock          not behind the policy guard's clock floor (documents would be refused)
 *   control_plane  /healthz answers over the pinned CA, and how fast
 *   agent          the local API answers: the agent's state and decision
 *   audit_log      the hash chain verifies
 *   engine_socket  the Docker Engine API (Docker or Podman) answers /_ping on `docker.host`
 *                  (the supervisor's docker driver needs it)
 *   stratum_port   the Stratum port is the running agent's, or free to bind
 */

type Status = "ok" | "warn" | "fail";
interface Check {
  readonly name: string;
  readonly status: Status;
  readonly detail: string;
}

const message = (err: unknown) =>
  isAgentdError(err)
    ? `${err.code}: ${err.message}`
    : err instanceof Error
      ? err.message
      : String(err);

async function runChecks(
  io: CliIo,
  config: AgentdConfig,
  source: string,
  socket: string,
): Promise<Check[]> {
  const checks: Check[] = [{ name: "config", status: "ok", detail: source }];
  const add = (name: string, status: Status, detail: string) =>
    checks.push({ name, status, detail });
  const dir = config.paths.state_dir;

  try {
    checkTrustedDirectory(dir);
    add("state_dir", "ok", dir);
  } catch (err) {
    add("state_dir", "fail", message(err));
  }
  try {
    add("machine_key", "ok", `worker ${loadMachineIdentity(dir).workerId}`);
  } catch (err) {
    add("machine_key", "fail", message(err));
  }
  let enrolled: ReturnType<typeof readEnrollment> = null;
  try {
    enrolled = readEnrollment(dir);
    if (enrolled === null) add("enrollment", "fail", "not enrolled: run agentd enroll");
    else add("enrollment", "ok", `${enrolled.record.url}, owner ${enrolled.record.owner_id}`);
  } catch (err) {
    add("enrollment", "fail", message(err));
  }

  const nowS = Math.floor(io.clock.now() / 1000);
  try {
    const path = join(dir, GUARD_STATE_FILE);
    if (!existsSync(path)) add("clock", "ok", "no clock floor yet");
    else {
      const floor = loadGuardState(path).counters.clockFloorS;
      const behind = floor - nowS;
      if (behind > 60) {
        add("clock", "fail", `${behind} s behind the latest time this machine has seen: fix NTP`);
      } else
        add("clock", "ok", `at or after the clock floor (${new Date(floor * 1000).toISOString()})`);
    }
  } catch (err) {
    add("clock", "fail", message(err));
  }

  if (enrolled !== null) {
    const client = createApiClient({
      url: enrolled.record.url,
      caPem: enrolled.record.ca_pem,
      clock: io.clock,
      timeoutMs: 5_000,
    });
    const elapsed = stopwatch();
    try {
      await client.health();
      add(
        "control_plane",
        "ok",
        `${enrolled.record.url} answers in ${Math.round(elapsed() * 1000)} ms`,
      );
    } catch (err) {
      add(
        "control_plane",
        "warn",
        `unreachable (mining continues until the offline grace ends): ${message(err)}`,
      );
    } finally {
      client.close();
    }
  }

  let agentStratum: { host: string; port: number } | null = null;
  /** The running agent's supervisor: "off", its driver's name, or null when not asked. */
  let supervision: string | null = null;
  try {
    const s = await localApiGet(socket, "/v1/status");
    const d = s.decision as { mining: boolean; reasons: string[] };
    agentStratum = (s.stratum as { host: string; port: number } | undefined) ?? null;
    // The running agent's floor is newer than the one on disk (written every few minutes).
    const clock = checks.find((c) => c.name === "clock");
    if (
      d.reasons.includes("clock.behind_floor") &&
      clock !== undefined &&
      clock.status !== "fail"
    ) {
      checks.splice(checks.indexOf(clock), 1, {
        name: "clock",
        status: "fail",
        detail: "the running agent finds the clock behind the latest time it has seen: fix NTP",
      });
    }
    add(
      "agent",
      "ok",
      `${String(s.state)}; mining ${d.mining ? "allowed" : `denied: ${d.reasons.join(", ")}`}`,
    );
    const services = await localApiGet(socket, "/v1/services");
    supervision =
      services.supervisor === "off"
        ? "off"
        : String((services.driver as { name?: unknown } | undefined)?.name ?? "?");
  } catch (err) {
    add("agent", "warn", `not running (${socket}): ${message(err)}`);
  }

  const auditPath = join(dir, "audit.jsonl");
  if (!existsSync(auditPath)) add("audit_log", "ok", "no audit log yet");
  else {
    try {
      const v = verifyChainLog(auditPath);
      if (v.ok) add("audit_log", "ok", `${v.records} records verify`);
      else add("audit_log", "fail", `${v.error.code} at record ${v.records + 1}`);
    } catch (err) {
      add("audit_log", "fail", message(err)); // e.g. not readable by this user
    }
  }

  // Only the docker driver needs the Docker Engine API: the running agent says which it uses.
  const docker = dockerSocket(config, io.env);
  if (supervision === "off")
    add("engine_socket", "ok", "not needed: the agent supervises no services");
  else if (supervision === "processes") {
    add("engine_socket", "ok", "not needed: the agent supervises native processes");
  } else if (docker === null)
    add("engine_socket", "warn", "no Docker Engine API socket configured (docker.host)");
  else if (!existsSync(docker) || !statSync(docker).isSocket()) {
    add("engine_socket", "warn", `${docker}: no socket (services cannot be supervised)`);
  } else {
    const pong = await ping(docker);
    add("engine_socket", pong === "OK" ? "ok" : "warn", `${docker}: ${pong}`);
  }

  const { host, port } = parseHostPort(config.stratum.listen, "stratum.listen");
  if (agentStratum !== null)
    add("stratum_port", "ok", `the agent listens on ${agentStratum.host}:${agentStratum.port}`);
  else if (port === 0) add("stratum_port", "ok", "port 0: any free port");
  else {
    const free = await canBind(host, port);
    add(
      "stratum_port",
      free === true ? "ok" : "fail",
      free === true ? `${host}:${port} is free` : `${host}:${port}: ${free}`,
    );
  }
  return checks;
}

/** The Docker Engine API's unix socket, as the supervisor's docker driver would dial it. */
function dockerSocket(config: AgentdConfig, env: NodeJS.ProcessEnv): string | null {
  const h =
    config.docker.host !== ""
      ? config.docker.host
      : (env.DOCKER_HOST ?? "unix:///var/run/docker.sock");
  return h.startsWith("unix://") ? h.slice("unix://".length) : null;
}

function ping(socketPath: string): Promise<string> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: "/_ping", method: "GET", timeout: 3_000 }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => {
        body += c.toString("utf8");
      });
      res.on("end", () =>
        resolve(res.statusCode === 200 ? body.trim() || "OK" : `HTTP ${res.statusCode}`),
      );
    });
    req.on("timeout", () => req.destroy(new Error("no answer in 3 s")));
    req.on("error", (err) => resolve(err.message));
    req.end();
  });
}

function canBind(host: string, port: number): Promise<true | string> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

export function registerDoctor(program: Command, io: CliIo, run: Run): void {
  withStateDir(
    program
      .command("doctor")
      .description(
        "check config, keys, clock, control plane, agent, audit log, Docker socket, ports",
      ),
  )
    .option("--json", "machine-readable output", false)
    .action((opts: { json: boolean }, cmd: Command) =>
      run(opts.json, async () => {
        const { socket, loaded } = agentAddress(io, cmd);
        const checks = await runChecks(
          io,
          loaded.config,
          loaded.file ?? "defaults (no config file)",
          socket,
        );
        const ok = checks.every((c) => c.status !== "fail");
        printResult(
          io,
          opts.json,
          { ok, checks },
          checks.map((c) => `${c.status.padEnd(4)}  ${c.name.padEnd(14)} ${c.detail}`).join("\n"),
        );
        return ok ? 0 : 1;
      }),
    );
}
