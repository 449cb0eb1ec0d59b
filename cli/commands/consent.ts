import { createPublicKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import type { Command } from "commander";
import { parse as parseToml, TomlError } from "smol-toml";
import { localApiRequest } from "../../agent/local-api.ts";
import { jwkThumbprint } from "../../lib/crypto/ed25519.ts";
import { verifyJws } from "../../lib/crypto/jws.ts";
import { readPrivateKeyFile } from "../../lib/crypto/key-files.ts";
import { AgentdError, fail } from "../../lib/errors.ts";
import { writeFileAtomic } from "../../lib/fs/atomic.ts";
import { ioError } from "../../lib/fs/trust.ts";
import { canonicalize } from "../../lib/json/canonical.ts";
import { parseJsonStrict } from "../../lib/json/strict-parse.ts";
import {
  type ConsentPayload,
  DOC_TYP,
  parseConsentPayload,
  parseRules,
  type Rules,
} from "../../policy-guard/documents.ts";
import { signConsent, signRevocation } from "../../policy-guard/sign.ts";
import { agentSocket, STATE_DIR_HELP } from "../agent-socket.ts";
import type { CliIo } from "../io.ts";
import type { Run } from "../program.ts";
import { parsePositiveInt, parseWorkerId } from "../time.ts";

/**
 * `agentd consent sign` and `agentd consent revoke` (DOCUMENTS.md sections 3, 5 and 7): the
 * owner's side. Both print the signed document (one JWS line) on stdout, or write it to
 * `--out` (mode 0644: the documents are public) and print nothing.
 */

export const DEFAULT_POLICY_ID = "default";
export const DEFAULT_CONSENT_DAYS = 365;
const DAY_S = 86400;

const SIGN_HELP = `
The rules file (--rules) is JSON (.json) or TOML (.toml); with another extension it is read
as JSON if it parses as JSON, else as TOML. It holds the consent's rules object either at the
top level or wrapped as {"rules": {...}} (in TOML, a [rules] table), for example:

  [rules]
  max_watts = 3600
  services = { bitcoind = "sha256:<64 hex>" }
  [[rules.upstreams]]
  url = "stratum+tcp://pool.example:3333"
  user = "owner1.farm-a"

A rules file that is not JSON/TOML or not a valid rules object is refused with exit 2 and the
member at fault (such as rules.max_watts). The consent is valid from now (iat = nbf = now) for
--days days (default ${DEFAULT_CONSENT_DAYS}); --policy-id defaults to "${DEFAULT_POLICY_ID}".

Renewal (--renew F): an owner who keeps consents short-lived (--days 7, say) — so that a
machine whose control plane withholds a revocation still stops when the consent runs out —
renews the one in force before it expires: --renew takes that consent (a JWS file), checks it
is signed by --owner-key, and signs the same worker, rules and policy id again with the new
--seq (higher than the renewed one's) for as many days as the renewed one lasted (or --days).
--worker, --rules and --policy-id may be given too, but must then say the same (a change of
rules is a new consent, not a renewal). docs/policy.md, "Short-lived consents".
`;

const REVOKE_HELP = `
--apply also delivers the revocation to the agent running on this machine, through its local
API (found through --state-dir, the agent's state directory, or api.socket), which applies it
through the policy guard at once — no control plane is needed to stop a machine. The revocation is printed (or written to --out) either way; if the
agent cannot be reached or refuses it, the command says why and exits 1 (3 if refused).
`;

export function registerConsent(program: Command, io: CliIo, run: Run): void {
  const consent = program
    .command("consent")
    .description("the owner's signed consent for one machine, and its revocation");

  consent
    .command("sign")
    .description("sign a consent for one worker; print the JWS, or write it to --out")
    .requiredOption("--owner-key <file>", "the owner's private key (PKCS#8 PEM, mode 0600)")
    .option("--worker <id>", "the worker id (machine key thumbprint, from agentd init)")
    .option("--rules <file>", "the rules, JSON or TOML (see below)")
    .requiredOption("--seq <n>", "the consent's sequence number, higher than any before")
    .option("--renew <file>", "renew this consent: same worker, rules and policy id (see below)")
    .option("--policy-id <id>", "the policy's name (printable ASCII)")
    .option("--days <n>", "validity in days from now")
    .option("--out <file>", "write the JWS here (0644) instead of printing it")
    .addHelpText("after", SIGN_HELP)
    .action(
      (opts: {
        ownerKey: string;
        worker?: string;
        rules?: string;
        seq: string;
        renew?: string;
        policyId?: string;
        days?: string;
        out?: string;
      }) =>
        run(false, () => {
          const seq = parsePositiveInt(opts.seq, "--seq");
          const ownerKey = readPrivateKeyFile(opts.ownerKey);
          const base = opts.renew === undefined ? null : renewalOf(opts.renew, ownerKey, seq);
          if (base === null && (opts.worker === undefined || opts.rules === undefined)) {
            throw fail("AGENTD_E_USAGE", "--worker and --rules are required (or --renew)");
          }
          const worker =
            opts.worker === undefined ? (base?.worker as string) : parseWorkerId(opts.worker);
          const rules =
            opts.rules === undefined ? (base?.rules as Rules) : readRulesFile(opts.rules);
          const policyId =
            opts.policyId === undefined
              ? (base?.policyId ?? DEFAULT_POLICY_ID)
              : parsePolicyId(opts.policyId);
          if (base !== null) sameAsRenewed(base, { worker, rules, policyId });
          const days =
            opts.days === undefined
              ? (base?.days ?? DEFAULT_CONSENT_DAYS)
              : parsePositiveInt(opts.days, "--days");
          const iat = Math.floor(io.clock.now() / 1000);
          const exp = iat + days * DAY_S;
          if (!Number.isSafeInteger(exp)) {
            throw fail("AGENTD_E_USAGE", `--days: ${days} days from now is too far`, {
              flag: "--days",
            });
          }
          const jws = signConsent({ ownerKey, worker, rules, seq, policyId, iat, exp });
          emitDocument(io, jws, opts.out);
          return 0;
        }),
    );

  consent
    .command("revoke")
    .description(
      "sign a revocation of every consent of a worker with seq <= --through-seq; print it, or write it to --out",
    )
    .requiredOption("--owner-key <file>", "the owner's private key (PKCS#8 PEM, mode 0600)")
    .requiredOption("--worker <id>", "the worker id (machine key thumbprint)")
    .requiredOption("--through-seq <n>", "revoke every consent with seq up to and including n")
    .option("--out <file>", "write the JWS here (0644) instead of printing it")
    .option("--apply", "deliver it to the agent running here (local API)", false)
    .option("--state-dir <dir>", `with --apply: ${STATE_DIR_HELP}`)
    .addHelpText("after", REVOKE_HELP)
    .action(
      (
        opts: {
          ownerKey: string;
          worker: string;
          throughSeq: string;
          out?: string;
          apply: boolean;
          stateDir?: string;
        },
        cmd: Command,
      ) =>
        run(false, async () => {
          const worker = parseWorkerId(opts.worker);
          const throughSeq = parsePositiveInt(opts.throughSeq, "--through-seq");
          const ownerKey = readPrivateKeyFile(opts.ownerKey);
          const iat = Math.floor(io.clock.now() / 1000);
          const jws = signRevocation({ ownerKey, worker, throughSeq, iat });
          emitDocument(io, jws, opts.out);
          if (opts.apply) {
            const r = await localApiRequest(agentSocket(io, cmd), "POST", "/v1/revocations", {
              document: jws,
            });
            if (r.status !== 200) {
              const reasons = (r.json.reasons as string[] | undefined) ?? [];
              throw fail(
                "AGENTD_E_REVOCATION_REFUSED",
                `--apply: the agent refused the revocation: ${reasons.join(", ") || JSON.stringify(r.json)}`,
                { status: r.status },
              );
            }
            io.stderr("agentd: the running agent applied the revocation\n");
          }
          return 0;
        }),
    );
}

/** A signed document: one line on stdout, or the file `out` (0644, atomically) and nothing. */
export function emitDocument(io: CliIo, text: string, out: string | undefined): void {
  if (out === undefined) io.stdout(`${text}\n`);
  else writeFileAtomic(out, `${text}\n`, { mode: 0o644 });
}

function parsePolicyId(value: string): string {
  if (!/^[\x21-\x7e]{1,128}$/.test(value)) {
    throw fail(
      "AGENTD_E_USAGE",
      `--policy-id: expected 1 to 128 printable ASCII characters without spaces, found ${JSON.stringify(value)}`,
      { flag: "--policy-id" },
    );
  }
  return value;
}

/** Reads a file as UTF-8 text; a missing or unreadable file is AGENTD_E_IO (exit 1). */
export function readTextFile(path: string, what: string): string {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (err) {
    throw ioError(path, `read the ${what}`, err);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(raw);
  } catch (err) {
    throw fail("AGENTD_E_USAGE", `${path}: the ${what} is not UTF-8 text`, { path }, err);
  }
}

/**
 * The rules object of a rules file, validated exactly as the consent's verifier will read it.
 * Every problem with the file's content is a usage error (exit 2) naming the file and, for a
 * rule, the member (`rules.max_watts: expected …`).
 */
export function readRulesFile(path: string): Rules {
  const text = readTextFile(path, "rules file");
  const ext = extname(path).toLowerCase();
  let doc: unknown;
  const json = ext === ".toml" ? undefined : parseJson(text);
  if (json?.ok === true) {
    doc = json.value;
  } else {
    const toml = ext === ".json" ? undefined : parseTomlText(text);
    if (toml?.ok === true) {
      doc = toml.value;
    } else {
      const problem =
        json !== undefined && toml !== undefined
          ? `neither JSON (${json.problem}) nor TOML (${toml.problem})`
          : json !== undefined
            ? `not valid JSON: ${json.problem}`
            : `not valid TOML: ${toml?.problem}`;
      throw fail("AGENTD_E_USAGE", `${path}: the rules file is ${problem}`, { path });
    }
  }
  if (
    typeof doc === "object" &&
    doc !== null &&
    !Array.isArray(doc) &&
    Object.hasOwn(doc, "rules")
  ) {
    const others = Object.keys(doc).filter((k) => k !== "rules");
    if (others.length > 0) {
      throw fail(
        "AGENTD_E_USAGE",
        `${path}: expected the rules object alone or wrapped as "rules", found "rules" beside ${others.map((k) => JSON.stringify(k)).join(", ")}`,
        { path },
      );
    }
    doc = (doc as { rules: unknown }).rules;
  }
  try {
    return parseRules(doc, "rules");
  } catch (err) {
    if (err instanceof AgentdError && err.code === "AGENTD_E_JWS_PAYLOAD") {
      throw fail("AGENTD_E_USAGE", `${path}: ${err.message}`, { ...err.context, path }, err);
    }
    throw err;
  }
}

type Parsed = { ok: true; value: unknown } | { ok: false; problem: string };

function parseJson(text: string): Parsed {
  try {
    return { ok: true, value: parseJsonStrict(text) };
  } catch (err) {
    if (err instanceof AgentdError) return { ok: false, problem: err.message };
    throw err;
  }
}

function parseTomlText(text: string): Parsed {
  try {
    return { ok: true, value: parseToml(text) };
  } catch (err) {
    if (err instanceof TomlError) {
      const what = (err.message.split("\n")[0] ?? "a syntax error").replace(
        /^Invalid TOML document: /,
        "",
      );
      return { ok: false, problem: `line ${err.line} column ${err.column}: ${what}` };
    }
    throw err;
  }
}

interface Renewed {
  readonly worker: string;
  readonly rules: Rules;
  readonly policyId: string;
  readonly seq: number;
  /** Its lifetime, in whole days (at least 1): the renewal's default. */
  readonly days: number;
}

/**
 * The consent to renew: verified under the owner key that signs the renewal (an owner renews
 * only their own consents), strictly parsed, and older than the new `seq`.
 */
function renewalOf(path: string, ownerKey: KeyObject, seq: number): Renewed {
  let text: string;
  try {
    text = readFileSync(path, "utf8").trim();
  } catch (err) {
    throw ioError(path, "read the consent to renew", err);
  }
  const ownerPub = createPublicKey(ownerKey);
  const kid = jwkThumbprint(ownerPub);
  let payload: ConsentPayload;
  try {
    const v = verifyJws(text, {
      typ: DOC_TYP.consent,
      resolveKey: (k) => (k === kid ? ownerPub : undefined),
    });
    payload = parseConsentPayload(v.payload);
  } catch (err) {
    if (err instanceof AgentdError) {
      throw fail(
        "AGENTD_E_USAGE",
        `--renew: ${path} is not a consent signed by this owner key (${err.code}: ${err.message})`,
        { flag: "--renew" },
      );
    }
    throw err;
  }
  if (seq <= payload.seq) {
    throw fail(
      "AGENTD_E_USAGE",
      `--seq: a renewal needs a seq higher than the renewed consent's (${payload.seq})`,
      { flag: "--seq" },
    );
  }
  // An expired consent may be renewed too: it is how an owner who let one run out brings the
  // machine back, with the same rules.
  return {
    worker: payload.worker,
    rules: payload.rules,
    policyId: payload.policy_id,
    seq: payload.seq,
    days: Math.max(1, Math.round((payload.exp - payload.iat) / DAY_S)),
  };
}

/** A renewal signs what the renewed consent said: anything given again must agree. */
function sameAsRenewed(
  base: Renewed,
  now: { readonly worker: string; readonly rules: Rules; readonly policyId: string },
): void {
  const differs = (what: string) =>
    fail(
      "AGENTD_E_USAGE",
      `--renew: ${what} differs from the renewed consent's (a new consent is not a renewal)`,
      {
        flag: "--renew",
      },
    );
  if (now.worker !== base.worker) throw differs("--worker");
  if (now.policyId !== base.policyId) throw differs("--policy-id");
  if (canonicalize(now.rules) !== canonicalize(base.rules)) throw differs("--rules");
}
