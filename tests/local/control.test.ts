// The local Substrate's ateapi.Control against real gVisor: the status machine and its codes, memory kept
// across suspend/resume on another worker and across pause/resume, golden-snapshot create, the router's
// implicit resume, egress denial, worker death, and a restart that loses nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import { Actor_Status, type Actor } from '../../src/gen/june/ateapi.js';
import {
  applyObject,
  counterTemplate,
  defaultImageRef,
  expectCode,
  startTestSubstrate,
  type TestSubstrate,
  viaRouter,
  waitTemplateReady,
} from './helpers.js';

const ref = (name: string, atespace = 'demo') => ({ actorRef: { atespace, name } });

describe('local Substrate: ateapi.Control on gVisor', () => {
  let s: TestSubstrate;
  let image: string;

  beforeAll(async () => {
    s = await startTestSubstrate({ workers: 2 });
    image = await defaultImageRef(s.stateDir);
    // A second pool with one worker and its own label, to move actors across pools deterministically.
    const pool = await applyObject(s.h.kube, {
      apiVersion: 'ate.dev/v1alpha1',
      kind: 'WorkerPool',
      metadata: { name: 'pool-b', namespace: 'ate-system', labels: { tier: 'b' } },
      spec: { replicas: 1, ateomImage: 'local@sha256:0000' },
    } as never);
    expect(pool.status).toBeLessThan(300);
    expect((await applyObject(s.h.kube, counterTemplate('counter', image, { readyz: true }) as never)).status).toBeLessThan(300);
    await waitTemplateReady(s.h.kube, 'default', 'counter');
    await s.rpc('createAtespace', { name: 'demo' });
  });

  afterAll(async () => {
    await s?.close();
  });

  it('validates atespaces with upstream codes and messages', async () => {
    await expectCode(s.rpc('createAtespace', { name: '' }), status.INVALID_ARGUMENT, 'name is required');
    await expectCode(
      s.rpc('createAtespace', { name: 'Bad_Name' }),
      status.INVALID_ARGUMENT,
      "invalid atespace: must start and end with a lower case alphanumeric character, and consist only of lower case alphanumeric characters or '-'",
    );
    await expectCode(s.rpc('createAtespace', { name: 'x'.repeat(64) }), status.INVALID_ARGUMENT, 'invalid atespace: must be no more than 63 characters');
    await expectCode(s.rpc('createAtespace', { name: 'demo' }), status.ALREADY_EXISTS, 'Atespace demo already exists');
    await expectCode(s.rpc('getAtespace', { name: 'nope' }), status.NOT_FOUND, 'Atespace nope not found');
    const list = await s.rpc<{ atespaces: { name: string }[] }>('listAtespaces', {});
    expect(list.atespaces.map((a) => a.name)).toEqual(expect.arrayContaining(['demo', 'ate-golden']));
  });

  it('validates CreateActor in upstream order and stores a SUSPENDED actor at version 1', async () => {
    await expectCode(s.rpc('createActor', { ...ref('a0'), actorTemplateName: 'counter' }), status.INVALID_ARGUMENT, 'actor_template_namespace is required');
    await expectCode(s.rpc('createActor', { ...ref('a0'), actorTemplateNamespace: 'default' }), status.INVALID_ARGUMENT, 'actor_template_name is required');
    await expectCode(
      s.rpc('createActor', { actorRef: { atespace: 'demo', name: '' }, actorTemplateNamespace: 'default', actorTemplateName: 'counter' }),
      status.INVALID_ARGUMENT,
      'actor_id is required',
    );
    await expectCode(
      s.rpc('createActor', { ...ref('A0'), actorTemplateNamespace: 'default', actorTemplateName: 'counter' }),
      status.INVALID_ARGUMENT,
      /^invalid actor_id: must start and end/,
    );
    await expectCode(
      s.rpc('createActor', { ...ref('a0'), actorTemplateNamespace: 'default', actorTemplateName: 'nope' }),
      status.FAILED_PRECONDITION,
      'ActorTemplate default/nope not found',
    );
    await expectCode(
      s.rpc('createActor', { ...ref('a0', 'nospace'), actorTemplateNamespace: 'default', actorTemplateName: 'counter' }),
      status.FAILED_PRECONDITION,
      'Atespace nospace not found',
    );
    const many = Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`k${i}`, 'v']));
    await expectCode(
      s.rpc('createActor', { ...ref('a0'), actorTemplateNamespace: 'default', actorTemplateName: 'counter', workerSelector: { matchLabels: many } }),
      status.INVALID_ARGUMENT,
      'worker_selector has 11 match_labels entries, exceeding the limit of 10',
    );
    const { actor } = await s.rpc<{ actor: Actor }>('createActor', { ...ref('a0'), actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
    expect(actor).toMatchObject({ actorId: 'a0', atespace: 'demo', version: 1, status: Actor_Status.STATUS_SUSPENDED });
    await expectCode(
      s.rpc('createActor', { ...ref('a0'), actorTemplateNamespace: 'default', actorTemplateName: 'counter' }),
      status.ALREADY_EXISTS,
      'Actor a0 already exists',
    );
    await expectCode(s.rpc('getActor', ref('missing')), status.NOT_FOUND, 'Actor missing not found');
    await expectCode(s.rpc('getActor', { actorRef: { atespace: '', name: 'a0' } }), status.INVALID_ARGUMENT, 'atespace is required');
    // Suspend on a never-resumed actor is a no-op; Pause on it is INTERNAL, as upstream.
    const same = await s.rpc<{ actor: Actor }>('suspendActor', ref('a0'));
    expect(same.actor.version).toBe(1);
    await expectCode(s.rpc('pauseActor', ref('a0')), status.INTERNAL, /actor is in PAUSING state but has no active worker/);
    await expectCode(s.rpc('deleteAtespace', { name: 'demo' }), status.FAILED_PRECONDITION, 'Atespace demo is not empty');
  });

  it('pages ListActors with an opaque token and rejects bad page sizes', async () => {
    await s.rpc('createAtespace', { name: 'paging' });
    for (let i = 0; i < 5; i++) {
      await s.rpc('createActor', { ...ref(`p${i}`, 'paging'), actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
    }
    await expectCode(s.rpc('listActors', { pageSize: -1 }), status.INVALID_ARGUMENT, 'page_size cannot be negative');
    await expectCode(s.rpc('listActors', { pageSize: 1001 }), status.INVALID_ARGUMENT, 'page_size 1001 exceeds maximum page size 1000');
    const names: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const page = await s.rpc<{ actors: Actor[]; nextPageToken: string }>('listActors', { pageSize: 2, pageToken: token, atespace: 'paging' });
      expect(page.actors.length).toBeLessThanOrEqual(2);
      names.push(...page.actors.map((a) => a.actorId));
      token = page.nextPageToken;
      pages++;
    } while (token);
    expect(pages).toBe(3);
    expect(names.sort()).toEqual(['p0', 'p1', 'p2', 'p3', 'p4']);
    const all = await s.rpc<{ actors: Actor[] }>('listActors', { pageSize: 0, atespace: 'paging' });
    expect(all.actors).toHaveLength(5);
    await expectCode(s.rpc('listActors', { pageSize: 2, pageToken: 'not-a-token' }), status.INTERNAL);
    for (let i = 0; i < 5; i++) await s.rpc('deleteActor', ref(`p${i}`, 'paging'));
    await s.rpc('deleteAtespace', { name: 'paging' });
    await expectCode(s.rpc('getAtespace', { name: 'paging' }), status.NOT_FOUND);
  });

  it('keeps memory and /tmp files across suspend and resume on a different worker', async () => {
    await s.rpc('createActor', {
      ...ref('mover'),
      actorTemplateNamespace: 'default',
      actorTemplateName: 'counter',
      workerSelector: { matchLabels: { 'ate.dev/worker-pool': 'default' } },
    });
    const r1 = await s.rpc<{ actor: Actor }>('resumeActor', ref('mover'));
    expect(r1.actor.status).toBe(Actor_Status.STATUS_RUNNING);
    expect(r1.actor.workerPoolName).toBe('default');
    const first = r1.actor.ateomPodName;
    // Resume on RUNNING is a no-op: same version.
    const again = await s.rpc<{ actor: Actor }>('resumeActor', ref('mover'));
    expect(again.actor.version).toBe(r1.actor.version);
    await expectCode(s.rpc('deleteActor', ref('mover')), status.FAILED_PRECONDITION, 'Actor mover is not suspended (status: STATUS_RUNNING)');

    for (let i = 0; i < 3; i++) expect((await viaRouter(s.h.routerUrl, 'demo', 'mover', '/count')).status).toBe(200);
    expect((await viaRouter(s.h.routerUrl, 'demo', 'mover', '/write')).body).toBe('written');

    const sus = await s.rpc<{ actor: Actor }>('suspendActor', ref('mover'));
    expect(sus.actor.status).toBe(Actor_Status.STATUS_SUSPENDED);
    expect(sus.actor.ateomPodName).toBe('');
    expect(sus.actor.latestSnapshotInfo?.data?.$case).toBe('external');
    const workers = await s.rpc<{ workers: Array<{ actorId: string }> }>('listWorkers', {});
    expect(workers.workers.some((w) => w.actorId === 'mover')).toBe(false);

    // Move it: the selector takes effect at the next resume, on the other pool's worker.
    await s.rpc('updateActor', { ...ref('mover'), workerSelector: { matchLabels: { tier: 'b' } } });
    const r2 = await s.rpc<{ actor: Actor }>('resumeActor', ref('mover'));
    expect(r2.actor.workerPoolName).toBe('pool-b');
    expect(r2.actor.ateomPodName).not.toBe(first);
    expect(r2.actor.ateomPodIp).not.toBe(r1.actor.ateomPodIp);
    const c = JSON.parse((await viaRouter(s.h.routerUrl, 'demo', 'mover', '/count')).body);
    expect(c.n).toBe(4);
    expect((await viaRouter(s.h.routerUrl, 'demo', 'mover', '/read')).body).toBe('kept-3');
    await s.rpc('suspendActor', ref('mover'));
  });

  it('keeps memory across pause and resume, and resumes on the same node', async () => {
    await s.rpc('createActor', { ...ref('pauser'), actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
    const r1 = await s.rpc<{ actor: Actor }>('resumeActor', ref('pauser'));
    await viaRouter(s.h.routerUrl, 'demo', 'pauser', '/count');
    await viaRouter(s.h.routerUrl, 'demo', 'pauser', '/count');
    const workersBefore = await s.rpc<{ workers: Array<{ actorId: string; nodeName: string; workerPod: string }> }>('listWorkers', {});
    const node = workersBefore.workers.find((w) => w.actorId === 'pauser')!.nodeName;
    const p = await s.rpc<{ actor: Actor }>('pauseActor', ref('pauser'));
    expect(p.actor.status).toBe(Actor_Status.STATUS_PAUSED);
    expect(p.actor.latestSnapshotInfo?.data).toMatchObject({ $case: 'local', value: { nodeVmsWithLocalSnapshots: [node] } });
    // Pause on PAUSED is a no-op; Suspend on PAUSED is INTERNAL; PAUSED is not deletable.
    expect((await s.rpc<{ actor: Actor }>('pauseActor', ref('pauser'))).actor.version).toBe(p.actor.version);
    await expectCode(s.rpc('suspendActor', ref('pauser')), status.INTERNAL, /actor is in SUSPENDING state but has no active worker/);
    await expectCode(s.rpc('deleteActor', ref('pauser')), status.FAILED_PRECONDITION, 'Actor pauser is not suspended (status: STATUS_PAUSED)');
    const r2 = await s.rpc<{ actor: Actor }>('resumeActor', ref('pauser'));
    expect(r2.actor.status).toBe(Actor_Status.STATUS_RUNNING);
    const workersAfter = await s.rpc<{ workers: Array<{ actorId: string; nodeName: string }> }>('listWorkers', {});
    expect(workersAfter.workers.find((w) => w.actorId === 'pauser')!.nodeName).toBe(node);
    expect(JSON.parse((await viaRouter(s.h.routerUrl, 'demo', 'pauser', '/count')).body).n).toBe(3);
    expect(r1.actor.actorId).toBe('pauser');
    await s.rpc('suspendActor', ref('pauser'));
  });

  it('creates new actors from the golden snapshot, and boots cold with boot=true', async () => {
    const tpl = await waitTemplateReady(s.h.kube, 'default', 'counter');
    expect(tpl.status.goldenSnapshot).toMatch(/^file:\/\//);
    expect(tpl.status.conditions[0]).toMatchObject({ type: 'Ready', status: 'True', reason: 'Ready', message: 'Actor template is ready for use' });
    const golden = await s.rpc<{ actor: Actor }>('getActor', ref(tpl.status.goldenActorID, 'ate-golden'));
    expect(golden.actor.status).toBe(Actor_Status.STATUS_SUSPENDED);

    await s.rpc('createActor', { ...ref('fromgolden'), actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
    const t0 = Date.now();
    await s.rpc('resumeActor', ref('fromgolden'));
    const g = JSON.parse((await viaRouter(s.h.routerUrl, 'demo', 'fromgolden', '/peek')).body);
    // Restored from the golden snapshot: the process was born before this resume started.
    expect(g.born).toBeLessThan(t0);
    await s.rpc('suspendActor', ref('fromgolden'));

    await s.rpc('createActor', { ...ref('coldboot'), actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
    const t1 = Date.now();
    await s.rpc('resumeActor', { ...ref('coldboot'), boot: true });
    const cb = JSON.parse((await viaRouter(s.h.routerUrl, 'demo', 'coldboot', '/peek')).body);
    expect(cb.born).toBeGreaterThanOrEqual(t1);
    await s.rpc('suspendActor', ref('coldboot'));
  });

  it('routes by Host, resuming a suspended actor on demand, with upstream status mapping', async () => {
    await s.rpc('createActor', { ...ref('routed'), actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
    const r = await viaRouter(s.h.routerUrl, 'demo', 'routed', '/count');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).n).toBe(1);
    expect((await s.rpc<{ actor: Actor }>('getActor', ref('routed'))).actor.status).toBe(Actor_Status.STATUS_RUNNING);
    await s.rpc('suspendActor', ref('routed'));
    const r2 = await viaRouter(s.h.routerUrl, 'demo', 'routed', '/count');
    expect(JSON.parse(r2.body).n).toBe(2);
    expect((await viaRouter(s.h.routerUrl, 'demo', 'nobody', '/')).status).toBe(404);
    const bad = await fetch(`${s.h.routerUrl}/`, { headers: { host: 'routed.actors.resources.substrate.ate.dev' } });
    expect(bad.status).toBe(404);
    expect(await bad.text()).toBe('invalid actor reference\n');
    await s.rpc('suspendActor', ref('routed'));
  });

  it('denies egress from inside the sandbox, fast', async () => {
    await s.rpc('createActor', { ...ref('exfil'), actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
    const r = await viaRouter(s.h.routerUrl, 'demo', 'exfil', '/egress');
    const probe = JSON.parse(r.body);
    expect(probe.blocked).toBe(true);
    expect(['EHOSTUNREACH', 'ENETUNREACH']).toContain(probe.code);
    await s.rpc('suspendActor', ref('exfil'));
  });

  it('answers FAILED_PRECONDITION "no free workers available" when the pool is full, and 503 through the router', async () => {
    await s.rpc('createAtespace', { name: 'full' });
    const names = ['f1', 'f2', 'f3'];
    for (const n of names) {
      await s.rpc('createActor', {
        ...ref(n, 'full'),
        actorTemplateNamespace: 'default',
        actorTemplateName: 'counter',
        workerSelector: { matchLabels: { 'ate.dev/worker-pool': 'default' } },
      });
    }
    await s.rpc('resumeActor', ref('f1', 'full'));
    await s.rpc('resumeActor', ref('f2', 'full'));
    await expectCode(s.rpc('resumeActor', ref('f3', 'full')), status.FAILED_PRECONDITION, 'no free workers available');
    const f3 = await s.rpc<{ actor: Actor }>('getActor', ref('f3', 'full'));
    expect(f3.actor.status).toBe(Actor_Status.STATUS_SUSPENDED);
    const viaR = await viaRouter(s.h.routerUrl, 'full', 'f3', '/');
    expect(viaR.status).toBe(503);
    expect(viaR.body.trim()).toBe('actor full/f3 unavailable: no free workers available');
    for (const n of names) await s.rpc('suspendActor', ref(n, 'full'));
  });

  it('serializes a busy actor: a second workflow at once gets ABORTED', async () => {
    await s.rpc('createActor', { ...ref('busy'), actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
    const results = await Promise.allSettled([s.rpc('resumeActor', ref('busy')), s.rpc('resumeActor', ref('busy'))]);
    const codes = results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as { code: number }).code));
    expect(codes).toContain('ok');
    expect(codes).toContain(status.ABORTED);
    await s.rpc('suspendActor', ref('busy'));
  });

  it('sends an actor to SUSPENDED when its worker sandbox is killed, and resumes it elsewhere from its last snapshot', async () => {
    await s.rpc('createActor', { ...ref('victim'), actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
    await s.rpc('resumeActor', ref('victim'));
    await viaRouter(s.h.routerUrl, 'demo', 'victim', '/count'); // 1
    await s.rpc('suspendActor', ref('victim')); // snapshot at n=1
    await s.rpc('resumeActor', ref('victim'));
    await viaRouter(s.h.routerUrl, 'demo', 'victim', '/count'); // 2, lost with the worker
    const handle = s.h.control.sandboxOf('demo', 'victim')!;
    expect(handle.pid).toBeGreaterThan(0);
    const deadWorker = (await s.rpc<{ actor: Actor }>('getActor', ref('victim'))).actor.ateomPodName;
    process.kill(handle.pid, 'SIGKILL');
    let a: Actor | undefined;
    for (let i = 0; i < 100; i++) {
      a = (await s.rpc<{ actor: Actor }>('getActor', ref('victim'))).actor;
      if (a.status === Actor_Status.STATUS_SUSPENDED) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(a!.status).toBe(Actor_Status.STATUS_SUSPENDED);
    expect(a!.latestSnapshotInfo?.data?.$case).toBe('external');
    const workers = await s.rpc<{ workers: Array<{ actorId: string }> }>('listWorkers', {});
    expect(workers.workers.some((w) => w.actorId === 'victim')).toBe(false);
    const back = await viaRouter(s.h.routerUrl, 'demo', 'victim', '/count');
    expect(JSON.parse(back.body).n).toBe(2); // from the snapshot at n=1
    const newHandle = s.h.control.sandboxOf('demo', 'victim')!;
    expect(newHandle.pid).not.toBe(handle.pid);
    // Another worker was free, so the actor came back elsewhere.
    expect((await s.rpc<{ actor: Actor }>('getActor', ref('victim'))).actor.ateomPodName).not.toBe(deadWorker);
    await s.rpc('suspendActor', ref('victim'));
  });

  it('answers bad workloads with clear errors and keeps the catalog consistent', async () => {
    // An image nobody built, and a command the runtime cannot start.
    const unknownImage = counterTemplate('noimage', 'local/nothing@sha256:' + 'ab'.repeat(32));
    expect((await applyObject(s.h.kube, unknownImage as never)).status).toBeLessThan(300);
    const badCmd = counterTemplate('badcmd', image, { readyz: false });
    (badCmd.spec.containers[0] as { command: string[] }).command = ['/no/such/binary'];
    expect((await applyObject(s.h.kube, badCmd as never)).status).toBeLessThan(300);
    await s.rpc('createActor', { ...ref('noimg'), actorTemplateNamespace: 'default', actorTemplateName: 'noimage' });
    await expectCode(s.rpc('resumeActor', { ...ref('noimg'), boot: true }), status.FAILED_PRECONDITION, /local\/nothing@sha256/);
    await s.rpc('createActor', { ...ref('nocmd'), actorTemplateNamespace: 'default', actorTemplateName: 'badcmd' });
    await expectCode(s.rpc('resumeActor', { ...ref('nocmd'), boot: true }), status.FAILED_PRECONDITION);
    for (const n of ['noimg', 'nocmd']) {
      const a = (await s.rpc<{ actor: Actor }>('getActor', ref(n))).actor;
      expect(a.status).toBe(Actor_Status.STATUS_SUSPENDED);
      await s.rpc('deleteActor', ref(n));
    }
    const workers = await s.rpc<{ workers: Array<{ actorId: string }> }>('listWorkers', {});
    expect(workers.workers.filter((w) => w.actorId === 'noimg' || w.actorId === 'nocmd')).toEqual([]);
  });

  it('refuses to restore a corrupt snapshot, and does not silently reset the actor', async () => {
    await s.rpc('createActor', { ...ref('corrupt'), actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
    await s.rpc('resumeActor', ref('corrupt'));
    await viaRouter(s.h.routerUrl, 'demo', 'corrupt', '/count');
    const sus = (await s.rpc<{ actor: Actor }>('suspendActor', ref('corrupt'))).actor;
    const info = sus.latestSnapshotInfo!;
    const dir = (info.data as { value: { snapshotUriPrefix: string } }).value.snapshotUriPrefix.replace('file://', '');
    const { readdirSync, statSync, truncateSync } = await import('node:fs');
    const biggest = readdirSync(dir)
      .filter((f) => f !== 'meta.json')
      .map((f) => ({ f, size: statSync(`${dir}/${f}`).size }))
      .sort((a, b) => b.size - a.size)[0]!;
    truncateSync(`${dir}/${biggest.f}`, Math.floor(biggest.size / 2));
    const e = await expectCode(s.rpc('resumeActor', ref('corrupt')), status.FAILED_PRECONDITION, /corrupt|snapshot/i);
    expect(e.details).toMatch(/corrupt/);
    const after = (await s.rpc<{ actor: Actor }>('getActor', ref('corrupt'))).actor;
    expect(after.status).toBe(Actor_Status.STATUS_SUSPENDED);
    expect(after.latestSnapshotInfo).toEqual(info);
    await s.rpc('deleteActor', ref('corrupt'));
  });

  it('loses nothing across a restart of the local Substrate', async () => {
    await s.rpc('createActor', { ...ref('survivor'), actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
    await s.rpc('resumeActor', ref('survivor'));
    for (let i = 0; i < 5; i++) await viaRouter(s.h.routerUrl, 'demo', 'survivor', '/count');
    const before = await s.rpc<{ actors: Actor[] }>('listActors', { atespace: 'demo' });
    await s.restart();
    const after = await s.rpc<{ actors: Actor[] }>('listActors', { atespace: 'demo' });
    expect(after.actors.map((a) => a.actorId).sort()).toEqual(before.actors.map((a) => a.actorId).sort());
    const sv = after.actors.find((a) => a.actorId === 'survivor')!;
    expect(sv.status).toBe(Actor_Status.STATUS_SUSPENDED); // a clean stop suspends running actors
    expect((await s.rpc<{ atespace: { name: string } }>('getAtespace', { name: 'demo' })).atespace.name).toBe('demo');
    await waitTemplateReady(s.h.kube, 'default', 'counter', 1000);
    expect(JSON.parse((await viaRouter(s.h.routerUrl, 'demo', 'survivor', '/count')).body).n).toBe(6);
    await s.rpc('suspendActor', ref('survivor'));
    await s.rpc('deleteActor', ref('survivor'));
    await expectCode(s.rpc('getActor', ref('survivor')), status.NOT_FOUND);
  });
});
