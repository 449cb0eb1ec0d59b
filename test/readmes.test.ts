import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import type { Command } from "commander";
import { afterAll, describe, expect, it } from "vitest";
import { commandTree } from "../cli/program.ts";
import { systemTimers } from "../lib/timers.ts";
import {
  commentMentions,
  filesUnder,
  markdownMentions,
  missingMentions,
  type Repo,
  repoAt,
  shown,
  upToRoot,
} from "./support/file-mentions.ts";

/**
 * Documentation names only files that exist (issue 13): every README.md, by the names in its
 * inline code, links and prose, and every TypeScript file, by the `.ts` and `.md` names in
 * its comments. A file renamed or removed without its mentions fails here, with the README
 * or source and the name.
 */

const repo = repoAt(resolve(import.meta.dirname, ".."));

describe("READMEs name only files that exist", () => {
  it("every README.md (the root's, each top-level folder's and their subfolders')", () => {
    const readmes = filesUnder(repo.root, repo, (n) => n === "README.md");
    expect(readmes.length).toBeGreaterThan(10);
    const problems: string[] = [];
    for (const f of readmes) {
      const names = markdownMentions(readFileSync(f, "utf8"));
      for (const m of missingMentions(names, [dirname(f)], repo))
        problems.push(`${shown(repo, f)}: ${m}`);
    }
    expect(problems).toEqual([]);
  });
});

describe("source comments name only files that exist", () => {
  it("every TypeScript file (in its folder, a folder above it, or the part a test mirrors)", () => {
    const sources = filesUnder(repo.root, repo, (n) => n.endsWith(".ts"));
    expect(sources.length).toBeGreaterThan(100);
    const problems: string[] = [];
    for (const f of sources) {
      const dir = dirname(f);
      const rel = shown(repo, dir);
      // test/<part>/… mirrors <part>/…: a test names the files of the part it tests.
      const mirror =
        rel === "test" || rel.startsWith("test/") ? join(repo.root, rel.slice(5)) : null;
      const bases = [
        ...upToRoot(dir, repo.root),
        ...(mirror === null ? [] : upToRoot(mirror, repo.root)),
      ];
      for (const m of missingMentions(commentMentions(readFileSync(f, "utf8")), bases, repo))
        problems.push(`${shown(repo, f)}: ${m}`);
    }
    expect(problems).toEqual([]);
  });
});

describe("the checker (test/support/file-mentions.ts)", () => {
  const root = mkdtempSync(join(tmpdir(), "agentd-mentions-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  for (const f of ["supervisor/engine.ts", "supervisor/docker-engine.ts", "lib/clock.ts"]) {
    mkdirSync(dirname(join(root, f)), { recursive: true });
    writeFileSync(join(root, f), "");
  }
  mkdirSync(join(root, "supervisor/sub"));
  writeFileSync(join(root, "ARCHITECTURE.md"), "");
  writeFileSync(join(root, ".gitignore"), "node_modules/\ndist/\n*.log\n");
  const sample: Repo = repoAt(root);
  const inSupervisor = (text: string) =>
    missingMentions(markdownMentions(text), [join(root, "supervisor")], sample);

  it("finds a missing name in inline code, a link, a command and plain prose", () => {
    expect(
      inSupervisor("| `engine.ts` | the interface; `process-driver.ts` runs processes |"),
    ).toEqual(["process-driver.ts"]);
    expect(inSupervisor("See [the driver](process-driver.ts#start).")).toEqual([
      "process-driver.ts",
    ]);
    expect(inSupervisor("Run `node supervisor/process-driver.ts --help`.")).toEqual([
      "supervisor/process-driver.ts",
    ]);
    expect(inSupervisor("native processes (process-driver.ts), and docker-engine.ts.")).toEqual([
      "process-driver.ts",
    ]);
    expect(inSupervisor("the folder `sub/` and `gone/`")).toEqual(["gone/"]);
  });

  it("resolves top-level names at the root, and others in the README's folder", () => {
    expect(inSupervisor("`lib/clock.ts`, [arch](../ARCHITECTURE.md), ARCHITECTURE.md")).toEqual([]);
    expect(inSupervisor("`clock.ts`")).toEqual(["clock.ts"]);
    expect(inSupervisor("`lib/timers.ts`")).toEqual(["lib/timers.ts"]);
  });

  it("leaves alone what is not a file of the repository", () => {
    const text = [
      "https://example.com/a/b.md and [site](https://example.com/x.ts)",
      "`/etc/agentd/agentd.toml`, `/v1/workers/{id}/stream`, `/metrics`",
      "`D/machine.key.pem`, `DIR/cp.json`, `<datadir>/.cookie`, `sqlite:/path/cp.db`",
      "`--config F`, `dist/cli/main.js`, `../shared/DOCUMENTS.md`, DOCUMENTS.md section 6",
      "`rtt_p50/p99_added_us`, `switchPool/enablePool`, `0/0`, Node.js, `.json` files",
      "```sh\nnode supervisor/nowhere.ts\n```",
    ].join("\n");
    expect(inSupervisor(text)).toEqual([]);
  });

  it("reads the names in a source's comments, not in its strings", () => {
    const source = [
      "/**",
      " * The services' drivers: containers (docker-engine.ts) or processes (process-driver.ts).",
      " */",
      'export const url = "https://example.com/x.ts"; // see lib/clock.ts',
      // A template literal with a substitution: "//" inside it is text, not a comment.
      `const s = \`a // b.ts \${1} // c.ts\`;`,
      "// trailing: gone.md",
    ].join("\n");
    const names = commentMentions(source);
    expect(names).toEqual(["docker-engine.ts", "process-driver.ts", "lib/clock.ts", "gone.md"]);
    expect(missingMentions(names, upToRoot(join(root, "supervisor"), root), sample)).toEqual([
      "process-driver.ts",
      "gone.md",
    ]);
  });
});

/**
 * The root README's commands and scripts are real (issue 14): every `agentd …` it shows names
 * a verb (and subcommand) the CLI has, every verb the CLI has is in it, and every
 * `npm run …` is a script of package.json — as every script a user runs is in it.
 */
describe("the README's verbs and scripts", () => {
  const readme = readFileSync(join(repo.root, "README.md"), "utf8");

  it("every `agentd …` in the README is a command, and every command is in the README", async () => {
    const tree = await commandTree(silentIo());
    const problems = [...readmeCommandProblems(readme, tree)];
    for (const c of tree.commands) {
      if (!new RegExp(`agentd ${c.name()}\\b`).test(readme)) {
        problems.push(`agentd ${c.name()}: not in the README`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("every `npm run X` is a script, and every script a user runs is in the README", () => {
    const scripts = Object.keys(
      (
        JSON.parse(readFileSync(join(repo.root, "package.json"), "utf8")) as {
          scripts: Record<string, string>;
        }
      ).scripts,
    );
    const problems: string[] = [];
    for (const m of readme.matchAll(/npm run (?:--silent )?([\w:-]+)/g)) {
      const name = m[1] as string;
      if (!scripts.includes(name)) problems.push(`npm run ${name}: no such script`);
    }
    // Those run by `npm test` (typecheck, lint, test:unit) or by hand while editing (format)
    // need no mention of their own.
    const internal = new Set(["test", "typecheck", "lint", "format", "test:unit"]);
    for (const name of scripts) {
      if (internal.has(name)) continue;
      if (!new RegExp(`(npm run |\`)${name.replace(":", ":")}\\b`).test(readme)) {
        problems.push(`${name}: a script the README does not name`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("the checker sees a verb that does not exist, and a subcommand that does not", async () => {
    const tree = await commandTree(silentIo());
    expect(
      [
        ...readmeCommandProblems(
          "Run `agentd frobnicate --x` and `agentd consent revoke --owner-key F`, then\n```sh\n./bin/agentd services explode NAME\n```",
          tree,
        ),
      ].sort(),
    ).toEqual(["agentd frobnicate: no such command", "agentd services explode: no such command"]);
  });
});

function silentIo() {
  return {
    stdout: () => {},
    stderr: () => {},
    env: {},
    clock: { now: () => 0 },
    timers: systemTimers,
  };
}

/**
 * The `agentd` command lines of a Markdown text (inline code and fenced blocks), checked
 * against the CLI's tree: each word after `agentd` that is not an option or a placeholder
 * must be a subcommand of the one before, as long as that one has subcommands.
 * `a|b` alternatives are each checked.
 */
function* readmeCommandProblems(markdown: string, tree: Command): Generator<string> {
  const code = [
    ...markdown.matchAll(/```[^\n]*\n([\s\S]*?)```/g),
    ...markdown.matchAll(/`([^`\n]+)`/g),
  ].map((m) => m[1] as string);
  const seen = new Set<string>();
  for (const text of code) {
    for (const m of text.matchAll(/(?:^|[\s/(])agentd((?: +[a-z][\w|-]*)+)/g)) {
      const words = (m[1] as string).trim().split(/ +/);
      let level: Command[] = [tree];
      const path: string[] = [];
      for (const word of words) {
        const subs = level.flatMap((c) => c.commands);
        if (subs.length === 0) break;
        const alternatives = word.split("|");
        const found = alternatives.map((w) => subs.find((c) => c.name() === w));
        if (found.some((c) => c === undefined)) {
          const bad = `agentd ${[...path, word].join(" ")}: no such command`;
          if (!seen.has(bad)) yield bad;
          seen.add(bad);
          break;
        }
        path.push(word);
        level = found as Command[];
      }
    }
  }
}
