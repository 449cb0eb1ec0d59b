import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { generateEd25519KeyPair, jwkThumbprint } from "../../lib/crypto/ed25519.ts";
import { AgentdError } from "../../lib/errors.ts";
import { writeStateFile } from "../../lib/fs/state-file.ts";
import {
  EMPTY_STATE,
  GUARD_STATE_FORMAT,
  loadGuardState,
  saveGuardState,
} from "../../policy-guard/state.ts";
import { useTmpDir } from "../support/tmp.ts";

const tmp = useTmpDir();

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    if (err instanceof AgentdError) return err.code;
    throw err;
  }
  return "none";
}

describe("guard state file", () => {
  it("is empty when absent, and round-trips counters, bundle, a rotated owner key and the rotations", () => {
    const p = join(tmp(), "policy-state.json");
    expect(loadGuardState(p)).toBe(EMPTY_STATE);
    const owner = generateEd25519KeyPair().publicKey;
    const state = {
      counters: {
        highestSeq: 7,
        highestSeqId: "a".repeat(64),
        highestVersion: 42,
        highestVersionId: "b".repeat(64),
        versionConsentId: "a".repeat(64),
        revokedThroughSeq: 3,
        clockFloorS: 1795300000,
        decommissioned: false,
      },
      bundle: { consent: "c.c.c", publication: "p.p.p" },
      rotatedOwner: owner,
      rotation: {
        lastIat: 1795300000,
        seen: ["c".repeat(64)],
        base: jwkThumbprint(generateEd25519KeyPair().publicKey),
        retained: { identity: "d".repeat(64), key: generateEd25519KeyPair().publicKey },
      },
    };
    saveGuardState(p, state);
    const back = loadGuardState(p);
    expect(back.counters).toEqual(state.counters);
    expect(back.bundle).toEqual(state.bundle);
    expect(back.rotatedOwner && jwkThumbprint(back.rotatedOwner)).toBe(jwkThumbprint(owner));
    const { retained, ...rest } = back.rotation;
    const { retained: retainedIn, ...restIn } = state.rotation;
    expect(rest).toEqual(restIn);
    expect(retained?.identity).toBe(retainedIn.identity);
    expect(retained && jwkThumbprint(retained.key)).toBe(jwkThumbprint(retainedIn.key));
  });

  it.each([
    ["data not an object", [1, 2]],
    ["a negative counter", { counters: { highestSeq: -1 } }],
    [
      "a malformed identity",
      {
        counters: {
          highestSeq: 1,
          highestSeqId: "xyz",
          highestVersion: 0,
          highestVersionId: null,
          versionConsentId: null,
          revokedThroughSeq: 0,
          clockFloorS: 0,
          decommissioned: false,
        },
      },
    ],
    [
      "a malformed consent for the version (format 2)",
      {
        counters: {
          highestSeq: 1,
          highestSeqId: "a".repeat(64),
          highestVersion: 1,
          highestVersionId: "b".repeat(64),
          versionConsentId: "not an identity",
          revokedThroughSeq: 0,
          clockFloorS: 0,
          decommissioned: false,
        },
      },
    ],
  ])("refuses a corrupt state: %s", (_name, data) => {
    const p = join(tmp(), "policy-state.json");
    writeStateFile(p, GUARD_STATE_FORMAT, data);
    expect(codeOf(() => loadGuardState(p))).toBe("AGENTD_E_FILE_CORRUPT");
  });

  it("refuses a state written by a newer agentd", () => {
    const p = join(tmp(), "policy-state.json");
    writeStateFile(p, GUARD_STATE_FORMAT + 1, {});
    expect(codeOf(() => loadGuardState(p))).toBe("AGENTD_E_FILE_FORMAT_NEWER");
  });
});
