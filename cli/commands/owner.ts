import type { KeyObject } from "node:crypto";
import type { Command } from "commander";
import { apiError, localApiRequest } from "../../agent/local-api.ts";
import { generateEd25519KeyPair, jwkThumbprint, publicKeyOf } from "../../lib/crypto/ed25519.ts";
import { documentIdentity } from "../../lib/crypto/jws.ts";
import { readPrivateKeyFile, readPublicKeyFile, writeKeyPair } from "../../lib/crypto/key-files.ts";
import { AgentdError, fail } from "../../lib/errors.ts";
import { signOwnerRotation } from "../../policy-guard/sign.ts";
import { agentSocket, STATE_DIR_HELP } from "../agent-socket.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import type { Run } from "../program.ts";
import { parseWorkerId } from "../time.ts";
import { emitDocument } from "./consent.ts";

const ROTATE_HELP = `
The rotation (DOCUMENTS.md section 5) is signed by the old key, the owner key the machine
trusts now, and names the new one: from then on the machine accepts documents signed by the
new key only. The consent in force keeps running (it was signed by the owner key of its
time); the next consent must be signed with the new key. A rotation is accepted once, and only
if it is later than the last rotation the machine accepted (docs/policy.md).

--new-key is the new key's public key file (SPKI PEM: the F.pub of agentd owner keygen --out F)
or its private key file (PKCS#8 PEM, 0600); only the public half is used, so the new private
key need not be on the machine that signs the rotation.

--apply also delivers it to the agent running on this machine through its local API (found
through --state-dir); the document is printed (or written to --out) first either way. If the
agent cannot be reached the command exits 1, if it refuses the rotation 3 with the reasons.
To have the control plane relay it to the machine instead, post the file with
agentd cp owner rotate --worker ID --document F (the owner's API key).
`;

export function registerOwner(program: Command, io: CliIo, run: Run): void {
  const owner = program.command("owner").description("the owner's key, the root of consent");
  owner
    .command("keygen")
    .description("write an owner key pair: F (private, 0600) and F.pub; print the owner thumbprint")
    .requiredOption("--out <file>", "private key file; the public key goes to <file>.pub")
    .option("--force", "replace an existing key", false)
    .option("--json", "machine-readable output", false)
    .action((opts: { out: string; force: boolean; json: boolean }) =>
      run(opts.json, () => {
        const { privateKey, publicKey } = generateEd25519KeyPair();
        const pubFile = `${opts.out}.pub`;
        writeKeyPair(opts.out, pubFile, privateKey, { force: opts.force });
        const ownerId = jwkThumbprint(publicKey);
        printResult(
          io,
          opts.json,
          { owner_id: ownerId, key_file: opts.out, pub_file: pubFile },
          ownerId,
        );
        return 0;
      }),
    );

  owner
    .command("rotate")
    .description(
      "sign an owner-key rotation (old key → new key) for one worker; print it, or write it to --out",
    )
    .requiredOption("--old-key <file>", "the owner key in force, private (PKCS#8 PEM, 0600)")
    .requiredOption("--new-key <file>", "the new owner key: its .pub, or its private key file")
    .requiredOption("--worker <id>", "the worker id (machine key thumbprint)")
    .option("--out <file>", "write the JWS here (0644) instead of printing it")
    .option("--apply", "deliver it to the agent running here (local API)", false)
    .option("--state-dir <dir>", `with --apply: ${STATE_DIR_HELP}`)
    .option("--json", "print a summary as JSON (the document included)", false)
    .addHelpText("after", ROTATE_HELP)
    .action(
      (
        opts: {
          oldKey: string;
          newKey: string;
          worker: string;
          out?: string;
          apply: boolean;
          stateDir?: string;
          json: boolean;
        },
        cmd: Command,
      ) =>
        run(opts.json, async () => {
          const worker = parseWorkerId(opts.worker);
          const oldKey = readPrivateKeyFile(opts.oldKey);
          const newKey = readNewOwnerKey(opts.newKey);
          const from = jwkThumbprint(publicKeyOf(oldKey));
          const to = jwkThumbprint(newKey);
          if (from === to) {
            throw fail("AGENTD_E_USAGE", "--new-key is the same key as --old-key", {
              flag: "--new-key",
            });
          }
          const iat = Math.floor(io.clock.now() / 1000);
          const jws = signOwnerRotation({ ownerKey: oldKey, worker, newOwnerKey: newKey, iat });
          if (!opts.json || opts.out !== undefined) emitDocument(io, jws, opts.out);
          let applied: { accepted: boolean; reasons: readonly string[] } | null = null;
          if (opts.apply) {
            applied = await applyRotation(agentSocket(io, cmd), jws);
            if (!opts.json) io.stderr("agentd: the running agent applied the owner-key rotation\n");
          }
          if (opts.json) {
            printResult(
              io,
              true,
              {
                owner: from,
                new_owner: to,
                worker,
                iat,
                identity: documentIdentity(jws),
                document: jws,
                ...(opts.out === undefined ? {} : { out: opts.out }),
                applied,
              },
              "",
            );
          }
          return 0;
        }),
    );
}

/** The new owner key's public half: from its public key file, or from its private key file. */
function readNewOwnerKey(path: string): KeyObject {
  try {
    return readPublicKeyFile(path);
  } catch (err) {
    if (!(err instanceof AgentdError && err.code === "AGENTD_E_KEY_INVALID")) throw err;
  }
  try {
    return publicKeyOf(readPrivateKeyFile(path));
  } catch (err) {
    if (!(err instanceof AgentdError && err.code === "AGENTD_E_KEY_INVALID")) throw err;
    throw fail(
      "AGENTD_E_KEY_INVALID",
      `--new-key: ${path} is neither an Ed25519 public key (SPKI PEM) nor a private key (PKCS#8 PEM)`,
      { path },
      err,
    );
  }
}

/** POST /v1/owner-rotations; what the agent's policy guard answered, or why it could not. */
async function applyRotation(
  socket: string,
  jws: string,
): Promise<{ accepted: boolean; reasons: readonly string[] }> {
  const r = await localApiRequest(socket, "POST", "/v1/owner-rotations", { document: jws });
  if (r.status === 200) return { accepted: true, reasons: [] };
  const reasons = Array.isArray(r.json.reasons) ? r.json.reasons.map(String) : [];
  if (r.status === 422) {
    throw fail(
      "AGENTD_E_ROTATION_REFUSED",
      `--apply: the agent refused the owner-key rotation: ${reasons.join(", ")}`,
      { status: r.status, reasons: reasons.join(",") },
    );
  }
  // Anything else is the local API's own error (a body it refused, its disk…), as it said it.
  throw apiError(r);
}
