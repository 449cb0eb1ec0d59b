import { describe, expect, it } from "vitest";
import { streamRefusals } from "../../agent/push-stream.ts";
import { fixedClock } from "../../lib/clock.ts";

/**
 * Push-stream events that fail the schema are recorded (agent/push-stream.ts), at most ten a
 * minute: a control plane sending garbage cannot fill the audit log, and what was left out is
 * counted in the next record.
 */
describe("stream refusals, recorded", () => {
  it("ten a minute, the rest counted in the next record", () => {
    const clock = fixedClock(1_000_000);
    const records: Record<string, unknown>[] = [];
    const logged: (number | null)[] = [];
    const refuse = streamRefusals(
      clock,
      (r) => records.push(r),
      (id) => logged.push(id),
    );
    for (let id = 1; id <= 25; id++) refuse(id, "AGENTD_E_SCHEMA: jws");
    expect(records).toHaveLength(10);
    expect(records[0]).toEqual({
      type: "stream.event_refused",
      event_id: 1,
      why: "AGENTD_E_SCHEMA: jws",
    });
    expect(logged).toHaveLength(25);
    clock.advance(60_000);
    refuse(null, "not JSON");
    expect(records.at(-1)).toEqual({
      type: "stream.event_refused",
      event_id: null,
      why: "not JSON",
      suppressed: 15,
    });
  });
});
