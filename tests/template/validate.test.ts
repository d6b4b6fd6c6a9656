// The pinned ActorTemplate / WorkerPool CRD rules (ateapi.md §3.1, §3.3), one accepting and one rejecting case
// per rule where both exist, with the Kubernetes API server's message shapes.
import { describe, expect, it } from 'vitest';
import {
  applyDefaults,
  checkImmutable,
  findUnknownFields,
  validateActorTemplate,
  validateNamespace,
  validateSecret,
  validateWorkerPool,
} from '../../src/template/validate.js';

const PINNED = 'busybox@sha256:326e0e090a9a4057e62a1b94236e7a2df2f2f76722f67232e0e47854e4df9c53';
const PAUSE = 'registry.k8s.io/pause:3.10.2@sha256:f548e0e8e3dc1896ca956272154dde3314e8cc4fde0a57577ee9fa1c63f5baf4';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

function base(): Any {
  return {
    apiVersion: 'ate.dev/v1alpha1',
    kind: 'ActorTemplate',
    metadata: { name: 'test', namespace: 'default' },
    spec: {
      pauseImage: PAUSE,
      containers: [{ name: 'main', image: PINNED }],
      snapshotsConfig: { location: 'gs://test-bucket/test-folder' },
      workerSelector: { matchLabels: { pool: 'test-pool' } },
    },
  };
}

function check(mutate: (t: Any) => void): string[] {
  const t = base();
  mutate(t);
  return validateActorTemplate(t);
}

const durable = (t: Any, names: string[]) => {
  t.spec.volumes = names.map((name) => ({ name, durableDir: {} }));
};

describe('ActorTemplate CRD rules', () => {
  it('accepts the base template', () => {
    expect(check(() => undefined)).toEqual([]);
  });

  const accepted: Array<[string, (t: Any) => void]> = [
    ['a dotted DNS-subdomain metadata.name', (t) => (t.metadata.name = 'my.template-1')],
    ['command with 64 items', (t) => (t.spec.containers[0].command = Array(64).fill('x'))],
    ['32 env vars', (t) => (t.spec.containers[0].env = Array.from({ length: 32 }, (_, i) => ({ name: `V${i}`, value: 'y' })))],
    ['an env name with a space (printable ASCII)', (t) => (t.spec.containers[0].env = [{ name: 'FOO BAR', value: 'v' }])],
    ['an empty env value', (t) => (t.spec.containers[0].env = [{ name: 'FOO', value: '' }])],
    [
      'env valueFrom.secretKeyRef',
      (t) => (t.spec.containers[0].env = [{ name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'my-secret', key: 'my.key_1', optional: true } } }]),
    ],
    ['readyz with only a port', (t) => (t.spec.containers[0].readyz = { httpGet: { port: 8080 } })],
    ['readyz path with percent-escapes', (t) => (t.spec.containers[0].readyz = { httpGet: { path: '/v1/health/check%20me', port: 80 } })],
    ['readyz port 65535', (t) => (t.spec.containers[0].readyz = { httpGet: { path: '/h', port: 65535 } })],
    ['10 containers', (t) => (t.spec.containers = Array.from({ length: 10 }, (_, i) => ({ name: `c${i}`, image: PINNED })))],
    ['sandboxClass microvm', (t) => (t.spec.sandboxClass = 'microvm')],
    ['onPause Full, onCommit Data', (t) => Object.assign(t.spec.snapshotsConfig, { onPause: 'Full', onCommit: 'Data' })],
    ['onPause Data, onCommit Data', (t) => Object.assign(t.spec.snapshotsConfig, { onPause: 'Data', onCommit: 'Data' })],
    ['onPause unset, onCommit Data', (t) => (t.spec.snapshotsConfig.onCommit = 'Data')],
    [
      'one durableDir volume mounted once',
      (t) => {
        durable(t, ['home']);
        t.spec.containers[0].volumeMounts = [{ name: 'home', mountPath: '/home' }];
      },
    ],
    [
      'the same durableDir mounted by two containers',
      (t) => {
        durable(t, ['home']);
        t.spec.containers[0].volumeMounts = [{ name: 'home', mountPath: '/home-main' }];
        t.spec.containers.push({ name: 'side', image: PINNED, volumeMounts: [{ name: 'home', mountPath: '/home-side' }] });
      },
    ],
    ...(['/home/.config', '/home/..config', '/home/x..y', '/my home directory', '/a/b/c'].map((p) => [
      `mountPath ${JSON.stringify(p)}`,
      (t: Any) => {
        durable(t, ['v']);
        t.spec.containers[0].volumeMounts = [{ name: 'v', mountPath: p }];
      },
    ]) as Array<[string, (t: Any) => void]>),
    [
      'a workerSelector with expressions',
      (t) =>
        (t.spec.workerSelector = {
          matchExpressions: [
            { key: 'pool', operator: 'In', values: ['a', 'b'] },
            { key: 'gpu', operator: 'DoesNotExist' },
          ],
        }),
    ],
    ['no containers at all (optional)', (t) => delete t.spec.containers],
  ];
  for (const [name, mutate] of accepted) {
    it(`accepts ${name}`, () => expect(check(mutate)).toEqual([]));
  }

  const rejected: Array<[string, (t: Any) => void, string]> = [
    ['a missing pauseImage', (t) => delete t.spec.pauseImage, 'spec.pauseImage: Required value'],
    ['an empty pauseImage', (t) => (t.spec.pauseImage = ''), 'spec.pauseImage: Required value'],
    [
      'an unpinned pauseImage',
      (t) => (t.spec.pauseImage = 'pause'),
      'spec.pauseImage: Invalid value: "string": All images must be pinned (changing the image invalidates snapshots)',
    ],
    [
      'an unpinned container image',
      (t) => (t.spec.containers[0].image = 'busybox:latest'),
      'spec.containers[0].image: Invalid value: "string": All images must be pinned (changing the image invalidates snapshots)',
    ],
    ['a missing container image', (t) => delete t.spec.containers[0].image, 'spec.containers[0].image: Required value'],
    [
      '11 containers',
      (t) => (t.spec.containers = Array.from({ length: 11 }, (_, i) => ({ name: `c${i}`, image: PINNED }))),
      'spec.containers: Too many: 11: must have at most 10 items',
    ],
    ['a missing container name', (t) => delete t.spec.containers[0].name, 'spec.containers[0].name: Required value'],
    ['an empty container name', (t) => (t.spec.containers[0].name = ''), 'spec.containers[0].name: Invalid value: "string": Name must be a valid DNS label'],
    ['a container name with a space', (t) => (t.spec.containers[0].name = 'Invalid Name'), 'spec.containers[0].name: Invalid value: "string": Name must be a valid DNS label'],
    ['a 64-character container name', (t) => (t.spec.containers[0].name = 'x'.repeat(64)), 'spec.containers[0].name: Too long: may not be more than 63 bytes'],
    ['the container name "pause" (atelet)', (t) => (t.spec.containers[0].name = 'pause'), 'spec.containers[0].name: Invalid value: "pause": the container name "pause" is reserved'],
    [
      'duplicate container names (atelet)',
      (t) => t.spec.containers.push({ name: 'main', image: PINNED }),
      'spec.containers[1].name: Duplicate value: "main"',
    ],
    ['65 command items', (t) => (t.spec.containers[0].command = Array(65).fill('x')), 'spec.containers[0].command: Too many: 65: must have at most 64 items'],
    ['a non-string command item', (t) => (t.spec.containers[0].command = ['ok', 3]), 'spec.containers[0].command[1]: Invalid value: "integer": spec.containers[0].command[1] in body must be of type string: "integer"'],
    [
      '33 env vars',
      (t) => (t.spec.containers[0].env = Array.from({ length: 33 }, (_, i) => ({ name: `V${i}`, value: 'y' }))),
      'spec.containers[0].env: Too many: 33: must have at most 32 items',
    ],
    ['an empty env name', (t) => (t.spec.containers[0].env = [{ name: '', value: 'v' }]), 'spec.containers[0].env[0].name: Invalid value: "": spec.containers[0].env[0].name in body should be at least 1 chars long'],
    [
      "an env name containing '='",
      (t) => (t.spec.containers[0].env = [{ name: 'FOO=BAR', value: 'v' }]),
      `spec.containers[0].env[0].name: Invalid value: "FOO=BAR": spec.containers[0].env[0].name in body should match '^[ -<>-~]+$'`,
    ],
    ['an env name with a non-ASCII character', (t) => (t.spec.containers[0].env = [{ name: 'FÖÖ', value: 'v' }]), "in body should match '^[ -<>-~]+$'"],
    ['an env var with neither value nor valueFrom', (t) => (t.spec.containers[0].env = [{ name: 'FOO' }]), 'spec.containers[0].env[0]: Invalid value: "object": exactly one of the fields in [value valueFrom] must be set'],
    [
      'an env var with both value and valueFrom',
      (t) => (t.spec.containers[0].env = [{ name: 'FOO', value: 'x', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }]),
      'exactly one of the fields in [value valueFrom] must be set',
    ],
    ['an empty valueFrom', (t) => (t.spec.containers[0].env = [{ name: 'FOO', valueFrom: {} }]), 'spec.containers[0].env[0].valueFrom: Invalid value: 0: spec.containers[0].env[0].valueFrom in body should have at least 1 properties'],
    [
      'a valueFrom with two sources',
      (t) => (t.spec.containers[0].env = [{ name: 'FOO', valueFrom: { secretKeyRef: { name: 's', key: 'k' }, configMapKeyRef: { name: 'c', key: 'k' } } }]),
      'should have at most 1 properties',
    ],
    ['a secretKeyRef without name', (t) => (t.spec.containers[0].env = [{ name: 'F', valueFrom: { secretKeyRef: { key: 'k' } } }]), 'spec.containers[0].env[0].valueFrom.secretKeyRef.name: Required value'],
    [
      'a secretKeyRef with an invalid name',
      (t) => (t.spec.containers[0].env = [{ name: 'F', valueFrom: { secretKeyRef: { name: 'Invalid_Name', key: 'k' } } }]),
      'spec.containers[0].env[0].valueFrom.secretKeyRef.name: Invalid value: "string": Name must be a valid DNS subdomain',
    ],
    [
      'a secretKeyRef name of 254 characters',
      (t) => (t.spec.containers[0].env = [{ name: 'F', valueFrom: { secretKeyRef: { name: 'x'.repeat(254), key: 'k' } } }]),
      'spec.containers[0].env[0].valueFrom.secretKeyRef.name: Too long: may not be more than 253 bytes',
    ],
    ['a secretKeyRef without key', (t) => (t.spec.containers[0].env = [{ name: 'F', valueFrom: { secretKeyRef: { name: 's' } } }]), 'spec.containers[0].env[0].valueFrom.secretKeyRef.key: Required value'],
    ['a secretKeyRef with an empty key', (t) => (t.spec.containers[0].env = [{ name: 'F', valueFrom: { secretKeyRef: { name: 's', key: '' } } }]), 'should be at least 1 chars long'],
    [
      'a secretKeyRef key with a slash',
      (t) => (t.spec.containers[0].env = [{ name: 'F', valueFrom: { secretKeyRef: { name: 's', key: 'invalid/key' } } }]),
      `spec.containers[0].env[0].valueFrom.secretKeyRef.key: Invalid value: "invalid/key": spec.containers[0].env[0].valueFrom.secretKeyRef.key in body should match '^[-._a-zA-Z0-9]+$'`,
    ],
    ['readyz without httpGet', (t) => (t.spec.containers[0].readyz = {}), 'spec.containers[0].readyz.httpGet: Required value'],
    ['readyz without port', (t) => (t.spec.containers[0].readyz = { httpGet: { path: '/x' } }), 'spec.containers[0].readyz.httpGet.port: Required value'],
    ['readyz port 0', (t) => (t.spec.containers[0].readyz = { httpGet: { port: 0 } }), 'spec.containers[0].readyz.httpGet.port: Invalid value: 0: spec.containers[0].readyz.httpGet.port in body should be greater than or equal to 1'],
    ['readyz port 65536', (t) => (t.spec.containers[0].readyz = { httpGet: { port: 65536 } }), 'should be less than or equal to 65535'],
    ['readyz path of 1025 characters', (t) => (t.spec.containers[0].readyz = { httpGet: { path: `/${'a'.repeat(1024)}`, port: 80 } }), 'spec.containers[0].readyz.httpGet.path: Too long: may not be more than 1024 bytes'],
    ...(['readyz', '/readyz?check=1', '/readyz#frag', '/ready z', '/foo%', '/bar%zz'].map((p) => [
      `readyz path ${JSON.stringify(p)}`,
      (t: Any) => (t.spec.containers[0].readyz = { httpGet: { path: p, port: 80 } }),
      `spec.containers[0].readyz.httpGet.path: Invalid value: ${JSON.stringify(p)}: spec.containers[0].readyz.httpGet.path in body should match`,
    ]) as Array<[string, (t: Any) => void, string]>),
    ...(['/', 'home/user', '', ' /home', '/home/', '/home//user', '/ho:me', '/home/../etc', '/home/..', '/home/./user', '/home\u0000/user', '/home\t/user'].map((p) => [
      `mountPath ${JSON.stringify(p)}`,
      (t: Any) => {
        durable(t, ['v']);
        t.spec.containers[0].volumeMounts = [{ name: 'v', mountPath: p }];
      },
      'spec.containers[0].volumeMounts[0].mountPath: Invalid value: "string": MountPath must be a clean absolute Unix path',
    ]) as Array<[string, (t: Any) => void, string]>),
    ['a mountPath of 4097 characters', (t) => (t.spec.containers[0].volumeMounts = [{ name: 'v', mountPath: `/${'a'.repeat(4096)}` }]), 'mountPath: Too long: may not be more than 4096 bytes'],
    ['a volumeMount with an invalid name', (t) => (t.spec.containers[0].volumeMounts = [{ name: 'V_1', mountPath: '/a' }]), 'spec.containers[0].volumeMounts[0].name: Invalid value: "string": Name must be a valid DNS label'],
    [
      '33 volumeMounts',
      (t) => (t.spec.containers[0].volumeMounts = Array.from({ length: 33 }, (_, i) => ({ name: 'v', mountPath: `/m${i}` }))),
      'spec.containers[0].volumeMounts: Too many: 33: must have at most 32 items',
    ],
    ['33 volumes', (t) => (t.spec.volumes = Array.from({ length: 33 }, (_, i) => ({ name: `v${i}`, durableDir: {} }))), 'spec.volumes: Too many: 33: must have at most 32 items'],
    ['a volume without a source', (t) => (t.spec.volumes = [{ name: 'v' }]), 'spec.volumes[0]: Invalid value: "object": exactly one of the fields in [durableDir] must be set'],
    ['a volume with an invalid name', (t) => (t.spec.volumes = [{ name: 'Vol', durableDir: {} }]), 'spec.volumes[0].name: Invalid value: "string": Name must be a valid DNS label'],
    [
      'two durableDir volumes',
      (t) => {
        durable(t, ['a', 'b']);
        t.spec.containers[0].volumeMounts = [{ name: 'a', mountPath: '/a' }];
        t.spec.containers.push({ name: 'side', image: PINNED, volumeMounts: [{ name: 'b', mountPath: '/b' }] });
      },
      'spec: Invalid value: "object": Only one DurableDir-typed volume is supported',
    ],
    [
      'one container mounting the durableDir twice',
      (t) => {
        durable(t, ['a']);
        t.spec.containers[0].volumeMounts = [
          { name: 'a', mountPath: '/a1' },
          { name: 'a', mountPath: '/a2' },
        ];
      },
      'spec: Invalid value: "object": A container may mount only one DurableDir-typed volume',
    ],
    [
      'a durableDir with sandboxClass microvm',
      (t) => {
        durable(t, ['a']);
        t.spec.containers[0].volumeMounts = [{ name: 'a', mountPath: '/a' }];
        t.spec.sandboxClass = 'microvm';
      },
      `spec: Invalid value: "object": DurableDir volumes are not supported when sandboxClass is 'microvm'`,
    ],
    ['a missing snapshotsConfig', (t) => delete t.spec.snapshotsConfig, 'spec.snapshotsConfig: Required value'],
    ['a missing snapshotsConfig.location', (t) => (t.spec.snapshotsConfig = {}), 'spec.snapshotsConfig.location: Required value'],
    ['an empty snapshotsConfig.location', (t) => (t.spec.snapshotsConfig.location = ''), 'spec.snapshotsConfig.location: Invalid value: "": spec.snapshotsConfig.location in body should be at least 1 chars long'],
    ['onPause "bogus"', (t) => (t.spec.snapshotsConfig.onPause = 'bogus'), 'spec.snapshotsConfig.onPause: Unsupported value: "bogus": supported values: "Full", "Data"'],
    ['onCommit "bogus"', (t) => (t.spec.snapshotsConfig.onCommit = 'bogus'), 'spec.snapshotsConfig.onCommit: Unsupported value: "bogus"'],
    ['onPause Data with onCommit Full', (t) => Object.assign(t.spec.snapshotsConfig, { onPause: 'Data', onCommit: 'Full' }), 'spec.snapshotsConfig: Invalid value: "object": onCommit must be a subset of onPause'],
    ['onPause Data with onCommit unset (defaults to Full)', (t) => (t.spec.snapshotsConfig.onPause = 'Data'), 'onCommit must be a subset of onPause'],
    ['sandboxClass "kvm"', (t) => (t.spec.sandboxClass = 'kvm'), 'spec.sandboxClass: Unsupported value: "kvm": supported values: "gvisor", "microvm"'],
    ['a workerSelector label value with a space', (t) => (t.spec.workerSelector = { matchLabels: { pool: 'a b' } }), 'spec.workerSelector.matchLabels: Invalid value: "a b"'],
    ['a workerSelector operator "Has"', (t) => (t.spec.workerSelector = { matchExpressions: [{ key: 'k', operator: 'Has' }] }), 'spec.workerSelector.matchExpressions[0].operator: Invalid value: "Has": not a valid selector operator'],
    ['a workerSelector In without values', (t) => (t.spec.workerSelector = { matchExpressions: [{ key: 'k', operator: 'In' }] }), 'spec.workerSelector.matchExpressions[0].values: Required value'],
    ['a missing spec', (t) => delete t.spec, 'spec: Required value'],
    ['containers given as a string', (t) => (t.spec.containers = 'main'), 'spec.containers: Invalid value: "string": spec.containers in body must be of type array: "string"'],
    ['a missing metadata.name', (t) => delete t.metadata.name, 'metadata.name: Required value: name or generateName is required'],
    ['an uppercase metadata.name', (t) => (t.metadata.name = 'Bad_Name'), 'metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of'],
    ['a namespace that is not a DNS label', (t) => (t.metadata.namespace = 'my.ns'), 'metadata.namespace: Invalid value: "my.ns": a lowercase RFC 1123 label must consist of'],
    ['an invalid label key', (t) => (t.metadata.labels = { 'bad key': 'v' }), 'metadata.labels: Invalid value: "bad key"'],
    ['the wrong apiVersion', (t) => (t.apiVersion = 'ate.dev/v1'), 'apiVersion: Invalid value: "ate.dev/v1"'],
  ];
  for (const [name, mutate, msg] of rejected) {
    it(`rejects ${name}`, () => {
      const errs = check(mutate);
      expect(errs.some((e) => e.includes(msg)), `${JSON.stringify(errs)} should include ${JSON.stringify(msg)}`).toBe(true);
    });
  }
});

describe('ActorTemplate defaults and immutability', () => {
  it('applies the CRD defaults to a copy', () => {
    const t = base();
    t.spec.containers[0].readyz = { httpGet: { port: 8080 } };
    const d = applyDefaults(t);
    expect(d.spec.snapshotsConfig).toEqual({ location: 'gs://test-bucket/test-folder', onPause: 'Full', onCommit: 'Full' });
    expect(d.spec.sandboxClass).toBe('gvisor');
    expect(d.spec.containers[0].readyz.httpGet.path).toBe('/readyz');
    expect(t.spec.sandboxClass).toBeUndefined();
  });

  it('keeps explicit values', () => {
    const t = base();
    Object.assign(t.spec.snapshotsConfig, { onPause: 'Data', onCommit: 'Data' });
    t.spec.sandboxClass = 'microvm';
    t.spec.containers[0].readyz = { httpGet: { port: 1, path: '/health' } };
    const d = applyDefaults(t);
    expect(d.spec.snapshotsConfig.onPause).toBe('Data');
    expect(d.spec.sandboxClass).toBe('microvm');
    expect(d.spec.containers[0].readyz.httpGet.path).toBe('/health');
  });

  it('treats a spec equal after defaulting as unchanged', () => {
    const a = base();
    const b = applyDefaults(base());
    b.metadata.labels = { changed: 'yes' };
    expect(checkImmutable(a, b)).toEqual([]);
  });

  it('rejects any spec change with "Spec is immutable"', () => {
    const b = base();
    b.spec.containers[0].image = `other@sha256:${'c'.repeat(64)}`;
    expect(checkImmutable(base(), b)).toEqual(['spec: Invalid value: "object": Spec is immutable']);
  });
});

describe('WorkerPool CRD rules', () => {
  const pool = (): Any => ({ apiVersion: 'ate.dev/v1alpha1', kind: 'WorkerPool', metadata: { name: 'pool', namespace: 'default', labels: { pool: 'a' } }, spec: { replicas: 2, ateomImage: 'ateom@sha256:abc' } });

  it('accepts a minimal pool and defaults sandboxClass to gvisor', () => {
    expect(validateWorkerPool(pool())).toEqual([]);
    expect(applyDefaults(pool()).spec.sandboxClass).toBe('gvisor');
  });
  it('accepts replicas 0, 16 tolerations and a template', () => {
    const p = pool();
    p.spec.replicas = 0;
    p.spec.template = { nodeSelector: { a: 'b' }, tolerations: Array(16).fill({ key: 'k', operator: 'Exists' }), priorityClassName: 'high', resources: { limits: { cpu: '1' } } };
    expect(validateWorkerPool(p)).toEqual([]);
  });
  const rejected: Array<[string, (p: Any) => void, string]> = [
    ['missing replicas', (p) => delete p.spec.replicas, 'spec.replicas: Required value'],
    ['negative replicas', (p) => (p.spec.replicas = -1), 'spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0'],
    ['fractional replicas', (p) => (p.spec.replicas = 1.5), 'spec.replicas in body must be of type integer'],
    ['missing ateomImage', (p) => delete p.spec.ateomImage, 'spec.ateomImage: Required value'],
    ['empty ateomImage', (p) => (p.spec.ateomImage = ''), 'spec.ateomImage in body should be at least 1 chars long'],
    ['sandboxClass "kata"', (p) => (p.spec.sandboxClass = 'kata'), 'spec.sandboxClass: Unsupported value: "kata"'],
    ['17 tolerations', (p) => (p.spec.template = { tolerations: Array(17).fill({ key: 'k' }) }), 'spec.template.tolerations: Too many: 17: must have at most 16 items'],
  ];
  for (const [name, mutate, msg] of rejected) {
    it(`rejects ${name}`, () => {
      const p = pool();
      mutate(p);
      const errs = validateWorkerPool(p);
      expect(errs.some((e) => e.includes(msg)), JSON.stringify(errs)).toBe(true);
    });
  }
});

describe('core kinds and unknown fields', () => {
  it('requires Namespace names to be DNS labels', () => {
    expect(validateNamespace({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ok-ns' } })).toEqual([]);
    expect(validateNamespace({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a.b' } })[0]).toMatch(/^metadata\.name: Invalid value: "a\.b": a lowercase RFC 1123 label/);
  });
  it('checks Secret keys and base64 without echoing secret values', () => {
    expect(validateSecret({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: 'n' }, data: { token: Buffer.from('x').toString('base64') } })).toEqual([]);
    const errs = validateSecret({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: 'n' }, data: { 'bad key': 'not base64 SECRETVALUE!' } });
    expect(errs.join('\n')).toContain('data[bad key]: Invalid value: "bad key": a valid config key');
    expect(errs.join('\n')).toContain('illegal base64 data');
    expect(errs.join('\n')).not.toContain('SECRETVALUE');
  });
  it('finds fields the CRD does not declare', () => {
    const t = base();
    t.spec.containers[0].args = ['x'];
    t.spec.bogus = 1;
    expect(findUnknownFields(t).sort()).toEqual(['spec.bogus', 'spec.containers[0].args']);
    expect(findUnknownFields(base())).toEqual([]);
  });
});
