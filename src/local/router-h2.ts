// The actor router's HTTP/2 side (router.ts hands it every connection that opens with the HTTP/2 preface):
// gRPC, and any other h2c request, routed by `ate-target-actor` metadata/header (or the local `:authority` form)
// to the actor's port 80 (the router's actor port), resumed first by router.ts's own resume and connectWithin.
//
// * One HTTP/2 client session per actor, over a connection from connectWithin, carries every stream to it while
//   it has one open: concurrent calls share it, and it is closed as soon as its last stream ends (the next call
//   opens a new one). No idle connection is kept: an actor may be suspended at any moment between calls, and
//   the runtime resets every connection to a sandbox before checkpointing it (a connection frozen open in a
//   checkpoint left the restored workload unable to answer). A session is also reused only for the actor's
//   resource version it was opened for: after a suspend and resume (or any change of the actor) the next call
//   opens a new one and the older is closed gracefully (its streams finish). A client's session that carries
//   no stream for IDLE_MS is closed.
// * A stream goes through as it came: method, path, scheme, authority, headers (minus connection-specific ones,
//   RFC 9113 §8.2.2), `ate-target-actor` rewritten to the resolved reference, the body; back come the status,
//   headers, data and trailers (gRPC's grpc-status), a trailers-only answer staying one HEADERS frame. A reset
//   on one side resets the other.
// * A request the router cannot deliver (no or malformed reference, the resume failing, the port not answering)
//   gets router.ts's status and text. For gRPC (content-type application/grpc, application/grpc+proto, …) as a
//   gRPC status, so that a gRPC client reports it as such: HTTP 200, content-type application/grpc,
//   grpc-status and grpc-message (percent-encoded) in one trailers-only HEADERS frame, the code from
//   GRPC_CODE_OF_STATUS. Anything else gets the HTTP status with a text/plain body, as over HTTP/1.
// * CONNECT over HTTP/2 is not routed (501; HTTP/1.1 CONNECT reaches other ports).
import http2 from 'node:http2';
import type net from 'node:net';
import { Code } from '../common/errors.js';
import { logger } from '../common/log.js';
import type { Actor } from '../gen/ateapi.js';
import type { Target } from './router.js';

const log = logger('local.router');
const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_FLAG_END_STREAM } = http2.constants;

/** A client's session without a stream for this long is closed gracefully. */
const IDLE_MS = 60_000;

/** What the HTTP/2 side uses of router.ts: the same addressing, resume, connection and refusals as HTTP/1. */
export interface H2Routing {
  actorPort: number;
  targetHeader: string;
  targetOf(headers: http2.IncomingHttpHeaders): Target | undefined;
  /** ResumeActor within the route's budget; the deadline by which the actor's port must then answer. */
  resume(t: Target): Promise<{ actor: Actor; deadline: number }>;
  connectWithin(t: Target, port: number, deadline: number, gone: () => boolean): Promise<net.Socket>;
  refusal(e: unknown, t: Target, port: number): { status: number; body: string };
}

export interface H2Router {
  /** Never listens: router.ts emits 'connection' on it. */
  server: http2.Http2Server;
  /** Destroys every session, client and actor side. */
  close(): void;
}

/** The gRPC status for each of the router's HTTP refusals. */
const GRPC_CODE_OF_STATUS: Record<number, Code> = {
  401: Code.UNAUTHENTICATED,
  403: Code.PERMISSION_DENIED,
  404: Code.NOT_FOUND,
  408: Code.CANCELLED,
  500: Code.INTERNAL,
  501: Code.UNIMPLEMENTED,
  502: Code.UNAVAILABLE,
  503: Code.UNAVAILABLE,
  504: Code.DEADLINE_EXCEEDED,
};

/** grpc-message: the UTF-8 bytes, percent-encoded outside printable ASCII (and `%` itself), as the gRPC spec asks. */
export function grpcMessage(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'host']);

/** Headers that may travel on: no pseudo header (but `:status` when `keepStatus`), nothing connection-specific. */
function passable(h: http2.IncomingHttpHeaders, keepStatus = false): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || CONNECTION_SPECIFIC.has(k) || (k === 'te' && v !== 'trailers')) continue;
    if (k.startsWith(':') && !(keepStatus && k === ':status')) continue;
    out[k] = v;
  }
  return out;
}

/** Streams open on each session (so that an idle timeout never cuts a long, quiet call). */
const openStreams = new WeakMap<http2.Http2Session, number>();
/** Counts `stream` on `session`; `onLast` runs when it closes as the session's last open stream. */
function countStream(session: http2.Http2Session, stream: http2.Http2Stream, onLast?: () => void): void {
  openStreams.set(session, (openStreams.get(session) ?? 0) + 1);
  stream.once('close', () => {
    const n = (openStreams.get(session) ?? 1) - 1;
    openStreams.set(session, n);
    if (n === 0) onLast?.();
  });
}
/** Closes a client's session gracefully once it has been quiet for IDLE_MS with no stream open. */
function closeWhenIdle(session: http2.Http2Session): void {
  session.setTimeout(IDLE_MS, () => {
    if (!openStreams.get(session)) session.close();
  });
}

export function startH2(r: H2Routing): H2Router {
  const upstreams = new Map<string, { session: http2.ClientHttp2Session; version: number }>();

  /** An HTTP/2 session to the resumed actor's port: the open one for this version of the actor, else a new one. */
  const sessionFor = async (t: Target, gone: () => boolean): Promise<http2.ClientHttp2Session> => {
    const ref = `${t.atespace}/${t.name}`;
    const { actor, deadline } = await r.resume(t);
    const cur = upstreams.get(ref);
    if (cur && cur.version === (actor.metadata?.version ?? 0) && !cur.session.closed && !cur.session.destroyed) return cur.session;
    const sock = await r.connectWithin(t, r.actorPort, deadline, gone);
    const session = http2.connect(`http://actor-upstream:${r.actorPort}`, { createConnection: () => sock });
    session.on('error', (e) => log.debug('HTTP/2 session to actor failed', { actor: ref, error: e }));
    session.once('close', () => {
      if (upstreams.get(ref)?.session === session) upstreams.delete(ref);
    });
    // Replaces an older session (an earlier version of the actor, or a concurrent request's): it finishes its streams.
    upstreams.get(ref)?.session.close();
    upstreams.set(ref, { session, version: actor.metadata?.version ?? 0 });
    return session;
  };

  const onStream = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    stream.on('error', (e) => log.debug('HTTP/2 stream from client failed', { error: e }));
    countStream(stream.session!, stream);
    const grpc = /^application\/grpc(\+|;|$)/.test(String(headers['content-type'] ?? ''));
    const refuse = (f: { status: number; body: string }) => {
      if (stream.destroyed || stream.closed || stream.headersSent) return;
      if (grpc) {
        const code = GRPC_CODE_OF_STATUS[f.status] ?? Code.UNKNOWN;
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': grpcMessage(f.body) }, { endStream: true });
      } else {
        stream.respond({ ':status': f.status, 'content-type': 'text/plain' });
        stream.end(f.body + '\n');
      }
    };
    if (headers[':method'] === 'CONNECT') return refuse({ status: 501, body: 'CONNECT over HTTP/2 is not supported; use HTTP/1.1 CONNECT' });
    const target = r.targetOf(headers);
    if (!target) return refuse({ status: 404, body: 'invalid actor reference' });
    const ref = `${target.atespace}/${target.name}`;
    let gone = false;
    stream.once('close', () => (gone = true));

    void (async () => {
      let session: http2.ClientHttp2Session;
      try {
        session = await sessionFor(target, () => gone);
      } catch (e) {
        const f = r.refusal(e, target, r.actorPort);
        if (f.status === 408) log.info('client went away before its actor answered', { actor: ref });
        return refuse(f);
      }
      if (gone) {
        if (!openStreams.get(session)) session.close();
        return;
      }
      const authority = headers[':authority'] ?? headers.host;
      const up = session.request({
        ...passable(headers),
        [r.targetHeader]: ref,
        ':method': headers[':method'],
        ':path': headers[':path'],
        ':scheme': headers[':scheme'] ?? 'http',
        ...(authority ? { ':authority': authority } : {}),
      });
      countStream(session, up, () => session.close());
      let done = false;
      let failure: Error | undefined;
      let trailers: http2.OutgoingHttpHeaders = {};
      up.on('error', (e) => (failure = e));
      up.on('response', (h, flags) => {
        if (stream.destroyed || stream.closed) return;
        if (flags & NGHTTP2_FLAG_END_STREAM) {
          // Trailers-only (a gRPC error, say): one HEADERS frame, as the actor sent it.
          done = true;
          stream.respond(passable(h, true), { endStream: true });
          return;
        }
        stream.respond(passable(h, true), { waitForTrailers: true });
        up.pipe(stream);
      });
      up.on('trailers', (t) => (trailers = passable(t)));
      up.on('end', () => (done = true));
      stream.on('wantTrailers', () => stream.sendTrailers(trailers));
      up.on('close', () => {
        if (done || stream.destroyed || stream.closed) return;
        if (!stream.headersSent) refuse({ status: 502, body: `upstream error from actor ${ref}: ${failure?.message ?? `stream closed (code ${up.rstCode})`}` });
        else stream.close(up.rstCode || NGHTTP2_INTERNAL_ERROR);
      });
      stream.once('close', () => {
        if (!done && !up.closed) up.close(NGHTTP2_CANCEL);
      });
      stream.pipe(up);
    })().catch((e) => {
      log.warn('router request failed', { error: e });
      refuse({ status: 500, body: `error routing to actor ${ref}` });
    });
  };

  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s: http2.ServerHttp2Session) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
    s.on('error', (e) => log.debug('HTTP/2 session from client failed', { error: e }));
    closeWhenIdle(s);
  });
  server.on('stream', onStream);
  return {
    server,
    close() {
      for (const s of sessions) s.destroy();
      for (const u of upstreams.values()) u.session.destroy();
      upstreams.clear();
    },
  };
}
