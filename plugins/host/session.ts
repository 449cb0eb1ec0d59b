/**
 * One driver host process and the traffic with it: requests in flight with their deadlines,
 * replies checked against their schemas, the liveness ping, and the three ways a host is
 * given up on — it crashed (exited by itself), it hung (a request or a ping not answered in
 * time), it flooded (a message past the bound, or too many invalid ones). A host given up on
 * is SIGKILLed and every request in flight rejects AGENTD_E_DRIVER_HOST_UNAVAILABLE; the
 * launcher (launcher.ts) decides when to start the next one.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { AgentdError, type ErrorCode, isAgentdError } from "../../lib/errors.ts";
import type { Logger } from "../../lib/log/logger.ts";
import type { TimerHandle, Timers } from "../../lib/timers.ts";
import {
  type HostTiming,
  MAX_IN_FLIGHT,
  MAX_INVALID_PER_INTERVAL,
  STDERR_LINE_BYTES,
  STDERR_LINES_PER_INTERVAL,
} from "./limits.ts";
import { LineReader } from "./lines.ts";
import {
  checkResult,
  decodeHostMessage,
  encode,
  invalid,
  type Op,
  type Request,
} from "./messages.ts";
import type { OsUser } from "./os-user.ts";
import { StderrForwarder } from "./stderr.ts";

export type ExitReason = "crashed" | "hung" | "flooding" | "stopped" | "spawn-failed";

export interface SessionExit {
  readonly pid: number | null;
  readonly reason: ExitReason;
  readonly code: number | null;
  readonly signal: string | null;
  /** The host's last stderr lines (why a host died at start). */
  readonly tail: readonly string[];
}

export interface SessionOptions {
  readonly file: string;
  readonly args: readonly string[];
  /** null: as the invoking user (the devnet only). */
  readonly user: OsUser | null;
  readonly timers: Timers;
  readonly logger: Logger;
  readonly timing: HostTiming;
  readonly maxReplyBytes: number;
  readonly onReady: (pid: number) => void;
  readonly onExit: (exit: SessionExit) => void;
}

interface Pending {
  readonly op: Op;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
  readonly timer: TimerHandle;
}

/** The body of a request: everything but `v`, `id` and `op`. */
export type RequestBody = Omit<Request, "v" | "id" | "op">;

export class HostSession {
  readonly #o: SessionOptions;
  readonly #child: ChildProcess | null;
  readonly #pending = new Map<number, Pending>();
  readonly #reader: LineReader;
  readonly #stderr: StderrForwarder;
  readonly #timers: TimerHandle[] = [];
  #interval: TimerHandle | null = null;
  #nextId = 1;
  #ready = false;
  #invalid = 0;
  /** Why the agent ended it (set before the kill), null while it runs or when it died itself. */
  #givenUp: ExitReason | null = null;
  #exited = false;
  #stopping: Promise<void> | null = null;
  readonly #exitWaiters: (() => void)[] = [];

  constructor(o: SessionOptions) {
    this.#o = o;
    this.#reader = new LineReader(
      o.maxReplyBytes,
      (line) => this.#onLine(line),
      (bytes) => this.kill("flooding", `a message of ${bytes}+ bytes (bound ${o.maxReplyBytes})`),
    );
    this.#stderr = new StderrForwarder(o.logger, STDERR_LINE_BYTES, STDERR_LINES_PER_INTERVAL);
    let child: ChildProcess | null = null;
    try {
      child = spawn(o.file, [...o.args], {
        // Nothing of the agent's environment (tokens, paths, AGENTD_* settings) reaches drivers.
        env: {},
        cwd: "/",
        stdio: ["pipe", "pipe", "pipe"],
        ...(o.user === null ? {} : { uid: o.user.uid, gid: o.user.gid }),
      });
    } catch (err) {
      // Errors other than ENOENT/EACCES (EPERM: the agent may not change uid) throw here.
      queueMicrotask(() => this.#spawnFailed(err));
    }
    this.#child = child;
    if (child === null) return;
    child.on("error", (err) => {
      if (child.pid === undefined) this.#spawnFailed(err);
    });
    child.on("exit", (code, signal) => this.#onExit(code, signal));
    child.stdout?.on("data", (chunk: Buffer) => this.#reader.push(chunk));
    child.stderr?.on("data", (chunk: Buffer) => this.#stderr.push(chunk));
    // EPIPE on a dead host's stdin: its exit is what is acted on.
    child.stdin?.on("error", () => {});
    const t = o.timing;
    this.#timers.push(
      o.timers.setTimeout(() => {
        if (!this.#ready) this.kill("hung", `no hello within ${t.startTimeoutMs} ms of its start`);
      }, t.startTimeoutMs),
    );
    this.#interval = o.timers.setInterval(() => this.#tick(), t.pingIntervalMs);
  }

  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  /** The most bytes of one unfinished message held at once. */
  get peakBufferedBytes(): number {
    return this.#reader.peak;
  }

  /**
   * Sends a request; resolves with its result checked against the op's schema. Rejects with
   * the host's error, AGENTD_E_DRIVER_MESSAGE_INVALID, or AGENTD_E_DRIVER_HOST_UNAVAILABLE.
   * Not answered within `deadlineMs`, the host is hung and is killed.
   */
  call(op: Op, body: RequestBody, deadlineMs: number): Promise<unknown> {
    if (this.#exited || this.#givenUp !== null || this.#stopping !== null || this.#child === null) {
      const reason = this.#stopping !== null ? "stopped" : "restarting";
      return Promise.reject(unavailable("the driver host is not running", reason));
    }
    if (this.#pending.size >= MAX_IN_FLIGHT) {
      return Promise.reject(unavailable(`${MAX_IN_FLIGHT} requests already in flight`, "busy"));
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = this.#o.timers.setTimeout(
        () => this.kill("hung", `${op} (request ${id}) not answered within ${deadlineMs} ms`),
        deadlineMs,
      );
      this.#pending.set(id, { op, resolve, reject, timer });
      this.#child?.stdin?.write(encode({ v: 1, id, op, ...body } as Request));
    });
  }

  /** SIGKILLs the host; requests in flight reject at once. */
  kill(reason: ExitReason, why: string): void {
    if (this.#exited || this.#givenUp !== null) return;
    this.#givenUp = reason;
    this.#o.logger.warn({ reason, why, pid: this.pid }, "driver host killed");
    this.#reader.stop();
    this.#child?.kill("SIGKILL");
    this.#failAll(reason);
  }

  /**
   * A clean stop: stdin closed (the host's sign to exit once what is in flight is answered),
   * SIGKILL after the grace. Resolves once it has exited; the same promise every time.
   */
  stop(): Promise<void> {
    if (this.#stopping !== null) return this.#stopping;
    this.#stopping = new Promise<void>((resolve) => {
      if (this.#exited || this.#child === null) return resolve();
      this.#exitWaiters.push(resolve);
      this.#child.stdin?.end();
      const grace = this.#o.timing.stopGraceMs;
      this.#timers.push(
        this.#o.timers.setTimeout(
          () => this.kill("stopped", `still running ${grace} ms after its stdin closed`),
          grace,
        ),
      );
    });
    return this.#stopping;
  }

  #tick(): void {
    this.#stderr.tick();
    this.#invalid = 0;
    if (!this.#ready) return;
    // A host whose event loop is stuck (a driver in a busy loop) answers no ping.
    this.call("ping", {}, this.#o.timing.pingTimeoutMs).catch(() => {});
  }

  #onLine(line: string): void {
    let message: ReturnType<typeof decodeHostMessage>;
    try {
      message = decodeHostMessage(line);
    } catch (err) {
      this.#dropped(err);
      return;
    }
    if (message.type === "hello") {
      if (this.#ready) {
        this.#dropped(invalid("a second hello", { message: "hello" }));
        return;
      }
      this.#ready = true;
      this.#o.onReady(message.pid);
      return;
    }
    const p = this.#pending.get(message.id);
    if (p === undefined) {
      this.#dropped(
        invalid("a reply to no request in flight", { message: "reply", id: message.id }),
      );
      return;
    }
    this.#pending.delete(message.id);
    this.#o.timers.clearTimeout(p.timer);
    if (!message.ok) {
      const e = message.error;
      p.reject(new AgentdError(e.code as ErrorCode, e.message, { context: e.context }));
      return;
    }
    try {
      p.resolve(checkResult(p.op, message.id, message.result));
    } catch (err) {
      this.#dropped(err);
      p.reject(err);
    }
  }

  /** An invalid message: logged with its code and dropped; too many, and the host is flooding. */
  #dropped(err: unknown): void {
    const context = isAgentdError(err) ? err.context : {};
    const message = err instanceof Error ? err.message : String(err);
    this.#o.logger.warn(
      { code: "AGENTD_E_DRIVER_MESSAGE_INVALID", ...context, why: message, pid: this.pid },
      "driver host message dropped",
    );
    if (++this.#invalid > MAX_INVALID_PER_INTERVAL) {
      this.kill(
        "flooding",
        `more than ${MAX_INVALID_PER_INTERVAL} invalid messages in an interval`,
      );
    }
  }

  #failAll(reason: ExitReason): void {
    for (const [id, p] of this.#pending) {
      this.#o.timers.clearTimeout(p.timer);
      p.reject(unavailable(`the driver host ${describe(reason)} (request ${id}, ${p.op})`, reason));
    }
    this.#pending.clear();
  }

  #onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#exited) return;
    this.#exited = true;
    const reason = this.#givenUp ?? (this.#stopping !== null ? "stopped" : "crashed");
    this.#finish({ pid: this.pid, reason, code, signal, tail: [...this.#stderr.tail] });
  }

  #spawnFailed(err: unknown): void {
    if (this.#exited) return;
    this.#exited = true;
    const errno = (err as NodeJS.ErrnoException).code ?? "unknown";
    this.#o.logger.error({ errno, file: this.#o.file }, "driver host: spawn failed");
    this.#finish({ pid: null, reason: "spawn-failed", code: null, signal: null, tail: [errno] });
  }

  #finish(exit: SessionExit): void {
    for (const t of this.#timers) this.#o.timers.clearTimeout(t);
    if (this.#interval !== null) this.#o.timers.clearInterval(this.#interval);
    this.#reader.stop();
    this.#failAll(exit.reason);
    for (const w of this.#exitWaiters.splice(0)) w();
    this.#o.onExit(exit);
  }
}

function describe(reason: ExitReason): string {
  switch (reason) {
    case "crashed":
      return "crashed";
    case "hung":
      return "hung and was killed";
    case "flooding":
      return "flooded its channel and was killed";
    case "stopped":
      return "was stopped";
    case "spawn-failed":
      return "could not be started";
  }
}

export function unavailable(message: string, reason: string): AgentdError {
  return new AgentdError("AGENTD_E_DRIVER_HOST_UNAVAILABLE", message, { context: { reason } });
}
