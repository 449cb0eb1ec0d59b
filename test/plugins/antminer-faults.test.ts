import { createServer, type Server } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { AntminerS9Driver } from "../../plugins/antminer/s9.ts";
import { AntminerS19Driver } from "../../plugins/antminer/s19.ts";
import type { FaultKind } from "../../sim/asic/faults.ts";
import {
  context,
  rejection,
  type SteppedTime,
  steppedTime,
  useSimAntminers,
} from "./antminer-sim.ts";

let time: SteppedTime = steppedTime();
const sim = useSimAntminers(() => time);
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

describe("malformed 4028 replies are repaired: the reading is the same", () => {
  for (const kind of ["api-nan", "api-trailing-comma", "api-no-nul", "api-glitch"] as FaultKind[]) {
    it(kind, async () => {
      time = steppedTime();
      const s = await sim("s9");
      s.miner.setCondition(kind, true);
      const r = await new AntminerS9Driver(s.endpoint, context(time)).read();
      expect(r.hashrateGhs).toBe(13_500);
      expect(r.boards.map((b) => b.chips)).toEqual([63, 63, 63]);
      expect(r.pools).toHaveLength(1);
    });
  }
});

describe("broken replies are a clear per-miner error", () => {
  it("a reset half-way through a 4028 reply: AGENTD_E_MINER_UNREACHABLE", async () => {
    time = steppedTime();
    const s = await sim("s19", { hashing: false });
    s.miner.setCondition("api-reset", true);
    const err = await rejection(new AntminerS19Driver(s.endpoint, context(time)).read());
    expect(err.code).toBe("AGENTD_E_MINER_UNREACHABLE");
    expect(err.message).toMatch(/mid-reply|closed/);
  });

  it("a 10 MB 4028 reply is cut at the bound: AGENTD_E_MINER_REPLY_TOO_LARGE", async () => {
    time = steppedTime();
    const s = await sim("s9", { hashing: false });
    s.miner.setCondition("api-huge", true);
    const err = await rejection(new AntminerS9Driver(s.endpoint, context(time)).read());
    expect(err.code).toBe("AGENTD_E_MINER_REPLY_TOO_LARGE");
    expect(err.context).toMatchObject({ limit: 1024 * 1024 });
  });

  it("a 10 MB and a reset web UI reply: AGENTD_E_MINER_REPLY_TOO_LARGE, _UNREACHABLE", async () => {
    time = steppedTime();
    const s = await sim("s19", { hashing: false });
    s.miner.setCondition("web-huge", true);
    const d = new AntminerS19Driver(s.endpoint, context(time));
    expect((await rejection(d.detect())).code).toBe("AGENTD_E_MINER_REPLY_TOO_LARGE");
    s.miner.setCondition("web-huge", false);
    s.miner.setCondition("web-reset", true);
    expect((await rejection(d.detect())).code).toBe("AGENTD_E_MINER_UNREACHABLE");
  });

  it("a miner that accepts and never answers: AGENTD_E_MINER_TIMEOUT when the bound passes", async () => {
    time = steppedTime();
    const held: import("node:net").Socket[] = [];
    const server = createServer((socket) => held.push(socket));
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    const d = new AntminerS9Driver({ host: "127.0.0.1", apiPort: port }, context(time));
    const armed = time.nextTimer(600_000);
    const read = rejection(d.read());
    await armed;
    await time.advance(600_000);
    expect((await read).code).toBe("AGENTD_E_MINER_TIMEOUT");
    for (const socket of held) socket.destroy();
  });

  it("one miner's faults do not touch another read at the same time", async () => {
    time = steppedTime();
    const bad = await sim("s9", { id: "s9-bad" });
    const good = await sim("s9", { id: "s9-good" });
    bad.miner.setCondition("api-huge", true);
    const [b, g] = await Promise.allSettled([
      new AntminerS9Driver(bad.endpoint, context(time)).read(),
      new AntminerS9Driver(good.endpoint, context(time)).read(),
    ]);
    expect(b.status).toBe("rejected");
    expect(g.status === "fulfilled" && g.value.hashrateGhs).toBe(13_500);
    bad.miner.setCondition("api-huge", false);
    bad.miner.setCondition("api-reset", true);
    const [b2, g2] = await Promise.allSettled([
      new AntminerS9Driver(bad.endpoint, context(time)).read(),
      new AntminerS9Driver(good.endpoint, context(time)).read(),
    ]);
    expect(b2.status === "rejected" && (b2.reason as { code: string }).code).toBe(
      "AGENTD_E_MINER_UNREACHABLE",
    );
    expect(g2.status === "fulfilled" && g2.value.boards).toHaveLength(3);
  });
});
