import { describe, expect, it } from "vitest";
import { redactSecrets } from "../../plugins/capture.ts";

describe("redactSecrets (what miners probe --capture writes)", () => {
  it("replaces pool passwords, tokens and API keys, and nothing else, byte for byte", () => {
    const raw =
      '{"pools":[{"url":"stratum+tcp://a:3333","user":"w.1","pass":"hunter2"},{"url":"b","user":"w.2","pass":"x\\"y"}],"bitmain-fan-ctrl":false,"api-key":"k1","Token": "t0k","secret_word":"s","password2":"p"}\u0000';
    const r = redactSecrets(raw);
    expect(r.count).toBe(6);
    for (const s of ["hunter2", 'x\\"y', "k1", "t0k", '"s"', '"p"'])
      expect(r.text).not.toContain(s);
    expect(r.text).toContain('"user":"w.1"');
    expect(r.text).toContain('"Token": "REDACTED"');
    // everything but the values is as it was: the same text with the values put back
    expect(r.text.endsWith("\u0000")).toBe(true);
    expect(r.text.replaceAll("REDACTED", "")).toBe(
      raw
        .replace("hunter2", "")
        .replace('x\\"y', "")
        .replace('"k1"', '""')
        .replace('"t0k"', '""')
        .replace('"s"', '""')
        .replace('"p"', '""'),
    );
  });

  it("leaves a reply without secrets untouched, quirks included", () => {
    const raw = '{"STATS":[{"a":1}{"b":2}],"GHS 5s":"13500.12",}\u0000';
    expect(redactSecrets(raw)).toEqual({ text: raw, count: 0 });
  });
});
