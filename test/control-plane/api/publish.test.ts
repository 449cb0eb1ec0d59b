import { describe, expect, it } from "vitest";
import {
  commitPublication,
  isNothingToPublish,
  isStalePlan,
  planPublication,
  publishForWorker,
  stopWorker,
} from "../../../control-plane/api/publish.ts";
import { republishRetired } from "../../../control-plane/api/republish-retired.ts";
import { rotateKeys } from "../../../control-plane/keys/rotate.ts";
import type { Store } from "../../../control-plane/store/store.ts";
import { publicKeyOf } from "../../../lib/crypto/ed25519.ts";
import { decodeJwsUnverified, documentIdentity } from "../../../lib/crypto/jws.ts";
import { isAgentdError } from "../../../lib/errors.ts";
import { signConsent } from "../../../policy-guard/sign.ts";
import { EMPTY_COUNTERS, verifyDocuments } from "../../../policy-guard/verify.ts";
import { type TestCp, type TestMachine, type TestOwner, useTestCp } from "./harness.ts";

const nowS = (t: TestCp) => Math.floor(t.clock.now() / 1000);
const SYSTEM = { actor: "system", reason: "test" } as const;

/** Stores a consent directly (the API's checks are tested in policies.test.ts). */
async function accept(
  t: TestCp,
  o: TestOwner,
  m: TestMachine,
  seq: number,
  o2: { rules?: unknown; lifetimeS?: number } = {},
): Promise<string> {
  const iat = nowS(t);
  const exp = iat + (o2.lifetimeS ?? 30 * 86_400);
  const jws = signConsent({
    ownerKey: o.privateKey,
    worker: m.workerId,
    rules: o2.rules ?? {},
    seq,
    policyId: "p",
    iat,
    exp,
  });
  await t.store.acceptConsent({
    identity: documentIdentity(jws),
    worker_id: m.workerId,
    owner_id: o.ownerId,
    seq,
    jws,
    exp,
    accepted_at: iat,
  });
  return jws;
}

async function refusal(p: Promise<unknown>) {
  try {
    await p;
  } catch (e) {
    if (isAgentdError(e)) return e;
  }
  throw new Error("expected a refusal");
}

describe.each(["sqlite", "postgres"] as const)("publishForWorker (%s)", (backend) => {
  const start = useTestCp();
  const cp = (publicationTtlS = 86_400) =>
    start({ groups: () => [], backend, settings: { publicationTtlS } });

  it("signs the latest consent under a rising version, audits it and wakes the long polls", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    const consent = await accept(t, o, m, 1);
    let woken = 0;
    t.ctx.policyNotifier.subscribe(m.workerId, () => woken++);
    const p1 = await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    expect(woken).toBe(1);
    expect(p1.version).toBe(t.clock.now());
    const docs = verifyDocuments({
      bundle: { consent, publication: p1.jws },
      trust: {
        owner: o.publicKey,
        publication: [publicKeyOf(t.ctx.keys().signing.publication.privateKey)],
      },
      worker: m.workerId,
      counters: EMPTY_COUNTERS,
    });
    expect([...docs.consentReasons, ...docs.publicationReasons]).toEqual([]);
    expect(docs.publication?.payload).toMatchObject({
      version: p1.version,
      iat: nowS(t),
      exp: nowS(t) + 86_400,
      stop: false,
    });
    // the clock goes back (a restored host, a stepped clock): versions still go up
    t.clock.advance(-3_600_000);
    const p2 = await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    expect(p2.version).toBe(p1.version + 1);
    const p3 = await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    expect(p3.version).toBe(p2.version + 1);
    const audit = await t.store.listAudit({ type: "publication.issued" });
    expect(audit.map((e) => e.data.version)).toEqual([p1.version, p2.version, p3.version]);
    expect(audit[0]).toMatchObject({ actor: "system", object: `worker:${m.workerId}` });
    expect((await t.store.streamEventsSince(m.workerId, 0)).map((e) => e.ref)).toEqual(
      [p1, p2, p3].map((p) => String(p.version)),
    );
  });

  it("re-issues under the rotated key what the dropped key signed, with the same consent and stop (keys rotated after a compromise)", async () => {
    const t = await cp();
    const o = await t.owner();
    const [a, b, c] = [await t.machine(o), await t.machine(o), await t.machine(o)];
    const consents = [await accept(t, o, a, 1), await accept(t, o, b, 1)];
    await publishForWorker(t.ctx, a.workerId, { stop: false, ...SYSTEM });
    await publishForWorker(t.ctx, b.workerId, { stop: true, ...SYSTEM });
    const old = t.ctx.keys().signing.publication.kid;
    t.ctx.setKeys(rotateKeys(t.ctx.keys().dir, nowS(t), { keepPrevious: false }));
    const now = t.ctx.keys().signing.publication.kid;
    expect(now).not.toBe(old);
    t.clock.advance(1000);
    expect(await republishRetired(t.ctx)).toEqual({ reissued: 2, failed: 0 });
    for (const [m, consent, stop] of [
      [a, consents[0], false],
      [b, consents[1], true],
    ] as const) {
      const p = await t.store.latestPublication(m.workerId);
      if (p === null) throw new Error("no publication");
      expect(decodeJwsUnverified(p.jws).header.kid).toBe(now);
      expect(p.consent_identity).toBe(documentIdentity(consent as string));
      expect(p.stop).toBe(stop);
    }
    expect(await t.store.latestPublication(c.workerId)).toBeNull();
    // a second sweep finds nothing signed by a dropped key
    expect(await republishRetired(t.ctx)).toEqual({ reissued: 0, failed: 0 });
  });

  it("keeps exp - iat within the consent's and the control plane's limits, never past the consent", async () => {
    const t = await cp(7200);
    const o = await t.owner();
    const m = await t.machine(o);
    await accept(t, o, m, 1, { rules: { max_publication_ttl_s: 3600 } });
    const short = await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    expect(short.exp - short.iat).toBe(3600);
    await accept(t, o, m, 2, { rules: { max_publication_ttl_s: 86_400 } });
    const capped = await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    expect(capped.exp - capped.iat).toBe(7200);
    await accept(t, o, m, 3, { lifetimeS: 100 });
    const ending = await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    expect(ending.exp).toBe(nowS(t) + 100);
    t.clock.advance(100_000);
    const e = await refusal(publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM }));
    expect([e.code, e.context.reason]).toEqual(["AGENTD_E_CP_CONFLICT", "consent_expired"]);
    expect(isNothingToPublish(e)).toBe(true);
    expect(await stopWorker(t.ctx, m.workerId, SYSTEM)).toBeNull();
  });

  it("publishes nothing without a consent: not found, and a stop is not needed", async () => {
    const t = await cp();
    const m = await t.machine(await t.owner());
    const e = await refusal(publishForWorker(t.ctx, m.workerId, { stop: true, ...SYSTEM }));
    expect([e.code, e.context.reason]).toEqual(["AGENTD_E_CP_NOT_FOUND", "no_consent"]);
    expect(await stopWorker(t.ctx, m.workerId, SYSTEM)).toBeNull();
    expect(await t.store.latestPublication(m.workerId)).toBeNull();
    const unknown = await refusal(
      publishForWorker(t.ctx, "A".repeat(43), { stop: true, ...SYSTEM }),
    );
    expect(unknown.code).toBe("AGENTD_E_CP_NOT_FOUND");
    expect(isNothingToPublish(unknown)).toBe(false);
  });

  it("keeps a stop on re-issue until the owner posts a consent after it", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    await accept(t, o, m, 1);
    await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    t.clock.advance(5000);
    const stop = await stopWorker(t.ctx, m.workerId, { actor: "apikey:op", reason: "emergency" });
    expect(stop?.stop).toBe(true);
    t.clock.advance(5000);
    const reissued = await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    expect(reissued.stop).toBe(true);
    const plan = await planPublication(t.ctx, m.workerId, { stop: false });
    expect(plan.causes).toEqual(["in_force"]);
    // A consent accepted in the same second as the latest stop does not lift it (the tie
    // goes to the stop)...
    await accept(t, o, m, 2);
    expect((await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM })).stop).toBe(true);
    // ...one accepted later does.
    t.clock.advance(1000);
    await accept(t, o, m, 3);
    const resumed = await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    expect(resumed.stop).toBe(false);
    expect((await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM })).stop).toBe(
      false,
    );
  });

  it("stops quarantined and revoked workers, and the stop outlives a lifted quarantine", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    await accept(t, o, m, 1);
    await t.store.setQuarantine(m.workerId, { reason: "clone", at: nowS(t) });
    const q = await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    expect(q.stop).toBe(true);
    await t.store.setQuarantine(m.workerId, null);
    t.clock.advance(1000);
    const plan = await planPublication(t.ctx, m.workerId, { stop: false });
    expect([plan.stop, plan.causes]).toEqual([true, ["in_force"]]);

    const m2 = await t.machine(o);
    await accept(t, o, m2, 4);
    await t.store.storeRevocation({
      worker_id: m2.workerId,
      kind: "revocation",
      through_seq: 4,
      jws: "x",
      at: nowS(t),
    });
    const revoked = await planPublication(t.ctx, m2.workerId, { stop: false });
    expect([revoked.stop, revoked.causes]).toEqual([true, ["revoked"]]);
  });

  it("never commits a plan made before a racing stop: refused, or planned again", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    await accept(t, o, m, 1);
    await publishForWorker(t.ctx, m.workerId, { stop: false, ...SYSTEM });
    t.clock.advance(1000);
    // A re-issue planned before the stop tries to commit after it.
    const stale = await planPublication(t.ctx, m.workerId, { stop: false });
    const stop = await publishForWorker(t.ctx, m.workerId, { stop: true, ...SYSTEM });
    let refused: unknown;
    try {
      await commitPublication(t.ctx, stale, SYSTEM);
    } catch (err) {
      refused = err;
    }
    expect(isStalePlan(refused)).toBe(true);
    expect(await t.store.latestPublication(m.workerId)).toMatchObject({
      version: stop.version,
      stop: true,
    });
    // publishForWorker whose plan goes stale under it plans again: the stop is in force.
    let raced = false;
    const store: Store = new Proxy(t.store, {
      get(target, prop) {
        if (prop !== "publish") {
          const v = Reflect.get(target, prop, target);
          // the store's methods use private fields: call them on the store itself
          return typeof v === "function" ? v.bind(target) : v;
        }
        return async (...args: Parameters<Store["publish"]>) => {
          if (!raced) {
            raced = true;
            await publishForWorker(t.ctx, m.workerId, { stop: true, ...SYSTEM });
          }
          return target.publish(...args);
        };
      },
    });
    t.clock.advance(1000);
    const reissue = await publishForWorker({ ...t.ctx, store }, m.workerId, {
      stop: false,
      ...SYSTEM,
    });
    expect(raced).toBe(true);
    expect([reissue.stop, (await t.store.latestPublication(m.workerId))?.version]).toEqual([
      true,
      reissue.version,
    ]);
    const issued = (await t.store.listAudit({ type: "publication.issued" })).map((e) => [
      e.data.stop,
      e.data.causes,
    ]);
    // first; the stop; the racing stop; the re-planned re-issue, which keeps the stop.
    expect(issued).toEqual([
      [false, []],
      [true, ["requested"]],
      [true, ["requested", "in_force"]],
      [true, ["in_force"]],
    ]);
  });
});
