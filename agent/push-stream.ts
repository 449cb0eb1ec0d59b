import { join } from "node:path";
import type { StreamHandle } from "../control-plane/protocol/client-stream.ts";
import type { WorkerEvent } from "../control-plane/protocol/schemas/api-worker.ts";
import type { Clock } from "../lib/clock.ts";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";
import type { AgentContext } from "./agent-context.ts";
import type { AgentCommands } from "./commands.ts";
import type { PolicySync } from "./policy-sync.ts";
import { STREAM_FILE } from "./stream-state.ts";

/**
 * The control plane's push stream (docs/protocol.md, "Stream"): publications, revocations,
 * decommissions, owner-key rotations and commands as they happen, opened once the first attestation has settled
 * (it needs a session) and resumed from the last event handled, across restarts — history is
 * not replayed. Each event is handed to the policy sync or the commands, then its id kept.
 *
 * An event that fails the schema is skipped (control-plane/protocol/client-stream.ts) and
 * recorded as `stream.event_refused` with its id and why — at most `REFUSALS_PER_MINUTE`
 * records a minute; the ones left out are counted in the next record (`suppressed`), so a
 * control plane sending garbage cannot fill the audit log — and its id is kept like a handled
 * event's.
 */
export function startPushStream(
  ctx: AgentContext,
  o: {
    readonly attested: Promise<void>;
    readonly policy: PolicySync;
    readonly commands: AgentCommands;
  },
): { stop(): void } {
  const file = join(ctx.stateDir, STREAM_FILE);
  const kept = readStateFile(file, { format: 1 });
  const after = Number((kept?.data as { after?: unknown } | undefined)?.after ?? 0);
  let stream: StreamHandle | null = null;
  const refused = streamRefusals(
    ctx.clock,
    (r) => ctx.audit.append(r),
    (id, why) =>
      ctx.log.warn({ event_id: id, why }, "push stream: an event that fails the schema, skipped"),
  );

  const onEvent = async (e: WorkerEvent): Promise<void> => {
    switch (e.kind) {
      case "publication":
        await o.policy.submitBundle({ consent: e.consent, publication: e.jws }, "push");
        return;
      case "revocation":
        await o.policy.revoke(e.jws, "push");
        return;
      case "decommission":
        await o.policy.decommission(e.jws, "push");
        return;
      case "owner_rotation":
        await o.policy.rotateOwner(e.jws, "push");
        return;
      case "command":
        // Not awaited: a command may wait for a service (service-outcome.ts, up to 30 s), and
        // a revocation pushed behind it must not wait with it. Commands still run one at a
        // time in seq order (the executor's queue); one lost to a crash before it reached the
        // ledger stays pending at the control plane, and heartbeats have it polled.
        void o.commands.execute(e.jws).catch((err: unknown) => {
          ctx.log.warn({ err, event_id: e.id }, "a pushed command could not be handled");
        });
        return;
    }
  };

  void o.attested.then(() => {
    if (ctx.signal.aborted) return;
    stream = ctx.client.openStream({
      after: Number.isSafeInteger(after) && after >= 0 ? after : 0,
      onEvent: async (e) => {
        await onEvent(e);
        writeStateFile(file, 1, { after: e.id });
      },
      onInvalid: ({ id, why }) => {
        refused(id, why);
        if (id !== null) writeStateFile(file, 1, { after: id });
      },
      onError: (err) => ctx.log.warn({ code: err.code, err }, "push stream"),
    });
  });
  return { stop: () => stream?.close() };
}

const REFUSALS_PER_MINUTE = 10;

/** Records skipped events, at most REFUSALS_PER_MINUTE a minute; the rest counted in the next. */
export function streamRefusals(
  clock: Clock,
  append: (record: Record<string, unknown>) => void,
  log: (id: number | null, why: string) => void,
): (id: number | null, why: string) => void {
  let windowStart = Number.NEGATIVE_INFINITY;
  let inWindow = 0;
  let suppressed = 0;
  return (id, why) => {
    log(id, why);
    const now = clock.now();
    if (now - windowStart >= 60_000 || now < windowStart) {
      windowStart = now;
      inWindow = 0;
    }
    if (inWindow >= REFUSALS_PER_MINUTE) {
      suppressed++;
      return;
    }
    inWindow++;
    try {
      append({
        type: "stream.event_refused",
        event_id: id,
        why,
        ...(suppressed > 0 ? { suppressed } : {}),
      });
      suppressed = 0;
    } catch {
      // counted lost by the audit sink, which holds mining meanwhile
    }
  };
}
