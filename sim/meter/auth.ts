/**
 * The simulated meter's HTTP authentication, written here from RFC 7617 (Basic) and RFC 7616
 * (Digest, MD5 or SHA-256 with qop=auth: Shelly Gen2+ uses SHA-256, docs at
 * shelly-api-docs.shelly.cloud, "Authentication") and not shared with the agent's client:
 * a simulator that shared the client's code would share its bugs.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

export interface SimAuth {
  readonly scheme: "basic" | "digest";
  /** Digest only; MD5 by default. */
  readonly algorithm?: "MD5" | "SHA-256";
  readonly username: string;
  readonly password: string;
}

/** One server's authenticator: its nonce, its challenge, its check. */
export function authenticator(auth: SimAuth, realm: string) {
  const nonce = randomBytes(16).toString("hex");
  const algorithm = auth.algorithm ?? "MD5";
  const hash = algorithm === "MD5" ? "md5" : "sha256";
  const h = (s: string) => createHash(hash).update(s).digest("hex");
  return {
    challenge(): string {
      return auth.scheme === "basic"
        ? `Basic realm="${realm}"`
        : `Digest qop="auth", realm="${realm}", nonce="${nonce}", algorithm=${algorithm}`;
    },
    /** Whether `header` (the request's Authorization) carries the right credentials. */
    check(method: string, url: string, header: string | undefined): boolean {
      if (header === undefined) return false;
      if (auth.scheme === "basic") {
        const m = /^Basic\s+(\S+)$/i.exec(header);
        if (!m) return false;
        const given = Buffer.from(m[1] as string, "base64");
        return same(given, Buffer.from(`${auth.username}:${auth.password}`, "utf8"));
      }
      if (!/^Digest\s/i.test(header)) return false;
      const p: Record<string, string> = {};
      for (const m of header.slice(7).matchAll(/(\w+)=(?:"([^"]*)"|([^,\s]*))/g)) {
        p[(m[1] as string).toLowerCase()] = m[2] ?? m[3] ?? "";
      }
      if (p.username !== auth.username || p.nonce !== nonce || p.uri !== url) return false;
      if (p.realm !== realm || (p.algorithm ?? "MD5").toUpperCase() !== algorithm) return false;
      const ha1 = h(`${auth.username}:${realm}:${auth.password}`);
      const ha2 = h(`${method}:${url}`);
      const expected =
        p.qop === "auth"
          ? h(`${ha1}:${nonce}:${p.nc ?? ""}:${p.cnonce ?? ""}:auth:${ha2}`)
          : h(`${ha1}:${nonce}:${ha2}`);
      return same(Buffer.from(p.response ?? ""), Buffer.from(expected));
    },
  };
}

function same(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
