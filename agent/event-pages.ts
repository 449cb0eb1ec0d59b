import type { WorkerCommandsResponse } from "../control-plane/protocol/schemas/api-worker.ts";

type WorkerEvent = WorkerCommandsResponse["events"][number];

/**
 * Every event of the worker's event log, oldest first, page by page (the control plane answers
 * at most 100 a time), until a page is empty or does not move on — bounded by `maxPages` so a
 * control plane that keeps answering cannot keep the agent here.
 */
export async function* eventPages(
  poll: (after: number) => Promise<WorkerCommandsResponse>,
  maxPages = 1000,
): AsyncGenerator<WorkerEvent> {
  for (let after = 0, page = 0; page < maxPages; page++) {
    const r = await poll(after);
    yield* r.events;
    if (r.events.length === 0 || r.last_event_id <= after) return;
    after = r.last_event_id;
  }
}
