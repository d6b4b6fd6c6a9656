// Resource metadata, preconditions and pagination as Substrate v0.4 defines them for every resource
// (shared/reference/substrate-v0.4.md §8): a server-assigned uid, a version raised on every mutation,
// create/update times; whole-object updates carry uid and version as preconditions (INVALID_ARGUMENT when
// unset, ABORTED when stale); deletes take optional DeleteOptions; lists are paged with opaque tokens.
import { randomUUID } from 'node:crypto';
import type { DeleteOptions, ResourceMetadata } from '../gen/ateapi.js';
import { aborted, invalid } from '../common/errors.js';
import { dnsLabelError } from '../common/dns.js';

/** Metadata of a resource being created: caller's atespace and name, the server's uid/version/times. */
export function newMetadata(atespace: string, name: string, now = new Date()): ResourceMetadata {
  return { atespace, name, uid: randomUUID(), version: 1, createTime: now, updateTime: now };
}

/** The metadata after one more mutation. */
export function bumped(m: ResourceMetadata, now = new Date()): ResourceMetadata {
  return { ...m, version: m.version + 1, updateTime: now };
}

/** `<path>: Required value` / `<path>: Invalid value: ...`, the Kubernetes field.Error rendering upstream uses. */
export const required = (path: string) => invalid(`${path}: Required value`);
export const invalidValue = (path: string, value: unknown, detail: string) =>
  invalid(`${path}: Invalid value: ${JSON.stringify(value)}: ${detail}`);

/** A k8s-short-name (DNS label) check with upstream's field-path error shape. */
export function checkShortName(path: string, v: string | undefined): string {
  if (!v) throw required(path);
  const e = dnsLabelError(path, v);
  if (e) throw invalidValue(path, v, 'must be a lowercase RFC 1123 label (a-z, 0-9, "-", at most 63 characters, starting and ending alphanumeric)');
  return v;
}

/** An update's preconditions against the stored object: uid and version both required, both must match. */
export function checkUpdatePreconditions(path: string, stored: ResourceMetadata, given: ResourceMetadata | undefined): void {
  if (!given?.uid) throw required(`${path}.metadata.uid`);
  if (!given.version) throw required(`${path}.metadata.version`);
  if (given.uid !== stored.uid) throw aborted(`${kindOf(path)} ${stored.atespace ? `${stored.atespace}/` : ''}${stored.name} does not have uid ${given.uid}`);
  if (given.version !== stored.version) throw aborted('concurrent update conflict, please retry');
}

/** A delete's optional preconditions (zero version / empty uid skip the check). */
export function checkDeleteOptions(what: string, stored: ResourceMetadata, opts: DeleteOptions | undefined): void {
  if (opts?.uid && opts.uid !== stored.uid) throw aborted(`${what} does not have uid ${opts.uid}`);
  if (opts?.version && opts.version !== stored.version) throw aborted('concurrent update conflict, please retry');
}

function kindOf(path: string): string {
  const p = path.split('.').pop() ?? path;
  return p.charAt(0).toUpperCase() + p.slice(1).replace(/_(\w)/g, (_, c: string) => c.toUpperCase());
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

/** page_size: 0 → server default, > 1000 → 1000, negative → INVALID_ARGUMENT. */
export function pageSizeOf(path: string, n: number | undefined): number {
  const v = n ?? 0;
  if (v < 0) throw invalid(`${path}: Invalid value: ${v}: must be greater than or equal to 0`);
  if (v === 0) return DEFAULT_PAGE_SIZE;
  return Math.min(v, MAX_PAGE_SIZE);
}

/** Opaque page tokens: the last key of the previous page, base64url-encoded with a kind tag. */
export function encodePageToken(kind: string, lastKey: string): string {
  return Buffer.from(JSON.stringify([kind, lastKey]), 'utf8').toString('base64url');
}

export function decodePageToken(path: string, kind: string, token: string | undefined): string | undefined {
  if (!token) return undefined;
  if (token.length > 256) throw invalid(`${path}: Too long: may not be more than 256 bytes`);
  try {
    const v = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && v[0] === kind && typeof v[1] === 'string') return v[1];
  } catch {
    // fall through
  }
  throw invalid(`${path}: Invalid value: ${JSON.stringify(token)}: not a page token from this listing`);
}
