import { describe, expect, it } from "vitest";
import { miningAnswerText } from "../../cli/commands/local-views.ts";
import { type StatusDoc, statusText } from "../../cli/commands/status.ts";

/** `agentd status` and `agentd mining pause|resume` say who paused and since when (issue 15). */

const NOW = Date.parse("2026-12-01T12:00:00Z");
const base: StatusDoc = {
  worker_id: "w",
  state: "PAUSED",
  since: NOW - 60_000,
  reason: "paused",
  decision: { mining: false, reasons: ["agent.paused", "agent.paused_remotely"] },
  policy: { version: 1, consent_sha256: null },
};

describe("pauses in words", () => {
  it("status: paused locally since …, paused remotely by command … since …", () => {
    const text = statusText(
      {
        ...base,
        pause: {
          local: { by: "local API", since: NOW - 3_600_000 },
          remote: { by: "command c-9", since: NOW - 60_000 },
        },
      },
      NOW,
    );
    expect(text).toContain("paused locally since 2026-12-01T11:00:00Z");
    expect(text).toContain("paused remotely by command c-9 since 2026-12-01T11:59:00Z");
    expect(statusText({ ...base, pause: { local: null, remote: null } }, NOW)).not.toContain(
      "paused locally",
    );
  });

  it("a resume on the machine says the remote pause remains", () => {
    const doc = {
      ...base,
      decision: { mining: false, reasons: ["agent.paused_remotely"] },
      pause: { local: null, remote: { by: "command c-9", since: NOW - 60_000 } },
    } as unknown as Record<string, unknown>;
    expect(miningAnswerText(doc, NOW)).toContain("still paused remotely by command c-9 since");
    const free = { ...doc, pause: { local: null, remote: null } };
    expect(miningAnswerText(free, NOW)).not.toContain("still paused");
  });
});
