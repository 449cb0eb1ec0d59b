import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { AgentdError } from "../../lib/errors.ts";
import { fakeTime, systemTimers } from "../../lib/timers.ts";
import { digestAuthorization, httpSend } from "../../plugins/http/client.ts";

const md5 = (s: string) => createHash("md5").update(s).digest("hex");
const REALM = "antMiner Configuration";

/**
 * The server half of RFC 7616 (MD5, qop=auth), written here and not shared with the client
 * or the simulator: it recomputes the response from the password it knows.
 */
function digestOk(req: IncomingMessage, password: string, nonces: Set<string>): boolean {
  const h = req.headers.authorization ?? "";
  if (!h.startsWith("Digest ")) return false;
  const p: Record<string, string> = {};
  for (const m of h.slice(7).matchAll(/(\w+)=(?:"([^"]*)"|([^,\s]+))/g)) {
    p[m[1] as string] = m[2] ?? m[3] ?? "";
  }
  if (p.realm !== REALM || p.uri !== req.url || !nonces.has(p.nonce ?? "")) return false;
  if (p.qop !== "auth" || p.nc === undefined || p.cnonce === undefined) return false;
  const ha1 = md5(`${p.username}:${REALM}:${password}`);
  const ha2 = md5(`${req.method}:${p.uri}`);
  return p.response === md5(`${ha1}:${p.nonce}:${p.nc}:${p.cnonce}:auth:${ha2}`);
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function serve(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

/** An Antminer-like CGI: digest with root/`password`, echoes the POST body. */
async function antminer(password: string) {
  const nonces = new Set<string>();
  const seen: { auth: boolean; body: string }[] = [];
  const base = await serve((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      const auth = digestOk(req, password, nonces);
      seen.push({ auth, body });
      if (!auth) {
        const nonce = randomBytes(8).toString("hex");
        nonces.add(nonce);
        res.writeHead(401, {
          "www-authenticate": `Digest realm="${REALM}", qop="auth", nonce="${nonce}"`,
        });
        res.end();
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ ok: true, body }));
    });
  });
  return { base, seen };
}

const o = { timers: systemTimers, maxReplyBytes: 64 * 1024, timeoutMs: 5_000 };
const root = (password: string) => ({ username: "root", password });

async function failure(p: Promise<unknown>): Promise<AgentdError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AgentdError) return err;
    throw err;
  }
  throw new Error("resolved");
}

describe("digest authentication (RFC 7616, MD5, qop=auth)", () => {
  it("matches the RFC 7616 section 3.9.1 example response", () => {
    const header = digestAuthorization(
      "GET",
      "http://www.example.org/dir/index.html",
      'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"',
      { username: "Mufasa", password: "Circle of Life" },
      "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    );
    expect(header).toContain('response="8ca523f5e9506fed4657c9700eebdbec"');
    expect(header).toContain('opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"');
    expect(header).toContain("qop=auth, nc=00000001");
  });

  it("answers the challenge once; the server verifies it; the POST body arrives", async () => {
    const m = await antminer("s3cret");
    const r = await httpSend("POST", `${m.base}/cgi-bin/set_miner_conf.cgi?x=1`, '{"a":1}', {
      ...o,
      credentials: root("s3cret"),
    });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ ok: true, body: '{"a":1}' });
    expect(m.seen.map((s) => s.auth)).toEqual([false, true]);
  });

  it("a wrong password: AGENTD_E_MINER_AUTH, and the password is in no message or context", async () => {
    const m = await antminer("s3cret");
    const err = await failure(
      httpSend("GET", `${m.base}/cgi-bin/get_system_info.cgi`, null, {
        ...o,
        credentials: root("hunter2"),
      }),
    );
    expect(err.code).toBe("AGENTD_E_MINER_AUTH");
    expect(JSON.stringify([err.message, err.context])).not.toContain("hunter2");
  });

  it("no credentials, or a 401 without a digest challenge: AGENTD_E_MINER_AUTH", async () => {
    const m = await antminer("x");
    expect((await failure(httpSend("GET", `${m.base}/`, null, o))).message).toMatch(
      /credentials needed/,
    );
    const basic = await serve((_q, res) => {
      res.writeHead(401, { "www-authenticate": 'Basic realm="x"' });
      res.end();
    });
    expect(
      (await failure(httpSend("GET", `${basic}/`, null, { ...o, credentials: root("x") }))).message,
    ).toMatch(/no digest challenge/);
  });
});

describe("bounds", () => {
  it("a reply over maxReplyBytes: AGENTD_E_MINER_REPLY_TOO_LARGE", async () => {
    const base = await serve((_q, res) => res.end("x".repeat(200_000)));
    const err = await failure(httpSend("GET", `${base}/`, null, o));
    expect(err).toMatchObject({
      code: "AGENTD_E_MINER_REPLY_TOO_LARGE",
      context: { limit: 65536 },
    });
  });

  it("no reply within timeoutMs (fake time): AGENTD_E_MINER_TIMEOUT; none left pending after a reply", async () => {
    const ft = fakeTime(0);
    const base = await serve(() => {});
    const p = failure(httpSend("GET", `${base}/`, null, { ...o, timers: ft.timers }));
    expect(ft.delays()).toEqual([5_000]);
    await ft.advance(5_000);
    expect((await p).code).toBe("AGENTD_E_MINER_TIMEOUT");
    const fast = await serve((_q, res) => res.end("{}"));
    await httpSend("GET", `${fast}/`, null, { ...o, timers: ft.timers });
    expect(ft.pending()).toBe(0);
  });

  it("a reset half-way and a closed port: AGENTD_E_MINER_UNREACHABLE", async () => {
    const base = await serve((_q, res) => {
      res.writeHead(200, { "content-length": "100" });
      res.write("x".repeat(50), () => res.socket?.resetAndDestroy());
    });
    expect((await failure(httpSend("GET", `${base}/`, null, o))).code).toBe(
      "AGENTD_E_MINER_UNREACHABLE",
    );
    const closed = await serve(() => {});
    await new Promise((r) => servers.pop()?.close(r));
    expect((await failure(httpSend("GET", `${closed}/`, null, o))).code).toBe(
      "AGENTD_E_MINER_UNREACHABLE",
    );
  });
});
