import { decodeJwsUnverified } from "../../lib/crypto/jws.ts";
import { isAgentdError } from "../../lib/errors.ts";
import type { ApiContext } from "./context.ts";
import { commitPublication, isNothingToPublish, isStalePlan, planPublication } from "./publish.ts";

/**
 * After a key rotation that drops the previous keys at once (`keep_previous: false`, a
 * compromise), every machine stops trusting publications signed by the dropped publication key
 * as soon as it takes the new key set — and would stay stopped until the republisher's next
 * re-issue, up to two thirds of a publication's lifetime later. So the latest publication of
 * every worker that was signed by a key no longer in the set is re-issued now, under the new
 * key, for the same consent and with the same `stop`. Paged like the republisher; a failure is
 * logged and the sweep goes on.
 */
export async function republishRetired(
  ctx: ApiContext,
): Promise<{ reissued: number; failed: number }> {
  const current = ctx.keys().signing.publication.kid;
  const counts = { reissued: 0, failed: 0 };
  let after: { exp: number; worker_id: string } | undefined;
  for (let page = 0; page < 1000; page++) {
    const batch = await ctx.store.listPublicationsExpiringBefore(
      Number.MAX_SAFE_INTEGER,
      1000,
      after,
    );
    for (const p of batch) {
      if (kidOf(p.jws) === current) continue;
      try {
        const plan = await planPublication(ctx, p.worker_id, { stop: p.stop });
        await commitPublication(ctx, plan, { actor: "system", reason: "keys rotated" });
        counts.reissued++;
      } catch (err) {
        if (isNothingToPublish(err) || isStalePlan(err)) continue;
        counts.failed++;
        ctx.logger.warn(
          { worker: p.worker_id, code: isAgentdError(err) ? err.code : undefined, err },
          "re-issuing a publication under the rotated key failed",
        );
      }
    }
    const last = batch.at(-1);
    if (last === undefined || batch.length < 1000) break;
    after = { exp: last.exp, worker_id: last.worker_id };
  }
  return counts;
}

function kidOf(jws: string): string | null {
  try {
    const kid = decodeJwsUnverified(jws).header.kid;
    return typeof kid === "string" ? kid : null;
  } catch {
    return null;
  }
}
