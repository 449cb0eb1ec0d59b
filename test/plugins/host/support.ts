import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { createLogger } from "../../../lib/log/logger.ts";
import { fakeTime } from "../../../lib/timers.ts";
import { DEFAULT_LIMITS, type DriverLimits } from "../../../plugins/driver.ts";
import {
  DriverHost,
  type DriverHostOptions,
  type HostEvent,
} from "../../../plugins/host/launcher.ts";

export const FIXTURE_REGISTRY = fileURLToPath(
  new URL("../../fixtures/driver-host/registry.ts", import.meta.url),
);

/** Short limits: a test's deadlines are reached by moving fake time, never by waiting. */
export const LIMITS: DriverLimits = {
  ...DEFAULT_LIMITS,
  requestTimeoutMs: 1000,
  confirmDeadlineMs: 1000,
};

export type LogLine = Record<string, unknown> & { msg?: string; level?: string };

/**
 * A real launcher (real processes, real pipes) on fake time, with its events and log lines
 * recorded, and a way to wait for the next event of a kind.
 */
export function testHost(options: Partial<DriverHostOptions> = {}) {
  const time = fakeTime(Date.UTC(2026, 0, 1));
  const logs: LogLine[] = [];
  const raw: string[] = [];
  const logWaiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  /** The first log line (already written or to come) that matches. */
  const waitLog = (pred: (l: LogLine) => boolean): Promise<LogLine> => {
    const found = logs.find(pred);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve) => logWaiters.push({ pred, resolve }));
  };
  const logger = createLogger({
    level: "debug",
    destination: new Writable({
      write(chunk: Buffer, _enc, done) {
        raw.push(chunk.toString());
        const line = JSON.parse(chunk.toString()) as LogLine;
        logs.push(line);
        for (const w of [...logWaiters]) {
          if (w.pred(line)) {
            logWaiters.splice(logWaiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
        done();
      },
    }),
  });
  const events: HostEvent[] = [];
  const waiters: { type: HostEvent["type"]; resolve: (e: HostEvent) => void }[] = [];
  const host = new DriverHost({
    logger,
    clock: time.clock,
    timers: time.timers,
    testOnly: { registryModule: FIXTURE_REGISTRY },
    ...options,
    onEvent: (e) => {
      events.push(e);
      for (const w of [...waiters]) {
        if (w.type === e.type) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(e);
        }
      }
    },
  });
  let cursor = 0;
  /** The next event of `type` after the last one waited for (or already recorded). */
  const next = <T extends HostEvent["type"]>(type: T): Promise<Extract<HostEvent, { type: T }>> => {
    const i = events.findIndex((e, k) => k >= cursor && e.type === type);
    if (i !== -1) {
      cursor = i + 1;
      return Promise.resolve(events[i] as Extract<HostEvent, { type: T }>);
    }
    return new Promise((resolve) =>
      waiters.push({
        type,
        resolve: (e) => {
          cursor = events.indexOf(e) + 1;
          resolve(e as Extract<HostEvent, { type: T }>);
        },
      }),
    );
  };
  const miner = (kind: string, password = "fixture-password") =>
    host.driver(
      "antminer-s9",
      { host: kind, apiPort: 4028 },
      { username: "root", password },
      LIMITS,
    );
  return { host, time, logs, raw, events, next, miner, waitLog };
}

/** The error a promise rejected with (the test fails if it resolved). */
export async function rejection(
  p: Promise<unknown>,
): Promise<{ code?: string; message: string; context?: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error("expected a rejection, got a result");
}
