// A stand-in for the OpenShell supervisor, run INSIDE an actor as the command the bootstrap agent wraps
// (node /opt/openshell-substrate/bootstrap-agent.mjs -- node /app/supervisor-standin.mjs). It enforces the
// real supervisor's file layout and input checks, written independently of the agent (so a bug shared by both
// cannot hide):
//   /.openshell/supervisor/auth.json            SupervisorAuthBundle: exact fields (deny unknown), upstream
//                                               validate() rules; not readable by group or others
//   /.openshell/channel/sandbox/bootstrap.json  the workload half: exactly gateway_id + verification_keys
//                                               (PEM strings), no supervisor token, nothing JWT-shaped
//   $OPENSHELL_SANDBOX_TOKEN_FILE               (default /etc/openshell/auth/sandbox.jwt) = gateway_token
//   $OPENSHELL_ENDPOINT / /.openshell/supervisor/endpoint
// and re-reads them whenever they change. A real supervisor would now dial the gateway; an actor has no egress,
// so this one reports instead, on port 80 (the gateway stand-in in the tests asks through the router):
//   GET /session        {connected, sandbox_id, auth_epoch, runtime_generation, gateway_id, endpoint,
//                        gateway_token_sha256, sandbox_token_sha256, sandbox_token_verified, reason}
//                        (digests, never a token)
//   GET /workload-view  what a workload process can see of the workload half: bootstrap.json's content, and
//                        each credential file's mode (who besides its owner could read it)
//   GET /processes      argv and environment of every process in the sandbox (to prove no token is there)
//   GET /env            what a 0.0.x supervisor reads from its environment: {id, name, endpoint, spec,
//                        tokenSha} (OPENSHELL_SANDBOX_ID, OPENSHELL_SANDBOX, OPENSHELL_ENDPOINT,
//                        OPENSHELL_MAIN_PROCESS_SPEC, sha256 of OPENSHELL_SANDBOX_TOKEN or null; never the token)
//   GET /readyz         200 once listening (the template's readiness; says nothing about credentials)
import { createHash, createPublicKey, verify } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

const AUTH = '/.openshell/supervisor/auth.json';
const BOOTSTRAP = '/.openshell/channel/sandbox/bootstrap.json';
const ENDPOINT_FILE = '/.openshell/supervisor/endpoint';
const TOKEN_FILE = process.env.OPENSHELL_SANDBOX_TOKEN_FILE || '/etc/openshell/auth/sandbox.jwt';
const PORT = Number(process.env.STANDIN_PORT || 80);
const FIELDS = ['session_id', 'runtime_generation', 'session_rotation', 'auth_epoch', 'gateway_token', 'gateway_expires_at', 'sandbox_token', 'sandbox_expires_at'];
const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const JWT_ANYWHERE = /[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/;

let session = { connected: false, reason: 'no credentials yet' };
let signature = '';
let reloads = 0;

const sha256 = (s) => createHash('sha256').update(s).digest('hex');
const statSig = (p) => {
  try {
    const st = fs.statSync(p);
    return `${st.ino}:${st.size}:${st.mtimeMs}:${st.mode}`;
  } catch {
    return '-';
  }
};

class Refused extends Error {}
const refuse = (m) => {
  throw new Refused(m);
};

function claimsOf(token) {
  try {
    return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
  } catch {
    return refuse('a token has unreadable claims');
  }
}

function readAuth() {
  let text;
  try {
    text = fs.readFileSync(AUTH, 'utf8');
  } catch {
    return refuse('no auth.json yet');
  }
  if ((fs.statSync(AUTH).mode & 0o077) !== 0) refuse('auth.json is readable by group or others');
  let a;
  try {
    a = JSON.parse(text);
  } catch {
    return refuse('auth.json is not JSON');
  }
  if (typeof a !== 'object' || a === null || Array.isArray(a)) refuse('auth.json is not an object');
  for (const k of Object.keys(a)) if (!FIELDS.includes(k)) refuse('auth.json has an unknown field (deny_unknown_fields)');
  for (const f of FIELDS) if (!(f in a)) refuse(`auth.json lacks ${f}`);
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(a.session_id) || /^[0-]+$/.test(a.session_id)) refuse('session_id is not a canonical UUID');
  if (!/^[a-z0-9-]{1,64}$/.test(a.runtime_generation)) refuse('runtime_generation is invalid');
  for (const f of ['session_rotation', 'auth_epoch']) if (!Number.isSafeInteger(a[f]) || a[f] <= 0) refuse(`${f} must be positive`);
  for (const f of ['gateway_expires_at', 'sandbox_expires_at']) if (!Number.isSafeInteger(a[f]) || a[f] <= 0) refuse(`${f} must be positive`);
  for (const f of ['gateway_token', 'sandbox_token']) if (typeof a[f] !== 'string' || !JWT.test(a[f])) refuse(`${f} is not a JWT`);
  return a;
}

function readBootstrap(auth) {
  let text;
  try {
    text = fs.readFileSync(BOOTSTRAP, 'utf8');
  } catch {
    return refuse('no bootstrap.json yet');
  }
  if (text.includes(auth.gateway_token) || text.includes(auth.sandbox_token) || JWT_ANYWHERE.test(text)) refuse('bootstrap.json carries token material');
  const b = JSON.parse(text);
  const keys = Object.keys(b).sort().join(',');
  if (keys !== 'gateway_id,verification_keys') refuse('bootstrap.json must hold exactly gateway_id and verification_keys');
  if (typeof b.gateway_id !== 'string' || !b.gateway_id) refuse('bootstrap.json gateway_id is invalid');
  if (!Array.isArray(b.verification_keys) || b.verification_keys.length === 0) refuse('bootstrap.json has no keys');
  for (const k of b.verification_keys) {
    if (Object.keys(k).sort().join(',') !== 'key_id,public_key_pem') refuse('a bootstrap.json key has other fields');
    if (typeof k.public_key_pem !== 'string' || !k.public_key_pem.startsWith('-----BEGIN PUBLIC KEY-----')) refuse('a bootstrap.json key is not a PEM string');
  }
  return b;
}

/** What the workload half does with its keys: verify the Sandbox Protocol token (EdDSA, by kid). */
function verifiesWith(token, keys) {
  try {
    const [h, p, s] = token.split('.');
    const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
    if (header.alg !== 'EdDSA' || header.typ !== 'openshell-sandbox-session+jwt') return false;
    const k = keys.find((x) => x.key_id === header.kid);
    if (!k) return false;
    return verify(null, Buffer.from(`${h}.${p}`), createPublicKey(k.public_key_pem), Buffer.from(s, 'base64url'));
  } catch {
    return false;
  }
}

function load() {
  const sig = [AUTH, BOOTSTRAP, TOKEN_FILE, ENDPOINT_FILE].map(statSig).join('|');
  if (sig === signature) return;
  signature = sig;
  reloads++;
  try {
    const auth = readAuth();
    const boot = readBootstrap(auth);
    let file;
    try {
      file = fs.readFileSync(TOKEN_FILE, 'utf8').trim();
    } catch {
      refuse('no sandbox token file yet');
    }
    if ((fs.statSync(TOKEN_FILE).mode & 0o077) !== 0) refuse('the sandbox token file is readable by group or others');
    if (file !== auth.gateway_token) refuse('the sandbox token file does not hold supervisor.gateway_token');
    const g = claimsOf(auth.gateway_token);
    const s = claimsOf(auth.sandbox_token);
    if (g.iss !== `openshell-gateway:${boot.gateway_id}`) refuse('gateway token issuer does not name the bootstrap gateway');
    if (g.sandbox_id !== s.sandbox_id) refuse('the two tokens name different sandboxes');
    if (g.auth_epoch !== auth.auth_epoch || s.auth_epoch !== auth.auth_epoch) refuse('token auth_epoch differs from the bundle');
    if (g.exp * 1000 < Date.now()) refuse('gateway token expired');
    const verified = verifiesWith(auth.sandbox_token, boot.verification_keys);
    if (!verified) refuse('the sandbox token does not verify with the workload half keys');
    let endpoint = process.env.OPENSHELL_ENDPOINT || null;
    try {
      endpoint = fs.readFileSync(ENDPOINT_FILE, 'utf8').trim() || endpoint;
    } catch {
      /* env only */
    }
    const was = session;
    session = {
      connected: true,
      sandbox_id: g.sandbox_id,
      auth_epoch: auth.auth_epoch,
      runtime_generation: auth.runtime_generation,
      gateway_id: boot.gateway_id,
      endpoint,
      gateway_token_sha256: sha256(auth.gateway_token),
      sandbox_token_sha256: sha256(auth.sandbox_token),
      sandbox_token_verified: verified,
      reason: '',
    };
    if (!was.connected || was.auth_epoch !== session.auth_epoch || was.gateway_token_sha256 !== session.gateway_token_sha256) {
      process.stdout.write(`supervisor-standin: connected as sandbox ${session.sandbox_id} at auth_epoch ${session.auth_epoch}\n`);
    }
  } catch (e) {
    if (!(e instanceof Refused)) e = new Refused('credential files are unreadable');
    session = { connected: false, reason: e.message };
  }
}

function fileView(p) {
  try {
    const st = fs.statSync(p);
    return { path: p, exists: true, uid: st.uid, mode: (st.mode & 0o7777).toString(8), group_or_world_readable: (st.mode & 0o044) !== 0 };
  } catch {
    return { path: p, exists: false };
  }
}

function processes() {
  const out = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const read = (f) => {
      try {
        return fs.readFileSync(`/proc/${e}/${f}`, 'utf8').split('\0').filter(Boolean);
      } catch {
        return [];
      }
    };
    out.push({ pid: Number(e), cmdline: read('cmdline'), environ: read('environ') });
  }
  return out;
}

setInterval(load, 200).unref();
load();

http
  .createServer((req, res) => {
    const json = (code, v) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(v));
    };
    if (req.url === '/readyz') return res.end('ok');
    if (req.url === '/session') {
      load();
      return json(200, { ...session, reloads });
    }
    if (req.url === '/workload-view') {
      let bootstrap = null;
      try {
        bootstrap = JSON.parse(fs.readFileSync(BOOTSTRAP, 'utf8'));
      } catch {
        /* none yet */
      }
      return json(200, { bootstrap, files: [AUTH, BOOTSTRAP, TOKEN_FILE, ENDPOINT_FILE].map(fileView), uid: process.getuid() });
    }
    if (req.url === '/processes') return json(200, processes());
    if (req.url === '/env') {
      const e = process.env;
      const tok = e.OPENSHELL_SANDBOX_TOKEN;
      return json(200, {
        id: e.OPENSHELL_SANDBOX_ID ?? null,
        name: e.OPENSHELL_SANDBOX ?? null,
        endpoint: e.OPENSHELL_ENDPOINT ?? null,
        spec: e.OPENSHELL_MAIN_PROCESS_SPEC ?? null,
        tokenSha: tok ? sha256(tok) : null,
      });
    }
    json(404, { error: 'not found' });
  })
  .listen(PORT, '0.0.0.0');
