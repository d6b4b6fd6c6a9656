// Issue 7, item 8: a crash of the server costs agents nothing it need not, and one state directory has one
// instance. The real `substrate-driver local serve` (gVisor, SQLite, gRPC, router) as a child process, killed
// with -9.
//
// Substrate v0.4 semantics: a RUNNING actor whose sandbox outlived the crashed server is adopted, memory
// intact; one whose sandbox died with it is CRASHED ("worker pod went away while hosting the actor"), refused
// by ResumeActor (the router answers 503 with that refusal) until RevertActor puts it back, SUSPENDED, on its
// last complete snapshot. (Before v0.4 such an actor fell back to SUSPENDED by itself and was resumed on the
// next request; v0.4 made the crash visible and its recovery explicit.)
import type { ResultPromise } from 'execa';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ActorState, type Actor, type RevertActorResponse } from '../../src/gen/ateapi.js';
import type { LocalJson } from '../../src/local/index.js';
import { instancePaths, listNetns, runscPidsOf } from '../../src/local/runtime/index.js';
import { controlClient, counterSetup, serveLocal, spawnLocalServe, viaRouter } from '../local/helpers.js';

const ref = { actor: { atespace: 'keep', name: 'k1' } };
const serve = (stateDir: string) => serveLocal(stateDir, { workers: 2, logLevel: 'info' });
const start = (stateDir: string) => spawnLocalServe(stateDir, { workers: 2, logLevel: 'info' });

async function count(info: LocalJson): Promise<{ n: number; born: number; pid: number }> {
  const r = await viaRouter(info.router_url, 'keep', 'k1', '/count');
  expect(r.status, r.body).toBe(200);
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
    await counterSetup(c.rpc, 'keep', 'counter', stateDir);
    await c.rpc('createActor', { actor: { metadata: { atespace: 'keep', name: 'k1' }, actorTemplate: { atespace: 'keep', name: 'counter' } } });
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
      const a = await c2.rpc<Actor>('getActor', ref);
      expect(a.status?.state).toBe(ActorState.ACTOR_STATE_RUNNING);
      expect(a.status?.crash).toBeUndefined();
      const after = await count(info);
      // Same process inside the same sandbox: the counter went on from memory.
      expect(after.pid).toBe(before.pid);
      expect(after.born).toBe(before.born);
      expect(after.n).toBe(before.n + 1);
      process.stderr.write(`crash-survival: kill -9 -> serving ${ms} ms, -> actor answering ${Date.now() - t0} ms\n`);
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
    expect(existsSync(info.socket_path)).toBe(true);
    const c = controlClient(info.api_endpoint);
    try {
      expect((await c.rpc<Actor>('getActor', ref)).status?.state).toBe(ActorState.ACTOR_STATE_RUNNING);
    } finally {
      c.close();
    }
    expect((await count(info)).n).toBeGreaterThan(0);
  });

  it('an actor whose sandbox died with the crashed run is CRASHED; RevertActor puts it back on its last snapshot', async () => {
    let info = JSON.parse(readFileSync(join(stateDir, 'local.json'), 'utf8')) as LocalJson;
    let c = controlClient(info.api_endpoint);
    await c.rpc('suspendActor', ref); // a snapshot at the current count
    await c.rpc('resumeActor', ref);
    const snap = await count(info); // one more, in memory only
    c.close();
    // The process dies, and the sandbox with it (a machine-level fault of the worker as well).
    proc!.kill('SIGKILL');
    await proc;
    for (const pid of runscPidsOf(instancePaths(stateDir).runscRoot)) process.kill(pid, 'SIGKILL');
    ({ proc, info } = await serve(stateDir));
    c = controlClient(info.api_endpoint);
    try {
      // Settled before the instance announced itself: no polling needed.
      const a = await c.rpc<Actor>('getActor', ref);
      expect(a.status?.state).toBe(ActorState.ACTOR_STATE_CRASHED);
      expect(a.status?.crash?.message).toBe('worker pod went away while hosting the actor');
      expect(a.status?.crash?.crashTime).toBeInstanceOf(Date);
      // Nobody resumes a crashed actor behind the caller's back: the router says why it cannot.
      const r = await viaRouter(info.router_url, 'keep', 'k1', '/count');
      expect(r.status).toBe(503);
      expect(r.body).toMatch(/^actor keep\/k1 unavailable: .*ACTOR_STATE_CRASHED/);
      const rev = await c.rpc<RevertActorResponse>('revertActor', ref);
      expect(rev.actor?.status?.state).toBe(ActorState.ACTOR_STATE_SUSPENDED);
      expect(rev.actor?.status?.crash).toBeUndefined();
      // Back from the snapshot taken at `snap.n - 1` (the one request after it lived only in memory).
      expect((await count(info)).n).toBe(snap.n);
    } finally {
      c.close();
    }
  });

  it('SIGHUP stops it cleanly: actors suspended, nothing left running', async () => {
    const info = JSON.parse(readFileSync(join(stateDir, 'local.json'), 'utf8')) as LocalJson;
    const before = JSON.parse((await viaRouter(info.router_url, 'keep', 'k1', '/peek')).body).n as number;
    proc!.kill('SIGHUP');
    const res = await proc!;
    expect(res.exitCode).toBe(0);
    expect(existsSync(join(stateDir, 'local.json'))).toBe(false);
    expect(existsSync(join(stateDir, 'instance.lock'))).toBe(false);
    const paths = instancePaths(stateDir);
    expect(runscPidsOf(paths.runscRoot)).toHaveLength(0);
    expect((await listNetns()).filter((n) => n.startsWith(paths.netnsPrefix))).toEqual([]);
    // What ran was suspended, not lost: the next start resumes it with its memory.
    let next: LocalJson;
    ({ proc, info: next } = await serve(stateDir));
    const c = controlClient(next.api_endpoint);
    try {
      expect((await c.rpc<Actor>('getActor', ref)).status?.state).toBe(ActorState.ACTOR_STATE_SUSPENDED);
      expect(JSON.parse((await viaRouter(next.router_url, 'keep', 'k1', '/peek')).body).n).toBe(before);
    } finally {
      c.close();
    }
  });
});
