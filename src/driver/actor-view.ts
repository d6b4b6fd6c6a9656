// Reading a v0.4 Actor (src/gen/ateapi.ts): its state, where it runs, and which run of it this is.
import { ActorState, type Actor } from '../gen/ateapi.js';

export function stateOf(a: Actor | undefined): ActorState {
  return a?.status?.state ?? ActorState.ACTOR_STATE_UNSPECIFIED;
}

/** `RUNNING`, `SUSPENDED`, … (`absent` without an actor). */
export function stateName(a: Actor | undefined): string {
  if (!a) return 'absent';
  const s = stateOf(a);
  return (ActorState[s] ?? String(s)).replace(/^ACTOR_STATE_/, '');
}

export function versionOf(a: Actor | undefined): number {
  return a?.metadata?.version ?? 0;
}

/** The worker the actor is assigned to: the Worker resource's name, else its pod ('' when none). */
export function workerOf(a: Actor | undefined): string {
  const w = a?.status?.workerAssignment;
  return w?.worker?.name || w?.workerPod || '';
}

/** The assigned worker pod's addresses (v0.4 `worker_pod_ips`; the first is the one the router dials). */
export function workerIpsOf(a: Actor | undefined): string[] {
  return a?.status?.workerAssignment?.workerPodIps ?? [];
}

export function crashMessageOf(a: Actor | undefined): string {
  return a?.status?.crash?.message ?? '';
}

export function isRunning(a: Actor | undefined): boolean {
  return stateOf(a) === ActorState.ACTOR_STATE_RUNNING;
}

/** SUSPENDED or PAUSED: nothing runs, the memory is in a snapshot. */
export function isStopped(a: Actor | undefined): boolean {
  const s = stateOf(a);
  return s === ActorState.ACTOR_STATE_SUSPENDED || s === ActorState.ACTOR_STATE_PAUSED;
}

/**
 * Which run of the actor this is. Everything that changes when it is restored again is in it: the actor's
 * uid (a recreated actor), the worker pod and its epoch (a move, a worker restart), the snapshot it was
 * restored from (every suspend makes a new one; a revert goes back to an older one), and `resumes`, a count
 * of resumes the driver observed (a crash → revert → resume on the same worker from the same snapshot).
 * '' when the actor does not run.
 */
export function incarnationOf(a: Actor | undefined, resumes = 0): string {
  if (!a || stateOf(a) !== ActorState.ACTOR_STATE_RUNNING) return '';
  const w = a.status?.workerAssignment;
  return [a.metadata?.uid ?? '', w?.workerPodUid ?? '', w?.workerEpoch ?? 0, a.status?.externalSnapshot?.snapshotUri ?? '', resumes].join('|');
}
