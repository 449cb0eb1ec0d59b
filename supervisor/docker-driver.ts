import Dockerode from "dockerode";
import { fail } from "../lib/errors.ts";
import type { Logger } from "../lib/log/logger.ts";
import type { Timers } from "../lib/timers.ts";
import { type DockerCall, retryTransient } from "./docker-transient.ts";
import type { DriverEvent, EventSubscription, ServiceDriver } from "./driver.ts";
import type { Actual } from "./plan.ts";
import { LABELS, SERVICE_KINDS, type ServiceKind, type ServiceSpec } from "./spec.ts";

/**
 * The Docker driver: the Docker Engine API through an injected dockerode client (a Docker or
 * Podman socket: docker.host, DOCKER_HOST or /var/run/docker.sock). Every container agentd
 * creates carries its labels (spec.ts LABELS), and everything here lists and watches by those
 * labels only: a container without them is invisible, so it is never stopped, restarted or
 * removed. The container's own restart policy is "no": the supervisor decides restarts. The
 * API's transient answers while a container dies are retried here (docker-transient.ts), on
 * the injected timers, so that the reconciler sees only real failures.
 */

/** unix:///path, tcp://host:port, or "" for DOCKER_HOST or /var/run/docker.sock. */
export function dockerClient(
  host: string,
  env: NodeJS.ProcessEnv = process.env,
): { docker: Dockerode; name: string } {
  const h = host !== "" ? host : (env.DOCKER_HOST ?? "unix:///var/run/docker.sock");
  if (h.startsWith("unix://")) {
    return { docker: new Dockerode({ socketPath: h.slice("unix://".length) }), name: h };
  }
  const m = /^tcp:\/\/([^:/]+):([0-9]{1,5})$/.exec(h);
  if (m === null) {
    throw fail(
      "AGENTD_E_CONFIG_TYPE",
      `docker.host: expected unix:///path or tcp://host:port, found ${JSON.stringify(h)}`,
      {
        key: "docker.host",
      },
    );
  }
  return {
    docker: new Dockerode({ host: m[1] as string, port: Number(m[2]), protocol: "http" }),
    name: h,
  };
}

export function dockerDriver(
  docker: Dockerode,
  o: {
    readonly worker: string;
    readonly name?: string;
    /** For the backoff between retries of a transient answer. */
    readonly timers: Timers;
    readonly logger?: Logger;
  },
): ServiceDriver {
  const managed = `${LABELS.managed}=true`;
  const ownFilter = { label: [managed, `${LABELS.worker}=${o.worker}`] };
  const retrying = <T>(call: DockerCall, f: () => Promise<T>): Promise<T> =>
    retryTransient(call, f, {
      timers: o.timers,
      onRetry: ({ why, attempt, err }) =>
        o.logger?.debug(
          { call, why, attempt, err },
          "a transient Docker Engine API answer; retrying",
        ),
    });

  return {
    name: o.name ?? "docker",

    async list(): Promise<Actual[]> {
      const infos = await retrying("list", () =>
        docker.listContainers({ all: true, filters: ownFilter }),
      );
      const out: Actual[] = [];
      for (const c of infos) {
        const kind = c.Labels?.[LABELS.kind];
        if (kind === undefined || !(SERVICE_KINDS as readonly string[]).includes(kind)) continue;
        out.push({
          id: c.Id,
          kind: kind as ServiceKind,
          image: normaliseImageId(c.ImageID),
          hash: c.Labels?.[LABELS.hash] ?? "",
          running: c.State === "running",
          createdAt: c.Created * 1000,
        });
      }
      return out;
    },

    async hasImage(image) {
      try {
        const info = await retrying("inspect", () => docker.getImage(image).inspect());
        return normaliseImageId(info.Id) === image;
      } catch (err) {
        // 404: not here. Anything else is no answer about the image, and fails the step.
        if ((err as { statusCode?: number }).statusCode === 404) return false;
        throw err;
      }
    },

    async create({ kind, spec, image, hash, secretEnv }) {
      // Not retried: a create is not about a dying container, and one that took effect
      // before its answer failed would be refused the second time (its name is taken).
      const c = await docker.createContainer({
        name: `agentd-${kind}-${hash.slice(0, 12)}`,
        ...containerOptions(spec, image, {
          env: { ...spec.env, ...(secretEnv ?? {}) },
          labels: {
            [LABELS.managed]: "true",
            [LABELS.kind]: kind,
            [LABELS.hash]: hash,
            [LABELS.worker]: o.worker,
          },
        }),
      });
      return c.id;
    },

    async start(id) {
      await retrying("start", () => docker.getContainer(id).start());
    },

    async stop(id, timeoutS) {
      try {
        await retrying("stop", () => docker.getContainer(id).stop({ t: timeoutS }));
      } catch (err) {
        // 304: already stopped; that is what was asked
        if ((err as { statusCode?: number }).statusCode !== 304) throw err;
      }
    },

    async remove(id) {
      try {
        await retrying("remove", () => docker.getContainer(id).remove({ force: true }));
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode !== 404) throw err;
      }
    },

    async logs(id, lines) {
      const buf = (await retrying("logs", () =>
        docker.getContainer(id).logs({ stdout: true, stderr: true, tail: lines, follow: false }),
      )) as unknown as Buffer;
      return demux(buf)
        .split("\n")
        .filter((l) => l !== "")
        .slice(-lines);
    },

    events(onEvent, onEnd): EventSubscription {
      let stream: NodeJS.ReadableStream | null = null;
      let closed = false;
      void docker.getEvents({ filters: { type: ["container"], label: ownFilter.label } }).then(
        (s) => {
          if (closed) {
            (s as unknown as { destroy?: () => void }).destroy?.();
            return;
          }
          stream = s;
          let rest = "";
          s.on("data", (chunk: Buffer) => {
            rest += chunk.toString("utf8");
            let nl = rest.indexOf("\n");
            while (nl >= 0) {
              const line = rest.slice(0, nl).trim();
              rest = rest.slice(nl + 1);
              nl = rest.indexOf("\n");
              if (line === "") continue;
              const e = parseEvent(line, o.worker);
              if (e !== null) onEvent(e);
            }
          });
          s.on("end", () => {
            if (!closed) onEnd();
          });
          s.on("error", (err) => {
            if (!closed) onEnd(err);
          });
        },
        (err: unknown) => {
          if (!closed) onEnd(err);
        },
      );
      return {
        close() {
          closed = true;
          (stream as unknown as { destroy?: () => void } | null)?.destroy?.();
        },
      };
    },

    async ping() {
      await docker.ping();
    },
  };
}

/** Podman may report an image id without the `sha256:` prefix; Docker always with it. */
export function normaliseImageId(id: string): string {
  return id.startsWith("sha256:") ? id : `sha256:${id}`;
}

/**
 * One event, if it is about one of this worker's containers. Podman 4.3 joins label filters
 * of the event stream with OR (listing joins them with AND): every event is checked here, so
 * another worker's (or another tool's) container dying is never taken for one of ours.
 */
function parseEvent(line: string, worker: string): DriverEvent | null {
  let e: {
    Type?: string;
    Action?: string;
    status?: string;
    id?: string;
    Actor?: { ID?: string; Attributes?: Record<string, string> };
  };
  try {
    e = JSON.parse(line);
  } catch {
    return null;
  }
  const attrs = e.Actor?.Attributes ?? {};
  if (attrs[LABELS.managed] !== "true" || attrs[LABELS.worker] !== worker) return null;
  const kind = attrs[LABELS.kind];
  if (kind === undefined || !(SERVICE_KINDS as readonly string[]).includes(kind)) return null;
  const raw = (e.Action ?? e.status ?? "").split(":")[0] ?? "";
  const action =
    (["start", "die", "stop", "kill", "destroy"] as const).find((a) => a === raw) ?? "other";
  const code = attrs.exitCode ?? attrs.containerExitCode;
  return {
    kind: kind as ServiceKind,
    id: e.Actor?.ID ?? e.id ?? "",
    action,
    exitCode: code === undefined || code === "" ? null : Number(code),
  };
}

/** Docker's multiplexed log stream (8-byte frame headers) as text; plain text as is. */
function demux(buf: Buffer): string {
  if (!Buffer.isBuffer(buf)) return String(buf);
  let out = "";
  let i = 0;
  while (i + 8 <= buf.length && (buf[i] === 1 || buf[i] === 2) && buf[i + 1] === 0) {
    const len = buf.readUInt32BE(i + 4);
    out += buf.subarray(i + 8, i + 8 + len).toString("utf8");
    i += 8 + len;
  }
  return i === 0 ? buf.toString("utf8") : out;
}

/**
 * What a container for `spec` is created with, but its name: command, environment, labels,
 * published ports, binds, restart policy "no" (the supervisor restarts, never the engine),
 * read-only root, memory, CPUs, user, stop timeout. The supervisor's benchmark creates its
 * baseline containers with the same options.
 */
export function containerOptions(
  spec: ServiceSpec,
  image: string,
  o: {
    readonly env: Readonly<Record<string, string>>;
    readonly labels: Readonly<Record<string, string>>;
  },
): Omit<Dockerode.ContainerCreateOptions, "name"> {
  const exposed: Record<string, object> = {};
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const p of spec.ports) {
    exposed[`${p.container}/tcp`] = {};
    if (p.host > 0) {
      bindings[`${p.container}/tcp`] = [{ HostIp: p.hostIp, HostPort: String(p.host) }];
    }
  }
  return {
    Image: image,
    Cmd: [...spec.command],
    Env: Object.entries(o.env).map(([k, v]) => `${k}=${v}`),
    Labels: { ...o.labels },
    ...(spec.user === null ? {} : { User: spec.user }),
    ExposedPorts: exposed,
    StopTimeout: spec.stopTimeoutS,
    HostConfig: {
      Binds: spec.volumes.map((v) => `${v.source}:${v.target}${v.readOnly ? ":ro" : ""}`),
      PortBindings: bindings,
      RestartPolicy: { Name: "no" },
      ReadonlyRootfs: spec.readOnlyRoot,
      ...(spec.memoryBytes === null ? {} : { Memory: spec.memoryBytes }),
      ...(spec.cpus === null ? {} : { NanoCpus: Math.round(spec.cpus * 1e9) }),
    },
  };
}
