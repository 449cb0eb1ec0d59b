/**
 * Reading and writing the Stratum messages a miner exchanges: notify parsing, the session id
 * in a subscribe result, the 6th submit parameter per dialect, the three reject forms.
 */
import type { FoundShare, Job } from "./hasher.ts";
import type { Profile } from "./profiles.ts";
import { DIFF1, hashToBigInt, hex8 } from "./work.ts";

/** A pool's answer to one request. */
export interface Reply {
  readonly result: unknown;
  readonly error: unknown;
  readonly raw: Record<string, unknown>;
}

export function parseNotify(
  p: unknown[],
): Omit<Job, "difficulty" | "extranonce1" | "extranonce2Size" | "receivedAt"> | null {
  const [jobId, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean] = p;
  const hex = (v: unknown): v is string => typeof v === "string" && /^([0-9a-fA-F]{2})*$/.test(v);
  const word = (v: unknown): v is string => typeof v === "string" && /^[0-9a-fA-F]{8}$/.test(v);
  if (
    typeof jobId !== "string" ||
    !(hex(prevhash) && prevhash.length === 64) ||
    !hex(coinb1) ||
    !hex(coinb2) ||
    !Array.isArray(branch) ||
    !branch.every((b) => hex(b) && b.length === 64) ||
    !word(version) ||
    !word(nbits) ||
    !word(ntime)
  ) {
    return null;
  }
  return {
    jobId,
    prevhash,
    coinb1,
    coinb2,
    branch: branch as string[],
    version: Number.parseInt(version, 16),
    nbits: Number.parseInt(nbits, 16),
    ntime: Number.parseInt(ntime, 16),
    clean: clean === true,
  };
}

/** A subscribe result: `[[subscriptions…], extranonce1, extranonce2_size]`. */
export function parseSubscribe(
  result: unknown,
): { extranonce1: string; extranonce2Size: number; sessionId: string | null } | null {
  if (!Array.isArray(result)) return null;
  const [, en1, size] = result;
  if (typeof en1 !== "string" || !/^([0-9a-fA-F]{2})*$/.test(en1) || !Number.isInteger(size)) {
    return null;
  }
  return {
    extranonce1: en1.toLowerCase(),
    extranonce2Size: size as number,
    sessionId: notifySessionId(result[0]),
  };
}

/** The id of the mining.notify subscription, which cgminer uses as its session id. */
function notifySessionId(subs: unknown): string | null {
  if (!Array.isArray(subs)) return null;
  const pairs = Array.isArray(subs[0]) ? subs : [subs];
  for (const pair of pairs) {
    if (Array.isArray(pair) && pair[0] === "mining.notify" && typeof pair[1] === "string") {
      return pair[1];
    }
  }
  return null;
}

/**
 * The mask a mining.configure answer grants, or null when it does not grant version rolling
 * (cgminer 4.x needs `version-rolling: true` *and* a mask).
 */
export function rollingGrant(result: unknown): number | null {
  if (result === null || typeof result !== "object") return null;
  const r = result as Record<string, unknown>;
  const mask = r["version-rolling.mask"];
  if (r["version-rolling"] !== true || typeof mask !== "string") return null;
  return /^[0-9a-fA-F]{1,8}$/.test(mask) ? Number.parseInt(mask, 16) >>> 0 : null;
}

export function versionField(
  encoding: Profile["versionEncoding"],
  share: FoundShare,
  mask: number,
): string {
  switch (encoding) {
    case "full":
      return hex8(share.version);
    case "xor":
      return hex8(share.version ^ share.job.version);
    default:
      return hex8(share.version & mask);
  }
}

/** The three reject forms: `error: [code, msg, …]`, `reject-reason`, or a bare false. */
export function rejectReason(r: Reply): string {
  if (Array.isArray(r.error)) return `${String(r.error[0])} ${String(r.error[1] ?? "")}`.trim();
  if (r.error !== null && typeof r.error === "object") {
    const e = r.error as Record<string, unknown>;
    return `${String(e.code ?? "")} ${String(e.message ?? "")}`.trim();
  }
  const rr = r.raw["reject-reason"];
  if (typeof rr === "string") return rr;
  return "rejected";
}

export function isStaleReason(r: Reply, reason: string): boolean {
  return (Array.isArray(r.error) && r.error[0] === 21) || /stale|job not found/i.test(reason);
}

/** floor(diff1 / hash) as a float, for "Best Share". */
export function shareDifficulty(hashHex: string): number {
  const h = hashToBigInt(Buffer.from(hashHex, "hex").reverse());
  return h === 0n ? Number.MAX_VALUE : Number(DIFF1) / Number(h);
}
