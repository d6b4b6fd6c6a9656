// `substrate-driver local ...`: run and inspect the embedded local Substrate.
//
// `local serve` reads its settings through the one config loader (flag > env OPENSHELL_SUBSTRATE_<KEY> > the
// [openshell.drivers.substrate] table of --config > default), keeping its short flags (--listen, --tls-cert,
// ...), each mapped to a key (local_listen, local_tls_cert, ...). `local apply` parses SandboxConfig,
// WorkerPool, Atespace and ActorTemplate manifests (src/cli/manifests.ts), all before applying any, then
// applies them in that order through the instance's API (its Unix socket): SandboxConfigs and WorkerPools
// through the LocalAdmin service, atespaces and templates through ateapi.Control.
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs as nodeParseArgs, type ParseArgsConfig } from 'node:util';
import { status as Code } from '@grpc/grpc-js';
import { ConfigError, loadConfig, type ConfigKey, type DriverConfig } from '../common/config.js';
import { setLogLevel } from '../common/log.js';
import { runUntilStopped } from '../common/lifecycle.js';
import { workerStateToJSON, type ActorTemplate } from '../gen/ateapi.js';
import type { LocalSubstrateOptions } from '../local/index.js';
import type { SandboxConfigSpec, WorkerPoolSpec } from '../local/api.js';
import { helpText, parseArgs, UsageError, type CommandSpec, type FlagSpec, type FlagValues } from './args.js';
import { CliError, CONNECTION_FLAGS, connect, errorText, grpcCode, listAll, type Connection } from './connect.js';
import { applyOrder, parseManifests, templateDifferences, type ManifestDoc } from './manifests.js';
import { readManifestFile } from './ate.js';

const HELP: Record<string, string> = {
  '': `Usage: substrate-driver local <command> [options]

Commands:
  serve     run the local Substrate (ateapi.Control v0.4 and its admin service, the router) in the foreground
  apply     apply SandboxConfig, WorkerPool, Atespace and ActorTemplate manifests (-f FILE, - = stdin)
  images    list the root-filesystem images actors can use, with their pinned references
  workers   list worker slots with their state, actor and sandbox process id
  doctor    check this machine (runsc, kernel features, permissions) and print a remedy for each failure

Every command takes --state-dir DIR (default $XDG_STATE_HOME/openshell-driver-substrate, env
OPENSHELL_SUBSTRATE_STATE_DIR) and finds a running instance through <state-dir>/local.json.
The API verbs (substrate-driver atespaces|templates|actors|tags|egress-policy|workers) use it too.
`,
};

/** `local serve` flag → config key (the flag keeps the name it always had). */
const SERVE_FLAG_KEYS: Record<string, ConfigKey> = {
  'state-dir': 'state_dir',
  listen: 'local_listen',
  'router-listen': 'router_listen',
  'router-allow-remote': 'router_allow_remote',
  workers: 'workers',
  nodes: 'local_nodes',
  'actor-port': 'local_actor_port',
  'tls-cert': 'local_tls_cert',
  'tls-key': 'local_tls_key',
  'tls-client-ca': 'local_tls_client_ca',
  'jwt-public-key': 'local_jwt_public_key',
  jwks: 'local_jwks',
  'jwt-issuer': 'local_jwt_issuer',
  'jwt-audience': 'local_jwt_audience',
  egress: 'local_egress_ports',
  'actor-memory': 'local_actor_memory',
  'actor-cpu': 'local_actor_cpu',
  'actor-pids': 'local_actor_pids',
  'actor-tmp': 'local_actor_tmp',
  'actor-log-max': 'local_actor_log_max',
  'log-level': 'log_level',
};

const SERVE_FLAG_DOC: Record<string, [arg: string | undefined, desc: string]> = {
  'state-dir': ['DIR', 'state directory (catalog, snapshots, images, logs)'],
  listen: ['ADDR', 'ateapi.Control on TCP (host:port) besides the Unix socket <state-dir>/ateapi.sock (0600, no token); TCP requires bearer JWTs (or client certificates), even on loopback, and TLS off loopback'],
  'router-listen': ['H:P', 'actor router address (default 127.0.0.1:8000; port 0 picks a free one)'],
  'router-allow-remote': [undefined, 'let the router listen on a non-loopback address (it authenticates no one)'],
  workers: ['N', 'slots of the built-in worker pool (default one per 512 MiB of memory, 2..64)'],
  nodes: ['N', 'virtual nodes the workers are spread over (default 2; paused actors resume on their node)'],
  'actor-port': ['N', 'actor port the router forwards to (default 80)'],
  'tls-cert': ['FILE', 'server certificate (PEM) for the API'],
  'tls-key': ['FILE', 'server private key (PEM)'],
  'tls-client-ca': ['FILE', 'CA bundle for client certificates (mTLS authentication on TCP)'],
  'jwt-public-key': ['FILE', 'verify bearer JWTs with this SPKI PEM key (EdDSA, ES256 or RS256)'],
  jwks: ['FILE', 'verify bearer JWTs with this JWKS file'],
  'jwt-issuer': ['ISS', 'required issuer of bearer JWTs'],
  'jwt-audience': ['AUD', 'required audience of bearer JWTs (a cluster uses api.ate-system.svc)'],
  egress: ['PORTS', 'host loopback ports every actor may reach, comma-separated (default none)'],
  'actor-memory': ['Q', 'memory limit of each actor, a quantity (default 1Gi; past it the sandbox is OOM-killed)'],
  'actor-cpu': ['Q', 'CPU limit of each actor, a quantity (default 1 = one core)'],
  'actor-pids': ['N', 'tasks (processes and threads) each actor may have (default 1024)'],
  'actor-tmp': ['Q', "size of each actor's /tmp (default 256Mi)"],
  'actor-log-max': ['Q', 'each workload log is rotated past this size, one previous file kept (default 16Mi)'],
  'log-level': ['LEVEL', 'debug|info|warn|error (default info)'],
};

const SERVE_SPEC: CommandSpec = {
  usage: 'substrate-driver local serve [--state-dir DIR] [--listen ADDR] [--router-listen H:P] [--workers N] [flags]',
  summary: 'Run the local Substrate in the foreground: ateapi.Control (Substrate v0.4) and its admin service on the instance\'s Unix socket, the actor router, gVisor workers.',
  flags: {
    config: { type: 'string', arg: 'FILE', desc: 'TOML file with an [openshell.drivers.substrate] table (env OPENSHELL_SUBSTRATE_CONFIG)' },
    ...Object.fromEntries(
      Object.entries(SERVE_FLAG_KEYS).map(([flag, key]) => {
        const [arg, desc] = SERVE_FLAG_DOC[flag]!;
        const spec: FlagSpec = { type: arg === undefined ? 'boolean' : 'string', arg, desc: `${desc} [${key}]` };
        return [flag, spec];
      }),
    ),
    'enable-debug-clear': { type: 'boolean', desc: 'removed: Substrate v0.4 has no DebugClear' },
  },
  epilog: [
    'Each flag is a config key (in brackets): also env OPENSHELL_SUBSTRATE_<KEY> and a key of the',
    '[openshell.drivers.substrate] table of --config. Precedence: flag > environment > file > default.',
    'An ActorTemplate\'s resources.limits (cpu, memory) can lower its actors\' limits, never raise them.',
    'Invalid configuration exits with status 2.',
  ].join('\n'),
};

/** The loader's local-Substrate settings as startLocalSubstrate's options (also for `serve --local`). */
export function localSubstrateOptions(cfg: DriverConfig): LocalSubstrateOptions {
  const ls = cfg.localServe;
  let tls: LocalSubstrateOptions['tls'];
  if (ls.tlsCert) {
    const t: { certPath: string; keyPath: string; clientCaPath?: string } = { certPath: ls.tlsCert, keyPath: ls.tlsKey };
    if (ls.tlsClientCa) t.clientCaPath = ls.tlsClientCa;
    tls = t;
  }
  const limits: NonNullable<LocalSubstrateOptions['limits']> = {};
  if (ls.actorMemoryBytes !== undefined) limits.memoryBytes = ls.actorMemoryBytes;
  if (ls.actorCpuMillis !== undefined) limits.cpuMillis = ls.actorCpuMillis;
  if (ls.actorPids !== undefined) limits.pids = ls.actorPids;
  if (ls.actorTmpBytes !== undefined) limits.tmpBytes = ls.actorTmpBytes;
  if (ls.actorLogBytes !== undefined) limits.logBytes = ls.actorLogBytes;
  return {
    stateDir: cfg.stateDir,
    listen: ls.listen || undefined,
    routerListen: cfg.routerListen || undefined,
    workers: cfg.workers || undefined,
    nodes: ls.nodes || undefined,
    actorPort: ls.actorPort || undefined,
    tls,
    auth:
      ls.jwtPublicKey || ls.jwks
        ? { ...(ls.jwtPublicKey ? { publicKeyPath: ls.jwtPublicKey } : {}), ...(ls.jwks ? { jwksPath: ls.jwks } : {}), issuer: ls.jwtIssuer, audience: ls.jwtAudience }
        : undefined,
    egress: ls.egressPorts.length > 0 ? ls.egressPorts.map((port) => ({ host: '127.0.0.1' as const, port })) : undefined,
    routerAllowRemote: cfg.routerAllowRemote,
    limits,
  };
}

/** `local serve` flags → the loader's flags. */
export function serveConfigFlags(flags: FlagValues): Partial<Record<ConfigKey | 'config', string | boolean>> {
  const out: Partial<Record<ConfigKey | 'config', string | boolean>> = {};
  if (typeof flags.config === 'string') out.config = flags.config;
  for (const [flag, key] of Object.entries(SERVE_FLAG_KEYS)) {
    const v = flags[flag];
    if (typeof v === 'string' || typeof v === 'boolean') out[key] = v;
  }
  return out;
}

const APPLY_SPEC: CommandSpec = {
  usage: 'substrate-driver local apply -f FILE|- [--wait] [--timeout SECONDS] [--dry-run] [--state-dir DIR]',
  summary: 'Apply SandboxConfig, WorkerPool, Atespace and ActorTemplate manifests to the running local Substrate.',
  flags: {
    filename: { type: 'string', short: 'f', arg: 'FILE', desc: 'manifest file, YAML or JSON, one or more documents; - reads standard input' },
    wait: { type: 'boolean', desc: "wait for each ActorTemplate's golden snapshot (golden tag)" },
    timeout: { type: 'string', arg: 'SECONDS', desc: 'with --wait: give up after this long (default 300)' },
    'dry-run': { type: 'boolean', desc: 'parse and check every document, print what would be applied, apply nothing' },
    ...CONNECTION_FLAGS,
  },
  epilog: [
    'Documents (addendum §2, §3):',
    '  ActorTemplate   protojson, exactly as `kubectl ate create actor-template -f` takes it (metadata{atespace,name},',
    '                  containers, volumes, snapshotConfig, sandboxConfig, resources, workerSelector); unknown fields are',
    '                  errors. Or apiVersion ate.dev/v1alpha1, kind ActorTemplate, metadata{atespace,name}, spec{<the same>}.',
    '  WorkerPool      apiVersion ate.dev/v1alpha1: metadata{name,namespace,labels}, spec{replicas,workerImage,sandboxClass,',
    '                  template{labels}}; each replica is one local worker slot',
    '  SandboxConfig   apiVersion ate.dev/v1alpha1, cluster-scoped: spec{sandboxClass,pauseImage,assets}',
    '  Atespace        kind Atespace, metadata{name} (this CLI\'s convenience for `kubectl ate create atespace`)',
    'Every document is checked before any is applied; they are applied in the order SandboxConfigs, WorkerPools,',
    'Atespaces, ActorTemplates. Templates are immutable: an existing one with the same content is "unchanged", a',
    'different one is an error (delete it with `substrate-driver templates delete NAME -a A` and apply again).',
    'Exit status: 0 ok, 1 API error (printed as CODE: message) or a failed golden snapshot, 2 usage, configuration',
    'or manifest error.',
  ].join('\n'),
};

const SIMPLE_HELP: Record<string, string> = {
  images: `Usage: substrate-driver local images [--json] [--state-dir DIR]
       substrate-driver local images build --name NAME --from DIR [--json] [--state-dir DIR]

Lists root-filesystem images. References are pinned: local/<name>@sha256:<digest of the image's content>.
The default image (local/node) holds this machine's Node.js runtime and its libraries; it is built on first use.
"build" makes an app image: the node image plus DIR's content at /app (run it with command
["/usr/bin/node", "/app/<your entry point>"]); it prints the pinned reference to put in an ActorTemplate.
`,
  workers: `Usage: substrate-driver local workers [--json] [--state-dir DIR]

Lists the running instance's workers (one per slot) with their pool, node, state and assigned actor, through
its Unix socket (ListWorkers, ListWorkerActorAssignments). \`substrate-driver workers\` has more verbs.
`,
  doctor: `Usage: substrate-driver local doctor [--json] [--state-dir DIR]

Checks runsc, kernel features and permissions; prints the exact remedy for each failure. Exit 1 if any fails.
`,
};

type Flags = Record<string, string | boolean | undefined>;

function parseSimple(sub: string, argv: string[], options: ParseArgsConfig['options']): { values: Flags } {
  try {
    return nodeParseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' }, 'state-dir': { type: 'string' } }, allowPositionals: false, strict: true }) as {
      values: Flags;
    };
  } catch (e) {
    throw new UsageError(`${(e as Error).message.replace(/\. To specify a positional argument starting with a '-'.*$/s, '')}\n\n${SIMPLE_HELP[sub]}`);
  }
}

function stateDirOf(v: unknown): string {
  return loadConfig({ flags: typeof v === 'string' ? { state_dir: v } : {} }).stateDir;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

const COMMANDS = ['serve', 'apply', 'images', 'workers', 'doctor'];

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h' || sub === 'help') {
    process.stdout.write(HELP['']!);
    return sub ? 0 : 2;
  }
  if (!COMMANDS.includes(sub)) {
    process.stderr.write(`substrate-driver local: unknown command "local ${sub}"\n\n${HELP['']}`);
    return 2;
  }
  try {
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(sub === 'serve' ? helpText(SERVE_SPEC) : sub === 'apply' ? helpText(APPLY_SPEC) : SIMPLE_HELP[sub]!);
      return 0;
    }
    switch (sub) {
      case 'serve':
        return await serve(rest);
      case 'apply':
        return await apply(rest);
      case 'images':
        return await images(rest);
      case 'workers':
        return await workers(rest);
      case 'doctor':
        return await doctor(rest);
    }
    return 2;
  } catch (e) {
    if (e instanceof UsageError || e instanceof ConfigError || (e as Error)?.name === 'ManifestError') {
      process.stderr.write(`substrate-driver local ${sub}: ${(e as Error).message}\n`);
      return 2;
    }
    // API commands print `<CODE>: <message>` as the other API verbs do.
    process.stderr.write(sub === 'apply' || sub === 'workers' ? `${errorText(e)}\n` : `substrate-driver local ${sub}: ${(e as Error).message}\n`);
    return 1;
  }
}

async function serve(argv: string[]): Promise<number> {
  const p = parseArgs(argv, SERVE_SPEC);
  if (p.flags['enable-debug-clear']) throw new UsageError('--enable-debug-clear: Substrate v0.4 has no DebugClear RPC (delete actors with substrate-driver actors delete --any-state)');
  let cfg: DriverConfig;
  try {
    cfg = loadConfig({ flags: serveConfigFlags(p.flags) });
  } catch (e) {
    // Name the flag as it was typed (--tls-cert, not the key's generic --local-tls-cert).
    if (e instanceof ConfigError) {
      for (const [flag, key] of Object.entries(SERVE_FLAG_KEYS)) e.message = e.message.replace(`(from flag --${key.replace(/_/g, '-')})`, `(from flag --${flag})`);
    }
    throw e;
  }
  setLogLevel(cfg.logLevel);
  const { startLocalSubstrate } = await import('../local/index.js');
  const h = await startLocalSubstrate(localSubstrateOptions(cfg));
  process.stdout.write(
    `local Substrate running (pid ${process.pid})\n  api:    ${h.apiEndpoint}${h.apiTls ? ' (TLS)' : ''}\n  socket: ${h.socketPath} (no token; also the admin service)\n  router: ${h.routerUrl}\n  state:  ${h.stateDir}\n`,
  );
  return runUntilStopped(() => h.stop(), { what: 'local Substrate (suspending running actors)' });
}

// ------------------------------------------------------------------------------------------------ apply

const stable = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b))) : x,
  );

function samePool(a: WorkerPoolSpec, b: WorkerPoolSpec): boolean {
  return stable({ ...a }) === stable({ ...b });
}

function sameConfig(a: SandboxConfigSpec, b: SandboxConfigSpec): boolean {
  const norm = (c: SandboxConfigSpec) => ({ name: c.name, sandboxClass: c.sandboxClass, pauseImage: c.pauseImage ?? '', assets: c.assets ?? {} });
  return stable(norm(a)) === stable(norm(b));
}

/** Applies parsed documents in order; returns the templates to wait for. Throws on the first API error. */
export async function applyDocuments(c: Connection, docs: readonly ManifestDoc[], out: (line: string) => void): Promise<ActorTemplate[]> {
  const ordered = applyOrder(docs);
  if (!c.local && ordered.some((d) => d.kind === 'WorkerPool' || d.kind === 'SandboxConfig')) {
    throw new UsageError(`WorkerPool and SandboxConfig documents are applied through the local instance's admin service; ${c.target} is another Substrate (drop --endpoint)`);
  }
  let pools: WorkerPoolSpec[] | undefined;
  let configs: SandboxConfigSpec[] | undefined;
  const templates: ActorTemplate[] = [];
  for (const d of ordered) {
    switch (d.kind) {
      case 'SandboxConfig': {
        configs ??= await c.admin().listSandboxConfigs();
        const cur = configs.find((x) => x.name === d.config.name);
        if (cur && sameConfig(cur, d.config)) {
          out(`${d.label} unchanged`);
          break;
        }
        await c.admin().applySandboxConfig(d.config);
        out(`${d.label} ${cur ? 'configured' : 'created'}`);
        break;
      }
      case 'WorkerPool': {
        pools ??= await c.admin().listWorkerPools();
        const cur = pools.find((x) => x.namespace === d.pool.namespace && x.name === d.pool.name);
        if (cur && samePool(cur, d.pool)) {
          out(`${d.label} unchanged`);
          break;
        }
        await c.admin().applyWorkerPool(d.pool);
        out(`${d.label} ${cur ? 'configured' : 'created'}`);
        break;
      }
      case 'Atespace':
        try {
          await c.api.createAtespace({ atespace: { metadata: { atespace: '', name: d.name, uid: '', version: 0 } } });
          out(`${d.label} created`);
        } catch (e) {
          if (grpcCode(e) !== Code.ALREADY_EXISTS) throw e;
          out(`${d.label} unchanged`);
        }
        break;
      case 'ActorTemplate': {
        const ref = { atespace: d.template.metadata!.atespace, name: d.template.metadata!.name };
        try {
          templates.push(await c.api.createActorTemplate({ actorTemplate: d.template }));
          out(`${d.label} created`);
        } catch (e) {
          if (grpcCode(e) !== Code.ALREADY_EXISTS) throw e;
          const stored = await c.api.getActorTemplate({ actorTemplate: ref });
          const diffs = templateDifferences(stored, d.template);
          if (diffs.length > 0) {
            throw new CliError(
              `ALREADY_EXISTS: ${d.label} exists with different content (${diffs.slice(0, 8).join(', ')}${diffs.length > 8 ? ', ...' : ''}); ActorTemplates are immutable: delete it (substrate-driver templates delete ${ref.name} -a ${ref.atespace}) and apply again`,
            );
          }
          templates.push(stored);
          out(`${d.label} unchanged`);
        }
        break;
      }
    }
  }
  return templates;
}

/** Polls each template until its golden tag is set (ok) or its error_message (terminal failure). */
export async function waitForGolden(
  c: Connection,
  templates: readonly ActorTemplate[],
  timeoutSecs: number,
  io: { out: (line: string) => void; progress: (line: string) => void; pollMs?: number },
): Promise<boolean> {
  const deadline = Date.now() + timeoutSecs * 1000;
  let ok = true;
  for (const t0 of templates) {
    const ref = { atespace: t0.metadata!.atespace, name: t0.metadata!.name };
    const label = `actortemplate ${ref.atespace}/${ref.name}`;
    const started = Date.now();
    let lastReport = started;
    let announced = false;
    for (let t = t0; ; ) {
      const g = t.status?.goldenSnapshotStatus;
      if (g?.errorMessage) {
        io.progress(`${label}: golden snapshot failed: ${g.errorMessage}`);
        ok = false;
        break;
      }
      if (g?.goldenTag?.name) {
        io.out(`${label}: golden tag ${g.goldenTag.atespace}/${g.goldenTag.name} ready`);
        break;
      }
      if (!announced) {
        io.progress(`${label}: waiting for the golden snapshot${g?.takeGoldenSnapshotAt ? ` (taken at about ${g.takeGoldenSnapshotAt.toISOString()})` : ''}`);
        announced = true;
      } else if (Date.now() - lastReport >= 10_000) {
        io.progress(`${label}: still waiting (${Math.round((Date.now() - started) / 1000)}s)`);
        lastReport = Date.now();
      }
      if (Date.now() >= deadline) {
        io.progress(`${label}: no golden tag after ${timeoutSecs}s (--timeout)`);
        ok = false;
        break;
      }
      await new Promise((r) => setTimeout(r, io.pollMs ?? 500));
      t = await c.api.getActorTemplate({ actorTemplate: ref });
    }
    if (!ok) return false;
  }
  return ok;
}

async function apply(argv: string[]): Promise<number> {
  const p = parseArgs(argv, APPLY_SPEC);
  if (typeof p.flags.filename !== 'string') throw new UsageError(`-f FILE is required (- reads standard input); usage: ${APPLY_SPEC.usage}`);
  let timeout = 300;
  if (p.flags.timeout !== undefined) {
    timeout = Number(p.flags.timeout);
    if (!Number.isInteger(timeout) || timeout < 1 || timeout > 86_400) throw new UsageError(`--timeout must be an integer from 1 to 86400, got "${String(p.flags.timeout)}"`);
  }
  const { docs, warnings } = parseManifests(readManifestFile(p.flags.filename));
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  const out = (line: string) => process.stdout.write(line + '\n');
  if (p.flags['dry-run']) {
    for (const d of applyOrder(docs)) out(`${d.label} (document ${d.index}) would be applied`);
    return 0;
  }
  setLogLevel('warn');
  const c = await connect(p.flags);
  try {
    const templates = await applyDocuments(c, docs, out);
    if (p.flags.wait && templates.length > 0) {
      const ok = await waitForGolden(c, templates, timeout, { out, progress: (l) => process.stderr.write(l + '\n') });
      return ok ? 0 : 1;
    }
    return 0;
  } finally {
    c.close();
  }
}

// ------------------------------------------------------------------------------------------------ images, workers, doctor

async function images(argv: string[]): Promise<number> {
  const { buildImageFromDir, ensureDefaultImage, listImages } = await import('../local/images.js');
  if (argv[0] === 'build') {
    const { values: b } = parseSimple('images', argv.slice(1), { name: { type: 'string' }, from: { type: 'string' }, json: { type: 'boolean' } });
    if (!b.name || !b.from) throw new UsageError(`images build needs --name NAME and --from DIR\n\n${SIMPLE_HELP.images}`);
    if (!/^[a-z0-9][a-z0-9._-]*$/.test(b.name as string)) throw new UsageError(`--name must be lower case letters, digits, '.', '_' or '-', starting with a letter or digit; got "${String(b.name)}"`);
    const from = resolve(b.from as string);
    if (!existsSync(from) || !statSync(from).isDirectory()) throw new UsageError(`--from ${from} is not a directory`);
    const img = await buildImageFromDir(stateDirOf(b['state-dir']), b.name as string, from);
    process.stdout.write(b.json ? JSON.stringify(img, null, 2) + '\n' : `${img.ref}\n`);
    return 0;
  }
  const { values: v } = parseSimple('images', argv, { json: { type: 'boolean' } });
  const stateDir = stateDirOf(v['state-dir']);
  await ensureDefaultImage(stateDir);
  const list = await listImages(stateDir);
  if (v.json) {
    process.stdout.write(JSON.stringify(list, null, 2) + '\n');
    return 0;
  }
  process.stdout.write(table([['NAME', 'REFERENCE', 'SIZE', 'CREATED'], ...list.map((i) => [i.name, i.ref, `${(i.bytes / 1048576).toFixed(1)} MiB`, i.createdAt])]));
  return 0;
}

async function workers(argv: string[]): Promise<number> {
  const { values: v } = parseSimple('workers', argv, { json: { type: 'boolean' } });
  setLogLevel('warn');
  const c = await connect(typeof v['state-dir'] === 'string' ? { 'state-dir': v['state-dir'] } : {});
  try {
    const list = await listAll((pageToken) => c.api.listWorkers({ pageSize: 500, pageToken }), (r) => r.workers);
    const rows = [];
    for (const w of list) {
      const worker = { atespace: w.metadata?.atespace ?? '', name: w.metadata?.name ?? '' };
      const assigned = await listAll((pageToken) => c.api.listWorkerActorAssignments({ worker, pageSize: 500, pageToken }), (r) => r.actorAssignments);
      rows.push({
        worker: worker.atespace ? `${worker.atespace}/${worker.name}` : worker.name,
        pool: w.workerPool ? `${w.workerNamespace ? `${w.workerNamespace}/` : ''}${w.workerPool}` : '',
        node: w.nodeName,
        state: workerStateToJSON(w.status?.state ?? 0).replace(/^WORKER_STATE_/, '').toLowerCase(),
        actors: assigned.map((a) => (a.actor ? `${a.actor.atespace}/${a.actor.name}` : '')).filter(Boolean),
        ips: w.ips,
      });
    }
    if (v.json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    else process.stdout.write(table([['WORKER', 'POOL', 'NODE', 'STATE', 'ACTOR'], ...rows.map((r) => [r.worker, r.pool || '-', r.node || '-', r.state, r.actors.join(',') || '-'])]));
    return 0;
  } finally {
    c.close();
  }
}

async function doctor(argv: string[]): Promise<number> {
  const { values: v } = parseSimple('doctor', argv, { json: { type: 'boolean' } });
  const { runDoctor } = await import('../local/doctor.js');
  const results = await runDoctor({ stateDir: stateDirOf(v['state-dir']) });
  if (v.json) process.stdout.write(JSON.stringify(results, null, 2) + '\n');
  else
    for (const r of results) {
      process.stdout.write(`${r.ok ? 'ok  ' : 'FAIL'}  ${r.check}: ${r.detail}\n`);
      if (!r.ok && r.remedy) process.stdout.write(`      remedy: ${r.remedy}\n`);
    }
  return results.every((r) => r.ok) ? 0 : 1;
}
