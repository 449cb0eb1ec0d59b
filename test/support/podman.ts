import { type ChildProcess, execFile, execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import Docker from "dockerode";

/**
 * A real Docker Engine API for the supervisor's tests: a private Podman service speaking it on
 * a unix socket in a temp dir, with its own storage, run and lock dirs, so tests never touch
 * the host's containers. Started once per test run by
 * test/support/podman-global-setup.ts (start-up is fast, ~0.1 s, but one service lets every test
 * file share the one image build, ~2 s); a test file gets it with `testPodman()`, a dockerode
 * client with `dockerClient()`, and the simulator image with `buildNodeImage()`.
 * `podmanAvailable(inject("agentdPodman"))` says whether Podman can run here at all (Linux, and
 * podman + runc installed, or root on Debian where ./scripts/test installs them): Podman tests
 * are skipped only when it cannot. Containers of all test files share the service: label them
 * and filter by a label value unique to the test.
 *
 * What Podman's Docker API does differently from Docker's (Podman 4.3.1 from Debian 12, API
 * 1.41, through dockerode 4; measured here and pinned by podman.test.ts), for the supervisor:
 *
 * - Identity: `version().Components[0].Name` is "Podman Engine" (Version 4.3.1, ApiVersion
 *   1.41, MinAPIVersion 1.24); `info().CgroupDriver` "cgroupfs", `info().Driver` the storage.
 * - Image ids are `sha256:<64 hex>` as in Docker (image inspect `.Id`, `ImageID` in container
 *   lists, container inspect `.Image`). `getImage(ref).inspect()` takes "sha256:<hex>", the bare
 *   hex, a 12-hex prefix, or the name without "localhost/"; an unknown id is a 404 (its message
 *   names docker.io/library/sha256:…: Podman also tries it as a name). Local images are named
 *   `localhost/<name>:<tag>` and RepoTags carry that prefix (Docker: no prefix).
 * - A container created from an image id shows the image's *name* in `Config.Image`, in
 *   `listContainers()[].Image` and in events' `from` (Docker keeps the reference given): compare
 *   the id in inspect's `.Image`.
 * - `State.Health` is always there: `{Status: "", FailingStreak: 0, Log: null}` without a
 *   healthcheck (Docker omits it). With a `Healthcheck`, Podman runs the checks from systemd
 *   timers: without systemd (this machine, CI containers) they never run and Status stays
 *   "starting". Probe health from the supervisor; do not rely on HEALTHCHECK under Podman.
 * - Events keep Docker's field names (`status`, `id`, `from`, `Type`, `Action`, `Actor.ID`,
 *   `Actor.Attributes` with the container's and the image's labels, `name`, `image`; `scope`,
 *   `time`, `timeNano`) and `die` has `Attributes.exitCode` ("0", "137"). But: extra actions
 *   `init` (before `start`) and `cleanup` (after `die`, sometimes twice); `docker stop` emits
 *   neither `kill` nor `stop`, only `die`; `kill` has no `signal` attribute; every event has a
 *   `containerExitCode` attribute that is stale (e.g. "0" on the `cleanup` after a 137 `die`):
 *   read `exitCode` of `die` only. The `event` filter matches Podman's internal names: `die`
 *   matches nothing, `died` matches the die events: filter by `label`/`type`, match `Action`
 *   client-side. `since` works (replays, then follows); `until` with any filter returns nothing.
 * - RestartPolicy `{Name: "no"}` reads back as `{Name: "no", MaximumRetryCount: 0}` ("" stays "");
 *   `on-failure`/`always`/`unless-stopped` are carried out by Podman itself while its service
 *   runs (RestartCount counts them): do not mix them with restarts done by the supervisor.
 * - PortBindings with HostPort "" (or "0") get their port at *create*, written back into
 *   `HostConfig.PortBindings` (Docker keeps "" and shows the port in `NetworkSettings.Ports`
 *   after start); `NetworkSettings.Ports` and list `Ports` look as in Docker. Rootful networking
 *   is CNI (bridge cni-podman0, 10.88.0.0/16, iptables DNAT, shared by the host): a connection
 *   before the program listens is refused (Docker's docker-proxy accepts, then closes).
 * - `ReadonlyRootfs: true` is honoured, but /tmp, /run and /var/tmp are still writable tmpfs
 *   (Podman's read_only_tmpfs; Docker leaves them read-only). `Memory`, `NanoCpus` (also shown as
 *   CpuQuota 50000 / CpuPeriod 100000), `User` ("65534:65534") and `StopTimeout` read back as
 *   given; `Config.StopSignal` reads "15" (Docker: "SIGTERM").
 * - Errors: a container name in use is HTTP 500 (Docker: 409); a missing image at create, an
 *   unknown container: 404. A pull with no registry reachable answers 200 with
 *   `{"error", "errorDetail"}` in the stream, as Docker does: dockerode's `followProgress` does
 *   not fail on it, check its output for `error`.
 * - As in Docker: `stop` sends SIGTERM, then SIGKILL after `t` (exit 137); node as PID 1 without
 *   a SIGTERM handler ignores SIGTERM (no init); `wait()` gives `{StatusCode, Error: null}`;
 *   AutoRemove works; `Names` carry a leading "/".
 *
 * Measured here (2 cores, overlay): service start to the first `/_ping` 50–160 ms, stop ~70 ms;
 * the image build ~2.0 s (tar 0.2 s, `podman import` 1.7 s); create + start a container
 * 130–150 ms, start → bitcoind answering RPC on the published port 330–370 ms; `stop` →
 * exit 0 in ~0.3 s. vfs imports as fast but copies the 130 MB layer for each container
 * (`podman run` 0.5–0.8 s against 0.4–0.6 s), so overlay is used as root unless the temp dir
 * is itself on overlayfs (AGENTD_TEST_PODMAN_DRIVER=vfs|overlay forces one).
 */

declare module "vitest" {
  export interface ProvidedContext {
    agentdPodman: PodmanProvided;
  }
}

/** What the global setup hands the test files: the endpoint, or why there is none. */
export type PodmanProvided =
  | PodmanEndpoint
  | { readonly error: string }
  | { readonly skip: string };

/** What a test needs to reach the service (plain data: handed from the global setup). */
export interface PodmanEndpoint {
  /** The Docker Engine API: `new Docker({ socketPath })`. */
  readonly socketPath: string;
  /** The service's temp dir (containers.conf, storage.conf, storage, run dirs, the socket). */
  readonly dir: string;
  /** CONTAINERS_CONF and CONTAINERS_STORAGE_CONF: the podman CLI with these sees the same storage. */
  readonly env: Readonly<Record<string, string>>;
  readonly driver: StorageDriver;
  /** Milliseconds from spawning `podman system service` to the first `GET /_ping` answer. */
  readonly startMs: number;
}

export interface PodmanService extends PodmanEndpoint {
  /** Removes every container, stops the service (SIGTERM, then SIGKILL) and deletes the dir. */
  stop(): Promise<void>;
  /** The same without waiting, for process exit hooks: SIGKILL, remove containers, delete. */
  stopSync(): void;
  /** Stops the API service only (an outage of the API); its containers go on running. */
  stopService(): Promise<void>;
  /** Starts the API service again on the same socket and storage. */
  startService(): Promise<void>;
}

export type StorageDriver = "overlay" | "vfs";

export type PodmanAvailability =
  | { readonly available: true }
  | { readonly available: false; readonly reason: string };

export const MISSING_PODMAN =
  "Podman is needed by these tests but `podman` or `runc` is not on PATH: install Debian's " +
  "`podman` and `runc` packages (./scripts/test does so when run as root)";

function onPath(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const p = join(dir, cmd);
    if (existsSync(p)) return p;
  }
  for (const dir of ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]) {
    const p = join(dir, cmd);
    if (existsSync(p)) return p;
  }
  return null;
}

/**
 * Whether Podman tests can run on this machine. They are skipped (with the reason) only where
 * Podman cannot run at all: not Linux, or podman/runc missing and no way to install them here
 * (not root on Debian), or (given the global setup's `inject("agentdPodman")`) a rootless
 * service that failed to start. As root on Debian (CI) this is always `available`: a missing or
 * failing podman then fails the tests (MISSING_PODMAN, or the service's error) instead.
 */
export function podmanAvailable(provided?: PodmanProvided): PodmanAvailability {
  if (provided !== undefined && "skip" in provided)
    return { available: false, reason: provided.skip };
  if (process.platform !== "linux") {
    return {
      available: false,
      reason: `Podman's service needs Linux (this is ${process.platform})`,
    };
  }
  if (onPath("podman") !== null && onPath("runc") !== null) return { available: true };
  if (process.getuid?.() === 0 && onPath("apt-get") !== null) return { available: true };
  return {
    available: false,
    reason:
      "podman and runc are not installed and this is not root on Debian (./scripts/test " +
      "installs them when run as root)",
  };
}

function pickDriver(): StorageDriver {
  const forced = process.env.AGENTD_TEST_PODMAN_DRIVER;
  if (forced === "overlay" || forced === "vfs") return forced;
  if (process.getuid?.() !== 0) return "vfs"; // rootless overlay needs fuse-overlayfs
  try {
    if (!readFileSync("/proc/filesystems", "utf8").includes("\toverlay\n")) return "vfs";
    // overlay cannot stack on overlay (a container's own root fs, as in Docker-in-Docker CI)
    const fsType = execFileSync("stat", ["-f", "-c", "%T", tmpdir()], { encoding: "utf8" }).trim();
    return fsType === "overlayfs" ? "vfs" : "overlay";
  } catch {
    return "vfs";
  }
}

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolvePing) => {
    const req = request({ socketPath, path: "/_ping", timeout: 1000 }, (res) => {
      res.resume();
      resolvePing(res.statusCode === 200);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolvePing(false));
    req.end();
  });
}

function toml(s: string): string {
  return JSON.stringify(s); // a TOML basic string is a JSON string for these paths
}

/**
 * Starts `podman system service --time=0 unix://<tmp>/podman.sock` with its own
 * containers.conf (cgroupfs, runc, no default ulimits, file events and locks in the temp dir)
 * and storage.conf (graphroot/runroot in the temp dir), and waits for `GET /_ping`.
 */
export async function startPodman(
  options: { driver?: StorageDriver; timeoutMs?: number } = {},
): Promise<PodmanService> {
  const podmanBin = onPath("podman");
  if (podmanBin === null || onPath("runc") === null) throw new Error(MISSING_PODMAN);
  const driver = options.driver ?? pickDriver();
  // Short: the socket path must stay under the 108-byte unix socket limit.
  const dir = mkdtempSync(join(tmpdir(), "agentd-pm-"));
  chmodSync(dir, 0o755); // containers running as another user traverse it for bind mounts
  const p = (...parts: string[]) => join(dir, ...parts);
  for (const d of ["tmp", "networks", "storage", "run"]) mkdirSync(p(d));
  writeFileSync(
    p("containers.conf"),
    [
      "[containers]",
      "default_ulimits = []",
      "[engine]",
      'cgroup_manager = "cgroupfs"',
      'runtime = "runc"',
      'events_logger = "file"',
      `events_logfile_path = ${toml(p("events.log"))}`,
      `tmp_dir = ${toml(p("tmp"))}`,
      'lock_type = "file"',
      `image_copy_tmp_dir = ${toml(p("tmp"))}`,
      "[network]",
      `network_config_dir = ${toml(p("networks"))}`,
      "",
    ].join("\n"),
  );
  writeFileSync(
    p("storage.conf"),
    [
      "[storage]",
      `driver = ${toml(driver)}`,
      `graphroot = ${toml(p("storage"))}`,
      `runroot = ${toml(p("run"))}`,
      "",
    ].join("\n"),
  );
  const env = { CONTAINERS_CONF: p("containers.conf"), CONTAINERS_STORAGE_CONF: p("storage.conf") };
  const socketPath = p("podman.sock");
  const started = performance.now();
  let stderr = "";
  const launch = () => {
    const c = spawn(podmanBin, ["system", "service", "--time=0", `unix://${socketPath}`], {
      env: { ...process.env, ...env, TMPDIR: p("tmp") },
      stdio: ["ignore", "ignore", "pipe"],
    });
    c.stderr?.setEncoding("utf8");
    c.stderr?.on("data", (s: string) => {
      stderr = (stderr + s).slice(-4000);
    });
    return { c, gone: new Promise<void>((r) => c.once("exit", () => r())) };
  };
  let { c: child, gone: exited } = launch();

  const cleanupSync = (service: ChildProcess) => {
    if (service.exitCode === null && service.signalCode === null) service.kill("SIGKILL");
    spawnSync(podmanBin, ["rm", "--all", "--force", "--time", "0"], {
      env: { ...process.env, ...env },
      stdio: "ignore",
      timeout: 30_000,
    });
    unmountUnder(dir);
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  while (!(await ping(socketPath))) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      cleanupSync(child);
      throw new Error(
        `podman system service did not answer /_ping (exit ${child.exitCode ?? child.signalCode}): ${stderr}`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const startMs = Math.round(performance.now() - started);

  let stopped = false;
  /** Stops the API service only: its containers go on running (conmon keeps them). */
  const stopService = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const killed = await Promise.race([
      exited.then(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(true), 5000)),
    ]);
    if (killed) {
      child.kill("SIGKILL");
      await exited;
    }
  };
  return {
    socketPath,
    dir,
    env,
    driver,
    startMs,
    stopService,
    async startService() {
      if (child.exitCode === null && child.signalCode === null) return;
      ({ c: child, gone: exited } = launch());
      const until = Date.now() + 20_000;
      while (!(await ping(socketPath))) {
        if (Date.now() > until) throw new Error(`podman service did not come back: ${stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await run(podmanBin, ["rm", "--all", "--force", "--time", "0"], env).catch(() => undefined);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const killed = await Promise.race([
          exited.then(() => false),
          new Promise<boolean>((r) => setTimeout(() => r(true), 5000)),
        ]);
        if (killed) {
          child.kill("SIGKILL");
          await exited;
        }
      }
      unmountUnder(dir);
      rmSync(dir, { recursive: true, force: true });
    },
    stopSync() {
      if (stopped) return;
      stopped = true;
      cleanupSync(child);
    },
  };
}

function run(cmd: string, args: string[], env: Readonly<Record<string, string>>) {
  return promisify(execFile)(cmd, args, {
    env: { ...process.env, ...env },
    maxBuffer: 16 * 1024 * 1024,
    timeout: 120_000,
  });
}

/** Unmounts what a killed service may have left mounted in its dir (deepest first). */
function unmountUnder(dir: string): void {
  let mountinfo = "";
  try {
    mountinfo = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return;
  }
  const points = mountinfo
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of points) spawnSync("umount", ["-l", m], { stdio: "ignore" });
}

/** The podman CLI on the service's storage (for what the Docker API lacks, e.g. `import`). */
export function podmanCli(podman: PodmanEndpoint, args: string[]): Promise<string> {
  const bin = onPath("podman");
  if (bin === null) return Promise.reject(new Error(MISSING_PODMAN));
  return run(bin, args, podman.env).then((r) => r.stdout);
}

/** A dockerode client on the service. */
export function dockerClient(podman: PodmanEndpoint): Docker {
  return new Docker({ socketPath: podman.socketPath });
}

/** The run's service from the global setup; throws the setup's reason if it has none. */
export async function testPodman(): Promise<PodmanEndpoint> {
  const { inject } = await import("vitest");
  const info = inject("agentdPodman");
  if (info === undefined) {
    throw new Error("test/support/podman-global-setup.ts did not run (see vitest.config.ts)");
  }
  if ("error" in info) throw new Error(info.error);
  if ("skip" in info) throw new Error(`no Podman service here: ${info.skip}`);
  return info;
}

// ---- the simulator image ----

const REPO = resolve(dirname(new URL(import.meta.url).pathname), "..", "..");
/** The simulator scripts copied into the image's /sim/services. */
export const SIM_SERVICES_DIR = join(REPO, "sim", "services");
/** Bump to force a rebuild when the image's layout changes. */
const IMAGE_LAYOUT = 1;
export const DEFAULT_IMAGE = "localhost/agentd-sim-node:test";
const HASH_LABEL = "agentd.sim.image-hash";

/** The project's Node binary (node_modules/.bin/node is a symlink into the `node` package). */
export function nodeBinary(): string {
  const local = join(REPO, "node_modules", ".bin", "node");
  return existsSync(local) ? realpathSync(local) : realpathSync(process.execPath);
}

/** The shared libraries and the dynamic loader `ldd` lists for a binary. */
export function sharedLibraries(binary: string): string[] {
  const out = execFileSync("ldd", [binary], { encoding: "utf8" });
  const libs: string[] = [];
  for (const line of out.split("\n")) {
    const m = /(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line);
    if (m?.[1] !== undefined) libs.push(m[1]);
  }
  return libs;
}

function imageInputs(): { hash: string; node: string; libs: string[]; sims: string[] } {
  const node = nodeBinary();
  const libs = sharedLibraries(node);
  const sims = readdirSync(SIM_SERVICES_DIR)
    .filter((f) => f.endsWith(".ts"))
    .sort();
  const h = createHash("sha256").update(`layout ${IMAGE_LAYOUT}\n`);
  for (const f of [node, ...libs]) {
    const s = statSync(f);
    h.update(`${f} ${realpathSync(f)} ${s.size} ${s.mtimeMs}\n`);
  }
  for (const f of sims) h.update(`${f}\n`).update(readFileSync(join(SIM_SERVICES_DIR, f)));
  return { hash: h.digest("hex").slice(0, 32), node, libs, sims };
}

const images = new Map<string, Promise<string>>();

/**
 * Builds (once per test run) a local image from a rootfs tarball: the project's Node binary as
 * /usr/local/bin/node (the entrypoint), every library `ldd` lists and the loader at their paths,
 * /etc/passwd and /etc/group (root, nobody), /tmp, /data, and the simulators in /sim/services
 * (`Cmd: ["/sim/services/bitcoind.ts", …]`). Returns the image id as `docker image inspect`
 * shows it (`sha256:<64 hex>`). The image carries a hash of its inputs: another test file (another
 * process) finds it built and reuses it; a build holds a lock dir, so two never race.
 */
export function buildNodeImage(podman: PodmanEndpoint, name = DEFAULT_IMAGE): Promise<string> {
  const key = `${podman.socketPath} ${name}`;
  let p = images.get(key);
  if (p === undefined) {
    p = buildLocked(podman, name);
    images.set(key, p);
    p.catch(() => images.delete(key));
  }
  return p;
}

/** The last build's timing (ms), or null when the image was reused: for reports. */
export let lastImageBuild: { name: string; tarMs: number; importMs: number } | null = null;

async function buildLocked(podman: PodmanEndpoint, name: string): Promise<string> {
  const inputs = imageInputs();
  const docker = dockerClient(podman);
  const existing = async (): Promise<string | null> => {
    try {
      const info = await docker.getImage(name).inspect();
      return info.Config.Labels?.[HASH_LABEL] === inputs.hash ? info.Id : null;
    } catch {
      return null;
    }
  };
  const lock = join(podman.dir, "image-build.lock");
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      if (Date.now() > deadline) throw new Error(`image build lock ${lock} held too long`);
      try {
        // a build takes seconds: a lock this old was left by a killed test process
        if (Date.now() - statSync(lock).mtimeMs > 120_000)
          rmSync(lock, { recursive: true, force: true });
      } catch {
        // gone meanwhile
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    const found = await existing();
    if (found !== null) return found;
    const root = mkdtempSync(join(podman.dir, "tmp", "rootfs-"));
    try {
      const t0 = performance.now();
      const fs = join(root, "fs");
      const put = (src: string, dest: string) => {
        mkdirSync(dirname(join(fs, dest)), { recursive: true });
        copyFileSync(src, join(fs, dest)); // follows symlinks: the real file lands at `dest`
      };
      put(inputs.node, "/usr/local/bin/node");
      chmodSync(join(fs, "usr/local/bin/node"), 0o755);
      for (const lib of inputs.libs) {
        put(lib, lib);
        chmodSync(join(fs, lib), 0o755);
      }
      for (const sim of inputs.sims) put(join(SIM_SERVICES_DIR, sim), `/sim/services/${sim}`);
      writeFileSync(join(fs, "sim", "package.json"), '{ "type": "module" }\n');
      mkdirSync(join(fs, "etc"), { recursive: true });
      writeFileSync(
        join(fs, "etc", "passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
      );
      writeFileSync(join(fs, "etc", "group"), "root:x:0:\nnogroup:x:65534:\n");
      for (const d of ["tmp", "data", "root"]) mkdirSync(join(fs, d), { recursive: true });
      chmodSync(join(fs, "tmp"), 0o1777);
      chmodSync(join(fs, "data"), 0o777);
      const tar = join(root, "rootfs.tar");
      execFileSync("tar", ["-C", fs, "--numeric-owner", "--owner=0", "--group=0", "-cf", tar, "."]);
      const t1 = performance.now();
      await podmanCli(podman, [
        "import",
        "--quiet",
        "--change",
        'ENTRYPOINT ["/usr/local/bin/node"]',
        "--change",
        "WORKDIR /",
        "--change",
        "ENV PATH=/usr/local/bin:/usr/bin:/bin",
        "--change",
        `LABEL ${HASH_LABEL}=${inputs.hash}`,
        tar,
        name,
      ]);
      const t2 = performance.now();
      lastImageBuild = { name, tarMs: Math.round(t1 - t0), importMs: Math.round(t2 - t1) };
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
    const built = await existing();
    if (built === null) throw new Error(`podman import did not leave ${name} with its hash label`);
    return built;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}
