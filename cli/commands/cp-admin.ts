import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { KEY_USES, verifyKeySet } from "../../control-plane/protocol/keyset.ts";
import { jwkThumbprint, publicJwk, publicKeyFromJwk } from "../../lib/crypto/ed25519.ts";
import { decodeJwsUnverified } from "../../lib/crypto/jws.ts";
import { readPublicKeyFile } from "../../lib/crypto/key-files.ts";
import { fail } from "../../lib/errors.ts";
import { ioError } from "../../lib/fs/trust.ts";
import { parseJsonStrict } from "../../lib/json/strict-parse.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import type { Run } from "../program.ts";
import { parseDuration, parseWorkerId } from "../time.ts";
import { type RemoteOpts, withClient, withRemoteOptions } from "./cp-remote.ts";

/**
 * The administrative verbs of `agentd cp`, each one call to a running control plane with an
 * API key of the role the call needs (docs/protocol.md section 4). Text output is the one
 * value a script wants (`token=$(agentd cp token create)`); `--json` gives the whole answer.
 * Secrets (API keys, tokens) are printed once, here, and never logged.
 */

const ROLES = ["admin", "operator", "owner", "auditor"] as const;

export function registerCpAdmin(cp: Command, io: CliIo, run: Run): void {
  const owner = cp
    .command("owner")
    .description("owners: register one (admin), relay an owner-key rotation (the owner)");
  withRemoteOptions(
    owner
      .command("add")
      .description("register an owner by its public key; prints its owner API key (once)")
      .requiredOption(
        "--owner-pub <file>",
        "the owner's public key (SPKI PEM, agentd owner keygen)",
      )
      .option("--label <text>", "a note stored with the owner"),
  ).action((opts: RemoteOpts & { ownerPub: string; label?: string }, cmd: Command) =>
    run(opts.json, () =>
      withClient(io, cmd, opts, async (c) => {
        const key = readPublicKeyFile(opts.ownerPub);
        const r = await c.createOwner({
          jwk: publicJwk(key),
          ...(opts.label === undefined ? {} : { label: opts.label }),
        });
        printResult(io, opts.json, r, `owner ${r.owner}\napi_key ${r.api_key}`);
        return 0;
      }),
    ),
  );

  withRemoteOptions(
    owner
      .command("rotate")
      .description(
        "post an owner-key rotation (agentd owner rotate --out F) for the control plane to check, keep and push to the worker; prints its identity",
      )
      .requiredOption("--worker <id>", "the worker id")
      .requiredOption("--document <file>", "the rotation JWS (agentd owner rotate --out F)"),
  ).action((opts: RemoteOpts & { worker: string; document: string }, cmd: Command) =>
    run(opts.json, () =>
      withClient(io, cmd, opts, async (c) => {
        const worker = parseWorkerId(opts.worker);
        let document: string;
        try {
          document = readFileSync(opts.document, "utf8").trim();
        } catch (err) {
          throw ioError(opts.document, "read the rotation document", err);
        }
        const r = await c.postOwnerRotation(worker, document);
        printResult(io, opts.json, r, r.identity);
        return 0;
      }),
    ),
  );

  const token = cp.command("token").description("enrollment tokens (owner)");
  withRemoteOptions(
    token
      .command("create")
      .description("a single-use enrollment token for one machine of the calling owner")
      .option("--ttl <duration>", "lifetime, 60s to 24h (default 1h)")
      .option("--label <text>", "a note stored with the token"),
  ).action((opts: RemoteOpts & { ttl?: string; label?: string }, cmd: Command) =>
    run(opts.json, () =>
      withClient(io, cmd, opts, async (c) => {
        const r = await c.createEnrollmentToken({
          ...(opts.ttl === undefined ? {} : { ttl_s: parseDuration(opts.ttl, "--ttl") }),
          ...(opts.label === undefined ? {} : { label: opts.label }),
        });
        printResult(io, opts.json, r, r.token);
        return 0;
      }),
    ),
  );

  const command = cp.command("command").description("signed commands to workers (operator)");
  withRemoteOptions(
    command
      .command("send")
      .description("sign and queue a command for a worker; prints its cmd_id")
      .requiredOption("--worker <id>", "the worker id")
      .requiredOption("--action <action>", "mining.pause, service.restart, … (docs/protocol.md)")
      .option("--args <json>", "the action's arguments as a JSON object", "{}")
      .option("--ttl <duration>", "lifetime, 10s to 24h (default 10m)"),
  ).action(
    (opts: RemoteOpts & { worker: string; action: string; args: string; ttl?: string }, cmd) =>
      run(opts.json, () =>
        withClient(io, cmd, opts, async (c) => {
          let args: unknown;
          try {
            args = parseJsonStrict(opts.args);
          } catch (cause) {
            throw fail("AGENTD_E_USAGE", "--args: expected a JSON object", {}, cause);
          }
          // The action and its args are checked against the request schema before sending.
          const r = await c.createCommand({
            worker: parseWorkerId(opts.worker),
            action: opts.action,
            args,
            ...(opts.ttl === undefined ? {} : { ttl_s: parseDuration(opts.ttl, "--ttl") }),
          } as Parameters<typeof c.createCommand>[0]);
          printResult(io, opts.json, r, r.cmd_id);
          return 0;
        }),
      ),
  );

  const apikey = cp.command("apikey").description("API keys (admin)");
  withRemoteOptions(
    apikey
      .command("create")
      .description("create an API key; prints it (once)")
      .requiredOption("--role <role>", ROLES.join(" | "))
      .option("--owner <id>", "the owner it acts for (role owner only)")
      .option("--label <text>", "a note stored with the key"),
  ).action((opts: RemoteOpts & { role: string; owner?: string; label?: string }, cmd) =>
    run(opts.json, () =>
      withClient(io, cmd, opts, async (c) => {
        if (!(ROLES as readonly string[]).includes(opts.role)) {
          throw fail(
            "AGENTD_E_USAGE",
            `--role: expected one of ${ROLES.join(", ")}, found ${JSON.stringify(opts.role)}`,
          );
        }
        if ((opts.role === "owner") !== (opts.owner !== undefined)) {
          throw fail("AGENTD_E_USAGE", "--owner is required with --role owner, and only then");
        }
        const r = await c.createApiKey({
          role: opts.role as (typeof ROLES)[number],
          ...(opts.owner === undefined ? {} : { owner: opts.owner }),
          ...(opts.label === undefined ? {} : { label: opts.label }),
        });
        printResult(io, opts.json, r, r.api_key);
        return 0;
      }),
    ),
  );
  withRemoteOptions(
    apikey
      .command("revoke")
      .description("revoke an API key for good, by its key id (its next request is refused)")
      .requiredOption("--id <key_id>", "the key id (printed with --json when it was created)"),
  ).action((opts: RemoteOpts & { id: string }, cmd: Command) =>
    run(opts.json, () =>
      withClient(io, cmd, opts, async (c) => {
        if (!/^[A-Za-z0-9_-]{22}$/.test(opts.id)) {
          throw fail(
            "AGENTD_E_USAGE",
            `--id: expected an API key id (22 base64url characters), found ${JSON.stringify(opts.id)}`,
          );
        }
        const r = await c.revokeApiKey(opts.id);
        printResult(io, opts.json, r, `revoked ${r.key_id}`);
        return 0;
      }),
    ),
  );

  const quarantine = cp.command("quarantine").description("worker quarantine (operator)");
  withRemoteOptions(
    quarantine
      .command("lift")
      .description(
        "lift a worker's quarantine on the control plane (mining resumes only with a new consent of its owner)",
      )
      .requiredOption("--worker <id>", "the worker id"),
  ).action((opts: RemoteOpts & { worker: string }, cmd: Command) =>
    run(opts.json, () =>
      withClient(io, cmd, opts, async (c) => {
        const r = await c.liftQuarantine(parseWorkerId(opts.worker));
        printResult(io, opts.json, r, `lifted ${r.worker}`);
        return 0;
      }),
    ),
  );

  const keys = cp.command("keys").description("the control plane's working keys (admin)");
  withRemoteOptions(
    keys
      .command("rotate")
      .description("a new key for every use, in a key set with seq + 1 signed by the root")
      .option("--drop-previous", "drop the previous keys at once (suspected compromise)", false),
  ).action((opts: RemoteOpts & { dropPrevious: boolean }, cmd: Command) =>
    run(opts.json, () =>
      withClient(io, cmd, opts, async (c) => {
        const r = await c.rotateKeys({ keep_previous: !opts.dropPrevious });
        const summary = summarizeKeySet(r.keyset);
        printResult(io, opts.json, { ...summary, keyset: r.keyset }, `key set seq ${summary.seq}`);
        return 0;
      }),
    ),
  );
}

/**
 * Seq, root and kids by use of the new key set, after checking that it is a well-formed set
 * signed by the root it names (agents check it against their pinned root; so can the reader).
 */
function summarizeKeySet(jws: string): {
  seq: number;
  root_kid: string;
  keys: { kid: string; use: string }[];
} {
  const claimed = decodeJwsUnverified(jws).payload as { root?: unknown };
  const set = verifyKeySet(jws, { rootKid: jwkThumbprint(publicKeyFromJwk(claimed.root)) });
  return {
    seq: set.seq,
    root_kid: set.rootKid,
    keys: KEY_USES.flatMap((use) => Object.keys(set.keys[use]).map((kid) => ({ kid, use }))),
  };
}
