/**
 * The agent's side of the driver host (README.md in this folder): starts the host process
 * under the drivers' own OS user with an empty environment and Node's permission model,
 * restarts it with backoff when it crashes, hangs or floods, and gives the agent one
 * MinerDriver per miner whose calls travel to the host as schema-checked messages.
 *
 * Fail closed: without the drivers' user (or when it cannot read the code) drivers do not run
 * and every call says why. Only `runAsInvokingUser` (the devnet's) runs them as the agent's
 * own user, and a warning says so.
 */
import { realpathSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import type { Clock } from "../../lib/clock.ts";
import { AgentdError } from "../../lib/errors.ts";
import type { Logger } from "../../lib/log/logger.ts";
import type { TimerHandle, Timers } from "../../lib/timers.ts";
import {
  type Credentials,
  DEFAULT_LIMITS,
  type DriverLimits,
  type Family,
  type Identity,
  type MeterReading,
  type MeterSpec,
  type MinerDriver,
  type MinerEndpoint,
} from "../driver.ts";
import { DEFAULT_TIMING, HOST_HEAP_MB, type HostTiming, MAX_REPLY_BYTES } from "./limits.ts";
import type { MinerSpec, Op, Results } from "./messages.ts";
import { lookupUser, type OsUser, unreadableBy } from "./os-user.ts";
import {
  type ExitReason,
  HostSession,
  type RequestBody,
  type SessionExit,
  unavailable,
} from "./session.ts";

export const DEFAULT_DRIVER_USER = "agentd-drivers";

export interface DriverHostStatus {
  /** idle: not started yet (it starts with the first request); refused: drivers do not run. */
  readonly state: "idle" | "running" | "restarting" | "refused" | "stopping" | "stopped";
  /** The drivers' OS user; null when they run as the invoking user (the devnet). */
  readonly user: string | null;
  readonly isolated: boolean;
  readonly code: string | null;
  readonly reason: string | null;
  readonly starts: number;
}

export type HostEvent =
  | { readonly type: "started"; readonly pid: number | null }
  | { readonly type: "ready"; readonly pid: number }
  | ({ readonly type: "exited" } & SessionExit)
  | { readonly type: "restart-scheduled"; readonly delayMs: number; readonly failures: number }
  | { readonly type: "stopped" };

export interface DriverHostOptions {
  readonly logger: Logger;
  readonly clock: Clock;
  readonly timers: Timers;
  /** The drivers' OS user (default `agentd-drivers`). */
  readonly user?: string;
  /** Run the host as the agent's own user: the devnet only, and it warns. */
  readonly runAsInvokingUser?: boolean;
  readonly timing?: Partial<HostTiming>;
  readonly maxReplyBytes?: number;
  /** Where the host's code lives (the checkout or install root); this one by default. */
  readonly codeRoot?: string;
  readonly onEvent?: (event: HostEvent) => void;
  /**
   * Tests only, and never from configuration (no config key reaches it; the daemon never sets
   * it): a registry module of fixture drivers to load in place of plugins/registry.ts, and the
   * permission model turned off to show what the OS user alone stops.
   */
  readonly testOnly?: { readonly registryModule?: string; readonly permissionModel?: false };
}

type State = "idle" | "running" | "refused" | "stopping" | "stopped";

/** A read or a detection is a few requests to the miner; this many is generous. */
const IO_ROUNDS = 6;

/**
 * How long the agent waits for a request's answer before it counts the host as hung. Generous
 * on purpose: the drivers' own limits end a slow miner's request first; this only catches a
 * host that will never answer.
 */
export function requestDeadlineMs(op: Op, limits: DriverLimits, timing: HostTiming): number {
  if (op === "ping") return timing.pingTimeoutMs;
  const io = IO_ROUNDS * limits.requestTimeoutMs;
  const action = op !== "detect" && op !== "read" && op !== "meter";
  return timing.marginMs + (action ? 2 * io + limits.confirmDeadlineMs : io);
}

export class DriverHost {
  readonly #o: DriverHostOptions;
  readonly #timing: HostTiming;
  #state: State = "idle";
  #refusal: AgentdError | null = null;
  #user: OsUser | null = null;
  #session: HostSession | null = null;
  #restart: TimerHandle | null = null;
  #failures = 0;
  #readyAt: number | null = null;
  #first: { resolve: () => void; reject: (e: unknown) => void } | null = null;
  #started: Promise<void> | null = null;
  #stopped: Promise<void> | null = null;
  readonly #stats = {
    starts: 0,
    exits: {} as Partial<Record<ExitReason, number>>,
    peakBufferedBytes: 0,
  };

  constructor(options: DriverHostOptions) {
    this.#o = options;
    this.#timing = { ...DEFAULT_TIMING, ...options.timing };
  }

  /**
   * Starts the host; resolves once it has said hello. Rejects AGENTD_E_DRIVER_USER_MISSING
   * (no drivers' user) or AGENTD_E_DRIVER_HOST_UNAVAILABLE (it cannot read the code; or the
   * first host died before its hello — it is then restarted with backoff all the same).
   */
  start(): Promise<void> {
    this.#started ??= new Promise<void>((resolve, reject) => {
      try {
        this.#user = this.#resolveUser();
        this.#checkReadable();
      } catch (err) {
        this.#state = "refused";
        this.#refusal = err as AgentdError;
        this.#o.logger.error({ err }, "drivers do not run");
        return reject(err);
      }
      this.#first = { resolve, reject };
      this.#state = "running";
      this.#spawn();
    });
    return this.#started;
  }

  /** Stops the host (once; every call returns the same promise). */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#state = "stopping";
      if (this.#restart !== null) this.#o.timers.clearTimeout(this.#restart);
      this.#restart = null;
      await this.#session?.stop();
      this.#session = null;
      this.#state = "stopped";
      this.#o.onEvent?.({ type: "stopped" });
    })();
    return this.#stopped;
  }

  /** One miner, driven through the host. */
  driver(
    family: Family,
    endpoint: MinerEndpoint,
    credentials: Credentials | null,
    limits: DriverLimits = DEFAULT_LIMITS,
  ): MinerDriver {
    const miner = minerSpec(family, endpoint, credentials, limits);
    const call = <O extends Op>(op: O, args?: object) =>
      this.#call(op, limits, args === undefined ? { miner } : { miner, args });
    return {
      family,
      detect: () => call("detect"),
      read: () => call("read"),
      setPools: (slots) =>
        call("setPools", {
          slots: slots.map((s) => ({ url: s.url, user: s.user, password: s.password })),
        }),
      sleep: () => call("sleep"),
      wake: () => call("wake"),
      setPowerMode: (mode) => call("setPowerMode", { mode }),
      setPowerTarget: (watts) => call("setPowerTarget", { watts }),
      reboot: () => call("reboot"),
    };
  }

  /** One power meter's reading, through the host like every other device on the LAN. */
  readMeter(
    meter: MeterSpec,
    credentials: Credentials | null,
    limits: DriverLimits = DEFAULT_LIMITS,
  ): Promise<MeterReading> {
    const wire = { ...meter, feeds: [...meter.feeds] };
    return this.#call("meter", limits, { meter: wire, credentials, limits });
  }

  /** Who answers at `endpoint`, the family found by the host unless given. */
  detect(
    endpoint: MinerEndpoint,
    credentials: Credentials | null,
    family: Family | "auto" = "auto",
    limits: DriverLimits = DEFAULT_LIMITS,
  ): Promise<Identity> {
    return this.#call("detect", limits, {
      miner: minerSpec(family, endpoint, credentials, limits),
    });
  }

  /**
   * Whether drivers can run here, without starting anything: the user and the code's
   * readability checked now (the agent says why at start, not at the first miner). Null: fine.
   */
  preflight(): AgentdError | null {
    if (this.#refusal !== null) return this.#refusal;
    try {
      const user = this.#o.runAsInvokingUser === true ? null : this.#lookup();
      if (user !== null) {
        const saved = this.#user;
        this.#user = user;
        try {
          this.#checkReadable();
        } finally {
          this.#user = saved;
        }
      }
      return null;
    } catch (err) {
      if (err instanceof AgentdError) return err;
      throw err;
    }
  }

  /** What status shows: whether the host runs, under whom, and why not. */
  status(): DriverHostStatus {
    const state: DriverHostStatus["state"] =
      this.#refusal !== null
        ? "refused"
        : this.#session !== null
          ? "running"
          : this.#state === "running"
            ? "restarting"
            : this.#state === "refused"
              ? "refused"
              : this.#state;
    return {
      state,
      user: this.#o.runAsInvokingUser === true ? null : (this.#o.user ?? DEFAULT_DRIVER_USER),
      isolated: this.#o.runAsInvokingUser !== true,
      code: this.#refusal?.code ?? null,
      reason: this.#refusal?.message ?? null,
      starts: this.#stats.starts,
    };
  }

  stats(): {
    starts: number;
    exits: Partial<Record<ExitReason, number>>;
    peakBufferedBytes: number;
  } {
    const peak = Math.max(this.#stats.peakBufferedBytes, this.#session?.peakBufferedBytes ?? 0);
    return { starts: this.#stats.starts, exits: { ...this.#stats.exits }, peakBufferedBytes: peak };
  }

  #call<O extends Op>(op: O, limits: DriverLimits, body: RequestBody): Promise<Results[O]> {
    if (this.#refusal !== null) return Promise.reject(this.#refusal);
    // Started by the first request: no process while there is nothing to drive.
    if (this.#state === "idle") return this.start().then(() => this.#call(op, limits, body));
    const session = this.#session;
    if (session === null) {
      const why = this.#state === "running" ? "restarting" : this.#state;
      return Promise.reject(unavailable(`the driver host is not running (${why})`, why));
    }
    const deadline = requestDeadlineMs(op, limits, this.#timing);
    return session.call(op, body, deadline) as Promise<Results[O]>;
  }

  #resolveUser(): OsUser | null {
    if (this.#o.runAsInvokingUser === true) {
      this.#o.logger.warn(
        { uid: process.getuid?.() ?? null },
        "drivers run as the invoking user, not isolated from the agent (runAsInvokingUser: devnet only)",
      );
      return null;
    }
    return this.#lookup();
  }

  #lookup(): OsUser {
    const name = this.#o.user ?? DEFAULT_DRIVER_USER;
    const user = lookupUser(name);
    if (user === null) {
      throw new AgentdError(
        "AGENTD_E_DRIVER_USER_MISSING",
        `the drivers' OS user ${JSON.stringify(name)} does not exist, so drivers do not run ` +
          `(they must not run as the agent's user); create it: useradd --system --no-create-home --shell /usr/sbin/nologin ${name}`,
        { context: { user: name } },
      );
    }
    if (user.uid === 0) {
      throw new AgentdError("AGENTD_E_DRIVER_USER_MISSING", `the drivers' user ${name} is root`, {
        context: { user: name },
      });
    }
    return user;
  }

  /** The drivers' user must reach Node and read the code; said plainly when it cannot. */
  #checkReadable(): void {
    const user = this.#user;
    if (user === null) return;
    const problems = [
      unreadableBy(user, process.execPath, "exec"),
      ...this.#readPaths().map((p) => unreadableBy(user, p)),
    ].filter((p) => p !== null);
    if (problems.length > 0) {
      throw new AgentdError(
        "AGENTD_E_DRIVER_HOST_UNAVAILABLE",
        `the drivers' user ${user.name} cannot read the code it must run: ${problems.join("; ")}`,
        { context: { reason: "code-unreadable", user: user.name } },
      );
    }
  }

  #codeRoot(): string {
    return realpathSync(this.#o.codeRoot ?? fileURLToPath(new URL("../../", import.meta.url)));
  }

  /** What the host may read: the code, and node_modules where it really is (a symlink). */
  #readPaths(): string[] {
    const root = this.#codeRoot();
    const paths = [root];
    const extra = [join(root, "node_modules"), this.#o.testOnly?.registryModule];
    for (const p of extra) {
      if (p === undefined) continue;
      let real: string;
      try {
        real = realpathSync(p);
      } catch {
        continue;
      }
      if (relative(root, real).startsWith("..")) paths.push(real);
    }
    return paths;
  }

  /**
   * The host's command line: this Node with the permission model — reads only where the code
   * is; no writes, child processes, workers, addons or WASI (none allowed: the flags that
   * would are absent) — a bounded heap, then `agentd driver-host`.
   */
  #command(): { file: string; args: string[] } {
    const t = this.#o.testOnly;
    const permission =
      t?.permissionModel === false
        ? []
        : ["--permission", ...this.#readPaths().map((p) => `--allow-fs-read=${p}`)];
    return {
      file: process.execPath,
      args: [
        ...permission,
        "--disable-warning=ExperimentalWarning",
        `--max-old-space-size=${HOST_HEAP_MB}`,
        join(this.#codeRoot(), "cli", "main.ts"),
        "driver-host",
        ...(t?.registryModule === undefined ? [] : ["--registry-module", t.registryModule]),
      ],
    };
  }

  #spawn(): void {
    const { file, args } = this.#command();
    this.#readyAt = null;
    this.#stats.starts++;
    const session = new HostSession({
      file,
      args,
      user: this.#user,
      timers: this.#o.timers,
      logger: this.#o.logger,
      timing: this.#timing,
      maxReplyBytes: this.#o.maxReplyBytes ?? MAX_REPLY_BYTES,
      onReady: (pid) => {
        this.#readyAt = this.#o.clock.now();
        this.#o.onEvent?.({ type: "ready", pid });
        this.#first?.resolve();
        this.#first = null;
      },
      onExit: (exit) => this.#onExit(session, exit),
    });
    this.#session = session;
    this.#o.onEvent?.({ type: "started", pid: session.pid });
  }

  #onExit(session: HostSession, exit: SessionExit): void {
    this.#stats.exits[exit.reason] = (this.#stats.exits[exit.reason] ?? 0) + 1;
    this.#stats.peakBufferedBytes = Math.max(
      this.#stats.peakBufferedBytes,
      session.peakBufferedBytes,
    );
    if (this.#session === session) this.#session = null;
    this.#o.onEvent?.({ type: "exited", ...exit });
    if (this.#state !== "running") return;
    if (this.#first !== null) {
      this.#first.reject(
        unavailable(
          `the driver host ${exit.reason} before it was ready: ${exit.tail.join(" | ")}`,
          exit.reason,
        ),
      );
      this.#first = null;
    }
    const served = this.#readyAt === null ? 0 : this.#o.clock.now() - this.#readyAt;
    if (served >= this.#timing.stableAfterMs) this.#failures = 0;
    this.#failures++;
    const t = this.#timing;
    const delayMs = Math.min(t.maxBackoffMs, t.initialBackoffMs * 2 ** (this.#failures - 1));
    this.#o.logger.warn(
      { reason: exit.reason, code: exit.code, signal: exit.signal, delay_ms: delayMs },
      "driver host exited; restarting",
    );
    this.#o.onEvent?.({ type: "restart-scheduled", delayMs, failures: this.#failures });
    this.#restart = this.#o.timers.setTimeout(() => {
      this.#restart = null;
      if (this.#state === "running") this.#spawn();
    }, delayMs);
  }
}

function minerSpec<F extends Family | "auto">(
  family: F,
  endpoint: MinerEndpoint,
  credentials: Credentials | null,
  limits: DriverLimits,
): MinerSpec<F> {
  // Copies of exactly the fields the schema knows: a caller's object may carry more.
  return {
    family,
    endpoint: {
      host: endpoint.host,
      ...(endpoint.apiPort === undefined ? {} : { apiPort: endpoint.apiPort }),
      ...(endpoint.webPort === undefined ? {} : { webPort: endpoint.webPort }),
      ...(endpoint.grpcPort === undefined ? {} : { grpcPort: endpoint.grpcPort }),
    },
    credentials:
      credentials === null
        ? null
        : { username: credentials.username, password: credentials.password },
    limits: {
      maxReplyBytes: limits.maxReplyBytes,
      requestTimeoutMs: limits.requestTimeoutMs,
      confirmDeadlineMs: limits.confirmDeadlineMs,
      confirmIntervalMs: limits.confirmIntervalMs,
    },
  };
}
