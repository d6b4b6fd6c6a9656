// The one configuration loader of the driver and its CLI.
//
// Precedence, per key: command-line flag > environment (OPENSHELL_SUBSTRATE_<KEY>) > the
// `[openshell.drivers.substrate]` table of a TOML file > default. The TOML table is the same one the
// OpenShell gateway reads `socket_path` from, so one gateway.toml can configure both sides. Every invalid
// value is a ConfigError naming the key and where the value came from; the CLI exits 2 on it.
//
// Table-valued keys (resource_admission, template_labels) are TOML sub-tables in the file and JSON objects in a
// flag or the environment; each comes whole from one source (no merging across sources). Untrusted TOML/JSON
// is read through own properties only and a `__proto__` key is refused, so it never reaches a prototype.
// The OpenShell v0.1 admission keys (allow_driver_config, resource_admission, template_labels) are described
// in src/driver/admission-policy.ts.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { isDnsLabel, labelValueError, qualifiedNameError } from './dns.js';
// A cycle (admission-policy.ts throws this module's ConfigError): neither module uses the other at top level.
import {
  admissionAcknowledgement,
  defaultAdmissionConfig,
  parseResourceAdmission,
  parseTemplateLabels,
  type DriverAdmissionConfig,
  type TemplateLabels,
} from '../driver/admission-policy.js';
import { isLoopbackHost } from './net.js';
import { parseQuantity } from './quantity.js';

export type ConfigSource = 'flag' | 'env' | 'file' | 'default';

export class ConfigError extends Error {
  constructor(
    readonly key: string,
    readonly source: ConfigSource | 'config',
    message: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

export const ENV_PREFIX = 'OPENSHELL_SUBSTRATE_';
/** Environment variable naming the TOML file when --config is not given. */
export const CONFIG_ENV = `${ENV_PREFIX}CONFIG`;
export const TOML_TABLE = ['openshell', 'drivers', 'substrate'] as const;

type Kind = 'string' | 'path' | 'bool' | 'int' | 'selector' | 'enum' | 'admission' | 'template_labels' | 'quantity' | 'ports';
interface KeySpec {
  kind: Kind;
  values?: readonly string[];
  min?: number;
  max?: number;
}

/** Every key the table may hold (snake_case), with its type. */
export const CONFIG_KEYS = {
  socket_path: { kind: 'path' },
  state_dir: { kind: 'path' },
  local: { kind: 'bool' },
  api_endpoint: { kind: 'string' },
  api_tls_ca_path: { kind: 'path' },
  api_tls_cert_path: { kind: 'path' },
  api_tls_key_path: { kind: 'path' },
  api_tls_server_name: { kind: 'string' },
  api_plaintext: { kind: 'bool' },
  api_bearer_token_path: { kind: 'path' },
  kubeconfig: { kind: 'path' },
  kube_context: { kind: 'string' },
  default_namespace: { kind: 'string' },
  worker_selector: { kind: 'selector' },
  pause_image: { kind: 'string' },
  snapshots_location: { kind: 'string' },
  sandbox_class: { kind: 'enum', values: ['gvisor', 'microvm'] },
  template_ready_timeout_secs: { kind: 'int', min: 1, max: 86_400 },
  gateway_endpoint: { kind: 'string' },
  stop_mode: { kind: 'enum', values: ['suspend', 'pause'] },
  default_image: { kind: 'string' },
  metrics_listen: { kind: 'string' },
  metrics_allow_remote: { kind: 'bool' },
  log_level: { kind: 'enum', values: ['debug', 'info', 'warn', 'error'] },
  router_url: { kind: 'string' },
  poll_interval_ms: { kind: 'int', min: 50, max: 60_000 },
  router_listen: { kind: 'string' },
  router_allow_remote: { kind: 'bool' },
  workers: { kind: 'int', min: 1, max: 1024 },
  gateway_config: { kind: 'path' },
  allow_driver_config: { kind: 'bool' },
  resource_admission: { kind: 'admission' },
  template_labels: { kind: 'template_labels' },
  // The local Substrate (`local serve`, and `serve --local` for the ones it passes on). `local serve` keeps its
  // short flags (--listen, --tls-cert, ...); the generic flag of each key is --local-<...>.
  local_listen: { kind: 'string' },
  local_nodes: { kind: 'int', min: 1, max: 64 },
  local_actor_port: { kind: 'int', min: 1, max: 65535 },
  local_tls_cert: { kind: 'path' },
  local_tls_key: { kind: 'path' },
  local_tls_client_ca: { kind: 'path' },
  local_jwt_public_key: { kind: 'path' },
  local_jwks: { kind: 'path' },
  local_jwt_issuer: { kind: 'string' },
  local_jwt_audience: { kind: 'string' },
  local_egress_ports: { kind: 'ports' },
  local_actor_memory: { kind: 'quantity', min: 16 * 1024 * 1024 },
  local_actor_cpu: { kind: 'quantity', min: 0.01 },
  local_actor_pids: { kind: 'int', min: 8, max: 1_000_000 },
  local_actor_tmp: { kind: 'quantity', min: 1024 * 1024 },
  local_actor_log_max: { kind: 'quantity', min: 64 * 1024 },
} as const satisfies Record<string, KeySpec>;

export type ConfigKey = keyof typeof CONFIG_KEYS;
export const CONFIG_KEY_NAMES = Object.keys(CONFIG_KEYS) as ConfigKey[];

export interface DriverConfig {
  socketPath: string;
  stateDir: string;
  local: boolean;
  /** grpc-js target of ateapi ('unix:/abs', 'host:port', 'dns:///host:port'); '' = not configured. */
  apiEndpoint: string;
  apiTlsCaPath: string;
  apiTlsCertPath: string;
  apiTlsKeyPath: string;
  apiTlsServerName: string;
  apiPlaintext: boolean;
  apiBearerTokenPath: string;
  kubeconfig: string;
  kubeContext: string;
  defaultNamespace: string;
  workerSelector: Record<string, string>;
  pauseImage: string;
  snapshotsLocation: string;
  sandboxClass: 'gvisor' | 'microvm';
  templateReadyTimeoutSecs: number;
  gatewayEndpoint: string;
  stopMode: 'suspend' | 'pause';
  defaultImage: string;
  metricsListen: string;
  /** Serve metrics on a non-loopback address (they are unauthenticated). */
  metricsAllowRemote: boolean;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  routerUrl: string;
  /** How often the driver lists actors to detect changes (the pinned ateapi has no watch). */
  pollIntervalMs: number;
  /** With --local: where the embedded router listens (host:port; port 0 picks one). '' = default 127.0.0.1:8000. */
  routerListen: string;
  /** With local: let the embedded router listen on a non-loopback address (it authenticates no one). */
  routerAllowRemote: boolean;
  /** With --local: worker slots of the embedded Substrate's default pool; 0 = its default from memory. */
  workers: number;
  /** The gateway's TOML whose [openshell.drivers.substrate] admission keys apply here ('' = none). */
  gatewayConfig: string;
  /**
   * OpenShell v0.1 admission policy (allow_driver_config + resource_admission); upstream defaults when unset.
   * Validated at load.
   */
  admission: DriverAdmissionConfig;
  /**
   * admissionAcknowledgement(admission), computed once at load: GetCapabilities' resource_admission_policy.
   * The gateway compares it byte-for-byte before every Validate/Create/Start, so it never changes afterwards.
   */
  admissionAck: string;
  /** template_labels: "<namespace>/<name>" → labels the operator assigns to that pre-provisioned template. */
  templateLabels: TemplateLabels;
  /** The local Substrate's own settings (`local serve`; keys local_*). */
  localServe: LocalServeConfig;
  /** Where each key's value came from. */
  sources: Record<ConfigKey, ConfigSource>;
  /** The TOML file read, if any. */
  configPath?: string;
}

/** The local Substrate's settings beyond the shared state_dir, router_listen, router_allow_remote, workers. */
export interface LocalServeConfig {
  /** ateapi.Control listen address ('unix:/abs/path' or 'host:port'); '' = the instance's default Unix socket. */
  listen: string;
  /** Virtual nodes the workers are spread over; 0 = default. */
  nodes: number;
  /** Actor port the router forwards to; 0 = default. */
  actorPort: number;
  /** Server certificate and key (both or neither), and an optional CA for client certificates. */
  tlsCert: string;
  tlsKey: string;
  tlsClientCa: string;
  /** Bearer-JWT verification: a PEM key or a JWKS file (one of them), with issuer and audience. */
  jwtPublicKey: string;
  jwks: string;
  jwtIssuer: string;
  jwtAudience: string;
  /** Host loopback ports every actor may reach. */
  egressPorts: number[];
  /** Per-actor limits; undefined = the local Substrate's default. CPU in millicores, sizes in bytes. */
  actorMemoryBytes?: number;
  actorCpuMillis?: number;
  actorPids?: number;
  actorTmpBytes?: number;
  actorLogBytes?: number;
}

/** $XDG_STATE_HOME/openshell-driver-substrate or ~/.local/state/openshell-driver-substrate. */
export function defaultStateDirFor(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_STATE_HOME;
  const base = xdg && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), '.local', 'state');
  return join(base, 'openshell-driver-substrate');
}

export function envVarFor(key: string): string {
  return ENV_PREFIX + key.toUpperCase();
}

/** `--api-endpoint` ↔ `api_endpoint`. */
export function flagNameFor(key: string): string {
  return key.replace(/_/g, '-');
}

export interface LoadConfigOptions {
  /** Values from flags, keyed by config key (snake_case); undefined = not given. `config` names the file. */
  flags?: Partial<Record<ConfigKey | 'config', string | boolean | undefined>>;
  env?: NodeJS.ProcessEnv;
  /** Base for relative paths given by flag or env (default process.cwd()). */
  cwd?: string;
}

type Raw = { value: unknown; source: ConfigSource };

function describe(source: ConfigSource | 'config', key: string, configPath?: string): string {
  switch (source) {
    case 'flag':
      return `flag --${flagNameFor(key)}`;
    case 'env':
      return `env ${envVarFor(key)}`;
    case 'file':
      return `file ${configPath ?? '?'}`;
    default:
      return 'default';
  }
}

function fail(key: string, raw: Raw, why: string, configPath?: string): never {
  throw new ConfigError(key, raw.source, `invalid config ${key} (from ${describe(raw.source, key, configPath)}): ${why}`);
}

function readTable(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError('config', 'config', `cannot read config file ${path}: ${(e as Error).message}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError('config', 'config', `config file ${path} is not valid TOML: ${(e as Error).message}`);
  }
  let cur: unknown = doc;
  for (const part of TOML_TABLE) {
    if (typeof cur !== 'object' || cur === null || !Object.hasOwn(cur, part)) {
      throw new ConfigError('config', 'config', `config file ${path} has no [openshell.drivers.substrate] table`);
    }
    cur = (cur as Record<string, unknown>)[part];
  }
  if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) {
    throw new ConfigError('config', 'config', `config file ${path}: openshell.drivers.substrate must be a table`);
  }
  const table = cur as Record<string, unknown>;
  const unknown = Object.keys(table).filter((k) => !Object.hasOwn(CONFIG_KEYS, k));
  if (unknown.length > 0) {
    throw new ConfigError(
      unknown[0]!,
      'file',
      `config file ${path}: unknown key${unknown.length > 1 ? 's' : ''} in [openshell.drivers.substrate]: ${unknown.join(', ')} (known: ${CONFIG_KEY_NAMES.join(', ')})`,
    );
  }
  return table;
}

function expandHome(p: string, env: NodeJS.ProcessEnv): string {
  if (p === '~') return env.HOME || homedir();
  if (p.startsWith('~/')) return join(env.HOME || homedir(), p.slice(2));
  return p;
}

/** Parses "k=v,k=v" or a table into a validated selector. */
export function parseSelector(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof v === 'string') {
    for (const part of v.split(',').map((s) => s.trim()).filter(Boolean)) {
      const eq = part.indexOf('=');
      if (eq <= 0) throw new Error(`"${part}" is not k=v`);
      out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
    }
  } else if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    for (const [k, val] of Object.entries(v)) {
      if (typeof val !== 'string') throw new Error(`value of "${k}" must be a string`);
      out[k] = val;
    }
  } else {
    throw new Error('must be "k=v,k=v" or a table of strings');
  }
  const keys = Object.keys(out);
  if (keys.length > 10) throw new Error(`has ${keys.length} entries; ateapi allows at most 10`);
  for (const [k, val] of Object.entries(out)) {
    const ke = qualifiedNameError(k);
    if (ke) throw new Error(`invalid label key "${k}": ${ke}`);
    const ve = labelValueError(val);
    if (ve) throw new Error(`invalid label value "${val}" for key "${k}": ${ve}`);
  }
  return out;
}

/** A table-valued key's value: the TOML table itself from the file, a JSON object from a flag or env. */
function tableValue(key: ConfigKey, raw: Raw, configPath?: string): unknown {
  if (raw.source === 'file') return raw.value;
  if (typeof raw.value !== 'string') fail(key, raw, 'must be a JSON object', configPath);
  const text = raw.value.trim();
  if (text === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    fail(key, raw, `is not JSON: ${(e as Error).message}`, configPath);
  }
}

function coerce(key: ConfigKey, raw: Raw, baseDir: string, env: NodeJS.ProcessEnv, configPath?: string): unknown {
  const spec: KeySpec = CONFIG_KEYS[key];
  const v = raw.value;
  switch (spec.kind) {
    case 'admission':
      return parseResourceAdmission(tableValue(key, raw, configPath), describe(raw.source, key, configPath), raw.source);
    case 'template_labels':
      return parseTemplateLabels(tableValue(key, raw, configPath), describe(raw.source, key, configPath), raw.source);
    case 'string':
    case 'enum': {
      if (typeof v !== 'string') fail(key, raw, 'must be a string', configPath);
      const s = v.trim();
      if (spec.kind === 'enum' && !spec.values!.includes(s)) {
        fail(key, raw, `"${s}" is not one of ${spec.values!.join(', ')}`, configPath);
      }
      return s;
    }
    case 'path': {
      if (typeof v !== 'string') fail(key, raw, 'must be a path string', configPath);
      const s = v.trim();
      if (s === '') return '';
      return resolve(baseDir, expandHome(s, env));
    }
    case 'bool': {
      if (typeof v === 'boolean') return v;
      if (typeof v === 'string') {
        const s = v.trim().toLowerCase();
        if (['1', 'true', 'yes', 'on'].includes(s)) return true;
        if (['0', 'false', 'no', 'off', ''].includes(s)) return false;
      }
      fail(key, raw, `"${String(v)}" is not a boolean (true/false)`, configPath);
    }
    case 'int': {
      let n: number;
      if (typeof v === 'number') n = v;
      else if (typeof v === 'bigint') n = Number(v);
      else if (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v)) n = Number(v);
      else fail(key, raw, `"${String(v)}" is not an integer`, configPath);
      if (!Number.isInteger(n)) fail(key, raw, `${n} is not an integer`, configPath);
      if (spec.min !== undefined && n < spec.min) fail(key, raw, `${n} is below the minimum ${spec.min}`, configPath);
      if (spec.max !== undefined && n > spec.max) fail(key, raw, `${n} is above the maximum ${spec.max}`, configPath);
      return n;
    }
    case 'selector':
      try {
        return parseSelector(v);
      } catch (e) {
        fail(key, raw, (e as Error).message, configPath);
      }
    case 'quantity': {
      // A Kubernetes quantity (512Mi, 2Gi, 500m, 1.5); a bare number from TOML is taken as written.
      const text = typeof v === 'number' ? String(v) : typeof v === 'string' ? v.trim() : undefined;
      const q = text === undefined ? undefined : parseQuantity(text);
      if (q === undefined) fail(key, raw, `"${String(v)}" is not a quantity (like 512Mi, 2Gi, 500m or 2)`, configPath);
      if (spec.min !== undefined && q < spec.min) fail(key, raw, `${text} is below the minimum ${formatMin(key, spec.min)}`, configPath);
      return q;
    }
    case 'ports': {
      // Comma-separated in a flag or env ("8080,9090"), an array or a string in the file.
      const parts = Array.isArray(v) ? v.map((x) => String(x)) : typeof v === 'string' ? v.split(',') : typeof v === 'number' ? [String(v)] : undefined;
      if (!parts) fail(key, raw, 'must be a list of ports ("8080,9090")', configPath);
      const ports: number[] = [];
      for (const part of parts.map((x) => x.trim()).filter(Boolean)) {
        const n = Number(part);
        if (!/^\d+$/.test(part) || n < 1 || n > 65535) fail(key, raw, `"${part}" is not a port (1 to 65535)`, configPath);
        ports.push(n);
      }
      return ports;
    }
  }
  return v;
}

function formatMin(key: string, min: number): string {
  if (key === 'local_actor_cpu') return String(min);
  return min >= 1024 * 1024 ? `${min / (1024 * 1024)}Mi` : min >= 1024 ? `${min / 1024}Ki` : String(min);
}

/** True for grpc-js targets on a Unix socket. */
export function isUnixTarget(target: string): boolean {
  return target.startsWith('unix:') || target.startsWith('unix-abstract:');
}

/** Host of a grpc-js target ('dns:///h:p', 'h:p', '[::1]:p'), or '' for unix targets. */
export function targetHost(target: string): string {
  if (isUnixTarget(target)) return '';
  let t = target.replace(/^dns:(\/\/[^/]*)?\/?/, '').replace(/^ipv[46]:/, '');
  t = t.replace(/^[a-z]+:\/\//i, '');
  if (t.startsWith('[')) return t.slice(1, t.indexOf(']'));
  const i = t.lastIndexOf(':');
  return i >= 0 ? t.slice(0, i) : t;
}

export function isLoopbackTarget(target: string): boolean {
  return isLoopbackHost(targetHost(target));
}

/**
 * Loads and validates the configuration. Throws ConfigError naming the key and the source of the offending
 * value.
 */
export function loadConfig(opts: LoadConfigOptions = {}): DriverConfig {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const flags = opts.flags ?? {};

  let configPath: string | undefined;
  const cfgFlag = flags.config;
  if (typeof cfgFlag === 'string' && cfgFlag.trim() !== '') configPath = resolve(cwd, expandHome(cfgFlag.trim(), env));
  else if (env[CONFIG_ENV] && env[CONFIG_ENV]!.trim() !== '') configPath = resolve(cwd, expandHome(env[CONFIG_ENV]!.trim(), env));
  const table = configPath ? readTable(configPath) : {};
  const fileDir = configPath ? dirname(configPath) : cwd;

  const values = {} as Record<ConfigKey, unknown>;
  const sources = {} as Record<ConfigKey, ConfigSource>;
  const raws = {} as Record<ConfigKey, Raw>;
  for (const key of CONFIG_KEY_NAMES) {
    let raw: Raw | undefined;
    let base = cwd;
    const f = flags[key];
    const e = env[envVarFor(key)];
    if (f !== undefined) raw = { value: f, source: 'flag' };
    else if (e !== undefined) raw = { value: e, source: 'env' };
    else if (Object.hasOwn(table, key)) {
      raw = { value: table[key], source: 'file' };
      base = fileDir;
    }
    if (raw) {
      values[key] = coerce(key, raw, base, env, configPath);
      sources[key] = raw.source;
      raws[key] = raw;
    } else {
      sources[key] = 'default';
    }
  }

  // gateway_config: the gateway's own TOML. Its [openshell.drivers.substrate] admission keys are the ones the
  // gateway checks our acknowledgement against, so the operator writes them there once; a different value
  // set on our side is an error rather than a silent mismatch.
  const gatewayConfig = (values.gateway_config as string | undefined) ?? '';
  if (gatewayConfig) {
    const gtable = readTable(gatewayConfig);
    for (const key of ['allow_driver_config', 'resource_admission'] as const) {
      if (!Object.hasOwn(gtable, key)) continue;
      const raw: Raw = { value: gtable[key], source: 'file' };
      const v = coerce(key, raw, dirname(gatewayConfig), env, gatewayConfig);
      if (sources[key] === 'default') {
        values[key] = v;
        sources[key] = 'file';
        raws[key] = raw;
      } else if (JSON.stringify(v) !== JSON.stringify(values[key])) {
        throw new ConfigError(
          key,
          sources[key],
          `invalid config ${key} (${describe(sources[key], key, configPath)}): it differs from the gateway's ${key} in ${gatewayConfig}; the gateway compares the two, so set it only in the gateway's file`,
        );
      }
    }
  }

  const str = (k: ConfigKey, d = ''): string => (values[k] as string | undefined) ?? d;
  const admission: DriverAdmissionConfig = {
    allowDriverConfig: (values.allow_driver_config as boolean | undefined) ?? false,
    resourceAdmission: (values.resource_admission as DriverAdmissionConfig['resourceAdmission'] | undefined) ?? defaultAdmissionConfig().resourceAdmission,
  };
  const stateDir = str('state_dir') || defaultStateDirFor(env);
  const cfg: DriverConfig = {
    socketPath: str('socket_path') || join(stateDir, 'run', 'driver.sock'),
    stateDir,
    local: (values.local as boolean | undefined) ?? false,
    apiEndpoint: str('api_endpoint'),
    apiTlsCaPath: str('api_tls_ca_path'),
    apiTlsCertPath: str('api_tls_cert_path'),
    apiTlsKeyPath: str('api_tls_key_path'),
    apiTlsServerName: str('api_tls_server_name'),
    apiPlaintext: (values.api_plaintext as boolean | undefined) ?? false,
    apiBearerTokenPath: str('api_bearer_token_path'),
    kubeconfig: str('kubeconfig'),
    kubeContext: str('kube_context'),
    defaultNamespace: str('default_namespace', 'default'),
    workerSelector: (values.worker_selector as Record<string, string> | undefined) ?? {},
    pauseImage: str('pause_image'),
    snapshotsLocation: str('snapshots_location'),
    sandboxClass: str('sandbox_class', 'gvisor') as DriverConfig['sandboxClass'],
    templateReadyTimeoutSecs: (values.template_ready_timeout_secs as number | undefined) ?? 300,
    gatewayEndpoint: str('gateway_endpoint'),
    stopMode: str('stop_mode', 'suspend') as DriverConfig['stopMode'],
    defaultImage: str('default_image'),
    metricsListen: str('metrics_listen'),
    metricsAllowRemote: (values.metrics_allow_remote as boolean | undefined) ?? false,
    logLevel: str('log_level', 'info') as DriverConfig['logLevel'],
    routerUrl: str('router_url'),
    pollIntervalMs: (values.poll_interval_ms as number | undefined) ?? 500,
    routerListen: str('router_listen'),
    routerAllowRemote: (values.router_allow_remote as boolean | undefined) ?? false,
    workers: (values.workers as number | undefined) ?? 0,
    gatewayConfig,
    admission,
    admissionAck: admissionAcknowledgement(admission),
    templateLabels: (values.template_labels as TemplateLabels | undefined) ?? (Object.create(null) as TemplateLabels),
    localServe: {
      listen: str('local_listen'),
      nodes: (values.local_nodes as number | undefined) ?? 0,
      actorPort: (values.local_actor_port as number | undefined) ?? 0,
      tlsCert: str('local_tls_cert'),
      tlsKey: str('local_tls_key'),
      tlsClientCa: str('local_tls_client_ca'),
      jwtPublicKey: str('local_jwt_public_key'),
      jwks: str('local_jwks'),
      jwtIssuer: str('local_jwt_issuer'),
      jwtAudience: str('local_jwt_audience'),
      egressPorts: (values.local_egress_ports as number[] | undefined) ?? [],
      actorMemoryBytes: values.local_actor_memory === undefined ? undefined : Math.round(values.local_actor_memory as number),
      actorCpuMillis: values.local_actor_cpu === undefined ? undefined : Math.round((values.local_actor_cpu as number) * 1000),
      actorPids: values.local_actor_pids as number | undefined,
      actorTmpBytes: values.local_actor_tmp === undefined ? undefined : Math.round(values.local_actor_tmp as number),
      actorLogBytes: values.local_actor_log_max === undefined ? undefined : Math.round(values.local_actor_log_max as number),
    },
    sources,
    configPath,
  };

  // Cross-field and format rules.
  const bad = (k: ConfigKey, why: string): never => fail(k, raws[k] ?? { value: undefined, source: 'default' }, why, configPath);
  if (cfg.routerListen && !/^(\[[^\]]+\]|[^:\s]+):\d{1,5}$/.test(cfg.routerListen)) bad('router_listen', `"${cfg.routerListen}" is not host:port`);
  if (!isDnsLabel(cfg.defaultNamespace)) bad('default_namespace', `"${cfg.defaultNamespace}" is not a DNS-1123 label (a Kubernetes namespace name)`);
  if ((cfg.apiTlsCertPath === '') !== (cfg.apiTlsKeyPath === '')) {
    const given: ConfigKey = cfg.apiTlsCertPath ? 'api_tls_cert_path' : 'api_tls_key_path';
    const missing = given === 'api_tls_cert_path' ? 'api_tls_key_path' : 'api_tls_cert_path';
    bad(given, `mTLS needs both api_tls_cert_path and api_tls_key_path, or neither; ${missing} is not set`);
  }
  if (cfg.apiPlaintext) {
    for (const k of ['api_tls_ca_path', 'api_tls_cert_path', 'api_tls_key_path', 'api_tls_server_name'] as const) {
      if (values[k]) bad(k, 'conflicts with api_plaintext = true (TLS settings on a plaintext connection)');
    }
  }
  if (cfg.apiEndpoint) {
    if (/^https?:\/\//i.test(cfg.apiEndpoint)) {
      bad('api_endpoint', `"${cfg.apiEndpoint}" is a URL; give a gRPC target such as host:443, dns:///host:443 or unix:/abs/path`);
    }
    if (isUnixTarget(cfg.apiEndpoint)) {
      const p = cfg.apiEndpoint.replace(/^unix:(\/\/)?/, '');
      if (cfg.apiEndpoint.startsWith('unix:') && !isAbsolute(p)) bad('api_endpoint', `unix socket path "${p}" must be absolute`);
    } else if (!/:\d+$/.test(cfg.apiEndpoint)) {
      bad('api_endpoint', `"${cfg.apiEndpoint}" has no port (use host:port)`);
    }
  }
  if (cfg.apiTlsServerName && !/^[A-Za-z0-9.-]+$/.test(cfg.apiTlsServerName)) {
    bad('api_tls_server_name', `"${cfg.apiTlsServerName}" is not a DNS name`);
  }
  for (const k of ['pause_image', 'default_image'] as const) {
    const v = values[k] as string | undefined;
    if (v && !v.includes('@')) bad(k, `"${v}" is not pinned; use name@sha256:<digest> (changing an image invalidates snapshots)`);
  }
  for (const k of ['gateway_endpoint', 'router_url'] as const) {
    const v = values[k] as string | undefined;
    if (v) {
      let u: URL | undefined;
      try {
        u = new URL(v);
      } catch {
        bad(k, `"${v}" is not a URL`);
      }
      if (u && u.protocol !== 'http:' && u.protocol !== 'https:') bad(k, `"${v}" must be an http:// or https:// URL`);
    }
  }
  if (cfg.metricsListen && !/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(cfg.metricsListen)) {
    bad('metrics_listen', `"${cfg.metricsListen}" is not host:port`);
  }
  if (cfg.metricsListen) {
    const port = Number(cfg.metricsListen.slice(cfg.metricsListen.lastIndexOf(':') + 1));
    if (port > 65535) bad('metrics_listen', `port ${port} is out of range`);
    const host = cfg.metricsListen.slice(0, cfg.metricsListen.lastIndexOf(':'));
    if (!isLoopbackHost(host) && !cfg.metricsAllowRemote) {
      bad('metrics_listen', `"${cfg.metricsListen}" is not loopback; /metrics authenticates no one, so listen on 127.0.0.1 (and scrape through a sidecar or port-forward), or set metrics_allow_remote = true to accept that`);
    }
  }
  const ls = cfg.localServe;
  if (ls.listen && !/^unix:\//.test(ls.listen) && !/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(ls.listen)) {
    bad('local_listen', `"${ls.listen}" is neither unix:/abs/path nor host:port`);
  }
  if ((ls.tlsCert === '') !== (ls.tlsKey === '')) {
    bad(ls.tlsCert ? 'local_tls_cert' : 'local_tls_key', 'the server certificate and key go together (local_tls_cert with local_tls_key): give both or neither');
  }
  if (ls.tlsClientCa && !ls.tlsCert) bad('local_tls_client_ca', 'client certificates need TLS: give local_tls_cert and local_tls_key too');
  if (ls.listen && !ls.listen.startsWith('unix:')) {
    if (!ls.jwtPublicKey && !ls.jwks && !ls.tlsClientCa) {
      bad('local_listen', `a TCP listener (${ls.listen}) requires authentication, even on loopback: bearer JWTs (local_jwt_public_key or local_jwks, with local_jwt_issuer and local_jwt_audience) or client certificates (local_tls_client_ca); local tools without a token use the instance's Unix socket`);
    }
    const host = ls.listen.slice(0, ls.listen.lastIndexOf(':')).replace(/^\[|\]$/g, '');
    if (!isLoopbackHost(host) && !ls.tlsCert) bad('local_listen', `"${ls.listen}" is not loopback: the API then requires TLS (local_tls_cert and local_tls_key)`);
  }
  if (ls.jwtPublicKey && ls.jwks) bad('local_jwks', 'give local_jwt_public_key or local_jwks, not both');
  if ((ls.jwtPublicKey || ls.jwks) && (!ls.jwtIssuer || !ls.jwtAudience)) {
    bad(ls.jwtPublicKey ? 'local_jwt_public_key' : 'local_jwks', 'bearer-JWT verification needs local_jwt_issuer and local_jwt_audience');
  }
  if (!ls.jwtPublicKey && !ls.jwks && (ls.jwtIssuer || ls.jwtAudience)) {
    bad(ls.jwtIssuer ? 'local_jwt_issuer' : 'local_jwt_audience', 'needs a key to verify with: local_jwt_public_key or local_jwks');
  }
  if (values.snapshots_location !== undefined && cfg.snapshotsLocation === '') {
    bad('snapshots_location', 'must not be empty');
  }
  return cfg;
}
