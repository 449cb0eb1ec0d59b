import type { KeyObject } from "node:crypto";
import { fail } from "../../lib/errors.ts";
import type { Owner, Worker } from "../store/store.ts";
import type { ApiContext } from "./context.ts";

/**
 * The key a worker's owner documents (consents, revocations, decommissions, rotations) must be
 * signed by: the last owner-key rotation stored for it (owner-rotations.ts), else its owner's
 * registered key — whose thumbprint is the owner id. `owner` saves a read when the caller has
 * the worker's owner at hand.
 */
export async function ownerKeyInForce(
  ctx: ApiContext,
  worker: Worker,
  owner?: Owner | null,
): Promise<{ readonly id: string; readonly key: KeyObject }> {
  const last = (await ctx.store.listOwnerRotations(worker.worker_id)).at(-1);
  if (last !== undefined) return { id: last.to_owner, key: ctx.publicKeys.get(last.new_owner_jwk) };
  const o = owner?.id === worker.owner_id ? owner : await ctx.store.getOwner(worker.owner_id);
  if (o === null) throw fail("AGENTD_E_CP_FORBIDDEN", "the worker's owner is not registered");
  return { id: o.id, key: ctx.publicKeys.get(o.jwk) };
}
