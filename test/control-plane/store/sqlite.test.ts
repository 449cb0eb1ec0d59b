import { sqliteBackend } from "./harness.ts";
import { storeSuite } from "./suite.ts";

storeSuite(sqliteBackend());
