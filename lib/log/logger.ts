import {
  type Bindings,
  type ChildLoggerOptions,
  type DestinationStream,
  type Logger,
  pino,
} from "pino";
import { redact } from "./redact.ts";

export type { Logger } from "pino";

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface LoggerOptions {
  readonly level: LogLevel;
  /** Where JSON lines go; stderr (fd 2) by default, so stdout stays machine-readable. */
  readonly destination?: DestinationStream;
  readonly base?: Record<string, unknown>;
  /** A second destination that gets every line too (the agent's in-memory ring, ring.ts). */
  readonly tee?: DestinationStream;
}

/**
 * The root logger: pino JSON on stderr, every object redacted before it is written.
 * Components take `componentLogger(root, "…")`; nothing creates a logger of its own.
 */
export function createLogger(options: LoggerOptions): Logger {
  const primary = options.destination ?? pino.destination({ fd: 2, sync: true });
  const destination =
    options.tee === undefined
      ? primary
      : pino.multistream([
          { stream: primary, level: "trace" },
          { stream: options.tee, level: "trace" },
        ]);
  const logger = pino(
    {
      level: options.level,
      base: options.base ?? { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        bindings: (bindings) => redact(bindings) as Record<string, unknown>,
        log: (object) => redact(object) as Record<string, unknown>,
      },
      serializers: { err: (e: unknown) => redact(e) },
    },
    destination,
  );
  return redactChildBindings(logger);
}

/** Child logger for one component; the name appears as `component` on every line. */
export function componentLogger(root: Logger, component: string): Logger {
  return root.child({ component });
}

/**
 * pino serialises a child's bindings once, without `formatters.bindings`; so bindings are
 * redacted here, for children of children too.
 */
function redactChildBindings(logger: Logger): Logger {
  type ChildFn = (bindings: Bindings, options?: ChildLoggerOptions) => Logger;
  const child = logger.child.bind(logger) as unknown as ChildFn;
  const redacting: ChildFn = (bindings, options) =>
    redactChildBindings(child(redact(bindings) as Bindings, options));
  (logger as unknown as { child: ChildFn }).child = redacting;
  return logger;
}
