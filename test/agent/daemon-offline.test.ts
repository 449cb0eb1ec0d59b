import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type RunningAgent, startAgent } from "../../agent/daemon.ts";
import { enrollMachine } from "../../agent/enrollment.ts";
import { ACTIVE_STATES } from "../../agent/state-machine.ts";
import { initControlPlaneDir } from "../../control-plane/init-dir.ts";
import { createApiClient } from "../../control-plane/protocol/client-api.ts";
import { type ServingControlPlane, serveControlPlane } from "../../control-plane/serve.ts";
import type { Clock } from "../../lib/clock.ts";
import { loadConfig } from "../../lib/config/load.ts";
import { generateEd25519KeyPair, publicJwk } from "../../lib/crypto/ed25519.ts";
import { decodeJwsUnverified } from "../../lib/crypto/jws.ts";
import { createLogger } from "../../lib/log/logger.ts";
import { type FakeTime, fakeTime } from "../../lib/timers.ts";
import type { Reason } from "../../policy-guard/reasons.ts";
import { signConsent } from "../../policy-guard/sign.ts";
import { GUARD_STATE_FILE, loadGuardState } from "../../policy-guard/state.ts";
import { SimCluster } from "../../sim/asic/cluster.ts";
import { SimPool } from "../../sim/pool/server.ts";
import { FACTS, until } from "../control-plane/protocol/client-fixture.ts";

/**
 * Issue 6, end to end on the real agent (startAgent, in-process) against the real control
 * plane over TLS, with a simulated ASIC mining through the agent's Stratum proxy to a
 * simulated pool — on fake time (issue 13), with the documents' real lifetimes:
 *
 * - the control plane unreachable: mining continues past the publication's `exp` (a day) for
 *   the consent's `offline_grace_s` (three days), then stops
 *   (`publication.offline_grace_exceeded`) at that very instant; it resumes when the control
 *   plane comes back (same port, same store) with a fresh publication;
 * - the agent's clock set back past its persisted clock floor: mining stops
 *   (`clock.behind_floor`), and resumes by time alone the instant the clock has caught up
 *   with the floor (floor - 60 s), or at once when the clock is corrected.
 *
 * Time. The control plane and the agent share one fake time (lib/timers.ts): their clocks
 * and every timer of theirs — the republisher's tick, long polls, the engine's wake at
 * `next_change_at`, heartbeats, attestation, request deadlines, the proxy's — move only when
 * the test moves it, so days pass in milliseconds and every instant is exact. The agent's
 * clock is the fake one plus an offset the test sets (a clock set back), its timers the same.
 * What is real: sockets, TLS, SQLite, SHA-256d, the simulated ASIC and pool (they mine in real
 * time; the shares they exchange through the proxy are the proof that mining goes on or not).
 */

const DAY_S = 86_400;
const GRACE_S = 3 * DAY_S;
const DIFFICULTY = 2 ** -18;

const GRACE_EXCEEDED: Reason = "publication.offline_grace_exceeded";
const BEHIND_FLOOR: Reason = "clock.behind_floor";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** The agent's wall clock: the shared fake one plus an offset the test sets. */
function offsetClock(t: FakeTime): Clock & { offsetMs: number } {
  const c = { offsetMs: 0, now: () => t.clock.now() + c.offsetMs };
  return c;
}

/**
 * Moves fake time in steps until `check` holds, letting real I/O (TLS, SQLite, sockets) run
 * between the steps: the fake clock moves only here, so nothing the test asserts about an
 * instant depends on how fast this machine is.
 */
async function advanceUntil(
  t: FakeTime,
  check: () => boolean | Promise<boolean>,
  what: string,
  o: { readonly stepMs?: number; readonly maxMs?: number } = {},
): Promise<void> {
  const step = o.stepMs ?? 250;
  const max = o.maxMs ?? 10 * 60_000;
  for (let moved = 0; !(await check()); moved += step) {
    if (moved > max) throw new Error(`${what}: not within ${max} ms of fake time`);
    await t.advance(step);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A control plane served from its directory as `agentd cp serve` serves it, on the fake
 * time, publishing with its default lifetime (a day); it can be stopped and served again on
 * the same port and database.
 */
async function controlPlane(t: FakeTime) {
  const dir = join(tempDir("agentd-offline-cp-"), "cp");
  const init = await initControlPlaneDir({ dir, hosts: ["127.0.0.1"], clock: t.clock });
  const serve = (port: number) =>
    serveControlPlane({
      dir,
      listen: { host: "127.0.0.1", port },
      clock: t.clock,
      timers: t.timers,
      logger: createLogger({ level: "silent" }),
    });
  let serving: ServingControlPlane | null = await serve(0);
  const port = serving.port;
  const url = serving.url;
  const caPem = serving.caCertPem;
  cleanups.push(() => serving?.close());
  return {
    url,
    port,
    caPem,
    adminKey: init.api_key,
    async stop() {
      await serving?.close();
      serving = null;
    },
    async start() {
      serving = await serve(port);
    },
  };
}

interface Status {
  policy_decision: { mining: boolean; reasons: string[] };
  decision: { mining: boolean; reasons: string[] };
  policy: { version: number | null };
}

interface DecisionRecord {
  readonly at: string;
  readonly data: { trigger: string; mining: { allow: boolean; reasons: string[] } };
}

/**
 * The whole rig: a pool, a control plane, an owner, a machine enrolled and running agentd on
 * `clock`, the owner's consent (a month long) published, one simulated ASIC mining through
 * the proxy and shares arriving at the pool.
 */
async function miningRig(t: FakeTime, clock: Clock) {
  const pool = await SimPool.start({ difficulty: DIFFICULTY, jobIntervalMs: 5_000 });
  cleanups.push(() => pool.close());
  const cp = await controlPlane(t);
  const api = (apiKey: string) => {
    const c = createApiClient({ url: cp.url, caPem: cp.caPem, clock: t.clock, apiKey });
    cleanups.push(() => c.close());
    return c;
  };
  const owner = generateEd25519KeyPair();
  const created = await api(cp.adminKey).createOwner({ jwk: publicJwk(owner.publicKey) });
  const ownerApi = api(created.api_key);
  const stateDir = tempDir("agentd-offline-");
  const enrolled = await enrollMachine({
    stateDir,
    token: (await ownerApi.createEnrollmentToken()).token,
    ownerPub: owner.publicKey,
    facts: FACTS,
    clock,
  });
  const agent: RunningAgent = await startAgent({
    stateDir,
    clock,
    timers: t.timers,
    logger: createLogger({ level: "silent" }),
    agentVersion: "0.1.0",
    heartbeatIntervalS: 30,
    hostFacts: () => FACTS,
    apiSocket: join(stateDir, "agentd.sock"),
    config: loadConfig({
      // CPU-hashing simulated miners need tiny difficulties; fixed, so every share the
      // ASIC finds meets the pool's target and is forwarded.
      env: {
        AGENTD_STRATUM__VARDIFF: "false",
        AGENTD_STRATUM__INITIAL_DIFFICULTY: String(DIFFICULTY),
        AGENTD_STRATUM__MIN_DIFFICULTY: String(DIFFICULTY),
      },
      defaultPath: join(stateDir, "absent.toml"),
    }).config,
    stratum: { host: "127.0.0.1", port: 0 },
    longPollS: 25,
  });
  cleanups.push(() => agent.close());
  const status = () => agent.status() as unknown as Status;

  // Signed an hour ago: a clock set back by minutes still finds the consent valid.
  const iat = Math.floor(t.clock.now() / 1000) - 3600;
  const published = await ownerApi.postConsent(
    signConsent({
      ownerKey: owner.privateKey,
      worker: enrolled.worker_id,
      policyId: "offline",
      seq: 1,
      iat,
      exp: iat + 30 * DAY_S,
      rules: {
        upstreams: [{ url: `stratum+tcp://127.0.0.1:${pool.address.port}`, user: "owner.rig" }],
        networks: ["127.0.0.1/32"],
        offline_grace_s: GRACE_S,
      },
    }),
  );
  await advanceUntil(t, () => status().decision.mining, "mining allowed by the publication");
  expect(status().policy.version).toBeGreaterThanOrEqual(published.version);

  const rejections: string[] = [];
  const asic = await SimCluster.start({
    count: 1,
    profile: "cpuminer",
    pools: [`stratum+tcp://127.0.0.1:${agent.stratum.port}`],
    user: "sim",
    silenceTimeoutMs: 30_000,
    retryDelayMs: 100,
    maxHashesPerSecond: 150_000,
    onEvent: (e) => {
      if (e.type === "rejected") rejections.push(e.reason);
    },
  });
  cleanups.push(() => asic.stop());
  const shares = () => pool.stats().accepted;
  await until(() => shares() >= 3, "shares at the pool through the proxy");

  const guardState = () => loadGuardState(join(stateDir, GUARD_STATE_FILE));
  /** The payload of the publication the agent holds now (its stored bundle). */
  const heldPublication = () => {
    const b = guardState().bundle;
    if (b === null) throw new Error("no bundle stored");
    return decodeJwsUnverified(b.publication).payload as { exp: number; version: number };
  };
  /** The policy guard's decision records in the agent's audit log. */
  const decisions = () =>
    readFileSync(join(stateDir, "audit.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string } & DecisionRecord)
      .filter((r) => r.type === "decision.changed");
  /** Shares that reach the pool over `ms` of real time, after those in flight have landed. */
  const sharesHeld = async (ms: number) => {
    await new Promise((r) => setTimeout(r, 300));
    const before = shares();
    await new Promise((r) => setTimeout(r, ms));
    return shares() - before;
  };
  /** Resolves once `n` more shares reached the pool (fake time moving meanwhile). */
  const moreShares = async (n: number, what: string) => {
    const from = shares();
    await advanceUntil(t, () => shares() >= from + n, what, { stepMs: 100 });
  };
  return {
    cp,
    agent,
    status,
    shares,
    sharesHeld,
    moreShares,
    rejections,
    guardState,
    heldPublication,
    decisions,
  };
}

/** Whether nothing listens on the port any more (connection refused). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code === "ECONNREFUSED"));
  });
}

const iso = (ms: number) => new Date(ms).toISOString();

describe("agentd run without its control plane, and with its clock set back (fake time)", () => {
  it("keeps mining while the control plane is unreachable until the publication's exp + offline grace, then stops at that instant; resumes when it returns", async () => {
    const t = fakeTime(Date.now());
    const rig = await miningRig(t, t.clock);
    const first = rig.status().policy.version as number;

    // A healthy control plane re-issues the day-long publication when a third of it is left:
    // mining goes on across the re-issue.
    await t.jump(17 * 3600_000);
    await advanceUntil(
      t,
      () => (rig.status().policy.version as number) > first,
      "a re-issued publication",
    );
    await advanceUntil(t, () => rig.status().decision.mining, "mining across the re-issue");
    expect(rig.status().decision).toEqual({ mining: true, reasons: [] });
    await rig.moreShares(2, "shares across the re-issue");

    // The control plane goes away.
    await rig.cp.stop();
    expect(await refused(rig.cp.port)).toBe(true);
    const held = rig.heldPublication();
    const versionBefore = rig.status().policy.version as number;
    expect(versionBefore).toBe(held.version);
    const graceEndMs = (held.exp + GRACE_S) * 1000;

    // Past exp by a day, well within the grace: still mining, shares still reach the pool.
    await t.jump(held.exp * 1000 - t.clock.now() + DAY_S * 1000);
    await advanceUntil(t, () => rig.status().decision.mining, "mining past exp", {
      maxMs: 60_000,
    });
    expect(rig.status().decision).toEqual({ mining: true, reasons: [] });
    await rig.moreShares(2, "shares forwarded during the grace");
    expect(ACTIVE_STATES).toContain(rig.agent.state());

    // A minute before the grace ends: still mining. Then the engine's own timer stops mining
    // at exp + offline_grace_s exactly, with the reason.
    await t.jump(graceEndMs - 60_000 - t.clock.now());
    expect(rig.status().decision).toEqual({ mining: true, reasons: [] });
    await t.advance(59_999);
    expect(rig.status().decision.mining).toBe(true);
    await t.advance(1);
    await until(() => !rig.status().decision.mining, "the stop at the end of the grace");
    expect(rig.status().decision.reasons).toEqual([GRACE_EXCEEDED]);
    expect(rig.decisions().at(-1)).toMatchObject({
      at: iso(graceEndMs),
      data: { trigger: "time", mining: { allow: false, reasons: [GRACE_EXCEEDED] } },
    });
    // The data path is stopped: nothing reaches the pool, the ASIC is told why.
    expect(await rig.sharesHeld(1_000)).toBe(0);
    expect(rig.rejections.some((r) => r.includes(`mining denied: ${GRACE_EXCEEDED}`))).toBe(true);
    expect(rig.agent.state()).toBe("POLICY_SYNCED");

    // The control plane comes back on the same port with the same store: its republisher
    // issues a fresh publication, the agent takes it and mining resumes.
    await rig.cp.start();
    await advanceUntil(t, () => rig.status().decision.mining, "mining again", {
      maxMs: 30 * 60_000,
    });
    expect(rig.status().decision.reasons).toEqual([]);
    expect(rig.status().policy.version).toBeGreaterThan(versionBefore);
    expect(rig.heldPublication().exp).toBeGreaterThan(held.exp);
    expect(rig.decisions().at(-1)?.data).toMatchObject({
      trigger: expect.stringMatching(/^bundle:(push|poll)$/),
      mining: { allow: true, reasons: [] },
    });
    await rig.moreShares(3, "shares at the pool again");
    expect(ACTIVE_STATES).toContain(rig.agent.state());
  }, 60_000);

  it("stops mining when the clock is set back past its floor, and resumes the instant the clock has caught up with the floor", async () => {
    const t = fakeTime(Date.now());
    const clock = offsetClock(t);
    const rig = await miningRig(t, clock);

    // The machine's clock runs ten minutes fast for a while: the floor — the latest time the
    // guard has seen — follows it, on disk within minutes.
    clock.offsetMs = 600_000;
    await advanceUntil(
      t,
      () => rig.guardState().counters.clockFloorS * 1000 > t.clock.now() + 540_000,
      "the floor following the fast clock",
      { stepMs: 5_000 },
    );
    expect(rig.status().decision).toEqual({ mining: true, reasons: [] });

    // Set back to the true time: ten minutes behind the floor, more than the 60 s tolerated.
    // At its next wake (at most five minutes) the engine stops mining for the floor alone.
    clock.offsetMs = 0;
    await advanceUntil(t, () => !rig.status().decision.mining, "the stop behind the floor", {
      stepMs: 1_000,
    });
    expect(rig.status().decision.reasons).toEqual([BEHIND_FLOOR]);
    const floor = rig.guardState().counters.clockFloorS;
    const caughtUpMs = (floor - 60) * 1000;
    expect(clock.now()).toBeLessThan(caughtUpMs);
    expect(await rig.sharesHeld(500)).toBe(0);
    expect(rig.rejections.some((r) => r.includes(`mining denied: ${BEHIND_FLOOR}`))).toBe(true);
    expect(rig.agent.state()).toBe("POLICY_SYNCED");
    // A clock set back never lowers the floor.
    expect(rig.guardState().counters.clockFloorS).toBe(floor);

    // Until the clock catches up with the floor (floor - 60 s): the engine wakes for that
    // instant (next_change_at) and the decision allows again, exactly then.
    await t.advance(caughtUpMs - clock.now() - 1);
    expect(rig.status().policy_decision.mining).toBe(false);
    await t.advance(1);
    await until(() => rig.status().policy_decision.mining, "the decision allowing again");
    expect(rig.decisions().at(-1)).toMatchObject({
      at: iso(caughtUpMs),
      data: { trigger: "time", mining: { allow: true } },
    });
    await advanceUntil(t, () => rig.status().decision.mining, "mining again");
    expect(rig.status().decision.reasons).toEqual([]);
    await rig.moreShares(3, "shares at the pool again");
    expect(ACTIVE_STATES).toContain(rig.agent.state());
  }, 60_000);

  it("a clock set back ten minutes stops mining; corrected, it mines again", async () => {
    const t = fakeTime(Date.now());
    const clock = offsetClock(t);
    const rig = await miningRig(t, clock);
    const floor = rig.guardState().counters.clockFloorS;
    // The floor follows the clock: the time of the last evaluation, moments ago.
    expect(floor * 1000).toBeGreaterThan(t.clock.now() - 10 * 60_000);
    expect(floor * 1000).toBeLessThanOrEqual(t.clock.now());

    // NTP (or an attacker) sets the machine's clock back ten minutes. The engine sees it at
    // its next wake and stops; the publication, issued moments before, is then also not yet
    // valid.
    clock.offsetMs = -600_000;
    await advanceUntil(t, () => !rig.status().decision.mining, "the stop behind the floor", {
      stepMs: 1_000,
    });
    expect(rig.status().decision.reasons).toEqual(["publication.not_yet_valid", BEHIND_FLOOR]);
    const floorBehind = rig.guardState().counters.clockFloorS;
    expect(floorBehind).toBeGreaterThanOrEqual(floor);
    expect(clock.now()).toBeLessThan((floorBehind - 60) * 1000);
    expect(await rig.sharesHeld(1_000)).toBe(0);
    expect(rig.rejections.some((r) => r.includes("mining denied: "))).toBe(true);
    expect(rig.agent.state()).toBe("POLICY_SYNCED");

    // The clock is corrected: at the engine's next wake the same documents allow again.
    clock.offsetMs = 0;
    await advanceUntil(t, () => rig.status().decision.mining, "mining with the clock corrected", {
      stepMs: 1_000,
    });
    expect(rig.status().decision.reasons).toEqual([]);
    await rig.moreShares(3, "shares at the pool again");
    expect(ACTIVE_STATES).toContain(rig.agent.state());
  }, 60_000);
});
