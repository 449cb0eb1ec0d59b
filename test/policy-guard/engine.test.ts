import { chmodSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { afterEach, describe, expect, it, vi } from "vitest";
import { fixedClock } from "../../lib/clock.ts";
import { verifyChainLog } from "../../lib/fs/chain-log.ts";
import { decisionToJson } from "../../policy-guard/decision.ts";
import type { Bundle } from "../../policy-guard/documents.ts";
import { signDecommission, signRevocation } from "../../policy-guard/sign.ts";
import { useTmpDir } from "../support/tmp.ts";
import {
  BITCOIND_IMAGE,
  baseRules,
  bundleFor,
  consentFor,
  type Harness,
  makeKeys,
  makeWorld,
  publicationFor,
  T0,
  TRANSLATOR_IMAGE,
  UPSTREAM,
  untimedRules,
  type World,
} from "./engine-fixture.ts";

const tmp = useTmpDir("agentd-engine-");
const worlds: World[] = [];
afterEach(() => {
  for (const w of worlds.splice(0)) w.close();
});

const ALL_SERVICES = { bitcoind: BITCOIND_IMAGE, translator: TRANSLATOR_IMAGE };
const ALLOWED_UPSTREAMS = [{ url: UPSTREAM, user: "owner1.farm-a" }];
const keys = makeKeys();

function setup(startMs = T0) {
  const clock = fixedClock(startMs);
  const w = makeWorld(tmp(), keys, clock);
  worlds.push(w);
  return { clock, w };
}

/** A started engine with bundle (seq, version) accepted. */
async function installed(w: World, seq = 1, version = 1, rules?: Record<string, unknown>) {
  const h = w.engine();
  await h.engine.start();
  const b = bundleFor(keys, { seq, ...(rules === undefined ? {} : { rules }) }, { version });
  const r = await h.engine.submitBundle(b, "test");
  expect(r).toEqual({ accepted: true, reasons: [] });
  return { h, b };
}

/** A started engine with a bundle whose publication lived 60 s, issued 10 s ago, grace 120 s. */
async function withShortGrace(w: World, clock: { now(): number }) {
  const h = w.engine();
  await h.engine.start();
  const iat = nowS(clock) - 10;
  const b = bundleFor(
    keys,
    { seq: 1, rules: untimedRules({ offline_grace_s: 120, max_publication_ttl_s: 60 }) },
    { version: 1, iat, ttlS: 60 },
  );
  expect(await h.engine.submitBundle(b, "cp")).toEqual({ accepted: true, reasons: [] });
  return { h, iat };
}

function stateCounters(w: World): Record<string, unknown> {
  const doc = JSON.parse(readFileSync(w.stateFile, "utf8")) as {
    data: { counters: Record<string, unknown> };
  };
  return doc.data.counters;
}

const ofType = (w: World, type: string) => w.records().filter((r) => r.type === type);
const lastOfType = (w: World, type: string) => ofType(w, type).at(-1);

/** A copy of a JWS with its payload changed and the original signature kept. */
function tamperPayload(jws: string, edit: (p: Record<string, unknown>) => void): string {
  const [h, p, s] = jws.split(".");
  const payload = JSON.parse(Buffer.from(p ?? "", "base64url").toString("utf8"));
  edit(payload);
  return `${h}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${s}`;
}

/** A copy of a JWS with the first character of its signature changed (still canonical). */
function flipSignature(jws: string): string {
  const at = jws.lastIndexOf(".") + 1;
  const c = jws[at] === "A" ? "B" : "A";
  return `${jws.slice(0, at)}${c}${jws.slice(at + 1)}`;
}

const nowS = (clock: { now(): number }) => Math.floor(clock.now() / 1000);

describe("start()", () => {
  it("drives the gates with the initial decision: a valid bundle inside the rules mines", async () => {
    const { w } = setup();
    const first = await installed(w);
    first.h.engine.close();

    const h = w.engine();
    expect(h.mining.inputs).toHaveLength(0); // nothing is driven before start()
    await h.engine.start();
    expect(h.mining.inputs).toHaveLength(1);
    expect(h.mining.last()).toEqual({
      allow: true,
      reasons: [],
      upstreams: ALLOWED_UPSTREAMS,
      networks: ["192.168.10.0/24"],
      maxWatts: 3600,
      maxTempC: 85,
      jobClasses: { allow: ["sha256d"], deny: [] },
    });
    expect(h.services.inputs).toHaveLength(1);
    expect(h.services.last().allowed).toEqual(ALL_SERVICES);
    expect(h.services.last().reasons).toEqual([]);
    expect(h.services.last().upstreams).toEqual(ALLOWED_UPSTREAMS);
  });

  it("without a bundle: mining denied consent.missing, no service allowed", async () => {
    const { w } = setup();
    const h = w.engine();
    await h.engine.start();
    expect(h.mining.last().allow).toBe(false);
    expect(h.mining.last().reasons).toEqual(["consent.missing", "publication.missing"]);
    expect(h.mining.last().upstreams).toEqual([]);
    expect(h.services.last().allowed).toEqual({});
    expect(h.services.last().reasons).toEqual(["consent.missing"]);
  });
});

describe("submitBundle()", () => {
  it("accepts a valid bundle, drives the gates and persists it for the next engine", async () => {
    const { w } = setup();
    const h = w.engine();
    await h.engine.start();
    const b = bundleFor(keys, { seq: 3 }, { version: 5 });
    expect(
      await h.engine.submitBundle(
        JSON.stringify({ consent: b.consent, publication: b.publication }),
        "file",
      ),
    ).toEqual({
      accepted: true,
      reasons: [],
    });
    expect(h.mining.inputs.map((i) => i.allow)).toEqual([false, true]);
    expect(h.services.last().allowed).toEqual(ALL_SERVICES);
    expect(lastOfType(w, "policy.accepted")).toMatchObject({
      data: { source: "file", seq: 3, version: 5 },
    });
    expect(stateCounters(w)).toMatchObject({ highestSeq: 3, highestVersion: 5 });
    expect(statSync(w.stateFile).mode & 0o777).toBe(0o600);

    const again = w.engine();
    expect(decisionToJson(again.engine.current())).toEqual(decisionToJson(h.engine.current()));
    expect(again.engine.current().mining.allow).toBe(true);
    expect(again.engine.snapshot()).toMatchObject({
      consent: { seq: 3 },
      publication: { version: 5 },
    });
  });

  const refusals: [string, (b: Bundle) => Bundle, string[]][] = [
    [
      "a tampered consent (rules widened, signature kept)",
      (cur) => {
        const c = tamperPayload(cur.consent, (p) => {
          (p.rules as Record<string, unknown>).max_watts = 100_000;
        });
        return { consent: c, publication: publicationFor(keys, c, { version: 3 }) };
      },
      ["consent.signature"],
    ],
    [
      "a consent forged with another key",
      () => {
        const c = consentFor(keys, { seq: 3, signer: keys.stranger });
        return { consent: c, publication: publicationFor(keys, c, { version: 3 }) };
      },
      ["consent.unknown_key"],
    ],
    [
      "a publication forged with another key",
      () => {
        const c = consentFor(keys, { seq: 3 });
        return {
          consent: c,
          publication: publicationFor(keys, c, { version: 3, signer: keys.stranger }),
        };
      },
      ["publication.unknown_key"],
    ],
    [
      "a lower seq (rollback to an older consent)",
      () => {
        const c = consentFor(keys, { seq: 1 });
        return { consent: c, publication: publicationFor(keys, c, { version: 3 }) };
      },
      ["consent.seq_rollback"],
    ],
    [
      "a lower publication version",
      (cur) => ({
        consent: cur.consent,
        publication: publicationFor(keys, cur.consent, { version: 1 }),
      }),
      ["publication.version_rollback"],
    ],
  ];

  it.each(refusals)(
    "refuses %s, keeps the current bundle and audits why",
    async (_what, make, reasons) => {
      const { w } = setup();
      const { h, b } = await installed(w, 2, 2);
      const stateBefore = readFileSync(w.stateFile, "utf8");
      const decisionBefore = decisionToJson(h.engine.current());
      const calls = h.mining.inputs.length;

      const r = await h.engine.submitBundle(make(b), "cp");
      expect(r).toEqual({ accepted: false, reasons });
      expect(readFileSync(w.stateFile, "utf8")).toBe(stateBefore);
      expect(decisionToJson(h.engine.current())).toEqual(decisionBefore);
      expect(h.engine.current().mining.allow).toBe(true);
      expect(h.mining.inputs).toHaveLength(calls);
      expect(h.engine.snapshot()).toMatchObject({
        consent: { seq: 2 },
        publication: { version: 2 },
      });
      const last = w.records().at(-1);
      expect(last).toMatchObject({
        type: "document.refused",
        actor: "policy-guard",
        data: { kind: "bundle", source: "cp", reasons },
      });
      // And a restart still runs on the bundle that was kept.
      expect(w.engine().engine.current().mining.allow).toBe(true);
    },
  );

  it("refuses what is not a bundle at all", async () => {
    const { w } = setup();
    const { h } = await installed(w);
    const r = await h.engine.submitBundle('{"consent":"x"}', "api");
    expect(r.accepted).toBe(false);
    expect(r.reasons).toContain("consent.missing");
    expect(lastOfType(w, "document.refused")).toMatchObject({
      data: { kind: "bundle", source: "api" },
    });
    expect(h.engine.current().mining.allow).toBe(true);
  });
});

describe("submitRevocation()", () => {
  it("stops mining and services, persists, refuses the revoked bundle, and a newer consent resumes", async () => {
    const { clock, w } = setup();
    const { h, b } = await installed(w, 1, 1);
    const revocation = signRevocation({
      ownerKey: keys.owner,
      worker: keys.worker,
      iat: nowS(clock),
      throughSeq: 1,
    });

    expect(await h.engine.submitRevocation(revocation, "push")).toEqual({
      accepted: true,
      reasons: [],
    });
    expect(h.mining.last().allow).toBe(false);
    expect(h.mining.last().reasons).toContain("consent.revoked");
    expect(h.mining.last().upstreams).toEqual([]);
    expect(h.services.last().allowed).toEqual({});
    expect(h.services.last().reasons).toEqual(["consent.revoked"]);
    expect(lastOfType(w, "revocation.accepted")).toMatchObject({
      data: { source: "push", through_seq: 1 },
    });
    expect(stateCounters(w).revokedThroughSeq).toBe(1);
    h.engine.close();

    // A restart on the same state file stays revoked.
    const r2 = w.engine();
    await r2.engine.start();
    expect(r2.mining.last().allow).toBe(false);
    expect(r2.mining.last().reasons).toContain("consent.revoked");
    expect(r2.services.last().allowed).toEqual({});

    // The revoked consent cannot come back, even with a newer publication.
    const replay = {
      consent: b.consent,
      publication: publicationFor(keys, b.consent, { version: 2 }),
    };
    expect(await r2.engine.submitBundle(replay, "cp")).toEqual({
      accepted: false,
      reasons: ["consent.revoked"],
    });
    expect(lastOfType(w, "document.refused")).toMatchObject({
      data: { kind: "bundle", reasons: ["consent.revoked"] },
    });
    expect(r2.mining.last().allow).toBe(false);

    // A newer consent with its publication brings mining back.
    const next = bundleFor(keys, { seq: 2 }, { version: 2 });
    expect(await r2.engine.submitBundle(next, "cp")).toEqual({ accepted: true, reasons: [] });
    expect(r2.mining.last()).toMatchObject({ allow: true, reasons: [] });
    expect(r2.services.last().allowed).toEqual(ALL_SERVICES);
  });

  it.each([
    ["signed by another key", "stranger", "self", "AGENTD_E_JWS_UNKNOWN_KEY"],
    ["for another worker", "owner", "other", "AGENTD_E_JWS_PAYLOAD"],
  ] as const)("refuses and audits a revocation %s", async (_what, signer, worker, code) => {
    const { clock, w } = setup();
    const { h } = await installed(w, 1, 1);
    const jws = signRevocation({
      ownerKey: signer === "owner" ? keys.owner : keys.stranger,
      worker: worker === "self" ? keys.worker : keys.otherWorker,
      iat: nowS(clock),
      throughSeq: 1,
    });
    expect(await h.engine.submitRevocation(jws, "api")).toEqual({
      accepted: false,
      reasons: [code],
    });
    expect(h.mining.last().allow).toBe(true);
    expect(h.mining.inputs).toHaveLength(2);
    expect(stateCounters(w).revokedThroughSeq).toBe(0);
    expect(w.records().at(-1)).toMatchObject({
      type: "document.refused",
      data: { kind: "revocation", source: "api", reasons: [code] },
    });
    expect(ofType(w, "revocation.accepted")).toHaveLength(0);
  });
});

describe("latency", () => {
  it("records, per gate and trigger, the time from the event to that gate's acknowledgement", async () => {
    const { clock, w } = setup();
    const { h } = await installed(w);
    // The proxy takes 7 ms (of the injected clock) to acknowledge; the supervisor acks at once.
    h.mining.behavior = async () => {
      await new Promise((r) => setTimeout(r, 5));
      clock.advance(7);
    };
    const t = clock.now();
    const revocation = signRevocation({
      ownerKey: keys.owner,
      worker: keys.worker,
      iat: nowS(clock),
      throughSeq: 1,
    });
    await h.engine.submitRevocation(revocation, "push");
    const rec = h.engine.latencies().filter((l) => l.trigger === "revocation:push");
    expect(rec).toHaveLength(2);
    expect(rec.find((l) => l.gate === "stratum-proxy")).toEqual({
      trigger: "revocation:push",
      gate: "stratum-proxy",
      ms: 7,
      at: t + 7,
    });
    expect(rec.find((l) => l.gate === "supervisor")).toEqual({
      trigger: "revocation:push",
      gate: "supervisor",
      ms: 0,
      at: t,
    });
    // start and the bundle were measured too.
    const triggers = h.engine.latencies().map((l) => `${l.trigger}/${l.gate}`);
    expect(triggers).toEqual(
      expect.arrayContaining([
        "start/stratum-proxy",
        "start/supervisor",
        "bundle:test/stratum-proxy",
      ]),
    );
  });

  it("counts a queued event's wait: the revocation arriving while a bundle is applied", async () => {
    const { clock, w } = setup();
    const h = w.engine();
    await h.engine.start();
    h.mining.behavior = async () => {
      await new Promise((r) => setTimeout(r, 5));
      clock.advance(7);
    };
    const t = clock.now();
    const bundle = h.engine.submitBundle(bundleFor(keys, { seq: 1 }, { version: 1 }), "cp");
    const revocation = signRevocation({
      ownerKey: keys.owner,
      worker: keys.worker,
      iat: nowS(clock),
      throughSeq: 1,
    });
    const revoked = h.engine.submitRevocation(revocation, "push");
    await Promise.all([bundle, revoked]);
    const ms = (trigger: string, gate: string) =>
      h.engine.latencies().find((l) => l.trigger === trigger && l.gate === gate)?.ms;
    expect(ms("bundle:cp", "stratum-proxy")).toBe(7);
    expect(ms("bundle:cp", "supervisor")).toBe(0);
    // Both arrived at t; the revocation waited 7 ms for the bundle's proxy acknowledgement.
    expect(ms("revocation:push", "supervisor")).toBe(7);
    expect(ms("revocation:push", "stratum-proxy")).toBe(14);
    expect(clock.now()).toBe(t + 14);
  });
});

describe("gate failures", () => {
  it("a gate that fails is audited, not counted as acknowledged, and driven again at the next wake-up", async () => {
    const { clock, w } = setup();
    const { h } = await installed(w, 1, 1, untimedRules());
    let failures = 1;
    h.mining.behavior = () => {
      if (failures-- > 0) throw new Error("proxy unreachable");
    };
    const rev = signRevocation({
      ownerKey: keys.owner,
      worker: keys.worker,
      iat: nowS(clock),
      throughSeq: 1,
    });
    expect((await h.engine.submitRevocation(rev, "push")).accepted).toBe(true);
    expect(lastOfType(w, "gate.failed")).toMatchObject({
      data: { gate: "stratum-proxy", trigger: "revocation:push", error: "proxy unreachable" },
    });
    const acked = (trigger: string) =>
      h.engine
        .latencies()
        .filter((l) => l.trigger === trigger)
        .map((l) => l.gate);
    expect(acked("revocation:push")).toEqual(["supervisor"]);

    const armed = h.timers.pending();
    expect(armed.ms).toBe(5 * 60_000);
    clock.advance(armed.ms);
    const calls = h.mining.inputs.length;
    armed.fn();
    await vi.waitFor(() => expect(h.mining.inputs).toHaveLength(calls + 1));
    await vi.waitFor(() => expect(acked("time")).toContain("stratum-proxy"));
    expect(h.mining.last().allow).toBe(false);
    expect(h.mining.last().reasons).toContain("consent.revoked");
    // The decision itself did not change again: one record for the revocation only.
    expect(
      ofType(w, "decision.changed").map((r) => (r.data as { trigger: string }).trigger),
    ).toEqual(["start", "bundle:test", "revocation:push"]);
  });
  it("a gate failing at start is retried without auditing the same decision twice", async () => {
    const { clock, w } = setup();
    const h = w.engine();
    let failures = 1;
    h.services.behavior = () => {
      if (failures-- > 0) throw new Error("docker down");
    };
    await h.engine.start();
    expect(lastOfType(w, "gate.failed")).toMatchObject({
      data: { gate: "supervisor", trigger: "start" },
    });
    const armed = h.timers.pending();
    clock.advance(armed.ms);
    armed.fn();
    await vi.waitFor(() => expect(h.services.inputs).toHaveLength(2));
    await vi.waitFor(() => expect(h.timers.pending()).not.toBe(armed));
    expect(h.services.last()).toMatchObject({ allowed: {}, reasons: ["consent.missing"] });
    expect(ofType(w, "decision.changed")).toHaveLength(1);
    // Once every gate has acknowledged, a wake-up with no change drives nothing.
    const again = h.timers.pending();
    clock.advance(again.ms);
    again.fn();
    await vi.waitFor(() => expect(h.timers.pending()).not.toBe(again));
    expect(h.services.inputs).toHaveLength(2);
    expect(h.mining.inputs).toHaveLength(2);
  });
  it("after a failed drive, a return to the last applied decision is driven again", async () => {
    const { clock, w } = setup();
    const { h } = await installed(w, 1, 1);
    let failures = 1;
    h.mining.behavior = () => {
      if (failures-- > 0) throw new Error("proxy unreachable");
    };
    const rev = signRevocation({
      ownerKey: keys.owner,
      worker: keys.worker,
      iat: nowS(clock),
      throughSeq: 1,
    });
    await h.engine.submitRevocation(rev, "push");
    // The supervisor stopped the services; the proxy failed to hear about it.
    expect(h.services.last().allowed).toEqual({});
    // A newer consent brings back exactly the decision applied before the revocation.
    const next = bundleFor(keys, { seq: 2 }, { version: 2 });
    expect(await h.engine.submitBundle(next, "cp")).toEqual({ accepted: true, reasons: [] });
    expect(h.services.last().allowed).toEqual(ALL_SERVICES);
    expect(h.mining.last()).toMatchObject({ allow: true, reasons: [] });
    expect(lastOfType(w, "decision.changed")).toMatchObject({
      data: { trigger: "bundle:cp", mining: { allow: true } },
    });
  });
});

describe("publication stop", () => {
  it("stop: true denies mining with publication.stop and leaves services alone", async () => {
    const { w } = setup();
    const { h, b } = await installed(w, 1, 1);
    const stop = {
      consent: b.consent,
      publication: publicationFor(keys, b.consent, { version: 2, stop: true }),
    };
    expect(await h.engine.submitBundle(stop, "cp")).toEqual({ accepted: true, reasons: [] });
    expect(h.mining.last().allow).toBe(false);
    expect(h.mining.last().reasons).toEqual(["publication.stop"]);
    expect(h.services.last().allowed).toEqual(ALL_SERVICES);
    expect(h.services.last().reasons).toEqual([]);
    expect(lastOfType(w, "decision.changed")).toMatchObject({
      data: { trigger: "bundle:cp", mining: { allow: false, reasons: ["publication.stop"] } },
    });
  });
});

describe("timers: schedule, grace and the periodic wake-up", () => {
  const WED_2157 = Date.UTC(2026, 10, 18, 21, 57, 0);
  const WED_2200 = Date.UTC(2026, 10, 18, 22, 0, 0);
  const FIVE_MIN = 5 * 60_000;

  it("wakes exactly when a schedule window ends: mining stops, services stay", async () => {
    const { clock, w } = setup(WED_2157);
    const rules = untimedRules({
      schedule: [
        {
          days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
          start: "20:00",
          end: "22:00",
          tz: "UTC",
        },
      ],
    });
    const { h } = await installed(w, 1, 1, rules);
    expect(h.mining.last().allow).toBe(true);
    const armed = h.timers.pending();
    expect(h.engine.current().nextChangeAt).toBe(WED_2200);
    expect(armed.ms).toBe(WED_2200 - clock.now());
    expect(armed.ms).toBe(3 * 60_000);

    clock.set(WED_2200);
    const calls = h.mining.inputs.length;
    armed.fn();
    await vi.waitFor(() => expect(h.mining.inputs).toHaveLength(calls + 1));
    expect(h.mining.last()).toMatchObject({ allow: false, reasons: ["rules.schedule_outside"] });
    expect(h.services.last().allowed).toEqual(ALL_SERVICES);
    expect(h.services.last().reasons).toEqual([]);
    expect(h.engine.latencies().at(-1)?.trigger).toBe("time");
    expect(lastOfType(w, "decision.changed")).toMatchObject({ data: { trigger: "time" } });
    // The next change is hours away (the publication's grace ends tomorrow 12:59, the window
    // opens again at 20:00): the wake-up is capped at the periodic 5 minutes.
    await vi.waitFor(() => expect(h.timers.pending()).not.toBe(armed));
    expect(h.engine.current().nextChangeAt).toBe(Date.UTC(2026, 10, 19, 12, 59, 0));
    expect(h.timers.pending().ms).toBe(FIVE_MIN);
  });

  it("wakes at the end of the offline grace: mining stops, services stay", async () => {
    const { clock, w } = setup(T0);
    const { h, iat } = await withShortGrace(w, clock);
    expect(h.mining.last().allow).toBe(true);
    const graceEnd = (iat + 60 + 120) * 1000;
    const armed = h.timers.pending();
    expect(h.engine.current().nextChangeAt).toBe(graceEnd);
    expect(armed.ms).toBe(graceEnd - clock.now());
    expect(armed.ms).toBe(170_000);

    // One millisecond early the decision would not change: the wake-up is not too late.
    clock.set(graceEnd);
    armed.fn();
    await vi.waitFor(() => expect(h.mining.last().allow).toBe(false));
    expect(h.mining.last().reasons).toEqual(["publication.offline_grace_exceeded"]);
    expect(h.services.last().allowed).toEqual(ALL_SERVICES);
  });

  it("with no change in sight wakes every 5 minutes and carries the clock floor forward", async () => {
    const { clock, w } = setup(T0);
    const { h } = await installed(w, 1, 1, untimedRules());
    const next = h.engine.current().nextChangeAt;
    expect(next === null || next - clock.now() > FIVE_MIN).toBe(true);
    const armed = h.timers.pending();
    expect(armed.ms).toBe(FIVE_MIN);
    expect(stateCounters(w).clockFloorS).toBe(nowS(clock));

    clock.advance(FIVE_MIN);
    const calls = h.mining.inputs.length;
    armed.fn();
    await vi.waitFor(() => expect(h.timers.pending()).not.toBe(armed));
    expect(h.mining.inputs).toHaveLength(calls); // nothing changed: the gates are left alone
    expect(stateCounters(w).clockFloorS).toBe(nowS(clock));
    expect(h.timers.pending().ms).toBe(FIVE_MIN);
  });

  it("every state write carries the clock floor forward (no write resets the 5-minute clock)", async () => {
    const { clock, w } = setup(T0);
    const { h } = await installed(w, 2, 1, untimedRules());
    clock.advance(4 * 60_000);
    // A revocation of an older seq: persisted, mining unaffected.
    const rev = signRevocation({
      ownerKey: keys.owner,
      worker: keys.worker,
      iat: nowS(clock),
      throughSeq: 1,
    });
    expect((await h.engine.submitRevocation(rev, "api")).accepted).toBe(true);
    expect(h.mining.last().allow).toBe(true);
    expect(stateCounters(w).clockFloorS).toBe(nowS(clock));
  });
});

describe("submitDecommission()", () => {
  it("denies everything, calls onDecommission once after the gates stopped, persists", async () => {
    const { clock, w } = setup();
    const first = await installed(w);
    first.h.engine.close();
    let gatesAtCall: { mining: boolean; services: object } | null = null;
    let h: Harness | undefined;
    const onDecommission = vi.fn(() => {
      if (h !== undefined)
        gatesAtCall = { mining: h.mining.last().allow, services: h.services.last().allowed };
    });
    h = w.engine({ onDecommission });
    await h.engine.start();
    expect(h.mining.last().allow).toBe(true);

    const jws = signDecommission({ ownerKey: keys.owner, worker: keys.worker, iat: nowS(clock) });
    expect(await h.engine.submitDecommission(jws, "owner")).toEqual({
      accepted: true,
      reasons: [],
    });
    expect(onDecommission).toHaveBeenCalledTimes(1);
    expect(gatesAtCall).toEqual({ mining: false, services: {} });
    expect(h.mining.last().allow).toBe(false);
    expect(h.mining.last().reasons).toContain("consent.decommissioned");
    expect(h.services.last()).toMatchObject({ allowed: {}, reasons: ["consent.decommissioned"] });
    expect(lastOfType(w, "decommission.accepted")).toMatchObject({ data: { source: "owner" } });

    // Nothing revives it: not a newer consent, not a restart.
    const newer = bundleFor(keys, { seq: 5 }, { version: 5 });
    const r = await h.engine.submitBundle(newer, "cp");
    expect(r.accepted).toBe(false);
    expect(r.reasons).toContain("consent.decommissioned");
    h.engine.close();

    const onAgain = vi.fn();
    const r2 = w.engine({ onDecommission: onAgain });
    await r2.engine.start();
    expect(r2.mining.last().allow).toBe(false);
    expect(r2.mining.last().reasons).toContain("consent.decommissioned");
    expect(r2.services.last()).toMatchObject({ allowed: {}, reasons: ["consent.decommissioned"] });
    expect(onAgain).not.toHaveBeenCalled();
    expect(onDecommission).toHaveBeenCalledTimes(1);
  });

  it("refuses a decommission signed by another key", async () => {
    const { clock, w } = setup();
    const { h } = await installed(w);
    const onDecommission = vi.fn();
    const jws = signDecommission({
      ownerKey: keys.stranger,
      worker: keys.worker,
      iat: nowS(clock),
    });
    expect(await h.engine.submitDecommission(jws, "api")).toEqual({
      accepted: false,
      reasons: ["AGENTD_E_JWS_UNKNOWN_KEY"],
    });
    expect(onDecommission).not.toHaveBeenCalled();
    expect(stateCounters(w).decommissioned).toBe(false);
    expect(h.mining.last().allow).toBe(true);
  });
});

describe("clock floor", () => {
  it("after a bundle accepted at T, a restart at T - 120 s is behind the floor; at T - 30 s it is not", async () => {
    const T = T0 + 10 * 60_000;
    const { clock, w } = setup(T);
    const first = await installed(w);
    first.h.engine.close();
    expect(stateCounters(w).clockFloorS).toBe(T / 1000);

    clock.set(T - 120_000);
    const behind = w.engine();
    await behind.engine.start();
    expect(behind.mining.last()).toMatchObject({ allow: false, reasons: ["clock.behind_floor"] });
    // The floor concerns mining only.
    expect(behind.services.last().allowed).toEqual(ALL_SERVICES);
    behind.engine.close();

    clock.set(T - 30_000);
    const within = w.engine();
    await within.engine.start();
    expect(within.mining.last()).toMatchObject({ allow: true, reasons: [] });
    // The floor never moves back.
    expect(stateCounters(w).clockFloorS).toBe(T / 1000);
  });
});

describe("clock floor between writes", () => {
  it("a clock set back less than the write lag cannot revive a grace that time ended (in memory, and across a restart)", async () => {
    const { clock, w } = setup(T0);
    const { h, iat } = await withShortGrace(w, clock);
    const graceEnd = (iat + 60 + 120) * 1000;
    // the grace ends less than the floor's write interval after the last write
    clock.set(graceEnd);
    await h.engine.refresh("time");
    expect(h.mining.last()).toMatchObject({
      allow: false,
      reasons: ["publication.offline_grace_exceeded"],
    });
    // the clock is set back into the grace by more than the 60 s tolerance: still denied,
    // now also behind the floor — the floor is what the engine has seen, not what it wrote
    clock.set(graceEnd - 120_000);
    await h.engine.refresh("upstream");
    expect(h.mining.last()).toMatchObject({ allow: false, reasons: ["clock.behind_floor"] });
    h.engine.close();
    // the decision change was persisted with the floor: a restart does not revive it either
    expect(stateCounters(w).clockFloorS).toBe(graceEnd / 1000);
    const restarted = w.engine();
    await restarted.engine.start();
    expect(restarted.mining.last()).toMatchObject({
      allow: false,
      reasons: ["clock.behind_floor"],
    });
  });
});

describe("an audit log that cannot be written", () => {
  it("does not keep a stop from the gates: the grace's end and a revocation are driven, and the next change still watched", async () => {
    const { clock, w } = setup(T0);
    let failing = false;
    const audit = {
      append: (r: Record<string, unknown>) => {
        if (failing) throw new Error("ENOSPC: no space left on device");
        return w.audit.append(r);
      },
    };
    const h = w.engine({ audit });
    await h.engine.start();
    const iat = nowS(clock) - 10;
    const b = bundleFor(
      keys,
      { seq: 1, rules: untimedRules({ offline_grace_s: 120, max_publication_ttl_s: 60 }) },
      { version: 1, iat, ttlS: 60 },
    );
    expect(await h.engine.submitBundle(b, "cp")).toEqual({ accepted: true, reasons: [] });
    failing = true;
    const graceEnd = (iat + 60 + 120) * 1000;
    clock.set(graceEnd);
    h.timers.pending().fn();
    await vi.waitFor(() => expect(h.mining.last().allow).toBe(false));
    expect(h.mining.last().reasons).toEqual(["publication.offline_grace_exceeded"]);
    // the engine still wakes for what comes next
    expect(h.timers.pending()).toBeDefined();
    // a revocation while the log is down still stops (on a fresh consent)
    failing = false;
    const h2 = w.engine({ audit });
    await h2.engine.start();
    const b2 = bundleFor(keys, { seq: 2 }, { version: 2 });
    expect(await h2.engine.submitBundle(b2, "cp")).toEqual({ accepted: true, reasons: [] });
    expect(h2.mining.last().allow).toBe(true);
    failing = true;
    const revocation = signRevocation({
      ownerKey: keys.owner,
      worker: keys.worker,
      throughSeq: 2,
      iat: nowS(clock),
    });
    expect(await h2.engine.submitRevocation(revocation, "local")).toEqual({
      accepted: true,
      reasons: [],
    });
    expect(h2.mining.last()).toMatchObject({ allow: false });
    expect(h2.mining.last().reasons).toContain("consent.revoked");
  });
});

describe("re-verification on load", () => {
  it("a stored bundle edited on disk is verified again and denied (consent.signature)", async () => {
    const { w } = setup();
    const { h, b } = await installed(w);
    h.engine.close();
    const text = readFileSync(w.stateFile, "utf8");
    expect(text).toContain(b.consent);
    const edited = text.replace(b.consent, flipSignature(b.consent));
    expect(edited).not.toBe(text);
    expect(edited.length).toBe(text.length);
    writeFileSync(w.stateFile, edited, { mode: 0o600 });
    chmodSync(w.stateFile, 0o600);

    const r2 = w.engine();
    expect(r2.engine.current().mining.allow).toBe(false);
    await r2.engine.start();
    expect(r2.mining.last().allow).toBe(false);
    expect(r2.mining.last().reasons).toContain("consent.signature");
    expect(r2.mining.last().upstreams).toEqual([]);
    expect(r2.services.last()).toMatchObject({ allowed: {}, reasons: ["consent.signature"] });
  });
});

describe("audit", () => {
  it("writes one decision.changed per decision change, in order, and the chain verifies", async () => {
    const { clock, w } = setup();
    const h = w.engine();
    await h.engine.start(); // 1: no consent
    const b1 = bundleFor(keys, { seq: 1 }, { version: 1 });
    await h.engine.submitBundle(b1, "cp"); // 2: mining
    await h.engine.submitBundle(b1, "cp"); // the same bundle again: no change
    await h.engine.submitBundle(
      {
        consent: b1.consent,
        publication: publicationFor(keys, b1.consent, { version: 2, stop: true }),
      },
      "cp",
    ); // 3: stop
    await h.engine.submitBundle(
      { consent: flipSignature(b1.consent), publication: b1.publication },
      "cp",
    ); // refused
    await h.engine.submitRevocation(
      signRevocation({
        ownerKey: keys.owner,
        worker: keys.worker,
        iat: nowS(clock),
        throughSeq: 1,
      }),
      "push",
    ); // 4: revoked
    await h.engine.submitBundle(bundleFor(keys, { seq: 2 }, { version: 3 }), "cp"); // 5: mining
    await h.engine.refresh("facts"); // no change

    const changes = ofType(w, "decision.changed");
    expect(changes.map((r) => (r.data as { trigger: string }).trigger)).toEqual([
      "start",
      "bundle:cp",
      "bundle:cp",
      "revocation:push",
      "bundle:cp",
    ]);
    // Each record is what the proxy was told, and the proxy was told nothing else.
    expect(changes.map((r) => (r.data as { mining: unknown }).mining)).toEqual(
      h.mining.inputs.map((i) => ({ allow: i.allow, reasons: i.reasons })),
    );
    expect(
      changes.map((r) => (r.data as { services: { allowed: unknown } }).services.allowed),
    ).toEqual(h.services.inputs.map((i) => i.allowed));
    expect(ofType(w, "document.refused")).toHaveLength(1);
    expect(ofType(w, "policy.accepted")).toHaveLength(3);

    // start() again drives the gates again, but the decision did not change: no record.
    await h.engine.start();
    expect(h.mining.inputs).toHaveLength(changes.length + 1);
    expect(ofType(w, "decision.changed")).toHaveLength(changes.length);

    const v = verifyChainLog(w.auditPath);
    expect(v.ok).toBe(true);
    expect(v.ok && v.records).toBe(w.records().length);
    expect(v.ok && v.head).toEqual(w.audit.head());
  });
});

describe("serialization", () => {
  it("a bundle and a revocation fired together apply one after the other, in order", async () => {
    const { clock, w } = setup();
    const { h } = await installed(w, 1, 1);
    const slow = async () => {
      await new Promise((r) => setTimeout(r, 15));
    };
    h.mining.behavior = slow;
    h.services.behavior = slow;
    const before = h.mining.inputs.length;

    const c2 = consentFor(keys, { seq: 2 });
    const stop = { consent: c2, publication: publicationFor(keys, c2, { version: 2, stop: true }) };
    const rev = signRevocation({
      ownerKey: keys.owner,
      worker: keys.worker,
      iat: nowS(clock),
      throughSeq: 2,
    });
    const p1 = h.engine.submitBundle(stop, "cp");
    const p2 = h.engine.submitRevocation(rev, "push");
    const [r1, r2] = await Promise.all([p1, p2]);

    expect(r1).toEqual({ accepted: true, reasons: [] }); // the bundle came first: not yet revoked
    expect(r2).toEqual({ accepted: true, reasons: [] });
    expect(h.mining.inputs.slice(before).map((i) => i.reasons)).toEqual([
      ["publication.stop"],
      expect.arrayContaining(["consent.revoked"]),
    ]);
    // The revocation's gates were driven only after the bundle's had acknowledged.
    expect(h.mining.events.slice(-4)).toEqual([
      `begin:${before}`,
      `end:${before}`,
      `begin:${before + 1}`,
      `end:${before + 1}`,
    ]);
    expect(h.services.events.slice(-4)).toEqual([
      `begin:${before}`,
      `end:${before}`,
      `begin:${before + 1}`,
      `end:${before + 1}`,
    ]);
    const order = w
      .records()
      .slice(-4)
      .map((r) => r.type);
    expect(order).toEqual([
      "policy.accepted",
      "decision.changed",
      "revocation.accepted",
      "decision.changed",
    ]);
    expect(h.engine.snapshot()).toMatchObject({ consent: { seq: 2 } });
    expect(h.engine.current().mining.reasons).toContain("consent.revoked");
    expect(h.services.last().allowed).toEqual({});
  });
});

describe("gate inputs and failed writes (review findings)", () => {
  it("a new consent with the same decision but another user, networks and limits reaches the mining gate", async () => {
    const { w } = setup();
    const { h } = await installed(w, 1, 1);
    const before = h.mining.inputs.length;
    expect(h.mining.last().allow).toBe(true);
    const rules = baseRules({
      upstreams: [{ url: UPSTREAM, user: "someone-else" }],
      networks: ["10.9.9.0/24"],
      max_watts: 3500,
    });
    expect(
      await h.engine.submitBundle(bundleFor(keys, { seq: 2, rules }, { version: 2 }), "t"),
    ).toEqual({
      accepted: true,
      reasons: [],
    });
    expect(h.mining.inputs.length).toBe(before + 1);
    expect(h.mining.last()).toMatchObject({
      allow: true,
      upstreams: [{ url: UPSTREAM, user: "someone-else" }],
      networks: ["10.9.9.0/24"],
      maxWatts: 3500,
    });
  });

  it("a revocation stops mining even when the state file cannot be written, and says so", async () => {
    const { clock, w } = setup();
    const { h } = await installed(w, 1, 1);
    // The state file's path becomes a directory: every atomic rename onto it fails.
    rmSync(w.stateFile);
    mkdirSync(w.stateFile);
    const revocation = signRevocation({
      ownerKey: keys.owner,
      worker: keys.worker,
      iat: nowS(clock),
      throughSeq: 1,
    });
    expect((await h.engine.submitRevocation(revocation, "push")).accepted).toBe(true);
    expect(h.mining.last().allow).toBe(false);
    expect(h.mining.last().reasons).toContain("consent.revoked");
    expect(ofType(w, "state.write_failed").length).toBeGreaterThan(0);
  });
});
