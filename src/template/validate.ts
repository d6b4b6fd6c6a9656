// Validation and defaulting of the objects the driver and the local Substrate accept, enforcing every rule of
// the pinned `ate.dev/v1alpha1` CRDs (ateapi.md §3.1 ActorTemplate, §3.3 WorkerPool) plus the core v1
// Namespace/Secret rules we rely on. Messages are shaped exactly like the Kubernetes API server's
// field errors (`<path>: <Type>: <value>: <detail>`), including its habit of printing the schema type name
// ("string", "object") instead of the value for CEL rule failures.
//
// Also here: the two atelet rules the CRD does not express (no container named `pause`, no duplicate container
// names), the CRD defaults, the spec immutability rule, and a schema walk that finds or prunes fields the CRD
// does not declare.
import { isDnsLabel, isDnsSubdomain, labelValueError, qualifiedNameError } from '../common/dns.js';
import { parseQuantity } from '../common/quantity.js';

// ---------------------------------------------------------------------------------------------------------
// Field errors (k8s.io/apimachinery/pkg/util/validation/field)

export type FieldErrorType =
  | 'FieldValueRequired'
  | 'FieldValueInvalid'
  | 'FieldValueNotSupported'
  | 'FieldValueDuplicate'
  | 'FieldValueTooLong'
  | 'FieldValueTooMany'
  | 'FieldValueForbidden'
  | 'FieldValueTypeInvalid';

const TYPE_TEXT: Record<FieldErrorType, string> = {
  FieldValueRequired: 'Required value',
  FieldValueInvalid: 'Invalid value',
  FieldValueNotSupported: 'Unsupported value',
  FieldValueDuplicate: 'Duplicate value',
  FieldValueTooLong: 'Too long',
  FieldValueTooMany: 'Too many',
  FieldValueForbidden: 'Forbidden',
  FieldValueTypeInvalid: 'Invalid value',
};

export interface FieldError {
  type: FieldErrorType;
  /** e.g. `spec.containers[0].image` */
  field: string;
  /** Present when the message prints a value. */
  badValue?: string | number | boolean;
  hasBadValue: boolean;
  detail: string;
}

/** The part after `<field>: `, as in a Status cause's message. */
export function fieldErrorBody(e: FieldError): string {
  let s = TYPE_TEXT[e.type];
  const omit = e.type === 'FieldValueRequired' || e.type === 'FieldValueForbidden' || e.type === 'FieldValueTooLong';
  if (!omit && e.hasBadValue) {
    s += typeof e.badValue === 'string' ? `: ${JSON.stringify(e.badValue)}` : `: ${String(e.badValue)}`;
  }
  if (e.detail) s += `: ${e.detail}`;
  return s;
}

export function formatFieldError(e: FieldError): string {
  return `${e.field}: ${fieldErrorBody(e)}`;
}

class Errs {
  readonly list: FieldError[] = [];
  private add(type: FieldErrorType, field: string, detail: string, badValue?: string | number | boolean, has = true) {
    this.list.push({ type, field, detail, badValue, hasBadValue: has });
  }
  required(field: string, detail = '') {
    this.add('FieldValueRequired', field, detail, undefined, false);
  }
  invalid(field: string, value: string | number | boolean, detail: string) {
    this.add('FieldValueInvalid', field, detail, value);
  }
  /** A CEL rule failure: the API server prints the schema type, not the value. */
  cel(field: string, schemaType: 'string' | 'object' | 'array', message: string) {
    this.add('FieldValueInvalid', field, message, schemaType);
  }
  notSupported(field: string, value: string, supported: string[]) {
    this.add('FieldValueNotSupported', field, `supported values: ${supported.map((s) => JSON.stringify(s)).join(', ')}`, value);
  }
  duplicate(field: string, value: string) {
    this.add('FieldValueDuplicate', field, '', value);
  }
  tooLong(field: string, max: number) {
    this.add('FieldValueTooLong', field, `may not be more than ${max} bytes`, undefined, false);
  }
  tooMany(field: string, actual: number, max: number) {
    this.add('FieldValueTooMany', field, `must have at most ${max} items`, actual);
  }
  forbidden(field: string, detail: string) {
    this.add('FieldValueForbidden', field, detail, undefined, false);
  }
  typeInvalid(field: string, want: string, got: unknown) {
    const t = jsonType(got);
    this.add('FieldValueTypeInvalid', field, `${field} in body must be of type ${want}: ${JSON.stringify(t)}`, t);
  }
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const has = (o: Obj, k: string) => Object.prototype.hasOwnProperty.call(o, k) && o[k] !== undefined && o[k] !== null;

// Typed accessors that record a type error and return undefined when the JSON type is wrong.
function str(e: Errs, o: Obj, k: string, path: string): string | undefined {
  if (!has(o, k)) return undefined;
  const v = o[k];
  if (typeof v !== 'string') {
    e.typeInvalid(path, 'string', v);
    return undefined;
  }
  return v;
}
function int(e: Errs, o: Obj, k: string, path: string): number | undefined {
  if (!has(o, k)) return undefined;
  const v = o[k];
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    e.typeInvalid(path, 'integer', v);
    return undefined;
  }
  return v;
}
function bool(e: Errs, o: Obj, k: string, path: string): boolean | undefined {
  if (!has(o, k)) return undefined;
  const v = o[k];
  if (typeof v !== 'boolean') {
    e.typeInvalid(path, 'boolean', v);
    return undefined;
  }
  return v;
}
function obj(e: Errs, o: Obj, k: string, path: string): Obj | undefined {
  if (!has(o, k)) return undefined;
  const v = o[k];
  if (!isObj(v)) {
    e.typeInvalid(path, 'object', v);
    return undefined;
  }
  return v;
}
function arr(e: Errs, o: Obj, k: string, path: string): unknown[] | undefined {
  if (!has(o, k)) return undefined;
  const v = o[k];
  if (!Array.isArray(v)) {
    e.typeInvalid(path, 'array', v);
    return undefined;
  }
  return v;
}
function strMap(e: Errs, o: Obj, k: string, path: string): Record<string, string> | undefined {
  const m = obj(e, o, k, path);
  if (!m) return undefined;
  let ok = true;
  for (const [mk, mv] of Object.entries(m)) {
    if (typeof mv !== 'string') {
      e.typeInvalid(`${path}.${mk}`, 'string', mv);
      ok = false;
    }
  }
  return ok ? (m as Record<string, string>) : undefined;
}

function pattern(e: Errs, path: string, v: string, re: RegExp, src: string) {
  if (!re.test(v)) e.invalid(path, v, `${path} in body should match '${src}'`);
}
function minLength(e: Errs, path: string, v: string, n: number): boolean {
  if (v.length < n) {
    e.invalid(path, v, `${path} in body should be at least ${n} chars long`);
    return false;
  }
  return true;
}
function maxLength(e: Errs, path: string, v: string, n: number): boolean {
  if (v.length > n) {
    e.tooLong(path, n);
    return false;
  }
  return true;
}
function range(e: Errs, path: string, v: number, min?: number, max?: number) {
  if (min !== undefined && v < min) e.invalid(path, v, `${path} in body should be greater than or equal to ${min}`);
  if (max !== undefined && v > max) e.invalid(path, v, `${path} in body should be less than or equal to ${max}`);
}
function maxItems(e: Errs, path: string, a: unknown[], n: number) {
  if (a.length > n) e.tooMany(path, a.length, n);
}

// ---------------------------------------------------------------------------------------------------------
// Kubernetes name rules with the API server's messages

const DNS_LABEL_SRC = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const DNS_SUBDOMAIN_SRC = '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*';

/** apimachinery IsDNS1123Label messages. */
export function dnsLabelMessages(v: string): string[] {
  const out: string[] = [];
  if (v.length > 63) out.push('must be no more than 63 characters');
  if (!new RegExp(`^${DNS_LABEL_SRC}$`).test(v)) {
    out.push(
      `a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '${DNS_LABEL_SRC}')`,
    );
  }
  return out;
}

/** apimachinery IsDNS1123Subdomain messages. */
export function dnsSubdomainMessages(v: string): string[] {
  const out: string[] = [];
  if (v.length > 253) out.push('must be no more than 253 characters');
  if (!new RegExp(`^${DNS_SUBDOMAIN_SRC}$`).test(v)) {
    out.push(
      `a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '${DNS_SUBDOMAIN_SRC}')`,
    );
  }
  return out;
}

const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;

// ---------------------------------------------------------------------------------------------------------
// ObjectMeta

const TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024;

function validateMeta(e: Errs, o: Obj, opts: { namespaced: boolean; name: 'subdomain' | 'label' }) {
  const meta = obj(e, o, 'metadata', 'metadata');
  if (!meta) {
    if (!has(o, 'metadata')) e.required('metadata.name', 'name or generateName is required');
    return;
  }
  const name = str(e, meta, 'name', 'metadata.name');
  const generateName = str(e, meta, 'generateName', 'metadata.generateName');
  if (!name && !generateName) {
    e.required('metadata.name', 'name or generateName is required');
  } else if (name) {
    const msgs = opts.name === 'label' ? dnsLabelMessages(name) : dnsSubdomainMessages(name);
    for (const m of msgs) e.invalid('metadata.name', name, m);
  }
  const ns = str(e, meta, 'namespace', 'metadata.namespace');
  if (ns !== undefined && ns !== '') {
    if (!opts.namespaced) e.forbidden('metadata.namespace', 'not allowed on this type');
    else for (const m of dnsLabelMessages(ns)) e.invalid('metadata.namespace', ns, m);
  }
  const labels = strMap(e, meta, 'labels', 'metadata.labels');
  if (labels) {
    for (const [k, v] of Object.entries(labels)) {
      const ke = qualifiedNameError(k);
      if (ke) e.invalid('metadata.labels', k, ke);
      const ve = labelValueError(v);
      if (ve) e.invalid('metadata.labels', v, ve);
    }
  }
  const ann = strMap(e, meta, 'annotations', 'metadata.annotations');
  if (ann) {
    let total = 0;
    for (const [k, v] of Object.entries(ann)) {
      const ke = qualifiedNameError(k.toLowerCase());
      if (ke) e.invalid('metadata.annotations', k, ke);
      total += Buffer.byteLength(k) + Buffer.byteLength(v);
    }
    if (total > TOTAL_ANNOTATION_SIZE_LIMIT) e.tooLong('metadata.annotations', TOTAL_ANNOTATION_SIZE_LIMIT);
  }
}

function validateTypeMeta(e: Errs, o: Obj, apiVersion: string, kind: string) {
  if (o.apiVersion !== apiVersion) e.invalid('apiVersion', String(o.apiVersion ?? ''), `must be ${JSON.stringify(apiVersion)}`);
  if (o.kind !== kind) e.invalid('kind', String(o.kind ?? ''), `must be ${JSON.stringify(kind)}`);
}

// ---------------------------------------------------------------------------------------------------------
// LabelSelector (metav1validation.ValidateLabelSelector)

function validateLabelSelector(e: Errs, sel: Obj, path: string) {
  const ml = strMap(e, sel, 'matchLabels', `${path}.matchLabels`);
  if (ml) {
    for (const [k, v] of Object.entries(ml)) {
      const ke = qualifiedNameError(k);
      if (ke) e.invalid(`${path}.matchLabels`, k, ke);
      const ve = labelValueError(v);
      if (ve) e.invalid(`${path}.matchLabels`, v, ve);
    }
  }
  const me = arr(e, sel, 'matchExpressions', `${path}.matchExpressions`);
  me?.forEach((x, i) => {
    const p = `${path}.matchExpressions[${i}]`;
    if (!isObj(x)) return e.typeInvalid(p, 'object', x);
    const key = str(e, x, 'key', `${p}.key`);
    if (key === undefined) e.required(`${p}.key`);
    else {
      const ke = qualifiedNameError(key);
      if (ke) e.invalid(`${p}.key`, key, ke);
    }
    const op = str(e, x, 'operator', `${p}.operator`);
    const values = arr(e, x, 'values', `${p}.values`);
    values?.forEach((v, j) => {
      if (typeof v !== 'string') e.typeInvalid(`${p}.values[${j}]`, 'string', v);
    });
    if (op === undefined) e.required(`${p}.operator`);
    else if (op === 'In' || op === 'NotIn') {
      if (!values || values.length === 0) e.required(`${p}.values`, "must be specified when `operator` is 'In' or 'NotIn'");
    } else if (op === 'Exists' || op === 'DoesNotExist') {
      if (values && values.length > 0) e.forbidden(`${p}.values`, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'");
    } else e.invalid(`${p}.operator`, op, 'not a valid selector operator');
  });
}

// ---------------------------------------------------------------------------------------------------------
// ActorTemplate (ateapi.md §3.1)

const ENV_NAME_SRC = '^[ -<>-~]+$';
const ENV_NAME = /^[ -<>-~]+$/;
const SECRET_KEY_SRC = '^[-._a-zA-Z0-9]+$';
const READYZ_PATH_SRC = "^/([A-Za-z0-9\\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$";
const READYZ_PATH = /^\/([A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$/;
const PINNED_MSG = 'All images must be pinned (changing the image invalidates snapshots)';
const DNS_LABEL_MSG = 'Name must be a valid DNS label';
const DNS_SUBDOMAIN_MSG = 'Name must be a valid DNS subdomain';
const MOUNT_PATH_MSG =
  "MountPath must be a clean absolute Unix path: must start with '/', not be '/', and contain no ':', '..', '.', '//', trailing '/', or control characters";
/** The pause container is the sandbox's root container in atelet; a workload container may not take its name. */
export const RESERVED_CONTAINER_NAME = 'pause';

export function isCleanMountPath(p: string): boolean {
  return (
    p.startsWith('/') &&
    p.length > 1 &&
    !p.endsWith('/') &&
    !p.includes('//') &&
    !p.includes(':') &&
    // eslint-disable-next-line no-control-regex
    !/[\x00-\x1f\x7f]/.test(p) &&
    !/(^|\/)\.\.?(\/|$)/.test(p)
  );
}

function validateImage(e: Errs, o: Obj, k: string, path: string) {
  const img = str(e, o, k, path);
  if (img === undefined || img === '') {
    if (!(has(o, k) && typeof o[k] !== 'string')) e.required(path);
    return;
  }
  if (!img.includes('@')) e.cel(path, 'string', PINNED_MSG);
}

function validateEnv(e: Errs, x: unknown, p: string) {
  if (!isObj(x)) return e.typeInvalid(p, 'object', x);
  const name = str(e, x, 'name', `${p}.name`);
  if (name === undefined) {
    if (!has(x, 'name')) e.required(`${p}.name`);
  } else if (minLength(e, `${p}.name`, name, 1)) pattern(e, `${p}.name`, name, ENV_NAME, ENV_NAME_SRC);
  str(e, x, 'value', `${p}.value`);
  const vf = obj(e, x, 'valueFrom', `${p}.valueFrom`);
  if (has(x, 'value') === has(x, 'valueFrom')) {
    e.cel(p, 'object', 'exactly one of the fields in [value valueFrom] must be set');
  }
  if (!vf) return;
  const vfp = `${p}.valueFrom`;
  const n = Object.keys(vf).length;
  if (n < 1) e.invalid(vfp, n, `${vfp} in body should have at least 1 properties`);
  if (n > 1) e.invalid(vfp, n, `${vfp} in body should have at most 1 properties`);
  const skr = obj(e, vf, 'secretKeyRef', `${vfp}.secretKeyRef`);
  if (!skr) return;
  const sp = `${vfp}.secretKeyRef`;
  const sname = str(e, skr, 'name', `${sp}.name`);
  if (sname === undefined) {
    if (!has(skr, 'name')) e.required(`${sp}.name`);
  } else if (maxLength(e, `${sp}.name`, sname, 253) && !isDnsSubdomain(sname)) {
    e.cel(`${sp}.name`, 'string', DNS_SUBDOMAIN_MSG);
  }
  const key = str(e, skr, 'key', `${sp}.key`);
  if (key === undefined) {
    if (!has(skr, 'key')) e.required(`${sp}.key`);
  } else if (minLength(e, `${sp}.key`, key, 1)) pattern(e, `${sp}.key`, key, CONFIG_KEY, SECRET_KEY_SRC);
  bool(e, skr, 'optional', `${sp}.optional`);
}

function validateContainer(e: Errs, c: unknown, p: string) {
  if (!isObj(c)) return e.typeInvalid(p, 'object', c);
  const name = str(e, c, 'name', `${p}.name`);
  if (name === undefined) {
    if (!has(c, 'name')) e.required(`${p}.name`);
  } else if (maxLength(e, `${p}.name`, name, 63)) {
    if (!isDnsLabel(name)) e.cel(`${p}.name`, 'string', DNS_LABEL_MSG);
    else if (name === RESERVED_CONTAINER_NAME) {
      e.invalid(`${p}.name`, name, `the container name ${JSON.stringify(RESERVED_CONTAINER_NAME)} is reserved for the sandbox's root container (atelet); choose another name`);
    }
  }
  validateImage(e, c, 'image', `${p}.image`);
  const cmd = arr(e, c, 'command', `${p}.command`);
  if (cmd) {
    maxItems(e, `${p}.command`, cmd, 64);
    cmd.forEach((s, i) => {
      if (typeof s !== 'string') e.typeInvalid(`${p}.command[${i}]`, 'string', s);
    });
  }
  const env = arr(e, c, 'env', `${p}.env`);
  if (env) {
    maxItems(e, `${p}.env`, env, 32);
    env.forEach((x, i) => validateEnv(e, x, `${p}.env[${i}]`));
  }
  const readyz = obj(e, c, 'readyz', `${p}.readyz`);
  if (readyz) {
    const hg = obj(e, readyz, 'httpGet', `${p}.readyz.httpGet`);
    if (!hg) {
      if (!has(readyz, 'httpGet')) e.required(`${p}.readyz.httpGet`);
    } else {
      const hp = `${p}.readyz.httpGet`;
      const path = str(e, hg, 'path', `${hp}.path`);
      if (path !== undefined && maxLength(e, `${hp}.path`, path, 1024)) pattern(e, `${hp}.path`, path, READYZ_PATH, READYZ_PATH_SRC);
      const port = int(e, hg, 'port', `${hp}.port`);
      if (port === undefined) {
        if (!has(hg, 'port')) e.required(`${hp}.port`);
      } else range(e, `${hp}.port`, port, 1, 65535);
    }
  }
  const vms = arr(e, c, 'volumeMounts', `${p}.volumeMounts`);
  if (vms) {
    maxItems(e, `${p}.volumeMounts`, vms, 32);
    vms.forEach((vm, i) => {
      const vp = `${p}.volumeMounts[${i}]`;
      if (!isObj(vm)) return e.typeInvalid(vp, 'object', vm);
      const vn = str(e, vm, 'name', `${vp}.name`);
      if (vn === undefined) {
        if (!has(vm, 'name')) e.required(`${vp}.name`);
      } else if (maxLength(e, `${vp}.name`, vn, 63) && !isDnsLabel(vn)) e.cel(`${vp}.name`, 'string', DNS_LABEL_MSG);
      const mp = str(e, vm, 'mountPath', `${vp}.mountPath`);
      if (mp === undefined) {
        if (!has(vm, 'mountPath')) e.required(`${vp}.mountPath`);
      } else if (maxLength(e, `${vp}.mountPath`, mp, 4096) && !isCleanMountPath(mp)) {
        e.cel(`${vp}.mountPath`, 'string', MOUNT_PATH_MSG);
      }
    });
  }
}

function validateActorTemplateSpec(e: Errs, spec: Obj) {
  validateImage(e, spec, 'pauseImage', 'spec.pauseImage');

  const containers = arr(e, spec, 'containers', 'spec.containers');
  if (containers) {
    maxItems(e, 'spec.containers', containers, 10);
    const seen = new Set<string>();
    containers.forEach((c, i) => {
      validateContainer(e, c, `spec.containers[${i}]`);
      if (isObj(c) && typeof c.name === 'string' && c.name !== '') {
        if (seen.has(c.name)) e.duplicate(`spec.containers[${i}].name`, c.name);
        seen.add(c.name);
      }
    });
  }

  const volumes = arr(e, spec, 'volumes', 'spec.volumes');
  const durable = new Set<string>();
  if (volumes) {
    maxItems(e, 'spec.volumes', volumes, 32);
    volumes.forEach((v, i) => {
      const p = `spec.volumes[${i}]`;
      if (!isObj(v)) return e.typeInvalid(p, 'object', v);
      const vn = str(e, v, 'name', `${p}.name`);
      if (vn === undefined) {
        if (!has(v, 'name')) e.required(`${p}.name`);
      } else if (maxLength(e, `${p}.name`, vn, 63) && !isDnsLabel(vn)) e.cel(`${p}.name`, 'string', DNS_LABEL_MSG);
      const dd = obj(e, v, 'durableDir', `${p}.durableDir`);
      if (!has(v, 'durableDir')) e.cel(p, 'object', 'exactly one of the fields in [durableDir] must be set');
      if (dd && vn !== undefined) durable.add(vn);
      else if (dd) durable.add(`#${i}`);
    });
  }

  const snap = obj(e, spec, 'snapshotsConfig', 'spec.snapshotsConfig');
  if (!snap) {
    if (!has(spec, 'snapshotsConfig')) e.required('spec.snapshotsConfig');
  } else {
    const loc = str(e, snap, 'location', 'spec.snapshotsConfig.location');
    if (loc === undefined) {
      if (!has(snap, 'location')) e.required('spec.snapshotsConfig.location');
    } else minLength(e, 'spec.snapshotsConfig.location', loc, 1);
    const onPause = str(e, snap, 'onPause', 'spec.snapshotsConfig.onPause');
    const onCommit = str(e, snap, 'onCommit', 'spec.snapshotsConfig.onCommit');
    let scopesOk = true;
    for (const [k, v] of [
      ['onPause', onPause],
      ['onCommit', onCommit],
    ] as const) {
      if (v !== undefined && v !== 'Full' && v !== 'Data') {
        e.notSupported(`spec.snapshotsConfig.${k}`, v, ['Full', 'Data']);
        scopesOk = false;
      }
    }
    if (scopesOk && (onPause ?? 'Full') !== 'Full' && (onCommit ?? 'Full') !== (onPause ?? 'Full')) {
      e.cel('spec.snapshotsConfig', 'object', 'onCommit must be a subset of onPause');
    }
  }

  const cls = str(e, spec, 'sandboxClass', 'spec.sandboxClass');
  if (cls !== undefined && cls !== 'gvisor' && cls !== 'microvm') e.notSupported('spec.sandboxClass', cls, ['gvisor', 'microvm']);

  const ws = obj(e, spec, 'workerSelector', 'spec.workerSelector');
  if (ws) validateLabelSelector(e, ws, 'spec.workerSelector');

  // spec.resources.limits: Substrate v0.4's ActorTemplate resources (cpu and memory, each at most once).
  const res = obj(e, spec, 'resources', 'spec.resources');
  const limits = res ? arr(e, res, 'limits', 'spec.resources.limits') : undefined;
  if (limits) {
    maxItems(e, 'spec.resources.limits', limits, 2);
    const seenLimit = new Set<string>();
    limits.forEach((l, i) => {
      const p = `spec.resources.limits[${i}]`;
      if (!isObj(l)) return e.typeInvalid(p, 'object', l);
      const name = str(e, l, 'name', `${p}.name`);
      if (name === undefined) {
        if (!has(l, 'name')) e.required(`${p}.name`);
      } else if (name !== 'cpu' && name !== 'memory') e.notSupported(`${p}.name`, name, ['cpu', 'memory']);
      else if (seenLimit.has(name)) e.duplicate(`${p}.name`, name);
      else seenLimit.add(name);
      const q = str(e, l, 'quantity', `${p}.quantity`);
      if (q === undefined) {
        if (!has(l, 'quantity')) e.required(`${p}.quantity`);
        return;
      }
      const v = parseQuantity(q);
      if (v === undefined) e.invalid(`${p}.quantity`, q, 'must be a quantity such as 500m, 2, 512Mi or 1Gi');
      else if (v <= 0) e.invalid(`${p}.quantity`, q, 'must be greater than 0');
      else if (name === 'cpu' && v >= 1000) e.invalid(`${p}.quantity`, q, 'must be less than 1000 cores');
    });
  }

  // Cross-field CEL rules on the spec.
  if (durable.size > 1 || (volumes && volumes.filter((v) => isObj(v) && has(v, 'durableDir')).length > 1)) {
    e.cel('spec', 'object', 'Only one DurableDir-typed volume is supported');
  }
  if (containers && durable.size > 0) {
    containers.forEach((c) => {
      if (!isObj(c) || !Array.isArray(c.volumeMounts)) return;
      const n = c.volumeMounts.filter((vm) => isObj(vm) && typeof vm.name === 'string' && durable.has(vm.name)).length;
      if (n > 1) e.cel('spec', 'object', 'A container may mount only one DurableDir-typed volume');
    });
  }
  if (cls === 'microvm' && durable.size > 0) {
    e.cel('spec', 'object', "DurableDir volumes are not supported when sandboxClass is 'microvm'");
  }
}

function actorTemplateErrors(o: unknown): FieldError[] {
  const e = new Errs();
  if (!isObj(o)) {
    e.typeInvalid('<root>', 'object', o);
    return e.list;
  }
  validateTypeMeta(e, o, 'ate.dev/v1alpha1', 'ActorTemplate');
  validateMeta(e, o, { namespaced: true, name: 'subdomain' });
  const spec = obj(e, o, 'spec', 'spec');
  if (!spec) {
    if (!has(o, 'spec')) e.required('spec');
  } else validateActorTemplateSpec(e, spec);
  validateActorTemplateStatus(e, o);
  return e.list;
}

function validateActorTemplateStatus(e: Errs, o: Obj) {
  // The CRD has no validation on status ("TODO"); only the JSON types are checked.
  const st = obj(e, o, 'status', 'status');
  if (!st) return;
  str(e, st, 'phase', 'status.phase');
  str(e, st, 'goldenActorID', 'status.goldenActorID');
  str(e, st, 'takeGoldenSnapshotAt', 'status.takeGoldenSnapshotAt');
  str(e, st, 'goldenSnapshot', 'status.goldenSnapshot');
  const conds = arr(e, st, 'conditions', 'status.conditions');
  conds?.forEach((c, i) => {
    if (!isObj(c)) e.typeInvalid(`status.conditions[${i}]`, 'object', c);
  });
}

// ---------------------------------------------------------------------------------------------------------
// WorkerPool (ateapi.md §3.3)

function workerPoolErrors(o: unknown): FieldError[] {
  const e = new Errs();
  if (!isObj(o)) {
    e.typeInvalid('<root>', 'object', o);
    return e.list;
  }
  validateTypeMeta(e, o, 'ate.dev/v1alpha1', 'WorkerPool');
  validateMeta(e, o, { namespaced: true, name: 'subdomain' });
  const spec = obj(e, o, 'spec', 'spec');
  if (!spec) {
    if (!has(o, 'spec')) e.required('spec');
  } else {
    const replicas = int(e, spec, 'replicas', 'spec.replicas');
    if (replicas === undefined) {
      if (!has(spec, 'replicas')) e.required('spec.replicas');
    } else range(e, 'spec.replicas', replicas, 0, 2147483647);
    const img = str(e, spec, 'ateomImage', 'spec.ateomImage');
    if (img === undefined) {
      if (!has(spec, 'ateomImage')) e.required('spec.ateomImage');
    } else minLength(e, 'spec.ateomImage', img, 1);
    const cls = str(e, spec, 'sandboxClass', 'spec.sandboxClass');
    if (cls !== undefined && cls !== 'gvisor' && cls !== 'microvm') e.notSupported('spec.sandboxClass', cls, ['gvisor', 'microvm']);
    str(e, spec, 'sandboxConfigName', 'spec.sandboxConfigName');
    const t = obj(e, spec, 'template', 'spec.template');
    if (t) {
      strMap(e, t, 'nodeSelector', 'spec.template.nodeSelector');
      const tol = arr(e, t, 'tolerations', 'spec.template.tolerations');
      if (tol) {
        maxItems(e, 'spec.template.tolerations', tol, 16);
        tol.forEach((x, i) => {
          if (!isObj(x)) e.typeInvalid(`spec.template.tolerations[${i}]`, 'object', x);
        });
      }
      str(e, t, 'priorityClassName', 'spec.template.priorityClassName');
      obj(e, t, 'nodeAffinity', 'spec.template.nodeAffinity');
      obj(e, t, 'resources', 'spec.template.resources');
    }
  }
  const st = obj(e, o, 'status', 'status');
  if (st) {
    const r = int(e, st, 'replicas', 'status.replicas');
    if (r !== undefined) range(e, 'status.replicas', r, 0);
    const rr = int(e, st, 'readyReplicas', 'status.readyReplicas');
    if (rr !== undefined) range(e, 'status.readyReplicas', rr, 0);
    str(e, st, 'selector', 'status.selector');
  }
  return e.list;
}

// ---------------------------------------------------------------------------------------------------------
// Core v1 Namespace and Secret

function namespaceErrors(o: unknown): FieldError[] {
  const e = new Errs();
  if (!isObj(o)) {
    e.typeInvalid('<root>', 'object', o);
    return e.list;
  }
  validateTypeMeta(e, o, 'v1', 'Namespace');
  validateMeta(e, o, { namespaced: false, name: 'label' });
  return e.list;
}

const SECRET_MAX_SIZE = 1024 * 1024;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function secretErrors(o: unknown): FieldError[] {
  const e = new Errs();
  if (!isObj(o)) {
    e.typeInvalid('<root>', 'object', o);
    return e.list;
  }
  validateTypeMeta(e, o, 'v1', 'Secret');
  validateMeta(e, o, { namespaced: true, name: 'subdomain' });
  str(e, o, 'type', 'type');
  bool(e, o, 'immutable', 'immutable');
  let total = 0;
  for (const field of ['data', 'stringData'] as const) {
    const m = strMap(e, o, field, field);
    if (!m) continue;
    for (const [k, v] of Object.entries(m)) {
      if (k.length > 253 || !CONFIG_KEY.test(k)) {
        e.invalid(
          `${field}[${k}]`,
          k,
          "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        );
      }
      if (field === 'data') {
        if (!BASE64.test(v)) e.invalid(`${field}[${k}]`, '<redacted>', 'illegal base64 data');
        else total += Buffer.from(v, 'base64').length;
      } else total += Buffer.byteLength(v);
    }
  }
  if (total > SECRET_MAX_SIZE) e.tooLong('data', SECRET_MAX_SIZE);
  return e.list;
}

// ---------------------------------------------------------------------------------------------------------
// Public API

/** Field errors for an ActorTemplate (after defaults, if you want defaulted semantics). */
export function validateActorTemplateFields(obj: unknown): FieldError[] {
  return actorTemplateErrors(obj);
}
export function validateWorkerPoolFields(obj: unknown): FieldError[] {
  return workerPoolErrors(obj);
}
export function validateNamespaceFields(obj: unknown): FieldError[] {
  return namespaceErrors(obj);
}
export function validateSecretFields(obj: unknown): FieldError[] {
  return secretErrors(obj);
}

/** Empty = valid. Each entry reads like an API server cause, e.g. `spec.pauseImage: Required value`. */
export function validateActorTemplate(obj: unknown): string[] {
  return actorTemplateErrors(obj).map(formatFieldError);
}
export function validateWorkerPool(obj: unknown): string[] {
  return workerPoolErrors(obj).map(formatFieldError);
}
export function validateNamespace(obj: unknown): string[] {
  return namespaceErrors(obj).map(formatFieldError);
}
export function validateSecret(obj: unknown): string[] {
  return secretErrors(obj).map(formatFieldError);
}

/** Validates by kind (Namespace, Secret, WorkerPool, ActorTemplate); unknown kinds give one error. */
export function validateObjectFields(o: unknown): FieldError[] {
  const kind = isObj(o) ? o.kind : undefined;
  switch (kind) {
    case 'ActorTemplate':
      return actorTemplateErrors(o);
    case 'WorkerPool':
      return workerPoolErrors(o);
    case 'Namespace':
      return namespaceErrors(o);
    case 'Secret':
      return secretErrors(o);
    default:
      return [{ type: 'FieldValueNotSupported', field: 'kind', badValue: String(kind), hasBadValue: true, detail: 'supported values: "Namespace", "Secret", "WorkerPool", "ActorTemplate"' }];
  }
}

function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

/**
 * The CRD (and core) defaults, applied to a deep copy which is returned:
 * ActorTemplate: snapshotsConfig.onPause/onCommit `Full`, sandboxClass `gvisor`, readyz.httpGet.path `/readyz`;
 * WorkerPool: sandboxClass `gvisor`; Secret: type `Opaque`. Like the API server, a default is only applied
 * inside an object that exists and is of the right type.
 */
export function applyDefaults<T>(input: T): T {
  const o = clone(input) as unknown;
  if (!isObj(o)) return o as T;
  const spec = o.spec;
  if (o.kind === 'ActorTemplate' && isObj(spec)) {
    if (isObj(spec.snapshotsConfig)) {
      if (!has(spec.snapshotsConfig, 'onPause')) spec.snapshotsConfig.onPause = 'Full';
      if (!has(spec.snapshotsConfig, 'onCommit')) spec.snapshotsConfig.onCommit = 'Full';
    }
    if (!has(spec, 'sandboxClass')) spec.sandboxClass = 'gvisor';
    if (Array.isArray(spec.containers)) {
      for (const c of spec.containers) {
        if (isObj(c) && isObj(c.readyz) && isObj(c.readyz.httpGet) && !has(c.readyz.httpGet, 'path')) {
          c.readyz.httpGet.path = '/readyz';
        }
      }
    }
  } else if (o.kind === 'WorkerPool' && isObj(spec)) {
    if (!has(spec, 'sandboxClass')) spec.sandboxClass = 'gvisor';
  } else if (o.kind === 'Secret') {
    if (!has(o, 'type')) o.type = 'Opaque';
  }
  return o as T;
}

/** Deep equality of JSON values, ignoring object key order. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => jsonEqual(x, b[i]));
  }
  if (isObj(a) && isObj(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    if (ka.length !== kb.length) return false;
    return ka.every((k) => jsonEqual(a[k], b[k]));
  }
  return false;
}

/** The CRD transition rule on ActorTemplate.spec (`self == oldSelf`), compared after defaulting. */
export function checkImmutableFields(oldObj: unknown, newObj: unknown): FieldError[] {
  const o = applyDefaults(oldObj) as Obj | undefined;
  const n = applyDefaults(newObj) as Obj | undefined;
  if (!isObj(o) || !isObj(n)) return [];
  if (jsonEqual(o.spec, n.spec)) return [];
  return [{ type: 'FieldValueInvalid', field: 'spec', badValue: 'object', hasBadValue: true, detail: 'Spec is immutable' }];
}
export function checkImmutable(oldObj: unknown, newObj: unknown): string[] {
  return checkImmutableFields(oldObj, newObj).map(formatFieldError);
}

// ---------------------------------------------------------------------------------------------------------
// Structural schema: which fields each kind declares. Used to prune unknown fields (the API server's default)
// or report them (kubectl's strict validation, and `fieldValidation=Strict`).

type Schema =
  | { t: 'obj'; p: Record<string, Schema> }
  | { t: 'arr'; i: Schema }
  | { t: 'map'; v: Schema }
  | { t: 'leaf' }
  | { t: 'any' };
const leaf: Schema = { t: 'leaf' };
const any: Schema = { t: 'any' };
const o_ = (p: Record<string, Schema>): Schema => ({ t: 'obj', p });
const a_ = (i: Schema): Schema => ({ t: 'arr', i });
const m_ = (v: Schema): Schema => ({ t: 'map', v });

const META: Schema = o_({
  name: leaf,
  generateName: leaf,
  namespace: leaf,
  labels: m_(leaf),
  annotations: m_(leaf),
  resourceVersion: leaf,
  uid: leaf,
  creationTimestamp: leaf,
  generation: leaf,
  managedFields: any,
  deletionTimestamp: leaf,
  deletionGracePeriodSeconds: leaf,
  finalizers: a_(leaf),
  ownerReferences: any,
  selfLink: leaf,
});
const LABEL_SELECTOR: Schema = o_({
  matchLabels: m_(leaf),
  matchExpressions: a_(o_({ key: leaf, operator: leaf, values: a_(leaf) })),
});
const CONDITION: Schema = o_({ type: leaf, status: leaf, observedGeneration: leaf, lastTransitionTime: leaf, reason: leaf, message: leaf });

const SCHEMAS: Record<string, Schema> = {
  ActorTemplate: o_({
    apiVersion: leaf,
    kind: leaf,
    metadata: META,
    spec: o_({
      pauseImage: leaf,
      containers: a_(
        o_({
          name: leaf,
          image: leaf,
          command: a_(leaf),
          env: a_(o_({ name: leaf, value: leaf, valueFrom: o_({ secretKeyRef: o_({ name: leaf, key: leaf, optional: leaf }) }) })),
          readyz: o_({ httpGet: o_({ path: leaf, port: leaf }) }),
          volumeMounts: a_(o_({ name: leaf, mountPath: leaf })),
        }),
      ),
      volumes: a_(o_({ name: leaf, durableDir: o_({}) })),
      snapshotsConfig: o_({ location: leaf, onPause: leaf, onCommit: leaf }),
      sandboxClass: leaf,
      workerSelector: LABEL_SELECTOR,
      resources: o_({ limits: a_(o_({ name: leaf, quantity: leaf })) }),
    }),
    status: o_({ phase: leaf, goldenActorID: leaf, takeGoldenSnapshotAt: leaf, goldenSnapshot: leaf, conditions: a_(CONDITION) }),
  }),
  WorkerPool: o_({
    apiVersion: leaf,
    kind: leaf,
    metadata: META,
    spec: o_({
      replicas: leaf,
      ateomImage: leaf,
      sandboxClass: leaf,
      sandboxConfigName: leaf,
      template: o_({ nodeSelector: m_(leaf), tolerations: a_(any), priorityClassName: leaf, nodeAffinity: any, resources: any }),
    }),
    status: o_({ replicas: leaf, readyReplicas: leaf, selector: leaf }),
  }),
  Namespace: o_({ apiVersion: leaf, kind: leaf, metadata: META, spec: o_({ finalizers: a_(leaf) }), status: any }),
  Secret: o_({ apiVersion: leaf, kind: leaf, metadata: META, type: leaf, data: m_(leaf), stringData: m_(leaf), immutable: leaf }),
};

function walkUnknown(v: unknown, s: Schema, path: string, out: string[], prune: boolean): void {
  if (s.t === 'obj' && isObj(v)) {
    for (const k of Object.keys(v)) {
      // Own properties of the schema only: `__proto__`, `constructor` and the like are undeclared fields.
      const child = Object.hasOwn(s.p, k) ? s.p[k] : undefined;
      const cp = path ? `${path}.${k}` : k;
      if (!child) {
        out.push(cp);
        if (prune) delete v[k];
      } else walkUnknown(v[k], child, cp, out, prune);
    }
  } else if (s.t === 'arr' && Array.isArray(v)) {
    v.forEach((x, i) => walkUnknown(x, s.i, `${path}[${i}]`, out, prune));
  } else if (s.t === 'map' && isObj(v)) {
    for (const k of Object.keys(v)) walkUnknown(v[k], s.v, `${path}.${k}`, out, prune);
  }
}

/** Paths of fields the kind's schema does not declare, e.g. `spec.containers[0].args`. */
export function findUnknownFields(o: unknown): string[] {
  const kind = isObj(o) ? String(o.kind) : '';
  const s = SCHEMAS[kind];
  const out: string[] = [];
  if (s) walkUnknown(o, s, '', out, false);
  return out;
}

/** Removes undeclared fields in place, as the API server's pruning does; returns the removed paths. */
export function pruneUnknownFields(o: unknown): string[] {
  const kind = isObj(o) ? String(o.kind) : '';
  const s = SCHEMAS[kind];
  const out: string[] = [];
  if (s) walkUnknown(o, s, '', out, true);
  return out;
}
