import { bool, type ConfigOf, hostPort, int, num, oneOf, path, text, url } from "./fields.ts";

/**
 * agentd's configuration: `/etc/agentd/agentd.toml`, `AGENTD_*` variables and flags.
 * docs/config.md lists every key; test/lib/config/load.test.ts keeps the two in step.
 *
 * Paths default to FHS locations; tests and the devnet point them at temp dirs.
 */
export const CONFIG_SCHEMA = {
  paths: {
    state_dir: path({
      default: "/var/lib/agentd",
      doc: "Machine key, credentials, policy, counters and the audit log.",
    }),
    run_dir: path({ default: "/run/agentd", doc: "Runtime files: pid, sockets." }),
  },
  log: {
    level: oneOf({
      default: "info",
      values: ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
      doc: "Minimum level of the JSON logs written to stderr.",
    }),
  },
  control_plane: {
    url: url({
      default: "",
      optional: true,
      schemes: ["https"],
      doc: 'Control plane base URL; "" runs in local mode (bundles from files or the local API).',
    }),
    ca_file: path({
      default: "",
      optional: true,
      doc: "PEM CA certificate of the control plane, pinned at enrollment.",
    }),
  },
  // A top-level key, so that its variable is exactly AGENTD_CP_API_KEY (the name the
  // `agentd cp` verbs document); the agent itself never reads it.
  cp_api_key: text({
    default: "",
    optional: true,
    secret: true,
    doc: "API key (`agentd_<role>_…`) that the `agentd cp` admin verbs send to a running control plane; `--api-key` overrides it. Secret: redacted everywhere.",
  }),
  heartbeat: {
    interval_s: int({
      default: 30,
      min: 1,
      max: 3600,
      doc: "Seconds between signed heartbeats.",
    }),
  },
  api: {
    socket: path({
      default: "/run/agentd/agentd.sock",
      doc: "Local API on a unix socket (mode 0660, group agentd).",
    }),
    listen: hostPort({
      default: "",
      optional: true,
      doc: 'Local API on a loopback TCP port as well ("" = off), with a bearer token: api.token, or one generated into STATE_DIR/api-token (0600).',
    }),
    token: text({
      default: "",
      optional: true,
      secret: true,
      doc: "Bearer token for the TCP local API. Secret: redacted everywhere.",
    }),
  },
  metrics: {
    listen: hostPort({
      default: "",
      optional: true,
      doc: 'Prometheus metrics endpoint ("" = off).',
    }),
    max_worker_series: int({
      default: 1000,
      min: 1,
      max: 100000,
      doc: 'Per-worker metric series kept; further workers are folded into worker="_other".',
    }),
  },
  stratum: {
    listen: hostPort({
      default: "0.0.0.0:3333",
      doc: "Stratum V1 endpoint for ASICs on the LAN.",
    }),
    max_line_bytes: int({
      default: 16384,
      min: 1024,
      max: 1048576,
      doc: "Longest JSON-RPC line accepted from a miner.",
    }),
    idle_timeout_s: int({
      default: 300,
      min: 10,
      max: 86400,
      doc: "A miner connection silent this long is closed.",
    }),
    max_connections_per_ip: int({
      default: 64,
      min: 1,
      max: 65535,
      doc: "Connections accepted from one IP address.",
    }),
    max_workers_per_connection: int({
      default: 16,
      min: 1,
      max: 1024,
      doc: "Worker names one miner connection may authorize; one more closes it (too_many_workers).",
    }),
    share_interval_s: int({
      default: 10,
      min: 1,
      max: 3600,
      doc: "Vardiff aims at one share per this many seconds per miner.",
    }),
    vardiff: bool({ default: true, doc: "Per-miner variable difficulty." }),
    initial_difficulty: num({
      default: 1024,
      min: 1e-12,
      max: 1e15,
      doc: "A new miner's difficulty until vardiff (or its suggest_difficulty) moves it; rounded to a power of two.",
    }),
    min_difficulty: num({
      default: 1 / 1024,
      min: 1e-12,
      max: 1e15,
      doc: "Vardiff never goes below this (simulated CPU miners need tiny difficulties).",
    }),
  },
  supervisor: {
    driver: oneOf({
      default: "off",
      values: ["off", "docker", "process"],
      doc: 'How the consent\'s services run: "docker" (the Docker Engine API: Docker or Podman, docker.host), "process" (native child processes) or "off" (none supervised).',
    }),
    services_file: path({
      default: "",
      optional: true,
      doc: 'The services file (TOML, supervisor/specs-file.ts): per-kind overrides of the built-in specs; "" = the defaults.',
    }),
    data_dir: path({
      default: "/var/lib/agentd/services",
      doc: "Where the services keep their data (<data_dir>/<kind>), and the translator its configuration.",
    }),
  },
  fleet: {
    endpoints: text({
      default: "",
      optional: true,
      doc: 'Where every adopted miner\'s pool slots point, comma-separated stratum+tcp:// URLs of this agent as the miners reach it (e.g. "stratum+tcp://192.168.1.10:3333"); "" = stratum.listen when it names an address, else slots are left alone and status says so.',
    }),
    read_interval_s: int({
      default: 30,
      min: 5,
      max: 3600,
      doc: "Seconds between reads of every adopted miner and meter (the facts the policy guard sees are this fresh; the planner runs after each round).",
    }),
  },
  drivers: {
    user: text({
      default: "agentd-drivers",
      optional: false,
      doc: "The OS user the ASIC drivers run as (plugins/host/README.md): not root, and not the agent's own user. Where it does not exist, drivers do not run and status says why.",
    }),
  },
  eligibility: {
    treasury_pubkey: text({
      default: "",
      optional: true,
      doc: 'The pool treasury\'s Lightning node id (hex pubkey): node-reward eligibility needs an active channel to it; "" = unknown, never eligible.',
    }),
  },
  docker: {
    host: text({
      default: "",
      optional: true,
      doc: 'Docker Engine API endpoint (unix:///path or tcp://host:port); "" = DOCKER_HOST or /var/run/docker.sock.',
    }),
  },
} as const;

export type AgentdConfig = ConfigOf<typeof CONFIG_SCHEMA>;

export const DEFAULT_CONFIG_PATH = "/etc/agentd/agentd.toml";
