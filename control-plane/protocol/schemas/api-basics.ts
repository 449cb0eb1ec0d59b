import type { ErrorCode } from "../../../lib/errors.ts";
import { closed, ERROR_CODE, frozen, root, text } from "./common.ts";

/** Bodies every endpoint may answer with, and the health probes. */

/** Every 4xx/5xx body: a stable code (docs/errors.md) and a message without secrets. */
export interface ErrorBody {
  readonly error: { readonly code: ErrorCode; readonly message: string };
}

export const errorSchema = frozen(
  root("error", "Error response body", {
    ...closed({ error: closed({ code: ERROR_CODE, message: text(500) }) }),
  }),
);

export const HEALTH_STATUSES = ["ok", "ready", "not_ready"] as const;

/** `GET /healthz` → `ok`; `GET /readyz` → `ready` (200) or `not_ready` (503). */
export interface HealthResponse {
  readonly status: (typeof HEALTH_STATUSES)[number];
}

export const healthResponseSchema = frozen(
  root("health-response", "GET /healthz and /readyz response", {
    ...closed({ status: { enum: [...HEALTH_STATUSES] } }),
  }),
);
