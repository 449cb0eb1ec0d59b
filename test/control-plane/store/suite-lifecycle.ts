import { describe, expect, it } from "vitest";
import { openStore } from "../../../control-plane/store/open.ts";
import { SCHEMA_VERSION } from "../../../control-plane/store/sql/migrations.ts";
import type { Store } from "../../../control-plane/store/store.ts";
import { isAgentdError } from "../../../lib/errors.ts";
import {
  consentIn,
  expectCode,
  hex,
  OWNER,
  type StoreFixture,
  seed,
  T0,
  WORKER,
} from "./harness.ts";
import { hb } from "./suite-heartbeats.ts";
import { rotation } from "./suite-rotations.ts";

/** Something in every table. */
async function populate(s: Store): Promise<void> {
  await seed(s);
  await s.createApiKey({
    id: "k",
    role: "operator",
    owner_id: null,
    key_sha256: hex("k"),
    created_at: T0,
    created_by: null,
  });
  await s.createEnrollmentToken({
    id: "t",
    owner_id: OWNER,
    secret_sha256: hex("s"),
    created_at: T0,
    expires_at: T0 + 60,
  });
  await s.setQuarantine(WORKER, { reason: "r", at: T0 });
  await s.recordAttestation({
    worker_id: WORKER,
    machine_id_sha256: hex("m"),
    binary_sha256: hex("b"),
    binary_allowed: true,
    at: T0,
  });
  await s.createAttestationChallenge({ nonce: "n", worker_id: WORKER, expires_at: T0 + 60 });
  await s.createAccessToken({ token_sha256: hex("a"), worker_id: WORKER, expires_at: T0 + 60 });
  await s.useJti("j", WORKER, T0 + 120, T0);
  await s.acceptConsent({
    identity: hex("c"),
    worker_id: WORKER,
    owner_id: OWNER,
    seq: 1,
    jws: "c",
    exp: T0 + 9,
    accepted_at: T0,
  });
  await s.publish(
    {
      worker_id: WORKER,
      consent_identity: hex("c"),
      iat: T0,
      exp: T0 + 9,
      stop: false,
      now_ms: 1000,
    },
    (v) => `p${v}`,
  );
  await s.storeRevocation({
    worker_id: WORKER,
    kind: "revocation",
    through_seq: 1,
    jws: "r",
    at: T0,
  });
  await s.storeOwnerRotation(rotation(OWNER, "b", T0));
  await s.recordHeartbeats([hb(1), hb(2)]);
  await s.issueCommand(
    {
      cmd_id: "c",
      worker_id: WORKER,
      action: "mining.pause",
      args: {},
      iat: T0,
      exp: T0 + 60,
      now_ms: 1,
      consent_identity: hex("c"),
    },
    (q) => `c${q}`,
  );
  await s.createEmergencyStop({ id: "e", scope: { all: true }, requested_by: "k", at: T0 });
  await s.approveEmergencyStop("e", "k", T0);
  await s.storeKeySet({ seq: 1, jws: "ks", stored_at: T0 });
  await s.appendAudit({ actor: "a", type: "t", object: "o", data: { x: 1 } });
}

async function snapshot(s: Store) {
  return {
    key: await s.findApiKeyBySha256(hex("k")),
    owner: await s.getOwner(OWNER),
    worker: await s.getWorker(WORKER),
    token: await s.findAccessToken(hex("a"), T0),
    consent: await s.latestConsent(WORKER),
    publication: await s.latestPublication(WORKER),
    revocations: await s.listRevocations(WORKER),
    rotations: await s.listOwnerRotations(WORKER),
    heartbeats: await s.listHeartbeats(WORKER),
    command: await s.getCommand("c"),
    events: await s.streamEventsSince(WORKER, 0),
    stop: await s.getEmergencyStop("e"),
    keySet: await s.currentKeySet(),
    audit: await s.listAudit(),
    verify: await s.verifyAudit(),
  };
}

/** What undoes migration 4 (the counters' consents; commands' consents). */
const MIGRATION_4_UNDONE = [
  "ALTER TABLE workers DROP COLUMN version_consent",
  "ALTER TABLE workers DROP COLUMN command_seq_consent",
  "ALTER TABLE commands DROP COLUMN consent_identity",
];

export function lifecycleSuite(f: StoreFixture): void {
  describe("lifecycle", () => {
    it("migrate is idempotent and reports the versions", async () => {
      const s = f.store();
      expect(await s.migrate()).toEqual({ from: SCHEMA_VERSION, to: SCHEMA_VERSION });
      const fresh = await f.backend.freshUrl();
      const other = openStore(fresh);
      try {
        expect(await other.migrate()).toEqual({ from: 0, to: SCHEMA_VERSION });
      } finally {
        await other.close();
      }
    });

    it("migration 2 takes the stops the audit log shows completed as completed", async () => {
      const s = f.store();
      for (const id of ["done", "cut"]) {
        await s.createEmergencyStop({ id, scope: { all: true }, requested_by: "op1", at: T0 });
        await s.markEmergencyStopExecuted(id, T0 + 1);
      }
      await s.appendAudit({
        actor: "apikey:op2",
        type: "emergency_stop.completed",
        object: "emergency_stop:done",
        data: { workers_stopped: 3, workers_not_stopped: 0 },
      });
      await f.close(s);
      // The database as migration 1 left it.
      await f.backend.raw(
        f.url(),
        [
          "ALTER TABLE emergency_stops DROP COLUMN completed_at",
          "ALTER TABLE emergency_stops DROP COLUMN claimed_by",
          "ALTER TABLE emergency_stops DROP COLUMN claimed_until",
          "ALTER TABLE api_keys DROP COLUMN revoked_at",
          "ALTER TABLE api_keys DROP COLUMN revoked_by",
          ...MIGRATION_4_UNDONE,
          "DROP TABLE owner_rotations",
          "DELETE FROM schema_version WHERE version >= 2",
        ].join(";\n"),
      );
      const upgraded = openStore(f.url());
      try {
        expect(await upgraded.migrate()).toEqual({ from: 1, to: SCHEMA_VERSION });
        expect((await upgraded.getEmergencyStop("done"))?.completed_at).toBe(T0 + 1);
        // Not taken for one cut off: an upgrade does not run finished stops again.
        expect((await upgraded.listUnfinishedEmergencyStops()).map((e) => e.id)).toEqual(["cut"]);
      } finally {
        await upgraded.close();
      }
    });

    it("migration 3 keeps the stream's events and lets it carry owner_rotation events", async () => {
      const s = f.store();
      await seed(s);
      const kept = await s.storeRevocation({
        worker_id: WORKER,
        kind: "revocation",
        through_seq: 1,
        jws: "r",
        at: T0,
      });
      await f.close(s);
      // The database as migration 2 left it: no rotations, the stream's first kinds only.
      const v2Kinds = "'command', 'publication', 'revocation', 'decommission'";
      await f.backend.raw(
        f.url(),
        [
          ...MIGRATION_4_UNDONE,
          "DROP TABLE owner_rotations",
          ...(f.backend.name === "postgres"
            ? [
                "ALTER TABLE stream_events DROP CONSTRAINT stream_events_kind_check",
                `ALTER TABLE stream_events ADD CONSTRAINT stream_events_kind_check CHECK (kind IN (${v2Kinds}))`,
              ]
            : [
                `CREATE TABLE v2 (worker_id TEXT NOT NULL REFERENCES workers (worker_id),
                 id BIGINT NOT NULL, kind TEXT NOT NULL CHECK (kind IN (${v2Kinds})),
                 ref TEXT NOT NULL, at BIGINT NOT NULL, PRIMARY KEY (worker_id, id))`,
                "INSERT INTO v2 SELECT worker_id, id, kind, ref, at FROM stream_events",
                "DROP TABLE stream_events",
                "ALTER TABLE v2 RENAME TO stream_events",
              ]),
          "DELETE FROM schema_version WHERE version >= 3",
        ].join(";\n"),
      );
      // (what the narrowed CHECK refuses before the migration)
      await expect(
        f.backend.raw(
          f.url(),
          `INSERT INTO stream_events (worker_id, id, kind, ref, at) VALUES ('${WORKER}', 99, 'owner_rotation', '1', 0)`,
        ),
      ).rejects.toThrow();
      const upgraded = openStore(f.url());
      try {
        expect(await upgraded.migrate()).toEqual({ from: 2, to: SCHEMA_VERSION });
        expect(await upgraded.streamEventsSince(WORKER, 0)).toEqual([kept.event]);
        const r = await upgraded.storeOwnerRotation(rotation(OWNER, "b", T0));
        expect(r.event).toMatchObject({ id: kept.event.id + 1, kind: "owner_rotation" });
      } finally {
        await upgraded.close();
      }
    });

    it("migration 4 binds a worker's counters to its consent in force at the upgrade", async () => {
      const s = f.store();
      await seed(s, [WORKER, "w2"]);
      const consent = (id: string, seq: number, worker = WORKER) => ({
        identity: hex(id),
        worker_id: worker,
        owner_id: OWNER,
        seq,
        jws: `consent-${id}`,
        exp: T0 + 86_400,
        accepted_at: T0,
      });
      await s.acceptConsent(consent("1", 1));
      await s.acceptConsent(consent("2", 2));
      await f.close(s);
      // The database as migration 3 left it, its counters high (issued under consent 2).
      await f.backend.raw(
        f.url(),
        [
          ...MIGRATION_4_UNDONE,
          "UPDATE workers SET last_version = 90000, last_command_seq = 80000",
          "DELETE FROM schema_version WHERE version >= 4",
        ].join(";\n"),
      );
      const upgraded = openStore(f.url());
      try {
        expect(await upgraded.migrate()).toEqual({ from: 3, to: SCHEMA_VERSION });
        // The counters count for consent 2, the one in force: they go on from where they were.
        expect(await upgraded.allocateVersion(WORKER, hex("2"), 10)).toBe(90001);
        expect(await upgraded.nextCommandSeq(WORKER, hex("2"), 10)).toBe(80001);
        // A worker with no consent: its counters count for none, and a first consent starts them.
        expect(await upgraded.allocateVersion("w2", hex("3"), 10)).toBe(10);
        // The next consent starts afresh.
        await upgraded.acceptConsent(consent("3", 3));
        expect(await upgraded.allocateVersion(WORKER, hex("3"), 10)).toBe(10);
      } finally {
        await upgraded.close();
      }
    });

    it("two Stores migrating a new database at once apply each migration once", async () => {
      const fresh = await f.backend.freshUrl();
      const a = openStore(fresh);
      const b = openStore(fresh);
      try {
        const results = await Promise.all([a.migrate(), b.migrate()]);
        expect(results.map((r) => r.from).sort()).toEqual([0, SCHEMA_VERSION]);
        await a.createOwner({ id: "o", jwk: {}, created_at: T0 });
        expect(await b.getOwner("o")).not.toBeNull();
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });

    it("refuses a database migrated by a newer version", async () => {
      await f.backend.raw(
        f.url(),
        "INSERT INTO schema_version (version, applied_at) VALUES (99, 0)",
      );
      const s = openStore(f.url());
      try {
        await expectCode(s.migrate(), "AGENTD_E_STORE_SCHEMA_NEWER");
      } finally {
        await s.close();
      }
    });

    it("close and reopen loses nothing", async () => {
      const s = f.store();
      await populate(s);
      const before = await snapshot(s);
      expect(before.verify.ok).toBe(true);
      expect(before.events).toHaveLength(4);
      expect(before.rotations).toHaveLength(1);
      await f.close(s);
      const reopened = await f.open();
      expect(await snapshot(reopened)).toEqual(before);
      // The single-use and replay state survived too.
      expect(await reopened.useJti("j", WORKER, T0 + 120, T0)).toBe(false);
      expect(await reopened.consumeEnrollmentToken("t", hex("s"), T0)).toEqual({
        ok: true,
        owner_id: OWNER,
      });
    });

    it("after restoring an older backup, versions and command seqs still go up (time-based)", async () => {
      let s = f.store();
      await seed(s);
      const consent = await consentIn(s);
      const pub = (now_ms: number) => ({
        worker_id: WORKER,
        consent_identity: null,
        iat: T0,
        exp: T0 + 9,
        stop: false,
        now_ms,
      });
      const cmd = (cmd_id: string, now_ms: number) => ({
        cmd_id,
        worker_id: WORKER,
        action: "mining.pause",
        args: {},
        iat: T0,
        exp: T0 + 60,
        now_ms,
        consent_identity: consent,
      });
      const issued: number[] = [];
      const seqs: number[] = [];
      issued.push((await s.publish(pub(1_000_000), String)).publication.version);
      seqs.push((await s.issueCommand(cmd("c1", 1_000_000), String)).command.seq);
      await f.close(s);
      const backup = await f.backend.copy(f.url());
      // Life goes on after the backup…
      s = await f.open();
      for (const now of [2_000_000, 2_000_000, 3_000_000]) {
        issued.push((await s.publish(pub(now), String)).publication.version);
      }
      seqs.push((await s.issueCommand(cmd("c2", 3_000_000), String)).command.seq);
      // …then the database is lost and the backup restored, later.
      const restored = await f.open(backup);
      const after = (await restored.publish(pub(3_000_001), String)).publication.version;
      const seqAfter = (await restored.issueCommand(cmd("c3", 3_000_001), String)).command.seq;
      expect(Math.max(...issued)).toBe(3_000_000);
      expect(after).toBeGreaterThan(Math.max(...issued));
      expect(seqAfter).toBeGreaterThan(Math.max(...seqs));
    });

    it("ping answers; a closed store refuses; a bad URL is a usage error", async () => {
      const s = await f.open();
      await s.ping();
      await f.close(s);
      await expectCode(s.getOwner("x"), "AGENTD_E_STORE");
      await expectCode(s.createOwner({ id: "x", jwk: {}, created_at: 0 }), "AGENTD_E_STORE");
      await expectCode(s.recordHeartbeat(hb(1)), "AGENTD_E_STORE");
      expect(() => openStore("mysql://x")).toThrow(/sqlite: or postgres/);
      expect(() => openStore("sqlite:")).toThrow(/without a path/);
    });

    it("driver failures become AGENTD_E_STORE without the values involved", async () => {
      const s = f.store();
      await seed(s);
      await f.backend.raw(f.url(), "DROP TABLE heartbeats");
      const e = await s
        .recordHeartbeats([{ ...hb(1), jws: "secret-jws-value" }])
        .catch((x: unknown) => x);
      expect(isAgentdError(e) && e.code).toBe("AGENTD_E_STORE");
      expect(String((e as Error).message)).not.toContain("secret");
      expect(JSON.stringify(e)).not.toContain("secret");
      // The failed transaction left the worker untouched.
      expect((await s.getWorker(WORKER))?.last_counter).toBe(0);
    });
  });
}
