import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { parseAst } from "rolldown/parseAst";
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

/**
 * No raw time source outside lib/ (issue 13): time is read through the injected Clock
 * (lib/clock.ts) and waited on through the injected Timers (lib/timers.ts), so that every
 * part runs on fake time in a test. Checked on the syntax tree (not by text search), so a
 * method named `setTimeout` on an injected object is fine and a type (`typeof setTimeout`) is
 * not a use. Simulators, benchmarks, tests and project scripts are exempt: they are the
 * harness, not the product.
 */
const PRODUCT = [
  "agent",
  "policy-guard",
  "stratum-client",
  "supervisor",
  "plugins",
  "fleet",
  "control-plane",
  "cli",
];
const EXEMPT = ["lib", "sim", "bench", "test", "scripts"];
const RAW_GLOBALS = new Set([
  "setTimeout",
  "setInterval",
  "setImmediate",
  "clearTimeout",
  "clearInterval",
  "clearImmediate",
]);
const RAW_MEMBERS = new Set([
  "Date.now",
  "performance.now",
  "AbortSignal.timeout",
  "process.hrtime",
  "globalThis.setTimeout",
  "globalThis.setInterval",
  "globalThis.setImmediate",
  "globalThis.Date",
]);
const RAW_MODULES = new Set(["node:timers", "node:timers/promises", "timers", "timers/promises"]);

type AstNode = { type: string; start: number; [k: string]: unknown };

function memberName(n: AstNode): string | null {
  if (n.type === "Identifier") return n.name as string;
  if (n.type !== "MemberExpression" || n.computed === true) return null;
  const o = memberName(n.object as AstNode);
  const p = (n.property as AstNode).name;
  return o === null || typeof p !== "string" ? null : `${o}.${p}`;
}

/** Raw time sources in one file's source: `line: what` for each. */
function rawTimeUses(source: string): string[] {
  const ast = parseAst(source, { lang: "ts" }) as unknown as AstNode;
  const found: { at: number; what: string }[] = [];
  const visit = (n: unknown, parent: AstNode | null, key: string): void => {
    if (Array.isArray(n)) {
      for (const c of n) visit(c, parent, key);
      return;
    }
    if (n === null || typeof n !== "object" || typeof (n as AstNode).type !== "string") return;
    const node = n as AstNode;
    // Types are not uses (`ReturnType<typeof setTimeout>`).
    if (key === "typeAnnotation" || key === "returnType" || key === "typeArguments") return;
    if (node.type.startsWith("TS") && !/^TS(As|NonNull|Satisfies)Expression$/.test(node.type)) {
      return;
    }
    if (node.type === "ImportDeclaration" || node.type === "ImportExpression") {
      const src = (node.source as AstNode | undefined)?.value;
      if (typeof src === "string" && RAW_MODULES.has(src))
        found.push({ at: node.start, what: `import ${src}` });
    }
    if (node.type === "MemberExpression") {
      const name = memberName(node);
      if (name !== null && [...RAW_MEMBERS].some((m) => name === m || name.startsWith(`${m}.`))) {
        found.push({ at: node.start, what: name });
        return;
      }
    }
    if (
      (node.type === "NewExpression" || node.type === "CallExpression") &&
      memberName(node.callee as AstNode) === "Date"
    ) {
      if (node.type === "CallExpression" || (node.arguments as unknown[]).length === 0) {
        found.push({
          at: node.start,
          what: node.type === "CallExpression" ? "Date()" : "new Date()",
        });
      }
    }
    if (node.type === "Identifier" && RAW_GLOBALS.has(node.name as string)) {
      const isProperty =
        parent !== null &&
        ((parent.type === "MemberExpression" && key === "property" && parent.computed !== true) ||
          ((parent.type === "Property" ||
            parent.type === "MethodDefinition" ||
            parent.type === "PropertyDefinition") &&
            key === "key" &&
            parent.computed !== true) ||
          parent.type === "ImportSpecifier" ||
          parent.type === "ExportSpecifier");
      if (!isProperty) found.push({ at: node.start, what: node.name as string });
    }
    for (const [k, v] of Object.entries(node)) {
      if (k !== "type" && v !== null && typeof v === "object") visit(v, node, k);
    }
  };
  visit(ast, null, "");
  const lineOf = (at: number) => source.slice(0, at).split("\n").length;
  return found.map((f) => `${lineOf(f.at)}: ${f.what}`);
}

describe("time is injected (lib/clock.ts, lib/timers.ts)", () => {
  it("names every top-level folder with TypeScript as product or exempt", () => {
    for (const part of rules().keys()) {
      expect(PRODUCT.includes(part) || EXEMPT.includes(part), `${part} is neither`).toBe(true);
    }
  });

  it("no product folder outside lib/ reads or waits on time by itself", () => {
    const uses: string[] = [];
    for (const part of PRODUCT) {
      for (const file of tsFiles(join(root, part))) {
        for (const u of rawTimeUses(readFileSync(file, "utf8")))
          uses.push(`${relative(root, file)}:${u}`);
      }
    }
    expect(uses).toEqual([]);
  });

  it("the checker finds each kind of raw time source, and not methods or types", () => {
    const src = [
      "import { setTimeout as sleep } from 'node:timers/promises';",
      "const a = Date.now();",
      "const b = new Date();",
      "const c = new Date(0);",
      "setTimeout(() => {}, 1);",
      "const t: ReturnType<typeof setInterval> = o.timers.setInterval(() => {}, 1);",
      "const s = AbortSignal.timeout(5);",
      "const p = performance.now();",
      "const h = process.hrtime.bigint();",
      "const x = { setImmediate: 1 }; x.setImmediate;",
      "queue(setImmediate);",
    ].join("\n");
    expect(rawTimeUses(src)).toEqual([
      "1: import node:timers/promises",
      "2: Date.now",
      "3: new Date()",
      "5: setTimeout",
      "7: AbortSignal.timeout",
      "8: performance.now",
      "9: process.hrtime.bigint",
      "11: setImmediate",
    ]);
  });
});
