import { describe, expect, it } from "vitest";
import { policiesGroup } from "../../../control-plane/api/policies.ts";
import { revocationsGroup } from "../../../control-plane/api/revocations.ts";
import { etagOf } from "../../../control-plane/http/conditional.ts";
import { validate } from "../../../control-plane/protocol/validate.ts";
import { encodeBase64url } from "../../../lib/crypto/base64url.ts";
import { generateEd25519KeyPair, jwkThumbprint, publicKeyOf } from "../../../lib/crypto/ed25519.ts";
import { decodeJwsUnverified, documentIdentity, signJws } from "../../../lib/crypto/jws.ts";
import { DOC_TYP } from "../../../policy-guard/documents.ts";
import { signConsent, signDecommission, signRevocation } from "../../../policy-guard/sign.ts";
import { EMPTY_COUNTERS, verifyDocuments } from "../../../policy-guard/verify.ts";
import { until } from "../http/helpers.ts";
import { type TestCp, type TestOwner, useTestCp } from "./harness.ts";

const RULES = {
  upstreams: [{ url: "stratum+tcp://pool.example:3333", user: "owner1.rig" }],
  max_publication_ttl_s: 86_400,
};

const nowS = (t: TestCp) => Math.floor(t.clock.now() / 1000);

function consent(
  t: TestCp,
  o: TestOwner,
  worker: string,
  seq: number,
  over: { rules?: unknown; iat?: number; exp?: number } = {},
): string {
  const iat = over.iat ?? nowS(t);
  return signConsent({
    ownerKey: o.privateKey,
    worker,
    rules: over.rules ?? RULES,
    seq,
    policyId: "farm-a",
    iat,
    exp: over.exp ?? iat + 30 * 86_400,
  });
}

/** The same JWS with one payload member changed and the old signature kept. */
function tampered(jws: string, change: Record<string, unknown>): string {
  const [h, , s] = jws.split(".");
  const payload = { ...(decodeJwsUnverified(jws).payload as object), ...change };
  return `${h}.${encodeBase64url(Buffer.from(JSON.stringify(payload)))}.${s}`;
}

const groups = (ctx: Parameters<typeof policiesGroup>[0]) => [
  policiesGroup(ctx),
  revocationsGroup(ctx),
];

describe.each(["sqlite", "postgres"] as const)("policies (%s)", (backend) => {
  const start = useTestCp();
  const cp = () => start({ groups, backend });

  it("accepts an owner's consent, publishes it with a version and serves the bundle", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    const c = consent(t, o, m.workerId, 1);
    const r = await t.call("POST", "/v1/policies", { apiKey: o.apiKey, body: { consent: c } });
    expect(r.status).toBe(200);
    const body = validate("policy-create-response", r.json);
    expect(body.worker).toBe(m.workerId);
    expect(body.seq).toBe(1);
    expect(body.consent_sha256).toBe(documentIdentity(c));
    expect(body.version).toBeGreaterThanOrEqual(t.clock.now());
    // What an agent would do with the bundle: nothing to refuse.
    const cpPub = publicKeyOf(t.ctx.keys().signing.publication.privateKey);
    const docs = verifyDocuments({
      bundle: { consent: c, publication: body.publication },
      trust: { owner: o.publicKey, publication: [cpPub] },
      worker: m.workerId,
      counters: EMPTY_COUNTERS,
    });
    expect([...docs.consentReasons, ...docs.publicationReasons]).toEqual([]);
    expect(docs.publication?.payload).toMatchObject({ version: body.version, stop: false });

    const stored = await t.store.latestConsent(m.workerId);
    expect(stored?.identity).toBe(body.consent_sha256);
    const types = (await t.store.listAudit({ object: `worker:${m.workerId}` })).map((e) => e.type);
    expect(types).toEqual(["consent.accepted", "publication.issued"]);

    const g = await t.call("GET", `/v1/workers/${m.workerId}/policy`, { machine: m });
    expect(g.status).toBe(200);
    expect(validate("worker-policy-response", g.json)).toEqual({
      consent: c,
      publication: body.publication,
    });
    expect(g.headers.etag).toBe(etagOf({ consent: c, publication: body.publication }));
  });

  it("refuses consents of other owners and for other owners' workers (403), unknown workers (404)", async () => {
    const t = await cp();
    const a = await t.owner();
    const b = await t.owner();
    const mb = await t.machine(b);
    // a signs for b's worker
    const r1 = await t.call("POST", "/v1/policies", {
      apiKey: a.apiKey,
      body: { consent: consent(t, a, mb.workerId, 1) },
    });
    expect(r1.status).toBe(403);
    expect(r1.json.error.code).toBe("AGENTD_E_CP_FORBIDDEN");
    // a posts b's consent
    const r2 = await t.call("POST", "/v1/policies", {
      apiKey: a.apiKey,
      body: { consent: consent(t, b, mb.workerId, 1) },
    });
    expect(r2.status).toBe(403);
    const unknown = generateEd25519KeyPair();
    const r3 = await t.call("POST", "/v1/policies", {
      apiKey: a.apiKey,
      body: { consent: consent(t, a, jwkThumbprint(unknown.publicKey), 1) },
    });
    expect(r3.status).toBe(404);
    expect(r3.json.error.code).toBe("AGENTD_E_CP_NOT_FOUND");
    // a key that is not the owner's, claiming to be the owner: the signature cannot verify
    const ma = await t.machine(a);
    const forged = signJws({
      typ: DOC_TYP.consent,
      privateKey: unknown.privateKey,
      payload: decodeJwsUnverified(consent(t, a, ma.workerId, 1)).payload as Record<
        string,
        unknown
      >,
    });
    const r4 = await t.call("POST", "/v1/policies", {
      apiKey: a.apiKey,
      body: { consent: forged },
    });
    expect(r4.status).toBe(400);
    expect(r4.json.error.code).toBe("AGENTD_E_JWS_UNKNOWN_KEY");
    // nothing stored, every refusal audited
    expect(await t.store.latestConsent(mb.workerId)).toBeNull();
    expect(await t.store.latestConsent(ma.workerId)).toBeNull();
    const refused = await t.store.listAudit({ type: "consent.refused" });
    expect(refused.map((e) => e.data.code)).toEqual([
      "AGENTD_E_CP_FORBIDDEN",
      "AGENTD_E_CP_FORBIDDEN",
      "AGENTD_E_CP_NOT_FOUND",
      "AGENTD_E_JWS_UNKNOWN_KEY",
    ]);
    expect(refused[0]?.object).toBe(`worker:${mb.workerId}`);
  });

  it("refuses tampered, expired and malformed consents with their codes, storing nothing", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    const post = (body: unknown) => t.call("POST", "/v1/policies", { apiKey: o.apiKey, body });
    const good = consent(t, o, m.workerId, 1);
    const cases: [unknown, number, string][] = [
      [{ consent: tampered(good, { seq: 2 }) }, 400, "AGENTD_E_JWS_SIGNATURE"],
      [
        { consent: consent(t, o, m.workerId, 1, { iat: nowS(t) - 200, exp: nowS(t) - 100 }) },
        400,
        "AGENTD_E_JWS_EXPIRED",
      ],
      [
        { consent: consent(t, o, m.workerId, 1, { iat: nowS(t) + 3600 }) },
        400,
        "AGENTD_E_JWS_NOT_YET_VALID",
      ],
      [
        {
          consent: signJws({
            typ: DOC_TYP.consent,
            privateKey: o.privateKey,
            payload: {
              ...(decodeJwsUnverified(good).payload as object),
              rules: { bogus: 1 },
            },
          }),
        },
        400,
        "AGENTD_E_JWS_PAYLOAD",
      ],
      [
        {
          consent: signRevocation({
            ownerKey: o.privateKey,
            worker: m.workerId,
            throughSeq: 1,
            iat: nowS(t),
          }),
        },
        400,
        "AGENTD_E_JWS_TYP",
      ],
      [{ consent: good, extra: 1 }, 400, "AGENTD_E_SCHEMA"],
      [{ consent: "not-a-jws" }, 400, "AGENTD_E_SCHEMA"],
    ];
    for (const [body, status, code] of cases) {
      const r = await post(body);
      expect([r.status, r.json.error.code]).toEqual([status, code]);
    }
    // a worker that is no id at all: refused by the parser, audited against the owner
    const odd = await post({
      consent: signJws({
        typ: DOC_TYP.consent,
        privateKey: o.privateKey,
        payload: { ...(decodeJwsUnverified(good).payload as object), worker: "x".repeat(500) },
      }),
    });
    expect([odd.status, odd.json.error.code]).toEqual([400, "AGENTD_E_JWS_PAYLOAD"]);
    const audit = await t.store.listAudit({ type: "consent.refused" });
    expect(audit.at(-1)?.object).toBe(`owner:${o.ownerId}`);
    expect(audit.slice(0, 5).map((e) => e.object)).toEqual(Array(5).fill(`worker:${m.workerId}`));
    expect(await t.store.latestConsent(m.workerId)).toBeNull();
    expect(await t.store.latestPublication(m.workerId)).toBeNull();
    expect((await t.call("POST", "/v1/policies", { body: { consent: good } })).status).toBe(401);
    const admin = await t.call("POST", "/v1/policies", {
      apiKey: t.adminKey,
      body: { consent: good },
    });
    expect(admin.status).toBe(403);
  });

  it("takes bodies up to 128 KiB and refuses larger ones with 413", async () => {
    const t = await cp();
    const o = await t.owner();
    const mid = await t.call("POST", "/v1/policies", {
      apiKey: o.apiKey,
      body: { consent: "x".repeat(100 * 1024) },
    });
    // Past the default 64 KiB limit, under 128 KiB: it reaches the schema check.
    expect([mid.status, mid.json.error.code]).toEqual([400, "AGENTD_E_SCHEMA"]);
    const big = await t.call("POST", "/v1/policies", {
      apiKey: o.apiKey,
      body: { consent: "x".repeat(129 * 1024) },
    });
    expect([big.status, big.json.error.code]).toEqual([413, "AGENTD_E_CP_TOO_LARGE"]);
  });

  it("refuses a seq that is not higher (409) and a revoked one; versions increase", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    const post = (c: string) =>
      t.call("POST", "/v1/policies", { apiKey: o.apiKey, body: { consent: c } });
    const sent = consent(t, o, m.workerId, 3);
    const first = await post(sent);
    expect(first.status).toBe(200);
    for (const seq of [3, 2]) {
      const r = await post(consent(t, o, m.workerId, seq));
      expect([r.status, r.json.error.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);
    }
    // the very same document again
    const again = await post(sent);
    expect([again.status, again.json.error.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);
    // revoked through 5: seq 4 and 5 are dead, 6 lives
    t.clock.advance(1000);
    const rev = signRevocation({
      ownerKey: o.privateKey,
      worker: m.workerId,
      throughSeq: 5,
      iat: nowS(t),
    });
    const rr = await t.call("POST", `/v1/workers/${m.workerId}/revocations`, {
      apiKey: o.apiKey,
      body: { document: rev },
    });
    expect(rr.status).toBe(200);
    for (const seq of [4, 5]) {
      const r = await post(consent(t, o, m.workerId, seq));
      expect([r.status, r.json.error.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);
    }
    t.clock.advance(1000);
    const ok = await post(consent(t, o, m.workerId, 6));
    expect(ok.status).toBe(200);
    expect(ok.json.version).toBeGreaterThan(first.json.version);
    // the new consent lifts the revocation's stop
    const latest = await t.store.latestPublication(m.workerId);
    expect(latest?.stop).toBe(false);
    expect((await t.store.latestConsent(m.workerId))?.seq).toBe(6);
    const reasons = (await t.store.listAudit({ type: "consent.refused" })).map(
      (e) => e.data.reason,
    );
    expect(reasons.filter((r) => r === "revoked")).toHaveLength(2);
  });

  it("two consents racing for one worker: each stored with its own publication, or refused with nothing stored", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    const post = (c: string) =>
      t.call("POST", "/v1/policies", { apiKey: o.apiKey, body: { consent: c } });
    const first = await post(consent(t, o, m.workerId, 1));
    expect(first.status).toBe(200);
    const five = consent(t, o, m.workerId, 5);
    const six = consent(t, o, m.workerId, 6);
    // Hold the seq-5 request between its checks and its commit while seq 6 goes all the way.
    const store = t.store;
    const latestPublication = store.latestPublication.bind(store);
    let entered!: () => void;
    const inside = new Promise<void>((r) => {
      entered = r;
    });
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let held = false;
    store.latestPublication = async (id: string) => {
      if (!held && id === m.workerId) {
        held = true;
        entered();
        await gate;
      }
      return latestPublication(id);
    };
    let replyFive: Awaited<ReturnType<typeof post>>;
    try {
      const pending = post(five);
      await inside;
      const replySix = await post(six);
      expect(replySix.status).toBe(200);
      release();
      replyFive = await pending;
    } finally {
      store.latestPublication = latestPublication;
      release();
    }
    // Seq 5 lost: refused with its reason, not stored, nothing published for it.
    expect([replyFive.status, replyFive.json.error?.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);
    expect(await t.store.getConsent(documentIdentity(five))).toBeNull();
    // The latest publication countersigns the latest consent, seq 6.
    const latest = await t.store.latestPublication(m.workerId);
    expect(latest?.consent_identity).toBe(documentIdentity(six));
    expect((await t.store.latestConsent(m.workerId))?.seq).toBe(6);
    const refused = await t.store.listAudit({ type: "consent.refused" });
    expect(refused.map((e) => e.data.reason)).toEqual(["seq"]);

    // Racing freely, many times: every 200 answer's publication is of that answer's consent.
    for (let round = 0; round < 5; round++) {
      const base = 10 + round * 10;
      const docs = [consent(t, o, m.workerId, base), consent(t, o, m.workerId, base + 1)];
      const same = [
        consent(t, o, m.workerId, base + 5),
        consent(t, o, m.workerId, base + 5, { iat: nowS(t) - 1 }),
      ];
      const replies = await Promise.all([...docs, ...same].map(post));
      for (const [i, r] of replies.entries()) {
        const doc = [...docs, ...same][i] as string;
        if (r.status === 200) {
          const body = validate("policy-create-response", r.json);
          expect(body.consent_sha256).toBe(documentIdentity(doc));
          const pub = decodeJwsUnverified(body.publication).payload as { consent_sha256: string };
          expect(pub.consent_sha256).toBe(documentIdentity(doc));
        } else {
          expect([r.status, r.json.error.code]).toEqual([409, "AGENTD_E_CP_CONFLICT"]);
          expect(await t.store.getConsent(documentIdentity(doc))).toBeNull();
        }
      }
      // Of the two with one seq, at most one was stored.
      const stored = await Promise.all(same.map((d) => t.store.getConsent(documentIdentity(d))));
      expect(stored.filter((c) => c !== null).length).toBeLessThanOrEqual(1);
      const newest = await t.store.latestConsent(m.workerId);
      expect((await t.store.latestPublication(m.workerId))?.consent_identity).toBe(
        newest?.identity,
      );
    }
  });

  it("refuses consents for a decommissioned worker", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    const d = signDecommission({ ownerKey: o.privateKey, worker: m.workerId, iat: nowS(t) });
    const r = await t.call("POST", `/v1/workers/${m.workerId}/revocations`, {
      apiKey: o.apiKey,
      body: { document: d },
    });
    expect(r.status).toBe(200);
    const p = await t.call("POST", "/v1/policies", {
      apiKey: o.apiKey,
      body: { consent: consent(t, o, m.workerId, 1) },
    });
    expect([p.status, p.json.error.code]).toEqual([403, "AGENTD_E_CP_FORBIDDEN"]);
    expect(await t.store.latestConsent(m.workerId)).toBeNull();
  });

  it("serves the bundle to admins, the owner and the machine only; 404 before; 304 when unchanged", async () => {
    const t = await cp();
    const o = await t.owner();
    const other = await t.owner();
    const m = await t.machine(o);
    const m2 = await t.machine(o);
    const path = `/v1/workers/${m.workerId}/policy`;
    const none = await t.call("GET", path, { apiKey: o.apiKey });
    expect([none.status, none.json.error.code]).toEqual([404, "AGENTD_E_CP_NOT_FOUND"]);
    await t.call("POST", "/v1/policies", {
      apiKey: o.apiKey,
      body: { consent: consent(t, o, m.workerId, 1) },
    });
    const byAdmin = await t.call("GET", path, { apiKey: t.adminKey });
    expect(byAdmin.status).toBe(200);
    expect((await t.call("GET", path, { apiKey: o.apiKey })).json).toEqual(byAdmin.json);
    expect((await t.call("GET", path, { machine: m })).json).toEqual(byAdmin.json);
    expect((await t.call("GET", path, { apiKey: other.apiKey })).status).toBe(403);
    expect((await t.call("GET", path, { machine: m2 })).status).toBe(403);
    expect((await t.call("GET", path, { apiKey: await t.apiKey("operator") })).status).toBe(403);
    expect((await t.call("GET", path)).status).toBe(401);
    const unknown = `/v1/workers/${"A".repeat(43)}/policy`;
    expect((await t.call("GET", unknown, { apiKey: t.adminKey })).status).toBe(404);

    const etag = byAdmin.headers.etag as string;
    const same = await t.call("GET", path, { machine: m, headers: { "if-none-match": etag } });
    expect(same.status).toBe(304);
    expect(same.headers.etag).toBe(etag);
    expect(same.text).toBe("");
    const stale = await t.call("GET", path, { machine: m, headers: { "if-none-match": '"x"' } });
    expect(stale.status).toBe(200);

    // quarantined: the machine is refused, its owner still reads
    await t.store.setQuarantine(m.workerId, { reason: "test", at: nowS(t) });
    const q = await t.call("GET", path, { machine: m });
    expect([q.status, q.json.error.code]).toEqual([403, "AGENTD_E_CP_QUARANTINED"]);
    expect((await t.call("GET", path, { apiKey: o.apiKey })).status).toBe(200);
  });

  it("holds a long poll until a new publication, then answers with it", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    const path = `/v1/workers/${m.workerId}/policy`;
    await t.call("POST", "/v1/policies", {
      apiKey: o.apiKey,
      body: { consent: consent(t, o, m.workerId, 1) },
    });
    const first = await t.call("GET", path, { machine: m });
    const events: string[] = [];
    const poll = t
      .call("GET", path, {
        machine: m,
        headers: { "if-none-match": first.headers.etag as string, prefer: "wait=60" },
      })
      .then((r) => {
        events.push("answered");
        return r;
      });
    await until(() => t.ctx.policyNotifier.listenerCount(m.workerId) === 1, "long poll waiting");
    events.push("publishing");
    t.clock.advance(1000);
    const next = await t.call("POST", "/v1/policies", {
      apiKey: o.apiKey,
      body: { consent: consent(t, o, m.workerId, 2) },
    });
    const r = await poll;
    expect(events).toEqual(["publishing", "answered"]);
    expect(r.status).toBe(200);
    expect(r.headers["preference-applied"]).toBe("wait=60");
    expect(r.json.publication).toBe(next.json.publication);
    expect(t.ctx.policyNotifier.listenerCount()).toBe(0);
  });

  it("holds a long poll for the first publication; answers 304 when the wait runs out", async () => {
    const t = await cp();
    const o = await t.owner();
    const m = await t.machine(o);
    const path = `/v1/workers/${m.workerId}/policy`;
    let answered = false;
    const poll = t.call("GET", path, { machine: m, headers: { prefer: "wait=60" } }).then((r) => {
      answered = true;
      return r;
    });
    await until(() => t.ctx.policyNotifier.listenerCount(m.workerId) === 1, "long poll waiting");
    expect(answered).toBe(false);
    const posted = await t.call("POST", "/v1/policies", {
      apiKey: o.apiKey,
      body: { consent: consent(t, o, m.workerId, 1) },
    });
    const r = await poll;
    expect(r.status).toBe(200);
    expect(r.json.publication).toBe(posted.json.publication);
    // Nothing new within the wait: 304 with the current ETag.
    const timeout = await t.call("GET", path, {
      machine: m,
      headers: { "if-none-match": r.headers.etag as string, prefer: "wait=1" },
    });
    expect(timeout.status).toBe(304);
    expect(timeout.headers.etag).toBe(r.headers.etag);
  });
});
