/**
 * What bench/agent.ts sets up before it measures, every piece a real process, as in
 * test/e2e/agent-run.test.ts: a simulated pool (`agentd sim pool`, difficulty 2^-34 so that
 * every header is a share, a new job every 5 s), a control plane (`agentd cp init`, then
 * `agentd cp serve` on SQLite, rate limits off: everyone is 127.0.0.1), an owner registered
 * with its own key (`agentd cp owner add`), an enrollment token (`agentd cp token create`) and
 * an enrolled machine (`agentd enroll`), then the owner's first consent (seq 2: the baseline
 * revokes seq − 1, and a revocation names seq ≥ 1) posted through the owner API, which the
 * control plane publishes.
 *
 * The owner's documents are posted with `post()`: one keep-alive TLS 1.3 connection pinned to
 * the control plane's CA (the protocol's own client options), the body serialised and signed
 * before the clock starts, so the send time is as close to the request's arrival as this
 * process can see it.
 */
import type { KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { Agent, request } from "node:https";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { pinnedClientTlsOptions } from "../../control-plane/protocol/tls.ts";
import { generateEd25519KeyPair } from "../../lib/crypto/ed25519.ts";
import { writePublicKeyFile } from "../../lib/crypto/key-files.ts";
import { signConsent } from "../../policy-guard/sign.ts";
import { agentd } from "../../test/support/cli.ts";
import { serveCp } from "../cp/serve.ts";
import { type Child, startChild } from "../proxy-scale/procs.ts";
import { AGENTD, baseEnv } from "./spawn.ts";

/** 2^-34: every header meets the target at the proxy and at the pool (bench/proxy-scale.ts). */
export const DIFFICULTY = 2 ** -34;

export interface World {
  readonly pool: Child;
  readonly poolPort: number;
  cp: Child;
  readonly cpUrl: string;
  readonly caPem: string;
  readonly ownerKey: KeyObject;
  readonly ownerApiKey: string;
  readonly worker: string;
  readonly stateDir: string;
  /** The consent seq in force. */
  seq: number;
  /** POSTs JSON as the owner; resolves with the status and when the answer came. */
  post(path: string, body: string): Promise<Posted>;
  /** Signs the consent `seq` (allowing the pool, from 127.0.0.1/32), for `post`. */
  consentBody(seq: number): string;
  close(): void;
}

export interface Posted {
  readonly status: number;
  readonly text: string;
  /** performance.now() when the whole answer had been read. */
  readonly answeredAt: number;
  /** Whether the request went out on a connection already open. */
  readonly reusedSocket: boolean;
}

function cli(args: readonly string[], env: Record<string, string> = {}): Record<string, unknown> {
  const r = agentd(args, env);
  if (r.code !== 0) throw new Error(`agentd ${args.slice(0, 3).join(" ")}: ${r.code} ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

export async function startWorld(work: string): Promise<World> {
  const pool = await startChild(
    "sim pool",
    AGENTD,
    [
      "sim",
      "pool",
      "--listen",
      "127.0.0.1:0",
      "--difficulty",
      String(DIFFICULTY),
      "--job-interval",
      "5",
      "--tx-count",
      "0",
      "--log-level",
      "warn",
    ],
    baseEnv(),
  );
  const poolPort = pool.ready.port as number;
  const cpDir = join(work, "cp");
  const init = cli(["cp", "init", "--dir", cpDir, "--host", "127.0.0.1"]);
  const caFile = String(init.ca_file);
  const caPem = readFileSync(caFile, "utf8");
  const cp = await serveCp(cpDir, `sqlite:${join(cpDir, "cp.db")}`, { rateCaller: false });
  const cpUrl = String(cp.ready.url);
  const remote = ["--url", cpUrl, "--ca", caFile];
  const owner = generateEd25519KeyPair();
  writePublicKeyFile(join(work, "owner.pub"), owner.publicKey);
  const added = cli(
    ["cp", "owner", "add", "--owner-pub", join(work, "owner.pub"), "--json", ...remote],
    {
      AGENTD_CP_API_KEY: String(init.api_key),
    },
  );
  const ownerApiKey = String(added.api_key);
  const token = agentd(["cp", "token", "create", ...remote], { AGENTD_CP_API_KEY: ownerApiKey });
  if (token.code !== 0) throw new Error(`agentd cp token create: ${token.stderr}`);
  const stateDir = join(work, "machine");
  const enrolled = cli([
    "enroll",
    "--token",
    token.stdout.trim(),
    "--owner-pub",
    join(work, "owner.pub"),
    "--state-dir",
    stateDir,
    "--json",
  ]);
  const worker = String(enrolled.worker_id);

  const agent = new Agent({ ...pinnedClientTlsOptions(caPem), keepAlive: true, maxSockets: 1 });
  const post = (path: string, body: string) =>
    new Promise<Posted>((done, failed) => {
      const req = request(
        `${cpUrl}${path}`,
        {
          method: "POST",
          agent,
          headers: {
            authorization: `Bearer ${ownerApiKey}`,
            "content-type": "application/json",
            "content-length": String(Buffer.byteLength(body)),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () =>
            done({
              status: res.statusCode ?? 0,
              text: Buffer.concat(chunks).toString("utf8"),
              answeredAt: performance.now(),
              reusedSocket: req.reusedSocket,
            }),
          );
        },
      );
      req.on("error", failed);
      req.end(body);
    });
  const consentBody = (seq: number) => {
    const now = Math.floor(Date.now() / 1000);
    return JSON.stringify({
      consent: signConsent({
        ownerKey: owner.privateKey,
        worker,
        policyId: "bench-agent",
        seq,
        iat: now,
        exp: now + 7 * 86_400,
        rules: {
          upstreams: [{ url: `stratum+tcp://127.0.0.1:${poolPort}`, user: "owner.rig" }],
          networks: ["127.0.0.1/32"],
        },
      }),
    });
  };
  const world: World = {
    pool,
    poolPort,
    cp,
    cpUrl,
    caPem,
    ownerKey: owner.privateKey,
    ownerApiKey,
    worker,
    stateDir,
    seq: 2,
    post,
    consentBody,
    close: () => agent.destroy(),
  };
  const first = await post("/v1/policies", consentBody(2));
  if (first.status !== 200) throw new Error(`POST /v1/policies: ${first.status} ${first.text}`);
  return world;
}
