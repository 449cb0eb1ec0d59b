import {
  AGENT_VERSION,
  base64urlBytes,
  closed,
  frozen,
  root,
  SAFE_COUNT,
  SHA256_HEX,
  THUMBPRINT,
  text,
  UNIX_TIME,
} from "./common.ts";

/**
 * Attestation (`agentd-attestation+jwt`, signed by the machine key): the agent's answer to a
 * challenge, with facts about its host. ADVISORY: the facts are self-reported by software the
 * machine's owner controls; they detect clones and unexpected binaries, they prove nothing.
 */

export interface HostFacts {
  /** sha256 hex of /etc/machine-id (never the id itself). */
  readonly machine_id_sha256: string;
  /** sha256 hex of the running agent binary. */
  readonly binary_sha256: string;
  readonly os: string;
  /** Unix seconds of the last boot. */
  readonly boot_time: number;
  readonly agent_version: string;
  /** Optional (agents before 0.2 sent none): the CPU model and its logical core count. */
  readonly cpu?: { readonly model: string; readonly cores: number };
  /** Optional: total memory in bytes. */
  readonly memory_bytes?: number;
  /**
   * Optional: the network interfaces' MAC addresses, each HMAC-SHA256'd under the worker id
   * (never the MACs themselves; keyed, because 48-bit MACs with known vendor prefixes are
   * easy to brute-force from a plain hash), sorted.
   */
  readonly macs_sha256?: readonly string[];
}

export interface AttestationPayload {
  readonly v: 1;
  readonly worker: string;
  readonly challenge: string;
  readonly iat: number;
  readonly facts: HostFacts;
}

export const CHALLENGE = base64urlBytes(32);

export const HOST_FACTS = closed(
  {
    machine_id_sha256: SHA256_HEX,
    binary_sha256: SHA256_HEX,
    os: text(128),
    boot_time: UNIX_TIME,
    agent_version: AGENT_VERSION,
    cpu: closed({ model: text(128), cores: { type: "integer", minimum: 1, maximum: 65536 } }),
    memory_bytes: SAFE_COUNT,
    macs_sha256: { type: "array", maxItems: 64, uniqueItems: true, items: SHA256_HEX },
  },
  ["machine_id_sha256", "binary_sha256", "os", "boot_time", "agent_version"],
);

export const attestationSchema = frozen(
  root("attestation", "Attestation payload (agentd-attestation+jwt), advisory", {
    ...closed({
      v: { const: 1 },
      worker: THUMBPRINT,
      challenge: CHALLENGE,
      iat: UNIX_TIME,
      facts: HOST_FACTS,
    }),
  }),
);
