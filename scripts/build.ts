/**
 * Builds `dist/`: the product's TypeScript compiled to plain JavaScript (tsconfig.build.json),
 * with a `dist/package.json` carrying the name, version and module type the CLI reads.
 *
 * Why a build when Node strips types itself: stripping loads a WebAssembly transformer and
 * keeps every source in memory twice, which costs a daemon about 27 MiB of RSS before it does
 * anything (bench/proxy-scale.ts measures the proxy this way). A checkout still runs the
 * sources through `./bin/agentd`; `dist/` is what packaging ships.
 *
 *   node scripts/build.ts        (npm run build)
 */
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const dist = join(root, "dist");

rmSync(dist, { recursive: true, force: true });
const tsc = spawnSync(join(root, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"], {
  cwd: root,
  stdio: "inherit",
});
if (tsc.status !== 0) {
  process.stderr.write(`scripts/build: tsc failed (exit ${tsc.status ?? tsc.signal})\n`);
  process.exit(1);
}
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  name: string;
  version: string;
};
writeFileSync(
  join(dist, "package.json"),
  `${JSON.stringify({ name: pkg.name, version: pkg.version, private: true, type: "module" }, null, 2)}\n`,
);
process.stdout.write(`${JSON.stringify({ built: dist, version: pkg.version })}\n`);
