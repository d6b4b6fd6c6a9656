// scripts/kind-up.mjs and scripts/kind-down.mjs: the checkout check (scripts/lib/kind-checkout.mjs), the exact
// plan (pure, scripts/lib/kind-plan.mjs), --dry-run, argument errors, the prerequisite check, and full runs of the
// executor (scripts/lib/kind-run.mjs).
//
// Docker cannot run on this machine, so nothing here starts a real cluster. The fake Agent Substrate checkout is
// a real git repository (git init, commit, tag v0.4.0) whose hack/ scripts are a recording stub. Its commit can
// never be v0.4.0's 756c2a53…, so tests that need the check to pass set the TEST-ONLY variable
// KIND_UP_TEST_ONLY_EXPECTED_COMMIT to the fake commit (or pass expectedCommit to verifyCheckout directly); the
// tests without it show that the real commit is what a checkout is held to. For the executor runs, the same stub
// stands in for docker, kind, kubectl and go: it logs its argv, cwd and selected environment variables and
// answers as the real tool does for the calls kind-up makes (kind get kubeconfig prints a kubeconfig, kubectl
// create token a token, ko resolve the manifest with the ko:// reference replaced, kubectl port-forward keeps
// running and listens on --address:LOCAL, docker info fails like a stopped engine when asked to). The stubs hold
// the contract's shape; they cannot tell whether Substrate installs.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { parse as parseToml } from 'smol-toml';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/common/config.js';
import { REPO_ROOT } from '../../scripts/lib/cli.mjs';
import { SUBSTRATE_RELEASE, TEST_ONLY_COMMIT_ENV, verifyCheckout } from '../../scripts/lib/kind-checkout.mjs';
import {
  CHILD_ENV_NAMES,
  KIND_UP_DEFAULTS,
  KIND_UP_HELP,
  buildKindDownPlan,
  buildKindUpPlan,
  formatPlan,
  goArch,
  kindUpPlanHeader,
  parseKindDownArgs,
  parseKindUpArgs,
  renderDriverConfig,
  renderWorkerPoolManifest,
  type KindUpOptions,
} from '../../scripts/lib/kind-plan.mjs';
import { processAlive, runStep } from '../../scripts/lib/kind-run.mjs';

const RELEASE_COMMIT = '756c2a53741121e728f4cc3066c8a19e575b4919';

let tmp: string;
let substrate: string; // fake checkout: git repo, tag v0.4.0 (annotated) on its only commit
let fakeCommit: string;
let stubBin: string; // stub toolchain + node + git
let nodeOnlyBin: string; // only node and git
const startedPids: number[] = [];

const STUB = `#!/usr/bin/env node
// Stand-in for docker/kind/kubectl/go and Substrate's hack scripts (see the test file's header).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
const tool = path.basename(process.argv[1]);
const args = process.argv.slice(2);
// Controls come from $HOME/stub.json: HOME is one of the few variables kind-up passes on, STUB_* are not.
let ctl = {};
try { ctl = JSON.parse(fs.readFileSync(path.join(process.env.HOME ?? '/nonexistent', 'stub.json'), 'utf8')); } catch {}
const log = ctl.STUB_LOG;
const ENV = ['KIND_CLUSTER_NAME', 'KUBECONFIG', 'KO_DOCKER_REPO', 'KO_DEFAULTPLATFORMS', 'KUBECTL_CONTEXT', 'ATE_CONFIG', 'SECRET_CANARY', 'DOCKER_HOST'];
if (log) {
  fs.appendFileSync(log, JSON.stringify({ tool, args, cwd: process.cwd(),
    env: Object.fromEntries(ENV.map((k) => [k, process.env[k] ?? null])) }) + '\\n');
}
const fail = (ctl.STUB_FAIL ?? '').split(',');
switch (tool) {
  case 'docker':
    if (args[0] === 'info') {
      if (fail.includes('docker-info')) {
        process.stderr.write('Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\\n');
        process.exit(1);
      }
      process.stdout.write('27.3.1\\n');
    } else if (args[0] === 'ps') {
      if (ctl.STUB_REGISTRY === 'labelled') process.stdout.write('0123456789ab\\n');
    }
    process.exit(0);
  case 'kind':
    if (args[0] === 'get' && args[1] === 'clusters') {
      const existing = (ctl.STUB_KIND_CLUSTERS ?? '').split(',').filter(Boolean);
      if (existing.length === 0) process.stderr.write('No kind clusters found.\\n');
      else process.stdout.write(existing.join('\\n') + '\\n');
    } else if (args[0] === 'get' && args[1] === 'kubeconfig') {
      process.stdout.write('apiVersion: v1\\nkind: Config\\ncurrent-context: kind-' + args[3] + '\\n');
    }
    process.exit(0);
  case 'run-tool.sh': {
    // ./hack/run-tool.sh ko resolve -f FILE: the manifest with its ko:// reference replaced by a pushed image
    const file = args[args.indexOf('-f') + 1];
    const text = fs.readFileSync(file, 'utf8');
    process.stdout.write(text.replace(/ko:\\/\\/[^\\s]+/g, 'localhost:5001/ateom-gvisor@sha256:' + 'ab'.repeat(32)));
    process.exit(0);
  }
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
    if (args.includes('clustertrustbundles')) {
      process.stdout.write('-----BEGIN CERTIFICATE-----\\nMIIBstub\\n-----END CERTIFICATE-----\\n');
    } else if (args.includes('create') && args.includes('token')) {
      process.stdout.write('stub-sa-token-0123456789');
    } else if (args.includes('sandboxconfigs.ate.dev')) {
      process.stdout.write('sandboxconfig.ate.dev/gvisor-default\\n');
    } else if (args.includes('apply')) {
      process.stdout.write('configured\\n');
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

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', ['-c', 'user.name=test', '-c', 'user.email=test@example.invalid', '-c', 'init.defaultBranch=main', ...args], {
    cwd,
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmp, GIT_CONFIG_NOSYSTEM: '1' },
  }).trim();
}

/** A fake Agent Substrate checkout: the three hack/ scripts upstream has, committed and tagged `tag`. */
function makeCheckout(dir: string, tag: string): string {
  // Symlinks to the stub (git stores them as such): node runs a file by its real name, and '.sh' is not a module.
  write(path.join(dir, 'hack', 'stub.mjs'), STUB);
  for (const s of ['create-kind-cluster.sh', 'install-ate-kind.sh', 'run-tool.sh']) fs.symlinkSync('stub.mjs', path.join(dir, 'hack', s));
  write(path.join(dir, 'README.md'), 'fake agent-substrate checkout\n', 0o644);
  git(dir, 'init', '-q');
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '-m', 'fake release');
  git(dir, 'tag', '-a', tag, '-m', tag);
  return git(dir, 'rev-parse', 'HEAD');
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kind-test-'));
  stubBin = path.join(tmp, 'stub-bin');
  nodeOnlyBin = path.join(tmp, 'node-bin');
  const realGit = execFileSync('sh', ['-c', 'command -v git'], { encoding: 'utf8' }).trim();
  write(path.join(stubBin, 'stub.mjs'), STUB);
  for (const t of ['docker', 'kind', 'kubectl', 'go']) fs.symlinkSync('stub.mjs', path.join(stubBin, t));
  fs.symlinkSync(process.execPath, path.join(stubBin, 'node'));
  fs.symlinkSync(realGit, path.join(stubBin, 'git'));
  fs.mkdirSync(nodeOnlyBin);
  fs.symlinkSync(process.execPath, path.join(nodeOnlyBin, 'node'));
  fs.symlinkSync(realGit, path.join(nodeOnlyBin, 'git'));
  substrate = path.join(tmp, 'substrate');
  fakeCommit = makeCheckout(substrate, 'v0.4.0');
});

afterAll(() => {
  for (const pid of startedPids) {
    if (processAlive(pid)) process.kill(pid, 'SIGKILL');
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

let homes = 0;
/**
 * Run a script with exactly `env` (plus PATH, NO_COLOR and a fresh HOME). STUB_* entries are written to
 * $HOME/stub.json for the stubs, and also left in the environment, where kind-up must not pass them on.
 */
function script(name: 'kind-up' | 'kind-down', args: string[], env: Record<string, string> = {}, bin = stubBin) {
  const home = path.join(tmp, `home-${++homes}`);
  fs.mkdirSync(home);
  fs.writeFileSync(path.join(home, 'stub.json'), JSON.stringify(Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('STUB_')))));
  return execa(process.execPath, [path.join(REPO_ROOT, `scripts/${name}.mjs`), ...args], {
    cwd: tmp,
    reject: false,
    stripFinalNewline: false,
    extendEnv: false,
    env: { PATH: `${bin}:/usr/bin:/bin`, HOME: home, NO_COLOR: '1', ...env },
  });
}

/** kind-up with the TEST-ONLY expected commit set to the fake checkout's commit. */
function up(args: string[], env: Record<string, string> = {}) {
  return script('kind-up', args, { [TEST_ONLY_COMMIT_ENV]: fakeCommit, ...env });
}

type Call = { tool: string; args: string[]; cwd: string; env: Record<string, string | null> };
function stubLog(file: string): Call[] {
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
    namespace: 'openshell-sandboxes',
    workerPool: 'openshell',
    workers: 1,
    apiPort: 8080,
    routerPort: 8000,
    tokenDuration: '24h',
    timeout: '600s',
    goarch: 'amd64',
    allowDirty: false,
    verifyCheckout: true,
    dryRun: true,
    ...over,
  };
}

describe('checkout check (read-only git)', () => {
  it('the release it holds a checkout to is v0.4.0 at 756c2a53', () => {
    expect(SUBSTRATE_RELEASE).toEqual({ tag: 'v0.4.0', commit: RELEASE_COMMIT, repo: 'https://github.com/agent-substrate/substrate' });
  });

  it('accepts the right commit and tag (expected commit injected), and reports what it found', () => {
    const r = verifyCheckout(substrate, { expectedCommit: fakeCommit });
    expect(r).toEqual({ ok: true, head: fakeCommit, tags: ['v0.4.0'], dirty: [] });
  });

  it('refuses another commit with the release commit in the message and how to get the checkout', () => {
    const r = verifyCheckout(substrate); // held to the real 756c2a53
    expect(r.ok).toBe(false);
    const problem = (r as { problem: string }).problem;
    expect(problem).toContain(`is at commit ${fakeCommit} (tags v0.4.0), not Agent Substrate v0.4.0 (commit ${RELEASE_COMMIT})`);
    expect(problem).toContain(`git clone https://github.com/agent-substrate/substrate ${substrate} && git -C ${substrate} checkout v0.4.0`);
  });

  it('refuses the right commit without the v0.4.0 tag', () => {
    const other = path.join(tmp, 'other-tag');
    const commit = makeCheckout(other, 'v0.3.0');
    const r = verifyCheckout(other, { expectedCommit: commit });
    expect(r.ok).toBe(false);
    expect((r as { problem: string }).problem).toContain(`is at commit ${commit}, but no tag v0.4.0 points at it (tags v0.3.0)`);
  });

  it('refuses changed tracked files unless allowDirty; untracked files do not count', () => {
    const dirty = path.join(tmp, 'dirty');
    git(tmp, 'clone', '-q', substrate, dirty);
    fs.writeFileSync(path.join(dirty, 'untracked.txt'), 'x');
    expect(verifyCheckout(dirty, { expectedCommit: fakeCommit }).ok).toBe(true);
    fs.appendFileSync(path.join(dirty, 'README.md'), 'local change\n');
    const r = verifyCheckout(dirty, { expectedCommit: fakeCommit });
    expect(r.ok).toBe(false);
    expect((r as { problem: string }).problem).toContain('is v0.4.0 but has changes to tracked files (README.md)');
    expect((r as { problem: string }).problem).toContain('--allow-dirty');
    expect(verifyCheckout(dirty, { expectedCommit: fakeCommit, allowDirty: true })).toEqual({ ok: true, head: fakeCommit, tags: ['v0.4.0'], dirty: ['README.md'] });
  });

  it('refuses a missing directory, a non-checkout, and a directory that is not the root of its repository', () => {
    expect((verifyCheckout(path.join(tmp, 'absent')) as { problem: string }).problem).toContain('does not exist');
    const plain = path.join(tmp, 'plain');
    for (const s of ['create-kind-cluster.sh', 'install-ate-kind.sh', 'run-tool.sh']) write(path.join(plain, 'hack', s), STUB);
    expect((verifyCheckout(plain) as { problem: string }).problem).toContain('is not a git checkout');
    expect((verifyCheckout(stubBin) as { problem: string }).problem).toContain(
      'does not look like an Agent Substrate checkout: missing hack/create-kind-cluster.sh, hack/install-ate-kind.sh, hack/run-tool.sh',
    );
    const nested = path.join(substrate, 'nested');
    for (const s of ['create-kind-cluster.sh', 'install-ate-kind.sh', 'run-tool.sh']) write(path.join(nested, 'hack', s), STUB);
    try {
      expect((verifyCheckout(nested, { expectedCommit: fakeCommit }) as { problem: string }).problem).toContain(`is inside the git repository ${substrate}`);
    } finally {
      fs.rmSync(nested, { recursive: true, force: true });
    }
  });
});

describe('kind-up plan (pure)', () => {
  it('is exactly upstream\'s kind install of v0.4.0, then the WorkerPool, CA, token, port-forwards and driver config', () => {
    const k = 'kubectl --kubeconfig /out/kubeconfig --context kind-ate';
    expect(formatPlan(buildKindUpPlan(upOptions())).split('\n')).toEqual([
      '+ mkdir -p -m 700 /out',
      '+ cd /src/substrate && KIND_CLUSTER_NAME=ate KUBECONFIG=/out/kubeconfig ./hack/create-kind-cluster.sh  # limit 20m',
      '+ kind get kubeconfig --name ate > /out/kubeconfig  # limit 2m',
      `+ cd /src/substrate && KIND_CLUSTER_NAME=ate KUBECONFIG=/out/kubeconfig ./hack/install-ate-kind.sh --deploy-ate-system '--credential-provider={"name":"k8s.io"}' --rollout-timeout 600s  # limit 60m`,
      `+ ${k} -n ate-system wait deployment --all --for=condition=Available --timeout=600s  # limit 11m`,
      `+ ${k} -n ate-system rollout status statefulset/postgres --timeout=600s  # limit 11m`,
      `+ ${k} -n ate-system rollout status daemonset --selector=app=atelet --timeout=600s  # limit 11m`,
      `+ ${k} -n podcertificate-controller-system wait deployment --all --for=condition=Available --timeout=600s  # limit 11m`,
      `+ ${k} get sandboxconfigs.ate.dev gvisor-default -o name  # limit 2m`,
      `+ ${k} get clustertrustbundles --selector=podcert.ate.dev/canarying=live --field-selector=spec.signerName=servicedns.podcert.ate.dev/identity -o 'jsonpath={range .items[*]}{.spec.trustBundle}{"\\n"}{end}' > /out/api-ca.pem  # limit 2m`,
      `+ ${k} create token ate-client -n ate-system --audience api.ate-system.svc --duration 24h > /out/api-token  # limit 2m`,
      '+ write-file /out/namespace.yaml --mode 0644  # Namespace openshell-sandboxes',
      `+ ${k} apply -f /out/namespace.yaml  # limit 2m`,
      '+ write-file /out/workerpool.yaml --mode 0644  # WorkerPool openshell-sandboxes/openshell',
      '+ cd /src/substrate && KO_DOCKER_REPO=localhost:5001 KO_DEFAULTPLATFORMS=linux/amd64 ./hack/run-tool.sh ko resolve -f /out/workerpool.yaml > /out/workerpool.resolved.yaml  # limit 30m',
      `+ ${k} apply -f /out/workerpool.resolved.yaml  # limit 2m`,
      `+ ${k} -n openshell-sandboxes wait workerpool.ate.dev/openshell '--for=jsonpath={.status.readyReplicas}=1' --timeout=600s  # limit 11m`,
      `+ ${k} port-forward -n ate-system svc/api 8080:443 --address 127.0.0.1 > /out/port-forward-api.log 2>&1 & echo $! > /out/port-forward-api.pid`,
      '+ wait-for-tcp 127.0.0.1:8080 --timeout 30s',
      `+ ${k} port-forward -n ate-system svc/atenet-router 8000:80 --address 127.0.0.1 > /out/port-forward-router.log 2>&1 & echo $! > /out/port-forward-router.pid`,
      '+ wait-for-tcp 127.0.0.1:8000 --timeout 30s',
      '+ write-file /out/driver.toml --mode 0644  # driver config',
      '',
    ]);
  });

  it('runs the upstream scripts from the checkout, in order, with exactly the environment they need', () => {
    const plan = buildKindUpPlan(upOptions({ timeout: '15m', goarch: 'arm64' }));
    const upstream = plan.filter((s) => s.type === 'run' && s.cwd === '/src/substrate');
    expect(upstream.map((s) => s.type === 'run' && [s.argv, s.env])).toEqual([
      [['./hack/create-kind-cluster.sh'], { KIND_CLUSTER_NAME: 'ate', KUBECONFIG: '/out/kubeconfig' }],
      [
        ['./hack/install-ate-kind.sh', '--deploy-ate-system', '--credential-provider={"name":"k8s.io"}', '--rollout-timeout', '15m'],
        { KIND_CLUSTER_NAME: 'ate', KUBECONFIG: '/out/kubeconfig' },
      ],
      [['./hack/run-tool.sh', 'ko', 'resolve', '-f', '/out/workerpool.yaml'], { KO_DOCKER_REPO: 'localhost:5001', KO_DEFAULTPLATFORMS: 'linux/arm64' }],
    ]);
    // Every step that waits or may hang is bounded: its own --timeout and the executor's limit above it.
    for (const s of plan) {
      if (s.type === 'run') expect(s.timeoutSecs, s.argv.join(' ')).toBeGreaterThan(0);
      if (s.type === 'run' && (s.argv.includes('wait') || s.argv.includes('rollout'))) {
        expect(s.argv).toContain('--timeout=15m');
        expect(s.timeoutSecs).toBe(15 * 60 + 60);
      }
    }
    // The token and kubeconfig are private files; no step passes a secret on a command line.
    const byPath = (p: string) => plan.find((s) => s.type === 'run' && s.stdoutTo?.path === p);
    expect(byPath('/out/api-token')).toMatchObject({ stdoutTo: { mode: 0o600, nonEmpty: true } });
    expect(byPath('/out/kubeconfig')).toMatchObject({ stdoutTo: { mode: 0o600, nonEmpty: true } });
  });

  it('writes a WorkerPool in v0.4.0\'s shape: replicas, workerImage (ko reference to ateom-gvisor), sandboxClass', () => {
    const o = upOptions({ namespace: 'sbx', workerPool: 'pool-a', workers: 3 });
    const wp = parseYaml(renderWorkerPoolManifest(o));
    expect(wp).toEqual({
      apiVersion: 'ate.dev/v1alpha1',
      kind: 'WorkerPool',
      metadata: { name: 'pool-a', namespace: 'sbx', labels: { 'app.kubernetes.io/managed-by': 'openshell-driver-substrate' } },
      spec: { replicas: 3, workerImage: 'ko://github.com/agent-substrate/substrate/cmd/ateom-gvisor', sandboxClass: 'gvisor' },
    });
    // The plan writes exactly this manifest and waits for that many ready workers of that pool.
    const plan = buildKindUpPlan(o);
    expect(plan.find((s) => s.type === 'write' && s.path === '/out/workerpool.yaml')).toMatchObject({ content: renderWorkerPoolManifest(o) });
    expect(formatPlan(plan)).toContain("-n sbx wait workerpool.ate.dev/pool-a '--for=jsonpath={.status.readyReplicas}=3'");
  });

  it('writes a driver config the driver\'s own config loader accepts, always with the token', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'cfg-'));
    const o = upOptions({ outDir: dir, apiPort: 18443, routerPort: 18000 });
    const text = renderDriverConfig(o);
    expect(text).toContain('The driver speaks Substrate v0.4');
    const table = (parseToml(text) as any).openshell.drivers.substrate;
    expect(table).toEqual({
      api_endpoint: '127.0.0.1:18443',
      api_tls_ca_path: path.join(dir, 'api-ca.pem'),
      api_tls_server_name: 'api.ate-system.svc',
      api_bearer_token_path: path.join(dir, 'api-token'),
      default_namespace: 'openshell-sandboxes',
      router_url: 'http://127.0.0.1:18000',
      kubeconfig: path.join(dir, 'kubeconfig'),
      kube_context: 'kind-ate',
    });
    const file = path.join(dir, 'driver.toml');
    fs.writeFileSync(file, text);
    const cfg = loadConfig({ flags: { config: file }, env: {} });
    expect(cfg.apiEndpoint).toBe('127.0.0.1:18443');
    expect(cfg.apiTlsServerName).toBe('api.ate-system.svc');
    expect(cfg.apiBearerTokenPath).toBe(path.join(dir, 'api-token'));
    expect(cfg.kubeContext).toBe('kind-ate');
    expect(cfg.routerUrl).toBe('http://127.0.0.1:18000');
  });

  it('parses defaults, the --cluster alias, and resolves relative paths against the working directory', () => {
    const o = parseKindUpArgs(['--substrate-dir', 'substrate'], { cwd: tmp, arch: 'arm64' });
    expect(o).toMatchObject({ help: false, substrateDir: substrate, ...KIND_UP_DEFAULTS, goarch: 'arm64', allowDirty: false, verifyCheckout: true, dryRun: false });
    expect(KIND_UP_DEFAULTS.outDir).toBe(path.join(REPO_ROOT, '.state', 'kind'));
    expect(parseKindUpArgs(['--substrate-dir', 's', '--cluster-name', 'x'], { cwd: tmp })).toMatchObject({ clusterName: 'x' });
    expect(parseKindUpArgs(['--substrate-dir', 's', '--cluster', 'y', '--no-verify-checkout', '--dry-run'], { cwd: tmp })).toMatchObject({ clusterName: 'y', verifyCheckout: false });
    expect(goArch('x64')).toBe('amd64');
    const d = parseKindDownArgs(['--out-dir', 'o', '--keep-registry', '--cluster', 'ate'], { cwd: tmp });
    expect(d).toMatchObject({ help: false, clusterName: 'ate', outDir: path.join(tmp, 'o'), keepRegistry: true });
  });

  it('kind-down removes the registry only if upstream\'s label is on it, unless --keep-registry', () => {
    const text = formatPlan(buildKindDownPlan({ clusterName: 'ate', outDir: '/out', keepRegistry: false, dryRun: true }));
    expect(text).toContain(
      `+ [ -n "$(docker ps --all --quiet --filter 'name=^kind-registry$' --filter label=created-by=agent-substrate)" ] && docker rm --force kind-registry || true  # limit 2m`,
    );
    expect(formatPlan(buildKindDownPlan({ clusterName: 'ate', outDir: '/out', keepRegistry: true, dryRun: true }))).not.toContain('docker');
  });
});

describe('kind-up / kind-down command line', () => {
  it('--dry-run checks the checkout read-only, prints exactly the plan with its header, and runs nothing else', async () => {
    const log = path.join(tmp, 'dry.log');
    const out = path.join(tmp, 'dry-out');
    // GIT_DIR in the operator's shell must not redirect the check to another repository.
    const r = await up(['--substrate-dir', substrate, '--out-dir', out, '--cluster', 'ate', '--dry-run'], { STUB_LOG: log, GIT_DIR: path.join(tmp, 'elsewhere') });
    expect(r.stderr).toContain(`WARNING: ${TEST_ONLY_COMMIT_ENV} is set`);
    expect(r.exitCode).toBe(0);
    const opts = upOptions({ substrateDir: substrate, outDir: out, goarch: goArch() });
    const header = [
      `kind-up: Agent Substrate v0.4.0 (${RELEASE_COMMIT}) on kind cluster "ate" from ${substrate}`,
      `checkout: HEAD ${fakeCommit}, tag v0.4.0, no changes to tracked files (verified read-only with git)`,
      `checkout: TEST-ONLY expected commit from ${TEST_ONLY_COMMIT_ENV}; this is not the released v0.4.0`,
      `child environment: only ${CHILD_ENV_NAMES.join(' ')} (each when set), plus the NAME=value pairs a step shows`,
    ];
    expect(kindUpPlanHeader(opts, { verified: true, head: fakeCommit, tags: ['v0.4.0'], dirty: [], testOverride: true })).toEqual(header);
    expect(r.stdout).toBe(formatPlan(buildKindUpPlan(opts), header));
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines.filter((l) => l.startsWith('# '))).toHaveLength(4);
    expect(lines.slice(4).every((l) => l.startsWith('+ '))).toBe(true);
    expect(r.stdout).not.toContain('stub-sa-token');
    expect(stubLog(log)).toEqual([]);
    expect(fs.existsSync(out)).toBe(false);

    // Without a checkout at all, for tests: --dry-run --no-verify-checkout.
    const nv = await script('kind-up', ['--substrate-dir', path.join(tmp, 'no-such-checkout'), '--out-dir', out, '--dry-run', '--no-verify-checkout'], { STUB_LOG: log });
    expect(nv.exitCode).toBe(0);
    expect(nv.stdout.split('\n')[1]).toBe('# checkout: NOT verified (--no-verify-checkout, dry run only)');
    expect(nv.stdout).toContain(`cd ${path.join(tmp, 'no-such-checkout')} && KIND_CLUSTER_NAME=kind`);
    expect(stubLog(log)).toEqual([]);
  });

  it('refuses a checkout at another commit or tag, or with changes, with exit 2 and how to get the right one', async () => {
    // The real release commit is what a checkout is held to when the test-only variable is not set.
    const real = await script('kind-up', ['--substrate-dir', substrate, '--dry-run']);
    expect(real.exitCode).toBe(2);
    expect(real.stdout).toBe('');
    expect(real.stderr).toContain(`kind-up: --substrate-dir ${substrate} is at commit ${fakeCommit} (tags v0.4.0), not Agent Substrate v0.4.0 (commit ${RELEASE_COMMIT})`);
    expect(real.stderr).toContain(`remedy: get it with: git clone https://github.com/agent-substrate/substrate ${substrate} && git -C ${substrate} checkout v0.4.0`);

    const v3 = path.join(tmp, 'cli-v0.3.0');
    const v3commit = makeCheckout(v3, 'v0.3.0');
    const wrongTag = await script('kind-up', ['--substrate-dir', v3, '--dry-run'], { [TEST_ONLY_COMMIT_ENV]: v3commit });
    expect(wrongTag.exitCode).toBe(2);
    expect(wrongTag.stderr).toContain('but no tag v0.4.0 points at it (tags v0.3.0)');

    const dirty = path.join(tmp, 'cli-dirty');
    git(tmp, 'clone', '-q', substrate, dirty);
    fs.appendFileSync(path.join(dirty, 'README.md'), 'local edit\n');
    const refused = await up(['--substrate-dir', dirty, '--dry-run']);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain('has changes to tracked files (README.md)');
    const allowed = await up(['--substrate-dir', dirty, '--dry-run', '--allow-dirty']);
    expect(allowed.exitCode).toBe(0);
    expect(allowed.stdout).toContain('# checkout: HEAD ' + fakeCommit + ', tag v0.4.0, 1 changed tracked file(s), accepted by --allow-dirty');

    const badOverride = await script('kind-up', ['--substrate-dir', substrate, '--dry-run'], { [TEST_ONLY_COMMIT_ENV]: 'abc' });
    expect(badOverride.exitCode).toBe(2);
    expect(badOverride.stderr).toContain(`${TEST_ONLY_COMMIT_ENV} must be a full 40-digit lowercase commit hash`);
  });

  it('rejects bad arguments with exit 2 and a message, before doing anything', async () => {
    const cases: Array<[string[], string]> = [
      [['--dry-run'], '--substrate-dir DIR is required'],
      [['--substrate-dir', substrate, '--no-verify-checkout'], '--no-verify-checkout is only allowed with --dry-run'],
      [['--substrate-dir', substrate, '--auth-mode', 'jwt', '--dry-run'], '--auth-mode was removed'],
      [['--substrate-dir', substrate, '--frobnicate', '--dry-run'], 'unknown option: --frobnicate'],
      [['--substrate-dir', substrate, 'extra', '--dry-run'], 'unexpected 1 positional argument'],
      [['--substrate-dir', substrate, '--cluster', 'Bad_Name', '--dry-run'], '--cluster "Bad_Name" is not valid'],
      [['--substrate-dir', substrate, '--cluster', 'a', '--cluster-name', 'b', '--dry-run'], 'give --cluster or --cluster-name, not both'],
      [['--substrate-dir', substrate, '--cluster', '--dry-run'], '--cluster needs a value'],
      [['--substrate-dir', substrate, '--workers', '0', '--dry-run'], '--workers must be a whole number from 1 to 50'],
      [['--substrate-dir', substrate, '--worker-pool', 'Pool!', '--dry-run'], '--worker-pool "Pool!" is not a valid name'],
      [['--substrate-dir', substrate, '--api-port', '70000', '--dry-run'], '--api-port must be a port number'],
      [['--substrate-dir', substrate, '--api-port', '9000', '--router-port', '9000', '--dry-run'], 'must differ'],
      [['--substrate-dir', substrate, '--token-duration', '5m', '--dry-run'], 'at least 10m'],
      [['--substrate-dir', substrate, '--timeout', '0s', '--dry-run'], 'is not a positive duration'],
      [['--substrate-dir', substrate, '--namespace', 'ate-system', '--dry-run'], 'must not be ate-system'],
      [['--substrate-dir', substrate, '--dry-run', '--dry-run=maybe'], '--dry-run'],
    ];
    const log = path.join(tmp, 'args.log');
    const results = await Promise.all(cases.map(([args]) => up(args, { STUB_LOG: log })));
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

  it('--help documents every flag, the checkout it wants, and that the driver speaks v0.4', async () => {
    const upHelp = await script('kind-up', ['--help']);
    expect(upHelp.exitCode).toBe(0);
    expect(upHelp.stdout).toBe(KIND_UP_HELP);
    for (const flag of [
      '--substrate-dir DIR', '--cluster NAME', '--cluster-name', '--out-dir DIR', '--namespace NS', '--worker-pool NAME', '--workers N',
      '--api-port PORT', '--router-port PORT', '--token-duration DUR', '--timeout DUR', '--allow-dirty', '--dry-run', '--no-verify-checkout', '-h, --help',
      TEST_ONLY_COMMIT_ENV,
    ]) {
      expect(upHelp.stdout, flag).toContain(flag);
    }
    expect(upHelp.stdout).toContain(`git clone https://github.com/agent-substrate/substrate DIR && git -C DIR checkout v0.4.0`);
    expect(upHelp.stdout).toContain(RELEASE_COMMIT);
    expect(upHelp.stdout).toContain("hack/install-ate-kind.sh --deploy-ate-system --credential-provider='{\"name\":\"k8s.io\"}'");
    expect(upHelp.stdout).toContain('The driver speaks Substrate v0.4');
    const downHelp = await script('kind-down', ['-h']);
    expect(downHelp.exitCode).toBe(0);
    for (const flag of ['--cluster NAME', '--cluster-name', '--out-dir DIR', '--keep-registry', '--dry-run', '-h, --help']) expect(downHelp.stdout, flag).toContain(flag);
    expect(downHelp.stdout).toContain('created-by=agent-substrate');
  });

  it('kind-down --dry-run prints exactly its plan and runs nothing', async () => {
    const log = path.join(tmp, 'down-dry.log');
    const out = path.join(tmp, 'down-dry-out');
    const down = await script('kind-down', ['--out-dir', out, '--cluster', 'ate', '--dry-run'], { STUB_LOG: log });
    expect(down.exitCode).toBe(0);
    expect(down.stdout.split('\n')).toEqual([
      `+ kill $(cat ${out}/port-forward-api.pid)`,
      `+ kill $(cat ${out}/port-forward-router.pid)`,
      '+ kind delete cluster --name ate  # limit 5m',
      `+ [ -n "$(docker ps --all --quiet --filter 'name=^kind-registry$' --filter label=created-by=agent-substrate)" ] && docker rm --force kind-registry || true  # limit 2m`,
      `+ rm -f ${[
        'api-token', 'kubeconfig', 'api-ca.pem', 'driver.toml', 'namespace.yaml', 'workerpool.yaml', 'workerpool.resolved.yaml',
        'port-forward-api.pid', 'port-forward-api.log', 'port-forward-router.pid', 'port-forward-router.log',
      ].map((f) => `${out}/${f}`).join(' ')}`,
      '',
    ]);
    const keep = await script('kind-down', ['--out-dir', out, '--keep-registry', '--dry-run', '--cluster-name', 'ate'], { STUB_LOG: log });
    expect(keep.exitCode).toBe(0);
    expect(keep.stdout).not.toContain('docker');
    expect(stubLog(log)).toEqual([]);
  });

  it('without the tools, fails listing each missing one with its remedy, and does nothing', async () => {
    const out = path.join(tmp, 'prereq-out');
    const bare = await script('kind-up', ['--substrate-dir', substrate, '--out-dir', out], { [TEST_ONLY_COMMIT_ENV]: fakeCommit, PATH: nodeOnlyBin });
    expect(bare.exitCode).toBe(1);
    for (const tool of ['docker', 'kind', 'kubectl', 'go']) {
      expect(bare.stderr).toContain(`kind-up: ${tool} is not installed (not found on PATH)`);
    }
    expect(bare.stderr).not.toContain('git is not installed');
    expect(bare.stderr).toContain('remedy: install Docker Engine');
    expect(bare.stderr).toContain('remedy: install kind: go install sigs.k8s.io/kind@latest');
    expect(bare.stderr).toContain('remedy: install Go');
    expect(bare.stderr).toContain('nothing was done');
    expect(bare.stdout).toBe('');
    expect(fs.existsSync(out)).toBe(false);
  });

  it('with the Docker engine down, says so and runs nothing but `docker info`', async () => {
    const out = path.join(tmp, 'docker-down-out');
    const log = path.join(tmp, 'docker-down.log');
    for (const name of ['kind-up', 'kind-down'] as const) {
      const args = name === 'kind-up' ? ['--substrate-dir', substrate, '--out-dir', out] : ['--out-dir', out];
      const r = await script(name, args, { STUB_LOG: log, STUB_FAIL: 'docker-info', [TEST_ONLY_COMMIT_ENV]: fakeCommit });
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toContain(`${name}: the Docker engine is not reachable ('docker info' failed: Cannot connect to the Docker daemon`);
      expect(r.stderr).toContain('remedy: start the engine');
      expect(r.stderr).not.toContain('is not installed');
    }
    expect(stubLog(log).map((e) => `${e.tool} ${e.args[0]}`)).toEqual(['docker info', 'docker info']);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('refuses an existing cluster of the same name (upstream would delete it) and a busy local port, before doing anything', async () => {
    const log = path.join(tmp, 'exists.log');
    const out = path.join(tmp, 'exists-out');
    const ports = ['--api-port', String(await freePort()), '--router-port', String(await freePort())];
    const r = await up(['--substrate-dir', substrate, '--out-dir', out, '--cluster', 'ate', ...ports], { STUB_LOG: log, STUB_KIND_CLUSTERS: 'other,ate' });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('kind cluster "ate" already exists (upstream\'s create-kind-cluster.sh would delete it)');
    expect(r.stderr).toContain('kind-down.mjs --cluster ate');

    const busy = net.createServer();
    await new Promise<void>((res) => busy.listen(0, '127.0.0.1', res));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const r2 = await up(['--substrate-dir', substrate, '--out-dir', out, '--api-port', String(port)], { STUB_LOG: log });
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
  it('runs every step in order with only the listed environment, writes the files with their modes, and tears it all down', async () => {
    const out = path.join(tmp, 'full-out');
    const log = path.join(tmp, 'full.log');
    const [apiPort, routerPort] = [await freePort(), await freePort()];
    const args = ['--substrate-dir', substrate, '--out-dir', out, '--cluster', 'ate', '--api-port', String(apiPort), '--router-port', String(routerPort), '--workers', '2'];
    // Variables that would change what upstream's scripts do (or leak) must not reach them; DOCKER_HOST may.
    const ambient = { KUBECTL_CONTEXT: 'kind-someone-else', ATE_CONFIG: '/etc/other.yaml', KO_DOCKER_REPO: 'gcr.io/elsewhere', SECRET_CANARY: 's3cret', KUBECONFIG: '/home/x/.kube/config', DOCKER_HOST: 'unix:///tmp/stub.sock' };
    const run = await up(args, { STUB_LOG: log, ...ambient });
    const apiPidFile = path.join(out, 'port-forward-api.pid');
    const routerPidFile = path.join(out, 'port-forward-router.pid');
    for (const f of [apiPidFile, routerPidFile]) if (fs.existsSync(f)) startedPids.push(Number(fs.readFileSync(f, 'utf8')));
    expect(run.stderr).not.toContain('error');
    expect(run.exitCode).toBe(0);
    expect(run.stderr).toContain('kind-up: [1/22] output directory');
    expect(run.stderr).toContain('kind-up: [22/22] driver config');

    // Every command, in plan order, with the working directory and environment the plan gives it.
    const calls = stubLog(log);
    const kubectlPrefix = ['--kubeconfig', path.join(out, 'kubeconfig'), '--context', 'kind-ate'];
    expect(calls.map((c) => [c.tool, ...c.args.filter((a) => !kubectlPrefix.includes(a))].slice(0, 8).join(' '))).toEqual([
      'docker info --format {{.ServerVersion}}',
      'kind get clusters',
      'create-kind-cluster.sh',
      'kind get kubeconfig --name ate',
      'install-ate-kind.sh --deploy-ate-system --credential-provider={"name":"k8s.io"} --rollout-timeout 600s',
      'kubectl -n ate-system wait deployment --all --for=condition=Available --timeout=600s',
      'kubectl -n ate-system rollout status statefulset/postgres --timeout=600s',
      'kubectl -n ate-system rollout status daemonset --selector=app=atelet --timeout=600s',
      'kubectl -n podcertificate-controller-system wait deployment --all --for=condition=Available --timeout=600s',
      'kubectl get sandboxconfigs.ate.dev gvisor-default -o name',
      'kubectl get clustertrustbundles --selector=podcert.ate.dev/canarying=live --field-selector=spec.signerName=servicedns.podcert.ate.dev/identity -o jsonpath={range .items[*]}{.spec.trustBundle}{"\\n"}{end}',
      'kubectl create token ate-client -n ate-system --audience api.ate-system.svc',
      'kubectl apply -f ' + path.join(out, 'namespace.yaml'),
      'run-tool.sh ko resolve -f ' + path.join(out, 'workerpool.yaml'),
      'kubectl apply -f ' + path.join(out, 'workerpool.resolved.yaml'),
      'kubectl -n openshell-sandboxes wait workerpool.ate.dev/openshell --for=jsonpath={.status.readyReplicas}=2 --timeout=600s',
      `kubectl port-forward -n ate-system svc/api ${apiPort}:443 --address 127.0.0.1`,
      `kubectl port-forward -n ate-system svc/atenet-router ${routerPort}:80 --address 127.0.0.1`,
    ]);
    const none = { KIND_CLUSTER_NAME: null, KUBECONFIG: null, KO_DOCKER_REPO: null, KO_DEFAULTPLATFORMS: null, KUBECTL_CONTEXT: null, ATE_CONFIG: null, SECRET_CANARY: null, DOCKER_HOST: 'unix:///tmp/stub.sock' };
    const byTool = (t: string) => calls.find((c) => c.tool === t)!;
    expect(byTool('create-kind-cluster.sh')).toMatchObject({ cwd: substrate, env: { ...none, KIND_CLUSTER_NAME: 'ate', KUBECONFIG: path.join(out, 'kubeconfig') } });
    expect(byTool('install-ate-kind.sh')).toMatchObject({ cwd: substrate, env: { ...none, KIND_CLUSTER_NAME: 'ate', KUBECONFIG: path.join(out, 'kubeconfig') } });
    expect(byTool('run-tool.sh')).toMatchObject({ cwd: substrate, env: { ...none, KO_DOCKER_REPO: 'localhost:5001', KO_DEFAULTPLATFORMS: `linux/${goArch()}` } });
    for (const c of calls.filter((x) => x.tool === 'kubectl' || x.tool === 'kind' || x.tool === 'docker')) expect(c.env, `${c.tool} ${c.args.join(' ')}`).toEqual(none);

    // Files and modes; the token is only in its 0600 file, never on stdout or stderr.
    const mode = (f: string) => fs.statSync(path.join(out, f)).mode & 0o777;
    expect(fs.statSync(out).mode & 0o777).toBe(0o700);
    expect(mode('kubeconfig')).toBe(0o600);
    expect(mode('api-token')).toBe(0o600);
    expect(fs.readFileSync(path.join(out, 'api-token'), 'utf8')).toBe('stub-sa-token-0123456789');
    expect(fs.readFileSync(path.join(out, 'api-ca.pem'), 'utf8')).toContain('BEGIN CERTIFICATE');
    expect(run.stdout + run.stderr).not.toContain('stub-sa-token');
    expect(parseYaml(fs.readFileSync(path.join(out, 'workerpool.yaml'), 'utf8')).spec.replicas).toBe(2);
    expect(parseYaml(fs.readFileSync(path.join(out, 'workerpool.resolved.yaml'), 'utf8')).spec.workerImage).toBe(`localhost:5001/ateom-gvisor@sha256:${'ab'.repeat(32)}`);
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
    expect(run.stdout).toContain(`driver config  ${path.join(out, 'driver.toml')}`);
    expect(run.stdout).toContain(`SUBSTRATE_LIVE_API_ENDPOINT=127.0.0.1:${apiPort}`);
    expect(run.stdout).toContain('create token ate-client --audience=api.ate-system.svc');
    expect(run.stdout).toContain(`node scripts/kind-down.mjs --cluster ate --out-dir ${out}`);

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

    const downLog = path.join(tmp, 'down.log');
    const down = await script('kind-down', ['--out-dir', out, '--cluster', 'ate'], { STUB_LOG: downLog, STUB_REGISTRY: 'labelled' });
    expect(down.stderr).not.toContain('error');
    expect(down.exitCode).toBe(0);
    for (const pid of pids) expect(processAlive(pid)).toBe(false);
    expect(stubLog(downLog).map((c) => `${c.tool} ${c.args.join(' ')}`)).toEqual([
      'docker info --format {{.ServerVersion}}',
      'kind delete cluster --name ate',
      'docker ps --all --quiet --filter name=^kind-registry$ --filter label=created-by=agent-substrate',
      'docker rm --force kind-registry',
    ]);
    expect(fs.readdirSync(out)).toEqual([]);

    // A registry container without upstream's label (someone else's) is left alone; nothing left to stop is fine.
    const down2Log = path.join(tmp, 'down2.log');
    const down2 = await script('kind-down', ['--out-dir', out, '--cluster', 'ate'], { STUB_LOG: down2Log });
    expect(down2.exitCode).toBe(0);
    expect(down2.stderr).toContain('no pid file');
    expect(down2.stderr).toContain('skipped, nothing matches docker ps');
    expect(stubLog(down2Log).map((c) => `${c.tool} ${c.args[0]}`)).toEqual(['docker info', 'kind delete', 'docker ps']);
  });

  it('stops at a failing step, names it, leaves no port-forward behind, and never kills a pid that is not a port-forward', async () => {
    const out = path.join(tmp, 'fail-out');
    const log = path.join(tmp, 'fail.log');
    const [apiPort, routerPort] = [await freePort(), await freePort()];
    const r = await up(['--substrate-dir', substrate, '--out-dir', out, '--api-port', String(apiPort), '--router-port', String(routerPort)], {
      STUB_LOG: log,
      STUB_FAIL: 'rollout',
    });
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('step 6/22 failed: PostgreSQL rolled out: kubectl exited with status 1');
    expect(r.stderr).toContain('the setup is partial');
    expect(r.stderr).toContain(`node scripts/kind-down.mjs --cluster kind --out-dir ${out}`);
    expect(stubLog(log).some((c) => c.args.includes('port-forward'))).toBe(false);
    expect(fs.existsSync(path.join(out, 'driver.toml'))).toBe(false);

    // A stale pid file pointing at an unrelated live process (this test runner) is left alone.
    fs.writeFileSync(path.join(out, 'port-forward-api.pid'), `${process.pid}\n`);
    const down = await script('kind-down', ['--out-dir', out, '--keep-registry']);
    expect(down.exitCode).toBe(0);
    expect(down.stderr).toContain(`process ${process.pid} is not a port-forward any more`);
    expect(processAlive(process.pid)).toBe(true);
  });

  it('stops a step that outlives its time limit, with everything it started', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'slow-'));
    const pidFile = path.join(dir, 'grandchild.pid');
    const slow = path.join(dir, 'slow.sh');
    write(slow, `#!/bin/sh\nsleep 60 &\necho $! > ${pidFile}\nwait\n`);
    const started = Date.now();
    await expect(runStep({ type: 'run', argv: [slow], timeoutSecs: 1, desc: 'slow step' }, { warn: () => {} })).rejects.toThrow(
      'slow step: ' + slow + ' did not finish within its time limit of 1s and was stopped',
    );
    expect(Date.now() - started).toBeLessThan(15_000);
    const grandchild = Number(fs.readFileSync(pidFile, 'utf8'));
    await new Promise((res) => setTimeout(res, 200));
    expect(processAlive(grandchild)).toBe(false);
  });
});
