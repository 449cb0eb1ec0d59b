import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ROUTES } from "../../../control-plane/protocol/roles.ts";
import { SCHEMA_NAMES, SCHEMAS } from "../../../control-plane/protocol/schemas/index.ts";

/**
 * docs/protocol.md and docs/schemas/ against the code: the published schema files are the
 * TypeScript schemas (regenerate with `node scripts/gen-protocol-schemas.ts`), the page names
 * every schema and no other, and documents every endpoint.
 */

const docs = new URL("../../../docs/", import.meta.url);
const page = readFileSync(new URL("protocol.md", docs), "utf8");

describe("docs/schemas", () => {
  it("holds exactly one file per schema, equal to it (else run scripts/gen-protocol-schemas.ts)", () => {
    const files = readdirSync(new URL("schemas/", docs)).filter((f) => f.endsWith(".json"));
    expect(files.sort()).toEqual(SCHEMA_NAMES.map((n) => `${n}.json`).sort());
    for (const name of SCHEMA_NAMES) {
      const text = readFileSync(new URL(`schemas/${name}.json`, docs), "utf8");
      expect(JSON.parse(text), `docs/schemas/${name}.json is stale`).toEqual(SCHEMAS[name]);
    }
  });
});

describe("docs/protocol.md", () => {
  it("links every schema and no schema that does not exist", () => {
    const linked = new Set([...page.matchAll(/\(schemas\/([a-z0-9-]+)\.json\)/g)].map((m) => m[1]));
    const mentioned = new Set(
      [...page.matchAll(/schemas\/([a-z0-9-]+)\.json/g)].map((m) => m[1] as string),
    );
    expect([...mentioned].filter((n) => !(SCHEMA_NAMES as readonly string[]).includes(n))).toEqual(
      [],
    );
    expect(SCHEMA_NAMES.filter((n) => !linked.has(n))).toEqual([]);
  });

  it("documents every endpoint with its schemas, in a section of its own", () => {
    for (const r of ROUTES) {
      const heading = `**\`${r.method} ${r.path}\`**`;
      const at = page.indexOf(heading);
      expect(at, `${r.method} ${r.path} is not documented`).toBeGreaterThan(0);
      // The paragraph of the endpoint names its schemas.
      const paragraph = page.slice(at, page.indexOf("\n\n", at));
      for (const s of [r.request, r.query, r.response]) {
        if (s !== undefined) expect(paragraph, `${r.path}: ${s}`).toContain(`(schemas/${s}.json)`);
      }
    }
  });

  it("labels attestation advisory and defines every anomaly flag", () => {
    expect(page).toMatch(/### Attestation — ADVISORY/);
    for (const flag of ["counter_gap", "clock_skew", "telemetry_inconsistent"]) {
      expect(page).toMatch(new RegExp(`\\| \`${flag}\` \\| \\S`));
    }
  });
});
