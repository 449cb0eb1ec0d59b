import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fail } from "../lib/errors.ts";

/** Held while an agent runs on the state directory (its pid inside). */
export const LOCK_FILE = "agentd.lock";

/**
 * One agent per state directory: two would each keep their own command ledger in memory (a
 * command could run twice), race for heartbeat epochs and interleave the audit chain. The
 * lock is a file made with O_EXCL holding the pid; one left by a process that is gone is
 * taken over. Returns the release.
 */
export function lockStateDir(stateDir: string): () => void {
  const path = join(stateDir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
      return () => rmSync(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = Number(readFileSync(path, "utf8").trim());
      if (Number.isSafeInteger(pid) && pid > 0 && isAlive(pid)) {
        throw fail("AGENTD_E_FILE_EXISTS", `another agentd (pid ${pid}) runs on ${stateDir}`, {
          path,
        });
      }
      rmSync(path, { force: true });
    }
  }
  throw fail("AGENTD_E_FILE_EXISTS", `cannot lock ${stateDir}`, { path });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
