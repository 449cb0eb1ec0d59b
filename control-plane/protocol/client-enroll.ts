import type { KeyObject } from "node:crypto";
import type { Clock } from "../../lib/clock.ts";
import { jwkThumbprint, publicJwk, publicKeyOf } from "../../lib/crypto/ed25519.ts";
import { fail, isAgentdError } from "../../lib/errors.ts";
import type { Timers } from "../../lib/timers.ts";
import { fetchPinnedCa } from "./client-bootstrap.ts";
import { call, createTransport } from "./client-http.ts";
import { parseEnrollmentToken } from "./enrollment-token.ts";
import { type VerifiedKeySet, verifyKeySet } from "./keyset.ts";
import { createProof, PROOF_HEADER } from "./proof.ts";
import type { HostFacts } from "./schemas/attestation.ts";

/**
 * Enrollment from a token alone (docs/protocol.md section 2). In this order, and nothing
 * secret leaves the machine before the first two steps pass:
 *
 * 1. the token parses (its URL, CA pin, root pin, id and secret);
 * 2. the server's chain holds the pinned CA and its certificate verifies under it
 *    (client-bootstrap.ts), and the key set it publishes (`GET /v1/keys`, public, nothing
 *    sent but the request line) is signed by the root whose thumbprint is `root_kid`;
 * 3. only then the token's secret and the machine key go out (`POST /v1/machines/register`,
 *    with a proof signed by that key), and the key set in the answer is checked against the
 *    same root pin.
 *
 * A wrong CA hash or root thumbprint is AGENTD_E_ENROLL_PIN_MISMATCH: the token was made for
 * another control plane, or someone sits on the network path.
 */

export interface EnrollInput {
  /** The `agentd1.…` enrollment token. */
  readonly token: string;
  readonly machineKey: KeyObject;
  readonly facts: HostFacts;
  /**
   * The owner's public key, when the owner gave it with the token: the control plane must
   * register the machine under that owner (its thumbprint), else the enrollment is refused.
   */
  readonly ownerPub?: KeyObject;
  readonly clock: Clock;
  readonly timeoutMs?: number;
  /** The handshake's and the requests' deadlines (lib/timers.ts; background by default). */
  readonly timers?: Timers;
}

export interface Enrollment {
  /** The control plane's origin. */
  readonly url: string;
  readonly workerId: string;
  readonly ownerId: string;
  /** Verified under the token's root pin. */
  readonly keyset: VerifiedKeySet;
  /** The pinned CA, to trust from now on (pinnedClientTlsOptions). */
  readonly caPem: string;
}

export async function enroll(input: EnrollInput): Promise<Enrollment> {
  const token = parseEnrollmentToken(input.token);
  const deadlines = {
    ...(input.timeoutMs === undefined ? {} : { timeoutMs: input.timeoutMs }),
    ...(input.timers === undefined ? {} : { timers: input.timers }),
  };
  const caPem = await fetchPinnedCa({
    url: token.url,
    caSha256: token.ca_sha256,
    clock: input.clock,
    ...deadlines,
  });
  const t = createTransport({
    url: token.url,
    caPem,
    clock: input.clock,
    keepAlive: false,
    ...deadlines,
  });
  try {
    const published = await call<"keys-response">(t, "GET", "/v1/keys");
    verifyKeySet(published.body.keyset, { rootKid: token.root_kid });

    const machinePub = publicKeyOf(input.machineKey);
    const workerId = jwkThumbprint(machinePub);
    const path = "/v1/machines/register";
    const pinnedOwner = input.ownerPub === undefined ? undefined : jwkThumbprint(input.ownerPub);
    const register = () =>
      call<"machine-register-response">(t, "POST", path, {
        body: {
          token: input.token,
          jwk: { ...publicJwk(machinePub) },
          facts: input.facts,
          // Checked before the token is consumed: a token of another owner registers nothing.
          ...(pinnedOwner === undefined ? {} : { owner: pinnedOwner }),
        },
        headers: () => ({
          [PROOF_HEADER]: createProof({
            privateKey: input.machineKey,
            method: "POST",
            url: `${t.origin}${path}`,
            clock: input.clock,
          }),
        }),
      });
    let reply: Awaited<ReturnType<typeof register>>;
    try {
      reply = await register();
    } catch (err) {
      // Register's only 403: the token is another owner's than the one given with it.
      if (pinnedOwner !== undefined && isAgentdError(err) && err.code === "AGENTD_E_CP_FORBIDDEN") {
        throw fail(
          "AGENTD_E_ENROLL_PIN_MISMATCH",
          `the enrollment token is not owner ${pinnedOwner}'s: refused before anything was registered`,
          { expected: pinnedOwner },
          err,
        );
      }
      throw err;
    }
    const keyset = verifyKeySet(reply.body.keyset, { rootKid: token.root_kid });
    if (reply.body.worker !== workerId) {
      throw fail(
        "AGENTD_E_HTTP",
        "the control plane registered another worker id than the machine key's thumbprint",
        { worker: reply.body.worker, expected: workerId },
      );
    }
    if (input.ownerPub !== undefined) {
      const expected = jwkThumbprint(input.ownerPub);
      if (reply.body.owner !== expected) {
        throw fail(
          "AGENTD_E_ENROLL_PIN_MISMATCH",
          `the control plane registered this machine under owner ${reply.body.owner}, not ${expected}`,
          { owner: reply.body.owner, expected },
        );
      }
    }
    return { url: t.origin, workerId, ownerId: reply.body.owner, keyset, caPem };
  } finally {
    t.close();
  }
}
