// The driver's v0.4 lifecycle (src/driver/driver.ts, templates.ts, records) against an IN-MEMORY fake of the
// ControlPort that follows the v0.4 state machine (substrate-v0.4.md §4.3, §5.1): templates with a golden tag
// that appears later, CreateActor borrowing it, Resume refusing CRASHED, Revert, Delete with any_state.
// It stands in for the local Substrate v0.4 being written in parallel; the contract tests (tests/driver/*,
// tests/integration/gateway/*) cover the same paths against the real one after composition.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApiError, Code } from '../../src/common/errors.js';
import { setLogLevel } from '../../src/common/log.js';
import * as pb from '../../src/gen/ateapi.js';
import type { DriverSandbox } from '../../src/gen/compute_driver.js';
import { templatePort } from '../../src/driver/adapters.js';
import { derivePhase, REASON } from '../../src/driver/conditions.js';
import { SubstrateDriver } from '../../src/driver/driver.js';
import type { ControlPort, RecordBackend } from '../../src/driver/ports.js';
import { MemoryRecordBackend, SqliteRecordBackend } from '../../src/driver/record-backends.js';
import type { SandboxRecord } from '../../src/driver/records.js';
import { GatewayStandin } from '../security/launch-helpers.js';

const IMAGE = `ghcr.io/acme/agent@sha256:${'a'.repeat(64)}`;
const S = pb.ActorState;
const k = (r: { atespace: string; name: string }) => `${r.atespace}/${r.name}`;
const e = (code: number, m: string) => new ApiError(code, m);

/** A v0.4 Control in memory: only what the driver calls. */
class FakeControl implements ControlPort {
  actors = new Map<string, pb.Actor>();
  templates = new Map<string, pb.ActorTemplate>();
  atespaces = new Set<string>();
  calls: string[] = [];
  /** Golden tags appear this many GetActorTemplate polls after creation. */
  goldenAfterPolls = 2;
  polls = new Map<string, number>();
  noCapacity = false;
  private uid = 0;

  private meta(atespace: string, name: string): pb.ResourceMetadata {
    return { atespace, name, uid: `uid-${++this.uid}`, version: 1 };
  }
  private must(ref: pb.ObjectRef): pb.Actor {
    const a = this.actors.get(k(ref));
    if (!a) throw e(Code.NOT_FOUND, `Actor ${k(ref)} not found`);
    return a;
  }
  private set(a: pb.Actor, state: pb.ActorState, worker = false) {
    a.status = pb.ActorStatus.fromPartial({
      ...a.status,
      state,
      workerAssignment: worker ? { workerPod: 'w-1', workerPodUid: `pod-${this.uid}`, workerPodIps: ['10.1.0.1'], workerEpoch: 1 } : undefined,
    });
    a.metadata!.version++;
  }
  crash(ref: pb.ObjectRef, message: string) {
    const a = this.must(ref);
    this.set(a, S.ACTOR_STATE_CRASHED);
    a.status!.crash = { message };
  }
  async getActor(ref: pb.ObjectRef) {
    this.calls.push(`GetActor ${k(ref)}`);
    return pb.Actor.fromPartial(this.must(ref));
  }
  async findActor(ref: pb.ObjectRef) {
    return this.actors.has(k(ref)) ? this.getActor(ref) : undefined;
  }
  async createActor(req: { actor: pb.ObjectRef; template: pb.ObjectRef; workerSelector?: Record<string, string> }) {
    this.calls.push(`CreateActor ${k(req.actor)}`);
    if (!this.atespaces.has(req.actor.atespace)) throw e(Code.FAILED_PRECONDITION, 'no atespace');
    if (this.actors.has(k(req.actor))) throw e(Code.ALREADY_EXISTS, 'exists');
    const t = this.templates.get(k(req.template));
    if (!t) throw e(Code.NOT_FOUND, `ActorTemplate ${k(req.template)} not found`);
    const tag = t.status?.goldenSnapshotStatus?.goldenTag;
    const a = pb.Actor.fromPartial({
      metadata: this.meta(req.actor.atespace, req.actor.name),
      actorTemplate: req.template,
      status: { state: S.ACTOR_STATE_SUSPENDED, externalSnapshot: tag ? { snapshotUri: `tag://${tag.name}`, actorTemplateUid: t.metadata!.uid } : undefined },
    });
    this.actors.set(k(req.actor), a);
    return pb.Actor.fromPartial(a);
  }
  async resumeActor(ref: pb.ObjectRef) {
    this.calls.push(`ResumeActor ${k(ref)}`);
    const a = this.must(ref);
    if (a.status!.state === S.ACTOR_STATE_RUNNING) return { actor: pb.Actor.fromPartial(a), resumed: false };
    if (a.status!.state !== S.ACTOR_STATE_SUSPENDED && a.status!.state !== S.ACTOR_STATE_PAUSED) throw e(Code.FAILED_PRECONDITION, `AssignWorker prerequisite not met for Actor: ${k(ref)}`);
    if (this.noCapacity) throw e(Code.RESOURCE_EXHAUSTED, 'no worker has room for the actor');
    this.set(a, S.ACTOR_STATE_RUNNING, true);
    return { actor: pb.Actor.fromPartial(a), resumed: true };
  }
  async suspendActor(ref: pb.ObjectRef) {
    this.calls.push(`SuspendActor ${k(ref)}`);
    const a = this.must(ref);
    if (a.status!.state !== S.ACTOR_STATE_SUSPENDED) {
      this.set(a, S.ACTOR_STATE_SUSPENDED);
      a.status!.externalSnapshot = { snapshotUri: `own://${a.metadata!.version}`, contentScope: 1, actorTemplateUid: '' };
    }
    return pb.Actor.fromPartial(a);
  }
  async pauseActor(ref: pb.ObjectRef) {
    this.calls.push(`PauseActor ${k(ref)}`);
    const a = this.must(ref);
    this.set(a, S.ACTOR_STATE_PAUSED);
    return pb.Actor.fromPartial(a);
  }
  async revertActor(ref: pb.ObjectRef) {
    this.calls.push(`RevertActor ${k(ref)}`);
    const a = this.must(ref);
    if (![S.ACTOR_STATE_CRASHED, S.ACTOR_STATE_RUNNING, S.ACTOR_STATE_PAUSED, S.ACTOR_STATE_REVERTING].includes(a.status!.state)) throw e(Code.FAILED_PRECONDITION, 'not revertable');
    this.set(a, S.ACTOR_STATE_SUSPENDED);
    a.status!.crash = undefined;
    return pb.Actor.fromPartial(a);
  }
  async deleteActor(ref: pb.ObjectRef, o: { anyState?: boolean; uid?: string } = {}) {
    this.calls.push(`DeleteActor ${k(ref)}${o.anyState ? ' any_state' : ''}`);
    const a = this.must(ref);
    if (!o.anyState && ![S.ACTOR_STATE_SUSPENDED, S.ACTOR_STATE_CRASHED].includes(a.status!.state)) throw e(Code.FAILED_PRECONDITION, 'not deletable');
    if (o.uid && o.uid !== a.metadata!.uid) throw e(Code.ABORTED, 'uid');
    this.actors.delete(k(ref));
    return a;
  }
  async listAllActors(atespace = '') {
    return [...this.actors.values()].filter((a) => !atespace || a.metadata!.atespace === atespace).map((a) => pb.Actor.fromPartial(a));
  }
  async ensureAtespace(name: string) {
    this.atespaces.add(name);
  }
  async getAtespace(name: string) {
    return { metadata: this.meta('', name) };
  }
  async deleteAtespace(name: string) {
    this.atespaces.delete(name);
    return { metadata: this.meta('', name) };
  }
  async createActorTemplate(t: pb.ActorTemplate) {
    const ref = { atespace: t.metadata!.atespace, name: t.metadata!.name };
    this.calls.push(`CreateActorTemplate ${k(ref)}`);
    if (this.templates.has(k(ref))) throw e(Code.ALREADY_EXISTS, 'exists');
    const stored = pb.ActorTemplate.fromPartial({ ...t, metadata: this.meta(ref.atespace, ref.name), status: { goldenSnapshotStatus: { errorMessage: '' } } });
    this.templates.set(k(ref), stored);
    this.polls.set(k(ref), 0);
    return stored;
  }
  async getActorTemplate(ref: pb.ObjectRef) {
    const t = this.templates.get(k(ref));
    if (!t) throw e(Code.NOT_FOUND, `ActorTemplate ${k(ref)} not found`);
    const n = (this.polls.get(k(ref)) ?? 0) + 1;
    this.polls.set(k(ref), n);
    if (n >= this.goldenAfterPolls && !t.status!.goldenSnapshotStatus!.goldenTag && !t.status!.goldenSnapshotStatus!.errorMessage) {
      t.status!.goldenSnapshotStatus!.goldenTag = { atespace: 'ate-golden', name: t.metadata!.uid };
    }
    return pb.ActorTemplate.fromPartial(t);
  }
  async findActorTemplate(ref: pb.ObjectRef) {
    return this.templates.has(k(ref)) ? this.getActorTemplate(ref) : undefined;
  }
  async deleteActorTemplate(ref: pb.ObjectRef) {
    this.calls.push(`DeleteActorTemplate ${k(ref)}`);
    const t = this.templates.get(k(ref));
    if (!t) throw e(Code.NOT_FOUND, 'gone');
    this.templates.delete(k(ref));
    return t;
  }
}

function sandbox(id: string, o: { command?: string[]; token?: string; annotations?: Record<string, string>; launch?: Uint8Array } = {}): DriverSandbox {
  return {
    id,
    name: `box-${id}`,
    namespace: '',
    workspace: 'default',
    spec: {
      logLevel: '',
      environment: {},
      sandboxToken: o.token ?? '',
      command: o.command ?? ['node', 'app.js'],
      tty: false,
      awaitMainProcessAttachment: false,
      launchAuthentication: o.launch ? Buffer.from(o.launch) : Buffer.alloc(0),
      template: { image: IMAGE, agentSocketPath: '', labels: {}, environment: {}, platformConfig: o.annotations ? { annotations: o.annotations } : undefined },
    } as NonNullable<DriverSandbox['spec']>,
  };
}

/** until() for conditions that must be awaited. */
async function untilAsync<T>(fn: () => Promise<T | undefined | false>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function until<T>(fn: () => T | undefined | false, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('SubstrateDriver on the v0.4 wire (fake Control)', () => {
  let dir: string;
  let fake: FakeControl;
  let driver: SubstrateDriver;
  let gw: GatewayStandin;
  const delivered: Array<{ id: string; worker: string }> = [];
  const v01 = async (id: string, o: Parameters<typeof sandbox>[1] = {}) => sandbox(id, { ...o, launch: (await gw.mint({ sandboxId: id, authEpoch: 1 })).bytes });
  const make = (records: RecordBackend = SqliteRecordBackend.inStateDir(dir), over: Partial<ConstructorParameters<typeof SubstrateDriver>[0]> = {}) =>
    new SubstrateDriver({
      control: fake,
      records,
      templates: templatePort({ snapshotsLocation: 'local://snapshots/', sandboxClass: 'gvisor', gatewayEndpoint: '' }),
      namespace: 'default',
      stopMode: 'suspend',
      defaultImage: IMAGE,
      version: '0.0.0-test',
      workerSelector: {},
      templateReadyTimeoutMs: 5000,
      pollIntervalMs: 50,
      templateLabels: { 'default/shared': { 'openshell.ai/sandbox-attachable': 'true' } },
      deliverLaunch: async (r: SandboxRecord) => {
        delivered.push({ id: r.id, worker: fake.actors.get(`default/${r.id}`)?.status?.workerAssignment?.workerPodUid ?? '' });
      },
      ...over,
    });
  const readyPhase = (id: string) => driver.getSandbox(id).then((sb) => derivePhase(sb.status!.conditions));

  beforeEach(async () => {
    setLogLevel('error');
    dir = mkdtempSync(join(tmpdir(), 'drv-v04-'));
    gw ??= await GatewayStandin.create('gw-1', 'key-a');
    delivered.length = 0;
    fake = new FakeControl();
    driver = make();
    await driver.start();
  });
  afterEach(async () => {
    await driver.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shares one template between sandboxes of the same spec; waits for the golden tag before CreateActor; deletes it with the last user', async () => {
    await driver.create(await v01('s1'));
    await until(() => driver.records.get('s1')?.provisioned && fake.actors.get('default/s1')?.status?.state === S.ACTOR_STATE_RUNNING);
    const t1 = driver.records.get('s1')!.template;
    expect(t1).toMatch(/^sbx-tpl-[0-9a-f]{20}$/);
    // The golden tag existed when the actor was created: it borrowed the golden snapshot.
    expect(fake.actors.get('default/s1')!.status!.externalSnapshot?.snapshotUri ?? '').not.toBe('');
    const createIdx = fake.calls.indexOf('CreateActor default/s1');
    expect(fake.calls.slice(0, createIdx).filter((c) => c.startsWith('CreateActorTemplate'))).toHaveLength(1);

    await driver.create(await v01('s2'));
    await until(() => fake.actors.get('default/s2')?.status?.state === S.ACTOR_STATE_RUNNING && driver.records.get('s2')?.provisioned && delivered.some((d) => d.id === 's2'));
    // Each sandbox got its own credentials after restore (the shared template carries none).
    expect(delivered.map((d) => d.id)).toEqual(['s1', 's2']);
    expect(driver.records.get('s2')!.template).toBe(t1);
    expect(fake.calls.filter((c) => c.startsWith('CreateActorTemplate'))).toHaveLength(2); // the second got ALREADY_EXISTS and reused it
    expect(fake.templates.size).toBe(1);
    expect(await readyPhase('s2')).toBe('READY');

    // A different spec: another template.
    await driver.create(await v01('s3', { command: ['node', 'other.js'] }));
    await until(() => fake.actors.get('default/s3')?.status?.state === S.ACTOR_STATE_RUNNING);
    expect(driver.records.get('s3')!.template).not.toBe(t1);
    expect(fake.templates.size).toBe(2);

    expect(await driver.deleteSandbox('s1')).toBe(true);
    expect(fake.calls).toContain('DeleteActor default/s1 any_state');
    expect(fake.templates.has(`default/${t1}`)).toBe(true); // s2 still uses it
    expect(await driver.deleteSandbox('s2')).toBe(true);
    expect(fake.templates.has(`default/${t1}`)).toBe(false);
    expect(await driver.deleteSandbox('s2')).toBe(false);
  });

  it('Stop suspends (Suspended=True, never with Ready=True), Start resumes with a new runtime generation', async () => {
    const ident = await driver.create(sandbox('s1'));
    expect(ident).toMatch(/^substrate:default\/s1:[0-9a-f]{16}#g1$/);
    await until(() => fake.actors.get('default/s1')?.status?.state === S.ACTOR_STATE_RUNNING && !driver.records.get('s1')?.failureReason && driver.records.get('s1')?.provisioned);
    await until(async () => false, 50).catch(() => undefined);
    await driver.stopSandbox('s1');
    expect(fake.actors.get('default/s1')!.status!.state).toBe(S.ACTOR_STATE_SUSPENDED);
    const sb = await driver.getSandbox('s1');
    expect(sb.status!.conditions.find((c) => c.type === 'Suspended')?.status).toBe('True');
    expect(sb.status!.conditions.some((c) => c.type === 'Ready' && c.status === 'True')).toBe(false);
    expect(derivePhase(sb.status!.conditions, false, 'v0.0')).toBe('STOPPED');
    expect(derivePhase(sb.status!.conditions, false, 'v0.1')).toBe('STOPPED');
    const again = await driver.startSandbox({ sandboxId: 's1', name: '', launchAuthentication: Buffer.alloc(0), generationId: '', expectedRuntimeIdentity: ident });
    expect(again).toBe(ident.replace('#g1', '#g2'));
    const running = await driver.getSandbox('s1');
    expect(running.status!.instanceId).toMatch(/^w-1~[0-9a-f]{8}$/);
    expect(await readyPhase('s1')).toBe('READY');
  });

  it('recovers a CRASHED actor the gateway wants running (RevertActor → ResumeActor, credentials again), reported as transient, also while a retryable failure is retried', async () => {
    await driver.create(await v01('s1'));
    await until(() => driver.records.get('s1')?.provisioned && fake.actors.get('default/s1')?.status?.state === S.ACTOR_STATE_RUNNING);
    fake.noCapacity = true;
    fake.crash({ atespace: 'default', name: 's1' }, 'worker pod went away while hosting the actor');
    await driver.pollOnce();
    // The recovery runs and fails for want of capacity, which a retry can fix: it stays transient
    // (Ready=Unknown Recovering, PROVISIONING), never ERROR, and says why it is waiting.
    const failed = await until(() => {
      const sb = (driver as unknown as { project(r: unknown): DriverSandbox }).project(driver.records.get('s1'));
      const r = sb.status!.conditions.find((c) => c.type === 'Ready');
      return r?.reason === REASON.recovering && /retrying/.test(r.message) ? r : undefined;
    });
    expect(failed.status).toBe('Unknown');
    expect(failed.message).toMatch(/no Substrate worker has room/);
    expect(await readyPhase('s1')).toBe('PROVISIONING');
    expect(fake.calls).toContain('RevertActor default/s1');
    expect(fake.actors.get('default/s1')!.status!.state).toBe(S.ACTOR_STATE_SUSPENDED);
    // Capacity back: a StartSandbox (or the next recovery) brings it back to READY.
    fake.noCapacity = false;
    await driver.startSandbox({ sandboxId: 's1', name: '', launchAuthentication: Buffer.alloc(0), generationId: '', expectedRuntimeIdentity: '' });
    expect(await readyPhase('s1')).toBe('READY');

    // A crash with capacity: the poll recovers it by itself.
    fake.crash({ atespace: 'default', name: 's1' }, 'worker restarted while hosting the actor');
    const n = fake.calls.filter((c) => c === 'RevertActor default/s1').length;
    await driver.pollOnce();
    await until(() => fake.actors.get('default/s1')?.status?.state === S.ACTOR_STATE_RUNNING);
    expect(fake.calls.filter((c) => c === 'RevertActor default/s1').length).toBe(n + 1);
    await until(async () => false, 100).catch(() => undefined);
    expect(await readyPhase('s1')).toBe('READY');
    // Restored from an older snapshot: the launch credentials were delivered again after each recovery.
    expect(delivered.filter((d) => d.id === 's1').length).toBeGreaterThanOrEqual(3);
  });

  it('a sandbox created while every worker is busy waits (PROVISIONING, never ERROR) and starts once a worker has room', async () => {
    fake.noCapacity = true;
    await driver.create(sandbox('s1'));
    const waiting = await untilAsync(async () => {
      const sb = await driver.getSandbox('s1');
      const r = sb.status!.conditions.find((c) => c.type === 'Ready');
      return r && /waiting for a free Substrate worker/.test(r.message) ? r : undefined;
    });
    expect(waiting.status).toBe('Unknown');
    expect(await readyPhase('s1')).toBe('PROVISIONING');
    expect(driver.records.get('s1')?.failureReason).toBeUndefined();
    const tries = fake.calls.filter((c) => c === 'ResumeActor default/s1').length;
    expect(tries).toBeGreaterThanOrEqual(1);
    fake.noCapacity = false;
    await untilAsync(async () => ((await readyPhase('s1')) === 'READY' ? true : undefined), 15_000);
    expect(fake.actors.get('default/s1')!.status!.state).toBe(S.ACTOR_STATE_RUNNING);
  });

  it('a terminal golden snapshot error fails the sandbox with that message', async () => {
    fake.goldenAfterPolls = 1_000_000;
    const orig = fake.getActorTemplate.bind(fake);
    fake.getActorTemplate = async (ref) => {
      const t = fake.templates.get(k(ref));
      if (t) t.status!.goldenSnapshotStatus!.errorMessage = 'GoldenActorCrashed: the golden actor crashed';
      return orig(ref);
    };
    await driver.create(sandbox('s1'));
    const r = (await until(() => (driver.records.get('s1')?.failureReason ? driver.records.get('s1') : undefined)))!;
    expect(r.failureReason).toBe('TemplateNotReady');
    expect(r.failureMessage).toMatch(/golden snapshot of ActorTemplate default\/sbx-tpl-[0-9a-f]{20} failed: GoldenActorCrashed: the golden actor crashed/);
    expect(fake.actors.size).toBe(0);
    expect(await readyPhase('s1')).toBe('ERROR');
  });

  it('a pre-provisioned template is read, admitted by template_labels, waited for, and never deleted', async () => {
    await fake.createActorTemplate(pb.ActorTemplate.fromPartial({ metadata: { atespace: 'default', name: 'shared' }, containers: [{ name: 'c', image: IMAGE, command: ['x'] }] }));
    await fake.createActorTemplate(pb.ActorTemplate.fromPartial({ metadata: { atespace: 'default', name: 'private' }, containers: [{ name: 'c', image: IMAGE, command: ['x'] }] }));
    await expect(driver.validate(sandbox('p0', { annotations: { substrate_actor_template: 'private' } }))).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION });
    await expect(driver.validate(sandbox('p0', { annotations: { substrate_actor_template: 'missing' } }))).rejects.toThrow(/does not exist/);
    await driver.create(sandbox('p1', { annotations: { substrate_actor_template: 'shared' } }));
    await until(() => fake.actors.get('default/p1')?.status?.state === S.ACTOR_STATE_RUNNING);
    expect(driver.records.get('p1')).toMatchObject({ owned: false, template: 'shared', templateAtespace: 'default' });
    await driver.deleteSandbox('p1');
    expect(fake.templates.has('default/shared')).toBe(true);
    expect(fake.calls.some((c) => c.startsWith('DeleteActorTemplate'))).toBe(false);
  });

  it('records survive a restart in <state_dir>/driver.db (0600); the sandbox token is kept, never in a template', async () => {
    await driver.create(sandbox('s1', { token: 'ey.the-sandbox-token.sig' }));
    await until(() => driver.records.get('s1')?.provisioned);
    await driver.stop();
    const db = join(dir, 'driver.db');
    expect(statSync(db).mode & 0o777).toBe(0o600);
    for (const t of fake.templates.values()) expect(JSON.stringify(pb.ActorTemplate.toJSON(t))).not.toContain('the-sandbox-token');
    driver = make();
    await driver.start();
    expect(driver.records.get('s1')).toMatchObject({ id: 's1', token: 'ey.the-sandbox-token.sig', provisioned: true, owned: true });
    expect((await driver.listSandboxes()).map((s) => s.id)).toEqual(['s1']);
  });

  it('an in-memory backend works the same (tests, throwaway drivers)', async () => {
    await driver.stop();
    const mem = new MemoryRecordBackend();
    driver = make(mem);
    await driver.start();
    await driver.create(sandbox('m1'));
    expect(mem.rows.get('m1')?.id).toBe('m1');
  });
});

describe('where records live', () => {
  it('SQLite in <state_dir>/driver.db locally or without a Kubernetes config; Kubernetes Secrets in a cluster', async () => {
    const { loadConfig } = await import('../../src/common/config.js');
    const { recordBackendFor } = await import('../../src/driver/index.js');
    const { KubeSecretRecordBackend } = await import('../../src/driver/record-backends.js');
    const { writeFileSync } = await import('node:fs');
    const d = mkdtempSync(join(tmpdir(), 'drv-rec-'));
    try {
      const noKube = { HOME: d };
      const cfg = loadConfig({ env: {}, flags: { state_dir: d } });
      const local = recordBackendFor(cfg, undefined, noKube);
      expect(local).toBeInstanceOf(SqliteRecordBackend);
      expect((local as SqliteRecordBackend).path).toBe(join(d, 'driver.db'));
      const kc = join(d, 'kubeconfig');
      writeFileSync(
        kc,
        'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n',
      );
      const cluster = loadConfig({ env: {}, flags: { state_dir: d, kubeconfig: kc } });
      const b = recordBackendFor(cluster, undefined, noKube);
      expect(b).toBeInstanceOf(KubeSecretRecordBackend);
      expect(b.describe).toBe('Kubernetes Secrets in namespace default');
      // With a local Substrate the driver's own SQLite wins, whatever Kubernetes config exists.
      expect(recordBackendFor(cluster, { apiEndpoint: 'unix:/x', stateDir: d }, noKube)).toBeInstanceOf(SqliteRecordBackend);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
