// The actor router, as upstream's atenet router (shared/reference/ateapi.md §5.4): requests for
// `Host: <actor>.<atespace>.actors.resources.substrate.ate.dev[:port][.]` first call ResumeActor (so a
// suspended actor resumes on demand; deduplicated per actor, 15 s budget, ABORTED retried with backoff), then
// are proxied to the actor's port (80 unless configured). Status mapping: invalid host 404, NotFound 404,
// FailedPrecondition 503 with the gRPC message, Unavailable 503, DeadlineExceeded 504, PermissionDenied 403,
// Unauthenticated 401, ResourceExhausted 429, other 500.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Code, grpcCodeOf, messageOf } from '../common/errors.js';
import { logger } from '../common/log.js';
import type { Actor } from '../gen/ateapi.js';
import { isLoopbackHost } from '../common/net.js';

const log = logger('local.router');
const SUFFIX = '.actors.resources.substrate.ate.dev';

export function parseActorHost(hostHeader: string | undefined): { atespace: string; name: string } | { error: string } {
  if (!hostHeader) return { error: 'missing host' };
  let h = hostHeader.toLowerCase();
  h = h.replace(/:\d+$/, '');
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (!h.endsWith(SUFFIX)) return { error: `host must be <actor>.<atespace>${SUFFIX}` };
  const labels = h.slice(0, -SUFFIX.length).split('.');
  if (labels.length !== 2 || !labels[0] || !labels[1]) return { error: `host must be <actor>.<atespace>${SUFFIX} (missing atespace label)` };
  return { name: labels[0], atespace: labels[1] };
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

function httpStatusFor(code: number | undefined): number {
  switch (code) {
    case Code.NOT_FOUND:
      return 404;
    case Code.FAILED_PRECONDITION:
    case Code.UNAVAILABLE:
      return 503;
    case Code.DEADLINE_EXCEEDED:
      return 504;
    case Code.PERMISSION_DENIED:
      return 403;
    case Code.UNAUTHENTICATED:
      return 401;
    case Code.RESOURCE_EXHAUSTED:
      return 429;
    default:
      return 500;
  }
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

  const server = http.createServer((req, res) => {
    const target = parseActorHost(req.headers.host);
    if ('error' in target) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`invalid host "${req.headers.host ?? ''}": ${target.error}\n`);
      return;
    }
    const started = Date.now();
    void (async () => {
      try {
        await within(resumeOnce(target.atespace, target.name), budget);
      } catch (e) {
        if (e instanceof BudgetExceeded) {
          res.writeHead(504, { 'content-type': 'text/plain' }).end(`actor "${target.name}" did not resume within the router's ${budget} ms budget\n`);
          return;
        }
        const code = grpcCodeOf(e);
        const status = httpStatusFor(code);
        const msg = status === 500 ? `error resuming actor "${target.name}"` : messageOf(e);
        res.writeHead(status, { 'content-type': 'text/plain' }).end(msg + '\n');
        return;
      }
      let sock: import('node:net').Socket;
      const connecting = backend.connect(target.atespace, target.name, port);
      try {
        sock = await within(connecting, Math.max(1, budget - (Date.now() - started)));
      } catch (e) {
        if (e instanceof BudgetExceeded) {
          connecting.then((late) => late.destroy(), () => undefined);
          res.writeHead(504, { 'content-type': 'text/plain' }).end(`actor "${target.name}" did not accept a connection on port ${port} within the router's ${budget} ms budget\n`);
          return;
        }
        res.writeHead(502, { 'content-type': 'text/plain' }).end(`actor "${target.name}" is not accepting connections on port ${port}: ${messageOf(e)}\n`);
        return;
      }
      const up = http.request(
        { createConnection: () => sock, method: req.method, path: req.url, headers: { ...req.headers, connection: 'close' } },
        (ur) => {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
        },
      );
      up.on('error', (e) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' }).end(`upstream error from actor "${target.name}": ${e.message}\n`);
        else res.destroy();
      });
      req.pipe(up);
    })().catch((e) => {
      log.warn('router request failed', { error: e });
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  // A client gets this long to send its request headers; a silent connection does not hold a slot forever.
  server.headersTimeout = 10_000;
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listen.port, opts.listen.host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    url: `http://${host}:${a.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
