import type { Actual } from "./plan.ts";
import type { ServiceKind, ServiceSpec } from "./spec.ts";

/**
 * What the supervisor needs from something that runs services — a driver, as config
 * `supervisor.driver` names them: containers through the Docker Engine API (docker-driver.ts,
 * dockerode: Docker or Podman) or native processes (process-driver.ts). Injected: the
 * reconciler never knows which.
 */

export interface DriverEvent {
  readonly kind: ServiceKind;
  readonly id: string;
  /** `die`: it exited (exitCode set); `start`; `stop`/`kill` as the driver reports them. */
  readonly action: "start" | "die" | "stop" | "kill" | "destroy" | "other";
  readonly exitCode: number | null;
}

export interface EventSubscription {
  close(): void;
}

export interface ServiceDriver {
  /** A name for logs and status ("docker unix:///…", "processes"). */
  readonly name: string;
  /** agentd's own services only (by label): never anything else. */
  list(): Promise<Actual[]>;
  /** Whether this image id exists locally (never pulled: an image not allowed is never fetched). */
  hasImage(image: string): Promise<boolean>;
  create(o: {
    readonly kind: ServiceKind;
    readonly spec: ServiceSpec;
    readonly image: string;
    readonly hash: string;
    /** Environment from secret files, added at create time; never logged. */
    readonly secretEnv?: Readonly<Record<string, string>>;
  }): Promise<string>;
  start(id: string): Promise<void>;
  /** SIGTERM, then SIGKILL after `timeoutS`. */
  stop(id: string, timeoutS: number): Promise<void>;
  remove(id: string): Promise<void>;
  /** The last `lines` lines of its output. */
  logs(id: string, lines: number): Promise<string[]>;
  /** Lifecycle events of agentd's services; `onEnd` when the stream ends (re-subscribe). */
  events(onEvent: (e: DriverEvent) => void, onEnd: (err?: unknown) => void): EventSubscription;
  /** Answers when what the driver runs services on is reachable. */
  ping(): Promise<void>;
}
