import { createHash } from "node:crypto";
import { unixSeconds } from "../../lib/clock.ts";
import { fail, isAgentdError } from "../../lib/errors.ts";
import { defineRoute } from "../http/route.ts";
import { loadControlPlaneKeys } from "../keys/load.ts";
import { rotateKeys } from "../keys/rotate.ts";
import { KEY_USES } from "../protocol/keyset.ts";
import type { KeysResponse } from "../protocol/schemas/api-admin.ts";
import { validate } from "../protocol/validate.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { actorOf } from "./owners.ts";
import { republishRetired } from "./republish-retired.ts";

/**
 * The control plane's key set (docs/protocol.md section 2, "Key set"): `GET /v1/keys` serves
 * the root-signed set in force; `POST /v1/admin/keys/rotate` gives every use a new key in a set
 * with seq + 1 signed by the same root, so an agent holding the old set accepts the new one
 * (protocol/keyset.ts `acceptKeySetUpdate`) and nothing signed by another key.
 *
 * Rotation order: the key directory first (keys/rotate.ts: its key set file is the commit
 * point), then the keys this process signs with, then the store's record with the audit event.
 * The files are the source of truth for signing; the store keeps the history of sets served.
 */

export type KeySync = "current" | "reloaded" | "stale" | "conflict";

const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");

/**
 * Several instances on one database (docs/protocol.md, "Key set"): a rotation made through
 * one is recorded in the store; every other instance, on its maintenance tick, sees a newer
 * key set there and loads its own key directory again (shared with the rotating instance, or
 * copied from it). While its directory still holds an older set, the instance is `stale`: it
 * would sign with keys agents no longer accept, so /readyz answers 503 and a load balancer
 * sends it no traffic. The error is logged with what to do.
 *
 * Sets are compared by content, not by `seq` alone: the store's newest set and this
 * instance's must be the same JWS when their seqs are equal. Two different sets under one
 * seq — a rotation made on two instances with separate key directories at once (the second
 * could not record its set, but signs with it), or a store row changed behind our back — is a
 * `conflict`: agents holding the one refuse the other as a rollback, so neither is kept
 * silently. The instance reloads its directory once (it may have been fixed meanwhile) and,
 * if the conflict stays, is not ready (503) and logs both sets' hashes, until an operator
 * copies the right key directory in place.
 */
export async function syncKeys(ctx: ApiContext): Promise<KeySync> {
  const stored = await ctx.store.currentKeySet();
  const mine = ctx.keys();
  if (stored === null || stored.seq < mine.keyset.seq) return "current";
  if (stored.seq === mine.keyset.seq && stored.jws === mine.keysetJws) return "current";
  let loaded: ReturnType<typeof loadControlPlaneKeys>;
  try {
    loaded = loadControlPlaneKeys(mine.dir);
  } catch (err) {
    ctx.logger.error({ err, dir: mine.dir }, "the key directory cannot be loaded");
    return "stale";
  }
  if (loaded.keyset.seq > stored.seq || loaded.keysetJws === stored.jws) {
    ctx.setKeys(loaded);
    ctx.logger.info(
      { from: mine.keyset.seq, to: loaded.keyset.seq },
      "loaded the rotated key set from the key directory",
    );
    return "reloaded";
  }
  if (loaded.keyset.seq === stored.seq) {
    ctx.logger.error(
      {
        seq: stored.seq,
        database_sha256: sha256(stored.jws),
        directory_sha256: sha256(loaded.keysetJws),
        dir: mine.dir,
      },
      "the database and this instance's key directory hold different key sets under the same seq (a rotation made on two instances at once, or a changed database row): copy the key directory of the instance whose set the database holds here",
    );
    return "conflict";
  }
  ctx.logger.error(
    { database_seq: stored.seq, directory_seq: loaded.keyset.seq, dir: mine.dir },
    "the database holds a newer key set than this instance's key directory: copy the rotated key directory here",
  );
  return "stale";
}

export function keysGroup(ctx: ApiContext): ApiGroup {
  const current = defineRoute({
    method: "GET",
    path: "/v1/keys",
    auth: ["public"],
    async handler() {
      const body: KeysResponse = { keyset: ctx.keys().keysetJws };
      return { status: 200, body };
    },
  });

  const rotate = defineRoute({
    method: "POST",
    path: "/v1/admin/keys/rotate",
    auth: ["admin"],
    // `{}` and no body at all both mean the default (keep the previous keys, verify-only).
    body: { optional: true, validate: (v) => validate("keys-rotate-request", v ?? {}) },
    async handler(c) {
      const before = ctx.keys();
      const now = unixSeconds(ctx.clock);
      const keepPrevious = c.body.keep_previous ?? true;
      let next: ReturnType<typeof rotateKeys>;
      try {
        next = rotateKeys(before.dir, now, { keepPrevious });
      } catch (err) {
        // The directory's lock: another rotation (another process on the same directory).
        if (isAgentdError(err) && err.code === "AGENTD_E_FILE_EXISTS") {
          throw fail("AGENTD_E_CP_CONFLICT", "another key rotation is running", {}, err);
        }
        throw err;
      }
      ctx.setKeys(next);
      await ctx.store.storeKeySet(
        { seq: next.keyset.seq, jws: next.keysetJws, stored_at: now },
        {
          audit: {
            actor: actorOf(c.caller),
            type: "keys.rotated",
            object: "keyset",
            data: {
              seq: next.keyset.seq,
              previous_seq: before.keyset.seq,
              keep_previous: keepPrevious,
              keys: Object.fromEntries(KEY_USES.map((u) => [u, next.signing[u].kid])),
            },
          },
        },
      );
      // A compromise: machines drop the old keys as soon as they take this set, so their
      // publications are re-issued under the new key now, in the background.
      if (!keepPrevious) {
        void republishRetired(ctx).then(
          (r) => ctx.logger.info(r, "publications re-issued under the rotated key"),
          (err: unknown) => ctx.logger.error({ err }, "re-issuing under the rotated key failed"),
        );
      }
      const body: KeysResponse = { keyset: next.keysetJws };
      return { status: 200, body };
    },
  });

  return { routes: [current, rotate] };
}
