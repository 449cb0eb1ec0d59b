import { base64urlBytes, closed, frozen, ID16, root, UNIX_TIME } from "./common.ts";

/**
 * Request proof (`agentd-proof+jwt`, signed by the machine key), one per HTTP request, in the
 * spirit of DPoP (RFC 9449): it binds the request's method and URL, a moment and the access
 * token to the machine key.
 */

export const HTTP_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

export interface ProofPayload {
  readonly htm: HttpMethod;
  /** The request URL normalised (proof.ts normalizeHtu): no query, no fragment. */
  readonly htu: string;
  readonly iat: number;
  /** 16 random bytes, base64url: never accepted twice. */
  readonly jti: string;
  /** base64url(sha256(access token)); absent only where no token is sent. */
  readonly ath?: string;
}

export const proofSchema = frozen(
  root("proof", "Request proof payload (agentd-proof+jwt)", {
    ...closed(
      {
        htm: { enum: [...HTTP_METHODS] },
        htu: { type: "string", minLength: 9, maxLength: 2048, pattern: "^https://[^\\s?#]+$" },
        iat: UNIX_TIME,
        jti: ID16,
        ath: base64urlBytes(32),
      },
      ["htm", "htu", "iat", "jti"],
    ),
  }),
);
