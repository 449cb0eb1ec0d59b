import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { defineRoute } from "../../../control-plane/http/route.ts";
import { initControlPlaneKeys } from "../../../control-plane/keys/init.ts";
import { createApiClient, enroll } from "../../../control-plane/protocol/client.ts";
import {
  encodeEnrollmentToken,
  parseEnrollmentToken,
} from "../../../control-plane/protocol/enrollment-token.ts";
import { encodeBase64url } from "../../../lib/crypto/base64url.ts";
import { generateEd25519KeyPair, jwkThumbprint, publicJwk } from "../../../lib/crypto/ed25519.ts";
import { FACTS, rejection, type ServedCp, useServedCp } from "./client-fixture.ts";

/** An owner registered through the API, with its API client and a fresh enrollment token. */
async function ownerWithToken(cp: ServedCp) {
  const pair = generateEd25519KeyPair();
  const created = await cp.api(cp.adminKey).createOwner({ jwk: publicJwk(pair.publicKey) });
  const owner = cp.api(created.api_key);
  const { token } = await owner.createEnrollmentToken();
  return { ...pair, ownerId: created.owner, owner, token };
}

describe("protocol client: enrollment from a token alone", () => {
  const serve = useServedCp();

  it("checks the CA pin and the root pin, then registers the machine key", async () => {
    const cp = await serve();
    const o = await ownerWithToken(cp);
    const machine = generateEd25519KeyPair();
    const e = await enroll({
      token: o.token,
      machineKey: machine.privateKey,
      facts: FACTS,
      ownerPub: o.publicKey,
      clock: cp.clock,
    });
    expect(e.workerId).toBe(jwkThumbprint(machine.publicKey));
    expect(e.ownerId).toBe(o.ownerId);
    expect(e.url).toBe(cp.url());
    expect(e.keyset.rootKid).toBe(cp.rootKid);
    expect(e.caPem.trim()).toBe(cp.caPem.trim());
    expect(cp.seen.filter((s) => s === "POST /v1/machines/register")).toHaveLength(1);
    const worker = await cp.serving.store.getWorker(e.workerId);
    expect(worker?.owner_id).toBe(o.ownerId);
    // single use: the server's own code comes back
    const again = await rejection(
      enroll({
        token: o.token,
        machineKey: generateEd25519KeyPair().privateKey,
        facts: FACTS,
        clock: cp.clock,
      }),
    );
    expect(again.code).toBe("AGENTD_E_CP_TOKEN_INVALID");
    expect(again.context.status).toBe(401);
  });

  it("refuses a token whose CA hash is not the server's CA: nothing is sent at all", async () => {
    const cp = await serve();
    const o = await ownerWithToken(cp);
    const t = parseEnrollmentToken(o.token);
    const wrongCa = encodeEnrollmentToken({ ...t, ca_sha256: randomBytes(32).toString("hex") });
    const before = cp.seen.length;
    const err = await rejection(
      enroll({
        token: wrongCa,
        machineKey: generateEd25519KeyPair().privateKey,
        facts: FACTS,
        clock: cp.clock,
      }),
    );
    expect(err.code).toBe("AGENTD_E_ENROLL_PIN_MISMATCH");
    expect(cp.seen.slice(before)).toEqual([]);
    expect(await cp.serving.store.listWorkers()).toEqual([]);
    // The token was not spent: the right token still enrolls.
    const ok = await enroll({
      token: o.token,
      machineKey: generateEd25519KeyPair().privateKey,
      facts: FACTS,
      clock: cp.clock,
    });
    expect(ok.ownerId).toBe(o.ownerId);
  });

  it("refuses a token whose root thumbprint did not sign the key set, before register", async () => {
    const cp = await serve();
    const o = await ownerWithToken(cp);
    const t = parseEnrollmentToken(o.token);
    const wrongRoot = encodeEnrollmentToken({ ...t, root_kid: encodeBase64url(randomBytes(32)) });
    const before = cp.seen.length;
    const err = await rejection(
      enroll({
        token: wrongRoot,
        machineKey: generateEd25519KeyPair().privateKey,
        facts: FACTS,
        clock: cp.clock,
      }),
    );
    expect(err.code).toBe("AGENTD_E_ENROLL_PIN_MISMATCH");
    // The public key set was read; the secret never left.
    expect(cp.seen.slice(before)).toEqual(["GET /v1/keys"]);
    expect(await cp.serving.store.listWorkers()).toEqual([]);
  });

  it("refuses an enrollment the control plane put under another owner than the one given", async () => {
    const cp = await serve();
    const o = await ownerWithToken(cp);
    const stranger = generateEd25519KeyPair();
    const err = await rejection(
      enroll({
        token: o.token,
        machineKey: generateEd25519KeyPair().privateKey,
        facts: FACTS,
        ownerPub: stranger.publicKey,
        clock: cp.clock,
      }),
    );
    expect(err.code).toBe("AGENTD_E_ENROLL_PIN_MISMATCH");
  });

  it("refuses a malformed token locally", async () => {
    const cp = await serve();
    const before = cp.seen.length;
    const err = await rejection(
      enroll({
        token: "agentd1.e30",
        machineKey: generateEd25519KeyPair().privateKey,
        facts: FACTS,
        clock: cp.clock,
      }),
    );
    expect(err.code).toBe("AGENTD_E_CP_TOKEN_INVALID");
    expect(cp.seen.slice(before)).toEqual([]);
  });
});

describe("protocol client: transport and errors", () => {
  const serve = useServedCp();
  const servers: Server[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  const otherKeys = () => {
    const d = mkdtempSync(join(tmpdir(), "agentd-client-keys-"));
    dirs.push(d);
    return initControlPlaneKeys(join(d, "keys"), {
      hosts: ["127.0.0.1"],
      now: Math.floor(Date.now() / 1000),
    });
  };

  it("keeps the server's error code and status", async () => {
    const cp = await serve();
    const bad = cp.api(`agentd_admin_${encodeBase64url(randomBytes(32))}`);
    const err = await rejection(
      bad.createOwner({ jwk: publicJwk(generateEd25519KeyPair().publicKey) }),
    );
    expect(err.code).toBe("AGENTD_E_CP_UNAUTHENTICATED");
    expect(err.context.status).toBe(401);
    expect(await cp.api().health()).toEqual({ status: "ok" });
  });

  it("trusts only the pinned CA: another CA's client cannot connect", async () => {
    const cp = await serve();
    const client = createApiClient({
      url: cp.url(),
      caPem: otherKeys().caCertPem,
      clock: cp.clock,
    });
    try {
      const err = await rejection(client.health());
      expect(err.code).toBe("AGENTD_E_HTTP");
    } finally {
      client.close();
    }
  });

  it("checks a request against its schema before sending it", async () => {
    const cp = await serve();
    const before = cp.seen.length;
    const err = await rejection(cp.api(cp.adminKey).createOwner({ jwk: { kty: "RSA" } as never }));
    expect(err.code).toBe("AGENTD_E_SCHEMA");
    expect(cp.seen.slice(before)).toEqual([]);
  });

  it("refuses answers the protocol does not define", async () => {
    const cp = await serve({
      groups: () => [
        {
          routes: [
            defineRoute({
              method: "GET",
              path: "/healthz",
              auth: ["public"],
              handler: async () => ({ status: 200, body: { status: "splendid" } }),
            }),
            defineRoute({
              method: "GET",
              path: "/readyz",
              auth: ["public"],
              handler: async () => ({
                status: 200,
                text: "<html>ok</html>",
                headers: { "content-type": "text/html" },
              }),
            }),
            defineRoute({
              method: "GET",
              path: "/v1/keys",
              auth: ["public"],
              handler: async () => ({
                status: 418,
                text: "",
                headers: { "content-type": "text/plain" },
              }),
            }),
          ],
        },
      ],
    });
    const api = cp.api();
    expect((await rejection(api.health())).code).toBe("AGENTD_E_SCHEMA");
    expect((await rejection(api.ready())).code).toBe("AGENTD_E_HTTP");
    const teapot = await rejection(api.getKeys());
    expect(teapot.code).toBe("AGENTD_E_HTTP");
    expect(teapot.context.status).toBe(418);
  });

  it("gives up at its deadline", async () => {
    const cp = await serve({
      groups: () => [
        {
          routes: [
            defineRoute({
              method: "GET",
              path: "/healthz",
              auth: ["public"],
              // Answers only when the server closes.
              handler: (c) =>
                new Promise((resolve) =>
                  c.signal.addEventListener("abort", () => resolve({ status: 503 })),
                ),
            }),
          ],
        },
      ],
    });
    const client = createApiClient({
      url: cp.url(),
      caPem: cp.caPem,
      clock: cp.clock,
      timeoutMs: 200,
    });
    try {
      const err = await rejection(client.health());
      expect(err.code).toBe("AGENTD_E_HTTP");
      expect(err.message).toMatch(/no answer within 200 ms/);
    } finally {
      client.close();
    }
  });

  it("speaks TLS 1.3 only", async () => {
    const keys = otherKeys();
    const server = createServer(
      { key: keys.serverKeyPem, cert: keys.serverCertPem, maxVersion: "TLSv1.2" },
      (_req, res) => res.end('{"status":"ok"}'),
    );
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as AddressInfo;
    const client = createApiClient({
      url: `https://127.0.0.1:${port}`,
      caPem: keys.caCertPem,
      clock: { now: () => Date.now() },
    });
    try {
      const err = await rejection(client.health());
      expect(err.code).toBe("AGENTD_E_HTTP");
    } finally {
      client.close();
    }
  });
});
