// What scripts/kind-up.mjs and scripts/kind-down.mjs do, as data: argument parsing and the ordered list of
// steps (commands, background port-forwards, files written). Building a plan runs nothing; the executor is
// scripts/lib/kind-run.mjs. Facts from /work/shared/reference/ateapi.md §4.3 (CA, token) and §5 (kind install,
// components, port-forwards).
import fs from 'node:fs';
import path from 'node:path';
import { stringify as tomlStringify } from 'smol-toml';
import { REPO_ROOT, UsageError, parseFlags } from './cli.mjs';

/** Namespace of the Substrate control plane. */
export const ATE_NAMESPACE = 'ate-system';
/** The name in the API server's certificate (and the audience of its tokens). */
export const API_SERVER_NAME = 'api.ate-system.svc';
/** The ClusterTrustBundle holding the CA that signs the API server's certificate (§4.3). */
export const CA_TRUST_BUNDLE = 'servicedns.podcert.ate.dev:identity:primary-bundle';
/** Service account whose token the API accepts in jwt mode (what kubectl-ate mints, §4.2). */
export const CLIENT_SERVICE_ACCOUNT = 'ate-client';
/** The local registry container hack/create-kind-cluster.sh starts (§5.1). */
export const REGISTRY_CONTAINER = 'kind-registry';
/** Workloads install-ate.sh waits for (§5.2), in the order we wait for them. */
export const COMPONENTS = Object.freeze([
  Object.freeze({ kind: 'deployment', name: 'ate-api-server-deployment' }),
  Object.freeze({ kind: 'deployment', name: 'ate-controller' }),
  Object.freeze({ kind: 'deployment', name: 'atenet-router' }),
  Object.freeze({ kind: 'statefulset', name: 'valkey-cluster' }),
  Object.freeze({ kind: 'daemonset', name: 'atelet' }),
]);
/** Scripts a Substrate checkout must have. */
export const SUBSTRATE_SCRIPTS = Object.freeze(['hack/create-kind-cluster.sh', 'hack/install-ate-kind.sh']);

export const KIND_UP_DEFAULTS = Object.freeze({
  clusterName: 'kind',
  outDir: path.join(REPO_ROOT, '.state', 'kind'),
  authMode: 'jwt',
  namespace: 'openshell-sandboxes',
  apiPort: 8080,
  routerPort: 8000,
  tokenDuration: '24h',
  timeout: '600s',
});

export const KIND_UP_HELP = `usage: node scripts/kind-up.mjs --substrate-dir DIR [options]

Stand up a kind cluster with a local registry and Agent Substrate built from the checkout in DIR, then make it
usable by the driver from this machine:
  1. DIR/hack/create-kind-cluster.sh (kind cluster + registry container kind-registry on 127.0.0.1:5001)
  2. kind get kubeconfig into OUT/kubeconfig (every later kubectl call uses it and context kind-<name>)
  3. DIR/hack/install-ate-kind.sh --deploy-ate-system --auth-mode=<mode> (ko builds and pushes the images)
  4. wait for ${COMPONENTS.map((c) => `${c.kind}/${c.name}`).join(', ')} in ${ATE_NAMESPACE}
  5. the API server's CA from ClusterTrustBundle ${CA_TRUST_BUNDLE} into OUT/api-ca.pem
  6. jwt mode: a service-account token (kubectl create token ${CLIENT_SERVICE_ACCOUNT}, audience ${API_SERVER_NAME}) into
     OUT/api-token (mode 0600); mtls mode needs no token (the API checks none)
  7. namespace <namespace> for the driver's ActorTemplates
  8. port-forwards in the background, on 127.0.0.1 only: svc/api API-PORT:443 and svc/atenet-router ROUTER-PORT:80
     (pids in OUT/port-forward-{api,router}.pid, logs next to them)
  9. the driver config OUT/driver.toml ([openshell.drivers.substrate]) pointing at all of the above

Before doing anything it checks that the Docker engine is reachable and that kind, kubectl, ko and go are
installed, that no kind cluster of that name exists and that the two local ports are free; each failure is
reported with its remedy. Tear down with scripts/kind-down.mjs (same --cluster-name and --out-dir).

options:
  --substrate-dir DIR     Agent Substrate checkout (required; must contain ${SUBSTRATE_SCRIPTS.join(' and ')})
  --cluster-name NAME     kind cluster name (default: ${KIND_UP_DEFAULTS.clusterName}; kube context kind-NAME)
  --out-dir DIR           where the kubeconfig, CA, token, driver config, pid and log files go
                          (default: .state/kind in this repository, which git ignores)
  --auth-mode MODE        jwt or mtls, passed to install-ate-kind.sh (default: ${KIND_UP_DEFAULTS.authMode})
  --namespace NS          the driver's default_namespace for ActorTemplates (default: ${KIND_UP_DEFAULTS.namespace})
  --api-port PORT         local port for the API port-forward (default: ${KIND_UP_DEFAULTS.apiPort})
  --router-port PORT      local port for the router port-forward (default: ${KIND_UP_DEFAULTS.routerPort})
  --token-duration DUR    lifetime of the API token, e.g. 1h, 24h (default: ${KIND_UP_DEFAULTS.tokenDuration}; minimum 10m)
  --timeout DUR           how long to wait for each component (default: ${KIND_UP_DEFAULTS.timeout})
  --dry-run               print every command it would run, one per line prefixed '+ ', and run nothing
  -h, --help              show this help

Exit status: 0 success, 1 a prerequisite or step failed, 2 bad command line.
`;

export const KIND_DOWN_HELP = `usage: node scripts/kind-down.mjs [options]

Tear down what scripts/kind-up.mjs set up:
  1. stop the port-forwards recorded in OUT/port-forward-{api,router}.pid (only if the pid is still a
     kubectl port-forward)
  2. kind delete cluster --name NAME
  3. stop and remove the registry container ${REGISTRY_CONTAINER} (unless --keep-registry)
  4. remove the files kind-up wrote in OUT (kubeconfig, CA, token, driver config, pid and log files)

Before doing anything it checks that kind is installed and the Docker engine is reachable.

options:
  --cluster-name NAME     kind cluster name (default: ${KIND_UP_DEFAULTS.clusterName})
  --out-dir DIR           kind-up's output directory (default: .state/kind in this repository)
  --keep-registry         leave the ${REGISTRY_CONTAINER} container running (other kind clusters may use it)
  --dry-run               print every command it would run, one per line prefixed '+ ', and run nothing
  -h, --help              show this help

Exit status: 0 success, 1 a prerequisite or step failed, 2 bad command line.
`;

const CLUSTER_NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Parse a Go-style duration made of h/m/s parts (what kubectl accepts), in seconds; null if malformed. */
export function durationSeconds(/** @type {string} */ s) {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(s);
  if (!m || s === '') return null;
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

/** @param {string} v @param {string} flag */
function parsePort(v, flag) {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535) {
    throw new UsageError(`${flag} must be a port number between 1 and 65535, got ${JSON.stringify(v)}`);
  }
  return Number(v);
}

/** @param {string} v */
function parseClusterName(v) {
  if (v.length > 40 || !CLUSTER_NAME_RE.test(v)) {
    throw new UsageError(`--cluster-name ${JSON.stringify(v)} is not valid: use lowercase letters, digits and '-', at most 40 characters`);
  }
  return v;
}

/**
 * Why `dir` is not a usable Substrate checkout, or null when it is.
 * @param {string} dir
 */
export function substrateCheckoutProblem(dir) {
  let st;
  try {
    st = fs.statSync(dir);
  } catch {
    return `--substrate-dir ${dir} does not exist (clone it first: git clone https://github.com/agent-substrate/substrate ${dir})`;
  }
  if (!st.isDirectory()) return `--substrate-dir ${dir} is not a directory`;
  const missing = SUBSTRATE_SCRIPTS.filter((s) => !fs.existsSync(path.join(dir, s)));
  if (missing.length > 0) {
    return `--substrate-dir ${dir} does not look like an Agent Substrate checkout: missing ${missing.join(', ')}`;
  }
  return null;
}

/**
 * @typedef {{ substrateDir: string, clusterName: string, outDir: string, authMode: 'jwt' | 'mtls',
 *   namespace: string, apiPort: number, routerPort: number, tokenDuration: string, timeout: string,
 *   dryRun: boolean }} KindUpOptions
 * @typedef {{ clusterName: string, outDir: string, keepRegistry: boolean, dryRun: boolean }} KindDownOptions
 */

/**
 * Parse kind-up's command line. Relative paths resolve against `cwd`. Checks that --substrate-dir is a checkout.
 * @param {string[]} args
 * @param {{ cwd?: string }} [ctx]
 * @returns {{ help: true } | ({ help: false } & KindUpOptions)}
 */
export function parseKindUpArgs(args, ctx = {}) {
  const cwd = ctx.cwd ?? process.cwd();
  const f = parseFlags(args, {
    string: ['substrate-dir', 'cluster-name', 'out-dir', 'auth-mode', 'namespace', 'api-port', 'router-port', 'token-duration', 'timeout'],
    boolean: ['dry-run', 'help'],
  });
  if (f.help) return { help: true };
  const d = KIND_UP_DEFAULTS;
  if (f['substrate-dir'] === undefined || f['substrate-dir'] === '') {
    throw new UsageError('--substrate-dir DIR is required: the Agent Substrate checkout to build and install from');
  }
  const substrateDir = path.resolve(cwd, f['substrate-dir']);
  const problem = substrateCheckoutProblem(substrateDir);
  if (problem) throw new UsageError(problem);
  const authMode = f['auth-mode'] ?? d.authMode;
  if (authMode !== 'jwt' && authMode !== 'mtls') {
    throw new UsageError(`--auth-mode must be jwt or mtls, got ${JSON.stringify(authMode)}`);
  }
  const namespace = f.namespace ?? d.namespace;
  if (namespace.length > 63 || !DNS1123_LABEL.test(namespace)) {
    throw new UsageError(`--namespace ${JSON.stringify(namespace)} is not a valid namespace (lowercase RFC 1123 label)`);
  }
  if (namespace === ATE_NAMESPACE) throw new UsageError(`--namespace must not be ${ATE_NAMESPACE} (Substrate's own namespace)`);
  const apiPort = f['api-port'] === undefined ? d.apiPort : parsePort(f['api-port'], '--api-port');
  const routerPort = f['router-port'] === undefined ? d.routerPort : parsePort(f['router-port'], '--router-port');
  if (apiPort === routerPort) throw new UsageError('--api-port and --router-port must differ');
  const tokenDuration = f['token-duration'] ?? d.tokenDuration;
  const tokenSecs = durationSeconds(tokenDuration);
  if (tokenSecs === null) throw new UsageError(`--token-duration ${JSON.stringify(tokenDuration)} is not a duration like 1h, 90m or 24h`);
  if (tokenSecs < 600) throw new UsageError('--token-duration must be at least 10m (Kubernetes rejects shorter service-account tokens)');
  const timeout = f.timeout ?? d.timeout;
  const timeoutSecs = durationSeconds(timeout);
  if (timeoutSecs === null || timeoutSecs === 0) throw new UsageError(`--timeout ${JSON.stringify(timeout)} is not a positive duration like 600s or 10m`);
  return {
    help: false,
    substrateDir,
    clusterName: f['cluster-name'] === undefined ? d.clusterName : parseClusterName(f['cluster-name']),
    outDir: f['out-dir'] === undefined || f['out-dir'] === '' ? d.outDir : path.resolve(cwd, f['out-dir']),
    authMode,
    namespace,
    apiPort,
    routerPort,
    tokenDuration,
    timeout,
    dryRun: f['dry-run'],
  };
}

/**
 * Parse kind-down's command line.
 * @param {string[]} args @param {{ cwd?: string }} [ctx]
 * @returns {{ help: true } | ({ help: false } & KindDownOptions)}
 */
export function parseKindDownArgs(args, ctx = {}) {
  const cwd = ctx.cwd ?? process.cwd();
  const f = parseFlags(args, { string: ['cluster-name', 'out-dir'], boolean: ['keep-registry', 'dry-run', 'help'] });
  if (f.help) return { help: true };
  return {
    help: false,
    clusterName: f['cluster-name'] === undefined ? KIND_UP_DEFAULTS.clusterName : parseClusterName(f['cluster-name']),
    outDir: f['out-dir'] === undefined || f['out-dir'] === '' ? KIND_UP_DEFAULTS.outDir : path.resolve(cwd, f['out-dir']),
    keepRegistry: f['keep-registry'],
    dryRun: f['dry-run'],
  };
}

/** Files kind-up writes in the output directory. @param {string} outDir */
export function outFiles(outDir) {
  const j = (/** @type {string} */ n) => path.join(outDir, n);
  return {
    kubeconfig: j('kubeconfig'),
    caPath: j('api-ca.pem'),
    tokenPath: j('api-token'),
    namespaceManifest: j('namespace.yaml'),
    driverConfig: j('driver.toml'),
    apiPid: j('port-forward-api.pid'),
    apiLog: j('port-forward-api.log'),
    routerPid: j('port-forward-router.pid'),
    routerLog: j('port-forward-router.log'),
  };
}

/** @param {string} clusterName */
export function kubeContext(clusterName) {
  return `kind-${clusterName}`;
}

/**
 * The driver config kind-up writes: `[openshell.drivers.substrate]` pointing at the port-forwarded API (TLS, the
 * cluster's CA, server name api.ate-system.svc, the token file in jwt mode), the router, and the cluster.
 * @param {KindUpOptions} o
 */
export function renderDriverConfig(o) {
  const files = outFiles(o.outDir);
  /** @type {Record<string, string>} */
  const table = {
    api_endpoint: `127.0.0.1:${o.apiPort}`,
    api_tls_ca_path: files.caPath,
    api_tls_server_name: API_SERVER_NAME,
  };
  if (o.authMode === 'jwt') table.api_bearer_token_path = files.tokenPath;
  Object.assign(table, {
    default_namespace: o.namespace,
    router_url: `http://127.0.0.1:${o.routerPort}`,
    kubeconfig: files.kubeconfig,
    kube_context: kubeContext(o.clusterName),
  });
  const header =
    `# Written by scripts/kind-up.mjs for kind cluster "${o.clusterName}" (Substrate auth mode ${o.authMode}).\n` +
    `# The API and router are reached through kubectl port-forwards on 127.0.0.1; tear down with scripts/kind-down.mjs.\n`;
  return header + tomlStringify({ openshell: { drivers: { substrate: table } } }) + '\n';
}

/** @param {string} ns */
function namespaceManifest(ns) {
  return [
    'apiVersion: v1',
    'kind: Namespace',
    'metadata:',
    `  name: ${ns}`,
    '  labels:',
    '    app.kubernetes.io/managed-by: openshell-driver-substrate',
    '',
  ].join('\n');
}

/**
 * @typedef {{ type: 'mkdir', path: string, mode: number, desc: string }
 *   | { type: 'run', argv: string[], cwd?: string, env?: Record<string, string>,
 *       stdoutTo?: { path: string, mode: number, nonEmpty?: boolean }, allowFail?: boolean, desc: string }
 *   | { type: 'background', argv: string[], logPath: string, pidPath: string, desc: string }
 *   | { type: 'wait-tcp', host: string, port: number, timeoutSecs: number, logPath?: string, desc: string }
 *   | { type: 'write', path: string, mode: number, content: string, desc: string }
 *   | { type: 'kill-pidfile', pidPath: string, match: string, desc: string }
 *   | { type: 'remove', paths: string[], desc: string }} Step
 */

/**
 * kind-up's steps, in order. Pure: no filesystem access, no processes.
 * @param {KindUpOptions} o
 * @returns {Step[]}
 */
export function buildKindUpPlan(o) {
  const files = outFiles(o.outDir);
  const kubectl = ['kubectl', '--kubeconfig', files.kubeconfig, '--context', kubeContext(o.clusterName)];
  /** @type {Step[]} */
  const steps = [
    { type: 'mkdir', path: o.outDir, mode: 0o700, desc: 'output directory (holds a token: private)' },
    {
      type: 'run',
      argv: ['./hack/create-kind-cluster.sh'],
      cwd: o.substrateDir,
      env: { KIND_CLUSTER_NAME: o.clusterName },
      desc: 'kind cluster and local registry',
    },
    {
      type: 'run',
      argv: ['kind', 'get', 'kubeconfig', '--name', o.clusterName],
      stdoutTo: { path: files.kubeconfig, mode: 0o600, nonEmpty: true },
      desc: 'kubeconfig of the new cluster',
    },
    {
      type: 'run',
      argv: ['./hack/install-ate-kind.sh', '--deploy-ate-system', `--auth-mode=${o.authMode}`],
      cwd: o.substrateDir,
      env: { KIND_CLUSTER_NAME: o.clusterName, KUBECONFIG: files.kubeconfig },
      desc: 'build (ko) and install Agent Substrate',
    },
    ...COMPONENTS.map((c) => /** @type {Step} */ ({
      type: 'run',
      argv: [...kubectl, '-n', ATE_NAMESPACE, 'rollout', 'status', `${c.kind}/${c.name}`, `--timeout=${o.timeout}`],
      desc: `wait for ${c.kind}/${c.name}`,
    })),
    {
      type: 'run',
      argv: [...kubectl, 'get', 'clustertrustbundle', CA_TRUST_BUNDLE, '-o', 'jsonpath={.spec.trustBundle}'],
      stdoutTo: { path: files.caPath, mode: 0o644, nonEmpty: true },
      desc: "the API server's CA",
    },
  ];
  if (o.authMode === 'jwt') {
    steps.push({
      type: 'run',
      argv: [...kubectl, 'create', 'token', CLIENT_SERVICE_ACCOUNT, '-n', ATE_NAMESPACE, '--audience', API_SERVER_NAME, '--duration', o.tokenDuration],
      stdoutTo: { path: files.tokenPath, mode: 0o600, nonEmpty: true },
      desc: `service-account token for audience ${API_SERVER_NAME}`,
    });
  }
  steps.push(
    { type: 'write', path: files.namespaceManifest, mode: 0o644, content: namespaceManifest(o.namespace), desc: `Namespace ${o.namespace}` },
    { type: 'run', argv: [...kubectl, 'apply', '-f', files.namespaceManifest], desc: `namespace ${o.namespace} for ActorTemplates` },
    {
      type: 'background',
      argv: [...kubectl, 'port-forward', '-n', ATE_NAMESPACE, 'svc/api', `${o.apiPort}:443`, '--address', '127.0.0.1'],
      logPath: files.apiLog,
      pidPath: files.apiPid,
      desc: 'port-forward to the API',
    },
    { type: 'wait-tcp', host: '127.0.0.1', port: o.apiPort, timeoutSecs: 30, logPath: files.apiLog, desc: 'API port-forward listening' },
    {
      type: 'background',
      argv: [...kubectl, 'port-forward', '-n', ATE_NAMESPACE, 'svc/atenet-router', `${o.routerPort}:80`, '--address', '127.0.0.1'],
      logPath: files.routerLog,
      pidPath: files.routerPid,
      desc: 'port-forward to the router',
    },
    { type: 'wait-tcp', host: '127.0.0.1', port: o.routerPort, timeoutSecs: 30, logPath: files.routerLog, desc: 'router port-forward listening' },
    { type: 'write', path: files.driverConfig, mode: 0o644, content: renderDriverConfig(o), desc: 'driver config' },
  );
  return steps;
}

/**
 * kind-down's steps, in order. Pure.
 * @param {KindDownOptions} o
 * @returns {Step[]}
 */
export function buildKindDownPlan(o) {
  const files = outFiles(o.outDir);
  /** @type {Step[]} */
  const steps = [
    { type: 'kill-pidfile', pidPath: files.apiPid, match: 'port-forward', desc: 'stop the API port-forward' },
    { type: 'kill-pidfile', pidPath: files.routerPid, match: 'port-forward', desc: 'stop the router port-forward' },
    { type: 'run', argv: ['kind', 'delete', 'cluster', '--name', o.clusterName], desc: 'delete the kind cluster' },
  ];
  if (!o.keepRegistry) {
    steps.push({ type: 'run', argv: ['docker', 'rm', '-f', REGISTRY_CONTAINER], allowFail: true, desc: 'stop and remove the registry container' });
  }
  steps.push({
    type: 'remove',
    paths: [
      files.tokenPath,
      files.kubeconfig,
      files.caPath,
      files.driverConfig,
      files.namespaceManifest,
      files.apiPid,
      files.apiLog,
      files.routerPid,
      files.routerLog,
    ],
    desc: "kind-up's files",
  });
  return steps;
}

const SAFE_ARG = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quote one argument for a POSIX shell (only when needed). @param {string} s */
export function shellQuote(s) {
  if (s !== '' && SAFE_ARG.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** @param {string[]} argv */
function shellJoin(argv) {
  return argv.map(shellQuote).join(' ');
}

/**
 * One plan line: '+ ' and the step as a shell command (or, for file writes and the TCP wait, a self-describing
 * pseudo-command). Never contains secrets: tokens only ever go to files.
 * @param {Step} s
 */
export function formatStep(s) {
  switch (s.type) {
    case 'mkdir':
      return `+ mkdir -p -m ${s.mode.toString(8)} ${shellQuote(s.path)}`;
    case 'run': {
      const env = Object.entries(s.env ?? {}).map(([k, v]) => `${k}=${shellQuote(v)}`);
      let line = [...env, shellJoin(s.argv)].join(' ');
      if (s.cwd) line = `cd ${shellQuote(s.cwd)} && ${line}`;
      if (s.stdoutTo) line += ` > ${shellQuote(s.stdoutTo.path)}`;
      if (s.allowFail) line += ' || true';
      return `+ ${line}`;
    }
    case 'background':
      return `+ ${shellJoin(s.argv)} > ${shellQuote(s.logPath)} 2>&1 & echo $! > ${shellQuote(s.pidPath)}`;
    case 'wait-tcp':
      return `+ wait-for-tcp ${s.host}:${s.port} --timeout ${s.timeoutSecs}s`;
    case 'write':
      return `+ write-file ${shellQuote(s.path)} --mode ${s.mode.toString(8).padStart(4, '0')}  # ${s.desc}`;
    case 'kill-pidfile':
      return `+ kill $(cat ${shellQuote(s.pidPath)})`;
    case 'remove':
      return `+ rm -f ${s.paths.map(shellQuote).join(' ')}`;
    default:
      throw new Error(`unknown step ${JSON.stringify(s)}`);
  }
}

/** The whole plan, one line per step, newline-terminated. @param {Step[]} steps */
export function formatPlan(steps) {
  return steps.map((s) => `${formatStep(s)}\n`).join('');
}
