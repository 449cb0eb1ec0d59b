import { fail } from "../errors.ts";
import type { HttpErrorCodes } from "./errors.ts";

/**
 * Method + path-template routing with exact matching.
 *
 * A template is `/`-separated segments, each a literal or `{name}` (`/v1/workers/{id}/policy`).
 * Matching is exact: no trailing-slash folding, no empty segments, no case folding, literal
 * segments compared byte for byte against the raw (still percent-encoded) path. Two templates
 * that could match one path (`/v1/commands/{id}` and `/v1/commands/new`) are refused when the
 * router is built, so which handler runs never depends on declaration order.
 *
 * A path that no template matches is 404; one that matches a template under another method is
 * 405 with the methods that exist in `Allow`. Parameters are returned raw; `decodeParams`
 * decodes and validates them after authentication, so that a malformed id from an
 * unauthenticated caller still gets 401 rather than 400.
 */

export const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const;
export type Method = (typeof METHODS)[number];

export interface Routable {
  readonly method: Method;
  readonly path: string;
}

export type RouteMatch<R extends Routable> =
  | {
      readonly kind: "found";
      readonly route: R;
      readonly rawParams: Readonly<Record<string, string>>;
    }
  | { readonly kind: "not_found" }
  | { readonly kind: "method_not_allowed"; readonly allow: readonly Method[] };

type Segment = { readonly literal: string } | { readonly param: string };

interface Template<R> {
  readonly path: string;
  readonly segments: readonly Segment[];
  readonly byMethod: Map<string, R>;
}

const PARAM = /^\{([a-z_][a-z0-9_]*)\}$/;
// Literal segments use the unreserved set only, so the raw comparison is unambiguous.
const LITERAL = /^[A-Za-z0-9._~-]+$/;

/** Longest path the router looks at; longer ones are 404 without splitting. */
export const MAX_PATH_LENGTH = 2048;

export function parseTemplate(path: string): readonly Segment[] {
  if (!path.startsWith("/") || path.length > MAX_PATH_LENGTH) {
    throw fail("AGENTD_E_INTERNAL", `route template ${path} must start with "/"`);
  }
  const names = new Set<string>();
  return path
    .slice(1)
    .split("/")
    .map((s) => {
      const m = PARAM.exec(s);
      if (m !== null) {
        const name = m[1] as string;
        if (names.has(name)) {
          throw fail("AGENTD_E_INTERNAL", `route template ${path} repeats {${name}}`);
        }
        names.add(name);
        return { param: name };
      }
      if (!LITERAL.test(s) || s === "." || s === "..") {
        throw fail(
          "AGENTD_E_INTERNAL",
          `route template ${path} has a bad segment ${JSON.stringify(s)}`,
        );
      }
      return { literal: s };
    });
}

/** Whether some path matches both templates (same length, no literal/literal disagreement). */
function overlaps(a: readonly Segment[], b: readonly Segment[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((sa, i) => {
    const sb = b[i] as Segment;
    return !("literal" in sa && "literal" in sb) || sa.literal === sb.literal;
  });
}

export class Router<R extends Routable> {
  readonly #templates: Template<R>[] = [];

  constructor(routes: readonly R[]) {
    const byPath = new Map<string, Template<R>>();
    for (const route of routes) {
      if (!(METHODS as readonly string[]).includes(route.method)) {
        throw fail("AGENTD_E_INTERNAL", `route ${route.path}: unsupported method ${route.method}`);
      }
      let t = byPath.get(route.path);
      if (t === undefined) {
        const segments = parseTemplate(route.path);
        for (const other of this.#templates) {
          if (overlaps(other.segments, segments)) {
            throw fail(
              "AGENTD_E_INTERNAL",
              `route templates ${other.path} and ${route.path} overlap`,
            );
          }
        }
        t = { path: route.path, segments, byMethod: new Map() };
        byPath.set(route.path, t);
        this.#templates.push(t);
      }
      if (t.byMethod.has(route.method)) {
        throw fail("AGENTD_E_INTERNAL", `route ${route.method} ${route.path} declared twice`);
      }
      t.byMethod.set(route.method, route);
    }
  }

  /** `pathname` is the raw path of the request target, without the query. */
  match(method: string, pathname: string): RouteMatch<R> {
    if (!pathname.startsWith("/") || pathname.length > MAX_PATH_LENGTH)
      return { kind: "not_found" };
    const parts = pathname.slice(1).split("/");
    for (const t of this.#templates) {
      const rawParams = matchSegments(t.segments, parts);
      if (rawParams === undefined) continue;
      const route = t.byMethod.get(method);
      if (route !== undefined) return { kind: "found", route, rawParams };
      return { kind: "method_not_allowed", allow: [...t.byMethod.keys()] as Method[] };
    }
    return { kind: "not_found" };
  }
}

function matchSegments(
  segments: readonly Segment[],
  parts: readonly string[],
): Record<string, string> | undefined {
  if (segments.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i] as Segment;
    const p = parts[i] as string;
    if ("literal" in s) {
      if (s.literal !== p) return undefined;
    } else {
      if (p === "") return undefined;
      params[s.param] = p;
    }
  }
  return params;
}

/** A request target (`/path?query`) as its raw path and its query string (without the `?`). */
export function splitTarget(target: string): { readonly path: string; readonly search: string } {
  const q = target.indexOf("?");
  return q === -1
    ? { path: target, search: "" }
    : { path: target.slice(0, q), search: target.slice(q + 1) };
}

/**
 * The route for `method` and the raw `path`, or the server's 404 (`codes.notFound`, "no such
 * endpoint") or 405 (`codes.methodNotAllowed`, with the methods there are in the context's
 * `allow`, which errors.ts sends as the `Allow` header).
 */
export function routeOrRefuse<R extends Routable>(
  router: Router<R>,
  method: string,
  path: string,
  codes: Pick<HttpErrorCodes, "notFound" | "methodNotAllowed">,
): { readonly route: R; readonly rawParams: Readonly<Record<string, string>> } {
  const m = router.match(method, path);
  if (m.kind === "not_found") throw fail(codes.notFound, "no such endpoint");
  if (m.kind === "method_not_allowed") {
    throw fail(codes.methodNotAllowed, `method ${method.slice(0, 16)} is not allowed here`, {
      allow: m.allow.join(", "),
    });
  }
  return m;
}

/** Longest decoded path parameter; ids here are thumbprints (43) and UUIDs (36). */
export const MAX_PARAM_LENGTH = 128;
// Decoded parameters are limited to the unreserved set: no "/", "\", NUL, "%" or spaces can
// reach a handler, a store key or a log line through a path.
const PARAM_VALUE = /^[A-Za-z0-9._~-]+$/;

/**
 * Percent-decodes and validates the raw parameters of a match. Refused (400 AGENTD_E_SCHEMA,
 * pointer `/params/<name>`): bad percent-encoding, empty, longer than MAX_PARAM_LENGTH, `.`
 * or `..`, or any character outside `A-Za-z0-9._~-`.
 */
export function decodeParams(
  raw: Readonly<Record<string, string>>,
): Readonly<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    const bad = (why: string) =>
      fail("AGENTD_E_SCHEMA", `path parameter ${name} ${why}`, {
        schema: "path",
        pointer: `/params/${name}`,
      });
    if (value.length > MAX_PARAM_LENGTH * 3) throw bad("is too long");
    let decoded: string;
    try {
      decoded = decodeURIComponent(value);
    } catch {
      throw bad("has bad percent-encoding");
    }
    if (decoded.length > MAX_PARAM_LENGTH) throw bad("is too long");
    if (decoded === "." || decoded === "..") throw bad("is a dot segment");
    if (!PARAM_VALUE.test(decoded)) throw bad("has characters outside A-Z a-z 0-9 . _ ~ -");
    out[name] = decoded;
  }
  return out;
}
