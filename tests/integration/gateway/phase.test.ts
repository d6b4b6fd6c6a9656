// The gateway stand-in's own rules (harness.ts), checked against the cases the pinned gateway's tests name
// (compute-driver.md §3 and §7: derive_phase_*, terminal_failure_*, backend_ready_without_supervisor_stays_provisioning,
// stale_ready_snapshot_cannot_wake_stopped_sandbox, stopped_container_snapshot_*, unknown_watch_snapshot_does_not_create_gateway_state,
// the store's "sandbox name cannot be changed after creation"). The stand-in exists because the OpenShell gateway
// cannot run here; these checks keep it honest before it is used to judge the real driver.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import type { DriverCondition, DriverSandboxStatus } from '../../../src/gen/compute_driver.js';
import * as v0 from '../../../src/gen/v0/compute_driver.js';
import { GATEWAY_TRANSIENT_REASONS, Gateway, composePhase, derivePhase, nextPhase, type Phase } from './harness.js';

const cond = (type: string, status: string, reason = '', message = ''): DriverCondition => ({ type, status, reason, message, transitionTime: new Date() });
const st = (conditions: DriverCondition[], deleting = false): DriverSandboxStatus => ({ name: 'n', instanceId: '', agentFd: '', sandboxFd: '', conditions, deleting });

describe('derive_phase (0.0.x §3.1)', () => {
  it('maps the absence of a status, deleting, Suspended=True and Ready', () => {
    expect(derivePhase(undefined)).toBe('UNKNOWN');
    expect(derivePhase(st([cond('Ready', 'True')], true))).toBe('DELETING');
    expect(derivePhase(st([cond('Ready', 'True'), cond('suspended', 'TRUE', 'Anything')]))).toBe('STOPPED');
    expect(derivePhase(st([cond('Ready', 'True')]))).toBe('READY');
    expect(derivePhase(st([cond('Ready', 'Unknown', 'Whatever')]))).toBe('PROVISIONING');
    expect(derivePhase(st([]))).toBe('PROVISIONING');
    // The type match is case-sensitive for Ready: "ready" is no Ready condition.
    expect(derivePhase(st([cond('ready', 'False', 'Boom')]))).toBe('PROVISIONING');
    // A `Stopped` condition type is not recognized (the VM driver's one maps to PROVISIONING).
    expect(derivePhase(st([cond('Stopped', 'True', 'ComputeStopped')]))).toBe('PROVISIONING');
  });

  it('treats exactly the 8 transient reasons (any case) as provisioning and every other Ready=False as ERROR', () => {
    expect(GATEWAY_TRANSIENT_REASONS).toHaveLength(8);
    for (const r of GATEWAY_TRANSIENT_REASONS) {
      expect(derivePhase(st([cond('Ready', 'False', r)]))).toBe('PROVISIONING');
      expect(derivePhase(st([cond('Ready', 'False', r.toUpperCase())]))).toBe('PROVISIONING');
    }
    for (const r of ['Resuming', 'Pulling', 'Suspended', 'ContainerExited', '', 'ResumesOnDemand']) {
      expect(derivePhase(st([cond('Ready', 'False', r)]))).toBe('ERROR');
    }
  });
});

describe('composition with the supervisor session (§3.2)', () => {
  it('needs a session for READY; ERROR, DELETING and STOPPED pass through', () => {
    expect(composePhase('READY', false)).toBe('PROVISIONING');
    expect(composePhase('READY', true)).toBe('READY');
    expect(composePhase('PROVISIONING', true)).toBe('READY');
    for (const p of ['ERROR', 'DELETING', 'STOPPED'] as Phase[]) {
      expect(composePhase(p, true)).toBe(p);
      expect(composePhase(p, false)).toBe(p);
    }
  });
});

describe('stickiness against the stored phase (§3.3)', () => {
  const ready = st([cond('Ready', 'True')]);
  const stopped = st([cond('Suspended', 'True', 'ActorSuspended')]);
  const terminating = st([cond('Suspended', 'False', 'PodTerminating'), cond('Ready', 'Unknown')]);
  const exited = st([cond('Ready', 'False', 'ContainerExited')]);

  it('ERROR is terminal and DELETING ignores snapshots', () => {
    expect(nextPhase('ERROR', ready, true)).toBe('ERROR');
    expect(nextPhase('DELETING', ready, true)).toBe('DELETING');
  });

  it('STOPPING leaves only for STOPPED (or ContainerExited) or ERROR', () => {
    expect(nextPhase('STOPPING', terminating, false)).toBe('STOPPING');
    expect(nextPhase('STOPPING', ready, true)).toBe('STOPPING');
    expect(nextPhase('STOPPING', stopped, false)).toBe('STOPPED');
    expect(nextPhase('STOPPING', exited, false)).toBe('STOPPED');
    expect(nextPhase('STOPPING', st([cond('Ready', 'False', 'ImagePullBackOff')]), false)).toBe('ERROR');
  });

  it('a stale Ready snapshot cannot wake a STOPPED sandbox; STARTING waits for a session', () => {
    expect(nextPhase('STOPPED', ready, true)).toBe('STOPPED');
    expect(nextPhase('STARTING', ready, false)).toBe('STARTING');
    expect(nextPhase('STARTING', ready, true)).toBe('READY');
    expect(nextPhase('STARTING', exited, false)).toBe('ERROR');
  });

  it('other phases take the composed phase; an out-of-band stop shows STOPPED; ContainerExited outside a stop is ERROR', () => {
    expect(nextPhase('PROVISIONING', ready, false)).toBe('PROVISIONING');
    expect(nextPhase('READY', stopped, true)).toBe('STOPPED');
    expect(nextPhase('READY', exited, true)).toBe('ERROR');
    expect(nextPhase('READY', undefined, true)).toBe('READY');
  });
});

describe('v0.1 rules (openshell-v0.1.md §4.4)', () => {
  const readyAndSuspended = st([cond('Ready', 'True'), cond('Suspended', 'True', 'Stale')]);
  it('derive_phase: Ready=True beats a stale Suspended=True (any case); otherwise Suspended=True is STOPPED', () => {
    expect(derivePhase(readyAndSuspended, 'v0.1')).toBe('READY');
    expect(derivePhase(readyAndSuspended, 'v0.0')).toBe('STOPPED');
    expect(derivePhase(st([cond('ready', 'TRUE'), cond('suspended', 'true')]), 'v0.1')).not.toBe('STOPPED');
    expect(derivePhase(st([cond('Ready', 'Unknown'), cond('Suspended', 'True')]), 'v0.1')).toBe('STOPPED');
    expect(derivePhase(st([cond('Ready', 'False', 'Boom'), cond('Suspended', 'True')]), 'v0.1')).toBe('STOPPED');
    for (const r of GATEWAY_TRANSIENT_REASONS) expect(derivePhase(st([cond('Ready', 'False', r)]), 'v0.1')).toBe('PROVISIONING');
    expect(derivePhase(st([cond('Ready', 'False', 'ResumesOnDemand')]), 'v0.1')).toBe('ERROR');
  });

  it('composition: a driver that reports runtime readiness is READY without a session', () => {
    expect(composePhase('READY', false, true)).toBe('READY');
    expect(composePhase('READY', false, false)).toBe('PROVISIONING');
    expect(composePhase('PROVISIONING', false, true)).toBe('PROVISIONING');
    expect(nextPhase('PROVISIONING', st([cond('Ready', 'True')]), false, 'v0.1', true)).toBe('READY');
  });

  it('STOPPED is sticky except for Bootstrapping=True without Suspended=True; ContainerRuntimeRestart is ignored', () => {
    expect(nextPhase('STOPPED', st([cond('Ready', 'True')]), true, 'v0.1')).toBe('STOPPED');
    expect(nextPhase('STOPPED', readyAndSuspended, true, 'v0.1')).toBe('STOPPED');
    expect(nextPhase('STOPPED', st([cond('Bootstrapping', 'True'), cond('Ready', 'True')]), true, 'v0.1')).toBe('READY');
    expect(nextPhase('STOPPED', st([cond('Bootstrapping', 'True'), cond('Ready', 'Unknown')]), false, 'v0.1')).toBe('PROVISIONING');
    expect(nextPhase('STOPPED', st([cond('Bootstrapping', 'True'), cond('Suspended', 'True')]), true, 'v0.1')).toBe('STOPPED');
    expect(nextPhase('STOPPED', st([cond('Bootstrapping', 'True'), cond('Ready', 'True')], true), true, 'v0.1')).toBe('STOPPED');
    expect(nextPhase('STOPPED', st([cond('Bootstrapping', 'True'), cond('Ready', 'False', 'ContainerRuntimeRestart')]), false, 'v0.1')).toBe('STOPPED');
    // 0.0.x knows no exception.
    expect(nextPhase('STOPPED', st([cond('Bootstrapping', 'True'), cond('Ready', 'True')]), true, 'v0.0')).toBe('STOPPED');
  });

  it('STOPPING stays on a False ContainerRuntimeRestart; STARTING waits for READY or ERROR', () => {
    expect(nextPhase('STOPPING', st([cond('Ready', 'False', 'ContainerRuntimeRestart')]), false, 'v0.1')).toBe('STOPPING');
    expect(nextPhase('STOPPING', st([cond('Ready', 'False', 'ContainerRuntimeRestart')]), false, 'v0.0')).toBe('ERROR');
    expect(nextPhase('STOPPING', st([cond('Suspended', 'True')]), false, 'v0.1')).toBe('STOPPED');
    expect(nextPhase('STOPPING', st([cond('Ready', 'False', 'ContainerStopped')]), false, 'v0.1')).toBe('STOPPED');
    expect(nextPhase('STARTING', st([cond('Ready', 'True')]), false, 'v0.1')).toBe('STARTING');
    expect(nextPhase('STARTING', st([cond('Ready', 'True')]), true, 'v0.1')).toBe('READY');
    expect(nextPhase('STARTING', st([cond('Ready', 'Unknown', 'Starting')]), true, 'v0.1')).toBe('READY');
    expect(nextPhase('STARTING', st([cond('Ready', 'False', 'Boom')]), false, 'v0.1')).toBe('ERROR');
    expect(nextPhase('STARTING', st([cond('Suspended', 'True')]), false, 'v0.1')).toBe('STARTING');
  });

  it('READY with Ready=True and a stale Suspended=True stays READY under v0.1 and is STOPPED under 0.0.x', () => {
    expect(nextPhase('READY', readyAndSuspended, true, 'v0.1')).toBe('READY');
    expect(nextPhase('READY', readyAndSuspended, true, 'v0.0')).toBe('STOPPED');
  });
});

describe('the store', () => {
  it('never adopts an unknown id and drops a snapshot whose name differs, with a warning', async () => {
    const gw = new Gateway({ socketPath: '/nonexistent/driver.sock', generation: 'v0.0' });
    try {
      expect(gw.applySnapshot({ id: 'u1', name: 'x', namespace: '', workspace: 'default', status: st([cond('Ready', 'True')]) }, 'watch')).toBe(false);
      expect(gw.rows.size).toBe(0);
      const row = gw.insertRow({ id: 'k1', name: 'kept', phase: 'PROVISIONING' });
      expect(gw.applySnapshot({ id: 'k1', name: 'k1', namespace: '', workspace: 'default', status: st([cond('Ready', 'False', 'Boom')]) }, 'watch')).toBe(false);
      expect(row.phase).toBe('PROVISIONING');
      expect(gw.warnings.at(-1)).toMatch(/sandbox name cannot be changed after creation/);
      expect(gw.applySnapshot({ id: 'k1', name: 'kept', namespace: '', workspace: 'default', status: st([cond('Ready', 'False', 'Boom')]) }, 'watch')).toBe(true);
      expect(row.phase).toBe('ERROR');
      expect(row.history).toEqual(['PROVISIONING', 'ERROR']);
    } finally {
      await gw.stop();
    }
  });
});

describe('startup probes against a minimal server (a harness self-test; the real driver implements every RPC)', () => {
  // Not a stand-in for the driver: a bare gRPC server with only GetCapabilities, to check that the harness treats
  // an UNIMPLEMENTED GetGatewayListenerRequirements as "no requirements" and a failing GetCapabilities as a
  // startup failure, as the gateway's remote_compute_driver_accepts_unimplemented_listener_requirements_api does.
  async function serve(impl: Partial<grpc.UntypedServiceImplementation>): Promise<{ socket: string; close(): Promise<void> }> {
    const dir = mkdtempSync(join(tmpdir(), 'gw-probe-'));
    const socket = join(dir, 'd.sock');
    const server = new grpc.Server();
    // A 0.0.x driver's service (its GetCapabilitiesResponse has no v0.1 fields).
    server.addService(v0.ComputeDriverService, impl as grpc.UntypedServiceImplementation);
    await new Promise<number>((res, rej) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
    return {
      socket,
      close: async () => {
        server.forceShutdown();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }

  it('tolerates UNIMPLEMENTED listener requirements and calls exactly the two probes first', async () => {
    const s = await serve({
      getCapabilities: (_call: unknown, cb: grpc.sendUnaryData<unknown>) =>
        cb(null, { driverName: 'legacy', driverVersion: '0', defaultImage: '', gatewayManagesLifecycle: false }),
    });
    const gw = new Gateway({ socketPath: s.socket, generation: 'v0.0', reconcileIntervalMs: 0 });
    try {
      await gw.start();
      expect(gw.calls.slice(0, 2).map((c) => [c.method, c.code])).toEqual([
        ['GetCapabilities', 'OK'],
        ['GetGatewayListenerRequirements', 'UNIMPLEMENTED'],
      ]);
      expect(gw.listenerRequirements).toEqual([]);
      expect(gw.capabilities?.driverName).toBe('legacy');
    } finally {
      await gw.stop();
      await s.close();
    }
  });

  it('fails startup when GetCapabilities fails', async () => {
    const s = await serve({});
    const gw = new Gateway({ socketPath: s.socket, generation: 'v0.0', reconcileIntervalMs: 0 });
    try {
      await expect(gw.start()).rejects.toThrow(/gateway startup failed: GetCapabilities/);
      expect(gw.calls.map((c) => c.method)).toEqual(['GetCapabilities']);
    } finally {
      await gw.stop();
      await s.close();
    }
  });
});
