// The actor RPCs of the local Substrate's Control API on the v0.4 wire (src/gen/ateapi.ts): validation in
// upstream's field-error shapes, upstream's codes and messages (substrate-v0.4.md §5), one workflow at a time
// per actor (a lock keyed by atespace/name: ABORTED "another operation is in progress for this actor"), the
// death monitor (a RUNNING actor whose sandbox died becomes CRASHED), adoption of sandboxes that outlived a
// kill -9 of the local Substrate, and a clean stop that suspends what runs. The workflows themselves are in
// src/local/actor-workflows.ts; workers and placement in src/local/workers.ts.
//
// Sibling modules (atespaces, templates, tags, egress) are reached only through the ControlApi facade.
import { closeSync, openSync, readSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import type Database from 'better-sqlite3';
import * as pb from '../gen/ateapi.js';
import { ApiError, Code, aborted, alreadyExists, failedPrecondition, grpcCodeOf, notFound, unavailable } from '../common/errors.js';
import { logger } from '../common/log.js';
import { GOLDEN_ATESPACE, type ControlApi } from './api.js';
import { checkDeleteOptions, checkShortName, checkUpdatePreconditions, decodePageToken, invalidValue, newMetadata, pageSizeOf, required } from './meta.js';
import type { SnapshotStore } from './snapshots.js';
import { ResourceTable } from './table.js';
import type { EgressRule, Runtime, SandboxHandle } from './runtime/types.js';
import { checkLabels, type Workers } from './workers.js';
import { ActorWorkflows, WORKER_WENT_AWAY, emptyStatus, keyOf, stateName } from './actor-workflows.js';
import { instanceLimits, type ActorLimits, type ImageResolver } from './workload.js';

export { DEFAULT_ACTOR_LIMITS, type ActorLimits, type ImageResolver } from './workload.js';

const log = logger('local.actors');
const S = pb.ActorState;
/** Server-side cap of every RPC (upstream's maxRPCDeadline). */
const MAX_WORKFLOW_MS = 10 * 60_000;
const MAX_SELECTOR_LABELS = 10;

export interface ActorsOptions {
  stateDir: string;
  /** WAL + synchronous=FULL, shared with Workers (bindings and actors are written in one transaction). */
  db: Database.Database;
  runtime: Runtime;
  snapshots: SnapshotStore;
  images: ImageResolver;
  /** The composed Control facade: getAtespace, getActorTemplate, getTag, deleteActorEgressPolicy are used. */
  api: ControlApi;
  workers: Workers;
  /** Per-actor ceilings (defaults: DEFAULT_ACTOR_LIMITS) a template's cpu/memory limits may only lower. */
  limits?: Partial<ActorLimits>;
  /** Egress allowed to every actor. */
  egress?: EgressRule[];
  /** The actor's own egress allowances (its EgressPolicy as the runtime enforces it); default none. */
  egressFor?: (atespace: string, name: string) => Promise<EgressRule[]>;
  /** gVisor platform recorded with checkpoints (the runtime's); default 'ptrace'. */
  platform?: string;
  /** runsc version recorded with checkpoints; default '' (the runtime's own). */
  runscVersion?: string;
}

export type ActorEvent = { type: 'changed'; actor: pb.Actor } | { type: 'deleted'; actor: pb.Actor };

function refOf(path: string, ref: pb.ObjectRef | undefined): { atespace: string; name: string } {
  if (!ref) throw required(path);
  return { atespace: checkShortName(`${path}.atespace`, ref.atespace), name: checkShortName(`${path}.name`, ref.name) };
}

function sameRef(a: pb.ObjectRef | undefined, b: pb.ObjectRef | undefined): boolean {
  return (a?.atespace ?? '') === (b?.atespace ?? '') && (a?.name ?? '') === (b?.name ?? '');
}

function selectorOf(path: string, sel: pb.Selector | undefined): pb.Selector | undefined {
  const labels = checkLabels(`${path}.match_labels`, sel?.matchLabels ?? {}, MAX_SELECTOR_LABELS);
  return Object.keys(labels).length ? { matchLabels: labels } : undefined;
}

const stateOf = (a: pb.Actor) => a.status?.state ?? S.ACTOR_STATE_UNSPECIFIED;

export class Actors {
  private readonly table: ResourceTable<pb.Actor>;
  private readonly wf: ActorWorkflows;
  private readonly locks = new Set<string>();
  private readonly listeners = new Set<(e: ActorEvent) => void>();
  private readonly inflight = new Map<string, Promise<pb.Actor>>();
  private readonly limits: ActorLimits;
  private monitor: NodeJS.Timeout | undefined;
  private closing = false;

  constructor(private readonly opts: ActorsOptions) {
    this.table = new ResourceTable<pb.Actor>(opts.db, 'actors', pb.Actor);
    this.limits = instanceLimits(opts.limits);
    this.wf = new ActorWorkflows({
      stateDir: opts.stateDir,
      db: opts.db,
      table: this.table,
      runtime: opts.runtime,
      snapshots: opts.snapshots,
      images: opts.images,
      api: opts.api,
      workers: opts.workers,
      limits: this.limits,
      egress: opts.egress ?? [],
      egressFor: opts.egressFor ?? (async () => []),
      platform: opts.platform ?? 'ptrace',
      runscVersion: opts.runscVersion ?? '',
      emit: (a) => this.emit({ type: 'changed', actor: a }),
    });
  }

  onActorChange(fn: (e: ActorEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(e: ActorEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        log.warn('actor listener failed', { error: err });
      }
    }
  }

  // ------------------------------------------------------------------ start-up, shutdown, the death monitor

  /** Initialises the runtime, creates and prepares worker slots, settles what a previous run left, starts the monitor. */
  async start(): Promise<void> {
    await this.opts.runtime.init();
    await this.opts.workers.start();
    await this.wf.reconcile();
    this.monitor = setInterval(() => void this.tick(), 500);
    this.monitor.unref();
  }

  /** Lets running workflows finish, suspends every running actor (nothing is lost), shuts the runtime down. */
  async stop(): Promise<void> {
    this.closing = true;
    if (this.monitor) clearInterval(this.monitor);
    for (let i = 0; i < 600 && this.locks.size > 0; i++) await new Promise((r) => setTimeout(r, 50));
    for (const key of [...this.wf.running.keys()]) {
      const held = this.locks.has(key);
      if (!held) this.locks.add(key);
      try {
        const [atespace, name] = splitKey(key);
        const a = this.table.get(atespace, name);
        if (a && stateOf(a) === S.ACTOR_STATE_RUNNING) await this.wf.suspendRunning(a);
      } catch (e) {
        log.warn('could not suspend actor at shutdown; it is CRASHED and falls back to its last snapshot on RevertActor', { actor: key, error: e });
        const [atespace, name] = splitKey(key);
        const a = this.table.get(atespace, name);
        if (a && this.wf.running.has(key)) await this.wf.crash(a, WORKER_WENT_AWAY, { replaced: true }).catch(() => undefined);
      } finally {
        if (!held) this.locks.delete(key);
      }
    }
    await this.opts.runtime.shutdown();
  }

  private async tick(): Promise<void> {
    this.rotateLogs();
    for (const [key, r] of [...this.wf.running.entries()]) {
      if (this.locks.has(key) || this.opts.runtime.isAlive(r.handle)) continue;
      await this.crashDead(key).catch((e: unknown) => log.warn('could not record a dead sandbox', { actor: key, error: e }));
    }
  }

  /** A RUNNING actor whose sandbox is gone: CRASHED, "worker pod went away while hosting the actor". */
  private async crashDead(key: string): Promise<void> {
    if (this.locks.has(key)) return;
    this.locks.add(key);
    try {
      const r = this.wf.running.get(key);
      if (!r || this.opts.runtime.isAlive(r.handle)) return;
      const [atespace, name] = splitKey(key);
      const a = this.table.get(atespace, name);
      if (!a) {
        this.wf.running.delete(key);
        return;
      }
      log.warn('worker sandbox died while hosting the actor', { actor: key, pid: r.handle.pid });
      await this.wf.crash(a, WORKER_WENT_AWAY, { replaced: true });
    } finally {
      this.locks.delete(key);
    }
  }

  /** A workload log past its limit keeps its last `logBytes` as `<log>.1` and starts over. */
  private rotateLogs(): void {
    const max = this.limits.logBytes;
    for (const key of this.wf.running.keys()) {
      const [atespace, name] = splitKey(key);
      const file = this.wf.logFileOf(atespace, name);
      try {
        const size = statSync(file).size;
        if (size <= max) continue;
        const fd = openSync(file, 'r');
        try {
          const keep = Buffer.alloc(Math.min(max, size));
          const n = readSync(fd, keep, 0, keep.length, size - keep.length);
          writeFileSync(`${file}.1`, keep.subarray(0, n), { mode: 0o600 });
        } finally {
          closeSync(fd);
        }
        truncateSync(file, 0);
      } catch {
        // no log yet, or it went away with its actor
      }
    }
  }

  // ------------------------------------------------------------------ for the router and operators

  /**
   * The router's resume: a sandbox that died before the monitor noticed is recorded first (the actor is
   * CRASHED and the resume refused, as upstream). Concurrent calls for one actor share one resume.
   */
  async resumeForRequest(atespace: string, name: string): Promise<pb.Actor> {
    const key = keyOf(atespace, name);
    const r = this.wf.running.get(key);
    if (r && !this.opts.runtime.isAlive(r.handle)) await this.crashDead(key);
    let p = this.inflight.get(key);
    if (!p) {
      p = this.resumeActor({ actor: { atespace, name } })
        .then((res) => res.actor!)
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  /** The sandbox of a running actor (the router connects through it). */
  sandboxOf(atespace: string, name: string): SandboxHandle | null {
    return this.wf.running.get(keyOf(atespace, name))?.handle ?? null;
  }

  // ------------------------------------------------------------------ locks

  private async withLock<T>(atespace: string, name: string, fn: () => Promise<T>): Promise<T> {
    if (this.closing) throw unavailable('the local Substrate is shutting down; retry once it is back');
    const key = keyOf(atespace, name);
    if (this.locks.has(key)) throw aborted('another operation is in progress for this actor');
    this.locks.add(key);
    // The lock belongs to the workflow, not to the caller: a caller that stops waiting gets its error, but the
    // actor stays locked until the workflow itself has finished.
    const work = (async () => fn())().finally(() => this.locks.delete(key));
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        work,
        new Promise<T>((_, reject) => {
          timer = setTimeout(() => reject(new ApiError(Code.DEADLINE_EXCEEDED, 'context deadline exceeded')), MAX_WORKFLOW_MS);
        }),
      ]);
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  private mustGet(atespace: string, name: string): pb.Actor {
    const a = this.table.get(atespace, name);
    if (!a) throw notFound(`Actor ${keyOf(atespace, name)} not found`);
    return a;
  }

  // ------------------------------------------------------------------ create, get, update, list

  async createActor(r: pb.CreateActorRequest): Promise<pb.Actor> {
    const given = r.actor;
    if (!given) throw required('actor');
    if (!given.metadata) throw required('actor.metadata');
    const atespace = checkShortName('actor.metadata.atespace', given.metadata.atespace);
    const name = checkShortName('actor.metadata.name', given.metadata.name);
    const tref = refOf('actor.actor_template', given.actorTemplate);
    const workerSelector = selectorOf('actor.worker_selector', given.workerSelector);
    const sref = given.sourceTag && (given.sourceTag.atespace || given.sourceTag.name) ? refOf('actor.source_tag', given.sourceTag) : undefined;
    // A template of another atespace is allowed, as upstream's CreateActor allows it (no such check in v0.4.0's
    // controlapi); golden actors in ate-golden always use one.
    await this.opts.api.getAtespace({ atespace: { atespace: '', name: atespace } });
    if (this.table.get(atespace, name)) throw alreadyExists(`Actor ${keyOf(atespace, name)} already exists`);
    const tpl = await this.opts.api.getActorTemplate({ actorTemplate: tref });
    const externalSnapshot = sref ? await this.sourceTagSnapshot(atespace, sref, tpl) : await this.goldenSnapshot(tpl);
    const a: pb.Actor = {
      metadata: newMetadata(atespace, name),
      actorTemplate: { atespace: tref.atespace, name: tref.name },
      workerSelector,
      sourceTag: sref ? { atespace: sref.atespace, name: sref.name } : undefined,
      status: { ...emptyStatus(), state: S.ACTOR_STATE_SUSPENDED, externalSnapshot },
    };
    if (!this.table.insert(a)) throw alreadyExists(`Actor ${keyOf(atespace, name)} already exists`);
    const stored = this.table.get(atespace, name)!;
    this.emit({ type: 'changed', actor: stored });
    return stored;
  }

  /** The snapshot of an explicit source tag (borrowed: the tag keeps owning it). */
  private async sourceTagSnapshot(atespace: string, ref: { atespace: string; name: string }, tpl: pb.ActorTemplate): Promise<pb.ExternalSnapshot> {
    const tag = await this.opts.api.getTag({ tag: ref });
    const tname = keyOf(ref.atespace, ref.name);
    if ((tag.metadata?.atespace ?? ref.atespace) !== atespace && tag.scope !== pb.TagScope.TAG_SCOPE_PUBLISHED) {
      throw failedPrecondition(`Tag ${tname} is not published and belongs to another atespace than the actor's ("${atespace}")`);
    }
    const snap = tag.status?.snapshot;
    if (!snap?.snapshotUri) throw failedPrecondition(`Tag ${tname} has no snapshot`);
    const tplUid = tpl.metadata?.uid ?? '';
    const tagTplUid = tag.status?.actorTemplateUid || snap.actorTemplateUid;
    if (tagTplUid !== tplUid) {
      throw failedPrecondition(
        `Tag ${tname} holds a snapshot of actor template uid ${JSON.stringify(tagTplUid)}, not of ActorTemplate ${tpl.metadata?.atespace}/${tpl.metadata?.name} (uid ${JSON.stringify(tplUid)})`,
      );
    }
    return { snapshotUri: snap.snapshotUri, contentScope: snap.contentScope, actorTemplateUid: tagTplUid };
  }

  /** The template's golden snapshot as it is now ("frozen" into the actor); none (cold boot) when not ready. */
  private async goldenSnapshot(tpl: pb.ActorTemplate): Promise<pb.ExternalSnapshot | undefined> {
    const ref = tpl.status?.goldenSnapshotStatus?.goldenTag;
    if (!ref?.name) return undefined;
    let tag: pb.Tag;
    try {
      tag = await this.opts.api.getTag({ tag: { atespace: ref.atespace, name: ref.name } });
    } catch (e) {
      if (grpcCodeOf(e) === Code.NOT_FOUND) return undefined;
      throw e;
    }
    const snap = tag.status?.snapshot;
    if (!snap?.snapshotUri) return undefined;
    const scope = snap.contentScope;
    if (scope !== pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL && scope !== pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_UNSPECIFIED) {
      throw failedPrecondition(
        `ActorTemplate golden snapshot ${JSON.stringify(snap.snapshotUri)} was taken with scope ${pb.snapshotContentScopeToJSON(scope)}, not Full; regenerate the golden snapshot`,
      );
    }
    return { snapshotUri: snap.snapshotUri, contentScope: scope, actorTemplateUid: tag.status?.actorTemplateUid || tpl.metadata?.uid || '' };
  }

  async getActor(r: pb.GetActorRequest): Promise<pb.Actor> {
    const { atespace, name } = refOf('actor', r.actor);
    return this.mustGet(atespace, name);
  }

  async updateActor(r: pb.UpdateActorRequest): Promise<pb.Actor> {
    const given = r.actor;
    if (!given) throw required('actor');
    if (!given.metadata) throw required('actor.metadata');
    const atespace = checkShortName('actor.metadata.atespace', given.metadata.atespace);
    const name = checkShortName('actor.metadata.name', given.metadata.name);
    const workerSelector = selectorOf('actor.worker_selector', given.workerSelector);
    const tref = refOf('actor.actor_template', given.actorTemplate);
    return this.withLock(atespace, name, async () => {
      const stored = this.mustGet(atespace, name);
      checkUpdatePreconditions('actor', stored.metadata!, given.metadata);
      const givenTag = given.sourceTag && (given.sourceTag.atespace || given.sourceTag.name) ? given.sourceTag : undefined;
      if (!sameRef(givenTag, stored.sourceTag)) throw invalidValue('actor.source_tag', givenTag ?? null, 'field is immutable');
      if (!sameRef(tref, stored.actorTemplate)) await this.checkRepoint(stored, tref);
      const next: pb.Actor = { ...stored, workerSelector, actorTemplate: { atespace: tref.atespace, name: tref.name } };
      return this.wf.commit(() => this.wf.put(stored, next));
    });
  }

  /** UpdateActor to another template: only while SUSPENDED, and only to one the actor's snapshots fit. */
  private async checkRepoint(a: pb.Actor, tref: { atespace: string; name: string }): Promise<void> {
    const st = stateOf(a);
    if (st !== S.ACTOR_STATE_SUSPENDED) {
      throw failedPrecondition(`actor must be ${stateName(S.ACTOR_STATE_SUSPENDED)} to change its actor template (got: ${stateName(st)})`);
    }
    const next = await this.opts.api.getActorTemplate({ actorTemplate: tref });
    let cur: pb.ActorTemplate | undefined;
    try {
      cur = await this.opts.api.getActorTemplate({ actorTemplate: a.actorTemplate! });
    } catch (e) {
      if (grpcCodeOf(e) !== Code.NOT_FOUND) throw e; // the current template is gone: nothing to compare with
    }
    if (!cur) return;
    const sc = (t: pb.ActorTemplate) => ({ name: t.sandboxConfig?.configName ?? '', cls: pb.sandboxClassToJSON(t.sandboxConfig?.sandboxClass ?? 0) });
    const [c, n] = [sc(cur), sc(next)];
    if (c.name !== n.name || c.cls !== n.cls) {
      throw failedPrecondition(
        `the current actor template names SandboxConfig ${JSON.stringify(c.name)} (class ${c.cls}) but the new one names ${JSON.stringify(n.name)} (class ${n.cls}); the sandbox config must be identical to repoint an actor`,
      );
    }
    const vols = (t: pb.ActorTemplate) =>
      JSON.stringify([t.volumes.map((v) => pb.Volume.toJSON(v)), t.containers.map((x) => x.volumeMounts.map((m) => pb.VolumeMount.toJSON(m)))]);
    if (vols(cur) !== vols(next)) {
      throw failedPrecondition('the current actor template and the new one declare different volumes or volume mounts; they must be identical to repoint an actor');
    }
    const own = a.status?.externalSnapshot?.snapshotUri;
    const loc = (t: pb.ActorTemplate) => (t.snapshotConfig?.storageLocation ?? '').replace(/\/+$/, '');
    if (own && this.wf.isOwnSnapshot(a, own) && loc(cur) !== loc(next)) {
      throw failedPrecondition(
        `the actor owns a snapshot in storage location ${JSON.stringify(loc(cur))}; the new actor template's storage location ${JSON.stringify(loc(next))} must be the same to repoint an actor`,
      );
    }
  }

  async listActors(r: pb.ListActorsRequest): Promise<pb.ListActorsResponse> {
    if (r.atespace) checkShortName('atespace', r.atespace);
    // Checked with the request's own field paths first; the table then pages with the same values.
    pageSizeOf('page_size', r.pageSize);
    decodePageToken('page_token', 'actors', r.pageToken);
    const page = this.table.page('request', r.atespace || undefined, r.pageSize, r.pageToken);
    return { actors: page.items, nextPageToken: page.nextPageToken };
  }

  // ------------------------------------------------------------------ the workflows

  async resumeActor(r: pb.ResumeActorRequest): Promise<pb.ResumeActorResponse> {
    const { atespace, name } = refOf('actor', r.actor);
    // Resume of a RUNNING actor is a no-op that takes no lock (as upstream: no lease taken).
    const first = this.mustGet(atespace, name);
    if (stateOf(first) === S.ACTOR_STATE_RUNNING && this.wf.running.has(keyOf(atespace, name))) return { actor: first, resumed: false };
    return this.withLock(atespace, name, async () => {
      const a = this.mustGet(atespace, name);
      const st = stateOf(a);
      if (st === S.ACTOR_STATE_RUNNING) return { actor: a, resumed: false };
      if (st !== S.ACTOR_STATE_SUSPENDED && st !== S.ACTOR_STATE_PAUSED && st !== S.ACTOR_STATE_RESUMING) {
        throw failedPrecondition(
          `AssignWorker prerequisite not met for Actor: ${keyOf(atespace, name)} (got: ${stateName(st)}, want ${stateName(S.ACTOR_STATE_SUSPENDED)} or ${stateName(S.ACTOR_STATE_PAUSED)})`,
        );
      }
      return { actor: await this.wf.resume(a), resumed: true };
    });
  }

  async suspendActor(r: pb.SuspendActorRequest): Promise<pb.SuspendActorResponse> {
    const { atespace, name } = refOf('actor', r.actor);
    return this.withLock(atespace, name, async () => {
      const a = this.mustGet(atespace, name);
      const st = stateOf(a);
      const key = keyOf(atespace, name);
      if (st === S.ACTOR_STATE_SUSPENDED) return { actor: a };
      if (st === S.ACTOR_STATE_RUNNING) return { actor: await this.wf.suspendRunning(a) };
      if (st === S.ACTOR_STATE_PAUSED) return { actor: await this.wf.suspendPaused(a) };
      if (st === S.ACTOR_STATE_SUSPENDING) {
        // Re-entry (only reachable if a previous run could not settle it): finish from what is there.
        if (this.wf.running.has(key)) return { actor: await this.wf.suspendRunning(a) };
        if (a.status?.localSnapshot?.snapshotName) return { actor: await this.wf.suspendPaused(a) };
        await this.wf.crash(a, 'actor has no worker assignment in a state that requires one');
        throw aborted(`actor ${key} crashed`);
      }
      throw failedPrecondition(
        `MarkSuspending prerequisite not met for Actor: ${key} (got: ${stateName(st)}, want ${stateName(S.ACTOR_STATE_RUNNING)} or ${stateName(S.ACTOR_STATE_PAUSED)})`,
      );
    });
  }

  async pauseActor(r: pb.PauseActorRequest): Promise<pb.PauseActorResponse> {
    const { atespace, name } = refOf('actor', r.actor);
    return this.withLock(atespace, name, async () => {
      const a = this.mustGet(atespace, name);
      const st = stateOf(a);
      if (st === S.ACTOR_STATE_PAUSED) return { actor: a };
      if (atespace === GOLDEN_ATESPACE) throw failedPrecondition(`actors in atespace ${JSON.stringify(GOLDEN_ATESPACE)} are golden actors, which cannot be paused`);
      if (st === S.ACTOR_STATE_RUNNING || (st === S.ACTOR_STATE_PAUSING && this.wf.running.has(keyOf(atespace, name)))) {
        return { actor: await this.wf.pauseRunning(a) };
      }
      throw failedPrecondition(`MarkPausing prerequisite not met for Actor: ${keyOf(atespace, name)} (got: ${stateName(st)}, want ${stateName(S.ACTOR_STATE_RUNNING)})`);
    });
  }

  async revertActor(r: pb.RevertActorRequest): Promise<pb.RevertActorResponse> {
    const { atespace, name } = refOf('actor', r.actor);
    return this.withLock(atespace, name, async () => {
      const a = this.mustGet(atespace, name);
      const st = stateOf(a);
      const ok = [S.ACTOR_STATE_RUNNING, S.ACTOR_STATE_PAUSED, S.ACTOR_STATE_CRASHED, S.ACTOR_STATE_REVERTING];
      if (!ok.includes(st)) {
        throw failedPrecondition(`Actor ${keyOf(atespace, name)} is not in a revertable state (got: ${stateName(st)}, want one of [${ok.map(stateName).join(' ')}])`);
      }
      return { actor: await this.wf.revert(a) };
    });
  }

  async deleteActor(r: pb.DeleteActorRequest): Promise<pb.Actor> {
    const { atespace, name } = refOf('actor', r.actor);
    return this.withLock(atespace, name, async () => {
      const a = this.mustGet(atespace, name);
      const key = keyOf(atespace, name);
      checkDeleteOptions(`Actor ${key}`, a.metadata!, r.options);
      const st = stateOf(a);
      if (!r.anyState && st !== S.ACTOR_STATE_SUSPENDED && st !== S.ACTOR_STATE_CRASHED && st !== S.ACTOR_STATE_DELETING) {
        throw failedPrecondition(`Actor ${key} is not in a deletable state (state: ${stateName(st)})`);
      }
      const gone = await this.wf.deleteOwned(a);
      this.emit({ type: 'deleted', actor: gone });
      return gone;
    });
  }
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf('/');
  return [key.slice(0, i), key.slice(i + 1)];
}

