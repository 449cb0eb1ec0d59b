/** What every meter kind does with a transport failure. */
import { AgentdError, type ErrorCode, fail } from "../../lib/errors.ts";
import type { MeterSpec } from "../driver.ts";

/**
 * The HTTP client's error with the meter named: the same code (AGENTD_E_MINER_UNREACHABLE,
 * _TIMEOUT, _REPLY_TOO_LARGE, _AUTH), so callers match on it as for miners.
 */
export function transportError(spec: MeterSpec, err: unknown): AgentdError {
  if (!(err instanceof AgentdError)) {
    return fail("AGENTD_E_METER_READ", `meter ${spec.id}: request failed`, { meter: spec.id }, err);
  }
  const code: ErrorCode = err.code;
  return fail(code, `meter ${spec.id}: ${err.message}`, { ...err.context, meter: spec.id }, err);
}
