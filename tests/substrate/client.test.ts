// The ateapi.Control v0.4 client (src/substrate/client.ts) against a SMALL IN-TEST gRPC server.
//
// STAND-IN: this server is not the local Substrate. It implements only the Control RPCs these tests call, on the
// real v0.4 wire (the generated ControlService of src/gen/ateapi.ts, real grpc-js, real TCP/TLS/Unix sockets),
// and it stands in for the v0.4 local Substrate being written in parallel (src/local/server.ts). It enforces
// the real v0.4 rules the client touches (shared/reference/substrate-v0.4.md):
//   * §5.2 unknown request fields are rejected with INVALID_ARGUMENT (checked on the raw request bytes: a request
//     must re-encode byte for byte from the fields the v0.4 proto knows);
//   * §6 every TCP call needs `authorization: Bearer <token>` or an mTLS client certificate
//     (UNAUTHENTICATED "missing bearer token" / "invalid bearer token"); the Unix socket needs none;
//   * §8 List page tokens are opaque and honoured, page_size > 1000 is coerced to 1000, negative refused;
//     Update* need metadata.uid + metadata.version (INVALID_ARGUMENT unset, ABORTED stale);
//   * §5.1 bare-resource responses for Get/Create/Update/Delete, wrappers for Resume/Suspend/Pause/Revert.
// Once the local Substrate v0.4 runs, the driver's integration tests exercise the client against it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setLogLevel } from '../../src/common/log.js';
import * as pb from '../../src/gen/ateapi.js';
import { MAX_PAGE_SIZE, SubstrateClient, type SubstrateClientOptions } from '../../src/substrate/client.js';

const SERVER_NAME = 'api.ate-system.svc';
const TOKEN = 'ey.stand-in-token-0123456789';

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

type Handler = (req: any, call: grpc.ServerUnaryCall<any, any>) => Promise<unknown>;

interface StandIn {
  server: grpc.Server;
  /** Per-RPC request log (decoded), for assertions. */
  calls: Array<{ rpc: string; req: any; auth: string }>;
  /** Faults to inject: rpc → codes to return, one per call, before handling. */
  faults: Map<string, number[]>;
  actors: Map<string, pb.Actor>;
  templates: Map<string, pb.ActorTemplate>;
  /** Page sizes ListActors was asked for. */
  pageSizes: number[];
  /** Bearer tokens the server accepts. */
  tokens: Set<string>;
}

function err(code: number, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() }) as grpc.ServiceError;
}

const key = (r: { atespace: string; name: string } | undefined) => `${r?.atespace ?? ''}/${r?.name ?? ''}`;

/** A stand-in v0.4 Control server. `unixPath`/`tcp` say where it listens; TLS when `tls` is given. */
function standIn(): StandIn {
  const s: StandIn = { server: new grpc.Server(), calls: [], faults: new Map(), actors: new Map(), templates: new Map(), pageSizes: [], tokens: new Set([TOKEN]) };
  let uid = 0;
  const meta = (atespace: string, name: string, version = 1): pb.ResourceMetadata => ({
    atespace,
    name,
    uid: `uid-${++uid}`,
    version,
    createTime: new Date(),
    updateTime: new Date(),
  });
  const setState = (a: pb.Actor, state: pb.ActorState) => {
    a.status = pb.ActorStatus.fromPartial({ ...a.status, state });
    a.metadata!.version++;
  };
  const mustActor = (ref: pb.ObjectRef | undefined) => {
    const a = s.actors.get(key(ref));
    if (!a) throw err(grpc.status.NOT_FOUND, `Actor ${key(ref)} not found`);
    return a;
  };
  const handlers: Record<string, Handler> = {
    async getActor(req: pb.GetActorRequest) {
      return mustActor(req.actor);
    },
    async createActor(req: pb.CreateActorRequest) {
      const m = req.actor?.metadata;
      if (!m?.atespace || !m.name) throw err(grpc.status.INVALID_ARGUMENT, 'actor.metadata.name: Required value');
      if (!req.actor?.actorTemplate?.atespace) throw err(grpc.status.INVALID_ARGUMENT, 'actor.actorTemplate.atespace: Required value');
      if (s.actors.has(key(m))) throw err(grpc.status.ALREADY_EXISTS, `Actor ${key(m)} already exists`);
      const a = pb.Actor.fromPartial({ ...req.actor, metadata: meta(m.atespace, m.name), status: { state: pb.ActorState.ACTOR_STATE_SUSPENDED } });
      s.actors.set(key(m), a);
      return a;
    },
    async updateActor(req: pb.UpdateActorRequest) {
      const m = req.actor?.metadata;
      if (!m?.uid || !m.version) throw err(grpc.status.INVALID_ARGUMENT, 'actor.metadata.uid, actor.metadata.version: Required value');
      const cur = mustActor(m);
      if (cur.metadata!.uid !== m.uid || cur.metadata!.version !== m.version) throw err(grpc.status.ABORTED, 'concurrent update conflict, please retry');
      cur.workerSelector = req.actor!.workerSelector;
      cur.metadata!.version++;
      return cur;
    },
    async resumeActor(req: pb.ResumeActorRequest) {
      const a = mustActor(req.actor);
      const st = a.status?.state;
      if (st === pb.ActorState.ACTOR_STATE_RUNNING) return { actor: a, resumed: false };
      if (st !== pb.ActorState.ACTOR_STATE_SUSPENDED && st !== pb.ActorState.ACTOR_STATE_PAUSED) {
        throw err(grpc.status.FAILED_PRECONDITION, `AssignWorker prerequisite not met for Actor: ${key(req.actor)}`);
      }
      setState(a, pb.ActorState.ACTOR_STATE_RUNNING);
      a.status!.workerAssignment = pb.WorkerAssignment.fromPartial({ workerPod: 'w-0', workerPodUid: 'pod-uid-0', workerPodIps: ['10.0.0.7'] });
      return { actor: a, resumed: true };
    },
    async suspendActor(req: pb.SuspendActorRequest) {
      const a = mustActor(req.actor);
      setState(a, pb.ActorState.ACTOR_STATE_SUSPENDED);
      a.status!.workerAssignment = undefined;
      return { actor: a };
    },
    async revertActor(req: pb.RevertActorRequest) {
      const a = mustActor(req.actor);
      if (a.status?.state !== pb.ActorState.ACTOR_STATE_CRASHED) throw err(grpc.status.FAILED_PRECONDITION, `Actor ${key(req.actor)} is not in a revertable state`);
      setState(a, pb.ActorState.ACTOR_STATE_SUSPENDED);
      a.status!.crash = undefined;
      return { actor: a };
    },
    async deleteActor(req: pb.DeleteActorRequest) {
      const a = mustActor(req.actor);
      const st = a.status?.state;
      if (!req.anyState && st !== pb.ActorState.ACTOR_STATE_SUSPENDED && st !== pb.ActorState.ACTOR_STATE_CRASHED) {
        throw err(grpc.status.FAILED_PRECONDITION, `Actor ${key(req.actor)} is not in a deletable state`);
      }
      if (req.options?.uid && req.options.uid !== a.metadata!.uid) throw err(grpc.status.ABORTED, `Actor ${key(req.actor)} does not have uid ${req.options.uid}`);
      s.actors.delete(key(req.actor));
      return a;
    },
    async listActors(req: pb.ListActorsRequest) {
      if (req.pageSize < 0) throw err(grpc.status.INVALID_ARGUMENT, 'page_size: must be greater than or equal to 0');
      s.pageSizes.push(req.pageSize);
      const size = req.pageSize === 0 ? 50 : Math.min(req.pageSize, MAX_PAGE_SIZE);
      const all = [...s.actors.values()].filter((a) => !req.atespace || a.metadata!.atespace === req.atespace).sort((x, y) => key(x.metadata).localeCompare(key(y.metadata)));
      let start = 0;
      if (req.pageToken) {
        const m = /^opaque:([0-9a-f]+)$/.exec(req.pageToken);
        if (!m) throw err(grpc.status.INVALID_ARGUMENT, 'page_token: invalid');
        start = Number.parseInt(m[1]!, 16);
      }
      const page = all.slice(start, start + size);
      const next = start + size < all.length ? `opaque:${(start + size).toString(16)}` : '';
      return { actors: page, nextPageToken: next };
    },
    async createAtespace(req: pb.CreateAtespaceRequest) {
      return { metadata: meta('', req.atespace?.metadata?.name ?? '') };
    },
    async createActorTemplate(req: pb.CreateActorTemplateRequest) {
      const m = req.actorTemplate?.metadata;
      if (!m?.atespace || !m.name) throw err(grpc.status.INVALID_ARGUMENT, 'actor_template.metadata: Required value');
      if (s.templates.has(key(m))) throw err(grpc.status.ALREADY_EXISTS, `ActorTemplate ${key(m)} already exists`);
      const t = pb.ActorTemplate.fromPartial({ ...req.actorTemplate, metadata: meta(m.atespace, m.name), status: { goldenSnapshotStatus: { errorMessage: '' } } });
      s.templates.set(key(m), t);
      return t;
    },
    async getActorTemplate(req: pb.GetActorTemplateRequest) {
      const t = s.templates.get(key(req.actorTemplate));
      if (!t) throw err(grpc.status.NOT_FOUND, `ActorTemplate ${key(req.actorTemplate)} not found`);
      return t;
    },
    async deleteActorTemplate(req: pb.DeleteActorTemplateRequest) {
      const t = s.templates.get(key(req.actorTemplate));
      if (!t) throw err(grpc.status.NOT_FOUND, `ActorTemplate ${key(req.actorTemplate)} not found`);
      s.templates.delete(key(req.actorTemplate));
      return t;
    },
  };

  // The service definition with a request decoder that enforces "no unknown fields" on the raw bytes.
  const def: Record<string, grpc.MethodDefinition<any, any>> = {};
  for (const [name, m] of Object.entries(pb.ControlService)) {
    const md = m as unknown as grpc.MethodDefinition<any, any> & { requestDeserialize: (b: Buffer) => any; requestSerialize: (v: any) => Buffer };
    def[name] = {
      ...md,
      requestDeserialize: (b: Buffer) => {
        const v = md.requestDeserialize(b);
        const again = md.requestSerialize(v);
        // The client's ts-proto encoder writes known fields in field order: anything else is an unknown field.
        if (Buffer.compare(again, b) !== 0) return { __unknownField: true };
        return v;
      },
    };
  }
  const impl: grpc.UntypedServiceImplementation = {};
  for (const name of Object.keys(pb.ControlService)) {
    impl[name] = (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => {
      void (async () => {
        const rpc = name.charAt(0).toUpperCase() + name.slice(1);
        const auth = String(call.metadata.get('authorization')[0] ?? '');
        s.calls.push({ rpc, req: call.request, auth });
        if (call.request?.__unknownField) throw err(grpc.status.INVALID_ARGUMENT, 'request: Invalid value: unknown field');
        // §6: TCP callers authenticate (this stand-in checks bearer tokens; peer certs are checked by TLS).
        const peer = call.getPeer();
        const overUnix = peer.startsWith('unix:') || !/:\d+$/.test(peer);
        const hasCert = !!(call as unknown as { getAuthContext?: () => { sslPeerCertificate?: unknown } }).getAuthContext?.()?.sslPeerCertificate;
        if (!overUnix && !hasCert) {
          if (!auth) throw err(grpc.status.UNAUTHENTICATED, 'missing bearer token');
          if (!auth.startsWith('Bearer ') || !s.tokens.has(auth.slice(7))) throw err(grpc.status.UNAUTHENTICATED, 'invalid bearer token');
        }
        const f = s.faults.get(rpc);
        if (f && f.length > 0) {
          const code = f.shift()!;
          throw err(code, `injected ${grpc.status[code]}`);
        }
        const h = handlers[name];
        if (!h) throw err(grpc.status.UNIMPLEMENTED, `the stand-in does not implement ${rpc}`);
        return h(call.request, call);
      })().then(
        (r) => cb(null, r),
        (e) => cb(e as grpc.ServiceError),
      );
    };
  }
  s.server.addService(def as grpc.ServiceDefinition, impl);
  return s;
}

function bind(server: grpc.Server, addr: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync(addr, creds, (e, port) => (e ? reject(e) : resolve(port))));
}

async function expectCode(p: Promise<unknown>, code: number): Promise<{ code: number; details?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    const x = e as { code: number; details?: string; message: string };
    expect(x.code, x.message).toBe(code);
    return x;
  }
  throw new Error(`expected code ${code}, but the call succeeded`);
}

describe('SubstrateClient (v0.4 wire) against the in-test stand-in server', () => {
  let dir: string;
  let s: StandIn;
  let tcp: string;
  let tlsEndpoint: string;
  /** TLS that requests (and verifies) a client certificate: grpc-js cannot "verify if given" on one port. */
  let mtlsEndpoint: string;
  let unix: string;
  const clients: SubstrateClient[] = [];
  const tokenPath = () => join(dir, 'token');

  const client = (o: Partial<SubstrateClientOptions> = {}) => {
    const c = new SubstrateClient({ endpoint: tcp, plaintext: true, bearerTokenPath: tokenPath(), backoffBaseMs: 5, backoffMaxMs: 20, ...o });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    setLogLevel('error');
    dir = mkdtempSync(join(tmpdir(), 'drv-client-'));
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=test-ca'], dir);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', `/CN=${SERVER_NAME}`], dir);
    writeFileSync(join(dir, 'server.ext'), `subjectAltName=DNS:${SERVER_NAME}\n`);
    openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-out', 'server.pem', '-extfile', 'server.ext'], dir);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=driver'], dir);
    openssl(['x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-out', 'client.pem'], dir);
    writeFileSync(tokenPath(), `${TOKEN}\n`);
    s = standIn();
    tcp = `127.0.0.1:${await bind(s.server, '127.0.0.1:0', grpc.ServerCredentials.createInsecure())}`;
    const tlsCreds = grpc.ServerCredentials.createSsl(readFileSync(join(dir, 'ca.pem')), [{ private_key: readFileSync(join(dir, 'server.key')), cert_chain: readFileSync(join(dir, 'server.pem')) }], false);
    tlsEndpoint = `127.0.0.1:${await bind(s.server, '127.0.0.1:0', tlsCreds)}`;
    const mtlsCreds = grpc.ServerCredentials.createSsl(readFileSync(join(dir, 'ca.pem')), [{ private_key: readFileSync(join(dir, 'server.key')), cert_chain: readFileSync(join(dir, 'server.pem')) }], true);
    mtlsEndpoint = `127.0.0.1:${await bind(s.server, '127.0.0.1:0', mtlsCreds)}`;
    unix = `unix:${join(dir, 'api.sock')}`;
    await bind(s.server, unix, grpc.ServerCredentials.createInsecure());
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    s?.server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a TCP endpoint without a token or a client certificate at construction (loopback included)', () => {
    for (const endpoint of ['127.0.0.1:7443', 'localhost:443', 'api.ate-system.svc:443']) {
      expect(() => new SubstrateClient({ endpoint, plaintext: endpoint.startsWith('127') })).toThrow(/no credentials for ateapi at .*authenticates every call over TCP.*api_bearer_token_path.*api_tls_cert_path/);
    }
    // A Unix socket needs none; a client certificate alone is enough on TCP; plaintext cannot carry one.
    const u = new SubstrateClient({ endpoint: 'unix:/nonexistent/api.sock', plaintext: true });
    expect(u.auth).toBe('unix');
    u.close();
    const m = new SubstrateClient({ endpoint: tlsEndpoint, tlsCaPath: join(dir, 'ca.pem'), tlsCertPath: join(dir, 'client.pem'), tlsKeyPath: join(dir, 'client.key'), tlsServerName: SERVER_NAME });
    expect(m.auth).toBe('mtls');
    m.close();
    expect(() => new SubstrateClient({ endpoint: tcp, plaintext: true, tlsCertPath: join(dir, 'client.pem'), tlsKeyPath: join(dir, 'client.key') })).toThrow(/needs TLS/);
    expect(() => new SubstrateClient({ endpoint: tcp, bearerTokenPath: tokenPath(), tlsCertPath: join(dir, 'client.pem') })).toThrow(/both api_tls_cert_path and api_tls_key_path/);
    expect(() => new SubstrateClient({ endpoint: '192.0.2.10:443', plaintext: true, bearerTokenPath: tokenPath() })).toThrow(/refusing a plaintext connection to 192\.0\.2\.10:443/);
    expect(() => new SubstrateClient({ endpoint: tcp, bearerTokenPath: tokenPath(), workflowTimeoutMs: 10_000 })).toThrow(/at least 30000/);
  });

  it('sends the bearer token on TCP, read from its file on every call, and never echoes it', async () => {
    const c = client();
    await c.ensureAtespace('auth');
    expect(s.calls.at(-1)).toMatchObject({ rpc: 'CreateAtespace', auth: `Bearer ${TOKEN}` });
    // Rotated to a token the server does not trust: the very next call uses it.
    const bad = 'ey.rotated-but-untrusted-987654321';
    writeFileSync(tokenPath(), bad);
    const e = await expectCode(c.getActor({ atespace: 'auth', name: 'x' }), grpc.status.UNAUTHENTICATED);
    expect(e.details).toBe('invalid bearer token');
    expect(JSON.stringify(e) + e.message).not.toContain(bad);
    // Rotated again (surrounding whitespace trimmed): accepted at once.
    s.tokens.add('ey.rotated-and-trusted-1234');
    writeFileSync(tokenPath(), '  ey.rotated-and-trusted-1234 \n');
    await expectCode(c.getActor({ atespace: 'auth', name: 'x' }), grpc.status.NOT_FOUND);
    writeFileSync(tokenPath(), `${TOKEN}\n`);
  });

  it('an empty or unreadable token file is an error naming the path, not the token; the server refuses a call without one', async () => {
    const c = client();
    writeFileSync(tokenPath(), '  \n');
    const empty = await expectCode(c.getActor({ atespace: 'a', name: 'b' }), grpc.status.FAILED_PRECONDITION);
    expect(empty.message).toBe(`the ateapi bearer token file ${tokenPath()} is empty; check api_bearer_token_path`);
    writeFileSync(tokenPath(), `${TOKEN}\n`);
    const gone = client({ bearerTokenPath: join(dir, 'no-token') });
    const missing = await expectCode(gone.getActor({ atespace: 'a', name: 'b' }), grpc.status.FAILED_PRECONDITION);
    expect(missing.message).toMatch(/cannot read the ateapi bearer token file .*no-token \(ENOENT\)/);
    // The stand-in enforces §6 on TCP: a raw call without credentials is refused.
    const raw = new pb.ControlClient(tcp, grpc.credentials.createInsecure());
    const e = await expectCode(
      new Promise((res, rej) => raw.getActor(pb.GetActorRequest.fromPartial({ actor: { atespace: 'a', name: 'b' } }), (er, v) => (er ? rej(er) : res(v)))),
      grpc.status.UNAUTHENTICATED,
    );
    expect(e.details).toBe('missing bearer token');
    raw.close();
  });

  it('needs no token on the Unix socket (and sends none)', async () => {
    const c = new SubstrateClient({ endpoint: unix, plaintext: true, bearerTokenPath: tokenPath() });
    clients.push(c);
    await c.ensureAtespace('via-unix');
    expect(s.calls.at(-1)).toMatchObject({ rpc: 'CreateAtespace', auth: '' });
  });

  it('verifies TLS against the CA with the server-name override, with a bearer token or an mTLS pair', async () => {
    const b = client({ endpoint: tlsEndpoint, plaintext: false, tlsCaPath: join(dir, 'ca.pem'), tlsServerName: SERVER_NAME });
    expect(b.tls).toBe(true);
    await b.ensureAtespace('tls');
    const m = client({ endpoint: mtlsEndpoint, plaintext: false, bearerTokenPath: undefined, tlsCaPath: join(dir, 'ca.pem'), tlsServerName: SERVER_NAME, tlsCertPath: join(dir, 'client.pem'), tlsKeyPath: join(dir, 'client.key') });
    await m.ensureAtespace('mtls');
    expect(s.calls.at(-1)).toMatchObject({ rpc: 'CreateAtespace', auth: '' });
    // Without the override the certificate (DNS:api.ate-system.svc only) does not name 127.0.0.1.
    const wrong = client({ endpoint: tlsEndpoint, plaintext: false, tlsCaPath: join(dir, 'ca.pem'), readTimeoutMs: 3000, maxAttempts: 1 });
    await expectCode(wrong.getActor({ atespace: 'a', name: 'b' }), grpc.status.UNAVAILABLE);
  });

  it('encodes only v0.4 fields (the stand-in rejects an unknown field), and reads bare resources and wrappers', async () => {
    // The enforcement itself: a request with a field the v0.4 proto lacks (tag 9999) is refused.
    const raw = new grpc.Client(tcp, grpc.credentials.createInsecure());
    const bytes = Buffer.concat([Buffer.from(pb.GetActorRequest.encode({ actor: { atespace: 'a', name: 'b' } }).finish()), Buffer.from([0xf8, 0xe1, 0x04, 0x01])]);
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${TOKEN}`);
    const e = await expectCode(
      new Promise((res, rej) => raw.makeUnaryRequest('/ateapi.Control/GetActor', (x: Buffer) => x, (x: Buffer) => x, bytes, md, (er, v) => (er ? rej(er) : res(v)))),
      grpc.status.INVALID_ARGUMENT,
    );
    expect(e.details).toMatch(/unknown field/);
    raw.close();

    const c = client();
    const tmpl = { atespace: 'wire', name: 'tpl' };
    const created = await c.createActor({ actor: { atespace: 'wire', name: 'a1' }, template: tmpl, workerSelector: { pool: 'p1' } });
    expect(created.metadata).toMatchObject({ atespace: 'wire', name: 'a1', version: 1 });
    expect(created.metadata!.uid).not.toBe('');
    expect(created.actorTemplate).toEqual(tmpl);
    expect(created.status?.state).toBe(pb.ActorState.ACTOR_STATE_SUSPENDED);
    const req = s.calls.at(-1)!.req as pb.CreateActorRequest;
    expect(req.actor).toMatchObject({ metadata: { atespace: 'wire', name: 'a1', uid: '', version: 0 }, workerSelector: { matchLabels: { pool: 'p1' } } });
    expect(req.actor!.status).toBeUndefined();
    const r = await c.resumeActor({ atespace: 'wire', name: 'a1' });
    expect(r.resumed).toBe(true);
    expect(r.actor?.status?.workerAssignment?.workerPodIps).toEqual(['10.0.0.7']);
    expect((await c.resumeActor({ atespace: 'wire', name: 'a1' })).resumed).toBe(false);
    expect((await c.suspendActor({ atespace: 'wire', name: 'a1' })).status?.state).toBe(pb.ActorState.ACTOR_STATE_SUSPENDED);
    const a = s.actors.get('wire/a1')!;
    a.status = pb.ActorStatus.fromPartial({ state: pb.ActorState.ACTOR_STATE_CRASHED, crash: { message: 'atelet Restore failed: boom' } });
    expect((await c.getActor({ atespace: 'wire', name: 'a1' })).status?.crash?.message).toBe('atelet Restore failed: boom');
    expect((await c.revertActor({ atespace: 'wire', name: 'a1' })).status?.state).toBe(pb.ActorState.ACTOR_STATE_SUSPENDED);
    await c.resumeActor({ atespace: 'wire', name: 'a1' });
    // Delete from RUNNING needs any_state (the stand-in follows §5.1), and answers the deleted actor.
    await expectCode(c.deleteActor({ atespace: 'wire', name: 'a1' }), grpc.status.FAILED_PRECONDITION);
    const gone = await c.deleteActor({ atespace: 'wire', name: 'a1' }, { anyState: true, uid: created.metadata!.uid });
    expect(gone.metadata?.name).toBe('a1');
    expect(await c.findActor({ atespace: 'wire', name: 'a1' })).toBeUndefined();
  });

  it('UpdateActor is a read-modify-write of the whole actor with uid + version, re-read on ABORTED', async () => {
    const c = client();
    const ref = { atespace: 'upd', name: 'a' };
    await c.createActor({ actor: ref, template: { atespace: 'upd', name: 't' } });
    let raced = false;
    const after = await c.updateActor(ref, (a) => {
      // The first time, someone else writes in between: the server answers ABORTED (stale version).
      if (!raced) {
        raced = true;
        s.actors.get('upd/a')!.metadata!.version++;
      }
      a.workerSelector = { matchLabels: { zone: 'b' } };
    });
    expect(after.workerSelector?.matchLabels).toEqual({ zone: 'b' });
    const updates = s.calls.filter((x) => x.rpc === 'UpdateActor');
    expect(updates.length).toBe(2);
    for (const u of updates) {
      expect(u.req.actor.metadata.uid).not.toBe('');
      expect(u.req.actor.metadata.version).toBeGreaterThan(0);
      expect(u.req.actor.status).toBeUndefined();
    }
    expect((await c.setWorkerSelector(ref, {})).workerSelector).toBeUndefined();
    // A replace without preconditions is refused before it is sent.
    await expectCode(c.replaceActor({ metadata: { atespace: 'upd', name: 'a', uid: '', version: 0 } }), grpc.status.INVALID_ARGUMENT);
  });

  it('pages every List to the end with opaque tokens and page_size ≤ 1000', async () => {
    const c = client();
    const N = 2345;
    for (let i = 0; i < N; i++) {
      const m = { atespace: 'pg', name: `a-${String(i).padStart(5, '0')}`, uid: `u${i}`, version: 1 };
      s.actors.set(`pg/${m.name}`, pb.Actor.fromPartial({ metadata: m, status: { state: pb.ActorState.ACTOR_STATE_SUSPENDED } }));
    }
    s.pageSizes.length = 0;
    const first = await c.listActors({ atespace: 'pg', pageSize: 1000 });
    expect(first.actors).toHaveLength(1000);
    expect(first.nextPageToken).not.toBe('');
    const all = await c.listAllActors('pg');
    expect(all).toHaveLength(N);
    expect(new Set(all.map((a) => a.metadata!.name)).size).toBe(N);
    expect(s.pageSizes.every((p) => p > 0 && p <= 1000)).toBe(true);
    expect(s.pageSizes.length).toBe(1 + Math.ceil(N / 1000));
    const small = client({ pageSize: 400 });
    expect(await small.listAllActors('pg')).toHaveLength(N);
    expect(() => client({ pageSize: 1001 })).toThrow(/pageSize/);
    await expectCode(c.listActors({ atespace: 'pg', pageToken: 'forged' }), grpc.status.INVALID_ARGUMENT);
  });

  it('retries ABORTED for every call, UNAVAILABLE only for idempotent ones, never RESOURCE_EXHAUSTED; observes each call', async () => {
    const seen: Array<[string, string]> = [];
    const c = client({ observe: (m, code) => seen.push([m, code]) });
    const ref = { atespace: 'retry', name: 'a' };
    await c.createActor({ actor: ref, template: { atespace: 'retry', name: 't' } });
    const count = (rpc: string) => s.calls.filter((x) => x.rpc === rpc).length;

    s.faults.set('ResumeActor', [grpc.status.ABORTED, grpc.status.ABORTED]);
    let before = count('ResumeActor');
    expect((await c.resumeActor(ref)).actor?.status?.state).toBe(pb.ActorState.ACTOR_STATE_RUNNING);
    expect(count('ResumeActor') - before).toBe(3);

    s.faults.set('SuspendActor', [grpc.status.UNAVAILABLE]);
    before = count('SuspendActor');
    await c.suspendActor(ref); // a workflow: re-entrant upstream, retried
    expect(count('SuspendActor') - before).toBe(2);

    s.faults.set('CreateActor', [grpc.status.UNAVAILABLE]);
    before = count('CreateActor');
    await expectCode(c.createActor({ actor: { atespace: 'retry', name: 'b' }, template: { atespace: 'retry', name: 't' } }), grpc.status.UNAVAILABLE);
    expect(count('CreateActor') - before).toBe(1);

    s.faults.set('ResumeActor', [grpc.status.RESOURCE_EXHAUSTED]);
    before = count('ResumeActor');
    await expectCode(c.resumeActor(ref), grpc.status.RESOURCE_EXHAUSTED);
    expect(count('ResumeActor') - before).toBe(1);

    s.faults.set('GetActor', Array(10).fill(grpc.status.ABORTED));
    await expectCode(client({ maxAttempts: 3 }).getActor(ref), grpc.status.ABORTED);
    s.faults.delete('GetActor');

    expect(seen).toContainEqual(['ResumeActor', 'OK']);
    expect(seen).toContainEqual(['ResumeActor', 'RESOURCE_EXHAUSTED']);
    expect(seen).toContainEqual(['CreateActor', 'UNAVAILABLE']);
  });

  it('creates, reads and deletes ActorTemplates (status is never sent)', async () => {
    const c = client();
    const t = pb.ActorTemplate.fromPartial({
      metadata: { atespace: 'tpl', name: 'sbx-tpl-0123456789abcdef0123' },
      containers: [{ name: 'sandbox', image: `busybox@sha256:${'a'.repeat(64)}`, command: ['/bin/sh'] }],
      snapshotConfig: { onCommit: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, storageLocation: 'file:///x/' },
      sandboxConfig: { sandboxClass: pb.SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' },
      status: { goldenSnapshotStatus: { errorMessage: 'a client must not send this' } },
    });
    const made = await c.createActorTemplate(t);
    expect(made.metadata?.uid).not.toBe('');
    expect(s.calls.at(-1)!.req.actorTemplate.status).toBeUndefined();
    await expectCode(c.createActorTemplate(t), grpc.status.ALREADY_EXISTS);
    expect((await c.getActorTemplate({ atespace: 'tpl', name: 'sbx-tpl-0123456789abcdef0123' })).containers[0]!.image).toBe(t.containers[0]!.image);
    await c.deleteActorTemplate({ atespace: 'tpl', name: 'sbx-tpl-0123456789abcdef0123' });
    expect(await c.findActorTemplate({ atespace: 'tpl', name: 'sbx-tpl-0123456789abcdef0123' })).toBeUndefined();
  });
});
