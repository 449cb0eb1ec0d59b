import type { HttpErrorCodes } from "../../lib/http/errors.ts";

/**
 * The control plane's codes for the refusals the framework itself makes (lib/http gives them
 * their statuses: 404, 405, 413, 415, 429), so that a client sees which API refused.
 */
export const CP_CODES: HttpErrorCodes = Object.freeze({
  notFound: "AGENTD_E_CP_NOT_FOUND",
  methodNotAllowed: "AGENTD_E_CP_METHOD_NOT_ALLOWED",
  tooLarge: "AGENTD_E_CP_TOO_LARGE",
  unsupportedMedia: "AGENTD_E_CP_UNSUPPORTED_MEDIA",
  rateLimited: "AGENTD_E_CP_RATE_LIMITED",
});

/** What the per-address and per-caller limits say when they refuse. */
export const RATE_LIMITED = Object.freeze({
  address: "too many requests from this address",
  caller: "too many requests from this caller",
});
