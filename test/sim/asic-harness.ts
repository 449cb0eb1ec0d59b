/**
 * Starting simulated miners against fake pools in tests, with cleanup after each test.
 */
import { readFileSync } from "node:fs";
import { afterEach } from "vitest";
import { fixedClock } from "../../lib/clock.ts";
import { MgmtApi, type MgmtApiOptions } from "../../sim/asic/mgmt-api.ts";
import { type MinerEvent, type MinerOptions, SimMiner } from "../../sim/asic/miner.ts";
import { PROFILES, type ProfileName } from "../../sim/asic/profiles.ts";
import { HashScheduler } from "../../sim/asic/scheduler.ts";
import { FakePool, type Msg, type TestJob } from "./asic-fake-pool.ts";

type Event = MinerEvent & { miner: string };

/** The segwit block's job from the shared vectors (two merkle branches, version 20000000). */
export const JOB_A: TestJob = (() => {
  const v = JSON.parse(readFileSync("/work/shared/vectors/version-rolling.json", "utf8")) as {
    job: {
      job_id: string;
      prevhash: string;
      coinb1: string;
      coinb2: string;
      merkle_branch: string[];
      version: string;
      nbits: string;
      ntime: string;
    };
  };
  const j = v.job;
  return {
    jobId: j.job_id,
    prevhash: j.prevhash,
    coinb1: j.coinb1,
    coinb2: j.coinb2,
    branch: j.merkle_branch,
    version: j.version,
    nbits: j.nbits,
    ntime: j.ntime,
  };
})();

export const JOB_B: TestJob = { ...JOB_A, jobId: "job-b", ntime: "5ba350e5" };

export const isSubmit = (m: Msg): boolean => m.method === "mining.submit";

export interface Harness {
  pool(behaviour?: Parameters<typeof FakePool.start>[0]): Promise<FakePool>;
  miner(
    profile: ProfileName,
    pools: readonly string[],
    extra?: Partial<MinerOptions>,
  ): { miner: SimMiner; events: Event[] };
  api(miner: SimMiner, extra?: Partial<MgmtApiOptions>): Promise<MgmtApi>;
}

/** Registers afterEach cleanup; call at the top of a test file. */
export function useHarness(): Harness {
  const pools: FakePool[] = [];
  const miners: SimMiner[] = [];
  const apis: MgmtApi[] = [];
  const schedulers: HashScheduler[] = [];
  afterEach(async () => {
    for (const s of schedulers.splice(0)) s.stop();
    await Promise.all(miners.splice(0).map((m) => m.stop()));
    await Promise.all(apis.splice(0).map((a) => a.close()));
    await Promise.all(pools.splice(0).map((p) => p.close()));
  });
  return {
    async pool(behaviour) {
      const p = await FakePool.start(behaviour);
      pools.push(p);
      return p;
    },
    miner(profile, urls, extra = {}) {
      const scheduler = extra.scheduler ?? new HashScheduler();
      schedulers.push(scheduler);
      const events: Event[] = [];
      const miner = new SimMiner({
        id: `${profile}-t`,
        profile: PROFILES[profile],
        pools: urls.map((url) => ({ url, user: "owner.rig1" })),
        scheduler,
        // A clock that stands still: ntime never rolls, so every run hashes the same headers.
        clock: fixedClock(1_700_000_000_000),
        ...extra,
        onEvent: (e) => {
          events.push(e);
          extra.onEvent?.(e);
        },
      });
      miners.push(miner);
      miner.start();
      return { miner, events };
    },
    async api(miner, extra = {}) {
      const a = new MgmtApi({ miner, ...extra });
      apis.push(a);
      await a.listen();
      return a;
    },
  };
}

/** Resolves when an event matching pred has been recorded. */
export async function waitEvent(
  events: readonly Event[],
  pred: (e: Event) => boolean,
  timeoutMs = 15_000,
): Promise<Event> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const e = events.find(pred);
    if (e) return e;
    if (Date.now() > deadline) throw new Error("timed out waiting for an event");
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
