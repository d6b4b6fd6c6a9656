#!/usr/bin/env node
// The launch-credential bootstrap agent: plain, dependency-free Node ESM that runs INSIDE an actor, as the
// container's command, in front of the real one:
//
//   node /opt/openshell-substrate/bootstrap-agent.mjs -- <command...>
//
// Substrate v0.4 has no way to hand one actor its own secret (a template carries only literals and Secret
// references, and every actor of a template restores from the template's golden snapshot). So the driver
// delivers each sandbox's OpenShell v0.1 `launch_authentication` to this agent over the actor router after
// the actor is running, and the agent writes the supervisor's files into per-actor tmpfs mounts. Those live
// in the actor's memory: a checkpoint carries the actor's own last bundle, a golden snapshot (taken before
// any delivery) carries none.
//
// Protocol (HTTP/1.1 on OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT, default 17461, all addresses of the actor's own
// network namespace; requests over 64 KiB are refused with 413):
//   POST /v1/launch  {"sandbox_id", "launch_authentication": base64 of the gateway's bytes,
//                     "sandbox_token"?, "endpoint"?}
//     200 {"accepted":true,"auth_epoch":N}     written (or the same epoch again: idempotent)
//     400 malformed request or bundle          403 signature, profile, gateway or sandbox mismatch
//     409 auth_epoch lower than the current    500 the agent cannot work (bad trust anchor, write failed)
//   GET  /v1/launch  {"pinned":bool,"sandbox_id":string|null,"auth_epoch":N|null}   (never a secret)
// No answer, error or log line of this agent ever contains token material.
//
// Trust: the JWTs of a bundle must verify (EdDSA/Ed25519 or ES256; `none` and anything else refused) against
// the trusted gateway keys: OPENSHELL_SUBSTRATE_GATEWAY_KEYS (JSON [{key_id, public_key_pem}], public keys
// from the template) when set, else the keys of the first bundle that verifies against its own keys
// (trust on first use), pinned with its gateway_id for the life of the actor. Every key a bundle lists must be
// one of the trusted keys. The first accepted bundle also pins the sandbox id (OPENSHELL_SANDBOX_ID, when the
// template sets it, pins it from the start); a lower auth_epoch than the current one is refused.
//
// Files (written atomically, owned by the agent's uid):
//   /.openshell/supervisor/auth.json            the `supervisor` half (SupervisorAuthBundle), 0600
//   /.openshell/channel/sandbox/bootstrap.json  {gateway_id, verification_keys:[{key_id, public_key_pem}]}
//                                               with PEM as UTF-8 strings, nothing else, 0644
//   /etc/openshell/auth/sandbox.jwt             the sandbox token (= supervisor.gateway_token), 0400
//   /.openshell/supervisor/endpoint             the gateway endpoint, when one is given, 0644
//
// The bundle and JWT rules live in launch-auth.mjs (next to this file in the image; the driver on the host
// applies the same module). Importing this module starts nothing.
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  GATEWAY_KEYS_ENV,
  LaunchError,
  bad,
  denied,
  exactFields,
  isIdent,
  keyRing,
  nameOf,
  parseGatewayKeys,
  parseLaunchAuthentication,
  publicKeyOf,
  verifySessionJwt,
} from './launch-auth.mjs';

// The rules, re-exported for callers that know only the agent.
export {
  GATEWAY_KEYS_ENV,
  GATEWAY_TOKEN_TYPE,
  SANDBOX_AUDIENCE,
  SANDBOX_TOKEN_TYPE,
  LaunchError,
  isGenerationId,
  isSessionId,
  keyRing,
  parseGatewayKeys,
  parseLaunchAuthentication,
  peekClaims,
  publicKeyOf,
  verifySessionJwt,
} from './launch-auth.mjs';

export const DEFAULT_PORT = 17461;
export const PORT_ENV = 'OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT';
export const SANDBOX_ID_ENV = 'OPENSHELL_SANDBOX_ID';
export const LAUNCH_PATH = '/v1/launch';
export const MAX_BODY_BYTES = 64 * 1024;
/** Where the agent lives in every local image (src/local/images.ts puts it there). */
export const AGENT_IMAGE_PATH = '/opt/openshell-substrate/bootstrap-agent.mjs';

/** Files relative to the root the agent writes under ("/" inside an actor). */
export const FILES = Object.freeze({
  auth: '.openshell/supervisor/auth.json',
  bootstrap: '.openshell/channel/sandbox/bootstrap.json',
  token: 'etc/openshell/auth/sandbox.jwt',
  endpoint: '.openshell/supervisor/endpoint',
});
const BODY_FIELDS = Object.freeze(['sandbox_id', 'launch_authentication', 'sandbox_token', 'endpoint']);
const utf8 = new TextDecoder('utf-8', { fatal: true });

// ---- the launch state machine ---------------------------------------------------------------------------------

/**
 * The agent's memory (it survives suspend and restore with the actor) and the writer of the files.
 * @param {{ root?: string, gatewayKeysText?: string, sandboxId?: string, now?: () => number, log?: (line: string) => void }} [opts]
 */
export function createLaunchHandler(opts = {}) {
  const root = opts.root ?? '/';
  const now = opts.now ?? (() => Math.floor(Date.now() / 1000));
  const log = opts.log ?? (() => undefined);
  /** Anchored keys from the template, or the error that makes every delivery fail. */
  let anchor;
  let anchorError;
  if (opts.gatewayKeysText !== undefined && opts.gatewayKeysText !== '') {
    try {
      anchor = keyRing(parseGatewayKeys(opts.gatewayKeysText));
    } catch (e) {
      anchorError = `the actor's ${GATEWAY_KEYS_ENV} is invalid: ${e.message}`;
    }
  }
  const presetSandbox = opts.sandboxId && isIdent(opts.sandboxId) ? opts.sandboxId : undefined;
  const state = { pinned: false, sandboxId: presetSandbox, gatewayId: undefined, ring: anchor, authEpoch: 0 };
  let queue = Promise.resolve();

  const status = () => ({ pinned: state.pinned, sandbox_id: state.sandboxId ?? null, auth_epoch: state.pinned ? state.authEpoch : null });

  /** Validates and applies one POST body (already parsed JSON). Resolves { status, body }. */
  async function accept(body) {
    if (anchorError) throw new LaunchError(500, anchorError);
    exactFields(body, BODY_FIELDS, 'request', ['sandbox_token', 'endpoint']);
    if (!isIdent(body.sandbox_id)) throw bad('sandbox_id must be non-empty without whitespace');
    const b64 = body.launch_authentication;
    if (typeof b64 !== 'string' || b64.length === 0 || b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) {
      throw bad('launch_authentication must be standard base64');
    }
    if (body.endpoint !== undefined && (typeof body.endpoint !== 'string' || body.endpoint.length === 0 || body.endpoint.length > 2048 || /[\s\u0000-\u001f\u007f]/u.test(body.endpoint))) {
      throw bad('endpoint must be a non-empty string without whitespace or control characters (at most 2048)');
    }
    const bundle = parseLaunchAuthentication(Buffer.from(b64, 'base64'));
    const sup = bundle.supervisor;

    if (state.gatewayId !== undefined && bundle.gateway_id !== state.gatewayId) throw denied('the bundle names another gateway than the one this actor trusts');
    const ring = state.ring ?? keyRing(bundle.verification_keys);
    for (const k of bundle.verification_keys) {
      const t = ring.get(k.key_id);
      if (!t || !t.der.equals(publicKeyOf(k.public_key_pem, k.key_id).export({ type: 'spki', format: 'der' }))) {
        throw denied(`verification key ${nameOf(k.key_id)} is not among the trusted gateway keys`);
      }
    }
    const nowSec = now();
    const common = { gatewayId: bundle.gateway_id, ring, nowSec };
    const g = verifySessionJwt(sup.gateway_token, { ...common, profile: 'gateway', label: 'gateway_token' });
    const s = verifySessionJwt(sup.sandbox_token, { ...common, profile: 'sandbox', label: 'sandbox_token' });
    if (g.sandbox_id !== body.sandbox_id || s.sandbox_id !== body.sandbox_id) throw denied('the tokens were issued for another sandbox than the one the request names');
    if (state.sandboxId !== undefined && body.sandbox_id !== state.sandboxId) throw denied('this actor serves another sandbox');
    if (g.auth_epoch !== sup.auth_epoch || s.auth_epoch !== sup.auth_epoch) throw denied('the tokens carry another auth_epoch than the bundle');
    if (g.runtime_generation !== sup.runtime_generation || s.runtime_generation !== sup.runtime_generation) throw denied('the tokens carry another runtime_generation than the bundle');
    if (state.pinned && sup.auth_epoch < state.authEpoch) {
      throw new LaunchError(409, `auth_epoch ${sup.auth_epoch} is older than the actor's current auth_epoch ${state.authEpoch}`);
    }
    let tokenFile = sup.gateway_token;
    if (body.sandbox_token !== undefined && body.sandbox_token !== sup.gateway_token) {
      const t = verifySessionJwt(body.sandbox_token, { ...common, profile: 'gateway', label: 'request sandbox_token' });
      if (t.sandbox_id !== body.sandbox_id || t.auth_epoch !== sup.auth_epoch) throw denied('request sandbox_token does not belong to this sandbox and auth_epoch');
      tokenFile = body.sandbox_token;
    }

    // Write: the workload half first, the supervisor's bundle last (a supervisor watching auth.json sees a
    // complete set when it changes).
    try {
      if (body.endpoint !== undefined) await writeAtomic(root, FILES.endpoint, body.endpoint + '\n', 0o644, 0o700);
      const workload = { gateway_id: bundle.gateway_id, verification_keys: bundle.verification_keys.map((k) => ({ key_id: k.key_id, public_key_pem: k.public_key_pem })) };
      await writeAtomic(root, FILES.bootstrap, JSON.stringify(workload), 0o644, 0o755);
      await writeAtomic(root, FILES.token, tokenFile, 0o400, 0o700);
      await writeAtomic(root, FILES.auth, JSON.stringify(sup), 0o600, 0o700);
    } catch (e) {
      throw new LaunchError(500, `writing the launch files failed (${e?.code ?? 'error'})`);
    }
    const again = state.pinned && sup.auth_epoch === state.authEpoch;
    state.pinned = true;
    state.sandboxId = body.sandbox_id;
    state.gatewayId = bundle.gateway_id;
    state.ring = ring;
    state.authEpoch = sup.auth_epoch;
    log(`launch ${again ? 're-' : ''}accepted: auth_epoch ${sup.auth_epoch}`);
    return { status: 200, body: { accepted: true, auth_epoch: sup.auth_epoch } };
  }

  /** One POST at a time, so two deliveries never interleave their writes. */
  function handle(body) {
    const run = queue.then(() =>
      accept(body).catch((e) => {
        const le = e instanceof LaunchError ? e : new LaunchError(500, 'internal error');
        log(`launch refused (${le.status}): ${le.message}`);
        return { status: le.status, body: { accepted: false, error: le.message } };
      }),
    );
    queue = run.then(() => undefined);
    return run;
  }

  return { handle, status };
}

/** tmp file in the same directory, fsync, rename, fsync the directory. */
async function writeAtomic(root, rel, content, mode, dirMode) {
  const file = path.join(root, rel);
  const dir = path.dirname(file);
  await fsp.mkdir(dir, { recursive: true, mode: dirMode });
  await fsp.chmod(dir, dirMode);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await fsp.open(tmp, 'wx', mode);
  try {
    await fh.writeFile(content);
    await fh.chmod(mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  const dh = await fsp.open(dir, 'r').catch(() => undefined);
  if (dh) await dh.sync().catch(() => undefined).finally(() => dh.close());
}

// ---- HTTP ------------------------------------------------------------------------------------------------------

/** The agent's HTTP server (not listening yet). */
export function createAgentServer(handler) {
  const send = (res, status, body, extra = {}) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...extra });
    res.end(text);
  };
  const server = http.createServer((req, res) => {
    if (req.url !== LAUNCH_PATH) return send(res, 404, { error: `not found; the bootstrap agent serves ${LAUNCH_PATH}` });
    if (req.method === 'GET') return send(res, 200, handler.status());
    if (req.method !== 'POST') return send(res, 405, { error: 'method not allowed' }, { allow: 'GET, POST' });
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES) {
      send(res, 413, { accepted: false, error: `request body exceeds ${MAX_BODY_BYTES} bytes` }, { connection: 'close' });
      req.resume();
      return;
    }
    const chunks = [];
    let size = 0;
    let over = false;
    req.on('data', (c) => {
      if (over) return;
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        over = true;
        chunks.length = 0;
        send(res, 413, { accepted: false, error: `request body exceeds ${MAX_BODY_BYTES} bytes` }, { connection: 'close' });
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (over) return;
      let body;
      try {
        body = JSON.parse(utf8.decode(Buffer.concat(chunks)));
      } catch {
        return send(res, 400, { accepted: false, error: 'request body is not JSON' });
      }
      chunks.length = 0;
      handler.handle(body).then(
        (r) => send(res, r.status, r.body),
        () => send(res, 500, { accepted: false, error: 'internal error' }),
      );
    });
    req.on('error', () => undefined);
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  return server;
}

// ---- the process wrapper -----------------------------------------------------------------------------------------

const FORWARDED = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];

async function main(argv) {
  const say = (line) => process.stderr.write(`openshell-substrate-bootstrap: ${line}\n`);
  const sep = argv.indexOf('--');
  const command = sep >= 0 ? argv.slice(sep + 1) : [];
  if (command.length === 0 || !command[0]) {
    say(`usage: node ${AGENT_IMAGE_PATH} -- <command...>`);
    process.exit(2);
  }
  const portText = process.env[PORT_ENV];
  const port = portText ? Number(portText) : DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    say(`${PORT_ENV} must be a port from 1 to 65535`);
    process.exit(2);
  }
  const handler = createLaunchHandler({ root: '/', gatewayKeysText: process.env[GATEWAY_KEYS_ENV], sandboxId: process.env[SANDBOX_ID_ENV], log: say });
  const server = createAgentServer(handler);
  try {
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '0.0.0.0', () => resolve(undefined));
    });
  } catch (e) {
    say(`cannot listen on port ${port}: ${e.code ?? e.message}`);
    process.exit(1);
  }
  let child;
  try {
    child = spawn(command[0], command.slice(1), { stdio: 'inherit' });
  } catch (e) {
    say(`cannot start ${JSON.stringify(command[0])}: ${e.code ?? e.message}`);
    process.exit(127);
  }
  for (const sig of FORWARDED) {
    process.on(sig, () => {
      try {
        child.kill(sig);
      } catch {
        /* gone */
      }
    });
  }
  child.on('error', (e) => {
    say(`cannot start ${JSON.stringify(command[0])}: ${e.code ?? e.message}`);
    process.exit(127);
  });
  child.on('exit', (code, signal) => {
    server.close();
    process.exit(code ?? 128 + (os.constants.signals[signal] ?? 0));
  });
}

const invoked = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invoked) {
  // A stray rejection must not take the wrapped workload down with the agent.
  process.on('uncaughtException', (e) => process.stderr.write(`openshell-substrate-bootstrap: internal error: ${e?.name ?? 'error'}\n`));
  await main(process.argv.slice(2));
}
