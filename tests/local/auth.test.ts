// The local Substrate's API on TCP: TLS, and a bearer JWT on every call verified against configured keys
// (upstream's jwt auth mode). Without a valid token every call is UNAUTHENTICATED.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveControl } from '../../src/local/grpc.js';
import { controlClient, expectCode, startTestSubstrate, type TestSubstrate } from './helpers.js';

const ISSUER = 'https://kubernetes.default.svc.cluster.local';
const AUDIENCE = 'api.ate-system.svc';

describe('local Substrate API over TCP with TLS and bearer JWTs', () => {
  let dir: string;
  let s: TestSubstrate;
  let ca: Buffer;
  const keys: Record<string, { privateKey: CryptoKey; publicKey: CryptoKey }> = {};

  const mint = async (alg: string, claims: { iss?: string; aud?: string; exp?: string } = {}, kid = alg) =>
    new SignJWT({})
      .setProtectedHeader({ alg, kid })
      .setIssuer(claims.iss ?? ISSUER)
      .setAudience(claims.aud ?? AUDIENCE)
      .setSubject('system:serviceaccount:ate-system:ate-client')
      .setIssuedAt()
      .setExpirationTime(claims.exp ?? '10m')
      .sign(keys[alg]!.privateKey);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sdl-auth-'));
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=api.ate-system.svc',
      '-addext', 'subjectAltName=DNS:api.ate-system.svc,IP:127.0.0.1',
    ], { stdio: 'ignore' });
    ca = Buffer.from(execFileSync('cat', [join(dir, 'cert.pem')]));
    for (const alg of ['EdDSA', 'ES256', 'RS256']) {
      keys[alg] = (await generateKeyPair(alg, { extractable: true })) as never;
    }
    const jwks = { keys: await Promise.all(Object.entries(keys).map(async ([alg, k]) => ({ ...(await exportJWK(k.publicKey)), kid: alg, alg }))) };
    writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));
    writeFileSync(join(dir, 'ed.pem'), await exportSPKI(keys.EdDSA!.publicKey));
    s = await startTestSubstrate({
      listen: '127.0.0.1:0',
      tls: { certPath: join(dir, 'cert.pem'), keyPath: join(dir, 'key.pem') },
      auth: { jwksPath: join(dir, 'jwks.json'), issuer: ISSUER, audience: AUDIENCE },
      workers: 1,
    });
  });

  afterAll(async () => {
    await s?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const tlsClient = () =>
    controlClient(s.h.apiEndpoint, grpc.credentials.createSsl(ca), { 'grpc.ssl_target_name_override': 'api.ate-system.svc', 'grpc.default_authority': 'api.ate-system.svc' });

  const bearer = (t: string) => {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${t}`);
    return md;
  };

  it('rejects calls without a token, with a malformed header, or with a token it cannot verify', async () => {
    expect(s.h.apiTls).toBe(true);
    const c = tlsClient();
    try {
      await expectCode(c.rpc('listAtespaces', {}), grpc.status.UNAUTHENTICATED, 'missing bearer token');
      const basic = new grpc.Metadata();
      basic.set('authorization', 'Basic Zm9vOmJhcg==');
      await expectCode(c.rpc('listAtespaces', {}, basic), grpc.status.UNAUTHENTICATED, 'missing bearer token');
      await expectCode(c.rpc('listAtespaces', {}, bearer('not.a.jwt')), grpc.status.UNAUTHENTICATED, /^invalid bearer token: /);
      // Wrong audience, wrong issuer, expired, signed by a key nobody configured.
      await expectCode(c.rpc('listAtespaces', {}, bearer(await mint('EdDSA', { aud: 'someone-else' }))), grpc.status.UNAUTHENTICATED, /^invalid bearer token: /);
      await expectCode(c.rpc('listAtespaces', {}, bearer(await mint('EdDSA', { iss: 'https://evil.example' }))), grpc.status.UNAUTHENTICATED, /^invalid bearer token: /);
      await expectCode(c.rpc('listAtespaces', {}, bearer(await mint('ES256', { exp: '-1h' }))), grpc.status.UNAUTHENTICATED, /^invalid bearer token: /);
      const stranger = await generateKeyPair('EdDSA');
      const forged = await new SignJWT({}).setProtectedHeader({ alg: 'EdDSA', kid: 'EdDSA' }).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('10m').sign(stranger.privateKey);
      const e = await expectCode(c.rpc('listAtespaces', {}, bearer(forged)), grpc.status.UNAUTHENTICATED, /^invalid bearer token: /);
      expect(e.details).not.toContain(forged);
    } finally {
      c.close();
    }
  });

  it('accepts EdDSA, ES256 and RS256 tokens with the configured issuer and audience', async () => {
    const c = tlsClient();
    try {
      for (const alg of ['EdDSA', 'ES256', 'RS256']) {
        const r = await c.rpc<{ atespaces: unknown[] }>('listAtespaces', {}, bearer(await mint(alg)));
        expect(Array.isArray(r.atespaces)).toBe(true);
      }
      await c.rpc('createAtespace', { name: 'authed' }, bearer(await mint('RS256')));
      const got = await c.rpc<{ atespace: { name: string } }>('getAtespace', { name: 'authed' }, bearer(await mint('ES256')));
      expect(got.atespace.name).toBe('authed');
    } finally {
      c.close();
    }
  });

  it('refuses plaintext on a non-loopback address', async () => {
    await expect(serveControl(s.h.control, { address: '0.0.0.0:0' })).rejects.toThrow(/requires TLS/);
  });
});
