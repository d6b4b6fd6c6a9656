// The driver's pure ActorTemplate synthesis for Substrate v0.4: an `ateapi.ActorTemplate` resource
// (src/gen/ateapi.ts; shared/reference/substrate-v0.4.md §4.2) built from the DriverSandbox the gateway sent
// and the driver's config, created with Control.CreateActorTemplate (no Kubernetes object any more).
//
// Templates are SHARED by sandboxes of the same spec: a template is named after its own content,
// `sbx-tpl-<first 20 hex of sha256(canonical JSON of the template without metadata and status)>`, so a second
// sandbox whose spec yields the same template reuses it and restores from its existing golden snapshot.
// Nothing per-sandbox that differs between such sandboxes may be in it, and no secret ever is:
//
//   * The template carries literals only (v0.4 has no Secret references), and NEVER a credential: no sandbox
//     token, no launch authentication. Per-sandbox credentials reach the running actor after restore through
//     the bootstrap agent (src/driver/launch.ts → src/sandbox/bootstrap-agent.mjs).
//   * OpenShell v0.1 sandboxes (launch delivery): the container command is wrapped with the bootstrap agent,
//     which learns the sandbox's identity from the delivered, signed tokens; the template holds no sandbox id
//     or name, so every v0.1 sandbox of the same spec shares one template. The agent's status endpoint is the
//     container's wakeup probe, so the golden snapshot is taken as soon as the agent listens (not after the
//     ~20 s warm-up).
//   * OpenShell 0.0.x sandboxes (no launch authentication; the supervisor reads its identity and token from
//     the environment): the container command is wrapped with the bootstrap agent in identity mode
//     (OPENSHELL_SUBSTRATE_DELIVERY=identity), which HOLDS the workload until the driver delivers the sandbox's
//     id, name and token after restore, then starts it with OPENSHELL_SANDBOX_ID, OPENSHELL_SANDBOX and
//     OPENSHELL_SANDBOX_TOKEN in its environment. The template holds no identity, so every 0.0.x sandbox of the
//     same spec shares one template too; the golden snapshot holds only the waiting agent. The wakeup probe is
//     the agent's status endpoint whatever the config says (the workload does not run before delivery).
//     OPENSHELL_ENDPOINT (driver config) and OPENSHELL_MAIN_PROCESS_SPEC (the spec's command) are the same for
//     every sandbox of a spec and no secret, so they stay in the template.
//
// The gateway's command is forwarded exactly through OPENSHELL_MAIN_PROCESS_SPEC; no idle `sleep` workload.
import { createHash } from 'node:crypto';
import { ApiError, Code } from '../common/errors.js';
import { isDnsLabel, labelValueError, qualifiedNameError } from '../common/dns.js';
import type { DriverSandbox } from '../gen/compute_driver.js';
import * as pb from '../gen/ateapi.js';
import { parseQuantity } from '../common/quantity.js';
import {
  AGENT_IMAGE_PATH,
  DEFAULT_PORT as AGENT_PORT,
  DELIVERY_ENV,
  IDENTITY_DELIVERY,
  IDENTITY_PATH as AGENT_IDENTITY_PATH,
  LAUNCH_PATH as AGENT_PATH,
} from '../sandbox/bootstrap-agent.mjs';
import { LaunchError, parseLaunchAuthentication, type GatewayKey } from '../sandbox/launch-auth.mjs';
// Upstream's v0.4 CreateActorTemplate rules, as the local Substrate applies them: the image rule and a final
// check of the whole template, so a sandbox that validates here is not refused by the server.
import { actorTemplateFieldErrors, aggregateMessage, pinnedImageError, snapshotLocationError } from '../local/template-validation.js';

export interface SynthesisConfig {
  /** SnapshotConfig.storage_location (config snapshots_location), e.g. gs://bucket/prefix/ or file:///… */
  snapshotsLocation: string;
  sandboxClass: 'gvisor' | 'microvm';
  /**
   * SandboxConfig.config_name: an existing SandboxConfig of the same class. Default `gvisor-default` for
   * gvisor (what the local Substrate and upstream's install ship); required for microvm. The old pause_image
   * setting does not apply on v0.4 (the pause image lives in the SandboxConfig).
   */
  sandboxConfigName?: string;
  /** Template worker_selector (equality only). */
  workerSelector?: Record<string, string>;
  /** The gateway gRPC URL as reachable from inside the sandbox. Empty: OPENSHELL_ENDPOINT is not set. */
  gatewayEndpoint: string;
  /**
   * Optional wrapper argv, e.g. ["/usr/local/bin/openshell-sandbox"], used as the container command with no
   * trailing arguments (the supervisor reads OPENSHELL_MAIN_PROCESS_SPEC). Unset: the sandbox's own command.
   */
  supervisorCommand?: string[];
  /** A wakeup probe for every template (overrides the bootstrap agent's in launch mode). */
  wakeupProbe?: { path: string; port: number; timeoutSeconds?: number };
  /**
   * The argv prefix that runs the launch-credential bootstrap agent in front of the container command (v0.1
   * gateways only). Default BOOTSTRAP_AGENT_COMMAND (the agent in every local image, run by the image's node).
   */
  bootstrapAgentCommand?: string[];
}

export interface LaunchDeliveryTemplateOptions {
  /**
   * The gateway's public verification keys the agent trusts (its trust anchor), sorted by key id in the
   * template. Undefined or empty: none, the agent trusts the first bundle that verifies (trust on first use).
   * They are the gateway's, not the sandbox's, so they do not stop sandboxes from sharing a template.
   */
  gatewayKeys?: readonly GatewayKey[];
}

export interface SynthesisOptions {
  /**
   * Launch-delivery mode (OpenShell v0.1). Default: on when `spec.launch_authentication` is non-empty (its
   * public keys become the trust anchor). `false` forces the 0.0.x mode (identity delivered after restore,
   * through the agent in identity mode). The gateway sends
   * the bundle on Create only, so a re-synthesis later must pass this (with the same keys) explicitly.
   */
  launchDelivery?: LaunchDeliveryTemplateOptions | false;
}

/** A synthesized template and what the driver keeps about it. */
export interface SynthesizedTemplate {
  template: pb.ActorTemplate;
  /** sha256 (hex) of the canonical content; its first 20 hex digits are in the name. */
  hash: string;
}

/** Runs the bootstrap agent (src/sandbox/bootstrap-agent.mjs) with the image's node, then the container command. */
export const BOOTSTRAP_AGENT_COMMAND: readonly string[] = ['/usr/bin/node', AGENT_IMAGE_PATH, '--'];

export const DRIVER_NAME = 'openshell-driver-substrate';
/** Prefix of every template the driver synthesizes (content-named: `sbx-tpl-` + 20 hex). */
export const TEMPLATE_PREFIX = 'sbx-tpl-';
const SYNTHESIZED_NAME = /^sbx-tpl-[0-9a-f]{20}$/;
/** The default SandboxConfig of gvisor templates. */
export const DEFAULT_GVISOR_CONFIG = 'gvisor-default';

/** @deprecated Kubernetes-template era (kept for src/template/store.ts until the lead removes it). */
export const OWNER_ANNOTATION = 'openshell.ai/owned-by';
/** @deprecated See OWNER_ANNOTATION. */
export const OWNER_VALUE = DRIVER_NAME;

/** The workload container's name. */
export const CONTAINER_NAME = 'sandbox';
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
  /** `identity`: the agent holds the workload until the driver delivers its 0.0.x identity. */
  DELIVERY: DELIVERY_ENV,
} as const;

/** Names the driver owns: any user value for them is dropped (and the driver's set, where it has one). */
const DRIVER_ENV_NAMES = new Set<string>(Object.values(ENV));

// v0.4 ActorTemplate limits (substrate-v0.4.md §4.2).
const MAX_ENV = 32;
const MAX_ENV_NAME = 256;
const MAX_ENV_VALUE = 32768;
const MAX_COMMAND = 64;
const MAX_ARG = 4096;
const MAX_IMAGE = 512;
const MAX_LOCATION = 1024;
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

/** Deterministic DNS-1123 label for the Kubernetes Secret holding a sandbox's record (cluster mode). */
export function recordSecretNameFor(sandboxId: string): string {
  // The name the token Secret had in the Kubernetes-template era: existing records keep being found.
  return boundedName('oss-', sandboxId, '-token');
}

/** @deprecated Use recordSecretNameFor. */
export const tokenSecretNameFor = recordSecretNameFor;

/** Whether `name` is a template name the driver synthesizes (content-named). */
export function isSynthesizedTemplateName(name: string): boolean {
  return SYNTHESIZED_NAME.test(name);
}

/**
 * MainProcessConfig JSON (version 1): `{"version":1,"command":[...],"tty":bool}` in that key order (serde order).
 * `await_main_process_attachment` (a v0.1 gateway's one-shot hint) is written only when set, so 0.0.x
 * supervisors see the exact document they always did.
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

const URL_PATH = /^\/([A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$/;

function checkProbe(p: { path: string; port: number; timeoutSeconds?: number }, what: string): void {
  if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) throw badConfig(`${what}: port ${p.port} must be an integer from 1 to 65535`);
  if (!URL_PATH.test(p.path) || p.path.length > 1024) throw badConfig(`${what}: path ${JSON.stringify(p.path)} must be an absolute URL path without query or fragment (at most 1024 characters)`);
  if (p.timeoutSeconds !== undefined && (!Number.isInteger(p.timeoutSeconds) || p.timeoutSeconds < 1 || p.timeoutSeconds > 3600)) {
    throw badConfig(`${what}: timeout ${p.timeoutSeconds} must be 1..3600 seconds`);
  }
}

/** The SandboxConfig reference for the configured class. */
export function sandboxConfigOf(cfg: SynthesisConfig): pb.SandboxConfig {
  if (cfg.sandboxClass === 'gvisor') {
    return { sandboxClass: pb.SandboxClass.SANDBOX_CLASS_GVISOR, configName: cfg.sandboxConfigName || DEFAULT_GVISOR_CONFIG };
  }
  if (cfg.sandboxClass === 'microvm') {
    if (!cfg.sandboxConfigName) throw badConfig('driver config: sandbox class "microvm" needs the name of a microvm SandboxConfig (sandbox_config_name)');
    return { sandboxClass: pb.SandboxClass.SANDBOX_CLASS_MICROVM, configName: cfg.sandboxConfigName };
  }
  throw badConfig(`driver config: sandbox class ${JSON.stringify(cfg.sandboxClass)} is not supported; use "gvisor" or "microvm"`);
}

function checkConfig(cfg: SynthesisConfig): void {
  if (!cfg.snapshotsLocation) throw badConfig('driver config: snapshots_location is not set (e.g. gs://bucket/prefix/)');
  const locProblem = cfg.snapshotsLocation.length > MAX_LOCATION ? `is longer than ${MAX_LOCATION} characters` : snapshotLocationError(cfg.snapshotsLocation);
  if (locProblem) {
    throw badConfig(`driver config: snapshots_location must be a URI with a bucket, like gs://bucket/prefix/ (${locProblem})`);
  }
  sandboxConfigOf(cfg);
  if (cfg.sandboxConfigName !== undefined && cfg.sandboxConfigName !== '' && !isDnsLabel(cfg.sandboxConfigName)) {
    throw badConfig(`driver config: sandbox config name ${JSON.stringify(cfg.sandboxConfigName)} is not a DNS-1123 label`);
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
  if (cfg.wakeupProbe) checkProbe(cfg.wakeupProbe, 'driver config: wakeup probe');
}

/**
 * What the driver delivers after restore: v0.1 launch credentials (`launch`), or a 0.0.x identity the agent
 * puts into the workload's environment before starting it (`identity`).
 */
type Mode = { kind: 'identity' } | { kind: 'launch'; gatewayKeys: GatewayKey[] };

function buildEnv(sandbox: DriverSandbox, cfg: SynthesisConfig, mode: Mode, who: string): pb.EnvVar[] {
  const spec = sandbox.spec;
  // Template first, the spec wins (the Docker driver's precedence, compute-driver.md §2.2).
  const merged = new Map<string, string>();
  for (const [k, v] of Object.entries(spec?.template?.environment ?? {})) merged.set(k, v);
  for (const [k, v] of Object.entries(spec?.environment ?? {})) merged.set(k, v);
  for (const k of DRIVER_ENV_NAMES) merged.delete(k);

  const bad = [...merged.keys()].filter((k) => k.length === 0 || k.length > MAX_ENV_NAME || !ENV_NAME.test(k));
  if (bad.length > 0) {
    throw invalidArg(
      `sandbox ${who}: environment variable name(s) ${bad.map((b) => JSON.stringify(b.slice(0, 64))).join(', ')} are not allowed; names must be 1..${MAX_ENV_NAME} printable ASCII characters without '='`,
    );
  }
  for (const [k, v] of merged) {
    if (v.length > MAX_ENV_VALUE) throw invalidArg(`sandbox ${who}: environment variable ${JSON.stringify(k)} is ${v.length} characters long; at most ${MAX_ENV_VALUE} are allowed`);
  }

  // Sorted so the same spec always yields the same template (its name is its content's hash).
  const env: pb.EnvVar[] = [...merged.keys()].sort().map((name) => ({ name, value: merged.get(name)! }));
  const main = mainProcessOf(sandbox);
  if (mode.kind === 'identity') env.push({ name: ENV.DELIVERY, value: IDENTITY_DELIVERY });
  if (cfg.gatewayEndpoint) env.push({ name: ENV.ENDPOINT, value: cfg.gatewayEndpoint });
  env.push({ name: ENV.LOG_LEVEL, value: spec?.logLevel || 'info' });
  env.push({ name: ENV.MAIN_PROCESS_SPEC, value: mainProcessSpec(main.command, main.tty, spec?.awaitMainProcessAttachment === true) });
  if (mode.kind === 'launch' && mode.gatewayKeys.length > 0) {
    // Public keys only: the agent's trust anchor.
    env.push({ name: ENV.GATEWAY_KEYS, value: JSON.stringify(mode.gatewayKeys.map((k) => ({ key_id: k.key_id, public_key_pem: k.public_key_pem }))) });
  }
  if (env.length > MAX_ENV) {
    const driverCount = env.length - merged.size;
    const over = env.length - MAX_ENV;
    throw invalidArg(
      `sandbox ${who} needs ${env.length} environment variables (${merged.size} from spec.environment and template.environment, ${driverCount} set by the driver for the supervisor); an ActorTemplate container allows at most ${MAX_ENV}: remove at least ${over} user variable(s)`,
    );
  }
  return env;
}

const KEY_ID = /^\S{1,256}$/;

function modeOf(sandbox: DriverSandbox, opts: SynthesisOptions, who: string): Mode {
  const bytes = sandbox.spec?.launchAuthentication;
  let keys: readonly GatewayKey[] | undefined;
  if (opts.launchDelivery === false) {
    // 0.0.x mode forced.
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
  if (keys === undefined) return { kind: 'identity' };
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
 * The gateway's cpu and memory limits as template resource limits (v0.4 `resources.limits`, template-level:
 * gvisor refuses container resources). Requests have no meaning for an actor, so they are not carried.
 */
function resourceLimitsOf(sandbox: DriverSandbox, who: string): pb.Limits[] {
  const r = sandbox.spec?.template?.resources;
  const out: pb.Limits[] = [];
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

// ------------------------------------------------------------------------------------------ content and name

/** JSON with object keys sorted at every level (arrays keep their order): the canonical form that is hashed. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

/**
 * sha256 (hex) of a template's content: its protobuf JSON form without `metadata` and `status` (server-owned),
 * canonicalized. Default values are omitted by the JSON form, so a template read back from the server hashes
 * like the one that was sent.
 */
export function templateContentHash(t: pb.ActorTemplate): string {
  const json = pb.ActorTemplate.toJSON({ ...t, metadata: undefined, status: undefined }) as Record<string, unknown>;
  delete json.metadata;
  delete json.status;
  return createHash('sha256').update(canonicalJson(json), 'utf8').digest('hex');
}

/** `sbx-tpl-<first 20 hex of the content hash>` (a DNS label). */
export function templateNameForHash(hash: string): string {
  return `${TEMPLATE_PREFIX}${hash.slice(0, 20)}`;
}

// ------------------------------------------------------------------------------------------------ synthesis

/**
 * Builds the sandbox's ActorTemplate, in the atespace of its workspace, named after its content. Throws
 * ApiError: INVALID_ARGUMENT for a sandbox that cannot be expressed (unpinned or missing image, too many env
 * vars or command items, bad env names, bad limits), FAILED_PRECONDITION for driver config that cannot be.
 */
export function synthesizeActorTemplate(sandbox: DriverSandbox, cfg: SynthesisConfig, opts: SynthesisOptions = {}): SynthesizedTemplate {
  checkConfig(cfg);
  if (!sandbox.id) throw invalidArg('sandbox id is empty; the gateway must send the sandbox UUID');
  const who = JSON.stringify(sandbox.name || sandbox.id);
  const atespace = sandbox.workspace || 'default';
  const image = sandbox.spec?.template?.image ?? '';
  if (!image) {
    throw invalidArg(`sandbox ${who} has no image: set template.image to a digest-pinned image (image@sha256:<digest>) or configure the driver's default image`);
  }
  const imageProblem = image.length > MAX_IMAGE ? `is longer than ${MAX_IMAGE} characters` : pinnedImageError(image);
  if (imageProblem) {
    throw invalidArg(
      `sandbox ${who}: image ${JSON.stringify(image.slice(0, 200))} is not pinned by digest (${imageProblem}); Substrate ActorTemplates require a reference such as ${image.split('@')[0]!.slice(0, 200)}@sha256:<64 hex digits> because changing the image invalidates snapshots; look up the digest in your registry`,
    );
  }
  const main = mainProcessOf(sandbox);
  if (!main.command[0]) throw invalidArg(`sandbox ${who}: command[0] is empty; the first element must be the program to run`);
  const mode = modeOf(sandbox, opts, who);
  const inner = cfg.supervisorCommand ? [...cfg.supervisorCommand] : main.command;
  // Both modes run the bootstrap agent in front of the command (it takes what the driver delivers).
  const command = [...(cfg.bootstrapAgentCommand ?? BOOTSTRAP_AGENT_COMMAND), ...inner];
  if (command.length > MAX_COMMAND) {
    throw invalidArg(
      `sandbox ${who}: command has ${command.length} items (with the ${command.length - inner.length} of the bootstrap agent); an ActorTemplate container command allows at most ${MAX_COMMAND}`,
    );
  }
  const long = command.findIndex((c) => c.length > MAX_ARG);
  if (long >= 0) throw invalidArg(`sandbox ${who}: command item ${long} is ${command[long]!.length} characters long; at most ${MAX_ARG} are allowed`);
  const env = buildEnv(sandbox, cfg, mode, who);

  // Identity mode: the workload starts only after delivery, so only the agent can answer a probe before it.
  const probe =
    mode.kind === 'identity' ? { path: AGENT_IDENTITY_PATH, port: AGENT_PORT, timeoutSeconds: 30 } : (cfg.wakeupProbe ?? { path: AGENT_PATH, port: AGENT_PORT, timeoutSeconds: 30 });
  const container: pb.Container = pb.Container.fromPartial({
    name: CONTAINER_NAME,
    image,
    command,
    env,
    wakeupProbe: probe ? { httpGet: { path: probe.path, port: probe.port }, timeoutSeconds: probe.timeoutSeconds ?? 30 } : undefined,
  });
  const limits = resourceLimitsOf(sandbox, who);
  const sel = cfg.workerSelector && Object.keys(cfg.workerSelector).length > 0 ? { matchLabels: { ...cfg.workerSelector } } : undefined;
  const t: pb.ActorTemplate = pb.ActorTemplate.fromPartial({
    workerSelector: sel,
    containers: [container],
    snapshotConfig: { onCommit: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, storageLocation: cfg.snapshotsLocation },
    sandboxConfig: sandboxConfigOf(cfg),
    resources: limits.length > 0 ? { limits } : undefined,
  });
  const hash = templateContentHash(t);
  t.metadata = pb.ResourceMetadata.fromPartial({ atespace, name: templateNameForHash(hash) });
  // Upstream's rules over the result (everything above already enforces them with friendlier messages; a
  // problem here is one the server would refuse). Messages never carry an env value.
  const errs = actorTemplateFieldErrors(t);
  if (errs.length > 0) throw invalidArg(`sandbox ${who} cannot be expressed as a Substrate v0.4 ActorTemplate: ${aggregateMessage(errs)}`);
  return { template: t, hash };
}

/**
 * The error synthesis would raise for this sandbox, or null. Checks both modes (ValidateSandboxCreate runs
 * before the gateway mints launch authentication, and a v0.1 Create adds the agent's argv), so a sandbox that
 * validates also synthesizes on Create whichever gateway generation sends it.
 */
export function synthesisProblem(sandbox: DriverSandbox, cfg: SynthesisConfig): ApiError | null {
  try {
    synthesizeActorTemplate(sandbox, cfg, { launchDelivery: false });
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

/** Whether a template's first container runs the bootstrap agent (a pre-provisioned template may not). */
export function runsBootstrapAgent(t: pb.ActorTemplate | undefined): boolean {
  const command = t?.containers?.[0]?.command ?? [];
  return command.some((c) => c === AGENT_IMAGE_PATH || c.endsWith('/bootstrap-agent.mjs'));
}

/** Whether a template's agent holds the workload for a delivered 0.0.x identity (OPENSHELL_SUBSTRATE_DELIVERY=identity). */
export function takesIdentityDelivery(t: pb.ActorTemplate | undefined): boolean {
  const c = t?.containers?.[0];
  return runsBootstrapAgent(t) && (c?.env ?? []).some((e) => e.name === ENV.DELIVERY && e.value === IDENTITY_DELIVERY);
}
