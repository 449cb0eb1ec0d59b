import { describe, expect, it } from "vitest";
import { createLogger } from "../../lib/log/logger.ts";
import { fakeTime } from "../../lib/timers.ts";
import type { Upstream } from "../../policy-guard/documents.ts";
import {
  failureLabel,
  UNREACHABLE_LOG_EVERY_MS,
  UpstreamReachability,
} from "../../stratum-client/reachability.ts";

/**
 * The book of which upstreams are reached, driven directly (the pools' reports) on fake time
 * with its log captured: the states and their `since`, what counts as a failure, and a log
 * that warns once per outage, then at most once a minute, and says when it is over.
 */

const T0 = 1_800_000_000_000;
const A: Upstream = { url: "stratum+tcp://a.example:3333", user: "owner.rig" };
const B: Upstream = { url: "stratum+tcp://b.example:3333", user: "owner.rig" };
const refused = Object.assign(new Error("connect ECONNREFUSED 10.0.0.1:3333"), {
  code: "ECONNREFUSED",
});

function book() {
  const time = fakeTime(T0);
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    level: "debug",
    destination: { write: (s: string) => void lines.push(JSON.parse(s)) },
  });
  const reach = new UpstreamReachability({ clock: time.clock, logger });
  const logged = () => lines.map((l) => `${l.level} ${l.msg}`);
  return { time, reach, lines, logged };
}

describe("UpstreamReachability", () => {
  it("is idle while no upstream is wanted, connecting once one is, connected when ready", () => {
    const { time, reach } = book();
    expect(reach.status()).toEqual({
      url: null,
      user: null,
      state: "idle",
      since: T0,
      last_error: null,
      attempts: 0,
      upstreams: [],
    });
    time.clock.advance(1000);
    reach.want([A, B]);
    expect(reach.status()).toMatchObject({ url: A.url, state: "connecting", since: T0 + 1000 });
    reach.attempt(A);
    time.clock.advance(500);
    reach.ready(A);
    expect(reach.status()).toMatchObject({
      url: A.url,
      user: A.user,
      state: "connected",
      since: T0 + 1500,
      last_error: null,
      attempts: 0,
    });
    expect(reach.status().upstreams).toEqual([
      { ...A, state: "connected", since: T0 + 1500, last_error: null, attempts: 0 },
      { ...B, state: "idle", since: T0 + 1000, last_error: null, attempts: 0 },
    ]);
    // The policy withdraws every upstream: the session closes as chosen, and it is idle.
    time.clock.advance(500);
    reach.want([]);
    reach.lost(A, "stopped");
    expect(reach.status()).toMatchObject({ url: null, state: "idle", since: T0 + 2000 });
    expect(reach.status().upstreams).toEqual([]);
  });

  it("is unreachable from the first failure on, warns once, then once a minute with the count, and says when it is reached again", async () => {
    const { time, reach, lines, logged } = book();
    reach.want([A]);
    reach.attempt(A);
    reach.failed(A, "connect_failed", refused);
    const since = T0;
    expect(reach.status()).toMatchObject({
      url: A.url,
      state: "unreachable",
      since,
      last_error: "ECONNREFUSED",
      attempts: 1,
    });
    expect(lines).toEqual([
      expect.objectContaining({
        level: "warn",
        msg: "upstream unreachable",
        url: A.url,
        user: A.user,
        error: "ECONNREFUSED",
        reason: "connect_failed",
        detail: "connect ECONNREFUSED 10.0.0.1:3333",
      }),
    ]);
    // Attempts every 10 s: still unreachable since the first failure; a warning only when a
    // minute has passed since the last one, counting every failure since `since`.
    for (let i = 1; i <= 12; i++) {
      await time.advance(10_000);
      reach.attempt(A);
      expect(reach.status()).toMatchObject({ state: "unreachable", since });
      reach.failed(A, "connect_failed", refused);
    }
    expect(reach.status()).toMatchObject({ state: "unreachable", since, attempts: 13 });
    const warnings = lines.filter((l) => l.msg === "upstream still unreachable");
    expect(warnings).toEqual([
      expect.objectContaining({
        level: "warn",
        url: A.url,
        since: new Date(since).toISOString(),
        failures: 7,
        error: "ECONNREFUSED",
      }),
      expect.objectContaining({ level: "warn", failures: 13 }),
    ]);
    expect(UNREACHABLE_LOG_EVERY_MS).toBe(60_000);

    // Reached again: one info line with how long it was down; the state is connected since now.
    await time.advance(5_000);
    reach.attempt(A);
    reach.ready(A);
    expect(reach.status()).toMatchObject({
      state: "connected",
      since: T0 + 125_000,
      last_error: null,
      attempts: 0,
    });
    expect(lines.at(-1)).toMatchObject({
      level: "info",
      msg: "upstream reachable again",
      url: A.url,
      unreachable_since: new Date(since).toISOString(),
      down_s: 125,
      failures: 13,
    });
    expect(logged().filter((l) => l.startsWith("warn"))).toHaveLength(3);

    // A new outage is a new transition: warned at once again.
    await time.advance(1000);
    reach.lost(A, "peer_closed");
    expect(reach.status()).toMatchObject({
      state: "connecting",
      since: T0 + 126_000,
      last_error: "peer_closed",
      attempts: 0,
    });
    reach.attempt(A);
    reach.failed(A, "connect_failed", refused);
    expect(lines.at(-1)).toMatchObject({ level: "warn", msg: "upstream unreachable" });
    expect(reach.status()).toMatchObject({ state: "unreachable", since: T0 + 126_000 });
  });

  it("does not count ends we chose as failures, and names the upstream in use during failover", () => {
    const { time, reach, logged } = book();
    reach.want([A, B]);
    reach.attempt(A);
    reach.failed(A, "stopped");
    expect(reach.status()).toMatchObject({ state: "connecting", last_error: null });
    expect(reach.status().upstreams[0]).toMatchObject({ state: "idle" });
    expect(logged()).toEqual([]);

    // The primary refuses, the secondary answers: the data path is connected (to B) while the
    // list says A is unreachable.
    reach.attempt(A);
    reach.failed(A, "connect_failed", refused);
    time.clock.advance(200);
    reach.attempt(B);
    reach.ready(B);
    expect(reach.status()).toMatchObject({ url: B.url, state: "connected", since: T0 + 200 });
    expect(reach.status().upstreams.map((u) => [u.url, u.state, u.last_error])).toEqual([
      [A.url, "unreachable", "ECONNREFUSED"],
      [B.url, "connected", null],
    ]);
    // A probe of the primary fails: B is still what the data path uses.
    reach.attempt(A);
    reach.failed(A, "handshake_timeout");
    expect(reach.status()).toMatchObject({ url: B.url, state: "connected" });
    expect(reach.status().upstreams[0]).toMatchObject({ last_error: "handshake_timeout" });
    // The primary is restored (make before break): connected throughout, now to A.
    time.clock.advance(200);
    reach.attempt(A);
    reach.ready(A);
    reach.lost(B, "primary_restored");
    expect(reach.status()).toMatchObject({ url: A.url, state: "connected", since: T0 + 200 });
    expect(reach.status().upstreams.map((u) => [u.state, u.last_error])).toEqual([
      ["connected", null],
      ["idle", null],
    ]);
  });

  it("keeps only the policy's upstreams (Stratum V1, at most 16)", () => {
    const { reach } = book();
    const many = Array.from({ length: 20 }, (_, i) => ({
      url: `stratum+tcp://p${i}.example:3333`,
      user: "u",
    }));
    reach.want([{ url: "sv2+tcp://sv2.example:3336", user: "u" }, ...many]);
    expect(reach.status().upstreams.map((u) => u.url)).toEqual(many.slice(0, 16).map((u) => u.url));
    reach.want([B]);
    expect(reach.status().upstreams.map((u) => u.url)).toEqual([B.url]);
    // Only Stratum V1 upstreams can be dialled: none is as good as none wanted.
    reach.want([{ url: "sv2+tcp://sv2.example:3336", user: "u" }]);
    expect(reach.status().state).toBe("idle");
  });

  it("labels a failure by its errno code, else its reason, bounded to a safe alphabet", () => {
    expect(failureLabel("connect_failed", refused)).toBe("ECONNREFUSED");
    expect(failureLabel("unauthorized")).toBe("unauthorized");
    expect(failureLabel("handshake_failed", new Error("subscribe refused: x"))).toBe(
      "handshake_failed",
    );
    const odd = Object.assign(new Error("x"), { code: `E ${"X".repeat(100)}\n` });
    expect(failureLabel("socket_error", odd)).toBe(`E${"X".repeat(63)}`);
  });
});
