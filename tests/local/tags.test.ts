// Tags of the local Substrate (src/local/tags.ts) on a real SQLite database and a real snapshot store in a
// temporary directory: create from a SUSPENDED actor (the tag owns a copy of the snapshot), get, list, update
// (scope only, with uid/version preconditions), delete (removes the copy).
//
// The actor and atespace RPCs come from StandInControl below, which STANDS IN FOR src/local/actors.ts and
// src/local/atespaces.ts (written in parallel; the same stand-in as tests/local/templates.test.ts). It applies
// the v0.4 rules these tests rely on: a new actor is SUSPENDED without a snapshot, resume → RUNNING, suspend
// from RUNNING writes a new actor-owned external snapshot and deletes the previous one, delete removes the
// actor's own snapshot; it records every call. Templates are the real module (no reconciler started).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pb from '../../src/gen/ateapi.js';
import { Code } from '../../src/common/errors.js';
import { setLogSink } from '../../src/common/log.js';
import type { ControlApi } from '../../src/local/api.js';
import { SnapshotStore } from '../../src/local/snapshots.js';
import { Tags } from '../../src/local/tags.js';
import { SandboxConfigs, Templates } from '../../src/local/templates.js';
import { StandInControl } from './standin-control.js';
import { expectApiError } from './api-error.js';

setLogSink(() => undefined);

const HEX = 'b'.repeat(64);
const IMAGE = `local/node@sha256:${HEX}`;


let dir: string;
let db: Database.Database;
let snapshots: SnapshotStore;
let api: StandInControl;
let tags: Tags;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tags-test-'));
  db = new Database(join(dir, 'state.db'));
  snapshots = new SnapshotStore(dir);
  api = new StandInControl(snapshots);
  tags = new Tags({ db, api, snapshots });
  api.tags = tags;
  api.templates = new Templates({ db, api, sandboxConfigs: new SandboxConfigs(db) });
  for (const name of ['demo', 'other']) await api.createAtespace({ atespace: { metadata: { atespace: '', name, uid: '', version: 0 } } });
  await api.createActorTemplate({
    actorTemplate: pb.ActorTemplate.fromPartial({
      metadata: { atespace: 'demo', name: 'counter' },
      containers: [{ name: 'app', image: IMAGE }],
      snapshotConfig: { storageLocation: 'gs://local-bucket/counter/' },
      sandboxConfig: { sandboxClass: pb.SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' },
    }),
  });
  api.calls.length = 0;
});

afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});


/** An actor of demo/counter, run and suspended once (so it holds its own external snapshot). */
async function suspendedActor(name: string, atespace = 'demo'): Promise<pb.Actor> {
  const ref = { atespace, name };
  await api.createActor({ actor: pb.Actor.fromPartial({ metadata: ref, actorTemplate: { atespace: 'demo', name: 'counter' } }) });
  await api.resumeActor({ actor: ref });
  return (await api.suspendActor({ actor: ref })).actor!;
}

function tagReq(name: string, source: string, scope = pb.TagScope.TAG_SCOPE_ATESPACE, atespace = 'demo'): pb.CreateTagRequest {
  return { tag: pb.Tag.fromPartial({ metadata: { atespace, name }, scope, sourceActor: { atespace, name: source } }) };
}
const content = (uri: string) => readFileSync(join(snapshots.dirOf(uri), 'checkpoint.img'), 'utf8');

describe('CreateTag', () => {
  it('copies the suspended actor\'s snapshot into tag-owned storage', async () => {
    const actor = await suspendedActor('a1');
    const src = actor.status!.externalSnapshot!;
    const tag = await tags.createTag(tagReq('v1', 'a1'));
    const md = tag.metadata!;
    expect(md.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(md.version).toBe(2); // stored pending, then completed after the copy
    expect(tag.scope).toBe(pb.TagScope.TAG_SCOPE_ATESPACE);
    expect(tag.sourceActor).toEqual({ atespace: 'demo', name: 'a1' });
    expect(tag.status).toEqual({
      snapshot: { snapshotUri: `gs://local-bucket/counter/atespaces/demo/tags/${md.uid}`, contentScope: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, actorTemplateUid: src.actorTemplateUid },
      actorTemplateUid: src.actorTemplateUid,
      storageLocation: 'gs://local-bucket/counter/',
    });
    expect(content(tag.status!.snapshot!.snapshotUri)).toBe(content(src.snapshotUri));
    expect(pb.Tag.toJSON(await tags.getTag({ tag: { atespace: 'demo', name: 'v1' } }))).toEqual(pb.Tag.toJSON(tag));
  });

  it('the copy is the tag\'s own: suspending again or deleting the source actor leaves it', async () => {
    const actor = await suspendedActor('a1');
    const first = actor.status!.externalSnapshot!.snapshotUri;
    const tag = await tags.createTag(tagReq('keep', 'a1'));
    const copy = tag.status!.snapshot!.snapshotUri;
    const before = content(copy);
    await api.resumeActor({ actor: { atespace: 'demo', name: 'a1' } });
    await api.suspendActor({ actor: { atespace: 'demo', name: 'a1' } });
    expect(snapshots.exists(first)).toBe(false); // the actor's previous snapshot was deleted by its next suspend
    const deleted = await api.deleteActor({ actor: { atespace: 'demo', name: 'a1' }, anyState: false, options: undefined });
    expect(snapshots.exists(deleted.status!.externalSnapshot!.snapshotUri)).toBe(false); // and its last one on delete
    expect(snapshots.exists(copy)).toBe(true);
    expect(content(copy)).toBe(before);
  });

  it('the source must be SUSPENDED and hold an external snapshot', async () => {
    await suspendedActor('a1');
    await api.resumeActor({ actor: { atespace: 'demo', name: 'a1' } });
    await expectApiError(tags.createTag(tagReq('t', 'a1')), Code.FAILED_PRECONDITION, 'Actor demo/a1 must be ACTOR_STATE_SUSPENDED to be tagged (got: ACTOR_STATE_RUNNING); suspend it first');
    await api.createActor({ actor: pb.Actor.fromPartial({ metadata: { atespace: 'demo', name: 'fresh' }, actorTemplate: { atespace: 'demo', name: 'counter' } }) });
    await expectApiError(tags.createTag(tagReq('t', 'fresh')), Code.FAILED_PRECONDITION, /^Actor demo\/fresh has no external snapshot to tag/);
    await expectApiError(tags.createTag(tagReq('t', 'ghost')), Code.NOT_FOUND, 'Actor demo/ghost not found');
    expect(tags.countTags('demo')).toBe(0);
  });

  it('validates the request with field paths', async () => {
    await expectApiError(tags.createTag(tagReq('t', 'a1', pb.TagScope.TAG_SCOPE_UNSPECIFIED)), Code.INVALID_ARGUMENT, 'tag.scope: Required value');
    await expectApiError(tags.createTag(tagReq('t', 'a1', 7 as pb.TagScope)), Code.INVALID_ARGUMENT, 'tag.scope: Invalid value: 7: must be less than or equal to 2');
    await expectApiError(tags.createTag({ tag: undefined }), Code.INVALID_ARGUMENT, 'tag: Required value');
    await expectApiError(
      tags.createTag({ tag: pb.Tag.fromPartial({ metadata: { atespace: 'demo', name: 't' }, scope: 1, sourceActor: { atespace: 'other', name: 'a1' } }) }),
      Code.INVALID_ARGUMENT,
      'tag.metadata.atespace: Invalid value: "demo": must match tag.source_actor.atespace ("other")',
    );
    await expectApiError(
      tags.createTag({ tag: pb.Tag.fromPartial({ metadata: { atespace: 'demo', name: 'T' }, scope: 0 }) }),
      Code.INVALID_ARGUMENT,
      /^\[tag\.metadata\.name: Invalid value: "T": a lowercase RFC 1123 label.*, tag\.scope: Required value, tag\.source_actor: Required value\]$/,
    );
  });

  it('ALREADY_EXISTS for a taken name (and no second copy)', async () => {
    await suspendedActor('a1');
    await tags.createTag(tagReq('v1', 'a1'));
    await expectApiError(tags.createTag(tagReq('v1', 'a1')), Code.ALREADY_EXISTS, 'Tag demo/v1 already exists');
    expect(tags.countTags('demo')).toBe(1);
  });

  it('a snapshot missing from the store fails the create and leaves nothing behind', async () => {
    const actor = await suspendedActor('a1');
    rmSync(snapshots.dirOf(actor.status!.externalSnapshot!.snapshotUri), { recursive: true });
    await expectApiError(tags.createTag(tagReq('v1', 'a1')), Code.FAILED_PRECONDITION, /is missing from the snapshot store$/);
    expect(tags.countTags('demo')).toBe(0);
    await expectApiError(tags.getTag({ tag: { atespace: 'demo', name: 'v1' } }), Code.NOT_FOUND, 'Tag demo/v1 not found');
  });
});

describe('GetTag / ListTags', () => {
  it('pages across atespaces, filters by atespace, counts', async () => {
    await suspendedActor('a1');
    await suspendedActor('b1', 'other');
    for (const n of ['t3', 't1', 't2']) await tags.createTag(tagReq(n, 'a1'));
    await tags.createTag(tagReq('t0', 'b1', pb.TagScope.TAG_SCOPE_PUBLISHED, 'other'));
    const seen: string[] = [];
    let token = '';
    do {
      const page = await tags.listTags({ atespace: '', pageSize: 3, pageToken: token });
      seen.push(...page.tags.map((t) => `${t.metadata!.atespace}/${t.metadata!.name}`));
      token = page.nextPageToken;
    } while (token);
    expect(seen).toEqual(['demo/t1', 'demo/t2', 'demo/t3', 'other/t0']);
    expect((await tags.listTags({ atespace: 'other', pageSize: 0, pageToken: '' })).tags.map((t) => t.metadata!.name)).toEqual(['t0']);
    expect(tags.countTags('demo')).toBe(3);
    expect(tags.countTags('other')).toBe(1);
    expect(tags.countTags('nowhere')).toBe(0);
    await expectApiError(tags.listTags({ atespace: 'Bad!', pageSize: 0, pageToken: '' }), Code.INVALID_ARGUMENT, /^atespace: Invalid value: "Bad!"/);
    await expectApiError(tags.getTag({ tag: { atespace: 'demo', name: '' } }), Code.INVALID_ARGUMENT, 'tag.name: Required value');
  });
});

describe('UpdateTag', () => {
  it('changes the scope with uid/version preconditions (version++), ignoring status', async () => {
    await suspendedActor('a1');
    const tag = await tags.createTag(tagReq('v1', 'a1'));
    const upd = await tags.updateTag({
      tag: { ...tag, scope: pb.TagScope.TAG_SCOPE_PUBLISHED, status: { snapshot: undefined, actorTemplateUid: 'forged', storageLocation: 'gs://elsewhere' } },
    });
    expect(upd.scope).toBe(pb.TagScope.TAG_SCOPE_PUBLISHED);
    expect(upd.metadata!.version).toBe(tag.metadata!.version + 1);
    expect(upd.status).toEqual(tag.status);
    expect((await tags.getTag({ tag: { atespace: 'demo', name: 'v1' } })).scope).toBe(pb.TagScope.TAG_SCOPE_PUBLISHED);
  });

  it('preconditions: required, uid must match, version must be current', async () => {
    await suspendedActor('a1');
    const tag = await tags.createTag(tagReq('v1', 'a1'));
    const md = tag.metadata!;
    await expectApiError(tags.updateTag({ tag: { ...tag, metadata: { ...md, uid: '' } } }), Code.INVALID_ARGUMENT, 'tag.metadata.uid: Required value');
    await expectApiError(tags.updateTag({ tag: { ...tag, metadata: { ...md, version: 0 } } }), Code.INVALID_ARGUMENT, 'tag.metadata.version: Required value');
    await expectApiError(tags.updateTag({ tag: { ...tag, metadata: { ...md, uid: 'x' } } }), Code.ABORTED, 'Tag demo/v1 does not have uid x');
    await tags.updateTag({ tag: { ...tag, scope: pb.TagScope.TAG_SCOPE_PUBLISHED } });
    await expectApiError(tags.updateTag({ tag }), Code.ABORTED, 'concurrent update conflict, please retry');
    await expectApiError(tags.updateTag({ tag: { ...tag, metadata: { ...md, name: 'nope' } } }), Code.NOT_FOUND, 'Tag demo/nope not found');
  });

  it('only the scope may change: anything else is INVALID_ARGUMENT naming the field', async () => {
    await suspendedActor('a1');
    await suspendedActor('a2');
    const tag = await tags.createTag(tagReq('v1', 'a1'));
    await expectApiError(tags.updateTag({ tag: { ...tag, sourceActor: { atespace: 'demo', name: 'a2' } } }), Code.INVALID_ARGUMENT, 'tag.source_actor: Forbidden: field is immutable');
    await expectApiError(tags.updateTag({ tag: { ...tag, sourceActor: undefined } }), Code.INVALID_ARGUMENT, 'tag.source_actor: Forbidden: field is immutable');
    await expectApiError(tags.updateTag({ tag: { ...tag, scope: pb.TagScope.TAG_SCOPE_UNSPECIFIED } }), Code.INVALID_ARGUMENT, 'tag.scope: Required value');
    expect((await tags.getTag({ tag: { atespace: 'demo', name: 'v1' } })).metadata!.version).toBe(tag.metadata!.version);
  });
});

describe('DeleteTag', () => {
  it('removes the copy, returns the deleted tag, honours DeleteOptions', async () => {
    await suspendedActor('a1');
    const tag = await tags.createTag(tagReq('v1', 'a1'));
    const copy = tag.status!.snapshot!.snapshotUri;
    const ref = { atespace: 'demo', name: 'v1' };
    await expectApiError(tags.deleteTag({ tag: ref, options: { uid: 'other', version: 0 } }), Code.ABORTED, 'Tag demo/v1 does not have uid other');
    await expectApiError(tags.deleteTag({ tag: ref, options: { uid: '', version: 99 } }), Code.ABORTED, 'concurrent update conflict, please retry');
    const del = await tags.deleteTag({ tag: ref, options: { uid: tag.metadata!.uid, version: tag.metadata!.version } });
    expect(pb.Tag.toJSON(del)).toEqual(pb.Tag.toJSON(tag));
    expect(snapshots.exists(copy)).toBe(false);
    await expectApiError(tags.getTag({ tag: ref }), Code.NOT_FOUND);
    await expectApiError(tags.deleteTag({ tag: ref, options: undefined }), Code.NOT_FOUND, 'Tag demo/v1 not found');
    // The source actor's own snapshot is untouched.
    const actor = await api.getActor({ actor: { atespace: 'demo', name: 'a1' } });
    expect(snapshots.exists(actor.status!.externalSnapshot!.snapshotUri)).toBe(true);
  });

  it('a pending tag (create interrupted) is deletable and its partial copy collected', async () => {
    // What a crash between the two phases leaves: a stored tag without status.snapshot, and a copy.
    const pending = pb.Tag.fromPartial({
      metadata: { atespace: 'demo', name: 'half', uid: '11111111-2222-4333-8444-555555555555', version: 1 },
      scope: 1,
      sourceActor: { atespace: 'demo', name: 'a1' },
      status: { actorTemplateUid: 'x', storageLocation: 'gs://local-bucket/counter' },
    });
    db.prepare('INSERT INTO tags (atespace, name, version, data) VALUES (?, ?, ?, ?)').run('demo', 'half', 1, JSON.stringify(pb.Tag.toJSON(pending)));
    const partial = snapshots.tagSnapshotUri('gs://local-bucket/counter', 'demo', pending.metadata!.uid);
    mkdirSync(snapshots.dirOf(partial), { recursive: true });
    writeFileSync(join(snapshots.dirOf(partial), 'checkpoint.img'), 'partial');
    await expectApiError(tags.updateTag({ tag: { ...pending, scope: 2 } }), Code.FAILED_PRECONDITION, 'Tag demo/half is still being created');
    await tags.deleteTag({ tag: { atespace: 'demo', name: 'half' }, options: undefined });
    expect(existsDir(snapshots.dirOf(partial))).toBe(false);
  });
});

function existsDir(p: string): boolean {
  try {
    readFileSync(join(p, 'checkpoint.img'));
    return true;
  } catch {
    return false;
  }
}
