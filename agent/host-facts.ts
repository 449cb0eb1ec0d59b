import { createHash, createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { arch, cpus, networkInterfaces, release, totalmem, type } from "node:os";
import type { HostFacts } from "../control-plane/protocol/schemas/attestation.ts";
import { fail } from "../lib/errors.ts";

/**
 * What the agent says about its host at enrollment and attestation (docs/protocol.md,
 * "Attestation"): self-reported, so advisory — a machine that lies about itself can, and the
 * control plane says so. The machine id is sent only hashed; it is what tells a cloned key
 * apart (the same key from another machine id is quarantined).
 */

export interface HostFactSources {
  /** Default /etc/machine-id (systemd), then /var/lib/dbus/machine-id. */
  readonly machineIdPaths?: readonly string[];
  /** Default /proc/stat (its `btime` line). */
  readonly procStatPath?: string;
  /** The file whose SHA-256 identifies the running agent (default: see agentBinaryPath). */
  readonly binaryPath?: string;
  readonly agentVersion: string;
  /** The key the MACs are HMAC'd under (the worker id); without one, no MACs are reported. */
  readonly macKey?: string;
  /** The running agent's hash, when already known (it does not change while running). */
  readonly binarySha256?: string;
}

const sha256File = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

/**
 * The running agent's file: the single executable itself when agentd runs as one, otherwise
 * the entry script (a checkout run through ./bin/agentd).
 */
export function agentBinaryPath(): string {
  const script = process.argv[1];
  const sea = /(^|\/)agentd$/.test(process.execPath);
  return sea || script === undefined ? process.execPath : script;
}

/**
 * Collected afresh at every attestation (a machine id that changes under a running agent is a
 * cloned disk image booted elsewhere, and must be seen): the machine id, OS, boot time, CPU,
 * memory and hashed MACs come from the kernel (node:os, /proc) each time.
 */
export function collectHostFacts(s: HostFactSources): HostFacts {
  const cpuList = cpus();
  const macs = s.macKey === undefined ? [] : hashedMacs(s.macKey);
  return {
    machine_id_sha256: machineIdSha256(
      s.machineIdPaths ?? ["/etc/machine-id", "/var/lib/dbus/machine-id"],
    ),
    binary_sha256: s.binarySha256 ?? sha256File(s.binaryPath ?? agentBinaryPath()),
    os: `${type()} ${release()} ${arch()}`.slice(0, 128),
    boot_time: bootTime(s.procStatPath ?? "/proc/stat"),
    agent_version: s.agentVersion,
    ...(cpuList.length === 0
      ? {}
      : {
          cpu: {
            model: (cpuList[0]?.model.trim() || "unknown").slice(0, 128),
            cores: cpuList.length,
          },
        }),
    memory_bytes: totalmem(),
    ...(macs.length === 0 ? {} : { macs_sha256: macs }),
  };
}

/** The SHA-256 of the running agent's file (hashed once: it does not change while running). */
export function agentBinarySha256(path = agentBinaryPath()): string {
  return sha256File(path);
}

function hashedMacs(key: string): string[] {
  const out = new Set<string>();
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal || a.mac === "00:00:00:00:00:00") continue;
      out.add(createHmac("sha256", key).update(a.mac.toLowerCase()).digest("hex"));
    }
  }
  return [...out].sort().slice(0, 64);
}

function machineIdSha256(paths: readonly string[]): string {
  for (const path of paths) {
    let text: string;
    try {
      text = readFileSync(path, "utf8").trim();
    } catch {
      continue;
    }
    if (/^[0-9a-f]{32}$/.test(text)) {
      return createHash("sha256").update(text, "utf8").digest("hex");
    }
    throw fail("AGENTD_E_IO", `${path} does not hold a machine id`, { path });
  }
  throw fail("AGENTD_E_IO", `no machine id found (${paths.join(", ")})`, { path: paths[0] ?? "" });
}

function bootTime(procStat: string): number {
  let text: string;
  try {
    text = readFileSync(procStat, "utf8");
  } catch (err) {
    throw fail("AGENTD_E_IO", `cannot read ${procStat}`, { path: procStat }, err);
  }
  const m = /^btime (\d+)$/m.exec(text);
  if (m === null) throw fail("AGENTD_E_IO", `${procStat} has no btime line`, { path: procStat });
  return Number(m[1]);
}
