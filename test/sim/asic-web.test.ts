import { afterEach, describe, expect, it } from "vitest";
import { fakeTime, systemTimers } from "../../lib/timers.ts";
import { httpSend } from "../../plugins/http/client.ts";
import { simIdentity } from "../../sim/asic/identity.ts";
import { WebUi } from "../../sim/asic/web-ui.ts";
import { useHarness } from "./asic-harness.ts";

const h = useHarness();
const webs: WebUi[] = [];
afterEach(async () => {
  for (const w of webs.splice(0)) await w.close();
});

async function web(
  profile: "s9" | "s19",
  extra: Partial<ConstructorParameters<typeof WebUi>[0]> = {},
) {
  const pool = await h.pool();
  const { miner } = h.miner(profile, [pool.url]);
  const w = new WebUi({ miner, ...extra });
  webs.push(w);
  await w.listen();
  const base = `http://127.0.0.1:${w.address.port}/cgi-bin`;
  const o = { timers: systemTimers, maxReplyBytes: 1 << 20, timeoutMs: 5_000 };
  const call = async (script: string, body: unknown = null, password = "root") =>
    httpSend(
      body === null ? "GET" : "POST",
      `${base}/${script}.cgi`,
      body === null ? null : JSON.stringify(body),
      {
        ...o,
        credentials: { username: "root", password },
      },
    );
  return { miner, w, base, o, call, pool };
}

describe("the stock Antminer web UI", () => {
  it("asks for digest auth in realm antMiner Configuration (MD5, qop=auth)", async () => {
    const { base, o } = await web("s19");
    const r = await httpSend("GET", `${base}/get_system_info.cgi`, null, o).catch((e) => e);
    expect(r.code).toBe("AGENTD_E_MINER_AUTH");
    const raw = await fetch(`${base}/get_system_info.cgi`);
    expect(raw.status).toBe(401);
    expect(raw.headers.get("www-authenticate")).toMatch(
      /^Digest realm="antMiner Configuration", qop="auth", nonce="[0-9a-f]{32}", algorithm=MD5$/,
    );
  });

  it("get_system_info: minertype, the MAC in upper case, serinum (S19); the S9 has no serial", async () => {
    const s19 = await web("s19");
    const info = JSON.parse((await s19.call("get_system_info")).body);
    expect(info).toMatchObject({
      minertype: "Antminer S19",
      macaddr: s19.miner.mac.toUpperCase(),
      serinum: s19.miner.serial,
      firmware_type: "Release",
    });
    const s9 = await web("s9");
    const info9 = JSON.parse((await s9.call("get_system_info")).body);
    expect(info9.minertype).toBe("Antminer S9");
    expect(info9).not.toHaveProperty("serinum");
  });

  it("get_miner_conf: three pool slots (unused ones empty) and bitmain-work-mode as a string", async () => {
    const { call, pool } = await web("s19");
    const conf = JSON.parse((await call("get_miner_conf")).body);
    expect(conf.pools).toEqual([
      { url: pool.url, user: "owner.rig1", pass: "x" },
      { url: "", user: "", pass: "" },
      { url: "", user: "", pass: "" },
    ]);
    expect(conf["bitmain-work-mode"]).toBe("0");
  });

  it("set_miner_conf answers success at once and applies after the delay (fake time)", async () => {
    const ft = fakeTime(0);
    const { call, miner } = await web("s19", { timers: ft.timers, applyDelayMs: 20_000 });
    const r = JSON.parse((await call("set_miner_conf", { "miner-mode": 1, pools: [] })).body);
    expect(r).toEqual({ stats: "success", code: "M000", msg: "OK!" });
    expect(miner.mode).toBe("normal");
    await ft.advance(19_999);
    expect(miner.mode).toBe("normal");
    await ft.advance(1);
    expect(miner.mode).toBe("sleep");
    expect(JSON.parse((await call("get_miner_conf")).body)["bitmain-work-mode"]).toBe("1");
  });

  it("write-ignored: success and no change; a bad body is refused; the S9 has no set_miner_conf", async () => {
    const ft = fakeTime(0);
    const { call, miner, w } = await web("s19", { timers: ft.timers, applyDelayMs: 10 });
    miner.setCondition("write-ignored", true);
    expect(JSON.parse((await call("set_miner_conf", { "miner-mode": 3 })).body).stats).toBe(
      "success",
    );
    await ft.advance(1_000);
    expect(miner.mode).toBe("normal");
    expect(w.writes).toBe(1);
    expect(JSON.parse((await call("set_miner_conf", { "miner-mode": 7 })).body).stats).toBe(
      "error",
    );
    const s9 = await web("s9");
    expect((await s9.call("set_miner_conf", { pools: [] })).status).toBe(404);
  });

  it("a changed password is refused until the driver has it", async () => {
    const { call, w } = await web("s19");
    w.setPassword("n3w");
    expect((await call("get_miner_conf").catch((e) => e)).code).toBe("AGENTD_E_MINER_AUTH");
    expect((await call("get_miner_conf", null, "n3w")).status).toBe(200);
  });

  it("identity: derived from the miner's id alone, locally administered", () => {
    expect(simIdentity("s19-0", 3)).toEqual(simIdentity("s19-0", 3));
    expect(simIdentity("s19-0", 3).mac).not.toBe(simIdentity("s19-1", 3).mac);
    expect(simIdentity("s19-0", 3).mac).toMatch(/^02(:[0-9a-f]{2}){5}$/);
    expect(simIdentity("s19-0", 3).boardSerials).toHaveLength(3);
  });
});
