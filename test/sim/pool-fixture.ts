/** Starting pools and handshaken test clients, closed after each test. */
import { afterEach } from "vitest";
import { SimPool, type SimPoolOptions } from "../../sim/pool/server.ts";
import { type Message, type Notify, parseNotify, TestClient } from "./pool-helpers.ts";

/** 2^-20: 4096 hashes per share on average, and an exact target (DIFF1 << 20). */
export const EASY = 2 ** -20;

export interface Miner {
  readonly client: TestClient;
  readonly extranonce1: string;
  readonly extranonce2Size: number;
  readonly difficulty: number;
  readonly job: Notify;
}

export function usePools(): {
  start(o?: SimPoolOptions): Promise<SimPool>;
  client(pool: SimPool): Promise<TestClient>;
  miner(pool: SimPool, user?: string, configure?: Message["params"]): Promise<Miner>;
} {
  const pools: SimPool[] = [];
  const clients: TestClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await Promise.all(pools.splice(0).map((p) => p.close()));
  });
  const client = async (pool: SimPool) => {
    const c = await TestClient.connect(pool.address.port);
    clients.push(c);
    return c;
  };
  return {
    async start(o = {}) {
      const pool = await SimPool.start({ difficulty: EASY, jobIntervalMs: 0, ...o });
      pools.push(pool);
      return pool;
    },
    client,
    async miner(pool, user = "alice", configure) {
      const c = await client(pool);
      if (configure) await c.request("mining.configure", configure);
      const sub = await c.request("mining.subscribe", ["test-miner/1.0"]);
      const [, extranonce1, extranonce2Size] = sub.result as [unknown, string, number];
      const auth = await c.request("mining.authorize", [user, "x"]);
      if (auth.result !== true) throw new Error(`authorize failed: ${JSON.stringify(auth)}`);
      const diff = await c.notification("mining.set_difficulty");
      const job = parseNotify(await c.notification("mining.notify"));
      return {
        client: c,
        extranonce1,
        extranonce2Size,
        difficulty: (diff.params ?? [])[0] as number,
        job,
      };
    },
  };
}
