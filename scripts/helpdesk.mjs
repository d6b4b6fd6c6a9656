#!/usr/bin/env node
// The ten-beat helpdesk verification (examples/helpdesk/README.md): two helpdesk agents, alice and bob, provisioned
// through the driver's socket by the OpenShell GATEWAY STAND-IN (tests/integration/gateway/harness.ts: the gateway
// itself cannot run here) in the chosen generation's mode (--gateway v0.1, the default, or v0.0), spoken to through the
// Substrate router, suspended by an operator, resumed implicitly, probed for exfiltration, moved off a killed worker and
// deleted. Every beat checks what it claims and prints PASS or FAIL with its timing; any failure exits 1. Below the
// driver is Substrate v0.4 (ateapi.Control): the pool, the atespace and the template are v0.4 manifests
// (examples/helpdesk/*.yaml), a killed worker makes the actor CRASHED and the driver brings it back
// (RevertActor → ResumeActor from its last external snapshot).
//
// Default: a fresh embedded local Substrate (real gVisor) in a temporary state directory, removed afterwards.
// Run `node scripts/helpdesk.mjs --help` (or `npm run helpdesk -- --help`).
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { $, chalk } from 'zx';
import { parse as parseToml } from 'smol-toml';
import { REPO_ROOT, UsageError, parseFlags, runMain } from './lib/cli.mjs';
import { sandboxOfWorker } from './lib/sandbox-pid.mjs';
import { childEnv, spawnOptions } from '../src/common/child-env.mjs';

const PROG = 'helpdesk.mjs';
const BIN = path.join(REPO_ROOT, 'bin', 'substrate-driver.js');
const APP_DIR = path.join(REPO_ROOT, 'examples', 'helpdesk', 'app');
const POOL_YAML = path.join(REPO_ROOT, 'examples', 'helpdesk', 'workerpool.yaml');
const TEMPLATE_YAML = path.join(REPO_ROOT, 'examples', 'helpdesk', 'actortemplate.yaml');
/** Kubernetes namespace of the WorkerPool. The template lives in the workspace's atespace (v0.4: an actor's template is in its own atespace). */
const POOL_NS = 'ate-demo-helpdesk';
const TEMPLATE_NAME = 'helpdesk';
const POOL = 'helpdesk-pool';
/** The sandbox template annotation that names a pre-provisioned ActorTemplate (src/driver/driver.ts). */
const TEMPLATE_ANNOTATION = 'substrate_actor_template';
const GATEWAYS = ['v0.1', 'v0.0'];
const DEFAULT_PROBE_URL = 'http://203.0.113.7/';
const DEFAULT_SNAPSHOTS_LOCATION = 'gs://ate-snapshots/helpdesk-demo/';
/** The labels OpenShell v0.1's default resource admission wants on an attachable template (v0.4 templates have none). */
const attachableLabels = (workspace) => ({ 'openshell.ai/sandbox-attachable': 'true', 'openshell.ai/sandbox-attachable-workspace': workspace });
/** ActorState numbers (Substrate v0.4 ateapi.ActorState). */
const ST = { RESUMING: 1, RUNNING: 2, SUSPENDING: 3, SUSPENDED: 4, PAUSING: 5, PAUSED: 6, CRASHED: 7, DELETING: 8, REVERTING: 9 };
const STATE_NAMES = Object.fromEntries(Object.entries(ST).map(([k, v]) => [v, k]));
const stateOf = (a) => a?.status?.state ?? 0;
const stateName = (a) => (a ? (STATE_NAMES[stateOf(a)] ?? String(stateOf(a))) : 'absent');

const Q1 = 'My laptop cannot reach the VPN since this morning. What should I check first?';
const Q2 = 'I restarted the client as you said. What was my original problem again?';
const Q3 = 'Are you still there after that outage? Remind me what I asked first.';
const QB1 = 'How do I reset my email password?';
const QB2 = 'Did you keep a note of my password question?';

const BEATS = [
  'Provision alice',
  'Provision bob in the same worker pool',
  'ListSandboxes: both listed, none in error',
  'Cold ask to alice',
  'Operator suspends alice (actors suspend)',
  "Idle: alice's workers are free",
  'Follow-up to alice: implicit resume',
  'Exfil attempt from bob is blocked',
  "Kill alice's worker: CRASHED, recovered elsewhere",
  'DeleteSandbox alice: bob alone, template kept',
];

const HELP = `usage: node scripts/helpdesk.mjs [options]        (npm run helpdesk -- [options])

The ten-beat helpdesk verification. Lifecycle calls go through the driver's Unix socket, made by the OpenShell
gateway stand-in (tests/integration/gateway/harness.ts; the real gateway cannot run here) with the rules of the
generation chosen by --gateway:
  v0.1 (default)  GetCapabilities with the gateway's PeerMetadata, negotiation and the admission acknowledgement
                  checked at startup and re-read before every Validate/Create/Start; launch authentication on Create;
                  every watch event and GetSandbox time (Timestamp) validated; v0.1 phase rules; a background
                  DeleteSandbox after each watch "deleted". The template is named by the sandbox template annotation
                  platform_config.annotations.substrate_actor_template (v0.1 forbids caller driver_config).
  v0.0            GetCapabilities without metadata, GetGatewayListenerRequirements, responses decoded with the 0.0.x
                  bindings (last_transition_time strings); the template is named by driver_config.actor_template.
Both: ValidateSandboxCreate + CreateSandbox with a UUID id, the watch and reconcile loops (ListSandboxes,
GetSandbox), DeleteSandbox; a sandbox is READY when the driver reports it Ready=True (the stand-in's default
supervisor probe: no supervisor runs in the helpdesk actors). Data-plane calls go through the Substrate router
(header ate-target-actor: <workspace>/<sandbox id>, as Substrate v0.4 routes);
the operator suspend goes around the gateway (substrate-driver actors suspend).

  1. Provision alice (ValidateSandboxCreate + CreateSandbox, referencing the pre-provisioned template
     <workspace>/${TEMPLATE_NAME}, admitted by the labels the driver's template_labels give it:
     openshell.ai/sandbox-attachable="true", openshell.ai/sandbox-attachable-workspace=<workspace>); she becomes
     READY on a worker of ${POOL}
  2. Provision bob in the same worker pool
  3. ListSandboxes: both listed with their names; neither in an error state (the stand-in's phase rules)
  4. Cold ask to alice: a reply, history_turns 1
  5. Suspend alice as an operator would (substrate-driver actors suspend): SUSPENDED, worker freed; the driver
     reports her as resumable (Ready=Unknown, resumes on demand), not as an error and not as stopped; the
     stand-in shows PROVISIONING
  6. Idle: every worker alice used is free, her sandbox process is gone
  7. Follow-up to alice through the router: implicit resume; the reply knows the first question; history_turns 2
  8. Exfil attempt from bob (POST /probe): blocked (he has no EgressPolicy: v0.4 allows such an actor no egress)
  9. Kill alice's worker (kill -9 of her runsc sandbox process, found with runsc list under the instance's root):
     her actor is CRASHED; the driver recovers it (RevertActor → ResumeActor) on another worker from her last
     external snapshot (the suspend of beat 5) and she still knows the first question; bob is unaffected (same
     worker, same process, still answering)
 10. DeleteSandbox alice: deleted=true, the watch's deleted event removes her row (v0.1: then the background
     DeleteSandbox), bob alone is listed, nothing ever derived ERROR, and the pre-provisioned template survives

Each beat prints PASS or FAIL with its timing; a summary table follows. Exit status: 0 when all ten pass,
1 when any fails, 2 for a bad command line, 130 when interrupted. Everything the run started is stopped and
every temporary directory removed, also on failure and on Ctrl-C.

Targets:
  (default)              start \`substrate-driver serve --local\` on a temporary socket and state directory: the
                         embedded local Substrate on this machine (needs root and runsc: npm run setup)
  --state-dir DIR        use this state directory instead of a temporary one (kept afterwards); if a local
                         Substrate already runs there (DIR/local.json), use it
  --socket PATH          use a driver already serving on PATH (do not start one). With a local Substrate,
                         give its --state-dir too; on a cluster, give --config
  --config FILE          cluster: the driver config ([openshell.drivers.substrate], e.g. OUT/driver.toml written by
                         scripts/kind-up.mjs). Env OPENSHELL_SUBSTRATE_CONFIG. Reads router_url, kubeconfig,
                         kube_context and the API settings from it; needs --image and --worker-image. The pool
                         goes through kubectl apply, the atespace and the template through ateapi.
                         With --gateway v0.1 the driver's admission policy must be upstream's default (the
                         stand-in's operator policy); otherwise the stand-in refuses to start and says why

Options:
  --gateway v0.1|v0.0    the OpenShell gateway generation the stand-in plays (default v0.1)
  --router-url URL       router base URL (default: the local Substrate's, or router_url of --config)
  --image REF            helpdesk image, pinned by digest (default: built from examples/helpdesk/app on this
                         machine, local/helpdesk@sha256:<hex>; required on a cluster: push examples/helpdesk/app
                         on a node image and give its digest)
  --worker-image REF     cluster: the WorkerPool's spec.workerImage (v0.4.0: ateom-gvisor@sha256:…, pinned);
                         --ateom-image is its old name
  --snapshots-location URI  the template's snapshotConfig.storageLocation (default ${DEFAULT_SNAPSHOTS_LOCATION};
                         the local Substrate keeps snapshots in its state directory whatever the URI says)
  --workspace NAME       the OpenShell workspace = Substrate atespace of alice and bob (default helpdesk)
  --probe-url URL        what bob tries to reach in beat 8 (default ${DEFAULT_PROBE_URL}, a documentation
                         address: inside the sandbox it has no route, so nothing leaves the machine)
  --workers N            slots of the local Substrate's built-in default pool (default 1; the demo uses
                         the 3 workers of ${POOL})
  --beat-timeout SECS    upper bound of one beat (default 90)
  --report FILE          also write the results as JSON
  --keep                 keep the temporary state directory (logs, snapshots) for inspection
  -h, --help             this help
`;

// ------------------------------------------------------------------------------------------------ small helpers

class BeatFailure extends Error {}

/** @param {unknown} cond @param {string} msg */
function check(cond, msg) {
  if (!cond) throw new BeatFailure(msg);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const secs = (ms) => `${(ms / 1000).toFixed(2)} s`;
const short = (s, n = 90) => (s.length > n ? s.slice(0, n - 1) + '…' : s);

/** Start of the running beat, for the elapsed time on its progress lines. */
let beatStart = 0;
/** Set by SIGINT/SIGTERM: no further beat starts, and the one running reports nothing. */
let interrupted = false;

function note(msg) {
  if (interrupted) return;
  const at = beatStart ? `+${((performance.now() - beatStart) / 1000).toFixed(2)} s  ` : '';
  process.stdout.write(`    · ${at}${msg}\n`);
}

function info(msg) {
  process.stdout.write(`${msg}\n`);
}

/** Polls `fn` until it returns a truthy value or `ms` elapse; then throws BeatFailure(describe(last)). */
async function waitUntil(fn, ms, describe, intervalMs = 250) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    let err;
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      if (e instanceof BeatFailure) throw e;
      err = e;
    }
    if (Date.now() > deadline) {
      throw new BeatFailure(`${describe(last)} after ${(ms / 1000).toFixed(0)} s${err ? ` (last error: ${errMsg(err)})` : ''}`);
    }
    await sleep(intervalMs);
  }
}

function errMsg(e) {
  if (e && typeof e === 'object' && 'details' in e && typeof e.details === 'string' && 'code' in e) {
    return `gRPC ${GRPC_CODES[e.code] ?? e.code}: ${e.details}`;
  }
  return e instanceof Error ? e.message : String(e);
}

const GRPC_CODES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE',
  'DATA_LOSS', 'UNAUTHENTICATED',
];

/** A killed process stays a zombie until its parent reaps it: dead all the same. */
function isZombie(pid) {
  try {
    return /^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

function pidAlive(pid) {
  if (!pid || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

function readyCond(sb) {
  return (sb?.status?.conditions ?? []).find((c) => c.type === 'Ready');
}

function condSummary(sb) {
  const conds = sb?.status?.conditions ?? [];
  return conds.map((c) => `${c.type}=${c.status}${c.reason ? ` (${c.reason})` : ''}`).join(', ') || 'no conditions';
}

// ------------------------------------------------------------------------------------------------- the sandbox

/**
 * The DriverSandbox the gateway builds for alice and bob. A v0.1 user names the pre-provisioned template with the
 * sandbox template annotation (the gateway refuses caller driver_config by default); a 0.0.x user with driver_config.
 */
function sandboxFor(id, name, workspace, generation) {
  const ref = `${workspace}/${TEMPLATE_NAME}`;
  return {
    id,
    name,
    namespace: '',
    workspace,
    spec: {
      logLevel: '',
      environment: {},
      template: {
        image: '',
        agentSocketPath: '',
        labels: {},
        environment: {},
        resources: undefined,
        platformConfig: generation === 'v0.1' ? { annotations: { [TEMPLATE_ANNOTATION]: ref } } : undefined,
        driverConfig: generation === 'v0.0' ? { actor_template: ref } : undefined,
      },
      resourceRequirements: undefined,
      sandboxToken: '',
      command: ['/usr/bin/node', '/app/server.js'],
      tty: false,
      awaitMainProcessAttachment: false,
      launchAuthentication: Buffer.alloc(0),
    },
    status: undefined,
  };
}

// ------------------------------------------------------------------------------------------------- the router

/**
 * One HTTP request through the router, addressed as Substrate v0.4 routes: `ate-target-actor: <atespace>/<actor>`.
 * Never throws: errors come back as status 0.
 */
function viaRouter(routerUrl, target, method, pathName, body, timeoutMs = 40_000) {
  const u = new URL(routerUrl);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port || 80,
        method,
        path: pathName,
        headers: { 'ate-target-actor': target, ...(payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}) },
        timeout: timeoutMs,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, json, text, ms: performance.now() - t0 });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e) => resolve({ status: 0, json: undefined, text: e.message, ms: performance.now() - t0 }));
    req.end(payload);
  });
}

// ------------------------------------------------------------------------------------------------- platforms
// What the beats need to see below the driver: workers, actors, the template, and how to kill a worker.

/**
 * Workers as ateapi sees them (ListWorkers + ListWorkerActorAssignments, the same calls on a cluster and locally):
 * [{worker, pool: "<namespace>/<pool>", node, state: 'free'|'running', actor: "<atespace>/<name>"|'', epoch, uid}].
 */
async function workersOf(client) {
  const out = [];
  for (const w of await client.listAllWorkers()) {
    const ref = { atespace: w.metadata?.atespace ?? '', name: w.metadata?.name ?? '' };
    const assigned = await client.listAllWorkerActorAssignments(ref);
    const actor = assigned.map((a) => (a.actor ? `${a.actor.atespace}/${a.actor.name}` : '')).find(Boolean) ?? '';
    out.push({
      worker: w.workerPod || ref.name,
      pool: `${w.workerNamespace}/${w.workerPool}`,
      node: w.nodeName,
      state: actor ? 'running' : 'free',
      actor,
      epoch: w.epoch,
      uid: w.workerPodUid,
      pid: 0,
    });
  }
  return out;
}

class LocalPlatform {
  constructor({ stateDir, localJson, substrateClient }) {
    this.stateDir = stateDir;
    this.local = localJson;
    this.client = substrateClient;
    this.kind = 'local';
  }
  describe() {
    return `local Substrate (state dir ${this.stateDir})`;
  }
  /** Workers through ateapi, each busy one with the pid of its runsc sandbox (runsc list under the instance's root). */
  async workers() {
    const ws = await workersOf(this.client);
    for (const w of ws) if (w.actor) w.pid = (await sandboxOfWorker(this.stateDir, w.worker))?.pid ?? 0;
    return ws;
  }
  async actor(atespace, name) {
    return this.client.findActor({ atespace, name });
  }
  async kill(w) {
    const sb = await sandboxOfWorker(this.stateDir, w.worker);
    check(sb && sb.pid > 0, `worker ${w.worker} has no running runsc sandbox under ${path.join(this.stateDir, 'runsc-root')}`);
    process.kill(sb.pid, 'SIGKILL');
    return `kill -9 ${sb.pid} (runsc sandbox ${sb.sandboxId} of worker ${w.worker}, in ${sb.netns})`;
  }
  async template(atespace) {
    return this.client.findActorTemplate({ atespace, name: TEMPLATE_NAME });
  }
  /** `substrate-driver local apply -f FILE [--wait]`. */
  async apply(file, timeoutSecs, wait) {
    const p = await $({ quiet: true, nothrow: true })`${process.execPath} ${BIN} local apply -f ${file} ${wait ? ['--wait', '--timeout', String(timeoutSecs)] : []} --state-dir ${this.stateDir}`;
    if (p.exitCode !== 0) throw new Error(`local apply failed (exit ${p.exitCode}): ${(p.stderr || p.stdout).trim()}`);
    return p.stdout.trim().split('\n');
  }
  /** Atespace + WorkerPool documents: both through local apply. */
  async applyPool(file, timeoutSecs) {
    return this.apply(file, timeoutSecs, false);
  }
  suspendArgs() {
    return ['--state-dir', this.stateDir];
  }
}

class ClusterPlatform {
  constructor({ configPath, cfg, substrateClient }) {
    this.configPath = configPath;
    this.cfg = cfg;
    this.client = substrateClient;
    this.kind = 'cluster';
    this.kubectl = ['kubectl', ...(cfg.kubeconfig ? ['--kubeconfig', cfg.kubeconfig] : []), ...(cfg.kubeContext ? ['--context', cfg.kubeContext] : [])];
  }
  describe() {
    return `cluster (driver config ${this.configPath}, ateapi ${this.cfg.apiEndpoint})`;
  }
  /** A cluster worker is a pod: no local pid. */
  async workers() {
    return workersOf(this.client);
  }
  async actor(atespace, name) {
    return this.client.findActor({ atespace, name });
  }
  async kill(w) {
    const [ns, pod] = [w.pool.split('/')[0], w.worker];
    const p = await $({ quiet: true, nothrow: true })`${this.kubectl} delete pod -n ${ns} ${pod} --grace-period=0 --force --wait=false`;
    if (p.exitCode !== 0) throw new Error(`kubectl delete pod ${ns}/${pod} failed: ${p.stderr.trim()}`);
    return `kubectl delete pod ${ns}/${pod} --grace-period=0 --force (on a cluster the worker pod is the sandbox process)`;
  }
  async template(atespace) {
    return this.client.findActorTemplate({ atespace, name: TEMPLATE_NAME });
  }
  /** Atespace and ActorTemplate through ateapi (substrate-driver local apply --config), --wait for the golden tag. */
  async apply(file, timeoutSecs, wait) {
    const p = await $({ quiet: true, nothrow: true })`${process.execPath} ${BIN} local apply -f ${file} ${wait ? ['--wait', '--timeout', String(timeoutSecs)] : []} --config ${this.configPath}`;
    if (p.exitCode !== 0) throw new Error(`apply through ateapi failed (exit ${p.exitCode}): ${(p.stderr || p.stdout).trim()}`);
    return p.stdout.trim().split('\n');
  }
  /** The WorkerPool (a CRD) through kubectl, the Atespace through ateapi. */
  async applyPool(file, timeoutSecs) {
    const docs = fs.readFileSync(file, 'utf8').split(/^---[ \t]*$/m);
    const pool = docs.filter((d) => /^kind:\s*WorkerPool\s*$/m.test(d)).join('---\n');
    const rest = docs.filter((d) => /^kind:/m.test(d) && !/^kind:\s*WorkerPool\s*$/m.test(d)).join('---\n');
    const poolFile = `${file}.workerpool.yaml`;
    const restFile = `${file}.atespace.yaml`;
    fs.writeFileSync(poolFile, pool);
    fs.writeFileSync(restFile, rest);
    const a = await $({ quiet: true, nothrow: true })`${this.kubectl} apply -f ${poolFile}`;
    if (a.exitCode !== 0) throw new Error(`kubectl apply (WorkerPool) failed: ${a.stderr.trim()}`);
    return [...a.stdout.trim().split('\n'), ...(await this.apply(restFile, timeoutSecs, false))];
  }
  suspendArgs() {
    return ['--config', this.configPath];
  }
}

// ------------------------------------------------------------------------------------------------- cleanup

/** Our own leftovers after an unclean driver exit: runsc processes rooted in our state dir, our netns, our cgroup. */
async function reapLeftovers(stateDir) {
  const reaped = [];
  const abs = path.resolve(stateDir);
  const tag = createHash('sha256').update(abs).digest('hex').slice(0, 6);
  const runscRoot = path.join(abs, 'runsc-root');
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let cmd = '';
    try {
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (Number(pid) !== process.pid && cmd.includes(runscRoot)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
        reaped.push(`process ${pid}`);
      } catch {
        /* gone */
      }
    }
  }
  const ns = await $({ quiet: true, nothrow: true })`ip netns list`;
  for (const line of ns.stdout.split('\n')) {
    const name = line.trim().split(/\s+/)[0];
    if (name && name.startsWith(`sbx-${tag}-`)) {
      await $({ quiet: true, nothrow: true })`ip netns del ${name}`;
      reaped.push(`netns ${name}`);
    }
  }
  const cg = path.join('/sys/fs/cgroup', `substrate-${tag}`);
  if (fs.existsSync(cg)) {
    const dirs = [];
    const walk = (d) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
      dirs.push(d);
    };
    try {
      walk(cg);
      for (const d of dirs) fs.rmdirSync(d);
      reaped.push(`cgroup ${cg}`);
    } catch {
      /* best effort */
    }
  }
  return reaped;
}

/** Leftovers that a clean shutdown should not leave: runsc processes of our state dir and our netns. */
async function leftovers(stateDir) {
  const abs = path.resolve(stateDir);
  const tag = createHash('sha256').update(abs).digest('hex').slice(0, 6);
  const out = [];
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (Number(pid) !== process.pid && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(path.join(abs, 'runsc-root'))) out.push(`process ${pid}`);
    } catch {
      /* gone */
    }
  }
  const ns = await $({ quiet: true, nothrow: true })`ip netns list`;
  for (const line of ns.stdout.split('\n')) {
    const name = line.trim().split(/\s+/)[0];
    if (name && name.startsWith(`sbx-${tag}-`)) out.push(`netns ${name}`);
  }
  return out;
}

// ------------------------------------------------------------------------------------------------- processes

/** A child process we started, with its log file; stop() = SIGTERM, then SIGKILL after `graceMs`. */
function startProcess(label, argv, logFile) {
  const fd = fs.openSync(logFile, 'a', 0o600);
  // Own process group: a Ctrl-C in the terminal reaches only this script, which then stops the child in order.
  const child = spawn(argv[0], argv.slice(1), spawnOptions({ stdio: ['ignore', fd, fd], detached: true, cwd: REPO_ROOT, env: childEnv({ inherit: true }) }));
  fs.closeSync(fd);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return {
    label,
    child,
    pid: child.pid,
    logFile,
    exited,
    get running() {
      return child.exitCode === null && child.signalCode === null;
    },
    async stop(graceMs = 60_000) {
      if (child.exitCode !== null || child.signalCode !== null) return { clean: child.exitCode === 0, how: `had exited (${child.exitCode ?? child.signalCode})` };
      child.kill('SIGTERM');
      const r = await Promise.race([exited, sleep(graceMs).then(() => null)]);
      if (r) return { clean: r.code === 0, how: `exited ${r.code ?? r.signal} after SIGTERM` };
      child.kill('SIGKILL');
      await exited;
      return { clean: false, how: `killed after ${graceMs / 1000} s` };
    },
  };
}

function tail(file, lines = 15) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// ------------------------------------------------------------------------------------------------- options

function parseOptions(argv) {
  const f = parseFlags(argv, {
    string: [
      'state-dir', 'socket', 'config', 'router-url', 'image', 'worker-image', 'ateom-image', 'snapshots-location', 'workspace',
      'probe-url', 'workers', 'beat-timeout', 'report', 'gateway',
    ],
    boolean: ['help', 'keep'],
  });
  if (f.help) return { help: true };
  const intOf = (name, v, min, max, def) => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${v}"`);
    return n;
  };
  const gateway = f.gateway ?? 'v0.1';
  if (!GATEWAYS.includes(gateway)) throw new UsageError(`--gateway must be one of ${GATEWAYS.join(', ')} (the OpenShell gateway generation), got "${gateway}"`);
  const workspace = f.workspace ?? 'helpdesk';
  if (!/^[a-z0-9]([-a-z0-9]{0,17}[a-z0-9])?$/.test(workspace)) {
    throw new UsageError(`--workspace "${workspace}" must be a DNS-1123 label of at most 19 characters (an OpenShell workspace name)`);
  }
  const config = f.config ?? (process.env.OPENSHELL_SUBSTRATE_CONFIG || undefined);
  const probeUrl = f['probe-url'] ?? DEFAULT_PROBE_URL;
  try {
    const u = new URL(probeUrl);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error();
  } catch {
    throw new UsageError(`--probe-url must be an http:// or https:// URL, got "${probeUrl}"`);
  }
  if (f['router-url'] !== undefined) {
    try {
      new URL(f['router-url']);
    } catch {
      throw new UsageError(`--router-url must be a URL such as http://127.0.0.1:8000, got "${f['router-url']}"`);
    }
  }
  if (f['ateom-image'] !== undefined && f['worker-image'] !== undefined && f['ateom-image'] !== f['worker-image']) {
    throw new UsageError('--ateom-image is the old name of --worker-image; give one of them');
  }
  f['worker-image'] ??= f['ateom-image'];
  for (const k of ['image', 'worker-image']) {
    if (f[k] !== undefined && !f[k].includes('@')) {
      throw new UsageError(`--${k} "${f[k]}" is not pinned: give a reference with a digest (image@sha256:<hex>); changing an image invalidates snapshots`);
    }
  }
  if (config && f['state-dir']) throw new UsageError('give --config (a cluster) or --state-dir (a local Substrate), not both');
  if (config) {
    if (!fs.existsSync(config)) throw new UsageError(`--config ${config}: no such file`);
    if (!f.image) throw new UsageError('on a cluster --image is required: the helpdesk image (examples/helpdesk/app at /app on a Node.js image), pinned by digest');
    if (!f['worker-image']) throw new UsageError('on a cluster --worker-image is required: the WorkerPool\'s spec.workerImage (v0.4.0: ateom-gvisor), pinned by digest');
  }
  if (f.socket && !config && !f['state-dir']) {
    throw new UsageError('--socket needs --state-dir (the local Substrate the driver uses) or --config (a cluster) to observe workers and the template');
  }
  return {
    help: false,
    gateway,
    stateDir: f['state-dir'] ? path.resolve(f['state-dir']) : undefined,
    socket: f.socket ? path.resolve(f.socket) : undefined,
    config: config ? path.resolve(config) : undefined,
    routerUrl: f['router-url'],
    image: f.image,
    workerImage: f['worker-image'],
    snapshotsLocation: f['snapshots-location'] ?? DEFAULT_SNAPSHOTS_LOCATION,
    workspace,
    probeUrl,
    workers: intOf('workers', f.workers, 1, 64, 1),
    beatTimeoutMs: intOf('beat-timeout', f['beat-timeout'], 5, 3600, 90) * 1000,
    report: f.report ? path.resolve(f.report) : undefined,
    keep: !!f.keep,
  };
}

/** A manifest with its placeholders replaced; any placeholder left is an error. */
function renderManifest(file, values) {
  let text = fs.readFileSync(file, 'utf8');
  // Comments may mention placeholders; only YAML values are replaced.
  text = text
    .split('\n')
    .map((line) => (line.trimStart().startsWith('#') ? line : line.replace(/\$\{([A-Z_]+)\}/g, (m, k) => (k in values ? values[k] : m))))
    .join('\n');
  const left = text.split('\n').filter((l) => !l.trimStart().startsWith('#') && /\$\{[A-Z_]+\}/.test(l));
  if (left.length > 0) throw new Error(`unreplaced placeholders in ${file}: ${left.map((l) => l.trim()).join('; ')}`);
  return text;
}

// ------------------------------------------------------------------------------------------------- main

async function main() {
  const opts = parseOptions(process.argv.slice(2));
  if (opts.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const runStart = performance.now();
  const cleanups = [];
  let cleaning;
  const cleanup = () =>
    (cleaning ??= (async () => {
      for (const c of cleanups.reverse()) {
        try {
          await c();
        } catch (e) {
          process.stderr.write(`${PROG}: cleanup step failed: ${errMsg(e)}\n`);
        }
      }
    })());
  const onSignal = (sig) => {
    interrupted = true;
    process.stderr.write(`\n${PROG}: ${sig}: cleaning up (stopping what this run started)...\n`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', () => onSignal('SIGINT'));
  process.once('SIGTERM', () => onSignal('SIGTERM'));

  /** @type {Array<{n: number, title: string, result: 'PASS'|'FAIL'|'SKIP', ms: number, detail: string}>} */
  const results = [];
  let setupError;
  try {
    await runAll(opts, cleanups, results);
  } catch (e) {
    setupError = e;
    process.stdout.write(`${chalk.red('FAIL')} setup: ${errMsg(e)}\n`);
  } finally {
    await cleanup();
  }

  // -------- summary
  const total = performance.now() - runStart;
  for (let i = results.length; i < BEATS.length; i++) {
    results.push({ n: i + 1, title: BEATS[i], result: 'SKIP', ms: 0, detail: setupError ? 'setup failed' : 'not run' });
  }
  const rows = [['#', 'beat', 'result', 'time'], ...results.map((r) => [String(r.n), r.title, r.result, r.result === 'SKIP' ? '-' : secs(r.ms)])];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  info('\nSummary');
  for (const [i, r] of rows.entries()) {
    const line = r.map((c, j) => (j === 0 ? c.padStart(widths[j]) : c.padEnd(widths[j]))).join('  ').trimEnd();
    info(i === 0 ? chalk.bold(line) : line);
  }
  const passed = results.filter((r) => r.result === 'PASS').length;
  const beatsMs = results.reduce((s, r) => s + r.ms, 0);
  info(`\ntotal ${secs(total)} (beats ${secs(beatsMs)}, setup and cleanup ${secs(total - beatsMs)})`);
  if (opts.report) {
    fs.writeFileSync(
      opts.report,
      JSON.stringify({ passed, total_beats: BEATS.length, total_ms: Math.round(total), setup_error: setupError ? errMsg(setupError) : null, beats: results }, null, 2) + '\n',
    );
  }
  if (passed === BEATS.length && !setupError) {
    info(chalk.green(`helpdesk: all ${BEATS.length} beats passed in ${secs(total)}`));
    return 0;
  }
  const bad = results.filter((r) => r.result !== 'PASS').map((r) => r.n);
  info(chalk.red(`helpdesk: ${passed}/${BEATS.length} beats passed; not passed: ${bad.join(', ')}`));
  return 1;
}

async function runAll(opts, cleanups, results) {
  // TypeScript sources (generated gRPC client, the Substrate client, config loader, image builder) run through tsx,
  // like bin/substrate-driver.js.
  const { register } = await import('tsx/esm/api');
  register();
  const ts = (rel) => import(pathToFileURL(path.join(REPO_ROOT, rel)).href);
  const grpc = await import('@grpc/grpc-js');
  // The OpenShell gateway stand-in (both generations), shared with the integration tests.
  const H = await ts('tests/integration/gateway/harness.ts');
  const { SubstrateClient, clientFromConfig, resolveApiTarget } = await ts('src/substrate/client.ts');
  // The project's libraries log JSON lines; this script's own progress lines say what matters.
  (await ts('src/common/log.ts')).setLogLevel('warn');

  const t0 = performance.now();
  const step = (msg) => info(`setup  ${msg}`);
  let stateDir = opts.stateDir;
  let tempDir;
  if (!opts.config && !stateDir) {
    tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'helpdesk-'));
    stateDir = path.join(tempDir, 'state');
    cleanups.push(async () => {
      if (opts.keep) {
        info(`kept ${tempDir} (--keep)`);
        return;
      }
      fs.rmSync(tempDir, { recursive: true, force: true });
      info(`removed ${tempDir}`);
    });
  }
  const runDir = tempDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'helpdesk-run-'));
  if (!tempDir) cleanups.push(() => fs.rmSync(runDir, { recursive: true, force: true }));

  info(`helpdesk: ten beats against the ${opts.config ? 'cluster of ' + opts.config : 'local Substrate'}, through the OpenShell ${opts.gateway} gateway stand-in`);
  if (stateDir) info(`state dir ${stateDir}${tempDir ? ' (temporary)' : ''}`);

  let localJson;
  const readLocal = () => {
    try {
      const j = JSON.parse(fs.readFileSync(path.join(stateDir, 'local.json'), 'utf8'));
      return pidAlive(j.pid) ? j : undefined;
    } catch {
      return undefined;
    }
  };
  let socket = opts.socket;
  if (socket) {
    if (!fs.existsSync(socket)) throw new Error(`no driver socket at ${socket}: start one (substrate-driver serve --socket ${socket} ...) or leave --socket out`);
    if (!opts.config) {
      localJson = readLocal();
      if (!localJson) throw new Error(`no local Substrate runs for ${stateDir} (no live local.json): give the --state-dir of the local Substrate the driver uses`);
    }
  }

  // ---- image
  let image = opts.image;
  if (!image) {
    const ts0 = performance.now();
    const { buildImageFromDir } = await ts('src/local/images.ts');
    fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const img = await buildImageFromDir(stateDir, 'helpdesk', APP_DIR);
    image = img.ref;
    step(`image ${image} built from examples/helpdesk/app (${secs(performance.now() - ts0)})`);
  }

  // ---- the driver (and, locally, the Substrate)
  const procs = [];
  cleanups.push(async () => {
    for (const p of procs.reverse()) {
      if (!p.running) continue;
      const r = await p.stop();
      info(`stopped ${p.label} (pid ${p.pid}): ${r.how}`);
      if (!r.clean) process.stderr.write(`${PROG}: ${p.label} did not stop cleanly; last log lines:\n${tail(p.logFile)}\n`);
    }
    if (procs.length > 0 && stateDir && !opts.config) {
      const left = await leftovers(stateDir);
      if (left.length > 0) {
        const reaped = await reapLeftovers(stateDir);
        process.stderr.write(`${PROG}: the local Substrate left ${left.join(', ')} behind; removed ${reaped.join(', ') || 'nothing'}\n`);
      }
    }
  });

  // v0.4 templates carry no labels: the operator gives the pre-provisioned template its admission labels in the
  // driver's config (template_labels). A driver started here gets them by flag; one given with --socket must
  // have them already.
  const templateLabels = JSON.stringify({ [`${opts.workspace}/${TEMPLATE_NAME}`]: attachableLabels(opts.workspace) });
  if (!socket) {
    const ts0 = performance.now();
    socket = path.join(runDir, 'driver.sock');
    if (opts.config) {
      const p = startProcess('driver', [process.execPath, BIN, 'serve', '--config', opts.config, '--socket', socket, '--template-labels', templateLabels], path.join(runDir, 'driver.log'));
      procs.push(p);
      step(`driver: substrate-driver serve --config ${opts.config} --socket ${socket} (pid ${p.pid}, log ${p.logFile})`);
    } else {
      localJson = readLocal();
      if (localJson) step(`using the local Substrate already running in ${stateDir} (pid ${localJson.pid})`);
      const args = [process.execPath, BIN, 'serve', '--socket', socket, '--state-dir', stateDir, '--template-labels', templateLabels];
      if (!localJson) args.push('--local', '--router-listen', '127.0.0.1:0', '--workers', String(opts.workers));
      const p = startProcess('driver', args, path.join(runDir, 'driver.log'));
      procs.push(p);
      step(`driver: substrate-driver ${args.slice(2).join(' ')} (pid ${p.pid}, log ${p.logFile})`);
    }
    const drv = procs[procs.length - 1];
    await waitUntil(
      () => {
        if (!drv.running) throw new BeatFailure('it exited');
        return fs.existsSync(socket);
      },
      120_000,
      () => `the driver did not create its socket ${socket}`,
    ).catch((e) => {
      throw new Error(`driver failed to start: ${errMsg(e)}\n${tail(drv.logFile)}`);
    });
    step(`driver socket ready (${secs(performance.now() - ts0)})`);
  }

  // ---- the gateway (stand-in): startup (v0.1: negotiation and admission; 0.0.x: listener requirements), then its
  // watch and reconcile loops. Reconcile every 10 s (the gateway: 60 s) so a run of a few minutes sees sweeps.
  const gwOpts = { socketPath: socket, generation: opts.gateway, reconcileIntervalMs: 10_000 };
  let gw;
  await waitUntil(
    async () => {
      const g = new H.Gateway(gwOpts);
      try {
        await g.start();
        gw = g;
        return true;
      } catch (e) {
        await g.stop();
        // A refusal (negotiation, admission) is final; a driver still coming up is retried.
        if (e.code !== grpc.status.UNAVAILABLE) throw new BeatFailure(`gateway stand-in: ${e.message}`);
        throw e;
      }
    },
    60_000,
    () => 'the gateway stand-in could not start',
    500,
  ).catch((e) => {
    throw new Error(errMsg(e));
  });
  cleanups.push(() => gw.stop());
  const caps = gw.capabilities;
  if (opts.gateway === 'v0.1') {
    const ext = caps.extension;
    step(
      `gateway v0.1: GetCapabilities with gateway metadata: driver ${caps.driverName}, extension ${ext.implementationName} ${ext.implementationVersion} ` +
        `(protocol ${ext.protocolVersion.major}.${ext.protocolVersion.minor}) negotiated; admission acknowledgement verified: ${gw.admissionAck}`,
    );
  } else {
    step(`gateway 0.0.x: GetCapabilities: driver ${caps.driverName} ${caps.driverVersion}; GetGatewayListenerRequirements: ${gw.listenerRequirements.length} requirement(s)`);
  }
  step(`supervisor probe: ${gw.opts.supervisor.kind} (a sandbox is READY when the driver reports it Ready=True)`);
  const phaseOf = (sb) => H.derivePhase(sb?.status, opts.gateway);

  // ---- platform (what lies below the driver)
  let platform;
  let routerUrl = opts.routerUrl;
  if (opts.config) {
    const { loadConfig } = await ts('src/common/config.ts');
    const cfg = loadConfig({ flags: { config: opts.config } });
    const sc = clientFromConfig(cfg, resolveApiTarget(cfg));
    cleanups.push(() => sc.close?.());
    platform = new ClusterPlatform({ configPath: opts.config, cfg, substrateClient: sc });
    routerUrl ??= cfg.routerUrl;
    if (!routerUrl) throw new Error(`no router URL: ${opts.config} has no router_url; give --router-url`);
  } else {
    localJson ??= await waitUntil(readLocal, 60_000, () => `no running local Substrate in ${stateDir} (no live local.json)`);
    const sc = new SubstrateClient({ endpoint: localJson.api_endpoint, plaintext: true });
    cleanups.push(() => sc.close?.());
    platform = new LocalPlatform({ stateDir, localJson, substrateClient: sc });
    routerUrl ??= localJson.router_url;
  }
  step(`target: ${platform.describe()}; router ${routerUrl}`);

  // ---- the pre-provisioned objects (examples/helpdesk/*.yaml, Substrate v0.4 manifests): the atespace and the pool
  // first (its workers must exist before the template's golden actor boots on one of them), then the template,
  // ready once its golden snapshot is published as a tag.
  {
    const ts0 = performance.now();
    const poolFile = path.join(runDir, 'helpdesk-workerpool.yaml');
    const templateFile = path.join(runDir, 'helpdesk-actortemplate.yaml');
    const poolYaml = renderManifest(POOL_YAML, { WORKER_IMAGE: opts.workerImage ?? 'local', ATESPACE: opts.workspace });
    fs.writeFileSync(poolFile, poolYaml);
    fs.writeFileSync(templateFile, renderManifest(TEMPLATE_YAML, { HELPDESK_IMAGE: image, SNAPSHOTS_LOCATION: opts.snapshotsLocation, ATESPACE: opts.workspace }));
    const replicas = Number(/^\s*replicas:\s*(\d+)/m.exec(poolYaml)?.[1] ?? 0);
    const out = await platform.applyPool(poolFile, 180);
    const poolWorkers = await waitUntil(
      async () => {
        const ws_ = (await platform.workers()).filter((w) => w.pool === `${POOL_NS}/${POOL}`);
        return ws_.length >= replicas ? ws_ : undefined;
      },
      180_000,
      () => `the ${replicas} workers of ${POOL_NS}/${POOL} did not appear`,
    );
    out.push(`${poolWorkers.length} workers: ${poolWorkers.map((w) => w.worker).join(', ')}`);
    out.push(...(await platform.apply(templateFile, 180, true)));
    const tpl = await platform.template(opts.workspace);
    check(tpl?.status?.goldenSnapshotStatus?.goldenTag?.name, `template ${opts.workspace}/${TEMPLATE_NAME} has no golden tag after apply --wait`);
    out.push(`golden tag ${tpl.status.goldenSnapshotStatus.goldenTag.atespace}/${tpl.status.goldenSnapshotStatus.goldenTag.name}`);
    step(`applied examples/helpdesk/workerpool.yaml and actortemplate.yaml: ${out.join('; ')} (${secs(performance.now() - ts0)})`);
    step(`driver template_labels ${opts.workspace}/${TEMPLATE_NAME}: ${JSON.stringify(attachableLabels(opts.workspace))}`);
  }
  info(`setup done in ${secs(performance.now() - t0)}\n`);

  // ---- state shared by the beats
  const ws = opts.workspace;
  const existing = (await gw.listSandboxes()).sandboxes.filter((s) => s.workspace === ws && (s.name === 'alice' || s.name === 'bob'));
  if (existing.length > 0) {
    throw new Error(
      `workspace "${ws}" already has ${existing.map((s) => `${s.name} (${s.id})`).join(', ')}; delete them (substrate-driver sandboxes delete) or use --workspace`,
    );
  }
  const s = {
    alice: { id: randomUUID(), name: 'alice', workers: new Set(), created: false },
    bob: { id: randomUUID(), name: 'bob', workers: new Set(), created: false },
  };
  const host = (who) => `${ws}/${who.id}`;
  const T = opts.beatTimeoutMs;

  // Delete what this run created and still exists, so nothing outlives the run (and the driver stops fast).
  cleanups.push(async () => {
    for (const who of [s.alice, s.bob]) {
      if (!who.created || who.deleted) continue;
      try {
        const deleted = gw.rows.has(who.id) ? await gw.deleteSandbox(who.id) : await gw.driverDelete(who);
        info(`cleanup: DeleteSandbox ${who.name} → deleted=${deleted}`);
      } catch (e) {
        process.stderr.write(`${PROG}: cleanup: DeleteSandbox ${who.name} failed: ${errMsg(e)}\n`);
      }
    }
    if (procs.length === 0) {
      // A driver we did not start keeps running: wait until the actors are really gone.
      for (const who of [s.alice, s.bob]) {
        if (!who.created) continue;
        await waitUntil(async () => !(await platform.actor(ws, who.id)), 30_000, () => `actor ${who.name} still exists`).catch((e) =>
          process.stderr.write(`${PROG}: cleanup: ${errMsg(e)}\n`),
        );
      }
    }
  });

  /** GetSandbox through the stand-in (this generation's bindings; v0.1: a time that fails §4.1 fails the beat). */
  const getSandbox = async (who) => {
    try {
      const r = await gw.driverGet(who);
      check(r.problems.length === 0, `GetSandbox ${who.name}: the gateway refuses its times: ${r.problems.join('; ')}`);
      return r.sandbox;
    } catch (e) {
      if (e.code === grpc.status.NOT_FOUND) return undefined;
      throw e;
    }
  };
  /** The gateway's row of a sandbox (its public phase). */
  const rowOf = (who) => gw.rows.get(who.id);
  const workerOf = async (who) => (await platform.workers()).find((w) => w.actor === `${ws}/${who.id}`);
  const chat = (who, message) => viaRouter(routerUrl, host(who), 'POST', '/chat', { message });
  const okChat = (r, who) => {
    check(r.status === 200, `POST /chat to ${who.name} through the router answered ${r.status || 'no response'}: ${short(r.text, 200)}`);
    check(r.json && typeof r.json.reply === 'string', `POST /chat to ${who.name} answered without a reply: ${short(r.text, 200)}`);
    return r.json;
  };
  const knowsFirst = (j, q) => (j.responder === 'deterministic' ? j.reply.includes(q) : j.first_question === q);

  async function provision(who) {
    const sb = sandboxFor(who.id, who.name, ws, opts.gateway);
    await gw.createSandbox(sb);
    who.created = true;
    const row = rowOf(who);
    const named = opts.gateway === 'v0.1' ? `annotation ${TEMPLATE_ANNOTATION}` : 'driver_config.actor_template';
    note(
      `ValidateSandboxCreate ok; CreateSandbox ok (id ${who.id}, ${named} ${ws}/${TEMPLATE_NAME}` +
        (opts.gateway === 'v0.1' ? `, launch authentication auth_epoch ${row.launch?.authEpoch}, runtime identity ${row.runtimeIdentity})` : ')'),
    );
    await waitUntil(
      () => {
        const r = rowOf(who);
        if (r?.phase === 'ERROR') throw new BeatFailure(`${who.name} went to ERROR: ${r.conditions.map((c) => `${c.type}=${c.status} (${c.reason}) ${c.message}`).join('; ')}`);
        return r?.phase === 'READY';
      },
      T,
      () => `the gateway never showed ${who.name} READY (phase ${rowOf(who)?.phase})`,
    );
    const snap = await waitUntil(
      async () => {
        const cur = await getSandbox(who);
        return phaseOf(cur) === 'READY' ? cur : undefined;
      },
      10_000,
      () => `${who.name} is READY at the gateway but the driver does not report Ready=True`,
    );
    check(snap.id === who.id && snap.name === who.name, `GetSandbox returned id ${snap.id} name ${snap.name}, expected ${who.id} ${who.name}`);
    const w = await waitUntil(() => workerOf(who), 10_000, () => `no worker runs ${who.name}`);
    who.workers.add(w.worker);
    who.worker = w;
    const a = await platform.actor(ws, who.id);
    check(a, `the driver reports ${who.name} Ready but ateapi has no actor ${ws}/${who.id}`);
    const tref = a.actorTemplate ?? {};
    check(tref.atespace === ws && tref.name === TEMPLATE_NAME, `${who.name}'s actor uses template ${tref.atespace}/${tref.name}, not the pre-provisioned ${ws}/${TEMPLATE_NAME}`);
    check(stateOf(a) === ST.RUNNING, `${who.name}'s actor is ${stateName(a)}, expected RUNNING`);
    check(w.pool === `${POOL_NS}/${POOL}`, `${who.name} runs on ${w.worker} of pool ${w.pool}, not ${POOL_NS}/${POOL}`);
    note(`${who.name}: ${condSummary(snap)}; actor of template ${ws}/${TEMPLATE_NAME} running on worker ${w.worker}${w.pid ? ` (sandbox pid ${w.pid})` : ''}`);
    return w;
  }

  // ------------------------------------------------------------------------------------------------ beats
  const beats = [
    // 1
    async () => {
      const w = await provision(s.alice);
      return `Ready=True; running on ${w.worker} (${w.pool})`;
    },
    // 2
    async () => {
      const w = await provision(s.bob);
      check(w.pool === s.alice.worker.pool, `bob is in pool ${w.pool}, alice in ${s.alice.worker.pool}`);
      check(w.worker !== s.alice.worker.worker, `bob and alice share worker ${w.worker}`);
      return `Ready=True; running on ${w.worker}, same pool as alice (${w.pool})`;
    },
    // 3
    async () => {
      const list = (await gw.listSandboxes()).sandboxes;
      const mine = list.filter((x) => x.id === s.alice.id || x.id === s.bob.id);
      note(`ListSandboxes: ${list.length} sandbox(es): ${list.map((x) => `${x.name} [${phaseOf(x)}]`).join(', ')}`);
      check(mine.length === 2, `ListSandboxes lists ${mine.length} of alice and bob`);
      for (const who of [s.alice, s.bob]) {
        const x = mine.find((m) => m.id === who.id);
        check(x.name === who.name, `ListSandboxes names ${who.id} "${x.name}", expected "${who.name}"`);
        check(x.workspace === ws || x.workspace === '', `ListSandboxes puts ${who.name} in workspace "${x.workspace}"`);
        check(!['ERROR', 'UNKNOWN', 'DELETING'].includes(phaseOf(x)), `${who.name} derives to ${phaseOf(x)}: ${condSummary(x)}`);
        check(rowOf(who)?.phase === 'READY', `the gateway shows ${who.name} ${rowOf(who)?.phase}`);
      }
      return mine.map((x) => `${x.name} ${phaseOf(x)}`).join(', ');
    },
    // 4
    async () => {
      const r = await chat(s.alice, Q1);
      const j = okChat(r, s.alice);
      note(`alice: "${short(j.reply, 110)}"`);
      check(j.history_turns === 1, `history_turns is ${j.history_turns}, expected 1`);
      check(knowsFirst(j, Q1), `the reply does not mention the question: ${j.reply}`);
      s.alice.instance = j.instance_id;
      return `reply in ${secs(r.ms)}, history_turns 1, responder ${j.responder}`;
    },
    // 5
    async () => {
      const before = (await workerOf(s.alice)) ?? s.alice.worker;
      s.alice.suspendedFrom = before;
      const argv = [process.execPath, BIN, 'actors', 'suspend', s.alice.id, '-a', ws, ...platform.suspendArgs()];
      note(`operator: substrate-driver actors suspend ${s.alice.id} -a ${ws} ${platform.suspendArgs().join(' ')}`);
      const p = await $({ quiet: true, nothrow: true })`${argv}`;
      check(p.exitCode === 0, `actors suspend exited ${p.exitCode}: ${(p.stderr || p.stdout).trim()}`);
      const a = await platform.actor(ws, s.alice.id);
      check(stateOf(a) === ST.SUSPENDED, `after actors suspend, alice's actor is ${stateName(a)}, expected SUSPENDED`);
      check(!a.status?.workerAssignment, `alice's actor is SUSPENDED but still names worker ${a.status?.workerAssignment?.workerPod}`);
      check(a.status?.externalSnapshot?.snapshotUri, "alice's actor is SUSPENDED without an external snapshot");
      s.alice.snapshotUri = a.status.externalSnapshot.snapshotUri;
      await waitUntil(
        async () => {
          const w = (await platform.workers()).find((x) => x.worker === before.worker);
          return w && w.actor !== `${ws}/${s.alice.id}`;
        },
        10_000,
        () => `worker ${before.worker} still holds alice`,
      );
      note(`actor SUSPENDED; worker ${before.worker} released`);
      const snap = await waitUntil(
        async () => {
          const cur = await getSandbox(s.alice);
          const r = readyCond(cur);
          return r && r.status !== 'True' ? cur : undefined;
        },
        15_000,
        () => 'the driver still reports alice Ready=True (it did not notice the suspend)',
      );
      const phase = phaseOf(snap);
      const r = readyCond(snap);
      note(`driver: ${condSummary(snap)} — "${short(r.message, 120)}" → gateway phase ${phase}`);
      check(phase !== 'ERROR', `the driver reports alice as an error: ${condSummary(snap)}`);
      check(phase !== 'STOPPED', `the driver reports alice as stopped: ${condSummary(snap)}`);
      check(phase === 'PROVISIONING', `alice derives to ${phase}, expected PROVISIONING (resumable)`);
      check(/resum/i.test(`${r.reason} ${r.message}`), `Ready condition does not say alice resumes on demand: ${r.reason}: ${r.message}`);
      const row = await waitUntil(
        () => (rowOf(s.alice)?.phase === 'PROVISIONING' ? rowOf(s.alice) : undefined),
        15_000,
        () => `the gateway shows alice ${rowOf(s.alice)?.phase}, expected PROVISIONING (no supervisor session while suspended)`,
      );
      check(!row.history.includes('ERROR') && !row.history.includes('STOPPED'), `the gateway's phase history of alice: ${row.history.join(' → ')}`);
      note(`gateway (watch): alice ${row.phase}; history ${row.history.join(' → ')}`);
      return `SUSPENDED, ${before.worker} freed; driver: Ready=${r.status} (${r.reason}), phase ${phase}; gateway ${row.phase}`;
    },
    // 6
    async () => {
      const ws_ = await platform.workers();
      const used = [...s.alice.workers];
      for (const name of used) {
        const w = ws_.find((x) => x.worker === name);
        check(w, `worker ${name} is no longer listed`);
        check(w.actor !== `${ws}/${s.alice.id}` && (w.state === 'free' || (w.actor && w.actor !== `${ws}/${s.alice.id}`)), `worker ${name} is ${w.state} with ${w.actor || 'no actor'}`);
      }
      const holding = ws_.filter((x) => x.actor === `${ws}/${s.alice.id}`);
      check(holding.length === 0, `alice still holds ${holding.map((x) => x.worker).join(', ')}`);
      const old = s.alice.suspendedFrom;
      if (old?.pid) check(!pidAlive(old.pid) || isZombie(old.pid), `alice's old sandbox process ${old.pid} still runs`);
      const bob = ws_.find((x) => x.actor === `${ws}/${s.bob.id}`);
      check(bob, 'bob no longer runs on a worker');
      note(`workers: ${ws_.filter((x) => x.pool === `${POOL_NS}/${POOL}`).map((x) => `${x.worker}=${x.state}${x.actor ? `(${x.actor === `${ws}/${s.bob.id}` ? 'bob' : x.actor})` : ''}`).join(' ')}`);
      return `${used.join(', ')} free; alice holds no worker${old?.pid ? `, sandbox pid ${old.pid} gone` : ''}; bob still on ${bob.worker}`;
    },
    // 7
    async () => {
      const r = await chat(s.alice, Q2);
      const j = okChat(r, s.alice);
      note(`alice (resumed by the router in ${secs(r.ms)}): "${short(j.reply, 110)}"`);
      check(knowsFirst(j, Q1), `the reply does not know the first question: ${j.reply}`);
      check(j.history_turns === 2, `history_turns is ${j.history_turns}, expected 2`);
      if (s.alice.instance) check(j.instance_id === s.alice.instance, `alice's process is new (instance ${j.instance_id}, was ${s.alice.instance}): a cold boot, not a resume`);
      const w = await waitUntil(() => workerOf(s.alice), 10_000, () => 'alice runs on no worker after the resume');
      s.alice.workers.add(w.worker);
      s.alice.worker = w;
      const a = await platform.actor(ws, s.alice.id);
      check(stateOf(a) === ST.RUNNING, `alice's actor is ${stateName(a)}, expected RUNNING`);
      await waitUntil(() => rowOf(s.alice)?.phase === 'READY', 15_000, () => `the gateway shows alice ${rowOf(s.alice)?.phase} after the resume`);
      return `implicit resume + reply in ${secs(r.ms)} on ${w.worker}; knows the first question; history_turns 2; gateway READY`;
    },
    // 8
    async () => {
      const c = okChat(await chat(s.bob, QB1), s.bob);
      check(c.history_turns === 1, `bob's history_turns is ${c.history_turns}, expected 1`);
      s.bob.instance = c.instance_id;
      // Substrate v0.4: an actor with no EgressPolicy has no egress at all. Bob has none.
      const policy = await platform.client.getActorEgressPolicy({ atespace: ws, name: s.bob.id }).then(
        (p) => p,
        (e) => {
          if (e.code === grpc.status.NOT_FOUND) return null;
          throw e;
        },
      );
      check(policy === null, `bob's actor has an EgressPolicy (${(policy?.rules ?? []).length} rule(s)); the beat needs the v0.4 default of none`);
      note('GetActorEgressPolicy bob → NOT_FOUND: no egress policy, so v0.4 allows no egress');
      const r = await viaRouter(routerUrl, host(s.bob), 'POST', '/probe', { url: opts.probeUrl, timeout_ms: 5000 });
      check(r.status === 200 && r.json, `POST /probe to bob answered ${r.status}: ${short(r.text, 200)}`);
      note(`bob tried ${r.json.url}: blocked=${r.json.blocked} ${r.json.error_code ?? ''} after ${r.json.elapsed_ms} ms`);
      check(r.json.blocked === true, `bob reached ${opts.probeUrl} (HTTP ${r.json.http_status}): egress is not blocked`);
      return `no egress policy; GET ${opts.probeUrl} from bob blocked (${r.json.error_code}, ${r.json.elapsed_ms} ms)`;
    },
    // 9
    async () => {
      const mine = (list, who) => list.find((w) => w.actor === `${ws}/${who.id}`);
      const w0 = await platform.workers();
      const before = mine(w0, s.alice);
      const bobBefore = mine(w0, s.bob);
      check(before, 'alice runs on no worker before the kill');
      check(bobBefore, 'bob runs on no worker before the kill');
      note(platform.kind === 'local' ? `alice on ${before.worker}, sandbox pid ${before.pid}; bob on ${bobBefore.worker}, pid ${bobBefore.pid}` : `alice on ${before.worker}; bob on ${bobBefore.worker}`);
      const eventsBefore = rowOf(s.alice)?.platformEvents.length ?? 0;
      note(await platform.kill(before));
      const tk = performance.now();
      // v0.4: the Substrate notices the dead sandbox and marks alice CRASHED; the driver, which wants her running,
      // recovers her: RevertActor (SUSPENDED at her last external snapshot, beat 5's) → ResumeActor elsewhere.
      const seenStates = [];
      let crashedAt = 0;
      let crashMessage = '';
      const back = await waitUntil(
        async () => {
          const a = await platform.actor(ws, s.alice.id);
          const name = stateName(a);
          if (seenStates.at(-1) !== name) seenStates.push(name);
          if (stateOf(a) === ST.CRASHED && !crashedAt) {
            crashedAt = performance.now();
            crashMessage = a.status?.crash?.message ?? '';
          }
          const w = a?.status?.workerAssignment?.workerPod;
          return stateOf(a) === ST.RUNNING && w && w !== before.worker ? a : undefined;
        },
        T,
        () => `alice is not RUNNING on another worker after the kill (states seen: ${seenStates.join(' → ')})`,
        50,
      );
      const recoveredMs = performance.now() - tk;
      check(crashedAt > 0, `alice was never seen CRASHED after her sandbox was killed (states seen: ${seenStates.join(' → ')})`);
      check(crashMessage, 'alice was CRASHED without a crash message');
      check(!back.status?.crash, 'alice runs again but still carries her crash record');
      check(back.status?.externalSnapshot?.snapshotUri === s.alice.snapshotUri, `alice's external snapshot changed from beat 5's (${s.alice.snapshotUri}) to ${back.status?.externalSnapshot?.snapshotUri}`);
      note(`alice CRASHED ${secs(crashedAt - tk)} after the kill ("${short(crashMessage, 80)}"); RUNNING on ${back.status.workerAssignment.workerPod} ${secs(recoveredMs)} after the kill (states: ${seenStates.join(' → ')})`);
      const recovered = await waitUntil(
        () => (rowOf(s.alice)?.platformEvents ?? []).slice(eventsBefore).find((e) => e.reason === 'Recovered'),
        15_000,
        () => 'the driver sent no Recovered platform event for alice',
      ).catch(() => undefined);
      if (recovered) note(`driver platform event ${recovered.reason}: "${short(recovered.message, 110)}"`);
      let attempts = 0;
      const j = await waitUntil(
        async () => {
          attempts++;
          const r = await viaRouter(routerUrl, host(s.alice), 'POST', '/chat', { message: Q3 }, 15_000);
          return r.status === 200 && r.json?.reply ? r.json : undefined;
        },
        T,
        () => `alice did not answer through the router after the kill (${attempts} attempts)`,
        500,
      );
      // Her memory is beat 5's snapshot (one turn: Q1), plus this question: beat 7's turn is gone, as v0.4 promises.
      check(j.history_turns === 2, `after the recovery alice has history_turns ${j.history_turns}, expected 2 (the snapshot of beat 5 held 1, plus this question)`);
      if (s.alice.instance) check(j.instance_id === s.alice.instance, `alice's process is new (instance ${j.instance_id}): a cold boot, not a restore`);
      note(`alice answered ${secs(performance.now() - tk)} after the kill (${attempts} request(s) through the router): "${short(j.reply, 100)}"`);
      check(knowsFirst(j, Q1), `after the kill alice does not know the first question: ${j.reply}`);
      if (before.pid) check(!pidAlive(before.pid) || isZombie(before.pid), `the killed sandbox process ${before.pid} still runs`);
      const w1 = await waitUntil(
        async () => {
          const l = await platform.workers();
          return mine(l, s.alice) ? l : undefined;
        },
        10_000,
        () => 'alice runs on no worker after the kill',
      );
      const after = mine(w1, s.alice);
      const bobAfter = mine(w1, s.bob);
      s.alice.workers.add(after.worker);
      check(after.worker !== before.worker, `alice came back on the same worker ${after.worker}, expected another one`);
      if (before.pid) check(after.pid !== before.pid, `alice's sandbox process is still ${after.pid}`);
      check(bobAfter && bobAfter.worker === bobBefore.worker, `bob moved from ${bobBefore.worker} to ${bobAfter?.worker ?? 'nowhere'}`);
      if (bobBefore.pid) check(bobAfter.pid === bobBefore.pid, `bob's sandbox process changed from ${bobBefore.pid} to ${bobAfter.pid}`);
      const b = okChat(await chat(s.bob, QB2), s.bob);
      check(b.history_turns === 2 && knowsFirst(b, QB1), `bob lost his memory: history_turns ${b.history_turns}, reply ${b.reply}`);
      if (s.bob.instance) check(b.instance_id === s.bob.instance, 'bob is a new process');
      note(`bob on ${bobAfter.worker}${bobAfter.pid ? `, pid ${bobAfter.pid}` : ''}: "${short(b.reply, 90)}"`);
      return `alice CRASHED after ${secs(crashedAt - tk)}, recovered by the driver (revert+resume) on ${after.worker} (was ${before.worker}) after ${secs(recoveredMs)} from her last external snapshot, history_turns ${j.history_turns}; bob still on ${bobAfter.worker}${bobAfter.pid ? `, pid ${bobAfter.pid}` : ''}, history_turns 2`;
    },
    // 10
    async () => {
      const aliceRow = rowOf(s.alice);
      const deleted = await gw.deleteSandbox(s.alice.id);
      check(deleted === true, `DeleteSandbox alice answered deleted=${deleted}`);
      s.alice.deleted = true;
      note('DeleteSandbox alice → deleted=true; the gateway row is DELETING');
      await waitUntil(() => !gw.rows.has(s.alice.id), T, () => 'no Watch deleted event for alice');
      const why = gw.removals.find(([id]) => id === s.alice.id)?.[1];
      check(why === 'watch deleted event', `alice's row left the gateway store by "${why}", expected the watch deleted event`);
      note('Watch delivered the deleted event; the row is gone');
      if (opts.gateway === 'v0.1') {
        const bg = await waitUntil(() => gw.backgroundDeletes.find((x) => x.id === s.alice.id && x.outcome), 15_000, () => 'no background DeleteSandbox after the deleted event');
        check(bg.outcome === 'deleted=false' || bg.outcome.startsWith('skipped'), `the background DeleteSandbox of alice answered ${bg.outcome}`);
        note(`background DeleteSandbox after the deleted event: ${bg.outcome}`);
      }
      const gone = await getSandbox(s.alice);
      check(!gone, `GetSandbox alice still answers: ${condSummary(gone)}`);
      const list = (await gw.listSandboxes()).sandboxes;
      const inWs = tempDir ? list : list.filter((x) => x.workspace === ws);
      check(inWs.length === 1 && inWs[0].id === s.bob.id && inWs[0].name === 'bob', `ListSandboxes lists ${inWs.map((x) => x.name).join(', ') || 'nothing'}, expected bob alone`);
      check(!aliceRow.history.includes('ERROR') && !rowOf(s.bob).history.includes('ERROR'), `a phase history contains ERROR: alice ${aliceRow.history.join(' → ')}; bob ${rowOf(s.bob).history.join(' → ')}`);
      if (opts.gateway === 'v0.1') {
        check(gw.droppedEvents.length === 0 && gw.failedGets.length === 0, `the gateway refused driver times: ${[...gw.droppedEvents, ...gw.failedGets].map((d) => d.why).join('; ')}`);
      }
      check(!(await platform.actor(ws, s.alice.id)), "alice's actor still exists in ateapi");
      const t = await platform.template(ws);
      check(t, `the pre-provisioned template ${ws}/${TEMPLATE_NAME} is gone`);
      check(t.status?.goldenSnapshotStatus?.goldenTag?.name, `template ${ws}/${TEMPLATE_NAME} lost its golden tag`);
      return `deleted=true; ListSandboxes: bob alone; alice's history ${aliceRow.history.join(' → ')}; template ${ws}/${TEMPLATE_NAME} still there with its golden tag`;
    },
  ];

  for (const [i, fn] of beats.entries()) {
    if (interrupted) return;
    const n = i + 1;
    info(chalk.bold(`beat ${n}/10  ${BEATS[i]}`));
    const b0 = performance.now();
    beatStart = b0;
    let result = 'PASS';
    let detail;
    try {
      detail = await Promise.race([
        fn(),
        sleep(T + 15_000).then(() => {
          throw new BeatFailure(`beat ${n} took longer than ${(T + 15_000) / 1000} s`);
        }),
      ]);
    } catch (e) {
      result = 'FAIL';
      detail = errMsg(e);
    }
    const ms = performance.now() - b0;
    beatStart = 0;
    if (interrupted) return;
    results.push({ n, title: BEATS[i], result, ms: Math.round(ms), detail });
    const tag = result === 'PASS' ? chalk.green('PASS') : chalk.red('FAIL');
    info(`${tag} beat ${n}/10: ${BEATS[i]} (${secs(ms)}): ${detail}\n`);
    // Later beats build on alice and bob existing: without them nothing further can be checked.
    if (result === 'FAIL' && n <= 2) break;
  }
}

await runMain(PROG, main, 'run node scripts/helpdesk.mjs --help for usage');
// gRPC channels or a stray timer must not keep a finished run alive.
setTimeout(() => process.exit(), 3000).unref();
