import { fail } from "../../lib/errors.ts";
import { defineRoute, type Route } from "../http/route.ts";
import type { AuditEventsResponse } from "../protocol/schemas/api-audit.ts";
import { validate } from "../protocol/validate.ts";
import type { AuditQuery } from "../store/store.ts";
import type { ApiContext, ApiGroup } from "./context.ts";

/**
 * `GET /v1/audit/events` (docs/protocol.md section 5): the hash-chained audit log, page by
 * page, each event exactly as it was hashed so that the reader can verify the chain itself
 * (`agentd cp audit verify`). With filters the chain is of course not contiguous; the hashes
 * of the events returned still verify one by one.
 */

const DEFAULT_LIMIT = 100;

export function auditGroup(ctx: ApiContext): ApiGroup {
  return { routes: [listEvents(ctx)] };
}

function listEvents(ctx: ApiContext): Route {
  return defineRoute({
    method: "GET",
    path: "/v1/audit/events",
    auth: ["admin", "auditor"],
    query: ["after", "limit", "type", "actor", "object"],
    async handler({ query }) {
      const q = validate("audit-events-query", { ...query });
      const after = Number(q.after ?? "0");
      if (!Number.isSafeInteger(after)) {
        throw fail("AGENTD_E_SCHEMA", "after is too large", {
          schema: "audit-events-query",
          pointer: "/after",
        });
      }
      const filters: AuditQuery = {
        ...(q.type === undefined ? {} : { type: q.type }),
        ...(q.actor === undefined ? {} : { actor: q.actor }),
        ...(q.object === undefined ? {} : { object: q.object }),
      };
      const limit = q.limit === undefined ? DEFAULT_LIMIT : Number(q.limit);
      const events = await ctx.store.listAudit({ ...filters, after_seq: after, limit });
      const last = events[events.length - 1];
      // A full page has a next cursor only if something follows it: null means the end.
      let next: string | null = null;
      if (last !== undefined && events.length === limit) {
        const more = await ctx.store.listAudit({ ...filters, after_seq: last.seq, limit: 1 });
        if (more.length > 0) next = String(last.seq);
      }
      const reply: AuditEventsResponse = { events, next_cursor: next };
      return { status: 200, body: reply };
    },
  });
}
