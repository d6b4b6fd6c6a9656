// Operations around the contract, against the real local Substrate: stop_mode = pause, metrics and health
// endpoints, the operator CLI (finding the local Substrate through <state-dir>/local.json and the driver
// through its default socket), and a watch consumer that falls behind.
import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActorState } from '../../src/gen/ateapi.js';
import type { WatchSandboxesEvent } from '../../src/gen/compute_driver.js';
import { derivePhase } from '../../src/driver/conditions.js';
import { main as actorsMain } from '../../src/cli/actors.js';
import { main as sandboxesMain } from '../../src/cli/sandboxes.js';
import { attachableFlags, operatorTemplate, provisionTemplate, readyOf, sandboxOf, startEnv, suspendedOf, waitSandbox, type TestEnv } from './helpers.js';

async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  let out = '';
  let err = '';
  process.stdout.write = ((s: string) => ((out += s), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    return { code: await fn(), out, err };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

describe('driver operations against the local Substrate', () => {
  let env: TestEnv;
  const id = randomUUID();

  beforeAll(async () => {
    env = await startEnv({ flags: { stop_mode: 'pause', metrics_listen: '127.0.0.1:0', ...attachableFlags('ops-fast') }, watchBufferLimit: 8 });
    await provisionTemplate(env, operatorTemplate('ops-fast', env.image));
    const sb = sandboxOf({ image: env.image, id, name: 'opsbox', driverConfig: { actor_template: 'ops-fast' } });
    await env.client.createSandbox(sb);
    await waitSandbox(env.client, id, (x) => readyOf(x)?.status === 'True');
  }, 180_000);

  afterAll(async () => {
    await env?.close();
  });

  it('stop_mode = pause: StopSandbox pauses (node-local snapshot), reads STOPPED, and Start resumes', async () => {
    await env.client.stopSandbox(id, 'opsbox');
    expect((await env.ateapi.getActor({ atespace: 'default', name: id })).status?.state).toBe(ActorState.ACTOR_STATE_PAUSED);
    const sb = await env.client.getSandbox(id, 'opsbox');
    expect(suspendedOf(sb)).toMatchObject({ status: 'True', reason: 'ActorPaused' });
    expect(derivePhase(sb.status!.conditions)).toBe('STOPPED');
    await env.client.startSandbox(id, 'opsbox');
    expect(derivePhase((await env.client.getSandbox(id)).status!.conditions)).toBe('READY');
  });

  it('serves /healthz, /readyz and Prometheus /metrics', async () => {
    const base = `http://${env.driver.server.metricsAddress}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/substrate_driver_rpc_total\{method="CreateSandbox",code="OK"\} 1/);
    expect(text).toMatch(/substrate_driver_rpc_duration_seconds_bucket\{le="[^"]+",method="StopSandbox",code="OK"\}/);
    expect(text).toMatch(/substrate_driver_backend_duration_seconds_count\{method="PauseActor",code="OK"\} [1-9]/);
    expect(text).toMatch(/substrate_driver_sandboxes\{state="READY"\} 1/);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });

  it('sandboxes CLI: finds the driver through the state directory; table and --json', async () => {
    const list = await capture(() => sandboxesMain(['list', '--state-dir', env.dir]));
    expect(list.code).toBe(0);
    expect(list.out).toMatch(/^ID\s+NAME\s+WORKSPACE\s+PHASE/);
    expect(list.out).toContain(id);
    expect(list.out).toMatch(/opsbox\s+default\s+READY/);
    const get = await capture(() => sandboxesMain(['get', 'opsbox', '--json', '--state-dir', env.dir]));
    expect(get.code).toBe(0);
    expect(JSON.parse(get.out)).toMatchObject({ id, name: 'opsbox', workspace: 'default' });
    const stop = await capture(() => sandboxesMain(['stop', 'opsbox', '--state-dir', env.dir]));
    expect(stop.code).toBe(0);
    expect(stop.out).toMatch(/stopped sandbox opsbox/);
    const start = await capture(() => sandboxesMain(['start', id, '--state-dir', env.dir]));
    expect(start.code).toBe(0);
    const missing = await capture(() => sandboxesMain(['get', 'no-such-sandbox', '--state-dir', env.dir]));
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/no sandbox with id or name "no-such-sandbox"/);
  });

  it('actors CLI: finds the local Substrate through local.json; list, get, migrate with old and new worker', async () => {
    const list = await capture(() => actorsMain(['list', '--state-dir', env.dir]));
    expect(list.code).toBe(0);
    expect(list.out).toMatch(new RegExp(`default\\s+${id}\\s+default/ops-fast\\s+RUNNING`));
    const get = await capture(() => actorsMain(['get', id, '--json', '--state-dir', env.dir]));
    expect(JSON.parse(get.out)).toMatchObject({ metadata: { atespace: 'default', name: id }, actorTemplate: { atespace: 'default', name: 'ops-fast' }, status: { state: 'ACTOR_STATE_RUNNING' } });
    const mig = await capture(() => actorsMain(['migrate', id, '--selector', 'ate.dev/worker-pool=default', '--json', '--state-dir', env.dir]));
    expect(mig.err).toBe('');
    expect(mig.code).toBe(0);
    const m = JSON.parse(mig.out);
    expect(m.from.worker).not.toBe('');
    expect(m.to.worker).not.toBe('');
    expect(m.status).toBe('RUNNING');
    expect(typeof m.ms).toBe('number');
    const a = await env.ateapi.getActor({ atespace: 'default', name: id });
    expect(a.workerSelector?.matchLabels).toEqual({ 'ate.dev/worker-pool': 'default' });
    const text = await capture(() => actorsMain(['migrate', id, '--state-dir', env.dir]));
    expect(text.out).toMatch(new RegExp(`migrated default/${id}: \\S+ \\(node [^)]+\\) -> \\S+ \\(node [^)]+\\) in \\d+ ms`));
    const bad = await capture(() => actorsMain(['get', 'nobody', '--state-dir', env.dir]));
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/NOT_FOUND/);
    expect(bad.err).toMatch(/default\/nobody not found/);
  });

  it('ends the stream of a consumer that falls behind with ABORTED, and a reopened stream resynchronizes', async () => {
    const stream = env.client.watch();
    const got: WatchSandboxesEvent[] = [];
    let error: { code: number; details: string } | undefined;
    stream.on('data', (e: WatchSandboxesEvent) => got.push(e));
    const ended = new Promise<void>((resolve) => {
      stream.on('error', (e: { code: number; details: string }) => {
        error = e;
        resolve();
      });
      stream.on('end', () => resolve());
    });
    await new Promise((r) => setTimeout(r, 300));
    stream.pause(); // the consumer stops reading
    // A burst of platform events (what provisioning progress produces), far beyond what HTTP/2 flow
    // control and the 8-event buffer hold.
    const big = 'x'.repeat(2000);
    for (let i = 0; i < 3000; i++) {
      env.driver.driver.hub.publish({
        payload: { $case: 'platformEvent', value: { sandboxId: id, event: { eventTime: new Date(), source: 'substrate', type: 'Normal', reason: 'Burst', message: big, metadata: {} } } },
      });
    }
    expect(env.driver.driver.hub.aborted).toBe(1);
    stream.resume();
    await ended;
    expect(error?.code).toBe(status.ABORTED);
    expect(error?.details).toMatch(/fell behind.*reopen WatchSandboxes/);
    expect(got.length).toBeLessThan(3000);
    const text = await (await fetch(`http://${env.driver.server.metricsAddress}/metrics`)).text();
    expect(text).toMatch(/substrate_driver_watch_aborted_total 1/);
    // Reopened: the snapshot comes first again.
    const again = env.client.watch();
    again.on('error', () => undefined); // CANCELLED by us below
    const first = await new Promise<WatchSandboxesEvent>((resolve) => again.once('data', resolve));
    again.cancel();
    expect(first.payload?.$case === 'sandbox' && first.payload.value.sandbox?.id).toBe(id);
  });

  it('deletes a paused sandbox (resume, suspend, delete)', async () => {
    await env.client.stopSandbox(id, 'opsbox');
    expect((await env.ateapi.getActor({ atespace: 'default', name: id })).status?.state).toBe(ActorState.ACTOR_STATE_PAUSED);
    expect(await env.client.deleteSandbox(id, 'opsbox')).toBe(true);
    expect(await env.ateapi.findActor({ atespace: 'default', name: id })).toBeUndefined();
    // The operator's template is not the driver's to delete.
    expect(await env.ateapi.findActorTemplate({ atespace: 'default', name: 'ops-fast' })).toBeDefined();
    const del = await capture(() => sandboxesMain(['delete', id, '--state-dir', env.dir]));
    expect(del.code).toBe(1); // gone: neither an id nor a name any more
  });
});
