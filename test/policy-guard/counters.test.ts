import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { fixedClock } from "../../lib/clock.ts";
import { writeStateFile } from "../../lib/fs/state-file.ts";
import { makeBundle } from "../../policy-guard/sign.ts";
import { GUARD_STATE_FORMAT, loadGuardState } from "../../policy-guard/state.ts";
import { EMPTY_COUNTERS, verifyDocuments } from "../../policy-guard/verify.ts";
import { useTmpDir } from "../support/tmp.ts";
import {
  consentFor,
  makeKeys,
  makeWorld,
  publicationFor,
  T0,
  type World,
} from "./engine-fixture.ts";

/**
 * Issue 15: the publication version is scoped to the consent in force (DOCUMENTS.md section
 * 4), so a stolen publication key that exhausts it (version 2^53 − 1) cannot lock the owner
 * out: the owner's next consent starts a fresh version space. Within one consent the rule
 * stays (strictly increasing, equal only for the identical document), and an older consent
 * stays refused whatever its version.
 */

const tmp = useTmpDir("agentd-counters-");
const worlds: World[] = [];
afterEach(() => {
  for (const w of worlds.splice(0)) w.close();
});

const keys = makeKeys();
const MAX = Number.MAX_SAFE_INTEGER;

function setup() {
  const clock = fixedClock(T0);
  const w = makeWorld(tmp(), keys, clock);
  worlds.push(w);
  return w;
}

/** A document's identity, hashed here: sha256 hex of the signing input (DOCUMENTS.md 1). */
function documentIdentity(jws: string): string {
  return createHash("sha256").update(jws.split(".").slice(0, 2).join(".")).digest("hex");
}

function stateFileOf(w: World): { format: number; data: { counters: Record<string, unknown> } } {
  return JSON.parse(readFileSync(w.stateFile, "utf8"));
}

describe("publication versions per consent", () => {
  it("a stolen key's version 2^53 − 1 under consent 1 does not lock out the owner's consent 2", async () => {
    const w = setup();
    const h = w.engine();
    await h.engine.start();
    const c1 = consentFor(keys, { seq: 1 });
    const accepted = { accepted: true, reasons: [] };
    expect(
      await h.engine.submitBundle(makeBundle(c1, publicationFor(keys, c1, { version: 1 })), "cp"),
    ).toEqual(accepted);
    // The stolen publication key countersigns the consent in force with the last version.
    const stolen = makeBundle(c1, publicationFor(keys, c1, { version: MAX }));
    expect(await h.engine.submitBundle(stolen, "attacker")).toEqual(accepted);
    // Under consent 1 the honest control plane can no longer publish: the rule stays.
    const honest1 = makeBundle(c1, publicationFor(keys, c1, { version: 2 }));
    expect(await h.engine.submitBundle(honest1, "cp")).toEqual({
      accepted: false,
      reasons: ["publication.version_rollback"],
    });

    // The owner signs consent 2; the honest control plane countersigns it with version 1.
    const c2 = consentFor(keys, { seq: 2 });
    const b2 = makeBundle(c2, publicationFor(keys, c2, { version: 1 }));
    expect(await h.engine.submitBundle(b2, "cp")).toEqual(accepted);
    expect(h.mining.last()).toMatchObject({ allow: true, reasons: [] });
    expect(stateFileOf(w).data.counters).toMatchObject({
      highestSeq: 2,
      highestVersion: 1,
      versionConsentId: documentIdentity(c2),
    });
    h.engine.close();

    // After a restart, too: the stored bundle verifies and mines.
    const r = w.engine();
    await r.engine.start();
    expect(r.mining.last()).toMatchObject({ allow: true, reasons: [] });
    // Within consent 2 the version rule holds again: the identical document is accepted,
    // another document with the same version is a conflict, a higher version is accepted.
    expect(await r.engine.submitBundle(b2, "cp")).toEqual(accepted);
    const other1 = makeBundle(c2, publicationFor(keys, c2, { version: 1, iat: T0 / 1000 - 30 }));
    expect(await r.engine.submitBundle(other1, "cp")).toEqual({
      accepted: false,
      reasons: ["publication.version_conflict"],
    });
    const next = makeBundle(c2, publicationFor(keys, c2, { version: 2 }));
    expect(await r.engine.submitBundle(next, "cp")).toEqual(accepted);
    // An older consent never comes back, whatever version its publication carries.
    for (const version of [3, MAX]) {
      const old = makeBundle(c1, publicationFor(keys, c1, { version }));
      expect(await r.engine.submitBundle(old, "attacker")).toEqual({
        accepted: false,
        reasons: ["consent.seq_rollback"],
      });
    }
    expect(r.mining.last()).toMatchObject({ allow: true, reasons: [] });
  });

  it("the same consent presented again keeps its version space (no reset by re-sending it)", async () => {
    const w = setup();
    const h = w.engine();
    await h.engine.start();
    const c1 = consentFor(keys, { seq: 1 });
    await h.engine.submitBundle(makeBundle(c1, publicationFor(keys, c1, { version: 10 })), "cp");
    const lower = makeBundle(c1, publicationFor(keys, c1, { version: 9 }));
    expect(await h.engine.submitBundle(lower, "cp")).toEqual({
      accepted: false,
      reasons: ["publication.version_rollback"],
    });
  });
});

describe("verifyDocuments: the version counts for the consent it was accepted under", () => {
  const c = consentFor(keys, { seq: 1 });
  const bundle = makeBundle(c, publicationFor(keys, c, { version: 1 }));
  const reasonsWith = (versionConsentId: string | null) =>
    verifyDocuments({
      bundle,
      trust: { owner: keys.ownerPublic, publication: [keys.cpPublic] },
      worker: keys.worker,
      counters: {
        ...EMPTY_COUNTERS,
        highestVersion: MAX,
        highestVersionId: "e".repeat(64),
        versionConsentId,
      },
    }).publicationReasons;

  it.each([
    ["this consent", () => documentIdentity(c), ["publication.version_rollback"]],
    ["no consent in particular (the strict reading)", () => null, ["publication.version_rollback"]],
    ["another consent (a new version space)", () => "f".repeat(64), []],
  ])("a version 2^53 − 1 accepted for %s", (_what, id, reasons) => {
    expect(reasonsWith(id())).toEqual(reasons);
  });
});

describe("guard state format 1", () => {
  it("loads, its counters applying to the consent in force at the upgrade, and is written as format 2", async () => {
    const w = setup();
    const c1 = consentFor(keys, { seq: 1 });
    const stolen = publicationFor(keys, c1, { version: MAX });
    // The file an agent from before issue 15 left: version counters for no consent in
    // particular (format 1), here exhausted by a stolen key.
    writeStateFile(w.stateFile, 1, {
      counters: {
        highestSeq: 1,
        highestSeqId: documentIdentity(c1),
        highestVersion: MAX,
        highestVersionId: documentIdentity(stolen),
        revokedThroughSeq: 0,
        clockFloorS: T0 / 1000 - 10,
        decommissioned: false,
      },
      bundle: { consent: c1, publication: stolen },
      rotated_owner_jwk: null,
    });
    expect(GUARD_STATE_FORMAT).toBe(2);
    expect(loadGuardState(w.stateFile).counters).toEqual({
      highestSeq: 1,
      highestSeqId: documentIdentity(c1),
      highestVersion: MAX,
      highestVersionId: documentIdentity(stolen),
      versionConsentId: documentIdentity(c1),
      revokedThroughSeq: 0,
      clockFloorS: T0 / 1000 - 10,
      decommissioned: false,
    });
    const h = w.engine();
    await h.engine.start();
    expect(h.mining.last()).toMatchObject({ allow: true, reasons: [] });
    // The old counters bind consent 1 ...
    const honest1 = makeBundle(c1, publicationFor(keys, c1, { version: 5 }));
    expect(await h.engine.submitBundle(honest1, "cp")).toEqual({
      accepted: false,
      reasons: ["publication.version_rollback"],
    });
    // ... and not the owner's next consent.
    const c2 = consentFor(keys, { seq: 2 });
    const b2 = makeBundle(c2, publicationFor(keys, c2, { version: 5 }));
    expect(await h.engine.submitBundle(b2, "cp")).toEqual({ accepted: true, reasons: [] });
    const file = stateFileOf(w);
    expect(file.format).toBe(2);
    expect(file.data.counters).toMatchObject({
      highestVersion: 5,
      versionConsentId: documentIdentity(c2),
    });
  });
});
