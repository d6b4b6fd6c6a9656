// Durability of the standalone `substrate-driver local serve`: kill -9 of the whole local Substrate in the
// middle of a checkpoint leaves a consistent catalog; the next start releases what the crashed run left
// (runsc sandboxes, claimed workers) and the actor resumes from a complete snapshot. A clean stop (SIGTERM)
// leaves no runsc process and no network namespace behind.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Actor_Status, type Actor } from '../../src/gen/june/ateapi.js';
import { Catalog } from '../../src/local/catalog.js';
import { instancePaths, listNetns, runscPidsOf } from '../../src/local/runtime/index.js';
import { kubeAccessOf } from '../../src/local/index.js';
import { applyObject, controlClient, counterTemplate, defaultImageRef, serveLocal, viaRouter, waitTemplateReady } from './helpers.js';

const ref = { actorRef: { atespace: 'crash', name: 'c1' } };
const serve = (stateDir: string) => serveLocal(stateDir);

describe('standalone local Substrate: crash safety', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'sdl-crash-'));
  afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

  it('survives kill -9 during a checkpoint with a consistent catalog, then stops cleanly leaving nothing behind', async () => {
    let { proc, info } = await serve(stateDir);
    let c = controlClient(info.api_endpoint);
    const image = await defaultImageRef(stateDir);
    expect((await applyObject(kubeAccessOf(info), counterTemplate('counter', image) as never)).status).toBeLessThan(300);
    await waitTemplateReady(kubeAccessOf(info), 'default', 'counter');
    await c.rpc('createAtespace', { name: 'crash' });
    await c.rpc('createActor', { ...ref, actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
    await c.rpc('resumeActor', ref);
    for (let i = 0; i < 3; i++) await viaRouter(info.router_url, 'crash', 'c1', '/count');
    await c.rpc('suspendActor', ref); // a complete snapshot at n=3
    await c.rpc('resumeActor', ref);
    await viaRouter(info.router_url, 'crash', 'c1', '/count'); // n=4, in memory only

    // Start a checkpoint, and kill the whole local Substrate while the actor is SUSPENDING.
    const pending = c.rpc('suspendActor', ref).catch((e: Error) => e);
    let sawSuspending = false;
    for (let i = 0; i < 500 && !sawSuspending; i++) {
      const a = (await c.rpc<{ actor: Actor }>('getActor', ref)).actor;
      sawSuspending = a.status === Actor_Status.STATUS_SUSPENDING;
      if (!sawSuspending) await new Promise((r) => setTimeout(r, 5));
    }
    expect(sawSuspending).toBe(true);
    proc.kill('SIGKILL');
    await proc;
    expect(await pending).toBeInstanceOf(Error);
    c.close();

    // The catalog opens and passes SQLite's integrity check; the actor is mid-suspend as last committed.
    const cat = new Catalog(join(stateDir, 'catalog.db'), { readonly: true });
    expect(cat.db.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(cat.getActor('crash', 'c1')!.status).toBe(Actor_Status.STATUS_SUSPENDING);
    cat.close();

    // Restart: the crashed run's sandboxes are released, the actor settles to SUSPENDED with a complete snapshot.
    ({ proc, info } = await serve(stateDir));
    c = controlClient(info.api_endpoint);
    const settled = (await c.rpc<{ actor: Actor }>('getActor', ref)).actor;
    expect(settled.status).toBe(Actor_Status.STATUS_SUSPENDED);
    expect(settled.inProgressSnapshot).toBe('');
    const workers = await c.rpc<{ workers: Array<{ actorId: string }> }>('listWorkers', {});
    expect(workers.workers.every((w) => w.actorId === '')).toBe(true);
    const paths = instancePaths(stateDir);
    expect(runscPidsOf(paths.runscRoot)).toHaveLength(0);
    // Whichever snapshot is the latest, it is whole: the actor continues from n=3 or n=4.
    const n = JSON.parse((await viaRouter(info.router_url, 'crash', 'c1', '/count')).body).n;
    expect([4, 5]).toContain(n);
    c.close();

    // A clean stop: SIGTERM suspends what runs, and leaves no runsc process and no namespace behind.
    proc.kill('SIGTERM');
    const res = await proc;
    expect(res.exitCode).toBe(0);
    expect(existsSync(join(stateDir, 'local.json'))).toBe(false);
    expect(runscPidsOf(paths.runscRoot)).toHaveLength(0);
    expect((await listNetns()).filter((n) => n.startsWith(paths.netnsPrefix))).toEqual([]);
  });
});
