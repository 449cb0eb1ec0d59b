import type { TestProject } from "vitest/node";
import { type PodmanService, podmanAvailable, startPodman } from "./podman.ts";

/**
 * Starts the test run's Podman service once (test/support/podman.ts) and hands its endpoint to
 * the test files (`inject("agentdPodman")`). Where Podman cannot run at all, the reason is handed
 * over as `skip` (also when a rootless service fails to start); where it must run (root) but
 * fails to start, as `error`, and every test that needs it fails with it (the other tests still
 * run).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let service: PodmanService | null = null;
  const availability = podmanAvailable();
  if (!availability.available) {
    project.provide("agentdPodman", { skip: availability.reason });
  } else {
    try {
      service = await startPodman();
      // Only data crosses to the test files: the service's methods stay here.
      const {
        stop: _stop,
        stopSync: _stopSync,
        stopService: _stopService,
        startService: _startService,
        ...endpoint
      } = service;
      project.provide("agentdPodman", endpoint);
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      // Rootless Podman that cannot start here cannot run at all: skip. As root it must run.
      project.provide(
        "agentdPodman",
        process.getuid?.() === 0
          ? { error: message }
          : { skip: `rootless Podman failed: ${message}` },
      );
    }
  }
  // Also on an abrupt exit of the test runner, leave no service, container or mount behind.
  const stopSync = () => {
    service?.stopSync();
    service = null;
  };
  process.once("exit", stopSync);
  return async () => {
    process.removeListener("exit", stopSync);
    const s = service;
    service = null;
    await s?.stop();
  };
}
