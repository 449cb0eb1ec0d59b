/**
 * A synthetic block template, built with bitcoinjs-lib: a real coinbase transaction (BIP 34
 * height push, a P2WPKH payout of subsidy + fees, a BIP 141 witness commitment) and real,
 * well-formed transactions whose txids give a real merkle branch. The coinbase is split
 * around the extranonce as Stratum needs it: `coinb1 ‖ extranonce1 ‖ extranonce2 ‖ coinb2`.
 */
import { Block, crypto as bcrypto, opcodes, payments, script, Transaction } from "bitcoinjs-lib";
import { concatBytes } from "./hex.ts";
import { merkleBranch } from "./merkle.ts";

export interface TemplateParams {
  readonly height: number;
  /** The previous block's hash in internal (header) byte order. */
  readonly prevHash: Uint8Array;
  /** Non-coinbase transactions; the merkle branch is ceil(log2(txCount + 1)) deep. */
  readonly txCount: number;
  /** Makes the transactions (and so the branch) differ between jobs of one height. */
  readonly seed: string;
  readonly extranonceSize: number;
}

export interface Template {
  readonly height: number;
  readonly coinb1: Uint8Array;
  readonly coinb2: Uint8Array;
  /** Internal byte order, as `mining.notify` sends them. */
  readonly merkleBranch: readonly Uint8Array[];
  /** The block's other transactions, in order, for building and checking the whole block. */
  readonly transactions: readonly Transaction[];
  /** The 32-byte witness commitment in the coinbase's OP_RETURN output. */
  readonly witnessCommitment: Uint8Array;
}

const TAG = new TextEncoder().encode("/agentd-sim/");
const WITNESS_MAGIC = Uint8Array.from([0xaa, 0x21, 0xa9, 0xed]);
const WITNESS_RESERVED = new Uint8Array(32);
const PAYOUT_HASH = bcrypto.hash160(new TextEncoder().encode("agentd-sim payout"));

/** 50 BTC halved every 210,000 blocks, in satoshis. */
export function subsidy(height: number): bigint {
  const halvings = Math.floor(height / 210_000);
  return halvings >= 64 ? 0n : 5_000_000_000n >> BigInt(halvings);
}

export function buildTemplate(p: TemplateParams): Template {
  if (p.extranonceSize < 1 || p.extranonceSize > 75) {
    throw new Error(`extranonce size ${p.extranonceSize} outside 1..75`);
  }
  const txs = Array.from({ length: p.txCount }, (_, i) => syntheticTx(`${p.seed}/${i}`, i));
  const fees = txs.reduce((sum, _, i) => sum + 1_000n + BigInt(i), 0n);

  // scriptSig: BIP 34 height push, then the extranonce as one push, then the pool tag. The
  // height is compiled by bitcoinjs-lib (minimal CScriptNum; OP_1..OP_16 for 1..16, as Core).
  const heightPush = script.compile([script.number.encode(p.height)]);
  const scriptSig = concatBytes(
    heightPush,
    Uint8Array.of(p.extranonceSize),
    new Uint8Array(p.extranonceSize),
    script.compile([TAG]),
  );
  if (scriptSig.length > 100) throw new Error("coinbase scriptSig over 100 bytes");

  const coinbase = new Transaction();
  coinbase.version = 1;
  coinbase.addInput(new Uint8Array(32), 0xffffffff, 0xffffffff, scriptSig);
  const payout = payments.p2wpkh({ hash: PAYOUT_HASH }).output;
  if (!payout) throw new Error("bitcoinjs-lib gave no P2WPKH script");
  coinbase.addOutput(payout, subsidy(p.height) + fees);
  coinbase.addOutput(commitmentScript(new Uint8Array(32)), 0n);
  // BIP 141: commitment = SHA256d(witness root ‖ reserved value), the coinbase's wtxid being
  // zero. bitcoinjs-lib computes exactly that once the coinbase carries the reserved value.
  coinbase.setWitness(0, [WITNESS_RESERVED]);
  const witnessCommitment = Block.calculateMerkleRoot([coinbase, ...txs], true);
  const out = coinbase.outs[1];
  if (!out) throw new Error("coinbase lost its commitment output");
  out.script = commitmentScript(witnessCommitment);
  // Stratum carries the coinbase without witness (the txid serialization).
  coinbase.setWitness(0, []);

  const raw = coinbase.toBuffer();
  // version(4) ‖ input count(1) ‖ prevout(36) ‖ scriptSig length(1, as ≤ 100) ‖ scriptSig
  const start = 4 + 1 + 36 + 1 + heightPush.length + 1;
  const end = start + p.extranonceSize;
  if (raw.subarray(start, end).some((b) => b !== 0)) throw new Error("extranonce offset is off");
  return {
    height: p.height,
    coinb1: raw.slice(0, start),
    coinb2: raw.slice(end),
    merkleBranch: merkleBranch(txs.map((tx) => tx.getHash())),
    transactions: txs,
    witnessCommitment,
  };
}

function commitmentScript(commitment: Uint8Array): Uint8Array {
  return script.compile([opcodes.OP_RETURN, concatBytes(WITNESS_MAGIC, commitment)]);
}

/**
 * A well-formed spend of a made-up outpoint: even ones segwit (P2WPKH-style witness, so
 * wtxid ≠ txid and the witness commitment means something), odd ones legacy (P2PKH-style
 * scriptSig). Signatures are placeholders: a share check never verifies scripts.
 */
function syntheticTx(seed: string, i: number): Transaction {
  const h = (s: string) => bcrypto.sha256(new TextEncoder().encode(`${seed}/${s}`));
  // DER-shaped: SEQUENCE { INTEGER r, INTEGER s } and SIGHASH_ALL, 71 bytes like real ones.
  const sig = concatBytes(
    Uint8Array.of(0x30, 0x44, 0x02, 0x20),
    h("r"),
    Uint8Array.of(0x02, 0x20),
    h("s"),
    Uint8Array.of(0x01),
  );
  const pubkey = concatBytes(Uint8Array.of(0x02), h("pub"));
  const tx = new Transaction();
  tx.version = 2;
  tx.addInput(h("prevout"), i % 4, 0xfffffffd);
  const recipient = bcrypto.hash160(h("to"));
  const value = 10_000n + BigInt(i) * 137n;
  if (i % 2 === 0) {
    tx.setWitness(0, [sig, pubkey]);
    const out = payments.p2wpkh({ hash: recipient }).output;
    if (!out) throw new Error("bitcoinjs-lib gave no P2WPKH script");
    tx.addOutput(out, value);
  } else {
    const ins = tx.ins[0];
    if (ins) ins.script = script.compile([sig, pubkey]);
    const out = payments.p2pkh({ hash: recipient }).output;
    if (!out) throw new Error("bitcoinjs-lib gave no P2PKH script");
    tx.addOutput(out, value);
  }
  return tx;
}
