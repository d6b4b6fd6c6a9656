// Status → conditions, checked through the gateway's own phase derivation (compute-driver.md §3.1): what
// a user sees in `openshell sandbox list` for every actor status and every desired state.
import { describe, expect, it } from 'vitest';
import { Actor_Status, type Actor } from '../../src/gen/june/ateapi.js';
import { conditionsFor, derivePhase, REASON, stampTransitions, TRANSIENT_REASONS, type Op } from '../../src/driver/conditions.js';

function actor(status: Actor_Status, pod = ''): Actor {
  return {
    actorId: 'a',
    version: 1,
    actorTemplateNamespace: 'default',
    actorTemplateName: 't',
    status,
    ateomPodNamespace: pod ? 'ate-system' : '',
    ateomPodName: pod,
    ateomPodIp: '',
    inProgressSnapshot: '',
    ateomPodUid: '',
    workerPoolName: '',
    atespace: 'default',
  };
}

/** The phase under both gateway generations' rules; they must agree for everything the driver emits. */
const phaseOf = (conds: ReturnType<typeof conditionsFor>) => {
  const stamped = conds.map((c) => ({ ...c, transitionTime: new Date(0) }));
  const v01 = derivePhase(stamped, false, 'v0.1');
  const v00 = derivePhase(stamped, false, 'v0.0');
  expect(v00, `0.0.x and v0.1 rules disagree on ${JSON.stringify(conds)}`).toBe(v01);
  return v01;
};

const STATUSES = [
  Actor_Status.STATUS_UNSPECIFIED,
  Actor_Status.STATUS_RESUMING,
  Actor_Status.STATUS_RUNNING,
  Actor_Status.STATUS_SUSPENDING,
  Actor_Status.STATUS_SUSPENDED,
  Actor_Status.STATUS_PAUSING,
  Actor_Status.STATUS_PAUSED,
  Actor_Status.UNRECOGNIZED,
];
const OPS: Array<Op | undefined> = [undefined, 'provisioning', 'starting', 'stopping', 'deleting'];

describe('conditions for a running-intent sandbox', () => {
  it('RUNNING is Ready=True and names the worker', () => {
    const c = conditionsFor({ actor: actor(Actor_Status.STATUS_RUNNING, 'worker-1'), desired: 'running', provisioned: true });
    expect(c).toEqual([{ type: 'Ready', status: 'True', reason: REASON.running, message: 'running on worker worker-1' }]);
    expect(phaseOf(c)).toBe('READY');
  });

  it('RESUMING is Ready=Unknown (Starting), never an error', () => {
    const c = conditionsFor({ actor: actor(Actor_Status.STATUS_RESUMING, 'w'), desired: 'running', provisioned: true });
    expect(c[0]).toMatchObject({ type: 'Ready', status: 'Unknown', reason: 'Starting' });
    expect(phaseOf(c)).toBe('PROVISIONING');
  });

  for (const s of [Actor_Status.STATUS_SUSPENDED, Actor_Status.STATUS_PAUSED, Actor_Status.STATUS_SUSPENDING, Actor_Status.STATUS_PAUSING]) {
    it(`suspended outside the gateway (${Actor_Status[s]}) while it wants running → Ready=Unknown, resumes on demand; never ERROR or STOPPED`, () => {
      const c = conditionsFor({ actor: actor(s), desired: 'running', provisioned: true });
      expect(c).toHaveLength(1);
      expect(c[0]).toMatchObject({ type: 'Ready', status: 'Unknown', reason: REASON.resumesOnDemand });
      expect(c[0]!.message).toMatch(/resumes on demand/);
      expect(c.some((x) => x.type === 'Suspended' && x.status === 'True')).toBe(false);
      expect(c.some((x) => x.type === 'Ready' && x.status === 'False')).toBe(false);
      expect(phaseOf(c)).toBe('PROVISIONING');
    });
  }

  it('a suspended actor being started (StartSandbox in flight) reads Starting', () => {
    const c = conditionsFor({ actor: actor(Actor_Status.STATUS_SUSPENDED), desired: 'running', op: 'starting', provisioned: true });
    expect(c[0]).toMatchObject({ status: 'Unknown', reason: 'Starting' });
  });

  it('provisioning before the actor exists is Ready=Unknown with the current step', () => {
    const c = conditionsFor({ desired: 'running', provisioned: false, progress: 'waiting for ActorTemplate oss-x (golden snapshot)' });
    expect(c).toEqual([{ type: 'Ready', status: 'Unknown', reason: 'DependenciesNotReady', message: 'waiting for ActorTemplate oss-x (golden snapshot)' }]);
    expect(phaseOf(c)).toBe('PROVISIONING');
  });
});

describe('conditions for a stopped-intent sandbox', () => {
  it('SUSPENDED after StopSandbox → Suspended=True → STOPPED', () => {
    const c = conditionsFor({ actor: actor(Actor_Status.STATUS_SUSPENDED), desired: 'stopped', provisioned: true });
    expect(c.find((x) => x.type === 'Suspended')).toMatchObject({ status: 'True', reason: REASON.suspended });
    expect(phaseOf(c)).toBe('STOPPED');
  });

  it('PAUSED after StopSandbox in pause mode → STOPPED', () => {
    const c = conditionsFor({ actor: actor(Actor_Status.STATUS_PAUSED), desired: 'stopped', provisioned: true });
    expect(c.find((x) => x.type === 'Suspended')).toMatchObject({ status: 'True', reason: REASON.paused });
    expect(phaseOf(c)).toBe('STOPPED');
  });

  for (const s of [Actor_Status.STATUS_SUSPENDING, Actor_Status.STATUS_PAUSING]) {
    it(`${Actor_Status[s]} → Suspended=False PodTerminating (the gateway keeps STOPPING)`, () => {
      const c = conditionsFor({ actor: actor(s, 'w'), desired: 'stopped', op: 'stopping', provisioned: true });
      expect(c.find((x) => x.type === 'Suspended')).toMatchObject({ status: 'False', reason: 'PodTerminating' });
      expect(phaseOf(c)).not.toBe('ERROR');
    });
  }

  it('RUNNING while StopSandbox runs → Suspended=False PodTerminating, not Ready=True', () => {
    const c = conditionsFor({ actor: actor(Actor_Status.STATUS_RUNNING, 'w'), desired: 'stopped', op: 'stopping', provisioned: true });
    expect(c.find((x) => x.type === 'Suspended')).toMatchObject({ status: 'False', reason: 'PodTerminating' });
    expect(c.some((x) => x.type === 'Ready' && x.status === 'True')).toBe(false);
  });

  for (const s of [Actor_Status.STATUS_RUNNING, Actor_Status.STATUS_RESUMING]) {
    it(`a stopped sandbox woken by a request (${Actor_Status[s]}) reads stopping, never Ready=True nor ERROR: the driver suspends it again`, () => {
      const c = conditionsFor({ actor: actor(s, 'w'), desired: 'stopped', provisioned: true });
      expect(c.find((x) => x.type === 'Suspended')).toMatchObject({ status: 'False', reason: 'PodTerminating' });
      expect(c.some((x) => x.type === 'Ready' && x.status === 'True')).toBe(false);
      expect(phaseOf(c)).toBe('PROVISIONING');
    });
  }
});

describe('failures', () => {
  it('a provisioning failure is Ready=False with its descriptive reason → ERROR', () => {
    const c = conditionsFor({ desired: 'running', provisioned: false, failure: { reason: 'TemplateNotReady', message: 'timed out after 300 s' } });
    expect(c).toEqual([{ type: 'Ready', status: 'False', reason: 'TemplateNotReady', message: 'timed out after 300 s' }]);
    expect(phaseOf(c)).toBe('ERROR');
  });

  it('an actor deleted outside the gateway is Ready=False ActorMissing → ERROR', () => {
    const c = conditionsFor({ desired: 'running', provisioned: true, actorMissing: true });
    expect(c[0]).toMatchObject({ status: 'False', reason: REASON.actorMissing });
    expect(phaseOf(c)).toBe('ERROR');
  });

  it('an actor not read yet is Unknown, not missing', () => {
    const c = conditionsFor({ desired: 'running', provisioned: true });
    expect(phaseOf(c)).toBe('PROVISIONING');
  });
});

describe('every status × desired state × operation', () => {
  for (const desired of ['running', 'stopped'] as const) {
    for (const s of STATUSES) {
      for (const op of OPS) {
        it(`${Actor_Status[s]} desired=${desired} op=${op ?? '-'}: never ERROR; STOPPED only when stopped by the gateway`, () => {
          const c = conditionsFor({ actor: actor(s, 'w'), desired, op, provisioned: true });
          const phase = phaseOf(c); // asserts both generations' rules agree
          expect(phase).not.toBe('ERROR');
          if (desired === 'running') expect(phase).not.toBe('STOPPED');
          // Never both: v0.1 would let Ready win, 0.0.x Suspended.
          const both = c.some((x) => x.type === 'Ready' && x.status === 'True') && c.some((x) => x.type === 'Suspended' && x.status === 'True');
          expect(both).toBe(false);
          for (const x of c) {
            expect(['True', 'False', 'Unknown']).toContain(x.status);
            expect(x.reason).not.toBe('');
            expect(x.message).not.toBe('');
            if (x.type === 'Ready' && x.status === 'False') {
              expect(TRANSIENT_REASONS as readonly string[]).toContain(x.reason);
            }
          }
        });
      }
    }
  }
});

describe('transition times', () => {
  const [T1, T2, T3] = [new Date(1_000), new Date(2_000), new Date(3_000)];
  it('keeps the time while type, status and reason hold, and moves it on a change', () => {
    const a = stampTransitions(undefined, [{ type: 'Ready', status: 'Unknown', reason: 'Starting', message: 'x' }], T1);
    const b = stampTransitions(a, [{ type: 'Ready', status: 'Unknown', reason: 'Starting', message: 'y' }], T2);
    expect(b[0]!.transitionTime).toBe(T1);
    const c = stampTransitions(b, [{ type: 'Ready', status: 'True', reason: 'ActorRunning', message: 'z' }], T3);
    expect(c[0]!.transitionTime).toBe(T3);
  });
});

describe('derivePhase mirrors the gateway', () => {
  const cond = (type: string, status: string, reason = '') => ({ type, status, reason, message: '', transitionTime: new Date(0) });
  it('applies the gateway rules in order', () => {
    expect(derivePhase(undefined)).toBe('UNKNOWN');
    expect(derivePhase([cond('Ready', 'True')], true)).toBe('DELETING');
    // The one rule the generations differ on: 0.0.x lets Suspended=True win, v0.1 lets Ready=True win.
    expect(derivePhase([cond('Ready', 'True'), cond('suspended', 'TRUE')], false, 'v0.0')).toBe('STOPPED');
    expect(derivePhase([cond('Ready', 'True'), cond('suspended', 'TRUE')], false, 'v0.1')).toBe('READY');
    expect(derivePhase([cond('Ready', 'Unknown'), cond('Suspended', 'True')], false, 'v0.1')).toBe('STOPPED');
    expect(derivePhase([cond('Ready', 'False', 'starting')])).toBe('PROVISIONING');
    expect(derivePhase([cond('Ready', 'False', 'Resuming')])).toBe('ERROR');
    expect(derivePhase([cond('Ready', 'False', '')])).toBe('ERROR');
    expect(derivePhase([cond('Ready', 'Unknown', 'Anything')])).toBe('PROVISIONING');
    expect(derivePhase([])).toBe('PROVISIONING');
  });
});
