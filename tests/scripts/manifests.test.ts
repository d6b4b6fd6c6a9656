// deploy/: the Kubernetes manifests running the driver as the gateway's sidecar, and the Dockerfile. Every YAML
// file is parsed; the checks are the contract a cluster relies on (shared socket volume and path, uid 1000 on
// both sides, RBAC for the driver's record secrets only, the projected token's audience, the API CA, both TOML files).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../../src/common/config.js';
import { REPO_ROOT } from '../../scripts/lib/cli.mjs';

const K8S = path.join(REPO_ROOT, 'deploy', 'k8s');
const SOCKET_DIR = '/var/run/openshell-compute';
const SOCKET = '/var/run/openshell-compute/driver/driver.sock';
const API_AUDIENCE = 'api.ate-system.svc';
const VERBS = ['get', 'list', 'watch', 'create', 'patch', 'update', 'delete'];

type Obj = Record<string, any>;

function yamlFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(e.name) ? [p] : [];
  });
}

function load(): Map<string, Obj[]> {
  const out = new Map<string, Obj[]>();
  for (const file of yamlFiles(K8S)) {
    // YAML 1.1, as Kubernetes' own parsers read manifests (so `defaultMode: 0400` is octal 0400).
    const docs = parseAllDocuments(fs.readFileSync(file, 'utf8'), { version: '1.1' });
    for (const d of docs) {
      if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    }
    out.set(path.relative(K8S, file), docs.map((d) => d.toJS() as Obj).filter((o) => o !== null));
  }
  return out;
}

const files = load();
const all = [...files.values()].flat();
const byKind = (kind: string) => all.filter((o) => o.kind === kind);
const one = (kind: string, name: string): Obj => {
  const found = all.filter((o) => o.kind === kind && o.metadata?.name === name);
  expect(found, `${kind}/${name}`).toHaveLength(1);
  return found[0]!;
};

/** The pod's containers, sidecars (init containers with restartPolicy Always) included. */
function podContainers(podSpec: Obj): Obj[] {
  return [...(podSpec.initContainers ?? []), ...(podSpec.containers ?? [])];
}
function container(podSpec: Obj, name: string): Obj {
  const c = podContainers(podSpec).find((x) => x.name === name);
  expect(c, `container ${name}`).toBeDefined();
  return c!;
}
function mountOf(c: Obj, volume: string): Obj | undefined {
  return (c.volumeMounts ?? []).find((m: Obj) => m.name === volume);
}
function volumeNamed(podSpec: Obj, name: string): Obj {
  const v = (podSpec.volumes ?? []).find((x: Obj) => x.name === name);
  expect(v, `volume ${name}`).toBeDefined();
  return v!;
}

const driverToml = () => parseToml(one('ConfigMap', 'openshell-substrate-driver').data['driver.toml']) as Obj;
const gatewayToml = () => parseToml(one('ConfigMap', 'openshell-gateway-config').data['gateway.toml']) as Obj;

/** The checks shared by the Deployment and the sidecar patch. */
function checkSidecarPod(podSpec: Obj) {
  const driver = container(podSpec, 'substrate-driver');
  const gateway = container(podSpec, 'openshell-gateway');

  // One emptyDir, mounted at the same path in both containers; the socket lives under it.
  expect(volumeNamed(podSpec, 'compute-driver-socket').emptyDir).toEqual({});
  expect(mountOf(driver, 'compute-driver-socket')?.mountPath).toBe(SOCKET_DIR);
  expect(mountOf(gateway, 'compute-driver-socket')?.mountPath).toBe(SOCKET_DIR);
  expect(mountOf(driver, 'compute-driver-socket')?.readOnly).not.toBe(true); // the driver creates the socket
  expect(SOCKET.startsWith(`${SOCKET_DIR}/`)).toBe(true);

  // Both run as uid 1000, the only uid the 0600 socket admits.
  expect(driver.securityContext?.runAsUser).toBe(1000);
  expect(gateway.securityContext?.runAsUser).toBe(1000);
  expect(driver.securityContext?.runAsNonRoot).toBe(true);
  expect(driver.securityContext?.allowPrivilegeEscalation).toBe(false);

  // A sidecar in initContainers must be a native sidecar (restartPolicy Always), or it would block the pod.
  if ((podSpec.initContainers ?? []).includes(driver)) {
    expect(driver.restartPolicy).toBe('Always');
    expect(driver.startupProbe?.exec?.command).toEqual(['test', '-S', SOCKET]);
  }

  // The projected service-account token for the Substrate API, where driver.toml reads it.
  const tokenPath = driverToml().openshell.drivers.substrate.api_bearer_token_path as string;
  const tokenVol = volumeNamed(podSpec, 'ate-api-token');
  const sat = tokenVol.projected.sources.map((s: Obj) => s.serviceAccountToken).filter(Boolean);
  expect(sat).toEqual([{ audience: API_AUDIENCE, expirationSeconds: 3600, path: path.basename(tokenPath) }]);
  expect(mountOf(driver, 'ate-api-token')?.mountPath).toBe(path.dirname(tokenPath));
  expect(mountOf(gateway, 'ate-api-token')).toBeUndefined(); // only the driver gets the Substrate token

  // The API CA from the ConfigMap, where driver.toml reads it.
  const caPath = driverToml().openshell.drivers.substrate.api_tls_ca_path as string;
  const caVol = volumeNamed(podSpec, 'ate-api-ca');
  expect(caVol.configMap.name).toBe('ate-api-ca');
  expect(caVol.configMap.items).toEqual([{ key: 'ca.crt', path: path.basename(caPath) }]);
  expect(mountOf(driver, 'ate-api-ca')?.mountPath).toBe(path.dirname(caPath));

  // The driver config where the image's entrypoint looks for it.
  expect(volumeNamed(podSpec, 'driver-config').configMap.name).toBe('openshell-substrate-driver');
  expect(mountOf(driver, 'driver-config')?.mountPath).toBe('/etc/openshell-substrate');
  return { driver, gateway };
}

describe('deploy/k8s', () => {
  it('every YAML file parses, and every object has apiVersion, kind and a name', () => {
    expect(files.size).toBeGreaterThanOrEqual(9);
    for (const [file, docs] of files) {
      expect(docs.length, file).toBeGreaterThan(0);
      for (const o of docs) {
        expect(typeof o.apiVersion, file).toBe('string');
        expect(typeof o.kind, file).toBe('string');
        if (o.kind !== 'Kustomization') expect(typeof o.metadata?.name, file).toBe('string');
      }
    }
  });

  it('kustomization.yaml lists every manifest (except the patch for existing gateways) and only existing files', () => {
    const k = files.get('kustomization.yaml')![0]!;
    const listed = [...(k.resources as string[])].sort();
    for (const r of listed) expect(fs.existsSync(path.join(K8S, r)), r).toBe(true);
    const expected = [...files.keys()].filter((f) => f !== 'kustomization.yaml' && f !== 'sidecar-patch.yaml').sort();
    expect(listed).toEqual(expected);
    expect(k.images).toContainEqual(expect.objectContaining({ name: 'openshell-driver-substrate' }));
  });

  it('the Deployment runs the driver as the gateway\'s sidecar on a shared socket volume, both as uid 1000', () => {
    const dep = one('Deployment', 'openshell-gateway');
    const pod = dep.spec.template.spec;
    const { gateway } = checkSidecarPod(pod);
    expect(pod.securityContext).toMatchObject({ runAsUser: 1000, runAsNonRoot: true, fsGroup: 1000 });
    expect(dep.spec.template.metadata.labels).toMatchObject(dep.spec.selector.matchLabels);
    expect(dep.spec.template.metadata.labels).toMatchObject(one('Service', 'openshell-gateway').spec.selector);
    // The gateway reads gateway.toml from the ConfigMap (subPath: the gateway rejects a symlinked config).
    expect(gateway.args.slice(0, 2)).toEqual(['--config', '/etc/openshell/gateway.toml']);
    expect(mountOf(gateway, 'gateway-config')).toMatchObject({ mountPath: '/etc/openshell/gateway.toml', subPath: 'gateway.toml' });
    expect(volumeNamed(pod, 'gateway-config').configMap.name).toBe('openshell-gateway-config');
    // The gateway's JWT material from the Secret scripts/jwt.mjs renders (default name), read-only, 0400.
    const jwtVol = volumeNamed(pod, 'gateway-jwt');
    expect(jwtVol.secret).toMatchObject({ secretName: 'openshell-gateway-jwt', defaultMode: 0o400 });
    const jwtMount = mountOf(gateway, 'gateway-jwt')!;
    expect(jwtMount.readOnly).toBe(true);
    const gj = gatewayToml().openshell.gateway.gateway_jwt;
    expect(gj).toEqual({
      signing_key_path: `${jwtMount.mountPath}/signing.pem`,
      public_key_path: `${jwtMount.mountPath}/public.pem`,
      kid_path: `${jwtMount.mountPath}/kid`,
      gateway_id: 'openshell',
    });
    // The ServiceAccount the RBAC binds.
    expect(pod.serviceAccountName).toBe('openshell-gateway');
    expect(one('ServiceAccount', 'openshell-gateway').metadata.namespace).toBe(dep.metadata.namespace);
  });

  it('the sidecar patch for an existing gateway holds the same contract', () => {
    const patch = files.get('sidecar-patch.yaml')![0]!;
    checkSidecarPod(patch.spec.template.spec);
  });

  it('the gateway config (OpenShell v0.1 schema 2) selects the substrate driver on the shared socket, with the admission table', () => {
    const doc = gatewayToml();
    expect(doc.openshell.version).toBe(2);
    expect(doc.openshell.gateway.compute_driver).toBe('substrate');
    expect(doc.openshell.gateway.compute_drivers).toBeUndefined();
    expect(doc.openshell.drivers.substrate).toEqual({
      socket_path: SOCKET,
      allow_driver_config: false,
      resource_admission: {
        enabled: true,
        required_labels: { 'openshell.ai/sandbox-attachable': 'true', 'openshell.ai/sandbox-attachable-workspace': '${workspace}' },
      },
    });
  });

  it("the driver reads its admission keys from the gateway's config it mounts, and acknowledges exactly them", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'manifests-test-'));
    try {
      const gw = path.join(dir, 'gateway.toml');
      fs.writeFileSync(gw, one('ConfigMap', 'openshell-gateway-config').data['gateway.toml']);
      const drv = path.join(dir, 'driver.toml');
      const driverText = one('ConfigMap', 'openshell-substrate-driver').data['driver.toml'] as string;
      const mounted = (parseToml(driverText) as Obj).openshell.drivers.substrate.gateway_config as string;
      const pod = one('Deployment', 'openshell-gateway').spec.template.spec;
      const driver = pod.initContainers.find((c: { name: string }) => c.name === 'substrate-driver');
      expect(mountOf(driver, 'gateway-config')).toMatchObject({ mountPath: mounted, subPath: 'gateway.toml', readOnly: true });
      fs.writeFileSync(drv, driverText.replace(mounted, gw));
      const cfg = loadConfig({ flags: { config: drv }, env: {} });
      expect(cfg.admissionAck).toBe(
        'v1:{"allow_driver_config":false,"resource_admission":{"enabled":true,"required_labels":{"openshell.ai/sandbox-attachable":"true","openshell.ai/sandbox-attachable-workspace":"${workspace}"}}}',
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the driver config is accepted by the driver\'s own loader and points at the API over TLS', () => {
    const tmpFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'manifests-test-')), 'driver.toml');
    try {
      fs.writeFileSync(tmpFile, one('ConfigMap', 'openshell-substrate-driver').data['driver.toml']);
      // gateway_config names the gateway's file, mounted in the pod only (checked in the next test).
      const cfg = loadConfig({ flags: { config: tmpFile, gateway_config: '' }, env: {} });
      expect(cfg).toMatchObject({
        apiEndpoint: 'api.ate-system.svc:443',
        apiTlsServerName: API_AUDIENCE,
        apiTlsCaPath: '/etc/ate-api-ca/ca.crt',
        apiBearerTokenPath: '/var/run/secrets/ate-api/token',
        apiPlaintext: false,
        defaultNamespace: 'openshell-sandboxes',
        local: false,
      });
    } finally {
      fs.rmSync(path.dirname(tmpFile), { recursive: true, force: true });
    }
  });

  it('RBAC: secrets in the driver\'s namespace only (no ate.dev objects on v0.4), bound to the pod\'s ServiceAccount', () => {
    const ns = driverToml().openshell.drivers.substrate.default_namespace;
    const role = one('Role', 'openshell-substrate-driver');
    expect(role.metadata.namespace).toBe(ns);
    const rule = (group: string, resource: string) =>
      (role.rules as Obj[]).filter((r) => r.apiGroups.includes(group) && r.resources.includes(resource)).flatMap((r) => r.verbs);
    // Substrate v0.4: ActorTemplates are ateapi resources, reached with the API token, not Kubernetes objects.
    expect((role.rules as Obj[]).some((r) => r.apiGroups.includes('ate.dev'))).toBe(false);
    expect(rule('', 'secrets')).toEqual(expect.arrayContaining(VERBS));

    const binding = one('RoleBinding', 'openshell-substrate-driver');
    expect(binding.metadata.namespace).toBe(ns);
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'openshell-substrate-driver' });
    const dep = one('Deployment', 'openshell-gateway');
    expect(binding.subjects).toEqual([
      { kind: 'ServiceAccount', name: dep.spec.template.spec.serviceAccountName, namespace: dep.metadata.namespace },
    ]);
    // The driver's secrets permission never covers the gateway's namespace (where its signing key lives).
    expect(ns).not.toBe(dep.metadata.namespace);
    for (const r of [...byKind('Role'), ...byKind('ClusterRole')]) {
      if (r.kind === 'ClusterRole' || r.metadata.namespace === dep.metadata.namespace) {
        expect((r.rules as Obj[]).some((x) => x.resources.includes('secrets'))).toBe(false);
      }
    }
    expect(byKind('Namespace').map((n) => n.metadata.name).sort()).toEqual([dep.metadata.namespace, ns].sort());
  });
});

describe('deploy/Dockerfile', () => {
  const text = fs.readFileSync(path.join(REPO_ROOT, 'deploy', 'Dockerfile'), 'utf8');

  it('runs the driver as uid 1000 on the shared socket with the mounted config', () => {
    const froms = [...text.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
    expect(froms.every((f) => f === 'node:20-bookworm-slim')).toBe(true);
    expect(text).toMatch(/^USER 1000:1000$/m);
    const entry = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(text)![1]!);
    expect(entry).toEqual(['node', 'bin/substrate-driver.js', 'serve', '--socket', SOCKET, '--config', '/etc/openshell-substrate/driver.toml']);
    for (const dir of ['bin/', 'src/', 'proto/']) expect(text).toContain(`COPY ${dir} ./${dir}`);
    expect(text).toMatch(/COPY package\.json package-lock\.json/);
    expect(text).toMatch(/RUN npm ci/);
    // The build context filter keeps local state (tokens, keys) out of the image.
    const ignore = fs.readFileSync(path.join(REPO_ROOT, 'deploy', 'Dockerfile.dockerignore'), 'utf8');
    expect(ignore.split('\n')[ignore.split('\n').findIndex((l) => !l.startsWith('#') && l.trim() !== '')]).toBe('**');
  });
});
