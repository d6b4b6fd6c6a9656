// Validation and defaulting of an ActorTemplate as Substrate v0.4's CreateActorTemplate applies them
// (shared/reference/substrate-v0.4.md §4.2): the declarative `+k8s:` rules of ateapi.proto plus upstream's
// custom hooks (cmd/ateapi/internal/apivalidation, internal/resources, internal/volumepath), rendered as a
// Kubernetes field.ErrorList aggregate: one error is `<path>: <Type>[: <value>]: <detail>`, several are
// `[e1, e2]`. Paths use the proto field names under `actor_template`.
//
// Then the local Substrate's own restrictions: one container per actor (more → INVALID_ARGUMENT), and no
// micro-VM runtime on this machine (SANDBOX_CLASS_MICROVM → FAILED_PRECONDITION).
//
// Messages never print an env value (only `Too long`, which omits the value, can concern one).
import * as pb from '../gen/ateapi.js';
import { failedPrecondition, invalid } from '../common/errors.js';
import { parseQuantity } from '../common/quantity.js';
import { dnsLabelMessages, dnsSubdomainMessages, labelValueError, qualifiedNameError } from '../common/dns.js';

// ---------------------------------------------------------------------------------------------------------
// Field errors (k8s.io/apimachinery/pkg/util/validation/field)

export type FieldErrorKind = 'Required' | 'Invalid' | 'Unsupported' | 'Duplicate' | 'TooLong' | 'TooMany' | 'Forbidden';

export interface TemplateFieldError {
  kind: FieldErrorKind;
  field: string;
  /** Printed for Invalid, Unsupported, Duplicate and TooMany. */
  value?: string | number;
  detail: string;
}

const KIND_TEXT: Record<FieldErrorKind, string> = {
  Required: 'Required value',
  Invalid: 'Invalid value',
  Unsupported: 'Unsupported value',
  Duplicate: 'Duplicate value',
  TooLong: 'Too long',
  TooMany: 'Too many',
  Forbidden: 'Forbidden',
};

/** `field.Error.Error()`: Required, Forbidden and TooLong omit the value; strings are quoted. */
export function renderFieldError(e: TemplateFieldError): string {
  let s = `${e.field}: ${KIND_TEXT[e.kind]}`;
  if (e.kind !== 'Required' && e.kind !== 'Forbidden' && e.kind !== 'TooLong' && e.value !== undefined) {
    s += `: ${typeof e.value === 'string' ? JSON.stringify(e.value) : String(e.value)}`;
  }
  if (e.detail) s += `: ${e.detail}`;
  return s;
}

/** `errs.ToAggregate().Error()`: one message alone, several as `[a, b]` (duplicates collapsed). */
export function aggregateMessage(errs: readonly TemplateFieldError[]): string {
  const msgs = [...new Set(errs.map(renderFieldError))];
  return msgs.length === 1 ? msgs[0]! : `[${msgs.join(', ')}]`;
}

class Errs {
  readonly list: TemplateFieldError[] = [];
  required(field: string) {
    this.list.push({ kind: 'Required', field, detail: '' });
  }
  invalid(field: string, value: string | number, detail: string) {
    this.list.push({ kind: 'Invalid', field, value, detail });
  }
  unsupported(field: string, value: string, supported: readonly string[]) {
    this.list.push({ kind: 'Unsupported', field, value, detail: `supported values: ${supported.map((s) => JSON.stringify(s)).join(', ')}` });
  }
  duplicate(field: string, value: string | number) {
    this.list.push({ kind: 'Duplicate', field, value, detail: '' });
  }
  tooLong(field: string, max: number) {
    this.list.push({ kind: 'TooLong', field, detail: `may not be more than ${max} ${max === 1 ? 'byte' : 'bytes'}` });
  }
  tooMany(field: string, actual: number, max: number) {
    this.list.push({ kind: 'TooMany', field, value: actual, detail: `must have at most ${max} ${max === 1 ? 'item' : 'items'}` });
  }
  forbidden(field: string, detail: string) {
    this.list.push({ kind: 'Forbidden', field, detail });
  }
}

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

/** `+k8s:maxLength`: false (and a TooLong error) when over. */
function maxLength(e: Errs, field: string, v: string, max: number): boolean {
  if (bytes(v) > max) {
    e.tooLong(field, max);
    return false;
  }
  return true;
}

/** `+k8s:maxItems`: false (and a TooMany error) when over; the caller then skips the items (short circuit). */
function maxItems(e: Errs, field: string, n: number, max: number): boolean {
  if (n > max) {
    e.tooMany(field, n, max);
    return false;
  }
  return true;
}

/** `+k8s:minimum` / `+k8s:maximum` on an integer or enum. */
function range(e: Errs, field: string, v: number, min: number, max: number) {
  if (v < min) e.invalid(field, v, `must be greater than or equal to ${min}`);
  else if (v > max) e.invalid(field, v, `must be less than or equal to ${max}`);
}

/** `+k8s:format=k8s-short-name` (a DNS-1123 label). */
function shortName(e: Errs, field: string, v: string) {
  for (const m of dnsLabelMessages(v)) e.invalid(field, v, m);
}

/** `+k8s:format=k8s-long-name` (a DNS-1123 subdomain). */
function longName(e: Errs, field: string, v: string) {
  for (const m of dnsSubdomainMessages(v)) e.invalid(field, v, m);
}

/** `+k8s:listType=map` / `set`: the second and later holders of a key are duplicates. */
function unique<T>(e: Errs, items: readonly T[], key: (x: T) => string | number, field: (i: number) => string) {
  const seen = new Set<string | number>();
  items.forEach((x, i) => {
    const k = key(x);
    if (k === '' || k === 0) return; // required is reported on the item
    if (seen.has(k)) e.duplicate(field(i), k);
    seen.add(k);
  });
}

// ---------------------------------------------------------------------------------------------------------
// Image references (github.com/distribution/reference grammar, as upstream's ValidatePinnedImage parses)

const ALNUM = '[a-z0-9]+';
const SEPARATOR = '(?:[._]|__|[-]+)';
const PATH_COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?`;
const NAME = `(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*`;
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}';
const REFERENCE_RE = new RegExp(`^(${NAME})(?::(${TAG}))?(?:@(${DIGEST}))?$`);
const ANCHORED_HEX64 = /^[a-f0-9]{64}$/;
const DIGEST_HEX_LEN: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };

export interface ImageReference {
  name: string;
  tag?: string;
  /** `<algorithm>:<hex>` */
  digest?: string;
}

/**
 * Parses an image reference as `reference.ParseNormalizedNamed` does; throws an Error with its message
 * (e.g. "invalid reference format") when malformed. The name is returned normalized (`docker.io/library/…`).
 */
export function parseImageReference(ref: string): ImageReference {
  if (ANCHORED_HEX64.test(ref)) throw new Error(`invalid repository name (${ref}), cannot specify 64-byte hexadecimal strings`);
  // splitDockerDomain: a first component with '.' or ':', "localhost", or upper case is a registry.
  const slash = ref.indexOf('/');
  let domain = 'docker.io';
  let remainder = ref;
  if (slash >= 0) {
    const first = ref.slice(0, slash);
    if (/[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first) {
      domain = first;
      remainder = ref.slice(slash + 1);
    }
  }
  if (domain === 'index.docker.io') domain = 'docker.io';
  if (domain === 'docker.io' && !remainder.includes('/')) remainder = `library/${remainder}`;
  const colon = remainder.indexOf(':');
  const remote = colon >= 0 ? remainder.slice(0, colon) : remainder;
  if (remote.toLowerCase() !== remote) throw new Error(`invalid reference format: repository name (${remote}) must be lowercase`);
  const full = `${domain}/${remainder}`;
  const m = REFERENCE_RE.exec(full);
  if (!m) {
    if (REFERENCE_RE.exec(full.toLowerCase())) throw new Error('repository name must be lowercase');
    throw new Error('invalid reference format');
  }
  const [, name, tag, digest] = m as unknown as [string, string, string | undefined, string | undefined];
  if (name.length > 255) throw new Error('repository name must not be more than 255 characters');
  if (digest !== undefined) {
    const i = digest.indexOf(':');
    const alg = digest.slice(0, i);
    const hex = digest.slice(i + 1);
    const want = Object.hasOwn(DIGEST_HEX_LEN, alg) ? DIGEST_HEX_LEN[alg] : undefined;
    if (want === undefined) throw new Error('unsupported digest algorithm');
    if (hex.length !== want) throw new Error('invalid checksum digest length');
    if (!/^[a-f0-9]+$/.test(hex)) throw new Error('invalid checksum digest format');
  }
  return { name, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** Upstream's ValidatePinnedImage detail for `ref`, or undefined when it is a well-formed digest-pinned reference. */
export function pinnedImageError(ref: string): string | undefined {
  let r: ImageReference;
  try {
    r = parseImageReference(ref);
  } catch (err) {
    return `must be a well-formed image reference: ${(err as Error).message}`;
  }
  if (!r.digest) return 'must be pinned by digest (changing the image invalidates snapshots)';
  return undefined;
}

/** A well-formed image reference pinned by digest (`name@sha256:<64 hex>`), as upstream requires. */
export function isPinnedImage(ref: string): boolean {
  return ref !== '' && pinnedImageError(ref) === undefined;
}

function pinnedImage(e: Errs, field: string, v: string) {
  const d = pinnedImageError(v);
  if (d) e.invalid(field, v, d);
}

// ---------------------------------------------------------------------------------------------------------
// Upstream's custom hooks

const HTTP_GET_PATH = /^\/([A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$/;
const MOUNT_PATH_BAD_SEGMENT = /(^|\/)[.][.]?(\/|$)/;
const ENV_NAME = /^[ -<>-~]+$/;
const CAPABILITY = /^[A-Z][A-Z0-9_]*$/;

/** ValidateMountPath: a clean absolute Unix path. */
export function isCleanAbsolutePath(p: string): boolean {
  if (!p.startsWith('/') || p.length === 1 || p.endsWith('/') || p.includes('//') || p.includes(':')) return false;
  if (MOUNT_PATH_BAD_SEGMENT.test(p)) return false;
  // eslint-disable-next-line no-control-regex
  return !/[\x00-\x1f\x7f]/.test(p);
}

/** volumepath.ValidateProjected: the reason `p` is not a projected file path, or undefined. */
export function projectedPathError(p: string): string | undefined {
  if (p === '') return 'must not be empty';
  if (p.includes('\u0000')) return 'must not contain a NUL byte';
  const segments = p.split('/');
  if (segments.length > 16) return 'must have at most 16 path segments';
  for (const s of segments) {
    if (s === '') return "must be a relative path with no empty segments: no leading, trailing, or doubled '/'";
    if (s === '.' || s === '..') return `must not contain a ${JSON.stringify(s)} path segment`;
  }
  return undefined;
}

/**
 * resources.ValidateSnapshotLocation: a URI with a bucket (host) and nothing but scheme, bucket and path.
 * Parsed the way Go's net/url does for these shapes. Returns the error text, or undefined.
 */
export function snapshotLocationError(location: string): string | undefined {
  const q = JSON.stringify(location);
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(location)) return `invalid snapshot location ${q}: parse ${q}: net/url: invalid control character in URL`;
  if (location.startsWith(':')) return `invalid snapshot location ${q}: parse ${q}: missing protocol scheme`;
  let rest = location;
  let fragment = '';
  const hash = rest.indexOf('#');
  if (hash >= 0) {
    fragment = rest.slice(hash + 1);
    rest = rest.slice(0, hash);
  }
  let query = '';
  const qm = rest.indexOf('?');
  if (qm >= 0) {
    query = rest.slice(qm + 1);
    rest = rest.slice(0, qm);
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(rest);
  let opaque = '';
  let host = '';
  let user = false;
  if (scheme) rest = rest.slice(scheme[0].length);
  if (scheme && !rest.startsWith('/')) {
    opaque = rest;
  } else if (rest.startsWith('//')) {
    const auth = rest.slice(2).split('/')[0]!;
    const at = auth.lastIndexOf('@');
    user = at >= 0;
    host = at >= 0 ? auth.slice(at + 1) : auth;
    const bad = /[^A-Za-z0-9\-._~!$&'()*+,;=:[\]%]/.exec(host);
    if (bad) return `invalid snapshot location ${q}: parse ${q}: invalid character ${JSON.stringify(bad[0])} in host name`;
  }
  if (!opaque && host === '') return `invalid snapshot location ${q}: missing bucket`;
  if (opaque || user || query || fragment) {
    return `invalid snapshot location ${q}: must contain only a scheme, bucket, and path`;
  }
  return undefined;
}

/** resources.ValidateLimit on one `{name, quantity}` (presence and uniqueness come from the tags). */
function limit(e: Errs, path: string, l: pb.Limits) {
  if (l.name !== 'cpu' && l.name !== 'memory') {
    if (l.name !== '') e.unsupported(`${path}.name`, l.name, ['cpu', 'memory']);
    return;
  }
  if (l.quantity === '') return;
  const v = parseQuantity(l.quantity);
  if (v === undefined) {
    e.invalid(`${path}.quantity`, l.quantity, "must be a Kubernetes resource quantity: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
    return;
  }
  if (v <= 0) e.invalid(`${path}.quantity`, l.quantity, 'must be greater than zero');
  if (l.name === 'cpu' && v >= 1000) e.invalid(`${path}.quantity`, l.quantity, 'cpu limit must be less than 1000 cores');
}

function resources(e: Errs, path: string, r: pb.Resources) {
  const p = `${path}.limits`;
  if (!maxItems(e, p, r.limits.length, 2)) return;
  unique(e, r.limits, (l) => l.name, (i) => `${p}[${i}].name`);
  r.limits.forEach((l, i) => {
    const lp = `${p}[${i}]`;
    if (l.name === '') e.required(`${lp}.name`);
    else maxLength(e, `${lp}.name`, l.name, 16);
    if (l.quantity === '') e.required(`${lp}.quantity`);
    else if (!maxLength(e, `${lp}.quantity`, l.quantity, 32)) return;
    limit(e, lp, l);
  });
}

function capabilities(e: Errs, path: string, caps: readonly string[], allowAll: boolean) {
  if (!maxItems(e, path, caps.length, 64)) return;
  unique(e, caps, (c) => c, (i) => `${path}[${i}]`);
  caps.forEach((c, i) => {
    const p = `${path}[${i}]`;
    if (c === 'ALL') {
      if (!allowAll) e.invalid(p, c, "add does not accept 'ALL'; name the individual capabilities the container needs");
    } else if (c.length > 63) e.tooLong(p, 63);
    else if (c.startsWith('CAP_')) e.invalid(p, c, "must be named without the 'CAP_' prefix (e.g. 'NET_BIND_SERVICE')");
    else if (!CAPABILITY.test(c)) e.invalid(p, c, "must be an uppercase capability name like 'NET_BIND_SERVICE'");
  });
}

// ---------------------------------------------------------------------------------------------------------
// ActorTemplate

/** Names a trust_bundle data source may use (atelet's allowlist). */
export const TRUST_BUNDLE_NAMES: readonly string[] = ['egress-mitm.ate.dev', 'system-roots.ate.dev'];
const VOLUME_SOURCES = ['`durable_dir`', '`external_volume_template`', '`system_info`', '`image`'];
const DATA_SOURCES = ['`actor_metadata`', '`trust_bundle`'];

function stringList(e: Errs, path: string, items: readonly string[], maxN: number, maxLen: number) {
  if (!maxItems(e, path, items.length, maxN)) return;
  items.forEach((s, i) => maxLength(e, `${path}[${i}]`, s, maxLen));
}

function container(e: Errs, p: string, c: pb.Container, microvm: boolean) {
  if (c.name === '') e.required(`${p}.name`);
  else shortName(e, `${p}.name`, c.name);

  if (c.image === '') e.required(`${p}.image`);
  else if (maxLength(e, `${p}.image`, c.image, 512)) pinnedImage(e, `${p}.image`, c.image);

  stringList(e, `${p}.command`, c.command, 64, 4096);
  stringList(e, `${p}.args`, c.args, 64, 4096);

  if (maxItems(e, `${p}.env`, c.env.length, 32)) {
    unique(e, c.env, (v) => v.name, (i) => `${p}.env[${i}].name`);
    c.env.forEach((v, i) => {
      const ep = `${p}.env[${i}]`;
      if (v.name === '') e.required(`${ep}.name`);
      else if (maxLength(e, `${ep}.name`, v.name, 256) && !ENV_NAME.test(v.name)) {
        e.invalid(`${ep}.name`, v.name, "may contain any printable ASCII character except '='");
      }
      maxLength(e, `${ep}.value`, v.value, 32768);
    });
  }

  if (c.wakeupProbe) {
    const wp = `${p}.wakeup_probe`;
    const hg = c.wakeupProbe.httpGet;
    if (!hg) e.required(`${wp}.http_get`);
    else {
      const hp = `${wp}.http_get`;
      if (hg.path === '') e.required(`${hp}.path`);
      else if (maxLength(e, `${hp}.path`, hg.path, 1024) && !HTTP_GET_PATH.test(hg.path)) {
        e.invalid(`${hp}.path`, hg.path, "must be a URL path starting with '/', using only RFC 3986 path-segment characters, without query or fragment");
      }
      if (hg.port === 0) e.required(`${hp}.port`);
      else range(e, `${hp}.port`, hg.port, 1, 65535);
    }
    if (c.wakeupProbe.timeoutSeconds === 0) e.required(`${wp}.timeout_seconds`);
    else range(e, `${wp}.timeout_seconds`, c.wakeupProbe.timeoutSeconds, 1, 3600);
  }

  const vp = `${p}.volume_mounts`;
  if (maxItems(e, vp, c.volumeMounts.length, 32)) {
    unique(e, c.volumeMounts, (m) => m.mountPath, (i) => `${vp}[${i}].mount_path`);
    c.volumeMounts.forEach((m, i) => {
      const mp = `${vp}[${i}]`;
      if (m.name === '') e.required(`${mp}.name`);
      else shortName(e, `${mp}.name`, m.name);
      if (m.mountPath === '') e.required(`${mp}.mount_path`);
      else if (maxLength(e, `${mp}.mount_path`, m.mountPath, 4096) && !isCleanAbsolutePath(m.mountPath)) {
        e.invalid(`${mp}.mount_path`, m.mountPath, "must be a clean absolute Unix path: must start with '/', not be '/', and contain no ':', '..', '.', '//', trailing '/', or control characters");
      }
    });
    // Mounts must not nest (identical paths are the uniqueness check's).
    c.volumeMounts.forEach((m, i) => {
      if (!m.mountPath) return;
      for (const prior of c.volumeMounts.slice(0, i).map((x) => x.mountPath)) {
        if (!prior || prior === m.mountPath) continue;
        if (m.mountPath.startsWith(`${prior}/`) || prior.startsWith(`${m.mountPath}/`)) {
          e.invalid(`${vp}[${i}].mount_path`, m.mountPath, `must not nest under or over another mount (${JSON.stringify(prior)})`);
        }
      }
    });
  }

  const caps = c.securityContext?.capabilities;
  if (caps) {
    capabilities(e, `${p}.security_context.capabilities.add`, caps.add, false);
    capabilities(e, `${p}.security_context.capabilities.drop`, caps.drop, true);
  }

  if (c.resources) {
    if (!microvm) {
      e.forbidden(`${p}.resources`, 'per-container limits are supported only for sandbox_class SANDBOX_CLASS_MICROVM (gVisor applies limits to the whole sandbox: use actor_template.resources)');
    } else resources(e, `${p}.resources`, c.resources);
  }
}

function systemInfo(e: Errs, p: string, si: pb.SystemInfoVolumeSource) {
  const dp = `${p}.data_sources`;
  if (!maxItems(e, dp, si.dataSources.length, 8)) return;
  let actorMetadataSeen = false;
  const paths = new Set<string>();
  si.dataSources.forEach((ds, i) => {
    const sp = `${dp}[${i}]`;
    const set = [ds.actorMetadata ? DATA_SOURCES[0]! : '', ds.trustBundle ? DATA_SOURCES[1]! : ''].filter(Boolean);
    if (set.length === 0) e.invalid(sp, '', `must specify one of: ${DATA_SOURCES.join(', ')}`);
    else if (set.length > 1) e.invalid(sp, `{${set.join(', ')}}`, `must specify exactly one of: ${DATA_SOURCES.join(', ')}`);
    if (ds.actorMetadata) {
      if (actorMetadataSeen) e.forbidden(`${sp}.actor_metadata`, 'at most one actor_metadata data source may appear');
      actorMetadataSeen = true;
      const ip = `${sp}.actor_metadata.items`;
      const items = ds.actorMetadata.items;
      if (items.length === 0) e.required(ip);
      else if (maxItems(e, ip, items.length, 8)) {
        unique(e, items, (x) => x.field, (j) => `${ip}[${j}].field`);
        items.forEach((it, j) => {
          const fp = `${ip}[${j}]`;
          if (it.field === pb.ActorMetadataField.ACTOR_METADATA_FIELD_UNSPECIFIED) e.required(`${fp}.field`);
          else range(e, `${fp}.field`, it.field, 1, 3);
          projected(e, `${fp}.path`, it.path);
          if (it.path) {
            if (paths.has(it.path)) e.duplicate(`${fp}.path`, it.path);
            paths.add(it.path);
          }
        });
      }
    }
    if (ds.trustBundle) {
      const tp = `${sp}.trust_bundle`;
      const names = ds.trustBundle.names;
      if (names.length === 0) e.required(`${tp}.names`);
      else if (maxItems(e, `${tp}.names`, names.length, 8)) {
        unique(e, names, (n) => n, (j) => `${tp}.names[${j}]`);
        names.forEach((n, j) => {
          const np = `${tp}.names[${j}]`;
          if (n === '') e.invalid(np, n, 'must be at least 1 bytes long');
          else if (maxLength(e, np, n, 253) && !TRUST_BUNDLE_NAMES.includes(n)) e.unsupported(np, n, TRUST_BUNDLE_NAMES);
        });
      }
      projected(e, `${tp}.path`, ds.trustBundle.path);
      if (ds.trustBundle.path) {
        if (paths.has(ds.trustBundle.path)) e.duplicate(`${tp}.path`, ds.trustBundle.path);
        paths.add(ds.trustBundle.path);
      }
    }
  });
}

function projected(e: Errs, field: string, p: string) {
  if (p === '') return e.required(field);
  if (!maxLength(e, field, p, 255)) return;
  const d = projectedPathError(p);
  if (d) e.invalid(field, p, d);
}

function volume(e: Errs, p: string, v: pb.Volume) {
  if (v.name === '') e.required(`${p}.name`);
  else shortName(e, `${p}.name`, v.name);
  const set = [
    v.durableDir ? VOLUME_SOURCES[0]! : '',
    v.externalVolumeTemplate ? VOLUME_SOURCES[1]! : '',
    v.systemInfo ? VOLUME_SOURCES[2]! : '',
    v.image ? VOLUME_SOURCES[3]! : '',
  ].filter(Boolean);
  if (set.length === 0) e.invalid(p, '', `must specify one of: ${VOLUME_SOURCES.join(', ')}`);
  else if (set.length > 1) e.invalid(p, `{${set.join(', ')}}`, `must specify exactly one of: ${VOLUME_SOURCES.join(', ')}`);
  const ev = v.externalVolumeTemplate;
  if (ev) {
    const ep = `${p}.external_volume_template`;
    if (ev.capacity === '') e.required(`${ep}.capacity`);
    else if (maxLength(e, `${ep}.capacity`, ev.capacity, 32) && parseQuantity(ev.capacity) === undefined) {
      e.invalid(`${ep}.capacity`, ev.capacity, "must be a Kubernetes resource quantity: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
    }
    if (ev.storageClassName === '') e.required(`${ep}.storage_class_name`);
    else longName(e, `${ep}.storage_class_name`, ev.storageClassName);
  }
  if (v.systemInfo) systemInfo(e, `${p}.system_info`, v.systemInfo);
  if (v.image) {
    const ip = `${p}.image.reference`;
    if (v.image.reference === '') e.required(ip);
    else if (maxLength(e, ip, v.image.reference, 512)) pinnedImage(e, ip, v.image.reference);
  }
}

/** The upstream (v0.4) field errors of a template, defaults already applied. Root path `actor_template`. */
export function actorTemplateFieldErrors(t: pb.ActorTemplate, root = 'actor_template'): TemplateFieldError[] {
  const e = new Errs();
  const cls = t.sandboxConfig?.sandboxClass ?? pb.SandboxClass.SANDBOX_CLASS_UNSPECIFIED;
  const microvm = cls === pb.SandboxClass.SANDBOX_CLASS_MICROVM;

  // CreateActorTemplateRequest's custom hook: mounts reference declared volumes; DATA needs a durable volume.
  const declared = new Map<string, pb.Volume>();
  for (const v of t.volumes) if (v.name) declared.set(v.name, v);
  let hasDataVolume = false;
  const mounted = new Set<string>();
  t.containers.forEach((c, i) =>
    c.volumeMounts.forEach((m, j) => {
      if (!m.name) return;
      mounted.add(m.name);
      const v = declared.get(m.name);
      if (!v) {
        e.invalid(`${root}.containers[${i}].volume_mounts[${j}].name`, m.name, 'must reference a volume declared in the template');
        return;
      }
      if (v.durableDir || (microvm && v.externalVolumeTemplate)) hasDataVolume = true;
    }),
  );
  const scope = t.snapshotConfig?.onCommit;
  if (!hasDataVolume && scope === pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_DATA) {
    e.invalid(
      `${root}.snapshot_config.on_commit`,
      pb.snapshotContentScopeToJSON(scope),
      microvm ? 'DATA snapshots require a mounted durable-dir or CSI volume' : 'DATA snapshots require a mounted durable-dir volume',
    );
  }

  // metadata
  const md = t.metadata;
  if (!md) e.required(`${root}.metadata`);
  else {
    if (md.atespace === '') e.required(`${root}.metadata.atespace`);
    else shortName(e, `${root}.metadata.atespace`, md.atespace);
    if (md.name === '') e.required(`${root}.metadata.name`);
    else shortName(e, `${root}.metadata.name`, md.name);
  }

  // worker_selector
  const ws = t.workerSelector;
  if (ws) {
    const mp = `${root}.worker_selector.match_labels`;
    for (const [k, v] of Object.entries(ws.matchLabels)) {
      const ke = qualifiedNameError(k);
      if (ke) e.invalid(mp, k, ke);
      const ve = labelValueError(v);
      if (ve) e.invalid(mp, v, ve);
    }
  }

  // containers
  const cp = `${root}.containers`;
  if (t.containers.length === 0) e.required(cp);
  else if (maxItems(e, cp, t.containers.length, 10)) {
    unique(e, t.containers, (c) => c.name, (i) => `${cp}[${i}].name`);
    t.containers.forEach((c, i) => container(e, `${cp}[${i}]`, c, microvm));
  }

  // volumes
  const vp = `${root}.volumes`;
  if (maxItems(e, vp, t.volumes.length, 32)) {
    unique(e, t.volumes, (v) => v.name, (i) => `${vp}[${i}].name`);
    let durable = 0;
    t.volumes.forEach((v, i) => {
      volume(e, `${vp}[${i}]`, v);
      if (v.durableDir) {
        durable++;
        if (durable > 1 && !microvm) e.forbidden(`${vp}[${i}].durable_dir`, 'a gvisor template may declare at most one durable_dir volume');
      }
      if (v.name && t.containers.length > 0 && !mounted.has(v.name)) {
        e.invalid(`${vp}[${i}].name`, v.name, 'every declared volume must be mounted by at least one container');
      }
    });
  }

  // snapshot_config
  const sc = t.snapshotConfig;
  if (!sc) e.required(`${root}.snapshot_config`);
  else {
    const sp = `${root}.snapshot_config`;
    if (sc.onCommit === pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_UNSPECIFIED) e.required(`${sp}.on_commit`);
    else range(e, `${sp}.on_commit`, sc.onCommit, 1, 2);
    if (sc.storageLocation === '') e.required(`${sp}.storage_location`);
    else if (maxLength(e, `${sp}.storage_location`, sc.storageLocation, 1024)) {
      const d = snapshotLocationError(sc.storageLocation);
      if (d) e.invalid(`${sp}.storage_location`, sc.storageLocation, d);
    }
  }

  // sandbox_config
  const sb = t.sandboxConfig;
  if (!sb) e.required(`${root}.sandbox_config`);
  else {
    const bp = `${root}.sandbox_config`;
    if (sb.sandboxClass === pb.SandboxClass.SANDBOX_CLASS_UNSPECIFIED) e.required(`${bp}.sandbox_class`);
    else range(e, `${bp}.sandbox_class`, sb.sandboxClass, 1, 2);
    if (sb.configName === '') e.required(`${bp}.config_name`);
    else longName(e, `${bp}.config_name`, sb.configName);
  }

  // resources
  if (t.resources) resources(e, `${root}.resources`, t.resources);
  return e.list;
}

// ---------------------------------------------------------------------------------------------------------
// Defaults and the entry point

/**
 * Upstream's `defaults.Apply` on a copy: snapshot_config.on_commit FULL when unset; in a wakeup_probe,
 * timeout_seconds 30 and http_get.path "/" when unset. A default applies only inside an object that is set.
 */
export function applyTemplateDefaults(t: pb.ActorTemplate): pb.ActorTemplate {
  const c = pb.ActorTemplate.fromPartial(t);
  if (c.snapshotConfig && c.snapshotConfig.onCommit === pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_UNSPECIFIED) {
    c.snapshotConfig.onCommit = pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL;
  }
  for (const ct of c.containers) {
    const wp = ct.wakeupProbe;
    if (!wp) continue;
    if (wp.timeoutSeconds === 0) wp.timeoutSeconds = 30;
    if (wp.httpGet && wp.httpGet.path === '') wp.httpGet.path = '/';
  }
  return c;
}

/** The local Substrate runs one container per actor. */
export const LOCAL_MAX_CONTAINERS = 1;

/** The local-only field errors (after the upstream ones pass or alongside them). */
export function localTemplateFieldErrors(t: pb.ActorTemplate, root = 'actor_template'): TemplateFieldError[] {
  const out: TemplateFieldError[] = [];
  if (t.containers.length > LOCAL_MAX_CONTAINERS && t.containers.length <= 10) {
    out.push({
      kind: 'TooMany',
      field: `${root}.containers`,
      value: t.containers.length,
      detail: 'must have at most 1 item: the local Substrate runs one container per actor',
    });
  }
  return out;
}

/** The message of the local FAILED_PRECONDITION for a micro-VM template. */
export const MICROVM_UNAVAILABLE =
  'sandbox_config.sandbox_class SANDBOX_CLASS_MICROVM is not available: the local Substrate runs actors on gVisor (runsc) only and has no micro-VM runtime';

/**
 * Validates a CreateActorTemplate request's template (defaults applied to a copy first, status ignored):
 * INVALID_ARGUMENT with the field.ErrorList aggregate for any field error (upstream's and the local
 * one-container rule), then FAILED_PRECONDITION for a micro-VM template.
 */
export function validateActorTemplate(t: pb.ActorTemplate): void {
  const d = applyTemplateDefaults({ ...t, status: undefined });
  const errs = [...actorTemplateFieldErrors(d), ...localTemplateFieldErrors(d)];
  if (errs.length > 0) throw invalid(aggregateMessage(errs));
  if (d.sandboxConfig?.sandboxClass === pb.SandboxClass.SANDBOX_CLASS_MICROVM) throw failedPrecondition(MICROVM_UNAVAILABLE);
}

/** True when every container declares a wakeup_probe (the golden warm-up is then skipped). */
export function everyContainerProbed(t: pb.ActorTemplate): boolean {
  return t.containers.length > 0 && t.containers.every((c) => c.wakeupProbe?.httpGet !== undefined);
}
