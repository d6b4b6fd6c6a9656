// The phase rules of both gateway generations over EVERY condition set the driver can emit: src/driver/conditions.ts
// conditionsFor over all Substrate v0.4 actor states (ACTOR_STATE_*, CRASHED/REVERTING/DELETING included) × desired
// state × in-flight operation (recovery included) × a failed crash recovery (× provisioned, missing, failed, no actor).
// 0.0.x lets Suspended=True win (compute-driver.md §3.1); v0.1 lets Ready=True win (openshell-v0.1.md §4.4 step 3). The
// driver never emits both together, so each condition set must derive the same phase under both rule sets. Checked with
// the driver's own derivePhase(…, 'v0.1' | 'v0.0') AND the gateway stand-in's independent derive_phase (harness.ts), and
// through both wire encodings (src/driver/generations.ts): v0.1's Timestamps pass the stand-in's §4.1 validation, 0.0.x's
// RFC 3339 strings parse to the same instant.
import { describe, expect, it } from 'vitest';
import { Actor, ActorState } from '../../../src/gen/ateapi.js';
import { WatchSandboxesEvent, type DriverSandbox } from '../../../src/gen/compute_driver.js';
import * as v0 from '../../../src/gen/v0/compute_driver.js';
import { conditionsFor, derivePhase as driverPhase, stampTransitions, type Op, type StatusInput } from '../../../src/driver/conditions.js';
import { dualServiceDefinition } from '../../../src/driver/generations.js';
import type { Desired } from '../../../src/driver/records.js';
import { derivePhase as gatewayPhase, nextPhase, watchEventTimestampProblems, type Phase } from './harness.js';

const STATES = Object.values(ActorState).filter((v): v is ActorState => typeof v === 'number' && v !== ActorState.UNRECOGNIZED);
const DESIRED: Desired[] = ['running', 'stopped'];
const OPS: Array<Op | undefined> = [undefined, 'provisioning', 'starting', 'stopping', 'deleting', 'recovering'];
/** Why the last crash recovery failed (undefined: none failed). */
const RECOVERY_FAILURES: Array<string | undefined> = [undefined, 'no Substrate worker has room for the actor now'];

interface Case {
  label: string;
  input: StatusInput;
}

function cases(): Case[] {
  const out: Case[] = [];
  for (const desired of DESIRED) {
    for (const op of OPS) {
      for (const state of STATES) {
        for (const worker of ['', 'w3']) {
          for (const recoveryFailure of RECOVERY_FAILURES) {
            const actor = Actor.fromPartial({
              metadata: { atespace: 'default', name: 'a' },
              status: {
                state,
                workerAssignment: worker ? { worker: { atespace: '', name: worker } } : undefined,
                crash: state === ActorState.ACTOR_STATE_CRASHED ? { message: 'worker pod went away while hosting the actor' } : undefined,
              },
            });
            out.push({
              label: `${ActorState[state]} desired=${desired} op=${op ?? '-'} worker=${worker || '-'}${recoveryFailure ? ' recoveryFailed=yes' : ''}`,
              input: { actor, desired, op, provisioned: true, recoveryFailure },
            });
          }
        }
      }
      for (const provisioned of [false, true]) {
        for (const actorMissing of [false, true]) {
          for (const progress of [undefined, 'pulling the image']) {
            out.push({ label: `no actor desired=${desired} op=${op ?? '-'} provisioned=${provisioned} missing=${actorMissing} progress=${progress ?? '-'}`, input: { desired, op, provisioned, actorMissing, progress } });
          }
        }
      }
      out.push({ label: `failed desired=${desired} op=${op ?? '-'}`, input: { desired, op, provisioned: true, failure: { reason: 'TemplateRejected', message: 'bad' } } });
    }
  }
  return out;
}

const ALL = cases();
const T0 = new Date('2026-12-02T10:00:00.123Z');

function sandboxOf(c: Case): DriverSandbox {
  return {
    id: 'sb',
    name: 'n',
    namespace: '',
    workspace: 'default',
    status: { name: 'n', instanceId: '', agentFd: '', sandboxFd: '', deleting: false, conditions: stampTransitions(undefined, conditionsFor(c.input), T0) },
  };
}

describe('every condition set the driver can emit', () => {
  it(`covers ${ALL.length} inputs: all ${STATES.length} actor states × desired × op, plus the actor-less and failed ones`, () => {
    expect(STATES).toHaveLength(10);
    expect(ALL.length).toBe(2 * 6 * (10 * 2 * 2 + 8 + 1));
  });

  it('never carries Ready=True together with Suspended=True, and never Ready=True while the gateway wants it stopped', () => {
    const bad: string[] = [];
    for (const c of ALL) {
      const conds = conditionsFor(c.input);
      const readyTrue = conds.some((x) => x.type === 'Ready' && x.status === 'True');
      const suspTrue = conds.some((x) => x.type === 'Suspended' && x.status === 'True');
      if (readyTrue && suspTrue) bad.push(`${c.label}: Ready=True and Suspended=True`);
      if (readyTrue && c.input.desired === 'stopped') bad.push(`${c.label}: Ready=True while stopped`);
      if (!conds.some((x) => x.type === 'Ready')) bad.push(`${c.label}: no Ready condition`);
    }
    expect(bad).toEqual([]);
  });

  it('derives the same phase under the v0.1 and the 0.0.x rules (the driver’s derivePhase and the stand-in’s)', () => {
    const seen = new Map<string, Set<string>>();
    const bad: string[] = [];
    for (const c of ALL) {
      const sb = sandboxOf(c);
      const conds = sb.status!.conditions;
      const d1 = driverPhase(conds, false, 'v0.1');
      const d0 = driverPhase(conds, false, 'v0.0');
      const g1 = gatewayPhase(sb.status, 'v0.1');
      const g0 = gatewayPhase(sb.status, 'v0.0');
      if (new Set([d1, d0, g1, g0]).size !== 1) bad.push(`${c.label}: driver v0.1 ${d1}, driver 0.0.x ${d0}, gateway v0.1 ${g1}, gateway 0.0.x ${g0}`);
      const k = c.input.desired;
      if (!seen.has(k)) seen.set(k, new Set());
      seen.get(k)!.add(g1);
      // A STOPPED row stays STOPPED under both generations' stickiness, whatever the driver reports.
      for (const rules of ['v0.1', 'v0.0'] as const) {
        const n = nextPhase('STOPPED', sb.status, true, rules);
        if (n !== 'STOPPED') bad.push(`${c.label}: a STOPPED row becomes ${n} under ${rules}`);
      }
    }
    expect(bad).toEqual([]);
    // Sanity: the enumeration reaches the phases that matter, and stopped sandboxes never derive READY or ERROR
    // unless provisioning failed.
    expect([...seen.get('running')!].sort()).toEqual(['ERROR', 'PROVISIONING', 'READY']);
    expect([...seen.get('stopped')!].sort()).toEqual(['ERROR', 'PROVISIONING', 'STOPPED']);
  });

  it('only a real failure (a failed provisioning or crash recovery, a vanished actor) derives ERROR; a suspended-outside-the-gateway actor never does', () => {
    const errors = ALL.filter((c) => gatewayPhase(sandboxOf(c).status, 'v0.1') === ('ERROR' as Phase)).map((c) => c.label);
    for (const l of errors) expect(l).toMatch(/^failed |missing=true|recoveryFailed=yes/);
    const stateOf = (c: Case) => c.input.actor?.status?.state;
    const outOfBand = ALL.filter(
      (c) => c.input.desired === 'running' && !c.input.op && !c.input.recoveryFailure && [ActorState.ACTOR_STATE_SUSPENDED, ActorState.ACTOR_STATE_PAUSED].includes(stateOf(c)!),
    );
    expect(outOfBand.length).toBeGreaterThan(0);
    for (const c of outOfBand) expect(gatewayPhase(sandboxOf(c).status, 'v0.1')).toBe('PROVISIONING');
    // v0.4: a crashed actor the gateway wants running is being recovered by the driver (RevertActor → ResumeActor):
    // transient (Ready=Unknown Recovering, PROVISIONING) until a recovery attempt fails; never STOPPED.
    const crashed = ALL.filter(
      (c) => c.input.desired === 'running' && !c.input.recoveryFailure && [ActorState.ACTOR_STATE_CRASHED, ActorState.ACTOR_STATE_REVERTING].includes(stateOf(c)!),
    );
    expect(crashed.length).toBeGreaterThan(0);
    for (const c of crashed) {
      expect(gatewayPhase(sandboxOf(c).status, 'v0.1'), c.label).toBe('PROVISIONING');
      expect(conditionsFor(c.input).find((x) => x.type === 'Ready'), c.label).toMatchObject({ status: 'Unknown', reason: 'Recovering' });
    }
    const crashedFailed = ALL.filter((c) => c.input.desired === 'running' && c.input.op !== 'recovering' && c.input.recoveryFailure && stateOf(c) === ActorState.ACTOR_STATE_CRASHED);
    for (const c of crashedFailed) expect(conditionsFor(c.input).find((x) => x.type === 'Ready'), c.label).toMatchObject({ status: 'False', reason: 'RecoveryFailed' });
  });

  it('encodes valid times for each generation: v0.1 Timestamps pass §4.1, 0.0.x RFC 3339 strings name the same instant', () => {
    let gen: 'v0.1' | 'v0.0' = 'v0.1';
    const def = dualServiceDefinition(() => gen) as unknown as Record<string, { responseSerialize: (m: unknown) => Buffer }>;
    const ser = def.watchSandboxes!.responseSerialize;
    for (const c of ALL) {
      const sb = sandboxOf(c);
      const ev: WatchSandboxesEvent = { payload: { $case: 'sandbox', value: { sandbox: sb } } };
      gen = 'v0.1';
      const b1 = ser(ev);
      expect(watchEventTimestampProblems(b1), c.label).toEqual([]);
      const d1 = WatchSandboxesEvent.decode(b1);
      const conds1 = d1.payload?.$case === 'sandbox' ? d1.payload.value.sandbox!.status!.conditions : [];
      expect(conds1.map((x) => x.transitionTime?.getTime())).toEqual(sb.status!.conditions.map(() => T0.getTime()));
      gen = 'v0.0';
      const d0 = v0.WatchSandboxesEvent.decode(ser(ev));
      const conds0 = d0.payload?.$case === 'sandbox' ? d0.payload.value.sandbox!.status!.conditions : [];
      expect(conds0.map((x) => x.lastTransitionTime), c.label).toEqual(sb.status!.conditions.map(() => T0.toISOString()));
      // And a 0.0.x gateway finds nothing at v0.1's field numbers: the v0.1 encoding read by 0.0.x bindings has no times.
      const cross = v0.WatchSandboxesEvent.decode(b1);
      const crossConds = cross.payload?.$case === 'sandbox' ? cross.payload.value.sandbox!.status!.conditions : [];
      expect(crossConds.every((x) => x.lastTransitionTime === '')).toBe(true);
    }
  });
});
