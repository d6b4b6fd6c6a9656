// A driver that found a local Substrate through local.json asks, before every call to its resource API,
// which instance runs now (pid and per-start nonce): it follows a restarted instance to its new port and
// token, and never sends a request (with the token) to the old address of an instance that is gone.
// (The API servers here are the stand-in for a Kubernetes API server from src/template/apiserver.ts.)
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ApiError, Code } from '../../src/common/errors.js';
import { memoryStorage, startApiServer } from '../../src/template/apiserver.js';
import { instanceStore, type StoreInstance } from '../../src/template/store.js';

describe('instanceStore', () => {
  it('follows a restarted instance to its new address and token', async () => {
    const storage = memoryStorage();
    const a = await startApiServer({ storage });
    const b = await startApiServer({ storage });
    let now: StoreInstance = { id: 'nonce-a', access: a };
    const store = instanceStore(() => now);
    try {
      await store.putSecret('default', 'rec-1', { token: 'x' }, { app: 't' });
      await a.close();
      now = { id: 'nonce-b', access: b };
      expect((await store.getSecret('default', 'rec-1'))?.data.token).toBe('x');
      expect(await store.getSecret('default', 'absent')).toBeNull();
    } finally {
      await b.close();
    }
  });

  it('sends nothing to the old port once no instance runs, whoever listens there now', async () => {
    const a = await startApiServer({ storage: memoryStorage() });
    const port = Number(new URL(a.url).port);
    let running = true;
    const store = instanceStore(() => {
      if (!running) throw new ApiError(Code.UNAVAILABLE, 'the local Substrate is not running');
      return { id: 'nonce-a', access: a };
    });
    await store.ensureNamespace('default');
    await a.close();
    running = false;
    // Another process takes the remembered port.
    const seen: string[] = [];
    const impostor = http.createServer((req, res) => {
      seen.push(String(req.headers.authorization ?? ''));
      res.end('{}');
    });
    await new Promise<void>((r) => impostor.listen(port, '127.0.0.1', () => r()));
    try {
      expect((impostor.address() as AddressInfo).port).toBe(port);
      await expect(store.getSecret('default', 'x')).rejects.toMatchObject({ code: Code.UNAVAILABLE });
      expect(seen).toEqual([]);
    } finally {
      impostor.close();
    }
  });
});
