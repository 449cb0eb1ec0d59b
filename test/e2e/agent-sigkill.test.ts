import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ApiClient, createApiClient } from "../../control-plane/protocol/client-api.ts";
import { openStore } from "../../control-plane/store/open.ts";
import type { Heartbeat, Store } from "../../control-plane/store/store.ts";
import { systemClock } from "../../lib/clock.ts";
import { generateEd25519KeyPair, publicJwk } from "../../lib/crypto/ed25519.ts";
import { writePublicKeyFile } from "../../lib/crypto/key-files.ts";
import { type ChainHead, listSegments, verifyChainLog } from "../../lib/fs/chain-log.ts";
import { signConsent, signRevocation } from "../../policy-guard/sign.ts";
import { AGENTD_BIN, agentd } from "../support/cli.ts";

/**
 * The crash test of issue 6: `agentd run` SIGKILLed at random moments, 200 times, while it
 * sends heartbeats (every second) and writes its audit log, with at least one heartbeat
 * accepted by the control plane between two kills. Real processes throughout: `agentd cp
 * serve` over TLS, and four enrolled machines (each its own state directory) killed and
 * started again in parallel, to keep the wall time down on two cores.
 *
 * One run of a machine: start `agentd run`; wait until the control plane has stored a
 * heartbeat of this run (one in an epoch above every earlier one); then SIGKILL it — half the
 * time after a random delay of up to a heartbeat period and a quarter (idle, the next beat's
 * counter, its signing, sending and reply), half the time a few milliseconds after its next
 * heartbeat left it, seen by a TCP relay between the machines and the control plane, so that
 * many kills land while a heartbeat is in flight. Meanwhile the owner publishes consents and
 * revocations through the control plane, which pushes them: policy-guard decisions, document
 * refusals and state transitions are written to the audit log at random moments too (and
 * every start writes its own).
 *
 * After every kill, the audit chain verifies — or its last line alone is torn
 * (AGENTD_E_LOG_TORN_TAIL: the only flaw a crash may leave, lib/fs/jsonl.ts; the next start
 * truncates it) — with no fewer records than before. At the end, from the control plane's
 * store: each machine's counters fall into exactly one fresh epoch per run, in run order,
 * numbered 1, 2, 3… within it (nothing reused, skipped or dropped); the control plane refused
 * no heartbeat, as a replay or otherwise (its audit log, its metrics), and the agents recorded
 * no replay answer; every audit head a heartbeat reported is still in the machine's chain, in
 * order. Each machine then starts once more, stops cleanly on SIGTERM, and `agentd audit
 * verify` accepts its log.
 */

const KILLS = 200;
const MACHINES = 4;
const INTERVAL_MS = 1000;
const EPOCH = 2 ** 20;
const epochOf = (counter: number) => Math.floor(counter / EPOCH);
/**
 * What tells a heartbeat apart on the wire (TLS): a POST carrying a signed document, about
 * 1.5 KB; the policy long poll, re-sent after every push, is a bodiless GET of about 0.8 KB.
 * Only the aim depends on it: whether a heartbeat was in flight is read from the store.
 */
const HEARTBEAT_MIN_BYTES = 1200;

// Node's code cache for agentd's processes (written by those that exit normally: cp init, the
// enrollments): an agent then starts in about half the CPU time, and starts are most of what
// 200 kills cost.
const base = mkdtempSync(join(tmpdir(), "agentd-sigkill-"));
const env = {
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: process.env.HOME ?? "/root",
  NODE_COMPILE_CACHE: join(base, "node-compile-cache"),
};

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const json = (text: string) => JSON.parse(text) as Record<string, unknown>;

interface Proc {
  readonly child: ChildProcess;
  /** The first stdout line (the ready line), when it comes. */
  readonly ready: Promise<Record<string, unknown>>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last part of stderr, for failure messages. */
  stderr(): string;
}

function startProcess(args: string[]): Proc {
  const child = spawn(AGENTD_BIN, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (d: string) => {
    err = (err + d).slice(-4000);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once("exit", (code, signal) => r({ code, signal })),
  );
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).once("line", (l) =>
      resolve(json(l)),
    );
    void exited.then(({ code, signal }) =>
      reject(new Error(`agentd ${args[0]} exited (${code ?? signal}): ${err}`)),
    );
  });
  ready.catch(() => {});
  return { child, ready, exited, stderr: () => err };
}

/** Like agentd() but without blocking the event loop (the enrollments run in parallel). */
function agentdAsync(
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(AGENTD_BIN, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    stdout += d;
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * A TCP relay between the agents and the control plane (TLS passes through untouched: the
 * control plane's public URL is the relay's). It sees when a machine's request goes out and
 * when an answer comes back, so that a kill can be aimed at a request in flight. Which machine
 * a connection belongs to: the agent process holding the socket at its other end (/proc).
 */
interface Relay {
  readonly port: number;
  setTarget(port: number): void;
  close(): Promise<void>;
}

async function startRelay(machines: readonly Machine[]): Promise<Relay> {
  let target = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target, "127.0.0.1");
    sockets.add(client).add(upstream);
    const conn: Conn = { owner: undefined, lastReplyAt: 0 };
    client.on("data", (d: Buffer) => {
      upstream.write(d);
      conn.owner ??= ownerOf(client.remotePort ?? 0);
      conn.owner?.onRequest?.(conn, d.length);
    });
    upstream.on("data", (d: Buffer) => {
      conn.lastReplyAt = performance.now();
      client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) s.on("close", end).on("error", end);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;

  /** The machine whose running agent has a socket from `clientPort` to the relay. */
  const ownerOf = (clientPort: number): Machine | null => {
    const hex = (n: number) => n.toString(16).toUpperCase().padStart(4, "0");
    let inode: string | undefined;
    try {
      for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
        const cols = line.trim().split(/\s+/);
        if (cols[1]?.endsWith(`:${hex(clientPort)}`) && cols[2]?.endsWith(`:${hex(port)}`)) {
          inode = cols[9];
        }
      }
    } catch {
      return null; // no /proc: the kills are not aimed
    }
    if (inode === undefined) return null;
    for (const m of machines) {
      const pid = m.proc?.child.pid;
      if (pid === undefined) continue;
      try {
        const fds = readdirSync(`/proc/${pid}/fd`);
        if (fds.some((fd) => safeReadlink(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`)) {
          return m;
        }
      } catch {
        // the process is gone
      }
    }
    return null;
  };
  return {
    port,
    setTarget: (p) => {
      target = p;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function safeReadlink(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return "";
  }
}

interface Kill {
  readonly epoch: number;
  /** The last `n` of this run's epoch the control plane had stored just before the kill. */
  readonly nBefore: number;
  /**
   * Aimed at a heartbeat seen leaving through the relay: whether its answer had come back
   * before the kill (null: not aimed).
   */
  readonly answered: boolean | null;
}

/** A connection through the relay. */
interface Conn {
  /** The machine whose agent holds the other end; undefined until looked up. */
  owner: Machine | null | undefined;
  lastReplyAt: number;
}

interface Machine {
  readonly index: number;
  readonly state: string;
  readonly socket: string;
  worker: string;
  /** The epoch of each run, in order (from its first accepted heartbeat). */
  readonly runEpochs: number[];
  readonly kills: Kill[];
  /** Every head the audit log had after a kill, in order. */
  readonly heads: ChainHead[];
  auditRecords: number;
  tornTails: number;
  consentSeq: number;
  consented: boolean;
  proc: Proc | null;
  /** Set while a kill waits for the machine's next request through the relay (its size). */
  onRequest: ((conn: Conn, bytes: number) => void) | null;
}

describe("agentd run under SIGKILL", () => {
  let cp: Proc;
  let relay: Relay | undefined;
  let admin: ApiClient;
  let ownerApi: ApiClient;
  let store: Store;
  const owner = generateEd25519KeyPair();
  const machines: Machine[] = [];

  beforeAll(async () => {
    const init = agentd(["cp", "init", "--dir", join(base, "cp"), "--host", "127.0.0.1"], env);
    expect(init.code, init.stderr).toBe(0);
    const { api_key: adminKey, ca_file: caFile } = json(init.stdout) as {
      api_key: string;
      ca_file: string;
    };
    const caPem = readFileSync(caFile, "utf8");
    relay = await startRelay(machines);
    cp = startProcess([
      "cp",
      "serve",
      "--dir",
      join(base, "cp"),
      "--listen",
      "127.0.0.1:0",
      "--public-url",
      `https://127.0.0.1:${relay.port}`,
    ]);
    const cpPort = Number((await cp.ready).port);
    relay.setTarget(cpPort);
    // The test's own calls go straight to the control plane; the machines' through the relay.
    const url = `https://127.0.0.1:${cpPort}`;
    admin = createApiClient({ url, caPem, clock: systemClock, apiKey: adminKey });
    const created = await admin.createOwner({ jwk: publicJwk(owner.publicKey) });
    ownerApi = createApiClient({ url, caPem, clock: systemClock, apiKey: created.api_key });
    writePublicKeyFile(join(base, "owner.pub"), owner.publicKey);
    const enrolled = await Promise.all(
      Array.from({ length: MACHINES }, async (_, index) => {
        const { token } = await ownerApi.createEnrollmentToken();
        const state = join(base, `machine-${index}`);
        const r = await agentdAsync([
          "enroll",
          "--token",
          token,
          "--owner-pub",
          join(base, "owner.pub"),
          "--state-dir",
          state,
          "--json",
        ]);
        expect(r.code, r.stderr).toBe(0);
        return { index, state, worker: String(json(r.stdout).worker_id) };
      }),
    );
    for (const e of enrolled) {
      machines.push({
        ...e,
        socket: join(base, "run", `agentd-${e.index}.sock`),
        runEpochs: [],
        kills: [],
        heads: [],
        auditRecords: 0,
        tornTails: 0,
        consentSeq: 0,
        consented: false,
        proc: null,
        onRequest: null,
      });
    }
    store = openStore(`sqlite:${join(base, "cp", "cp.db")}`);
  }, 60_000);

  afterAll(async () => {
    for (const m of machines) m.proc?.child.kill("SIGKILL");
    if (cp !== undefined && cp.child.exitCode === null) cp.child.kill("SIGKILL");
    admin?.close();
    ownerApi?.close();
    await store?.close();
    await relay?.close();
    rmSync(base, { recursive: true, force: true });
  });

  const lastCounter = async (m: Machine) => (await store.getWorker(m.worker))?.last_counter ?? 0;

  const startAgent = (m: Machine) => {
    m.proc = startProcess([
      "run",
      "--state-dir",
      m.state,
      "--set",
      `heartbeat.interval_s=${INTERVAL_MS / 1000}`,
      "--set",
      `api.socket=${m.socket}`,
      "--set",
      "stratum.listen=127.0.0.1:0",
    ]);
    return m.proc;
  };

  /**
   * Waits until the control plane has stored a heartbeat of the run that was just started:
   * one whose epoch is above every epoch of the runs before. Its counter.
   */
  const firstAccepted = async (m: Machine, p: Proc): Promise<number> => {
    const floor = Math.max(m.runEpochs.at(-1) ?? 0, epochOf(await lastCounter(m)));
    let exited = false;
    void p.exited.then(() => {
      exited = true;
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const last = await lastCounter(m);
      if (epochOf(last) > floor) return last;
      if (exited) throw new Error(`machine ${m.index}: agentd run exited: ${p.stderr()}`);
      if (Date.now() > deadline) {
        throw new Error(`machine ${m.index}: no heartbeat accepted in 30 s: ${p.stderr()}`);
      }
      await sleep(10);
    }
  };

  /** After a kill: the chain verifies, or only its last line is torn; nothing was lost. */
  const checkAudit = (m: Machine, when: string) => {
    const r = verifyChainLog(join(m.state, "audit.jsonl"));
    const where = `machine ${m.index} ${when}`;
    if (r.ok) {
      expect(r.head, where).not.toBeNull();
      m.heads.push(r.head as ChainHead);
    } else {
      expect(r.error.code, `${where}: ${r.error.message}`).toBe("AGENTD_E_LOG_TORN_TAIL");
      m.tornTails++;
    }
    expect(r.records, where).toBeGreaterThanOrEqual(m.auditRecords);
    m.auditRecords = r.records;
  };

  it(`keeps every heartbeat counter unique and its audit chain whole across ${KILLS} SIGKILLs`, async () => {
    const started = performance.now();
    const firstHeartbeatMs: number[] = [];
    const readyMs: number[] = [];
    let killsTaken = 0;
    let stop = false;
    const ownerErrors: unknown[] = [];

    /** The owner, on its own schedule: a consent, then its revocation, and again. */
    const ownerLoop = async (m: Machine) => {
      while (!stop) {
        await sleep(300 + Math.random() * 600);
        if (stop) return;
        const iat = Math.floor(Date.now() / 1000);
        try {
          if (m.consented) {
            await ownerApi.postRevocation(
              m.worker,
              signRevocation({
                ownerKey: owner.privateKey,
                worker: m.worker,
                throughSeq: m.consentSeq,
                iat,
              }),
            );
          } else {
            m.consentSeq++;
            await ownerApi.postConsent(
              signConsent({
                ownerKey: owner.privateKey,
                worker: m.worker,
                policyId: "sigkill",
                seq: m.consentSeq,
                iat,
                exp: iat + 86_400,
                rules: {
                  upstreams: [{ url: "stratum+tcp://pool.example:3333", user: "owner.rig" }],
                },
              }),
            );
          }
          m.consented = !m.consented;
        } catch (err) {
          ownerErrors.push(err);
        }
      }
    };

    /** Start, one accepted heartbeat, SIGKILL at a random moment, check the log; again. */
    const killLoop = async (m: Machine) => {
      while (!stop && killsTaken < KILLS) {
        killsTaken++;
        const t0 = performance.now();
        const p = startAgent(m);
        void p.ready.then(
          () => readyMs.push(performance.now() - t0),
          () => {},
        );
        const first = await firstAccepted(m, p);
        firstHeartbeatMs.push(performance.now() - t0);
        m.runEpochs.push(epochOf(first));
        let answered: boolean | null = null;
        if (Math.random() < 0.5) {
          // Anywhere in the next heartbeat period and a bit.
          await sleep(Math.random() * (INTERVAL_MS + 250));
        } else {
          // Within a few milliseconds after one of the next heartbeats leaves (an answer
          // takes about as long), whichever comes after a random wait.
          await sleep(Math.random() * INTERVAL_MS);
          const sent = await new Promise<{ conn: Conn; at: number } | null>((resolve) => {
            const timer = setTimeout(() => {
              m.onRequest = null;
              resolve(null);
            }, 2 * INTERVAL_MS);
            m.onRequest = (conn, bytes) => {
              if (bytes < HEARTBEAT_MIN_BYTES) return;
              clearTimeout(timer);
              m.onRequest = null;
              resolve({ conn, at: performance.now() });
            };
          });
          await sleep(Math.random() * 8);
          if (sent !== null) answered = sent.conn.lastReplyAt > sent.at;
        }
        if (p.child.exitCode !== null || p.child.signalCode !== null) {
          throw new Error(`machine ${m.index}: agentd run exited on its own: ${p.stderr()}`);
        }
        const before = await lastCounter(m);
        p.child.kill("SIGKILL");
        const { signal } = await p.exited;
        m.proc = null;
        expect(signal, p.stderr()).toBe("SIGKILL");
        const epoch = epochOf(first);
        m.kills.push({
          epoch,
          nBefore: epochOf(before) === epoch ? before - epoch * EPOCH : 0,
          answered,
        });
        checkAudit(m, `after kill ${m.kills.length}`);
      }
    };

    const owners = machines.map(ownerLoop);
    try {
      await Promise.all(machines.map(killLoop));
    } finally {
      stop = true;
      for (const m of machines) m.proc?.child.kill("SIGKILL");
      await Promise.allSettled(owners);
    }
    const killsMs = performance.now() - started;
    expect(ownerErrors).toEqual([]);

    // Once more each, stopped cleanly: the machine works after all that, and its log verifies.
    await Promise.all(
      machines.map(async (m) => {
        const p = startAgent(m);
        m.runEpochs.push(epochOf(await firstAccepted(m, p)));
        p.child.kill("SIGTERM");
        expect(await p.exited, p.stderr()).toEqual({ code: 0, signal: null });
        m.proc = null;
        const v = await agentdAsync(["audit", "verify", "--state-dir", m.state, "--json"]);
        expect(v.code, v.stderr).toBe(0);
        const verified = json(v.stdout) as { valid: boolean; records: number; head: ChainHead };
        expect(verified.valid).toBe(true);
        expect(verified.records).toBeGreaterThanOrEqual(m.auditRecords);
        m.heads.push(verified.head);
      }),
    );

    // The control plane's side.
    let inFlight = 0;
    let storedTotal = 0;
    const auditTypes = new Map<string, number>();
    for (const m of machines) {
      const where = `machine ${m.index}`;
      const stored = await allHeartbeats(store, m.worker);
      storedTotal += stored.length;
      const payloads = stored.map(
        (h) =>
          JSON.parse(Buffer.from(h.jws.split(".")[1] ?? "", "base64url").toString()) as {
            counter: number;
            audit_head: string | null;
          },
      );
      // What was signed is what was stored; every counter once, increasing.
      expect(
        payloads.map((p) => p.counter),
        where,
      ).toEqual(stored.map((h) => h.counter));
      for (let i = 1; i < stored.length; i++) {
        expect(stored[i]?.counter, where).toBeGreaterThan(stored[i - 1]?.counter as number);
      }
      // One fresh epoch per run, in the order of the runs, counted 1, 2, 3… within it.
      const byEpoch = new Map<number, number[]>();
      for (const h of stored) {
        const e = epochOf(h.counter);
        byEpoch.set(e, [...(byEpoch.get(e) ?? []), h.counter - e * EPOCH]);
      }
      expect([...byEpoch.keys()], where).toEqual(m.runEpochs);
      for (const [e, ns] of byEpoch) {
        expect(ns, `${where}, epoch ${e}`).toEqual(ns.map((_, i) => i + 1));
      }
      // A kill with a heartbeat in flight: stored after the moment of the kill.
      for (const k of m.kills) {
        if ((byEpoch.get(k.epoch)?.length ?? 0) > k.nBefore) inFlight++;
      }

      // The audit log only grew: every head seen after a kill, and every head a heartbeat
      // reported to the control plane, is in the final chain, in order.
      const chain = readChain(join(m.state, "audit.jsonl"));
      for (const h of m.heads) expect(chain.seqOf.get(h.hash), where).toBe(h.seq);
      let seqBefore = 0;
      for (const p of payloads) {
        if (p.audit_head === null) continue;
        const seq = chain.seqOf.get(p.audit_head);
        expect(
          seq,
          `${where}: heartbeat ${p.counter} reported a head not in the log`,
        ).toBeDefined();
        expect(seq as number, where).toBeGreaterThanOrEqual(seqBefore);
        seqBefore = seq as number;
      }
      for (const t of chain.types) auditTypes.set(t, (auditTypes.get(t) ?? 0) + 1);
    }
    // Never a replay, never a refusal — seen from both sides.
    expect(auditTypes.get("heartbeat.replay") ?? 0).toBe(0);
    // (the events themselves, so that a failure says what was refused and why)
    for (const type of ["heartbeat.replay", "heartbeat.refused"]) {
      expect((await store.listAudit({ type, limit: 1000 })).map((e) => e.data)).toEqual([]);
    }
    const metrics = await admin.metrics();
    const outcome = (o: string) =>
      Number(
        new RegExp(`^agentd_cp_heartbeats_total\\{outcome="${o}"\\} (\\d+)$`, "m").exec(
          metrics,
        )?.[1] ?? 0,
      );
    expect({
      accepted: outcome("accepted"),
      replay: outcome("replay"),
      refused: outcome("refused"),
    }).toEqual({ accepted: storedTotal, replay: 0, refused: 0 });

    const kills = machines.flatMap((m) => m.kills);
    expect(kills.length).toBe(KILLS);
    // Some kills did land while a heartbeat was in flight (the point of aiming them).
    expect(inFlight).toBeGreaterThan(0);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
    console.info(
      `agent SIGKILL test: ${JSON.stringify({
        kills: kills.length,
        machines: MACHINES,
        kills_s: Math.round(killsMs / 100) / 10,
        aimed_at_a_heartbeat: kills.filter((k) => k.answered !== null).length,
        killed_before_the_answer_came: kills.filter((k) => k.answered === false).length,
        heartbeat_stored_after_the_kill: inFlight,
        heartbeats_accepted: storedTotal,
        cp_replays: outcome("replay"),
        cp_refused: outcome("refused"),
        torn_audit_tails: machines.reduce((n, m) => n + m.tornTails, 0),
        audit_records: Object.fromEntries(auditTypes),
        start_to_ready_ms_median: Math.round(median(readyMs)),
        start_to_first_accepted_heartbeat_ms_median: Math.round(median(firstHeartbeatMs)),
      })}`,
    );
  }, 300_000);
});

/** Every stored heartbeat of a worker, oldest first. */
async function allHeartbeats(store: Store, worker: string): Promise<Heartbeat[]> {
  const out: Heartbeat[] = [];
  let before: number | undefined;
  for (;;) {
    const page = await store.listHeartbeats(worker, {
      limit: 1000,
      ...(before === undefined ? {} : { before_counter: before }),
    });
    out.push(...page);
    const last = page.at(-1);
    if (page.length < 1000 || last === undefined) break;
    before = last.counter;
  }
  return out.reverse();
}

/** The records of a chain log (segments, then the active file): hash → seq, and types. */
function readChain(path: string): { seqOf: Map<string, number>; types: string[] } {
  const seqOf = new Map<string, number>();
  const types: string[] = [];
  for (const file of [...listSegments(path).map((s) => s.path), path]) {
    for (const line of readFileSync(file, "utf8").split("\n")) {
      if (line === "") continue;
      const r = JSON.parse(line) as { seq: number; hash: string; type: string };
      seqOf.set(r.hash, r.seq);
      types.push(r.type);
    }
  }
  return { seqOf, types };
}
