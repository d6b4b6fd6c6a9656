// The local Substrate: Substrate v0.4's ateapi.Control on one machine, backed by real gVisor. Composition
// only: each responsibility lives in its own module (actors: the state machine; workers: slots, pools and
// placement; snapshots: the snapshot store; templates: ActorTemplates, SandboxConfigs and the golden flow;
// tags; atespaces; egress: per-actor egress policies; server: the gRPC edge with strict decoding and
// authentication; router: ate-target-actor routing), joined through one in-process ControlApi.
import { chmodSync, existsSync, lstatSync, mkdirSync, statSync, readFileSync, renameSync, rmSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { homedir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { logger } from '../common/log.js';
import { createVerifier, type JwtAuthOptions } from './auth.js';
import { acquireInstanceLock, checkStateDirPrivate } from './instance-lock.js';
import { GOLDEN_ATESPACE, type ControlApi } from './api.js';
import { Actors, type ActorLimits } from './actors.js';
import { Workers } from './workers.js';
import { Atespaces } from './atespaces.js';
import { Templates, SandboxConfigs, localImageResolver } from './templates.js';
import { Tags } from './tags.js';
import { EgressPolicies } from './egress.js';
import { SnapshotStore } from './snapshots.js';
import { serveControlV4, splitHostPort, type ServeTls } from './server.js';
import { startRouter } from './router.js';
import { createRuntime } from './runtime/index.js';
import { instanceLimits, resourcesOf } from './workload.js';
import { ensureDefaultImage, resolveImage } from './images.js';
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
  tls?: ServeTls;
  auth?: JwtAuthOptions;
  /** TEST/DEV ONLY: a loopback TCP listen address served without authentication. */
  allowUnauthenticatedLoopback?: boolean;
  /** Host loopback ports every actor may reach, on top of its egress policy. */
  egress?: EgressRule[];
  /** Worker slots across all pools (default MAX_LOCAL_WORKERS, 1024). */
  maxWorkers?: number;
  /** Per-actor limits (memory, cpu, tasks, /tmp, log); defaults in DEFAULT_ACTOR_LIMITS. */
  limits?: Partial<ActorLimits>;
  /** Let the router listen on a non-loopback address (it has no authentication of its own). */
  routerAllowRemote?: boolean;
  /** Golden-snapshot warm-up when not every container has a wakeup probe (upstream: 20 s). */
  goldenWarmupMs?: number;
  /** Template reconcile interval (upstream --template-resync-interval: 20 s). */
  templateResyncMs?: number;
}

export interface LocalSubstrateHandle {
  /** grpc-js target of the v0.4 ateapi: 'unix:/abs/path' or 'host:port' */
  apiEndpoint: string;
  apiTls: boolean;
  /** The instance's owner-only Unix socket (always served; the admin service lives only there). */
  socketPath: string;
  routerUrl: string;
  /** Random per start: with the pid, names this instance in local.json. */
  nonce: string;
  stateDir: string;
  /** The in-process Control API (what the gRPC server serves). */
  api: ControlApi;
  actors: Actors;
  templates: Templates;
  workers: Workers;
  stop(): Promise<void>;
}

export interface LocalJson {
  pid: number;
  /** Random per start: a restarted instance, or a reused pid, never passes for the one a client knew. */
  nonce: string;
  api_endpoint: string;
  api_tls: boolean;
  /** The owner-only Unix socket of the instance (ateapi.Control and the admin service, no token). */
  socket_path: string;
  router_url: string;
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
    if (resolve(j.socket_path ?? '') !== join(resolve(stateDir), 'ateapi.sock')) {
      log.warn('ignoring local.json', { file, why: 'socket_path is not the ateapi.sock of its state directory' });
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
  const phases: Record<string, number> = {};
  let phaseStart = performance.now();
  const phase = (name: string) => {
    phases[name] = Math.round(performance.now() - phaseStart);
    phaseStart = performance.now();
  };
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  if (checkStateDirPrivate(stateDir) === 'tightened') log.info('state directory was readable by others; made it 0700', { stateDir });
  const lock = acquireInstanceLock(stateDir);
  let routerListen: { host: string; port: number };
  let verifier: Awaited<ReturnType<typeof createVerifier>> | undefined;
  let db: Database.Database;
  try {
    routerListen = splitHostPort(opts.routerListen ?? '127.0.0.1:8000');
    verifier = opts.auth ? await createVerifier(opts.auth) : undefined;
    db = openStateDb(join(stateDir, 'substrate.db'));
  } catch (e) {
    lock.release();
    throw e;
  }
  const cleanups: Array<() => Promise<void> | void> = [() => lock.release(), () => db.close()];
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
    // Sandboxes still running from a previous run of this instance (its process was killed) are adopted, not
    // killed: their actors stay RUNNING with their memory.
    const runtime = createRuntime({ stateDir, adoptLeftovers: true });
    await ensureDefaultImage(stateDir);
    phase('default image');
    const limits = instanceLimits(opts.limits);
    const snapshots = new SnapshotStore(stateDir);
    // The facade is filled once every module exists; modules call it only after start().
    const api = {} as ControlApi;
    const workers = new Workers({
      db,
      runtime,
      slotOf: (idx, node) => runtime.slot(idx, node),
      defaultReplicas: opts.workers ?? defaultWorkers(),
      maxWorkers: opts.maxWorkers,
      nodes: opts.nodes ?? 2,
      capacity: resourcesOf(limits),
    });
    const atespaces = new Atespaces(db, api);
    const sandboxConfigs = new SandboxConfigs(db);
    const templates = new Templates({
      db,
      api,
      sandboxConfigs,
      images: localImageResolver(stateDir),
      goldenWarmupMs: opts.goldenWarmupMs,
      resyncIntervalMs: opts.templateResyncMs,
    });
    const tags = new Tags({ db, api, snapshots });
    const egress = new EgressPolicies(db, api);
    const actors = new Actors({
      stateDir,
      db,
      runtime,
      snapshots,
      images: { resolve: (ref) => resolveImage(stateDir, ref) },
      api,
      workers,
      limits: opts.limits,
      egress: opts.egress,
      egressFor: (a, n) => egress.egressFor(a, n),
      platform: runtime.platform,
    });
    // What the modules call: the served API, except that the golden flow may create the reserved ate-golden
    // atespace, which clients may not.
    const served = composeApi({ actors, workers, atespaces, templates, tags, egress });
    Object.assign(api, served, {
      createAtespace: async (r: Parameters<ControlApi['createAtespace']>[0]) =>
        r.atespace?.metadata?.name === GOLDEN_ATESPACE ? atespaces.ensureGolden() : atespaces.createAtespace(r),
    });
    atespaces.ensureGolden();
    await actors.start();
    cleanups.push(() => actors.stop());
    phase('runtime and actors (adoption included)');
    templates.start();
    cleanups.push(() => templates.stop());
    const socketPath = join(stateDir, 'ateapi.sock');
    const unixServer = await serveControlV4(served, { address: `unix:${socketPath}`, admin: { workerPools: workers, sandboxConfigs } });
    cleanups.push(() => unixServer.close());
    let listener = unixServer;
    if (opts.listen && opts.listen !== `unix:${socketPath}`) {
      const tcp = await serveControlV4(served, {
        address: opts.listen,
        tls: opts.tls,
        verifier,
        allowUnauthenticatedLoopback: opts.allowUnauthenticatedLoopback,
      });
      cleanups.push(() => tcp.close());
      listener = tcp;
    }
    const router = await startRouter(
      {
        resume: (atespace, name) => actors.resumeForRequest(atespace, name),
        connect: async (atespace, name, port) => {
          const h = actors.sandboxOf(atespace, name);
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
      api_endpoint: listener.address,
      api_tls: listener.tls,
      socket_path: socketPath,
      router_url: router.url,
      state_dir: stateDir,
      started_at: new Date().toISOString(),
    };
    writeAtomic(join(stateDir, 'local.json'), JSON.stringify(info, null, 2) + '\n');
    cleanups.push(() => rmSync(join(stateDir, 'local.json'), { force: true }));
    phase('API and router listening');
    log.info('local Substrate ready', { api: info.api_endpoint, socket: socketPath, router: info.router_url, stateDir, phasesMs: phases });
    let stopped: Promise<void> | undefined;
    return {
      apiEndpoint: listener.address,
      apiTls: listener.tls,
      socketPath,
      routerUrl: router.url,
      nonce,
      stateDir,
      api,
      actors,
      templates,
      workers,
      stop: () => (stopped ??= stopAll()),
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}

/** The instance's SQLite state: WAL with synchronous=FULL, so a committed write survives kill -9 and power loss. */
function openStateDb(file: string): Database.Database {
  const db = new Database(file);
  chmodSync(file, 0o600);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  return db;
}

interface Modules {
  actors: Actors;
  workers: Workers;
  atespaces: Atespaces;
  templates: Templates;
  tags: Tags;
  egress: EgressPolicies;
}

/** Each RPC to the module that owns it. */
function composeApi(m: Modules): ControlApi {
  const { actors, workers, atespaces, templates, tags, egress } = m;
  return {
    getActor: (r) => actors.getActor(r),
    createActor: (r) => actors.createActor(r),
    updateActor: (r) => actors.updateActor(r),
    suspendActor: (r) => actors.suspendActor(r),
    pauseActor: (r) => actors.pauseActor(r),
    resumeActor: (r) => actors.resumeActor(r),
    revertActor: (r) => actors.revertActor(r),
    deleteActor: (r) => actors.deleteActor(r),
    listActors: (r) => actors.listActors(r),
    getActorEgressPolicy: (r) => egress.getActorEgressPolicy(r),
    createActorEgressPolicy: (r) => egress.createActorEgressPolicy(r),
    updateActorEgressPolicy: (r) => egress.updateActorEgressPolicy(r),
    deleteActorEgressPolicy: (r) => egress.deleteActorEgressPolicy(r),
    createTag: (r) => tags.createTag(r),
    getTag: (r) => tags.getTag(r),
    listTags: (r) => tags.listTags(r),
    updateTag: (r) => tags.updateTag(r),
    deleteTag: (r) => tags.deleteTag(r),
    listWorkers: (r) => workers.listWorkers(r),
    getWorker: (r) => workers.getWorker(r),
    drainWorker: (r) => workers.drainWorker(r),
    listWorkerActorAssignments: (r) => workers.listWorkerActorAssignments(r),
    createAtespace: (r) => atespaces.createAtespace(r),
    getAtespace: (r) => atespaces.getAtespace(r),
    listAtespaces: (r) => atespaces.listAtespaces(r),
    deleteAtespace: (r) => atespaces.deleteAtespace(r),
    createActorTemplate: (r) => templates.createActorTemplate(r),
    getActorTemplate: (r) => templates.getActorTemplate(r),
    listActorTemplates: (r) => templates.listActorTemplates(r),
    deleteActorTemplate: (r) => templates.deleteActorTemplate(r),
  };
}
