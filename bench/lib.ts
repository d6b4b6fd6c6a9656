// Shared pieces of the benchmark suites: the suite contract, statistics and table formatting, the machine
// description, a cleanup registry run on exit and on signals, and /proc readers (RSS/PSS, CPU ticks, process
// trees). Nothing here starts sandboxes; the suites do (bench/local.ts, ...).
import { execFileSync } from 'node:child_process';
import { spawnOptions } from '../src/common/child-env.mjs';
import fs from 'node:fs';
import os from 'node:os';

// ---- suite contract ----------------------------------------------------------------------------------------

export interface Table {
  title: string;
  columns: string[];
  rows: Array<Array<string | number>>;
  /** Lines printed under the table (definitions, caveats). */
  notes?: string[];
  /** Raw samples (ms, bytes, ...) by figure name, for --json. */
  samples?: Record<string, number[]>;
  /** Checks that did not hold (a lost counter, a leftover process); any makes `npm run bench` exit 1. */
  failures?: string[];
}

export interface BenchOptions {
  /** Runs per figure (median, min and max are reported). */
  runs: number;
  quick: boolean;
  /** Suite-specific flags (declared by a suite's `options` export), by name without the leading dashes. */
  flags: Record<string, string | true>;
  /** Facts about the machine a suite learned (runsc version, platform); printed in the machine table. */
  machine: Record<string, string>;
  /** Progress on stderr. */
  log(msg: string): void;
}

export interface SuiteOption {
  /** Flag name without dashes, e.g. "actors". */
  name: string;
  /** Placeholder of its value ("K"), or undefined for a boolean flag. */
  arg?: string;
  help: string;
}

/** What a bench/*.ts module exports to be a suite. */
export interface SuiteModule {
  run(opts: BenchOptions): Promise<Table[]>;
  description?: string;
  options?: SuiteOption[];
}

/** A positive integer flag of a suite, or the default; throws a clear error on bad input. */
export function intFlag(opts: BenchOptions, name: string, dflt: number, min = 1): number {
  const v = opts.flags[name];
  if (v === undefined) return dflt;
  const n = Number(v);
  if (v === true || !Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer ≥ ${min}, got ${v === true ? '(nothing)' : `"${v}"`}`);
  return n;
}

export class UsageError extends Error {}

// ---- statistics --------------------------------------------------------------------------------------------

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export const min = (xs: number[]) => (xs.length ? Math.min(...xs) : NaN);
export const max = (xs: number[]) => (xs.length ? Math.max(...xs) : NaN);

function round(x: number, digits: number): string {
  if (!Number.isFinite(x)) return '–';
  return digits === 0 ? String(Math.round(x)) : x.toFixed(digits);
}

/** "412 (380–470)": median (min–max), `digits` decimals, optional scale (e.g. 1/1000 for ms → s). */
export function fmt(xs: number[], digits = 0, scale = 1): string {
  if (xs.length === 0) return '–';
  const v = xs.map((x) => x * scale);
  if (v.length === 1) return round(v[0]!, digits);
  return `${round(median(v), digits)} (${round(min(v), digits)}–${round(max(v), digits)})`;
}

/** Ratio of two medians, "1.07×". */
export function ratio(ours: number[], raw: number[]): string {
  const r = median(ours) / median(raw);
  return Number.isFinite(r) ? `${r.toFixed(2)}×` : '–';
}

export const MiB = 1024 * 1024;

// ---- tables ------------------------------------------------------------------------------------------------

function cell(v: string | number): string {
  return String(v).replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** A GitHub-flavoured Markdown table (the README carries these verbatim), with its title and notes. */
export function formatTable(t: Table): string {
  const out = [`### ${t.title}`, ''];
  out.push(`| ${t.columns.map(cell).join(' | ')} |`);
  out.push(`|${t.columns.map(() => '---').join('|')}|`);
  for (const r of t.rows) out.push(`| ${r.map(cell).join(' | ')} |`);
  if (t.notes?.length) {
    out.push('');
    for (const n of t.notes) out.push(`* ${n}`);
  }
  if (t.failures?.length) {
    out.push('');
    for (const f of t.failures) out.push(`* **FAILED:** ${f}`);
  }
  return out.join('\n') + '\n';
}

// ---- the machine -------------------------------------------------------------------------------------------

export function machineFacts(): Record<string, string> {
  let cpu = os.cpus()[0]?.model?.trim() ?? '';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = m[1]!.trim();
  } catch {
    /* keep os.cpus() */
  }
  let distro = '';
  try {
    distro = /^PRETTY_NAME="?([^"\n]+)"?$/m.exec(fs.readFileSync('/etc/os-release', 'utf8'))?.[1] ?? '';
  } catch {
    /* none */
  }
  return {
    CPU: cpu || 'unknown',
    cores: String(os.cpus().length),
    memory: `${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}${distro ? ` (${distro})` : ''}`,
    node: process.version,
  };
}

export function loadAverage(): string {
  return os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
}

// ---- interruption --------------------------------------------------------------------------------------------

let interrupted = false;
/** Set by run.ts on SIGINT/SIGTERM; suites stop starting new work when it is true. */
export function interrupt(): void {
  interrupted = true;
}
export function isInterrupted(): boolean {
  return interrupted;
}

// ---- cleanup registry --------------------------------------------------------------------------------------

const cleanups = new Map<number, { what: string; fn: () => Promise<void> }>();
let nextCleanup = 1;

/** Registers a cleanup step (run by runCleanups on a signal or at exit); returns its remover. */
export function onCleanup(what: string, fn: () => Promise<void>): () => void {
  const id = nextCleanup++;
  cleanups.set(id, { what, fn });
  return () => cleanups.delete(id);
}

/** Runs every registered cleanup, newest first; failures are reported, not thrown. */
export async function runCleanups(log: (m: string) => void): Promise<void> {
  for (const id of [...cleanups.keys()].reverse()) {
    const c = cleanups.get(id)!;
    cleanups.delete(id);
    try {
      await c.fn();
    } catch (e) {
      log(`cleanup "${c.what}" failed: ${(e as Error).message}`);
    }
  }
}

// ---- /proc -------------------------------------------------------------------------------------------------

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], spawnOptions({ encoding: 'utf8' as const })).trim()) || 100;
  } catch {
    return 100;
  }
})();

function pids(): number[] {
  return fs
    .readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number);
}

function statFields(pid: number): string[] | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/**
 * The live processes of one gVisor sandbox: every process whose command line names the sandbox (runsc-sandbox,
 * runsc-gofer: their --bundle ends in the sandbox id), the given root pids, and all their descendants (the
 * ptrace stub processes that hold the workload's address space). Zombies are not counted.
 */
export function sandboxProcesses(needle: string, rootPids: number[] = []): number[] {
  const all = pids();
  const parent = new Map<number, number>();
  const alive = new Set<number>();
  for (const p of all) {
    const f = statFields(p);
    if (!f || f[0] === 'Z' || f[0] === 'X') continue;
    alive.add(p);
    parent.set(p, Number(f[1]));
  }
  const set = new Set<number>();
  for (const p of alive) if (p !== process.pid && (rootPids.includes(p) || (needle && cmdline(p).includes(needle)))) set.add(p);
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of alive) {
      if (!set.has(p) && set.has(parent.get(p) ?? -1)) {
        set.add(p);
        grew = true;
      }
    }
  }
  return [...set].sort((a, b) => a - b);
}

/** Sum of Rss and Pss (bytes) from /proc/<pid>/smaps_rollup over the processes. */
export function memoryOf(pidList: number[]): { rss: number; pss: number } {
  let rss = 0;
  let pss = 0;
  for (const p of pidList) {
    try {
      const t = fs.readFileSync(`/proc/${p}/smaps_rollup`, 'utf8');
      rss += Number(/^Rss:\s+(\d+) kB/m.exec(t)?.[1] ?? 0) * 1024;
      pss += Number(/^Pss:\s+(\d+) kB/m.exec(t)?.[1] ?? 0) * 1024;
    } catch {
      /* exited */
    }
  }
  return { rss, pss };
}

/** utime+stime (clock ticks, all threads) summed over the processes. */
export function cpuTicksOf(pidList: number[]): number {
  let t = 0;
  for (const p of pidList) {
    const f = statFields(p);
    if (f) t += Number(f[11]) + Number(f[12]);
  }
  return t;
}

/** Idle CPU of a set of processes over a window, in % of one core. */
export async function idleCpuPercent(pidList: () => number[], windowMs: number): Promise<number> {
  const a = pidList();
  const t0 = cpuTicksOf(a);
  const w0 = performance.now();
  await sleep(windowMs);
  const t1 = cpuTicksOf(a);
  const secs = (performance.now() - w0) / 1000;
  return ((t1 - t0) / CLK_TCK / secs) * 100;
}

/** Apparent bytes and allocated bytes (st_blocks) of every file under a directory. */
export function diskUsage(dir: string): { bytes: number; allocated: number; files: number } {
  let bytes = 0;
  let allocated = 0;
  let files = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const st = fs.statSync(p);
        bytes += st.size;
        allocated += st.blocks * 512;
        files++;
      }
    }
  };
  walk(dir);
  return { bytes, allocated, files };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Time an async step in ms (performance.now()). */
export async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const v = await fn();
  return [performance.now() - t0, v];
}

/**
 * The end of every suite: clean up, check nothing was left behind, and note the suite's wall time and the
 * cleanup check under its last table (leftovers become failures).
 */
export async function finishSuite(
  tables: Table[],
  o: { t0: number; tmp: string; cleanup: () => Promise<void>; leftovers: () => Promise<string[]>; unregister: () => void; clean: string },
): Promise<void> {
  await o.cleanup();
  const bad = await o.leftovers();
  fs.rmSync(o.tmp, { recursive: true, force: true });
  o.unregister();
  const last = tables.at(-1);
  if (!last) return;
  (last.notes ??= []).push(`Suite wall time ${((performance.now() - o.t0) / 1000).toFixed(0)} s. Cleanup checked: ${bad.length ? 'leftovers found' : o.clean}.`);
  if (bad.length) (last.failures ??= []).push(...bad);
}
