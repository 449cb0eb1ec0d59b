import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { Store } from "../../../control-plane/store/store.ts";
import { isAgentdError } from "../../../lib/errors.ts";
import { hex, OWNER, type StoreFixture, seed, T0, WORKER } from "./harness.ts";
import { hb } from "./suite-heartbeats.ts";

const N = 20;
const WRITER = fileURLToPath(new URL("./fixtures/audit-writer.ts", import.meta.url));

/** Two Stores on one database (two pools / two SQLite connections), used alternately. */
async function pair(f: StoreFixture): Promise<[Store, Store]> {
  return [f.store(), await f.open()];
}

function codeOf(r: PromiseSettledResult<unknown>): string {
  if (r.status === "fulfilled") return "ok";
  return isAgentdError(r.reason) ? r.reason.code : String(r.reason);
}

function runWriter(url: string, n: number, tag: string): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, url, String(n), tag], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0 ? resolve(code) : reject(new Error(`writer ${tag}: ${code} ${stderr}`)),
    );
  });
}

export function concurrencySuite(f: StoreFixture): void {
  describe("concurrency (two Stores on one database)", () => {
    it(`${N} concurrent consumers of one enrollment token: exactly one wins`, async () => {
      const [a, b] = await pair(f);
      await seed(a, []);
      await a.createEnrollmentToken({
        id: "t",
        owner_id: OWNER,
        secret_sha256: hex("s"),
        created_at: T0,
        expires_at: T0 + 60,
      });
      const results = await Promise.all(
        Array.from({ length: N }, (_, i) =>
          (i % 2 === 0 ? a : b).consumeEnrollmentToken("t", hex("s"), T0),
        ),
      );
      expect(results.filter((r) => r.ok)).toHaveLength(1);
      expect(results.filter((r) => !r.ok && r.reason === "used")).toHaveLength(N - 1);
    });

    it(`${N} concurrent enrollments with one token: exactly one worker registered`, async () => {
      const [a, b] = await pair(f);
      await seed(a, []);
      await a.createEnrollmentToken({
        id: "t",
        owner_id: OWNER,
        secret_sha256: hex("s"),
        created_at: T0,
        expires_at: T0 + 60,
      });
      const results = await Promise.all(
        Array.from({ length: N }, (_, i) =>
          (i % 2 === 0 ? a : b).enrollWorker({
            token_id: "t",
            secret_sha256: hex("s"),
            now: T0,
            worker: { worker_id: `w${i}`, jwk: {}, facts: {}, registered_at: T0 },
          }),
        ),
      );
      expect(results.filter((r) => r.ok)).toHaveLength(1);
      expect(await a.listWorkers()).toHaveLength(1);
    });

    it("concurrent heartbeats with the same counter: exactly one accepted", async () => {
      const [a, b] = await pair(f);
      await seed(a);
      const results = await Promise.all([
        ...Array.from({ length: N }, (_, i) => (i % 2 === 0 ? a : b).recordHeartbeat(hb(7))),
        ...Array.from({ length: 4 }, (_, i) =>
          (i % 2 === 0 ? a : b).recordHeartbeats([hb(7)]).then((r) => r[0]),
        ),
      ]);
      expect(results.filter((r) => r?.status === "accepted")).toHaveLength(1);
      expect(results.filter((r) => r?.status === "replay")).toHaveLength(N + 3);
      expect(await a.listHeartbeats(WORKER)).toHaveLength(1);
    });

    it("concurrent heartbeat batches over the same workers neither deadlock nor double-accept", async () => {
      const [a, b] = await pair(f);
      const ids = Array.from({ length: 30 }, (_, i) => `w${String(i).padStart(2, "0")}`);
      await seed(a, ids);
      const forward = ids.map((w) => hb(1, w));
      const backward = [...forward].reverse();
      const results = await Promise.all([
        a.recordHeartbeats(forward),
        b.recordHeartbeats(backward),
        a.recordHeartbeats(backward),
        b.recordHeartbeats(forward),
      ]);
      const accepted = results.flat().filter((r) => r.status === "accepted");
      expect(accepted).toHaveLength(ids.length);
    });

    it("concurrent version allocations are distinct and increase in commit order", async () => {
      const [a, b] = await pair(f);
      await seed(a);
      const versions = await Promise.all(
        Array.from({ length: N }, (_, i) =>
          (i % 2 === 0 ? a : b)
            .publish(
              {
                worker_id: WORKER,
                consent_identity: null,
                iat: T0,
                exp: T0 + 60,
                stop: false,
                now_ms: 1000,
              },
              (v) => `p${v}`,
            )
            .then((p) => p.publication.version),
        ),
      );
      expect(new Set(versions).size).toBe(N);
      expect([...versions].sort((x, y) => x - y)).toEqual(
        Array.from({ length: N }, (_, i) => 1000 + i),
      );
      expect((await a.latestPublication(WORKER))?.version).toBe(1000 + N - 1);
      const events = await a.streamEventsSince(WORKER, 0);
      // Event ids follow commit order, so their refs (versions) increase with them.
      expect(events.map((e) => Number(e.ref))).toEqual([...versions].sort((x, y) => x - y));
    });

    it("concurrent consents with one seq: exactly one accepted", async () => {
      const [a, b] = await pair(f);
      await seed(a);
      const settled = await Promise.allSettled(
        Array.from({ length: N }, (_, i) =>
          (i % 2 === 0 ? a : b).acceptConsent({
            identity: hex(String(i % 10)) + String(i),
            worker_id: WORKER,
            owner_id: OWNER,
            seq: 5,
            jws: "c",
            exp: T0,
            accepted_at: T0,
          }),
        ),
      );
      const codes = settled.map(codeOf);
      expect(codes.filter((c) => c === "ok")).toHaveLength(1);
      expect(codes.filter((c) => c === "AGENTD_E_CP_CONFLICT")).toHaveLength(N - 1);
    });

    it("concurrent uses of one jti, one command result and one approval: exactly one each", async () => {
      const [a, b] = await pair(f);
      await seed(a);
      await a.createCommand({
        cmd_id: "c",
        worker_id: WORKER,
        action: "mining.pause",
        args: {},
        jws: "j",
        iat: T0,
        exp: T0 + 60,
        seq: 1,
        consent_identity: null,
      });
      await a.createEmergencyStop({ id: "e", scope: { all: true }, requested_by: "op1", at: T0 });
      const pick = (i: number) => (i % 2 === 0 ? a : b);
      const jtis = await Promise.all(
        Array.from({ length: N }, (_, i) => pick(i).useJti("j", WORKER, T0 + 120, T0)),
      );
      expect(jtis.filter(Boolean)).toHaveLength(1);
      const resultCodes = (
        await Promise.allSettled(
          Array.from({ length: N }, (_, i) =>
            pick(i).recordCommandResult({
              cmd_id: "c",
              worker_id: WORKER,
              status: "done",
              jws: `r${i}`,
              at: T0,
            }),
          ),
        )
      ).map(codeOf);
      expect(resultCodes.filter((c) => c === "ok")).toHaveLength(1);
      expect(resultCodes.filter((c) => c === "AGENTD_E_CP_REPLAY")).toHaveLength(N - 1);
      const approvalCodes = (
        await Promise.allSettled(
          Array.from({ length: N }, (_, i) => pick(i).approveEmergencyStop("e", "op2", T0)),
        )
      ).map(codeOf);
      expect(approvalCodes.filter((c) => c === "ok")).toHaveLength(1);
      expect((await a.getEmergencyStop("e"))?.approvals).toHaveLength(1);
    });

    it(`${N} instances claiming one unfinished emergency stop at once: exactly one gets it`, async () => {
      const [a, b] = await pair(f);
      await a.createEmergencyStop({ id: "e", scope: { all: true }, requested_by: "op1", at: T0 });
      await a.markEmergencyStopExecuted("e", T0);
      const claims = await Promise.all(
        Array.from({ length: N }, (_, i) =>
          (i % 2 === 0 ? a : b).claimEmergencyStop("e", { by: `i${i}`, until: T0 + 300 }, T0 + 1),
        ),
      );
      const winners = claims.filter((c) => c !== null);
      expect(winners).toHaveLength(1);
      const by = winners[0]?.claim?.by as string;
      expect((await b.getEmergencyStop("e"))?.claim).toEqual({ by, until: T0 + 300 });
      // Completed once, even when the holder's completion is sent N times at once.
      const completions = (
        await Promise.allSettled(
          Array.from({ length: N }, (_, i) =>
            (i % 2 === 0 ? a : b).completeEmergencyStop("e", by, T0 + 2, {
              audit: {
                actor: "system",
                type: "emergency_stop.completed",
                object: "e",
                data: { i },
              },
            }),
          ),
        )
      ).map(codeOf);
      expect(completions.filter((c) => c === "ok")).toHaveLength(1);
      expect(completions.filter((c) => c === "AGENTD_E_CP_CONFLICT")).toHaveLength(N - 1);
      expect((await a.listAudit({ type: "emergency_stop.completed" })).length).toBe(1);
      expect((await a.getEmergencyStop("e"))?.completed_at).toBe(T0 + 2);
    });

    it("concurrent consents for one worker: each stored with its own publication or not at all", async () => {
      const [a, b] = await pair(f);
      await seed(a);
      const c = (seq: number, tag: string) => ({
        identity: hex(`${tag}${seq}`),
        worker_id: WORKER,
        owner_id: OWNER,
        seq,
        jws: `consent-${tag}${seq}`,
        exp: T0 + 86400,
        accepted_at: T0,
      });
      // Every caller planned from the same state (no publication yet), as racing requests do.
      const results = await Promise.allSettled(
        Array.from({ length: N }, (_, i) =>
          (i % 2 === 0 ? a : b).acceptConsentAndPublish(
            c(1 + (i % 4), String.fromCharCode(97 + i)),
            { iat: T0, exp: T0 + 3600, stop: false, now_ms: 1000, expect_version: null },
            (v) => `pub-${v}-${i}`,
          ),
        ),
      );
      const won = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
      expect(won).toHaveLength(1);
      expect(won[0]?.publication.consent_identity).toBe(won[0]?.consent.identity);
      expect(results.map(codeOf).filter((x) => x !== "ok" && x !== "AGENTD_E_CP_CONFLICT")).toEqual(
        [],
      );
      // Exactly the winner's consent is stored.
      expect(await a.latestConsent(WORKER)).toEqual(won[0]?.consent);
      expect((await a.latestPublication(WORKER))?.consent_identity).toBe(won[0]?.consent.identity);
    });

    it("concurrent audit appends from two Stores form one linear chain", async () => {
      const [a, b] = await pair(f);
      await seed(a);
      const appended = await Promise.all(
        Array.from({ length: 2 * N }, (_, i) =>
          i % 4 === 0
            ? (i % 8 === 0 ? a : b)
                .setQuarantine(WORKER, null, {
                  audit: { actor: "x", type: "q", object: `w${i}`, data: { i } },
                })
                .then(() => null)
            : (i % 2 === 0 ? a : b).appendAudit({
                actor: "x",
                type: "t",
                object: `o${i}`,
                data: { i },
              }),
        ),
      );
      expect(appended.filter((e) => e !== null).map((e) => e?.seq).length).toBe(2 * N - N / 2);
      const verify = await b.verifyAudit();
      expect(verify).toMatchObject({ ok: true, count: 2 * N });
      const seqs = (await a.listAudit({ limit: 1000 })).map((e) => e.seq);
      expect(seqs).toEqual(Array.from({ length: 2 * N }, (_, i) => i + 1));
    });

    it("audit appends from three processes form one linear chain", async () => {
      const url = f.url();
      await Promise.all([
        runWriter(url, 40, "p1"),
        runWriter(url, 40, "p2"),
        runWriter(url, 40, "p3"),
      ]);
      const s = f.store();
      expect(await s.verifyAudit()).toMatchObject({ ok: true, count: 120 });
      for (const tag of ["p1", "p2", "p3"]) {
        const mine = await s.listAudit({ actor: tag, limit: 1000 });
        expect(mine.map((e) => e.data.i)).toEqual(Array.from({ length: 40 }, (_, i) => i));
      }
    });
  });
}
