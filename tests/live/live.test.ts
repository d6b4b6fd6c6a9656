// The driver's write path (template synthesis, create, get, stop, start, delete) against a Substrate v0.4 ateapi
// server over the cluster-shaped client path: TCP + TLS with a CA bundle and a TLS server-name override, and a
// bearer token read from its file on every call. The target is a real `ate-api-server` when the SUBSTRATE_LIVE_*
// variables are set (see target.ts / README.md), otherwise the local Substrate on 127.0.0.1 with TLS and JWT auth,
// so the same assertions execute in CI (and the real-cluster run is reported as not run, never as passed). The
// driver is the real binary (`serve --config FILE`) on a real Unix socket.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setLogLevel } from '../../src/common/log.js';
import { DriverClient } from '../../src/driver/client.js';
import * as pb from '../../src/gen/ateapi.js';
import type { DriverSandbox } from '../../src/gen/compute_driver.js';
import { SubstrateClient } from '../../src/substrate/client.js';
import { ENV, isSynthesizedTemplateName, mainProcessSpec } from '../../src/template/synthesize.js';
import { DriverProcess } from '../integration/gateway/harness.js';
import { COUNTER_JS, driverToml, makeServerCert, missingLiveVars, resolveTarget, type LiveTarget } from './target.js';

const ready = (sb: DriverSandbox) => sb.status?.conditions.find((c) => c.type === 'Ready');
const suspended = (sb: DriverSandbox) => sb.status?.conditions.find((c) => c.type === 'Suspended');
const S = pb.ActorState;

async function waitSandbox(client: DriverClient, id: string, name: string, what: string, pred: (sb: DriverSandbox) => boolean, timeoutMs: number): Promise<DriverSandbox> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const sb = await client.getSandbox(id, name);
    if (pred(sb)) return sb;
    if (ready(sb)?.status === 'False') throw new Error(`sandbox ${name} failed while waiting for ${what}: ${JSON.stringify(ready(sb))}`);
    if (Date.now() > deadline) throw new Error(`sandbox ${name} not ${what} within ${timeoutMs} ms: ${JSON.stringify(sb.status?.conditions)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function grpcError(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code: number; details: string };
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** GET through the actor router, addressed as v0.4 routes (ate-target-actor). */
function routerGet(routerUrl: string, atespace: string, actor: string, path: string): Promise<{ status: number; body: string }> {
  const u = new URL(routerUrl);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path, headers: { 'ate-target-actor': `${atespace}/${actor}` }, timeout: 60_000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('driver write path against a Substrate v0.4 ateapi server over TLS with a bearer token', () => {
  let dir: string;
  let t: LiveTarget;
  let driver: DriverProcess;
  let client: DriverClient;
  let api: SubstrateClient;
  const workspace = `lv-${randomBytes(4).toString('hex')}`;
  const created = new Map<string, { name: string; workspace: string }>();
  const outputs: string[] = [];
  let synth: DriverSandbox;
  let synthTemplate = '';
  const token = `live-sandbox-token-${randomUUID()}`;
  const preRef = () => {
    const [atespace, name] = t.template.split('/') as [string, string];
    return { atespace, name };
  };

  const sandbox = (name: string, o: { token?: string; template?: string; workspace?: string } = {}): DriverSandbox => ({
    id: randomUUID(),
    name,
    namespace: '',
    workspace: o.workspace ?? workspace,
    spec: {
      logLevel: '',
      environment: { LIVE_TEST: '1' },
      template: {
        image: t.image,
        agentSocketPath: '',
        labels: {},
        environment: {},
        driverConfig: o.template ? { actor_template: o.template } : undefined,
      },
      sandboxToken: o.token ?? '',
      command: t.command,
      tty: false,
      awaitMainProcessAttachment: false,
      launchAuthentication: Buffer.alloc(0),
    },
  });

  const spawnDriver = (name: string, toml: string) => {
    const cfg = join(dir, `${name}.toml`);
    writeFileSync(cfg, toml);
    mkdirSync(join(dir, `${name}-sock`), { mode: 0o700 });
    return DriverProcess.start({
      socketPath: join(dir, `${name}-sock`, 'driver.sock'),
      stateDir: join(dir, `${name}-state`),
      local: false,
      extraArgs: ['--config', cfg],
    });
  };

  beforeAll(async () => {
    // The in-process local Substrate logs only warnings (TEST_LOG_LEVEL=debug for more).
    setLogLevel((process.env.TEST_LOG_LEVEL as 'debug' | undefined) ?? 'warn');
    dir = mkdtempSync(join(tmpdir(), 'live-'));
    t = await resolveTarget(dir);
    t.secrets.add(token);
    console.info(
      t.kind === 'cluster'
        ? `[live] target: ${t.summary}`
        : `[live] target: ${t.summary}. The REAL-CLUSTER run did NOT run (not a pass): ${missingLiveVars().join(', ')} are unset ` +
            '(set them, see tests/live/README.md, to run this suite against a real ate-api-server).',
    );
    api = new SubstrateClient({ endpoint: t.apiEndpoint, tlsCaPath: t.caPath, tlsServerName: t.tlsServerName, bearerTokenPath: t.tokenPath });
    if (t.kind === 'local') {
      // The operator's pre-provisioned template (a cluster brings its own: SUBSTRATE_LIVE_TEMPLATE_NAME).
      const { atespace, name } = preRef();
      await api.createAtespace(atespace);
      await api.createActorTemplate(
        pb.ActorTemplate.fromPartial({
          metadata: { atespace, name },
          containers: [{ name: 'app', image: t.image, command: ['/usr/bin/node', '-e', COUNTER_JS], wakeupProbe: { httpGet: { path: '/readyz', port: 80 }, timeoutSeconds: 30 } }],
          snapshotConfig: { onCommit: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, storageLocation: t.snapshotsLocation },
          sandboxConfig: { sandboxClass: pb.SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' },
        }),
      );
    }
    // Ready = its golden snapshot is published (a cluster's template must already be).
    for (const deadline = Date.now() + 120_000; ; ) {
      const g = (await api.getActorTemplate(preRef())).status?.goldenSnapshotStatus;
      if (g?.errorMessage) throw new Error(`pre-provisioned template ${t.template}: golden snapshot failed: ${g.errorMessage}`);
      if (g?.goldenTag?.name) break;
      if (Date.now() > deadline) throw new Error(`pre-provisioned template ${t.template} has no golden tag`);
      await new Promise((r) => setTimeout(r, 250));
    }
    driver = await spawnDriver('driver', driverToml(t));
    client = new DriverClient(driver.opts.socketPath);
  }, 300_000);

  afterAll(async () => {
    for (const [id, c] of created) await client?.deleteSandbox(id, c.name).catch(() => undefined);
    await client?.deleteWorkspace(workspace).catch(() => undefined);
    client?.close();
    if (t?.kind === 'local' && api) {
      const ref = preRef();
      await api.deleteActorTemplate(ref).catch(() => undefined);
      await api.deleteAtespace(ref.atespace).catch(() => undefined);
    }
    api?.close();
    if (driver) {
      await driver.stop();
      outputs.push(driver.stdout, driver.stderr);
    }
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('talks to a server that requires TLS and a bearer token', async () => {
    // The driver's client will not even try without credentials over TCP (v0.4 authenticates every TCP call).
    expect(() => new SubstrateClient({ endpoint: t.apiEndpoint, tlsCaPath: t.caPath, tlsServerName: t.tlsServerName })).toThrow(/no credentials for ateapi/);
    // A raw TLS client without the token: the server refuses the call; with it (read from the file) it answers.
    const bare = new pb.ControlClient(t.apiEndpoint, grpc.credentials.createSsl(readFileSync(t.caPath)), { 'grpc.ssl_target_name_override': t.tlsServerName });
    try {
      const e = await grpcError(
        new Promise((resolve, reject) =>
          bare.listAtespaces(pb.ListAtespacesRequest.fromPartial({ pageSize: 1 }), new grpc.Metadata(), { deadline: Date.now() + 30_000 }, (err, r) => (err ? reject(err) : resolve(r))),
        ),
      );
      expect(e.code).toBe(status.UNAUTHENTICATED);
    } finally {
      bare.close();
    }
    expect(Array.isArray(await api.listAtespaces())).toBe(true);
  });

  it('answers the gateway startup probes', async () => {
    expect(await client.getCapabilities()).toMatchObject({ driverName: 'substrate', defaultImage: t.image, gatewayManagesLifecycle: false });
    expect(await client.getGatewayListenerRequirements()).toEqual([]);
  });

  it('reports a CA that does not match the server as a clear TLS error, and a missing CA file by its config key', async () => {
    const other = makeServerCert(join(dir, 'other-ca'), 'not-the-api.invalid');
    const wrong = await spawnDriver('wrong-ca', driverToml(t, { caPath: other.certPath }));
    const c = new DriverClient(wrong.opts.socketPath);
    try {
      const e = await grpcError(c.ensureWorkspace(workspace));
      expect(e.code).toBe(status.UNAVAILABLE);
      expect(e.details).toMatch(/create atespace .*UNAVAILABLE/);
      expect(e.details).toMatch(/certificate|self[- ]signed|unable to verify/i);
      for (const s of t.secrets) expect(e.details).not.toContain(s);
    } finally {
      c.close();
      await wrong.stop();
      outputs.push(wrong.stdout, wrong.stderr);
    }
    // No atespace was made through the refused connection.
    expect((await grpcError(api.getAtespace(workspace))).code).toBe(status.NOT_FOUND);

    const missing = await spawnDriver('no-ca', driverToml(t, { caPath: join(dir, 'no-such-ca.pem') })).then(
      () => {
        throw new Error('the driver started without its CA file');
      },
      (err: Error) => err,
    );
    expect(missing.message).toMatch(/api_tls_ca_path/);
    expect(missing.message).toMatch(/no-such-ca\.pem/);
  });

  it('synthesizes a content-named ActorTemplate for a sandbox, creates it without blocking, and reports it running', async () => {
    synth = sandbox('live-synth', { token });
    await client.validateSandboxCreate({ ...synth, spec: { ...synth.spec!, sandboxToken: '' } });
    await client.createSandbox(synth);
    created.set(synth.id, { name: synth.name, workspace });
    const early = await client.getSandbox(synth.id, synth.name);
    expect(early).toMatchObject({ id: synth.id, name: 'live-synth', workspace });
    expect(ready(early)?.status).not.toBe('False');

    const running = await waitSandbox(client, synth.id, synth.name, 'Ready=True', (sb) => ready(sb)?.status === 'True', 240_000);
    expect(running.status!.instanceId).not.toBe('');

    // The actor, in the workspace's atespace, from a template the driver synthesized there.
    const actor = await api.getActor({ atespace: workspace, name: synth.id });
    expect(actor.status?.state).toBe(S.ACTOR_STATE_RUNNING);
    expect(actor.actorTemplate?.atespace).toBe(workspace);
    synthTemplate = actor.actorTemplate!.name;
    expect(isSynthesizedTemplateName(synthTemplate)).toBe(true);
    // The template: pinned image, the configured snapshot location and SandboxConfig, a golden tag, the supervisor's
    // process spec; no sandbox identity and no credential in it (v0.4 has no secret references: both are delivered
    // after restore, through the router, to the bootstrap agent).
    const tpl = await api.getActorTemplate({ atespace: workspace, name: synthTemplate });
    expect(tpl.status?.goldenSnapshotStatus?.goldenTag?.name).toBeTruthy();
    expect(tpl.snapshotConfig?.storageLocation).toBe(t.snapshotsLocation);
    expect(tpl.sandboxConfig).toEqual({ sandboxClass: pb.SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' });
    const ctr = tpl.containers[0]!;
    expect(ctr.image).toBe(t.image);
    const env = Object.fromEntries(ctr.env.map((e) => [e.name, e.value]));
    expect(env[ENV.MAIN_PROCESS_SPEC]).toBe(mainProcessSpec(t.command, false));
    expect(env.LIVE_TEST).toBe('1');
    for (const k of [ENV.SANDBOX_ID, ENV.SANDBOX, ENV.SANDBOX_TOKEN]) expect(env[k]).toBeUndefined();
    expect(JSON.stringify(pb.ActorTemplate.toJSON(tpl))).not.toContain(token);
    expect(JSON.stringify(pb.ActorTemplate.toJSON(tpl))).not.toContain(synth.id);

    if (t.kind === 'local') {
      // What the workload got after restore: its identity and the token (compared by hash, never echoed).
      const r = await routerGet(t.routerUrl, workspace, synth.id, '/env');
      expect(r.status).toBe(200);
      const got = JSON.parse(r.body) as { id: string; name: string; tokenSha: string | null };
      expect(got).toEqual({ id: synth.id, name: 'live-synth', tokenSha: createHash('sha256').update(token).digest('hex') });
    }
  }, 300_000);

  it('stops (returning once the actor is suspended) and starts (once it runs), each idempotent', async () => {
    await client.stopSandbox(synth.id, synth.name);
    expect((await api.getActor({ atespace: workspace, name: synth.id })).status?.state).toBe(S.ACTOR_STATE_SUSPENDED);
    const stopped = await client.getSandbox(synth.id, synth.name);
    expect(suspended(stopped)).toMatchObject({ status: 'True' });
    await client.stopSandbox(synth.id, synth.name);
    expect(suspended(await client.getSandbox(synth.id, synth.name))?.status).toBe('True');

    await client.startSandbox(synth.id, synth.name);
    expect((await api.getActor({ atespace: workspace, name: synth.id })).status?.state).toBe(S.ACTOR_STATE_RUNNING);
    const started = await client.getSandbox(synth.id, synth.name);
    expect(ready(started)?.status).toBe('True');
    expect(suspended(started)).toBeUndefined();
    await client.startSandbox(synth.id, synth.name);
    expect(ready(await client.getSandbox(synth.id, synth.name))?.status).toBe('True');
  }, 120_000);

  it('re-reads the bearer token file on every call: a bad token fails clearly without leaking it, a good one works again', async () => {
    const good = readFileSync(t.tokenPath, 'utf8');
    const bad = `bad.${randomBytes(24).toString('base64url')}.token`;
    t.secrets.add(bad);
    writeFileSync(t.tokenPath, bad + '\n');
    const e = await grpcError(client.getSandbox(synth.id, synth.name));
    expect(e.code).toBe(status.FAILED_PRECONDITION);
    expect(e.details).toMatch(/UNAUTHENTICATED/);
    expect(e.details).toMatch(/api_bearer_token_path/);
    for (const s of t.secrets) expect(e.details).not.toContain(s);
    expect(e.details).not.toContain(good.trim());

    writeFileSync(t.tokenPath, '  \n');
    const empty = await grpcError(client.stopSandbox(synth.id, synth.name));
    expect(empty.code).toBe(status.FAILED_PRECONDITION);
    expect(empty.details).toMatch(/is empty; check api_bearer_token_path/);

    // A rotated token (a freshly minted one locally; the original again on a cluster): the next call works.
    const rotated = await t.validToken();
    writeFileSync(t.tokenPath, rotated + '\n');
    expect(ready(await client.getSandbox(synth.id, synth.name))?.status).toBe('True');
    // The failed stop left the sandbox running, as the gateway expects after an error.
    expect((await api.getActor({ atespace: workspace, name: synth.id })).status?.state).toBe(S.ACTOR_STATE_RUNNING);
  });

  it('runs a sandbox from a pre-provisioned template (in its own atespace) without creating, changing or deleting it', async () => {
    const ref = preRef();
    const before = await api.getActorTemplate(ref);
    const synthesizedBefore = (await api.listAllActorTemplates(ref.atespace)).filter((x) => isSynthesizedTemplateName(x.metadata!.name)).length;
    const pre = sandbox('live-preprov', { template: t.template, workspace: ref.atespace });
    await client.validateSandboxCreate(pre);
    await client.createSandbox(pre);
    created.set(pre.id, { name: pre.name, workspace: ref.atespace });
    await waitSandbox(client, pre.id, pre.name, 'Ready=True', (sb) => ready(sb)?.status === 'True', 120_000);
    const a = await api.getActor({ atespace: ref.atespace, name: pre.id });
    expect(a.actorTemplate).toEqual(ref);
    expect(a.status?.state).toBe(S.ACTOR_STATE_RUNNING);
    expect((await api.listAllActorTemplates(ref.atespace)).filter((x) => isSynthesizedTemplateName(x.metadata!.name)).length).toBe(synthesizedBefore);
    expect(await client.deleteSandbox(pre.id, pre.name)).toBe(true);
    created.delete(pre.id);
    expect(await api.findActor({ atespace: ref.atespace, name: pre.id })).toBeUndefined();
    const after = await api.getActorTemplate(ref);
    expect(after.metadata?.uid).toBe(before.metadata!.uid);
    expect(after.metadata?.version).toBe(before.metadata!.version);
    expect(after.status?.goldenSnapshotStatus?.goldenTag).toEqual(before.status?.goldenSnapshotStatus?.goldenTag);
  }, 180_000);

  it('deletes: the actor and the owned template go; a second delete says deleted=false', async () => {
    expect(await client.deleteSandbox(synth.id, synth.name)).toBe(true);
    created.delete(synth.id);
    expect((await grpcError(client.getSandbox(synth.id, synth.name))).code).toBe(status.NOT_FOUND);
    expect(await client.deleteSandbox(synth.id, synth.name)).toBe(false);
    expect(await api.findActor({ atespace: workspace, name: synth.id })).toBeUndefined();
    // The synthesized template is the driver's own: gone once no sandbox uses it.
    for (const deadline = Date.now() + 30_000; (await api.findActorTemplate({ atespace: workspace, name: synthTemplate })) !== undefined; ) {
      if (Date.now() > deadline) throw new Error(`the driver's template ${workspace}/${synthTemplate} still exists 30 s after its last sandbox was deleted`);
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(await client.listSandboxes()).toEqual([]);
    await client.deleteWorkspace(workspace);
    expect((await grpcError(api.getAtespace(workspace))).code).toBe(status.NOT_FOUND);
  }, 120_000);

  it('never wrote a token into its output', async () => {
    await driver.stop();
    outputs.push(driver.stdout, driver.stderr);
    const all = outputs.join('\n');
    expect(all.length).toBeGreaterThan(0);
    for (const s of t.secrets) expect(all).not.toContain(s);
  });
});
