import { describe, expect, it } from "vitest";
import { commandIdOf, newCommandsByPolling } from "../../agent/command-poll.ts";
import type { WorkerEvent } from "../../control-plane/protocol/schemas/api-worker.ts";

/**
 * Push's fallback for commands, against a paging source shaped like the control plane's
 * `GET /v1/workers/{id}/commands` (at most 100 events, oldest first, `last_event_id`): a pure
 * test of the paging and the dedup (test/agent/daemon.test.ts runs it against the real one).
 */

const jwsFor = (cmdId: string) =>
  `${Buffer.from('{"alg":"EdDSA"}').toString("base64url")}.${Buffer.from(JSON.stringify({ cmd_id: cmdId })).toString("base64url")}.sig`;

function source(events: WorkerEvent[]) {
  const calls: number[] = [];
  return {
    calls,
    poll: async (after: number) => {
      calls.push(after);
      const page = events.filter((e) => e.id > after).slice(0, 100);
      return { events: page, last_event_id: page.at(-1)?.id ?? after };
    },
  };
}

// 250 events: publications, with a command at 7, 150 and 249
const events: WorkerEvent[] = Array.from({ length: 250 }, (_, i) => {
  const id = i + 1;
  return [7, 150, 249].includes(id)
    ? ({ id, kind: "command", jws: jwsFor(`c${id}`) } as unknown as WorkerEvent)
    : ({ id, kind: "publication", jws: "p", consent: "c" } as unknown as WorkerEvent);
});

describe("commands by polling", () => {
  it("reads every page, not only the first hundred events", async () => {
    const s = source(events);
    const got = await newCommandsByPolling({ poll: s.poll, handled: () => false, seen: new Set() });
    expect(got.map(commandIdOf)).toEqual(["c7", "c150", "c249"]);
    expect(s.calls).toEqual([0, 100, 200, 250]);
  });

  it("skips what the ledger handled and what was fetched before, however often it is asked", async () => {
    const s = source(events);
    const seen = new Set<string>();
    const handled = (id: string) => id === "c7";
    expect((await newCommandsByPolling({ poll: s.poll, handled, seen })).map(commandIdOf)).toEqual([
      "c150",
      "c249",
    ]);
    expect(await newCommandsByPolling({ poll: s.poll, handled, seen })).toEqual([]);
  });

  it("stops on a source that does not move", async () => {
    let calls = 0;
    const stuck = async () => {
      calls++;
      return { events: [events[6] as WorkerEvent], last_event_id: 0 };
    };
    await newCommandsByPolling({ poll: stuck, handled: () => false, seen: new Set() });
    expect(calls).toBe(1);
  });
});
