// The router on Substrate v0.4's addressing: the ate-target-actor header (and CONNECT for other ports), the
// local Host form, upstream's status bodies, waiting for a cold-booted actor's port, and a client that leaves.
// A real local Substrate; the last case uses a router over a backend that stands in for a slow resume.
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRouter, TARGET_ACTOR_HEADER } from '../../src/local/router.js';
import { applyObject, counterTemplate, defaultImageRef, startTestSubstrate, waitTemplateReady, type TestSubstrate } from './helpers.js';

/** Two listeners: the counter on 80, and 9090 answering "port 9090". The second template starts listening 2 s late. */
const TWO_PORTS_JS = `
const http = require('http'); let n = 0;
const serve = () => {
  http.createServer((q, s) => { if (q.url === '/readyz') return s.end('ok'); n++; s.end(JSON.stringify({ n, target: q.headers['ate-target-actor'] || null })); }).listen(80);
  http.createServer((q, s) => s.end('port 9090')).listen(9090);
};
setTimeout(serve, Number(process.env.LISTEN_AFTER_MS || 0));
`;

function get(url: string, headers: Record<string, string>, path = '/'): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path, headers, setHost: false, timeout: 30_000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** CONNECT through the router to host:port with the header on the outer request, then one GET in the tunnel. */
function connectGet(url: string, target: string, hostPort: string): Promise<{ status: number; tunnelled: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method: 'CONNECT', path: hostPort, headers: { [TARGET_ACTOR_HEADER]: target } });
    req.on('connect', (res, sock) => {
      if (res.statusCode !== 200) return resolve({ status: res.statusCode ?? 0, tunnelled: '' });
      let out = '';
      sock.on('data', (d) => (out += d));
      sock.on('end', () => resolve({ status: 200, tunnelled: out }));
      sock.write(`GET / HTTP/1.1\r\nhost: ${hostPort}\r\nconnection: close\r\n\r\n`);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('router', () => {
  let s: TestSubstrate;
  beforeAll(async () => {
    s = await startTestSubstrate({ workers: 3 });
    const image = await defaultImageRef(s.stateDir);
    const two = counterTemplate('two', image);
    two.spec.containers[0]!.command = ['/usr/bin/node', '-e', TWO_PORTS_JS];
    expect((await applyObject(s.h.kube, two as never)).status).toBeLessThan(300);
    await waitTemplateReady(s.h.kube, 'default', 'two');
    await s.rpc('createAtespace', { name: 'rt' });
    await s.rpc('createActor', { actorRef: { atespace: 'rt', name: 'a1' }, actorTemplateNamespace: 'default', actorTemplateName: 'two' });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('routes by ate-target-actor (resuming on demand), which wins over Host, and rewrites it for the actor', async () => {
    const r = await get(s.h.routerUrl, { host: 'app.example', [TARGET_ACTOR_HEADER]: 'rt/a1' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ n: 1, target: 'rt/a1' });
    const both = await get(s.h.routerUrl, { host: 'other.nowhere.actors.resources.substrate.ate.dev', [TARGET_ACTOR_HEADER]: ' rt/a1 ' });
    expect(JSON.parse(both.body).n).toBe(2);
    // The local Host form still works.
    expect(JSON.parse((await get(s.h.routerUrl, { host: 'a1.rt.actors.resources.substrate.ate.dev' })).body).n).toBe(3);
  });

  it('answers 404 "invalid actor reference" for a missing or malformed reference, never falling back to Host', async () => {
    for (const headers of [{ host: 'app.example' }, { host: 'a1.rt.actors.resources.substrate.ate.dev', [TARGET_ACTOR_HEADER]: 'rt' }, { host: 'x', [TARGET_ACTOR_HEADER]: 'rt/a1/x' }, { host: 'x', [TARGET_ACTOR_HEADER]: 'RT/A_1' }]) {
      const r = await get(s.h.routerUrl, headers as Record<string, string>);
      expect(r.status, JSON.stringify(headers)).toBe(404);
      expect(r.body).toBe('invalid actor reference\n');
    }
    const missing = await get(s.h.routerUrl, { host: 'x', [TARGET_ACTOR_HEADER]: 'rt/nobody' });
    expect(missing).toEqual({ status: 404, body: expect.stringMatching(/^actor rt\/nobody not found/) });
  });

  it('CONNECT with the header on the outer request reaches another port of the actor', async () => {
    const r = await connectGet(s.h.routerUrl, 'rt/a1', 'actor-upstream:9090');
    expect(r.status).toBe(200);
    expect(r.tunnelled).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(r.tunnelled).toMatch(/port 9090$/);
    expect((await connectGet(s.h.routerUrl, 'nope', 'actor-upstream:9090')).status).toBe(404);
  });

  it("waits for a cold-booted actor's port instead of answering 502 ECONNREFUSED", async () => {
    // A template applied without waiting for its golden snapshot (taken 20 s after its golden actor starts,
    // as it has no readyz): the first request boots the actor cold, and its server listens only 2 s after start.
    const late = counterTemplate('late', await defaultImageRef(s.stateDir), { readyz: false });
    late.spec.containers[0]!.command = ['/usr/bin/node', '-e', TWO_PORTS_JS];
    late.spec.containers[0]!.env = [{ name: 'LISTEN_AFTER_MS', value: '2000' }];
    expect((await applyObject(s.h.kube, late as never)).status).toBeLessThan(300);
    await s.rpc('createActor', { actorRef: { atespace: 'rt', name: 'cold' }, actorTemplateNamespace: 'default', actorTemplateName: 'late' });
    const t0 = Date.now();
    const r = await get(s.h.routerUrl, { host: 'x', [TARGET_ACTOR_HEADER]: 'rt/cold' });
    expect(r.status, r.body).toBe(200);
    expect(JSON.parse(r.body).n).toBe(1);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
  });
});

describe('router: a client that leaves', () => {
  it('stops routing when the client goes away during the resume: no connection is opened for it', async () => {
    let connects = 0;
    // STAND-IN for a slow ResumeActor (500 ms), so the client can leave in the middle of it.
    const backend = {
      resume: () => new Promise<never>((r) => setTimeout(() => r({} as never), 500)),
      connect: async () => {
        connects++;
        return new net.Socket();
      },
    };
    const router = await startRouter(backend, { listen: { host: '127.0.0.1', port: 0 } });
    try {
      const u = new URL(router.url);
      await new Promise<void>((resolve) => {
        const req = http.request({ host: u.hostname, port: u.port, headers: { [TARGET_ACTOR_HEADER]: 'a/b' } });
        req.on('error', () => resolve());
        req.end();
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 100);
      });
      await new Promise((r) => setTimeout(r, 800));
      expect(connects).toBe(0);
    } finally {
      await router.close();
    }
  });
});
