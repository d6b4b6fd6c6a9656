// Issue 7, item 2: every listener of the local Substrate authenticates or is private. A real local Substrate
// (gVisor runtime, SQLite catalog, gRPC and HTTP listeners) in a temporary state directory.
import http from 'node:http';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVerifier } from '../../src/local/auth.js';
import { serveControl } from '../../src/local/grpc.js';
import { kubeAccessOf, readLocalJson } from '../../src/local/index.js';
import { startRouter } from '../../src/local/router.js';
import { ConfigError, loadConfig } from '../../src/common/config.js';
import { DriverMetrics, serveMetrics } from '../../src/driver/metrics.js';
import { controlClient, expectCode, startTestSubstrate, type TestSubstrate } from '../local/helpers.js';

/** A raw HTTP request with exactly the headers given (fetch would add its own Host and no Origin). */
function raw(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string; path: string }): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method: opts.method ?? 'GET', path: opts.path, headers: opts.headers, setHost: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe('the resource API (while it exists)', () => {
  let s: TestSubstrate;
  let host: string;
  let auth: string;
  beforeAll(async () => {
    s = await startTestSubstrate({ workers: 1 });
    host = new URL(s.h.kube.url).host;
    auth = `Bearer ${s.h.kube.token}`;
  });
  afterAll(async () => {
    await s?.close();
  });

  it('refuses a token read without the bearer token, and with a wrong one', async () => {
    const anon = await raw(s.h.kube.url, { path: '/api/v1/secrets', headers: { host } });
    expect(anon.status).toBe(401);
    expect(anon.body).not.toContain(s.h.kube.token);
    const wrong = await raw(s.h.kube.url, { path: '/api/v1/secrets', headers: { host, authorization: `Bearer ${'x'.repeat(s.h.kube.token.length)}` } });
    expect(wrong.status).toBe(401);
    const ok = await raw(s.h.kube.url, { path: '/api/v1/secrets', headers: { host, authorization: auth } });
    expect(ok.status).toBe(200);
  });

  it('refuses cross-site requests: a foreign Host (DNS rebinding), an Origin, and "simple" content types', async () => {
    const rebound = await raw(s.h.kube.url, { path: '/api/v1/secrets', headers: { host: `attacker.example:${new URL(s.h.kube.url).port}`, authorization: auth } });
    expect(rebound.status).toBe(403);
    const fromPage = await raw(s.h.kube.url, { path: '/api/v1/secrets', headers: { host, origin: 'http://attacker.example', authorization: auth } });
    expect(fromPage.status).toBe(403);
    const ns = JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'simple' } });
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data', '']) {
      const headers: Record<string, string> = { host, authorization: auth };
      if (type) headers['content-type'] = type;
      const r = await raw(s.h.kube.url, { method: 'POST', path: '/api/v1/namespaces', headers, body: ns });
      expect(r.status, `content type "${type}"`).toBe(415);
    }
    const json = await raw(s.h.kube.url, { method: 'POST', path: '/api/v1/namespaces', headers: { host, authorization: auth, 'content-type': 'application/json' }, body: ns });
    expect(json.status).toBe(201);
  });

  it('advertises the token only through a 0600 file named in local.json, with a per-start nonce', async () => {
    const lj = readLocalJson(s.stateDir)!;
    expect(lj.nonce).toMatch(/^[0-9a-f]{32}$/);
    expect(lj.nonce).toBe(s.h.nonce);
    expect(JSON.stringify(lj)).not.toContain(s.h.kube.token);
    expect(statSync(lj.kube_token_path).mode & 0o777).toBe(0o600);
    expect(kubeAccessOf(lj)).toEqual(s.h.kube);
    const before = lj.nonce;
    await s.restart();
    const after = readLocalJson(s.stateDir)!;
    expect(after.nonce).not.toBe(before);
    expect(readFileSync(after.kube_token_path, 'utf8').trim()).toBe(s.h.kube.token);
  });

  it('keeps DebugClear off unless enabled', async () => {
    await expectCode(s.rpc('debugClear', {}), grpc.status.PERMISSION_DENIED, /--enable-debug-clear/);
    await s.rpc('createAtespace', { name: 'kept' });
    expect((await s.rpc<{ atespace: { name: string } }>('getAtespace', { name: 'kept' })).atespace.name).toBe('kept');
  });

  it('the instance Unix socket is 0600 and needs no token', async () => {
    const sock = s.h.apiEndpoint.replace(/^unix:/, '');
    expect(statSync(sock).mode & 0o777).toBe(0o600);
    expect(Array.isArray((await s.rpc<{ atespaces: unknown[] }>('listAtespaces', {})).atespaces)).toBe(true);
  });

  it('ateapi on loopback TCP: refused without JWT auth configured; anonymous calls UNAUTHENTICATED', async () => {
    await expect(serveControl(s.h.control, { address: '127.0.0.1:0' })).rejects.toThrow(/requires bearer-JWT auth/);
    const dir = mkdtempSync(join(tmpdir(), 'sec-jwt-'));
    try {
      const keys = await generateKeyPair('EdDSA', { extractable: true });
      writeFileSync(join(dir, 'k.pem'), await exportSPKI(keys.publicKey));
      const verifier = await createVerifier({ publicKeyPath: join(dir, 'k.pem'), issuer: 'iss', audience: 'aud' });
      const srv = await serveControl(s.h.control, { address: '127.0.0.1:0', verifier });
      const c = controlClient(srv.target);
      try {
        await expectCode(c.rpc('listAtespaces', {}), grpc.status.UNAUTHENTICATED, 'missing bearer token');
        const md = new grpc.Metadata();
        md.set('authorization', `Bearer ${await new SignJWT({}).setProtectedHeader({ alg: 'EdDSA' }).setIssuer('iss').setAudience('aud').setIssuedAt().setExpirationTime('5m').sign(keys.privateKey)}`);
        expect(Array.isArray((await c.rpc<{ atespaces: unknown[] }>('listAtespaces', {}, md)).atespaces)).toBe(true);
      } finally {
        c.close();
        await srv.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the driver's metrics listener", () => {
  it('is loopback unless metrics_allow_remote, named by config key and source', () => {
    const e = (() => {
      try {
        loadConfig({ env: {}, flags: { metrics_listen: '0.0.0.0:9090' } });
      } catch (x) {
        return x as ConfigError;
      }
      throw new Error('accepted');
    })();
    expect(e.key).toBe('metrics_listen');
    expect(e.message).toMatch(/not loopback.*metrics_allow_remote/);
    expect(loadConfig({ env: {}, flags: { metrics_listen: '0.0.0.0:9090', metrics_allow_remote: true } }).metricsListen).toBe('0.0.0.0:9090');
  });

  it('on loopback answers only a local client naming its address: no rebinding Host, no browser Origin', async () => {
    const m = await serveMetrics('127.0.0.1:0', new DriverMetrics({ defaultMetrics: false }), () => true);
    try {
      const url = `http://${m.address}`;
      expect((await raw(url, { path: '/metrics', headers: { host: m.address } })).status).toBe(200);
      expect((await raw(url, { path: '/metrics', headers: { host: `localhost:${new URL(url).port}` } })).status).toBe(200);
      expect((await raw(url, { path: '/metrics', headers: { host: `attacker.example:${new URL(url).port}` } })).status).toBe(403);
      expect((await raw(url, { path: '/metrics', headers: { host: m.address, origin: 'http://attacker.example' } })).status).toBe(403);
    } finally {
      await m.close();
    }
  });
});

describe('the router', () => {
  it('refuses a non-loopback bind unless explicitly allowed', async () => {
    const backend = { resume: async () => ({}) as never, connect: async () => { throw new Error('unused'); } };
    await expect(startRouter(backend, { listen: { host: '0.0.0.0', port: 0 } })).rejects.toThrow(/not loopback.*--router-allow-remote/);
    const r = await startRouter(backend, { listen: { host: '0.0.0.0', port: 0 }, allowRemote: true });
    await r.close();
  });

  it('answers 504 when a resume outlasts the per-request budget', async () => {
    const never = new Promise<never>(() => undefined);
    const backend = { resume: () => never, connect: () => never };
    const r = await startRouter(backend, { listen: { host: '127.0.0.1', port: 0 }, resumeBudgetMs: 300 });
    try {
      const t0 = Date.now();
      const res = await raw(r.url, { path: '/', headers: { host: 'a1.space.actors.resources.substrate.ate.dev' } });
      expect(res.status).toBe(504);
      expect(res.body).toBe('actor space/a1 request timed out (no answer on port 80 within 300 ms)\n');
      expect(Date.now() - t0).toBeLessThan(5_000);
    } finally {
      await r.close();
    }
  });
});
