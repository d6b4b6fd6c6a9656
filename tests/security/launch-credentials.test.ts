// Per-sandbox credentials inside actors, against the real local Substrate v0.4 (gVisor checkpoint/restore, the
// router, golden snapshots), without the driver: the driver's LaunchDelivery posts them through the actor router
// to the bootstrap agent in each actor, as the driver does after every restore.
//
// OpenShell v0.1 (launch mode): a gateway stand-in (launch-helpers.ts) mints bundles with jose as the gateway
// does; the supervisor stand-in inside the actor (tests/integration/gateway/supervisor-standin.mjs) checks the
// files as the real supervisor would and reports a digest of the token it holds. Proven: an actor restored from
// its template's golden snapshot gets its own bundle and the supervisor holds exactly the token minted for that
// sandbox and epoch; suspend → resume keeps it, a fresh bundle (higher epoch) replaces it and the old epoch is
// refused; bundles for another sandbox, from a forged key or another gateway are refused; two actors of one
// template never see each other's credentials; a golden snapshot holds no credentials; an actor whose worker
// was killed comes back (revert) from its last snapshot with its own bundle.
//
// OpenShell 0.0.x (identity mode): a synthesized 0.0.x template holds no identity and no token; the agent
// holds the workload until the sandbox's {id, name, token} is delivered, then the workload (the stand-in's
// /env) has exactly them; two actors of the one template get their own and refuse each other's; a restore of a
// running workload keeps its environment and takes the same delivery again, while a revert to the golden
// snapshot holds the workload again until the identity is delivered anew.
//
// And no token text appears in the local Substrate's log, its state files (golden snapshots included), the
// templates, process arguments or environments (host; inside actors: anything but the 0.0.x workload's own
// environment), or any error message.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, Code } from '../../src/common/errors.js';
import { setLogLevel, setLogSink } from '../../src/common/log.js';
import { LaunchDelivery } from '../../src/driver/launch.js';
import * as pb from '../../src/gen/ateapi.js';
import type { DriverSandbox } from '../../src/gen/compute_driver.js';
import { buildImageFromDir } from '../../src/local/images.js';
import { SnapshotStore } from '../../src/local/snapshots.js';
import { AGENT_IMAGE_PATH } from '../../src/sandbox/bootstrap-agent.mjs';
import { BOOTSTRAP_AGENT_COMMAND, synthesizeActorTemplate, templateNameForHash, type SynthesisConfig } from '../../src/template/synthesize.js';
import { ensureAtespace, startTestSubstrate, viaRouter, waitGolden, type TestSubstrate } from '../local/helpers.js';
import { GatewayStandin, secretPartsOf, type Minted, type Session } from './launch-helpers.js';

const S = pb.ActorState;
const ATESPACE = 'creds';
const SHARED = 'shared';
const SANDBOX_A = '3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b';
const SANDBOX_B = '8a9b0c1d-2e3f-4a5b-8c7d-9e0f1a2b3c4d';
const SANDBOX_C = 'c0ffee00-1111-4222-8333-444455556666';
const SANDBOX_D = 'd00dd00d-2222-4333-8444-555566667777';
const SANDBOX_E = 'e00ee00e-3333-4444-9555-666677778888';
const ENDPOINT = 'http://10.77.0.1:18080';
const STANDIN = join(import.meta.dirname, '../integration/gateway/supervisor-standin.mjs');
const STANDIN_COMMAND = ['/usr/bin/node', '/app/supervisor-standin.mjs'];
const CFG: SynthesisConfig = { snapshotsLocation: 'gs://local-tests/creds/', sandboxClass: 'gvisor', gatewayEndpoint: ENDPOINT };

function sandboxOf(id: string, name: string, image: string, o: { token?: string; launch?: Buffer } = {}): DriverSandbox {
  return {
    id,
    name,
    namespace: '',
    // v0.4: an actor's template lives in the actor's atespace (the driver's: the sandbox's workspace).
    workspace: ATESPACE,
    spec: {
      logLevel: '',
      environment: {},
      sandboxToken: o.token ?? '',
      command: STANDIN_COMMAND,
      tty: false,
      awaitMainProcessAttachment: false,
      launchAuthentication: o.launch ?? Buffer.alloc(0),
      template: { image, agentSocketPath: '', labels: {}, environment: {} },
    },
  } as DriverSandbox;
}

describe('per-sandbox credentials in actors (real local Substrate v0.4, gVisor)', () => {
  let sub: TestSubstrate;
  let delivery: LaunchDelivery;
  let gw: GatewayStandin;
  let image: string;
  let templateA: ReturnType<typeof synthesizeActorTemplate>;
  let templateL: ReturnType<typeof synthesizeActorTemplate>;
  const output: string[] = [];
  const minted: Minted[] = [];
  /** 0.0.x tokens (minted as that gateway does: typ JWT, EdDSA, exp 0). */
  const legacy: Record<string, string> = {};
  const messages: string[] = [];
  let a1: Minted;
  let a2: Minted;

  const mint = async (g: GatewayStandin, o: Parameters<GatewayStandin['mint']>[0]) => {
    const m = await g.mint(o);
    minted.push(m);
    return m;
  };
  const rpc = <T>(m: string, req: object) => sub.rpc<T>(m, req);
  const ref = (atespace: string, name: string) => ({ actor: { atespace, name } });
  const createActor = (atespace: string, name: string, template: string) =>
    rpc('createActor', { actor: { metadata: { atespace, name }, actorTemplate: { atespace, name: template } } });
  const getActor = (atespace: string, name: string) => rpc<pb.Actor>('getActor', ref(atespace, name));
  const get = async (atespace: string, actor: string, path: string) => {
    const r = await viaRouter(sub.h.routerUrl, atespace, actor, path);
    expect(r.status).toBe(200);
    return JSON.parse(r.body) as Record<string, unknown>;
  };
  const session = async (atespace: string, actor: string) => (await get(atespace, actor, '/session')) as unknown as Session;
  /** The ApiError a delivery fails with (its message kept for the leak check at the end). */
  const refused = async (p: Promise<unknown>): Promise<ApiError> => {
    try {
      await p;
    } catch (e) {
      expect(e).toBeInstanceOf(ApiError);
      messages.push((e as ApiError).message);
      return e as ApiError;
    }
    throw new Error('expected the delivery to be refused, but it was accepted');
  };
  /** The directory of a template's golden snapshot (the tag's copy) in the local snapshot store. */
  const goldenDir = async (atespace: string, name: string): Promise<string> => {
    const t = await rpc<pb.ActorTemplate>('getActorTemplate', { actorTemplate: { atespace, name } });
    const tag = await rpc<pb.Tag>('getTag', { tag: t.status!.goldenSnapshotStatus!.goldenTag });
    return new SnapshotStore(sub.stateDir).dirOf(tag.status!.snapshot!.snapshotUri);
  };
  const filesOf = (dir: string): Buffer[] => readdirSync(dir).map((f) => readFileSync(join(dir, f)));
  /** Kills the runsc sandbox of an actor (its worker dies) and waits for the actor to read CRASHED. */
  const killWorkerOf = async (atespace: string, name: string) => {
    const h = sub.h.actors.sandboxOf(atespace, name);
    expect(h?.pid).toBeGreaterThan(0);
    process.kill(h!.pid, 'SIGKILL');
    const deadline = Date.now() + 60_000;
    let a = await getActor(atespace, name);
    while (a.status?.state !== S.ACTOR_STATE_CRASHED && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      a = await getActor(atespace, name);
    }
    expect(a.status?.state).toBe(S.ACTOR_STATE_CRASHED);
  };
  const legacyToken = async (key: CryptoKey, sandboxId: string) => {
    const iss = 'openshell-gateway:openshell';
    const t = await new SignJWT({ sub: `spiffe://openshell/sandbox/${sandboxId}`, iss, aud: iss, iat: Math.floor(Date.now() / 1000), exp: 0, sandbox_id: sandboxId })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid: 'legacy' })
      .sign(key);
    legacy[sandboxId] = t;
    return t;
  };
  const sha = async (t: string) => (await import('node:crypto')).createHash('sha256').update(t).digest('hex');

  beforeAll(async () => {
    setLogLevel('debug');
    setLogSink((line) => output.push(line));
    sub = await startTestSubstrate({ workers: 4 });
    delivery = new LaunchDelivery({ routerUrl: sub.h.routerUrl, timeoutMs: 30_000 });
    gw = await GatewayStandin.create('gw-test', 'key-1');

    // An app image with the supervisor stand-in at /app (the agent is in every image).
    const app = join(sub.stateDir, 'standin-src');
    mkdirSync(app);
    copyFileSync(STANDIN, join(app, 'supervisor-standin.mjs'));
    image = (await buildImageFromDir(sub.stateDir, 'standin', app)).ref;

    // Sandbox A's template, synthesized as the driver does on a v0.1 gateway's Create (sandbox_token =
    // supervisor.gateway_token); sandbox D's as on a 0.0.x gateway's Create (a token, no launch bundle).
    a1 = await mint(gw, { sandboxId: SANDBOX_A, authEpoch: 1 });
    templateA = synthesizeActorTemplate(sandboxOf(SANDBOX_A, 'box-a', image, { token: a1.gatewayToken, launch: a1.bytes }), CFG);
    const legacyKey = (await generateKeyPair('EdDSA', { crv: 'Ed25519' })).privateKey;
    for (const id of [SANDBOX_D, SANDBOX_E]) await legacyToken(legacyKey, id);
    templateL = synthesizeActorTemplate(sandboxOf(SANDBOX_D, 'box-d', image, { token: legacy[SANDBOX_D] }), CFG);
    await ensureAtespace(sub.rpc, ATESPACE);
    await ensureAtespace(sub.rpc, SHARED);
    for (const t of [templateA, templateL]) await rpc('createActorTemplate', { actorTemplate: t.template });

    // A hand-made shared template (no sandbox id, no trust anchor: trust on first use) for several sandboxes.
    const shared = pb.ActorTemplate.fromPartial({
      metadata: { atespace: SHARED, name: 'shared-pool' },
      containers: [
        {
          name: 'sandbox',
          image,
          command: ['/usr/bin/node', AGENT_IMAGE_PATH, '--', ...STANDIN_COMMAND],
          env: [{ name: 'OPENSHELL_ENDPOINT', value: ENDPOINT }],
          wakeupProbe: { httpGet: { path: '/readyz', port: 80 }, timeoutSeconds: 30 },
        },
      ],
      snapshotConfig: { onCommit: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, storageLocation: 'gs://local-tests/shared/' },
      sandboxConfig: { sandboxClass: pb.SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' },
    });
    await rpc('createActorTemplate', { actorTemplate: shared });
    for (const [atespace, name] of [
      [ATESPACE, templateA.template.metadata!.name],
      [ATESPACE, templateL.template.metadata!.name],
      [SHARED, 'shared-pool'],
    ] as const) {
      await waitGolden(sub.rpc, atespace, name);
    }
  }, 240_000);

  afterAll(async () => {
    setLogSink((line) => process.stderr.write(`${line}\n`));
    setLogLevel('error');
    await sub?.close();
  });

  // ---- v0.1: launch authentication -------------------------------------------------------------------------------

  it('the synthesized v0.1 template carries no token, no sandbox id, only public keys and the agent wrapper', () => {
    const text = JSON.stringify(pb.ActorTemplate.toJSON(templateA.template));
    for (const s of secretPartsOf(a1)) expect(text).not.toContain(s);
    expect(text).not.toContain(SANDBOX_A);
    const ctr = templateA.template.containers[0]!;
    expect(ctr.command).toEqual([...BOOTSTRAP_AGENT_COMMAND, ...STANDIN_COMMAND]);
    const keys = JSON.parse(ctr.env.find((e) => e.name === 'OPENSHELL_SUBSTRATE_GATEWAY_KEYS')!.value);
    expect(keys).toEqual(gw.publicKeys());
    expect(templateA.template.metadata!.name).toBe(templateNameForHash(templateA.hash));
  });

  it('an actor restored from the golden snapshot gets its own bundle; the supervisor holds the token minted for it', async () => {
    await createActor(ATESPACE, 'a', templateA.template.metadata!.name);
    await rpc('resumeActor', ref(ATESPACE, 'a'));
    // Before delivery: nothing (the golden snapshot was taken before any delivery).
    const before = await session(ATESPACE, 'a');
    expect(before.connected).toBe(false);
    expect(await delivery.status({ atespace: ATESPACE, actor: 'a' })).toEqual({ pinned: false, sandboxId: null, authEpoch: null });

    const r = await delivery.deliver({ atespace: ATESPACE, actor: 'a' }, { sandboxId: SANDBOX_A, launchAuthentication: a1.bytes, endpoint: ENDPOINT });
    expect(r).toEqual({ authEpoch: 1 });
    expect(await session(ATESPACE, 'a')).toMatchObject({
      connected: true,
      sandbox_id: SANDBOX_A,
      auth_epoch: 1,
      gateway_token_sha256: a1.digest,
      sandbox_token_verified: true,
      gateway_id: 'gw-test',
      endpoint: ENDPOINT,
    });
    expect(await delivery.status({ atespace: ATESPACE, actor: 'a' })).toEqual({ pinned: true, sandboxId: SANDBOX_A, authEpoch: 1 });
    // Delivering the same bundle again is idempotent.
    expect(await delivery.deliver({ atespace: ATESPACE, actor: 'a' }, { sandboxId: SANDBOX_A, launchAuthentication: a1.bytes })).toEqual({ authEpoch: 1 });

    // The workload half: only the gateway id and public keys; the supervisor files readable by their owner only.
    const view = (await get(ATESPACE, 'a', '/workload-view')) as { bootstrap: unknown; files: Array<{ path: string }> };
    expect(view.bootstrap).toEqual({ gateway_id: 'gw-test', verification_keys: gw.publicKeys() });
    const mode = (p: string) => view.files.find((f) => f.path === p);
    expect(mode('/.openshell/supervisor/auth.json')).toMatchObject({ exists: true, mode: '600', group_or_world_readable: false });
    expect(mode('/etc/openshell/auth/sandbox.jwt')).toMatchObject({ exists: true, mode: '400', group_or_world_readable: false });
    expect(mode('/.openshell/channel/sandbox/bootstrap.json')).toMatchObject({ exists: true, mode: '644' });
  });

  it('suspend → resume keeps the bundle; a fresh one (higher auth_epoch) replaces it and the old epoch is refused', async () => {
    await rpc('suspendActor', ref(ATESPACE, 'a'));
    await rpc('resumeActor', ref(ATESPACE, 'a'));
    expect(await session(ATESPACE, 'a')).toMatchObject({ connected: true, auth_epoch: 1, gateway_token_sha256: a1.digest });

    // A Start: suspended again, the delivery itself resumes it through the router.
    await rpc('suspendActor', ref(ATESPACE, 'a'));
    a2 = await mint(gw, { sandboxId: SANDBOX_A, authEpoch: 2, runtimeGeneration: 'g0000000000000002' });
    expect(await delivery.deliver({ atespace: ATESPACE, actor: 'a' }, { sandboxId: SANDBOX_A, launchAuthentication: a2.bytes })).toEqual({ authEpoch: 2 });
    expect((await getActor(ATESPACE, 'a')).status?.state).toBe(S.ACTOR_STATE_RUNNING);
    const s = await session(ATESPACE, 'a');
    expect(s).toMatchObject({ connected: true, auth_epoch: 2, gateway_token_sha256: a2.digest });

    const stale = await refused(delivery.deliver({ atespace: ATESPACE, actor: 'a' }, { sandboxId: SANDBOX_A, launchAuthentication: a1.bytes }));
    expect(stale.code).toBe(Code.FAILED_PRECONDITION);
    expect(stale.message).toMatch(/creds\/a.*auth_epoch 1 is older than .* 2/);
    expect((await session(ATESPACE, 'a')).gateway_token_sha256).toBe(a2.digest);
  });

  it('refuses a bundle naming another sandbox, a forged one and one from another gateway; the held one stays', async () => {
    const to = { atespace: ATESPACE, actor: 'a' };
    const forB = await mint(gw, { sandboxId: SANDBOX_B, authEpoch: 5 });
    const other = await refused(delivery.deliver(to, { sandboxId: SANDBOX_B, launchAuthentication: forB.bytes }));
    expect(other.code).toBe(Code.PERMISSION_DENIED);
    expect(other.message).toMatch(/creds\/a.*serves another sandbox/);

    // Same gateway id and key id, another private key, listing the genuine public key: the signature fails.
    const forger = await GatewayStandin.create('gw-test', 'key-1');
    const forged = await mint(forger, { sandboxId: SANDBOX_A, authEpoch: 9, verificationKeys: gw.publicKeys() });
    const f1 = await refused(delivery.deliver(to, { sandboxId: SANDBOX_A, launchAuthentication: forged.bytes }));
    expect(f1.code).toBe(Code.PERMISSION_DENIED);
    expect(f1.message).toMatch(/gateway_token signature does not verify against the trusted gateway keys/);
    // Or lists its own key under the genuine key id.
    const forgedKey = await mint(forger, { sandboxId: SANDBOX_A, authEpoch: 9 });
    expect((await refused(delivery.deliver(to, { sandboxId: SANDBOX_A, launchAuthentication: forgedKey.bytes }))).message).toMatch(/not among the trusted gateway keys/);
    // Another key id: not among the trusted keys (the template's anchor).
    const forger2 = await GatewayStandin.create('gw-test', 'key-2');
    const forged2 = await mint(forger2, { sandboxId: SANDBOX_A, authEpoch: 9 });
    const f2 = await refused(delivery.deliver(to, { sandboxId: SANDBOX_A, launchAuthentication: forged2.bytes }));
    expect(f2.code).toBe(Code.PERMISSION_DENIED);
    expect(f2.message).toMatch(/not among the trusted gateway keys/);
    // Unsigned (alg none); expired.
    const none = await mint(gw, { sandboxId: SANDBOX_A, authEpoch: 9, alg: 'none' });
    expect((await refused(delivery.deliver(to, { sandboxId: SANDBOX_A, launchAuthentication: none.bytes }))).code).toBe(Code.PERMISSION_DENIED);
    const old = await mint(gw, { sandboxId: SANDBOX_A, authEpoch: 9, ttlS: -120 });
    expect((await refused(delivery.deliver(to, { sandboxId: SANDBOX_A, launchAuthentication: old.bytes }))).message).toMatch(/expired/);
    // A 0.0.x identity to a v0.1 agent: the wrong protocol, said plainly.
    expect((await refused(delivery.deliverIdentity(to, { sandboxId: SANDBOX_A, sandboxName: 'box-a', sandboxToken: '' }))).code).toBe(Code.FAILED_PRECONDITION);

    expect(await session(ATESPACE, 'a')).toMatchObject({ connected: true, auth_epoch: 2, gateway_token_sha256: a2.digest });
  });

  it('a golden snapshot holds no credentials: a new actor of the template starts with none, and its bytes carry no token', async () => {
    await createActor(ATESPACE, 'a-fresh', templateA.template.metadata!.name);
    await rpc('resumeActor', ref(ATESPACE, 'a-fresh'));
    const s = await session(ATESPACE, 'a-fresh');
    expect(s).toMatchObject({ connected: false, reason: 'no auth.json yet' });
    const view = (await get(ATESPACE, 'a-fresh', '/workload-view')) as { bootstrap: unknown; files: Array<{ exists: boolean }> };
    expect(view.bootstrap).toBeNull();
    expect(view.files.every((f) => !f.exists)).toBe(true);
    expect(await delivery.status({ atespace: ATESPACE, actor: 'a-fresh' })).toEqual({ pinned: false, sandboxId: null, authEpoch: null });
    await rpc('suspendActor', ref(ATESPACE, 'a-fresh'));
    await rpc('deleteActor', ref(ATESPACE, 'a-fresh'));

    const golden = await goldenDir(ATESPACE, templateA.template.metadata!.name);
    expect(readdirSync(golden)).toContain('checkpoint.img');
    const bytes = filesOf(golden);
    for (const m of minted) for (const secret of secretPartsOf(m)) for (const b of bytes) expect(b.includes(secret)).toBe(false);
    for (const b of bytes) expect(b.includes(SANDBOX_A)).toBe(false);
  });

  it("two actors of ONE template hold only their own credentials, and each refuses the other's", async () => {
    for (const name of ['b', 'c']) {
      await createActor(SHARED, name, 'shared-pool');
      await rpc('resumeActor', ref(SHARED, name));
    }
    const b1 = await mint(gw, { sandboxId: SANDBOX_B, authEpoch: 1 });
    const c1 = await mint(gw, { sandboxId: SANDBOX_C, authEpoch: 1 });
    expect(await delivery.deliver({ atespace: SHARED, actor: 'b' }, { sandboxId: SANDBOX_B, launchAuthentication: b1.bytes })).toEqual({ authEpoch: 1 });
    expect(await delivery.deliver({ atespace: SHARED, actor: 'c' }, { sandboxId: SANDBOX_C, launchAuthentication: c1.bytes })).toEqual({ authEpoch: 1 });
    expect(await session(SHARED, 'b')).toMatchObject({ connected: true, sandbox_id: SANDBOX_B, gateway_token_sha256: b1.digest });
    expect(await session(SHARED, 'c')).toMatchObject({ connected: true, sandbox_id: SANDBOX_C, gateway_token_sha256: c1.digest });

    // Neither actor has anything of the other: not in its files, processes or answers.
    for (const [actor, foreign] of [
      ['b', c1],
      ['c', b1],
    ] as const) {
      const text = (await Promise.all(['/session', '/workload-view', '/processes'].map(async (p) => (await viaRouter(sub.h.routerUrl, SHARED, actor, p)).body))).join('\n');
      expect(text).not.toContain(foreign.digest);
      for (const s of secretPartsOf(foreign)) expect(text).not.toContain(s);
    }
    // Trust on first use pinned b to its sandbox and gateway: c's bundle, another gateway's, a forged one are refused.
    expect((await refused(delivery.deliver({ atespace: SHARED, actor: 'b' }, { sandboxId: SANDBOX_C, launchAuthentication: c1.bytes }))).code).toBe(Code.PERMISSION_DENIED);
    const otherGw = await GatewayStandin.create('gw-other', 'key-1');
    const foreignGw = await mint(otherGw, { sandboxId: SANDBOX_B, authEpoch: 7 });
    expect((await refused(delivery.deliver({ atespace: SHARED, actor: 'b' }, { sandboxId: SANDBOX_B, launchAuthentication: foreignGw.bytes }))).message).toMatch(/another gateway/);
    const forger = await GatewayStandin.create('gw-test', 'key-1');
    const forged = await mint(forger, { sandboxId: SANDBOX_B, authEpoch: 7, verificationKeys: gw.publicKeys() });
    expect((await refused(delivery.deliver({ atespace: SHARED, actor: 'b' }, { sandboxId: SANDBOX_B, launchAuthentication: forged.bytes }))).message).toMatch(/signature does not verify/);
    expect((await session(SHARED, 'b')).gateway_token_sha256).toBe(b1.digest);
    await rpc('suspendActor', ref(SHARED, 'c'));
  });

  it('an actor whose worker was killed is reverted to its last snapshot and comes back with its own bundle', async () => {
    await rpc('suspendActor', ref(ATESPACE, 'a')); // a snapshot holding epoch 2
    await rpc('resumeActor', ref(ATESPACE, 'a'));
    const a3 = await mint(gw, { sandboxId: SANDBOX_A, authEpoch: 3 });
    expect(await delivery.deliver({ atespace: ATESPACE, actor: 'a' }, { sandboxId: SANDBOX_A, launchAuthentication: a3.bytes })).toEqual({ authEpoch: 3 });
    expect((await session(ATESPACE, 'a')).gateway_token_sha256).toBe(a3.digest); // in memory only

    await killWorkerOf(ATESPACE, 'a');
    // v0.4: a CRASHED actor is reverted to its last external snapshot, then resumed (what the driver does).
    await rpc('revertActor', ref(ATESPACE, 'a'));
    await rpc('resumeActor', ref(ATESPACE, 'a'));
    // Its own bundle at epoch 2 (not a golden-empty one); the driver delivers the newest again, the older
    // epoch stays refused.
    expect(await session(ATESPACE, 'a')).toMatchObject({ connected: true, sandbox_id: SANDBOX_A, auth_epoch: 2, gateway_token_sha256: a2.digest });
    expect(await delivery.status({ atespace: ATESPACE, actor: 'a' })).toEqual({ pinned: true, sandboxId: SANDBOX_A, authEpoch: 2 });
    expect(await delivery.deliver({ atespace: ATESPACE, actor: 'a' }, { sandboxId: SANDBOX_A, launchAuthentication: a3.bytes })).toEqual({ authEpoch: 3 });
    expect((await session(ATESPACE, 'a')).gateway_token_sha256).toBe(a3.digest);
    expect((await refused(delivery.deliver({ atespace: ATESPACE, actor: 'a' }, { sandboxId: SANDBOX_A, launchAuthentication: a2.bytes }))).code).toBe(Code.FAILED_PRECONDITION);
    await rpc('suspendActor', ref(ATESPACE, 'a'));
  });

  // ---- 0.0.x: the sandbox identity -----------------------------------------------------------------------------

  it('the synthesized 0.0.x template holds no identity and no token; its golden snapshot holds only the waiting agent', async () => {
    const t = templateL.template;
    const text = JSON.stringify(pb.ActorTemplate.toJSON(t));
    for (const id of [SANDBOX_D, SANDBOX_E]) {
      expect(text).not.toContain(id);
      expect(text).not.toContain(legacy[id]!);
    }
    const ctr = t.containers[0]!;
    expect(ctr.command).toEqual([...BOOTSTRAP_AGENT_COMMAND, ...STANDIN_COMMAND]);
    expect(ctr.env.find((e) => e.name === 'OPENSHELL_SUBSTRATE_DELIVERY')?.value).toBe('identity');
    expect(ctr.wakeupProbe).toEqual({ httpGet: { path: '/v1/identity', port: 17461 }, timeoutSeconds: 30 });
    // The same spec for another sandbox: the same template.
    expect(synthesizeActorTemplate(sandboxOf(SANDBOX_E, 'box-e', image, { token: legacy[SANDBOX_E] }), CFG).template.metadata!.name).toBe(t.metadata!.name);

    const bytes = filesOf(await goldenDir(ATESPACE, t.metadata!.name));
    expect(bytes.length).toBeGreaterThan(1);
    for (const b of bytes) {
      for (const id of [SANDBOX_D, SANDBOX_E]) {
        expect(b.includes(id)).toBe(false);
        expect(b.includes(legacy[id]!)).toBe(false);
        expect(b.includes(legacy[id]!.split('.')[2]!)).toBe(false);
      }
    }
  });

  it('the agent holds the workload until the identity is delivered; then the workload has exactly that identity', async () => {
    await createActor(ATESPACE, 'd', templateL.template.metadata!.name);
    await rpc('resumeActor', ref(ATESPACE, 'd'));
    const to = { atespace: ATESPACE, actor: 'd' };
    // RUNNING, and the workload not started: nothing of it can hold a token yet.
    expect((await getActor(ATESPACE, 'd')).status?.state).toBe(S.ACTOR_STATE_RUNNING);
    expect(await delivery.identityStatus(to)).toEqual({ pinned: false, sandboxId: null, started: false });

    expect(await delivery.deliverIdentity(to, { sandboxId: SANDBOX_D, sandboxName: 'box-d', sandboxToken: legacy[SANDBOX_D]! })).toEqual({ started: true });
    expect(await delivery.identityStatus(to)).toEqual({ pinned: true, sandboxId: SANDBOX_D, started: true });
    const env = await get(ATESPACE, 'd', '/env');
    expect(env).toEqual({
      id: SANDBOX_D,
      name: 'box-d',
      endpoint: ENDPOINT,
      spec: JSON.stringify({ version: 1, command: STANDIN_COMMAND, tty: false }),
      tokenSha: await sha(legacy[SANDBOX_D]!),
    });
    // The token only in the workload's own environment: not in the agent's, in no process's arguments.
    const ps = (await get(ATESPACE, 'd', '/processes')) as unknown as Array<{ cmdline: string[]; environ: string[] }>;
    const agent = ps.filter((p) => p.cmdline.some((c) => c.endsWith('bootstrap-agent.mjs')));
    const workload = ps.filter((p) => p.cmdline.includes('/app/supervisor-standin.mjs') && !p.cmdline.some((c) => c.endsWith('bootstrap-agent.mjs')));
    expect(agent).toHaveLength(1);
    expect(workload).toHaveLength(1);
    expect(agent[0]!.environ).toContain('OPENSHELL_SUBSTRATE_DELIVERY=identity');
    expect(workload[0]!.environ).toContain(`OPENSHELL_SANDBOX_TOKEN=${legacy[SANDBOX_D]}`);
    expect(workload[0]!.environ.filter((e) => e.startsWith('OPENSHELL_SUBSTRATE_'))).toEqual([]);
    for (const p of ps) {
      expect(p.cmdline.join(' ')).not.toContain(legacy[SANDBOX_D]!);
      if (p !== workload[0]) expect(p.environ.join(' ')).not.toContain(legacy[SANDBOX_D]!);
    }
  });

  it("two actors of the one 0.0.x template: each its own identity and token; each refuses the other's", async () => {
    await createActor(ATESPACE, 'e', templateL.template.metadata!.name);
    await rpc('resumeActor', ref(ATESPACE, 'e'));
    const e = { atespace: ATESPACE, actor: 'e' };
    const d = { atespace: ATESPACE, actor: 'd' };
    expect(await delivery.deliverIdentity(e, { sandboxId: SANDBOX_E, sandboxName: 'box-e', sandboxToken: legacy[SANDBOX_E]! })).toEqual({ started: true });
    expect(await get(ATESPACE, 'e', '/env')).toMatchObject({ id: SANDBOX_E, name: 'box-e', tokenSha: await sha(legacy[SANDBOX_E]!) });
    for (const [actor, other] of [
      ['d', SANDBOX_E],
      ['e', SANDBOX_D],
    ] as const) {
      const text = (await Promise.all(['/env', '/processes', '/session'].map(async (p) => (await viaRouter(sub.h.routerUrl, ATESPACE, actor, p)).body))).join('\n');
      expect(text).not.toContain(legacy[other]!);
      expect(text).not.toContain(await sha(legacy[other]!));
      expect(text).not.toContain(other);
    }
    expect((await refused(delivery.deliverIdentity(d, { sandboxId: SANDBOX_E, sandboxName: 'box-e', sandboxToken: legacy[SANDBOX_E]! }))).code).toBe(Code.PERMISSION_DENIED);
    expect((await refused(delivery.deliverIdentity(e, { sandboxId: SANDBOX_D, sandboxName: 'box-d', sandboxToken: legacy[SANDBOX_D]! }))).code).toBe(Code.PERMISSION_DENIED);
    // The right id with another sandbox's token: refused before anything is sent (its claim names the other).
    expect((await refused(delivery.deliverIdentity(d, { sandboxId: SANDBOX_D, sandboxName: 'box-d', sandboxToken: legacy[SANDBOX_E]! }))).code).toBe(Code.INVALID_ARGUMENT);
    // A v0.1 bundle to a 0.0.x agent: the wrong protocol.
    expect((await refused(delivery.deliver(d, { sandboxId: SANDBOX_D, launchAuthentication: (await mint(gw, { sandboxId: SANDBOX_D, authEpoch: 1 })).bytes }))).code).toBe(
      Code.FAILED_PRECONDITION,
    );
    expect(await get(ATESPACE, 'd', '/env')).toMatchObject({ id: SANDBOX_D, tokenSha: await sha(legacy[SANDBOX_D]!) });
  });

  it('a restore of the running workload keeps its environment and takes the same delivery again; a revert to the golden snapshot holds it again', async () => {
    const d = { atespace: ATESPACE, actor: 'd' };
    const e = { atespace: ATESPACE, actor: 'e' };
    const idD = { sandboxId: SANDBOX_D, sandboxName: 'box-d', sandboxToken: legacy[SANDBOX_D]! };
    // Suspend → resume (the router's resume on demand would do the same): the workload kept its environment.
    await rpc('suspendActor', ref(ATESPACE, 'd'));
    expect(await get(ATESPACE, 'd', '/env')).toMatchObject({ id: SANDBOX_D, tokenSha: await sha(legacy[SANDBOX_D]!) });
    expect(await delivery.deliverIdentity(d, idD)).toEqual({ started: true });
    // Another name or token cannot be applied to a running workload.
    expect((await refused(delivery.deliverIdentity(d, { ...idD, sandboxName: 'renamed' }))).code).toBe(Code.FAILED_PRECONDITION);

    // d's worker dies: reverted to d's own last snapshot (the running workload), the environment is still there.
    await killWorkerOf(ATESPACE, 'd');
    await rpc('revertActor', ref(ATESPACE, 'd'));
    await rpc('resumeActor', ref(ATESPACE, 'd'));
    expect(await delivery.identityStatus(d)).toEqual({ pinned: true, sandboxId: SANDBOX_D, started: true });
    expect(await get(ATESPACE, 'd', '/env')).toMatchObject({ id: SANDBOX_D, name: 'box-d', tokenSha: await sha(legacy[SANDBOX_D]!) });
    expect(await delivery.deliverIdentity(d, idD)).toEqual({ started: true });

    // e was never suspended: its last external snapshot is the golden one, so a revert brings back the agent
    // holding the workload, and the driver's delivery after the restore starts it again.
    await killWorkerOf(ATESPACE, 'e');
    await rpc('revertActor', ref(ATESPACE, 'e'));
    await rpc('resumeActor', ref(ATESPACE, 'e'));
    expect(await delivery.identityStatus(e)).toEqual({ pinned: false, sandboxId: null, started: false });
    expect(await delivery.deliverIdentity(e, { sandboxId: SANDBOX_E, sandboxName: 'box-e', sandboxToken: legacy[SANDBOX_E]! })).toEqual({ started: true });
    expect(await get(ATESPACE, 'e', '/env')).toMatchObject({ id: SANDBOX_E, tokenSha: await sha(legacy[SANDBOX_E]!) });
    await rpc('suspendActor', ref(ATESPACE, 'e'));
  });

  // ---- leaks -----------------------------------------------------------------------------------------------------

  it('no token text in logs, state files, templates, process arguments or environments, or error messages', async () => {
    const v01 = minted.flatMap(secretPartsOf);
    const old = Object.values(legacy).flatMap((t) => [t, t.split('.')[2]!]);
    const secrets = [...v01, ...old];
    expect(v01.length).toBeGreaterThan(20);
    const hits: string[] = [];
    const check = (where: string, text: string | Buffer) => {
      for (const s of secrets) if (text.includes(s)) hits.push(where);
    };

    // Inside the v0.1 actors: every process's argv and environment (the 0.0.x ones were checked above).
    for (const [atespace, actor] of [
      [ATESPACE, 'a'],
      [SHARED, 'b'],
    ] as const) {
      const ps = await viaRouter(sub.h.routerUrl, atespace, actor, '/processes');
      // The scan sees what it should: the agent and the stand-in, their arguments and environments.
      expect(ps.body).toContain('bootstrap-agent.mjs');
      expect(ps.body).toContain('supervisor-standin.mjs');
      expect(ps.body).toContain('OPENSHELL_ENDPOINT=');
      check(`processes of ${atespace}/${actor}`, ps.body);
    }
    // The actors' OWN snapshots hold their credentials (their memory, like any secret they hold): skipped
    // below, but first the positive control that a byte scan does find a token where one is.
    const own = new Set<string>();
    for (const [atespace, name] of [
      [ATESPACE, 'a'],
      [ATESPACE, 'd'],
      [ATESPACE, 'e'],
      [SHARED, 'b'],
      [SHARED, 'c'],
    ] as const) {
      const a = await getActor(atespace, name);
      const uri = a.status?.externalSnapshot?.snapshotUri;
      if (uri) own.add(new SnapshotStore(sub.stateDir).dirOf(uri));
    }
    const aSnap = new SnapshotStore(sub.stateDir).dirOf((await getActor(ATESPACE, 'a')).status!.externalSnapshot!.snapshotUri);
    expect(filesOf(aSnap).some((b) => minted.some((m) => b.includes(m.gatewayToken)))).toBe(true);
    const eSnap = new SnapshotStore(sub.stateDir).dirOf((await getActor(ATESPACE, 'e')).status!.externalSnapshot!.snapshotUri);
    expect(filesOf(eSnap).some((b) => b.includes(legacy[SANDBOX_E]!))).toBe(true);

    // On the host: every process's argv and environment (runsc, the forwarder, this test process, ...).
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p)) continue;
      for (const f of ['cmdline', 'environ']) {
        try {
          check(`/proc/${p}/${f}`, readFileSync(`/proc/${p}/${f}`));
        } catch {
          /* gone or not ours to read */
        }
      }
    }
    // The templates as the API serves them.
    const list = await rpc<pb.ListActorTemplatesResponse>('listActorTemplates', { atespace: ATESPACE });
    expect(list.actorTemplates.map((t) => t.metadata!.name)).toEqual(expect.arrayContaining([templateA.template.metadata!.name, templateL.template.metadata!.name]));
    check('templates', JSON.stringify(pb.ListActorTemplatesResponse.toJSON(list)));
    // The local Substrate's own log (debug level) and every file of its state directory except the actors'
    // own snapshots: golden snapshots, the actors' log files (the agent's and the workload's output), the
    // database and the run directory are checked.
    check('local Substrate log', output.join('\n'));
    expect(output.length).toBeGreaterThan(20);
    let files = 0;
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (own.has(p) || p === join(sub.stateDir, 'images')) continue;
        if (e.isDirectory()) walk(p);
        else if (e.isFile() && statSync(p).size < 512 * 1024 * 1024) {
          files++;
          check(p, readFileSync(p));
        }
      }
    };
    walk(sub.stateDir);
    expect(files).toBeGreaterThan(5);
    expect(existsSync(join(sub.stateDir, 'objects'))).toBe(true);
    // Every refusal's message.
    expect(messages.length).toBeGreaterThanOrEqual(15);
    for (const m of messages) check(`error: ${m.slice(0, 60)}`, m);
    expect(hits).toEqual([]);
  });
});
