// A promise-based client of ateapi.Control at the released Substrate v0.4.0 wire (proto/ateapi.proto, generated
// into src/gen/ateapi.ts; shared/reference/substrate-v0.4.md §2) over @grpc/grpc-js.
//
// Requests are built with the generated `fromPartial`, so only fields the v0.4 proto knows are ever encoded (the
// v0.4 server rejects unknown request fields with INVALID_ARGUMENT). Get/Create/Update/Delete answer the bare
// resource; Suspend/Pause/Resume/Revert keep their response wrappers. Every List is paged (page_size ≤ 1000,
// looping on next_page_token) by the listAll* helpers.
//
// Transport: TLS with a CA bundle (system roots when none is given), an optional mTLS pair, and a TLS
// server-name override (a cluster's certificate names `api.ate-system.svc` while the driver may dial a
// port-forward). Plaintext only for a Unix socket, a loopback local Substrate, or the explicit `api_plaintext`.
//
// Auth (§6): the v0.4 server authenticates EVERY call that arrives over TCP — loopback included — by an mTLS
// client certificate or `authorization: Bearer <JWT>`. So a TCP endpoint with neither a bearer token file nor a
// client certificate is refused here, at construction, with a configuration error. A Unix-socket endpoint is
// the local instance's owner-only socket and needs no token (none is sent). The bearer token is read from its
// file on EVERY attempt (Kubernetes rotates projected tokens), trimmed; an empty or unreadable file is an
// error naming the path. The token itself never appears in an error or a log line.
//
// Deadlines on every attempt: reads are short; resume/suspend/pause/revert get ≥ 30 s (a resume includes
// the wakeup-probe wait, up to the template's timeout). Retries with exponential backoff and full jitter on
// ABORTED (a lease or version conflict: nothing happened) for every call — except version-guarded Updates,
// whose read-modify-write loop re-reads instead — and on UNAVAILABLE only for calls that are safe to repeat
// (reads, and the workflows, which upstream makes re-entrant). RESOURCE_EXHAUSTED
// means no worker has room; it is not retried here (callers report it as "no capacity").
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import * as pb from '../gen/ateapi.js';
import { ApiError, Code, isGrpcError } from '../common/errors.js';
import { isLoopbackTarget, isUnixTarget, type DriverConfig } from '../common/config.js';
import { logger } from '../common/log.js';

const log = logger('substrate.client');

/** The largest page the v0.4 server honours (larger is coerced to this). */
export const MAX_PAGE_SIZE = 1000;

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
  /** Page size of the listAll* helpers (1..1000). */
  pageSize?: number;
  /** Observes every backend call (metrics): method, final gRPC code name, seconds. */
  observe?: (method: string, code: string, seconds: number) => void;
}

type Kind = 'read' | 'write' | 'workflow';
interface MethodPolicy {
  kind: Kind;
  /** Safe to repeat after UNAVAILABLE (the first attempt may have taken effect). */
  idempotent: boolean;
  /**
   * A whole-object replace guarded by metadata.version: re-sending it after ABORTED cannot succeed (the
   * version is stale); the read-modify-write loop re-reads instead.
   */
  guarded?: boolean;
}

const read: MethodPolicy = { kind: 'read', idempotent: true };
const write: MethodPolicy = { kind: 'write', idempotent: false };
const workflow: MethodPolicy = { kind: 'workflow', idempotent: true };
const guarded: MethodPolicy = { kind: 'write', idempotent: false, guarded: true };

/** Every Control RPC this client calls, by the generated client's method name. */
const POLICY: Record<string, MethodPolicy> = {
  getActor: read,
  listActors: read,
  createActor: write,
  // Whole-object replace guarded by metadata.version: a repeat after the first took effect gets ABORTED
  // (stale version), never a double effect; the read-modify-write loop re-reads on ABORTED.
  updateActor: guarded,
  deleteActor: write,
  resumeActor: workflow,
  suspendActor: workflow,
  pauseActor: workflow,
  revertActor: workflow,
  getActorEgressPolicy: read,
  createActorEgressPolicy: write,
  updateActorEgressPolicy: guarded,
  deleteActorEgressPolicy: write,
  createTag: write,
  getTag: read,
  listTags: read,
  updateTag: guarded,
  deleteTag: write,
  listWorkers: read,
  getWorker: read,
  drainWorker: { kind: 'write', idempotent: true },
  listWorkerActorAssignments: read,
  createAtespace: write,
  getAtespace: read,
  listAtespaces: read,
  deleteAtespace: write,
  createActorTemplate: write,
  getActorTemplate: read,
  listActorTemplates: read,
  deleteActorTemplate: write,
};

/** `getActor` → `GetActor` (the RPC name, for metrics and logs). */
function rpcName(method: string): string {
  return method.charAt(0).toUpperCase() + method.slice(1);
}

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

export type ObjectRef = pb.ObjectRef;

export function refOf(atespace: string, name: string): pb.ObjectRef {
  return { atespace, name };
}

/** The object's identity as `atespace/name`. */
export function keyOf(m: { metadata?: pb.ResourceMetadata } | undefined): string {
  return `${m?.metadata?.atespace ?? ''}/${m?.metadata?.name ?? ''}`;
}

function isCode(e: unknown, c: Code): boolean {
  return (e instanceof ApiError && e.code === c) || (isGrpcError(e) && e.code === c);
}

export class SubstrateClient {
  readonly endpoint: string;
  readonly tls: boolean;
  /** How calls are authenticated: 'unix' (owner-only socket), 'bearer', 'mtls' or both. */
  readonly auth: 'unix' | 'bearer' | 'mtls' | 'bearer+mtls';
  private readonly raw: pb.ControlClient;
  private readonly sendToken: boolean;
  private readonly opts: Required<
    Pick<SubstrateClientOptions, 'readTimeoutMs' | 'writeTimeoutMs' | 'workflowTimeoutMs' | 'maxAttempts' | 'backoffBaseMs' | 'backoffMaxMs' | 'pageSize'>
  > &
    SubstrateClientOptions;

  constructor(options: SubstrateClientOptions) {
    this.opts = {
      readTimeoutMs: 10_000,
      writeTimeoutMs: 15_000,
      workflowTimeoutMs: 120_000,
      maxAttempts: 5,
      backoffBaseMs: 100,
      backoffMaxMs: 2_000,
      pageSize: MAX_PAGE_SIZE,
      ...options,
    };
    if (this.opts.workflowTimeoutMs < 30_000) {
      throw new Error('workflowTimeoutMs must be at least 30000 (a resume waits for the wakeup probe, 30 s by default)');
    }
    if (!Number.isInteger(this.opts.pageSize) || this.opts.pageSize < 1 || this.opts.pageSize > MAX_PAGE_SIZE) {
      throw new Error(`pageSize must be an integer from 1 to ${MAX_PAGE_SIZE}`);
    }
    this.endpoint = options.endpoint;
    const unix = isUnixTarget(options.endpoint);
    const loopback = isLoopbackTarget(options.endpoint);
    const plaintext = !!options.plaintext;
    const hasCert = !!options.tlsCertPath;
    const hasKey = !!options.tlsKeyPath;
    if (hasCert !== hasKey) {
      throw new ApiError(Code.FAILED_PRECONDITION, 'mTLS needs both api_tls_cert_path and api_tls_key_path, or neither');
    }
    if (plaintext && hasCert) {
      throw new ApiError(Code.FAILED_PRECONDITION, `an mTLS client certificate (api_tls_cert_path) needs TLS, but the connection to ${options.endpoint} is plaintext; unset api_plaintext or the certificate`);
    }
    const bearer = !!options.bearerTokenPath;
    if (!unix && !bearer && !hasCert) {
      throw new ApiError(
        Code.FAILED_PRECONDITION,
        `no credentials for ateapi at ${options.endpoint}: Substrate v0.4 authenticates every call over TCP (loopback included); set api_bearer_token_path (a token file, e.g. from \`kubectl -n ate-system create token ate-client --audience api.ate-system.svc\`) or api_tls_cert_path + api_tls_key_path (an mTLS client certificate), or use the local Substrate's Unix socket`,
      );
    }
    if (plaintext && !unix && !loopback && !options.allowInsecureRemote) {
      throw new ApiError(
        Code.FAILED_PRECONDITION,
        `refusing a plaintext connection to ${options.endpoint}: set api_plaintext = true to allow it, or configure TLS`,
      );
    }
    this.sendToken = bearer && !unix;
    this.auth = unix ? 'unix' : bearer && hasCert ? 'bearer+mtls' : bearer ? 'bearer' : 'mtls';
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
      const key = hasKey ? readPem(options.tlsKeyPath!, 'TLS client key (api_tls_key_path)') : null;
      const cert = hasCert ? readPem(options.tlsCertPath!, 'TLS client certificate (api_tls_cert_path)') : null;
      creds = grpc.credentials.createSsl(ca, key, cert);
      if (options.tlsServerName) {
        channelOptions['grpc.ssl_target_name_override'] = options.tlsServerName;
        channelOptions['grpc.default_authority'] = options.tlsServerName;
      }
    }
    this.raw = new pb.ControlClient(options.endpoint, creds, channelOptions);
  }

  /** The generated client, for callers that need a method this wrapper does not cover. */
  get generated(): pb.ControlClient {
    return this.raw;
  }

  close(): void {
    this.raw.close();
  }

  private async metadata(): Promise<grpc.Metadata> {
    const md = new grpc.Metadata();
    if (this.sendToken) md.set('authorization', `Bearer ${await readBearerToken(this.opts.bearerTokenPath!)}`);
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
          const retryable = (code === Code.ABORTED && !policy.guarded) || (code === Code.UNAVAILABLE && policy.idempotent);
          if (!retryable || attempt >= this.opts.maxAttempts) throw e;
          const cap = Math.min(this.opts.backoffMaxMs, this.opts.backoffBaseMs * 2 ** (attempt - 1));
          const delay = Math.round(cap / 2 + Math.random() * (cap / 2));
          log.debug('retrying ateapi call', { method: rpcName(method), attempt, code: Code[code!], delayMs: delay });
          await sleep(delay);
        }
      }
    } catch (e) {
      codeName = e instanceof ApiError ? Code[e.code] : isGrpcError(e) ? (Code[e.code] ?? String(e.code)) : 'INTERNAL';
      throw e;
    } finally {
      const secs = Number(process.hrtime.bigint() - started) / 1e9;
      this.opts.observe?.(rpcName(method), codeName, secs);
    }
  }

  /** Runs every page of a List RPC, honouring next_page_token; guards against a server that never ends. */
  private async paged<T, Res extends { nextPageToken: string }>(method: string, build: (pageToken: string) => unknown, items: (r: Res) => T[]): Promise<T[]> {
    const out: T[] = [];
    let token = '';
    const seen = new Set<string>();
    for (let pages = 0; ; pages++) {
      if (pages >= 100_000) throw new ApiError(Code.INTERNAL, `${rpcName(method)} did not finish paging (more than 100000 pages)`);
      const r = await this.call<unknown, Res>(method, build(token));
      out.push(...items(r));
      token = r.nextPageToken;
      if (token === '') return out;
      if (seen.has(token)) throw new ApiError(Code.INTERNAL, `${rpcName(method)} returned the same page token twice`);
      seen.add(token);
    }
  }

  /** De-duplicates resources by atespace/name (a resource changed between pages can appear twice), keeping the highest version. */
  private static latest<T extends { metadata?: pb.ResourceMetadata }>(list: T[]): T[] {
    const byKey = new Map<string, T>();
    for (const x of list) {
      const k = keyOf(x);
      const prev = byKey.get(k);
      if (!prev || (prev.metadata?.version ?? 0) <= (x.metadata?.version ?? 0)) byKey.set(k, x);
    }
    return [...byKey.values()];
  }

  // ------------------------------------------------------------------------------------------------ actors

  async getActor(ref: pb.ObjectRef): Promise<pb.Actor> {
    return this.call('getActor', pb.GetActorRequest.fromPartial({ actor: ref }));
  }

  /** GetActor that answers undefined on NOT_FOUND. */
  async findActor(ref: pb.ObjectRef): Promise<pb.Actor | undefined> {
    try {
      return await this.getActor(ref);
    } catch (e) {
      if (isCode(e, Code.NOT_FOUND)) return undefined;
      throw e;
    }
  }

  /**
   * CreateActor `ref` from the template `template` (an ObjectRef, atespace required). Without `sourceTag` the
   * server freezes the template's golden tag into the actor (or, with no golden tag yet, a cold boot).
   */
  async createActor(req: { actor: pb.ObjectRef; template: pb.ObjectRef; workerSelector?: Record<string, string>; sourceTag?: pb.ObjectRef }): Promise<pb.Actor> {
    const sel = req.workerSelector && Object.keys(req.workerSelector).length > 0 ? { matchLabels: { ...req.workerSelector } } : undefined;
    return this.call(
      'createActor',
      pb.CreateActorRequest.fromPartial({
        actor: { metadata: { atespace: req.actor.atespace, name: req.actor.name }, actorTemplate: req.template, workerSelector: sel, sourceTag: req.sourceTag },
      }),
    );
  }

  /** One UpdateActor: the whole actor (status is server-owned and not sent), with its metadata uid + version as preconditions. */
  async replaceActor(a: pb.Actor): Promise<pb.Actor> {
    if (!a.metadata?.uid || !a.metadata.version) {
      throw new ApiError(Code.INVALID_ARGUMENT, `UpdateActor ${keyOf(a)} needs the metadata.uid and metadata.version read from the server`);
    }
    const body: pb.Actor = { metadata: a.metadata, actorTemplate: a.actorTemplate, workerSelector: a.workerSelector, sourceTag: a.sourceTag };
    return this.call('updateActor', pb.UpdateActorRequest.fromPartial({ actor: body }));
  }

  /**
   * Read-modify-write of the whole actor: reads it, applies `mutate` to a copy, and replaces it with the read
   * uid + version as preconditions; on ABORTED (someone else wrote in between) reads again and re-applies.
   * `mutate` returns false to skip the write (nothing to change).
   */
  async updateActor(ref: pb.ObjectRef, mutate: (a: pb.Actor) => boolean | void): Promise<pb.Actor> {
    for (let attempt = 1; ; attempt++) {
      const cur = await this.getActor(ref);
      const next = pb.Actor.fromPartial(cur);
      if (mutate(next) === false) return cur;
      try {
        return await this.replaceActor(next);
      } catch (e) {
        if (!isCode(e, Code.ABORTED) || attempt >= this.opts.maxAttempts) throw e;
        await sleep(this.opts.backoffBaseMs * attempt);
      }
    }
  }

  /** Replaces the actor's worker selector (empty clears it). */
  async setWorkerSelector(ref: pb.ObjectRef, selector: Record<string, string>): Promise<pb.Actor> {
    return this.updateActor(ref, (a) => {
      a.workerSelector = Object.keys(selector).length > 0 ? { matchLabels: { ...selector } } : undefined;
    });
  }

  async resumeActor(ref: pb.ObjectRef): Promise<pb.ResumeActorResponse> {
    return this.call('resumeActor', pb.ResumeActorRequest.fromPartial({ actor: ref }));
  }

  async suspendActor(ref: pb.ObjectRef): Promise<pb.Actor> {
    const r = await this.call<unknown, pb.SuspendActorResponse>('suspendActor', pb.SuspendActorRequest.fromPartial({ actor: ref }));
    return r.actor ?? (await this.getActor(ref));
  }

  async pauseActor(ref: pb.ObjectRef): Promise<pb.Actor> {
    const r = await this.call<unknown, pb.PauseActorResponse>('pauseActor', pb.PauseActorRequest.fromPartial({ actor: ref }));
    return r.actor ?? (await this.getActor(ref));
  }

  /** RevertActor: back to SUSPENDED at its last external snapshot (from RUNNING, PAUSED or CRASHED). */
  async revertActor(ref: pb.ObjectRef): Promise<pb.Actor> {
    const r = await this.call<unknown, pb.RevertActorResponse>('revertActor', pb.RevertActorRequest.fromPartial({ actor: ref }));
    return r.actor ?? (await this.getActor(ref));
  }

  /** DeleteActor; `anyState` deletes from any state (the server stops it first). Returns the deleted actor. */
  async deleteActor(ref: pb.ObjectRef, o: { anyState?: boolean; uid?: string; version?: number } = {}): Promise<pb.Actor> {
    return this.call(
      'deleteActor',
      pb.DeleteActorRequest.fromPartial({
        actor: ref,
        anyState: !!o.anyState,
        options: o.uid || o.version ? { uid: o.uid ?? '', version: o.version ?? 0 } : undefined,
      }),
    );
  }

  async listActors(req: { atespace?: string; pageSize?: number; pageToken?: string }): Promise<pb.ListActorsResponse> {
    return this.call('listActors', pb.ListActorsRequest.fromPartial({ atespace: req.atespace ?? '', pageSize: req.pageSize ?? 0, pageToken: req.pageToken ?? '' }));
  }

  /** Every actor of `atespace` (all atespaces when empty), every page. */
  async listAllActors(atespace = ''): Promise<pb.Actor[]> {
    const all = await this.paged<pb.Actor, pb.ListActorsResponse>(
      'listActors',
      (pageToken) => pb.ListActorsRequest.fromPartial({ atespace, pageSize: this.opts.pageSize, pageToken }),
      (r) => r.actors,
    );
    return SubstrateClient.latest(all);
  }

  // ------------------------------------------------------------------------------------------ egress policies

  async getActorEgressPolicy(actor: pb.ObjectRef): Promise<pb.EgressPolicy> {
    return this.call('getActorEgressPolicy', pb.GetActorEgressPolicyRequest.fromPartial({ actor }));
  }

  async createActorEgressPolicy(actor: pb.ObjectRef, rules: pb.EgressRule[]): Promise<pb.EgressPolicy> {
    return this.call(
      'createActorEgressPolicy',
      pb.CreateActorEgressPolicyRequest.fromPartial({ actor, egressPolicy: { metadata: { atespace: actor.atespace, name: 'default' }, rules } }),
    );
  }

  /** Read-modify-write of the actor's policy (uid + version preconditions; re-read on ABORTED). */
  async updateActorEgressPolicy(actor: pb.ObjectRef, mutate: (p: pb.EgressPolicy) => boolean | void): Promise<pb.EgressPolicy> {
    for (let attempt = 1; ; attempt++) {
      const cur = await this.getActorEgressPolicy(actor);
      const next = pb.EgressPolicy.fromPartial(cur);
      if (mutate(next) === false) return cur;
      try {
        return await this.call('updateActorEgressPolicy', pb.UpdateActorEgressPolicyRequest.fromPartial({ actor, egressPolicy: next }));
      } catch (e) {
        if (!isCode(e, Code.ABORTED) || attempt >= this.opts.maxAttempts) throw e;
        await sleep(this.opts.backoffBaseMs * attempt);
      }
    }
  }

  async deleteActorEgressPolicy(actor: pb.ObjectRef, o: { uid?: string; version?: number } = {}): Promise<pb.EgressPolicy> {
    return this.call(
      'deleteActorEgressPolicy',
      pb.DeleteActorEgressPolicyRequest.fromPartial({ actor, options: o.uid || o.version ? { uid: o.uid ?? '', version: o.version ?? 0 } : undefined }),
    );
  }

  // ------------------------------------------------------------------------------------------------ tags

  async createTag(tag: { ref: pb.ObjectRef; sourceActor: pb.ObjectRef; scope?: pb.TagScope }): Promise<pb.Tag> {
    return this.call(
      'createTag',
      pb.CreateTagRequest.fromPartial({
        tag: { metadata: { atespace: tag.ref.atespace, name: tag.ref.name }, sourceActor: tag.sourceActor, scope: tag.scope ?? pb.TagScope.TAG_SCOPE_ATESPACE },
      }),
    );
  }

  async getTag(ref: pb.ObjectRef): Promise<pb.Tag> {
    return this.call('getTag', pb.GetTagRequest.fromPartial({ tag: ref }));
  }

  async listAllTags(atespace: string): Promise<pb.Tag[]> {
    const all = await this.paged<pb.Tag, pb.ListTagsResponse>(
      'listTags',
      (pageToken) => pb.ListTagsRequest.fromPartial({ atespace, pageSize: this.opts.pageSize, pageToken }),
      (r) => r.tags,
    );
    return SubstrateClient.latest(all);
  }

  /** Read-modify-write of a tag (uid + version preconditions; re-read on ABORTED). */
  async updateTag(ref: pb.ObjectRef, mutate: (t: pb.Tag) => boolean | void): Promise<pb.Tag> {
    for (let attempt = 1; ; attempt++) {
      const cur = await this.getTag(ref);
      const next = pb.Tag.fromPartial(cur);
      if (mutate(next) === false) return cur;
      try {
        return await this.call('updateTag', pb.UpdateTagRequest.fromPartial({ tag: next }));
      } catch (e) {
        if (!isCode(e, Code.ABORTED) || attempt >= this.opts.maxAttempts) throw e;
        await sleep(this.opts.backoffBaseMs * attempt);
      }
    }
  }

  async deleteTag(ref: pb.ObjectRef, o: { uid?: string; version?: number } = {}): Promise<pb.Tag> {
    return this.call('deleteTag', pb.DeleteTagRequest.fromPartial({ tag: ref, options: o.uid || o.version ? { uid: o.uid ?? '', version: o.version ?? 0 } : undefined }));
  }

  // ------------------------------------------------------------------------------------------------ workers

  async listAllWorkers(): Promise<pb.Worker[]> {
    const all = await this.paged<pb.Worker, pb.ListWorkersResponse>(
      'listWorkers',
      (pageToken) => pb.ListWorkersRequest.fromPartial({ pageSize: this.opts.pageSize, pageToken }),
      (r) => r.workers,
    );
    return SubstrateClient.latest(all);
  }

  /** @deprecated name kept for callers of the June client: every worker, every page. */
  async listWorkers(): Promise<pb.Worker[]> {
    return this.listAllWorkers();
  }

  async getWorker(ref: pb.ObjectRef): Promise<pb.Worker> {
    return this.call('getWorker', pb.GetWorkerRequest.fromPartial({ worker: ref }));
  }

  async drainWorker(ref: pb.ObjectRef): Promise<pb.Worker> {
    return this.call('drainWorker', pb.DrainWorkerRequest.fromPartial({ worker: ref }));
  }

  async listAllWorkerActorAssignments(worker: pb.ObjectRef): Promise<pb.ActorAssignment[]> {
    return this.paged<pb.ActorAssignment, pb.ListWorkerActorAssignmentsResponse>(
      'listWorkerActorAssignments',
      (pageToken) => pb.ListWorkerActorAssignmentsRequest.fromPartial({ worker, pageSize: this.opts.pageSize, pageToken }),
      (r) => r.actorAssignments,
    );
  }

  // ------------------------------------------------------------------------------------------------ atespaces

  async createAtespace(name: string): Promise<pb.Atespace> {
    return this.call('createAtespace', pb.CreateAtespaceRequest.fromPartial({ atespace: { metadata: { name } } }));
  }

  /** CreateAtespace that treats ALREADY_EXISTS as success. */
  async ensureAtespace(name: string): Promise<void> {
    try {
      await this.createAtespace(name);
    } catch (e) {
      if (isCode(e, Code.ALREADY_EXISTS)) return;
      throw e;
    }
  }

  async getAtespace(name: string): Promise<pb.Atespace> {
    return this.call('getAtespace', pb.GetAtespaceRequest.fromPartial({ atespace: { atespace: '', name } }));
  }

  async listAllAtespaces(): Promise<pb.Atespace[]> {
    const all = await this.paged<pb.Atespace, pb.ListAtespacesResponse>(
      'listAtespaces',
      (pageToken) => pb.ListAtespacesRequest.fromPartial({ pageSize: this.opts.pageSize, pageToken }),
      (r) => r.atespaces,
    );
    return SubstrateClient.latest(all);
  }

  /** @deprecated name kept for callers of the June client: every atespace, every page. */
  async listAtespaces(): Promise<pb.Atespace[]> {
    return this.listAllAtespaces();
  }

  async deleteAtespace(name: string, o: { uid?: string; version?: number } = {}): Promise<pb.Atespace> {
    return this.call(
      'deleteAtespace',
      pb.DeleteAtespaceRequest.fromPartial({ atespace: { atespace: '', name }, options: o.uid || o.version ? { uid: o.uid ?? '', version: o.version ?? 0 } : undefined }),
    );
  }

  // ------------------------------------------------------------------------------------------ actor templates

  /** CreateActorTemplate (templates are immutable: no update; delete and create again to change one). */
  async createActorTemplate(t: pb.ActorTemplate): Promise<pb.ActorTemplate> {
    // status is server-owned: never sent.
    return this.call('createActorTemplate', pb.CreateActorTemplateRequest.fromPartial({ actorTemplate: { ...t, status: undefined } }));
  }

  async getActorTemplate(ref: pb.ObjectRef): Promise<pb.ActorTemplate> {
    return this.call('getActorTemplate', pb.GetActorTemplateRequest.fromPartial({ actorTemplate: ref }));
  }

  /** GetActorTemplate that answers undefined on NOT_FOUND. */
  async findActorTemplate(ref: pb.ObjectRef): Promise<pb.ActorTemplate | undefined> {
    try {
      return await this.getActorTemplate(ref);
    } catch (e) {
      if (isCode(e, Code.NOT_FOUND)) return undefined;
      throw e;
    }
  }

  async listAllActorTemplates(atespace: string): Promise<pb.ActorTemplate[]> {
    const all = await this.paged<pb.ActorTemplate, pb.ListActorTemplatesResponse>(
      'listActorTemplates',
      (pageToken) => pb.ListActorTemplatesRequest.fromPartial({ atespace, pageSize: this.opts.pageSize, pageToken }),
      (r) => r.actorTemplates,
    );
    return SubstrateClient.latest(all);
  }

  /** DeleteActorTemplate (also deletes its golden tag and any unfinished golden actor, upstream). */
  async deleteActorTemplate(ref: pb.ObjectRef, o: { uid?: string; version?: number } = {}): Promise<pb.ActorTemplate> {
    return this.call(
      'deleteActorTemplate',
      pb.DeleteActorTemplateRequest.fromPartial({ actorTemplate: ref, options: o.uid || o.version ? { uid: o.uid ?? '', version: o.version ?? 0 } : undefined }),
    );
  }
}

/** Where and how to reach ateapi, resolved from config and (when present) a local Substrate. */
export interface ApiTarget {
  endpoint: string;
  plaintext: boolean;
  /** 'config' | 'local' — where the endpoint came from. */
  origin: 'config' | 'local';
  /** A bearer token file the local Substrate issued for its TCP endpoint (used when api_bearer_token_path is unset). */
  bearerTokenPath?: string;
}

/**
 * Resolves the ateapi endpoint: the configured api_endpoint, or the endpoint of a local Substrate (embedded,
 * or found through <state-dir>/local.json). Plaintext is allowed for a Unix socket or a loopback local
 * Substrate, or when api_plaintext is set. `localTokenPath`: the local Substrate's token file for its TCP
 * endpoint, if it has one (a Unix socket needs none).
 */
export function resolveApiTarget(cfg: DriverConfig, localEndpoint?: string, localTls = false, localTokenPath?: string): ApiTarget {
  if (cfg.apiEndpoint) {
    const unix = isUnixTarget(cfg.apiEndpoint);
    // The configured endpoint is the running local Substrate's own loopback address: plaintext as well.
    const isLocal = !!localEndpoint && !localTls && localEndpoint === cfg.apiEndpoint && isLoopbackTarget(localEndpoint);
    return {
      endpoint: cfg.apiEndpoint,
      plaintext: cfg.apiPlaintext || unix || isLocal,
      origin: isLocal ? 'local' : 'config',
      ...(isLocal && localTokenPath ? { bearerTokenPath: localTokenPath } : {}),
    };
  }
  if (localEndpoint) {
    const ok = !localTls && (isUnixTarget(localEndpoint) || isLoopbackTarget(localEndpoint));
    return { endpoint: localEndpoint, plaintext: ok || cfg.apiPlaintext, origin: 'local', ...(localTokenPath ? { bearerTokenPath: localTokenPath } : {}) };
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
    bearerTokenPath: cfg.apiBearerTokenPath || target.bearerTokenPath || undefined,
    observe,
  });
}
