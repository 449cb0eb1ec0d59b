/**
 * HTTP digest authentication as the stock Antminer's lighttpd asks for it (RFC 7616 with MD5
 * and qop=auth, realm "antMiner Configuration"): the server half, written apart from
 * plugins/http/client.ts so that the simulator checks the driver's digest instead of sharing
 * its bugs.
 */
import { createHash, randomBytes } from "node:crypto";

export const ANTMINER_REALM = "antMiner Configuration";

/** Nonces remembered: older ones are stale, as a server restart would make them. */
const MAX_NONCES = 256;

const md5 = (s: string) => createHash("md5").update(s).digest("hex");

export class DigestGate {
  readonly realm: string;
  readonly #nonces: string[] = [];

  constructor(realm: string = ANTMINER_REALM) {
    this.realm = realm;
  }

  /** A fresh challenge for a 401's WWW-Authenticate header. */
  challenge(): string {
    const nonce = randomBytes(16).toString("hex");
    this.#nonces.push(nonce);
    if (this.#nonces.length > MAX_NONCES) this.#nonces.shift();
    return `Digest realm="${this.realm}", qop="auth", nonce="${nonce}", algorithm=MD5`;
  }

  /** Whether the Authorization header proves `username`/`password` for this request. */
  verify(
    header: string | undefined,
    method: string,
    requestUri: string,
    username: string,
    password: string,
  ): boolean {
    if (header === undefined || !/^digest\s/i.test(header)) return false;
    const p = parseParams(header.replace(/^digest\s+/i, ""));
    if (p.username !== username || p.realm !== this.realm || p.uri !== requestUri) return false;
    if (p.nonce === undefined || !this.#nonces.includes(p.nonce)) return false;
    if (p.algorithm !== undefined && p.algorithm.toUpperCase() !== "MD5") return false;
    const ha1 = md5(`${username}:${this.realm}:${password}`);
    const ha2 = md5(`${method}:${p.uri}`);
    let expected: string;
    if (p.qop === undefined) expected = md5(`${ha1}:${p.nonce}:${ha2}`);
    else if (p.qop === "auth" && p.nc !== undefined && p.cnonce !== undefined) {
      expected = md5(`${ha1}:${p.nonce}:${p.nc}:${p.cnonce}:auth:${ha2}`);
    } else return false;
    return p.response === expected;
  }
}

function parseParams(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([a-zA-Z]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))/g;
  for (const m of text.matchAll(re)) {
    const key = (m[1] as string).toLowerCase();
    out[key] = m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : (m[3] ?? "");
  }
  return out;
}
