// Issue 7, item 1: untrusted input never reaches Object.prototype, and no child process inherits what a
// polluted prototype holds.
//
// The requests go to the local Substrate's resource API handler (src/template/apiserver.ts, the same code
// `local serve` runs in its root process) over real HTTP on loopback. They carry the resource API's bearer
// token where the server has one: an authenticated client must not be able to pollute either.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { memoryStorage, startApiServer, type ApiServerHandle } from '../../src/template/apiserver.js';
import { pruneUnknownFields } from '../../src/template/validate.js';
import { childEnv, spawnOptions } from '../../src/common/child-env.mjs';
import { run } from '../../src/local/runtime/exec.js';

const MARKER = 'SBX_POLLUTION_MARKER';
const proto = Object.prototype as Record<string, unknown>;

let api: ApiServerHandle;
beforeAll(async () => {
  api = await startApiServer({ storage: memoryStorage() });
});
afterAll(async () => {
  await api.close();
});
afterEach(() => {
  delete proto[MARKER];
  delete proto.env;
  delete proto.shell;
});

function send(method: string, path: string, contentType: string, body: string): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': contentType };
  const token = (api as { token?: string }).token;
  if (token) headers.authorization = `Bearer ${token}`;
  return fetch(`${api.url}${path}`, { method, headers, body });
}

/** The environment a child started by the runtime's own helper sees. */
async function childEnvironment(): Promise<string> {
  return (await run('/bin/sh', ['-c', 'env'])).stdout;
}

describe('the resource API never writes into Object.prototype', () => {
  it('server-side apply with a top-level __proto__ mapping (YAML) is refused, and children stay clean', async () => {
    const body = `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n__proto__:\n  ${MARKER}: injected\n  LD_PRELOAD: /tmp/evil.so\n`;
    const res = await send('PATCH', '/api/v1/namespaces/default?fieldManager=x', 'application/apply-patch+yaml', body);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toMatch(/__proto__/);
    expect(proto[MARKER]).toBeUndefined();
    expect(proto.LD_PRELOAD).toBeUndefined();
    expect(await childEnvironment()).not.toContain(MARKER);
  });

  it('a nested __proto__ under spec and under labels is refused as well', async () => {
    for (const body of [
      `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n  labels:\n    __proto__:\n      ${MARKER}: x\n`,
      `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\nspec:\n  __proto__:\n    ${MARKER}: x\n`,
    ]) {
      const res = await send('PATCH', '/api/v1/namespaces/default?fieldManager=x', 'application/apply-patch+yaml', body);
      expect(res.status).toBe(400);
    }
    expect(proto[MARKER]).toBeUndefined();
  });

  it('a JSON merge-patch and a create with __proto__ do not pollute', async () => {
    const json = `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"polluter"},"__proto__":{"${MARKER}":"injected"}}`;
    const patch = await send('PATCH', '/api/v1/namespaces/default', 'application/merge-patch+json', json);
    expect(patch.status).toBeGreaterThanOrEqual(400);
    const create = await send('POST', '/api/v1/namespaces', 'application/json', json);
    expect(create.status).toBe(400);
    expect(proto[MARKER]).toBeUndefined();
    expect(await childEnvironment()).not.toContain(MARKER);
    // Nothing was stored by the refused create.
    expect(await api.get('namespaces', undefined, 'polluter')).toBeNull();
  });

  it('constructor and prototype keys stay plain data: applied, read back, never followed', async () => {
    const body = `apiVersion: v1\nkind: Secret\nmetadata:\n  name: s1\n  namespace: default\nstringData:\n  constructor: a\n  prototype: b\n`;
    const res = await send('PATCH', '/api/v1/namespaces/default/secrets/s1?fieldManager=x', 'application/apply-patch+yaml', body);
    expect(res.status).toBe(201);
    const again = await send('PATCH', '/api/v1/namespaces/default/secrets/s1?fieldManager=x', 'application/apply-patch+yaml', body);
    expect(again.status).toBe(200);
    const s = (await api.get('secrets', 'default', 's1')) as unknown as { data: Record<string, string> };
    expect(Object.keys(s.data).sort()).toEqual(['constructor', 'prototype']);
    expect(typeof Object.prototype.constructor).toBe('function');
  });

  it('schema pruning treats __proto__ as the undeclared field it is', () => {
    const o = JSON.parse(`{"apiVersion":"ate.dev/v1alpha1","kind":"ActorTemplate","metadata":{"name":"t"},"__proto__":{"x":1},"spec":{"constructor":{"y":1}}}`);
    expect(pruneUnknownFields(o).sort()).toEqual(['__proto__', 'spec.constructor']);
    expect(Object.hasOwn(o, '__proto__')).toBe(false);
  });
});

describe('children get an environment built from an explicit list', () => {
  it('a polluted Object.prototype does not reach a child started by the runtime helper', async () => {
    proto[MARKER] = 'from-the-prototype';
    const env = await childEnvironment();
    expect(env).not.toContain(MARKER);
    expect(env).toMatch(/^PATH=/m);
  });

  it('nor one started with spawnOptions, even with env and shell on the prototype', async () => {
    proto.env = { [MARKER]: 'x', PATH: '/usr/bin:/bin' };
    proto.shell = '/bin/false';
    const out = await new Promise<string>((resolve, reject) => {
      const c = spawn('/usr/bin/env', [], spawnOptions({ stdio: ['ignore', 'pipe', 'inherit'] as ['ignore', 'pipe', 'inherit'] }));
      let s = '';
      c.stdout!.on('data', (b: Buffer) => (s += b.toString()));
      c.once('error', reject);
      c.once('exit', () => resolve(s));
    });
    expect(out).not.toContain(MARKER);
    expect(out).toMatch(/^PATH=/m);
  });

  it('childEnv passes only the listed names and what it is told to set', () => {
    process.env.SBX_NOT_LISTED = 'secret-ish';
    try {
      const env = childEnv({ set: { ONLY: 'this' } });
      expect(Object.getPrototypeOf(env)).toBeNull();
      expect(env.SBX_NOT_LISTED).toBeUndefined();
      expect(env.ONLY).toBe('this');
      expect(childEnv({ pass: ['SBX_NOT_LISTED'] }).SBX_NOT_LISTED).toBe('secret-ish');
    } finally {
      delete process.env.SBX_NOT_LISTED;
    }
  });
});
