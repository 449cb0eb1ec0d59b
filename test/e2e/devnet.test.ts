import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { AGENTD_BIN, agentd, REPO_ROOT } from "../support/cli.ts";
import { useTmpDir } from "../support/tmp.ts";

/**
 * `agentd devnet`, the README's main command, as a user runs it from the checkout: the ready
 * line with the commands to try next, status lines showing shares reaching the simulated pool
 * and the supervised services (simulated bitcoind, template provider, translator, lnd) running
 * with eligibility seeing them, the owner's revocation from another terminal stopping the data
 * path and the services, Ctrl-C ending it cleanly — services stopped, a temporary directory
 * removed.
 */

const tmp = useTmpDir("agentd-devnet-test-");

const SERVICES = ["bitcoind", "template-provider", "translator", "lnd"];

interface Status {
  state: string;
  mining: boolean;
  reasons: string[];
  miners: number;
  hashrate_hs: number | null;
  proxy_accepted_total: number | null;
  pool_accepted_total: number | null;
  heartbeats_sent_total: number;
  upstream: string | null;
  services: Record<string, string> | null;
  eligibility: {
    eligible: boolean;
    reasons: string[];
    bitcoind: string;
    lightning: string;
  } | null;
}

interface Ready {
  ready: true;
  dir: string;
  state_dir: string;
  worker_id: string;
  owner_key: string;
  api_socket: string;
  pool: string;
  asics: number;
  services: Record<string, string> | null;
  try: string[];
}

interface Devnet {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  /** The next stdout line `pick` accepts (lines it passes over are dropped). */
  next<T>(what: string, pick: (l: Record<string, unknown>) => T | undefined): Promise<T>;
  status(what: string, ok: (s: Status) => boolean): Promise<Status>;
  stderr(): string;
}

const running: ChildProcess[] = [];
// A devnet left running by a failed test is stopped as a user would (Ctrl-C), so that it stops
// its services and removes its temp dir; SIGKILL only if it does not exit in time (then its
// services, in their own process groups, would stay behind).
afterEach(async () => {
  for (const c of running.splice(0)) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    const exited = new Promise<void>((r) => c.once("exit", () => r()));
    c.kill("SIGINT");
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((r) => {
      timer = setTimeout(() => r("late"), 60_000);
    });
    if ((await Promise.race([exited, late])) === "late") c.kill("SIGKILL");
    clearTimeout(timer);
  }
}, 90_000);

/** The devnet as a user starts it: from the checkout's root, stdout JSON lines only. */
function devnet(args: string[], env: Record<string, string> = {}): Devnet {
  const child = spawn(AGENTD_BIN, ["devnet", ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: "/root", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.push(child);
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  let err = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (s: string) => {
    err = (err + s).slice(-20_000);
  });
  const lines: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (l) => {
    // Exactly one JSON object per stdout line: anything else fails the parse here.
    lines.push(JSON.parse(l) as Record<string, unknown>);
    for (const w of waiters.splice(0)) w();
  });
  const next = <T>(what: string, pick: (l: Record<string, unknown>) => T | undefined) =>
    new Promise<T>((resolve, reject) => {
      // Generous: two cores shared with other test files, four services starting.
      const deadline = setTimeout(
        () => reject(new Error(`no line with ${what}; stderr: ${err.slice(-3000)}`)),
        90_000,
      );
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
  return {
    child,
    exited,
    next,
    status: (what, ok) =>
      next(what, (l) =>
        "state" in l && ok(l as unknown as Status) ? (l as unknown as Status) : undefined,
      ),
    stderr: () => err,
  };
}

const allRunning = (s: Status) => SERVICES.every((k) => s.services?.[k] === "running");

/** The pids of the service processes the agent's process driver started. */
function servicePids(stateDir: string): number[] {
  const file = JSON.parse(readFileSync(join(stateDir, "services", "processes.json"), "utf8")) as {
    data: { records?: { pid?: number | null }[] };
  };
  return (file.data.records ?? []).flatMap((r) => (typeof r.pid === "number" ? [r.pid] : []));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("agentd devnet", () => {
  it("mines with its services running, suggests commands that exist, stops at the owner's revocation, exits 0 on Ctrl-C", async () => {
    const dir = join(tmp(), "net");
    const d = devnet(["--dir", dir, "--asics", "3", "--status-interval", "1"]);
    try {
      const ready = await d.next("ready", (l) =>
        l.ready === true ? (l as unknown as Ready) : undefined,
      );
      expect(ready).toMatchObject({
        dir,
        asics: 3,
        state_dir: join(dir, "agent"),
        api_socket: join(dir, "agent", "agentd.sock"),
        owner_key: join(dir, "owner.key"),
      });
      expect(Object.keys(ready.services ?? {}).sort()).toEqual([...SERVICES].sort());

      // The commands to try: run from the checkout's root, each a verb this CLI has, every path
      // in it real, every verb that reads the agent pointed at its state directory.
      const verbs = ready.try.map((c) => {
        const words = c.split(" ");
        expect(words[0]).toBe("./bin/agentd");
        const verb = words.slice(
          1,
          words.findIndex((w) => w.startsWith("--")),
        );
        for (const w of words.filter((x) => x.startsWith("/"))) expect(existsSync(w), w).toBe(true);
        expect(words[words.indexOf("--state-dir") + 1]).toBe(ready.state_dir);
        return verb.join(" ");
      });
      expect(verbs).toEqual([
        "status",
        "miners",
        "services ls",
        "eligibility",
        "logs",
        "doctor",
        "consent revoke",
      ]);
      for (const v of verbs) {
        const help = agentd([...v.split(" "), "--help"]);
        expect(help.code, `${v}: ${help.stderr}`).toBe(0);
      }
      expect(ready.try.at(-1)).toContain(
        `--owner-key ${ready.owner_key} --worker ${ready.worker_id} --through-seq 1 --apply`,
      );

      const mining = await d.status(
        "shares at the pool and every service running",
        (s) =>
          s.state === "MINING" && s.mining && (s.pool_accepted_total ?? 0) > 0 && allRunning(s),
      );
      expect(mining).toMatchObject({ miners: 3, reasons: [] });
      expect(mining.hashrate_hs).toBeGreaterThan(0);
      expect(mining.proxy_accepted_total).toBeGreaterThan(0);
      // Eligibility sees bitcoind synced and lnd's channel to the treasury, and still says no:
      // a new node has not been up for 7 days.
      const eligibility = await d.status(
        "eligibility seeing the services",
        (s) => s.eligibility?.bitcoind === "synced" && s.eligibility.lightning === "open",
      );
      expect(eligibility.eligibility).toEqual({
        eligible: false,
        reasons: ["uptime.window_incomplete"],
        bitcoind: "synced",
        lightning: "open",
      });

      // Every command of the ready line, run exactly as printed (from the checkout's root, as
      // the README says), works the first time and says something useful in its human form.
      const run = (command: string) => {
        const r = agentd(command.split(" ").slice(1), {}, REPO_ROOT);
        expect(r.code, `${command}\n${r.stdout}${r.stderr}`).toBe(0);
        return r.stdout;
      };
      const [statusCmd, minersCmd, servicesCmd, eligibilityCmd, logsCmd, doctorCmd, revokeCmd] =
        ready.try as [string, string, string, string, string, string, string];
      const status = run(statusCmd);
      expect(status).toMatch(new RegExp(`^worker\\s+${ready.worker_id}$`, "m"));
      expect(status).toMatch(/^state\s+MINING since /m);
      expect(status).toMatch(/^mining\s+allowed$/m);
      expect(status).toMatch(
        new RegExp(
          `^upstream\\s+${escapeRegExp(ready.pool)} as devnet\\.rig: connected since `,
          "m",
        ),
      );
      expect(status).toMatch(/^miners\s+3 connected, [0-9.]+ [kMGT]?H\/s \(10 min\)$/m);
      expect(status).toMatch(/^shares\s+[1-9][0-9]* accepted, [0-9]+ rejected/m);
      expect(status).toMatch(/^heartbeats\s+last accepted [0-9]+ s ago/m);
      const miners = run(minersCmd);
      expect(miners).toMatch(/^3 miner\(s\) connected$/m);
      expect(miners).toMatch(
        /^id\s+ip\s+workers\s+state\s+difficulty\s+hashrate\s+accepted\/rejected\s+connected$/m,
      );
      // the proxy's table (the count, a header, three miners), a blank line, the fleet's
      expect(miners.trim().split("\n")).toHaveLength(7);
      expect(miners).toMatch(/^adopted: none \(agentd miners adopt ADDR\)$/m);
      const services = run(servicesCmd);
      for (const kind of SERVICES)
        expect(services).toMatch(new RegExp(`^${kind}\\s+allowed\\s+running`, "m"));
      expect(run(eligibilityCmd)).toMatch(/^eligible\s+no: uptime\.window_incomplete$/m);
      // The agent's last log lines are served, readable, without the control plane's request
      // log drowning them.
      const logText = run(`${logsCmd} -n 200`);
      expect(logText.split("\n").length).toBeGreaterThan(5);
      expect(logText).toMatch(/^\d{4}-\d\d-\d\dT[0-9:.]+Z INFO {2}\[agent\] /m);
      const logs = agentd([...logsCmd.split(" ").slice(1), "-n", "200", "--json"], {}, REPO_ROOT);
      const lines = (JSON.parse(logs.stdout) as { lines: string[] }).lines;
      expect(lines.some((l) => l.includes('"component":"agent"'))).toBe(true);
      expect(lines.some((l) => l.includes('"component":"control-plane"'))).toBe(false);
      const doctor = run(doctorCmd);
      expect(doctor).toMatch(/^ok\s+agent\s+MINING; mining allowed$/m);
      expect(doctor).toMatch(
        /^ok\s+engine_socket\s+not needed: the agent supervises native processes$/m,
      );
      expect(doctor).not.toMatch(/^fail/m);

      // The owner revokes from another terminal (the local API path; the agent applies it).
      const revoke = agentd(revokeCmd.split(" ").slice(1), {}, REPO_ROOT);
      expect(revoke.code, revoke.stderr).toBe(0);
      const stopped = await d.status("REVOKED", (s) => s.state === "REVOKED");
      expect(stopped.mining).toBe(false);
      // the services go too: none allowed, none left
      await d.status(
        "the services gone",
        (s) => s.services !== null && Object.keys(s.services).length === 0,
      );
      // two status lines later, not one more share has reached the pool
      const a = await d.status("a status line", () => true);
      const b = await d.status("another", () => true);
      const c = await d.status("and another", () => true);
      expect([b.pool_accepted_total, c.pool_accepted_total]).toEqual([
        a.pool_accepted_total,
        a.pool_accepted_total,
      ]);
    } finally {
      d.child.kill("SIGINT");
    }
    expect(await d.exited, d.stderr().slice(-3000)).toBe(0);
    // a --dir is the operator's: kept
    expect(existsSync(join(dir, "owner.key"))).toBe(true);
  }, 240_000);

  it("without --dir, mining to an unreachable --pool: status lines keep coming, Ctrl-C stops the services and removes the temp dir", async () => {
    const temp = tmp();
    const d = devnet(
      ["--asics", "1", "--pool", "stratum+tcp://127.0.0.1:1", "--status-interval", "1"],
      { TMPDIR: temp },
    );
    let pids: number[] = [];
    try {
      const ready = await d.next("ready", (l) =>
        l.ready === true ? (l as unknown as Ready) : undefined,
      );
      expect(ready.pool).toBe("stratum+tcp://127.0.0.1:1");
      expect(ready.dir.startsWith(`${temp}/agentd-devnet-`)).toBe(true);
      expect(readdirSync(temp)).toEqual([ready.dir.slice(temp.length + 1)]);
      const up = await d.status("every service running", allRunning);
      // no pool here to count at, and nothing mined: the pool cannot be reached
      expect(up.pool_accepted_total).toBeNull();
      expect(up.proxy_accepted_total ?? 0).toBe(0);
      const later = await d.status("a later status line", () => true);
      expect(later.proxy_accepted_total ?? 0).toBe(0);
      // and the status says so, and why (not a silent mining: true)
      expect(later.upstream).toMatch(
        /^stratum\+tcp:\/\/127\.0\.0\.1:1 unreachable since \d{4}-[0-9T:.-]+Z \(ECONNREFUSED\)$/,
      );
      const status = agentd(["status", "--state-dir", ready.state_dir], {}, REPO_ROOT);
      expect(status.stdout).toMatch(
        /^upstream\s+stratum\+tcp:\/\/127\.0\.0\.1:1 as devnet\.rig: unreachable since .* \(ECONNREFUSED\)$/m,
      );
      pids = servicePids(ready.state_dir);
      expect(pids).toHaveLength(SERVICES.length);
      expect(pids.every(alive)).toBe(true);
    } finally {
      d.child.kill("SIGINT");
    }
    expect(await d.exited, d.stderr().slice(-3000)).toBe(0);
    expect(pids.filter(alive)).toEqual([]);
    expect(readdirSync(temp)).toEqual([]);
  }, 180_000);

  it("removes its temp dir after a failed start too; refuses a --dir that holds an earlier devnet", async () => {
    const temp = tmp();
    // A config error, found after the directory was made: a --dir shows it was made...
    const kept = join(temp, "kept");
    const withDir = agentd(["devnet", "--dir", kept, "--log-level", "loud", "--no-services"]);
    expect(withDir.code).toBe(2);
    expect(existsSync(kept)).toBe(true);
    // ...and without --dir, the temporary one is gone again.
    const tmpRoot = join(temp, "tmp");
    mkdirSync(tmpRoot);
    const failed = agentd(["devnet", "--log-level", "loud", "--no-services"], { TMPDIR: tmpRoot });
    expect(failed.code).toBe(2);
    expect(failed.stderr).toContain("log.level");
    expect(readdirSync(tmpRoot)).toEqual([]);

    mkdirSync(join(kept, "cp"));
    const again = agentd(["devnet", "--dir", kept]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain("holds an earlier devnet");
  });
});

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
