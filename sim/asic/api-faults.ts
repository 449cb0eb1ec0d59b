/**
 * What the 4028 faults do to a reply on the wire (faults.ts): the malformed JSON real
 * bmminer builds print (bare `nan`/`inf`, trailing and leading commas, a missing NUL), a
 * socket reset half-way through, and a 10 MB reply. The `}{` glitch of the S9's stats is
 * mgmt-api.ts's own (it needs the STATS rows).
 */
import type { Socket } from "node:net";
import { type FaultKind, HUGE_REPLY_BYTES } from "./faults.ts";

const SECTION_START = /"(STATUS|SUMMARY|POOLS|STATS|VERSION|DEVS|DEVDETAILS|CONFIG)":\[\{/g;

/** The reply text as a firmware with the active malformed-JSON faults would print it. */
export function malformReply(text: string, conditions: ReadonlySet<FaultKind>): string {
  let out = text;
  if (conditions.has("api-nan")) {
    // bmminer prints a double with %f: a division by zero comes out as nan or inf.
    out = out.replace(
      SECTION_START,
      (_m, name: string) => `"${name}":[{"Device Hardware%":nan,"Work Utility Max":inf,`,
    );
  }
  if (conditions.has("api-trailing-comma")) {
    out = out
      .replace(SECTION_START, (_m, name: string) => `"${name}":[,{`)
      .replaceAll("}]", "},]")
      .replace(/\}$/, ",}");
  }
  return out;
}

/** Sends one reply as the active faults say; `after` runs once it has left (or was cut). */
export function sendReply(
  socket: Socket,
  text: string,
  conditions: ReadonlySet<FaultKind>,
  after?: () => void,
): void {
  if (conditions.has("api-huge")) {
    const head = '{"STATUS":[{"STATUS":"S","Code":70,"Msg":"CGMiner stats"}],"STATS":[{"pad":"';
    const tail = '"}],"id":1}\0';
    const pad = "x".repeat(Math.max(0, HUGE_REPLY_BYTES - head.length - tail.length));
    socket.end(`${head}${pad}${tail}`, () => after?.());
    return;
  }
  const body = conditions.has("api-no-nul") ? text : `${text}\0`;
  if (conditions.has("api-reset")) {
    // Half the reply, then a TCP reset (not a clean FIN): what a crashing bmminer does.
    socket.write(body.slice(0, Math.floor(body.length / 2)), () => {
      socket.resetAndDestroy();
      after?.();
    });
    return;
  }
  socket.end(body, () => after?.());
}
