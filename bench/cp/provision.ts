/**
 * What the control-plane benchmarks put in the database before `agentd cp serve` starts:
 * one owner, N machines (each with its own Ed25519 key, registered, and an access token
 * valid for a day, as if it had enrolled and attested), an operator API key, and for chosen
 * machines the owner's consent allowing commands. Written through the Store itself, so the
 * rows are exactly what the API would have written; the API is what the benchmarks measure.
 */
import { createHash, type KeyObject, randomBytes } from "node:crypto";
import { openStore } from "../../control-plane/store/open.ts";
import { encodeBase64url } from "../../lib/crypto/base64url.ts";
import { generateEd25519KeyPair, jwkThumbprint, publicJwk } from "../../lib/crypto/ed25519.ts";
import { documentIdentity } from "../../lib/crypto/jws.ts";
import { signConsent } from "../../policy-guard/sign.ts";

export interface SimAgent {
  readonly workerId: string;
  readonly privateKey: KeyObject;
  readonly accessToken: string;
  /** The last heartbeat counter used (bench/cp/load.ts). */
  counter: number;
}

export interface Provisioned {
  readonly agents: SimAgent[];
  readonly ownerId: string;
  /** Bearer key with role operator. */
  readonly operatorKey: string;
}

const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");
const BATCH = 100;

export async function provision(
  url: string,
  o: {
    readonly agents: number;
    /** Indices of the agents whose consent allows `commands` (default: none). */
    readonly consentFor?: ReadonlySet<number>;
    readonly commands?: readonly string[];
  },
): Promise<Provisioned> {
  const store = openStore(url);
  try {
    await store.migrate();
    const now = Math.floor(Date.now() / 1000);
    const owner = generateEd25519KeyPair();
    const ownerId = jwkThumbprint(owner.publicKey);
    await store.createOwner({
      id: ownerId,
      jwk: { ...publicJwk(owner.publicKey) },
      created_at: now,
    });
    const operatorKey = `agentd_operator_${encodeBase64url(randomBytes(32))}`;
    await store.createApiKey({
      id: encodeBase64url(randomBytes(16)),
      role: "operator",
      owner_id: null,
      key_sha256: sha256(operatorKey),
      created_at: now,
      created_by: null,
    });
    const agents: SimAgent[] = [];
    for (let i = 0; i < o.agents; i += BATCH) {
      const batch = Array.from({ length: Math.min(BATCH, o.agents - i) }, () => {
        const k = generateEd25519KeyPair();
        return {
          agent: {
            workerId: jwkThumbprint(k.publicKey),
            privateKey: k.privateKey,
            accessToken: `agentd_at_${encodeBase64url(randomBytes(32))}`,
            counter: 0,
          },
          publicKey: k.publicKey,
        };
      });
      await Promise.all(
        batch.map(async ({ agent, publicKey }, j) => {
          await store.registerWorker({
            worker_id: agent.workerId,
            owner_id: ownerId,
            jwk: { ...publicJwk(publicKey) },
            facts: {},
            registered_at: now,
          });
          await store.createAccessToken({
            token_sha256: sha256(agent.accessToken),
            worker_id: agent.workerId,
            expires_at: now + 86_400,
          });
          if (o.consentFor?.has(i + j) === true) {
            const exp = now + 30 * 86_400;
            const jws = signConsent({
              ownerKey: owner.privateKey,
              worker: agent.workerId,
              rules: { commands: [...(o.commands ?? [])] },
              seq: 1,
              policyId: "bench",
              iat: now,
              exp,
            });
            await store.acceptConsent({
              identity: documentIdentity(jws),
              worker_id: agent.workerId,
              owner_id: ownerId,
              seq: 1,
              jws,
              exp,
              accepted_at: now,
            });
          }
        }),
      );
      for (const b of batch) agents.push(b.agent);
    }
    return { agents, ownerId, operatorKey };
  } finally {
    await store.close();
  }
}
