// The compute-driver contract over the REAL socket, for BOTH gateway generations, as each gateway speaks it: the gateway
// stand-in (harness.ts) in v0.1 mode (src/gen bindings, gateway PeerMetadata, admission checks, Timestamp validation)
// and in 0.0.x mode (src/gen/v0 bindings: what a 0.0.x gateway decodes). The driver binary runs WITHOUT --local next to a
// separately run local Substrate (`substrate-driver local serve`, real gVisor), so it can be restarted cheaply with
// another admission policy. The OpenShell gateway itself cannot run here.
//
// One driver serves both generations on one socket and learns which one is talking from GetCapabilities; the blocks
// below run one stand-in at a time, v0.1 first, then 0.0.x, then v0.1 again.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DriverClient } from '../../../src/driver/client.js';
import { AUTHENTICATE_UNIMPLEMENTED } from '../../../src/driver/driver.js';
import type { DriverSandbox } from '../../../src/gen/compute_driver.js';
import type * as v0 from '../../../src/gen/v0/compute_driver.js';
import { gatewaySandbox, LocalSubstrateProcess, operatorTemplate, TEMPLATE_LABEL_ARGS } from './fixtures.js';
import {
  ADMISSION_CHANGED,
  DriverProcess,
  Gateway,
  GatewayError,
  admissionAcknowledgement,
  gatewayMetadata,
  readLocalJson,
  type GatewayAdmissionPolicy,
  type GatewayOptions,
  type GatewayRow,
} from './harness.js';

const RFC3339_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('ComputeDriver contract over the real socket, v0.1 and 0.0.x gateways', () => {
  let dir: string;
  let stateDir: string;
  let socketPath: string;
  let local: LocalSubstrateProcess;
  let driver: DriverProcess;
  let image: string;
  /** The sandbox read by both generations (created under v0.1, kept until the end). */
  let shared: DriverSandbox;
  const v01Times = new Map<string, number>();
  const gateways: Gateway[] = [];

  const startDriver = (extra: string[] = []) => DriverProcess.start({ socketPath, stateDir, local: false, extraArgs: ['--log-level', 'warn', ...TEMPLATE_LABEL_ARGS, ...extra] });
  const restartDriver = async (extra: string[] = []) => {
    await driver.stop();
    driver = await startDriver(extra);
  };
  const standIn = (o: Partial<GatewayOptions> & Pick<GatewayOptions, 'generation'>): Gateway => {
    const gw = new Gateway({ socketPath, reconcileIntervalMs: 0, ...o });
    gateways.push(gw);
    return gw;
  };
  const generationFile = () => (existsSync(`${socketPath}.generation`) ? readFileSync(`${socketPath}.generation`, 'utf8').trim() : '(none)');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gw-contract-'));
    stateDir = join(dir, 'state');
    mkdirSync(stateDir, { mode: 0o700 });
    mkdirSync(join(dir, 'sock'), { mode: 0o700 });
    socketPath = join(dir, 'sock', 'driver.sock');
    local = new LocalSubstrateProcess(stateDir);
    await local.start();
    driver = await startDriver();
    const probe = standIn({ generation: 'v0.1' });
    await probe.start();
    image = probe.capabilities!.defaultImage;
    await probe.stop();
    await operatorTemplate(stateDir, image);
  }, 300_000);

  afterAll(async () => {
    for (const g of gateways) await g.stop().catch(() => undefined);
    await driver?.stop();
    await local?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  describe('v0.1 gateway', () => {
    let gw: Gateway;
    beforeAll(async () => {
      gw = standIn({ generation: 'v0.1' });
      await gw.start();
    });
    afterAll(() => gw.stop());

    it('negotiation is accepted: the driver takes the gateway metadata and answers its own, and now encodes for v0.1', () => {
      expect(gw.callsOf('GetCapabilities')[0]).toMatchObject({ code: 'OK', request: { gateway: gatewayMetadata() } });
      expect(gw.capabilities!.extension).toMatchObject({ protocolVersion: { major: 1, minor: 0 }, requiredCapabilities: ['openshell.compute.contract'] });
      expect(gw.capabilities!.extension!.implementationVersion).not.toBe('');
      expect(gw.callsOf('GetGatewayListenerRequirements')).toEqual([]);
      expect(generationFile()).toBe('v0.1');
    });

    const refusals: Array<[string, ReturnType<typeof gatewayMetadata>, RegExp]> = [
      ['another protocol major', { ...gatewayMetadata(), protocolVersion: { major: 2, minor: 0 } }, /the gateway speaks extension protocol 2\.0 and this driver speaks 1\.0; major versions must match/],
      ['a required capability the driver lacks', { ...gatewayMetadata(), requiredCapabilities: ['openshell.compute.contract', 'openshell.compute.teleport'] }, /the gateway requires "openshell\.compute\.teleport", which openshell-driver-substrate .* does not support/],
      ['the contract capability missing from what the gateway supports', { ...gatewayMetadata(), supportedCapabilities: ['openshell.compute.launch-authentication'] }, /this driver requires "openshell\.compute\.contract", which the gateway does not advertise/],
      ['an upper-case capability name', { ...gatewayMetadata(), supportedCapabilities: ['openshell.compute.contract', 'openshell.Compute.extra'] }, /supported_capabilities: capability "openshell\.Compute\.extra" is not at least three dot-separated segments/],
      ['a two-segment capability name', { ...gatewayMetadata(), requiredCapabilities: ['openshell.compute'] }, /required_capabilities: capability "openshell\.compute" is not at least three/],
      ['a foreign capability prefix', { ...gatewayMetadata(), supportedCapabilities: ['openshell.compute.contract', 'ryno.compute.contract'] }, /capability "ryno\.compute\.contract" does not start with "openshell\."/],
      ['an oversized implementation_version (129 bytes)', { ...gatewayMetadata('9'.repeat(129)) }, /implementation_version is 129 bytes; at most 128 are allowed/],
      ['an oversized implementation_name (300 bytes of UTF-8)', { ...gatewayMetadata(), implementationName: 'é'.repeat(150) }, /implementation_name is 300 bytes; at most 128/],
    ];
    for (const [what, meta, msg] of refusals) {
      it(`negotiation is refused with FAILED_PRECONDITION for ${what}: the gateway does not start`, async () => {
        const bad = standIn({ generation: 'v0.1', gatewayMetadata: meta });
        const e = (await bad.start().catch((x: unknown) => x)) as GatewayError;
        await bad.stop();
        expect(e).toBeInstanceOf(GatewayError);
        expect(e.code).toBe(status.FAILED_PRECONDITION);
        expect(e.message).toMatch(/^gateway startup failed: GetCapabilities: compute extension negotiation failed: /);
        expect(e.message).toMatch(msg);
        expect(bad.watchStreams).toEqual([]);
      });
    }

    it('AuthenticateSandbox answers UNIMPLEMENTED with its reason, and the capability says so (a v0.1 gateway never calls it)', async () => {
      expect(gw.capabilities!.supportsSandboxAuthentication).toBe(false);
      const c = new DriverClient(socketPath, { tool: true });
      try {
        const e = await c.authenticateSandbox('any-credential').catch((x: unknown) => x);
        expect(e).toMatchObject({ code: status.UNIMPLEMENTED, details: AUTHENTICATE_UNIMPLEMENTED });
        expect(AUTHENTICATE_UNIMPLEMENTED).toMatch(/supports_sandbox_authentication = false/);
      } finally {
        c.close();
      }
    });

    it('decodes transition_time / event_time Timestamps: present, valid (§4.1), stable across polls', async () => {
      shared = gatewaySandbox({ name: 'timekeeper', image, generation: 'v0.1', preProvisioned: true });
      const row = await gw.createSandbox(shared);
      await gw.waitPhase(shared.id, 'READY', 90_000);
      const polls: Array<Awaited<ReturnType<Gateway['driverGet']>>> = [];
      for (let i = 0; i < 3; i++) {
        polls.push(await gw.driverGet(row));
        await sleep(700);
      }
      for (const p of polls) {
        expect(p.problems).toEqual([]);
        const conds = p.sandbox!.status!.conditions;
        expect(conds.length).toBeGreaterThan(0);
        for (const c of conds) {
          expect(c.transitionTime).toBeInstanceOf(Date);
          expect(Math.abs(c.transitionTime!.getTime() - Date.now())).toBeLessThan(10 * 60_000);
        }
      }
      const times = (p: (typeof polls)[number]) => p.sandbox!.status!.conditions.map((c) => `${c.type}=${c.status}@${c.transitionTime!.toISOString()}`);
      expect(times(polls[1]!)).toEqual(times(polls[0]!));
      expect(times(polls[2]!)).toEqual(times(polls[0]!));
      for (const c of polls[0]!.sandbox!.status!.conditions) v01Times.set(c.type, c.transitionTime!.getTime());
      // Platform events carried event_time; nothing was dropped or refused.
      expect(row.platformEvents.length).toBeGreaterThan(0);
      for (const e of row.platformEvents) expect(e.eventTime).toBeInstanceOf(Date);
      expect(gw.droppedEvents).toEqual([]);
      expect(gw.failedGets).toEqual([]);
    }, 120_000);

    it('DeleteSandbox twice: the second answers deleted=false, without an error', async () => {
      const sb = gatewaySandbox({ name: 'twice-v01', image, generation: 'v0.1', preProvisioned: true });
      const row: GatewayRow = await gw.createSandbox(sb);
      expect(await gw.deleteSandbox(sb.id)).toBe(true);
      await gw.waitGone(sb.id, 30_000);
      expect(await gw.driverDelete(row)).toBe(false);
      await expect(gw.driverGet(row)).rejects.toMatchObject({ code: status.NOT_FOUND });
    }, 120_000);

    it('workspaces: EnsureWorkspace and DeleteWorkspace answer OK', async () => {
      await gw.ensureWorkspace('contract-ws1');
      await gw.deleteWorkspace('contract-ws1');
    });

    it('admission: a driver restarted with another policy fails the next Create (byte re-check) and a fresh gateway start (semantic check)', async () => {
      /** A driver restart, then (as the gateway's next calls would) a reconnected watch before the next call. */
      const restartAndReconnect = async (extra: string[] = []) => {
        await restartDriver(extra);
        const at = Date.now();
        await gw.waitFor('the watch to reopen on the restarted driver', () => gw.watchStreams.some((w) => w.openedAt >= at && w.events > 0 && !w.end), 30_000);
      };
      const other: GatewayAdmissionPolicy = { allow_driver_config: false, resource_admission: { enabled: true, required_labels: { 'openshell.ai/sandbox-attachable': 'true' } } };
      await restartAndReconnect(['--resource-admission', JSON.stringify(other.resource_admission)]);
      const from = gw.calls.length;
      const e = (await gw.createSandbox(gatewaySandbox({ name: 'refused', image, generation: 'v0.1', preProvisioned: true })).catch((x: unknown) => x)) as GatewayError;
      expect([e.code, e.message]).toEqual([status.FAILED_PRECONDITION, ADMISSION_CHANGED]);
      expect(gw.calls.slice(from).map((x) => x.method).filter((m) => m !== 'ListSandboxes' && m !== 'GetSandbox')).toEqual(['GetCapabilities']);

      const fresh = standIn({ generation: 'v0.1' });
      const se = (await fresh.start().catch((x: unknown) => x)) as GatewayError;
      await fresh.stop();
      expect(se.message).toBe('gateway startup failed: compute driver admission policy differs from gateway configuration');
      // A gateway configured with the same table starts, and its ack is the driver's byte for byte.
      const matching = standIn({ generation: 'v0.1', admission: other });
      await matching.start();
      expect(matching.admissionAck).toBe(admissionAcknowledgement(other));
      await matching.stop();
      // The operator opt-out on both sides.
      const optOut: GatewayAdmissionPolicy = { allow_driver_config: false, resource_admission: { enabled: false, required_labels: {} } };
      await restartAndReconnect(['--resource-admission', JSON.stringify(optOut.resource_admission)]);
      const opted = standIn({ generation: 'v0.1', admission: optOut });
      await opted.start();
      await opted.stop();
      await restartAndReconnect();
      // Back to the default: the original gateway's cached ack matches again.
      const ok = await gw.createSandbox(gatewaySandbox({ name: 'accepted-again', image, generation: 'v0.1', preProvisioned: true }));
      expect(await gw.deleteSandbox(ok.id)).toBe(true);
      // The times the 0.0.x gateway must see next: read after the last restart (a restarted driver stamps the
      // conditions it reports again; see the report), still valid and stable across polls.
      const a1 = await gw.driverGet({ id: shared.id, name: shared.name });
      await sleep(700);
      const a2 = await gw.driverGet({ id: shared.id, name: shared.name });
      expect([...a1.problems, ...a2.problems]).toEqual([]);
      expect(a2.sandbox!.status!.conditions.map((c) => c.transitionTime!.getTime())).toEqual(a1.sandbox!.status!.conditions.map((c) => c.transitionTime!.getTime()));
      const moved = a1.sandbox!.status!.conditions.filter((c) => c.transitionTime!.getTime() !== v01Times.get(c.type)).map((c) => c.type);
      if (moved.length) console.info(`[contract] transition_time of unchanged conditions ${moved.join(', ')} moved across the driver restarts`);
      v01Times.clear();
      for (const c of a1.sandbox!.status!.conditions) v01Times.set(c.type, c.transitionTime!.getTime());
    }, 180_000);
  });

  describe('0.0.x gateway', () => {
    let gw: Gateway;
    beforeAll(async () => {
      gw = standIn({ generation: 'v0.0' });
      await gw.start();
    });
    afterAll(() => gw.stop());

    it('GetCapabilities without metadata works and GetGatewayListenerRequirements answers (no requirements); the driver now encodes for 0.0.x', () => {
      expect(gw.calls.slice(0, 2).map((x) => [x.method, x.code, x.request])).toEqual([
        ['GetCapabilities', 'OK', {}],
        ['GetGatewayListenerRequirements', 'OK', {}],
      ]);
      expect(gw.rawCapabilities).toMatchObject({ driverName: 'substrate', gatewayManagesLifecycle: false });
      expect(gw.rawCapabilities).not.toHaveProperty('extension');
      expect(gw.listenerRequirements).toEqual([]);
      expect(generationFile()).toBe('v0.0');
    });

    it('decodes last_transition_time RFC 3339 strings and timestamp_ms: valid, stable across polls, the same instants v0.1 got', async () => {
      const polls: v0.DriverSandbox[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await gw.driverGet({ id: shared.id, name: shared.name });
        polls.push(r.raw as v0.DriverSandbox);
        await sleep(700);
      }
      for (const p of polls) {
        for (const c of p.status!.conditions) {
          expect(c.lastTransitionTime).toMatch(RFC3339_MS);
          expect(Number.isNaN(Date.parse(c.lastTransitionTime))).toBe(false);
          // v0.1's field is unknown to these bindings.
          expect(c).not.toHaveProperty('transitionTime');
        }
      }
      const times = (p: v0.DriverSandbox) => p.status!.conditions.map((c) => `${c.type}=${c.status}@${c.lastTransitionTime}`);
      expect(times(polls[1]!)).toEqual(times(polls[0]!));
      expect(times(polls[2]!)).toEqual(times(polls[0]!));
      for (const c of polls[0]!.status!.conditions) expect(Date.parse(c.lastTransitionTime), c.type).toBe(v01Times.get(c.type));

      // timestamp_ms on platform events of a sandbox created by this gateway.
      const sb = gatewaySandbox({ name: 'events-v00', image, generation: 'v0.0', preProvisioned: true });
      const row = await gw.createSandbox(sb);
      await gw.waitPhase(sb.id, 'READY', 90_000);
      const raw = gw.rawEvents.map((e) => e.event as v0.WatchSandboxesEvent).filter((e) => e.payload?.$case === 'platformEvent' && e.payload.value.sandboxId === sb.id);
      expect(raw.length).toBeGreaterThan(0);
      for (const e of raw) {
        const ev = e.payload!.$case === 'platformEvent' ? e.payload!.value.event! : undefined;
        expect(ev!.timestampMs).toBeGreaterThan(Date.now() - 10 * 60_000);
        expect(ev).not.toHaveProperty('eventTime');
      }
      const snaps = gw.rawEvents.map((e) => e.event as v0.WatchSandboxesEvent).filter((e) => e.payload?.$case === 'sandbox' && e.payload.value.sandbox!.id === sb.id);
      for (const s of snaps) for (const c of (s.payload!.$case === 'sandbox' ? s.payload!.value.sandbox!.status!.conditions : [])) expect(c.lastTransitionTime).toMatch(RFC3339_MS);
      expect(await gw.deleteSandbox(row.id)).toBe(true);
      await gw.waitGone(row.id, 30_000);
    }, 120_000);

    it('DeleteSandbox twice: the second answers deleted=false, without an error', async () => {
      const sb = gatewaySandbox({ name: 'twice-v00', image, generation: 'v0.0', preProvisioned: true });
      const row = await gw.createSandbox(sb);
      expect(await gw.deleteSandbox(sb.id)).toBe(true);
      await gw.waitGone(sb.id, 30_000);
      expect(await gw.driverDelete(row)).toBe(false);
      await expect(gw.driverGet(row)).rejects.toMatchObject({ code: status.NOT_FOUND });
    }, 120_000);

    it('workspaces: EnsureWorkspace and DeleteWorkspace answer OK', async () => {
      await gw.ensureWorkspace('contract-ws0');
      await gw.deleteWorkspace('contract-ws0');
    });
  });

  describe('v0.1 again after a 0.0.x gateway', () => {
    it('a v0.1 gateway negotiating again gets valid Timestamps for the same sandbox', async () => {
      const gw = standIn({ generation: 'v0.1' });
      await gw.start();
      expect(generationFile()).toBe('v0.1');
      const r = await gw.driverGet({ id: shared.id, name: shared.name });
      expect(r.problems).toEqual([]);
      for (const c of r.sandbox!.status!.conditions) expect(c.transitionTime!.getTime()).toBe(v01Times.get(c.type));
      expect(await gw.driverDelete({ id: shared.id, name: shared.name })).toBe(true);
      expect(await gw.driverDelete({ id: shared.id, name: shared.name })).toBe(false);
      await gw.stop();
    });
  });
});
