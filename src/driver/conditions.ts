// From an actor's status and what the gateway wants, to the conditions the gateway derives its phase from
// (shared/reference/compute-driver.md §3). The rules that matter:
// - `Suspended=True` means STOPPED, and only a StopSandbox may lead there;
// - any `Ready=False` whose reason is not on the gateway's transient list is a permanent ERROR, so it is used
//   only for real failures;
// - an actor suspended outside the gateway (idle suspend, an operator, a lost worker) while the gateway wants
//   it running is `Ready=Unknown` with a reason that says it resumes on demand: never ERROR, never STOPPED;
// - `Ready=True` and `Suspended=True` are never emitted together: v0.1 gateways let Ready win, 0.0.x
//   gateways let Suspended win, and every state must derive the same phase under both;
// - an actor the gateway stopped that a request woke again is reported as stopping (the driver suspends it
//   again), never Ready.
//
// Substrate v0.4 adds three states: CRASHED (a worker died, a probe timed out: the actor must be reverted
// before it can run again), REVERTING and DELETING. For a sandbox the gateway wants running the driver
// recovers a crashed actor itself (RevertActor → ResumeActor) and reports it as transient (Ready=Unknown
// `Recovering`, with the crash message); only a recovery that failed is an error condition.
import { ActorState, type Actor } from '../gen/ateapi.js';
import type { DriverCondition } from '../gen/compute_driver.js';
import { crashMessageOf, stateOf, workerOf } from './actor-view.js';
import type { Desired } from './records.js';

export type Op = 'provisioning' | 'starting' | 'stopping' | 'deleting' | 'recovering';

/** The gateway's transient `Ready=False` reasons (mod.rs `is_terminal_failure_reason`). */
export const TRANSIENT_REASONS = [
  'ReconcilerError',
  'DependenciesNotReady',
  'SupervisorNotConnected',
  'Starting',
  'ContainerStarting',
  'ContainerCreated',
  'HealthCheckStarting',
  'InspectFailed',
] as const;

export const REASON = {
  running: 'ActorRunning',
  starting: 'Starting',
  provisioning: 'DependenciesNotReady',
  resumesOnDemand: 'ResumesOnDemand',
  stopping: 'PodTerminating',
  suspended: 'ActorSuspended',
  paused: 'ActorPaused',
  stopped: 'Stopped',
  actorMissing: 'ActorMissing',
  unknown: 'ActorStatusUnknown',
  recovering: 'Recovering',
  recoveryFailed: 'RecoveryFailed',
  deleting: 'ActorDeleting',
} as const;

export interface StatusInput {
  /** The actor as last seen; undefined when none was seen. */
  actor?: Actor;
  /** The actor was looked up and does not exist. */
  actorMissing?: boolean;
  desired: Desired;
  /** A driver operation in flight on this sandbox. */
  op?: Op;
  /** CreateActor succeeded for this sandbox. */
  provisioned: boolean;
  /** A persisted provisioning failure. */
  failure?: { reason: string; message: string };
  /** The current provisioning step, for the message. */
  progress?: string;
  /** The last attempt to recover a CRASHED actor failed (why); cleared when one succeeds. */
  recoveryFailure?: string;
  /**
   * That failure is one a retry can fix (no worker has room, the backend unavailable or busy, a deadline):
   * the recovery goes on with backoff and stays transient, since a gateway keeps an ERROR row for good.
   */
  recoveryRetrying?: boolean;
}

type Cond = Omit<DriverCondition, 'transitionTime'>;

const ready = (status: 'True' | 'False' | 'Unknown', reason: string, message: string): Cond => ({ type: 'Ready', status, reason, message });
const suspended = (status: 'True' | 'False', reason: string, message: string): Cond => ({ type: 'Suspended', status, reason, message });

function where(a: Actor): string {
  const w = workerOf(a);
  return w ? ` on worker ${w}` : '';
}

function stateText(s: ActorState): string {
  return (ActorState[s] ?? String(s)).replace(/^ACTOR_STATE_/, '');
}

function crashText(a: Actor): string {
  const m = crashMessageOf(a);
  return m ? `: ${m.length > 300 ? `${m.slice(0, 300)}…` : m}` : '';
}

/** The conditions for a sandbox, without transition times (see stampTransitions). */
export function conditionsFor(i: StatusInput): Cond[] {
  if (i.failure) return [ready('False', i.failure.reason, i.failure.message)];

  const a = i.actor;
  if (!a) {
    if (i.provisioned && i.actorMissing) {
      return [
        ready(
          'False',
          REASON.actorMissing,
          'the Substrate actor of this sandbox no longer exists (deleted outside the gateway); delete the sandbox and create it again',
        ),
      ];
    }
    if (i.provisioned) return [ready('Unknown', REASON.unknown, 'the actor status has not been read yet')];
    const step = i.progress ?? 'provisioning the sandbox';
    if (i.desired === 'stopped') {
      // Stopped before its actor was created: nothing runs.
      return [suspended('True', REASON.stopped, `stopped before it started (${step})`), ready('Unknown', REASON.stopped, 'stopped')];
    }
    return [ready('Unknown', REASON.provisioning, step)];
  }

  const s = stateOf(a);
  if (s === ActorState.ACTOR_STATE_DELETING) {
    // Deleted outside the gateway (the driver's own delete reports `deleting` on the sandbox instead).
    return [ready('Unknown', REASON.deleting, 'the actor is being deleted outside the gateway')];
  }
  if (i.desired === 'stopped') {
    switch (s) {
      case ActorState.ACTOR_STATE_SUSPENDED:
        return [
          suspended('True', REASON.suspended, 'stopped: the actor is suspended with its memory in a snapshot; StartSandbox resumes it'),
          ready('Unknown', REASON.stopped, 'stopped'),
        ];
      case ActorState.ACTOR_STATE_PAUSED:
        return [
          suspended('True', REASON.paused, 'stopped: the actor is paused with its memory in a node-local snapshot; StartSandbox resumes it'),
          ready('Unknown', REASON.stopped, 'stopped'),
        ];
      case ActorState.ACTOR_STATE_SUSPENDING:
      case ActorState.ACTOR_STATE_PAUSING:
        return [suspended('False', REASON.stopping, `stopping: the actor is being checkpointed${where(a)}`), ready('Unknown', REASON.stopping, 'stopping')];
      case ActorState.ACTOR_STATE_CRASHED:
      case ActorState.ACTOR_STATE_REVERTING:
        // The driver reverts it to its last snapshot: stopped again, without running it.
        return [
          suspended('False', REASON.stopping, `stopping: the actor ${s === ActorState.ACTOR_STATE_CRASHED ? `crashed${crashText(a)}` : 'is reverting'}; reverting it to its last snapshot`),
          ready('Unknown', REASON.stopping, 'stopping'),
        ];
      case ActorState.ACTOR_STATE_RUNNING:
      case ActorState.ACTOR_STATE_RESUMING:
        if (i.op === 'stopping' || i.op === 'deleting') {
          return [suspended('False', REASON.stopping, `stopping: checkpoint requested${where(a)}`), ready('Unknown', REASON.stopping, 'stopping')];
        }
        // Woken by data traffic (the router resumes on demand) after the gateway stopped it: the driver
        // suspends it again, so a sandbox the gateway stopped stays stopped. Never Ready=True here: the
        // gateway keeps its row STOPPED and would otherwise be contradicted.
        return [
          suspended('False', REASON.stopping, `woken${where(a)} by a request after the gateway stopped it; suspending it again (StartSandbox starts it)`),
          ready('Unknown', REASON.stopping, 'stopping'),
        ];
      default:
        return [ready('Unknown', REASON.unknown, `actor state ${stateText(s)}`)];
    }
  }

  switch (s) {
    case ActorState.ACTOR_STATE_RUNNING:
      return [ready('True', REASON.running, `running${where(a)}`)];
    case ActorState.ACTOR_STATE_RESUMING:
      return [ready('Unknown', REASON.starting, `resuming${where(a)}`)];
    case ActorState.ACTOR_STATE_CRASHED:
    case ActorState.ACTOR_STATE_REVERTING:
      if (i.recoveryFailure && i.op !== 'recovering' && i.recoveryRetrying) {
        return [ready('Unknown', REASON.recovering, `the actor crashed${crashText(a)}; recovering it failed for now (${i.recoveryFailure}); retrying`)];
      }
      if (i.recoveryFailure && i.op !== 'recovering') {
        return [ready('False', REASON.recoveryFailed, `the actor crashed${crashText(a)}; recovering it (RevertActor, ResumeActor) failed: ${i.recoveryFailure}`)];
      }
      return [
        ready(
          'Unknown',
          REASON.recovering,
          s === ActorState.ACTOR_STATE_CRASHED
            ? `the actor crashed${crashText(a)}; recovering: reverting it to its last snapshot and resuming it`
            : 'recovering: the actor is reverting to its last snapshot; it resumes next',
        ),
      ];
    case ActorState.ACTOR_STATE_SUSPENDED:
    case ActorState.ACTOR_STATE_PAUSED:
    case ActorState.ACTOR_STATE_SUSPENDING:
    case ActorState.ACTOR_STATE_PAUSING:
      if (i.op === 'recovering') {
        return [ready('Unknown', REASON.recovering, 'recovering: resuming the actor from its last snapshot after a crash')];
      }
      if (i.recoveryFailure && i.recoveryRetrying && (s === ActorState.ACTOR_STATE_SUSPENDED || s === ActorState.ACTOR_STATE_PAUSED)) {
        return [ready('Unknown', REASON.recovering, `the actor crashed and was reverted to its last snapshot; resuming it failed for now (${i.recoveryFailure}); retrying`)];
      }
      if (i.recoveryFailure && (s === ActorState.ACTOR_STATE_SUSPENDED || s === ActorState.ACTOR_STATE_PAUSED)) {
        // Reverted after a crash, but the resume failed: still a failed recovery (retried with backoff).
        return [ready('False', REASON.recoveryFailed, `the actor crashed and was reverted to its last snapshot; resuming it failed: ${i.recoveryFailure}`)];
      }
      if (i.op === 'starting' || i.op === 'provisioning') {
        return [ready('Unknown', REASON.starting, i.op === 'provisioning' ? (i.progress ?? 'starting the actor') : 'resuming the actor')];
      }
      return [
        ready(
          'Unknown',
          REASON.resumesOnDemand,
          `${s === ActorState.ACTOR_STATE_PAUSED || s === ActorState.ACTOR_STATE_PAUSING ? 'paused' : 'suspended'} outside the gateway (idle, operator or lost worker); resumes on demand`,
        ),
      ];
    default:
      return [ready('Unknown', REASON.unknown, `actor state ${stateText(s)}`)];
  }
}

/**
 * Adds `transition_time` (a protobuf Timestamp; 0.0.x gateways get it as last_transition_time, RFC 3339):
 * kept from the previous conditions when type, status and reason are unchanged, `now` otherwise. Keeps
 * snapshots stable between polls. Every condition has one: a v0.1 gateway drops an event whose time is
 * invalid.
 */
export function stampTransitions(prev: DriverCondition[] | undefined, next: Cond[], now: Date): DriverCondition[] {
  return next.map((c) => {
    const p = prev?.find((x) => x.type === c.type);
    const same = p && p.status === c.status && p.reason === c.reason && p.transitionTime;
    return { ...c, transitionTime: same ? p.transitionTime : now };
  });
}

/** The phase-derivation rules of a gateway generation. */
export type PhaseRules = 'v0.1' | 'v0.0';

const isTrue = (c: DriverCondition, type: string) => c.type.toLowerCase() === type && c.status.toLowerCase() === 'true';

/**
 * The gateway's derive_phase, for tests, metrics and `sandboxes list`. 0.0.x (compute-driver.md §3.1): any
 * `Suspended=True` is STOPPED. v0.1 (openshell-v0.1.md §4.4): `Suspended=True` is STOPPED only when no
 * `Ready=True` is present. The driver never emits both, so the two agree on every state it reports.
 */
export function derivePhase(conds: DriverCondition[] | undefined, deleting = false, rules: PhaseRules = 'v0.1'): string {
  if (!conds) return 'UNKNOWN';
  if (deleting) return 'DELETING';
  const suspended = conds.some((c) => isTrue(c, 'suspended'));
  if (suspended && (rules === 'v0.0' || !conds.some((c) => isTrue(c, 'ready')))) return 'STOPPED';
  const r = conds.find((c) => c.type === 'Ready');
  if (!r) return 'PROVISIONING';
  if (r.status === 'True') return 'READY';
  if (r.status === 'False') {
    return TRANSIENT_REASONS.some((t) => t.toLowerCase() === r.reason.toLowerCase()) ? 'PROVISIONING' : 'ERROR';
  }
  return 'PROVISIONING';
}
