import { describe } from "vitest";
import { type Backend, useStore } from "./harness.ts";
import { auditSuite } from "./suite-audit.ts";
import { commandsSuite } from "./suite-commands.ts";
import { concurrencySuite } from "./suite-concurrency.ts";
import { heartbeatsSuite } from "./suite-heartbeats.ts";
import { identitySuite } from "./suite-identity.ts";
import { lifecycleSuite } from "./suite-lifecycle.ts";
import { operationsSuite } from "./suite-operations.ts";
import { policySuite } from "./suite-policy.ts";
import { rotationsSuite } from "./suite-rotations.ts";
import { workersSuite } from "./suite-workers.ts";

/** The one Store test suite, run against each backend (sqlite.test.ts, postgres.test.ts). */
export function storeSuite(backend: Backend): void {
  describe(`Store on ${backend.name}`, () => {
    const f = useStore(backend);
    identitySuite(f);
    workersSuite(f);
    policySuite(f);
    rotationsSuite(f);
    heartbeatsSuite(f);
    commandsSuite(f);
    operationsSuite(f);
    auditSuite(f);
    lifecycleSuite(f);
    concurrencySuite(f);
  });
}
