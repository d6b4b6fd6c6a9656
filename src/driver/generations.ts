// Both gateway generations on one socket. OpenShell 0.0.x (proto/v0/compute_driver.proto) and v0.1
// (proto/compute_driver.proto) use the same method paths, and every request decodes with the v0.1 types
// (renamed fields kept their numbers). Responses differ only in their time fields:
//   DriverCondition      0.0.x: last_transition_time = 5 (RFC 3339 string)   v0.1: transition_time = 105 (Timestamp)
//   DriverPlatformEvent  0.0.x: timestamp_ms = 1 (int64)                       v0.1: event_time = 101 (Timestamp)
// and 0.0.x gateways also call GetGatewayListenerRequirements (gone in v0.1).
//
// Which generation is talking is learnt from GetCapabilities, which every gateway calls first: a request
// with `gateway` metadata comes from v0.1, one without from 0.0.x. The answer is kept in a small file next to
// the socket, so a gateway whose driver restarts (its watch reconnects without a new GetCapabilities) keeps
// getting the encoding it reads. Responses are encoded at send time for the current generation.
import fs from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import {
  ComputeDriverService,
  type DriverPlatformEvent,
  type DriverSandbox,
  type GetSandboxResponse,
  type ListSandboxesResponse,
  type WatchSandboxesEvent,
} from '../gen/compute_driver.js';
import * as v0 from '../gen/v0/compute_driver.js';
import { logger } from '../common/log.js';

const log = logger('driver.generation');

export type Generation = 'v0.1' | 'v0.0';

export class GatewayGeneration {
  private value: Generation;

  /**
   * `file`: where the generation is remembered (undefined: in memory only). Unknown → 0.0.x, which needs no
   * negotiation: a v0.1 gateway always calls GetCapabilities before anything else, and its Validate and
   * Create requests carry spec.workload_identity, which 0.0.x gateways never send.
   */
  constructor(private readonly file?: string) {
    let g: Generation = 'v0.0';
    if (file) {
      try {
        const s = fs.readFileSync(file, 'utf8').trim();
        if (s === 'v0.0' || s === 'v0.1') g = s;
      } catch {
        /* first start */
      }
    }
    this.value = g;
  }

  get current(): Generation {
    return this.value;
  }

  /** Records the generation of the gateway that just called GetCapabilities. Cheap when unchanged. */
  seen(g: Generation): void {
    if (g === this.value) return;
    log.info('gateway generation changed', { from: this.value, to: g });
    this.value = g;
    if (!this.file) return;
    try {
      const tmp = `${this.file}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, `${g}\n`, { mode: 0o600 });
      fs.renameSync(tmp, this.file);
    } catch (e) {
      log.warn('could not remember the gateway generation', { file: this.file, error: (e as Error).message });
    }
  }
}

/** RFC 3339 with milliseconds, as 0.0.x drivers sent last_transition_time. */
function iso(d: Date | undefined): string {
  return d ? d.toISOString() : '';
}

export function toV0Sandbox(sb: DriverSandbox): v0.DriverSandbox {
  const st = sb.status;
  return {
    id: sb.id,
    name: sb.name,
    namespace: sb.namespace,
    workspace: sb.workspace,
    // Observations never carry the spec.
    spec: undefined,
    status: st && {
      sandboxName: st.name,
      instanceId: st.instanceId,
      agentFd: st.agentFd,
      sandboxFd: st.sandboxFd,
      deleting: st.deleting,
      conditions: st.conditions.map((c) => ({
        type: c.type,
        status: c.status,
        reason: c.reason,
        message: c.message,
        lastTransitionTime: iso(c.transitionTime),
      })),
    },
  };
}

export function toV0Event(e: DriverPlatformEvent): v0.DriverPlatformEvent {
  return {
    timestampMs: e.eventTime ? e.eventTime.getTime() : 0,
    source: e.source,
    type: e.type,
    reason: e.reason,
    message: e.message,
    metadata: e.metadata,
  };
}

export function toV0WatchEvent(ev: WatchSandboxesEvent): v0.WatchSandboxesEvent {
  const p = ev.payload;
  if (!p) return { payload: undefined };
  switch (p.$case) {
    case 'sandbox':
      return { payload: { $case: 'sandbox', value: { sandbox: p.value.sandbox && toV0Sandbox(p.value.sandbox) } } };
    case 'deleted':
      return { payload: p };
    case 'platformEvent':
      return {
        payload: { $case: 'platformEvent', value: { sandboxId: p.value.sandboxId, event: p.value.event && toV0Event(p.value.event) } },
      };
  }
}

/**
 * The service definition served on the socket: the v0.1 methods (AuthenticateSandbox included), plus
 * 0.0.x's GetGatewayListenerRequirements, with the three observation responses encoded for the generation
 * `current()` names at send time.
 */
export function dualServiceDefinition(current: () => Generation): grpc.ServiceDefinition {
  const d = ComputeDriverService;
  const pick =
    <T, U>(enc1: (m: T) => Buffer, conv: (m: T) => U, enc0: (m: U) => Buffer) =>
    (m: T): Buffer =>
      current() === 'v0.0' ? enc0(conv(m)) : enc1(m);
  return {
    ...d,
    getGatewayListenerRequirements: v0.ComputeDriverService.getGatewayListenerRequirements,
    getSandbox: {
      ...d.getSandbox,
      responseSerialize: pick(
        d.getSandbox.responseSerialize,
        (m: GetSandboxResponse): v0.GetSandboxResponse => ({ sandbox: m.sandbox && toV0Sandbox(m.sandbox) }),
        v0.ComputeDriverService.getSandbox.responseSerialize,
      ),
    },
    listSandboxes: {
      ...d.listSandboxes,
      responseSerialize: pick(
        d.listSandboxes.responseSerialize,
        (m: ListSandboxesResponse): v0.ListSandboxesResponse => ({ sandboxes: m.sandboxes.map(toV0Sandbox) }),
        v0.ComputeDriverService.listSandboxes.responseSerialize,
      ),
    },
    watchSandboxes: {
      ...d.watchSandboxes,
      responseSerialize: pick(d.watchSandboxes.responseSerialize, toV0WatchEvent, v0.ComputeDriverService.watchSandboxes.responseSerialize),
    },
  } as unknown as grpc.ServiceDefinition;
}
