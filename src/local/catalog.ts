// The local Substrate's catalog: atespaces, actors, workers, Kubernetes-shaped resources (templates, pools,
// secrets) and the snapshot index, in one SQLite database under the state directory.
//
// Crash safety: WAL journal with synchronous=FULL, so a committed transaction survives `kill -9` and power
// loss, and every multi-row change (an actor and the worker it binds) is one transaction. Actor updates are
// compare-and-set on `version`, as upstream's store does.
import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import { status } from '@grpc/grpc-js';
import { Actor, Actor_Status, Worker } from '../gen/june/ateapi.js';
import { ApiError } from '../common/errors.js';

export interface WorkerRow {
  idx: number;
  pool: string;
  poolNamespace: string;
  node: string;
  uid: string;
  version: number;
  actorAtespace: string;
  actorName: string;
  templateNamespace: string;
  templateName: string;
  sandboxId: string;
  pid: number;
  ip: string;
}

export interface SnapshotRow {
  id: string;
  atespace: string;
  actor: string;
  kind: 'external' | 'local' | 'golden';
  node: string;
  dir: string;
  imageDigest: string;
  bytes: number;
  createdAt: string;
}

/** A compare-and-set lost a race: upstream answers ABORTED with this message, and so do we. */
export class VersionConflict extends ApiError {
  constructor() {
    super(status.ABORTED, 'concurrent update conflict, please retry');
  }
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS atespaces (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS actors (
  atespace TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, data TEXT NOT NULL,
  PRIMARY KEY (atespace, name));
CREATE TABLE IF NOT EXISTS workers (
  idx INTEGER PRIMARY KEY, pool TEXT NOT NULL, pool_namespace TEXT NOT NULL, node TEXT NOT NULL, uid TEXT NOT NULL,
  version INTEGER NOT NULL DEFAULT 1, actor_atespace TEXT NOT NULL DEFAULT '', actor_name TEXT NOT NULL DEFAULT '',
  template_namespace TEXT NOT NULL DEFAULT '', template_name TEXT NOT NULL DEFAULT '',
  sandbox_id TEXT NOT NULL DEFAULT '', pid INTEGER NOT NULL DEFAULT 0, ip TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS resources (key TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
  id TEXT PRIMARY KEY, atespace TEXT NOT NULL, actor TEXT NOT NULL, kind TEXT NOT NULL, node TEXT NOT NULL,
  dir TEXT NOT NULL, image_digest TEXT NOT NULL, bytes INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
`;

function workerFromRow(r: Record<string, unknown>): WorkerRow {
  return {
    idx: r.idx as number,
    pool: r.pool as string,
    poolNamespace: r.pool_namespace as string,
    node: r.node as string,
    uid: r.uid as string,
    version: r.version as number,
    actorAtespace: r.actor_atespace as string,
    actorName: r.actor_name as string,
    templateNamespace: r.template_namespace as string,
    templateName: r.template_name as string,
    sandboxId: r.sandbox_id as string,
    pid: r.pid as number,
    ip: r.ip as string,
  };
}

export class Catalog {
  readonly db: Database.Database;

  constructor(file: string, opts: { readonly?: boolean } = {}) {
    if (opts.readonly) {
      this.db = new Database(file, { readonly: true, fileMustExist: true });
      this.db.pragma('busy_timeout = 5000');
      return;
    }
    // Private before anything is written: SQLite gives the WAL and SHM files the database file's mode.
    if (!existsSync(file)) closeSync(openSync(file, 'a', 0o600));
    for (const f of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    const check = this.db.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw new Error(`catalog ${file} failed its integrity check: ${String(check)}`);
  }

  close(): void {
    this.db.close();
  }

  tx<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  // ---- atespaces
  createAtespace(name: string): boolean {
    return this.db.prepare('INSERT OR IGNORE INTO atespaces(name) VALUES (?)').run(name).changes === 1;
  }
  atespaceExists(name: string): boolean {
    return !!this.db.prepare('SELECT 1 FROM atespaces WHERE name = ?').get(name);
  }
  listAtespaces(): string[] {
    return (this.db.prepare('SELECT name FROM atespaces ORDER BY name').all() as { name: string }[]).map((r) => r.name);
  }
  atespaceHasActors(name: string): boolean {
    return !!this.db.prepare('SELECT 1 FROM actors WHERE atespace = ? LIMIT 1').get(name);
  }
  deleteAtespace(name: string): boolean {
    return this.db.prepare('DELETE FROM atespaces WHERE name = ?').run(name).changes === 1;
  }

  // ---- actors
  getActor(atespace: string, name: string): Actor | null {
    const r = this.db.prepare('SELECT data FROM actors WHERE atespace = ? AND name = ?').get(atespace, name) as
      | { data: string }
      | undefined;
    return r ? Actor.fromJSON(JSON.parse(r.data)) : null;
  }

  insertActor(a: Actor): boolean {
    const res = this.db
      .prepare('INSERT OR IGNORE INTO actors(atespace, name, version, data) VALUES (?, ?, ?, ?)')
      .run(a.atespace, a.actorId, a.version, JSON.stringify(Actor.toJSON(a)));
    return res.changes === 1;
  }

  /** Compare-and-set on version: writes `next` with version+1 when the stored version equals `expected`. */
  casActor(next: Actor, expected: number): Actor {
    const written: Actor = { ...next, version: expected + 1 };
    const res = this.db
      .prepare('UPDATE actors SET version = ?, data = ? WHERE atespace = ? AND name = ? AND version = ?')
      .run(written.version, JSON.stringify(Actor.toJSON(written)), next.atespace, next.actorId, expected);
    if (res.changes !== 1) throw new VersionConflict();
    return written;
  }

  deleteActor(atespace: string, name: string, expectedStatus: Actor_Status): 'deleted' | 'missing' | 'status' {
    return this.tx(() => {
      const a = this.getActor(atespace, name);
      if (!a) return 'missing';
      if (a.status !== expectedStatus) return 'status';
      this.db.prepare('DELETE FROM actors WHERE atespace = ? AND name = ?').run(atespace, name);
      return 'deleted';
    });
  }

  /** Actors ordered by (atespace, name), strictly after `after`, at most `limit`. */
  listActors(atespace: string, after: [string, string] | null, limit: number): Actor[] {
    const rows = (
      atespace
        ? after
          ? this.db
              .prepare('SELECT data FROM actors WHERE atespace = ? AND name > ? ORDER BY atespace, name LIMIT ?')
              .all(atespace, after[1], limit)
          : this.db.prepare('SELECT data FROM actors WHERE atespace = ? ORDER BY atespace, name LIMIT ?').all(atespace, limit)
        : after
          ? this.db
              .prepare('SELECT data FROM actors WHERE (atespace, name) > (?, ?) ORDER BY atespace, name LIMIT ?')
              .all(after[0], after[1], limit)
          : this.db.prepare('SELECT data FROM actors ORDER BY atespace, name LIMIT ?').all(limit)
    ) as { data: string }[];
    return rows.map((r) => Actor.fromJSON(JSON.parse(r.data)));
  }

  allActors(): Actor[] {
    return this.listActors('', null, -1);
  }

  // ---- workers
  upsertWorkerSlot(w: Pick<WorkerRow, 'idx' | 'pool' | 'poolNamespace' | 'node' | 'uid' | 'ip'>): void {
    this.db
      .prepare(
        `INSERT INTO workers(idx, pool, pool_namespace, node, uid, ip) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(idx) DO UPDATE SET pool = excluded.pool, pool_namespace = excluded.pool_namespace,
           node = excluded.node, ip = excluded.ip`,
      )
      .run(w.idx, w.pool, w.poolNamespace, w.node, w.uid, w.ip);
  }

  listWorkers(): WorkerRow[] {
    return (this.db.prepare('SELECT * FROM workers ORDER BY idx').all() as Record<string, unknown>[]).map(workerFromRow);
  }

  getWorker(idx: number): WorkerRow | null {
    const r = this.db.prepare('SELECT * FROM workers WHERE idx = ?').get(idx) as Record<string, unknown> | undefined;
    return r ? workerFromRow(r) : null;
  }

  workerOfActor(atespace: string, name: string): WorkerRow | null {
    const r = this.db.prepare('SELECT * FROM workers WHERE actor_atespace = ? AND actor_name = ?').get(atespace, name) as
      | Record<string, unknown>
      | undefined;
    return r ? workerFromRow(r) : null;
  }

  bindWorker(idx: number, a: Actor): void {
    this.db
      .prepare(
        `UPDATE workers SET actor_atespace = ?, actor_name = ?, template_namespace = ?, template_name = ?,
           sandbox_id = '', pid = 0, version = version + 1 WHERE idx = ?`,
      )
      .run(a.atespace, a.actorId, a.actorTemplateNamespace, a.actorTemplateName, idx);
  }

  setWorkerSandbox(idx: number, sandboxId: string, pid: number): void {
    this.db.prepare('UPDATE workers SET sandbox_id = ?, pid = ?, version = version + 1 WHERE idx = ?').run(sandboxId, pid, idx);
  }

  releaseWorker(idx: number): void {
    this.db
      .prepare(
        `UPDATE workers SET actor_atespace = '', actor_name = '', template_namespace = '', template_name = '',
           sandbox_id = '', pid = 0, version = version + 1 WHERE idx = ?`,
      )
      .run(idx);
  }

  // ---- Kubernetes-shaped resources (ActorTemplates, WorkerPools, Namespaces, Secrets)
  getResource(key: string): unknown | null {
    const r = this.db.prepare('SELECT data FROM resources WHERE key = ?').get(key) as { data: string } | undefined;
    return r ? JSON.parse(r.data) : null;
  }
  putResource(key: string, obj: unknown): void {
    this.db
      .prepare('INSERT INTO resources(key, data) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET data = excluded.data')
      .run(key, JSON.stringify(obj));
  }
  deleteResource(key: string): boolean {
    return this.db.prepare('DELETE FROM resources WHERE key = ?').run(key).changes === 1;
  }
  listResources(prefix: string): Array<{ key: string; obj: unknown }> {
    const rows = this.db
      .prepare("SELECT key, data FROM resources WHERE key >= ? AND key < ? ORDER BY key")
      .all(prefix, prefix + '\uffff') as { key: string; data: string }[];
    return rows.map((r) => ({ key: r.key, obj: JSON.parse(r.data) }));
  }

  // ---- snapshot index
  addSnapshot(s: SnapshotRow): void {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO snapshots(id, atespace, actor, kind, node, dir, image_digest, bytes, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(s.id, s.atespace, s.actor, s.kind, s.node, s.dir, s.imageDigest, s.bytes, s.createdAt);
  }
  getSnapshot(id: string): SnapshotRow | null {
    const r = this.db.prepare('SELECT * FROM snapshots WHERE id = ?').get(id) as Record<string, unknown> | undefined;
    return r ? snapshotFromRow(r) : null;
  }
  snapshotsOf(atespace: string, actor: string): SnapshotRow[] {
    return (
      this.db.prepare('SELECT * FROM snapshots WHERE atespace = ? AND actor = ? ORDER BY created_at').all(atespace, actor) as Record<
        string,
        unknown
      >[]
    ).map(snapshotFromRow);
  }
  deleteSnapshot(id: string): void {
    this.db.prepare('DELETE FROM snapshots WHERE id = ?').run(id);
  }

  getMeta(key: string): string | null {
    const r = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return r ? r.value : null;
  }
  setMeta(key: string, value: string): void {
    this.db.prepare('INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  /** DebugClear: wipes actors, atespaces and worker bindings (not templates or images). */
  clearAll(): void {
    this.tx(() => {
      this.db.exec('DELETE FROM actors; DELETE FROM atespaces; DELETE FROM snapshots;');
      this.db.exec(
        "UPDATE workers SET actor_atespace = '', actor_name = '', template_namespace = '', template_name = '', sandbox_id = '', pid = 0, version = version + 1",
      );
    });
  }
}

function snapshotFromRow(r: Record<string, unknown>): SnapshotRow {
  return {
    id: r.id as string,
    atespace: r.atespace as string,
    actor: r.actor as string,
    kind: r.kind as SnapshotRow['kind'],
    node: r.node as string,
    dir: r.dir as string,
    imageDigest: r.image_digest as string,
    bytes: r.bytes as number,
    createdAt: r.created_at as string,
  };
}

/** The wire Worker of a slot row. */
export function toWireWorker(w: WorkerRow): Worker {
  return {
    workerNamespace: w.poolNamespace,
    workerPool: w.pool,
    workerPod: `${w.pool}-${w.idx}`,
    actorNamespace: w.templateNamespace,
    actorTemplate: w.templateName,
    actorId: w.actorName,
    ip: w.ip,
    version: w.version,
    workerPodUid: w.uid,
    nodeName: w.node,
    actorAtespace: w.actorAtespace,
  };
}
