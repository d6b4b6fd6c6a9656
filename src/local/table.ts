// A SQLite table of one resource kind, keyed by (atespace, name), each row the resource's protobuf JSON and
// its version. Writes are compare-and-set on version (a lost race is ABORTED "concurrent update conflict,
// please retry", as upstream's store answers). Listing is by key order, paged with opaque tokens.
//
// JSON goes through the generated fromJSON/toJSON, never through an object built from caller input, so no
// request field can reach a prototype.
import type Database from 'better-sqlite3';
import { aborted } from '../common/errors.js';
import { decodePageToken, encodePageToken, pageSizeOf } from './meta.js';

export interface Codec<T> {
  fromJSON(o: unknown): T;
  toJSON(m: T): unknown;
}

export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

export class ResourceTable<T extends { metadata?: { atespace: string; name: string; version: number } | undefined }> {
  constructor(
    private readonly db: Database.Database,
    private readonly table: string,
    private readonly codec: Codec<T>,
  ) {
    if (!/^[a-z_]+$/.test(table)) throw new Error(`bad table name ${table}`);
    db.exec(`CREATE TABLE IF NOT EXISTS ${table} (
      atespace TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, data TEXT NOT NULL,
      PRIMARY KEY (atespace, name))`);
  }

  get(atespace: string, name: string): T | undefined {
    const r = this.db.prepare(`SELECT data FROM ${this.table} WHERE atespace = ? AND name = ?`).get(atespace, name) as { data: string } | undefined;
    return r ? this.codec.fromJSON(JSON.parse(r.data)) : undefined;
  }

  /** Inserts a new row; false when the key is taken. */
  insert(obj: T): boolean {
    const m = obj.metadata!;
    const res = this.db
      .prepare(`INSERT OR IGNORE INTO ${this.table} (atespace, name, version, data) VALUES (?, ?, ?, ?)`)
      .run(m.atespace, m.name, m.version, JSON.stringify(this.codec.toJSON(obj)));
    return res.changes === 1;
  }

  /** Replaces the row if it is still at `expectedVersion`; otherwise ABORTED. */
  replace(obj: T, expectedVersion: number): void {
    const m = obj.metadata!;
    const res = this.db
      .prepare(`UPDATE ${this.table} SET version = ?, data = ? WHERE atespace = ? AND name = ? AND version = ?`)
      .run(m.version, JSON.stringify(this.codec.toJSON(obj)), m.atespace, m.name, expectedVersion);
    if (res.changes !== 1) throw aborted('concurrent update conflict, please retry');
  }

  /** Removes the row if it is still at `expectedVersion` (any version when undefined); false when absent. */
  remove(atespace: string, name: string, expectedVersion?: number): boolean {
    const res =
      expectedVersion === undefined
        ? this.db.prepare(`DELETE FROM ${this.table} WHERE atespace = ? AND name = ?`).run(atespace, name)
        : this.db.prepare(`DELETE FROM ${this.table} WHERE atespace = ? AND name = ? AND version = ?`).run(atespace, name, expectedVersion);
    return res.changes === 1;
  }

  count(atespace?: string): number {
    const r = (atespace === undefined
      ? this.db.prepare(`SELECT COUNT(*) AS n FROM ${this.table}`).get()
      : this.db.prepare(`SELECT COUNT(*) AS n FROM ${this.table} WHERE atespace = ?`).get(atespace)) as { n: number };
    return r.n;
  }

  all(atespace?: string): T[] {
    const rows = (atespace === undefined
      ? this.db.prepare(`SELECT data FROM ${this.table} ORDER BY atespace, name`).all()
      : this.db.prepare(`SELECT data FROM ${this.table} WHERE atespace = ? ORDER BY name`).all(atespace)) as Array<{ data: string }>;
    return rows.map((r) => this.codec.fromJSON(JSON.parse(r.data)));
  }

  /** One page in (atespace, name) order; `atespace` empty or undefined lists every atespace. */
  page(path: string, atespace: string | undefined, pageSize: number | undefined, pageToken: string | undefined): Page<T> {
    const size = pageSizeOf(`${path}.page_size`, pageSize);
    const after = decodePageToken(`${path}.page_token`, this.table, pageToken);
    const key = (a: string, n: string) => `${a}\u0000${n}`;
    const params: unknown[] = [];
    let where = '';
    if (atespace) {
      where = 'WHERE atespace = ?';
      params.push(atespace);
    }
    if (after !== undefined) {
      where += `${where ? ' AND' : 'WHERE'} (atespace || char(0) || name) > ?`;
      params.push(after);
    }
    const rows = this.db
      .prepare(`SELECT atespace, name, data FROM ${this.table} ${where} ORDER BY atespace, name LIMIT ?`)
      .all(...params, size + 1) as Array<{ atespace: string; name: string; data: string }>;
    const more = rows.length > size;
    const pageRows = rows.slice(0, size);
    const last = pageRows[pageRows.length - 1];
    return {
      items: pageRows.map((r) => this.codec.fromJSON(JSON.parse(r.data))),
      nextPageToken: more && last ? encodePageToken(this.table, key(last.atespace, last.name)) : '',
    };
  }
}
