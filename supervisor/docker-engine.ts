import type Dockerode from "dockerode";
import type { EngineEvent, EventSubscription, ServiceEngine } from "./engine.ts";
import type { Actual } from "./plan.ts";
import { LABELS, SERVICE_KINDS, type ServiceKind } from "./spec.ts";

/**
 * The Docker Engine API through an injected dockerode client (a Docker or Podman socket:
 * docker.host, DOCKER_HOST or /var/run/docker.sock). Every container agentd creates carries
 * its labels (spec.ts LABELS), and everything here lists and watches by those labels only:
 * a container without them is invisible, so it is never stopped, restarted or removed. The
 * engine's own restart policy is "no": the supervisor decides restarts.
 */

export function dockerEngine(
  docker: Dockerode,
  o: { readonly worker: string; readonly name?: string },
): ServiceEngine {
  const managed = `${LABELS.managed}=true`;
  const ownFilter = { label: [managed, `${LABELS.worker}=${o.worker}`] };

  return {
    name: o.name ?? "docker",

    async list(): Promise<Actual[]> {
      const infos = await docker.listContainers({ all: true, filters: ownFilter });
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
        const info = await docker.getImage(image).inspect();
        return normaliseImageId(info.Id) === image;
      } catch {
        return false;
      }
    },

    async create({ kind, spec, image, hash, secretEnv }) {
      const exposed: Record<string, object> = {};
      const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
      for (const p of spec.ports) {
        exposed[`${p.container}/tcp`] = {};
        if (p.host > 0) {
          bindings[`${p.container}/tcp`] = [{ HostIp: p.hostIp, HostPort: String(p.host) }];
        }
      }
      const env = { ...spec.env, ...(secretEnv ?? {}) };
      const c = await docker.createContainer({
        name: `agentd-${kind}-${hash.slice(0, 12)}`,
        Image: image,
        Cmd: [...spec.command],
        Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
        Labels: {
          [LABELS.managed]: "true",
          [LABELS.kind]: kind,
          [LABELS.hash]: hash,
          [LABELS.worker]: o.worker,
        },
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
      });
      return c.id;
    },

    async start(id) {
      await docker.getContainer(id).start();
    },

    async stop(id, timeoutS) {
      try {
        await docker.getContainer(id).stop({ t: timeoutS });
      } catch (err) {
        // 304: already stopped; that is what was asked
        if ((err as { statusCode?: number }).statusCode !== 304) throw err;
      }
    },

    async remove(id) {
      try {
        await docker.getContainer(id).remove({ force: true });
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode !== 404) throw err;
      }
    },

    async logs(id, lines) {
      const buf = (await docker.getContainer(id).logs({
        stdout: true,
        stderr: true,
        tail: lines,
        follow: false,
      })) as unknown as Buffer;
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
function parseEvent(line: string, worker: string): EngineEvent | null {
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
