import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { schemaFiles } from "../control-plane/protocol/schemas/index.ts";

/**
 * Writes docs/schemas/<name>.json from the TypeScript schemas (control-plane/protocol/schemas),
 * removes files of schemas that no longer exist, and formats the directory with the project's
 * biome (so `biome check .` passes on it). test/control-plane/protocol/protocol-doc.test.ts
 * fails when the files' JSON differs from the schemas.
 */

const dir = new URL("../docs/schemas/", import.meta.url);
mkdirSync(dir, { recursive: true });
const files = schemaFiles();
for (const name of readdirSync(dir)) {
  if (name.endsWith(".json") && !files.has(name)) rmSync(new URL(name, dir));
}
for (const [name, text] of files) writeFileSync(new URL(name, dir), text);
const biome = fileURLToPath(new URL("../node_modules/.bin/biome", import.meta.url));
execFileSync(biome, ["format", "--write", fileURLToPath(dir)], {
  stdio: ["ignore", "ignore", "inherit"],
});
process.stdout.write(`${JSON.stringify({ written: files.size, dir: "docs/schemas" })}\n`);
