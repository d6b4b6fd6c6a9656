// Per-sandbox credentials through the DRIVER, as the gateways drive it: the driver (real socket) and the local
// Substrate v0.4 (real gVisor) in this process; the supervisor stand-in inside each actor
// (tests/integration/gateway/supervisor-standin.mjs) reports, as digests, the v0.1 credentials it holds
// (/session) and the 0.0.x identity its environment carries (/env).
//
// OpenShell v0.1 (a gateway stand-in, launch-helpers.ts, mints each sandbox's SandboxLaunchAuthentication as the
// gateway does): Create → the actor's supervisor holds exactly this sandbox's bundle; Stop → Start with a fresh
// bundle → it holds the new one (the runtime identity keeps its stable part, with a new generation); a worker
// death → the driver reverts the CRASHED actor to its last snapshot and delivers the newest bundle again; a driver
// restart loses nothing; two sandboxes created from ONE pre-provisioned template (one golden snapshot) never see
// each other's credentials.
//
// OpenShell 0.0.x (sandbox_token on Create, no launch authentication): sandboxes of one spec share ONE
// content-named template whose golden snapshot holds only the agent waiting for an identity; the driver delivers
// each sandbox's {id, name, token} after every restore; the workload's token matches (sha) its own, never the
// other's; a second sandbox of the spec reaches Ready without a new golden snapshot. Create → Ready is measured
// (median of 3, first and second sandbox of a spec).
//
// No token reaches a template, a golden snapshot or an event.
import { createHash, randomUUID } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as pb from '../../src/gen/ateapi.js';
import type { DriverSandbox, WatchSandboxesEvent } from '../../src/gen/compute_driver.js';
import { buildImageFromDir } from '../../src/local/images.js';
import { SnapshotStore } from '../../src/local/snapshots.js';
import { AGENT_IMAGE_PATH } from '../../src/sandbox/bootstrap-agent.mjs';
import { BOOTSTRAP_AGENT_COMMAND, isSynthesizedTemplateName } from '../../src/template/synthesize.js';
import { attachableFlags, provisionTemplate, readyOf, routerGet, sandboxOf, startEnv, waitSandbox, type TestEnv } from '../driver/helpers.js';
import { GatewayStandin, secretPartsOf, type Minted, type Session } from './launch-helpers.js';
import { gatewayMetadata } from '../integration/gateway/harness.js';

const S = pb.ActorState;
const STANDIN = join(import.meta.dirname, '../integration/gateway/supervisor-standin.mjs');
const STANDIN_COMMAND = ['/usr/bin/node', '/app/supervisor-standin.mjs'];
const sha = (t: string) => createHash('sha256').update(t).digest('hex');

/** An image with the supervisor stand-in at /app (the agent is in every local image). */
async function standinImage(env: TestEnv): Promise<string> {
  const app = join(env.dir, 'standin-src');
  mkdirSync(app, { recursive: true });
  copyFileSync(STANDIN, join(app, 'supervisor-standin.mjs'));
  return (await buildImageFromDir(env.dir, 'standin', app)).ref;
}

/** Kills the runsc sandbox hosting an actor (its worker dies). */
function killWorkerOf(env: TestEnv, atespace: string, actor: string): void {
  const h = env.local.actors.sandboxOf(atespace, actor);
  expect(h?.pid).toBeGreaterThan(0);
  process.kill(h!.pid, 'SIGKILL');
}

/** Polls `probe` until `ok` holds (a condition, not a sleep); throws with the last value after the timeout. */
async function until<T>(probe: () => Promise<T>, ok: (v: T) => boolean, what: string, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    last = await probe().catch(() => undefined as T);
    if (last !== undefined && ok(last)) return last;
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The directory of a template's golden snapshot (the tag's copy) in the local snapshot store. */
async function goldenDirOf(env: TestEnv, t: pb.ActorTemplate): Promise<string> {
  const tag = await env.ateapi.getTag(t.status!.goldenSnapshotStatus!.goldenTag!);
  return new SnapshotStore(env.dir).dirOf(tag.status!.snapshot!.snapshotUri);
}
const filesOf = (dir: string): Buffer[] => readdirSync(dir).map((f) => readFileSync(join(dir, f)));

describe('launch credentials through the driver (v0.1 gateway, real local Substrate)', () => {
  const A = '5b1f2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d';
  const B = '6c2a3b4d-5e6f-4b7c-9d8e-1f2a3b4c5d6e';
  const C = '7d3b4c5e-6f70-4c8d-ae9f-2a3b4c5d6e7f';
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
    const sb = sandboxOf({ id, name, image, command: STANDIN_COMMAND, token: m.gatewayToken, platformConfig: o.platformConfig });
    return { ...sb, spec: { ...sb.spec!, launchAuthentication: m.bytes, workloadIdentity: { user: '', group: '' } } };
  };
  const session = async (actor: string): Promise<Session> => {
    const r = await routerGet(env.endpoints.routerUrl!, actor, 'default', '/session');
    return r.status === 200 ? (JSON.parse(r.body) as Session) : { connected: false };
  };
  /** Waits until the supervisor in the actor holds `m` (a delivery after a recovery happens in the background). */
  const holds = (actor: string, m: Minted) => until(() => session(actor), (s) => s.connected && s.gateway_token_sha256 === m.digest, `actor default/${actor} holds epoch ${m.authEpoch}`);
  const actorOf = (id: string) => env.ateapi.getActor({ atespace: 'default', name: id });

  beforeAll(async () => {
    env = await startEnv({ flags: attachableFlags('shared-agent') });
    gw = await GatewayStandin.create('gw-driver-test', 'key-1');
    image = await standinImage(env);
    // As a v0.1 gateway: negotiate first.
    expect((await env.client.getCapabilities(gatewayMetadata())).extension?.implementationName).toBe('openshell-driver-substrate');
    const w = env.client.watch();
    w.on('data', (e: WatchSandboxesEvent) => events.push(e));
    w.on('error', () => undefined);
  }, 180_000);

  afterAll(async () => {
    await env?.close();
  }, 120_000);

  it('Create: the actor of a synthesized template gets exactly this sandbox bundle; the template holds no token', async () => {
    const a1 = await mint(A, 1);
    identityA = await env.client.createSandbox(v01Sandbox(A, 'box-a', a1));
    expect(identityA).toMatch(new RegExp(`^substrate:default/${A}:[0-9a-f]{16}#g1$`));
    expect(await holds(A, a1)).toMatchObject({ sandbox_id: A, auth_epoch: 1 });
    const tref = (await actorOf(A)).actorTemplate!;
    expect(isSynthesizedTemplateName(tref.name)).toBe(true);
    const t = await env.ateapi.getActorTemplate(tref);
    const text = JSON.stringify(pb.ActorTemplate.toJSON(t));
    for (const s of secretPartsOf(a1)) expect(text).not.toContain(s);
    expect(text).not.toContain(A);
    expect(t.containers[0]!.command).toEqual([...BOOTSTRAP_AGENT_COMMAND, ...STANDIN_COMMAND]);
  }, 180_000);

  it('Stop → Start with a fresh bundle: the supervisor holds the new one; the identity keeps its stable part', async () => {
    await env.client.stopSandbox(A, 'box-a');
    expect((await actorOf(A)).status?.state).toBe(S.ACTOR_STATE_SUSPENDED);
    const a2 = await mint(A, 2);
    const again = await env.client.startSandbox(A, 'box-a', { launchAuthentication: a2.bytes, generationId: 'gen-2', expectedRuntimeIdentity: identityA });
    expect(again.split('#')[0]).toBe(identityA.split('#')[0]);
    expect(again).toMatch(/#g2$/);
    expect(await holds(A, a2)).toMatchObject({ auth_epoch: 2 });
    identityA = again;
    // An expected identity naming another compute resource is refused.
    await expect(env.client.startSandbox(A, 'box-a', { expectedRuntimeIdentity: `substrate:default/${A}:0000000000000000#g1` })).rejects.toMatchObject({ code: 9 });
  }, 180_000);

  it('a worker death: the driver reverts the actor to its last snapshot and delivers the newest bundle again', async () => {
    const a2 = minted.at(-1)!;
    await env.client.stopSandbox(A, 'box-a'); // a snapshot holding epoch 2
    const a3 = await mint(A, 3);
    identityA = await env.client.startSandbox(A, 'box-a', { launchAuthentication: a3.bytes, generationId: 'gen-3', expectedRuntimeIdentity: identityA });
    expect(await holds(A, a3)).toMatchObject({ auth_epoch: 3 }); // epoch 3 in memory only
    const before = JSON.stringify((await actorOf(A)).status?.workerAssignment);
    killWorkerOf(env, 'default', A);
    // CRASHED → RevertActor (back to the snapshot holding epoch 2) → ResumeActor → the newest bundle (3)
    // delivered again by the driver.
    await until(() => actorOf(A), (a) => a.status?.state === S.ACTOR_STATE_RUNNING && JSON.stringify(a.status?.workerAssignment) !== before, 'the actor running again after its crash');
    expect(await holds(A, a3)).toMatchObject({ sandbox_id: A, auth_epoch: 3 });
    expect(a2.authEpoch).toBe(2);
  }, 180_000);

  it('a driver restart loses nothing: the next Start delivers its fresh bundle', async () => {
    await env.restartDriver();
    await env.client.getCapabilities(gatewayMetadata());
    await env.client.stopSandbox(A, 'box-a');
    const a4 = await mint(A, 4);
    const id4 = await env.client.startSandbox(A, 'box-a', { launchAuthentication: a4.bytes, generationId: 'gen-4', expectedRuntimeIdentity: identityA });
    expect(id4.split('#')[0]).toBe(identityA.split('#')[0]);
    expect(await holds(A, a4)).toMatchObject({ auth_epoch: 4 });
  }, 180_000);

  it('two sandboxes created from one pre-provisioned template (one golden snapshot) never see each other', async () => {
    await env.client.stopSandbox(A, 'box-a'); // frees a worker
    await provisionTemplate(
      env,
      pb.ActorTemplate.fromPartial({
        metadata: { atespace: 'default', name: 'shared-agent' },
        containers: [
          {
            name: 'app',
            image,
            command: ['/usr/bin/node', AGENT_IMAGE_PATH, '--', ...STANDIN_COMMAND],
            // Public keys only: the agent's trust anchor.
            env: [{ name: 'OPENSHELL_SUBSTRATE_GATEWAY_KEYS', value: JSON.stringify(gw.publicKeys()) }],
            wakeupProbe: { httpGet: { path: '/v1/launch', port: 17461 }, timeoutSeconds: 30 },
          },
        ],
        snapshotConfig: { onCommit: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, storageLocation: 'gs://local-tests/operator' },
        sandboxConfig: { sandboxClass: pb.SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' },
      }),
    );
    const b1 = await mint(B, 1);
    const c1 = await mint(C, 1);
    const annotated = { annotations: { substrate_actor_template: 'shared-agent' } };
    await env.client.createSandbox(v01Sandbox(B, 'box-b', b1, { platformConfig: annotated }));
    await env.client.createSandbox(v01Sandbox(C, 'box-c', c1, { platformConfig: annotated }));
    expect(await holds(B, b1)).toMatchObject({ sandbox_id: B });
    expect(await holds(C, c1)).toMatchObject({ sandbox_id: C });
    // Nothing of C's in anything B's supervisor or workload can show, and the other way round.
    for (const [actor, other] of [
      [B, c1],
      [C, b1],
    ] as const) {
      for (const path of ['/session', '/workload-view', '/processes']) {
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

describe('the sandbox identity through the driver (0.0.x gateway, real local Substrate)', () => {
  const WS = 'legacy';
  let env: TestEnv;
  let image: string;
  let key: CryptoKey;
  /** Sandbox id → its token (the 0.0.x gateway's JWT: typ JWT, EdDSA, exp 0, a sandbox_id claim). */
  const tokens = new Map<string, string>();
  /** Watch events with their arrival time. */
  const events: Array<{ at: number; ev: WatchSandboxesEvent }> = [];
  const timings: { first: number[]; second: number[] } = { first: [], second: [] };

  const tokenFor = async (id: string) => {
    const iss = 'openshell-gateway:openshell';
    const t = await new SignJWT({ sub: `spiffe://openshell/sandbox/${id}`, iss, aud: iss, iat: Math.floor(Date.now() / 1000), exp: 0, sandbox_id: id })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid: 'legacy' })
      .sign(key);
    tokens.set(id, t);
    return t;
  };
  const legacySandbox = async (name: string, o: { workspace?: string; env?: Record<string, string> } = {}): Promise<DriverSandbox> => {
    const id = randomUUID();
    return sandboxOf({ id, name, image, workspace: o.workspace ?? WS, command: STANDIN_COMMAND, token: await tokenFor(id), env: o.env });
  };
  const envOf = async (sb: DriverSandbox) => {
    const r = await routerGet(env.endpoints.routerUrl!, sb.id, sb.workspace, '/env');
    expect(r.status).toBe(200);
    return JSON.parse(r.body) as { id: string | null; name: string | null; tokenSha: string | null; endpoint: string | null };
  };
  /** CreateSandbox, then the ms until the watch says Ready=True for it. */
  const createTimed = async (sb: DriverSandbox): Promise<number> => {
    const from = events.length;
    const t0 = Date.now();
    await env.client.createSandbox(sb);
    const deadline = t0 + 120_000;
    for (;;) {
      const hit = events.slice(from).find((e) => e.ev.payload?.$case === 'sandbox' && e.ev.payload.value.sandbox?.id === sb.id && readyOf(e.ev.payload.value.sandbox)?.status === 'True');
      if (hit) return hit.at - t0;
      if (Date.now() > deadline) throw new Error(`sandbox ${sb.id} not Ready within 120 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const templatesIn = (ws: string) => env.ateapi.listAllActorTemplates(ws);
  const goldenTags = () => env.ateapi.listAllTags('ate-golden');

  beforeAll(async () => {
    // As a 0.0.x gateway: no negotiation (its GetCapabilities carries no gateway metadata).
    env = await startEnv({ flags: { gateway_endpoint: 'http://10.77.0.1:18080' } });
    image = await standinImage(env);
    key = (await generateKeyPair('EdDSA', { crv: 'Ed25519' })).privateKey;
    await env.client.getCapabilities();
    const w = env.client.watch();
    w.on('data', (ev: WatchSandboxesEvent) => events.push({ at: Date.now(), ev }));
    w.on('error', () => undefined);
  }, 180_000);

  afterAll(async () => {
    if (timings.first.length > 0) {
      const median = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)];
      console.log(`0.0.x create → Ready (ms): first of a spec ${JSON.stringify(timings.first)} median ${median(timings.first)}; second ${JSON.stringify(timings.second)} median ${median(timings.second)}`);
    }
    await env?.close();
  }, 120_000);

  let d1: DriverSandbox;
  let d2: DriverSandbox;

  it('Create: the workload gets its id, name and token (sha) after restore; the template and golden snapshot hold none', async () => {
    d1 = await legacySandbox('box-d1');
    await env.client.createSandbox(d1);
    await waitSandbox(env.client, d1.id, (s) => readyOf(s)?.status === 'True');
    expect(await envOf(d1)).toEqual({ id: d1.id, name: 'box-d1', endpoint: 'http://10.77.0.1:18080', spec: JSON.stringify({ version: 1, command: STANDIN_COMMAND, tty: false }), tokenSha: sha(tokens.get(d1.id)!) });

    const [t] = await templatesIn(WS);
    expect(isSynthesizedTemplateName(t!.metadata!.name)).toBe(true);
    expect((await env.ateapi.getActor({ atespace: WS, name: d1.id })).actorTemplate).toEqual({ atespace: WS, name: t!.metadata!.name });
    const c = t!.containers[0]!;
    expect(c.command).toEqual([...BOOTSTRAP_AGENT_COMMAND, ...STANDIN_COMMAND]);
    expect(c.env.find((e) => e.name === 'OPENSHELL_SUBSTRATE_DELIVERY')?.value).toBe('identity');
    const text = JSON.stringify(pb.ActorTemplate.toJSON(t!));
    expect(text).not.toContain(d1.id);
    expect(text).not.toContain(tokens.get(d1.id)!);
    expect(text).not.toContain('box-d1');
    const golden = filesOf(await goldenDirOf(env, t!));
    expect(golden.length).toBeGreaterThan(1);
    for (const b of golden) {
      expect(b.includes(d1.id)).toBe(false);
      expect(b.includes(tokens.get(d1.id)!)).toBe(false);
      expect(b.includes(tokens.get(d1.id)!.split('.')[2]!)).toBe(false);
    }
  }, 180_000);

  it('a second sandbox of the spec shares the template and its golden snapshot (no new one), and sees only its own token', async () => {
    const [before] = await templatesIn(WS);
    const tagsBefore = (await goldenTags()).map((t) => t.metadata!.name).sort();
    d2 = await legacySandbox('box-d2');
    await env.client.createSandbox(d2);
    await waitSandbox(env.client, d2.id, (s) => readyOf(s)?.status === 'True');
    const after = await templatesIn(WS);
    expect(after).toHaveLength(1);
    expect(after[0]!.metadata!.uid).toBe(before!.metadata!.uid);
    expect(after[0]!.status?.goldenSnapshotStatus?.goldenTag).toEqual(before!.status?.goldenSnapshotStatus?.goldenTag);
    expect((await goldenTags()).map((t) => t.metadata!.name).sort()).toEqual(tagsBefore);
    expect((await env.ateapi.getActor({ atespace: WS, name: d2.id })).actorTemplate?.name).toBe(before!.metadata!.name);

    expect(await envOf(d2)).toMatchObject({ id: d2.id, name: 'box-d2', tokenSha: sha(tokens.get(d2.id)!) });
    expect(await envOf(d1)).toMatchObject({ id: d1.id, name: 'box-d1', tokenSha: sha(tokens.get(d1.id)!) });
    // Neither workload has anything of the other: not its environment, any process, any answer.
    for (const [mine, other] of [
      [d1, d2],
      [d2, d1],
    ] as const) {
      const text = (await Promise.all(['/env', '/processes', '/session'].map(async (p) => (await routerGet(env.endpoints.routerUrl!, mine.id, WS, p)).body))).join('\n');
      expect(text).not.toContain(tokens.get(other.id)!);
      expect(text).not.toContain(sha(tokens.get(other.id)!));
      expect(text).not.toContain(other.id);
    }
  }, 180_000);

  it('Stop → Start and a worker death keep the workload and its identity (the driver re-delivers, idempotently)', async () => {
    await env.client.stopSandbox(d1.id, d1.name);
    expect((await env.ateapi.getActor({ atespace: WS, name: d1.id })).status?.state).toBe(S.ACTOR_STATE_SUSPENDED);
    await env.client.startSandbox(d1.id, d1.name);
    expect(await envOf(d1)).toMatchObject({ id: d1.id, name: 'box-d1', tokenSha: sha(tokens.get(d1.id)!) });

    // d2 was never stopped: its last snapshot is the golden one. Its worker dies; the driver reverts it (the
    // agent holds the workload again) and delivers its identity anew.
    const actorD2 = () => env.ateapi.getActor({ atespace: WS, name: d2.id });
    const before = JSON.stringify((await actorD2()).status?.workerAssignment);
    killWorkerOf(env, WS, d2.id);
    await until(actorD2, (a) => a.status?.state === S.ACTOR_STATE_RUNNING && JSON.stringify(a.status?.workerAssignment) !== before, 'd2 running again after its crash');
    const back = await until(() => envOf(d2), (e) => e.id === d2.id, 'd2 back with its identity');
    expect(back).toMatchObject({ name: 'box-d2', tokenSha: sha(tokens.get(d2.id)!) });
    await waitSandbox(env.client, d2.id, (s) => readyOf(s)?.status === 'True');
  }, 180_000);

  it('no token in any watch event', () => {
    const text = JSON.stringify(events.map((e) => e.ev));
    expect(events.length).toBeGreaterThan(10);
    for (const t of tokens.values()) {
      expect(text).not.toContain(t);
      expect(text).not.toContain(t.split('.')[2]!);
    }
  });

  it('create → Ready, first and second sandbox of a spec (3 specs; the second never waits for a golden snapshot)', async () => {
    // Two workers: make room for each spec's golden actor and its two sandboxes.
    for (const sb of [d1, d2]) expect(await env.client.deleteSandbox(sb.id, sb.name)).toBe(true);
    for (let run = 0; run < 3; run++) {
      const ws = `bench-${run}`;
      const first = await legacySandbox(`first-${run}`, { workspace: ws, env: { RUN: String(run) } });
      const second = await legacySandbox(`second-${run}`, { workspace: ws, env: { RUN: String(run) } });
      timings.first.push(await createTimed(first));
      const tags = (await goldenTags()).length;
      timings.second.push(await createTimed(second));
      expect(await templatesIn(ws)).toHaveLength(1);
      expect((await goldenTags()).length).toBe(tags);
      expect(await envOf(second)).toMatchObject({ id: second.id, tokenSha: sha(tokens.get(second.id)!) });
      for (const sb of [first, second]) expect(await env.client.deleteSandbox(sb.id, sb.name)).toBe(true);
    }
    // A golden snapshot as soon as the agent listens, and none at all for the second: well under the ~20 s a
    // warm-up would take.
    const median = (v: number[]) => [...v].sort((x, y) => x - y)[1]!;
    expect(median(timings.first)).toBeLessThan(15_000);
    expect(median(timings.second)).toBeLessThan(median(timings.first));
  }, 300_000);
});
