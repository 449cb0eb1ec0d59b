/**
 * The baseline of bench/cp-push.ts: a WebSocket server with the control plane's TLS settings
 * and certificate that speaks just enough of the stream protocol for the agent's own stream
 * client (control-plane/protocol/client-stream.ts): it answers `hello` with `ready`, and
 * `POST /push {"worker", "jws"}` sends that worker's open stream one `command` event. No
 * authentication, no database, no signing: the transport and the client alone, so the ratio
 * control plane / baseline is the control plane's own cost. Ready line first, like the daemons.
 *
 *   node bench/cp/push-baseline.ts --key F --cert F
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:https";
import { type WebSocket, WebSocketServer } from "ws";
import { benchArgs, required } from "../args.ts";

const { values } = benchArgs(
  "cp/push-baseline",
  { key: required("F"), cert: required("F") },
  { jsonOnly: false },
);

const streams = new Map<string, WebSocket>();
let nextId = 1;

const server = createServer(
  {
    key: readFileSync(values.key),
    cert: readFileSync(values.cert),
    minVersion: "TLSv1.3",
    maxVersion: "TLSv1.3",
  },
  (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const { worker, jws } = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
        worker: string;
        jws: string;
      };
      const ws = streams.get(worker);
      ws?.send(JSON.stringify({ type: "event", id: nextId++, kind: "command", jws }));
      res.writeHead(ws === undefined ? 404 : 200, { "content-type": "application/json" });
      res.end("{}");
    });
  },
);
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on("connection", (ws, req) => {
  const worker = /^\/v1\/workers\/([^/]+)\/stream$/.exec(req.url ?? "")?.[1] ?? "";
  ws.once("message", () => {
    streams.set(worker, ws);
    ws.send(JSON.stringify({ type: "ready", last_event_id: 0 }));
  });
  ws.on("close", () => {
    if (streams.get(worker) === ws) streams.delete(worker);
  });
});
process.on("SIGTERM", () => {
  for (const ws of streams.values()) ws.terminate();
  server.close(() => process.exit(0));
});
server.listen(0, "127.0.0.1", () => {
  const a = server.address();
  if (a === null || typeof a === "string") process.exit(1);
  process.stdout.write(`${JSON.stringify({ ready: true, host: "127.0.0.1", port: a.port })}\n`);
});
