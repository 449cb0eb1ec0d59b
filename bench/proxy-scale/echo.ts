/**
 * The baseline server of bench/proxy-scale.ts: a trivial Stratum V1 responder, run as its own
 * process exactly as the proxy is, so that the same generator measures the floor that Node,
 * the kernel's loopback TCP and the generator itself set on this machine. It parses each line
 * (as the proxy must) and answers at once: subscribe with a fixed-size extranonce1 unique per
 * connection, authorize with true followed by set_difficulty and the current notify, every
 * submit with true — no validation, no upstream. A notify is one prebuilt line written to
 * every connection in a loop.
 *
 *   node bench/proxy-scale/echo.ts --job '<notify params as JSON>' [--en2-size N] [--host HOST]
 *
 * stdout: {"ready":true,"host","port"} first; then, for each `{"op":"notify"}` line read on
 * stdin, {"fanout":{"job","miners","loop_ms"}} (loop_ms: the write loop, as the proxy's
 * agentd_stratum_notify_fanout_seconds measures its own). SIGTERM exits 0.
 */
import { createServer, type Socket } from "node:net";
import { createInterface } from "node:readline";
import { benchArgs, integer, required, textOr } from "../args.ts";

const args = benchArgs(
  "proxy-scale/echo",
  { job: required("JSON"), "en2-size": integer(6, 1, 8), host: textOr("HOST", "127.0.0.1") },
  { jsonOnly: false },
);
const { values } = args;
const params = JSON.parse(values.job) as unknown[];
if (!Array.isArray(params) || params.length !== 9)
  args.usage("--job must be the 9 params of a mining.notify");
const en2Size = values["en2-size"];
let jobSeq = 0;
const notifyLine = (clean: boolean) =>
  `${JSON.stringify({ id: null, method: "mining.notify", params: [`e${jobSeq.toString(16)}`, ...params.slice(1, 8), clean] })}\n`;
let current = notifyLine(true);
const sockets = new Set<Socket>();
let connections = 0;

function handle(socket: Socket, en1: string, line: string): void {
  const msg = JSON.parse(line) as { id?: unknown; method?: string };
  const id = JSON.stringify(msg.id ?? null);
  switch (msg.method) {
    case "mining.subscribe":
      socket.write(
        `{"id":${id},"result":[[["mining.set_difficulty","1"],["mining.notify","1"]],"${en1}",${en2Size}],"error":null}\n`,
      );
      return;
    case "mining.authorize":
      socket.write(
        `{"id":${id},"result":true,"error":null}\n{"id":null,"method":"mining.set_difficulty","params":[1]}\n${current}`,
      );
      return;
    default:
      socket.write(`{"id":${id},"result":true,"error":null}\n`);
  }
}

const server = createServer({ noDelay: true }, (socket) => {
  const en1 = (connections++).toString(16).padStart(12, "0");
  sockets.add(socket);
  socket.setEncoding("latin1");
  let buffer = "";
  socket.on("data", (chunk: string) => {
    const text = buffer + chunk;
    let start = 0;
    for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", start)) {
      handle(socket, en1, text.slice(start, nl));
      start = nl + 1;
    }
    buffer = text.slice(start);
  });
  socket.on("error", () => {});
  socket.on("close", () => sockets.delete(socket));
});

server.listen(0, values.host, () => {
  const a = server.address();
  if (a === null || typeof a === "string") process.exit(1);
  process.stdout.write(`${JSON.stringify({ ready: true, host: a.address, port: a.port })}\n`);
});

createInterface({ input: process.stdin, terminal: false }).on("line", (line) => {
  if (line.trim() === "") return;
  const op = (JSON.parse(line) as { op?: string }).op;
  if (op !== "notify") return;
  jobSeq++;
  current = notifyLine(false);
  const t0 = process.hrtime.bigint();
  for (const s of sockets) s.write(current);
  const loopMs = Number(process.hrtime.bigint() - t0) / 1e6;
  process.stdout.write(
    `${JSON.stringify({ fanout: { job: `e${jobSeq.toString(16)}`, miners: sockets.size, loop_ms: loopMs } })}\n`,
  );
});

process.on("SIGTERM", () => {
  for (const s of sockets) s.destroy();
  server.close(() => process.exit(0));
});
