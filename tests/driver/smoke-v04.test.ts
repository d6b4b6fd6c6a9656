import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readyOf, routerGet, sandboxOf, startEnv, waitSandbox, type TestEnv } from './helpers.js';

describe('driver smoke on v0.4', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await startEnv();
  }, 120_000);
  afterAll(async () => {
    await env?.close();
  }, 120_000);
  it('create, ready, router, stop, start, delete', async () => {
    const sb = sandboxOf({ image: env.image, workspace: 'ws1' });
    const t0 = Date.now();
    await env.client.createSandbox(sb);
    const got = await waitSandbox(env.client, sb.id, (s) => readyOf(s)?.status === 'True', 120_000);
    console.log('create→ready ms', Date.now() - t0);
    expect(readyOf(got)?.status).toBe('True');
    const r = await routerGet(env.local.routerUrl, sb.id, 'ws1', '/count');
    expect(r.status).toBe(200);
    await env.client.stopSandbox(sb.id);
    await env.client.startSandbox(sb.id);
    const r2 = await routerGet(env.local.routerUrl, sb.id, 'ws1', '/count');
    expect(JSON.parse(r2.body).n).toBe(JSON.parse(r.body).n + 1);
    const sb2 = sandboxOf({ image: env.image, workspace: 'ws1' });
    const t1 = Date.now();
    await env.client.createSandbox(sb2);
    await waitSandbox(env.client, sb2.id, (s) => readyOf(s)?.status === 'True', 120_000);
    console.log('second create→ready ms', Date.now() - t1);
    expect(await env.client.deleteSandbox(sb.id)).toBe(true);
    expect(await env.client.deleteSandbox(sb2.id)).toBe(true);
  }, 300_000);
});
