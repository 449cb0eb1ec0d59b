import { join } from "node:path";
import type { StreamHandle } from "../control-plane/protocol/client-stream.ts";
import type { WorkerEvent } from "../control-plane/protocol/schemas/api-worker.ts";
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
        await o.commands.execute(e.jws);
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
      onError: (err) => ctx.log.warn({ code: err.code, err }, "push stream"),
    });
  });
  return { stop: () => stream?.close() };
}
