import type { KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { fixedClock } from "../../lib/clock.ts";
import { jwkThumbprint, publicJwk, publicKeyOf } from "../../lib/crypto/ed25519.ts";
import { writeStateFile } from "../../lib/fs/state-file.ts";
import {
  afterRotation,
  MAX_SEEN_ROTATIONS,
  NO_ROTATIONS,
  refuseRotation,
} from "../../policy-guard/rotation.ts";
import {
  makeBundle,
  signDecommission,
  signOwnerRotation,
  signRevocation,
} from "../../policy-guard/sign.ts";
import { loadGuardState } from "../../policy-guard/state.ts";
import { useTmpDir } from "../support/tmp.ts";
import {
  bundleFor,
  consentFor,
  makeKeys,
  makeWorld,
  publicationFor,
  T0,
  type World,
} from "./engine-fixture.ts";

/**
 * Owner-key rotations in the enforcement engine (policy-guard/rotation.ts): the old key signs
 * nothing accepted afterwards, the consent in force survives, a rotation is single-use and
 * ordered by iat — with real keys, a real state file and a real audit log.
 */

const tmp = useTmpDir("agentd-rotation-");
const worlds: World[] = [];
afterEach(() => {
  for (const w of worlds.splice(0)) w.close();
});
const keys = makeKeys();
const nowS = (clock: { now(): number }) => Math.floor(clock.now() / 1000);

function setup() {
  const clock = fixedClock(T0);
  const w = makeWorld(tmp(), keys, clock);
  worlds.push(w);
  return { clock, w };
}

/** A started engine mining on consent seq 1 (signed by the first owner key), version 1. */
async function installed(w: World) {
  const h = w.engine();
  await h.engine.start();
  const consent = consentFor(keys, { seq: 1 });
  expect(await h.engine.submitBundle(republished(consent, 1), "cp")).toEqual({
    accepted: true,
    reasons: [],
  });
  return Object.assign(h, { consent });
}

/** The consent with a new publication (what the control plane re-issues). */
const republished = (consent: string, version: number) =>
  makeBundle(consent, publicationFor(keys, consent, { version }));

const rotate = (from: KeyObject, to: KeyObject, iat: number) =>
  signOwnerRotation({ ownerKey: from, worker: keys.worker, newOwnerKey: to, iat });

const ofType = (w: World, type: string) => w.records().filter((r) => r.type === type);
const thumb = (k: KeyObject) => jwkThumbprint(publicKeyOf(k));

describe("after a rotation", () => {
  it("the consent in force keeps mining, across a restart and under new publications", async () => {
    const { clock, w } = setup();
    const h = await installed(w);
    const consentId = h.engine.documents().consent?.identity;
    expect(
      await h.engine.submitOwnerRotation(rotate(keys.owner, keys.newOwner, nowS(clock)), "local"),
    ).toEqual({ accepted: true, reasons: [] });
    expect(h.engine.ownerId()).toBe(thumb(keys.newOwner));
    expect(h.mining.last()).toMatchObject({ allow: true, reasons: [] });
    expect(ofType(w, "owner.rotated").at(-1)).toMatchObject({
      data: {
        source: "local",
        from: thumb(keys.owner),
        to: thumb(keys.newOwner),
        consent_retained: consentId,
      },
    });
    // The control plane re-issues publications for that consent: still accepted.
    expect(await h.engine.submitBundle(republished(h.consent, 2), "cp")).toEqual({
      accepted: true,
      reasons: [],
    });
    h.engine.close();
    const restarted = w.engine();
    await restarted.engine.start();
    expect(restarted.engine.ownerId()).toBe(thumb(keys.newOwner));
    expect(restarted.mining.last()).toMatchObject({ allow: true, reasons: [] });
  });

  it("the old key signs nothing accepted: consent, revocation, decommission, rotation", async () => {
    const { clock, w } = setup();
    const h = await installed(w);
    await h.engine.submitOwnerRotation(rotate(keys.owner, keys.newOwner, nowS(clock)), "cp");
    const iat = nowS(clock);
    expect(await h.engine.submitBundle(bundleFor(keys, { seq: 2 }, { version: 2 }), "cp")).toEqual({
      accepted: false,
      reasons: ["consent.unknown_key"],
    });
    const old = { ownerKey: keys.owner, worker: keys.worker, iat };
    expect(
      await h.engine.submitRevocation(signRevocation({ ...old, throughSeq: 1 }), "cp"),
    ).toEqual({ accepted: false, reasons: ["AGENTD_E_JWS_UNKNOWN_KEY"] });
    expect(await h.engine.submitDecommission(signDecommission(old), "cp")).toEqual({
      accepted: false,
      reasons: ["AGENTD_E_JWS_UNKNOWN_KEY"],
    });
    expect(
      await h.engine.submitOwnerRotation(rotate(keys.owner, keys.stranger, iat + 1), "cp"),
    ).toEqual({ accepted: false, reasons: ["AGENTD_E_JWS_UNKNOWN_KEY"] });
    // Nothing of that changed anything: still mining on consent 1, still the new key.
    expect(h.mining.last()).toMatchObject({ allow: true, reasons: [] });
    expect(h.engine.ownerId()).toBe(thumb(keys.newOwner));
    const refused = ofType(w, "document.refused").map((r) => (r.data as { kind: string }).kind);
    expect(refused).toEqual(["bundle", "revocation", "decommission", "rotation"]);
  });

  it("the new key's consent replaces the retained one, which cannot come back", async () => {
    const { clock, w } = setup();
    const h = await installed(w);
    await h.engine.submitOwnerRotation(rotate(keys.owner, keys.newOwner, nowS(clock)), "cp");
    const byNew = bundleFor(keys, { seq: 2, signer: keys.newOwner }, { version: 2 });
    expect(await h.engine.submitBundle(byNew, "cp")).toEqual({ accepted: true, reasons: [] });
    expect(h.engine.documents().consent?.payload.owner).toBe(thumb(keys.newOwner));
    expect(h.mining.last()).toMatchObject({ allow: true, reasons: [] });
    expect((await h.engine.submitBundle(republished(h.consent, 3), "cp")).reasons).toContain(
      "consent.seq_rollback",
    );
    // After a restart, a revocation by the new key reaches its consent as any other.
    h.engine.close();
    const h2 = w.engine();
    await h2.engine.start();
    expect(h2.mining.last().allow).toBe(true);
    const revoke = signRevocation({
      ownerKey: keys.newOwner,
      worker: keys.worker,
      throughSeq: 2,
      iat: nowS(clock),
    });
    expect(await h2.engine.submitRevocation(revoke, "cp")).toEqual({ accepted: true, reasons: [] });
    expect(h2.mining.last().reasons).toContain("consent.revoked");
  });

  it("a consent the old key signed before the rotation but delivered after is refused", async () => {
    const { clock, w } = setup();
    const h = await installed(w);
    const signedBefore = bundleFor(keys, { seq: 2 }, { version: 2 });
    await h.engine.submitOwnerRotation(rotate(keys.owner, keys.newOwner, nowS(clock)), "cp");
    expect(await h.engine.submitBundle(signedBefore, "cp")).toEqual({
      accepted: false,
      reasons: ["consent.unknown_key"],
    });
  });

  it("with no consent in force, nothing is retained and the new key's first consent mines", async () => {
    const { clock, w } = setup();
    const h = w.engine();
    await h.engine.start();
    await h.engine.submitOwnerRotation(rotate(keys.owner, keys.newOwner, nowS(clock)), "cp");
    expect(ofType(w, "owner.rotated").at(-1)).toMatchObject({ data: { consent_retained: null } });
    expect(await h.engine.submitBundle(bundleFor(keys, { seq: 1 }, { version: 1 }), "cp")).toEqual({
      accepted: false,
      reasons: ["consent.unknown_key"],
    });
    const byNew = bundleFor(keys, { seq: 1, signer: keys.newOwner }, { version: 1 });
    expect(await h.engine.submitBundle(byNew, "cp")).toEqual({ accepted: true, reasons: [] });
    expect(h.mining.last().allow).toBe(true);
  });
});

describe("rotations are single-use and ordered", () => {
  it("A→B, B→A, then the replayed A→B is refused and A stays the owner, also after a restart", async () => {
    const { clock, w } = setup();
    const h = await installed(w);
    const t = nowS(clock);
    const aToB = rotate(keys.owner, keys.newOwner, t);
    const bToA = rotate(keys.newOwner, keys.owner, t + 1);
    clock.set(T0 + 1000);
    expect(await h.engine.submitOwnerRotation(aToB, "cp")).toEqual({ accepted: true, reasons: [] });
    expect(await h.engine.submitOwnerRotation(bToA, "cp")).toEqual({ accepted: true, reasons: [] });
    expect(h.engine.ownerId()).toBe(thumb(keys.owner));
    // Signed by A, the key in force: only its identity tells the replay apart.
    expect(await h.engine.submitOwnerRotation(aToB, "push")).toEqual({
      accepted: false,
      reasons: ["rotation.replayed"],
    });
    expect(h.engine.ownerId()).toBe(thumb(keys.owner));
    expect(ofType(w, "document.refused").at(-1)).toMatchObject({
      data: { kind: "rotation", source: "push", reasons: ["rotation.replayed"] },
    });
    // B→A again: named a replay although B is retired.
    expect((await h.engine.submitOwnerRotation(bToA, "cp")).reasons).toEqual(["rotation.replayed"]);
    // The consent of the beginning, signed by A, mined throughout.
    expect(h.mining.last()).toMatchObject({ allow: true, reasons: [] });
    h.engine.close();
    const restarted = w.engine();
    await restarted.engine.start();
    expect((await restarted.engine.submitOwnerRotation(aToB, "cp")).reasons).toEqual([
      "rotation.replayed",
    ]);
    expect(restarted.engine.ownerId()).toBe(thumb(keys.owner));
    expect(restarted.engine.knowsRotation(aToB)).toBe(true);
  });

  it("a new rotation must be later than the last accepted, and not in the future", async () => {
    const { clock, w } = setup();
    const h = w.engine();
    await h.engine.start();
    const t = nowS(clock);
    expect(
      (await h.engine.submitOwnerRotation(rotate(keys.owner, keys.newOwner, t), "cp")).accepted,
    ).toBe(true);
    // Fresh documents (new nonces), signed by the key in force, dated at or before the last.
    for (const iat of [t, t - 3600]) {
      const older = rotate(keys.newOwner, keys.stranger, iat);
      expect(h.engine.knowsRotation(older)).toBe(true);
      expect(await h.engine.submitOwnerRotation(older, "cp")).toEqual({
        accepted: false,
        reasons: ["rotation.stale"],
      });
    }
    const future = rotate(keys.newOwner, keys.stranger, t + 61);
    expect(h.engine.knowsRotation(future)).toBe(false);
    expect((await h.engine.submitOwnerRotation(future, "cp")).reasons).toEqual([
      "rotation.not_yet_valid",
    ]);
    expect(h.engine.ownerId()).toBe(thumb(keys.newOwner));
    // One second later than the last is enough; 60 s ahead is the skew, still accepted.
    const next = rotate(keys.newOwner, keys.stranger, t + 60);
    expect(await h.engine.submitOwnerRotation(next, "cp")).toEqual({ accepted: true, reasons: [] });
    expect(h.engine.ownerId()).toBe(thumb(keys.stranger));
  });

  it("refuses a rotation to the key in force, and one for another machine", async () => {
    const { clock, w } = setup();
    const h = w.engine();
    await h.engine.start();
    const t = nowS(clock);
    expect(
      (await h.engine.submitOwnerRotation(rotate(keys.owner, keys.owner, t), "cp")).reasons,
    ).toEqual(["AGENTD_E_JWS_PAYLOAD"]);
    const other = signOwnerRotation({
      ownerKey: keys.owner,
      worker: keys.otherWorker,
      newOwnerKey: keys.newOwner,
      iat: t,
    });
    expect((await h.engine.submitOwnerRotation(other, "cp")).reasons).toEqual([
      "AGENTD_E_JWS_PAYLOAD",
    ]);
    expect(h.engine.ownerId()).toBe(thumb(keys.owner));
    // Neither counted as seen: the refused documents leave the history as it was.
    const onDisk = JSON.parse(readFileSync(w.stateFile, "utf8")) as {
      data: { rotation: { seen: string[]; last_iat: number } };
    };
    expect(onDisk.data.rotation).toMatchObject({ seen: [], last_iat: 0 });
  });

  it("a machine enrolled again under another owner key follows that pin, not the rotations", async () => {
    const { clock, w } = setup();
    const h = await installed(w);
    const aToB = rotate(keys.owner, keys.newOwner, nowS(clock));
    await h.engine.submitOwnerRotation(aToB, "cp");
    h.engine.close();
    // Local root enrolled it again with --owner-pub <stranger>.
    const strangerPub = publicKeyOf(keys.stranger);
    const repinned = w.engine({ trust: { owner: strangerPub, publication: [keys.cpPublic] } });
    await repinned.engine.start();
    expect(repinned.engine.ownerId()).toBe(jwkThumbprint(strangerPub));
    // The retained consent (signed by the first key) went with the rotations.
    expect(repinned.mining.last().reasons).toContain("consent.unknown_key");
    // The history stays: the old rotation is still a replay.
    expect((await repinned.engine.submitOwnerRotation(aToB, "cp")).reasons).toEqual([
      "rotation.replayed",
    ]);
  });
});

describe("the rotation history (policy-guard/rotation.ts)", () => {
  it("keeps the last MAX_SEEN_ROTATIONS identities; older ones are stale by iat", () => {
    let h = NO_ROTATIONS;
    const enrolled = publicKeyOf(keys.owner);
    const ids = Array.from({ length: MAX_SEEN_ROTATIONS + 5 }, (_, i) =>
      i.toString(16).padStart(64, "0"),
    );
    ids.forEach((identity, i) => {
      h = afterRotation(h, { identity, iat: 1000 + i, enrolled, retained: null });
    });
    expect(h.seen).toHaveLength(MAX_SEEN_ROTATIONS);
    expect(h.seen[0]).toBe(ids[5]);
    expect(h.lastIat).toBe(1000 + ids.length - 1);
    expect(refuseRotation(h, { identity: ids[0] as string, iat: 1000, nowS: 5000 })).toBe(
      "rotation.stale",
    );
    expect(refuseRotation(h, { identity: ids.at(-1) as string, iat: 9999, nowS: 9999 })).toBe(
      "rotation.replayed",
    );
    expect(refuseRotation(h, { identity: "f".repeat(64), iat: h.lastIat + 1, nowS: 5000 })).toBe(
      null,
    );
  });

  it("reads a format-1 state (no history) with its rotated key; refuses a malformed history", () => {
    const dir = tmp();
    const path = `${dir}/policy-state.json`;
    const counters = {
      highestSeq: 0,
      highestSeqId: null,
      highestVersion: 0,
      highestVersionId: null,
      revokedThroughSeq: 0,
      clockFloorS: 0,
      decommissioned: false,
    };
    const rotated = { ...publicJwk(publicKeyOf(keys.newOwner)) };
    writeStateFile(path, 1, { counters, bundle: null, rotated_owner_jwk: rotated });
    const old = loadGuardState(path);
    expect(old.rotation).toEqual(NO_ROTATIONS);
    expect(old.rotatedOwner && jwkThumbprint(old.rotatedOwner)).toBe(thumb(keys.newOwner));
    // format 2 binds the version counter to a consent (versionConsentId) and needs a history
    const counters2 = { ...counters, versionConsentId: null };
    writeStateFile(path, 2, { counters: counters2, bundle: null, rotated_owner_jwk: rotated });
    expect(() => loadGuardState(path)).toThrow(/policy-state\.json: rotation\. is malformed/);
    const seen = ["x"];
    writeStateFile(path, 2, {
      counters: counters2,
      bundle: null,
      rotated_owner_jwk: null,
      rotation: { last_iat: 0, seen, base: null, retained: null },
    });
    expect(() => loadGuardState(path)).toThrow(/rotation\.seen/);
  });
});
