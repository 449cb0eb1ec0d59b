import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { connect, createServer, type Server, type TLSSocket } from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { initControlPlaneKeys } from "../../../control-plane/keys/init.ts";
import { loadControlPlaneKeys } from "../../../control-plane/keys/load.ts";
import { rotateKeys } from "../../../control-plane/keys/rotate.ts";
import { renewServerCertificate } from "../../../control-plane/keys/server-cert.ts";
import {
  encodeEnrollmentToken,
  newTokenId,
  newTokenSecret,
  parseEnrollmentToken,
} from "../../../control-plane/protocol/enrollment-token.ts";
import {
  acceptKeySetUpdate,
  KEY_USES,
  signKeySet,
  verifyKeySet,
} from "../../../control-plane/protocol/keyset.ts";
import {
  assertPeerPinned,
  caSha256,
  pinnedClientTlsOptions,
  serverTlsOptions,
} from "../../../control-plane/protocol/tls.ts";
import {
  generateEd25519KeyPair,
  jwkThumbprint,
  privateKeyToPem,
  publicKeyOf,
} from "../../../lib/crypto/ed25519.ts";
import { readPrivateKeyFile, readPublicKeyFile } from "../../../lib/crypto/key-files.ts";
import { AgentdError } from "../../../lib/errors.ts";
import { useTmpDir } from "../../support/tmp.ts";

const NOW = Math.floor(Date.now() / 1000);
const tmp = useTmpDir("agentd-cp-keys-");
const mode = (p: string): number => statSync(p).mode & 0o777;

function refusal(f: () => unknown): AgentdError {
  try {
    f();
  } catch (err) {
    if (err instanceof AgentdError) return err;
    throw err;
  }
  throw new Error("accepted");
}

const freshDir = (): string => join(tmp(), "cp");

describe("initControlPlaneKeys", () => {
  it("creates every key, the key set and the TLS material with the right modes", () => {
    const dir = freshDir();
    const keys = initControlPlaneKeys(dir, { now: NOW });
    expect(mode(dir)).toBe(0o700);
    const files = readdirSync(dir).sort();
    expect(files).toEqual(
      [
        "assignment.key.pem",
        "ca.crt.pem",
        "ca.key.pem",
        "command.key.pem",
        "keyset.jws",
        "publication.key.pem",
        "root.key.pem",
        "root.pub.pem",
        "server.crt.pem",
        "server.key.pem",
        "token.key.pem",
      ].sort(),
    );
    for (const f of files) {
      expect(mode(join(dir, f)), f).toBe(f.includes(".key.pem") ? 0o600 : 0o644);
    }
    expect(keys.keyset.seq).toBe(1);
    expect(keys.keyset.iat).toBe(NOW);
    const rootPub = readPublicKeyFile(join(dir, "root.pub.pem"));
    expect(keys.root.kid).toBe(jwkThumbprint(rootPub));
    expect(jwkThumbprint(publicKeyOf(readPrivateKeyFile(join(dir, "root.key.pem"))))).toBe(
      keys.root.kid,
    );
    expect(keys.keyset.rootKid).toBe(keys.root.kid);
    expect(keys.caSha256).toBe(caSha256(readFileSync(join(dir, "ca.crt.pem"), "utf8")));
    const kids = new Set(KEY_USES.map((u) => keys.signing[u].kid));
    expect(kids.size).toBe(4);
    expect(kids.has(keys.root.kid)).toBe(false);
    for (const use of KEY_USES) {
      expect(Object.keys(keys.keyset.keys[use])).toEqual([keys.signing[use].kid]);
    }
    expect(Object.isFrozen(keys)).toBe(true);
    expect(Object.isFrozen(keys.signing)).toBe(true);
  });

  it("issues the server certificate from the CA for the default hosts", () => {
    const keys = initControlPlaneKeys(freshDir(), { now: NOW });
    const ca = new X509Certificate(keys.caCertPem);
    const server = new X509Certificate(keys.serverCertPem);
    expect(ca.ca).toBe(true);
    expect(server.checkIssued(ca) && server.verify(ca.publicKey)).toBe(true);
    expect(server.subjectAltName).toBe(
      "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1",
    );
    expect(server.validFromDate.getTime() / 1000).toBeLessThan(NOW);
    expect(server.validToDate.getTime()).toBeLessThanOrEqual(ca.validToDate.getTime());
  });

  it("uses the hosts given", () => {
    const keys = initControlPlaneKeys(freshDir(), {
      now: NOW,
      hosts: ["cp.example", "[2001:db8::1]", "10.1.2.3"],
    });
    expect(new X509Certificate(keys.serverCertPem).subjectAltName).toBe(
      "DNS:cp.example, IP Address:2001:DB8:0:0:0:0:0:1, IP Address:10.1.2.3",
    );
  });

  it("accepts an existing empty directory and makes it 0700", () => {
    const dir = freshDir();
    mkdirSync(dir, { mode: 0o755 });
    initControlPlaneKeys(dir, { now: NOW });
    expect(mode(dir)).toBe(0o700);
  });

  it("refuses a non-empty directory or a file, and leaves them alone", () => {
    const dir = freshDir();
    mkdirSync(dir);
    writeFileSync(join(dir, "something"), "x");
    expect(refusal(() => initControlPlaneKeys(dir, { now: NOW })).code).toBe(
      "AGENTD_E_FILE_EXISTS",
    );
    expect(readdirSync(dir)).toEqual(["something"]);
    const file = join(tmp(), "file");
    writeFileSync(file, "x");
    expect(refusal(() => initControlPlaneKeys(file, { now: NOW })).code).toBe(
      "AGENTD_E_FILE_EXISTS",
    );
  });

  it("refuses a bad host name before writing anything", () => {
    const dir = freshDir();
    const err = refusal(() => initControlPlaneKeys(dir, { now: NOW, hosts: ["bad host"] }));
    expect(err.code).toBe("AGENTD_E_USAGE");
    expect(existsSync(dir)).toBe(false);
  });
});

describe("loadControlPlaneKeys refuses an inconsistent directory", () => {
  it("a use key that is not in the key set", () => {
    const dir = freshDir();
    initControlPlaneKeys(dir, { now: NOW });
    writeFileSync(
      join(dir, "command.key.pem"),
      privateKeyToPem(generateEd25519KeyPair().privateKey),
      { mode: 0o600 },
    );
    const err = refusal(() => loadControlPlaneKeys(dir));
    expect(err.code).toBe("AGENTD_E_FILE_CORRUPT");
    expect(err.context.use).toBe("command");
  });

  it("a key set signed by another root", () => {
    const dir = freshDir();
    const keys = initControlPlaneKeys(dir, { now: NOW });
    const other = generateEd25519KeyPair();
    const jws = signKeySet({
      rootPrivateKey: other.privateKey,
      seq: 2,
      iat: NOW,
      keys: KEY_USES.map((use) => ({ use, publicKey: publicKeyOf(keys.signing[use].privateKey) })),
    });
    writeFileSync(join(dir, "keyset.jws"), jws);
    expect(refusal(() => loadControlPlaneKeys(dir)).code).toBe("AGENTD_E_ENROLL_PIN_MISMATCH");
  });

  it("a server certificate from another CA", () => {
    const a = freshDir();
    const b = join(tmp(), "other");
    initControlPlaneKeys(a, { now: NOW });
    initControlPlaneKeys(b, { now: NOW });
    copyFileSync(join(b, "server.crt.pem"), join(a, "server.crt.pem"));
    copyFileSync(join(b, "server.key.pem"), join(a, "server.key.pem"));
    expect(refusal(() => loadControlPlaneKeys(a)).code).toBe("AGENTD_E_KEY_INVALID");
  });

  it("a server key that does not match its certificate", () => {
    const a = freshDir();
    const b = join(tmp(), "other");
    initControlPlaneKeys(a, { now: NOW });
    initControlPlaneKeys(b, { now: NOW });
    copyFileSync(join(b, "server.key.pem"), join(a, "server.key.pem"));
    expect(refusal(() => loadControlPlaneKeys(a)).code).toBe("AGENTD_E_KEY_INVALID");
  });

  it("a private key others can read", () => {
    const dir = freshDir();
    initControlPlaneKeys(dir, { now: NOW });
    chmodSync(join(dir, "server.key.pem"), 0o644);
    expect(refusal(() => loadControlPlaneKeys(dir)).code).toBe("AGENTD_E_FILE_INSECURE_MODE");
  });

  it("a missing file", () => {
    expect(refusal(() => loadControlPlaneKeys(freshDir())).code).toBe("AGENTD_E_IO");
  });
});

describe("rotateKeys", () => {
  it("replaces every use key, keeps the root, and the old set accepts the new one", () => {
    const dir = freshDir();
    const before = initControlPlaneKeys(dir, { now: NOW });
    const after = rotateKeys(dir, NOW + 10);
    expect(after.keyset.seq).toBe(2);
    expect(after.keyset.iat).toBe(NOW + 10);
    expect(after.root.kid).toBe(before.root.kid);
    expect(acceptKeySetUpdate(before.keyset, after.keysetJws).seq).toBe(2);
    for (const use of KEY_USES) {
      const oldKid = before.signing[use].kid;
      expect(after.signing[use].kid).not.toBe(oldKid);
      // the previous key stays verify-only, and is archived under the old seq
      expect(Object.keys(after.keyset.keys[use]).sort()).toEqual(
        [oldKid, after.signing[use].kid].sort(),
      );
      const archived = join(dir, `${use}.key.pem.1`);
      expect(mode(archived)).toBe(0o600);
      expect(jwkThumbprint(publicKeyOf(readPrivateKeyFile(archived)))).toBe(oldKid);
      expect(existsSync(join(dir, `${use}.key.pem.next`))).toBe(false);
    }
    expect(existsSync(join(dir, "rotate.lock"))).toBe(false);
    expect(loadControlPlaneKeys(dir).keysetJws).toBe(after.keysetJws);
  });

  it("drops the previous keys when asked, and counts on", () => {
    const dir = freshDir();
    const first = initControlPlaneKeys(dir, { now: NOW });
    const second = rotateKeys(dir, NOW + 1);
    const third = rotateKeys(dir, NOW + 2, { keepPrevious: false });
    expect(third.keyset.seq).toBe(3);
    for (const use of KEY_USES) {
      expect(Object.keys(third.keyset.keys[use])).toEqual([third.signing[use].kid]);
      expect(existsSync(join(dir, `${use}.key.pem.2`))).toBe(true);
    }
    // an agent still on seq 1 accepts seq 3 (same root), and seq 2 is not accepted after 3
    expect(acceptKeySetUpdate(first.keyset, third.keysetJws).seq).toBe(3);
    expect(refusal(() => acceptKeySetUpdate(third.keyset, second.keysetJws)).code).toBe(
      "AGENTD_E_CP_CONFLICT",
    );
  });

  it("a crash after the key set was written: load uses the pending keys, rotate settles them", () => {
    const dir = freshDir();
    const before = initControlPlaneKeys(dir, { now: NOW });
    const fresh = KEY_USES.map((use) => ({ use, ...generateEd25519KeyPair() }));
    for (const k of fresh) {
      writeFileSync(join(dir, `${k.use}.key.pem.next`), privateKeyToPem(k.privateKey), {
        mode: 0o600,
      });
    }
    writeFileSync(
      join(dir, "keyset.jws"),
      signKeySet({ rootPrivateKey: before.root.privateKey, seq: 2, iat: NOW, keys: fresh }),
    );
    const loaded = loadControlPlaneKeys(dir);
    for (const k of fresh) expect(loaded.signing[k.use].kid).toBe(jwkThumbprint(k.publicKey));
    const rotated = rotateKeys(dir, NOW + 5);
    expect(rotated.keyset.seq).toBe(3);
    for (const k of fresh) {
      expect(jwkThumbprint(publicKeyOf(readPrivateKeyFile(join(dir, `${k.use}.key.pem.2`))))).toBe(
        jwkThumbprint(k.publicKey),
      );
    }
  });

  it("a crash before the key set was written: the pending keys are ignored, then removed", () => {
    const dir = freshDir();
    const before = initControlPlaneKeys(dir, { now: NOW });
    const stray = generateEd25519KeyPair();
    writeFileSync(join(dir, "command.key.pem.next"), privateKeyToPem(stray.privateKey), {
      mode: 0o600,
    });
    expect(loadControlPlaneKeys(dir).signing.command.kid).toBe(before.signing.command.kid);
    const after = rotateKeys(dir, NOW + 5);
    expect(after.keyset.seq).toBe(2);
    expect(Object.hasOwn(after.keyset.keys.command, jwkThumbprint(stray.publicKey))).toBe(false);
    expect(existsSync(join(dir, "command.key.pem.next"))).toBe(false);
  });

  it("refuses to run while another rotation holds the lock", () => {
    const dir = freshDir();
    initControlPlaneKeys(dir, { now: NOW });
    writeFileSync(join(dir, "rotate.lock"), "1\n");
    expect(refusal(() => rotateKeys(dir, NOW)).code).toBe("AGENTD_E_FILE_EXISTS");
    expect(loadControlPlaneKeys(dir).keyset.seq).toBe(1);
  });
});

describe("server certificate renewal", () => {
  it("issues a new certificate for new hosts under the same CA", () => {
    const dir = freshDir();
    const before = initControlPlaneKeys(dir, { now: NOW });
    renewServerCertificate(dir, { hosts: ["cp.example"], now: NOW + 60 });
    const after = loadControlPlaneKeys(dir);
    expect(after.caSha256).toBe(before.caSha256);
    expect(after.serverCertPem).not.toBe(before.serverCertPem);
    expect(new X509Certificate(after.serverCertPem).subjectAltName).toBe("DNS:cp.example");
    expect(mode(join(dir, "server.key.pem"))).toBe(0o600);
  });
});

describe("the keys serve TLS to a client holding only the token", () => {
  let server: Server | undefined;
  let socket: TLSSocket | undefined;
  afterEach(async () => {
    socket?.destroy();
    if (server) await new Promise((r) => server?.close(r));
    server = undefined;
  });

  it("pins the CA and the root from the token", async () => {
    const keys = initControlPlaneKeys(freshDir(), { now: NOW });
    server = createServer(
      serverTlsOptions({ key: keys.serverKeyPem, cert: keys.serverCertPem, ca: keys.caCertPem }),
      (s) => s.end(keys.keysetJws),
    );
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    const token = parseEnrollmentToken(
      encodeEnrollmentToken({
        url: `https://127.0.0.1:${port}`,
        ca_sha256: keys.caSha256,
        root_kid: keys.root.kid,
        id: newTokenId(),
        secret: newTokenSecret(),
      }),
    );
    const s = connect({ host: "127.0.0.1", port, ...pinnedClientTlsOptions(keys.caCertPem) });
    socket = s;
    await once(s, "secureConnect");
    assertPeerPinned(s, token.ca_sha256);
    let body = "";
    s.setEncoding("utf8");
    s.on("data", (c) => {
      body += c;
    });
    await once(s, "end");
    const keyset = verifyKeySet(body, { rootKid: token.root_kid });
    expect(keyset.seq).toBe(1);
  });
});
