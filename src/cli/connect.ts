// How the CLI's kubectl-ate-like commands reach a Substrate (v0.4 wire, src/gen/ateapi.ts):
//
// * by default the local Substrate running for the state directory (found through <state-dir>/local.json),
//   over its owner-only Unix socket, with no token; its LocalAdmin service (WorkerPools, SandboxConfigs) on
//   its own Unix socket;
// * with --endpoint (or api_endpoint from the config loader) any Substrate: a Unix socket needs nothing, TCP
//   needs a bearer token file (--token-file, `-` = standard input) or an mTLS pair, and TLS unless
//   --api-plaintext (or the target is the local instance's own loopback listener without TLS).
//
// Output conventions shared by the commands: API errors print `<CODE>: <message>` and exit 1; usage and
// configuration errors exit 2. The token is never printed, not even in an error.
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { stringify as toYaml } from 'yaml';
import { ControlClient } from '../gen/ateapi.js';
import type { ControlApi } from '../local/api.js';
import { ConfigError, isLoopbackTarget, isUnixTarget, loadConfig, type ConfigKey } from '../common/config.js';
import { setLogLevel } from '../common/log.js';
import { configFlagValues, configFlags, grpcName, helpText, parseArgs, UsageError, type CommandSpec, type FlagSpec, type FlagValues, type Parsed } from './args.js';
import { connectLocalAdmin, type LocalAdminApi } from './admin-client.js';

export const API_KEYS: ConfigKey[] = [
  'state_dir',
  'api_endpoint',
  'api_tls_ca_path',
  'api_tls_cert_path',
  'api_tls_key_path',
  'api_tls_server_name',
  'api_plaintext',
  'api_bearer_token_path',
];

/** Connection flags every API command takes. */
export const CONNECTION_FLAGS: Record<string, FlagSpec> = {
  endpoint: { type: 'string', arg: 'TARGET', desc: 'another Substrate: host:port, dns:///host:port or unix:/path (default: the local instance\'s Unix socket)' },
  'token-file': { type: 'string', arg: 'FILE', desc: 'bearer token for a TCP endpoint, re-read on every call; - reads standard input' },
  ...configFlags(API_KEYS),
};

export type OutputFormat = 'table' | 'json' | 'yaml';

export const OUTPUT_FLAGS: Record<string, FlagSpec> = {
  output: { type: 'string', short: 'o', arg: 'FORMAT', desc: 'table (default), json or yaml; json/yaml print the bare object' },
};

export function outputFormat(flags: FlagValues): OutputFormat {
  const o = flags.output;
  if (o === undefined) return flags.json === true ? 'json' : 'table';
  if (o === 'table' || o === 'json' || o === 'yaml') return o;
  throw new UsageError(`-o/--output must be table, json or yaml, got "${String(o)}"`);
}

/** Prints a value as JSON or YAML (already in its protojson form). */
export function printObject(value: unknown, format: 'json' | 'yaml'): void {
  process.stdout.write(format === 'json' ? JSON.stringify(value, null, 2) + '\n' : toYaml(value, { lineWidth: 0 }));
}

/** Prints one object (bare) or a list ({items}) as JSON/YAML. */
export function printObjects(values: unknown[], format: 'json' | 'yaml', single: boolean): void {
  printObject(single && values.length === 1 ? values[0] : { items: values }, format);
}

/** kubectl's AGE: 42s, 5m, 3h, 12d. */
export function age(t: Date | undefined, now = Date.now()): string {
  if (!t) return '-';
  const s = Math.max(0, Math.floor((now - t.getTime()) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export interface Connection {
  api: ControlApi;
  /** The LocalAdmin service: only when connected to the local instance. */
  admin(): LocalAdminApi;
  /** Where the calls go, for messages (never the token). */
  target: string;
  local: boolean;
  close(): void;
}

/** Deadlines: the resume/suspend/pause/revert workflows may include a wakeup probe wait. */
const WORKFLOW = new Set(['resumeActor', 'suspendActor', 'pauseActor', 'revertActor']);
const READ_TIMEOUT_MS = 30_000;
const WORKFLOW_TIMEOUT_MS = 10 * 60_000;

const CONTROL_METHODS: ReadonlyArray<keyof ControlApi> = [
  'getActor',
  'createActor',
  'updateActor',
  'suspendActor',
  'pauseActor',
  'resumeActor',
  'revertActor',
  'deleteActor',
  'listActors',
  'getActorEgressPolicy',
  'createActorEgressPolicy',
  'updateActorEgressPolicy',
  'deleteActorEgressPolicy',
  'createTag',
  'getTag',
  'listTags',
  'updateTag',
  'deleteTag',
  'listWorkers',
  'getWorker',
  'drainWorker',
  'listWorkerActorAssignments',
  'createAtespace',
  'getAtespace',
  'listAtespaces',
  'deleteAtespace',
  'createActorTemplate',
  'getActorTemplate',
  'listActorTemplates',
  'deleteActorTemplate',
];

/** ControlApi over a generated ControlClient: one promise per RPC, a deadline each, the token per call. */
export function controlOverGrpc(client: ControlClient, metadata: () => grpc.Metadata): ControlApi {
  const api: Record<string, (req: unknown) => Promise<unknown>> = {};
  for (const m of CONTROL_METHODS) {
    api[m] = (req: unknown) =>
      new Promise((resolve, reject) => {
        let md: grpc.Metadata;
        try {
          md = metadata();
        } catch (e) {
          reject(e);
          return;
        }
        const fn = (client as unknown as Record<string, Function>)[m]!;
        const deadline = Date.now() + (WORKFLOW.has(m) ? WORKFLOW_TIMEOUT_MS : READ_TIMEOUT_MS);
        fn.call(client, req, md, { deadline }, (err: grpc.ServiceError | null, res: unknown) => (err ? reject(err) : resolve(res)));
      });
  }
  return api as unknown as ControlApi;
}

/** An error the CLI reports without a gRPC code, exit 1 (e.g. no local instance runs). */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliError';
  }
}

function tokenReader(flags: FlagValues, tokenPath: string): (() => string) | undefined {
  if (flags['token-file'] === '-') {
    let t: string;
    try {
      t = readFileSync(0, 'utf8').trim();
    } catch (e) {
      throw new ConfigError('api_bearer_token_path', 'flag', `cannot read the bearer token from standard input (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (t === '') throw new ConfigError('api_bearer_token_path', 'flag', 'the bearer token read from standard input is empty');
    return () => t;
  }
  if (!tokenPath) return undefined;
  return () => {
    let t: string;
    try {
      t = readFileSync(tokenPath, 'utf8').trim();
    } catch (e) {
      throw new CliError(`cannot read the bearer token file ${tokenPath} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (t === '') throw new CliError(`the bearer token file ${tokenPath} is empty`);
    return t;
  };
}

/** The local instance's endpoints from local.json; its Unix socket for the Control API. */
async function localEndpoints(stateDir: string): Promise<{ control: string; admin: string; tcp?: string; tcpTls: boolean }> {
  const { readLocalJson } = await import('../local/index.js');
  const j = readLocalJson(stateDir) as (Record<string, unknown> & { api_endpoint?: string; api_tls?: boolean }) | null;
  if (!j) {
    throw new CliError(`no local Substrate runs for ${stateDir}; start one with: substrate-driver local serve --state-dir ${stateDir} (or give --endpoint)`);
  }
  const str = (k: string) => (typeof j[k] === 'string' && j[k] !== '' ? (j[k] as string) : undefined);
  const unix = (p: string | undefined) => (p === undefined ? undefined : p.startsWith('unix:') ? p : `unix:${p}`);
  const apiEndpoint = str('api_endpoint');
  // socket_path: the instance's owner-only Unix socket (Control and LocalAdmin, no token).
  let control = unix(str('socket_path')) ?? (apiEndpoint && isUnixTarget(apiEndpoint) ? apiEndpoint : undefined);
  if (!control && existsSync(join(stateDir, 'ateapi.sock'))) control = `unix:${join(stateDir, 'ateapi.sock')}`;
  if (!control) {
    throw new CliError(
      `the local Substrate for ${stateDir} serves no Unix socket (its API is ${apiEndpoint ?? 'unknown'}); give --endpoint ${apiEndpoint ?? 'HOST:PORT'} --token-file FILE`,
    );
  }
  // The LocalAdmin service shares the Control API's Unix socket (src/local/server.ts), unless local.json names its own.
  const admin = unix(str('admin_socket')) ?? control;
  return { control, admin, tcp: apiEndpoint && !isUnixTarget(apiEndpoint) ? apiEndpoint : undefined, tcpTls: j.api_tls === true };
}

/** Connects as the flags say (see the header). Config problems are ConfigError/UsageError (exit 2). */
export async function connect(flags: FlagValues): Promise<Connection> {
  if (typeof flags.endpoint === 'string' && typeof flags['api-endpoint'] === 'string' && flags.endpoint !== flags['api-endpoint']) {
    throw new UsageError('--endpoint and --api-endpoint name the same setting; give one');
  }
  const cfgFlags = configFlagValues(flags);
  if (typeof flags.endpoint === 'string') cfgFlags.api_endpoint = flags.endpoint;
  if (typeof flags['token-file'] === 'string' && flags['token-file'] !== '-') cfgFlags.api_bearer_token_path = flags['token-file'];
  const cfg = loadConfig({ flags: cfgFlags });
  const channelOptions: grpc.ChannelOptions = { 'grpc.max_receive_message_length': 64 * 1024 * 1024 };
  if (!cfg.apiEndpoint) {
    if (flags['token-file'] !== undefined) throw new UsageError('--token-file goes with --endpoint (the local instance\'s Unix socket takes no token)');
    const ep = await localEndpoints(cfg.stateDir);
    const client = new ControlClient(ep.control, grpc.credentials.createInsecure(), channelOptions);
    let adminApi: (LocalAdminApi & { close(): void }) | undefined;
    return {
      api: controlOverGrpc(client, () => new grpc.Metadata()),
      admin: () => (adminApi ??= connectLocalAdmin(ep.admin)),
      target: ep.control,
      local: true,
      close: () => {
        client.close();
        adminApi?.close();
      },
    };
  }
  const endpoint = cfg.apiEndpoint;
  const unix = isUnixTarget(endpoint);
  const read = tokenReader(flags, cfg.apiBearerTokenPath);
  const mtls = !!cfg.apiTlsCertPath;
  if (!unix && !read && !mtls) {
    throw new ConfigError(
      'api_bearer_token_path',
      'default',
      `a TCP endpoint (${endpoint}) needs credentials: give --token-file FILE (a bearer token) or --api-tls-cert-path/--api-tls-key-path; only a Unix socket takes none`,
    );
  }
  let plaintext = cfg.apiPlaintext || unix;
  if (!plaintext && isLoopbackTarget(endpoint)) {
    // The local instance's own loopback listener without TLS (it refuses plaintext off loopback).
    const { readLocalJson } = await import('../local/index.js');
    const j = readLocalJson(cfg.stateDir);
    if (j && j.api_endpoint === endpoint && !j.api_tls) plaintext = true;
  }
  let creds: grpc.ChannelCredentials;
  if (plaintext) {
    if (!unix && !isLoopbackTarget(endpoint) && read) {
      process.stderr.write(`warning: sending a bearer token over plaintext to ${endpoint} (api_plaintext is set)\n`);
    }
    creds = grpc.credentials.createInsecure();
  } else {
    const pem = (p: string, what: string) => {
      try {
        return readFileSync(p);
      } catch (e) {
        throw new ConfigError(what, 'flag', `cannot read ${what} ${p} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
      }
    };
    creds = grpc.credentials.createSsl(
      cfg.apiTlsCaPath ? pem(cfg.apiTlsCaPath, 'api_tls_ca_path') : null,
      cfg.apiTlsKeyPath ? pem(cfg.apiTlsKeyPath, 'api_tls_key_path') : null,
      cfg.apiTlsCertPath ? pem(cfg.apiTlsCertPath, 'api_tls_cert_path') : null,
    );
    if (cfg.apiTlsServerName) {
      channelOptions['grpc.ssl_target_name_override'] = cfg.apiTlsServerName;
      channelOptions['grpc.default_authority'] = cfg.apiTlsServerName;
    }
  }
  const client = new ControlClient(endpoint, creds, channelOptions);
  const sendToken = !!read && !unix;
  return {
    api: controlOverGrpc(client, () => {
      const md = new grpc.Metadata();
      if (sendToken) md.set('authorization', `Bearer ${read!()}`);
      return md;
    }),
    admin: () => {
      throw new CliError(`WorkerPools and SandboxConfigs are applied through the local instance's admin socket; ${endpoint} is another Substrate (drop --endpoint)`);
    },
    target: endpoint,
    local: false,
    close: () => client.close(),
  };
}

/** `<CODE>: <message>` of a gRPC error; the plain message otherwise. */
export function errorText(e: unknown): string {
  const err = e as { code?: unknown; details?: unknown; message?: unknown };
  if (typeof err?.code === 'number' && (typeof err.details === 'string' || typeof err.message === 'string')) {
    const msg = typeof err.details === 'string' && err.details !== '' ? err.details : String(err.message).replace(/^\d+ [A-Z_]+: /, '');
    return `${grpcName(err.code)}: ${msg}`;
  }
  return e instanceof Error ? e.message : String(e);
}

export function grpcCode(e: unknown): number | undefined {
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'number' ? c : undefined;
}

/**
 * `substrate-driver <group> <verb>` with the API commands' conventions: the group's usage (exit 2 without a
 * verb, 0 with --help), --help on every verb, usage/config errors exit 2, API errors `<CODE>: <message>`
 * exit 1.
 */
export async function runGroup(
  group: string,
  argv: string[],
  usage: string,
  specs: Record<string, CommandSpec>,
  body: (verb: string, p: Parsed) => Promise<number>,
  aliases: Record<string, string> = {},
): Promise<number> {
  const [first, ...rest] = argv;
  if (!first || first === '-h' || first === '--help' || first === 'help') {
    process.stdout.write(usage);
    return first ? 0 : 2;
  }
  const verb = aliases[first] ?? first;
  const spec = specs[verb];
  if (!spec) {
    process.stderr.write(`substrate-driver ${group}: unknown command "${first}"\n\n${usage}`);
    return 2;
  }
  try {
    const p = parseArgs(rest, spec);
    if (p.help) {
      process.stdout.write(helpText(spec));
      return 0;
    }
    setLogLevel('warn');
    return await body(verb, p);
  } catch (e) {
    if (e instanceof UsageError || e instanceof ConfigError) {
      process.stderr.write(`substrate-driver ${group} ${verb}: ${e.message}\n`);
      return 2;
    }
    if ((e as Error)?.name === 'ManifestError') {
      process.stderr.write(`substrate-driver ${group} ${verb}: ${(e as Error).message}\n`);
      return 2;
    }
    process.stderr.write(`${errorText(e)}\n`);
    return 1;
  }
}

/** "[A/]NAME" → ObjectRef, the atespace defaulting to `atespace`. */
export function refOf(s: string, atespace: string, what: string): { atespace: string; name: string } {
  const parts = s.split('/');
  if (parts.length === 1 && parts[0]) return { atespace, name: parts[0] };
  if (parts.length === 2 && parts[0] && parts[1]) return { atespace: parts[0], name: parts[1] };
  throw new UsageError(`${what} "${s}" must be NAME or ATESPACE/NAME`);
}

/** All pages of a List RPC. */
export async function listAll<T, R extends { nextPageToken: string }>(call: (pageToken: string) => Promise<R>, items: (r: R) => T[]): Promise<T[]> {
  const out: T[] = [];
  let token = '';
  const seen = new Set<string>();
  for (;;) {
    const r = await call(token);
    out.push(...items(r));
    token = r.nextPageToken;
    if (!token) return out;
    if (seen.has(token)) throw new CliError('the server returned the same page token twice');
    seen.add(token);
  }
}
