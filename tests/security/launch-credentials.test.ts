// Per-sandbox OpenShell v0.1 launch credentials inside actors, against the real local Substrate
// (`substrate-driver local serve` as a child process: gVisor checkpoint/restore, the router, golden snapshots).
// A gateway stand-in (launch-helpers.ts) mints bundles with jose as the gateway does; the driver's
// LaunchDelivery posts them through the actor router to the bootstrap agent in each actor; the supervisor
// stand-in inside the actor (tests/integration/gateway/supervisor-standin.mjs) checks the files as the real
// supervisor would and reports a digest of the token it holds.
//
// Proven here: an actor restored from its template's golden snapshot gets its own bundle and the supervisor
// holds exactly the token minted for that sandbox and epoch; suspend → resume keeps it, a fresh bundle (higher
// epoch) replaces it and the old epoch is refused; bundles for another sandbox, from a forged key or another
// gateway are refused; two actors of one template never see each other's credentials; a golden snapshot holds
// no credentials; an actor whose worker was killed comes back from its last snapshot with its own bundle; and
// no token text appears in the local Substrate's logs and files, the templates, process arguments or
// environments (host and actor), or any error message.
import type { ResultPromise } from 'execa';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError, Code } from '../../src/common/errors.js';
import { LaunchDelivery } from '../../src/driver/launch.js';
import { Actor_Status, type Actor } from '../../src/gen/june/ateapi.js';
import type { DriverSandbox } from '../../src/gen/compute_driver.js';
import { Catalog } from '../../src/local/catalog.js';
import { buildImageFromDir } from '../../src/local/images.js';
import { kubeAccessOf, type LocalJson } from '../../src/local/index.js';
import { instancePaths, listNetns, runscPidsOf } from '../../src/local/runtime/index.js';
import { AGENT_IMAGE_PATH } from '../../src/sandbox/bootstrap-agent.mjs';
import { synthesizeActorTemplate, templateNameFor, type SynthesisConfig } from '../../src/template/synthesize.js';
import { applyObject, controlClient, serveLocal, viaRouter, waitTemplateReady } from '../local/helpers.js';
import { GatewayStandin, secretPartsOf, type Minted, type Session } from './launch-helpers.js';

const ATESPACE = 'creds';
const SHARED = 'shared';
const SANDBOX_A = '3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b';
const SANDBOX_B = '8a9b0c1d-2e3f-4a5b-8c7d-9e0f1a2b3c4d';
const SANDBOX_C = 'c0ffee00-1111-4222-8333-444455556666';
const ENDPOINT = 'http://10.77.0.1:18080';
const STANDIN = join(import.meta.dirname, '../integration/gateway/supervisor-standin.mjs');

describe('per-sandbox launch credentials in actors (real local Substrate, gVisor)', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'sec-launch-'));
  let proc: ResultPromise | undefined;
  let info: LocalJson;
  let c: ReturnType<typeof controlClient>;
  let delivery: LaunchDelivery;
  let gw: GatewayStandin;
  let image: string;
  let templateA: ReturnType<typeof synthesizeActorTemplate>;
  const output: string[] = [];
  const minted: Minted[] = [];
  const messages: string[] = [];
  let a1: Minted;
  let a2: Minted;

  const mint = async (g: GatewayStandin, o: Parameters<GatewayStandin['mint']>[0]) => {
    const m = await g.mint(o);
    minted.push(m);
    return m;
  };
  const session = async (atespace: string, actor: string): Promise<Session> => {
    const r = await viaRouter(info.router_url, atespace, actor, '/session');
    expect(r.status).toBe(200);
    return JSON.parse(r.body) as Session;
  };
  const getActor = async (atespace: string, name: string) => (await c.rpc<{ actor: Actor }>('getActor', { actorRef: { atespace, name } })).actor;
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

  beforeAll(async () => {
    ({ proc, info } = await serveLocal(stateDir, { workers: 4, logLevel: 'debug' }));
    proc.stdout?.on('data', (d: Buffer) => output.push(d.toString()));
    proc.stderr?.on('data', (d: Buffer) => output.push(d.toString()));
    c = controlClient(info.api_endpoint);
    delivery = new LaunchDelivery({ routerUrl: info.router_url, timeoutMs: 30_000 });
    gw = await GatewayStandin.create('gw-test', 'key-1');

    // An app image with the supervisor stand-in at /app (the agent is in every image).
    const app = join(stateDir, 'standin-src');
    mkdirSync(app);
    copyFileSync(STANDIN, join(app, 'supervisor-standin.mjs'));
    image = (await buildImageFromDir(stateDir, 'standin', app)).ref;

    // Sandbox A's template, synthesized as the driver does on a v0.1 gateway's Create: the gateway sends the
    // bundle and sandbox_token = supervisor.gateway_token.
    a1 = await mint(gw, { sandboxId: SANDBOX_A, authEpoch: 1 });
    const sandbox: DriverSandbox = {
      id: SANDBOX_A,
      name: 'box-a',
      namespace: '',
      workspace: 'default',
      spec: {
        logLevel: '',
        environment: {},
        sandboxToken: a1.gatewayToken,
        command: ['/usr/bin/node', '/app/supervisor-standin.mjs'],
        tty: false,
        awaitMainProcessAttachment: false,
        launchAuthentication: a1.bytes,
        template: { image, agentSocketPath: '', labels: {}, environment: {} },
      },
    } as DriverSandbox;
    const cfg: SynthesisConfig = {
      namespace: 'default',
      pauseImage: 'registry.k8s.io/pause:3.10@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a',
      snapshotsLocation: 'file:///unused/',
      sandboxClass: 'gvisor',
      gatewayEndpoint: ENDPOINT,
      readyz: { path: '/readyz', port: 80 },
    };
    templateA = synthesizeActorTemplate(sandbox, cfg);
    const kube = kubeAccessOf(info);
    expect((await applyObject(kube, templateA as never)).status).toBeLessThan(300);

    // A hand-made shared template (no sandbox id, no trust anchor: trust on first use) for several sandboxes.
    const shared = {
      apiVersion: 'ate.dev/v1alpha1',
      kind: 'ActorTemplate',
      metadata: { name: 'shared-pool', namespace: 'default' },
      spec: {
        pauseImage: cfg.pauseImage,
        containers: [
          {
            name: 'sandbox',
            image,
            command: ['/usr/bin/node', AGENT_IMAGE_PATH, '--', '/usr/bin/node', '/app/supervisor-standin.mjs'],
            env: [{ name: 'OPENSHELL_ENDPOINT', value: ENDPOINT }],
            readyz: { httpGet: { path: '/readyz', port: 80 } },
          },
        ],
        snapshotsConfig: { location: 'file:///unused/' },
      },
    };
    expect((await applyObject(kube, shared as never)).status).toBeLessThan(300);
    await waitTemplateReady(kube, 'default', templateA.metadata.name!, 120_000);
    await waitTemplateReady(kube, 'default', 'shared-pool', 120_000);
    await c.rpc('createAtespace', { name: ATESPACE });
    await c.rpc('createAtespace', { name: SHARED });
  });

  afterAll(async () => {
    c?.close();
    if (proc && proc.exitCode === null) {
      proc.kill('SIGTERM');
      await proc;
    }
    const paths = instancePaths(stateDir);
    expect((await listNetns()).filter((n) => n.startsWith(paths.netnsPrefix))).toEqual([]);
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('the synthesized template carries no token, no Secret reference, only public keys and the agent wrapper', () => {
    const text = JSON.stringify(templateA);
    for (const s of secretPartsOf(a1)) expect(text).not.toContain(s);
    expect(text).not.toContain('secretKeyRef');
    const ctr = templateA.spec.containers![0]!;
    expect(ctr.command).toEqual(['/usr/bin/node', AGENT_IMAGE_PATH, '--', '/usr/bin/node', '/app/supervisor-standin.mjs']);
    const keys = JSON.parse(ctr.env!.find((e) => e.name === 'OPENSHELL_SUBSTRATE_GATEWAY_KEYS')!.value!);
    expect(keys).toEqual(gw.publicKeys());
    expect(templateA.metadata.name).toBe(templateNameFor(SANDBOX_A));
  });

  it('an actor restored from the golden snapshot gets its own bundle; the supervisor holds the token minted for it', async () => {
    await c.rpc('createActor', { actorRef: { atespace: ATESPACE, name: 'a' }, actorTemplateNamespace: 'default', actorTemplateName: templateA.metadata.name });
    await c.rpc('resumeActor', { actorRef: { atespace: ATESPACE, name: 'a' } });
    // Before delivery: nothing (the golden snapshot was taken before any delivery).
    const before = await session(ATESPACE, 'a');
    expect(before.connected).toBe(false);
    expect(await delivery.status({ atespace: ATESPACE, actor: 'a' })).toEqual({ pinned: false, sandboxId: SANDBOX_A, authEpoch: null });

    const r = await delivery.deliver({ atespace: ATESPACE, actor: 'a' }, { sandboxId: SANDBOX_A, launchAuthentication: a1.bytes, endpoint: ENDPOINT });
    expect(r).toEqual({ authEpoch: 1 });
    const s = await session(ATESPACE, 'a');
    expect(s).toMatchObject({ connected: true, sandbox_id: SANDBOX_A, auth_epoch: 1, gateway_token_sha256: a1.digest, sandbox_token_verified: true, gateway_id: 'gw-test', endpoint: ENDPOINT });
    expect(await delivery.status({ atespace: ATESPACE, actor: 'a' })).toEqual({ pinned: true, sandboxId: SANDBOX_A, authEpoch: 1 });
    // Delivering the same bundle again is idempotent.
    expect(await delivery.deliver({ atespace: ATESPACE, actor: 'a' }, { sandboxId: SANDBOX_A, launchAuthentication: a1.bytes })).toEqual({ authEpoch: 1 });

    // The workload half: only the gateway id and public keys; the supervisor files readable by their owner only.
    const view = JSON.parse((await viaRouter(info.router_url, ATESPACE, 'a', '/workload-view')).body);
    expect(view.bootstrap).toEqual({ gateway_id: 'gw-test', verification_keys: gw.publicKeys() });
    const mode = (p: string) => view.files.find((f: { path: string }) => f.path === p);
    expect(mode('/.openshell/supervisor/auth.json')).toMatchObject({ exists: true, mode: '600', group_or_world_readable: false });
    expect(mode('/etc/openshell/auth/sandbox.jwt')).toMatchObject({ exists: true, mode: '400', group_or_world_readable: false });
    expect(mode('/.openshell/channel/sandbox/bootstrap.json')).toMatchObject({ exists: true, mode: '644' });
  });

  it('suspend → resume keeps the bundle; a fresh one (higher auth_epoch) replaces it and the old epoch is refused', async () => {
    const ref = { actorRef: { atespace: ATESPACE, name: 'a' } };
    await c.rpc('suspendActor', ref);
    await c.rpc('resumeActor', ref);
    expect(await session(ATESPACE, 'a')).toMatchObject({ connected: true, auth_epoch: 1, gateway_token_sha256: a1.digest });

    // A Start: suspended again, the delivery itself resumes it through the router.
    await c.rpc('suspendActor', ref);
    a2 = await mint(gw, { sandboxId: SANDBOX_A, authEpoch: 2, runtimeGeneration: 'g0000000000000002' });
    expect(await delivery.deliver({ atespace: ATESPACE, actor: 'a' }, { sandboxId: SANDBOX_A, launchAuthentication: a2.bytes })).toEqual({ authEpoch: 2 });
    expect((await getActor(ATESPACE, 'a')).status).toBe(Actor_Status.STATUS_RUNNING);
    const s = await session(ATESPACE, 'a');
    expect(s).toMatchObject({ connected: true, auth_epoch: 2, gateway_token_sha256: a2.digest });
    expect(s.gateway_token_sha256).not.toBe(a1.digest);

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

    // Same gateway id and key id, another private key: the signature does not verify.
    // It lists the genuine public key (the bundle looks right) but signs with its own.
    const forger = await GatewayStandin.create('gw-test', 'key-1');
    const forged = await mint(forger, { sandboxId: SANDBOX_A, authEpoch: 9, verificationKeys: gw.publicKeys() });
    const f1 = await refused(delivery.deliver(to, { sandboxId: SANDBOX_A, launchAuthentication: forged.bytes }));
    expect(f1.code).toBe(Code.PERMISSION_DENIED);
    expect(f1.message).toMatch(/gateway_token signature does not verify against the trusted gateway keys/);
    // Or lists its own key under the genuine key id.
    const forgedKey = await mint(forger, { sandboxId: SANDBOX_A, authEpoch: 9 });
    expect((await refused(delivery.deliver(to, { sandboxId: SANDBOX_A, launchAuthentication: forgedKey.bytes }))).message).toMatch(/not among the trusted gateway keys/);
    // The forger lists its own key: not among the trusted keys (the template's anchor).
    const forger2 = await GatewayStandin.create('gw-test', 'key-2');
    const forged2 = await mint(forger2, { sandboxId: SANDBOX_A, authEpoch: 9 });
    const f2 = await refused(delivery.deliver(to, { sandboxId: SANDBOX_A, launchAuthentication: forged2.bytes }));
    expect(f2.code).toBe(Code.PERMISSION_DENIED);
    expect(f2.message).toMatch(/not among the trusted gateway keys/);
    // Unsigned (alg none).
    const none = await mint(gw, { sandboxId: SANDBOX_A, authEpoch: 9, alg: 'none' });
    expect((await refused(delivery.deliver(to, { sandboxId: SANDBOX_A, launchAuthentication: none.bytes }))).code).toBe(Code.PERMISSION_DENIED);
    // Expired.
    const old = await mint(gw, { sandboxId: SANDBOX_A, authEpoch: 9, ttlS: -120 });
    expect((await refused(delivery.deliver(to, { sandboxId: SANDBOX_A, launchAuthentication: old.bytes }))).message).toMatch(/expired/);

    expect(await session(ATESPACE, 'a')).toMatchObject({ connected: true, auth_epoch: 2, gateway_token_sha256: a2.digest });
  });

  it("a golden snapshot holds no credentials: a new actor of the template starts with none, and its files carry no token", async () => {
    const ref = { actorRef: { atespace: ATESPACE, name: 'a-fresh' } };
    await c.rpc('createActor', { ...ref, actorTemplateNamespace: 'default', actorTemplateName: templateA.metadata.name });
    await c.rpc('resumeActor', ref);
    const s = await session(ATESPACE, 'a-fresh');
    expect(s.connected).toBe(false);
    expect(s.reason).toBe('no auth.json yet');
    const view = JSON.parse((await viaRouter(info.router_url, ATESPACE, 'a-fresh', '/workload-view')).body);
    expect(view.bootstrap).toBeNull();
    expect(view.files.every((f: { exists: boolean }) => !f.exists)).toBe(true);
    expect(await delivery.status({ atespace: ATESPACE, actor: 'a-fresh' })).toEqual({ pinned: false, sandboxId: SANDBOX_A, authEpoch: null });
    await c.rpc('suspendActor', ref);
    await c.rpc('deleteActor', ref);

    // The golden snapshot's own bytes hold none of the tokens minted so far.
    const kube = kubeAccessOf(info);
    const t = (await (await fetch(`${kube.url}/apis/ate.dev/v1alpha1/namespaces/default/actortemplates/${templateA.metadata.name}`, { headers: { authorization: `Bearer ${kube.token}` } })).json()) as {
      status: { goldenSnapshot: string };
    };
    const golden = t.status.goldenSnapshot.replace(/^file:\/\//, '');
    expect(readdirSync(golden)).toContain('checkpoint.img');
    const bytes = readdirSync(golden).map((f) => readFileSync(join(golden, f)));
    for (const m of minted) for (const secret of secretPartsOf(m)) for (const b of bytes) expect(b.includes(secret)).toBe(false);
  });

  it("two actors of ONE template hold only their own credentials, and each refuses the other's", async () => {
    for (const name of ['b', 'c']) {
      await c.rpc('createActor', { actorRef: { atespace: SHARED, name }, actorTemplateNamespace: 'default', actorTemplateName: 'shared-pool' });
      await c.rpc('resumeActor', { actorRef: { atespace: SHARED, name } });
    }
    const b1 = await mint(gw, { sandboxId: SANDBOX_B, authEpoch: 1 });
    const c1 = await mint(gw, { sandboxId: SANDBOX_C, authEpoch: 1 });
    expect(await delivery.deliver({ atespace: SHARED, actor: 'b' }, { sandboxId: SANDBOX_B, launchAuthentication: b1.bytes })).toEqual({ authEpoch: 1 });
    expect(await delivery.deliver({ atespace: SHARED, actor: 'c' }, { sandboxId: SANDBOX_C, launchAuthentication: c1.bytes })).toEqual({ authEpoch: 1 });
    const sb = await session(SHARED, 'b');
    const sc = await session(SHARED, 'c');
    expect(sb).toMatchObject({ connected: true, sandbox_id: SANDBOX_B, gateway_token_sha256: b1.digest });
    expect(sc).toMatchObject({ connected: true, sandbox_id: SANDBOX_C, gateway_token_sha256: c1.digest });

    // Neither actor has anything of the other: not in its files, processes or answers.
    for (const [actor, foreign] of [
      ['b', c1],
      ['c', b1],
    ] as const) {
      const seen = ['/session', '/workload-view', '/processes'].map(async (p) => (await viaRouter(info.router_url, SHARED, actor, p)).body);
      const text = (await Promise.all(seen)).join('\n');
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
    const forgedKey = await mint(forger, { sandboxId: SANDBOX_B, authEpoch: 7 });
    expect((await refused(delivery.deliver({ atespace: SHARED, actor: 'b' }, { sandboxId: SANDBOX_B, launchAuthentication: forgedKey.bytes }))).message).toMatch(/not among the trusted gateway keys/);
    expect((await session(SHARED, 'b')).gateway_token_sha256).toBe(b1.digest);
    await c.rpc('suspendActor', { actorRef: { atespace: SHARED, name: 'c' } });
  });

  it('an actor whose worker was killed comes back from its last snapshot with its own bundle', async () => {
    const ref = { actorRef: { atespace: ATESPACE, name: 'a' } };
    await c.rpc('suspendActor', ref); // a snapshot holding epoch 2
    await c.rpc('resumeActor', ref);
    const a3 = await mint(gw, { sandboxId: SANDBOX_A, authEpoch: 3 });
    expect(await delivery.deliver({ atespace: ATESPACE, actor: 'a' }, { sandboxId: SANDBOX_A, launchAuthentication: a3.bytes })).toEqual({ authEpoch: 3 });
    expect((await session(ATESPACE, 'a')).gateway_token_sha256).toBe(a3.digest); // in memory only

    // Kill the actor's sandbox process (its worker), as tests/local/control.test.ts and the soak do.
    const paths = instancePaths(stateDir);
    const cat = new Catalog(join(stateDir, 'catalog.db'), { readonly: true });
    const pid = cat.workerOfActor(ATESPACE, 'a')?.pid ?? 0;
    cat.close();
    expect(runscPidsOf(paths.runscRoot)).toContain(pid);
    process.kill(pid, 'SIGKILL');
    let a = await getActor(ATESPACE, 'a');
    for (let i = 0; i < 100 && a.status === Actor_Status.STATUS_RUNNING; i++) {
      await new Promise((r) => setTimeout(r, 100));
      a = await getActor(ATESPACE, 'a');
    }
    expect(a.status).not.toBe(Actor_Status.STATUS_RUNNING);

    // Back (the router resumes it) from the snapshot: its own bundle at epoch 2, not a golden-empty one.
    const back = await session(ATESPACE, 'a');
    expect(back).toMatchObject({ connected: true, sandbox_id: SANDBOX_A, auth_epoch: 2, gateway_token_sha256: a2.digest });
    expect(await delivery.status({ atespace: ATESPACE, actor: 'a' })).toEqual({ pinned: true, sandboxId: SANDBOX_A, authEpoch: 2 });
    // The driver re-delivers the newest bundle it holds; the older epoch stays refused.
    expect(await delivery.deliver({ atespace: ATESPACE, actor: 'a' }, { sandboxId: SANDBOX_A, launchAuthentication: a3.bytes })).toEqual({ authEpoch: 3 });
    expect((await session(ATESPACE, 'a')).gateway_token_sha256).toBe(a3.digest);
    expect((await refused(delivery.deliver({ atespace: ATESPACE, actor: 'a' }, { sandboxId: SANDBOX_A, launchAuthentication: a2.bytes }))).code).toBe(Code.FAILED_PRECONDITION);
  });

  it('no token text in logs, state files, templates, process arguments or environments, or error messages', async () => {
    const secrets = minted.flatMap(secretPartsOf);
    expect(secrets.length).toBeGreaterThan(20);
    const hits: string[] = [];
    const check = (where: string, text: string | Buffer) => {
      for (const s of secrets) if (text.includes(s)) hits.push(where);
    };

    // Inside the actors: every process's argv and environment.
    for (const [atespace, actor] of [
      [ATESPACE, 'a'],
      [SHARED, 'b'],
    ] as const) {
      const ps = await viaRouter(info.router_url, atespace, actor, '/processes');
      // The scan sees what it should: the agent and the stand-in, their arguments and environments.
      expect(ps.body).toContain('bootstrap-agent.mjs');
      expect(ps.body).toContain('supervisor-standin.mjs');
      expect(ps.body).toContain('OPENSHELL_ENDPOINT=');
      check(`processes of ${atespace}/${actor}`, ps.body);
    }
    // Positive control for the byte scans below: the actor's OWN snapshot does hold its token (its memory), so a
    // scan of snapshot bytes finds tokens when they are there; golden snapshots were scanned above and here.
    const ownSnapshots = join(stateDir, 'snapshots', ATESPACE, 'a');
    const own = readdirSync(ownSnapshots).flatMap((d) => readdirSync(join(ownSnapshots, d)).map((f) => readFileSync(join(ownSnapshots, d, f))));
    expect(own.some((b) => b.includes(a2.gatewayToken))).toBe(true);
    // On the host: every process's argv and environment (runsc, the forwarder, local serve, ...).
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      for (const f of ['cmdline', 'environ']) {
        try {
          check(`/proc/${e}/${f}`, readFileSync(`/proc/${e}/${f}`));
        } catch {
          /* gone or not ours to read */
        }
      }
    }
    // The templates as the API serves them.
    const kube = kubeAccessOf(info);
    const list = await (await fetch(`${kube.url}/apis/ate.dev/v1alpha1/namespaces/default/actortemplates`, { headers: { authorization: `Bearer ${kube.token}` } })).text();
    expect(list).toContain(templateA.metadata.name);
    check('templates', list);
    // The local Substrate's own output (debug level) and every file of its state directory except the actors'
    // own snapshots (an actor's memory holds its credentials, like any secret it holds). Golden snapshots,
    // logs (the agent's and the workload's output included), the catalog and the run directory are checked.
    check('local serve output', output.join(''));
    const skip = [join(stateDir, 'snapshots', ATESPACE), join(stateDir, 'snapshots', SHARED), join(stateDir, 'nodes'), join(stateDir, 'images')];
    let files = 0;
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (skip.some((s) => p === s)) continue;
        if (e.isDirectory()) walk(p);
        else if (e.isFile() && statSync(p).size < 512 * 1024 * 1024) {
          files++;
          check(p, readFileSync(p));
        }
      }
    };
    walk(stateDir);
    expect(files).toBeGreaterThan(5);
    expect(readdirSync(join(stateDir, 'logs', ATESPACE))).toContain('a.log');
    // Every refusal's message.
    expect(messages.length).toBeGreaterThanOrEqual(10);
    for (const m of messages) check(`error: ${m.slice(0, 60)}`, m);
    expect(hits).toEqual([]);
  });
});
