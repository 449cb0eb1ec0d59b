import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // One PostgreSQL for the whole run (the control-plane store and API tests use it), and one
    // Podman service speaking the Docker Engine API (the supervisor's engine tests use it).
    globalSetup: ["./test/support/pg-global-setup.ts", "./test/support/podman-global-setup.ts"],
    // Real processes, sockets and fsync: forks isolate them; two cores here.
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 20_000,
    hookTimeout: 30_000,
    reporters: ["default", "./test/support/summary-reporter.ts"],
  },
});
