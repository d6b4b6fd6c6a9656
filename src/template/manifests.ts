// Multi-document YAML manifests, as an operator would `kubectl apply -f` them: Namespace (v1), Secret (v1),
// WorkerPool and ActorTemplate (ate.dev/v1alpha1). Every document is checked like `kubectl apply` with strict
// field validation does: unknown kinds and apiVersions, undeclared fields and CRD rule violations are all
// reported at once, each naming its document. Nothing is returned unless every document is valid.
import { parseAllDocuments } from 'yaml';
import { ApiError, Code } from '../common/errors.js';
import type { ManifestObject } from './types.js';
import { applyDefaults, findUnknownFields, formatFieldError, validateObjectFields } from './validate.js';

/** apiVersion → kinds accepted from it. */
export const ACCEPTED_KINDS: ReadonlyArray<{ apiVersion: string; kind: string; namespaced: boolean }> = [
  { apiVersion: 'v1', kind: 'Namespace', namespaced: false },
  { apiVersion: 'v1', kind: 'Secret', namespaced: true },
  { apiVersion: 'ate.dev/v1alpha1', kind: 'WorkerPool', namespaced: true },
  { apiVersion: 'ate.dev/v1alpha1', kind: 'ActorTemplate', namespaced: true },
];

const ACCEPTED_TEXT = ACCEPTED_KINDS.map((k) => `${k.kind} (${k.apiVersion})`).join(', ');

/** Thrown when any document is invalid; `problems` lists every problem, each prefixed with its document. */
export class ManifestError extends ApiError {
  constructor(readonly problems: string[]) {
    super(Code.INVALID_ARGUMENT, `invalid manifest:\n  ${problems.join('\n  ')}`);
    this.name = 'ManifestError';
  }
}

export const DEFAULT_NAMESPACE = 'default';

/**
 * Parses multi-document YAML. Empty documents (only comments or `---`) are skipped; document numbers in
 * messages count every document from 1 as they appear in the text. Returns the objects with defaults
 * applied, the namespace defaulted to "default" for namespaced kinds, and Secret `stringData` folded into
 * base64 `data` (as the API server stores it).
 */
/** The largest manifest file `local apply` reads, as the API server's request limit. */
export const MAX_MANIFEST_BYTES = 3 * 1024 * 1024;

export function parseManifests(text: string): ManifestObject[] {
  const size = Buffer.byteLength(text);
  if (size > MAX_MANIFEST_BYTES) {
    throw new ManifestError([`the manifests are ${(size / 1024 / 1024).toFixed(1)} MiB; at most ${MAX_MANIFEST_BYTES / 1024 / 1024} MiB are read at once (split the file)`]);
  }
  const problems: string[] = [];
  const out: ManifestObject[] = [];
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, idx) => {
    const where = `document ${idx + 1}`;
    if (doc.errors.length > 0) {
      for (const err of doc.errors) problems.push(`${where}: YAML syntax error: ${err.message.split('\n')[0]}`);
      return;
    }
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) return; // empty document
    if (typeof value !== 'object' || Array.isArray(value)) {
      problems.push(`${where}: expected a Kubernetes object (a mapping with apiVersion, kind and metadata), got ${Array.isArray(value) ? 'a list' : typeof value}`);
      return;
    }
    const o = value as Record<string, unknown>;
    const kind = typeof o.kind === 'string' ? o.kind : undefined;
    const apiVersion = typeof o.apiVersion === 'string' ? o.apiVersion : undefined;
    const meta = (typeof o.metadata === 'object' && o.metadata !== null ? o.metadata : {}) as Record<string, unknown>;
    const label = `${where} (${kind ?? '<no kind>'}${typeof meta.name === 'string' ? ` "${meta.name}"` : ''})`;
    if (!kind || !apiVersion) {
      problems.push(`${label}: missing ${!kind ? 'kind' : 'apiVersion'}; accepted kinds: ${ACCEPTED_TEXT}`);
      return;
    }
    const accepted = ACCEPTED_KINDS.find((k) => k.kind === kind && k.apiVersion === apiVersion);
    if (!accepted) {
      const sameKind = ACCEPTED_KINDS.find((k) => k.kind === kind);
      problems.push(
        sameKind
          ? `${label}: apiVersion "${apiVersion}" is not supported for kind ${kind}; use "${sameKind.apiVersion}" (accepted kinds: ${ACCEPTED_TEXT})`
          : `${label}: unsupported kind "${kind}" (apiVersion "${apiVersion}"); accepted kinds: ${ACCEPTED_TEXT}`,
      );
      return;
    }
    if (accepted.namespaced && (typeof meta.namespace !== 'string' || meta.namespace === '') && typeof o.metadata === 'object') {
      meta.namespace = DEFAULT_NAMESPACE;
    }
    for (const path of findUnknownFields(o)) problems.push(`${label}: unknown field "${path}"`);
    const obj = applyDefaults(o);
    for (const fe of validateObjectFields(obj)) problems.push(`${label}: ${formatFieldError(fe)}`);
    if (kind === 'Secret') foldStringData(obj);
    out.push(obj as unknown as ManifestObject);
  });
  if (problems.length > 0) throw new ManifestError(problems);
  return out;
}

function foldStringData(o: Record<string, unknown>) {
  const sd = o.stringData as Record<string, string> | undefined;
  if (!sd) return;
  const data = { ...((o.data as Record<string, string> | undefined) ?? {}) };
  for (const [k, v] of Object.entries(sd)) data[k] = Buffer.from(v, 'utf8').toString('base64');
  o.data = data;
  delete o.stringData;
}
