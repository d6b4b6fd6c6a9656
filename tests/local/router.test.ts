// The router on Substrate v0.4's addressing: the ate-target-actor header (and CONNECT for other ports), the
// local Host form, upstream's status bodies (404 "invalid actor reference", 404 not found, 503 for a resume the
// API refuses, e.g. of a CRASHED actor, with the API's message), waiting for a cold-booted actor's port, and a
// client that leaves; and, on the same port, gRPC (h2c) routed by ate-target-actor metadata to an actor's gRPC
// server, with the router's refusals as gRPC statuses. A real local Substrate (v0.4 ActorTemplates with their
// golden snapshots); the last cases use a router over a backend that stands in for a slow or failing resume.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, Code } from '../../src/common/errors.js';
import { ActorState, type Actor, type ActorTemplate, type RevertActorResponse } from '../../src/gen/ateapi.js';
import { startRouter, TARGET_ACTOR_HEADER } from '../../src/local/router.js';
import { counterTemplate, defaultImageRef, ensureAtespace, startTestSubstrate, waitGolden, type TestSubstrate } from './helpers.js';

/** Two listeners: the counter on 80, and 9090 answering "port 9090". The second template starts listening 2 s late. */
const TWO_PORTS_JS = `
const http = require('http'); let n = 0;
const serve = () => {
  http.createServer((q, s) => { if (q.url === '/readyz') return s.end('ok'); n++; s.end(JSON.stringify({ n, target: q.headers['ate-target-actor'] || null })); }).listen(80);
  http.createServer((q, s) => s.end('port 9090')).listen(9090);
};
setTimeout(serve, Number(process.env.LISTEN_AFTER_MS || 0));
`;

/**
 * A gRPC server on port 80 written with node:http2 (the default image has no grpc-js): any method but Refuse
 * answers one length-prefixed JSON message (a counter, what it was sent, the ate-target-actor and :authority it
 * saw) and trailers grpc-status 0 and x-served-by; Refuse answers FAILED_PRECONDITION in a trailers-only
 * response. HTTP/1 on 8080 answers the readyz probe.
 */
const GRPC_JS = `
const http2 = require('http2'), http = require('http'); let n = 0;
const frame = (o) => { const b = Buffer.from(JSON.stringify(o)); const f = Buffer.alloc(5 + b.length); f.writeUInt32BE(b.length, 1); b.copy(f, 5); return f; };
http2.createServer().on('stream', (st, h) => {
  const parts = []; st.on('data', (d) => parts.push(d));
  st.on('end', () => {
    if (h[':path'] === '/test.Echo/Refuse') return st.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '9', 'grpc-message': 'refused%20by%20actor' }, { endStream: true });
    n++;
    st.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    st.on('wantTrailers', () => st.sendTrailers({ 'grpc-status': '0', 'x-served-by': 'grpc-actor' }));
    st.end(frame({ n, said: Buffer.concat(parts).subarray(5).toString(), target: h['ate-target-actor'] || null, authority: h[':authority'] }));
  });
}).listen(80);
http.createServer((q, s) => s.end('ok')).listen(8080);
`;

type Unary = { value?: { n: number; said: string; target: string | null; authority: string }; code: grpc.status; details: string; trailers: Record<string, unknown> };

/** One unary call with @grpc/grpc-js through the router (h2c, as to any http:// target), `md` as metadata. */
function unary(routerUrl: string, method: string, md: Record<string, string>, text = 'hello', authority?: string): Promise<Unary> {
  const client = new grpc.Client(new URL(routerUrl).host, grpc.credentials.createInsecure(), authority ? { 'grpc.default_authority': authority } : {});
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(md)) metadata.set(k, v);
  return new Promise<Unary>((resolve) => {
    let value: Unary['value'];
    let answered = false;
    let status: grpc.StatusObject | undefined;
    const settle = () => {
      if (!answered || !status) return;
      client.close();
      resolve({ value, code: status.code, details: status.details, trailers: status.metadata.getMap() });
    };
    const call = client.makeUnaryRequest(
      method,
      (b: Buffer) => b,
      (b: Buffer) => JSON.parse(b.toString()) as Unary['value'],
      Buffer.from(text),
      metadata,
      { deadline: Date.now() + 60_000 },
      (_e, v) => {
        value = v;
        answered = true;
        settle();
      },
    );
    call.on('status', (st) => {
      status = st;
      settle();
    });
  });
}

/** A plain (non-gRPC) HTTP/2 GET through the router. */
function h2get(routerUrl: string, headers: Record<string, string>): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const c = http2.connect(routerUrl);
    c.on('error', reject);
    const req = c.request({ ':path': '/', ...headers });
    let status = 0;
    let type = '';
    let body = '';
    req.on('response', (h) => {
      status = Number(h[':status']);
      type = String(h['content-type']);
    });
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      c.close();
      resolve({ status, type, body });
    });
    req.on('error', reject);
  });
}

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
  /** A counter-shaped template in atespace `rt` running `js`, probed on `probePort` (none when 0). */
  const template = (image: string, name: string, js: string, probePort: number, env: Array<{ name: string; value: string }> = []): ActorTemplate => {
    const t = counterTemplate('rt', name, image, { probe: probePort !== 0 });
    t.containers[0]!.command = ['/usr/bin/node', '-e', js];
    t.containers[0]!.env = env;
    if (probePort) t.containers[0]!.wakeupProbe = { httpGet: { path: '/readyz', port: probePort }, timeoutSeconds: 30 };
    return t;
  };
  const create = (name: string, tpl: string) => s.rpc<Actor>('createActor', { actor: { metadata: { atespace: 'rt', name }, actorTemplate: { atespace: 'rt', name: tpl } } });
  const state = async (name: string) => (await s.rpc<Actor>('getActor', { actor: { atespace: 'rt', name } })).status?.state;

  beforeAll(async () => {
    s = await startTestSubstrate({ workers: 4 });
    const image = await defaultImageRef(s.stateDir);
    await ensureAtespace(s.rpc, 'rt');
    for (const t of [template(image, 'two', TWO_PORTS_JS, 80), template(image, 'grpc', GRPC_JS, 8080)]) await s.rpc('createActorTemplate', { actorTemplate: t });
    await Promise.all([waitGolden(s.rpc, 'rt', 'two'), waitGolden(s.rpc, 'rt', 'grpc')]);
    await create('a1', 'two');
    await create('g1', 'grpc');
  });
  afterAll(async () => {
    await s?.close();
  });

  it('routes by ate-target-actor (resuming on demand), which wins over Host, and rewrites it for the actor', async () => {
    expect(await state('a1')).toBe(ActorState.ACTOR_STATE_SUSPENDED);
    const r = await get(s.h.routerUrl, { host: 'app.example', [TARGET_ACTOR_HEADER]: 'rt/a1' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ n: 1, target: 'rt/a1' });
    expect(await state('a1')).toBe(ActorState.ACTOR_STATE_RUNNING);
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
    expect(missing).toEqual({ status: 404, body: 'actor rt/nobody not found\n' });
  });

  it('CONNECT with the header on the outer request reaches another port of the actor', async () => {
    const r = await connectGet(s.h.routerUrl, 'rt/a1', 'actor-upstream:9090');
    expect(r.status).toBe(200);
    expect(r.tunnelled).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(r.tunnelled).toMatch(/port 9090$/);
    expect((await connectGet(s.h.routerUrl, 'nope', 'actor-upstream:9090')).status).toBe(404);
    expect((await connectGet(s.h.routerUrl, 'rt/nobody', 'actor-upstream:9090')).status).toBe(404);
  });

  it('a CRASHED actor is not resumed: 503 with the API\'s refusal, until RevertActor puts it back on its snapshot', async () => {
    await create('c1', 'two');
    expect(JSON.parse((await get(s.h.routerUrl, { host: 'x', [TARGET_ACTOR_HEADER]: 'rt/c1' })).body).n).toBe(1);
    // The worker's sandbox dies under the running actor.
    const h = s.h.actors.sandboxOf('rt', 'c1');
    expect(h).not.toBeNull();
    process.kill(h!.pid, 'SIGKILL');
    // The kill takes effect asynchronously (a ptrace-platform sandbox takes a while to die on a loaded machine):
    // once the local Substrate has recorded the crash, the router refuses to resume the actor.
    for (let i = 0; i < 400; i++) {
      const a = await s.rpc<Actor>('getActor', { actor: { atespace: 'rt', name: 'c1' } });
      if (a.status?.state === ActorState.ACTOR_STATE_CRASHED) break;
      await new Promise((res) => setTimeout(res, 25));
    }
    const r = await get(s.h.routerUrl, { host: 'x', [TARGET_ACTOR_HEADER]: 'rt/c1' });
    expect(r.status, r.body).toBe(503);
    expect(r.body).toBe(
      'actor rt/c1 unavailable: AssignWorker prerequisite not met for Actor: rt/c1 (got: ACTOR_STATE_CRASHED, want ACTOR_STATE_SUSPENDED or ACTOR_STATE_PAUSED)\n',
    );
    const crashed = await s.rpc<Actor>('getActor', { actor: { atespace: 'rt', name: 'c1' } });
    expect(crashed.status?.state).toBe(ActorState.ACTOR_STATE_CRASHED);
    expect(crashed.status?.crash?.message).toBe('worker pod went away while hosting the actor');
    // gRPC callers get the same refusal as UNAVAILABLE.
    const g = await unary(s.h.routerUrl, '/test.Echo/Say', { [TARGET_ACTOR_HEADER]: 'rt/c1' });
    expect(g.code).toBe(grpc.status.UNAVAILABLE);
    expect(g.details).toMatch(/^actor rt\/c1 unavailable: AssignWorker prerequisite not met .*ACTOR_STATE_CRASHED/);
    // Still refused on the next request: a crash is recovered by RevertActor, never by routing.
    expect((await get(s.h.routerUrl, { host: 'x', [TARGET_ACTOR_HEADER]: 'rt/c1' })).status).toBe(503);
    const rev = await s.rpc<RevertActorResponse>('revertActor', { actor: { atespace: 'rt', name: 'c1' } });
    expect(rev.actor?.status?.state).toBe(ActorState.ACTOR_STATE_SUSPENDED);
    expect(rev.actor?.status?.crash).toBeUndefined();
    // Back from its last snapshot (the golden one: the request before the crash lived only in memory).
    const back = await get(s.h.routerUrl, { host: 'x', [TARGET_ACTOR_HEADER]: 'rt/c1' });
    expect(back.status, back.body).toBe(200);
    expect(JSON.parse(back.body).n).toBe(1);
    await s.rpc('suspendActor', { actor: { atespace: 'rt', name: 'c1' } }); // its worker for the tests below
  });

  it('routes gRPC by ate-target-actor metadata to the actor\'s gRPC server on port 80, resuming it when suspended', async () => {
    const g1 = { actor: { atespace: 'rt', name: 'g1' } };
    expect(await state('g1')).toBe(ActorState.ACTOR_STATE_SUSPENDED);
    const first = await unary(s.h.routerUrl, '/test.Echo/Say', { [TARGET_ACTOR_HEADER]: 'rt/g1' }, 'hello');
    expect(first, first.details).toMatchObject({ code: grpc.status.OK, value: { n: 1, said: 'hello', target: 'rt/g1' } });
    // The actor's trailers reach the client (grpc-status among them, or grpc-js would not report OK).
    expect(first.trailers['x-served-by']).toBe('grpc-actor');
    expect(await state('g1')).toBe(ActorState.ACTOR_STATE_RUNNING);

    // Suspended again: the next call resumes it (its counter comes back with it) on a new connection.
    await s.rpc('suspendActor', g1);
    expect(await state('g1')).toBe(ActorState.ACTOR_STATE_SUSPENDED);
    const again = await unary(s.h.routerUrl, '/test.Echo/Say', { [TARGET_ACTOR_HEADER]: 'rt/g1' }, 'again');
    expect(again, again.details).toMatchObject({ code: grpc.status.OK, value: { n: 2, said: 'again', target: 'rt/g1' } });

    // The local :authority form; a gRPC error the actor answers passes through as it is.
    const byAuthority = await unary(s.h.routerUrl, '/test.Echo/Say', {}, 'host form', 'g1.rt.actors.resources.substrate.ate.dev');
    expect(byAuthority, byAuthority.details).toMatchObject({ code: grpc.status.OK, value: { n: 3, target: 'rt/g1', authority: 'g1.rt.actors.resources.substrate.ate.dev' } });
    const refused = await unary(s.h.routerUrl, '/test.Echo/Refuse', { [TARGET_ACTOR_HEADER]: 'rt/g1' });
    expect(refused).toMatchObject({ code: grpc.status.FAILED_PRECONDITION, details: 'refused by actor' });

    // The same port still speaks HTTP/1.1.
    const h1 = await get(s.h.routerUrl, { host: 'x', [TARGET_ACTOR_HEADER]: 'rt/a1' });
    expect(h1.status).toBe(200);
    expect(JSON.parse(h1.body).target).toBe('rt/a1');
  });

  it('answers gRPC NOT_FOUND "invalid actor reference" for missing or malformed metadata, and NOT_FOUND for an unknown actor', async () => {
    const cases: Array<{ md: Record<string, string>; authority?: string }> = [
      { md: {} },
      { md: { [TARGET_ACTOR_HEADER]: 'rt' } },
      { md: { [TARGET_ACTOR_HEADER]: 'rt/g1/x' } },
      { md: { [TARGET_ACTOR_HEADER]: 'RT/G_1' } },
      // Malformed metadata never falls back to a valid :authority.
      { md: { [TARGET_ACTOR_HEADER]: 'rt' }, authority: 'g1.rt.actors.resources.substrate.ate.dev' },
    ];
    for (const c of cases) {
      const r = await unary(s.h.routerUrl, '/test.Echo/Say', c.md, 'x', c.authority);
      expect({ code: r.code, details: r.details }, JSON.stringify(c)).toEqual({ code: grpc.status.NOT_FOUND, details: 'invalid actor reference' });
    }
    const unknown = await unary(s.h.routerUrl, '/test.Echo/Say', { [TARGET_ACTOR_HEADER]: 'rt/nobody' });
    expect({ code: unknown.code, details: unknown.details }).toEqual({ code: grpc.status.NOT_FOUND, details: 'actor rt/nobody not found' });
    // A plain HTTP/2 request (not gRPC) gets the HTTP answer instead.
    expect(await h2get(s.h.routerUrl, { [TARGET_ACTOR_HEADER]: 'rt' })).toEqual({ status: 404, type: 'text/plain', body: 'invalid actor reference\n' });
  });

  it("waits for a cold-booted actor's port instead of answering 502 ECONNREFUSED", async () => {
    // A template created without waiting for its golden snapshot (it has no wakeup probe): an actor created at
    // once has no snapshot, so the first request boots it cold, and its server listens only 2 s after start.
    const late = template(await defaultImageRef(s.stateDir), 'late', TWO_PORTS_JS, 0, [{ name: 'LISTEN_AFTER_MS', value: '2000' }]);
    await s.rpc('createActorTemplate', { actorTemplate: late });
    const cold = await create('cold', 'late');
    expect(cold.status?.externalSnapshot).toBeUndefined();
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

describe('router: gRPC statuses for failures before the actor', () => {
  it('maps a spent budget to DEADLINE_EXCEEDED, no capacity and an unreachable port to UNAVAILABLE', async () => {
    // STAND-IN for ResumeActor and the actor's port: "slow" never resumes, "full" finds no free worker, "down"
    // resumes but its port cannot be reached.
    const backend = {
      resume: (_a: string, name: string) =>
        name === 'slow' ? new Promise<never>(() => undefined) : name === 'full' ? Promise.reject(new ApiError(Code.RESOURCE_EXHAUSTED, 'no free worker')) : Promise.resolve({ metadata: { version: 1 } } as Actor),
      connect: () => Promise.reject(new Error('connect EHOSTUNREACH')),
    };
    const router = await startRouter(backend, { listen: { host: '127.0.0.1', port: 0 }, resumeBudgetMs: 300 });
    try {
      const slow = await unary(router.url, '/test.Echo/Say', { [TARGET_ACTOR_HEADER]: 'x/slow' });
      expect({ code: slow.code, details: slow.details }).toEqual({ code: grpc.status.DEADLINE_EXCEEDED, details: 'actor x/slow request timed out (no answer on port 80 within 300 ms)' });
      const full = await unary(router.url, '/test.Echo/Say', { [TARGET_ACTOR_HEADER]: 'x/full' });
      expect({ code: full.code, details: full.details }).toEqual({ code: grpc.status.UNAVAILABLE, details: 'actor x/full unavailable: no free worker' });
      const down = await unary(router.url, '/test.Echo/Say', { [TARGET_ACTOR_HEADER]: 'x/down' });
      expect({ code: down.code, details: down.details }).toEqual({ code: grpc.status.UNAVAILABLE, details: 'actor x/down is not accepting connections on port 80: connect EHOSTUNREACH' });
    } finally {
      await router.close();
    }
  });
});

describe('router: HTTP statuses for failures before the actor', () => {
  it('maps the API\'s refusals to 404/503/504, retries ABORTED, and answers 502 for a port that does not answer', async () => {
    // STAND-IN for ResumeActor and the actor's port, one behaviour per actor name.
    let abortedCalls = 0;
    const backend = {
      resume: (_a: string, name: string): Promise<Actor> => {
        switch (name) {
          case 'gone':
            return Promise.reject(new ApiError(Code.NOT_FOUND, 'Actor x/gone not found'));
          case 'full':
            return Promise.reject(new ApiError(Code.RESOURCE_EXHAUSTED, 'no worker has room for the actor'));
          case 'busy':
            abortedCalls++;
            return Promise.reject(new ApiError(Code.ABORTED, 'another operation is in progress for this actor'));
          case 'slow':
            return new Promise<never>(() => undefined);
          default:
            return Promise.resolve({ metadata: { version: 1 } } as Actor);
        }
      },
      connect: () => Promise.reject(new Error('connect EHOSTUNREACH')),
    };
    const router = await startRouter(backend, { listen: { host: '127.0.0.1', port: 0 }, resumeBudgetMs: 20_000 });
    try {
      const at = (name: string) => get(router.url, { host: 'x', [TARGET_ACTOR_HEADER]: `x/${name}` });
      expect(await at('gone')).toEqual({ status: 404, body: 'actor x/gone not found\n' });
      expect(await at('full')).toEqual({ status: 503, body: 'actor x/full unavailable: no worker has room for the actor\n' });
      expect(await at('busy')).toEqual({ status: 503, body: 'actor x/busy unavailable: another operation is in progress for this actor\n' });
      expect(abortedCalls).toBeGreaterThan(1); // ABORTED is retried (with backoff) before the router gives up
      expect(await at('down')).toEqual({ status: 502, body: 'actor x/down is not accepting connections on port 80: connect EHOSTUNREACH\n' });
    } finally {
      await router.close();
    }
    const quick = await startRouter(backend, { listen: { host: '127.0.0.1', port: 0 }, resumeBudgetMs: 300 });
    try {
      expect(await get(quick.url, { host: 'x', [TARGET_ACTOR_HEADER]: 'x/slow' })).toEqual({ status: 504, body: 'actor x/slow request timed out (no answer on port 80 within 300 ms)\n' });
    } finally {
      await quick.close();
    }
  }, 60_000);
});
