// A workload whose readiness endpoint accepts connections but never answers: every probe is bounded, the
// resume fails with DEADLINE_EXCEEDED once the readiness budget (30 s) is spent, and the actor is left
// unlocked on its previous state. (A probe used to wait forever on such a connection, and the actor stayed
// locked for good.)
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Actor_Status, type Actor } from '../../src/gen/june/ateapi.js';
import { applyObject, counterTemplate, defaultImageRef, expectCode, startTestSubstrate, type TestSubstrate } from './helpers.js';

const MUTE_JS = `
const http = require('http');
http.createServer((q, s) => { if (q.url === '/readyz') return; s.end('hello'); }).listen(80);
`;

describe('readiness probes are bounded', () => {
  let s: TestSubstrate;
  const ref = { actorRef: { atespace: 'mute', name: 'm1' } };
  beforeAll(async () => {
    s = await startTestSubstrate({ workers: 2 });
    const t = counterTemplate('mute', await defaultImageRef(s.stateDir));
    t.spec.containers[0]!.command = ['/usr/bin/node', '-e', MUTE_JS];
    expect((await applyObject(s.h.kube, t as never)).status).toBeLessThan(300);
    await s.rpc('createAtespace', { name: 'mute' });
    await s.rpc('createActor', { ...ref, actorTemplateNamespace: 'default', actorTemplateName: 'mute' });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('a readyz that never answers fails the resume within its budget and leaves the actor unlocked', async () => {
    const t0 = Date.now();
    const e = await expectCode(s.rpc('resumeActor', { ...ref, boot: true }), grpc.status.DEADLINE_EXCEEDED, /did not answer 200 within 30s \(last: no answer within 2000 ms\)/);
    const ms = Date.now() - t0;
    console.info(`[readiness] resume gave up after ${ms} ms: ${e.details}`);
    expect(ms).toBeLessThan(45_000);
    const a = (await s.rpc<{ actor: Actor }>('getActor', ref)).actor;
    expect(a.status).toBe(Actor_Status.STATUS_SUSPENDED);
    // Not locked: a delete goes through at once (a locked actor answers ABORTED).
    await s.rpc('deleteActor', ref);
    await expectCode(s.rpc('getActor', ref), grpc.status.NOT_FOUND);
  }, 90_000);
});
