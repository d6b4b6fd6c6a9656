// What scripts/kind-up.mjs and scripts/kind-down.mjs do, as data: argument parsing and the ordered list of
// steps (commands, background port-forwards, files written). Building a plan runs nothing; the executor is
// scripts/lib/kind-run.mjs and the checkout check scripts/lib/kind-checkout.mjs.
//
// kind-up installs the RELEASED Agent Substrate v0.4.0 the way upstream does on kind, with upstream's own scripts
// from a verified checkout of the tag: hack/create-kind-cluster.sh, then hack/install-ate-kind.sh
// --deploy-ate-system --credential-provider='{"name":"k8s.io"}' (ate-setup: CRDs, PostgreSQL, pod-certificate
// controller, RustFS snapshot storage, API server, controller, atenet, atelet, SandboxConfig gvisor-default),
// then a WorkerPool for the workers. Facts: /work/shared/reference/substrate-v0.4-addendum.md §4 and
// substrate-v0.4.md §6 / "WorkerPool CRD"; v0.4.0 files read through the code index (ssrq1992/agentEnvOnSubstrate
// substrate/ @7a220166: hack/create-kind-cluster.sh, manifests/ate-install/ate-api-server.yaml and atenet-router.yaml,
// cmd/ate-setup/commands.md; WorkerPool types from the same tree @b534cc6a minus that fork's own fields).
import path from 'node:path';
import { stringify as tomlStringify } from 'smol-toml';
import { stringify as yamlStringify } from 'yaml';
import { BASE_ENV_NAMES } from '../../src/common/child-env.mjs';
import { REPO_ROOT, UsageError, parseFlags } from './cli.mjs';
import { SUBSTRATE_RELEASE, SUBSTRATE_SCRIPTS, TEST_ONLY_COMMIT_ENV } from './kind-checkout.mjs';

export { SUBSTRATE_RELEASE, SUBSTRATE_SCRIPTS };

/** Namespace of the Substrate control plane. */
export const ATE_NAMESPACE = 'ate-system';
/** Namespace of the pod-certificate controller (signers servicedns/podidentity.podcert.ate.dev). */
export const PODCERT_NAMESPACE = 'podcertificate-controller-system';
/** The name in the API server's certificate (and the audience of its tokens). */
export const API_SERVER_NAME = 'api.ate-system.svc';
/** Signer whose ClusterTrustBundle holds the CA of the API server's certificate, and the label of the live bundle. */
export const CA_SIGNER = 'servicedns.podcert.ate.dev/identity';
export const CA_BUNDLE_LABEL = 'podcert.ate.dev/canarying=live';
/** Service account whose token the API accepts (audience api.ate-system.svc). */
export const CLIENT_SERVICE_ACCOUNT = 'ate-client';
/** The local registry container hack/create-kind-cluster.sh starts, its label, and where ko pushes to. */
export const REGISTRY_CONTAINER = 'kind-registry';
export const REGISTRY_LABEL = 'created-by=agent-substrate';
export const KO_DOCKER_REPO = 'localhost:5001';
/** Egress credential provider passed to the installer (required since v0.4.0): the bundled Kubernetes Secrets one. */
export const CREDENTIAL_PROVIDER = '{"name":"k8s.io"}';
/** The gVisor SandboxConfig the install ships; ActorTemplates name it in sandbox_config.config_name. */
export const DEFAULT_SANDBOX_CONFIG = 'gvisor-default';
/** The gVisor worker (ateom) image, as a ko reference resolved against the checkout (ateom-* naming at v0.4.0). */
export const WORKER_IMAGE_KO = 'ko://github.com/agent-substrate/substrate/cmd/ateom-gvisor';

/**
 * Environment names a child may take from ours (each only when set). Everything else — KUBECONFIG, KUBECTL_CONTEXT,
 * ATE_*, KO_*, IP_FAMILY, KIND_REGISTRY_PORT, GIT_DIR, credentials — is dropped, so the plan printed is what runs; a
 * step adds only the NAME=value pairs it shows.
 */
export const CHILD_ENV_NAMES = Object.freeze([
  ...BASE_ENV_NAMES,
  // docker (create-kind-cluster.sh, kind-down) and kind
  'DOCKER_HOST', 'DOCKER_CONTEXT', 'DOCKER_CONFIG', 'DOCKER_CERT_PATH', 'DOCKER_TLS_VERIFY', 'KIND_EXPERIMENTAL_PROVIDER',
  // Go (upstream runs kind, ko and ate-setup through the Go toolchain) and its caches
  'GOPATH', 'GOROOT', 'GOCACHE', 'GOMODCACHE', 'GOFLAGS', 'GOPROXY', 'GOSUMDB', 'GOPRIVATE', 'GONOPROXY', 'GONOSUMDB',
  'GOINSECURE', 'GOTOOLCHAIN', 'XDG_CACHE_HOME', 'XDG_CONFIG_HOME',
  // proxies and CA bundles of the machine
  'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy', 'SSL_CERT_FILE', 'SSL_CERT_DIR',
]);

/** Hard time limits (seconds) after which the executor stops a step's whole process group. */
export const STEP_LIMITS = Object.freeze({
  createCluster: 20 * 60,
  install: 60 * 60,
  koResolve: 30 * 60,
  kubectl: 120,
  /** added to --timeout for the waits, which carry --timeout themselves */
  waitSlack: 60,
  portForward: 30,
});

export const KIND_UP_DEFAULTS = Object.freeze({
  clusterName: 'kind',
  outDir: path.join(REPO_ROOT, '.state', 'kind'),
  namespace: 'openshell-sandboxes',
  workerPool: 'openshell',
  workers: 1,
  apiPort: 8080,
  routerPort: 8000,
  tokenDuration: '24h',
  timeout: '600s',
});

/** Go's name for this machine's architecture (ko builds the worker for linux/<it>, as install-ate-kind.sh does). */
export function goArch(nodeArch = process.arch) {
  /** @type {Record<string, string>} */
  const m = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', s390x: 's390x', ppc64: 'ppc64le', riscv64: 'riscv64', loong64: 'loong64' };
  return m[nodeArch] ?? nodeArch;
}

export const KIND_UP_HELP = `usage: node scripts/kind-up.mjs --substrate-dir DIR [options]

Stand up a kind cluster running the RELEASED Agent Substrate ${SUBSTRATE_RELEASE.tag} (commit ${SUBSTRATE_RELEASE.commit}),
installed with upstream's own kind scripts from a checkout of that tag, and make it usable by the driver:
  0. check DIR, read-only (git rev-parse HEAD, git tag --points-at HEAD, git status): HEAD must be
     ${SUBSTRATE_RELEASE.commit}, tag ${SUBSTRATE_RELEASE.tag} must point at it, and no tracked file may be
     changed (untracked files are not counted); otherwise exit 2 saying how to get the checkout:
       git clone ${SUBSTRATE_RELEASE.repo} DIR && git -C DIR checkout ${SUBSTRATE_RELEASE.tag}
  1. DIR/hack/create-kind-cluster.sh: kind cluster NAME (feature gates for pod certificates) and the registry
     container ${REGISTRY_CONTAINER} on 127.0.0.1:5001; kind writes the kubeconfig to OUT/kubeconfig, not ~/.kube/config
     (NB: that script deletes an existing cluster of the same name, so kind-up refuses to start if one exists)
  2. kind get kubeconfig into OUT/kubeconfig (mode 0600); every later kubectl call uses it and context kind-NAME
  3. DIR/hack/install-ate-kind.sh --deploy-ate-system --credential-provider='${CREDENTIAL_PROVIDER}' --rollout-timeout DUR
     (upstream's ate-setup: builds the images with ko into the local registry and installs CRDs, PostgreSQL, the
     pod-certificate controller, RustFS snapshot storage, API server, controller, atenet, atelet and the
     SandboxConfig ${DEFAULT_SANDBOX_CONFIG})
  4. wait, each bounded by --timeout: every Deployment in ${ATE_NAMESPACE} Available, StatefulSet postgres rolled
     out, the atelet DaemonSet (app=atelet) rolled out, every Deployment in ${PODCERT_NAMESPACE} Available;
     check that SandboxConfig ${DEFAULT_SANDBOX_CONFIG} exists
  5. the API server's CA (ClusterTrustBundles of signer ${CA_SIGNER}, label ${CA_BUNDLE_LABEL})
     into OUT/api-ca.pem
  6. a service-account token (kubectl create token ${CLIENT_SERVICE_ACCOUNT}, audience ${API_SERVER_NAME}) into OUT/api-token
     (mode 0600; v0.4.0 authenticates every call, there is no token-less mode any more)
  7. namespace NS, and in it WorkerPool POOL (apiVersion ate.dev/v1alpha1; spec.replicas, spec.workerImage
     ${WORKER_IMAGE_KO}, spec.sandboxClass gvisor) written to OUT/workerpool.yaml,
     resolved by DIR/hack/run-tool.sh ko resolve (KO_DOCKER_REPO=${KO_DOCKER_REPO}) into OUT/workerpool.resolved.yaml
     and applied; then wait until its status.readyReplicas equals --workers
  8. port-forwards in the background, on 127.0.0.1 only: svc/api API-PORT:443 and svc/atenet-router ROUTER-PORT:80
     (pids in OUT/port-forward-{api,router}.pid, logs next to them)
  9. the driver config OUT/driver.toml ([openshell.drivers.substrate]) pointing at all of the above

The driver speaks Substrate v0.4 (the released ${SUBSTRATE_RELEASE.tag} wire): \`substrate-driver serve --config OUT/driver.toml\`
uses this cluster. At the end kind-up prints how to point the driver at it (endpoint, CA, token) and the
SUBSTRATE_LIVE_* variables of the live test tier (tests/live).

Before doing anything it checks that the Docker engine is reachable and that kind, kubectl, go and git are
installed (upstream runs ko and ate-setup through Go), that no kind cluster of that name exists and that the two
local ports are free; each failure is reported with its remedy. Every step is echoed as it starts ([i/N] and a
'+ ' line) and stopped if it outlives its time limit (cluster 20m, install 60m, ko resolve 30m, waits --timeout
plus 60s, other kubectl calls 120s). Children get only these variables of your environment (when set), plus
the NAME=value pairs a step shows: ${CHILD_ENV_NAMES.join(' ')}.
Tear down with scripts/kind-down.mjs (same --cluster and --out-dir).

options:
  --substrate-dir DIR     checkout of agent-substrate at tag ${SUBSTRATE_RELEASE.tag} (required)
  --cluster NAME          kind cluster name (default: ${KIND_UP_DEFAULTS.clusterName}; kube context kind-NAME); --cluster-name is the same
  --out-dir DIR           where the kubeconfig, CA, token, manifests, driver config, pid and log files go
                          (default: .state/kind in this repository, which git ignores)
  --namespace NS          namespace of the WorkerPool, also the driver's default_namespace (default: ${KIND_UP_DEFAULTS.namespace})
  --worker-pool NAME      name of the WorkerPool (default: ${KIND_UP_DEFAULTS.workerPool})
  --workers N             its replicas, 1 to 50 (default: ${KIND_UP_DEFAULTS.workers})
  --api-port PORT         local port for the API port-forward (default: ${KIND_UP_DEFAULTS.apiPort})
  --router-port PORT      local port for the router port-forward (default: ${KIND_UP_DEFAULTS.routerPort})
  --token-duration DUR    lifetime of the API token, e.g. 1h, 24h (default: ${KIND_UP_DEFAULTS.tokenDuration}; minimum 10m)
  --timeout DUR           bound of each readiness wait, also the installer's --rollout-timeout (default: ${KIND_UP_DEFAULTS.timeout})
  --allow-dirty           accept changes to tracked files in DIR (they are built into the images)
  --dry-run               print the plan (every command, its arguments and the environment names it gets) and run
                          nothing but the read-only git checks of DIR
  --no-verify-checkout    with --dry-run only: skip the checks of DIR (it need not exist), for tests
  -h, --help              show this help

Testing only: ${TEST_ONLY_COMMIT_ENV}=<40 hex digits> replaces the expected commit (a test repository cannot
have commit ${SUBSTRATE_RELEASE.commit.slice(0, 8)}); the tag must still be ${SUBSTRATE_RELEASE.tag}. kind-up warns whenever it is set.

Exit status: 0 success, 1 a prerequisite or step failed, 2 bad command line or DIR is not a clean ${SUBSTRATE_RELEASE.tag} checkout.
`;

export const KIND_DOWN_HELP = `usage: node scripts/kind-down.mjs [options]

Tear down what scripts/kind-up.mjs set up:
  1. stop the port-forwards recorded in OUT/port-forward-{api,router}.pid (only if the pid is still a
     kubectl port-forward)
  2. kind delete cluster --name NAME
  3. remove the registry container ${REGISTRY_CONTAINER} that hack/create-kind-cluster.sh started — only if it carries
     that script's label ${REGISTRY_LABEL} (unless --keep-registry; other kind clusters may use it)
  4. remove the files kind-up wrote in OUT (kubeconfig, CA, token, manifests, driver config, pid and log files)

Before doing anything it checks that kind is installed and the Docker engine is reachable.

options:
  --cluster NAME          kind cluster name (default: ${KIND_UP_DEFAULTS.clusterName}); --cluster-name is the same
  --out-dir DIR           kind-up's output directory (default: .state/kind in this repository)
  --keep-registry         leave the ${REGISTRY_CONTAINER} container running
  --dry-run               print every command it would run, one per line prefixed '+ ', and run nothing
  -h, --help              show this help

Exit status: 0 success, 1 a prerequisite or step failed, 2 bad command line.
`;

const CLUSTER_NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

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

/** --cluster or its alias --cluster-name (not both). @param {Record<string, any>} f */
function parseClusterName(f) {
  if (f.cluster !== undefined && f['cluster-name'] !== undefined) throw new UsageError('give --cluster or --cluster-name, not both');
  const v = f.cluster ?? f['cluster-name'];
  if (v === undefined) return KIND_UP_DEFAULTS.clusterName;
  if (v.length > 40 || !CLUSTER_NAME_RE.test(v)) {
    throw new UsageError(`--cluster ${JSON.stringify(v)} is not valid: use lowercase letters, digits and '-', at most 40 characters`);
  }
  return v;
}

/** Flags of the build-from-source kind-up that v0.4.0 made meaningless. @param {string[]} args */
function rejectRemovedFlags(args) {
  if (args.some((a) => a === '--auth-mode' || a.startsWith('--auth-mode='))) {
    throw new UsageError('--auth-mode was removed: Agent Substrate v0.4.0 authenticates every call, so kind-up always mints a token');
  }
}

/**
 * @typedef {{ substrateDir: string, clusterName: string, outDir: string, namespace: string, workerPool: string,
 *   workers: number, apiPort: number, routerPort: number, tokenDuration: string, timeout: string, goarch: string,
 *   allowDirty: boolean, verifyCheckout: boolean, dryRun: boolean }} KindUpOptions
 * @typedef {{ clusterName: string, outDir: string, keepRegistry: boolean, dryRun: boolean }} KindDownOptions
 */

/**
 * Parse kind-up's command line. Relative paths resolve against `cwd`. Does not look at the checkout (that is
 * verifyCheckout's job, in scripts/lib/kind-checkout.mjs).
 * @param {string[]} args
 * @param {{ cwd?: string, arch?: string }} [ctx]
 * @returns {{ help: true } | ({ help: false } & KindUpOptions)}
 */
export function parseKindUpArgs(args, ctx = {}) {
  const cwd = ctx.cwd ?? process.cwd();
  rejectRemovedFlags(args);
  const f = parseFlags(args, {
    string: ['substrate-dir', 'cluster', 'cluster-name', 'out-dir', 'namespace', 'worker-pool', 'workers', 'api-port', 'router-port', 'token-duration', 'timeout'],
    boolean: ['allow-dirty', 'verify-checkout', 'dry-run', 'help'],
    default: { 'verify-checkout': true },
  });
  if (f.help) return { help: true };
  const d = KIND_UP_DEFAULTS;
  if (f['substrate-dir'] === undefined || f['substrate-dir'] === '') {
    throw new UsageError(`--substrate-dir DIR is required: a checkout of agent-substrate at tag ${SUBSTRATE_RELEASE.tag} (git clone ${SUBSTRATE_RELEASE.repo} DIR && git -C DIR checkout ${SUBSTRATE_RELEASE.tag})`);
  }
  if (!f['verify-checkout'] && !f['dry-run']) {
    throw new UsageError('--no-verify-checkout is only allowed with --dry-run: a real run always verifies the checkout');
  }
  const namespace = f.namespace ?? d.namespace;
  if (namespace.length > 63 || !DNS1123_LABEL.test(namespace)) {
    throw new UsageError(`--namespace ${JSON.stringify(namespace)} is not a valid namespace (lowercase RFC 1123 label)`);
  }
  if (namespace === ATE_NAMESPACE || namespace === PODCERT_NAMESPACE) throw new UsageError(`--namespace must not be ${namespace} (Substrate's own namespace)`);
  const workerPool = f['worker-pool'] ?? d.workerPool;
  if (workerPool.length > 253 || !DNS1123_SUBDOMAIN.test(workerPool)) {
    throw new UsageError(`--worker-pool ${JSON.stringify(workerPool)} is not a valid name (lowercase RFC 1123 subdomain)`);
  }
  const workersRaw = f.workers ?? String(d.workers);
  if (!/^\d+$/.test(workersRaw) || Number(workersRaw) < 1 || Number(workersRaw) > 50) {
    throw new UsageError(`--workers must be a whole number from 1 to 50, got ${JSON.stringify(workersRaw)}`);
  }
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
    substrateDir: path.resolve(cwd, f['substrate-dir']),
    clusterName: parseClusterName(f),
    outDir: f['out-dir'] === undefined || f['out-dir'] === '' ? d.outDir : path.resolve(cwd, f['out-dir']),
    namespace,
    workerPool,
    workers: Number(workersRaw),
    apiPort,
    routerPort,
    tokenDuration,
    timeout,
    goarch: goArch(ctx.arch),
    allowDirty: f['allow-dirty'],
    verifyCheckout: f['verify-checkout'],
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
  const f = parseFlags(args, { string: ['cluster', 'cluster-name', 'out-dir'], boolean: ['keep-registry', 'dry-run', 'help'] });
  if (f.help) return { help: true };
  return {
    help: false,
    clusterName: parseClusterName(f),
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
    workerPoolManifest: j('workerpool.yaml'),
    workerPoolResolved: j('workerpool.resolved.yaml'),
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
 * cluster's CA, server name api.ate-system.svc, the token file), the router, and the cluster.
 * @param {KindUpOptions} o
 */
export function renderDriverConfig(o) {
  const files = outFiles(o.outDir);
  const table = {
    api_endpoint: `127.0.0.1:${o.apiPort}`,
    api_tls_ca_path: files.caPath,
    api_tls_server_name: API_SERVER_NAME,
    api_bearer_token_path: files.tokenPath,
    default_namespace: o.namespace,
    router_url: `http://127.0.0.1:${o.routerPort}`,
    kubeconfig: files.kubeconfig,
    kube_context: kubeContext(o.clusterName),
  };
  const header =
    `# Written by scripts/kind-up.mjs for kind cluster "${o.clusterName}" (Agent Substrate ${SUBSTRATE_RELEASE.tag}).\n` +
    `# The API and router are reached through kubectl port-forwards on 127.0.0.1; tear down with scripts/kind-down.mjs.\n` +
    `# The driver speaks Substrate v0.4 (the released ${SUBSTRATE_RELEASE.tag} wire); v0.4 templates carry no labels, so add\n` +
    `# template_labels here for pre-provisioned templates sandboxes may name (see examples/helpdesk/actortemplate.yaml).\n`;
  return header + tomlStringify({ openshell: { drivers: { substrate: table } } }) + '\n';
}

const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'openshell-driver-substrate' };

/** @param {string} ns */
export function renderNamespaceManifest(ns) {
  return yamlStringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { ...MANAGED_BY } } });
}

/**
 * The WorkerPool in v0.4.0's shape (ate.dev/v1alpha1): spec.replicas and spec.workerImage are required;
 * spec.sandboxClass (gvisor|microvm, default gvisor) picks the worker pod shape. There is no sandboxConfigName at
 * v0.4.0: the SandboxConfig is named by each ActorTemplate (sandbox_config.config_name), not by the pool.
 * workerImage is a ko:// reference that `ko resolve` (run in the checkout) replaces with the pushed image.
 * @param {KindUpOptions} o
 */
export function renderWorkerPoolManifest(o) {
  return yamlStringify({
    apiVersion: 'ate.dev/v1alpha1',
    kind: 'WorkerPool',
    metadata: { name: o.workerPool, namespace: o.namespace, labels: { ...MANAGED_BY } },
    spec: { replicas: o.workers, workerImage: WORKER_IMAGE_KO, sandboxClass: 'gvisor' },
  });
}

/**
 * @typedef {{ type: 'mkdir', path: string, mode: number, desc: string }
 *   | { type: 'run', argv: string[], cwd?: string, env?: Record<string, string>, timeoutSecs: number,
 *       stdoutTo?: { path: string, mode: number, nonEmpty?: boolean }, onlyIf?: string[], allowFail?: boolean, desc: string }
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
  const waitLimit = /** @type {number} */ (durationSeconds(o.timeout)) + STEP_LIMITS.waitSlack;
  const clusterEnv = { KIND_CLUSTER_NAME: o.clusterName, KUBECONFIG: files.kubeconfig };
  /** @type {(argv: string[], desc: string, extra?: Partial<Extract<Step, { type: 'run' }>>) => Step} */
  const k = (argv, desc, extra = {}) => ({ type: 'run', argv: [...kubectl, ...argv], timeoutSecs: STEP_LIMITS.kubectl, desc, ...extra });
  return [
    { type: 'mkdir', path: o.outDir, mode: 0o700, desc: 'output directory (holds a token: private)' },
    {
      type: 'run',
      argv: ['./hack/create-kind-cluster.sh'],
      cwd: o.substrateDir,
      env: clusterEnv,
      timeoutSecs: STEP_LIMITS.createCluster,
      desc: `kind cluster "${o.clusterName}" and the local registry (upstream hack/create-kind-cluster.sh)`,
    },
    {
      type: 'run',
      argv: ['kind', 'get', 'kubeconfig', '--name', o.clusterName],
      stdoutTo: { path: files.kubeconfig, mode: 0o600, nonEmpty: true },
      timeoutSecs: STEP_LIMITS.kubectl,
      desc: 'kubeconfig of the new cluster',
    },
    {
      type: 'run',
      argv: ['./hack/install-ate-kind.sh', '--deploy-ate-system', `--credential-provider=${CREDENTIAL_PROVIDER}`, '--rollout-timeout', o.timeout],
      cwd: o.substrateDir,
      env: clusterEnv,
      timeoutSecs: STEP_LIMITS.install,
      desc: `build and install Agent Substrate ${SUBSTRATE_RELEASE.tag} (upstream hack/install-ate-kind.sh)`,
    },
    k(['-n', ATE_NAMESPACE, 'wait', 'deployment', '--all', '--for=condition=Available', `--timeout=${o.timeout}`], `every Deployment in ${ATE_NAMESPACE} Available`, { timeoutSecs: waitLimit }),
    k(['-n', ATE_NAMESPACE, 'rollout', 'status', 'statefulset/postgres', `--timeout=${o.timeout}`], 'PostgreSQL rolled out', { timeoutSecs: waitLimit }),
    k(['-n', ATE_NAMESPACE, 'rollout', 'status', 'daemonset', '--selector=app=atelet', `--timeout=${o.timeout}`], 'atelet rolled out on every node', { timeoutSecs: waitLimit }),
    k(['-n', PODCERT_NAMESPACE, 'wait', 'deployment', '--all', '--for=condition=Available', `--timeout=${o.timeout}`], 'pod-certificate controller Available', { timeoutSecs: waitLimit }),
    k(['get', 'sandboxconfigs.ate.dev', DEFAULT_SANDBOX_CONFIG, '-o', 'name'], `SandboxConfig ${DEFAULT_SANDBOX_CONFIG} installed`),
    k(
      ['get', 'clustertrustbundles', `--selector=${CA_BUNDLE_LABEL}`, `--field-selector=spec.signerName=${CA_SIGNER}`, '-o', 'jsonpath={range .items[*]}{.spec.trustBundle}{"\\n"}{end}'],
      "the API server's CA",
      { stdoutTo: { path: files.caPath, mode: 0o644, nonEmpty: true } },
    ),
    k(
      ['create', 'token', CLIENT_SERVICE_ACCOUNT, '-n', ATE_NAMESPACE, '--audience', API_SERVER_NAME, '--duration', o.tokenDuration],
      `service-account token for audience ${API_SERVER_NAME}`,
      { stdoutTo: { path: files.tokenPath, mode: 0o600, nonEmpty: true } },
    ),
    { type: 'write', path: files.namespaceManifest, mode: 0o644, content: renderNamespaceManifest(o.namespace), desc: `Namespace ${o.namespace}` },
    k(['apply', '-f', files.namespaceManifest], `namespace ${o.namespace} for the WorkerPool`),
    { type: 'write', path: files.workerPoolManifest, mode: 0o644, content: renderWorkerPoolManifest(o), desc: `WorkerPool ${o.namespace}/${o.workerPool}` },
    {
      type: 'run',
      argv: ['./hack/run-tool.sh', 'ko', 'resolve', '-f', files.workerPoolManifest],
      cwd: o.substrateDir,
      env: { KO_DOCKER_REPO, KO_DEFAULTPLATFORMS: `linux/${o.goarch}` },
      stdoutTo: { path: files.workerPoolResolved, mode: 0o644, nonEmpty: true },
      timeoutSecs: STEP_LIMITS.koResolve,
      desc: 'build and push the gVisor worker image (ko, upstream hack/run-tool.sh)',
    },
    k(['apply', '-f', files.workerPoolResolved], `WorkerPool ${o.namespace}/${o.workerPool}`),
    k(
      ['-n', o.namespace, 'wait', `workerpool.ate.dev/${o.workerPool}`, `--for=jsonpath={.status.readyReplicas}=${o.workers}`, `--timeout=${o.timeout}`],
      `${o.workers} ready worker${o.workers === 1 ? '' : 's'}`,
      { timeoutSecs: waitLimit },
    ),
    {
      type: 'background',
      argv: [...kubectl, 'port-forward', '-n', ATE_NAMESPACE, 'svc/api', `${o.apiPort}:443`, '--address', '127.0.0.1'],
      logPath: files.apiLog,
      pidPath: files.apiPid,
      desc: 'port-forward to the API',
    },
    { type: 'wait-tcp', host: '127.0.0.1', port: o.apiPort, timeoutSecs: STEP_LIMITS.portForward, logPath: files.apiLog, desc: 'API port-forward listening' },
    {
      type: 'background',
      argv: [...kubectl, 'port-forward', '-n', ATE_NAMESPACE, 'svc/atenet-router', `${o.routerPort}:80`, '--address', '127.0.0.1'],
      logPath: files.routerLog,
      pidPath: files.routerPid,
      desc: 'port-forward to the router',
    },
    { type: 'wait-tcp', host: '127.0.0.1', port: o.routerPort, timeoutSecs: STEP_LIMITS.portForward, logPath: files.routerLog, desc: 'router port-forward listening' },
    { type: 'write', path: files.driverConfig, mode: 0o644, content: renderDriverConfig(o), desc: 'driver config' },
  ];
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
    { type: 'run', argv: ['kind', 'delete', 'cluster', '--name', o.clusterName], timeoutSecs: 300, desc: 'delete the kind cluster' },
  ];
  if (!o.keepRegistry) {
    steps.push({
      type: 'run',
      onlyIf: ['docker', 'ps', '--all', '--quiet', '--filter', `name=^${REGISTRY_CONTAINER}$`, '--filter', `label=${REGISTRY_LABEL}`],
      argv: ['docker', 'rm', '--force', REGISTRY_CONTAINER],
      allowFail: true,
      timeoutSecs: STEP_LIMITS.kubectl,
      desc: `remove the registry container ${REGISTRY_CONTAINER} (only the one hack/create-kind-cluster.sh labelled ${REGISTRY_LABEL})`,
    });
  }
  steps.push({
    type: 'remove',
    paths: [
      files.tokenPath,
      files.kubeconfig,
      files.caPath,
      files.driverConfig,
      files.namespaceManifest,
      files.workerPoolManifest,
      files.workerPoolResolved,
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

/** @param {number} secs */
function limitText(secs) {
  return secs % 60 === 0 ? `${secs / 60}m` : `${secs}s`;
}

/**
 * One plan line: '+ ' and the step as a shell command (or, for file writes and the TCP wait, a self-describing
 * pseudo-command), with the step's time limit as a trailing comment. Never contains secrets: tokens only ever go
 * to files, and the only environment values shown are the ones the plan sets.
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
      if (s.onlyIf) line = `[ -n "$(${shellJoin(s.onlyIf)})" ] && ${line}`;
      if (s.allowFail) line += ' || true';
      return `+ ${line}  # limit ${limitText(s.timeoutSecs)}`;
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

/**
 * The whole plan: optional '# ' header lines, then one '+ ' line per step, newline-terminated.
 * @param {Step[]} steps @param {string[]} [header]
 */
export function formatPlan(steps, header = []) {
  return [...header.map((h) => `# ${h}\n`), ...steps.map((s) => `${formatStep(s)}\n`)].join('');
}

/**
 * Header of kind-up's plan: what it installs, from where, what the checkout check found, and the environment
 * names the children get.
 * @param {KindUpOptions} o
 * @param {{ verified: false } | { verified: true, head: string, tags: string[], dirty: string[], testOverride: boolean }} check
 */
export function kindUpPlanHeader(o, check) {
  const lines = [`kind-up: Agent Substrate ${SUBSTRATE_RELEASE.tag} (${SUBSTRATE_RELEASE.commit}) on kind cluster "${o.clusterName}" from ${o.substrateDir}`];
  if (!check.verified) {
    lines.push('checkout: NOT verified (--no-verify-checkout, dry run only)');
  } else {
    const dirty = check.dirty.length === 0 ? 'no changes to tracked files' : `${check.dirty.length} changed tracked file(s), accepted by --allow-dirty`;
    lines.push(`checkout: HEAD ${check.head}, tag ${SUBSTRATE_RELEASE.tag}, ${dirty} (verified read-only with git)`);
    if (check.testOverride) lines.push(`checkout: TEST-ONLY expected commit from ${TEST_ONLY_COMMIT_ENV}; this is not the released ${SUBSTRATE_RELEASE.tag}`);
  }
  lines.push(`child environment: only ${CHILD_ENV_NAMES.join(' ')} (each when set), plus the NAME=value pairs a step shows`);
  return lines;
}
