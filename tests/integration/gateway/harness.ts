// STAND-IN FOR THE OPENSHELL GATEWAY. The real gateway (NVIDIA/OpenShell `openshell-server`, pinned 2f7fb65) is a
// Rust service that cannot run on this machine, so this harness reimplements the parts of it that talk to a
// compute driver, rule for rule from shared/reference/compute-driver.md, and drives the REAL driver binary
// (`node bin/substrate-driver.js serve ...`, spawned with execa) over its Unix socket:
//
//   §1.2  h2c on the socket, no TLS, no auth metadata, a W3C `traceparent` on every call, no per-call deadline,
//         a 4 MiB cap on decoded responses; a driver restart is tolerated because later calls reconnect.
//   §5    startup: GetCapabilities (any error aborts startup), then GetGatewayListenerRequirements
//         (UNIMPLEMENTED = no requirements); then the startup sweep (STOPPING rows get StopSandbox then STOPPED,
//         STARTING rows get StartSandbox; running-intent rows get StartSandbox only when the driver says
//         gateway_manages_lifecycle); then the watch and reconcile loops.
//   §4    watch loop: WatchSandboxes, reopened a fixed `watchRetryMs` (2 s, as the gateway) after the stream
//         fails to open, errors or ends. `sandbox` events are snapshots (§3.3), applied only to known rows;
//         `deleted` removes the row in any phase; `platform_event` is forwarded (kept per row here).
//   §4    reconcile loop: at startup and then every `reconcileIntervalMs` (60 s in the gateway; CONFIGURABLE here so
//         tests can sweep faster): ListSandboxes once, GetSandbox(id, name) for every listed row not updated
//         since the sweep began, and for every row missing from the list and older than `orphanGraceMs` (300 s in
//         the gateway; configurable): GetSandbox again; found → applied; absent → ERROR ComputeResourceMissing
//         for STOPPING/STOPPED/STARTING, row deleted otherwise. Unknown ids are never adopted; a List failure
//         skips the sweep; a Get error other than NOT_FOUND aborts it; a Get answering another id is an error.
//   §3.1  derive_phase with the 8 transient Ready=False reasons (case-insensitive); any other reason is ERROR.
//   §3.2  composition with the supervisor session (see SUPERVISOR MODEL below).
//   §3.3  stickiness: ERROR is terminal, DELETING ignores snapshots, STOPPING only leaves for STOPPED (or
//         ContainerExited/ContainerStopped, or ERROR), STOPPED always stays, STARTING only leaves for READY (a
//         session) or ERROR; a snapshot whose `name` differs from the row's is DROPPED with a recorded warning
//         ("sandbox name cannot be changed after creation", as the gateway's store rejects the write).
//   §2    Create: Validate (sandbox_token "" and no status) then the row is written PROVISIONING, then Create with
//         the token; Create errors delete the row (ALREADY_EXISTS / FAILED_PRECONDITION keep their code, others
//         become INTERNAL "create sandbox failed: ...").
//         Stop: only from READY or STOPPING (STOPPED: OK without a call; others FAILED_PRECONDITION); the row is
//         STOPPING during the call and STOPPED on OK. Start: only from STOPPED or STARTING (READY: OK without a
//         call); the row is STARTING and stays STARTING after OK until a supervisor session connects. A Stop or
//         Start error reaches the caller with the same code ("stop sandbox failed: ...") and is followed by
//         recovery through GetSandbox: the expected end state (or ERROR) is applied, a contrary snapshot rolls
//         back to the previous phase, NOT_FOUND or another error keeps STOPPING/STARTING.
//         Delete: DELETING rows answer deleted=true without a call; concurrent deletes call the driver once;
//         deleted=true leaves the row DELETING until the watch `deleted` event (or an orphan prune);
//         deleted=false removes the row at once; an error becomes INTERNAL "delete sandbox failed: ..." and
//         recovery through GetSandbox (snapshot → applied and the row leaves DELETING; NOT_FOUND → row removed;
//         lookup error → the pre-delete state is restored).
//
// SUPERVISOR MODEL (§3.2). In the real system READY means "the OpenShell supervisor inside the sandbox holds a gRPC
// session to the gateway"; a backend Ready=True alone shows PROVISIONING. There is no supervisor here, so the
// harness models the session explicitly: `supervisor.connect(row)` is asked whenever the driver reports the
// backend READY (Ready=True) and no session is held; a true answer (the tests' model: the workload answers on
// its port through the local router) is a ConnectSupervisor. A snapshot whose backend phase is no longer READY
// (the sandbox stopped running: suspended, resuming, failed) drops the session, as a real supervisor's session
// drops when its sandbox is checkpointed. Session connect moves PROVISIONING/UNKNOWN/STARTING/READY to READY;
// disconnect moves READY to PROVISIONING; both are ignored in DELETING/ERROR/STOPPING/STOPPED. Without a
// supervisor model, the harness keeps the gateway's behaviour without a supervisor: a backend READY shows
// PROVISIONING with Ready=False SupervisorNotConnected.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { execa, type ResultPromise } from 'execa';
import {
  ComputeDriverClient,
  type DriverCondition,
  type DriverPlatformEvent,
  type DriverSandbox,
  type DriverSandboxStatus,
  type GatewayListenerRequirement,
  type GetCapabilitiesResponse,
  type WatchSandboxesEvent,
} from '../../../src/gen/compute_driver.js';
import type { LocalJson } from '../../../src/local/index.js';

export const REPO_ROOT = resolve(import.meta.dirname, '..', '..', '..');
export const DRIVER_BIN = join(REPO_ROOT, 'bin', 'substrate-driver.js');

// ------------------------------------------------------------------------------------------------ phases (§3)

/** proto/openshell.proto SandboxPhase. */
export type Phase = 'UNSPECIFIED' | 'PROVISIONING' | 'READY' | 'ERROR' | 'DELETING' | 'UNKNOWN' | 'STOPPING' | 'STOPPED' | 'STARTING';

/**
 * The gateway's transient Ready=False reasons (mod.rs `is_terminal_failure_reason`), copied from the reference
 * rather than imported from the driver, so the driver is checked against the contract and not against itself.
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

/** §3.1 derive_phase: the "backend phase" of a driver status. */
export function derivePhase(status: DriverSandboxStatus | undefined): Phase {
  if (!status) return 'UNKNOWN';
  if (status.deleting) return 'DELETING';
  if (status.conditions.some((c) => c.type.toLowerCase() === 'suspended' && c.status.toLowerCase() === 'true')) return 'STOPPED';
  const ready = status.conditions.find((c) => c.type === 'Ready');
  if (!ready) return 'PROVISIONING';
  if (ready.status === 'True') return 'READY';
  if (ready.status === 'False') return isTransientReason(ready.reason) ? 'PROVISIONING' : 'ERROR';
  return 'PROVISIONING';
}

/** §3.2 ComposedPhase: the backend phase combined with the supervisor session. */
export function composePhase(backend: Phase, supervisorConnected: boolean): Phase {
  if (backend === 'ERROR' || backend === 'DELETING' || backend === 'STOPPED') return backend;
  return supervisorConnected ? 'READY' : 'PROVISIONING';
}

const STOPPED_REASONS = ['containerexited', 'containerstopped'];
const STOP_IN_PROGRESS_REASONS = ['podterminating', 'podnotterminated'];

/**
 * §3.3 apply_driver_snapshot: the next stored phase given the stored one and an incoming status (already known
 * to belong to the row). `undefined` status keeps the phase.
 */
export function nextPhase(stored: Phase, status: DriverSandboxStatus | undefined, supervisorConnected: boolean): Phase {
  if (stored === 'ERROR' || stored === 'DELETING') return stored;
  if (!status) return stored;
  const backend = derivePhase(status);
  const composed = composePhase(backend, supervisorConnected);
  switch (stored) {
    case 'STOPPING': {
      if (backend === 'STOPPED') return 'STOPPED';
      if (status.conditions.some((c) => c.status.toLowerCase() === 'false' && STOPPED_REASONS.includes(c.reason.toLowerCase()))) return 'STOPPED';
      if (backend === 'ERROR') return 'ERROR';
      // Suspended=False PodTerminating/PodNotTerminated, and any other non-ERROR backend phase: still stopping.
      return 'STOPPING';
    }
    case 'STOPPED':
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
  return isServiceError(e) ? e.code : grpc.status.UNKNOWN;
}

function detailsOf(e: unknown): string {
  return isServiceError(e) ? e.details : (e as Error)?.message ?? String(e);
}

// ------------------------------------------------------------------------------------------------ store rows

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
  /** The sandbox as the gateway sent it (the token is not kept here). */
  sandbox: DriverSandbox;
  platformEvents: DriverPlatformEvent[];
}

export interface CallRecord {
  method: string;
  request: unknown;
  at: number;
  /** gRPC code name of the answer ('OK' on success). */
  code?: string;
  /** The gateway activity that made the call: the background reconcile loop, or anything else. */
  origin: 'reconcile' | 'gateway';
}

export interface SupervisorModel {
  /** Whether a supervisor of this sandbox would now hold a session (asked only while the backend is READY). */
  connect(row: GatewayRow): Promise<boolean>;
}

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
}

export interface GatewayOptions {
  socketPath: string;
  /** Fixed delay before reopening the watch (gateway: 2000 ms, no backoff). */
  watchRetryMs?: number;
  /** Reconcile period (gateway: 60 000 ms). Tests make it shorter; 0 = only at startup and on demand. */
  reconcileIntervalMs?: number;
  /** ORPHAN_GRACE_PERIOD (gateway: 300 000 ms). */
  orphanGraceMs?: number;
  supervisor?: SupervisorModel;
  /** How often held-back supervisor connections are retried (ms). */
  supervisorRetryMs?: number;
}

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
  capabilities?: GetCapabilitiesResponse;
  listenerRequirements: GatewayListenerRequirement[] = [];
  opts: Required<Omit<GatewayOptions, 'supervisor'>> & { supervisor?: SupervisorModel };

  private client: ComputeDriverClient;
  private stopped = false;
  private stream?: grpc.ClientReadableStream<WatchSandboxesEvent>;
  private watchTimer?: NodeJS.Timeout;
  private reconcileTimer?: NodeJS.Timeout;
  private supervisorTimer?: NodeJS.Timeout;
  private probing = new Set<string>();
  private deletes = new Map<string, Promise<boolean>>();
  private waiters: Array<() => void> = [];

  constructor(o: GatewayOptions) {
    this.opts = {
      watchRetryMs: 2000,
      reconcileIntervalMs: 60_000,
      orphanGraceMs: 300_000,
      supervisorRetryMs: 500,
      ...o,
    };
    this.client = new ComputeDriverClient(`unix:${o.socketPath}`, grpc.credentials.createInsecure(), {
      // tonic's default cap on decoded responses.
      'grpc.max_receive_message_length': 4 * 1024 * 1024,
      // tonic reconnects through its connector on the next call; keep grpc-js from backing off for minutes.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 1000,
      // The gateway's :authority on the socket.
      'grpc.default_authority': '[::]:50051',
    });
  }

  // -------------------------------------------------------------------------------------------- transport

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set('traceparent', `00-${TRACE_ID}-${randomBytes(8).toString('hex')}-01`);
    return md;
  }

  /** One unary call as the gateway makes it: traceparent, no deadline, recorded. */
  private rpc<Res>(method: string, request: unknown, origin: CallRecord['origin'] = 'gateway'): Promise<Res> {
    const rec: CallRecord = { method, request, at: Date.now(), origin };
    this.calls.push(rec);
    return new Promise<Res>((resolveCall, reject) => {
      const fn = (this.client as unknown as Record<string, Function>)[method[0]!.toLowerCase() + method.slice(1)]!;
      fn.call(this.client, request, this.metadata(), {}, (err: grpc.ServiceError | null, res: Res) => {
        rec.code = err ? (grpc.status[err.code] ?? String(err.code)) : 'OK';
        if (err) reject(err);
        else resolveCall(res);
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

  // -------------------------------------------------------------------------------------------- startup

  /** Startup (§5): probes, startup sweep, then the watch and reconcile loops. */
  async start(): Promise<void> {
    this.stopped = false;
    try {
      this.capabilities = await this.rpc<GetCapabilitiesResponse>('GetCapabilities', {});
    } catch (e) {
      throw new GatewayError(codeOf(e), `gateway startup failed: GetCapabilities: ${detailsOf(e)}`);
    }
    try {
      const r = await this.rpc<{ requirements: GatewayListenerRequirement[] }>('GetGatewayListenerRequirements', {});
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
          await this.rpc('StopSandbox', { sandboxId: row.id, sandboxName: row.name });
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
      await this.rpc('StartSandbox', { sandboxId: row.id, sandboxName: row.name });
    } catch (e) {
      const notFound = codeOf(e) === grpc.status.NOT_FOUND;
      this.setPhase(row, 'ERROR');
      row.conditions = [
        { type: 'Ready', status: 'False', reason: notFound ? 'BackendResourceMissing' : 'StartFailed', message: detailsOf(e), lastTransitionTime: new Date().toISOString() },
      ];
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

  // -------------------------------------------------------------------------------------------- watch loop

  private openWatch(): void {
    if (this.stopped) return;
    const rec: WatchStreamRecord = { openedAt: Date.now(), events: 0 };
    this.watchStreams.push(rec);
    const stream = this.client.watchSandboxes({}, this.metadata());
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
    stream.on('data', (ev: WatchSandboxesEvent) => {
      rec.events++;
      try {
        this.applyWatchEvent(ev);
      } catch (e) {
        // Event-level errors are logged and skipped.
        this.warn(`watch event skipped: ${(e as Error).message}`);
      }
      this.changed();
    });
    stream.on('error', (e: grpc.ServiceError) => finish(`errored ${grpc.status[e.code] ?? e.code}: ${e.details}`));
    stream.on('end', () => finish('ended unexpectedly'));
  }

  /** The stream opened most recently (it may have ended). */
  get currentWatch(): WatchStreamRecord | undefined {
    return this.watchStreams.at(-1);
  }

  private applyWatchEvent(ev: WatchSandboxesEvent): void {
    const p = ev.payload;
    if (!p) return;
    switch (p.$case) {
      case 'sandbox':
        if (p.value.sandbox) this.applySnapshot(p.value.sandbox, 'watch');
        break;
      case 'deleted': {
        const id = p.value.sandboxId;
        if (this.rows.has(id)) this.removeRow(id, 'watch deleted event');
        break;
      }
      case 'platformEvent': {
        const row = this.rows.get(p.value.sandboxId);
        if (row && p.value.event) row.platformEvents.push(p.value.event);
        break;
      }
    }
  }

  // -------------------------------------------------------------------------------------------- snapshots

  /** apply_driver_snapshot (§3.3) for a snapshot from Watch, Get or recovery. Returns whether it was applied. */
  applySnapshot(sb: DriverSandbox, via: string): boolean {
    const row = this.rows.get(sb.id);
    // The gateway never creates rows from a snapshot.
    if (!row) return false;
    if (row.phase === 'ERROR' || row.phase === 'DELETING') return false;
    if (sb.name !== row.name) {
      // The store rejects the write ("sandbox name cannot be changed after creation"); the event is dropped.
      this.warn(`dropped ${via} snapshot of ${sb.id}: sandbox name cannot be changed after creation (stored "${row.name}", snapshot "${sb.name}")`);
      return false;
    }
    const status = sb.status;
    if (!status) {
      // Keeps the phase; a live session can still promote it.
      return true;
    }
    const backend = derivePhase(status);
    row.backendPhase = backend;
    row.agentPod = status.instanceId;
    // SUPERVISOR MODEL: a session needs a running sandbox.
    if (backend !== 'READY' && row.supervisorConnected) row.supervisorConnected = false;
    const next = nextPhase(row.phase, status, row.supervisorConnected);
    row.conditions = [...status.conditions];
    if (backend === 'READY' && !row.supervisorConnected) {
      row.conditions = row.conditions.filter((c) => c.type !== 'Ready');
      row.conditions.push({
        type: 'Ready',
        status: 'False',
        reason: 'SupervisorNotConnected',
        message: 'the compute backend is ready but no supervisor session is connected',
        lastTransitionTime: new Date().toISOString(),
      });
    }
    this.setPhase(row, next);
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
        if (row.backendPhase !== 'READY' || row.supervisorConnected) return;
        row.supervisorConnected = true;
        row.conditions = row.conditions.filter((c) => !(c.type === 'Ready' && c.reason === 'SupervisorNotConnected'));
        row.conditions.push({ type: 'Ready', status: 'True', reason: 'SupervisorConnected', message: 'supervisor session connected', lastTransitionTime: new Date().toISOString() });
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

  /** One reconcile sweep (§4 "Reconcile loop"). */
  async reconcileOnce(): Promise<ReconcileReport> {
    const began = Date.now();
    const report: ReconcileReport = { listed: 0, got: 0, pruned: [], erroredMissing: [], skippedUnknown: [] };
    this.reconciles.push(report);
    let listed: DriverSandbox[];
    try {
      listed = (await this.rpc<{ sandboxes: DriverSandbox[] }>('ListSandboxes', {}, 'reconcile')).sandboxes;
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
        if (got) this.applySnapshot(got, 'reconcile');
      } catch (e) {
        report.aborted = `GetSandbox ${row.id} failed: ${detailsOf(e)}`;
        this.warn(`reconcile aborted: ${report.aborted}`);
        return report;
      }
    }
    // Only the first 500 rows are swept.
    for (const row of [...this.rows.values()].slice(0, 500)) {
      if (listedIds.has(row.id)) continue;
      if (began - row.createdAtMs < this.opts.orphanGraceMs) continue;
      let got: DriverSandbox | undefined;
      try {
        got = await this.getSandbox(row, 'reconcile');
      } catch (e) {
        report.aborted = `GetSandbox ${row.id} (orphan check) failed: ${detailsOf(e)}`;
        this.warn(`reconcile aborted: ${report.aborted}`);
        return report;
      }
      if (got) {
        this.applySnapshot(got, 'reconcile');
      } else if (['STOPPING', 'STOPPED', 'STARTING'].includes(row.phase)) {
        this.setPhase(row, 'ERROR');
        row.conditions = [
          { type: 'Ready', status: 'False', reason: 'ComputeResourceMissing', message: 'the compute driver no longer knows this sandbox', lastTransitionTime: new Date().toISOString() },
        ];
        report.erroredMissing.push(row.id);
      } else {
        this.removeRow(row.id, 'orphan pruned by reconcile');
        report.pruned.push(row.id);
      }
    }
    return report;
  }

  /** GetSandbox(id, name): undefined when absent (NOT_FOUND or no sandbox); throws on other errors. */
  private async getSandbox(row: { id: string; name: string }, origin: CallRecord['origin'] = 'gateway'): Promise<DriverSandbox | undefined> {
    try {
      const r = await this.rpc<{ sandbox?: DriverSandbox }>('GetSandbox', { sandboxId: row.id, sandboxName: row.name }, origin);
      if (!r.sandbox) return undefined;
      if (r.sandbox.id !== row.id) throw new Error(`GetSandbox(${row.id}) answered sandbox ${r.sandbox.id}`);
      return r.sandbox;
    } catch (e) {
      if (codeOf(e) === grpc.status.NOT_FOUND) return undefined;
      throw e;
    }
  }

  // -------------------------------------------------------------------------------------------- user actions

  /** The user's create: Validate, write the row PROVISIONING, Create (with the token). */
  async createSandbox(sandbox: DriverSandbox): Promise<GatewayRow> {
    const forValidate: DriverSandbox = { ...sandbox, status: undefined, spec: sandbox.spec ? { ...sandbox.spec, sandboxToken: '' } : undefined };
    try {
      await this.rpc('ValidateSandboxCreate', { sandbox: forValidate });
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
    };
    this.rows.set(row.id, row);
    this.changed();
    try {
      await this.rpc('CreateSandbox', { sandbox: { ...sandbox, status: undefined } });
    } catch (e) {
      this.removeRow(row.id, 'create failed');
      const c = codeOf(e);
      if (c === grpc.status.ALREADY_EXISTS) throw new GatewayError(c, 'sandbox already exists');
      if (c === grpc.status.FAILED_PRECONDITION) throw new GatewayError(c, detailsOf(e));
      throw new GatewayError(grpc.status.INTERNAL, `create sandbox failed: ${detailsOf(e)}`);
    }
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
    try {
      await this.rpc('StopSandbox', { sandboxId: row.id, sandboxName: row.name });
    } catch (e) {
      const err = new GatewayError(codeOf(e), `stop sandbox failed: ${detailsOf(e)}`);
      await this.recoverFailedLifecycle(row, 'stop', prev);
      throw err;
    }
    const now = row.phase as Phase;
    if (this.rows.get(id) === row && now !== 'ERROR' && now !== 'DELETING') {
      this.setPhase(row, 'STOPPED');
      this.disconnect(row);
    }
  }

  /** The user's start. */
  async startSandbox(id: string): Promise<void> {
    const row = this.mustRow(id);
    if (row.phase === 'READY') return;
    if (row.phase !== 'STOPPED' && row.phase !== 'STARTING') {
      throw new GatewayError(grpc.status.FAILED_PRECONDITION, `sandbox ${row.name} is ${row.phase}; only a STOPPED or STARTING sandbox can be started`);
    }
    const prev = row.phase;
    this.setPhase(row, 'STARTING');
    try {
      await this.rpc('StartSandbox', { sandboxId: row.id, sandboxName: row.name });
    } catch (e) {
      const err = new GatewayError(codeOf(e), `start sandbox failed: ${detailsOf(e)}`);
      await this.recoverFailedLifecycle(row, 'start', prev);
      throw err;
    }
    // Stays STARTING until a fresh supervisor session connects.
    if (row.backendPhase === 'READY') this.maybeConnect(row);
  }

  /** recover_failed_lifecycle (§2.3): GetSandbox after a failed Stop or Start. */
  private async recoverFailedLifecycle(row: GatewayRow, op: 'stop' | 'start', prev: Phase): Promise<void> {
    let got: DriverSandbox | undefined;
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
    const backend = derivePhase(got.status);
    if (backend === 'ERROR') {
      this.applySnapshot(got, `${op} recovery`);
      return;
    }
    if (op === 'stop') {
      if (backend === 'STOPPED' || (got.status?.conditions ?? []).some((c) => c.status === 'False' && STOPPED_REASONS.includes(c.reason.toLowerCase()))) {
        this.applySnapshot(got, 'stop recovery');
      } else if (stopInProgress(got.status)) {
        // Still stopping: stays STOPPING until Suspended=True arrives.
      } else {
        this.setPhase(row, prev);
        this.applySnapshot(got, 'stop recovery');
      }
    } else {
      if (backend === 'STOPPED') {
        this.setPhase(row, prev === 'STARTING' ? 'STOPPED' : prev);
      } else {
        // Started (or starting) in the backend: stays STARTING until the supervisor connects.
        this.applySnapshot(got, 'start recovery');
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
    let deleted: boolean;
    try {
      deleted = (await this.rpc<{ deleted: boolean }>('DeleteSandbox', { sandboxId: row.id, sandboxName: row.name })).deleted;
    } catch (e) {
      const err = new GatewayError(grpc.status.INTERNAL, `delete sandbox failed: ${detailsOf(e)}`);
      try {
        const got = await this.getSandbox(row);
        if (got) {
          row.phase = before.phase;
          row.history.push(before.phase);
          this.applySnapshot(got, 'delete recovery');
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
    if (!deleted) this.removeRow(row.id, 'driver reported already absent');
    return true;
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

/** A request through the local Substrate's router (which resumes a suspended actor on demand). */
export function routerRequest(
  routerUrl: string,
  actor: string,
  atespace: string,
  path: string,
  timeoutMs = 60_000,
): Promise<{ status: number; body: string }> {
  const u = new URL(routerUrl);
  return new Promise((resolveReq, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path, method: 'GET', headers: { host: `${actor}.${atespace}.${ROUTER_SUFFIX}` }, timeout: timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolveReq({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`router request ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * The tests' supervisor model: a sandbox has a supervisor session when its workload answers `path` on its port,
 * reached through the local router found in <state-dir>/local.json (re-read each time: it moves on a restart).
 * Only asked while the backend reports the actor RUNNING, so the router's resume-on-demand is not triggered.
 */
export function routerSupervisor(stateDir: string, path = '/readyz'): SupervisorModel & { attempts: number } {
  const m = {
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
