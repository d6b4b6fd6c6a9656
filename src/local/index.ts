// The local Substrate: ateapi.Control, the ActorTemplate controller, the Kubernetes-shaped resource API and
// the actor router on one machine, backed by real gVisor checkpoint/restore. Everything lives under one state
// directory; a running instance advertises itself in <state-dir>/local.json.
import { chmodSync, existsSync, lstatSync, mkdirSync, statSync, readFileSync, renameSync, rmSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { homedir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { logger } from '../common/log.js';
import { createVerifier, type JwtAuthOptions } from './auth.js';
import { Catalog } from './catalog.js';
import { acquireInstanceLock, checkStateDirPrivate } from './instance-lock.js';
import { LocalControl, type ActorLimits } from './control.js';
import { TemplateController } from './controller.js';
import { serveControl, splitHostPort } from './grpc.js';
import { apiResources } from './kube-resources.js';
import { startRouter } from './router.js';
import { createRuntime } from './runtime/index.js';
import { slotIp, workerNetns } from './runtime/paths.js';
import { ensureDefaultImage, resolveImage } from './images.js';
import { startApiServer } from '../template/apiserver.js';
import { sqliteStorage } from './storage.js';
import type { KubeAccess } from '../template/store.js';
import type { EgressRule } from './runtime/types.js';

const log = logger('local');

export interface LocalSubstrateOptions {
  stateDir: string;
  /** 'unix:/abs/path' | 'host:port'; default unix:<stateDir>/ateapi.sock */
  listen?: string;
  /** host:port of the router; default 127.0.0.1:8000 */
  routerListen?: string;
  /** Slots of the built-in default worker pool; default from the machine's memory. */
  workers?: number;
  /** Virtual nodes the workers are spread over; default 2. */
  nodes?: number;
  /** Actor port the router forwards to; default 80. */
  actorPort?: number;
  tls?: { certPath: string; keyPath: string };
  auth?: JwtAuthOptions;
  /** Host loopback ports every actor may reach. */
  egress?: EgressRule[];
  /** Worker slots across all pools (default MAX_LOCAL_WORKERS, 1024). */
  maxWorkers?: number;
  /** Per-actor limits (memory, cpu, tasks, /tmp, log); defaults in DEFAULT_ACTOR_LIMITS. */
  limits?: Partial<ActorLimits>;
  /** Serve DebugClear (wipes every actor); off unless asked for. */
  enableDebugClear?: boolean;
  /** Let the router listen on a non-loopback address (it has no authentication of its own). */
  routerAllowRemote?: boolean;
}

export interface LocalSubstrateHandle {
  /** grpc-js target: 'unix:/abs/path' or 'host:port' */
  apiEndpoint: string;
  apiTls: boolean;
  routerUrl: string;
  /** The Kubernetes-shaped resource API (templates, pools, secrets) on loopback, and its bearer token. */
  kube: KubeAccess;
  /** Random per start: with the pid, names this instance in local.json. */
  nonce: string;
  stateDir: string;
  control: LocalControl;
  stop(): Promise<void>;
}

export interface LocalJson {
  pid: number;
  /** Random per start: a restarted instance, or a reused pid, never passes for the one a client knew. */
  nonce: string;
  api_endpoint: string;
  api_tls: boolean;
  router_url: string;
  kube_url: string;
  /** The file (0600) holding the resource API's bearer token. */
  kube_token_path: string;
  state_dir: string;
  started_at: string;
}

export function defaultStateDir(): string {
  const base = process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  return join(base, 'openshell-driver-substrate');
}

/** One worker per 512 MiB of memory, between 2 and 64: a restored idle actor costs about 48 MiB. */
export function defaultWorkers(): number {
  return Math.max(2, Math.min(64, Math.floor(totalmem() / (512 * 1024 * 1024))));
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The running instance's local.json, or null when none runs (a stale file of a dead process reads as none). */
export function readLocalJson(stateDir: string): LocalJson | null {
  const file = join(stateDir, 'local.json');
  if (!existsSync(file)) return null;
  // local.json tells clients where to send the resource API's token: it is believed only when this user
  // owns it and its directory and nobody else can write either.
  const distrust = untrusted(stateDir, file);
  if (distrust) {
    log.warn('ignoring local.json', { file, why: distrust });
    return null;
  }
  try {
    const j = JSON.parse(readFileSync(file, 'utf8')) as LocalJson;
    if (resolve(j.kube_token_path ?? '') !== join(resolve(stateDir), 'kube.token')) {
      log.warn('ignoring local.json', { file, why: 'kube_token_path is not the kube.token of its state directory' });
      return null;
    }
    return pidAlive(j.pid) ? j : null;
  } catch {
    return null;
  }
}

function untrusted(dir: string, file: string): string | undefined {
  const uid = process.getuid?.();
  for (const [p, st] of [
    [dir, statSync(dir)],
    [file, lstatSync(file)],
  ] as const) {
    if (p === file && !st.isFile()) return 'not a regular file';
    if (uid !== undefined && st.uid !== uid) return `${p} belongs to uid ${st.uid}, not to this user`;
    if ((st.mode & 0o022) !== 0) return `${p} is writable by others`;
  }
  return undefined;
}

/** The resource API of a running instance: its URL and the token read from kube_token_path. */
export function kubeAccessOf(j: LocalJson): KubeAccess {
  return { url: j.kube_url, token: readFileSync(j.kube_token_path, 'utf8').trim() };
}

/** The resource API's bearer token: kept in <state-dir>/kube.token (0600) across restarts, made on first start. */
function kubeToken(stateDir: string): string {
  const file = join(stateDir, 'kube.token');
  try {
    const t = readFileSync(file, 'utf8').trim();
    if (t.length >= 32) {
      chmodSync(file, 0o600);
      return t;
    }
  } catch {
    // absent: made below
  }
  const t = randomBytes(32).toString('base64url');
  writeAtomic(file, `${t}\n`);
  return t;
}

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o600 });
  const fd = openSync(tmp, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, file);
}

export async function startLocalSubstrate(opts: LocalSubstrateOptions): Promise<LocalSubstrateHandle> {
  const stateDir = resolve(opts.stateDir);
  // How long each start-up phase took (in the ready log line): where a restart after a crash spends its time.
  const phases: Record<string, number> = {};
  let phaseStart = performance.now();
  const phase = (name: string) => {
    phases[name] = Math.round(performance.now() - phaseStart);
    phaseStart = performance.now();
  };
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  if (checkStateDirPrivate(stateDir) === 'tightened') log.info('state directory was readable by others; made it 0700', { stateDir });
  // Before anything of a running instance could be touched (its sockets, local.json, catalog).
  const lock = acquireInstanceLock(stateDir);
  let routerListen: { host: string; port: number };
  let verifier: Awaited<ReturnType<typeof createVerifier>> | undefined;
  let catalog: Catalog;
  try {
    routerListen = splitHostPort(opts.routerListen ?? '127.0.0.1:8000');
    verifier = opts.auth ? await createVerifier(opts.auth) : undefined;
    catalog = new Catalog(join(stateDir, 'catalog.db'));
  } catch (e) {
    lock.release();
    throw e;
  }
  const cleanups: Array<() => Promise<void> | void> = [() => lock.release(), () => catalog.close()];
  const stopAll = async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (e) {
        log.warn('shutdown step failed', { error: e });
      }
    }
  };
  try {
    // The resource API keeps its port across restarts when it can, so clients configured with its URL (a
    // running driver, a kubeconfig) keep working after the local Substrate restarts.
    const previousPort = Number(catalog.getMeta('kube_port') ?? 0);
    const token = kubeToken(stateDir);
    const api = await startApiServer({ storage: sqliteStorage(catalog), listen: { host: '127.0.0.1', port: previousPort }, token }).catch((e: NodeJS.ErrnoException) => {
      if (previousPort && e.code === 'EADDRINUSE') {
        log.warn('the resource API port of the previous run is taken; using a new one', { port: previousPort });
        return startApiServer({ storage: sqliteStorage(catalog), listen: { host: '127.0.0.1', port: 0 }, token });
      }
      throw e;
    });
    catalog.setMeta('kube_port', new URL(api.url).port);
    cleanups.push(() => api.close());
    // Namespaces every cluster with Substrate installed has.
    for (const ns of ['default', 'ate-system']) {
      if (!(await api.get('namespaces', undefined, ns))) {
        await api.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } } as never, 'substrate-local');
      }
    }
    phase('resource API');
    const resources = apiResources(api);
    // Sandboxes still running from a previous run of this instance (its process was killed) are adopted, not
    // killed: the control plane keeps their actors RUNNING with their memory.
    const runtime = createRuntime({ stateDir, adoptLeftovers: true });
    await ensureDefaultImage(stateDir);
    phase('default image');
    const control = new LocalControl({
      stateDir,
      catalog,
      runtime,
      resources,
      images: { resolve: (ref) => resolveImage(stateDir, ref) },
      workers: opts.workers ?? defaultWorkers(),
      nodes: opts.nodes ?? 2,
      slotOf: (row) => ({ index: row.idx, node: row.node, netns: workerNetns(runtime.tag, row.idx), ip: slotIp(row.idx) }),
      egress: opts.egress,
      limits: opts.limits,
      maxWorkers: opts.maxWorkers,
      platform: runtime.platform,
    });
    await control.start();
    phase('runtime and control plane (adoption included)');
    cleanups.push(() => control.stop());
    const controller = new TemplateController(control, resources);
    controller.start();
    cleanups.push(() => controller.stop());
    api.onChange((ev) => {
      if (ev.resource === 'actortemplates') controller.poke();
      if (ev.resource === 'workerpools') void control.syncPools().catch((e) => log.warn('worker pool sync failed', { error: e }));
    });
    const grpcServer = await serveControl(control, {
      address: opts.listen ?? `unix:${join(stateDir, 'ateapi.sock')}`,
      tls: opts.tls,
      verifier,
      enableDebugClear: opts.enableDebugClear,
    });
    cleanups.push(() => grpcServer.close());
    const router = await startRouter(
      {
        resume: (atespace, name) => control.resumeForRequest(atespace, name),
        connect: async (atespace, name, port) => {
          const h = control.sandboxOf(atespace, name);
          if (!h) throw new Error('actor is not running');
          return runtime.connect(h.worker, port);
        },
      },
      { listen: routerListen, actorPort: opts.actorPort, allowRemote: opts.routerAllowRemote },
    );
    cleanups.push(() => router.close());
    const nonce = randomBytes(16).toString('hex');
    const info: LocalJson = {
      pid: process.pid,
      nonce,
      api_endpoint: grpcServer.target,
      api_tls: grpcServer.tls,
      router_url: router.url,
      kube_url: api.url,
      kube_token_path: join(stateDir, 'kube.token'),
      state_dir: stateDir,
      started_at: new Date().toISOString(),
    };
    writeAtomic(join(stateDir, 'local.json'), JSON.stringify(info, null, 2) + '\n');
    cleanups.push(() => rmSync(join(stateDir, 'local.json'), { force: true }));
    phase('API and router listening');
    log.info('local Substrate ready', { api: info.api_endpoint, router: info.router_url, kube: info.kube_url, stateDir, phasesMs: phases });
    let stopped: Promise<void> | undefined;
    return {
      apiEndpoint: grpcServer.target,
      apiTls: grpcServer.tls,
      routerUrl: router.url,
      kube: { url: api.url, token },
      nonce,
      stateDir,
      control,
      stop: () => (stopped ??= stopAll()),
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
