// The rules of OpenShell v0.1 launch authentication, as upstream openshell-core enforces them
// (crates/openshell-core/src/jwt.rs: SandboxLaunchAuthentication, SupervisorAuthBundle, SessionJwtVerifier;
// sandbox_session.rs, sandbox_generation.rs): bundle parsing with every struct denying unknown fields and the
// validate() rules, and session JWT verification. Plain dependency-free JavaScript shared by the bootstrap agent
// inside actors (bootstrap-agent.mjs, next to this file in every image) and the driver on the host. Every
// refusal is a LaunchError whose message names a field or a rule, never a value.
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';

export const GATEWAY_KEYS_ENV = 'OPENSHELL_SUBSTRATE_GATEWAY_KEYS';
export const GATEWAY_TOKEN_TYPE = 'openshell-gateway-session+jwt';
export const SANDBOX_TOKEN_TYPE = 'openshell-sandbox-session+jwt';
export const SANDBOX_AUDIENCE = 'openshell-sandbox';
const GATEWAY_ISSUER_PREFIX = 'openshell-gateway:';
const SANDBOX_SUBJECT_PREFIX = 'spiffe://openshell/sandbox/';
const SESSION_COMPONENT = 'openshell-supervisor';
const MAX_TOKEN_TTL_S = 3600;
const CLOCK_LEEWAY_S = 30;
const MAX_KEYS = 32;

const SUPERVISOR_FIELDS = Object.freeze([
  'session_id',
  'runtime_generation',
  'session_rotation',
  'auth_epoch',
  'gateway_token',
  'gateway_expires_at',
  'sandbox_token',
  'sandbox_expires_at',
]);
const BUNDLE_FIELDS = Object.freeze(['supervisor', 'gateway_id', 'verification_keys']);
const KEY_FIELDS = Object.freeze(['key_id', 'public_key_pem']);
const CLAIM_FIELDS = Object.freeze(['iss', 'sub', 'aud', 'iat', 'exp', 'jti', 'sandbox_id', 'runtime_generation', 'auth_epoch', 'component']);

/** A refusal with the HTTP status the agent answers; the message never carries token material. */
export class LaunchError extends Error {
  /** @param {number} status @param {string} message */
  constructor(status, message) {
    super(message);
    this.name = 'LaunchError';
    this.status = status;
  }
}

export const bad = (m) => new LaunchError(400, m);
export const denied = (m) => new LaunchError(403, m);

// ---- structure (upstream openshell-core jwt.rs rules) ------------------------------------------------------

export function isObject(v) {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A field name safe to repeat in a message (anything else could be attacker text). */
export function nameOf(k) {
  return /^[A-Za-z0-9_.-]{1,40}$/.test(k) ? JSON.stringify(k) : '(unprintable)';
}

/** serde(deny_unknown_fields) plus "every field present". */
export function exactFields(o, fields, what, optional = []) {
  if (!isObject(o)) throw bad(`${what} must be a JSON object`);
  for (const k of Object.keys(o)) if (!fields.includes(k)) throw bad(`${what} has an unknown field ${nameOf(k)}`);
  for (const f of fields) if (!optional.includes(f) && !Object.hasOwn(o, f)) throw bad(`${what} lacks the field "${f}"`);
}

/** Non-empty, no surrounding or inner whitespace (SandboxId, gateway id and key id rules). */
export function isIdent(v, max = 256) {
  return typeof v === 'string' && v.length > 0 && v.length <= max && !/\s/u.test(v);
}

export function isUnsigned(v) {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** SandboxGenerationId::parse: 1..64 of [a-z0-9-]. */
export function isGenerationId(v) {
  return typeof v === 'string' && /^[a-z0-9-]{1,64}$/.test(v);
}

/** SandboxSessionId: a non-nil canonical lowercase hyphenated UUID. */
export function isSessionId(v) {
  return typeof v === 'string' && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(v) && v !== '00000000-0000-0000-0000-000000000000';
}

/** SecretJwt::parse: non-empty, no whitespace; plus the compact JWS shape. */
export function isJwtText(v) {
  return typeof v === 'string' && v.length > 0 && v.length <= 16384 && /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(v);
}

/**
 * A public key object for a PEM, restricted to what the agent verifies with: Ed25519 (upstream's only kind)
 * or EC P-256. Throws a LaunchError(400) naming the key id.
 */
export function publicKeyOf(pem, keyId) {
  // Only an SPKI public key block: a private key PEM would derive a public key, and then travel on to the
  // workload-visible bootstrap.json.
  if (typeof pem !== 'string' || !/^\s*-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END PUBLIC KEY-----\s*$/.test(pem)) {
    throw bad(`verification key ${nameOf(keyId)} is not a PEM public key block`);
  }
  let key;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw bad(`verification key ${nameOf(keyId)} is not a PEM public key`);
  }
  if (key.type !== 'public') throw bad(`verification key ${nameOf(keyId)} is not a public key`);
  const kind = key.asymmetricKeyType;
  if (kind === 'ed25519') return key;
  if (kind === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return key;
  throw bad(`verification key ${nameOf(keyId)} is neither Ed25519 nor EC P-256`);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Parses and validates a SandboxLaunchAuthentication (the gateway's JSON bytes, or their text): every struct
 * denies unknown fields; SupervisorAuthBundle.validate() and SandboxLaunchAuthentication.validate() rules;
 * `public_key_pem` is a JSON array of byte numbers holding a PEM public key. Returns the bundle with the PEMs
 * as UTF-8 strings. Throws LaunchError(400) whose message names the field, never a value.
 */
export function parseLaunchAuthentication(input) {
  let text;
  if (typeof input === 'string') text = input;
  else {
    try {
      text = utf8.decode(input);
    } catch {
      throw bad('launch_authentication is not UTF-8 JSON');
    }
  }
  let j;
  try {
    j = JSON.parse(text);
  } catch {
    throw bad('launch_authentication is not valid JSON');
  }
  exactFields(j, BUNDLE_FIELDS, 'launch_authentication');
  const s = j.supervisor;
  exactFields(s, SUPERVISOR_FIELDS, 'launch_authentication.supervisor');
  if (!isSessionId(s.session_id)) throw bad('supervisor.session_id must be a non-nil canonical lowercase UUID');
  if (!isGenerationId(s.runtime_generation)) throw bad('supervisor.runtime_generation must be 1 to 64 of a-z, 0-9 and "-"');
  if (!isUnsigned(s.session_rotation) || s.session_rotation === 0) throw bad('supervisor.session_rotation must be a positive integer');
  if (!isUnsigned(s.auth_epoch) || s.auth_epoch === 0) throw bad('supervisor.auth_epoch must be a positive integer');
  if (!isJwtText(s.gateway_token)) throw bad('supervisor.gateway_token is not a compact JWT without whitespace');
  if (!isJwtText(s.sandbox_token)) throw bad('supervisor.sandbox_token is not a compact JWT without whitespace');
  for (const f of ['gateway_expires_at', 'sandbox_expires_at']) {
    if (typeof s[f] !== 'number' || !Number.isSafeInteger(s[f]) || s[f] <= 0) throw bad(`supervisor.${f} must be a positive Unix time in seconds`);
  }
  if (!isIdent(j.gateway_id)) throw bad('gateway_id must be non-empty without whitespace');
  if (!Array.isArray(j.verification_keys) || j.verification_keys.length === 0) throw bad('verification_keys must be a non-empty list');
  if (j.verification_keys.length > MAX_KEYS) throw bad(`verification_keys has more than ${MAX_KEYS} keys`);
  const ids = new Set();
  const keys = j.verification_keys.map((k, i) => {
    exactFields(k, KEY_FIELDS, `verification_keys[${i}]`);
    if (!isIdent(k.key_id)) throw bad(`verification_keys[${i}].key_id must be non-empty without whitespace`);
    if (ids.has(k.key_id)) throw bad(`verification_keys has the key id ${nameOf(k.key_id)} twice`);
    ids.add(k.key_id);
    const b = k.public_key_pem;
    if (!Array.isArray(b) || b.length === 0 || b.length > 8192 || !b.every((x) => Number.isInteger(x) && x >= 0 && x <= 255)) {
      throw bad(`verification_keys[${i}].public_key_pem must be a non-empty JSON array of bytes`);
    }
    let pem;
    try {
      pem = utf8.decode(Uint8Array.from(b));
    } catch {
      throw bad(`verification_keys[${i}].public_key_pem is not UTF-8`);
    }
    publicKeyOf(pem, k.key_id);
    return { key_id: k.key_id, public_key_pem: pem };
  });
  const supervisor = {};
  for (const f of SUPERVISOR_FIELDS) supervisor[f] = s[f];
  return { supervisor, gateway_id: j.gateway_id, verification_keys: keys };
}

/**
 * Parses OPENSHELL_SUBSTRATE_GATEWAY_KEYS: a JSON array of {key_id, public_key_pem: PEM string}. Throws
 * LaunchError(400).
 */
export function parseGatewayKeys(text) {
  let j;
  try {
    j = JSON.parse(text);
  } catch {
    throw bad(`${GATEWAY_KEYS_ENV} is not valid JSON`);
  }
  if (!Array.isArray(j) || j.length === 0 || j.length > MAX_KEYS) throw bad(`${GATEWAY_KEYS_ENV} must be a list of 1 to ${MAX_KEYS} keys`);
  const ids = new Set();
  return j.map((k, i) => {
    exactFields(k, KEY_FIELDS, `${GATEWAY_KEYS_ENV}[${i}]`);
    if (!isIdent(k.key_id) || ids.has(k.key_id)) throw bad(`${GATEWAY_KEYS_ENV}[${i}].key_id must be unique, non-empty, without whitespace`);
    ids.add(k.key_id);
    if (typeof k.public_key_pem !== 'string') throw bad(`${GATEWAY_KEYS_ENV}[${i}].public_key_pem must be a PEM string`);
    publicKeyOf(k.public_key_pem, k.key_id);
    return { key_id: k.key_id, public_key_pem: k.public_key_pem };
  });
}

/** key_id → { key: KeyObject, der: Buffer (SPKI) } */
export function keyRing(list) {
  const ring = new Map();
  for (const k of list) {
    const key = publicKeyOf(k.public_key_pem, k.key_id);
    ring.set(k.key_id, { key, der: key.export({ type: 'spki', format: 'der' }) });
  }
  return ring;
}

// ---- JWT (compact JWS) --------------------------------------------------------------------------------------

function b64urlJson(part, what) {
  if (!/^[A-Za-z0-9_-]+$/.test(part)) throw denied(`${what} is not base64url`);
  try {
    const v = JSON.parse(utf8.decode(Buffer.from(part, 'base64url')));
    if (!isObject(v)) throw new Error('not an object');
    return v;
  } catch {
    throw denied(`${what} is not a JSON object`);
  }
}

/** The claims of a JWT without any verification (for a host-side sanity check only), or undefined. */
export function peekClaims(token) {
  try {
    if (!isJwtText(token)) return undefined;
    return b64urlJson(token.split('.')[1], 'claims');
  } catch {
    return undefined;
  }
}

/**
 * Verifies one session JWT the way upstream's SessionJwtVerifier does: alg EdDSA (ES256 also accepted here),
 * exact typ, kid naming a trusted key of the matching kind, the signature, exact claim set, iss, aud, sub,
 * jti, component, generation, positive epoch, and lifetime (≤ 1 h, not issued in the future, not expired,
 * 30 s leeway). `label` names the token in messages ("gateway_token"). Throws LaunchError(403).
 * @returns {{ sandbox_id: string, runtime_generation: string, auth_epoch: number, exp: number, iat: number }}
 */
export function verifySessionJwt(token, { profile, gatewayId, ring, nowSec = Math.floor(Date.now() / 1000), label = 'token' }) {
  if (!isJwtText(token)) throw denied(`${label} is not a compact JWT`);
  const [h, p, sig] = token.split('.');
  const header = b64urlJson(h, `${label} header`);
  const alg = header.alg;
  if (alg !== 'EdDSA' && alg !== 'ES256') throw denied(`${label} algorithm must be EdDSA or ES256`);
  if (Object.hasOwn(header, 'crit')) throw denied(`${label} carries critical header extensions`);
  const typ = profile === 'gateway' ? GATEWAY_TOKEN_TYPE : SANDBOX_TOKEN_TYPE;
  if (header.typ !== typ) throw denied(`${label} type must be ${typ}`);
  if (typeof header.kid !== 'string' || !header.kid) throw denied(`${label} has no key id`);
  const entry = ring.get(header.kid);
  if (!entry) throw denied(`${label} is signed with a key id that is not among the trusted gateway keys`);
  const kind = entry.key.asymmetricKeyType;
  if ((alg === 'EdDSA') !== (kind === 'ed25519')) throw denied(`${label} algorithm does not match its key`);
  const signature = Buffer.from(sig, 'base64url');
  const data = Buffer.from(`${h}.${p}`, 'ascii');
  let ok = false;
  try {
    ok =
      signature.length === 64 &&
      (alg === 'EdDSA' ? cryptoVerify(null, data, entry.key, signature) : cryptoVerify('sha256', data, { key: entry.key, dsaEncoding: 'ieee-p1363' }, signature));
  } catch {
    ok = false;
  }
  if (!ok) throw denied(`${label} signature does not verify against the trusted gateway keys`);
  const c = b64urlJson(p, `${label} claims`);
  for (const k of Object.keys(c)) if (!CLAIM_FIELDS.includes(k)) throw denied(`${label} has an unknown claim ${nameOf(k)}`);
  for (const f of CLAIM_FIELDS) if (!Object.hasOwn(c, f)) throw denied(`${label} lacks the claim "${f}"`);
  const issuer = `${GATEWAY_ISSUER_PREFIX}${gatewayId}`;
  if (c.iss !== issuer) throw denied(`${label} issuer is not this gateway`);
  if (c.aud !== (profile === 'gateway' ? issuer : SANDBOX_AUDIENCE)) throw denied(`${label} audience is invalid`);
  if (!isIdent(c.sandbox_id)) throw denied(`${label} sandbox_id claim is invalid`);
  if (c.sub !== `${SANDBOX_SUBJECT_PREFIX}${c.sandbox_id}`) throw denied(`${label} subject does not match its sandbox id`);
  if (!isGenerationId(c.runtime_generation)) throw denied(`${label} runtime_generation claim is invalid`);
  if (!isUnsigned(c.auth_epoch) || c.auth_epoch === 0) throw denied(`${label} auth_epoch claim must be a positive integer`);
  if (c.component !== SESSION_COMPONENT) throw denied(`${label} component must be ${SESSION_COMPONENT}`);
  if (typeof c.jti !== 'string' || !/^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/.test(c.jti)) throw denied(`${label} id (jti) is not a UUID`);
  if (!Number.isSafeInteger(c.iat) || !Number.isSafeInteger(c.exp)) throw denied(`${label} iat and exp must be integers`);
  if (c.exp <= c.iat || c.exp - c.iat > MAX_TOKEN_TTL_S) throw denied(`${label} lifetime must be between 1 s and 1 h`);
  if (c.iat > nowSec + CLOCK_LEEWAY_S) throw denied(`${label} was issued in the future`);
  if (c.exp < nowSec - CLOCK_LEEWAY_S) throw denied(`${label} has expired`);
  return { sandbox_id: c.sandbox_id, runtime_generation: c.runtime_generation, auth_epoch: c.auth_epoch, exp: c.exp, iat: c.iat };
}
