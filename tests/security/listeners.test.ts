// Issue 7, item 2: every listener of the local Substrate authenticates or is private. A real local Substrate
// (gVisor runtime, SQLite state, gRPC and HTTP listeners) in a temporary state directory.
//
// Substrate v0.4: the Kubernetes-shaped resource API (its bearer token, kube.token, kube_url) is gone. What a
// local Substrate listens on is now: its owner-only Unix socket (ateapi.Control and the LocalAdmin service, no
// token: mode 0600 in the 0700 state directory), the runtime's egress socket (0600, same directory), the router
// on loopback, and, only when asked for, ateapi on TCP, which requires a JWT verifier or a client CA
// (allowUnauthenticatedLoopback only on loopback). The listeners are read from /proc (this process's sockets in
// LISTEN state), so a listener nobody meant to open would show.
import http from 'node:http';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLocalJson, startLocalSubstrate, type LocalSubstrateHandle } from '../../src/local/index.js';
import { instancePaths } from '../../src/local/runtime/index.js';
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

/** The sockets this process listens on: TCP as "address:port" (hex address as /proc has it), Unix by path. */
function listening(): { tcp: Array<{ loopback: boolean; port: number }>; unix: string[] } {
  const inodes = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const tcp: Array<{ loopback: boolean; port: number }> = [];
  for (const f of ['/proc/self/net/tcp', '/proc/self/net/tcp6']) {
    if (!existsSync(f)) continue;
    for (const line of readFileSync(f, 'utf8').trim().split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c[3] !== '0A' || !inodes.has(c[9]!)) continue;
      const [addr, port] = c[1]!.split(':') as [string, string];
      // 0100007F is 127.0.0.1; ::1 is 00000000000000000000000001000000.
      const loopback = addr.endsWith('7F') || addr === '00000000000000000000000001000000';
      tcp.push({ loopback, port: parseInt(port, 16) });
    }
  }
  const unix: string[] = [];
  for (const line of readFileSync('/proc/self/net/unix', 'utf8').trim().split('\n').slice(1)) {
    const c = line.trim().split(/\s+/);
    // Flags 00010000: __SO_ACCEPTCON (listening).
    if (c[3] === '00010000' && inodes.has(c[6]!) && c[7]) unix.push(c[7]);
  }
  return { tcp, unix };
}

const mode = (p: string) => statSync(p).mode & 0o777;

describe('what a local Substrate listens on', () => {
  let s: TestSubstrate;
  let before: ReturnType<typeof listening>;
  beforeAll(async () => {
    before = listening();
    s = await startTestSubstrate({ workers: 1 });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('one loopback TCP port, the router; Unix sockets only 0600 in its 0700 state directory', async () => {
    const now = listening();
    const newTcp = now.tcp.filter((t) => !before.tcp.some((b) => b.port === t.port));
    expect(newTcp).toEqual([{ loopback: true, port: Number(new URL(s.h.routerUrl).port) }]);
    const newUnix = now.unix.filter((u) => !before.unix.includes(u)).sort();
    expect(newUnix).toEqual([s.h.socketPath, instancePaths(s.stateDir).egressSock].sort());
    for (const p of newUnix) {
      expect(mode(p), p).toBe(0o600);
      // Every directory from the socket up to the state directory is private.
      for (let d = dirname(p); d.startsWith(s.stateDir); d = dirname(d)) expect(mode(d) & 0o077, d).toBe(0);
    }
    expect(mode(s.stateDir)).toBe(0o700);
  });

  it('the Unix socket needs no token and serves the admin service; the API endpoint is that socket', async () => {
    expect(s.h.apiEndpoint).toBe(`unix:${s.h.socketPath}`);
    expect(s.h.apiTls).toBe(false);
    expect(Array.isArray((await s.rpc<{ atespaces: unknown[] }>('listAtespaces', {})).atespaces)).toBe(true);
  });

  it('local.json names the socket and router with a per-start nonce, and no resource API or token', async () => {
    const lj = readLocalJson(s.stateDir)!;
    expect(lj.nonce).toMatch(/^[0-9a-f]{32}$/);
    expect(lj.nonce).toBe(s.h.nonce);
    expect(lj.socket_path).toBe(s.h.socketPath);
    expect(lj.router_url).toBe(s.h.routerUrl);
    expect(Object.keys(lj).sort()).toEqual(['api_endpoint', 'api_tls', 'nonce', 'pid', 'router_url', 'socket_path', 'started_at', 'state_dir']);
    expect(mode(join(s.stateDir, 'local.json'))).toBe(0o600);
    expect(existsSync(join(s.stateDir, 'kube.token'))).toBe(false);
    const first = lj.nonce;
    await s.restart();
    const after = readLocalJson(s.stateDir)!;
    expect(after.nonce).not.toBe(first);
    expect(after.nonce).toBe(s.h.nonce);
  });
});

describe('ateapi on TCP', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('does not start without authentication (not even on loopback), nor plaintext or unauthenticated off loopback; nothing is left listening', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'sec-tcp-'));
    dirs.push(stateDir);
    const before = listening();
    const base = { stateDir, workers: 1, routerListen: '127.0.0.1:0' };
    await expect(startLocalSubstrate({ ...base, listen: '127.0.0.1:0' })).rejects.toThrow(/requires authentication/);
    await expect(startLocalSubstrate({ ...base, listen: '0.0.0.0:0', allowUnauthenticatedLoopback: true })).rejects.toThrow(/not loopback.*requires TLS/);
    await expect(
      startLocalSubstrate({ ...base, listen: '0.0.0.0:0', allowUnauthenticatedLoopback: true, tls: { certPath: join(stateDir, 'none.pem'), keyPath: join(stateDir, 'none.key') } }),
    ).rejects.toThrow(/allowUnauthenticatedLoopback applies to loopback addresses only/);
    // Each refused start released everything: no listener, no local.json, and the state directory starts again.
    const after = listening();
    expect(after.tcp.filter((t) => !before.tcp.some((b) => b.port === t.port))).toEqual([]);
    expect(after.unix.filter((u) => !before.unix.includes(u))).toEqual([]);
    expect(existsSync(join(stateDir, 'local.json'))).toBe(false);
  });

  it('with a JWT verifier: anonymous and forged calls UNAUTHENTICATED, a valid token served, the admin service absent', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'sec-tcp-'));
    dirs.push(stateDir);
    const keys = await generateKeyPair('EdDSA', { extractable: true });
    const other = await generateKeyPair('EdDSA', { extractable: true });
    writeFileSync(join(stateDir, 'k.pem'), await exportSPKI(keys.publicKey));
    const h: LocalSubstrateHandle = await startLocalSubstrate({
      stateDir,
      workers: 1,
      routerListen: '127.0.0.1:0',
      listen: '127.0.0.1:0',
      auth: { publicKeyPath: join(stateDir, 'k.pem'), issuer: 'iss', audience: 'aud' },
    });
    const c = controlClient(h.apiEndpoint);
    try {
      expect(h.apiEndpoint).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(readLocalJson(stateDir)!.api_endpoint).toBe(h.apiEndpoint);
      await expectCode(c.rpc('listAtespaces', {}), grpc.status.UNAUTHENTICATED, 'missing bearer token');
      const token = (k: CryptoKey) => new SignJWT({}).setProtectedHeader({ alg: 'EdDSA' }).setIssuer('iss').setAudience('aud').setIssuedAt().setExpirationTime('5m').sign(k);
      const forged = new grpc.Metadata();
      forged.set('authorization', `Bearer ${await token(other.privateKey)}`);
      const e = await expectCode(c.rpc('listAtespaces', {}, forged), grpc.status.UNAUTHENTICATED, 'invalid bearer token');
      expect(e.details).not.toContain('eyJ');
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${await token(keys.privateKey)}`);
      expect(Array.isArray((await c.rpc<{ atespaces: unknown[] }>('listAtespaces', {}, md)).atespaces)).toBe(true);
      // The admin service (WorkerPools, SandboxConfigs) exists only on the Unix socket, token or not.
      const admin = await new Promise<grpc.ServiceError | null>((resolve) =>
        c.client.makeUnaryRequest('/substrate.local.v1.LocalAdmin/ListWorkerPools', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), md, (err) => resolve(err)),
      );
      expect(admin?.code).toBe(grpc.status.UNIMPLEMENTED);
      // The instance's own Unix socket is still there for local tools, without a token.
      const local = controlClient(`unix:${h.socketPath}`);
      try {
        expect(Array.isArray((await local.rpc<{ atespaces: unknown[] }>('listAtespaces', {})).atespaces)).toBe(true);
      } finally {
        local.close();
      }
    } finally {
      c.close();
      await h.stop();
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
  it('refuses a non-loopback bind unless explicitly allowed, and so does a local Substrate asked for one', async () => {
    const backend = { resume: async () => ({}) as never, connect: async () => { throw new Error('unused'); } };
    await expect(startRouter(backend, { listen: { host: '0.0.0.0', port: 0 } })).rejects.toThrow(/not loopback.*--router-allow-remote/);
    const r = await startRouter(backend, { listen: { host: '0.0.0.0', port: 0 }, allowRemote: true });
    await r.close();
    const stateDir = mkdtempSync(join(tmpdir(), 'sec-router-'));
    try {
      await expect(startLocalSubstrate({ stateDir, workers: 1, routerListen: '0.0.0.0:0' })).rejects.toThrow(/not loopback.*--router-allow-remote/);
      expect(existsSync(join(stateDir, 'local.json'))).toBe(false);
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
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
