import { statSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { decodeJwsUnverified } from "../../lib/crypto/jws.ts";
import { readPrivateKeyFile, readPublicKeyFile } from "../../lib/crypto/key-files.ts";
import { AgentdError, fail } from "../../lib/errors.ts";
import { ioError } from "../../lib/fs/trust.ts";
import { parseJsonStrict } from "../../lib/json/strict-parse.ts";
import { decisionToJson, evaluate } from "../../policy-guard/decision.ts";
import {
  type Bundle,
  type ConsentPayload,
  DEFAULT_MAX_PUBLICATION_TTL_S,
  DOC_TYP,
  parseConsentPayload,
} from "../../policy-guard/documents.ts";
import type { Reason } from "../../policy-guard/reasons.ts";
import { makeBundle, signPublication } from "../../policy-guard/sign.ts";
import { GUARD_STATE_FILE, loadGuardState } from "../../policy-guard/state.ts";
import {
  EMPTY_COUNTERS,
  type GuardCounters,
  type TrustAnchors,
  type VerifiedDocuments,
  verifyDocuments,
} from "../../policy-guard/verify.ts";
import type { CliIo } from "../io.ts";
import { printResult } from "../output.ts";
import type { Run } from "../program.ts";
import { nowFrom, parseDuration, parsePositiveInt, parseWorkerId } from "../time.ts";
import { emitDocument, readTextFile } from "./consent.ts";
import { registerPolicyShow } from "./local-views.ts";

/**
 * `agentd policy publish | verify | explain` (DOCUMENTS.md sections 4 and 7).
 *
 * publish plays the control plane (local mode, tests); verify and explain run the policy
 * guard's own verification and decision on a bundle file, exactly as the agent would at
 * `--now`, against the guard state in `--state-dir` when given (else as on a fresh machine).
 */

export const DEFAULT_TTL = "24h";

const PUBLISH_HELP = `
The worker and the maximum TTL come from the consent's payload (its signature is not checked
here: the agent does that). A --ttl above the consent's rules.max_publication_ttl_s (default
${DEFAULT_MAX_PUBLICATION_TTL_S} s) is refused with exit 2, as the agent would refuse such a publication.
A consent file that is not a consent JWS is refused with exit 3. The publication is valid from
now (iat = nbf = now). The bundle {"consent", "publication"} is printed as one JSON line, or
written to --out (0644) with nothing printed.
`;

const VERIFY_HELP = `
Checks the documents only: signatures, keys, binding to the worker and to each other, the
publication's TTL, validity times at --now (default: the clock), and seq, version, revocation,
decommission and the clock floor against the guard state (D/${GUARD_STATE_FILE}) when
--state-dir is given. The rules and facts are not evaluated (see agentd policy explain), and
publication.stop is not a reason here: a stopping publication is a valid document.
Prints "valid", or "invalid: reason, reason" (--json: {"valid": bool, "reasons": [...]}).
Exit 0 valid, 3 invalid. A bundle file that is not JSON or not {"consent", "publication"} is
invalid (consent.malformed, publication.malformed); a member that is absent is .missing.
`;

const EXPLAIN_HELP = `
Evaluates the bundle and the facts (a JSON file, DOCUMENTS.md section 6) at --now, exactly as
the agent would, against the guard state in --state-dir when given. --json prints the decision
{"mining": {"allow", "reasons"}, "services": {"allowed", "reasons"}, "next_change_at"};
without it, a one-line summary. Exit 0 if mining is allowed, 3 if not.
`;

interface ReadOpts {
  ownerPub: string;
  cpPub: string;
  worker: string;
  now?: string;
  stateDir?: string;
  json: boolean;
}

function readOptions(cmd: Command): Command {
  return cmd
    .requiredOption("--owner-pub <file>", "the owner's public key (SPKI PEM)")
    .requiredOption("--cp-pub <file>", "the control plane's publication key (SPKI PEM)")
    .requiredOption("--worker <id>", "the worker id (machine key thumbprint)")
    .option("--now <iso>", "evaluate at this instant (ISO 8601 with zone) instead of the clock")
    .option("--state-dir <dir>", `the agent's state directory (reads ${GUARD_STATE_FILE})`)
    .option("--json", "machine-readable output", false);
}

export function registerPolicy(program: Command, io: CliIo, run: Run): void {
  const policy = program
    .command("policy")
    .description("bundles of consent and publication: publish, verify, explain, show");
  registerPolicyShow(policy, io, run);

  policy
    .command("publish")
    .description("countersign a consent as the control plane; print or write the bundle")
    .requiredOption("--cp-key <file>", "the control plane's publication private key (0600)")
    .requiredOption("--consent <file>", "the consent JWS (as written by agentd consent sign)")
    .requiredOption("--version <n>", "the publication's version, higher than any before")
    .option("--ttl <duration>", "validity from now: <n>s, <n>m, <n>h or <n>d", DEFAULT_TTL)
    .option("--stop", "a stopping publication (mining stops at once)", false)
    .option("--out <file>", "write the bundle here (0644) instead of printing it")
    .addHelpText("after", PUBLISH_HELP)
    .action(
      (opts: {
        cpKey: string;
        consent: string;
        version: string;
        ttl: string;
        stop: boolean;
        out?: string;
      }) =>
        run(false, () => {
          const version = parsePositiveInt(opts.version, "--version");
          const ttlS = parseDuration(opts.ttl, "--ttl");
          const consent = readTextFile(opts.consent, "consent file").trim();
          const payload = readConsentUnverified(consent, opts.consent);
          const maxTtl = payload.rules.max_publication_ttl_s ?? DEFAULT_MAX_PUBLICATION_TTL_S;
          if (ttlS > maxTtl) {
            throw fail(
              "AGENTD_E_USAGE",
              `--ttl: ${opts.ttl} (${ttlS} s) exceeds the consent's max_publication_ttl_s of ${maxTtl} s; the agent would refuse the publication`,
              { flag: "--ttl", ttl_s: ttlS, max_s: maxTtl },
            );
          }
          const cpKey = readPrivateKeyFile(opts.cpKey);
          const iat = Math.floor(io.clock.now() / 1000);
          const publication = signPublication({
            cpKey,
            consent,
            worker: payload.worker,
            version,
            iat,
            ttlS,
            stop: opts.stop,
          });
          emitDocument(io, JSON.stringify(makeBundle(consent, publication)), opts.out);
          return 0;
        }),
    );

  readOptions(
    policy
      .command("verify")
      .argument("<bundle>", 'the bundle file {"consent", "publication"}')
      .description("verify a bundle's documents: exit 0 if valid, 3 if not"),
  )
    .addHelpText("after", VERIFY_HELP)
    .action((file: string, opts: ReadOpts) =>
      run(opts.json, () => {
        const { docs, nowMs } = loadAndVerify(file, opts, io, () => undefined);
        const decision = evaluate(docs, {}, nowMs);
        const reasons = unique(decision.mining.reasons.filter(isDocumentReason));
        const valid = reasons.length === 0;
        printResult(
          io,
          opts.json,
          { valid, reasons },
          valid ? "valid" : `invalid: ${reasons.join(", ")}`,
        );
        return valid ? 0 : 3;
      }),
    );

  readOptions(
    policy
      .command("explain")
      .argument("<bundle>", 'the bundle file {"consent", "publication"}')
      .description("the decision for a bundle and facts: exit 0 if mining is allowed, 3 if not")
      .requiredOption("--facts <file>", "the facts, a JSON file (DOCUMENTS.md section 6)"),
  )
    .addHelpText("after", EXPLAIN_HELP)
    .action((file: string, opts: ReadOpts & { facts: string }) =>
      run(opts.json, () => {
        const { docs, nowMs, facts } = loadAndVerify(file, opts, io, () => readFacts(opts.facts));
        const d = decisionToJson(evaluate(docs, facts, nowMs));
        const kinds = Object.keys(d.services.allowed);
        const text = [
          d.mining.allow ? "mining: allowed" : `mining: denied (${d.mining.reasons.join(", ")})`,
          `services: ${kinds.length > 0 ? kinds.join(", ") : `none (${d.services.reasons.join(", ")})`}`,
          `next change: ${d.next_change_at ?? "none"}`,
        ].join("; ");
        printResult(io, opts.json, d, text);
        return d.mining.allow ? 0 : 3;
      }),
    );
}

/**
 * The consent's payload, parsed strictly but WITHOUT checking its signature (the control
 * plane's side: the agent verifies). A file that is not a consent JWS keeps its AGENTD_E_JWS_*
 * or AGENTD_E_JSON_* code (exit 3), prefixed with the file name.
 */
function readConsentUnverified(jws: string, path: string): ConsentPayload {
  try {
    const { header, payload } = decodeJwsUnverified(jws);
    if (header.typ !== DOC_TYP.consent) {
      throw fail(
        "AGENTD_E_JWS_TYP",
        `typ ${JSON.stringify(header.typ)} is not ${DOC_TYP.consent}`,
        {
          typ: String(header.typ),
        },
      );
    }
    if (header.alg !== "EdDSA") {
      throw fail("AGENTD_E_JWS_ALG", `alg ${JSON.stringify(header.alg)} is not EdDSA`);
    }
    if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
      throw fail("AGENTD_E_JWS_PAYLOAD", "payload is not a JSON object");
    }
    return parseConsentPayload(payload as Record<string, unknown>);
  } catch (err) {
    if (err instanceof AgentdError) {
      throw fail(
        err.code,
        `${path}: not a valid consent: ${err.message}`,
        { ...err.context, path },
        err,
      );
    }
    throw err;
  }
}

function isDocumentReason(r: Reason): boolean {
  return (
    (r.startsWith("consent.") || r.startsWith("publication.") || r.startsWith("clock.")) &&
    r !== "publication.stop"
  );
}

function unique<T>(xs: readonly T[]): T[] {
  return [...new Set(xs)];
}

/**
 * Everything verify and explain share, in the order that reports the most basic problem
 * first: the command line (usage, exit 2), then `readInputs` (the facts for explain),
 * the keys and the guard state (exit 1 when missing or untrusted), then the bundle, whose
 * problems are reasons (exit 3), never errors.
 */
function loadAndVerify<T>(
  file: string,
  opts: ReadOpts,
  io: CliIo,
  readInputs: () => T,
): { docs: VerifiedDocuments; nowMs: number; facts: T } {
  const nowMs = nowFrom(opts.now, () => io.clock.now());
  const worker = parseWorkerId(opts.worker);
  const facts = readInputs();
  const trust: TrustAnchors = {
    owner: readPublicKeyFile(opts.ownerPub),
    publication: [readPublicKeyFile(opts.cpPub)],
  };
  const counters = opts.stateDir === undefined ? EMPTY_COUNTERS : readCounters(opts.stateDir);
  const text = readTextFileOrNull(file);
  return { docs: verifyBundleText(text, trust, worker, counters), nowMs, facts };
}

function readCounters(stateDir: string): GuardCounters {
  let isDir: boolean;
  try {
    isDir = statSync(stateDir).isDirectory();
  } catch (err) {
    throw ioError(stateDir, "open the state directory", err);
  }
  if (!isDir) {
    throw fail("AGENTD_E_FILE_NOT_REGULAR", `${stateDir}: expected a directory`, {
      path: stateDir,
    });
  }
  return loadGuardState(join(stateDir, GUARD_STATE_FILE)).counters;
}

/** The bundle file's text; null when it is not UTF-8 (a broken bundle, not an I/O error). */
function readTextFileOrNull(path: string): string | null {
  try {
    return readTextFile(path, "bundle file");
  } catch (err) {
    if (err instanceof AgentdError && err.code === "AGENTD_E_USAGE") return null;
    throw err;
  }
}

/**
 * Verifies a bundle file's content. A file that is not a strict JSON object with exactly the
 * members `consent` and `publication` is not a bundle: both documents are `.malformed`. Within
 * a bundle, an absent member is `.missing` and a member that is not a string `.malformed`.
 */
export function verifyBundleText(
  text: string | null,
  trust: TrustAnchors,
  worker: string,
  counters: GuardCounters,
): VerifiedDocuments {
  let doc: unknown = null;
  if (text !== null) {
    try {
      doc = parseJsonStrict(text);
    } catch {
      doc = null;
    }
  }
  const isBundle =
    typeof doc === "object" &&
    doc !== null &&
    !Array.isArray(doc) &&
    Object.keys(doc).every((k) => k === "consent" || k === "publication");
  const members = (isBundle ? doc : {}) as Record<string, unknown>;
  const malformed = (k: keyof Bundle) =>
    !isBundle || (Object.hasOwn(members, k) && typeof members[k] !== "string");
  const bundle: Partial<Bundle> = {
    ...(typeof members.consent === "string" ? { consent: members.consent } : {}),
    ...(typeof members.publication === "string" ? { publication: members.publication } : {}),
  };
  const docs = verifyDocuments({ bundle, trust, worker, counters });
  const fix = (reasons: readonly Reason[], k: keyof Bundle): Reason[] =>
    malformed(k)
      ? reasons.map((r): Reason => (r === `${k}.missing` ? `${k}.malformed` : r))
      : [...reasons];
  return {
    ...docs,
    consentReasons: fix(docs.consentReasons, "consent"),
    publicationReasons: fix(docs.publicationReasons, "publication"),
  };
}

/** The facts file: strict JSON, any value (evaluate denies what it cannot use); else exit 2. */
function readFacts(path: string): unknown {
  const text = readTextFile(path, "facts file");
  try {
    return parseJsonStrict(text);
  } catch (err) {
    if (err instanceof AgentdError) {
      throw fail("AGENTD_E_USAGE", `${path}: the facts file is not valid JSON: ${err.message}`, {
        path,
      });
    }
    throw err;
  }
}
