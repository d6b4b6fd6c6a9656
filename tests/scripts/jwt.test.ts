// scripts/jwt.mjs and scripts/lib/jwt.mjs: the gateway's sandbox-token material and tokens, checked with jose
// directly (not with our own verifier), plus the API tokens the local Substrate accepts (checked with the local
// Substrate's own verifier, src/local/auth.ts).
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { SignJWT, compactVerify, createLocalJWKSet, decodeProtectedHeader, importSPKI, jwtVerify } from 'jose';
import { parse as parseToml } from 'smol-toml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  REPO_ROOT,
  ensureKeypair,
  gatewayIssuer,
  loadSigningKey,
  mintApiToken,
  mintSandboxToken,
  verifySandboxToken,
} from '../../scripts/lib/jwt.mjs';
import { createVerifier } from '../../src/local/auth.js';

const SANDBOX_ID = '3f2b8c1e-0d6a-4b7e-9c1a-2e5f6a7b8c9d';
let tmp: string;

function jwt(args: string[], input?: string) {
  return execa(process.execPath, [path.join(REPO_ROOT, 'scripts/jwt.mjs'), ...args], {
    cwd: REPO_ROOT,
    reject: false,
    input: input ?? '',
    stripFinalNewline: false,
    env: { NO_COLOR: '1' },
  });
}

function b64urlJson(v: unknown) {
  return Buffer.from(JSON.stringify(v)).toString('base64url');
}

function decodePayload(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8'));
}

function fresh(name: string) {
  return path.join(tmp, `${name}-${Math.random().toString(16).slice(2)}`);
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'jwt-test-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('keygen', () => {
  it('creates an Ed25519 keypair and kid with the right modes and prints only paths', async () => {
    const dir = fresh('keys');
    const r = await jwt(['keygen', '--dir', dir]);
    expect(r.exitCode).toBe(0);
    const st = (f: string) => fs.statSync(path.join(dir, f)).mode & 0o777;
    expect(st('signing.pem')).toBe(0o600);
    expect(st('public.pem')).toBe(0o644);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.readFileSync(path.join(dir, 'signing.pem'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/); // PKCS#8
    expect(fs.readFileSync(path.join(dir, 'public.pem'), 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----\n/); // SPKI
    expect(fs.readFileSync(path.join(dir, 'kid'), 'utf8')).toMatch(/^[0-9a-f]{32}\n$/);
    // stdout is the [openshell.gateway.gateway_jwt] table, with paths and no key material
    expect(r.stdout).not.toMatch(/BEGIN|PRIVATE/);
    const doc = parseToml(r.stdout) as any;
    expect(doc.openshell.gateway.gateway_jwt).toEqual({
      signing_key_path: path.join(dir, 'signing.pem'),
      public_key_path: path.join(dir, 'public.pem'),
      kid_path: path.join(dir, 'kid'),
      gateway_id: 'openshell',
      ttl_secs: 0,
    });
    // the key works with jose as an EdDSA key
    await importSPKI(fs.readFileSync(path.join(dir, 'public.pem'), 'utf8'), 'EdDSA');
  });

  it('reuses existing material byte for byte, and fills in a missing public key and kid', async () => {
    const dir = fresh('reuse');
    expect((await jwt(['keygen', '--dir', dir])).exitCode).toBe(0);
    const before = ['signing.pem', 'public.pem', 'kid'].map((f) => fs.readFileSync(path.join(dir, f), 'utf8'));
    const again = await jwt(['keygen', '--dir', dir, '--gateway-id', 'gw2', '--ttl', '3600']);
    expect(again.exitCode).toBe(0);
    expect(again.stderr).toContain(`reused ${path.join(dir, 'signing.pem')}`);
    expect(['signing.pem', 'public.pem', 'kid'].map((f) => fs.readFileSync(path.join(dir, f), 'utf8'))).toEqual(before);
    expect((parseToml(again.stdout) as any).openshell.gateway.gateway_jwt).toMatchObject({ gateway_id: 'gw2', ttl_secs: 3600 });

    fs.rmSync(path.join(dir, 'public.pem'));
    const refill = await jwt(['keygen', '--dir', dir]);
    expect(refill.exitCode).toBe(0);
    expect(fs.readFileSync(path.join(dir, 'public.pem'), 'utf8')).toBe(before[1]);
  });

  it('two concurrent keygens on one new directory end with one keypair', async () => {
    const dir = fresh('race');
    const [a, b] = await Promise.all([jwt(['keygen', '--dir', dir]), jwt(['keygen', '--dir', dir])]);
    expect([a.exitCode, b.exitCode]).toEqual([0, 0]);
    expect(fs.readdirSync(dir).sort()).toEqual(['kid', 'public.pem', 'signing.pem']);
    const r = ensureKeypair(dir);
    expect(r.created).toEqual([]);
  });

  it('refuses a public key that does not match the signing key', async () => {
    const a = fresh('a');
    const b = fresh('b');
    ensureKeypair(a);
    ensureKeypair(b);
    fs.copyFileSync(path.join(b, 'public.pem'), path.join(a, 'public.pem'));
    const r = await jwt(['keygen', '--dir', a]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('does not match');
  });

  it('refuses any directory inside the repository, also through a symlink, and creates nothing', async () => {
    const inside = path.join(REPO_ROOT, '.state', `jwt-test-${process.pid}`);
    const r = await jwt(['keygen', '--dir', inside]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('inside this repository');
    expect(fs.existsSync(inside)).toBe(false);

    const link = path.join(tmp, `repo-link-${process.pid}`);
    fs.symlinkSync(REPO_ROOT, link);
    const viaLink = path.join(link, 'keys');
    const r2 = await jwt(['keygen', '--dir', viaLink]);
    expect(r2.exitCode).toBe(1);
    expect(r2.stderr).toContain('inside this repository');
    expect(fs.existsSync(path.join(REPO_ROOT, 'keys'))).toBe(false);
  });

  it('generates ES256 and RS256 keys on request, and will not mix algorithms in one directory', async () => {
    const es = fresh('es');
    const r = await jwt(['keygen', '--dir', es, '--alg', 'ES256']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain(`--jwt-public-key ${path.join(es, 'public.pem')}`);
    await importSPKI(fs.readFileSync(path.join(es, 'public.pem'), 'utf8'), 'ES256');
    const mixed = await jwt(['keygen', '--dir', es, '--alg', 'RS256']);
    expect(mixed.exitCode).toBe(1);
    expect(mixed.stderr).toContain('holds a key for ES256, not RS256');
    const bad = await jwt(['keygen', '--dir', fresh('x'), '--alg', 'HS256']);
    expect(bad.exitCode).toBe(2);
  });
});

describe('mint and verify (sandbox tokens)', () => {
  let dir: string;
  let kid: string;
  let publicPem: string;
  beforeAll(() => {
    dir = fresh('gw');
    kid = ensureKeypair(dir).kid;
    publicPem = fs.readFileSync(path.join(dir, 'public.pem'), 'utf8');
  });

  it('mints the gateway\'s exact header and claims, verifiable with jose and public.pem; exp 0 by default', async () => {
    const t0 = Math.floor(Date.now() / 1000);
    const r = await jwt(['mint', '--dir', dir, '--sandbox-id', SANDBOX_ID]);
    const t1 = Math.floor(Date.now() / 1000);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    const token = r.stdout.trim();
    expect(r.stdout).toBe(`${token}\n`); // nothing but the token on stdout
    expect(token.split('.')).toHaveLength(3);

    const { protectedHeader, payload } = await compactVerify(token, await importSPKI(publicPem, 'EdDSA'), { algorithms: ['EdDSA'] });
    expect(protectedHeader).toEqual({ alg: 'EdDSA', kid, typ: 'JWT' });
    const claims = JSON.parse(new TextDecoder().decode(payload));
    expect(Object.keys(claims).sort()).toEqual(['aud', 'exp', 'iat', 'iss', 'sandbox_id', 'sub']);
    expect(claims).toMatchObject({
      sub: `spiffe://openshell/sandbox/${SANDBOX_ID}`,
      iss: 'openshell-gateway:openshell',
      aud: 'openshell-gateway:openshell',
      sandbox_id: SANDBOX_ID,
      exp: 0,
    });
    expect(claims.iat).toBeGreaterThanOrEqual(t0);
    expect(claims.iat).toBeLessThanOrEqual(t1);
  });

  it('with --ttl and --gateway-id: exp = iat + ttl, iss = aud = openshell-gateway:<id>; jose jwtVerify accepts it', async () => {
    const r = await jwt(['mint', '--dir', dir, '--sandbox-id', SANDBOX_ID, '--gateway-id', 'east', '--ttl', '600']);
    expect(r.exitCode).toBe(0);
    const token = r.stdout.trim();
    const { payload } = await jwtVerify(token, await importSPKI(publicPem, 'EdDSA'), {
      algorithms: ['EdDSA'],
      issuer: 'openshell-gateway:east',
      audience: 'openshell-gateway:east',
    });
    expect(payload.exp).toBe((payload.iat as number) + 600);
  });

  it('verify reads stdin, prints the claims, accepts exp 0 and never prints the token', async () => {
    const token = (await jwt(['mint', '--dir', dir, '--sandbox-id', SANDBOX_ID])).stdout.trim();
    const r = await jwt(['verify', '--dir', dir], `${token}\n`);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ sandbox_id: SANDBOX_ID, exp: 0, sub: `spiffe://openshell/sandbox/${SANDBOX_ID}` });
    for (const part of token.split('.')) {
      expect(r.stdout).not.toContain(part);
      expect(r.stderr).not.toContain(part);
    }
  });

  it('verify refuses a token on the command line without echoing it', async () => {
    const token = (await jwt(['mint', '--dir', dir, '--sandbox-id', SANDBOX_ID])).stdout.trim();
    const r = await jwt(['verify', '--dir', dir, token]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('reads the token from stdin');
    expect(r.stderr + r.stdout).not.toContain(token.split('.')[2]!);
    expect(r.stderr + r.stdout).not.toContain(token.split('.')[1]!);
  });

  it('rejects a tampered payload (jose and verify agree), without printing the token', async () => {
    const token = (await jwt(['mint', '--dir', dir, '--sandbox-id', SANDBOX_ID])).stdout.trim();
    const [h, p, s] = token.split('.') as [string, string, string];
    const claims = decodePayload(token);
    const forged = `${h}.${b64urlJson({ ...claims, sandbox_id: '00000000-0000-4000-8000-000000000000', sub: 'spiffe://openshell/sandbox/00000000-0000-4000-8000-000000000000' })}.${s}`;
    await expect(compactVerify(forged, await importSPKI(publicPem, 'EdDSA'))).rejects.toThrow();
    const r = await jwt(['verify', '--dir', dir], forged);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('signature verification failed');
    expect(r.stdout).toBe('');
    expect(r.stderr).not.toContain(s);
    expect(r.stderr).not.toContain(p);
  });

  it('rejects a token signed by another key, both with a matching kid (signature) and without (kid mismatch)', async () => {
    const other = fresh('other');
    ensureKeypair(other);
    const otherKid = await jwt(['mint', '--dir', other, '--sandbox-id', SANDBOX_ID]);
    const r1 = await jwt(['verify', '--dir', dir], otherKid.stdout);
    expect(r1.exitCode).toBe(1);
    expect(r1.stderr).toContain('kid mismatch');

    fs.copyFileSync(path.join(dir, 'kid'), path.join(other, 'kid'));
    const sameKid = (await jwt(['mint', '--dir', other, '--sandbox-id', SANDBOX_ID])).stdout.trim();
    expect(decodeProtectedHeader(sameKid).kid).toBe(kid);
    await expect(compactVerify(sameKid, await importSPKI(publicPem, 'EdDSA'))).rejects.toThrow();
    const r2 = await jwt(['verify', '--dir', dir], sameKid);
    expect(r2.exitCode).toBe(1);
    expect(r2.stderr).toContain('signature verification failed');
  });

  it('rejects another algorithm even with a valid MAC over the same header and claims', async () => {
    const claims = decodePayload((await jwt(['mint', '--dir', dir, '--sandbox-id', SANDBOX_ID])).stdout.trim());
    const signingInput = `${b64urlJson({ alg: 'HS256', kid, typ: 'JWT' })}.${b64urlJson(claims)}`;
    const mac = createHmac('sha256', publicPem).update(signingInput).digest('base64url');
    const r = await jwt(['verify', '--dir', dir], `${signingInput}.${mac}`);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('pinned to EdDSA');
  });

  it('checks exp with 60 s leeway (exp 0 = never), iss/aud against --gateway-id, and typ', async () => {
    const now = Math.floor(Date.now() / 1000);
    const expired = await mintSandboxToken(dir, { sandboxId: SANDBOX_ID, ttlSecs: 10, now: now - 100 });
    const r = await jwt(['verify', '--dir', dir], expired);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain('token expired at');
    const withinLeeway = await mintSandboxToken(dir, { sandboxId: SANDBOX_ID, ttlSecs: 10, now: now - 40 });
    expect((await jwt(['verify', '--dir', dir], withinLeeway)).exitCode).toBe(0);
    const ancient = await mintSandboxToken(dir, { sandboxId: SANDBOX_ID, ttlSecs: 0, now: 1 });
    expect((await verifySandboxToken(ancient, dir)).claims.exp).toBe(0);

    const east = await mintSandboxToken(dir, { sandboxId: SANDBOX_ID, gatewayId: 'east' });
    const wrongGw = await jwt(['verify', '--dir', dir], east);
    expect(wrongGw.exitCode).toBe(1);
    expect(wrongGw.stderr).toContain(`is not "${gatewayIssuer('openshell')}"`);
    expect((await jwt(['verify', '--dir', dir, '--gateway-id', 'east'], east)).exitCode).toBe(0);

    await expect(verifySandboxToken('not-a-token', dir)).rejects.toThrow('malformed token');

    // An extension token (typ openshell-ext+jwt) signed by the right key is still not a sandbox token.
    const claims = decodePayload(await mintSandboxToken(dir, { sandboxId: SANDBOX_ID }));
    const ext = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid, typ: 'openshell-ext+jwt' }).sign(loadSigningKey(dir));
    const rExt = await jwt(['verify', '--dir', dir], ext);
    expect(rExt.exitCode).toBe(1);
    expect(rExt.stderr).toContain('extension token');
  });

  it('validates its arguments: UUID form, ttl, required flags, unknown flags (exit 2)', async () => {
    const ids = ['XYZ', SANDBOX_ID.toUpperCase(), `${SANDBOX_ID}0`];
    const minted = await Promise.all(ids.map((id) => jwt(['mint', '--dir', dir, '--sandbox-id', id])));
    for (const r of minted) {
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toContain('not a lowercase canonical UUID');
      expect(r.stdout).toBe('');
    }
    expect((await jwt(['mint', '--dir', dir])).stderr).toContain('--sandbox-id UUID is required');
    expect((await jwt(['mint', '--dir', dir, '--sandbox-id', SANDBOX_ID, '--ttl', '-5'])).exitCode).toBe(2);
    expect((await jwt(['mint', '--sandbox-id', SANDBOX_ID])).stderr).toContain('--dir DIR is required');
    const unknown = await jwt(['mint', '--dir', dir, '--sandbox-id', SANDBOX_ID, '--frob']);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toContain('unknown option: --frob');
    expect((await jwt(['verify', '--dir', dir], '')).stderr).toContain('no token on stdin');
    expect((await jwt(['frobnicate'])).exitCode).toBe(2);
    const missing = await jwt(['mint', '--dir', fresh('none'), '--sandbox-id', SANDBOX_ID]);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toContain('does not exist');
  });
});

describe('secret and jwks', () => {
  it('secret renders a Secret with the three files (the one place the private key is printed)', async () => {
    const dir = fresh('sec');
    ensureKeypair(dir);
    const r = await jwt(['secret', '--dir', dir, '--namespace', 'openshell']);
    expect(r.exitCode).toBe(0);
    const doc = parseYaml(r.stdout);
    expect(doc).toMatchObject({ apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name: 'openshell-gateway-jwt', namespace: 'openshell' } });
    for (const f of ['signing.pem', 'public.pem', 'kid']) {
      expect(Buffer.from(doc.data[f], 'base64').toString('utf8')).toBe(fs.readFileSync(path.join(dir, f), 'utf8'));
    }
    const named = parseYaml((await jwt(['secret', '--dir', dir, '--name', 'gw-keys'])).stdout);
    expect(named.metadata).toMatchObject({ name: 'gw-keys' });
    expect(named.metadata.namespace).toBeUndefined();
    const bad = await jwt(['secret', '--dir', dir, '--name', 'Bad_Name']);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toContain('invalid Secret name');
    expect(bad.stdout).toBe('');
  });

  it('jwks prints public parts only, and tokens verify against it', async () => {
    const dir = fresh('jwks');
    ensureKeypair(dir);
    const r = await jwt(['jwks', '--dir', dir]);
    expect(r.exitCode).toBe(0);
    const jwks = JSON.parse(r.stdout);
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig', kid: fs.readFileSync(path.join(dir, 'kid'), 'utf8').trim() });
    expect(jwks.keys[0].d).toBeUndefined();
    const token = await mintApiToken(dir, { issuer: 'https://issuer.test' });
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: 'https://issuer.test', audience: 'api.ate-system.svc' });
    expect(payload.sub).toBe('system:serviceaccount:ate-system:ate-client');
  });
});

describe('mint-api (tokens for the local Substrate API)', () => {
  for (const alg of ['EdDSA', 'ES256', 'RS256'] as const) {
    it(`${alg}: header, claims, and accepted by the local Substrate's verifier (PEM and JWKS)`, async () => {
      const dir = fresh(`api-${alg}`);
      expect((await jwt(['keygen', '--dir', dir, '--alg', alg])).exitCode).toBe(0);
      const t0 = Math.floor(Date.now() / 1000);
      const r = await jwt(['mint-api', '--dir', dir, '--issuer', 'https://local.substrate', '--audience', 'api.ate-system.svc', '--alg', alg, '--ttl', '900', '--sub', 'tester']);
      expect(r.exitCode).toBe(0);
      const token = r.stdout.trim();
      expect(r.stdout).toBe(`${token}\n`);
      const kid = fs.readFileSync(path.join(dir, 'kid'), 'utf8').trim();
      const { payload, protectedHeader } = await jwtVerify(token, await importSPKI(fs.readFileSync(path.join(dir, 'public.pem'), 'utf8'), alg), {
        issuer: 'https://local.substrate',
        audience: 'api.ate-system.svc',
        algorithms: [alg],
      });
      expect(protectedHeader).toEqual({ alg, kid, typ: 'JWT' });
      expect(payload).toMatchObject({ sub: 'tester', nbf: payload.iat, exp: (payload.iat as number) + 900 });
      expect(payload.iat as number).toBeGreaterThanOrEqual(t0);

      const jwksFile = path.join(dir, 'jwks.json');
      fs.writeFileSync(jwksFile, (await jwt(['jwks', '--dir', dir])).stdout);
      for (const keyOpt of [{ publicKeyPath: path.join(dir, 'public.pem') }, { jwksPath: jwksFile }]) {
        const v = await createVerifier({ ...keyOpt, issuer: 'https://local.substrate', audience: 'api.ate-system.svc' });
        await expect(v.verify(`Bearer ${token}`)).resolves.toBeUndefined();
        const wrongAud = await createVerifier({ ...keyOpt, issuer: 'https://local.substrate', audience: 'other' });
        await expect(wrongAud.verify(`Bearer ${token}`)).rejects.toThrow(/invalid bearer token/);
      }
    });
  }

  it('needs --issuer, a positive ttl, and an --alg matching the key', async () => {
    const dir = fresh('api-args');
    ensureKeypair(dir);
    expect((await jwt(['mint-api', '--dir', dir])).stderr).toContain('--issuer ISS is required');
    expect((await jwt(['mint-api', '--dir', dir, '--issuer', 'x', '--ttl', '0'])).exitCode).toBe(2);
    const mismatch = await jwt(['mint-api', '--dir', dir, '--issuer', 'x', '--alg', 'RS256']);
    expect(mismatch.exitCode).toBe(1);
    expect(mismatch.stderr).toContain('does not match');
    expect(mismatch.stdout).toBe('');
  });
});

describe('--help', () => {
  it('every subcommand has --help (exit 0, its usage line on stdout)', async () => {
    const top = await jwt(['--help']);
    expect(top.exitCode).toBe(0);
    expect(top.stdout).toContain('usage: node scripts/jwt.mjs <command>');
    const cmds = ['keygen', 'secret', 'mint', 'verify', 'mint-api', 'jwks'];
    const helps = await Promise.all(cmds.map((cmd) => jwt([cmd, '--help'])));
    for (const [i, cmd] of cmds.entries()) {
      const r = helps[i]!;
      expect(r.exitCode, cmd).toBe(0);
      expect(r.stdout).toContain(`usage: node scripts/jwt.mjs ${cmd} `);
    }
    expect((await jwt(['secret', '--help'])).stdout).toContain('PRIVATE KEY');
  });
});
