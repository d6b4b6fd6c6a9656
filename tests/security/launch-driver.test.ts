// Per-sandbox launch credentials through the DRIVER, as an OpenShell v0.1 gateway drives it: the driver (real
// socket) and the local Substrate (real gVisor) in this process; a gateway stand-in (launch-helpers.ts) mints
// each sandbox's SandboxLaunchAuthentication as the gateway does; the supervisor stand-in inside each actor
// (tests/integration/gateway/supervisor-standin.mjs) enforces the real supervisor's file layout and checks and
// reports a digest of the gateway token it holds (never the token).
//
// Proven: Create → the actor's supervisor holds exactly this sandbox's bundle; Stop → Start with a fresh
// bundle → it holds the new one (and the runtime identity keeps its stable part, with a new generation); a
// worker death restores the actor from an older snapshot → the driver delivers the newest bundle again; a
// driver restart → nothing is lost and the next Start delivers; two sandboxes created from ONE pre-provisioned
// template (one golden snapshot) never see each other's credentials; no token reaches a template or an event.
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Actor_Status } from '../../src/gen/june/ateapi.js';
import type { DriverSandbox, WatchSandboxesEvent } from '../../src/gen/compute_driver.js';
import { Catalog } from '../../src/local/catalog.js';
import { buildImageFromDir } from '../../src/local/images.js';
import { instancePaths, runscPidsOf } from '../../src/local/runtime/index.js';
import { AGENT_IMAGE_PATH } from '../../src/sandbox/bootstrap-agent.mjs';
import { templateNameFor } from '../../src/template/synthesize.js';
import { operatorTemplate, routerGet, sandboxOf, startEnv, type TestEnv } from '../driver/helpers.js';
import { GatewayStandin, secretPartsOf, type Minted, type Session } from './launch-helpers.js';
import { gatewayMetadata } from '../integration/gateway/harness.js';

/** What an OpenShell v0.1 gateway sends in GetCapabilitiesRequest.gateway. */
const GATEWAY = gatewayMetadata();
const A = '5b1f2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d';
const B = '6c2a3b4d-5e6f-4b7c-9d8e-1f2a3b4c5d6e';
const C = '7d3b4c5e-6f70-4c8d-ae9f-2a3b4c5d6e7f';
const STANDIN = join(import.meta.dirname, '../integration/gateway/supervisor-standin.mjs');

describe('launch credentials through the driver (v0.1 gateway, real local Substrate)', () => {
  let env: TestEnv;
  let gw: GatewayStandin;
  let image: string;
  const minted: Minted[] = [];
  const events: WatchSandboxesEvent[] = [];
  let identityA = '';

  const mint = async (sandboxId: string, authEpoch: number) => {
    const m = await gw.mint({ sandboxId, authEpoch });
    minted.push(m);
    return m;
  };
  const v01Sandbox = (id: string, name: string, m: Minted, o: { platformConfig?: Record<string, unknown> } = {}): DriverSandbox => {
    const sb = sandboxOf({ id, name, image, command: ['/usr/bin/node', '/app/supervisor-standin.mjs'], token: m.gatewayToken, platformConfig: o.platformConfig });
    return { ...sb, spec: { ...sb.spec!, launchAuthentication: m.bytes, workloadIdentity: { user: '', group: '' } } };
  };
  const session = async (atespace: string, actor: string): Promise<Session> => {
    const r = await routerGet(env.endpoints.routerUrl!, actor, atespace, '/session');
    return r.status === 200 ? (JSON.parse(r.body) as Session) : { connected: false };
  };
  /** Waits until the supervisor in the actor holds `m` (deliveries after a restore happen at the next poll). */
  const holds = async (atespace: string, actor: string, m: Minted, timeoutMs = 90_000): Promise<Session> => {
    const until = Date.now() + timeoutMs;
    let s: Session = { connected: false };
    while (Date.now() < until) {
      s = await session(atespace, actor);
      if (s.connected && s.gateway_token_sha256 === m.digest) return s;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`actor ${atespace}/${actor} does not hold epoch ${m.authEpoch}: ${JSON.stringify(s)}`);
  };
  const actorOf = async (id: string) => env.ateapi.getActor({ atespace: 'default', name: id });

  beforeAll(async () => {
    env = await startEnv({ flags: { workers: '3' } });
    gw = await GatewayStandin.create('gw-driver-test', 'key-1');
    const app = join(env.dir, 'standin-src');
    mkdirSync(app);
    copyFileSync(STANDIN, join(app, 'supervisor-standin.mjs'));
    image = (await buildImageFromDir(env.dir, 'standin', app)).ref;
    // As a v0.1 gateway: negotiate first.
    expect((await env.client.getCapabilities(GATEWAY)).extension?.implementationName).toBe('openshell-driver-substrate');
    const w = env.client.watch();
    w.on('data', (e: WatchSandboxesEvent) => events.push(e));
    w.on('error', () => undefined);
  }, 180_000);

  afterAll(async () => {
    await env?.close();
  });

  it('Create: the actor of a synthesized template gets exactly this sandbox bundle; the template holds no token', async () => {
    const a1 = await mint(A, 1);
    identityA = await env.client.createSandbox(v01Sandbox(A, 'box-a', a1));
    expect(identityA).toMatch(new RegExp(`^substrate:default/${A}:[0-9a-f]{16}#g1$`));
    expect(await holds('default', A, a1)).toMatchObject({ sandbox_id: A, auth_epoch: 1 });
    const t = await env.store.get('default', templateNameFor(A));
    const text = JSON.stringify(t);
    for (const s of secretPartsOf(a1)) expect(text).not.toContain(s);
    expect(t?.spec.containers?.[0]?.command).toContain(AGENT_IMAGE_PATH);
  }, 180_000);

  it('Stop → Start with a fresh bundle: the supervisor holds the new one; the identity keeps its stable part', async () => {
    await env.client.stopSandbox(A, 'box-a');
    expect((await actorOf(A)).status).toBe(Actor_Status.STATUS_SUSPENDED);
    const a2 = await mint(A, 2);
    const again = await env.client.startSandbox(A, 'box-a', { launchAuthentication: a2.bytes, generationId: 'gen-2', expectedRuntimeIdentity: identityA });
    expect(again.split('#')[0]).toBe(identityA.split('#')[0]);
    expect(again).toMatch(/#g2$/);
    expect(await holds('default', A, a2)).toMatchObject({ auth_epoch: 2 });
    identityA = again;
    // An expected identity naming another compute resource is refused.
    await expect(env.client.startSandbox(A, 'box-a', { expectedRuntimeIdentity: `substrate:default/${A}:0000000000000000#g1` })).rejects.toMatchObject({
      code: 9,
    });
  }, 180_000);

  it('a worker death restores the actor from an older snapshot; the driver delivers the newest bundle again', async () => {
    const a2 = minted.at(-1)!;
    const paths = instancePaths(env.dir);
    const cat = new Catalog(join(env.dir, 'catalog.db'), { readonly: true });
    const pid = cat.workerOfActor('default', A)?.pid ?? 0;
    cat.close();
    expect(runscPidsOf(paths.runscRoot)).toContain(pid);
    process.kill(pid, 'SIGKILL');
    let st = (await actorOf(A)).status;
    for (let i = 0; i < 100 && st === Actor_Status.STATUS_RUNNING; i++) {
      await new Promise((r) => setTimeout(r, 100));
      st = (await actorOf(A)).status;
    }
    expect(st).not.toBe(Actor_Status.STATUS_RUNNING);
    // A request brings it back (from the snapshot taken at Stop, which held epoch 1); the driver's poll sees
    // a new incarnation and delivers epoch 2 again.
    expect(await holds('default', A, a2)).toMatchObject({ sandbox_id: A, auth_epoch: 2 });
  }, 180_000);

  it('a driver restart loses nothing: the next Start delivers its fresh bundle', async () => {
    await env.restartDriver();
    await env.client.getCapabilities(GATEWAY);
    await env.client.stopSandbox(A, 'box-a');
    const a3 = await mint(A, 3);
    const id3 = await env.client.startSandbox(A, 'box-a', { launchAuthentication: a3.bytes, generationId: 'gen-3', expectedRuntimeIdentity: identityA });
    expect(id3.split('#')[0]).toBe(identityA.split('#')[0]);
    expect(await holds('default', A, a3)).toMatchObject({ auth_epoch: 3 });
  }, 180_000);

  it('two sandboxes created from one pre-provisioned template (one golden snapshot) never see each other', async () => {
    const t = operatorTemplate('shared-agent', image, { readyz: false });
    t.spec.containers = [
      {
        ...t.spec.containers[0]!,
        command: ['/usr/bin/node', AGENT_IMAGE_PATH, '--', '/usr/bin/node', '/app/supervisor-standin.mjs'],
        // Public keys only: the agent's trust anchor.
        env: [{ name: 'OPENSHELL_SUBSTRATE_GATEWAY_KEYS', value: JSON.stringify(gw.publicKeys()) }],
      } as (typeof t.spec.containers)[0],
    ];
    await env.store.apply(t as never);
    await env.store.waitReady('default', 'shared-agent', 120_000);
    const b1 = await mint(B, 1);
    const c1 = await mint(C, 1);
    const annotated = { annotations: { substrate_actor_template: 'shared-agent' } };
    await env.client.stopSandbox(A, 'box-a'); // frees a worker
    await env.client.createSandbox(v01Sandbox(B, 'box-b', b1, { platformConfig: annotated }));
    await env.client.createSandbox(v01Sandbox(C, 'box-c', c1, { platformConfig: annotated }));
    expect(await holds('default', B, b1)).toMatchObject({ sandbox_id: B });
    expect(await holds('default', C, c1)).toMatchObject({ sandbox_id: C });
    // Nothing of C's in anything B's supervisor or workload can show, and the other way round.
    for (const [actor, other] of [
      [B, c1],
      [C, b1],
    ] as const) {
      for (const path of ['/session', '/workload-view']) {
        const body = (await routerGet(env.endpoints.routerUrl!, actor, 'default', path)).body;
        for (const s of [...secretPartsOf(other), other.digest]) expect(body).not.toContain(s);
      }
    }
  }, 240_000);

  it('no token in any watch event the gateway received', () => {
    const text = JSON.stringify(events);
    expect(events.length).toBeGreaterThan(10);
    for (const m of minted) for (const s of secretPartsOf(m)) expect(text).not.toContain(s);
  });
});
