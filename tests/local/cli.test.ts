// The CLI as a person runs it, without a running local Substrate: --help on every group and verb, usage and
// configuration errors exit 2 with a message, `local serve` settings through the one config loader (flag >
// env > file), `local apply --dry-run` and manifest errors (nothing applied), no instance → exit 1, TCP
// endpoints without a token → exit 2, and `local images` / `local doctor` on a fresh state directory.
import { execa } from 'execa';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/common/config.js';
import { localSubstrateOptions, serveConfigFlags } from '../../src/cli/local.js';
import { main } from '../../src/cli/main.js';

const BIN = join(import.meta.dirname, '../../bin/substrate-driver.js');
const dir = mkdtempSync(join(tmpdir(), 'sdl-cli-'));
const emptyState = join(dir, 'state');
mkdirSync(emptyState, { mode: 0o700 });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The CLI with a clean environment (no OPENSHELL_SUBSTRATE_* from the caller) and the given extra env. */
const cli = (args: string[], opts: { input?: string; env?: Record<string, string> } = {}) => {
  const env: Record<string, string | undefined> = { ...process.env, OPENSHELL_SUBSTRATE_STATE_DIR: emptyState, ...opts.env };
  for (const k of Object.keys(env)) if (k.startsWith('OPENSHELL_SUBSTRATE_') && !(k in (opts.env ?? {})) && k !== 'OPENSHELL_SUBSTRATE_STATE_DIR') delete env[k];
  return execa('node', [BIN, ...args], { reject: false, input: opts.input, env, extendEnv: false });
};

/** The CLI's main() in this process (what bin/substrate-driver.js runs), its output captured. */
async function inProcess(args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => ((stdout += String(c)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => ((stderr += String(c)), true));
  try {
    const exitCode = await main(args);
    return { exitCode, stdout, stderr };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

const PIN = `@sha256:${'e'.repeat(64)}`;
const TEMPLATE = `
metadata: {atespace: smoke, name: counter}
containers:
- name: counter
  image: local/node${PIN}
  command: [/usr/bin/node, /app/counter.js]
  env: [{name: API_KEY, value: sk-very-secret-123}]
snapshotConfig: {storageLocation: "file:///snapshots"}
sandboxConfig: {sandboxClass: SANDBOX_CLASS_GVISOR, configName: gvisor-default}
`;

describe('help and usage (exit 0 for --help, 2 for mistakes)', () => {
  const GROUPS: Record<string, string[]> = {
    actors: ['create', 'list', 'get', 'resume', 'suspend', 'pause', 'revert', 'migrate', 'delete'],
    atespaces: ['create', 'get', 'list', 'delete'],
    templates: ['create', 'get', 'list', 'delete'],
    tags: ['create', 'get', 'list', 'update', 'delete'],
    'egress-policy': ['create', 'get', 'update', 'delete'],
    workers: ['list', 'get', 'drain', 'assignments'],
    local: ['serve', 'apply', 'images', 'workers', 'doctor'],
  };

  it('top level lists every group; no command exits 2, an unknown one exits 2', async () => {
    const help = await cli(['--help']);
    expect(help.exitCode).toBe(0);
    for (const g of Object.keys(GROUPS)) expect(help.stdout).toContain(`substrate-driver ${g}`);
    expect((await cli([])).exitCode).toBe(2);
    const bad = await cli(['nonsense']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/unknown command "nonsense"/);
  });

  it('every group prints its usage (exit 2 bare, 0 with --help) and rejects an unknown verb', async () => {
    for (const [g, verbs] of Object.entries(GROUPS)) {
      const bare = await inProcess([g]);
      expect(bare.exitCode, g).toBe(2);
      const help = await inProcess([g, '--help']);
      expect(help.exitCode, g).toBe(0);
      for (const v of verbs) expect(help.stdout, `${g} ${v}`).toContain(v);
      const unknown = await inProcess([g, 'frobnicate']);
      expect(unknown.exitCode, g).toBe(2);
      expect(unknown.stderr, g).toMatch(/unknown command/);
    }
  });

  it('--help on every verb prints its usage and flags', async () => {
    const runs = Object.entries(GROUPS).flatMap(([g, verbs]) => verbs.map((v) => [g, v] as const));
    const results = [];
    for (const [g, v] of runs) results.push(await inProcess([g, v, '--help']));
    results.forEach((r, i) => {
      const [g, v] = runs[i]!;
      expect(r.exitCode, `${g} ${v}`).toBe(0);
      expect(r.stdout, `${g} ${v}`).toMatch(new RegExp(`Usage: substrate-driver ${g} ${v}`));
    });
    const apply = results[runs.findIndex(([g, v]) => g === 'local' && v === 'apply')]!;
    expect(apply.stdout).toMatch(/--wait/);
    expect(apply.stdout).toMatch(/SandboxConfigs, WorkerPools,\s+Atespaces, ActorTemplates/);
    const serve = results[runs.findIndex(([g, v]) => g === 'local' && v === 'serve')]!;
    expect(serve.stdout).toMatch(/--router-listen H:P .*\[router_listen\]/s);
    expect(serve.stdout).toMatch(/--tls-client-ca/);
    const actorsCreate = results[runs.findIndex(([g, v]) => g === 'actors' && v === 'create')]!;
    expect(actorsCreate.stdout).toMatch(/--template/);
    expect(actorsCreate.stdout).toMatch(/--endpoint TARGET/);
    expect(actorsCreate.stdout).toMatch(/--token-file FILE/);
  });

  it('bad flags, missing arguments and bad values exit 2 with a message', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['actors', 'get'], /missing argument; usage: substrate-driver actors get/],
      [['actors', 'get', 'a', 'b'], /unexpected argument "b"/],
      [['actors', 'list', '--nope'], /Unknown option '--nope'/],
      [['actors', 'create', 'a1'], /--template \[ATESPACE\/\]TEMPLATE is required/],
      [['actors', 'create', 'a1', '--template', 'x/y/z'], /--template "x\/y\/z" must be NAME or ATESPACE\/NAME/],
      [['actors', 'resume', 'a1', '--boot'], /Substrate v0\.4 has no cold-boot resume/],
      [['actors', 'migrate', 'a1', '--selector', 'nokv'], /--selector: "nokv" is not k=v/],
      [['actors', 'delete', 'a1', '--version', '0'], /--version must be a positive integer/],
      [['actors', 'get', 'a1', '-o', 'xml'], /-o\/--output must be table, json or yaml/],
      [['actors', 'list', '-A', '-a', 'x'], /mutually exclusive/],
      [['templates', 'list'], /give -a ATESPACE to list one atespace, or -A for all/],
      [['templates', 'get', 't1'], /-a\/--atespace is required/],
      [['templates', 'create'], /-f FILE is required/],
      [['tags', 'create', 't1', '-a', 's'], /--actor NAME is required/],
      [['tags', 'update', 't1', '-a', 's', '--scope', 'world'], /--scope must be atespace or published/],
      [['tags', 'update', 't1', '-a', 's'], /--scope atespace\|published is required/],
      [['egress-policy', 'get', 'a1'], /-a\/--atespace is required/],
      [['egress-policy', 'create', 'a1', '-a', 's'], /-f FILE is required/],
      [['workers', 'get', 'a/b/c'], /worker "a\/b\/c" must be NAME or ATESPACE\/NAME/],
      [['local', 'apply'], /-f FILE is required/],
      [['local', 'apply', '-f', '-', '--timeout', '0'], /--timeout must be an integer from 1 to 86400/],
      [['local', 'apply', '-f', join(dir, 'missing.yaml')], /cannot read .*missing\.yaml: ENOENT/],
      [['local', 'images', '--nope'], /Unknown option '--nope'/],
      [['local', 'bogus'], /unknown command "local bogus"/],
    ];
    for (const [args, re] of cases) {
      const r = await inProcess(args);
      expect(r.exitCode, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(re);
    }
    // The real binary agrees.
    const bin = await cli(['actors', 'get']);
    expect(bin.exitCode).toBe(2);
    expect(bin.stderr).toMatch(/missing argument/);
  });
});

describe('connection', () => {
  it('without a running instance: exit 1 naming the state directory and how to start one', async () => {
    const r = await cli(['actors', 'list', '--state-dir', emptyState]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`no local Substrate runs for ${emptyState}; start one with: substrate-driver local serve --state-dir ${emptyState}`);
    const w = await cli(['local', 'workers', '--state-dir', emptyState]);
    expect(w.exitCode).toBe(1);
    expect(w.stderr).toMatch(/no local Substrate runs for/);
  });

  it('a TCP endpoint needs a token file (exit 2); a token file needs --endpoint; an unreadable token is exit 1 without its content', async () => {
    const noTok = await cli(['atespaces', 'list', '--endpoint', '127.0.0.1:1']);
    expect(noTok.exitCode).toBe(2);
    expect(noTok.stderr).toMatch(/a TCP endpoint \(127\.0\.0\.1:1\) needs credentials: give --token-file FILE/);
    const tokOnly = await cli(['atespaces', 'list', '--token-file', join(dir, 'tok')]);
    expect(tokOnly.exitCode).toBe(2);
    expect(tokOnly.stderr).toMatch(/--token-file goes with --endpoint/);
    const both = await cli(['atespaces', 'list', '--endpoint', 'a:1', '--api-endpoint', 'b:1']);
    expect(both.exitCode).toBe(2);
    const url = await cli(['atespaces', 'list', '--endpoint', 'https://x:443', '--token-file', join(dir, 'tok')]);
    expect(url.exitCode).toBe(2);
    expect(url.stderr).toMatch(/is a URL; give a gRPC target/);
    const empty = join(dir, 'empty.tok');
    writeFileSync(empty, '\n');
    const e = await cli(['atespaces', 'list', '--endpoint', '127.0.0.1:1', '--token-file', empty, '--api-plaintext']);
    expect(e.exitCode).toBe(1);
    expect(e.stderr).toContain(`the bearer token file ${empty} is empty`);
    const stdinTok = await cli(['atespaces', 'list', '--endpoint', '127.0.0.1:1', '--token-file', '-'], { input: '' });
    expect(stdinTok.exitCode).toBe(2);
    expect(stdinTok.stderr).toMatch(/bearer token read from standard input is empty/);
  });

  it('an unreachable endpoint is an API error: exit 1, CODE: message, and the token never printed', async () => {
    const tok = join(dir, 'secret.tok');
    writeFileSync(tok, 'tok-SHOULD-NOT-APPEAR\n');
    const r = await cli(['atespaces', 'list', '--endpoint', `unix:${join(dir, 'no.sock')}`, '--token-file', tok]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^UNAVAILABLE: /);
    expect(r.stdout + r.stderr).not.toContain('tok-SHOULD-NOT-APPEAR');
  });
});

describe('local apply: every document checked first, nothing applied on any error', () => {
  it('--dry-run prints the plan in apply order, reading standard input', async () => {
    const text = [TEMPLATE, 'kind: Atespace\nmetadata: {name: smoke}\n', `apiVersion: ate.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: p}\nspec: {replicas: 2, ateomImage: "w${PIN}"}\n`].join('---\n');
    const r = await cli(['local', 'apply', '-f', '-', '--dry-run'], { input: text });
    expect(r.exitCode).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([
      'workerpool.ate.dev default/p (document 3) would be applied',
      'atespace smoke (document 2) would be applied',
      'actortemplate smoke/counter (document 1) would be applied',
    ]);
    expect(r.stderr).toMatch(/warning: document 3 \(WorkerPool "p"\): spec\.ateomImage is the pre-v0\.4 name of spec\.workerImage/);
  });

  it('a bad document exits 2 naming document and path, before any connection (none runs here), echoing no secret', async () => {
    const bad = [TEMPLATE, TEMPLATE.replace('storageLocation', 'onPause: SNAPSHOT_CONTENT_SCOPE_FULL, storageLocation').replace('counter}', 'c2}').replace('value: sk-very-secret-123', 'value: 42')].join('---\n');
    const r = await cli(['local', 'apply', '-f', '-', '--state-dir', emptyState], { input: bad });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/document 2 \(ActorTemplate "smoke\/c2"\): snapshotConfig\.onPause: unknown field/);
    expect(r.stderr).toMatch(/document 2 \(ActorTemplate "smoke\/c2"\): containers\[0\]\.env\[0\]\.value: must be a string, not a number/);
    expect(r.stderr).not.toMatch(/no local Substrate runs/);
    expect(r.stderr).not.toContain('sk-very-secret-123');
    const k8s = await cli(['local', 'apply', '-f', '-'], { input: 'apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n' });
    expect(k8s.exitCode).toBe(2);
    expect(k8s.stderr).toMatch(/document 1 \(Namespace\): Namespaces are Kubernetes objects/);
  });

  it('templates create takes ActorTemplates only; egress-policy create checks its manifest before connecting', async () => {
    const r = await cli(['templates', 'create', '-f', '-'], { input: 'kind: Atespace\nmetadata: {name: x}\n' });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/not accepted here \(only ActorTemplate\)/);
    const e = await cli(['egress-policy', 'create', 'a1', '-a', 's', '-f', '-'], { input: 'metadata: {name: strict}\nrules: []\n' });
    expect(e.exitCode).toBe(2);
    expect(e.stderr).toContain('manifest metadata.name "strict" must be "default"');
    const u = await cli(['egress-policy', 'update', 'a1', '-a', 's', '-f', '-'], { input: 'rules: []\n' });
    expect(u.exitCode).toBe(2);
    expect(u.stderr).toMatch(/lacks the metadata\.uid and metadata\.version preconditions/);
  });
});

describe('local serve reads its settings through the config loader (flag > env > file > default)', () => {
  const file = join(dir, 'local.toml');
  writeFileSync(
    file,
    `[openshell.drivers.substrate]
workers = 6
local_nodes = 3
local_actor_memory = "512Mi"
local_actor_cpu = "500m"
local_egress_ports = [8080, 9090]
local_listen = "127.0.0.1:7443"
local_jwt_public_key = "keys/jwt.pem"
local_jwt_issuer = "https://idp.example"
local_jwt_audience = "api.ate-system.svc"
router_listen = "127.0.0.1:8100"
`,
  );

  it('maps flags, env and file onto startLocalSubstrate options', () => {
    const cfg = loadConfig({
      flags: serveConfigFlags({ config: file, workers: '4', 'actor-pids': '256', 'tls-cert': '/c.pem', 'tls-key': '/k.pem', 'tls-client-ca': '/ca.pem' }),
      env: { HOME: '/home/u', OPENSHELL_SUBSTRATE_LOCAL_NODES: '5', OPENSHELL_SUBSTRATE_STATE_DIR: '/var/lib/s' },
      cwd: '/w',
    });
    expect(cfg.sources.workers).toBe('flag');
    expect(cfg.sources.local_nodes).toBe('env');
    expect(cfg.sources.local_actor_memory).toBe('file');
    expect(localSubstrateOptions(cfg)).toEqual({
      stateDir: '/var/lib/s',
      listen: '127.0.0.1:7443',
      routerListen: '127.0.0.1:8100',
      workers: 4,
      nodes: 5,
      actorPort: undefined,
      tls: { certPath: '/c.pem', keyPath: '/k.pem', clientCaPath: '/ca.pem' },
      auth: { publicKeyPath: join(dir, 'keys/jwt.pem'), issuer: 'https://idp.example', audience: 'api.ate-system.svc' },
      egress: [
        { host: '127.0.0.1', port: 8080 },
        { host: '127.0.0.1', port: 9090 },
      ],
      routerAllowRemote: false,
      limits: { memoryBytes: 512 * 1024 * 1024, cpuMillis: 500, pids: 256 },
    });
  });

  it('defaults leave every option to startLocalSubstrate', () => {
    const o = localSubstrateOptions(loadConfig({ env: { HOME: '/home/u' } }));
    expect(o).toEqual({
      stateDir: '/home/u/.local/state/openshell-driver-substrate',
      listen: undefined,
      routerListen: undefined,
      workers: undefined,
      nodes: undefined,
      actorPort: undefined,
      tls: undefined,
      auth: undefined,
      egress: undefined,
      routerAllowRemote: false,
      limits: {},
    });
  });

  it('invalid settings exit 2 naming the key and where it came from, before anything starts', async () => {
    const st = ['--state-dir', emptyState];
    const cases: Array<[string[], Record<string, string>, RegExp]> = [
      [['--workers', '0'], {}, /invalid config workers \(from flag --workers\): 0 is below the minimum 1/],
      [['--tls-cert', '/x.pem'], {}, /invalid config local_tls_cert \(from flag --tls-cert\): the server certificate and key go together/],
      [['--jwks', '/j.json'], {}, /bearer-JWT verification needs local_jwt_issuer and local_jwt_audience/],
      [['--actor-memory', 'lots'], {}, /invalid config local_actor_memory .*"lots" is not a quantity/],
      [['--actor-memory', '1Mi'], {}, /1Mi is below the minimum 16Mi/],
      [['--egress', '80,http'], {}, /invalid config local_egress_ports .*"http" is not a port/],
      [[], { OPENSHELL_SUBSTRATE_LOCAL_NODES: '100' }, /invalid config local_nodes \(from env OPENSHELL_SUBSTRATE_LOCAL_NODES\): 100 is above the maximum 64/],
      [['--config', file, '--listen', 'nowhere'], {}, /invalid config local_listen \(from flag --listen\): "nowhere" is neither unix:\/abs\/path nor host:port/],
      [['--log-level', 'loud'], {}, /invalid config log_level .*"loud" is not one of debug, info, warn, error/],
      [['--listen', '127.0.0.1:7443'], {}, /invalid config local_listen \(from flag --listen\): a TCP listener \(127\.0\.0\.1:7443\) requires authentication, even on loopback/],
      [['--listen', '0.0.0.0:7443', '--tls-client-ca', '/ca.pem'], {}, /invalid config local_tls_client_ca .*client certificates need TLS/],
      [['--listen', '0.0.0.0:7443', '--jwks', '/j.json', '--jwt-issuer', 'i', '--jwt-audience', 'a'], {}, /"0\.0\.0\.0:7443" is not loopback: the API then requires TLS/],
      [['--enable-debug-clear'], {}, /Substrate v0\.4 has no DebugClear/],
      [['--config', join(dir, 'none.toml')], {}, /cannot read config file/],
    ];
    const results = await Promise.all(cases.map(([args, env]) => cli(['local', 'serve', ...st, ...args], { env })));
    results.forEach((r, i) => {
      expect(r.exitCode, cases[i]![0].join(' ')).toBe(2);
      expect(r.stderr, cases[i]![0].join(' ')).toMatch(cases[i]![2]);
    });
  });
});

describe('local images and doctor on a fresh state directory', () => {
  it('images: lists the default image with its pinned reference; build makes an app image', async () => {
    const state = join(dir, 'img-state');
    mkdirSync(state, { mode: 0o700 });
    const j = await cli(['local', 'images', '--json', '--state-dir', state]);
    expect(j.exitCode).toBe(0);
    const list = JSON.parse(j.stdout) as Array<{ name: string; ref: string }>;
    expect(list.find((i) => i.name === 'node')?.ref).toMatch(/^local\/node@sha256:[0-9a-f]{64}$/);
    const app = join(dir, 'app-src');
    mkdirSync(app);
    writeFileSync(join(app, 'main.js'), 'console.log(1)\n');
    const b = await cli(['local', 'images', 'build', '--name', 'myapp', '--from', app, '--state-dir', state]);
    expect(b.exitCode).toBe(0);
    expect(b.stdout.trim()).toMatch(/^local\/myapp@sha256:[0-9a-f]{64}$/);
    const bad = await cli(['local', 'images', 'build', '--name', 'Bad Name', '--from', app, '--state-dir', state]);
    expect(bad.exitCode).toBe(2);
    const missing = await cli(['local', 'images', 'build', '--name', 'x', '--from', join(app, 'nope'), '--state-dir', state]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toMatch(/is not a directory/);
  });

  it('doctor: the exit status says whether every check passed', async () => {
    const r = await cli(['local', 'doctor', '--json', '--state-dir', emptyState]);
    const checks = JSON.parse(r.stdout) as Array<{ check: string; ok: boolean; remedy?: string }>;
    expect(checks.length).toBeGreaterThan(3);
    expect(r.exitCode).toBe(checks.every((c) => c.ok) ? 0 : 1);
    for (const c of checks.filter((x) => !x.ok)) expect(c.remedy, c.check).toBeTruthy();
  });
});
