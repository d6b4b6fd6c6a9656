// scripts/kind-up.mjs and scripts/kind-down.mjs: the exact plan (pure, scripts/lib/kind-plan.mjs), --dry-run,
// argument errors, the prerequisite check, and one full run of the executor.
//
// Docker cannot run on this machine, so nothing here starts a real cluster. For the executor run, a recording
// toolchain stands in for docker, kind, kubectl, ko, go and the Substrate checkout's hack/ scripts: each stub
// logs its argv, cwd and the environment the real tool would depend on, and answers as the real tool does for
// the calls kind-up makes (kind get kubeconfig prints a kubeconfig, kubectl create token prints a token,
// kubectl port-forward keeps running and listens on --address:LOCAL, docker info fails like a stopped engine
// when asked to). The stubs hold the real contract's shape; they cannot tell whether Substrate installs.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { parse as parseToml } from 'smol-toml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/common/config.js';
import { REPO_ROOT } from '../../scripts/lib/cli.mjs';
import {
  KIND_UP_DEFAULTS,
  buildKindDownPlan,
  buildKindUpPlan,
  formatPlan,
  parseKindDownArgs,
  parseKindUpArgs,
  renderDriverConfig,
  type KindUpOptions,
} from '../../scripts/lib/kind-plan.mjs';
import { processAlive } from '../../scripts/lib/kind-run.mjs';

let tmp: string;
let substrate: string; // a fake checkout: hack/ scripts only
let stubBin: string; // stub toolchain + node
let nodeOnlyBin: string; // only node
const startedPids: number[] = [];

const STUB = `#!/usr/bin/env node
// Stand-in for docker/kind/kubectl/ko/go and Substrate's hack scripts (see the test file's header).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
const tool = path.basename(process.argv[1]);
const args = process.argv.slice(2);
const log = process.env.STUB_LOG;
if (log) {
  fs.appendFileSync(log, JSON.stringify({ tool, args, cwd: process.cwd(),
    env: { KIND_CLUSTER_NAME: process.env.KIND_CLUSTER_NAME ?? null, KUBECONFIG: process.env.KUBECONFIG ?? null } }) + '\\n');
}
const fail = (process.env.STUB_FAIL ?? '').split(',');
switch (tool) {
  case 'docker':
    if (args[0] === 'info') {
      if (fail.includes('docker-info')) {
        process.stderr.write('Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\\n');
        process.exit(1);
      }
      process.stdout.write('27.3.1\\n');
    }
    process.exit(0);
  case 'kind':
    if (args[0] === 'get' && args[1] === 'clusters') {
      const existing = (process.env.STUB_KIND_CLUSTERS ?? '').split(',').filter(Boolean);
      if (existing.length === 0) process.stderr.write('No kind clusters found.\\n');
      else process.stdout.write(existing.join('\\n') + '\\n');
    } else if (args[0] === 'get' && args[1] === 'kubeconfig') {
      process.stdout.write('apiVersion: v1\\nkind: Config\\ncurrent-context: kind-' + args[3] + '\\n');
    }
    process.exit(0);
  case 'kubectl': {
    if (args.includes('rollout') && fail.includes('rollout')) {
      process.stderr.write('error: timed out waiting for the condition\\n');
      process.exit(1);
    }
    if (args.includes('port-forward')) {
      const address = args[args.indexOf('--address') + 1];
      const ports = args.find((a) => /^\\d+:\\d+$/.test(a));
      const local = Number(ports.split(':')[0]);
      const server = net.createServer((s) => s.end());
      server.listen(local, address, () => process.stdout.write('Forwarding from ' + address + ':' + local + '\\n'));
      process.on('SIGTERM', () => process.exit(0));
      break;
    }
    if (args.includes('clustertrustbundle')) {
      process.stdout.write('-----BEGIN CERTIFICATE-----\\nMIIBstub\\n-----END CERTIFICATE-----\\n');
    } else if (args.includes('create') && args.includes('token')) {
      process.stdout.write('stub-sa-token-0123456789');
    } else if (args.includes('apply')) {
      process.stdout.write('namespace/x configured\\n');
    }
    process.exit(0);
  }
  default:
    process.exit(0);
}
`;

function write(p: string, content: string, mode = 0o755) {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content, { mode });
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kind-test-'));
  stubBin = path.join(tmp, 'stub-bin');
  nodeOnlyBin = path.join(tmp, 'node-bin');
  write(path.join(stubBin, 'stub.mjs'), STUB);
  for (const t of ['docker', 'kind', 'kubectl', 'ko', 'go']) fs.symlinkSync('stub.mjs', path.join(stubBin, t));
  fs.symlinkSync(process.execPath, path.join(stubBin, 'node'));
  fs.mkdirSync(nodeOnlyBin);
  fs.symlinkSync(process.execPath, path.join(nodeOnlyBin, 'node'));
  substrate = path.join(tmp, 'substrate');
  write(path.join(substrate, 'hack', 'stub.mjs'), STUB);
  fs.symlinkSync('stub.mjs', path.join(substrate, 'hack', 'create-kind-cluster.sh'));
  fs.symlinkSync('stub.mjs', path.join(substrate, 'hack', 'install-ate-kind.sh'));
});

afterAll(() => {
  for (const pid of startedPids) {
    if (processAlive(pid)) process.kill(pid, 'SIGKILL');
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

function script(name: 'kind-up' | 'kind-down', args: string[], env: Record<string, string> = {}) {
  return execa(process.execPath, [path.join(REPO_ROOT, `scripts/${name}.mjs`), ...args], {
    cwd: tmp,
    reject: false,
    stripFinalNewline: false,
    extendEnv: false,
    env: { PATH: `${stubBin}:/usr/bin:/bin`, HOME: tmp, NO_COLOR: '1', ...env },
  });
}

function stubLog(file: string): Array<{ tool: string; args: string[]; cwd: string; env: Record<string, string | null> }> {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

function upOptions(over: Partial<KindUpOptions> = {}): KindUpOptions {
  return {
    substrateDir: '/src/substrate',
    clusterName: 'ate',
    outDir: '/out',
    authMode: 'jwt',
    namespace: 'openshell-sandboxes',
    apiPort: 8080,
    routerPort: 8000,
    tokenDuration: '24h',
    timeout: '600s',
    dryRun: true,
    ...over,
  };
}

describe('kind-up plan (pure)', () => {
  it('is exactly the documented sequence (jwt mode)', () => {
    const k = 'kubectl --kubeconfig /out/kubeconfig --context kind-ate';
    expect(formatPlan(buildKindUpPlan(upOptions())).split('\n')).toEqual([
      '+ mkdir -p -m 700 /out',
      '+ cd /src/substrate && KIND_CLUSTER_NAME=ate ./hack/create-kind-cluster.sh',
      '+ kind get kubeconfig --name ate > /out/kubeconfig',
      '+ cd /src/substrate && KIND_CLUSTER_NAME=ate KUBECONFIG=/out/kubeconfig ./hack/install-ate-kind.sh --deploy-ate-system --auth-mode=jwt',
      `+ ${k} -n ate-system rollout status deployment/ate-api-server-deployment --timeout=600s`,
      `+ ${k} -n ate-system rollout status deployment/ate-controller --timeout=600s`,
      `+ ${k} -n ate-system rollout status deployment/atenet-router --timeout=600s`,
      `+ ${k} -n ate-system rollout status statefulset/valkey-cluster --timeout=600s`,
      `+ ${k} -n ate-system rollout status daemonset/atelet --timeout=600s`,
      `+ ${k} get clustertrustbundle servicedns.podcert.ate.dev:identity:primary-bundle -o 'jsonpath={.spec.trustBundle}' > /out/api-ca.pem`,
      `+ ${k} create token ate-client -n ate-system --audience api.ate-system.svc --duration 24h > /out/api-token`,
      '+ write-file /out/namespace.yaml --mode 0644  # Namespace openshell-sandboxes',
      `+ ${k} apply -f /out/namespace.yaml`,
      `+ ${k} port-forward -n ate-system svc/api 8080:443 --address 127.0.0.1 > /out/port-forward-api.log 2>&1 & echo $! > /out/port-forward-api.pid`,
      '+ wait-for-tcp 127.0.0.1:8080 --timeout 30s',
      `+ ${k} port-forward -n ate-system svc/atenet-router 8000:80 --address 127.0.0.1 > /out/port-forward-router.log 2>&1 & echo $! > /out/port-forward-router.pid`,
      '+ wait-for-tcp 127.0.0.1:8000 --timeout 30s',
      '+ write-file /out/driver.toml --mode 0644  # driver config',
      '',
    ]);
  });

  it('mtls mode passes --auth-mode=mtls and mints no token; the token file is 0600 in jwt mode', () => {
    const mtls = buildKindUpPlan(upOptions({ authMode: 'mtls' }));
    const text = formatPlan(mtls);
    expect(text).toContain('./hack/install-ate-kind.sh --deploy-ate-system --auth-mode=mtls');
    expect(text).not.toContain('create token');
    const jwtPlan = buildKindUpPlan(upOptions());
    const tokenStep = jwtPlan.find((s) => s.type === 'run' && s.argv.includes('token'));
    expect(tokenStep && tokenStep.type === 'run' && tokenStep.stdoutTo).toEqual({ path: '/out/api-token', mode: 0o600, nonEmpty: true });
  });

  it('writes a driver config the driver\'s own config loader accepts', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'cfg-'));
    for (const mode of ['jwt', 'mtls'] as const) {
      const o = upOptions({ outDir: dir, authMode: mode, apiPort: 18443, routerPort: 18000 });
      const text = renderDriverConfig(o);
      const table = (parseToml(text) as any).openshell.drivers.substrate;
      expect(table).toEqual({
        api_endpoint: '127.0.0.1:18443',
        api_tls_ca_path: path.join(dir, 'api-ca.pem'),
        api_tls_server_name: 'api.ate-system.svc',
        ...(mode === 'jwt' ? { api_bearer_token_path: path.join(dir, 'api-token') } : {}),
        default_namespace: 'openshell-sandboxes',
        router_url: 'http://127.0.0.1:18000',
        kubeconfig: path.join(dir, 'kubeconfig'),
        kube_context: 'kind-ate',
      });
      const file = path.join(dir, `driver-${mode}.toml`);
      fs.writeFileSync(file, text);
      const cfg = loadConfig({ flags: { config: file }, env: {} });
      expect(cfg.apiEndpoint).toBe('127.0.0.1:18443');
      expect(cfg.apiTlsServerName).toBe('api.ate-system.svc');
      expect(cfg.apiBearerTokenPath).toBe(mode === 'jwt' ? path.join(dir, 'api-token') : '');
      expect(cfg.kubeContext).toBe('kind-ate');
      expect(cfg.routerUrl).toBe('http://127.0.0.1:18000');
    }
  });

  it('parses defaults and resolves relative paths against the working directory', () => {
    const o = parseKindUpArgs(['--substrate-dir', 'substrate'], { cwd: tmp });
    expect(o).toMatchObject({ help: false, substrateDir: substrate, ...KIND_UP_DEFAULTS, dryRun: false });
    expect(KIND_UP_DEFAULTS.outDir).toBe(path.join(REPO_ROOT, '.state', 'kind'));
    const d = parseKindDownArgs(['--out-dir', 'o', '--keep-registry'], { cwd: tmp });
    expect(d).toMatchObject({ help: false, clusterName: 'kind', outDir: path.join(tmp, 'o'), keepRegistry: true });
  });
});

describe('kind-up / kind-down command line', () => {
  it('--dry-run prints exactly the plan and runs nothing (not even kubectl version)', async () => {
    const log = path.join(tmp, 'dry.log');
    const out = path.join(tmp, 'dry-out');
    const r = await script('kind-up', ['--substrate-dir', substrate, '--out-dir', out, '--cluster-name', 'ate', '--dry-run'], { STUB_LOG: log });
    expect(r.exitCode).toBe(0);
    const expected = formatPlan(buildKindUpPlan(upOptions({ substrateDir: substrate, outDir: out })));
    expect(r.stdout).toBe(expected);
    expect(r.stdout.trimEnd().split('\n').every((l) => l.startsWith('+ '))).toBe(true);
    expect(stubLog(log)).toEqual([]);
    expect(fs.existsSync(out)).toBe(false);

    const down = await script('kind-down', ['--out-dir', out, '--cluster-name', 'ate', '--dry-run'], { STUB_LOG: log });
    expect(down.exitCode).toBe(0);
    expect(down.stdout.split('\n')).toEqual([
      `+ kill $(cat ${out}/port-forward-api.pid)`,
      `+ kill $(cat ${out}/port-forward-router.pid)`,
      '+ kind delete cluster --name ate',
      '+ docker rm -f kind-registry || true',
      `+ rm -f ${['api-token', 'kubeconfig', 'api-ca.pem', 'driver.toml', 'namespace.yaml', 'port-forward-api.pid', 'port-forward-api.log', 'port-forward-router.pid', 'port-forward-router.log'].map((f) => `${out}/${f}`).join(' ')}`,
      '',
    ]);
    const keep = await script('kind-down', ['--out-dir', out, '--keep-registry', '--dry-run']);
    expect(keep.stdout).not.toContain('docker');
    expect(stubLog(log)).toEqual([]);
  });

  it('rejects bad arguments with exit 2 and a message, before doing anything', async () => {
    const cases: Array<[string[], string]> = [
      [['--dry-run'], '--substrate-dir DIR is required'],
      [['--substrate-dir', path.join(tmp, 'nope'), '--dry-run'], 'does not exist'],
      [['--substrate-dir', stubBin, '--dry-run'], 'does not look like an Agent Substrate checkout: missing hack/create-kind-cluster.sh, hack/install-ate-kind.sh'],
      [['--substrate-dir', path.join(substrate, 'hack', 'stub.mjs'), '--dry-run'], 'is not a directory'],
      [['--substrate-dir', substrate, '--auth-mode', 'oidc', '--dry-run'], '--auth-mode must be jwt or mtls, got "oidc"'],
      [['--substrate-dir', substrate, '--auth-mode', '--dry-run'], '--auth-mode needs a value'],
      [['--substrate-dir', substrate, '--frobnicate', '--dry-run'], 'unknown option: --frobnicate'],
      [['--substrate-dir', substrate, 'extra', '--dry-run'], 'unexpected 1 positional argument'],
      [['--substrate-dir', substrate, '--cluster-name', 'Bad_Name', '--dry-run'], '--cluster-name "Bad_Name" is not valid'],
      [['--substrate-dir', substrate, '--api-port', '70000', '--dry-run'], '--api-port must be a port number'],
      [['--substrate-dir', substrate, '--api-port', '9000', '--router-port', '9000', '--dry-run'], 'must differ'],
      [['--substrate-dir', substrate, '--token-duration', '5m', '--dry-run'], 'at least 10m'],
      [['--substrate-dir', substrate, '--token-duration', 'soon', '--dry-run'], 'is not a duration'],
      [['--substrate-dir', substrate, '--namespace', 'ate-system', '--dry-run'], 'must not be ate-system'],
      [['--substrate-dir', substrate, '--dry-run', '--dry-run=maybe'], '--dry-run'],
    ];
    const log = path.join(tmp, 'args.log');
    const results = await Promise.all(cases.map(([args]) => script('kind-up', args, { STUB_LOG: log })));
    for (const [i, [args, msg]] of cases.entries()) {
      const r = results[i]!;
      expect(r.exitCode, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toContain(msg);
      expect(r.stderr).toContain("run 'node scripts/kind-up.mjs --help' for usage");
      expect(r.stdout).toBe('');
    }
    const down = await script('kind-down', ['--substrate-dir', substrate]);
    expect(down.exitCode).toBe(2);
    expect(down.stderr).toContain('unknown option: --substrate-dir');
    expect(stubLog(log)).toEqual([]);
  });

  it('--help on both scripts', async () => {
    const up = await script('kind-up', ['--help']);
    expect(up.exitCode).toBe(0);
    expect(up.stdout).toContain('usage: node scripts/kind-up.mjs --substrate-dir DIR');
    const down = await script('kind-down', ['-h']);
    expect(down.exitCode).toBe(0);
    expect(down.stdout).toContain('usage: node scripts/kind-down.mjs');
  });

  it('without the tools, fails listing each missing one with its remedy, and does nothing', async () => {
    const out = path.join(tmp, 'prereq-out');
    const r = await execa(process.execPath, [path.join(REPO_ROOT, 'scripts/kind-up.mjs'), '--substrate-dir', substrate, '--out-dir', out], {
      reject: false,
      extendEnv: false,
      env: { PATH: nodeOnlyBin, HOME: tmp, NO_COLOR: '1' },
    });
    expect(r.exitCode).toBe(1);
    for (const tool of ['docker', 'kind', 'kubectl', 'ko', 'go']) {
      expect(r.stderr).toContain(`kind-up: ${tool} is not installed (not found on PATH)`);
    }
    expect(r.stderr).toContain('remedy: install Docker Engine');
    expect(r.stderr).toContain('remedy: install kind: go install sigs.k8s.io/kind@latest');
    expect(r.stderr).toContain('remedy: install ko: go install github.com/google/ko@latest');
    expect(r.stderr).toContain('nothing was done');
    expect(r.stdout).toBe('');
    expect(fs.existsSync(out)).toBe(false);
  });

  it('with the Docker engine down, says so and runs nothing but `docker info`', async () => {
    const out = path.join(tmp, 'docker-down-out');
    const log = path.join(tmp, 'docker-down.log');
    for (const name of ['kind-up', 'kind-down'] as const) {
      const r = await script(name, name === 'kind-up' ? ['--substrate-dir', substrate, '--out-dir', out] : ['--out-dir', out], {
        STUB_LOG: log,
        STUB_FAIL: 'docker-info',
      });
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain(`${name}: the Docker engine is not reachable ('docker info' failed: Cannot connect to the Docker daemon`);
      expect(r.stderr).toContain('remedy: start the engine');
      expect(r.stderr).not.toContain('is not installed');
    }
    expect(stubLog(log).map((e) => `${e.tool} ${e.args[0]}`)).toEqual(['docker info', 'docker info']);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('refuses an existing cluster of the same name and a busy local port, before doing anything', async () => {
    const log = path.join(tmp, 'exists.log');
    const out = path.join(tmp, 'exists-out');
    const r = await script('kind-up', ['--substrate-dir', substrate, '--out-dir', out, '--cluster-name', 'ate'], { STUB_LOG: log, STUB_KIND_CLUSTERS: 'other,ate' });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('kind cluster "ate" already exists');
    expect(r.stderr).toContain('kind-down.mjs --cluster-name ate');

    const busy = net.createServer();
    await new Promise<void>((res) => busy.listen(0, '127.0.0.1', res));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const r2 = await script('kind-up', ['--substrate-dir', substrate, '--out-dir', out, '--api-port', String(port)], { STUB_LOG: log });
      expect(r2.exitCode).toBe(1);
      expect(r2.stderr).toContain(`127.0.0.1:${port} is already in use`);
    } finally {
      busy.close();
    }
    expect(stubLog(log).map((e) => `${e.tool} ${e.args.slice(0, 2).join(' ')}`)).toEqual([
      'docker info --format',
      'kind get clusters',
      'docker info --format',
      'kind get clusters',
    ]);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe('kind-up then kind-down against the recording toolchain', () => {
  it('runs every step in order, writes the files with their modes, and tears it all down', async () => {
    const out = path.join(tmp, 'full-out');
    const log = path.join(tmp, 'full.log');
    const [apiPort, routerPort] = [await freePort(), await freePort()];
    const args = ['--substrate-dir', substrate, '--out-dir', out, '--cluster-name', 'ate', '--api-port', String(apiPort), '--router-port', String(routerPort)];
    const up = await script('kind-up', args, { STUB_LOG: log });
    const apiPidFile = path.join(out, 'port-forward-api.pid');
    const routerPidFile = path.join(out, 'port-forward-router.pid');
    for (const f of [apiPidFile, routerPidFile]) if (fs.existsSync(f)) startedPids.push(Number(fs.readFileSync(f, 'utf8')));
    expect(up.stderr).not.toContain('error');
    expect(up.exitCode).toBe(0);

    // Every command, in plan order, with the environment and working directory the plan gives it.
    const calls = stubLog(log);
    const kubectlPrefix = ['--kubeconfig', path.join(out, 'kubeconfig'), '--context', 'kind-ate'];
    expect(calls.map((c) => [c.tool, ...c.args.filter((a) => !kubectlPrefix.includes(a))].slice(0, 6).join(' '))).toEqual([
      'docker info --format {{.ServerVersion}}',
      'kind get clusters',
      'create-kind-cluster.sh',
      'kind get kubeconfig --name ate',
      'install-ate-kind.sh --deploy-ate-system --auth-mode=jwt',
      'kubectl -n ate-system rollout status deployment/ate-api-server-deployment',
      'kubectl -n ate-system rollout status deployment/ate-controller',
      'kubectl -n ate-system rollout status deployment/atenet-router',
      'kubectl -n ate-system rollout status statefulset/valkey-cluster',
      'kubectl -n ate-system rollout status daemonset/atelet',
      'kubectl get clustertrustbundle servicedns.podcert.ate.dev:identity:primary-bundle -o jsonpath={.spec.trustBundle}',
      'kubectl create token ate-client -n ate-system',
      'kubectl apply -f ' + path.join(out, 'namespace.yaml'),
      `kubectl port-forward -n ate-system svc/api ${apiPort}:443`,
      `kubectl port-forward -n ate-system svc/atenet-router ${routerPort}:80`,
    ]);
    const create = calls.find((c) => c.tool === 'create-kind-cluster.sh')!;
    expect(create.cwd).toBe(substrate);
    expect(create.env).toEqual({ KIND_CLUSTER_NAME: 'ate', KUBECONFIG: null });
    const install = calls.find((c) => c.tool === 'install-ate-kind.sh')!;
    expect(install.cwd).toBe(substrate);
    expect(install.env).toEqual({ KIND_CLUSTER_NAME: 'ate', KUBECONFIG: path.join(out, 'kubeconfig') });
    expect(calls.filter((c) => c.args.includes('port-forward')).map((c) => c.args.slice(-3))).toEqual([
      [`${apiPort}:443`, '--address', '127.0.0.1'],
      [`${routerPort}:80`, '--address', '127.0.0.1'],
    ]);

    // Files and modes; the token is only in its 0600 file, never on stdout or stderr.
    const mode = (f: string) => fs.statSync(path.join(out, f)).mode & 0o777;
    expect(fs.statSync(out).mode & 0o777).toBe(0o700);
    expect(mode('kubeconfig')).toBe(0o600);
    expect(mode('api-token')).toBe(0o600);
    expect(fs.readFileSync(path.join(out, 'api-token'), 'utf8')).toBe('stub-sa-token-0123456789');
    expect(fs.readFileSync(path.join(out, 'api-ca.pem'), 'utf8')).toContain('BEGIN CERTIFICATE');
    expect(up.stdout + up.stderr).not.toContain('stub-sa-token');
    const cfg = loadConfig({ flags: { config: path.join(out, 'driver.toml') }, env: {} });
    expect(cfg).toMatchObject({
      apiEndpoint: `127.0.0.1:${apiPort}`,
      apiTlsCaPath: path.join(out, 'api-ca.pem'),
      apiBearerTokenPath: path.join(out, 'api-token'),
      routerUrl: `http://127.0.0.1:${routerPort}`,
      kubeconfig: path.join(out, 'kubeconfig'),
      kubeContext: 'kind-ate',
      defaultNamespace: 'openshell-sandboxes',
    });
    expect(up.stdout).toContain(`driver config  ${path.join(out, 'driver.toml')}`);
    expect(up.stdout).toContain(`node scripts/kind-down.mjs --cluster-name ate --out-dir ${out}`);

    // The port-forwards run in the background, listen on loopback, and outlive kind-up.
    const pids = [apiPidFile, routerPidFile].map((f) => Number(fs.readFileSync(f, 'utf8')));
    for (const pid of pids) expect(processAlive(pid)).toBe(true);
    for (const port of [apiPort, routerPort]) {
      await new Promise<void>((res, rej) => {
        const s = net.connect({ host: '127.0.0.1', port }, () => {
          s.destroy();
          res();
        });
        s.once('error', rej);
      });
    }

    // kind-up refuses to run again while the ports are taken.
    const again = await script('kind-up', args, { STUB_LOG: path.join(tmp, 'again.log') });
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toContain('is already in use');

    const downLog = path.join(tmp, 'down.log');
    const down = await script('kind-down', ['--out-dir', out, '--cluster-name', 'ate'], { STUB_LOG: downLog });
    expect(down.stderr).not.toContain('error');
    expect(down.exitCode).toBe(0);
    for (const pid of pids) expect(processAlive(pid)).toBe(false);
    expect(stubLog(downLog).map((c) => `${c.tool} ${c.args.join(' ')}`)).toEqual([
      'docker info --format {{.ServerVersion}}',
      'kind delete cluster --name ate',
      'docker rm -f kind-registry',
    ]);
    expect(fs.readdirSync(out)).toEqual([]);

    // A second teardown finds nothing to stop and says so, without failing.
    const down2 = await script('kind-down', ['--out-dir', out, '--cluster-name', 'ate', '--keep-registry']);
    expect(down2.exitCode).toBe(0);
    expect(down2.stderr).toContain('no pid file');
  });

  it('stops at a failing step, names it, leaves no port-forward behind, and never kills a pid that is not a port-forward', async () => {
    const out = path.join(tmp, 'fail-out');
    const log = path.join(tmp, 'fail.log');
    const [apiPort, routerPort] = [await freePort(), await freePort()];
    const r = await script(
      'kind-up',
      ['--substrate-dir', substrate, '--out-dir', out, '--api-port', String(apiPort), '--router-port', String(routerPort)],
      { STUB_LOG: log, STUB_FAIL: 'rollout' },
    );
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('step 5/18 failed: wait for deployment/ate-api-server-deployment: kubectl exited with status 1');
    expect(r.stderr).toContain('the setup is partial');
    expect(r.stderr).toContain(`node scripts/kind-down.mjs --cluster-name kind --out-dir ${out}`);
    expect(stubLog(log).some((c) => c.args.includes('port-forward'))).toBe(false);
    expect(fs.existsSync(path.join(out, 'driver.toml'))).toBe(false);

    // A stale pid file pointing at an unrelated live process (this test runner) is left alone.
    fs.writeFileSync(path.join(out, 'port-forward-api.pid'), `${process.pid}\n`);
    const down = await script('kind-down', ['--out-dir', out]);
    expect(down.exitCode).toBe(0);
    expect(down.stderr).toContain(`process ${process.pid} is not a port-forward any more`);
    expect(processAlive(process.pid)).toBe(true);
  });
});
