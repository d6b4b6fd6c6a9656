// Durability of the standalone `substrate-driver local serve`: kill -9 of the whole local Substrate in the
// middle of a checkpoint leaves a consistent state database (SQLite integrity intact, the actor as last
// committed); the next start settles the actor from what is durably on disk and releases what the crashed run
// left, and the actor continues from a complete snapshot or from its memory. A clean stop (SIGTERM) leaves no
// runsc process and no network namespace behind.
//
// Where the kill lands inside the checkpoint decides how the actor settles (substrate-v0.4.md §5.1, and the
// local reconcile in src/local/actor-workflows.ts): the sandbox still alive → adopted, RUNNING with its
// memory; the new snapshot complete → SUSPENDED on it; neither → CRASHED (v0.4), and RevertActor puts it back
// on its last complete snapshot. Each outcome is checked exactly; which one happened is logged.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import * as pb from '../../src/gen/ateapi.js';
import { instancePaths, listNetns, runscPidsOf } from '../../src/local/runtime/index.js';
import { SnapshotStore } from '../../src/local/snapshots.js';
import { controlClient, counterSetup, serveLocal, viaRouter } from './helpers.js';

const ref = { actor: { atespace: 'crash', name: 'c1' } };
const S = pb.ActorState;

describe('standalone local Substrate: crash safety', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'sdl-crash-'));
  afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

  it('survives kill -9 during a checkpoint with a consistent state database, then stops cleanly leaving nothing behind', async () => {
    let { proc, info } = await serveLocal(stateDir);
    let c = controlClient(info.api_endpoint);
    const count = async () => JSON.parse((await viaRouter(info.router_url, 'crash', 'c1', '/count')).body).n as number;
    const get = async () => c.rpc<pb.Actor>('getActor', ref);
    const store = new SnapshotStore(stateDir);
    const paths = instancePaths(stateDir);
    await counterSetup(c.rpc, 'crash', 'counter', stateDir);
    await c.rpc('createActor', { actor: { metadata: { atespace: 'crash', name: 'c1' }, actorTemplate: { atespace: 'crash', name: 'counter' } } });
    await c.rpc('resumeActor', ref);
    for (let i = 0; i < 3; i++) await count();

    /**
     * Suspends (a complete snapshot at the current count), resumes and counts once more (in memory only), then
     * starts a checkpoint and kills the whole local Substrate in it: as soon as SUSPENDING is committed
     * ('committed'), or once runsc is writing the image ('writing'). Restarts and checks how the actor settled.
     */
    const killMidCheckpoint = async (when: 'committed' | 'writing') => {
      const complete = (await c.rpc<pb.SuspendActorResponse>('suspendActor', ref)).actor!.status!.externalSnapshot!.snapshotUri;
      await c.rpc('resumeActor', ref);
      const memory = await count();
      const pending = c.rpc('suspendActor', ref).catch((e: Error) => e);
      let uri = '';
      for (let i = 0; i < 2000 && !uri; i++) {
        const a = await get();
        if (a.status?.state === S.ACTOR_STATE_SUSPENDING) uri = a.status.inProgressSnapshotUri;
        else await new Promise((r) => setTimeout(r, 5));
      }
      expect(uri, 'saw SUSPENDING').not.toBe('');
      if (when === 'writing') {
        const dir = store.dirOf(uri);
        // runsc has started writing once a file appears in the checkpoint's temp directory.
        const tmpOf = () =>
          readdirSync(dirname(dir)).some((e) => {
            if (!e.startsWith(`${basename(dir)}.tmp-`)) return false;
            try {
              return readdirSync(join(dirname(dir), e)).length > 0;
            } catch {
              return false;
            }
          });
        for (let i = 0; i < 2000 && !tmpOf(); i++) await new Promise((r) => setTimeout(r, 2));
        expect(tmpOf(), 'runsc is writing the image').toBe(true);
      }
      proc.kill('SIGKILL');
      await proc;
      expect(await pending).toBeInstanceOf(Error);
      c.close();

      // The state database opens and passes SQLite's integrity check; the actor is mid-suspend as last
      // committed, its in-progress snapshot named, its previous complete one still recorded.
      const db = new Database(join(stateDir, 'substrate.db'), { readonly: true });
      try {
        expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
        const row = db.prepare('SELECT data FROM actors WHERE atespace = ? AND name = ?').get('crash', 'c1') as { data: string };
        const stored = pb.Actor.fromJSON(JSON.parse(row.data));
        expect(stored.status?.state).toBe(S.ACTOR_STATE_SUSPENDING);
        expect(stored.status?.externalSnapshot?.snapshotUri).toBe(complete);
        expect(stored.status?.inProgressSnapshotUri).toBe(uri);
      } finally {
        db.close();
      }

      // Restart: the actor settles from what is on disk (before the instance announces itself); nothing is
      // left in between.
      ({ proc, info } = await serveLocal(stateDir));
      c = controlClient(info.api_endpoint);
      const settled = await get();
      const state = settled.status!.state;
      process.stderr.write(`crash: kill -9 once the checkpoint was ${when}: the actor settled ${pb.actorStateToJSON(state)}\n`);
      expect([S.ACTOR_STATE_RUNNING, S.ACTOR_STATE_SUSPENDED, S.ACTOR_STATE_CRASHED]).toContain(state);
      // Upstream keeps a CRASHED actor's in-progress pointer for RevertActor/DeleteActor to collect.
      expect(settled.status?.inProgressSnapshotUri).toBe(state === S.ACTOR_STATE_CRASHED ? uri : '');
      expect(readdirSync(join(stateDir, 'objects')).filter((e) => e.includes('.tmp-'))).toEqual([]);
      const hosting = (await c.rpc<pb.ListWorkersResponse>('listWorkers', {})).workers.filter((w) => (w.status?.allocated?.actors ?? 0) > 0);
      let n: number;
      if (state === S.ACTOR_STATE_RUNNING) {
        // The sandbox outlived the server and was adopted: its memory is intact.
        expect(hosting).toHaveLength(1);
        expect(settled.status?.externalSnapshot?.snapshotUri).toBe(complete);
        expect(existsSync(store.dirOf(uri))).toBe(false);
        n = await count();
        expect(n).toBe(memory + 1);
      } else if (state === S.ACTOR_STATE_SUSPENDED) {
        // The checkpoint was whole: it is the actor's snapshot now, and the one it replaces is collected.
        expect(settled.status?.externalSnapshot?.snapshotUri).toBe(uri);
        expect(store.exists(uri)).toBe(true);
        expect(existsSync(store.dirOf(complete))).toBe(false);
        expect(hosting).toHaveLength(0);
        expect(runscPidsOf(paths.runscRoot)).toHaveLength(0);
        n = await count();
        expect(n).toBe(memory + 1);
      } else {
        // Neither: CRASHED, its unfinished snapshot dropped, the last complete one kept for RevertActor.
        expect(settled.status?.crash?.message).toBe('worker pod went away while hosting the actor');
        expect(existsSync(store.dirOf(uri))).toBe(false);
        expect(store.exists(complete)).toBe(true);
        expect(hosting).toHaveLength(0);
        expect(runscPidsOf(paths.runscRoot)).toHaveLength(0);
        const rev = await c.rpc<pb.RevertActorResponse>('revertActor', ref);
        expect(rev.actor?.status?.state).toBe(S.ACTOR_STATE_SUSPENDED);
        expect(rev.actor?.status?.externalSnapshot?.snapshotUri).toBe(complete);
        expect(rev.actor?.status?.inProgressSnapshotUri).toBe('');
        n = await count();
        expect(n).toBe(memory); // the request after the complete snapshot lived only in memory
      }
      // Whatever happened, suspend and resume work as before.
      await c.rpc('suspendActor', ref);
      await c.rpc('resumeActor', ref);
      expect(await count()).toBe(n + 1);
    };

    await killMidCheckpoint('committed');
    await killMidCheckpoint('writing');
    c.close();

    // A clean stop: SIGTERM suspends what runs, and leaves no runsc process and no namespace behind.
    proc.kill('SIGTERM');
    const res = await proc;
    expect(res.exitCode).toBe(0);
    expect(existsSync(join(stateDir, 'local.json'))).toBe(false);
    expect(runscPidsOf(paths.runscRoot)).toHaveLength(0);
    expect((await listNetns()).filter((x) => x.startsWith(paths.netnsPrefix))).toEqual([]);
  }, 300_000);
});
