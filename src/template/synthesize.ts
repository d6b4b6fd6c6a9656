// The driver's pure ActorTemplate synthesis: one `ate.dev/v1alpha1` ActorTemplate per sandbox, built from the
// DriverSandbox the gateway sent and the driver's config. The result satisfies every CRD rule (it is
// validated before it is returned), carries the owner annotation so only driver-made templates are ever
// deleted, has a deterministic DNS-1123 name, and wires the OpenShell supervisor's environment
// (compute-driver.md §6.2/§6.3): driver-set values override user values, the sandbox token is only ever a
// secretKeyRef (never a literal), and the gateway's command is forwarded exactly through
// OPENSHELL_MAIN_PROCESS_SPEC. No idle `sleep` workload is ever installed.
//
// Two credential modes:
//   * OpenShell 0.0.x gateways (no launch authentication): the token by Secret reference, as above.
//   * OpenShell v0.1 gateways (the sandbox carries `launch_authentication`, or the caller passes
//     `launchDelivery`): the template holds NO token and NO Secret reference. The container command is wrapped
//     with the bootstrap agent (src/sandbox/bootstrap-agent.mjs), to which the driver delivers each sandbox's
//     own bundle after the actor runs (src/driver/launch.ts). The template may carry the gateway's PUBLIC
//     verification keys (OPENSHELL_SUBSTRATE_GATEWAY_KEYS) as the agent's trust anchor.
import { createHash } from 'node:crypto';
import { ApiError, Code } from '../common/errors.js';
import { isDnsLabel, labelValueError, qualifiedNameError } from '../common/dns.js';
import type { DriverSandbox } from '../gen/compute_driver.js';
import type { ActorTemplate, Container, EnvVar } from './types.js';
import { RESERVED_CONTAINER_NAME, validateActorTemplate } from './validate.js';
import { parseQuantity } from '../common/quantity.js';
import { AGENT_IMAGE_PATH } from '../sandbox/bootstrap-agent.mjs';
import { LaunchError, parseLaunchAuthentication, type GatewayKey } from '../sandbox/launch-auth.mjs';

export interface SynthesisConfig {
  namespace: string;
  pauseImage: string;
  snapshotsLocation: string;
  sandboxClass: 'gvisor' | 'microvm';
  workerSelector?: Record<string, string>;
  /** The gateway gRPC URL as reachable from inside the sandbox. Empty: OPENSHELL_ENDPOINT is not set. */
  gatewayEndpoint: string;
  /**
   * Optional wrapper argv, e.g. ["/usr/local/bin/openshell-sandbox"], used as the container command with no
   * trailing arguments (the supervisor reads OPENSHELL_MAIN_PROCESS_SPEC). Unset: the sandbox's own command.
   */
  supervisorCommand?: string[];
  readyz?: { path: string; port: number };
  /**
   * The argv prefix that runs the launch-credential bootstrap agent in front of the container command (v0.1
   * gateways only). Default BOOTSTRAP_AGENT_COMMAND (the agent in every local image, run by the image's node).
   */
  bootstrapAgentCommand?: string[];
}

export interface LaunchDeliveryTemplateOptions {
  /**
   * The gateway's public verification keys (PEM strings) the agent trusts; sorted by key id in the template.
   * Undefined or empty: none in the template, the agent trusts the first bundle that verifies (trust on first
   * use). Default when synthesizing from a sandbox that carries launch_authentication: the bundle's keys.
   */
  gatewayKeys?: readonly GatewayKey[];
}

export interface SynthesisOptions {
  /**
   * Whether a token Secret exists (or will, before the actor starts) for this sandbox. Default: whether
   * `spec.sandbox_token` is non-empty. The gateway sends the token on Create only, so a re-synthesis later must
   * pass this explicitly.
   */
  hasToken?: boolean;
  /**
   * Launch-authentication mode (OpenShell v0.1): no token and no Secret reference in the template, the command
   * wrapped with the bootstrap agent. Default: on when `spec.launch_authentication` is non-empty (its public keys
   * become the trust anchor). The gateway sends the bundle on Create only, so a re-synthesis later must pass this
   * (with the same keys) explicitly; `false` forces the 0.0.x token mode.
   */
  launchDelivery?: LaunchDeliveryTemplateOptions | false;
}

/** Runs the bootstrap agent (src/sandbox/bootstrap-agent.mjs) with the image's node, then the container command. */
export const BOOTSTRAP_AGENT_COMMAND: readonly string[] = ['/usr/bin/node', AGENT_IMAGE_PATH, '--'];

export const DRIVER_NAME = 'openshell-driver-substrate';
/** On every template the driver creates; the driver deletes only templates carrying it with this value. */
export const OWNER_ANNOTATION = 'openshell.ai/owned-by';
export const OWNER_VALUE = DRIVER_NAME;
export const SANDBOX_ID_ANNOTATION = 'openshell.ai/sandbox-id';
export const SANDBOX_NAME_ANNOTATION = 'openshell.ai/sandbox-name';
export const WORKSPACE_ANNOTATION = 'openshell.ai/workspace';
/** Label keys (same names as the annotations) for selecting by sandbox; set only when the value is a valid label value. */
export const SANDBOX_ID_LABEL = SANDBOX_ID_ANNOTATION;
export const SANDBOX_NAME_LABEL = SANDBOX_NAME_ANNOTATION;
export const WORKSPACE_LABEL = WORKSPACE_ANNOTATION;
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';

/** The workload container's name (never `pause`, which atelet reserves). */
export const CONTAINER_NAME = 'sandbox';
/** The key inside the per-sandbox token Secret. */
export const TOKEN_SECRET_KEY = 'token';
/** The gateway's scratch default when a sandbox has no command (compute-driver.md §2.2, §6.3). */
export const DEFAULT_COMMAND: readonly string[] = ['/bin/bash', '-l'];

export const ENV = {
  SANDBOX_ID: 'OPENSHELL_SANDBOX_ID',
  SANDBOX: 'OPENSHELL_SANDBOX',
  ENDPOINT: 'OPENSHELL_ENDPOINT',
  MAIN_PROCESS_SPEC: 'OPENSHELL_MAIN_PROCESS_SPEC',
  LOG_LEVEL: 'OPENSHELL_LOG_LEVEL',
  SANDBOX_TOKEN: 'OPENSHELL_SANDBOX_TOKEN',
  SANDBOX_TOKEN_FILE: 'OPENSHELL_SANDBOX_TOKEN_FILE',
  /** The bootstrap agent's trust anchor: JSON [{key_id, public_key_pem}] of public keys (never a secret). */
  GATEWAY_KEYS: 'OPENSHELL_SUBSTRATE_GATEWAY_KEYS',
  /** The bootstrap agent's port; the driver never sets it (the agent's default 17461), users may not. */
  BOOTSTRAP_PORT: 'OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT',
} as const;

/** Names the driver owns: any user value for them is dropped (and the driver's set, where it has one). */
const DRIVER_ENV_NAMES = new Set<string>(Object.values(ENV));

const MAX_ENV = 32;
const MAX_COMMAND = 64;
const ENV_NAME = /^[ -<>-~]+$/;

function boundedName(prefix: string, id: string, suffix: string): string {
  const body = id.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  const plain = `${prefix}${body}${suffix}`;
  if (body === id && plain.length <= 63 && isDnsLabel(plain)) return plain;
  // Mapped or too long: keep a readable prefix of the id and add a hash of the exact id so distinct ids
  // never collide.
  const hash = createHash('sha256').update(id).digest('hex').slice(0, 10);
  const room = 63 - prefix.length - suffix.length - hash.length - 1;
  const kept = body.slice(0, Math.max(0, room)).replace(/-+$/, '').replace(/^-+/, '');
  return `${prefix}${kept ? `${kept}-` : ''}${hash}${suffix}`;
}

/** Deterministic DNS-1123 label (≤ 63) for a sandbox's ActorTemplate: "oss-" + id, hashed when mapped or truncated. */
export function templateNameFor(sandboxId: string): string {
  return boundedName('oss-', sandboxId, '');
}

/** Deterministic DNS-1123 label for the Secret holding a sandbox's token under key `token`. */
export function tokenSecretNameFor(sandboxId: string): string {
  return boundedName('oss-', sandboxId, '-token');
}

/** `{"version":1,"command":[...],"tty":bool}` in exactly that key order (serde order of MainProcessConfig). */
/**
 * MainProcessConfig JSON (version 1). `await_main_process_attachment` (a v0.1 gateway's one-shot hint that the
 * creating client will attach: the supervisor keeps the terminal transport until it does) is written only
 * when set, so 0.0.x supervisors see the exact document they always did.
 */
export function mainProcessSpec(command: readonly string[], tty: boolean, awaitAttachment = false): string {
  return JSON.stringify({ version: 1, command: [...command], tty, ...(awaitAttachment ? { await_main_process_attachment: true } : {}) });
}

/** The command and tty the supervisor must run: the gateway's, or the scratch default when absent. */
export function mainProcessOf(sandbox: DriverSandbox): { command: string[]; tty: boolean } {
  const cmd = sandbox.spec?.command ?? [];
  if (cmd.length === 0) return { command: [...DEFAULT_COMMAND], tty: true };
  return { command: [...cmd], tty: sandbox.spec?.tty ?? false };
}

const invalidArg = (m: string) => new ApiError(Code.INVALID_ARGUMENT, m);
const badConfig = (m: string) => new ApiError(Code.FAILED_PRECONDITION, m);

function checkConfig(cfg: SynthesisConfig): void {
  if (!isDnsLabel(cfg.namespace)) {
    throw badConfig(`driver config: namespace ${JSON.stringify(cfg.namespace)} is not a valid Kubernetes namespace name (DNS-1123 label, at most 63 characters)`);
  }
  if (!cfg.pauseImage) throw badConfig('driver config: pause_image is not set; set it to a digest-pinned image such as registry.k8s.io/pause:3.10.2@sha256:<digest>');
  if (!cfg.pauseImage.includes('@')) {
    throw badConfig(`driver config: pause_image ${JSON.stringify(cfg.pauseImage)} is not pinned; ActorTemplates require a digest reference (image@sha256:<digest>) because changing the image invalidates snapshots`);
  }
  if (!cfg.snapshotsLocation) throw badConfig('driver config: snapshots_location is not set (e.g. gs://bucket/prefix/)');
  if (cfg.sandboxClass !== 'gvisor' && cfg.sandboxClass !== 'microvm') {
    throw badConfig(`driver config: sandbox class ${JSON.stringify(cfg.sandboxClass)} is not supported; use "gvisor" or "microvm"`);
  }
  for (const [k, v] of Object.entries(cfg.workerSelector ?? {})) {
    const ke = qualifiedNameError(k);
    if (ke) throw badConfig(`driver config: worker_selector key ${JSON.stringify(k)} is not a valid label key: ${ke}`);
    const ve = labelValueError(v);
    if (ve) throw badConfig(`driver config: worker_selector value for ${JSON.stringify(k)} is not a valid label value: ${ve}`);
  }
  if (cfg.supervisorCommand && (cfg.supervisorCommand.length === 0 || !cfg.supervisorCommand[0])) {
    throw badConfig('driver config: supervisor command must be a non-empty argv whose first element is the supervisor binary');
  }
  if (cfg.supervisorCommand && cfg.supervisorCommand.length > MAX_COMMAND) {
    throw badConfig(`driver config: supervisor command has ${cfg.supervisorCommand.length} items; an ActorTemplate container command allows at most ${MAX_COMMAND}`);
  }
  if (cfg.bootstrapAgentCommand && (cfg.bootstrapAgentCommand.length === 0 || !cfg.bootstrapAgentCommand[0] || cfg.bootstrapAgentCommand.length > 8)) {
    throw badConfig('driver config: the bootstrap agent command must be a non-empty argv of at most 8 items whose first element is a program');
  }
  if (cfg.readyz) {
    const { port, path } = cfg.readyz;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw badConfig(`driver config: readyz port ${port} must be an integer from 1 to 65535`);
    if (!/^\/([A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$/.test(path) || path.length > 1024) {
      throw badConfig(`driver config: readyz path ${JSON.stringify(path)} must be an absolute URL path without query or fragment (at most 1024 characters)`);
    }
  }
}

/** How the template carries credentials: a Secret reference (0.0.x), launch delivery (v0.1), or nothing. */
type CredentialMode = { kind: 'token' } | { kind: 'none' } | { kind: 'launch'; gatewayKeys: GatewayKey[] };

function buildEnv(sandbox: DriverSandbox, cfg: SynthesisConfig, mode: CredentialMode): EnvVar[] {
  const spec = sandbox.spec;
  // Template first, the spec wins (the Docker driver's precedence, compute-driver.md §2.2).
  const merged = new Map<string, string>();
  for (const [k, v] of Object.entries(spec?.template?.environment ?? {})) merged.set(k, v);
  for (const [k, v] of Object.entries(spec?.environment ?? {})) merged.set(k, v);
  for (const k of DRIVER_ENV_NAMES) merged.delete(k);

  const bad = [...merged.keys()].filter((k) => k.length === 0 || !ENV_NAME.test(k));
  if (bad.length > 0) {
    throw invalidArg(
      `sandbox ${JSON.stringify(sandbox.name)}: environment variable name(s) ${bad.map((b) => JSON.stringify(b)).join(', ')} are not allowed; names must be non-empty printable ASCII without '=' (ActorTemplate env name pattern ^[ -<>-~]+$)`,
    );
  }

  // Sorted so the same sandbox always yields the same spec (the spec is immutable once applied).
  const env: EnvVar[] = [...merged.keys()].sort().map((name) => ({ name, value: merged.get(name)! }));
  const main = mainProcessOf(sandbox);
  env.push({ name: ENV.SANDBOX_ID, value: sandbox.id });
  env.push({ name: ENV.SANDBOX, value: sandbox.name });
  if (cfg.gatewayEndpoint) env.push({ name: ENV.ENDPOINT, value: cfg.gatewayEndpoint });
  env.push({ name: ENV.LOG_LEVEL, value: spec?.logLevel || 'info' });
  env.push({ name: ENV.MAIN_PROCESS_SPEC, value: mainProcessSpec(main.command, main.tty, spec?.awaitMainProcessAttachment === true) });
  if (mode.kind === 'token') {
    env.push({ name: ENV.SANDBOX_TOKEN, valueFrom: { secretKeyRef: { name: tokenSecretNameFor(sandbox.id), key: TOKEN_SECRET_KEY } } });
  } else if (mode.kind === 'launch' && mode.gatewayKeys.length > 0) {
    // Public keys only: the same slot the token reference takes in 0.0.x mode.
    env.push({ name: ENV.GATEWAY_KEYS, value: JSON.stringify(mode.gatewayKeys.map((k) => ({ key_id: k.key_id, public_key_pem: k.public_key_pem }))) });
  }
  if (env.length > MAX_ENV) {
    const driverCount = env.length - merged.size;
    const over = env.length - MAX_ENV;
    throw invalidArg(
      `sandbox ${JSON.stringify(sandbox.name)} needs ${env.length} environment variables (${merged.size} from spec.environment and template.environment, ${driverCount} set by the driver for the supervisor); an ActorTemplate container allows at most ${MAX_ENV}: remove at least ${over} user variable(s)`,
    );
  }
  return env;
}

function buildLabels(sandbox: DriverSandbox): { labels: Record<string, string>; annotations: Record<string, string> } {
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(sandbox.spec?.template?.labels ?? {})) {
    const ke = qualifiedNameError(k);
    if (ke) throw invalidArg(`sandbox ${JSON.stringify(sandbox.name)}: template label key ${JSON.stringify(k)} is not a valid Kubernetes label key: ${ke}`);
    const ve = labelValueError(v);
    if (ve) throw invalidArg(`sandbox ${JSON.stringify(sandbox.name)}: template label ${JSON.stringify(k)} has an invalid value: ${ve}`);
    labels[k] = v;
  }
  labels[MANAGED_BY_LABEL] = DRIVER_NAME;
  for (const [k, v] of [
    [SANDBOX_ID_LABEL, sandbox.id],
    [SANDBOX_NAME_LABEL, sandbox.name],
    [WORKSPACE_LABEL, sandbox.workspace],
  ] as const) {
    if (v && labelValueError(v) === null) labels[k] = v;
    else delete labels[k];
  }
  const annotations: Record<string, string> = {
    [OWNER_ANNOTATION]: OWNER_VALUE,
    [SANDBOX_ID_ANNOTATION]: sandbox.id,
    [SANDBOX_NAME_ANNOTATION]: sandbox.name,
    [WORKSPACE_ANNOTATION]: sandbox.workspace,
  };
  return { labels, annotations };
}

const KEY_ID = /^\S{1,256}$/;

function credentialModeOf(sandbox: DriverSandbox, opts: SynthesisOptions, who: string): CredentialMode {
  const bytes = sandbox.spec?.launchAuthentication;
  let keys: readonly GatewayKey[] | undefined;
  if (opts.launchDelivery === false) {
    // 0.0.x token mode forced: fall through below.
  } else if (opts.launchDelivery) {
    keys = opts.launchDelivery.gatewayKeys ?? [];
  } else if (bytes && bytes.length > 0) {
    try {
      keys = parseLaunchAuthentication(bytes).verification_keys;
    } catch (e) {
      // The parser names fields, never values.
      throw invalidArg(`sandbox ${who}: launch_authentication is invalid: ${e instanceof LaunchError ? e.message : 'it cannot be parsed'}`);
    }
  }
  if (keys === undefined) {
    const hasToken = opts.hasToken ?? (sandbox.spec?.sandboxToken ?? '') !== '';
    return hasToken ? { kind: 'token' } : { kind: 'none' };
  }
  const seen = new Set<string>();
  for (const k of keys) {
    if (!k || typeof k.key_id !== 'string' || !KEY_ID.test(k.key_id) || seen.has(k.key_id)) {
      throw invalidArg(`sandbox ${who}: gateway verification key ids must be unique, non-empty and without whitespace`);
    }
    seen.add(k.key_id);
    if (typeof k.public_key_pem !== 'string' || !/^-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END PUBLIC KEY-----\r?\n?$/.test(k.public_key_pem)) {
      throw invalidArg(`sandbox ${who}: gateway verification key ${JSON.stringify(k.key_id)} is not a PEM public key (only public keys may go into a template)`);
    }
  }
  const sorted = [...keys].sort((a, b) => (a.key_id < b.key_id ? -1 : a.key_id > b.key_id ? 1 : 0));
  return { kind: 'launch', gatewayKeys: sorted };
}

/**
 * Builds the sandbox's ActorTemplate. Throws ApiError: INVALID_ARGUMENT for a sandbox that cannot be expressed
 * (unpinned or missing image, too many env vars or command items, bad env names or labels),
 * FAILED_PRECONDITION for driver config that cannot be (unpinned pause image, bad namespace, ...), INTERNAL if
 * the result still fails CRD validation (a bug).
 */
export function synthesizeActorTemplate(sandbox: DriverSandbox, cfg: SynthesisConfig, opts: SynthesisOptions = {}): ActorTemplate {
  checkConfig(cfg);
  if (!sandbox.id) throw invalidArg('sandbox id is empty; the gateway must send the sandbox UUID');
  const who = JSON.stringify(sandbox.name || sandbox.id);
  const image = sandbox.spec?.template?.image ?? '';
  if (!image) {
    throw invalidArg(`sandbox ${who} has no image: set template.image to a digest-pinned image (image@sha256:<digest>) or configure the driver's default image`);
  }
  if (!image.includes('@')) {
    throw invalidArg(
      `sandbox ${who}: image ${JSON.stringify(image)} is not pinned; Substrate ActorTemplates require a digest reference such as ${image.split('@')[0]}@sha256:<digest> because changing the image invalidates snapshots; look up the digest in your registry and use the image@sha256:<digest> form`,
    );
  }
  const main = mainProcessOf(sandbox);
  if (!main.command[0]) throw invalidArg(`sandbox ${who}: command[0] is empty; the first element must be the program to run`);
  const mode = credentialModeOf(sandbox, opts, who);
  const inner = cfg.supervisorCommand ? [...cfg.supervisorCommand] : main.command;
  const command = mode.kind === 'launch' ? [...(cfg.bootstrapAgentCommand ?? BOOTSTRAP_AGENT_COMMAND), ...inner] : inner;
  if (command.length > MAX_COMMAND) {
    throw invalidArg(
      `sandbox ${who}: command has ${command.length} items${mode.kind === 'launch' ? ` (with the ${command.length - inner.length} of the bootstrap agent)` : ''}; an ActorTemplate container command allows at most ${MAX_COMMAND}`,
    );
  }
  const env = buildEnv(sandbox, cfg, mode);
  const { labels, annotations } = buildLabels(sandbox);

  const container: Container = { name: CONTAINER_NAME, image, command, env };
  if (cfg.readyz) container.readyz = { httpGet: { path: cfg.readyz.path, port: cfg.readyz.port } };
  if (container.name === RESERVED_CONTAINER_NAME) throw new ApiError(Code.INTERNAL, 'internal: container name collides with the pause container');

  const t: ActorTemplate = {
    apiVersion: 'ate.dev/v1alpha1',
    kind: 'ActorTemplate',
    metadata: { name: templateNameFor(sandbox.id), namespace: cfg.namespace, labels, annotations },
    spec: {
      pauseImage: cfg.pauseImage,
      containers: [container],
      snapshotsConfig: { location: cfg.snapshotsLocation, onPause: 'Full', onCommit: 'Full' },
      sandboxClass: cfg.sandboxClass,
    },
  };
  if (cfg.workerSelector && Object.keys(cfg.workerSelector).length > 0) {
    t.spec.workerSelector = { matchLabels: { ...cfg.workerSelector } };
  }
  const limits = resourceLimitsOf(sandbox, who);
  if (limits.length > 0) t.spec.resources = { limits };
  const problems = validateActorTemplate(t);
  if (problems.length > 0) {
    throw new ApiError(Code.INTERNAL, `internal: synthesized ActorTemplate ${t.metadata.name} fails CRD validation: ${problems.join('; ')}`);
  }
  return t;
}

/**
 * The gateway's cpu and memory limits as template resource limits (Substrate v0.4's shape). Requests have no
 * meaning for an actor (it gets a whole worker slot), so they are not carried.
 */
function resourceLimitsOf(sandbox: DriverSandbox, who: string): Array<{ name: 'cpu' | 'memory'; quantity: string }> {
  const r = sandbox.spec?.template?.resources;
  const out: Array<{ name: 'cpu' | 'memory'; quantity: string }> = [];
  for (const [name, q, field] of [
    ['cpu', r?.cpuLimit, 'cpu_limit'],
    ['memory', r?.memoryLimit, 'memory_limit'],
  ] as const) {
    if (!q) continue;
    const v = parseQuantity(q);
    if (v === undefined || v <= 0) throw invalidArg(`sandbox ${who}: template.resources.${field} ${JSON.stringify(q)} is not a positive quantity (like 500m, 2, 512Mi, 1Gi)`);
    if (name === 'cpu' && v >= 1000) throw invalidArg(`sandbox ${who}: template.resources.cpu_limit ${JSON.stringify(q)} must be less than 1000 cores`);
    if (name === 'memory' && v < 16 * 1024 * 1024) throw invalidArg(`sandbox ${who}: template.resources.memory_limit ${JSON.stringify(q)} is below the 16Mi an actor needs`);
    out.push({ name, quantity: q });
  }
  return out;
}

/**
 * The error synthesis would raise for this sandbox, or null. Counts the token env slot even when the token is
 * not known yet (ValidateSandboxCreate runs before the gateway mints it), and the bootstrap agent's command
 * items (a v0.1 gateway's Create carries launch authentication), so a sandbox that validates also synthesizes
 * on Create whichever gateway generation sends it.
 */
export function synthesisProblem(sandbox: DriverSandbox, cfg: SynthesisConfig): ApiError | null {
  try {
    synthesizeActorTemplate(sandbox, cfg, { hasToken: true });
    // A v0.1 gateway's Create carries launch authentication (Validate does not): the agent's argv counts too.
    synthesizeActorTemplate(sandbox, cfg, { launchDelivery: { gatewayKeys: [] } });
    return null;
  } catch (e) {
    if (e instanceof ApiError) return e;
    return new ApiError(Code.INTERNAL, `internal: ${(e as Error).message}`);
  }
}

/** ValidateSandboxCreate reuse: the message of the synthesis problem, or null when the sandbox is fine. */
export function validateSandboxForSynthesis(sandbox: DriverSandbox, cfg: SynthesisConfig): string | null {
  return synthesisProblem(sandbox, cfg)?.message ?? null;
}
