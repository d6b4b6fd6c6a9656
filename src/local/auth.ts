// Bearer-JWT verification for the local Substrate's API, modelled on upstream's jwt auth mode
// (shared/reference/ateapi.md §4.1): `authorization: Bearer <token>` on every call, issuer and audience
// checked, a `kid` matched against the configured keys. Keys come from a PEM public key or a JWKS file;
// EdDSA, ES256 and RS256 are accepted. Messages follow upstream: "missing bearer token" /
// "invalid bearer token: <reason>". The token itself never appears in a message or a log line.
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, importSPKI, jwtVerify, type JWTVerifyGetKey, type CryptoKey } from 'jose';
import { unauthenticated } from '../common/errors.js';

export const ACCEPTED_ALGS = ['EdDSA', 'ES256', 'RS256'] as const;

export interface JwtAuthOptions {
  /** PEM (SPKI) public key file. */
  publicKeyPath?: string;
  /** Algorithm of the PEM key (default: inferred from the key type). */
  publicKeyAlg?: (typeof ACCEPTED_ALGS)[number];
  /** JWKS file (public keys only). */
  jwksPath?: string;
  issuer: string;
  audience: string;
}

export interface Verifier {
  verify(authorization: string | undefined): Promise<void>;
}

function inferAlg(pem: string): (typeof ACCEPTED_ALGS)[number] {
  // jose needs the algorithm to import a PEM; the key's OID tells which one fits.
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const hex = der.toString('hex');
  if (hex.includes('2b6570')) return 'EdDSA'; // 1.3.101.112 Ed25519
  if (hex.includes('2a8648ce3d0201')) return 'ES256'; // 1.2.840.10045.2.1 EC public key
  return 'RS256';
}

export async function createVerifier(opts: JwtAuthOptions): Promise<Verifier> {
  if (!opts.issuer) throw new Error('auth: an issuer is required to verify bearer tokens');
  if (!opts.audience) throw new Error('auth: an audience is required to verify bearer tokens');
  let getKey: JWTVerifyGetKey | CryptoKey;
  if (opts.jwksPath) {
    let jwks: unknown;
    try {
      jwks = JSON.parse(readFileSync(opts.jwksPath, 'utf8'));
    } catch (e) {
      throw new Error(`auth: cannot read the JWKS file ${opts.jwksPath}: ${(e as Error).message}`);
    }
    getKey = createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]);
  } else if (opts.publicKeyPath) {
    let pem: string;
    try {
      pem = readFileSync(opts.publicKeyPath, 'utf8');
    } catch (e) {
      throw new Error(`auth: cannot read the public key file ${opts.publicKeyPath}: ${(e as Error).message}`);
    }
    const alg = opts.publicKeyAlg ?? inferAlg(pem);
    try {
      getKey = await importSPKI(pem, alg);
    } catch (e) {
      throw new Error(`auth: ${opts.publicKeyPath} is not a ${alg} SPKI public key (${(e as Error).message})`);
    }
  } else {
    throw new Error('auth: configure a public key (PEM) or a JWKS file to verify bearer tokens');
  }
  return {
    async verify(authorization) {
      if (!authorization || !authorization.startsWith('Bearer ') || !authorization.slice(7).trim()) {
        throw unauthenticated('missing bearer token');
      }
      const token = authorization.slice(7).trim();
      try {
        await jwtVerify(token, getKey as JWTVerifyGetKey, {
          issuer: opts.issuer,
          audience: opts.audience,
          algorithms: [...ACCEPTED_ALGS],
          clockTolerance: 300,
          typ: undefined,
        });
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
