/**
 * Reading what cgminer-family firmware really prints on its 4028 API (PROTOCOLS.md section 4,
 * "Framing quirks"): a trailing NUL, `}{` with no comma between objects (bmminer's STATS),
 * trailing commas (`,}` `,]`), a leading one (`[,{`), and bare `inf` / `nan` numbers. Each is
 * repaired outside strings only; anything else that is not JSON stays an error.
 */
import { AgentdError } from "../../lib/errors.ts";

/** Deeper nesting than any firmware prints: refused before JSON.parse recurses into it. */
const MAX_DEPTH = 32;

export function repairCgminerJson(raw: string): string {
  let text = raw;
  while (text.endsWith("\0") || /\s$/.test(text)) text = text.slice(0, -1);
  const out: string[] = [];
  let inString = false;
  let depth = 0;
  let i = 0;
  // The last significant character written outside a string, to spot `,}` `[,` and `}{`.
  let last = "";
  while (i < text.length) {
    const c = text[i] as string;
    if (inString) {
      out.push(c);
      if (c === "\\") {
        out.push(text[i + 1] ?? "");
        i += 2;
        continue;
      }
      if (c === '"') inString = false;
      i++;
      continue;
    }
    if (c === '"') {
      if (last === "}" || last === "]") out.push(",");
      inString = true;
      out.push(c);
      last = '"';
      i++;
      continue;
    }
    if (c === "{" || c === "[") {
      if (last === "}" || last === "]") out.push(",");
      if (++depth > MAX_DEPTH) invalid(`nested deeper than ${MAX_DEPTH}`);
      out.push(c);
      last = c;
      i++;
      continue;
    }
    if (c === "}" || c === "]") {
      if (last === ",") dropTrailingComma(out);
      depth--;
      out.push(c);
      last = c;
      i++;
      continue;
    }
    if (c === ",") {
      // `[,{` and `,,`: a comma with nothing before it is dropped
      if (last === "[" || last === "{" || last === ",") {
        i++;
        continue;
      }
      out.push(c);
      last = c;
      i++;
      continue;
    }
    const word = /^-?(?:inf(?:inity)?|nan)\b/i.exec(text.slice(i, i + 10));
    if (word) {
      out.push("null");
      last = "l";
      i += word[0].length;
      continue;
    }
    out.push(c);
    if (!/\s/.test(c)) last = c;
    i++;
  }
  return out.join("");
}

function dropTrailingComma(out: string[]): void {
  for (let j = out.length - 1; j >= 0; j--) {
    const c = out[j] as string;
    if (c === ",") {
      out.splice(j, 1);
      return;
    }
    if (!/\s/.test(c)) return;
  }
}

function invalid(why: string): never {
  throw new AgentdError("AGENTD_E_MINER_REPLY_INVALID", `the miner's reply is not JSON: ${why}`);
}

/** Parses a 4028 reply after the repairs; anything still not JSON is AGENTD_E_MINER_REPLY_INVALID. */
export function parseCgminerReply(raw: string): unknown {
  const text = repairCgminerJson(raw);
  try {
    return JSON.parse(text);
  } catch (err) {
    invalid((err as Error).message);
  }
}
