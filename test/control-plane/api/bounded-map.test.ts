import { describe, expect, it } from "vitest";
import { BoundedMap } from "../../../control-plane/api/bounded-map.ts";
import { PublicKeyCache } from "../../../control-plane/api/key-cache.ts";
import { generateEd25519KeyPair, publicJwk } from "../../../lib/crypto/ed25519.ts";
import { AgentdError } from "../../../lib/errors.ts";

describe("BoundedMap", () => {
  it("evicts the least recently used entry, a read counting as a use", () => {
    const m = new BoundedMap<string, number>(3);
    m.set("a", 1);
    m.set("b", 2);
    m.set("c", 3);
    expect(m.get("a")).toBe(1); // a is now the most recent
    m.set("d", 4); // evicts b
    expect([m.get("a"), m.get("b"), m.get("c"), m.get("d")]).toEqual([1, undefined, 3, 4]);
    expect(m.size).toBe(3);
    m.set("c", 30); // an update does not grow it
    expect([m.size, m.get("c")]).toEqual([3, 30]);
    m.delete("c");
    expect([m.size, m.get("c")]).toEqual([2, undefined]);
  });

  it("refuses a bound that is not a positive integer", () => {
    for (const bad of [0, -1, 1.5, Number.NaN])
      expect(() => new BoundedMap(bad)).toThrow(RangeError);
  });
});

describe("PublicKeyCache", () => {
  it("returns the same KeyObject for the same JWK and a different one for another key", () => {
    const cache = new PublicKeyCache(2);
    const [a, b, c] = [1, 2, 3].map(() => publicJwk(generateEd25519KeyPair().publicKey));
    const ka = cache.get({ ...a });
    expect(cache.get({ ...a })).toBe(ka);
    expect(ka.export({ format: "jwk" })).toMatchObject(a as object);
    const kb = cache.get(b);
    expect(kb).not.toBe(ka);
    cache.get(c); // evicts a (b was used after a)
    expect(cache.size).toBe(2);
    expect(cache.get(a)).not.toBe(ka);
  });

  it("refuses an invalid JWK as publicKeyFromJwk does, and caches nothing for it", () => {
    const cache = new PublicKeyCache();
    expect(() => cache.get({ kty: "OKP", crv: "Ed25519", x: "short" })).toThrow(AgentdError);
    expect(() => cache.get({ kty: "OKP", crv: "Ed25519" })).toThrow(AgentdError);
    expect(cache.size).toBe(0);
  });
});
