// Issue 7, item 8 (bounds): what one request or manifest can make the local Substrate hold is bounded —
// worker slots across pools, the size of one request and of one manifest, the page a list returns, and what
// one ActorTemplate or Actor may carry. A real local Substrate over its Unix socket.
//
// Substrate v0.4: the Kubernetes-shaped resource API is gone, and with it its watches; the bounds on open
// watches and on watch history it had no longer apply to anything (ateapi has no streaming RPC).
import Database from 'better-sqlite3';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ateapi from '../../src/gen/ateapi.js';
import * as adm from '../../src/gen/local_admin.js';
import { MAX_MANIFEST_BYTES, parseManifests } from '../../src/cli/manifests.js';
import { MAX_PAGE_SIZE } from '../../src/local/meta.js';
import { MAX_LOCAL_WORKERS, Workers } from '../../src/local/workers.js';
import { MAX_DETAILS_BYTES } from '../../src/local/server.js';
import { counterTemplate, defaultImageRef, expectCode, startTestSubstrate, type TestSubstrate } from '../local/helpers.js';

/** One LocalAdmin call on the instance's Unix socket. */
function admin<Req, Res>(socketPath: string, method: string, req: Req, type: { encode(r: Req): { finish(): Uint8Array } }, out: { decode(b: Uint8Array): Res }): Promise<Res> {
  const client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure());
  return new Promise<Res>((resolve, reject) => {
    client.makeUnaryRequest(`/substrate.local.v1.LocalAdmin/${method}`, (b: Buffer) => b, (b: Buffer) => b, Buffer.from(type.encode(req).finish()), (e, v) => {
      client.close();
      if (e) reject(e);
      else resolve(out.decode(v!));
    });
  });
}

describe('bounds', () => {
  let s: TestSubstrate;
  beforeAll(async () => {
    s = await startTestSubstrate({ workers: 2, maxWorkers: 4 });
  });
  afterAll(async () => {
    await s?.close();
  });

  const workers = async () => (await s.rpc<ateapi.ListWorkersResponse>('listWorkers', { pageSize: 1000 })).workers;

  it('a WorkerPool asking for more replicas than the instance holds gets what fits, across pools, and the instance keeps serving', async () => {
    expect(MAX_LOCAL_WORKERS).toBe(1024);
    const apply = (name: string, replicas: number) =>
      admin(s.h.socketPath, 'ApplyWorkerPool', { workerPool: { namespace: 'default', name, labels: {}, replicas, sandboxClass: 'gvisor', workerImage: 'w' } }, adm.ApplyWorkerPoolRequest, adm.WorkerPool);
    expect((await apply('huge', 2_000_000_000)).replicas).toBe(2_000_000_000);
    let w = await workers();
    expect(w).toHaveLength(4);
    expect(w.filter((x) => x.workerPool === 'default')).toHaveLength(2);
    expect(w.filter((x) => x.workerPool === 'huge')).toHaveLength(2);
    // A second pool finds no room left; the built-in pool keeps its slots.
    await apply('more', 1000);
    w = await workers();
    expect(w).toHaveLength(4);
    expect(w.filter((x) => x.workerPool === 'more')).toHaveLength(0);
    // Still serving.
    await s.rpc('createAtespace', { atespace: { metadata: { name: 'after-pools' } } });
    expect((await s.rpc<ateapi.Atespace>('getAtespace', { atespace: { name: 'after-pools' } })).metadata?.name).toBe('after-pools');
  });

  it('a request larger than 4 MiB is refused before it is decoded', async () => {
    const e = await expectCode(s.rpc('createAtespace', { atespace: { metadata: { name: 'x'.repeat(5 * 1024 * 1024) } } }), grpc.status.RESOURCE_EXHAUSTED);
    expect(e.details).toMatch(/larger than max/);
    // A request just under the limit is decoded and refused by validation; the refusal quotes the value, clipped
    // (whole, it would be a 3 MiB trailer, which stalled the connection and every call on it).
    const big = await expectCode(s.rpc('createAtespace', { atespace: { metadata: { name: 'x'.repeat(3 * 1024 * 1024) } } }), grpc.status.INVALID_ARGUMENT);
    expect(big.details).toMatch(/^atespace\.metadata\.name: Invalid value: "x+ \.\.\. \(\d+ bytes, truncated\)$/);
    expect(Buffer.byteLength(big.details)).toBeLessThanOrEqual(MAX_DETAILS_BYTES);
    // The same connection keeps serving.
    await s.rpc('createAtespace', { atespace: { metadata: { name: 'after-big' } } });
  });

  it('a list returns at most 1000 items whatever page_size asks for, with a token for the rest; bad sizes and tokens are refused', async () => {
    expect(MAX_PAGE_SIZE).toBe(1000);
    for (let i = 0; i < 1001; i++) await s.h.api.createAtespace({ atespace: { metadata: { atespace: '', name: `a-${i}`, uid: '', version: 0 } } });
    const page = await s.rpc<ateapi.ListAtespacesResponse>('listAtespaces', { pageSize: 2_147_483_647 });
    expect(page.atespaces).toHaveLength(1000);
    expect(page.nextPageToken).not.toBe('');
    const rest = await s.rpc<ateapi.ListAtespacesResponse>('listAtespaces', { pageSize: 2_147_483_647, pageToken: page.nextPageToken });
    expect(rest.atespaces.length).toBeGreaterThan(0);
    expect(rest.atespaces.length).toBeLessThanOrEqual(1000);
    expect((await s.rpc<ateapi.ListAtespacesResponse>('listAtespaces', {})).atespaces).toHaveLength(100);
    await expectCode(s.rpc('listAtespaces', { pageSize: -1 }), grpc.status.INVALID_ARGUMENT, /page_size/);
    await expectCode(s.rpc('listActors', { pageToken: 'x'.repeat(300) }), grpc.status.INVALID_ARGUMENT, 'page_token: Too long: may not be more than 256 bytes');
  });

  it('an ActorTemplate past its bounds (env, command, limits, storage location) is refused and nothing is stored', async () => {
    await s.rpc('createAtespace', { atespace: { metadata: { name: 'b' } } });
    const image = await defaultImageRef(s.stateDir);
    const big = (edit: (t: ateapi.ActorTemplate) => void) => {
      const t = counterTemplate('b', 'big', image);
      edit(t);
      return t;
    };
    const cases: Array<[string, (t: ateapi.ActorTemplate) => void, RegExp]> = [
      ['33 env vars', (t) => (t.containers[0]!.env = Array.from({ length: 33 }, (_, i) => ({ name: `E${i}`, value: 'v' }))), /containers\[0\]\.env: Too many: 33: must have at most 32 items/],
      ['a 32 KiB + 1 env value', (t) => (t.containers[0]!.env = [{ name: 'E', value: 'v'.repeat(32769) }]), /containers\[0\]\.env\[0\]\.value: Too long/],
      ['65 command items', (t) => (t.containers[0]!.command = Array.from({ length: 65 }, () => 'x')), /containers\[0\]\.command: Too many: 65/],
      ['3 limits', (t) => (t.resources = { limits: [{ name: 'cpu', quantity: '1' }, { name: 'memory', quantity: '1Gi' }, { name: 'x', quantity: '1' }] }), /resources\.limits: Too many: 3/],
      ['a 1025-byte storage location', (t) => (t.snapshotConfig!.storageLocation = `gs://b/${'x'.repeat(1020)}`), /snapshot_config\.storage_location: Too long/],
    ];
    for (const [what, edit, why] of cases) {
      const e = await expectCode(s.rpc('createActorTemplate', { actorTemplate: big(edit) }), grpc.status.INVALID_ARGUMENT);
      expect(e.details, what).toMatch(why);
      // Errors never echo a (possibly secret) env value.
      expect(e.details).not.toContain('v'.repeat(100));
    }
    expect((await s.rpc<ateapi.ListActorTemplatesResponse>('listActorTemplates', { atespace: 'b' })).actorTemplates).toEqual([]);
  });

  it("an Actor's worker_selector holds at most 10 labels", async () => {
    const matchLabels = Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`k${i}`, 'v']));
    await expectCode(
      s.rpc('createActor', { actor: { metadata: { atespace: 'b', name: 'a' }, actorTemplate: { atespace: 'b', name: 'big' }, workerSelector: { matchLabels } } }),
      grpc.status.INVALID_ARGUMENT,
      'actor.worker_selector.match_labels: Too many: 11: must have at most 10 items',
    );
  });
});

describe('the worker slot ceiling', () => {
  it('without a configured maximum, no pool makes the instance hold more than MAX_LOCAL_WORKERS slots', async () => {
    const db = new Database(':memory:');
    let prepared = 0;
    const w = new Workers({
      db,
      runtime: { prepareWorker: async () => void prepared++ },
      slotOf: (idx, node) => ({ index: idx, node, netns: `bounds-w${idx}`, ip: '10.0.0.1' }),
      defaultReplicas: 2,
    });
    try {
      await w.start();
      await w.applyWorkerPool({ namespace: 'default', name: 'huge', labels: {}, replicas: 2_000_000_000, sandboxClass: 'gvisor', workerImage: 'w' });
      await w.applyWorkerPool({ namespace: 'default', name: 'huger', labels: {}, replicas: 2_000_000_000, sandboxClass: 'gvisor', workerImage: 'w' });
      expect(w.rows()).toHaveLength(MAX_LOCAL_WORKERS);
      expect(prepared).toBe(MAX_LOCAL_WORKERS);
    } finally {
      db.close();
    }
  });
});

describe('manifests', () => {
  it('local apply reads at most 3 MiB of manifests', () => {
    expect(MAX_MANIFEST_BYTES).toBe(3 * 1024 * 1024);
    const big = `apiVersion: ate.dev/v1alpha1\nkind: Atespace\nmetadata:\n  name: a\n  annotations:\n    x: "${'y'.repeat(MAX_MANIFEST_BYTES)}"\n`;
    expect(() => parseManifests(big)).toThrow(/at most 3 MiB are read at once/);
  });
});
