// The bootstrap agent's rules without gVisor (milliseconds): bundle parsing as upstream's serde structs and
// validate(), JWT verification as upstream's SessionJwtVerifier, the launch state machine (pins, epochs, trust
// anchor), the files it writes, its HTTP surface, the process wrapper, identity mode for 0.0.x sandboxes (the
// workload held until its identity is delivered, then started with exactly that identity added to its
// environment), and the driver's LaunchDelivery through the real actor router (src/local/router.ts, v0.4) over a
// stand-in backend. No answer, error or file meant for the workload ever carries token text.
import { spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { SignJWT, exportSPKI, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, Code } from '../../src/common/errors.js';
import { LaunchDelivery, deliverToSandbox, parseLaunchAuthentication, scrub } from '../../src/driver/launch.js';
import type { Actor } from '../../src/gen/ateapi.js';
import { ensureDefaultImage } from '../../src/local/images.js';
import { startRouter } from '../../src/local/router.js';
import { ociConfig } from '../../src/local/runtime/gvisor.js';
import {
  FILES,
  MAX_BODY_BYTES,
  createAgentServer,
  createIdentityHandler,
  createLaunchHandler,
  workloadEnv,
  type SandboxIdentity,
} from '../../src/sandbox/bootstrap-agent.mjs';
import { LaunchError, keyRing, parseLaunchAuthentication as parseBundle, verifySessionJwt } from '../../src/sandbox/launch-auth.mjs';
import { GatewayStandin, secretPartsOf, type Minted } from './launch-helpers.js';

const AGENT = path.resolve(import.meta.dirname, '../../src/sandbox/bootstrap-agent.mjs');
const SID = 'sandbox-a';
const dirs: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'launch-agent-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

let gw: GatewayStandin;
const all: Minted[] = [];
const mint = async (o: Parameters<GatewayStandin['mint']>[0], g = gw) => {
  const m = await g.mint(o);
  all.push(m);
  return m;
};
const body = (m: Minted, over: Record<string, unknown> = {}) => ({ sandbox_id: SID, launch_authentication: m.bytes.toString('base64'), ...over });
const edit = async (fn: (b: Record<string, any>) => void) => mint({ sandboxId: SID, authEpoch: 1, edit: fn });

/** 0.0.x sandbox tokens minted as that gateway does (typ JWT, EdDSA, exp 0, a sandbox_id claim). */
const legacyTokens: string[] = [];
let legacyKey: CryptoKey;
const legacyToken = async (sandboxId: string): Promise<string> => {
  const iss = 'openshell-gateway:openshell';
  // Distinct per mint (the gateway's iat moves on; here several are minted within one second).
  const iat = Math.floor(Date.now() / 1000) - legacyTokens.length;
  const t = await new SignJWT({ sub: `spiffe://openshell/sandbox/${sandboxId}`, iss, aud: iss, iat, exp: 0, sandbox_id: sandboxId })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid: 'legacy-1' })
    .sign(legacyKey);
  legacyTokens.push(t);
  return t;
};
const sha = (t: string) => createHash('sha256').update(t).digest('hex');

beforeAll(async () => {
  gw = await GatewayStandin.create('gw-unit', 'k1');
  legacyKey = (await generateKeyPair('EdDSA', { crv: 'Ed25519' })).privateKey;
});

function expectNoSecret(text: string) {
  for (const m of all) for (const s of secretPartsOf(m)) expect(text).not.toContain(s);
  for (const t of legacyTokens) {
    expect(text).not.toContain(t);
    expect(text).not.toContain(t.split('.')[2]!);
  }
}

describe('parseLaunchAuthentication (upstream SandboxLaunchAuthentication)', () => {
  it('accepts a gateway bundle and gives the PEMs as strings', async () => {
    const m = await mint({ sandboxId: SID, authEpoch: 3 });
    const b = parseBundle(m.bytes);
    expect(b.gateway_id).toBe('gw-unit');
    expect(b.verification_keys).toEqual(gw.publicKeys());
    expect(b.supervisor.auth_epoch).toBe(3);
    expect(Object.keys(b.supervisor)).toEqual(['session_id', 'runtime_generation', 'session_rotation', 'auth_epoch', 'gateway_token', 'gateway_expires_at', 'sandbox_token', 'sandbox_expires_at']);
  });

  it.each([
    ['an unknown top-level field', (b: any) => (b.extra = 1), /launch_authentication has an unknown field "extra"/],
    ['an unknown supervisor field', (b: any) => (b.supervisor.note = 'x'), /supervisor has an unknown field "note"/],
    ['an unknown key field', (b: any) => (b.verification_keys[0].alg = 'x'), /verification_keys\[0\] has an unknown field "alg"/],
    ['__proto__ as a field', (b: any) => Object.defineProperty(b, '__proto__', { value: 1, enumerable: true }), /unknown field "__proto__"/],
    ['a missing field', (b: any) => delete b.supervisor.sandbox_token, /lacks the field "sandbox_token"/],
    ['a non-canonical session id', (b: any) => (b.supervisor.session_id = b.supervisor.session_id.toUpperCase()), /session_id/],
    ['a nil session id', (b: any) => (b.supervisor.session_id = '00000000-0000-0000-0000-000000000000'), /session_id/],
    ['a bad generation', (b: any) => (b.supervisor.runtime_generation = 'Gen/1'), /runtime_generation/],
    ['session_rotation 0', (b: any) => (b.supervisor.session_rotation = 0), /session_rotation/],
    ['auth_epoch 0', (b: any) => (b.supervisor.auth_epoch = 0), /auth_epoch/],
    ['a fractional epoch', (b: any) => (b.supervisor.auth_epoch = 1.5), /auth_epoch/],
    ['a token with whitespace', (b: any) => (b.supervisor.gateway_token = ` ${b.supervisor.gateway_token}`), /gateway_token is not a compact JWT/],
    ['a non-positive expiry', (b: any) => (b.supervisor.sandbox_expires_at = 0), /sandbox_expires_at/],
    ['an empty gateway id', (b: any) => (b.gateway_id = ''), /gateway_id/],
    ['no keys', (b: any) => (b.verification_keys = []), /non-empty list/],
    ['a duplicate key id', (b: any) => b.verification_keys.push(b.verification_keys[0]), /twice/],
    ['a PEM as a string (Vec<u8> is a byte array)', (b: any) => (b.verification_keys[0].public_key_pem = 'x'), /JSON array of bytes/],
    ['an empty PEM', (b: any) => (b.verification_keys[0].public_key_pem = []), /JSON array of bytes/],
    ['a PEM that is no key', (b: any) => (b.verification_keys[0].public_key_pem = [...Buffer.from('hello')]), /not a PEM public key/],
  ])('refuses %s, naming the field and never a value', async (_what, fn, re) => {
    const m = await edit(fn as (b: Record<string, any>) => void);
    let err: unknown;
    try {
      parseBundle(m.bytes);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LaunchError);
    expect((err as LaunchError).status).toBe(400);
    expect((err as Error).message).toMatch(re);
    expectNoSecret((err as Error).message);
  });

  it('refuses private keys and keys of other kinds among the verification keys', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const priv = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const m1 = await edit((b) => (b.verification_keys[0].public_key_pem = [...Buffer.from(priv)]));
    expect(() => parseBundle(m1.bytes)).toThrow(/not a PEM public key block/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }) as string;
    const m2 = await edit((b) => (b.verification_keys[0].public_key_pem = [...Buffer.from(rsa)]));
    expect(() => parseBundle(m2.bytes)).toThrow(/neither Ed25519 nor EC P-256/);
    expect(() => parseBundle(Buffer.from([0xff, 0xfe]))).toThrow(/not UTF-8/);
    expect(() => parseBundle(Buffer.from('{'))).toThrow(/not valid JSON/);
  });

  it("the driver's parse keeps no token and answers INVALID_ARGUMENT", async () => {
    const m = await mint({ sandboxId: SID, authEpoch: 4 });
    const s = parseLaunchAuthentication(m.bytes);
    expect(s).toMatchObject({ gatewayId: 'gw-unit', authEpoch: 4, sandboxId: SID, verificationKeys: gw.publicKeys() });
    expectNoSecret(JSON.stringify(s));
    const bad = await edit((b) => (b.supervisor.extra = b.supervisor.gateway_token));
    try {
      parseLaunchAuthentication(bad.bytes);
      throw new Error('accepted');
    } catch (e) {
      expect(e).toBeInstanceOf(ApiError);
      expect((e as ApiError).code).toBe(Code.INVALID_ARGUMENT);
      expect((e as ApiError).message).toMatch(/launch authentication is invalid: .*unknown field "extra"/);
      expectNoSecret((e as ApiError).message);
    }
    expect(() => parseLaunchAuthentication(new Uint8Array())).toThrow(/empty/);
  });

  it('scrub removes secrets and anything JWT-shaped', async () => {
    const m = await mint({ sandboxId: SID, authEpoch: 1 });
    expect(scrub(`a ${m.gatewayToken} b`, [m.gatewayToken])).toBe('a [redacted] b');
    expect(scrub(`x ${m.sandboxToken}`)).toBe('x [redacted]');
  });
});

describe('JWT verification (upstream SessionJwtVerifier)', () => {
  let pem = '';
  const ring = () => keyRing([{ key_id: 'k1', public_key_pem: pem }]);
  const base = () => ({
    iss: 'openshell-gateway:gw-unit',
    sub: `spiffe://openshell/sandbox/${SID}`,
    aud: 'openshell-gateway:gw-unit',
    iat: Math.floor(Date.now() / 1000),
    exp: Math.floor(Date.now() / 1000) + 600,
    jti: randomUUID(),
    sandbox_id: SID,
    runtime_generation: 'g1',
    auth_epoch: 1,
    component: 'openshell-supervisor',
  });
  let priv: CryptoKey;
  beforeAll(async () => {
    // Tokens shaped by hand here (the gateway stand-in only mints well-formed ones).
    const k = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    priv = k.privateKey;
    pem = await exportSPKI(k.publicKey);
  });
  const sign = (claims: Record<string, unknown>, header: Record<string, unknown> = {}) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', typ: 'openshell-gateway-session+jwt', kid: 'k1', ...header } as never).sign(priv);
  const verifyG = (t: string) => verifySessionJwt(t, { profile: 'gateway', gatewayId: 'gw-unit', ring: ring(), label: 'gateway_token' });

  it('accepts the gateway profile and returns the identity', async () => {
    expect(verifyG(await sign(base()))).toMatchObject({ sandbox_id: SID, auth_epoch: 1, runtime_generation: 'g1' });
  });

  it.each([
    ['another typ', {}, { typ: 'JWT' }, /type must be/],
    ['no kid', {}, { kid: undefined }, /no key id/],
    ['an unknown kid', {}, { kid: 'k9' }, /not among the trusted/],
    ['crit headers', {}, { crit: ['b64'], b64: true }, /critical/],
    ['another issuer', { iss: 'openshell-gateway:other' }, {}, /issuer/],
    ['the sandbox audience on a gateway token', { aud: 'openshell-sandbox' }, {}, /audience/],
    ['an audience list', { aud: ['openshell-gateway:gw-unit'] }, {}, /audience/],
    ['a subject for another sandbox', { sub: 'spiffe://openshell/sandbox/other' }, {}, /subject/],
    ['an unknown claim', { extra: 1 }, {}, /unknown claim "extra"/],
    ['a missing claim', { jti: undefined }, {}, /lacks the claim "jti"/],
    ['epoch 0', { auth_epoch: 0 }, {}, /auth_epoch/],
    ['another component', { component: 'x' }, {}, /component/],
    ['a jti that is no UUID', { jti: 'abc' }, {}, /jti/],
    ['a lifetime over an hour', { exp: Math.floor(Date.now() / 1000) + 7200 }, {}, /lifetime/],
    ['an expired token', { iat: Math.floor(Date.now() / 1000) - 1000, exp: Math.floor(Date.now() / 1000) - 100 }, {}, /expired/],
    ['a token from the future', { iat: Math.floor(Date.now() / 1000) + 600, exp: Math.floor(Date.now() / 1000) + 1200 }, {}, /future/],
  ])('refuses %s (403)', async (_w, claims, header, re) => {
    const c: Record<string, unknown> = { ...base(), ...claims };
    for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
    const h: Record<string, unknown> = { ...header };
    let t: string;
    if ('kid' in h && h.kid === undefined) {
      t = await new SignJWT(c).setProtectedHeader({ alg: 'EdDSA', typ: 'openshell-gateway-session+jwt' }).sign(priv);
    } else t = await sign(c, h);
    try {
      verifyG(t);
      throw new Error('accepted');
    } catch (e) {
      expect(e).toBeInstanceOf(LaunchError);
      expect((e as LaunchError).status).toBe(403);
      expect((e as Error).message).toMatch(re);
      expect((e as Error).message).not.toContain(t.split('.')[2]);
    }
  });

  it('refuses alg none, HS256, a tampered payload and a token signed by another key', async () => {
    const good = await sign(base());
    const [h, p, s] = good.split('.');
    const enc = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');
    expect(() => verifyG(`${enc({ alg: 'none', typ: 'openshell-gateway-session+jwt', kid: 'k1' })}.${p}.${s}`)).toThrow(/algorithm must be EdDSA or ES256/);
    expect(() => verifyG(`${enc({ alg: 'HS256', typ: 'openshell-gateway-session+jwt', kid: 'k1' })}.${p}.${s}`)).toThrow(/algorithm/);
    expect(() => verifyG(`${h}.${enc({ ...base(), auth_epoch: 99 })}.${s}`)).toThrow(/signature does not verify/);
    const other = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const forged = await new SignJWT(base()).setProtectedHeader({ alg: 'EdDSA', typ: 'openshell-gateway-session+jwt', kid: 'k1' }).sign(other.privateKey);
    expect(() => verifyG(forged)).toThrow(/signature does not verify/);
    // An EdDSA header over an EC key: refused before any signature check.
    const ec = await generateKeyPair('ES256');
    const ecRing = keyRing([{ key_id: 'k1', public_key_pem: await exportSPKI(ec.publicKey) }]);
    expect(() => verifySessionJwt(good, { profile: 'gateway', gatewayId: 'gw-unit', ring: ecRing })).toThrow(/does not match its key/);
  });

  it('accepts ES256 (P-256) as well as EdDSA', async () => {
    const ec = await generateKeyPair('ES256');
    const ring2 = keyRing([{ key_id: 'e1', public_key_pem: await exportSPKI(ec.publicKey) }]);
    const t = await new SignJWT({ ...base(), aud: 'openshell-sandbox' }).setProtectedHeader({ alg: 'ES256', typ: 'openshell-sandbox-session+jwt', kid: 'e1' }).sign(ec.privateKey);
    expect(verifySessionJwt(t, { profile: 'sandbox', gatewayId: 'gw-unit', ring: ring2 }).sandbox_id).toBe(SID);
    // A sandbox token is not a gateway token.
    expect(() => verifySessionJwt(t, { profile: 'gateway', gatewayId: 'gw-unit', ring: ring2 })).toThrow(/type must be/);
  });
});

describe('the launch state machine and its files', () => {
  const read = (root: string, rel: string) => fs.readFileSync(path.join(root, rel), 'utf8');
  const mode = (root: string, rel: string) => (fs.statSync(path.join(root, rel)).mode & 0o777).toString(8);

  it('writes the split exactly: supervisor half 0600, workload half 0644 with PEM strings only, the token 0400', async () => {
    const root = tmp();
    const h = createLaunchHandler({ root });
    const m = await mint({ sandboxId: SID, authEpoch: 2 });
    const r = await h.handle(body(m, { endpoint: 'http://10.0.0.1:8080' }));
    expect(r).toEqual({ status: 200, body: { accepted: true, auth_epoch: 2 } });
    const bundle = JSON.parse(m.bytes.toString());
    expect(read(root, FILES.auth)).toBe(JSON.stringify(bundle.supervisor));
    expect(JSON.parse(read(root, FILES.bootstrap))).toEqual({ gateway_id: 'gw-unit', verification_keys: gw.publicKeys() });
    expectNoSecret(read(root, FILES.bootstrap));
    expect(read(root, FILES.token)).toBe(m.gatewayToken);
    expect(read(root, FILES.endpoint)).toBe('http://10.0.0.1:8080\n');
    expect([mode(root, FILES.auth), mode(root, FILES.bootstrap), mode(root, FILES.token), mode(root, FILES.endpoint)]).toEqual(['600', '644', '400', '644']);
    expect((fs.statSync(path.join(root, '.openshell/supervisor')).mode & 0o777).toString(8)).toBe('700');
    expect((fs.statSync(path.join(root, 'etc/openshell/auth')).mode & 0o777).toString(8)).toBe('700');
    // No temporary files left behind.
    for (const d of ['.openshell/supervisor', '.openshell/channel/sandbox', 'etc/openshell/auth']) expect(fs.readdirSync(path.join(root, d)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(h.status()).toEqual({ pinned: true, sandbox_id: SID, auth_epoch: 2 });
    expectNoSecret(JSON.stringify(r) + JSON.stringify(h.status()));
  });

  it('pins the sandbox; orders epochs: lower 409, equal 200 (idempotent), higher replaces', async () => {
    const root = tmp();
    const h = createLaunchHandler({ root });
    expect(h.status()).toEqual({ pinned: false, sandbox_id: null, auth_epoch: null });
    const e2 = await mint({ sandboxId: SID, authEpoch: 2 });
    expect((await h.handle(body(e2))).status).toBe(200);
    expect((await h.handle(body(e2))).status).toBe(200);
    const e1 = await mint({ sandboxId: SID, authEpoch: 1 });
    const stale = await h.handle(body(e1));
    expect(stale).toEqual({ status: 409, body: { accepted: false, error: "auth_epoch 1 is older than the actor's current auth_epoch 2" } });
    expect(read(root, FILES.token)).toBe(e2.gatewayToken);
    const e3 = await mint({ sandboxId: SID, authEpoch: 3 });
    expect((await h.handle(body(e3))).body).toEqual({ accepted: true, auth_epoch: 3 });
    expect(read(root, FILES.token)).toBe(e3.gatewayToken);

    // Another sandbox: refused, whether the request names it or only its tokens do.
    const other = await mint({ sandboxId: 'sandbox-b', authEpoch: 9 });
    expect(await h.handle(body(other, { sandbox_id: 'sandbox-b' }))).toEqual({ status: 403, body: { accepted: false, error: 'this actor serves another sandbox' } });
    expect((await h.handle(body(other))).body.error).toBe('the tokens were issued for another sandbox than the one the request names');
    expect(read(root, FILES.token)).toBe(e3.gatewayToken);
  });

  it('OPENSHELL_SANDBOX_ID pins the sandbox before any delivery', async () => {
    const h = createLaunchHandler({ root: tmp(), sandboxId: 'sandbox-b' });
    expect(h.status()).toEqual({ pinned: false, sandbox_id: 'sandbox-b', auth_epoch: null });
    expect((await h.handle(body(await mint({ sandboxId: SID, authEpoch: 1 })))).status).toBe(403);
  });

  it('trust on first use pins the gateway and its keys; a template anchor refuses other keys from the start', async () => {
    const tofu = createLaunchHandler({ root: tmp() });
    expect((await tofu.handle(body(await mint({ sandboxId: SID, authEpoch: 1 })))).status).toBe(200);
    const rogue = await GatewayStandin.create('gw-unit', 'k2');
    const r1 = await tofu.handle(body(await mint({ sandboxId: SID, authEpoch: 2 }, rogue)));
    expect(r1).toEqual({ status: 403, body: { accepted: false, error: 'verification key "k2" is not among the trusted gateway keys' } });
    const otherGw = await GatewayStandin.create('gw-other', 'k1');
    expect((await tofu.handle(body(await mint({ sandboxId: SID, authEpoch: 2 }, otherGw)))).body.error).toBe('the bundle names another gateway than the one this actor trusts');

    // Anchored: a self-consistent bundle from a key the template does not list is refused even at first use.
    const anchored = createLaunchHandler({ root: tmp(), gatewayKeysText: JSON.stringify(gw.publicKeys()) });
    expect((await anchored.handle(body(await mint({ sandboxId: SID, authEpoch: 1 }, rogue)))).status).toBe(403);
    const selfSigned = await GatewayStandin.create('gw-unit', 'k1');
    const r2 = await anchored.handle(body(await mint({ sandboxId: SID, authEpoch: 1, verificationKeys: gw.publicKeys() }, selfSigned)));
    expect(r2.body.error).toBe('gateway_token signature does not verify against the trusted gateway keys');
    expect((await anchored.handle(body(await mint({ sandboxId: SID, authEpoch: 1 })))).status).toBe(200);

    // A broken anchor fails closed.
    const broken = createLaunchHandler({ root: tmp(), gatewayKeysText: '[{"key_id":"k1","public_key_pem":"nope"}]' });
    const r3 = await broken.handle(body(await mint({ sandboxId: SID, authEpoch: 1 })));
    expect(r3.status).toBe(500);
    expect(r3.body.error).toMatch(/OPENSHELL_SUBSTRATE_GATEWAY_KEYS is invalid/);
  });

  it('checks that the tokens agree with the bundle, and a separately sent sandbox token', async () => {
    const h = createLaunchHandler({ root: tmp() });
    const m = await mint({ sandboxId: SID, authEpoch: 2, edit: (b) => (b.supervisor.auth_epoch = 3) });
    expect((await h.handle(body(m))).body.error).toBe('the tokens carry another auth_epoch than the bundle');
    const g = await mint({ sandboxId: SID, authEpoch: 2, edit: (b) => (b.supervisor.runtime_generation = 'g2') });
    expect((await h.handle(body(g))).body.error).toBe('the tokens carry another runtime_generation than the bundle');
    // The sandbox token slot holding a gateway-profile token: wrong type.
    const swapped = await mint({ sandboxId: SID, authEpoch: 2, edit: (b) => (b.supervisor.sandbox_token = b.supervisor.gateway_token) });
    expect((await h.handle(body(swapped))).body.error).toBe('sandbox_token type must be openshell-sandbox-session+jwt');

    const ok = await mint({ sandboxId: SID, authEpoch: 2 });
    expect((await h.handle(body(ok, { sandbox_token: ok.sandboxToken }))).body.error).toBe('request sandbox_token type must be openshell-gateway-session+jwt');
    const twin = await mint({ sandboxId: SID, authEpoch: 2 });
    const root = tmp();
    const h2 = createLaunchHandler({ root });
    expect((await h2.handle(body(ok, { sandbox_token: twin.gatewayToken }))).status).toBe(200);
    expect(read(root, FILES.token)).toBe(twin.gatewayToken);
    const later = await mint({ sandboxId: SID, authEpoch: 5 });
    expect((await h2.handle(body(ok, { sandbox_token: later.gatewayToken }))).body.error).toBe('request sandbox_token does not belong to this sandbox and auth_epoch');
  });

  it('refuses malformed requests with 400 and no echo', async () => {
    const h = createLaunchHandler({ root: tmp() });
    const m = await mint({ sandboxId: SID, authEpoch: 1 });
    expect((await h.handle(null)).status).toBe(400);
    expect((await h.handle({ ...body(m), token: m.gatewayToken })).body.error).toBe('request has an unknown field "token"');
    expect((await h.handle({ sandbox_id: SID })).body.error).toBe('request lacks the field "launch_authentication"');
    expect((await h.handle(body(m, { launch_authentication: 'not base64!' }))).body.error).toBe('launch_authentication must be standard base64');
    expect((await h.handle(body(m, { sandbox_id: 'has space' }))).status).toBe(400);
    expect((await h.handle(body(m, { endpoint: 'a b' }))).status).toBe(400);
    expect(h.status().pinned).toBe(false);
  });
});

describe('identity mode (0.0.x): the state machine', () => {
  /** A handler whose `start` records what it was given (the workload "process"). */
  const holder = (o: { sandboxId?: string; fail?: boolean } = {}) => {
    const started: SandboxIdentity[] = [];
    const h = createIdentityHandler({
      sandboxId: o.sandboxId,
      start: async (id) => {
        if (o.fail) throw Object.assign(new Error('spawn /nope ENOENT'), { code: 'ENOENT' });
        started.push(id);
      },
    });
    return { h, started };
  };
  const ident = (id: string, name: string, token?: string) => ({ sandbox_id: id, sandbox_name: name, ...(token !== undefined ? { sandbox_token: token } : {}) });

  it('holds the workload until the first delivery, then starts it once with exactly that identity', async () => {
    const { h, started } = holder();
    expect(h.path).toBe('/v1/identity');
    expect(h.status()).toEqual({ pinned: false, sandbox_id: null, started: false });
    expect(started).toEqual([]);
    const tok = await legacyToken(SID);
    const r = await h.handle(ident(SID, 'box-a', tok));
    expect(r).toEqual({ status: 200, body: { accepted: true, started: true } });
    expect(started).toEqual([{ sandboxId: SID, sandboxName: 'box-a', sandboxToken: tok }]);
    expect(h.status()).toEqual({ pinned: true, sandbox_id: SID, started: true });
    // The same delivery again (after a restore of a running workload): accepted, nothing started again.
    expect(await h.handle(ident(SID, 'box-a', tok))).toEqual({ status: 200, body: { accepted: true, started: true } });
    expect(started).toHaveLength(1);
    expectNoSecret(JSON.stringify(r) + JSON.stringify(h.status()));
  });

  it('the first delivery pins the sandbox: another id 403, another name or token 409; nothing restarts', async () => {
    const { h, started } = holder();
    const tok = await legacyToken(SID);
    expect((await h.handle(ident(SID, 'box-a', tok))).status).toBe(200);
    const other = await legacyToken('sandbox-b');
    const r1 = await h.handle(ident('sandbox-b', 'box-b', other));
    expect(r1).toEqual({ status: 403, body: { accepted: false, error: 'this actor serves another sandbox' } });
    const r2 = await h.handle(ident(SID, 'box-a', await legacyToken(SID)));
    expect(r2).toEqual({ status: 409, body: { accepted: false, error: 'the workload already runs with another sandbox name or token; its environment cannot change' } });
    expect((await h.handle(ident(SID, 'renamed', tok))).status).toBe(409);
    expect((await h.handle(ident(SID, 'box-a'))).status).toBe(409); // the token dropped
    expect(started).toHaveLength(1);
    expect(h.status()).toEqual({ pinned: true, sandbox_id: SID, started: true });
    expectNoSecret(JSON.stringify([r1, r2]));
  });

  it('refuses a token whose sandbox_id claim names another sandbox, and malformed requests, with no echo', async () => {
    const { h, started } = holder();
    const foreign = await legacyToken('sandbox-b');
    const r = await h.handle(ident(SID, 'box-a', foreign));
    expect(r).toEqual({ status: 403, body: { accepted: false, error: 'the token was issued for another sandbox than the one the request names' } });
    const tok = await legacyToken(SID);
    const bad = [
      [null, /request must be a JSON object/],
      [{ ...ident(SID, 'box-a', tok), token: tok }, /unknown field "token"/],
      [{ sandbox_id: SID, sandbox_token: tok }, /lacks the field "sandbox_name"/],
      [ident('', 'box-a', tok), /sandbox_id must be non-empty/],
      [ident(SID, 'has space', tok), /sandbox_name/],
      [ident(SID, 'ctl\u0001', tok), /sandbox_name/],
      [ident(SID, 'box-a', `${tok} `), /sandbox_token must be printable ASCII/],
      [ident(SID, 'box-a', `${tok}\n`), /sandbox_token/],
      [{ ...ident(SID, 'box-a'), sandbox_token: 7 }, /sandbox_token/],
      [{ ...ident(SID, 'box-a', tok), launch_authentication: 'AAAA' }, /unknown field "launch_authentication"/],
    ] as const;
    for (const [b, re] of bad) {
      const a = await h.handle(b);
      expect(a.status).toBe(400);
      expect(a.body.error).toMatch(re);
      expectNoSecret(JSON.stringify(a));
    }
    expect(started).toEqual([]);
    expect(h.status()).toEqual({ pinned: false, sandbox_id: null, started: false });
    // An empty token is "none minted": accepted; an opaque (non-JWT) token is taken as it is.
    const { h: h2, started: s2 } = holder();
    expect((await h2.handle(ident(SID, 'box-a', ''))).status).toBe(200);
    expect(s2).toEqual([{ sandboxId: SID, sandboxName: 'box-a', sandboxToken: '' }]);
    const { h: h3, started: s3 } = holder();
    expect((await h3.handle(ident(SID, '', 'opaque-token-value'))).status).toBe(200);
    expect(s3[0]!.sandboxToken).toBe('opaque-token-value');
  });

  it('OPENSHELL_SANDBOX_ID in the template pins the sandbox before any delivery', async () => {
    const { h, started } = holder({ sandboxId: 'sandbox-b' });
    expect(h.status()).toEqual({ pinned: false, sandbox_id: 'sandbox-b', started: false });
    expect((await h.handle(ident(SID, 'box-a', await legacyToken(SID)))).status).toBe(403);
    expect(started).toEqual([]);
    expect((await h.handle(ident('sandbox-b', 'box-b', await legacyToken('sandbox-b')))).status).toBe(200);
  });

  it('two racing deliveries for different sandboxes: exactly one starts the workload', async () => {
    const { h, started } = holder();
    const [ra, rb] = await Promise.all([h.handle(ident(SID, 'box-a', await legacyToken(SID))), h.handle(ident('sandbox-b', 'box-b', await legacyToken('sandbox-b')))]);
    expect([ra.status, rb.status]).toEqual([200, 403]);
    expect(started.map((x) => x.sandboxId)).toEqual([SID]);
  });

  it('a workload that cannot start: 500 naming the cause, nothing pinned', async () => {
    const { h } = holder({ fail: true });
    const r = await h.handle(ident(SID, 'box-a', await legacyToken(SID)));
    expect(r).toEqual({ status: 500, body: { accepted: false, error: 'the workload could not be started (ENOENT)' } });
    expect(h.status()).toEqual({ pinned: false, sandbox_id: null, started: false });
  });

  it("workloadEnv: the agent's environment without its own settings and stale identity, plus the delivered identity", () => {
    const base = {
      PATH: '/usr/bin',
      KEEP: 'me',
      OPENSHELL_ENDPOINT: 'http://gw:8080',
      OPENSHELL_MAIN_PROCESS_SPEC: '{"version":1}',
      OPENSHELL_SUBSTRATE_DELIVERY: 'identity',
      OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT: '17461',
      OPENSHELL_SUBSTRATE_GATEWAY_KEYS: '[]',
      OPENSHELL_SANDBOX_ID: 'stale',
      OPENSHELL_SANDBOX: 'stale',
      OPENSHELL_SANDBOX_TOKEN: 'stale',
      UNSET: undefined,
    };
    const copy = { ...base };
    expect(workloadEnv(base, { sandboxId: SID, sandboxName: 'box-a', sandboxToken: 'tok' })).toEqual({
      PATH: '/usr/bin',
      KEEP: 'me',
      OPENSHELL_ENDPOINT: 'http://gw:8080',
      OPENSHELL_MAIN_PROCESS_SPEC: '{"version":1}',
      OPENSHELL_SANDBOX_ID: SID,
      OPENSHELL_SANDBOX: 'box-a',
      OPENSHELL_SANDBOX_TOKEN: 'tok',
    });
    expect(base).toEqual(copy);
    expect(workloadEnv(base, { sandboxId: SID, sandboxName: 'box-a', sandboxToken: '' })).not.toHaveProperty('OPENSHELL_SANDBOX_TOKEN');
  });

  it('the HTTP surface serves only its own path', async () => {
    const { h } = holder();
    const server = createAgentServer(h);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as AddressInfo).port;
    try {
      expect(await fetch(`http://127.0.0.1:${port}/v1/identity`).then((x) => x.json())).toEqual({ pinned: false, sandbox_id: null, started: false });
      const launch = await fetch(`http://127.0.0.1:${port}/v1/launch`);
      expect(launch.status).toBe(404);
      expect(await launch.json()).toEqual({ error: 'not found; the bootstrap agent serves /v1/identity' });
      const tok = await legacyToken(SID);
      const r = await fetch(`http://127.0.0.1:${port}/v1/identity`, { method: 'POST', body: JSON.stringify(ident(SID, 'box-a', tok)) });
      expect([r.status, await r.text()]).toEqual([200, '{"accepted":true,"started":true}']);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('the HTTP surface', () => {
  let server: http.Server;
  let port: number;
  const root = tmp();
  beforeAll(async () => {
    server = createAgentServer(createLaunchHandler({ root }));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));
  const req = (method: string, p: string, data?: string | Buffer, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const q = http.request({ host: '127.0.0.1', port, method, path: p, headers }, (res) => {
        let b = '';
        res.on('data', (d) => (b += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
      });
      q.on('error', reject);
      q.end(data);
    });

  it('POST and GET /v1/launch; 404, 405, 400; answers never carry a token', async () => {
    const m = await mint({ sandboxId: SID, authEpoch: 1 });
    const r = await req('POST', '/v1/launch', JSON.stringify(body(m)), { 'content-type': 'application/json' });
    expect(r).toEqual({ status: 200, body: '{"accepted":true,"auth_epoch":1}' });
    const g = await req('GET', '/v1/launch');
    expect(JSON.parse(g.body)).toEqual({ pinned: true, sandbox_id: SID, auth_epoch: 1 });
    expect((await req('GET', '/')).status).toBe(404);
    expect((await req('PUT', '/v1/launch', '{}')).status).toBe(405);
    expect((await req('POST', '/v1/launch', 'nope')).status).toBe(400);
    expectNoSecret(r.body + g.body);
  });

  it('refuses bodies over 64 KiB with 413, declared or streamed', async () => {
    const big = Buffer.alloc(MAX_BODY_BYTES + 1, 'a');
    expect((await req('POST', '/v1/launch', big)).status).toBe(413);
    // Chunked, no length declared.
    const streamed = await new Promise<number>((resolve, reject) => {
      const q = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/launch', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      q.on('error', reject);
      for (let i = 0; i < 5; i++) q.write(Buffer.alloc(20_000, 'b'));
      q.end();
    });
    expect(streamed).toBe(413);
  });
});

describe('the process wrapper', () => {
  const freePort = async () => {
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    const p = (s.address() as AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    return p;
  };
  const run = (args: string[], env: Record<string, string>, onStart?: (pid: number, out: () => string) => void) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const c = spawn(process.execPath, [AGENT, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      c.stdout.on('data', (d) => (out += d));
      c.stderr.on('data', (d) => (err += d));
      onStart?.(c.pid!, () => out);
      c.on('exit', (code) => resolve({ code, out, err }));
    });

  it('exits with the wrapped command, forwards signals, and serves while it runs', async () => {
    const port = String(await freePort());
    expect((await run(['--', process.execPath, '-e', 'process.exit(7)'], { OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT: port })).code).toBe(7);
    const r = await run(
      ['--', process.execPath, '-e', "process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(3); }); console.log('up'); setInterval(() => {}, 1000);"],
      { OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT: port },
      (pid, out) => {
        const t = setInterval(async () => {
          if (!out().includes('up')) return;
          clearInterval(t);
          const g = await fetch(`http://127.0.0.1:${port}/v1/launch`).then((x) => x.json());
          expect(g).toEqual({ pinned: false, sandbox_id: null, auth_epoch: null });
          process.kill(pid, 'SIGTERM');
        }, 50);
      },
    );
    expect(r.out).toContain('got SIGTERM');
    expect(r.code).toBe(3);
  });

  it('refuses to run without a command, and says so when the command does not exist', async () => {
    const none = await run([], {});
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/usage/);
    const missing = await run(['--', '/nonexistent/prog'], { OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT: String(await freePort()) });
    expect(missing.code).toBe(127);
    expect(missing.err).toMatch(/ENOENT/);
  });

  it('identity mode: holds the workload, starts it on delivery with exactly the identity added, forwards signals', async () => {
    const port = String(await freePort());
    const tok = await legacyToken(SID);
    // The workload prints its environment once and waits; the agent's own settings must not reach it.
    const script = "process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(5); }); console.log('ENV ' + JSON.stringify(process.env)); setInterval(() => {}, 1000);";
    let agentPid = 0;
    let seen: { status: unknown; outBefore: string; agentEnviron: string; agentCmdline: string; post: unknown } | undefined;
    const r = await run(
      ['--', process.execPath, '-e', script],
      { OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT: port, OPENSHELL_SUBSTRATE_DELIVERY: 'identity', OPENSHELL_SUBSTRATE_GATEWAY_KEYS: '[]', KEEP: 'me', OPENSHELL_SANDBOX_TOKEN: 'stale' },
      (pid, out) => {
        agentPid = pid;
        void (async () => {
          // Wait for the agent to listen (its status endpoint is the template's wakeup probe).
          let status: unknown;
          for (let i = 0; i < 200 && status === undefined; i++) {
            status = await fetch(`http://127.0.0.1:${port}/v1/identity`).then((x) => x.json(), () => undefined);
            if (status === undefined) await new Promise((res) => setTimeout(res, 25));
          }
          const outBefore = out();
          const post = await fetch(`http://127.0.0.1:${port}/v1/identity`, { method: 'POST', body: JSON.stringify({ sandbox_id: SID, sandbox_name: 'box-a', sandbox_token: tok }) }).then((x) => x.json());
          // Under a loaded machine a node child can take seconds to start: wait for its line (up to 60 s).
          for (let i = 0; i < 2400 && !out().includes('ENV '); i++) await new Promise((res) => setTimeout(res, 25));
          seen = {
            status,
            outBefore,
            post,
            agentEnviron: fs.readFileSync(`/proc/${pid}/environ`, 'latin1'),
            agentCmdline: fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1'),
          };
          process.kill(pid, 'SIGTERM');
        })();
      },
    );
    expect(agentPid).toBeGreaterThan(0);
    expect(seen!.status).toEqual({ pinned: false, sandbox_id: null, started: false });
    expect(seen!.outBefore).toBe(''); // nothing ran before the delivery
    expect(seen!.post).toEqual({ accepted: true, started: true });
    const env = JSON.parse(/ENV (.*)/.exec(r.out)![1]!) as Record<string, string>;
    expect(Object.keys(env).sort()).toEqual(['KEEP', 'OPENSHELL_SANDBOX', 'OPENSHELL_SANDBOX_ID', 'OPENSHELL_SANDBOX_TOKEN', 'PATH']);
    expect(env).toMatchObject({ KEEP: 'me', OPENSHELL_SANDBOX_ID: SID, OPENSHELL_SANDBOX: 'box-a' });
    expect(sha(env.OPENSHELL_SANDBOX_TOKEN!)).toBe(sha(tok));
    // The agent itself never carries the token in its arguments or environment; its log says nothing of it.
    expect(seen!.agentEnviron).not.toContain(tok);
    expect(seen!.agentCmdline).not.toContain(tok);
    expect(r.err).toMatch(/holding the workload until the driver delivers its identity/);
    expect(r.err).not.toContain(tok);
    expect(r.out).toContain('got SIGTERM');
    expect(r.code).toBe(5);
  });

  it('identity mode: stopped while holding, it exits without ever starting the workload; a bad mode is refused', async () => {
    const port = String(await freePort());
    const r = await run(['--', process.execPath, '-e', "console.log('workload ran')"], { OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT: port, OPENSHELL_SUBSTRATE_DELIVERY: 'identity' }, (pid) => {
      void (async () => {
        for (let i = 0; i < 200; i++) {
          if (await fetch(`http://127.0.0.1:${port}/v1/identity`).then(() => true, () => false)) break;
          await new Promise((res) => setTimeout(res, 25));
        }
        process.kill(pid, 'SIGTERM');
      })();
    });
    expect(r.code).toBe(143);
    expect(r.out).toBe('');
    const bad = await run(['--', process.execPath, '-e', ''], { OPENSHELL_SUBSTRATE_DELIVERY: 'env' });
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/OPENSHELL_SUBSTRATE_DELIVERY must be "identity"/);
  });

  it('identity mode: a workload that does not exist answers the delivery 500, then the agent exits 127', async () => {
    const port = String(await freePort());
    let answer: unknown;
    const r = await run(['--', '/nonexistent/prog'], { OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT: port, OPENSHELL_SUBSTRATE_DELIVERY: 'identity' }, () => {
      void (async () => {
        for (let i = 0; i < 200 && answer === undefined; i++) {
          answer = await fetch(`http://127.0.0.1:${port}/v1/identity`, { method: 'POST', body: JSON.stringify({ sandbox_id: SID, sandbox_name: 'box-a' }) }).then(
            (x) => x.json(),
            () => undefined,
          );
          if (answer === undefined) await new Promise((res) => setTimeout(res, 25));
        }
      })();
    });
    expect(answer).toEqual({ accepted: false, error: 'the workload could not be started (ENOENT)' });
    expect(r.code).toBe(127);
    expect(r.err).toMatch(/ENOENT/);
  });
});

describe('LaunchDelivery through the actor router', () => {
  let agentServer: http.Server | undefined;
  let agentPort = 0;
  let router: { url: string; close(): Promise<void> };
  let root: string;
  /** demo/i: an agent in identity mode (its own server); what its workload was started with. */
  let identityServer: http.Server;
  let identityPort = 0;
  const identityStarts: SandboxIdentity[] = [];
  const actors = new Set(['demo/a', 'demo/i']);
  beforeAll(async () => {
    agentPort = await new Promise<number>((resolve) => {
      const s = net.createServer();
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    identityServer = createAgentServer(createIdentityHandler({ start: async (id) => void identityStarts.push(id) }));
    await new Promise<void>((r) => identityServer.listen(0, '127.0.0.1', () => r()));
    identityPort = (identityServer.address() as AddressInfo).port;
    router = await startRouter(
      {
        resume: async (atespace: string, name: string, _signal: AbortSignal) => {
          if (!actors.has(`${atespace}/${name}`)) throw new ApiError(Code.NOT_FOUND, `actor ${atespace}/${name} not found`);
          return {} as Actor;
        },
        // The agent port of demo/i is the identity agent; every other actor's is the one launch agent server.
        connect: (_a, n, port) =>
          new Promise((resolve, reject) => {
            const s = net.connect(port === 17461 ? (n === 'i' ? identityPort : agentPort) : 1, '127.0.0.1');
            s.once('connect', () => resolve(s));
            s.once('error', reject);
          }),
      },
      { listen: { host: '127.0.0.1', port: 0 }, resumeBudgetMs: 300 },
    );
  });
  afterAll(async () => {
    await router?.close();
    await new Promise<void>((r) => (agentServer ? agentServer.close(() => r()) : r()));
    await new Promise<void>((r) => (identityServer ? identityServer.close(() => r()) : r()));
  });
  const startAgent = async () => {
    root = tmp();
    agentServer = createAgentServer(createLaunchHandler({ root, sandboxId: SID }));
    await new Promise<void>((r) => agentServer!.listen(agentPort, '127.0.0.1', () => r()));
  };

  it('retries while the agent is not listening yet (a cold boot), then delivers', async () => {
    const d = new LaunchDelivery({ routerUrl: router.url, timeoutMs: 10_000 });
    const m = await mint({ sandboxId: SID, authEpoch: 1 });
    setTimeout(() => void startAgent(), 800);
    const t0 = Date.now();
    expect(await d.deliver({ atespace: 'demo', actor: 'a' }, { sandboxId: SID, launchAuthentication: m.bytes })).toEqual({ authEpoch: 1 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(700);
    expect(fs.readFileSync(path.join(root, FILES.token), 'utf8')).toBe(m.gatewayToken);
    expect(await d.status({ atespace: 'demo', actor: 'a' })).toEqual({ pinned: true, sandboxId: SID, authEpoch: 1 });
  });

  it("maps the agent's refusals and the router's answers to codes, naming the actor and never a token", async () => {
    const d = new LaunchDelivery({ routerUrl: router.url, timeoutMs: 2_000 });
    const codeOf = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (e) {
        expect(e).toBeInstanceOf(ApiError);
        const err = e as ApiError;
        expectNoSecret(err.message);
        return { code: err.code, message: err.message };
      }
      throw new Error('expected a refusal');
    };
    const stale = await mint({ sandboxId: SID, authEpoch: 1 });
    const newer = await mint({ sandboxId: SID, authEpoch: 2 });
    expect((await d.deliver({ atespace: 'demo', actor: 'a' }, { sandboxId: SID, launchAuthentication: newer.bytes })).authEpoch).toBe(2);
    expect(await codeOf(d.deliver({ atespace: 'demo', actor: 'a' }, { sandboxId: SID, launchAuthentication: stale.bytes }))).toMatchObject({
      code: Code.FAILED_PRECONDITION,
      message: expect.stringMatching(/^the bootstrap agent of actor demo\/a holds newer credentials: auth_epoch 1 is older/),
    });
    const forB = await mint({ sandboxId: 'sandbox-b', authEpoch: 3 });
    expect(await codeOf(d.deliver({ atespace: 'demo', actor: 'a' }, { sandboxId: 'sandbox-b', launchAuthentication: forB.bytes }))).toMatchObject({ code: Code.PERMISSION_DENIED });
    // A bundle whose tokens name another sandbox than the one asked for: refused before anything is sent.
    expect(await codeOf(d.deliver({ atespace: 'demo', actor: 'a' }, { sandboxId: SID, launchAuthentication: forB.bytes }))).toMatchObject({ code: Code.INVALID_ARGUMENT });
    const malformed = await edit((b) => (b.supervisor.extra = 1));
    expect(await codeOf(d.deliver({ atespace: 'demo', actor: 'a' }, { sandboxId: SID, launchAuthentication: malformed.bytes }))).toMatchObject({ code: Code.INVALID_ARGUMENT });
    expect(await codeOf(d.deliver({ atespace: 'demo', actor: 'zz' }, { sandboxId: SID, launchAuthentication: newer.bytes }))).toMatchObject({
      code: Code.NOT_FOUND,
      message: expect.stringMatching(/actor demo\/zz not found/),
    });
    // Nothing on that port: retried until the timeout, then DEADLINE_EXCEEDED naming the actor and the cause.
    const wrongPort = new LaunchDelivery({ routerUrl: router.url, port: 17462, timeoutMs: 1_500 });
    const late = await codeOf(wrongPort.deliver({ atespace: 'demo', actor: 'a' }, { sandboxId: SID, launchAuthentication: newer.bytes }));
    expect(late.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(late.message).toMatch(/actor demo\/a did not answer on port 17462 within 2 s \(last: router answered 50[24]/);
    // No router at all.
    const noRouter = new LaunchDelivery({ routerUrl: 'http://127.0.0.1:1', timeoutMs: 500 });
    expect((await codeOf(noRouter.deliver({ atespace: 'demo', actor: 'a' }, { sandboxId: SID, launchAuthentication: newer.bytes }))).message).toMatch(/ECONNREFUSED/);
    // Cancelled.
    const ac = new AbortController();
    ac.abort();
    expect((await codeOf(wrongPort.deliver({ atespace: 'demo', actor: 'a' }, { sandboxId: SID, launchAuthentication: newer.bytes }, ac.signal))).code).toBe(Code.CANCELLED);
  });

  it('delivers a 0.0.x identity through the same CONNECT path; pins, idempotent, refusals mapped, no token in any message', async () => {
    const d = new LaunchDelivery({ routerUrl: router.url, timeoutMs: 2_000 });
    const to = { atespace: 'demo', actor: 'i' };
    const messages: string[] = [];
    const codeOf = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (e) {
        expect(e).toBeInstanceOf(ApiError);
        messages.push((e as ApiError).message);
        return (e as ApiError).code;
      }
      throw new Error('expected a refusal');
    };
    expect(await d.identityStatus(to)).toEqual({ pinned: false, sandboxId: null, started: false });
    const tok = await legacyToken(SID);
    // A token naming another sandbox is refused before anything is sent.
    expect(await codeOf(d.deliverIdentity(to, { sandboxId: SID, sandboxName: 'box-a', sandboxToken: await legacyToken('sandbox-b') }))).toBe(Code.INVALID_ARGUMENT);
    expect(identityStarts).toEqual([]);
    expect(await d.deliverIdentity(to, { sandboxId: SID, sandboxName: 'box-a', sandboxToken: tok })).toEqual({ started: true });
    expect(identityStarts).toEqual([{ sandboxId: SID, sandboxName: 'box-a', sandboxToken: tok }]);
    expect(await d.identityStatus(to)).toEqual({ pinned: true, sandboxId: SID, started: true });
    expect(await d.deliverIdentity(to, { sandboxId: SID, sandboxName: 'box-a', sandboxToken: tok })).toEqual({ started: true });
    expect(identityStarts).toHaveLength(1);
    expect(await codeOf(d.deliverIdentity(to, { sandboxId: 'sandbox-b', sandboxName: 'box-b', sandboxToken: await legacyToken('sandbox-b') }))).toBe(Code.PERMISSION_DENIED);
    expect(await codeOf(d.deliverIdentity(to, { sandboxId: SID, sandboxName: 'box-a', sandboxToken: await legacyToken(SID) }))).toBe(Code.FAILED_PRECONDITION);
    expect(messages.at(-1)).toMatch(/^the bootstrap agent of actor demo\/i refused the sandbox identity: the workload already runs with another/);
    // The wrong protocol for the actor's agent, either way round: said plainly.
    const m = await mint({ sandboxId: SID, authEpoch: 1 });
    expect(await codeOf(d.deliver(to, { sandboxId: SID, launchAuthentication: m.bytes }))).toBe(Code.FAILED_PRECONDITION);
    expect(await codeOf(d.deliverIdentity({ atespace: 'demo', actor: 'a' }, { sandboxId: SID, sandboxName: 'box-a', sandboxToken: tok }))).toBe(Code.FAILED_PRECONDITION);
    expect(messages.at(-1)).toMatch(/OPENSHELL_SUBSTRATE_DELIVERY=identity/);
    expect(await codeOf(d.deliverIdentity({ atespace: 'demo', actor: 'zz' }, { sandboxId: SID, sandboxName: 'box-a', sandboxToken: tok }))).toBe(Code.NOT_FOUND);
    for (const msg of messages) expectNoSecret(msg);
  });

  it('deliverToSandbox: launch authentication when the record has one, else the 0.0.x identity', async () => {
    const before = identityStarts.length;
    // demo/i is pinned to SID by the test above: a record for sandbox "i" goes the identity way and is refused.
    await deliverToSandbox({ id: 'i', name: 'box-a', atespace: 'demo', token: '', launch: '' }, { routerUrl: router.url, timeoutMs: 2_000 }).then(
      () => {
        throw new Error('expected a refusal: the actor is pinned to another sandbox id');
      },
      (e: ApiError) => expect(e.code).toBe(Code.PERMISSION_DENIED),
    );
    expect(identityStarts.length).toBe(before);
    const m = await mint({ sandboxId: 'a', authEpoch: 9 });
    await deliverToSandbox({ id: 'a', name: 'x', atespace: 'demo', token: '', launch: m.bytes.toString('base64') }, { routerUrl: router.url, timeoutMs: 2_000 }).then(
      () => {
        throw new Error('expected a refusal: the launch agent serves sandbox-a');
      },
      (e: ApiError) => {
        // It reached the launch agent (which is pinned to SID), so it went the v0.1 way.
        expect(e.code).toBe(Code.PERMISSION_DENIED);
        expect(e.message).toMatch(/refused the launch authentication/);
      },
    );
  });
});

describe('local images and the runtime spec', () => {
  it('every image has the agent (a copy of the source) and the launch mount points; the runtime mounts tmpfs there', async () => {
    const state = tmp();
    const img = await ensureDefaultImage(state);
    for (const name of ['bootstrap-agent.mjs', 'launch-auth.mjs']) {
      const inImage = path.join(img.rootfs, 'opt/openshell-substrate', name);
      const source = path.join(path.dirname(AGENT), name);
      expect(fs.readFileSync(inImage, 'utf8')).toBe(fs.readFileSync(source, 'utf8'));
      expect(fs.statSync(inImage).ino).not.toBe(fs.statSync(source).ino); // copied: editing the source never changes an image
    }
    for (const d of ['.openshell', 'etc/openshell']) expect(fs.statSync(path.join(img.rootfs, d)).isDirectory()).toBe(true);
    const spec = { command: ['/usr/bin/node'], env: {}, rootfs: img.rootfs, imageDigest: img.digest, egress: [] };
    const mounts = (ociConfig(spec, 'ns') as { mounts: Array<{ destination: string; type: string; options?: string[] }> }).mounts;
    for (const d of ['/.openshell', '/etc/openshell']) {
      expect(mounts.find((m) => m.destination === d)).toMatchObject({ type: 'tmpfs', options: expect.arrayContaining(['nosuid', 'nodev', 'noexec', 'mode=755']) });
    }
    // A root without the mount points (an image built before them) gets none: its snapshots stay restorable.
    const bare = tmp();
    const none = (ociConfig({ ...spec, rootfs: bare }, 'ns') as { mounts: Array<{ destination: string }> }).mounts;
    expect(none.some((m) => m.destination === '/.openshell' || m.destination === '/etc/openshell')).toBe(false);
  });
});

// The digest the supervisor stand-in reports is sha256 of the gateway token.
it('helpers: the digest is sha256 of the gateway token', async () => {
  const m = await mint({ sandboxId: SID, authEpoch: 1 });
  expect(m.digest).toBe(createHash('sha256').update(m.gatewayToken).digest('hex'));
});
