import { describe, expect, it } from "vitest";
import { publishForWorker, stopWorker } from "../../../control-plane/api/publish.ts";
import {
  createRepublisher,
  isDue,
  republishInterval,
} from "../../../control-plane/api/republisher.ts";
import { documentIdentity } from "../../../lib/crypto/jws.ts";
import { Registry } from "../../../lib/metrics/registry.ts";
import type { Timers } from "../../../lib/timers.ts";
import { signConsent } from "../../../policy-guard/sign.ts";
import { until } from "../http/helpers.ts";
import { type TestCp, type TestMachine, type TestOwner, useTestCp } from "./harness.ts";

const nowS = (t: TestCp) => Math.floor(t.clock.now() / 1000);
const SYSTEM = { actor: "system", reason: "test" } as const;

async function accept(
  t: TestCp,
  o: TestOwner,
  m: TestMachine,
  seq: number,
  lifetimeS = 30 * 86_400,
) {
  const iat = nowS(t);
  const jws = signConsent({
    ownerKey: o.privateKey,
    worker: m.workerId,
    rules: {},
    seq,
    policyId: "p",
    iat,
    exp: iat + lifetimeS,
  });
  await t.store.acceptConsent({
    identity: documentIdentity(jws),
    worker_id: m.workerId,
    owner_id: o.ownerId,
    seq,
    jws,
    exp: iat + lifetimeS,
    accepted_at: iat,
  });
}

/** Timers that run only when the test says so. */
function manualTimers() {
  const pending = new Map<number, { fn: () => void; ms: number }>();
  let next = 1;
  const timers: Timers = {
    setTimeout(fn, ms) {
      const id = next++;
      pending.set(id, { fn, ms });
      return id;
    },
    clearTimeout(h) {
      pending.delete(h as number);
    },
    setInterval() {
      throw new Error("the republisher arms no intervals");
    },
    clearInterval() {},
  };
  return {
    timers,
    pending,
    fire() {
      const [id, entry] = [...pending.entries()][0] ?? [];
      if (id === undefined || entry === undefined) throw new Error("no timer pending");
      pending.delete(id);
      entry.fn();
    },
  };
}

describe("republisher timing", () => {
  it("ticks every min(60 s, ttl / 10) and re-issues at a third of the lifetime", () => {
    expect(republishInterval(86_400)).toBe(60_000);
    expect(republishInterval(300)).toBe(30_000);
    expect(republishInterval(1)).toBe(1000);
    expect(isDue({ iat: 0, exp: 300 }, 199)).toBe(false);
    expect(isDue({ iat: 0, exp: 300 }, 200)).toBe(true);
    expect(isDue({ iat: 0, exp: 300 }, 400)).toBe(true);
  });
});

describe.each(["sqlite", "postgres"] as const)("republisher (%s)", (backend) => {
  const start = useTestCp();
  const cp = (publicationTtlS = 3000) =>
    start({ groups: () => [], backend, settings: { publicationTtlS } });

  it("re-issues a publication once a third of its lifetime remains, with a higher version", async () => {
    const t = await cp();
    const r = createRepublisher(t.ctx);
    const o = await t.owner();
    const m = await t.machine(o);
    await accept(t, o, m, 1);
    const first = await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    expect(await r.tick()).toEqual({ reissued: 0, skipped: 0, failed: 0 });
    t.clock.advance(1999_000);
    expect((await r.tick()).reissued).toBe(0);
    let woken = 0;
    t.ctx.policyNotifier.subscribe(m.workerId, () => woken++);
    t.clock.advance(1000);
    expect(await r.tick()).toEqual({ reissued: 1, skipped: 0, failed: 0 });
    const second = await t.store.latestPublication(m.workerId);
    expect(second?.version).toBeGreaterThan(first.version);
    expect([second?.iat, second?.exp, second?.stop]).toEqual([nowS(t), nowS(t) + 3000, false]);
    expect(second?.consent_identity).toBe(first.consent_identity);
    expect(woken).toBe(1);
    const events = await t.store.streamEventsSince(m.workerId, 0);
    expect(events.map((e) => e.ref)).toEqual([String(first.version), String(second?.version)]);
    const audit = await t.store.listAudit({ type: "publication.issued" });
    expect(audit.at(-1)?.data).toMatchObject({ reason: "reissue", stop: false });
    expect(audit.at(-1)?.actor).toBe("system");
    // not due again right away; a second instance's tick finds nothing to do either
    expect((await r.tick()).reissued).toBe(0);
    const other = createRepublisher({ ...t.ctx, metrics: new Registry() });
    expect((await other.tick()).reissued).toBe(0);
  });

  it("keeps a healthy machine's publication valid all along (never in offline grace)", async () => {
    const t = await cp(600);
    const r = createRepublisher(t.ctx);
    const o = await t.owner();
    const m = await t.machine(o);
    await accept(t, o, m, 1);
    await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    let last = 0;
    for (let step = 0; step < 90; step++) {
      t.clock.advance(r.intervalMs);
      await r.tick();
      const p = await t.store.latestPublication(m.workerId);
      if (p === null) throw new Error("no publication");
      // valid now, for at least another interval
      expect(p.exp - nowS(t)).toBeGreaterThan(r.intervalMs / 1000);
      expect(p.version).toBeGreaterThanOrEqual(last);
      last = p.version;
    }
  });

  it("keeps stops, skips what cannot be extended, and never fails on a dead consent", async () => {
    const t = await cp();
    const r = createRepublisher(t.ctx);
    const o = await t.owner();
    const stopped = await t.machine(o);
    const ending = await t.machine(o);
    await accept(t, o, stopped, 1);
    await accept(t, o, ending, 1, 2500);
    await publishForWorker(t.ctx, stopped.workerId, { stop: false, ...SYSTEM });
    await publishForWorker(t.ctx, ending.workerId, { stop: false, ...SYSTEM });
    t.clock.advance(1000);
    await stopWorker(t.ctx, stopped.workerId, SYSTEM);
    t.clock.advance(2000_000);
    // `stopped` is due and re-issued as a stop; `ending`'s consent ends at its publication's exp
    expect(await r.tick()).toEqual({ reissued: 1, skipped: 1, failed: 0 });
    const s = await t.store.latestPublication(stopped.workerId);
    expect([s?.stop, s?.iat]).toEqual([true, nowS(t)]);
    t.clock.advance(3000_000);
    expect(await r.tick()).toEqual({ reissued: 1, skipped: 1, failed: 0 });
    expect((await t.store.latestPublication(ending.workerId))?.exp).toBeLessThan(nowS(t));
  });

  it("stays correct when two instances tick at once", async () => {
    const t = await cp();
    const a = createRepublisher(t.ctx);
    const b = createRepublisher({ ...t.ctx, metrics: new Registry() });
    const o = await t.owner();
    const m = await t.machine(o);
    await accept(t, o, m, 1);
    const first = await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    t.clock.advance(2500_000);
    const [ra, rb] = await Promise.all([a.tick(), b.tick()]);
    // At least one re-issued; a second re-issue of the same worker is only an extra version.
    expect(ra.reissued + rb.reissued).toBeGreaterThanOrEqual(1);
    expect(ra.failed + rb.failed).toBe(0);
    const versions = (await t.store.listAudit({ type: "publication.issued" })).map(
      (e) => e.data.version as number,
    );
    expect(versions).toHaveLength(1 + ra.reissued + rb.reissued);
    expect([...versions].sort((x, y) => x - y)).toEqual(versions);
    expect(new Set(versions).size).toBe(versions.length);
    const latest = await t.store.latestPublication(m.workerId);
    expect([latest?.stop, latest?.exp]).toEqual([false, nowS(t) + 3000]);
    expect(latest?.version).toBeGreaterThan(first.version);
  });

  it("re-issues more than one page of due publications in one tick", async () => {
    const t = await cp();
    const r = createRepublisher(t.ctx, { batch: 2 });
    const o = await t.owner();
    const machines = [];
    for (let i = 0; i < 5; i++) {
      const m = await t.machine(o);
      await accept(t, o, m, 1);
      await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
      machines.push(m);
    }
    t.clock.advance(2500_000);
    expect(await r.tick()).toEqual({ reissued: 5, skipped: 0, failed: 0 });
    for (const m of machines) {
      expect((await t.store.latestPublication(m.workerId))?.iat).toBe(nowS(t));
    }
  });

  it("pages past publications it cannot re-issue to the due ones behind them", async () => {
    const t = await cp();
    const r = createRepublisher(t.ctx, { batch: 2 });
    const o = await t.owner();
    // Three at the head of the queue: their consents end with their publications (2000 s).
    for (let i = 0; i < 3; i++) {
      const m = await t.machine(o);
      await accept(t, o, m, 1, 2000);
      await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    }
    // Two behind them, with consents for a month: due, and extendable.
    const due = [];
    for (let i = 0; i < 2; i++) {
      const m = await t.machine(o);
      await accept(t, o, m, 1);
      await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
      due.push(m);
    }
    t.clock.advance(2500_000);
    expect(await r.tick()).toEqual({ reissued: 2, skipped: 3, failed: 0 });
    for (const m of due) {
      expect((await t.store.latestPublication(m.workerId))?.iat).toBe(nowS(t));
    }
  });

  it("runs its ticks on the injected timers, one at a time, and stops cleanly", async () => {
    const t = await cp();
    const manual = manualTimers();
    const r = createRepublisher(t.ctx, { timers: manual.timers, random: () => 0.5 });
    const o = await t.owner();
    const m = await t.machine(o);
    await accept(t, o, m, 1);
    const first = await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    await r.start();
    expect([...manual.pending.values()].map((p) => p.ms)).toEqual([30_000]);
    t.clock.advance(2500_000);
    manual.fire();
    // the next tick is scheduled only once this one is done
    expect(manual.pending.size).toBe(0);
    await until(() => manual.pending.size === 1, "next tick scheduled");
    expect([...manual.pending.values()].map((p) => p.ms)).toEqual([60_000]);
    expect((await t.store.latestPublication(m.workerId))?.version).toBeGreaterThan(first.version);
    await r.stop();
    expect(manual.pending.size).toBe(0);
  });
});
