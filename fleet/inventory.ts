/**
 * The persisted inventory of adopted miners, in the state directory (lib/fs/state-file.ts:
 * versioned, atomic, 0600), and the actions sent to each and not yet confirmed (so a restart
 * neither repeats a confirmed action nor loses an unconfirmed one).
 *
 * Three files, all 0600, each format 1:
 * - `fleet-inventory.json`: `{miners: FleetMiner[]}`, rewritten only when a miner is adopted,
 *   moved or forgotten.
 * - `fleet-pending.json`: `{<id>: Pending[]}`, rewritten as actions are sent and end: apart,
 *   so that a revocation reaching a thousand miners does not rewrite every miner's record.
 * - `fleet-previous-slots.json`: `{<id>: SavedSlots}`, the pool slots each miner had before
 *   the agent took them over, so `miners forget` can give them back (never in the files
 *   rewritten on every action).
 *
 * A file this code cannot read is refused, never replaced: a newer format is
 * AGENTD_E_FILE_FORMAT_NEWER, a damaged one AGENTD_E_FILE_CORRUPT, and `open` throws before
 * anything is written, so nothing is lost to a downgrade or a bad disk.
 */
import { join } from "node:path";
import type { Clock } from "../lib/clock.ts";
import { AgentdError, fail } from "../lib/errors.ts";
import { readStateFile, writeStateFile } from "../lib/fs/state-file.ts";
import type { Family, Identity, MinerEndpoint, PoolSlot } from "../plugins/driver.ts";
import { assertSameMiner } from "../plugins/identity.ts";
import { nameplate } from "./nameplate.ts";
import type { FleetAction, FleetMiner } from "./types.ts";

export const INVENTORY_FILE = "fleet-inventory.json";
export const PENDING_FILE = "fleet-pending.json";
export const PREVIOUS_SLOTS_FILE = "fleet-previous-slots.json";
export const INVENTORY_FORMAT = 1;

/** An action written down before it was sent; removed once confirmed or superseded. */
export interface Pending {
  /** Unique within this inventory, increasing: the order actions were submitted in. */
  readonly seq: number;
  /**
   * As the planner gave it. A `setPools` carries the agent's own Stratum passwords (the
   * worker password of the agent's endpoints, not the owner's): the file is 0600 like the
   * credentials, and a resumed action needs them.
   */
  readonly action: FleetAction;
  readonly since: number;
  readonly attempts: number;
}

/** A pool slot as it was before adoption. Passwords cannot be read back from firmware. */
export interface SavedSlot {
  readonly index: number;
  readonly url: string;
  readonly user: string;
}

export interface SavedSlots {
  readonly savedAt: number;
  readonly slots: readonly SavedSlot[];
  /** Always: no firmware's API returns a pool password, so a restore sets a placeholder. */
  readonly passwords: "not_readable";
}

export interface AdoptInput {
  /** What `detect` found at `endpoint`. */
  readonly identity: Identity;
  readonly endpoint: MinerEndpoint;
  readonly credentialsFile: string | null;
  /** The owner's worker name: each miner's slots carry `<ownerWorker>.<id>`. */
  readonly ownerWorker: string;
  /** The slots read at adoption, before the agent writes its own. */
  readonly previousSlots: readonly PoolSlot[];
}

export interface Adopted {
  readonly miner: FleetMiner;
  /** False when this machine was adopted already (found again by its MAC or serial). */
  readonly created: boolean;
  /** True when it was known at another address (a DHCP move: the same miner). */
  readonly moved: boolean;
}

/** What the executor needs of the inventory: the pending list per miner. */
export interface PendingStore {
  pending(id: string): readonly Pending[];
  /** Replaces the lists of the miners given (an empty list clears), in one write. */
  setPending(lists: Readonly<Record<string, readonly Pending[]>>): void;
  /** Every miner's pending actions, for the executor to resume after a restart. */
  allPending(): Readonly<Record<string, readonly Pending[]>>;
  /** A `seq` greater than any written. */
  nextSeq(): number;
}

interface Doc {
  miners: FleetMiner[];
}

const SHORT: Readonly<Record<Family, string>> = {
  "antminer-s9": "s9",
  "antminer-s19": "s19",
  "braiins-os": "bos",
  luxos: "lux",
  vnish: "vnish",
  bitaxe: "bitaxe",
};

export class Inventory implements PendingStore {
  readonly #path: string;
  readonly #pendingPath: string;
  readonly #slotsPath: string;
  readonly #clock: Clock;
  #doc: Doc;
  #pending: Record<string, readonly Pending[]>;
  #saved: Record<string, SavedSlots>;

  private constructor(dir: string, clock: Clock) {
    this.#path = join(dir, INVENTORY_FILE);
    this.#pendingPath = join(dir, PENDING_FILE);
    this.#slotsPath = join(dir, PREVIOUS_SLOTS_FILE);
    this.#clock = clock;
    this.#doc = loadDoc(this.#path);
    this.#pending = loadPending(this.#pendingPath, new Set(this.#doc.miners.map((m) => m.id)));
    this.#saved = loadSaved(this.#slotsPath);
  }

  /** Reads both files (absent: empty); throws, writing nothing, when either cannot be read. */
  static open(stateDir: string, clock: Clock): Inventory {
    return new Inventory(stateDir, clock);
  }

  list(): readonly FleetMiner[] {
    return this.#doc.miners;
  }

  get(id: string): FleetMiner | undefined {
    return this.#doc.miners.find((m) => m.id === id);
  }

  adopt(input: AdoptInput): Adopted {
    const { identity } = input;
    if (identity.mac === null && identity.serial === null) {
      // Without either, a swapped machine at the address could not be told apart, and the
      // agent would act on a miner the owner never adopted (plugins/identity.ts).
      throw new AgentdError(
        "AGENTD_E_MINER_IDENTITY_CHANGED",
        "the miner reports neither a MAC nor a serial: it cannot be adopted (it could not be told from another machine at its address)",
        { context: { known_mac: null, found_mac: null } },
      );
    }
    const endpoint = cleanEndpoint(input.endpoint);
    const known = this.#doc.miners.find((m) => isSame(m, identity));
    if (known !== undefined) {
      const moved = !sameEndpoint(known.endpoint, endpoint);
      // The machine's facts may have changed (a firmware update); its id, worker and the
      // slots saved at the first adoption stay: its slots now are the agent's own.
      const miner: FleetMiner = {
        ...known,
        endpoint,
        family: identity.family,
        model: identity.model,
        firmware: identity.firmware,
        capabilities: identity.capabilities,
        verifiedOnHardware: identity.verifiedOnHardware,
        slots: identity.capabilities.pools === "yes" ? "owned" : "not_owned",
        credentialsFile: input.credentialsFile,
      };
      this.#replace(miner);
      return { miner, created: false, moved };
    }
    const id = this.#newId(identity);
    const plate = nameplate(identity.model);
    const miner: FleetMiner = {
      id,
      family: identity.family,
      endpoint,
      mac: identity.mac,
      serial: identity.serial,
      model: identity.model,
      firmware: identity.firmware,
      capabilities: identity.capabilities,
      verifiedOnHardware: identity.verifiedOnHardware,
      worker: `${input.ownerWorker}.${id}`,
      credentialsFile: input.credentialsFile,
      slots: identity.capabilities.pools === "yes" ? "owned" : "not_owned",
      nameplateW: plate?.watts ?? null,
      nameplateJth: plate?.jth ?? null,
      adoptedAt: this.#clock.now(),
    };
    // The old slots first: if saving them fails, the miner is not adopted (and not taken).
    this.#saved = {
      ...this.#saved,
      [id]: {
        savedAt: this.#clock.now(),
        slots: input.previousSlots.map((s) => ({ index: s.index, url: s.url, user: s.user })),
        passwords: "not_readable",
      },
    };
    writeStateFile(this.#slotsPath, INVENTORY_FORMAT, this.#saved);
    this.#doc = { miners: [...this.#doc.miners, miner] };
    this.#write();
    return { miner, created: true, moved: false };
  }

  updateEndpoint(id: string, endpoint: MinerEndpoint): FleetMiner {
    const miner = { ...this.#must(id), endpoint: cleanEndpoint(endpoint) };
    this.#replace(miner);
    return miner;
  }

  /**
   * Removes the miner and its pending actions; returns the slots it had before adoption (null
   * when none were saved) for the caller to write back. Pending first, saved slots last, so a
   * crash in between leaves nothing to act on and the slots to a second `forget`.
   */
  forget(id: string): SavedSlots | null {
    this.#must(id);
    const saved = this.#saved[id] ?? null;
    this.setPending({ [id]: [] });
    this.#doc = { miners: this.#doc.miners.filter((m) => m.id !== id) };
    this.#write();
    const { [id]: _gone, ...rest } = this.#saved;
    this.#saved = rest;
    writeStateFile(this.#slotsPath, INVENTORY_FORMAT, this.#saved);
    return saved;
  }

  savedSlots(id: string): SavedSlots | null {
    return this.#saved[id] ?? null;
  }

  pending(id: string): readonly Pending[] {
    return this.#pending[id] ?? [];
  }

  allPending(): Readonly<Record<string, readonly Pending[]>> {
    return this.#pending;
  }

  nextSeq(): number {
    let max = 0;
    for (const list of Object.values(this.#pending))
      for (const p of list) max = Math.max(max, p.seq);
    return max + 1;
  }

  setPending(lists: Readonly<Record<string, readonly Pending[]>>): void {
    const next: Record<string, readonly Pending[]> = { ...this.#pending };
    for (const [id, list] of Object.entries(lists)) {
      // A forgotten miner's late result must not bring its entry back.
      if (list.length === 0 || this.get(id) === undefined) delete next[id];
      else next[id] = [...list];
    }
    this.#pending = next;
    writeStateFile(this.#pendingPath, INVENTORY_FORMAT, this.#pending);
  }

  #newId(identity: Identity): string {
    const short = SHORT[identity.family];
    const source = identity.mac ?? identity.serial ?? "";
    const hex = source.toLowerCase().replace(/[^0-9a-z]/g, "");
    // Six characters are enough to tell a home fleet apart; two machines sharing them (two
    // vendors' MACs ending alike) get the whole identifier instead.
    for (const id of [`${short}-${hex.slice(-6)}`, `${short}-${hex}`]) {
      if (this.get(id) === undefined) return id;
    }
    throw fail("AGENTD_E_INTERNAL", `fleet: no free id for ${source}`);
  }

  #must(id: string): FleetMiner {
    const m = this.get(id);
    if (m === undefined) {
      throw new AgentdError("AGENTD_E_USAGE", `no adopted miner has the id ${JSON.stringify(id)}`);
    }
    return m;
  }

  #replace(miner: FleetMiner): void {
    this.#doc = { miners: this.#doc.miners.map((m) => (m.id === miner.id ? miner : m)) };
    this.#write();
  }

  #write(): void {
    writeStateFile(this.#path, INVENTORY_FORMAT, this.#doc);
  }
}

function isSame(known: FleetMiner, found: Identity): boolean {
  try {
    assertSameMiner(known, found);
    return true;
  } catch {
    return false;
  }
}

/** Only the ports given: the state file refuses `undefined` members. */
function cleanEndpoint(e: MinerEndpoint): MinerEndpoint {
  return {
    host: e.host,
    ...(e.apiPort === undefined ? {} : { apiPort: e.apiPort }),
    ...(e.webPort === undefined ? {} : { webPort: e.webPort }),
    ...(e.grpcPort === undefined ? {} : { grpcPort: e.grpcPort }),
  };
}

function sameEndpoint(a: MinerEndpoint, b: MinerEndpoint): boolean {
  return (
    a.host === b.host &&
    a.apiPort === b.apiPort &&
    a.webPort === b.webPort &&
    a.grpcPort === b.grpcPort
  );
}

function corrupt(path: string, why: string): AgentdError {
  return fail("AGENTD_E_FILE_CORRUPT", `${path}: not a fleet inventory: ${why}`, { path });
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function loadDoc(path: string): Doc {
  const file = readStateFile(path, { format: INVENTORY_FORMAT });
  if (file === undefined) return { miners: [] };
  const d = file.data;
  if (!isObject(d) || !Array.isArray(d.miners)) throw corrupt(path, `"miners" must be an array`);
  const ids = new Set<string>();
  for (const m of d.miners) {
    if (!isObject(m) || typeof m.id !== "string" || !isObject(m.endpoint)) {
      throw corrupt(path, "a miner without an id or endpoint");
    }
    if (typeof m.family !== "string" || !Object.hasOwn(SHORT, m.family)) {
      throw corrupt(path, `${m.id}: unknown family ${JSON.stringify(m.family)}`);
    }
    if (m.mac === null && m.serial === null) throw corrupt(path, `${m.id}: no MAC or serial`);
    if (ids.has(m.id)) throw corrupt(path, `${m.id}: adopted twice`);
    ids.add(m.id);
  }
  return { miners: d.miners as unknown as FleetMiner[] };
}

function loadPending(path: string, adopted: ReadonlySet<string>): Record<string, Pending[]> {
  const file = readStateFile(path, { format: INVENTORY_FORMAT });
  if (file === undefined) return {};
  const d = file.data;
  if (!isObject(d)) throw corrupt(path, "not an object of pending actions");
  const out: Record<string, Pending[]> = {};
  for (const [id, list] of Object.entries(d)) {
    if (!Array.isArray(list)) throw corrupt(path, `${id}: pending is not a list`);
    for (const p of list) {
      if (
        !isObject(p) ||
        typeof p.seq !== "number" ||
        !isObject(p.action) ||
        p.action.miner !== id ||
        typeof p.action.kind !== "string"
      ) {
        throw corrupt(path, `${id}: a pending action without seq, kind or this miner`);
      }
    }
    // A miner forgotten by a `forget` cut short: nothing is sent to it.
    if (adopted.has(id)) out[id] = list as Pending[];
  }
  return out;
}

function loadSaved(path: string): Record<string, SavedSlots> {
  const file = readStateFile(path, { format: INVENTORY_FORMAT });
  if (file === undefined) return {};
  const d = file.data;
  if (!isObject(d)) throw corrupt(path, "not an object of saved slots");
  for (const [id, s] of Object.entries(d)) {
    if (!isObject(s) || !Array.isArray(s.slots)) throw corrupt(path, `${id}: no slots`);
  }
  return d as unknown as Record<string, SavedSlots>;
}
