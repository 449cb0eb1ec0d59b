import type { KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Clock } from "../../lib/clock.ts";
import { generateEd25519KeyPair, jwkThumbprint } from "../../lib/crypto/ed25519.ts";
import { ChainLog } from "../../lib/fs/chain-log.ts";
import type { Timers } from "../../lib/timers.ts";
import type { Bundle } from "../../policy-guard/documents.ts";
import { EnforcementEngine, type EngineOptions } from "../../policy-guard/engine.ts";
import type { Gate, MiningGateInput, ServicesGateInput } from "../../policy-guard/gates.ts";
import { makeBundle, signConsent, signPublication } from "../../policy-guard/sign.ts";
import { GUARD_STATE_FILE } from "../../policy-guard/state.ts";

/**
 * The engine tests' own small world: real Ed25519 keys, real signed documents, a real state
 * file and a real hash-chained audit log in a temp directory. Only the gates (recording
 * stubs) and, where a test needs them, the timers are fakes.
 */

export const BITCOIND_IMAGE = `sha256:${"a".repeat(64)}`;
export const TRANSLATOR_IMAGE = `sha256:${"b".repeat(64)}`;
export const UPSTREAM = "stratum+tcp://pool.example:3333";

/** Wednesday 2026-11-18 12:00:00 UTC. */
export const T0 = Date.UTC(2026, 10, 18, 12, 0, 0);
export const DAY_S = 86_400;

export interface Keys {
  readonly owner: KeyObject;
  readonly cp: KeyObject;
  readonly cpPublic: KeyObject;
  readonly ownerPublic: KeyObject;
  /** Not the owner: signs forgeries. */
  readonly stranger: KeyObject;
  /** The owner's next key (rotation). */
  readonly newOwner: KeyObject;
  readonly worker: string;
  readonly otherWorker: string;
}

export function makeKeys(): Keys {
  const owner = generateEd25519KeyPair();
  const cp = generateEd25519KeyPair();
  return {
    owner: owner.privateKey,
    ownerPublic: owner.publicKey,
    cp: cp.privateKey,
    cpPublic: cp.publicKey,
    stranger: generateEd25519KeyPair().privateKey,
    newOwner: generateEd25519KeyPair().privateKey,
    worker: jwkThumbprint(generateEd25519KeyPair().publicKey),
    otherWorker: jwkThumbprint(generateEd25519KeyPair().publicKey),
  };
}

/** Rules inside which the default facts allow mining. */
export function baseRules(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    max_watts: 3600,
    max_temp_c: 85,
    upstreams: [{ url: UPSTREAM, user: "owner1.farm-a" }],
    services: { bitcoind: BITCOIND_IMAGE, translator: TRANSLATOR_IMAGE },
    commands: ["mining.pause", "mining.resume"],
    networks: ["192.168.10.0/24"],
    job_classes: { allow: ["sha256d"], deny: [] },
    ...extra,
  };
}

/**
 * Rules with no time-dated fact (no max_watts / max_temp_c), so that nothing but the
 * documents and the schedule sets `nextChangeAt` (dated facts go stale 60 s after each read).
 */
export function untimedRules(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    upstreams: [{ url: UPSTREAM, user: "owner1.farm-a" }],
    services: { bitcoind: BITCOIND_IMAGE, translator: TRANSLATOR_IMAGE },
    job_classes: { allow: ["sha256d"] },
    ...extra,
  };
}

/** Fresh facts, dated by the clock at each read, inside baseRules. */
export function freshFacts(clock: Clock): () => unknown {
  return () => {
    const at = new Date(clock.now()).toISOString();
    return {
      watts: { value: 3400, source: "measured", at },
      temp_c: { max: 71, at },
      upstream: UPSTREAM,
      job_class: "sha256d",
    };
  };
}

export interface ConsentOpts {
  readonly seq: number;
  readonly rules?: Record<string, unknown>;
  readonly signer?: KeyObject;
  readonly worker?: string;
  /** Unix seconds; defaults to T0 - 1 h. */
  readonly iat?: number;
  readonly exp?: number;
}

export function consentFor(keys: Keys, o: ConsentOpts): string {
  const iat = o.iat ?? T0 / 1000 - 3600;
  return signConsent({
    ownerKey: o.signer ?? keys.owner,
    worker: o.worker ?? keys.worker,
    rules: o.rules ?? baseRules(),
    seq: o.seq,
    policyId: "farm-a-2026",
    iat,
    exp: o.exp ?? iat + 365 * DAY_S,
  });
}

export interface PublicationOpts {
  readonly version: number;
  readonly stop?: boolean;
  /** Unix seconds; defaults to T0 - 60 s. */
  readonly iat?: number;
  readonly ttlS?: number;
  readonly signer?: KeyObject;
}

export function publicationFor(keys: Keys, consent: string, o: PublicationOpts): string {
  return signPublication({
    cpKey: o.signer ?? keys.cp,
    consent,
    worker: keys.worker,
    version: o.version,
    iat: o.iat ?? T0 / 1000 - 60,
    ttlS: o.ttlS ?? DAY_S,
    ...(o.stop === undefined ? {} : { stop: o.stop }),
  });
}

export function bundleFor(keys: Keys, c: ConsentOpts, p: PublicationOpts): Bundle {
  const consent = consentFor(keys, c);
  return makeBundle(consent, publicationFor(keys, consent, p));
}

/** A gate that records every input; `behavior` runs inside apply (the acknowledgement waits). */
export class RecordingGate<I> implements Gate<I> {
  readonly name: string;
  readonly inputs: I[] = [];
  /** Start/end markers of every apply, in the order they happened. */
  readonly events: string[] = [];
  behavior: ((input: I) => Promise<void> | void) | undefined;

  constructor(name: string, behavior?: (input: I) => Promise<void> | void) {
    this.name = name;
    this.behavior = behavior;
  }

  async apply(input: I): Promise<void> {
    const n = this.inputs.length;
    this.inputs.push(input);
    this.events.push(`begin:${n}`);
    await this.behavior?.(input);
    this.events.push(`end:${n}`);
  }

  last(): I {
    const v = this.inputs.at(-1);
    if (v === undefined) throw new Error(`gate ${this.name} was never applied`);
    return v;
  }
}

export interface Armed {
  /** Fires the timer as the runtime would. */
  readonly fn: () => void;
  readonly ms: number;
  /** Cleared by the engine, or fired. */
  cleared: boolean;
}

/** Timers that only record what the engine arms. */
export class CapturingTimers implements Timers {
  readonly armed: Armed[] = [];

  setTimeout(fn: () => void, ms: number): unknown {
    // A timer that fired is no longer armed (the engine does not clear it then).
    const a: Armed = {
      fn: () => {
        a.cleared = true;
        fn();
      },
      ms,
      cleared: false,
    };
    this.armed.push(a);
    return a;
  }

  clearTimeout(handle: unknown): void {
    (handle as Armed).cleared = true;
  }

  setInterval(): unknown {
    throw new Error("the engine arms no intervals");
  }

  clearInterval(): void {}

  /** The one timer still armed. */
  pending(): Armed {
    const live = this.armed.filter((a) => !a.cleared);
    const only = live[0];
    if (live.length !== 1 || only === undefined) {
      throw new Error(`expected exactly one armed timer, found ${live.length}`);
    }
    return only;
  }
}

export interface World {
  readonly dir: string;
  readonly stateFile: string;
  readonly auditPath: string;
  readonly audit: ChainLog;
  readonly keys: Keys;
  /** A new engine on the same state file and audit log (a restart), with fresh gates. */
  engine(over?: Partial<EngineOptions>): Harness;
  /** The audit log's records, parsed. */
  records(): Record<string, unknown>[];
  close(): void;
}

export interface Harness {
  readonly engine: EnforcementEngine;
  readonly mining: RecordingGate<MiningGateInput>;
  readonly services: RecordingGate<ServicesGateInput>;
  readonly timers: CapturingTimers;
}

export function makeWorld(dir: string, keys: Keys, clock: Clock): World {
  const stateFile = join(dir, GUARD_STATE_FILE);
  const auditPath = join(dir, "audit.jsonl");
  const { log: audit } = ChainLog.open(auditPath, { fsync: "batch" });
  const engines: EnforcementEngine[] = [];
  return {
    dir,
    stateFile,
    auditPath,
    audit,
    keys,
    engine(over = {}) {
      const timers = new CapturingTimers();
      const engine = new EnforcementEngine({
        stateFile,
        worker: keys.worker,
        trust: { owner: keys.ownerPublic, publication: [keys.cpPublic] },
        clock,
        facts: freshFacts(clock),
        audit,
        timers,
        ...over,
      });
      engines.push(engine);
      const mining = new RecordingGate<MiningGateInput>("stratum-proxy");
      const services = new RecordingGate<ServicesGateInput>("supervisor");
      engine.registerMiningGate(mining);
      engine.registerServicesGate(services);
      return { engine, mining, services, timers };
    },
    records() {
      return readFileSync(auditPath, "utf8")
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    close() {
      for (const e of engines) e.close();
      audit.close();
    },
  };
}
