// Self-tests of the v0.1 mode of the gateway stand-in (harness.ts), against a PROGRAMMABLE FAKE DRIVER served in this
// process on a real Unix socket. The fake is not a stand-in for our driver: it exists to feed the stand-in answers the
// real driver never gives (bad metadata, another admission ack, invalid Timestamps, an out-of-band delete), so each rule
// the stand-in enforces is seen to bite before the stand-in is used to judge the real driver (lifecycle-v01.test.ts,
// contract.test.ts). Every case names the reference section it checks (shared/reference/openshell-v0.1.md, -addendum.md).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { importSPKI, jwtVerify } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ComputeDriverService,
  type DriverCondition,
  type DriverPlatformEvent,
  type DriverSandbox,
  type GetCapabilitiesResponse,
  type WatchSandboxesEvent,
} from '../../../src/gen/compute_driver.js';
import type { PeerMetadata } from '../../../src/gen/extension.js';
import { parseLaunchAuthentication, verifySessionJwt, keyRing } from '../../../src/sandbox/launch-auth.mjs';
import {
  ADMISSION_CHANGED,
  DRIVER_CONFIG_DISABLED,
  Gateway,
  GatewayError,
  admissionAcknowledgement,
  defaultGatewayAdmission,
  type GatewayOptions,
} from './harness.js';

const DEFAULT_ACK = admissionAcknowledgement(defaultGatewayAdmission());
const FAR_FUTURE = new Date(8.64e15); // seconds 8.64e12 > 9999-12-31: an out-of-range Timestamp

function driverExtension(over: Partial<PeerMetadata> = {}): PeerMetadata {
  return {
    protocolVersion: { major: 1, minor: 0 },
    implementationName: 'fake-driver',
    implementationVersion: '1.0.0',
    supportedCapabilities: ['openshell.compute.contract'],
    requiredCapabilities: ['openshell.compute.contract'],
    ...over,
  };
}

function caps(over: Partial<GetCapabilitiesResponse> = {}): GetCapabilitiesResponse {
  return {
    driverName: 'fake',
    driverVersion: '1',
    defaultImage: '',
    gatewayManagesLifecycle: false,
    supportsSandboxAuthentication: false,
    driverReportsRuntimeReadiness: false,
    rootfsTarStagingDir: '',
    rootfsTarMaxBytes: 0,
    extension: driverExtension(),
    resourceAdmissionPolicy: DEFAULT_ACK,
    ...over,
  };
}

/** `t` null = no transition_time at all. */
const cond = (type: string, status: string, reason = '', t: Date | null = new Date()): DriverCondition => ({ type, status, reason, message: '', transitionTime: t ?? undefined });

/** A programmable v0.1 driver: in-memory sandboxes, every request recorded, watch events pushed by the test. */
class FakeDriver {
  dir = mkdtempSync(join(tmpdir(), 'gw-fake-'));
  socket = join(this.dir, 'd.sock');
  server = new grpc.Server();
  capabilities = caps();
  capsError?: { code: grpc.status; details: string };
  sandboxes = new Map<string, DriverSandbox>();
  /** What GetSandbox answers, when set (else the stored sandbox). */
  getOverride?: (id: string) => DriverSandbox | undefined;
  requests: Array<{ method: string; req: any }> = [];
  streams: Array<grpc.ServerWritableStream<unknown, WatchSandboxesEvent>> = [];
  identity = (id: string, g: number) => `fake:${id}#g${g}`;
  generations = new Map<string, number>();

  async start(): Promise<this> {
    const rec =
      <T>(method: string, fn: (req: any) => T) =>
      (call: { request: unknown }, cb: grpc.sendUnaryData<T>) => {
        this.requests.push({ method, req: call.request });
        try {
          cb(null, fn(call.request));
        } catch (e) {
          cb(e as grpc.ServiceError);
        }
      };
    const notFound = (id: string) => Object.assign(new Error(`no sandbox ${id}`), { code: grpc.status.NOT_FOUND, details: `no sandbox ${id}` });
    this.server.addService(ComputeDriverService, {
      getCapabilities: rec('GetCapabilities', () => {
        if (this.capsError) throw Object.assign(new Error(this.capsError.details), this.capsError);
        return this.capabilities;
      }),
      authenticateSandbox: rec('AuthenticateSandbox', () => {
        throw Object.assign(new Error('no'), { code: grpc.status.UNIMPLEMENTED, details: 'no' });
      }),
      validateSandboxCreate: rec('ValidateSandboxCreate', () => ({})),
      createSandbox: rec('CreateSandbox', (r: { sandbox: DriverSandbox }) => {
        const sb = { ...r.sandbox, spec: undefined, status: { name: r.sandbox.name, instanceId: 'i', agentFd: '', sandboxFd: '', deleting: false, conditions: [cond('Ready', 'True', 'Running')] } };
        this.sandboxes.set(sb.id, sb);
        this.generations.set(sb.id, 1);
        return { runtimeIdentity: this.identity(sb.id, 1) };
      }),
      getSandbox: rec('GetSandbox', (r: { sandboxId: string }) => {
        const sb = this.getOverride ? this.getOverride(r.sandboxId) : this.sandboxes.get(r.sandboxId);
        if (!sb) throw notFound(r.sandboxId);
        return { sandbox: sb };
      }),
      listSandboxes: rec('ListSandboxes', () => ({ sandboxes: [...this.sandboxes.values()] })),
      stopSandbox: rec('StopSandbox', (r: { sandboxId: string }) => {
        const sb = this.sandboxes.get(r.sandboxId);
        if (!sb) throw notFound(r.sandboxId);
        sb.status!.conditions = [cond('Suspended', 'True', 'Stopped'), cond('Ready', 'Unknown', 'Stopped')];
        return {};
      }),
      startSandbox: rec('StartSandbox', (r: { sandboxId: string }) => {
        const sb = this.sandboxes.get(r.sandboxId);
        if (!sb) throw notFound(r.sandboxId);
        sb.status!.conditions = [cond('Ready', 'True', 'Running')];
        const g = (this.generations.get(sb.id) ?? 1) + 1;
        this.generations.set(sb.id, g);
        return { runtimeIdentity: this.identity(sb.id, g) };
      }),
      deleteSandbox: rec('DeleteSandbox', (r: { sandboxId: string }) => ({ deleted: this.sandboxes.delete(r.sandboxId) })),
      watchSandboxes: (call: grpc.ServerWritableStream<unknown, WatchSandboxesEvent>) => {
        this.requests.push({ method: 'WatchSandboxes', req: {} });
        this.streams.push(call);
        call.on('cancelled', () => (this.streams = this.streams.filter((s) => s !== call)));
      },
      ensureWorkspace: rec('EnsureWorkspace', () => ({})),
      deleteWorkspace: rec('DeleteWorkspace', () => ({})),
    } as unknown as grpc.UntypedServiceImplementation);
    await new Promise<number>((res, rej) => this.server.bindAsync(`unix:${this.socket}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    return this;
  }

  emit(ev: WatchSandboxesEvent): void {
    for (const s of this.streams) s.write(ev);
  }

  snapshot(sb: DriverSandbox): void {
    this.emit({ payload: { $case: 'sandbox', value: { sandbox: sb } } });
  }

  of(method: string): any[] {
    return this.requests.filter((r) => r.method === method).map((r) => r.req);
  }

  methods(): string[] {
    return this.requests.map((r) => r.method).filter((m) => m !== 'WatchSandboxes' && m !== 'ListSandboxes');
  }

  close(): void {
    this.server.forceShutdown();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function sandbox(id: string, o: { driverConfig?: Record<string, unknown> } = {}): DriverSandbox {
  return {
    id,
    name: `name-${id}`,
    namespace: '',
    workspace: 'default',
    spec: {
      logLevel: '',
      environment: {},
      template: { image: 'img@sha256:' + '0'.repeat(64), agentSocketPath: '', labels: {}, environment: {}, driverConfig: o.driverConfig },
      sandboxToken: '',
      command: [],
      tty: false,
      awaitMainProcessAttachment: false,
      launchAuthentication: Buffer.alloc(0),
    },
  };
}

let fake: FakeDriver | undefined;
let gw: Gateway | undefined;
afterEach(async () => {
  await gw?.stop();
  fake?.close();
  gw = undefined;
  fake = undefined;
});

async function setup(o: Partial<GatewayOptions> = {}, fakeCaps: Partial<GetCapabilitiesResponse> = {}): Promise<{ fake: FakeDriver; gw: Gateway }> {
  fake = await new FakeDriver().start();
  fake.capabilities = caps(fakeCaps);
  gw = new Gateway({ socketPath: fake.socket, generation: 'v0.1', reconcileIntervalMs: 0, watchRetryMs: 100, ...o });
  return { fake, gw };
}

async function startupError(o: Partial<GatewayOptions>, fakeCaps: Partial<GetCapabilitiesResponse>): Promise<GatewayError> {
  const s = await setup(o, fakeCaps);
  const e = await s.gw.start().catch((x: unknown) => x);
  await s.gw.stop();
  s.fake.close();
  gw = undefined;
  fake = undefined;
  expect(e).toBeInstanceOf(GatewayError);
  return e as GatewayError;
}

describe('v0.1 startup: negotiation (§2.2, §2.3)', () => {
  it('sends the real gateway PeerMetadata and calls only GetCapabilities (no GetGatewayListenerRequirements)', async () => {
    const s = await setup();
    await s.gw.start();
    expect(s.fake.methods()).toEqual(['GetCapabilities']);
    expect(s.fake.of('GetCapabilities')[0].gateway).toEqual({
      protocolVersion: { major: 1, minor: 0 },
      implementationName: 'openshell/gateway',
      implementationVersion: '0.1.9',
      supportedCapabilities: ['openshell.compute.contract', 'openshell.compute.launch-authentication'],
      requiredCapabilities: ['openshell.compute.contract'],
    });
    expect(s.gw.admissionAck).toBe(DEFAULT_ACK);
  });

  it('accepts a minor skew (same major, minor 99)', async () => {
    const s = await setup({}, { extension: driverExtension({ protocolVersion: { major: 1, minor: 99 } }) });
    await s.gw.start();
  });

  const refusals: Array<[string, Partial<PeerMetadata> | null, RegExp]> = [
    ['no extension metadata', null, /did not provide protocol metadata; upgrade the extension/],
    ['no protocol version', { protocolVersion: undefined }, /did not provide a protocol version/],
    ['another major', { protocolVersion: { major: 2, minor: 0 } }, /speaks extension protocol 2\.0; the gateway speaks 1\.0/],
    ['a blank implementation name', { implementationName: '   ' }, /implementation_name is blank/],
    ['a 129-byte implementation version', { implementationVersion: 'v'.repeat(129) }, /implementation_version is longer than 128 bytes/],
    ['a control character', { implementationName: 'fake\u0007' }, /implementation_name contains a control character/],
    ['an upper-case capability', { supportedCapabilities: ['openshell.compute.contract', 'openshell.Compute.x'] }, /invalid capability name "openshell\.Compute\.x"/],
    ['a two-segment capability', { supportedCapabilities: ['openshell.compute.contract', 'openshell.compute'] }, /invalid capability name/],
    ['a foreign prefix', { supportedCapabilities: ['openshell.compute.contract', 'ryno.compute.contract'] }, /invalid capability name/],
    ['an empty segment', { supportedCapabilities: ['openshell.compute.contract', 'openshell..contract'] }, /invalid capability name/],
    ['duplicates', { supportedCapabilities: ['openshell.compute.contract', 'openshell.compute.contract'] }, /supported_capabilities has duplicates/],
    ['129 capabilities', { supportedCapabilities: Array.from({ length: 129 }, (_, i) => `openshell.compute.c${i}`) }, /more than 128 entries/],
    ['no contract capability', { supportedCapabilities: ['openshell.compute.other'], requiredCapabilities: [] }, /does not support capabilities the gateway requires: openshell\.compute\.contract/],
    ['a requirement the gateway lacks', { requiredCapabilities: ['openshell.compute.contract', 'openshell.compute.teleport'] }, /requires capabilities the gateway does not support: openshell\.compute\.teleport/],
  ];
  for (const [what, ext, msg] of refusals) {
    it(`refuses to start on ${what}`, async () => {
      const e = await startupError({}, { extension: ext === null ? undefined : driverExtension(ext) });
      expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(e.message).toMatch(/^gateway startup failed: compute extension 'substrate' /);
      expect(e.message).toMatch(msg);
    });
  }

  it('refuses to start when GetCapabilities fails (e.g. the driver refused our metadata)', async () => {
    fake = await new FakeDriver().start();
    fake.capsError = { code: grpc.status.FAILED_PRECONDITION, details: 'compute extension negotiation failed: nope' };
    gw = new Gateway({ socketPath: fake.socket, generation: 'v0.1', reconcileIntervalMs: 0 });
    const e = (await gw.start().catch((x: unknown) => x)) as GatewayError;
    expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(e.message).toBe('gateway startup failed: GetCapabilities: compute extension negotiation failed: nope');
    expect(gw.watchStreams).toEqual([]);
  });
});

describe('v0.1 startup: the admission acknowledgement (§4.2)', () => {
  const policy = defaultGatewayAdmission();
  it('accepts the exact ack, and a semantically equal one in other bytes (field order, defaults)', async () => {
    await (await setup()).gw.start();
    const reordered =
      'v1:{ "resource_admission": {"required_labels": {"openshell.ai/sandbox-attachable-workspace": "${workspace}", "openshell.ai/sandbox-attachable": "true"}} }';
    const s = await setup({}, { resourceAdmissionPolicy: reordered });
    await s.gw.start();
    expect(s.gw.admissionAck).toBe(reordered);
    // serde(default): `v1:{}` is the default policy.
    const d = await setup({}, { resourceAdmissionPolicy: 'v1:{}' });
    await d.gw.start();
  });

  const bad: Array<[string, string, RegExp]> = [
    ['no v1: prefix', DEFAULT_ACK.slice(3), /does not acknowledge resource admission v1/],
    ['v2', `v2:${DEFAULT_ACK.slice(3)}`, /does not acknowledge resource admission v1/],
    ['broken JSON', 'v1:{"allow_driver_config":', /invalid driver admission acknowledgement/],
    ['an unknown field', 'v1:{"allow_driver_config":false,"extra":1}', /invalid driver admission acknowledgement/],
    ['a wrong type', 'v1:{"allow_driver_config":"no"}', /invalid driver admission acknowledgement/],
    ['other labels', 'v1:{"resource_admission":{"required_labels":{"openshell.ai/sandbox-attachable":"true"}}}', /admission policy differs from gateway configuration/],
    ['allow_driver_config true', 'v1:{"allow_driver_config":true}', /admission policy differs/],
    ['admission disabled', 'v1:{"resource_admission":{"enabled":false}}', /admission policy differs/],
    ['the empty opt-out while enabled', '', /does not acknowledge resource admission v1/],
  ];
  for (const [what, ack, msg] of bad) {
    it(`refuses to start on ${what}`, async () => {
      const e = await startupError({ admission: policy }, { resourceAdmissionPolicy: ack });
      expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(e.message).toMatch(msg);
    });
  }

  it('accepts "" only with the operator opt-out (enabled = false), and then also a matching v1 ack', async () => {
    const optOut = { allow_driver_config: false, resource_admission: { enabled: false, required_labels: {} } };
    await (await setup({ admission: optOut }, { resourceAdmissionPolicy: '' })).gw.start();
    await (await setup({ admission: optOut }, { resourceAdmissionPolicy: admissionAcknowledgement(optOut) })).gw.start();
    const e = await startupError({ admission: optOut }, { resourceAdmissionPolicy: DEFAULT_ACK });
    expect(e.message).toMatch(/differs from gateway configuration/);
  });
});

describe('v0.1 calls: admission re-check and the driver_config gate (§2.5, §4.2)', () => {
  it('re-reads GetCapabilities before Validate, Create and Start, and refuses a byte change even when semantically equal', async () => {
    const s = await setup({ supervisor: null });
    await s.gw.start();
    const row = await s.gw.createSandbox(sandbox('a1'));
    expect(s.fake.methods()).toEqual(['GetCapabilities', 'GetCapabilities', 'ValidateSandboxCreate', 'GetCapabilities', 'CreateSandbox']);
    expect(row.runtimeIdentity).toBe('fake:a1#g1');

    // The same policy in other bytes: the startup check would accept it, the per-call check does not.
    s.fake.capabilities = caps({ resourceAdmissionPolicy: DEFAULT_ACK.replace('{"allow_driver_config"', '{ "allow_driver_config"') });
    const n = s.fake.requests.length;
    const e = (await s.gw.createSandbox(sandbox('a2')).catch((x: unknown) => x)) as GatewayError;
    expect(e).toBeInstanceOf(GatewayError);
    expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(e.message).toBe(ADMISSION_CHANGED);
    expect(s.fake.requests.slice(n).map((r) => r.method)).toEqual(['GetCapabilities']);
    expect(s.gw.rows.has('a2')).toBe(false);

    // Start too: the driver is not called.
    s.fake.capabilities = caps();
    row.phase = 'READY';
    await s.gw.stopSandbox('a1');
    s.fake.capabilities = caps({ resourceAdmissionPolicy: DEFAULT_ACK + ' ' });
    const m = s.fake.requests.length;
    const se = (await s.gw.startSandbox('a1').catch((x: unknown) => x)) as GatewayError;
    expect(se.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(se.message).toBe(`start sandbox failed: ${ADMISSION_CHANGED}`);
    expect(s.fake.requests.slice(m).map((r) => r.method)).not.toContain('StartSandbox');
  });

  it('refuses a caller driver_config with allow_driver_config = false before calling the driver', async () => {
    const s = await setup();
    await s.gw.start();
    const n = s.fake.requests.length;
    const e = (await s.gw.createSandbox(sandbox('d1', { driverConfig: { actor_template: 'x' } })).catch((x: unknown) => x)) as GatewayError;
    expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(e.message).toBe(DRIVER_CONFIG_DISABLED);
    expect(s.fake.requests.length).toBe(n);
    // An empty block passes.
    await s.gw.createSandbox(sandbox('d2', { driverConfig: {} }));
  });

  it('lets it through when the operator allows it (and the driver acknowledges that policy)', async () => {
    const allow = { ...defaultGatewayAdmission(), allow_driver_config: true };
    const s = await setup({ admission: allow }, { resourceAdmissionPolicy: admissionAcknowledgement(allow) });
    await s.gw.start();
    await s.gw.createSandbox(sandbox('d3', { driverConfig: { actor_template: 'x' } }));
    expect(s.fake.of('CreateSandbox')[0].sandbox.spec.template.driverConfig).toEqual({ actor_template: 'x' });
  });
});

describe('v0.1 Timestamp validation (§4.1)', () => {
  async function withRow(): Promise<{ fake: FakeDriver; gw: Gateway; sb: DriverSandbox }> {
    const s = await setup({ supervisor: null });
    await s.gw.start();
    await s.gw.waitFor('the startup sweep', () => s.gw.reconciles[0]?.finished, 5000);
    await s.gw.createSandbox(sandbox('t1'));
    await s.gw.waitFor('the watch to open', () => s.fake.streams.length > 0, 5000);
    return { ...s, sb: s.fake.sandboxes.get('t1')! };
  }
  const withConds = (sb: DriverSandbox, conditions: DriverCondition[]): DriverSandbox => ({ ...sb, status: { ...sb.status!, conditions } });

  it('drops a watch event whose transition_time is missing or out of range, and applies a valid one', async () => {
    const { fake, gw, sb } = await withRow();
    fake.snapshot(withConds(sb, [cond('Ready', 'False', 'Boom', null)]));
    fake.snapshot(withConds(sb, [cond('Ready', 'False', 'Boom', FAR_FUTURE)]));
    await gw.waitFor('two dropped events', () => gw.droppedEvents.length >= 2, 5000);
    expect(gw.rows.get('t1')!.phase).toBe('PROVISIONING');
    expect(gw.droppedEvents.map((d) => d.why)).toEqual([
      'invalid timestamp in sandbox event: condition 0 transition_time missing',
      expect.stringMatching(/^invalid timestamp in sandbox event: condition 0 transition_time seconds 8640000000000 out of range$/),
    ]);
    expect(gw.warnings.some((w) => w.startsWith('Failed to apply compute driver event'))).toBe(true);
    fake.snapshot(withConds(sb, [cond('Ready', 'False', 'Boom')]));
    await gw.waitPhase('t1', 'ERROR', 5000);
  });

  it('drops a platform event without event_time', async () => {
    const { fake, gw } = await withRow();
    const ev = (t?: Date): DriverPlatformEvent => ({ eventTime: t, source: 'fake', type: 'Normal', reason: 'R', message: 'm', metadata: {} });
    fake.emit({ payload: { $case: 'platformEvent', value: { sandboxId: 't1', event: ev() } } });
    fake.emit({ payload: { $case: 'platformEvent', value: { sandboxId: 't1', event: ev(new Date()) } } });
    await gw.waitFor('one platform event', () => gw.rows.get('t1')!.platformEvents.length === 1 || undefined, 5000);
    expect(gw.droppedEvents).toEqual([expect.objectContaining({ why: 'invalid timestamp in platformEvent event: platform event event_time missing', sandboxId: 't1' })]);
  });

  it('fails a GetSandbox whose times are invalid: the reconcile step aborts and nothing is applied', async () => {
    const { fake, gw, sb } = await withRow();
    fake.getOverride = () => withConds(sb, [cond('Ready', 'False', 'Boom', null)]);
    const rep = await gw.reconcileOnce();
    expect(rep.aborted).toMatch(/GetSandbox t1 failed: .*invalid timestamp: condition 0 transition_time missing/);
    expect(gw.failedGets).toHaveLength(1);
    expect(gw.rows.get('t1')!.phase).toBe('PROVISIONING');
  });
});

describe('v0.1 background DeleteSandbox (§4.5, §4.6)', () => {
  it('after a watch `deleted` event of a known row: row removed, DeleteSandbox sent in the background', async () => {
    const s = await setup({ supervisor: null });
    await s.gw.start();
    await s.gw.createSandbox(sandbox('w1'));
    await s.gw.waitFor('the watch', () => s.fake.streams.length > 0, 5000);
    s.fake.emit({ payload: { $case: 'deleted', value: { sandboxId: 'w1' } } });
    await s.gw.waitFor('the background delete to finish', () => s.gw.backgroundDeletes[0]?.outcome, 5000);
    expect(s.gw.rows.has('w1')).toBe(false);
    expect(s.gw.backgroundDeletes).toEqual([expect.objectContaining({ id: 'w1', why: 'watch deleted', outcome: 'deleted=true' })]);
    expect(s.gw.calls.filter((c) => c.origin === 'cleanup').map((c) => [c.method, c.request])).toEqual([['DeleteSandbox', { sandboxId: 'w1', name: 'name-w1' }]]);
    // An unknown id: nothing.
    s.fake.emit({ payload: { $case: 'deleted', value: { sandboxId: 'nobody' } } });
    await new Promise((r) => setTimeout(r, 200));
    expect(s.gw.backgroundDeletes).toHaveLength(1);
  });

  it('after a reconcile prune (grace configurable); a STOPPED row missing becomes ERROR without a delete', async () => {
    const s = await setup({ supervisor: null, orphanGraceMs: 1000 });
    await s.gw.start();
    await s.gw.waitFor('the startup sweep', () => s.gw.reconciles[0]?.finished, 5000);
    const old = Date.now() - 5000;
    s.gw.insertRow({ id: 'p1', name: 'gone', phase: 'READY', createdAtMs: old });
    s.gw.insertRow({ id: 'p2', name: 'gone-stopped', phase: 'STOPPED', createdAtMs: old });
    s.gw.insertRow({ id: 'p3', name: 'young', phase: 'PROVISIONING' });
    const rep = await s.gw.reconcileOnce();
    expect(rep.pruned).toEqual(['p1']);
    expect(rep.erroredMissing).toEqual(['p2']);
    await s.gw.waitFor('the background delete', () => s.gw.backgroundDeletes[0]?.outcome, 5000);
    expect(s.gw.backgroundDeletes).toEqual([expect.objectContaining({ id: 'p1', why: 'reconcile prune', outcome: 'deleted=false' })]);
  });
});

describe('v0.1 runtime identity and launch authentication (§3.2, §3.3)', () => {
  it('mints a verifiable bundle on Create, sends the identity back on Start with a fresh bundle (auth_epoch + 1)', async () => {
    const s = await setup({ supervisor: null });
    await s.gw.start();
    const row = await s.gw.createSandbox(sandbox('r1'));
    const validate = s.fake.of('ValidateSandboxCreate')[0].sandbox.spec;
    expect(validate.sandboxToken).toBe('');
    expect(validate.launchAuthentication.length).toBe(0);
    expect(validate.workloadIdentity).toEqual({ user: '', group: '' });
    const created = s.fake.of('CreateSandbox')[0].sandbox.spec;
    const bundle = parseLaunchAuthentication(created.launchAuthentication);
    expect(bundle.gateway_id).toBe(s.gw.launchAuthority!.gatewayId);
    expect(bundle.supervisor).toMatchObject({ auth_epoch: 1, session_rotation: 1, runtime_generation: row.runtimeGeneration, session_id: row.sessionId });
    expect(created.sandboxToken).toBe(bundle.supervisor.gateway_token);
    // Both session JWTs verify with the project's own bootstrap-agent verifier and with jose.
    const ring = keyRing(bundle.verification_keys);
    for (const profile of ['gateway', 'sandbox'] as const) {
      const tok = bundle.supervisor[`${profile}_token` as 'gateway_token'];
      expect(verifySessionJwt(tok, { profile, gatewayId: bundle.gateway_id, ring })).toMatchObject({ sandbox_id: 'r1', auth_epoch: 1, runtime_generation: row.runtimeGeneration });
    }
    const key = await importSPKI(bundle.verification_keys[0]!.public_key_pem, 'EdDSA');
    const iss = `openshell-gateway:${bundle.gateway_id}`;
    const g = await jwtVerify(bundle.supervisor.gateway_token, key, { issuer: iss, audience: iss, typ: 'openshell-gateway-session+jwt' });
    expect(g.payload).toMatchObject({ sub: 'spiffe://openshell/sandbox/r1', component: 'openshell-supervisor' });
    await jwtVerify(bundle.supervisor.sandbox_token, key, { issuer: iss, audience: 'openshell-sandbox', typ: 'openshell-sandbox-session+jwt' });
    // public_key_pem travels as a JSON array of bytes.
    expect(Array.isArray(JSON.parse(created.launchAuthentication.toString()).verification_keys[0].public_key_pem)).toBe(true);

    row.phase = 'READY';
    for (const epoch of [2, 3]) {
      await s.gw.stopSandbox('r1');
      const before = row.runtimeIdentity;
      await s.gw.startSandbox('r1');
      const start = s.fake.of('StartSandbox').at(-1);
      expect(start.expectedRuntimeIdentity).toBe(before);
      expect(start.generationId).toBe(row.runtimeGeneration);
      const b = parseLaunchAuthentication(start.launchAuthentication);
      expect(b.supervisor).toMatchObject({ auth_epoch: epoch, runtime_generation: row.runtimeGeneration, session_id: row.sessionId });
      expect(row.launch!.authEpoch).toBe(epoch);
      expect(row.runtimeIdentity).toBe(`fake:r1#g${epoch}`);
      row.phase = 'READY';
    }
  });

  it('a retry from STARTING reuses the persisted bundle; startup recovery of a STARTING row sends none', async () => {
    const s = await setup({ supervisor: null });
    await s.gw.start();
    const row = await s.gw.createSandbox(sandbox('r2'));
    row.phase = 'STOPPED';
    await s.gw.startSandbox('r2');
    const first = s.fake.of('StartSandbox').at(-1).launchAuthentication;
    row.phase = 'STARTING';
    await s.gw.startSandbox('r2');
    expect(Buffer.compare(s.fake.of('StartSandbox').at(-1).launchAuthentication, first)).toBe(0);
    // A new gateway process over the same store.
    await s.gw.stop();
    const gw2 = new Gateway({ socketPath: s.fake.socket, generation: 'v0.1', reconcileIntervalMs: 0, supervisor: null });
    gw2.rows.set('r2', row);
    row.phase = 'STARTING';
    const expected = row.runtimeIdentity;
    await gw2.start();
    const recovery = s.fake.of('StartSandbox').at(-1);
    expect(recovery.launchAuthentication.length).toBe(0);
    expect(recovery.expectedRuntimeIdentity).toBe(expected);
    await gw2.stop();
  });

  it('with supports_sandbox_authentication an empty identity from Create is INTERNAL and compensated by DeleteSandbox', async () => {
    const s = await setup({ supervisor: null }, { supportsSandboxAuthentication: true });
    s.fake.identity = () => '';
    await s.gw.start();
    const e = (await s.gw.createSandbox(sandbox('r3')).catch((x: unknown) => x)) as GatewayError;
    expect(e.code).toBe(grpc.status.INTERNAL);
    expect(e.message).toBe('compute driver did not return a runtime identity');
    expect(s.fake.methods().slice(-2)).toEqual(['CreateSandbox', 'DeleteSandbox']);
    expect(s.gw.rows.has('r3')).toBe(false);
  });

  it('a gateway without a signer sends no launch authentication and keeps the caller token', async () => {
    const s = await setup({ supervisor: null, launchAuthority: null });
    await s.gw.start();
    const sb = sandbox('r4');
    sb.spec!.sandboxToken = 'legacy-token';
    await s.gw.createSandbox(sb);
    const c = s.fake.of('CreateSandbox')[0].sandbox.spec;
    expect(c.launchAuthentication.length).toBe(0);
    expect(c.sandboxToken).toBe('legacy-token');
  });
});

describe('v0.1 phases through the store (§4.4)', () => {
  it('a STARTING row applies a fresh GetSandbox instead of the watch snapshot', async () => {
    const s = await setup({ supervisor: null });
    await s.gw.start();
    const row = await s.gw.createSandbox(sandbox('s1'));
    await s.gw.waitFor('the watch', () => s.fake.streams.length > 0, 5000);
    row.phase = 'STARTING';
    const sb = s.fake.sandboxes.get('s1')!;
    s.fake.getOverride = () => ({ ...sb, status: { ...sb.status!, conditions: [cond('Ready', 'False', 'FromGet')] } });
    s.fake.snapshot({ ...sb, status: { ...sb.status!, conditions: [cond('Ready', 'True', 'FromWatch')] } });
    await s.gw.waitPhase('s1', 'ERROR', 5000);
    expect(row.conditions[0]!.reason).toBe('FromGet');
    expect(s.gw.calls.filter((c) => c.origin === 'watch').map((c) => c.method)).toEqual(['GetSandbox']);
  });

  it('Ready=True with a stale Suspended=True is READY (with a session), not STOPPED', async () => {
    const s = await setup();
    await s.gw.start();
    await s.gw.createSandbox(sandbox('s2'));
    await s.gw.waitFor('the watch', () => s.fake.streams.length > 0, 5000);
    const sb = s.fake.sandboxes.get('s2')!;
    s.fake.snapshot({ ...sb, status: { ...sb.status!, conditions: [cond('Ready', 'True', 'Running'), cond('Suspended', 'True', 'Stale')] } });
    await s.gw.waitPhase('s2', 'READY', 5000);
    expect(s.gw.rows.get('s2')!.history).not.toContain('STOPPED');
  });

  it('without a supervisor a backend READY stays PROVISIONING with SupervisorNotConnected', async () => {
    const s = await setup({ supervisor: null });
    await s.gw.start();
    const row = await s.gw.createSandbox(sandbox('s3'));
    await s.gw.reconcileOnce();
    expect(row.backendPhase).toBe('READY');
    expect(row.phase).toBe('PROVISIONING');
    expect(row.conditions.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'SupervisorNotConnected', message: 'Backend ready; waiting for supervisor session' });
  });
});

describe('supervisorSessionProbe (for the supervisor stand-in)', () => {
  it('asks GET /session through the router with ate-target-actor, and needs this sandbox, connected, the current auth_epoch and gateway token', async () => {
    const { createServer } = await import('node:http');
    const { writeFileSync } = await import('node:fs');
    const { supervisorSessionProbe } = await import('./harness.js');
    const { createHash } = await import('node:crypto');
    const seen: Array<{ target: string | undefined; url: string | undefined }> = [];
    let answer: unknown = {};
    const srv = createServer((q, s) => {
      seen.push({ target: q.headers['ate-target-actor'] as string | undefined, url: q.url });
      s.end(JSON.stringify(answer));
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const dir = mkdtempSync(join(tmpdir(), 'gw-probe-'));
    try {
      const port = (srv.address() as { port: number }).port;
      writeFileSync(join(dir, 'local.json'), JSON.stringify({ router_url: `http://127.0.0.1:${port}` }));
      const probe = supervisorSessionProbe(dir);
      const gwx = new Gateway({ socketPath: join(dir, 'none.sock'), generation: 'v0.1' });
      const row = gwx.insertRow({ id: 'sb-1', name: 'n', phase: 'STARTING', workspace: 'ws' });
      const tok = 'a.b.c';
      row.launch = { bytes: Buffer.alloc(0), gatewayId: 'g', sessionId: 's', runtimeGeneration: 'r', sessionRotation: 2, authEpoch: 2, gatewayToken: tok, sandboxToken: 'x.y.z', gatewayTokenSha256: createHash('sha256').update(tok).digest('hex') };
      const good = { connected: true, sandbox_id: 'sb-1', auth_epoch: 2, gateway_token_sha256: row.launch.gatewayTokenSha256 };
      answer = good;
      expect(await probe.connect(row)).toBe(true);
      expect(seen.at(-1)).toEqual({ target: 'ws/sb-1', url: '/session' });
      for (const bad of [{ ...good, connected: false }, { ...good, sandbox_id: 'other' }, { ...good, auth_epoch: 1 }, { ...good, gateway_token_sha256: 'stale' }]) {
        answer = bad;
        expect(await probe.connect(row), JSON.stringify(bad)).toBe(false);
      }
      await gwx.stop();
    } finally {
      srv.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
