// Worker slots, pools and placement of the local Substrate (src/local/workers.ts) on a real SQLite database.
// The runtime is reduced to what Workers uses of it (prepareWorker), recorded: no sandbox runs here (the
// runsc-backed behaviour of workers is covered by tests/local/actors.test.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import * as pb from '../../src/gen/ateapi.js';
import { ApiError } from '../../src/common/errors.js';
import { NO_ROOM, Workers, type Binding, type Placement, type WorkersOptions } from '../../src/local/workers.js';
import type { WorkerSlot } from '../../src/local/runtime/types.js';

const dir = mkdtempSync(join(tmpdir(), 'sdl-workers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let dbn = 0;
function setup(more: Partial<WorkersOptions> = {}, file = join(dir, `w${dbn++}.db`)) {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  const prepared: number[] = [];
  const w = new Workers({
    db,
    runtime: { prepareWorker: async (s: WorkerSlot) => void prepared.push(s.index) },
    slotOf: (idx, node) => ({ index: idx, node, netns: `test-w${idx}`, ip: `10.77.0.${idx + 2}` }),
    defaultReplicas: 3,
    ...more,
  });
  return { db, w, prepared, file };
}

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<ApiError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (e instanceof ApiError) return e;
    throw e;
  }
  throw new Error('expected an error, the call succeeded');
}

const gvisor: Placement = { sandboxClass: 'gvisor', templateSelector: {}, actorSelector: {} };
const bind = (name: string): Binding => ({
  actor: { atespace: 'demo', name },
  actorUid: `uid-${name}`,
  template: { atespace: 'demo', name: 'tpl' },
  resources: { limits: [{ name: 'cpu', quantity: '500m' }] },
});

describe('Workers', () => {
  it('creates the built-in default pool, spread over virtual nodes, and prepares each slot once', async () => {
    const { w, prepared } = setup();
    await w.start();
    await w.start(); // idempotent
    expect(prepared).toEqual([0, 1, 2]);
    const { workers } = await w.listWorkers({ pageSize: 0, pageToken: '' });
    expect(workers.map((x) => x.metadata!.name)).toEqual(['default-0', 'default-1', 'default-2']);
    const first = workers[0]!;
    expect(first).toMatchObject({
      workerNamespace: 'ate-system',
      workerPool: 'default',
      workerPod: 'default-0',
      nodeName: 'local-node-0',
      ips: ['10.77.0.2'],
      sandboxClass: 'gvisor',
      labels: { 'ate.dev/worker-pool': 'default' },
      epoch: 1,
    });
    expect(first.metadata!.atespace).toBe('');
    expect(first.metadata!.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(first.status!.state).toBe(pb.WorkerState.WORKER_STATE_ACTIVE);
    expect(first.status!.capacity!.actors).toBe(1);
    expect(first.status!.allocated!.actors).toBe(0);
    expect(workers[1]!.nodeName).toBe('local-node-1');
    expect(workers[2]!.nodeName).toBe('local-node-0');
  });

  it('pages ListWorkers with opaque tokens and checks page_size and page_token', async () => {
    const { w } = setup({ defaultReplicas: 5 });
    await w.start();
    const p1 = await w.listWorkers({ pageSize: 2, pageToken: '' });
    expect(p1.workers.map((x) => x.metadata!.name)).toEqual(['default-0', 'default-1']);
    expect(p1.nextPageToken).not.toBe('');
    const p2 = await w.listWorkers({ pageSize: 2, pageToken: p1.nextPageToken });
    expect(p2.workers.map((x) => x.metadata!.name)).toEqual(['default-2', 'default-3']);
    const p3 = await w.listWorkers({ pageSize: 2, pageToken: p2.nextPageToken });
    expect(p3.workers.map((x) => x.metadata!.name)).toEqual(['default-4']);
    expect(p3.nextPageToken).toBe('');
    const neg = await codeOf(w.listWorkers({ pageSize: -1, pageToken: '' }));
    expect(neg.code).toBe(status.INVALID_ARGUMENT);
    expect(neg.message).toBe('page_size: Invalid value: -1: must be greater than or equal to 0');
    expect((await codeOf(w.listWorkers({ pageSize: 1, pageToken: 'bogus' }))).code).toBe(status.INVALID_ARGUMENT);
  });

  it('GetWorker: name required, unknown or atespace-scoped refs are NOT_FOUND', async () => {
    const { w } = setup();
    await w.start();
    expect((await w.getWorker({ worker: { atespace: '', name: 'default-1' } })).workerPod).toBe('default-1');
    const req = await codeOf(w.getWorker({ worker: { atespace: '', name: '' } }));
    expect([req.code, req.message]).toEqual([status.INVALID_ARGUMENT, 'worker.name: Required value']);
    const nf = await codeOf(w.getWorker({ worker: { atespace: '', name: 'default-9' } }));
    expect([nf.code, nf.message]).toEqual([status.NOT_FOUND, 'Worker default-9 not found']);
    expect((await codeOf(w.getWorker({ worker: { atespace: 'demo', name: 'default-1' } }))).code).toBe(status.NOT_FOUND);
  });

  it('places by sandbox class, template and actor selectors and node pin; RESOURCE_EXHAUSTED when nothing fits', async () => {
    const { w } = setup({ defaultReplicas: 2 });
    await w.start();
    await w.applyWorkerPool({ namespace: 'ate-system', name: 'gpu', labels: { tier: 'gpu' }, replicas: 1, sandboxClass: 'gvisor', workerImage: 'x@sha256:00' });
    await w.applyWorkerPool({ namespace: 'ate-system', name: 'vm', labels: {}, replicas: 1, sandboxClass: 'microvm', workerImage: 'x@sha256:00' });
    const gpu = w.claim({ ...gvisor, templateSelector: { tier: 'gpu' } }, bind('a1'));
    expect([gpu.pool, gpu.name]).toEqual(['gpu', 'gpu-2']);
    // The only gpu worker is taken.
    const full = await codeOf(() => w.claim({ ...gvisor, actorSelector: { tier: 'gpu' } }, bind('a2')));
    expect([full.code, full.message]).toEqual([status.RESOURCE_EXHAUSTED, NO_ROOM]);
    expect(w.claim({ sandboxClass: 'microvm', templateSelector: {}, actorSelector: {} }, bind('a3')).pool).toBe('vm');
    // A node pin: default-1 is the only default worker on local-node-1.
    const pinned = w.claim({ ...gvisor, templateSelector: { 'ate.dev/worker-pool': 'default' }, node: 'local-node-1' }, bind('a4'));
    expect(pinned.name).toBe('default-1');
    // An actor already bound keeps its worker.
    expect(w.claim({ ...gvisor, templateSelector: { tier: 'gpu' } }, bind('a1')).idx).toBe(gpu.idx);
    // A selector no pool satisfies.
    expect((await codeOf(() => w.claim({ ...gvisor, actorSelector: { nope: 'x' } }, bind('a5')))).code).toBe(status.RESOURCE_EXHAUSTED);
    // The assignment is listed, paged.
    const as = await w.listWorkerActorAssignments({ worker: { atespace: '', name: 'gpu-2' }, pageSize: 0, pageToken: '' });
    expect(as.actorAssignments).toHaveLength(1);
    expect(as.actorAssignments[0]).toMatchObject({
      actor: { atespace: 'demo', name: 'a1' },
      actorUid: 'uid-a1',
      actorTemplateRef: { atespace: 'demo', name: 'tpl' },
      resources: { limits: [{ name: 'cpu', quantity: '500m' }] },
      workerEpoch: 1,
    });
    expect((await w.getWorker({ worker: { atespace: '', name: 'gpu-2' } })).status!.allocated!.actors).toBe(1);
  });

  it('drain makes a worker unschedulable, idempotently; a replaced worker gets a new pod uid and epoch', async () => {
    const { w } = setup({ defaultReplicas: 2 });
    await w.start();
    const d = await w.drainWorker({ worker: { atespace: '', name: 'default-0' } });
    expect(d.status!.state).toBe(pb.WorkerState.WORKER_STATE_DRAINING);
    const again = await w.drainWorker({ worker: { atespace: '', name: 'default-0' } });
    expect(again.metadata!.version).toBe(d.metadata!.version);
    const got = w.claim(gvisor, bind('b1'));
    expect(got.name).toBe('default-1');
    expect((await codeOf(() => w.claim(gvisor, bind('b2')))).code).toBe(status.RESOURCE_EXHAUSTED);
    const before = await w.getWorker({ worker: { atespace: '', name: 'default-1' } });
    w.release(got.idx, { replaced: true });
    const after = await w.getWorker({ worker: { atespace: '', name: 'default-1' } });
    expect(after.epoch).toBe(before.epoch + 1);
    expect(after.workerPodUid).not.toBe(before.workerPodUid);
    expect(after.metadata!.uid).toBe(before.metadata!.uid);
    expect(after.status!.allocated!.actors).toBe(0);
  });

  it('keeps pools and slots across restarts; an empty DRAINING worker comes back ACTIVE at start', async () => {
    const s1 = setup({ defaultReplicas: 1 });
    await s1.w.start();
    await s1.w.applyWorkerPool({ namespace: 'team', name: 'small', labels: { size: 's' }, replicas: 2, sandboxClass: 'gvisor', workerImage: 'img@sha256:11' });
    await s1.w.drainWorker({ worker: { atespace: '', name: 'small-2' } });
    s1.db.close();
    const s2 = setup({ defaultReplicas: 1 }, s1.file);
    await s2.w.start();
    expect((await s2.w.listWorkerPools()).map((p) => `${p.namespace}/${p.name}:${p.replicas}`)).toEqual(['ate-system/default:1', 'team/small:2']);
    const small2 = await s2.w.getWorker({ worker: { atespace: '', name: 'small-2' } });
    expect(small2.status!.state).toBe(pb.WorkerState.WORKER_STATE_ACTIVE);
    expect(small2.epoch).toBe(2);
    expect(small2.labels).toEqual({ size: 's' });
    s2.db.close();
  });

  it('applies, scales and deletes pools: bound slots stay until their actor leaves; the built-in pool is fixed', async () => {
    const { w, prepared } = setup({ defaultReplicas: 1, maxWorkers: 4 });
    await w.start();
    await w.applyWorkerPool({ namespace: 'ate-system', name: 'p', labels: { x: 'y' }, replicas: 5, sandboxClass: 'gvisor', workerImage: 'i@sha256:0' });
    // Capped by maxWorkers: 1 default + 3.
    expect((await w.listWorkers({ pageSize: 0, pageToken: '' })).workers.map((x) => x.metadata!.name)).toEqual(['default-0', 'p-1', 'p-2', 'p-3']);
    expect(prepared).toEqual([0, 1, 2, 3]);
    const held = w.claim({ ...gvisor, actorSelector: { x: 'y' } }, bind('c1'));
    expect(held.name).toBe('p-1');
    await w.applyWorkerPool({ namespace: 'ate-system', name: 'p', labels: { x: 'y' }, replicas: 0, sandboxClass: 'gvisor', workerImage: 'i@sha256:0' });
    expect((await w.listWorkers({ pageSize: 0, pageToken: '' })).workers.map((x) => x.metadata!.name)).toEqual(['default-0', 'p-1']);
    const busy = await codeOf(w.deleteWorkerPool('ate-system', 'p'));
    expect(busy.code).toBe(status.FAILED_PRECONDITION);
    w.release(held.idx);
    expect((await w.listWorkers({ pageSize: 0, pageToken: '' })).workers.map((x) => x.metadata!.name)).toEqual(['default-0']);
    await w.deleteWorkerPool('ate-system', 'p');
    expect((await codeOf(w.deleteWorkerPool('ate-system', 'p'))).code).toBe(status.NOT_FOUND);
    expect((await codeOf(w.deleteWorkerPool('ate-system', 'default'))).code).toBe(status.FAILED_PRECONDITION);
    expect(
      (await codeOf(w.applyWorkerPool({ namespace: 'ate-system', name: 'default', labels: {}, replicas: 9, sandboxClass: 'gvisor', workerImage: '' }))).code,
    ).toBe(status.FAILED_PRECONDITION);
    const bad = await codeOf(w.applyWorkerPool({ namespace: 'ate-system', name: 'q', labels: { '-bad': 'x' }, replicas: 1, sandboxClass: 'gvisor', workerImage: '' }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.message).toMatch(/^metadata\.labels: Invalid value: "-bad"/);
  });
});
