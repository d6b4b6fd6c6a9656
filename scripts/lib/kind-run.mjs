// Executes plans from scripts/lib/kind-plan.mjs, and the checks that must pass before anything runs. Every child
// gets an environment built from the explicit list CHILD_ENV_NAMES (plus what a step sets), never ours wholesale.
import { spawn, spawnSync } from 'node:child_process';
import { childEnv, spawnOptions } from '../../src/common/child-env.mjs';
import fs from 'node:fs';
import net from 'node:net';
import { which } from 'zx';
import { CHILD_ENV_NAMES, formatStep } from './kind-plan.mjs';

/**
 * The environment of a child: CHILD_ENV_NAMES from `from` (default process.env), plus `set`.
 * @param {{ from?: Record<string, string | undefined>, set?: Record<string, string> }} [o]
 */
export function kindChildEnv(o = {}) {
  return childEnv({ from: o.from, pass: CHILD_ENV_NAMES, set: o.set });
}

/**
 * Tools the kind scripts need, with the remedy printed when one is missing.
 * @type {Readonly<Record<string, string>>}
 */
export const TOOL_REMEDIES = Object.freeze({
  docker:
    'install Docker Engine (https://docs.docker.com/engine/install/) and start it; kind runs the cluster nodes and the registry as containers',
  kind: 'install kind: go install sigs.k8s.io/kind@latest, or a release binary from https://kind.sigs.k8s.io/docs/user/quick-start/#installation',
  kubectl: 'install kubectl: https://kubernetes.io/docs/tasks/tools/#kubectl',
  go: "install Go: https://go.dev/doc/install (upstream's scripts run kind, ko and ate-setup through the Go toolchain)",
  git: 'install git (the checkout check and upstream\'s scripts use it)',
});

/** Tools kind-up needs, in the order they are checked. */
export const KIND_UP_TOOLS = Object.freeze(['docker', 'kind', 'kubectl', 'go', 'git']);
/** Tools kind-down needs. */
export const KIND_DOWN_TOOLS = Object.freeze(['docker', 'kind']);

/**
 * @typedef {{ tool: string, problem: string, remedy: string }} Problem
 */

/**
 * Check that each tool is on PATH, and for docker that the engine answers `docker info`. Runs nothing else.
 * @param {readonly string[]} tools
 * @param {{ env?: NodeJS.ProcessEnv, dockerTimeoutMs?: number }} [opts]
 * @returns {Problem[]}
 */
export function checkPrerequisites(tools, opts = {}) {
  const env = kindChildEnv({ from: opts.env });
  /** @type {Problem[]} */
  const problems = [];
  for (const tool of tools) {
    const found = which.sync(tool, { nothrow: true, path: env.PATH ?? '' });
    if (!found) {
      problems.push({ tool, problem: `${tool} is not installed (not found on PATH)`, remedy: TOOL_REMEDIES[tool] ?? `install ${tool}` });
      continue;
    }
    if (tool === 'docker') {
      const r = spawnSync(found, ['info', '--format', '{{.ServerVersion}}'], spawnOptions({
        env,
        encoding: 'utf8',
        timeout: opts.dockerTimeoutMs ?? 20_000,
        stdio: ['ignore', 'pipe', 'pipe'],
      }));
      if (r.error || r.status !== 0) {
        const detail = r.error
          ? /** @type {NodeJS.ErrnoException} */ (r.error).code === 'ETIMEDOUT'
            ? 'timed out'
            : r.error.message
          : (r.stderr || r.stdout || '').trim().split('\n').find((l) => l.trim() !== '') ?? `exit status ${r.status}`;
        problems.push({
          tool,
          problem: `the Docker engine is not reachable ('docker info' failed: ${detail})`,
          remedy: 'start the engine (e.g. sudo systemctl start docker), or set DOCKER_HOST to a running engine; check that your user may use its socket',
        });
      }
    }
  }
  return problems;
}

/** Format problems for stderr. @param {string} prog @param {Problem[]} problems */
export function formatProblems(prog, problems) {
  return problems.map((p) => `${prog}: ${p.problem}\n  remedy: ${p.remedy}\n`).join('');
}

/**
 * Names of the existing kind clusters (`kind get clusters`, read-only).
 * @param {{ env?: NodeJS.ProcessEnv }} [opts]
 * @returns {string[]}
 */
export function existingKindClusters(opts = {}) {
  const r = spawnSync('kind', ['get', 'clusters'], spawnOptions({ env: kindChildEnv({ from: opts.env }), encoding: 'utf8', timeout: 30_000 }));
  if (r.error || r.status !== 0) {
    throw new Error(`'kind get clusters' failed: ${r.error ? r.error.message : (r.stderr || '').trim() || `exit status ${r.status}`}`);
  }
  return r.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('No kind clusters'));
}

/**
 * Whether something already listens on host:port (a connect succeeds).
 * @param {string} host @param {number} port
 * @returns {Promise<boolean>}
 */
export function portInUse(host, port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (/** @type {boolean} */ v) => {
      sock.destroy();
      resolve(v);
    };
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
    sock.setTimeout(2000, () => done(false));
  });
}

/** Failure of one plan step. */
export class StepError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'StepError';
  }
}

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Last lines of a log file, for error messages (port-forward logs hold no secrets). @param {string} p */
function tail(p, lines = 5) {
  try {
    return fs.readFileSync(p, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** Whether pid is a live (non-zombie) process. @param {number} pid */
export function processAlive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

/** The command line of pid, or null when it is gone. @param {number} pid */
function cmdlineOf(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    const r = spawnSync('ps', ['-p', String(pid), '-o', 'args='], spawnOptions({ encoding: 'utf8' }));
    return r.status === 0 ? r.stdout.trim() : null;
  }
}

/**
 * Run one child process to completion, in its own process group so that everything it starts (bash scripts run
 * go, kind, docker, ko) can be stopped together. stdout goes to `stdoutFd` (default: our stderr, so the scripts'
 * own stdout stays clean), stderr to our stderr. After `timeoutSecs` the group gets SIGTERM, then SIGKILL 10 s
 * later; SIGINT/SIGTERM sent to us meanwhile are passed on to the group (Ctrl-C stops the step, and the plan
 * stops there with a StepError).
 * @param {string[]} argv @param {{ cwd?: string, env?: Record<string, string>, stdoutFd?: number, timeoutSecs?: number }} o
 * @returns {Promise<{ code: number, timedOut: boolean, interrupted: string | null }>}
 */
function runChild(argv, o) {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), spawnOptions({
      cwd: o.cwd,
      env: kindChildEnv({ set: o.env }),
      stdio: ['ignore', o.stdoutFd ?? 2, 2],
      detached: true,
    }));
    let timedOut = false;
    /** @type {string | null} */
    let interrupted = null;
    /** @type {NodeJS.Timeout | undefined} */
    let killTimer;
    const killGroup = (/** @type {NodeJS.Signals} */ sig) => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        /* the group is gone */
      }
    };
    const onSignal = (/** @type {NodeJS.Signals} */ sig) => {
      interrupted = sig;
      killGroup(sig);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const timer = o.timeoutSecs
      ? setTimeout(() => {
          timedOut = true;
          killGroup('SIGTERM');
          killTimer = setTimeout(() => killGroup('SIGKILL'), 10_000);
        }, o.timeoutSecs * 1000)
      : undefined;
    const cleanup = () => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    };
    child.once('error', (err) => {
      cleanup();
      const code = /** @type {NodeJS.ErrnoException} */ (err).code;
      reject(new StepError(code === 'ENOENT' ? `command not found: ${argv[0]}` : `cannot start ${argv[0]}: ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      cleanup();
      // What the leader left behind after a timeout or an interrupt does not outlive the step.
      if (timedOut || interrupted) killGroup('SIGKILL');
      resolve({ code: code ?? (signal ? 128 : 1), timedOut, interrupted });
    });
  });
}

/** Why a child failed, for the StepError. @param {string} desc @param {string} cmd @param {{ code: number, timedOut: boolean, interrupted: string | null }} r @param {number | undefined} limit */
function failure(desc, cmd, r, limit) {
  if (r.timedOut) return `${desc}: ${cmd} did not finish within its time limit of ${limit}s and was stopped`;
  if (r.interrupted) return `${desc}: ${cmd} was interrupted (${r.interrupted})`;
  return `${desc}: ${cmd} exited with status ${r.code}`;
}

/**
 * Run a short read-only command and return its trimmed stdout, or throw a StepError.
 * @param {string[]} argv @param {number} timeoutSecs
 */
function capture(argv, timeoutSecs) {
  const r = spawnSync(argv[0], argv.slice(1), spawnOptions({
    env: kindChildEnv(),
    encoding: 'utf8',
    timeout: timeoutSecs * 1000,
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  if (r.error) throw new StepError(`${argv[0]} failed: ${r.error.message}`);
  if (r.status !== 0) throw new StepError(`${argv.slice(0, 2).join(' ')} exited with status ${r.status}: ${(r.stderr || '').trim()}`);
  return r.stdout.trim();
}

/** Write `content` to `file` with `mode` through a temporary file and rename. @param {string} file @param {string} content @param {number} mode */
function writeAtomic(file, content, mode) {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, content, { mode });
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, file);
}

/**
 * Execute one step.
 * @param {import('./kind-plan.mjs').Step} s
 * @param {{ warn: (msg: string) => void }} io
 */
export async function runStep(s, io) {
  switch (s.type) {
    case 'mkdir': {
      if (!fs.existsSync(s.path)) {
        fs.mkdirSync(s.path, { recursive: true, mode: s.mode });
        fs.chmodSync(s.path, s.mode);
      }
      return;
    }
    case 'run': {
      if (s.onlyIf) {
        let out;
        try {
          out = capture(s.onlyIf, 30);
        } catch (err) {
          if (!s.allowFail) throw err;
          io.warn(`${s.desc}: skipped, the check failed (${err instanceof Error ? err.message : String(err)})`);
          return;
        }
        if (out === '') {
          io.warn(`${s.desc}: skipped, nothing matches ${s.onlyIf.join(' ')}`);
          return;
        }
      }
      if (s.stdoutTo) {
        const target = s.stdoutTo;
        const tmp = `${target.path}.tmp-${process.pid}`;
        const fd = fs.openSync(tmp, 'w', target.mode);
        let r;
        try {
          fs.fchmodSync(fd, target.mode);
          r = await runChild(s.argv, { cwd: s.cwd, env: s.env, stdoutFd: fd, timeoutSecs: s.timeoutSecs });
        } finally {
          fs.closeSync(fd);
        }
        if (r.code !== 0 || r.timedOut || r.interrupted) {
          fs.rmSync(tmp, { force: true });
          throw new StepError(failure(s.desc, s.argv[0], r, s.timeoutSecs));
        }
        if (target.nonEmpty && fs.statSync(tmp).size === 0) {
          fs.rmSync(tmp, { force: true });
          throw new StepError(`${s.desc}: ${s.argv[0]} printed nothing`);
        }
        fs.renameSync(tmp, target.path);
        return;
      }
      const r = await runChild(s.argv, { cwd: s.cwd, env: s.env, timeoutSecs: s.timeoutSecs });
      if (r.code !== 0 || r.timedOut || r.interrupted) {
        if (s.allowFail && !r.interrupted) io.warn(`${failure(s.desc, s.argv[0], r, s.timeoutSecs)} (ignored)`);
        else throw new StepError(failure(s.desc, s.argv[0], r, s.timeoutSecs));
      }
      return;
    }
    case 'background': {
      const fd = fs.openSync(s.logPath, 'w', 0o644);
      try {
        const child = spawn(s.argv[0], s.argv.slice(1), spawnOptions({ detached: true, stdio: ['ignore', fd, fd], env: kindChildEnv() }));
        await new Promise((resolve, reject) => {
          child.once('spawn', resolve);
          child.once('error', (err) => {
            const code = /** @type {NodeJS.ErrnoException} */ (err).code;
            reject(new StepError(code === 'ENOENT' ? `command not found: ${s.argv[0]}` : `cannot start ${s.argv[0]}: ${err.message}`));
          });
        });
        child.unref();
        writeAtomic(s.pidPath, `${child.pid}\n`, 0o644);
      } finally {
        fs.closeSync(fd);
      }
      return;
    }
    case 'wait-tcp': {
      const deadline = Date.now() + s.timeoutSecs * 1000;
      while (Date.now() < deadline) {
        if (await portInUse(s.host, s.port)) return;
        await sleep(250);
      }
      const log = s.logPath ? tail(s.logPath) : '';
      throw new StepError(`${s.desc}: nothing listens on ${s.host}:${s.port} after ${s.timeoutSecs}s${log ? `; last log lines of ${s.logPath}:\n${log}` : ''}`);
    }
    case 'write':
      writeAtomic(s.path, s.content, s.mode);
      return;
    case 'kill-pidfile': {
      let text;
      try {
        text = fs.readFileSync(s.pidPath, 'utf8');
      } catch {
        io.warn(`${s.desc}: no pid file ${s.pidPath}, nothing to stop`);
        return;
      }
      const pid = Number(text.trim());
      if (!Number.isSafeInteger(pid) || pid <= 1) {
        io.warn(`${s.desc}: ${s.pidPath} does not hold a pid; removing it`);
        fs.rmSync(s.pidPath, { force: true });
        return;
      }
      const cmdline = processAlive(pid) ? cmdlineOf(pid) : null;
      if (cmdline === null) {
        io.warn(`${s.desc}: process ${pid} is already gone`);
      } else if (!cmdline.includes(s.match)) {
        io.warn(`${s.desc}: process ${pid} is not a ${s.match} any more (stale pid file); leaving it alone`);
      } else {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          /* exited meanwhile */
        }
        const deadline = Date.now() + 5000;
        while (processAlive(pid) && Date.now() < deadline) await sleep(100);
        if (processAlive(pid)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* exited meanwhile */
          }
        }
      }
      fs.rmSync(s.pidPath, { force: true });
      return;
    }
    case 'remove':
      for (const p of s.paths) fs.rmSync(p, { force: true });
      return;
    default:
      throw new StepError(`unknown step type ${JSON.stringify(/** @type {any} */ (s).type)}`);
  }
}

/**
 * Run a plan in order, reporting progress on stderr: '[i/N] what' and the step's '+ ' line before it runs, and how
 * long it took after. Stops at the first failing step and throws a StepError naming it (`index` 1-based).
 * @param {import('./kind-plan.mjs').Step[]} steps
 * @param {{ prog: string }} o
 */
export async function executePlan(steps, o) {
  const io = { warn: (/** @type {string} */ m) => process.stderr.write(`${o.prog}: warning: ${m}\n`) };
  for (const [i, s] of steps.entries()) {
    process.stderr.write(`${o.prog}: [${i + 1}/${steps.length}] ${s.desc}\n${formatStep(s)}\n`);
    const started = Date.now();
    try {
      await runStep(s, io);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      throw new StepError(`step ${i + 1}/${steps.length} failed: ${msg}`);
    }
    const secs = Math.round((Date.now() - started) / 1000);
    if (secs >= 5) process.stderr.write(`${o.prog}: [${i + 1}/${steps.length}] done in ${secs}s\n`);
  }
}
