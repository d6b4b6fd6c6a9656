// Where tests/live/ runs: a real Substrate v0.4 `ate-api-server` configured by the SUBSTRATE_LIVE_* variables, or,
// when none is set, the local Substrate listening on TCP 127.0.0.1 with TLS (a certificate naming
// api.ate-system.svc) and bearer-JWT auth, so the suite's assertions execute in CI over exactly the client path a
// cluster needs: api_tls_ca_path + api_tls_server_name + api_bearer_token_path. The real-cluster run is then
// reported as not run (the suite says so once, and its README); it is never counted as a cluster pass.
//
// Real-cluster variables (see tests/live/README.md; scripts/kind-up.mjs prints them):
//   required  SUBSTRATE_LIVE_API_ENDPOINT        host:port of ate-api-server (e.g. kubectl -n ate-system port-forward svc/api 8443:443)
//             SUBSTRATE_LIVE_CA_PATH             PEM CA bundle of the API server's certificate
//             SUBSTRATE_LIVE_BEARER_TOKEN_PATH   a token for audience api.ate-system.svc
//                                                (kubectl -n ate-system create token ate-client --audience=api.ate-system.svc)
//             SUBSTRATE_LIVE_ROUTER_URL          the atenet router (kubectl -n ate-system port-forward svc/atenet-router 8000:80):
//                                                the driver delivers each sandbox's identity through it after restore
//             SUBSTRATE_LIVE_TEMPLATE_NAME       a pre-provisioned ActorTemplate "atespace/name" with a golden tag; its
//                                                atespace is the workspace of the sandbox that uses it (v0.4 keeps an
//                                                actor and its template in one atespace)
//             SUBSTRATE_LIVE_TEST_IMAGE          digest-pinned image for the template the driver synthesizes; it must
//                                                hold the driver's bootstrap agent (/usr/bin/node and
//                                                /opt/openshell-substrate/bootstrap-agent.mjs, as every local image)
//             SUBSTRATE_LIVE_SNAPSHOTS_LOCATION  snapshotConfig.storage_location of synthesized templates (gs://bucket/prefix/)
//   optional  SUBSTRATE_LIVE_TLS_SERVER_NAME     default api.ate-system.svc
//             SUBSTRATE_LIVE_NAMESPACE           with SUBSTRATE_LIVE_KUBECONFIG: namespace of the driver's sandbox records
//                                                (Secrets); without a kubeconfig the records are the driver's SQLite file
//             SUBSTRATE_LIVE_KUBECONFIG, SUBSTRATE_LIVE_KUBE_CONTEXT   the driver's record store in the cluster
//             SUBSTRATE_LIVE_WORKER_SELECTOR     k=v,k=v over worker labels
//             SUBSTRATE_LIVE_COMMAND             JSON argv of the workload (default: a shell that waits forever)
//   ignored   SUBSTRATE_LIVE_PAUSE_IMAGE (v0.4: the pause image belongs to the SandboxConfig), SUBSTRATE_LIVE_WORKER_POOL,
//             SUBSTRATE_LIVE_RUNSC_AMD64_*: v0.4's ateapi has no such settings.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureKeypair, mintApiToken, publicJwks } from '../../scripts/lib/jwt.mjs';
import { ensureDefaultImage } from '../../src/local/images.js';
import { startLocalSubstrate, type LocalSubstrateHandle } from '../../src/local/index.js';

export const REQUIRED_VARS = [
  'SUBSTRATE_LIVE_API_ENDPOINT',
  'SUBSTRATE_LIVE_CA_PATH',
  'SUBSTRATE_LIVE_BEARER_TOKEN_PATH',
  'SUBSTRATE_LIVE_ROUTER_URL',
  'SUBSTRATE_LIVE_TEMPLATE_NAME',
  'SUBSTRATE_LIVE_TEST_IMAGE',
  'SUBSTRATE_LIVE_SNAPSHOTS_LOCATION',
] as const;
export const OPTIONAL_VARS = [
  'SUBSTRATE_LIVE_TLS_SERVER_NAME',
  'SUBSTRATE_LIVE_NAMESPACE',
  'SUBSTRATE_LIVE_KUBECONFIG',
  'SUBSTRATE_LIVE_KUBE_CONTEXT',
  'SUBSTRATE_LIVE_WORKER_SELECTOR',
  'SUBSTRATE_LIVE_COMMAND',
] as const;
const IGNORED_VARS = ['SUBSTRATE_LIVE_PAUSE_IMAGE', 'SUBSTRATE_LIVE_WORKER_POOL', 'SUBSTRATE_LIVE_RUNSC_AMD64_SHA', 'SUBSTRATE_LIVE_RUNSC_AMD64_URL'];

export const API_SERVER_NAME = 'api.ate-system.svc';
export const LOCAL_ISSUER = 'https://kubernetes.default.svc.cluster.local';

/**
 * A workload keeping a counter in memory (the local target's default image runs Node). /env reports the
 * identity the driver delivered into its environment after restore; the token only as its SHA-256, never echoed.
 */
export const COUNTER_JS = `
const http = require('http'), crypto = require('crypto');
let n = 0;
http.createServer((q, s) => {
  if (q.url === '/readyz') return s.end('ok');
  if (q.url === '/count') { n++; return s.end(JSON.stringify({ n })); }
  if (q.url === '/env') {
    const e = process.env, tok = e.OPENSHELL_SANDBOX_TOKEN;
    return s.end(JSON.stringify({ id: e.OPENSHELL_SANDBOX_ID, name: e.OPENSHELL_SANDBOX, tokenSha: tok ? crypto.createHash('sha256').update(tok).digest('hex') : null }));
  }
  s.end('hello');
}).listen(80);
`;

export interface LiveTarget {
  kind: 'cluster' | 'local';
  /** One line saying what runs against what (printed once). */
  summary: string;
  apiEndpoint: string;
  /** Namespace of the driver's record Secrets (cluster with a kubeconfig); '' = the driver's SQLite records. */
  namespace: string;
  caPath: string;
  tlsServerName: string;
  /** The token file the DRIVER reads: a private copy, so the tests may rotate and break it. */
  tokenPath: string;
  /** A valid token for the target (never printed). */
  validToken(): Promise<string>;
  /** "atespace/name" of the pre-provisioned ActorTemplate (golden tag published). */
  template: string;
  /** The actor router: the driver delivers each sandbox's identity through it after restore. */
  routerUrl: string;
  image: string;
  snapshotsLocation: string;
  kubeconfigPath: string;
  kubeContext: string;
  workerSelector: string;
  command: string[];
  /** Every secret value the tests wrote (tokens); none may appear in driver output. */
  secrets: Set<string>;
  close(): Promise<void>;
}

/** The unset required variables (all of them when none is set). */
export function missingLiveVars(env: NodeJS.ProcessEnv = process.env): string[] {
  return REQUIRED_VARS.filter((v) => !env[v]?.trim());
}

/** Resolves the target; throws when the live variables are only partly set (a misconfiguration, not a skip). */
export async function resolveTarget(workDir: string, env: NodeJS.ProcessEnv = process.env): Promise<LiveTarget> {
  const missing = missingLiveVars(env);
  const anySet = [...REQUIRED_VARS, ...OPTIONAL_VARS].some((v) => env[v]?.trim());
  if (missing.length === 0) return clusterTarget(workDir, env);
  if (anySet) {
    throw new Error(
      `tests/live: some SUBSTRATE_LIVE_* variables are set but these required ones are not: ${missing.join(', ')}. ` +
        'Set all of them to run against a real ate-api-server, or unset them all to run against the local Substrate.',
    );
  }
  return localTarget(workDir);
}

function writePrivate(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, 0o600);
}

async function clusterTarget(workDir: string, env: NodeJS.ProcessEnv): Promise<LiveTarget> {
  const v = (k: string) => env[k]!.trim();
  const tokenPath = join(workDir, 'token');
  const readOriginal = async () => readFileSync(v('SUBSTRATE_LIVE_BEARER_TOKEN_PATH'), 'utf8').trim();
  const original = await readOriginal();
  if (!original) throw new Error(`SUBSTRATE_LIVE_BEARER_TOKEN_PATH ${v('SUBSTRATE_LIVE_BEARER_TOKEN_PATH')} is empty`);
  writePrivate(tokenPath, original + '\n');
  let command = ['/bin/sh', '-c', 'trap "exit 0" TERM; while :; do sleep 3600 & wait $!; done'];
  if (env.SUBSTRATE_LIVE_COMMAND?.trim()) {
    const parsed = JSON.parse(env.SUBSTRATE_LIVE_COMMAND) as unknown;
    if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((x) => typeof x === 'string')) {
      throw new Error('SUBSTRATE_LIVE_COMMAND must be a JSON array of strings, e.g. ["/bin/sh","-c","..."]');
    }
    command = parsed as string[];
  }
  const ignored = IGNORED_VARS.filter((k) => env[k]);
  const template = v('SUBSTRATE_LIVE_TEMPLATE_NAME');
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(template)) {
    throw new Error(`SUBSTRATE_LIVE_TEMPLATE_NAME must be "atespace/name" (v0.4 templates live in an atespace), got ${JSON.stringify(template)}`);
  }
  return {
    kind: 'cluster',
    summary:
      `real ate-api-server at ${v('SUBSTRATE_LIVE_API_ENDPOINT')} (TLS server name ${env.SUBSTRATE_LIVE_TLS_SERVER_NAME?.trim() || API_SERVER_NAME}, ` +
      `router ${v('SUBSTRATE_LIVE_ROUTER_URL')}, template ${template})` +
      (ignored.length ? `; ignoring ${ignored.join(', ')} (no such setting in Substrate v0.4)` : ''),
    apiEndpoint: v('SUBSTRATE_LIVE_API_ENDPOINT'),
    namespace: env.SUBSTRATE_LIVE_KUBECONFIG?.trim() ? env.SUBSTRATE_LIVE_NAMESPACE?.trim() || 'openshell-live' : '',
    caPath: v('SUBSTRATE_LIVE_CA_PATH'),
    tlsServerName: env.SUBSTRATE_LIVE_TLS_SERVER_NAME?.trim() || API_SERVER_NAME,
    tokenPath,
    validToken: readOriginal,
    template,
    routerUrl: v('SUBSTRATE_LIVE_ROUTER_URL'),
    image: v('SUBSTRATE_LIVE_TEST_IMAGE'),
    snapshotsLocation: v('SUBSTRATE_LIVE_SNAPSHOTS_LOCATION'),
    kubeconfigPath: env.SUBSTRATE_LIVE_KUBECONFIG?.trim() ?? '',
    kubeContext: env.SUBSTRATE_LIVE_KUBE_CONTEXT?.trim() ?? '',
    workerSelector: env.SUBSTRATE_LIVE_WORKER_SELECTOR?.trim() ?? '',
    command,
    secrets: new Set([original]),
    close: async () => undefined,
  };
}

/** A self-signed certificate for api.ate-system.svc and 127.0.0.1, as a cluster's API certificate names it. */
export function makeServerCert(dir: string, cn = API_SERVER_NAME): { certPath: string; keyPath: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-keyout', keyPath, '-out', certPath, '-subj', `/CN=${cn}`,
      '-addext', `subjectAltName=DNS:${cn},IP:127.0.0.1`,
    ],
    { stdio: 'ignore' },
  );
  return { certPath, keyPath };
}

async function localTarget(workDir: string): Promise<LiveTarget> {
  const stateDir = join(workDir, 'substrate');
  const { certPath, keyPath } = makeServerCert(join(workDir, 'tls'));
  // The API's signing key (what a cluster's service-account issuer holds) and its public JWKS.
  const jwtDir = join(workDir, 'jwt');
  ensureKeypair(jwtDir, { alg: 'EdDSA' });
  const jwksPath = join(workDir, 'jwks.json');
  writeFileSync(jwksPath, JSON.stringify(await publicJwks(jwtDir)));
  let local: LocalSubstrateHandle | undefined = await startLocalSubstrate({
    stateDir,
    listen: '127.0.0.1:0',
    routerListen: '127.0.0.1:0',
    workers: 2,
    tls: { certPath, keyPath },
    auth: { jwksPath, issuer: LOCAL_ISSUER, audience: API_SERVER_NAME },
  });
  try {
    const secrets = new Set<string>();
    const mint = async () => {
      // A distinct iat per token, so a rotation really changes the file's content.
      const t = await mintApiToken(jwtDir, { issuer: LOCAL_ISSUER, audience: API_SERVER_NAME, ttlSecs: 3600, now: Math.floor(Date.now() / 1000) - secrets.size });
      secrets.add(t);
      return t;
    };
    const tokenPath = join(workDir, 'token');
    writePrivate(tokenPath, (await mint()) + '\n');
    const image = (await ensureDefaultImage(stateDir)).ref;
    // The operator's pre-provisioned template lives in its own atespace (the sandbox that uses it is in that
    // workspace); the suite creates it through the authenticated TCP API, as an operator would.
    const preAtespace = `lp-${randomBytes(3).toString('hex')}`;
    const h = local;
    return {
      kind: 'local',
      summary: `local Substrate on ${local.apiEndpoint} (TLS certificate for ${API_SERVER_NAME}, bearer-JWT auth, router ${local.routerUrl})`,
      apiEndpoint: local.apiEndpoint,
      namespace: '',
      caPath: certPath,
      tlsServerName: API_SERVER_NAME,
      tokenPath,
      validToken: mint,
      template: `${preAtespace}/live-counter`,
      routerUrl: local.routerUrl,
      image,
      snapshotsLocation: 'gs://live-tests/snapshots/',
      kubeconfigPath: '',
      kubeContext: '',
      workerSelector: '',
      command: ['/usr/bin/node', '-e', COUNTER_JS],
      secrets,
      close: async () => {
        await h.stop();
        local = undefined;
      },
    };
  } catch (e) {
    await local?.stop();
    throw e;
  }
}

/** The driver's TOML config for a target: exactly the cluster-shaped client path. */
export function driverToml(t: LiveTarget, over: { caPath?: string; tlsServerName?: string } = {}): string {
  const q = (s: string) => JSON.stringify(s);
  const lines = [
    '[openshell.drivers.substrate]',
    `api_endpoint = ${q(t.apiEndpoint)}`,
    `api_tls_ca_path = ${q(over.caPath ?? t.caPath)}`,
    `api_tls_server_name = ${q(over.tlsServerName ?? t.tlsServerName)}`,
    `api_bearer_token_path = ${q(t.tokenPath)}`,
    `router_url = ${q(t.routerUrl)}`,
    `snapshots_location = ${q(t.snapshotsLocation)}`,
    `default_image = ${q(t.image)}`,
    'log_level = "info"',
    // v0.4 templates carry no labels: the operator makes the pre-provisioned one attachable here.
    `template_labels = { ${q(t.template)} = { "openshell.ai/sandbox-attachable" = "true" } }`,
  ];
  if (t.namespace) lines.push(`default_namespace = ${q(t.namespace)}`);
  if (t.kubeconfigPath) lines.push(`kubeconfig = ${q(t.kubeconfigPath)}`);
  if (t.kubeContext) lines.push(`kube_context = ${q(t.kubeContext)}`);
  if (t.workerSelector) lines.push(`worker_selector = ${q(t.workerSelector)}`);
  return lines.join('\n') + '\n';
}
