// The driver's Kubernetes TemplateStore (@kubernetes/client-node) end to end over real HTTP on loopback.
//
// STAND-IN: a real Kubernetes API server cannot run on this machine, so these tests run against
// src/template/apiserver.ts, a stand-in for a real Kubernetes API server that enforces the contract the driver
// relies on: the ActorTemplate CRD rules and messages, `Spec is immutable`, the /status subresource,
// server-side apply's content type and required fieldManager, resourceVersion concurrency and watches.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Watch } from '@kubernetes/client-node';
import { ApiError, Code } from '../../src/common/errors.js';
import { startApiServer, memoryStorage, type ApiServerHandle, type ChangeEvent, type ResourceStorage } from '../../src/template/apiserver.js';
import { kubeConfigFor, kubeTemplateStore, type KubeAccess, type TemplateStore } from '../../src/template/store.js';
import { OWNER_ANNOTATION, synthesizeActorTemplate, tokenSecretNameFor, type SynthesisConfig } from '../../src/template/synthesize.js';
import type { ActorTemplate, KubeObject, KubeStatus } from '../../src/template/types.js';
import type { DriverSandbox } from '../../src/gen/compute_driver.js';

const PIN = `@sha256:${'d'.repeat(64)}`;
const TOKEN = 'eyJhbGciOiJFZERTQSJ9.eyJzYW5kYm94X2lkIjoieCJ9.bm90LWEtcmVhbC1zaWduYXR1cmUtYnV0LXNlY3JldA';
const NS = `oss-${process.pid}`;
const CFG: SynthesisConfig = {
  namespace: NS,
  pauseImage: `pause${PIN}`,
  snapshotsLocation: 'gs://snaps/oss/',
  sandboxClass: 'gvisor',
  gatewayEndpoint: 'http://127.0.0.1:8080',
};

let seq = 0;
function sandbox(token = ''): DriverSandbox {
  seq++;
  const id = `0000${seq.toString().padStart(4, '0')}-7425-40de-944b-e07fc1f90ae7`;
  return {
    id,
    name: `box-${seq}`,
    namespace: '',
    workspace: 'default',
    spec: { logLevel: '', environment: { GREETING: 'hi' }, sandboxToken: token, command: ['node', 'server.js'], tty: false, awaitMainProcessAttachment: false, launchAuthentication: Buffer.alloc(0), template: { image: `app${PIN}`, agentSocketPath: '', labels: {}, environment: {} } },
  };
}

let api: ApiServerHandle;
let store: TemplateStore;
const aborts: AbortController[] = [];

beforeAll(async () => {
  api = await startApiServer({ storage: memoryStorage(), listen: { host: '127.0.0.1', port: 0 } });
  store = kubeTemplateStore(kubeConfigFor(api));
  await store.ensureNamespace(NS);
});
afterEach(() => {
  for (const a of aborts.splice(0)) a.abort();
});
afterAll(async () => {
  await api.close();
});

async function raw(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; json: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const res = await fetch(`${api.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${api.token}`, ...(body === undefined ? {} : { 'Content-Type': contentType }) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}
const tmplPath = (name: string, sub = '') => `/apis/ate.dev/v1alpha1/namespaces/${NS}/actortemplates/${name}${sub}`;

async function expectApiError(p: Promise<unknown>, code: number, msg: RegExp): Promise<ApiError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ApiError);
    expect((e as ApiError).code, (e as Error).message).toBe(code);
    expect((e as ApiError).message).toMatch(msg);
    return e as ApiError;
  }
  throw new Error('expected an ApiError');
}

async function setPhase(name: string, phase: string, extra: Record<string, unknown> = {}) {
  const cur = await raw('GET', tmplPath(name));
  const body = { ...cur.json, status: { ...(cur.json.status ?? {}), phase, ...extra } };
  const r = await raw('PUT', tmplPath(name, '/status'), body);
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json as ActorTemplate;
}

describe('stand-in Kubernetes API server + kubeTemplateStore', () => {
  it('applies a synthesized template by server-side apply and reads it back', async () => {
    const t = synthesizeActorTemplate(sandbox(TOKEN), CFG);
    const applied = await store.apply(t);
    expect(applied.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(applied.metadata.generation).toBe(1);
    expect(applied.spec).toEqual(t.spec);
    expect(applied.metadata.managedFields?.[0]).toMatchObject({ manager: 'openshell-driver-substrate', operation: 'Apply' });
    const got = await store.get(NS, t.metadata.name!);
    expect(got?.spec).toEqual(t.spec);
    expect(got?.metadata.annotations?.[OWNER_ANNOTATION]).toBe('openshell-driver-substrate');
    // Re-applying the same template is a no-op: same resourceVersion.
    const again = await store.apply(t);
    expect(again.metadata.resourceVersion).toBe(applied.metadata.resourceVersion);
    // The token is referenced, never stored in the template.
    expect(JSON.stringify(got)).not.toContain(TOKEN);
    expect(await store.get(NS, 'does-not-exist')).toBeNull();
  });

  it('accepts only application/apply-patch+yaml for PATCH, and requires a fieldManager', async () => {
    const t = synthesizeActorTemplate(sandbox(), CFG);
    const merge = await raw('PATCH', `${tmplPath(t.metadata.name!)}?fieldManager=x`, t, 'application/merge-patch+json');
    expect(merge.status).toBe(415);
    expect(merge.json).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'UnsupportedMediaType', code: 415 });
    expect(merge.json.message).toContain('application/apply-patch+yaml');
    const smp = await raw('PATCH', `${tmplPath(t.metadata.name!)}?fieldManager=x`, t, 'application/strategic-merge-patch+json');
    expect(smp.status).toBe(415);
    const noManager = await raw('PATCH', tmplPath(t.metadata.name!), t, 'application/apply-patch+yaml');
    expect(noManager.status).toBe(422);
    expect(noManager.json.message).toBe('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch');
    // Nothing was created by the rejected requests.
    expect(await store.get(NS, t.metadata.name!)).toBeNull();
    // YAML (not just JSON) is accepted under the apply content type.
    const yaml = `apiVersion: ate.dev/v1alpha1\nkind: ActorTemplate\nmetadata:\n  name: yaml-applied\nspec:\n  pauseImage: pause${PIN}\n  snapshotsConfig:\n    location: gs://a/\n`;
    const ok = await raw('PATCH', `${tmplPath('yaml-applied')}?fieldManager=ops`, yaml, 'application/apply-patch+yaml');
    expect(ok.status).toBe(201);
    expect(ok.json.spec.snapshotsConfig).toEqual({ location: 'gs://a/', onPause: 'Full', onCommit: 'Full' });
  });

  it('rejects invalid templates with the CRD messages (422 Invalid with causes)', async () => {
    const t = synthesizeActorTemplate(sandbox(), CFG);
    const bad: ActorTemplate = JSON.parse(JSON.stringify(t));
    bad.spec.containers![0]!.image = 'app:latest';
    bad.spec.snapshotsConfig.onPause = 'Data';
    await expectApiError(store.apply(bad), Code.INVALID_ARGUMENT, /spec\.containers\[0\]\.image: Invalid value: "string": All images must be pinned \(changing the image invalidates snapshots\)/);
    const r = await raw('POST', `/apis/ate.dev/v1alpha1/namespaces/${NS}/actortemplates`, bad);
    expect(r.status).toBe(422);
    const st = r.json as KubeStatus;
    expect(st.reason).toBe('Invalid');
    expect(st.message).toMatch(new RegExp(`^ActorTemplate\\.ate\\.dev "${t.metadata.name}" is invalid: \\[`));
    expect(st.details?.causes).toEqual(
      expect.arrayContaining([
        { reason: 'FieldValueInvalid', field: 'spec.containers[0].image', message: 'Invalid value: "string": All images must be pinned (changing the image invalidates snapshots)' },
        { reason: 'FieldValueInvalid', field: 'spec.snapshotsConfig', message: 'Invalid value: "object": onCommit must be a subset of onPause' },
      ]),
    );
    expect(await store.get(NS, t.metadata.name!)).toBeNull();
  });

  it('keeps the spec immutable while metadata may change', async () => {
    const t = synthesizeActorTemplate(sandbox(), CFG);
    const first = await store.apply(t);
    const changed: ActorTemplate = JSON.parse(JSON.stringify(t));
    changed.spec.containers![0]!.command = ['node', 'other.js'];
    await expectApiError(store.apply(changed), Code.INVALID_ARGUMENT, /is invalid: spec: Invalid value: "object": Spec is immutable/);
    const relabelled: ActorTemplate = JSON.parse(JSON.stringify(t));
    relabelled.metadata.labels = { ...relabelled.metadata.labels, extra: 'yes' };
    const r = await store.apply(relabelled);
    expect(r.metadata.labels?.extra).toBe('yes');
    expect(r.metadata.generation).toBe(1);
    expect(Number(r.metadata.resourceVersion)).toBeGreaterThan(Number(first.metadata.resourceVersion));
    // Labels the manager stops applying are removed (server-side apply ownership).
    const back = await store.apply(t);
    expect(back.metadata.labels?.extra).toBeUndefined();
    // PUT is held to the same rule, and to optimistic concurrency.
    const put = await raw('PUT', tmplPath(t.metadata.name!), { ...back, spec: changed.spec });
    expect(put.status).toBe(422);
    expect(put.json.message).toContain('Spec is immutable');
    const stale = await raw('PUT', tmplPath(t.metadata.name!), { ...back, metadata: { ...back.metadata, resourceVersion: first.metadata.resourceVersion } });
    expect(stale.status).toBe(409);
    expect(stale.json.reason).toBe('Conflict');
    const { resourceVersion: _drop, ...noRv } = back.metadata;
    const unconditional = await raw('PUT', tmplPath(t.metadata.name!), { ...back, metadata: noRv });
    expect(unconditional.status).toBe(422);
    expect(unconditional.json.message).toContain('metadata.resourceVersion: Invalid value: "0x0": must be specified for an update');
  });

  it('writes status only through the /status subresource', async () => {
    const t = synthesizeActorTemplate(sandbox(), CFG);
    await store.apply({ ...t, status: { phase: 'Ready' } });
    expect((await store.get(NS, t.metadata.name!))?.status).toBeUndefined();
    const afterStatus = await setPhase(t.metadata.name!, 'ResumeGoldenActor', { goldenActorID: 'abc' });
    expect(afterStatus.status).toEqual({ phase: 'ResumeGoldenActor', goldenActorID: 'abc' });
    // A /status write cannot smuggle in a spec change.
    const sneaky = await raw('PUT', tmplPath(t.metadata.name!, '/status'), { ...afterStatus, spec: { ...afterStatus.spec, sandboxClass: 'microvm' } });
    expect(sneaky.status).toBe(200);
    expect(sneaky.json.spec.sandboxClass).toBe('gvisor');
  });

  it('waitReady resolves by watching once status.phase becomes Ready, reporting progress', async () => {
    const t = synthesizeActorTemplate(sandbox(), CFG);
    await store.apply(t);
    const seen: string[] = [];
    const ready = store.waitReady(NS, t.metadata.name!, 60_000, (phase, msg) => seen.push(`${phase}|${msg}`));
    await new Promise((r) => setTimeout(r, 50));
    await setPhase(t.metadata.name!, 'ResumeGoldenActor');
    await setPhase(t.metadata.name!, 'WaitGoldenActor');
    await setPhase(t.metadata.name!, 'Ready', {
      goldenSnapshot: 'gs://snaps/oss/golden/',
      conditions: [{ type: 'Ready', status: 'True', reason: 'Ready', message: 'Actor template is ready for use', lastTransitionTime: '2026-01-01T00:00:00Z' }],
    });
    const done = await ready;
    expect(done.status?.phase).toBe('Ready');
    expect(done.status?.goldenSnapshot).toBe('gs://snaps/oss/golden/');
    expect(seen.map((s) => s.split('|')[0])).toEqual(['', 'ResumeGoldenActor', 'WaitGoldenActor', 'Ready']);
    expect(seen[3]).toBe('Ready|Actor template is ready for use');
    // Already Ready: resolves straight away.
    expect((await store.waitReady(NS, t.metadata.name!, 60_000)).status?.phase).toBe('Ready');
  });

  it('waitReady times out with DEADLINE_EXCEEDED naming the last phase', async () => {
    const t = synthesizeActorTemplate(sandbox(), CFG);
    await store.apply(t);
    await setPhase(t.metadata.name!, 'WaitGoldenActor');
    await expectApiError(store.waitReady(NS, t.metadata.name!, 300), Code.DEADLINE_EXCEEDED, new RegExp(`ActorTemplate ${NS}/${t.metadata.name} did not become Ready within 0\\.3s \\(last phase: "WaitGoldenActor"`));
  });

  it('waitReady fails clearly for a missing, deleted, failed or cancelled wait', async () => {
    await expectApiError(store.waitReady(NS, 'never-created', 60_000), Code.NOT_FOUND, /not found/);

    const t1 = synthesizeActorTemplate(sandbox(), CFG);
    await store.apply(t1);
    const gone = store.waitReady(NS, t1.metadata.name!, 60_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(await store.deleteOwned(NS, t1.metadata.name!)).toBe(true);
    await expectApiError(gone, Code.NOT_FOUND, /was deleted while waiting/);

    const t2 = synthesizeActorTemplate(sandbox(), CFG);
    await store.apply(t2);
    const failed = store.waitReady(NS, t2.metadata.name!, 60_000);
    await new Promise((r) => setTimeout(r, 50));
    await setPhase(t2.metadata.name!, 'Failed', { conditions: [{ type: 'Ready', status: 'False', reason: 'GoldenActorFailed', message: 'golden actor exited with status 1', lastTransitionTime: '2026-01-01T00:00:00Z' }] });
    await expectApiError(failed, Code.FAILED_PRECONDITION, /failed: golden actor exited with status 1/);

    const t3 = synthesizeActorTemplate(sandbox(), CFG);
    await store.apply(t3);
    const ac = new AbortController();
    const cancelled = store.waitReady(NS, t3.metadata.name!, 60_000, undefined, ac.signal);
    setTimeout(() => ac.abort(), 50);
    await expectApiError(cancelled, Code.CANCELLED, /cancelled/);
  });

  it('deleteOwned deletes only templates carrying the owner annotation', async () => {
    const foreign = `apiVersion: ate.dev/v1alpha1\nkind: ActorTemplate\nmetadata:\n  name: operator-made\n  annotations: {team: ops}\nspec:\n  pauseImage: pause${PIN}\n  snapshotsConfig: {location: "gs://a/"}\n`;
    expect((await raw('PATCH', `${tmplPath('operator-made')}?fieldManager=kubectl`, foreign, 'application/apply-patch+yaml')).status).toBe(201);
    expect(await store.deleteOwned(NS, 'operator-made')).toBe(false);
    expect(await store.get(NS, 'operator-made')).not.toBeNull();

    const spoof = `apiVersion: ate.dev/v1alpha1\nkind: ActorTemplate\nmetadata:\n  name: wrong-owner\n  annotations: {"${OWNER_ANNOTATION}": someone-else}\nspec:\n  pauseImage: pause${PIN}\n  snapshotsConfig: {location: "gs://a/"}\n`;
    await raw('PATCH', `${tmplPath('wrong-owner')}?fieldManager=kubectl`, spoof, 'application/apply-patch+yaml');
    expect(await store.deleteOwned(NS, 'wrong-owner')).toBe(false);
    expect(await store.get(NS, 'wrong-owner')).not.toBeNull();

    const t = synthesizeActorTemplate(sandbox(), CFG);
    await store.apply(t);
    expect(await store.deleteOwned(NS, t.metadata.name!)).toBe(true);
    expect(await store.get(NS, t.metadata.name!)).toBeNull();
    expect(await store.deleteOwned(NS, t.metadata.name!)).toBe(false);
  });

  it('honours delete preconditions', async () => {
    const t = synthesizeActorTemplate(sandbox(), CFG);
    const a = await store.apply(t);
    const r = await raw('DELETE', tmplPath(t.metadata.name!), { preconditions: { uid: '00000000-0000-0000-0000-000000000000' } });
    expect(r.status).toBe(409);
    expect(r.json.message).toContain('Precondition failed: UID in precondition');
    const ok = await raw('DELETE', tmplPath(t.metadata.name!), { preconditions: { uid: a.metadata.uid, resourceVersion: a.metadata.resourceVersion } });
    expect(ok.status).toBe(200);
    expect((await raw('DELETE', tmplPath(t.metadata.name!))).json).toMatchObject({ reason: 'NotFound', code: 404, message: `actortemplates.ate.dev "${t.metadata.name}" not found` });
  });

  it('round-trips per-sandbox secrets and finds them by label', async () => {
    const sb = sandbox(TOKEN);
    const name = tokenSecretNameFor(sb.id);
    const labels = { 'openshell.ai/sandbox-id': sb.id, 'app.kubernetes.io/managed-by': 'openshell-driver-substrate' };
    await store.putSecret(NS, name, { token: TOKEN, note: 'x' }, labels, { 'openshell.ai/sandbox-name': sb.name });
    expect(await store.getSecret(NS, name)).toEqual({ data: { token: TOKEN, note: 'x' }, labels, annotations: { 'openshell.ai/sandbox-name': sb.name } });
    // Stored base64 like a real Secret, never as plain text.
    const stored = await raw('GET', `/api/v1/namespaces/${NS}/secrets/${name}`);
    expect(stored.json.data.token).toBe(Buffer.from(TOKEN).toString('base64'));
    expect(stored.json.type).toBe('Opaque');
    // A second put replaces the data: keys no longer given are gone.
    await store.putSecret(NS, name, { token: 'rotated' }, labels);
    expect((await store.getSecret(NS, name))?.data).toEqual({ token: 'rotated' });
    await store.putSecret(NS, 'unrelated', { a: 'b' }, { other: 'x' });
    const found = await store.listSecrets(NS, `openshell.ai/sandbox-id=${sb.id}`);
    expect(found.map((s) => s.name)).toEqual([name]);
    expect(found[0]!.data).toEqual({ token: 'rotated' });
    expect((await store.listSecrets(NS, 'app.kubernetes.io/managed-by=openshell-driver-substrate')).map((s) => s.name)).toContain(name);
    expect(await store.deleteSecret(NS, name)).toBe(true);
    expect(await store.deleteSecret(NS, name)).toBe(false);
    expect(await store.getSecret(NS, name)).toBeNull();
  });

  it('needs the namespace to exist; ensureNamespace is idempotent and validates names', async () => {
    const ns = `missing-${process.pid}`;
    await expectApiError(store.apply(synthesizeActorTemplate(sandbox(), { ...CFG, namespace: ns })), Code.NOT_FOUND, new RegExp(`namespaces "${ns}" not found`));
    await store.ensureNamespace(ns);
    await store.ensureNamespace(ns);
    expect((await store.apply(synthesizeActorTemplate(sandbox(), { ...CFG, namespace: ns }))).metadata.namespace).toBe(ns);
    await expectApiError(store.ensureNamespace('Not_Valid'), Code.INVALID_ARGUMENT, /Namespace "Not_Valid" is invalid: metadata\.name: Invalid value: "Not_Valid": a lowercase RFC 1123 label/);
    // Deleting the namespace removes what is in it.
    expect((await raw('DELETE', `/api/v1/namespaces/${ns}`)).status).toBe(200);
    expect((await api.list('actortemplates', ns)).length).toBe(0);
  });

  it('rejects duplicates on POST and reports AlreadyExists', async () => {
    const t = synthesizeActorTemplate(sandbox(), CFG);
    expect((await raw('POST', `/apis/ate.dev/v1alpha1/namespaces/${NS}/actortemplates`, t)).status).toBe(201);
    const dup = await raw('POST', `/apis/ate.dev/v1alpha1/namespaces/${NS}/actortemplates`, t);
    expect(dup.status).toBe(409);
    expect(dup.json).toMatchObject({ reason: 'AlreadyExists', message: `actortemplates.ate.dev "${t.metadata.name}" already exists` });
  });

  it('lists by label selector and streams watch events with resourceVersion resume', async () => {
    const t = synthesizeActorTemplate(sandbox(), CFG);
    const created = await store.apply(t);
    const list = await raw('GET', `/apis/ate.dev/v1alpha1/namespaces/${NS}/actortemplates?labelSelector=${encodeURIComponent(`openshell.ai/sandbox-id=${t.metadata.labels!['openshell.ai/sandbox-id']}`)}`);
    expect(list.json.kind).toBe('ActorTemplateList');
    expect(list.json.items.map((i: KubeObject) => i.metadata.name)).toEqual([t.metadata.name]);
    expect((await raw('GET', `/apis/ate.dev/v1alpha1/namespaces/${NS}/actortemplates?labelSelector=${encodeURIComponent('a in (b')}`)).status).toBe(400);

    const events: string[] = [];
    const gotDeleted = new Promise<void>((resolve, reject) => {
      new Watch(kubeConfigFor(api))
        .watch(
          `/apis/ate.dev/v1alpha1/namespaces/${NS}/actortemplates`,
          { fieldSelector: `metadata.name=${t.metadata.name}`, resourceVersion: created.metadata.resourceVersion },
          (type, obj: ActorTemplate) => {
            events.push(`${type}:${obj.status?.phase ?? ''}`);
            if (type === 'DELETED') resolve();
          },
          (e) => (e ? reject(e) : undefined),
        )
        .then((c) => aborts.push(c), reject);
    });
    await new Promise((r) => setTimeout(r, 50));
    await setPhase(t.metadata.name!, 'ResumeGoldenActor');
    await store.deleteOwned(NS, t.metadata.name!);
    await gotDeleted;
    expect(events).toEqual(['MODIFIED:ResumeGoldenActor', 'DELETED:ResumeGoldenActor']);

    // Resuming from a resourceVersion replays what happened after it.
    const replay: string[] = [];
    await new Promise<void>((resolve, reject) => {
      new Watch(kubeConfigFor(api))
        .watch(
          `/apis/ate.dev/v1alpha1/namespaces/${NS}/actortemplates`,
          { fieldSelector: `metadata.name=${t.metadata.name}`, resourceVersion: created.metadata.resourceVersion },
          (type) => {
            replay.push(type);
            if (type === 'DELETED') resolve();
          },
          (e) => (e ? reject(e) : undefined),
        )
        .then((c) => aborts.push(c), reject);
    });
    expect(replay).toEqual(['MODIFIED', 'DELETED']);
  });

  it('tells embedding processes about every change', async () => {
    const seen: ChangeEvent[] = [];
    const off = api.onChange((e) => seen.push(e));
    const t = synthesizeActorTemplate(sandbox(), CFG);
    await store.apply(t);
    await api.updateStatus('actortemplates', NS, t.metadata.name!, (cur) => ({ ...(cur.status as object), phase: 'ResumeGoldenActor' }));
    await store.deleteOwned(NS, t.metadata.name!);
    off();
    await store.apply(synthesizeActorTemplate(sandbox(), CFG));
    expect(seen.map((e) => `${e.type}:${e.resource}`)).toEqual(['ADDED:actortemplates', 'MODIFIED:actortemplates', 'DELETED:actortemplates']);
    expect((seen[1]!.object.status as { phase: string }).phase).toBe('ResumeGoldenActor');
  });

  it('maps an unreachable API server to UNAVAILABLE', async () => {
    const dead = await startApiServer();
    const access = { url: dead.url, token: dead.token };
    await dead.close();
    await expectApiError(kubeTemplateStore(kubeConfigFor(access)).get(NS, 'x'), Code.UNAVAILABLE, /Kubernetes API server unreachable/);
  });

  it('refuses non-loopback addresses', async () => {
    await expect(startApiServer({ listen: { host: '0.0.0.0', port: 0 } })).rejects.toThrow(/loopback only/);
    expect(() => kubeConfigFor({ url: 'http://192.0.2.1:6443', token: 'x'.repeat(32) })).toThrow(/loopback/);
  });
});

describe('stand-in API server storage', () => {
  it('works over an asynchronous storage and keeps objects and resourceVersions across restarts', async () => {
    const m = new Map<string, string>();
    const asyncStorage: ResourceStorage = {
      get: async (k) => (m.has(k) ? JSON.parse(m.get(k)!) : undefined),
      put: async (k, o) => void m.set(k, JSON.stringify(o)),
      delete: async (k) => m.delete(k),
      list: async (p) => [...m.entries()].filter(([k]) => k.startsWith(p)).map(([, v]) => JSON.parse(v)),
    };
    const first = await startApiServer({ storage: asyncStorage });
    const s1 = kubeTemplateStore(kubeConfigFor(first));
    await s1.ensureNamespace('persist');
    const t = synthesizeActorTemplate(sandbox(), { ...CFG, namespace: 'persist' });
    const a = await s1.apply(t);
    await first.close();
    expect([...m.keys()]).toEqual(expect.arrayContaining(['namespaces/default', 'namespaces/persist', `actortemplates/persist/${t.metadata.name}`]));

    const second = await startApiServer({ storage: asyncStorage });
    try {
      const s2 = kubeTemplateStore(kubeConfigFor(second));
      const got = await s2.get('persist', t.metadata.name!);
      expect(got?.metadata.uid).toBe(a.metadata.uid);
      await s2.putSecret('persist', 'after-restart', { k: 'v' });
      const sec = await raw2(second, '/api/v1/namespaces/persist/secrets/after-restart');
      expect(Number(sec.metadata.resourceVersion)).toBeGreaterThan(Number(a.metadata.resourceVersion));
    } finally {
      await second.close();
    }
  });
});

async function raw2(srv: KubeAccess, path: string) {
  return (await (await fetch(`${srv.url}${path}`, { headers: { authorization: `Bearer ${srv.token}` } })).json()) as KubeObject;
}

describe('stand-in API server watch history and listeners', () => {
  async function firstLines(srv: KubeAccess, path: string, n: number): Promise<Array<{ type: string; object: any }>> { // eslint-disable-line @typescript-eslint/no-explicit-any
    const ac = new AbortController();
    const res = await fetch(`${srv.url}${path}`, { signal: ac.signal, headers: { authorization: `Bearer ${srv.token}` } });
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let buf = '';
    const out: Array<{ type: string; object: any }> = []; // eslint-disable-line @typescript-eslint/no-explicit-any
    try {
      while (out.length < n) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          out.push(JSON.parse(buf.slice(0, i)));
          buf = buf.slice(i + 1);
        }
      }
    } finally {
      ac.abort();
    }
    return out;
  }

  it('bootstraps a watch without resourceVersion with ADDED for existing objects, and answers 410 Expired for a too-old one', async () => {
    const srv = await startApiServer({ watchHistory: 2 });
    try {
      const s = kubeTemplateStore(kubeConfigFor(srv));
      await s.ensureNamespace('w');
      const start = (await raw2(srv, '/api/v1/namespaces/w/secrets')) as unknown as { metadata: { resourceVersion: string } };
      for (let i = 0; i < 4; i++) await s.putSecret('w', `s${i}`, { k: String(i) });
      const boot = await firstLines(srv, '/api/v1/namespaces/w/secrets?watch=true', 4);
      expect(boot.map((e) => `${e.type}:${e.object.metadata.name}`)).toEqual(['ADDED:s0', 'ADDED:s1', 'ADDED:s2', 'ADDED:s3']);
      const expired = await firstLines(srv, `/api/v1/namespaces/w/secrets?watch=true&resourceVersion=${start.metadata.resourceVersion}`, 1);
      expect(expired[0]!.type).toBe('ERROR');
      expect(expired[0]!.object).toMatchObject({ kind: 'Status', code: 410, reason: 'Expired' });
    } finally {
      await srv.close();
    }
  });

  it('serves on a Unix socket and removes it on close', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const http = await import('node:http');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tpl-apiserver-'));
    const sock = path.join(dir, 'api.sock');
    try {
      const srv = await startApiServer({ listen: { path: sock } });
      expect(srv.url).toBe(`unix:${sock}`);
      const body = await new Promise<string>((resolve, reject) => {
        http
          .get({ socketPath: sock, path: '/api/v1/namespaces/default' }, (res) => {
            let b = '';
            res.on('data', (c) => (b += c));
            res.on('end', () => resolve(b));
          })
          .on('error', reject);
      });
      expect(JSON.parse(body)).toMatchObject({ kind: 'Namespace', metadata: { name: 'default' }, status: { phase: 'Active' } });
      await srv.close();
      expect(fs.existsSync(sock)).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
