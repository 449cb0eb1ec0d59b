/**
 * The services bench/supervisor.ts supervises: the simulators of sim/services in the image
 * test/support/podman.ts builds (`buildNodeImage`), described as a services file
 * (supervisor/specs-file.ts) over the built-in specs (supervisor/defaults.ts). What the
 * defaults say is kept — the dependencies (template provider, lnd and cln wait for bitcoind),
 * the volumes (each kind's data directory; lnd and cln read bitcoind's read-only), the
 * read-only root, bitcoind's 4 GiB memory limit, the stop timeouts, the crash-loop rule (5
 * failures in 10 minutes) and the backoff's maximum (60 s). Set here: the commands (the
 * simulators', regtest), the published ports (free ones on 127.0.0.1), the probes on them
 * (bitcoind's JSON-RPC with its cookie, lnd's REST with its macaroon over TLS, cln's JSON-RPC on
 * its unix socket, TCP for the template provider and the translator) and the restart minimum.
 */
import { mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import type { Upstream } from "../../policy-guard/documents.ts";
import type { ServiceKind } from "../../supervisor/spec.ts";

export type Lightning = "lnd" | "cln";

/** One Lightning node at a time: bitcoind, the template provider, the translator, and it. */
export function stackKinds(lightning: Lightning): ServiceKind[] {
  return ["bitcoind", "template-provider", "translator", lightning];
}

/** The consent's upstream: the translator runs only with an sv2+tcp one with its key. */
export const UPSTREAMS: readonly Upstream[] = [
  {
    url: "sv2+tcp://127.0.0.1:34254",
    user: "owner1.farm",
    authority_pubkey: "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72",
  },
];

/** Host ports of the services that publish one (cln answers on its unix socket). */
export interface Ports {
  readonly bitcoind: number;
  readonly "template-provider": number;
  readonly translator: number;
  readonly lnd: number;
}

/** The data directories a services file over `dataDir` mounts (world-writable, as in tests). */
export function makeDataDirs(dataDir: string): void {
  for (const d of ["bitcoind", "template-provider", "lnd", "cln", join("translator", "config")]) {
    mkdirSync(join(dataDir, d), { recursive: true, mode: 0o777 });
  }
}

/** The services file's content for the simulators, with this restart minimum. */
export function servicesFile(
  dataDir: string,
  ports: Ports,
  minMs: number,
): Record<string, unknown> {
  const restart = { min_ms: minMs };
  return {
    bitcoind: {
      command: [
        "/sim/services/bitcoind.ts",
        ...["--datadir", "/data", "--rpcbind", "0.0.0.0", "--chain", "regtest"],
      ],
      ports: [{ host: ports.bitcoind, container: 18443 }],
      health: {
        type: "bitcoind-rpc",
        port: ports.bitcoind,
        cookie_file: join(dataDir, "bitcoind", "regtest", ".cookie"),
      },
      restart,
    },
    "template-provider": {
      command: [
        "/sim/services/template-provider.ts",
        ...["--port", "8442", "--bind", "0.0.0.0", "--datadir", "/data"],
      ],
      ports: [{ host: ports["template-provider"], container: 8442 }],
      health: { type: "tcp", port: ports["template-provider"] },
      restart,
    },
    translator: {
      command: ["/sim/services/translator.ts", "-c", "/config/translator.toml"],
      ports: [{ host: ports.translator, container: 34255 }],
      health: { type: "tcp", port: ports.translator },
      restart,
    },
    lnd: {
      command: [
        "/sim/services/lnd.ts",
        ...["--lnddir", "/data", "--network", "regtest", "--restlisten", "0.0.0.0:8080"],
      ],
      ports: [{ host: ports.lnd, container: 8080 }],
      health: {
        type: "lnd-rest",
        port: ports.lnd,
        macaroon_file: join(
          dataDir,
          "lnd",
          "data",
          "chain",
          "bitcoin",
          "regtest",
          "readonly.macaroon",
        ),
        tls: true,
      },
      restart,
    },
    cln: {
      command: ["/sim/services/cln.ts", "--lightning-dir", "/data", "--network", "regtest"],
      ports: [],
      health: { type: "cln-rpc", socket: join(dataDir, "cln", "regtest", "lightning-rpc") },
      restart,
    },
  };
}

/** `n` distinct TCP ports free on 127.0.0.1 right now. */
export async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) {
    const p = await new Promise<number>((r) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const a = s.address() as { port: number };
        s.close(() => r(a.port));
      });
    });
    if (!out.includes(p)) out.push(p);
  }
  return out;
}
