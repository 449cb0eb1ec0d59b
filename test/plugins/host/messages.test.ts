/**
 * The channel's checks without a process: each side refuses what its schema does not
 * describe, says where without quoting the value, and a line reader never holds more than
 * one message's bound.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AgentdError } from "../../../lib/errors.ts";
import { DEFAULT_LIMITS, type Reading } from "../../../plugins/driver.ts";
import { wireError } from "../../../plugins/host/host.ts";
import { LineReader } from "../../../plugins/host/lines.ts";
import { checkResult, decodeHostMessage, decodeRequest } from "../../../plugins/host/messages.ts";
import { lookupUser } from "../../../plugins/host/os-user.ts";

const miner = {
  family: "antminer-s19",
  endpoint: { host: "10.0.0.7", webPort: 80 },
  credentials: { username: "root", password: "pw" },
  limits: DEFAULT_LIMITS,
};
const line = (v: unknown) => JSON.stringify(v);
const caught = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return e as AgentdError;
  }
  throw new Error("expected a throw");
};

describe("requests (checked by the host)", () => {
  it("takes each op with its arguments", () => {
    expect(decodeRequest(line({ v: 1, id: 1, op: "read", miner })).op).toBe("read");
    const slots = [{ url: "stratum+tcp://p:3333", user: "u", password: "x" }];
    expect(
      decodeRequest(line({ v: 1, id: 2, op: "setPools", miner, args: { slots } })),
    ).toMatchObject({
      args: { slots },
    });
    expect(
      decodeRequest(line({ v: 1, id: 3, op: "detect", miner: { ...miner, family: "auto" } })).id,
    ).toBe(3);
  });

  it.each([
    ["an unknown op", { v: 1, id: 4, op: "exec", miner }, "/op"],
    [
      "auto outside detect",
      { v: 1, id: 5, op: "read", miner: { ...miner, family: "auto" } },
      "/miner/family",
    ],
    ["an extra member", { v: 1, id: 6, op: "read", miner, shell: "rm -rf /" }, "/shell"],
    [
      "a watt target of zero",
      { v: 1, id: 7, op: "setPowerTarget", miner, args: { watts: 0 } },
      "/args/watts",
    ],
  ])("refuses %s, answering its id", (_name, message, pointer) => {
    const e = caught(() => decodeRequest(line(message)));
    expect(e.code).toBe("AGENTD_E_DRIVER_MESSAGE_INVALID");
    expect(e.context).toMatchObject({ pointer, id: (message as { id: number }).id });
  });

  it("names where a secret in the wrong place is, never the secret", () => {
    const e = caught(() =>
      decodeRequest(
        line({
          v: 1,
          id: 8,
          op: "read",
          miner: { ...miner, endpoint: { host: "h", password: "hunter2" } },
        }),
      ),
    );
    expect(e.context.pointer).toBe("/miner/endpoint/password");
    expect(JSON.stringify(e.toJSON())).not.toContain("hunter2");
  });

  it("refuses duplicate keys and what is not JSON", () => {
    expect(caught(() => decodeRequest('{"v":1,"id":1,"id":2,"op":"ping"}')).code).toBe(
      "AGENTD_E_DRIVER_MESSAGE_INVALID",
    );
    expect(caught(() => decodeRequest("}{")).context.id).toBeUndefined();
  });
});

describe("replies (checked by the agent)", () => {
  const reading: Reading = {
    at: 1,
    hashrateGhs: null,
    boards: [],
    fans: [],
    power: { watts: 1350, provenance: "measured", source: "meter-1" },
    mode: "unknown",
    pools: [],
    uptimeS: null,
    errors: [],
  };

  it("checks a result against the op it answers", () => {
    expect(checkResult("read", 1, reading)).toEqual(reading);
    const e = caught(() => checkResult("detect", 9, reading));
    expect(e.context).toMatchObject({ id: 9, pointer: "/family", keyword: "required" });
    expect(
      caught(() => checkResult("read", 1, { ...reading, errors: Array(65).fill("x") })).context
        .pointer,
    ).toBe("/errors");
  });

  it("takes only the error codes a host may answer with", () => {
    const reply = (code: string) =>
      line({ type: "reply", v: 1, id: 1, ok: false, error: { code, message: "m", context: {} } });
    expect(decodeHostMessage(reply("AGENTD_E_MINER_AUTH")).type).toBe("reply");
    // A host must not speak for the policy guard or the agent's own state.
    expect(caught(() => decodeHostMessage(reply("AGENTD_E_IDENTITY_CLONED"))).code).toBe(
      "AGENTD_E_DRIVER_MESSAGE_INVALID",
    );
  });

  it("a driver's error is bounded before it is sent, and a foreign code becomes INTERNAL", () => {
    const long = new AgentdError("AGENTD_E_MINER_REFUSED", "x".repeat(5000), {
      context: { a: "y".repeat(2000), n: Number.NaN },
    });
    const w = wireError(long);
    expect(w.message.length).toBe(1024);
    expect(w.context).toEqual({ a: `${"y".repeat(511)}…`, n: null });
    expect(wireError(new AgentdError("AGENTD_E_IO", "disk")).code).toBe("AGENTD_E_INTERNAL");
    expect(wireError(new TypeError("undefined is not a function")).message).toContain(
      "driver failed",
    );
  });
});

describe("LineReader", () => {
  it("assembles lines across chunks and stops at the bound", () => {
    const lines: string[] = [];
    const over: number[] = [];
    const r = new LineReader(
      10,
      (l) => lines.push(l),
      (n) => over.push(n),
    );
    r.push(Buffer.from("ab"));
    r.push(Buffer.from("c\nde\n\nfgh"));
    expect(lines).toEqual(["abc", "de"]);
    r.push(Buffer.from("ijklmnop"));
    expect(over).toEqual([11]);
    r.push(Buffer.from("\nq\n"));
    expect(lines).toEqual(["abc", "de"]);
    expect(r.peak).toBeLessThanOrEqual(10);
  });
});

describe("lookupUser", () => {
  it("reads uid and gid from a passwd file, null when absent", () => {
    const dir = mkdtempSync(join(tmpdir(), "agentd-passwd-"));
    try {
      const p = join(dir, "passwd");
      writeFileSync(
        p,
        "root:x:0:0:root:/root:/bin/bash\nagentd-drivers:x:997:995::/nonexistent:/usr/sbin/nologin\n",
      );
      expect(lookupUser("agentd-drivers", p)).toEqual({
        name: "agentd-drivers",
        uid: 997,
        gid: 995,
      });
      expect(lookupUser("agentd", p)).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
