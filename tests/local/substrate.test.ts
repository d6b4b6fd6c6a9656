// The composed local Substrate (v0.4) end to end over its real gRPC socket and router: a template's golden
// flow, an actor created from the golden tag, resume through the router by header and by Host, suspend and
// resume with memory, a tag and an actor created from it, and the API's refusal of unknown atespaces.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import type * as pb from '../../src/gen/ateapi.js';
import { counterSetup, expectCode, startTestSubstrate, viaRouter, type TestSubstrate } from './helpers.js';

describe('local Substrate v0.4, composed', () => {
  let s: TestSubstrate;
  beforeAll(async () => {
    s = await startTestSubstrate({ workers: 2 });
  }, 120_000);
  afterAll(async () => {
    await s?.close();
  }, 120_000);

  it('golden flow, create from the golden tag, router by header and Host, suspend/resume keeps memory', async () => {
    const t = await counterSetup(s.rpc, 'demo', 'counter', s.stateDir);
    expect(t.status?.goldenSnapshotStatus?.goldenTag).toEqual({ atespace: 'ate-golden', name: t.metadata!.uid });
    const a = await s.rpc<pb.Actor>('createActor', { actor: { metadata: { atespace: 'demo', name: 'one' }, actorTemplate: { atespace: 'demo', name: 'counter' } } });
    expect(a.status?.externalSnapshot?.actorTemplateUid).toBe(t.metadata!.uid);
    const r1 = await viaRouter(s.h.routerUrl, 'demo', 'one', '/count');
    expect(r1.status).toBe(200);
    const r2 = await viaRouter(s.h.routerUrl, 'demo', 'one', '/count', { host: true });
    expect(JSON.parse(r2.body).n).toBe(JSON.parse(r1.body).n + 1);
    const sus = await s.rpc<pb.SuspendActorResponse>('suspendActor', { actor: { atespace: 'demo', name: 'one' } });
    expect(sus.actor?.status?.state).toBe(4);
    const res = await s.rpc<pb.ResumeActorResponse>('resumeActor', { actor: { atespace: 'demo', name: 'one' } });
    expect(res.resumed).toBe(true);
    const r3 = await viaRouter(s.h.routerUrl, 'demo', 'one', '/count');
    expect(JSON.parse(r3.body).n).toBe(JSON.parse(r2.body).n + 1);
    const miss = await viaRouter(s.h.routerUrl, 'demo', 'nope', '/count');
    expect(miss.status).toBe(404);
    await s.rpc('suspendActor', { actor: { atespace: 'demo', name: 'one' } });
    const tag = await s.rpc<pb.Tag>('createTag', { tag: { metadata: { atespace: 'demo', name: 'snap' }, scope: 1, sourceActor: { atespace: 'demo', name: 'one' } } });
    expect(tag.status?.snapshot?.snapshotUri).toContain('/atespaces/demo/tags/');
    await s.rpc('createActor', { actor: { metadata: { atespace: 'demo', name: 'two' }, actorTemplate: { atespace: 'demo', name: 'counter' }, sourceTag: { atespace: 'demo', name: 'snap' } } });
    const r4 = await viaRouter(s.h.routerUrl, 'demo', 'two', '/peek');
    expect(JSON.parse(r4.body).n).toBe(JSON.parse(r3.body).n);
    await expectCode(s.rpc('createActor', { actor: { metadata: { atespace: 'nowhere', name: 'x' }, actorTemplate: { atespace: 'nowhere', name: 'counter' } } }), grpc.status.NOT_FOUND);
  }, 240_000);
});
