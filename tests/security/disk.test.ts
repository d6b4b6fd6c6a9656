// Issue 7, item 6: superseded snapshots are collected, and a checkpoint that hits a full disk leaves the actor
// still running (memory intact) or, when its sandbox did not survive, recoverable on its previous snapshot,
// with a clear error and a consistent state. The snapshot store of a real local Substrate (<state>/objects:
// one directory per snapshot URI) is a small tmpfs mounted for this test.
//
// Substrate v0.4: an actor owns exactly one external snapshot; the next suspend replaces it and deletes the
// previous one. A tag owns its own copy, which outlives the actor's next snapshots. A checkpoint that fails
// and takes the sandbox with it CRASHES the actor (upstream: any atelet error but Unavailable/Canceled/
// DeadlineExceeded), and RevertActor brings it back on its previous snapshot.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as pb from '../../src/gen/ateapi.js';
import { SnapshotStore } from '../../src/local/snapshots.js';
import { counterSetup, startTestSubstrate, viaRouter, type TestSubstrate } from '../local/helpers.js';

const ref = { actor: { atespace: 'disk', name: 'd1' } };
const S = pb.ActorState;

function usedKiB(dir: string): number {
  const out = execFileSync('df', ['-k', '--output=used', dir], { encoding: 'utf8' }).trim().split('\n');
  return Number(out[out.length - 1]);
}

/** Every file and directory under dir, relative. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      out.push(join(rel, e.name));
      if (e.isDirectory()) walk(join(d, e.name), join(rel, e.name));
    }
  };
  if (existsSync(dir)) walk(dir, '');
  return out;
}

describe('snapshot store: collection and a full disk', () => {
  let s: TestSubstrate;
  let stateDir: string;
  let store: string;
  let snapshots: SnapshotStore;
  const count = async (name = 'd1') => {
    const r = await viaRouter(s.h.routerUrl, 'disk', name, '/count');
    expect(r.status, r.body).toBe(200);
    return JSON.parse(r.body).n as number;
  };
  const actor = async () => s.rpc<pb.Actor>('getActor', ref);
  const own = async () => (await actor()).status!.externalSnapshot!.snapshotUri;

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'sec-disk-'));
    store = join(stateDir, 'objects');
    mkdirSync(store, { mode: 0o700 });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256m,mode=0700', 'tmpfs', store]);
    s = await startTestSubstrate({ stateDir, workers: 2 });
    snapshots = new SnapshotStore(stateDir);
    await counterSetup(s.rpc, 'disk', 'counter', stateDir);
    await s.rpc('createActor', { actor: { metadata: { atespace: 'disk', name: 'd1' }, actorTemplate: { atespace: 'disk', name: 'counter' } } });
  });
  afterAll(async () => {
    await s?.close();
    try {
      execFileSync('umount', [store]);
    } catch {
      /* not mounted */
    }
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("keeps only an actor's latest snapshot, and a tag's copy for as long as the tag", async () => {
    const golden = await own();
    await count();
    await s.rpc('suspendActor', ref);
    const first = await own();
    expect(first).not.toBe(golden);
    // The golden snapshot belongs to its tag, never to the actor: it stays.
    expect(snapshots.exists(golden)).toBe(true);
    await s.rpc('createTag', { tag: { metadata: { atespace: 'disk', name: 'keep' }, scope: pb.TagScope.TAG_SCOPE_ATESPACE, sourceActor: { atespace: 'disk', name: 'd1' } } });
    const tagUri = (await s.rpc<pb.Tag>('getTag', { tag: { atespace: 'disk', name: 'keep' } })).status!.snapshot!.snapshotUri;
    await count();
    await s.rpc('suspendActor', ref);
    const second = await own();
    expect(second).not.toBe(first);
    expect(existsSync(snapshots.dirOf(first))).toBe(false);
    expect(snapshots.exists(second)).toBe(true);
    expect(snapshots.exists(tagUri)).toBe(true);
    expect(snapshots.exists(golden)).toBe(true);
    // The tag's copy still restores: an actor created from it continues from n = 1.
    await s.rpc('createActor', { actor: { metadata: { atespace: 'disk', name: 'from-tag' }, actorTemplate: { atespace: 'disk', name: 'counter' }, sourceTag: { atespace: 'disk', name: 'keep' } } });
    expect(await count('from-tag')).toBe(2);
    await s.rpc('deleteActor', { actor: { atespace: 'disk', name: 'from-tag' }, anyState: true });
  });

  it('a checkpoint on a full disk: a clear RESOURCE_EXHAUSTED, nothing half-written, the actor keeps its memory or its previous snapshot', async () => {
    await s.rpc('resumeActor', ref);
    const n = await count();
    const before = await own();
    // Leave less room than one more snapshot needs (each is several MiB).
    execFileSync('mount', ['-o', `remount,size=${usedKiB(store) + 1024}k`, store]);
    const e = (await s.rpc('suspendActor', ref).catch((x: grpc.ServiceError) => x)) as grpc.ServiceError;
    expect(e.code, e.details).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(e.details).toMatch(/the snapshot store is full \(no space left on device\)/);
    expect(e.details).not.toContain(stateDir); // no host paths in errors
    const a = await actor();
    console.info(`[disk] after the failed checkpoint the actor is ${pb.actorStateToJSON(a.status!.state)}`);
    expect(tree(store).filter((p) => /\.tmp-/.test(p))).toEqual([]);
    expect(a.status?.externalSnapshot?.snapshotUri).toBe(before);
    expect(snapshots.exists(before)).toBe(true);
    // With room again, it suspends and resumes as before.
    execFileSync('mount', ['-o', 'remount,size=256m', store]);
    let m: number;
    if (a.status?.state === S.ACTOR_STATE_RUNNING) {
      // The sandbox survived the failed checkpoint: its memory too.
      expect(e.details).toMatch(/the sandbox keeps running/);
      expect(a.status?.inProgressSnapshotUri).toBe('');
      m = await count();
      expect(m).toBe(n + 1);
    } else {
      // It did not: CRASHED with the reason, and RevertActor puts it back on the snapshot it had.
      expect(a.status?.state).toBe(S.ACTOR_STATE_CRASHED);
      expect(a.status?.crash?.message).toMatch(/snapshot store is full/);
      const rev = await s.rpc<pb.RevertActorResponse>('revertActor', ref);
      expect(rev.actor?.status?.state).toBe(S.ACTOR_STATE_SUSPENDED);
      expect(rev.actor?.status?.externalSnapshot?.snapshotUri).toBe(before);
      m = await count();
      expect(m).toBe(n);
    }
    await s.rpc('suspendActor', ref);
    await s.rpc('resumeActor', ref);
    expect(await count()).toBe(m + 1);
    expect(existsSync(snapshots.dirOf(before))).toBe(false);
    const hosting = (await s.rpc<pb.ListWorkersResponse>('listWorkers', {})).workers.filter((w) => (w.status?.allocated?.actors ?? 0) > 0);
    expect(hosting).toHaveLength(1);
    const assignments = await s.rpc<pb.ListWorkerActorAssignmentsResponse>('listWorkerActorAssignments', { worker: { atespace: '', name: hosting[0]!.metadata!.name } });
    expect(assignments.actorAssignments.map((x) => x.actor)).toEqual([{ atespace: 'disk', name: 'd1' }]);
  });
});
