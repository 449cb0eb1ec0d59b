/**
 * Newline-delimited JSON over a socket, as Stratum V1 frames it. Lines are length-bounded so
 * that a hostile pool cannot make the simulator buffer without limit.
 */
import type { Socket } from "node:net";

export const MAX_LINE_BYTES = 64 * 1024;

export interface LineHandlers {
  /** A line that parsed as a JSON object. */
  readonly onMessage: (msg: Record<string, unknown>) => void;
  /** A line that did not (firmware logs and ignores it). */
  readonly onGarbage: (line: string) => void;
  /** The peer sent a line longer than MAX_LINE_BYTES; the socket is destroyed. */
  readonly onOverflow: () => void;
}

export function readLines(socket: Socket, h: LineHandlers): void {
  let buf = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buf += chunk;
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, "");
      buf = buf.slice(nl + 1);
      if (line.trim() !== "") dispatch(line, h);
      if (socket.destroyed) return;
      nl = buf.indexOf("\n");
    }
    if (buf.length > MAX_LINE_BYTES) {
      buf = "";
      socket.destroy();
      h.onOverflow();
    }
  });
}

function dispatch(line: string, h: LineHandlers): void {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    h.onGarbage(line);
    return;
  }
  if (msg !== null && typeof msg === "object" && !Array.isArray(msg)) {
    h.onMessage(msg as Record<string, unknown>);
  } else {
    h.onGarbage(line);
  }
}

export function sendJson(socket: Socket, msg: unknown): void {
  if (!socket.destroyed && socket.writable) socket.write(`${JSON.stringify(msg)}\n`);
}
