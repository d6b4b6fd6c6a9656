// The driver's TemplateStore: ActorTemplates, per-sandbox Secrets and Namespaces through
// `@kubernetes/client-node`. One implementation serves a real cluster (any KubeConfig) and the local Substrate
// (which serves the stand-in API server of apiserver.ts on loopback; see kubeConfigFor).
//
// Writes are server-side apply with field manager `openshell-driver-substrate` and force; readiness is awaited
// by WATCHING the template (never polling); deletes of templates happen only when the owner annotation says
// the driver made them, guarded by uid/resourceVersion preconditions. Errors become ApiError with the gRPC
// code that fits and the API server's own message; no token or secret value ever appears in one.
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  Watch,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { ApiError, Code } from '../common/errors.js';
import type { ActorTemplate } from './types.js';
import { OWNER_ANNOTATION, OWNER_VALUE } from './synthesize.js';
import { isLoopbackHost } from '../common/net.js';

export const FIELD_MANAGER = 'openshell-driver-substrate';

export interface SecretRecord {
  name: string;
  data: Record<string, string>;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export interface TemplateStore {
  /** Server-side apply (field manager 'openshell-driver-substrate', force). Returns the stored object. */
  apply(t: ActorTemplate): Promise<ActorTemplate>;
  get(ns: string, name: string): Promise<ActorTemplate | null>;
  /** Deletes only when OWNER_ANNOTATION says the driver owns it. false when absent or not ours. */
  deleteOwned(ns: string, name: string): Promise<boolean>;
  /**
   * Resolves with the template once status.phase is Ready, by watching it. Rejects DEADLINE_EXCEEDED after
   * timeoutMs (naming the last phase), NOT_FOUND when absent or deleted meanwhile, FAILED_PRECONDITION when
   * the phase becomes Failed, CANCELLED when signal aborts. onProgress gets each new phase with a message.
   */
  waitReady(
    ns: string,
    name: string,
    timeoutMs: number,
    onProgress?: (phase: string, message: string) => void,
    signal?: AbortSignal,
  ): Promise<ActorTemplate>;
  /** Creates or replaces the Secret's data (values are plain strings; stored base64). */
  putSecret(ns: string, name: string, stringData: Record<string, string>, labels?: Record<string, string>, annotations?: Record<string, string>): Promise<void>;
  getSecret(ns: string, name: string): Promise<{ data: Record<string, string>; labels: Record<string, string>; annotations: Record<string, string> } | null>;
  listSecrets(ns: string, labelSelector: string): Promise<SecretRecord[]>;
  deleteSecret(ns: string, name: string): Promise<boolean>;
  ensureNamespace(ns: string): Promise<void>;
}

const GROUP = 'ate.dev';
const VERSION = 'v1alpha1';
const PLURAL = 'actortemplates';

interface StatusBody {
  message?: string;
  reason?: string;
  code?: number;
}

function statusBody(e: ApiException<unknown>): StatusBody {
  let b: unknown = e.body;
  if (typeof b === 'string') {
    try {
      b = JSON.parse(b);
    } catch {
      return {};
    }
  }
  return typeof b === 'object' && b !== null ? (b as StatusBody) : {};
}

function httpCode(e: unknown): number | undefined {
  if (e instanceof ApiException) return e.code;
  const c = (e as { code?: unknown; statusCode?: unknown } | null)?.code ?? (e as { statusCode?: unknown } | null)?.statusCode;
  return typeof c === 'number' && c >= 100 && c < 600 ? c : undefined;
}

/** Maps a client-node failure to ApiError. `what` names the operation and object, e.g. `apply ActorTemplate ns/x`. */
export function mapKubeError(e: unknown, what: string): ApiError {
  if (e instanceof ApiError) return e;
  const code = httpCode(e);
  if (code === undefined) {
    const m = e instanceof Error ? e.message : String(e);
    return new ApiError(Code.UNAVAILABLE, `${what}: Kubernetes API server unreachable: ${m}`);
  }
  const st = e instanceof ApiException ? statusBody(e) : {};
  const detail = st.message ? `${st.message}` : `HTTP ${code}`;
  const msg = `${what}: ${detail}`;
  switch (code) {
    case 400:
    case 422:
      return new ApiError(Code.INVALID_ARGUMENT, msg);
    case 401:
      return new ApiError(Code.UNAUTHENTICATED, `${what}: the Kubernetes API server rejected the driver's credentials (HTTP 401)`);
    case 403:
      return new ApiError(Code.PERMISSION_DENIED, `${msg} (grant the driver's service account this verb in its RBAC role)`);
    case 404:
      return new ApiError(Code.NOT_FOUND, msg);
    case 409:
      return new ApiError(st.reason === 'AlreadyExists' ? Code.ALREADY_EXISTS : Code.ABORTED, msg);
    case 410:
      return new ApiError(Code.ABORTED, msg);
    case 415:
      return new ApiError(Code.INTERNAL, msg);
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
      return new ApiError(Code.UNAVAILABLE, msg);
    default:
      return new ApiError(Code.UNKNOWN, msg);
  }
}

function decodeData(data: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  return out;
}

const PHASE_TEXT: Record<string, string> = {
  '': 'waiting for the template controller to create the golden actor',
  ResumeGoldenActor: 'booting the golden actor',
  WaitGoldenActor: 'waiting to take the golden snapshot',
  Ready: 'Actor template is ready for use',
};

function progressMessage(t: ActorTemplate): string {
  const phase = t.status?.phase ?? '';
  const ready = t.status?.conditions?.find((c) => c.type === 'Ready');
  if (ready?.message && (phase === 'Ready' || phase === 'Failed' || ready.status === 'False')) return ready.message;
  return PHASE_TEXT[phase] ?? `phase ${phase}`;
}

/** Fields a server-side apply body must not carry. */
function applyBody(t: ActorTemplate): ActorTemplate {
  const md = { ...t.metadata };
  delete md.resourceVersion;
  delete md.uid;
  delete md.creationTimestamp;
  delete md.generation;
  delete md.managedFields;
  return { apiVersion: 'ate.dev/v1alpha1', kind: 'ActorTemplate', metadata: md, spec: t.spec };
}

export function kubeTemplateStore(kc: KubeConfig): TemplateStore {
  const co = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const ssa = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);

  const isCode = (e: unknown, c: number) => httpCode(e) === c;

  const store: TemplateStore = {
    async apply(t) {
      const ns = t.metadata.namespace ?? 'default';
      const name = t.metadata.name ?? '';
      try {
        return (await co.patchNamespacedCustomObject(
          { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name, body: applyBody({ ...t, metadata: { ...t.metadata, namespace: ns } }), fieldManager: FIELD_MANAGER, force: true },
          ssa,
        )) as ActorTemplate;
      } catch (e) {
        throw mapKubeError(e, `apply ActorTemplate ${ns}/${name}`);
      }
    },

    async get(ns, name) {
      try {
        return (await co.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL, name })) as ActorTemplate;
      } catch (e) {
        if (isCode(e, 404)) return null;
        throw mapKubeError(e, `get ActorTemplate ${ns}/${name}`);
      }
    },

    async deleteOwned(ns, name) {
      const t = await store.get(ns, name);
      if (!t) return false;
      if (t.metadata.annotations?.[OWNER_ANNOTATION] !== OWNER_VALUE) return false;
      try {
        await co.deleteNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: PLURAL,
          name,
          body: { preconditions: { uid: t.metadata.uid, resourceVersion: t.metadata.resourceVersion } },
        });
        return true;
      } catch (e) {
        if (isCode(e, 404)) return false;
        if (isCode(e, 409)) {
          // Changed since we read it (for example re-labelled by an operator): decide again on the current object.
          return store.deleteOwned(ns, name);
        }
        throw mapKubeError(e, `delete ActorTemplate ${ns}/${name}`);
      }
    },

    waitReady(ns, name, timeoutMs, onProgress, signal) {
      const what = `ActorTemplate ${ns}/${name}`;
      return new Promise<ActorTemplate>((resolve, reject) => {
        let finished = false;
        let lastPhase: string | undefined;
        let lastMessage = '';
        let controller: AbortController | undefined;
        let retryTimer: NodeJS.Timeout | undefined;
        let backoff = 100;

        const finish = (e: ApiError | null, t?: ActorTemplate) => {
          if (finished) return;
          finished = true;
          clearTimeout(deadline);
          if (retryTimer) clearTimeout(retryTimer);
          signal?.removeEventListener('abort', onAbort);
          controller?.abort();
          if (e) reject(e);
          else resolve(t!);
        };
        const deadline = setTimeout(() => {
          finish(
            new ApiError(
              Code.DEADLINE_EXCEEDED,
              `${what} did not become Ready within ${Math.round(timeoutMs / 100) / 10}s (last phase: ${JSON.stringify(lastPhase ?? '')}${lastMessage ? `, ${lastMessage}` : ''}); check the template controller and the golden actor`,
            ),
          );
        }, timeoutMs);
        const onAbort = () => finish(new ApiError(Code.CANCELLED, `waiting for ${what} to become Ready was cancelled`));
        if (signal?.aborted) return onAbort();
        signal?.addEventListener('abort', onAbort);

        const observe = (t: ActorTemplate) => {
          const phase = t.status?.phase ?? '';
          const message = progressMessage(t);
          if (phase !== lastPhase || message !== lastMessage) {
            lastPhase = phase;
            lastMessage = message;
            try {
              onProgress?.(phase, message);
            } catch {
              // progress reporting never breaks the wait
            }
          }
          if (phase === 'Ready') finish(null, t);
          else if (phase === 'Failed') finish(new ApiError(Code.FAILED_PRECONDITION, `${what} failed: ${message}`));
        };

        const retry = () => {
          if (finished) return;
          retryTimer = setTimeout(() => void start(), backoff);
          backoff = Math.min(backoff * 2, 2000);
        };

        const start = async (): Promise<void> => {
          if (finished) return;
          let cur: ActorTemplate | null;
          try {
            cur = await store.get(ns, name);
          } catch (e) {
            const ae = mapKubeError(e, `get ${what}`);
            if (ae.code === Code.UNAVAILABLE) return retry();
            return finish(ae);
          }
          if (finished) return;
          if (!cur) return finish(new ApiError(Code.NOT_FOUND, `${what} not found`));
          observe(cur);
          if (finished) return;
          const remaining = Math.max(1, Math.ceil(timeoutMs / 1000));
          try {
            controller = await new Watch(kc).watch(
              `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(ns)}/${PLURAL}`,
              { fieldSelector: `metadata.name=${name}`, resourceVersion: cur.metadata.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: Math.min(remaining + 5, 600) },
              (type: string, obj: unknown) => {
                if (finished) return;
                if (type === 'ADDED' || type === 'MODIFIED') {
                  backoff = 100;
                  observe(obj as ActorTemplate);
                } else if (type === 'DELETED') finish(new ApiError(Code.NOT_FOUND, `${what} was deleted while waiting for it to become Ready`));
                else if (type === 'ERROR') {
                  // 410 Expired and friends: the stream ends; start again from a fresh read.
                  controller?.abort();
                }
              },
              () => retry(),
            );
            if (finished) controller.abort();
          } catch {
            retry();
          }
        };
        void start();
      });
    },

    async putSecret(ns, name, stringData, labels, annotations) {
      const data: Record<string, string> = {};
      for (const [k, v] of Object.entries(stringData)) data[k] = Buffer.from(v, 'utf8').toString('base64');
      const body = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name, namespace: ns, ...(labels ? { labels } : {}), ...(annotations ? { annotations } : {}) },
        type: 'Opaque',
        data,
      };
      try {
        await core.patchNamespacedSecret({ name, namespace: ns, body, fieldManager: FIELD_MANAGER, force: true }, ssa);
      } catch (e) {
        throw mapKubeError(e, `apply Secret ${ns}/${name}`);
      }
    },

    async getSecret(ns, name) {
      try {
        const s = await core.readNamespacedSecret({ name, namespace: ns });
        return { data: decodeData(s.data), labels: s.metadata?.labels ?? {}, annotations: s.metadata?.annotations ?? {} };
      } catch (e) {
        if (isCode(e, 404)) return null;
        throw mapKubeError(e, `get Secret ${ns}/${name}`);
      }
    },

    async listSecrets(ns, labelSelector) {
      try {
        const list = await core.listNamespacedSecret({ namespace: ns, labelSelector });
        return list.items.map((s) => ({
          name: s.metadata?.name ?? '',
          data: decodeData(s.data),
          labels: s.metadata?.labels ?? {},
          annotations: s.metadata?.annotations ?? {},
        }));
      } catch (e) {
        throw mapKubeError(e, `list Secrets in ${ns} (${labelSelector})`);
      }
    },

    async deleteSecret(ns, name) {
      try {
        await core.deleteNamespacedSecret({ name, namespace: ns });
        return true;
      } catch (e) {
        if (isCode(e, 404)) return false;
        throw mapKubeError(e, `delete Secret ${ns}/${name}`);
      }
    },

    async ensureNamespace(ns) {
      try {
        await core.readNamespace({ name: ns });
        return;
      } catch (e) {
        if (!isCode(e, 404) && !isCode(e, 403)) throw mapKubeError(e, `get Namespace ${ns}`);
      }
      try {
        await core.createNamespace({ body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } } });
      } catch (e) {
        if (isCode(e, 409)) return;
        throw mapKubeError(e, `create Namespace ${ns}`);
      }
    },
  };
  return store;
}

/** How to reach the local Substrate's resource API: its loopback URL and the bearer token it demands. */
export interface KubeAccess {
  url: string;
  token: string;
}

/**
 * A KubeConfig for a plain-HTTP API server on loopback (the local Substrate's stand-in API server), with its
 * bearer token. Anything else (another host, https, a Unix socket URL) is refused: use a real kubeconfig for
 * a real cluster.
 */
export function kubeConfigFor({ url, token }: KubeAccess): KubeConfig {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ApiError(Code.INVALID_ARGUMENT, `invalid API server URL ${JSON.stringify(url)}; expected http://127.0.0.1:<port>`);
  }
  if (u.protocol !== 'http:' || !isLoopbackHost(u.hostname)) {
    throw new ApiError(Code.INVALID_ARGUMENT, `kubeConfigFor only serves plain HTTP on loopback (got ${u.protocol}//${u.host}); use a kubeconfig for a real cluster`);
  }
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'local-substrate', server: `${u.protocol}//${u.host}`, skipTLSVerify: true }],
    users: [{ name: 'local-substrate', token }],
    contexts: [{ name: 'local-substrate', cluster: 'local-substrate', user: 'local-substrate', namespace: 'default' }],
    currentContext: 'local-substrate',
  });
  return kc;
}

/** Who serves the resource API right now: an instance id (a per-start nonce) and how to reach it. */
export interface StoreInstance {
  id: string;
  access: KubeAccess;
}

/**
 * A store for an API server that can restart elsewhere (a local Substrate found through local.json):
 * before every call `current()` names the instance serving now, read afresh, and throws when none runs. A
 * call therefore never goes to the address of an instance that is gone, whatever may listen there now, and
 * follows a restarted instance (a new id) to its new address and token.
 */
export function instanceStore(current: () => StoreInstance): TemplateStore {
  let bound: { id: string; store: TemplateStore } | undefined;
  const storeNow = (): TemplateStore => {
    const now = current();
    if (!bound || bound.id !== now.id) bound = { id: now.id, store: kubeTemplateStore(kubeConfigFor(now.access)) };
    return bound.store;
  };
  const call =
    <A extends unknown[], R>(pick: (s: TemplateStore) => (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> => {
      let s: TemplateStore;
      try {
        s = storeNow();
      } catch (e) {
        return Promise.reject(e);
      }
      return pick(s).apply(s, args);
    };
  return {
    apply: call((s) => s.apply),
    get: call((s) => s.get),
    deleteOwned: call((s) => s.deleteOwned),
    waitReady: call((s) => s.waitReady),
    putSecret: call((s) => s.putSecret),
    getSecret: call((s) => s.getSecret),
    listSecrets: call((s) => s.listSecrets),
    deleteSecret: call((s) => s.deleteSecret),
    ensureNamespace: call((s) => s.ensureNamespace),
  };
}
