/**
 * The drivers' OS user: looked up by name in /etc/passwd (Node has no getpwnam), and a check
 * that it can reach the code the host runs, made before spawning so that a checkout it cannot
 * read is reported as that, not as a host that dies at start.
 */
import { readFileSync, realpathSync, statSync } from "node:fs";
import { dirname, parse } from "node:path";
import { fail } from "../../lib/errors.ts";

export interface OsUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

/** The user named `name` in a passwd file, or null. Only local users: no NSS (LDAP, sssd). */
export function lookupUser(name: string, passwd = "/etc/passwd"): OsUser | null {
  let text: string;
  try {
    text = readFileSync(passwd, "utf8");
  } catch (e) {
    throw fail("AGENTD_E_IO", `cannot read ${passwd} to look up ${name}`, {
      path: passwd,
      errno: (e as NodeJS.ErrnoException).code ?? "unknown",
    });
  }
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length < 7 || f[0] !== name) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (!Number.isSafeInteger(uid) || !Number.isSafeInteger(gid) || f[2] === "" || f[3] === "") {
      throw fail("AGENTD_E_IO", `${passwd}: the entry of ${name} has no numeric uid/gid`, {
        path: passwd,
      });
    }
    return { name, uid, gid };
  }
  return null;
}

/**
 * Why `user` cannot read `path` (a file or a directory, listed), or null when it can: every
 * directory on the way must let it search (x), the path itself read (r; and search, for a
 * directory). Mode bits only, as the kernel checks them for a process with that uid and gid
 * and no supplementary groups (libuv drops them when spawning with a uid); ACLs are not read.
 */
export function unreadableBy(
  user: OsUser,
  path: string,
  need: "read" | "exec" = "read",
): string | null {
  let real: string;
  try {
    real = realpathSync(path);
  } catch (e) {
    return `${path}: ${(e as NodeJS.ErrnoException).code ?? "cannot resolve"}`;
  }
  if (user.uid === 0) return null;
  const chain: string[] = [];
  for (let d = dirname(real); ; d = dirname(d)) {
    chain.unshift(d);
    if (d === parse(d).root) break;
  }
  for (const dir of chain) {
    if (!allows(user, dir, 1))
      return `${dir}: ${user.name} (uid ${user.uid}) cannot enter it (no x)`;
  }
  const st = statSync(real);
  const bits = st.isDirectory() ? 5 : need === "exec" ? 5 : 4;
  if (!allows(user, real, bits)) {
    const what = st.isDirectory() ? "list" : need === "exec" ? "execute" : "read";
    return `${real}: ${user.name} (uid ${user.uid}) cannot ${what} it (mode ${(st.mode & 0o777).toString(8)})`;
  }
  return null;
}

/** Whether `user` has all of `want` (r=4, w=2, x=1) on `path` by its owner/group/other bits. */
function allows(user: OsUser, path: string, want: number): boolean {
  const st = statSync(path);
  const shift = st.uid === user.uid ? 6 : st.gid === user.gid ? 3 : 0;
  return ((st.mode >> shift) & want) === want;
}
