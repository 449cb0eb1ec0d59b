import { isIP } from "node:net";
import { connect, type TLSSocket } from "node:tls";
import { type Clock, unixSeconds } from "../../lib/clock.ts";
import { fail, isAgentdError } from "../../lib/errors.ts";
import { backgroundTimers, type Timers } from "../../lib/timers.ts";
import { DEFAULT_TIMEOUT_MS, originOf } from "./client-http.ts";
import { TLS_VERSION, verifyBootstrapPeer } from "./tls.ts";

/**
 * The first connection of an enrolling agent, which knows only the SHA-256 of the control
 * plane's CA (the enrollment token's `ca_sha256`): a TLS 1.3 handshake without trust
 * anchors, then the pinned CA looked up in the chain the server presented and the server
 * certificate checked against it by hand (tls.ts `verifyBootstrapPeer`). Not one byte of
 * application data is written on this connection — it only yields the CA, and every later
 * request runs on a normal connection that trusts exactly that CA (hostname checks
 * included).
 */

export interface BootstrapOptions {
  /** The control plane's origin (the token's `url`). */
  readonly url: string;
  /** Lowercase hex SHA-256 of the CA certificate's DER. */
  readonly caSha256: string;
  readonly clock: Clock;
  readonly timeoutMs?: number;
  /** The handshake's deadline; `backgroundTimers` by default (the socket keeps us alive). */
  readonly timers?: Timers;
}

/** The pinned CA's PEM, or AGENTD_E_ENROLL_PIN_MISMATCH (AGENTD_E_HTTP: no TLS at all). */
export function fetchPinnedCa(o: BootstrapOptions): Promise<string> {
  const u = new URL(originOf(o.url));
  // URL keeps IPv6 literals in brackets; sockets and certificates want them bare.
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = u.port === "" ? 443 : Number(u.port);
  const ms = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const timers = o.timers ?? backgroundTimers;
  return new Promise<string>((resolve, reject) => {
    let socket: TLSSocket | undefined;
    const timer = timers.setTimeout(() => {
      socket?.destroy();
      reject(fail("AGENTD_E_HTTP", `${u.origin}: no TLS handshake within ${ms} ms`));
    }, ms);
    const finish = (err: unknown, pem?: string) => {
      timers.clearTimeout(timer);
      socket?.destroy();
      if (pem !== undefined) resolve(pem);
      else reject(err);
    };
    socket = connect({
      host,
      port,
      // SNI is for names only (RFC 6066 forbids literal addresses).
      ...(isIP(host) === 0 ? { servername: host } : {}),
      // No anchors yet: the chain is checked against the pin below, before anything is sent.
      rejectUnauthorized: false,
      minVersion: TLS_VERSION,
      maxVersion: TLS_VERSION,
    });
    socket.once("secureConnect", () => {
      try {
        finish(
          undefined,
          verifyBootstrapPeer(socket as TLSSocket, o.caSha256, host, unixSeconds(o.clock)),
        );
      } catch (err) {
        finish(err);
      }
    });
    socket.once("error", (err: Error & { code?: string }) => {
      finish(
        isAgentdError(err)
          ? err
          : fail(
              "AGENTD_E_HTTP",
              `${u.origin}: ${err.code ?? "TLS error"}: ${err.message}`,
              { errno: err.code ?? null },
              err,
            ),
      );
    });
  });
}
