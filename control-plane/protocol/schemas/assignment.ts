import {
  closed,
  frozen,
  root,
  SHA256_HEX,
  THUMBPRINT,
  UNIX_TIME,
  UPSTREAM_URL,
  UPSTREAM_USER,
} from "./common.ts";

/**
 * Assignment (`agentd-assignment+jwt`, signed by a control-plane `assignment` key): which of
 * the owner's allowed upstreams this worker uses, naming the consent it derives from.
 */

export interface AssignmentUpstream {
  readonly url: string;
  readonly user: string;
}

export interface AssignmentPayload {
  readonly v: 1;
  readonly worker: string;
  readonly consent_sha256: string;
  readonly upstream: AssignmentUpstream;
  readonly iat: number;
  readonly exp: number;
}

export const MAX_ASSIGNMENT_TTL_S = 86_400;

export const assignmentSchema = frozen(
  root("assignment", "Assignment payload (agentd-assignment+jwt)", {
    ...closed({
      v: { const: 1 },
      worker: THUMBPRINT,
      consent_sha256: SHA256_HEX,
      // The same bounds as a consent's upstream (policy-guard/documents.ts); equality with one
      // of the consent's upstreams is what really constrains it (documents/assignment.ts).
      upstream: closed({ url: UPSTREAM_URL, user: UPSTREAM_USER }),
      iat: UNIX_TIME,
      exp: UNIX_TIME,
    }),
  }),
);
