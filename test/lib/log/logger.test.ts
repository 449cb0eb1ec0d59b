import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { componentLogger, createLogger } from "../../../lib/log/logger.ts";
import { isSecretName, REDACTED, redact } from "../../../lib/log/redact.ts";

function capture() {
  const lines: string[] = [];
  return {
    lines,
    destination: { write: (s: string) => void lines.push(s) },
    records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const SECRETS = {
  token: "tok-AAAA1111",
  password: "pw-BBBB2222",
  macaroon: "0201036c6e64-CCCC3333",
  privateKey: "raw-DDDD4444",
  api_key: "ak-EEEE5555",
  nested: {
    authorization: "Bearer FFFF6666",
    rpc: { cookie: "__cookie__:GGGG7777", "enrollment-token": "et-HHHH8888" },
    list: [{ secret: "IIII9999" }],
  },
  pem: "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJJJJ0000\n-----END PRIVATE KEY-----\n",
};
const SECRET_VALUES = [
  "tok-AAAA1111",
  "pw-BBBB2222",
  "CCCC3333",
  "DDDD4444",
  "EEEE5555",
  "FFFF6666",
  "GGGG7777",
  "HHHH8888",
  "IIII9999",
  "JJJJ0000",
];

describe("logger", () => {
  it("writes JSON lines with level, time and component, and redacts every secret", () => {
    const out = capture();
    const root = createLogger({ level: "info", destination: out.destination });
    const log = componentLogger(root, "supervisor");
    log.info(
      { service: "lnd", worker_id: "w1", key_file: "/var/lib/agentd/machine.key.pem", ...SECRETS },
      "starting",
    );
    const [rec] = out.records();
    expect(rec).toMatchObject({
      level: "info",
      component: "supervisor",
      msg: "starting",
      service: "lnd",
      worker_id: "w1",
      key_file: "/var/lib/agentd/machine.key.pem",
      token: REDACTED,
      password: REDACTED,
      macaroon: REDACTED,
      privateKey: REDACTED,
      api_key: REDACTED,
      pem: REDACTED,
    });
    expect(typeof rec?.time).toBe("string");
    const raw = out.lines.join("");
    for (const s of SECRET_VALUES) expect(raw).not.toContain(s);
  });

  it("redacts secrets bound to a child logger and inside logged errors", () => {
    const out = capture();
    const root = createLogger({ level: "debug", destination: out.destination });
    const child = root.child({ component: "cp-client", token: "child-KKKK" });
    const err = Object.assign(new Error("boom"), { password: "err-LLLL" });
    child.debug({ err }, "failed");
    const raw = out.lines.join("");
    expect(raw).toContain("boom");
    expect(raw).not.toContain("child-KKKK");
    expect(raw).not.toContain("err-LLLL");
  });

  it("honours the level", () => {
    const out = capture();
    const log = createLogger({ level: "warn", destination: out.destination });
    log.info("hidden");
    log.warn("shown");
    expect(out.records().map((r) => r.msg)).toEqual(["shown"]);
  });

  it("goes to stderr by default, leaving stdout to machine-readable output", () => {
    const fixture = join(import.meta.dirname, "..", "..", "fixtures", "log-to-stderr.ts");
    const r = spawnSync(process.execPath, [fixture], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('{"ready":true}\n');
    const rec = JSON.parse(r.stderr.trim()) as Record<string, unknown>;
    expect(rec).toMatchObject({ msg: "hello", component: "fixture", password: REDACTED });
    expect(r.stderr).not.toContain("hunter2");
  });
});

describe("redact", () => {
  it("recognises secret names in any casing and leaves others", () => {
    for (const n of [
      "token",
      "accessToken",
      "ACCESS_TOKEN",
      "private_key",
      "privateKey",
      "apiKey",
      "key",
      "rpc-password",
      "macaroon",
      "Cookie",
      "seed",
    ]) {
      expect(isSecretName(n), n).toBe(true);
    }
    for (const n of ["kid", "key_file", "monkey", "bypass", "worker_id", "tokens_used", "keys"]) {
      expect(isSecretName(n), n).toBe(false);
    }
  });

  it("bounds cycles and depth instead of throwing", () => {
    const a: Record<string, unknown> = { name: "a" };
    a.self = a;
    expect(redact(a)).toEqual({ name: "a", self: "[Circular]" });
  });
});
