// Bearer-JWT verification for the local Substrate's API, modelled on upstream's jwt auth mode
// (shared/reference/ateapi.md §4.1): `authorization: Bearer <token>` on every call, issuer and audience
// checked, a `kid` matched against the configured keys. Keys come from a PEM public key or a JWKS file;
// EdDSA, ES256 and RS256 are accepted. Messages follow upstream: "missing bearer token" /
// "invalid bearer token: <reason>". The token itself never appears in a message or a log line.
//
// Rules (Issue 7, item 3):
//  - `exp` is required; `exp`, `nbf` and `iat` are checked with a clock skew of CLOCK_SKEW_SECONDS (jose checks
//    `exp` and `nbf`; it only checks a future `iat` with `maxTokenAge`, so `iat` is checked here);
//  - when the configured keys carry ids (a JWKS whose keys have `kid`), a token must name one of them; a PEM key
//    has no id, and then a token's `kid` is not required;
//  - the key file is re-read when it changes (inode, size and mtime, checked at most once per
//    KEY_RECHECK_INTERVAL_MS, and at once when a token names an unknown `kid` or fails its signature check);
//    a file that becomes unreadable or invalid keeps the last good keys and logs a warning.
import { readFileSync, statSync } from 'node:fs';
import {
  createLocalJWKSet,
  errors as joseErrors,
  importJWK,
  importSPKI,
  jwtVerify,
  type CryptoKey,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { unauthenticated } from '../common/errors.js';
import { logger } from '../common/log.js';

const log = logger('local.auth');

export const ACCEPTED_ALGS = ['EdDSA', 'ES256', 'RS256'] as const;
type Alg = (typeof ACCEPTED_ALGS)[number];

/** Clock skew allowed on `exp`, `nbf` and `iat`, in seconds. */
export const CLOCK_SKEW_SECONDS = 60;

/** The key file's stat is compared at most this often on the verify path (plus at once on a key miss). */
export const KEY_RECHECK_INTERVAL_MS = 1000;

export interface JwtAuthOptions {
  /** PEM (SPKI) public key file. */
  publicKeyPath?: string;
  /** Algorithm of the PEM key (default: inferred from the key type). */
  publicKeyAlg?: Alg;
  /** JWKS file (public keys only). */
  jwksPath?: string;
  issuer: string;
  audience: string;
}

export interface Verifier {
  verify(authorization: string | undefined): Promise<void>;
}

function inferAlg(pem: string): Alg {
  // jose needs the algorithm to import a PEM; the key's OID tells which one fits.
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const hex = der.toString('hex');
  if (hex.includes('2b6570')) return 'EdDSA'; // 1.3.101.112 Ed25519
  if (hex.includes('2a8648ce3d0201')) return 'ES256'; // 1.2.840.10045.2.1 EC public key
  return 'RS256';
}

/** The algorithm a JWKS member is for: its `alg`, or the one its key type implies. */
function jwkAlg(jwk: JWK): string | undefined {
  if (typeof jwk.alg === 'string') return jwk.alg;
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  if (jwk.kty === 'RSA') return 'RS256';
  return undefined;
}

/** The keys in force: a PEM key (no ids), or a JWKS and the ids its keys carry (null when none carries one). */
type KeySet = { kind: 'pem'; key: CryptoKey; kids: null } | { kind: 'jwks'; getKey: JWTVerifyGetKey; kids: Set<string> | null };

/** Errors with a message safe to print: never key material or file content. */
class KeyFileError extends Error {}

async function loadPem(path: string, algOpt: Alg | undefined): Promise<KeySet> {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (e) {
    throw new KeyFileError(`cannot read the public key file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const alg = algOpt ?? inferAlg(pem);
  try {
    return { kind: 'pem', key: await importSPKI(pem, alg), kids: null };
  } catch (e) {
    throw new KeyFileError(`${path} is not a ${alg} SPKI public key (${(e as Error).message})`);
  }
}

async function loadJwks(path: string): Promise<KeySet> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new KeyFileError(`cannot read the JWKS file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let jwks: unknown;
  try {
    jwks = JSON.parse(text);
  } catch {
    // JSON.parse quotes part of the input in its message: leave it out.
    throw new KeyFileError(`the JWKS file ${path} is not valid JSON`);
  }
  const keys = (jwks as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.some((k) => k === null || typeof k !== 'object' || Array.isArray(k))) {
    throw new KeyFileError(`the JWKS file ${path} is not a JSON Web Key Set ({"keys": [...]})`);
  }
  let getKey: JWTVerifyGetKey;
  try {
    getKey = createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]);
  } catch (e) {
    throw new KeyFileError(`the JWKS file ${path} is not a valid JSON Web Key Set (${(e as Error).message})`);
  }
  // Import every key now, so that a corrupt file is refused here (and the last good keys kept) rather than
  // failing every token later.
  let usable = 0;
  for (const [i, jwk] of (keys as JWK[]).entries()) {
    const alg = jwkAlg(jwk);
    if (!alg || !(ACCEPTED_ALGS as readonly string[]).includes(alg)) continue;
    let key: CryptoKey | Uint8Array;
    try {
      key = await importJWK(jwk, alg);
    } catch (e) {
      throw new KeyFileError(`key ${i} of the JWKS file ${path} is not a valid ${alg} key (${(e as Error).message})`);
    }
    if (key instanceof Uint8Array || key.type !== 'public') {
      throw new KeyFileError(`key ${i} of the JWKS file ${path} is not a public key: the JWKS must hold public keys only`);
    }
    usable++;
  }
  if (usable === 0) throw new KeyFileError(`the JWKS file ${path} holds no ${ACCEPTED_ALGS.join(', ')} public key`);
  const kids = new Set((keys as JWK[]).map((k) => k.kid).filter((k): k is string => typeof k === 'string' && k !== ''));
  return { kind: 'jwks', getKey, kids: kids.size > 0 ? kids : null };
}

/** Identity of the file's current content as far as stat tells: inode, size, mtime (ns). */
function statSignature(path: string): string {
  try {
    const st = statSync(path, { bigint: true });
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
  } catch (e) {
    return `error:${(e as NodeJS.ErrnoException).code ?? 'unknown'}`;
  }
}

/** A refusal raised while choosing the key, carried to the caller like jose's errors (code + message). */
class KeySelectionError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Errors after which a changed key file may make the token verify: re-check the file at once, then retry. */
const KEY_MISS_CODES = new Set([
  'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
  'ERR_JWKS_NO_MATCHING_KEY',
  'ERR_JWKS_MULTIPLE_MATCHING_KEYS',
  'ERR_JOSE_NOT_SUPPORTED',
  'ERR_JWK_INVALID',
  'ERR_JWKS_INVALID',
]);

export async function createVerifier(opts: JwtAuthOptions): Promise<Verifier> {
  if (!opts.issuer) throw new Error('auth: an issuer is required to verify bearer tokens');
  if (!opts.audience) throw new Error('auth: an audience is required to verify bearer tokens');
  let path: string;
  let load: () => Promise<KeySet>;
  if (opts.jwksPath) {
    const p = (path = opts.jwksPath);
    load = () => loadJwks(p);
  } else if (opts.publicKeyPath) {
    const p = (path = opts.publicKeyPath);
    load = () => loadPem(p, opts.publicKeyAlg);
  } else {
    throw new Error('auth: configure a public key (PEM) or a JWKS file to verify bearer tokens');
  }

  // The first load must succeed: a server does not start without keys.
  let seen = statSignature(path); // stat before reading: a change during the read is caught next time
  let keys: KeySet;
  try {
    keys = await load();
  } catch (e) {
    throw new Error(`auth: ${(e as Error).message}`);
  }
  let lastStatAt = Date.now();
  let lastReadAt = Date.now();
  let inflight: Promise<boolean> | undefined;

  /**
   * Re-read the key file when its stat changed; with `rereadUnchanged`, also when it did not (at most once per
   * KEY_RECHECK_INTERVAL_MS, for filesystems whose mtime is coarse). Keeps the current keys when the file is
   * unreadable or invalid. Resolves true when the keys were replaced.
   */
  const refresh = (rereadUnchanged: boolean): Promise<boolean> => {
    if (inflight) return inflight;
    const now = Date.now();
    lastStatAt = now;
    const sig = statSignature(path);
    if (sig === seen && !(rereadUnchanged && now - lastReadAt >= KEY_RECHECK_INTERVAL_MS)) return Promise.resolve(false);
    seen = sig;
    lastReadAt = now;
    inflight = (async () => {
      try {
        keys = await load();
        log.info('auth: reloaded the verification keys', { path, kids: keys.kids?.size ?? 0 });
        return true;
      } catch (e) {
        log.warn('auth: cannot reload the verification keys; keeping the last good keys', { path, error: (e as Error).message });
        return false;
      } finally {
        inflight = undefined;
      }
    })();
    return inflight;
  };

  /** Chooses the key for a token: enforces the `kid` rule, re-reading the file once for an unknown kid. */
  const getKey: JWTVerifyGetKey = async (header, token) => {
    if (keys.kids) {
      const kid = header.kid;
      if (typeof kid !== 'string' || kid === '') {
        throw new KeySelectionError('ERR_JWT_KID_MISSING', 'the token has no "kid" header, and the configured keys have ids');
      }
      if (!keys.kids.has(kid)) {
        await refresh(true);
        if (!keys.kids?.has(kid)) {
          throw new KeySelectionError('ERR_JWKS_NO_MATCHING_KEY', 'the token\'s "kid" names none of the configured keys');
        }
      }
    }
    return keys.kind === 'pem' ? keys.key : keys.getKey(header, token);
  };

  const verifyOnce = async (token: string): Promise<JWTPayload> => {
    const { payload } = await jwtVerify(token, getKey, {
      issuer: opts.issuer,
      audience: opts.audience,
      algorithms: [...ACCEPTED_ALGS],
      requiredClaims: ['exp'],
      clockTolerance: CLOCK_SKEW_SECONDS,
      typ: undefined,
    });
    // jose checks a future iat only together with maxTokenAge (which would also make iat required).
    const now = Math.floor(Date.now() / 1000);
    if (typeof payload.iat === 'number' && payload.iat > now + CLOCK_SKEW_SECONDS) {
      throw new joseErrors.JWTClaimValidationFailed('"iat" claim timestamp check failed (it should be in the past)', payload, 'iat', 'check_failed');
    }
    return payload;
  };

  return {
    async verify(authorization) {
      if (!authorization || !authorization.startsWith('Bearer ') || !authorization.slice(7).trim()) {
        throw unauthenticated('missing bearer token');
      }
      const token = authorization.slice(7).trim();
      if (Date.now() - lastStatAt >= KEY_RECHECK_INTERVAL_MS) await refresh(false);
      try {
        try {
          await verifyOnce(token);
        } catch (e) {
          // A key miss may mean the file changed since the last stat: check it now and, if it did, try again.
          const code = (e as { code?: string }).code;
          if (!code || !KEY_MISS_CODES.has(code) || !(await refresh(false))) throw e;
          await verifyOnce(token);
        }
      } catch (e) {
        const reason = (e as { code?: string }).code ?? 'verification failed';
        throw unauthenticated(`invalid bearer token: ${reason} (${sanitize((e as Error).message)})`);
      }
    },
  };
}

/** jose messages never contain the token, but strip anything that looks like one to be certain. */
function sanitize(msg: string): string {
  return msg.replace(/[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]+/g, '[token]');
}
