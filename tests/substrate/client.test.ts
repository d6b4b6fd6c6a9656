// The ateapi.Control client against the real local Substrate serving TLS with bearer-JWT auth on loopback
// (upstream's jwt auth mode): CA bundle, server-name override, mTLS pair, the token file read on every call
// and never echoed, retries on ABORTED, and ListActors paged to the end.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setLogLevel } from '../../src/common/log.js';
import { Actor_Status } from '../../src/gen/june/ateapi.js';
import { ensureDefaultImage } from '../../src/local/images.js';
import { startLocalSubstrate, type LocalSubstrateHandle } from '../../src/local/index.js';
import { SubstrateClient, type SubstrateClientOptions } from '../../src/substrate/client.js';
import { kubeConfigFor, kubeTemplateStore } from '../../src/template/store.js';
import { operatorTemplate } from '../driver/helpers.js';

const ISSUER = 'https://kubernetes.default.svc.cluster.local';
const AUDIENCE = 'api.ate-system.svc';
const SERVER_NAME = 'api.ate-system.svc';

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

async function expectCode(p: Promise<unknown>, code: number): Promise<{ code: number; details?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    const err = e as { code: number; details?: string; message: string };
    expect(err.code).toBe(code);
    return err;
  }
  throw new Error(`expected code ${code}, but the call succeeded`);
}

describe('SubstrateClient against the local Substrate with TLS and bearer JWTs', () => {
  let dir: string;
  let local: LocalSubstrateHandle;
  let keys: { privateKey: CryptoKey; publicKey: CryptoKey };
  let otherKeys: { privateKey: CryptoKey; publicKey: CryptoKey };
  const tokenPath = () => join(dir, 'token');
  const clients: SubstrateClient[] = [];

  const mint = (k = keys, sub = 'ate-client') =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(`system:serviceaccount:ate-system:${sub}`)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(k.privateKey);

  const client = (o: Partial<SubstrateClientOptions> = {}) => {
    const c = new SubstrateClient({
      endpoint: local.apiEndpoint,
      tlsCaPath: join(dir, 'ca.pem'),
      tlsServerName: SERVER_NAME,
      bearerTokenPath: tokenPath(),
      ...o,
    });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    setLogLevel('error');
    dir = mkdtempSync(join(tmpdir(), 'drv-client-'));
    // A CA, a server certificate naming only api.ate-system.svc (no IP: the override is needed to dial
    // 127.0.0.1), and a client certificate for mTLS.
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=test-ca'], dir);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', `/CN=${SERVER_NAME}`], dir);
    writeFileSync(join(dir, 'server.ext'), `subjectAltName=DNS:${SERVER_NAME}\n`);
    openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-out', 'server.pem', '-extfile', 'server.ext'], dir);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=driver'], dir);
    openssl(['x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-out', 'client.pem'], dir);
    keys = (await generateKeyPair('EdDSA', { extractable: true })) as never;
    otherKeys = (await generateKeyPair('EdDSA', { extractable: true })) as never;
    writeFileSync(join(dir, 'jwt.pub'), await exportSPKI(keys.publicKey));
    local = await startLocalSubstrate({
      stateDir: join(dir, 'state'),
      listen: '127.0.0.1:0',
      routerListen: '127.0.0.1:0',
      workers: 1,
      tls: { certPath: join(dir, 'server.pem'), keyPath: join(dir, 'server.key') },
      auth: { publicKeyPath: join(dir, 'jwt.pub'), issuer: ISSUER, audience: AUDIENCE },
    });
    writeFileSync(tokenPath(), `${await mint()}\n`);
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await local?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('verifies the server against the CA bundle with the server-name override', async () => {
    const c = client();
    expect(c.tls).toBe(true);
    expect(Array.isArray(await c.listAtespaces())).toBe(true);
  });

  it('fails without the override: the certificate does not name 127.0.0.1', async () => {
    const c = client({ tlsServerName: undefined, readTimeoutMs: 3000, maxAttempts: 1 });
    await expectCode(c.listAtespaces(), status.UNAVAILABLE);
  });

  it('presents an mTLS pair when configured, and refuses half a pair', async () => {
    const c = client({ tlsCertPath: join(dir, 'client.pem'), tlsKeyPath: join(dir, 'client.key') });
    expect(Array.isArray(await c.listAtespaces())).toBe(true);
    expect(() => client({ tlsCertPath: join(dir, 'client.pem') })).toThrow(/both api_tls_cert_path and api_tls_key_path/);
    expect(() => client({ tlsCaPath: join(dir, 'missing-ca.pem') })).toThrow(/missing-ca\.pem/);
  });

  it('reads the token file on every call (a rotated token takes effect at once) and never echoes it', async () => {
    const c = client();
    await c.ensureAtespace('rot');
    // Rotated to a token the server does not trust: the very next call uses it.
    const bad = await mint(otherKeys);
    writeFileSync(tokenPath(), bad);
    const e = await expectCode(c.getAtespace('rot'), status.UNAUTHENTICATED);
    expect(e.details).toMatch(/invalid bearer token/);
    expect(JSON.stringify(e)).not.toContain(bad);
    expect(e.message).not.toContain(bad);
    // Rotated again to a trusted one (with surrounding whitespace, which is trimmed).
    writeFileSync(tokenPath(), `  ${await mint(keys, 'rotated')}  \n`);
    expect((await c.getAtespace('rot')).name).toBe('rot');
  });

  it('refuses an empty or unreadable token file with an error naming the path, not the token', async () => {
    const good = readFileSync(tokenPath(), 'utf8');
    const c = client();
    writeFileSync(tokenPath(), '  \n');
    const empty = await expectCode(c.listAtespaces(), status.FAILED_PRECONDITION);
    expect(empty.message).toBe(`the ateapi bearer token file ${tokenPath()} is empty; check api_bearer_token_path`);
    const gone = client({ bearerTokenPath: join(dir, 'no-token') });
    const missing = await expectCode(gone.listAtespaces(), status.FAILED_PRECONDITION);
    expect(missing.message).toMatch(new RegExp(`cannot read the ateapi bearer token file ${join(dir, 'no-token')} \\(ENOENT\\)`));
    writeFileSync(tokenPath(), good);
    expect(Array.isArray(await c.listAtespaces())).toBe(true);
  });

  it('without a token the server refuses every call', async () => {
    const c = client({ bearerTokenPath: undefined, maxAttempts: 1 });
    const e = await expectCode(c.listAtespaces(), status.UNAUTHENTICATED);
    expect(e.details).toBe('missing bearer token');
  });

  it('refuses plaintext to a non-loopback address unless api_plaintext allows it, and short workflow deadlines', () => {
    expect(() => new SubstrateClient({ endpoint: '192.0.2.10:443', plaintext: true })).toThrow(/refusing a plaintext connection to 192\.0\.2\.10:443/);
    const allowed = new SubstrateClient({ endpoint: '192.0.2.10:443', plaintext: true, allowInsecureRemote: true });
    expect(allowed.tls).toBe(false);
    allowed.close(); // never dialed: channels connect lazily
    expect(() => new SubstrateClient({ endpoint: local.apiEndpoint, workflowTimeoutMs: 10_000 })).toThrow(/at least 30000/);
  });

  it('pages ListActors until the token is empty', async () => {
    const store = kubeTemplateStore(kubeConfigFor(local.kube));
    const image = (await ensureDefaultImage(local.stateDir)).ref;
    await store.apply(operatorTemplate('pager', image) as never);
    const c = client();
    await c.ensureAtespace('pg');
    const N = 1203;
    for (let i = 0; i < N; i += 100) {
      await Promise.all(
        Array.from({ length: Math.min(100, N - i) }, (_, j) =>
          c.createActor({ actorRef: { atespace: 'pg', name: `a-${i + j}` }, actorTemplateNamespace: 'default', actorTemplateName: 'pager' }),
        ),
      );
    }
    const first = await c.listActors({ atespace: 'pg', pageSize: 1000 });
    expect(first.nextPageToken).not.toBe('');
    const all = await c.listAllActors('pg');
    expect(all).toHaveLength(N);
    expect(new Set(all.map((a) => a.actorId)).size).toBe(N);
    expect(all.every((a) => a.atespace === 'pg' && a.status === Actor_Status.STATUS_SUSPENDED)).toBe(true);
  });

  it('retries ABORTED (the per-actor lock) with backoff, and observes every call', async () => {
    const store = kubeTemplateStore(kubeConfigFor(local.kube));
    await store.waitReady('default', 'pager', 120_000);
    const seen: Array<[string, string]> = [];
    const once = client({ maxAttempts: 1 });
    const retrying = client({ observe: (m, code) => seen.push([m, code]) });
    const ref = { atespace: 'pg', name: 'a-0' };
    // Without retries, a resume racing another resume of the same actor meets the lock.
    const raced = await Promise.allSettled([once.resumeActor(ref), once.resumeActor(ref)]);
    const codes = raced.map((r) => (r.status === 'rejected' ? (r.reason as { code: number }).code : 0));
    expect(codes).toContain(status.ABORTED);
    await retrying.suspendActor(ref);
    // With retries, both succeed and the actor runs.
    const both = await Promise.all([retrying.resumeActor(ref), retrying.resumeActor(ref)]);
    expect(both.every((a) => a.status === Actor_Status.STATUS_RUNNING)).toBe(true);
    await retrying.suspendActor(ref);
    expect(seen.filter(([m]) => m === 'ResumeActor').every(([, code]) => code === 'OK')).toBe(true);
    expect(seen.some(([m]) => m === 'SuspendActor')).toBe(true);
  });
});
