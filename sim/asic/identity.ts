/**
 * A simulated miner's hardware identity: a MAC, a control-board serial and one serial per hash
 * board. Derived from the miner's id and nothing else, so a reboot or a move to another
 * address or port (a DHCP change) shows the same machine, as real hardware does.
 */
import { createHash } from "node:crypto";

export interface SimIdentity {
  readonly mac: string;
  readonly serial: string;
  readonly boardSerials: readonly string[];
}

export function simIdentity(id: string, boards: number): SimIdentity {
  const h = createHash("sha256").update(`agentd-sim-miner:${id}`).digest();
  // A locally administered unicast MAC (02:…), so it can never be a real vendor's address.
  const bytes = [0x02, ...h.subarray(0, 5)];
  const mac = bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
  const alnum = (buf: Buffer, n: number) =>
    [...buf.subarray(0, n)].map((b) => "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"[b % 34]).join("");
  const serial = `SIM${alnum(h.subarray(5), 14)}`;
  const boardSerials = Array.from({ length: boards }, (_, i) => {
    const b = createHash("sha256").update(`agentd-sim-board:${id}:${i}`).digest();
    return `SIMB${alnum(b, 20)}`;
  });
  return { mac, serial, boardSerials };
}
