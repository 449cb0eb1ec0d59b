import type { TestProject } from "vitest/node";
import { type PostgresServer, startPostgres } from "./postgres.ts";

/**
 * Starts the test run's PostgreSQL once (test/support/postgres.ts) and hands its URL to the
 * test files (`inject("agentdPostgres")`). A failure to start does not stop the other tests:
 * the reason is handed over instead, and every test that needs PostgreSQL fails with it.
 */
export default async function setup(project: TestProject): Promise<() => void> {
  let server: PostgresServer | null = null;
  try {
    server = await startPostgres();
    project.provide("agentdPostgres", { url: server.url });
  } catch (e) {
    project.provide("agentdPostgres", { error: e instanceof Error ? e.message : String(e) });
  }
  // Also on an abrupt exit of the test runner, do not leave a server behind.
  const stop = () => {
    server?.stop();
    server = null;
  };
  process.once("exit", stop);
  return () => {
    process.removeListener("exit", stop);
    stop();
  };
}
