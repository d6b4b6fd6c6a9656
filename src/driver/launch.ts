// Delivery of a sandbox's per-sandbox values to its actor, after restore. Substrate v0.4 cannot hand one actor
// its own secret (templates are shared, and hold literals only), so the driver posts them to the bootstrap
// agent inside the running actor (src/sandbox/bootstrap-agent.mjs):
//
// * OpenShell v0.1: the gateway sends `launch_authentication` (JSON SandboxLaunchAuthentication bytes) on
//   Create and a fresh one on every Start; the agent verifies it and writes the supervisor's files into the
//   actor's memory-backed mounts (POST /v1/launch).
// * OpenShell 0.0.x: the sandbox's id, name and token (`sandbox_token`, sent on Create only, possibly empty);
//   the agent, which held the workload until now, starts it with OPENSHELL_SANDBOX_ID, OPENSHELL_SANDBOX and
//   OPENSHELL_SANDBOX_TOKEN in its environment (POST /v1/identity). The first delivery pins the actor to its
//   sandbox; the same delivery again is accepted, another one refused.
//
// The way in is the actor router: an HTTP CONNECT whose outer request names the actor with
// `ate-target-actor: <atespace>/<actor>` and whose target is the agent's port (the router resumes a suspended
// actor first).
//
// Nothing here logs, and no error message carries the bundle or any part of a token: messages name the actor
// and the cause (the agent's own answers never carry token material either, and are scrubbed once more).
import http from 'node:http';
import type { Socket } from 'node:net';
import { isDnsLabel } from '../common/dns.js';
import { ApiError, Code, invalid } from '../common/errors.js';
import { DEFAULT_PORT, IDENTITY_PATH, LAUNCH_PATH } from '../sandbox/bootstrap-agent.mjs';
import { LaunchError, parseLaunchAuthentication as parseBundle, peekClaims, type GatewayKey, type LaunchAuthentication } from '../sandbox/launch-auth.mjs';
import { sleep } from '../common/sleep.js';

export { DEFAULT_PORT as BOOTSTRAP_AGENT_PORT } from '../sandbox/bootstrap-agent.mjs';
export type { GatewayKey } from '../sandbox/launch-auth.mjs';

/** What the driver may know and keep about a bundle without holding its tokens. */
export interface LaunchAuthenticationSummary {
  gatewayId: string;
  authEpoch: number;
  runtimeGeneration: string;
  sessionId: string;
  sessionRotation: number;
  gatewayExpiresAt: number;
  sandboxExpiresAt: number;
  /** The gateway token's `sandbox_id` claim, read WITHOUT verification (the agent verifies); undefined if unreadable. */
  sandboxId: string | undefined;
  /** Public keys only, PEM as UTF-8 strings, sorted by key id (what a template may carry as trust anchor). */
  verificationKeys: GatewayKey[];
}

/** Its base64 plus a sandbox id and the longest endpoint still fit the agent's 64 KiB request limit. */
const MAX_BUNDLE_BYTES = 46 * 1024;
/** The longest 0.0.x sandbox token the agent takes (it goes into the workload's environment). */
const MAX_TOKEN_CHARS = 16384;

function parseOrThrow(bytes: Uint8Array, who: string): LaunchAuthentication {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw invalid(`launch authentication${who} is empty`);
  if (bytes.length > MAX_BUNDLE_BYTES) throw invalid(`launch authentication${who} is ${bytes.length} bytes; at most ${MAX_BUNDLE_BYTES} are accepted`);
  try {
    return parseBundle(bytes);
  } catch (e) {
    // The agent's parser names fields, never values.
    const why = e instanceof LaunchError ? e.message : 'it cannot be parsed';
    throw invalid(`launch authentication${who} is invalid: ${why}`);
  }
}

/**
 * Validates the gateway's `launch_authentication` bytes (structure, upstream validate() rules, unknown fields
 * refused, public keys parse) and returns what can be kept without secrets. Signatures are not checked here:
 * the agent inside the actor checks them against its trust anchor. Throws INVALID_ARGUMENT naming what is
 * wrong, never any token text.
 */
export function parseLaunchAuthentication(bytes: Uint8Array): LaunchAuthenticationSummary {
  return summarize(parseOrThrow(bytes, ''));
}

function summarize(b: LaunchAuthentication): LaunchAuthenticationSummary {
  const claims = peekClaims(b.supervisor.gateway_token);
  const sandboxId = typeof claims?.sandbox_id === 'string' ? claims.sandbox_id : undefined;
  return {
    gatewayId: b.gateway_id,
    authEpoch: b.supervisor.auth_epoch,
    runtimeGeneration: b.supervisor.runtime_generation,
    sessionId: b.supervisor.session_id,
    sessionRotation: b.supervisor.session_rotation,
    gatewayExpiresAt: b.supervisor.gateway_expires_at,
    sandboxExpiresAt: b.supervisor.sandbox_expires_at,
    sandboxId,
    verificationKeys: [...b.verification_keys].sort((x, y) => (x.key_id < y.key_id ? -1 : x.key_id > y.key_id ? 1 : 0)).map((k) => ({ key_id: k.key_id, public_key_pem: k.public_key_pem })),
  };
}

const JWT_SHAPE = /[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g;

/** Text from the agent or the router, made safe for an error message: no secret, no JWT shape, short, printable. */
export function scrub(text: string, secrets: readonly string[] = []): string {
  let t = text;
  for (const s of secrets) if (s) t = t.split(s).join('[redacted]');
  t = t.replace(JWT_SHAPE, '[redacted]').replace(/[^\x20-\x7e]/g, ' ').replace(/\s+/g, ' ').trim();
  return t.length > 300 ? `${t.slice(0, 300)}…` : t;
}

export interface LaunchDeliveryOptions {
  /** The actor router, e.g. http://127.0.0.1:8000 (local: `router_url` of local.json; cluster: the atenet router). */
  routerUrl: string;
  /** The agent's port inside the actor (OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT); default 17461. */
  port?: number;
  /** How long one delivery may take, retries included (a cold boot, a resume); default 30 s. */
  timeoutMs?: number;
}

export interface ActorAddress {
  atespace: string;
  actor: string;
}

type Attempt = { kind: 'answer'; status: number; text: string } | { kind: 'retry'; cause: string };

/** Posts launch credentials to an actor's bootstrap agent through the actor router. */
export class LaunchDelivery {
  private readonly router: URL;
  private readonly port: number;
  private readonly timeoutMs: number;

  constructor(o: LaunchDeliveryOptions) {
    let u: URL;
    try {
      u = new URL(o.routerUrl);
    } catch {
      throw invalid(`launch delivery: router URL ${JSON.stringify(o.routerUrl)} is not a URL`);
    }
    if (u.protocol !== 'http:') throw invalid(`launch delivery: router URL ${JSON.stringify(o.routerUrl)} must be http:// (the router speaks plain HTTP CONNECT)`);
    const port = o.port ?? DEFAULT_PORT;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid(`launch delivery: agent port ${port} must be 1..65535`);
    const timeoutMs = o.timeoutMs ?? 30_000;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw invalid(`launch delivery: timeout ${timeoutMs} must be a positive number of ms`);
    this.router = u;
    this.port = port;
    this.timeoutMs = timeoutMs;
  }

  /**
   * Delivers one bundle. Resolves with the auth_epoch the agent now holds. Throws ApiError:
   * INVALID_ARGUMENT (malformed bundle, or the agent refused it as malformed), PERMISSION_DENIED (the agent's
   * verification refused it: signature, another sandbox, another gateway), FAILED_PRECONDITION (the actor holds
   * a newer auth_epoch; nothing on the port speaks the agent protocol), NOT_FOUND (no such actor),
   * DEADLINE_EXCEEDED (the agent did not answer within the timeout), CANCELLED (signal).
   */
  async deliver(
    ref: ActorAddress,
    body: { sandboxId: string; launchAuthentication: Uint8Array; endpoint?: string },
    signal?: AbortSignal,
  ): Promise<{ authEpoch: number }> {
    const who = checkRef(ref);
    const bundle = parseOrThrow(body.launchAuthentication, ` for actor ${who}`);
    const secrets = [bundle.supervisor.gateway_token, bundle.supervisor.sandbox_token];
    const summary = summarize(bundle);
    if (!body.sandboxId) throw invalid(`launch delivery to actor ${who}: sandbox id is empty`);
    if (summary.sandboxId !== undefined && summary.sandboxId !== body.sandboxId) {
      throw invalid(`launch authentication for actor ${who} was issued for another sandbox than ${JSON.stringify(body.sandboxId)}`);
    }
    const payload = JSON.stringify({
      sandbox_id: body.sandboxId,
      launch_authentication: Buffer.from(body.launchAuthentication).toString('base64'),
      ...(body.endpoint ? { endpoint: body.endpoint } : {}),
    });
    const { status, text } = await this.exchange(ref, LAUNCH_PATH, 'POST', payload, signal);
    const answer = parseAnswer(text);
    const why = scrub(typeof answer?.error === 'string' ? answer.error : `HTTP ${status}`, secrets);
    switch (status) {
      case 200: {
        const epoch = answer?.auth_epoch;
        if (answer?.accepted !== true || typeof epoch !== 'number') throw new ApiError(Code.INTERNAL, `the bootstrap agent of actor ${who} answered 200 without an accepted auth_epoch`);
        return { authEpoch: epoch };
      }
      case 400:
      case 413:
        throw new ApiError(Code.INVALID_ARGUMENT, `the bootstrap agent of actor ${who} refused the launch authentication as malformed: ${why}`);
      case 403:
        throw new ApiError(Code.PERMISSION_DENIED, `the bootstrap agent of actor ${who} refused the launch authentication: ${why}`);
      case 409:
        throw new ApiError(Code.FAILED_PRECONDITION, `the bootstrap agent of actor ${who} holds newer credentials: ${why}`);
      case 404:
      case 405:
        throw new ApiError(Code.FAILED_PRECONDITION, `actor ${who} answers on port ${this.port} but not as the bootstrap agent (HTTP ${status}); is its command wrapped with the agent?`);
      default:
        throw new ApiError(Code.INTERNAL, `the bootstrap agent of actor ${who} failed: ${why}`);
    }
  }

  /** What the actor's agent holds (never a secret): whether a bundle was accepted, for which sandbox, which epoch. */
  async status(ref: ActorAddress, signal?: AbortSignal): Promise<{ pinned: boolean; sandboxId: string | null; authEpoch: number | null }> {
    const who = checkRef(ref);
    const { status, text } = await this.exchange(ref, LAUNCH_PATH, 'GET', undefined, signal);
    const a = parseAnswer(text);
    if (status !== 200 || !a || typeof a.pinned !== 'boolean') {
      throw new ApiError(Code.FAILED_PRECONDITION, `actor ${who} answers on port ${this.port} but not as the bootstrap agent (HTTP ${status})`);
    }
    return {
      pinned: a.pinned,
      sandboxId: typeof a.sandbox_id === 'string' ? a.sandbox_id : null,
      authEpoch: typeof a.auth_epoch === 'number' ? a.auth_epoch : null,
    };
  }

  /**
   * Delivers a 0.0.x sandbox's identity to an actor whose agent holds its workload (identity mode); the agent
   * starts the workload with it, or confirms it already runs with exactly this one. Throws ApiError:
   * INVALID_ARGUMENT (malformed), PERMISSION_DENIED (the actor serves another sandbox, or the token names
   * another one), FAILED_PRECONDITION (the workload already runs with another name or token; nothing on the
   * port speaks the agent's identity protocol), INTERNAL (the workload could not be started), NOT_FOUND,
   * DEADLINE_EXCEEDED, CANCELLED as deliver(). No message carries the token.
   */
  async deliverIdentity(ref: ActorAddress, id: { sandboxId: string; sandboxName: string; sandboxToken: string }, signal?: AbortSignal): Promise<{ started: boolean }> {
    const who = checkRef(ref);
    if (!id.sandboxId) throw invalid(`identity delivery to actor ${who}: sandbox id is empty`);
    if (id.sandboxToken.length > MAX_TOKEN_CHARS) throw invalid(`identity delivery to actor ${who}: the sandbox token is longer than ${MAX_TOKEN_CHARS} characters`);
    const claimed = id.sandboxToken ? peekClaims(id.sandboxToken)?.sandbox_id : undefined;
    if (claimed !== undefined && claimed !== id.sandboxId) {
      throw invalid(`the sandbox token for actor ${who} was issued for another sandbox than ${JSON.stringify(id.sandboxId)}`);
    }
    const payload = JSON.stringify({ sandbox_id: id.sandboxId, sandbox_name: id.sandboxName, ...(id.sandboxToken ? { sandbox_token: id.sandboxToken } : {}) });
    const { status, text } = await this.exchange(ref, IDENTITY_PATH, 'POST', payload, signal);
    const answer = parseAnswer(text);
    const why = scrub(typeof answer?.error === 'string' ? answer.error : `HTTP ${status}`, [id.sandboxToken]);
    switch (status) {
      case 200:
        if (answer?.accepted !== true) throw new ApiError(Code.INTERNAL, `the bootstrap agent of actor ${who} answered 200 without accepting the identity`);
        return { started: answer.started === true };
      case 400:
      case 413:
        throw new ApiError(Code.INVALID_ARGUMENT, `the bootstrap agent of actor ${who} refused the sandbox identity as malformed: ${why}`);
      case 403:
        throw new ApiError(Code.PERMISSION_DENIED, `the bootstrap agent of actor ${who} refused the sandbox identity: ${why}`);
      case 409:
        throw new ApiError(Code.FAILED_PRECONDITION, `the bootstrap agent of actor ${who} refused the sandbox identity: ${why}`);
      case 404:
      case 405:
        throw new ApiError(
          Code.FAILED_PRECONDITION,
          `actor ${who} answers on port ${this.port} but not as a bootstrap agent holding its workload for an identity (HTTP ${status}); is its template's agent in identity mode (OPENSHELL_SUBSTRATE_DELIVERY=identity)?`,
        );
      default:
        throw new ApiError(Code.INTERNAL, `the bootstrap agent of actor ${who} failed: ${why}`);
    }
  }

  /** What an identity-mode agent holds (never a secret): whether it is pinned, to which sandbox, whether the workload runs. */
  async identityStatus(ref: ActorAddress, signal?: AbortSignal): Promise<{ pinned: boolean; sandboxId: string | null; started: boolean }> {
    const who = checkRef(ref);
    const { status, text } = await this.exchange(ref, IDENTITY_PATH, 'GET', undefined, signal);
    const a = parseAnswer(text);
    if (status !== 200 || !a || typeof a.pinned !== 'boolean' || typeof a.started !== 'boolean') {
      throw new ApiError(Code.FAILED_PRECONDITION, `actor ${who} answers on port ${this.port} but not as a bootstrap agent in identity mode (HTTP ${status})`);
    }
    return { pinned: a.pinned, sandboxId: typeof a.sandbox_id === 'string' ? a.sandbox_id : null, started: a.started };
  }

  /** One request to the agent, retried while the router or the actor cannot take it yet, until the timeout. */
  private async exchange(ref: ActorAddress, path: string, method: 'GET' | 'POST', payload: string | undefined, signal?: AbortSignal): Promise<{ status: number; text: string }> {
    const who = `${ref.atespace}/${ref.actor}`;
    const deadline = Date.now() + this.timeoutMs;
    let last = 'no attempt finished';
    for (let delay = 100; ; delay = Math.min(1000, delay * 2)) {
      if (signal?.aborted) throw new ApiError(Code.CANCELLED, `launch delivery to actor ${who} was cancelled`);
      const left = deadline - Date.now();
      if (left <= 0) break;
      const r = await this.attempt(ref, path, method, payload, left, signal);
      if (r.kind === 'answer') return r;
      last = r.cause;
      if (Date.now() + delay >= deadline) break;
      await sleep(delay, signal);
    }
    if (signal?.aborted) throw new ApiError(Code.CANCELLED, `launch delivery to actor ${who} was cancelled`);
    throw new ApiError(
      Code.DEADLINE_EXCEEDED,
      `the bootstrap agent of actor ${who} did not answer on port ${this.port} within ${Math.round(this.timeoutMs / 1000)} s (last: ${last})`,
    );
  }

  private attempt(ref: ActorAddress, path: string, method: 'GET' | 'POST', payload: string | undefined, budgetMs: number, signal?: AbortSignal): Promise<Attempt> {
    const who = `${ref.atespace}/${ref.actor}`;
    return new Promise<Attempt>((resolve, reject) => {
      let done = false;
      let tunnel: Socket | undefined;
      const finish = (v: Attempt | ApiError) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        tunnel?.destroy();
        connectReq.destroy();
        if (v instanceof ApiError) reject(v);
        else resolve(v);
      };
      const timer = setTimeout(() => finish({ kind: 'retry', cause: 'no answer before the deadline' }), budgetMs);
      const onAbort = () => finish(new ApiError(Code.CANCELLED, `launch delivery to actor ${who} was cancelled`));
      signal?.addEventListener('abort', onAbort, { once: true });

      const connectReq = http.request({
        host: this.router.hostname.replace(/^\[|\]$/g, ''),
        port: this.router.port || 80,
        method: 'CONNECT',
        // As upstream's own example (curl -p -x <router> --proxy-header "ate-target-actor: …" http://<actor>:<port>/):
        // the outer request names the actor, the CONNECT authority the port.
        path: `${ref.actor}:${this.port}`,
        headers: { 'ate-target-actor': who, host: `${ref.actor}:${this.port}` },
        agent: false,
      });
      connectReq.on('error', (e: NodeJS.ErrnoException) => finish({ kind: 'retry', cause: `router ${this.router.host}: ${e.code ?? e.message}` }));
      connectReq.on('connect', (res: http.IncomingMessage, sock: Socket, head: Buffer) => {
        tunnel = sock;
        sock.on('error', () => undefined);
        if (res.statusCode !== 200) {
          const status = res.statusCode ?? 0;
          collect(sock, head, 4096).then((t) => {
            const text = scrub(t) || `HTTP ${status}`;
            if (status === 404) finish(new ApiError(Code.NOT_FOUND, `actor ${who} not found (router: ${text})`));
            else if (status === 400) finish(new ApiError(Code.INTERNAL, `the router refused the tunnel to actor ${who}: ${text}`));
            else if (status === 401 || status === 403) finish(new ApiError(Code.FAILED_PRECONDITION, `the router refused access to actor ${who}: ${text}`));
            // 502 (not accepting yet), 503 (cannot resume now), 504 (budget spent), others: try again.
            else finish({ kind: 'retry', cause: `router answered ${status}: ${text}` });
          });
          return;
        }
        if (head.length) sock.unshift(head);
        const headers: http.OutgoingHttpHeaders = { host: 'bootstrap-agent', accept: 'application/json', connection: 'close' };
        if (payload !== undefined) {
          headers['content-type'] = 'application/json';
          headers['content-length'] = Buffer.byteLength(payload);
        }
        const req = http.request({ createConnection: () => sock, method, path, headers });
        req.on('error', (e: NodeJS.ErrnoException) => finish({ kind: 'retry', cause: `tunnel to port ${this.port}: ${e.code ?? e.message}` }));
        req.on('response', (ans: http.IncomingMessage) => {
          const chunks: Buffer[] = [];
          let size = 0;
          ans.on('data', (c: Buffer) => {
            size += c.length;
            if (size <= 16 * 1024) chunks.push(c);
          });
          ans.on('end', () => finish({ kind: 'answer', status: ans.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          ans.on('error', () => finish({ kind: 'retry', cause: 'the answer was cut off' }));
        });
        req.end(payload);
      });
      connectReq.end();
    });
  }
}

/** `<atespace>/<actor>`, both DNS labels (they travel in a header). */
function checkRef(ref: ActorAddress): string {
  if (!isDnsLabel(ref.atespace) || !isDnsLabel(ref.actor)) {
    throw invalid(`launch delivery: actor reference ${JSON.stringify(`${ref.atespace}/${ref.actor}`)} must be two DNS labels`);
  }
  return `${ref.atespace}/${ref.actor}`;
}

function collect(sock: Socket, head: Buffer, max: number): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = head.length ? [head] : [];
    let size = head.length;
    const end = () => resolve(Buffer.concat(chunks).toString('utf8').slice(0, max));
    const t = setTimeout(end, 2000);
    sock.on('data', (c: Buffer) => {
      if (size < max) chunks.push(c);
      size += c.length;
    });
    sock.on('end', () => {
      clearTimeout(t);
      end();
    });
    sock.on('close', () => {
      clearTimeout(t);
      end();
    });
  });
}

function parseAnswer(text: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** What delivery needs of a sandbox record (src/driver/records.ts). The token and the bundle are secrets. */
export interface DeliverableSandbox {
  id: string;
  name: string;
  atespace: string;
  /** The 0.0.x gateway's sandbox token ("" when none was minted). */
  token: string;
  /** The latest v0.1 launch authentication, base64; "" for a 0.0.x sandbox. */
  launch: string;
}

/**
 * Hands a running actor what its sandbox needs from the driver: the v0.1 launch authentication when the
 * sandbox has one, else its 0.0.x identity (id, name, token). The actor is `<atespace>/<sandbox id>`.
 */
export async function deliverToSandbox(r: DeliverableSandbox, o: LaunchDeliveryOptions & { endpoint?: string }, signal?: AbortSignal): Promise<void> {
  const d = new LaunchDelivery(o);
  const ref = { atespace: r.atespace, actor: r.id };
  if (r.launch) {
    await d.deliver(ref, { sandboxId: r.id, launchAuthentication: Buffer.from(r.launch, 'base64'), endpoint: o.endpoint || undefined }, signal);
    return;
  }
  await d.deliverIdentity(ref, { sandboxId: r.id, sandboxName: r.name, sandboxToken: r.token }, signal);
}
