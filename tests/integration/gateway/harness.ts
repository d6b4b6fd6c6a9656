// STAND-IN FOR THE OPENSHELL GATEWAY. The real gateway (NVIDIA/OpenShell `openshell-server`) is a Rust service that
// cannot run on this machine, so this harness reimplements the parts of it that talk to a compute driver, rule for
// rule from the reference notes, and drives the REAL driver binary (`node bin/substrate-driver.js serve ...`, spawned
// with execa) over its Unix socket. It has two modes, one per gateway generation (`generation` option):
//
// ── 0.0.x mode (`generation: 'v0.0'`, pinned 2f7fb65; shared/reference/compute-driver.md). Requests are encoded and
//    responses DECODED WITH THE 0.0.x BINDINGS (src/gen/v0), exactly what a 0.0.x gateway reads: conditions carry
//    `last_transition_time` (field 5, RFC 3339 string) and platform events `timestamp_ms` (field 1); a v0.1-only
//    field (transition_time 105, event_time 101) would be an unknown field and lost.
//   §1.2  h2c on the socket, no TLS, no auth metadata, a W3C `traceparent` on every call, no per-call deadline,
//         a 4 MiB cap on decoded responses; a driver restart is tolerated because later calls reconnect.
//   §5    startup: GetCapabilities WITHOUT gateway metadata (any error aborts startup), then
//         GetGatewayListenerRequirements (UNIMPLEMENTED = no requirements); then the startup sweep (STOPPING rows get
//         StopSandbox then STOPPED, STARTING rows get StartSandbox; running-intent rows get StartSandbox only when the
//         driver says gateway_manages_lifecycle); then the watch and reconcile loops.
//   §4    watch loop: WatchSandboxes, reopened a fixed `watchRetryMs` (2 s, as the gateway) after the stream
//         fails to open, errors or ends. `sandbox` events are snapshots (§3.3), applied only to known rows;
//         `deleted` removes the row in any phase; `platform_event` is forwarded (kept per row here).
//   §4    reconcile loop: at startup and then every `reconcileIntervalMs` (60 s in the gateway; CONFIGURABLE here so
//         tests can sweep faster): ListSandboxes once, GetSandbox(id, name) for every listed row not updated
//         since the sweep began, and for every row missing from the list and older than `orphanGraceMs` (300 s in
//         the gateway; CONFIGURABLE): GetSandbox again; found → applied; absent → ERROR ComputeResourceMissing
//         for STOPPING/STOPPED/STARTING, row deleted otherwise. Unknown ids are never adopted; a List failure
//         skips the sweep; a Get error other than NOT_FOUND aborts it; a Get answering another id is an error.
//   §3.1  derive_phase with the 8 transient Ready=False reasons (case-insensitive); any other reason is ERROR;
//         ANY Suspended=True is STOPPED (Suspended beats Ready).
//   §3.2  composition with the supervisor session (see SUPERVISOR below).
//   §3.3  stickiness: ERROR is terminal, DELETING ignores snapshots, STOPPING only leaves for STOPPED (or
//         ContainerExited/ContainerStopped, or ERROR), STOPPED always stays, STARTING only leaves for READY (a
//         session) or ERROR; a snapshot whose `name` differs from the row's is DROPPED with a recorded warning
//         ("sandbox name cannot be changed after creation", as the gateway's store rejects the write).
//   §2    Create: Validate (sandbox_token "" and no status) then the row is written PROVISIONING, then Create with
//         the token; Create errors delete the row (ALREADY_EXISTS / FAILED_PRECONDITION keep their code, others
//         become INTERNAL "create sandbox failed: ..."). Stop: only from READY or STOPPING (STOPPED: OK without a
//         call; others FAILED_PRECONDITION); STOPPING during the call, STOPPED on OK. Start: only from STOPPED or
//         STARTING (READY: OK without a call); STARTING until a supervisor session connects. A Stop or Start error
//         reaches the caller with the same code ("stop sandbox failed: ...") followed by recovery through
//         GetSandbox. Delete: DELETING rows answer deleted=true without a call; concurrent deletes call the driver
//         once; deleted=true leaves the row DELETING until the watch `deleted` event (or an orphan prune);
//         deleted=false removes the row at once; an error becomes INTERNAL "delete sandbox failed: ..." plus
//         recovery through GetSandbox.
//
// ── v0.1 mode (`generation: 'v0.1'`; shared/reference/openshell-v0.1.md, -addendum.md). Everything above, with the
//    v0.1 bindings (src/gen: `transition_time` / `event_time` Timestamps, renamed `name` fields), and:
//   §2.2  startup: GetCapabilities WITH the gateway's PeerMetadata ({protocol_version 1.0, "openshell/gateway",
//         version, supported [contract, launch-authentication], required [contract]}); any error is fatal; then
//         upstream's negotiate() on the driver's `extension` (missing metadata / protocol version, other major,
//         implementation_name/_version blank, >128 bytes or with control characters, >128 or duplicate
//         capabilities, malformed capability names, a gateway-required capability the driver lacks, a
//         driver-required capability the gateway lacks): any error is fatal. No GetGatewayListenerRequirements.
//   §4.2  the driver's resource_admission_policy is verified against the stand-in's configured operator policy
//         (`admission` option, default upstream's): "" is accepted only with enabled=false (the legacy opt-out);
//         otherwise `v1:` + JSON (serde default + deny_unknown_fields), compared SEMANTICALLY; any mismatch fails
//         startup. The answer is cached.
//   §2.5  before EVERY ValidateSandboxCreate, CreateSandbox and StartSandbox a fresh GetCapabilities({gateway});
//         resource_admission_policy must equal the cached one BYTE FOR BYTE, else FAILED_PRECONDITION "remote driver
//         admission policy changed; restart gateway after configuring matching policy" (the driver is not called).
//   §4.2  the caller driver_config gate: with allow_driver_config=false a non-empty template.driver_config is refused
//         (FAILED_PRECONDITION "caller driver config is disabled; ...") before Validate, Create and Start; a v0.1
//         user names a pre-provisioned template with platform_config.annotations instead (see gatewaySandbox users).
//   §4.1  Timestamp validation, read from the RAW response bytes: every watch event (transition_time of every
//         condition of a `sandbox` event, event_time of a `platform_event`) and every GetSandbox result. A missing
//         or out-of-range Timestamp DROPS that watch event ("Failed to apply compute driver event") / FAILS that Get
//         (which aborts that reconcile step or recovery).
//   §4.4  derive_phase: Suspended=True is STOPPED only when no Ready=True is present (Ready beats Suspended);
//         composition: backend READY + driver_reports_runtime_readiness is READY without a session; stickiness:
//         STOPPING stays on a False ContainerRuntimeRestart; STOPPED ignores ContainerRuntimeRestart and stays STOPPED
//         EXCEPT for a snapshot with Bootstrapping=True and no Suspended=True (then the composed phase passes);
//         STARTING stays until the composed phase is READY or ERROR, and each watch snapshot of a STARTING row is
//         replaced by a fresh GetSandbox (a failing Get keeps the state).
//   §4.5  watch `deleted`: the row is removed (not while a Stop/Start/Create holds its lifecycle gate) and a
//         BACKGROUND DeleteSandbox is sent (skipped while a request-side lifecycle operation holds the gate); its
//         outcome is recorded in `backgroundDeletes`.
//   §4.6  reconcile prune: a row missing from ListSandboxes for longer than `orphanGraceMs` with no pending
//         operation: Get found → applied; absent → ERROR ComputeResourceMissing when STOPPING/STOPPED/STARTING,
//         otherwise removed AND a background DeleteSandbox.
//   §3.2/§3.3 runtime identity and launch authentication: Create carries a freshly minted SandboxLaunchAuthentication
//         (JSON, Ed25519-signed session JWTs, `launchAuthority` option; null = a gateway without a signer) and
//         sandbox_token = its gateway_token; the runtime_identity answered by Create/Start is recorded and sent
//         back as expected_runtime_identity with generation_id (the row's runtime generation) on every Start; an
//         explicit Start from STOPPED mints a fresh bundle with a higher auth_epoch; a retry from STARTING reuses it;
//         startup recovery of a STARTING row sends none. With supports_sandbox_authentication=true an empty
//         identity from Create is INTERNAL + DeleteSandbox, from Start INTERNAL + StopSandbox.
//   §4.7  Stop from READY/STOPPING, Start from STOPPED/STARTING (as 0.0.x; no COMPLETED phase is modelled).
//
// SUPERVISOR (§3.2 / addendum §5). READY means "the OpenShell supervisor inside the sandbox holds a session to the
// gateway", because this driver says driver_reports_runtime_readiness=false. The session is modelled by a pluggable
// PROBE (`supervisor` option), asked whenever the driver reports the backend READY and no session is held:
//   - backendReadyProbe() — THE DEFAULT when no supervisor stand-in is configured: a backend-READY sandbox counts as
//     connected. This is what the tests in this directory use unless they say otherwise.
//   - supervisorSessionProbe(stateDir) — for the supervisor stand-in (tests/integration/gateway/supervisor-standin.mjs,
//     another engineer's): `GET /session` on port 80 through the actor router (`ate-target-actor: <ws>/<id>`),
//     answering {connected, sandbox_id, auth_epoch, gateway_token_sha256}; connected only for this sandbox and, when
//     the stand-in minted launch authentication, for its CURRENT auth_epoch and gateway token (a fresh session).
//   - routerSupervisor(stateDir, path) — the workload answers `path` through the router (the 0.0.x tests' model).
//   - `supervisor: null` — no supervisor at all: a backend READY stays PROVISIONING with Ready=False
//     SupervisorNotConnected, as the gateway without a supervisor.
// A snapshot whose backend phase is no longer READY drops the session, as a real session drops when its sandbox is
// checkpointed. Connect moves PROVISIONING/UNKNOWN/STARTING/READY to READY; disconnect moves READY to PROVISIONING;
// both are ignored in DELETING/ERROR/STOPPING/STOPPED.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join, resolve } from 'node:path';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import * as grpc from '@grpc/grpc-js';
import { execa, type ResultPromise } from 'execa';
import { SignJWT, exportSPKI, generateKeyPair } from 'jose';
import {
  ComputeDriverService,
  CreateSandboxRequest,
  DeleteSandboxRequest,
  DeleteWorkspaceRequest,
  EnsureWorkspaceRequest,
  GetCapabilitiesRequest,
  GetSandboxRequest,
  ListSandboxesRequest,
  StartSandboxRequest,
  StopSandboxRequest,
  ValidateSandboxCreateRequest,
  WatchSandboxesRequest,
  type DriverCondition,
  type DriverPlatformEvent,
  type DriverSandbox,
  type DriverSandboxStatus,
  type GetCapabilitiesResponse,
  type WatchSandboxesEvent,
} from '../../../src/gen/compute_driver.js';
import type { PeerMetadata } from '../../../src/gen/extension.js';
import * as v0 from '../../../src/gen/v0/compute_driver.js';
import type { LocalJson } from '../../../src/local/index.js';

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..', '..');
export const DRIVER_BIN = join(REPO_ROOT, 'bin', 'substrate-driver.js');

/** Which OpenShell gateway the stand-in stands in for. */
export type GatewayGeneration = 'v0.1' | 'v0.0';

// ------------------------------------------------------------------------------------------------ phases (§3)

/** proto/openshell.proto SandboxPhase. */
export type Phase = 'UNSPECIFIED' | 'PROVISIONING' | 'READY' | 'ERROR' | 'DELETING' | 'UNKNOWN' | 'STOPPING' | 'STOPPED' | 'STARTING';

/**
 * The gateway's transient Ready=False reasons (mod.rs `is_terminal_failure_reason`, unchanged in v0.1), copied from
 * the reference rather than imported from the driver, so the driver is checked against the contract and not against
 * itself.
 */
export const GATEWAY_TRANSIENT_REASONS = [
  'ReconcilerError',
  'DependenciesNotReady',
  'SupervisorNotConnected',
  'Starting',
  'ContainerStarting',
  'ContainerCreated',
  'HealthCheckStarting',
  'InspectFailed',
] as const;

export function isTransientReason(reason: string): boolean {
  const r = reason.toLowerCase();
  return GATEWAY_TRANSIENT_REASONS.some((t) => t.toLowerCase() === r);
}

const isTrue = (c: { type: string; status: string }, type: string) => c.type.toLowerCase() === type && c.status.toLowerCase() === 'true';

/**
 * derive_phase: the "backend phase" of a driver status. 0.0.x (§3.1): any Suspended=True is STOPPED. v0.1 (§4.4 step
 * 3): Suspended=True is STOPPED only when no Ready=True (both case-insensitive) is present.
 */
export function derivePhase(status: DriverSandboxStatus | undefined, rules: GatewayGeneration = 'v0.0'): Phase {
  if (!status) return 'UNKNOWN';
  if (status.deleting) return 'DELETING';
  const suspended = status.conditions.some((c) => isTrue(c, 'suspended'));
  if (suspended && (rules === 'v0.0' || !status.conditions.some((c) => isTrue(c, 'ready')))) return 'STOPPED';
  const ready = status.conditions.find((c) => c.type === 'Ready');
  if (!ready) return 'PROVISIONING';
  if (ready.status === 'True') return 'READY';
  if (ready.status === 'False') return isTransientReason(ready.reason) ? 'PROVISIONING' : 'ERROR';
  return 'PROVISIONING';
}

/**
 * ComposedPhase: the backend phase combined with the supervisor session. v0.1 adds: a backend READY of a driver
 * that reports runtime readiness is READY without a session.
 */
export function composePhase(backend: Phase, supervisorConnected: boolean, runtimeReadiness = false): Phase {
  if (backend === 'ERROR' || backend === 'DELETING' || backend === 'STOPPED') return backend;
  if (backend === 'READY' && runtimeReadiness) return 'READY';
  return supervisorConnected ? 'READY' : 'PROVISIONING';
}

const STOPPED_REASONS = ['containerexited', 'containerstopped'];
const STOP_IN_PROGRESS_REASONS = ['podterminating', 'podnotterminated'];
const RUNTIME_RESTART = 'containerruntimerestart';

const hasFalseReason = (status: DriverSandboxStatus, reasons: string[]) =>
  status.conditions.some((c) => c.status.toLowerCase() === 'false' && reasons.includes(c.reason.toLowerCase()));

/**
 * apply_driver_snapshot: the next stored phase given the stored one and an incoming status (already known to belong
 * to the row). `undefined` status keeps the phase. `rules` picks 0.0.x (§3.3) or v0.1 (§4.4) stickiness.
 */
export function nextPhase(
  stored: Phase,
  status: DriverSandboxStatus | undefined,
  supervisorConnected: boolean,
  rules: GatewayGeneration = 'v0.0',
  runtimeReadiness = false,
): Phase {
  if (stored === 'ERROR' || stored === 'DELETING') return stored;
  if (!status) return stored;
  const backend = derivePhase(status, rules);
  const composed = composePhase(backend, supervisorConnected, rules === 'v0.1' && runtimeReadiness);
  switch (stored) {
    case 'STOPPING': {
      if (rules === 'v0.1' && hasFalseReason(status, [RUNTIME_RESTART])) return 'STOPPING';
      if (backend === 'STOPPED') return 'STOPPED';
      if (hasFalseReason(status, STOPPED_REASONS)) return 'STOPPED';
      if (backend === 'ERROR') return 'ERROR';
      // Suspended=False PodTerminating/PodNotTerminated, and any other non-ERROR backend phase: still stopping.
      return 'STOPPING';
    }
    case 'STOPPED':
      if (rules === 'v0.1') {
        if (status.conditions.some((c) => c.reason.toLowerCase() === RUNTIME_RESTART)) return 'STOPPED';
        // driver_snapshot_confirms_starting: Bootstrapping=True, no Suspended=True, not deleting.
        const bootstrapping = status.conditions.some((c) => isTrue(c, 'bootstrapping'));
        const suspended = status.conditions.some((c) => isTrue(c, 'suspended'));
        if (bootstrapping && !suspended && !status.deleting) return composed;
      }
      return 'STOPPED';
    case 'STARTING':
      return composed === 'READY' || composed === 'ERROR' ? composed : 'STARTING';
    default:
      return composed;
  }
}

/** True when a status says a stop is still in progress (Suspended=False PodTerminating/PodNotTerminated). */
export function stopInProgress(status: DriverSandboxStatus | undefined): boolean {
  return !!status?.conditions.some(
    (c) => c.type.toLowerCase() === 'suspended' && c.status.toLowerCase() === 'false' && STOP_IN_PROGRESS_REASONS.includes(c.reason.toLowerCase()),
  );
}

// ------------------------------------------------------------------------------------------------ 0.0.x wire shapes

/** RFC 3339 → Date (undefined when empty or unparsable: the 0.0.x gateway copies the string, it never validates it). */
function parseRfc3339(s: string): Date | undefined {
  if (!s) return undefined;
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** A 0.0.x-decoded sandbox in the stand-in's internal (v0.1-shaped) form. */
export function fromV0Sandbox(s: v0.DriverSandbox): DriverSandbox {
  const st = s.status;
  return {
    id: s.id,
    name: s.name,
    namespace: s.namespace,
    workspace: s.workspace,
    spec: undefined,
    status: st && {
      name: st.sandboxName,
      instanceId: st.instanceId,
      agentFd: st.agentFd,
      sandboxFd: st.sandboxFd,
      deleting: st.deleting,
      conditions: st.conditions.map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message, transitionTime: parseRfc3339(c.lastTransitionTime) })),
    },
  };
}

function fromV0Event(e: v0.DriverPlatformEvent): DriverPlatformEvent {
  return { eventTime: e.timestampMs ? new Date(e.timestampMs) : undefined, source: e.source, type: e.type, reason: e.reason, message: e.message, metadata: e.metadata };
}

/** A sandbox as a 0.0.x gateway sends it (its bindings have no v0.1 spec fields). */
export function toV0Sandbox(s: DriverSandbox): v0.DriverSandbox {
  const sp = s.spec;
  const t = sp?.template;
  return {
    id: s.id,
    name: s.name,
    namespace: s.namespace,
    workspace: s.workspace,
    status: undefined,
    spec: sp && {
      logLevel: sp.logLevel,
      environment: sp.environment,
      resourceRequirements: sp.resourceRequirements,
      sandboxToken: sp.sandboxToken,
      command: sp.command,
      tty: sp.tty,
      template: t && {
        image: t.image,
        agentSocketPath: t.agentSocketPath,
        labels: t.labels,
        environment: t.environment,
        resources: t.resources,
        platformConfig: t.platformConfig,
        driverConfig: t.driverConfig,
      },
    },
  };
}

// ------------------------------------------------------------------------------------------------ Timestamps (§4.1)

/** google.protobuf.Timestamp's valid range (0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z), nanos in [0, 1e9). */
export const TIMESTAMP_MIN_SECONDS = -62_135_596_800n;
export const TIMESTAMP_MAX_SECONDS = 253_402_300_799n;

/** Every length-delimited occurrence of `field` in a message's bytes. */
function subMessages(bytes: Uint8Array, field: number): Uint8Array[] {
  const r = new BinaryReader(bytes);
  const out: Uint8Array[] = [];
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === field && wt === WireType.LengthDelimited) out.push(r.bytes());
    else r.skip(wt, no);
  }
  return out;
}

/** Why the Timestamp in `bytes` is invalid, or null. */
export function timestampProblem(bytes: Uint8Array | undefined): string | null {
  if (!bytes) return 'missing';
  let seconds = 0n;
  let nanos = 0;
  try {
    const r = new BinaryReader(bytes);
    while (r.pos < r.len) {
      const [no, wt] = r.tag();
      if (no === 1 && wt === WireType.Varint) seconds = BigInt(r.int64());
      else if (no === 2 && wt === WireType.Varint) nanos = r.int32();
      else r.skip(wt, no);
    }
  } catch (e) {
    return `undecodable (${(e as Error).message})`;
  }
  if (seconds < TIMESTAMP_MIN_SECONDS || seconds > TIMESTAMP_MAX_SECONDS) return `seconds ${seconds} out of range`;
  if (nanos < 0 || nanos > 999_999_999) return `nanos ${nanos} out of range`;
  return null;
}

/** validate_driver_sandbox_timestamps on a DriverSandbox's bytes: transition_time (105) of every condition. */
export function sandboxTimestampProblems(sandbox: Uint8Array): string[] {
  const out: string[] = [];
  for (const status of subMessages(sandbox, 5)) {
    subMessages(status, 5).forEach((cond, i) => {
      const p = timestampProblem(subMessages(cond, 105).at(-1));
      if (p) out.push(`condition ${i} transition_time ${p}`);
    });
  }
  return out;
}

/** The same on a GetSandboxResponse. */
export function getResponseTimestampProblems(buf: Uint8Array): string[] {
  return subMessages(buf, 1).flatMap((sb) => sandboxTimestampProblems(sb));
}

/** validate_driver_watch_event_timestamps on a WatchSandboxesEvent: sandbox conditions, platform event event_time (101). */
export function watchEventTimestampProblems(buf: Uint8Array): string[] {
  const out: string[] = [];
  for (const ev of subMessages(buf, 1)) for (const sb of subMessages(ev, 1)) out.push(...sandboxTimestampProblems(sb));
  for (const ev of subMessages(buf, 3)) {
    for (const pe of subMessages(ev, 2)) {
      const p = timestampProblem(subMessages(pe, 101).at(-1));
      if (p) out.push(`platform event event_time ${p}`);
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------------ negotiation (§2.2-2.3)

export const CONTRACT_CAPABILITY = 'openshell.compute.contract';
export const LAUNCH_AUTH_CAPABILITY = 'openshell.compute.launch-authentication';

/** The PeerMetadata a v0.1 gateway sends (`gateway_metadata(ExtensionFamily::Compute)`). */
export function gatewayMetadata(version = '0.1.9'): PeerMetadata {
  return {
    protocolVersion: { major: 1, minor: 0 },
    implementationName: 'openshell/gateway',
    implementationVersion: version,
    supportedCapabilities: [CONTRACT_CAPABILITY, LAUNCH_AUTH_CAPABILITY],
    requiredCapabilities: [CONTRACT_CAPABILITY],
  };
}

/** validate_text: non-blank after trim, ≤ 128 bytes, no control characters (Rust char::is_control = Cc). */
function textProblem(v: string): string | null {
  if (v.trim() === '') return 'is blank';
  if (Buffer.byteLength(v, 'utf8') > 128) return 'is longer than 128 bytes';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(v)) return 'contains a control character';
  return null;
}

/** valid_capability: ≤ 128 bytes, `openshell.` prefix, ≥ 3 dot-separated non-empty [a-z0-9-] segments. */
export function validCapability(c: string): boolean {
  if (Buffer.byteLength(c, 'utf8') > 128 || !c.startsWith('openshell.')) return false;
  const parts = c.split('.');
  return parts.length >= 3 && parts.every((p) => /^[a-z0-9-]+$/.test(p));
}

/**
 * Upstream negotiate(Compute, name, gateway, extension): null when compatible, else the NegotiationError text (the
 * gateway refuses to start).
 */
export function negotiate(name: string, gateway: PeerMetadata, ext: PeerMetadata | undefined): string | null {
  const who = `compute extension '${name}'`;
  if (!ext) return `${who} did not provide protocol metadata; upgrade the extension to a version that supports OpenShell extension negotiation`;
  const v = ext.protocolVersion;
  if (!v) return `${who} did not provide a protocol version`;
  const g = gateway.protocolVersion!;
  if (v.major !== g.major) return `${who} speaks extension protocol ${v.major}.${v.minor}; the gateway speaks ${g.major}.${g.minor}`;
  for (const [field, value] of [
    ['implementation_name', ext.implementationName],
    ['implementation_version', ext.implementationVersion],
  ] as const) {
    const p = textProblem(value);
    if (p) return `${who} ${field} ${p}`;
  }
  for (const [field, list] of [
    ['supported_capabilities', ext.supportedCapabilities],
    ['required_capabilities', ext.requiredCapabilities],
  ] as const) {
    if (list.length > 128) return `${who} ${field} has more than 128 entries`;
    if (new Set(list).size !== list.length) return `${who} ${field} has duplicates`;
    const bad = list.find((c) => !validCapability(c));
    if (bad !== undefined) return `${who} ${field} has an invalid capability name ${JSON.stringify(bad)}`;
  }
  const missingExt = gateway.requiredCapabilities.filter((c) => !ext.supportedCapabilities.includes(c));
  if (missingExt.length) return `${who} does not support capabilities the gateway requires: ${missingExt.join(', ')}`;
  const missingGw = ext.requiredCapabilities.filter((c) => !gateway.supportedCapabilities.includes(c));
  if (missingGw.length) return `${who} requires capabilities the gateway does not support: ${missingGw.join(', ')}`;
  return null;
}

// ------------------------------------------------------------------------------------------------ admission (§4.2)

/** The operator's `[openshell.drivers.<name>]` admission keys, as the gateway holds them (serde field names). */
export interface GatewayAdmissionPolicy {
  allow_driver_config: boolean;
  resource_admission: { enabled: boolean; required_labels: Record<string, string> };
}

export const DEFAULT_REQUIRED_LABELS: Readonly<Record<string, string>> = Object.freeze({
  'openshell.ai/sandbox-attachable': 'true',
  'openshell.ai/sandbox-attachable-workspace': '${workspace}',
});

export function defaultGatewayAdmission(): GatewayAdmissionPolicy {
  return { allow_driver_config: false, resource_admission: { enabled: true, required_labels: { ...DEFAULT_REQUIRED_LABELS } } };
}

/** `format!("v1:{}", serde_json::to_string(policy))`: struct order, map keys sorted. */
export function admissionAcknowledgement(p: GatewayAdmissionPolicy): string {
  const keys = Object.keys(p.resource_admission.required_labels).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const labels = keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(p.resource_admission.required_labels[k])}`).join(',');
  return `v1:{"allow_driver_config":${p.allow_driver_config},"resource_admission":{"enabled":${p.resource_admission.enabled},"required_labels":{${labels}}}}`;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** DriverAdmissionConfig from JSON with serde(default, deny_unknown_fields); a string error when it does not parse. */
function parsePolicyJson(text: string): GatewayAdmissionPolicy | string {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    return 'not JSON';
  }
  if (!isObj(j)) return 'not an object';
  const out = defaultGatewayAdmission();
  for (const k of Object.keys(j)) {
    if (k === 'allow_driver_config') {
      if (typeof j[k] !== 'boolean') return 'allow_driver_config is not a bool';
      out.allow_driver_config = j[k] as boolean;
    } else if (k === 'resource_admission') {
      const ra = j[k];
      if (!isObj(ra)) return 'resource_admission is not an object';
      for (const rk of Object.keys(ra)) {
        if (rk === 'enabled') {
          if (typeof ra[rk] !== 'boolean') return 'enabled is not a bool';
          out.resource_admission.enabled = ra[rk] as boolean;
        } else if (rk === 'required_labels') {
          const rl = ra[rk];
          if (!isObj(rl) || Object.values(rl).some((v) => typeof v !== 'string')) return 'required_labels is not a string map';
          out.resource_admission.required_labels = { ...(rl as Record<string, string>) };
        } else return `unknown field ${rk}`;
      }
    } else return `unknown field ${k}`;
  }
  return out;
}

function samePolicy(a: GatewayAdmissionPolicy, b: GatewayAdmissionPolicy): boolean {
  const la = a.resource_admission.required_labels;
  const lb = b.resource_admission.required_labels;
  return (
    a.allow_driver_config === b.allow_driver_config &&
    a.resource_admission.enabled === b.resource_admission.enabled &&
    Object.keys(la).length === Object.keys(lb).length &&
    Object.keys(la).every((k) => Object.hasOwn(lb, k) && lb[k] === la[k])
  );
}

/** verify_acknowledgement: null when the driver's ack matches the gateway's policy, else upstream's message. */
export function verifyAcknowledgement(policy: GatewayAdmissionPolicy, ack: string): string | null {
  if (!policy.resource_admission.enabled && ack === '') return null;
  if (!ack.startsWith('v1:')) return 'compute driver does not acknowledge resource admission v1';
  const parsed = parsePolicyJson(ack.slice(3));
  if (typeof parsed === 'string') return `invalid driver admission acknowledgement: ${parsed}`;
  if (!samePolicy(parsed, policy)) return 'compute driver admission policy differs from gateway configuration';
  return null;
}

export const ADMISSION_CHANGED = 'remote driver admission policy changed; restart gateway after configuring matching policy';
export const DRIVER_CONFIG_DISABLED = 'caller driver config is disabled; a gateway administrator must enable allow_driver_config';

// ------------------------------------------------------------------------------------------------ launch authentication

/** What the stand-in remembers of a bundle it minted (the bytes go to the driver; tests compare hashes). */
export interface MintedLaunch {
  bytes: Buffer;
  gatewayId: string;
  sessionId: string;
  runtimeGeneration: string;
  sessionRotation: number;
  authEpoch: number;
  gatewayToken: string;
  sandboxToken: string;
  gatewayTokenSha256: string;
}

const sha256 = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

/** SandboxLaunchAuthentication as the stand-in encodes it (addendum §3.2). */
export interface LaunchBundleJson {
  supervisor: {
    session_id: string;
    runtime_generation: string;
    session_rotation: number;
    auth_epoch: number;
    gateway_token: string;
    gateway_expires_at: number;
    sandbox_token: string;
    sandbox_expires_at: number;
  };
  gateway_id: string;
  verification_keys: Array<{ key_id: string; public_key_pem: number[] }>;
}

/** Reads launch_authentication bytes back (JSON; no verification — see standin-v01.test.ts for that). */
export function decodeLaunch(bytes: Uint8Array): LaunchBundleJson {
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as LaunchBundleJson;
}

/**
 * The gateway's session JWT authority (addendum §3.2): mints SandboxLaunchAuthentication bundles — supervisor
 * {session_id, runtime_generation, session_rotation, auth_epoch, gateway_token, gateway_expires_at, sandbox_token,
 * sandbox_expires_at}, gateway_id, verification_keys [{key_id, public_key_pem: JSON array of the PEM's bytes}] — with
 * EdDSA (Ed25519) session JWTs: gateway token typ `openshell-gateway-session+jwt`, aud = iss =
 * `openshell-gateway:<gateway_id>`; sandbox token typ `openshell-sandbox-session+jwt`, aud `openshell-sandbox`; claims
 * sub `spiffe://openshell/sandbox/<id>`, sandbox_id, runtime_generation, auth_epoch, component
 * "openshell-supervisor", iat, exp, jti.
 */
export class LaunchAuthority {
  private constructor(
    readonly gatewayId: string,
    readonly keyId: string,
    readonly publicKeyPem: string,
    private readonly privateKey: CryptoKey,
    readonly ttlSecs: number,
  ) {}

  static async create(o: { gatewayId?: string; ttlSecs?: number } = {}): Promise<LaunchAuthority> {
    const { publicKey, privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const pem = await exportSPKI(publicKey);
    return new LaunchAuthority(o.gatewayId ?? `gw-${randomBytes(6).toString('hex')}`, `k-${randomBytes(6).toString('hex')}`, pem, privateKey as CryptoKey, o.ttlSecs ?? 3600);
  }

  private async token(profile: 'gateway' | 'sandbox', sandboxId: string, runtimeGeneration: string, authEpoch: number, iat: number): Promise<string> {
    const iss = `openshell-gateway:${this.gatewayId}`;
    return new SignJWT({ sandbox_id: sandboxId, runtime_generation: runtimeGeneration, auth_epoch: authEpoch, component: 'openshell-supervisor' })
      .setProtectedHeader({ alg: 'EdDSA', typ: profile === 'gateway' ? 'openshell-gateway-session+jwt' : 'openshell-sandbox-session+jwt', kid: this.keyId })
      .setIssuer(iss)
      .setAudience(profile === 'gateway' ? iss : 'openshell-sandbox')
      .setSubject(`spiffe://openshell/sandbox/${sandboxId}`)
      .setIssuedAt(iat)
      .setExpirationTime(iat + this.ttlSecs)
      .setJti(randomUUID())
      .sign(this.privateKey);
  }

  async mint(sandboxId: string, o: { runtimeGeneration: string; sessionId: string; sessionRotation: number; authEpoch: number }): Promise<MintedLaunch> {
    const iat = Math.floor(Date.now() / 1000);
    const gatewayToken = await this.token('gateway', sandboxId, o.runtimeGeneration, o.authEpoch, iat);
    const sandboxToken = await this.token('sandbox', sandboxId, o.runtimeGeneration, o.authEpoch, iat);
    const bundle = {
      supervisor: {
        session_id: o.sessionId,
        runtime_generation: o.runtimeGeneration,
        session_rotation: o.sessionRotation,
        auth_epoch: o.authEpoch,
        gateway_token: gatewayToken,
        gateway_expires_at: iat + this.ttlSecs,
        sandbox_token: sandboxToken,
        sandbox_expires_at: iat + this.ttlSecs,
      },
      gateway_id: this.gatewayId,
      verification_keys: [{ key_id: this.keyId, public_key_pem: [...Buffer.from(this.publicKeyPem, 'utf8')] }],
    };
    return {
      bytes: Buffer.from(JSON.stringify(bundle), 'utf8'),
      gatewayId: this.gatewayId,
      sessionId: o.sessionId,
      runtimeGeneration: o.runtimeGeneration,
      sessionRotation: o.sessionRotation,
      authEpoch: o.authEpoch,
      gatewayToken,
      sandboxToken,
      gatewayTokenSha256: sha256(gatewayToken),
    };
  }
}

// ------------------------------------------------------------------------------------------------ errors

/** An error the gateway returns to its own caller (code + message), as tonic would. */
export class GatewayError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
    this.name = 'GatewayError';
  }
  get codeName(): string {
    return grpc.status[this.code] ?? String(this.code);
  }
}

function isServiceError(e: unknown): e is grpc.ServiceError {
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'number' && 'details' in e;
}

function codeOf(e: unknown): grpc.status {
  if (e instanceof GatewayError) return e.code;
  return isServiceError(e) ? e.code : grpc.status.UNKNOWN;
}

function detailsOf(e: unknown): string {
  return isServiceError(e) ? e.details : ((e as Error)?.message ?? String(e));
}

// ------------------------------------------------------------------------------------------------ store rows

/** One snapshot as the row received it (for tests: what the driver reported, and what was made of it). */
export interface SnapshotRecord {
  at: number;
  via: string;
  backend: Phase;
  phaseAfter: Phase;
  conditions: DriverCondition[];
}

export interface GatewayRow {
  id: string;
  name: string;
  workspace: string;
  createdAtMs: number;
  /** Last local write (ms); the reconcile sweep skips rows written after it began. */
  updatedAtMs: number;
  phase: Phase;
  /** Every phase the row has had, consecutive duplicates collapsed. */
  history: Phase[];
  /** The conditions of the last applied snapshot, plus SupervisorNotConnected when that applies (public status). */
  conditions: DriverCondition[];
  /** derive_phase of the last applied snapshot. */
  backendPhase?: Phase;
  /** status.instance_id → public status.agent_pod. */
  agentPod: string;
  supervisorConnected: boolean;
  /** The sandbox as the gateway sent it to Validate (no token, no launch authentication). */
  sandbox: DriverSandbox;
  platformEvents: DriverPlatformEvent[];
  /** Every applied snapshot, in order. */
  snapshots: SnapshotRecord[];
  /** The last snapshot exactly as decoded with this generation's bindings (src/gen or src/gen/v0). */
  lastRaw?: unknown;
  // v0.1
  /** From CreateSandboxResponse / StartSandboxResponse ('' until one answered, or when the driver sent none). */
  runtimeIdentity: string;
  /** The persisted runtime generation: generation_id of every StartSandbox, runtime_generation of every bundle. */
  runtimeGeneration: string;
  sessionId: string;
  /** The latest launch authentication minted for this row (Create, then each explicit Start). */
  launch?: MintedLaunch;
}

export interface CallRecord {
  method: string;
  request: unknown;
  at: number;
  /** gRPC code name of the answer ('OK' on success). */
  code?: string;
  /** The decoded answer (this generation's bindings). */
  response?: unknown;
  /** Who made the call: the background reconcile loop, the watch loop (Get of a STARTING row), a background cleanup
   * (DeleteSandbox after a watch `deleted` or a prune), or anything else. */
  origin: 'reconcile' | 'gateway' | 'watch' | 'cleanup';
}

/** Whether a supervisor of a sandbox holds a session (asked only while the backend is READY). */
export interface SupervisorProbe {
  readonly kind: string;
  connect(row: GatewayRow): Promise<boolean>;
}
/** @deprecated the 0.0.x tests' name. */
export type SupervisorModel = SupervisorProbe;

export interface WatchStreamRecord {
  openedAt: number;
  events: number;
  endedAt?: number;
  /** 'error <CODE>: details' or 'ended unexpectedly'. */
  end?: string;
}

export interface ReconcileReport {
  listed: number;
  got: number;
  pruned: string[];
  erroredMissing: string[];
  skippedUnknown: string[];
  aborted?: string;
  /** The sweep is over (aborted or not). */
  finished?: boolean;
}

export interface BackgroundDelete {
  id: string;
  why: 'watch deleted' | 'reconcile prune';
  at: number;
  /** 'deleted=true' | 'deleted=false' | 'skipped: lifecycle gate held' | 'error <CODE>: details'; undefined while in flight. */
  outcome?: string;
}

export interface DroppedEvent {
  at: number;
  why: string;
  sandboxId?: string;
}

export interface GatewayOptions {
  socketPath: string;
  /** Which gateway to stand in for. Default 'v0.0' (the pinned 2f7fb65 gateway). */
  generation?: GatewayGeneration;
  /** Fixed delay before reopening the watch (gateway: 2000 ms, no backoff). */
  watchRetryMs?: number;
  /** Reconcile period (gateway: 60 000 ms). Tests make it shorter; 0 = only at startup and on demand. */
  reconcileIntervalMs?: number;
  /** ORPHAN_GRACE_PERIOD (gateway: 300 000 ms). */
  orphanGraceMs?: number;
  /** The supervisor session probe. undefined → backendReadyProbe(); null → no supervisor ever connects. */
  supervisor?: SupervisorProbe | null;
  /** How often held-back supervisor connections are retried (ms). */
  supervisorRetryMs?: number;
  /** v0.1: the configured driver name (`[openshell.drivers.<name>]`), used in negotiation messages. */
  driverName?: string;
  /** v0.1: the PeerMetadata sent in GetCapabilities (default gatewayMetadata()). */
  gatewayMetadata?: PeerMetadata;
  /** v0.1: the operator's admission policy for this driver (default upstream's). */
  admission?: GatewayAdmissionPolicy;
  /** v0.1: the session JWT authority. undefined → one is created at start(); null → a gateway without a signer. */
  launchAuthority?: LaunchAuthority | null;
}

type ResolvedOptions = Required<Omit<GatewayOptions, 'supervisor' | 'launchAuthority' | 'gatewayMetadata'>> & {
  supervisor: SupervisorProbe | null;
  launchAuthority?: LaunchAuthority | null;
  gatewayMetadata: PeerMetadata;
};

type MethodDef = { path: string; requestSerialize: (m: never) => Buffer; responseDeserialize: (b: Buffer) => unknown };

/** v0.1 request types, for fromPartial (ts-proto's encode needs every scalar field present). */
const V1_REQUESTS: Record<string, { fromPartial(o: unknown): unknown }> = {
  getCapabilities: GetCapabilitiesRequest,
  validateSandboxCreate: ValidateSandboxCreateRequest,
  createSandbox: CreateSandboxRequest,
  getSandbox: GetSandboxRequest,
  listSandboxes: ListSandboxesRequest,
  stopSandbox: StopSandboxRequest,
  startSandbox: StartSandboxRequest,
  deleteSandbox: DeleteSandboxRequest,
  watchSandboxes: WatchSandboxesRequest,
  ensureWorkspace: EnsureWorkspaceRequest,
  deleteWorkspace: DeleteWorkspaceRequest,
};
const V0_REQUESTS: Record<string, { fromPartial(o: unknown): unknown }> = {
  getCapabilities: v0.GetCapabilitiesRequest,
  getGatewayListenerRequirements: v0.GetGatewayListenerRequirementsRequest,
  validateSandboxCreate: v0.ValidateSandboxCreateRequest,
  createSandbox: v0.CreateSandboxRequest,
  getSandbox: v0.GetSandboxRequest,
  listSandboxes: v0.ListSandboxesRequest,
  stopSandbox: v0.StopSandboxRequest,
  startSandbox: v0.StartSandboxRequest,
  deleteSandbox: v0.DeleteSandboxRequest,
  watchSandboxes: v0.WatchSandboxesRequest,
  ensureWorkspace: v0.EnsureWorkspaceRequest,
  deleteWorkspace: v0.DeleteWorkspaceRequest,
};

const lowerFirst = (m: string) => m[0]!.toLowerCase() + m.slice(1);

const TRACE_ID = randomBytes(16).toString('hex');

/** The gateway: a store of rows plus the driver client, loops and lifecycle operations. */
export class Gateway {
  readonly rows = new Map<string, GatewayRow>();
  readonly calls: CallRecord[] = [];
  /** Warnings the gateway would log (dropped snapshots, watch restarts, aborted sweeps, ...). */
  readonly warnings: string[] = [];
  /** Why rows left the store: [id, reason]. */
  readonly removals: Array<[string, string]> = [];
  readonly watchStreams: WatchStreamRecord[] = [];
  readonly reconciles: ReconcileReport[] = [];
  /** v0.1: DeleteSandbox calls made in the background after a watch `deleted` event or a prune. */
  readonly backgroundDeletes: BackgroundDelete[] = [];
  /** v0.1: watch events dropped for invalid Timestamps, and GetSandbox answers refused for them. */
  readonly droppedEvents: DroppedEvent[] = [];
  readonly failedGets: DroppedEvent[] = [];
  /** Every watch event as decoded with this generation's bindings, in order. */
  readonly rawEvents: Array<{ at: number; event: WatchSandboxesEvent | v0.WatchSandboxesEvent }> = [];
  capabilities?: GetCapabilitiesResponse;
  /** The GetCapabilities answer exactly as decoded (v0 bindings in 0.0.x mode). */
  rawCapabilities?: unknown;
  listenerRequirements: v0.GatewayListenerRequirement[] = [];
  /** v0.1: resource_admission_policy from the first GetCapabilities (the re-checks compare with it byte for byte). */
  admissionAck?: string;
  launchAuthority?: LaunchAuthority | null;
  readonly generation: GatewayGeneration;
  opts: ResolvedOptions;

  private client: grpc.Client;
  private stopped = false;
  private stream?: grpc.ClientReadableStream<unknown>;
  private watchTimer?: NodeJS.Timeout;
  private reconcileTimer?: NodeJS.Timeout;
  /** The reconcile sweep in progress (resolved when none). */
  private sweeping: Promise<void> = Promise.resolve();
  private supervisorTimer?: NodeJS.Timeout;
  private probing = new Set<string>();
  private deletes = new Map<string, Promise<boolean>>();
  /** Request-side lifecycle operations holding a sandbox's gate: id → operation. */
  private gates = new Map<string, 'create' | 'stop' | 'start' | 'delete'>();
  private watchQueue: Promise<void> = Promise.resolve();
  private waiters: Array<() => void> = [];

  constructor(o: GatewayOptions) {
    this.generation = o.generation ?? 'v0.0';
    const { supervisor, launchAuthority, gatewayMetadata: meta, ...rest } = o;
    this.opts = {
      watchRetryMs: 2000,
      reconcileIntervalMs: 60_000,
      orphanGraceMs: 300_000,
      supervisorRetryMs: 500,
      driverName: 'substrate',
      admission: defaultGatewayAdmission(),
      ...rest,
      generation: this.generation,
      gatewayMetadata: meta ?? gatewayMetadata(),
      supervisor: supervisor === undefined ? backendReadyProbe() : supervisor,
      launchAuthority,
    };
    this.launchAuthority = launchAuthority;
    this.client = new grpc.Client(`unix:${o.socketPath}`, grpc.credentials.createInsecure(), {
      // tonic's default cap on decoded responses.
      'grpc.max_receive_message_length': 4 * 1024 * 1024,
      // tonic reconnects through its connector on the next call; keep grpc-js from backing off for minutes.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 1000,
      // The gateway's :authority on the socket.
      'grpc.default_authority': '[::]:50051',
      // Each stand-in is its own gateway process: no connection shared with another stand-in (grpc-js pools subchannels
      // per target across clients; a closed one could fail a fresh stand-in's first call).
      'grpc.use_local_subchannel_pool': 1,
    });
  }

  get isV1(): boolean {
    return this.generation === 'v0.1';
  }

  // -------------------------------------------------------------------------------------------- transport

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set('traceparent', `00-${TRACE_ID}-${randomBytes(8).toString('hex')}-01`);
    return md;
  }

  private def(method: string): MethodDef {
    const key = lowerFirst(method);
    const svc = (this.isV1 ? ComputeDriverService : v0.ComputeDriverService) as unknown as Record<string, MethodDef | undefined>;
    const d = svc[key];
    if (!d) throw new Error(`the ${this.generation} contract has no ${method}`);
    const req = (this.isV1 ? V1_REQUESTS : V0_REQUESTS)[key];
    return { ...d, requestSerialize: ((m: unknown) => d.requestSerialize((req ? req.fromPartial(m) : m) as never)) as MethodDef['requestSerialize'] };
  }

  /**
   * One unary call as the gateway makes it: traceparent, no deadline, recorded. `decode` replaces the generated
   * deserializer (to read raw bytes too).
   */
  private rpc<Res>(method: string, request: unknown, origin: CallRecord['origin'] = 'gateway', decode?: (b: Buffer) => unknown): Promise<Res> {
    const rec: CallRecord = { method, request, at: Date.now(), origin };
    this.calls.push(rec);
    const d = this.def(method);
    return new Promise<Res>((resolveCall, reject) => {
      this.client.makeUnaryRequest(d.path, d.requestSerialize, decode ?? d.responseDeserialize, request as never, this.metadata(), {}, (err, res) => {
        rec.code = err ? (grpc.status[err.code] ?? String(err.code)) : 'OK';
        if (err) reject(err);
        else {
          rec.response = res;
          resolveCall(res as Res);
        }
      });
    });
  }

  /** Calls to `method` since index `from` of the call log. */
  callsOf(method: string, from = 0): CallRecord[] {
    return this.calls.slice(from).filter((c) => c.method === method);
  }

  private warn(message: string): void {
    this.warnings.push(message);
  }

  private changed(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** The Stop/Start/Get/Delete request naming a row, in this generation's field names. */
  private nameReq(row: { id: string; name: string }): Record<string, string> {
    return this.isV1 ? { sandboxId: row.id, name: row.name } : { sandboxId: row.id, sandboxName: row.name };
  }

  // -------------------------------------------------------------------------------------------- startup

  /** GetCapabilities as this generation calls it (v0.1: with the gateway's metadata). */
  private async getCapabilities(origin: CallRecord['origin'] = 'gateway'): Promise<GetCapabilitiesResponse> {
    if (this.isV1) return this.rpc<GetCapabilitiesResponse>('GetCapabilities', { gateway: this.opts.gatewayMetadata }, origin);
    const r = await this.rpc<v0.GetCapabilitiesResponse>('GetCapabilities', {}, origin);
    this.rawCapabilities = r;
    // The 0.0.x answer in the internal shape; the v0.1-only fields are unknown to a 0.0.x gateway.
    return {
      ...r,
      supportsSandboxAuthentication: false,
      driverReportsRuntimeReadiness: false,
      rootfsTarStagingDir: '',
      rootfsTarMaxBytes: 0,
      resourceAdmissionPolicy: '',
    };
  }

  /** Startup: probes (and v0.1 negotiation and admission), startup sweep, then the watch and reconcile loops. */
  async start(): Promise<void> {
    this.stopped = false;
    try {
      this.capabilities = await this.getCapabilities();
      if (this.isV1) this.rawCapabilities = this.capabilities;
    } catch (e) {
      throw new GatewayError(codeOf(e), `gateway startup failed: GetCapabilities: ${detailsOf(e)}`);
    }
    if (this.isV1) {
      const refused = negotiate(this.opts.driverName, this.opts.gatewayMetadata, this.capabilities.extension);
      if (refused) throw new GatewayError(grpc.status.FAILED_PRECONDITION, `gateway startup failed: ${refused}`);
      const ack = this.capabilities.resourceAdmissionPolicy;
      const mismatch = verifyAcknowledgement(this.opts.admission, ack);
      if (mismatch) throw new GatewayError(grpc.status.FAILED_PRECONDITION, `gateway startup failed: ${mismatch}`);
      this.admissionAck = ack;
      if (this.launchAuthority === undefined) this.launchAuthority = await LaunchAuthority.create();
    } else {
      try {
        const r = await this.rpc<v0.GetGatewayListenerRequirementsResponse>('GetGatewayListenerRequirements', {});
        for (const req of r.requirements) {
          if (!req.selector) throw new GatewayError(grpc.status.FAILED_PRECONDITION, `gateway startup failed: listener requirement "${req.reason}" has no selector`);
        }
        this.listenerRequirements = r.requirements;
      } catch (e) {
        if (e instanceof GatewayError) throw e;
        if (codeOf(e) !== grpc.status.UNIMPLEMENTED) {
          throw new GatewayError(codeOf(e), `gateway startup failed: GetGatewayListenerRequirements: ${detailsOf(e)}`);
        }
        this.listenerRequirements = [];
      }
    }
    await this.startPersistedSandboxes();
    this.openWatch();
    void this.reconcileLoop();
    this.supervisorTimer = setInterval(() => this.retrySupervisors(), this.opts.supervisorRetryMs);
  }

  /** start_persisted_sandboxes (§5 step 5). */
  private async startPersistedSandboxes(): Promise<void> {
    for (const row of [...this.rows.values()]) {
      if (row.phase === 'STOPPING') {
        try {
          await this.rpc('StopSandbox', this.nameReq(row));
          this.setPhase(row, 'STOPPED');
          this.disconnect(row);
        } catch (e) {
          this.warn(`startup: stop of ${row.id} failed: ${detailsOf(e)}`);
        }
      } else if (row.phase === 'STARTING') {
        await this.startupStart(row);
      } else if (row.phase === 'STOPPED') {
        this.disconnect(row);
      } else if (this.capabilities?.gatewayManagesLifecycle && ['UNSPECIFIED', 'PROVISIONING', 'READY', 'UNKNOWN'].includes(row.phase)) {
        await this.startupStart(row);
      }
    }
  }

  private async startupStart(row: GatewayRow): Promise<void> {
    try {
      // v0.1: recovery of a persisted STARTING row sends no launch authentication.
      await this.driverStart(row, Buffer.alloc(0));
    } catch (e) {
      const notFound = codeOf(e) === grpc.status.NOT_FOUND;
      this.setPhase(row, 'ERROR');
      row.conditions = [{ type: 'Ready', status: 'False', reason: notFound ? 'BackendResourceMissing' : 'StartFailed', message: detailsOf(e), transitionTime: new Date() }];
    }
  }

  /** Stops the loops and closes the client (the gateway shutting down; rows are kept in `rows`). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.watchTimer);
    clearTimeout(this.reconcileTimer);
    clearInterval(this.supervisorTimer);
    this.stream?.cancel();
    this.client.close();
  }

  // -------------------------------------------------------------------------------------------- v0.1 driver calls

  /** verify_admission_policy (§2.5): a fresh GetCapabilities before every Validate, Create and Start. */
  private async verifyAdmission(): Promise<void> {
    if (!this.isV1) return;
    if (this.admissionAck === undefined) throw new GatewayError(grpc.status.FAILED_PRECONDITION, 'driver admission handshake required');
    let caps: GetCapabilitiesResponse;
    try {
      caps = await this.getCapabilities();
    } catch (e) {
      throw new GatewayError(codeOf(e), detailsOf(e));
    }
    if (caps.resourceAdmissionPolicy !== this.admissionAck) throw new GatewayError(grpc.status.FAILED_PRECONDITION, ADMISSION_CHANGED);
  }

  /** validate_caller_driver_config (§4.2): v0.1 refuses a non-empty caller driver_config unless allowed. */
  private checkCallerDriverConfig(sb: DriverSandbox): void {
    if (!this.isV1 || this.opts.admission.allow_driver_config) return;
    const dc = sb.spec?.template?.driverConfig;
    if (dc && Object.keys(dc).length > 0) throw new GatewayError(grpc.status.FAILED_PRECONDITION, DRIVER_CONFIG_DISABLED);
  }

  /** StartSandbox with everything v0.1 sends; records the runtime identity. */
  private async driverStart(row: GatewayRow, launch: Buffer): Promise<void> {
    if (!this.isV1) {
      await this.rpc('StartSandbox', this.nameReq(row));
      return;
    }
    this.checkCallerDriverConfig(row.sandbox);
    await this.verifyAdmission();
    const r = await this.rpc<{ runtimeIdentity: string }>('StartSandbox', {
      ...this.nameReq(row),
      launchAuthentication: launch,
      generationId: row.runtimeGeneration,
      expectedRuntimeIdentity: row.runtimeIdentity,
    });
    if (!r.runtimeIdentity && this.capabilities?.supportsSandboxAuthentication) {
      await this.rpc('StopSandbox', this.nameReq(row)).catch(() => undefined);
      throw new GatewayError(grpc.status.INTERNAL, 'compute driver did not return a runtime identity');
    }
    if (r.runtimeIdentity) row.runtimeIdentity = r.runtimeIdentity;
  }

  // -------------------------------------------------------------------------------------------- watch loop

  private openWatch(): void {
    if (this.stopped) return;
    const rec: WatchStreamRecord = { openedAt: Date.now(), events: 0 };
    this.watchStreams.push(rec);
    const d = this.def('WatchSandboxes');
    type Decoded = { event: WatchSandboxesEvent | v0.WatchSandboxesEvent; problems: string[] };
    const decode = (b: Buffer): Decoded =>
      this.isV1
        ? { event: d.responseDeserialize(b) as WatchSandboxesEvent, problems: watchEventTimestampProblems(b) }
        : { event: d.responseDeserialize(b) as v0.WatchSandboxesEvent, problems: [] };
    const stream = this.client.makeServerStreamRequest(d.path, d.requestSerialize, decode, {} as never, this.metadata(), {});
    this.stream = stream;
    let over = false;
    const finish = (why: string) => {
      if (over) return;
      over = true;
      rec.endedAt = Date.now();
      rec.end = why;
      if (this.stopped) return;
      this.warn(`watch stream ${why}; reopening in ${this.opts.watchRetryMs} ms`);
      this.watchTimer = setTimeout(() => this.openWatch(), this.opts.watchRetryMs);
      this.changed();
    };
    stream.on('data', (w: { event: WatchSandboxesEvent | v0.WatchSandboxesEvent; problems: string[] }) => {
      rec.events++;
      this.rawEvents.push({ at: Date.now(), event: w.event });
      if (!this.isV1) {
        try {
          this.applyWatchEventV0(w.event as v0.WatchSandboxesEvent);
        } catch (e) {
          // Event-level errors are logged and skipped.
          this.warn(`watch event skipped: ${(e as Error).message}`);
        }
        this.changed();
        return;
      }
      // v0.1: events are applied one after another (a STARTING row's snapshot waits for a fresh Get).
      this.watchQueue = this.watchQueue
        .then(() => this.applyWatchEventV1(w.event as WatchSandboxesEvent, w.problems))
        .catch((e) => this.warn(`Failed to apply compute driver event: ${(e as Error).message}`))
        .finally(() => this.changed());
    });
    stream.on('error', (e: grpc.ServiceError) => finish(`errored ${grpc.status[e.code] ?? e.code}: ${e.details}`));
    stream.on('end', () => finish('ended unexpectedly'));
  }

  /** The stream opened most recently (it may have ended). */
  get currentWatch(): WatchStreamRecord | undefined {
    return this.watchStreams.at(-1);
  }

  private applyWatchEventV0(ev: v0.WatchSandboxesEvent): void {
    const p = ev.payload;
    if (!p) return;
    switch (p.$case) {
      case 'sandbox':
        if (p.value.sandbox) this.applySnapshot(fromV0Sandbox(p.value.sandbox), 'watch', p.value.sandbox);
        break;
      case 'deleted': {
        const id = p.value.sandboxId;
        if (this.rows.has(id)) this.removeRow(id, 'watch deleted event');
        break;
      }
      case 'platformEvent': {
        const row = this.rows.get(p.value.sandboxId);
        if (row && p.value.event) row.platformEvents.push(fromV0Event(p.value.event));
        break;
      }
    }
  }

  private async applyWatchEventV1(ev: WatchSandboxesEvent, problems: string[]): Promise<void> {
    const p = ev.payload;
    if (!p) return;
    const sandboxId = p.$case === 'sandbox' ? p.value.sandbox?.id : p.$case === 'deleted' ? p.value.sandboxId : p.value.sandboxId;
    if (problems.length > 0) {
      // validate_driver_watch_event_timestamps failed: the whole event is not applied.
      const why = `invalid timestamp in ${p.$case} event: ${problems.join('; ')}`;
      this.droppedEvents.push({ at: Date.now(), why, sandboxId });
      this.warn(`Failed to apply compute driver event for ${sandboxId}: ${why}`);
      return;
    }
    switch (p.$case) {
      case 'sandbox': {
        const sb = p.value.sandbox;
        if (!sb) return;
        const row = this.rows.get(sb.id);
        if (row?.phase === 'STARTING') {
          // A STARTING row's snapshot is replaced by a fresh GetSandbox; a failing Get keeps the state.
          try {
            const got = await this.getSandbox(row, 'watch');
            if (got) this.applySnapshot(got.sandbox, 'watch (fresh get)', got.raw);
          } catch (e) {
            this.warn(`watch: fresh GetSandbox of STARTING ${row.id} failed; state kept: ${detailsOf(e)}`);
          }
          return;
        }
        this.applySnapshot(sb, 'watch', sb);
        return;
      }
      case 'deleted': {
        const id = p.value.sandboxId;
        const row = this.rows.get(id);
        if (!row) return;
        const gate = this.gates.get(id);
        if (gate === 'create' || gate === 'stop' || gate === 'start') {
          this.warn(`watch deleted event for ${id} skipped: a ${gate} operation is pending`);
          return;
        }
        this.removeRow(id, 'watch deleted event');
        this.backgroundDelete(row, 'watch deleted');
        return;
      }
      case 'platformEvent': {
        const row = this.rows.get(p.value.sandboxId);
        if (row && p.value.event) row.platformEvents.push(p.value.event);
        return;
      }
    }
  }

  /** spawn_driver_sandbox_cleanup: DeleteSandbox in the background; skipped while a request holds the gate. */
  private backgroundDelete(row: GatewayRow, why: BackgroundDelete['why']): void {
    const rec: BackgroundDelete = { id: row.id, why, at: Date.now() };
    this.backgroundDeletes.push(rec);
    if (this.gates.has(row.id)) {
      rec.outcome = 'skipped: lifecycle gate held';
      this.changed();
      return;
    }
    void this.rpc<{ deleted: boolean }>('DeleteSandbox', this.nameReq(row), 'cleanup')
      .then((r) => (rec.outcome = `deleted=${r.deleted}`))
      .catch((e) => {
        rec.outcome = `error ${grpc.status[codeOf(e)]}: ${detailsOf(e)}`;
        this.warn(`background DeleteSandbox of ${row.id} failed: ${detailsOf(e)}`);
      })
      .finally(() => this.changed());
  }

  // -------------------------------------------------------------------------------------------- snapshots

  /**
   * apply_driver_snapshot for a snapshot from Watch, Get or recovery (in the internal v0.1 shape; `raw` is what the
   * generation's bindings decoded). Returns whether it was applied.
   */
  applySnapshot(sb: DriverSandbox, via: string, raw?: unknown): boolean {
    const row = this.rows.get(sb.id);
    // The gateway never creates rows from a snapshot.
    if (!row) return false;
    if (row.phase === 'ERROR' || row.phase === 'DELETING') return false;
    if (sb.name !== row.name) {
      // The store rejects the write ("sandbox name cannot be changed after creation"); the event is dropped.
      this.warn(`dropped ${via} snapshot of ${sb.id}: sandbox name cannot be changed after creation (stored "${row.name}", snapshot "${sb.name}")`);
      return false;
    }
    if (raw !== undefined) row.lastRaw = raw;
    const status = sb.status;
    if (!status) {
      // Keeps the phase; a live session can still promote it.
      return true;
    }
    const rules = this.generation;
    const readiness = this.isV1 && !!this.capabilities?.driverReportsRuntimeReadiness;
    const backend = derivePhase(status, rules);
    row.backendPhase = backend;
    row.agentPod = status.instanceId;
    // SUPERVISOR: a session needs a running sandbox.
    if (backend !== 'READY' && row.supervisorConnected) row.supervisorConnected = false;
    const next = nextPhase(row.phase, status, row.supervisorConnected, rules, readiness);
    row.conditions = [...status.conditions];
    if (backend === 'READY' && !row.supervisorConnected && !readiness) {
      row.conditions = row.conditions.filter((c) => c.type !== 'Ready');
      row.conditions.push({
        type: 'Ready',
        status: 'False',
        reason: 'SupervisorNotConnected',
        message: this.isV1 ? 'Backend ready; waiting for supervisor session' : 'the compute backend is ready but no supervisor session is connected',
        transitionTime: new Date(),
      });
    }
    this.setPhase(row, next);
    row.snapshots.push({ at: Date.now(), via, backend, phaseAfter: row.phase, conditions: [...status.conditions] });
    if (next === 'STOPPED') this.disconnect(row);
    if (backend === 'READY' && !row.supervisorConnected) this.maybeConnect(row);
    return true;
  }

  private setPhase(row: GatewayRow, phase: Phase): void {
    row.updatedAtMs = Date.now();
    if (row.phase !== phase) {
      row.phase = phase;
      if (row.history.at(-1) !== phase) row.history.push(phase);
    }
    this.changed();
  }

  private removeRow(id: string, reason: string): void {
    if (!this.rows.delete(id)) return;
    this.removals.push([id, reason]);
    this.changed();
  }

  // -------------------------------------------------------------------------------------------- supervisor

  private sessionMayMove(row: GatewayRow): boolean {
    return !['DELETING', 'ERROR', 'STOPPING', 'STOPPED'].includes(row.phase);
  }

  private maybeConnect(row: GatewayRow): void {
    const sup = this.opts.supervisor;
    if (!sup || this.probing.has(row.id) || row.supervisorConnected || !this.sessionMayMove(row)) return;
    this.probing.add(row.id);
    void sup
      .connect(row)
      .catch(() => false)
      .then((ok) => {
        this.probing.delete(row.id);
        const cur = this.rows.get(row.id);
        if (!ok || !cur || cur !== row || this.stopped) return;
        // The session only counts while the backend still reports the sandbox running.
        if (row.backendPhase !== 'READY' || row.supervisorConnected || !this.sessionMayMove(row)) return;
        row.supervisorConnected = true;
        row.conditions = row.conditions.filter((c) => !(c.type === 'Ready' && c.reason === 'SupervisorNotConnected'));
        row.conditions.push({ type: 'Ready', status: 'True', reason: 'SupervisorConnected', message: 'supervisor session connected', transitionTime: new Date() });
        // Connect moves PROVISIONING, UNKNOWN, STARTING or READY to READY.
        if (['PROVISIONING', 'UNKNOWN', 'STARTING', 'READY'].includes(row.phase)) this.setPhase(row, 'READY');
      });
  }

  private retrySupervisors(): void {
    for (const row of this.rows.values()) {
      if (row.backendPhase === 'READY' && !row.supervisorConnected) this.maybeConnect(row);
    }
  }

  /** Session cleanup (stop, out-of-band stop): the row's supervisor session ends. */
  private disconnect(row: GatewayRow): void {
    const was = row.supervisorConnected;
    row.supervisorConnected = false;
    // Disconnect moves READY to PROVISIONING; ignored in DELETING, ERROR, STOPPING, STOPPED.
    if (was && row.phase === 'READY') this.setPhase(row, 'PROVISIONING');
  }

  // -------------------------------------------------------------------------------------------- reconcile

  private async reconcileLoop(): Promise<void> {
    if (this.stopped) return;
    await this.reconcileOnce().catch((e) => this.warn(`reconcile failed: ${(e as Error).message}`));
    if (this.stopped || this.opts.reconcileIntervalMs <= 0) return;
    this.reconcileTimer = setTimeout(() => void this.reconcileLoop(), this.opts.reconcileIntervalMs);
  }

  /** ListSandboxes as this generation decodes it: internal form plus the raw decoded answer. */
  async listSandboxes(origin: CallRecord['origin'] = 'gateway'): Promise<{ sandboxes: DriverSandbox[]; raw: unknown[] }> {
    if (this.isV1) {
      const r = await this.rpc<{ sandboxes: DriverSandbox[] }>('ListSandboxes', {}, origin);
      return { sandboxes: r.sandboxes, raw: r.sandboxes };
    }
    const r = await this.rpc<v0.ListSandboxesResponse>('ListSandboxes', {}, origin);
    return { sandboxes: r.sandboxes.map(fromV0Sandbox), raw: r.sandboxes };
  }

  /**
   * One reconcile sweep (§4 "Reconcile loop"; v0.1 §4.6). Sweeps never overlap, as in the gateway's single
   * loop: a call made while the loop's sweep runs waits for it, then sweeps itself (so what it reports is
   * what it did, not what the loop's sweep happened to do).
   */
  async reconcileOnce(): Promise<ReconcileReport> {
    const run = this.sweeping.then(() => this.sweep());
    this.sweeping = run.then(
      () => undefined,
      () => undefined,
    );
    const report = await run;
    report.finished = true;
    this.changed();
    return report;
  }

  private async sweep(): Promise<ReconcileReport> {
    const began = Date.now();
    const report: ReconcileReport = { listed: 0, got: 0, pruned: [], erroredMissing: [], skippedUnknown: [] };
    this.reconciles.push(report);
    let listed: DriverSandbox[];
    try {
      listed = (await this.listSandboxes('reconcile')).sandboxes;
    } catch (e) {
      report.aborted = `ListSandboxes failed: ${detailsOf(e)}`;
      this.warn(`reconcile skipped: ${report.aborted}`);
      return report;
    }
    report.listed = listed.length;
    const listedIds = new Set(listed.map((s) => s.id));
    for (const sb of listed) {
      const row = this.rows.get(sb.id);
      if (!row) {
        report.skippedUnknown.push(sb.id);
        continue;
      }
      if (row.updatedAtMs > began) continue;
      try {
        const got = await this.getSandbox(row, 'reconcile');
        report.got++;
        if (got) this.applySnapshot(got.sandbox, 'reconcile', got.raw);
      } catch (e) {
        report.aborted = `GetSandbox ${row.id} failed: ${detailsOf(e)}`;
        this.warn(`reconcile aborted: ${report.aborted}`);
        return report;
      }
    }
    // 0.0.x sweeps only the first 500 rows.
    const rows = [...this.rows.values()];
    for (const row of this.isV1 ? rows : rows.slice(0, 500)) {
      if (listedIds.has(row.id)) continue;
      if (began - row.createdAtMs < this.opts.orphanGraceMs) continue;
      if (this.isV1 && this.gates.has(row.id)) continue;
      let got: { sandbox: DriverSandbox; raw: unknown } | undefined;
      try {
        got = await this.getSandbox(row, 'reconcile');
      } catch (e) {
        report.aborted = `GetSandbox ${row.id} (orphan check) failed: ${detailsOf(e)}`;
        this.warn(`reconcile aborted: ${report.aborted}`);
        return report;
      }
      if (got) {
        this.applySnapshot(got.sandbox, 'reconcile', got.raw);
      } else if (['STOPPING', 'STOPPED', 'STARTING'].includes(row.phase)) {
        this.setPhase(row, 'ERROR');
        row.conditions = [{ type: 'Ready', status: 'False', reason: 'ComputeResourceMissing', message: 'the compute driver no longer knows this sandbox', transitionTime: new Date() }];
        report.erroredMissing.push(row.id);
      } else {
        this.removeRow(row.id, 'orphan pruned by reconcile');
        report.pruned.push(row.id);
        if (this.isV1) this.backgroundDelete(row, 'reconcile prune');
      }
    }
    return report;
  }

  /**
   * GetSandbox(id, name) as this generation calls it, without the store's rules: the internal form, the raw decoded
   * answer and (v0.1) the Timestamp problems found in its bytes. Throws the driver's error (NOT_FOUND included).
   */
  async driverGet(row: { id: string; name: string }, origin: CallRecord['origin'] = 'gateway'): Promise<{ sandbox?: DriverSandbox; raw?: unknown; problems: string[] }> {
    if (this.isV1) {
      const d = this.def('GetSandbox');
      const r = await this.rpc<{ msg: { sandbox?: DriverSandbox }; problems: string[] }>('GetSandbox', this.nameReq(row), origin, (b) => ({
        msg: d.responseDeserialize(b),
        problems: getResponseTimestampProblems(b),
      }));
      return { sandbox: r.msg.sandbox, raw: r.msg.sandbox, problems: r.problems };
    }
    const r = await this.rpc<v0.GetSandboxResponse>('GetSandbox', this.nameReq(row), origin);
    return { sandbox: r.sandbox && fromV0Sandbox(r.sandbox), raw: r.sandbox, problems: [] };
  }

  /**
   * GetSandbox as the gateway uses it: undefined when absent (NOT_FOUND or no sandbox); throws on other errors, on an
   * answer for another id and (v0.1) on an invalid Timestamp.
   */
  private async getSandbox(row: { id: string; name: string }, origin: CallRecord['origin'] = 'gateway'): Promise<{ sandbox: DriverSandbox; raw: unknown } | undefined> {
    try {
      const r = await this.driverGet(row, origin);
      if (!r.sandbox) return undefined;
      if (r.sandbox.id !== row.id) throw new Error(`GetSandbox(${row.id}) answered sandbox ${r.sandbox.id}`);
      if (r.problems.length > 0) {
        const why = `invalid timestamp: ${r.problems.join('; ')}`;
        this.failedGets.push({ at: Date.now(), why, sandboxId: row.id });
        throw new GatewayError(grpc.status.INTERNAL, `GetSandbox(${row.id}): ${why}`);
      }
      return { sandbox: r.sandbox, raw: r.raw };
    } catch (e) {
      if (codeOf(e) === grpc.status.NOT_FOUND) return undefined;
      throw e;
    }
  }

  // -------------------------------------------------------------------------------------------- user actions

  private async withGate<T>(id: string, op: 'create' | 'stop' | 'start' | 'delete', fn: () => Promise<T>): Promise<T> {
    this.gates.set(id, op);
    try {
      return await fn();
    } finally {
      if (this.gates.get(id) === op) this.gates.delete(id);
    }
  }

  /**
   * The user's create: (v0.1: driver_config gate, admission re-check) Validate, write the row PROVISIONING, (v0.1:
   * mint launch authentication, admission re-check) Create with the token.
   */
  async createSandbox(sandbox: DriverSandbox): Promise<GatewayRow> {
    this.checkCallerDriverConfig(sandbox);
    let spec = sandbox.spec;
    // v0.1 always sends workload_identity (empty strings: image defaults).
    if (this.isV1 && spec && !spec.workloadIdentity) spec = { ...spec, workloadIdentity: { user: '', group: '' } };
    const forValidate: DriverSandbox = {
      ...sandbox,
      status: undefined,
      spec: spec ? { ...spec, sandboxToken: '', launchAuthentication: Buffer.alloc(0) } : undefined,
    };
    await this.verifyAdmission();
    try {
      await this.rpc('ValidateSandboxCreate', { sandbox: this.isV1 ? forValidate : toV0Sandbox(forValidate) });
    } catch (e) {
      // Returned to the API caller unchanged; nothing persisted.
      throw new GatewayError(codeOf(e), detailsOf(e));
    }
    if (this.rows.has(sandbox.id)) throw new GatewayError(grpc.status.ALREADY_EXISTS, 'sandbox already exists');
    const now = Date.now();
    const row: GatewayRow = {
      id: sandbox.id,
      name: sandbox.name,
      workspace: sandbox.workspace || 'default',
      createdAtMs: now,
      updatedAtMs: now,
      phase: 'PROVISIONING',
      history: ['PROVISIONING'],
      conditions: [],
      agentPod: '',
      supervisorConnected: false,
      sandbox: forValidate,
      platformEvents: [],
      snapshots: [],
      runtimeIdentity: '',
      runtimeGeneration: randomUUID(),
      sessionId: randomUUID(),
    };
    this.rows.set(row.id, row);
    this.changed();
    await this.withGate(row.id, 'create', async () => {
      try {
        let toSend: DriverSandbox = { ...sandbox, status: undefined, spec };
        if (this.isV1) {
          if (this.launchAuthority && spec) {
            row.launch = await this.launchAuthority.mint(row.id, { runtimeGeneration: row.runtimeGeneration, sessionId: row.sessionId, sessionRotation: 1, authEpoch: 1 });
            toSend = { ...toSend, spec: { ...spec, launchAuthentication: row.launch.bytes, sandboxToken: row.launch.gatewayToken } };
          }
          await this.verifyAdmission();
          const r = await this.rpc<{ runtimeIdentity: string }>('CreateSandbox', { sandbox: toSend });
          if (!r.runtimeIdentity && this.capabilities?.supportsSandboxAuthentication) {
            await this.rpc('DeleteSandbox', this.nameReq(row)).catch(() => undefined);
            throw new GatewayError(grpc.status.INTERNAL, 'compute driver did not return a runtime identity');
          }
          row.runtimeIdentity = r.runtimeIdentity;
        } else {
          await this.rpc('CreateSandbox', { sandbox: toV0Sandbox(toSend) });
        }
      } catch (e) {
        this.removeRow(row.id, 'create failed');
        const c = codeOf(e);
        if (e instanceof GatewayError) throw e;
        if (c === grpc.status.ALREADY_EXISTS) throw new GatewayError(c, 'sandbox already exists');
        if (c === grpc.status.FAILED_PRECONDITION) throw new GatewayError(c, detailsOf(e));
        throw new GatewayError(grpc.status.INTERNAL, `create sandbox failed: ${detailsOf(e)}`);
      }
    });
    return row;
  }

  private mustRow(id: string): GatewayRow {
    const row = this.rows.get(id);
    if (!row) throw new GatewayError(grpc.status.NOT_FOUND, 'sandbox not found');
    return row;
  }

  /** The user's stop. */
  async stopSandbox(id: string): Promise<void> {
    const row = this.mustRow(id);
    if (row.phase === 'STOPPED') return;
    if (row.phase !== 'READY' && row.phase !== 'STOPPING') {
      throw new GatewayError(grpc.status.FAILED_PRECONDITION, `sandbox ${row.name} is ${row.phase}; only a READY or STOPPING sandbox can be stopped`);
    }
    const prev = row.phase;
    this.setPhase(row, 'STOPPING');
    await this.withGate(id, 'stop', async () => {
      try {
        await this.rpc('StopSandbox', this.nameReq(row));
      } catch (e) {
        const err = new GatewayError(codeOf(e), `stop sandbox failed: ${detailsOf(e)}`);
        await this.recoverFailedLifecycle(row, 'stop', prev);
        throw err;
      }
    });
    const now = row.phase as Phase;
    if (this.rows.get(id) === row && now !== 'ERROR' && now !== 'DELETING') {
      this.setPhase(row, 'STOPPED');
      this.disconnect(row);
    }
  }

  /** The user's start. v0.1: an explicit start from STOPPED mints a fresh launch authentication (auth_epoch + 1). */
  async startSandbox(id: string): Promise<void> {
    const row = this.mustRow(id);
    if (row.phase === 'READY') return;
    if (row.phase !== 'STOPPED' && row.phase !== 'STARTING') {
      throw new GatewayError(grpc.status.FAILED_PRECONDITION, `sandbox ${row.name} is ${row.phase}; only a STOPPED or STARTING sandbox can be started`);
    }
    const prev = row.phase;
    if (this.isV1 && prev === 'STOPPED' && this.launchAuthority) {
      const last = row.launch;
      row.launch = await this.launchAuthority.mint(row.id, {
        runtimeGeneration: row.runtimeGeneration,
        sessionId: row.sessionId,
        sessionRotation: (last?.sessionRotation ?? 0) + 1,
        authEpoch: (last?.authEpoch ?? 0) + 1,
      });
    }
    this.setPhase(row, 'STARTING');
    // A fresh session is required before a starting sandbox returns to READY.
    row.supervisorConnected = false;
    await this.withGate(id, 'start', async () => {
      try {
        await this.driverStart(row, this.isV1 ? (row.launch?.bytes ?? Buffer.alloc(0)) : Buffer.alloc(0));
      } catch (e) {
        const err = new GatewayError(codeOf(e), `start sandbox failed: ${detailsOf(e)}`);
        await this.recoverFailedLifecycle(row, 'start', prev);
        throw err;
      }
    });
    // Stays STARTING until a fresh supervisor session connects.
    if (row.backendPhase === 'READY') this.maybeConnect(row);
  }

  /** recover_failed_lifecycle (§2.3): GetSandbox after a failed Stop or Start. */
  private async recoverFailedLifecycle(row: GatewayRow, op: 'stop' | 'start', prev: Phase): Promise<void> {
    let got: { sandbox: DriverSandbox; raw: unknown } | undefined;
    try {
      got = await this.getSandbox(row);
    } catch (e) {
      this.warn(`${op} recovery of ${row.id} inconclusive: ${detailsOf(e)}`);
      return;
    }
    if (!got) {
      this.warn(`${op} recovery of ${row.id} inconclusive: the driver does not know the sandbox`);
      return;
    }
    const status = got.sandbox.status;
    const backend = derivePhase(status, this.generation);
    if (backend === 'ERROR') {
      this.applySnapshot(got.sandbox, `${op} recovery`, got.raw);
      return;
    }
    if (op === 'stop') {
      if (backend === 'STOPPED' || (status && hasFalseReason(status, STOPPED_REASONS))) {
        this.applySnapshot(got.sandbox, 'stop recovery', got.raw);
      } else if (stopInProgress(status)) {
        // Still stopping: stays STOPPING until Suspended=True arrives.
      } else {
        this.setPhase(row, prev);
        this.applySnapshot(got.sandbox, 'stop recovery', got.raw);
      }
    } else {
      if (backend === 'STOPPED') {
        this.setPhase(row, prev === 'STARTING' ? 'STOPPED' : prev);
      } else {
        // Started (or starting) in the backend: stays STARTING until the supervisor connects.
        this.applySnapshot(got.sandbox, 'start recovery', got.raw);
      }
    }
  }

  /** The user's delete. Resolves with the deleted flag the gateway reports. */
  deleteSandbox(id: string): Promise<boolean> {
    const inflight = this.deletes.get(id);
    if (inflight) return inflight;
    const p = this.doDelete(id).finally(() => this.deletes.delete(id));
    this.deletes.set(id, p);
    return p;
  }

  private async doDelete(id: string): Promise<boolean> {
    const row = this.mustRow(id);
    if (row.phase === 'DELETING') return true;
    const before = { phase: row.phase, history: [...row.history], conditions: row.conditions, supervisorConnected: row.supervisorConnected };
    this.setPhase(row, 'DELETING');
    let deleted!: boolean;
    await this.withGate(id, 'delete', async () => {
      try {
        deleted = (await this.rpc<{ deleted: boolean }>('DeleteSandbox', this.nameReq(row))).deleted;
      } catch (e) {
        const err = new GatewayError(grpc.status.INTERNAL, `delete sandbox failed: ${detailsOf(e)}`);
        try {
          const got = await this.getSandbox(row);
          if (got) {
            row.phase = before.phase;
            row.history.push(before.phase);
            this.applySnapshot(got.sandbox, 'delete recovery', got.raw);
          } else {
            this.removeRow(row.id, 'delete recovery: absent');
          }
        } catch {
          Object.assign(row, { phase: before.phase, conditions: before.conditions, supervisorConnected: before.supervisorConnected });
          row.history.push(before.phase);
          this.changed();
        }
        throw err;
      }
    });
    if (!deleted) this.removeRow(row.id, 'driver reported already absent');
    return true;
  }

  /** A DeleteSandbox of a row's sandbox as the gateway sends it (no store change): the driver's deleted flag. */
  async driverDelete(row: { id: string; name: string }): Promise<boolean> {
    return (await this.rpc<{ deleted: boolean }>('DeleteSandbox', this.nameReq(row))).deleted;
  }

  /** EnsureWorkspace as the gateway calls it (UNIMPLEMENTED = OK). */
  async ensureWorkspace(workspace: string): Promise<void> {
    try {
      await this.rpc('EnsureWorkspace', { workspace });
    } catch (e) {
      if (codeOf(e) !== grpc.status.UNIMPLEMENTED) throw new GatewayError(codeOf(e), detailsOf(e));
    }
  }

  /** DeleteWorkspace as the gateway calls it (UNIMPLEMENTED = OK; other codes kept, "delete workspace platform resources failed"). */
  async deleteWorkspace(workspace: string): Promise<void> {
    try {
      await this.rpc('DeleteWorkspace', { workspace });
    } catch (e) {
      if (codeOf(e) !== grpc.status.UNIMPLEMENTED) throw new GatewayError(codeOf(e), `delete workspace platform resources failed: ${detailsOf(e)}`);
    }
  }

  /** A row written directly into the store (e.g. one whose driver resource is gone), for orphan tests. */
  insertRow(r: { id: string; name: string; phase: Phase; createdAtMs?: number; workspace?: string }): GatewayRow {
    const now = Date.now();
    const row: GatewayRow = {
      id: r.id,
      name: r.name,
      workspace: r.workspace ?? 'default',
      createdAtMs: r.createdAtMs ?? now,
      updatedAtMs: r.createdAtMs ?? now,
      phase: r.phase,
      history: [r.phase],
      conditions: [],
      agentPod: '',
      supervisorConnected: false,
      sandbox: { id: r.id, name: r.name, namespace: '', workspace: r.workspace ?? 'default' },
      platformEvents: [],
      snapshots: [],
      runtimeIdentity: '',
      runtimeGeneration: randomUUID(),
      sessionId: randomUUID(),
    };
    this.rows.set(row.id, row);
    return row;
  }

  // -------------------------------------------------------------------------------------------- waiting

  /** Resolves once `pred` holds (re-checked on every store change and every 250 ms). */
  async waitFor<T>(what: string, pred: () => T | undefined | false, timeoutMs = 60_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = pred();
      if (v) return v;
      if (Date.now() > deadline) throw new Error(`gateway: timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 250);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Waits until the row's public phase is `phase`; fails early if it becomes ERROR instead. */
  async waitPhase(id: string, phase: Phase, timeoutMs = 60_000): Promise<GatewayRow> {
    return this.waitFor(
      `sandbox ${id} to be ${phase}`,
      () => {
        const row = this.rows.get(id);
        if (row && row.phase === 'ERROR' && phase !== 'ERROR') {
          throw new Error(`sandbox ${id} became ERROR while waiting for ${phase}: ${JSON.stringify(row.conditions)}`);
        }
        return row && row.phase === phase ? row : undefined;
      },
      timeoutMs,
    );
  }

  async waitGone(id: string, timeoutMs = 60_000): Promise<void> {
    await this.waitFor(`sandbox ${id} to leave the store`, () => !this.rows.has(id), timeoutMs);
  }
}

// ------------------------------------------------------------------------------------------------ the driver

export interface DriverProcessOptions {
  socketPath: string;
  stateDir: string;
  /** `--local`: embed the local Substrate. */
  local: boolean;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** Wait at most this long for the serve line (ms). */
  startTimeoutMs?: number;
}

/** The real driver binary, `node bin/substrate-driver.js serve ...`, as an operator runs it next to a gateway. */
export class DriverProcess {
  stdout = '';
  stderr = '';
  info?: { socket: string; api: string };

  private constructor(
    readonly opts: DriverProcessOptions,
    readonly proc: ResultPromise<{ reject: false; stdout: 'pipe'; stderr: 'pipe'; stdin: 'ignore'; buffer: false }>,
  ) {}

  static async start(o: DriverProcessOptions): Promise<DriverProcess> {
    const args = ['serve', '--socket', o.socketPath, '--state-dir', o.stateDir, ...(o.local ? ['--local'] : []), ...(o.extraArgs ?? [])];
    const proc = execa(process.execPath, [DRIVER_BIN, ...args], {
      reject: false,
      stdout: 'pipe',
      stderr: 'pipe',
      stdin: 'ignore',
      buffer: false,
      env: { ...o.env },
      cleanup: true,
    });
    const d = new DriverProcess(o, proc);
    proc.stderr.on('data', (c: Buffer) => (d.stderr += c.toString()));
    await new Promise<void>((resolveStart, reject) => {
      const timer = setTimeout(() => reject(new Error(`driver did not start within ${o.startTimeoutMs ?? 90_000} ms: ${d.stderr.slice(-2000)}`)), o.startTimeoutMs ?? 90_000);
      proc.stdout.on('data', (c: Buffer) => {
        d.stdout += c.toString();
        const i = d.stdout.indexOf('\n');
        if (i >= 0 && !d.info) {
          clearTimeout(timer);
          d.info = JSON.parse(d.stdout.slice(0, i)) as { socket: string; api: string };
          resolveStart();
        }
      });
      void proc.then((r) => {
        clearTimeout(timer);
        if (!d.info) reject(new Error(`driver exited (${r.exitCode ?? r.signal}) before serving: ${d.stderr.slice(-2000)}`));
      });
    });
    return d;
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get exited(): boolean {
    return this.proc.exitCode !== null || this.proc.signalCode !== null;
  }

  /** Kills the process with `signal` and waits for it to exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL', timeoutMs = 60_000): Promise<{ exitCode?: number; signal?: string }> {
    if (!this.exited) this.proc.kill(signal);
    const t = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    const r = await this.proc;
    clearTimeout(t);
    return { exitCode: r.exitCode, signal: r.signal };
  }

  /** Graceful stop (SIGTERM), as an operator's service manager would. */
  stop(timeoutMs = 60_000): Promise<{ exitCode?: number; signal?: string }> {
    return this.kill('SIGTERM', timeoutMs);
  }
}

// ------------------------------------------------------------------------------------------------ local Substrate

export type { LocalJson };

/** <state-dir>/local.json of the running local Substrate. */
export function readLocalJson(stateDir: string): LocalJson {
  const f = join(stateDir, 'local.json');
  if (!existsSync(f)) throw new Error(`no local Substrate runs for ${stateDir} (no local.json)`);
  return JSON.parse(readFileSync(f, 'utf8')) as LocalJson;
}

export const ROUTER_SUFFIX = 'actors.resources.substrate.ate.dev';

/** A request through the local Substrate's router (which resumes a suspended actor on demand), naming the actor by Host. */
export function routerRequest(
  routerUrl: string,
  actor: string,
  atespace: string,
  path: string,
  timeoutMs = 60_000,
): Promise<{ status: number; body: string }> {
  return httpVia(routerUrl, { host: `${actor}.${atespace}.${ROUTER_SUFFIX}` }, path, timeoutMs);
}

/**
 * A request through the router naming the actor the way Substrate v0.4's own router takes it (and a new user would
 * send it): the header `ate-target-actor: <workspace>/<sandbox id>`.
 */
export function targetActorRequest(routerUrl: string, atespace: string, actor: string, path: string, timeoutMs = 60_000): Promise<{ status: number; body: string }> {
  return httpVia(routerUrl, { 'ate-target-actor': `${atespace}/${actor}` }, path, timeoutMs);
}

function httpVia(routerUrl: string, headers: Record<string, string>, path: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  const u = new URL(routerUrl);
  return new Promise((resolveReq, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path, method: 'GET', headers, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolveReq({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`router request ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * THE DEFAULT PROBE (no supervisor stand-in configured): a sandbox whose backend the driver reports READY is taken to
 * hold a supervisor session. It is asked only while the backend is READY, so it never wakes anything.
 */
export function backendReadyProbe(): SupervisorProbe & { attempts: number } {
  const m = {
    kind: 'backend-ready',
    attempts: 0,
    async connect(row: GatewayRow): Promise<boolean> {
      m.attempts++;
      return row.backendPhase === 'READY';
    },
  };
  return m;
}

/**
 * The tests' 0.0.x supervisor model: a sandbox has a supervisor session when its workload answers `path` on its port,
 * reached through the local router found in <state-dir>/local.json (re-read each time: it moves on a restart). Only
 * asked while the backend reports the actor RUNNING, so the router's resume-on-demand is not triggered.
 */
export function routerSupervisor(stateDir: string, path = '/readyz'): SupervisorProbe & { attempts: number } {
  const m = {
    kind: `router ${path}`,
    attempts: 0,
    async connect(row: GatewayRow): Promise<boolean> {
      m.attempts++;
      let lj: LocalJson;
      try {
        lj = readLocalJson(stateDir);
      } catch {
        return false;
      }
      const r = await routerRequest(lj.router_url, row.id, row.workspace, path, 10_000);
      return r.status === 200;
    },
  };
  return m;
}

/** What the supervisor stand-in answers on `GET /session`. */
export interface SupervisorSession {
  connected: boolean;
  sandbox_id: string;
  auth_epoch: number | null;
  gateway_token_sha256: string | null;
}

/**
 * The probe for the supervisor stand-in running inside the actor: `GET /session` on port 80 through the actor router
 * (`ate-target-actor: <workspace>/<id>`). Connected only when it says connected for THIS sandbox and, when the
 * stand-in minted launch authentication, holds the row's current auth_epoch and gateway token (a fresh session after
 * every Start). The last answer per sandbox is kept in `sessions`.
 */
export function supervisorSessionProbe(stateDir: string): SupervisorProbe & { attempts: number; sessions: Map<string, SupervisorSession | string> } {
  const m = {
    kind: 'supervisor stand-in GET /session',
    attempts: 0,
    sessions: new Map<string, SupervisorSession | string>(),
    async connect(row: GatewayRow): Promise<boolean> {
      m.attempts++;
      let lj: LocalJson;
      try {
        lj = readLocalJson(stateDir);
      } catch {
        return false;
      }
      const r = await targetActorRequest(lj.router_url, row.workspace, row.id, '/session', 10_000);
      if (r.status !== 200) {
        m.sessions.set(row.id, `HTTP ${r.status}`);
        return false;
      }
      let s: SupervisorSession;
      try {
        s = JSON.parse(r.body) as SupervisorSession;
      } catch {
        m.sessions.set(row.id, 'not JSON');
        return false;
      }
      m.sessions.set(row.id, s);
      if (s.connected !== true || s.sandbox_id !== row.id) return false;
      if (row.launch) return s.auth_epoch === row.launch.authEpoch && s.gateway_token_sha256 === row.launch.gatewayTokenSha256;
      return true;
    },
  };
  return m;
}
