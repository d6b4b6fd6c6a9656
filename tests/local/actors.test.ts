// The actor state machine of the local Substrate (src/local/actors.ts, actor-workflows.ts) on the v0.4 wire,
// against real gVisor (runsc checkpoint/restore), SQLite and the snapshot store. The sibling modules the actors
// reach through the ControlApi facade (atespaces, templates, tags, egress: src/local/atespaces.ts,
// templates.ts, tags.ts, egress.ts, written in parallel) are stood in for by `standIn()` below: plain maps that
// answer GetAtespace, GetActorTemplate, GetTag and DeleteActorEgressPolicy as those modules do.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import * as pb from '../../src/gen/ateapi.js';
import { ApiError, notFound } from '../../src/common/errors.js';
import { childEnv } from '../../src/common/child-env.mjs';
import type { ControlApi } from '../../src/local/api.js';
import { Actors, type ActorEvent } from '../../src/local/actors.js';
import { ensureDefaultImage, resolveImage } from '../../src/local/images.js';
import { createRuntime, httpRequestVia, instancePaths, removeInstanceLeftovers, runscPidsOf, type GvisorRuntime } from '../../src/local/runtime/index.js';
import { SnapshotStore } from '../../src/local/snapshots.js';
import { Workers } from '../../src/local/workers.js';
import { COUNTER_JS } from './helpers.js';

const S = pb.ActorState;
const ROOT = resolve(import.meta.dirname, '../..');

/** Stands in for src/local/atespaces.ts, templates.ts, tags.ts and egress.ts (being written in parallel). */
function standIn() {
  const atespaces = new Set<string>(['demo', 'other', 'ate-golden']);
  const templates = new Map<string, pb.ActorTemplate>();
  const tags = new Map<string, pb.Tag>();
  const egressDeletes: string[] = [];
  const impl: Partial<ControlApi> = {
    async getAtespace(r) {
      const name = r.atespace?.name ?? '';
      if (!atespaces.has(name)) throw notFound(`Atespace ${name} not found`);
      return { metadata: { atespace: '', name, uid: `uid-${name}`, version: 1 } };
    },
    async getActorTemplate(r) {
      const k = `${r.actorTemplate?.atespace}/${r.actorTemplate?.name}`;
      const t = templates.get(k);
      if (!t) throw notFound(`ActorTemplate ${k} not found`);
      return pb.ActorTemplate.fromJSON(pb.ActorTemplate.toJSON(t));
    },
    async getTag(r) {
      const k = `${r.tag?.atespace}/${r.tag?.name}`;
      const t = tags.get(k);
      if (!t) throw notFound(`Tag ${k} not found`);
      return t;
    },
    async deleteActorEgressPolicy(r) {
      egressDeletes.push(`${r.actor?.atespace}/${r.actor?.name}`);
      throw notFound('EgressPolicy not found');
    },
  };
  const api = new Proxy(impl, {
    get: (t, k: string) => (t as Record<string, unknown>)[k] ?? (async () => Promise.reject(new Error(`stand-in: ${k} is not provided`))),
  }) as unknown as ControlApi;
  return { api, templates, tags, egressDeletes };
}

function template(atespace: string, name: string, image: string, o: { probePort?: number; timeoutSeconds?: number; configName?: string } = {}): pb.ActorTemplate {
  return pb.ActorTemplate.fromPartial({
    metadata: { atespace, name, uid: `tpl-${atespace}-${name}-${Math.random().toString(16).slice(2)}`, version: 1 },
    containers: [
      {
        name: 'app',
        image,
        command: ['/usr/bin/node', '-e', COUNTER_JS],
        env: [{ name: 'GREETING', value: 'hi' }],
        wakeupProbe: { httpGet: { path: '/readyz', port: o.probePort ?? 80 }, timeoutSeconds: o.timeoutSeconds ?? 30 },
      },
    ],
    snapshotConfig: { onCommit: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, storageLocation: 'gs://local-test/snaps/' },
    sandboxConfig: { sandboxClass: pb.SandboxClass.SANDBOX_CLASS_GVISOR, configName: o.configName ?? 'gvisor-default' },
    resources: { limits: [{ name: 'memory', quantity: '256Mi' }] },
  });
}

async function codeOf(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error('expected an error, the call succeeded');
}

interface Stack {
  db: Database.Database;
  runtime: GvisorRuntime;
  snapshots: SnapshotStore;
  workers: Workers;
  actors: Actors;
}

function openStack(stateDir: string, api: ControlApi, replicas: number): Stack {
  const db = new Database(join(stateDir, 'local.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  const runtime = createRuntime({ stateDir, adoptLeftovers: true });
  const snapshots = new SnapshotStore(stateDir);
  const workers = new Workers({ db, runtime, slotOf: (i, n) => runtime.slot(i, n), defaultReplicas: replicas });
  const actors = new Actors({
    stateDir,
    db,
    runtime,
    snapshots,
    images: { resolve: (ref) => resolveImage(stateDir, ref) },
    api,
    workers,
    platform: runtime.platform,
  });
  return { db, runtime, snapshots, workers, actors };
}

const ref = (name: string, atespace = 'demo') => ({ actor: { atespace, name } });

async function count(actors: Actors, runtime: GvisorRuntime, name: string, atespace = 'demo'): Promise<number> {
  const h = actors.sandboxOf(atespace, name);
  if (!h) throw new Error(`${atespace}/${name} has no sandbox`);
  const r = await httpRequestVia(runtime, h.worker, 80, { path: '/count', timeoutMs: 15_000 });
  expect(r.status).toBe(200);
  return (JSON.parse(r.text) as { n: number }).n;
}

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('actors on gVisor', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'sdl-actors-'));
  const si = standIn();
  let st: Stack;
  let tpl: pb.ActorTemplate;
  const events: ActorEvent[] = [];

  beforeAll(async () => {
    const image = (await ensureDefaultImage(stateDir)).ref;
    tpl = template('demo', 'counter', image);
    si.templates.set('demo/counter', tpl);
    si.templates.set('demo/counter-vm', { ...template('demo', 'counter-vm', image, { configName: 'microvm' }), sandboxConfig: { sandboxClass: pb.SandboxClass.SANDBOX_CLASS_MICROVM, configName: 'microvm' } });
    si.templates.set('demo/counter2', template('demo', 'counter2', image));
    si.templates.set('demo/deaf', template('demo', 'deaf', image, { probePort: 81, timeoutSeconds: 2 }));
    si.templates.set('other/counter', template('other', 'counter', image));
    st = openStack(stateDir, si.api, 2);
    st.actors.onActorChange((e) => events.push(e));
    await st.actors.start();
  });

  afterAll(async () => {
    await st?.actors.stop().catch(() => undefined);
    st?.db.close();
    await removeInstanceLeftovers({ stateDir }).catch(() => undefined);
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('validates CreateActor, then creates SUSPENDED actors with server metadata', async () => {
    const { actors } = st;
    const bad = (actor: object) => codeOf(actors.createActor({ actor: pb.Actor.fromPartial(actor) }));
    expect((await bad({ metadata: { atespace: 'demo', name: 'x' } })).message).toBe('actor.actor_template: Required value');
    expect((await bad({ metadata: { atespace: 'demo', name: 'Bad_Name' }, actorTemplate: { atespace: 'demo', name: 'counter' } })).code).toBe(status.INVALID_ARGUMENT);
    expect((await bad({ metadata: { atespace: 'demo', name: 'x' }, actorTemplate: { atespace: '', name: 'counter' } })).message).toBe('actor.actor_template.atespace: Required value');
    const many = Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`k${i}`, 'v']));
    const tooMany = await bad({ metadata: { atespace: 'demo', name: 'x' }, actorTemplate: { atespace: 'demo', name: 'counter' }, workerSelector: { matchLabels: many } });
    expect([tooMany.code, tooMany.message]).toEqual([status.INVALID_ARGUMENT, 'actor.worker_selector.match_labels: Too many: 11: must have at most 10 items']);
    expect((await bad({ metadata: { atespace: 'nope', name: 'x' }, actorTemplate: { atespace: 'nope', name: 'counter' } })).code).toBe(status.NOT_FOUND);
    expect((await bad({ metadata: { atespace: 'demo', name: 'x' }, actorTemplate: { atespace: 'demo', name: 'missing' } })).code).toBe(status.NOT_FOUND);
    // A template of another atespace is looked up there, as upstream's CreateActor does.
    expect((await bad({ metadata: { atespace: 'demo', name: 'x' }, actorTemplate: { atespace: 'other', name: 'missing' } })).code).toBe(status.NOT_FOUND);
    const cross = await actors.createActor({ actor: pb.Actor.fromPartial({ metadata: { atespace: 'demo', name: 'cross' }, actorTemplate: { atespace: 'other', name: 'counter' } }) });
    expect(cross.actorTemplate).toEqual({ atespace: 'other', name: 'counter' });
    await actors.deleteActor({ actor: { atespace: 'demo', name: 'cross' }, anyState: false });
    // A tag from another template's sandbox.
    si.tags.set('demo/foreign', {
      metadata: { atespace: 'demo', name: 'foreign', uid: 'tag-uid-f', version: 1 },
      scope: pb.TagScope.TAG_SCOPE_ATESPACE,
      status: { snapshot: { snapshotUri: 'gs://x/atespaces/demo/tags/f', contentScope: 1, actorTemplateUid: 'someone-else' }, actorTemplateUid: 'someone-else', storageLocation: 'gs://x' },
    });
    const foreign = await bad({ metadata: { atespace: 'demo', name: 'x' }, actorTemplate: { atespace: 'demo', name: 'counter' }, sourceTag: { atespace: 'demo', name: 'foreign' } });
    expect(foreign.code).toBe(status.FAILED_PRECONDITION);

    const a = await actors.createActor({
      actor: pb.Actor.fromPartial({
        metadata: { atespace: 'demo', name: 'c1' },
        actorTemplate: { atespace: 'demo', name: 'counter' },
        workerSelector: { matchLabels: { 'ate.dev/worker-pool': 'default' } },
        status: { state: S.ACTOR_STATE_RUNNING }, // ignored
      }),
    });
    expect(a.metadata).toMatchObject({ atespace: 'demo', name: 'c1', version: 1 });
    expect(a.metadata!.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(a.metadata!.createTime).toBeInstanceOf(Date);
    expect(a.status!.state).toBe(S.ACTOR_STATE_SUSPENDED);
    expect(a.status!.externalSnapshot).toBeUndefined();
    const dup = await codeOf(actors.createActor({ actor: pb.Actor.fromPartial({ metadata: { atespace: 'demo', name: 'c1' }, actorTemplate: { atespace: 'demo', name: 'counter' } }) }));
    expect([dup.code, dup.message]).toEqual([status.ALREADY_EXISTS, 'Actor demo/c1 already exists']);
    expect(events.some((e) => e.type === 'changed' && e.actor.metadata!.name === 'c1')).toBe(true);
    const nf = await codeOf(actors.getActor(ref('ghost')));
    expect([nf.code, nf.message]).toEqual([status.NOT_FOUND, 'Actor demo/ghost not found']);
  });

  it('UpdateActor: uid/version preconditions, immutable source_tag, template repoint rules', async () => {
    const { actors } = st;
    const a = await actors.getActor(ref('c1'));
    const upd = (x: pb.Actor) => codeOf(actors.updateActor({ actor: x }));
    expect((await upd({ ...a, metadata: { ...a.metadata!, uid: '' } })).message).toBe('actor.metadata.uid: Required value');
    const stale = await upd({ ...a, metadata: { ...a.metadata!, version: a.metadata!.version + 5 } });
    expect([stale.code, stale.message]).toEqual([status.ABORTED, 'concurrent update conflict, please retry']);
    expect((await upd({ ...a, sourceTag: { atespace: 'demo', name: 'foreign' } })).code).toBe(status.INVALID_ARGUMENT);
    const vm = await upd({ ...a, actorTemplate: { atespace: 'demo', name: 'counter-vm' } });
    expect(vm.code).toBe(status.FAILED_PRECONDITION);
    expect(vm.message).toBe(
      'the current actor template names SandboxConfig "gvisor-default" (class SANDBOX_CLASS_GVISOR) but the new one names "microvm" (class SANDBOX_CLASS_MICROVM); the sandbox config must be identical to repoint an actor',
    );
    const moved = await actors.updateActor({ actor: { ...a, actorTemplate: { atespace: 'demo', name: 'counter2' }, workerSelector: undefined } });
    expect(moved.metadata!.version).toBe(a.metadata!.version + 1);
    expect(moved.actorTemplate).toEqual({ atespace: 'demo', name: 'counter2' });
    expect(moved.workerSelector).toBeUndefined();
    const back = await actors.updateActor({ actor: { ...moved, actorTemplate: { atespace: 'demo', name: 'counter' } } });
    expect(back.metadata!.version).toBe(a.metadata!.version + 2);
  });

  let uri1 = '';
  let uri2 = '';

  it('cold boot, suspend/resume keeps memory, pause/resume on its node, suspend from PAUSED replaces the snapshot', async () => {
    const { actors, runtime, snapshots, workers } = st;
    const r1 = await actors.resumeActor(ref('c1'));
    expect(r1.resumed).toBe(true);
    const wa = r1.actor!.status!.workerAssignment!;
    expect(r1.actor!.status!.state).toBe(S.ACTOR_STATE_RUNNING);
    expect(wa).toMatchObject({ worker: { atespace: '', name: 'default-0' }, workerNamespace: 'ate-system', workerPool: 'default', workerPod: 'default-0', nodeName: 'local-node-0', workerEpoch: 1 });
    expect(wa.workerPodIps).toEqual([runtime.slot(0).ip]);
    expect(r1.actor!.status!.assignedNode).toBe('local-node-0');
    expect([await count(actors, runtime, 'c1'), await count(actors, runtime, 'c1'), await count(actors, runtime, 'c1')]).toEqual([1, 2, 3]);
    const again = await actors.resumeActor(ref('c1'));
    expect(again.resumed).toBe(false);
    const as = await workers.listWorkerActorAssignments({ worker: { atespace: '', name: 'default-0' }, pageSize: 0, pageToken: '' });
    expect(as.actorAssignments.map((x) => x.actor!.name)).toEqual(['c1']);

    const s1 = (await actors.suspendActor(ref('c1'))).actor!;
    expect(s1.status!.state).toBe(S.ACTOR_STATE_SUSPENDED);
    uri1 = s1.status!.externalSnapshot!.snapshotUri;
    expect(uri1).toMatch(new RegExp(`^gs://local-test/snaps/atespaces/demo/actors/${s1.metadata!.uid}/snapshots/[0-9a-f-]{36}$`));
    expect(s1.status!.externalSnapshot).toMatchObject({ contentScope: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, actorTemplateUid: tpl.metadata!.uid });
    expect(s1.status!.workerAssignment).toBeUndefined();
    expect(s1.status!.inProgressSnapshotUri).toBe('');
    expect(snapshots.exists(uri1)).toBe(true);
    expect(actors.sandboxOf('demo', 'c1')).toBeNull();
    expect((await workers.listWorkerActorAssignments({ worker: { atespace: '', name: 'default-0' }, pageSize: 0, pageToken: '' })).actorAssignments).toEqual([]);
    expect((await actors.suspendActor(ref('c1'))).actor!.metadata!.version).toBe(s1.metadata!.version); // no-op

    await actors.resumeActor(ref('c1'));
    expect(await count(actors, runtime, 'c1')).toBe(4);

    const p1 = (await actors.pauseActor(ref('c1'))).actor!;
    expect(p1.status!.state).toBe(S.ACTOR_STATE_PAUSED);
    const node = p1.status!.assignedNode;
    const local = p1.status!.localSnapshot!.snapshotName;
    expect(node).toMatch(/^local-node-[01]$/);
    expect(existsSync(join(snapshots.localDirOf(node, local), 'meta.json'))).toBe(true);
    const r2 = (await actors.resumeActor(ref('c1'))).actor!;
    expect(r2.status!.workerAssignment!.nodeName).toBe(node);
    expect(r2.status!.localSnapshot).toBeUndefined();
    expect(existsSync(snapshots.localDirOf(node, local))).toBe(false);
    expect(await count(actors, runtime, 'c1')).toBe(5);

    await actors.pauseActor(ref('c1'));
    const s2 = (await actors.suspendActor(ref('c1'))).actor!;
    expect(s2.status!.state).toBe(S.ACTOR_STATE_SUSPENDED);
    expect(s2.status!.localSnapshot).toBeUndefined();
    expect(s2.status!.assignedNode).toBe('');
    uri2 = s2.status!.externalSnapshot!.snapshotUri;
    expect(uri2).not.toBe(uri1);
    expect(snapshots.exists(uri2)).toBe(true);
    expect(snapshots.exists(uri1)).toBe(false); // the previous own snapshot is deleted
    await actors.resumeActor(ref('c1'));
    expect(await count(actors, runtime, 'c1')).toBe(6);
  });

  it('kill -9 of the sandbox: CRASHED, resume refused, revert restores the last external snapshot', async () => {
    const { actors, runtime, workers } = st;
    const h = actors.sandboxOf('demo', 'c1')!;
    const before = await workers.getWorker({ worker: { atespace: '', name: `default-${h.worker.index}` } });
    process.kill(h.pid, 'SIGKILL');
    const crashed = await until(() => actors.getActor(ref('c1')), (a) => a.status!.state === S.ACTOR_STATE_CRASHED);
    expect(crashed.status!.state).toBe(S.ACTOR_STATE_CRASHED);
    expect(crashed.status!.crash!.message).toBe('worker pod went away while hosting the actor');
    expect(crashed.status!.crash!.crashTime).toBeInstanceOf(Date);
    const after = await workers.getWorker({ worker: { atespace: '', name: `default-${h.worker.index}` } });
    expect(after.epoch).toBe(before.epoch + 1);
    expect(after.status!.allocated!.actors).toBe(0);
    const refused = await codeOf(actors.resumeActor(ref('c1')));
    expect([refused.code, refused.message]).toEqual([
      status.FAILED_PRECONDITION,
      'AssignWorker prerequisite not met for Actor: demo/c1 (got: ACTOR_STATE_CRASHED, want ACTOR_STATE_SUSPENDED or ACTOR_STATE_PAUSED)',
    ]);
    const sus = await codeOf(actors.suspendActor(ref('c1')));
    expect(sus.message).toBe('MarkSuspending prerequisite not met for Actor: demo/c1 (got: ACTOR_STATE_CRASHED, want ACTOR_STATE_RUNNING or ACTOR_STATE_PAUSED)');
    const rv = (await actors.revertActor(ref('c1'))).actor!;
    expect(rv.status!.state).toBe(S.ACTOR_STATE_SUSPENDED);
    expect(rv.status!.crash).toBeUndefined();
    expect(rv.status!.workerAssignment).toBeUndefined();
    expect(rv.status!.externalSnapshot!.snapshotUri).toBe(uri2);
    const notRevertable = await codeOf(actors.revertActor(ref('c1')));
    expect(notRevertable.message).toBe(
      'Actor demo/c1 is not in a revertable state (got: ACTOR_STATE_SUSPENDED, want one of [ACTOR_STATE_RUNNING ACTOR_STATE_PAUSED ACTOR_STATE_CRASHED ACTOR_STATE_REVERTING])',
    );
    await actors.resumeActor(ref('c1'));
    expect(await count(actors, runtime, 'c1')).toBe(6); // n=5 was the last external snapshot
  });

  it('a tag snapshot is borrowed: restored, never deleted by the borrower', async () => {
    const { actors, runtime, snapshots } = st;
    const tagUri = snapshots.tagSnapshotUri('gs://local-test/snaps', 'demo', 'tag-uid-1');
    await snapshots.copy(uri2, tagUri);
    si.tags.set('demo/t1', {
      metadata: { atespace: 'demo', name: 't1', uid: 'tag-uid-1', version: 1 },
      scope: pb.TagScope.TAG_SCOPE_ATESPACE,
      status: { snapshot: { snapshotUri: tagUri, contentScope: 1, actorTemplateUid: tpl.metadata!.uid }, actorTemplateUid: tpl.metadata!.uid, storageLocation: 'gs://local-test/snaps' },
    });
    const c2 = await actors.createActor({
      actor: pb.Actor.fromPartial({ metadata: { atespace: 'demo', name: 'c2' }, actorTemplate: { atespace: 'demo', name: 'counter' }, sourceTag: { atespace: 'demo', name: 't1' } }),
    });
    expect(c2.status!.externalSnapshot).toEqual({ snapshotUri: tagUri, contentScope: 1, actorTemplateUid: tpl.metadata!.uid });
    expect(c2.sourceTag).toEqual({ atespace: 'demo', name: 't1' });
    // c1 holds the first worker: c2 takes the other one.
    await actors.resumeActor(ref('c2'));
    expect(await count(actors, runtime, 'c2')).toBe(6);
    const s = (await actors.suspendActor(ref('c2'))).actor!;
    expect(s.status!.externalSnapshot!.snapshotUri).not.toBe(tagUri);
    expect(snapshots.exists(tagUri)).toBe(true);
    const del = await actors.deleteActor({ ...ref('c2'), anyState: false });
    expect(del.metadata!.name).toBe('c2');
    expect(snapshots.exists(s.status!.externalSnapshot!.snapshotUri)).toBe(false);
    expect(snapshots.exists(tagUri)).toBe(true);
    expect(si.egressDeletes).toContain('demo/c2');
  });

  it('RESOURCE_EXHAUSTED when every worker is busy; one workflow at a time per actor', async () => {
    const { actors } = st;
    for (const n of ['r1', 'r2']) {
      await actors.createActor({ actor: pb.Actor.fromPartial({ metadata: { atespace: 'demo', name: n }, actorTemplate: { atespace: 'demo', name: 'counter' } }) });
    }
    const first = actors.resumeActor(ref('r1'));
    const busy = await codeOf(actors.suspendActor(ref('r1')));
    expect([busy.code, busy.message]).toEqual([status.ABORTED, 'another operation is in progress for this actor']);
    await first;
    // c1 and r1 hold both workers.
    const full = await codeOf(actors.resumeActor(ref('r2')));
    expect([full.code, full.message]).toEqual([status.RESOURCE_EXHAUSTED, 'no worker has room for the actor']);
    expect((await actors.getActor(ref('r2'))).status!.state).toBe(S.ACTOR_STATE_SUSPENDED);
    await actors.deleteActor({ ...ref('r1'), anyState: true });
    await actors.deleteActor({ ...ref('r2'), anyState: false });
  });

  it('a wakeup probe that never answers crashes the actor and fails the resume', async () => {
    const { actors } = st;
    await actors.createActor({ actor: pb.Actor.fromPartial({ metadata: { atespace: 'demo', name: 'deaf' }, actorTemplate: { atespace: 'demo', name: 'deaf' } }) });
    const e = await codeOf(actors.resumeActor(ref('deaf')));
    expect(e.code).toBe(status.DEADLINE_EXCEEDED);
    expect(e.message).toMatch(/^actor demo\/deaf crashed: wakeup probe failed: GET \/readyz on port 81 did not answer 200 within 2s/);
    const a = await actors.getActor(ref('deaf'));
    expect(a.status!.state).toBe(S.ACTOR_STATE_CRASHED);
    expect(a.status!.crash!.message).toMatch(/^wakeup probe failed: /);
    expect(actors.sandboxOf('demo', 'deaf')).toBeNull();
    await actors.deleteActor({ ...ref('deaf'), anyState: false }); // CRASHED is deletable
  });

  it('ListActors pages by atespace and name', async () => {
    const { actors } = st;
    for (const n of ['l1', 'l2', 'l3']) {
      await actors.createActor({ actor: pb.Actor.fromPartial({ metadata: { atespace: 'demo', name: n }, actorTemplate: { atespace: 'demo', name: 'counter' } }) });
    }
    const p1 = await actors.listActors({ atespace: 'demo', pageSize: 2, pageToken: '' });
    expect(p1.actors.map((a) => a.metadata!.name)).toEqual(['c1', 'l1']);
    const p2 = await actors.listActors({ atespace: 'demo', pageSize: 2, pageToken: p1.nextPageToken });
    expect(p2.actors.map((a) => a.metadata!.name)).toEqual(['l2', 'l3']);
    expect(p2.nextPageToken).toBe('');
    expect((await actors.listActors({ atespace: 'other', pageSize: 0, pageToken: '' })).actors).toEqual([]);
    expect((await codeOf(actors.listActors({ atespace: '', pageSize: -1, pageToken: '' }))).message).toBe('page_size: Invalid value: -1: must be greater than or equal to 0');
    for (const n of ['l1', 'l2', 'l3']) await actors.deleteActor({ ...ref(n), anyState: false });
  });

  it('DeleteActor: refused while RUNNING, DeleteOptions checked, any_state deletes the own snapshots', async () => {
    const { actors, snapshots } = st;
    const a = await actors.getActor(ref('c1'));
    expect(a.status!.state).toBe(S.ACTOR_STATE_RUNNING);
    const running = await codeOf(actors.deleteActor({ ...ref('c1'), anyState: false }));
    expect([running.code, running.message]).toEqual([status.FAILED_PRECONDITION, 'Actor demo/c1 is not in a deletable state (state: ACTOR_STATE_RUNNING)']);
    const uid = await codeOf(actors.deleteActor({ ...ref('c1'), anyState: true, options: { uid: 'not-it', version: 0 } }));
    expect([uid.code, uid.message]).toEqual([status.ABORTED, 'Actor demo/c1 does not have uid not-it']);
    const ver = await codeOf(actors.deleteActor({ ...ref('c1'), anyState: true, options: { uid: '', version: a.metadata!.version + 1 } }));
    expect([ver.code, ver.message]).toEqual([status.ABORTED, 'concurrent update conflict, please retry']);
    const gone = await actors.deleteActor({ ...ref('c1'), anyState: true, options: { uid: a.metadata!.uid, version: a.metadata!.version } });
    expect(gone.metadata!.uid).toBe(a.metadata!.uid);
    expect(gone.status!.state).toBe(S.ACTOR_STATE_DELETING);
    expect((await codeOf(actors.getActor(ref('c1')))).code).toBe(status.NOT_FOUND);
    expect(snapshots.exists(uri2)).toBe(false);
    expect(actors.sandboxOf('demo', 'c1')).toBeNull();
    expect(events.some((e) => e.type === 'deleted' && e.actor.metadata!.name === 'c1')).toBe(true);
  });
});

/**
 * The child: a local Substrate stack (runtime, workers, actors) on `stateDir` that creates and resumes two
 * actors, counts k1 to 3, prints their sandbox pids and waits to be killed.
 */
const CHILD = (stateDir: string, tplJson: string) => `
import Database from '${ROOT}/node_modules/better-sqlite3/lib/index.js';
import * as pb from '${ROOT}/src/gen/ateapi.ts';
import { Actors } from '${ROOT}/src/local/actors.ts';
import { resolveImage } from '${ROOT}/src/local/images.ts';
import { createRuntime, httpRequestVia } from '${ROOT}/src/local/runtime/index.ts';
import { SnapshotStore } from '${ROOT}/src/local/snapshots.ts';
import { Workers } from '${ROOT}/src/local/workers.ts';
const stateDir = ${JSON.stringify(stateDir)};
const tpl = pb.ActorTemplate.fromJSON(${tplJson});
const api = {
  async getAtespace(r) { return { metadata: { atespace: '', name: r.atespace.name, uid: 'u', version: 1 } }; },
  async getActorTemplate() { return tpl; },
};
const db = new Database(stateDir + '/local.db');
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
const runtime = createRuntime({ stateDir, adoptLeftovers: true });
const workers = new Workers({ db, runtime, slotOf: (i, n) => runtime.slot(i, n), defaultReplicas: 2 });
const actors = new Actors({ stateDir, db, runtime, snapshots: new SnapshotStore(stateDir), images: { resolve: (r) => resolveImage(stateDir, r) }, api, workers, platform: runtime.platform });
await actors.start();
const pids = {};
for (const name of ['k1', 'k2']) {
  await actors.createActor({ actor: pb.Actor.fromPartial({ metadata: { atespace: 'demo', name }, actorTemplate: { atespace: 'demo', name: 'counter' } }) });
  await actors.resumeActor({ actor: { atespace: 'demo', name } });
  pids[name] = actors.sandboxOf('demo', name).pid;
}
for (let i = 0; i < 3; i++) await httpRequestVia(runtime, actors.sandboxOf('demo', 'k1').worker, 80, { path: '/count' });
process.stdout.write('READY ' + JSON.stringify(pids) + '\\n');
setInterval(() => {}, 1000);
`;

describe('actors after a kill -9 of the local Substrate', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'sdl-actors-k9-'));
  let st: Stack | undefined;

  afterAll(async () => {
    await st?.actors.stop().catch(() => undefined);
    st?.db.close();
    await removeInstanceLeftovers({ stateDir }).catch(() => undefined);
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('adopts a sandbox that survived (memory intact) and crashes the actor whose sandbox died', async () => {
    const image = (await ensureDefaultImage(stateDir)).ref;
    const tpl = template('demo', 'counter', image);
    const script = join(stateDir, 'child.mts');
    writeFileSync(script, CHILD(stateDir, JSON.stringify(pb.ActorTemplate.toJSON(tpl))));
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: ROOT,
      env: childEnv({ pass: ['SUBSTRATE_RUNSC'], set: { SUBSTRATE_LOG_LEVEL: 'warn' } }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const pids = await new Promise<Record<string, number>>((resolveP, reject) => {
      const t = setTimeout(() => reject(new Error(`child not ready: ${err}`)), 90_000);
      child.stdout.on('data', () => {
        const m = /READY (\{.*\})/.exec(out);
        if (m) {
          clearTimeout(t);
          resolveP(JSON.parse(m[1]!) as Record<string, number>);
        }
      });
      child.once('exit', (code) => reject(new Error(`child exited ${code}: ${err}`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    process.kill(pids.k2!, 'SIGKILL');

    const si = standIn();
    si.templates.set('demo/counter', tpl);
    st = openStack(stateDir, si.api, 2);
    await st.actors.start();
    const k1 = await st.actors.getActor(ref('k1'));
    expect(k1.status!.state).toBe(S.ACTOR_STATE_RUNNING);
    expect(st.actors.sandboxOf('demo', 'k1')!.pid).toBe(pids.k1);
    expect(await count(st.actors, st.runtime, 'k1')).toBe(4);
    const k2 = await st.actors.getActor(ref('k2'));
    expect(k2.status!.state).toBe(S.ACTOR_STATE_CRASHED);
    expect(k2.status!.crash!.message).toBe('worker pod went away while hosting the actor');
    const w = await st.workers.listWorkers({ pageSize: 0, pageToken: '' });
    expect(w.workers.map((x) => x.status!.allocated!.actors).sort()).toEqual([0, 1]);

    // A clean stop suspends what runs: k1 keeps its memory in a snapshot, nothing of runsc is left.
    await st.actors.stop();
    expect(runscPidsOf(instancePaths(stateDir).runscRoot)).toHaveLength(0);
    const k1s = await st.actors.getActor(ref('k1'));
    expect(k1s.status!.state).toBe(S.ACTOR_STATE_SUSPENDED);
    expect(st.snapshots.exists(k1s.status!.externalSnapshot!.snapshotUri)).toBe(true);
    st.db.close();
    st = undefined;
  });
});
