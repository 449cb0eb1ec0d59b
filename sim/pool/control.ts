/**
 * Runtime control of a running pool by JSON lines (the CLI's `--control-stdin`), so that a
 * test driving `agentd sim pool` as a process can do what in-process tests do with the API:
 *
 *   {"op":"new_job"}  {"op":"new_block"}  {"op":"stats"}
 *   {"op":"fault","fault":"drop"|"silent"|"reject"|"reject:20"|"reconnect"|"reconnect=H:P[:W]"|null}
 *   {"op":"difficulty","value":0.001}  {"op":"block_target","difficulty":0.01|null}
 *   {"op":"reconnect"}  {"op":"reconnect","to":"127.0.0.1:3333:0"}
 *
 * Each line gets one answer: `{"control":{"op":…,"ok":true,…}}` or `{"control":{"ok":false,
 * "error":…}}`.
 */
import { parseFault } from "./faults.ts";
import type { SimPool } from "./server.ts";
import { isValidDifficulty } from "./target.ts";

export type ControlAnswer =
  | { readonly ok: true; readonly op: string; readonly [key: string]: unknown }
  | { readonly ok: false; readonly error: string };

export function applyControl(pool: SimPool, line: string): ControlAnswer {
  let cmd: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(line);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      return { ok: false, error: "expected a JSON object" };
    }
    cmd = parsed as Record<string, unknown>;
  } catch {
    return { ok: false, error: "not JSON" };
  }
  const op = cmd.op;
  switch (op) {
    case "new_job":
      return { ok: true, op, job: pool.newJob().id };
    case "new_block":
      return { ok: true, op, job: pool.newBlock().id };
    case "stats":
      return { ok: true, op, stats: pool.stats() };
    case "fault": {
      if (cmd.fault === null) {
        pool.setFault(null);
        return { ok: true, op, fault: null };
      }
      const fault = typeof cmd.fault === "string" ? parseFault(cmd.fault) : undefined;
      if (!fault) return { ok: false, error: `unknown fault ${JSON.stringify(cmd.fault)}` };
      pool.setFault(fault);
      return { ok: true, op, fault };
    }
    case "difficulty":
      if (!isValidDifficulty(cmd.value)) return { ok: false, error: "value must be > 0" };
      pool.setDifficulty(cmd.value);
      return { ok: true, op, value: cmd.value };
    case "block_target": {
      const d = cmd.difficulty;
      if (d !== null && !isValidDifficulty(d))
        return { ok: false, error: "difficulty must be > 0 or null" };
      return { ok: true, op, job: pool.setBlockTargetDifficulty(d).id };
    }
    case "reconnect": {
      if (cmd.to === undefined) {
        pool.sendReconnect([]);
        return { ok: true, op };
      }
      const fault = typeof cmd.to === "string" ? parseFault(`reconnect=${cmd.to}`) : undefined;
      if (fault?.kind !== "reconnect") return { ok: false, error: "to must be HOST:PORT[:WAIT]" };
      pool.sendReconnect(fault.params);
      return { ok: true, op };
    }
    default:
      return { ok: false, error: `unknown op ${JSON.stringify(op)}` };
  }
}
