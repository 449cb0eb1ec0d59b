/**
 * The pool's defaults, in a module without bitcoinjs-lib so the CLI can show them without
 * loading it (every `agentd` command builds the whole verb table).
 */

/**
 * 1e-5 ≈ 42,950 SHA-256d per share on average (2^32 · D). Node 24 hashes 80-byte headers at
 * 0.19–0.4 MH/s per core on the CI machine (sim/README.md), so a simulated CPU miner finds
 * 4–9 shares/s alone on a core and still more than 1/s with four miners sharing one.
 */
export const DEFAULT_DIFFICULTY = 1e-5;
export const DEFAULT_VERSION_MASK = 0x1fffe000;
/** Block 840,000's nBits: no CPU share ever meets it, so no block unless asked for. */
export const DEFAULT_NBITS = 0x17034219;
export const DEFAULT_EXTRANONCE1_SIZE = 4;
export const DEFAULT_EXTRANONCE2_SIZE = 8;
export const DEFAULT_JOB_INTERVAL_MS = 30_000;
export const DEFAULT_TX_COUNT = 40;
export const DEFAULT_START_HEIGHT = 840_000;
