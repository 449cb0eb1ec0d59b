import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  INVENTORY_FILE,
  Inventory,
  PENDING_FILE,
  PREVIOUS_SLOTS_FILE,
} from "../../fleet/inventory.ts";
import { nameplate } from "../../fleet/nameplate.ts";
import { fixedClock } from "../../lib/clock.ts";
import { isAgentdError } from "../../lib/errors.ts";
import { writeStateFile } from "../../lib/fs/state-file.ts";
import { useTmpDir } from "../support/tmp.ts";
import { OWNER_SLOTS, s19Identity } from "./fleet-fixtures.ts";

const tmp = useTmpDir("agentd-fleet-inv-");
const clock = fixedClock(1_750_000_000_000);
const EP = { host: "192.168.1.20", apiPort: 4028, webPort: 80 };

function adoptS19(inv: Inventory, over = {}) {
  return inv.adopt({
    identity: s19Identity(over),
    endpoint: EP,
    credentialsFile: null,
    ownerWorker: "alice",
    previousSlots: OWNER_SLOTS,
  });
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isAgentdError(err)) return err.code;
    throw err;
  }
  throw new Error("expected a throw");
}

describe("fleet inventory", () => {
  it("adopts by MAC: a short stable id, worker, slots owned, nameplate; persisted 0600", () => {
    const dir = tmp();
    const inv = Inventory.open(dir, clock);
    const { miner, created } = adoptS19(inv);
    expect(created).toBe(true);
    expect(miner.id).toBe("s19-3f2a1c");
    expect(miner.worker).toBe("alice.s19-3f2a1c");
    expect(miner.slots).toBe("owned");
    expect(miner.nameplateW).toBe(3250);
    expect(miner.nameplateJth).toBe(34.5);
    expect(miner.endpoint).toEqual(EP);
    for (const f of [INVENTORY_FILE, PREVIOUS_SLOTS_FILE]) {
      expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);
    }
    // Another process (a restart) sees the same miner.
    expect(Inventory.open(dir, clock).list()).toEqual([miner]);
  });

  it("an id from the serial when the firmware reports no MAC; refuses neither", () => {
    const inv = Inventory.open(tmp(), clock);
    expect(adoptS19(inv, { mac: null }).miner.id).toBe("s19-234567");
    expect(codeOf(() => adoptS19(inv, { mac: null, serial: null }))).toBe(
      "AGENTD_E_MINER_IDENTITY_CHANGED",
    );
    expect(inv.list()).toHaveLength(1);
  });

  it("two MACs ending alike get the whole MAC as id", () => {
    const inv = Inventory.open(tmp(), clock);
    adoptS19(inv);
    const b = adoptS19(inv, { mac: "0a:bb:cc:3f:2a:1c", serial: "OTHER" });
    expect(b.miner.id).toBe("s19-0abbcc3f2a1c");
    expect(inv.list()).toHaveLength(2);
  });

  it("the same MAC at a new address is the same miner moved (DHCP): endpoint updated, old slots kept", () => {
    const dir = tmp();
    const inv = Inventory.open(dir, clock);
    const first = adoptS19(inv).miner;
    const again = inv.adopt({
      identity: s19Identity({ firmware: "BMMiner 2.0.0" }),
      endpoint: { host: "192.168.1.77" },
      credentialsFile: null,
      ownerWorker: "alice",
      // What it shows now are the agent's own slots: they must not replace the owner's.
      previousSlots: [
        { index: 0, url: "stratum+tcp://agent:3333", user: "x", status: "alive", active: true },
      ],
    });
    expect(again.created).toBe(false);
    expect(again.moved).toBe(true);
    expect(again.miner.id).toBe(first.id);
    expect(again.miner.endpoint).toEqual({ host: "192.168.1.77" });
    expect(again.miner.firmware).toBe("BMMiner 2.0.0");
    const reopened = Inventory.open(dir, clock);
    expect(reopened.list().map((m) => m.endpoint.host)).toEqual(["192.168.1.77"]);
    expect(reopened.savedSlots(first.id)?.slots.map((s) => s.url)).toEqual(
      OWNER_SLOTS.map((s) => s.url),
    );
  });

  it("updateEndpoint persists; an unknown id is a usage error", () => {
    const dir = tmp();
    const inv = Inventory.open(dir, clock);
    const { miner } = adoptS19(inv);
    inv.updateEndpoint(miner.id, { host: "10.0.0.5", apiPort: 4029 });
    expect(Inventory.open(dir, clock).get(miner.id)?.endpoint).toEqual({
      host: "10.0.0.5",
      apiPort: 4029,
    });
    expect(codeOf(() => inv.updateEndpoint("s9-nope", { host: "x" }))).toBe("AGENTD_E_USAGE");
  });

  it("forget returns the slots saved at adoption (URL and user, passwords not readable) and removes all", () => {
    const dir = tmp();
    const inv = Inventory.open(dir, clock);
    const { miner } = adoptS19(inv);
    inv.setPending({
      [miner.id]: [
        { seq: 1, action: { miner: miner.id, kind: "sleep", why: "t" }, since: 1, attempts: 0 },
      ],
    });
    const saved = inv.forget(miner.id);
    expect(saved).toEqual({
      savedAt: clock.now(),
      slots: [
        { index: 0, url: "stratum+tcp://pool.example:3333", user: "owner.rig1" },
        { index: 1, url: "stratum+tcp://backup.example:443", user: "owner.rig1" },
      ],
      passwords: "not_readable",
    });
    const reopened = Inventory.open(dir, clock);
    expect(reopened.list()).toEqual([]);
    expect(reopened.savedSlots(miner.id)).toBeNull();
    expect(reopened.allPending()).toEqual({});
    // Slots never carry a password field, anywhere.
    expect(readFileSync(join(dir, INVENTORY_FILE), "utf8")).not.toContain("password");
    expect(readFileSync(join(dir, PENDING_FILE), "utf8")).toBe('{"format":1,"data":{}}\n');
  });

  it("restart keeps the pending actions, in order, with their attempts", () => {
    const dir = tmp();
    const inv = Inventory.open(dir, clock);
    const { miner } = adoptS19(inv);
    const pend = [
      {
        seq: 3,
        action: { miner: miner.id, kind: "sleep" as const, why: "deny" },
        since: 5,
        attempts: 2,
      },
      {
        seq: 4,
        action: {
          miner: miner.id,
          kind: "setPowerMode" as const,
          mode: "low" as const,
          why: "cap",
        },
        since: 6,
        attempts: 0,
      },
    ];
    inv.setPending({ [miner.id]: pend });
    expect(statSync(join(dir, PENDING_FILE)).mode & 0o777).toBe(0o600);
    const reopened = Inventory.open(dir, clock);
    expect(reopened.pending(miner.id)).toEqual(pend);
    expect(reopened.nextSeq()).toBe(5);
    reopened.setPending({ [miner.id]: [] });
    expect(Inventory.open(dir, clock).allPending()).toEqual({});
  });

  it("a damaged file is refused with a clear error and left as it was", () => {
    const dir = tmp();
    adoptS19(Inventory.open(dir, clock));
    const path = join(dir, INVENTORY_FILE);
    const cut = readFileSync(path, "utf8").slice(0, 40);
    writeFileSync(path, cut, { mode: 0o600 });
    expect(codeOf(() => Inventory.open(dir, clock))).toBe("AGENTD_E_FILE_CORRUPT");
    expect(readFileSync(path, "utf8")).toBe(cut);
    // Whole JSON of the wrong shape is as corrupt, with what is wrong named.
    writeStateFile(path, 1, { miners: {} });
    try {
      Inventory.open(dir, clock);
      expect.unreachable();
    } catch (err) {
      expect(isAgentdError(err) && err.code).toBe("AGENTD_E_FILE_CORRUPT");
      expect(String(err)).toContain('"miners" must be an array');
    }
  });

  it("a newer format is refused, not overwritten", () => {
    const dir = tmp();
    const path = join(dir, INVENTORY_FILE);
    writeStateFile(path, 2, { miners: [], meters: [] });
    const before = readFileSync(path, "utf8");
    expect(codeOf(() => Inventory.open(dir, clock))).toBe("AGENTD_E_FILE_FORMAT_NEWER");
    expect(readFileSync(path, "utf8")).toBe(before);
    writeStateFile(join(dir, PREVIOUS_SLOTS_FILE), 9, {});
    writeStateFile(path, 1, { miners: [] });
    expect(codeOf(() => Inventory.open(dir, clock))).toBe("AGENTD_E_FILE_FORMAT_NEWER");
    writeStateFile(join(dir, PREVIOUS_SLOTS_FILE), 1, {});
    writeStateFile(join(dir, PENDING_FILE), 2, {});
    expect(codeOf(() => Inventory.open(dir, clock))).toBe("AGENTD_E_FILE_FORMAT_NEWER");
  });
});

describe("nameplate", () => {
  it("knows the common models by any spelling; unknown is null", () => {
    expect(nameplate("Antminer S9")).toEqual({ watts: 1323, jth: 98 });
    expect(nameplate("Antminer S19j Pro")).toEqual({ watts: 3050, jth: 30.5 });
    expect(nameplate("antminer  S19 Pro")?.jth).toBe(29.5);
    expect(nameplate("Bitaxe Ultra (BM1366, board 204)")?.watts).toBeLessThanOrEqual(25);
    expect(nameplate("Antminer S21")).toBeNull();
  });
});
