import { parseArgs } from "node:util";

/**
 * The one option parser of everything under bench/ (the benchmarks and the helper processes
 * they spawn): each script declares its options once — kind, default, bounds — and gets them
 * checked and typed, with the usage line made from the same declaration. A bad option prints
 * what is wrong and the usage on stderr and exits 2, as the CLI does; `usage()` does the same
 * for what a script checks later itself (a file-descriptor limit too low).
 */

/** An integer in min..max (`1_000` allowed). */
export interface IntOption {
  readonly kind: "int";
  readonly default: number;
  readonly min: number;
  readonly max: number;
  readonly meta: string;
}

/** A finite number in min..max. */
export interface NumberOption {
  readonly kind: "number";
  readonly default: number;
  readonly min: number;
  readonly max: number;
  readonly meta: string;
}

/** One of a fixed set of words. */
export interface ChoiceOption<C extends string> {
  readonly kind: "choice";
  readonly default: C;
  readonly choices: readonly C[];
}

/** A comma-separated list of words from a fixed set. */
export interface ListOption<C extends string> {
  readonly kind: "list";
  readonly default: readonly C[];
  readonly choices: readonly C[];
}

/** Free text (a path, Node options); `always`: it has a value (a default, or it is required). */
export interface TextOption<Always extends boolean> {
  readonly kind: "text";
  readonly meta: string;
  readonly default: string | undefined;
  readonly required: boolean;
  readonly always: Always;
}

export interface FlagOption {
  readonly kind: "flag";
}

export type BenchOption =
  | IntOption
  | NumberOption
  | ChoiceOption<string>
  | ListOption<string>
  | TextOption<boolean>
  | FlagOption;

export const integer = (def: number, min: number, max = Number.MAX_SAFE_INTEGER, meta = "N") =>
  ({ kind: "int", default: def, min, max, meta }) as const satisfies IntOption;

export const decimal = (def: number, min: number, max: number, meta = "N") =>
  ({ kind: "number", default: def, min, max, meta }) as const satisfies NumberOption;

export const choice = <const C extends string>(choices: readonly C[], def: C): ChoiceOption<C> => ({
  kind: "choice",
  default: def,
  choices,
});

export const list = <const C extends string>(
  choices: readonly C[],
  def: readonly C[],
): ListOption<C> => ({ kind: "list", default: def, choices });

/** Optional text: undefined when not given. */
export const text = (meta: string): TextOption<false> => ({
  kind: "text",
  meta,
  default: undefined,
  required: false,
  always: false,
});

/** Text with a default. */
export const textOr = (meta: string, def: string): TextOption<true> => ({
  kind: "text",
  meta,
  default: def,
  required: false,
  always: true,
});

/** Text that must be given. */
export const required = (meta: string): TextOption<true> => ({
  kind: "text",
  meta,
  default: undefined,
  required: true,
  always: true,
});

export const flag = (): FlagOption => ({ kind: "flag" });

export type OptionValue<O> = O extends IntOption | NumberOption
  ? number
  : O extends ChoiceOption<infer C>
    ? C
    : O extends ListOption<infer C>
      ? C[]
      : O extends FlagOption
        ? boolean
        : O extends TextOption<infer A>
          ? A extends true
            ? string
            : string | undefined
          : never;

export interface BenchArgs<S extends Readonly<Record<string, BenchOption>>> {
  readonly values: { readonly [K in keyof S]: OptionValue<S[K]> };
  /** `--json-only`: the JSON line without the table. */
  readonly jsonOnly: boolean;
  /** Prints `message` and the usage line on stderr and exits 2. */
  usage(message: string): never;
}

export interface BenchArgsSettings<K extends string> {
  /** An option that may also be given as the one positional argument (`schedule.ts 1000`). */
  readonly positional?: K;
  /** Whether the script takes `--json-only` (default true; the helpers print no table). */
  readonly jsonOnly?: boolean;
}

function metaOf(o: BenchOption): string {
  switch (o.kind) {
    case "choice":
      return o.choices.join("|");
    case "list":
      return o.choices.join(",");
    case "flag":
      return "";
    default:
      return o.meta;
  }
}

function usageLine(
  name: string,
  options: Readonly<Record<string, BenchOption>>,
  settings: BenchArgsSettings<string> = {},
): string {
  const parts = Object.entries(options).map(([k, o]) => {
    const meta = metaOf(o);
    const opt = meta === "" ? `--${k}` : `--${k} ${meta}`;
    if (k === settings.positional) return `[${opt} | ${meta}]`;
    return o.kind === "text" && o.required ? opt : `[${opt}]`;
  });
  if (settings.jsonOnly !== false) parts.push("[--json-only]");
  return `usage: node bench/${name}.ts ${parts.join(" ")}`;
}

/**
 * Parses the options of `bench/${name}.ts`. `name` is the script's path under bench/ without
 * `.ts` (`policy`, `cp/heartbeat-baseline`).
 */
export function benchArgs<const S extends Readonly<Record<string, BenchOption>>>(
  name: string,
  options: S,
  settings: BenchArgsSettings<keyof S & string> = {},
): BenchArgs<S> {
  const line = usageLine(name, options, settings);
  const usage = (message: string): never => {
    process.stderr.write(`bench/${name}: ${message}\n${line}\n`);
    process.exit(2);
  };
  const spec: Record<string, { type: "string" | "boolean" }> = {};
  for (const [k, o] of Object.entries(options)) {
    spec[k] = { type: o.kind === "flag" ? "boolean" : "string" };
  }
  if (settings.jsonOnly !== false) spec["json-only"] = { type: "boolean" };
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({
      options: spec,
      strict: true,
      allowPositionals: settings.positional !== undefined,
    });
  } catch (err) {
    return usage(err instanceof Error ? err.message : String(err));
  }
  const raw = { ...parsed.values };
  if (settings.positional !== undefined && parsed.positionals.length > 0) {
    if (parsed.positionals.length > 1) usage("at most one positional argument");
    if (raw[settings.positional] !== undefined) {
      usage(`--${settings.positional} given twice (as an option and as the argument)`);
    }
    raw[settings.positional] = parsed.positionals[0];
  }
  const values: Record<string, unknown> = {};
  for (const [k, o] of Object.entries(options)) {
    values[k] = checked(k, o, raw[k], usage);
  }
  return {
    values: values as BenchArgs<S>["values"],
    jsonOnly: raw["json-only"] === true,
    usage,
  };
}

function checked(
  k: string,
  o: BenchOption,
  given: string | boolean | undefined,
  usage: (message: string) => never,
): unknown {
  if (o.kind === "flag") return given === true;
  if (given === undefined) {
    if (o.kind === "text" && o.required) usage(`--${k} is required`);
    return o.default;
  }
  const v = String(given);
  switch (o.kind) {
    case "int": {
      const n = Number(v.replaceAll("_", ""));
      if (v.trim() === "" || !Number.isSafeInteger(n) || n < o.min || n > o.max) {
        usage(`--${k} must be an integer in ${o.min}..${o.max}, got ${JSON.stringify(v)}`);
      }
      return n;
    }
    case "number": {
      const n = Number(v);
      if (v.trim() === "" || !Number.isFinite(n) || n < o.min || n > o.max) {
        usage(`--${k} must be a number in ${o.min}..${o.max}, got ${JSON.stringify(v)}`);
      }
      return n;
    }
    case "choice":
      if (!o.choices.includes(v)) {
        usage(`--${k} must be one of ${o.choices.join(", ")}, got ${JSON.stringify(v)}`);
      }
      return v;
    case "list": {
      const items = v.split(",");
      for (const item of items) {
        if (!o.choices.includes(item)) {
          usage(`--${k} takes ${o.choices.join(", ")} (comma-separated), got ${JSON.stringify(v)}`);
        }
      }
      return items;
    }
    case "text":
      return v;
  }
}
