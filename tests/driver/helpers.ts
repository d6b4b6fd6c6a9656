// Shared pieces of the driver's contract tests. Everything is real: the local Substrate on gVisor (its v0.4
// ateapi over gRPC on the instance's Unix socket, its router), the driver serving on a real Unix socket, and
// the generated ComputeDriverClient dialing it the way the gateway does.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { loadConfig, type DriverConfig } from '../../src/common/config.js';
import { setLogLevel } from '../../src/common/log.js';
import type { DriverSandbox, WatchSandboxesEvent } from '../../src/gen/compute_driver.js';
import { DriverClient } from '../../src/driver/client.js';
import { runDriver, type LocalEndpoints, type RunningDriver } from '../../src/driver/index.js';
import { ensureDefaultImage } from '../../src/local/images.js';
import { startLocalSubstrate, type LocalSubstrateHandle } from '../../src/local/index.js';
import * as pb from '../../src/gen/ateapi.js';
import { clientFromConfig, resolveApiTarget, type SubstrateClient } from '../../src/substrate/client.js';

export const ROUTER_SUFFIX = 'actors.resources.substrate.ate.dev';

/**
 * A workload for the node image: an HTTP server on port 80 whose /count keeps a counter in memory, /readyz
 * answers 200 and /env reports what the supervisor environment carries (the token only as a boolean match
 * against EXPECT_TOKEN_SHA, never echoed).
 */
export const COUNTER_JS = `
const http = require('http'), crypto = require('crypto');
let n = 0;
http.createServer((q, s) => {
  if (q.url === '/readyz') return s.end('ok');
  if (q.url === '/count') { n++; return s.end(JSON.stringify({ n })); }
  if (q.url === '/env') {
    const e = process.env, tok = e.OPENSHELL_SANDBOX_TOKEN;
    return s.end(JSON.stringify({
      id: e.OPENSHELL_SANDBOX_ID, name: e.OPENSHELL_SANDBOX, spec: e.OPENSHELL_MAIN_PROCESS_SPEC,
      endpoint: e.OPENSHELL_ENDPOINT, user: e.USER_VAR,
      tokenSha: tok ? crypto.createHash('sha256').update(tok).digest('hex') : null,
    }));
  }
  s.end('hello');
}).listen(80);
`;

export interface TestEnv {
  dir: string;
  local: LocalSubstrateHandle;
  endpoints: LocalEndpoints;
  image: string;
  ateapi: SubstrateClient;
  cfg: DriverConfig;
  driver: RunningDriver;
  client: DriverClient;
  /** Restarts the driver process part (same config, same state) and reconnects the client. */
  restartDriver(): Promise<void>;
  close(): Promise<void>;
}

export async function startEnv(
  opts: { flags?: Record<string, string | boolean>; watchBufferLimit?: number; /** the local Substrate's golden warm-up (default: upstream's 20 s) */ goldenWarmupMs?: number } = {},
): Promise<TestEnv> {
  setLogLevel((process.env.TEST_LOG_LEVEL as 'debug') ?? 'error');
  const dir = mkdtempSync(join(tmpdir(), 'drv-contract-'));
  let local: LocalSubstrateHandle | undefined;
  try {
    local = await startLocalSubstrate({ stateDir: dir, workers: 2, routerListen: '127.0.0.1:0', goldenWarmupMs: opts.goldenWarmupMs });
    const image = (await ensureDefaultImage(dir)).ref;
    const endpoints: LocalEndpoints = { apiEndpoint: `unix:${local.socketPath}`, apiTls: false, stateDir: dir, defaultImage: image, routerUrl: local.routerUrl };
    const cfg = loadConfig({ env: {}, flags: { state_dir: dir, poll_interval_ms: '200', ...opts.flags } });
    const ateapi = clientFromConfig(cfg, resolveApiTarget(cfg, endpoints.apiEndpoint, false));
    const env: TestEnv = {
      dir,
      local,
      endpoints,
      image,
      ateapi,
      cfg,
      driver: await runDriver({ config: cfg, local: endpoints, watchBufferLimit: opts.watchBufferLimit, processMetrics: false }),
      client: new DriverClient(cfg.socketPath),
      async restartDriver() {
        env.client.close();
        await env.driver.close();
        env.driver = await runDriver({ config: cfg, local: endpoints, watchBufferLimit: opts.watchBufferLimit, processMetrics: false });
        env.client = new DriverClient(cfg.socketPath);
      },
      async close() {
        env.client.close();
        await env.driver.close().catch(() => undefined);
        ateapi.close();
        await local!.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
    return env;
  } catch (e) {
    await local?.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

export function sandboxOf(o: {
  image: string;
  name?: string;
  id?: string;
  workspace?: string;
  command?: string[];
  env?: Record<string, string>;
  token?: string;
  driverConfig?: Record<string, unknown>;
  platformConfig?: Record<string, unknown>;
  gpu?: boolean;
}): DriverSandbox {
  return {
    id: o.id ?? randomUUID(),
    name: o.name ?? `sb-${randomUUID().slice(0, 8)}`,
    namespace: '',
    workspace: o.workspace ?? 'default',
    spec: {
      logLevel: '',
      environment: o.env ?? {},
      template: {
        image: o.image,
        agentSocketPath: '',
        labels: {},
        environment: {},
        driverConfig: o.driverConfig,
        platformConfig: o.platformConfig,
      },
      resourceRequirements: o.gpu ? { gpu: {} } : undefined,
      sandboxToken: o.token ?? '',
      command: o.command ?? ['/usr/bin/node', '-e', COUNTER_JS],
      tty: false,
      awaitMainProcessAttachment: false,
      launchAuthentication: Buffer.alloc(0),
    },
  };
}

/**
 * GET through the local Substrate's router (which resumes the actor on demand, as upstream's does). The actor
 * is named by v0.4's `ate-target-actor: <atespace>/<actor>` header; `{ host: true }` uses the local router's
 * Host-name convenience form instead.
 */
export function routerGet(routerUrl: string, actor: string, atespace: string, path: string, opts: { host?: boolean } = {}): Promise<{ status: number; body: string }> {
  const u = new URL(routerUrl);
  const headers: Record<string, string> = opts.host ? { host: `${actor}.${atespace}.${ROUTER_SUFFIX}` } : { 'ate-target-actor': `${atespace}/${actor}` };
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path, method: 'GET', headers, timeout: 60_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Records a WatchSandboxes stream. */
export class WatchRecorder {
  readonly events: WatchSandboxesEvent[] = [];
  error?: grpc.ServiceError;
  ended = false;
  private waiters: Array<() => void> = [];
  readonly stream: grpc.ClientReadableStream<WatchSandboxesEvent>;

  constructor(client: DriverClient) {
    this.stream = client.watch();
    this.stream.on('data', (ev: WatchSandboxesEvent) => {
      this.events.push(ev);
      this.wake();
    });
    this.stream.on('error', (e: grpc.ServiceError) => {
      this.error = e;
      this.wake();
    });
    this.stream.on('end', () => {
      this.ended = true;
      this.wake();
    });
  }

  private wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves with the first event (from index `from`) that matches. */
  async waitFor(pred: (ev: WatchSandboxesEvent) => boolean, timeoutMs = 120_000, from = 0): Promise<WatchSandboxesEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.slice(from).find(pred);
      if (hit) return hit;
      if (this.error || this.ended) throw new Error(`watch ended before the event came: ${this.error?.details ?? 'end'}`);
      if (Date.now() > deadline) throw new Error(`no matching watch event within ${timeoutMs} ms; got ${this.events.length} events`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 500);
      });
    }
  }

  sandboxEvents(id?: string): DriverSandbox[] {
    return this.events
      .map((e) => (e.payload?.$case === 'sandbox' ? e.payload.value.sandbox : undefined))
      .filter((s): s is DriverSandbox => !!s && (!id || s.id === id));
  }

  cancel(): void {
    this.stream.cancel();
  }
}

export function readyOf(sb: DriverSandbox | undefined) {
  return sb?.status?.conditions.find((c) => c.type === 'Ready');
}

export function suspendedOf(sb: DriverSandbox | undefined) {
  return sb?.status?.conditions.find((c) => c.type === 'Suspended');
}

/** Polls GetSandbox until `pred` holds. */
export async function waitSandbox(client: DriverClient, id: string, pred: (sb: DriverSandbox) => boolean, timeoutMs = 120_000): Promise<DriverSandbox> {
  const deadline = Date.now() + timeoutMs;
  let last: DriverSandbox | undefined;
  for (;;) {
    last = await client.getSandbox(id);
    if (pred(last)) return last;
    if (Date.now() > deadline) throw new Error(`sandbox ${id} did not reach the expected state: ${JSON.stringify(last.status)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function expectGrpcError(p: Promise<unknown>, code: number, message?: RegExp): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    const se = e as grpc.ServiceError;
    if (se.code !== code) throw new Error(`expected gRPC code ${code}, got ${se.code}: ${se.details ?? se.message}`);
    if (message && !message.test(se.details)) throw new Error(`expected message ${message}, got "${se.details}"`);
    return se;
  }
  throw new Error(`expected gRPC code ${code}, but the call succeeded`);
}

/**
 * An ActorTemplate the operator pre-provisions (not made by the driver) in atespace `default`, with a wakeup
 * probe so its golden snapshot is immediate. Sandboxes may attach to it when the driver's `template_labels`
 * give it the attachable label (see attachableFlags).
 */
export function operatorTemplate(
  name: string,
  image: string,
  opts: { readyz?: boolean; atespace?: string; command?: string[]; probeTimeoutSeconds?: number } = {},
): pb.ActorTemplate {
  return pb.ActorTemplate.fromPartial({
    metadata: { atespace: opts.atespace ?? 'default', name },
    containers: [
      {
        name: 'app',
        image,
        command: opts.command ?? ['/usr/bin/node', '-e', COUNTER_JS],
        ...(opts.readyz === false ? {} : { wakeupProbe: { httpGet: { path: '/readyz', port: 80 }, timeoutSeconds: opts.probeTimeoutSeconds ?? 30 } }),
      },
    ],
    snapshotConfig: { onCommit: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, storageLocation: 'gs://local-tests/operator' },
    sandboxConfig: { sandboxClass: pb.SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' },
  });
}

/** The driver flag that makes the named operator templates attachable (v0.4 templates carry no labels). */
export function attachableFlags(...refs: string[]): Record<string, string> {
  const labels: Record<string, Record<string, string>> = {};
  for (const r of refs) labels[r.includes('/') ? r : `default/${r}`] = { 'openshell.ai/sandbox-attachable': 'true' };
  return { template_labels: JSON.stringify(labels) };
}

/** Creates an operator template through the ateapi (its atespace too) and waits for its golden tag. */
export async function provisionTemplate(env: TestEnv, t: pb.ActorTemplate, timeoutMs = 120_000): Promise<pb.ActorTemplate> {
  return provisionTemplateVia(env.ateapi, t, timeoutMs);
}

/** provisionTemplate through any ateapi client (e.g. one dialing a `serve --local` child's socket). */
export async function provisionTemplateVia(ateapi: SubstrateClient, t: pb.ActorTemplate, timeoutMs = 120_000): Promise<pb.ActorTemplate> {
  const atespace = t.metadata!.atespace;
  await ateapi.createAtespace(atespace).catch((e: { code?: number }) => {
    if (e.code !== 6) throw e;
  });
  await ateapi.createActorTemplate(t);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await ateapi.getActorTemplate({ atespace, name: t.metadata!.name });
    const g = got.status?.goldenSnapshotStatus;
    if (g?.errorMessage) throw new Error(`template ${atespace}/${t.metadata!.name} failed: ${g.errorMessage}`);
    if (g?.goldenTag?.name) return got;
    if (Date.now() > deadline) throw new Error(`template ${atespace}/${t.metadata!.name}: no golden tag`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The template a sandbox's record names (its synthesized `sbx-tpl-<hash>` one, or the pre-provisioned one). */
export function templateRefOf(env: TestEnv, sandboxId: string): pb.ObjectRef & { owned: boolean } {
  const r = env.driver.driver.records.get(sandboxId);
  if (!r) throw new Error(`no record for sandbox ${sandboxId}`);
  return { atespace: r.templateAtespace, name: r.template, owned: r.owned };
}

/** Polls `fn` until it returns a value other than undefined (conditions, not sleeps). */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
