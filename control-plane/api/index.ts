import { adminGroup } from "./admin.ts";
import { assignmentGroup } from "./assignment.ts";
import { attestGroup } from "./attest.ts";
import { auditGroup } from "./audit.ts";
import { commandsGroup } from "./commands.ts";
import type { ApiContext, ApiGroup } from "./context.ts";
import { enrollmentGroup } from "./enrollment.ts";
import { healthGroup } from "./health.ts";
import { heartbeatGroup } from "./heartbeat.ts";
import { keysGroup } from "./keys.ts";
import { maintenanceGroup } from "./maintenance.ts";
import { ownerRotationsGroup } from "./owner-rotations.ts";
import { ownersGroup } from "./owners.ts";
import { policiesGroup } from "./policies.ts";
import { republisherGroup } from "./republisher.ts";
import { revocationsGroup } from "./revocations.ts";
import { streamGroup } from "./stream.ts";

/**
 * Every endpoint group of the control plane, for `startControlPlane` (control-plane/serve.ts,
 * the tests of the whole API). Together they declare each route of protocol/roles.ts once;
 * test/control-plane/api/role-matrix.test.ts calls every one of them as every kind of caller.
 * Groups start in this order and stop in reverse: the stream feed (push) is up before the
 * republisher begins to publish.
 */
export function allGroups(ctx: ApiContext): readonly ApiGroup[] {
  return [
    healthGroup(ctx),
    keysGroup(ctx),
    ownersGroup(ctx),
    enrollmentGroup(ctx),
    attestGroup(ctx),
    policiesGroup(ctx),
    revocationsGroup(ctx),
    ownerRotationsGroup(ctx),
    assignmentGroup(ctx),
    heartbeatGroup(ctx),
    commandsGroup(ctx),
    streamGroup(ctx),
    adminGroup(ctx),
    auditGroup(ctx),
    republisherGroup(ctx),
    maintenanceGroup(ctx),
  ];
}
