import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..");
const arch = readFileSync(join(root, "ARCHITECTURE.md"), "utf8");

/** The "may import" table between the imports markers of ARCHITECTURE.md. */
function rules(): Map<string, string[]> {
  const block = /<!-- imports:begin[^>]*-->([\s\S]*?)<!-- imports:end -->/.exec(arch)?.[1] ?? "";
  const out = new Map<string, string[]>();
  for (const line of block.split("\n")) {
    const m = /^\|\s*`([^`]+)`\s*\|(.*)\|\s*$/.exec(line);
    if (!m) continue;
    const allowed = [...(m[2] ?? "").matchAll(/`([^`]+)`/g)].map((x) => x[1] as string);
    out.set(m[1] as string, allowed);
  }
  return out;
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name.startsWith(".")) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (name.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** Relative specifiers of static imports, re-exports and dynamic imports. */
function importsOf(source: string): string[] {
  const specs: string[] = [];
  const re =
    /(?:^|[\s;])(?:import|export)\s[^;]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;
  for (const m of source.matchAll(re)) {
    const s = m[1] ?? m[2];
    if (s?.startsWith(".")) specs.push(s);
  }
  return specs;
}

describe("ARCHITECTURE.md import rules", () => {
  const table = rules();

  it("lists a rule for every top-level folder holding TypeScript", () => {
    const parts = readdirSync(root).filter(
      (d) =>
        !d.startsWith(".") &&
        d !== "node_modules" &&
        statSync(join(root, d)).isDirectory() &&
        tsFiles(join(root, d)).length > 0,
    );
    for (const part of parts) expect(table.has(part), `${part} has no row`).toBe(true);
    expect(table.get("policy-guard")).toEqual(["lib"]);
  });

  it("every relative import stays within what its part may import", () => {
    const violations: string[] = [];
    for (const [part, allowed] of table) {
      let files: string[] = [];
      try {
        files = tsFiles(join(root, part));
      } catch {
        continue;
      }
      for (const file of files) {
        for (const spec of importsOf(readFileSync(file, "utf8"))) {
          const target = relative(root, resolve(dirname(file), spec))
            .split(sep)
            .join("/");
          if (target.startsWith(`${part}/`) || target === part) continue;
          if (!target.includes("/") && target.endsWith(".json")) continue; // package.json
          const ok = allowed.some((a) => target === a || target.startsWith(`${a}/`));
          if (!ok) violations.push(`${relative(root, file)} imports ${target}`);
        }
      }
    }
    expect(violations).toEqual([]);
  });

  it("the scanner sees imports (so the rule above cannot pass vacuously)", () => {
    expect(importsOf('import { a } from "../lib/x.ts";\nexport * from "./y.ts";')).toEqual([
      "../lib/x.ts",
      "./y.ts",
    ]);
    expect(importsOf('const m = await import("../agent/z.ts");')).toEqual(["../agent/z.ts"]);
    const cli = tsFiles(join(root, "cli")).flatMap((f) => importsOf(readFileSync(f, "utf8")));
    expect(cli.length).toBeGreaterThan(3);
  });
});
