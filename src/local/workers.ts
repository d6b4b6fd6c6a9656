// Worker slots, worker pools and placement of the local Substrate (v0.4 wire, src/gen/ateapi.ts).
//
// Each worker is one slot: a network namespace on this machine (runtime.prepareWorker) that hosts at most one
// actor sandbox at a time (upstream's workers host many; here capacity is 1 actor). A slot belongs to a pool:
// the built-in `ate-system/default` pool (labels {"ate.dev/worker-pool": "default"}, size from the options) or
// a WorkerPool applied through WorkerPoolRegistry (persisted here). A worker is named `<pool>-<idx>`, like its
// worker pod; its node is the virtual node `local-node-<idx % nodes>` (pause snapshots stay on their node).
//
// Placement (upstream's schedulingConstraints, substrate-v0.4.md §5.1): the pool's sandbox class equals the
// template's, the template's and the actor's worker_selector both match the pool's labels (equality), the
// slot is on `status.assigned_node` when that is set, the worker is ACTIVE (not DRAINING) and free.
//
// Slot rows, the actor they host and the actor rows (src/local/actors.ts) share one SQLite database, so a
// binding and the actor that records it are written in one transaction (callers wrap both in db.transaction).
import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import * as pb from '../gen/ateapi.js';
import { ApiError, Code, failedPrecondition, invalid, notFound } from '../common/errors.js';
import { logger } from '../common/log.js';
import { isDnsLabel, labelValueError, qualifiedNameError } from '../common/dns.js';
import { decodePageToken, encodePageToken, pageSizeOf, required } from './meta.js';
import type { WorkerPoolRegistry, WorkerPoolSpec } from './api.js';
import type { Runtime, WorkerSlot } from './runtime/types.js';

const log = logger('local.workers');

/** Worker slots (network namespaces) one local Substrate holds across all its pools. */
export const MAX_LOCAL_WORKERS = 1024;

export const DEFAULT_POOL: Readonly<{ namespace: string; name: string; labels: Readonly<Record<string, string>> }> = {
  namespace: 'ate-system',
  name: 'default',
  labels: { 'ate.dev/worker-pool': 'default' },
};

export const NO_ROOM = 'no worker has room for the actor';

export type SandboxClassName = 'gvisor' | 'microvm';

export interface WorkersOptions {
  db: Database.Database;
  /** The runtime whose namespaces the slots are (prepareWorker only). */
  runtime: Pick<Runtime, 'prepareWorker'>;
  /** The runtime's view of slot `idx` on `node` (netns name and address), e.g. GvisorRuntime.slot. */
  slotOf(idx: number, node: string): WorkerSlot;
  /** Slots of the built-in default pool. */
  defaultReplicas: number;
  /** Slots across all pools (default MAX_LOCAL_WORKERS). */
  maxWorkers?: number;
  /** Virtual nodes the slots are spread over (default 2). */
  nodes?: number;
  /** What one worker offers (WorkerStatus.capacity.resources): the instance's per-actor cpu/memory ceilings. */
  capacity?: pb.Resources;
}

/** One worker slot as stored. */
export interface WorkerRow {
  idx: number;
  name: string;
  poolNamespace: string;
  pool: string;
  node: string;
  ip: string;
  uid: string;
  podUid: string;
  epoch: number;
  version: number;
  state: 'ACTIVE' | 'DRAINING';
  createTime: string;
  updateTime: string;
  actorAtespace: string;
  actorName: string;
  actorUid: string;
  templateAtespace: string;
  templateName: string;
  assignmentUid: string;
  assignedAt: string;
  /** JSON of pb.Resources: what the hosted actor may use. */
  resources: string;
  sandboxId: string;
  pid: number;
}

/** Where an actor may run. */
export interface Placement {
  sandboxClass: SandboxClassName;
  templateSelector: Readonly<Record<string, string>>;
  actorSelector: Readonly<Record<string, string>>;
  /** status.assigned_node: the only allowed node when set. */
  node?: string;
  /** A slot to avoid when another one fits (where the actor's sandbox last died). */
  avoid?: number;
}

/** What a claimed slot records about the actor it hosts. */
export interface Binding {
  actor: pb.ObjectRef;
  actorUid: string;
  template: pb.ObjectRef;
  resources?: pb.Resources;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS worker_slots (
  idx INTEGER PRIMARY KEY, pool_namespace TEXT NOT NULL, pool TEXT NOT NULL, node TEXT NOT NULL, ip TEXT NOT NULL,
  uid TEXT NOT NULL, pod_uid TEXT NOT NULL, epoch INTEGER NOT NULL DEFAULT 1, version INTEGER NOT NULL DEFAULT 1,
  state TEXT NOT NULL DEFAULT 'ACTIVE', create_time TEXT NOT NULL, update_time TEXT NOT NULL,
  actor_atespace TEXT NOT NULL DEFAULT '', actor_name TEXT NOT NULL DEFAULT '', actor_uid TEXT NOT NULL DEFAULT '',
  template_atespace TEXT NOT NULL DEFAULT '', template_name TEXT NOT NULL DEFAULT '',
  assignment_uid TEXT NOT NULL DEFAULT '', assigned_at TEXT NOT NULL DEFAULT '', resources TEXT NOT NULL DEFAULT '',
  sandbox_id TEXT NOT NULL DEFAULT '', pid INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS worker_pools (
  namespace TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (namespace, name));
`;

function rowOf(r: Record<string, unknown>): WorkerRow {
  const s = (k: string) => String(r[k] ?? '');
  return {
    idx: Number(r.idx),
    name: `${s('pool')}-${Number(r.idx)}`,
    poolNamespace: s('pool_namespace'),
    pool: s('pool'),
    node: s('node'),
    ip: s('ip'),
    uid: s('uid'),
    podUid: s('pod_uid'),
    epoch: Number(r.epoch),
    version: Number(r.version),
    state: s('state') === 'DRAINING' ? 'DRAINING' : 'ACTIVE',
    createTime: s('create_time'),
    updateTime: s('update_time'),
    actorAtespace: s('actor_atespace'),
    actorName: s('actor_name'),
    actorUid: s('actor_uid'),
    templateAtespace: s('template_atespace'),
    templateName: s('template_name'),
    assignmentUid: s('assignment_uid'),
    assignedAt: s('assigned_at'),
    resources: s('resources'),
    sandboxId: s('sandbox_id'),
    pid: Number(r.pid ?? 0),
  };
}

/** Equality selector: every entry of `sel` is a label with that value. */
export function selectorMatches(sel: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  for (const [k, v] of Object.entries(sel)) {
    if (!Object.prototype.hasOwnProperty.call(labels, k) || labels[k] !== v) return false;
  }
  return true;
}

/** A label map checked key by key (Kubernetes qualified names and label values); `path` names it in errors. */
export function checkLabels(path: string, labels: Readonly<Record<string, string>>, max?: number): Record<string, string> {
  const entries = Object.entries(labels);
  if (max !== undefined && entries.length > max) throw invalid(`${path}: Too many: ${entries.length}: must have at most ${max} items`);
  for (const [k, v] of entries) {
    const ke = qualifiedNameError(k);
    if (ke) throw invalid(`${path}: Invalid value: ${JSON.stringify(k)}: ${ke}`);
    const ve = labelValueError(v);
    if (ve) throw invalid(`${path}[${k}]: Invalid value: ${JSON.stringify(v)}: ${ve}`);
  }
  // Object.fromEntries defines own data properties, so no key reaches a prototype.
  return Object.fromEntries(entries.map(([k, v]) => [String(k), String(v)]));
}

function poolKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function isDefaultPool(namespace: string, name: string): boolean {
  return namespace === DEFAULT_POOL.namespace && name === DEFAULT_POOL.name;
}

export class Workers implements WorkerPoolRegistry {
  private readonly db: Database.Database;
  /** Slots whose namespace this run has prepared. */
  private readonly prepared = new Set<number>();
  private started = false;
  /** Pool changes run one at a time. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: WorkersOptions) {
    this.db = opts.db;
    this.db.exec(SCHEMA);
  }

  private get nodes(): number {
    return Math.max(1, Math.floor(this.opts.nodes ?? 2));
  }

  private get cap(): number {
    return Math.max(0, Math.floor(this.opts.maxWorkers ?? MAX_LOCAL_WORKERS));
  }

  /**
   * Creates the slots every pool asks for and prepares their namespaces (the runtime must be initialised).
   * A DRAINING slot that hosts nothing is replaced by a fresh worker (new pod uid, next epoch), as a pool
   * replaces a terminated pod; one still hosting an actor stays DRAINING. Idempotent.
   */
  async start(): Promise<void> {
    await this.serial(async () => {
      this.db.transaction(() => {
        for (const w of this.rows()) if (w.state === 'DRAINING' && !w.actorName) this.replace(w.idx, 'ACTIVE');
      })();
      this.started = true;
      await this.syncLocked();
    });
  }

  /** Slots prepared by start() and by pool changes after it. */
  private async prepareAll(): Promise<void> {
    for (const w of this.rows()) {
      if (this.prepared.has(w.idx)) continue;
      // Preparing twice would re-add the address of a live sandbox and cut it off: once per slot per run.
      await this.opts.runtime.prepareWorker(this.slotOf(w));
      this.prepared.add(w.idx);
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.catch(() => undefined).then(fn);
    this.chain = next;
    return next;
  }

  // ------------------------------------------------------------------ pools (WorkerPoolRegistry)

  private builtInPool(): WorkerPoolSpec {
    return {
      namespace: DEFAULT_POOL.namespace,
      name: DEFAULT_POOL.name,
      labels: { ...DEFAULT_POOL.labels },
      replicas: Math.max(0, Math.floor(this.opts.defaultReplicas)),
      sandboxClass: 'gvisor',
      workerImage: 'local',
    };
  }

  private storedPools(): WorkerPoolSpec[] {
    const rows = this.db.prepare('SELECT data FROM worker_pools ORDER BY namespace, name').all() as Array<{ data: string }>;
    return rows.map((r) => poolFromJson(JSON.parse(r.data)));
  }

  /** The built-in pool first, then applied pools in (namespace, name) order. */
  pools(): WorkerPoolSpec[] {
    return [this.builtInPool(), ...this.storedPools()];
  }

  private poolMap(): Map<string, WorkerPoolSpec> {
    return new Map(this.pools().map((p) => [poolKey(p.namespace, p.name), p]));
  }

  async applyWorkerPool(p: WorkerPoolSpec): Promise<WorkerPoolSpec> {
    const spec = validatePool(p);
    if (isDefaultPool(spec.namespace, spec.name)) {
      throw failedPrecondition(`WorkerPool ${spec.namespace}/${spec.name} is built in; its size is set with the local Substrate's worker count, not applied`);
    }
    return this.serial(async () => {
      this.db.transaction(() => {
        this.db
          .prepare('INSERT INTO worker_pools (namespace, name, data) VALUES (?, ?, ?) ON CONFLICT(namespace, name) DO UPDATE SET data = excluded.data')
          .run(spec.namespace, spec.name, JSON.stringify(spec));
        // Re-applying a pool rolls it: its empty DRAINING workers come back as fresh ones.
        for (const w of this.rows()) {
          if (w.poolNamespace === spec.namespace && w.pool === spec.name && w.state === 'DRAINING' && !w.actorName) this.replace(w.idx, 'ACTIVE');
        }
      })();
      await this.syncLocked();
      return { ...spec, labels: { ...spec.labels } };
    });
  }

  async listWorkerPools(): Promise<WorkerPoolSpec[]> {
    return this.pools();
  }

  async deleteWorkerPool(namespace: string, name: string): Promise<void> {
    if (isDefaultPool(namespace, name)) throw failedPrecondition(`WorkerPool ${namespace}/${name} is built in and cannot be deleted`);
    await this.serial(async () => {
      this.db.transaction(() => {
        const exists = this.db.prepare('SELECT 1 FROM worker_pools WHERE namespace = ? AND name = ?').get(namespace, name);
        if (!exists) throw notFound(`WorkerPool ${namespace}/${name} not found`);
        const busy = this.rows().find((w) => w.poolNamespace === namespace && w.pool === name && w.actorName);
        if (busy) {
          throw failedPrecondition(`WorkerPool ${namespace}/${name} cannot be deleted while its worker ${busy.name} hosts actor ${busy.actorAtespace}/${busy.actorName}`);
        }
        this.db.prepare('DELETE FROM worker_pools WHERE namespace = ? AND name = ?').run(namespace, name);
        this.db.prepare('DELETE FROM worker_slots WHERE pool_namespace = ? AND pool = ?').run(namespace, name);
      })();
    });
  }

  /** Slots to match the pools: new ones up to MAX_LOCAL_WORKERS in all, free extras removed. */
  private async syncLocked(): Promise<void> {
    const now = new Date().toISOString();
    this.db.transaction(() => {
      const pools = this.pools();
      const wanted = new Set(pools.map((p) => poolKey(p.namespace, p.name)));
      for (const w of this.rows()) if (!wanted.has(poolKey(w.poolNamespace, w.pool)) && !w.actorName) this.deleteSlot(w.idx);
      // Indexes in use, kept as slots come and go below (reading every row per new slot would be quadratic).
      const used = new Set(this.rows().map((w) => w.idx));
      for (const p of pools) {
        const mine = this.rows().filter((w) => w.poolNamespace === p.namespace && w.pool === p.name);
        const room = this.cap - used.size;
        const want = Math.min(p.replicas, mine.length + Math.max(0, room));
        if (want < p.replicas) {
          log.warn('worker pool asks for more workers than the local Substrate holds; it gets what fits', {
            pool: poolKey(p.namespace, p.name),
            replicas: p.replicas,
            granted: want,
            limit: this.cap,
          });
        }
        const insert = this.db.prepare(
          `INSERT INTO worker_slots (idx, pool_namespace, pool, node, ip, uid, pod_uid, create_time, update_time)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        );
        let next = 0;
        for (let i = mine.length; i < want; i++) {
          while (used.has(next)) next++;
          const idx = next;
          used.add(idx);
          const node = `local-node-${idx % this.nodes}`;
          const slot = this.opts.slotOf(idx, node);
          insert.run(idx, p.namespace, p.name, node, slot.ip, randomUUID(), randomUUID(), now, now);
        }
        // Scale down free slots only (highest index first); a bound slot goes when its actor leaves it.
        const extra = mine.length - p.replicas;
        if (extra > 0) {
          for (const w of mine.filter((x) => !x.actorName).reverse().slice(0, extra)) {
            this.deleteSlot(w.idx);
            used.delete(w.idx);
          }
        }
      }
    })();
    if (this.started) await this.prepareAll();
  }

  private deleteSlot(idx: number): void {
    this.db.prepare('DELETE FROM worker_slots WHERE idx = ?').run(idx);
    this.prepared.delete(idx);
  }

  /** A slot that left its pool's size (scale-down, pool deleted) goes once it is free. */
  private trim(idx: number): void {
    const w = this.row(idx);
    if (!w || w.actorName) return;
    const p = this.poolMap().get(poolKey(w.poolNamespace, w.pool));
    const mine = this.rows().filter((x) => x.poolNamespace === w.poolNamespace && x.pool === w.pool);
    if (!p || mine.length > p.replicas) this.deleteSlot(idx);
  }

  // ------------------------------------------------------------------ rows

  rows(): WorkerRow[] {
    return (this.db.prepare('SELECT * FROM worker_slots ORDER BY idx').all() as Array<Record<string, unknown>>).map(rowOf);
  }

  row(idx: number): WorkerRow | undefined {
    const r = this.db.prepare('SELECT * FROM worker_slots WHERE idx = ?').get(idx) as Record<string, unknown> | undefined;
    return r ? rowOf(r) : undefined;
  }

  byName(name: string): WorkerRow | undefined {
    const m = /^(.+)-(\d{1,5})$/.exec(name);
    if (!m) return undefined;
    const w = this.row(Number(m[2]));
    return w && w.name === name ? w : undefined;
  }

  /** The slot bound to an actor, if any. */
  boundTo(atespace: string, name: string): WorkerRow | undefined {
    const r = this.db.prepare('SELECT * FROM worker_slots WHERE actor_atespace = ? AND actor_name = ?').get(atespace, name) as
      | Record<string, unknown>
      | undefined;
    return r ? rowOf(r) : undefined;
  }

  slotOf(w: Pick<WorkerRow, 'idx' | 'node'>): WorkerSlot {
    return this.opts.slotOf(w.idx, w.node);
  }

  // ------------------------------------------------------------------ placement (synchronous: callers wrap it in their transaction)

  /**
   * Picks a worker for the actor and binds it, in one synchronous step (so two resumes never claim the same
   * free worker). An actor already bound keeps its worker while that still fits. RESOURCE_EXHAUSTED
   * "no worker has room for the actor" when nothing fits.
   */
  claim(p: Placement, b: Binding): WorkerRow {
    return this.db.transaction(() => {
      const pools = this.poolMap();
      const fits = (w: WorkerRow) => {
        const pool = pools.get(poolKey(w.poolNamespace, w.pool));
        return (
          !!pool &&
          w.state === 'ACTIVE' &&
          pool.sandboxClass === p.sandboxClass &&
          selectorMatches(p.templateSelector, pool.labels) &&
          selectorMatches(p.actorSelector, pool.labels) &&
          (!p.node || w.node === p.node)
        );
      };
      const existing = this.boundTo(b.actor.atespace, b.actor.name);
      if (existing) {
        if (fits(existing)) return existing;
        this.release(existing.idx);
      }
      const free = this.rows().filter((w) => !w.actorName && fits(w));
      if (free.length === 0) throw new ApiError(Code.RESOURCE_EXHAUSTED, NO_ROOM);
      const elsewhere = free.filter((w) => w.idx !== p.avoid);
      const w = (elsewhere.length > 0 ? elsewhere : free)[0]!;
      const now = new Date().toISOString();
      this.db
        .prepare(
          `UPDATE worker_slots SET actor_atespace = ?, actor_name = ?, actor_uid = ?, template_atespace = ?, template_name = ?,
             assignment_uid = ?, assigned_at = ?, resources = ?, sandbox_id = '', pid = 0, version = version + 1, update_time = ?
           WHERE idx = ? AND actor_name = ''`,
        )
        .run(
          b.actor.atespace,
          b.actor.name,
          b.actorUid,
          b.template.atespace,
          b.template.name,
          randomUUID(),
          now,
          JSON.stringify(pb.Resources.toJSON(b.resources ?? { limits: [] })),
          now,
          w.idx,
        );
      return this.row(w.idx)!;
    })();
  }

  /** Records the sandbox a bound slot runs (for adoption after a restart). */
  setSandbox(idx: number, sandboxId: string, pid: number): void {
    this.db
      .prepare('UPDATE worker_slots SET sandbox_id = ?, pid = ?, version = version + 1, update_time = ? WHERE idx = ?')
      .run(sandboxId, pid, new Date().toISOString(), idx);
  }

  /**
   * Frees a slot. `replaced`: its sandbox died (the worker pod went away): the slot comes back as a new
   * worker, with a new pod uid and the next epoch.
   */
  release(idx: number, opts: { replaced?: boolean } = {}): void {
    this.db.transaction(() => {
      this.db
        .prepare(
          `UPDATE worker_slots SET actor_atespace = '', actor_name = '', actor_uid = '', template_atespace = '', template_name = '',
             assignment_uid = '', assigned_at = '', resources = '', sandbox_id = '', pid = 0, version = version + 1, update_time = ?
           WHERE idx = ?`,
        )
        .run(new Date().toISOString(), idx);
      if (opts.replaced) {
        const w = this.row(idx);
        if (w) this.replace(idx, w.state);
      }
      this.trim(idx);
    })();
  }

  private replace(idx: number, state: 'ACTIVE' | 'DRAINING'): void {
    this.db
      .prepare('UPDATE worker_slots SET pod_uid = ?, epoch = epoch + 1, state = ?, version = version + 1, update_time = ? WHERE idx = ?')
      .run(randomUUID(), state, new Date().toISOString(), idx);
  }

  /** The actor-side record of a binding (ActorStatus.worker_assignment). */
  assignmentOf(w: WorkerRow): pb.WorkerAssignment {
    return {
      worker: { atespace: '', name: w.name },
      workerNamespace: w.poolNamespace,
      workerPool: w.pool,
      workerPod: w.name,
      workerPodUid: w.podUid,
      workerPodIps: [w.ip],
      nodeName: w.node,
      workerEpoch: w.epoch,
    };
  }

  // ------------------------------------------------------------------ wire

  toWire(w: WorkerRow): pb.Worker {
    const pool = this.poolMap().get(poolKey(w.poolNamespace, w.pool));
    const hosted = w.actorName ? resourcesOf(w.resources) : { limits: [] };
    return {
      metadata: { atespace: '', name: w.name, uid: w.uid, version: w.version, createTime: new Date(w.createTime), updateTime: new Date(w.updateTime) },
      workerNamespace: w.poolNamespace,
      workerPool: w.pool,
      workerPod: w.name,
      workerPodUid: w.podUid,
      nodeName: w.node,
      ips: [w.ip],
      sandboxClass: pool?.sandboxClass ?? 'gvisor',
      labels: { ...(pool?.labels ?? {}) },
      epoch: w.epoch,
      status: {
        state: w.state === 'DRAINING' ? pb.WorkerState.WORKER_STATE_DRAINING : pb.WorkerState.WORKER_STATE_ACTIVE,
        capacity: { resources: this.opts.capacity ?? { limits: [] }, actors: 1 },
        allocated: { resources: hosted, actors: w.actorName ? 1 : 0 },
        observedEpoch: w.epoch,
        hardware: { attributes: {} },
      },
    };
  }

  private assignmentWire(w: WorkerRow): pb.ActorAssignment {
    const at = new Date(w.assignedAt || w.updateTime);
    return {
      metadata: { atespace: w.actorAtespace, name: w.actorName, uid: w.assignmentUid, version: 1, createTime: at, updateTime: at },
      actor: { atespace: w.actorAtespace, name: w.actorName },
      actorUid: w.actorUid,
      actorTemplateRef: { atespace: w.templateAtespace, name: w.templateName },
      resources: resourcesOf(w.resources),
      workerEpoch: w.epoch,
    };
  }

  private mustGetWorker(path: string, ref: pb.ObjectRef | undefined): WorkerRow {
    if (!ref) throw required(path);
    if (!ref.name) throw required(`${path}.name`);
    const w = ref.atespace ? undefined : this.byName(ref.name);
    if (!w) throw notFound(`Worker ${ref.atespace ? `${ref.atespace}/` : ''}${ref.name} not found`);
    return w;
  }

  // ------------------------------------------------------------------ RPCs

  async listWorkers(r: pb.ListWorkersRequest): Promise<pb.ListWorkersResponse> {
    const size = pageSizeOf('page_size', r.pageSize);
    const after = decodePageToken('page_token', 'worker_slots', r.pageToken);
    let from = -1;
    if (after !== undefined) {
      if (!/^\d{1,6}$/.test(after)) throw invalid(`page_token: Invalid value: ${JSON.stringify(r.pageToken)}: not a page token from this listing`);
      from = Number(after);
    }
    const rows = (this.db.prepare('SELECT * FROM worker_slots WHERE idx > ? ORDER BY idx LIMIT ?').all(from, size + 1) as Array<Record<string, unknown>>).map(rowOf);
    const page = rows.slice(0, size);
    const last = page[page.length - 1];
    return { workers: page.map((w) => this.toWire(w)), nextPageToken: rows.length > size && last ? encodePageToken('worker_slots', String(last.idx)) : '' };
  }

  async getWorker(r: pb.GetWorkerRequest): Promise<pb.Worker> {
    return this.toWire(this.mustGetWorker('worker', r.worker));
  }

  /** DRAINING: no new actor is placed on the worker; what it hosts keeps running. Idempotent. */
  async drainWorker(r: pb.DrainWorkerRequest): Promise<pb.Worker> {
    const w = this.mustGetWorker('worker', r.worker);
    if (w.state !== 'DRAINING') {
      this.db
        .prepare("UPDATE worker_slots SET state = 'DRAINING', version = version + 1, update_time = ? WHERE idx = ?")
        .run(new Date().toISOString(), w.idx);
      log.info('worker draining', { worker: w.name });
    }
    return this.toWire(this.row(w.idx)!);
  }

  async listWorkerActorAssignments(r: pb.ListWorkerActorAssignmentsRequest): Promise<pb.ListWorkerActorAssignmentsResponse> {
    const w = this.mustGetWorker('worker', r.worker);
    const size = pageSizeOf('page_size', r.pageSize);
    const after = decodePageToken('page_token', 'worker_assignments', r.pageToken);
    const all = w.actorName ? [w] : [];
    const keyOf = (x: WorkerRow) => `${x.actorAtespace}\u0000${x.actorName}`;
    const rest = all.filter((x) => after === undefined || keyOf(x) > after);
    const page = rest.slice(0, size);
    const last = page[page.length - 1];
    return {
      actorAssignments: page.map((x) => this.assignmentWire(x)),
      nextPageToken: rest.length > size && last ? encodePageToken('worker_assignments', keyOf(last)) : '',
    };
  }
}

function resourcesOf(json: string): pb.Resources {
  if (!json) return { limits: [] };
  try {
    return pb.Resources.fromJSON(JSON.parse(json));
  } catch {
    return { limits: [] };
  }
}

function poolFromJson(o: unknown): WorkerPoolSpec {
  const v = (o ?? {}) as Record<string, unknown>;
  const labels = typeof v.labels === 'object' && v.labels !== null ? (v.labels as Record<string, unknown>) : {};
  return {
    namespace: String(v.namespace ?? ''),
    name: String(v.name ?? ''),
    labels: Object.fromEntries(Object.entries(labels).map(([k, x]) => [k, String(x)])),
    replicas: Number(v.replicas ?? 0),
    sandboxClass: v.sandboxClass === 'microvm' ? 'microvm' : 'gvisor',
    workerImage: String(v.workerImage ?? ''),
  };
}

function validatePool(p: WorkerPoolSpec): WorkerPoolSpec {
  if (!p.namespace) throw required('metadata.namespace');
  if (!isDnsLabel(p.namespace)) throw invalid(`metadata.namespace: Invalid value: ${JSON.stringify(p.namespace)}: must be a lowercase RFC 1123 label`);
  if (!p.name) throw required('metadata.name');
  if (!isDnsLabel(p.name) || p.name.length > 56) {
    throw invalid(`metadata.name: Invalid value: ${JSON.stringify(p.name)}: must be a lowercase RFC 1123 label of at most 56 characters (worker names append "-<index>")`);
  }
  if (!Number.isInteger(p.replicas) || p.replicas < 0) throw invalid(`spec.replicas: Invalid value: ${JSON.stringify(p.replicas)}: must be an integer greater than or equal to 0`);
  if (p.sandboxClass !== 'gvisor' && p.sandboxClass !== 'microvm') {
    throw invalid(`spec.sandboxClass: Unsupported value: ${JSON.stringify(p.sandboxClass)}: supported values: "gvisor", "microvm"`);
  }
  const labels = checkLabels('metadata.labels', p.labels ?? {});
  return { namespace: p.namespace, name: p.name, labels, replicas: p.replicas, sandboxClass: p.sandboxClass, workerImage: String(p.workerImage ?? '') };
}
