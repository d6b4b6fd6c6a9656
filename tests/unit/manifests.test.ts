// The CLI's manifests (src/cli/manifests.ts): kubectl-ate's protojson ActorTemplate decoded strictly, the
// ate.dev/v1alpha1 WorkerPool and SandboxConfig kinds, Atespace, EgressPolicy; multi-document files parsed
// whole before anything is returned, every problem naming its document and field path.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify } from 'yaml';
import { ActorMetadataField, ActorTemplate, SandboxClass, SnapshotContentScope } from '../../src/gen/ateapi.js';
import {
  applyOrder,
  ateapiSchema,
  decodeMessage,
  ManifestError,
  parseEgressPolicyManifest,
  parseManifests,
  templateDifferences,
} from '../../src/cli/manifests.js';

const PIN = `@sha256:${'e'.repeat(64)}`;
const SHA = 'a'.repeat(64);

/** The v0.4.0 runbook's smoke-test template (addendum §3.1), as users write it. */
const COUNTER = `
metadata:
  atespace: smoke
  name: counter
containers:
- name: counter
  image: us-central1-docker.pkg.dev/p/ax/substrate/counter${PIN}
  command: [/ko-app/counter, --extra-port=9090, --tcp-port=9091]
  wakeupProbe: {httpGet: {path: /readyz, port: 80}}
  env:
  - {name: SSL_CERT_FILE, value: /run/ate/trust-bundle.pem}
  volumeMounts:
  - {name: data, mountPath: /home/counter}
  - {name: trust, mountPath: /run/ate}
resources:
  limits:
  - {name: cpu, quantity: "1"}
  - {name: memory, quantity: 512Mi}
snapshotConfig:
  onCommit: SNAPSHOT_CONTENT_SCOPE_FULL
  storageLocation: gs://bucket/smoke/
sandboxConfig: {sandboxClass: SANDBOX_CLASS_GVISOR, configName: gvisor-default}
volumes:
- {name: data, durableDir: {}}
- name: trust
  systemInfo:
    dataSources:
    - trustBundle: {names: [egress-mitm.ate.dev, system-roots.ate.dev], path: trust-bundle.pem}
`;

function problems(text: string): string[] {
  try {
    parseManifests(text);
  } catch (e) {
    expect(e).toBeInstanceOf(ManifestError);
    return (e as ManifestError).problems;
  }
  throw new Error('expected a ManifestError');
}


describe('ActorTemplate (kubectl ate create actor-template -f)', () => {
  it('decodes the v0.4.0 runbook template into the generated message', () => {
    const { docs, warnings } = parseManifests(COUNTER);
    expect(warnings).toEqual([]);
    expect(docs).toHaveLength(1);
    const d = docs[0]!;
    if (d.kind !== 'ActorTemplate') throw new Error('kind');
    const t = d.template;
    expect(d.index).toBe(1);
    expect(d.label).toBe('actortemplate smoke/counter');
    expect(t.metadata).toMatchObject({ atespace: 'smoke', name: 'counter' });
    expect(t.containers[0]!.wakeupProbe?.httpGet).toEqual({ path: '/readyz', port: 80 });
    expect(t.containers[0]!.volumeMounts.map((m) => m.mountPath)).toEqual(['/home/counter', '/run/ate']);
    expect(t.resources?.limits).toEqual([
      { name: 'cpu', quantity: '1' },
      { name: 'memory', quantity: '512Mi' },
    ]);
    expect(t.snapshotConfig).toEqual({ onCommit: SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, storageLocation: 'gs://bucket/smoke/' });
    expect(t.sandboxConfig).toEqual({ sandboxClass: SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' });
    expect(t.volumes[0]!.durableDir).toEqual({});
    expect(t.volumes[1]!.systemInfo?.dataSources[0]!.trustBundle).toEqual({ names: ['egress-mitm.ate.dev', 'system-roots.ate.dev'], path: 'trust-bundle.pem' });
    // Round trip: what `templates get -o yaml` prints is re-applyable and decodes to the same message.
    const again = parseManifests(stringify(ActorTemplate.toJSON(t))).docs[0]!;
    expect(again.kind === 'ActorTemplate' && again.template).toEqual(t);
  });

  it('accepts proto field names as well as JSON names, enums by number, int64 as a string, null as unset', () => {
    const text = `
metadata: {atespace: a, name: t, version: "7", create_time: "2026-10-08T12:00:00Z"}
containers:
- name: c
  image: i${PIN}
  wakeup_probe: {http_get: {port: 8080}, timeout_seconds: 5}
  volume_mounts: [{name: v, mount_path: /data}]
  security_context: null
snapshot_config: {on_commit: 2, storage_location: "file:///x"}
sandbox_config: {sandbox_class: 1, config_name: gvisor-default}
worker_selector: {match_labels: {pool: gpu}}
volumes:
- name: v
  system_info: {data_sources: [{actor_metadata: {items: [{field: ACTOR_METADATA_FIELD_NAME, path: name}, {field: 3, path: uid}]}}]}
`;
    const d = parseManifests(text).docs[0]!;
    if (d.kind !== 'ActorTemplate') throw new Error('kind');
    const t = d.template;
    expect(t.metadata?.version).toBe(7);
    expect(t.metadata?.createTime?.toISOString()).toBe('2026-10-08T12:00:00.000Z');
    expect(t.containers[0]!.wakeupProbe).toEqual({ httpGet: { path: '', port: 8080 }, timeoutSeconds: 5 });
    expect(t.containers[0]!.volumeMounts).toEqual([{ name: 'v', mountPath: '/data' }]);
    expect(t.containers[0]!.securityContext).toBeUndefined();
    expect(t.snapshotConfig?.onCommit).toBe(SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_DATA);
    expect(t.sandboxConfig?.sandboxClass).toBe(SandboxClass.SANDBOX_CLASS_GVISOR);
    expect(t.workerSelector?.matchLabels).toEqual({ pool: 'gpu' });
    expect(t.volumes[0]!.systemInfo?.dataSources[0]!.actorMetadata?.items.map((i) => i.field)).toEqual([
      ActorMetadataField.ACTOR_METADATA_FIELD_NAME,
      ActorMetadataField.ACTOR_METADATA_FIELD_UID,
    ]);
  });

  it('rejects the pre-0.4 fields as unknown fields, naming document and path', () => {
    const old = `
metadata: {atespace: a, name: t}
containers:
- name: c
  image: i${PIN}
  readyz: {path: /}
snapshotConfig: {onPause: SNAPSHOT_CONTENT_SCOPE_FULL, onResume: {}, storageLocation: gs://b/}
snapshotsConfig: {location: gs://b/}
sandboxConfig: {sandboxClass: SANDBOX_CLASS_GVISOR, configName: gvisor-default}
`;
    const p = problems(old);
    const doc = 'document 1 (ActorTemplate "a/t")';
    expect(p).toContain(`${doc}: snapshotConfig.onPause: unknown field (removed in Substrate v0.4.0; pause snapshots are node-local and need no setting)`);
    expect(p.some((x) => x.startsWith(`${doc}: snapshotConfig.onResume: unknown field`))).toBe(true);
    expect(p.some((x) => x.startsWith(`${doc}: containers[0].readyz: unknown field (renamed wakeupProbe`))).toBe(true);
    expect(p.some((x) => x.startsWith(`${doc}: snapshotsConfig: unknown field (renamed snapshotConfig`))).toBe(true);
    expect(p).toHaveLength(4);
  });

  it('rejects unknown fields anywhere, wrong types, unknown enum names and numbers, duplicates', () => {
    const p = problems(`
metadata: {atespace: a, name: t, namespace: x}
containers:
- name: c
  image: i${PIN}
  imagePullPolicy: Always
  env: [{name: K, value: 5}]
  wakeupProbe: {httpGet: {port: "eighty"}, timeoutSeconds: 1.5}
  volumeMounts: {name: v}
resources: {limits: [{name: cpu, quantity: 1}]}
sandboxConfig: {sandboxClass: SANDBOX_CLASS_KATA, configName: x}
snapshotConfig: {onCommit: 9, storageLocation: gs://b/, storage_location: gs://c/}
workerSelector: {matchLabels: {pool: 1}}
volumes: [null]
`);
    const at = (s: string) => `document 1 (ActorTemplate "a/t"): ${s}`;
    expect(p).toEqual(
      expect.arrayContaining([
        at('metadata.namespace: unknown field'),
        at('containers[0].imagePullPolicy: unknown field'),
        at('containers[0].env[0].value: must be a string, not a number (quote it)'),
        at('containers[0].wakeupProbe.httpGet.port: must be an integer, not a string'),
        at('containers[0].wakeupProbe.timeoutSeconds: must be an integer'),
        at('containers[0].volumeMounts: must be a list, not a mapping'),
        at('resources.limits[0].quantity: must be a string, not a number (quote it)'),
        expect.stringMatching(/^document 1 \(ActorTemplate "a\/t"\): sandboxConfig\.sandboxClass: invalid value for enum SandboxClass: "SANDBOX_CLASS_KATA"/),
        at('snapshotConfig.onCommit: invalid value for enum SnapshotContentScope: 9 is not one of its numbers'),
        at('snapshotConfig.storage_location: duplicate field (also given as storageLocation)'),
        at('workerSelector.matchLabels["pool"]: must be a string, not a number (quote it)'),
        at('volumes[0]: null is not allowed in a list'),
      ]),
    );
    expect(p).toHaveLength(12);
  });

  it('never echoes a value from the manifest in an error (env values are secrets)', () => {
    const secret = 'sk-live-DO-NOT-PRINT-1234';
    const p = problems(`
metadata: {atespace: a, name: t}
containers:
- name: c
  image: i${PIN}
  env: [{name: TOKEN, value: ${secret}, valueFrom: {secretKeyRef: {name: s, key: ${secret}}}}, {name: N, value: [${secret}]}]
bogus: ${secret}
`);
    expect(p.length).toBeGreaterThanOrEqual(3);
    expect(p.join('\n')).not.toContain(secret);
    expect(p.join('\n')).toMatch(/env\[0\]\.valueFrom: unknown field \(v0\.4 env values are literal/);
  });

  it('requires metadata.atespace and metadata.name (the template\'s identity)', () => {
    expect(problems('containers: [{name: c, image: i}]\n')).toEqual(['document 1 (ActorTemplate): metadata.atespace: required', 'document 1 (ActorTemplate): metadata.name: required']);
    expect(problems('metadata: {atespace: Bad_Space, name: t}\n')[0]).toMatch(/metadata\.atespace: "Bad_Space" is not a valid name/);
  });

  it('"manifest is empty" for an empty file and a null document', () => {
    expect(problems('')).toEqual(['manifest is empty']);
    expect(problems('# nothing\n---\n')).toEqual(['manifest is empty']);
    expect(problems('null\n')).toEqual(['manifest is empty']);
  });

  it('accepts the same body under spec of kind ActorTemplate (apiVersion ate.dev/v1alpha1)', () => {
    const bare = parseYaml(COUNTER) as Record<string, unknown>;
    const { metadata, ...body } = bare;
    const wrapped = stringify({ apiVersion: 'ate.dev/v1alpha1', kind: 'ActorTemplate', metadata, spec: body });
    const a = parseManifests(COUNTER).docs[0]!;
    const b = parseManifests(wrapped).docs[0]!;
    expect(b.kind).toBe('ActorTemplate');
    expect(b.kind === 'ActorTemplate' && b.template.containers).toEqual(a.kind === 'ActorTemplate' && a.template.containers);
    expect(b.label).toBe(a.label);
    // Strict too: paths name spec, and a Kubernetes-era metadata.namespace is explained.
    const bad = stringify({ apiVersion: 'ate.dev/v1alpha1', kind: 'ActorTemplate', metadata: { namespace: 'smoke', name: 'x' }, spec: { ...body, pauseImage: `p${PIN}` } });
    const p = problems(bad);
    expect(p.some((x) => x.includes('metadata.namespace: unknown field (ActorTemplates live in an atespace: use metadata.atespace'))).toBe(true);
    expect(p.some((x) => x.includes('spec.pauseImage: unknown field (the pause image belongs to the SandboxConfig'))).toBe(true);
    expect(problems(stringify({ apiVersion: 'v1', kind: 'ActorTemplate', metadata, spec: body }))[0]).toBe('document 1 (ActorTemplate): apiVersion: must be "ate.dev/v1alpha1"');
  });

  it('points an EgressPolicy-shaped document at egress-policy create', () => {
    expect(problems('rules: [{http: {hostnames: [example.com]}}]\n')[0]).toMatch(/looks like an EgressPolicy.*egress-policy create/);
  });
});

describe('WorkerPool, SandboxConfig, Atespace', () => {
  it('maps a WorkerPool onto WorkerPoolSpec; template.labels are what workers carry; legacy ateomImage warns', () => {
    const { docs, warnings } = parseManifests(`
apiVersion: ate.dev/v1alpha1
kind: WorkerPool
metadata: {name: pool-a, namespace: helpdesk, labels: {tier: a}}
spec:
  replicas: 3
  ateomImage: ateom${PIN}
  sandboxClass: gvisor
  template:
    labels: {pool: a}
    nodeSelector: {ate.dev/substrate-version: v0.4.0}
    resources: {limits: {cpu: "4"}}
status: {replicas: 3}
---
apiVersion: ate.dev/v1alpha1
kind: WorkerPool
metadata: {name: pool-b}
spec: {replicas: 0}
`);
    expect(docs.map((d) => d.kind === 'WorkerPool' && d.pool)).toEqual([
      { namespace: 'helpdesk', name: 'pool-a', labels: { tier: 'a', pool: 'a' }, replicas: 3, sandboxClass: 'gvisor', workerImage: `ateom${PIN}` },
      { namespace: 'default', name: 'pool-b', labels: {}, replicas: 0, sandboxClass: 'gvisor', workerImage: '' },
    ]);
    expect(warnings).toEqual([
      'document 1 (WorkerPool "pool-a"): spec.ateomImage is the pre-v0.4 name of spec.workerImage; read as workerImage',
      'document 1 (WorkerPool "pool-a"): spec.template.nodeSelector, spec.template.resources ignored: worker pods are Kubernetes scheduling, local workers are this machine\'s slots',
    ]);
  });

  it('rejects WorkerPool mistakes with their paths', () => {
    const p = problems(`
apiVersion: ate.dev/v1alpha1
kind: WorkerPool
metadata: {name: Pool_A, labels: {ok: "yes no"}}
spec:
  replicas: -1
  workerImage: w${PIN}
  ateomImage: other${PIN}
  sandboxClass: kata
  template: {labels: {ate.dev/pool: a}, hostNetwork: true}
  minReplicas: 1
`);
    const w = 'document 1 (WorkerPool "Pool_A")';
    expect(p).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^document 1 \(WorkerPool "Pool_A"\): metadata\.name: "Pool_A" is not a valid name/),
        expect.stringMatching(/metadata\.labels\["ok"\]: invalid label value/),
        `${w}: spec.minReplicas: unknown field`,
        `${w}: spec.replicas: must be an integer of at least 0`,
        `${w}: spec.ateomImage: conflicts with spec.workerImage (ateomImage is its pre-v0.4 name; keep only workerImage)`,
        `${w}: spec.sandboxClass: must be gvisor or microvm`,
        `${w}: spec.template.hostNetwork: unknown field`,
        `${w}: spec.template.labels["ate.dev/pool"]: ate.dev and its subdomains are reserved`,
      ]),
    );
    expect(problems('apiVersion: ate.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: p}\nspec: {}\n')).toEqual(['document 1 (WorkerPool "p"): spec.replicas: required']);
  });

  it('maps SandboxConfigs with the CRD rules (pauseImage iff gvisor, digests, per-class assets)', () => {
    const { docs, warnings } = parseManifests(`
apiVersion: ate.dev/v1alpha1
kind: SandboxConfig
metadata: {name: gvisor-local, namespace: ignored}
spec:
  sandboxClass: gvisor
  pauseImage: "registry.k8s.io/pause:3.10.2${PIN}"
  assets:
    amd64: {gvisor: {url: "gs://gvisor/x86_64/gvisor.tar.zstd", sha256: "${SHA}"}}
    arm64: {runsc: {url: "https://example/runsc", sha256: "${SHA}"}}
---
apiVersion: ate.dev/v1alpha1
kind: SandboxConfig
metadata: {name: microvm}
spec:
  sandboxClass: microvm
  default: true
`);
    expect(docs.map((d) => d.kind === 'SandboxConfig' && d.config)).toEqual([
      {
        name: 'gvisor-local',
        sandboxClass: 'gvisor',
        pauseImage: `registry.k8s.io/pause:3.10.2${PIN}`,
        assets: { amd64: { gvisor: { url: 'gs://gvisor/x86_64/gvisor.tar.zstd', sha256: SHA } }, arm64: { runsc: { url: 'https://example/runsc', sha256: SHA } } },
      },
      { name: 'microvm', sandboxClass: 'microvm' },
    ]);
    expect(warnings).toEqual([
      'document 1 (SandboxConfig "gvisor-local"): SandboxConfig is cluster-scoped; metadata.namespace ignored',
      'document 2 (SandboxConfig "microvm"): spec.default is not part of the v0.4.0 SandboxConfig schema; ignored',
    ]);
    const p = problems(`
apiVersion: ate.dev/v1alpha1
kind: SandboxConfig
metadata: {name: a}
spec: {sandboxClass: gvisor, assets: {amd64: {kata-kernel: {url: "", sha256: ABC}}}}
---
apiVersion: ate.dev/v1alpha1
kind: SandboxConfig
metadata: {name: b}
spec: {sandboxClass: microvm, pauseImage: "pause:latest", assets: {amd64: {cloud-hypervisor: {url: u, sha256: "${SHA}"}}}}
`);
    expect(p).toEqual([
      'document 1 (SandboxConfig "a"): spec: pauseImage is required for gvisor and not allowed for other sandbox classes',
      'document 1 (SandboxConfig "a"): spec.assets.amd64.kata-kernel.url: required (a non-empty string)',
      'document 1 (SandboxConfig "a"): spec.assets.amd64.kata-kernel.sha256: must be 64 lower-case hex digits',
      "document 1 (SandboxConfig \"a\"): spec.assets.amd64: a gvisor SandboxConfig must define a 'gvisor' (release tarball) or legacy 'runsc' asset for every architecture under spec.assets",
      'document 2 (SandboxConfig "b"): spec.pauseImage: All images must include a digest',
      'document 2 (SandboxConfig "b"): spec: pauseImage is required for gvisor and not allowed for other sandbox classes',
      'document 2 (SandboxConfig "b"): spec.assets.amd64: a microvm SandboxConfig must define cloud-hypervisor, virtiofsd, kata-kernel, and kata-image assets for every architecture under spec.assets',
    ]);
  });

  it('Atespace documents; Namespace and Secret are rejected with what to use instead; unknown kinds listed', () => {
    const { docs } = parseManifests('kind: Atespace\nmetadata: {name: team-a}\n---\napiVersion: ate.dev/v1alpha1\nkind: Atespace\nmetadata: {name: team-b}\n');
    expect(docs.map((d) => d.kind === 'Atespace' && d.name)).toEqual(['team-a', 'team-b']);
    const p = problems(
      'apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\n- a list\n',
    );
    expect(p[0]).toMatch(/^document 1 \(Namespace\): Namespaces are Kubernetes objects; .*kind: Atespace .*atespaces create NAME/);
    expect(p[1]).toMatch(/^document 2 \(Secret\): .*egress credential injection/);
    expect(p[2]).toMatch(/^document 3: unsupported kind "Deployment"; accepted: an ActorTemplate .*WorkerPool, SandboxConfig or Atespace/);
    expect(p[3]).toMatch(/^document 4: expected a mapping .*got a list/);
  });
});

describe('multi-document files', () => {
  const POOL = `apiVersion: ate.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: p}\nspec: {replicas: 1}\n`;
  const CFG = `apiVersion: ate.dev/v1alpha1\nkind: SandboxConfig\nmetadata: {name: c}\nspec: {sandboxClass: gvisor, pauseImage: "p${PIN}"}\n`;

  it('keeps file order, counts empty documents, and applies SandboxConfigs → WorkerPools → Atespaces → templates', () => {
    const text = [COUNTER, '', POOL, 'kind: Atespace\nmetadata: {name: smoke}\n', CFG].join('\n---\n');
    const { docs } = parseManifests(text);
    expect(docs.map((d) => `${d.index}:${d.kind}`)).toEqual(['1:ActorTemplate', '3:WorkerPool', '4:Atespace', '5:SandboxConfig']);
    expect(applyOrder(docs).map((d) => d.label)).toEqual(['sandboxconfig.ate.dev c', 'workerpool.ate.dev default/p', 'atespace smoke', 'actortemplate smoke/counter']);
  });

  it('returns nothing when any document fails: every problem of every document is reported at once', () => {
    const text = [COUNTER, POOL.replace('replicas: 1', 'replicas: "1"'), 'kind: Atespace\nmetadata: {name: ok}\n', 'a: [unclosed\n', COUNTER].join('---\n');
    const p = problems(text);
    expect(p).toEqual([
      'document 2 (WorkerPool "p"): spec.replicas: must be an integer of at least 0',
      expect.stringMatching(/^document 4: YAML syntax error: .*at line \d+, column \d+$/),
      'document 5: actortemplate smoke/counter is also defined by document 1',
    ]);
  });

  it('restricts kinds when asked (templates create takes ActorTemplates only)', () => {
    expect(() => parseManifests(POOL, { only: ['ActorTemplate'] })).toThrow(/document 1 \(WorkerPool\): not accepted here \(only ActorTemplate\)/);
    expect(parseManifests(COUNTER, { only: ['ActorTemplate'] }).docs).toHaveLength(1);
  });

  it('refuses oversized input', () => {
    expect(() => parseManifests('#'.repeat(3 * 1024 * 1024 + 1))).toThrow(/at most 3 MiB/);
  });
});

describe('EgressPolicy (egress-policy create|update -f)', () => {
  const RULES = `
rules:
- https:
    hostnames: ["api.example.com", "*.googleapis.com"]
    ports: {numbers: [443]}
    effects:
      replaceHeaders:
      - {header: Authorization, prefix: "Bearer ", credentialUri: "ate-secret://k8s.io/default/ns/s/key"}
- http: {hostnames: [example.com]}
- tlsPassthrough: {hostnames: [git.example.com], ports: {all: {}}}
- https: {hostnames: [idp.example.com], effects: {replace_headers: [{header: X-Id, actor_jwt: {audiences: [x], expiration_seconds: "600"}}]}}
`;

  it('create: metadata may be omitted (atespace from -a, name "default")', () => {
    const p = parseEgressPolicyManifest(RULES, { atespace: 'smoke', actor: 'a1' });
    expect(p.metadata).toMatchObject({ atespace: 'smoke', name: 'default' });
    expect(p.rules).toHaveLength(4);
    expect(p.rules[0]!.https?.effects?.replaceHeaders[0]).toEqual({ header: 'Authorization', prefix: 'Bearer ', credentialUri: 'ate-secret://k8s.io/default/ns/s/key', actorJwt: undefined });
    expect(p.rules[2]!.tlsPassthrough?.ports).toEqual({ all: {}, numbers: [] });
    expect(p.rules[3]!.https?.effects?.replaceHeaders[0]!.actorJwt).toEqual({ audiences: ['x'], expirationSeconds: 600 });
  });

  it('the name must be "default", the atespace that of -a; update needs uid and version', () => {
    const named = (name: string) => `metadata: {name: ${name}}\n${RULES}`;
    expect(() => parseEgressPolicyManifest(named('strict'), { atespace: 's', actor: 'a' })).toThrow('manifest metadata.name "strict" must be "default"');
    expect(() => parseEgressPolicyManifest(`metadata: {atespace: other}\n${RULES}`, { atespace: 's', actor: 'a' })).toThrow(
      'manifest metadata.atespace "other" does not match --atespace "s"',
    );
    expect(() => parseEgressPolicyManifest(RULES, { atespace: 's', actor: 'a', update: true })).toThrow(/lacks the metadata\.uid and metadata\.version preconditions/);
    const p = parseEgressPolicyManifest(`metadata: {atespace: s, name: default, uid: u-1, version: 3}\n${RULES}`, { atespace: 's', actor: 'a', update: true });
    expect(p.metadata).toMatchObject({ uid: 'u-1', version: 3 });
  });

  it('strict, and exactly one document', () => {
    expect(() => parseEgressPolicyManifest('rules: [{http: {hostnames: [a.com], cidrs: [10.0.0.0/8]}}]\n', { atespace: 's', actor: 'a' })).toThrow(
      'EgressPolicy: rules[0].http.cidrs: unknown field',
    );
    expect(() => parseEgressPolicyManifest('', { atespace: 's', actor: 'a' })).toThrow('manifest is empty');
    expect(() => parseEgressPolicyManifest('null\n', { atespace: 's', actor: 'a' })).toThrow('manifest is empty');
    expect(() => parseEgressPolicyManifest(`${RULES}---\n${RULES}`, { atespace: 's', actor: 'a' })).toThrow('manifest holds more than one document, expected one');
  });
});

describe('the schema is the generated descriptor of proto/ateapi.proto', () => {
  it('has every field the .proto declares for the manifest messages, with JSON and proto names', () => {
    const proto = readFileSync(join(import.meta.dirname, '../../proto/ateapi.proto'), 'utf8');
    const { messages } = ateapiSchema();
    for (const name of ['ActorTemplate', 'Container', 'SnapshotConfig', 'Volume', 'EgressRule', 'CredentialHeader', 'TrustBundleDataSource']) {
      const block = new RegExp(`\\nmessage ${name} \\{([\\s\\S]*?)\\n\\}`).exec(proto)![1]!;
      const declared = [...block.matchAll(/^\s+(?:repeated\s+)?[\w.<>, ]+?\s+(\w+)\s*=\s*\d+/gm)].map((m) => m[1]);
      expect(messages.get(`ateapi.${name}`)!.map((f) => f.proto).sort()).toEqual(declared.sort());
    }
    expect(messages.get('ateapi.SnapshotConfig')!.map((f) => f.json)).toEqual(['onCommit', 'storageLocation']);
  });

  it('decodeMessage reports into a context without throwing', () => {
    const ctx = { problems: [] as string[], where: 'x' };
    expect(decodeMessage('ObjectRef', { atespace: 'a', name: 'b' }, '', ctx)).toEqual({ atespace: 'a', name: 'b' });
    decodeMessage('ObjectRef', [], 'ref', ctx);
    expect(ctx.problems).toEqual(['x: ref: must be a mapping (message ObjectRef), not a list']);
  });
});

describe('templateDifferences (ALREADY_EXISTS: unchanged or immutable)', () => {
  const t = () => {
    const d = parseManifests(COUNTER).docs[0]!;
    if (d.kind !== 'ActorTemplate') throw new Error('kind');
    return d.template;
  };

  it('ignores server-owned metadata, status and defaults the server fills in', () => {
    const stored = t();
    stored.metadata = { atespace: 'smoke', name: 'counter', uid: 'u', version: 4, createTime: new Date() };
    stored.status = { goldenSnapshotStatus: { goldenTag: { atespace: 'ate-golden', name: 'g' }, errorMessage: '' } };
    stored.containers[0]!.wakeupProbe!.timeoutSeconds = 30;
    const wanted = t();
    wanted.snapshotConfig!.onCommit = SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_UNSPECIFIED;
    expect(templateDifferences(stored, wanted)).toEqual([]);
  });

  it('names the differing paths, never the values', () => {
    const stored = t();
    const wanted = t();
    wanted.containers[0]!.env[0]!.value = 'sk-secret-value';
    wanted.containers[0]!.image = `other${PIN}`;
    const diffs = templateDifferences(stored, wanted);
    expect(diffs).toEqual(['containers[0].image', 'containers[0].env[0].value']);
  });
});
