// An actor suspended while a connection to it is open (a CONNECT tunnel through the router, idle) answers
// again after its resume. (Before, the restored sandbox never answered: 504 through the router, and it sat at
// about 45 % CPU.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import type * as pb from '../../src/gen/ateapi.js';
import { counterSetup, startTestSubstrate, viaRouter, type TestSubstrate } from './helpers.js';

function openTunnel(routerUrl: string, target: string): Promise<net.Socket> {
  const u = new URL(routerUrl);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname, () => {
      s.write(`CONNECT actor:80 HTTP/1.1\r\nHost: actor:80\r\nate-target-actor: ${target}\r\n\r\n`);
    });
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      s.off('data', onData);
      if (/^HTTP\/1\.[01] 200/.test(buf)) resolve(s);
      else reject(new Error(`CONNECT refused: ${buf.split('\r\n')[0]}`));
    };
    s.on('data', onData);
    s.on('error', reject);
  });
}

describe('suspend with a connection open', () => {
  let s: TestSubstrate;
  beforeAll(async () => {
    s = await startTestSubstrate({ workers: 2 });
    await counterSetup(s.rpc, 'demo', 'counter', s.stateDir);
  }, 120_000);
  afterAll(async () => {
    await s?.close();
  }, 120_000);

  for (const how of ['idle tunnel', 'request in flight'] as const) {
    it(`the actor answers after suspend and resume (${how})`, async () => {
      const name = how === 'idle tunnel' ? 'idle' : 'inflight';
      await s.rpc('createActor', { actor: { metadata: { atespace: 'demo', name }, actorTemplate: { atespace: 'demo', name: 'counter' } } });
      const first = await viaRouter(s.h.routerUrl, 'demo', name, '/count');
      expect(first.status).toBe(200);
      const tunnel = await openTunnel(s.h.routerUrl, `demo/${name}`);
      tunnel.on('error', () => undefined);
      // An open HTTP connection to the workload; in the second case a request is half sent.
      if (how === 'request in flight') tunnel.write('GET /count HTTP/1.1\r\nHost: actor\r\n');
      await new Promise((r) => setTimeout(r, 200));
      const sus = await s.rpc<pb.SuspendActorResponse>('suspendActor', { actor: { atespace: 'demo', name } });
      expect(sus.actor?.status?.state).toBe(4);
      tunnel.destroy();
      await s.rpc('resumeActor', { actor: { atespace: 'demo', name } });
      const after = await viaRouter(s.h.routerUrl, 'demo', name, '/count');
      expect(after.status).toBe(200);
      expect(JSON.parse(after.body).n).toBe(JSON.parse(first.body).n + 1);
    }, 120_000);
  }
});
