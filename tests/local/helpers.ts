// Shared pieces of the local Substrate tests: a promise client for ateapi.Control (v0.4), a counter workload,
// its ActorTemplate, and a local Substrate in a temporary state directory. Everything here is real: gVisor,
// SQLite, gRPC, HTTP.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { execa, type ResultPromise } from 'execa';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as ateapi from '../../src/gen/ateapi.js';
import { ControlClient, type Actor } from '../../src/gen/ateapi.js';
import { listImages } from '../../src/local/images.js';
import { startLocalSubstrate, type LocalJson, type LocalSubstrateHandle, type LocalSubstrateOptions } from '../../src/local/index.js';

export type Rpc = <Res>(method: string, req: object, md?: grpc.Metadata) => Promise<Res>;

export function controlClient(target: string, creds = grpc.credentials.createInsecure(), options: Partial<grpc.ClientOptions> = {}) {
  const client = new ControlClient(target, creds, options);
  const rpc: Rpc = (method, req, md = new grpc.Metadata()) =>
    new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, Function>)[method]!.bind(client);
      // Complete the message the way a generated client's caller must (unset scalars become defaults).
      const type = (ateapi as unknown as Record<string, { fromPartial(o: object): object }>)[`${method[0]!.toUpperCase()}${method.slice(1)}Request`]!;
      fn(type.fromPartial(req), md, { deadline: Date.now() + 60_000 }, (e: grpc.ServiceError | null, res: unknown) => (e ? reject(e) : resolve(res as never)));
    });
  return { client, rpc, close: () => client.close() };
}

export async function expectCode(p: Promise<unknown>, code: grpc.status, message?: string | RegExp): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    const se = e as grpc.ServiceError;
    if (se.code !== code) throw new Error(`expected code ${grpc.status[code]}, got ${grpc.status[se.code]}: ${se.details}`);
    if (message !== undefined) {
      const ok = typeof message === 'string' ? se.details === message : message.test(se.details);
      if (!ok) throw new Error(`expected message ${String(message)}, got "${se.details}"`);
    }
    return se;
  }
  throw new Error(`expected ${grpc.status[code]}, but the call succeeded`);
}

/**
 * A Node HTTP server on port 80: /count increments an in-memory counter, /file writes and reads a file in
 * /tmp, /egress tries an outbound TCP connection, /readyz answers 200.
 */
export const COUNTER_JS = `
const http = require('http'), fs = require('fs'), net = require('net');
let n = 0; const born = Date.now();
http.createServer((q, s) => {
  if (q.url === '/readyz') return s.end('ok');
  if (q.url === '/count') { n++; return s.end(JSON.stringify({ n, born, pid: process.pid })); }
  if (q.url === '/peek') return s.end(JSON.stringify({ n, born }));
  if (q.url.startsWith('/write')) { fs.writeFileSync('/tmp/note', 'kept-' + n); return s.end('written'); }
  if (q.url === '/read') { try { return s.end(fs.readFileSync('/tmp/note', 'utf8')); } catch (e) { return s.end('missing'); } }
  if (q.url === '/egress') {
    const t0 = Date.now();
    const c = net.connect(80, '203.0.113.7');
    c.setTimeout(5000, () => { c.destroy(); s.end(JSON.stringify({ blocked: true, code: 'TIMEOUT', ms: Date.now() - t0 })); });
    c.on('connect', () => { c.destroy(); s.end(JSON.stringify({ blocked: false, ms: Date.now() - t0 })); });
    c.on('error', (e) => s.end(JSON.stringify({ blocked: true, code: e.code, ms: Date.now() - t0 })));
    return;
  }
  s.end('hello');
}).listen(80);
`;

export async function defaultImageRef(stateDir: string): Promise<string> {
  const imgs = await listImages(stateDir);
  const node = imgs.find((i) => i.name === 'node');
  if (!node) throw new Error('default image missing');
  return node.ref;
}

/** The counter workload's ActorTemplate (v0.4), in `atespace`; a wakeup probe on /readyz unless `probe: false`. */
export function counterTemplate(atespace: string, name: string, image: string, opts: { probe?: boolean; limits?: boolean } = {}): ateapi.ActorTemplate {
  return ateapi.ActorTemplate.fromPartial({
    metadata: { atespace, name },
    containers: [
      {
        name: 'app',
        image,
        command: ['/usr/bin/node', '-e', COUNTER_JS],
        env: [{ name: 'GREETING', value: 'hi' }],
        ...(opts.probe === false ? {} : { wakeupProbe: { httpGet: { path: '/readyz', port: 80 }, timeoutSeconds: 30 } }),
      },
    ],
    snapshotConfig: { onCommit: ateapi.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, storageLocation: 'gs://local-tests/snapshots' },
    sandboxConfig: { sandboxClass: ateapi.SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' },
    ...(opts.limits === false ? {} : { resources: { limits: [{ name: 'memory', quantity: '256Mi' }] } }),
  });
}

/** Creates the atespace if missing. */
export async function ensureAtespace(rpc: Rpc, name: string): Promise<void> {
  try {
    await rpc('createAtespace', { atespace: { metadata: { name } } });
  } catch (e) {
    if ((e as grpc.ServiceError).code !== grpc.status.ALREADY_EXISTS) throw e;
  }
}

/** Polls GetActorTemplate until its golden tag is set; throws on a terminal error_message or the timeout. */
export async function waitGolden(rpc: Rpc, atespace: string, name: string, timeoutMs = 120_000): Promise<ateapi.ActorTemplate> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const t = await rpc<ateapi.ActorTemplate>('getActorTemplate', { actorTemplate: { atespace, name } });
    const g = t.status?.goldenSnapshotStatus;
    if (g?.errorMessage) throw new Error(`template ${atespace}/${name} failed: ${g.errorMessage}`);
    if (g?.goldenTag?.name) return t;
    if (Date.now() > deadline) throw new Error(`template ${atespace}/${name} has no golden tag after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Atespace + counter template + its golden snapshot; returns the template. */
export async function counterSetup(rpc: Rpc, atespace: string, name: string, stateDir: string, opts: { probe?: boolean; wait?: boolean } = {}): Promise<ateapi.ActorTemplate> {
  await ensureAtespace(rpc, atespace);
  const t = await rpc<ateapi.ActorTemplate>('createActorTemplate', { actorTemplate: counterTemplate(atespace, name, await defaultImageRef(stateDir), opts) });
  return opts.wait === false ? t : waitGolden(rpc, atespace, name);
}

/** GET through the router, addressed by the `ate-target-actor` header (or by the local Host form with `host: true`). */
export async function viaRouter(routerUrl: string, atespace: string, actor: string, path: string, opts: { host?: boolean } = {}): Promise<{ status: number; body: string }> {
  const u = new URL(routerUrl);
  const http = await import('node:http');
  const headers: Record<string, string> = opts.host ? { host: `${actor}.${atespace}.actors.resources.substrate.ate.dev` } : { 'ate-target-actor': `${atespace}/${actor}` };
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path, headers, timeout: 60_000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

export interface TestSubstrate {
  h: LocalSubstrateHandle;
  rpc: Rpc;
  stateDir: string;
  restart(opts?: Partial<LocalSubstrateOptions>): Promise<void>;
  close(): Promise<void>;
}

export async function startTestSubstrate(opts: Partial<LocalSubstrateOptions> = {}): Promise<TestSubstrate> {
  const stateDir = opts.stateDir ?? mkdtempSync(join(tmpdir(), 'sdl-test-'));
  // A short golden warm-up keeps template tests quick; the counter template's wakeup probe makes it moot anyway.
  const base: LocalSubstrateOptions = { stateDir, workers: 2, routerListen: '127.0.0.1:0', goldenWarmupMs: 500, ...opts };
  let h = await startLocalSubstrate(base);
  let c = controlClient(h.apiEndpoint);
  const t: TestSubstrate = {
    get h() {
      return h;
    },
    rpc: (m, r, md) => c.rpc(m, r, md),
    stateDir,
    async restart(more = {}) {
      c.close();
      await h.stop();
      h = await startLocalSubstrate({ ...base, ...more });
      c = controlClient(h.apiEndpoint);
    },
    async close() {
      c.close();
      await h.stop();
      if (!opts.stateDir) rmSync(stateDir, { recursive: true, force: true });
    },
  } as TestSubstrate;
  return t;
}

export type { Actor };

const BIN = join(import.meta.dirname, '../../bin/substrate-driver.js');

/** `substrate-driver local serve` as a child process (for tests that kill it), without waiting for it. */
export function spawnLocalServe(stateDir: string, opts: { workers?: number; logLevel?: string } = {}): ResultPromise {
  return execa('node', [BIN, 'local', 'serve', '--state-dir', stateDir, '--router-listen', '127.0.0.1:0', '--workers', String(opts.workers ?? 1), '--log-level', opts.logLevel ?? 'warn'], {
    reject: false,
    stdin: 'ignore',
  });
}

/** spawnLocalServe, then waits for local.json naming the new process; `ms` is how long that took. */
export async function serveLocal(stateDir: string, opts: { workers?: number; logLevel?: string } = {}): Promise<{ proc: ResultPromise; info: LocalJson; ms: number }> {
  const t0 = Date.now();
  const proc = spawnLocalServe(stateDir, opts);
  const file = join(stateDir, 'local.json');
  for (let i = 0; i < 1200; i++) {
    if (existsSync(file)) {
      const info = JSON.parse(readFileSync(file, 'utf8')) as LocalJson;
      if (info.pid === proc.pid) return { proc, info, ms: Date.now() - t0 };
    }
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  proc.kill('SIGKILL');
  throw new Error(`local serve did not start: ${(await proc).stderr}`);
}
