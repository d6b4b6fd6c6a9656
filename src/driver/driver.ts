// The Substrate compute driver: every RPC of openshell.compute.v1.ComputeDriver, for OpenShell v0.1 gateways
// (the negotiated contract of v0.1.2, shared/reference/openshell-v0.1.md) and 0.0.x gateways (2f7fb65,
// compute-driver.md) on one socket (generations.ts), translated into Substrate v0.4 ateapi.Control calls
// (substrate-v0.4.md; ARCHITECTURE.md "Lifecycle mapping").
//
// - A sandbox is an actor named by the gateway's id in the atespace named by its workspace.
// - Every sandbox has a record (records.ts: SQLite locally, a labelled Secret in a cluster) written before
//   CreateSandbox returns; after a restart the driver lists, starts, stops and deletes every sandbox from them.
// - CreateSandbox never blocks on a golden snapshot: it returns once the record is durable, and provisioning
//   (ensure atespace → CreateActorTemplate (shared by spec) or a pre-provisioned one → golden tag →
//   CreateActor (borrows the golden snapshot) → ResumeActor) runs in the background with progress and
//   failures surfacing through Get/List/Watch and platform events.
// - Stop/Start return only once the actor is SUSPENDED (or PAUSED) / RUNNING, and are idempotent.
// - A CRASHED actor the gateway wants running is recovered by the driver (RevertActor → ResumeActor).
// - Change detection polls ListActors (paged; default every 500 ms) and diffs: v0.4 has no watch RPC.
//   Changes made through this driver are published immediately; the poll catches the rest (idle suspends,
//   the router's implicit resumes, crashes, operators).
import { ActorState, type Actor, type ObjectRef } from '../gen/ateapi.js';
import type {
  DriverCondition,
  DriverPlatformEvent,
  DriverSandbox,
  GetCapabilitiesResponse,
  ResolvedWorkloadIdentity,
  StartSandboxRequest,
  WatchSandboxesEvent,
} from '../gen/compute_driver.js';
import type { PeerMetadata } from '../gen/extension.js';
import { createHash, randomBytes } from 'node:crypto';
import {
  ApiError,
  Code,
  alreadyExists,
  failedPrecondition,
  grpcCodeOf,
  invalid,
  mapBackendError,
  notFound,
} from '../common/errors.js';
import { dnsLabelError, isDnsLabel, isDnsSubdomain } from '../common/dns.js';
import { parseSelector } from '../common/config.js';
import { logger } from '../common/log.js';
import { conditionsFor, derivePhase, stampTransitions, type Op } from './conditions.js';
import { RecordStore, stripToken, type SandboxRecord } from './records.js';
import type { ControlPort, RecordBackend, TemplatePort } from './ports.js';
import { crashMessageOf, incarnationOf, isRunning, isStopped, stateName, stateOf, versionOf, workerOf } from './actor-view.js';
import { TemplateManager, templateKey } from './templates.js';
import { WatchHub, type EventSink } from './hub.js';
import { attachRefusal } from './admission.js';
import { defaultAdmissionConfig, type DriverAdmissionConfig, type TemplateLabels } from './admission-policy.js';
import { driverMetadata, negotiationRefusal } from './negotiation.js';
import { GatewayGeneration, type Generation } from './generations.js';
import { parseLaunchAuthentication } from './launch.js';
import { BOOTSTRAP_AGENT_COMMAND, runsBootstrapAgent, takesIdentityDelivery } from '../template/synthesize.js';
import { sleep } from '../common/sleep.js';

/** What AuthenticateSandbox answers, with UNIMPLEMENTED (see SubstrateDriver.authenticate). */
export const AUTHENTICATE_UNIMPLEMENTED =
  'AuthenticateSandbox is not implemented by the substrate driver (supports_sandbox_authentication = false): the credential it would verify, a Substrate actor JWT, cannot reach a workload on Substrate v0.4.0, whose egress gateway refuses actor-JWT injection (HTTP 501); sandboxes authenticate with the launch authentication the driver delivers into each actor instead';

/** Atespaces Substrate itself uses: a sandbox's workspace is never one of them (its actors would sit beside the golden ones). */
const RESERVED_ATESPACES: readonly string[] = ['ate-golden'];

const log = logger('driver');

export const DRIVER_NAME = 'substrate';
export const EVENT_SOURCE = 'substrate';
/** template.driver_config keys this driver understands (snake_case, as the gateway docs ask). */
export const DRIVER_CONFIG_KEYS = ['actor_template', 'worker_selector'] as const;
/** platform_config.annotations key naming a pre-provisioned template (as the seed driver read it). */
export const TEMPLATE_ANNOTATION = 'substrate_actor_template';
/** Atespace of the golden actors (substrate-v0.4.md §4.3). */
export const GOLDEN_ATESPACE = 'ate-golden';

export interface DriverOptions {
  control: ControlPort;
  /** Where sandbox records live (record-backends.ts: SQLite locally, Kubernetes Secrets in a cluster). */
  records: RecordBackend;
  templates: TemplatePort;
  /**
   * The sandboxes' `namespace` as the gateway sees it, and the atespace of a pre-provisioned template named
   * without one (config default_namespace).
   */
  namespace: string;
  stopMode: 'suspend' | 'pause';
  defaultImage: string;
  version: string;
  /** Worker selector from config, merged under each sandbox's driver_config selector. */
  workerSelector: Record<string, string>;
  templateReadyTimeoutMs: number;
  pollIntervalMs: number;
  /** Live events a watch consumer may fall behind before its stream ends with ABORTED. */
  watchBufferLimit?: number;
  /** Called after each poll with whether the backend answered. */
  onPoll?: (ok: boolean) => void;
  /** Called when a watch stream is ended with ABORTED (metrics). */
  onWatchAborted?: () => void;
  /** The gateway generation talking to this driver (learnt from GetCapabilities); default in memory, 0.0.x until a GetCapabilities says otherwise. */
  generation?: GatewayGeneration;
  /** The operator's admission policy (allow_driver_config, resource_admission); default: upstream's. */
  admission?: DriverAdmissionConfig;
  /** Its acknowledgement (`v1:` + JSON), fixed for the life of the process. */
  admissionAck?: string;
  /** Operator-set labels of pre-provisioned templates ("atespace/name" → labels): v0.4 templates carry none. */
  templateLabels?: TemplateLabels;
  /** Which limits of synthesized templates the Substrate is known to enforce (the local one: by cgroups). */
  limitsEnforced?: { cpu: boolean; memory: boolean };
  /**
   * Delivers into a sandbox's running actor what the driver holds for it (see launch.ts deliverToSandbox):
   * its v0.1 launch authentication, or its 0.0.x identity (id, name, token).
   */
  deliverLaunch?: (r: SandboxRecord, signal?: AbortSignal) => Promise<void>;
  /** v0.1 gateways: refuses a caller driver_config the operator does not allow (allow_driver_config). */
  checkDriverConfig?: (driverConfig: Record<string, unknown> | undefined) => ApiError | null;
  /** The identity workloads run as, when the driver knows it (the local Substrate: 0:0 inside gVisor). */
  resolvedIdentity?: Omit<ResolvedWorkloadIdentity, 'resourceDigest'>;
}

interface Plan {
  atespace: string;
  /** A pre-provisioned template; undefined: the driver synthesizes one (shared by spec). */
  preProvisioned?: ObjectRef;
  workerSelector: Record<string, string>;
}

/** How long a failed crash recovery waits before the next attempt (doubling up to the cap). */
const RECOVERY_BACKOFF_MS = 2_000;
/** Recovery failures a later attempt can fix: reported as transient while the driver retries. */
const RETRYABLE_RECOVERY = new Set<number>([Code.RESOURCE_EXHAUSTED, Code.UNAVAILABLE, Code.ABORTED, Code.DEADLINE_EXCEEDED]);
/** A create that finds every worker busy retries ResumeActor after these gaps (doubling up to the max). */
const NO_ROOM_RETRY_MS = 500;
const NO_ROOM_RETRY_MAX_MS = 5_000;
const RECOVERY_BACKOFF_MAX_MS = 300_000;

interface Live {
  op?: Op;
  progress?: string;
  actor?: Actor;
  actorMissing?: boolean;
  deleting?: boolean;
  conds?: DriverCondition[];
  lastKey?: string;
  /** The last projection and the inputs it was made from: an unchanged sandbox is not projected again. */
  projected?: { inputs: string; sandbox: DriverSandbox };
  /** The projection last published on the watch hub. */
  published?: DriverSandbox;
  provisioning?: { abort: AbortController; done: Promise<void> };
  /** Suspending again an actor that a request woke after the gateway stopped it. */
  restopping?: Promise<void>;
  /** The incarnation of the actor that last received the launch authentication (incarnationOf). */
  deliveredTo?: string;
  /** Resumes observed (not-running → RUNNING): part of the incarnation. */
  resumes: number;
  /** A crash recovery (RevertActor → ResumeActor) in flight. */
  recovering?: Promise<void>;
  /** Why the last crash recovery failed ('' / undefined: none failed); when the next may start. */
  recoveryFailure?: string;
  /** The failure is retryable (capacity, availability, contention, a deadline): still transient. */
  recoveryRetrying?: boolean;
  recoveryAttempts: number;
  recoveryNextAt?: number;
  /** A background re-delivery in flight. */
  redelivering?: Promise<void>;
  /** Whether a pre-provisioned template runs the bootstrap agent (read once). */
  templateRunsAgent?: boolean;
  /** Whether the template's agent holds the workload for a 0.0.x identity (read once). */
  templateTakesIdentity?: boolean;
}


const PROGRESS = {
  requesting: 'requesting_sandbox',
  starting: 'starting_sandbox',
} as const;

function isCode(e: unknown, c: Code): boolean {
  return grpcCodeOf(e) === c;
}

const statusName = stateName;

/** ResumeActor refused for lack of a worker: said plainly (v0.4 RESOURCE_EXHAUSTED "no worker has room"). */
function capacityError(e: unknown, what: string): ApiError | undefined {
  if (!isCode(e, Code.RESOURCE_EXHAUSTED)) return undefined;
  return new ApiError(Code.RESOURCE_EXHAUSTED, `${what}: no Substrate worker has room for the actor now (${mapBackendError(e).message}); retry later, or add workers`);
}

export class SubstrateDriver {
  readonly hub: WatchHub;
  readonly records: RecordStore;
  readonly templates: TemplateManager;
  private readonly live = new Map<string, Live>();
  private readonly locks = new Map<string, Promise<void>>();
  private pollTimer?: NodeJS.Timeout;
  private pollRunning?: Promise<void>;
  private stopped = false;
  private started = false;
  backendHealthy = false;
  readonly generation: GatewayGeneration;
  private capsCache?: { key: string; res: GetCapabilitiesResponse };

  constructor(private readonly o: DriverOptions) {
    this.generation = o.generation ?? new GatewayGeneration();
    this.hub = new WatchHub(o.watchBufferLimit ?? 1024, o.onWatchAborted);
    this.records = new RecordStore(o.records);
    this.templates = new TemplateManager({ control: o.control, records: this.records });
  }

  // ------------------------------------------------------------------------------------------- lifecycle

  /** Loads the records, resumes unfinished provisioning and starts change detection. */
  async start(): Promise<void> {
    let problems: string[];
    try {
      problems = await this.records.load();
    } catch (e) {
      throw mapBackendError(e, `load sandbox records (${this.records.describe})`);
    }
    for (const p of problems) log.warn('ignoring an unreadable sandbox record', { problem: p });
    log.info('sandbox records loaded', { count: this.records.size, from: this.records.describe });
    for (const r of this.records.all()) {
      if (!r.provisioned && !r.failureReason) this.startProvisioning(r.id);
    }
    this.started = true;
    await this.pollOnce();
    this.schedulePoll();
  }

  /** Stops change detection and background work, and ends every watch stream. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.hub.closeAll();
    const pending: Promise<void>[] = [];
    for (const l of this.live.values()) {
      if (l.provisioning) {
        l.provisioning.abort.abort();
        pending.push(l.provisioning.done);
      }
    }
    if (this.pollRunning) pending.push(this.pollRunning);
    await Promise.race([Promise.allSettled(pending), new Promise((r) => setTimeout(r, 3000).unref())]);
    this.records.close();
  }

  get ready(): boolean {
    return this.started && !this.stopped && this.backendHealthy;
  }

  private schedulePoll(): void {
    if (this.stopped) return;
    this.pollTimer = setTimeout(() => {
      this.pollRunning = this.pollOnce().finally(() => {
        this.pollRunning = undefined;
        this.schedulePoll();
      });
    }, this.o.pollIntervalMs);
    this.pollTimer.unref();
  }

  private liveOf(id: string): Live {
    let l = this.live.get(id);
    if (!l) {
      l = { resumes: 0, recoveryAttempts: 0 };
      this.live.set(id, l);
    }
    return l;
  }

  private async withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const chained = prev.then(() => mine);
    this.locks.set(id, chained);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(id) === chained) this.locks.delete(id);
    }
  }

  /**
   * Takes a read of the actor unless it is older than what we hold: every ateapi write bumps
   * `metadata.version`, so a list that started before an operation finished cannot roll its result back
   * (a recreated actor has another uid and is always taken).
   */
  private seeActor(l: Live, a: Actor): void {
    const sameActor = !l.actor || l.actor.metadata?.uid === a.metadata?.uid;
    if (!l.actor || !sameActor || versionOf(a) >= versionOf(l.actor)) this.setActor(l, a);
    l.actorMissing = false;
  }

  /** Sets the actor (the result of the driver's own call: the newest), counting resumes. */
  private setActor(l: Live, a: Actor | undefined): void {
    if (a && isRunning(a) && !isRunning(l.actor)) l.resumes++;
    l.actor = a;
    if (a) l.actorMissing = false;
  }

  private refOf(r: SandboxRecord): ObjectRef {
    return { atespace: r.atespace, name: r.id };
  }

  private templateRefOf(r: SandboxRecord): ObjectRef {
    return { atespace: r.templateAtespace, name: r.template };
  }

  // ------------------------------------------------------------------------------------------ projection

  private project(r: SandboxRecord): DriverSandbox {
    const l = this.liveOf(r.id);
    // Everything the projection depends on; the actor's version changes with every write to it.
    const a = l.actor;
    const inputs = [
      a ? `${a.metadata?.uid}/${versionOf(a)}/${stateOf(a)}/${workerOf(a)}/${l.resumes}` : '-',
      l.recoveryFailure ?? '',
      l.recoveryRetrying ? 1 : 0,
      l.actorMissing ? 1 : 0,
      r.desired,
      l.op ?? '',
      r.provisioned ? 1 : 0,
      r.failureReason ?? '',
      r.failureMessage ?? '',
      l.progress ?? '',
      l.deleting ? 1 : 0,
    ].join('|');
    if (l.projected?.inputs === inputs) return l.projected.sandbox;
    const conds = conditionsFor({
      actor: l.actor,
      actorMissing: l.actorMissing,
      desired: r.desired,
      op: l.op,
      provisioned: r.provisioned,
      failure: r.failureReason ? { reason: r.failureReason, message: r.failureMessage ?? '' } : undefined,
      progress: l.progress,
      recoveryFailure: l.recoveryFailure,
      recoveryRetrying: l.recoveryRetrying,
    });
    l.conds = stampTransitions(l.conds, conds, new Date());
    const running = isRunning(l.actor);
    const sb: DriverSandbox = {
      id: r.id,
      name: r.name,
      namespace: this.o.namespace,
      workspace: r.workspace,
      spec: undefined,
      status: {
        name: r.name,
        instanceId: running ? instanceIdOf(l.actor, l.resumes) : '',
        agentFd: '',
        sandboxFd: '',
        conditions: l.conds,
        deleting: !!l.deleting,
        resolvedIdentity: this.o.resolvedIdentity && { ...this.o.resolvedIdentity, resourceDigest: imageDigestOf(r.sandbox) },
        fenceEvidence: undefined,
      },
    };
    l.projected = { inputs, sandbox: sb };
    return sb;
  }

  /** Publishes a sandbox event when its projection changed since the last one published. */
  private emitIfChanged(id: string): void {
    const r = this.records.get(id);
    if (!r) return;
    const sb = this.project(r);
    const l = this.liveOf(id);
    if (l.published === sb) return; // the same projection object: nothing changed since it was published
    l.published = sb;
    const key = JSON.stringify({
      c: sb.status!.conditions.map((c) => [c.type, c.status, c.reason, c.message]),
      d: sb.status!.deleting,
      i: sb.status!.instanceId,
    });
    if (l.lastKey === key) return;
    l.lastKey = key;
    this.hub.publish({ payload: { $case: 'sandbox', value: { sandbox: sb } } });
  }

  private platformEvent(
    id: string,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
    metadata: Record<string, string> = {},
  ): void {
    const event: DriverPlatformEvent = { eventTime: new Date(), source: EVENT_SOURCE, type, reason, message, metadata };
    this.hub.publish({ payload: { $case: 'platformEvent', value: { sandboxId: id, event } } });
  }

  private setProgress(id: string, step: string, detail: string): void {
    const l = this.liveOf(id);
    l.progress = detail;
    this.emitIfChanged(id);
    this.platformEvent(id, 'Normal', 'Progress', detail, {
      'openshell.progress.active_step': step,
      'openshell.progress.active_detail': detail,
    });
  }

  /** Counts of sandboxes by the phase the gateway would derive (metrics). */
  countByPhase(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of this.records.all()) {
      const l = this.liveOf(r.id);
      const conds = l.conds ?? this.project(r).status!.conditions;
      const p = derivePhase(conds, !!l.deleting);
      out[p] = (out[p] ?? 0) + 1;
    }
    return out;
  }

  // ------------------------------------------------------------------------------------------ polling

  /** One change-detection pass: list the actors of every atespace that holds a sandbox, diff, publish. */
  async pollOnce(): Promise<void> {
    const recs = this.records.all();
    const atespaces = [...new Set(recs.map((r) => r.atespace))];
    const seen = new Map<string, Actor>();
    try {
      const lists = await Promise.all(atespaces.map((a) => this.o.control.listAllActors(a)));
      for (const list of lists) for (const a of list) seen.set(`${a.metadata?.atespace}/${a.metadata?.name}`, a);
      this.backendHealthy = true;
      this.o.onPoll?.(true);
    } catch (e) {
      if (this.backendHealthy) log.warn('listing actors failed; sandbox states may be stale', { error: mapBackendError(e).message });
      this.backendHealthy = false;
      this.o.onPoll?.(false);
      return;
    }
    for (const r of recs) {
      if (!this.records.get(r.id)) continue;
      const l = this.liveOf(r.id);
      if (l.deleting) continue;
      const a = seen.get(`${r.atespace}/${r.id}`);
      if (a) {
        this.seeActor(l, a);
      } else if (r.provisioned && !l.op) {
        // ListActors pages are soft (an item can be missed): confirm before calling the actor missing.
        try {
          const again = await this.o.control.findActor(this.refOf(r));
          if (again) this.seeActor(l, again);
          else if (!l.op) {
            l.actor = undefined;
            l.actorMissing = true;
          }
        } catch {
          continue;
        }
      }
      this.emitIfChanged(r.id);
      this.recoverIfCrashed(r.id);
      this.keepStopped(r.id);
      this.redeliverIfNeeded(r.id);
    }
  }

  /**
   * A CRASHED actor (its worker died or restarted, a wakeup probe timed out, a checkpoint failed) cannot run
   * again until it is reverted to its last external snapshot. For a sandbox the gateway wants running the
   * driver does both (RevertActor → ResumeActor, then the launch credentials again: the snapshot may predate
   * the last delivery); for one it stopped, it only reverts (SUSPENDED again). Reported as transient
   * (Ready=Unknown `Recovering`) until a recovery fails; failed recoveries are retried with backoff.
   */
  private recoverIfCrashed(id: string): void {
    const r = this.records.get(id);
    const l = this.liveOf(id);
    const s = stateOf(l.actor);
    if (!r || !r.provisioned || r.failureReason || l.op || l.deleting || l.recovering) return;
    const crashed = s === ActorState.ACTOR_STATE_CRASHED || s === ActorState.ACTOR_STATE_REVERTING;
    // Reverted, but the resume failed: the recovery is not over while the gateway wants it running.
    const resumePending = l.recoveryFailure !== undefined && isStopped(l.actor) && r.desired === 'running';
    if (!crashed && !resumePending) {
      if (l.recoveryFailure !== undefined) {
        l.recoveryFailure = undefined;
        l.recoveryAttempts = 0;
        l.recoveryNextAt = undefined;
        this.emitIfChanged(id);
      }
      return;
    }
    if (l.recoveryNextAt !== undefined && Date.now() < l.recoveryNextAt) return;
    l.recovering = this.withLock(id, () => this.recover(id))
      .catch((e) => log.warn('crash recovery failed; retrying later', { sandbox_id: id, error: mapBackendError(e).message }))
      .finally(() => {
        l.recovering = undefined;
      });
  }

  private async recover(id: string): Promise<void> {
    const r = this.records.get(id);
    const l = this.liveOf(id);
    if (!r || l.op || l.deleting) return;
    const ref = this.refOf(r);
    const crash = crashMessageOf(l.actor);
    l.op = 'recovering';
    this.emitIfChanged(id);
    try {
      log.info('recovering a crashed actor', { sandbox_id: id, desired: r.desired });
      let a = await this.o.control.getActor(ref);
      if (stateOf(a) === ActorState.ACTOR_STATE_CRASHED || stateOf(a) === ActorState.ACTOR_STATE_REVERTING) {
        a = await this.o.control.revertActor(ref);
        this.setActor(l, a);
      }
      const cur = this.records.get(id);
      if (cur?.desired === 'running' && !isRunning(a)) {
        const res = await this.o.control.resumeActor(ref);
        a = res.actor ?? (await this.o.control.getActor(ref));
        this.setActor(l, a);
        if (!isRunning(a)) throw new ApiError(Code.ABORTED, `actor ${r.atespace}/${r.id} is ${statusName(a)} after ResumeActor`);
        await this.deliver(cur);
      }
      l.recoveryFailure = undefined;
      l.recoveryAttempts = 0;
      l.recoveryNextAt = undefined;
      this.platformEvent(id, 'Normal', 'Recovered', `the actor crashed${crash ? ` (${crash.slice(0, 300)})` : ''}; reverted to its last snapshot${cur?.desired === 'running' ? ' and resumed' : ''}`);
    } catch (e) {
      const m = capacityError(e, 'resume after a crash') ?? mapBackendError(e);
      l.recoveryAttempts++;
      l.recoveryFailure = m.message;
      l.recoveryRetrying = RETRYABLE_RECOVERY.has(m.code);
      l.recoveryNextAt = Date.now() + Math.min(RECOVERY_BACKOFF_MAX_MS, RECOVERY_BACKOFF_MS * 2 ** (l.recoveryAttempts - 1));
      const now = await this.o.control.findActor(ref).catch(() => undefined);
      if (now) this.seeActor(l, now);
      this.platformEvent(id, 'Warning', 'RecoveryFailed', `recovering the crashed actor failed: ${m.message}`);
      throw e;
    } finally {
      l.op = undefined;
      this.emitIfChanged(id);
    }
  }

  /**
   * A sandbox the gateway stopped stays stopped. The router resumes an actor for any request that names it
   * (ours and Substrate v0.4's alike), so an actor the gateway stopped can be woken by data traffic; the
   * driver then suspends it again and reports it stopping, never Ready (the gateway keeps its row STOPPED).
   */
  private keepStopped(id: string): void {
    const r = this.records.get(id);
    const l = this.liveOf(id);
    const s = stateOf(l.actor);
    if (!r || r.desired !== 'stopped' || !r.provisioned || l.op || l.deleting || l.restopping) return;
    if (s !== ActorState.ACTOR_STATE_RUNNING && s !== ActorState.ACTOR_STATE_RESUMING) return;
    log.info('suspending again a sandbox the gateway stopped (a request woke it)', { sandbox_id: id });
    l.restopping = this.withLock(id, async () => {
      const cur = this.records.get(id);
      if (!cur || cur.desired !== 'stopped' || l.op || l.deleting) return;
      l.op = 'stopping';
      this.emitIfChanged(id);
      try {
        this.setActor(l, await this.bringToStopped(cur));
        this.platformEvent(id, 'Normal', 'Stopped', 'a request woke the stopped sandbox; suspended it again (StartSandbox starts it)');
      } finally {
        l.op = undefined;
        this.emitIfChanged(id);
      }
    })
      .catch((e) => log.warn('could not suspend a woken stopped sandbox; retrying at the next poll', { sandbox_id: id, error: mapBackendError(e).message }))
      .finally(() => {
        l.restopping = undefined;
      });
  }

  // ------------------------------------------------------------------------------------------ RPCs

  /**
   * GetCapabilities. A v0.1 gateway calls it at startup and again before every Validate, Create and Start
   * (comparing resource_admission_policy byte for byte), so the answer is built once and negotiation with
   * the same gateway metadata is remembered: a repeat costs one string compare.
   */
  capabilities(gateway?: PeerMetadata, fromGateway = true): GetCapabilitiesResponse {
    const gen: Generation = gateway ? 'v0.1' : 'v0.0';
    const key = gateway ? JSON.stringify(gateway) : '';
    const hit = this.capsCache;
    if (hit && hit.key === key) {
      if (fromGateway) this.generation.seen(gen);
      return hit.res;
    }
    const ours = driverMetadata(this.o.version);
    if (gateway) {
      const refused = negotiationRefusal(gateway, ours);
      if (refused) throw refused;
    }
    const limits = this.o.limitsEnforced ?? { cpu: false, memory: false };
    const res: GetCapabilitiesResponse = {
      driverName: DRIVER_NAME,
      driverVersion: this.o.version,
      defaultImage: this.o.defaultImage,
      // The gateway need not stop sandboxes at its shutdown: a suspended actor costs no worker, and a
      // running one is suspended by Substrate when idle.
      gatewayManagesLifecycle: false,
      // See authenticateSandbox.
      supportsSandboxAuthentication: false,
      // Readiness comes from the supervisor session, as for every in-tree driver.
      driverReportsRuntimeReadiness: false,
      resourceCapabilities: {
        cpu: { limitSupported: limits.cpu },
        memory: { limitSupported: limits.memory },
        gpu: { defaultSelectionSupported: false, countSelectionSupported: false },
      },
      rootfsTarStagingDir: '',
      rootfsTarMaxBytes: 0,
      extension: ours,
      resourceAdmissionPolicy: this.o.admissionAck ?? '',
    };
    this.capsCache = { key, res };
    if (fromGateway) this.generation.seen(gen);
    return res;
  }

  /**
   * AuthenticateSandbox: not implemented (supports_sandbox_authentication = false). The credential the driver
   * could verify is a Substrate actor JWT, and it cannot reach a workload on Substrate v0.4.0, whose egress
   * gateway refuses actor-JWT injection (HTTP 501); v0.1's split supervisor needs the launch authentication
   * the driver delivers anyway. This is the seam: should Substrate hand actors a verifiable credential,
   * verify it here, map it to the sandbox whose actor presented it, and answer
   * {sandboxId, runtimeIdentity: this.runtimeIdentity(record)} (and advertise the capability).
   */
  authenticate(_credential: string): { sandboxId: string; runtimeIdentity: string } {
    throw new ApiError(Code.UNIMPLEMENTED, AUTHENTICATE_UNIMPLEMENTED);
  }

  /** v0.1 gateways always send spec.workload_identity; otherwise the generation GetCapabilities saw. */
  private generationOf(sb: DriverSandbox): Generation {
    return sb.spec?.workloadIdentity !== undefined ? 'v0.1' : this.generation.current;
  }

  /** `substrate:<atespace>/<actor>:<instance>` — stable for the sandbox's compute resource. */
  private stableIdentity(r: SandboxRecord): string {
    return `substrate:${r.atespace}/${r.id}:${r.instance}`;
  }

  /** The stable part plus the generation part (`#g<n>`). */
  runtimeIdentity(r: SandboxRecord): string {
    return `${this.stableIdentity(r)}#g${r.runtimeGeneration}`;
  }

  /** All validation of a sandbox about to be created; returns where it will live. */
  async validate(sb: DriverSandbox | undefined): Promise<Plan> {
    if (!sb) throw invalid('sandbox is required');
    if (!sb.id) throw invalid('sandbox.id is required (the gateway sandbox UUID)');
    const idErr = dnsLabelError('actor_id', sb.id);
    if (idErr) throw invalid(`sandbox.id "${sb.id}" cannot be a Substrate actor name: ${idErr}`);
    if (!sb.name) throw invalid('sandbox.name is required');
    const workspace = sb.workspace || 'default';
    const wsErr = dnsLabelError('atespace', workspace);
    if (wsErr) throw invalid(`workspace "${workspace}" cannot be a Substrate atespace name: ${wsErr}`);
    if (RESERVED_ATESPACES.includes(workspace)) {
      throw invalid(`workspace "${workspace}" is reserved: Substrate keeps its templates' golden actors there; use another workspace`);
    }

    const spec = sb.spec;
    const wi = spec?.workloadIdentity;
    if (wi && (wi.user !== '' || wi.group !== '')) {
      const asked = [wi.user !== '' ? `user ${JSON.stringify(wi.user)}` : '', wi.group !== '' ? `group ${JSON.stringify(wi.group)}` : ''].filter(Boolean).join(' and ');
      throw failedPrecondition(
        `workload_identity asks for ${asked}, which the substrate driver cannot honour: Substrate v0.4 ActorTemplate containers have no user or group field, so a sandbox runs as its image's default user; remove process.run_as_user / run_as_group from the sandbox policy`,
      );
    }
    if (spec?.template?.userNamespaces === true) {
      throw failedPrecondition(
        'template.user_namespaces = true cannot be honoured: Substrate runs each actor in its own gVisor sandbox, whose user namespace the driver does not control; leave user_namespaces unset',
      );
    }
    if (this.generationOf(sb) === 'v0.1') {
      const refused = this.o.checkDriverConfig?.(spec?.template?.driverConfig as Record<string, unknown> | undefined);
      if (refused) throw refused;
    }
    const launch = spec?.launchAuthentication;
    if (launch && launch.length > 0) {
      if (!this.o.deliverLaunch) {
        throw failedPrecondition(
          'the sandbox carries launch authentication, which the driver delivers into its actor through the actor router, and no router is known: set router_url',
        );
      }
      // Structure and the sandbox it was minted for; never a token in the message.
      const summary = parseLaunchAuthentication(launch);
      if (summary.sandboxId !== undefined && summary.sandboxId !== sb.id) {
        throw invalid(`launch_authentication of sandbox ${sb.id} was minted for another sandbox; the gateway must send this sandbox's own`);
      }
    }
    if (spec?.resourceRequirements?.gpu !== undefined) {
      throw failedPrecondition(
        'GPU requests are not supported by the substrate driver: the Substrate v0.4 API has no GPU field; create the sandbox without a GPU',
      );
    }
    const tmpl = spec?.template;
    const platform = (tmpl?.platformConfig ?? {}) as Record<string, unknown>;
    const raw = platform.resources_raw;
    if (raw && typeof raw === 'object' && JSON.stringify(raw).toLowerCase().includes('gpu')) {
      throw failedPrecondition('GPU resources (platform_config.resources_raw) are not supported: the Substrate v0.4 API has no GPU field');
    }

    const dc = (tmpl?.driverConfig ?? {}) as Record<string, unknown>;
    const unknownKeys = Object.keys(dc).filter((k) => !(DRIVER_CONFIG_KEYS as readonly string[]).includes(k));
    if (unknownKeys.length > 0) {
      throw invalid(
        `unknown template.driver_config key${unknownKeys.length > 1 ? 's' : ''} ${unknownKeys.map((k) => `"${k}"`).join(', ')} for the substrate driver; known keys: ${DRIVER_CONFIG_KEYS.join(', ')}`,
      );
    }
    let sandboxSelector: Record<string, string> = {};
    if (dc.worker_selector !== undefined) {
      try {
        sandboxSelector = parseSelector(dc.worker_selector);
      } catch (e) {
        throw invalid(`template.driver_config.worker_selector: ${(e as Error).message}`);
      }
    }
    const workerSelector = { ...this.o.workerSelector, ...sandboxSelector };
    if (Object.keys(workerSelector).length > 10) {
      throw invalid(`the worker selector has ${Object.keys(workerSelector).length} entries (config plus driver_config); ateapi allows at most 10`);
    }

    let named: string | undefined;
    let namedFrom = '';
    if (dc.actor_template !== undefined) {
      if (typeof dc.actor_template !== 'string' || dc.actor_template.trim() === '') {
        throw invalid('template.driver_config.actor_template must be a non-empty string: "name" or "atespace/name"');
      }
      named = dc.actor_template.trim();
      namedFrom = 'template.driver_config.actor_template';
    }
    const ann = platform.annotations as Record<string, unknown> | undefined;
    const annValue = ann && typeof ann === 'object' ? ann[TEMPLATE_ANNOTATION] : undefined;
    if (annValue !== undefined) {
      if (typeof annValue !== 'string' || annValue.trim() === '') {
        throw invalid(`template annotation ${TEMPLATE_ANNOTATION} must be a non-empty string: "name" or "atespace/name"`);
      }
      if (named !== undefined && named !== annValue.trim()) {
        throw invalid(
          `template.driver_config.actor_template ("${named}") and the annotation ${TEMPLATE_ANNOTATION} ("${annValue.trim()}") name different templates; give one`,
        );
      }
      named = annValue.trim();
      namedFrom ||= `annotation ${TEMPLATE_ANNOTATION}`;
    }

    if (named !== undefined) {
      const parts = named.split('/');
      const [ns, name] = parts.length === 2 ? [parts[0]!, parts[1]!] : [this.o.namespace, named];
      if (parts.length > 2 || !isDnsLabel(ns) || !isDnsLabel(name)) {
        throw invalid(`${namedFrom} "${named}" is not "name" or "atespace/name" (both DNS-1123 labels)`);
      }
      let t;
      try {
        t = await this.o.control.findActorTemplate({ atespace: ns, name });
      } catch (e) {
        throw mapBackendError(e, `look up ActorTemplate ${ns}/${name}`);
      }
      if (!t) {
        throw failedPrecondition(`ActorTemplate ${ns}/${name} named by ${namedFrom} does not exist; create it first, or leave the key out to let the driver make one`);
      }
      // Only pre-provisioned templates the operator marked attachable (for this workspace); never a
      // synthesized one. create() runs this same validation, so CreateSandbox checks it again.
      const refused = attachRefusal(ns, name, workspace, this.o.admission ?? defaultAdmissionConfig(), this.o.templateLabels ?? {});
      if (refused) throw refused;
      const res = tmpl?.resources;
      if (res && (res.cpuLimit || res.memoryLimit)) {
        throw failedPrecondition(
          `template.resources sets cpu/memory limits, but the sandbox names the pre-provisioned ActorTemplate ${ns}/${name}, whose actors share its limits; set them in that template's resources.limits, or leave the template out to let the driver make one with these limits`,
        );
      }
      return { atespace: workspace, preProvisioned: { atespace: ns, name }, workerSelector };
    }

    if (!tmpl?.image) {
      throw invalid(
        this.o.defaultImage
          ? 'template.image is empty; give a digest-pinned image (image@sha256:<digest>)'
          : 'template.image is empty and the driver has no default_image; give a digest-pinned image (image@sha256:<digest>)',
      );
    }
    // Pinned image, env and command limits, env names, resources: everything synthesis enforces.
    this.o.templates.validate(sb);
    return { atespace: workspace, workerSelector };
  }

  /** CreateSandbox: returns the runtime identity once the record is durable; provisioning goes on. */
  async create(sb: DriverSandbox | undefined): Promise<string> {
    const plan = await this.validate(sb);
    const s = sb!;
    const launch = s.spec?.launchAuthentication ?? Buffer.alloc(0);
    // The synthesized template's name is its content's hash: the same spec, the same (shared) template.
    const synth = plan.preProvisioned ? undefined : this.o.templates.synthesize({ ...s, workspace: plan.atespace });
    const tref = plan.preProvisioned ?? { atespace: synth!.template.metadata!.atespace, name: synth!.template.metadata!.name };
    return this.withLock(s.id, async () => {
      if (this.records.get(s.id)) throw alreadyExists(`sandbox ${s.id} already exists`);
      const rec: SandboxRecord = {
        id: s.id,
        name: s.name,
        workspace: s.workspace || 'default',
        atespace: plan.atespace,
        templateAtespace: tref.atespace,
        template: tref.name,
        owned: !plan.preProvisioned,
        templateHash: synth?.hash ?? '',
        desired: 'running',
        token: s.spec?.sandboxToken ?? '',
        createdAt: new Date().toISOString(),
        provisioned: false,
        workerSelector: plan.workerSelector,
        sandbox: stripToken({ ...s, status: undefined }),
        instance: randomBytes(8).toString('hex'),
        runtimeGeneration: 1,
        launch: Buffer.from(launch).toString('base64'),
      };
      try {
        await this.records.put(rec);
      } catch (e) {
        throw mapBackendError(e, `record sandbox ${s.id}`);
      }
      const l = this.liveOf(s.id);
      l.op = 'provisioning';
      l.progress = 'accepted; provisioning the sandbox';
      log.info('sandbox accepted', { sandbox_id: s.id, sandbox_name: s.name, workspace: rec.workspace, template: `${rec.templateAtespace}/${rec.template}`, owned: rec.owned });
      this.emitIfChanged(s.id);
      this.platformEvent(s.id, 'Normal', 'Accepted', 'sandbox accepted by the substrate driver', {
        'openshell.progress.active_step': PROGRESS.requesting,
        'openshell.progress.active_detail': 'accepted',
      });
      this.startProvisioning(s.id);
      return this.runtimeIdentity(rec);
    });
  }

  private startProvisioning(id: string): void {
    const l = this.liveOf(id);
    if (l.provisioning) return;
    const abort = new AbortController();
    l.op = 'provisioning';
    const done = this.provision(id, abort.signal).finally(() => {
      if (l.provisioning?.abort === abort) l.provisioning = undefined;
    });
    l.provisioning = { abort, done };
  }

  private async provision(id: string, signal: AbortSignal): Promise<void> {
    const l = this.liveOf(id);
    let step = 'ensure atespace';
    let reason = 'AtespaceFailed';
    const check = () => {
      if (signal.aborted) throw new ApiError(Code.CANCELLED, 'provisioning cancelled');
    };
    try {
      let r = this.records.get(id)!;
      const ref = this.refOf(r);
      this.setProgress(id, PROGRESS.requesting, `ensuring atespace ${r.atespace}`);
      await this.o.control.ensureAtespace(r.atespace);
      if (r.templateAtespace !== r.atespace) await this.o.control.ensureAtespace(r.templateAtespace);
      check();

      if (r.owned) {
        // Synthesized again from the record (the gateway sends the launch bundle once): the same spec gives the
        // same template; if its content moved (rotated gateway keys), the record follows before anything exists.
        const spec = r.sandbox.spec && { ...r.sandbox.spec, launchAuthentication: Buffer.from(r.launch, 'base64') };
        const st = this.o.templates.synthesize({ ...r.sandbox, spec, id: r.id, name: r.name, workspace: r.atespace });
        const name = st.template.metadata!.name;
        if (name !== r.template || st.hash !== r.templateHash) {
          r = await this.records.update(id, { template: name, templateAtespace: st.template.metadata!.atespace, templateHash: st.hash });
        }
        step = `create ActorTemplate ${r.templateAtespace}/${r.template}`;
        reason = 'TemplateRejected';
        this.setProgress(id, PROGRESS.requesting, `creating ActorTemplate ${r.template}`);
        await this.templates.ensure(st, id);
        check();
      }

      // Wait for the golden tag in every case: an actor created before it exists would cold-boot on every
      // resume until its own first suspend.
      const tref = this.templateRefOf(r);
      step = `wait for the golden snapshot of ActorTemplate ${templateKey(tref)}`;
      reason = 'TemplateNotReady';
      this.setProgress(id, PROGRESS.requesting, `waiting for ActorTemplate ${r.template} (golden snapshot)`);
      await this.templates.waitGolden(tref, {
        timeoutMs: this.o.templateReadyTimeoutMs,
        signal,
        onProgress: (p) => this.setProgress(id, PROGRESS.requesting, `ActorTemplate ${r.template}: ${p.message}`),
      });
      check();

      step = `CreateActor ${r.atespace}/${r.id}`;
      reason = 'ActorCreateFailed';
      this.setProgress(id, PROGRESS.requesting, 'creating the actor');
      let actor: Actor | undefined;
      try {
        actor = await this.o.control.createActor({
          actor: ref,
          template: tref,
          workerSelector: Object.keys(r.workerSelector).length > 0 ? r.workerSelector : undefined,
        });
      } catch (e) {
        // A retry after a driver restart finds the actor it created before.
        if (!isCode(e, Code.ALREADY_EXISTS)) throw e;
        actor = await this.o.control.getActor(ref);
      }
      this.setActor(l, actor);
      r = await this.records.update(id, { provisioned: true });
      this.platformEvent(id, 'Normal', 'ActorCreated', `actor ${r.atespace}/${r.id} created from ActorTemplate ${r.templateAtespace}/${r.template}`, {
        'openshell.progress.complete_step': PROGRESS.requesting,
        'openshell.progress.complete_label': 'Sandbox requested',
      });
      check();

      if (this.records.get(id)?.desired === 'running') {
        step = `ResumeActor ${r.atespace}/${r.id}`;
        reason = 'ActorResumeFailed';
        this.setProgress(id, PROGRESS.starting, 'starting the actor');
        let a: Actor | undefined;
        // Every worker busy (RESOURCE_EXHAUSTED) is not a failure of the sandbox: it waits, reported as
        // provisioning, and resumes as soon as a worker has room, until the gateway stops or deletes it.
        for (let attempt = 0; !a; attempt++) {
          try {
            const res = await this.o.control.resumeActor(ref);
            a = res.actor ?? (await this.o.control.getActor(ref));
          } catch (e) {
            const cap = capacityError(e, 'ResumeActor');
            if (!cap || signal.aborted) {
              throw e;
            }
            if (this.records.get(id)?.desired !== 'running') {
              a = await this.o.control.getActor(ref);
              break;
            }
            if (attempt === 0) this.platformEvent(id, 'Normal', 'WaitingForWorker', `${cap.message}; waiting for a free worker`);
            this.setProgress(id, PROGRESS.starting, 'waiting for a free Substrate worker (every worker is busy)');
            await sleep(Math.min(NO_ROOM_RETRY_MAX_MS, NO_ROOM_RETRY_MS * 2 ** Math.min(attempt, 6)), signal);
            check();
          }
        }
        this.setActor(l, a);
        if (!isRunning(a) && this.records.get(id)?.desired !== 'running') {
          // Stopped by the gateway while it waited for a worker: provisioned, and stopped.
          l.op = undefined;
          l.progress = undefined;
          this.emitIfChanged(id);
          return;
        }
        if (!isRunning(a)) {
          throw new ApiError(Code.INTERNAL, `ResumeActor returned state ${statusName(a)} instead of RUNNING${crashMessageOf(a) ? ` (${crashMessageOf(a)})` : ''}`);
        }
        const cur = this.records.get(id);
        if (cur && (await this.takesDelivery(cur))) {
          step = `deliver ${cur.launch ? 'launch credentials' : 'the sandbox identity'} to actor ${r.atespace}/${r.id}`;
          reason = 'LaunchDeliveryFailed';
          this.setProgress(id, PROGRESS.starting, cur.launch ? 'handing the sandbox its launch credentials' : 'handing the sandbox its identity');
          await this.deliver(cur, signal);
        }
        this.platformEvent(id, 'Normal', 'Started', `actor running on worker ${workerOf(a) || '?'}`, {
          'openshell.progress.complete_step': PROGRESS.starting,
          'openshell.progress.complete_label': 'Sandbox started',
        });
      }
      l.op = undefined;
      l.progress = undefined;
      this.emitIfChanged(id);
      log.info('sandbox provisioned', { sandbox_id: id, state: statusName(l.actor) });
    } catch (e) {
      l.op = undefined;
      l.progress = undefined;
      if (signal.aborted || !this.records.get(id)) {
        log.info('provisioning stopped', { sandbox_id: id, step });
        return;
      }
      const mapped = mapBackendError(e);
      const message = `${step} failed: ${mapped.message}`;
      log.warn('provisioning failed', { sandbox_id: id, reason, error: message });
      try {
        await this.records.update(id, { failureReason: reason, failureMessage: message });
      } catch (pe) {
        log.error('could not persist a provisioning failure', { sandbox_id: id, error: mapBackendError(pe).message });
        const r = this.records.get(id);
        if (r) Object.assign(r, { failureReason: reason, failureMessage: message });
      }
      this.platformEvent(id, 'Warning', reason, message);
      this.emitIfChanged(id);
    }
  }

  private mustRecord(id: string): SandboxRecord {
    if (!id) throw invalid('sandbox_id is required');
    const r = this.records.get(id);
    if (!r) throw notFound(`sandbox ${id} not found`);
    return r;
  }

  /** StopSandbox: returns once the actor is SUSPENDED (or PAUSED in pause mode). Idempotent. */
  async stopSandbox(id: string): Promise<void> {
    this.mustRecord(id);
    await this.withLock(id, async () => {
      let r = this.mustRecord(id);
      assertNotFailed(r);
      const l = this.liveOf(id);
      const before = r.desired;
      r = await this.persist(id, { desired: 'stopped' });
      if (l.provisioning) await l.provisioning.done;
      r = this.mustRecord(id);
      assertNotFailed(r);
      if (!r.provisioned) {
        // Nothing was started: the actor does not exist yet, so nothing runs.
        this.emitIfChanged(id);
        return;
      }
      l.op = 'stopping';
      this.emitIfChanged(id);
      try {
        const wasStopped = isStopped(l.actor);
        const a = await this.bringToStopped(r);
        this.setActor(l, a);
        if (!wasStopped) this.platformEvent(id, 'Normal', 'Stopped', `actor ${statusName(a)}; memory kept in its snapshot`);
      } catch (e) {
        // Leave the gateway a consistent picture: if the actor still runs, the sandbox still wants to run.
        const now = await this.o.control.findActor(this.refOf(r)).catch(() => undefined);
        if (now) this.setActor(l, now);
        if (!isStopped(now) && before === 'running') await this.persist(id, { desired: 'running' }).catch(() => undefined);
        if (isCode(e, Code.NOT_FOUND)) {
          l.actorMissing = true;
          throw notFound(`sandbox ${id}: its actor ${r.atespace}/${r.id} no longer exists`);
        }
        throw mapBackendError(e, `stop sandbox ${id}`);
      } finally {
        l.op = undefined;
        this.emitIfChanged(id);
      }
    });
  }

  /**
   * Drives an existing actor to SUSPENDED (PAUSED in pause mode). v0.4: a PAUSED actor suspends directly
   * (its node-local snapshot is uploaded), a CRASHED one is reverted to its last external snapshot.
   */
  private async bringToStopped(r: SandboxRecord): Promise<Actor> {
    const ref = this.refOf(r);
    const pause = this.o.stopMode === 'pause';
    let a = await this.o.control.getActor(ref);
    for (let i = 0; i < 6; i++) {
      const s = stateOf(a);
      if (s === ActorState.ACTOR_STATE_SUSPENDED) return a;
      if (s === ActorState.ACTOR_STATE_PAUSED && pause) return a;
      switch (s) {
        case ActorState.ACTOR_STATE_RUNNING:
          a = pause ? await this.o.control.pauseActor(ref) : await this.o.control.suspendActor(ref);
          break;
        case ActorState.ACTOR_STATE_SUSPENDING:
        case ActorState.ACTOR_STATE_PAUSED:
          a = await this.o.control.suspendActor(ref);
          break;
        case ActorState.ACTOR_STATE_PAUSING:
          a = await this.o.control.pauseActor(ref);
          break;
        case ActorState.ACTOR_STATE_CRASHED:
        case ActorState.ACTOR_STATE_REVERTING:
          a = await this.o.control.revertActor(ref);
          break;
        case ActorState.ACTOR_STATE_RESUMING: {
          // Let the resume finish (re-entry), then checkpoint it.
          const res = await this.o.control.resumeActor(ref);
          a = res.actor ?? (await this.o.control.getActor(ref));
          break;
        }
        case ActorState.ACTOR_STATE_DELETING:
          throw new ApiError(Code.NOT_FOUND, `actor ${ref.atespace}/${ref.name} is being deleted`);
        default:
          a = await this.o.control.getActor(ref);
      }
    }
    if (stateOf(a) === ActorState.ACTOR_STATE_SUSPENDED || (stateOf(a) === ActorState.ACTOR_STATE_PAUSED && pause)) return a;
    throw new ApiError(Code.ABORTED, `actor ${ref.atespace}/${ref.name} did not settle in SUSPENDED (last state ${statusName(a)}); retry`);
  }

  /**
   * StartSandbox: returns once the actor is RUNNING (and, for a v0.1 gateway, holds the launch credentials
   * of this start), with the runtime identity. Idempotent; NOT_FOUND when gone. A v0.1 gateway sends fresh
   * launch authentication and the identity it recorded: the stable part must still name this sandbox's
   * compute resource; the generation part is bumped when the actor is actually started.
   */
  async startSandbox(q: StartSandboxRequest): Promise<string> {
    const id = q.sandboxId;
    this.mustRecord(id);
    return this.withLock(id, async () => {
      let r = this.mustRecord(id);
      assertNotFailed(r);
      const expected = q.expectedRuntimeIdentity;
      if (expected !== '') {
        const stable = expected.split('#')[0];
        if (stable !== this.stableIdentity(r)) {
          throw failedPrecondition(
            `sandbox ${id}: expected_runtime_identity names another compute resource than this sandbox's actor ${r.atespace}/${r.id} (it was recreated); delete the sandbox and create it again`,
          );
        }
      }
      const l = this.liveOf(id);
      const before = r.desired;
      const fresh = q.launchAuthentication.length > 0 ? Buffer.from(q.launchAuthentication).toString('base64') : r.launch;
      r = await this.persist(id, { desired: 'running', launch: fresh });
      if (l.provisioning) {
        await l.provisioning.done;
        r = this.mustRecord(id);
        assertNotFailed(r);
        if (isRunning(l.actor)) {
          await this.deliver(r);
          return this.runtimeIdentity(r);
        }
      }
      if (!r.provisioned) {
        this.startProvisioning(id);
        await this.liveOf(id).provisioning?.done;
        r = this.mustRecord(id);
        assertNotFailed(r);
        return this.runtimeIdentity(r);
      }
      l.op = 'starting';
      this.emitIfChanged(id);
      try {
        const ref = this.refOf(r);
        const wasRunning = isRunning(l.actor);
        // A CRASHED actor cannot be resumed: revert it to its last snapshot first (v0.4).
        const cur = await this.o.control.getActor(ref);
        const s = stateOf(cur);
        if (s === ActorState.ACTOR_STATE_CRASHED || s === ActorState.ACTOR_STATE_REVERTING) this.setActor(l, await this.o.control.revertActor(ref));
        let res;
        try {
          res = await this.o.control.resumeActor(ref);
        } catch (e) {
          throw capacityError(e, `start sandbox ${id}`) ?? e;
        }
        const a = res.actor ?? (await this.o.control.getActor(ref));
        this.setActor(l, a);
        if (!isRunning(a)) {
          throw new ApiError(Code.ABORTED, `actor ${r.atespace}/${r.id} is ${statusName(a)} after ResumeActor; retry`);
        }
        if (res.resumed || !wasRunning || before === 'stopped') r = await this.persist(id, { runtimeGeneration: r.runtimeGeneration + 1 });
        l.recoveryFailure = undefined;
        l.recoveryAttempts = 0;
        l.recoveryNextAt = undefined;
        await this.deliver(r);
        this.platformEvent(id, 'Normal', 'Started', `actor running on worker ${workerOf(a) || '?'}`);
        return this.runtimeIdentity(r);
      } catch (e) {
        if (isCode(e, Code.NOT_FOUND)) {
          l.actorMissing = true;
          l.actor = undefined;
          throw notFound(`sandbox ${id}: its actor ${r.atespace}/${r.id} no longer exists`);
        }
        const now = await this.o.control.findActor(this.refOf(r)).catch(() => undefined);
        if (now) this.setActor(l, now);
        if (now && !isRunning(now) && before === 'stopped') {
          await this.persist(id, { desired: 'stopped' }).catch(() => undefined);
        }
        if (e instanceof ApiError && e.code === Code.RESOURCE_EXHAUSTED) throw e;
        throw mapBackendError(e, `start sandbox ${id}`);
      } finally {
        l.op = undefined;
        this.emitIfChanged(id);
      }
    });
  }

  /**
   * Hands a running actor, through the actor router to the bootstrap agent in the actor (see launch.ts and
   * src/sandbox/bootstrap-agent.mjs), the sandbox's latest launch authentication (v0.1), or its identity and
   * token (0.0.x: the agent starts the held workload with them; the same delivery again is a no-op for it).
   * A pre-provisioned template receives a v0.1 bundle only if it runs the agent (otherwise a Warning event says
   * so), a 0.0.x identity only if its agent is in identity mode.
   */
  private async deliver(r: SandboxRecord, signal?: AbortSignal): Promise<void> {
    if (!this.o.deliverLaunch) return;
    const l = this.liveOf(r.id);
    if (await this.takesDelivery(r)) await this.o.deliverLaunch(r, signal);
    l.deliveredTo = incarnationOf(l.actor, l.resumes);
  }

  /**
   * Whether the sandbox's actor takes a delivery: a v0.1 sandbox (launch authentication) whose template runs
   * the agent (a synthesized one always does); a 0.0.x sandbox whose template's agent holds the workload for
   * its identity (synthesized ones do; one from before identity delivery, or an operator's, may not).
   */
  private async takesDelivery(r: SandboxRecord): Promise<boolean> {
    if (!this.o.deliverLaunch) return false;
    if (r.launch) return r.owned || (await this.templateRunsAgent(r));
    const l = this.liveOf(r.id);
    if (l.templateTakesIdentity === undefined) {
      const t = await this.o.control.findActorTemplate(this.templateRefOf(r));
      l.templateTakesIdentity = takesIdentityDelivery(t);
    }
    return l.templateTakesIdentity;
  }

  private async templateRunsAgent(r: SandboxRecord): Promise<boolean> {
    const l = this.liveOf(r.id);
    if (l.templateRunsAgent !== undefined) return l.templateRunsAgent;
    const t = await this.o.control.findActorTemplate(this.templateRefOf(r)).catch(() => undefined);
    l.templateRunsAgent = runsBootstrapAgent(t);
    if (!l.templateRunsAgent) {
      this.platformEvent(
        r.id,
        'Warning',
        'NoBootstrapAgent',
        `ActorTemplate ${r.templateAtespace}/${r.template} does not run the bootstrap agent, so this sandbox gets no launch credentials; wrap its container command with ${BOOTSTRAP_AGENT_COMMAND.join(' ')}`,
      );
    }
    return l.templateRunsAgent;
  }

  /**
   * A running actor whose incarnation has not received the latest bundle (the driver restarted, or a worker
   * death restored it from an older snapshot) gets it again, in the background. An agent already holding a
   * newer one refuses it (FAILED_PRECONDITION), which is fine.
   */
  private redeliverIfNeeded(id: string): void {
    const r = this.records.get(id);
    const l = this.liveOf(id);
    if (!r || !this.o.deliverLaunch || r.desired !== 'running' || !r.provisioned || l.op || l.deleting || l.redelivering) return;
    if (!isRunning(l.actor) || l.deliveredTo === incarnationOf(l.actor, l.resumes)) return;
    l.redelivering = this.withLock(id, async () => {
      const cur = this.records.get(id);
      if (!cur || cur.desired !== 'running' || !isRunning(l.actor) || l.deliveredTo === incarnationOf(l.actor, l.resumes)) return;
      await this.deliver(cur);
      log.info(cur.launch ? 'launch credentials delivered again' : 'sandbox identity delivered again (if its template takes one)', { sandbox_id: id, worker: workerOf(l.actor) });
    })
      .catch((e) => {
        if (isCode(e, Code.FAILED_PRECONDITION)) {
          l.deliveredTo = incarnationOf(l.actor, l.resumes);
          return;
        }
        log.warn('could not deliver launch credentials again; retrying at the next poll', { sandbox_id: id, error: mapBackendError(e).message });
      })
      .finally(() => {
        l.redelivering = undefined;
      });
  }

  private async persist(id: string, change: Partial<SandboxRecord>): Promise<SandboxRecord> {
    const r = this.records.get(id);
    if (r && Object.entries(change).every(([k, v]) => (r as unknown as Record<string, unknown>)[k] === v)) return r;
    try {
      return await this.records.update(id, change);
    } catch (e) {
      throw mapBackendError(e, `update the record of sandbox ${id}`);
    }
  }

  /**
   * DeleteSandbox: deletes the actor from whatever state it is in (v0.4 `any_state`), releases its template
   * (a synthesized one is deleted when no other sandbox uses it), removes the record, then publishes a Watch
   * `deleted` event. `false` when the sandbox was already absent.
   */
  async deleteSandbox(id: string): Promise<boolean> {
    if (!id) throw invalid('sandbox_id is required');
    if (!this.records.get(id)) return false;
    return this.withLock(id, async () => {
      const r = this.records.get(id);
      if (!r) return false;
      const l = this.liveOf(id);
      l.deleting = true;
      l.op = 'deleting';
      this.emitIfChanged(id);
      if (l.provisioning) {
        l.provisioning.abort.abort();
        await l.provisioning.done;
      }
      const ref = this.refOf(r);
      try {
        const a = await this.o.control.findActor(ref);
        if (a) {
          try {
            await this.o.control.deleteActor(ref, { anyState: true, uid: a.metadata?.uid });
          } catch (e) {
            if (!isCode(e, Code.NOT_FOUND)) throw e;
          }
        }
        await this.templates.release(this.templateRefOf(r), id);
        await this.records.remove(id);
      } catch (e) {
        l.deleting = false;
        l.op = undefined;
        this.emitIfChanged(id);
        throw mapBackendError(e, `delete sandbox ${id}`);
      }
      this.live.delete(id);
      log.info('sandbox deleted', { sandbox_id: id });
      this.hub.publish({ payload: { $case: 'deleted', value: { sandboxId: id } } });
      return true;
    });
  }

  /** GetSandbox: a fresh read of the actor. */
  async getSandbox(id: string): Promise<DriverSandbox> {
    const r = this.mustRecord(id);
    const l = this.liveOf(id);
    if (!l.deleting) {
      try {
        const a = await this.o.control.findActor(this.refOf(r));
        if (a) this.seeActor(l, a);
        else if (r.provisioned && !l.op) {
          l.actor = undefined;
          l.actorMissing = true;
        }
      } catch (e) {
        throw mapBackendError(e, `read actor ${r.atespace}/${r.id}`);
      }
    }
    const cur = this.records.get(id);
    if (!cur) throw notFound(`sandbox ${id} not found`);
    this.emitIfChanged(id);
    return this.project(cur);
  }

  /** ListSandboxes: every sandbox the driver manages, with fresh actor states. */
  async listSandboxes(): Promise<DriverSandbox[]> {
    await this.refreshAll();
    return this.records.all().map((r) => this.project(r));
  }

  private async refreshAll(): Promise<void> {
    const recs = this.records.all();
    const atespaces = [...new Set(recs.map((r) => r.atespace))];
    const seen = new Map<string, Actor>();
    try {
      const lists = await Promise.all(atespaces.map((a) => this.o.control.listAllActors(a)));
      for (const list of lists) for (const a of list) seen.set(`${a.metadata?.atespace}/${a.metadata?.name}`, a);
    } catch (e) {
      throw mapBackendError(e, 'list actors');
    }
    const confirm: Promise<void>[] = [];
    for (const r of recs) {
      const l = this.liveOf(r.id);
      if (l.deleting) continue;
      const a = seen.get(`${r.atespace}/${r.id}`);
      if (a) {
        this.seeActor(l, a);
      } else if (r.provisioned && !l.op) {
        confirm.push(
          this.o.control.findActor(this.refOf(r)).then(
            (x) => {
              if (x) this.seeActor(l, x);
              else if (!l.op) {
                l.actor = undefined;
                l.actorMissing = true;
              }
            },
            () => undefined,
          ),
        );
      }
    }
    await Promise.all(confirm);
    // Every open watch learns what this read saw.
    for (const r of recs) this.emitIfChanged(r.id);
  }

  /** WatchSandboxes: subscribe first, then the full snapshot, then changes. */
  async watch(sink: EventSink): Promise<void> {
    const sub = this.hub.subscribe(sink);
    if (this.stopped) {
      sub.end();
      return;
    }
    let snapshot: DriverSandbox[];
    try {
      snapshot = await this.listSandboxes();
    } catch (e) {
      // The snapshot could not be read (the backend is down): end the stream so the gateway retries.
      const m = mapBackendError(e, 'watch snapshot');
      sink.emit('error', { code: m.code, details: m.message });
      sub.end();
      return;
    }
    const events: WatchSandboxesEvent[] = snapshot.map((sb) => ({ payload: { $case: 'sandbox', value: { sandbox: sb } } }));
    sub.bootstrap(events);
  }

  async ensureWorkspace(workspace: string): Promise<void> {
    if (!workspace) throw invalid('workspace is required');
    const err = dnsLabelError('atespace', workspace);
    if (err) throw invalid(`workspace "${workspace}" cannot be a Substrate atespace name: ${err}`);
    try {
      await this.o.control.ensureAtespace(workspace);
    } catch (e) {
      throw mapBackendError(e, `create atespace ${workspace}`);
    }
  }

  async deleteWorkspace(workspace: string): Promise<void> {
    if (!workspace) throw invalid('workspace is required');
    const err = dnsLabelError('atespace', workspace);
    if (err) throw invalid(`workspace "${workspace}" cannot be a Substrate atespace name: ${err}`);
    const remaining = this.records.all().filter((r) => r.atespace === workspace);
    if (remaining.length > 0) {
      const names = remaining.slice(0, 5).map((r) => r.name);
      throw failedPrecondition(
        `workspace ${workspace} still has ${remaining.length} sandbox${remaining.length > 1 ? 'es' : ''} (${names.join(', ')}${remaining.length > 5 ? ', ...' : ''}); delete them first`,
      );
    }
    try {
      await this.o.control.deleteAtespace(workspace);
    } catch (e) {
      if (isCode(e, Code.NOT_FOUND)) return;
      throw mapBackendError(e, `delete atespace ${workspace}`);
    }
  }
}

/** A sandbox whose provisioning failed stays failed: only DeleteSandbox applies to it. */
function assertNotFailed(r: SandboxRecord): void {
  if (r.failureReason) throw failedPrecondition(`sandbox ${r.id} failed (${r.failureReason}: ${r.failureMessage}); delete it`);
}

/** The sandbox's instance id while its actor runs: the worker plus a short hash of the incarnation. */
function instanceIdOf(a: Actor | undefined, resumes: number): string {
  const inc = incarnationOf(a, resumes);
  if (!inc) return '';
  return `${workerOf(a) || 'worker'}~${createHash('sha256').update(inc).digest('hex').slice(0, 8)}`;
}

/** The digest of the sandbox's pinned image (`…@sha256:<hex>`), or "" when it names a template instead. */
function imageDigestOf(sb: DriverSandbox): string {
  const image = sb.spec?.template?.image ?? '';
  const at = image.lastIndexOf('@');
  return at >= 0 ? image.slice(at + 1) : '';
}
