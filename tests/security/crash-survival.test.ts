// Issue 7, item 8: a crash of the server costs agents nothing, and one state directory has one instance.
// The real `substrate-driver local serve` (gVisor, SQLite, gRPC, router) as a child process, killed with -9.
import type { ResultPromise } from 'execa';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Actor_Status, type Actor } from '../../src/gen/june/ateapi.js';
import { kubeAccessOf, type LocalJson } from '../../src/local/index.js';
import { instancePaths, runscPidsOf } from '../../src/local/runtime/index.js';
import { applyObject, controlClient, counterTemplate, defaultImageRef, serveLocal, spawnLocalServe, viaRouter, waitTemplateReady } from '../local/helpers.js';

const ref = { actorRef: { atespace: 'keep', name: 'k1' } };
const serve = (stateDir: string) => serveLocal(stateDir, { workers: 2, logLevel: 'info' });
const start = (stateDir: string) => spawnLocalServe(stateDir, { workers: 2, logLevel: 'info' });

async function count(info: LocalJson): Promise<{ n: number; born: number; pid: number }> {
  const r = await viaRouter(info.router_url, 'keep', 'k1', '/count');
  expect(r.status).toBe(200);
  return JSON.parse(r.body);
}

describe('crash of the local Substrate process', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'sec-crash-'));
  let proc: ResultPromise | undefined;
  afterAll(async () => {
    if (proc && proc.exitCode === null) {
      proc.kill('SIGTERM');
      await proc;
    }
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('kill -9 of local serve: the running actor keeps running, memory intact, and is adopted at the next start', async () => {
    let info: LocalJson;
    ({ proc, info } = await serve(stateDir));
    const c = controlClient(info.api_endpoint);
    const image = await defaultImageRef(stateDir);
    expect((await applyObject(kubeAccessOf(info), counterTemplate('counter', image) as never)).status).toBeLessThan(300);
    await waitTemplateReady(kubeAccessOf(info), 'default', 'counter');
    await c.rpc('createAtespace', { name: 'keep' });
    await c.rpc('createActor', { ...ref, actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
    await c.rpc('resumeActor', ref);
    for (let i = 0; i < 4; i++) await count(info);
    const before = await count(info); // n = 5, in memory only: never checkpointed
    c.close();

    proc.kill('SIGKILL');
    await proc;
    const t0 = Date.now();
    let ms: number;
    ({ proc, info, ms } = await serve(stateDir));
    const c2 = controlClient(info.api_endpoint);
    try {
      const a = (await c2.rpc<{ actor: Actor }>('getActor', ref)).actor;
      expect(a.status).toBe(Actor_Status.STATUS_RUNNING);
      const after = await count(info);
      // Same process inside the same sandbox: the counter went on from memory.
      expect(after.pid).toBe(before.pid);
      expect(after.born).toBe(before.born);
      expect(after.n).toBe(before.n + 1);
      const readyMs = Date.now() - t0;
      process.stderr.write(`crash-survival: kill -9 -> serving ${ms} ms, -> actor answering ${readyMs} ms\n`);
    } finally {
      c2.close();
    }
  });

  it('a second instance on the same state directory is refused and the first keeps serving', async () => {
    const info = JSON.parse(readFileSync(join(stateDir, 'local.json'), 'utf8')) as LocalJson;
    const second = await start(stateDir);
    expect(second.exitCode).not.toBe(0);
    expect(second.stderr).toContain(`already runs for ${stateDir} (pid ${info.pid}`);
    // local.json was not rewritten and the first instance still answers on its socket and router.
    expect(JSON.parse(readFileSync(join(stateDir, 'local.json'), 'utf8'))).toEqual(info);
    expect(existsSync(info.api_endpoint.replace(/^unix:/, ''))).toBe(true);
    const c = controlClient(info.api_endpoint);
    try {
      expect((await c.rpc<{ actor: Actor }>('getActor', ref)).actor.status).toBe(Actor_Status.STATUS_RUNNING);
    } finally {
      c.close();
    }
    expect((await count(info)).n).toBeGreaterThan(0);
  });

  it('an actor whose sandbox died with the crashed run is resumed from its last snapshot without anyone asking', async () => {
    let info = JSON.parse(readFileSync(join(stateDir, 'local.json'), 'utf8')) as LocalJson;
    let c = controlClient(info.api_endpoint);
    await c.rpc('suspendActor', ref); // a snapshot at the current count
    await c.rpc('resumeActor', ref);
    const snap = await count(info);
    c.close();
    // The process dies, and the sandbox with it (a machine-level fault of the worker as well).
    proc!.kill('SIGKILL');
    await proc;
    for (const pid of runscPidsOf(instancePaths(stateDir).runscRoot)) process.kill(pid, 'SIGKILL');
    ({ proc, info } = await serve(stateDir));
    c = controlClient(info.api_endpoint);
    try {
      let a: Actor | undefined;
      for (let i = 0; i < 300; i++) {
        a = (await c.rpc<{ actor: Actor }>('getActor', ref)).actor;
        if (a.status === Actor_Status.STATUS_RUNNING) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(a!.status).toBe(Actor_Status.STATUS_RUNNING);
      // Back from the snapshot taken at `snap.n` (the one request after it lived only in memory).
      expect((await count(info)).n).toBe(snap.n);
    } finally {
      c.close();
    }
  });

  it('SIGHUP stops it cleanly: actors suspended, nothing left running', async () => {
    proc!.kill('SIGHUP');
    const res = await proc!;
    expect(res.exitCode).toBe(0);
    expect(existsSync(join(stateDir, 'local.json'))).toBe(false);
    expect(existsSync(join(stateDir, 'instance.lock'))).toBe(false);
    expect(runscPidsOf(instancePaths(stateDir).runscRoot)).toHaveLength(0);
  });
});
