import { describe, expect, it } from "vitest";
import { auditGroup } from "../../../control-plane/api/audit.ts";
import type { ApiContext } from "../../../control-plane/api/context.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import { AUDIT_GENESIS, auditHash } from "../../../control-plane/store/audit-hash.ts";
import type { AuditEvent } from "../../../control-plane/store/store.ts";
import { type TestCp, useTestCp } from "./harness.ts";

const groups = (ctx: ApiContext) => [auditGroup(ctx)];

/** 25 events of two types from two actors (on top of whatever the fixtures wrote). */
async function fill(t: TestCp): Promise<void> {
  for (let i = 0; i < 25; i++) {
    await t.store.appendAudit({
      actor: i % 2 === 0 ? "system" : "apikey:AAAAAAAAAAAAAAAAAAAAAA",
      type: i % 3 === 0 ? "worker.quarantined" : "command.issued",
      object: `worker:w${i % 4}`,
      data: { i, nested: { list: [i, "x", null, true] } },
    });
  }
}

async function page(t: TestCp, apiKey: string, query: string) {
  const r = await t.call("GET", `/v1/audit/events${query}`, { apiKey });
  expect(r.status).toBe(200);
  return validate("audit-events-response", r.json);
}

/** Every page from the start with these filters, following next_cursor to its null. */
async function all(t: TestCp, apiKey: string, filters: string, limit: number) {
  const out: AuditEvent[] = [];
  let after: string | null = "0";
  let pages = 0;
  while (after !== null) {
    const p = await page(t, apiKey, `?after=${after}&limit=${limit}${filters}`);
    expect(p.events.length).toBeLessThanOrEqual(limit);
    out.push(...(p.events as AuditEvent[]));
    after = p.next_cursor;
    if (after !== null) expect(after).toBe(String(p.events.at(-1)?.seq));
    pages++;
  }
  return { events: out, pages };
}

describe.each(["sqlite", "postgres"] as const)("audit API (%s)", (backend) => {
  const start = useTestCp();

  it("pages through the whole chain, which verifies as downloaded", async () => {
    const t = await start({ groups, backend });
    await fill(t);
    const auditor = await t.apiKey("auditor");
    const stored = await t.store.listAudit({ limit: 1000 });
    expect(stored.length).toBeGreaterThanOrEqual(25);
    const { events, pages } = await all(t, auditor, "", 7);
    expect(events).toEqual(stored);
    expect(pages).toBe(Math.ceil(stored.length / 7));
    // each link verifies: its hash over what was served, and the previous link's hash
    let prev = AUDIT_GENESIS;
    for (const e of events) {
      const { hash, ...rest } = e;
      expect(rest.prev_hash).toBe(prev);
      expect(auditHash(rest)).toBe(hash);
      prev = hash;
    }
    expect(await t.store.verifyAudit()).toEqual({
      ok: true,
      count: stored.length,
      head: { seq: stored.at(-1)?.seq, hash: prev },
    });
    // a page that ends exactly at the end of the log has no next cursor
    const exact = await page(t, t.adminKey, `?limit=${stored.length}`);
    expect(exact.events.length).toBe(stored.length);
    expect(exact.next_cursor).toBeNull();
    // the default page is 100
    expect((await page(t, auditor, "")).events).toEqual(stored.slice(0, 100));
  });

  it("filters by type, actor and object, combined", async () => {
    const t = await start({ groups, backend });
    await fill(t);
    const auditor = await t.apiKey("auditor");
    const stored = await t.store.listAudit({ limit: 1000 });
    const byType = await all(t, auditor, "&type=worker.quarantined", 3);
    expect(byType.events).toEqual(stored.filter((e) => e.type === "worker.quarantined"));
    expect(byType.events.length).toBe(9);
    const combined = await all(t, auditor, "&actor=system&object=worker%3Aw0", 2);
    expect(combined.events).toEqual(
      stored.filter((e) => e.actor === "system" && e.object === "worker:w0"),
    );
    expect(combined.events.length).toBeGreaterThan(0);
    const none = await page(t, auditor, "?type=no.such_type");
    expect(none).toEqual({ events: [], next_cursor: null });
  });

  it("refuses bad queries and other roles", async () => {
    const t = await start({ groups, backend });
    const auditor = await t.apiKey("auditor");
    for (const q of [
      "?limit=0",
      "?limit=1001",
      "?after=-1",
      "?after=x",
      "?type=Bad Type",
      "?foo=1",
    ]) {
      const r = await t.call("GET", `/v1/audit/events${q}`, { apiKey: auditor });
      expect(r.status).toBe(400);
      expect(r.json.error.code).toBe("AGENTD_E_SCHEMA");
    }
    for (const role of ["operator", "owner"] as const) {
      const apiKey = role === "owner" ? (await t.owner()).apiKey : await t.apiKey(role);
      expect((await t.call("GET", "/v1/audit/events", { apiKey })).status).toBe(403);
    }
    expect((await t.call("GET", "/v1/audit/events?limit=0")).status).toBe(401);
  });
});
