import {
  appendFileSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { basename, join } from "node:path";
import { describe, expect, it } from "vitest";
import { isAgentdError } from "../../../lib/errors.ts";
import {
  ChainLog,
  type ChainVerifyError,
  GENESIS_PREV,
  listSegments,
  segmentPath,
  verifyChainLog,
} from "../../../lib/fs/chain-log.ts";
import { canonicalize, canonicalSha256Hex } from "../../../lib/json/canonical.ts";
import { useTmpDir } from "../../support/tmp.ts";

const tmp = useTmpDir("agentd-chain-");

/** A log of `count` records {n: 1..count} in a fresh directory. */
function makeLog(count: number, rotateBytes?: number): string {
  const p = join(tmp(), "audit.jsonl");
  const { log } = ChainLog.open(p, rotateBytes === undefined ? {} : { rotateBytes });
  for (let n = 1; n <= count; n++) log.append({ event: "test", n });
  log.close();
  return p;
}

const lines = (p: string): string[] => readFileSync(p, "utf8").split("\n").slice(0, -1);
const writeLines = (p: string, ls: string[]): void => writeFileSync(p, `${ls.join("\n")}\n`);
const rec = (line: string | undefined): Record<string, unknown> => JSON.parse(line ?? "null");

function failure(p: string, opts?: Parameters<typeof verifyChainLog>[1]): ChainVerifyError {
  const r = verifyChainLog(p, opts);
  if (r.ok) throw new Error("expected verification to fail");
  return r.error;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isAgentdError(err)) return err.code;
    throw err;
  }
  throw new Error("expected an AgentdError");
}

describe("ChainLog", () => {
  it("writes seq, prev and hash over the canonical record, and continues after reopen", () => {
    const p = join(tmp(), "audit.jsonl");
    const first = ChainLog.open(p);
    expect(first.log.head()).toBeNull();
    const h1 = first.log.append({ event: "a", z: 1, a: 2 });
    const h2 = first.log.append({ event: "b" });
    first.log.close();
    expect([h1.seq, h2.seq]).toEqual([1, 2]);

    const [l1, l2] = lines(p);
    const r1 = rec(l1);
    expect(r1).toMatchObject({ seq: 1, prev: GENESIS_PREV, hash: h1.hash });
    expect(l1).toBe(canonicalize(r1)); // the exact bytes are the canonical form
    const { hash, ...unhashed } = r1;
    expect(hash).toBe(canonicalSha256Hex(unhashed));
    expect(rec(l2)).toMatchObject({ seq: 2, prev: h1.hash, hash: h2.hash });

    const again = ChainLog.open(p);
    expect(again.recovery).toEqual({ recovered: false, tornBytes: 0 });
    expect(again.log.head()).toEqual(h2);
    const [h3, h4] = again.log.appendBatch([{ event: "c" }, { event: "d" }]);
    again.log.close();
    expect(rec(lines(p)[2])).toMatchObject({ seq: 3, prev: h2.hash });
    expect(verifyChainLog(p)).toEqual({ ok: true, records: 4, head: h4, files: [p] });
    expect(h3?.seq).toBe(3);
  });

  it("refuses bodies that set seq, prev or hash (AGENTD_E_INTERNAL), writing nothing", () => {
    const p = join(tmp(), "audit.jsonl");
    const { log } = ChainLog.open(p);
    for (const k of ["seq", "prev", "hash"]) {
      expect(codeOf(() => log.append({ event: "x", [k]: 1 }))).toBe("AGENTD_E_INTERNAL");
    }
    expect(log.head()).toBeNull();
    log.close();
    expect(readFileSync(p, "utf8")).toBe("");
  });

  it("rotates into ordered segments named by first seq; the chain spans them", () => {
    const p = join(tmp(), "audit.jsonl");
    let head = null;
    for (let round = 0; round < 3; round++) {
      const { log } = ChainLog.open(p, { rotateBytes: 600 }); // about 4 records per file
      for (let i = 0; i < 7; i++) head = log.append({ event: "rot", round, i });
      log.close();
    }
    const segs = listSegments(p);
    expect(segs.length).toBeGreaterThanOrEqual(3);
    for (const s of segs) {
      expect(rec(lines(s.path)[0]).seq).toBe(s.firstSeq);
      expect(basename(s.path)).toBe(`audit.${String(s.firstSeq).padStart(12, "0")}.jsonl`);
    }
    const r = verifyChainLog(p, { expectHead: head ?? { hash: "" } });
    expect(r).toMatchObject({ ok: true, records: 21, head });
    expect(r.ok && r.files).toEqual([...segs.map((s) => s.path), p]);
  });

  it("continues from the newest segment when the active file is missing (crash after rename)", () => {
    const p = makeLog(10, 300);
    const segs = listSegments(p);
    // The crash window of a rotation: the active file was renamed, its successor not created.
    renameSync(p, segmentPath(p, rec(lines(p)[0]).seq as number));
    expect(listSegments(p).length).toBe(segs.length + 1);
    const again = ChainLog.open(p, { rotateBytes: 300 });
    expect(again.log.head()?.seq).toBe(10);
    expect(again.log.append({ event: "y" }).seq).toBe(11);
    again.log.close();
    expect(verifyChainLog(p)).toMatchObject({ ok: true, records: 11 });
    expect(rec(lines(p)[0])).toMatchObject({ seq: 11 });
  });

  it("repairs a torn tail on open and reports it", () => {
    const p = makeLog(3);
    appendFileSync(p, '{"event":"test","n":4,"pr');
    const { log, recovery } = ChainLog.open(p);
    expect(recovery).toEqual({ recovered: true, tornBytes: 25 });
    expect(log.append({ event: "after" }).seq).toBe(4);
    log.close();
    expect(verifyChainLog(p)).toMatchObject({ ok: true, records: 4 });
  });

  it("refuses to open (and extend) a broken active file", () => {
    const p = makeLog(4);
    const ls = lines(p);
    writeLines(p, [ls[0], ls[2], ls[1], ls[3]] as string[]);
    expect(codeOf(() => ChainLog.open(p))).toBe("AGENTD_E_LOG_CHAIN_BROKEN");
  });
});

describe("verifyChainLog finds tampering", () => {
  it("an edited record body: CHAIN_BROKEN at that record", () => {
    const p = makeLog(6);
    const ls = lines(p);
    ls[2] = (ls[2] ?? "").replace('"n":3', '"n":9');
    writeLines(p, ls);
    expect(failure(p)).toMatchObject({ code: "AGENTD_E_LOG_CHAIN_BROKEN", seq: 3, line: 3 });
    expect(verifyChainLog(p)).toMatchObject({ ok: false, records: 2 });
  });

  it("an edited record with its own hash recomputed: CHAIN_BROKEN at the next record", () => {
    const p = makeLog(6);
    const ls = lines(p);
    const { hash: _old, ...r3 } = rec(ls[2]);
    const forged = { ...r3, n: 99 };
    ls[2] = canonicalize({ ...forged, hash: canonicalSha256Hex(forged) });
    writeLines(p, ls);
    expect(failure(p)).toMatchObject({ code: "AGENTD_E_LOG_CHAIN_BROKEN", seq: 4, line: 4 });
  });

  it("a dropped middle record: CHAIN_BROKEN at the record after the gap", () => {
    const p = makeLog(6);
    const ls = lines(p);
    ls.splice(2, 1);
    writeLines(p, ls);
    expect(failure(p)).toMatchObject({ code: "AGENTD_E_LOG_CHAIN_BROKEN", seq: 4, line: 3 });
  });

  it("two swapped records: CHAIN_BROKEN at the first of them", () => {
    const p = makeLog(6);
    const ls = lines(p);
    writeLines(p, [ls[0], ls[1], ls[3], ls[2], ls[4], ls[5]] as string[]);
    expect(failure(p)).toMatchObject({ code: "AGENTD_E_LOG_CHAIN_BROKEN", seq: 4, line: 3 });
  });

  it("a dropped last record: invisible to the chain, HEAD_MISMATCH against the known head", () => {
    const p = makeLog(6);
    const before = verifyChainLog(p);
    if (!before.ok || before.head === null) throw new Error("setup");
    const head = before.head;
    writeLines(p, lines(p).slice(0, 5));
    expect(verifyChainLog(p)).toMatchObject({ ok: true, records: 5 }); // self-consistent
    expect(failure(p, { expectHead: head })).toMatchObject({
      code: "AGENTD_E_LOG_HEAD_MISMATCH",
      seq: 5,
      line: 5,
      file: p,
    });
    expect(failure(p, { expectHead: { hash: head.hash } }).code).toBe("AGENTD_E_LOG_HEAD_MISMATCH");
    expect(verifyChainLog(p, { expectHead: { seq: 5, hash: head.hash } }).ok).toBe(false);
  });

  it("a torn last line: TORN_TAIL at the line after the last whole record", () => {
    const p = makeLog(4);
    appendFileSync(p, '{"event":"te');
    expect(failure(p)).toMatchObject({ code: "AGENTD_E_LOG_TORN_TAIL", line: 5, seq: null });
    expect(verifyChainLog(p)).toMatchObject({ ok: false, records: 4 });
  });

  it("a deleted rotated segment: SEQ_GAP at the first record after it", () => {
    const p = makeLog(20, 500);
    const segs = listSegments(p);
    expect(segs.length).toBeGreaterThanOrEqual(3);
    const [, second, third] = segs;
    if (second === undefined || third === undefined) throw new Error("setup");
    unlinkSync(second.path);
    expect(failure(p)).toMatchObject({
      code: "AGENTD_E_LOG_SEQ_GAP",
      file: third.path,
      line: 1,
      seq: third.firstSeq,
      expectedSeq: second.firstSeq,
    });
  });

  it("a deleted first segment: SEQ_GAP, the log does not start at the genesis record", () => {
    const p = makeLog(12, 500);
    const [first, second] = listSegments(p);
    if (first === undefined || second === undefined) throw new Error("setup");
    unlinkSync(first.path);
    expect(failure(p)).toMatchObject({ code: "AGENTD_E_LOG_SEQ_GAP", seq: second.firstSeq });
  });

  it("a line that is not a record, or not canonical: RECORD_INVALID", () => {
    const p = makeLog(4);
    const ls = lines(p);
    writeLines(p, [ls[0], "not json", ls[2], ls[3]] as string[]);
    expect(failure(p)).toMatchObject({ code: "AGENTD_E_LOG_RECORD_INVALID", line: 2 });
    expect(verifyChainLog(p)).toMatchObject({ ok: false, records: 1 });

    // Same meaning, other bytes: a duplicate member that JSON.parse would resolve to the
    // hashed value while another reader could take the first one.
    const l2 = ls[1] ?? "";
    writeLines(p, [ls[0], l2.replace('{"event"', '{"n":666,"event"'), ls[2]] as string[]);
    expect(failure(p)).toMatchObject({ code: "AGENTD_E_LOG_RECORD_INVALID", line: 2, seq: null });

    writeLines(p, [ls[0], '{"event":"x","seq":"2"}'] as string[]);
    expect(failure(p)).toMatchObject({ code: "AGENTD_E_LOG_RECORD_INVALID", line: 2 });
  });

  it("an empty or missing log verifies as empty, and mismatches any expected head", () => {
    const dir = tmp();
    const p = join(dir, "audit.jsonl");
    expect(verifyChainLog(p)).toEqual({ ok: true, records: 0, head: null, files: [] });
    expect(failure(p, { expectHead: { hash: GENESIS_PREV } }).code).toBe(
      "AGENTD_E_LOG_HEAD_MISMATCH",
    );
    expect(readdirSync(dir)).toEqual([]); // the verifier created nothing
  });
});
