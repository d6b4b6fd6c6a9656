// The driver's write path (template synthesis, create, get, stop, start, delete) against an ateapi server over the
// cluster-shaped client path: TCP + TLS with a CA bundle and a TLS server-name override, and a bearer token read
// from its file on every call. The target is a real `ate-api-server` when the seed's SUBSTRATE_LIVE_* variables
// are set (see target.ts / README.md), otherwise the local Substrate on 127.0.0.1 with TLS and JWT auth, so the
// same assertions execute in CI. The driver is the real binary (`serve --config FILE`) on a real Unix socket.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setLogLevel } from '../../src/common/log.js';
import { DriverClient } from '../../src/driver/client.js';
import { Actor_Status } from '../../src/gen/june/ateapi.js';
import type { DriverSandbox } from '../../src/gen/compute_driver.js';
import { SubstrateClient } from '../../src/substrate/client.js';
import { kubeTemplateStore, type TemplateStore } from '../../src/template/store.js';
import { OWNER_ANNOTATION, OWNER_VALUE, TOKEN_SECRET_KEY, mainProcessSpec, templateNameFor, tokenSecretNameFor } from '../../src/template/synthesize.js';
import { DriverProcess } from '../integration/gateway/harness.js';
import { COUNTER_JS, driverToml, kubeConfigOfTarget, makeServerCert, missingLiveVars, resolveTarget, type LiveTarget } from './target.js';

const ready = (sb: DriverSandbox) => sb.status?.conditions.find((c) => c.type === 'Ready');
const suspended = (sb: DriverSandbox) => sb.status?.conditions.find((c) => c.type === 'Suspended');

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

describe('driver write path against an ateapi server over TLS with a bearer token', () => {
  let dir: string;
  let t: LiveTarget;
  let driver: DriverProcess;
  let client: DriverClient;
  let api: SubstrateClient;
  let store: TemplateStore;
  const workspace = `lv-${randomBytes(4).toString('hex')}`;
  const created = new Map<string, string>();
  const outputs: string[] = [];
  let synth: DriverSandbox;
  const token = `live-sandbox-token-${randomUUID()}`;

  const sandbox = (name: string, o: { token?: string; template?: string } = {}): DriverSandbox => ({
    id: randomUUID(),
    name,
    namespace: '',
    workspace,
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
        : `[live] target: ${t.summary}. The real-cluster run was skipped: ${missingLiveVars().join(', ')} are unset ` +
            '(set them, see tests/live/README.md, to run this suite against a real ate-api-server).',
    );
    driver = await spawnDriver('driver', driverToml(t));
    client = new DriverClient(driver.opts.socketPath);
    api = new SubstrateClient({ endpoint: t.apiEndpoint, tlsCaPath: t.caPath, tlsServerName: t.tlsServerName, bearerTokenPath: t.tokenPath });
    store = kubeTemplateStore(kubeConfigOfTarget(t));
    if (t.kind === 'local') {
      // The operator's pre-provisioned template (a cluster brings its own: SUBSTRATE_LIVE_TEMPLATE_NAME).
      await store.ensureNamespace(t.namespace);
      await store.apply({
        apiVersion: 'ate.dev/v1alpha1',
        kind: 'ActorTemplate',
        metadata: { name: t.template, namespace: t.namespace, labels: { 'openshell.ai/sandbox-attachable': 'true' } },
        spec: {
          pauseImage: t.pauseImage,
          containers: [{ name: 'app', image: t.image, command: ['/usr/bin/node', '-e', COUNTER_JS], readyz: { httpGet: { path: '/readyz', port: 80 } } }],
          snapshotsConfig: { location: t.snapshotsLocation },
        },
      } as never);
      await store.waitReady(t.namespace, t.template, 120_000);
    }
  }, 300_000);

  afterAll(async () => {
    for (const [id, name] of created) await client?.deleteSandbox(id, name).catch(() => undefined);
    await client?.deleteWorkspace(workspace).catch(() => undefined);
    client?.close();
    api?.close();
    if (driver) {
      await driver.stop();
      outputs.push(driver.stdout, driver.stderr);
    }
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('talks to a server that requires TLS and a bearer token', async () => {
    // Without the token the server refuses the call; with it (read from the file) it answers.
    const bare = new SubstrateClient({ endpoint: t.apiEndpoint, tlsCaPath: t.caPath, tlsServerName: t.tlsServerName });
    try {
      expect((await grpcError(bare.listAtespaces())).code).toBe(status.UNAUTHENTICATED);
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
      expect(e.details).toMatch(/create atespace .*ateapi UNAVAILABLE/);
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

  it('synthesizes an ActorTemplate for a sandbox, creates it without blocking, and reports it running', async () => {
    synth = sandbox('live-synth', { token });
    await client.validateSandboxCreate({ ...synth, spec: { ...synth.spec!, sandboxToken: '' } });
    await client.createSandbox(synth);
    created.set(synth.id, synth.name);
    const early = await client.getSandbox(synth.id, synth.name);
    expect(early).toMatchObject({ id: synth.id, name: 'live-synth', workspace });
    expect(ready(early)?.status).not.toBe('False');

    const running = await waitSandbox(client, synth.id, synth.name, 'Ready=True', (sb) => ready(sb)?.status === 'True', 240_000);
    expect(running.status!.instanceId).not.toBe('');

    // The template the driver wrote: owned, pinned, the supervisor environment, the token only by reference.
    const tpl = await store.get(t.namespace, templateNameFor(synth.id));
    expect(tpl).not.toBeNull();
    expect(tpl!.metadata.annotations?.[OWNER_ANNOTATION]).toBe(OWNER_VALUE);
    expect(tpl!.status?.phase).toBe('Ready');
    expect(tpl!.spec.pauseImage).toBe(t.pauseImage);
    expect(tpl!.spec.snapshotsConfig.location).toBe(t.snapshotsLocation);
    const ctr = tpl!.spec.containers![0]!;
    expect(ctr.image).toBe(t.image);
    const env = Object.fromEntries((ctr.env ?? []).map((e) => [e.name, e.value ?? e.valueFrom]));
    expect(env.OPENSHELL_SANDBOX_ID).toBe(synth.id);
    expect(env.OPENSHELL_SANDBOX).toBe('live-synth');
    expect(env.OPENSHELL_MAIN_PROCESS_SPEC).toBe(mainProcessSpec(t.command, false));
    expect(env.LIVE_TEST).toBe('1');
    expect(env.OPENSHELL_SANDBOX_TOKEN).toEqual({ secretKeyRef: { name: tokenSecretNameFor(synth.id), key: TOKEN_SECRET_KEY } });
    expect(JSON.stringify(tpl)).not.toContain(token);
    expect((await store.getSecret(t.namespace, tokenSecretNameFor(synth.id)))?.data[TOKEN_SECRET_KEY]).toBe(token);

    const actor = await api.getActor({ atespace: workspace, name: synth.id });
    expect(actor.actorTemplateName).toBe(templateNameFor(synth.id));
    expect(actor.status).toBe(Actor_Status.STATUS_RUNNING);
  }, 300_000);

  it('stops (returning once the actor is suspended) and starts (once it runs), each idempotent', async () => {
    await client.stopSandbox(synth.id, synth.name);
    expect((await api.getActor({ atespace: workspace, name: synth.id })).status).toBe(Actor_Status.STATUS_SUSPENDED);
    const stopped = await client.getSandbox(synth.id, synth.name);
    expect(suspended(stopped)).toMatchObject({ status: 'True' });
    await client.stopSandbox(synth.id, synth.name);
    expect(suspended(await client.getSandbox(synth.id, synth.name))?.status).toBe('True');

    await client.startSandbox(synth.id, synth.name);
    expect((await api.getActor({ atespace: workspace, name: synth.id })).status).toBe(Actor_Status.STATUS_RUNNING);
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
    expect((await api.getActor({ atespace: workspace, name: synth.id })).status).toBe(Actor_Status.STATUS_RUNNING);
  });

  it('runs a sandbox from a pre-provisioned template without creating, changing or deleting it', async () => {
    const [ns, name] = t.template.includes('/') ? t.template.split('/') : [t.namespace, t.template];
    const before = await store.get(ns!, name!);
    expect(before, `pre-provisioned template ${ns}/${name}`).not.toBeNull();
    const pre = sandbox('live-preprov', { template: t.template });
    await client.validateSandboxCreate(pre);
    await client.createSandbox(pre);
    created.set(pre.id, pre.name);
    await waitSandbox(client, pre.id, pre.name, 'Ready=True', (sb) => ready(sb)?.status === 'True', 120_000);
    expect((await api.getActor({ atespace: workspace, name: pre.id })).actorTemplateName).toBe(name);
    expect(await store.get(t.namespace, templateNameFor(pre.id))).toBeNull();
    expect(await client.deleteSandbox(pre.id, pre.name)).toBe(true);
    created.delete(pre.id);
    const after = await store.get(ns!, name!);
    expect(after?.metadata.uid).toBe(before!.metadata.uid);
    expect(after?.metadata.resourceVersion).toBe(before!.metadata.resourceVersion);
  }, 180_000);

  it('deletes: the actor, the owned template and the token secret go; a second delete says deleted=false', async () => {
    expect(await client.deleteSandbox(synth.id, synth.name)).toBe(true);
    created.delete(synth.id);
    expect((await grpcError(client.getSandbox(synth.id, synth.name))).code).toBe(status.NOT_FOUND);
    expect(await client.deleteSandbox(synth.id, synth.name)).toBe(false);
    expect(await api.findActor({ atespace: workspace, name: synth.id })).toBeUndefined();
    expect(await store.get(t.namespace, templateNameFor(synth.id))).toBeNull();
    expect(await store.getSecret(t.namespace, tokenSecretNameFor(synth.id))).toBeNull();
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
