// Small process helpers for the gVisor runtime: run a command with a timeout and capture its output,
// and PID liveness that survives PID reuse and zombies.
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { childEnv, spawnOptions } from '../../common/child-env.mjs';

export { childEnv };

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command (no shell) and resolves with its exit code and output; rejects only if it cannot start.
 * The child's environment is childEnv() unless `env` (itself built with childEnv) is given.
 */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; env?: Record<string, string>; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      spawnOptions({ timeout: opts.timeoutMs ?? 60_000, killSignal: 'SIGKILL' as const, maxBuffer: 16 * 1024 * 1024, env: opts.env ?? childEnv() }),
      (err, stdout, stderr) => {
        if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
          reject(new Error(`cannot run ${cmd}: not found`));
          return;
        }
        let code = 0;
        if (err) {
          const e = err as { code?: unknown; killed?: boolean; signal?: string };
          code = typeof e.code === 'number' ? e.code : 1;
          if (e.killed || e.signal) stderr = `${stderr}\n(${cmd} killed by ${e.signal ?? 'timeout'} after ${opts.timeoutMs ?? 60_000} ms)`;
        }
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (opts.input !== undefined) {
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(opts.input);
    }
  });
}

/** Like run() but throws with the command's stderr when it exits non-zero. */
export async function runOk(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

/**
 * Spawns a command whose stdout and stderr go to an already-open file descriptor (the workload log) and
 * waits for it to exit. Used for `runsc run -detach` / `restore -detach`: the sandbox inherits the fd.
 */
export function spawnToFd(cmd: string, args: string[], fd: number, opts: { timeoutMs: number; env?: Record<string, string> }): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, spawnOptions({ stdio: ['ignore', fd, fd] as ['ignore', number, number], env: opts.env ?? childEnv() }));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? (signal ? 128 + 9 : 1));
    });
  });
}

/** Field 22 (starttime) of /proc/<pid>/stat and its state letter, or undefined if the process is gone. */
export function procStat(pid: number): { state: string; startTime: string } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0], startTime: rest[19] };
  } catch {
    return undefined;
  }
}

/** kill -0 semantics, but a zombie or a different process that re-used the PID counts as dead. */
export function pidAlive(pid: number, startTime?: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const st = procStat(pid);
  if (!st || st.state === 'Z' || st.state === 'X') return false;
  if (startTime !== undefined && st.startTime !== startTime) return false;
  return true;
}

export function procCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
