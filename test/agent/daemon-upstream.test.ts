import { createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { HeartbeatPayload } from "../../control-plane/protocol/schemas/heartbeat.ts";
import { createLogger } from "../../lib/log/logger.ts";
import { until, useServedCp } from "../control-plane/protocol/client-fixture.ts";
import { enrolledMachine } from "./daemon-fixture.ts";

/**
 * `agentd run` whose upstream refuses connections (the devnet's `--pool
 * stratum+tcp://127.0.0.1:1`), against the real control plane: the local status and the
 * signed heartbeat the control plane stored both say "unreachable since …, ECONNREFUSED", and
 * the agent's log says it once at warn, however often the pool is dialled again.
 */

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A port nothing listens on (a server opened then closed). */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

interface UpstreamStatus {
  url: string | null;
  user: string | null;
  state: string;
  since: number;
  last_error: string | null;
  attempts: number;
  upstreams: unknown[];
}

describe("agentd run with an unreachable upstream", () => {
  const serve = useServedCp();

  it("status and heartbeat say unreachable since the first failure, with ECONNREFUSED; one warning", async () => {
    const cp = await serve();
    const m = await enrolledMachine(cp);
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({
      level: "warn",
      destination: { write: (s: string) => void lines.push(JSON.parse(s)) },
    });
    const agent = await m.start(undefined, { logger, heartbeatIntervalS: 1 });
    cleanups.push(() => agent.close());
    const url = `stratum+tcp://127.0.0.1:${await deadPort()}`;
    await m.ownerApi.postConsent(
      m.consent(1, [], {
        upstreams: [{ url, user: "o.rig" }],
        networks: ["127.0.0.1/32"],
      }),
    );
    const upstream = () => agent.status().upstream as UpstreamStatus;
    // Dialled again after a backoff (the clock stands still: no "still unreachable" is due).
    await until(() => upstream().attempts >= 2, "a second refused attempt");
    const since = cp.clock.now();
    expect(upstream()).toMatchObject({
      url,
      user: "o.rig",
      state: "unreachable",
      since,
      last_error: "ECONNREFUSED",
    });
    expect(upstream().upstreams).toHaveLength(1);
    // Every field the status had is still there.
    expect(Object.keys(agent.status())).toEqual(
      expect.arrayContaining(["state", "decision", "miners", "telemetry", "stratum", "upstream"]),
    );
    const warned = lines.filter((l) => l.msg === "upstream unreachable");
    expect(warned).toEqual([
      expect.objectContaining({
        level: "warn",
        component: "stratum",
        url,
        error: "ECONNREFUSED",
      }),
    ]);
    expect(lines.filter((l) => String(l.msg).includes("upstream"))).toHaveLength(1);

    // The heartbeat, signed, verified and stored by the control plane, carries it too.
    const stored = async () =>
      (await cp.serving.store.listHeartbeats(m.enrolled.worker_id)).map(
        (h) =>
          JSON.parse(
            Buffer.from(h.jws.split(".")[1] ?? "", "base64url").toString(),
          ) as HeartbeatPayload,
      );
    await until(
      async () => (await stored()).some((p) => p.telemetry.upstream?.state === "unreachable"),
      "a heartbeat saying the upstream is unreachable",
    );
    const beat = (await stored()).find((p) => p.telemetry.upstream?.state === "unreachable");
    expect(beat?.telemetry.upstream).toEqual({
      url,
      state: "unreachable",
      since: Math.floor(since / 1000),
      last_error: "ECONNREFUSED",
    });
  });
});
