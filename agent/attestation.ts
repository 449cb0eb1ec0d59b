import type { AttestResponse } from "../control-plane/protocol/schemas/api-enrollment.ts";
import type { HostFacts } from "../control-plane/protocol/schemas/attestation.ts";
import { fail, isAgentdError } from "../lib/errors.ts";
import { sleep, type TimerHandle } from "../lib/timers.ts";
import type { AgentContext } from "./agent-context.ts";
import type { AssignmentSync } from "./assignment-sync.ts";
import type { StateDriver } from "./state-driver.ts";

/**
 * Attestation (docs/protocol.md section 5): the machine proves who it is with fresh host facts
 * and gets its access token. Again every `intervalMs` (default 15 min) and a minute before the
 * token expires; after a failure, again in about half a minute.
 *
 * The first one runs in the background: the agent is ready — its stored policy enforced, the
 * proxy listening, the local API up — without waiting for the network. The control plane may
 * be unreachable when the machine starts (a reboot during an outage): on its stored bundle the
 * policy guard decides, until the publication's expiry plus the offline grace, and the agent
 * keeps trying. What needs a session (the long poll, the push stream, heartbeats) waits for
 * `first`, which settles after a few quick tries whatever their outcome.
 *
 * Every attestation looks at the machine id again: a disk image cloned onto another machine
 * while this agent runs is quarantined at the next one, not only at the next start.
 *
 * The reply's `quarantined` is not a signed document: anyone holding the control plane's TLS
 * key could send it, and it used to quarantine the agent until it was enrolled again. It is
 * logged and recorded (`attestation.quarantine_ignored`, once each time it turns true), never
 * obeyed: the control plane then refuses the machine its assignment, which holds mining
 * (`agent.unassigned`) without bricking it. A quarantine from the control plane comes only as
 * its signed `worker.quarantine` command (commands.ts), which the owner's consent allows.
 */
export interface Attestation {
  attest(): Promise<AttestResponse>;
  readonly first: Promise<void>;
  last(): { readonly at: number; readonly verdict: string } | null;
  stop(): void;
}

const QUICK_TRIES = 3;

export function startAttestation(
  ctx: AgentContext,
  o: {
    readonly hostFacts: () => HostFacts;
    readonly enrolledMachineId: string;
    readonly intervalMs: number;
    readonly driver: StateDriver;
    readonly assignment: AssignmentSync;
  },
): Attestation {
  const { clock, timers, signal, log } = ctx;
  let last: { at: number; verdict: string } | null = null;
  let timer: TimerHandle | undefined;
  // Recorded once while the control plane keeps saying so, again after it stopped saying so.
  let saidQuarantined = false;
  const ignoreQuarantine = (verdict: string) => {
    if (saidQuarantined) return;
    saidQuarantined = true;
    const why = "the control plane says quarantined (unsigned): ignored";
    log.warn({ verdict }, why);
    try {
      ctx.audit.append({ type: "attestation.quarantine_ignored", verdict, reason: why });
    } catch {
      // counted lost by the audit sink, which holds mining meanwhile
    }
  };

  const attest = async (): Promise<AttestResponse> => {
    // Fresh facts every time (see above).
    const facts = o.hostFacts();
    if (facts.machine_id_sha256 !== o.enrolledMachineId) {
      o.driver.quarantine(
        "the machine id changed under the running agent: a cloned identity",
        "clone",
      );
      throw fail("AGENTD_E_IDENTITY_CLONED", "the machine id is not the one enrolled", {
        path: ctx.stateDir,
      });
    }
    const a = await ctx.client.attest(facts);
    last = { at: clock.now(), verdict: a.verdict };
    if (a.quarantined) ignoreQuarantine(a.verdict);
    else saidQuarantined = false;
    if (ctx.states.current().state === "REGISTERED") {
      ctx.states.move("attested", `attestation ${a.verdict}`);
    }
    try {
      await ctx.keys.refresh("attestation", ctx.keys.current().seq);
    } finally {
      // Also when the key set cannot be fetched: a control plane that refuses this machine
      // (quarantined on its side) refuses the assignment too, which holds mining.
      void o.assignment.fetch("attestation");
    }
    return a;
  };

  const schedule = (expiresAt: number) => {
    if (signal.aborted) return;
    const beforeExpiry = expiresAt * 1000 - clock.now() - 60_000;
    const every = o.intervalMs;
    const inMs = Math.max(Math.min(5_000, every), Math.min(every, beforeExpiry));
    timer = timers.setTimeout(() => {
      attest().then(
        (a) => schedule(a.expires_at),
        (err: unknown) => {
          if (signal.aborted) return;
          log.warn({ err }, "attestation failed; retrying");
          schedule(Math.floor(clock.now() / 1000) + 90);
        },
      );
    }, inMs);
  };

  const first = (async () => {
    let ok: { expires_at: number } | null = null;
    // A few quick tries first (a connection reset, the control plane restarting); then the
    // timer goes on trying.
    for (let attempt = 0; attempt < QUICK_TRIES && !signal.aborted && ok === null; attempt++) {
      try {
        ok = await attest();
      } catch (err) {
        if (signal.aborted) return;
        if (isAgentdError(err) && err.code === "AGENTD_E_IDENTITY_CLONED") break;
        log.warn({ err, attempt }, "attestation failed at start; running on the stored policy");
        await sleep(timers, 250 * 2 ** attempt, signal);
      }
    }
    if (signal.aborted) return;
    void o.assignment.fetch("start");
    schedule(ok?.expires_at ?? Math.floor(clock.now() / 1000) + 70);
  })();

  return {
    attest,
    first,
    last: () => last,
    stop: () => timers.clearTimeout(timer),
  };
}
