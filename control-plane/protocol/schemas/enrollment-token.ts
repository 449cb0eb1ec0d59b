import { base64urlBytes, closed, frozen, ID16, root, SHA256_HEX, THUMBPRINT } from "./common.ts";

/**
 * The payload inside an enrollment token `agentd1.<base64url(canonical JSON)>`
 * (enrollment-token.ts encodes and decodes it). The token is self-describing so that the
 * agent can check the control plane's CA and root key before trusting anything it says.
 */

export interface EnrollmentTokenPayload {
  /** The control plane's base URL, `https://host[:port]`, as agents must reach it. */
  readonly url: string;
  /** sha256 hex of the DER of the control plane's CA certificate. */
  readonly ca_sha256: string;
  /** Thumbprint of the control-plane root key that signs the key set. */
  readonly root_kid: string;
  /** 16 random bytes, base64url: the lookup key. */
  readonly id: string;
  /** 32 random bytes, base64url: stored by the control plane only as sha256. */
  readonly secret: string;
}

export const CP_URL = {
  type: "string",
  minLength: 9,
  maxLength: 512,
  // An origin: scheme https, a host name, IPv4 or [IPv6], an optional port, nothing after.
  pattern:
    "^https://(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(:[1-9][0-9]{0,4})?$",
} as const;

export const enrollmentTokenSchema = frozen(
  root("enrollment-token", "Enrollment token payload (inside agentd1.…)", {
    ...closed({
      url: CP_URL,
      ca_sha256: SHA256_HEX,
      root_kid: THUMBPRINT,
      id: ID16,
      secret: base64urlBytes(32),
    }),
  }),
);
