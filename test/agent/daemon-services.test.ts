import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, describe, expect, inject, it } from "vitest";
import type { RunningAgent } from "../../agent/daemon.ts";
import { localApiRequest } from "../../agent/local-api.ts";
import { systemClock } from "../../lib/clock.ts";
import { backgroundTimers } from "../../lib/timers.ts";
import { signRevocation } from "../../policy-guard/sign.ts";
import { dockerDriver } from "../../supervisor/docker-driver.ts";
import { LABELS } from "../../supervisor/spec.ts";
import { FACTS, until, useServedCp } from "../control-plane/protocol/client-fixture.ts";
import { buildNodeImage, dockerClient, podmanAvailable, testPodman } from "../support/podman.ts";
import { enrolledMachine } from "./daemon-fixture.ts";

/**
 * `agentd run` supervising a service as a native process (supervisor.driver = process): the
 * simulated bitcoind (sim/services/bitcoind.ts, real JSON-RPC with cookie auth) runs exactly
 * while the owner's consent allows its image id — here the SHA-256 of the node executable that
 * runs it — is restarted after a SIGKILL, is left alone by a mining denial, reports its health
 * and sync to heartbeats and eligibility, and stops when the consent is revoked.
 */

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const ROOT = resolve(import.meta.dirname, "../..");
const NODE = process.execPath;
const NODE_ID = `sha256:${createHash("sha256").update(readFileSync(NODE)).digest("hex")}`;

function freePort(): Promise<number> {
  return new Promise((r) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const a = s.address() as { port: number };
      s.close(() => r(a.port));
    });
  });
}

interface Services {
  services: {
    kind: string;
    allowed: boolean;
    state: string;
    restarts: number;
    healthy: boolean;
    hold: string | null;
  }[];
  /** The supervisor's driver (the local API's field keeps its first name). */
  driver: { name: string; up: boolean };
}

describe("agentd run supervising services", () => {
  const serve = useServedCp();

  it("runs bitcoind while the consent allows its image, restarts it, ignores mining denials, stops it at the revocation", async () => {
    const cp = await serve();
    const data = mkdtempSync(join(tmpdir(), "agentd-services-"));
    cleanups.push(() => rmSync(data, { recursive: true, force: true }));
    const port = await freePort();
    const btc = join(data, "bitcoind");
    const servicesFile = join(data, "services.toml");
    writeFileSync(
      servicesFile,
      [
        "[bitcoind]",
        `command = [${JSON.stringify(NODE)}, "--disable-warning=ExperimentalWarning", ${JSON.stringify(join(ROOT, "sim/services/bitcoind.ts"))}, "--datadir", ${JSON.stringify(btc)}, "--chain", "regtest", "--rpcport", "${port}"]`,
        `volumes = [{ source = ${JSON.stringify(btc)}, target = "/data" }]`,
        "ports = []",
        `health = { type = "bitcoind-rpc", port = ${port}, cookie_file = ${JSON.stringify(join(btc, "regtest", ".cookie"))} }`,
        "restart = { min_ms = 100, max_ms = 1000 }",
        "",
      ].join("\n"),
    );
    const m = await enrolledMachine(cp, {
      config: {
        "supervisor.driver": "process",
        "supervisor.data_dir": data,
        "supervisor.services_file": servicesFile,
        "metrics.listen": "127.0.0.1:0",
      },
    });
    const agent: RunningAgent = await m.start(FACTS, { clock: systemClock, heartbeatIntervalS: 1 });
    cleanups.push(() => agent.close());
    const services = async () =>
      (await localApiRequest(agent.apiSocket, "GET", "/v1/services")).json as unknown as Services;
    // polled gently: the local API rate-limits (50/s)
    const bitcoind = async () => {
      await new Promise((r) => setTimeout(r, 50));
      return (await services()).services.find((s) => s.kind === "bitcoind");
    };
    expect((await services()).driver).toEqual({ name: "processes", up: true });
    expect(await bitcoind()).toMatchObject({ allowed: false, state: "absent" });

    // allowed by a consent: started, healthy (JSON-RPC with the cookie), synced
    await m.ownerApi.postConsent(m.consent(1, [], { services: { bitcoind: NODE_ID } }));
    await until(
      async () => (await bitcoind())?.state === "running",
      "bitcoind running and healthy",
      20_000,
    );
    const status = agent.status() as { state: string };
    expect(status.state).not.toBe("REVOKED");
    const elig = (await localApiRequest(agent.apiSocket, "GET", "/v1/eligibility")).json;
    await until(
      async () =>
        (await localApiRequest(agent.apiSocket, "GET", "/v1/eligibility")).json.bitcoind ===
        "synced",
      "bitcoind synced for eligibility",
    );
    expect(elig.lightning).toBe("unknown");

    // SIGKILL: restarted by the supervisor
    const pidOf = () => {
      const out = readFileSync(join(m.stateDir, "services", "processes.json"), "utf8");
      const rec = (
        JSON.parse(out) as { data: { records?: { kind: string; pid?: number | null }[] } }
      ).data;
      return (rec.records ?? []).find((r) => r.kind === "bitcoind")?.pid ?? null;
    };
    const first = pidOf();
    expect(first).toBeGreaterThan(0);
    process.kill(first as number, "SIGKILL");
    await until(
      async () => {
        const p = pidOf();
        return p !== null && p !== first && (await bitcoind())?.state === "running";
      },
      "restarted after SIGKILL",
      20_000,
    );
    expect((await bitcoind())?.restarts).toBeGreaterThanOrEqual(1);
    const metrics = await (await fetch(`http://127.0.0.1:${agent.metrics?.port}/metrics`)).text();
    expect(metrics).toMatch(
      /agentd_service_restarts_total\{service="bitcoind",reason="exited"\} [1-9]/,
    );
    expect(metrics).toMatch(
      /agentd_service_events_total\{service="bitcoind",event="exited"\} [1-9]/,
    );

    // heartbeats carry the service's health
    await until(async () => {
      const hbs = await cp.serving.store.listHeartbeats(m.enrolled.worker_id);
      return hbs.some((h) => {
        const p = JSON.parse(Buffer.from(h.jws.split(".")[1] ?? "", "base64url").toString()) as {
          services: Record<string, string>;
        };
        return p.services.bitcoind === "running";
      });
    }, "a heartbeat saying bitcoind runs");

    // the operator: a stop holds (not restarted), a start lifts it, logs are kept
    const act = (a: string) =>
      localApiRequest(agent.apiSocket, "POST", `/v1/services/bitcoind/${a}`, {});
    expect((await act("stop")).status).toBe(200);
    await until(async () => (await bitcoind())?.state === "stopped", "stopped by the operator");
    await new Promise((r) => setTimeout(r, 600));
    expect(await bitcoind()).toMatchObject({ state: "stopped", hold: "manual" });
    expect((await act("start")).status).toBe(200);
    await until(
      async () => (await bitcoind())?.state === "running",
      "started by the operator",
      20_000,
    );
    const logs = await localApiRequest(agent.apiSocket, "GET", "/v1/services/bitcoind/logs?n=20");
    expect((logs.json.lines as string[]).some((l) => l.includes('"ready":true'))).toBe(true);

    // a mining denial leaves services alone: the operator's pause, and a consent whose schedule
    // excludes now (mining denied for rules.schedule_outside), still allowing bitcoind
    const pidBefore = pidOf();
    await localApiRequest(agent.apiSocket, "POST", "/v1/mining/pause", {});
    const hour = (new Date().getUTCHours() + 3) % 24;
    const hh = String(hour).padStart(2, "0");
    const later = await m.ownerApi.postConsent(
      m.consent(2, [], {
        services: { bitcoind: NODE_ID },
        schedule: [
          {
            days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            start: `${hh}:00`,
            end: `${hh}:30`,
            tz: "UTC",
          },
        ],
      }),
    );
    await until(
      () => (agent.status() as { policy: { version: number } }).policy.version === later.version,
      "consent 2 in force",
    );
    const st = agent.status() as { policy_decision: { mining: boolean; reasons: string[] } };
    expect(st.policy_decision).toMatchObject({ mining: false });
    expect(st.policy_decision.reasons).toContain("rules.schedule_outside");
    await new Promise((r) => setTimeout(r, 800));
    expect((await bitcoind())?.state).toBe("running");
    expect(pidOf()).toBe(pidBefore);

    // the owner revokes: services are denied too, bitcoind stops
    await m.ownerApi.postRevocation(
      m.enrolled.worker_id,
      signRevocation({
        ownerKey: m.owner.privateKey,
        worker: m.enrolled.worker_id,
        throughSeq: 2,
        iat: Math.floor(Date.now() / 1000),
      }),
    );
    await until(
      async () => (await bitcoind())?.state === "absent",
      "bitcoind stopped and removed",
      20_000,
    );
    const stillThere = (() => {
      try {
        process.kill(first as number, 0);
        return true;
      } catch {
        return false;
      }
    })();
    expect(stillThere).toBe(false);
  }, 60_000);

  it.skipIf(!podmanAvailable(inject("agentdPodman")).available)(
    "on the Docker driver (Podman): the allowed image runs, a schedule denial leaves it running, the revocation removes it",
    async () => {
      const podman = await testPodman();
      const docker = dockerClient(podman);
      const image = await buildNodeImage(podman);
      const cp = await serve();
      const data = mkdtempSync(join(tmpdir(), "agentd-services-"));
      cleanups.push(() => rmSync(data, { recursive: true, force: true }));
      const port = await freePort();
      const btc = join(data, "bitcoind");
      const servicesFile = join(data, "services.toml");
      writeFileSync(
        servicesFile,
        [
          "[bitcoind]",
          'command = ["/sim/services/bitcoind.ts", "--datadir", "/data", "--rpcbind", "0.0.0.0", "--chain", "regtest"]',
          `ports = [{ host = ${port}, container = 18443 }]`,
          `health = { type = "bitcoind-rpc", port = ${port}, cookie_file = ${JSON.stringify(join(btc, "regtest", ".cookie"))} }`,
          "stop_timeout_s = 5",
          "",
        ].join("\n"),
      );
      const m = await enrolledMachine(cp, {
        config: { "supervisor.data_dir": data, "supervisor.services_file": servicesFile },
      });
      const agent = await m.start(FACTS, {
        clock: systemClock,
        serviceDriver: dockerDriver(docker, {
          worker: m.enrolled.worker_id,
          timers: backgroundTimers,
        }),
      });
      cleanups.push(() => agent.close());
      const mine = async () =>
        docker.listContainers({
          all: true,
          filters: {
            label: [`${LABELS.kind}=bitcoind`, `${LABELS.worker}=${m.enrolled.worker_id}`],
          },
        });
      const running = async () => {
        await new Promise((r) => setTimeout(r, 50));
        const s = (await localApiRequest(agent.apiSocket, "GET", "/v1/services"))
          .json as unknown as Services;
        return s.services.find((x) => x.kind === "bitcoind")?.state === "running";
      };
      await m.ownerApi.postConsent(m.consent(1, [], { services: { bitcoind: image } }));
      await until(running, "the container running and healthy", 30_000);
      const id = (await mine()).find((c) => c.State === "running")?.Id;
      expect(id).toBeDefined();
      // mining denied by the schedule; services untouched (same container, still running)
      const hh = String((new Date().getUTCHours() + 3) % 24).padStart(2, "0");
      await m.ownerApi.postConsent(
        m.consent(2, [], {
          services: { bitcoind: image },
          schedule: [
            {
              days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
              start: `${hh}:00`,
              end: `${hh}:30`,
              tz: "UTC",
            },
          ],
        }),
      );
      await until(
        () =>
          (
            (agent.status() as { policy_decision: { reasons: string[] } }).policy_decision
              .reasons ?? []
          ).includes("rules.schedule_outside"),
        "the schedule denial",
      );
      await new Promise((r) => setTimeout(r, 1_000));
      expect((await mine()).filter((c) => c.State === "running").map((c) => c.Id)).toEqual([id]);
      // the revocation: removed
      await m.ownerApi.postRevocation(
        m.enrolled.worker_id,
        signRevocation({
          ownerKey: m.owner.privateKey,
          worker: m.enrolled.worker_id,
          throughSeq: 2,
          iat: Math.floor(Date.now() / 1000),
        }),
      );
      await until(
        async () => (await mine()).every((c) => c.Id !== id),
        "the container removed",
        30_000,
      );
    },
    90_000,
  );
});
