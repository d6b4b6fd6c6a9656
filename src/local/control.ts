// The local Substrate's ateapi.Control: the pinned upstream semantics (shared/reference/ateapi.md §1) on real
// gVisor workers. Every handler validates its request the way upstream does, in upstream's order, and answers
// with upstream's codes and messages.
//
// Deliberate differences from upstream, each safer for a single machine:
// - The per-actor lock is keyed by (atespace, name), not by name only.
// - A failed start (restore or boot) releases the worker and returns the actor to the status it had
//   (SUSPENDED or PAUSED, snapshot unchanged) instead of leaving it RESUMING on a claimed worker; the error is
//   returned to the caller and the catalog stays consistent (the actor stays deletable).
// - Snapshot paths include the atespace, so same-named actors in two atespaces never share snapshots.
// - DeleteActor removes the actor's own snapshot files (upstream leaves them for a GC that does not exist).
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readSync, realpathSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { basename, dirname, isAbsolute, join, relative, resolve as resolvePath, sep } from 'node:path';
import {
  Actor,
  Actor_Status,
  type CreateActorRequest,
  type ListActorsRequest,
  type ListActorsResponse,
  type Selector,
  SnapshotType,
  type SnapshotInfo,
  type Worker,
} from '../gen/june/ateapi.js';
import { dnsLabelError, labelValueError, qualifiedNameError } from '../common/dns.js';
import {
  aborted,
  alreadyExists,
  ApiError,
  failedPrecondition,
  internal,
  invalid,
  notFound,
  unavailable,
} from '../common/errors.js';
import { logger } from '../common/log.js';
import { Catalog, type SnapshotRow, toWireWorker, type WorkerRow } from './catalog.js';
import { type PoolObj, type Resources, selectorMatches, type TemplateObj } from './resources.js';
import type { EgressRule, Runtime, SandboxHandle, WorkerSlot, WorkloadSpec } from './runtime/types.js';
import { parseQuantity } from '../common/quantity.js';

const log = logger('local.control');

export const GOLDEN_ATESPACE = 'ate-golden';
export const DEFAULT_POOL = { name: 'default', namespace: 'ate-system', labels: { 'ate.dev/worker-pool': 'default' } };
/** Upstream bounds the resume/suspend/pause workflow at 28 s; starts wait for readiness up to 30 s on atelet. */
const WORKFLOW_TIMEOUT_MS = 28_000;
const READY_TIMEOUT_MS = 30_000;

export interface ImageResolver {
  resolve(ref: string): Promise<{ rootfs: string; digest: string }>;
}

export interface ControlOptions {
  stateDir: string;
  catalog: Catalog;
  runtime: Runtime;
  resources: Resources;
  images: ImageResolver;
  /** Slots in the built-in default pool. */
  workers: number;
  /** Slots across all pools (default MAX_LOCAL_WORKERS). */
  maxWorkers?: number;
  /** Virtual nodes the slots are spread over (pause snapshots stay on their node). */
  nodes: number;
  /** Builds the runtime's view of a slot (namespace name and address). */
  slotOf(row: { idx: number; node: string }): WorkerSlot;
  /** Egress allowed to every actor, on top of what its template allows. */
  egress?: EgressRule[];
  /** Per-actor limits (defaults: DEFAULT_ACTOR_LIMITS), ceilings a template's cpu and memory limits may only lower. */
  limits?: Partial<ActorLimits>;
  platform?: string;
  runscVersion?: string;
}

/** What one actor may use. */
export interface ActorLimits {
  memoryBytes: number;
  cpuMillis: number;
  /** Tasks (processes and threads) inside the sandbox. */
  pids: number;
  /** Size of the workload's /tmp. */
  tmpBytes: number;
  /** The workload log is rotated (one previous file kept) once it passes this size. */
  logBytes: number;
}

/** Worker slots (network namespaces) one local Substrate holds across all its pools. */
export const MAX_LOCAL_WORKERS = 1024;

export const DEFAULT_ACTOR_LIMITS: Readonly<ActorLimits> = {
  memoryBytes: 1024 * 1024 * 1024,
  cpuMillis: 1000,
  pids: 1024,
  tmpBytes: 256 * 1024 * 1024,
  logBytes: 16 * 1024 * 1024,
};

interface Running {
  handle: SandboxHandle;
  atespace: string;
  name: string;
  /** Digest of the image the sandbox runs, recorded with its snapshots. */
  imageDigest: string;
}

function refOf(req: { actorRef?: { atespace: string; name: string } | undefined }): { atespace: string; name: string } {
  return { atespace: req.actorRef?.atespace ?? '', name: req.actorRef?.name ?? '' };
}

function statusName(s: Actor_Status): string {
  return Actor_Status[s] ?? `STATUS_${s}`;
}

function validateSelector(sel: Selector | undefined): void {
  const labels = sel?.matchLabels ?? {};
  const entries = Object.entries(labels);
  if (entries.length > 10) throw invalid(`worker_selector has ${entries.length} match_labels entries, exceeding the limit of 10`);
  for (const [k, v] of entries) {
    const ke = qualifiedNameError(k);
    if (ke) throw invalid(`invalid worker_selector label key "${k}": ${ke}`);
    const ve = labelValueError(v);
    if (ve) throw invalid(`invalid worker_selector label value "${v}" for key "${k}": ${ve}`);
  }
}

function checkLabel(what: 'actor_id' | 'atespace', v: string): void {
  const e = dnsLabelError(what, v);
  if (e) throw invalid(e);
}

/** Removes what an interrupted checkpoint left next to its destination (`<dir>.tmp-*`). */
function removePartialSnapshots(dir: string): void {
  const parent = dirname(dir);
  if (!existsSync(parent)) return;
  for (const e of readdirSync(parent)) {
    if (e.startsWith(`${basename(dir)}.tmp-`)) rmSync(join(parent, e), { recursive: true, force: true });
  }
}

function snapshotId(name: string): string {
  return `${new Date().toISOString().replace(/[:.]/g, '-')}-${randomBytes(4).toString('hex')}`;
}

export class LocalControl {
  private readonly catalog: Catalog;
  private readonly runtime: Runtime;
  private readonly locks = new Set<string>();
  /** Live sandboxes by worker index; rebuilt at start from the sandboxes the runtime adopted (see reconcile). */
  private readonly running = new Map<number, Running>();
  private monitor: NodeJS.Timeout | undefined;
  private closing = false;
  /** Slots whose namespace this run has prepared. */
  private readonly prepared = new Set<number>();
  /** Where an actor's sandbox last died: its next resume goes elsewhere when another worker is free. */
  private readonly diedOn = new Map<string, number>();
  /** Listeners told about every actor write (the template controller, the router's caches, tests). */
  private readonly listeners = new Set<(a: Actor | { deleted: { atespace: string; name: string } }) => void>();

  constructor(private readonly opts: ControlOptions) {
    this.catalog = opts.catalog;
    this.runtime = opts.runtime;
  }

  onActorChange(fn: (a: Actor | { deleted: { atespace: string; name: string } }) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(a: Actor | { deleted: { atespace: string; name: string } }): void {
    for (const l of this.listeners) {
      try {
        l(a);
      } catch (e) {
        log.warn('actor listener failed', { error: e });
      }
    }
  }

  // ------------------------------------------------------------------ start-up, shutdown, worker death

  /** Creates worker slots for every pool, releases what a crashed run left behind, starts the death monitor. */
  async start(): Promise<void> {
    await this.runtime.init();
    await this.syncPools();
    const resumeNow = await this.reconcileAfterCrash();
    this.monitor = setInterval(() => void this.checkWorkers(), 500);
    this.monitor.unref();
    // Actors that were running when the previous run died, but whose sandbox died with it, come back from
    // their last snapshot without anyone asking (in the background: serving does not wait for them).
    for (const r of resumeNow) {
      void this.resumeActor({ actorRef: r }).then(
        () => log.info('resumed actor that was running when the previous run stopped', { actor: `${r.atespace}/${r.name}` }),
        (e: unknown) => log.warn('could not resume actor that was running when the previous run stopped; it resumes on demand', { actor: `${r.atespace}/${r.name}`, error: e }),
      );
    }
  }

  async stop(): Promise<void> {
    this.closing = true;
    if (this.monitor) clearInterval(this.monitor);
    // Let workflows already running finish (each is bounded), so nothing is cut off half-way.
    for (let i = 0; i < 600 && this.locks.size > 0; i++) await new Promise((r) => setTimeout(r, 50));
    // A clean stop keeps every actor: running ones are suspended first, so nothing is lost.
    for (const [idx, r] of [...this.running.entries()]) {
      // Held like a workflow's lock, so a death-monitor tick still in flight cannot release it mid-suspend.
      const key = this.lockKey(r.atespace, r.name);
      const held = this.locks.has(key);
      let failed: unknown;
      if (!held) this.locks.add(key);
      try {
        await this.suspendRunning(r.atespace, r.name, 'external');
      } catch (e) {
        failed = e;
      } finally {
        if (!held) this.locks.delete(key);
      }
      if (failed !== undefined) {
        log.warn('could not suspend actor at shutdown; it falls back to its last snapshot', { actor: `${r.atespace}/${r.name}`, error: failed });
        await this.releaseDeadWorker(idx);
      }
    }
    await this.runtime.shutdown();
  }

  /** Pools = the built-in default pool plus every applied WorkerPool; each gets `replicas` slots. */
  async syncPools(): Promise<void> {
    const pools = await this.pools();
    const rows = this.catalog.listWorkers();
    let next = rows.reduce((m, r) => Math.max(m, r.idx + 1), 0);
    let total = rows.length;
    for (const p of pools) {
      const mine = rows.filter((r) => r.pool === p.metadata.name && r.poolNamespace === p.metadata.namespace);
      // Each slot is a network namespace on this machine: the pools together get at most MAX_LOCAL_WORKERS.
      const cap = this.opts.maxWorkers ?? MAX_LOCAL_WORKERS;
      const room = cap - total;
      const want = Math.min(p.spec.replicas, mine.length + Math.max(0, room));
      if (want < p.spec.replicas) {
        log.warn('worker pool asks for more slots than the local Substrate holds; it gets what fits', {
          pool: `${p.metadata.namespace}/${p.metadata.name}`,
          replicas: p.spec.replicas,
          granted: want,
          limit: cap,
        });
      }
      total += Math.max(0, want - mine.length);
      for (let i = mine.length; i < want; i++) {
        const idx = next++;
        const node = `local-node-${idx % Math.max(1, this.opts.nodes)}`;
        const slot = this.opts.slotOf({ idx, node });
        this.catalog.upsertWorkerSlot({ idx, pool: p.metadata.name, poolNamespace: p.metadata.namespace, node, uid: randomUUID(), ip: slot.ip });
      }
      // Scale down only free slots; a bound slot goes when its actor leaves it.
      const extra = mine.length - p.spec.replicas;
      if (extra > 0) {
        const free = mine.filter((r) => !r.actorName).slice(-extra);
        for (const r of free) this.catalog.db.prepare('DELETE FROM workers WHERE idx = ?').run(r.idx);
      }
    }
    // Prepare new slots only: re-preparing a slot with a live sandbox would re-add its address on the hub
    // side and break the sandbox's connectivity. start() prepares every slot before anything runs.
    for (const r of this.catalog.listWorkers()) {
      if (!this.prepared.has(r.idx)) {
        await this.runtime.prepareWorker(this.opts.slotOf(r));
        this.prepared.add(r.idx);
      }
    }
  }

  private async pools(): Promise<PoolObj[]> {
    const applied = await this.opts.resources.listPools();
    const builtIn: PoolObj = {
      metadata: { name: DEFAULT_POOL.name, namespace: DEFAULT_POOL.namespace, labels: DEFAULT_POOL.labels },
      spec: { replicas: this.opts.workers, ateomImage: 'local', sandboxClass: 'gvisor' },
    };
    return [builtIn, ...applied.filter((p) => !(p.metadata.name === DEFAULT_POOL.name && p.metadata.namespace === DEFAULT_POOL.namespace))];
  }

  /**
   * After a crash of the previous run (its process killed, not the machine): a RUNNING actor whose sandbox
   * is still alive is adopted as it is, memory intact. Every other intermediate status is settled from what
   * is durably on disk (snapshot directories are renamed into place atomically, so one either exists whole
   * or not at all) and its sandbox released: the actor goes to SUSPENDED (or PAUSED) keeping its last
   * snapshot. Returns the actors that were running but lost their sandbox, for start() to resume.
   */
  private async reconcileAfterCrash(): Promise<Array<{ atespace: string; name: string }>> {
    const adopted = new Set<string>();
    for (const w of this.catalog.listWorkers()) {
      if (!w.sandboxId) continue;
      const a = w.actorName ? this.catalog.getActor(w.actorAtespace, w.actorName) : null;
      const live = this.runtime.adopted(w.sandboxId);
      if (a && a.status === Actor_Status.STATUS_RUNNING && live && live.handle.worker.index === w.idx) {
        this.running.set(w.idx, { handle: live.handle, atespace: a.atespace, name: a.actorId, imageDigest: live.imageDigest });
        this.prepared.add(w.idx);
        adopted.add(this.lockKey(a.atespace, a.actorId));
        log.info('adopted running actor left by a previous run', { actor: `${a.atespace}/${a.actorId}`, worker: w.idx, pid: live.handle.pid });
        continue;
      }
      await this.runtime.destroy(w.sandboxId).catch(() => undefined);
    }
    const resumeNow: Array<{ atespace: string; name: string }> = [];
    for (const a of this.catalog.allActors()) {
      if (adopted.has(this.lockKey(a.atespace, a.actorId))) continue;
      if (a.status === Actor_Status.STATUS_SUSPENDED || a.status === Actor_Status.STATUS_PAUSED) {
        // Settled, but a worker may still point at it (crash between the two writes of a transaction is
        // impossible; this covers catalogs written by older versions).
        continue;
      }
      const w = this.catalog.workerOfActor(a.atespace, a.actorId);
      let next: Actor = { ...a };
      if (a.status === Actor_Status.STATUS_SUSPENDING || a.status === Actor_Status.STATUS_PAUSING) {
        const pausing = a.status === Actor_Status.STATUS_PAUSING;
        const dir = a.inProgressSnapshot ? this.snapshotDir(pausing ? 'local' : 'external', a, a.inProgressSnapshot, w?.node ?? '') : '';
        if (dir) removePartialSnapshots(dir);
        if (dir && existsSync(join(dir, 'meta.json'))) {
          next.latestSnapshotInfo = this.snapshotInfo(pausing ? 'local' : 'external', a, a.inProgressSnapshot, w?.node ?? '');
          next.status = pausing ? Actor_Status.STATUS_PAUSED : Actor_Status.STATUS_SUSPENDED;
        } else {
          next.status = a.latestSnapshotInfo?.type === SnapshotType.SNAPSHOT_TYPE_LOCAL ? Actor_Status.STATUS_PAUSED : Actor_Status.STATUS_SUSPENDED;
        }
      } else {
        // RUNNING or RESUMING whose sandbox did not survive: fall back to the last snapshot, and resume it
        // once started (it was running, or about to be).
        next.status = a.latestSnapshotInfo?.type === SnapshotType.SNAPSHOT_TYPE_LOCAL ? Actor_Status.STATUS_PAUSED : Actor_Status.STATUS_SUSPENDED;
        if (a.atespace !== GOLDEN_ATESPACE) resumeNow.push({ atespace: a.atespace, name: a.actorId });
      }
      next = this.clearPod({ ...next, inProgressSnapshot: '' });
      this.catalog.tx(() => {
        if (w) this.catalog.releaseWorker(w.idx);
        this.catalog.casActor(next, a.version);
      });
      log.info('released actor left by a previous run', { actor: `${a.atespace}/${a.actorId}`, from: statusName(a.status), to: statusName(next.status) });
    }
    for (const w of this.catalog.listWorkers()) if (w.actorName && !this.catalog.getActor(w.actorAtespace, w.actorName)) this.catalog.releaseWorker(w.idx);
    // Sandboxes the runtime adopted that no actor claims are leftovers.
    for (const s of await this.runtime.list()) {
      if (this.runtime.adopted(s.sandboxId) && ![...this.running.values()].some((r) => r.handle.sandboxId === s.sandboxId)) {
        await this.runtime.destroy(s.sandboxId).catch(() => undefined);
      }
    }
    return resumeNow;
  }

  /**
   * A workload log past its limit is rotated: its last `logBytes` kept as `<log>.1`, the log truncated (the
   * sandbox appends, so it writes on at the start). A workload flooding its log never fills the disk with it.
   */
  private rotateLogs(): void {
    const max = this.instanceLimits().logBytes;
    for (const r of this.running.values()) {
      const file = this.logFileOf(r.atespace, r.name);
      try {
        const size = statSync(file).size;
        if (size <= max) continue;
        const fd = openSync(file, 'r');
        try {
          const keep = Buffer.alloc(Math.min(max, size));
          const n = readSync(fd, keep, 0, keep.length, size - keep.length);
          writeFileSync(`${file}.1`, keep.subarray(0, n), { mode: 0o600 });
        } finally {
          closeSync(fd);
        }
        truncateSync(file, 0);
        log.info('rotated workload log', { actor: `${r.atespace}/${r.name}`, limitBytes: max });
      } catch {
        // no log yet, or it went away with its actor
      }
    }
  }

  private logFileOf(atespace: string, name: string): string {
    return join(this.opts.stateDir, 'logs', atespace, `${name}.log`);
  }

  /** Worker death: a sandbox whose process is gone sends its actor to SUSPENDED with its last snapshot. */
  private async checkWorkers(): Promise<void> {
    this.rotateLogs();
    for (const [idx, r] of [...this.running.entries()]) {
      if (this.locks.has(this.lockKey(r.atespace, r.name))) continue;
      if (!this.runtime.isAlive(r.handle)) {
        log.warn('worker sandbox died; actor falls back to its last snapshot', { actor: `${r.atespace}/${r.name}`, worker: idx, pid: r.handle.pid });
        await this.releaseDeadWorker(idx);
      }
    }
  }

  /**
   * Releases a worker whose sandbox died. It holds the actor's lock throughout (and does nothing when a
   * workflow holds it): a suspend or resume that started meanwhile would otherwise bind the worker again
   * between the teardown and the release, and the release would then cut the new binding loose.
   */
  private async releaseDeadWorker(idx: number): Promise<void> {
    const r = this.running.get(idx);
    const bound = this.catalog.getWorker(idx);
    const key = r ? this.lockKey(r.atespace, r.name) : bound?.actorName ? this.lockKey(bound.actorAtespace, bound.actorName) : undefined;
    if (key !== undefined) {
      if (this.locks.has(key)) return;
      this.locks.add(key);
    }
    try {
      await this.releaseDeadWorkerLocked(idx, r);
    } finally {
      if (key !== undefined) this.locks.delete(key);
    }
  }

  private async releaseDeadWorkerLocked(idx: number, r: Running | undefined): Promise<void> {
    if (r && this.running.get(idx) !== r) return; // released or replaced before the lock was ours
    this.running.delete(idx);
    if (r) await this.runtime.destroy(r.handle.sandboxId).catch(() => undefined);
    const w = this.catalog.getWorker(idx);
    if (!w || !w.actorName) return;
    const a = this.catalog.getActor(w.actorAtespace, w.actorName);
    this.diedOn.set(this.lockKey(w.actorAtespace, w.actorName), idx);
    this.catalog.tx(() => {
      this.catalog.releaseWorker(idx);
      // The slot comes back as a new worker (a replaced pod upstream): a new uid.
      this.catalog.db.prepare('UPDATE workers SET uid = ? WHERE idx = ?').run(randomUUID(), idx);
      if (a) {
        const next = this.clearPod({
          ...a,
          status: Actor_Status.STATUS_SUSPENDED,
          inProgressSnapshot: '',
        });
        const written = this.catalog.casActor(next, a.version);
        this.emit(written);
      }
    });
  }

  /**
   * The router's resume: if the actor's sandbox died and the monitor has not noticed yet, release it first,
   * so the request resumes the actor from its last snapshot instead of connecting to a dead sandbox.
   */
  async resumeForRequest(atespace: string, name: string): Promise<Actor> {
    for (const [idx, r] of this.running) {
      if (r.atespace === atespace && r.name === name && !this.runtime.isAlive(r.handle) && !this.locks.has(this.lockKey(atespace, name))) {
        await this.releaseDeadWorker(idx);
      }
    }
    return this.resumeActor({ actorRef: { atespace, name } });
  }

  /** Test and operator hook: the sandbox handle of a running actor. */
  sandboxOf(atespace: string, name: string): SandboxHandle | null {
    for (const r of this.running.values()) if (r.atespace === atespace && r.name === name) return r.handle;
    return null;
  }

  // ------------------------------------------------------------------ atespaces

  async createAtespace(name: string): Promise<{ name: string }> {
    if (!name) throw invalid('name is required');
    checkLabel('atespace', name);
    if (!this.catalog.createAtespace(name)) throw alreadyExists(`Atespace ${name} already exists`);
    return { name };
  }

  async getAtespace(name: string): Promise<{ name: string }> {
    if (!name) throw invalid('name is required');
    checkLabel('atespace', name);
    if (!this.catalog.atespaceExists(name)) throw notFound(`Atespace ${name} not found`);
    return { name };
  }

  async listAtespaces(): Promise<Array<{ name: string }>> {
    return this.catalog.listAtespaces().map((name) => ({ name }));
  }

  async deleteAtespace(name: string): Promise<void> {
    if (!name) throw invalid('name is required');
    checkLabel('atespace', name);
    this.catalog.tx(() => {
      if (!this.catalog.atespaceExists(name)) throw notFound(`Atespace ${name} not found`);
      if (this.catalog.atespaceHasActors(name)) throw failedPrecondition(`Atespace ${name} is not empty`);
      this.catalog.deleteAtespace(name);
    });
  }

  // ------------------------------------------------------------------ actors: create, get, update, delete, list

  async createActor(req: CreateActorRequest): Promise<Actor> {
    const { atespace, name } = refOf(req);
    if (!req.actorTemplateNamespace) throw invalid('actor_template_namespace is required');
    if (!req.actorTemplateName) throw invalid('actor_template_name is required');
    if (!name) throw invalid('actor_id is required');
    checkLabel('actor_id', name);
    if (!atespace) throw invalid('atespace is required');
    checkLabel('atespace', atespace);
    validateSelector(req.workerSelector);
    const tpl = await this.opts.resources.getTemplate(req.actorTemplateNamespace, req.actorTemplateName);
    if (!tpl) throw failedPrecondition(`ActorTemplate ${req.actorTemplateNamespace}/${req.actorTemplateName} not found`);
    if (!this.catalog.atespaceExists(atespace)) throw failedPrecondition(`Atespace ${atespace} not found`);
    const a: Actor = {
      actorId: name,
      version: 1,
      actorTemplateNamespace: req.actorTemplateNamespace,
      actorTemplateName: req.actorTemplateName,
      status: Actor_Status.STATUS_SUSPENDED,
      ateomPodNamespace: '',
      ateomPodName: '',
      ateomPodIp: '',
      inProgressSnapshot: '',
      ateomPodUid: '',
      latestSnapshotInfo: undefined,
      workerSelector: req.workerSelector && Object.keys(req.workerSelector.matchLabels).length ? req.workerSelector : undefined,
      workerPoolName: '',
      atespace,
    };
    if (!this.catalog.insertActor(a)) throw alreadyExists(`Actor ${name} already exists`);
    const stored = this.catalog.getActor(atespace, name)!;
    this.emit(stored);
    return stored;
  }

  private requireRef(req: { actorRef?: { atespace: string; name: string } | undefined }): { atespace: string; name: string } {
    const { atespace, name } = refOf(req);
    if (!name) throw invalid('id is required');
    if (!atespace) throw invalid('atespace is required');
    return { atespace, name };
  }

  private mustGet(atespace: string, name: string): Actor {
    const a = this.catalog.getActor(atespace, name);
    if (!a) throw notFound(`Actor ${name} not found`);
    return a;
  }

  async getActor(req: { actorRef?: { atespace: string; name: string } }): Promise<Actor> {
    const { atespace, name } = this.requireRef(req);
    return this.mustGet(atespace, name);
  }

  async updateActor(req: { actorRef?: { atespace: string; name: string }; workerSelector?: Selector }): Promise<Actor> {
    const { atespace, name } = refOf(req);
    if (!name) throw invalid('actor_id is required');
    if (!atespace) throw invalid('atespace is required');
    checkLabel('atespace', atespace);
    validateSelector(req.workerSelector);
    const a = this.mustGet(atespace, name);
    const sel = req.workerSelector && Object.keys(req.workerSelector.matchLabels).length ? req.workerSelector : undefined;
    // A lost compare-and-set throws VersionConflict: ABORTED "concurrent update conflict, please retry".
    const written = this.catalog.casActor({ ...a, workerSelector: sel }, a.version);
    this.emit(written);
    return written;
  }

  async deleteActor(req: { actorRef?: { atespace: string; name: string } }): Promise<void> {
    const { atespace, name } = refOf(req);
    if (!name) throw invalid('actor_id is required');
    checkLabel('actor_id', name);
    if (!atespace) throw invalid('atespace is required');
    if (this.locks.has(this.lockKey(atespace, name))) throw aborted('another operation is in progress for this actor');
    const a = this.catalog.getActor(atespace, name);
    if (!a) throw notFound(`Actor ${name} not found`);
    if (a.status !== Actor_Status.STATUS_SUSPENDED) throw failedPrecondition(`Actor ${name} is not suspended (status: ${statusName(a.status)})`);
    const res = this.catalog.deleteActor(atespace, name, Actor_Status.STATUS_SUSPENDED);
    if (res === 'missing') throw notFound(`Actor ${name} not found`);
    if (res === 'status') throw aborted('concurrent update conflict, please retry');
    for (const s of this.catalog.snapshotsOf(atespace, name)) {
      if (s.kind === 'golden') continue;
      rmSync(s.dir, { recursive: true, force: true });
      this.catalog.deleteSnapshot(s.id);
    }
    this.emit({ deleted: { atespace, name } });
  }

  async listActors(req: ListActorsRequest): Promise<ListActorsResponse> {
    if (req.atespace) checkLabel('atespace', req.atespace);
    if (req.pageSize < 0) throw invalid('page_size cannot be negative');
    if (req.pageSize > 1000) throw invalid(`page_size ${req.pageSize} exceeds maximum page size 1000`);
    const size = req.pageSize === 0 ? 1000 : req.pageSize;
    let after: [string, string] | null = null;
    if (req.pageToken) {
      try {
        const t = JSON.parse(Buffer.from(req.pageToken, 'base64').toString('utf8')) as { a?: unknown; n?: unknown };
        if (typeof t.a !== 'string' || typeof t.n !== 'string') throw new Error('malformed');
        after = [t.a, t.n];
      } catch {
        throw internal('internal server error: invalid page_token');
      }
    }
    const page = this.catalog.listActors(req.atespace, after, size + 1);
    const more = page.length > size;
    const actors = more ? page.slice(0, size) : page;
    const last = actors[actors.length - 1];
    const nextPageToken = more && last ? Buffer.from(JSON.stringify({ a: last.atespace, n: last.actorId })).toString('base64') : '';
    return { actors, nextPageToken };
  }

  async listWorkers(): Promise<Worker[]> {
    return this.catalog.listWorkers().map(toWireWorker);
  }

  /** Worker rows with the live sandbox pid, for `local workers`. */
  workerRows(): Array<WorkerRow & { state: 'free' | 'running' | 'claimed'; alive: boolean }> {
    return this.catalog.listWorkers().map((w) => {
      const r = this.running.get(w.idx);
      return {
        ...w,
        pid: r?.handle.pid ?? 0,
        sandboxId: r?.handle.sandboxId ?? '',
        state: r ? 'running' : w.actorName ? 'claimed' : 'free',
        alive: r ? this.runtime.isAlive(r.handle) : false,
      };
    });
  }

  async debugClear(): Promise<void> {
    for (const [idx, r] of [...this.running.entries()]) {
      await this.runtime.destroy(r.handle.sandboxId).catch(() => undefined);
      this.running.delete(idx);
    }
    this.catalog.clearAll();
  }

  // ------------------------------------------------------------------ resume, suspend, pause

  private lockKey(atespace: string, name: string): string {
    return `${atespace}/${name}`;
  }

  private async withLock<T>(atespace: string, name: string, fn: () => Promise<T>): Promise<T> {
    if (this.closing) throw unavailable('the local Substrate is shutting down; retry once it is back');
    const key = this.lockKey(atespace, name);
    if (this.locks.has(key)) throw aborted('another operation is in progress for this actor');
    this.locks.add(key);
    // The lock belongs to the workflow, not to the caller: a caller that stops waiting (deadline) gets its
    // error, but the actor stays locked until the workflow itself has finished, so no second workflow can
    // start on top of one still running.
    const work = (async () => fn())().finally(() => this.locks.delete(key));
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        work,
        new Promise<T>((_, reject) => {
          timer = setTimeout(() => reject(new ApiError(4, 'context deadline exceeded')), WORKFLOW_TIMEOUT_MS + 20_000);
        }),
      ]);
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  private async loadTemplate(a: Actor): Promise<TemplateObj> {
    const t = await this.opts.resources.getTemplate(a.actorTemplateNamespace, a.actorTemplateName);
    if (!t) throw internal(`internal server error: ActorTemplate ${a.actorTemplateNamespace}/${a.actorTemplateName} not found`);
    return t;
  }

  async resumeActor(req: { actorRef?: { atespace: string; name: string }; boot?: boolean }): Promise<Actor> {
    const { atespace, name } = this.requireRef(req);
    return this.withLock(atespace, name, async () => {
      const a = this.mustGet(atespace, name);
      const tpl = await this.loadTemplate(a);
      if (a.status === Actor_Status.STATUS_RUNNING) return a;
      const before = a.status;
      // AssignWorker: choosing a free worker and claiming it happen in one synchronous step (see assignWorker).
      const { worker: w, actor: claimed } = await this.assignWorker(a, tpl);
      let cur = claimed;
      this.emit(cur);
      // Start: restore from the actor's own snapshot, else the template's golden one, else boot.
      try {
        const { handle, imageDigest } = await this.startOn(w, cur, tpl, !!req.boot);
        this.running.set(w.idx, { handle, atespace, name, imageDigest });
      } catch (e) {
        const back = this.catalog.getActor(atespace, name);
        if (back) {
          this.catalog.tx(() => {
            this.catalog.releaseWorker(w.idx);
            const restored = this.catalog.casActor(this.clearPod({ ...back, status: before }), back.version);
            this.emit(restored);
          });
        }
        throw e;
      }
      const started = this.mustGet(atespace, name);
      const run = this.running.get(w.idx)!;
      cur = this.catalog.tx(() => {
        this.catalog.setWorkerSandbox(w.idx, run.handle.sandboxId, run.handle.pid);
        return this.catalog.casActor({ ...started, status: Actor_Status.STATUS_RUNNING }, started.version);
      });
      this.emit(cur);
      return cur;
    });
  }

  /**
   * Picks a worker for the actor and claims it. Everything after the one await (reading the pools) is
   * synchronous, so two resumes can never claim the same free worker.
   */
  private async assignWorker(a: Actor, tpl: TemplateObj): Promise<{ worker: WorkerRow; actor: Actor }> {
    const pools = await this.pools();
    const fresh = this.mustGet(a.atespace, a.actorId);
    const w = this.pickWorker(fresh, tpl, pools);
    const actor = this.catalog.tx(() => {
      this.catalog.bindWorker(w.idx, fresh);
      return this.catalog.casActor(
        {
          ...fresh,
          status: Actor_Status.STATUS_RESUMING,
          ateomPodNamespace: w.poolNamespace,
          ateomPodName: `${w.pool}-${w.idx}`,
          ateomPodIp: w.ip,
          ateomPodUid: w.uid,
          workerPoolName: w.pool,
        },
        fresh.version,
      );
    });
    return { worker: w, actor };
  }

  private pickWorker(a: Actor, tpl: TemplateObj, pools: PoolObj[]): WorkerRow {
    const existing = this.catalog.workerOfActor(a.atespace, a.actorId);
    const cls = tpl.spec.sandboxClass ?? 'gvisor';
    const eligible = pools.filter(
      (p) =>
        (p.spec.sandboxClass ?? 'gvisor') === cls &&
        selectorMatches(tpl.spec.workerSelector, p.metadata.labels ?? {}) &&
        selectorMatches({ matchLabels: a.workerSelector?.matchLabels ?? {} }, p.metadata.labels ?? {}),
    );
    if (eligible.length === 0) throw failedPrecondition("no worker pool matches the template's sandboxClass and the template/actor selectors");
    const inPool = (w: WorkerRow) => eligible.some((p) => p.metadata.name === w.pool && p.metadata.namespace === w.poolNamespace);
    if (existing) {
      if (inPool(existing)) return existing;
      this.catalog.releaseWorker(existing.idx);
    }
    const pinned =
      a.latestSnapshotInfo?.data?.$case === 'local' ? a.latestSnapshotInfo.data.value.nodeVmsWithLocalSnapshots : [];
    const free = this.catalog
      .listWorkers()
      .filter((w) => !w.actorName && inPool(w) && (pinned.length === 0 || pinned.includes(w.node)));
    if (free.length === 0) throw failedPrecondition('no free workers available');
    const died = this.diedOn.get(this.lockKey(a.atespace, a.actorId));
    const elsewhere = free.filter((w) => w.idx !== died);
    const pool = elsewhere.length > 0 ? elsewhere : free;
    this.diedOn.delete(this.lockKey(a.atespace, a.actorId));
    return pool[Math.floor(Math.random() * pool.length)]!;
  }

  private async workloadOf(tpl: TemplateObj): Promise<WorkloadSpec> {
    const containers = tpl.spec.containers;
    if (containers.length !== 1) {
      throw failedPrecondition(
        `ActorTemplate ${tpl.metadata.namespace}/${tpl.metadata.name} has ${containers.length} containers; the local Substrate runs exactly one container per actor`,
      );
    }
    const c = containers[0]!;
    if (!c.command || c.command.length === 0) {
      throw failedPrecondition(
        `container "${c.name}" has no command; local images have no default entrypoint, so set spec.containers[0].command`,
      );
    }
    const env: Record<string, string> = {};
    for (const e of c.env ?? []) {
      if (e.value !== undefined) env[e.name] = e.value;
      else if (e.valueFrom?.secretKeyRef) {
        const ref = e.valueFrom.secretKeyRef;
        const ns = tpl.metadata.namespace;
        const got = await this.opts.resources.getSecretValue(ns, ref.name, ref.key);
        if ('value' in got) env[e.name] = got.value;
        else if (!ref.optional) {
          throw failedPrecondition(
            got.found === 'secret-missing'
              ? `container "${c.name}" env "${e.name}" references missing secret ${ns}/${ref.name}`
              : `container "${c.name}" env "${e.name}" references missing key "${ref.key}" in secret ${ns}/${ref.name}`,
          );
        }
      }
    }
    let image: { rootfs: string; digest: string };
    try {
      image = await this.opts.images.resolve(c.image);
    } catch (e) {
      throw failedPrecondition(`container "${c.name}": ${(e as Error).message}`);
    }
    const egress: EgressRule[] = [
      ...(this.opts.egress ?? []),
      ...(tpl.spec.egress ?? []).map((r) => ({ host: '127.0.0.1' as const, port: r.port })),
    ];
    const limits = this.limitsOf(tpl);
    return {
      command: c.command,
      env,
      rootfs: image.rootfs,
      imageDigest: image.digest,
      egress,
      memoryLimitBytes: limits.memoryBytes,
      cpuMillis: limits.cpuMillis,
      pidsLimit: limits.pids,
      tmpBytes: limits.tmpBytes,
    };
  }

  /** DEFAULT_ACTOR_LIMITS with what this instance was configured with (unset keys keep the default). */
  private instanceLimits(): ActorLimits {
    const l: ActorLimits = { ...DEFAULT_ACTOR_LIMITS };
    for (const k of Object.keys(l) as Array<keyof ActorLimits>) {
      const v = this.opts.limits?.[k];
      if (v !== undefined) l[k] = v;
    }
    return l;
  }

  /**
   * The instance's limits, lowered by the template's own cpu and memory limits where it sets them. The
   * instance's limits are ceilings set by the operator: a template (or a gateway user through one) can ask
   * for less, never for more.
   */
  limitsOf(tpl: Pick<TemplateObj, 'spec'>): ActorLimits {
    const l = this.instanceLimits();
    for (const { name, quantity } of tpl.spec.resources?.limits ?? []) {
      const v = parseQuantity(quantity);
      if (v === undefined || v <= 0) continue; // validated on write; an old object keeps the defaults
      if (name === 'memory') l.memoryBytes = Math.min(l.memoryBytes, Math.max(16 * 1024 * 1024, Math.round(v)));
      if (name === 'cpu') l.cpuMillis = Math.min(l.cpuMillis, Math.max(10, Math.round(v * 1000)));
    }
    return l;
  }

  private async startOn(w: WorkerRow, a: Actor, tpl: TemplateObj, boot: boolean): Promise<{ handle: SandboxHandle; imageDigest: string }> {
    const spec = await this.workloadOf(tpl);
    const slot = this.opts.slotOf(w);
    const logFile = this.logFileOf(a.atespace, a.actorId);
    mkdirSync(dirname(logFile), { recursive: true, mode: 0o700 });
    let handle: SandboxHandle;
    const info = a.latestSnapshotInfo;
    if (info?.data?.$case === 'local') {
      const dir = this.trustedSnapshotDir(this.snapshotDir('local', a, info.data.value.snapshotPrefix, w.node));
      handle = await this.restoreOrExplain(slot, spec, dir, logFile, a);
    } else if (info?.data?.$case === 'external') {
      handle = await this.restoreOrExplain(slot, spec, this.uriToDir(info.data.value.snapshotUriPrefix), logFile, a);
    } else if (tpl.status?.goldenSnapshot && !boot) {
      handle = await this.restoreOrExplain(slot, spec, this.uriToDir(tpl.status.goldenSnapshot), logFile, a);
    } else {
      try {
        handle = await this.runtime.boot(slot, spec, logFile);
      } catch (e) {
        throw failedPrecondition(
          `starting actor ${a.atespace}/${a.actorId} (command ${JSON.stringify(spec.command)}) failed: ${(e as Error).message}`,
        );
      }
    }
    try {
      await this.waitReady(slot, tpl, handle);
    } catch (e) {
      await this.runtime.destroy(handle.sandboxId).catch(() => undefined);
      throw e;
    }
    return { handle, imageDigest: spec.imageDigest };
  }

  private async restoreOrExplain(slot: WorkerSlot, spec: WorkloadSpec, dir: string, logFile: string, a: Actor): Promise<SandboxHandle> {
    try {
      return await this.runtime.restore(slot, spec, dir, logFile);
    } catch (e) {
      if (e instanceof ApiError) throw e;
      throw failedPrecondition(
        `restoring actor ${a.atespace}/${a.actorId} from snapshot ${basename(dir)} failed: ${(e as Error).message}. The actor keeps its snapshot and was not reset; fix or remove the snapshot, or delete the actor`,
      );
    }
  }

  /** Readiness: every container's readyz answers 200, or (without readyz) the sandbox stays alive. */
  private async waitReady(slot: WorkerSlot, tpl: TemplateObj, handle: SandboxHandle): Promise<void> {
    const probe = tpl.spec.containers[0]?.readyz?.httpGet;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    if (!probe) {
      await new Promise((r) => setTimeout(r, 150));
      if (!(await this.runtime.verifyRunning(handle))) throw failedPrecondition('the workload exited right after it started; see its log under the state directory');
      return;
    }
    const path = probe.path ?? '/readyz';
    const started = Date.now();
    let last = '';
    while (Date.now() < deadline) {
      if (!this.runtime.isAlive(handle) || (Date.now() - started > 1000 && !(await this.runtime.verifyRunning(handle)))) {
        throw failedPrecondition(`the workload exited before ${path} answered; see its log under the state directory`);
      }
      try {
        const code = await this.httpStatus(slot, probe.port, path, 2_000);
        if (code === 200) return;
        last = `HTTP ${code}`;
      } catch (e) {
        last = (e as Error).message;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new ApiError(4, `readyz ${path} on port ${probe.port} did not answer 200 within ${READY_TIMEOUT_MS / 1000}s (last: ${last})`);
  }

  /**
   * One HTTP GET into a worker namespace through the runtime's forwarder, bounded by `timeoutMs` whatever
   * happens: http.request's own timeout never fires on a socket handed in through createConnection, and a
   * sandbox killed mid-probe never closes its end.
   */
  async httpStatus(slot: WorkerSlot, port: number, path: string, timeoutMs: number): Promise<number> {
    const sock = await this.runtime.connect(slot, port);
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        req.destroy(new Error(`no answer within ${timeoutMs} ms`));
        sock.destroy();
      }, timeoutMs);
      const req = http.request({ createConnection: () => sock, path, method: 'GET', headers: { host: 'localhost', connection: 'close' } }, (res) => {
        clearTimeout(timer);
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      req.end();
    });
  }

  async suspendActor(req: { actorRef?: { atespace: string; name: string } }): Promise<Actor> {
    const { atespace, name } = this.requireRef(req);
    return this.withLock(atespace, name, async () => {
      const a = this.mustGet(atespace, name);
      await this.loadTemplate(a);
      if (a.status === Actor_Status.STATUS_SUSPENDED) return a;
      if (a.status === Actor_Status.STATUS_PAUSED || !this.catalog.workerOfActor(atespace, name)) {
        throw internal('internal server error: actor is in SUSPENDING state but has no active worker');
      }
      return this.suspendRunning(atespace, name, 'external');
    });
  }

  async pauseActor(req: { actorRef?: { atespace: string; name: string } }): Promise<Actor> {
    const { atespace, name } = this.requireRef(req);
    return this.withLock(atespace, name, async () => {
      const a = this.mustGet(atespace, name);
      await this.loadTemplate(a);
      if (a.status === Actor_Status.STATUS_PAUSED) return a;
      if (a.status === Actor_Status.STATUS_SUSPENDED || !this.catalog.workerOfActor(atespace, name)) {
        throw internal('internal server error: actor is in PAUSING state but has no active worker');
      }
      return this.suspendRunning(atespace, name, 'local');
    });
  }

  /** Checkpoint the actor's sandbox (external: durable snapshot store; local: its node), then free the worker. */
  private async suspendRunning(atespace: string, name: string, kind: 'external' | 'local'): Promise<Actor> {
    const t0 = performance.now();
    const a = this.mustGet(atespace, name);
    const w = this.catalog.workerOfActor(atespace, name);
    if (!w) throw internal(`internal server error: actor is in ${kind === 'local' ? 'PAUSING' : 'SUSPENDING'} state but has no active worker`);
    const id = a.inProgressSnapshot || (kind === 'local' ? `${name}-${snapshotId(name)}` : snapshotId(name));
    const marked = this.catalog.casActor(
      { ...a, status: kind === 'local' ? Actor_Status.STATUS_PAUSING : Actor_Status.STATUS_SUSPENDING, inProgressSnapshot: id },
      a.version,
    );
    this.emit(marked);
    const run = this.running.get(w.idx);
    const dir = this.snapshotDir(kind, a, id, w.node);
    let snapshot: SnapshotRow | undefined;
    let tCheckpoint = 0;
    if (run && this.runtime.isAlive(run.handle)) {
      const tc = performance.now();
      let meta: Awaited<ReturnType<Runtime['checkpoint']>>;
      try {
        meta = await this.runtime.checkpoint(run.handle, dir, {
          imageDigest: run.imageDigest,
          platform: this.opts.platform ?? 'ptrace',
          runscVersion: this.opts.runscVersion ?? '',
        });
      } catch (e) {
        this.afterFailedCheckpoint(w.idx, run, atespace, name);
        throw e;
      }
      tCheckpoint = Math.round(performance.now() - tc);
      snapshot = {
        id: `${atespace}/${name}/${id}`,
        atespace,
        actor: name,
        kind,
        node: w.node,
        dir,
        imageDigest: meta.imageDigest,
        bytes: meta.bytes,
        createdAt: meta.createdAt,
      };
    } else if (run) {
      // The sandbox died under us: no checkpoint; fall back to the last snapshot (upstream's dangling-pod case,
      // without promoting a snapshot that was never written).
      await this.runtime.destroy(run.handle.sandboxId).catch(() => undefined);
    }
    this.running.delete(w.idx);
    const wrote = run && existsSync(join(dir, 'meta.json'));
    const cur = this.mustGet(atespace, name);
    const done = this.catalog.tx(() => {
      if (snapshot) this.catalog.addSnapshot(snapshot);
      this.catalog.releaseWorker(w.idx);
      return this.catalog.casActor(
        this.clearPod({
          ...cur,
          status: kind === 'local' ? Actor_Status.STATUS_PAUSED : Actor_Status.STATUS_SUSPENDED,
          inProgressSnapshot: '',
          latestSnapshotInfo: wrote ? this.snapshotInfo(kind, a, id, w.node) : cur.latestSnapshotInfo,
        }),
        cur.version,
      );
    });
    this.emit(done);
    if (snapshot) this.collectSnapshots(atespace, name, snapshot);
    log.debug('actor suspended', { actor: `${atespace}/${name}`, kind, checkpointMs: tCheckpoint, totalMs: Math.round(performance.now() - t0) });
    return done;
  }

  /**
   * A checkpoint failed (a full disk, a runsc error). A sandbox that is still running keeps running, memory
   * intact, and its actor goes back to RUNNING; otherwise the actor falls back to its previous snapshot.
   * Either way the catalog is left consistent and nothing half-written is kept.
   */
  private afterFailedCheckpoint(idx: number, run: Running, atespace: string, name: string): void {
    const cur = this.mustGet(atespace, name);
    const alive = this.runtime.isAlive(run.handle);
    if (!alive) this.running.delete(idx);
    const back = this.catalog.tx(() => {
      if (!alive) this.catalog.releaseWorker(idx);
      const status = alive
        ? Actor_Status.STATUS_RUNNING
        : cur.latestSnapshotInfo?.type === SnapshotType.SNAPSHOT_TYPE_LOCAL
          ? Actor_Status.STATUS_PAUSED
          : Actor_Status.STATUS_SUSPENDED;
      const next = { ...cur, status, inProgressSnapshot: '' };
      return this.catalog.casActor(alive ? next : this.clearPod(next), cur.version);
    });
    this.emit(back);
    log.warn('checkpoint failed', { actor: `${atespace}/${name}`, now: statusName(back.status) });
  }

  /**
   * Snapshots superseded by `latest` are deleted: an actor keeps its latest snapshot, and while that one is a
   * node-local pause snapshot also its latest external one (what a resume elsewhere or a revert needs).
   * Golden snapshots belong to their template and are never collected here.
   */
  private collectSnapshots(atespace: string, name: string, latest: SnapshotRow): void {
    const all = this.catalog.snapshotsOf(atespace, name).filter((s) => s.kind !== 'golden' && s.id !== latest.id);
    const keepExternal = latest.kind === 'local' ? all.filter((s) => s.kind === 'external').pop() : undefined;
    for (const s of all) {
      if (s === keepExternal) continue;
      try {
        rmSync(s.dir, { recursive: true, force: true });
        this.catalog.deleteSnapshot(s.id);
      } catch (e) {
        log.warn('could not delete a superseded snapshot; it is retried at the next suspend', { actor: `${atespace}/${name}`, error: e });
      }
    }
  }

  private clearPod(a: Actor): Actor {
    // Upstream leaves ateom_pod_uid stale after a suspend; so do we.
    return { ...a, ateomPodNamespace: '', ateomPodName: '', ateomPodIp: '', workerPoolName: '' };
  }

  // ------------------------------------------------------------------ snapshot locations

  snapshotDir(kind: 'external' | 'local', a: Pick<Actor, 'atespace' | 'actorId'>, id: string, node: string): string {
    return kind === 'local'
      ? join(this.opts.stateDir, 'nodes', node, 'snapshots', a.atespace, id)
      : join(this.opts.stateDir, 'snapshots', a.atespace, a.actorId, id);
  }

  private snapshotInfo(kind: 'external' | 'local', a: Pick<Actor, 'atespace' | 'actorId'>, id: string, node: string): SnapshotInfo {
    return kind === 'local'
      ? { type: SnapshotType.SNAPSHOT_TYPE_LOCAL, data: { $case: 'local', value: { snapshotPrefix: id, nodeVmsWithLocalSnapshots: [node] } } }
      : { type: SnapshotType.SNAPSHOT_TYPE_EXTERNAL, data: { $case: 'external', value: { snapshotUriPrefix: `file://${this.snapshotDir('external', a, id, node)}` } } };
  }

  /**
   * The directory of a snapshot URI, trusted only inside this instance's snapshot store
   * (`<state-dir>/snapshots/` and `<state-dir>/nodes/<node>/snapshots/`), symbolic links resolved: a location
   * written anywhere else (a template's status, say) is never restored from.
   */
  private uriToDir(uri: string): string {
    if (!uri.startsWith('file://')) throw failedPrecondition('the snapshot is not on this machine (the local Substrate stores snapshots as file:// URIs)');
    return this.trustedSnapshotDir(uri.slice('file://'.length));
  }

  private trustedSnapshotDir(dir: string): string {
    const abs = resolvePath(dir);
    let real = abs;
    try {
      real = realpathSync(abs);
    } catch {
      // absent: judged by its path; restoring it fails later with "not found"
    }
    const root = resolvePath(this.opts.stateDir);
    const inside = (p: string) => {
      const rel = relative(root, p).split(sep);
      return !rel.includes('..') && !isAbsolute(relative(root, p)) && ((rel[0] === 'snapshots' && rel.length > 1) || (rel[0] === 'nodes' && rel[2] === 'snapshots' && rel.length > 3));
    };
    if (!inside(abs) || !inside(real)) throw failedPrecondition("the snapshot location is outside this local Substrate's snapshot store; refusing to restore from it");
    return abs;
  }
}
