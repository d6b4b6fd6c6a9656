// Actor state → conditions, checked through the gateway's own phase derivation under BOTH generations' rules
// (compute-driver.md §3.1 for 0.0.x, openshell-v0.1.md §4.4 for v0.1): what a user sees in `openshell sandbox
// list` for every Substrate v0.4 ActorState and every desired state.
import { describe, expect, it } from 'vitest';
import { ActorState, type Actor } from '../../src/gen/ateapi.js';
import { conditionsFor, derivePhase, REASON, stampTransitions, TRANSIENT_REASONS, type Op } from '../../src/driver/conditions.js';

const Actor_Status = ActorState;

function actor(state: ActorState, pod = '', crash = ''): Actor {
  return {
    metadata: { atespace: 'default', name: 'a', uid: 'u1', version: 1 },
    actorTemplate: { atespace: 'default', name: 't' },
    status: {
      state,
      workerAssignment: pod ? { workerNamespace: 'ate-system', workerPool: 'p', workerPod: pod, workerPodUid: 'pu', workerPodIps: ['10.0.0.1'], nodeName: 'n', workerEpoch: 1 } : undefined,
      inProgressSnapshotUri: '',
      actorVolumes: [],
      inProgressLocalSnapshotName: '',
      crash: crash ? { message: crash } : undefined,
      assignedNode: '',
    },
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

// Every ActorState of v0.4 (and an unknown number).
const STATUSES = [
  ActorState.ACTOR_STATE_UNSPECIFIED,
  ActorState.ACTOR_STATE_RESUMING,
  ActorState.ACTOR_STATE_RUNNING,
  ActorState.ACTOR_STATE_SUSPENDING,
  ActorState.ACTOR_STATE_SUSPENDED,
  ActorState.ACTOR_STATE_PAUSING,
  ActorState.ACTOR_STATE_PAUSED,
  ActorState.ACTOR_STATE_CRASHED,
  ActorState.ACTOR_STATE_DELETING,
  ActorState.ACTOR_STATE_REVERTING,
  ActorState.UNRECOGNIZED,
];
const OPS: Array<Op | undefined> = [undefined, 'provisioning', 'starting', 'stopping', 'deleting', 'recovering'];

describe('conditions for a running-intent sandbox', () => {
  it('RUNNING is Ready=True and names the worker', () => {
    const c = conditionsFor({ actor: actor(Actor_Status.ACTOR_STATE_RUNNING, 'worker-1'), desired: 'running', provisioned: true });
    expect(c).toEqual([{ type: 'Ready', status: 'True', reason: REASON.running, message: 'running on worker worker-1' }]);
    expect(phaseOf(c)).toBe('READY');
  });

  it('RESUMING is Ready=Unknown (Starting), never an error', () => {
    const c = conditionsFor({ actor: actor(Actor_Status.ACTOR_STATE_RESUMING, 'w'), desired: 'running', provisioned: true });
    expect(c[0]).toMatchObject({ type: 'Ready', status: 'Unknown', reason: 'Starting' });
    expect(phaseOf(c)).toBe('PROVISIONING');
  });

  for (const s of [Actor_Status.ACTOR_STATE_SUSPENDED, Actor_Status.ACTOR_STATE_PAUSED, Actor_Status.ACTOR_STATE_SUSPENDING, Actor_Status.ACTOR_STATE_PAUSING]) {
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
    const c = conditionsFor({ actor: actor(Actor_Status.ACTOR_STATE_SUSPENDED), desired: 'running', op: 'starting', provisioned: true });
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
    const c = conditionsFor({ actor: actor(Actor_Status.ACTOR_STATE_SUSPENDED), desired: 'stopped', provisioned: true });
    expect(c.find((x) => x.type === 'Suspended')).toMatchObject({ status: 'True', reason: REASON.suspended });
    expect(phaseOf(c)).toBe('STOPPED');
  });

  it('PAUSED after StopSandbox in pause mode → STOPPED', () => {
    const c = conditionsFor({ actor: actor(Actor_Status.ACTOR_STATE_PAUSED), desired: 'stopped', provisioned: true });
    expect(c.find((x) => x.type === 'Suspended')).toMatchObject({ status: 'True', reason: REASON.paused });
    expect(phaseOf(c)).toBe('STOPPED');
  });

  for (const s of [Actor_Status.ACTOR_STATE_SUSPENDING, Actor_Status.ACTOR_STATE_PAUSING]) {
    it(`${Actor_Status[s]} → Suspended=False PodTerminating (the gateway keeps STOPPING)`, () => {
      const c = conditionsFor({ actor: actor(s, 'w'), desired: 'stopped', op: 'stopping', provisioned: true });
      expect(c.find((x) => x.type === 'Suspended')).toMatchObject({ status: 'False', reason: 'PodTerminating' });
      expect(phaseOf(c)).not.toBe('ERROR');
    });
  }

  it('RUNNING while StopSandbox runs → Suspended=False PodTerminating, not Ready=True', () => {
    const c = conditionsFor({ actor: actor(Actor_Status.ACTOR_STATE_RUNNING, 'w'), desired: 'stopped', op: 'stopping', provisioned: true });
    expect(c.find((x) => x.type === 'Suspended')).toMatchObject({ status: 'False', reason: 'PodTerminating' });
    expect(c.some((x) => x.type === 'Ready' && x.status === 'True')).toBe(false);
  });

  for (const s of [Actor_Status.ACTOR_STATE_RUNNING, Actor_Status.ACTOR_STATE_RESUMING]) {
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

describe('v0.4 states: CRASHED, REVERTING, DELETING', () => {
  it('CRASHED while the gateway wants it running is transient (Recovering) and carries the crash message', () => {
    const c = conditionsFor({ actor: actor(ActorState.ACTOR_STATE_CRASHED, 'w', 'atelet Restore failed: worker pod went away'), desired: 'running', provisioned: true });
    expect(c).toHaveLength(1);
    expect(c[0]).toMatchObject({ type: 'Ready', status: 'Unknown', reason: REASON.recovering });
    expect(c[0]!.message).toMatch(/crashed: atelet Restore failed: worker pod went away; recovering/);
    expect(phaseOf(c)).toBe('PROVISIONING');
  });

  it('a recovery that failed for a reason a retry can fix (no room, unavailable, busy) stays transient while the driver retries', () => {
    const why = 'ateapi RESOURCE_EXHAUSTED: no worker has room for the actor';
    const crashed = conditionsFor({ actor: actor(ActorState.ACTOR_STATE_CRASHED, '', 'worker restarted while hosting the actor'), desired: 'running', provisioned: true, recoveryFailure: why, recoveryRetrying: true });
    expect(crashed[0]).toMatchObject({ status: 'Unknown', reason: REASON.recovering });
    expect(crashed[0]!.message).toContain(`failed for now (${why}); retrying`);
    expect(phaseOf(crashed)).toBe('PROVISIONING');
    const reverted = conditionsFor({ actor: actor(ActorState.ACTOR_STATE_SUSPENDED), desired: 'running', provisioned: true, recoveryFailure: why, recoveryRetrying: true });
    expect(reverted[0]).toMatchObject({ status: 'Unknown', reason: REASON.recovering });
    expect(phaseOf(reverted)).toBe('PROVISIONING');
  });

  it('a failed recovery is an error condition (Ready=False RecoveryFailed → ERROR), until one succeeds', () => {
    const c = conditionsFor({ actor: actor(ActorState.ACTOR_STATE_CRASHED, '', 'worker restarted while hosting the actor'), desired: 'running', provisioned: true, recoveryFailure: 'ateapi FAILED_PRECONDITION: the external snapshot is gone' });
    expect(c).toEqual([
      {
        type: 'Ready',
        status: 'False',
        reason: REASON.recoveryFailed,
        message: 'the actor crashed: worker restarted while hosting the actor; recovering it (RevertActor, ResumeActor) failed: ateapi FAILED_PRECONDITION: the external snapshot is gone',
      },
    ]);
    expect(TRANSIENT_REASONS as readonly string[]).not.toContain(REASON.recoveryFailed);
    expect(phaseOf(c)).toBe('ERROR');
    // A new attempt in flight reads transient again; a running actor is Ready whatever failed before.
    expect(phaseOf(conditionsFor({ actor: actor(ActorState.ACTOR_STATE_CRASHED), desired: 'running', provisioned: true, recoveryFailure: 'x', op: 'recovering' }))).toBe('PROVISIONING');
    expect(phaseOf(conditionsFor({ actor: actor(ActorState.ACTOR_STATE_RUNNING, 'w'), desired: 'running', provisioned: true, recoveryFailure: 'x' }))).toBe('READY');
  });

  it('REVERTING is transient (Recovering), and the resume after a revert reads Recovering too', () => {
    const c = conditionsFor({ actor: actor(ActorState.ACTOR_STATE_REVERTING), desired: 'running', provisioned: true });
    expect(c[0]).toMatchObject({ status: 'Unknown', reason: REASON.recovering });
    const after = conditionsFor({ actor: actor(ActorState.ACTOR_STATE_SUSPENDED), desired: 'running', provisioned: true, op: 'recovering' });
    expect(after[0]).toMatchObject({ status: 'Unknown', reason: REASON.recovering });
  });

  for (const s of [ActorState.ACTOR_STATE_CRASHED, ActorState.ACTOR_STATE_REVERTING]) {
    it(`${ActorState[s]} of a sandbox the gateway stopped reads stopping (it is reverted, not run), never STOPPED yet nor ERROR`, () => {
      const c = conditionsFor({ actor: actor(s, '', 'boom'), desired: 'stopped', provisioned: true, recoveryFailure: 'still failing' });
      expect(c.find((x) => x.type === 'Suspended')).toMatchObject({ status: 'False', reason: REASON.stopping });
      expect(phaseOf(c)).toBe('PROVISIONING');
    });
  }

  for (const desired of ['running', 'stopped'] as const) {
    it(`DELETING (outside the gateway) is transient for desired=${desired}`, () => {
      const c = conditionsFor({ actor: actor(ActorState.ACTOR_STATE_DELETING), desired, provisioned: true });
      expect(c).toEqual([{ type: 'Ready', status: 'Unknown', reason: REASON.deleting, message: 'the actor is being deleted outside the gateway' }]);
      expect(phaseOf(c)).toBe('PROVISIONING');
    });
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
