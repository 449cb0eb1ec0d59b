import type { Field } from "./fields.ts";
import { configFields, envName } from "./load.ts";

/** docs/config.md, rendered from the schema (`npm run docs:config`; a test keeps it current). */
export function renderConfigDoc(): string {
  const rows = [...configFields()].map(
    ([key, f]) =>
      `| \`${key}\` | \`${envName(key)}\` | ${typeText(f)} | ${f.secret === true ? "(secret)" : `\`${JSON.stringify(f.default)}\``} | ${f.doc} |`,
  );
  return `# Configuration

<!-- Generated from lib/config/schema.ts by \`npm run docs:config\`; do not edit by hand. -->

agentd reads one TOML file: \`/etc/agentd/agentd.toml\` by default (its absence is not an
error), or the file named by \`--config F\` or \`AGENTD_CONFIG\` (then a missing file is).
Every key can also be set by an environment variable, \`AGENTD_\` + the key's path in upper
case with \`__\` between levels, and on the command line with \`--set key=value\` (some
commands have dedicated flags, such as \`--state-dir\` for \`paths.state_dir\`).

Precedence: flags > environment > file > defaults. The result is validated once and frozen.
An unknown key, an unknown \`AGENTD_\` variable, a wrong type, an out-of-range value, an
unreadable file or broken TOML each stop the command with one line naming the key, what was
expected and what was found, and exit code 2 (\`agentd config check\` does only that).
\`agentd config show\` prints the effective configuration with secrets redacted
(\`--json\` adds where each value came from).

Environment values are text: integers in decimal, booleans \`true\`/\`false\` (or \`1\`/\`0\`).

| key | environment variable | type | default | meaning |
|---|---|---|---|---|
${rows.join("\n")}
`;
}

function typeText(f: Field): string {
  switch (f.type) {
    case "int":
      return `integer ${f.min}–${f.max}`;
    case "number":
      return `number ${f.min}–${f.max}`;
    case "bool":
      return "boolean";
    case "enum":
      return f.values.map((v) => `\`${v}\``).join(" / ");
    case "string":
      return f.optional ? "string (may be empty)" : "string";
    case "path":
      return f.optional ? 'absolute path or ""' : "absolute path";
    case "hostport":
      return f.optional ? 'host:port or "" (off)' : "host:port";
    case "url":
      return `${f.schemes.join("/")} URL${f.optional ? ' or ""' : ""}`;
  }
}
