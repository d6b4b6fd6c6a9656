// The driver next to a SEPARATELY run local Substrate (`substrate-driver local serve`), found through
// <state-dir>/local.json, with the local Substrate restarted under the running driver. The gateway is the
// stand-in of harness.ts (the OpenShell gateway cannot run here; it implements the gateway's rules from
// shared/reference/compute-driver.md). Everything else is real processes: the local Substrate on gVisor, the
// driver binary, and a counting workload reached through the router.
//
// The reconcile period is 2 s instead of the gateway's 60 s; the rules are the gateway's, only the clock is faster.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DriverSandbox } from '../../../src/gen/compute_driver.js';
import { kubeConfigFor, kubeTemplateStore } from '../../../src/template/store.js';
import { kubeAccessOf } from '../../../src/local/index.js';
import { DRIVER_BIN, DriverProcess, Gateway, GatewayError, readLocalJson, routerRequest, routerSupervisor, type GatewayRow } from './harness.js';

const COUNTER_JS = `
const http = require('http');
let n = 0;
http.createServer((q, s) => {
  if (q.url === '/readyz') return s.end('ok');
  if (q.url === '/count') { n++; return s.end(JSON.stringify({ n })); }
  s.end('hello');
}).listen(80);
`;
const PAUSE = 'registry.k8s.io/pause:3.10@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a';
const TEMPLATE = 'gw-counter';

type LocalProc = ResultPromise<{ reject: false; stdin: 'ignore'; stdout: 'pipe'; stderr: 'pipe'; buffer: false }>;

describe('gateway stand-in with a separately run local Substrate that restarts under the driver', () => {
  let dir: string;
  let stateDir: string;
  let socketPath: string;
  let local: LocalProc | undefined;
  let localErr = '';
  let driver: DriverProcess;
  let gw: Gateway;
  let x: GatewayRow;

  async function startLocal(): Promise<void> {
    const before = existsSync(join(stateDir, 'local.json')) ? readFileSync(join(stateDir, 'local.json'), 'utf8') : '';
    const p = execa(
      process.execPath,
      [DRIVER_BIN, 'local', 'serve', '--state-dir', stateDir, '--workers', '2', '--router-listen', '127.0.0.1:0', '--log-level', 'warn'],
      { reject: false, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', buffer: false, cleanup: true },
    );
    local = p;
    p.stderr.on('data', (d: Buffer) => (localErr += d.toString()));
    const deadline = Date.now() + 90_000;
    for (;;) {
      const f = join(stateDir, 'local.json');
      if (existsSync(f)) {
        const text = readFileSync(f, 'utf8');
        if (text !== before && (JSON.parse(text) as { pid: number }).pid === p.pid) return;
      }
      if (p.exitCode !== null) throw new Error(`local serve exited: ${localErr.slice(-1500)}`);
      if (Date.now() > deadline) throw new Error(`local serve did not start: ${localErr.slice(-1500)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function stopLocal(): Promise<number | null | undefined> {
    const p = local;
    if (!p || p.exitCode !== null) return p?.exitCode;
    p.kill('SIGTERM');
    const r = await p;
    return r.exitCode;
  }

  async function count(row: GatewayRow): Promise<number> {
    const r = await routerRequest(readLocalJson(stateDir).router_url, row.id, row.workspace, '/count');
    expect(r.status).toBe(200);
    return (JSON.parse(r.body) as { n: number }).n;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gw-ext-'));
    stateDir = join(dir, 'state');
    mkdirSync(stateDir, { mode: 0o700 });
    mkdirSync(join(dir, 'sock'), { mode: 0o700 });
    socketPath = join(dir, 'sock', 'driver.sock');
    await startLocal();
    // No --local and no --api-endpoint: the driver finds the local Substrate through <state-dir>/local.json.
    driver = await DriverProcess.start({ socketPath, stateDir, local: false, extraArgs: ['--log-level', 'warn'] });
    gw = new Gateway({ socketPath, reconcileIntervalMs: 2000, orphanGraceMs: 15_000, supervisor: routerSupervisor(stateDir) });
    await gw.start();
    const image = gw.capabilities!.defaultImage;
    const store = kubeTemplateStore(kubeConfigFor(kubeAccessOf(readLocalJson(stateDir))));
    await store.apply({
      apiVersion: 'ate.dev/v1alpha1',
      kind: 'ActorTemplate',
      metadata: { name: TEMPLATE, namespace: 'default', labels: { 'openshell.ai/sandbox-attachable': 'true' } },
      spec: {
        pauseImage: PAUSE,
        containers: [{ name: 'app', image, command: ['/usr/bin/node', '-e', COUNTER_JS], readyz: { httpGet: { path: '/readyz', port: 80 } } }],
        snapshotsConfig: { location: 'file:///unused/' },
      },
    } as never);
    await store.waitReady('default', TEMPLATE, 120_000);
    const sb: DriverSandbox = {
      id: randomUUID(),
      name: 'xray',
      namespace: '',
      workspace: 'default',
      spec: {
        logLevel: '',
        environment: {},
        template: { image, agentSocketPath: '', labels: {}, environment: {}, driverConfig: { actor_template: TEMPLATE } },
        sandboxToken: '',
        command: ['/usr/bin/node', '-e', COUNTER_JS],
        tty: false,
      },
    };
    x = await gw.createSandbox(sb);
    await gw.waitPhase(sb.id, 'READY', 60_000);
  }, 300_000);

  afterAll(async () => {
    await gw?.stop();
    await driver?.stop();
    await stopLocal();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('keeps the sandbox through a local Substrate restart: no ERROR, memory kept, stop and start still work', async () => {
    const n = await count(x);
    const w0 = gw.warnings.length;
    expect(await stopLocal()).toBe(0);

    // While the local Substrate is down: a user's stop fails with the driver's code and recovery through
    // GetSandbox is inconclusive, so the row stays STOPPING (the gateway retries it); reconcile sweeps abort.
    const err = await gw.stopSandbox(x.id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe(status.UNAVAILABLE);
    expect((err as GatewayError).message).toMatch(/^stop sandbox failed: /);
    expect(x.phase).toBe('STOPPING');
    const down = await gw.reconcileOnce();
    expect(down.aborted).toMatch(/GetSandbox|ListSandboxes/);

    await startLocal();
    // Back up: the driver reconnects on its own; its snapshots say resumable (suspended at shutdown), which
    // keeps a STOPPING row STOPPING until the stop completes.
    await gw.waitFor('a snapshot from the restarted local Substrate', () => x.backendPhase === 'PROVISIONING', 30_000);
    expect(x.phase).toBe('STOPPING');
    // The stop is retried (allowed from STOPPING) and completes.
    await gw.stopSandbox(x.id);
    expect(x.phase).toBe('STOPPED');
    await gw.startSandbox(x.id);
    await gw.waitPhase(x.id, 'READY', 60_000);
    expect(await count(x)).toBe(n + 1);
    expect(x.history).not.toContain('ERROR');
    console.info(`[gateway] warnings while the local Substrate restarted: ${gw.warnings.slice(w0).length}`);
  }, 300_000);

  it('deletes the sandbox after the restart', async () => {
    expect(await gw.deleteSandbox(x.id)).toBe(true);
    await gw.waitGone(x.id, 30_000);
    expect(x.history).not.toContain('ERROR');
  });
});
