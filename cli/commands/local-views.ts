import type { Command } from "commander";
import { apiError, localApiGet, localApiRequest } from "../../agent/local-api.ts";
import { agentSocket, STATE_DIR_HELP, withStateDir } from "../agent-socket.ts";
import { formatAgo, formatDifficulty, formatHashrate, table } from "../format.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import type { Run } from "../program.ts";
import { parseInstant } from "../time.ts";
import { fleetText, registerMinersFleet } from "./miners-fleet.ts";
import { registerMinersProbe } from "./miners-probe.ts";
import { pauseLines, type StatusDoc } from "./status.ts";

/**
 * The operator's views of a running agent, all read through its local API (agentd run must
 * be running): `agentd miners`, `agentd policy show`, `agentd eligibility`, `agentd logs`,
 * `agentd mining pause|resume`, `agentd maintenance add|clear`, `agentd services
 * ls|start|stop|restart|logs`. Every one takes `--json` (the API's answer as is).
 */

type Json = Record<string, unknown>;

const socketOf = (io: CliIo, cmd: Command) => agentSocket(io, cmd);

function view(
  program: Command,
  io: CliIo,
  run: Run,
  name: string,
  description: string,
  path: (opts: Json) => string,
  text: (doc: Json) => string,
  extra: (c: Command) => Command = (c) => c,
): void {
  withStateDir(extra(program.command(name).description(description)))
    .option("--json", "machine-readable output", false)
    .action((opts: Json & { json: boolean }, cmd: Command) =>
      run(opts.json, async () => {
        const doc = await localApiGet(socketOf(io, cmd), path(opts));
        printResult(io, opts.json, doc, text(doc));
        return 0;
      }),
    );
}

export function registerLocalViews(program: Command, io: CliIo, run: Run): void {
  // The ASICs on the Stratum proxy, and the fleet the agent manages (adopted miners).
  const miners = withStateDir(
    program
      .command("miners")
      .description("the ASICs on the running agent's Stratum proxy and the fleet it manages"),
  )
    .option("--json", "machine-readable output", false)
    .action((opts: { json: boolean }, cmd: Command) =>
      run(opts.json, async () => {
        const socket = socketOf(io, cmd);
        const doc = await localApiGet(socket, "/v1/miners");
        const fleet = await localApiGet(socket, "/v1/fleet");
        printResult(
          io,
          opts.json,
          { ...doc, fleet },
          `${minersText(doc, io.clock.now())}\n\n${fleetText(fleet, io.clock.now())}`,
        );
        return 0;
      }),
    );
  registerMinersProbe(miners, io, run);
  registerMinersFleet(miners, io, run);
  view(
    program,
    io,
    run,
    "eligibility",
    "node-reward eligibility: uptime over 7 days, Lightning channel, bitcoind sync",
    () => "/v1/eligibility",
    (d) => {
      const reasons = (d.reasons ?? []) as string[];
      const ratio =
        typeof d.uptime_ratio === "number" ? `${(d.uptime_ratio * 100).toFixed(2)}%` : "unknown";
      return [
        `eligible  ${d.eligible === true ? "yes" : `no: ${reasons.join(", ")}`}`,
        `uptime    ${ratio}`,
        `lightning ${String(d.lightning ?? "unknown")}`,
        `bitcoind  ${String(d.bitcoind ?? "unknown")}`,
      ].join("\n");
    },
  );
  view(
    program,
    io,
    run,
    "logs",
    "the running agent's last log lines (--json: as logged)",
    (o) => `/v1/logs?n=${encodeURIComponent(String(o.lines ?? "100"))}`,
    (d) => logsText(d),
    (c) => c.option("-n, --lines <n>", "how many lines (1..1000)", "100"),
  );

  const services = program
    .command("services")
    .description("the supervised services: list, start, stop, restart, logs (local API)");
  services
    .command("ls")
    .description("every service kind: allowed, state, health, hold, restarts")
    .option("--json", "machine-readable output", false)
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .action((opts: { json: boolean }, cmd: Command) =>
      run(opts.json, async () => {
        const doc = await localApiGet(socketOf(io, cmd), "/v1/services");
        const list = (doc.services ?? []) as {
          kind: string;
          allowed: boolean;
          state: string;
          hold: string | null;
          restarts: number;
        }[];
        const refused = (doc.refused ?? {}) as Record<string, string>;
        const rows = list.map(
          (x) =>
            `${x.kind.padEnd(18)} ${(x.allowed ? "allowed" : "-").padEnd(8)} ${x.state.padEnd(10)} ${String(x.restarts).padEnd(8)} ${x.hold ?? refused[x.kind] ?? ""}`,
        );
        // The supervisor's driver (docker or processes).
        const driver = doc.driver as { name: string; up: boolean } | undefined;
        printResult(
          io,
          opts.json,
          doc,
          doc.supervisor === "off"
            ? "no services are supervised here (supervisor.driver is off)"
            : [
                `driver ${driver?.name ?? "?"} (${driver?.up === true ? "up" : "unreachable"})`,
                "kind               consent  state      restarts held",
                ...rows,
              ].join("\n"),
        );
        return 0;
      }),
    );
  for (const [verb, what] of [
    ["start", "start a service (lifts an operator's stop and a crash loop)"],
    ["stop", "stop a service until it is started again"],
    ["restart", "stop and start a service"],
  ] as const) {
    services
      .command(`${verb} <name>`)
      .description(what)
      .option("--json", "machine-readable output", false)
      .option("--state-dir <dir>", STATE_DIR_HELP)
      .action((name: string, opts: { json: boolean }, cmd: Command) =>
        run(opts.json, async () => {
          const r = await localApiRequest(
            socketOf(io, cmd),
            "POST",
            `/v1/services/${encodeURIComponent(name)}/${verb}`,
            {},
          );
          if (r.status !== 200) throw apiError(r);
          // What happened, checked against the supervisor (agent/service-outcome.ts): exit 1
          // when the action did not have its effect.
          const result = r.json.result as { status: string; reason: string } | undefined;
          printResult(
            io,
            opts.json,
            r.json,
            `${name}: ${String(r.json.state ?? "?")}${result === undefined ? "" : `\n${result.status}: ${result.reason}`}`,
          );
          return result === undefined || result.status === "done" ? 0 : 1;
        }),
      );
  }
  services
    .command("logs <name>")
    .description("the last lines a service wrote")
    .option("-n, --lines <n>", "how many lines (1..1000)", "100")
    .option("--json", "machine-readable output", false)
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .action((name: string, opts: { lines: string; json: boolean }, cmd: Command) =>
      run(opts.json, async () => {
        const doc = await localApiGet(
          socketOf(io, cmd),
          `/v1/services/${encodeURIComponent(name)}/logs?n=${encodeURIComponent(opts.lines)}`,
        );
        printResult(io, opts.json, doc, ((doc.lines ?? []) as string[]).join("\n"));
        return 0;
      }),
    );

  const maintenance = program
    .command("maintenance")
    .description("planned maintenance: left out of the eligibility uptime ratio (local API)");
  const post = async (io2: CliIo, cmd: Command, windows: unknown[], json: boolean) => {
    const r = await localApiRequest(socketOf(io2, cmd), "POST", "/v1/eligibility/maintenance", {
      windows,
    });
    if (r.status !== 200) throw apiError(r);
    const list = (r.json.maintenance ?? []) as { start_ms: number; end_ms: number }[];
    printResult(
      io2,
      json,
      r.json,
      list.length === 0
        ? "no maintenance windows"
        : list
            .map(
              (w) => `${new Date(w.start_ms).toISOString()} – ${new Date(w.end_ms).toISOString()}`,
            )
            .join("\n"),
    );
    return 0;
  };
  maintenance
    .command("add")
    .description("announce a maintenance window (kept with the ones already set)")
    .requiredOption("--from <iso>", "start (ISO 8601)")
    .requiredOption("--until <iso>", "end (ISO 8601)")
    .option("--json", "machine-readable output", false)
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .action((opts: { from: string; until: string; json: boolean }, cmd: Command) =>
      run(opts.json, async () => {
        const start_ms = parseInstant(opts.from, "--from");
        const end_ms = parseInstant(opts.until, "--until");
        const now = await localApiGet(socketOf(io, cmd), "/v1/eligibility");
        const kept = ((now.maintenance ?? []) as { start_ms: number; end_ms: number }[]).filter(
          (w) => w.end_ms > io.clock.now(),
        );
        return post(io, cmd, [...kept, { start_ms, end_ms }], opts.json);
      }),
    );
  maintenance
    .command("clear")
    .description("cancel the maintenance to come (what has passed stays as it was)")
    .option("--json", "machine-readable output", false)
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .action((opts: { json: boolean }, cmd: Command) =>
      run(opts.json, () => post(io, cmd, [], opts.json)),
    );

  const mining = program
    .command("mining")
    .description("pause or resume mining on this machine (the operator's hold; local API)");
  for (const [verb, what] of [
    [
      "pause",
      "stop mining until resumed here (persisted across restarts; a remote resume never lifts it)",
    ],
    [
      "resume",
      "lift this machine's pause (a remote pause stays; the owner's policy still decides)",
    ],
  ] as const) {
    mining
      .command(verb)
      .description(what)
      .option("--json", "machine-readable output", false)
      .option("--state-dir <dir>", STATE_DIR_HELP)
      .action((opts: { json: boolean }, cmd: Command) =>
        run(opts.json, async () => {
          const r = await localApiRequest(socketOf(io, cmd), "POST", `/v1/mining/${verb}`, {});
          if (r.status !== 200) throw apiError(r);
          printResult(io, opts.json, r.json, miningAnswerText(r.json, io.clock.now()));
          return 0;
        }),
      );
  }
}

/**
 * The answer to `agentd mining pause|resume` (the status): the state, whether it mines, and the
 * pauses in force — after a resume here, a remote pause that remains is said ("still paused
 * remotely …"): only a `mining.resume` command, or the owner's decision, is for that one.
 */
export function miningAnswerText(doc: Json, now: number): string {
  const d = doc.decision as { mining: boolean; reasons: string[] };
  const p = doc.pause as StatusDoc["pause"];
  const lines = [
    `state    ${String(doc.state)}`,
    `mining   ${d.mining ? "allowed" : `denied: ${d.reasons.join(", ")}`}`,
  ];
  const [local, remote] = [p?.local ?? null, p?.remote ?? null];
  for (const l of pauseLines({ local, remote: null }, now)) lines.push(`pause    ${l}`);
  if (remote !== null) {
    const [l] = pauseLines({ local: null, remote }, now);
    lines.push(`pause    still ${l}: a mining.resume command lifts it`);
  }
  return lines.join("\n");
}

/** `agentd policy show`: the documents in force on the running agent and its decision. */
export function registerPolicyShow(policy: Command, io: CliIo, run: Run): void {
  view(
    policy,
    io,
    run,
    "show",
    "the running agent's consent, publication, decision and local holds (local API)",
    () => "/v1/policy",
    (d) => {
      const consent = d.consent as { identity: string; payload: Json; reasons: string[] } | null;
      const publication = d.publication as { payload: Json } | null;
      const e = d.effective as { allow: boolean; reasons: string[] };
      return [
        `owner key    ${String(d.owner_key ?? "?")}`,
        `consent      ${consent === null ? "none" : `seq ${consent.payload.seq} (${consent.identity.slice(0, 16)}…)${consent.reasons.length > 0 ? ` ${consent.reasons.join(", ")}` : ""}`}`,
        `publication  ${publication === null ? "none" : `version ${publication.payload.version}, expires ${new Date(Number(publication.payload.exp) * 1000).toISOString()}`}`,
        `mining       ${e.allow ? "allowed" : `denied: ${e.reasons.join(", ")}`}`,
        `holds        ${((d.holds ?? []) as string[]).join(", ") || "none"}`,
      ].join("\n");
    },
  );
}

/** The fields of one miner in GET /v1/miners the human form reads (stratum-client/proxy.ts). */
interface MinerDoc {
  readonly id: number;
  readonly ip: string;
  readonly workers: readonly string[];
  readonly difficulty: number;
  readonly ready: boolean;
  readonly hashrate_hs?: number;
  readonly shares?: { readonly accepted: number; readonly rejected: number };
  readonly connected_since?: number;
}

export function minersText(d: Json, now: number): string {
  const miners = (d.miners ?? []) as MinerDoc[];
  const count = typeof d.count === "number" ? d.count : miners.length;
  if (miners.length === 0) return `${count} miner(s) connected`;
  const rows = miners.map((m) => [
    String(m.id),
    m.ip,
    m.workers.join(",") || "-",
    m.ready ? "mining" : "waiting",
    formatDifficulty(m.difficulty),
    m.hashrate_hs === undefined ? "?" : formatHashrate(m.hashrate_hs),
    m.shares === undefined ? "?" : `${m.shares.accepted}/${m.shares.rejected}`,
    m.connected_since === undefined ? "?" : formatAgo(m.connected_since, now),
  ]);
  return [
    `${count} miner(s) connected${count > miners.length ? ` (first ${miners.length} shown)` : ""}`,
    table(
      ["id", "ip", "workers", "state", "difficulty", "hashrate", "accepted/rejected", "connected"],
      rows,
    ),
  ].join("\n");
}

const LEVELS: Readonly<Record<number, string>> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};
/** Fields every line has, or that the line's first part already shows. */
const SHOWN = new Set(["level", "time", "msg", "pid", "hostname", "component", "v"]);

/** GET /v1/logs in words: one line per record, or why there is none. */
export function logsText(d: Json): string {
  const lines = (d.lines ?? []) as string[];
  if (lines.length > 0) return lines.map(formatLogLine).join("\n");
  if (d.kept === false) {
    return "this agent keeps no log lines in memory: its logs go to its standard error (the terminal that runs it, or journalctl -u agentd)";
  }
  return `no log lines yet (the agent logs at level ${String(d.level ?? "info")} and above)`;
}

/** A pino JSON line as `time LEVEL [component] message key=value…`; other text as it is. */
export function formatLogLine(line: string): string {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (typeof r !== "object" || r === null) return line;
  // agentd logs ISO times and level names (lib/log/logger.ts); pino's defaults are numbers.
  const time =
    typeof r.time === "number"
      ? new Date(r.time).toISOString()
      : typeof r.time === "string"
        ? r.time
        : "?";
  const level =
    typeof r.level === "string"
      ? r.level.toUpperCase()
      : (LEVELS[Number(r.level)] ?? String(r.level ?? "?"));
  const component = typeof r.component === "string" ? ` [${r.component}]` : "";
  const extra = Object.entries(r)
    .filter(([k]) => !SHOWN.has(k))
    .map(
      ([k, v]) =>
        `${k}=${typeof v === "string" ? v : k === "err" ? errorText(v) : JSON.stringify(v)}`,
    )
    .join(" ");
  return `${time} ${level.padEnd(5)}${component} ${String(r.msg ?? "")}${extra === "" ? "" : ` ${extra}`}`;
}

/** A logged error in a few words: its code and message, not its stack. */
function errorText(v: unknown): string {
  const e = (v ?? {}) as { code?: unknown; message?: unknown };
  const code = typeof e.code === "string" ? `${e.code}: ` : "";
  return JSON.stringify(`${code}${typeof e.message === "string" ? e.message : "?"}`);
}
