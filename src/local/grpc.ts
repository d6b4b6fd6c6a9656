// ateapi.Control over gRPC: the generated service definition bound to LocalControl, with upstream's error
// shaping (coded errors keep code and message; anything else is INTERNAL "internal server error: ...") and the
// bearer-JWT check when auth is configured. Listens on a Unix socket or TCP; plaintext only on a Unix socket
// or a loopback address, TLS required anywhere else.
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ControlService, type ControlServer } from '../gen/june/ateapi.js';
import { permissionDenied, toServiceError } from '../common/errors.js';
import { logger } from '../common/log.js';
import type { Verifier } from './auth.js';
import type { LocalControl } from './control.js';
import { isLoopbackHost } from '../common/net.js';

const log = logger('local.grpc');

export interface ListenSpec {
  /** 'unix:/abs/path' or 'host:port' */
  address: string;
  tls?: { certPath: string; keyPath: string };
  verifier?: Verifier;
  /** Serve DebugClear; otherwise it answers PERMISSION_DENIED. */
  enableDebugClear?: boolean;
}

/** Splits 'host:port' (IPv6 in brackets). */
export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(addr);
  if (!m) throw new Error(`"${addr}" is not host:port or unix:/absolute/path`);
  const port = Number(m[2]);
  if (port > 65535) throw new Error(`"${addr}": port ${port} is out of range`);
  return { host: m[1]!, port };
}

type Handler<Req, Res> = (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => void;

function unary<Req, Res>(verifier: Verifier | undefined, method: string, fn: (req: Req) => Promise<Res>): Handler<Req, Res> {
  return (call, cb) => {
    const started = process.hrtime.bigint();
    void (async () => {
      try {
        if (verifier) {
          const v = call.metadata.get('authorization')[0];
          await verifier.verify(typeof v === 'string' ? v : v?.toString());
        }
        const res = await fn(call.request);
        const md = new grpc.Metadata();
        md.set('x-server-elapsed-us', String((process.hrtime.bigint() - started) / 1000n));
        cb(null, res, md);
      } catch (e) {
        const se = toServiceError(e);
        if (se.code === grpc.status.INTERNAL) log.warn('rpc failed', { method, error: se.details });
        cb({ code: se.code, details: se.details, metadata: new grpc.Metadata() } as grpc.ServiceError);
      }
    })();
  };
}

export function controlImplementation(c: LocalControl, verifier?: Verifier, enableDebugClear = false): ControlServer {
  const u = <Req, Res>(m: string, fn: (r: Req) => Promise<Res>) => unary<Req, Res>(verifier, m, fn);
  return {
    getActor: u('GetActor', async (r) => ({ actor: await c.getActor(r) })),
    createActor: u('CreateActor', async (r) => ({ actor: await c.createActor(r) })),
    updateActor: u('UpdateActor', async (r) => ({ actor: await c.updateActor(r) })),
    suspendActor: u('SuspendActor', async (r) => ({ actor: await c.suspendActor(r) })),
    pauseActor: u('PauseActor', async (r) => ({ actor: await c.pauseActor(r) })),
    resumeActor: u('ResumeActor', async (r) => ({ actor: await c.resumeActor(r) })),
    deleteActor: u('DeleteActor', async (r) => {
      await c.deleteActor(r);
      return {};
    }),
    listWorkers: u('ListWorkers', async () => ({ workers: await c.listWorkers() })),
    listActors: u('ListActors', async (r) => c.listActors(r)),
    createAtespace: u('CreateAtespace', async (r) => ({ atespace: await c.createAtespace(r.name) })),
    getAtespace: u('GetAtespace', async (r) => ({ atespace: await c.getAtespace(r.name) })),
    listAtespaces: u('ListAtespaces', async () => ({ atespaces: await c.listAtespaces() })),
    deleteAtespace: u('DeleteAtespace', async (r) => {
      await c.deleteAtespace(r.name);
      return {};
    }),
    debugClear: u('DebugClear', async () => {
      if (!enableDebugClear) throw permissionDenied('DebugClear is disabled on this local Substrate (it deletes every actor); start local serve with --enable-debug-clear to allow it');
      await c.debugClear();
      return {};
    }),
  };
}

export interface BoundServer {
  /** grpc-js target for clients: 'unix:/abs/path' or 'host:port' (with the bound port). */
  target: string;
  tls: boolean;
  close(): Promise<void>;
}

export async function serveControl(c: LocalControl, spec: ListenSpec): Promise<BoundServer> {
  let creds: grpc.ServerCredentials;
  let bindAddr: string;
  let target: string;
  let unixPath: string | undefined;
  if (spec.address.startsWith('unix:')) {
    unixPath = spec.address.slice('unix:'.length).replace(/^\/\//, '');
    if (!unixPath.startsWith('/')) throw new Error(`listen address ${spec.address}: a Unix socket path must be absolute`);
    mkdirSync(dirname(unixPath), { recursive: true, mode: 0o700 });
    if (existsSync(unixPath)) {
      // Only a stale socket is replaced (the instance lock keeps a live one of this state directory safe).
      if (!lstatSync(unixPath).isSocket()) throw new Error(`listen address ${spec.address}: ${unixPath} exists and is not a socket; refusing to replace it`);
      unlinkSync(unixPath);
    }
    bindAddr = `unix:${unixPath}`;
    target = bindAddr;
  } else {
    const { host } = splitHostPort(spec.address);
    if (!isLoopbackHost(host) && !spec.tls) {
      throw new Error(
        `listen address ${spec.address} is not loopback: the API then requires TLS (--tls-cert, --tls-key) and bearer-JWT auth (--jwt-public-key or --jwks with --jwt-issuer and --jwt-audience)`,
      );
    }
    if (!spec.verifier) {
      throw new Error(
        `listen address ${spec.address}: a TCP listener, even on loopback, requires bearer-JWT auth (--jwt-public-key or --jwks, --jwt-issuer, --jwt-audience); local tools without a token use the instance's Unix socket (the default, unix:<state-dir>/ateapi.sock)`,
      );
    }
    bindAddr = spec.address;
    target = spec.address;
  }
  if (spec.tls) {
    creds = grpc.ServerCredentials.createSsl(null, [
      { cert_chain: readFileSync(spec.tls.certPath), private_key: readFileSync(spec.tls.keyPath) },
    ]);
  } else {
    creds = grpc.ServerCredentials.createInsecure();
  }
  const server = new grpc.Server();
  server.addService(ControlService, controlImplementation(c, spec.verifier, spec.enableDebugClear));
  // A Unix socket is private from its creation (umask: no group or other bits), then made 0600.
  const umask = unixPath ? process.umask(0o077) : undefined;
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => server.bindAsync(bindAddr, creds, (e, p) => (e ? reject(e) : resolve(p))));
  } finally {
    if (umask !== undefined) process.umask(umask);
  }
  if (unixPath) chmodSync(unixPath, 0o600);
  else target = `${splitHostPort(spec.address).host}:${port}`;
  return {
    target,
    tls: !!spec.tls,
    close: () =>
      new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 3000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      }).then(() => {
        if (unixPath && existsSync(unixPath)) unlinkSync(unixPath);
      }),
  };
}
