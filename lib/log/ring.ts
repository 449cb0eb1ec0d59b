import type { DestinationStream } from "pino";

/**
 * The last log lines kept in memory (the local API's `/v1/logs`, `agentd logs`): a bounded
 * ring, so an operator can see what the agent said without journald, and memory stays fixed
 * however chatty it gets. Lines are kept as pino wrote them (already redacted).
 */
export interface LogRing extends DestinationStream {
  /** The last `n` lines, oldest first. */
  lines(n: number): string[];
}

export function logRing(capacity = 1000): LogRing {
  const ring: string[] = new Array(capacity);
  let next = 0;
  let size = 0;
  return {
    write(msg: string) {
      ring[next] = msg.endsWith("\n") ? msg.slice(0, -1) : msg;
      next = (next + 1) % capacity;
      size = Math.min(size + 1, capacity);
    },
    lines(n) {
      const k = Math.max(0, Math.min(n, size));
      const out: string[] = [];
      for (let i = k; i > 0; i--) out.push(ring[(next - i + capacity) % capacity] as string);
      return out;
    },
  };
}
