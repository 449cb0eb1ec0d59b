/**
 * The Braiins OS driver under faults: the 4028 ones the simulator shares with every firmware
 * (malformed JSON, a reset mid-reply, a 10 MB reply) and the gRPC ones (no API, a miner that
 * never answers). Each is a clear error of that miner alone.
 */
import { createServer, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { BraiinsOsDriver } from "../../plugins/braiins/driver.ts";
import { context, drive, LIMITS, rejection, steppedTime } from "./antminer-sim.ts";
import { useSimBraiins } from "./braiins-sim.ts";

let time = steppedTime();
const sim = useSimBraiins(() => time);
const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

const TARGETS = [{ url: "stratum+tcp://pool.example:3333", user: "agentd.w1", password: "x" }];

describe("braiins-os faults", () => {
  it("malformed 4028 JSON (bare nan/inf, trailing commas, no NUL) is repaired and read", async () => {
    time = steppedTime();
    const s = await sim();
    for (const f of ["api-nan", "api-trailing-comma", "api-no-nul"] as const) {
      s.miner.setCondition(f, true);
    }
    const r = await new BraiinsOsDriver(s.endpoint, context(time)).read();
    expect(r.hashrateGhs).toBeCloseTo(s.miner.profile.nominalGhs, 3);
    expect(r.power?.provenance).toBe("estimated");
  });

  it("a reset mid-reply fails this miner's read and not another's", async () => {
    time = steppedTime();
    const bad = await sim({ id: "bos-bad" });
    const good = await sim({ id: "bos-good" });
    bad.miner.setCondition("api-reset", true);
    const [err, r] = await Promise.all([
      rejection(new BraiinsOsDriver(bad.endpoint, context(time)).read()),
      new BraiinsOsDriver(good.endpoint, context(time)).read(),
    ]);
    expect(err.code).toMatch(/^AGENTD_E_MINER_(UNREACHABLE|REPLY_INVALID)$/);
    expect(r.hashrateGhs).toBeCloseTo(good.miner.profile.nominalGhs, 3);
  });

  it("a 10 MB reply is cut off unread: AGENTD_E_MINER_REPLY_TOO_LARGE", async () => {
    time = steppedTime();
    const s = await sim({ hashing: false });
    s.miner.setCondition("api-huge", true);
    const err = await rejection(new BraiinsOsDriver(s.endpoint, context(time)).read());
    expect(err.code).toBe("AGENTD_E_MINER_REPLY_TOO_LARGE");
  });

  it("write-ignored: SetPoolGroups acknowledged and not applied is AGENTD_E_MINER_NOT_CONFIRMED", async () => {
    time = steppedTime();
    const s = await sim({ hashing: false });
    s.miner.setCondition("write-ignored", true);
    const d = new BraiinsOsDriver(s.endpoint, context(time));
    const err = await rejection(drive(time, () => d.setPools(TARGETS)));
    expect(err.code).toBe("AGENTD_E_MINER_NOT_CONFIRMED");
    expect(err.context).toMatchObject({ action: "setPools" });
    expect(s.grpc.requests).toContain("SetPoolGroups");
    expect(s.miner.slots.map((x) => x.url.text)).toEqual([s.pool.url]);
    // and the same fault drops a power-target raise (a cut still holds)
    expect((await rejection(drive(time, () => d.setPowerTarget(1300)))).code).toBe(
      "AGENTD_E_MINER_NOT_CONFIRMED",
    );
    expect(await drive(time, () => d.setPowerTarget(1200))).toMatchObject({ reads: 1 });
  });

  it("no gRPC API: setPools is AGENTD_E_MINER_UNREACHABLE, nothing changed", async () => {
    time = steppedTime();
    const s = await sim({ hashing: false });
    await s.grpc.close();
    const err = await rejection(new BraiinsOsDriver(s.endpoint, context(time)).setPools(TARGETS));
    expect(err.code).toBe("AGENTD_E_MINER_UNREACHABLE");
    expect(s.miner.slots).toHaveLength(1);
  });

  it("a gRPC port that accepts and never answers times out on the injected timers", async () => {
    time = steppedTime();
    const s = await sim({ hashing: false });
    const sockets: Socket[] = [];
    const mute = createServer((sock) => sockets.push(sock));
    await new Promise<void>((r) => mute.listen(0, "127.0.0.1", r));
    closers.push(() => {
      for (const sock of sockets) sock.destroy();
      mute.close();
    });
    const port = (mute.address() as { port: number }).port;
    const limits = { ...LIMITS, requestTimeoutMs: 5_000 };
    const d = new BraiinsOsDriver({ ...s.endpoint, grpcPort: port }, { ...context(time), limits });
    const timerSet = time.nextTimer(5_000);
    const p = rejection(d.setPowerTarget(1000));
    await timerSet;
    await time.advance(5_000);
    const err = await p;
    expect(err.code).toBe("AGENTD_E_MINER_TIMEOUT");
    expect(err.message).toContain("Login");
  });
});
