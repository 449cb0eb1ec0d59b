import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { fail } from "../../lib/errors.ts";
import { parseHostPort } from "../../lib/http/host-port.ts";
import { createLogger, type LogLevel } from "../../lib/log/logger.ts";
import { backgroundTimers } from "../../lib/timers.ts";
import { type CapturedReply, captureMiner } from "../../plugins/capture.ts";
import { DEFAULT_CREDENTIALS, loadCredentials } from "../../plugins/credentials.ts";
import {
  DEFAULT_LIMITS,
  FAMILIES,
  type Family,
  type Identity,
  type Reading,
} from "../../plugins/driver.ts";
import { DriverHost } from "../../plugins/host/launcher.ts";
import { globalsOf, loadCliConfig } from "../config-context.ts";
import { formatHashrate, table } from "../format.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import type { Run } from "../program.ts";

interface ProbeOpts {
  firmware: string;
  apiPort: string;
  webPort: string;
  credentials?: string;
  capture?: string;
  json: boolean;
}

/**
 * `agentd miners probe ADDR`: who answers at ADDR and what it reports, read-only — detection
 * and one reading through the driver host (as the agent does it: under the drivers' user), and
 * with `--capture DIR` every read-only reply recorded byte for byte with secrets redacted, so
 * that an owner with real hardware can contribute captures (plugins/README.md). Nothing is
 * written to the miner.
 */
export function registerMinersProbe(miners: Command, io: CliIo, run: Run): void {
  miners
    .command("probe")
    .description(
      "detect and read one miner, read-only; --capture DIR records its replies (secrets redacted)",
    )
    .argument("<addr>", "the miner's address (host, or host:port of its 4028 API)")
    .option("--firmware <family>", `auto, or one of: ${FAMILIES.join(", ")}`, "auto")
    .option("--api-port <port>", "its cgminer API port", "4028")
    .option("--web-port <port>", "its web UI port", "80")
    .option("--credentials <file>", "a 0600 JSON file {username, password} (default: the family's)")
    .option("--capture <dir>", "write every read-only reply there, secrets redacted")
    .option("--json", "machine-readable output", false)
    .action((addr: string, opts: ProbeOpts, cmd: Command) =>
      run(opts.json, async () => {
        const { config } = loadCliConfig(io, globalsOf(cmd));
        const family = familyOf(opts.firmware);
        const { host, apiPort } = endpointOf(addr, opts.apiPort);
        const webPort = portOf(opts.webPort, "--web-port");
        const credentials =
          opts.credentials === undefined ? null : loadCredentials(opts.credentials);
        const endpoint = { host, apiPort, webPort };

        let capture: { dir: string; files: number; redacted: number } | null = null;
        if (opts.capture !== undefined) {
          const replies = await captureMiner({
            ...endpoint,
            // the web surfaces recorded are stock Antminer's: its factory login unless given
            credentials: credentials ?? DEFAULT_CREDENTIALS["antminer-s19"],
            timers: backgroundTimers,
            limits: DEFAULT_LIMITS,
          });
          capture = writeCapture(opts.capture, replies, io.clock.now());
        }

        const logger = createLogger({ level: config.log.level as LogLevel });
        const driverHost = new DriverHost({
          logger,
          clock: io.clock,
          timers: backgroundTimers,
          user: config.drivers.user,
        });
        try {
          const identity = await driverHost.detect(endpoint, credentials, family);
          const reading = await driverHost.driver(identity.family, endpoint, credentials).read();
          const doc = { identity, reading, capture };
          printResult(io, opts.json, doc, probeText(identity, reading, capture, io.clock.now()));
          return 0;
        } catch (err) {
          if (capture !== null) {
            io.stderr(
              `capture: ${capture.files} replies written to ${capture.dir} before this failure`,
            );
          }
          throw err;
        } finally {
          await driverHost.stop();
        }
      }),
    );
}

function familyOf(given: string): Family | "auto" {
  if (given === "auto") return "auto";
  if ((FAMILIES as readonly string[]).includes(given)) return given as Family;
  throw fail(
    "AGENTD_E_USAGE",
    `--firmware: expected auto or one of ${FAMILIES.join(", ")}, found ${JSON.stringify(given)}`,
  );
}

function portOf(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 65_535) {
    throw fail(
      "AGENTD_E_USAGE",
      `${flag}: expected a port 1..65535, found ${JSON.stringify(text)}`,
    );
  }
  return n;
}

function endpointOf(addr: string, apiPort: string): { host: string; apiPort: number } {
  if (/:\d+$/.test(addr) && !addr.startsWith("[") && addr.split(":").length === 2) {
    const hp = parseHostPort(addr);
    return { host: hp.host, apiPort: hp.port };
  }
  if (addr.startsWith("[") && /\]:\d+$/.test(addr)) {
    const hp = parseHostPort(addr);
    return { host: hp.host, apiPort: hp.port };
  }
  if (addr.length === 0) throw fail("AGENTD_E_USAGE", "probe: the miner's address is empty");
  return { host: addr.replace(/^\[|\]$/g, ""), apiPort: portOf(apiPort, "--api-port") };
}

/**
 * One file per request, exactly the bytes received (secrets replaced), and a manifest:
 * what was asked, the file, its size and SHA-256, the HTTP status or the error. The
 * miner's address is not recorded.
 */
function writeCapture(
  dir: string,
  replies: readonly CapturedReply[],
  now: number,
): { dir: string; files: number; redacted: number } {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const entries = replies.map((r) => {
    const file = r.reply === null ? null : `${r.request.surface}-${r.request.name}.raw`;
    if (file !== null && r.reply !== null) writeFileSync(join(dir, file), r.reply, { mode: 0o644 });
    return {
      request: r.request,
      file,
      bytes: r.reply === null ? null : Buffer.byteLength(r.reply),
      sha256: r.reply === null ? null : createHash("sha256").update(r.reply).digest("hex"),
      status: r.status,
      error: r.error,
      redacted: r.redacted,
    };
  });
  const manifest = {
    format: 1,
    captured_at: new Date(now).toISOString(),
    note: "read-only replies recorded by agentd miners probe --capture; secrets replaced by REDACTED; the miner's address is not recorded",
    replies: entries,
  };
  writeFileSync(join(dir, "capture.json"), `${JSON.stringify(manifest, null, 2)}\n`, {
    mode: 0o644,
  });
  return {
    dir,
    files: entries.filter((e) => e.file !== null).length,
    redacted: entries.reduce((n, e) => n + e.redacted, 0),
  };
}

export function probeText(
  id: Identity,
  r: Reading,
  capture: { dir: string; files: number; redacted: number } | null,
  _now: number,
): string {
  const c = id.capabilities;
  const lines: string[] = [];
  const row = (k: string, v: string) => lines.push(`${k.padEnd(10)}${v}`);
  row("miner", `${id.model} (${id.family}), firmware ${id.firmware}`);
  row("identity", `MAC ${id.mac ?? "not reported"}, serial ${id.serial ?? "not reported"}`);
  if (!id.verifiedOnHardware)
    row(
      "",
      "not verified on hardware: the driver was checked against simulators only (plugins/README.md)",
    );
  row(
    "can",
    [
      `pools ${c.pools}`,
      `sleep ${c.sleep}`,
      `power modes ${c.powerModes.length === 0 ? "none" : c.powerModes.join("/")}`,
      `power target ${c.powerTarget === null ? "no" : `${c.powerTarget.minW}-${c.powerTarget.maxW} W`}`,
      `reboot ${c.reboot}`,
    ].join(", "),
  );
  row("mode", r.mode);
  row("hashrate", r.hashrateGhs === null ? "not reported" : formatHashrate(r.hashrateGhs * 1e9));
  row(
    "power",
    r.power === null
      ? "not reported (a meter must measure it)"
      : `${r.power.watts.toFixed(0)} W, ${r.power.provenance} by ${r.power.source}`,
  );
  row("uptime", r.uptimeS === null ? "not reported" : `${r.uptimeS} s`);
  lines.push(
    table(
      ["board", "hashrate", "chips", "pcb °C", "chip °C"],
      r.boards.map((b) => [
        String(b.index),
        b.hashrateGhs === null ? "-" : formatHashrate(b.hashrateGhs * 1e9),
        b.chips === null ? "-" : String(b.chips),
        b.pcbTempC.join("/") || "-",
        b.chipTempC.join("/") || "-",
      ]),
    ),
  );
  row(
    "fans",
    r.fans.length === 0
      ? "none reported"
      : r.fans.map((f) => `#${f.index} ${f.rpm} rpm`).join(", "),
  );
  lines.push(
    table(
      ["slot", "url", "user", "status", "active"],
      r.pools.map((p) => [String(p.index), p.url, p.user, p.status, p.active ? "yes" : ""]),
    ),
  );
  row("errors", r.errors.length === 0 ? "none" : r.errors.join("; "));
  if (capture !== null) {
    row(
      "capture",
      `${capture.files} replies written to ${capture.dir} (${capture.redacted} secrets redacted)`,
    );
  }
  return lines.join("\n");
}
