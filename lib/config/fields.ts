/**
 * A tiny schema language for agentd's configuration: each leaf says its type, its default,
 * its bounds and whether it is a secret; sections nest. The schema is data, so the loader,
 * the env-variable mapping, `config show` and docs/config.md all derive from one definition.
 */

interface FieldBase<T> {
  readonly kind: "field";
  readonly default: T;
  readonly doc: string;
  /** Redacted by `config show` and never logged. */
  readonly secret?: boolean;
}

export interface IntField extends FieldBase<number> {
  readonly type: "int";
  readonly min: number;
  readonly max: number;
}

/** A finite decimal number (difficulties, ratios) within [min, max]. */
export interface NumberField extends FieldBase<number> {
  readonly type: "number";
  readonly min: number;
  readonly max: number;
}

export interface BoolField extends FieldBase<boolean> {
  readonly type: "bool";
}

export interface EnumField extends FieldBase<string> {
  readonly type: "enum";
  readonly values: readonly string[];
}

/** Free text; `optional` fields accept "" meaning "not set". */
export interface StringField extends FieldBase<string> {
  readonly type: "string";
  readonly optional: boolean;
}

/** An absolute filesystem path, or "" where optional. */
export interface PathField extends FieldBase<string> {
  readonly type: "path";
  readonly optional: boolean;
}

/** `host:port` (IPv6 as `[::1]:port`), port 0–65535, or "" (disabled) where optional. */
export interface HostPortField extends FieldBase<string> {
  readonly type: "hostport";
  readonly optional: boolean;
}

/** A URL with one of the given schemes, or "" where optional. */
export interface UrlField extends FieldBase<string> {
  readonly type: "url";
  readonly schemes: readonly string[];
  readonly optional: boolean;
}

export type Field =
  | IntField
  | NumberField
  | BoolField
  | EnumField
  | StringField
  | PathField
  | HostPortField
  | UrlField;

export interface Section {
  readonly [key: string]: Field | Section;
}

export type FieldValue<F> = F extends IntField | NumberField
  ? number
  : F extends BoolField
    ? boolean
    : string;

/** The typed, read-only configuration object a schema describes. */
export type ConfigOf<S extends Section> = {
  readonly [K in keyof S]: S[K] extends Field
    ? FieldValue<S[K]>
    : S[K] extends Section
      ? ConfigOf<S[K]>
      : never;
};

export function isField(node: Field | Section): node is Field {
  return (node as { kind?: unknown }).kind === "field";
}

type Opts<T> = { default: T; doc: string; secret?: boolean };

export const int = (o: Opts<number> & { min: number; max: number }): IntField => ({
  kind: "field",
  type: "int",
  ...o,
});
export const num = (o: Opts<number> & { min: number; max: number }): NumberField => ({
  kind: "field",
  type: "number",
  ...o,
});
export const bool = (o: Opts<boolean>): BoolField => ({ kind: "field", type: "bool", ...o });
export const oneOf = (o: Opts<string> & { values: readonly string[] }): EnumField => ({
  kind: "field",
  type: "enum",
  ...o,
});
export const text = (o: Opts<string> & { optional?: boolean }): StringField => ({
  kind: "field",
  type: "string",
  optional: false,
  ...o,
});
export const path = (o: Opts<string> & { optional?: boolean }): PathField => ({
  kind: "field",
  type: "path",
  optional: false,
  ...o,
});
export const hostPort = (o: Opts<string> & { optional?: boolean }): HostPortField => ({
  kind: "field",
  type: "hostport",
  optional: false,
  ...o,
});
export const url = (
  o: Opts<string> & { schemes: readonly string[]; optional?: boolean },
): UrlField => ({ kind: "field", type: "url", optional: false, ...o });

/** Every leaf with its dotted path, in schema order. */
export function leaves(section: Section, prefix = ""): Array<[string, Field]> {
  const out: Array<[string, Field]> = [];
  for (const [key, node] of Object.entries(section)) {
    const p = prefix === "" ? key : `${prefix}.${key}`;
    if (isField(node)) out.push([p, node]);
    else out.push(...leaves(node, p));
  }
  return out;
}
