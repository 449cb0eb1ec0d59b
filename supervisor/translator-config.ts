import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { writeFileAtomic } from "../lib/fs/atomic.ts";
import type { Upstream } from "../policy-guard/documents.ts";

/**
 * The SRI translator's configuration, written by the supervisor itself from the owner's
 * consent (DOCUMENTS.md section 3: mining work may only go to the consent's `upstreams`,
 * "this includes … the pool configured in a supervised translator"). The translator speaks
 * SV2 upstream, so only an `sv2+tcp://host:port` upstream with its `authority_pubkey` can be
 * used; without one the translator does not run. Nothing else decides where it connects: the
 * spec cannot carry an upstream, and the file is rewritten before every start.
 */

export interface TranslatorUpstream {
  readonly host: string;
  readonly port: number;
  readonly authorityPubkey: string;
  readonly user: string;
}

/** The first of the consent's upstreams the translator can use, or null. */
export function translatorUpstream(upstreams: readonly Upstream[]): TranslatorUpstream | null {
  for (const u of upstreams) {
    const m = /^sv2\+tcp:\/\/(\[[^\]]+\]|[^:/]+):([0-9]{1,5})$/.exec(u.url);
    if (m === null || u.authority_pubkey === undefined) continue;
    return {
      host: (m[1] as string).replace(/^\[(.*)\]$/, "$1"),
      port: Number(m[2]),
      authorityPubkey: u.authority_pubkey,
      user: u.user,
    };
  }
  return null;
}

const q = (s: string) => JSON.stringify(s); // a TOML basic string is a JSON string here

/**
 * The configuration file's text (TOML), with the field names of SRI's translator
 * (sv2-apps `TranslatorConfig`): one `[[upstreams]]` entry, the consent's; SV1 for the ASICs
 * on `downstream_port`; the monitoring API on loopback for the health probe.
 */
export function translatorConfig(
  u: TranslatorUpstream,
  o: { readonly downstreamPort?: number; readonly monitoringPort?: number } = {},
): string {
  return [
    "# Written by agentd from the owner's consent; any edit is overwritten.",
    `downstream_address = "0.0.0.0"`,
    `downstream_port = ${o.downstreamPort ?? 34255}`,
    "max_supported_version = 2",
    "min_supported_version = 2",
    "downstream_extranonce2_size = 4",
    "aggregate_channels = false",
    ...(o.monitoringPort === undefined
      ? []
      : [`monitoring_address = "127.0.0.1:${o.monitoringPort}"`]),
    "",
    "[downstream_difficulty_config]",
    "min_individual_miner_hashrate = 10_000_000_000_000.0",
    "shares_per_minute = 6.0",
    "enable_vardiff = true",
    "job_keepalive_interval_secs = 60",
    "",
    "[[upstreams]]",
    `address = ${q(u.host)}`,
    `port = ${u.port}`,
    `authority_pubkey = ${q(u.authorityPubkey)}`,
    `user_identity = ${q(u.user)}`,
    "",
  ].join("\n");
}

export function writeTranslatorConfig(
  path: string,
  u: TranslatorUpstream,
  o: { readonly downstreamPort?: number; readonly monitoringPort?: number } = {},
): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  writeFileAtomic(path, translatorConfig(u, o), { mode: 0o644 });
}
