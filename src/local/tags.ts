// Tags as Substrate v0.4 resources in the local Substrate (shared/reference/substrate-v0.4.md §4.4): an
// atespace-owned, stable name for one external snapshot. CreateTag copies the SUSPENDED source actor's
// current external snapshot into tag-owned storage
// (`<storage_location>/atespaces/<atespace>/tags/<tag uid>`, the source actor's template giving the base),
// so the tag survives the actor suspending again or being deleted; DeleteTag removes that copy. Only
// `scope` may change afterwards (UpdateTag, whole object with uid/version preconditions).
//
// Create is two-phase like upstream's: the tag is stored pending (status.storage_location set, no
// status.snapshot) before the copy and completed after it, so a copy interrupted by a crash leaves a tag
// whose delete collects the partial copy ("To retry a create that failed or timed out, delete the tag first").
import type Database from 'better-sqlite3';
import * as pb from '../gen/ateapi.js';
import { aborted, alreadyExists, failedPrecondition, invalid, messageOf, notFound } from '../common/errors.js';
import { logger } from '../common/log.js';
import type { ControlApi } from './api.js';
import { bumped, checkDeleteOptions, checkUpdatePreconditions, decodePageToken, newMetadata, pageSizeOf } from './meta.js';
import type { SnapshotStore } from './snapshots.js';
import { ResourceTable } from './table.js';
import { dnsLabelMessages } from '../common/dns.js';

const log = logger('local.tags');

export interface TagsOptions {
  db: Database.Database;
  api: ControlApi;
  snapshots: SnapshotStore;
  now?: () => Date;
}

const refText = (r: { atespace: string; name: string }) => `${r.atespace}/${r.name}`;

function fail(errs: string[]): never {
  throw invalid(errs.length === 1 ? errs[0]! : `[${errs.join(', ')}]`);
}

function shortName(errs: string[], path: string, v: string) {
  if (!v) errs.push(`${path}: Required value`);
  else for (const m of dnsLabelMessages(v)) errs.push(`${path}: Invalid value: ${JSON.stringify(v)}: ${m}`);
}

function objectRef(errs: string[], path: string, r: pb.ObjectRef | undefined) {
  if (!r) return errs.push(`${path}: Required value`);
  shortName(errs, `${path}.atespace`, r.atespace);
  shortName(errs, `${path}.name`, r.name);
}

function scopeErrors(errs: string[], path: string, s: pb.TagScope) {
  if (s === pb.TagScope.TAG_SCOPE_UNSPECIFIED) errs.push(`${path}: Required value`);
  else if (s < 1) errs.push(`${path}: Invalid value: ${s}: must be greater than or equal to 1`);
  else if (s > 2) errs.push(`${path}: Invalid value: ${s}: must be less than or equal to 2`);
}

function requireRef(path: string, r: pb.ObjectRef | undefined): pb.ObjectRef {
  const errs: string[] = [];
  objectRef(errs, path, r);
  if (errs.length) fail(errs);
  return r!;
}

export class Tags {
  private readonly table: ResourceTable<pb.Tag>;
  private readonly api: ControlApi;
  private readonly snapshots: SnapshotStore;
  private readonly now: () => Date;

  constructor(opts: TagsOptions) {
    this.table = new ResourceTable(opts.db, 'tags', pb.Tag);
    this.api = opts.api;
    this.snapshots = opts.snapshots;
    this.now = opts.now ?? (() => new Date());
  }

  async createTag(r: pb.CreateTagRequest): Promise<pb.Tag> {
    const t = r.tag;
    if (!t) throw invalid('tag: Required value');
    const errs: string[] = [];
    if (!t.metadata) errs.push('tag.metadata: Required value');
    else {
      shortName(errs, 'tag.metadata.atespace', t.metadata.atespace);
      shortName(errs, 'tag.metadata.name', t.metadata.name);
    }
    scopeErrors(errs, 'tag.scope', t.scope);
    objectRef(errs, 'tag.source_actor', t.sourceActor);
    if (t.metadata?.atespace && t.sourceActor?.atespace && t.metadata.atespace !== t.sourceActor.atespace) {
      errs.push(`tag.metadata.atespace: Invalid value: ${JSON.stringify(t.metadata.atespace)}: must match tag.source_actor.atespace (${JSON.stringify(t.sourceActor.atespace)})`);
    }
    if (errs.length) fail(errs);
    const { atespace, name } = t.metadata!;
    const src = t.sourceActor!;
    if (this.table.get(atespace, name)) throw alreadyExists(`Tag ${atespace}/${name} already exists`);

    // The source: a SUSPENDED actor holding an external snapshot, and its template's storage location.
    const actor = await this.api.getActor({ actor: src });
    const state = actor.status?.state ?? pb.ActorState.ACTOR_STATE_UNSPECIFIED;
    if (state !== pb.ActorState.ACTOR_STATE_SUSPENDED) {
      throw failedPrecondition(`Actor ${refText(src)} must be ${pb.actorStateToJSON(pb.ActorState.ACTOR_STATE_SUSPENDED)} to be tagged (got: ${pb.actorStateToJSON(state)}); suspend it first`);
    }
    const snap = actor.status?.externalSnapshot;
    if (!snap?.snapshotUri) {
      throw failedPrecondition(`Actor ${refText(src)} has no external snapshot to tag: it has not been suspended since it was created without one; resume and suspend it first`);
    }
    const tref = actor.actorTemplate;
    if (!tref?.name) throw failedPrecondition(`Actor ${refText(src)} names no actor template`);
    let template: pb.ActorTemplate;
    try {
      template = await this.api.getActorTemplate({ actorTemplate: tref });
    } catch (e) {
      throw failedPrecondition(`the actor template ${refText(tref)} of Actor ${refText(src)} cannot be read: ${messageOf(e)}`);
    }
    const storageLocation = template.snapshotConfig?.storageLocation ?? '';
    if (!storageLocation) throw failedPrecondition(`the actor template ${refText(tref)} of Actor ${refText(src)} has no snapshot_config.storage_location`);
    const templateUid = snap.actorTemplateUid || template.metadata?.uid || '';

    // Phase 1: the pending tag (it owns the URI its copy goes to).
    const now = this.now();
    const metadata = newMetadata(atespace, name, now);
    const pending: pb.Tag = {
      metadata,
      scope: t.scope,
      sourceActor: { atespace: src.atespace, name: src.name },
      status: { snapshot: undefined, actorTemplateUid: templateUid, storageLocation },
    };
    if (!this.table.insert(pending)) throw alreadyExists(`Tag ${atespace}/${name} already exists`);

    // Phase 2: the copy, then the completed tag.
    const toUri = this.snapshots.tagSnapshotUri(storageLocation, atespace, metadata.uid);
    try {
      if (!this.snapshots.exists(snap.snapshotUri)) {
        throw failedPrecondition(`the external snapshot ${snap.snapshotUri} of Actor ${refText(src)} is missing from the snapshot store`);
      }
      await this.snapshots.copy(snap.snapshotUri, toUri);
      const done: pb.Tag = {
        ...pending,
        metadata: bumped(metadata, this.now()),
        status: { snapshot: { snapshotUri: toUri, contentScope: snap.contentScope, actorTemplateUid: templateUid }, actorTemplateUid: templateUid, storageLocation },
      };
      this.table.replace(done, metadata.version);
      log.info('tag created', { atespace, name, uid: metadata.uid, source: refText(src) });
      return done;
    } catch (e) {
      await this.snapshots.remove(toUri).catch(() => undefined);
      this.table.remove(atespace, name);
      if (e instanceof Error && !('code' in e && typeof (e as { code: unknown }).code === 'number')) {
        throw failedPrecondition(`copying the snapshot of Actor ${refText(src)} for Tag ${atespace}/${name} failed: ${e.message}`);
      }
      throw e;
    }
  }

  async getTag(r: pb.GetTagRequest): Promise<pb.Tag> {
    const ref = requireRef('tag', r.tag);
    const t = this.table.get(ref.atespace, ref.name);
    if (!t) throw notFound(`Tag ${refText(ref)} not found`);
    return t;
  }

  async listTags(r: pb.ListTagsRequest): Promise<pb.ListTagsResponse> {
    if (r.atespace) {
      const m = dnsLabelMessages(r.atespace);
      if (m.length) throw invalid(`atespace: Invalid value: ${JSON.stringify(r.atespace)}: ${m[0]}`);
    }
    pageSizeOf('page_size', r.pageSize);
    decodePageToken('page_token', 'tags', r.pageToken);
    const page = this.table.page('', r.atespace, r.pageSize, r.pageToken);
    return { tags: page.items, nextPageToken: page.nextPageToken };
  }

  /** Whole-object replace: only `scope` may change; metadata and status are server-owned. */
  async updateTag(r: pb.UpdateTagRequest): Promise<pb.Tag> {
    const t = r.tag;
    if (!t) throw invalid('tag: Required value');
    if (!t.metadata) throw invalid('tag.metadata: Required value');
    const errs: string[] = [];
    shortName(errs, 'tag.metadata.atespace', t.metadata.atespace);
    shortName(errs, 'tag.metadata.name', t.metadata.name);
    if (errs.length) fail(errs);
    const { atespace, name } = t.metadata;
    const stored = this.table.get(atespace, name);
    if (!stored) throw notFound(`Tag ${atespace}/${name} not found`);
    checkUpdatePreconditions('tag', stored.metadata!, t.metadata);
    if (!stored.status?.snapshot?.snapshotUri) throw failedPrecondition(`Tag ${atespace}/${name} is still being created`);
    scopeErrors(errs, 'tag.scope', t.scope);
    const was = stored.sourceActor;
    const now = t.sourceActor;
    if (!now || now.atespace !== was?.atespace || now.name !== was?.name) errs.push('tag.source_actor: Forbidden: field is immutable');
    if (errs.length) fail(errs);
    const next: pb.Tag = { ...stored, scope: t.scope, metadata: bumped(stored.metadata!, this.now()) };
    this.table.replace(next, stored.metadata!.version);
    return next;
  }

  async deleteTag(r: pb.DeleteTagRequest): Promise<pb.Tag> {
    const ref = requireRef('tag', r.tag);
    let t: pb.Tag | undefined;
    for (let i = 0; ; i++) {
      t = this.table.get(ref.atespace, ref.name);
      if (!t) throw notFound(`Tag ${refText(ref)} not found`);
      checkDeleteOptions(`Tag ${refText(ref)}`, t.metadata!, r.options);
      if (this.table.remove(ref.atespace, ref.name, t.metadata!.version)) break;
      if (r.options?.version || i >= 4) throw aborted('concurrent update conflict, please retry');
    }
    const md = t.metadata!;
    // The tag's own copy (also a partial one of a create that never finished).
    const loc = t.status?.storageLocation;
    const uris = new Set<string>();
    if (t.status?.snapshot?.snapshotUri) uris.add(t.status.snapshot.snapshotUri);
    if (loc) uris.add(this.snapshots.tagSnapshotUri(loc, ref.atespace, md.uid));
    for (const u of uris) await this.snapshots.remove(u);
    log.info('tag deleted', { atespace: ref.atespace, name: ref.name, uid: md.uid });
    return t;
  }

  /** Tags in an atespace (an atespace cannot be deleted while it has any). */
  countTags(atespace: string): number {
    return this.table.count(atespace);
  }
}
