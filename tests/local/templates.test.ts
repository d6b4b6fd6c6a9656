// ActorTemplates, SandboxConfigs and the golden-snapshot flow of the local Substrate (src/local/templates.ts),
// on a real SQLite database and a real snapshot store in a temporary directory.
//
// The actor and atespace RPCs come from StandInControl below, which STANDS IN FOR src/local/actors.ts and
// src/local/atespaces.ts (written in parallel). It is kept honest: it applies the v0.4 state rules these
// modules rely on (resume from SUSPENDED, suspend from RUNNING writing a new actor-owned external snapshot and
// deleting the previous one, delete only from SUSPENDED/CRASHED unless any_state, a crashing resume leaves the
// actor CRASHED), records every call, and forwards tag and template RPCs to the real Tags and Templates, whose
// createTag enforces a SUSPENDED source with a snapshot.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pb from '../../src/gen/ateapi.js';
import { ApiError, Code, failedPrecondition } from '../../src/common/errors.js';
import { setLogSink } from '../../src/common/log.js';
import { GOLDEN_ATESPACE, type ControlApi } from '../../src/local/api.js';
import { SnapshotStore } from '../../src/local/snapshots.js';
import { Tags } from '../../src/local/tags.js';
import { MICROVM_UNAVAILABLE } from '../../src/local/template-validation.js';
import {
  BUILTIN_GVISOR_DEFAULT,
  SandboxConfigs,
  Templates,
  goldenActorName,
  localImageResolver,
  type TemplateImageResolver,
  type TemplatesOptions,
} from '../../src/local/templates.js';
import { StandInControl } from './standin-control.js';
import { expectApiError } from './api-error.js';

setLogSink(() => undefined);

const HEX = 'b'.repeat(64);
const IMAGE = `local/node@sha256:${HEX}`;


let dir: string;
let db: Database.Database;
let snapshots: SnapshotStore;
let api: StandInControl;
let configs: SandboxConfigs;
let templates: Templates;
const started: Templates[] = [];

function newTemplates(opts: Partial<TemplatesOptions> = {}): Templates {
  const t = new Templates({ db, api, sandboxConfigs: configs, resyncIntervalMs: 250, goldenWarmupMs: 200, ...opts });
  api.templates = t;
  return t;
}
function start(t: Templates): Templates {
  t.start();
  started.push(t);
  return t;
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'templates-test-'));
  db = new Database(join(dir, 'state.db'));
  snapshots = new SnapshotStore(dir);
  api = new StandInControl(snapshots);
  api.tags = new Tags({ db, api, snapshots });
  configs = new SandboxConfigs(db);
  templates = newTemplates();
  await api.createAtespace({ atespace: { metadata: { atespace: '', name: 'demo', uid: '', version: 0 } } });
  api.calls.length = 0;
});

afterEach(async () => {
  for (const t of started.splice(0)) await t.stop();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

function tmpl(name: string, over: Partial<pb.ActorTemplate> = {}, atespace = 'demo'): pb.ActorTemplate {
  return pb.ActorTemplate.fromPartial({
    metadata: { atespace, name },
    containers: [{ name: 'app', image: IMAGE }],
    snapshotConfig: { storageLocation: 'gs://local-bucket/templates' },
    sandboxConfig: { sandboxClass: pb.SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' },
    ...over,
  });
}
const create = (t: pb.ActorTemplate, on = templates) => on.createActorTemplate({ actorTemplate: t });

describe('CreateActorTemplate / GetActorTemplate', () => {
  it('assigns metadata, ignores status and client metadata, applies defaults, persists', async () => {
    const input = tmpl('counter', {
      containers: [pb.Container.fromPartial({ name: 'app', image: IMAGE, wakeupProbe: { httpGet: { path: '', port: 8080 }, timeoutSeconds: 0 } })],
      status: { goldenSnapshotStatus: { goldenTag: { atespace: GOLDEN_ATESPACE, name: 'forged' }, errorMessage: '' } },
    });
    input.metadata!.uid = 'client-uid';
    input.metadata!.version = 42;
    const t0 = Date.now();
    const out = await create(input);
    expect(out.metadata!.uid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(out.metadata!.version).toBe(1);
    expect(out.metadata!.createTime!.getTime()).toBeGreaterThanOrEqual(t0 - 5);
    expect(out.status?.goldenSnapshotStatus).toBeUndefined();
    expect(out.snapshotConfig!.onCommit).toBe(pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL);
    expect(out.containers[0]!.wakeupProbe).toEqual({ httpGet: { path: '/', port: 8080 }, timeoutSeconds: 30 });

    const got = await templates.getActorTemplate({ actorTemplate: { atespace: 'demo', name: 'counter' } });
    expect(pb.ActorTemplate.toJSON(got)).toEqual(pb.ActorTemplate.toJSON(out));
    // A second instance on the same database sees it.
    const again = await new Templates({ db, api, sandboxConfigs: configs }).getActorTemplate({ actorTemplate: { atespace: 'demo', name: 'counter' } });
    expect(again.metadata!.uid).toBe(out.metadata!.uid);
  });

  it('ALREADY_EXISTS for a taken name; NOT_FOUND for a missing atespace or template', async () => {
    await create(tmpl('a'));
    await expectApiError(create(tmpl('a')), Code.ALREADY_EXISTS, 'ActorTemplate demo/a already exists');
    await expectApiError(create(tmpl('a', {}, 'nowhere')), Code.NOT_FOUND, 'Atespace nowhere not found');
    await expectApiError(templates.getActorTemplate({ actorTemplate: { atespace: 'demo', name: 'zzz' } }), Code.NOT_FOUND, 'ActorTemplate demo/zzz not found');
    await expectApiError(templates.getActorTemplate({ actorTemplate: { atespace: '', name: 'a' } }), Code.INVALID_ARGUMENT, 'actor_template.atespace: Required value');
    await expectApiError(templates.createActorTemplate({ actorTemplate: undefined }), Code.INVALID_ARGUMENT, 'actor_template: Required value');
  });

  it('validation: INVALID_ARGUMENT with the field path, microvm FAILED_PRECONDITION', async () => {
    await expectApiError(
      create(tmpl('x', { sandboxConfig: { sandboxClass: 1, configName: '' } })),
      Code.INVALID_ARGUMENT,
      'actor_template.sandbox_config.config_name: Required value',
    );
    await expectApiError(
      create(tmpl('x', { containers: [pb.Container.fromPartial({ name: 'app', image: 'nginx:latest' })] })),
      Code.INVALID_ARGUMENT,
      'actor_template.containers[0].image: Invalid value: "nginx:latest": must be pinned by digest (changing the image invalidates snapshots)',
    );
    await expectApiError(create(tmpl('x', { sandboxConfig: { sandboxClass: 2, configName: 'microvm' } })), Code.FAILED_PRECONDITION, MICROVM_UNAVAILABLE);
  });

  it('SandboxConfig: missing → FAILED_PRECONDITION; class mismatch → upstream message', async () => {
    await expectApiError(create(tmpl('x', { sandboxConfig: { sandboxClass: 1, configName: 'nope' } })), Code.FAILED_PRECONDITION, 'SandboxConfig "nope" not found');
    const asset = { url: 'gs://bucket/a', sha256: 'c'.repeat(64) };
    await configs.applySandboxConfig({
      name: 'kata',
      sandboxClass: 'microvm',
      assets: { amd64: { 'cloud-hypervisor': asset, virtiofsd: asset, 'kata-kernel': asset, 'kata-image': asset } },
    });
    await expectApiError(
      create(tmpl('x', { sandboxConfig: { sandboxClass: 1, configName: 'kata' } })),
      Code.FAILED_PRECONDITION,
      'SandboxConfig "kata" has class "microvm" but sandbox_config.sandbox_class is "gvisor"',
    );
    // A gvisor config other than the built-in one works.
    await configs.applySandboxConfig({ name: 'gvisor-pinned', sandboxClass: 'gvisor', pauseImage: BUILTIN_GVISOR_DEFAULT.pauseImage });
    expect((await create(tmpl('y', { sandboxConfig: { sandboxClass: 1, configName: 'gvisor-pinned' } }))).sandboxConfig!.configName).toBe('gvisor-pinned');
  });

  it('is immutable: there is no update, in the module or on the wire', async () => {
    expect('updateActorTemplate' in templates).toBe(false);
    expect(Object.keys(pb.ControlService)).not.toContain('updateActorTemplate');
    expect(Object.keys(pb.ControlService)).toContain('createActorTemplate');
    const first = await create(tmpl('fixed'));
    await expectApiError(create(tmpl('fixed', { snapshotConfig: { storageLocation: 'gs://other/x', onCommit: 1 } })), Code.ALREADY_EXISTS);
    const still = await templates.getActorTemplate({ actorTemplate: { atespace: 'demo', name: 'fixed' } });
    expect(still.snapshotConfig!.storageLocation).toBe('gs://local-bucket/templates');
    expect(still.metadata!.version).toBe(first.metadata!.version);
  });

  it('bare local image names are pinned on create by the image resolver; unknown images fail', async () => {
    const pinned = `local/app@sha256:${'d'.repeat(64)}`;
    const seen: string[] = [];
    const images: TemplateImageResolver = {
      async resolve(ref) {
        seen.push(ref);
        if (ref === 'local/app' || ref === pinned) return pinned;
        throw failedPrecondition(`image "${ref}" is not built on this machine`);
      },
    };
    const t = newTemplates({ images });
    const out = await create(tmpl('img', { containers: [pb.Container.fromPartial({ name: 'app', image: 'local/app' })] }), t);
    expect(out.containers[0]!.image).toBe(pinned);
    expect(seen).toEqual(['local/app', pinned]);
    await expectApiError(create(tmpl('img2'), t), Code.FAILED_PRECONDITION, `image "${IMAGE}" is not built on this machine`);
  });

  it('localImageResolver refuses images this machine has not built', async () => {
    const r = localImageResolver(dir);
    await expectApiError(r.resolve('local/ghost'), Code.FAILED_PRECONDITION, 'image "local/ghost" is not built on this machine; no images are built yet');
    await expectApiError(r.resolve(`docker.io/library/nginx@sha256:${HEX}`), Code.FAILED_PRECONDITION, /no registry access/);
  });
});

describe('ListActorTemplates', () => {
  it('pages with opaque tokens and filters by atespace', async () => {
    await api.createAtespace({ atespace: { metadata: { atespace: '', name: 'other', uid: '', version: 0 } } });
    for (const n of ['e', 'a', 'c', 'b', 'd']) await create(tmpl(n));
    await create(tmpl('a', {}, 'other'));
    const names: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const r = await templates.listActorTemplates({ atespace: '', pageSize: 2, pageToken: token });
      expect(r.actorTemplates.length).toBeLessThanOrEqual(2);
      names.push(...r.actorTemplates.map((t) => `${t.metadata!.atespace}/${t.metadata!.name}`));
      token = r.nextPageToken;
      pages++;
    } while (token);
    expect(names).toEqual(['demo/a', 'demo/b', 'demo/c', 'demo/d', 'demo/e', 'other/a']);
    expect(pages).toBe(3);
    const other = await templates.listActorTemplates({ atespace: 'other', pageSize: 0, pageToken: '' });
    expect(other.actorTemplates.map((t) => t.metadata!.name)).toEqual(['a']);
    expect(other.nextPageToken).toBe('');
    await expectApiError(templates.listActorTemplates({ atespace: '', pageSize: -1, pageToken: '' }), Code.INVALID_ARGUMENT, 'page_size: Invalid value: -1: must be greater than or equal to 0');
    await expectApiError(templates.listActorTemplates({ atespace: '', pageSize: 1, pageToken: 'junk' }), Code.INVALID_ARGUMENT, /^page_token: Invalid value: "junk"/);
    expect(templates.countTemplates('demo')).toBe(5);
  });
});

describe('DeleteActorTemplate', () => {
  it('returns the deleted template and honours DeleteOptions', async () => {
    const t = await create(tmpl('gone'));
    const ref = { atespace: 'demo', name: 'gone' };
    await expectApiError(templates.deleteActorTemplate({ actorTemplate: ref, options: { uid: 'someone-else', version: 0 } }), Code.ABORTED, 'ActorTemplate demo/gone does not have uid someone-else');
    await expectApiError(templates.deleteActorTemplate({ actorTemplate: ref, options: { uid: '', version: 7 } }), Code.ABORTED, 'concurrent update conflict, please retry');
    const del = await templates.deleteActorTemplate({ actorTemplate: ref, options: { uid: t.metadata!.uid, version: 1 } });
    expect(del.metadata!.uid).toBe(t.metadata!.uid);
    await expectApiError(templates.getActorTemplate({ actorTemplate: ref }), Code.NOT_FOUND);
    await expectApiError(templates.deleteActorTemplate({ actorTemplate: ref, options: undefined }), Code.NOT_FOUND, 'ActorTemplate demo/gone not found');
  });
});

describe('the golden flow', () => {
  it('golden actor → resume → warm-up → suspend → published tag → delete actor → golden_tag', async () => {
    start(templates);
    const t = await create(tmpl('counter'));
    const uid = t.metadata!.uid;
    const golden = `${GOLDEN_ATESPACE}/${goldenActorName(uid)}`;
    const done = await templates.waitGolden('demo', 'counter', 20_000);
    const g = done.status!.goldenSnapshotStatus!;
    expect(g.errorMessage).toBe('');
    expect(g.goldenTag).toEqual({ atespace: GOLDEN_ATESPACE, name: uid });
    expect(api.calls).toEqual([
      `createAtespace ${GOLDEN_ATESPACE}`,
      `createActor ${golden}`,
      `resumeActor ${golden}`,
      `suspendActor ${golden}`,
      `createTag ${GOLDEN_ATESPACE}/${uid}`,
      `deleteActor ${golden} any_state`,
    ]);
    // take_golden_snapshot_at recorded (version 2), tag recorded (version 3).
    expect(done.metadata!.version).toBe(3);
    expect(g.takeGoldenSnapshotAt!.getTime()).toBeGreaterThanOrEqual(done.metadata!.createTime!.getTime() + 200);
    // The tag owns a copy under the template's storage location; the golden actor and its snapshot are gone.
    const tag = await api.tags.getTag({ tag: g.goldenTag! });
    expect(tag.scope).toBe(pb.TagScope.TAG_SCOPE_PUBLISHED);
    expect(tag.sourceActor).toEqual({ atespace: GOLDEN_ATESPACE, name: goldenActorName(uid) });
    expect(tag.status!.snapshot!.snapshotUri).toBe(`gs://local-bucket/templates/atespaces/${GOLDEN_ATESPACE}/tags/${tag.metadata!.uid}`);
    expect(tag.status!.actorTemplateUid).toBe(uid);
    expect(readFileSync(join(snapshots.dirOf(tag.status!.snapshot!.snapshotUri), 'checkpoint.img'), 'utf8')).toMatch(/^memory of ate-golden\/golden-/);
    expect(api.actors.has(golden)).toBe(false);
    // An actor created now borrows the golden snapshot.
    const actor = await api.createActor({ actor: pb.Actor.fromPartial({ metadata: { atespace: 'demo', name: 'a1' }, actorTemplate: { atespace: 'demo', name: 'counter' } }) });
    expect(actor.status!.externalSnapshot!.snapshotUri).toBe(tag.status!.snapshot!.snapshotUri);
  });

  it('skips the warm-up when every container has a wakeup_probe', async () => {
    const t = start(newTemplates({ goldenWarmupMs: 60_000 }));
    const probed = tmpl('probed', { containers: [pb.Container.fromPartial({ name: 'app', image: IMAGE, wakeupProbe: { httpGet: { port: 80 } } })] });
    const t0 = Date.now();
    await create(probed, t);
    const done = await t.waitGolden('demo', 'probed', 10_000);
    expect(done.status!.goldenSnapshotStatus!.goldenTag).toBeDefined();
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(done.status!.goldenSnapshotStatus!.takeGoldenSnapshotAt!.getTime()).toBeLessThanOrEqual(Date.now());
  });

  it('a golden actor that crashes fails the template terminally and is cleaned up', async () => {
    start(templates);
    const t = await templates.createActorTemplate({ actorTemplate: tmpl('crashy') });
    api.crashOnResume.set(goldenActorName(t.metadata!.uid), 'atelet Run: exec /app/server: no such file or directory');
    // The crash is registered before the event-driven pass runs (it is scheduled with setImmediate).
    const done = await templates.waitGolden('demo', 'crashy', 20_000);
    const golden = `${GOLDEN_ATESPACE}/${goldenActorName(t.metadata!.uid)}`;
    expect(done.status!.goldenSnapshotStatus!.errorMessage).toBe(
      `GoldenActorCrashed: golden actor ${golden} crashed: atelet Run: exec /app/server: no such file or directory`,
    );
    expect(done.status!.goldenSnapshotStatus!.goldenTag).toBeUndefined();
    expect(api.calls).toContain(`deleteActor ${golden} any_state`);
    expect(api.actors.has(golden)).toBe(false);
    // Terminal: later passes do not try again.
    const before = api.calls.length;
    await new Promise((r) => setTimeout(r, 800));
    expect(api.calls.slice(before).filter((c) => c.startsWith('createActor'))).toEqual([]);
  });

  it('transient failures are retried; the template still gets its tag', async () => {
    api.resumeErrors.push(new ApiError(Code.RESOURCE_EXHAUSTED, 'no worker has room for the actor'));
    start(templates);
    const t = await create(tmpl('busy'));
    const done = await templates.waitGolden('demo', 'busy', 20_000);
    expect(done.status!.goldenSnapshotStatus!.goldenTag).toEqual({ atespace: GOLDEN_ATESPACE, name: t.metadata!.uid });
    const golden = `${GOLDEN_ATESPACE}/${goldenActorName(t.metadata!.uid)}`;
    expect(api.calls.filter((c) => c === `resumeActor ${golden}`)).toHaveLength(2);
    expect(api.calls.filter((c) => c === `createActor ${golden}`)).toHaveLength(1);
  });

  it('a non-transient failure is terminal at once (GoldenSnapshotFailed), golden actor removed', async () => {
    api.resumeErrors.push(failedPrecondition('SandboxConfig "gvisor-default" has no asset for arch riscv64'));
    start(templates);
    const t = await create(tmpl('broken'));
    const done = await templates.waitGolden('demo', 'broken', 20_000);
    expect(done.status!.goldenSnapshotStatus!.errorMessage).toBe('GoldenSnapshotFailed: SandboxConfig "gvisor-default" has no asset for arch riscv64');
    const golden = `${GOLDEN_ATESPACE}/${goldenActorName(t.metadata!.uid)}`;
    expect(api.calls.filter((c) => c === `resumeActor ${golden}`)).toHaveLength(1);
    expect(api.actors.has(golden)).toBe(false);
    expect(api.tags.countTags(GOLDEN_ATESPACE)).toBe(0);
  });

  it('gives up after maxGoldenAttempts transient failures', async () => {
    for (let i = 0; i < 5; i++) api.resumeErrors.push(new ApiError(Code.UNAVAILABLE, 'worker unreachable'));
    const t = start(newTemplates({ maxGoldenAttempts: 2 }));
    await create(tmpl('flaky'), t);
    const done = await t.waitGolden('demo', 'flaky', 20_000);
    expect(done.status!.goldenSnapshotStatus!.errorMessage).toBe('GoldenSnapshotFailed: worker unreachable (gave up after 2 attempts)');
  });

  it('deleting the template deletes its golden tag and the tag\'s snapshot', async () => {
    start(templates);
    const t = await create(tmpl('short-lived'));
    const done = await templates.waitGolden('demo', 'short-lived', 20_000);
    const tag = await api.tags.getTag({ tag: done.status!.goldenSnapshotStatus!.goldenTag! });
    const copy = tag.status!.snapshot!.snapshotUri;
    expect(snapshots.exists(copy)).toBe(true);
    await templates.deleteActorTemplate({ actorTemplate: { atespace: 'demo', name: 'short-lived' }, options: undefined });
    expect(api.calls).toContain(`deleteTag ${GOLDEN_ATESPACE}/${t.metadata!.uid}`);
    await expectApiError(api.tags.getTag({ tag: { atespace: GOLDEN_ATESPACE, name: t.metadata!.uid } }), Code.NOT_FOUND);
    expect(snapshots.exists(copy)).toBe(false);
  });

  it('deleting the template during warm-up removes the unfinished golden actor and leaves no tag', async () => {
    const t = start(newTemplates({ goldenWarmupMs: 60_000 }));
    const created = await create(tmpl('midway'), t);
    const golden = `${GOLDEN_ATESPACE}/${goldenActorName(created.metadata!.uid)}`;
    await waitFor(() => !!api.actors.get(golden) && api.actors.get(golden)!.status!.state === pb.ActorState.ACTOR_STATE_RUNNING);
    await t.deleteActorTemplate({ actorTemplate: { atespace: 'demo', name: 'midway' }, options: undefined });
    expect(api.actors.has(golden)).toBe(false);
    expect(api.calls).toContain(`deleteActor ${golden} any_state`);
    expect(api.tags.countTags(GOLDEN_ATESPACE)).toBe(0);
    expect(api.calls.filter((c) => c.startsWith('createTag'))).toEqual([]);
  });

  it('survives a restart: a flow stopped mid-warm-up restarts its golden actor and finishes', async () => {
    const a = start(newTemplates({ goldenWarmupMs: 60_000 }));
    const created = await create(tmpl('restart'), a);
    await waitFor(() => {
      const s = db.prepare("SELECT data FROM actor_templates WHERE name = 'restart'").get() as { data: string };
      return JSON.parse(s.data).status?.goldenSnapshotStatus?.takeGoldenSnapshotAt !== undefined;
    });
    await a.stop();
    const golden = `${GOLDEN_ATESPACE}/${goldenActorName(created.metadata!.uid)}`;
    expect(api.actors.get(golden)!.status!.state).toBe(pb.ActorState.ACTOR_STATE_RUNNING); // kept for the next start
    api.calls.length = 0;

    const b = start(newTemplates({ goldenWarmupMs: 100 }));
    const done = await b.waitGolden('demo', 'restart', 20_000);
    expect(done.status!.goldenSnapshotStatus!.goldenTag).toEqual({ atespace: GOLDEN_ATESPACE, name: created.metadata!.uid });
    expect(api.calls).toEqual([
      `createAtespace ${GOLDEN_ATESPACE}`,
      `deleteActor ${golden} any_state`,
      `createActor ${golden}`,
      `resumeActor ${golden}`,
      `suspendActor ${golden}`,
      `createTag ${GOLDEN_ATESPACE}/${created.metadata!.uid}`,
      `deleteActor ${golden} any_state`,
    ]);
  });

  it('after a restart, a golden actor already suspended past its warm-up is tagged without running again', async () => {
    // Simulate a crash between SuspendActor and CreateTag: run the steps by hand.
    const t = await create(tmpl('resume-tag'));
    const uid = t.metadata!.uid;
    const golden = { atespace: GOLDEN_ATESPACE, name: goldenActorName(uid) };
    await api.createAtespace({ atespace: { metadata: { atespace: '', name: GOLDEN_ATESPACE, uid: '', version: 0 } } });
    await api.createActor({ actor: pb.Actor.fromPartial({ metadata: golden, actorTemplate: { atespace: 'demo', name: 'resume-tag' } }) });
    await api.resumeActor({ actor: golden });
    await api.suspendActor({ actor: golden });
    const row = db.prepare("SELECT data FROM actor_templates WHERE name = 'resume-tag'").get() as { data: string };
    const stored = pb.ActorTemplate.fromJSON(JSON.parse(row.data));
    stored.status = { goldenSnapshotStatus: { takeGoldenSnapshotAt: new Date(Date.now() - 1000), errorMessage: '', goldenTag: undefined } };
    db.prepare("UPDATE actor_templates SET data = ?, version = 2 WHERE name = 'resume-tag'").run(JSON.stringify(pb.ActorTemplate.toJSON({ ...stored, metadata: { ...stored.metadata!, version: 2 } })));
    api.calls.length = 0;

    start(templates);
    const done = await templates.waitGolden('demo', 'resume-tag', 20_000);
    expect(done.status!.goldenSnapshotStatus!.goldenTag).toEqual({ atespace: GOLDEN_ATESPACE, name: uid });
    expect(api.calls).toEqual([`createAtespace ${GOLDEN_ATESPACE}`, `createTag ${GOLDEN_ATESPACE}/${uid}`, `deleteActor ${GOLDEN_ATESPACE}/${golden.name} any_state`]);
  });

  it('waitGolden: DEADLINE_EXCEEDED without a reconciler, NOT_FOUND for a missing template', async () => {
    await create(tmpl('idle'));
    await expectApiError(templates.waitGolden('demo', 'idle', 300), Code.DEADLINE_EXCEEDED);
    await expectApiError(templates.waitGolden('demo', 'none', 300), Code.NOT_FOUND);
  });
});

describe('SandboxConfigs', () => {
  it('ships gvisor-default with upstream\'s values; it cannot be replaced or deleted', async () => {
    const b = configs.getSandboxConfig('gvisor-default')!;
    expect(b.sandboxClass).toBe('gvisor');
    expect(b.builtIn).toBe(true);
    expect(b.pauseImage).toBe('registry.k8s.io/pause:3.10.2@sha256:f548e0e8e3dc1896ca956272154dde3314e8cc4fde0a57577ee9fa1c63f5baf4');
    expect(b.assets!.amd64!.gvisor).toEqual({ url: 'gs://gvisor/releases/nightly/2026-09-02/x86_64/gvisor.tar.zstd', sha256: 'd547d81401461fd1c679c5c4fa0a6c2b8ef7dc3c22ce23c9e25dcc4c69cfd06f' });
    expect(b.assets!.arm64!.gvisor!.sha256).toBe('a64916f9813ce7e4841a30480a599337f7dda07b421c6bf0123db2212aa7d1df');
    await expectApiError(configs.deleteSandboxConfig('gvisor-default'), Code.FAILED_PRECONDITION, /built into the local Substrate and cannot be deleted/);
    await expectApiError(configs.applySandboxConfig({ ...b, pauseImage: `registry.k8s.io/pause@sha256:${HEX}` }), Code.FAILED_PRECONDITION, /cannot be replaced/);
    expect((await configs.applySandboxConfig({ ...BUILTIN_GVISOR_DEFAULT })).builtIn).toBe(true); // re-applying the same spec is a no-op
  });

  it('validates like the CRD and its admission policy', async () => {
    const asset = { url: 'gs://b/x', sha256: 'e'.repeat(64) };
    await expectApiError(configs.applySandboxConfig({ name: 'g', sandboxClass: 'gvisor' }), Code.INVALID_ARGUMENT, 'spec: Invalid value: "object": pauseImage is required for gvisor and not allowed for other sandbox classes');
    await expectApiError(configs.applySandboxConfig({ name: 'g', sandboxClass: 'gvisor', pauseImage: 'pause:3.10' }), Code.INVALID_ARGUMENT, 'spec.pauseImage: Invalid value: "string": All images must include a digest');
    await expectApiError(
      configs.applySandboxConfig({ name: 'm', sandboxClass: 'microvm', pauseImage: `p@sha256:${HEX}`, assets: { amd64: { 'cloud-hypervisor': asset, virtiofsd: asset, 'kata-kernel': asset, 'kata-image': asset } } }),
      Code.INVALID_ARGUMENT,
      'spec: Invalid value: "object": pauseImage is required for gvisor and not allowed for other sandbox classes',
    );
    await expectApiError(
      configs.applySandboxConfig({ name: 'g', sandboxClass: 'gvisor', pauseImage: `p@sha256:${HEX}`, assets: { amd64: { other: asset } } }),
      Code.INVALID_ARGUMENT,
      "a gvisor SandboxConfig must define a 'gvisor' (release tarball) or legacy 'runsc' asset for every architecture under spec.assets",
    );
    await expectApiError(
      configs.applySandboxConfig({ name: 'm', sandboxClass: 'microvm', assets: { amd64: { virtiofsd: asset } } }),
      Code.INVALID_ARGUMENT,
      'a microvm SandboxConfig must define cloud-hypervisor, virtiofsd, kata-kernel, and kata-image assets for every architecture under spec.assets',
    );
    await expectApiError(
      configs.applySandboxConfig({ name: 'g', sandboxClass: 'gvisor', pauseImage: `p@sha256:${HEX}`, assets: { amd64: { runsc: { url: '', sha256: 'XYZ' } } } }),
      Code.INVALID_ARGUMENT,
      `[spec.assets.amd64.runsc.url: Invalid value: "": spec.assets.amd64.runsc.url in body should be at least 1 chars long, spec.assets.amd64.runsc.sha256: Invalid value: "XYZ": spec.assets.amd64.runsc.sha256 in body should match '^[a-f0-9]{64}$']`,
    );
    await expectApiError(
      configs.applySandboxConfig({ name: 'k', sandboxClass: 'kata' as 'gvisor' }),
      Code.INVALID_ARGUMENT,
      /^\[spec\.sandboxClass: Unsupported value: "kata": supported values: "gvisor", "microvm"/,
    );
    await expectApiError(configs.deleteSandboxConfig('absent'), Code.NOT_FOUND, 'SandboxConfig "absent" not found');
  });

  it('persists applied configs, replaces them by name, and keeps untrusted keys off prototypes', async () => {
    const assets = JSON.parse(`{"__proto__": {"gvisor": {"url": "gs://evil", "sha256": "${'f'.repeat(64)}"}}, "amd64": {"runsc": {"url": "gs://b/runsc", "sha256": "${'f'.repeat(64)}"}}}`);
    const applied = await configs.applySandboxConfig({ name: 'legacy', sandboxClass: 'gvisor', pauseImage: `p@sha256:${HEX}`, assets });
    expect(Object.keys(applied.assets!)).toEqual(['__proto__', 'amd64']);
    expect(({} as Record<string, unknown>).gvisor).toBeUndefined();
    const reopened = new SandboxConfigs(db);
    expect(reopened.getSandboxConfig('legacy')!.assets!.amd64!.runsc!.url).toBe('gs://b/runsc');
    await reopened.applySandboxConfig({ name: 'legacy', sandboxClass: 'gvisor', pauseImage: `q@sha256:${HEX}` });
    expect(configs.getSandboxConfig('legacy')!.pauseImage).toBe(`q@sha256:${HEX}`);
    expect((await configs.listSandboxConfigs()).map((c) => c.name)).toEqual(['gvisor-default', 'legacy']);
    await configs.deleteSandboxConfig('legacy');
    expect(configs.getSandboxConfig('legacy')).toBeUndefined();
  });
});

async function waitFor(f: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!f()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}
