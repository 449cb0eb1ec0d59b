import type { Command } from "commander";
import { generateEd25519KeyPair, jwkThumbprint } from "../../lib/crypto/ed25519.ts";
import { writeKeyPair } from "../../lib/crypto/key-files.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import type { Run } from "../program.ts";

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
}
