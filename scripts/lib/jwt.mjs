// JWT tooling shared by scripts/jwt.mjs, the tests and the project:
//  - the OpenShell gateway's sandbox tokens (crates/openshell-server/src/auth/sandbox_jwt.rs; reference
//    compute-driver.md §6.1): Ed25519 key material in the `[openshell.gateway.gateway_jwt]` /
//    `$OPENSHELL_LOCAL_TLS_DIR/jwt/{signing.pem,public.pem,kid}` layout, header {alg EdDSA, kid, typ JWT}, claims
//    sub/iss/aud/iat/exp/sandbox_id, exp 0 = never expires;
//  - bearer tokens for a Substrate API that verifies JWTs against configured keys (the local Substrate; the
//    in-cluster ate-api-server verifies Kubernetes service-account tokens instead): EdDSA, ES256 or RS256, with
//    iss/aud/sub/iat/nbf/exp and a kid header, plus the public JWKS for such a verifier.
//
// Secrets rule: nothing here logs or puts key material or tokens into error messages. Only
// renderSecretManifest() returns private key material (base64), for `kubectl apply -f -`.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SignJWT, compactVerify, decodeProtectedHeader, exportJWK } from 'jose';
import { stringify as yamlStringify } from 'yaml';
import { REPO_ROOT } from './cli.mjs';

export { REPO_ROOT };

/** File names of the gateway's JWT material inside a key directory. */
export const KEY_FILES = Object.freeze({ signing: 'signing.pem', public: 'public.pem', kid: 'kid' });

/** Signature algorithms this tooling can generate keys for and sign with. */
export const SUPPORTED_ALGS = Object.freeze(['EdDSA', 'ES256', 'RS256']);

/** Leeway the gateway allows on `exp` (jsonwebtoken default validation, 60 s). */
export const GATEWAY_EXP_LEEWAY_SECS = 60;

/**
 * Clock skew allowed on `exp`, `nbf` and `iat` when verifying, in seconds: the gateway's leeway, and the same
 * bound the local Substrate's verifier uses (CLOCK_SKEW_SECONDS in src/local/auth.ts).
 */
export const CLOCK_SKEW_SECONDS = GATEWAY_EXP_LEEWAY_SECS;

/** Default audience of the Substrate API (`--client-jwt-audience` in the upstream manifests). */
export const API_AUDIENCE = 'api.ate-system.svc';

/** The subject a Kubernetes TokenRequest for ate-system/ate-client would carry; default `sub` of API tokens. */
export const DEFAULT_API_SUBJECT = 'system:serviceaccount:ate-system:ate-client';

/** Raised for any JWT / key problem; `message` is safe to print (never contains a token or key). */
export class JwtError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'JwtError';
  }
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** True when `s` is a canonical lowercase UUID (8-4-4-4-12 hex), the form the gateway formats sandbox ids in. */
export function isUuid(s) {
  return typeof s === 'string' && UUID_RE.test(s);
}

/** @param {string} sandboxId */
export function sandboxSubject(sandboxId) {
  return `spiffe://openshell/sandbox/${sandboxId}`;
}

/** `iss` and `aud` of the gateway's sandbox tokens. @param {string} [gatewayId] */
export function gatewayIssuer(gatewayId = 'openshell') {
  return `openshell-gateway:${gatewayId}`;
}

/** Paths of the three files in a key directory. @param {string} dir */
export function keyPaths(dir) {
  const abs = path.resolve(dir);
  return {
    dir: abs,
    signingKeyPath: path.join(abs, KEY_FILES.signing),
    publicKeyPath: path.join(abs, KEY_FILES.public),
    kidPath: path.join(abs, KEY_FILES.kid),
  };
}

/**
 * Resolve `p` through symlinks as far as it exists (the rest may not exist yet), so a path cannot dodge the
 * repository check through a symlink.
 * @param {string} p
 */
function realpathLoose(p) {
  let cur = path.resolve(p);
  const rest = [];
  for (;;) {
    try {
      return path.join(fs.realpathSync(cur), ...rest.reverse());
    } catch {
      const parent = path.dirname(cur);
      if (parent === cur) return path.resolve(p);
      rest.push(path.basename(cur));
      cur = parent;
    }
  }
}

/** True when `p` is this repository's root or inside it. @param {string} p @param {string} [repoRoot] */
export function isInsideRepo(p, repoRoot = REPO_ROOT) {
  const root = realpathLoose(repoRoot);
  const target = realpathLoose(p);
  const rel = path.relative(root, target);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * Throw a JwtError when `dir` is inside this repository: private keys are never written into the repository.
 * @param {string} dir @param {string} [repoRoot]
 */
export function assertOutsideRepo(dir, repoRoot = REPO_ROOT) {
  if (isInsideRepo(dir, repoRoot)) {
    throw new JwtError(
      `refusing to use ${path.resolve(dir)} for key material: it is inside this repository (${repoRoot}), and a ` +
        `private key must never be written into the repository. Choose a directory outside it, e.g. ` +
        `--dir "$HOME/.local/state/openshell/tls/jwt" (the gateway's fallback location) or a temporary directory.`,
    );
  }
}

/**
 * The JWT algorithm a key can sign with.
 * @param {crypto.KeyObject} key
 * @returns {'EdDSA' | 'ES256' | 'RS256'}
 */
export function algForKey(key) {
  const type = key.asymmetricKeyType;
  if (type === 'ed25519') return 'EdDSA';
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1' || curve === 'P-256') return 'ES256';
    throw new JwtError(`unsupported EC curve ${curve ?? '(unknown)'}: only P-256 (ES256) is supported`);
  }
  if (type === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < 2048) throw new JwtError(`RSA key of ${bits} bits is too small: RS256 needs at least 2048 bits`);
    return 'RS256';
  }
  throw new JwtError(`unsupported key type ${type ?? '(unknown)'}: expected Ed25519, EC P-256 or RSA`);
}

/** @param {string} alg */
function assertAlg(alg) {
  if (!SUPPORTED_ALGS.includes(alg)) {
    throw new JwtError(`unsupported algorithm ${JSON.stringify(alg)}: use one of ${SUPPORTED_ALGS.join(', ')}`);
  }
}

/** @param {'EdDSA' | 'ES256' | 'RS256'} alg */
function generateFor(alg) {
  if (alg === 'EdDSA') return crypto.generateKeyPairSync('ed25519');
  if (alg === 'ES256') return crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return crypto.generateKeyPairSync('rsa', { modulusLength: 3072 });
}

/**
 * Create `file` with `content` and `mode` only if it does not exist yet (write to a temporary file in the same
 * directory, then hard-link it into place, which fails if another process got there first). Returns true when
 * this call created the file.
 * @param {string} file @param {string} content @param {number} mode
 */
function createExclusive(file, content, mode) {
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  fs.writeFileSync(tmp, content, { mode, flag: 'wx' });
  try {
    fs.chmodSync(tmp, mode); // umask may have narrowed or the fs ignored the mode
    fs.linkSync(tmp, file);
    return true;
  } catch (err) {
    if (/** @type {NodeJS.ErrnoException} */ (err).code === 'EEXIST') return false;
    throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** @param {string} p */
function readText(p, what) {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch (err) {
    const code = /** @type {NodeJS.ErrnoException} */ (err).code;
    if (code === 'ENOENT') throw new JwtError(`${what} ${p} does not exist (run: node scripts/jwt.mjs keygen --dir ${path.dirname(p)})`);
    throw new JwtError(`cannot read ${what} ${p}: ${code ?? String(err)}`);
  }
}

/** Read and trim the kid file; empty is an error (as in the gateway). @param {string} dir */
export function readKid(dir) {
  const { kidPath } = keyPaths(dir);
  const kid = readText(kidPath, 'kid file').trim();
  if (kid === '') throw new JwtError(`kid file ${kidPath} is empty`);
  if (/\s/.test(kid)) throw new JwtError(`kid file ${kidPath} must hold one line without spaces`);
  return kid;
}

/** @param {string} dir @returns {crypto.KeyObject} */
export function loadPublicKey(dir) {
  const { publicKeyPath } = keyPaths(dir);
  const pem = readText(publicKeyPath, 'public key');
  try {
    return crypto.createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw new JwtError(`public key ${publicKeyPath} is not a valid SPKI PEM public key`);
  }
}

/** @param {string} dir @returns {crypto.KeyObject} */
export function loadSigningKey(dir) {
  const { signingKeyPath } = keyPaths(dir);
  const pem = readText(signingKeyPath, 'signing key');
  try {
    return crypto.createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    throw new JwtError(`signing key ${signingKeyPath} is not a valid PKCS#8 PEM private key`);
  }
}

/** @param {crypto.KeyObject} a @param {crypto.KeyObject} b */
function samePublicKey(a, b) {
  const da = a.export({ type: 'spki', format: 'der' });
  const db = b.export({ type: 'spki', format: 'der' });
  return Buffer.compare(da, db) === 0;
}

/**
 * Generate, or reuse when present, a keypair and kid in `dir`:
 * `signing.pem` (PKCS#8 PEM, mode 0600), `public.pem` (SPKI PEM, 0644), `kid` (32 random hex characters, 0644).
 * Existing files are never overwritten: a present signing key is reused (its public key and kid are filled in
 * when missing), and a public key that does not match it is an error. `dir` must be outside this repository.
 *
 * @param {string} dir
 * @param {{ alg?: 'EdDSA' | 'ES256' | 'RS256', repoRoot?: string }} [opts]  alg defaults to EdDSA; when reusing,
 *   a given alg must match the existing key.
 * @returns {{ dir: string, signingKeyPath: string, publicKeyPath: string, kidPath: string, alg: string,
 *   kid: string, created: string[], reused: string[], notes: string[] }}
 */
export function ensureKeypair(dir, opts = {}) {
  const wantAlg = opts.alg;
  if (wantAlg !== undefined) assertAlg(wantAlg);
  assertOutsideRepo(dir, opts.repoRoot);
  const paths = keyPaths(dir);
  /** @type {string[]} */ const created = [];
  /** @type {string[]} */ const reused = [];
  /** @type {string[]} */ const notes = [];

  if (fs.existsSync(paths.dir)) {
    if (!fs.statSync(paths.dir).isDirectory()) throw new JwtError(`${paths.dir} exists and is not a directory`);
  } else {
    fs.mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  }

  const hasSigning = fs.existsSync(paths.signingKeyPath);
  if (!hasSigning && fs.existsSync(paths.publicKeyPath)) {
    throw new JwtError(
      `${paths.publicKeyPath} exists but ${paths.signingKeyPath} does not: refusing to replace a public key ` +
        `others may already trust. Restore the signing key, or use an empty --dir.`,
    );
  }
  if (!hasSigning) {
    const { privateKey, publicKey } = generateFor(wantAlg ?? 'EdDSA');
    const signingPem = /** @type {string} */ (privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const publicPem = /** @type {string} */ (publicKey.export({ type: 'spki', format: 'pem' }));
    if (createExclusive(paths.signingKeyPath, signingPem, 0o600)) {
      created.push(paths.signingKeyPath);
      // Our own fresh key: write the matching public key (a stale public.pem cannot exist, checked above, but
      // another process may have raced us; the match check below catches any mismatch).
      if (createExclusive(paths.publicKeyPath, publicPem, 0o644)) created.push(paths.publicKeyPath);
    }
  }

  const signingKey = loadSigningKey(paths.dir);
  const alg = algForKey(signingKey);
  if (wantAlg !== undefined && wantAlg !== alg) {
    throw new JwtError(`${paths.signingKeyPath} holds a key for ${alg}, not ${wantAlg}: use another --dir for a ${wantAlg} key`);
  }
  if (!created.includes(paths.signingKeyPath)) {
    reused.push(paths.signingKeyPath);
    const mode = fs.statSync(paths.signingKeyPath).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      fs.chmodSync(paths.signingKeyPath, 0o600);
      notes.push(`tightened ${paths.signingKeyPath} from mode ${mode.toString(8).padStart(4, '0')} to 0600`);
    }
  }
  const derivedPublic = crypto.createPublicKey(signingKey);
  if (!created.includes(paths.publicKeyPath)) {
    if (fs.existsSync(paths.publicKeyPath)) {
      if (!samePublicKey(loadPublicKey(paths.dir), derivedPublic)) {
        throw new JwtError(`${paths.publicKeyPath} does not match ${paths.signingKeyPath}; fix or remove the wrong file`);
      }
      reused.push(paths.publicKeyPath);
    } else {
      const publicPem = /** @type {string} */ (derivedPublic.export({ type: 'spki', format: 'pem' }));
      if (createExclusive(paths.publicKeyPath, publicPem, 0o644)) created.push(paths.publicKeyPath);
      else if (!samePublicKey(loadPublicKey(paths.dir), derivedPublic)) {
        throw new JwtError(`${paths.publicKeyPath} does not match ${paths.signingKeyPath}; fix or remove the wrong file`);
      }
    }
  }
  if (fs.existsSync(paths.kidPath)) {
    reused.push(paths.kidPath);
  } else if (createExclusive(paths.kidPath, `${crypto.randomBytes(16).toString('hex')}\n`, 0o644)) {
    created.push(paths.kidPath);
  }
  const kid = readKid(paths.dir);
  return { ...paths, alg, kid, created, reused, notes };
}

/**
 * The `[openshell.gateway.gateway_jwt]` table for a key directory: paths only, never key material.
 * @param {string} dir @param {{ gatewayId?: string, ttlSecs?: number }} [opts]
 */
export function gatewayJwtToml(dir, opts = {}) {
  const p = keyPaths(dir);
  const gatewayId = opts.gatewayId ?? 'openshell';
  const ttl = opts.ttlSecs ?? 0;
  return [
    '[openshell.gateway.gateway_jwt]',
    `signing_key_path = ${JSON.stringify(p.signingKeyPath)}`,
    `public_key_path = ${JSON.stringify(p.publicKeyPath)}`,
    `kid_path = ${JSON.stringify(p.kidPath)}`,
    `gateway_id = ${JSON.stringify(gatewayId)}`,
    `ttl_secs = ${ttl}`,
    '',
  ].join('\n');
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * A Kubernetes Secret (YAML) holding signing.pem, public.pem and kid of `dir`, for `kubectl apply -f -`.
 * This is the one output that contains the private key.
 * @param {string} dir @param {{ name?: string, namespace?: string }} [opts]
 */
export function renderSecretManifest(dir, opts = {}) {
  const name = opts.name ?? 'openshell-gateway-jwt';
  if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
    throw new JwtError(`invalid Secret name ${JSON.stringify(name)}: must be a lowercase RFC 1123 subdomain`);
  }
  if (opts.namespace !== undefined && (opts.namespace.length > 63 || !DNS1123_LABEL.test(opts.namespace))) {
    throw new JwtError(`invalid namespace ${JSON.stringify(opts.namespace)}: must be a lowercase RFC 1123 label`);
  }
  const p = keyPaths(dir);
  const signingKey = loadSigningKey(p.dir); // validates the PEM before it is shipped
  const publicKey = loadPublicKey(p.dir);
  if (!samePublicKey(publicKey, crypto.createPublicKey(signingKey))) {
    throw new JwtError(`${p.publicKeyPath} does not match ${p.signingKeyPath}; fix or remove the wrong file`);
  }
  const kid = readKid(p.dir);
  const b64 = (/** @type {string} */ s) => Buffer.from(s, 'utf8').toString('base64');
  const manifest = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name,
      ...(opts.namespace !== undefined ? { namespace: opts.namespace } : {}),
      labels: { 'app.kubernetes.io/name': 'openshell-gateway', 'app.kubernetes.io/component': 'gateway-jwt' },
    },
    type: 'Opaque',
    data: {
      [KEY_FILES.signing]: b64(fs.readFileSync(p.signingKeyPath, 'utf8')),
      [KEY_FILES.public]: b64(fs.readFileSync(p.publicKeyPath, 'utf8')),
      [KEY_FILES.kid]: b64(`${kid}\n`),
    },
  };
  return yamlStringify(manifest);
}

/** @param {unknown} n @param {string} what */
function nonNegativeInt(n, what) {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new JwtError(`${what} must be a non-negative integer number of seconds`);
  }
  return n;
}

/** @param {string} gatewayId */
function assertGatewayId(gatewayId) {
  if (typeof gatewayId !== 'string' || gatewayId === '' || /\s/.test(gatewayId)) {
    throw new JwtError(`invalid gateway id ${JSON.stringify(gatewayId)}: must be non-empty without whitespace`);
  }
}

/**
 * Mint a sandbox token exactly as the gateway does: header {alg: EdDSA, kid, typ: JWT}; claims
 * {sub: spiffe://openshell/sandbox/<uuid>, iss = aud = openshell-gateway:<gatewayId>, iat, exp, sandbox_id},
 * exp = iat + ttl, or 0 (never expires) when ttl is 0.
 *
 * @param {string} dir  key directory (Ed25519)
 * @param {{ sandboxId: string, gatewayId?: string, ttlSecs?: number, now?: number }} opts  now in seconds
 * @returns {Promise<string>}
 */
export async function mintSandboxToken(dir, opts) {
  const { sandboxId } = opts;
  if (!isUuid(sandboxId)) {
    throw new JwtError(
      `invalid sandbox id ${JSON.stringify(sandboxId)}: must be a lowercase canonical UUID ` +
        `(8-4-4-4-12 hex digits, as the gateway formats it)`,
    );
  }
  const gatewayId = opts.gatewayId ?? 'openshell';
  assertGatewayId(gatewayId);
  const ttl = nonNegativeInt(opts.ttlSecs ?? 0, 'ttl');
  const key = loadSigningKey(dir);
  const alg = algForKey(key);
  if (alg !== 'EdDSA') throw new JwtError(`sandbox tokens are EdDSA (Ed25519) only; ${keyPaths(dir).signingKeyPath} holds a key for ${alg}`);
  const kid = readKid(dir);
  const iat = opts.now ?? Math.floor(Date.now() / 1000);
  const iss = gatewayIssuer(gatewayId);
  const claims = {
    sub: sandboxSubject(sandboxId),
    iss,
    aud: iss,
    iat,
    exp: ttl === 0 ? 0 : iat + ttl,
    sandbox_id: sandboxId,
  };
  return new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid, typ: 'JWT' }).sign(key);
}

/** @param {string} token */
function splitToken(token) {
  if (typeof token !== 'string' || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) {
    throw new JwtError('malformed token: expected a compact JWS (three base64url segments separated by dots)');
  }
}

/** @param {string} token */
function headerOf(token) {
  try {
    return decodeProtectedHeader(token);
  } catch {
    throw new JwtError('malformed token: the header is not base64url-encoded JSON');
  }
}

/** @param {unknown} aud @param {string} expected */
function audContains(aud, expected) {
  return aud === expected || (Array.isArray(aud) && aud.includes(expected));
}

/**
 * Verify a sandbox token the way the gateway does: alg pinned to EdDSA; kid must match the kid file; typ
 * `openshell-ext+jwt` rejected; signature checked with public.pem; iss and aud = openshell-gateway:<gatewayId>;
 * sub, exp required; exp 0 accepted (the gateway's "never expires"), otherwise CLOCK_SKEW_SECONDS (60 s) leeway;
 * nbf and iat, when present, must be numbers and not more than CLOCK_SKEW_SECONDS in the future; sub must name
 * the sandbox_id.
 * Throws JwtError with a reason (never the token). Returns the header and claims.
 *
 * @param {string} token
 * @param {string} dir
 * @param {{ gatewayId?: string, now?: number }} [opts]
 * @returns {Promise<{ header: Record<string, unknown>, claims: Record<string, unknown> }>}
 */
export async function verifySandboxToken(token, dir, opts = {}) {
  splitToken(token);
  const gatewayId = opts.gatewayId ?? 'openshell';
  assertGatewayId(gatewayId);
  const header = headerOf(token);
  if (header.alg !== 'EdDSA') {
    throw new JwtError(`algorithm ${JSON.stringify(header.alg ?? null)} is not allowed: sandbox tokens are pinned to EdDSA`);
  }
  if (header.typ === 'openshell-ext+jwt') {
    throw new JwtError('typ openshell-ext+jwt is an extension token, not a sandbox token');
  }
  if (header.typ !== undefined && header.typ !== 'JWT') {
    throw new JwtError(`unexpected typ ${JSON.stringify(header.typ)} (sandbox tokens use typ JWT)`);
  }
  const kid = readKid(dir);
  if (typeof header.kid !== 'string' || header.kid === '') throw new JwtError('token has no kid header');
  if (header.kid !== kid) {
    throw new JwtError(`kid mismatch: token kid ${JSON.stringify(header.kid)} is not ${JSON.stringify(kid)} from ${keyPaths(dir).kidPath}`);
  }
  const publicKey = loadPublicKey(dir);
  if (algForKey(publicKey) !== 'EdDSA') throw new JwtError(`${keyPaths(dir).publicKeyPath} is not an Ed25519 public key`);
  let payloadBytes;
  try {
    ({ payload: payloadBytes } = await compactVerify(token, publicKey, { algorithms: ['EdDSA'] }));
  } catch {
    throw new JwtError(`signature verification failed: the token was not signed by the key of ${keyPaths(dir).publicKeyPath}, or it was altered`);
  }
  /** @type {Record<string, unknown>} */
  let claims;
  try {
    claims = JSON.parse(new TextDecoder().decode(payloadBytes));
  } catch {
    throw new JwtError('the payload is not JSON');
  }
  if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) throw new JwtError('the payload is not a JSON object');
  for (const c of ['iss', 'aud', 'exp', 'sub']) {
    if (!(c in claims)) throw new JwtError(`required claim ${c} is missing`);
  }
  const expected = gatewayIssuer(gatewayId);
  if (claims.iss !== expected) throw new JwtError(`iss ${JSON.stringify(claims.iss)} is not ${JSON.stringify(expected)}`);
  if (!audContains(claims.aud, expected)) throw new JwtError(`aud ${JSON.stringify(claims.aud)} does not contain ${JSON.stringify(expected)}`);
  const now = opts.now ?? Math.floor(Date.now() / 1000);
  const exp = claims.exp;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw new JwtError('exp must be a number');
  if (exp !== 0 && exp + CLOCK_SKEW_SECONDS < now) {
    throw new JwtError(`token expired at ${new Date(exp * 1000).toISOString()} (leeway ${CLOCK_SKEW_SECONDS} s)`);
  }
  for (const c of ['nbf', 'iat']) {
    if (c in claims && (typeof claims[c] !== 'number' || !Number.isFinite(claims[c]))) throw new JwtError(`${c} must be a number`);
  }
  if (typeof claims.nbf === 'number' && claims.nbf - CLOCK_SKEW_SECONDS > now) {
    throw new JwtError(`token not valid before ${new Date(claims.nbf * 1000).toISOString()} (leeway ${CLOCK_SKEW_SECONDS} s)`);
  }
  if (typeof claims.iat === 'number' && claims.iat - CLOCK_SKEW_SECONDS > now) {
    throw new JwtError(`token issued in the future, at ${new Date(claims.iat * 1000).toISOString()} (leeway ${CLOCK_SKEW_SECONDS} s)`);
  }
  const sandboxId = claims.sandbox_id;
  if (typeof sandboxId !== 'string' || !isUuid(sandboxId)) throw new JwtError('sandbox_id is missing or not a UUID');
  if (claims.sub !== sandboxSubject(sandboxId)) {
    throw new JwtError(`sub ${JSON.stringify(claims.sub)} does not name sandbox ${sandboxId}`);
  }
  return { header: { ...header }, claims };
}

/**
 * Mint a bearer token for a Substrate API that verifies JWTs with configured keys (the local Substrate):
 * header {alg, kid, typ: JWT}; claims {iss, sub, aud, iat, nbf, exp}. The alg follows the key in `dir`; a given
 * alg must match it.
 *
 * @param {string} dir
 * @param {{ issuer: string, audience?: string, alg?: string, ttlSecs?: number, sub?: string, now?: number }} opts
 * @returns {Promise<string>}
 */
export async function mintApiToken(dir, opts) {
  if (typeof opts.issuer !== 'string' || opts.issuer.trim() === '') throw new JwtError('issuer is required');
  const audience = opts.audience ?? API_AUDIENCE;
  if (typeof audience !== 'string' || audience.trim() === '') throw new JwtError('audience must be non-empty');
  const sub = opts.sub ?? DEFAULT_API_SUBJECT;
  if (typeof sub !== 'string' || sub === '') throw new JwtError('sub must be non-empty');
  const ttl = nonNegativeInt(opts.ttlSecs ?? 3600, 'ttl');
  if (ttl === 0) throw new JwtError('ttl must be positive for API tokens (the API requires exp)');
  const key = loadSigningKey(dir);
  const alg = algForKey(key);
  if (opts.alg !== undefined) {
    assertAlg(opts.alg);
    if (opts.alg !== alg) {
      throw new JwtError(`--alg ${opts.alg} does not match the ${alg} key in ${keyPaths(dir).signingKeyPath} (create one with: node scripts/jwt.mjs keygen --alg ${opts.alg} --dir OTHER_DIR)`);
    }
  }
  const kid = readKid(dir);
  const iat = opts.now ?? Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: opts.issuer, sub, aud: audience, iat, nbf: iat, exp: iat + ttl })
    .setProtectedHeader({ alg, kid, typ: 'JWT' })
    .sign(key);
}

/**
 * The public JWKS of the key in `dir` ({keys: [{kty, ..., kid, alg, use: "sig"}]}); never private parts.
 * @param {string} dir
 * @returns {Promise<{ keys: Array<Record<string, unknown>> }>}
 */
export async function publicJwks(dir) {
  const publicKey = loadPublicKey(dir);
  const alg = algForKey(publicKey);
  const kid = readKid(dir);
  const jwk = await exportJWK(publicKey);
  for (const k of ['d', 'p', 'q', 'dp', 'dq', 'qi']) delete /** @type {Record<string, unknown>} */ (jwk)[k];
  return { keys: [{ ...jwk, kid, alg, use: 'sig' }] };
}
