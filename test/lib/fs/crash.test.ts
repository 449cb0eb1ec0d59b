import { spawn } from "node:child_process";
import { createHash, randomInt } from "node:crypto";
import { existsSync, readdirSync, readFileSync, truncateSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { listSegments, verifyChainLog } from "../../../lib/fs/chain-log.ts";
import { readJsonlLines } from "../../../lib/fs/jsonl.ts";
import { readStateFile } from "../../../lib/fs/state-file.ts";
import { useTmpDir } from "../../support/tmp.ts";

/**
 * Kills a writer with SIGKILL at random moments, hundreds of times, and checks after each
 * kill what a restarted agent would find: the state file whole and either the old or the new
 * version, the hash chain intact, and every record the writer had reported fsynced present
 * with the content reported. The writer resumes from what the previous run left, so repairs
 * (torn tails, a rotation cut half-way) are exercised by the next run.
 *
 * A process kill does not lose what is in the page cache, so this proves the ordering and
 * atomicity of the write paths, not their behaviour under power loss (that needs fsync to be
 * honest, which only a VM or dm-flakey test could show).
 */
const KILLS = 200;
const ROTATE_BYTES = 8192; // small, so rotations (and kills during them) happen often
const fixture = join(import.meta.dirname, "../../fixtures/crash-writer.ts");
const tmp = useTmpDir("agentd-crash-");

interface Run {
  readonly lines: string[];
  readonly signal: NodeJS.Signals | null;
}

/** Spawns the writer, lets it work `workMs` after it reported ready, SIGKILLs it. */
function runOnce(dir: string, workMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fixture, dir, String(ROTATE_BYTES)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    let armed = false;
    const guard = setTimeout(() => child.kill("SIGKILL"), 10_000); // never hang the suite
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      out += chunk;
      if (!armed && /^R .*\n/m.test(out)) {
        armed = true;
        setTimeout(() => child.kill("SIGKILL"), workMs);
      }
    });
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk: string) => {
      err += chunk;
    });
    child.on("error", reject);
    child.on("close", (_code, signal) => {
      clearTimeout(guard);
      if (!armed) {
        reject(new Error(`writer ended before it was ready (${signal}): ${err}`));
        return;
      }
      // The kill can cut the last line: only newline-terminated lines count.
      resolve({ lines: out.split("\n").slice(0, -1), signal });
    });
  });
}

/** Every record of the log (segments, then the active file), by seq. */
function recordsBySeq(logPath: string): Map<number, Record<string, unknown>> {
  const bySeq = new Map<number, Record<string, unknown>>();
  for (const file of [...listSegments(logPath).map((s) => s.path), logPath]) {
    for (const v of readJsonlLines(file)?.values ?? []) {
      const r = v as Record<string, unknown>;
      bySeq.set(r.seq as number, r);
    }
  }
  return bySeq;
}

it(`survives ${KILLS} SIGKILLs at random moments`, { timeout: 180_000 }, async () => {
  const dir = tmp();
  const statePath = join(dir, "state.json");
  const logPath = join(dir, "audit.jsonl");
  const fsynced = new Map<number, number>(); // seq -> n, as reported by `L`
  let version = 0; // the state version found after the last kill
  let headSeq = 0; // the log head found after the last kill
  let head: { seq: number; hash: string } | null = null;
  const seen = {
    old: 0,
    new: 0,
    idle: 0,
    tempLeft: 0,
    tornRepaired: 0,
    tornAtKill: 0,
    noActive: 0,
    rotations: 0,
  };
  let kills = 0;
  const t0 = performance.now();

  for (let round = 0; round < KILLS; round++) {
    const run = await runOnce(dir, randomInt(5, 80));
    expect(run.signal).toBe("SIGKILL");
    kills++;

    // Replay what the writer said it did.
    let started = 0;
    let finished = 0;
    let seq = headSeq;
    for (const line of run.lines) {
      const [tag, a, b, c] = line.split(" ");
      if (tag === "R") {
        // It resumed exactly where the previous kill left the files.
        expect([Number(a), Number(b)]).toEqual([version, headSeq]);
        if (Number(c) > 0) seen.tornRepaired++;
      } else if (tag === "S") {
        expect(Number(a)).toBe((finished || version) + 1);
        started = Number(a);
      } else if (tag === "s") {
        expect(Number(a)).toBe(started);
        finished = started;
      } else if (tag === "L") {
        expect([Number(a), Number(b)]).toEqual([seq + 1, finished]);
        seq = Number(a);
        fsynced.set(seq, finished);
      } else {
        throw new Error(`unexpected line from the writer: ${JSON.stringify(line)}`);
      }
    }

    // The state file: whole (its sha matches its filler), and the old or the new version.
    const state = readStateFile(statePath, { format: 1 });
    const data = state?.data as { n: number; sha: string; filler: string } | undefined;
    if (data !== undefined) {
      expect(createHash("sha256").update(data.filler).digest("hex")).toBe(data.sha);
    }
    const found = data?.n ?? 0;
    const inFlight = started > finished;
    if (inFlight) {
      expect([started - 1, started]).toContain(found);
      if (found === started) seen.new++;
      else seen.old++;
    } else {
      expect(found).toBe(finished || version);
      seen.idle++;
    }
    // A temp file only exists if the kill landed inside writeFileAtomic. Removing it is the
    // test's job: writeFileAtomic cannot clean up after SIGKILL.
    const temps = readdirSync(dir).filter((f) => f.endsWith(".tmp"));
    if (temps.length > 0) {
      expect(inFlight).toBe(true);
      seen.tempLeft++;
      for (const t of temps) unlinkSync(join(dir, t));
    }
    version = found;

    if (!existsSync(logPath)) seen.noActive++; // killed between rotation's rename and create

    // The chain: intact, and holding every record reported fsynced, as reported. A kill that
    // lands inside write(2) may cut the record being written (the kernel stops a write at a
    // page boundary once SIGKILL is pending): a torn tail, which is legitimate and which the
    // next open cuts off. The test cuts it off here as that open would, and counts it.
    let verified = verifyChainLog(logPath);
    if (!verified.ok && verified.error.code === "AGENTD_E_LOG_TORN_TAIL") {
      const text = readFileSync(logPath);
      const end = text.lastIndexOf(0x0a) + 1;
      truncateSync(logPath, end);
      seen.tornAtKill++;
      verified = verifyChainLog(logPath);
    }
    if (!verified.ok) expect.fail(JSON.stringify(verified.error));
    headSeq = verified.head?.seq ?? 0;
    expect(headSeq).toBeGreaterThanOrEqual(seq);
    const records = recordsBySeq(logPath);
    // Cumulative: a later run must not lose or rewrite what an earlier one made durable.
    for (const [s, n] of fsynced) expect(records.get(s)?.n, `record ${s}`).toBe(n);
    if (head !== null) expect(records.get(head.seq)?.hash).toBe(head.hash);
    head = verified.head;
  }

  const seconds = (performance.now() - t0) / 1000;
  seen.rotations = listSegments(logPath).length;
  console.info(
    `crash test: ${kills} kills in ${seconds.toFixed(1)} s, ${headSeq} records, ${JSON.stringify(seen)}`,
  );
  expect(kills).toBeGreaterThanOrEqual(KILLS);
  expect(seen.old).toBeGreaterThan(0);
  expect(seen.new).toBeGreaterThan(0);
  expect(seen.tempLeft).toBeGreaterThan(0); // some kills landed inside the write itself
});
