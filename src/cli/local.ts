// `substrate-driver local ...`: run and inspect the embedded local Substrate.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { Catalog } from '../local/catalog.js';
import { defaultStateDir, defaultWorkers, kubeAccessOf, readLocalJson, startLocalSubstrate } from '../local/index.js';
import { buildImageFromDir, ensureDefaultImage, listImages } from '../local/images.js';
import { runDoctor } from '../local/doctor.js';
import { parseManifests } from '../template/manifests.js';
import { setLogLevel } from '../common/log.js';
import { runUntilStopped } from '../common/lifecycle.js';
import { parseQuantity } from '../common/quantity.js';

const HELP: Record<string, string> = {
  '': `Usage: substrate-driver local <command> [options]

Commands:
  serve     run the local Substrate (ateapi.Control, template controller, router) in the foreground
  apply     apply Namespace, WorkerPool, ActorTemplate and Secret manifests (kubectl-style YAML)
  images    list the root-filesystem images actors can use, with their pinned references
  workers   list worker slots with their state, actor and sandbox process id
  doctor    check this machine (runsc, kernel features, permissions) and print a remedy for each failure

Every command takes --state-dir DIR (default $XDG_STATE_HOME/openshell-driver-substrate, env
OPENSHELL_SUBSTRATE_STATE_DIR) and finds a running instance through <state-dir>/local.json.
`,
  serve: `Usage: substrate-driver local serve [options]

  --state-dir DIR        state directory (catalog, snapshots, images, logs)
  --listen ADDR          ateapi.Control address: unix:/abs/path or host:port (default unix:<state-dir>/ateapi.sock,
                         0600, no token). On TCP bearer-JWT auth is required even on loopback, and TLS off loopback
  --router-listen H:P    actor router address (default 127.0.0.1:8000; port 0 picks a free one)
  --router-allow-remote  let the router listen on a non-loopback address (it authenticates no one)
  --enable-debug-clear   serve DebugClear, which deletes every actor (off: PERMISSION_DENIED)
  --workers N            slots of the built-in worker pool (default ${defaultWorkers()} on this machine: one per 512 MiB, 2..64)
  --nodes N              virtual nodes the workers are spread over (default 2; paused actors resume on their node)
  --actor-port N         actor port the router forwards to (default 80)
  --tls-cert FILE        server certificate (PEM) for the API
  --tls-key FILE         server private key (PEM)
  --jwt-public-key FILE  verify bearer JWTs with this SPKI PEM key (EdDSA, ES256 or RS256)
  --jwks FILE            verify bearer JWTs with this JWKS file
  --jwt-issuer ISS       required issuer of bearer JWTs
  --jwt-audience AUD     required audience of bearer JWTs (a cluster uses api.ate-system.svc)
  --egress PORTS         host loopback ports every actor may reach, comma-separated (default none)
  --actor-memory Q       memory limit of each actor, a quantity (default 1Gi; past it the sandbox is OOM-killed)
  --actor-cpu Q          CPU limit of each actor, a quantity (default 1 = one core; past it it is throttled)
  --actor-pids N         tasks (processes and threads) each actor may have (default 1024)
  --actor-tmp Q          size of each actor's /tmp (default 256Mi)
  --actor-log-max Q      each workload log is rotated past this size, one previous file kept (default 16Mi)
                         An ActorTemplate's spec.resources.limits (cpu, memory) take precedence
  --log-level LEVEL      debug|info|warn|error (default info)
`,
  apply: `Usage: substrate-driver local apply -f FILE [--wait] [--timeout SECONDS] [--state-dir DIR]

Applies multi-document YAML (kinds Namespace, Secret, WorkerPool, ActorTemplate) to the running local
Substrate, exactly what \`kubectl apply -f\` would send a cluster. -f - reads standard input. --wait waits
until every applied ActorTemplate is Ready (its golden snapshot taken), up to --timeout (default 120).
`,
  images: `Usage: substrate-driver local images [--json] [--state-dir DIR]
       substrate-driver local images build --name NAME --from DIR [--json] [--state-dir DIR]

Lists root-filesystem images. References are pinned: local/<name>@sha256:<digest of the image's content>.
The default image (local/node) holds this machine's Node.js runtime and its libraries; it is built on first use.
"build" makes an app image: the node image plus DIR's content at /app (run it with command
["/usr/bin/node", "/app/<your entry point>"]); it prints the pinned reference to put in an ActorTemplate.
`,
  workers: `Usage: substrate-driver local workers [--json] [--state-dir DIR]

Lists worker slots: pool, node, state (free, running, claimed), actor, and the runsc sandbox process id.
`,
  doctor: `Usage: substrate-driver local doctor [--json] [--state-dir DIR]

Checks runsc, kernel features and permissions; prints the exact remedy for each failure. Exit 1 if any fails.
`,
};

type Flags = Record<string, string | boolean | undefined>;

function parse(sub: string, argv: string[], options: ParseArgsConfig['options']): { values: Flags } {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' }, 'state-dir': { type: 'string' } }, allowPositionals: false, strict: true }) as { values: Flags };
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${HELP[sub]}`);
  }
}

class UsageError extends Error {}

function stateDirOf(v: unknown): string {
  return resolve((v as string | undefined) ?? process.env.OPENSHELL_SUBSTRATE_STATE_DIR ?? defaultStateDir());
}

function intFlag(name: string, v: unknown, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${String(v)}"`);
  return n;
}

/** A quantity flag (512Mi, 1.5, 250m) at least `min`; cpu is returned in millicores (with `scale` 1000). */
function quantityFlag(name: string, v: unknown, min: number, scale = 1): number | undefined {
  if (v === undefined) return undefined;
  const q = parseQuantity(String(v));
  if (q === undefined || q < min) throw new UsageError(`--${name} must be a quantity of at least ${min} (like 512Mi, 2Gi, 500m or 2), got "${String(v)}"`);
  return Math.round(q * scale);
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (!sub || sub === '--help' || sub === '-h' || sub === 'help') {
      process.stdout.write(HELP['']!);
      return sub ? 0 : 2;
    }
    if (!(sub in HELP)) throw new UsageError(`unknown command "local ${sub}"\n\n${HELP['']}`);
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(HELP[sub]!);
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
    if (e instanceof UsageError) {
      process.stderr.write(`substrate-driver local: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`substrate-driver local ${sub}: ${(e as Error).message}\n`);
    return 1;
  }
}

async function serve(argv: string[]): Promise<number> {
  const { values: v } = parse('serve', argv, {
    listen: { type: 'string' },
    'router-listen': { type: 'string' },
    workers: { type: 'string' },
    nodes: { type: 'string' },
    'actor-port': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'jwt-public-key': { type: 'string' },
    jwks: { type: 'string' },
    'jwt-issuer': { type: 'string' },
    'jwt-audience': { type: 'string' },
    egress: { type: 'string' },
    'log-level': { type: 'string' },
    'router-allow-remote': { type: 'boolean' },
    'actor-memory': { type: 'string' },
    'actor-cpu': { type: 'string' },
    'actor-pids': { type: 'string' },
    'actor-tmp': { type: 'string' },
    'actor-log-max': { type: 'string' },
    'enable-debug-clear': { type: 'boolean' },
  });
  if (v['log-level']) {
    if (!['debug', 'info', 'warn', 'error'].includes(v['log-level'] as string)) throw new UsageError(`--log-level must be debug, info, warn or error`);
    setLogLevel(v['log-level'] as 'info');
  }
  if (!!v['tls-cert'] !== !!v['tls-key']) throw new UsageError('--tls-cert and --tls-key go together: give both or neither');
  const jwtKey = (v['jwt-public-key'] as string | undefined) ?? (v.jwks as string | undefined);
  if (jwtKey && (!v['jwt-issuer'] || !v['jwt-audience'])) throw new UsageError('bearer-JWT auth needs --jwt-issuer and --jwt-audience');
  if (v['jwt-public-key'] && v.jwks) throw new UsageError('give --jwt-public-key or --jwks, not both');
  const egress = v.egress
    ? (v.egress as string).split(',').map((p) => ({ host: '127.0.0.1' as const, port: intFlag('egress', p.trim(), 1, 65535)! }))
    : undefined;
  const stateDir = stateDirOf(v['state-dir']);
  const h = await startLocalSubstrate({
    stateDir,
    listen: v.listen as string | undefined,
    routerListen: v['router-listen'] as string | undefined,
    workers: intFlag('workers', v.workers, 1, 1024),
    nodes: intFlag('nodes', v.nodes, 1, 64),
    actorPort: intFlag('actor-port', v['actor-port'], 1, 65535),
    tls: v['tls-cert'] ? { certPath: v['tls-cert'] as string, keyPath: v['tls-key'] as string } : undefined,
    auth: jwtKey
      ? {
          publicKeyPath: v['jwt-public-key'] as string | undefined,
          jwksPath: v.jwks as string | undefined,
          issuer: v['jwt-issuer'] as string,
          audience: v['jwt-audience'] as string,
        }
      : undefined,
    egress,
    routerAllowRemote: v['router-allow-remote'] === true,
    limits: {
      memoryBytes: quantityFlag('actor-memory', v['actor-memory'], 16 * 1024 * 1024),
      cpuMillis: quantityFlag('actor-cpu', v['actor-cpu'], 0.01, 1000),
      pids: intFlag('actor-pids', v['actor-pids'], 8, 1_000_000),
      tmpBytes: quantityFlag('actor-tmp', v['actor-tmp'], 1024 * 1024),
      logBytes: quantityFlag('actor-log-max', v['actor-log-max'], 64 * 1024),
    },
    enableDebugClear: v['enable-debug-clear'] === true,
  });
  process.stdout.write(
    `local Substrate running (pid ${process.pid})\n  api:    ${h.apiEndpoint}${h.apiTls ? ' (TLS)' : ''}\n  router: ${h.routerUrl}\n  kube:   ${h.kube.url} (bearer token in ${join(h.stateDir, 'kube.token')})\n  state:  ${h.stateDir}\n`,
  );
  return runUntilStopped(() => h.stop(), { what: 'local Substrate (suspending running actors)' });
}

function requireRunning(stateDir: string) {
  const j = readLocalJson(stateDir);
  if (!j) throw new Error(`no local Substrate runs for ${stateDir}; start one with: substrate-driver local serve --state-dir ${stateDir}`);
  return j;
}

async function apply(argv: string[]): Promise<number> {
  const { values: v } = parse('apply', argv, { file: { type: 'string', short: 'f' }, wait: { type: 'boolean' }, timeout: { type: 'string' } });
  if (!v.file) throw new UsageError(`-f FILE is required\n\n${HELP.apply}`);
  const timeout = intFlag('timeout', v.timeout ?? '120', 1, 3600)!;
  const text = v.file === '-' ? readFileSync(0, 'utf8') : readFileSync(v.file as string, 'utf8');
  const objs = parseManifests(text);
  const j = requireRunning(stateDirOf(v['state-dir']));
  const kube = kubeAccessOf(j);
  const auth = { authorization: `Bearer ${kube.token}` };
  const templates: Array<{ ns: string; name: string }> = [];
  for (const o of objs as Array<{ apiVersion: string; kind: string; metadata: { name: string; namespace?: string } }>) {
    const { path, plural } = resourcePath(o);
    const res = await fetch(`${kube.url}${path}?fieldManager=substrate-driver-local&force=true`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/apply-patch+yaml', ...auth },
      body: JSON.stringify(o),
    });
    const body = (await res.json().catch(() => ({}))) as { message?: string };
    if (!res.ok) throw new Error(`${o.kind} ${o.metadata.name}: ${body.message ?? `HTTP ${res.status}`}`);
    process.stdout.write(`${plural}/${o.metadata.name} applied\n`);
    if (o.kind === 'ActorTemplate') templates.push({ ns: o.metadata.namespace ?? 'default', name: o.metadata.name });
  }
  if (v.wait) {
    const deadline = Date.now() + timeout * 1000;
    for (const t of templates) {
      let last = '';
      for (;;) {
        const r = await fetch(`${kube.url}/apis/ate.dev/v1alpha1/namespaces/${t.ns}/actortemplates/${t.name}`, { headers: auth });
        const o = (await r.json()) as { status?: { phase?: string; conditions?: Array<{ message?: string }> } };
        const phase = o.status?.phase ?? '';
        if (phase === 'Ready') break;
        const msg = `actortemplate.ate.dev/${t.name}: phase ${phase || '(new)'} ${o.status?.conditions?.[0]?.message ?? ''}`.trim();
        if (msg !== last) process.stderr.write(msg + '\n');
        last = msg;
        if (Date.now() > deadline) throw new Error(`actortemplate.ate.dev/${t.name} not Ready after ${timeout}s (${last})`);
        await new Promise((r) => setTimeout(r, 250));
      }
      process.stdout.write(`actortemplate.ate.dev/${t.name} ready\n`);
    }
  }
  return 0;
}

function resourcePath(o: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } }): { path: string; plural: string } {
  const ns = encodeURIComponent(o.metadata.namespace ?? 'default');
  const name = encodeURIComponent(o.metadata.name);
  switch (o.kind) {
    case 'Namespace':
      return { path: `/api/v1/namespaces/${name}`, plural: 'namespace' };
    case 'Secret':
      return { path: `/api/v1/namespaces/${ns}/secrets/${name}`, plural: 'secret' };
    case 'WorkerPool':
      return { path: `/apis/ate.dev/v1alpha1/namespaces/${ns}/workerpools/${name}`, plural: 'workerpool.ate.dev' };
    case 'ActorTemplate':
      return { path: `/apis/ate.dev/v1alpha1/namespaces/${ns}/actortemplates/${name}`, plural: 'actortemplate.ate.dev' };
    default:
      throw new Error(`unsupported kind ${o.kind}`);
  }
}

async function images(argv: string[]): Promise<number> {
  if (argv[0] === 'build') {
    const { values: b } = parse('images', argv.slice(1), { name: { type: 'string' }, from: { type: 'string' }, json: { type: 'boolean' } });
    if (!b.name || !b.from) throw new UsageError(`images build needs --name NAME and --from DIR\n\n${HELP.images}`);
    if (!/^[a-z0-9][a-z0-9._-]*$/.test(b.name as string)) throw new UsageError(`--name must be lower case letters, digits, '.', '_' or '-', starting with a letter or digit; got "${String(b.name)}"`);
    const from = resolve(b.from as string);
    if (!existsSync(from) || !statSync(from).isDirectory()) throw new UsageError(`--from ${from} is not a directory`);
    const img = await buildImageFromDir(stateDirOf(b['state-dir']), b.name as string, from);
    process.stdout.write(b.json ? JSON.stringify(img, null, 2) + '\n' : `${img.ref}\n`);
    return 0;
  }
  const { values: v } = parse('images', argv, { json: { type: 'boolean' } });
  const stateDir = stateDirOf(v['state-dir']);
  await ensureDefaultImage(stateDir);
  const list = await listImages(stateDir);
  if (v.json) {
    process.stdout.write(JSON.stringify(list, null, 2) + '\n');
    return 0;
  }
  process.stdout.write(
    table([
      ['NAME', 'REFERENCE', 'SIZE', 'CREATED'],
      ...list.map((i) => [i.name, i.ref, `${(i.bytes / 1048576).toFixed(1)} MiB`, i.createdAt]),
    ]),
  );
  return 0;
}

async function workers(argv: string[]): Promise<number> {
  const { values: v } = parse('workers', argv, { json: { type: 'boolean' } });
  const stateDir = stateDirOf(v['state-dir']);
  const db = join(stateDir, 'catalog.db');
  if (!existsSync(db)) throw new Error(`no catalog in ${stateDir}; start a local Substrate with: substrate-driver local serve --state-dir ${stateDir}`);
  const running = readLocalJson(stateDir);
  const cat = new Catalog(db, { readonly: true });
  try {
    const rows = cat.listWorkers().map((w) => {
      const alive = !!running && w.pid > 0 && pidAlive(w.pid);
      return {
        worker: `${w.pool}-${w.idx}`,
        pool: `${w.poolNamespace}/${w.pool}`,
        node: w.node,
        state: alive ? 'running' : w.actorName ? (w.pid > 0 ? 'dead' : 'claimed') : 'free',
        actor: w.actorName ? `${w.actorAtespace}/${w.actorName}` : '',
        pid: alive ? w.pid : 0,
        sandbox_id: alive ? w.sandboxId : '',
        ip: w.ip,
      };
    });
    if (v.json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    else
      process.stdout.write(
        table([['WORKER', 'POOL', 'NODE', 'STATE', 'ACTOR', 'PID'], ...rows.map((r) => [r.worker, r.pool, r.node, r.state, r.actor || '-', r.pid ? String(r.pid) : '-'])]),
      );
  } finally {
    cat.close();
  }
  return 0;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function doctor(argv: string[]): Promise<number> {
  const { values: v } = parse('doctor', argv, { json: { type: 'boolean' } });
  const results = await runDoctor({ stateDir: stateDirOf(v['state-dir']) });
  if (v.json) process.stdout.write(JSON.stringify(results, null, 2) + '\n');
  else
    for (const r of results) {
      process.stdout.write(`${r.ok ? 'ok  ' : 'FAIL'}  ${r.check}: ${r.detail}\n`);
      if (!r.ok && r.remedy) process.stdout.write(`      remedy: ${r.remedy}\n`);
    }
  return results.every((r) => r.ok) ? 0 : 1;
}
