// Benchmark suite "driver": the ComputeDriver (src/driver) as the OpenShell gateway sees it, measured side by side
// with ateapi called directly, in one run:
//   1. Overhead per unary RPC: GetSandbox through the driver's Unix socket vs GetActor straight to ateapi (same
//      actor), ListSandboxes vs ListActors, and GetCapabilities (no backend call): p50 and p99 over many calls.
//   2. ListSandboxes and the WatchSandboxes bootstrap over N sandboxes (default 10,000): time, encoded response
//      size against the gateway's 4 MiB limit, the driver's RSS, its restart time and idle CPU.
//   3. Watch latency: from an actor's state change made directly on ateapi (SuspendActor / ResumeActor, outside
//      the gateway) to the matching sandbox event on an open WatchSandboxes stream.
//   4. The OpenShell v0.1 gateway's hot path (reference openshell-v0.1.md §2.5: before every ValidateSandboxCreate,
//      CreateSandbox and StartSandbox it calls GetCapabilities with its PeerMetadata again and compares
//      resource_admission_policy byte for byte with its startup answer), side by side in the same run:
//      GetCapabilities as a 0.0.x gateway calls it (no metadata) vs as v0.1 does (metadata, negotiated);
//      ValidateSandboxCreate alone vs with the re-check (p50/p99 over --calls calls, like part 1); and
//      CreateSandbox alone vs with the re-check (--creates per side per run, alternating), each created sandbox
//      naming the pre-provisioned template through platform_config.annotations.substrate_actor_template (a v0.1
//      gateway forbids caller driver_config by default) and deleted again at once (DeleteSandbox, awaited), so no
//      provisioning runs behind later calls and nothing is left. Every GetCapabilities states its generation,
//      and the driver is put back to 0.0.x (the generation the other parts are measured in) afterwards.
//
// Three processes, each the real thing: the local Substrate (`substrate-driver local serve`: Substrate v0.4's
// ateapi.Control on real gVisor, on the instance's Unix socket, its router), the driver (`substrate-driver serve`,
// finding that Substrate through <state-dir>/local.json, so the driver's RSS is its own), and this process as the
// gateway-side client. The N sandboxes are NOT created through CreateSandbox (that would resume N gVisor actors):
// the backend is populated the way the driver's own state looks after N creates whose actors are now suspended
// (ateapi CreateActor → SUSPENDED actors of one pre-provisioned template, borrowing its golden snapshot, plus the
// driver's per-sandbox records written through the driver's own RecordStore into its SQLite file
// <state-dir>/driver.db), while the driver is stopped; it is started AFTER that, so it loads them as it does after
// a restart. Everything lives in a temporary directory and is removed afterwards, on failure and on Ctrl-C too.
import { randomBytes, randomUUID } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { childEnv, spawnOptions } from '../src/common/child-env.mjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadConfig } from '../src/common/config.js';
import { setLogLevel } from '../src/common/log.js';
import * as ateapiPb from '../src/gen/ateapi.js';
import { ActorState, ActorTemplate, ControlClient, SandboxClass, SnapshotContentScope, type Actor, type ListActorsResponse } from '../src/gen/ateapi.js';
import {
  ComputeDriverClient,
  ListSandboxesResponse,
  type DriverSandbox,
  type GetCapabilitiesResponse,
  type WatchSandboxesEvent,
} from '../src/gen/compute_driver.js';
import type { PeerMetadata } from '../src/gen/extension.js';
import { TEMPLATE_ANNOTATION } from '../src/driver/driver.js';
import type { Generation } from '../src/driver/generations.js';
import { derivePhase } from '../src/driver/conditions.js';
import { RecordStore, stripToken, type SandboxRecord } from '../src/driver/records.js';
import { SqliteRecordBackend } from '../src/driver/record-backends.js';
import { readLocalJson, type LocalJson } from '../src/local/index.js';
import { ensureDefaultImage } from '../src/local/images.js';
import { removeInstanceLeftovers, runscPidsOf } from '../src/local/runtime/gvisor.js';
import { listNetns } from '../src/local/runtime/netns.js';
import { instancePaths } from '../src/local/runtime/paths.js';
import {
  type BenchOptions,
  type SuiteOption,
  type Table,
  MiB,
  fmt,
  idleCpuPercent,
  intFlag,
  isInterrupted,
  loadAverage,
  median,
  memoryOf,
  onCleanup,
  sleep,
  timed,
  UsageError,
  finishSuite,
} from './lib.js';

export const description =
  'the ComputeDriver: unary overhead vs ateapi direct, GetCapabilities by gateway generation and the v0.1 admission re-check (Validate, Create), ListSandboxes/watch bootstrap over N sandboxes, watch latency';
export const options: SuiteOption[] = [
  { name: 'sandboxes', arg: 'N', help: 'sandboxes for ListSandboxes and the watch bootstrap (default 10000, 2000 with --quick)' },
  { name: 'calls', arg: 'N', help: 'calls per unary RPC per run for the overhead figures (default 1000, 500 with --quick)' },
  { name: 'changes', arg: 'N', help: 'actor state changes timed for watch latency (default 20, 10 with --quick)' },
  { name: 'creates', arg: 'N', help: 'CreateSandbox calls per side per run, with and without the v0.1 admission re-check (default 20, 10 with --quick)' },
  { name: 'poll-interval-ms', arg: 'MS', help: "the driver's poll_interval_ms (default: the driver's default, 500)" },
];

const BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'substrate-driver.js');
/** Workspace of every sandbox (= the atespace of its actor, and of the template: v0.4 keeps both in one atespace). */
const WORKSPACE = 'bench';
/** The operator's pre-provisioned ActorTemplate every sandbox names through driver_config.actor_template. */
const TEMPLATE = 'bench-drv';
const TEMPLATE_REF = `${WORKSPACE}/${TEMPLATE}`;
/** v0.4 templates carry no labels: the operator makes the template attachable in the driver's config. */
const TEMPLATE_LABELS = JSON.stringify({ [TEMPLATE_REF]: { 'openshell.ai/sandbox-attachable': 'true' } });
/** Sandboxes of the small population (parts 1 and 3 before the big one): one running, the rest suspended. */
const FEW = 5;
const BLOCK = 100;
const WARMUP = 200;
/** Untimed calls after a gateway-generation switch before a block's timed calls (the switch's after-effects). */
const SWITCH_SETTLE = 5;
/** Idle pause after each DeleteSandbox of part 4, so the backend's own follow-up work does not overlap the next create. */
const CREATE_SETTLE_MS = 100;

/** The workload: an HTTP server on port 80 that answers /readyz (so the golden snapshot is taken at once). */
const SERVER_JS = `
const http = require('http');
let n = 0;
http.createServer((q, s) => {
  if (q.url === '/readyz') return s.end('ok');
  n++; s.end(JSON.stringify({ n }));
}).listen(80);
`;

function operatorTemplate(image: string): ActorTemplate {
  return ActorTemplate.fromPartial({
    metadata: { atespace: WORKSPACE, name: TEMPLATE },
    containers: [{ name: 'app', image, command: ['/usr/bin/node', '-e', SERVER_JS], wakeupProbe: { httpGet: { path: '/readyz', port: 80 }, timeoutSeconds: 30 } }],
    snapshotConfig: { onCommit: SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, storageLocation: 'gs://bench/driver' },
    sandboxConfig: { sandboxClass: SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' },
  });
}

/**
 * The PeerMetadata an OpenShell v0.1 gateway sends in GetCapabilitiesRequest.gateway (gateway_metadata(Compute),
 * reference openshell-v0.1.md §2.2), at implementation version 0.1.9.
 */
const V01_GATEWAY: PeerMetadata = {
  protocolVersion: { major: 1, minor: 0 },
  implementationName: 'openshell/gateway',
  implementationVersion: '0.1.9',
  supportedCapabilities: ['openshell.compute.contract', 'openshell.compute.launch-authentication'],
  requiredCapabilities: ['openshell.compute.contract'],
};

/** A GetCapabilitiesRequest of one gateway generation: v0.1 sends its metadata, 0.0.x sends none. */
const capsRequest = (g: Generation) => (g === 'v0.1' ? { gateway: V01_GATEWAY } : {});

/** A stand-in for the gateway's sandbox JWT: random, JWT-sized, never printed. */
function fakeToken(): string {
  const b = (n: number) => randomBytes(n).toString('base64url');
  return `${b(27)}.${b(300)}.${b(64)}`;
}

/** A DriverSandbox as the gateway sends it in CreateSandbox, naming the pre-provisioned template. */
function gatewaySandbox(id: string, name: string, image: string, token: string): DriverSandbox {
  return {
    id,
    name,
    namespace: '',
    workspace: WORKSPACE,
    spec: {
      logLevel: 'info',
      environment: { APP_MODE: 'bench', LANG: 'C.UTF-8' },
      template: {
        image,
        agentSocketPath: '',
        labels: { 'openshell.ai/bench': 'driver' },
        environment: {},
        driverConfig: { actor_template: TEMPLATE_REF },
        platformConfig: undefined,
      },
      resourceRequirements: undefined,
      sandboxToken: token,
      command: ['/usr/bin/node', '-e', SERVER_JS],
      tty: false,
      awaitMainProcessAttachment: false,
      launchAuthentication: Buffer.alloc(0),
    },
  };
}

/**
 * A DriverSandbox as a v0.1 gateway sends it in ValidateSandboxCreate / CreateSandbox: spec.workload_identity
 * always present (empty user and group), no caller driver_config (forbidden by default), the pre-provisioned
 * template named by the annotation substrate_actor_template in platform_config.
 */
function v01Sandbox(id: string, name: string, image: string, token: string): DriverSandbox {
  const sb = gatewaySandbox(id, name, image, token);
  return {
    ...sb,
    spec: {
      ...sb.spec!,
      template: { ...sb.spec!.template!, driverConfig: undefined, platformConfig: { annotations: { [TEMPLATE_ANNOTATION]: TEMPLATE_REF } } },
      workloadIdentity: { user: '', group: '' },
    },
  };
}

/** The machine, for result titles (the full facts are in the Machine table run.ts prints). */
function machineName(opts: BenchOptions): string {
  const m = opts.machine;
  return `${m.CPU}, ${m.cores} cores, ${m.memory}`;
}

function machineNote(opts: BenchOptions): string {
  const m = opts.machine;
  return `Machine: ${m.CPU}, ${m.cores} cores, ${m.memory} memory, ${m.kernel}, Node ${m.node}; the Machine table above has every fact (load average included).`;
}

// ---- statistics ------------------------------------------------------------------------------------------------

/** Nearest-rank percentile. */
function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

const ms2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '–');

// ---- child processes -------------------------------------------------------------------------------------------

/** A `substrate-driver` child in its own process group (a terminal's Ctrl-C reaches only us; we stop it in order). */
class Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<number | null>;
  exitCode: number | null | undefined;
  private out = '';

  constructor(
    readonly what: string,
    args: string[],
    readonly logFile: string,
  ) {
    // The bench sets every driver setting it relies on by flag; no OPENSHELL_SUBSTRATE_* of the user's leaks in.
    const env = childEnv({ pass: ['XDG_STATE_HOME', 'SUBSTRATE_RUNSC', 'SUBSTRATE_LOG_LEVEL'] });
    const fd = fs.openSync(logFile, 'a', 0o600);
    try {
      this.proc = spawn(process.execPath, [BIN, ...args], spawnOptions({ detached: true, stdio: ['ignore', 'pipe', fd] as ['ignore', 'pipe', number], env }));
    } finally {
      fs.closeSync(fd);
    }
    this.proc.stdout!.setEncoding('utf8');
    this.proc.stdout!.on('data', (d: string) => {
      this.out += d;
      fs.appendFileSync(logFile, d);
    });
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, sig) => resolve((this.exitCode = code ?? (sig ? 128 : null)))));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get alive(): boolean {
    return this.exitCode === undefined;
  }

  /** The first stdout line (`serve` prints one JSON line once its socket is bound). */
  async firstLine(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.out.indexOf('\n');
      if (i >= 0) return this.out.slice(0, i);
      if (!this.alive) throw new Error(`${this.what} exited (${this.exitCode}) before it was ready: ${this.tail()}`);
      if (Date.now() > deadline) throw new Error(`${this.what} not ready after ${timeoutMs / 1000} s: ${this.tail()}`);
      if (isInterrupted()) throw new Error('interrupted');
      await sleep(10);
    }
  }

  tail(lines = 8): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-lines).join(' | ') || '(no output)';
    } catch {
      return '(no log)';
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  async stop(graceMs: number): Promise<number | null> {
    if (!this.alive) return this.exitCode ?? null;
    try {
      process.kill(this.pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    const timer = new Promise<'late'>((r) => setTimeout(() => r('late'), graceMs).unref());
    if ((await Promise.race([this.exited, timer])) === 'late') {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      await this.exited;
    }
    return this.exitCode ?? null;
  }
}

/** VmHWM (peak resident set) of a process, in bytes. */
function peakRss(pid: number): number {
  try {
    return Number(/^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) * 1024;
  } catch {
    return NaN;
  }
}

/** The process and all its descendants. */
function treeOf(root: number): number[] {
  const parent = new Map<number, number>();
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const s = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      parent.set(Number(e), Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      /* exited */
    }
  }
  const out = new Set([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [p, pp] of parent) {
      if (!out.has(p) && out.has(pp)) {
        out.add(p);
        grew = true;
      }
    }
  }
  return [...out];
}

/** Prometheus text → value by series (name{labels}). */
async function scrape(metricsAddr: string): Promise<Map<string, number>> {
  const r = await fetch(`http://${metricsAddr}/metrics`);
  if (!r.ok) throw new Error(`driver /metrics answered HTTP ${r.status}`);
  const out = new Map<string, number>();
  for (const line of (await r.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Mean (ms) of a driver histogram series between two scrapes, and how many observations it covers. */
function histMean(a: Map<string, number>, b: Map<string, number>, metric: string, method: string): { ms: number; n: number } {
  const key = (suffix: string) => `substrate_driver_${metric}_${suffix}{method="${method}",code="OK"}`;
  const n = (b.get(key('count')) ?? 0) - (a.get(key('count')) ?? 0);
  const sum = (b.get(key('sum')) ?? 0) - (a.get(key('sum')) ?? 0);
  return { ms: n > 0 ? (sum / n) * 1000 : NaN, n };
}

const HEAP_USED = 'substrate_driver_nodejs_heap_size_used_bytes';

// ---- gRPC clients ----------------------------------------------------------------------------------------------

type Unary = <Res>(method: string, req: object, deadlineMs?: number) => Promise<Res>;

/**
 * Promise form of a generated client's unary methods. With `messages` (a generated module), each request is
 * completed with its `<Method>Request.fromPartial` first, as a generated client's caller must (unset int64 and
 * nested fields get their defaults).
 */
function unaryOf(client: grpc.Client, messages?: object): Unary {
  return (method, req, deadlineMs = 60_000) =>
    new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, Function>)[method]!;
      const type = messages ? (messages as Record<string, { fromPartial(o: object): object }>)[`${method[0]!.toUpperCase()}${method.slice(1)}Request`] : undefined;
      fn.call(client, type ? type.fromPartial(req) : req, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (e: grpc.ServiceError | null, r: unknown) =>
        e ? reject(Object.assign(new Error(`${method}: ${grpc.status[e.code]} ${e.details}`), { code: e.code })) : resolve(r as never),
      );
    });
}

interface Clients {
  /** The generated ComputeDriverClient on the driver's socket, with no receive limit (sizes are measured). */
  driverRaw: ComputeDriverClient;
  driver: Unary;
  /** The generated ControlClient straight to ateapi. */
  ateapiRaw: InstanceType<typeof ControlClient>;
  ateapi: Unary;
}

/** A WatchSandboxes stream with the arrival time of every event. */
class WatchLog {
  readonly events: Array<{ t: number; ev: WatchSandboxesEvent }> = [];
  error?: Error;
  private wake?: () => void;
  private readonly stream: grpc.ClientReadableStream<WatchSandboxesEvent>;
  private cancelled = false;

  constructor(client: ComputeDriverClient) {
    this.stream = client.watchSandboxes({});
    this.stream.on('data', (ev: WatchSandboxesEvent) => {
      this.events.push({ t: performance.now(), ev });
      this.wake?.();
    });
    this.stream.on('error', (e: grpc.ServiceError) => {
      if (!this.cancelled) this.error = new Error(`watch stream ended: ${grpc.status[e.code]} ${e.details}`);
      this.wake?.();
    });
    this.stream.on('end', () => {
      if (!this.cancelled) this.error ??= new Error('watch stream ended');
      this.wake?.();
    });
  }

  /** Index of the first event at or after `from` that matches, waiting up to `timeoutMs`. */
  async waitFor(from: number, pred: (sb: DriverSandbox) => boolean, timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    let i = from;
    for (;;) {
      for (; i < this.events.length; i++) {
        const p = this.events[i]!.ev.payload;
        if (p?.$case === 'sandbox' && p.value.sandbox && pred(p.value.sandbox)) return i;
      }
      if (this.error) throw this.error;
      if (performance.now() > deadline) throw new Error(`no matching watch event within ${timeoutMs} ms`);
      if (isInterrupted()) throw new Error('interrupted');
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
    }
  }

  cancel(): void {
    this.cancelled = true;
    this.stream.cancel();
  }
}

const readyOf = (sb: DriverSandbox) => sb.status?.conditions.find((c) => c.type === 'Ready');

// ---- the suite -------------------------------------------------------------------------------------------------

interface Ctx {
  opts: BenchOptions;
  tmp: string;
  subDir: string;
  socket: string;
  lj: LocalJson;
  image: string;
  c: Clients;
  /** Every sandbox the driver should know: id → name. */
  expected: Map<string, string>;
  /** The one running sandbox (created through CreateSandbox). */
  live: { id: string; name: string };
  pollMs: number;
  pollFlag?: number;
  /** resource_admission_policy the driver must answer (its config's acknowledgement; the bench's config = its). */
  ack: string;
  /** The gateway generation the bench's last GetCapabilities told the driver (undefined: not known). */
  gen?: Generation;
  driver?: Child;
  /** host:port of the driver's /metrics. */
  metrics?: string;
}

/** Starts `substrate-driver serve` against the local Substrate; returns the time until its socket was ready. */
async function startDriver(ctx: Ctx): Promise<number> {
  const args = ['serve', '--state-dir', ctx.subDir, '--socket', ctx.socket, '--log-level', 'warn', '--metrics-listen', '127.0.0.1:0', '--template-labels', TEMPLATE_LABELS];
  if (ctx.pollFlag !== undefined) args.push('--poll-interval-ms', String(ctx.pollFlag));
  const t0 = performance.now();
  ctx.gen = undefined;
  ctx.driver = new Child('substrate-driver serve', args, path.join(ctx.tmp, 'driver.log'));
  const line = await ctx.driver.firstLine(300_000);
  const ms = performance.now() - t0;
  const info = JSON.parse(line) as { socket: string; api: string; metrics: string | null };
  if (!info.metrics) throw new Error('the driver serves no /metrics although --metrics-listen was given');
  ctx.metrics = info.metrics;
  if (info.socket !== ctx.socket) throw new Error(`the driver serves on ${info.socket}, expected ${ctx.socket}`);
  if (info.api !== ctx.lj.api_endpoint) throw new Error(`the driver talks to ${info.api}, expected the bench's local Substrate at ${ctx.lj.api_endpoint}`);
  return ms;
}

interface MemSample {
  rss: number;
  heapUsed: number;
}

/** The driver's RSS (/proc) and V8 heap in use (its /metrics), one second after the call. */
async function memSample(ctx: Ctx): Promise<MemSample> {
  await sleep(1000);
  const rss = memoryOf([ctx.driver!.pid]).rss;
  const heapUsed = (await scrape(ctx.metrics!)).get(HEAP_USED) ?? NaN;
  return { rss, heapUsed };
}

async function stopDriver(ctx: Ctx): Promise<void> {
  const code = await ctx.driver?.stop(15_000);
  if (ctx.driver && code !== 0) ctx.opts.log(`driver: exited ${code} on SIGTERM: ${ctx.driver.tail()}`);
  ctx.driver = undefined;
}

/**
 * Adds sandboxes the way the driver's state looks after CreateSandbox of a sandbox naming a pre-provisioned
 * template, once provisioning is done and its actor is suspended: a SUSPENDED actor (ateapi CreateActor, from the
 * template's golden tag) and the record (desired running, provisioned) written by the driver's own RecordStore
 * into its SQLite file. Only while the driver is stopped (the file has one writer).
 */
async function populate(ctx: Ctx, count: number, concurrency = 32): Promise<number> {
  if (ctx.driver?.alive) throw new Error('populate needs the driver stopped: its record file has one writer');
  const records = new RecordStore(SqliteRecordBackend.inStateDir(ctx.subDir));
  await records.load();
  try {
    return await populateInto(ctx, records, count, concurrency);
  } finally {
    records.close();
  }
}

async function populateInto(ctx: Ctx, records: RecordStore, count: number, concurrency: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  let done = 0;
  const base = ctx.expected.size;
  const one = async (i: number) => {
    const id = randomUUID();
    const name = `bench-${String(base + i).padStart(5, '0')}`;
    const token = fakeToken();
    const sb = gatewaySandbox(id, name, ctx.image, token);
    await ctx.c.ateapi('createActor', { actor: { metadata: { atespace: WORKSPACE, name: id }, actorTemplate: { atespace: WORKSPACE, name: TEMPLATE } } });
    const rec: SandboxRecord = {
      id,
      name,
      workspace: WORKSPACE,
      atespace: WORKSPACE,
      templateAtespace: WORKSPACE,
      template: TEMPLATE,
      owned: false,
      templateHash: '',
      desired: 'running',
      token,
      createdAt: new Date().toISOString(),
      provisioned: true,
      workerSelector: {},
      instance: id.slice(0, 8),
      runtimeGeneration: 1,
      launch: '',
      sandbox: stripToken({ ...sb, status: undefined }),
    };
    await records.put(rec);
    ctx.expected.set(id, name);
  };
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        if (isInterrupted()) throw new Error('interrupted');
        await one(next++);
        if (++done % 2000 === 0) ctx.opts.log(`  populated ${done}/${count} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
      }
    }),
  );
  return performance.now() - t0;
}

// 1 ---------------------------------------------------------------------------------------------------------------
async function unaryOverhead(ctx: Ctx, calls: number): Promise<Table[]> {
  const { opts, c, live } = ctx;
  const failures: string[] = [];
  const actorRef = { atespace: WORKSPACE, name: live.id };
  interface Pair {
    key: string;
    method: string;
    label: string;
    directLabel: string;
    driver: () => Promise<unknown>;
    direct?: () => Promise<unknown>;
  }
  const pairs: Pair[] = [
    {
      key: 'GetSandbox',
      method: 'GetSandbox',
      label: 'GetSandbox (the running sandbox)',
      directLabel: 'GetActor (its actor)',
      driver: async () => {
        const r = await c.driver<{ sandbox?: DriverSandbox }>('getSandbox', { sandboxId: live.id, name: live.name });
        if (r.sandbox?.name !== live.name) throw new Error(`GetSandbox echoed name "${r.sandbox?.name}", expected "${live.name}"`);
      },
      direct: () => c.ateapi<Actor>('getActor', { actor: actorRef }),
    },
    {
      key: 'ListSandboxes',
      method: 'ListSandboxes',
      label: `ListSandboxes (${ctx.expected.size} sandboxes)`,
      directLabel: `ListActors (atespace ${WORKSPACE}, ${ctx.expected.size} actors)`,
      driver: async () => {
        const r = await c.driver<{ sandboxes: DriverSandbox[] }>('listSandboxes', {});
        if (r.sandboxes.length !== ctx.expected.size) throw new Error(`ListSandboxes returned ${r.sandboxes.length} sandboxes, expected ${ctx.expected.size}`);
      },
      direct: () => c.ateapi<ListActorsResponse>('listActors', { atespace: WORKSPACE, pageSize: 1000, pageToken: '' }),
    },
    {
      key: 'GetCapabilities',
      method: 'GetCapabilities',
      label: 'GetCapabilities',
      directLabel: '(no backend call)',
      driver: async () => {
        const r = await c.driver<GetCapabilitiesResponse>('getCapabilities', {});
        if (r.driverName !== 'substrate') throw new Error(`GetCapabilities driver_name "${r.driverName}"`);
      },
    },
  ];
  interface Per {
    d50: number[];
    d99: number[];
    a50: number[];
    a99: number[];
    o50: number[];
    o99: number[];
    all: number[];
    allDirect: number[];
    handler: { sum: number; n: number };
    backend: { sum: number; n: number };
  }
  const per: Per[] = pairs.map(() => ({ d50: [], d99: [], a50: [], a99: [], o50: [], o99: [], all: [], allDirect: [], handler: { sum: 0, n: 0 }, backend: { sum: 0, n: 0 } }));
  for (let run = 0; run < opts.runs; run++) {
    for (const [i, p] of pairs.entries()) {
      for (let w = 0; w < (run === 0 ? WARMUP : WARMUP / 10); w++) {
        await p.driver();
        await p.direct?.();
      }
      const m0 = await scrape(ctx.metrics!);
      const d: number[] = [];
      const a: number[] = [];
      // Alternating blocks, so drift (other load on the machine, GC) hits both sides alike.
      while (d.length < calls) {
        for (let k = 0; k < BLOCK && d.length < calls; k++) d.push((await timed(p.driver))[0]);
        if (p.direct) for (let k = 0; k < BLOCK && a.length < calls; k++) a.push((await timed(p.direct))[0]);
        if (isInterrupted()) throw new Error('interrupted');
      }
      const m1 = await scrape(ctx.metrics!);
      const s = per[i]!;
      const h = histMean(m0, m1, 'rpc_duration_seconds', p.method);
      if (h.n !== calls) failures.push(`${p.method}: the driver's metrics counted ${h.n} calls, the bench made ${calls}`);
      s.handler.sum += h.ms * h.n;
      s.handler.n += h.n;
      if (p.key === 'GetSandbox') {
        const b = histMean(m0, m1, 'backend_duration_seconds', 'GetActor');
        s.backend.sum += b.ms * b.n;
        s.backend.n += b.n;
      }
      s.d50.push(pct(d, 50));
      s.d99.push(pct(d, 99));
      s.all.push(...d);
      if (p.direct) {
        s.a50.push(pct(a, 50));
        s.a99.push(pct(a, 99));
        s.allDirect.push(...a);
        s.o50.push(pct(d, 50) - pct(a, 50));
        s.o99.push(pct(d, 99) - pct(a, 99));
      } else {
        s.o50.push(pct(d, 50));
        s.o99.push(pct(d, 99));
      }
    }
    opts.log(
      `  run ${run + 1}/${opts.runs}: ` +
        pairs
          .map((p, i) => `${p.key} p50 ${ms2(per[i]!.d50.at(-1)!)} p99 ${ms2(per[i]!.d99.at(-1)!)}${p.direct ? ` (direct ${ms2(per[i]!.a50.at(-1)!)} / ${ms2(per[i]!.a99.at(-1)!)})` : ''} ms`)
          .join('; '),
    );
  }
  const rows = pairs.map((p, i) => {
    const s = per[i]!;
    return [
      p.label,
      p.directLabel,
      fmt(s.d50, 3),
      p.direct ? fmt(s.a50, 3) : '–',
      fmt(s.o50, 3),
      fmt(s.d99, 3),
      p.direct ? fmt(s.a99, 3) : '–',
      fmt(s.o99, 3),
      median(s.o99) < 2 ? 'met' : 'not met',
    ];
  });
  const samples: Record<string, number[]> = {};
  for (const [i, p] of pairs.entries()) {
    samples[`${p.key}.driver`] = per[i]!.all;
    if (p.direct) samples[`${p.key}.direct`] = per[i]!.allDirect;
  }
  const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
  const g = per[0]!;
  const cap = per[2]!;
  const total = mean(g.all);
  const handler = g.handler.sum / g.handler.n;
  const backend = g.backend.sum / g.backend.n;
  const direct = mean(g.allDirect);
  const capTotal = mean(cap.all);
  const capHandler = cap.handler.sum / cap.handler.n;
  const n = calls * opts.runs;
  const overhead: Table = {
    title: `Driver overhead per unary RPC: through the driver's socket vs ateapi directly (ms; p50 and p99 of ${calls} calls per run, median (min–max) of ${opts.runs} runs)`,
    columns: ['RPC through the driver', 'ateapi directly', 'driver p50', 'direct p50', 'overhead p50', 'driver p99', 'direct p99', 'overhead p99', 'target: p99 overhead < 2 ms'],
    rows,
    notes: [
      `Both sides are real gRPC from this process with the generated clients: ComputeDriverClient on the driver's Unix socket (h2c, as the gateway dials it) and ControlClient on the local Substrate's ateapi socket. The driver is the \`substrate-driver serve\` binary in its own process; ateapi is \`substrate-driver local serve\` in another. Calls are sequential, ${WARMUP} warm-up calls per side first, then alternating blocks of ${BLOCK} driver / ${BLOCK} direct calls.`,
      'Overhead = driver percentile − direct percentile within the same run. A driver GetSandbox makes one GetActor (plus the projection into conditions); ListSandboxes makes one paged ListActors over the atespace; GetCapabilities makes no backend call, so its overhead is its whole latency.',
      `${ctx.expected.size} sandboxes exist during this part: one running (created through CreateSandbox), ${ctx.expected.size - 1} with suspended actors.`,
    ],
    samples,
    failures,
  };
  const split: Table = {
    title: `Where a driver call's time goes (ms, means over ${n} calls, from the driver's own /metrics histograms)`,
    columns: ['part', 'GetSandbox', 'GetCapabilities'],
    rows: [
      ['whole call, seen by the client', total.toFixed(3), capTotal.toFixed(3)],
      ['inside the driver\'s handler (substrate_driver_rpc_duration_seconds)', handler.toFixed(3), capHandler.toFixed(3)],
      ['  of which its ateapi GetActor call (substrate_driver_backend_duration_seconds)', backend.toFixed(3), '–'],
      ['  the driver\'s own work in the handler (handler − backend)', (handler - backend).toFixed(3), capHandler.toFixed(3)],
      ['outside the handler: the client ↔ driver gRPC hop (whole − handler)', (total - handler).toFixed(3), (capTotal - capHandler).toFixed(3)],
      ['for comparison: GetActor called directly, seen by the client', direct.toFixed(3), '–'],
    ],
    notes: [
      'The handler time runs from the driver\'s service handler being invoked to its callback (the response is then serialized and written by grpc-js); the backend time is the driver\'s SubstrateClient call (metadata, deadline, retry policy, the gRPC round trip to ateapi). Means, not percentiles: the histograms give sums and counts.',
    ],
  };
  return [overhead, split];
}

// 4 ---------------------------------------------------------------------------------------------------------------

/**
 * Puts the driver in gateway generation `g` with one GetCapabilities of that generation (the driver remembers
 * the generation of the last gateway that called it, and caches one negotiated answer). Returns that call's
 * time in ms, or undefined when the bench's last GetCapabilities already was of `g`.
 */
async function ensureGeneration(ctx: Ctx, g: Generation): Promise<number | undefined> {
  if (ctx.gen === g) return undefined;
  const [ms, r] = await timed(() => ctx.c.driver<GetCapabilitiesResponse>('getCapabilities', capsRequest(g)));
  if (g === 'v0.1' && !r.extension) throw new Error('GetCapabilities with v0.1 gateway metadata answered without extension metadata');
  ctx.gen = g;
  return ms;
}

/**
 * What a v0.1 gateway does before every ValidateSandboxCreate, CreateSandbox and StartSandbox
 * (RemoteComputeDriver::verify_admission_policy): GetCapabilities with its metadata, then resource_admission_policy
 * compared byte for byte with the answer it cached at startup.
 */
async function admissionRecheck(c: Clients, startupAck: Buffer): Promise<void> {
  const r = await c.driver<GetCapabilitiesResponse>('getCapabilities', { gateway: V01_GATEWAY });
  if (!Buffer.from(r.resourceAdmissionPolicy, 'utf8').equals(startupAck)) {
    throw new Error(`remote driver admission policy changed (the gateway would refuse the call): ${JSON.stringify(r.resourceAdmissionPolicy)}`);
  }
}

/** The startup handshake of a v0.1 gateway: GetCapabilities with its metadata; the admission ack it caches. */
async function v01Handshake(ctx: Ctx): Promise<Buffer> {
  const r = await ctx.c.driver<GetCapabilitiesResponse>('getCapabilities', { gateway: V01_GATEWAY });
  ctx.gen = 'v0.1';
  if (!r.extension?.supportedCapabilities.includes('openshell.compute.contract')) {
    throw new Error(`the driver's extension metadata does not support openshell.compute.contract: ${JSON.stringify(r.extension)}`);
  }
  if (r.resourceAdmissionPolicy !== ctx.ack || !r.resourceAdmissionPolicy.startsWith('v1:')) {
    throw new Error(`the driver acknowledges admission policy ${JSON.stringify(r.resourceAdmissionPolicy)}, expected ${JSON.stringify(ctx.ack)}`);
  }
  return Buffer.from(r.resourceAdmissionPolicy, 'utf8');
}

/** "+0.012": difference of the medians of two per-run series. */
function diffOfMedians(b: number[], a: number[], digits = 3): string {
  const d = median(b) - median(a);
  return Number.isFinite(d) ? `${d >= 0 ? '+' : ''}${d.toFixed(digits)}` : '–';
}

interface Side {
  label: string;
  /** The gateway generation whose calls this side makes; the driver is put in it (untimed) before each block. */
  gen: Generation;
  /** The driver RPCs one call makes (metric method names), to check the driver's counts against. */
  methods: string[];
  call: () => Promise<unknown>;
}

interface SideStats {
  p50: number[];
  p99: number[];
  all: number[];
}

const sideStats = (): SideStats => ({ p50: [], p99: [], all: [] });

/**
 * GetCapabilities as a 0.0.x and as a v0.1 gateway calls it, and ValidateSandboxCreate alone and with the v0.1
 * admission re-check, measured as part 1 measures its pairs: sequential calls, warm-up, alternating blocks.
 */
async function generationPairs(ctx: Ctx, calls: number): Promise<Table> {
  const { opts, c } = ctx;
  const failures: string[] = [];
  const startupAck = await v01Handshake(ctx);
  const sb = v01Sandbox(randomUUID(), 'bench-validate', ctx.image, '');
  const check00 = (r: GetCapabilitiesResponse) => {
    if (r.driverName !== 'substrate') throw new Error(`GetCapabilities driver_name "${r.driverName}"`);
  };
  const pairs: Array<{ key: string; a: Side; b: Side }> = [
    {
      key: 'GetCapabilities',
      a: {
        label: 'GetCapabilities (0.0.x: no metadata)',
        gen: 'v0.0',
        methods: ['GetCapabilities'],
        call: async () => check00(await c.driver<GetCapabilitiesResponse>('getCapabilities', capsRequest('v0.0'))),
      },
      b: {
        label: 'GetCapabilities (v0.1: gateway metadata, negotiated)',
        gen: 'v0.1',
        methods: ['GetCapabilities'],
        call: async () => {
          const r = await c.driver<GetCapabilitiesResponse>('getCapabilities', capsRequest('v0.1'));
          check00(r);
          if (!r.extension) throw new Error('GetCapabilities with v0.1 gateway metadata answered without extension metadata');
        },
      },
    },
    {
      key: 'ValidateSandboxCreate',
      a: {
        label: 'ValidateSandboxCreate (v0.1 request)',
        gen: 'v0.1',
        methods: ['ValidateSandboxCreate'],
        call: () => c.driver('validateSandboxCreate', { sandbox: sb }),
      },
      b: {
        label: 'ValidateSandboxCreate + admission re-check',
        gen: 'v0.1',
        methods: ['GetCapabilities', 'ValidateSandboxCreate'],
        call: async () => {
          await admissionRecheck(c, startupAck);
          await c.driver('validateSandboxCreate', { sandbox: sb });
        },
      },
    },
  ];
  const stats = pairs.map(() => ({ a: sideStats(), b: sideStats() }));
  const switches: number[] = [];
  try {
    for (let run = 0; run < opts.runs; run++) {
      for (const [i, p] of pairs.entries()) {
        for (const side of [p.a, p.b]) {
          await ensureGeneration(ctx, side.gen);
          for (let w = 0; w < (run === 0 ? WARMUP : WARMUP / 10); w++) await side.call();
        }
        const m0 = await scrape(ctx.metrics!);
        const made = new Map<string, number>();
        const bump = (m: string) => made.set(m, (made.get(m) ?? 0) + 1);
        const block = async (side: Side, out: number[]) => {
          // A deployment has one gateway generation: the switch (renegotiation, the driver's generation file
          // rewritten) is made here, untimed, not by the block's first timed call.
          const sw = await ensureGeneration(ctx, side.gen);
          if (sw !== undefined) {
            switches.push(sw);
            bump('GetCapabilities');
            for (let k = 0; k < SWITCH_SETTLE; k++) {
              await side.call();
              side.methods.forEach(bump);
            }
          }
          for (let k = 0; k < BLOCK && out.length < calls; k++) {
            out.push((await timed(side.call))[0]);
            side.methods.forEach(bump);
          }
        };
        const a: number[] = [];
        const b: number[] = [];
        while (a.length < calls || b.length < calls) {
          await block(p.a, a);
          await block(p.b, b);
          if (isInterrupted()) throw new Error('interrupted');
        }
        const m1 = await scrape(ctx.metrics!);
        for (const [method, n] of made) {
          const h = histMean(m0, m1, 'rpc_duration_seconds', method);
          if (h.n !== n) failures.push(`${p.key} run ${run + 1}: the driver's metrics counted ${h.n} OK ${method} calls, the bench made ${n}`);
        }
        const s = stats[i]!;
        for (const [st, xs] of [
          [s.a, a],
          [s.b, b],
        ] as const) {
          st.p50.push(pct(xs, 50));
          st.p99.push(pct(xs, 99));
          st.all.push(...xs);
        }
      }
      opts.log(
        `  run ${run + 1}/${opts.runs}: ` +
          pairs
            .map((p, i) => {
              const s = stats[i]!;
              return `${p.key}: ${p.a.gen === p.b.gen ? 'alone' : p.a.gen} p50 ${ms2(s.a.p50.at(-1)!)} p99 ${ms2(s.a.p99.at(-1)!)}, ${p.a.gen === p.b.gen ? '+ re-check' : p.b.gen} p50 ${ms2(s.b.p50.at(-1)!)} p99 ${ms2(s.b.p99.at(-1)!)} ms`;
            })
            .join('; '),
      );
    }
  } finally {
    // The other parts are measured with the driver in 0.0.x, as before this part existed.
    await ensureGeneration(ctx, 'v0.0').catch((e) => failures.push(`could not put the driver back to 0.0.x: ${(e as Error).message}`));
  }
  const samples: Record<string, number[]> = {};
  const rows = pairs.map((p, i) => {
    const s = stats[i]!;
    samples[`${p.a.label}`] = s.a.all;
    samples[`${p.b.label}`] = s.b.all;
    return [p.a.label, p.b.label, fmt(s.a.p50, 3), fmt(s.b.p50, 3), diffOfMedians(s.b.p50, s.a.p50), fmt(s.a.p99, 3), fmt(s.b.p99, 3), diffOfMedians(s.b.p99, s.a.p99)];
  });
  samples['GetCapabilities after a generation switch (untimed above)'] = switches;
  return {
    title: `GetCapabilities by gateway generation, and the v0.1 admission re-check before ValidateSandboxCreate (ms; p50 and p99 of ${calls} calls per side per run, median (min–max) of ${opts.runs} runs; ${machineName(opts)})`,
    columns: ['A', 'B', 'A p50', 'B p50', 'B − A p50 (difference of medians)', 'A p99', 'B p99', 'B − A p99 (difference of medians)'],
    rows,
    notes: [
      `Measured as the driver-overhead pairs above: sequential calls through the driver's Unix socket from this process, ${WARMUP} warm-up calls per side first (${WARMUP / 10} in later runs), then alternating blocks of ${BLOCK} A / ${BLOCK} B calls; p50 and p99 (nearest rank) per run, median (min–max) over the runs. ${ctx.expected.size} sandboxes exist meanwhile.`,
      `Each side's gateway generation is explicit. 0.0.x: GetCapabilities without \`gateway\`. v0.1: GetCapabilities with gateway metadata {protocol_version 1.0, "${V01_GATEWAY.implementationName}" ${V01_GATEWAY.implementationVersion}, supported [${V01_GATEWAY.supportedCapabilities.join(', ')}], required [${V01_GATEWAY.requiredCapabilities.join(', ')}]}; "negotiated": the driver checked it once and caches the answer per metadata, so a repeat is a cache hit. The driver remembers one gateway generation (a change rewrites <socket>.generation) and one negotiated answer, so the first call after the other generation's block renegotiates and switches: that call and ${SWITCH_SETTLE} more of the block's side are made untimed before each block (${switches.length} switches; the switching call: median ${ms2(median(switches))} ms, max ${ms2(switches.length ? Math.max(...switches) : NaN)} ms); a real deployment has one gateway generation. Afterwards the driver is put back to 0.0.x, the generation the other parts of this suite run in.`,
      `Both ValidateSandboxCreate sides send the same request as a v0.1 gateway: spec.workload_identity {user "", group ""}, no template.driver_config (a v0.1 gateway forbids caller driver_config by default), the pre-provisioned ActorTemplate ${TEMPLATE_REF} named by platform_config.annotations.${TEMPLATE_ANNOTATION} (the driver's template_labels give it openshell.ai/sandbox-attachable=true, so the default admission policy admits it for every workspace; v0.4 templates carry no labels), an empty sandbox token. The admission re-check is GetCapabilities with the v0.1 metadata, then resource_admission_policy (${startupAck.length} bytes) compared byte for byte with the answer of the bench's startup handshake, as RemoteComputeDriver::verify_admission_policy does (openshell-v0.1.md §2.5); B − A is its added cost. A ValidateSandboxCreate reads the named template (ateapi GetActorTemplate) and checks its admission labels.`,
      machineNote(opts),
    ],
    samples,
    failures,
  };
}

/**
 * CreateSandbox alone vs with the v0.1 admission re-check, alternating, `creates` per side per run. Each sandbox
 * is deleted at once (DeleteSandbox returns after its provisioning was stopped, its actor deleted and its record
 * removed), so no provisioning runs behind the next call or any later part, and nothing is left.
 */
async function createRecheck(ctx: Ctx, creates: number): Promise<Table> {
  const { opts, c } = ctx;
  const failures: string[] = [];
  const startupAck = await v01Handshake(ctx);
  const a = sideStats();
  const b = sideStats();
  const deletes: number[] = [];
  const pending = new Map<string, string>();
  const one = async (recheck: boolean, label: string): Promise<[number, number]> => {
    const id = randomUUID();
    const name = `bench-create-${label}`;
    const sb = v01Sandbox(id, name, ctx.image, fakeToken());
    pending.set(id, name);
    const [ms, r] = await timed(async () => {
      if (recheck) await admissionRecheck(c, startupAck);
      return c.driver<{ runtimeIdentity: string }>('createSandbox', { sandbox: sb });
    });
    if (!r.runtimeIdentity) throw new Error(`CreateSandbox ${name} returned no runtime identity`);
    const [dms, d] = await timed(() => c.driver<{ deleted: boolean }>('deleteSandbox', { sandboxId: id, name }));
    if (!d.deleted) throw new Error(`DeleteSandbox ${name} answered deleted=false`);
    pending.delete(id);
    await sleep(CREATE_SETTLE_MS);
    return [ms, dms];
  };
  try {
    // Cold code paths (the first v0.1 create, the first delete) are not timed.
    for (let w = 0; w < 2; w++) {
      await one(false, `warm-${w}-a`);
      await one(true, `warm-${w}-b`);
    }
    for (let run = 0; run < opts.runs; run++) {
      const xa: number[] = [];
      const xb: number[] = [];
      for (let i = 0; i < creates; i++) {
        const [ta, da] = await one(false, `${run}-${i}-a`);
        const [tb, db] = await one(true, `${run}-${i}-b`);
        xa.push(ta);
        xb.push(tb);
        deletes.push(da, db);
        if (isInterrupted()) throw new Error('interrupted');
      }
      for (const [st, xs] of [
        [a, xa],
        [b, xb],
      ] as const) {
        st.p50.push(pct(xs, 50));
        st.p99.push(pct(xs, 99));
        st.all.push(...xs);
      }
      opts.log(
        `  run ${run + 1}/${opts.runs}: CreateSandbox p50 ${ms2(a.p50.at(-1)!)} p99 ${ms2(a.p99.at(-1)!)} ms, + re-check p50 ${ms2(b.p50.at(-1)!)} p99 ${ms2(b.p99.at(-1)!)} ms; DeleteSandbox p50 ${ms2(pct(deletes.slice(-2 * creates), 50))} ms`,
      );
    }
  } finally {
    for (const [id, name] of pending) {
      await c.driver('deleteSandbox', { sandboxId: id, name }).catch((e) => failures.push(`could not delete ${name}: ${(e as Error).message}`));
    }
    await ensureGeneration(ctx, 'v0.0').catch((e) => failures.push(`could not put the driver back to 0.0.x: ${(e as Error).message}`));
  }
  // Nothing left: the driver lists exactly the sandboxes it had, and the atespace holds exactly their actors.
  let listed = -1;
  let actors = -1;
  for (const deadline = Date.now() + 30_000; ; ) {
    listed = (await c.driver<{ sandboxes: DriverSandbox[] }>('listSandboxes', {})).sandboxes.length;
    actors = 0;
    let token = '';
    do {
      const p = await c.ateapi<ListActorsResponse>('listActors', { atespace: WORKSPACE, pageSize: 1000, pageToken: token });
      actors += p.actors.length;
      token = p.nextPageToken;
    } while (token);
    if ((listed === ctx.expected.size && actors === ctx.expected.size) || Date.now() > deadline) break;
    await sleep(500);
  }
  if (listed !== ctx.expected.size) failures.push(`after the creates and deletes the driver lists ${listed} sandboxes, expected ${ctx.expected.size}`);
  if (actors !== ctx.expected.size) failures.push(`after the creates and deletes atespace ${WORKSPACE} holds ${actors} actors, expected ${ctx.expected.size}`);
  const total = creates * opts.runs;
  return {
    title: `CreateSandbox with and without the v0.1 admission re-check (ms; p50 and p99 of ${creates} creates per side per run, median (min–max) of ${opts.runs} runs; ${machineName(opts)})`,
    columns: ['A', 'B', 'A p50', 'B p50', 'B − A p50 (difference of medians)', 'A p99', 'B p99', 'B − A p99 (difference of medians)'],
    rows: [['CreateSandbox (v0.1 request)', 'CreateSandbox + admission re-check', fmt(a.p50, 2), fmt(b.p50, 2), diffOfMedians(b.p50, a.p50, 2), fmt(a.p99, 2), fmt(b.p99, 2), diffOfMedians(b.p99, a.p99, 2)]],
    notes: [
      `CreateSandbox returns once the sandbox's record is durable (a row in the driver's SQLite file, synchronous=FULL); provisioning (CreateActor from the template's golden snapshot, ResumeActor) continues in the background. Each created sandbox is deleted at once with DeleteSandbox, awaited (it stops the provisioning, deletes the actor, removes the record: median ${ms2(median(deletes))} ms over ${deletes.length}), followed by a ${CREATE_SETTLE_MS} ms pause, so no background provisioning overlaps the next create or any later part, and none of the ${2 * total} sandboxes is left (checked: ListSandboxes and the atespace's actors are back to ${ctx.expected.size}).`,
      `Creates alternate A, B, A, B, … (${creates} per side per run, ${total} in all per side; 2 untimed creates per side first). With ${creates} samples a run's p99 (nearest rank) is its maximum. Requests are a v0.1 gateway's (see the table above: workload_identity, no driver_config, the template named by platform_config.annotations.${TEMPLATE_ANNOTATION}, plus a JWT-sized sandbox token); the re-check is the same GetCapabilities + byte compare, so B − A is its added cost. ${ctx.expected.size} sandboxes exist meanwhile; the driver polls ListActors every ${ctx.pollMs} ms.`,
      machineNote(opts),
    ],
    samples: { 'CreateSandbox.alone': a.all, 'CreateSandbox.recheck': b.all, 'DeleteSandbox.afterCreate': deletes },
    failures,
  };
}

// 3 ---------------------------------------------------------------------------------------------------------------
interface LatencyResult {
  label: string;
  suspend: number[];
  resume: number[];
  suspendFirst: number[];
  resumeFirst: number[];
  early: number;
  suspendCall: number[];
  resumeCall: number[];
  failures: string[];
}

/**
 * Suspends and resumes the running sandbox's actor directly on ateapi (the gateway is not involved), with a
 * random pause between changes so the changes do not lock onto the driver's poll phase; times the event.
 */
async function watchLatency(ctx: Ctx, changes: number): Promise<LatencyResult> {
  const { c, live, opts } = ctx;
  const res: LatencyResult = { label: `${ctx.expected.size} sandboxes`, suspend: [], resume: [], suspendFirst: [], resumeFirst: [], early: 0, suspendCall: [], resumeCall: [], failures: [] };
  const w = new WatchLog(c.driverRaw);
  const actorRef = { atespace: WORKSPACE, name: live.id };
  try {
    // The snapshot first: the running sandbox as Ready.
    await w.waitFor(0, (sb) => sb.id === live.id && readyOf(sb)?.status === 'True', 120_000);
    for (let i = 0; i < changes; i++) {
      await sleep(Math.random() * ctx.pollMs);
      const suspend = i % 2 === 0;
      const from = w.events.length;
      const t0 = performance.now();
      await c.ateapi<{ actor?: Actor }>(suspend ? 'suspendActor' : 'resumeActor', { actor: actorRef });
      const t1 = performance.now();
      const done = suspend
        ? (sb: DriverSandbox) => sb.id === live.id && readyOf(sb)?.reason === 'ResumesOnDemand' && !sb.status?.instanceId
        : (sb: DriverSandbox) => sb.id === live.id && readyOf(sb)?.status === 'True';
      try {
        const k = await w.waitFor(from, done, 30_000);
        const first = await w.waitFor(from, (sb) => sb.id === live.id, 0);
        const tEv = w.events[k]!.t;
        if (tEv < t1) res.early++;
        (suspend ? res.suspend : res.resume).push(Math.max(0, tEv - t1));
        (suspend ? res.suspendFirst : res.resumeFirst).push(w.events[first]!.t - t0);
        (suspend ? res.suspendCall : res.resumeCall).push(t1 - t0);
      } catch (e) {
        res.failures.push(`${suspend ? 'SuspendActor' : 'ResumeActor'} #${i + 1}: ${(e as Error).message}`);
        if (w.error) break;
      }
      // Every sandbox event on the way must keep the sandbox out of ERROR and STOPPED (an outside suspend).
      for (const { ev } of w.events.slice(from)) {
        const sb = ev.payload?.$case === 'sandbox' ? ev.payload.value.sandbox : undefined;
        if (sb?.id !== live.id) continue;
        const ph = derivePhase(sb.status?.conditions, sb.status?.deleting);
        if (ph === 'ERROR' || ph === 'STOPPED') res.failures.push(`an outside ${suspend ? 'suspend' : 'resume'} made the sandbox ${ph}: ${JSON.stringify(readyOf(sb))}`);
      }
    }
  } finally {
    w.cancel();
    // Leave the actor running for what follows (an even number of changes ends on a resume).
    const a = await c.ateapi<Actor>('getActor', { actor: actorRef }).catch(() => undefined);
    if (a && a.status?.state !== ActorState.ACTOR_STATE_RUNNING) await c.ateapi('resumeActor', { actor: actorRef }).catch(() => undefined);
  }
  opts.log(
    `  ${res.label}: suspend → event p50 ${ms2(pct(res.suspend, 50))} ms, resume → event p50 ${ms2(pct(res.resume, 50))} ms (${res.early} event(s) before the call's reply)`,
  );
  return res;
}

function latencyTable(ctx: Ctx, results: LatencyResult[], changes: number): Table {
  const rows: Array<Array<string | number>> = [];
  const failures: string[] = [];
  const samples: Record<string, number[]> = {};
  for (const r of results) {
    failures.push(...r.failures.map((f) => `${r.label}: ${f}`));
    for (const [kind, xs, first, call] of [
      ['SuspendActor (RUNNING → SUSPENDED)', r.suspend, r.suspendFirst, r.suspendCall],
      ['ResumeActor (SUSPENDED → RUNNING)', r.resume, r.resumeFirst, r.resumeCall],
    ] as const) {
      rows.push([r.label, kind, xs.length, ms2(pct(xs, 50)), ms2(pct(xs, 99)), ms2(Math.max(...xs)), ms2(pct(first, 50)), ms2(median(call as number[]))]);
    }
    samples[`${r.label}.suspend`] = r.suspend;
    samples[`${r.label}.resume`] = r.resume;
    samples[`${r.label}.suspendFirstFromCall`] = r.suspendFirst;
    samples[`${r.label}.resumeFirstFromCall`] = r.resumeFirst;
  }
  const early = results.reduce((s, r) => s + r.early, 0);
  return {
    title: `Watch latency: actor state change made directly on ateapi → the sandbox event on an open WatchSandboxes stream (ms; ${changes} changes per population, half suspends, half resumes)`,
    columns: ['sandboxes', 'change (outside the gateway)', 'n', 'event after the reply p50', 'p99', 'max', 'first event of the change, from the call p50', 'ateapi call (median)'],
    rows,
    notes: [
      `Substrate v0.4's ateapi has no watch RPC, so the driver detects changes made outside it by polling ListActors every poll_interval_ms = ${ctx.pollMs} ms${ctx.pollFlag === undefined ? " (the driver's default)" : ' (--poll-interval-ms)'} and diffing; expected latency is up to one interval plus one full ListActors of the atespace. Changes made through the driver itself are published at once.`,
      '"event after the reply": from the moment the SuspendActor/ResumeActor call returned (the actor is then SUSPENDED/RUNNING) to the arrival of the first event showing that state (suspend: Ready=Unknown reason ResumesOnDemand, no instance; resume: Ready=True). The driver projects SUSPENDING like SUSPENDED, so a poll during the checkpoint can deliver the suspend event before the reply; such events count as 0 ' +
        `(${early} of ${results.reduce((s, r) => s + r.suspend.length + r.resume.length, 0)}). "first event of the change": from the call's start to the first event for the sandbox (may show the transitional RESUMING state).`,
      'A random pause of 0–1 poll interval precedes each change, so changes do not lock onto the poll phase. Every event is also checked: an outside suspend never makes the sandbox ERROR or STOPPED.',
    ],
    samples,
    failures,
  };
}

// 2 ---------------------------------------------------------------------------------------------------------------
async function bootstrapOnce(ctx: Ctx, timeoutMs = 120_000): Promise<{ ms: number; firstMs: number; events: number; mismatched: string[] }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const seen = new Set<string>();
    const mismatched: string[] = [];
    let firstMs = 0;
    let events = 0;
    let done = false;
    const stream = ctx.c.driverRaw.watchSandboxes({});
    const finish = (e?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stream.cancel();
      if (e) reject(e);
      else resolve({ ms: performance.now() - t0, firstMs, events, mismatched });
    };
    const timer = setTimeout(() => finish(new Error(`watch bootstrap: ${seen.size}/${ctx.expected.size} sandboxes after ${timeoutMs / 1000} s`)), timeoutMs);
    stream.on('data', (ev: WatchSandboxesEvent) => {
      events++;
      if (!firstMs) firstMs = performance.now() - t0;
      if (ev.payload?.$case !== 'sandbox' || !ev.payload.value.sandbox) return;
      const sb = ev.payload.value.sandbox;
      const want = ctx.expected.get(sb.id);
      if (want === undefined || seen.has(sb.id)) return;
      if (want !== sb.name || sb.workspace !== WORKSPACE) mismatched.push(`${sb.id}: name "${sb.name}" workspace "${sb.workspace}"`);
      seen.add(sb.id);
      if (seen.size === ctx.expected.size) finish();
    });
    stream.on('error', (e: grpc.ServiceError) => finish(new Error(`watch bootstrap: ${grpc.status[e.code]} ${e.details}`)));
    stream.on('end', () => finish(new Error(`watch bootstrap: stream ended after ${seen.size}/${ctx.expected.size} sandboxes`)));
  });
}

interface StartFigures {
  populateMs: number;
  startFewMs: number;
  atStartFew: MemSample;
  afterPart1: MemSample;
  startMs: number;
  atStart: MemSample;
}

async function listAndBootstrap(ctx: Ctx, n: number, m: StartFigures): Promise<Table> {
  const { opts, c } = ctx;
  const failures: string[] = [];
  const s: Record<string, number[]> = { list: [], listBytes: [], bootstrap: [], bootstrapFirst: [], listActorsDirect: [] };
  const checkList = (sbs: DriverSandbox[]) => {
    if (sbs.length !== ctx.expected.size) failures.push(`ListSandboxes returned ${sbs.length} sandboxes, expected ${ctx.expected.size}`);
    const bad = sbs.filter((sb) => ctx.expected.get(sb.id) !== sb.name || sb.workspace !== WORKSPACE);
    if (bad.length) failures.push(`${bad.length} sandbox(es) listed with a wrong id, name or workspace, e.g. ${JSON.stringify(bad[0])}`);
    const phases = new Map<string, number>();
    for (const sb of sbs) {
      const ph = derivePhase(sb.status?.conditions, sb.status?.deleting);
      phases.set(ph, (phases.get(ph) ?? 0) + 1);
    }
    for (const ph of ['ERROR', 'STOPPED', 'DELETING']) if (phases.get(ph)) failures.push(`${phases.get(ph)} sandbox(es) derive ${ph} (their actors are only suspended)`);
    return phases;
  };
  // The first ListSandboxes after the restart (cold code paths), then the timed runs.
  const [firstMs, first] = await timed(() => c.driver<{ sandboxes: DriverSandbox[] }>('listSandboxes', {}));
  const phases = checkList(first.sandboxes);
  for (let i = 0; i < opts.runs; i++) {
    const [ms, r] = await timed(() => c.driver<{ sandboxes: DriverSandbox[] }>('listSandboxes', {}));
    s.list!.push(ms);
    s.listBytes!.push(ListSandboxesResponse.encode(r as ListSandboxesResponse).finish().length);
    if (i === opts.runs - 1) checkList(r.sandboxes);
    const b = await bootstrapOnce(ctx);
    s.bootstrap!.push(b.ms);
    s.bootstrapFirst!.push(b.firstMs);
    if (b.mismatched.length) failures.push(`watch snapshot: ${b.mismatched.length} sandbox(es) with a wrong name or workspace, e.g. ${b.mismatched[0]}`);
    // The backend part alone: every actor of the atespace, paged as the driver pages it.
    const [dms] = await timed(async () => {
      let token = '';
      let got = 0;
      do {
        const p = await c.ateapi<ListActorsResponse>('listActors', { atespace: WORKSPACE, pageSize: 1000, pageToken: token });
        got += p.actors.length;
        token = p.nextPageToken;
      } while (token);
      if (got < n) failures.push(`ListActors paged ${got} actors, expected ${n}`);
    });
    s.listActorsDirect!.push(dms);
    opts.log(`  run ${i + 1}/${opts.runs}: ListSandboxes ${ms.toFixed(0)} ms (${(s.listBytes!.at(-1)! / MiB).toFixed(2)} MiB), watch bootstrap ${b.ms.toFixed(0)} ms, ListActors ×${Math.ceil(n / 1000)} pages ${dms.toFixed(0)} ms`);
    if (isInterrupted()) throw new Error('interrupted');
  }
  const pid = ctx.driver!.pid;
  const tree = treeOf(pid);
  const rssAfter = memoryOf([pid]).rss;
  const rssTree = memoryOf(tree).rss;
  const peak = peakRss(pid);
  const cpu = await idleCpuPercent(() => [pid], 3000);
  const subCpu = await idleCpuPercent(() => [ctx.lj.pid], 3000);
  const mAfter = await scrape(ctx.metrics!);
  const after = mAfter.get(HEAP_USED) ?? NaN;
  const committed = mAfter.get('substrate_driver_nodejs_heap_size_total_bytes') ?? NaN;
  const external = mAfter.get('substrate_driver_nodejs_external_memory_bytes') ?? NaN;
  const added = n - (FEW - 1);
  const mib = (x: number) => (x / MiB).toFixed(1);
  const ok = (v: boolean) => (v ? 'met' : 'not met');
  const maxBytes = Math.max(...s.listBytes!);
  const rows: Array<Array<string | number>> = [
    [`ListSandboxes, ${n} sandboxes: call → decoded response (ms)`, fmt(s.list!), '< 1000 ms', ok(median(s.list!) < 1000)],
    ['  first ListSandboxes after the driver (re)started (ms)', firstMs.toFixed(0), '', ''],
    ['  of which ateapi: ListActors paged over the atespace directly (ms)', fmt(s.listActorsDirect!), '', ''],
    [`WatchSandboxes bootstrap: open → all ${n} snapshot events received (ms)`, fmt(s.bootstrap!), '< 1000 ms', ok(median(s.bootstrap!) < 1000)],
    ['  open → first event (ms)', fmt(s.bootstrapFirst!), '', ''],
    ['ListSandboxes response, encoded (MiB)', fmt(s.listBytes!, 2, 1 / MiB), '< 4 MiB (the gateway\'s limit)', ok(maxBytes < 4 * MiB)],
    ['  per sandbox (bytes)', fmt(s.listBytes!.map((b) => b / n), 0), '', ''],
    [`driver RSS with ${n} sandboxes: after restart / after these runs / peak (MiB)`, `${mib(m.atStart.rss)} / ${mib(rssAfter)} / ${mib(peak)}`, 'reported', ''],
    [`  for comparison, with ${FEW - 1} records: after start / after part 1 (MiB)`, `${mib(m.atStartFew.rss)} / ${mib(m.afterPart1.rss)}`, '', ''],
    [`driver V8 heap in use: ${FEW - 1} records after start / ${n} after restart / after these runs (MiB)`, `${mib(m.atStartFew.heapUsed)} / ${mib(m.atStart.heapUsed)} / ${mib(after)}`, '', ''],
    [`  V8 heap committed / external memory (Buffers), after these runs (MiB)`, `${mib(committed)} / ${mib(external)}`, '', ''],
    ['  heap in use per sandbox, at most (KiB)', ((Math.min(m.atStart.heapUsed, after) - m.atStartFew.heapUsed) / added / 1024).toFixed(1), '', ''],
    [`driver start → socket ready: ${FEW - 1} records / ${n} records (s)`, `${(m.startFewMs / 1000).toFixed(2)} / ${(m.startMs / 1000).toFixed(2)}`, '', ''],
    [`driver idle CPU with ${n} sandboxes, polling every ${ctx.pollMs} ms (% of one core, 3 s, no client calls)`, cpu.toFixed(1), '', ''],
    [`local Substrate idle CPU meanwhile (% of one core, 3 s)`, subCpu.toFixed(1), '', ''],
  ];
  if (tree.length > 1) rows.push(['  driver process tree RSS (with its child processes) (MiB)', mib(rssTree), '', '']);
  return {
    title: `ListSandboxes and watch bootstrap over ${n} sandboxes (median (min–max) of ${opts.runs})`,
    columns: ['figure', 'value', 'target', 'status'],
    rows,
    notes: [
      `Population (${(m.populateMs / 1000).toFixed(1)} s, not through CreateSandbox, which would resume ${n} gVisor actors): ${n - FEW} actors made with ateapi CreateActor (SUSPENDED, borrowing the template's golden snapshot, no sandbox process) from one pre-provisioned ActorTemplate, each with the driver's record (desired running, provisioned, a JWT-sized token, the gateway's sandbox spec) written through the driver's own RecordStore into its SQLite file (src/driver/records.ts, src/driver/record-backends.ts) exactly as CreateSandbox writes it. One of the ${n} is a running sandbox created through CreateSandbox.`,
      `The driver keeps its records in memory and loads them from <state-dir>/driver.db at start, so it was stopped before the population and restarted after it: these figures are what it serves after a restart. It is the \`substrate-driver serve\` binary (through tsx, as shipped), its own process (pid RSS from /proc/<pid>/smaps_rollup, peak = VmHWM); the local Substrate runs in another process.`,
      `Phases the gateway derives from the list: ${[...phases].map(([k, v]) => `${k} ${v}`).join(', ')} (suspended outside the gateway reads Ready=Unknown ResumesOnDemand: never ERROR or STOPPED).`,
      'ListSandboxes is read here with no receive limit and its encoded size measured (ListSandboxesResponse.encode); the gateway\'s tonic client refuses answers over 4 MiB. The watch bootstrap is timed from opening the stream to the last of the N snapshot events decoded by this client; "open → first event" is the driver\'s fresh ListActors and projection before it writes the snapshot. "start → socket ready" includes Node and tsx start-up, loading every record from its SQLite file and the first ListActors poll.',
      `Memory: RSS samples are taken 1 s after each point; V8 figures come from the driver's own /metrics (Node default metrics). Heap in use includes garbage not yet collected, so the per-sandbox figure (lower of the two ${n}-record heap figures minus the ${FEW - 1}-record one, per added sandbox) is an upper bound. Idle CPU is the driver process's utime+stime while nothing but its own poll runs: every interval it pages ListActors over the atespace and diffs (a sandbox is projected again only when its actor's version or its own state changed).`,
    ],
    samples: s,
    failures,
  };
}

export async function run(opts: BenchOptions): Promise<Table[]> {
  const lvl = process.env.SUBSTRATE_LOG_LEVEL;
  setLogLevel(lvl === 'debug' || lvl === 'info' || lvl === 'error' ? lvl : 'warn');
  if (process.getuid?.() !== 0) throw new Error('the driver suite runs a local Substrate on real gVisor and network namespaces: run it as root');
  const n = intFlag(opts, 'sandboxes', opts.quick ? 2000 : 10_000, 10);
  const calls = intFlag(opts, 'calls', opts.quick ? 500 : 1000, 10);
  const changes = intFlag(opts, 'changes', opts.quick ? 10 : 20, 2);
  const creates = intFlag(opts, 'creates', opts.quick ? 10 : 20, 1);
  const pollFlag = opts.flags['poll-interval-ms'] === undefined ? undefined : intFlag(opts, 'poll-interval-ms', 500, 50);
  if (n < FEW * 2) throw new UsageError(`--sandboxes must be at least ${FEW * 2}`);

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-bench-drv-'));
  const subDir = path.join(tmp, 'sub');
  let local: Child | undefined;
  let ctx: Ctx | undefined;
  let clients: Clients | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = () => (cleaning ??= doCleanup());
  const doCleanup = async () => {
    clients?.driverRaw.close();
    clients?.ateapiRaw.close();
    if (ctx) await stopDriver(ctx).catch(() => undefined);
    // The local Substrate suspends its running actor on SIGTERM; give it time, then make sure nothing is left.
    const code = await local?.stop(60_000);
    if (local && code !== 0) opts.log(`local Substrate exited ${code}: ${local.tail()}`);
    await removeInstanceLeftovers({ stateDir: subDir }).catch(() => undefined);
  };
  const leftovers = async (): Promise<string[]> => {
    const bad: string[] = [];
    const p = instancePaths(subDir);
    const procs = runscPidsOf(p.runscRoot);
    if (procs.length) bad.push(`runsc processes left under ${p.runscRoot}: ${procs.join(', ')}`);
    const ns = (await listNetns()).filter((x) => x.startsWith(p.netnsPrefix));
    if (ns.length) bad.push(`network namespaces left: ${ns.join(', ')}`);
    for (const ch of [local, ctx?.driver]) if (ch?.alive) bad.push(`${ch.what} (pid ${ch.pid}) still running`);
    return bad;
  };
  const unregister = onCleanup('driver suite', async () => {
    await cleanup();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  const tables: Table[] = [];
  const t0 = performance.now();
  try {
    opts.log(`driver: state in ${tmp}; starting the local Substrate (substrate-driver local serve, 2 workers)`);
    local = new Child('substrate-driver local serve', ['local', 'serve', '--state-dir', subDir, '--router-listen', '127.0.0.1:0', '--workers', '2', '--log-level', 'warn'], path.join(tmp, 'local.log'));
    let lj: LocalJson | null = null;
    for (const deadline = Date.now() + 180_000; !lj || lj.pid !== local.pid; ) {
      if (!local.alive) throw new Error(`the local Substrate exited (${local.exitCode}): ${local.tail()}`);
      if (Date.now() > deadline) throw new Error(`the local Substrate did not start within 180 s: ${local.tail()}`);
      if (isInterrupted()) throw new Error('interrupted');
      await sleep(50);
      lj = readLocalJson(subDir);
    }
    const image = (await ensureDefaultImage(subDir)).ref;

    const driverRaw = new ComputeDriverClient(`unix:${path.join(tmp, 'run', 'driver.sock')}`, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': -1,
    });
    const ateapiRaw = new ControlClient(lj.api_endpoint, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
    clients = { driverRaw, driver: unaryOf(driverRaw), ateapiRaw, ateapi: unaryOf(ateapiRaw, ateapiPb) };
    // The driver's config defaults (the same the `serve` child reads), for its poll interval and admission ack.
    const cfg = loadConfig({ env: {}, flags: { state_dir: subDir } });
    const api = clients.ateapi;
    try {
      await api('createAtespace', { atespace: { metadata: { name: WORKSPACE } } });
    } catch (e) {
      if ((e as { code?: number }).code !== grpc.status.ALREADY_EXISTS) throw e;
    }
    // The operator's pre-provisioned template (v0.4: an ateapi resource in the sandboxes' atespace), then its golden tag.
    const [tms] = await timed(async () => {
      await api('createActorTemplate', { actorTemplate: operatorTemplate(image) });
      for (const deadline = Date.now() + 180_000; ; ) {
        const t = await api<ActorTemplate>('getActorTemplate', { actorTemplate: { atespace: WORKSPACE, name: TEMPLATE } });
        const g = t.status?.goldenSnapshotStatus;
        if (g?.errorMessage) throw new Error(`template ${TEMPLATE_REF}: golden snapshot failed: ${g.errorMessage}`);
        if (g?.goldenTag?.name) break;
        if (Date.now() > deadline) throw new Error(`template ${TEMPLATE_REF} has no golden tag after 180 s`);
        if (isInterrupted()) throw new Error('interrupted');
        await sleep(100);
      }
    });
    opts.log(`driver: pre-provisioned template ${TEMPLATE_REF}: golden tag in ${(tms / 1000).toFixed(1)} s`);
    ctx = {
      opts,
      tmp,
      subDir,
      socket: path.join(tmp, 'run', 'driver.sock'),
      lj,
      image,
      c: clients,
      expected: new Map(),
      live: { id: randomUUID(), name: 'bench-live' },
      pollMs: pollFlag ?? cfg.pollIntervalMs,
      pollFlag,
      ack: cfg.admissionAck,
    };
    opts.machine['driver poll_interval_ms'] = String(ctx.pollMs);

    // The small population: FEW-1 suspended, then one created through the driver and running.
    await populate(ctx, FEW - 1);
    const startFewMs = await startDriver(ctx);
    const atStartFew = await memSample(ctx);
    opts.log(`driver: serving on ${ctx.socket} (pid ${ctx.driver!.pid}), ready in ${(startFewMs / 1000).toFixed(2)} s; creating the running sandbox through CreateSandbox`);
    const liveSb = gatewaySandbox(ctx.live.id, ctx.live.name, image, fakeToken());
    await clients.driver('validateSandboxCreate', { sandbox: { ...liveSb, spec: { ...liveSb.spec!, sandboxToken: '' } } });
    await clients.driver('createSandbox', { sandbox: liveSb });
    ctx.expected.set(ctx.live.id, ctx.live.name);
    for (const deadline = Date.now() + 180_000; ; ) {
      const r = await clients.driver<{ sandbox?: DriverSandbox }>('getSandbox', { sandboxId: ctx.live.id, name: ctx.live.name });
      const rd = r.sandbox ? readyOf(r.sandbox) : undefined;
      if (rd?.status === 'True') break;
      if (rd?.status === 'False') throw new Error(`the sandbox created through CreateSandbox failed: ${rd.reason}: ${rd.message}`);
      if (Date.now() > deadline) throw new Error(`the sandbox created through CreateSandbox is not Ready after 180 s: ${JSON.stringify(rd)}`);
      if (isInterrupted()) throw new Error('interrupted');
      await sleep(100);
    }

    const latency: LatencyResult[] = [];
    let afterPart1: MemSample | undefined;
    // [what, run, fatal: nothing after its failure is meaningful]
    const parts: Array<[string, () => Promise<void>, boolean?]> = [
      [
        `1/4 unary overhead (${calls} calls per RPC per run, ${FEW} sandboxes)`,
        async () => {
          tables.push(...(await unaryOverhead(ctx!, calls)));
          afterPart1 = await memSample(ctx!);
        },
      ],
      [
        `4/4 GetCapabilities 0.0.x vs v0.1, ValidateSandboxCreate ± admission re-check (${calls} calls per side per run, ${FEW} sandboxes)`,
        async () => void tables.push(await generationPairs(ctx!, calls)),
      ],
      [
        `4/4 CreateSandbox ± admission re-check (${creates} per side per run, each deleted at once, ${FEW} sandboxes)`,
        async () => void tables.push(await createRecheck(ctx!, creates)),
      ],
      [`3/4 watch latency (${FEW} sandboxes, ${changes} changes)`, async () => void latency.push(await watchLatency(ctx!, changes))],
      [
        `2/4 ListSandboxes and watch bootstrap over ${n} sandboxes`,
        async () => {
          afterPart1 ??= await memSample(ctx!);
          await stopDriver(ctx!);
          opts.log(`driver: stopped; populating ${n - FEW} more sandboxes (CreateActor + driver record each)`);
          const populateMs = await populate(ctx!, n - FEW);
          opts.log(`driver: populated in ${(populateMs / 1000).toFixed(1)} s; restarting the driver on ${n} records`);
          const startMs = await startDriver(ctx!);
          const atStart = await memSample(ctx!);
          opts.log(`driver: ready in ${(startMs / 1000).toFixed(2)} s, RSS ${(atStart.rss / MiB).toFixed(1)} MiB`);
          tables.push(await listAndBootstrap(ctx!, n, { populateMs, startFewMs, atStartFew, afterPart1, startMs, atStart }));
        },
        true,
      ],
      [`3/4 watch latency (${n} sandboxes, ${changes} changes)`, async () => void latency.push(await watchLatency(ctx!, changes))],
    ];
    for (const [what, fn, fatal] of parts) {
      if (isInterrupted()) break;
      opts.log(`driver: ${what} (load average ${loadAverage()})`);
      try {
        await fn();
      } catch (e) {
        if (isInterrupted()) break;
        opts.log(`driver: ${what} failed: ${(e as Error).message}`);
        tables.push({ title: what, columns: ['result'], rows: [['not measured']], failures: [(e as Error).message] });
        if (fatal) break;
      }
    }
    if (latency.length) tables.push(latencyTable(ctx, latency, changes));
  } finally {
    await finishSuite(tables, { t0, tmp, cleanup, leftovers, unregister, clean: 'no driver or Substrate process, runsc process, network namespace or state directory left' });
  }
  return tables;
}
