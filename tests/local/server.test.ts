// The local Substrate's v0.4 gRPC edge (src/local/server.ts) over a real Unix socket and real loopback TCP
// ports: strict decoding of the raw request bytes (upstream's RejectUnknownFields), authentication (Unix socket
// owner, bearer JWTs through the real verifier, client certificates), UNIMPLEMENTED RPCs, error shaping and
// the elapsed-time trailer. Requests are sent as raw bytes through a grpc-js client with a pass-through
// serializer, so a request can carry fields the generated encoders would never write.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as pb from '../../src/gen/ateapi.js';
import * as adm from '../../src/gen/local_admin.js';
import { ApiError, Code, alreadyExists } from '../../src/common/errors.js';
import { NOT_PROVIDED_LOCALLY, type ControlApi, type SandboxConfigSpec, type WorkerPoolSpec } from '../../src/local/api.js';
import { createVerifier } from '../../src/local/auth.js';
import { serveControlV4, WORKER_SERVICE_MESSAGE, firstUriSan, type ServedApi } from '../../src/local/server.js';

const ISSUER = 'https://kubernetes.default.svc.cluster.local';
const AUDIENCE = 'api.ate-system.svc';

// ---- wire helpers --------------------------------------------------------------------------------------

const cat = (...parts: Uint8Array[]) => Buffer.concat(parts.map((p) => Buffer.from(p)));
/** A length-delimited field. */
const len = (num: number, body: Uint8Array) => new BinaryWriter().uint32((num << 3) | 2).bytes(body).finish();
/** A varint field (used for unknown tags, and for a known number sent with the wrong wire type). */
const varint = (num: number, v = 1) => new BinaryWriter().uint32((num << 3) | 0).uint32(v).finish();
const str = (num: number, s: string) => new BinaryWriter().uint32((num << 3) | 2).string(s).finish();

// ---- a recording ControlApi ------------------------------------------------------------------------------

type Calls = Array<[string, unknown]>;

function fakeApi(calls: Calls): ControlApi {
  const api: Record<string, (r: unknown) => Promise<unknown>> = {};
  for (const [key, m] of Object.entries(pb.ControlService)) {
    const rpc = m.path.slice(m.path.lastIndexOf('/') + 1);
    if (Object.hasOwn(NOT_PROVIDED_LOCALLY, rpc)) continue;
    // Decoding no bytes gives the response type's default message: a valid answer for every RPC.
    api[key] = async (r) => {
      calls.push([key, r]);
      return m.responseDeserialize(Buffer.alloc(0));
    };
  }
  api.getAtespace = async (r) => {
    calls.push(['getAtespace', r]);
    const req = r as pb.GetAtespaceRequest;
    return { metadata: { atespace: '', name: req.atespace?.name ?? '', uid: 'u-1', version: 3 } } satisfies pb.Atespace;
  };
  api.createAtespace = async (r) => {
    calls.push(['createAtespace', r]);
    throw alreadyExists('Atespace demo already exists');
  };
  api.deleteAtespace = async (r) => {
    calls.push(['deleteAtespace', r]);
    throw new Error('disk on fire');
  };
  api.getActor = async (r) => {
    calls.push(['getActor', r]);
    throw new ApiError(Code.FAILED_PRECONDITION, 'custom precondition text');
  };
  return api as unknown as ControlApi;
}

// ---- raw client ----------------------------------------------------------------------------------------------

interface Answer {
  err: grpc.ServiceError | null;
  res?: Buffer;
  trailers?: grpc.Metadata;
}

function rawCall(client: grpc.Client, path: string, body: Uint8Array, md = new grpc.Metadata()): Promise<Answer> {
  return new Promise((resolve) => {
    let done = 0;
    const out: Answer = { err: null };
    const finish = () => {
      if (++done === 2) resolve(out);
    };
    const call = client.makeUnaryRequest<Buffer, Buffer>(
      path,
      (b) => b,
      (b) => b,
      Buffer.from(body),
      md,
      { deadline: Date.now() + 15_000 },
      (err, res) => {
        out.err = err;
        out.res = res;
        finish();
      },
    );
    call.on('status', (s: grpc.StatusObject) => {
      out.trailers = s.metadata;
      finish();
    });
  });
}

function expectStatus(a: Answer, code: grpc.status, details?: string | RegExp): void {
  expect(a.err, `expected ${grpc.status[code]}, got success`).not.toBeNull();
  expect(grpc.status[a.err!.code], a.err!.details).toBe(grpc.status[code]);
  if (typeof details === 'string') expect(a.err!.details).toBe(details);
  else if (details) expect(a.err!.details).toMatch(details);
}

const bearer = (t: string) => {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${t}`);
  return md;
};

describe('local Substrate v0.4 gRPC edge', () => {
  let dir: string;
  let calls: Calls;
  let unix: ServedApi;
  let tcp: ServedApi;
  let unixClient: grpc.Client;
  let tcpClient: grpc.Client;
  let privateKey: CryptoKey;
  const pools: WorkerPoolSpec[] = [];
  const configs: SandboxConfigSpec[] = [];

  const mint = (claims: { aud?: string } = {}) =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'EdDSA' })
      .setIssuer(ISSUER)
      .setAudience(claims.aud ?? AUDIENCE)
      .setSubject('system:serviceaccount:ate-system:ate-client')
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(privateKey);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sdl-server-'));
    const keys = await generateKeyPair('EdDSA', { extractable: true });
    privateKey = keys.privateKey;
    writeFileSync(join(dir, 'jwt.pem'), await exportSPKI(keys.publicKey));
    const verifier = await createVerifier({ publicKeyPath: join(dir, 'jwt.pem'), issuer: ISSUER, audience: AUDIENCE });
    calls = [];
    const api = fakeApi(calls);
    const admin = {
      workerPools: {
        applyWorkerPool: async (p: WorkerPoolSpec) => (pools.push(p), p),
        listWorkerPools: async () => pools,
        deleteWorkerPool: async () => undefined,
      },
      sandboxConfigs: {
        getSandboxConfig: () => undefined,
        applySandboxConfig: async (c: SandboxConfigSpec) => (configs.push(c), c),
        listSandboxConfigs: async () => configs,
        deleteSandboxConfig: async () => undefined,
      },
    };
    unix = await serveControlV4(api, { address: `unix:${join(dir, 'run', 'ateapi.sock')}`, admin });
    tcp = await serveControlV4(api, { address: '127.0.0.1:0', verifier });
    unixClient = new grpc.Client(unix.address, grpc.credentials.createInsecure());
    tcpClient = new grpc.Client(tcp.address, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    unixClient?.close();
    tcpClient?.close();
    await unix?.close();
    await tcp?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const callsOf = (m: string) => calls.filter(([k]) => k === m).length;

  describe('strict decoding', () => {
    it('rejects an unknown top-level field with path "request", before the handler', async () => {
      const before = callsOf('getAtespace');
      const body = cat(pb.GetAtespaceRequest.encode({ atespace: { atespace: '', name: 'demo' } }).finish(), varint(9999));
      const a = await rawCall(unixClient, '/ateapi.Control/GetAtespace', body);
      expectStatus(a, grpc.status.INVALID_ARGUMENT, 'request: Invalid value: unknown field with protobuf tag 9999');
      expect(callsOf('getAtespace')).toBe(before);
    });

    it('names the message holding a nested unknown field (actor.metadata)', async () => {
      const before = callsOf('createActor');
      const metadata = cat(pb.ResourceMetadata.encode({ atespace: 'a', name: 'x', uid: '', version: 0 }).finish(), varint(9999));
      const actor = cat(len(1, metadata), len(4, pb.ObjectRef.encode({ atespace: 'a', name: 't' }).finish()));
      const a = await rawCall(unixClient, '/ateapi.Control/CreateActor', len(1, actor));
      expectStatus(a, grpc.status.INVALID_ARGUMENT, 'actor.metadata: Invalid value: unknown field with protobuf tag 9999');
      expect(callsOf('createActor')).toBe(before);
    });

    it('indexes repeated fields in the path (egress_policy.rules[1].https)', async () => {
      const rule0 = pb.EgressRule.encode({ http: { hostnames: ['localhost'], ports: { numbers: [8080] } } }).finish();
      const https = cat(pb.HTTPSRule.encode({ hostnames: ['example.com'] }).finish(), varint(7));
      const policy = cat(len(2, rule0), len(2, len(2, https)));
      const body = cat(len(1, pb.ObjectRef.encode({ atespace: 'a', name: 'x' }).finish()), len(2, policy));
      const a = await rawCall(unixClient, '/ateapi.Control/UpdateActorEgressPolicy', body);
      expectStatus(a, grpc.status.INVALID_ARGUMENT, 'egress_policy.rules[1].https: Invalid value: unknown field with protobuf tag 7');
    });

    it('treats a known number with the wrong wire type as unknown, and aggregates several messages', async () => {
      let a = await rawCall(unixClient, '/ateapi.Control/GetAtespace', varint(1, 5));
      expectStatus(a, grpc.status.INVALID_ARGUMENT, 'request: Invalid value: unknown field with protobuf tag 1');
      const ref = cat(pb.ObjectRef.encode({ atespace: '', name: 'demo' }).finish(), varint(60));
      a = await rawCall(unixClient, '/ateapi.Control/GetAtespace', cat(varint(50), len(1, ref), varint(51)));
      expectStatus(
        a,
        grpc.status.INVALID_ARGUMENT,
        '[request: Invalid value: unknown field with protobuf tag 50, atespace: Invalid value: unknown field with protobuf tag 60]',
      );
    });

    it('accepts a known request, decodes it, and answers with the trailer x-server-elapsed-us', async () => {
      const a = await rawCall(unixClient, '/ateapi.Control/GetAtespace', pb.GetAtespaceRequest.encode({ atespace: { atespace: '', name: 'demo' } }).finish());
      expect(a.err).toBeNull();
      expect(pb.Atespace.decode(a.res!).metadata).toMatchObject({ name: 'demo', uid: 'u-1', version: 3 });
      expect(calls.at(-1)).toEqual(['getAtespace', { atespace: { atespace: '', name: 'demo' } }]);
      expect(Number(a.trailers!.get('x-server-elapsed-us')[0])).toBeGreaterThanOrEqual(0);
    });

    it('accepts packed and unpacked repeated scalars, and drops unknown fields of a map entry as protobuf-go does', async () => {
      const packed = pb.Ports.encode({ numbers: [80, 443] }).finish(); // packed by the encoder
      const unpacked = cat(varint(2, 80), varint(2, 443));
      for (const ports of [packed, unpacked]) {
        const rule = len(1, cat(str(1, 'localhost'), len(2, ports)));
        const policy = len(2, rule);
        const body = cat(len(1, pb.ObjectRef.encode({ atespace: 'a', name: 'x' }).finish()), len(2, policy));
        const a = await rawCall(unixClient, '/ateapi.Control/CreateActorEgressPolicy', body);
        expect(a.err).toBeNull();
      }
      const last = calls.at(-1)![1] as pb.CreateActorEgressPolicyRequest;
      expect(last.egressPolicy!.rules[0]!.http!.ports!.numbers).toEqual([80, 443]);
      const entry = cat(str(1, 'team'), str(2, 'blue'), varint(3));
      const selector = len(1, entry);
      const actor = cat(len(1, pb.ResourceMetadata.encode({ atespace: 'a', name: 'x', uid: '', version: 0 }).finish()), len(5, selector));
      const a = await rawCall(unixClient, '/ateapi.Control/CreateActor', len(1, actor));
      expect(a.err).toBeNull(); // reached the handler
      expect((calls.at(-1)![1] as pb.CreateActorRequest).actor!.workerSelector!.matchLabels).toEqual({ team: 'blue' });
    });

    it('refuses a "__proto__" map key before anything decodes it', async () => {
      const before = callsOf('createActor');
      const selector = len(1, cat(str(1, '__proto__'), str(2, 'x')));
      const actor = cat(len(1, pb.ResourceMetadata.encode({ atespace: 'a', name: 'x', uid: '', version: 0 }).finish()), len(5, selector));
      const a = await rawCall(unixClient, '/ateapi.Control/CreateActor', len(1, actor));
      expectStatus(a, grpc.status.INVALID_ARGUMENT, 'actor.worker_selector.match_labels: Invalid value: "__proto__": not a permitted map key');
      expect(callsOf('createActor')).toBe(before);
    });

    it('answers bytes that are no message, and invalid UTF-8 in a string, as grpc-go does (INTERNAL)', async () => {
      let a = await rawCall(unixClient, '/ateapi.Control/GetAtespace', Buffer.from([0x0a, 0x10, 0x01]));
      expectStatus(a, grpc.status.INTERNAL, 'grpc: error unmarshalling request: proto: cannot parse invalid wire-format data');
      a = await rawCall(unixClient, '/ateapi.Control/GetAtespace', len(1, len(2, Buffer.from([0xff, 0xfe]))));
      expectStatus(a, grpc.status.INTERNAL, 'grpc: error unmarshalling request: string field contains invalid UTF-8');
    });
  });

  describe('errors and UNIMPLEMENTED RPCs', () => {
    it('keeps the code and message of an ApiError', async () => {
      let a = await rawCall(unixClient, '/ateapi.Control/CreateAtespace', pb.CreateAtespaceRequest.encode({ atespace: { metadata: { atespace: '', name: 'demo', uid: '', version: 0 } } }).finish());
      expectStatus(a, grpc.status.ALREADY_EXISTS, 'Atespace demo already exists');
      expect(a.trailers!.get('x-server-elapsed-us')).toHaveLength(1);
      a = await rawCall(unixClient, '/ateapi.Control/GetActor', pb.GetActorRequest.encode({ actor: { atespace: 'a', name: 'x' } }).finish());
      expectStatus(a, grpc.status.FAILED_PRECONDITION, 'custom precondition text');
    });

    it('turns a plain Error into INTERNAL "internal server error: ..."', async () => {
      const a = await rawCall(unixClient, '/ateapi.Control/DeleteAtespace', pb.DeleteAtespaceRequest.encode({ atespace: { atespace: '', name: 'demo' } }).finish());
      expectStatus(a, grpc.status.INTERNAL, 'internal server error: disk on fire');
    });

    it('answers the RPCs not provided locally UNIMPLEMENTED with why', async () => {
      let a = await rawCall(unixClient, '/ateapi.Control/MintActorJWT', pb.MintActorJWTRequest.encode({ actor: { atespace: 'a', name: 'x' }, audience: ['x'], expirationSeconds: 600 }).finish());
      expectStatus(a, grpc.status.UNIMPLEMENTED, NOT_PROVIDED_LOCALLY.MintActorJWT!);
      a = await rawCall(unixClient, '/ateapi.Control/UpdateGlobalAccessPolicy', Buffer.alloc(0));
      expectStatus(a, grpc.status.UNIMPLEMENTED, NOT_PROVIDED_LOCALLY.UpdateGlobalAccessPolicy!);
      a = await rawCall(unixClient, '/ateapi.Control/CreateWorker', Buffer.alloc(0));
      expectStatus(a, grpc.status.UNIMPLEMENTED, NOT_PROVIDED_LOCALLY.CreateWorker!);
      for (const m of ['RegisterWorker', 'MintAteomActorCertificate', 'RequestActorSuspend']) {
        a = await rawCall(unixClient, `/ateapi.WorkerService/${m}`, Buffer.alloc(0));
        expectStatus(a, grpc.status.UNIMPLEMENTED, WORKER_SERVICE_MESSAGE);
      }
      // Unknown fields are still refused first, as upstream's interceptor runs before any handler.
      a = await rawCall(unixClient, '/ateapi.Control/MintActorJWT', varint(9999));
      expectStatus(a, grpc.status.INVALID_ARGUMENT, 'request: Invalid value: unknown field with protobuf tag 9999');
    });

    it('binds every Control RPC: served ones reach the ControlApi method of the same name', async () => {
      for (const [key, m] of Object.entries(pb.ControlService)) {
        const rpc = m.path.slice(m.path.lastIndexOf('/') + 1);
        const a = await rawCall(unixClient, m.path, Buffer.alloc(0));
        if (Object.hasOwn(NOT_PROVIDED_LOCALLY, rpc)) expectStatus(a, grpc.status.UNIMPLEMENTED);
        else expect(calls.at(-1)![0], m.path).toBe(key);
      }
    });
  });

  describe('authentication', () => {
    it('serves the Unix socket without a token, from a 0600 socket in a private directory', async () => {
      const path = unix.address.slice('unix:'.length);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(statSync(join(dir, 'run')).mode & 0o077).toBe(0);
      const a = await rawCall(unixClient, '/ateapi.Control/ListAtespaces', Buffer.alloc(0));
      expect(a.err).toBeNull();
    });

    it('refuses a socket directory other users can write to', async () => {
      const shared = join(dir, 'shared');
      mkdirSync(shared);
      chmodSync(shared, 0o777);
      await expect(serveControlV4(fakeApi([]), { address: `unix:${join(shared, 'ateapi.sock')}` })).rejects.toThrow(/writable by other users/);
    });

    it('refuses TCP calls without a token or with a bad one, and serves a good one', async () => {
      const before = callsOf('listAtespaces');
      let a = await rawCall(tcpClient, '/ateapi.Control/ListAtespaces', Buffer.alloc(0));
      expectStatus(a, grpc.status.UNAUTHENTICATED, 'missing bearer token');
      const basic = new grpc.Metadata();
      basic.set('authorization', 'Basic Zm9vOmJhcg==');
      a = await rawCall(tcpClient, '/ateapi.Control/ListAtespaces', Buffer.alloc(0), basic);
      expectStatus(a, grpc.status.UNAUTHENTICATED, 'missing bearer token');
      const wrongAudience = await mint({ aud: 'someone-else' });
      a = await rawCall(tcpClient, '/ateapi.Control/ListAtespaces', Buffer.alloc(0), bearer(wrongAudience));
      expectStatus(a, grpc.status.UNAUTHENTICATED, 'invalid bearer token');
      a = await rawCall(tcpClient, '/ateapi.Control/ListAtespaces', Buffer.alloc(0), bearer('not.a.jwt'));
      expectStatus(a, grpc.status.UNAUTHENTICATED, 'invalid bearer token');
      expect(callsOf('listAtespaces')).toBe(before);
      a = await rawCall(tcpClient, '/ateapi.Control/ListAtespaces', Buffer.alloc(0), bearer(await mint()));
      expect(a.err).toBeNull();
      expect(callsOf('listAtespaces')).toBe(before + 1);
    });

    it('authenticates before it decodes: an unauthenticated request with unknown fields is UNAUTHENTICATED', async () => {
      const a = await rawCall(tcpClient, '/ateapi.Control/GetAtespace', varint(9999));
      expectStatus(a, grpc.status.UNAUTHENTICATED, 'missing bearer token');
      const b = await rawCall(tcpClient, '/ateapi.Control/GetAtespace', varint(9999), bearer(await mint()));
      expectStatus(b, grpc.status.INVALID_ARGUMENT, 'request: Invalid value: unknown field with protobuf tag 9999');
    });

    it('refuses to start TCP without authentication, plaintext off loopback, or the admin service on TCP', async () => {
      const api = fakeApi([]);
      await expect(serveControlV4(api, { address: '127.0.0.1:0' })).rejects.toThrow(/requires authentication/);
      await expect(serveControlV4(api, { address: '0.0.0.0:0', allowUnauthenticatedLoopback: true })).rejects.toThrow(/not loopback/);
      const verifier = await createVerifier({ publicKeyPath: join(dir, 'jwt.pem'), issuer: ISSUER, audience: AUDIENCE });
      await expect(serveControlV4(api, { address: '0.0.0.0:0', verifier })).rejects.toThrow(/requires TLS/);
      const registries = { workerPools: {} as never, sandboxConfigs: {} as never };
      await expect(serveControlV4(api, { address: '127.0.0.1:0', verifier, admin: registries })).rejects.toThrow(/only on the instance's Unix socket/);
    });

    it('serves loopback without authentication only with allowUnauthenticatedLoopback (test/dev)', async () => {
      const open = await serveControlV4(fakeApi([]), { address: '127.0.0.1:0', allowUnauthenticatedLoopback: true });
      const c = new grpc.Client(open.address, grpc.credentials.createInsecure());
      try {
        const a = await rawCall(c, '/ateapi.Control/ListAtespaces', Buffer.alloc(0));
        expect(a.err).toBeNull();
      } finally {
        c.close();
        await open.close();
      }
    });

    it('authenticates a client certificate verified against tls.clientCaPath (first URI SAN), else asks for a token', async () => {
      const pki = join(dir, 'pki');
      mkdirSync(pki);
      const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: pki, stdio: 'ignore' });
      const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
      ossl('req', '-x509', ...ec, '-days', '1', '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=test-ca');
      ossl('req', '-x509', ...ec, '-days', '1', '-keyout', 'server.key', '-out', 'server.pem', '-subj', '/CN=api.ate-system.svc', '-addext', 'subjectAltName=DNS:api.ate-system.svc,IP:127.0.0.1');
      const issue = (name: string, ca: string, caKey: string, san: string) => {
        ossl('req', '-new', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
        writeFileSync(join(pki, `${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=clientAuth\n`);
        ossl('x509', '-req', '-in', `${name}.csr`, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-days', '1', '-out', `${name}.pem`, '-extfile', `${name}.ext`);
      };
      issue('client', 'ca.pem', 'ca.key', 'URI:spiffe://cluster.local/ns/ate-system/sa/ate-client,DNS:client.example');
      ossl('req', '-x509', ...ec, '-days', '1', '-keyout', 'rogue-ca.key', '-out', 'rogue-ca.pem', '-subj', '/CN=rogue-ca');
      issue('rogue', 'rogue-ca.pem', 'rogue-ca.key', 'URI:spiffe://cluster.local/ns/evil/sa/x');
      const f = (n: string) => readFileSync(join(pki, n));
      const mtls = await serveControlV4(fakeApi([]), {
        address: '127.0.0.1:0',
        tls: { certPath: join(pki, 'server.pem'), keyPath: join(pki, 'server.key'), clientCaPath: join(pki, 'ca.pem') },
      });
      const opts = { 'grpc.ssl_target_name_override': 'api.ate-system.svc', 'grpc.default_authority': 'api.ate-system.svc' };
      const withCert = new grpc.Client(mtls.address, grpc.credentials.createSsl(f('server.pem'), f('client.key'), f('client.pem')), opts);
      const noCert = new grpc.Client(mtls.address, grpc.credentials.createSsl(f('server.pem')), opts);
      const rogue = new grpc.Client(mtls.address, grpc.credentials.createSsl(f('server.pem'), f('rogue.key'), f('rogue.pem')), opts);
      try {
        expect(mtls.tls).toBe(true);
        const ok = await rawCall(withCert, '/ateapi.Control/ListAtespaces', Buffer.alloc(0));
        expect(ok.err).toBeNull();
        expectStatus(await rawCall(noCert, '/ateapi.Control/ListAtespaces', Buffer.alloc(0)), grpc.status.UNAUTHENTICATED, 'missing bearer token');
        expectStatus(await rawCall(rogue, '/ateapi.Control/ListAtespaces', Buffer.alloc(0)), grpc.status.UNAUTHENTICATED, 'missing bearer token');
      } finally {
        withCert.close();
        noCert.close();
        rogue.close();
        await mtls.close();
      }
    });

    it('reads the first URI SAN, quoted or not', () => {
      expect(firstUriSan({ subjectaltname: 'DNS:a.example, URI:spiffe://td/actor/a/b, URI:https://x' } as never)).toBe('spiffe://td/actor/a/b');
      expect(firstUriSan({ subjectaltname: 'URI:"spiffe://td/a,b"' } as never)).toBe('spiffe://td/a,b');
      expect(firstUriSan({ subjectaltname: 'DNS:a.example' } as never)).toBeUndefined();
      expect(firstUriSan(undefined)).toBeUndefined();
    });
  });

  describe('admin service', () => {
    it('applies and lists WorkerPools and SandboxConfigs on the Unix socket, with strict decoding', async () => {
      const pool: adm.WorkerPool = { namespace: 'default', name: 'gvisor', labels: { tier: 'a' }, replicas: 2, sandboxClass: 'gvisor', workerImage: 'w@sha256:0' };
      let a = await rawCall(unixClient, '/substrate.local.v1.LocalAdmin/ApplyWorkerPool', adm.ApplyWorkerPoolRequest.encode({ workerPool: pool }).finish());
      expect(a.err).toBeNull();
      expect(adm.WorkerPool.decode(a.res!)).toEqual(pool);
      expect(pools.at(-1)).toEqual({ namespace: 'default', name: 'gvisor', labels: { tier: 'a' }, replicas: 2, sandboxClass: 'gvisor', workerImage: 'w@sha256:0' });
      const cfg: adm.SandboxConfig = {
        name: 'gv2',
        sandboxClass: 'gvisor',
        pauseImage: 'pause@sha256:1',
        assets: { amd64: { files: { gvisor: { url: 'gs://b/gvisor.tar.zstd', sha256: 'a'.repeat(64) } } } },
        builtIn: true,
      };
      a = await rawCall(unixClient, '/substrate.local.v1.LocalAdmin/ApplySandboxConfig', adm.ApplySandboxConfigRequest.encode({ sandboxConfig: cfg }).finish());
      expect(a.err).toBeNull();
      expect(configs.at(-1)).toEqual({ name: 'gv2', sandboxClass: 'gvisor', pauseImage: 'pause@sha256:1', assets: { amd64: { gvisor: { url: 'gs://b/gvisor.tar.zstd', sha256: 'a'.repeat(64) } } } });
      a = await rawCall(unixClient, '/substrate.local.v1.LocalAdmin/ListSandboxConfigs', Buffer.alloc(0));
      expect(adm.ListSandboxConfigsResponse.decode(a.res!).sandboxConfigs.map((c) => c.name)).toContain('gv2');
      a = await rawCall(unixClient, '/substrate.local.v1.LocalAdmin/ApplyWorkerPool', cat(varint(77)));
      expectStatus(a, grpc.status.INVALID_ARGUMENT, 'request: Invalid value: unknown field with protobuf tag 77');
      a = await rawCall(unixClient, '/substrate.local.v1.LocalAdmin/ApplyWorkerPool', adm.ApplyWorkerPoolRequest.encode({ workerPool: { ...pool, sandboxClass: 'kata' } }).finish());
      expectStatus(a, grpc.status.INVALID_ARGUMENT, 'worker_pool.sandbox_class: Unsupported value: "kata": supported values: "gvisor", "microvm"');
    });

    it('is not served on TCP', async () => {
      const a = await rawCall(tcpClient, '/substrate.local.v1.LocalAdmin/ListWorkerPools', Buffer.alloc(0), bearer(await mint()));
      expectStatus(a, grpc.status.UNIMPLEMENTED);
    });
  });
});
