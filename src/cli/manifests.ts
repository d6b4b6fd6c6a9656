// Manifests the CLI reads, mapped onto the released Substrate v0.4.0 wire (src/gen/ateapi.ts) and onto the
// local Substrate's WorkerPool/SandboxConfig registries (src/local/api.ts). Pure: no I/O, no network.
//
// * ActorTemplate, exactly as `kubectl ate create actor-template -f` takes it: one protojson-shaped document
//   (metadata{atespace,name}, containers, volumes, snapshotConfig, sandboxConfig, resources, workerSelector),
//   decoded STRICTLY the way protojson.Unmarshal does: every key must be a field of the message (its
//   lowerCamelCase JSON name or its proto name), enums by name or number, int64 as a number or a decimal
//   string, null = unset. The pre-0.4 fields (onPause, onResume, readyz, snapshotsConfig, ...) are unknown
//   fields, hence errors. Also accepted: the same body under `spec` of a document with
//   `apiVersion: ate.dev/v1alpha1, kind: ActorTemplate` (metadata{atespace,name} at the top), so templates
//   can share a multi-document file with the Kubernetes-shaped kinds below.
// * `apiVersion: ate.dev/v1alpha1, kind: WorkerPool` → WorkerPoolSpec; `kind: SandboxConfig` (cluster
//   scoped) → SandboxConfigSpec, with the CRD's schema, CEL and admission-policy rules (addendum §2.1).
// * `kind: Atespace` (metadata.name) → an atespace to create: a convenience of this CLI (upstream has only
//   `kubectl ate create atespace`). `kind: Namespace` and `kind: Secret` are Kubernetes objects with no v0.4
//   counterpart and are rejected with what to use instead.
// * EgressPolicy, as `kubectl ate create|update egress-policy ACTOR -a A -f` takes it: exactly one
//   document, strict protojson, metadata optional on create (atespace = -a, name = "default").
//
// Every problem names its document (counted from 1 as they appear, empty ones included) and the field path;
// all documents are parsed before anything is returned, so a caller applies nothing when any is wrong.
// Errors never echo a value from the manifest (env values are secrets), only field names and enum names.
import { parseAllDocuments } from 'yaml';
import { ActorTemplate, EgressPolicy, protoMetadata as ateapiMetadata } from '../gen/ateapi.js';
import type { SandboxConfigSpec, WorkerPoolSpec } from '../local/api.js';
import { isDnsLabel, isDnsSubdomain, labelValueError, qualifiedNameError } from '../common/dns.js';

export const API_VERSION = 'ate.dev/v1alpha1';
/** The largest manifest text read at once. */
export const MAX_MANIFEST_BYTES = 3 * 1024 * 1024;

export class ManifestError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.length === 1 ? `invalid manifest: ${problems[0]}` : `invalid manifest:\n  ${problems.join('\n  ')}`);
    this.name = 'ManifestError';
  }
}

// ---------------------------------------------------------------------------------------------------------
// The protojson schema, read from the descriptor ts-proto embeds in src/gen/ateapi.ts (outputSchema=true):
// the same field names, types and enum values the server decodes with, so the two cannot drift apart.

type Scalar = 'string' | 'bool' | 'int32' | 'uint32' | 'int64' | 'uint64' | 'double' | 'bytes' | 'timestamp';
type FieldType = Scalar | { enum: string } | { msg: string } | { map: FieldType };
export interface FieldDef {
  proto: string;
  json: string;
  type: FieldType;
  repeated: boolean;
}

interface DescField {
  name: string;
  jsonName: string;
  label: number;
  type: number;
  typeName: string;
}
interface DescMessage {
  name: string;
  field: DescField[];
  nestedType: DescMessage[];
  enumType: DescEnum[];
  options?: { mapEntry?: boolean } | undefined;
}
interface DescEnum {
  name: string;
  value: Array<{ name: string; number: number }>;
}

const SCALARS: Readonly<Record<number, Scalar>> = {
  1: 'double',
  2: 'double',
  3: 'int64',
  4: 'uint64',
  5: 'int32',
  6: 'uint64',
  7: 'uint32',
  8: 'bool',
  9: 'string',
  12: 'bytes',
  13: 'uint32',
  15: 'int32',
  16: 'int64',
  17: 'int32',
  18: 'int64',
};

interface Schema {
  messages: Map<string, FieldDef[]>;
  enums: Map<string, Map<string, number>>;
}

let schema: Schema | undefined;

/** Message and enum definitions by full name ("ateapi.ActorTemplate", "ateapi.Selector.MatchLabelsEntry"). */
export function ateapiSchema(): Schema {
  if (schema) return schema;
  const fd = ateapiMetadata.fileDescriptor as unknown as { package: string; messageType: DescMessage[]; enumType: DescEnum[] };
  const rawMessages = new Map<string, DescMessage>();
  const enums = new Map<string, Map<string, number>>();
  const addEnum = (prefix: string, e: DescEnum) => enums.set(`${prefix}.${e.name}`, new Map(e.value.map((v) => [v.name, v.number])));
  const walk = (prefix: string, m: DescMessage) => {
    const full = `${prefix}.${m.name}`;
    rawMessages.set(full, m);
    for (const n of m.nestedType) walk(full, n);
    for (const e of m.enumType) addEnum(full, e);
  };
  for (const m of fd.messageType) walk(fd.package, m);
  for (const e of fd.enumType) addEnum(fd.package, e);
  const typeOfField = (f: DescField): FieldType => {
    if (f.type === 14) return { enum: f.typeName.replace(/^\./, '') };
    if (f.type === 11) {
      const name = f.typeName.replace(/^\./, '');
      if (name === 'google.protobuf.Timestamp') return 'timestamp';
      const m = rawMessages.get(name);
      if (m?.options?.mapEntry) return { map: typeOfField(m.field.find((x) => x.name === 'value')!) };
      return { msg: name };
    }
    const s = SCALARS[f.type];
    if (!s) throw new Error(`unsupported field type ${f.type} of ${f.name}`);
    return s;
  };
  const messages = new Map<string, FieldDef[]>();
  for (const [name, m] of rawMessages) {
    messages.set(
      name,
      m.field.map((f) => {
        const type = typeOfField(f);
        return { proto: f.name, json: f.jsonName, type, repeated: f.label === 3 && !(typeof type === 'object' && 'map' in type) };
      }),
    );
  }
  schema = { messages, enums };
  return schema;
}

/** Why a well-known field is unknown: names that were valid before Substrate v0.4.0. */
const REMOVED_FIELD_HINTS: Readonly<Record<string, string>> = {
  onPause: 'removed in Substrate v0.4.0; pause snapshots are node-local and need no setting',
  on_pause: 'removed in Substrate v0.4.0',
  onResume: 'removed in Substrate v0.4.0',
  on_resume: 'removed in Substrate v0.4.0',
  readyz: 'renamed wakeupProbe in Substrate v0.4 ({httpGet: {path, port}, timeoutSeconds})',
  snapshotsConfig: 'renamed snapshotConfig in Substrate v0.4 ({onCommit, storageLocation})',
  snapshots_config: 'renamed snapshot_config in Substrate v0.4',
  pauseImage: 'the pause image belongs to the SandboxConfig named by sandboxConfig.configName in Substrate v0.4',
  valueFrom: 'v0.4 env values are literal; credentials reach actors through egress credential injection (egress-policy)',
  location: 'snapshotConfig.storageLocation in Substrate v0.4',
  onSuspend: 'snapshotConfig.onCommit in Substrate v0.4',
};

interface DecodeCtx {
  problems: string[];
  where: string;
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `a ${typeof v}`;
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/** A protojson scalar; returns undefined (after recording a problem) when the value does not fit. */
function decodeScalar(type: Scalar | { enum: string }, v: unknown, path: string, ctx: DecodeCtx): unknown {
  const bad = (why: string) => {
    ctx.problems.push(`${ctx.where}: ${path}: ${why}`);
    return undefined;
  };
  if (typeof type === 'object') {
    const values = ateapiSchema().enums.get(type.enum)!;
    const short = type.enum.replace(/^ateapi\./, '');
    if (typeof v === 'string') {
      if (values.has(v)) return v;
      return bad(`invalid value for enum ${short}: "${v}" (one of ${[...values.keys()].join(', ')})`);
    }
    if (typeof v === 'number' && Number.isInteger(v)) {
      if ([...values.values()].includes(v)) return v;
      return bad(`invalid value for enum ${short}: ${v} is not one of its numbers`);
    }
    return bad(`must be a name of enum ${short} or its number, not ${typeOf(v)}`);
  }
  switch (type) {
    case 'string':
      if (typeof v === 'string') return v;
      return bad(`must be a string, not ${typeOf(v)}${typeof v === 'number' || typeof v === 'boolean' ? ' (quote it)' : ''}`);
    case 'bytes':
      if (typeof v === 'string' && /^[A-Za-z0-9+/_-]*={0,2}$/.test(v)) return v;
      return bad('must be a base64 string');
    case 'bool':
      if (typeof v === 'boolean') return v;
      return bad(`must be true or false, not ${typeOf(v)}`);
    case 'double':
      if (typeof v === 'number') return v;
      if (typeof v === 'string' && v.trim() !== '' && !Number.isNaN(Number(v))) return Number(v);
      return bad(`must be a number, not ${typeOf(v)}`);
    case 'int32':
    case 'uint32':
    case 'int64':
    case 'uint64': {
      const wide = type === 'int64' || type === 'uint64';
      let n: number;
      if (typeof v === 'number') n = v;
      else if (typeof v === 'string' && /^-?\d+$/.test(v)) n = Number(v);
      else return bad(`must be an integer${wide ? ' (a number or a decimal string)' : ''}, not ${typeOf(v)}`);
      if (!Number.isInteger(n)) return bad('must be an integer');
      if (type === 'int32' && (n < INT32_MIN || n > INT32_MAX)) return bad('is out of range for int32');
      if (type === 'uint32' && (n < 0 || n > 2 ** 32 - 1)) return bad('is out of range for uint32');
      if (type === 'uint64' && n < 0) return bad('must not be negative');
      if (wide && !Number.isSafeInteger(n)) return bad('is out of the range this client represents exactly (±2^53)');
      return n;
    }
    case 'timestamp':
      if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/.test(v) && !Number.isNaN(Date.parse(v))) return v;
      return bad('must be an RFC 3339 timestamp string (like 2026-10-08T12:00:00Z)');
  }
}

/**
 * Strict protojson decoding of `value` as message `msg` ("ActorTemplate" or a full name): returns the same
 * object with lowerCamelCase keys and int64 strings turned into numbers (what the generated fromJSON reads),
 * recording every problem in ctx.
 */
export function decodeMessage(msg: string, value: unknown, path: string, ctx: DecodeCtx): Record<string, unknown> | undefined {
  const full = msg.includes('.') ? msg : `ateapi.${msg}`;
  const fields = ateapiSchema().messages.get(full);
  if (!fields) throw new Error(`no schema for message ${full}`);
  if (!isPlainObject(value)) {
    ctx.problems.push(`${ctx.where}: ${path || '(document)'}: must be a mapping (message ${full.replace(/^ateapi\./, '')}), not ${typeOf(value)}`);
    return undefined;
  }
  const out: Record<string, unknown> = {};
  const seen = new Map<string, string>();
  for (const key of Object.keys(value)) {
    const p = join(path, key);
    const f = fields.find((x) => x.json === key || x.proto === key);
    if (!f) {
      const near = fields.find((x) => x.json.toLowerCase() === key.toLowerCase() || x.proto === key.toLowerCase());
      const hint = (Object.hasOwn(REMOVED_FIELD_HINTS, key) ? REMOVED_FIELD_HINTS[key] : undefined) ?? (near ? `did you mean ${near.json}?` : undefined);
      ctx.problems.push(`${ctx.where}: ${p}: unknown field${hint ? ` (${hint})` : ''}`);
      continue;
    }
    const prev = seen.get(f.json);
    if (prev !== undefined) {
      ctx.problems.push(`${ctx.where}: ${p}: duplicate field (also given as ${prev})`);
      continue;
    }
    seen.set(f.json, key);
    const v = value[key];
    if (v === null || v === undefined) continue; // protojson: null is the field's default
    const decoded = decodeField(f, v, p, ctx);
    if (decoded !== undefined) out[f.json] = decoded;
  }
  return out;
}

function decodeValue(type: FieldType, v: unknown, at: string, ctx: DecodeCtx): unknown {
  if (typeof type === 'object' && 'msg' in type) return decodeMessage(type.msg, v, at, ctx);
  if (typeof type === 'object' && 'map' in type) {
    if (!isPlainObject(v)) {
      ctx.problems.push(`${ctx.where}: ${at}: must be a mapping, not ${typeOf(v)}`);
      return undefined;
    }
    const m: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const kp = `${at}["${k}"]`;
      if (x === null || x === undefined) {
        ctx.problems.push(`${ctx.where}: ${kp}: null is not allowed as a map value`);
        continue;
      }
      const d = decodeValue(type.map, x, kp, ctx);
      if (d !== undefined) m[k] = d;
    }
    return m;
  }
  return decodeScalar(type, v, at, ctx);
}

function decodeField(f: FieldDef, v: unknown, p: string, ctx: DecodeCtx): unknown {
  if (!f.repeated) return decodeValue(f.type, v, p, ctx);
  if (!Array.isArray(v)) {
    ctx.problems.push(`${ctx.where}: ${p}: must be a list, not ${typeOf(v)}`);
    return undefined;
  }
  const list: unknown[] = [];
  v.forEach((x, i) => {
    const at = `${p}[${i}]`;
    if (x === null || x === undefined) {
      ctx.problems.push(`${ctx.where}: ${at}: null is not allowed in a list`);
      return;
    }
    const d = decodeValue(f.type, x, at, ctx);
    if (d !== undefined) list.push(d);
  });
  return list;
}

// ---------------------------------------------------------------------------------------------------------
// Documents

export type ManifestDoc =
  | { kind: 'SandboxConfig'; index: number; label: string; config: SandboxConfigSpec }
  | { kind: 'WorkerPool'; index: number; label: string; pool: WorkerPoolSpec }
  | { kind: 'Atespace'; index: number; label: string; name: string }
  | { kind: 'ActorTemplate'; index: number; label: string; template: ActorTemplate };

export interface ParsedManifests {
  /** In the order they appear in the text. */
  docs: ManifestDoc[];
  /** Accepted but worth saying (a legacy field, a setting without effect on one machine). */
  warnings: string[];
}

/** The order `local apply` applies kinds in: what a template needs exists before it. */
export const APPLY_ORDER: ReadonlyArray<ManifestDoc['kind']> = ['SandboxConfig', 'WorkerPool', 'Atespace', 'ActorTemplate'];

export function applyOrder(docs: readonly ManifestDoc[]): ManifestDoc[] {
  return APPLY_ORDER.flatMap((k) => docs.filter((d) => d.kind === k));
}

const ACCEPTED =
  'an ActorTemplate (protojson, as `kubectl ate create actor-template -f` takes it, or under spec of kind ActorTemplate), ' +
  `kind WorkerPool, SandboxConfig or Atespace (apiVersion ${API_VERSION})`;

interface RawDoc {
  index: number;
  value: unknown;
}

/** Splits YAML (or JSON) text into documents; syntax errors name their document. Empty documents are kept as null. */
function splitDocuments(text: string, problems: string[]): RawDoc[] {
  const size = Buffer.byteLength(text);
  if (size > MAX_MANIFEST_BYTES) {
    throw new ManifestError([`the manifest is ${(size / 1048576).toFixed(1)} MiB; at most ${MAX_MANIFEST_BYTES / 1048576} MiB are read at once (split the file)`]);
  }
  const out: RawDoc[] = [];
  parseAllDocuments(text).forEach((doc, i) => {
    const where = `document ${i + 1}`;
    if (doc.errors.length > 0) {
      // The first line only: the rest quotes the offending source line, which may hold a secret.
      for (const err of doc.errors) problems.push(`${where}: YAML syntax error: ${err.message.split('\n')[0]!.replace(/:$/, '')}`);
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      problems.push(`${where}: ${(e as Error).message.split('\n')[0]}`);
      return;
    }
    out.push({ index: i + 1, value: value ?? null });
  });
  return out;
}

function nameError(what: string, name: unknown, subdomain = false): string | undefined {
  if (typeof name !== 'string' || name === '') return `${what}: required`;
  if (subdomain ? !isDnsSubdomain(name) : !isDnsLabel(name)) {
    return `${what}: "${name}" is not a valid name (${subdomain ? 'a DNS-1123 subdomain' : 'a DNS-1123 label: lower case letters, digits and "-", at most 63'})`;
  }
  return undefined;
}

/** Kubernetes ObjectMeta keys: the ones this CLI reads, and the server-populated ones it ignores. */
const OBJECT_META_USED = ['name', 'namespace', 'labels', 'annotations'];
const OBJECT_META_IGNORED = ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'finalizers', 'selfLink', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'ownerReferences', 'generateName'];

function checkKeys(o: Record<string, unknown>, allowed: readonly string[], path: string, where: string, problems: string[], hints: Readonly<Record<string, string>> = {}): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) {
      const hint = hints[k];
      problems.push(`${where}: ${join(path, k)}: unknown field${hint ? ` (${hint})` : ''}`);
    }
  }
}

function labelsOf(v: unknown, path: string, where: string, problems: string[], reserveAteDev = false): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isPlainObject(v)) {
    problems.push(`${where}: ${path}: must be a mapping of strings, not ${typeOf(v)}`);
    return {};
  }
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) {
    const at = `${path}["${k}"]`;
    const ke = qualifiedNameError(k);
    if (ke) problems.push(`${where}: ${at}: invalid label key: ${ke}`);
    else if (reserveAteDev && (k.startsWith('ate.dev/') || k.includes('.ate.dev/'))) problems.push(`${where}: ${at}: ate.dev and its subdomains are reserved`);
    if (typeof x !== 'string') {
      problems.push(`${where}: ${at}: must be a string, not ${typeOf(x)}${x !== null && typeof x !== 'object' ? ' (quote it)' : ''}`);
      continue;
    }
    const ve = labelValueError(x);
    if (ve) problems.push(`${where}: ${at}: invalid label value: ${ve}`);
    out[k] = x;
  }
  return out;
}

function metaOf(o: Record<string, unknown>, where: string, problems: string[]): Record<string, unknown> {
  const m = o.metadata;
  if (m === undefined || m === null) {
    problems.push(`${where}: metadata: required (metadata.name)`);
    return {};
  }
  if (!isPlainObject(m)) {
    problems.push(`${where}: metadata: must be a mapping, not ${typeOf(m)}`);
    return {};
  }
  checkKeys(m, [...OBJECT_META_USED, ...OBJECT_META_IGNORED], 'metadata', where, problems, { atespace: 'a Kubernetes object has metadata.namespace; atespaces hold ActorTemplates' });
  return m;
}

function decodeTemplate(body: Record<string, unknown>, path: string, where: string, problems: string[]): ActorTemplate | undefined {
  const ctx: DecodeCtx = { problems, where };
  const before = problems.length;
  const json = decodeMessage('ActorTemplate', body, path, ctx);
  if (!json || problems.length > before) return undefined;
  return ActorTemplate.fromJSON(json);
}

/** A bare protojson ActorTemplate document (kubectl ate's manifest). */
function parseBareTemplate(o: Record<string, unknown>, index: number, problems: string[]): ManifestDoc | undefined {
  const md = isPlainObject(o.metadata) ? o.metadata : {};
  const named = typeof md.atespace === 'string' && typeof md.name === 'string' ? ` "${md.atespace}/${md.name}"` : '';
  const where = `document ${index} (ActorTemplate${named})`;
  if ('rules' in o && !('containers' in o)) {
    problems.push(`${where}: this looks like an EgressPolicy (it has rules); apply it with: substrate-driver egress-policy create ACTOR -a ATESPACE -f FILE`);
    return undefined;
  }
  const before = problems.length;
  const t = decodeTemplate(o, '', where, problems);
  if (!t) return undefined;
  requireTemplateIdentity(t, 'metadata', where, problems);
  if (problems.length > before) return undefined;
  return { kind: 'ActorTemplate', index, label: `actortemplate ${t.metadata!.atespace}/${t.metadata!.name}`, template: t };
}

function requireTemplateIdentity(t: ActorTemplate, path: string, where: string, problems: string[]): void {
  const a = nameError(`${path}.atespace`, t.metadata?.atespace);
  if (a) problems.push(`${where}: ${a}`);
  const n = nameError(`${path}.name`, t.metadata?.name);
  if (n) problems.push(`${where}: ${n}`);
}

/** kind: ActorTemplate, apiVersion ate.dev/v1alpha1: metadata{atespace,name} + the protojson body under spec. */
function parseWrappedTemplate(o: Record<string, unknown>, index: number, problems: string[]): ManifestDoc | undefined {
  const md = isPlainObject(o.metadata) ? o.metadata : {};
  const named = typeof md.name === 'string' ? ` "${typeof md.atespace === 'string' ? `${md.atespace}/` : ''}${md.name}"` : '';
  const where = `document ${index} (ActorTemplate${named})`;
  const before = problems.length;
  checkKeys(o, ['apiVersion', 'kind', 'metadata', 'spec', 'status'], '', where, problems);
  if (!isPlainObject(o.metadata)) {
    problems.push(`${where}: metadata: required (metadata.atespace and metadata.name)`);
  } else {
    checkKeys(o.metadata, ['atespace', 'name'], 'metadata', where, problems, {
      namespace: 'ActorTemplates live in an atespace: use metadata.atespace (Substrate v0.4 templates are not Kubernetes objects)',
    });
  }
  if (!isPlainObject(o.spec)) {
    problems.push(`${where}: spec: required (the ActorTemplate's protojson fields: containers, volumes, snapshotConfig, sandboxConfig, ...)`);
    return undefined;
  }
  if ('metadata' in o.spec) problems.push(`${where}: spec.metadata: unknown field (metadata goes at the top of the document)`);
  const spec = { ...o.spec };
  delete spec.metadata;
  const t = decodeTemplate(spec, 'spec', where, problems);
  if (!t) return undefined;
  t.metadata = { atespace: String(md.atespace ?? ''), name: String(md.name ?? ''), uid: '', version: 0 };
  requireTemplateIdentity(t, 'metadata', where, problems);
  if (problems.length > before) return undefined;
  return { kind: 'ActorTemplate', index, label: `actortemplate ${t.metadata.atespace}/${t.metadata.name}`, template: t };
}

const POOL_TEMPLATE_KEYS = ['labels', 'annotations', 'nodeSelector', 'tolerations', 'priorityClassName', 'nodeAffinity', 'resources', 'serviceAccountName'];

function parseWorkerPool(o: Record<string, unknown>, index: number, problems: string[], warnings: string[]): ManifestDoc | undefined {
  const md0 = isPlainObject(o.metadata) ? o.metadata : {};
  const where = `document ${index} (WorkerPool${typeof md0.name === 'string' ? ` "${md0.name}"` : ''})`;
  const before = problems.length;
  checkKeys(o, ['apiVersion', 'kind', 'metadata', 'spec', 'status'], '', where, problems);
  const md = metaOf(o, where, problems);
  const ne = nameError('metadata.name', md.name, true);
  if (ne) problems.push(`${where}: ${ne}`);
  let namespace = 'default';
  if (md.namespace !== undefined && md.namespace !== null) {
    const nse = nameError('metadata.namespace', md.namespace);
    if (nse) problems.push(`${where}: ${nse}`);
    else namespace = md.namespace as string;
  }
  const labels = labelsOf(md.labels, 'metadata.labels', where, problems);
  labelsOf(md.annotations, 'metadata.annotations', where, problems);
  if (!isPlainObject(o.spec)) {
    problems.push(`${where}: spec: required (spec.replicas)`);
    return undefined;
  }
  const spec = o.spec;
  checkKeys(spec, ['replicas', 'workerImage', 'ateomImage', 'sandboxClass', 'sandboxConfigName', 'template'], 'spec', where, problems);
  let replicas = 0;
  if (spec.replicas === undefined || spec.replicas === null) problems.push(`${where}: spec.replicas: required`);
  else if (typeof spec.replicas !== 'number' || !Number.isInteger(spec.replicas) || spec.replicas < 0 || spec.replicas > INT32_MAX) {
    problems.push(`${where}: spec.replicas: must be an integer of at least 0`);
  } else replicas = spec.replicas;
  let workerImage = '';
  for (const k of ['workerImage', 'ateomImage'] as const) {
    const v = spec[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string') problems.push(`${where}: spec.${k}: must be a string, not ${typeOf(v)}`);
  }
  if (typeof spec.ateomImage === 'string') {
    if (typeof spec.workerImage === 'string' && spec.workerImage !== spec.ateomImage) {
      problems.push(`${where}: spec.ateomImage: conflicts with spec.workerImage (ateomImage is its pre-v0.4 name; keep only workerImage)`);
    } else {
      warnings.push(`${where}: spec.ateomImage is the pre-v0.4 name of spec.workerImage; read as workerImage`);
      workerImage = spec.ateomImage;
    }
  }
  if (typeof spec.workerImage === 'string') workerImage = spec.workerImage;
  let sandboxClass: WorkerPoolSpec['sandboxClass'] = 'gvisor';
  if (spec.sandboxClass !== undefined && spec.sandboxClass !== null) {
    if (spec.sandboxClass === 'gvisor' || spec.sandboxClass === 'microvm') sandboxClass = spec.sandboxClass;
    else problems.push(`${where}: spec.sandboxClass: must be gvisor or microvm`);
  }
  if (spec.sandboxConfigName !== undefined && spec.sandboxConfigName !== null) {
    if (typeof spec.sandboxConfigName !== 'string') problems.push(`${where}: spec.sandboxConfigName: must be a string, not ${typeOf(spec.sandboxConfigName)}`);
    else warnings.push(`${where}: spec.sandboxConfigName has no effect locally (local workers run this machine's runsc)`);
  }
  if (spec.template !== undefined && spec.template !== null) {
    if (!isPlainObject(spec.template)) problems.push(`${where}: spec.template: must be a mapping, not ${typeOf(spec.template)}`);
    else {
      const t = spec.template;
      checkKeys(t, POOL_TEMPLATE_KEYS, 'spec.template', where, problems);
      // The labels worker pods carry are what worker selectors match upstream: the pool's workers carry them here.
      Object.assign(labels, labelsOf(t.labels, 'spec.template.labels', where, problems, true));
      labelsOf(t.annotations, 'spec.template.annotations', where, problems, true);
      const ignored = Object.keys(t).filter((k) => k !== 'labels' && POOL_TEMPLATE_KEYS.includes(k));
      if (ignored.length > 0) {
        warnings.push(`${where}: spec.template.${ignored.join(', spec.template.')} ignored: worker pods are Kubernetes scheduling, local workers are this machine's slots`);
      }
    }
  }
  if (problems.length > before) return undefined;
  const name = md.name as string;
  return { kind: 'WorkerPool', index, label: `workerpool.ate.dev ${namespace}/${name}`, pool: { namespace, name, labels, replicas, sandboxClass, workerImage } };
}

const GVISOR_ASSET_MSG = "a gvisor SandboxConfig must define a 'gvisor' (release tarball) or legacy 'runsc' asset for every architecture under spec.assets";
const MICROVM_ASSET_MSG =
  'a microvm SandboxConfig must define cloud-hypervisor, virtiofsd, kata-kernel, and kata-image assets for every architecture under spec.assets';
const MICROVM_ASSETS = ['cloud-hypervisor', 'virtiofsd', 'kata-kernel', 'kata-image'];

function parseSandboxConfig(o: Record<string, unknown>, index: number, problems: string[], warnings: string[]): ManifestDoc | undefined {
  const md0 = isPlainObject(o.metadata) ? o.metadata : {};
  const where = `document ${index} (SandboxConfig${typeof md0.name === 'string' ? ` "${md0.name}"` : ''})`;
  const before = problems.length;
  checkKeys(o, ['apiVersion', 'kind', 'metadata', 'spec'], '', where, problems);
  const md = metaOf(o, where, problems);
  const ne = nameError('metadata.name', md.name, true);
  if (ne) problems.push(`${where}: ${ne}`);
  if (md.namespace !== undefined && md.namespace !== null) warnings.push(`${where}: SandboxConfig is cluster-scoped; metadata.namespace ignored`);
  labelsOf(md.labels, 'metadata.labels', where, problems);
  if (!isPlainObject(o.spec)) {
    problems.push(`${where}: spec: required (spec.sandboxClass, spec.pauseImage)`);
    return undefined;
  }
  const spec = o.spec;
  checkKeys(spec, ['sandboxClass', 'pauseImage', 'assets', 'default'], 'spec', where, problems);
  if (spec.default !== undefined) warnings.push(`${where}: spec.default is not part of the v0.4.0 SandboxConfig schema; ignored`);
  let sandboxClass: SandboxConfigSpec['sandboxClass'] = 'gvisor';
  if (spec.sandboxClass !== undefined && spec.sandboxClass !== null) {
    if (spec.sandboxClass === 'gvisor' || spec.sandboxClass === 'microvm') sandboxClass = spec.sandboxClass;
    else problems.push(`${where}: spec.sandboxClass: must be gvisor or microvm`);
  }
  let pauseImage: string | undefined;
  if (spec.pauseImage !== undefined && spec.pauseImage !== null) {
    if (typeof spec.pauseImage !== 'string') problems.push(`${where}: spec.pauseImage: must be a string, not ${typeOf(spec.pauseImage)}`);
    else {
      pauseImage = spec.pauseImage;
      if (!pauseImage.includes('@')) problems.push(`${where}: spec.pauseImage: All images must include a digest`);
    }
  }
  if ((sandboxClass === 'gvisor') !== (pauseImage !== undefined)) {
    problems.push(`${where}: spec: pauseImage is required for gvisor and not allowed for other sandbox classes`);
  }
  let assets: SandboxConfigSpec['assets'];
  if (spec.assets !== undefined && spec.assets !== null) {
    if (!isPlainObject(spec.assets)) problems.push(`${where}: spec.assets: must be a mapping of architecture to assets, not ${typeOf(spec.assets)}`);
    else {
      assets = {};
      for (const [arch, byName] of Object.entries(spec.assets)) {
        const ap = `spec.assets.${arch}`;
        if (!isPlainObject(byName)) {
          problems.push(`${where}: ${ap}: must be a mapping of asset name to {url, sha256}, not ${typeOf(byName)}`);
          continue;
        }
        const files: Record<string, { url: string; sha256: string }> = {};
        for (const [asset, file] of Object.entries(byName)) {
          const fp = `${ap}.${asset}`;
          if (!isPlainObject(file)) {
            problems.push(`${where}: ${fp}: must be a mapping {url, sha256}, not ${typeOf(file)}`);
            continue;
          }
          checkKeys(file, ['url', 'sha256'], fp, where, problems);
          if (typeof file.url !== 'string' || file.url.length < 1) problems.push(`${where}: ${fp}.url: required (a non-empty string)`);
          if (typeof file.sha256 !== 'string' || !/^[a-f0-9]{64}$/.test(file.sha256)) problems.push(`${where}: ${fp}.sha256: must be 64 lower-case hex digits`);
          files[asset] = { url: String(file.url ?? ''), sha256: String(file.sha256 ?? '') };
        }
        assets[arch] = files;
        const names = Object.keys(byName);
        if (sandboxClass === 'gvisor' && !names.includes('gvisor') && !names.includes('runsc')) problems.push(`${where}: ${ap}: ${GVISOR_ASSET_MSG}`);
        if (sandboxClass === 'microvm' && !MICROVM_ASSETS.every((n) => names.includes(n))) problems.push(`${where}: ${ap}: ${MICROVM_ASSET_MSG}`);
      }
    }
  }
  if (problems.length > before) return undefined;
  const name = md.name as string;
  const config: SandboxConfigSpec = { name, sandboxClass, ...(pauseImage !== undefined ? { pauseImage } : {}), ...(assets ? { assets } : {}) };
  return { kind: 'SandboxConfig', index, label: `sandboxconfig.ate.dev ${name}`, config };
}

function parseAtespace(o: Record<string, unknown>, index: number, problems: string[]): ManifestDoc | undefined {
  const md0 = isPlainObject(o.metadata) ? o.metadata : {};
  const where = `document ${index} (Atespace${typeof md0.name === 'string' ? ` "${md0.name}"` : ''})`;
  const before = problems.length;
  checkKeys(o, ['apiVersion', 'kind', 'metadata'], '', where, problems);
  if (!isPlainObject(o.metadata)) problems.push(`${where}: metadata: required (metadata.name)`);
  else {
    checkKeys(o.metadata, ['name'], 'metadata', where, problems);
    const ne = nameError('metadata.name', o.metadata.name);
    if (ne) problems.push(`${where}: ${ne}`);
  }
  if (problems.length > before) return undefined;
  const name = (o.metadata as Record<string, unknown>).name as string;
  return { kind: 'Atespace', index, label: `atespace ${name}`, name };
}

/**
 * Parses the documents of a manifest file for `local apply` / `templates create`. Throws ManifestError
 * listing every problem when any document is invalid (so nothing is applied); returns the documents in
 * file order otherwise. `only` restricts the accepted kinds.
 */
export function parseManifests(text: string, opts: { only?: ReadonlyArray<ManifestDoc['kind']> } = {}): ParsedManifests {
  const problems: string[] = [];
  const warnings: string[] = [];
  const docs: ManifestDoc[] = [];
  const raw = splitDocuments(text, problems);
  for (const { index, value } of raw) {
    const where = `document ${index}`;
    if (value === null) continue; // an empty document (a trailing ---, comments only)
    if (!isPlainObject(value)) {
      problems.push(`${where}: expected a mapping (${ACCEPTED}), got ${typeOf(value)}`);
      continue;
    }
    const hasKind = 'kind' in value || 'apiVersion' in value;
    let doc: ManifestDoc | undefined;
    if (!hasKind) {
      doc = parseBareTemplate(value, index, problems);
    } else {
      const kind = value.kind;
      const apiVersion = value.apiVersion;
      if (typeof kind !== 'string' || kind === '') {
        problems.push(`${where}: kind: required with apiVersion; accepted: ${ACCEPTED}`);
        continue;
      }
      const wantApi = (k: string, optional = false): boolean => {
        if (apiVersion === API_VERSION || (optional && (apiVersion === undefined || apiVersion === null))) return true;
        problems.push(`${where} (${k}): apiVersion: must be "${API_VERSION}"${apiVersion === undefined ? ' (missing)' : ''}`);
        return false;
      };
      switch (kind) {
        case 'ActorTemplate':
          if (wantApi(kind)) doc = parseWrappedTemplate(value, index, problems);
          break;
        case 'WorkerPool':
          if (wantApi(kind)) doc = parseWorkerPool(value, index, problems, warnings);
          break;
        case 'SandboxConfig':
          if (wantApi(kind)) doc = parseSandboxConfig(value, index, problems, warnings);
          break;
        case 'Atespace':
          if (wantApi(kind, true)) doc = parseAtespace(value, index, problems);
          break;
        case 'Namespace':
          problems.push(
            `${where} (Namespace): Namespaces are Kubernetes objects; Substrate v0.4 has atespaces instead: write kind: Atespace (metadata.name) or run substrate-driver atespaces create NAME`,
          );
          break;
        case 'Secret':
          problems.push(
            `${where} (Secret): Substrate v0.4 templates take no Secrets (env values are literal); credentials reach actors through egress credential injection: substrate-driver egress-policy create`,
          );
          break;
        case 'EgressPolicy':
          problems.push(`${where} (EgressPolicy): an egress policy belongs to one actor; create it with: substrate-driver egress-policy create ACTOR -a ATESPACE -f FILE`);
          break;
        default:
          problems.push(`${where}: unsupported kind "${kind}"; accepted: ${ACCEPTED}`);
      }
    }
    if (!doc) continue;
    if (opts.only && !opts.only.includes(doc.kind)) {
      problems.push(`${where} (${doc.kind}): not accepted here (only ${opts.only.join(', ')})`);
      continue;
    }
    const dup = docs.find((d) => d.label === doc!.label);
    if (dup) {
      problems.push(`${where}: ${doc.label} is also defined by document ${dup.index}`);
      continue;
    }
    docs.push(doc);
  }
  if (problems.length === 0 && docs.length === 0) problems.push('manifest is empty');
  if (problems.length > 0) throw new ManifestError(byDocument(problems));
  return { docs, warnings };
}

/** Problems in document order (a stable sort: each document's own problems keep theirs). */
function byDocument(problems: string[]): string[] {
  const num = (p: string) => Number(/^document (\d+)/.exec(p)?.[1] ?? 0);
  return problems.map((p, i) => ({ p, i })).sort((a, b) => num(a.p) - num(b.p) || a.i - b.i).map((x) => x.p);
}

/** The single document of a kubectl-ate manifest: "manifest is empty" / "more than one document". */
function singleDocument(text: string): unknown {
  const problems: string[] = [];
  const raw = splitDocuments(text, problems);
  if (problems.length > 0) throw new ManifestError(problems);
  if (raw.length === 0 || (raw.length === 1 && raw[0]!.value === null)) throw new ManifestError(['manifest is empty']);
  if (raw.length > 1) throw new ManifestError(['manifest holds more than one document, expected one']);
  return raw[0]!.value;
}

export const EGRESS_POLICY_NAME = 'default';

/**
 * An EgressPolicy manifest for `egress-policy create|update ACTOR -a ATESPACE -f`: exactly one document,
 * strict protojson. metadata.atespace defaults to `atespace` and must equal it; metadata.name defaults to
 * "default" and must be it. `update` requires the metadata.uid and metadata.version preconditions.
 */
export function parseEgressPolicyManifest(text: string, opts: { atespace: string; actor: string; update?: boolean }): EgressPolicy {
  const value = singleDocument(text);
  const problems: string[] = [];
  const json = decodeMessage('EgressPolicy', value, '', { problems, where: 'EgressPolicy' });
  if (!json || problems.length > 0) throw new ManifestError(problems);
  const p = EgressPolicy.fromJSON(json);
  p.metadata ??= { atespace: '', name: '', uid: '', version: 0 };
  if (p.metadata.atespace === '') p.metadata.atespace = opts.atespace;
  if (p.metadata.name === '') p.metadata.name = EGRESS_POLICY_NAME;
  if (p.metadata.atespace !== opts.atespace) throw new ManifestError([`manifest metadata.atespace "${p.metadata.atespace}" does not match --atespace "${opts.atespace}"`]);
  if (p.metadata.name !== EGRESS_POLICY_NAME) throw new ManifestError([`manifest metadata.name "${p.metadata.name}" must be "${EGRESS_POLICY_NAME}"`]);
  if (opts.update && (p.metadata.uid === '' || !p.metadata.version)) {
    throw new ManifestError([
      `manifest for actor "${opts.actor}" in atespace "${opts.atespace}" lacks the metadata.uid and metadata.version preconditions that "egress-policy get -o yaml" prints`,
    ]);
  }
  return p;
}

// ---------------------------------------------------------------------------------------------------------
// Template comparison: ALREADY_EXISTS on create is "unchanged" only when the stored template says the same.

function stripForCompare(t: ActorTemplate): Record<string, unknown> {
  const j = ActorTemplate.toJSON(ActorTemplate.fromPartial({ ...t, metadata: undefined, status: undefined })) as Record<string, unknown>;
  // Server-side defaults (ateapi.proto comments): onCommit FULL when unset; wakeupProbe path "/" and 30 s.
  const sc = (j.snapshotConfig ?? {}) as Record<string, unknown>;
  if (j.snapshotConfig !== undefined && (sc.onCommit === undefined || sc.onCommit === 'SNAPSHOT_CONTENT_SCOPE_UNSPECIFIED')) sc.onCommit = 'SNAPSHOT_CONTENT_SCOPE_FULL';
  for (const c of (j.containers ?? []) as Array<Record<string, unknown>>) {
    const probe = c.wakeupProbe as Record<string, unknown> | undefined;
    if (!probe) continue;
    probe.timeoutSeconds ??= 30;
    const hg = probe.httpGet as Record<string, unknown> | undefined;
    if (hg) hg.path ??= '/';
  }
  return j;
}

/**
 * The field paths where a stored template differs from a manifest's (empty = the same template). Paths
 * only: the values (env among them) are never echoed.
 */
export function templateDifferences(stored: ActorTemplate, wanted: ActorTemplate): string[] {
  const diffs: string[] = [];
  const walk = (a: unknown, b: unknown, path: string) => {
    if (Array.isArray(a) && Array.isArray(b)) {
      if (a.length !== b.length) diffs.push(path);
      else a.forEach((x, i) => walk(x, b[i], `${path}[${i}]`));
      return;
    }
    if (isPlainObject(a) && isPlainObject(b)) {
      for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) walk(a[k], b[k], join(path, k));
      return;
    }
    if (a !== b) diffs.push(path || '(template)');
  };
  walk(stripForCompare(stored), stripForCompare(wanted), '');
  return diffs;
}
