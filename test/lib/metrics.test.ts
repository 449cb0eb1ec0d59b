import { describe, expect, it } from "vitest";
import { Registry } from "../../lib/metrics/registry.ts";

describe("metrics registry", () => {
  it("renders counters, gauges and histograms in the Prometheus text format", () => {
    const r = new Registry();
    const shares = r.counter("agentd_shares_total", "Shares by result.", ["worker", "result"]);
    const up = r.gauge("agentd_upstream_up", "1 when connected.");
    const lat = r.histogram("agentd_share_forward_seconds", "Forward latency.", [0.001, 0.01]);
    shares.inc({ worker: 'rig"1', result: "accepted" });
    shares.inc({ worker: 'rig"1', result: "accepted" }, 2);
    up.set({}, 1);
    lat.observe({}, 0.0005);
    lat.observe({}, 0.005);
    lat.observe({}, 5);
    expect(r.render()).toBe(
      [
        "# HELP agentd_shares_total Shares by result.",
        "# TYPE agentd_shares_total counter",
        'agentd_shares_total{worker="rig\\"1",result="accepted"} 3',
        "# HELP agentd_upstream_up 1 when connected.",
        "# TYPE agentd_upstream_up gauge",
        "agentd_upstream_up 1",
        "# HELP agentd_share_forward_seconds Forward latency.",
        "# TYPE agentd_share_forward_seconds histogram",
        'agentd_share_forward_seconds_bucket{le="0.001"} 1',
        'agentd_share_forward_seconds_bucket{le="0.01"} 2',
        'agentd_share_forward_seconds_bucket{le="+Inf"} 3',
        "agentd_share_forward_seconds_sum 5.0055",
        "agentd_share_forward_seconds_count 3",
        "",
      ].join("\n"),
    );
  });

  it("folds label sets beyond the cap into one _other series", () => {
    const r = new Registry();
    const m = r.counter("agentd_worker_shares_total", "x", ["worker"], 100);
    for (let i = 0; i < 10_000; i++) m.inc({ worker: `w${i}` });
    expect(m.seriesCount).toBe(101);
    expect(m.folded).toBe(9_900);
    expect(m.value({ worker: "w5" })).toBe(1);
    expect(r.render()).toContain('agentd_worker_shares_total{worker="_other"} 9900');
  });

  it("refuses a metric registered twice", () => {
    const r = new Registry();
    r.counter("agentd_x_total", "x");
    expect(() => r.counter("agentd_x_total", "x")).toThrow(/twice/);
  });
});
