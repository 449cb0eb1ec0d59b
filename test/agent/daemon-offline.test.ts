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
import { type Clock, systemClock } from "../../lib/clock.ts";
import { loadConfig } from "../../lib/config/load.ts";
import { generateEd25519KeyPair, publicJwk } from "../../lib/crypto/ed25519.ts";
import { decodeJwsUnverified } from "../../lib/crypto/jws.ts";
import { createLogger } from "../../lib/log/logger.ts";
import type { Reason } from "../../policy-guard/reasons.ts";
import { signConsent } from "../../policy-guard/sign.ts";
import { GUARD_STATE_FILE, loadGuardState } from "../../policy-guard/state.ts";
import { SimCluster } from "../../sim/asic/cluster.ts";
import { SimPool } from "../../sim/pool/server.ts";
import { FACTS, until } from "../control-plane/protocol/client-fixture.ts";

/**
 * Issue 6, end to end on the real agent (startAgent, in-process) against the real control
 * plane over TLS, with a simulated ASIC mining through the agent's Stratum proxy to a
 * simulated pool:
 *
 * - the control plane unreachable: mining continues past the publication's `exp` for the
 *   consent's `offline_grace_s`, then stops (`publication.offline_grace_exceeded`); it resumes
 *   when the control plane comes back (same port, same store) with a fresh publication;
 * - the agent's clock set back past its persisted clock floor: mining stops
 *   (`clock.behind_floor`, and nothing else when the documents are still valid by that clock);
 *   it resumes by time alone when the clock catches up with the floor (floor - 60 s), or, once
 *   the clock is corrected, with the next publication taken.
 *
 * Time. The control plane runs on the real clock; the agent on an offset clock over the real
 * one (the test moves it for the clock-floor cases), so that TLS, access tokens and proofs work
 * as they do in the field. The engine wakes for "time alone" decisions on a real timer armed
 * for `next_change_at` (at most 5 minutes away): a clock *jump* is only seen at the next wake or
 * event, so the documents here live seconds, not days — the control plane publishes with a
 * 3 s lifetime (re-issued when a third is left, ticking every second) and the consent gives a
 * 2 s offline grace — and the engine's own timer does the waking.
 */

const TTL_S = 3;
const GRACE_S = 2;
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

/** The agent's wall clock: the real one plus an offset the test sets (a clock set back). */
function offsetClock(): Clock & { offsetMs: number } {
  const c = { offsetMs: 0, now: () => Date.now() + c.offsetMs };
  return c;
}

/**
 * A control plane served from its directory as `agentd cp serve` serves it, on the real
 * clock, publishing with a TTL_S lifetime; it can be stopped and served again on the same
 * port and database.
 */
async function shortLivedCp() {
  const dir = join(tempDir("agentd-offline-cp-"), "cp");
  const init = await initControlPlaneDir({ dir, hosts: ["127.0.0.1"], clock: systemClock });
  const serve = (port: number) =>
    serveControlPlane({
      dir,
      listen: { host: "127.0.0.1", port },
      clock: systemClock,
      logger: createLogger({ level: "silent" }),
      settings: { publicationTtlS: TTL_S },
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

/**
 * The whole rig: a pool, a control plane, an owner, a machine enrolled and running agentd on
 * `clock`, the owner's consent published, one simulated ASIC mining through the proxy and
 * shares arriving at the pool.
 */
async function miningRig(clock: Clock, o: { readonly graceS: number }) {
  const pool = await SimPool.start({ difficulty: DIFFICULTY, jobIntervalMs: 5_000 });
  cleanups.push(() => pool.close());
  const cp = await shortLivedCp();
  const api = (apiKey: string) => {
    const c = createApiClient({ url: cp.url, caPem: cp.caPem, clock: systemClock, apiKey });
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
    longPollS: 1,
  });
  cleanups.push(() => agent.close());
  const status = () => agent.status() as unknown as Status;

  // Signed an hour ago: a clock set back by minutes still finds the consent valid.
  const iat = Math.floor(Date.now() / 1000) - 3600;
  const published = await ownerApi.postConsent(
    signConsent({
      ownerKey: owner.privateKey,
      worker: enrolled.worker_id,
      policyId: "offline",
      seq: 1,
      iat,
      exp: iat + 2 * 86_400,
      rules: {
        upstreams: [{ url: `stratum+tcp://127.0.0.1:${pool.address.port}`, user: "owner.rig" }],
        networks: ["127.0.0.1/32"],
        offline_grace_s: o.graceS,
      },
    }),
  );
  await until(() => status().decision.mining, "mining allowed by the first publication");
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
      .map((l) => JSON.parse(l) as { type: string; data?: Record<string, unknown> })
      .filter((r) => r.type === "decision.changed")
      .map(
        (r) =>
          r.data as { trigger: string; mining: { allow: boolean; reasons: string[] } } & Record<
            string,
            unknown
          >,
      );
  /** Shares that reach the pool over `ms`, after those already in flight have landed. */
  const sharesHeld = async (ms: number) => {
    await new Promise((r) => setTimeout(r, 300)); // a share already in flight may land
    const before = shares();
    await new Promise((r) => setTimeout(r, ms));
    return shares() - before;
  };
  /** Resolves once `n` more shares reached the pool. */
  const moreShares = async (n: number, what: string) => {
    const from = shares();
    await until(() => shares() >= from + n, what);
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

/** Mining again, brought back by a newer publication (pushed or polled), shares flowing. */
async function minesAgainWithANewPublication(
  rig: Awaited<ReturnType<typeof miningRig>>,
  versionBefore: number,
  when: string,
): Promise<void> {
  await until(() => rig.status().decision.mining, `mining again ${when}`);
  expect(rig.status().decision.reasons).toEqual([]);
  expect(rig.status().policy.version).toBeGreaterThan(versionBefore);
  expect(rig.decisions().at(-1)).toMatchObject({
    trigger: expect.stringMatching(/^bundle:(push|poll)$/),
    mining: { allow: true, reasons: [] },
  });
  await rig.moreShares(3, "shares at the pool again");
  expect(ACTIVE_STATES).toContain(rig.agent.state());
}

describe("agentd run without its control plane, and with its clock set back", () => {
  it("keeps mining while the control plane is unreachable until the publication's exp + offline grace, then stops; resumes when it returns", async () => {
    const clock = offsetClock();
    const rig = await miningRig(clock, { graceS: GRACE_S });
    const first = rig.status().policy.version as number;

    // A healthy control plane re-issues the short publications: mining goes on across them.
    await until(() => (rig.status().policy.version as number) > first, "a re-issued publication");
    expect(rig.status().decision).toEqual({ mining: true, reasons: [] });
    const sinceAllowed = (ds: ReturnType<typeof rig.decisions>) =>
      ds.slice(ds.findIndex((d) => d.mining.allow));
    expect(sinceAllowed(rig.decisions()).filter((d) => !d.mining.allow)).toEqual([]);

    // The control plane goes away.
    await rig.cp.stop();
    expect(await refused(rig.cp.port)).toBe(true);
    await new Promise((r) => setTimeout(r, 100)); // a push in flight at the close lands
    const held = rig.heldPublication();
    const versionBefore = rig.status().policy.version as number;
    expect(versionBefore).toBe(held.version);
    const expMs = held.exp * 1000;
    const graceEndMs = (held.exp + GRACE_S) * 1000;

    // Past exp, within the grace: still mining, shares still forwarded to the pool.
    await until(() => clock.now() >= expMs, "the held publication's exp");
    const atExp = { decision: rig.status().decision, shares: rig.shares(), at: clock.now() };
    expect(atExp.at).toBeLessThan(graceEndMs);
    expect(atExp.decision).toEqual({ mining: true, reasons: [] });
    expect(ACTIVE_STATES).toContain(rig.agent.state());

    // At exp + offline_grace_s the engine's own timer stops mining, with the reason.
    await until(() => !rig.status().decision.mining, "the stop at the end of the grace");
    const stoppedAt = clock.now();
    expect(stoppedAt).toBeGreaterThanOrEqual(graceEndMs);
    expect(stoppedAt).toBeLessThan(graceEndMs + 1_000);
    expect(rig.status().decision.reasons).toEqual([GRACE_EXCEEDED]);
    expect(rig.shares()).toBeGreaterThan(atExp.shares); // shares forwarded during the grace
    expect(rig.decisions().at(-1)).toMatchObject({
      trigger: "time",
      mining: { allow: false, reasons: [GRACE_EXCEEDED] },
    });
    // The data path is stopped: nothing reaches the pool, the ASIC is told why.
    expect(await rig.sharesHeld(1_000)).toBe(0);
    expect(rig.rejections.some((r) => r.includes(`mining denied: ${GRACE_EXCEEDED}`))).toBe(true);
    expect(rig.agent.state()).toBe("POLICY_SYNCED");

    // The control plane comes back on the same port with the same store: a fresh publication
    // reaches the agent and mining resumes.
    await rig.cp.start();
    await minesAgainWithANewPublication(rig, versionBefore, "after the control plane returns");
    expect(rig.heldPublication().exp).toBeGreaterThan(held.exp);
  }, 30_000);

  it("stops mining when the clock is set back past its floor, and resumes when the clock has caught up with the floor", async () => {
    const clock = offsetClock();
    // A long grace, so that publications stay usable by a clock a minute fast.
    const rig = await miningRig(clock, { graceS: 120 });

    // The machine's clock runs 66 s fast for a while: the next publication is taken by that
    // clock, and the floor — the latest time the guard has seen — follows it.
    clock.offsetMs = 66_000;
    await until(
      () => rig.guardState().counters.clockFloorS * 1000 > Date.now() + 60_000,
      "a publication taken with the clock fast",
    );
    // (the assignment of a moment ago expired by the fast clock: the next one is in a moment)
    await until(() => rig.status().decision.mining, "mining with the clock fast");
    expect(rig.status().decision).toEqual({ mining: true, reasons: [] });

    // Set back to the true time: 66 s behind the floor, more than the 60 s tolerated. The
    // next publication (valid by this clock) is taken, and mining stops for the floor alone.
    clock.offsetMs = 0;
    await until(() => !rig.status().decision.mining, "the stop behind the clock floor");
    expect(rig.status().decision.reasons).toEqual([BEHIND_FLOOR]);
    const floor = rig.guardState().counters.clockFloorS;
    const caughtUpMs = (floor - 60) * 1000;
    expect(clock.now()).toBeLessThan(caughtUpMs);
    expect(await rig.sharesHeld(500)).toBe(0);
    expect(rig.rejections.some((r) => r.includes(`mining denied: ${BEHIND_FLOOR}`))).toBe(true);
    expect(rig.agent.state()).toBe("POLICY_SYNCED");
    // A clock set back never lowers the floor.
    expect(rig.guardState().counters.clockFloorS).toBe(floor);

    // Until the clock catches up with the floor (floor - 60 s): then it mines again, the
    // engine having woken for that instant (next_change_at).
    await until(
      () => rig.status().policy_decision.mining,
      "the decision allowing again once the clock caught up",
    );
    const resumedAt = clock.now();
    expect(resumedAt).toBeGreaterThanOrEqual(caughtUpMs);
    expect(resumedAt).toBeLessThan(caughtUpMs + 1_000);
    // the data path follows with the assignment in force (with these 3-s documents the last
    // one may have expired meanwhile: the next publication brings a new one)
    await until(() => rig.status().decision.mining, "mining again");
    expect(rig.status().decision.reasons).toEqual([]);
    await rig.moreShares(3, "shares at the pool again");
    expect(ACTIVE_STATES).toContain(rig.agent.state());
  }, 30_000);

  it("a clock set back ten minutes stops mining; corrected, it mines again with the next publication", async () => {
    const clock = offsetClock();
    const rig = await miningRig(clock, { graceS: GRACE_S });
    const floor = rig.guardState().counters.clockFloorS;
    // The floor follows the clock: the time of the last publication taken, seconds ago.
    expect(floor * 1000).toBeGreaterThan(Date.now() - 10_000);
    expect(floor * 1000).toBeLessThanOrEqual(Date.now());

    // NTP (or an attacker) sets the machine's clock back ten minutes. The engine sees it at
    // its next wake (here the held publication's end of grace, seconds away) and stops. The
    // publication, issued seconds before the floor, is then also not yet valid.
    clock.offsetMs = -600_000;
    await until(() => !rig.status().decision.mining, "the stop behind the clock floor");
    expect(rig.status().decision.reasons).toEqual(["publication.not_yet_valid", BEHIND_FLOOR]);
    const floorBehind = rig.guardState().counters.clockFloorS;
    expect(floorBehind).toBeGreaterThanOrEqual(floor);
    expect(clock.now()).toBeLessThan((floorBehind - 60) * 1000);
    expect(await rig.sharesHeld(1_000)).toBe(0);
    expect(rig.rejections.some((r) => r.includes("mining denied: "))).toBe(true);
    expect(rig.agent.state()).toBe("POLICY_SYNCED");
    // The control plane's publications meanwhile are refused (not yet valid by this clock).
    const versionBehind = rig.status().policy.version as number;

    // The clock is corrected: the control plane's next publication is taken and mining
    // resumes.
    clock.offsetMs = 0;
    await minesAgainWithANewPublication(rig, versionBehind, "with the clock corrected");
  }, 30_000);
});
