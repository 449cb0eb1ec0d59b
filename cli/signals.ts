/**
 * Resolves on the first SIGTERM or SIGINT. Daemons call it *before* printing their ready line,
 * so a signal sent right after that line still ends in a clean shutdown (exit 0) instead of
 * the default kill.
 */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      resolve(signal);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });
}
