// Issue 7, item 6: superseded snapshots are collected, and a checkpoint that hits a full disk leaves the actor
// on its previous snapshot (or still running) with a clear error and a consistent catalog. The snapshot store
// of a real local Substrate is a small tmpfs mounted for this test.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Actor_Status, type Actor } from '../../src/gen/june/ateapi.js';
import { Catalog } from '../../src/local/catalog.js';
import { applyObject, counterTemplate, defaultImageRef, startTestSubstrate, viaRouter, waitTemplateReady, type TestSubstrate } from '../local/helpers.js';

const ref = { actorRef: { atespace: 'disk', name: 'd1' } };

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
  const count = async () => JSON.parse((await viaRouter(s.h.routerUrl, 'disk', 'd1', '/count')).body).n as number;
  const actor = async () => (await s.rpc<{ actor: Actor }>('getActor', ref)).actor;

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), 'sec-disk-'));
    store = join(stateDir, 'snapshots');
    mkdirSync(store, { mode: 0o700 });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256m,mode=0700', 'tmpfs', store]);
    s = await startTestSubstrate({ stateDir, workers: 1 });
    const image = await defaultImageRef(stateDir);
    expect((await applyObject(s.h.kube, counterTemplate('counter', image) as never)).status).toBeLessThan(300);
    await waitTemplateReady(s.h.kube, 'default', 'counter');
    await s.rpc('createAtespace', { name: 'disk' });
    await s.rpc('createActor', { ...ref, actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
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

  it('keeps only the latest snapshot of an actor', async () => {
    await s.rpc('resumeActor', ref);
    await count();
    await s.rpc('suspendActor', ref);
    const first = (await actor()).latestSnapshotInfo;
    await s.rpc('resumeActor', ref);
    await count();
    await s.rpc('suspendActor', ref);
    const second = (await actor()).latestSnapshotInfo;
    expect(JSON.stringify(second)).not.toBe(JSON.stringify(first));
    const dirs = readdirSync(join(store, 'disk', 'd1'));
    expect(dirs).toHaveLength(1);
    const cat = new Catalog(join(stateDir, 'catalog.db'), { readonly: true });
    try {
      expect(cat.snapshotsOf('disk', 'd1').map((r) => r.dir)).toEqual([join(store, 'disk', 'd1', dirs[0]!)]);
    } finally {
      cat.close();
    }
  });

  it('a checkpoint on a full disk: a clear RESOURCE_EXHAUSTED, nothing half-written, the actor keeps its memory or its previous snapshot', async () => {
    await s.rpc('resumeActor', ref);
    const n = await count();
    const before = (await actor()).latestSnapshotInfo;
    // Leave less room than one more snapshot needs (each is several MiB).
    execFileSync('mount', ['-o', `remount,size=${usedKiB(store) + 1024}k`, store]);
    const e = (await s.rpc('suspendActor', ref).catch((x: grpc.ServiceError) => x)) as grpc.ServiceError;
    expect(e.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(e.details).toMatch(/snapshot store is full/);
    expect(e.details).not.toContain(stateDir); // no host paths in errors
    const a = await actor();
    console.info(`[disk] after the failed checkpoint the actor is ${Actor_Status[a.status]}`);
    expect(a.inProgressSnapshot).toBe('');
    expect(tree(store).filter((p) => /\.tmp-/.test(p))).toEqual([]);
    if (a.status === Actor_Status.STATUS_RUNNING) {
      // The sandbox survived the failed checkpoint: its memory too.
      expect(await count()).toBe(n + 1);
    } else {
      expect(a.status).toBe(Actor_Status.STATUS_SUSPENDED);
      expect(JSON.stringify(a.latestSnapshotInfo)).toBe(JSON.stringify(before));
    }
    // With room again, it suspends and resumes as before.
    execFileSync('mount', ['-o', 'remount,size=256m', store]);
    if (a.status !== Actor_Status.STATUS_RUNNING) await s.rpc('resumeActor', ref);
    const m = await count();
    await s.rpc('suspendActor', ref);
    await s.rpc('resumeActor', ref);
    expect(await count()).toBe(m + 1);
    const workers = await s.rpc<{ workers: Array<{ actorId: string }> }>('listWorkers', {});
    expect(workers.workers.filter((w) => w.actorId === 'd1')).toHaveLength(1);
  });
});
