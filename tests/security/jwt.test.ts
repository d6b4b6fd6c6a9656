// Issue 7, item 3: JWT rules
//
// The local Substrate's bearer-JWT verifier (src/local/auth.ts, createVerifier) checked directly, without a
// server: exp required; exp/nbf/iat within a 60 s clock skew; kid required and matched when the configured keys
// carry ids; the key file re-read when it changes (and at once for an unknown kid), keeping the last good keys
// when it turns bad; issuer and audience; messages that never carry the token. Plus the same exp/skew rules in
// the operator scripts' verify path (scripts/lib/jwt.mjs, verifySandboxToken).
import { mkdtempSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ensureKeypair,
  gatewayIssuer,
  loadSigningKey,
  mintSandboxToken,
  readKid,
  sandboxSubject,
  verifySandboxToken,
} from '../../scripts/lib/jwt.mjs';
import { ApiError } from '../../src/common/errors.js';
import { setLogSink } from '../../src/common/log.js';
import { CLOCK_SKEW_SECONDS, createVerifier, type Verifier } from '../../src/local/auth.js';

const ISSUER = 'https://issuer.test';
const AUDIENCE = 'api.ate-system.svc';
const UNAUTHENTICATED = 16;

type Pair = { privateKey: CryptoKey; publicKey: CryptoKey };

let dir: string;
let seq = 0;
const logLines: string[] = [];

const now = () => Math.floor(Date.now() / 1000);
const newPair = async (): Promise<Pair> => (await generateKeyPair('EdDSA', { extractable: true })) as unknown as Pair;
const file = (name: string) => join(dir, `${name}-${++seq}`);

/** Write `content` and give the file an explicit mtime, so that a change is seen whatever the fs's mtime resolution. */
function writeKeyFile(path: string, content: string) {
  writeFileSync(path, content);
  const t = new Date(Date.now() + ++seq * 1000);
  utimesSync(path, t, t);
}

async function jwksOf(entries: Array<{ pair: Pair; kid?: string }>) {
  return JSON.stringify({
    keys: await Promise.all(entries.map(async ({ pair, kid }) => ({ ...(await exportJWK(pair.publicKey)), alg: 'EdDSA', ...(kid ? { kid } : {}) }))),
  });
}

/** Mint with explicit claims: `undefined` leaves a claim out. Times are absolute epoch seconds. */
async function mint(
  pair: Pair,
  o: { kid?: string; iss?: string; aud?: string; iat?: number; nbf?: number; exp?: number; noExp?: boolean } = {},
) {
  const t = now();
  const claims: JWTPayload = { iss: o.iss ?? ISSUER, aud: o.aud ?? AUDIENCE, sub: 'tester', iat: o.iat ?? t };
  if (o.nbf !== undefined) claims.nbf = o.nbf;
  if (!o.noExp) claims.exp = o.exp ?? t + 600;
  return new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', ...(o.kid ? { kid: o.kid } : {}) }).sign(pair.privateKey);
}

/** Expects UNAUTHENTICATED "invalid bearer token: ..." (matching `reason` when given) that does not carry the token. */
async function refused(v: Verifier, token: string, reason?: RegExp) {
  const err = await v.verify(`Bearer ${token}`).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'the token was accepted').toBeInstanceOf(ApiError);
  const e = err as ApiError;
  expect(e.code).toBe(UNAUTHENTICATED);
  expect(e.message).toMatch(/^invalid bearer token: /);
  if (reason) expect(e.message).toMatch(reason);
  for (const part of token.split('.').filter((p) => p.length >= 8)) expect(e.message).not.toContain(part);
  return e;
}

const accepted = (v: Verifier, token: string) => expect(v.verify(`Bearer ${token}`)).resolves.toBeUndefined();

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sdl-jwt-rules-'));
  setLogSink((line) => logLines.push(line));
});
afterAll(() => {
  setLogSink((line) => process.stderr.write(line + '\n'));
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  logLines.length = 0;
});

describe('claims: exp required, exp/nbf/iat within the clock skew', () => {
  let pair: Pair;
  let v: Verifier;
  beforeAll(async () => {
    pair = await newPair();
    const pem = file('claims.pem');
    writeFileSync(pem, await exportSPKI(pair.publicKey));
    v = await createVerifier({ publicKeyPath: pem, issuer: ISSUER, audience: AUDIENCE });
  });

  it('the skew is 60 s', () => {
    expect(CLOCK_SKEW_SECONDS).toBe(60);
  });

  it('accepts a token with exp, iat now and nbf now', async () => {
    await accepted(v, await mint(pair, { nbf: now() }));
  });

  it('refuses a token without exp', async () => {
    await refused(v, await mint(pair, { noExp: true }), /"exp"/);
  });

  it('refuses a token whose iat is 10 minutes in the future', async () => {
    await refused(v, await mint(pair, { iat: now() + 600 }), /"iat"/);
  });

  it('refuses a token whose nbf is 10 minutes in the future', async () => {
    await refused(v, await mint(pair, { nbf: now() + 600 }), /"nbf"/);
  });

  it('refuses nbf 2 minutes in the future (beyond the 60 s skew; the old tolerance was 300 s)', async () => {
    await refused(v, await mint(pair, { nbf: now() + 120 }), /"nbf"/);
  });

  it('refuses a token that expired 2 minutes ago', async () => {
    await refused(v, await mint(pair, { iat: now() - 600, exp: now() - 120 }), /ERR_JWT_EXPIRED/);
  });

  it('accepts iat and nbf 30 s ahead, and exp 30 s ago (within the skew)', async () => {
    await accepted(v, await mint(pair, { iat: now() + 30 }));
    await accepted(v, await mint(pair, { iat: now() + 30, nbf: now() + 30 }));
    await accepted(v, await mint(pair, { iat: now() - 600, exp: now() - 30 }));
  });

  it('refuses a token for another audience or another issuer', async () => {
    await refused(v, await mint(pair, { aud: 'someone-else' }), /"aud"/);
    await refused(v, await mint(pair, { iss: 'https://evil.example' }), /"iss"/);
  });

  it('keeps the message shapes: missing bearer token / invalid bearer token, never with the token', async () => {
    for (const h of [undefined, '', 'Bearer ', 'Basic Zm9vOmJhcg==']) {
      const e = await v.verify(h).then(() => undefined, (x: unknown) => x as ApiError);
      expect(e).toBeInstanceOf(ApiError);
      expect(e!.code).toBe(UNAUTHENTICATED);
      expect(e!.message).toBe('missing bearer token');
    }
    const stranger = await newPair();
    const forged = await mint(stranger);
    const e = await refused(v, forged, /ERR_JWS_SIGNATURE_VERIFICATION_FAILED/);
    expect(e.message).not.toContain(forged);
    await refused(v, 'not.a.jwt');
    expect(logLines.join('\n')).not.toContain(forged.split('.')[2]!);
  });
});

describe('kid', () => {
  let a: Pair;
  let b: Pair;
  let jwksPath: string;
  let v: Verifier;
  beforeAll(async () => {
    a = await newPair();
    b = await newPair();
    jwksPath = file('kids.json');
    writeKeyFile(jwksPath, await jwksOf([{ pair: a, kid: 'key-a' }, { pair: b, kid: 'key-b' }]));
    v = await createVerifier({ jwksPath, issuer: ISSUER, audience: AUDIENCE });
  });

  it('accepts a token naming the right kid', async () => {
    await accepted(v, await mint(a, { kid: 'key-a' }));
    await accepted(v, await mint(b, { kid: 'key-b' }));
  });

  it('refuses a token without kid when the configured keys carry ids', async () => {
    // A one-key JWKS: without the rule, jose would pick the only key and accept the token.
    const single = file('single.json');
    writeKeyFile(single, await jwksOf([{ pair: a, kid: 'only' }]));
    const v1 = await createVerifier({ jwksPath: single, issuer: ISSUER, audience: AUDIENCE });
    await accepted(v1, await mint(a, { kid: 'only' }));
    await refused(v1, await mint(a), /kid/);
    await refused(v, await mint(a), /kid/);
  });

  it('refuses a token naming an unknown kid, or the wrong key\'s kid', async () => {
    await refused(v, await mint(a, { kid: 'key-c' }), /ERR_JWKS_NO_MATCHING_KEY/);
    await refused(v, await mint(a, { kid: 'key-b' }), /ERR_JWS_SIGNATURE_VERIFICATION_FAILED/);
  });

  it('a PEM key has no id: a token needs no kid, and any kid is ignored', async () => {
    const pem = file('nokid.pem');
    writeFileSync(pem, await exportSPKI(a.publicKey));
    const vp = await createVerifier({ publicKeyPath: pem, issuer: ISSUER, audience: AUDIENCE });
    await accepted(vp, await mint(a));
    await accepted(vp, await mint(a, { kid: 'whatever' }));
  });

  it('a JWKS whose keys carry no ids: a token needs no kid', async () => {
    const plain = file('plain.json');
    writeKeyFile(plain, await jwksOf([{ pair: a }]));
    const vj = await createVerifier({ jwksPath: plain, issuer: ISSUER, audience: AUDIENCE });
    await accepted(vj, await mint(a));
  });
});

describe('key reload', () => {
  it('JWKS rotation: a token with a new kid is accepted at once, through the unknown-kid re-read', async () => {
    const old = await newPair();
    const next = await newPair();
    const path = file('rotate.json');
    writeKeyFile(path, await jwksOf([{ pair: old, kid: 'k1' }]));
    const v = await createVerifier({ jwksPath: path, issuer: ISSUER, audience: AUDIENCE });
    await accepted(v, await mint(old, { kid: 'k1' }));
    await refused(v, await mint(next, { kid: 'k2' }), /ERR_JWKS_NO_MATCHING_KEY/);

    writeKeyFile(path, await jwksOf([{ pair: old, kid: 'k1' }, { pair: next, kid: 'k2' }]));
    await accepted(v, await mint(next, { kid: 'k2' })); // well within a second of the last check
    await accepted(v, await mint(old, { kid: 'k1' }));
    expect(logLines.some((l) => l.includes('reloaded the verification keys'))).toBe(true);
  });

  it('PEM rotation: a token of the new key is accepted once the file changes', async () => {
    const old = await newPair();
    const next = await newPair();
    const path = file('rotate.pem');
    writeKeyFile(path, await exportSPKI(old.publicKey));
    const v = await createVerifier({ publicKeyPath: path, issuer: ISSUER, audience: AUDIENCE });
    await accepted(v, await mint(old));
    await refused(v, await mint(next), /ERR_JWS_SIGNATURE_VERIFICATION_FAILED/);

    writeKeyFile(path, await exportSPKI(next.publicKey));
    await accepted(v, await mint(next));
  });

  it('a key removed from the file stops verifying within a second, without any key miss', async () => {
    const old = await newPair();
    const next = await newPair();
    const path = file('revoke.pem');
    writeKeyFile(path, await exportSPKI(old.publicKey));
    const v = await createVerifier({ publicKeyPath: path, issuer: ISSUER, audience: AUDIENCE });
    const oldToken = await mint(old);
    await accepted(v, oldToken);
    writeKeyFile(path, await exportSPKI(next.publicKey));
    await new Promise((r) => setTimeout(r, 1100));
    await refused(v, oldToken, /ERR_JWS_SIGNATURE_VERIFICATION_FAILED/);
    await accepted(v, await mint(next));
  });

  it('a corrupt or missing JWKS keeps the last good keys and logs a warning', async () => {
    const good = await newPair();
    const path = file('corrupt.json');
    writeKeyFile(path, await jwksOf([{ pair: good, kid: 'good' }]));
    const v = await createVerifier({ jwksPath: path, issuer: ISSUER, audience: AUDIENCE });
    const token = await mint(good, { kid: 'good' });
    await accepted(v, token);

    writeKeyFile(path, '{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "!!", "kid": "bad"');
    // An unknown kid forces the re-read of the (now corrupt) file.
    const probe = await mint(good, { kid: 'new' });
    await refused(v, probe, /ERR_JWKS_NO_MATCHING_KEY/);
    expect(logLines.some((l) => /"level":"warn".*keeping the last good keys/.test(l))).toBe(true);
    await accepted(v, token);

    logLines.length = 0;
    writeKeyFile(path, JSON.stringify({ keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'AAAA', alg: 'EdDSA', kid: 'broken' }] }));
    await refused(v, await mint(good, { kid: 'broken' }), /ERR_JWKS_NO_MATCHING_KEY/);
    expect(logLines.some((l) => l.includes('keeping the last good keys'))).toBe(true);
    await accepted(v, token);

    logLines.length = 0;
    unlinkSync(path);
    await refused(v, await mint(good, { kid: 'gone' }), /ERR_JWKS_NO_MATCHING_KEY/);
    expect(logLines.some((l) => l.includes('keeping the last good keys') && l.includes('ENOENT'))).toBe(true);
    await accepted(v, token);
    // No log line carries a token.
    for (const t of [token, probe]) expect(logLines.join('\n')).not.toContain(t.split('.')[2]!);
  });

  it('a corrupt PEM keeps the last good key', async () => {
    const good = await newPair();
    const path = file('corrupt.pem');
    writeKeyFile(path, await exportSPKI(good.publicKey));
    const v = await createVerifier({ publicKeyPath: path, issuer: ISSUER, audience: AUDIENCE });
    const token = await mint(good);
    await accepted(v, token);
    writeKeyFile(path, '-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n');
    // A signature failure forces the stat check, which sees the change and tries the (corrupt) file.
    await refused(v, await mint(await newPair()), /ERR_JWS_SIGNATURE_VERIFICATION_FAILED/);
    expect(logLines.some((l) => /"level":"warn".*keeping the last good keys/.test(l))).toBe(true);
    await accepted(v, token);
  });
});

describe('scripts/lib/jwt.mjs verify (sandbox tokens): exp required, 60 s skew on nbf and iat', () => {
  const SANDBOX_ID = '3f2b8c1e-0d6a-4b7e-9c1a-2e5f6a7b8c9d';
  let keyDir: string;
  beforeAll(() => {
    keyDir = join(dir, 'gw-keys');
    ensureKeypair(keyDir);
  });
  const sign = (claims: Record<string, unknown>) =>
    new SignJWT({ sub: sandboxSubject(SANDBOX_ID), iss: gatewayIssuer(), aud: gatewayIssuer(), sandbox_id: SANDBOX_ID, ...claims })
      .setProtectedHeader({ alg: 'EdDSA', kid: readKid(keyDir), typ: 'JWT' })
      .sign(loadSigningKey(keyDir));

  it('refuses a token whose iat is 10 minutes in the future; accepts one 30 s ahead', async () => {
    const t = now();
    const future = await mintSandboxToken(keyDir, { sandboxId: SANDBOX_ID, ttlSecs: 3600, now: t + 600 });
    await expect(verifySandboxToken(future, keyDir)).rejects.toThrow(/issued in the future/);
    const near = await mintSandboxToken(keyDir, { sandboxId: SANDBOX_ID, ttlSecs: 3600, now: t + 30 });
    await expect(verifySandboxToken(near, keyDir)).resolves.toBeTruthy();
  });

  it('refuses a token without exp, expired beyond the skew, or with nbf beyond the skew', async () => {
    const t = now();
    await expect(verifySandboxToken(await sign({ iat: t }), keyDir)).rejects.toThrow(/required claim exp is missing/);
    await expect(verifySandboxToken(await sign({ iat: t - 600, exp: t - 120 }), keyDir)).rejects.toThrow(/token expired/);
    await expect(verifySandboxToken(await sign({ iat: t, exp: t + 600, nbf: t + 600 }), keyDir)).rejects.toThrow(/not valid before/);
    await expect(verifySandboxToken(await sign({ iat: t, exp: t + 600, nbf: t + 30 }), keyDir)).resolves.toBeTruthy();
    // exp 0 is present and means "never expires" for the gateway's sandbox tokens (its default ttl_secs 0).
    await expect(verifySandboxToken(await sign({ iat: t, exp: 0 }), keyDir)).resolves.toBeTruthy();
  });

  it('refuses a non-numeric nbf or iat instead of skipping its check', async () => {
    const t = now();
    await expect(verifySandboxToken(await sign({ iat: t, exp: t + 600, nbf: String(t + 600) }), keyDir)).rejects.toThrow(/nbf must be a number/);
    await expect(verifySandboxToken(await sign({ iat: String(t), exp: t + 600 }), keyDir)).rejects.toThrow(/iat must be a number/);
  });
});
