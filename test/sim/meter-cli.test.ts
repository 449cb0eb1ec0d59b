import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { get } from "node:http";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { AGENTD_BIN, agentd } from "../support/cli.ts";

const children: ChildProcessWithoutNullStreams[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
});

function start(args: string[]) {
  const child = spawn(AGENTD_BIN, ["sim", "meter", "--listen", "127.0.0.1:0", ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root" },
  });
  children.push(child);
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout }).on("line", (l) => {
    lines.push(l);
    for (const w of waiters.splice(0)) w();
  });
  child.stderr.resume();
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const line = async (n: number): Promise<string> => {
    while (lines.length < n) {
      await Promise.race([new Promise<void>((r) => waiters.push(r)), exited]);
      if (child.exitCode !== null && lines.length < n) throw new Error(`exited before line ${n}`);
    }
    return lines[n - 1] as string;
  };
  return { child, line, exited };
}

function fetchText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    }).on("error", reject);
  });
}

describe("agentd sim meter (the CLI)", () => {
  it("prints the ready line, one line per body served, and exits 0 on SIGTERM", async () => {
    const meter = start(["--shape", "pdu", "--outlets", "2", "--watts", "700", "--events"]);
    const ready = JSON.parse(await meter.line(1)) as Record<string, unknown>;
    expect(ready).toEqual({
      ready: true,
      host: "127.0.0.1",
      port: expect.any(Number),
      shape: "pdu",
      url: `http://127.0.0.1:${ready.port}/outlets`,
      pointer: "/outlets/0/watts",
    });
    const r = await fetchText(ready.url as string);
    expect(r.status).toBe(200);
    const body = JSON.parse(r.body) as { outlets: { watts: number }[]; sim_seq: number };
    expect(JSON.parse(await meter.line(2))).toEqual({
      read: { seq: body.sim_seq, watts: body.outlets.map((o) => o.watts) },
    });
    expect(body.outlets.map((o) => o.watts)).toEqual([700.25, 710.25]);
    meter.child.kill("SIGTERM");
    expect(await meter.exited).toBe(0);
  });

  it("starts with a fault and with auth", async () => {
    const meter = start(["--fault", "nan", "--auth", "digest", "--password", "pw"]);
    const ready = JSON.parse(await meter.line(1)) as { url: string };
    expect((await fetchText(ready.url)).status).toBe(401);
    meter.child.kill("SIGTERM");
    expect(await meter.exited).toBe(0);
  });

  it.each([
    [["--shape", "emeter"], '--shape: expected shelly|pdu, found "emeter"'],
    [["--fault", "fire"], "--fault: expected not-number|negative|nan|missing|relay-off|malformed"],
    [["--watts", "lots"], '--watts: expected a number, found "lots"'],
    [["--outlets", "0"], '--outlets: expected an integer from 1 to 9999, found "0"'],
    [["--listen", "nowhere"], '--listen: expected HOST:PORT, found "nowhere"'],
    [["--auth", "digest"], "--password: expected the password --auth requires"],
    [["--auth", "ntlm", "--password", "x"], '--auth: expected basic|digest, found "ntlm"'],
  ])("refuses %j with exit 2", (args, message) => {
    const r = agentd(["sim", "meter", ...args]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("AGENTD_E_USAGE");
    expect(r.stderr).toContain(message);
  });
});
