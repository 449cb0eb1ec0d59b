import { execFileSync } from "node:child_process";
import { lookupUser, type OsUser } from "../../plugins/host/os-user.ts";

/** The drivers' OS user of the tests (the package creates it on real installs). */
export const TEST_DRIVER_USER = "agentd-drivers";

/**
 * The drivers' user, created when missing (the tests run as root, as scripts/test does on a
 * fresh machine). Not root and no such user: a clear failure, not a skipped test.
 */
export function ensureDriverUser(name = TEST_DRIVER_USER): OsUser {
  const found = lookupUser(name);
  if (found !== null) return found;
  if (process.getuid?.() !== 0) {
    throw new Error(`the tests need the OS user ${name}: run them as root, or useradd it`);
  }
  try {
    execFileSync(
      "useradd",
      ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
      {
        stdio: "pipe",
      },
    );
  } catch (e) {
    // Another test file (a parallel worker) may have made it first: exit 9, "already exists".
    if (lookupUser(name) === null) throw e;
  }
  const made = lookupUser(name);
  if (made === null) throw new Error(`useradd ${name} did not create it`);
  return made;
}
