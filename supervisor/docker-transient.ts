import { sleep, type Timers } from "../lib/timers.ts";

/**
 * The Docker Engine API's transient answers: the races of a container's death, in one place.
 *
 * While a container dies, the service behind the API (Docker, and Podman more often) can
 * answer a call about it with an error that is gone a moment later: Podman's 500 `read
 * /proc/PID/cgroup: no such process` when it inspects a container whose process just exited
 * (seen by bench/supervisor.ts on a loaded machine), a 409 "… is already in progress" while
 * its own clean-up holds the container, a list that trips over a container removed between
 * listing the ids and reading each. Such an answer says nothing about the service or the
 * request, so it is retried a few times after a short backoff instead of being taken for a
 * failure (a spurious restart, a crash-loop count, a missing image). Anything else — and a
 * transient answer that persists past the retries — is thrown as it came, and the caller
 * fails as before.
 */

/** The calls the supervisor and its benchmark make; a 404 means different things to each. */
export type DockerCall =
  | "list"
  | "inspect"
  | "create"
  | "start"
  | "stop"
  | "kill"
  | "remove"
  | "logs";

/** Why `err` is a transient answer to `call`, or null when it is not one. */
export function transientDockerError(err: unknown, call: DockerCall): string | null {
  if (typeof err !== "object" || err === null) return null;
  const e = err as { statusCode?: unknown; message?: unknown; json?: { message?: unknown } };
  const status = typeof e.statusCode === "number" ? e.statusCode : null;
  if (status === null) return null; // no answer at all: an outage, the reconciler's business
  const text = `${String(e.message ?? "")} ${String(e.json?.message ?? "")}`;
  if (status === 500 && /no such process/i.test(text)) {
    return "the container's process exited while the API read it";
  }
  if (
    status === 500 &&
    /(\/proc\/|cgroup)/i.test(text) &&
    /no such file or directory/i.test(text)
  ) {
    return "the container's /proc or cgroup files went away while the API read them";
  }
  if (status === 409 && /already in progress/i.test(text)) {
    return "another operation on the container was under way";
  }
  // For one container a 404 is an answer (gone); for a list it is a container that went away
  // while the list was being made.
  if (call === "list" && (status === 404 || status === 500) && /no such container/i.test(text)) {
    return "a container went away while the list was made";
  }
  return null;
}

export interface TransientRetry {
  readonly timers: Timers;
  /** Told before each retry (for a log line). */
  readonly onRetry?: (info: {
    call: DockerCall;
    why: string;
    attempt: number;
    err: unknown;
  }) => void;
  /** Tries in all (default 4). */
  readonly attempts?: number;
  /** The first backoff, doubled after each retry (default 50 ms: 50, 100, 200). */
  readonly firstMs?: number;
}

/** `f`, tried again after a backoff while it fails with a transient answer, at most `attempts` times. */
export async function retryTransient<T>(
  call: DockerCall,
  f: () => Promise<T>,
  o: TransientRetry,
): Promise<T> {
  const attempts = Math.max(1, o.attempts ?? 4);
  let backoff = o.firstMs ?? 50;
  for (let attempt = 1; ; attempt++) {
    try {
      return await f();
    } catch (err) {
      const why = transientDockerError(err, call);
      if (why === null || attempt >= attempts) throw err;
      o.onRetry?.({ call, why, attempt, err });
      await sleep(o.timers, backoff);
      backoff *= 2;
    }
  }
}
