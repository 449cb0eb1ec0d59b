import { describe, expect, it, vi } from "vitest";
import { createMaintenance } from "../../../control-plane/api/maintenance.ts";
import { unixSeconds } from "../../../lib/clock.ts";
import { fakeTime } from "../../../lib/timers.ts";
import { useTestCp } from "./harness.ts";

describe.each(["sqlite", "postgres"] as const)("maintenance (%s)", (backend) => {
  const start = useTestCp();

  it("purges expired tokens, challenges and jtis, and heartbeats past retention", async () => {
    const t = await start({ groups: () => [], backend, settings: { heartbeatRetentionS: 3600 } });
    const m = await t.machine(await t.owner());
    const now = unixSeconds(t.clock);
    await t.store.recordHeartbeats(
      [1, 2, 3].map((counter) => ({
        worker_id: m.workerId,
        counter,
        iat: now,
        received_at: now + counter,
        jws: `hb-${counter}`,
        flags: [],
      })),
    );
    await t.store.createAttestationChallenge({
      nonce: "n1",
      worker_id: null,
      expires_at: now + 60,
    });
    await t.store.useJti("j1", m.workerId, now + 120, now);
    await t.store.createAccessToken({
      token_sha256: "ab".repeat(32),
      worker_id: m.workerId,
      expires_at: now + 900,
    });
    const maintenance = createMaintenance(t.ctx, { pageSize: 1 });
    // Nothing is old or expired yet.
    expect(await maintenance.tick()).toEqual({
      keys: "current",
      jtis: 0,
      challenges: 0,
      access_tokens: 0,
      heartbeats: 0,
    });
    // Past the token's 900 s, not past the harness machine's own (longer) token.
    t.clock.advance(3600 * 1000 + 10_000);
    // One page per heartbeat (pageSize 1): both old ones go, the latest stays.
    expect(await maintenance.tick()).toEqual({
      keys: "current",
      jtis: 1,
      challenges: 1,
      access_tokens: 1,
      heartbeats: 2,
    });
    expect((await t.store.listHeartbeats(m.workerId)).map((h) => h.counter)).toEqual([3]);
    expect(t.ctx.metrics.render()).toContain(
      'agentd_cp_maintenance_deleted_total{kind="heartbeats"} 2',
    );
  });

  it("ticks on its timer after start, never after stop", async () => {
    const t = await start({ groups: () => [], backend });
    const time = fakeTime(0);
    const maintenance = createMaintenance(t.ctx, {
      timers: time.timers,
      intervalMs: 1000,
      random: () => 0.5,
    });
    await maintenance.start();
    expect(time.delays()).toEqual([500]);
    await time.advance(500);
    // The next tick is scheduled once this one has finished.
    await vi.waitFor(() => expect(time.delays()).toEqual([1000]));
    await maintenance.stop();
    expect(time.pending()).toBe(0);
  });
});
