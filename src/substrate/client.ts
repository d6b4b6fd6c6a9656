// A promise-based client of ateapi.Control (pinned upstream, shared/reference/ateapi.md) over @grpc/grpc-js
// with the generated ControlClient.
//
// Transport: TLS with a CA bundle (system roots when none is given), an optional mTLS pair, and a TLS
// server-name override (a real cluster's certificate names `api.ate-system.svc` while the driver dials a
// port-forward or a node address). Plaintext only when configured (`api_plaintext`) or for a Unix socket /
// a loopback local Substrate.
//
// Auth: the bearer token is read from its file on EVERY call (Kubernetes rotates projected tokens), trimmed,
// and sent as `authorization: Bearer <token>`. An empty or unreadable file is an error naming the path. The
// token itself never appears in an error or a log line.
//
// Deadlines on every call: reads are short; resume/suspend/pause get ≥ 30 s because the server's workflow
// runs up to 28 s. Retries with exponential backoff and full jitter on ABORTED (the per-actor lock, a CAS
// conflict: nothing happened) for every call, and on UNAVAILABLE only for calls that are safe to repeat
// (reads, UpdateActor which replaces the selector wholesale, and the resume/suspend/pause workflows, which
// upstream designs for "re-issue the same verb to continue").
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import {
  type Actor,
  type ActorRef,
  type Atespace,
  ControlClient,
  type ListActorsResponse,
  type Selector,
  type Worker,
} from '../gen/june/ateapi.js';
import { ApiError, Code, isGrpcError } from '../common/errors.js';
import { isLoopbackTarget, isUnixTarget, type DriverConfig } from '../common/config.js';
import { logger } from '../common/log.js';

const log = logger('substrate.client');

export interface SubstrateClientOptions {
  /** grpc-js target: 'unix:/abs/path', 'host:port', 'dns:///host:port'. */
  endpoint: string;
  /** Dial without TLS. Refused for non-loopback TCP targets unless `allowInsecureRemote`. */
  plaintext?: boolean;
  /** Set only from the explicit `api_plaintext = true` config. */
  allowInsecureRemote?: boolean;
  tlsCaPath?: string;
  tlsCertPath?: string;
  tlsKeyPath?: string;
  tlsServerName?: string;
  bearerTokenPath?: string;
  /** Per-attempt deadlines (ms). */
  readTimeoutMs?: number;
  writeTimeoutMs?: number;
  workflowTimeoutMs?: number;
  /** Retry policy. */
  maxAttempts?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Observes every backend call (metrics): method, final gRPC code name, seconds. */
  observe?: (method: string, code: string, seconds: number) => void;
}

type Kind = 'read' | 'write' | 'workflow';
interface MethodPolicy {
  kind: Kind;
  /** Safe to repeat after UNAVAILABLE (the first attempt may have taken effect). */
  idempotent: boolean;
}

const POLICY: Record<string, MethodPolicy> = {
  getActor: { kind: 'read', idempotent: true },
  listActors: { kind: 'read', idempotent: true },
  listWorkers: { kind: 'read', idempotent: true },
  getAtespace: { kind: 'read', idempotent: true },
  listAtespaces: { kind: 'read', idempotent: true },
  updateActor: { kind: 'write', idempotent: true },
  createActor: { kind: 'write', idempotent: false },
  deleteActor: { kind: 'write', idempotent: false },
  createAtespace: { kind: 'write', idempotent: false },
  deleteAtespace: { kind: 'write', idempotent: false },
  resumeActor: { kind: 'workflow', idempotent: true },
  suspendActor: { kind: 'workflow', idempotent: true },
  pauseActor: { kind: 'workflow', idempotent: true },
};

const RPC_NAME: Record<string, string> = {
  getActor: 'GetActor',
  listActors: 'ListActors',
  listWorkers: 'ListWorkers',
  getAtespace: 'GetAtespace',
  listAtespaces: 'ListAtespaces',
  updateActor: 'UpdateActor',
  createActor: 'CreateActor',
  deleteActor: 'DeleteActor',
  createAtespace: 'CreateAtespace',
  deleteAtespace: 'DeleteAtespace',
  resumeActor: 'ResumeActor',
  suspendActor: 'SuspendActor',
  pauseActor: 'PauseActor',
};

/** Reads the bearer token file; errors name the path, never the content. */
export async function readBearerToken(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    throw new ApiError(Code.FAILED_PRECONDITION, `cannot read the ateapi bearer token file ${path} (${code}); check api_bearer_token_path`);
  }
  const token = text.trim();
  if (token === '') {
    throw new ApiError(Code.FAILED_PRECONDITION, `the ateapi bearer token file ${path} is empty; check api_bearer_token_path`);
  }
  return token;
}

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ApiError(Code.FAILED_PRECONDITION, `cannot read the ${what} file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class SubstrateClient {
  readonly endpoint: string;
  readonly tls: boolean;
  private readonly raw: ControlClient;
  private readonly opts: Required<
    Pick<SubstrateClientOptions, 'readTimeoutMs' | 'writeTimeoutMs' | 'workflowTimeoutMs' | 'maxAttempts' | 'backoffBaseMs' | 'backoffMaxMs'>
  > &
    SubstrateClientOptions;

  constructor(options: SubstrateClientOptions) {
    this.opts = {
      readTimeoutMs: 10_000,
      writeTimeoutMs: 15_000,
      workflowTimeoutMs: 35_000,
      maxAttempts: 5,
      backoffBaseMs: 100,
      backoffMaxMs: 2_000,
      ...options,
    };
    if (this.opts.workflowTimeoutMs < 30_000) {
      throw new Error('workflowTimeoutMs must be at least 30000 (the server workflow runs up to 28 s)');
    }
    this.endpoint = options.endpoint;
    const unix = isUnixTarget(options.endpoint);
    const loopback = isLoopbackTarget(options.endpoint);
    const plaintext = !!options.plaintext;
    if (plaintext && !unix && !loopback && !options.allowInsecureRemote) {
      throw new ApiError(
        Code.FAILED_PRECONDITION,
        `refusing a plaintext connection to ${options.endpoint}: set api_plaintext = true to allow it, or configure TLS`,
      );
    }
    this.tls = !plaintext;
    const channelOptions: grpc.ChannelOptions = {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.keepalive_time_ms': 30_000,
    };
    let creds: grpc.ChannelCredentials;
    if (plaintext) {
      creds = grpc.credentials.createInsecure();
    } else {
      const ca = options.tlsCaPath ? readPem(options.tlsCaPath, 'TLS CA bundle (api_tls_ca_path)') : null;
      const hasCert = !!options.tlsCertPath;
      const hasKey = !!options.tlsKeyPath;
      if (hasCert !== hasKey) {
        throw new ApiError(Code.FAILED_PRECONDITION, 'mTLS needs both api_tls_cert_path and api_tls_key_path, or neither');
      }
      const key = hasKey ? readPem(options.tlsKeyPath!, 'TLS client key (api_tls_key_path)') : null;
      const cert = hasCert ? readPem(options.tlsCertPath!, 'TLS client certificate (api_tls_cert_path)') : null;
      creds = grpc.credentials.createSsl(ca, key, cert);
      if (options.tlsServerName) {
        channelOptions['grpc.ssl_target_name_override'] = options.tlsServerName;
        channelOptions['grpc.default_authority'] = options.tlsServerName;
      }
    }
    this.raw = new ControlClient(options.endpoint, creds, channelOptions);
  }

  /** The generated client, for callers that need a method this wrapper does not cover. */
  get generated(): ControlClient {
    return this.raw;
  }

  close(): void {
    this.raw.close();
  }

  private async metadata(): Promise<grpc.Metadata> {
    const md = new grpc.Metadata();
    if (this.opts.bearerTokenPath) {
      md.set('authorization', `Bearer ${await readBearerToken(this.opts.bearerTokenPath)}`);
    }
    return md;
  }

  private timeoutFor(kind: Kind): number {
    return kind === 'read' ? this.opts.readTimeoutMs : kind === 'write' ? this.opts.writeTimeoutMs : this.opts.workflowTimeoutMs;
  }

  private once<Req, Res>(method: string, req: Req, timeoutMs: number, md: grpc.Metadata): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const fn = (this.raw as unknown as Record<string, Function>)[method]!;
      fn.call(this.raw, req, md, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: Res) => {
        if (err) reject(err);
        else resolve(res);
      });
    });
  }

  /** One logical call: deadline per attempt, retries per policy, observed for metrics. */
  async call<Req, Res>(method: string, req: Req): Promise<Res> {
    const policy = POLICY[method];
    if (!policy) throw new Error(`unknown ateapi method ${method}`);
    const timeout = this.timeoutFor(policy.kind);
    const started = process.hrtime.bigint();
    let attempt = 0;
    let codeName = 'OK';
    try {
      for (;;) {
        attempt++;
        // Token re-read per attempt; a read error is not retried (the file will not fix itself in ms).
        const md = await this.metadata();
        try {
          return await this.once<Req, Res>(method, req, timeout, md);
        } catch (e) {
          const code = isGrpcError(e) ? e.code : undefined;
          const retryable = code === Code.ABORTED || (code === Code.UNAVAILABLE && policy.idempotent);
          if (!retryable || attempt >= this.opts.maxAttempts) throw e;
          const cap = Math.min(this.opts.backoffMaxMs, this.opts.backoffBaseMs * 2 ** (attempt - 1));
          const delay = Math.round(cap / 2 + Math.random() * (cap / 2));
          log.debug('retrying ateapi call', { method: RPC_NAME[method], attempt, code: Code[code!], delayMs: delay });
          await sleep(delay);
        }
      }
    } catch (e) {
      codeName = e instanceof ApiError ? Code[e.code] : isGrpcError(e) ? (Code[e.code] ?? String(e.code)) : 'INTERNAL';
      throw e;
    } finally {
      const secs = Number(process.hrtime.bigint() - started) / 1e9;
      this.opts.observe?.(RPC_NAME[method] ?? method, codeName, secs);
    }
  }

  async getActor(ref: ActorRef): Promise<Actor> {
    const r = await this.call<{ actorRef: ActorRef }, { actor?: Actor }>('getActor', { actorRef: ref });
    return r.actor!;
  }

  /** GetActor that answers undefined on NOT_FOUND. */
  async findActor(ref: ActorRef): Promise<Actor | undefined> {
    try {
      return await this.getActor(ref);
    } catch (e) {
      if (isGrpcError(e) && e.code === Code.NOT_FOUND) return undefined;
      throw e;
    }
  }

  async createActor(req: { actorRef: ActorRef; actorTemplateNamespace: string; actorTemplateName: string; workerSelector?: Selector }): Promise<Actor> {
    const r = await this.call<typeof req, { actor?: Actor }>('createActor', req);
    return r.actor!;
  }

  async updateActor(ref: ActorRef, workerSelector: Record<string, string>): Promise<Actor> {
    const r = await this.call<unknown, { actor?: Actor }>('updateActor', { actorRef: ref, workerSelector: { matchLabels: workerSelector } });
    return r.actor!;
  }

  async resumeActor(ref: ActorRef, boot = false): Promise<Actor> {
    const r = await this.call<unknown, { actor?: Actor }>('resumeActor', { actorRef: ref, boot });
    return r.actor!;
  }

  async suspendActor(ref: ActorRef): Promise<Actor> {
    const r = await this.call<unknown, { actor?: Actor }>('suspendActor', { actorRef: ref });
    return r.actor!;
  }

  async pauseActor(ref: ActorRef): Promise<Actor> {
    const r = await this.call<unknown, { actor?: Actor }>('pauseActor', { actorRef: ref });
    return r.actor!;
  }

  async deleteActor(ref: ActorRef): Promise<void> {
    await this.call('deleteActor', { actorRef: ref });
  }

  async listActors(req: { pageSize?: number; pageToken?: string; atespace?: string }): Promise<ListActorsResponse> {
    return this.call('listActors', { pageSize: req.pageSize ?? 0, pageToken: req.pageToken ?? '', atespace: req.atespace ?? '' });
  }

  /**
   * Every actor (of one atespace, or of all when `atespace` is empty), paging until the token is empty.
   * Pages are soft (ateapi.md §1.7: an item may repeat across pages), so results are de-duplicated by
   * (atespace, name), keeping the highest version.
   */
  async listAllActors(atespace = ''): Promise<Actor[]> {
    const byKey = new Map<string, Actor>();
    let token = '';
    let pages = 0;
    do {
      const page = await this.listActors({ pageSize: 1000, pageToken: token, atespace });
      for (const a of page.actors) {
        const k = `${a.atespace}/${a.actorId}`;
        const prev = byKey.get(k);
        if (!prev || prev.version <= a.version) byKey.set(k, a);
      }
      token = page.nextPageToken;
      if (++pages > 100_000) throw new ApiError(Code.INTERNAL, 'ListActors did not finish paging (more than 100000 pages)');
    } while (token !== '');
    return [...byKey.values()];
  }

  async listWorkers(): Promise<Worker[]> {
    const r = await this.call<unknown, { workers: Worker[] }>('listWorkers', {});
    return r.workers;
  }

  async createAtespace(name: string): Promise<Atespace> {
    const r = await this.call<unknown, { atespace?: Atespace }>('createAtespace', { name });
    return r.atespace!;
  }

  /** CreateAtespace that treats ALREADY_EXISTS as success. */
  async ensureAtespace(name: string): Promise<void> {
    try {
      await this.createAtespace(name);
    } catch (e) {
      if (isGrpcError(e) && e.code === Code.ALREADY_EXISTS) return;
      throw e;
    }
  }

  async getAtespace(name: string): Promise<Atespace> {
    const r = await this.call<unknown, { atespace?: Atespace }>('getAtespace', { name });
    return r.atespace!;
  }

  async listAtespaces(): Promise<Atespace[]> {
    const r = await this.call<unknown, { atespaces: Atespace[] }>('listAtespaces', {});
    return r.atespaces ?? [];
  }

  async deleteAtespace(name: string): Promise<void> {
    await this.call('deleteAtespace', { name });
  }
}

/** Where and how to reach ateapi, resolved from config and (when present) a local Substrate. */
export interface ApiTarget {
  endpoint: string;
  plaintext: boolean;
  /** 'config' | 'local' — where the endpoint came from. */
  origin: 'config' | 'local';
}

/**
 * Resolves the ateapi endpoint: the configured api_endpoint, or the endpoint of a local Substrate (embedded,
 * or found through <state-dir>/local.json). Plaintext is allowed for a Unix socket or a loopback local
 * Substrate, or when api_plaintext is set.
 */
export function resolveApiTarget(cfg: DriverConfig, localEndpoint?: string, localTls = false): ApiTarget {
  if (cfg.apiEndpoint) {
    const unix = isUnixTarget(cfg.apiEndpoint);
    // The configured endpoint is the running local Substrate's own loopback address: plaintext as well.
    const isLocal = !!localEndpoint && !localTls && localEndpoint === cfg.apiEndpoint && isLoopbackTarget(localEndpoint);
    return { endpoint: cfg.apiEndpoint, plaintext: cfg.apiPlaintext || unix || isLocal, origin: isLocal ? 'local' : 'config' };
  }
  if (localEndpoint) {
    const ok = !localTls && (isUnixTarget(localEndpoint) || isLoopbackTarget(localEndpoint));
    return { endpoint: localEndpoint, plaintext: ok || cfg.apiPlaintext, origin: 'local' };
  }
  throw new ApiError(
    Code.FAILED_PRECONDITION,
    'no ateapi endpoint: set api_endpoint (flag --api-endpoint, env OPENSHELL_SUBSTRATE_API_ENDPOINT or the config file), or run a local Substrate (serve --local, or `substrate-driver local serve`)',
  );
}

export function clientFromConfig(cfg: DriverConfig, target: ApiTarget, observe?: SubstrateClientOptions['observe']): SubstrateClient {
  return new SubstrateClient({
    endpoint: target.endpoint,
    plaintext: target.plaintext,
    allowInsecureRemote: cfg.apiPlaintext,
    tlsCaPath: cfg.apiTlsCaPath || undefined,
    tlsCertPath: cfg.apiTlsCertPath || undefined,
    tlsKeyPath: cfg.apiTlsKeyPath || undefined,
    tlsServerName: cfg.apiTlsServerName || undefined,
    bearerTokenPath: cfg.apiBearerTokenPath || undefined,
    observe,
  });
}
