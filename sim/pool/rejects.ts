/**
 * Reject codes after the original Stratum pool docs (PROTOCOLS.md §1): a refused submit is
 * answered `{"result": null, "error": [code, message, null]}`.
 */
export const REJECT = Object.freeze({
  OTHER: 20,
  JOB_NOT_FOUND: 21,
  DUPLICATE: 22,
  LOW_DIFFICULTY: 23,
  UNAUTHORIZED: 24,
  NOT_SUBSCRIBED: 25,
} as const);

export type RejectCode = (typeof REJECT)[keyof typeof REJECT];

export interface Reject {
  readonly code: RejectCode;
  readonly message: string;
}

export function reject(code: RejectCode, message: string): Reject {
  return { code, message };
}
