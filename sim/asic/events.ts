/** What a simulated miner reports as it runs: for tests, the CLI's --events lines, the API. */
import type { FaultKind } from "./faults.ts";

export type MinerEvent =
  | { type: "connecting"; slot: number; host: string; port: number }
  | { type: "connected"; slot: number }
  | { type: "disconnected"; slot: number; reason: string }
  | { type: "subscribed"; slot: number; extranonce1: string; extranonce2Size: number }
  | { type: "authorized"; slot: number; ok: boolean }
  | { type: "rolling"; mask: string }
  | { type: "job"; jobId: string; difficulty: number; clean: boolean }
  | {
      type: "submitted";
      id: number;
      jobId: string;
      extranonce2: string;
      ntime: string;
      nonce: string;
      version: string;
      difficulty: number;
      hash: string;
      fault?: FaultKind;
    }
  | { type: "accepted"; id: number; jobId: string; difficulty: number }
  | { type: "rejected"; id: number; jobId: string; difficulty: number; reason: string }
  | { type: "failover"; from: number; to: number; reason: string }
  | { type: "reconnect"; host: string; port: number }
  | { type: "reconnect-refused"; host: string }
  | { type: "fault"; kind: FaultKind; detail?: string }
  | { type: "mode"; mode: MinerMode }
  | { type: "message"; text: string }
  | { type: "reboot" }
  | { type: "boot" };

/** `low`: the S19's low-power mode (miner-mode 3): hashing at a lower rate. */
export type MinerMode = "normal" | "sleep" | "low";
