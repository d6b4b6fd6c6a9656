// A tiny flag parser shared by the CLI commands: long flags (`--name value`, `--name=value`), booleans,
// repeatable flags, short aliases, positionals, everything after `--` kept apart, and `-h`/`--help`.
// Unknown flags and missing values are UsageErrors (exit 2).
import { parseArgs as nodeParseArgs, type ParseArgsConfig } from 'node:util';
import { CONFIG_KEYS, CONFIG_KEY_NAMES, ConfigError, flagNameFor, type ConfigKey } from '../common/config.js';
import { setLogLevel } from '../common/log.js';

export interface FlagSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** Placeholder in help, e.g. PATH. */
  arg?: string;
  desc: string;
}

export interface CommandSpec {
  /** e.g. "substrate-driver sandboxes get <id|name> [flags]" */
  usage: string;
  summary: string;
  flags: Record<string, FlagSpec>;
  /** Extra help text after the flags. */
  epilog?: string;
  /** Min / max positionals (default 0 / 0). */
  minPositionals?: number;
  maxPositionals?: number;
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type FlagValues = Record<string, string | boolean | string[] | undefined>;

export interface Parsed {
  flags: FlagValues;
  positionals: string[];
  /** Arguments after a bare `--`. */
  rest: string[];
  help: boolean;
}

export function parseArgs(argv: string[], spec: CommandSpec): Parsed {
  const dd = argv.indexOf('--');
  const head = dd >= 0 ? argv.slice(0, dd) : argv;
  const rest = dd >= 0 ? argv.slice(dd + 1) : [];
  if (head.includes('-h') || head.includes('--help')) return { flags: {}, positionals: [], rest, help: true };
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const [name, f] of Object.entries(spec.flags)) {
    options[name] = { type: f.type, ...(f.multiple ? { multiple: true } : {}), ...(f.short ? { short: f.short } : {}) };
  }
  let values: Record<string, unknown>;
  let positionals: string[];
  try {
    const r = nodeParseArgs({ args: head, options, allowPositionals: true, strict: true });
    values = r.values as Record<string, unknown>;
    positionals = r.positionals;
  } catch (e) {
    const msg = (e as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, '');
    throw new UsageError(msg.replace(/\. To specify a positional argument starting with a '-'.*$/s, ''));
  }
  const min = spec.minPositionals ?? 0;
  const max = spec.maxPositionals ?? 0;
  if (positionals.length < min) throw new UsageError(`missing argument${min - positionals.length > 1 ? 's' : ''}; usage: ${spec.usage}`);
  if (positionals.length > max) throw new UsageError(`unexpected argument "${positionals[max]}"; usage: ${spec.usage}`);
  return { flags: values as FlagValues, positionals, rest, help: false };
}

export function helpText(spec: CommandSpec): string {
  const lines = [spec.summary, '', `Usage: ${spec.usage}`];
  const entries = Object.entries(spec.flags);
  if (entries.length > 0) {
    lines.push('', 'Flags:');
    const left = entries.map(([n, f]) => `  ${f.short ? `-${f.short}, ` : ''}--${n}${f.type === 'string' ? ` ${f.arg ?? 'VALUE'}` : ''}`);
    const width = Math.min(40, Math.max(...left.map((l) => l.length)) + 2);
    entries.forEach(([, f], i) => {
      const l = left[i]!;
      lines.push(l.length >= width ? `${l}\n${' '.repeat(width)}${f.desc}` : `${l.padEnd(width)}${f.desc}`);
    });
    lines.push(`  -h, --help${' '.repeat(Math.max(2, width - 12))}show this help`);
  }
  if (spec.epilog) lines.push('', spec.epilog);
  return lines.join('\n') + '\n';
}

const CONFIG_HELP: Partial<Record<ConfigKey, string>> = {
  socket_path: 'driver Unix socket (default <state-dir>/run/driver.sock)',
  state_dir: 'state directory (default $XDG_STATE_HOME/openshell-driver-substrate)',
  local: 'embed a local Substrate on gVisor',
  api_endpoint: 'ateapi gRPC target (host:port, dns:///host:port, unix:/path)',
  api_tls_ca_path: 'CA bundle that signs the ateapi certificate',
  api_tls_cert_path: 'mTLS client certificate (with --api-tls-key-path)',
  api_tls_key_path: 'mTLS client key (with --api-tls-cert-path)',
  api_tls_server_name: 'TLS server name to verify (e.g. api.ate-system.svc)',
  api_plaintext: 'allow a plaintext ateapi connection to a non-loopback address',
  api_bearer_token_path: 'file with the ateapi bearer token (re-read on every call)',
  kubeconfig: 'kubeconfig for the ActorTemplate/Secret API',
  kube_context: 'context in the kubeconfig',
  default_namespace: 'namespace of templates and sandbox records (default "default")',
  worker_selector: 'worker selector k=v,k=v for every actor',
  pause_image: 'pinned pause image of synthesized templates',
  snapshots_location: 'snapshotsConfig.location of synthesized templates',
  sandbox_class: 'gvisor | microvm',
  template_ready_timeout_secs: 'how long to wait for a template to be Ready (default 300)',
  gateway_endpoint: 'OPENSHELL_ENDPOINT given to sandboxes',
  stop_mode: 'suspend | pause (what StopSandbox does)',
  default_image: 'image used when a sandbox names none (pinned)',
  metrics_listen: 'host:port for /healthz, /readyz and /metrics (loopback unless metrics_allow_remote)',
  metrics_allow_remote: 'allow a non-loopback metrics_listen (the endpoints are unauthenticated)',
  log_level: 'debug | info | warn | error',
  router_url: 'URL of the actor router (with --local: where the embedded router listens)',
  poll_interval_ms: 'how often actors are listed to detect changes (default 500)',
  router_listen: 'with --local: host:port of the embedded router (default 127.0.0.1:8000; port 0 picks one)',
  router_allow_remote: 'with --local: allow a non-loopback router_listen (the router authenticates no one)',
  workers: 'with --local: worker slots of the embedded Substrate (default one per 512 MiB, 2..64)',
  gateway_config: "the gateway's TOML: its [openshell.drivers.substrate] admission keys apply here",
  allow_driver_config: "accept a v0.1 gateway's caller template.driver_config (default false)",
  resource_admission: 'v0.1 resource admission {enabled, required_labels}, as JSON',
  template_labels: 'labels of pre-provisioned templates by "<namespace>/<name>", as JSON',
  local_listen: 'local Substrate: ateapi.Control on TCP host:port besides its Unix socket (needs JWT auth or client certificates)',
  local_nodes: 'local Substrate: virtual nodes the workers are spread over (default 2)',
  local_actor_port: 'local Substrate: actor port the router forwards to (default 80)',
  local_tls_cert: 'local Substrate: server certificate (PEM) of the TCP API',
  local_tls_key: 'local Substrate: server private key (PEM)',
  local_tls_client_ca: 'local Substrate: CA bundle for client certificates (mTLS) on the TCP API',
  local_jwt_public_key: 'local Substrate: verify bearer JWTs with this SPKI PEM key',
  local_jwks: 'local Substrate: verify bearer JWTs with this JWKS file',
  local_jwt_issuer: 'local Substrate: required issuer of bearer JWTs',
  local_jwt_audience: 'local Substrate: required audience of bearer JWTs',
  local_egress_ports: 'local Substrate: host loopback ports every actor may reach ("8080,9090")',
  local_actor_memory: 'local Substrate: memory limit of each actor (default 1Gi)',
  local_actor_cpu: 'local Substrate: CPU limit of each actor (default 1)',
  local_actor_pids: 'local Substrate: tasks each actor may have (default 1024)',
  local_actor_tmp: "local Substrate: size of each actor's /tmp (default 256Mi)",
  local_actor_log_max: 'local Substrate: workload log rotation size (default 16Mi)',
};

/** Flag specs for config keys (`--api-endpoint` for `api_endpoint`), plus --config. */
export function configFlags(keys: readonly ConfigKey[] = CONFIG_KEY_NAMES): Record<string, FlagSpec> {
  const out: Record<string, FlagSpec> = {
    config: { type: 'string', arg: 'FILE', desc: 'TOML file with an [openshell.drivers.substrate] table (env OPENSHELL_SUBSTRATE_CONFIG)' },
  };
  for (const k of keys) {
    const kind = CONFIG_KEYS[k].kind;
    out[flagNameFor(k)] = {
      type: kind === 'bool' ? 'boolean' : 'string',
      arg: kind === 'path' ? 'PATH' : kind === 'int' ? 'N' : kind === 'quantity' ? 'Q' : kind === 'ports' ? 'PORTS' : undefined,
      desc: CONFIG_HELP[k] ?? k,
    };
  }
  return out;
}

/** Parsed flag values → loadConfig flags (config keys only). */
export function configFlagValues(flags: FlagValues): Partial<Record<ConfigKey | 'config', string | boolean>> {
  const out: Partial<Record<ConfigKey | 'config', string | boolean>> = {};
  if (typeof flags.config === 'string') out.config = flags.config;
  for (const k of CONFIG_KEY_NAMES) {
    const v = flags[flagNameFor(k)];
    if (typeof v === 'string' || typeof v === 'boolean') out[k] = v;
  }
  return out;
}

/**
 * Runs a command body with the CLI's error conventions: usage and config errors → exit 2, other failures →
 * exit 1, with one clear line on stderr.
 */
export async function runCommand(name: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`${name}: ${e.message}\n`);
      return 2;
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`${name}: ${e.message}\n`);
      return 2;
    }
    const err = e as { code?: unknown; details?: string; message?: string };
    const msg = typeof err.details === 'string' && err.details ? err.details : (err.message ?? String(e));
    const code = typeof err.code === 'number' ? ` (${grpcName(err.code)})` : '';
    process.stderr.write(`${name}: ${msg}${code}\n`);
    return 1;
  }
}

const GRPC_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

/**
 * `substrate-driver <group> <sub> [flags]`: the group's usage (exit 2 without a subcommand), an unknown
 * subcommand (exit 2), each subcommand's --help, then `body` with the parsed flags under runCommand.
 */
export async function runSubcommand(
  group: string,
  argv: string[],
  usage: string,
  specs: Record<string, CommandSpec>,
  body: (sub: string, p: Parsed) => Promise<number>,
): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '-h' || sub === '--help' || sub === 'help') {
    process.stdout.write(usage);
    return sub ? 0 : 2;
  }
  const spec = specs[sub];
  if (!spec) {
    process.stderr.write(`substrate-driver ${group}: unknown command "${sub}"\n\n${usage}`);
    return 2;
  }
  return runCommand(`substrate-driver ${group} ${sub}`, async () => {
    const p = parseArgs(rest, spec);
    if (p.help) {
      process.stdout.write(helpText(spec));
      return 0;
    }
    setLogLevel('warn');
    return body(sub, p);
  });
}

export function grpcName(code: number): string {
  return GRPC_NAMES[code] ?? String(code);
}

/** Left-aligned text table. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}
