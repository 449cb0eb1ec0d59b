/**
 * Hex helpers for Stratum fields. Stratum carries every binary field as lower- or upper-case
 * hex; these parse strictly (whole bytes, an exact length when one is required) so that a
 * malformed submit is refused instead of silently truncated.
 */

const HEX = /^(?:[0-9a-fA-F]{2})*$/;

/** Parses hex into bytes; `undefined` when not whole-byte hex or not `bytes` long. */
export function parseHex(text: unknown, bytes?: number): Uint8Array | undefined {
  if (typeof text !== "string" || !HEX.test(text)) return undefined;
  if (bytes !== undefined && text.length !== bytes * 2) return undefined;
  return Uint8Array.from(Buffer.from(text, "hex"));
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

/** A 32-bit value as the 8-hex big-endian text Stratum uses for version, nbits, ntime, nonce. */
export function u32Hex(value: number): string {
  return (value >>> 0).toString(16).padStart(8, "0");
}

/** Parses 8-hex big-endian text to an unsigned 32-bit value. */
export function parseU32(text: unknown): number | undefined {
  const b = parseHex(text, 4);
  return b === undefined ? undefined : Buffer.from(b).readUInt32BE(0);
}

/**
 * Byte-swaps every 4-byte word. Stratum's `prevhash` is the header's 32 bytes with each word
 * swapped, so the same function converts in both directions.
 */
export function wordSwap(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += 4) {
    for (let j = 0; j < 4; j++) out[i + j] = bytes[i + 3 - j] ?? 0;
  }
  return out;
}

export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}

export function reversed(bytes: Uint8Array): Uint8Array {
  return Uint8Array.from(bytes).reverse();
}
