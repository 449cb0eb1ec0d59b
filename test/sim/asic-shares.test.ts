import { describe, expect, it } from "vitest";
import type { ProfileName } from "../../sim/asic/profiles.ts";
import { type FakeConn, type Msg, paramsOf, type TestJob } from "./asic-fake-pool.ts";
import { isSubmit, JOB_A, JOB_B, useHarness } from "./asic-harness.ts";
import { headerHashInt, headerHex, targetForPow2 } from "./asic-share-check.ts";

const h = useHarness();

/** The header version a submit stands for, per dialect (PROTOCOLS.md §1 "Messages"). */
function headerVersion(profile: ProfileName, job: TestJob, p: string[], mask: number): string {
  const jobV = Number.parseInt(job.version, 16);
  const bits = p[5] === undefined ? undefined : Number.parseInt(p[5], 16);
  if (bits === undefined) return job.version;
  let v: number;
  if (profile === "s9")
    v = bits; // multi_version: the full version
  else if (profile === "bitaxe")
    v = jobV ^ bits; // ESP-Miner: the changed bits
  else {
    expect(bits & ~mask).toBe(0); // BIP 310: bits outside the mask are invalid
    v = (jobV & ~mask) | (bits & mask);
  }
  return (v >>> 0).toString(16).padStart(8, "0");
}

function hashOf(profile: ProfileName, job: TestJob, en1: string, m: Msg, mask: number): bigint {
  const p = m.params as string[];
  expect(p[0]).toBe("owner.rig1");
  expect(p[1]).toBe(job.jobId);
  expect(p[2]).toMatch(/^[0-9a-f]{8}$/); // extranonce2: exactly the 4 bytes the pool gave
  expect(p[3]).toMatch(/^[0-9a-f]{8}$/);
  expect(p[4]).toMatch(/^[0-9a-f]{8}$/);
  const version = headerVersion(profile, job, p, mask);
  return headerHashInt(
    headerHex(job, en1, { extranonce2: p[2] ?? "", ntime: p[3] ?? "", nonce: p[4] ?? "", version }),
  );
}

async function mining(profile: ProfileName, k: number): Promise<{ c: FakeConn; en1: string }> {
  const pool = await h.pool();
  h.miner(profile, [pool.url]);
  const c = await pool.conn(0);
  await c.waitFor((m) => m.method === "mining.authorize");
  c.setDifficulty(2 ** -k);
  c.notify(JOB_A);
  return { c, en1: pool.extranonce1 };
}

describe("shares are real SHA-256d work", () => {
  const rolling: Record<ProfileName, number> = {
    s9: 0x1fffe000,
    s19: 0x1fffe000,
    bosminer: 0x1fffe000,
    bitaxe: 0x1fffe000,
    cpuminer: 0x1fffe000,
  };
  for (const profile of ["s9", "s19", "bosminer", "bitaxe", "cpuminer"] as const) {
    it(`${profile}: every submitted share meets the difficulty in force`, async () => {
      const { c, en1 } = await mining(profile, 20);
      const subs = await c.waitForCount(isSubmit, 8);
      const target = targetForPow2(20);
      const versions = new Set<string>();
      for (const s of subs) {
        expect(hashOf(profile, JOB_A, en1, s, rolling[profile]) <= target).toBe(true);
        versions.add(String((s.params as string[])[5]));
      }
      // Versions are rolled within the granted mask (one rolled version per batch).
      expect(versions.size).toBeGreaterThan(1);
      if (profile === "bitaxe") expect(paramsOf(subs[0])).toHaveLength(6);
    });
  }

  it("a share is not valid at a difficulty much higher than the one in force", async () => {
    // Guards the check itself: if the miner sent random nonces, they would fail here.
    const { c, en1 } = await mining("s9", 20);
    const subs = await c.waitForCount(isSubmit, 8);
    const hashes = subs.map((s) => hashOf("s9", JOB_A, en1, s, 0x1fffe000));
    expect(hashes.every((x) => x <= targetForPow2(20))).toBe(true);
    expect(hashes.some((x) => x > targetForPow2(4))).toBe(true);
  });

  it("set_difficulty applies at the next notify; shares for the old job keep the old difficulty", async () => {
    const { c, en1 } = await mining("s9", 22);
    await c.waitForCount(isSubmit, 3);
    // Harder difficulty, no notify yet: the miner keeps working job A at 2^-22.
    c.setDifficulty(2 ** -16);
    const stillA = await submitsAfter(c, c.messages.length, 12);
    for (const s of stillA) {
      expect(paramsOf(s)[1]).toBe(JOB_A.jobId);
      expect(hashOf("s9", JOB_A, en1, s, 0x1fffe000) <= targetForPow2(22)).toBe(true);
    }
    // Some of them would fail at the new difficulty: it was not applied early.
    expect(stillA.some((s) => hashOf("s9", JOB_A, en1, s, 0x1fffe000) > targetForPow2(16))).toBe(
      true,
    );

    // The next notify brings 2^-16 into force for job B.
    c.notify(JOB_B, false);
    const isB = (m: Msg) => isSubmit(m) && paramsOf(m)[1] === JOB_B.jobId;
    const onB = await c.waitForCount(isB, 3);
    for (const s of onB) {
      expect(hashOf("s9", JOB_B, en1, s, 0x1fffe000) <= targetForPow2(16)).toBe(true);
    }
  });
});

/** The first n submits received at or after message index `mark`. */
async function submitsAfter(c: FakeConn, mark: number, n: number): Promise<Msg[]> {
  const after = (m: Msg) => isSubmit(m) && c.messages.indexOf(m) >= mark;
  return c.waitForCount(after, n);
}

describe("mid-session changes from the pool", () => {
  it("mining.set_extranonce takes effect with the next job", async () => {
    const { c } = await mining("s9", 20);
    await c.waitFor(isSubmit);
    c.send({ id: null, method: "mining.set_extranonce", params: ["cafebabe", 4] });
    c.notify(JOB_B, true);
    const isB = (m: Msg) => isSubmit(m) && paramsOf(m)[1] === JOB_B.jobId;
    for (const s of await c.waitForCount(isB, 3)) {
      expect(hashOf("s9", JOB_B, "cafebabe", s, 0x1fffe000) <= targetForPow2(20)).toBe(true);
    }
  });

  it("mining.set_version_mask narrows the rolled bits at once", async () => {
    const { c, en1 } = await mining("s19", 20);
    await c.waitFor(isSubmit);
    c.send({ id: null, method: "mining.set_version_mask", params: ["00006000"] });
    const mark = c.messages.length;
    const subs = await submitsAfter(c, mark, 8);
    // Shares hashed before the change may still be on the wire; the later ones use the new mask.
    const late = subs.slice(-4);
    for (const s of late) {
      expect(Number.parseInt(String(paramsOf(s)[5]), 16) & ~0x6000).toBe(0);
      expect(hashOf("s19", JOB_A, en1, s, 0x6000) <= targetForPow2(20)).toBe(true);
    }
  });
});
