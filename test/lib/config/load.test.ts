import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { renderConfigDoc } from "../../../lib/config/doc.ts";
import { configFields, envName, loadConfig, redactedConfig } from "../../../lib/config/load.ts";
import { AgentdError, type ErrorCode } from "../../../lib/errors.ts";
import { useTmpDir } from "../../support/tmp.ts";

const tmp = useTmpDir();

function configFile(text: string, mode = 0o600): string {
  const p = join(tmp(), "agentd.toml");
  writeFileSync(p, text, { mode });
  chmodSync(p, mode);
  return p;
}

function thrown(f: () => unknown): AgentdError {
  try {
    f();
  } catch (err) {
    if (err instanceof AgentdError) return err;
    throw err;
  }
  throw new Error("expected an AgentdError, nothing was thrown");
}

function expectError(f: () => unknown, code: ErrorCode, ...fragments: string[]): AgentdError {
  const e = thrown(f);
  expect(e.code).toBe(code);
  expect(e.message).not.toContain("\n");
  for (const frag of fragments) expect(e.message).toContain(frag);
  expect(e.exitCode).toBe(code.startsWith("AGENTD_E_CONFIG_") ? 2 : 1);
  return e;
}

describe("loadConfig", () => {
  it("uses the defaults when the default file is absent", () => {
    const loaded = loadConfig({ env: {}, defaultPath: join(tmp(), "absent.toml") });
    expect(loaded.file).toBeNull();
    expect(loaded.config.paths.state_dir).toBe("/var/lib/agentd");
    expect(loaded.config.paths.run_dir).toBe("/run/agentd");
    expect(loaded.config.stratum.listen).toBe("0.0.0.0:3333");
    expect(loaded.config.stratum.max_line_bytes).toBe(16384);
    expect(Object.values(loaded.origins).every((o) => o === "default")).toBe(true);
  });

  it("applies flags over env over file over defaults, and records each origin", () => {
    const file = configFile(
      '[stratum]\nlisten = "10.0.0.1:1"\nmax_line_bytes = 2048\n[log]\nlevel = "debug"\n',
    );
    const env = { AGENTD_STRATUM__LISTEN: "10.0.0.2:2", AGENTD_LOG__LEVEL: "warn" };
    const flags = [{ key: "stratum.listen", value: "10.0.0.3:3", flag: "--set" }];

    const fileOnly = loadConfig({ configPath: file, env: {} });
    expect(fileOnly.config.stratum.listen).toBe("10.0.0.1:1");
    expect(fileOnly.file).toBe(file);

    const withEnv = loadConfig({ configPath: file, env });
    expect(withEnv.config.stratum.listen).toBe("10.0.0.2:2");
    expect(withEnv.config.log.level).toBe("warn");
    expect(withEnv.config.stratum.max_line_bytes).toBe(2048);

    const all = loadConfig({ configPath: file, env, flags });
    expect(all.config.stratum.listen).toBe("10.0.0.3:3");
    expect(all.origins).toMatchObject({
      "stratum.listen": "flag",
      "log.level": "env",
      "stratum.max_line_bytes": "file",
      "paths.state_dir": "default",
    });
  });

  it("finds the file through AGENTD_CONFIG, and --config wins over it", () => {
    const a = configFile('[paths]\nstate_dir = "/tmp/a"\n');
    const bDir = tmp();
    const b = join(bDir, "b.toml");
    writeFileSync(b, '[paths]\nstate_dir = "/tmp/b"\n', { mode: 0o600 });
    expect(loadConfig({ env: { AGENTD_CONFIG: a } }).config.paths.state_dir).toBe("/tmp/a");
    expect(loadConfig({ configPath: b, env: { AGENTD_CONFIG: a } }).config.paths.state_dir).toBe(
      "/tmp/b",
    );
  });

  it("coerces env text to integers and booleans", () => {
    const c = loadConfig({
      env: { AGENTD_HEARTBEAT__INTERVAL_S: "15", AGENTD_STRATUM__VARDIFF: "false" },
      defaultPath: join(tmp(), "none.toml"),
    }).config;
    expect(c.heartbeat.interval_s).toBe(15);
    expect(c.stratum.vardiff).toBe(false);
  });

  it("reads decimal numbers (difficulties) from env, and refuses non-numbers and out-of-range ones", () => {
    const none = join(tmp(), "none.toml");
    const c = loadConfig({
      env: { AGENTD_STRATUM__INITIAL_DIFFICULTY: "1.5e-5" },
      defaultPath: none,
    }).config;
    expect(c.stratum.initial_difficulty).toBe(1.5e-5);
    expectError(
      () => loadConfig({ env: { AGENTD_STRATUM__MIN_DIFFICULTY: "tiny" }, defaultPath: none }),
      "AGENTD_E_CONFIG_TYPE",
      'stratum.min_difficulty: expected a number, found "tiny"',
    );
    expectError(
      () => loadConfig({ env: { AGENTD_STRATUM__MIN_DIFFICULTY: "0" }, defaultPath: none }),
      "AGENTD_E_CONFIG_RANGE",
      "stratum.min_difficulty: expected a number from 1e-12 to 1000000000000000, found 0",
    );
  });

  it("returns a deeply frozen object", () => {
    const c = loadConfig({ env: {}, defaultPath: join(tmp(), "none.toml") }).config;
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.stratum)).toBe(true);
    expect(() => {
      (c.stratum as { listen: string }).listen = "x";
    }).toThrow(TypeError);
  });

  describe("refuses, with one line naming the key, what was expected and what was found", () => {
    const none = () => join(tmp(), "none.toml");

    it("a missing file named by --config or AGENTD_CONFIG", () => {
      const p = join(tmp(), "missing.toml");
      expectError(() => loadConfig({ configPath: p, env: {} }), "AGENTD_E_CONFIG_NOT_FOUND", p);
      expectError(() => loadConfig({ env: { AGENTD_CONFIG: p } }), "AGENTD_E_CONFIG_NOT_FOUND", p);
    });

    it("an unreadable file (a directory)", () => {
      const d = tmp();
      expectError(() => loadConfig({ configPath: d, env: {} }), "AGENTD_E_CONFIG_UNREADABLE", d);
    });

    it("a config file others can write", () => {
      const p = configFile('[log]\nlevel = "info"\n', 0o666);
      expectError(() => loadConfig({ configPath: p, env: {} }), "AGENTD_E_FILE_INSECURE_MODE", p);
    });

    it("broken TOML, with line and column", () => {
      const p = configFile('[stratum]\nlisten = "a:1"\nmax_line_bytes = = 3\n');
      expectError(
        () => loadConfig({ configPath: p, env: {} }),
        "AGENTD_E_CONFIG_PARSE",
        `${p}:3:`,
        "expected valid TOML",
      );
    });

    it("an unknown key, top-level or nested", () => {
      expectError(
        () => loadConfig({ configPath: configFile("[stratun]\nlisten = 'a:1'\n"), env: {} }),
        "AGENTD_E_CONFIG_UNKNOWN_KEY",
        "stratun: expected one of paths, log,",
        "found an unknown key",
      );
      expectError(
        () => loadConfig({ configPath: configFile("[stratum]\nlisen = 'a:1'\n"), env: {} }),
        "AGENTD_E_CONFIG_UNKNOWN_KEY",
        "stratum.lisen: expected one of stratum.listen,",
      );
      expectError(
        () =>
          loadConfig({
            env: {},
            defaultPath: none(),
            flags: [{ key: "x.y", value: "1", flag: "--set" }],
          }),
        "AGENTD_E_CONFIG_UNKNOWN_KEY",
        "x.y",
      );
    });

    it("an unknown AGENTD_ variable", () => {
      expectError(
        () => loadConfig({ env: { AGENTD_STRATUM__LISEN: "a:1" }, defaultPath: none() }),
        "AGENTD_E_CONFIG_UNKNOWN_ENV",
        "AGENTD_STRATUM__LISEN",
      );
    });

    it("a wrong type, from the file, env and flags", () => {
      expectError(
        () =>
          loadConfig({ configPath: configFile('[stratum]\nmax_line_bytes = "big"\n'), env: {} }),
        "AGENTD_E_CONFIG_TYPE",
        'stratum.max_line_bytes: expected an integer, found "big"',
      );
      expectError(
        () => loadConfig({ env: { AGENTD_STRATUM__MAX_LINE_BYTES: "12k" }, defaultPath: none() }),
        "AGENTD_E_CONFIG_TYPE",
        'stratum.max_line_bytes: expected an integer, found "12k" (env AGENTD_STRATUM__MAX_LINE_BYTES)',
      );
      expectError(
        () => loadConfig({ configPath: configFile("stratum = 5\n"), env: {} }),
        "AGENTD_E_CONFIG_TYPE",
        "stratum: expected a table, found 5",
      );
      expectError(
        () => loadConfig({ configPath: configFile("[stratum]\nvardiff = 1\n"), env: {} }),
        "AGENTD_E_CONFIG_TYPE",
        "stratum.vardiff: expected true or false, found 1",
      );
      expectError(
        () =>
          loadConfig({ configPath: configFile("[stratum]\nmax_line_bytes = 2048.5\n"), env: {} }),
        "AGENTD_E_CONFIG_TYPE",
        "expected an integer, found 2048.5",
      );
    });

    it("an out-of-range value", () => {
      expectError(
        () => loadConfig({ configPath: configFile("[stratum]\nmax_line_bytes = 10\n"), env: {} }),
        "AGENTD_E_CONFIG_RANGE",
        "stratum.max_line_bytes: expected an integer from 1024 to 1048576, found 10",
      );
      expectError(
        () => loadConfig({ env: { AGENTD_LOG__LEVEL: "loud" }, defaultPath: none() }),
        "AGENTD_E_CONFIG_RANGE",
        'log.level: expected one of fatal, error, warn, info, debug, trace, silent, found "loud"',
      );
      expectError(
        () => loadConfig({ env: { AGENTD_STRATUM__LISTEN: "0.0.0.0:70000" }, defaultPath: none() }),
        "AGENTD_E_CONFIG_RANGE",
        "stratum.listen: expected host:port",
      );
      expectError(
        () => loadConfig({ env: { AGENTD_PATHS__STATE_DIR: "relative/dir" }, defaultPath: none() }),
        "AGENTD_E_CONFIG_RANGE",
        "paths.state_dir: expected an absolute path",
      );
      expectError(
        () =>
          loadConfig({
            env: { AGENTD_CONTROL_PLANE__URL: "http://cp.example" },
            defaultPath: none(),
          }),
        "AGENTD_E_CONFIG_RANGE",
        "control_plane.url: expected a https URL",
      );
    });
  });

  it("never echoes a secret in an error, and redacts it for display", () => {
    const e = expectError(
      () => loadConfig({ configPath: configFile("[api]\ntoken = 12345678\n"), env: {} }),
      "AGENTD_E_CONFIG_TYPE",
      "api.token",
    );
    expect(e.message).not.toContain("12345678");
    const c = loadConfig({
      env: { AGENTD_API__TOKEN: "s3cr3t-token" },
      defaultPath: join(tmp(), "n"),
    }).config;
    expect(c.api.token).toBe("s3cr3t-token");
    const shown = JSON.stringify(redactedConfig(c));
    expect(shown).not.toContain("s3cr3t-token");
    expect(shown).toContain('"token":"[REDACTED]"');
  });

  it("accepts IPv6 listen addresses and the empty 'off' value where optional", () => {
    const c = loadConfig({
      env: { AGENTD_STRATUM__LISTEN: "[::1]:0", AGENTD_API__LISTEN: "" },
      defaultPath: join(tmp(), "n"),
    }).config;
    expect(c.stratum.listen).toBe("[::1]:0");
    expect(c.api.listen).toBe("");
    expectError(
      () => loadConfig({ env: { AGENTD_STRATUM__LISTEN: "" }, defaultPath: join(tmp(), "n") }),
      "AGENTD_E_CONFIG_RANGE",
    );
  });

  it("maps every key to its env name and documents it in docs/config.md (current)", () => {
    expect(envName("stratum.listen")).toBe("AGENTD_STRATUM__LISTEN");
    expect(envName("paths.state_dir")).toBe("AGENTD_PATHS__STATE_DIR");
    const doc = readFileSync(new URL("../../../docs/config.md", import.meta.url), "utf8");
    expect(doc).toBe(renderConfigDoc());
    for (const key of configFields().keys()) expect(doc).toContain(`| \`${key}\` |`);
  });

  it("accepts a config file others may read but not write (0644)", () => {
    const d = tmp();
    mkdirSync(join(d, "sub"));
    const p = join(d, "sub", "agentd.toml");
    writeFileSync(p, "[log]\nlevel='warn'\n", { mode: 0o644 });
    expect(loadConfig({ configPath: p, env: {} }).config.log.level).toBe("warn");
  });
});
