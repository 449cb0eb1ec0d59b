/**
 * Migration 2: finishing emergency stops exactly once, and revoking API keys.
 *
 * - `emergency_stops.completed_at`: when every worker in scope was handled (until now only
 *   the audit log said so, as `emergency_stop.completed`); filled in here from that log, so a
 *   stop completed before the upgrade is not taken for one cut off and run again.
 * - `emergency_stops.claimed_by`, `claimed_until`: the instance publishing an executed stop's
 *   `stop` publications, and until when its claim (a lease, renewed while it works) holds.
 * - `api_keys.revoked_at`, `revoked_by`: a revoked key stays in the table (its id and hash can
 *   never be created again) and is never found by its hash any more.
 */
export const SCHEMA_V2: readonly string[] = [
  "ALTER TABLE emergency_stops ADD COLUMN completed_at BIGINT",
  "ALTER TABLE emergency_stops ADD COLUMN claimed_by TEXT",
  "ALTER TABLE emergency_stops ADD COLUMN claimed_until BIGINT",
  `UPDATE emergency_stops SET completed_at = executed_at
   WHERE executed_at IS NOT NULL AND ('emergency_stop:' || id) IN
     (SELECT object FROM audit_events WHERE type = 'emergency_stop.completed')`,
  "ALTER TABLE api_keys ADD COLUMN revoked_at BIGINT",
  "ALTER TABLE api_keys ADD COLUMN revoked_by TEXT",
];
