// Benchmark suite "local": the local Substrate (src/local) on real gVisor, through its Substrate v0.4 ateapi
// (gRPC on the instance's Unix socket), measured side by side in one run.
//   1. SuspendActor / ResumeActor through ateapi vs the same `runsc checkpoint` / `runsc restore` called directly
//      (same binary, same global flags, same /proc/sys/net mask wrapper, same bundle layout and image).
//   2. Cold boot vs golden-snapshot create to the first HTTP 200, for an idle server and for one that burns 3 s of
//      CPU at start. v0.4 has no boot flag: an actor created from a template borrows the template's golden
//      snapshot (golden); a cold boot is an actor whose snapshot belongs to another template (created from a twin
//      template, then UpdateActor onto this one: v0.4's TemplateReplaced, data only, so the resume boots it).
//   3. First HTTP answer through the router (ate-target-actor header) after a suspend (implicit resume).
//   4. Memory and idle CPU per running actor; processes and snapshot bytes per suspended actor.
//   5. Multiplexing: K actors on one worker, resumed, asked and suspended round-robin, state kept.
// Everything runs in a temporary state directory and is removed afterwards, on failure and on Ctrl-C too.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as ateapi from '../src/gen/ateapi.js';
import { ControlClient, type Actor } from '../src/gen/ateapi.js';
import { setLogLevel, setLogSink, type Level } from '../src/common/log.js';
import { startLocalSubstrate, type LocalSubstrateHandle } from '../src/local/index.js';
import { ensureDefaultImage } from '../src/local/images.js';
import { DEFAULT_ACTOR_LIMITS } from '../src/local/workload.js';
import { SnapshotStore } from '../src/local/snapshots.js';
import { createRuntime, MASK_SCRIPT, ociConfig, readLine, removeInstanceLeftovers, runscPidsOf, type GvisorRuntime } from '../src/local/runtime/gvisor.js';
import { childEnv, pidAlive, run as runCmd, spawnToFd } from '../src/local/runtime/exec.js';
import { listNetns, readdAddress } from '../src/local/runtime/netns.js';
import { instancePaths } from '../src/local/runtime/paths.js';
import type { WorkerSlot, WorkloadSpec } from '../src/local/runtime/types.js';
import {
  type BenchOptions,
  type SuiteOption,
  type Table,
  MiB,
  diskUsage,
  fmt,
  idleCpuPercent,
  intFlag,
  loadAverage,
  median,
  memoryOf,
  onCleanup,
  ratio,
  sandboxProcesses,
  sleep,
  isInterrupted,
  timed,
  UsageError,
  finishSuite,
} from './lib.js';

export const description = 'local Substrate on gVisor: suspend/resume vs raw runsc, cold vs golden, router, per-actor cost, multiplexing';
export const options: SuiteOption[] = [
  { name: 'actors', arg: 'K', help: 'actors multiplexed over one worker (default 30, 10 with --quick)' },
  { name: 'parts', arg: 'LIST', help: 'only these parts, e.g. 1,3 (1 suspend/resume vs runsc, 2 cold vs golden, 3 router, 4 cost per actor, 5 multiplexing)' },
];

const ATESPACE = 'bench';
const IDLE_WINDOW_MS = 3000;

/**
 * The workload: a Node HTTP server on port 80 keeping an in-memory counter (/count increments, /peek reads,
 * /readyz answers ok). INIT_MS > 0 burns that much CPU before listening (an app with an expensive start).
 */
const SERVER_JS = `
const http = require('http');
const init = Number(process.env.INIT_MS || 0), t0 = Date.now();
let spin = 0; while (Date.now() - t0 < init) spin++;
let n = 0; const born = Date.now();
http.createServer((q, s) => {
  if (q.url === '/readyz') return s.end('ok');
  if (q.url === '/count') { n++; return s.end(JSON.stringify({ n, born })); }
  if (q.url === '/peek') return s.end(JSON.stringify({ n, born }));
  s.end('hello');
}).listen(80);
`;

/** The workload's ActorTemplate (Substrate v0.4): a wakeup probe on /readyz, so its golden snapshot is taken at once. */
function template(name: string, image: string, initMs: number): ateapi.ActorTemplate {
  return ateapi.ActorTemplate.fromPartial({
    metadata: { atespace: ATESPACE, name },
    containers: [
      {
        name: 'app',
        image,
        command: ['/usr/bin/node', '-e', SERVER_JS],
        env: [{ name: 'INIT_MS', value: String(initMs) }],
        wakeupProbe: { httpGet: { path: '/readyz', port: 80 }, timeoutSeconds: 30 },
      },
    ],
    snapshotConfig: { onCommit: ateapi.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, storageLocation: 'gs://bench/snapshots' },
    sandboxConfig: { sandboxClass: ateapi.SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' },
  });
}

/** The twin of a template (same content, another name and uid): cold actors are created from it, then repointed. */
const twinOf = (tpl: string) => `${tpl}-twin`;

// ---- ateapi client (v0.4), router -----------------------------------------------------------------------------

type Rpc = <Res>(method: string, req: object) => Promise<Res>;

function controlClient(target: string): { rpc: Rpc; close(): void } {
  const client = new ControlClient(target, grpc.credentials.createInsecure());
  const rpc: Rpc = (method, req) =>
    new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, Function>)[method]!.bind(client);
      const type = (ateapi as unknown as Record<string, { fromPartial(o: object): object }>)[`${method[0]!.toUpperCase()}${method.slice(1)}Request`]!;
      fn(type.fromPartial(req), new grpc.Metadata(), { deadline: Date.now() + 60_000 }, (e: grpc.ServiceError | null, res: unknown) =>
        e ? reject(new Error(`${method}: ${grpc.status[e.code]} ${e.details}`)) : resolve(res as never),
      );
    });
  return { rpc, close: () => client.close() };
}

/** Creates a template and waits for its golden tag (the template's golden snapshot, published). */
async function createTemplate(rpc: Rpc, t: ateapi.ActorTemplate, timeoutMs = 180_000): Promise<void> {
  await rpc('createActorTemplate', { actorTemplate: t });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const cur = await rpc<ateapi.ActorTemplate>('getActorTemplate', { actorTemplate: { atespace: ATESPACE, name: t.metadata!.name } });
    const g = cur.status?.goldenSnapshotStatus;
    if (g?.errorMessage) throw new Error(`ActorTemplate ${ATESPACE}/${t.metadata!.name}: golden snapshot failed: ${g.errorMessage}`);
    if (g?.goldenTag?.name) return;
    if (Date.now() > deadline) throw new Error(`ActorTemplate ${ATESPACE}/${t.metadata!.name} has no golden tag after ${timeoutMs / 1000}s`);
    if (isInterrupted()) throw new Error('interrupted');
    await sleep(100);
  }
}

interface HttpResult {
  status: number;
  body: string;
}

/** One GET over a given connection (or a fresh TCP connection), no keep-alive. */
function httpGet(o: { host?: string; port?: number; headers: Record<string, string>; path: string; sock?: net.Socket; timeoutMs?: number }): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: o.host,
        port: o.port,
        path: o.path,
        headers: { ...o.headers, connection: 'close' },
        // A given connection replaces the agent; without one, a fresh connection without keep-alive.
        ...(o.sock ? { createConnection: () => o.sock! } : { agent: false }),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.setTimeout(o.timeoutMs ?? 60_000, () => req.destroy(new Error(`GET ${o.path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** GET through the router, addressed as Substrate v0.4 routes: `ate-target-actor: <atespace>/<actor>`. */
function viaRouter(routerUrl: string, actor: string, p: string): Promise<HttpResult> {
  const u = new URL(routerUrl);
  return httpGet({ host: u.hostname, port: Number(u.port), headers: { 'ate-target-actor': `${ATESPACE}/${actor}` }, path: p });
}

/** Polls until a 200 (every 10 ms); returns its body. */
async function until200(get: () => Promise<HttpResult>, timeoutMs = 60_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const r = await get();
      if (r.status === 200) return r.body;
      last = `HTTP ${r.status} ${r.body.trim().slice(0, 200)}`;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`no HTTP 200 within ${timeoutMs / 1000}s (last: ${last})`);
    if (isInterrupted()) throw new Error('interrupted');
    await sleep(10);
  }
}

const counterOf = (body: string) => (JSON.parse(body) as { n: number; born: number });

// ---- raw runsc, the same way src/local/runtime/gvisor.ts calls it: its exported MASK_SCRIPT, global flags and
// bundle config, so both sides run identical runsc commands.

const globalFlags = (rt: GvisorRuntime): string[] => rt.globalFlags(true);

/**
 * A sandbox driven with plain runsc commands on a worker slot of its own runtime instance (its own hub, netns and
 * forwarder; the runtime itself never sees this sandbox). HTTP reaches it through that instance's forwarder.
 */
class RawSandbox {
  id = '';
  pid = 0;
  private readonly deletes: Promise<unknown>[] = [];

  constructor(
    private readonly rt: GvisorRuntime,
    private readonly slot: WorkerSlot,
    private readonly spec: WorkloadSpec,
    private readonly logFile: string,
  ) {}

  private newId(): string {
    return `r${this.rt.tag}-${randomBytes(8).toString('hex')}`; // fixed length: runsc matches ids by prefix
  }

  /** Last start's split: the address re-add and the runsc command alone (ms). */
  lastReaddMs = 0;
  lastRunscMs = 0;

  private async start(kind: 'run' | 'restore', extra: string[]): Promise<number> {
    const id = this.newId();
    const bundle = path.join(this.rt.paths.bundles, id);
    fs.mkdirSync(bundle, { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(ociConfig(this.spec, this.slot.netns, `${this.rt.paths.cgroupParent}/${id}`)), { mode: 0o600 });
    const fd = fs.openSync(this.logFile, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o600);
    try {
      const t0 = performance.now();
      await readdAddress(this.slot.netns, this.slot.ip); // runsc takes the address off the veth at every start
      this.lastReaddMs = performance.now() - t0;
      // Exactly the runtime's command (src/local/runtime/gvisor.ts startSandbox), --pid-file included.
      const args = ['-m', '--propagation', 'private', '/bin/sh', '-ec', MASK_SCRIPT, this.rt.runscPath, ...globalFlags(this.rt), kind, ...extra, '-detach', '--pid-file', path.join(bundle, 'pid'), '--bundle', bundle, id];
      const code = await spawnToFd('unshare', args, fd, { timeoutMs: 120_000, env: childEnv({ set: { SBX_PROCSYS: this.rt.paths.procsysScratch } }) });
      const ms = performance.now() - t0;
      this.lastRunscMs = ms - this.lastReaddMs;
      if (code !== 0) throw new Error(`runsc ${kind} exited ${code}; see ${this.logFile}`);
      this.id = id;
      return ms;
    } finally {
      fs.closeSync(fd);
    }
  }

  /** The sandbox process's pid, from the --pid-file runsc wrote (after the timed part). */
  async learnPid(): Promise<void> {
    const pid = Number(fs.readFileSync(path.join(this.rt.paths.bundles, this.id, 'pid'), 'utf8').trim());
    if (!pid) throw new Error(`runsc wrote no pid for ${this.id}`);
    this.pid = pid;
  }

  boot(): Promise<number> {
    return this.start('run', []);
  }

  /** Time of `runsc restore -detach` (plus the address re-add it needs), as gvisor.ts runs it. */
  restore(img: string): Promise<number> {
    return this.start('restore', ['--image-path', img]);
  }

  /** `runsc checkpoint` plus the fsync of its image files and directory, for the last checkpoint (ms). */
  lastDurableMs = 0;

  /** Time of `runsc checkpoint`, as gvisor.ts runs it; afterwards waits for the sandbox to exit and deletes it. */
  async checkpoint(img: string): Promise<number> {
    fs.mkdirSync(img, { recursive: true, mode: 0o700 });
    const t0 = performance.now();
    const r = await runCmd(this.rt.runscPath, [...globalFlags(this.rt), 'checkpoint', `--compression=${this.rt.compression}`, '--image-path', img, this.id], { timeoutMs: 300_000 });
    const ms = performance.now() - t0;
    if (r.code !== 0) throw new Error(`runsc checkpoint ${this.id} failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    // The same checkpoint made durable the way the snapshot store makes it: fsync every file, then the directory.
    await Promise.all(fs.readdirSync(img).map((f) => fsyncFile(path.join(img, f))));
    await fsyncFile(img);
    this.lastDurableMs = performance.now() - t0;
    for (let i = 0; i < 500 && pidAlive(this.pid); i++) await sleep(10);
    this.deletes.push(this.forceDelete(this.id));
    this.id = '';
    this.pid = 0;
    return ms;
  }

  private async forceDelete(id: string): Promise<void> {
    await runCmd(this.rt.runscPath, [`--root=${this.rt.paths.runscRoot}`, 'delete', '--force', id], { timeoutMs: 60_000 });
    fs.rmSync(path.join(this.rt.paths.bundles, id), { recursive: true, force: true });
  }

  async get(p: string): Promise<HttpResult> {
    const sock = net.connect(this.rt.paths.forwarderSock);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', () => resolve());
      sock.once('error', reject);
    });
    sock.write(`CONNECT ${this.slot.ip}:80\n`);
    const line = await readLine(sock, 15_000);
    if (line !== 'OK' && !line.startsWith('OK ')) {
      sock.destroy();
      throw new Error(`forwarder: ${line}`);
    }
    return httpGet({ sock, headers: { host: `${this.slot.ip}:80` }, path: p, timeoutMs: 5_000 });
  }

  async destroy(): Promise<void> {
    if (this.id) {
      if (this.pid && pidAlive(this.pid)) process.kill(this.pid, 'SIGKILL');
      this.deletes.push(this.forceDelete(this.id));
      this.id = '';
    }
    await Promise.allSettled(this.deletes);
  }
}

/**
 * Reads the runtime's own timing logs while part 1 runs ("sandbox checkpointed" carries runscMs; the debug line
 * "runsc restore phases" carries the restore command's ms), so the table can show how much of ours is runsc
 * itself. Other log lines still reach stderr at the level the user asked for.
 */
function captureRuntimeTimings(): { checkpoint: number[]; restore: number[]; stop(): void } {
  const order: Record<string, number> = { debug: 10, info: 20, warn: 30, error: 40 };
  const want = ((process.env.SUBSTRATE_LOG_LEVEL as Level) in order ? process.env.SUBSTRATE_LOG_LEVEL : 'warn') as Level;
  const out = { checkpoint: [] as number[], restore: [] as number[] };
  setLogLevel('debug');
  setLogSink((line) => {
    try {
      const j = JSON.parse(line) as { level: string; msg: string; runscMs?: number; runsc?: number };
      if (j.msg === 'sandbox checkpointed' && typeof j.runscMs === 'number') out.checkpoint.push(j.runscMs);
      if (j.msg === 'runsc restore phases' && typeof j.runsc === 'number') out.restore.push(j.runsc);
      if ((order[j.level] ?? 40) >= order[want]!) process.stderr.write(line + '\n');
    } catch {
      process.stderr.write(line + '\n');
    }
  });
  return {
    ...out,
    stop() {
      setLogSink((line) => process.stderr.write(line + '\n'));
      setLogLevel(want);
    },
  };
}

// ---- the suite ---------------------------------------------------------------------------------------------

interface Ctx {
  opts: BenchOptions;
  h: LocalSubstrateHandle;
  rpc: Rpc;
  rawRt: GvisorRuntime;
  image: { ref: string; rootfs: string; digest: string };
  tmp: string;
  snapshots: SnapshotStore;
}

const ref = (name: string) => ({ actor: { atespace: ATESPACE, name } });

/** An actor of `tpl`: created from its golden tag (its first resume restores the template's golden snapshot). */
async function createActor(c: Ctx, name: string, tpl: string): Promise<Actor> {
  return c.rpc<Actor>('createActor', { actor: { metadata: { atespace: ATESPACE, name }, actorTemplate: { atespace: ATESPACE, name: tpl } } });
}

/**
 * An actor of `tpl` that cold-boots on its first resume: created from the twin template's golden tag, then
 * repointed onto `tpl` (UpdateActor while SUSPENDED). Its snapshot now belongs to another template (v0.4
 * TemplateReplaced: data only), which the local Substrate does not restore: ResumeActor boots the workload.
 */
async function createColdActor(c: Ctx, name: string, tpl: string): Promise<Actor> {
  const a = await createActor(c, name, twinOf(tpl));
  return c.rpc<Actor>('updateActor', { actor: { ...a, actorTemplate: { atespace: ATESPACE, name: tpl } } });
}

async function dropActor(c: Ctx, name: string): Promise<void> {
  await c.rpc('suspendActor', ref(name));
  await c.rpc('deleteActor', ref(name));
}

/** The directory of an actor's external snapshot on this machine (the snapshot store maps each URI to one). */
function snapshotDirOf(c: Ctx, a: Actor | undefined): string {
  const uri = a?.status?.externalSnapshot?.snapshotUri;
  return uri ? c.snapshots.dirOf(uri) : '';
}

// 1 -------------------------------------------------------------------------------------------------------------
async function suspendResume(c: Ctx): Promise<Table> {
  const { opts, h, rpc } = c;
  const failures: string[] = [];
  const s: Record<string, number[]> = {
    oursSuspend: [],
    oursResumeCall: [],
    oursResume200: [],
    rawCheckpoint: [],
    rawDurableCheckpoint: [],
    rawRestoreCall: [],
    rawRestore200: [],
    oursBytes: [],
    rawBytes: [],
    oursRunscCheckpoint: [],
    oursRunscRestore: [],
    rawRunscRestore: [],
  };
  // ateapi side: an actor of the idle template, resumed once (from the golden snapshot) and asked once.
  await createActor(c, 'cr', 'bench-idle');
  await rpc('resumeActor', ref('cr'));
  let oursN = counterOf(await until200(() => viaRouter(h.routerUrl, 'cr', '/count'))).n;
  // raw side: the same workload, booted with plain runsc on its own slot, in cgroups with the same limits
  // every actor of the local Substrate gets by default.
  const spec: WorkloadSpec = {
    command: ['/usr/bin/node', '-e', SERVER_JS],
    env: { INIT_MS: '0' },
    rootfs: c.image.rootfs,
    imageDigest: c.image.digest,
    egress: [],
    memoryLimitBytes: DEFAULT_ACTOR_LIMITS.memoryBytes,
    cpuMillis: DEFAULT_ACTOR_LIMITS.cpuMillis,
    pidsLimit: DEFAULT_ACTOR_LIMITS.pids,
    tmpBytes: DEFAULT_ACTOR_LIMITS.tmpBytes,
  };
  const slot = c.rawRt.slot(0);
  await c.rawRt.prepareWorker(slot);
  const raw = new RawSandbox(c.rawRt, slot, spec, path.join(c.tmp, 'raw-sandbox.log'));
  const stopRaw = onCleanup('raw sandbox', () => raw.destroy());
  const cap = captureRuntimeTimings();
  try {
    await raw.boot();
    await raw.learnPid();
    let rawN = counterOf(await until200(() => raw.get('/count'))).n;
    const imgDir = path.join(c.tmp, 'raw-images');
    let prevImg = '';
    for (let i = -1; i < opts.runs; i++) {
      const warm = i < 0; // one untimed warm-up cycle on each side
      const ck0 = cap.checkpoint.length;
      const rs0 = cap.restore.length;
      // ours: SuspendActor, then ResumeActor and the first 200 through the router
      const [sus, susRes] = await timed(() => rpc<{ actor: Actor }>('suspendActor', ref('cr')));
      const t0 = performance.now();
      await rpc('resumeActor', ref('cr'));
      const resCall = performance.now() - t0;
      const body = await until200(() => viaRouter(h.routerUrl, 'cr', '/count'));
      const res200 = performance.now() - t0;
      const n = counterOf(body).n;
      if (n !== oursN + 1) failures.push(`ateapi actor counter went ${oursN} → ${n} across suspend/resume (expected ${oursN + 1})`);
      oursN = n;
      // raw: runsc checkpoint, then runsc restore and the first 200 through the forwarder
      const img = path.join(imgDir, `img-${i + 1}`);
      const ck = await raw.checkpoint(img);
      if (prevImg) fs.rmSync(prevImg, { recursive: true, force: true });
      prevImg = img;
      const t1 = performance.now();
      const rs = await raw.restore(img);
      const rbody = await until200(() => raw.get('/count'));
      const r200 = performance.now() - t1;
      await raw.learnPid();
      const rn = counterOf(rbody).n;
      if (rn !== rawN + 1) failures.push(`raw sandbox counter went ${rawN} → ${rn} across checkpoint/restore (expected ${rawN + 1})`);
      rawN = rn;
      if (warm) continue;
      s.oursSuspend!.push(sus);
      s.oursResumeCall!.push(resCall);
      s.oursResume200!.push(res200);
      s.rawCheckpoint!.push(ck);
      s.rawDurableCheckpoint!.push(raw.lastDurableMs);
      s.rawRestoreCall!.push(rs);
      s.rawRestore200!.push(r200);
      s.rawRunscRestore!.push(raw.lastRunscMs);
      if (cap.checkpoint.length === ck0 + 1) s.oursRunscCheckpoint!.push(cap.checkpoint[ck0]!);
      if (cap.restore.length === rs0 + 1) s.oursRunscRestore!.push(cap.restore[rs0]!);
      const dir = snapshotDirOf(c, susRes.actor);
      if (dir) s.oursBytes!.push(diskUsage(dir).bytes);
      s.rawBytes!.push(diskUsage(img).bytes);
      opts.log(`  run ${i + 1}/${opts.runs}: suspend ${sus.toFixed(0)} vs checkpoint ${ck.toFixed(0)} ms; resume→200 ${res200.toFixed(0)} vs restore→200 ${r200.toFixed(0)} ms`);
    }
  } finally {
    cap.stop();
    await raw.destroy();
    stopRaw();
    await dropActor(c, 'cr');
  }
  const target = (ours: number[], rawS: number[]) => (median(ours) / median(rawS) <= 1.15 ? 'met' : 'not met');
  return {
    title: `Suspend and resume: ateapi vs runsc called directly (ms, median (min–max) of ${opts.runs})`,
    columns: ['operation', 'ateapi (local Substrate)', 'runsc directly', 'ours / raw', 'target ≤ 1.15×'],
    rows: [
      ['suspend: call returns', fmt(s.oursSuspend!), fmt(s.rawCheckpoint!), ratio(s.oursSuspend!, s.rawCheckpoint!), target(s.oursSuspend!, s.rawCheckpoint!)],
      ['resume → first HTTP 200', fmt(s.oursResume200!), fmt(s.rawRestore200!), ratio(s.oursResume200!, s.rawRestore200!), target(s.oursResume200!, s.rawRestore200!)],
      ['resume: call returns', fmt(s.oursResumeCall!), fmt(s.rawRestoreCall!), ratio(s.oursResumeCall!, s.rawRestoreCall!), '(not like for like)'],
      ['suspend vs `runsc checkpoint` + fsync of its image (durable, as the snapshot store writes it)', fmt(s.oursSuspend!), fmt(s.rawDurableCheckpoint!), ratio(s.oursSuspend!, s.rawDurableCheckpoint!), target(s.oursSuspend!, s.rawDurableCheckpoint!)],
      ['suspend: the `runsc checkpoint` command alone', fmt(s.oursRunscCheckpoint!), fmt(s.rawCheckpoint!), ratio(s.oursRunscCheckpoint!, s.rawCheckpoint!), ''],
      ['resume: the `runsc restore -detach` command alone', fmt(s.oursRunscRestore!), fmt(s.rawRunscRestore!), ratio(s.oursRunscRestore!, s.rawRunscRestore!), ''],
      ['snapshot on disk (MB)', fmt(s.oursBytes!, 1, 1e-6), fmt(s.rawBytes!, 1, 1e-6), '', ''],
    ],
    notes: [
      'Workload: a Node HTTP server holding a counter (idle); every cycle checks the counter continued on both sides.',
      'ateapi (Substrate v0.4, gRPC on the instance\'s Unix socket): SuspendActor / ResumeActor on a running actor (checkpoint into a new actor-owned external snapshot with fsync + atomic rename, worker bookkeeping in SQLite; resume restores from the actor\'s snapshot and waits for the wakeup probe). "→ first HTTP 200" = ResumeActor plus the first GET through the router (ate-target-actor header).',
      `runsc directly: the same runsc binary with the runtime's exact global flags (${'`'}--platform=${c.rawRt.platform} --net-disconnect-ok --network=sandbox --overlay2=none${'`'}, --compression=${c.rawRt.compression}), the same /proc/sys/net mask wrapper, bundle layout, image and cgroup limits (1Gi, 1 core, 1024 tasks, /tmp 256Mi: the local Substrate's defaults), on a netns slot of its own. Suspend = \`runsc checkpoint\` returning; resume = address re-add + \`runsc restore -detach\` returning, then polling GET through the hub forwarder every 10 ms until 200.`,
      '"the command alone" rows time just the runsc process inside each path (for ateapi, from the runtime\'s own timing logs): they show how much of the ateapi figure is runsc and how much is the local Substrate\'s own work (snapshot fsync and rename, sandbox teardown, bundle and address setup, readyz polling, SQLite, gRPC, router).',
      '"resume: call returns" is not like for like: ResumeActor returns only once the workload answers readyz, `runsc restore -detach` returns before the app is reachable; the like-for-like resume figure is "→ first HTTP 200".',
    ],
    samples: s,
    failures,
  };
}

// 2 -------------------------------------------------------------------------------------------------------------
async function coldVsGolden(c: Ctx): Promise<Table> {
  const { opts, h, rpc } = c;
  const failures: string[] = [];
  const s: Record<string, number[]> = {};
  const rows: Array<Array<string | number>> = [];
  let k = 0;
  for (const [label, tpl] of [
    ['idle Node HTTP server', 'bench-idle'],
    ['3 s CPU work at start (INIT_MS=3000)', 'bench-init3s'],
  ] as const) {
    const cold: number[] = [];
    const gold: number[] = [];
    for (let i = 0; i < opts.runs; i++) {
      for (const boot of [true, false]) {
        const name = `${boot ? 'cold' : 'gold'}-${k++}`;
        if (boot) await createColdActor(c, name, tpl);
        else await createActor(c, name, tpl);
        const wall = Date.now();
        const t0 = performance.now();
        await rpc('resumeActor', ref(name));
        const body = await until200(() => viaRouter(h.routerUrl, name, '/peek'));
        const ms = performance.now() - t0;
        const born = counterOf(body).born;
        // A cold boot starts the process now; a golden restore brings back one born before this call.
        if (boot && born < wall - 1000) failures.push(`${name}: cold actor, but the process was born before the call (restored, not booted)`);
        if (!boot && born >= wall) failures.push(`${name}: golden actor, but the process was born during the call (not restored from the golden snapshot)`);
        (boot ? cold : gold).push(ms);
        await dropActor(c, name);
      }
      opts.log(`  ${tpl} run ${i + 1}/${opts.runs}: cold ${cold.at(-1)!.toFixed(0)} ms, golden ${gold.at(-1)!.toFixed(0)} ms`);
    }
    s[`${tpl}.cold`] = cold;
    s[`${tpl}.golden`] = gold;
    rows.push([label, fmt(cold), fmt(gold), ratio(cold, gold), median(gold) <= 500 ? 'met' : 'not met']);
  }
  return {
    title: `Cold boot vs golden-snapshot create: ResumeActor on a new actor → first HTTP 200 through the router (ms, median (min–max) of ${opts.runs})`,
    columns: ['workload', 'cold boot', 'golden snapshot', 'cold / golden', 'target: golden ≤ 500 ms'],
    rows,
    notes: [
      'Each run creates two fresh actors of the same template (wakeup probe on /readyz, golden tag published) and times ResumeActor plus polling GET /peek through the router every 10 ms until 200. Golden: CreateActor from the template (it borrows the golden tag\'s snapshot); ResumeActor restores it. Cold: CreateActor from a twin template (same content, another uid), then UpdateActor onto this template; its snapshot was taken under another template (v0.4 TemplateReplaced, data only), so ResumeActor boots the workload and waits for its wakeup probe.',
      'The process birth time the workload reports confirms which path ran (cold: born during the call; golden: born before, in the golden actor).',
    ],
    samples: s,
    failures,
  };
}

// 3 -------------------------------------------------------------------------------------------------------------
async function routerImplicitResume(c: Ctx): Promise<Table> {
  const { opts, h, rpc } = c;
  const failures: string[] = [];
  const xs: number[] = [];
  await createActor(c, 'routed', 'bench-idle');
  let n = counterOf(await until200(() => viaRouter(h.routerUrl, 'routed', '/count'))).n;
  for (let i = 0; i < opts.runs; i++) {
    await rpc('suspendActor', ref('routed'));
    const [ms, r] = await timed(() => viaRouter(h.routerUrl, 'routed', '/count'));
    if (r.status !== 200) failures.push(`router answered ${r.status} after a suspend: ${r.body.trim()}`);
    else {
      const m = counterOf(r.body).n;
      if (m !== n + 1) failures.push(`counter went ${n} → ${m} across the implicit resume`);
      n = m;
    }
    xs.push(ms);
  }
  await dropActor(c, 'routed');
  return {
    title: `Implicit resume: first HTTP answer through the router to a suspended actor (ms, median (min–max) of ${opts.runs})`,
    columns: ['request', 'time to HTTP 200'],
    rows: [['GET /count to a SUSPENDED actor (router calls ResumeActor, then proxies)', fmt(xs)]],
    samples: { routerAfterSuspend: xs },
    failures,
  };
}

// 4 -------------------------------------------------------------------------------------------------------------
async function perActorCost(c: Ctx): Promise<Table> {
  const { opts, h, rpc } = c;
  const failures: string[] = [];
  type M = { procs: number[]; rss: number[]; pss: number[]; cpu: number[] };
  const restored: M = { procs: [], rss: [], pss: [], cpu: [] };
  const cold: M = { procs: [], rss: [], pss: [], cpu: [] };
  const suspended = { procs: [] as number[], bytes: [] as number[], allocated: [] as number[] };

  const measureRunning = async (name: string, into: M) => {
    await until200(() => viaRouter(h.routerUrl, name, '/count'));
    await sleep(1000); // let the restore or boot settle before sampling
    const hd = h.actors.sandboxOf(ATESPACE, name);
    if (!hd) throw new Error(`actor ${name} has no sandbox while RUNNING`);
    const needle = `/bundles/${hd.sandboxId}`;
    const procs = sandboxProcesses(needle, [hd.pid]);
    const mem = memoryOf(procs);
    const cpu = await idleCpuPercent(() => sandboxProcesses(needle, [hd.pid]), IDLE_WINDOW_MS);
    into.procs.push(procs.length);
    into.rss.push(mem.rss);
    into.pss.push(mem.pss);
    into.cpu.push(cpu);
    return needle;
  };
  const afterSuspend = async (name: string, needle: string, a: Actor) => {
    let left = sandboxProcesses(needle);
    for (let i = 0; i < 100 && left.length; i++) {
      await sleep(50);
      left = sandboxProcesses(needle);
    }
    suspended.procs.push(left.length);
    if (left.length) failures.push(`suspended actor ${name} still has ${left.length} process(es): ${left.join(', ')}`);
    const dir = snapshotDirOf(c, a);
    if (!dir) failures.push(`suspended actor ${name} has no external snapshot`);
    else {
      const du = diskUsage(dir);
      suspended.bytes.push(du.bytes);
      suspended.allocated.push(du.allocated);
    }
  };

  await createActor(c, 'mem', 'bench-idle');
  try {
    for (let i = 0; i < opts.runs; i++) {
      await rpc('resumeActor', ref('mem')); // restored (golden snapshot first, then its own)
      const needle = await measureRunning('mem', restored);
      const { actor } = await rpc<{ actor: Actor }>('suspendActor', ref('mem'));
      await afterSuspend('mem', needle, actor);
      const cname = `memc-${i}`;
      await createColdActor(c, cname, 'bench-idle');
      await rpc('resumeActor', ref(cname));
      await measureRunning(cname, cold);
      await dropActor(c, cname);
      opts.log(`  run ${i + 1}/${opts.runs}: restored PSS ${(restored.pss.at(-1)! / MiB).toFixed(1)} MiB, cold PSS ${(cold.pss.at(-1)! / MiB).toFixed(1)} MiB`);
    }
  } finally {
    await dropActor(c, 'mem').catch(() => undefined);
  }
  const row = (label: string, m: M) => [label, fmt(m.procs), fmt(m.rss, 1, 1 / MiB), fmt(m.pss, 1, 1 / MiB), fmt(m.cpu, 2), '–'];
  return {
    title: `Cost per actor: running vs suspended (median (min–max) of ${opts.runs})`,
    columns: ['actor state', 'host processes', 'RSS (MiB)', 'PSS (MiB)', `idle CPU (% of one core, ${IDLE_WINDOW_MS / 1000} s)`, 'snapshot on disk (MB)'],
    rows: [
      row('running, restored from a snapshot', restored),
      row('running, cold-booted', cold),
      ['suspended', fmt(suspended.procs), '0', '0', '0', `${fmt(suspended.bytes, 1, 1e-6)} (allocated ${fmt(suspended.allocated, 1, 1e-6)})`],
    ],
    notes: [
      'Processes of one sandbox: runsc-sandbox, runsc-gofer and their children (the ptrace stub processes holding the workload\'s memory). RSS and PSS are summed from /proc/<pid>/smaps_rollup (RSS counts memory shared between them, e.g. the sentry memory file mapped into the stubs, once per process; PSS splits it). Idle CPU is utime+stime from /proc/<pid>/stat over the window.',
      'A suspended actor is only its external snapshot directory (uncompressed image: checkpoint.img, pages.img, pages_meta.img, meta.json); its sandbox processes are counted after SuspendActor returns (the runtime removes the runsc container in the background). Cold-booted: an actor repointed from the twin template (see the cold vs golden table).',
    ],
    samples: {
      'restored.rss': restored.rss,
      'restored.pss': restored.pss,
      'restored.cpuPct': restored.cpu,
      'cold.rss': cold.rss,
      'cold.pss': cold.pss,
      'cold.cpuPct': cold.cpu,
      'suspended.bytes': suspended.bytes,
    },
    failures,
  };
}

// 5 -------------------------------------------------------------------------------------------------------------
async function multiplexing(c: Ctx, actors: number): Promise<Table> {
  const { opts, h, rpc } = c;
  const failures: string[] = [];
  const rounds = 2;
  const { workers } = await rpc<{ workers: ateapi.Worker[] }>('listWorkers', { pageSize: 1000 });
  if (workers.length !== 1) failures.push(`expected exactly 1 worker, ListWorkers shows ${workers.length}`);
  const names = Array.from({ length: actors }, (_, i) => `mx-${String(i).padStart(3, '0')}`);
  for (const n of names) await createActor(c, n, 'bench-idle');
  const cycle: number[] = [];
  const resume: number[] = [];
  const suspend: number[] = [];
  let kept = 0;
  const t0 = performance.now();
  for (let r = 1; r <= rounds; r++) {
    for (const n of names) {
      const c0 = performance.now();
      const [rs] = await timed(() => rpc('resumeActor', ref(n)));
      const res = await viaRouter(h.routerUrl, n, '/count');
      const [ss] = await timed(() => rpc('suspendActor', ref(n)));
      cycle.push(performance.now() - c0);
      resume.push(rs);
      suspend.push(ss);
      const got = res.status === 200 ? counterOf(res.body).n : NaN;
      if (got !== r) failures.push(`${n} round ${r}: counter ${res.status === 200 ? got : `HTTP ${res.status}`}, expected ${r}`);
      else if (r === rounds) kept++;
    }
    opts.log(`  round ${r}/${rounds}: ${actors} actors cycled, ${((performance.now() - t0) / 1000).toFixed(1)} s so far`);
  }
  const total = performance.now() - t0;
  for (const n of names) await c.rpc('deleteActor', ref(n));
  return {
    title: `Multiplexing: ${actors} actors over 1 worker, round-robin resume → GET /count → suspend, ${rounds} rounds`,
    columns: ['workers', 'actors', 'cycles', 'state kept (counter continued)', 'per cycle (ms)', 'resume (ms)', 'suspend (ms)', 'total (s)', 'actors per worker', 'target ≥ 30'],
    rows: [[1, actors, cycle.length, `${kept}/${actors}`, fmt(cycle), fmt(resume), fmt(suspend), (total / 1000).toFixed(1), kept, kept >= 30 ? 'met' : actors < 30 ? `n/a (--actors ${actors})` : 'not met']],
    notes: ['Local Substrate with one worker in the default pool; every actor is new (CreateActor from the template\'s golden tag), so round 1 restores from the template\'s golden snapshot and round 2 from the actor\'s own external snapshot (counter must read 2).'],
    samples: { cycle, resume, suspend },
    failures,
  };
}

export async function run(opts: BenchOptions): Promise<Table[]> {
  const lvl = process.env.SUBSTRATE_LOG_LEVEL;
  setLogLevel(lvl === 'debug' || lvl === 'info' || lvl === 'error' ? lvl : 'warn');
  if (process.getuid?.() !== 0) throw new Error('the local suite runs real gVisor sandboxes and network namespaces: run it as root');
  const actors = intFlag(opts, 'actors', opts.quick ? 10 : 30);
  const partsFlag = opts.flags['parts'];
  const only = partsFlag === undefined ? [1, 2, 3, 4, 5] : String(partsFlag).split(',').map((x) => Number(x.trim()));
  if (only.some((n) => !Number.isInteger(n) || n < 1 || n > 5)) throw new UsageError(`--parts must list part numbers 1-5 separated by commas, got "${partsFlag}"`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-bench-'));
  const subDir = path.join(tmp, 'sub');
  const rawDir = path.join(tmp, 'raw');
  let h: LocalSubstrateHandle | undefined;
  let client: ReturnType<typeof controlClient> | undefined;
  let rawRt: GvisorRuntime | undefined;
  const leftovers = async (): Promise<string[]> => {
    const bad: string[] = [];
    for (const d of [subDir, rawDir]) {
      const p = instancePaths(d);
      const procs = runscPidsOf(p.runscRoot);
      if (procs.length) bad.push(`runsc processes left under ${p.runscRoot}: ${procs.join(', ')}`);
      const ns = (await listNetns()).filter((n) => n.startsWith(p.netnsPrefix));
      if (ns.length) bad.push(`network namespaces left: ${ns.join(', ')}`);
    }
    return bad;
  };
  let cleaning: Promise<void> | undefined;
  const cleanup = () => (cleaning ??= doCleanup());
  const doCleanup = async () => {
    client?.close();
    await h?.stop().catch((e: Error) => opts.log(`stopping the local Substrate failed: ${e.message}`));
    await rawRt?.shutdown().catch((e: Error) => opts.log(`stopping the raw runtime failed: ${e.message}`));
    await removeInstanceLeftovers({ stateDir: subDir }).catch(() => undefined);
    await removeInstanceLeftovers({ stateDir: rawDir }).catch(() => undefined);
  };
  const unregister = onCleanup('local suite', async () => {
    await cleanup();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  const tables: Table[] = [];
  const t0 = performance.now();
  try {
    opts.log(`local: state in ${tmp}; starting the local Substrate (1 worker) and a raw runsc slot`);
    h = await startLocalSubstrate({ stateDir: subDir, workers: 1, routerListen: '127.0.0.1:0' });
    // The v0.4 ateapi over real gRPC on the instance's owner-only Unix socket.
    client = controlClient(`unix:${h.socketPath}`);
    rawRt = createRuntime({ stateDir: rawDir });
    await rawRt.init();
    opts.machine['runsc'] = rawRt.runscVersion;
    opts.machine['gVisor platform'] = `${rawRt.platform} (checkpoint compression: ${rawRt.compression})`;
    const img = await ensureDefaultImage(subDir);
    const c: Ctx = { opts, h, rpc: client.rpc, rawRt, image: { ref: img.ref, rootfs: img.rootfs, digest: img.digest }, tmp, snapshots: new SnapshotStore(subDir) };
    await c.rpc('createAtespace', { atespace: { metadata: { name: ATESPACE } } });
    // Templates one after the other: each golden actor needs the single worker. The twins are only needed by
    // the cold-boot figures (parts 2 and 4).
    const tpls: Array<[string, number]> = [
      ['bench-idle', 0],
      ['bench-init3s', 3000],
    ];
    if (only.includes(2) || only.includes(4)) tpls.push([twinOf('bench-idle'), 0]);
    if (only.includes(2)) tpls.push([twinOf('bench-init3s'), 3000]);
    for (const [name, initMs] of tpls) {
      const [ms] = await timed(() => createTemplate(c.rpc, template(name, img.ref, initMs)));
      opts.log(`local: template ${name}: golden tag in ${(ms / 1000).toFixed(1)} s`);
    }
    const parts: Array<[string, () => Promise<Table>]> = [
      ['1/5 suspend/resume vs raw runsc', () => suspendResume(c)],
      ['2/5 cold boot vs golden snapshot', () => coldVsGolden(c)],
      ['3/5 router implicit resume', () => routerImplicitResume(c)],
      ['4/5 cost per actor', () => perActorCost(c)],
      [`5/5 multiplexing ${actors} actors on 1 worker`, () => multiplexing(c, actors)],
    ];
    for (const [i, [what, fn]] of parts.entries()) {
      if (!only.includes(i + 1)) continue;
      if (isInterrupted()) break;
      opts.log(`local: ${what} (load average ${loadAverage()})`);
      try {
        tables.push(await fn());
      } catch (e) {
        if (isInterrupted()) break;
        opts.log(`local: ${what} failed: ${(e as Error).message}`);
        tables.push({ title: what, columns: ['result'], rows: [['not measured']], failures: [(e as Error).message] });
      }
    }
  } finally {
    await finishSuite(tables, { t0, tmp, cleanup, leftovers, unregister, clean: 'no runsc process, network namespace or state directory left' });
  }
  return tables;
}

async function fsyncFile(p: string): Promise<void> {
  const fh = await fs.promises.open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
