/**
 * ESP-Miner's version string ("v2.4.5-3-gb5d1e36-dirty", "v2.14.0") and what each version
 * can do. Pure.
 *
 * - `POST /api/system/pause` and `/resume`, and `miningPaused` in the info reply, first
 *   appear in tag v2.14.0 (bitaxeorg/ESP-Miner, main/http_server/http_server.c
 *   `POST_mining_pause`; absent at v2.13.2).
 * - v2.15.0 replaced the flat `stratumURL`/`fallbackStratumURL` settings with a `pools` array
 *   (`{id, stratumURL, stratumPort, stratumUser, stratumPassword}`) and
 *   `primaryPoolIndex`/`secondaryPoolIndex` in `PATCH /api/system`; the flat keys are no
 *   longer settings there and are ignored (answered 200, nothing changed).
 */
export type Semver = readonly [number, number, number];

export function parseVersion(text: string): Semver | null {
  const m = /^v?(\d{1,4})\.(\d{1,4})\.(\d{1,4})/.exec(text.trim());
  if (!m) return null;
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

export function atLeast(v: Semver | null, want: Semver): boolean {
  if (v === null) return false;
  for (let i = 0; i < 3; i++) {
    const a = v[i] as number;
    const b = want[i] as number;
    if (a !== b) return a > b;
  }
  return true;
}

/** Pause and resume: v2.14.0 on. Unparseable: not claimed (a capability is never guessed). */
export function hasPause(version: string): boolean {
  return atLeast(parseVersion(version), [2, 14, 0]);
}
