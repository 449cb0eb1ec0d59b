import type { WorkerCommandsResponse } from "../control-plane/protocol/schemas/api-worker.ts";
import { eventPages } from "./event-pages.ts";

/**
 * The push stream's fallback for owner-key rotations: every page of the worker's events (the
 * stream's poll twin, oldest first), the `owner_rotation` documents the policy guard does not
 * know yet, in the order the control plane stored them. The policy sync asks for them when a
 * bundle's consent is signed by an owner key the guard does not know — a rotation it missed
 * (no stream, or the stream down while the owner rotated) — and tries the bundle again.
 * What is returned is only a candidate: the guard verifies each one as if it came from
 * anywhere else.
 */
export async function rotationsByPolling(o: {
  readonly poll: (after: number) => Promise<WorkerCommandsResponse>;
  /** True for a rotation accepted before or older than the last one (engine.knowsRotation). */
  readonly known: (jws: string) => boolean;
  readonly maxPages?: number;
}): Promise<string[]> {
  const fresh: string[] = [];
  for await (const e of eventPages(o.poll, o.maxPages)) {
    if (e.kind === "owner_rotation" && !o.known(e.jws)) fresh.push(e.jws);
  }
  return fresh;
}
