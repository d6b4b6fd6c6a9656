// Issue 7, item 8 (bounds): what one request or manifest can make the local Substrate hold is bounded —
// worker slots across pools, manifest size, open watches, and watch history.
import { afterAll, describe, expect, it } from 'vitest';
import { memoryStorage, startApiServer } from '../../src/template/apiserver.js';
import { MAX_MANIFEST_BYTES, parseManifests } from '../../src/template/manifests.js';
import { applyObject, startTestSubstrate, type TestSubstrate } from '../local/helpers.js';

describe('bounds', () => {
  let s: TestSubstrate | undefined;
  afterAll(async () => {
    await s?.close();
  });

  it('a WorkerPool asking for more replicas than the instance holds gets what fits, and the instance keeps serving', async () => {
    s = await startTestSubstrate({ workers: 2, maxWorkers: 4 });
    const pool = {
      apiVersion: 'ate.dev/v1alpha1',
      kind: 'WorkerPool',
      metadata: { name: 'huge', namespace: 'default' },
      spec: { replicas: 2_000_000_000, ateomImage: `ateom@sha256:${'c'.repeat(64)}` },
    };
    expect((await applyObject(s.h.kube, pool)).status).toBeLessThan(300);
    let workers: Array<{ workerPoolName?: string }> = [];
    for (let i = 0; i < 100; i++) {
      workers = (await s.rpc<{ workers: Array<{ workerPoolName?: string }> }>('listWorkers', {})).workers;
      if (workers.length >= 4) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 500));
    workers = (await s.rpc<{ workers: Array<{ workerPoolName?: string }> }>('listWorkers', {})).workers;
    expect(workers).toHaveLength(4);
  });

  it('local apply reads at most 3 MiB of manifests', () => {
    const big = `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  annotations:\n    x: "${'y'.repeat(MAX_MANIFEST_BYTES)}"\n`;
    expect(() => parseManifests(big)).toThrow(/at most 3 MiB are read at once/);
  });

  it('the resource API holds at most 256 open watches, and refuses a history size out of range', async () => {
    const api = await startApiServer({ storage: memoryStorage() });
    const aborts: AbortController[] = [];
    try {
      const open = async () => {
        const ac = new AbortController();
        aborts.push(ac);
        return fetch(`${api.url}/api/v1/namespaces?watch=true`, { headers: { authorization: `Bearer ${api.token}` }, signal: ac.signal });
      };
      for (let i = 0; i < 256; i++) expect((await open()).status).toBe(200);
      const refused = await open();
      expect(refused.status).toBe(429);
      expect(((await refused.json()) as { message: string }).message).toMatch(/too many open watches/);
    } finally {
      for (const a of aborts) a.abort();
      await api.close();
    }
    await expect(startApiServer({ watchHistory: 10_000_000 })).rejects.toThrow(/watchHistory must be an integer from 1 to 100000/);
  });
});
