import { postgresBackend } from "./harness.ts";
import { storeSuite } from "./suite.ts";

// Fails (never skips) when PostgreSQL is missing: test/support/pg-global-setup.ts.
storeSuite(postgresBackend());
