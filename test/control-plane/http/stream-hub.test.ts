import { describe, expect, it } from "vitest";
import { type StreamConnection, StreamHub } from "../../../control-plane/http/stream-hub.ts";

class FakeConn implements StreamConnection {
  bufferedAmount = 0;
  sent: string[] = [];
  closed: number | undefined;
  terminated = false;
  send(data: string): void {
    this.sent.push(data);
  }
  close(code?: number): void {
    this.closed = code ?? 1000;
  }
  terminate(): void {
    this.terminated = true;
  }
}

describe("StreamHub", () => {
  it("sends to every stream of the key and to no other key", () => {
    const hub = new StreamHub();
    const a1 = new FakeConn();
    const a2 = new FakeConn();
    const b = new FakeConn();
    hub.add("a", a1);
    hub.add("a", a2);
    hub.add("b", b);
    expect(hub.send("a", { type: "command", id: 1 })).toBe(2);
    expect(a1.sent).toEqual(['{"type":"command","id":1}']);
    expect(a2.sent).toEqual(['{"type":"command","id":1}']);
    expect(b.sent).toEqual([]);
    expect(hub.send("nobody", "x")).toBe(0);
  });

  it("removal is idempotent and forgets empty keys", () => {
    const hub = new StreamHub();
    const c = new FakeConn();
    const remove = hub.add("a", c);
    remove();
    remove();
    expect(hub.count()).toBe(0);
    expect(hub.send("a", "x")).toBe(0);
  });

  it("terminates a stream whose queue would pass the bound instead of buffering more", () => {
    const drops: string[] = [];
    const hub = new StreamHub({ maxBufferedBytes: 100, onDrop: (k, r) => drops.push(`${k}:${r}`) });
    const slow = new FakeConn();
    const fast = new FakeConn();
    hub.add("a", slow);
    hub.add("a", fast);
    slow.bufferedAmount = 95;
    expect(hub.send("a", "0123456789")).toBe(1);
    expect(slow.terminated).toBe(true);
    expect(slow.sent).toEqual([]);
    expect(fast.sent).toEqual(["0123456789"]);
    expect(hub.count("a")).toBe(1);
    expect(drops).toEqual(["a:backpressure"]);
  });

  it("caps streams per key by closing the oldest", () => {
    const drops: string[] = [];
    const hub = new StreamHub({ maxPerKey: 2, onDrop: (k, r) => drops.push(`${k}:${r}`) });
    const [c1, c2, c3] = [new FakeConn(), new FakeConn(), new FakeConn()];
    hub.add("a", c1);
    hub.add("a", c2);
    hub.add("a", c3);
    expect(c1.closed).toBe(1008);
    expect(hub.count("a")).toBe(2);
    hub.send("a", "m");
    expect([c1.sent, c2.sent, c3.sent]).toEqual([[], ["m"], ["m"]]);
    expect(drops).toEqual(["a:stream_limit"]);
  });

  it("closes everything on closeAll", () => {
    const hub = new StreamHub();
    const cs = [new FakeConn(), new FakeConn()];
    hub.add("a", cs[0] as FakeConn);
    hub.add("b", cs[1] as FakeConn);
    hub.closeAll();
    expect(cs.map((c) => c.closed)).toEqual([1001, 1001]);
    expect(hub.count()).toBe(0);
  });
});
