/**
 * The baseline of bench/cp-heartbeats.ts: an HTTPS server with the control plane's TLS
 * settings and certificate that reads each request body, parses it as JSON and answers 200
 * with a small JSON object — the transport and HTTP cost alone, with no authentication,
 * signature check or database. Prints the ready line first, like the daemons.
 *
 *   node bench/cp/heartbeat-baseline.ts --key F --cert F
 */
import { readFileSync } from "node:fs";
import { createServer } from "node:https";
import { benchArgs, required } from "../args.ts";

const { values } = benchArgs(
  "cp/heartbeat-baseline",
  { key: required("F"), cert: required("F") },
  { jsonOnly: false },
);
const server = createServer(
  {
    key: readFileSync(values.key),
    cert: readFileSync(values.cert),
    minVersion: "TLSv1.3",
    maxVersion: "TLSv1.3",
    keepAliveTimeout: 5000,
  },
  (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      JSON.parse(Buffer.concat(chunks).toString("utf8"));
      const out = JSON.stringify({ accepted: true, counter: 0, flags: [], commands: [] });
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(out);
    });
  },
);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
server.listen(0, "127.0.0.1", () => {
  const a = server.address();
  if (a === null || typeof a === "string") process.exit(1);
  process.stdout.write(`${JSON.stringify({ ready: true, host: "127.0.0.1", port: a.port })}\n`);
});
