import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { isReason, REASONS } from "../../policy-guard/reasons.ts";

const doc = readFileSync(new URL("../../docs/policy.md", import.meta.url), "utf8");

function documented(): Map<string, { denies: string; meaning: string }> {
  const rows = new Map<string, { denies: string; meaning: string }>();
  for (const line of doc.split("\n")) {
    const m = /^\|\s*`([a-z_]+\.[a-z_]+)`\s*\|\s*([a-z, ]+?)\s*\|(.*)\|\s*$/.exec(line);
    if (m === null) continue;
    rows.set(m[1] as string, { denies: m[2] as string, meaning: (m[3] as string).trim() });
  }
  return rows;
}

describe("reason codes", () => {
  it("docs/policy.md lists exactly the reasons of policy-guard/reasons.ts", () => {
    expect([...documented().keys()].sort()).toEqual(Object.keys(REASONS).sort());
  });

  it("says which decision each reason denies: consent reasons deny services too", () => {
    for (const [code, row] of documented()) {
      const expected = code.startsWith("consent.")
        ? "mining, services"
        : code.startsWith("services.")
          ? "services"
          : code.startsWith("rotation.")
            ? "nothing"
            : "mining";
      expect(row.denies, code).toBe(expected);
      expect(row.meaning.length, code).toBeGreaterThan(15);
    }
  });

  it("every reason-shaped code in the docs exists", () => {
    for (const m of doc.matchAll(
      /`((?:consent|publication|clock|rules|facts|services|agent|rotation)\.[a-z_]+)`/g,
    )) {
      expect(isReason(m[1] as string), m[1]).toBe(true);
    }
  });
});
