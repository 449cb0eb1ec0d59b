import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, describe, expect, it } from "vitest";
import { AGENTD_BIN, agentd } from "../support/cli.ts";

/**
 * `agentd devnet`, the README's main command, as a user runs it: ready line, status lines
 * showing shares reaching the simulated pool, the owner's revocation from another terminal
 * stopping the data path (the pool's count stops moving), Ctrl-C ending it cleanly.
 */

const dir = mkdtempSync(join(tmpdir(), "agentd-devnet-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Status {
  state: string;
  mining: boolean;
  miners: number;
  pool_accepted: number;
}

describe("agentd devnet", () => {
  it("mines end to end, stops at the owner's revocation, exits 0 on Ctrl-C", async () => {
    const child = spawn(
      AGENTD_BIN,
      ["devnet", "--dir", join(dir, "net"), "--asics", "3", "--status-interval", "1"],
      { env: { PATH: process.env.PATH ?? "", HOME: "/root" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      const lines: Record<string, unknown>[] = [];
      const waiters: (() => void)[] = [];
      createInterface({ input: child.stdout }).on("line", (l) => {
        lines.push(JSON.parse(l) as Record<string, unknown>);
        for (const w of waiters.splice(0)) w();
      });
      const next = <T>(what: string, pick: (l: Record<string, unknown>) => T | undefined) =>
        new Promise<T>((resolve, reject) => {
          const deadline = setTimeout(() => reject(new Error(`no line with ${what}`)), 60_000);
          const check = () => {
            for (const l of lines.splice(0)) {
              const v = pick(l);
              if (v !== undefined) {
                clearTimeout(deadline);
                return resolve(v);
              }
            }
            waiters.push(check);
          };
          check();
        });
      const ready = await next("ready", (l) => (l.ready === true ? l : undefined));
      expect(ready).toMatchObject({
        asics: 3,
        api_socket: join(dir, "net", "agent", "agentd.sock"),
      });
      const mining = await next("shares at the pool", (l) => {
        const s = l as unknown as Status;
        return s.mining && s.pool_accepted > 0 && s.state === "MINING" ? s : undefined;
      });
      expect(mining).toMatchObject({ state: "MINING", miners: 3 });

      const revoke = agentd([
        "consent",
        "revoke",
        "--owner-key",
        String(ready.owner_key),
        "--worker",
        String(ready.worker_id),
        "--through-seq",
        "1",
        "--apply",
        "--set",
        `api.socket=${String(ready.api_socket)}`,
      ]);
      expect(revoke.code, revoke.stderr).toBe(0);
      const stopped = await next("REVOKED", (l) =>
        (l as unknown as Status).state === "REVOKED" ? (l as unknown as Status) : undefined,
      );
      expect(stopped.mining).toBe(false);
      // two status lines later, not one more share has reached the pool
      const a = await next("a status line", (l) => l as unknown as Status);
      const b = await next("another", (l) => l as unknown as Status);
      const c = await next("and another", (l) => l as unknown as Status);
      expect([b.pool_accepted, c.pool_accepted]).toEqual([a.pool_accepted, a.pool_accepted]);
    } finally {
      child.kill("SIGINT");
    }
    expect(await exited).toBe(0);
  }, 120_000);
});
