// Both gateway generations on one socket: the same response object encodes to what each generation's own
// decoder reads (0.0.x: last_transition_time / timestamp_ms; v0.1: transition_time / event_time Timestamps),
// and the generation is remembered across a driver restart.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as v1 from '../../src/gen/compute_driver.js';
import * as v0 from '../../src/gen/v0/compute_driver.js';
import { dualServiceDefinition, GatewayGeneration, type Generation } from '../../src/driver/generations.js';

const T = new Date('2026-12-04T10:11:12.345Z');
const sandbox: v1.DriverSandbox = {
  id: 'sb-1',
  name: 'hello',
  namespace: 'default',
  workspace: 'default',
  spec: undefined,
  status: {
    name: 'hello',
    instanceId: 'worker-0',
    agentFd: '',
    sandboxFd: '',
    deleting: false,
    conditions: [{ type: 'Ready', status: 'True', reason: 'ActorRunning', message: 'running', transitionTime: T }],
    resolvedIdentity: undefined,
    fenceEvidence: undefined,
  },
};
const event: v1.WatchSandboxesEvent = {
  payload: { $case: 'platformEvent', value: { sandboxId: 'sb-1', event: { eventTime: T, source: 'substrate', type: 'Normal', reason: 'Started', message: 'm', metadata: {} } } },
};

function encoders(g: Generation) {
  const d = dualServiceDefinition(() => g) as unknown as Record<string, { responseSerialize: (m: unknown) => Buffer }>;
  return d;
}

describe('observation responses per generation', () => {
  it('a 0.0.x gateway reads last_transition_time (RFC 3339) and timestamp_ms', () => {
    const d = encoders('v0.0');
    const got = v0.GetSandboxResponse.decode(d.getSandbox!.responseSerialize({ sandbox }));
    expect(got.sandbox?.status?.conditions[0]?.lastTransitionTime).toBe(T.toISOString());
    expect(got.sandbox?.status?.sandboxName).toBe('hello');
    const list = v0.ListSandboxesResponse.decode(d.listSandboxes!.responseSerialize({ sandboxes: [sandbox] }));
    expect(list.sandboxes[0]?.status?.conditions[0]?.lastTransitionTime).toBe(T.toISOString());
    const ev = v0.WatchSandboxesEvent.decode(d.watchSandboxes!.responseSerialize(event));
    expect(ev.payload?.$case === 'platformEvent' && ev.payload.value.event?.timestampMs).toBe(T.getTime());
    // The v0.1 fields are absent: a v0.1 decoder finds no Timestamp (it would drop the event).
    expect(v1.GetSandboxResponse.decode(d.getSandbox!.responseSerialize({ sandbox })).sandbox?.status?.conditions[0]?.transitionTime).toBeUndefined();
  });

  it('a v0.1 gateway reads transition_time and event_time as valid Timestamps', () => {
    const d = encoders('v0.1');
    const got = v1.GetSandboxResponse.decode(d.getSandbox!.responseSerialize({ sandbox }));
    expect(got.sandbox?.status?.conditions[0]?.transitionTime?.toISOString()).toBe(T.toISOString());
    expect(got.sandbox?.status?.name).toBe('hello');
    const ev = v1.WatchSandboxesEvent.decode(d.watchSandboxes!.responseSerialize(event));
    expect(ev.payload?.$case === 'platformEvent' && ev.payload.value.event?.eventTime?.toISOString()).toBe(T.toISOString());
    // And the 0.0.x field is absent (reserved in v0.1).
    expect(v0.GetSandboxResponse.decode(d.getSandbox!.responseSerialize({ sandbox })).sandbox?.status?.conditions[0]?.lastTransitionTime).toBe('');
  });

  it('serves 0.0.x GetGatewayListenerRequirements and v0.1 AuthenticateSandbox on the same paths upstream uses', () => {
    const d = dualServiceDefinition(() => 'v0.1') as unknown as Record<string, { path: string }>;
    expect(d.getGatewayListenerRequirements?.path).toBe('/openshell.compute.v1.ComputeDriver/GetGatewayListenerRequirements');
    expect(d.authenticateSandbox?.path).toBe('/openshell.compute.v1.ComputeDriver/AuthenticateSandbox');
    expect(d.getSandbox?.path).toBe('/openshell.compute.v1.ComputeDriver/GetSandbox');
  });
});

describe('the generation', () => {
  it('defaults to 0.0.x, follows GetCapabilities, and is remembered across a restart', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gen-test-'));
    try {
      const file = path.join(dir, 'driver.sock.generation');
      const a = new GatewayGeneration(file);
      expect(a.current).toBe('v0.0');
      a.seen('v0.1');
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(new GatewayGeneration(file).current).toBe('v0.1');
      a.seen('v0.0');
      expect(new GatewayGeneration(file).current).toBe('v0.0');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
