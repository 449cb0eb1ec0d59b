import type { Command } from "commander";
import { fail } from "../../lib/errors.ts";
import { FAULTS, isFault } from "../../sim/meter/faults.ts";
import { isShape, SHAPES } from "../../sim/meter/shapes.ts";
import { parseHostPort } from "../../sim/pool/address.ts";
import type { CliIo } from "../io.ts";
import type { Run } from "../program.ts";
import { untilSignal } from "../signals.ts";
import { simCommand } from "./sim.ts";

interface SimMeterOpts {
  listen: string;
  shape: string;
  watts: string;
  outlets: string;
  fault?: string;
  auth?: string;
  algorithm: string;
  user: string;
  password?: string;
  events: boolean;
}

/**
 * `agentd sim meter`: a simulated HTTP JSON power meter (sim/README.md). stdout: the ready
 * line with the URL and pointer a meter spec takes, then (with --events) one JSON line per
 * body served. Runs until SIGTERM or SIGINT, then closes and exits 0.
 */
export function registerSimMeter(program: Command, io: CliIo, run: Run): void {
  simCommand(program)
    .command("meter")
    .description("run a simulated HTTP JSON power meter whose watts change on every read")
    .option("--listen <host:port>", "address to listen on (port 0: any free port)", "127.0.0.1:0")
    .option("--shape <name>", `body shape: ${SHAPES.join("|")}`, "shelly")
    .option("--watts <w>", "base watts of outlet 0 (each read adds 0.25 W)", "1400")
    .option("--outlets <n>", "outlets of the pdu shape", "4")
    .option("--fault <name>", `misbehave: ${FAULTS.join("|")}`)
    .option("--auth <scheme>", "require credentials: basic|digest")
    .option("--algorithm <name>", "digest algorithm: MD5|SHA-256", "MD5")
    .option("--user <name>", "the user --auth requires", "admin")
    .option("--password <text>", "the password --auth requires")
    .option("--events", "print one JSON line per body served", false)
    .action((opts: SimMeterOpts) =>
      run(false, async () => {
        const listen = parseHostPort(opts.listen);
        if (!listen) throw usage("--listen", "HOST:PORT", opts.listen);
        if (!isShape(opts.shape)) throw usage("--shape", SHAPES.join("|"), opts.shape);
        const fault = opts.fault ?? null;
        if (fault !== null && !isFault(fault)) throw usage("--fault", FAULTS.join("|"), fault);
        const watts = Number(opts.watts);
        if (opts.watts.trim() === "" || !Number.isFinite(watts)) {
          throw usage("--watts", "a number", opts.watts);
        }
        if (!/^[1-9][0-9]{0,3}$/.test(opts.outlets)) {
          throw usage("--outlets", "an integer from 1 to 9999", opts.outlets);
        }
        const auth = authOf(opts);
        const { SimMeter } = await import("../../sim/meter/server.ts");
        const meter = await SimMeter.start({
          host: listen.host,
          port: listen.port,
          shape: opts.shape,
          watts,
          outlets: Number(opts.outlets),
          fault,
          auth,
        });
        if (opts.events) {
          meter.on("read", (served) => io.stdout(`${JSON.stringify({ read: served })}\n`));
        }
        // Handlers first: a signal right after the ready line must still shut down cleanly.
        const stopped = untilSignal();
        io.stdout(
          `${JSON.stringify({
            ready: true,
            host: meter.host,
            port: meter.port,
            shape: meter.shape,
            url: meter.url,
            pointer: meter.pointer,
          })}\n`,
        );
        await stopped;
        await meter.close();
        return 0;
      }),
    );
}

function authOf(opts: SimMeterOpts) {
  if (opts.auth === undefined) {
    if (opts.password !== undefined) throw usage("--auth", "basic|digest with --password", "");
    return null;
  }
  if (opts.auth !== "basic" && opts.auth !== "digest") {
    throw usage("--auth", "basic|digest", opts.auth);
  }
  if (opts.password === undefined) throw usage("--password", "the password --auth requires", "");
  if (opts.algorithm !== "MD5" && opts.algorithm !== "SHA-256") {
    throw usage("--algorithm", "MD5|SHA-256", opts.algorithm);
  }
  return {
    scheme: opts.auth,
    algorithm: opts.algorithm,
    username: opts.user,
    password: opts.password,
  } as const;
}

function usage(flag: string, expected: string, got: string) {
  return fail("AGENTD_E_USAGE", `${flag}: expected ${expected}, found ${JSON.stringify(got)}`);
}
