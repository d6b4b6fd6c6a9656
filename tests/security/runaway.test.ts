// Issue 7, item 5: a runaway workload is contained by its limits (cgroups for memory, CPU and tasks; a sized
// tmpfs /tmp; a rotated log), and the host and a neighbouring actor keep answering meanwhile. A real local
// Substrate with small limits; the neighbour's latency is sampled through the router during every storm.
//
// Substrate v0.4: limits come from an ActorTemplate's resources.limits (cpu, memory), lowered to fit the
// instance's own ceilings. A sandbox killed at its limits is a worker gone away: its actor is CRASHED
// ("worker pod went away while hosting the actor") and refused by the router (503) until RevertActor puts it
// back on its last snapshot (before v0.4 it fell back to SUSPENDED by itself and resumed on the next request).
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActorState, type Actor, type ActorTemplate, type RevertActorResponse } from '../../src/gen/ateapi.js';
import { instancePaths } from '../../src/local/runtime/index.js';
import { counterTemplate, defaultImageRef, ensureAtespace, startTestSubstrate, viaRouter, waitGolden, type TestSubstrate } from '../local/helpers.js';

const RUNAWAY_JS = `
const http = require('http'), fs = require('fs'), cp = require('child_process');
const keep = []; const kids = [];
http.createServer(async (q, s) => {
  const u = new URL(q.url, 'http://x'); const n = Number(u.searchParams.get('n') || 0);
  const out = (o) => s.end(JSON.stringify(o));
  if (u.pathname === '/readyz') return s.end('ok');
  if (u.pathname === '/alloc') { for (let i = 0; i < n; i++) keep.push(Buffer.alloc(1 << 20, i + 1)); return out({ mb: keep.length }); }
  if (u.pathname === '/fork') {
    let error = null;
    for (let i = 0; i < n && !error; i++) {
      try { const c = cp.spawn(process.execPath, ['-e', 'setInterval(()=>{},1e6)'], { stdio: 'ignore' });
        await new Promise((r) => { c.once('spawn', () => r()); c.once('error', (e) => { error = e.code || String(e); r(); }); });
        if (!error) kids.push(c);
      } catch (e) { error = e.code || String(e); }
    }
    return out({ spawned: kids.length, error });
  }
  if (u.pathname === '/fill') {
    let written = 0, error = null; const mb = Buffer.alloc(1 << 20, 7);
    for (let i = 0; i < n; i++) { try { fs.appendFileSync('/tmp/fill', mb); written++; } catch (e) { error = e.code; break; } }
    return out({ written, error });
  }
  if (u.pathname === '/flood') {
    const line = 'x'.repeat(1023) + '\\n';
    for (let i = 0; i < n * 1024; i++) if (!process.stdout.write(line)) await new Promise((r) => process.stdout.once('drain', r));
    return out({ mb: n });
  }
  if (u.pathname === '/spin') { const t = Date.now(); let loops = 0; while (Date.now() - t < n) loops++; return out({ loops }); }
  s.end('hello');
}).listen(80);
`;

function runawayTemplate(image: string): ActorTemplate {
  const t = counterTemplate('storm', 'runaway', image);
  t.containers[0]!.command = ['/usr/bin/node', '-e', RUNAWAY_JS];
  // Asks for more than the instance allows: the instance's limits are ceilings.
  t.resources = { limits: [{ name: 'memory', quantity: '2Gi' }, { name: 'cpu', quantity: '4' }] };
  return t;
}

const MiB = 1024 * 1024;

describe('runaway workloads are contained', () => {
  let s: TestSubstrate;
  const rref = { actor: { atespace: 'storm', name: 'r1' } };
  const nref = { actor: { atespace: 'storm', name: 'n1' } };
  const get = (name: string, path: string) => viaRouter(s.h.routerUrl, 'storm', name, path);
  const actor = async (ref: typeof rref) => s.rpc<Actor>('getActor', ref);
  const state = async (ref: typeof rref) => (await actor(ref)).status?.state;
  /** The runaway's sandbox killed at its limits: CRASHED, refused until reverted, then back from its snapshot. */
  async function killedAndReverted(what: string): Promise<void> {
    for (let i = 0; i < 100 && (await state(rref)) === ActorState.ACTOR_STATE_RUNNING; i++) await new Promise((r) => setTimeout(r, 100));
    const a = await actor(rref);
    expect(a.status?.state, `${what}: the runaway's actor`).toBe(ActorState.ACTOR_STATE_CRASHED);
    expect(a.status?.crash?.message).toBe('worker pod went away while hosting the actor');
    const refused = await get('r1', '/hello');
    expect(refused.status).toBe(503);
    expect(refused.body).toMatch(/ACTOR_STATE_CRASHED/);
    expect((await s.rpc<RevertActorResponse>('revertActor', rref)).actor?.status?.state).toBe(ActorState.ACTOR_STATE_SUSPENDED);
  }

  /** Runs `storm` while sampling the neighbour every 100 ms; every sample must answer 200. */
  async function duringStorm<T>(what: string, storm: () => Promise<T>): Promise<T> {
    const lat: number[] = [];
    let stop = false;
    const sampler = (async () => {
      while (!stop) {
        const t0 = performance.now();
        const r = await get('n1', '/count');
        expect(r.status, `${what}: neighbour answer`).toBe(200);
        lat.push(performance.now() - t0);
        await new Promise((res) => setTimeout(res, 100));
      }
    })();
    try {
      return await storm();
    } finally {
      stop = true;
      await sampler;
      lat.sort((a, b) => a - b);
      const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!.toFixed(1);
      console.info(`[runaway] ${what}: neighbour answered ${lat.length}/${lat.length}, latency p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${q(1)} ms`);
      expect(lat.length).toBeGreaterThan(0);
      expect(await state(nref), `${what}: the neighbour keeps running`).toBe(ActorState.ACTOR_STATE_RUNNING);
    }
  }

  beforeAll(async () => {
    s = await startTestSubstrate({ workers: 3, limits: { memoryBytes: 256 * MiB, cpuMillis: 500, pids: 64, tmpBytes: 32 * MiB, logBytes: MiB } });
    const image = await defaultImageRef(s.stateDir);
    await ensureAtespace(s.rpc, 'storm');
    await s.rpc('createActorTemplate', { actorTemplate: runawayTemplate(image) });
    // The neighbour's template sets its own, lower limits (Substrate v0.4's resources.limits).
    const counter = counterTemplate('storm', 'counter', image);
    counter.resources = { limits: [{ name: 'cpu', quantity: '250m' }, { name: 'memory', quantity: '192Mi' }] };
    await s.rpc('createActorTemplate', { actorTemplate: counter });
    await waitGolden(s.rpc, 'storm', 'runaway');
    await waitGolden(s.rpc, 'storm', 'counter');
    await s.rpc('createActor', { actor: { metadata: { atespace: 'storm', name: 'r1' }, actorTemplate: { atespace: 'storm', name: 'runaway' } } });
    await s.rpc('createActor', { actor: { metadata: { atespace: 'storm', name: 'n1' }, actorTemplate: { atespace: 'storm', name: 'counter' } } });
    await s.rpc('resumeActor', rref);
    await s.rpc('resumeActor', nref);
  });
  afterAll(async () => {
    await s?.close();
  });

  it('/tmp is size-limited: writing past it fails with ENOSPC', async () => {
    const r = await duringStorm('fill /tmp', async () => JSON.parse((await get('r1', '/fill?n=200')).body) as { written: number; error: string | null });
    expect(r.error).toBe('ENOSPC');
    expect(r.written).toBeLessThanOrEqual(32);
    expect(await state(rref)).toBe(ActorState.ACTOR_STATE_RUNNING);
  });

  it('a log flood is rotated: the log stays near its limit, one previous file kept', async () => {
    const log = join(s.stateDir, 'logs', 'storm', 'r1.log');
    await duringStorm('flood the log', async () => {
      expect((await get('r1', '/flood?n=24')).status).toBe(200);
      await new Promise((r) => setTimeout(r, 1200)); // the monitor rotates every 500 ms
    });
    expect(existsSync(`${log}.1`)).toBe(true);
    expect(statSync(`${log}.1`).size).toBeLessThanOrEqual(MiB);
    expect(statSync(log).size).toBeLessThanOrEqual(MiB);
    expect(readdirSync(join(s.stateDir, 'logs', 'storm')).filter((f) => f.startsWith('r1.log'))).toEqual(['r1.log', 'r1.log.1']);
  });

  /** The sandbox's cgroup directory for a v1 controller, as /proc/<sandbox pid>/cgroup names it. */
  function cgroupOf(name: string, controller: 'cpu' | 'memory'): string {
    const h = s.h.actors.sandboxOf('storm', name)!;
    const line = readFileSync(`/proc/${h.pid}/cgroup`, 'utf8')
      .split('\n')
      .find((l) => l.split(':')[1]?.split(',').includes(controller));
    expect(line, `the sandbox process is in a ${controller} cgroup`).toBeDefined();
    const rel = line!.split(':')[2]!;
    expect(rel).toContain(instancePaths(s.stateDir).cgroupParent);
    const base = ['cpu', 'cpu,cpuacct', 'memory'].map((b) => join('/sys/fs/cgroup', b)).find((b) => b.endsWith(`/${controller}`) && existsSync(join(b, rel)));
    expect(base, `a ${controller} hierarchy holding ${rel}`).toBeDefined();
    return join(base!, rel);
  }

  it("a template's own cpu and memory limits lower the instance's, never raise them", () => {
    expect(Number(readFileSync(join(cgroupOf('n1', 'cpu'), 'cpu.cfs_quota_us'), 'utf8'))).toBe(25_000);
    expect(Number(readFileSync(join(cgroupOf('n1', 'memory'), 'memory.limit_in_bytes'), 'utf8'))).toBe(192 * MiB);
    expect(Number(readFileSync(join(cgroupOf('r1', 'memory'), 'memory.limit_in_bytes'), 'utf8'))).toBe(256 * MiB);
  });

  it('CPU is throttled at the limit', async () => {
    await duringStorm('spin 3 s', async () => expect((await get('r1', '/spin?n=3000')).status).toBe(200));
    const dir = cgroupOf('r1', 'cpu');
    expect(Number(readFileSync(join(dir, 'cpu.cfs_quota_us'), 'utf8'))).toBe(50_000);
    const stat = Object.fromEntries(readFileSync(join(dir, 'cpu.stat'), 'utf8').trim().split('\n').map((l) => l.split(' ')));
    expect(Number(stat.nr_throttled)).toBeGreaterThan(0);
  });

  it('a fork bomb is stopped: refused at the task limit, or the sandbox killed at its limits, and nothing else is touched', async () => {
    // Inside gVisor a process is a task of the sandbox kernel: the host's task and memory limits bound the
    // sandbox as a whole, so a fork bomb ends in a refused fork or in that one sandbox being killed.
    const res = await duringStorm('fork 500', async () => get('r1', '/fork?n=500'));
    let outcome: string;
    if (res.status === 200) {
      const r = JSON.parse(res.body) as { spawned: number; error: string | null };
      expect(r.error).not.toBeNull();
      expect(r.spawned).toBeLessThan(64);
      outcome = `${r.spawned} children, then ${r.error}`;
    } else {
      await killedAndReverted('fork bomb');
      outcome = `sandbox killed (HTTP ${res.status}), actor CRASHED, reverted to its last snapshot`;
    }
    console.info(`[runaway] fork bomb: ${outcome}`);
    expect(await state(nref)).toBe(ActorState.ACTOR_STATE_RUNNING);
    expect((await get('r1', '/hello')).body).toBe('hello'); // back on request
  });

  it('allocating past the memory limit OOM-kills only that sandbox; CRASHED, it is reverted to its last snapshot', async () => {
    await duringStorm('allocate 600 MiB', async () => {
      await get('r1', '/alloc?n=600').catch(() => undefined);
      for (let i = 0; i < 100 && (await state(rref)) === ActorState.ACTOR_STATE_RUNNING; i++) await new Promise((r) => setTimeout(r, 100));
    });
    await killedAndReverted('allocate 600 MiB');
    expect(await state(nref)).toBe(ActorState.ACTOR_STATE_RUNNING);
    // It comes back on request, from its last snapshot, within its limits again.
    expect((await get('r1', '/hello')).body).toBe('hello');
  });
});
