// The worker-death monitor and a workflow on the same actor never interleave: a suspend and a resume made
// while the monitor is still releasing a dead sandbox wait for it (ABORTED, retried) instead of having the
// new binding cut loose. (Before, the actor ended RUNNING with no worker bound, its sandbox serving from a
// free slot, and a later clean stop lost its memory.)
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Actor_Status, type Actor } from '../../src/gen/june/ateapi.js';
import { pidAlive } from '../../src/local/runtime/exec.js';
import { applyObject, counterTemplate, defaultImageRef, startTestSubstrate, viaRouter, waitTemplateReady, type TestSubstrate } from './helpers.js';

describe('worker-death monitor against a concurrent workflow', () => {
  let s: TestSubstrate;
  const ref = { actorRef: { atespace: 'race', name: 'x' } };
  /** Retries ABORTED (busy actor) as clients do. */
  const call = async <T,>(m: string): Promise<T> => {
    for (let i = 0; ; i++) {
      try {
        return await s.rpc<T>(m, ref);
      } catch (e) {
        if ((e as grpc.ServiceError).code !== grpc.status.ABORTED || i > 100) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };

  beforeAll(async () => {
    s = await startTestSubstrate({ workers: 1 });
    expect((await applyObject(s.h.kube, counterTemplate('counter', await defaultImageRef(s.stateDir)) as never)).status).toBeLessThan(300);
    await waitTemplateReady(s.h.kube, 'default', 'counter');
    await s.rpc('createAtespace', { name: 'race' });
    await s.rpc('createActor', { ...ref, actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('a suspend and resume made while the monitor releases the dead sandbox leave the actor bound and serving', async () => {
    for (let round = 0; round < 3; round++) {
      await call('resumeActor');
      const h = s.h.control.sandboxOf('race', 'x')!;
      process.kill(h.pid, 'SIGKILL');
      // The monitor notices within 500 ms and starts releasing (the sandbox leaves the running set first).
      for (let i = 0; i < 400 && s.h.control.sandboxOf('race', 'x')?.sandboxId === h.sandboxId; i++) await new Promise((r) => setTimeout(r, 5));
      await call('suspendActor');
      await call('resumeActor');
      const a = (await s.rpc<{ actor: Actor }>('getActor', ref)).actor;
      expect(a.status).toBe(Actor_Status.STATUS_RUNNING);
      const now = s.h.control.sandboxOf('race', 'x');
      expect(now, 'the running actor has a sandbox').not.toBeNull();
      expect(pidAlive(now!.pid)).toBe(true);
      const workers = (await s.rpc<{ workers: Array<{ actorId: string }> }>('listWorkers', {})).workers;
      expect(workers.filter((w) => w.actorId === 'x'), 'the actor is bound to its worker').toHaveLength(1);
      expect((await viaRouter(s.h.routerUrl, 'race', 'x', '/count')).status).toBe(200);
      // And it suspends normally (it used to answer INTERNAL "has no active worker").
      await call('suspendActor');
    }
  }, 120_000);
});
