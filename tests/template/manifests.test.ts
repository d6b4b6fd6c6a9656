// Multi-document manifests as an operator would `kubectl apply -f` them.
import { describe, expect, it } from 'vitest';
import { Code } from '../../src/common/errors.js';
import { ManifestError, parseManifests } from '../../src/template/manifests.js';

const PIN = `@sha256:${'e'.repeat(64)}`;

const GOOD = `
# the demo's manifests
apiVersion: v1
kind: Namespace
metadata:
  name: helpdesk
---
apiVersion: ate.dev/v1alpha1
kind: WorkerPool
metadata:
  name: pool-a
  namespace: helpdesk
  labels: { pool: a }
spec:
  replicas: 3
  ateomImage: ateom${PIN}
---
apiVersion: ate.dev/v1alpha1
kind: ActorTemplate
metadata:
  name: counter
spec:
  pauseImage: pause${PIN}
  containers:
    - name: app
      image: counter${PIN}
      command: ["node", "/app/server.js"]
      env:
        - { name: PORT, value: "80" }
        - name: API_KEY
          valueFrom: { secretKeyRef: { name: counter-secrets, key: api-key } }
      readyz: { httpGet: { port: 80 } }
  snapshotsConfig:
    location: gs://snapshots/helpdesk/
---
---
apiVersion: v1
kind: Secret
metadata:
  name: counter-secrets
stringData:
  api-key: hunter2
`;

function problemsOf(text: string): string[] {
  try {
    parseManifests(text);
  } catch (e) {
    expect(e).toBeInstanceOf(ManifestError);
    expect((e as ManifestError).code).toBe(Code.INVALID_ARGUMENT);
    return (e as ManifestError).problems;
  }
  throw new Error('expected a ManifestError');
}

describe('parseManifests', () => {
  it('parses every accepted kind, skipping empty documents, with defaults applied', () => {
    const objs = parseManifests(GOOD);
    expect(objs.map((o) => o.kind)).toEqual(['Namespace', 'WorkerPool', 'ActorTemplate', 'Secret']);
    const [ns, pool, tmpl, secret] = objs as [any, any, any, any]; // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(ns.metadata.namespace).toBeUndefined();
    expect(pool.metadata.namespace).toBe('helpdesk');
    expect(pool.spec.sandboxClass).toBe('gvisor');
    expect(tmpl.metadata.namespace).toBe('default');
    expect(tmpl.spec.snapshotsConfig).toMatchObject({ onPause: 'Full', onCommit: 'Full' });
    expect(tmpl.spec.sandboxClass).toBe('gvisor');
    expect(tmpl.spec.containers[0].readyz.httpGet.path).toBe('/readyz');
    expect(secret.metadata.namespace).toBe('default');
    expect(secret.stringData).toBeUndefined();
    expect(Buffer.from(secret.data['api-key'], 'base64').toString()).toBe('hunter2');
    expect(secret.type).toBe('Opaque');
  });

  it('returns nothing for an empty or comment-only file', () => {
    expect(parseManifests('')).toEqual([]);
    expect(parseManifests('# nothing\n---\n# still nothing\n')).toEqual([]);
  });

  it('rejects an unknown kind naming the document, the kind and the accepted kinds', () => {
    const p = problemsOf(`apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n`);
    expect(p).toHaveLength(1);
    expect(p[0]).toContain('document 2 (Deployment "web")');
    expect(p[0]).toContain('unsupported kind "Deployment" (apiVersion "apps/v1")');
    expect(p[0]).toContain('Namespace (v1), Secret (v1), WorkerPool (ate.dev/v1alpha1), ActorTemplate (ate.dev/v1alpha1)');
  });

  it('rejects a known kind under the wrong apiVersion, saying which to use', () => {
    const p = problemsOf(`apiVersion: ate.dev/v1\nkind: ActorTemplate\nmetadata: {name: t}\nspec: {}\n`);
    expect(p[0]).toMatch(/document 1 \(ActorTemplate "t"\): apiVersion "ate\.dev\/v1" is not supported for kind ActorTemplate; use "ate\.dev\/v1alpha1"/);
  });

  it('rejects a document without kind', () => {
    expect(problemsOf(`apiVersion: v1\nmetadata: {name: a}\n`)[0]).toMatch(/document 1 \(<no kind> "a"\): missing kind; accepted kinds:/);
  });

  it('lists CRD validation errors per document', () => {
    const text = `apiVersion: ate.dev/v1alpha1
kind: ActorTemplate
metadata: {name: t1}
spec:
  pauseImage: pause:latest
  containers: [{name: pause, image: app${PIN}}]
  snapshotsConfig: {location: "", onPause: Data, onCommit: Full}
---
apiVersion: ate.dev/v1alpha1
kind: WorkerPool
metadata: {name: p1}
spec: {replicas: -1}
`;
    const p = problemsOf(text);
    expect(p).toContain('document 1 (ActorTemplate "t1"): spec.pauseImage: Invalid value: "string": All images must be pinned (changing the image invalidates snapshots)');
    expect(p.some((x) => x.startsWith('document 1 (ActorTemplate "t1"): spec.containers[0].name: Invalid value: "pause"'))).toBe(true);
    expect(p).toContain('document 1 (ActorTemplate "t1"): spec.snapshotsConfig: Invalid value: "object": onCommit must be a subset of onPause');
    expect(p.some((x) => x.startsWith('document 1 (ActorTemplate "t1"): spec.snapshotsConfig.location: Invalid value: ""'))).toBe(true);
    expect(p).toContain('document 2 (WorkerPool "p1"): spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0');
    expect(p).toContain('document 2 (WorkerPool "p1"): spec.ateomImage: Required value');
  });

  it('rejects fields the CRD does not declare, as kubectl strict validation does', () => {
    const p = problemsOf(`apiVersion: ate.dev/v1alpha1
kind: ActorTemplate
metadata: {name: t}
spec:
  pauseImage: pause${PIN}
  containers: [{name: app, image: app${PIN}, args: ["--x"]}]
  snapshotsConfig: {location: gs://a/}
`);
    expect(p).toEqual(['document 1 (ActorTemplate "t"): unknown field "spec.containers[0].args"']);
  });

  it('names the document with a YAML syntax error', () => {
    const p = problemsOf(`apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: [Namespace\n`);
    expect(p[0]).toMatch(/^document 2: YAML syntax error/);
  });

  it('rejects a non-object document', () => {
    expect(problemsOf(`- a\n- b\n`)[0]).toMatch(/document 1: expected a Kubernetes object .*got a list/);
  });

  it('never echoes secret values in its errors', () => {
    const p = problemsOf(`apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {"bad key": "TOPSECRET###"}\nstringData: {ok: TOPSECRET2}\n`);
    expect(p.join('\n')).not.toContain('TOPSECRET');
    expect(p.join('\n')).toContain('data[bad key]');
  });
});
