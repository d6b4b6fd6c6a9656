// Shared pieces of the gateway integration tests: the counting workload, the operator's pre-provisioned template and
// DriverSandbox messages built the way each gateway generation builds them.
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { expect } from 'vitest';
import type { DriverSandbox } from '../../../src/gen/compute_driver.js';
import * as pb from '../../../src/gen/ateapi.js';
import { SubstrateClient } from '../../../src/substrate/client.js';
import { DRIVER_BIN, readLocalJson, routerRequest, type GatewayGeneration, type GatewayRow } from './harness.js';

/** A workload keeping a request counter in memory; /env reports the supervisor environment (the token only hashed). */
export const COUNTER_JS = `
const http = require('http'), crypto = require('crypto');
let n = 0;
http.createServer((q, s) => {
  if (q.url === '/readyz') return s.end('ok');
  if (q.url === '/count') { n++; return s.end(JSON.stringify({ n })); }
  if (q.url === '/env') {
    const e = process.env, tok = e.OPENSHELL_SANDBOX_TOKEN;
    return s.end(JSON.stringify({ id: e.OPENSHELL_SANDBOX_ID, name: e.OPENSHELL_SANDBOX,
      tokenSha: tok ? crypto.createHash('sha256').update(tok).digest('hex') : null }));
  }
  s.end('hello');
}).listen(80);
`;
export const TEMPLATE = 'gw-counter';
/** The labels the operator gives the pre-provisioned template: attachable by workspace "default" (default policy). */
export const TEMPLATE_LABELS = { 'openshell.ai/sandbox-attachable': 'true', 'openshell.ai/sandbox-attachable-workspace': 'default' };
/**
 * `serve` flags that give the operator's template its labels: Substrate v0.4 templates carry none, so the driver's
 * template_labels config is where an operator marks one attachable.
 */
export const TEMPLATE_LABEL_ARGS: readonly string[] = ['--template-labels', JSON.stringify({ [`default/${TEMPLATE}`]: TEMPLATE_LABELS })];
/** The template annotation a v0.1 user names a pre-provisioned ActorTemplate with (src/driver/driver.ts TEMPLATE_ANNOTATION). */
export const TEMPLATE_ANNOTATION = 'substrate_actor_template';
export const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/**
 * A DriverSandbox as the gateway's driver_sandbox_from_public builds it. `preProvisioned`: name the operator's template —
 * a 0.0.x user through template.driver_config.actor_template, a v0.1 user (allow_driver_config = false) through the
 * sandbox template annotation in platform_config.annotations.
 */
export function gatewaySandbox(o: { name: string; image: string; generation: GatewayGeneration; token?: string; preProvisioned?: boolean; workspace?: string }): DriverSandbox {
  const pre = o.preProvisioned ?? false;
  return {
    id: randomUUID(),
    name: o.name,
    namespace: '',
    workspace: o.workspace ?? 'default',
    spec: {
      logLevel: '',
      environment: {},
      template: {
        image: o.image,
        agentSocketPath: '',
        labels: {},
        environment: {},
        // Only the inner object of template.driver_config.substrate reaches the driver.
        driverConfig: pre && o.generation === 'v0.0' ? { actor_template: TEMPLATE } : undefined,
        platformConfig: pre && o.generation === 'v0.1' ? { annotations: { [TEMPLATE_ANNOTATION]: TEMPLATE } } : undefined,
      },
      resourceRequirements: undefined,
      sandboxToken: o.token ?? '',
      command: ['/usr/bin/node', '-e', COUNTER_JS],
      tty: false,
      awaitMainProcessAttachment: false,
      launchAuthentication: Buffer.alloc(0),
    },
  };
}

/** An ateapi client on the local Substrate's owner-only Unix socket (named in <state-dir>/local.json; no token). */
export function ateapiFor(stateDir: string): SubstrateClient {
  return new SubstrateClient({ endpoint: `unix:${readLocalJson(stateDir).socket_path}`, plaintext: true });
}

/**
 * The operator's pre-provisioned template (an ActorTemplate created through the ateapi, with a wakeup probe so its
 * golden snapshot is immediate), attachable by workspace "default" once the driver runs with TEMPLATE_LABEL_ARGS.
 * Resolves when its golden tag exists.
 */
export async function operatorTemplate(stateDir: string, image: string): Promise<void> {
  const api = ateapiFor(stateDir);
  try {
    await api.ensureAtespace('default');
    await api.createActorTemplate(
      pb.ActorTemplate.fromPartial({
        metadata: { atespace: 'default', name: TEMPLATE },
        containers: [{ name: 'app', image, command: ['/usr/bin/node', '-e', COUNTER_JS], wakeupProbe: { httpGet: { path: '/readyz', port: 80 }, timeoutSeconds: 30 } }],
        snapshotConfig: { onCommit: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, storageLocation: 'gs://local-tests/operator' },
        sandboxConfig: { sandboxClass: pb.SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' },
      }),
    );
    const deadline = Date.now() + 120_000;
    for (;;) {
      const g = (await api.getActorTemplate({ atespace: 'default', name: TEMPLATE })).status?.goldenSnapshotStatus;
      if (g?.errorMessage) throw new Error(`operator template ${TEMPLATE}: golden snapshot failed: ${g.errorMessage}`);
      if (g?.goldenTag?.name) return;
      if (Date.now() > deadline) throw new Error(`operator template ${TEMPLATE}: no golden tag after 120 s`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    api.close();
  }
}

/** The workload's in-memory counter, incremented by this request. */
export async function count(stateDir: string, row: GatewayRow): Promise<number> {
  const r = await routerRequest(readLocalJson(stateDir).router_url, row.id, row.workspace, '/count');
  expect(r.status).toBe(200);
  return (JSON.parse(r.body) as { n: number }).n;
}

/** `substrate-driver local serve` as its own process (the driver finds it through <state-dir>/local.json). */
export class LocalSubstrateProcess {
  stderr = '';
  private proc?: ResultPromise<{ reject: false; stdin: 'ignore'; stdout: 'pipe'; stderr: 'pipe'; buffer: false }>;

  constructor(readonly stateDir: string) {}

  async start(): Promise<void> {
    const f = join(this.stateDir, 'local.json');
    const before = existsSync(f) ? readFileSync(f, 'utf8') : '';
    const p = execa(
      process.execPath,
      [DRIVER_BIN, 'local', 'serve', '--state-dir', this.stateDir, '--workers', '2', '--router-listen', '127.0.0.1:0', '--log-level', 'warn'],
      { reject: false, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', buffer: false, cleanup: true },
    );
    this.proc = p;
    p.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    const deadline = Date.now() + 90_000;
    for (;;) {
      if (existsSync(f)) {
        const text = readFileSync(f, 'utf8');
        if (text !== before && (JSON.parse(text) as { pid: number }).pid === p.pid) return;
      }
      if (p.exitCode !== null) throw new Error(`local serve exited: ${this.stderr.slice(-1500)}`);
      if (Date.now() > deadline) throw new Error(`local serve did not start: ${this.stderr.slice(-1500)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGTERM and wait: the exit code (0 = clean). */
  async stop(): Promise<number | null | undefined> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return p?.exitCode;
    p.kill('SIGTERM');
    return (await p).exitCode;
  }
}
