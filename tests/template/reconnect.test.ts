// A driver that found a local Substrate through local.json keeps working when that Substrate restarts on
// another resource-API port: on ECONNREFUSED the store asks where the API is now and retries once.
// (The API servers here are the stand-in for a Kubernetes API server from src/template/apiserver.ts.)
import { describe, expect, it } from 'vitest';
import { memoryStorage, startApiServer } from '../../src/template/apiserver.js';
import { kubeConfigFor, kubeTemplateStore, reconnectingStore } from '../../src/template/store.js';

describe('reconnectingStore', () => {
  it('follows the API to its new address after the old one stops answering, and reports other errors as they are', async () => {
    const storage = memoryStorage();
    const a = await startApiServer({ storage });
    const b = await startApiServer({ storage });
    let asked = 0;
    const store = reconnectingStore(kubeTemplateStore(kubeConfigFor(a.url)), () => {
      asked++;
      return kubeTemplateStore(kubeConfigFor(b.url));
    });
    try {
      await store.putSecret('default', 'rec-1', { token: 'x' }, { app: 't' });
      expect(asked).toBe(0);
      await a.close(); // the old port now refuses connections
      const got = await store.getSecret('default', 'rec-1');
      expect(got?.data.token).toBe('x');
      expect(asked).toBe(1);
      expect(await store.getSecret('default', 'absent')).toBeNull();
      expect(asked).toBe(1);
    } finally {
      await b.close();
    }
  });

  it('gives the original refusal when there is nowhere to go', async () => {
    const a = await startApiServer({ storage: memoryStorage() });
    const store = reconnectingStore(kubeTemplateStore(kubeConfigFor(a.url)), () => null);
    await a.close();
    await expect(store.getSecret('default', 'x')).rejects.toThrow(/ECONNREFUSED/);
  });
});
