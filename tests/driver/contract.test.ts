// Contract tests: the OpenShell gateway's call sequences (compute-driver.md §2, §4, §5, §7) over the driver's
// real Unix socket with the generated ComputeDriverClient, against the real local Substrate (gVisor
// checkpoint/restore behind ateapi.Control). Nothing is stubbed: the gateway's calls are made as the
// gateway makes them, and the workload is a real process whose memory must survive Stop → Start.
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActorState } from '../../src/gen/ateapi.js';
import type { DriverSandbox } from '../../src/gen/compute_driver.js';
import { derivePhase } from '../../src/driver/conditions.js';
import { cgroupLimitSupport } from '../../src/local/runtime/gvisor.js';
import { driverVersion } from '../../src/driver/index.js';
import { goldenActorName } from '../../src/local/templates.js';
import {
  attachableFlags,
  COUNTER_JS,
  eventually,
  expectGrpcError,
  operatorTemplate,
  provisionTemplate,
  readyOf,
  routerGet,
  sandboxOf,
  startEnv,
  suspendedOf,
  templateRefOf,
  waitSandbox,
  WatchRecorder,
  type TestEnv,
} from './helpers.js';

const phase = (sb: DriverSandbox) => derivePhase(sb.status?.conditions, sb.status?.deleting);
const sha = (s: string) => createHash('sha256').update(s).digest('hex');
const SYNTHESIZED = /^sbx-tpl-[0-9a-f]{20}$/;

describe('ComputeDriver contract against the local Substrate', () => {
  let env: TestEnv;
  let watch: WatchRecorder;
  /** Every sandbox the test created: id → name. */
  const names = new Map<string, string>();
  const TOKEN = `test-token-${randomUUID()}`;
  let s1: DriverSandbox;

  beforeAll(async () => {
    env = await startEnv({ flags: { gateway_endpoint: 'http://127.0.0.1:9', ...attachableFlags('ops-counter', 'ops-broken') } });
    // An operator's pre-provisioned template (with a wakeup probe: its golden snapshot is taken at once),
    // made attachable by the driver's template_labels (v0.4 templates carry no labels).
    await provisionTemplate(env, operatorTemplate('ops-counter', env.image));
    watch = new WatchRecorder(env.client);
  }, 180_000);

  afterAll(async () => {
    watch?.cancel();
    await env?.close();
  });

  it('answers the startup probes', async () => {
    // As a 0.0.x gateway asks (no metadata); the v0.1 fields are unknown to it and ignored.
    const caps = await env.client.getCapabilities();
    const limits = cgroupLimitSupport();
    expect(caps).toEqual({
      driverName: 'substrate',
      driverVersion: driverVersion(),
      defaultImage: env.image,
      gatewayManagesLifecycle: false,
      supportsSandboxAuthentication: false,
      driverReportsRuntimeReadiness: false,
      resourceCapabilities: {
        cpu: { limitSupported: limits.cpu },
        memory: { limitSupported: limits.memory },
        gpu: { defaultSelectionSupported: false, countSelectionSupported: false },
      },
      rootfsTarStagingDir: '',
      rootfsTarMaxBytes: 0,
      extension: {
        protocolVersion: { major: 1, minor: 0 },
        implementationName: 'openshell-driver-substrate',
        implementationVersion: driverVersion(),
        supportedCapabilities: ['openshell.compute.contract', 'openshell.compute.launch-authentication'],
        requiredCapabilities: ['openshell.compute.contract'],
      },
      resourceAdmissionPolicy:
        'v1:{"allow_driver_config":false,"resource_admission":{"enabled":true,"required_labels":{"openshell.ai/sandbox-attachable":"true","openshell.ai/sandbox-attachable-workspace":"${workspace}"}}}',
    });
    expect(caps.driverVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(await env.client.getGatewayListenerRequirements()).toEqual([]);
  });

  it('serves on a private socket: directory 0700, socket 0600', () => {
    expect(statSync(env.cfg.socketPath).isSocket()).toBe(true);
    expect(statSync(env.cfg.socketPath).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(env.cfg.socketPath)).mode & 0o777).toBe(0o700);
  });

  it('rejects what cannot run, with an actionable code and message', async () => {
    const ok = sandboxOf({ image: env.image });
    await env.client.validateSandboxCreate(ok);
    await expectGrpcError(env.client.validateSandboxCreate(sandboxOf({ image: 'ubuntu:24.04' })), status.INVALID_ARGUMENT, /not pinned.*@sha256/);
    await expectGrpcError(env.client.validateSandboxCreate(sandboxOf({ image: env.image, id: 'Not_An_Actor_Name' })), status.INVALID_ARGUMENT, /cannot be a Substrate actor name/);
    await expectGrpcError(env.client.validateSandboxCreate({ ...ok, id: '' }), status.INVALID_ARGUMENT, /sandbox\.id is required/);
    const manyEnv = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`V${i}`, 'x']));
    await expectGrpcError(env.client.validateSandboxCreate(sandboxOf({ image: env.image, env: manyEnv })), status.INVALID_ARGUMENT, /at most 32/);
    const longCmd = Array.from({ length: 70 }, (_, i) => `a${i}`);
    await expectGrpcError(env.client.validateSandboxCreate(sandboxOf({ image: env.image, command: longCmd })), status.INVALID_ARGUMENT, /at most 64/);
    await expectGrpcError(
      env.client.validateSandboxCreate(sandboxOf({ image: env.image, driverConfig: { actor_templat: 'x', cpu: 2 } })),
      status.INVALID_ARGUMENT,
      /unknown template\.driver_config keys "actor_templat", "cpu".*known keys: actor_template, worker_selector/,
    );
    await expectGrpcError(env.client.validateSandboxCreate(sandboxOf({ image: env.image, gpu: true })), status.FAILED_PRECONDITION, /GPU/);
    await expectGrpcError(
      env.client.validateSandboxCreate(sandboxOf({ image: env.image, driverConfig: { actor_template: 'no-such-template' } })),
      status.FAILED_PRECONDITION,
      /ActorTemplate default\/no-such-template .* does not exist/,
    );
    await expectGrpcError(
      env.client.validateSandboxCreate(sandboxOf({ image: env.image, platformConfig: { annotations: { substrate_actor_template: 'missing-too' } } })),
      status.FAILED_PRECONDITION,
      /missing-too/,
    );
    await expectGrpcError(env.client.validateSandboxCreate(sandboxOf({ image: env.image, workspace: 'Bad_WS' })), status.INVALID_ARGUMENT, /atespace/);
    await expectGrpcError(env.client.validateSandboxCreate(sandboxOf({ image: env.image, workspace: 'ate-golden' })), status.INVALID_ARGUMENT, /workspace "ate-golden" is reserved/);
    await expectGrpcError(env.client.createSandbox(sandboxOf({ image: env.image, workspace: 'ate-golden' })), status.INVALID_ARGUMENT, /workspace "ate-golden" is reserved/);
    // Nothing was recorded by any of these.
    expect(await env.client.listSandboxes()).toEqual([]);
  });

  it('deletes a sandbox while its template waits for the golden snapshot: nothing is left running', async () => {
    // Synthesized templates have a wakeup probe (the bootstrap agent's), so a golden snapshot is usually taken
    // within a second. To delete while the driver still waits for it, the local Substrate's golden reconciler
    // is held (its real stop/start: the template exists, its golden flow has not run), then released at the
    // same moment the delete is sent, so the golden flow and the delete race as they would on a busy cluster.
    const d1 = sandboxOf({ image: env.image, name: 'early-gone' });
    names.set(d1.id, d1.name);
    await env.local.templates.stop();
    let released = false;
    try {
      await env.client.createSandbox(d1);
      const tref = templateRefOf(env, d1.id);
      expect(tref.owned).toBe(true);
      expect(tref.name).toMatch(SYNTHESIZED);
      const tpl = await eventually('the synthesized template', () => env.ateapi.findActorTemplate(tref));
      // The driver is waiting for the golden snapshot: provisioning, not an error, no actor yet.
      const waiting = await waitSandbox(env.client, d1.id, (x) => /golden/.test(readyOf(x)?.message ?? ''), 30_000);
      expect(phase(waiting)).toBe('PROVISIONING');
      expect(await env.ateapi.findActor({ atespace: 'default', name: d1.id })).toBeUndefined();
      const from = watch.events.length;
      env.local.templates.start();
      released = true;
      expect(await env.client.deleteSandbox(d1.id, d1.name)).toBe(true);
      await watch.waitFor((e) => e.payload?.$case === 'deleted' && e.payload.value.sandboxId === d1.id, 10_000, from);
      expect(await env.ateapi.findActorTemplate(tref)).toBeUndefined();
      expect(await env.ateapi.findActor({ atespace: 'default', name: d1.id })).toBeUndefined();
      // Whatever the golden flow had reached, its golden actor goes (it no longer holds a worker) and no golden
      // tag is left behind.
      const golden = { atespace: 'ate-golden', name: goldenActorName(tpl.metadata!.uid) };
      const goldenTag = { atespace: 'ate-golden', name: tpl.metadata!.uid };
      await eventually(
        'the golden actor and tag gone',
        async () => ((await env.ateapi.findActor(golden)) || (await env.ateapi.getTag(goldenTag).catch(() => undefined)) ? undefined : true),
        30_000,
      );
      expect(await env.client.listSandboxes()).toEqual([]);
    } finally {
      if (!released) env.local.templates.start();
    }
  }, 120_000);

  it('validate → create returns before the sandbox runs, then provisioning shows through watch', async () => {
    s1 = sandboxOf({ image: env.image, name: 'first', token: TOKEN, env: { USER_VAR: 'u1' } });
    names.set(s1.id, s1.name);
    await env.client.validateSandboxCreate({ ...s1, spec: { ...s1.spec!, sandboxToken: '' } });
    await env.client.createSandbox(s1);
    // Accepted and durable, not running yet: the golden snapshot of its new template takes a while.
    const early = await env.client.getSandbox(s1.id, s1.name);
    expect(early.id).toBe(s1.id);
    expect(early.name).toBe('first');
    expect(early.workspace).toBe('default');
    expect(readyOf(early)?.status).toBe('Unknown');
    expect(phase(early)).toBe('PROVISIONING');
    await expectGrpcError(env.client.createSandbox(s1), status.ALREADY_EXISTS, /already exists/);

    const ready = await watch.waitFor((e) => e.payload?.$case === 'sandbox' && e.payload.value.sandbox?.id === s1.id && readyOf(e.payload.value.sandbox)?.status === 'True', 180_000);
    const sb = (ready.payload as { value: { sandbox: DriverSandbox } }).value.sandbox;
    expect(sb.status!.instanceId).not.toBe('');
    expect(phase(sb)).toBe('READY');
    // Progress reached the gateway as platform events with the progress metadata keys.
    const pe = watch.events.filter((e) => e.payload?.$case === 'platformEvent' && e.payload.value.sandboxId === s1.id);
    expect(pe.some((e) => e.payload?.$case === 'platformEvent' && e.payload.value.event?.metadata['openshell.progress.active_step'] === 'requesting_sandbox')).toBe(true);
    expect(pe.every((e) => e.payload?.$case === 'platformEvent' && e.payload.value.event?.source === 'substrate')).toBe(true);
    // No provisioning step ever read as an error.
    expect(watch.sandboxEvents(s1.id).every((x) => phase(x) !== 'ERROR')).toBe(true);
  });

  it('gives the workload the supervisor environment, and the token never through the template', async () => {
    const r = await routerGet(env.local.routerUrl, s1.id, 'default', '/env');
    expect(r.status).toBe(200);
    const e = JSON.parse(r.body) as Record<string, string | null>;
    expect(e.id).toBe(s1.id);
    expect(e.name).toBe('first');
    expect(e.endpoint).toBe('http://127.0.0.1:9');
    expect(e.user).toBe('u1');
    expect(JSON.parse(e.spec!)).toEqual({ version: 1, command: ['/usr/bin/node', '-e', COUNTER_JS], tty: false });
    // The template is the driver's own, content-named one. v0.4 templates hold literals only (no secret
    // references), so the token is nowhere in it: it reaches the running workload after restore.
    const tref = templateRefOf(env, s1.id);
    expect(tref.owned).toBe(true);
    expect(tref.name).toMatch(SYNTHESIZED);
    const t = await env.ateapi.getActorTemplate(tref);
    expect(JSON.stringify(t)).not.toContain(TOKEN);
    expect(t.containers[0]!.env.map((v) => v.name)).not.toContain('OPENSHELL_SANDBOX_TOKEN');
    expect(e.tokenSha).toBe(sha(TOKEN));
  });

  it('keeps the workload memory across Stop → Start, each idempotent', async () => {
    const a = JSON.parse((await routerGet(env.local.routerUrl, s1.id, 'default', '/count')).body);
    const b = JSON.parse((await routerGet(env.local.routerUrl, s1.id, 'default', '/count')).body);
    expect(b.n).toBe(a.n + 1);

    await env.client.stopSandbox(s1.id, s1.name);
    const stopped = await env.client.getSandbox(s1.id, s1.name);
    expect(suspendedOf(stopped)).toMatchObject({ status: 'True' });
    expect(phase(stopped)).toBe('STOPPED');
    expect((await env.ateapi.getActor({ atespace: 'default', name: s1.id })).status?.state).toBe(ActorState.ACTOR_STATE_SUSPENDED);
    await env.client.stopSandbox(s1.id, s1.name); // idempotent
    expect(phase(await env.client.getSandbox(s1.id))).toBe('STOPPED');

    await env.client.startSandbox(s1.id, s1.name);
    const running = await env.client.getSandbox(s1.id, s1.name);
    expect(phase(running)).toBe('READY');
    await env.client.startSandbox(s1.id, s1.name); // idempotent
    const c = JSON.parse((await routerGet(env.local.routerUrl, s1.id, 'default', '/count')).body);
    expect(c.n).toBe(b.n + 1);
  });

  it('reports a stop in progress as Suspended=False PodTerminating before Suspended=True', async () => {
    const from = watch.events.length;
    await env.client.stopSandbox(s1.id, s1.name);
    await watch.waitFor((e) => e.payload?.$case === 'sandbox' && e.payload.value.sandbox?.id === s1.id && suspendedOf(e.payload.value.sandbox)?.status === 'True', 30_000, from);
    const seq = watch.sandboxEvents(s1.id).slice(-5);
    const iTerm = seq.findIndex((x) => suspendedOf(x)?.reason === 'PodTerminating');
    const iDone = seq.findIndex((x) => suspendedOf(x)?.status === 'True');
    expect(iTerm).toBeGreaterThanOrEqual(0);
    expect(iDone).toBeGreaterThan(iTerm);
    await env.client.startSandbox(s1.id, s1.name);
  });

  it('an actor suspended outside the gateway reads as resuming on demand, never ERROR or STOPPED', async () => {
    const from = watch.events.length;
    await env.ateapi.suspendActor({ atespace: 'default', name: s1.id }); // idle suspend / an operator
    const ev = await watch.waitFor(
      (e) => e.payload?.$case === 'sandbox' && e.payload.value.sandbox?.id === s1.id && readyOf(e.payload.value.sandbox)?.reason === 'ResumesOnDemand',
      30_000,
      from,
    );
    const sb = (ev.payload as { value: { sandbox: DriverSandbox } }).value.sandbox;
    expect(readyOf(sb)?.status).toBe('Unknown');
    expect(suspendedOf(sb)).toBeUndefined();
    expect(phase(sb)).toBe('PROVISIONING');
    const got = await env.client.getSandbox(s1.id, s1.name);
    expect(phase(got)).toBe('PROVISIONING');
    // A request resumes it (the router), and the driver sees it running again.
    const r = await routerGet(env.local.routerUrl, s1.id, 'default', '/count');
    expect(r.status).toBe(200);
    await watch.waitFor((e) => e.payload?.$case === 'sandbox' && e.payload.value.sandbox?.id === s1.id && readyOf(e.payload.value.sandbox)?.status === 'True', 30_000, from);
    expect(watch.sandboxEvents(s1.id).every((x) => phase(x) !== 'ERROR')).toBe(true);
  });

  it('a worker dying under a running sandbox: CRASHED, then the driver reverts and resumes it (Ready=Unknown Recovering, then Ready=True from its last snapshot)', async () => {
    const countOf = async () => (JSON.parse((await routerGet(env.local.routerUrl, s1.id, 'default', '/count')).body) as { n: number }).n;
    // The last external snapshot is the one Stop takes, with the counter at n0; memory then moves past it.
    const n0 = await countOf();
    await env.client.stopSandbox(s1.id, s1.name);
    await env.client.startSandbox(s1.id, s1.name);
    expect(await countOf()).toBe(n0 + 1);
    const from = watch.events.length;
    // The worker's sandbox process dies (v0.4: the actor goes CRASHED and cannot be resumed until reverted).
    const h = env.local.actors.sandboxOf('default', s1.id);
    expect(h).not.toBeNull();
    process.kill(h!.pid, 'SIGKILL');
    const isS1 = (e: (typeof watch.events)[number]) => e.payload?.$case === 'sandbox' && e.payload.value.sandbox?.id === s1.id;
    const rec = await watch.waitFor((e) => isS1(e) && readyOf((e.payload as { value: { sandbox: DriverSandbox } }).value.sandbox)?.reason === 'Recovering', 30_000, from);
    const recSb = (rec.payload as { value: { sandbox: DriverSandbox } }).value.sandbox;
    expect(readyOf(recSb)?.status).toBe('Unknown');
    expect(phase(recSb)).toBe('PROVISIONING');
    await watch.waitFor((e) => isS1(e) && readyOf((e.payload as { value: { sandbox: DriverSandbox } }).value.sandbox)?.status === 'True', 60_000, watch.events.indexOf(rec));
    const recovered = await watch.waitFor((e) => e.payload?.$case === 'platformEvent' && e.payload.value.sandboxId === s1.id && e.payload.value.event?.reason === 'Recovered', 10_000, from);
    expect(recovered.payload?.$case === 'platformEvent' && recovered.payload.value.event?.message).toMatch(/crashed.*reverted to its last snapshot and resumed/);
    expect((await env.ateapi.getActor({ atespace: 'default', name: s1.id })).status?.state).toBe(ActorState.ACTOR_STATE_RUNNING);
    expect(phase(await env.client.getSandbox(s1.id, s1.name))).toBe('READY');
    // Restored from the last external snapshot: the counter continues from n0 (what it held after n0+1 was lost).
    expect(await countOf()).toBe(n0 + 1);
    // Never an error, never stopped while it was being recovered; the workload still has its identity.
    const during = watch.events.slice(from).filter(isS1).map((e) => (e.payload as { value: { sandbox: DriverSandbox } }).value.sandbox);
    expect(during.map(phase).filter((p) => p === 'ERROR' || p === 'STOPPED')).toEqual([]);
    const e = JSON.parse((await routerGet(env.local.routerUrl, s1.id, 'default', '/env')).body) as Record<string, string | null>;
    expect([e.id, e.name, e.tokenSha]).toEqual([s1.id, 'first', sha(TOKEN)]);
  }, 120_000);

  it('answers NOT_FOUND for an unknown id, INVALID_ARGUMENT for none, and deleted=false for an absent sandbox', async () => {
    const unknown = randomUUID();
    await expectGrpcError(env.client.getSandbox(unknown, 'nope'), status.NOT_FOUND, /not found/);
    await expectGrpcError(env.client.stopSandbox(unknown, 'nope'), status.NOT_FOUND);
    await expectGrpcError(env.client.startSandbox(unknown, 'nope'), status.NOT_FOUND);
    expect(await env.client.deleteSandbox(unknown, 'nope')).toBe(false);
    await expectGrpcError(env.client.getSandbox(''), status.INVALID_ARGUMENT);
    await expectGrpcError(env.client.deleteSandbox(''), status.INVALID_ARGUMENT);
  });

  it('bootstraps a new watch with a snapshot of every sandbox, echoing id and name', async () => {
    const w2 = new WatchRecorder(env.client);
    try {
      const first = await w2.waitFor(() => true, 10_000);
      expect(first.payload?.$case).toBe('sandbox');
      const sb = (first.payload as { value: { sandbox: DriverSandbox } }).value.sandbox;
      expect(sb.id).toBe(s1.id);
      expect(sb.name).toBe('first');
      expect(sb.status?.name).toBe('first');
      expect(sb.workspace).toBe('default');
    } finally {
      w2.cancel();
    }
  });

  it('uses a pre-provisioned template without creating, changing or deleting it', async () => {
    const ref = { atespace: 'default', name: 'ops-counter' };
    const before = await env.ateapi.getActorTemplate(ref);
    const namesBefore = (await env.ateapi.listAllActorTemplates('default')).map((t) => t.metadata!.name).sort();
    const p1 = sandboxOf({ image: env.image, name: 'preprov', driverConfig: { actor_template: 'ops-counter' } });
    names.set(p1.id, p1.name);
    await env.client.validateSandboxCreate(p1);
    await env.client.createSandbox(p1);
    const sb = await waitSandbox(env.client, p1.id, (x) => readyOf(x)?.status === 'True' || readyOf(x)?.status === 'False');
    expect(phase(sb)).toBe('READY');
    expect((await env.ateapi.getActor({ atespace: 'default', name: p1.id })).actorTemplate).toEqual(ref);
    expect(templateRefOf(env, p1.id)).toEqual({ ...ref, owned: false });
    // No template of the driver's own was made for it.
    expect((await env.ateapi.listAllActorTemplates('default')).map((t) => t.metadata!.name).sort()).toEqual(namesBefore);
    const r = await routerGet(env.local.routerUrl, p1.id, 'default', '/count');
    expect(r.status).toBe(200);
    expect(await env.client.deleteSandbox(p1.id, p1.name)).toBe(true);
    const after = await env.ateapi.getActorTemplate(ref);
    expect(after.metadata?.uid).toBe(before.metadata?.uid);
    expect({ ...after, metadata: undefined, status: undefined }).toEqual({ ...before, metadata: undefined, status: undefined });
    expect(after.status?.goldenSnapshotStatus?.goldenTag).toEqual(before.status?.goldenSnapshotStatus?.goldenTag);
  });

  it('surfaces a provisioning failure as Ready=False with a descriptive reason and a Warning event', async () => {
    // An operator template whose workload exits at once: its golden snapshot fails, terminally (v0.4 refuses
    // an unknown image already at CreateActorTemplate, so the failure shows at the golden snapshot).
    await env.ateapi.createActorTemplate(operatorTemplate('ops-broken', env.image, { command: ['/usr/bin/node', '-e', 'process.exit(3)'], probeTimeoutSeconds: 5 }));
    const b1 = sandboxOf({ image: env.image, name: 'broken', driverConfig: { actor_template: 'ops-broken' } });
    names.set(b1.id, b1.name);
    await env.client.createSandbox(b1);
    const sb = await waitSandbox(env.client, b1.id, (x) => readyOf(x)?.status === 'False');
    expect(readyOf(sb)?.reason).toBe('TemplateNotReady');
    expect(readyOf(sb)?.message).toMatch(/golden snapshot of ActorTemplate default\/ops-broken failed: \w+: /);
    expect(phase(sb)).toBe('ERROR');
    const warn = await watch.waitFor((e) => e.payload?.$case === 'platformEvent' && e.payload.value.sandboxId === b1.id && e.payload.value.event?.type === 'Warning', 10_000);
    expect(warn.payload?.$case === 'platformEvent' && warn.payload.value.event?.reason).toBe('TemplateNotReady');
    await expectGrpcError(env.client.stopSandbox(b1.id, b1.name), status.FAILED_PRECONDITION, /delete it/);
    expect(await env.client.deleteSandbox(b1.id, b1.name)).toBe(true);
    expect(await env.ateapi.findActor({ atespace: 'default', name: b1.id })).toBeUndefined();
  });

  it('keeps every sandbox across a driver restart, and Start works without the token being resent', async () => {
    await env.client.stopSandbox(s1.id, s1.name);
    await env.restartDriver();
    // The old watch stream ended with the old process; a new one bootstraps from the restarted driver.
    watch.cancel();
    watch = new WatchRecorder(env.client);
    await watch.waitFor((ev) => ev.payload?.$case === 'sandbox' && ev.payload.value.sandbox?.id === s1.id, 10_000);
    const list = await env.client.listSandboxes();
    expect(list.map((x) => [x.id, x.name, x.workspace])).toEqual([[s1.id, 'first', 'default']]);
    expect(phase(list[0]!)).toBe('STOPPED');
    await env.client.startSandbox(s1.id, s1.name);
    expect(phase(await env.client.getSandbox(s1.id, s1.name))).toBe('READY');
    const e = JSON.parse((await routerGet(env.local.routerUrl, s1.id, 'default', '/env')).body);
    expect(e.tokenSha).toBe(sha(TOKEN));
  });

  it('creates and deletes atespaces for workspaces, refusing to delete one that still has sandboxes', async () => {
    await env.client.ensureWorkspace('team-a');
    await env.client.ensureWorkspace('team-a'); // idempotent
    expect((await env.ateapi.getAtespace('team-a')).metadata?.name).toBe('team-a');
    await expectGrpcError(env.client.deleteWorkspace('default'), status.FAILED_PRECONDITION, /still has 1 sandbox \(first\)/);
    await env.client.deleteWorkspace('team-a');
    await env.client.deleteWorkspace('team-a'); // already gone: fine
    await expectGrpcError(env.ateapi.getAtespace('team-a'), status.NOT_FOUND);
    await expectGrpcError(env.client.ensureWorkspace('Bad Name'), status.INVALID_ARGUMENT);
  });

  it('deletes: actor, owned template (with its golden tag) and record go, a deleted event follows, then deleted=false', async () => {
    const tref = templateRefOf(env, s1.id);
    const tpl = await env.ateapi.getActorTemplate(tref);
    // v0.4: the golden snapshot lives on as a published tag in ate-golden; the golden actor itself is gone.
    const goldenTag = tpl.status!.goldenSnapshotStatus!.goldenTag!;
    expect(goldenTag.atespace).toBe('ate-golden');
    expect((await env.ateapi.getTag(goldenTag)).metadata?.name).toBe(goldenTag.name);
    expect(await env.ateapi.findActor({ atespace: 'ate-golden', name: goldenActorName(tpl.metadata!.uid) })).toBeUndefined();
    const from = watch.events.length;
    expect(await env.client.deleteSandbox(s1.id, s1.name)).toBe(true);
    await watch.waitFor((e) => e.payload?.$case === 'deleted' && e.payload.value.sandboxId === s1.id, 10_000, from);
    // deleting=true was reported before the deleted event, never for other sandboxes.
    expect(watch.sandboxEvents(s1.id).some((x) => x.status?.deleting)).toBe(true);
    expect(await env.client.deleteSandbox(s1.id, s1.name)).toBe(false);
    await expectGrpcError(env.client.getSandbox(s1.id, s1.name), status.NOT_FOUND);
    expect(await env.ateapi.findActor({ atespace: 'default', name: s1.id })).toBeUndefined();
    expect(await env.ateapi.findActorTemplate(tref)).toBeUndefined();
    await expectGrpcError(env.ateapi.getTag(goldenTag), status.NOT_FOUND);
    expect(await env.client.listSandboxes()).toEqual([]);
  });

  it('echoed the gateway name with the id in every snapshot it sent', () => {
    const all = watch.sandboxEvents();
    expect(all.length).toBeGreaterThan(0);
    for (const sb of all) {
      expect(sb.name).toBe(names.get(sb.id));
      expect(sb.status?.name).toBe(names.get(sb.id));
    }
  });

  it('shuts down promptly with a watch stream open, removing its socket', async () => {
    const w = new WatchRecorder(env.client);
    const hub = env.driver.driver.hub;
    const before = hub.count;
    await eventually('the watch stream to open', async () => (hub.count > before ? true : undefined), 10_000, 20);
    const t0 = Date.now();
    await env.driver.close();
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(existsSync(env.cfg.socketPath)).toBe(false);
    await eventually('the client stream to end', async () => (w.ended || w.error ? true : undefined), 5_000, 20);
  });
});
