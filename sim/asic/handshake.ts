/**
 * The messages a firmware sends on connect, in its order (profiles.ts holds the steps): the
 * exact params per dialect, and whether the firmware waits for each answer before the next.
 */
import type { HandshakeStep, Profile } from "./profiles.ts";

export interface HandshakeMessage {
  readonly kind: HandshakeStep["kind"];
  readonly method: string;
  readonly params: readonly unknown[];
  readonly wait: boolean;
}

export interface HandshakeSlot {
  readonly user: string;
  readonly pass: string;
  /** The pool URL had #xnsub. */
  readonly xnsub: boolean;
  /** From the last subscribe to this pool, for a resuming subscribe. */
  readonly sessionId: string | null;
}

const METHODS: Readonly<Record<HandshakeStep["kind"], string>> = {
  configure: "mining.configure",
  subscribe: "mining.subscribe",
  xnsub: "mining.extranonce.subscribe",
  authorize: "mining.authorize",
  suggest: "mining.suggest_difficulty",
  multi_version: "mining.multi_version",
};

export function handshakeMessages(
  profile: Profile,
  slot: HandshakeSlot,
  suggestDifficulty: number | undefined,
): HandshakeMessage[] {
  const out: HandshakeMessage[] = [];
  for (const step of profile.handshake) {
    let params: unknown[];
    switch (step.kind) {
      case "configure":
        params = [...(profile.configureParams ?? [])];
        break;
      case "subscribe":
        params = [profile.userAgent];
        if (profile.resumesSession && slot.sessionId !== null) params.push(slot.sessionId);
        else if (profile.subscribeNullSecond) params.push(null);
        break;
      case "xnsub":
        if (!slot.xnsub) continue;
        params = [];
        break;
      case "authorize":
        params = [slot.user, slot.pass];
        break;
      case "suggest": {
        const d = suggestDifficulty ?? profile.defaultSuggestDifficulty;
        if (d === undefined) continue;
        params = [d];
        break;
      }
      case "multi_version":
        params = [1];
        break;
    }
    out.push({ kind: step.kind, method: METHODS[step.kind], params, wait: step.wait });
  }
  return out;
}
