// The actor workflows of the local Substrate on the v0.4 state machine (substrate-v0.4.md §5.1): resume
// (placement, restore or cold boot, wakeup probe), suspend (to a new actor-owned external snapshot, from
// RUNNING or PAUSED), pause (node-local snapshot), revert, delete cleanup, crash, and the reconciliation after
// a restart of the local Substrate (kill -9 included). The caller (src/local/actors.ts) holds the actor's lock
// around every call here; nothing here takes it.
//
// Durability: the runtime writes a checkpoint into a temp directory and renames it into place, so a snapshot
// directory with meta.json is whole; an external snapshot is "sealed" (SnapshotStore.seal) once it is
// recorded. Each actor write is compare-and-set on its version, and a binding and the actor recording it are
// one SQLite transaction.
//
// Deliberate local differences, each kept from the pinned implementation because it loses less:
// - A checkpoint that fails while the sandbox keeps running puts the actor back to RUNNING (memory intact)
//   instead of crashing it; a checkpoint that kills the sandbox crashes it.
// - A resume interrupted by a restart goes back to SUSPENDED/PAUSED (its snapshot is untouched).
// - A snapshot taken with content scope DATA, or taken under another template (TemplateReplaced), is not
//   restored: the local runtime has only whole-memory checkpoints and no durable data volumes, so restoring
//   "data only" is a cold boot.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { cp, mkdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type Database from 'better-sqlite3';
import * as pb from '../gen/ateapi.js';
import { ApiError, Code, aborted, failedPrecondition, grpcCodeOf, messageOf } from '../common/errors.js';
import { logger } from '../common/log.js';
import { GOLDEN_ATESPACE, type ControlApi } from './api.js';
import { bumped } from './meta.js';
import type { SnapshotStore } from './snapshots.js';
import type { ResourceTable } from './table.js';
import type { EgressRule, Runtime, SandboxHandle, WorkerSlot } from './runtime/types.js';
import type { WorkerRow, Workers } from './workers.js';
import { httpStatus, limitsOf, resourcesOf, sandboxClassOf, wakeupProbeOf, workloadOf, type ActorLimits, type ImageResolver } from './workload.js';

const log = logger('local.actors');

const S = pb.ActorState;
export const WORKER_WENT_AWAY = 'worker pod went away while hosting the actor';
const MAX_CRASH_BYTES = 4096;

export function stateName(s: pb.ActorState | undefined): string {
  return pb.actorStateToJSON(s ?? S.ACTOR_STATE_UNSPECIFIED);
}

export function keyOf(atespace: string, name: string): string {
  return `${atespace}/${name}`;
}

export function emptyStatus(): pb.ActorStatus {
  return { state: S.ACTOR_STATE_UNSPECIFIED, inProgressSnapshotUri: '', actorVolumes: [], inProgressLocalSnapshotName: '', assignedNode: '' };
}

function statusOf(a: pb.Actor): pb.ActorStatus {
  return { ...emptyStatus(), ...(a.status ?? {}) };
}

function truncateBytes(s: string, max: number): string {
  const b = Buffer.from(s, 'utf8');
  if (b.length <= max) return s;
  // Cut on a character boundary: decoding a cut multi-byte sequence yields U+FFFD, which is dropped.
  return b.subarray(0, max).toString('utf8').replace(/\uFFFD+$/, '');
}

export interface Running {
  handle: SandboxHandle;
  idx: number;
  /** Digest of the image the sandbox runs, recorded with its snapshots. */
  imageDigest: string;
}

export interface WorkflowOptions {
  stateDir: string;
  db: Database.Database;
  table: ResourceTable<pb.Actor>;
  runtime: Runtime;
  snapshots: SnapshotStore;
  images: ImageResolver;
  api: ControlApi;
  workers: Workers;
  limits: ActorLimits;
  egress: EgressRule[];
  egressFor(atespace: string, name: string): Promise<EgressRule[]>;
  platform: string;
  runscVersion: string;
  emit(a: pb.Actor): void;
}

type Source = { kind: 'boot'; why: string } | { kind: 'external'; dir: string; uri: string } | { kind: 'local'; dir: string; node: string; name: string };

export class ActorWorkflows {
  /** Live sandboxes by actor key; rebuilt at start from what the runtime adopted (see reconcile). */
  readonly running = new Map<string, Running>();
  /** Where an actor's sandbox last died: its next resume goes elsewhere when another worker fits. */
  readonly diedOn = new Map<string, number>();

  constructor(private readonly o: WorkflowOptions) {}

  // ------------------------------------------------------------------ writes

  /** Writes `next` over `prev` (compare-and-set on prev's version) with the version raised. No event. */
  put(prev: pb.Actor, next: pb.Actor): pb.Actor {
    const out: pb.Actor = { ...next, metadata: bumped(prev.metadata!) };
    this.o.table.replace(out, prev.metadata!.version);
    return out;
  }

  /** Runs `fn` in one transaction and announces the actor it returns. */
  commit(fn: () => pb.Actor): pb.Actor {
    const a = this.o.db.transaction(fn)();
    this.o.emit(a);
    return a;
  }

  private setStatus(prev: pb.Actor, s: Partial<pb.ActorStatus>): pb.Actor {
    return this.put(prev, { ...prev, status: { ...statusOf(prev), ...s } });
  }

  // ------------------------------------------------------------------ helpers

  logFileOf(atespace: string, name: string): string {
    return join(this.o.stateDir, 'logs', atespace, `${name}.log`);
  }

  async templateOf(a: pb.Actor): Promise<pb.ActorTemplate> {
    const ref = a.actorTemplate ?? { atespace: '', name: '' };
    try {
      return await this.o.api.getActorTemplate({ actorTemplate: { atespace: ref.atespace, name: ref.name } });
    } catch (e) {
      if (grpcCodeOf(e) === Code.NOT_FOUND) {
        throw failedPrecondition(`ActorTemplate ${ref.atespace}/${ref.name} of Actor ${keyOf(a.metadata!.atespace, a.metadata!.name)} not found`);
      }
      throw e;
    }
  }

  /** True when `uri` is one of this actor's own snapshots (never a tag's or another actor's). */
  isOwnSnapshot(a: pb.Actor, uri: string | undefined): boolean {
    if (!uri) return false;
    const m = a.metadata!;
    const tail = `/atespaces/${m.atespace}/actors/${m.uid}/snapshots/`;
    const at = uri.lastIndexOf(tail);
    return at > 0 && at + tail.length < uri.length && !uri.slice(at + tail.length).includes('/');
  }

  private async removeOwn(a: pb.Actor, uri: string | undefined): Promise<void> {
    if (!uri || !this.isOwnSnapshot(a, uri)) return;
    await this.o.snapshots.remove(uri);
    removePartials(this.o.snapshots.dirOf(uri));
  }

  private contentScopeOf(a: pb.Actor, tpl: pb.ActorTemplate): pb.SnapshotContentScope {
    if (a.metadata!.atespace === GOLDEN_ATESPACE) return pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL;
    const c = tpl.snapshotConfig?.onCommit ?? 0;
    return c === pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_DATA ? c : pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL;
  }

  private storageLocationOf(tpl: pb.ActorTemplate): string {
    const loc = tpl.snapshotConfig?.storageLocation ?? '';
    if (!loc) throw failedPrecondition(`ActorTemplate ${tpl.metadata?.atespace}/${tpl.metadata?.name} has no snapshot_config.storage_location`);
    return loc;
  }

  private async destroySandbox(key: string): Promise<void> {
    const r = this.running.get(key);
    if (!r) return;
    this.running.delete(key);
    await this.o.runtime.destroy(r.handle.sandboxId).catch((e: unknown) => log.warn('could not destroy sandbox', { actor: key, error: e }));
  }

  /**
   * CRASHED with `message` (≤ 4096 bytes): the sandbox destroyed, the worker released (`replaced`: the worker
   * pod went away, so the slot comes back as a new worker). The worker assignment and in-progress snapshot
   * pointers stay for RevertActor and DeleteActor to collect.
   */
  async crash(a: pb.Actor, message: string, opts: { replaced?: boolean } = {}): Promise<pb.Actor> {
    const m = a.metadata!;
    const key = keyOf(m.atespace, m.name);
    const r = this.running.get(key);
    await this.destroySandbox(key);
    const w = this.o.workers.boundTo(m.atespace, m.name);
    const cur = this.o.table.get(m.atespace, m.name) ?? a;
    const done = this.commit(() => {
      if (w) this.o.workers.release(w.idx, { replaced: opts.replaced });
      return this.setStatus(cur, { state: S.ACTOR_STATE_CRASHED, crash: { message: truncateBytes(message, MAX_CRASH_BYTES), crashTime: new Date() } });
    });
    if (r || w) this.diedOn.set(key, (r?.idx ?? w?.idx)!);
    log.warn('actor crashed', { actor: key, reason: done.status!.crash!.message });
    return done;
  }

  /** Crashes the actor and returns the error its call fails with. */
  private async crashWith(a: pb.Actor, message: string, cause: unknown, opts: { replaced?: boolean } = {}): Promise<ApiError> {
    await this.crash(a, message, opts);
    const code = grpcCodeOf(cause) ?? Code.INTERNAL;
    return new ApiError(code === Code.OK ? Code.INTERNAL : code, `actor ${keyOf(a.metadata!.atespace, a.metadata!.name)} crashed: ${truncateBytes(message, MAX_CRASH_BYTES)}`);
  }

  // ------------------------------------------------------------------ resume

  /** SUSPENDED | PAUSED | RESUMING → RUNNING. The caller checked the state. */
  async resume(a: pb.Actor): Promise<pb.Actor> {
    const m = a.metadata!;
    const key = keyOf(m.atespace, m.name);
    const tpl = await this.templateOf(a);
    const s = statusOf(a);
    let source: Source;
    if (s.localSnapshot?.snapshotName) {
      if (!s.assignedNode) throw await this.crashWith(a, "node holding the actor's local snapshot is unknown", failedPrecondition(''));
      source = { kind: 'local', node: s.assignedNode, name: s.localSnapshot.snapshotName, dir: this.o.snapshots.localDirOf(s.assignedNode, s.localSnapshot.snapshotName) };
    } else if (s.externalSnapshot?.snapshotUri) {
      const ext = s.externalSnapshot;
      if (ext.contentScope === pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_DATA) {
        source = { kind: 'boot', why: 'the snapshot holds data only (content scope DATA)' };
      } else if (ext.actorTemplateUid && ext.actorTemplateUid !== tpl.metadata?.uid) {
        source = { kind: 'boot', why: 'the snapshot was taken under another actor template (TemplateReplaced: data only)' };
      } else {
        source = { kind: 'external', uri: ext.snapshotUri, dir: this.o.snapshots.dirOf(ext.snapshotUri) };
      }
    } else {
      source = { kind: 'boot', why: 'no snapshot' };
    }
    // What no start could fix (argv, image) fails before anything changes.
    const spec = await workloadOf(tpl, {
      images: this.o.images,
      limits: this.o.limits,
      egress: [...this.o.egress, ...(await this.o.egressFor(m.atespace, m.name))],
    });
    const limits = limitsOf(tpl, this.o.limits);
    let w!: WorkerRow;
    let cur = this.commit(() => {
      const fresh = this.o.table.get(m.atespace, m.name)!;
      w = this.o.workers.claim(
        {
          sandboxClass: sandboxClassOf(tpl),
          templateSelector: tpl.workerSelector?.matchLabels ?? {},
          actorSelector: fresh.workerSelector?.matchLabels ?? {},
          node: source.kind === 'local' ? source.node : undefined,
          avoid: this.diedOn.get(key),
        },
        { actor: { atespace: m.atespace, name: m.name }, actorUid: m.uid, template: { ...fresh.actorTemplate! }, resources: resourcesOf(limits) },
      );
      return this.setStatus(fresh, { state: S.ACTOR_STATE_RESUMING, workerAssignment: this.o.workers.assignmentOf(w), assignedNode: w.node });
    });
    const slot = this.o.workers.slotOf(w);
    const logFile = this.logFileOf(m.atespace, m.name);
    mkdirSync(dirname(logFile), { recursive: true, mode: 0o700 });
    let handle: SandboxHandle;
    const t0 = performance.now();
    try {
      if (source.kind === 'boot') {
        if (s.externalSnapshot?.snapshotUri) log.info('cold boot instead of restore', { actor: key, why: source.why });
        handle = await this.o.runtime.boot(slot, spec, logFile);
      } else {
        handle = await this.o.runtime.restore(slot, spec, source.dir, logFile);
      }
    } catch (e) {
      throw await this.crashWith(cur, `atelet ${source.kind === 'boot' ? 'Run' : 'Restore'}: ${messageOf(e)}`, e);
    }
    this.running.set(key, { handle, idx: w.idx, imageDigest: spec.imageDigest });
    this.o.workers.setSandbox(w.idx, handle.sandboxId, handle.pid);
    try {
      await this.wakeup(slot, tpl, handle);
    } catch (e) {
      throw await this.crashWith(cur, messageOf(e), e);
    }
    cur = this.o.table.get(m.atespace, m.name)!;
    const done = this.commit(() =>
      this.setStatus(cur, {
        state: S.ACTOR_STATE_RUNNING,
        localSnapshot: undefined,
        inProgressLocalSnapshotName: '',
        crash: undefined,
        assignedNode: w.node,
        workerAssignment: this.o.workers.assignmentOf(w),
      }),
    );
    this.diedOn.delete(key);
    // A pause snapshot is consumed by its resume.
    if (source.kind === 'local') await this.o.snapshots.removeLocal(source.node, source.name).catch(() => undefined);
    log.debug('actor resumed', { actor: key, from: source.kind, worker: w.name, ms: Math.round(performance.now() - t0) });
    return done;
  }

  /**
   * The wakeup gate: every container with a wakeup probe answers 200 within its timeout (default 30 s);
   * without one, the workload must still be running shortly after it started.
   */
  private async wakeup(slot: WorkerSlot, tpl: pb.ActorTemplate, handle: SandboxHandle): Promise<void> {
    const rt = this.o.runtime;
    const probe = wakeupProbeOf(tpl);
    if (!probe) {
      await new Promise((r) => setTimeout(r, 150));
      if (!(await rt.verifyRunning(handle))) throw failedPrecondition('atelet Run: the workload exited right after it started; see its log under the state directory');
      return;
    }
    const started = Date.now();
    const deadline = started + probe.timeoutMs;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      if (!rt.isAlive(handle) || (Date.now() - started > 1000 && !(await rt.verifyRunning(handle)))) {
        throw failedPrecondition(`wakeup probe failed: the workload exited before GET ${probe.path} on port ${probe.port} answered; see its log under the state directory`);
      }
      try {
        const code = await httpStatus(rt, slot, probe.port, probe.path, Math.max(100, Math.min(2_000, deadline - Date.now())));
        if (code === 200) return;
        last = `HTTP ${code}`;
      } catch (e) {
        last = messageOf(e);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new ApiError(
      Code.DEADLINE_EXCEEDED,
      `wakeup probe failed: GET ${probe.path} on port ${probe.port} did not answer 200 within ${probe.timeoutMs / 1000}s (last: ${last})`,
    );
  }

  // ------------------------------------------------------------------ suspend and pause

  /** RUNNING → SUSPENDED with a new actor-owned external snapshot; the previous own one is deleted. */
  async suspendRunning(a: pb.Actor): Promise<pb.Actor> {
    const m = a.metadata!;
    const key = keyOf(m.atespace, m.name);
    const tpl = await this.templateOf(a);
    const run = this.running.get(key);
    const w = this.o.workers.boundTo(m.atespace, m.name);
    if (!run || !w) throw await this.crashWith(a, 'actor has no worker assignment in a state that requires one', aborted(''));
    const uri = this.o.snapshots.actorSnapshotUri(this.storageLocationOf(tpl), m.atespace, m.uid);
    const scope = this.contentScopeOf(a, tpl);
    const prev = statusOf(a).externalSnapshot;
    let cur = this.commit(() => this.setStatus(a, { state: S.ACTOR_STATE_SUSPENDING, inProgressSnapshotUri: uri }));
    await this.checkpoint(cur, run, this.o.snapshots.dirOf(uri), 'Checkpoint');
    await this.o.snapshots.seal(uri);
    this.running.delete(key);
    cur = this.o.table.get(m.atespace, m.name)!;
    const done = this.commit(() => {
      this.o.workers.release(w.idx);
      return this.setStatus(cur, {
        state: S.ACTOR_STATE_SUSPENDED,
        externalSnapshot: { snapshotUri: uri, contentScope: scope, actorTemplateUid: tpl.metadata?.uid ?? '' },
        inProgressSnapshotUri: '',
        workerAssignment: undefined,
        assignedNode: '',
        localSnapshot: undefined,
        inProgressLocalSnapshotName: '',
      });
    });
    if (prev?.snapshotUri !== uri) await this.removeOwn(a, prev?.snapshotUri).catch((e: unknown) => log.warn('could not delete the previous snapshot', { actor: key, error: e }));
    return done;
  }

  /** PAUSED → SUSPENDED: the node-local pause snapshot becomes the new external snapshot (no worker). */
  async suspendPaused(a: pb.Actor): Promise<pb.Actor> {
    const m = a.metadata!;
    const key = keyOf(m.atespace, m.name);
    const s = statusOf(a);
    const tpl = await this.templateOf(a);
    const local = s.localSnapshot?.snapshotName ?? '';
    if (!s.assignedNode) throw await this.crashWith(a, "node holding the actor's local snapshot is unknown", failedPrecondition(''));
    const dir = this.o.snapshots.localDirOf(s.assignedNode, local);
    if (!local || !existsSync(join(dir, 'meta.json'))) {
      throw await this.crashWith(a, `atelet Upload: local snapshot "${local}" is missing on node ${s.assignedNode}`, failedPrecondition(''));
    }
    const uri = this.o.snapshots.actorSnapshotUri(this.storageLocationOf(tpl), m.atespace, m.uid);
    const cur = this.commit(() => this.setStatus(a, { state: S.ACTOR_STATE_SUSPENDING, inProgressSnapshotUri: uri }));
    const dest = this.o.snapshots.dirOf(uri);
    try {
      await moveDir(dir, dest);
      await this.o.snapshots.seal(uri);
    } catch (e) {
      // Nothing lost: the pause snapshot is still whole where it was (or already whole at its new place).
      if (existsSync(join(dir, 'meta.json'))) {
        await rm(dest, { recursive: true, force: true });
        this.commit(() => this.setStatus(this.o.table.get(m.atespace, m.name)!, { state: S.ACTOR_STATE_PAUSED, inProgressSnapshotUri: '' }));
        throw e;
      }
      throw await this.crashWith(cur, `atelet Upload: ${messageOf(e)}`, e);
    }
    const fresh = this.o.table.get(m.atespace, m.name)!;
    const done = this.commit(() =>
      this.setStatus(fresh, {
        state: S.ACTOR_STATE_SUSPENDED,
        externalSnapshot: { snapshotUri: uri, contentScope: this.contentScopeOf(a, tpl), actorTemplateUid: tpl.metadata?.uid ?? '' },
        inProgressSnapshotUri: '',
        localSnapshot: undefined,
        inProgressLocalSnapshotName: '',
        assignedNode: '',
        workerAssignment: undefined,
      }),
    );
    if (s.externalSnapshot?.snapshotUri !== uri) await this.removeOwn(a, s.externalSnapshot?.snapshotUri).catch(() => undefined);
    return done;
  }

  /** RUNNING → PAUSED: a node-local snapshot; status.assigned_node pins the next resume to its node. */
  async pauseRunning(a: pb.Actor): Promise<pb.Actor> {
    const m = a.metadata!;
    const key = keyOf(m.atespace, m.name);
    const run = this.running.get(key);
    const w = this.o.workers.boundTo(m.atespace, m.name);
    if (!run || !w) throw await this.crashWith(a, 'actor has no worker assignment in a state that requires one', aborted(''));
    const name = randomUUID();
    const dir = this.o.snapshots.localDirOf(w.node, name);
    const cur = this.commit(() => this.setStatus(a, { state: S.ACTOR_STATE_PAUSING, inProgressLocalSnapshotName: name }));
    await this.checkpoint(cur, run, dir, 'Pause');
    this.running.delete(key);
    const fresh = this.o.table.get(m.atespace, m.name)!;
    return this.commit(() => {
      this.o.workers.release(w.idx);
      return this.setStatus(fresh, {
        state: S.ACTOR_STATE_PAUSED,
        localSnapshot: { snapshotName: name, contentScope: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL },
        inProgressLocalSnapshotName: '',
        assignedNode: w.node,
        workerAssignment: undefined,
      });
    });
  }

  /**
   * Checkpoints the sandbox into `dir` (whole when this returns). On failure: a sandbox still running keeps
   * running and its actor goes back to RUNNING (the error is thrown); otherwise the actor crashes.
   */
  private async checkpoint(cur: pb.Actor, run: Running, dir: string, op: string): Promise<void> {
    const m = cur.metadata!;
    const key = keyOf(m.atespace, m.name);
    if (!this.o.runtime.isAlive(run.handle)) {
      throw await this.crashWith(cur, WORKER_WENT_AWAY, aborted(''), { replaced: true });
    }
    try {
      await this.o.runtime.checkpoint(run.handle, dir, { imageDigest: run.imageDigest, platform: this.o.platform, runscVersion: this.o.runscVersion });
    } catch (e) {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      removePartials(dir);
      if (this.o.runtime.isAlive(run.handle) && (await this.o.runtime.verifyRunning(run.handle))) {
        const back = this.o.table.get(m.atespace, m.name)!;
        this.commit(() => this.setStatus(back, { state: S.ACTOR_STATE_RUNNING, inProgressSnapshotUri: '', inProgressLocalSnapshotName: '' }));
        log.warn('checkpoint failed; the actor keeps running', { actor: key, error: e });
        throw e;
      }
      throw await this.crashWith(cur, `atelet ${op}: ${messageOf(e)}`, e, { replaced: true });
    }
  }

  // ------------------------------------------------------------------ revert and delete

  /** Destroys the sandbox, frees the worker, drops node-local and unfinished snapshots (never the external one). */
  async releaseAll(a: pb.Actor): Promise<void> {
    const m = a.metadata!;
    const s = statusOf(a);
    await this.destroySandbox(keyOf(m.atespace, m.name));
    const w = this.o.workers.boundTo(m.atespace, m.name);
    if (w) {
      if (w.sandboxId) await this.o.runtime.destroy(w.sandboxId).catch(() => undefined);
      this.o.workers.release(w.idx);
    }
    const node = s.assignedNode || s.workerAssignment?.nodeName || '';
    if (node && s.localSnapshot?.snapshotName) await this.o.snapshots.removeLocal(node, s.localSnapshot.snapshotName);
    if (node && s.inProgressLocalSnapshotName) {
      await this.o.snapshots.removeLocal(node, s.inProgressLocalSnapshotName);
      removePartials(this.o.snapshots.localDirOf(node, s.inProgressLocalSnapshotName));
    }
    if (s.inProgressSnapshotUri && s.inProgressSnapshotUri !== s.externalSnapshot?.snapshotUri) await this.removeOwn(a, s.inProgressSnapshotUri);
  }

  /** → REVERTING → SUSPENDED at the last external snapshot, crash and worker assignment cleared. */
  async revert(a: pb.Actor): Promise<pb.Actor> {
    const m = a.metadata!;
    const cur = statusOf(a).state === S.ACTOR_STATE_REVERTING ? a : this.commit(() => this.setStatus(a, { state: S.ACTOR_STATE_REVERTING }));
    await this.releaseAll(cur);
    const fresh = this.o.table.get(m.atespace, m.name)!;
    return this.commit(() =>
      this.setStatus(fresh, {
        state: S.ACTOR_STATE_SUSPENDED,
        crash: undefined,
        workerAssignment: undefined,
        assignedNode: '',
        localSnapshot: undefined,
        inProgressLocalSnapshotName: '',
        inProgressSnapshotUri: '',
      }),
    );
  }

  /** → DELETING, then everything the actor owns goes (sandbox, worker, own snapshots, log); the row last. */
  async deleteOwned(a: pb.Actor): Promise<pb.Actor> {
    const m = a.metadata!;
    const cur = statusOf(a).state === S.ACTOR_STATE_DELETING ? a : this.commit(() => this.setStatus(a, { state: S.ACTOR_STATE_DELETING }));
    await this.releaseAll(cur);
    await this.removeOwn(cur, statusOf(cur).externalSnapshot?.snapshotUri);
    try {
      await this.o.api.deleteActorEgressPolicy({ actor: { atespace: m.atespace, name: m.name } });
    } catch (e) {
      if (grpcCodeOf(e) !== Code.NOT_FOUND) throw e;
    }
    for (const f of [this.logFileOf(m.atespace, m.name), `${this.logFileOf(m.atespace, m.name)}.1`]) rmSync(f, { force: true });
    this.o.table.remove(m.atespace, m.name, cur.metadata!.version);
    this.running.delete(keyOf(m.atespace, m.name));
    this.diedOn.delete(keyOf(m.atespace, m.name));
    return cur;
  }

  // ------------------------------------------------------------------ after a restart

  /**
   * After the previous run of this instance stopped (cleanly or by kill -9): a RUNNING actor whose sandbox is
   * still alive is adopted as it is, memory intact. Every other intermediate state is settled from what is
   * durably on disk (a snapshot directory with meta.json is whole): SUSPENDING/PAUSING finish when their
   * snapshot is whole, else go back to RUNNING (sandbox alive) or CRASHED; RESUMING goes back to
   * SUSPENDED/PAUSED; REVERTING finishes; RUNNING without a sandbox is CRASHED ("worker pod went away while
   * hosting the actor"); DELETING keeps waiting for its retry, its sandbox and worker released.
   */
  async reconcile(): Promise<void> {
    const live = new Map<string, Running>();
    const byKey = new Map(this.o.table.all().map((a) => [keyOf(a.metadata!.atespace, a.metadata!.name), a] as const));
    for (const w of this.o.workers.rows()) {
      if (!w.actorName) continue;
      const key = keyOf(w.actorAtespace, w.actorName);
      const a = byKey.get(key);
      const got = w.sandboxId ? this.o.runtime.adopted(w.sandboxId) : undefined;
      if (a && a.metadata!.uid === w.actorUid && got && got.handle.worker.index === w.idx) {
        live.set(key, { handle: got.handle, idx: w.idx, imageDigest: got.imageDigest });
        continue;
      }
      if (w.sandboxId) await this.o.runtime.destroy(w.sandboxId).catch(() => undefined);
      if (!a || a.metadata!.uid !== w.actorUid) this.o.workers.release(w.idx);
    }
    for (const a of byKey.values()) {
      const key = keyOf(a.metadata!.atespace, a.metadata!.name);
      try {
        await this.settle(a, live.get(key));
      } catch (e) {
        log.warn('could not settle actor left by a previous run', { actor: key, error: e });
      }
    }
    // Sandboxes the runtime adopted that no actor keeps are leftovers.
    const kept = new Set([...this.running.values()].map((r) => r.handle.sandboxId));
    for (const r of live.values()) if (!kept.has(r.handle.sandboxId)) await this.o.runtime.destroy(r.handle.sandboxId).catch(() => undefined);
    for (const s of await this.o.runtime.list().catch(() => [])) {
      if (this.o.runtime.adopted(s.sandboxId) && !kept.has(s.sandboxId)) await this.o.runtime.destroy(s.sandboxId).catch(() => undefined);
    }
  }

  private async settle(a: pb.Actor, alive: Running | undefined): Promise<void> {
    const m = a.metadata!;
    const key = keyOf(m.atespace, m.name);
    const s = statusOf(a);
    const adopt = () => {
      this.running.set(key, alive!);
      log.info('adopted running actor left by a previous run', { actor: key, pid: alive!.handle.pid });
    };
    const releaseWorker = () => {
      const w = this.o.workers.boundTo(m.atespace, m.name);
      if (w) this.o.workers.release(w.idx);
    };
    const from = stateName(s.state);
    let next: pb.Actor | undefined;
    switch (s.state) {
      case S.ACTOR_STATE_SUSPENDED:
      case S.ACTOR_STATE_PAUSED:
      case S.ACTOR_STATE_CRASHED:
        this.o.db.transaction(releaseWorker)();
        return;
      case S.ACTOR_STATE_RUNNING:
        if (alive) return adopt();
        next = await this.crash(a, WORKER_WENT_AWAY, { replaced: true });
        break;
      case S.ACTOR_STATE_RESUMING:
        next = this.commit(() => {
          releaseWorker();
          const paused = !!s.localSnapshot?.snapshotName;
          return this.setStatus(a, { state: paused ? S.ACTOR_STATE_PAUSED : S.ACTOR_STATE_SUSPENDED, workerAssignment: undefined, assignedNode: paused ? s.assignedNode : '' });
        });
        break;
      case S.ACTOR_STATE_SUSPENDING: {
        const uri = s.inProgressSnapshotUri;
        const dir = uri ? this.o.snapshots.dirOf(uri) : '';
        if (dir && existsSync(join(dir, 'meta.json'))) {
          await this.o.snapshots.seal(uri);
          const tpl = await this.templateOf(a).catch(() => undefined);
          next = this.commit(() => {
            releaseWorker();
            return this.setStatus(a, {
              state: S.ACTOR_STATE_SUSPENDED,
              externalSnapshot: {
                snapshotUri: uri,
                contentScope: tpl ? this.contentScopeOf(a, tpl) : pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL,
                actorTemplateUid: tpl?.metadata?.uid ?? s.externalSnapshot?.actorTemplateUid ?? '',
              },
              inProgressSnapshotUri: '',
              localSnapshot: undefined,
              assignedNode: '',
              workerAssignment: undefined,
            });
          });
          if (s.externalSnapshot?.snapshotUri !== uri) await this.removeOwn(a, s.externalSnapshot?.snapshotUri).catch(() => undefined);
          if (s.localSnapshot?.snapshotName && s.assignedNode) await this.o.snapshots.removeLocal(s.assignedNode, s.localSnapshot.snapshotName);
          break;
        }
        if (dir) {
          await rm(dir, { recursive: true, force: true });
          removePartials(dir);
        }
        const localDir = s.localSnapshot?.snapshotName && s.assignedNode ? this.o.snapshots.localDirOf(s.assignedNode, s.localSnapshot.snapshotName) : '';
        if (alive) {
          adopt();
          next = this.commit(() => this.setStatus(a, { state: S.ACTOR_STATE_RUNNING, inProgressSnapshotUri: '' }));
        } else if (localDir && existsSync(join(localDir, 'meta.json'))) {
          next = this.commit(() => {
            releaseWorker();
            return this.setStatus(a, { state: S.ACTOR_STATE_PAUSED, inProgressSnapshotUri: '' });
          });
        } else {
          next = await this.crash(a, WORKER_WENT_AWAY, { replaced: true });
        }
        break;
      }
      case S.ACTOR_STATE_PAUSING: {
        const name = s.inProgressLocalSnapshotName;
        const node = s.workerAssignment?.nodeName || s.assignedNode;
        const dir = name && node ? this.o.snapshots.localDirOf(node, name) : '';
        if (dir && existsSync(join(dir, 'meta.json'))) {
          next = this.commit(() => {
            releaseWorker();
            return this.setStatus(a, {
              state: S.ACTOR_STATE_PAUSED,
              localSnapshot: { snapshotName: name, contentScope: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL },
              inProgressLocalSnapshotName: '',
              assignedNode: node,
              workerAssignment: undefined,
            });
          });
          break;
        }
        if (dir) {
          await rm(dir, { recursive: true, force: true });
          removePartials(dir);
        }
        if (alive) {
          adopt();
          next = this.commit(() => this.setStatus(a, { state: S.ACTOR_STATE_RUNNING, inProgressLocalSnapshotName: '' }));
        } else {
          next = await this.crash(a, WORKER_WENT_AWAY, { replaced: true });
        }
        break;
      }
      case S.ACTOR_STATE_REVERTING:
        next = await this.revert(a);
        break;
      case S.ACTOR_STATE_DELETING:
        await this.releaseAll(a);
        return;
      default:
        return;
    }
    if (next) log.info('settled actor left by a previous run', { actor: key, from, to: stateName(next.status?.state) });
  }
}

/** Removes what an interrupted checkpoint or copy left next to its destination (`<dir>.tmp-*`). */
export function removePartials(dir: string): void {
  const parent = dirname(dir);
  if (!existsSync(parent)) return;
  for (const e of readdirSync(parent)) {
    if (e.startsWith(`${basename(dir)}.tmp-`)) rmSync(join(parent, e), { recursive: true, force: true });
  }
}

/** Moves a snapshot directory (rename; copy then remove across filesystems), atomically at the destination. */
async function moveDir(from: string, to: string): Promise<void> {
  await mkdir(dirname(to), { recursive: true, mode: 0o700 });
  await rm(to, { recursive: true, force: true });
  try {
    await rename(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    const tmp = `${to}.tmp-${process.pid}-${Date.now()}`;
    await cp(from, tmp, { recursive: true });
    await rename(tmp, to);
    await rm(from, { recursive: true, force: true });
  }
}
