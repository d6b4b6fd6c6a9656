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
import { Actor_Status, type Actor } from '../gen/june/ateapi.js';
import type { DriverCondition } from '../gen/compute_driver.js';
import type { Desired } from './records.js';

export type Op = 'provisioning' | 'starting' | 'stopping' | 'deleting';

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
}

type Cond = Omit<DriverCondition, 'transitionTime'>;

const ready = (status: 'True' | 'False' | 'Unknown', reason: string, message: string): Cond => ({ type: 'Ready', status, reason, message });
const suspended = (status: 'True' | 'False', reason: string, message: string): Cond => ({ type: 'Suspended', status, reason, message });

function where(a: Actor): string {
  return a.ateomPodName ? ` on worker ${a.ateomPodName}` : '';
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

  const s = a.status;
  if (i.desired === 'stopped') {
    switch (s) {
      case Actor_Status.STATUS_SUSPENDED:
        return [
          suspended('True', REASON.suspended, 'stopped: the actor is suspended with its memory in a snapshot; StartSandbox resumes it'),
          ready('Unknown', REASON.stopped, 'stopped'),
        ];
      case Actor_Status.STATUS_PAUSED:
        return [
          suspended('True', REASON.paused, 'stopped: the actor is paused with its memory in a node-local snapshot; StartSandbox resumes it'),
          ready('Unknown', REASON.stopped, 'stopped'),
        ];
      case Actor_Status.STATUS_SUSPENDING:
      case Actor_Status.STATUS_PAUSING:
        return [suspended('False', REASON.stopping, `stopping: the actor is being checkpointed${where(a)}`), ready('Unknown', REASON.stopping, 'stopping')];
      case Actor_Status.STATUS_RUNNING:
      case Actor_Status.STATUS_RESUMING:
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
        return [ready('Unknown', REASON.unknown, `actor status ${Actor_Status[s] ?? s}`)];
    }
  }

  switch (s) {
    case Actor_Status.STATUS_RUNNING:
      return [ready('True', REASON.running, `running${where(a)}`)];
    case Actor_Status.STATUS_RESUMING:
      return [ready('Unknown', REASON.starting, `resuming${where(a)}`)];
    case Actor_Status.STATUS_SUSPENDED:
    case Actor_Status.STATUS_PAUSED:
    case Actor_Status.STATUS_SUSPENDING:
    case Actor_Status.STATUS_PAUSING:
      if (i.op === 'starting' || i.op === 'provisioning') {
        return [ready('Unknown', REASON.starting, i.op === 'provisioning' ? (i.progress ?? 'starting the actor') : 'resuming the actor')];
      }
      return [
        ready(
          'Unknown',
          REASON.resumesOnDemand,
          `${s === Actor_Status.STATUS_PAUSED || s === Actor_Status.STATUS_PAUSING ? 'paused' : 'suspended'} outside the gateway (idle, operator or lost worker); resumes on demand`,
        ),
      ];
    default:
      return [ready('Unknown', REASON.unknown, `actor status ${Actor_Status[s] ?? s}`)];
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
