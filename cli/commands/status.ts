import type { Command } from "commander";
import { localApiGet } from "../../agent/local-api.ts";
import { agentSocket, withStateDir } from "../agent-socket.ts";
import { formatAgo, formatHashrate, formatInstant, reasonInWords } from "../format.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import type { Run } from "../program.ts";

/** `agentd status`: what the running agent says about itself, through its local API. */
export function registerStatus(program: Command, io: CliIo, run: Run): void {
  withStateDir(
    program
      .command("status")
      .description(
        "the running agent: state, why it mines or not, upstream, miners, shares, heartbeats (local API)",
      ),
  )
    .option("--json", "machine-readable output (GET /v1/status as it is)", false)
    .action((opts: { json: boolean }, cmd: Command) =>
      run(opts.json, async () => {
        const doc = await localApiGet(agentSocket(io, cmd), "/v1/status");
        printResult(io, opts.json, doc, statusText(doc as unknown as StatusDoc, io.clock.now()));
        return 0;
      }),
    );
}

/** The fields of GET /v1/status the human form reads (agent/status-view.ts). */
export interface StatusDoc {
  readonly worker_id: string;
  readonly url?: string;
  readonly state: string;
  readonly since: number;
  readonly reason: string;
  readonly decision: { readonly mining: boolean; readonly reasons: readonly string[] };
  readonly holds?: readonly string[];
  /** Who paused and since when (agent/status-view.ts); absent from older agents. */
  readonly pause?: {
    readonly local: PauseDoc | null;
    readonly remote: PauseDoc | null;
  };
  readonly policy: { readonly version: number | null; readonly consent_sha256: string | null };
  readonly attestation?: { readonly at: number; readonly verdict: string } | null;
  readonly heartbeats?: {
    readonly sent: number;
    readonly failing: number;
    readonly queued: number;
    readonly last_accepted_at: number | null;
  };
  readonly miners?: number;
  readonly telemetry?: {
    readonly hashrate_hs: number;
    readonly shares_accepted: number;
    readonly shares_rejected: number;
  };
  readonly upstream?: {
    readonly url: string | null;
    readonly user?: string | null;
    readonly state: string;
    readonly since: number | null;
    readonly last_error?: string | null;
  } | null;
  readonly stratum?: { readonly host: string; readonly port: number };
  readonly audit?: { readonly writable: boolean };
  readonly fleet?: {
    readonly adopted: number;
    readonly modes: Readonly<Record<string, number>>;
    readonly measured_watts: number | null;
    readonly max_temp_c: number | null;
    readonly unconfirmed: number;
    readonly slots_not_owned: readonly string[];
  };
  readonly drivers?: {
    readonly state: string;
    readonly user: string | null;
    readonly isolated: boolean;
    readonly reason: string | null;
  };
}

/** One pause as GET /v1/status gives it: who (`local API`, `command <id>`) and since when. */
export interface PauseDoc {
  readonly by: string;
  readonly since: number;
}

/**
 * The pauses in words: the machine's own ("paused locally since …", lifted only there) and a
 * remote command's ("paused remotely by command … since …").
 */
export function pauseLines(p: StatusDoc["pause"], now: number): string[] {
  const lines: string[] = [];
  if (p?.local != null) {
    const by = p.local.by === "local API" ? "" : ` (${p.local.by})`;
    lines.push(`paused locally since ${formatInstant(p.local.since, now)}${by}`);
  }
  if (p?.remote != null) {
    lines.push(`paused remotely by ${p.remote.by} since ${formatInstant(p.remote.since, now)}`);
  }
  return lines;
}

export function statusText(s: StatusDoc, now: number): string {
  const lines: string[] = [];
  const row = (k: string, v: string) => lines.push(`${k.padEnd(15)}${v}`);
  row("worker", s.worker_id);
  row("state", `${s.state}${s.since > 0 ? ` since ${formatInstant(s.since, now)}` : ""}`);
  if (s.reason !== "") row("", `(${s.reason})`);
  if (s.decision.mining) row("mining", "allowed");
  else {
    row("mining", "not mining:");
    for (const r of s.decision.reasons) row("", `- ${reasonInWords(r)}`);
  }
  pauseLines(s.pause, now).forEach((l, i) => {
    row(i === 0 ? "pause" : "", l);
  });
  const u = s.upstream;
  if (u !== undefined && u !== null && u.url !== null) {
    const who = u.user === undefined || u.user === null ? "" : ` as ${u.user}`;
    const since = u.since === null ? "" : ` since ${formatInstant(u.since, now)}`;
    const why = u.last_error === undefined || u.last_error === null ? "" : ` (${u.last_error})`;
    row("upstream", `${u.url}${who}: ${u.state}${since}${u.state === "unreachable" ? why : ""}`);
  } else if (u === null) row("upstream", "none in use");
  if (s.stratum !== undefined) row("stratum", `listening on ${s.stratum.host}:${s.stratum.port}`);
  const t = s.telemetry;
  row(
    "miners",
    `${s.miners ?? 0} connected${t === undefined ? "" : `, ${formatHashrate(t.hashrate_hs)} (10 min)`}`,
  );
  if (t !== undefined) {
    row("shares", `${t.shares_accepted} accepted, ${t.shares_rejected} rejected (since start)`);
  }
  row("policy", s.policy.version === null ? "none yet" : `publication version ${s.policy.version}`);
  const h = s.heartbeats;
  if (h !== undefined) {
    const last =
      h.last_accepted_at === null
        ? "none accepted yet"
        : `last accepted ${formatAgo(h.last_accepted_at, now)}`;
    const failing = h.failing > 0 ? `, ${h.failing} failing, ${h.queued} queued` : "";
    row("heartbeats", `${last} (${h.sent} sent${failing})`);
  }
  if (s.url !== undefined) {
    const a = s.attestation;
    row(
      "control plane",
      `${s.url}${a === undefined || a === null ? ", not attested yet" : `, attested ${formatAgo(a.at, now)} (${a.verdict})`}`,
    );
  }
  const f = s.fleet;
  if (f !== undefined && f.adopted > 0) {
    const modes = Object.entries(f.modes)
      .map(([k, n]) => `${n} ${k}`)
      .join(", ");
    const watts =
      f.measured_watts === null ? "watts not measured" : `${f.measured_watts} W measured`;
    const temp = f.max_temp_c === null ? "" : `, hottest chip ${f.max_temp_c} °C`;
    const pending = f.unconfirmed > 0 ? `, ${f.unconfirmed} action(s) not confirmed` : "";
    row("fleet", `${f.adopted} adopted (${modes}), ${watts}${temp}${pending}`);
    if (f.slots_not_owned.length > 0) {
      row("", `slots not owned (${f.slots_not_owned.join(", ")}): may hash elsewhere when denied`);
    }
  }
  const d = s.drivers;
  if (d !== undefined) {
    const who = d.isolated
      ? `as ${d.user ?? "?"}`
      : "as the agent's own user (devnet), not isolated";
    const what =
      d.state === "refused"
        ? `do not run: ${d.reason ?? "refused"}`
        : d.state === "idle"
          ? `ready ${who} (the host starts with the first miner)`
          : `${d.state} ${who}`;
    row("ASIC drivers", what);
  }
  if (s.audit !== undefined && !s.audit.writable) {
    row("audit log", "cannot be written: mining is held until it can");
  }
  return lines.join("\n");
}
