// `npm run soak`: a bounded soak test of the local Substrate (Substrate v0.4 API) under faults.   npm run soak -- --help
//
// Starts the real `substrate-driver local serve` as a child process (its output goes to a log file), creates the
// atespace and the counter ActorTemplate over ateapi (CreateActorTemplate; its golden snapshot is taken at once
// thanks to its wakeup probe), creates N actors from it and resumes them. Then, cycle after cycle until the
// time is up, every actor gets one operation picked by a seeded random generator (counter requests through
// the router by `ate-target-actor`, suspend+resume, pause+resume, migrate = suspend+resume, possibly onto
// another worker), while faults are injected on a schedule from the same seed: kill -9 of an actor's runsc
// sandbox process, running or while a resume restores it, and every --kill-every cycles kill -9 of `local serve`
// itself. What v0.4 promises, and what the soak holds it to:
//   - a killed sandbox makes its actor CRASHED; RevertActor → SUSPENDED at its last EXTERNAL snapshot (the last
//     suspend; a pause snapshot is node-local and consumed by its resume), ResumeActor brings it back with that
//     memory: the counter may go back to what the last suspend saw, never further;
//   - kill -9 of the server: running sandboxes keep running and the next start adopts them, memory intact;
//   - otherwise counters only go up.
// After every fault and at the end of every cycle every actor's counter is read with /peek and compared with
// what the soak expects; an actor found short has lost memory. An actor found CRASHED that no kill of the soak
// explains is a failure.
//
// At the end the local Substrate is stopped with SIGTERM (it suspends every actor) and the soak checks that
// nothing was lost or leaked: every actor still in the instance's database and SUSPENDED, nothing locked, no
// runsc process and no network namespace of the instance left, no snapshot directory nothing references (nor a
// superseded one, nor a partial checkpoint). Then it starts the local Substrate once more, checks the counters
// survived the clean stop, deletes the actors (which removes their snapshots), the template and the atespace,
// and stops it again.
//
// Progress goes to stderr, one line per cycle or fault; the result table goes to stdout. Exit status: 0 when
// nothing was lost or leaked and nothing failed, 1 otherwise, 2 for a bad command line, 130 when interrupted.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as grpcTypes from '@grpc/grpc-js';
import type { Actor, ActorTemplate, ControlClient, Tag, Worker } from '../src/gen/ateapi.js';
import type { LocalJson } from '../src/local/index.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(REPO_ROOT, 'bin', 'substrate-driver.js');
const ATESPACE = 'soak';
const TEMPLATE = 'soak-counter';

// ---- command line --------------------------------------------------------------------------------------------

export const USAGE = `Usage: npm run soak -- [options]

A bounded soak test of the local Substrate (gVisor actors) under faults: counter requests, suspend/resume,
pause/resume and migrations, with kill -9 of actor sandboxes and of the local Substrate process itself.
Checks that no actor loses memory it should keep, and that nothing is lost or leaked at the end.
Progress on stderr, a result table on stdout. Exit 0: nothing lost, leaked or failed; 1: something was;
2: bad command line; 130: interrupted (Ctrl-C stops cleanly and prints the table so far).

Options:
  --minutes N      length of the soak, setup included (default 5; > 0, fractional allowed, e.g. 0.5);
                   stopping and the final checks take at most one more minute
  --actors N       actors to run (default 4, 1..32); the local Substrate gets N+2 workers
  --seed N         seed of the operation and fault schedule (integer 0..4294967295; default from the clock,
                   printed, so a run can be repeated)
  --state-dir DIR  state directory of the local Substrate (default: a fresh temporary directory, removed at
                   the end unless --keep); must not hold a local Substrate already
  --keep           keep the state directory (and its actors) and the serve log at the end
  --kill-every N   kill -9 the local Substrate every N cycles (default 5; 0 = never)
  --help           this text
`;

export class UsageError extends Error {}

export interface SoakOptions {
  help: boolean;
  minutes: number;
  actors: number;
  seed: number;
  /** False when the seed came from the clock. */
  seedGiven: boolean;
  stateDir?: string;
  keep: boolean;
  killEvery: number;
}

const VALUED = new Set(['minutes', 'actors', 'seed', 'state-dir', 'kill-every']);
const BOOLEAN = new Set(['help', 'keep']);

/** Parses the soak's flags; throws UsageError with a message naming the flag and what it accepts. */
export function parseSoakArgs(argv: string[], now = Date.now()): SoakOptions {
  const raw = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h') {
      raw.set('help', true);
      continue;
    }
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument "${a}"; this command takes only --options (see --help)`);
    const eq = a.indexOf('=');
    const name = a.slice(2, eq > 0 ? eq : undefined);
    if (!VALUED.has(name) && !BOOLEAN.has(name)) throw new UsageError(`unknown option --${name} (see --help)`);
    if (raw.has(name)) throw new UsageError(`--${name} was given more than once`);
    if (BOOLEAN.has(name)) {
      if (eq > 0) throw new UsageError(`--${name} takes no value`);
      raw.set(name, true);
      continue;
    }
    let v: string | undefined;
    if (eq > 0) v = a.slice(eq + 1);
    else {
      v = argv[i + 1];
      // A following option is not a value ("--minutes --actors 3"); a negative number is, and is refused below.
      if (v !== undefined && v.startsWith('--')) v = undefined;
      else i++;
    }
    if (v === undefined || v === '') throw new UsageError(`--${name} needs a value`);
    raw.set(name, v);
  }
  const str = (name: string) => raw.get(name) as string | undefined;
  const num = (name: string, dflt: number, ok: (n: number) => boolean, what: string): number => {
    const v = str(name);
    if (v === undefined) return dflt;
    const n = /^[+-]?(\d+\.?\d*|\.\d+)$/.test(v.trim()) ? Number(v) : NaN;
    if (!Number.isFinite(n) || !ok(n)) throw new UsageError(`--${name} must be ${what}, got "${v}"`);
    return n;
  };
  const minutes = num('minutes', 5, (n) => n > 0 && n <= 7 * 24 * 60, 'a number of minutes greater than 0 (e.g. 2 or 0.5)');
  const actors = num('actors', 4, (n) => Number.isInteger(n) && n >= 1 && n <= 32, 'an integer from 1 to 32');
  const seedGiven = raw.has('seed');
  const seed = num('seed', now % 4_294_967_296, (n) => Number.isInteger(n) && n >= 0 && n <= 4_294_967_295, 'an integer from 0 to 4294967295');
  const killEvery = num('kill-every', 5, (n) => Number.isInteger(n) && n >= 0, 'an integer ≥ 0 (0 = never)');
  const stateDir = str('state-dir');
  return { help: raw.get('help') === true, minutes, actors, seed, seedGiven, stateDir: stateDir ? path.resolve(stateDir) : undefined, keep: raw.get('keep') === true, killEvery };
}

// ---- small pieces ----------------------------------------------------------------------------------------------

/** mulberry32: a small, fast, seedable generator; the same seed gives the same schedule. */
export function rngOf(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Op = { kind: 'count'; k: number } | { kind: 'suspend' } | { kind: 'pause' } | { kind: 'migrate' };

export interface CyclePlan {
  ops: Op[];
  /**
   * kill -9 of one actor's sandbox, before the operation of actor `at` (at = N: after the last one); with
   * `duringResume`, of the sandbox a resume is restoring (suspend, resume, kill while it restores or waits
   * for readiness) instead of a running one.
   */
  workerKill?: { victim: number; at: number; duringResume: boolean };
  serverKill: boolean;
}

/** The schedule of one cycle: drawn in a fixed order, so it depends only on the seed, never on outcomes. */
export function planCycle(rng: () => number, cycle: number, actors: number, killEvery: number): CyclePlan {
  const ops: Op[] = [];
  for (let i = 0; i < actors; i++) {
    const r = rng();
    const k = 1 + Math.floor(rng() * 3);
    ops.push(r < 0.4 ? { kind: 'count', k } : r < 0.6 ? { kind: 'suspend' } : r < 0.8 ? { kind: 'pause' } : { kind: 'migrate' });
  }
  const kill = rng() < 0.25;
  const victim = Math.floor(rng() * actors);
  const at = Math.floor(rng() * (actors + 1));
  // duringResume comes from the draws above (no extra draw), so a seed's other choices stay as they were.
  return { ops, workerKill: kill ? { victim, at, duringResume: (victim + at + cycle) % 2 === 1 } : undefined, serverKill: killEvery > 0 && cycle % killEvery === 0 };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));


function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

function msText(ms: number): string {
  if (!Number.isFinite(ms)) return '–';
  return ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

function clock(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

class TimedOut extends Error {}

function errText(e: unknown): string {
  const se = e as Partial<grpcTypes.ServiceError>;
  if (typeof se?.code === 'number' && typeof se.details === 'string') return `${GRPC_CODE_NAMES[se.code] ?? `code ${se.code}`}: ${se.details}`;
  return e instanceof Error ? e.message : String(e);
}

const GRPC_CODE_NAMES: Record<number, string> = {
  1: 'CANCELLED',
  2: 'UNKNOWN',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  6: 'ALREADY_EXISTS',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
};
const ABORTED = 10;
const UNAVAILABLE = 14;

// ---- the soak ---------------------------------------------------------------------------------------------------

interface ActorTrack {
  name: string;
  /** The counter the actor must answer with (at least). */
  expected: number;
  /** The counter its latest EXTERNAL snapshot holds: where RevertActor sends it back to after a crash. */
  snapshotN: number;
  /** The URI of the actor's external snapshot as last seen: a change means a suspend took a new one. */
  snapshotKey: string;
  /** What happened to it since its counter was last verified (for the report of a loss). */
  since: string[];
  losses: number;
}

interface Loss {
  cycle: number;
  actor: string;
  after: string;
  expected: number;
  got: number;
}

interface Failure {
  at: string;
  what: string;
}

interface Report {
  startedAt: number;
  endedAt: number;
  opts: SoakOptions;
  machine: Record<string, string>;
  runsc: string;
  cycles: number;
  counts: number;
  suspends: number;
  pauses: number;
  migrations: number;
  migrationsMoved: number;
  migrationsStayed: number;
  workerKills: number;
  workerKillsDuringResume: number;
  /** CRASHED actors brought back by RevertActor → ResumeActor (each after a kill of the soak). */
  recoveries: number;
  /** kill -9 of a sandbox → the actor seen CRASHED (ms). */
  crashNoticedMs: number[];
  /** RevertActor + ResumeActor of a CRASHED actor (ms). */
  recoveryMs: number[];
  /** Actors found CRASHED that no kill of the soak explains. */
  unexpectedCrashes: number;
  serverKills: number;
  restartServingMs: number[];
  restartAnsweringMs: number[];
  losses: Loss[];
  aheads: string[];
  failures: Failure[];
  actorsLost: number | undefined;
  runscLeft: number | undefined;
  netnsLeft: number | undefined;
  snapshotsLeaked: number | undefined;
  snapshotDetails: string[];
  perActorSnapshots: string;
  cleanStopChecked: string;
  deleteChecked: string;
  interrupted: boolean;
  timedOut: boolean;
  /** Set when the soak had to kill what it started and remove the instance's leftovers itself. */
  forcedCleanup: boolean;
  logFile: string;
  stateDir: string;
  stateDirKept: boolean;
  tracks: ActorTrack[];
}

/** The local Substrate as a child process: `node bin/substrate-driver.js local serve`, output to a log file. */
class Serve {
  proc: ChildProcess | null = null;
  exited: Promise<number | null> = Promise.resolve(null);
  info!: LocalJson;
  client: ControlClient | null = null;
  private closeClient: (() => void) | null = null;

  constructor(
    private readonly m: Modules,
    readonly stateDir: string,
    readonly workers: number,
    readonly logFile: string,
  ) {}

  get running(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Starts it and waits for local.json naming the new process; returns the time that took. */
  async start(timeoutMs: number): Promise<number> {
    const t0 = performance.now();
    const fd = openSync(this.logFile, 'a', 0o600);
    let child: ChildProcess;
    try {
      child = spawn(
        process.execPath,
        [BIN, 'local', 'serve', '--state-dir', this.stateDir, '--router-listen', '127.0.0.1:0', '--workers', String(this.workers), '--log-level', 'info'],
        // Its own process group: a Ctrl-C at the terminal reaches the soak, which stops it in order.
        this.m.spawnOptions({ stdio: ['ignore', fd, fd] as ['ignore', number, number], detached: true, env: this.m.childEnv({ prefixes: ['SUBSTRATE_', 'OPENSHELL_'] }) }),
      );
    } finally {
      closeSync(fd);
    }
    this.proc = child;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : null)));
      child.once('error', () => resolve(null));
    });
    const file = path.join(this.stateDir, 'local.json');
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (existsSync(file)) {
        try {
          const info = JSON.parse(readFileSync(file, 'utf8')) as LocalJson;
          if (info.pid === child.pid) {
            this.info = info;
            this.connect();
            return performance.now() - t0;
          }
        } catch {
          // written atomically; a parse error is a file from another moment: read again
        }
      }
      if (!this.running) throw new Error(`local serve exited (status ${child.exitCode ?? child.signalCode}) before it was ready; see ${this.logFile}`);
      await sleep(25);
    }
    throw new TimedOut(`local serve did not write local.json with its pid within ${Math.round(timeoutMs / 1000)} s; see ${this.logFile}`);
  }

  private connect(): void {
    this.closeClient?.();
    // The instance's owner-only Unix socket (local.json socket_path): no token needed.
    const c = this.m.controlClient(`unix:${this.info.socket_path}`);
    this.client = c.client;
    this.closeClient = c.close;
  }

  disconnect(): void {
    this.closeClient?.();
    this.closeClient = null;
    this.client = null;
  }

  async kill9(): Promise<void> {
    if (this.proc && this.running) this.proc.kill('SIGKILL');
    await Promise.race([this.exited, sleep(10_000)]);
    this.disconnect();
  }

  /** SIGTERM (a clean stop: running actors are suspended); SIGKILL when it does not end in time. */
  async term(timeoutMs: number): Promise<{ code: number | null; killed: boolean }> {
    this.disconnect();
    if (!this.proc || !this.running) return { code: this.proc?.exitCode ?? null, killed: false };
    this.proc.kill('SIGTERM');
    const code = await Promise.race([this.exited, sleep(timeoutMs).then(() => 'timeout' as const)]);
    if (code !== 'timeout') return { code, killed: false };
    this.proc.kill('SIGKILL');
    await Promise.race([this.exited, sleep(10_000)]);
    return { code: null, killed: true };
  }
}

/** Project modules, loaded after the command line is checked (so --help and usage errors answer at once). */
async function loadModules() {
  const grpc = await import('@grpc/grpc-js');
  const ateapi = await import('../src/gen/ateapi.js');
  const log = await import('../src/common/log.js');
  const childEnvMod = await import('../src/common/child-env.mjs');
  const runtime = await import('../src/local/runtime/index.js');
  const exec = await import('../src/local/runtime/exec.js');
  const helpers = await import('../tests/local/helpers.js');
  const benchLib = await import('../bench/lib.js');
  const sandboxPid = await import('./lib/sandbox-pid.mjs');
  const sqlite = (await import('better-sqlite3')).default;
  return {
    grpc,
    ateapi,
    Database: sqlite,
    setLogLevel: log.setLogLevel,
    spawnOptions: childEnvMod.spawnOptions,
    childEnv: childEnvMod.childEnv,
    instancePaths: runtime.instancePaths,
    runscPidsOf: runtime.runscPidsOf,
    procCmdline: exec.procCmdline,
    listNetns: runtime.listNetns,
    removeInstanceLeftovers: runtime.removeInstanceLeftovers,
    defaultRunscPath: runtime.defaultRunscPath,
    controlClient: helpers.controlClient,
    counterTemplate: helpers.counterTemplate,
    defaultImageRef: helpers.defaultImageRef,
    machineFacts: benchLib.machineFacts,
    sandboxOfWorker: sandboxPid.sandboxOfWorker,
  };
}
type Modules = Awaited<ReturnType<typeof loadModules>>;

/** The instance's resources as its SQLite database holds them (read only, after the server stopped). */
interface Stored {
  actors: Actor[];
  tags: Tag[];
  templates: ActorTemplate[];
}

class Soak {
  readonly report: Report;
  readonly tracks: ActorTrack[];
  private readonly serve: Serve;
  private readonly paths: ReturnType<Modules['instancePaths']>;
  private readonly t0 = Date.now();
  /** When cycles stop being started. */
  private readonly loopEnd: number;
  /** When everything, teardown included, must be over. */
  readonly hardEnd: number;
  /**
   * The end of the current phase: no call or wait goes past it. Setup: 30 s before the hard end; the cycles:
   * 15 s after the end of the loop; teardown: 12 s before the hard end (the watchdog's margin).
   */
  private bound: number;
  /** Set by Ctrl-C: no new work; in-flight calls are cancelled. */
  readonly stop = new AbortController();
  private cycle = 0;
  /** Where the soak is, for failure reports: setup, cycle N, teardown. */
  private phase = 'setup';
  /** Distinct leaked snapshot paths (a directory seen after the stop and again after the deletes counts once). */
  private readonly leaked = new Set<string>();

  constructor(
    private readonly m: Modules,
    readonly opts: SoakOptions,
    readonly stateDir: string,
    readonly logFile: string,
    readonly ownsStateDir: boolean,
  ) {
    this.loopEnd = this.t0 + opts.minutes * 60_000;
    this.hardEnd = this.loopEnd + 60_000;
    this.bound = this.hardEnd - 30_000;
    this.serve = new Serve(m, stateDir, opts.actors + 2, logFile);
    this.paths = m.instancePaths(stateDir);
    this.tracks = Array.from({ length: opts.actors }, (_, i) => ({ name: `a${i}`, expected: 0, snapshotN: 0, snapshotKey: '', since: [], losses: 0 }));
    this.report = {
      startedAt: this.t0,
      endedAt: 0,
      opts,
      machine: m.machineFacts(),
      runsc: runscVersion(m.defaultRunscPath(), m),
      cycles: 0,
      counts: 0,
      suspends: 0,
      pauses: 0,
      migrations: 0,
      migrationsMoved: 0,
      migrationsStayed: 0,
      workerKills: 0,
      workerKillsDuringResume: 0,
      recoveries: 0,
      crashNoticedMs: [],
      recoveryMs: [],
      unexpectedCrashes: 0,
      serverKills: 0,
      restartServingMs: [],
      restartAnsweringMs: [],
      losses: [],
      aheads: [],
      failures: [],
      actorsLost: undefined,
      runscLeft: undefined,
      netnsLeft: undefined,
      snapshotsLeaked: undefined,
      snapshotDetails: [],
      perActorSnapshots: '–',
      cleanStopChecked: 'not reached',
      deleteChecked: 'not reached',
      interrupted: false,
      timedOut: false,
      forcedCleanup: false,
      logFile,
      stateDir,
      stateDirKept: !ownsStateDir || opts.keep,
      tracks: this.tracks,
    };
  }

  progress(msg: string): void {
    process.stderr.write(`[soak ${clock(Date.now() - this.t0)}] ${msg}\n`);
  }

  fail(what: string, actor?: string): void {
    const at = `${this.phase}${actor ? `, ${actor}` : ''}`;
    this.report.failures.push({ at, what });
    this.progress(`FAILED (${at}): ${what}`);
  }

  private get stopping(): boolean {
    return this.stop.signal.aborted;
  }

  /** Milliseconds left in the current phase, less a margin for what has to follow. */
  private left(margin = 0): number {
    return this.bound - Date.now() - margin;
  }

  // ---- ateapi ---------------------------------------------------------------------------------------------------

  /** One RPC with a deadline; Ctrl-C cancels it (during the loop). */
  private rpcOnce<T>(method: string, req: object, timeoutMs: number, cancellable: boolean): Promise<T> {
    const client = this.serve.client;
    if (!client) return Promise.reject(new Error('not connected to the local Substrate'));
    const ms = Math.min(timeoutMs, this.left());
    if (ms <= 0) return Promise.reject(new TimedOut(`no time left for ${method}`));
    const type = (this.m.ateapi as unknown as Record<string, { fromPartial(o: object): object }>)[`${method[0]!.toUpperCase()}${method.slice(1)}Request`]!;
    const fn = (client as unknown as Record<string, Function>)[method]!.bind(client);
    return new Promise<T>((resolve, reject) => {
      const call = fn(type.fromPartial(req), new this.m.grpc.Metadata(), { deadline: Date.now() + ms }, (e: grpcTypes.ServiceError | null, res: unknown) => {
        if (cancellable) this.stop.signal.removeEventListener('abort', onAbort);
        if (e) reject(e);
        else resolve(res as T);
      }) as grpcTypes.ClientUnaryCall;
      const onAbort = () => call.cancel();
      if (cancellable) this.stop.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * An RPC retried while the actor is busy (ABORTED: another operation holds its lock) or the server is not
   * there yet (UNAVAILABLE), with a short growing backoff, within `budgetMs` overall.
   */
  async rpc<T>(method: string, req: object, o: { timeoutMs?: number; budgetMs?: number; cancellable?: boolean } = {}): Promise<T> {
    const timeoutMs = o.timeoutMs ?? 10_000;
    const until = Date.now() + (o.budgetMs ?? 20_000);
    let delay = 100;
    for (;;) {
      try {
        return await this.rpcOnce<T>(method, req, timeoutMs, o.cancellable ?? true);
      } catch (e) {
        const code = (e as grpcTypes.ServiceError).code;
        if ((code !== ABORTED && code !== UNAVAILABLE) || Date.now() + delay > until || this.left() < delay || (o.cancellable !== false && this.stopping)) throw e;
        await sleep(delay * (0.8 + Math.random() * 0.4));
        delay = Math.min(1_000, delay * 1.5);
      }
    }
  }

  private ref(name: string) {
    return { actor: { atespace: ATESPACE, name } };
  }

  private async getActor(name: string, cancellable = true): Promise<Actor> {
    return this.rpc<Actor>('getActor', this.ref(name), { cancellable });
  }

  private stateOf(a: Actor | undefined): number {
    return a?.status?.state ?? 0;
  }

  stateName(s: number): string {
    return this.m.ateapi.actorStateToJSON(s).replace(/^ACTOR_STATE_/, '');
  }

  private get S() {
    return this.m.ateapi.ActorState;
  }

  private workerOf(a: Actor | undefined): string {
    return a?.status?.workerAssignment?.workerPod ?? '';
  }

  /** Resume; the RPC answers once the actor is RUNNING (restored and its wakeup probe answered) or fails. */
  private async resume(name: string, cancellable = true): Promise<Actor> {
    const r = await this.rpc<{ actor?: Actor; resumed: boolean }>('resumeActor', this.ref(name), { timeoutMs: 50_000, budgetMs: 60_000, cancellable });
    if (this.stateOf(r.actor) !== this.S.ACTOR_STATE_RUNNING) throw new Error(`resume answered with state ${this.stateName(this.stateOf(r.actor))}`);
    return r.actor!;
  }

  /**
   * A CRASHED actor back to RUNNING: RevertActor (→ SUSPENDED at its last external snapshot), then ResumeActor.
   * Returns the resumed actor and how long both took.
   */
  private async recover(name: string): Promise<{ actor: Actor; ms: number }> {
    const t0 = performance.now();
    const rv = await this.rpc<{ actor?: Actor }>('revertActor', this.ref(name), { timeoutMs: 50_000, budgetMs: 60_000 });
    if (this.stateOf(rv.actor) !== this.S.ACTOR_STATE_SUSPENDED) throw new Error(`revert answered with state ${this.stateName(this.stateOf(rv.actor))}`);
    if (rv.actor?.status?.crash) throw new Error('revert left the crash record on the actor');
    const actor = await this.resume(name);
    const ms = performance.now() - t0;
    this.report.recoveries++;
    this.report.recoveryMs.push(ms);
    return { actor, ms };
  }

  /** Waits until the actor leaves RUNNING/RESUMING (its sandbox was killed); returns it and how long that took. */
  private async waitCrashed(name: string, since: number, budgetMs: number): Promise<{ actor: Actor; ms: number } | undefined> {
    const until = Date.now() + budgetMs;
    while (Date.now() < until && !this.stopping) {
      const a = await this.getActor(name);
      const st = this.stateOf(a);
      if (st !== this.S.ACTOR_STATE_RUNNING && st !== this.S.ACTOR_STATE_RESUMING) return { actor: a, ms: performance.now() - since };
      await sleep(50);
    }
    return undefined;
  }

  // ---- the router ------------------------------------------------------------------------------------------------

  /** GET through the router addressed by `ate-target-actor: <atespace>/<actor>`, bounded by `timeoutMs` (and Ctrl-C). */
  private routerGet(name: string, p: string, timeoutMs: number): Promise<{ status: number; body: string }> {
    const u = new URL(this.serve.info.router_url);
    const ms = Math.min(timeoutMs, this.left());
    if (ms <= 0) return Promise.reject(new TimedOut(`no time left for GET ${p}`));
    return new Promise((resolve, reject) => {
      const req = http.request({ host: u.hostname, port: u.port, path: p, agent: false, headers: { 'ate-target-actor': `${ATESPACE}/${name}` } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => done(() => resolve({ status: res.statusCode ?? 0, body })));
        res.on('error', (e) => done(() => reject(e)));
      });
      const timer = setTimeout(() => req.destroy(new TimedOut(`GET ${p} for ${name} took more than ${Math.round(ms / 1000)} s`)), ms);
      const onAbort = () => req.destroy(new Error('interrupted'));
      this.stop.signal.addEventListener('abort', onAbort, { once: true });
      const done = (f: () => void) => {
        clearTimeout(timer);
        this.stop.signal.removeEventListener('abort', onAbort);
        f();
      };
      req.on('error', (e) => done(() => reject(e)));
      req.end();
    });
  }

  /**
   * The actor's counter without changing it: resumes it first when it is SUSPENDED or PAUSED; an actor found
   * CRASHED is recovered (RevertActor → ResumeActor) and counted as an unexpected crash. Retried for a while.
   */
  private async peek(t: ActorTrack, budgetMs = 30_000): Promise<number> {
    const until = Math.min(Date.now() + budgetMs, this.bound);
    let last = '';
    for (let attempt = 0; Date.now() < until && !this.stopping; attempt++) {
      try {
        const a = await this.getActor(t.name);
        const st = this.stateOf(a);
        if (st === this.S.ACTOR_STATE_CRASHED) {
          this.report.unexpectedCrashes++;
          this.fail(`found CRASHED with no kill of the soak to explain it (crash: ${a.status?.crash?.message ?? '?'}); recovering it`, t.name);
          t.since.push(`found CRASHED (${a.status?.crash?.message ?? '?'}), reverted to its last external snapshot (cycle ${this.cycle})`);
          await this.recover(t.name);
        } else if (st === this.S.ACTOR_STATE_SUSPENDED || st === this.S.ACTOR_STATE_PAUSED) {
          await this.resume(t.name);
        } else if (st !== this.S.ACTOR_STATE_RUNNING) {
          last = `actor is ${this.stateName(st)}`;
          await sleep(Math.min(1_000, 100 * 2 ** attempt));
          continue;
        }
        const r = await this.routerGet(t.name, '/peek', Math.max(1_000, until - Date.now()));
        if (r.status === 200) return (JSON.parse(r.body) as { n: number }).n;
        last = `HTTP ${r.status}: ${r.body.trim().slice(0, 200)}`;
      } catch (e) {
        last = errText(e);
      }
      await sleep(Math.min(1_000, 100 * 2 ** attempt));
    }
    throw new Error(`/peek did not answer within ${Math.round(budgetMs / 1000)} s (last: ${last || 'interrupted'})`);
  }

  /** Compares an actor's counter with what it must be; a counter found short is a memory loss. */
  private judge(t: ActorTrack, got: number): void {
    if (got < t.expected) {
      const after = t.since.length ? t.since.join(', then ') : 'no fault or operation since the last check';
      this.report.losses.push({ cycle: this.cycle, actor: t.name, after, expected: t.expected, got });
      t.losses++;
      this.progress(`MEMORY LOST: ${t.name} answers n=${got}, expected ${t.expected} (after: ${after}); serve log: ${this.logFile}`);
    } else if (got > t.expected) {
      // More than expected: a request whose answer was lost still counted. Not a loss; noted.
      this.report.aheads.push(`${t.name} at cycle ${this.cycle}: n=${got}, expected ${t.expected}`);
    }
    t.expected = got;
    t.since = [];
  }

  /** /peek every actor (in parallel) and judge each; returns false if some could not be read. */
  private async checkAll(why: string): Promise<boolean> {
    const results = await Promise.all(
      this.tracks.map(async (t) => {
        try {
          this.judge(t, await this.peek(t));
          return true;
        } catch (e) {
          if (!this.stopping) this.fail(`reading the counter (${why}): ${errText(e)}`, t.name);
          return false;
        }
      }),
    );
    return results.every(Boolean);
  }

  /** After a suspend (answered or not): a new external snapshot means it holds the counter as it was. */
  private async noteSnapshot(t: ActorTrack, a?: Actor): Promise<boolean> {
    try {
      const cur = a ?? (await this.getActor(t.name));
      const key = cur.status?.externalSnapshot?.snapshotUri ?? '';
      if (key !== t.snapshotKey) {
        t.snapshotKey = key;
        t.snapshotN = t.expected;
        return true;
      }
    } catch {
      // unknown: keep the previous snapshot's counter
    }
    return false;
  }

  // ---- operations -------------------------------------------------------------------------------------------

  private async opCount(t: ActorTrack, k: number): Promise<void> {
    for (let i = 0; i < k; i++) {
      const r = await this.routerGet(t.name, '/count', 30_000);
      if (r.status !== 200) throw new Error(`/count answered HTTP ${r.status}: ${r.body.trim().slice(0, 200)}`);
      const n = (JSON.parse(r.body) as { n: number }).n;
      if (n <= t.expected) {
        // /count increments: an answer at or below the expected counter means memory was lost before it.
        this.judge(t, n - 1);
      }
      t.expected = n;
      this.report.counts++;
    }
  }

  /** suspend or pause, then resume; returns the workers before and after. */
  private async opCheckpoint(t: ActorTrack, kind: 'suspend' | 'pause'): Promise<{ before: string; after: string }> {
    const before = this.workerOf(await this.getActor(t.name));
    let a: Actor | undefined;
    try {
      a = (await this.rpc<{ actor?: Actor }>(kind === 'suspend' ? 'suspendActor' : 'pauseActor', this.ref(t.name), { timeoutMs: 50_000, budgetMs: 60_000 })).actor;
    } catch (e) {
      await this.noteSnapshot(t);
      throw new Error(`${kind}: ${errText(e)}`);
    }
    const want = kind === 'suspend' ? this.S.ACTOR_STATE_SUSPENDED : this.S.ACTOR_STATE_PAUSED;
    if (this.stateOf(a) !== want) throw new Error(`${kind} answered with state ${this.stateName(this.stateOf(a))}`);
    if (this.workerOf(a)) throw new Error(`${kind} answered ${this.stateName(want)} but the actor still names worker ${this.workerOf(a)}`);
    if (kind === 'suspend') await this.noteSnapshot(t, a);
    else if (!a?.status?.localSnapshot?.snapshotName) throw new Error('pause answered PAUSED without a local snapshot');
    try {
      const r = await this.resume(t.name);
      return { before, after: this.workerOf(r) };
    } catch (e) {
      throw new Error(`resume after ${kind}: ${errText(e)}`);
    }
  }

  private async runOp(t: ActorTrack, op: Op): Promise<string> {
    switch (op.kind) {
      case 'count':
        await this.opCount(t, op.k);
        return `count×${op.k}`;
      case 'suspend':
        await this.opCheckpoint(t, 'suspend');
        this.report.suspends++;
        t.since.push(`suspend+resume (cycle ${this.cycle})`);
        return 'suspend';
      case 'pause':
        await this.opCheckpoint(t, 'pause');
        this.report.pauses++;
        t.since.push(`pause+resume (cycle ${this.cycle})`);
        return 'pause';
      case 'migrate': {
        const freeBefore = await this.rpc<{ workers: Worker[] }>('listWorkers', { pageSize: 1000 }).then(
          (r) => r.workers.filter((w) => (w.status?.allocated?.actors ?? 0) === 0).length,
          () => -1,
        );
        const { before, after } = await this.opCheckpoint(t, 'suspend');
        this.report.migrations++;
        const moved = !!before && !!after && before !== after;
        if (moved) this.report.migrationsMoved++;
        // Another worker was free (the one it left is free too once it is suspended): it could have moved.
        else if (freeBefore >= 1) this.report.migrationsStayed++;
        t.since.push(`migration ${before || '?'} → ${after || '?'} (cycle ${this.cycle})`);
        return moved ? `migrate(${before.replace(/^default-/, 'w')}→${after.replace(/^default-/, 'w')})` : 'migrate(stayed)';
      }
    }
  }

  // ---- faults -----------------------------------------------------------------------------------------------

  /**
   * kill -9 of one running actor's runsc sandbox process (found with `runsc list` under the instance's root and
   * the bundle that joins its worker's namespace). v0.4: the actor becomes CRASHED; RevertActor → ResumeActor
   * brings it back from its last external snapshot.
   */
  private async workerKill(t: ActorTrack): Promise<string> {
    const a = await this.getActor(t.name);
    if (this.stateOf(a) !== this.S.ACTOR_STATE_RUNNING) return `worker kill of ${t.name} skipped (${this.stateName(this.stateOf(a))})`;
    const worker = this.workerOf(a);
    const sb = worker ? await this.m.sandboxOfWorker(this.stateDir, worker) : undefined;
    const pid = sb?.pid ?? 0;
    // Only a process of this instance's runsc root: never a pid that was reused by something else.
    if (!(pid > 0 && this.m.runscPidsOf(this.paths.runscRoot).includes(pid))) {
      this.fail(`worker kill: no live sandbox process of this instance on worker ${worker || '(none)'} for the running actor`, t.name);
      return `worker kill of ${t.name} skipped (no sandbox pid)`;
    }
    const tk = performance.now();
    process.kill(pid, 'SIGKILL');
    this.report.workerKills++;
    t.expected = t.snapshotN;
    t.since.push(`kill -9 of its sandbox pid ${pid} on ${worker} (cycle ${this.cycle})`);
    // The server's death monitor notices within about half a second: CRASHED.
    const seen = await this.waitCrashed(t.name, tk, 10_000);
    if (!seen) {
      if (!this.stopping) this.fail(`the local Substrate did not notice within 10 s that the sandbox (pid ${pid}) died`, t.name);
      return `worker kill: ${t.name} pid ${pid} on ${worker}: not noticed`;
    }
    const st = this.stateOf(seen.actor);
    if (st !== this.S.ACTOR_STATE_CRASHED) {
      this.fail(`after kill -9 of its sandbox the actor is ${this.stateName(st)}, expected CRASHED`, t.name);
      return `worker kill: ${t.name} pid ${pid} on ${worker}: ${this.stateName(st)}`;
    }
    this.report.crashNoticedMs.push(seen.ms);
    if (!seen.actor.status?.crash?.message) this.fail('CRASHED without a crash message', t.name);
    if (this.workerOf(seen.actor) === worker && this.m.runscPidsOf(this.paths.runscRoot).includes(pid)) this.fail(`CRASHED but sandbox pid ${pid} still runs`, t.name);
    const r = await this.recover(t.name);
    return `worker kill: ${t.name} sandbox pid ${pid} on ${worker} → CRASHED in ${msText(seen.ms)} → revert+resume on ${this.workerOf(r.actor)} in ${msText(r.ms)} (back to n=${t.snapshotN})`;
  }

  /**
   * kill -9 of the sandbox a resume is bringing up: the actor is suspended (a snapshot to come back to), a
   * resume is started, and the new sandbox process is killed as soon as it appears, after a delay that varies
   * by cycle (0 to 390 ms, so the kill lands during the restore or the wakeup probe). Whatever the resume
   * answers, the actor must end up CRASHED (or RUNNING on a live sandbox if the kill missed), unlocked, and
   * recoverable from that snapshot.
   */
  private async workerKillDuringResume(t: ActorTrack): Promise<string> {
    const a = await this.getActor(t.name);
    if (this.stateOf(a) !== this.S.ACTOR_STATE_RUNNING) return `kill during resume of ${t.name} skipped (${this.stateName(this.stateOf(a))})`;
    const s = (await this.rpc<{ actor?: Actor }>('suspendActor', this.ref(t.name), { timeoutMs: 50_000, budgetMs: 60_000 })).actor;
    await this.noteSnapshot(t, s);
    const before = new Set(this.m.runscPidsOf(this.paths.runscRoot));
    const resuming = this.rpc<{ actor?: Actor }>('resumeActor', this.ref(t.name), { timeoutMs: 50_000, budgetMs: 60_000 }).then(
      () => 'resume answered RUNNING',
      (e: unknown) => `resume failed (${errText(e).split(':')[0]})`,
    );
    const delay = (this.cycle * 97) % 400;
    let pid = 0;
    for (const until = Date.now() + 20_000; !pid && Date.now() < until && !this.stopping; ) {
      pid = this.m.runscPidsOf(this.paths.runscRoot).find((p) => !before.has(p) && this.m.procCmdline(p).includes('runsc-sandbox')) ?? 0;
      if (!pid) await sleep(5);
    }
    let killed = false;
    if (pid) {
      await sleep(delay);
      try {
        process.kill(pid, 'SIGKILL');
        killed = true;
      } catch {
        // gone already (the resume failed on its own)
      }
    }
    const tk = performance.now();
    const outcome = await resuming;
    this.report.workerKillsDuringResume++;
    t.expected = t.snapshotN;
    t.since.push(`kill -9 of its restoring sandbox pid ${pid || '?'} ${delay} ms after it appeared; ${outcome} (cycle ${this.cycle})`);
    // Settled: CRASHED (the resume failed, or the monitor noticed the dead sandbox after it answered), never
    // RUNNING on a dead sandbox, never left locked. Then back from the snapshot.
    let cur = await this.getActor(t.name);
    const until = Date.now() + 15_000;
    while (!this.stopping && Date.now() < until) {
      const st = this.stateOf(cur);
      const dead = !pid || !this.m.runscPidsOf(this.paths.runscRoot).includes(pid);
      if (st === this.S.ACTOR_STATE_CRASHED || st === this.S.ACTOR_STATE_SUSPENDED) break;
      if (st === this.S.ACTOR_STATE_RUNNING && !(killed && dead)) break;
      await sleep(100);
      cur = await this.getActor(t.name);
    }
    const st = this.stateOf(cur);
    let how: string;
    if (st === this.S.ACTOR_STATE_CRASHED) {
      const r = await this.recover(t.name);
      how = `CRASHED → revert+resume on ${this.workerOf(r.actor)} in ${msText(r.ms)}`;
    } else if (st === this.S.ACTOR_STATE_SUSPENDED) {
      await this.resume(t.name);
      how = 'SUSPENDED → resumed';
    } else if (st === this.S.ACTOR_STATE_RUNNING && killed && (!pid || !this.m.runscPidsOf(this.paths.runscRoot).includes(pid))) {
      this.fail(`RUNNING ${msText(performance.now() - tk)} after the resume although its sandbox (pid ${pid}) is dead`, t.name);
      how = 'RUNNING on a dead sandbox';
    } else {
      how = this.stateName(st);
    }
    return `kill during resume: ${t.name} sandbox pid ${pid || '?'} +${delay} ms; ${outcome}; ${how} (back to n=${t.snapshotN})`;
  }

  /** kill -9 of `local serve`, then a new start: running actors must be adopted with their memory. */
  private async serverKill(): Promise<void> {
    const old = this.serve.proc?.pid;
    const t0 = performance.now();
    await this.serve.kill9();
    this.report.serverKills++;
    for (const t of this.tracks) t.since.push(`kill -9 of local serve #${this.report.serverKills} (cycle ${this.cycle})`);
    let serving: number;
    try {
      await this.serve.start(Math.min(60_000, this.left()));
      serving = performance.now() - t0;
      this.report.restartServingMs.push(serving);
    } catch (e) {
      this.fail(`restart after kill -9 of local serve: ${errText(e)}`);
      throw e;
    }
    // Adopted: every actor still RUNNING (no resume needed), then every counter checked.
    for (const t of this.tracks) {
      try {
        const a = await this.getActor(t.name);
        if (this.stateOf(a) !== this.S.ACTOR_STATE_RUNNING) this.fail(`after kill -9 of local serve the actor is ${this.stateName(this.stateOf(a))}, expected RUNNING (adopted)`, t.name);
      } catch (e) {
        this.fail(`after kill -9 of local serve: ${errText(e)}`, t.name);
      }
    }
    const ok = await this.checkAll('after kill -9 of local serve');
    const answering = performance.now() - t0;
    if (ok) this.report.restartAnsweringMs.push(answering);
    this.progress(
      `fault: kill -9 of local serve pid ${old} → serving again (pid ${this.serve.proc?.pid}) in ${msText(serving)}, ${ok ? `all actors answering in ${msText(answering)}` : 'NOT all actors answering'}`,
    );
  }

  // ---- phases ---------------------------------------------------------------------------------------------------

  async setup(): Promise<void> {
    const ms = await this.serve.start(Math.min(120_000, this.left()));
    this.progress(`local serve pid ${this.serve.proc?.pid} ready in ${msText(ms)} (state ${this.stateDir}, workers ${this.serve.workers}, log ${this.logFile})`);
    const image = await this.m.defaultImageRef(this.stateDir);
    try {
      await this.rpc('createAtespace', { atespace: { metadata: { name: ATESPACE } } });
    } catch (e) {
      if ((e as grpcTypes.ServiceError).code !== 6) throw e; // ALREADY_EXISTS
    }
    const tpl = await this.rpc<ActorTemplate>('createActorTemplate', { actorTemplate: this.m.counterTemplate(ATESPACE, TEMPLATE, image) });
    const t0 = Date.now();
    for (const until = Date.now() + Math.max(1_000, Math.min(90_000, this.left())); ; ) {
      const cur = await this.rpc<ActorTemplate>('getActorTemplate', { actorTemplate: { atespace: ATESPACE, name: TEMPLATE } });
      const g = cur.status?.goldenSnapshotStatus;
      if (g?.errorMessage) throw new Error(`template ${ATESPACE}/${TEMPLATE}: golden snapshot failed: ${g.errorMessage}`);
      if (g?.goldenTag?.name) break;
      if (Date.now() > until) throw new TimedOut(`template ${ATESPACE}/${TEMPLATE} (uid ${tpl.metadata?.uid}) has no golden tag after ${Math.round((Date.now() - t0) / 1000)} s`);
      await sleep(200);
    }
    for (const t of this.tracks) {
      await this.rpc('createActor', { actor: { metadata: { atespace: ATESPACE, name: t.name }, actorTemplate: { atespace: ATESPACE, name: TEMPLATE } } });
      const a = await this.resume(t.name);
      // Created from the golden tag: its external snapshot is the golden one (counter 0).
      t.snapshotKey = a.status?.externalSnapshot?.snapshotUri ?? '';
    }
    await this.checkAll('after setup');
    this.progress(`template ready (golden tag in ${msText(Date.now() - t0)}), ${this.tracks.length} actors running (${clock(Date.now() - this.t0)} of setup)`);
  }

  async loop(): Promise<void> {
    const rng = rngOf(this.opts.seed);
    // An operation started late may run over: at most this long past the end of the loop.
    this.bound = this.loopEnd + 15_000;
    while (Date.now() < this.loopEnd && !this.stopping) {
      this.cycle++;
      this.phase = `cycle ${this.cycle}`;
      const plan = planCycle(rng, this.cycle, this.tracks.length, this.opts.killEvery);
      const done: string[] = [];
      const faults: string[] = [];
      let cut = false;
      for (let i = 0; i <= this.tracks.length; i++) {
        if (this.stopping || Date.now() > this.bound) {
          cut = true;
          break;
        }
        if (plan.workerKill && plan.workerKill.at === i) {
          const victim = this.tracks[plan.workerKill.victim]!;
          try {
            faults.push(await (plan.workerKill.duringResume ? this.workerKillDuringResume(victim) : this.workerKill(victim)));
            if (!this.stopping) await this.checkAll(`after the kill of ${victim.name}'s sandbox`);
          } catch (e) {
            if (!this.stopping) this.fail(`worker kill: ${errText(e)}`, victim.name);
          }
        }
        if (i === this.tracks.length) break;
        const t = this.tracks[i]!;
        try {
          done.push(`${t.name} ${await this.runOp(t, plan.ops[i]!)}`);
        } catch (e) {
          if (this.stopping) break;
          done.push(`${t.name} ${plan.ops[i]!.kind} FAILED`);
          this.fail(`${plan.ops[i]!.kind}: ${errText(e)}`, t.name);
        }
      }
      if (!cut && !this.stopping && plan.serverKill && this.left(20_000) > 0) {
        try {
          await this.serverKill();
          faults.push('server kill -9');
        } catch {
          // recorded; without a server the loop cannot go on
          break;
        }
      } else if (!this.stopping && this.left() > 0) {
        await this.checkAll('end of cycle');
      }
      if (this.stopping) {
        if (done.length || faults.length) this.progress(`cycle ${this.cycle} (interrupted): ${done.join(', ')}${faults.length ? ` | ${faults.join('; ')}` : ''}`);
        break;
      }
      this.report.cycles = this.cycle;
      const lost = this.report.losses.length;
      this.progress(
        `cycle ${this.cycle}: ${done.join(', ')}${faults.length ? ` | ${faults.join('; ')}` : ''} | ${lost ? `${lost} memory losses so far` : 'counters ok'}${cut ? ' (cut short: time is up)' : ''}`,
      );
    }
  }

  /** The instance's actors, tags and templates from its database (only while no server runs). */
  private readStored(): Stored | undefined {
    const file = path.join(this.stateDir, 'substrate.db');
    if (!existsSync(file)) return undefined;
    const db = new this.m.Database(file, { readonly: true, fileMustExist: true });
    try {
      const rows = (table: string) => {
        try {
          return (db.prepare(`SELECT data FROM ${table}`).all() as Array<{ data: string }>).map((r) => JSON.parse(r.data) as unknown);
        } catch {
          return [];
        }
      };
      return {
        actors: rows('actors').map((j) => this.m.ateapi.Actor.fromJSON(j)),
        tags: rows('tags').map((j) => this.m.ateapi.Tag.fromJSON(j)),
        templates: rows('actor_templates').map((j) => this.m.ateapi.ActorTemplate.fromJSON(j)),
      };
    } finally {
      db.close();
    }
  }

  /** SIGTERM, then the checks that nothing was lost or leaked; then restart, verify, delete, stop. */
  async teardown(): Promise<void> {
    this.phase = 'teardown';
    this.bound = this.hardEnd - 12_000;
    this.progress('stopping the local Substrate (SIGTERM: it suspends every running actor)');
    const stopped = await this.serve.term(Math.max(5_000, Math.min(90_000, this.left(5_000))));
    if (stopped.killed) this.fail('local serve did not stop within its time after SIGTERM; killed');
    else if (stopped.code !== 0) this.fail(`local serve exited with status ${stopped.code} after SIGTERM`);
    this.checkLeftovers('after the clean stop');
    await this.checkNetns('after the clean stop');
    // Actors lost, and what the snapshot store holds that nothing references.
    const stored = this.readStored();
    if (stored) {
      let lost = 0;
      for (const t of this.tracks) {
        const a = stored.actors.find((x) => x.metadata?.atespace === ATESPACE && x.metadata?.name === t.name);
        if (!a) {
          lost++;
          this.fail('actor missing from the instance database after the clean stop', t.name);
        } else if (this.stateOf(a) !== this.S.ACTOR_STATE_SUSPENDED) {
          this.fail(`actor is ${this.stateName(this.stateOf(a))} after the clean stop (expected SUSPENDED: a clean stop suspends every running actor)`, t.name);
        } else if (a.status?.workerAssignment || a.status?.inProgressSnapshotUri || a.status?.inProgressLocalSnapshotName) {
          this.fail('SUSPENDED after the clean stop but still holds a worker assignment or an in-progress snapshot', t.name);
        }
      }
      this.report.actorsLost = lost;
      this.checkSnapshots(stored);
    } else {
      this.report.actorsLost = this.tracks.length;
      this.fail('substrate.db is missing after the clean stop');
    }
    this.report.cleanStopChecked = 'yes';
    await this.deletePhase();
  }

  /** runsc processes and network namespaces of this instance that are still there. */
  private checkLeftovers(when: string): void {
    const runsc = this.m.runscPidsOf(this.paths.runscRoot);
    this.report.runscLeft = Math.max(this.report.runscLeft ?? 0, runsc.length);
    if (runsc.length) this.fail(`${runsc.length} runsc processes of the instance left ${when}: pids ${runsc.join(' ')}`);
  }

  private async checkNetns(when: string): Promise<void> {
    const ns = (await this.m.listNetns()).filter((n) => n.startsWith(this.paths.netnsPrefix));
    this.report.netnsLeft = Math.max(this.report.netnsLeft ?? 0, ns.length);
    if (ns.length) this.fail(`${ns.length} network namespaces of the instance left ${when}: ${ns.join(' ')}`);
  }

  /**
   * Snapshot directories on disk vs what the instance references. External snapshots live in
   * <state>/objects/<sha256(uri)>/ (with a `uri` file once sealed), pause snapshots in
   * <state>/nodes/<node>/snapshots/<name>/. Leaked: an external directory no actor or tag references (an
   * actor's older, superseded snapshot included: every actor owns exactly its latest external snapshot), a pause
   * snapshot no PAUSED actor references, a partial checkpoint (`*.tmp-*`), an unsealed directory.
   */
  private checkSnapshots(stored: Stored): void {
    const onDisk = snapshotDirsOnDisk(this.stateDir);
    const referencedUris = new Set<string>();
    for (const a of stored.actors) {
      if (a.status?.externalSnapshot?.snapshotUri) referencedUris.add(a.status.externalSnapshot.snapshotUri);
    }
    for (const tg of stored.tags) if (tg.status?.snapshot?.snapshotUri) referencedUris.add(tg.status.snapshot.snapshotUri);
    const referencedLocal = new Set<string>();
    for (const a of stored.actors) {
      const s = a.status;
      if (s?.localSnapshot?.snapshotName && s.assignedNode) referencedLocal.add(path.resolve(this.stateDir, 'nodes', s.assignedNode, 'snapshots', s.localSnapshot.snapshotName));
    }
    for (const t of this.tracks) {
      const a = stored.actors.find((x) => x.metadata?.atespace === ATESPACE && x.metadata?.name === t.name);
      const uri = a?.status?.externalSnapshot?.snapshotUri;
      if (!a || !uri) continue;
      const dir = onDisk.external.find((e) => e.uri === uri)?.dir;
      if (!dir) this.fail(`the latest external snapshot of ${ATESPACE}/${t.name} (${uri}) is not on disk`);
      else if (!existsSync(path.join(dir, 'meta.json'))) this.fail(`the latest external snapshot of ${ATESPACE}/${t.name} is incomplete on disk (no meta.json): ${dir}`);
    }
    const perActor: string[] = [];
    for (const t of this.tracks) {
      const a = stored.actors.find((x) => x.metadata?.atespace === ATESPACE && x.metadata?.name === t.name);
      const owned = a ? onDisk.external.filter((e) => e.uri.includes(`/atespaces/${ATESPACE}/actors/${a.metadata!.uid}/snapshots/`)).length : 0;
      perActor.push(`${t.name}=${owned}`);
    }
    let n = 0;
    for (const e of onDisk.external) {
      if (!e.uri) {
        this.leaked.add(e.dir);
        this.report.snapshotDetails.push(`unsealed snapshot directory (no uri file): ${e.dir}`);
        n++;
      } else if (!referencedUris.has(e.uri)) {
        this.leaked.add(e.dir);
        this.report.snapshotDetails.push(`snapshot nothing references (superseded or orphaned): ${e.uri} in ${e.dir}`);
        n++;
      }
    }
    for (const d of onDisk.local) {
      if (!referencedLocal.has(path.resolve(d))) {
        this.leaked.add(path.resolve(d));
        this.report.snapshotDetails.push(`pause snapshot no actor references: ${d}`);
        n++;
      }
    }
    for (const d of onDisk.tmp) {
      this.leaked.add(path.resolve(d));
      this.report.snapshotDetails.push(`partial checkpoint left: ${d}`);
      n++;
    }
    this.report.snapshotsLeaked = this.leaked.size;
    this.report.perActorSnapshots = perActor.join(' ') || '–';
    if (n) this.fail(`${n} snapshot directories leaked after the clean stop (see below)`);
  }

  /** Start again, check every counter survived the clean stop, delete the actors, template and atespace, stop, check again. */
  private async deletePhase(): Promise<void> {
    if (this.stopping && this.report.interrupted) {
      this.report.deleteChecked = 'skipped (interrupted)';
      return;
    }
    if (this.opts.keep) {
      this.report.deleteChecked = 'skipped (--keep: actors kept)';
      return;
    }
    if (this.left() < 20_000) {
      this.report.deleteChecked = 'skipped (no time left)';
      return;
    }
    try {
      await this.serve.start(Math.min(60_000, this.left(10_000)));
    } catch (e) {
      this.fail(`restart for the delete phase: ${errText(e)}`);
      this.report.deleteChecked = 'failed (no restart)';
      return;
    }
    // Memory across the clean stop: each actor resumes from the snapshot SIGTERM took. ~1 s per actor.
    let verified = 0;
    const verify = this.left(15_000) > this.tracks.length * 2_500;
    for (const t of this.tracks) {
      t.since.push('clean stop (SIGTERM) and restart');
      if (verify) {
        try {
          this.judge(t, await this.peek(t, 20_000));
          verified++;
          await this.rpc('suspendActor', this.ref(t.name), { timeoutMs: 50_000, budgetMs: 30_000, cancellable: false });
        } catch (e) {
          this.fail(`after the clean stop: ${errText(e)}`, t.name);
        }
      }
      try {
        await this.rpc('deleteActor', this.ref(t.name), { budgetMs: 15_000, cancellable: false });
      } catch (e) {
        this.fail(`delete: ${errText(e)}`, t.name);
      }
    }
    try {
      await this.rpc('deleteActorTemplate', { actorTemplate: { atespace: ATESPACE, name: TEMPLATE } }, { cancellable: false });
    } catch (e) {
      this.fail(`delete template: ${errText(e)}`);
    }
    try {
      await this.rpc('deleteAtespace', { atespace: { atespace: '', name: ATESPACE } }, { cancellable: false });
    } catch (e) {
      this.fail(`delete atespace: ${errText(e)}`);
    }
    const stopped = await this.serve.term(Math.max(3_000, Math.min(60_000, this.left())));
    if (stopped.killed || stopped.code !== 0) this.fail(`local serve did not stop cleanly after the deletes (${stopped.killed ? 'killed' : `status ${stopped.code}`})`);
    this.checkLeftovers('after the final stop');
    await this.checkNetns('after the final stop');
    // Deleting an actor removes its snapshots.
    const left = snapshotDirsOnDisk(this.stateDir);
    const mine = left.external.filter((e) => e.uri.includes(`/atespaces/${ATESPACE}/actors/`)).map((e) => e.dir);
    for (const d of mine) {
      this.leaked.add(path.resolve(d));
      this.report.snapshotDetails.push(`snapshot of a deleted actor left: ${d}`);
    }
    this.report.snapshotsLeaked = this.leaked.size;
    if (mine.length) this.fail(`${mine.length} snapshot directories of deleted actors left`);
    this.report.deleteChecked = verify
      ? `yes (${verified}/${this.tracks.length} counters verified after the clean stop; actors, template and atespace deleted)`
      : 'actors deleted (no time to verify counters)';
  }

  /** After a forced cleanup: what is still left on the machine (replaces the figures measured before). */
  async recheckLeftovers(when: string): Promise<void> {
    this.phase = 'end';
    this.report.runscLeft = 0;
    this.report.netnsLeft = 0;
    this.checkLeftovers(when);
    await this.checkNetns(when).catch(() => undefined);
  }

  /** Kills what is left of the instance (server, sandboxes, namespaces): after an interruption or a fault. */
  async forceCleanup(): Promise<void> {
    const netns = await this.m.listNetns().catch(() => [] as string[]);
    if (this.serve.running || this.m.runscPidsOf(this.paths.runscRoot).length || netns.some((n) => n.startsWith(this.paths.netnsPrefix))) {
      this.report.forcedCleanup = true;
    }
    if (this.serve.running) await this.serve.kill9();
    await Promise.race([this.m.removeInstanceLeftovers({ stateDir: this.stateDir }).catch(() => undefined), sleep(8_000)]);
  }

  serveRunning(): boolean {
    return this.serve.running;
  }

  killServeNow(): void {
    try {
      if (this.serve.running) this.serve.proc!.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }

  markInterrupted(): void {
    this.report.interrupted = true;
    this.stop.abort();
  }
}

/**
 * Snapshot directories on disk: external ones (<state>/objects/<hash>/, each with the URI it holds, '' when
 * unsealed), pause snapshots (<state>/nodes/<node>/snapshots/<name>/), and partial checkpoints (`*.tmp-*`) of either.
 */
function snapshotDirsOnDisk(stateDir: string): { external: Array<{ dir: string; uri: string }>; local: string[]; tmp: string[] } {
  const external: Array<{ dir: string; uri: string }> = [];
  const local: string[] = [];
  const tmp: string[] = [];
  const list = (d: string) => {
    try {
      return readdirSync(d).filter((e) => {
        try {
          return statSync(path.join(d, e)).isDirectory();
        } catch {
          return false;
        }
      });
    } catch {
      return [];
    }
  };
  const objects = path.join(stateDir, 'objects');
  for (const e of list(objects)) {
    const dir = path.resolve(objects, e);
    if (e.includes('.tmp-') || e.includes('.old-')) {
      tmp.push(dir);
      continue;
    }
    let uri = '';
    try {
      uri = readFileSync(path.join(dir, 'uri'), 'utf8').trim();
    } catch {
      // unsealed
    }
    external.push({ dir, uri });
  }
  const nodes = path.join(stateDir, 'nodes');
  for (const n of list(nodes)) {
    const snaps = path.join(nodes, n, 'snapshots');
    for (const e of list(snaps)) (e.includes('.tmp-') ? tmp : local).push(path.resolve(snaps, e));
  }
  return { external, local, tmp };
}

function runscVersion(runscPath: string, m: Modules): string {
  try {
    const out = execFileSync(runscPath, ['--version'], m.spawnOptions({ encoding: 'utf8' as const, timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'] }));
    return /runsc version (\S+)/.exec(out)?.[1] ?? out.split('\n')[0]!.trim();
  } catch (e) {
    return `unknown (${(e as Error).message.split('\n')[0]})`;
  }
}

// ---- the table ----------------------------------------------------------------------------------------------------

export function passed(r: Pick<Report, 'losses' | 'failures' | 'actorsLost' | 'runscLeft' | 'netnsLeft' | 'snapshotsLeaked' | 'interrupted' | 'timedOut'>): boolean {
  return (
    r.losses.length === 0 &&
    r.failures.length === 0 &&
    r.actorsLost === 0 &&
    r.runscLeft === 0 &&
    r.netnsLeft === 0 &&
    r.snapshotsLeaked === 0 &&
    !r.interrupted &&
    !r.timedOut
  );
}

function formatReport(r: Report): string {
  const n = (v: number | undefined) => (v === undefined ? 'not checked' : String(v));
  const survived = r.tracks.filter((t) => t.losses === 0).length;
  const duration = (r.endedAt || Date.now()) - r.startedAt;
  const ok = passed(r);
  const rows: Array<[string, string]> = [
    ['CPU', r.machine.CPU ?? ''],
    ['cores', r.machine.cores ?? ''],
    ['memory', r.machine.memory ?? ''],
    ['kernel', r.machine.kernel ?? ''],
    ['node', r.machine.node ?? ''],
    ['runsc', r.runsc],
    ['duration', `${clock(duration)} (--minutes ${r.opts.minutes}${r.interrupted ? ', interrupted' : ''}${r.timedOut ? ', cut off at the time limit' : ''})`],
    ['seed', `${r.opts.seed}${r.opts.seedGiven ? '' : ' (from the clock)'}`],
    ['actors', `${r.opts.actors} (workers ${r.opts.actors + 2})`],
    ['cycles run', String(r.cycles)],
    ['operations: counter requests', String(r.counts)],
    ['operations: suspend+resume', String(r.suspends)],
    ['operations: pause+resume', String(r.pauses)],
    ['operations: migrations that moved', `${r.migrationsMoved} of ${r.migrations}${r.migrationsStayed ? ` (${r.migrationsStayed} stayed on their worker)` : ''}`],
    ['faults: worker sandbox kill -9', String(r.workerKills)],
    ['faults: kill -9 of a sandbox being resumed', String(r.workerKillsDuringResume)],
    ['kill -9 of a sandbox → actor CRASHED (median / max)', r.crashNoticedMs.length ? `${msText(percentile(r.crashNoticedMs, 50))} / ${msText(Math.max(...r.crashNoticedMs))}` : '–'],
    ['CRASHED → RevertActor + ResumeActor → RUNNING', r.recoveries ? `${r.recoveries} (median ${msText(percentile(r.recoveryMs, 50))}, max ${msText(Math.max(...r.recoveryMs))})` : '0'],
    ['actors found CRASHED with no kill to explain it', String(r.unexpectedCrashes)],
    [`faults: local serve kill -9 (every ${r.opts.killEvery || '–'} cycles)`, String(r.serverKills)],
    ['actors whose memory survived every fault', `${survived} / ${r.opts.actors}`],
    ['memory losses', String(r.losses.length)],
    ['actors lost', n(r.actorsLost)],
    ['runsc processes left', n(r.runscLeft)],
    ['network namespaces left', n(r.netnsLeft)],
    ['snapshot files leaked', n(r.snapshotsLeaked)],
    ['snapshot dirs per actor after stop', r.perActorSnapshots],
    ['operation failures', String(r.failures.length)],
    ['kill -9 → serving again (median / p99)', r.restartServingMs.length ? `${msText(percentile(r.restartServingMs, 50))} / ${msText(percentile(r.restartServingMs, 99))}` : '–'],
    ['kill -9 → all actors answering (median / p99)', r.restartAnsweringMs.length ? `${msText(percentile(r.restartAnsweringMs, 50))} / ${msText(percentile(r.restartAnsweringMs, 99))}` : '–'],
    ['clean stop checked', r.cleanStopChecked],
    ['restart, counters and delete checked', r.deleteChecked],
    ['result', ok ? 'PASS' : r.interrupted ? 'INTERRUPTED' : 'FAIL'],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  const out = ['### Soak of the local Substrate (Substrate v0.4 API)', '', `| ${'figure'.padEnd(w)} | value |`, `|${'-'.repeat(w + 2)}|---|`];
  for (const [k, v] of rows) out.push(`| ${k.padEnd(w)} | ${v.replace(/\|/g, '\\|')} |`);
  const notes: string[] = [];
  for (const l of r.losses) notes.push(`**memory lost**: ${l.actor} at cycle ${l.cycle}: expected n=${l.expected}, got n=${l.got}; after: ${l.after}`);
  for (const f of r.failures.slice(0, 50)) notes.push(`**failed** (${f.at}): ${f.what}`);
  if (r.failures.length > 50) notes.push(`… and ${r.failures.length - 50} more failures`);
  for (const d of r.snapshotDetails.slice(0, 30)) notes.push(`snapshot: ${d}`);
  for (const a of r.aheads.slice(0, 10)) notes.push(`counter ahead of what was expected (an answer lost, not memory): ${a}`);
  if (r.forcedCleanup) notes.push('the soak killed what it had started and removed the instance\'s runsc processes, namespaces and cgroups itself (the failures above say what was left before that)');
  if (!ok || r.stateDirKept) notes.push(`serve log: ${r.logFile}`);
  if (r.stateDirKept) notes.push(`state directory: ${r.stateDir}`);
  notes.push(`repeat this schedule with: npm run soak -- --minutes ${r.opts.minutes} --actors ${r.opts.actors} --seed ${r.opts.seed} --kill-every ${r.opts.killEvery}`);
  if (notes.length) out.push('', ...notes.map((x) => `* ${x}`));
  return out.join('\n') + '\n';
}

// ---- main ---------------------------------------------------------------------------------------------------

export async function main(argv: string[]): Promise<number> {
  let opts: SoakOptions;
  try {
    opts = parseSoakArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`soak: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (opts.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (opts.stateDir && existsSync(path.join(opts.stateDir, 'substrate.db'))) {
    process.stderr.write(`soak: --state-dir ${opts.stateDir} already holds a local Substrate (substrate.db); give a new or empty directory\n`);
    return 2;
  }
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    process.stderr.write('soak: the local Substrate needs root (network namespaces, runsc); run as root\n');
    return 1;
  }
  const m = await loadModules();
  m.setLogLevel('warn');
  const ownsStateDir = !opts.stateDir;
  const stateDir = opts.stateDir ?? mkdtempSync(path.join(tmpdir(), 'substrate-soak-'));
  const logFile = path.join(tmpdir(), `substrate-soak-${opts.seed}-${process.pid}.log`);
  const soak = new Soak(m, opts, stateDir, logFile, ownsStateDir);
  soak.progress(`seed ${opts.seed}${opts.seedGiven ? '' : ' (from the clock)'}, ${opts.actors} actors, ${opts.minutes} min, kill -9 of local serve every ${opts.killEvery || '–'} cycles`);

  let finished = false;
  const finish = async (code: number): Promise<number> => {
    if (finished) return code;
    finished = true;
    soak.report.endedAt = Date.now();
    process.stdout.write(formatReport(soak.report));
    if (ownsStateDir && !opts.keep) rmSync(stateDir, { recursive: true, force: true });
    if (passed(soak.report) && !opts.keep) rmSync(logFile, { force: true });
    else process.stderr.write(`soak: serve log kept at ${logFile}\n`);
    return code;
  };

  // Ctrl-C: the first stops cleanly (no new work, the local Substrate stopped, the checks run, the table printed);
  // a second one kills what the soak started and prints the table so far.
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      soak.progress(`${sig}: stopping (cancelling the current step, then a clean stop and the checks; ${sig} again to kill at once)`);
      soak.markInterrupted();
      return;
    }
    soak.progress(`${sig} again: killing the local Substrate and its sandboxes`);
    void soak
      .forceCleanup()
      .then(() => finish(130))
      .then((c) => process.exit(c));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  // Whatever happens, the soak's own child does not outlive it.
  process.on('exit', () => soak.killServeNow());

  // The hard bound: minutes + 1 minute, whatever hangs. The watchdog takes over from the main flow: it kills
  // what the soak started, reports what is still left after that, prints the table and exits.
  let cutOff: Promise<number> | undefined;
  const watchdog = setTimeout(() => {
    soak.report.timedOut = true;
    soak.report.failures.push({ at: 'end', what: 'the soak did not finish within --minutes + 1 minute; cut off' });
    soak.progress('time limit reached: killing the local Substrate and its sandboxes');
    soak.stop.abort();
    cutOff = soak
      .forceCleanup()
      .then(() => soak.recheckLeftovers('after the forced cleanup'))
      .then(() => finish(1))
      .then((c) => process.exit(c));
  }, soak.hardEnd - Date.now() - 10_000);
  const watchdogFired = () => soak.report.timedOut;

  try {
    try {
      await soak.setup();
    } catch (e) {
      if (!soak.report.interrupted) soak.fail(`setup: ${errText(e)}`);
      throw e;
    }
    await soak.loop();
    if (!watchdogFired()) await soak.teardown();
  } catch (e) {
    if (watchdogFired()) return await cutOff!;
    if (!soak.report.interrupted && !soak.report.failures.length) soak.fail(errText(e));
    // Something went wrong half-way: make sure nothing of the instance is left running, then report it.
    await soak.forceCleanup();
  } finally {
    if (!watchdogFired()) clearTimeout(watchdog);
  }
  if (watchdogFired()) return await cutOff!;
  if (finished) return 1;
  // A run that did not pass may have left something (a server, sandboxes, namespaces, cgroups): removed here,
  // after it was counted. Idempotent, and quick when nothing is left.
  if (!passed(soak.report)) await soak.forceCleanup();
  return finish(soak.report.interrupted ? 130 : passed(soak.report) ? 0 : 1);
}

const isMain = !!process.argv[1] && pathToFileURL(path.resolve(process.argv[1])).href === import.meta.url;
if (isMain) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // gRPC channels and timers may linger; the result is printed, so leave now.
      setTimeout(() => process.exit(code), 200).unref();
    },
    (e: unknown) => {
      process.stderr.write(`soak: error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
