import { parseArgs } from "node:util";

/**
 * Command-line options of a benchmark: integer counts with bounds, plus `--json-only`. A bad
 * option prints the usage and exits 2, as the CLI does.
 */
export interface CountOption {
  readonly default: number;
  readonly min: number;
  readonly max?: number;
}

export function benchArgs<K extends string>(
  name: string,
  counts: Readonly<Record<K, CountOption>>,
): { readonly counts: Readonly<Record<K, number>>; readonly jsonOnly: boolean } {
  const keys = Object.keys(counts) as K[];
  const usageLine = `usage: node bench/${name}.ts ${keys.map((k) => `[--${k} N]`).join(" ")} [--json-only]`;
  const usage = (message: string): never => {
    process.stderr.write(`bench/${name}: ${message}\n${usageLine}\n`);
    process.exit(2);
  };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      options: {
        ...Object.fromEntries(
          keys.map((k) => [k, { type: "string" as const, default: String(counts[k].default) }]),
        ),
        "json-only": { type: "boolean", default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    return usage(err instanceof Error ? err.message : String(err));
  }
  const out = {} as Record<K, number>;
  for (const k of keys) {
    const { min, max = Number.MAX_SAFE_INTEGER } = counts[k];
    const v = String(values[k]);
    const n = Number(v.replaceAll("_", ""));
    if (v.trim() === "" || !Number.isSafeInteger(n) || n < min || n > max) {
      usage(`--${k} must be an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
    }
    out[k] = n;
  }
  return { counts: out, jsonOnly: values["json-only"] === true };
}
