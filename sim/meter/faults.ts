/**
 * The simulated meter's faults: what broken or hostile meters do. Each has a stable name
 * (the `--fault` of `agentd sim meter`, sim/README.md) and what a reader must make of it.
 */

export const FAULTS = [
  // the value at the pointer
  "not-number", // "apower":"n/a"
  "negative", // "apower":-1400.25 (a reversed clamp)
  "nan", // "apower":NaN (not JSON, but firmware writes it)
  "missing", // no "apower" at all
  // the device's state, not a fault of its reply
  "relay-off", // Shelly: "output":false, "apower":0 (a real measurement: nothing flows)
  // the body
  "malformed", // a trailing comma: {…,"sim_seq":3,}
  "status-503", // HTTP 503 with a text body
  // the transport
  "reset", // headers and half the body, then the connection is destroyed
  "huge", // a 10 MiB reply (valid JSON: only a bound on the reader stops it)
  "slow", // no answer before the reader's deadline
] as const;

export type Fault = (typeof FAULTS)[number];

export function isFault(s: string): s is Fault {
  return (FAULTS as readonly string[]).includes(s);
}

/** The faults that change only how the watts value is written. */
export function valueFault(f: Fault | null): boolean {
  return f === "not-number" || f === "negative" || f === "nan" || f === "missing";
}

/** The size of the `huge` reply. */
export const HUGE_BYTES = 10 * 1024 * 1024;
