// The actor router, as Substrate v0.4's atenet router (shared/reference/substrate-v0.4.md §7), on one port for
// HTTP/1.1 and HTTP/2 cleartext (h2c with prior knowledge, which is how gRPC clients speak to an http:// target):
// a new connection that opens with the HTTP/2 preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`) goes to the HTTP/2
// server (router-h2.ts), any other to the HTTP/1 server below; a connection that sends neither within 10 s is
// closed.
//
// Which actor: `ate-target-actor: <atespace>/<actor>` (an HTTP/1 header, or HTTP/2 header = gRPC metadata; for a
// port other than 80, on the outer request of an HTTP/1 CONNECT), or, as this local Substrate's own convenience,
// `Host` (HTTP/1) / `:authority` (HTTP/2) `<actor>.<atespace>.actors.resources.substrate.ate.dev[:port]`. A header
// that is present but malformed never falls back to the host form. The router calls ResumeActor (so a
// suspended actor resumes on demand; deduplicated per actor; ABORTED retried with backoff), waits for the
// actor's port to accept a connection, and proxies, all within the route's budget (15 s), the same code for
// both protocols (resume, connectWithin). As upstream, the actor sees `ate-target-actor` rewritten to the
// resolved reference.
//
// HTTP/1 goes to the actor as HTTP/1, one connection per request. HTTP/2 goes to it as HTTP/2 (its port must
// speak h2c, as a gRPC server does; an HTTP/1-only port answers 502 / UNAVAILABLE), the streams to one actor
// sharing one session while any is open (router-h2.ts); CONNECT over HTTP/2 is answered 501. Over HTTP/2 a
// header value with leading or trailing blanks is invalid and dropped by node:http2, so ` ns/a ` counts as
// missing there (HTTP/1 trims it).
//
// HTTP status mapping (HTTP/1, and HTTP/2 requests that are not gRPC): missing or malformed reference 404
// "invalid actor reference"; NotFound 404; FailedPrecondition, Aborted, ResourceExhausted and Unavailable 503;
// DeadlineExceeded or the budget spent 504; the actor's port not answering 502; the client gone 408;
// PermissionDenied 403; Unauthenticated 401; other 500. gRPC requests (HTTP/2, content-type application/grpc*)
// get the same text as a gRPC status instead (router-h2.ts): HTTP 200, content-type application/grpc, and
// grpc-status/grpc-message in a trailers-only response; 404 → NOT_FOUND (5), 503 and 502 → UNAVAILABLE (14),
// 504 → DEADLINE_EXCEEDED (4), 408 → CANCELLED (1), 403 → PERMISSION_DENIED (7), 401 → UNAUTHENTICATED (16),
// 500 → INTERNAL (13). Once the actor answers, its status, headers, data and trailers pass through unchanged.
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { Code, grpcCodeOf, messageOf } from '../common/errors.js';
import { isDnsLabel } from '../common/dns.js';
import { logger } from '../common/log.js';
import type { Actor } from '../gen/ateapi.js';
import { isLoopbackHost } from '../common/net.js';
import { startH2, type H2Router } from './router-h2.js';

const log = logger('local.router');
const SUFFIX = '.actors.resources.substrate.ate.dev';
export const TARGET_ACTOR_HEADER = 'ate-target-actor';

export type Target = { atespace: string; name: string };

export function parseActorHost(hostHeader: string | undefined): Target | { error: string } {
  if (!hostHeader) return { error: 'missing host' };
  let h = hostHeader.toLowerCase();
  h = h.replace(/:\d+$/, '');
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (!h.endsWith(SUFFIX)) return { error: `host must be <actor>.<atespace>${SUFFIX}` };
  const labels = h.slice(0, -SUFFIX.length).split('.');
  if (labels.length !== 2 || !labels[0] || !labels[1]) return { error: `host must be <actor>.<atespace>${SUFFIX} (missing atespace label)` };
  return { name: labels[0], atespace: labels[1] };
}

/** `<atespace>/<actor>`: exactly one slash between two valid names, as upstream's ParseTargetActor. */
export function parseTargetActor(v: string): Target | undefined {
  const parts = v.trim().split('/');
  if (parts.length !== 2 || !isDnsLabel(parts[0]!) || !isDnsLabel(parts[1]!)) return undefined;
  return { atespace: parts[0]!, name: parts[1]! };
}

/**
 * The actor a request names: the header when present (never falling back when it is malformed), else the host
 * form (HTTP/2's `:authority`, else `Host`).
 */
export function targetOf(headers: NodeJS.Dict<string | string[]>): Target | undefined {
  const h = headers[TARGET_ACTOR_HEADER];
  if (h !== undefined) return typeof h === 'string' ? parseTargetActor(h) : undefined;
  const host = headers[':authority'] ?? headers.host;
  const t = parseActorHost(typeof host === 'string' ? host : undefined);
  return 'error' in t ? undefined : t;
}

export interface RouterBackend {
  resume(atespace: string, name: string, signal: AbortSignal): Promise<Actor>;
  /** Opens a TCP connection to the actor's port inside its worker namespace. */
  connect(atespace: string, name: string, port: number): Promise<import('node:net').Socket>;
}

export interface RouterOptions {
  listen: { host: string; port: number };
  actorPort?: number;
  /** How long one request may wait for its actor to resume and accept the connection (default 15 s). */
  resumeBudgetMs?: number;
  /** Listen on a non-loopback address (the router authenticates no one); refused unless set. */
  allowRemote?: boolean;
}

class BudgetExceeded extends Error {}

/** p, or a BudgetExceeded rejection when `ms` pass first. */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BudgetExceeded()), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Upstream's answer for a failed resume: status and body. */
function failureOf(e: unknown, ref: string): { status: number; body: string } {
  switch (grpcCodeOf(e)) {
    case Code.NOT_FOUND:
      return { status: 404, body: `actor ${ref} not found` };
    case Code.FAILED_PRECONDITION:
    case Code.ABORTED:
    case Code.RESOURCE_EXHAUSTED:
      return { status: 503, body: `actor ${ref} unavailable: ${messageOf(e)}` };
    case Code.UNAVAILABLE:
      return { status: 503, body: `actor ${ref} unavailable` };
    case Code.DEADLINE_EXCEEDED:
      return { status: 504, body: `actor ${ref} request timed out` };
    case Code.PERMISSION_DENIED:
      return { status: 403, body: `actor ${ref} access denied` };
    case Code.UNAUTHENTICATED:
      return { status: 401, body: `actor ${ref} authentication required` };
    default:
      return { status: 500, body: `error resuming actor ${ref}` };
  }
}

class ClientGone extends Error {}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/** How long a new connection may take to show its protocol (as the HTTP/1 server's headersTimeout). */
const SNIFF_MS = 10_000;

/**
 * Reads a new connection's first bytes, then puts them back: true once they are the HTTP/2 preface, false at
 * the first byte that differs from it; rejects if the connection ends, fails or stays silent first.
 */
function sniffH2(sock: net.Socket, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    let seen = Buffer.alloc(0);
    const settle = (isH2: boolean | Error) => {
      clearTimeout(timer);
      sock.off('readable', onReadable).off('end', onEnd).off('close', onEnd).off('error', onError);
      if (isH2 instanceof Error) return reject(isH2);
      sock.unshift(seen);
      resolve(isH2);
    };
    const onReadable = () => {
      for (let c: Buffer | null; (c = sock.read() as Buffer | null) !== null; ) seen = Buffer.concat([seen, c]);
      const n = Math.min(seen.length, PREFACE.length);
      if (!seen.subarray(0, n).equals(PREFACE.subarray(0, n))) settle(false);
      else if (n === PREFACE.length) settle(true);
    };
    const onEnd = () => settle(new Error('connection ended before its first request'));
    const onError = (e: Error) => settle(e);
    const timer = setTimeout(() => settle(new Error(`no request within ${timeoutMs} ms`)), timeoutMs);
    sock.on('readable', onReadable).on('end', onEnd).on('close', onEnd).on('error', onError);
  });
}

export async function startRouter(backend: RouterBackend, opts: RouterOptions): Promise<{ url: string; close(): Promise<void> }> {
  if (!isLoopbackHost(opts.listen.host) && !opts.allowRemote) {
    throw new Error(
      `the router would listen on ${opts.listen.host}, which is not loopback; it authenticates no one, so anyone who reaches it can wake and talk to every actor. Use 127.0.0.1, or pass --router-allow-remote to accept that`,
    );
  }
  const port = opts.actorPort ?? 80;
  const budget = opts.resumeBudgetMs ?? 15_000;
  const inflight = new Map<string, Promise<Actor>>();

  const resumeOnce = (atespace: string, name: string): Promise<Actor> => {
    const key = `${atespace}/${name}`;
    let p = inflight.get(key);
    if (!p) {
      p = (async () => {
        const ac = new AbortController();
        const timer = setTimeout(() => ac.abort(), budget);
        try {
          let delay = 200;
          for (let attempt = 0; ; attempt++) {
            try {
              return await backend.resume(atespace, name, ac.signal);
            } catch (e) {
              if (grpcCodeOf(e) !== Code.ABORTED || attempt >= 6 || ac.signal.aborted) throw e;
              await new Promise((r) => setTimeout(r, delay * (0.8 + Math.random() * 0.4)));
              delay *= 1.5;
            }
          }
        } finally {
          clearTimeout(timer);
        }
      })().finally(() => inflight.delete(key));
      inflight.set(key, p);
    }
    return p;
  };

  /** ResumeActor within the route's budget; also the deadline by which the actor's port must then answer. */
  const resume = async (t: Target): Promise<{ actor: Actor; deadline: number }> => {
    const deadline = Date.now() + budget;
    return { actor: await within(resumeOnce(t.atespace, t.name), budget), deadline };
  };

  /**
   * A connection to a resumed actor's port by the deadline: after a resume (a cold boot above all) the port may
   * take a moment to listen, so a refused connection is tried again until the deadline instead of failing the
   * request.
   */
  const connectWithin = async (t: Target, actorPort: number, deadline: number, gone: () => boolean): Promise<net.Socket> => {
    const ref = `${t.atespace}/${t.name}`;
    for (let delay = 10; ; delay = Math.min(200, delay * 2)) {
      if (gone()) throw new ClientGone();
      const connecting = backend.connect(t.atespace, t.name, actorPort);
      try {
        return await within(connecting, Math.max(1, deadline - Date.now()));
      } catch (e) {
        if (e instanceof BudgetExceeded) {
          connecting.then((late) => late.destroy(), () => undefined);
          throw e;
        }
        if (!/ECONNREFUSED|not running/.test(messageOf(e)) || Date.now() + delay >= deadline) {
          throw Object.assign(new Error(`actor ${ref} is not accepting connections on port ${actorPort}: ${messageOf(e)}`), { upstream: true });
        }
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  };

  /** Resume, then a connection to the actor's port, within the route's budget. */
  const open = async (t: Target, actorPort: number, gone: () => boolean): Promise<net.Socket> =>
    connectWithin(t, actorPort, (await resume(t)).deadline, gone);

  /** The status and body for a request that could not be routed. */
  const refusal = (e: unknown, t: Target, actorPort: number): { status: number; body: string } => {
    const ref = `${t.atespace}/${t.name}`;
    if (e instanceof ClientGone) return { status: 408, body: `request for actor ${ref} canceled by client` };
    if (e instanceof BudgetExceeded) return { status: 504, body: `actor ${ref} request timed out (no answer on port ${actorPort} within ${budget} ms)` };
    if ((e as { upstream?: boolean }).upstream) return { status: 502, body: messageOf(e) };
    return failureOf(e, ref);
  };

  const server = http.createServer((req, res) => {
    const target = targetOf(req.headers);
    if (!target) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('invalid actor reference\n');
      return;
    }
    let gone = false;
    res.on('close', () => {
      if (!res.writableFinished) gone = true;
    });
    void (async () => {
      let sock: net.Socket;
      try {
        sock = await open(target, port, () => gone);
      } catch (e) {
        const r = refusal(e, target, port);
        if (r.status === 408) log.info('client went away before its actor answered', { actor: `${target.atespace}/${target.name}` });
        if (!res.headersSent && !res.destroyed) res.writeHead(r.status, { 'content-type': 'text/plain' }).end(r.body + '\n');
        return;
      }
      // As upstream, the routing header reaches the actor rewritten to the resolved reference.
      const headers: http.OutgoingHttpHeaders = { ...req.headers, connection: 'close', [TARGET_ACTOR_HEADER]: `${target.atespace}/${target.name}` };
      const up = http.request({ createConnection: () => sock, method: req.method, path: req.url, headers }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      });
      up.on('error', (e) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' }).end(`upstream error from actor ${target.atespace}/${target.name}: ${e.message}\n`);
        else res.destroy();
      });
      req.pipe(up);
    })().catch((e) => {
      log.warn('router request failed', { error: e });
      if (!res.headersSent) res.writeHead(500).end();
    });
  });

  // CONNECT for a port other than 80: the outer request names the actor (ate-target-actor), its target the port.
  server.on('connect', (req: http.IncomingMessage, client: Duplex, head: Buffer) => {
    const answer = (status: number, text: string, body: string) => {
      client.end(`HTTP/1.1 ${status} ${text}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body) + 1}\r\nconnection: close\r\n\r\n${body}\n`);
    };
    const target = targetOf(req.headers);
    const m = /:(\d{1,5})$/.exec(req.url ?? '');
    const actorPort = m ? Number(m[1]) : 0;
    if (!target) return answer(404, 'Not Found', 'invalid actor reference');
    if (actorPort < 1 || actorPort > 65535) return answer(400, 'Bad Request', `CONNECT needs host:port with a port from 1 to 65535, got "${req.url ?? ''}"`);
    let gone = false;
    client.on('close', () => (gone = true));
    client.on('error', () => (gone = true));
    void open(target, actorPort, () => gone).then(
      (sock) => {
        if (gone) return sock.destroy();
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head.length) sock.write(head);
        sock.pipe(client);
        client.pipe(sock);
        sock.on('error', () => client.destroy());
        client.on('error', () => sock.destroy());
      },
      (e: unknown) => {
        const r = refusal(e, target, actorPort);
        if (!gone) answer(r.status, http.STATUS_CODES[r.status] ?? 'Error', r.body);
      },
    );
  });

  // A client gets this long to send its request headers; a silent connection does not hold a slot forever.
  server.headersTimeout = 10_000;
  server.requestTimeout = 0;
  // The HTTP/1 server never listens itself (the front below does), and node:http enforces headersTimeout from a
  // connection tracker that it starts on 'listening': start it.
  server.emit('listening');

  const h2: H2Router = startH2({
    actorPort: port,
    targetHeader: TARGET_ACTOR_HEADER,
    targetOf,
    resume,
    connectWithin,
    refusal,
  });

  // The one listener: each new connection goes to the HTTP/2 server if it opens with the preface, else to HTTP/1.
  const sockets = new Set<net.Socket>();
  const front = net.createServer((sock) => {
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
    sniffH2(sock, SNIFF_MS).then(
      (isH2) => (isH2 ? h2.server : server).emit('connection', sock),
      () => sock.destroy(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen(opts.listen.port, opts.listen.host, () => resolve());
  });
  const a = front.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    url: `http://${host}:${a.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        front.close(() => resolve());
        server.close();
        h2.close();
        for (const s of sockets) s.destroy();
      }),
  };
}
