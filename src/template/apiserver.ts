// A minimal Kubernetes-shaped REST API server (node:http).
//
// STAND-IN: this is not Kubernetes. It stands in for a real Kubernetes API server where none can run (tests,
// and the single-machine local Substrate, which serves it on loopback so the driver's one Kubernetes template
// store works unchanged against both). It serves only what the driver and the local Substrate use, and
// enforces the real contract's rules for those:
//
//   /api/v1/namespaces[/{name}]                                    core v1 Namespace
//   /api/v1/namespaces/{ns}/secrets[/{name}], /api/v1/secrets       core v1 Secret
//   /apis/ate.dev/v1alpha1/namespaces/{ns}/{actortemplates|workerpools}[/{name}[/status]]
//   /apis/ate.dev/v1alpha1/{actortemplates|workerpools}             (all namespaces: list/watch)
//   /api, /apis, /api/v1, /apis/ate.dev/v1alpha1, /version, /healthz, /readyz   (discovery, probes)
//
// Verbs: GET one, LIST (labelSelector: =, ==, !=, exists, !exists, in, notin; fieldSelector metadata.name /
// metadata.namespace), WATCH (`?watch=true`, newline-delimited {"type","object"} events, resourceVersion
// resume with 410 Expired when too old), POST, PUT (optimistic concurrency on resourceVersion; required for
// custom resources as in Kubernetes), DELETE (with uid/resourceVersion preconditions), and server-side apply:
// PATCH with Content-Type `application/apply-patch+yaml` and a REQUIRED `?fieldManager=` (missing → 422 as
// the real server answers); any other patch content type → 415. Errors are k8s `Status` objects (404
// NotFound, 409 AlreadyExists/Conflict, 422 Invalid with field causes from validate.ts, 400, 405, 410, 415).
// ActorTemplates get the CRD's validation, defaults and `Spec is immutable`; status is only written through
// the /status subresource; unknown fields are pruned (or rejected with `fieldValidation=Strict`).
//
// Server-side apply is simplified: field ownership is tracked per Apply manager (in metadata.managedFields,
// FieldsV1), fields a manager stops applying are removed, lists are atomic (the CRD default), and conflicts
// are detected between Apply managers only (`force=true` takes ownership).
//
// Storage is pluggable (ResourceStorage). resourceVersions, uids and watch history live in the server; the
// storage only keeps objects by key.
import http from 'node:http';
import { randomUUID, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { findProtoKey, isRecord, ownEntries, ownGet, ownSet, PROTO_KEY } from '../common/own.js';
import type { KubeObject, KubeStatus, ManagedFieldsEntry, StatusCause } from './types.js';
import {
  applyDefaults,
  checkImmutableFields,
  fieldErrorBody,
  findUnknownFields,
  jsonEqual,
  pruneUnknownFields,
  validateObjectFields,
  type FieldError,
} from './validate.js';
import { isLoopbackHost, loopbackHostHeaders } from '../common/net.js';

// ---------------------------------------------------------------------------------------------------------
// Storage

/**
 * Where objects live. Keys are `<resource>/<namespace>/<name>` for namespaced resources and
 * `<resource>/<name>` for cluster-scoped ones (resources: namespaces, secrets, actortemplates, workerpools).
 * Values are plain JSON objects (complete, with metadata.resourceVersion); return copies or values the server
 * may keep (it never mutates what storage returns, and never mutates what it passed to put()).
 *
 * Every method may be synchronous or return a Promise: the server awaits each call. The server serialises
 * all writes (one at a time, in resourceVersion order), so an implementation needs no locking of its own;
 * each put/delete must be durable when it returns if the embedding process wants durability.
 * `list(prefix)` returns every object whose key starts with prefix (`list('')` = everything), in any order.
 */
export interface ResourceStorage {
  get(key: string): KubeObject | undefined | Promise<KubeObject | undefined>;
  put(key: string, obj: KubeObject): void | Promise<void>;
  delete(key: string): boolean | Promise<boolean>;
  list(prefix: string): KubeObject[] | Promise<KubeObject[]>;
}

/** In-memory ResourceStorage (synchronous). */
export class MemoryStorage implements ResourceStorage {
  private readonly m = new Map<string, string>();
  get(key: string): KubeObject | undefined {
    const v = this.m.get(key);
    return v === undefined ? undefined : (JSON.parse(v) as KubeObject);
  }
  put(key: string, obj: KubeObject): void {
    this.m.set(key, JSON.stringify(obj));
  }
  delete(key: string): boolean {
    return this.m.delete(key);
  }
  list(prefix: string): KubeObject[] {
    const out: KubeObject[] = [];
    for (const [k, v] of this.m) if (k.startsWith(prefix)) out.push(JSON.parse(v) as KubeObject);
    return out;
  }
}

export function memoryStorage(): ResourceStorage {
  return new MemoryStorage();
}

// ---------------------------------------------------------------------------------------------------------
// Resources

export type ResourceName = 'namespaces' | 'secrets' | 'actortemplates' | 'workerpools';

interface ResourceDef {
  resource: ResourceName;
  group: '' | 'ate.dev';
  version: string;
  apiVersion: string;
  kind: string;
  namespaced: boolean;
  /** Custom resource: status subresource, generation, resourceVersion required on update, deleted object returned. */
  custom: boolean;
  shortNames: string[];
}

const DEFS: Record<ResourceName, ResourceDef> = {
  namespaces: { resource: 'namespaces', group: '', version: 'v1', apiVersion: 'v1', kind: 'Namespace', namespaced: false, custom: false, shortNames: ['ns'] },
  secrets: { resource: 'secrets', group: '', version: 'v1', apiVersion: 'v1', kind: 'Secret', namespaced: true, custom: false, shortNames: [] },
  actortemplates: {
    resource: 'actortemplates',
    group: 'ate.dev',
    version: 'v1alpha1',
    apiVersion: 'ate.dev/v1alpha1',
    kind: 'ActorTemplate',
    namespaced: true,
    custom: true,
    shortNames: ['actortemplate'],
  },
  workerpools: {
    resource: 'workerpools',
    group: 'ate.dev',
    version: 'v1alpha1',
    apiVersion: 'ate.dev/v1alpha1',
    kind: 'WorkerPool',
    namespaced: true,
    custom: true,
    shortNames: ['workerpool'],
  },
};

const qualified = (d: ResourceDef) => (d.group ? `${d.resource}.${d.group}` : d.resource);
const kindQualified = (d: ResourceDef) => (d.group ? `${d.kind}.${d.group}` : d.kind);

function keyOf(d: ResourceDef, ns: string | undefined, name: string): string {
  return d.namespaced ? `${d.resource}/${ns}/${name}` : `${d.resource}/${name}`;
}
function prefixOf(d: ResourceDef, ns: string | undefined): string {
  return d.namespaced && ns ? `${d.resource}/${ns}/` : `${d.resource}/`;
}

// ---------------------------------------------------------------------------------------------------------
// Errors as Status

export class KubeError extends Error {
  constructor(readonly status: KubeStatus) {
    super(status.message);
    this.name = 'KubeError';
  }
  get code(): number {
    return this.status.code;
  }
}

function statusOf(code: number, reason: string, message: string, details?: KubeStatus['details']): KubeStatus {
  const s: KubeStatus = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
  if (details) s.details = details;
  return s;
}
const err = (code: number, reason: string, message: string, details?: KubeStatus['details']) => new KubeError(statusOf(code, reason, message, details));

const notFound = (d: ResourceDef, name: string) =>
  err(404, 'NotFound', `${qualified(d)} "${name}" not found`, { name, group: d.group || undefined, kind: d.resource });
const nsNotFound = (ns: string) => err(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });
const alreadyExists = (d: ResourceDef, name: string) =>
  err(409, 'AlreadyExists', `${qualified(d)} "${name}" already exists`, { name, group: d.group || undefined, kind: d.resource });
const conflict = (d: ResourceDef, name: string, why = 'the object has been modified; please apply your changes to the latest version and try again') =>
  err(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(d)} "${name}": ${why}`, { name, group: d.group || undefined, kind: d.resource });
const badRequest = (m: string) => err(400, 'BadRequest', m);

function invalid(d: ResourceDef | { kind: string; group: string }, name: string, errs: FieldError[]): KubeError {
  const causes: StatusCause[] = errs.map((e) => ({ reason: e.type, message: fieldErrorBody(e), field: e.field }));
  const texts = errs.map((e) => `${e.field}: ${fieldErrorBody(e)}`);
  const body = texts.length === 1 ? texts[0] : `[${texts.join(', ')}]`;
  const kq = 'resource' in d ? kindQualified(d) : d.group ? `${d.kind}.${d.group}` : d.kind;
  return err(422, 'Invalid', `${kq} "${name}" is invalid: ${body}`, { name, group: d.group || undefined, kind: d.kind, causes });
}

// ---------------------------------------------------------------------------------------------------------
// Selectors

type LabelReq = (labels: Record<string, string>) => boolean;

function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((x) => x.trim()).filter((x) => x.length > 0);
}

export function parseLabelSelector(sel: string | null | undefined): LabelReq[] {
  if (!sel) return [];
  return splitTopLevel(sel).map((req): LabelReq => {
    let m: RegExpMatchArray | null;
    if ((m = req.match(/^([^=!\s(),]+)\s*(==|=|!=)\s*([^=!\s(),]*)$/))) {
      const [, k, op, v] = m as unknown as [string, string, string, string];
      return op === '!=' ? (l) => ownGet(l, k) !== v : (l) => ownGet(l, k) === v;
    }
    if ((m = req.match(/^([^=!\s(),]+)\s+(in|notin)\s+\(([^()]*)\)$/))) {
      const [, k, op, vs] = m as unknown as [string, string, string, string];
      const set = new Set(vs.split(',').map((x) => x.trim()));
      return op === 'in' ? (l) => Object.hasOwn(l, k) && set.has(l[k]!) : (l) => !Object.hasOwn(l, k) || !set.has(l[k]!);
    }
    if ((m = req.match(/^!\s*([^=!\s(),]+)$/))) {
      const k = m[1]!;
      return (l) => !Object.hasOwn(l, k);
    }
    if ((m = req.match(/^([^=!\s(),]+)$/))) {
      const k = m[1]!;
      return (l) => Object.hasOwn(l, k);
    }
    throw badRequest(`unable to parse requirement: ${JSON.stringify(req)}: found unexpected token in label selector`);
  });
}

type FieldReq = (o: KubeObject) => boolean;
function parseFieldSelector(sel: string | null | undefined): FieldReq[] {
  if (!sel) return [];
  return splitTopLevel(sel).map((req): FieldReq => {
    const m = req.match(/^([a-zA-Z.]+)\s*(==|=|!=)\s*(.*)$/);
    if (!m) throw badRequest(`invalid selector: '${req}'; can't understand '${req}'`);
    const [, field, op, v] = m as unknown as [string, string, string, string];
    const get =
      field === 'metadata.name' ? (o: KubeObject) => o.metadata.name : field === 'metadata.namespace' ? (o: KubeObject) => o.metadata.namespace ?? '' : undefined;
    if (!get) throw badRequest(`field label not supported: ${field}`);
    return op === '!=' ? (o) => get(o) !== v : (o) => get(o) === v;
  });
}

// ---------------------------------------------------------------------------------------------------------
// Server-side apply field sets (FieldsV1, lists atomic)

type Path = string[];
const pkey = (p: Path) => JSON.stringify(p);

const isPlainObj = isRecord;

/** Fields an applied configuration sets. Identity fields (apiVersion, kind, name, namespace, ...) are not owned. */
function appliedFields(cfg: Record<string, unknown>, subresource: 'status' | undefined, custom: boolean): Path[] {
  const out: Path[] = [];
  const walk = (v: unknown, p: Path) => {
    const kids = isPlainObj(v) ? ownEntries(v) : [];
    if (kids.length > 0) {
      for (const [k, c] of kids) walk(c, [...p, k]);
    } else out.push(p);
  };
  for (const [k, v] of ownEntries(cfg)) {
    if (k === 'apiVersion' || k === 'kind') continue;
    if (k === 'metadata') {
      if (subresource) continue;
      for (const mk of ['labels', 'annotations']) {
        const m = ownGet(v, mk);
        if (isPlainObj(m)) walk(m, ['metadata', mk]);
      }
      continue;
    }
    if (custom && subresource === 'status' && k !== 'status') continue;
    if (custom && subresource !== 'status' && k === 'status') continue;
    walk(v, [k]);
  }
  return out;
}

function toFieldsV1(paths: Path[]): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const p of paths) {
    let cur = root;
    for (const seg of p) {
      const k = `f:${seg}`;
      if (!isPlainObj(ownGet(cur, k))) ownSet(cur, k, {});
      cur = cur[k] as Record<string, unknown>;
    }
  }
  return root;
}

function fromFieldsV1(fv: unknown): Path[] {
  const out: Path[] = [];
  const walk = (v: unknown, p: Path) => {
    const kids = isPlainObj(v) ? ownEntries(v).filter(([k]) => k.startsWith('f:') && k !== `f:${PROTO_KEY}`) : [];
    if (kids.length === 0) {
      if (p.length > 0) out.push(p);
      return;
    }
    for (const [k, c] of kids) walk(c, [...p, k.slice(2)]);
  };
  walk(fv, []);
  return out;
}

function getAt(o: unknown, p: Path): unknown {
  let cur = o;
  for (const seg of p) cur = ownGet(cur, seg);
  return cur;
}

function deleteAt(o: Record<string, unknown>, p: Path): void {
  const parents: Array<[Record<string, unknown>, string]> = [];
  let cur: unknown = o;
  for (const seg of p.slice(0, -1)) {
    if (!isPlainObj(cur)) return;
    parents.push([cur, seg]);
    cur = ownGet(cur, seg);
  }
  const last = p[p.length - 1]!;
  if (!isPlainObj(cur) || !Object.hasOwn(cur, last)) return;
  delete cur[last];
  // Drop maps emptied by the removal (never the top-level sections).
  for (let i = parents.length - 1; i >= 1; i--) {
    const [parent, k] = parents[i]!;
    const child = ownGet(parent, k);
    if (isPlainObj(child) && Object.keys(child).length === 0) delete parent[k];
    else break;
  }
}

/** Merges src into target: own keys only, never `__proto__`, values copied as own data properties. */
function mergeInto(target: Record<string, unknown>, src: Record<string, unknown>): void {
  for (const [k, v] of ownEntries(src)) {
    const cur = ownGet(target, k);
    if (v === null || v === undefined) {
      if (Object.hasOwn(target, k)) delete target[k];
    } else if (isPlainObj(v) && isPlainObj(cur) && Object.keys(v).length > 0) {
      mergeInto(cur, v);
    } else {
      ownSet(target, k, JSON.parse(JSON.stringify(v)));
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// The server

export interface ChangeEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  resource: ResourceName;
  /** A copy of the object (for DELETED, its last state with the deletion's resourceVersion). */
  object: KubeObject;
}

export interface ApiServerOptions {
  storage?: ResourceStorage;
  /**
   * Loopback only (127.0.0.0/8, ::1, localhost), default 127.0.0.1:0, where every request must carry
   * `Authorization: Bearer <token>`; or a Unix socket, made 0600, where the token is optional.
   */
  listen?: { host: string; port: number } | { path: string };
  /** The bearer token clients present; on TCP one is generated when none is given (see ApiServerHandle.token). */
  token?: string;
  /** Watch events kept for resourceVersion resume (default 2000). */
  watchHistory?: number;
}

export interface ApiServerHandle {
  /** `http://127.0.0.1:<port>` for TCP, `unix:<path>` for a Unix socket. */
  url: string;
  /** The bearer token every request must carry (empty on a Unix socket without one). Never log it. */
  token: string;
  socketPath?: string;
  close(): Promise<void>;
  /** Called after every committed change (create, update, apply, status, delete). Returns an unsubscribe function. */
  onChange(listener: (ev: ChangeEvent) => void): () => void;
  // In-process access for the embedding process: the same validation, resourceVersions and watch events as HTTP.
  get(resource: ResourceName, namespace: string | undefined, name: string): Promise<KubeObject | null>;
  list(resource: ResourceName, namespace?: string, labelSelector?: string): Promise<KubeObject[]>;
  /** Server-side apply (create or update) of a whole object, or of its status with subresource 'status'. */
  apply(obj: KubeObject, fieldManager: string, opts?: { force?: boolean; subresource?: 'status' }): Promise<KubeObject>;
  /**
   * Atomic read-modify-write of an object's status: `mutate` gets a copy of the current object and returns
   * the new status. Throws KubeError 404 when absent.
   */
  updateStatus(
    resource: ResourceName,
    namespace: string | undefined,
    name: string,
    mutate: (current: KubeObject) => Record<string, unknown>,
  ): Promise<KubeObject>;
  delete(resource: ResourceName, namespace: string | undefined, name: string): Promise<boolean>;
}

interface Watcher {
  def: ResourceDef;
  ns?: string;
  labels: LabelReq[];
  fields: FieldReq[];
  send(type: string, obj: KubeObject): void;
  end(): void;
}

interface HistoryEntry {
  rv: number;
  type: ChangeEvent['type'];
  def: ResourceDef;
  object: KubeObject;
}

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
const MAX_BODY = 3 * 1024 * 1024;
/** Open watch streams at once; the history kept for resuming them is bounded by ApiServerOptions.watchHistory. */
const MAX_WATCHERS = 256;

type WriteOpts = { dryRun?: boolean; fieldValidation?: string };

class Server {
  private rv = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly listeners = new Set<(ev: ChangeEvent) => void>();
  private readonly watchers = new Set<Watcher>();
  private readonly history: HistoryEntry[] = [];
  /** Events with rv > historyFloor are all in `history`. */
  private historyFloor = 0;

  constructor(
    readonly storage: ResourceStorage,
    private readonly historyMax: number,
  ) {}

  async init(): Promise<void> {
    for (const o of await this.storage.list('')) {
      const n = Number(o.metadata?.resourceVersion ?? 0);
      if (Number.isFinite(n) && n > this.rv) this.rv = n;
    }
    this.historyFloor = this.rv;
    if (!(await this.storage.get(keyOf(DEFS.namespaces, undefined, 'default')))) {
      await this.create(DEFS.namespaces, undefined, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } }, {});
    }
  }

  lock<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  onChange(l: (ev: ChangeEvent) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private emit(type: ChangeEvent['type'], def: ResourceDef, obj: KubeObject, rv: number) {
    this.history.push({ rv, type, def, object: obj });
    while (this.history.length > this.historyMax) this.historyFloor = this.history.shift()!.rv;
    for (const w of this.watchers) {
      if (w.def !== def) continue;
      if (w.ns && obj.metadata.namespace !== w.ns) continue;
      if (!w.labels.every((r) => r(obj.metadata.labels ?? {}))) continue;
      if (!w.fields.every((r) => r(obj))) continue;
      w.send(type, obj);
    }
    for (const l of this.listeners) {
      try {
        l({ type, resource: def.resource, object: clone(obj) });
      } catch {
        // A listener's failure is its own; the write is committed.
      }
    }
  }

  private async nsMustExist(def: ResourceDef, ns: string | undefined) {
    if (!def.namespaced) return;
    if (!ns) throw badRequest('the namespace of the object is required for this resource');
    if (!(await this.storage.get(keyOf(DEFS.namespaces, undefined, ns)))) throw nsNotFound(ns);
  }

  async getObj(def: ResourceDef, ns: string | undefined, name: string): Promise<KubeObject> {
    const o = await this.storage.get(keyOf(def, ns, name));
    if (!o) throw notFound(def, name);
    return o;
  }

  async listObjs(def: ResourceDef, ns: string | undefined, labelSel?: string | null, fieldSel?: string | null): Promise<KubeObject[]> {
    const labels = parseLabelSelector(labelSel);
    const fields = parseFieldSelector(fieldSel);
    const items = await this.storage.list(prefixOf(def, ns));
    return items
      .filter((o) => labels.every((r) => r(o.metadata.labels ?? {})) && fields.every((r) => r(o)))
      .sort((a, b) => `${a.metadata.namespace ?? ''}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace ?? ''}/${b.metadata.name}`));
  }

  /** Shape checks common to every write of a body. */
  private checkBody(def: ResourceDef, body: unknown, ns: string | undefined, urlName: string | undefined): KubeObject {
    if (!isPlainObj(body)) throw badRequest('the body of the request must be a JSON or YAML object');
    if (body.apiVersion === undefined || body.kind === undefined) {
      throw badRequest(`Object 'Kind' is missing in '${JSON.stringify(body).slice(0, 200)}'`);
    }
    if (body.apiVersion !== def.apiVersion) {
      throw badRequest(`the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${def.apiVersion})`);
    }
    if (body.kind !== def.kind) throw badRequest(`the kind in the data (${String(body.kind)}) does not match the expected kind (${def.kind})`);
    if (body.metadata !== undefined && !isPlainObj(body.metadata)) throw badRequest('metadata must be an object');
    const o = clone(body) as KubeObject;
    o.metadata = o.metadata ?? {};
    if (def.namespaced) {
      if (o.metadata.namespace && ns && o.metadata.namespace !== ns) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      o.metadata.namespace = ns ?? o.metadata.namespace;
    } else if (o.metadata.namespace) {
      delete o.metadata.namespace;
    }
    if (urlName !== undefined) {
      if (!o.metadata.name) o.metadata.name = urlName;
      if (o.metadata.name !== urlName) {
        throw badRequest(`the name of the object (${o.metadata.name}) does not match the name on the URL (${urlName})`);
      }
    }
    return o;
  }

  private prune(o: KubeObject, opts: WriteOpts) {
    if (opts.fieldValidation === 'Strict') {
      const unknown = findUnknownFields(o);
      if (unknown.length > 0) {
        throw badRequest(`strict decoding error: ${unknown.map((u) => `unknown field "${u}"`).join(', ')}`);
      }
    }
    pruneUnknownFields(o);
  }

  private normalize(def: ResourceDef, o: KubeObject): KubeObject {
    if (def.resource === 'secrets') {
      const sd = o.stringData as Record<string, unknown> | undefined;
      if (isPlainObj(sd)) {
        const data = { ...((o.data as Record<string, string> | undefined) ?? {}) };
        for (const [k, v] of ownEntries(sd)) ownSet(data, k, Buffer.from(String(v), 'utf8').toString('base64'));
        o.data = data;
      }
      delete o.stringData;
    }
    return applyDefaults(o);
  }

  private admit(def: ResourceDef, o: KubeObject, old?: KubeObject, subresource?: 'status') {
    const errs = validateObjectFields(o);
    if (old && def.resource === 'actortemplates' && !subresource) errs.push(...checkImmutableFields(old, o));
    if (old && def.resource === 'secrets' && old.immutable === true && !jsonEqual(old.data, o.data)) {
      errs.push({ type: 'FieldValueForbidden', field: 'data', hasBadValue: false, detail: 'field is immutable when `immutable` is set' });
    }
    if (errs.length > 0) throw invalid(def, o.metadata.name ?? '', errs);
  }

  private async commitPut(def: ResourceDef, o: KubeObject, type: 'ADDED' | 'MODIFIED', opts: WriteOpts): Promise<KubeObject> {
    const rv = this.rv + 1;
    o.metadata.resourceVersion = String(rv);
    if (opts.dryRun) return o;
    await this.storage.put(keyOf(def, o.metadata.namespace, o.metadata.name!), o);
    this.rv = rv;
    this.emit(type, def, clone(o), rv);
    return o;
  }

  private stamp(def: ResourceDef, o: KubeObject) {
    o.metadata.uid = randomUUID();
    o.metadata.creationTimestamp = now();
    delete o.metadata.resourceVersion;
    if (def.custom) o.metadata.generation = 1;
    else delete o.metadata.generation;
    if (def.resource === 'namespaces') {
      o.spec = { finalizers: ['kubernetes'] };
      o.status = { phase: 'Active' };
    }
  }

  create(def: ResourceDef, ns: string | undefined, body: unknown, opts: WriteOpts, manager?: { name: string; fields: Path[] }): Promise<KubeObject> {
    return this.lock(async () => {
      const o = this.checkBody(def, body, ns, undefined);
      if (!o.metadata.name && o.metadata.generateName) {
        o.metadata.name = `${o.metadata.generateName}${randomBytes(3).toString('hex').slice(0, 5)}`;
      }
      this.prune(o, opts);
      if (def.custom) delete o.status;
      delete o.metadata.managedFields;
      const obj = this.normalize(def, o);
      this.admit(def, obj);
      await this.nsMustExist(def, obj.metadata.namespace);
      if (await this.storage.get(keyOf(def, obj.metadata.namespace, obj.metadata.name!))) throw alreadyExists(def, obj.metadata.name!);
      this.stamp(def, obj);
      if (manager) obj.metadata.managedFields = [managedEntry(manager.name, def.apiVersion, manager.fields, undefined)];
      return this.commitPut(def, obj, 'ADDED', opts);
    });
  }

  /** PUT of the main resource or of /status. */
  update(def: ResourceDef, ns: string | undefined, name: string, body: unknown, subresource: 'status' | undefined, opts: WriteOpts): Promise<KubeObject> {
    return this.lock(async () => {
      const o = this.checkBody(def, body, ns, name);
      const old = await this.getObj(def, ns, name);
      const rv = o.metadata.resourceVersion;
      if (!rv && def.custom) {
        throw invalid(def, name, [{ type: 'FieldValueInvalid', field: 'metadata.resourceVersion', badValue: '0x0', hasBadValue: true, detail: 'must be specified for an update' }]);
      }
      if (rv && rv !== old.metadata.resourceVersion) throw conflict(def, name);
      this.prune(o, opts);
      let next: KubeObject;
      if (subresource === 'status') {
        next = clone(old);
        if (o.status === undefined) delete next.status;
        else next.status = o.status;
      } else {
        next = o;
        if (def.custom) {
          if (old.status === undefined) delete next.status;
          else next.status = clone(old.status);
        }
      }
      return this.finishUpdate(def, old, this.normalize(def, next), subresource, opts);
    });
  }

  /** The tail of every update; callers hold the lock. */
  async finishUpdate(def: ResourceDef, old: KubeObject, next: KubeObject, subresource: 'status' | undefined, opts: WriteOpts): Promise<KubeObject> {
    // Server-owned metadata is kept from the stored object.
    next.metadata.uid = old.metadata.uid;
    next.metadata.creationTimestamp = old.metadata.creationTimestamp;
    next.metadata.name = old.metadata.name;
    if (def.namespaced) next.metadata.namespace = old.metadata.namespace;
    if (next.metadata.managedFields === undefined && old.metadata.managedFields) next.metadata.managedFields = old.metadata.managedFields;
    if (def.custom) {
      next.metadata.generation = old.metadata.generation ?? 1;
      const specOf = (x: KubeObject) => Object.fromEntries(Object.entries(x).filter(([k]) => k !== 'metadata' && k !== 'status'));
      if (!jsonEqual(specOf(old), specOf(next))) next.metadata.generation = (old.metadata.generation ?? 1) + 1;
    } else delete next.metadata.generation;
    if (def.resource === 'namespaces') {
      next.spec = old.spec;
      next.status = old.status;
    }
    this.admit(def, next, old, subresource);
    next.metadata.resourceVersion = old.metadata.resourceVersion;
    if (jsonEqual(withoutTimes(old), withoutTimes(next))) return old; // no-op: nothing written, no event
    return this.commitPut(def, next, 'MODIFIED', opts);
  }

  /** Server-side apply. */
  apply(
    def: ResourceDef,
    ns: string | undefined,
    name: string,
    body: unknown,
    fieldManager: string,
    force: boolean,
    subresource: 'status' | undefined,
    opts: WriteOpts,
  ): Promise<{ obj: KubeObject; created: boolean }> {
    return this.lock(async () => {
      const cfg = this.checkBody(def, body, ns, name);
      this.prune(cfg, opts);
      if (def.resource === 'secrets') {
        // Fold stringData the way the API server decodes it, so ownership is tracked on data keys.
        const sd = cfg.stringData;
        if (isPlainObj(sd)) {
          const data = { ...((cfg.data as Record<string, string> | undefined) ?? {}) };
          for (const [k, v] of ownEntries(sd)) ownSet(data, k, Buffer.from(String(v), 'utf8').toString('base64'));
          cfg.data = data;
        }
        delete cfg.stringData;
      }
      delete cfg.metadata.managedFields;
      const fields = appliedFields(cfg as Record<string, unknown>, subresource, def.custom);
      const old = await this.storage.get(keyOf(def, ns, name));
      if (!old) {
        if (subresource) throw notFound(def, name);
        const created = await this.createLocked(def, ns, cfg, opts, { name: fieldManager, fields });
        return { obj: created, created: true };
      }
      if (cfg.metadata.resourceVersion && cfg.metadata.resourceVersion !== old.metadata.resourceVersion) throw conflict(def, name);

      const entries: ManagedFieldsEntry[] = clone(old.metadata.managedFields ?? []);
      const mine = entries.find((e) => e.manager === fieldManager && e.operation === 'Apply' && (e.subresource ?? undefined) === subresource);
      const others = entries.filter((e) => e !== mine && e.operation === 'Apply');
      const newKeys = new Set(fields.map(pkey));

      // Conflicts with other appliers over fields set to a different value.
      const conflicts: Array<{ manager: string; path: Path }> = [];
      for (const e of others) {
        for (const p of fromFieldsV1(e.fieldsV1)) {
          if (newKeys.has(pkey(p)) && !jsonEqual(getAt(old, p), getAt(cfg, p))) conflicts.push({ manager: e.manager, path: p });
        }
      }
      if (conflicts.length > 0 && !force) {
        const list = conflicts.map((c) => `conflict with "${c.manager}": .${c.path.join('.')}`);
        throw err(
          409,
          'Conflict',
          `Apply failed with ${conflicts.length} conflict${conflicts.length > 1 ? 's' : ''}: ${list.join('\n')}`,
          {
            name,
            group: def.group || undefined,
            kind: def.resource,
            causes: conflicts.map((c) => ({ reason: 'FieldManagerConflict', message: `conflict with "${c.manager}"`, field: `.${c.path.join('.')}` })),
          },
        );
      }

      const next = clone(old);
      // Fields this manager applied before and no longer applies are removed, unless another manager owns them.
      const othersOwned = new Set(others.flatMap((e) => fromFieldsV1(e.fieldsV1).map(pkey)));
      for (const p of mine ? fromFieldsV1(mine.fieldsV1) : []) {
        if (!newKeys.has(pkey(p)) && !othersOwned.has(pkey(p))) deleteAt(next as Record<string, unknown>, p);
      }
      // Merge the applied configuration.
      const patch = clone(cfg) as Record<string, unknown>;
      delete patch.apiVersion;
      delete patch.kind;
      const md = patch.metadata as Record<string, unknown>;
      delete patch.metadata;
      if (def.custom && subresource === 'status') {
        for (const k of Object.keys(patch)) if (k !== 'status') delete patch[k];
      } else if (def.custom) {
        delete patch.status;
      }
      mergeInto(next as Record<string, unknown>, patch);
      if (!subresource) {
        for (const mk of ['labels', 'annotations'] as const) {
          if (isPlainObj(md[mk])) {
            next.metadata[mk] = { ...(next.metadata[mk] ?? {}), ...(md[mk] as Record<string, string>) };
          }
        }
      }
      // Ownership: this manager now owns exactly what it applied; forced conflicts move to it.
      const conflictKeys = new Set(conflicts.map((c) => pkey(c.path)));
      const updated: ManagedFieldsEntry[] = [];
      for (const e of entries) {
        if (e === mine) continue;
        if (e.operation === 'Apply' && conflictKeys.size > 0) {
          const kept = fromFieldsV1(e.fieldsV1).filter((p) => !conflictKeys.has(pkey(p)));
          if (kept.length === 0) continue;
          updated.push({ ...e, fieldsV1: toFieldsV1(kept) });
        } else updated.push(e);
      }
      updated.push(managedEntry(fieldManager, def.apiVersion, fields, subresource, mine && sameFields(mine, fields) ? mine.time : undefined));
      next.metadata.managedFields = updated;
      const obj = await this.finishUpdate(def, old, this.normalize(def, next), subresource, opts);
      return { obj, created: false };
    });
  }

  /** create() body for callers already holding the lock. */
  private async createLocked(def: ResourceDef, ns: string | undefined, body: KubeObject, opts: WriteOpts, manager: { name: string; fields: Path[] }): Promise<KubeObject> {
    const o = clone(body);
    if (def.custom) delete o.status;
    const obj = this.normalize(def, o);
    this.admit(def, obj);
    await this.nsMustExist(def, obj.metadata.namespace ?? ns);
    this.stamp(def, obj);
    obj.metadata.managedFields = [managedEntry(manager.name, def.apiVersion, manager.fields, undefined)];
    return this.commitPut(def, obj, 'ADDED', opts);
  }

  remove(def: ResourceDef, ns: string | undefined, name: string, pre: { uid?: string; resourceVersion?: string }, opts: WriteOpts): Promise<KubeObject> {
    return this.lock(async () => {
      const old = await this.getObj(def, ns, name);
      if (pre.uid && pre.uid !== old.metadata.uid) {
        throw conflict(def, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${old.metadata.uid}`);
      }
      if (pre.resourceVersion && pre.resourceVersion !== old.metadata.resourceVersion) {
        throw conflict(def, name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${old.metadata.resourceVersion}`);
      }
      if (opts.dryRun) return old;
      if (def.resource === 'namespaces') {
        // Cascade: everything in the namespace goes first.
        for (const d of Object.values(DEFS)) {
          if (!d.namespaced) continue;
          for (const child of await this.storage.list(prefixOf(d, name))) await this.deleteOne(d, child);
        }
      }
      return this.deleteOne(def, old);
    });
  }

  private async deleteOne(def: ResourceDef, old: KubeObject): Promise<KubeObject> {
    await this.storage.delete(keyOf(def, old.metadata.namespace, old.metadata.name!));
    const rv = ++this.rv;
    const last = clone(old);
    last.metadata.resourceVersion = String(rv);
    this.emit('DELETED', def, last, rv);
    return last;
  }

  /**
   * Starts a watch: replays history after `fromRv` (or sends ADDED for every current object when absent/"0"),
   * then streams live events. Runs under the write lock so nothing is missed or duplicated.
   */
  watch(def: ResourceDef, ns: string | undefined, labelSel: string | null, fieldSel: string | null, fromRv: string | null, w: Omit<Watcher, 'def' | 'ns' | 'labels' | 'fields'>): Promise<() => void> {
    const labels = parseLabelSelector(labelSel);
    const fields = parseFieldSelector(fieldSel);
    const watcher: Watcher = { def, ns, labels, fields, send: w.send, end: w.end };
    if (this.watchers.size >= MAX_WATCHERS) {
      return Promise.reject(err(429, 'TooManyRequests', `too many open watches (${MAX_WATCHERS}); close some and retry`));
    }
    return this.lock(async () => {
      const match = (o: KubeObject) => (!ns || o.metadata.namespace === ns) && labels.every((r) => r(o.metadata.labels ?? {})) && fields.every((r) => r(o));
      if (!fromRv || fromRv === '0') {
        for (const o of await this.listObjs(def, ns, labelSel, fieldSel)) w.send('ADDED', o);
      } else {
        const n = Number(fromRv);
        if (!Number.isInteger(n) || n < 0) throw badRequest(`invalid resource version ${JSON.stringify(fromRv)}`);
        if (n < this.historyFloor) {
          w.send('ERROR', statusOf(410, 'Expired', `too old resource version: ${n} (${this.historyFloor})`) as unknown as KubeObject);
          w.end();
          return () => undefined;
        }
        for (const h of this.history) if (h.rv > n && h.def === def && match(h.object)) w.send(h.type, h.object);
      }
      this.watchers.add(watcher);
      return () => this.watchers.delete(watcher);
    });
  }

  endAllWatches() {
    for (const w of this.watchers) w.end();
    this.watchers.clear();
  }

  currentRv(): string {
    return String(this.rv);
  }
}

function withoutTimes(o: KubeObject): unknown {
  const c = clone(o);
  for (const e of c.metadata.managedFields ?? []) delete e.time;
  return c;
}

function sameFields(e: ManagedFieldsEntry, fields: Path[]): boolean {
  const a = new Set(fromFieldsV1(e.fieldsV1).map(pkey));
  return a.size === fields.length && fields.every((p) => a.has(pkey(p)));
}

function managedEntry(manager: string, apiVersion: string, fields: Path[], subresource: 'status' | undefined, time?: string): ManagedFieldsEntry {
  const e: ManagedFieldsEntry = { manager, operation: 'Apply', apiVersion, time: time ?? now(), fieldsType: 'FieldsV1', fieldsV1: toFieldsV1(fields) };
  if (subresource) e.subresource = subresource;
  return e;
}

// ---------------------------------------------------------------------------------------------------------
// HTTP

interface Route {
  def: ResourceDef;
  ns?: string;
  name?: string;
  subresource?: 'status';
}

function route(pathname: string): Route | 'discovery' | undefined {
  const seg = pathname.split('/').filter((s) => s.length > 0).map(decodeURIComponent);
  const rest = (base: number, group: '' | 'ate.dev'): Route | undefined => {
    const s = seg.slice(base);
    const pick = (r: string | undefined) => {
      const d = r ? DEFS[r as ResourceName] : undefined;
      return d && d.group === group ? d : undefined;
    };
    if (group === '' && s[0] === 'namespaces' && s.length <= 2) {
      return s.length === 1 ? { def: DEFS.namespaces } : { def: DEFS.namespaces, name: s[1] };
    }
    if (s[0] === 'namespaces' && s.length >= 3) {
      const def = pick(s[2]);
      if (!def || !def.namespaced) return undefined;
      if (s.length === 3) return { def, ns: s[1] };
      if (s.length === 4) return { def, ns: s[1], name: s[3] };
      if (s.length === 5 && s[4] === 'status' && def.custom) return { def, ns: s[1], name: s[3], subresource: 'status' };
      return undefined;
    }
    if (s.length === 1) {
      const def = pick(s[0]);
      if (def && def.namespaced) return { def };
    }
    return undefined;
  };
  if (seg[0] === 'api' && seg[1] === 'v1' && seg.length > 2) return rest(2, '');
  if (seg[0] === 'apis' && seg[1] === 'ate.dev' && seg[2] === 'v1alpha1' && seg.length > 3) return rest(3, 'ate.dev');
  if (['/api', '/apis', '/api/v1', '/apis/ate.dev', '/apis/ate.dev/v1alpha1', '/version', '/healthz', '/readyz', '/livez'].includes(pathname.replace(/\/$/, ''))) {
    return 'discovery';
  }
  return undefined;
}

function discovery(pathname: string): unknown {
  const p = pathname.replace(/\/$/, '');
  const res = (g: '' | 'ate.dev') =>
    Object.values(DEFS)
      .filter((d) => d.group === g)
      .flatMap((d) => {
        const verbs = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];
        const main = { name: d.resource, singularName: d.kind.toLowerCase(), namespaced: d.namespaced, kind: d.kind, verbs, shortNames: d.shortNames };
        return d.custom ? [main, { name: `${d.resource}/status`, singularName: '', namespaced: true, kind: d.kind, verbs: ['get', 'patch', 'update'] }] : [main];
      });
  switch (p) {
    case '/api':
      return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] };
    case '/apis':
      return {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [{ name: 'ate.dev', versions: [{ groupVersion: 'ate.dev/v1alpha1', version: 'v1alpha1' }], preferredVersion: { groupVersion: 'ate.dev/v1alpha1', version: 'v1alpha1' } }],
      };
    case '/apis/ate.dev':
      return { kind: 'APIGroup', apiVersion: 'v1', name: 'ate.dev', versions: [{ groupVersion: 'ate.dev/v1alpha1', version: 'v1alpha1' }], preferredVersion: { groupVersion: 'ate.dev/v1alpha1', version: 'v1alpha1' } };
    case '/api/v1':
      return { kind: 'APIResourceList', groupVersion: 'v1', resources: res('') };
    case '/apis/ate.dev/v1alpha1':
      return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: 'ate.dev/v1alpha1', resources: res('ate.dev') };
    case '/version':
      return { major: '1', minor: '33', gitVersion: 'v1.33.0-openshell-substrate-standin', platform: `${process.platform}/${process.arch}` };
    default:
      return 'ok';
  }
}

function send(res: http.ServerResponse, code: number, body: unknown) {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(err(413, 'RequestEntityTooLarge', 'Request entity too large: limit is 3145728'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function mediaType(req: http.IncomingMessage): string {
  return String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

function decodeBody(text: string, type: string): unknown {
  if (text.trim() === '') throw badRequest('the request body is empty; an object is required');
  let body: unknown;
  try {
    body = type === 'application/json' || type === 'application/merge-patch+json' ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw badRequest(`error decoding ${type.includes('yaml') ? 'YAML' : 'JSON'}: ${(e as Error).message.split('\n')[0]}`);
  }
  // No Kubernetes object has such a field; refusing it here is a second line behind the own-property walks.
  const proto = findProtoKey(body);
  if (proto) throw badRequest(`field "${proto}" is not allowed: "${PROTO_KEY}" is never a field name`);
  return body;
}

async function handle(s: Server, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const r = route(url.pathname);
  const method = req.method ?? 'GET';
  if (r === 'discovery') {
    if (method !== 'GET') throw err(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`);
    return send(res, 200, discovery(url.pathname));
  }
  if (!r) throw err(404, 'NotFound', 'the server could not find the requested resource');
  const q = url.searchParams;
  const opts: WriteOpts = { dryRun: q.get('dryRun') === 'All', fieldValidation: q.get('fieldValidation') ?? undefined };
  if (q.has('dryRun') && q.get('dryRun') !== 'All') throw badRequest(`invalid dry run value ${JSON.stringify(q.get('dryRun'))}: only "All" is supported`);
  const { def, ns, name, subresource } = r;
  if (ns !== undefined && !def.namespaced) throw err(404, 'NotFound', 'the server could not find the requested resource');

  const methodNotAllowed = () => err(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`);

  if (method === 'GET' && (q.get('watch') === 'true' || q.get('watch') === '1')) {
    if (name) throw badRequest('watch a single object with ?fieldSelector=metadata.name=<name> on the collection');
    return watch(s, req, res, def, ns, q);
  }
  if (name === undefined) {
    if (method === 'GET') {
      const items = await s.listObjs(def, ns, q.get('labelSelector'), q.get('fieldSelector'));
      return send(res, 200, { kind: `${def.kind}List`, apiVersion: def.apiVersion, metadata: { resourceVersion: s.currentRv() }, items });
    }
    if (method === 'POST') {
      if (ns === undefined && def.namespaced) throw methodNotAllowed();
      const type = mediaType(req);
      if (!['application/json', 'application/yaml'].includes(type)) throw unsupportedMedia(['application/json', 'application/yaml']);
      const body = decodeBody(await readBody(req), type);
      const obj = await s.create(def, ns, body, opts);
      return send(res, 201, obj);
    }
    throw methodNotAllowed();
  }
  switch (method) {
    case 'GET':
      return send(res, 200, await s.getObj(def, ns, name));
    case 'PUT': {
      const type = mediaType(req);
      if (!['application/json', 'application/yaml'].includes(type)) throw unsupportedMedia(['application/json', 'application/yaml']);
      const body = decodeBody(await readBody(req), type);
      return send(res, 200, await s.update(def, ns, name, body, subresource, opts));
    }
    case 'PATCH': {
      const type = mediaType(req);
      if (type !== 'application/apply-patch+yaml') throw unsupportedMedia(['application/apply-patch+yaml']);
      const fieldManager = q.get('fieldManager') ?? '';
      if (!fieldManager) {
        throw invalid({ kind: 'PatchOptions', group: 'meta.k8s.io' }, '', [
          { type: 'FieldValueRequired', field: 'fieldManager', hasBadValue: false, detail: 'is required for apply patch' },
        ]);
      }
      if (fieldManager.length > 128) {
        throw invalid({ kind: 'PatchOptions', group: 'meta.k8s.io' }, '', [
          { type: 'FieldValueInvalid', field: 'fieldManager', badValue: fieldManager, hasBadValue: true, detail: 'must be less than or equal to 128 characters' },
        ]);
      }
      const forceParam = q.get('force');
      const force = forceParam === 'true' || forceParam === '1';
      const body = decodeBody(await readBody(req), type);
      const { obj, created } = await s.apply(def, ns, name, body, fieldManager, force, subresource, opts);
      return send(res, created ? 201 : 200, obj);
    }
    case 'DELETE': {
      if (subresource) throw methodNotAllowed();
      const text = await readBody(req);
      let pre: { uid?: string; resourceVersion?: string } = {};
      if (text.trim()) {
        if (mediaType(req) !== 'application/json') throw unsupportedMedia(['application/json']);
        const b = decodeBody(text, 'application/json');
        if (isPlainObj(b) && isPlainObj(b.preconditions)) pre = b.preconditions as typeof pre;
      }
      const gone = await s.remove(def, ns, name, pre, opts);
      if (def.custom) return send(res, 200, gone);
      if (def.resource === 'namespaces') return send(res, 200, { ...gone, status: { phase: 'Terminating' } });
      return send(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, kind: def.resource, uid: gone.metadata.uid } });
    }
    default:
      throw methodNotAllowed();
  }
}

function unsupportedMedia(accepted: string[]): KubeError {
  return err(
    415,
    'UnsupportedMediaType',
    `the body of the request was in an unknown format - accepted media types include: ${accepted.join(', ')}`,
  );
}

async function watch(s: Server, req: http.IncomingMessage, res: http.ServerResponse, def: ResourceDef, ns: string | undefined, q: URLSearchParams): Promise<void> {
  let open = true;
  let stop: () => void = () => undefined;
  let timer: NodeJS.Timeout | undefined;
  const end = () => {
    if (!open) return;
    open = false;
    if (timer) clearTimeout(timer);
    stop();
    res.end();
  };
  const sendEv = (type: string, obj: KubeObject) => {
    if (!open) return;
    if (!res.headersSent) res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache' });
    res.write(`${JSON.stringify({ type, object: obj })}\n`);
  };
  req.on('close', end);
  res.on('close', end);
  stop = await s.watch(def, ns, q.get('labelSelector'), q.get('fieldSelector'), q.get('resourceVersion'), { send: sendEv, end });
  if (!open) {
    stop();
    return;
  }
  if (!res.headersSent) {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache' });
    res.flushHeaders();
  }
  const t = Number(q.get('timeoutSeconds') ?? 0);
  const secs = Number.isFinite(t) && t > 0 ? t : 1800;
  timer = setTimeout(end, secs * 1000);
  timer.unref();
}

/**
 * Who may talk to the server, checked before anything is read: the bearer token (constant-time compare),
 * the Host header naming the address the server listens on (no DNS-rebinding name reaches it), and no
 * Origin header (browsers send one on every cross-site request; Kubernetes clients never do).
 */
function admitRequest(req: http.IncomingMessage, token: string, hosts: ReadonlySet<string> | undefined): void {
  if (hosts && !hosts.has(String(req.headers.host ?? '').toLowerCase())) {
    throw err(403, 'Forbidden', 'the Host header does not name this server\'s address');
  }
  if (req.headers.origin !== undefined) throw err(403, 'Forbidden', 'cross-origin requests are refused (a browser page cannot use this API)');
  if (!token) return;
  const m = /^Bearer (\S+)$/.exec(String(req.headers.authorization ?? ''));
  const given = Buffer.from(m?.[1] ?? '');
  const want = Buffer.from(token);
  if (given.length !== want.length || !timingSafeEqual(given, want)) {
    throw err(401, 'Unauthorized', 'Unauthorized: a valid bearer token is required (the local Substrate writes it to the file named by kube_token_path in local.json)');
  }
}

/**
 * Starts the stand-in API server. Storage defaults to in-memory; listen defaults to 127.0.0.1 on a free port.
 * Only loopback addresses (with a bearer token) and 0600 Unix sockets are accepted.
 */
export async function startApiServer(opts: ApiServerOptions = {}): Promise<ApiServerHandle> {
  const storage = opts.storage ?? memoryStorage();
  const listen = opts.listen ?? { host: '127.0.0.1', port: 0 };
  if ('host' in listen && !isLoopbackHost(listen.host)) {
    throw new Error(`the stand-in Kubernetes API server listens on loopback only (127.0.0.0/8, ::1); refusing ${listen.host}`);
  }
  const history = opts.watchHistory ?? 2000;
  if (!Number.isInteger(history) || history < 1 || history > 100_000) throw new Error(`watchHistory must be an integer from 1 to 100000, got ${history}`);
  const s = new Server(storage, history);
  await s.init();
  const token = opts.token ?? ('host' in listen ? randomBytes(32).toString('base64url') : '');
  if ('host' in listen && token.length < 16) throw new Error('the resource API on TCP needs a bearer token of at least 16 characters');
  let hosts: Set<string> | undefined;

  const server = http.createServer((req, res) => {
    Promise.resolve()
      .then(() => admitRequest(req, token, hosts))
      .then(() => handle(s, req, res))
      .catch((e: unknown) => {
      if (e instanceof KubeError) return send(res, e.status.code, e.status);
      send(res, 500, statusOf(500, 'InternalError', `Internal error occurred: ${(e as Error)?.message ?? String(e)}`));
    });
  });
  server.keepAliveTimeout = 5_000;

  let url: string;
  let socketPath: string | undefined;
  if ('path' in listen) {
    try {
      const st = fs.lstatSync(listen.path);
      if (st.isSocket()) fs.unlinkSync(listen.path);
    } catch {
      // absent
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const old = process.umask(0o177);
      try {
        server.listen(listen.path, () => resolve());
      } finally {
        process.umask(old);
      }
    });
    fs.chmodSync(listen.path, 0o600);
    socketPath = listen.path;
    url = `unix:${listen.path}`;
  } else {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.port, listen.host, () => resolve());
    });
    const addr = server.address();
    if (!addr || typeof addr === 'string') throw new Error('unexpected server address');
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    url = `http://${host}:${addr.port}`;
    hosts = loopbackHostHeaders(addr.address, addr.port);
  }

  const defOf = (r: ResourceName) => {
    const d = DEFS[r];
    if (!d) throw new Error(`unknown resource ${String(r)}`);
    return d;
  };

  return {
    url,
    token,
    socketPath,
    onChange: (l) => s.onChange(l),
    async close() {
      s.endAllWatches();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      if (socketPath) {
        try {
          fs.unlinkSync(socketPath);
        } catch {
          // already gone
        }
      }
    },
    async get(resource, namespace, name) {
      const d = defOf(resource);
      return (await storage.get(keyOf(d, namespace, name))) ?? null;
    },
    async list(resource, namespace, labelSelector) {
      return s.listObjs(defOf(resource), namespace, labelSelector);
    },
    async apply(obj, fieldManager, o = {}) {
      const d = Object.values(DEFS).find((x) => x.kind === obj.kind && x.apiVersion === obj.apiVersion);
      if (!d) throw badRequest(`no resource for ${String(obj.apiVersion)} ${String(obj.kind)}`);
      if (!fieldManager) {
        throw invalid({ kind: 'PatchOptions', group: 'meta.k8s.io' }, '', [
          { type: 'FieldValueRequired', field: 'fieldManager', hasBadValue: false, detail: 'is required for apply patch' },
        ]);
      }
      const name = obj.metadata?.name;
      if (!name) throw invalid(d, '', [{ type: 'FieldValueRequired', field: 'metadata.name', hasBadValue: false, detail: 'name is required' }]);
      const ns = d.namespaced ? obj.metadata.namespace || 'default' : undefined;
      return (await s.apply(d, ns, name, obj, fieldManager, o.force ?? false, o.subresource, {})).obj;
    },
    async updateStatus(resource, namespace, name, mutate) {
      const d = defOf(resource);
      return s.lock(async () => {
        const old = await s.getObj(d, namespace, name);
        const next = clone(old);
        next.status = mutate(clone(old));
        return s.finishUpdate(d, old, applyDefaults(next), 'status', {});
      });
    },
    async delete(resource, namespace, name) {
      const d = defOf(resource);
      try {
        await s.remove(d, namespace, name, {}, {});
        return true;
      } catch (e) {
        if (e instanceof KubeError && e.code === 404) return false;
        throw e;
      }
    },
  };
}
