import { join } from "node:path";
import type { RestartSpec, ServiceKind, ServiceSpec } from "./spec.ts";

/**
 * Built-in specs for the five kinds (DOCUMENTS.md section 3, `rules.services`), with each
 * service's usual ports and probes. Every service keeps its data under
 * `<dataDir>/<kind>` (mounted at /data); lnd and cln read bitcoind's cookie from its data
 * directory (mounted read-only at /bitcoind), the translator its configuration, which the
 * supervisor writes from the consent's upstreams (translator-config.ts), from /config. A
 * services file (specs-file.ts) overrides any of it per kind.
 */

export const DEFAULT_RESTART: RestartSpec = Object.freeze({
  minMs: 1_000,
  maxMs: 60_000,
  crashloopFailures: 5,
  crashloopWindowMs: 10 * 60_000,
});

export function defaultSpecs(dataDir: string): Readonly<Record<ServiceKind, ServiceSpec>> {
  const data = (kind: string) => ({
    source: join(dataDir, kind),
    target: "/data",
    readOnly: false,
  });
  const bitcoindData = { source: join(dataDir, "bitcoind"), target: "/bitcoind", readOnly: true };
  const local = (port: number) => ({ hostIp: "127.0.0.1", host: port, container: port });
  const base = {
    image: null,
    env: {},
    user: null,
    memoryBytes: null,
    cpus: null,
    readOnlyRoot: true,
    restart: DEFAULT_RESTART,
    stopTimeoutS: 30,
  };
  const specs: Record<ServiceKind, ServiceSpec> = {
    bitcoind: {
      ...base,
      kind: "bitcoind",
      command: [
        "bitcoind",
        "-datadir=/data",
        "-server=1",
        "-rpcbind=0.0.0.0",
        "-rpcallowip=0.0.0.0/0",
      ],
      volumes: [data("bitcoind")],
      ports: [local(8332), { hostIp: "0.0.0.0", host: 8333, container: 8333 }],
      memoryBytes: 4 * 1024 ** 3,
      health: {
        type: "bitcoind-rpc",
        port: 8332,
        cookieFile: join(dataDir, "bitcoind", ".cookie"),
      },
      dependsOn: [],
      stopTimeoutS: 600, // bitcoind flushes its chainstate on shutdown
    },
    "template-provider": {
      ...base,
      kind: "template-provider",
      command: ["bitcoind", "-datadir=/data", "-sv2", "-sv2port=8442", "-sv2bind=0.0.0.0"],
      volumes: [data("template-provider")],
      ports: [local(8442)],
      health: { type: "tcp", port: 8442 },
      dependsOn: ["bitcoind"],
    },
    translator: {
      ...base,
      kind: "translator",
      command: ["translator_sv2", "-c", "/config/translator.toml"],
      volumes: [
        { source: join(dataDir, "translator", "config"), target: "/config", readOnly: true },
      ],
      ports: [{ hostIp: "0.0.0.0", host: 34255, container: 34255 }],
      health: { type: "tcp", port: 34255 },
      dependsOn: [],
    },
    lnd: {
      ...base,
      kind: "lnd",
      command: [
        "lnd",
        "--lnddir=/data",
        "--bitcoin.active",
        "--bitcoin.mainnet",
        "--bitcoin.node=bitcoind",
        "--bitcoind.rpccookie=/bitcoind/.cookie",
        "--restlisten=0.0.0.0:8080",
      ],
      volumes: [data("lnd"), bitcoindData],
      ports: [local(8080), { hostIp: "0.0.0.0", host: 9735, container: 9735 }],
      health: {
        type: "lnd-rest",
        port: 8080,
        macaroonFile: join(
          dataDir,
          "lnd",
          "data",
          "chain",
          "bitcoin",
          "mainnet",
          "readonly.macaroon",
        ),
        tls: true,
      },
      dependsOn: ["bitcoind"],
    },
    cln: {
      ...base,
      kind: "cln",
      command: [
        "lightningd",
        "--lightning-dir=/data",
        "--network=bitcoin",
        "--bitcoin-datadir=/bitcoind",
      ],
      volumes: [data("cln"), bitcoindData],
      ports: [{ hostIp: "0.0.0.0", host: 9735, container: 9735 }],
      health: { type: "cln-rpc", socket: join(dataDir, "cln", "bitcoin", "lightning-rpc") },
      dependsOn: ["bitcoind"],
    },
  };
  return Object.freeze(specs);
}
