import { spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * A small real tmpfs for disk-full tests: mounted in a temp dir (root only, as CI runs here),
 * filled to ENOSPC with a filler file, emptied again, unmounted. Real ENOSPC from the kernel,
 * not an injected error.
 */
export interface Tmpfs {
  readonly dir: string;
  /** Writes a filler file until the file system is full. */
  fill(): void;
  /** Deletes the filler: space again. */
  free(): void;
  unmount(): void;
}

export function mountTmpfs(sizeKiB: number): Tmpfs {
  const dir = mkdtempSync(join(tmpdir(), "agentd-tmpfs-"));
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${sizeKiB}k,mode=0700`, "tmpfs", dir]);
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`mount tmpfs: ${r.stderr.toString().trim() || r.error?.message}`);
  }
  const filler = join(dir, ".filler");
  return {
    dir,
    fill() {
      const fd = openSync(filler, "a");
      const block = Buffer.alloc(4096, 1);
      try {
        for (;;) writeSync(fd, block);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
      }
      // the last partial block
      try {
        for (;;) writeSync(fd, Buffer.alloc(1));
      } catch {
        // full
      } finally {
        closeSync(fd);
      }
    },
    free: () => rmSync(filler, { force: true }),
    unmount() {
      spawnSync("umount", ["-l", dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Whether this process may mount a tmpfs (root, and the mount works here). */
export function canMountTmpfs(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    mountTmpfs(64).unmount();
    return true;
  } catch {
    return false;
  }
}
