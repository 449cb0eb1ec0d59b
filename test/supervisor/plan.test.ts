import { describe, expect, it } from "vitest";
import { defaultSpecs } from "../../supervisor/defaults.ts";
import { type Actual, type Desired, dependencyOrder, plan } from "../../supervisor/plan.ts";
import { type ServiceKind, specHash } from "../../supervisor/spec.ts";

/**
 * The planner alone, without any driver: every rule of plan.ts, as plans.
 */

const specs = defaultSpecs("/srv/agentd");
const IMG = (c: string) => `sha256:${c.repeat(64)}`;
const want = (...kinds: ServiceKind[]) =>
  new Map<ServiceKind, Desired>(
    kinds.map((k, i) => [k, { spec: specs[k], image: IMG(String(i)) }]),
  );
const running = (
  kind: ServiceKind,
  d: Map<ServiceKind, Desired>,
  over: Partial<Actual> = {},
): Actual => {
  const w = d.get(kind);
  if (w === undefined) throw new Error(`${kind} not desired`);
  return {
    id: `${kind}-1`,
    kind,
    image: w.image,
    hash: specHash(w.spec, w.image),
    running: true,
    createdAt: 1000,
    ...over,
  };
};
const healthyAll = () => true;
const ops = (p: ReturnType<typeof plan>) =>
  p.steps.map((s) => `${s.op} ${s.kind}${"reason" in s ? ` (${s.reason})` : ""}`);

describe("the planner", () => {
  it("brings a stack up from nothing, dependencies first", () => {
    const d = want("lnd", "bitcoind", "translator");
    const p = plan({ desired: d, actual: [], control: {}, healthy: healthyAll, now: 0 });
    expect(ops(p)).toEqual([
      "create bitcoind",
      "start bitcoind (allowed by the consent)",
      "create translator",
      "start translator (allowed by the consent)",
      "create lnd",
      "start lnd (allowed by the consent)",
    ]);
  });

  it("does nothing when everything wanted runs", () => {
    const d = want("bitcoind", "translator");
    const actual = [running("bitcoind", d), running("translator", d)];
    expect(plan({ desired: d, actual, control: {}, healthy: healthyAll, now: 0 }).steps).toEqual(
      [],
    );
  });

  it("stops and removes a kind the consent no longer allows, dependents before what they need", () => {
    const d = want("bitcoind", "lnd");
    const actual = [running("bitcoind", d), running("lnd", d)];
    const p = plan({ desired: new Map(), actual, control: {}, healthy: healthyAll, now: 0 });
    expect(ops(p)).toEqual([
      "stop lnd (not allowed by the consent)",
      "remove lnd (not allowed by the consent)",
      "stop bitcoind (not allowed by the consent)",
      "remove bitcoind (not allowed by the consent)",
    ]);
  });

  it("replaces a container of another image or spec, and removes duplicates, keeping the running one", () => {
    const d = want("bitcoind");
    const old = running("bitcoind", d, { id: "old", image: IMG("f"), hash: "x" });
    let p = plan({ desired: d, actual: [old], control: {}, healthy: healthyAll, now: 0 });
    expect(ops(p)).toEqual([
      "stop bitcoind (outdated (spec or image changed))",
      "remove bitcoind (outdated (spec or image changed))",
      "create bitcoind",
      "start bitcoind (allowed by the consent)",
    ]);
    const a = running("bitcoind", d, { id: "a", running: false, createdAt: 5 });
    const b = running("bitcoind", d, { id: "b", running: true, createdAt: 1 });
    p = plan({ desired: d, actual: [a, b], control: {}, healthy: healthyAll, now: 0 });
    expect(p.steps).toEqual([{ op: "remove", kind: "bitcoind", id: "a", reason: "a duplicate" }]);
  });

  it("restarts a stopped one only after its backoff", () => {
    const d = want("bitcoind");
    const dead = running("bitcoind", d, { running: false });
    const early = plan({
      desired: d,
      actual: [dead],
      control: { bitcoind: { notBefore: 500 } },
      healthy: healthyAll,
      now: 100,
    });
    expect(early.steps).toEqual([]);
    expect(early.holds).toEqual([{ kind: "bitcoind", why: "backoff", until: 500 }]);
    const due = plan({
      desired: d,
      actual: [dead],
      control: { bitcoind: { notBefore: 500 } },
      healthy: healthyAll,
      now: 500,
    });
    expect(ops(due)).toEqual(["start bitcoind (not running)"]);
  });

  it("respects a manual stop and a crash loop: stopped, not started again", () => {
    const d = want("bitcoind", "translator");
    const actual = [running("bitcoind", d), running("translator", d, { running: false })];
    const p = plan({
      desired: d,
      actual,
      control: { bitcoind: { manualStop: true }, translator: { crashloop: true } },
      healthy: healthyAll,
      now: 0,
    });
    expect(ops(p)).toEqual(["stop bitcoind (stopped by an operator)"]);
    expect(p.holds).toEqual([
      { kind: "bitcoind", why: "manual" },
      { kind: "translator", why: "crashloop" },
    ]);
  });

  it("holds lnd back while bitcoind is unhealthy or not allowed, and starts it once it is", () => {
    const d = want("bitcoind", "lnd");
    const actual = [running("bitcoind", d), running("lnd", d)];
    const sick = plan({
      desired: d,
      actual,
      control: {},
      healthy: (k) => k !== "bitcoind",
      now: 0,
    });
    expect(ops(sick)).toEqual(["stop lnd (waiting for bitcoind)"]);
    expect(sick.holds).toEqual([{ kind: "lnd", why: "dependency", on: "bitcoind" }]);
    const stopped = [running("bitcoind", d), running("lnd", d, { running: false })];
    expect(
      ops(plan({ desired: d, actual: stopped, control: {}, healthy: healthyAll, now: 0 })),
    ).toEqual(["start lnd (not running)"]);
    // bitcoind died: it is started again first, lnd stopped after (its restart does not wait)
    const dead = [running("bitcoind", d, { running: false }), running("lnd", d)];
    expect(
      ops(plan({ desired: d, actual: dead, control: {}, healthy: () => false, now: 0 })),
    ).toEqual(["start bitcoind (not running)", "stop lnd (waiting for bitcoind)"]);
    // lnd allowed, bitcoind not: lnd cannot run
    const onlyLnd = want("lnd");
    expect(
      plan({ desired: onlyLnd, actual: [], control: {}, healthy: healthyAll, now: 0 }).steps,
    ).toEqual([]);
  });

  it("never plans for containers it was not given (the driver lists agentd's own only)", () => {
    const p = plan({ desired: new Map(), actual: [], control: {}, healthy: healthyAll, now: 0 });
    expect(p.steps).toEqual([]);
  });

  it("orders kinds after what they depend on", () => {
    const d = new Map<ServiceKind, Desired>([
      [
        "translator",
        { spec: { ...specs.translator, dependsOn: ["template-provider"] }, image: IMG("1") },
      ],
      ["template-provider", { spec: specs["template-provider"], image: IMG("2") }],
      ["bitcoind", { spec: specs.bitcoind, image: IMG("3") }],
    ]);
    const order = dependencyOrder(d);
    expect(order.indexOf("bitcoind")).toBeLessThan(order.indexOf("template-provider"));
    expect(order.indexOf("template-provider")).toBeLessThan(order.indexOf("translator"));
  });
});
