// The one config loader: flag > env (OPENSHELL_SUBSTRATE_*) > TOML [openshell.drivers.substrate] > default,
// and every error naming the key and where the bad value came from. The CLI exits 2 on any of them.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CONFIG_KEY_NAMES, ConfigError, envVarFor, loadConfig } from '../../src/common/config.js';
import { main as serveMain } from '../../src/cli/serve.js';
import { main as actorsMain } from '../../src/cli/actors.js';
import { main as sandboxesMain } from '../../src/cli/sandboxes.js';
import { admissionAcknowledgement } from '../../src/driver/admission-policy.js';

/** upstream's acknowledgement of its default DriverAdmissionConfig (OpenShell naming). */
const DEFAULT_ACK =
  'v1:{"allow_driver_config":false,"resource_admission":{"enabled":true,"required_labels":{"openshell.ai/sandbox-attachable":"true","openshell.ai/sandbox-attachable-workspace":"${workspace}"}}}';

const dir = mkdtempSync(join(tmpdir(), 'cfg-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function toml(body: string): string {
  const p = join(dir, `c${n++}.toml`);
  writeFileSync(p, body);
  return p;
}
const ENV0 = { HOME: '/home/u' } as NodeJS.ProcessEnv;

function err(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('defaults', () => {
  it('are usable without any file, env or flag', () => {
    const c = loadConfig({ env: ENV0 });
    expect(c.stateDir).toBe('/home/u/.local/state/openshell-driver-substrate');
    expect(c.socketPath).toBe('/home/u/.local/state/openshell-driver-substrate/run/driver.sock');
    expect(c.defaultNamespace).toBe('default');
    expect(c.stopMode).toBe('suspend');
    expect(c.sandboxClass).toBe('gvisor');
    expect(c.templateReadyTimeoutSecs).toBe(300);
    expect(c.pollIntervalMs).toBe(500);
    expect(c.local).toBe(false);
    expect(c.apiPlaintext).toBe(false);
    expect(c.workerSelector).toEqual({});
    expect(c.admission.allowDriverConfig).toBe(false);
    expect(c.admission.resourceAdmission.enabled).toBe(true);
    expect(c.admission.resourceAdmission.requiredLabels).toEqual({
      'openshell.ai/sandbox-attachable': 'true',
      'openshell.ai/sandbox-attachable-workspace': '${workspace}',
    });
    expect(c.admissionAck).toBe(DEFAULT_ACK);
    expect(c.templateLabels).toEqual({});
    for (const k of CONFIG_KEY_NAMES) expect(c.sources[k]).toBe('default');
  });

  it('follow XDG_STATE_HOME', () => {
    expect(loadConfig({ env: { ...ENV0, XDG_STATE_HOME: '/xdg' } }).stateDir).toBe('/xdg/openshell-driver-substrate');
  });
});

describe('precedence flag > env > file > default', () => {
  const file = toml(`
[openshell.gateway]
compute_drivers = ["substrate"]
[openshell.drivers.substrate]
socket_path = "/run/f.sock"
default_namespace = "from-file"
stop_mode = "pause"
template_ready_timeout_secs = 120
worker_selector = { pool = "gpu", zone = "a" }
api_plaintext = true
api_endpoint = "10.0.0.1:443"
`);

  it('takes the file over defaults', () => {
    const c = loadConfig({ env: ENV0, flags: { config: file } });
    expect(c.socketPath).toBe('/run/f.sock');
    expect(c.defaultNamespace).toBe('from-file');
    expect(c.stopMode).toBe('pause');
    expect(c.templateReadyTimeoutSecs).toBe(120);
    expect(c.workerSelector).toEqual({ pool: 'gpu', zone: 'a' });
    expect(c.sources.default_namespace).toBe('file');
    expect(c.configPath).toBe(file);
  });

  it('takes env over the file, and finds the file through OPENSHELL_SUBSTRATE_CONFIG', () => {
    const c = loadConfig({
      env: { ...ENV0, OPENSHELL_SUBSTRATE_CONFIG: file, OPENSHELL_SUBSTRATE_DEFAULT_NAMESPACE: 'from-env', OPENSHELL_SUBSTRATE_WORKER_SELECTOR: 'pool=cpu' },
    });
    expect(c.defaultNamespace).toBe('from-env');
    expect(c.sources.default_namespace).toBe('env');
    expect(c.workerSelector).toEqual({ pool: 'cpu' });
    expect(c.stopMode).toBe('pause');
  });

  it('takes flags over env and file', () => {
    const c = loadConfig({
      env: { ...ENV0, OPENSHELL_SUBSTRATE_DEFAULT_NAMESPACE: 'from-env', OPENSHELL_SUBSTRATE_STOP_MODE: 'suspend' },
      flags: { config: file, default_namespace: 'from-flag', api_plaintext: false },
    });
    expect(c.defaultNamespace).toBe('from-flag');
    expect(c.sources.default_namespace).toBe('flag');
    expect(c.stopMode).toBe('suspend');
    expect(c.sources.stop_mode).toBe('env');
    expect(c.apiPlaintext).toBe(false);
  });

  it('resolves relative paths in the file against the file, and in flags against cwd', () => {
    const f = toml('[openshell.drivers.substrate]\napi_bearer_token_path = "tok"\n');
    expect(loadConfig({ env: ENV0, flags: { config: f } }).apiBearerTokenPath).toBe(join(dir, 'tok'));
    expect(loadConfig({ env: ENV0, cwd: '/w', flags: { api_bearer_token_path: 'tok' } }).apiBearerTokenPath).toBe('/w/tok');
    expect(loadConfig({ env: ENV0, flags: { state_dir: '~/s' } }).stateDir).toBe('/home/u/s');
  });

  it('reads booleans and integers from env text', () => {
    const c = loadConfig({ env: { ...ENV0, OPENSHELL_SUBSTRATE_LOCAL: 'yes', OPENSHELL_SUBSTRATE_POLL_INTERVAL_MS: '250' } });
    expect(c.local).toBe(true);
    expect(c.pollIntervalMs).toBe(250);
  });

  it('uses OPENSHELL_SUBSTRATE_<KEY> for every key', () => {
    for (const k of CONFIG_KEY_NAMES) expect(envVarFor(k)).toBe(`OPENSHELL_SUBSTRATE_${k.toUpperCase()}`);
  });
});

describe('errors name the key and the source', () => {
  it('unknown keys in the file, all of them', () => {
    const f = toml('[openshell.drivers.substrate]\ndefault_worker_pool = "p"\nrunsc_amd64_url = "x"\nsocket_path = "/s"\n');
    const e = err(() => loadConfig({ env: ENV0, flags: { config: f } }));
    expect(e.message).toContain('default_worker_pool');
    expect(e.message).toContain('runsc_amd64_url');
    expect(e.message).toContain(f);
    expect(e.source).toBe('file');
  });

  it('a file that is missing, not TOML, or lacks the table', () => {
    expect(err(() => loadConfig({ env: ENV0, flags: { config: join(dir, 'nope.toml') } })).message).toMatch(/cannot read config file .*nope\.toml/);
    expect(err(() => loadConfig({ env: ENV0, flags: { config: toml('x = [') } })).message).toMatch(/not valid TOML/);
    expect(err(() => loadConfig({ env: ENV0, flags: { config: toml('[openshell.gateway]\na = 1\n') } })).message).toMatch(
      /no \[openshell\.drivers\.substrate\] table/,
    );
  });

  it('bad enum from env', () => {
    const e = err(() => loadConfig({ env: { ...ENV0, OPENSHELL_SUBSTRATE_STOP_MODE: 'hibernate' } }));
    expect(e.key).toBe('stop_mode');
    expect(e.source).toBe('env');
    expect(e.message).toBe('invalid config stop_mode (from env OPENSHELL_SUBSTRATE_STOP_MODE): "hibernate" is not one of suspend, pause');
  });

  it('bad type in the file', () => {
    const f = toml('[openshell.drivers.substrate]\ntemplate_ready_timeout_secs = "soon"\n');
    const e = err(() => loadConfig({ env: ENV0, flags: { config: f } }));
    expect(e.key).toBe('template_ready_timeout_secs');
    expect(e.message).toContain(`from file ${f}`);
    expect(e.message).toContain('is not an integer');
  });

  it('out-of-range integer and bad boolean from flags', () => {
    expect(err(() => loadConfig({ env: ENV0, flags: { template_ready_timeout_secs: '0' } })).message).toMatch(
      /template_ready_timeout_secs \(from flag --template-ready-timeout-secs\): 0 is below the minimum 1/,
    );
    expect(err(() => loadConfig({ env: ENV0, flags: { local: 'maybe' } })).key).toBe('local');
  });

  it('mTLS needs both halves', () => {
    const e = err(() => loadConfig({ env: { ...ENV0, OPENSHELL_SUBSTRATE_API_TLS_KEY_PATH: '/k.pem' } }));
    expect(e.key).toBe('api_tls_key_path');
    expect(e.source).toBe('env');
    expect(e.message).toMatch(/both api_tls_cert_path and api_tls_key_path, or neither/);
    expect(() => loadConfig({ env: ENV0, flags: { api_tls_cert_path: '/c.pem', api_tls_key_path: '/k.pem' } })).not.toThrow();
  });

  it('TLS settings conflict with api_plaintext', () => {
    const e = err(() => loadConfig({ env: ENV0, flags: { api_plaintext: true, api_tls_ca_path: '/ca.pem' } }));
    expect(e.key).toBe('api_tls_ca_path');
    expect(e.message).toMatch(/conflicts with api_plaintext/);
  });

  it('api_endpoint must be a gRPC target', () => {
    expect(err(() => loadConfig({ env: ENV0, flags: { api_endpoint: 'https://api:443' } })).message).toMatch(/is a URL/);
    expect(err(() => loadConfig({ env: ENV0, flags: { api_endpoint: 'api.ate-system.svc' } })).message).toMatch(/has no port/);
    expect(err(() => loadConfig({ env: ENV0, flags: { api_endpoint: 'unix:rel/sock' } })).message).toMatch(/must be absolute/);
    expect(loadConfig({ env: ENV0, flags: { api_endpoint: 'dns:///api.ate-system.svc:443' } }).apiEndpoint).toBe('dns:///api.ate-system.svc:443');
  });

  it('images must be pinned', () => {
    const e = err(() => loadConfig({ env: ENV0, flags: { pause_image: 'registry.k8s.io/pause:3.10' } }));
    expect(e.key).toBe('pause_image');
    expect(e.message).toMatch(/not pinned/);
    expect(err(() => loadConfig({ env: { ...ENV0, OPENSHELL_SUBSTRATE_DEFAULT_IMAGE: 'ubuntu:24.04' } })).key).toBe('default_image');
  });

  it('worker selector entries follow the Kubernetes label rules', () => {
    expect(err(() => loadConfig({ env: ENV0, flags: { worker_selector: 'pool' } })).message).toMatch(/"pool" is not k=v/);
    expect(err(() => loadConfig({ env: ENV0, flags: { worker_selector: 'bad key=v' } })).message).toMatch(/invalid label key/);
    expect(err(() => loadConfig({ env: ENV0, flags: { worker_selector: 'k=bad value' } })).message).toMatch(/invalid label value/);
    const many = Array.from({ length: 11 }, (_, i) => `k${i}=v`).join(',');
    expect(err(() => loadConfig({ env: ENV0, flags: { worker_selector: many } })).message).toMatch(/at most 10/);
  });

  it('namespace, URLs and listen addresses', () => {
    expect(err(() => loadConfig({ env: ENV0, flags: { default_namespace: 'Not_A_Label' } })).key).toBe('default_namespace');
    expect(err(() => loadConfig({ env: ENV0, flags: { gateway_endpoint: 'gateway:8080' } })).key).toBe('gateway_endpoint');
    expect(err(() => loadConfig({ env: ENV0, flags: { router_url: 'ftp://x' } })).key).toBe('router_url');
    expect(err(() => loadConfig({ env: ENV0, flags: { metrics_listen: '9090' } })).key).toBe('metrics_listen');
    expect(err(() => loadConfig({ env: ENV0, flags: { metrics_listen: '127.0.0.1:99999' } })).message).toMatch(/out of range/);
    expect(err(() => loadConfig({ env: ENV0, flags: { snapshots_location: '' } })).key).toBe('snapshots_location');
  });
});

describe('OpenShell v0.1 admission keys: allow_driver_config, resource_admission, template_labels', () => {
  const A = 'openshell.ai/sandbox-attachable';
  const W = 'openshell.ai/sandbox-attachable-workspace';

  it('are keys like any other (flag, env, file)', () => {
    for (const k of ['allow_driver_config', 'resource_admission', 'template_labels']) expect(CONFIG_KEY_NAMES).toContain(k);
    expect(envVarFor('resource_admission')).toBe('OPENSHELL_SUBSTRATE_RESOURCE_ADMISSION');
    expect(envVarFor('template_labels')).toBe('OPENSHELL_SUBSTRATE_TEMPLATE_LABELS');
  });

  it('reads the file: allow_driver_config, the resource_admission sub-table, template_labels sub-tables', () => {
    const f = toml(`
[openshell]
version = 2
[openshell.drivers.substrate]
socket_path = "/run/s.sock"
allow_driver_config = true
[openshell.drivers.substrate.resource_admission]
enabled = true
required_labels = { "example.com/approved" = "yes", "example.com/team" = "\${workspace}" }
[openshell.drivers.substrate.template_labels."default/shared"]
"openshell.ai/sandbox-attachable" = "true"
"openshell.ai/sandbox-attachable-workspace" = "team-a"
[openshell.drivers.substrate.template_labels."tools/builder"]
"example.com/approved" = "yes"
`);
    const c = loadConfig({ env: ENV0, flags: { config: f } });
    expect(c.admission).toEqual({
      allowDriverConfig: true,
      resourceAdmission: { enabled: true, requiredLabels: { 'example.com/approved': 'yes', 'example.com/team': '${workspace}' } },
    });
    expect(c.admissionAck).toBe(
      'v1:{"allow_driver_config":true,"resource_admission":{"enabled":true,"required_labels":{"example.com/approved":"yes","example.com/team":"${workspace}"}}}',
    );
    expect(c.templateLabels).toEqual({ 'default/shared': { [A]: 'true', [W]: 'team-a' }, 'tools/builder': { 'example.com/approved': 'yes' } });
    expect(c.sources.resource_admission).toBe('file');
    expect(c.sources.template_labels).toBe('file');
  });

  it("takes upstream's opt-out example and keeps the defaults for an omitted map", () => {
    const off = toml('[openshell.drivers.substrate.resource_admission]\nenabled = false\nrequired_labels = {}\n');
    expect(loadConfig({ env: ENV0, flags: { config: off } }).admissionAck).toBe(
      'v1:{"allow_driver_config":false,"resource_admission":{"enabled":false,"required_labels":{}}}',
    );
    const keep = toml('[openshell.drivers.substrate]\nresource_admission = { enabled = false }\n');
    expect(loadConfig({ env: ENV0, flags: { config: keep } }).admission.resourceAdmission.requiredLabels).toEqual({ [A]: 'true', [W]: '${workspace}' });
  });

  it('reads JSON from env and flags, with flag > env > file', () => {
    const f = toml('[openshell.drivers.substrate.resource_admission]\nrequired_labels = { "from/file" = "x" }\n');
    const env = { ...ENV0, OPENSHELL_SUBSTRATE_RESOURCE_ADMISSION: '{"required_labels":{"from/env":"y"}}', OPENSHELL_SUBSTRATE_ALLOW_DRIVER_CONFIG: 'true' };
    const e = loadConfig({ env, flags: { config: f } });
    expect(e.admission.resourceAdmission.requiredLabels).toEqual({ 'from/env': 'y' });
    expect(e.admission.allowDriverConfig).toBe(true);
    expect(e.sources.resource_admission).toBe('env');
    const g = loadConfig({ env, flags: { config: f, resource_admission: '{"enabled":false,"required_labels":{}}', allow_driver_config: false } });
    expect(g.admissionAck).toBe('v1:{"allow_driver_config":false,"resource_admission":{"enabled":false,"required_labels":{}}}');
    expect(g.sources.resource_admission).toBe('flag');
    const t = loadConfig({ env: { ...ENV0, OPENSHELL_SUBSTRATE_TEMPLATE_LABELS: JSON.stringify({ 'default/x': { [A]: 'true', [W]: 'w' } }) } });
    expect(t.templateLabels).toEqual({ 'default/x': { [A]: 'true', [W]: 'w' } });
    // An empty env value is the default.
    expect(loadConfig({ env: { ...ENV0, OPENSHELL_SUBSTRATE_RESOURCE_ADMISSION: '' } }).admissionAck).toBe(DEFAULT_ACK);
  });

  it('computes the acknowledgement once, stable and equal to the policy it describes', () => {
    const a = loadConfig({ env: ENV0, flags: { resource_admission: '{"required_labels":{"z/b":"1","a/a":"2"}}' } });
    expect(a.admissionAck).toBe('v1:{"allow_driver_config":false,"resource_admission":{"enabled":true,"required_labels":{"a/a":"2","z/b":"1"}}}');
    expect(admissionAcknowledgement(a.admission)).toBe(a.admissionAck);
    expect(loadConfig({ env: ENV0, flags: { resource_admission: '{"required_labels":{"a/a":"2","z/b":"1"}}' } }).admissionAck).toBe(a.admissionAck);
  });

  it('errors name the key path and the source', () => {
    const empty = toml('[openshell.drivers.substrate.resource_admission]\nrequired_labels = {}\n');
    const e1 = err(() => loadConfig({ env: ENV0, flags: { config: empty } }));
    expect(e1.key).toBe('resource_admission.required_labels');
    expect(e1.source).toBe('file');
    expect(e1.message).toBe(
      `invalid config resource_admission.required_labels (from file ${empty}): resource_admission.required_labels must not be empty while enabled`,
    );
    const unknown = toml('[openshell.drivers.substrate.resource_admission]\nenable = false\n');
    expect(err(() => loadConfig({ env: ENV0, flags: { config: unknown } })).message).toMatch(/resource_admission\.enable .*unknown field `enable`/);
    const e2 = err(() => loadConfig({ env: { ...ENV0, OPENSHELL_SUBSTRATE_RESOURCE_ADMISSION: '{enabled:false}' } }));
    expect(e2.key).toBe('resource_admission');
    expect(e2.source).toBe('env');
    expect(e2.message).toMatch(/^invalid config resource_admission \(from env OPENSHELL_SUBSTRATE_RESOURCE_ADMISSION\): is not JSON/);
    const e3 = err(() => loadConfig({ env: ENV0, flags: { resource_admission: '{"required_labels":{"openshell.ai/managed-by":"x","a/b":"c"}}' } }));
    expect(e3.source).toBe('flag');
    expect(e3.message).toContain('(from flag --resource-admission): resource admission label key is reserved for driver-owned metadata: openshell.ai/managed-by');
    const e4 = err(() => loadConfig({ env: ENV0, flags: { template_labels: JSON.stringify({ 'default/x': { [W]: '${workspace}' } }) } }));
    expect(e4.key).toBe('template_labels."default/x"');
    expect(e4.message).toContain('(from flag --template-labels)');
    const e5 = err(() => loadConfig({ env: { ...ENV0, OPENSHELL_SUBSTRATE_ALLOW_DRIVER_CONFIG: 'perhaps' } }));
    expect(e5.key).toBe('allow_driver_config');
    const bool = toml('[openshell.drivers.substrate]\nallow_driver_config = "yes please"\n');
    expect(err(() => loadConfig({ env: ENV0, flags: { config: bool } })).key).toBe('allow_driver_config');
    const notTable = toml('[openshell.drivers.substrate]\nresource_admission = "{}"\n');
    expect(err(() => loadConfig({ env: ENV0, flags: { config: notTable } })).key).toBe('resource_admission');
  });

  it("gateway_config: takes the admission keys from the gateway's own TOML (written once), and refuses a different value here", () => {
    const gw = toml(`[openshell]
version = 2
[openshell.gateway]
compute_driver = "substrate"
[openshell.drivers.substrate]
socket_path = "/run/openshell/substrate.sock"
allow_driver_config = true
[openshell.drivers.substrate.resource_admission]
enabled = true
required_labels = { "example.com/approved" = "yes" }
`);
    const c = loadConfig({ env: ENV0, flags: { gateway_config: gw } });
    expect(c.gatewayConfig).toBe(gw);
    expect(c.admission).toEqual({ allowDriverConfig: true, resourceAdmission: { enabled: true, requiredLabels: { 'example.com/approved': 'yes' } } });
    expect(c.admissionAck).toBe('v1:{"allow_driver_config":true,"resource_admission":{"enabled":true,"required_labels":{"example.com/approved":"yes"}}}');
    expect(c.sources.resource_admission).toBe('file');
    // The same value on our side is fine; a different one is an error naming both places.
    expect(loadConfig({ env: ENV0, flags: { gateway_config: gw, allow_driver_config: 'true' } }).admission.allowDriverConfig).toBe(true);
    const e = err(() => loadConfig({ env: ENV0, flags: { gateway_config: gw, allow_driver_config: 'false' } }));
    expect(e.key).toBe('allow_driver_config');
    expect(e.message).toMatch(/flag --allow-driver-config.*differs from the gateway's allow_driver_config in .*c\d+\.toml/);
    // Without admission keys in the gateway's table both sides use upstream's defaults.
    const bare = toml('[openshell.drivers.substrate]\nsocket_path = "/run/x.sock"\n');
    expect(loadConfig({ env: ENV0, flags: { gateway_config: bare } }).admissionAck).toBe(DEFAULT_ACK);
    // An invalid table in the gateway's file names the key and that file.
    const bad = toml('[openshell.drivers.substrate.resource_admission]\nrequired_labels = {}\n');
    const e2 = err(() => loadConfig({ env: ENV0, flags: { gateway_config: bad } }));
    expect(e2.message).toMatch(/required_labels must not be empty while enabled/);
    expect(e2.message).toContain(bad);
  });

  it('never lets __proto__ in TOML or JSON reach a prototype', () => {
    const sub = toml('[openshell.drivers.substrate.resource_admission.__proto__]\nenabled = false\n');
    expect(err(() => loadConfig({ env: ENV0, flags: { config: sub } })).message).toContain('unknown field `__proto__`');
    const top = toml('[openshell.drivers.substrate.__proto__]\napi_plaintext = true\nallow_driver_config = true\n');
    expect(err(() => loadConfig({ env: ENV0, flags: { config: top } })).message).toContain('unknown key in [openshell.drivers.substrate]: __proto__');
    const labels = toml('[openshell.drivers.substrate.template_labels.__proto__]\n"openshell.ai/sandbox-attachable" = "true"\n');
    expect(err(() => loadConfig({ env: ENV0, flags: { config: labels } })).message).toContain('"__proto__" is not allowed');
    const json = err(() => loadConfig({ env: { ...ENV0, OPENSHELL_SUBSTRATE_TEMPLATE_LABELS: '{"default/x":{"__proto__":"true"}}' } }));
    expect(json.message).toContain('"__proto__" is not allowed');
    expect(({} as Record<string, unknown>).enabled).toBeUndefined();
    expect(({} as Record<string, unknown>)['openshell.ai/sandbox-attachable']).toBeUndefined();
  });
});

describe('the CLI exits 2 on invalid config, naming the key', () => {
  const captureStderr = async (fn: () => Promise<number>) => {
    const orig = process.stderr.write.bind(process.stderr);
    let text = '';
    process.stderr.write = ((s: string) => {
      text += s;
      return true;
    }) as typeof process.stderr.write;
    try {
      return { code: await fn(), text };
    } finally {
      process.stderr.write = orig;
    }
  };

  it('serve', async () => {
    const r = await captureStderr(() => serveMain(['--stop-mode', 'hibernate', '--state-dir', dir]));
    expect(r.code).toBe(2);
    expect(r.text).toContain('stop_mode (from flag --stop-mode)');
  });

  it('serve: a kubeconfig that cannot be loaded, and no ateapi endpoint at all', async () => {
    const r = await captureStderr(() => serveMain(['--state-dir', dir, '--api-endpoint', 'unix:/nonexistent/ateapi.sock', '--kubeconfig', join(dir, 'no-kubeconfig')]));
    expect(r.code).toBe(2);
    expect(r.text).toMatch(/cannot load the Kubernetes config .*no-kubeconfig/);
    const none = await captureStderr(() => serveMain(['--state-dir', join(dir, 'empty-state')]));
    expect(none.code).toBe(2);
    expect(none.text).toMatch(/no ateapi endpoint: set api_endpoint/);
  });

  it('actors and sandboxes', async () => {
    const a = await captureStderr(() => actorsMain(['list', '--api-tls-cert-path', '/c.pem', '--state-dir', dir]));
    expect(a.code).toBe(2);
    expect(a.text).toContain('api_tls_cert_path');
    const f = toml('[openshell.drivers.substrate]\nbogus = 1\n');
    const s = await captureStderr(() => sandboxesMain(['list', '--config', f]));
    expect(s.code).toBe(2);
    expect(s.text).toContain('bogus');
  });

  it('serve: invalid admission config exits 2 (the real binary), naming the key and the file', () => {
    const bad = toml('[openshell.drivers.substrate]\nallow_driver_config = false\n[openshell.drivers.substrate.resource_admission]\nrequired_labels = { "openshell.ai/sandbox-attachable-workspace" = "\${workspace}" }\n');
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: dir, XDG_STATE_HOME: join(dir, 'xdg') };
    const r = spawnSync(process.execPath, [resolve('bin/substrate-driver.js'), 'serve', '--config', bad], { env, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain(`invalid config resource_admission.required_labels (from file ${bad})`);
    expect(r.stderr).toContain('resource_admission.required_labels must include a shared approval label');
    const j = spawnSync(process.execPath, [resolve('bin/substrate-driver.js'), 'serve', '--template-labels', '{"x":{}}'], { env, encoding: 'utf8', timeout: 60_000 });
    expect(j.status, j.stderr).toBe(2);
    expect(j.stderr).toContain('invalid config template_labels."x" (from flag --template-labels)');
  });

  it('unknown flags are usage errors (exit 2) and --help exits 0', async () => {
    const r = await captureStderr(() => serveMain(['--no-such-flag']));
    expect(r.code).toBe(2);
    expect(r.text).toMatch(/no-such-flag/);
    const orig = process.stdout.write.bind(process.stdout);
    let out = '';
    process.stdout.write = ((s: string) => {
      out += s;
      return true;
    }) as typeof process.stdout.write;
    try {
      expect(await serveMain(['--help'])).toBe(0);
      expect(await sandboxesMain(['watch', '--help'])).toBe(0);
      expect(await actorsMain(['migrate', '--help'])).toBe(0);
    } finally {
      process.stdout.write = orig;
    }
    expect(out).toContain('--metrics-listen');
    expect(out).toContain('--resource-admission');
    expect(out).toContain('--template-labels');
    expect(out).toContain('--allow-driver-config');
    expect(out).toContain('substrate-driver sandboxes watch');
    expect(out).toContain('--selector');
  });
});
