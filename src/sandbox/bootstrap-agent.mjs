#!/usr/bin/env node
// The bootstrap agent: plain, dependency-free Node ESM that runs INSIDE an actor, as the container's command,
// in front of the real one:
//
//   node /opt/openshell-substrate/bootstrap-agent.mjs -- <command...>
//
// Substrate v0.4 has no way to hand one actor its own secret (a template carries only literals, and every
// actor of a template restores from the template's golden snapshot). So the driver delivers each sandbox's
// per-sandbox values to this agent over the actor router after the actor is running (an HTTP CONNECT naming
// the actor with `ate-target-actor`, to this agent's port). Two modes, chosen by the template:
//
// * launch (default; OpenShell v0.1 gateways): the workload starts at once; the driver delivers the sandbox's
//   `launch_authentication` and the agent writes the supervisor's files into per-actor tmpfs mounts.
// * identity (OPENSHELL_SUBSTRATE_DELIVERY=identity; OpenShell 0.0.x gateways, whose supervisor reads its
//   identity and token from the environment): the agent HOLDS the workload until the driver delivers the
//   sandbox's {sandbox_id, sandbox_name, sandbox_token}, then starts it with OPENSHELL_SANDBOX_ID,
//   OPENSHELL_SANDBOX and OPENSHELL_SANDBOX_TOKEN (when the token is not empty) added to its environment, and
//   the agent's own settings (OPENSHELL_SUBSTRATE_*) removed; nothing else is added. It starts once: the
//   workload's environment cannot change afterwards, so a later delivery is accepted only when it is the same
//   one (re-delivery after a restore is idempotent).
//
// Either way the values live in the actor's memory only: a checkpoint carries the actor's own, a golden
// snapshot (taken before any delivery, as soon as the agent listens: its status endpoint is the wakeup probe)
// carries none.
//
// Protocol (HTTP/1.1 on OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT, default 17461, all addresses of the actor's own
// network namespace; requests over 64 KiB are refused with 413). Launch mode:
//   POST /v1/launch  {"sandbox_id", "launch_authentication": base64 of the gateway's bytes,
//                     "sandbox_token"?, "endpoint"?}
//     200 {"accepted":true,"auth_epoch":N}     written (or the same epoch again: idempotent)
//     400 malformed request or bundle          403 signature, profile, gateway or sandbox mismatch
//     409 auth_epoch lower than the current    500 the agent cannot work (bad trust anchor, write failed)
//   GET  /v1/launch  {"pinned":bool,"sandbox_id":string|null,"auth_epoch":N|null}   (never a secret)
// Identity mode:
//   POST /v1/identity {"sandbox_id", "sandbox_name", "sandbox_token"?}   (token "" or absent: none)
//     200 {"accepted":true,"started":true}     the workload runs with this identity (now, or already)
//     400 malformed request                    403 another sandbox (the first delivery pins the sandbox id;
//                                                  OPENSHELL_SANDBOX_ID in the template pins it from the start),
//                                                  or a token whose sandbox_id claim names another sandbox
//     409 the workload already runs with another name or token (it cannot change without a new actor)
//     500 the workload could not be started
//   GET  /v1/identity {"pinned":bool,"sandbox_id":string|null,"started":bool}   (never a secret)
// Each mode answers 404 on the other's path. No answer, error or log line of this agent ever contains token
// material; the agent keeps only a digest of the 0.0.x token (the workload's environment holds the token).
//
// Trust (launch mode): the JWTs of a bundle must verify (EdDSA/Ed25519 or ES256; `none` and anything else
// refused) against the trusted gateway keys: OPENSHELL_SUBSTRATE_GATEWAY_KEYS (JSON [{key_id,
// public_key_pem}], public keys from the template) when set, else the keys of the first bundle that verifies
// against its own keys (trust on first use), pinned with its gateway_id for the life of the actor. Every key a
// bundle lists must be one of the trusted keys. The first accepted bundle also pins the sandbox id
// (OPENSHELL_SANDBOX_ID, when the template sets it, pins it from the start); a lower auth_epoch than the
// current one is refused. (Identity mode has nothing to verify a 0.0.x token against: the first delivery pins
// the actor to its sandbox, and a token whose readable sandbox_id claim names another sandbox is refused.)
//
// Files (launch mode; written atomically, owned by the agent's uid):
//   /.openshell/supervisor/auth.json            the `supervisor` half (SupervisorAuthBundle), 0600
//   /.openshell/channel/sandbox/bootstrap.json  {gateway_id, verification_keys:[{key_id, public_key_pem}]}
//                                               with PEM as UTF-8 strings, nothing else, 0644
//   /etc/openshell/auth/sandbox.jwt             the sandbox token (= supervisor.gateway_token), 0400
//   /.openshell/supervisor/endpoint             the gateway endpoint, when one is given, 0644
//
// The bundle and JWT rules live in launch-auth.mjs (next to this file in the image; the driver on the host
// applies the same module). Importing this module starts nothing.
import { createHash, randomBytes } from 'node:crypto';
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
  peekClaims,
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
export const IDENTITY_PATH = '/v1/identity';
/** The template's choice of mode: `identity` holds the workload until its identity is delivered (0.0.x). */
export const DELIVERY_ENV = 'OPENSHELL_SUBSTRATE_DELIVERY';
export const IDENTITY_DELIVERY = 'identity';
/** What identity mode adds to the workload's environment. */
export const IDENTITY_ENV = Object.freeze({ id: 'OPENSHELL_SANDBOX_ID', name: 'OPENSHELL_SANDBOX', token: 'OPENSHELL_SANDBOX_TOKEN' });
/** The agent's own settings: never passed on to the workload in identity mode. */
const AGENT_ENV_PREFIX = 'OPENSHELL_SUBSTRATE_';
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
 * A POST handler that runs `accept` for one body at a time, answering a refusal (a LaunchError, or anything
 * else as a 500 "internal error") as `{accepted: false, error}` and logging it as `<what> refused`.
 */
function oneAtATime(accept, what, log) {
  let queue = Promise.resolve();
  return (body) => {
    const run = queue.then(() =>
      accept(body).catch((e) => {
        const le = e instanceof LaunchError ? e : new LaunchError(500, 'internal error');
        log(`${what} refused (${le.status}): ${le.message}`);
        return { status: le.status, body: { accepted: false, error: le.message } };
      }),
    );
    queue = run.then(() => undefined);
    return run;
  };
}

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

  // One POST at a time, so two deliveries never interleave their writes.
  return { path: LAUNCH_PATH, handle: oneAtATime(accept, 'launch', log), status };
}

// ---- identity mode (0.0.x) ------------------------------------------------------------------------------------

const IDENTITY_FIELDS = Object.freeze(['sandbox_id', 'sandbox_name', 'sandbox_token']);
/** A 0.0.x sandbox token: one printable ASCII word (it goes into an environment variable). */
const TOKEN_TEXT = /^[\x21-\x7e]{1,16384}$/;
const digestOf = (t) => createHash('sha256').update(t, 'utf8').digest('hex');

/**
 * The workload's environment in identity mode: the agent's own (what the template set, and what the runtime
 * gives every process) without the agent's settings and any identity it may carry, plus the delivered
 * identity. `base` is not modified.
 * @param {Record<string, string | undefined>} base
 * @param {{ sandboxId: string, sandboxName: string, sandboxToken: string }} id
 */
export function workloadEnv(base, id) {
  /** @type {Record<string, string>} */
  const env = {};
  for (const [k, v] of Object.entries(base)) {
    if (v === undefined || k.startsWith(AGENT_ENV_PREFIX) || Object.values(IDENTITY_ENV).includes(k)) continue;
    env[k] = v;
  }
  env[IDENTITY_ENV.id] = id.sandboxId;
  env[IDENTITY_ENV.name] = id.sandboxName;
  if (id.sandboxToken) env[IDENTITY_ENV.token] = id.sandboxToken;
  return env;
}

/**
 * Identity mode: holds the workload until the first accepted delivery, then `start`s it (once) with that
 * identity. `start` resolves once the workload process exists and rejects when it cannot be started.
 * @param {{ start: (id: { sandboxId: string, sandboxName: string, sandboxToken: string }) => Promise<void>, sandboxId?: string, log?: (line: string) => void }} opts
 */
export function createIdentityHandler(opts) {
  const log = opts.log ?? (() => undefined);
  const presetSandbox = opts.sandboxId && isIdent(opts.sandboxId) ? opts.sandboxId : undefined;
  /** Only a digest of the token: the workload's environment is the one place that holds it. */
  const state = { sandboxId: presetSandbox, pinned: false, name: undefined, tokenDigest: undefined, started: false };

  const status = () => ({ pinned: state.pinned, sandbox_id: state.sandboxId ?? null, started: state.started });

  async function accept(body) {
    exactFields(body, IDENTITY_FIELDS, 'request', ['sandbox_token']);
    if (!isIdent(body.sandbox_id)) throw bad('sandbox_id must be non-empty without whitespace');
    const name = body.sandbox_name;
    if (typeof name !== 'string' || (name !== '' && !isIdent(name)) || /[\u0000-\u001f\u007f]/u.test(name)) throw bad('sandbox_name must be a string without whitespace or control characters (at most 256)');
    const token = body.sandbox_token ?? '';
    if (typeof token !== 'string' || (token !== '' && !TOKEN_TEXT.test(token))) throw bad('sandbox_token must be printable ASCII without whitespace (at most 16384 characters)');
    // A 0.0.x token is the gateway's JWT whose sandbox_id claim names its sandbox (it cannot be verified
    // here: no gateway key reaches a 0.0.x actor); one that says another sandbox is refused.
    const claimed = token ? peekClaims(token)?.sandbox_id : undefined;
    if (claimed !== undefined && claimed !== body.sandbox_id) throw denied('the token was issued for another sandbox than the one the request names');
    if (state.sandboxId !== undefined && body.sandbox_id !== state.sandboxId) throw denied('this actor serves another sandbox');
    const digest = digestOf(token);
    if (state.pinned) {
      if (state.name !== body.sandbox_name || state.tokenDigest !== digest) {
        throw new LaunchError(409, 'the workload already runs with another sandbox name or token; its environment cannot change');
      }
      return { status: 200, body: { accepted: true, started: true } };
    }
    try {
      await opts.start({ sandboxId: body.sandbox_id, sandboxName: body.sandbox_name, sandboxToken: token });
    } catch (e) {
      throw new LaunchError(500, `the workload could not be started (${e?.code ?? 'error'})`);
    }
    Object.assign(state, { sandboxId: body.sandbox_id, pinned: true, name: body.sandbox_name, tokenDigest: digest, started: true });
    log('identity accepted; workload started');
    return { status: 200, body: { accepted: true, started: true } };
  }

  // One POST at a time: two deliveries never both start the workload.
  return { path: IDENTITY_PATH, handle: oneAtATime(accept, 'identity', log), status };
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

/** The agent's HTTP server (not listening yet) for one handler: launch (/v1/launch) or identity (/v1/identity). */
export function createAgentServer(handler) {
  const served = handler.path ?? LAUNCH_PATH;
  const send = (res, status, body, extra = {}) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...extra });
    res.end(text);
  };
  const server = http.createServer((req, res) => {
    if (req.url !== served) return send(res, 404, { error: `not found; the bootstrap agent serves ${served}` });
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
  const mode = process.env[DELIVERY_ENV] ?? '';
  if (mode !== '' && mode !== IDENTITY_DELIVERY && mode !== 'launch') {
    say(`${DELIVERY_ENV} must be "${IDENTITY_DELIVERY}", "launch" or unset`);
    process.exit(2);
  }
  const holding = mode === IDENTITY_DELIVERY;

  let child;
  let server;
  /** Starts the workload; resolves once its process exists. `env` undefined: the agent's own environment. */
  const startWorkload = (env) =>
    new Promise((resolve, reject) => {
      let c;
      try {
        c = spawn(command[0], command.slice(1), { stdio: 'inherit', ...(env ? { env } : {}) });
      } catch (e) {
        reject(e);
        return;
      }
      c.once('spawn', () => {
        child = c;
        resolve(undefined);
      });
      c.once('error', (e) => {
        if (child !== c) return reject(e);
        say(`workload error: ${e.code ?? e.message}`);
      });
      c.on('exit', (code, signal) => {
        if (child !== c) return; // never started: the 'error' above decides
        server?.close();
        process.exit(code ?? 128 + (os.constants.signals[signal] ?? 0));
      });
    });
  const cannotStart = (e) => say(`cannot start ${JSON.stringify(command[0])}: ${e?.code ?? e?.message ?? 'error'}`);

  const handler = holding
    ? createIdentityHandler({
        sandboxId: process.env[SANDBOX_ID_ENV],
        log: say,
        start: (id) =>
          startWorkload(workloadEnv(process.env, id)).catch((e) => {
            // Answer the delivery (500), then leave as launch mode does when the command cannot run.
            cannotStart(e);
            process.exitCode = 127;
            server?.close();
            server?.closeIdleConnections?.();
            setTimeout(() => process.exit(127), 2000).unref();
            throw e;
          }),
      })
    : createLaunchHandler({ root: '/', gatewayKeysText: process.env[GATEWAY_KEYS_ENV], sandboxId: process.env[SANDBOX_ID_ENV], log: say });
  server = createAgentServer(handler);
  try {
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '0.0.0.0', () => resolve(undefined));
    });
  } catch (e) {
    say(`cannot listen on port ${port}: ${e.code ?? e.message}`);
    process.exit(1);
  }
  for (const sig of FORWARDED) {
    process.on(sig, () => {
      if (child) {
        try {
          child.kill(sig);
        } catch {
          /* gone */
        }
      } else if (sig !== 'SIGUSR1' && sig !== 'SIGUSR2' && sig !== 'SIGWINCH') {
        // Stopped while still holding the workload: nothing to hand the signal to.
        process.exit(128 + (os.constants.signals[sig] ?? 0));
      }
    });
  }
  if (holding) {
    say('holding the workload until the driver delivers its identity');
    return;
  }
  try {
    await startWorkload(undefined);
  } catch (e) {
    cannotStart(e);
    process.exit(127);
  }
}

const invoked = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invoked) {
  // A stray rejection must not take the wrapped workload down with the agent.
  process.on('uncaughtException', (e) => process.stderr.write(`openshell-substrate-bootstrap: internal error: ${e?.name ?? 'error'}\n`));
  await main(process.argv.slice(2));
}
