/**
 * Migration 4 (issue 15): the control plane's counters are scoped to the consent in force,
 * like the agent's (DOCUMENTS.md section 4), so that counters driven to 2^53 − 1 — by a
 * stolen key, or by someone who edited the database — lock out nothing beyond that consent:
 * the owner's next consent starts afresh.
 *
 * - `workers.version_consent`, `workers.command_seq_consent`: the identity of the consent
 *   `last_version` and `last_command_seq` count for. A publication or a command for another
 *   consent starts that counter over (control-plane/store/sql/ops/allocate.ts). Filled in
 *   here with the worker's latest consent: the counters of before apply to the consent in
 *   force at the upgrade.
 * - `commands.consent_identity`: the consent a command was issued under (null for commands
 *   issued before the upgrade).
 */
export const SCHEMA_V4: readonly string[] = [
  "ALTER TABLE workers ADD COLUMN version_consent TEXT",
  "ALTER TABLE workers ADD COLUMN command_seq_consent TEXT",
  `UPDATE workers SET
     version_consent = (SELECT c.identity FROM consents c
                        WHERE c.worker_id = workers.worker_id AND c.seq = workers.consent_seq),
     command_seq_consent = (SELECT c.identity FROM consents c
                            WHERE c.worker_id = workers.worker_id AND c.seq = workers.consent_seq)`,
  "ALTER TABLE commands ADD COLUMN consent_identity TEXT",
];
