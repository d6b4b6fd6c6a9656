// The two homes of sandbox records (records.ts): the driver's own SQLite file in its state directory (local
// mode: `<state_dir>/driver.db`, mode 0600, in a 0700 directory), and labelled Kubernetes Secrets in a
// namespace (cluster mode, through @kubernetes/client-node). Both store the same string map; the secret
// fields (sandbox token, launch authentication) stay as secret as their container: an owner-only file, or
// a Secret. Nothing here logs record contents, and errors name the record, never a value.
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { recordSecretNameFor } from '../template/synthesize.js';
import type { RecordBackend } from './ports.js';

export const DRIVER_DB = 'driver.db';

/** SQLite: one row per sandbox, its map as JSON. Synchronous underneath; one writer (this process). */
export class SqliteRecordBackend implements RecordBackend {
  readonly describe: string;
  private db?: Database.Database;

  constructor(readonly path: string) {
    this.describe = `SQLite ${path}`;
  }

  static inStateDir(stateDir: string): SqliteRecordBackend {
    return new SqliteRecordBackend(join(stateDir, DRIVER_DB));
  }

  async init(): Promise<void> {
    if (this.db) return;
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    // Created owner-only before SQLite opens it (SQLite gives its journal the database file's mode).
    closeSync(openSync(this.path, 'a', 0o600));
    if ((statSync(this.path).mode & 0o077) !== 0) chmodSync(this.path, 0o600);
    const db = new Database(this.path);
    db.pragma('journal_mode = DELETE');
    db.pragma('synchronous = FULL');
    db.exec('CREATE TABLE IF NOT EXISTS sandbox_records (id TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at TEXT NOT NULL)');
    this.db = db;
  }

  private get conn(): Database.Database {
    if (!this.db) throw new Error(`sandbox records ${this.path} are not open`);
    return this.db;
  }

  async list(): Promise<Array<{ key: string; data: Record<string, string> }>> {
    const rows = this.conn.prepare('SELECT id, data FROM sandbox_records ORDER BY id').all() as Array<{ id: string; data: string }>;
    const out: Array<{ key: string; data: Record<string, string> }> = [];
    for (const row of rows) {
      let data: Record<string, string>;
      try {
        data = JSON.parse(row.data) as Record<string, string>;
      } catch {
        data = {};
      }
      out.push({ key: row.id, data });
    }
    return out;
  }

  async put(id: string, data: Record<string, string>): Promise<void> {
    this.conn
      .prepare('INSERT INTO sandbox_records (id, data, updated_at) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at')
      .run(id, JSON.stringify(data), new Date().toISOString());
  }

  async remove(id: string): Promise<boolean> {
    return this.conn.prepare('DELETE FROM sandbox_records WHERE id = ?').run(id).changes > 0;
  }

  close(): void {
    this.db?.close();
    this.db = undefined;
  }
}

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'openshell-driver-substrate';
export const SANDBOX_ID_LABEL = 'openshell.ai/sandbox-id';
export const WORKSPACE_LABEL = 'openshell.ai/workspace';
/** Marks the Secret as a sandbox record. */
export const RECORD_LABEL = 'openshell.ai/sandbox-record';
export const RECORD_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY},${RECORD_LABEL}=v1`;
const FIELD_MANAGER = 'openshell-driver-substrate';

function httpCode(e: unknown): number | undefined {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === 'number' && c >= 100 && c < 600 ? c : undefined;
}

/** Kubernetes Secrets: one labelled Secret per sandbox in `namespace` (server-side apply). */
export class KubeSecretRecordBackend implements RecordBackend {
  readonly describe: string;
  private readonly core: CoreV1Api;

  constructor(
    kc: KubeConfig,
    readonly namespace: string,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.describe = `Kubernetes Secrets in namespace ${namespace}`;
  }

  async init(): Promise<void> {
    try {
      await this.core.readNamespace({ name: this.namespace });
      return;
    } catch (e) {
      // 403: the driver may read Secrets without reading Namespaces; try to create and accept "exists".
      if (httpCode(e) !== 404 && httpCode(e) !== 403) throw e;
    }
    try {
      await this.core.createNamespace({ body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: this.namespace } } });
    } catch (e) {
      if (httpCode(e) !== 409 && httpCode(e) !== 403) throw e;
    }
  }

  async list(): Promise<Array<{ key: string; data: Record<string, string> }>> {
    const list = await this.core.listNamespacedSecret({ namespace: this.namespace, labelSelector: RECORD_SELECTOR });
    return list.items.map((s) => {
      const data: Record<string, string> = {};
      for (const [k, v] of Object.entries(s.data ?? {})) data[k] = Buffer.from(v, 'base64').toString('utf8');
      return { key: s.metadata?.name ?? '', data };
    });
  }

  async put(id: string, record: Record<string, string>): Promise<void> {
    const data: Record<string, string> = {};
    for (const [k, v] of Object.entries(record)) data[k] = Buffer.from(v, 'utf8').toString('base64');
    const labels: Record<string, string> = { [MANAGED_BY_LABEL]: MANAGED_BY, [RECORD_LABEL]: 'v1', [SANDBOX_ID_LABEL]: id };
    // Label values must be valid; the gateway's ids (UUIDs) and workspaces (DNS labels) are.
    if (record.workspace) labels[WORKSPACE_LABEL] = record.workspace;
    const name = recordSecretNameFor(id);
    const body = { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: this.namespace, labels }, type: 'Opaque', data };
    await this.core.patchNamespacedSecret(
      { name, namespace: this.namespace, body, fieldManager: FIELD_MANAGER, force: true },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
  }

  async remove(id: string): Promise<boolean> {
    try {
      await this.core.deleteNamespacedSecret({ name: recordSecretNameFor(id), namespace: this.namespace });
      return true;
    } catch (e) {
      if (httpCode(e) === 404) return false;
      throw e;
    }
  }
}

/** An in-memory backend (tests; a driver whose records need not survive it). */
export class MemoryRecordBackend implements RecordBackend {
  readonly describe = 'memory';
  readonly rows = new Map<string, Record<string, string>>();
  async init(): Promise<void> {}
  async list(): Promise<Array<{ key: string; data: Record<string, string> }>> {
    return [...this.rows].map(([key, data]) => ({ key, data: { ...data } }));
  }
  async put(id: string, data: Record<string, string>): Promise<void> {
    this.rows.set(id, { ...data });
  }
  async remove(id: string): Promise<boolean> {
    return this.rows.delete(id);
  }
}
