import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join, relative, sep } from "node:path";
import { parseSync } from "rolldown/utils";

/**
 * The file names a text mentions, and which of them name no file of this repository
 * (test/readmes.test.ts). A mention is resolved against the folder of the text that makes it,
 * or at the repository root when it starts with a top-level name (`lib/clock.ts`,
 * `ARCHITECTURE.md`). What is not a file of this repository is left alone: URLs, absolute
 * paths (the target machine's `/etc/agentd/…`, HTTP routes `/v1/…`), placeholders (`D/…`,
 * `<datadir>/…`), options (`--config`), what only a build makes (the folders .gitignore
 * lists), and the shared documents outside the repository (../shared/).
 */

/** Extensions that make a word a file name on its own (not `.js`: "Node.js" is no file). */
const FILE_EXT = /\.(ts|md|json|toml|service|sh|yml|yaml|sql)$/;
/** A path-like word in prose that ends in such an extension. */
const BARE_NAME =
  /(?<![\w/.@-])(?:\.{1,2}\/)*[\w@-][\w.@-]*(?:\/[\w.@-]+)*\.(?:ts|md|json|toml|service|sh|yml|yaml|sql)(?![\w/-])/g;
/** The product's specification documents, kept beside the repository (README.md: ../shared/). */
const SHARED_DOCS = new Set(["BRIEF.md", "DOCUMENTS.md", "PROTOCOLS.md"]);

export interface Repo {
  readonly root: string;
  /** Top-level names: a mention that starts with one is read from the root. */
  readonly top: ReadonlySet<string>;
  /** Top-level folders only a build or a run makes (from .gitignore): never checked. */
  readonly generated: ReadonlySet<string>;
}

export function repoAt(root: string): Repo {
  const top = new Set(readdirSync(root).filter((n) => !n.startsWith(".") && n !== "node_modules"));
  const generated = new Set(["node_modules"]);
  try {
    for (const line of readFileSync(join(root, ".gitignore"), "utf8").split("\n")) {
      const m = /^\/?([\w.-]+)\/$/.exec(line.trim());
      if (m?.[1] !== undefined) generated.add(m[1]);
    }
  } catch {
    // no .gitignore: nothing generated
  }
  return { root, top, generated };
}

/** Names in inline code, link targets and prose of a Markdown text; fenced code is examples. */
export function markdownMentions(markdown: string): string[] {
  const out: string[] = [];
  const prose = markdown.replace(/^( {0,3})(```|~~~)[^\n]*\n[\s\S]*?^\1\2[^\n]*$/gm, "");
  let rest = prose.replace(/`([^`\n]+)`/g, (_, code: string) => {
    out.push(...code.split(/\s+/));
    return " ";
  });
  rest = rest.replace(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g, (_, target: string) => {
    out.push(target.replace(/#.*$/, ""));
    return "] ";
  });
  for (const m of rest.matchAll(BARE_NAME)) out.push(m[0]);
  return out.filter((n) => n !== "");
}

/** Names ending in `.ts` or `.md` in the comments of a TypeScript source (not its strings). */
export function commentMentions(source: string): string[] {
  const out: string[] = [];
  for (const c of parseSync("source.ts", source, { lang: "ts" }).comments) {
    for (const m of c.value.matchAll(BARE_NAME)) if (/\.(ts|md)$/.test(m[0])) out.push(m[0]);
  }
  return out;
}

/**
 * The path a mention names, relative to the root, or null when it is not a file name of
 * this repository (see the module comment).
 */
export function candidate(mention: string, repo: Repo): string | null {
  const name = mention.replace(/^[("'[]+/, "").replace(/[)"'\],.;:!?]+$/, "");
  if (name === "" || /[<>{}*…$=|\\[\]:]/.test(name) || /\s/.test(name)) return null;
  if (name.startsWith("/") || name.startsWith("~") || name.startsWith("-")) return null;
  if (SHARED_DOCS.has(name.split("/").at(-1) ?? "")) return null;
  const path = name.replace(/^(\.\/)+/, "");
  const first = path.split("/")[0] ?? "";
  const isFile = FILE_EXT.test(path) && !/^\.[a-z]+$/.test(path);
  const isPath =
    path.includes("/") && (repo.top.has(first) || first === ".." || path.endsWith("/"));
  if (!isFile && !isPath) return null;
  if (/^[A-Z][A-Z0-9_]*$/.test(first) && path.includes("/")) return null; // D/…, DIR/…
  if (repo.generated.has(first)) return null;
  return path;
}

function inside(root: string, p: string): boolean {
  const r = relative(root, p);
  return r !== "" && !r.startsWith("..") && !isAbsolute(r);
}

/**
 * The mentions that name nothing: each is looked up in `bases` (absolute folders, in order),
 * or at the root when it starts with a top-level name. A mention that leads out of the
 * repository (`../shared/BRIEF.md`) is not checked.
 */
export function missingMentions(
  mentions: readonly string[],
  bases: readonly string[],
  repo: Repo,
): string[] {
  const missing: string[] = [];
  for (const m of mentions) {
    const path = candidate(m, repo);
    if (path === null) continue;
    const first = path.split("/")[0] ?? "";
    const tries = repo.top.has(first) ? [join(repo.root, path)] : bases.map((b) => join(b, path));
    const within = tries.filter((t) => inside(repo.root, t));
    if (within.length === 0) continue;
    if (!within.some((t) => existsSync(t)) && !missing.includes(path)) missing.push(path);
  }
  return missing;
}

/** A folder and every folder above it up to the root (a source's comments name files so). */
export function upToRoot(dir: string, root: string): string[] {
  const out: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    out.push(d);
    if (d === root || !inside(root, d)) break;
  }
  return out;
}

/** Files under `dir` (not node_modules, dot folders or generated folders) that `want` picks. */
export function filesUnder(dir: string, repo: Repo, want: (name: string) => boolean): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name.startsWith(".") || repo.generated.has(e.name)) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p, repo, want));
    else if (want(e.name)) out.push(p);
  }
  return out;
}

/** `a/b/c` with forward slashes, relative to the root. */
export function shown(repo: Repo, p: string): string {
  return relative(repo.root, p).split(sep).join("/");
}
