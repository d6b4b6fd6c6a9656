// ActorTemplates as Substrate v0.4 resources in the local Substrate (shared/reference/substrate-v0.4.md §4):
// Create/Get/List/Delete (no update: templates are immutable, delete and recreate to change one), the
// cluster-scoped SandboxConfig registry a template names, and the golden-snapshot reconciler that gives each
// template a published golden tag in `ate-golden`.
//
// Golden flow (§4.3), driven only through the Control API, exactly as a client would drive it:
//   ensure atespace ate-golden → CreateActor golden-<template uid> → ResumeActor → record
//   take_golden_snapshot_at (now + warm-up; no warm-up when every container has a wakeup_probe, because
//   ResumeActor already waited for them) → wait → SuspendActor → CreateTag ate-golden/<template uid>
//   (PUBLISHED; the tag owns a copy of the snapshot) → DeleteActor → record golden_tag.
// A crashed golden actor or an unrecoverable failure sets error_message "<Reason>: <detail>" (terminal) and
// removes the golden actor. Transient failures (no free worker, aborted, unavailable) are retried on the
// next pass, up to `maxGoldenAttempts`. The flow is re-entrant: after a restart a golden actor that was
// already suspended past its warm-up is tagged; any other leftover golden actor is deleted and the flow
// starts again.
import { EventEmitter } from 'node:events';
import type Database from 'better-sqlite3';
import * as pb from '../gen/ateapi.js';
import {
  ApiError,
  Code,
  alreadyExists,
  deadlineExceeded,
  failedPrecondition,
  grpcCodeOf,
  invalid,
  messageOf,
  notFound,
} from '../common/errors.js';
import { logger } from '../common/log.js';
import {
  BUILTIN_SANDBOX_CONFIG,
  GOLDEN_ATESPACE,
  type ControlApi,
  type SandboxConfigRegistry,
  type SandboxConfigSpec,
} from './api.js';
import { bumped, checkDeleteOptions, decodePageToken, newMetadata, pageSizeOf } from './meta.js';
import { ResourceTable } from './table.js';
import { applyTemplateDefaults, everyContainerProbed, validateActorTemplate } from './template-validation.js';
import { listImages, resolveImage } from './images.js';
import { dnsLabelMessages, dnsSubdomainMessages } from '../common/dns.js';

const log = logger('local.templates');

// ---------------------------------------------------------------------------------------------------------
// SandboxConfigs (cluster-scoped `ate.dev/v1alpha1` SandboxConfig, addendum §2)

/** Upstream's shipped `gvisor-default` (addendum §2.2). Its assets are recorded, not fetched: locally the runtime is this machine's runsc. */
export const BUILTIN_GVISOR_DEFAULT: Readonly<SandboxConfigSpec> = Object.freeze({
  name: BUILTIN_SANDBOX_CONFIG,
  sandboxClass: 'gvisor',
  pauseImage: 'registry.k8s.io/pause:3.10.2@sha256:f548e0e8e3dc1896ca956272154dde3314e8cc4fde0a57577ee9fa1c63f5baf4',
  assets: {
    amd64: {
      gvisor: {
        url: 'gs://gvisor/releases/nightly/2026-09-02/x86_64/gvisor.tar.zstd',
        sha256: 'd547d81401461fd1c679c5c4fa0a6c2b8ef7dc3c22ce23c9e25dcc4c69cfd06f',
      },
    },
    arm64: {
      gvisor: {
        url: 'gs://gvisor/releases/nightly/2026-09-02/aarch64/gvisor.tar.zstd',
        sha256: 'a64916f9813ce7e4841a30480a599337f7dda07b421c6bf0123db2212aa7d1df',
      },
    },
  },
  builtIn: true,
});

const GVISOR_ASSETS_MSG =
  "a gvisor SandboxConfig must define a 'gvisor' (release tarball) or legacy 'runsc' asset for every architecture under spec.assets";
const MICROVM_ASSETS_MSG =
  'a microvm SandboxConfig must define cloud-hypervisor, virtiofsd, kata-kernel, and kata-image assets for every architecture under spec.assets';
const MICROVM_ASSET_NAMES = ['cloud-hypervisor', 'virtiofsd', 'kata-kernel', 'kata-image'];
const SHA256_RE = /^[a-f0-9]{64}$/;

type Assets = NonNullable<SandboxConfigSpec['assets']>;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Copies a caller's SandboxConfig into fresh objects (null-prototype maps for the asset tables), so nothing
 * the caller sent can reach a prototype, and reports the CRD/VAP validation errors in the API server's words.
 */
function normalizeSandboxConfig(input: unknown): { spec: SandboxConfigSpec; errors: string[] } {
  const errors: string[] = [];
  const o = isRecord(input) ? input : {};
  const name = typeof o.name === 'string' ? o.name : '';
  if (!name) errors.push('metadata.name: Required value: name or generateName is required');
  else for (const m of dnsSubdomainMessages(name)) errors.push(`metadata.name: Invalid value: ${JSON.stringify(name)}: ${m}`);

  const rawClass = o.sandboxClass === undefined || o.sandboxClass === '' ? 'gvisor' : o.sandboxClass;
  let sandboxClass: 'gvisor' | 'microvm' = 'gvisor';
  if (rawClass === 'gvisor' || rawClass === 'microvm') sandboxClass = rawClass;
  else errors.push(`spec.sandboxClass: Unsupported value: ${JSON.stringify(String(rawClass))}: supported values: "gvisor", "microvm"`);

  const pauseImage = typeof o.pauseImage === 'string' && o.pauseImage !== '' ? o.pauseImage : undefined;
  if (o.pauseImage !== undefined && typeof o.pauseImage !== 'string') {
    errors.push(`spec.pauseImage: Invalid value: "${Array.isArray(o.pauseImage) ? 'array' : typeof o.pauseImage}": spec.pauseImage in body must be of type string`);
  }
  if ((sandboxClass === 'gvisor') !== (pauseImage !== undefined)) {
    errors.push('spec: Invalid value: "object": pauseImage is required for gvisor and not allowed for other sandbox classes');
  }
  if (pauseImage !== undefined && !pauseImage.includes('@')) errors.push('spec.pauseImage: Invalid value: "string": All images must include a digest');

  let assets: Assets | undefined;
  if (o.assets !== undefined && o.assets !== null) {
    if (!isRecord(o.assets)) errors.push('spec.assets: Invalid value: "string": spec.assets in body must be of type object');
    else {
      assets = Object.create(null) as Assets;
      for (const [arch, files] of Object.entries(o.assets)) {
        const table = Object.create(null) as Assets[string];
        assets[arch] = table;
        if (!isRecord(files)) {
          errors.push(`spec.assets.${arch}: Invalid value: "string": spec.assets.${arch} in body must be of type object`);
          continue;
        }
        for (const [asset, f] of Object.entries(files)) {
          const p = `spec.assets.${arch}.${asset}`;
          const file = isRecord(f) ? f : {};
          const url = typeof file.url === 'string' ? file.url : undefined;
          const sha256 = typeof file.sha256 === 'string' ? file.sha256 : undefined;
          if (url === undefined) errors.push(`${p}.url: Required value`);
          else if (url.length < 1) errors.push(`${p}.url: Invalid value: "": ${p}.url in body should be at least 1 chars long`);
          if (sha256 === undefined) errors.push(`${p}.sha256: Required value`);
          else if (!SHA256_RE.test(sha256)) errors.push(`${p}.sha256: Invalid value: ${JSON.stringify(sha256)}: ${p}.sha256 in body should match '^[a-f0-9]{64}$'`);
          table[asset] = { url: url ?? '', sha256: sha256 ?? '' };
        }
      }
      const arches = Object.values(assets);
      if (sandboxClass === 'gvisor' && !arches.every((t) => Object.hasOwn(t, 'gvisor') || Object.hasOwn(t, 'runsc'))) {
        errors.push(GVISOR_ASSETS_MSG);
      }
      if (sandboxClass === 'microvm' && !arches.every((t) => MICROVM_ASSET_NAMES.every((n) => Object.hasOwn(t, n)))) {
        errors.push(MICROVM_ASSETS_MSG);
      }
    }
  }
  const spec: SandboxConfigSpec = { name, sandboxClass, ...(pauseImage !== undefined ? { pauseImage } : {}), ...(assets ? { assets } : {}) };
  return { spec, errors };
}

function sameConfig(a: SandboxConfigSpec, b: SandboxConfigSpec): boolean {
  const canon = (c: SandboxConfigSpec) =>
    JSON.stringify({
      name: c.name,
      sandboxClass: c.sandboxClass,
      pauseImage: c.pauseImage ?? null,
      assets: Object.keys(c.assets ?? {})
        .sort()
        .map((arch) => [arch, Object.keys(c.assets![arch]!).sort().map((n) => [n, c.assets![arch]![n]!.url, c.assets![arch]![n]!.sha256])]),
    });
  return canon(a) === canon(b);
}

/**
 * The SandboxConfig registry, persisted in table `sandbox_configs` (name → JSON spec). `gvisor-default` is
 * built in: always present, never replaced by a different spec, never deleted.
 */
export class SandboxConfigs implements SandboxConfigRegistry {
  constructor(private readonly db: Database.Database) {
    db.exec('CREATE TABLE IF NOT EXISTS sandbox_configs (name TEXT PRIMARY KEY, data TEXT NOT NULL)');
  }

  private builtIn(): SandboxConfigSpec {
    const b = normalizeSandboxConfig(BUILTIN_GVISOR_DEFAULT).spec;
    return { ...b, builtIn: true };
  }

  getSandboxConfig(name: string): SandboxConfigSpec | undefined {
    if (name === BUILTIN_SANDBOX_CONFIG) return this.builtIn();
    const r = this.db.prepare('SELECT data FROM sandbox_configs WHERE name = ?').get(name) as { data: string } | undefined;
    return r ? normalizeSandboxConfig(JSON.parse(r.data)).spec : undefined;
  }

  async applySandboxConfig(c: SandboxConfigSpec): Promise<SandboxConfigSpec> {
    const { spec, errors } = normalizeSandboxConfig(c);
    if (errors.length > 0) throw invalid(errors.length === 1 ? errors[0]! : `[${errors.join(', ')}]`);
    if (spec.name === BUILTIN_SANDBOX_CONFIG) {
      if (sameConfig(spec, this.builtIn())) return this.builtIn();
      throw failedPrecondition(`SandboxConfig ${JSON.stringify(spec.name)} is built into the local Substrate and cannot be replaced; apply a config under another name`);
    }
    this.db.prepare('INSERT INTO sandbox_configs (name, data) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET data = excluded.data').run(spec.name, JSON.stringify(spec));
    log.info('sandbox config applied', { name: spec.name, sandboxClass: spec.sandboxClass });
    return spec;
  }

  async listSandboxConfigs(): Promise<SandboxConfigSpec[]> {
    const rows = this.db.prepare('SELECT data FROM sandbox_configs ORDER BY name').all() as Array<{ data: string }>;
    const out = rows.map((r) => normalizeSandboxConfig(JSON.parse(r.data)).spec).filter((s) => s.name !== BUILTIN_SANDBOX_CONFIG);
    return [this.builtIn(), ...out].sort((a, b) => a.name.localeCompare(b.name));
  }

  async deleteSandboxConfig(name: string): Promise<void> {
    if (name === BUILTIN_SANDBOX_CONFIG) {
      throw failedPrecondition(`SandboxConfig ${JSON.stringify(name)} is built into the local Substrate and cannot be deleted`);
    }
    const res = this.db.prepare('DELETE FROM sandbox_configs WHERE name = ?').run(name);
    if (res.changes !== 1) throw notFound(`SandboxConfig ${JSON.stringify(name)} not found`);
  }
}

/** The CRD's lower-case class of a template's SandboxClass ("" when unset), as upstream's SandboxClassString. */
export function sandboxClassString(c: pb.SandboxClass): string {
  return c === pb.SandboxClass.SANDBOX_CLASS_GVISOR ? 'gvisor' : c === pb.SandboxClass.SANDBOX_CLASS_MICROVM ? 'microvm' : '';
}

/** Upstream's ResolveTemplateSandboxConfig: FAILED_PRECONDITION when missing or of another class. */
export function resolveTemplateSandboxConfig(reg: SandboxConfigRegistry, sc: pb.SandboxConfig): SandboxConfigSpec {
  const name = sc.configName;
  const cfg = reg.getSandboxConfig(name);
  if (!cfg) throw failedPrecondition(`SandboxConfig ${JSON.stringify(name)} not found`);
  const cls = sandboxClassString(sc.sandboxClass);
  if (cfg.sandboxClass !== cls) {
    throw failedPrecondition(`SandboxConfig ${JSON.stringify(name)} has class ${JSON.stringify(cfg.sandboxClass)} but sandbox_config.sandbox_class is ${JSON.stringify(cls)}`);
  }
  return cfg;
}

// ---------------------------------------------------------------------------------------------------------
// Local images

/**
 * How a template's image references meet this machine's images (src/local/images.ts). Local rule: a
 * container image (or image volume) must be a local image pinned by digest, `local/<name>@sha256:<hex>`, the
 * hex being the digest of its root filesystem; as a local convenience the bare `local/<name>` is accepted on
 * create and pinned to the newest build of that name, and the stored template carries the pinned reference.
 */
export interface TemplateImageResolver {
  /** The pinned reference for `ref` (`ref` itself when already pinned); throws FAILED_PRECONDITION when it cannot run here. */
  resolve(ref: string): Promise<string>;
}

const BARE_LOCAL = /^local\/([a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?)$/;

export function localImageResolver(stateDir: string): TemplateImageResolver {
  return {
    async resolve(ref: string): Promise<string> {
      const bare = BARE_LOCAL.exec(ref);
      if (bare) {
        const builds = (await listImages(stateDir)).filter((i) => i.name === bare[1]);
        const newest = builds.sort((a, b) => b.createdAt.localeCompare(a.createdAt))[0];
        if (!newest) {
          const refs = (await listImages(stateDir)).map((i) => i.ref);
          throw failedPrecondition(`image ${JSON.stringify(ref)} is not built on this machine; ${refs.length ? `available: ${refs.join(', ')}` : 'no images are built yet'}`);
        }
        ref = newest.ref;
      }
      try {
        await resolveImage(stateDir, ref);
      } catch (e) {
        throw failedPrecondition(messageOf(e));
      }
      return ref;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Templates

export interface TemplatesOptions {
  db: Database.Database;
  api: ControlApi;
  sandboxConfigs: SandboxConfigRegistry;
  /** Full reconcile interval (upstream `--template-resync-interval`, default 20 s, minimum 250 ms). Creates are event-driven. */
  resyncIntervalMs?: number;
  /** Golden warm-up when not every container has a wakeup_probe (upstream ~20 s). */
  goldenWarmupMs?: number;
  /** Transient golden-flow failures tolerated before the template fails terminally. */
  maxGoldenAttempts?: number;
  /** Image checks against this machine's images (see localImageResolver); none → references are only validated. */
  images?: TemplateImageResolver;
  now?: () => Date;
}

const GOLDEN_PREFIX = 'golden-';
/** The golden actor's name for a template uid. */
export const goldenActorName = (templateUid: string) => `${GOLDEN_PREFIX}${templateUid}`;

/** A terminal golden-flow failure ("<Reason>: <detail>"). */
class GoldenFailure extends Error {
  constructor(
    readonly reason: 'GoldenActorCrashed' | 'GoldenSnapshotFailed',
    detail: string,
  ) {
    super(`${reason}: ${detail}`);
  }
}

/** The template was deleted (or replaced under its name) while its golden flow ran. */
class TemplateGone extends Error {}

/** Codes retried on a later pass (NOT_FOUND: the golden actor vanished under the flow; it is created again). */
const TRANSIENT = new Set<number>([
  Code.UNAVAILABLE,
  Code.RESOURCE_EXHAUSTED,
  Code.ABORTED,
  Code.DEADLINE_EXCEEDED,
  Code.CANCELLED,
  Code.INTERNAL,
  Code.UNKNOWN,
  Code.NOT_FOUND,
]);

const ref = (atespace: string, name: string): pb.ObjectRef => ({ atespace, name });
/** Metadata of a resource the reconciler asks another module to create (the server assigns the rest). */
const reqMeta = (atespace: string, name: string): pb.ResourceMetadata => ({ atespace, name, uid: '', version: 0 });
const refText = (r: { atespace: string; name: string }) => `${r.atespace}/${r.name}`;

function requireRef(path: string, r: pb.ObjectRef | undefined): pb.ObjectRef {
  if (!r) throw invalid(`${path}: Required value`);
  const errs: string[] = [];
  if (!r.atespace) errs.push(`${path}.atespace: Required value`);
  else for (const m of dnsLabelMessages(r.atespace)) errs.push(`${path}.atespace: Invalid value: ${JSON.stringify(r.atespace)}: ${m}`);
  if (!r.name) errs.push(`${path}.name: Required value`);
  else for (const m of dnsLabelMessages(r.name)) errs.push(`${path}.name: Invalid value: ${JSON.stringify(r.name)}: ${m}`);
  if (errs.length) throw invalid(errs.length === 1 ? errs[0]! : `[${errs.join(', ')}]`);
  return r;
}

function isCode(e: unknown, code: number): boolean {
  return grpcCodeOf(e) === code;
}

export class Templates {
  private readonly table: ResourceTable<pb.ActorTemplate>;
  private readonly api: ControlApi;
  private readonly sandboxConfigs: SandboxConfigRegistry;
  private readonly resyncMs: number;
  private readonly warmupMs: number;
  private readonly maxAttempts: number;
  private readonly images?: TemplateImageResolver;
  private readonly now: () => Date;
  private readonly events = new EventEmitter();
  /** Golden flows in progress, by template uid. */
  private readonly flows = new Map<string, Promise<void>>();
  private readonly attempts = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private abort: AbortController | undefined;
  private started = false;
  /** Flows started since start() that have not yet seen the golden actor (restart recovery applies to them). */
  private readonly recovered = new Set<string>();

  constructor(opts: TemplatesOptions) {
    this.table = new ResourceTable(opts.db, 'actor_templates', pb.ActorTemplate);
    this.api = opts.api;
    this.sandboxConfigs = opts.sandboxConfigs;
    this.resyncMs = Math.max(250, opts.resyncIntervalMs ?? 20_000);
    this.warmupMs = Math.max(0, opts.goldenWarmupMs ?? 20_000);
    this.maxAttempts = Math.max(1, opts.maxGoldenAttempts ?? 5);
    this.images = opts.images;
    this.now = opts.now ?? (() => new Date());
    this.events.setMaxListeners(0);
  }

  // ---- RPCs ------------------------------------------------------------------------------------------------

  async createActorTemplate(r: pb.CreateActorTemplateRequest): Promise<pb.ActorTemplate> {
    if (!r.actorTemplate) throw invalid('actor_template: Required value');
    // Status and server-assigned metadata are ignored on input; defaults are applied before validation.
    let t = applyTemplateDefaults({ ...r.actorTemplate, status: undefined });
    if (this.images) t = await this.pinBareLocalImages(t);
    validateActorTemplate(t);
    const md = t.metadata!;
    resolveTemplateSandboxConfig(this.sandboxConfigs, t.sandboxConfig!);
    if (this.images) await this.checkImages(t);
    await this.api.getAtespace({ atespace: ref('', md.atespace) });
    const out: pb.ActorTemplate = { ...t, metadata: newMetadata(md.atespace, md.name, this.now()), status: { goldenSnapshotStatus: undefined } };
    if (!this.table.insert(out)) throw alreadyExists(`ActorTemplate ${refText(md)} already exists`);
    log.info('actor template created', { atespace: md.atespace, name: md.name, uid: out.metadata!.uid });
    this.kick();
    return out;
  }

  async getActorTemplate(r: pb.GetActorTemplateRequest): Promise<pb.ActorTemplate> {
    const at = requireRef('actor_template', r.actorTemplate);
    const t = this.table.get(at.atespace, at.name);
    if (!t) throw notFound(`ActorTemplate ${refText(at)} not found`);
    return t;
  }

  async listActorTemplates(r: pb.ListActorTemplatesRequest): Promise<pb.ListActorTemplatesResponse> {
    if (r.atespace) {
      const m = dnsLabelMessages(r.atespace);
      if (m.length) throw invalid(`atespace: Invalid value: ${JSON.stringify(r.atespace)}: ${m[0]}`);
    }
    pageSizeOf('page_size', r.pageSize);
    decodePageToken('page_token', 'actor_templates', r.pageToken);
    const page = this.table.page('', r.atespace, r.pageSize, r.pageToken);
    return { actorTemplates: page.items, nextPageToken: page.nextPageToken };
  }

  async deleteActorTemplate(r: pb.DeleteActorTemplateRequest): Promise<pb.ActorTemplate> {
    const at = requireRef('actor_template', r.actorTemplate);
    // The reconciler may write the status between the read and the delete: re-read, unless the caller
    // pinned a version (then the conflict is theirs to see).
    let t: pb.ActorTemplate | undefined;
    for (let i = 0; ; i++) {
      t = this.table.get(at.atespace, at.name);
      if (!t) throw notFound(`ActorTemplate ${refText(at)} not found`);
      checkDeleteOptions(`ActorTemplate ${refText(at)}`, t.metadata!, r.options);
      if (this.table.remove(at.atespace, at.name, t.metadata!.version)) break;
      if (r.options?.version || i >= 4) throw new ApiError(Code.ABORTED, 'concurrent update conflict, please retry');
    }
    const md = t.metadata!;
    log.info('actor template deleted', { atespace: at.atespace, name: at.name, uid: md.uid });
    this.events.emit('change', md.uid);
    // "This also deletes its golden actor and golden snapshot." A flow still running notices the template is
    // gone at its next step and removes what it created after this point.
    await this.deleteGoldenActor(md.uid);
    const tag = t.status?.goldenSnapshotStatus?.goldenTag;
    await this.deleteTagQuietly(tag ?? ref(GOLDEN_ATESPACE, md.uid));
    this.attempts.delete(md.uid);
    return t;
  }

  /** Templates in an atespace (for atespace deletion checks). */
  countTemplates(atespace: string): number {
    return this.table.count(atespace);
  }

  // ---- the golden reconciler -------------------------------------------------------------------------------

  /** Starts the reconciler: a pass now, on every create, and every resync interval. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.abort = new AbortController();
    this.recovered.clear();
    for (const t of this.pending()) this.recovered.add(t.metadata!.uid);
    this.timer = setInterval(() => this.reconcile(), this.resyncMs);
    this.timer.unref?.();
    this.reconcile();
  }

  /** Stops the reconciler and waits for running flows to reach a stopping point (golden actors are kept for the next start). */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.abort?.abort();
    await Promise.allSettled([...this.flows.values()]);
  }

  /**
   * Resolves with the template once it has a golden tag or a terminal error_message; DEADLINE_EXCEEDED after
   * `timeoutMs`, NOT_FOUND if it is deleted meanwhile.
   */
  async waitGolden(atespace: string, name: string, timeoutMs: number): Promise<pb.ActorTemplate> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const t = this.table.get(atespace, name);
      if (!t) throw notFound(`ActorTemplate ${atespace}/${name} not found`);
      const g = t.status?.goldenSnapshotStatus;
      if (g?.goldenTag || g?.errorMessage) return t;
      const left = deadline - Date.now();
      if (left <= 0) throw deadlineExceeded(`ActorTemplate ${atespace}/${name} has no golden tag after ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.events.off('change', done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 500));
        this.events.on('change', done);
      });
    }
  }

  private pending(): pb.ActorTemplate[] {
    return this.table.all().filter((t) => {
      const g = t.status?.goldenSnapshotStatus;
      return !g?.goldenTag && !g?.errorMessage;
    });
  }

  private kick(): void {
    if (this.started) setImmediate(() => this.reconcile());
  }

  private reconcile(): void {
    if (!this.started) return;
    for (const t of this.pending()) {
      const uid = t.metadata!.uid;
      if (this.flows.has(uid)) continue;
      const p = this.runGolden(t)
        .catch((e) => log.error('golden flow failed unexpectedly', { uid, error: messageOf(e) }))
        .finally(() => this.flows.delete(uid));
      this.flows.set(uid, p);
    }
  }

  private async runGolden(t: pb.ActorTemplate): Promise<void> {
    const md = t.metadata!;
    const uid = md.uid;
    const signal = this.abort!.signal;
    const golden = ref(GOLDEN_ATESPACE, goldenActorName(uid));
    const tagRef = ref(GOLDEN_ATESPACE, uid);
    try {
      await this.goldenSteps(t, golden, tagRef, signal);
      this.attempts.delete(uid);
    } catch (e) {
      if (e instanceof TemplateGone) {
        log.info('template deleted during its golden flow; cleaning up', { uid });
        await this.deleteGoldenActor(uid);
        await this.deleteTagQuietly(tagRef);
        return;
      }
      if (signal.aborted) return; // stopping: resume on the next start
      if (e instanceof GoldenFailure) return this.fail(t, e.message, golden);
      const code = grpcCodeOf(e);
      const n = (this.attempts.get(uid) ?? 0) + 1;
      this.attempts.set(uid, n);
      if (code !== undefined && !TRANSIENT.has(code)) {
        return this.fail(t, `GoldenSnapshotFailed: ${messageOf(e)}`, golden);
      }
      if (n >= this.maxAttempts) {
        return this.fail(t, `GoldenSnapshotFailed: ${messageOf(e)} (gave up after ${n} attempts)`, golden);
      }
      log.warn('golden flow will be retried', { uid, attempt: n, error: messageOf(e) });
      const backoff = Math.min(this.resyncMs, 250 * 2 ** n);
      setTimeout(() => this.reconcile(), backoff).unref?.();
    }
  }

  private async goldenSteps(t: pb.ActorTemplate, golden: pb.ObjectRef, tagRef: pb.ObjectRef, signal: AbortSignal): Promise<void> {
    const md = t.metadata!;
    const uid = md.uid;
    const step = (what: string) => {
      if (signal.aborted) throw new Error('stopping');
      const cur = this.table.get(md.atespace, md.name);
      if (!cur || cur.metadata!.uid !== uid) throw new TemplateGone(what);
      return cur;
    };

    // 1. The golden atespace.
    step('atespace');
    try {
      await this.api.createAtespace({ atespace: { metadata: reqMeta('', GOLDEN_ATESPACE) } });
    } catch (e) {
      if (!isCode(e, Code.ALREADY_EXISTS)) throw e;
    }

    // 2. The golden actor: reuse one left suspended past its warm-up by an earlier run, else start afresh.
    step('golden actor');
    let actor: pb.Actor | undefined;
    try {
      actor = await this.api.getActor({ actor: golden });
    } catch (e) {
      if (!isCode(e, Code.NOT_FOUND)) throw e;
    }
    const takeAt = step('golden actor').status?.goldenSnapshotStatus?.takeGoldenSnapshotAt;
    const readyToTag =
      actor?.status?.state === pb.ActorState.ACTOR_STATE_SUSPENDED &&
      !!actor.status.externalSnapshot?.snapshotUri &&
      takeAt !== undefined &&
      takeAt.getTime() <= this.now().getTime();
    if (actor?.status?.state === pb.ActorState.ACTOR_STATE_CRASHED) {
      throw new GoldenFailure('GoldenActorCrashed', `golden actor ${refText(golden)} crashed: ${actor.status.crash?.message || 'no crash message'}`);
    }
    if (!readyToTag) {
      if (actor && this.recovered.has(uid)) {
        // Left over from a previous run of this process: start its golden actor again.
        await this.api.deleteActor({ actor: golden, anyState: true, options: undefined });
        actor = undefined;
      }
      this.recovered.delete(uid);
      if (!actor) {
        step('create golden actor');
        try {
          await this.api.createActor({
            actor: { metadata: reqMeta(GOLDEN_ATESPACE, golden.name), actorTemplate: ref(md.atespace, md.name), workerSelector: undefined, sourceTag: undefined, status: undefined },
          });
        } catch (e) {
          if (!isCode(e, Code.ALREADY_EXISTS)) throw e;
        }
      }

      // 3. Resume (ResumeActor waits for every wakeup_probe).
      step('resume golden actor');
      try {
        await this.api.resumeActor({ actor: golden });
      } catch (e) {
        await this.throwIfCrashed(golden, e);
        throw e;
      }

      // 4. Record when the snapshot may be taken, then wait for it.
      const cur = step('warm-up');
      const wait = everyContainerProbed(t) ? 0 : this.warmupMs;
      const at = new Date(this.now().getTime() + wait);
      this.writeStatus(cur, (g) => ({ ...g, takeGoldenSnapshotAt: at }));
      await sleep(at.getTime() - this.now().getTime(), signal);

      // 5. Suspend: the actor's external snapshot becomes the golden content.
      step('suspend golden actor');
      let suspended: pb.Actor | undefined;
      try {
        suspended = (await this.api.suspendActor({ actor: golden })).actor;
      } catch (e) {
        await this.throwIfCrashed(golden, e);
        throw e;
      }
      if (suspended?.status?.state === pb.ActorState.ACTOR_STATE_CRASHED) await this.throwIfCrashed(golden, undefined);
    }
    this.recovered.delete(uid);

    // 6. The published tag named after the template uid (the tag owns a copy of the snapshot).
    step('tag golden snapshot');
    try {
      await this.api.createTag({
        tag: { metadata: reqMeta(GOLDEN_ATESPACE, tagRef.name), scope: pb.TagScope.TAG_SCOPE_PUBLISHED, sourceActor: golden, status: undefined },
      });
    } catch (e) {
      if (!isCode(e, Code.ALREADY_EXISTS)) throw e;
      // An earlier run got this far: keep its tag if it is complete and from this golden actor.
      const existing = await this.api.getTag({ tag: tagRef });
      const same = existing.sourceActor?.atespace === golden.atespace && existing.sourceActor?.name === golden.name;
      if (!same || !existing.status?.snapshot?.snapshotUri) {
        await this.deleteTagQuietly(tagRef);
        throw new ApiError(Code.ABORTED, `a stale tag ${refText(tagRef)} was in the way of the golden snapshot; it was removed`);
      }
    }

    // 7. The golden actor is no longer needed; 8. record the tag.
    step('delete golden actor');
    await this.deleteGoldenActor(uid);
    let cur: pb.ActorTemplate;
    try {
      cur = step('record golden tag');
    } catch (e) {
      if (e instanceof TemplateGone) await this.deleteTagQuietly(tagRef);
      throw e;
    }
    this.writeStatus(cur, (g) => ({ ...g, goldenTag: tagRef, errorMessage: '' }));
    log.info('golden snapshot ready', { atespace: md.atespace, name: md.name, tag: refText(tagRef) });
  }

  /** Throws a terminal GoldenActorCrashed when the golden actor is CRASHED (after a failed call). */
  private async throwIfCrashed(golden: pb.ObjectRef, cause: unknown): Promise<void> {
    let a: pb.Actor | undefined;
    try {
      a = await this.api.getActor({ actor: golden });
    } catch {
      return;
    }
    if (a.status?.state === pb.ActorState.ACTOR_STATE_CRASHED) {
      const why = a.status.crash?.message || (cause ? messageOf(cause) : 'no crash message');
      throw new GoldenFailure('GoldenActorCrashed', `golden actor ${refText(golden)} crashed: ${why}`);
    }
  }

  private async fail(t: pb.ActorTemplate, message: string, golden: pb.ObjectRef): Promise<void> {
    const md = t.metadata!;
    log.warn('golden snapshot failed', { atespace: md.atespace, name: md.name, error: message });
    try {
      await this.api.deleteActor({ actor: golden, anyState: true, options: undefined });
    } catch (e) {
      if (!isCode(e, Code.NOT_FOUND)) log.warn('could not delete the golden actor', { actor: refText(golden), error: messageOf(e) });
    }
    // A tag the failed run may have created is not recorded anywhere: remove it too.
    await this.deleteTagQuietly(ref(GOLDEN_ATESPACE, md.uid));
    const cur = this.table.get(md.atespace, md.name);
    if (!cur || cur.metadata!.uid !== md.uid) return;
    this.writeStatus(cur, (g) => ({ ...g, errorMessage: truncate(message, 4096) }));
    this.attempts.delete(md.uid);
  }

  /** Replaces the template's golden status (version++), re-reading on a concurrent write. */
  private writeStatus(t: pb.ActorTemplate, f: (g: pb.GoldenSnapshotStatus) => pb.GoldenSnapshotStatus): void {
    let cur = t;
    for (let i = 0; i < 5; i++) {
      const g = cur.status?.goldenSnapshotStatus ?? { goldenTag: undefined, takeGoldenSnapshotAt: undefined, errorMessage: '' };
      const next: pb.ActorTemplate = { ...cur, metadata: bumped(cur.metadata!, this.now()), status: { goldenSnapshotStatus: f(g) } };
      try {
        this.table.replace(next, cur.metadata!.version);
        this.events.emit('change', cur.metadata!.uid);
        return;
      } catch (e) {
        if (!isCode(e, Code.ABORTED)) throw e;
        const again = this.table.get(cur.metadata!.atespace, cur.metadata!.name);
        if (!again || again.metadata!.uid !== cur.metadata!.uid) throw new TemplateGone('status');
        cur = again;
      }
    }
    throw new ApiError(Code.ABORTED, 'concurrent update conflict, please retry');
  }

  private async deleteGoldenActor(uid: string): Promise<void> {
    const golden = ref(GOLDEN_ATESPACE, goldenActorName(uid));
    try {
      await this.api.deleteActor({ actor: golden, anyState: true, options: undefined });
    } catch (e) {
      if (!isCode(e, Code.NOT_FOUND)) log.warn('could not delete the golden actor', { actor: refText(golden), error: messageOf(e) });
    }
  }

  private async deleteTagQuietly(tag: pb.ObjectRef): Promise<void> {
    try {
      await this.api.deleteTag({ tag, options: undefined });
    } catch (e) {
      if (!isCode(e, Code.NOT_FOUND)) log.warn('could not delete the golden tag', { tag: refText(tag), error: messageOf(e) });
    }
  }

  // ---- local images ----------------------------------------------------------------------------------------

  private async pinBareLocalImages(t: pb.ActorTemplate): Promise<pb.ActorTemplate> {
    const pin = async (r: string) => (BARE_LOCAL.test(r) ? this.images!.resolve(r) : r);
    const containers = await Promise.all(t.containers.map(async (c) => ({ ...c, image: await pin(c.image) })));
    const volumes = await Promise.all(
      t.volumes.map(async (v) => (v.image ? { ...v, image: { reference: await pin(v.image.reference) } } : v)),
    );
    return { ...t, containers, volumes };
  }

  private async checkImages(t: pb.ActorTemplate): Promise<void> {
    for (const c of t.containers) await this.images!.resolve(c.image);
    for (const v of t.volumes) if (v.image) await this.images!.resolve(v.image.reference);
  }
}

function truncate(s: string, max: number): string {
  return Buffer.byteLength(s) <= max ? s : `${Buffer.from(s).subarray(0, max - 3).toString('utf8').replace(/\uFFFD+$/, '')}...`;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0) return signal.aborted ? Promise.reject(new Error('stopping')) : Promise.resolve();
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new Error('stopping'));
    const onAbort = () => {
      clearTimeout(timer);
      reject(new Error('stopping'));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
