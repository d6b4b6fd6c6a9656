// scripts/soak.ts (`npm run soak`): the command line only. Argument errors exit 2 with a message naming the
// flag, --help exits 0; nothing here starts a local Substrate or needs runsc. The schedule's determinism (same
// seed, same operations and faults) is checked on the pure planner.
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../scripts/lib/cli.mjs';
import { UsageError, parseSoakArgs, passed, planCycle, rngOf } from '../../scripts/soak.js';

const SCRIPT = path.join(REPO_ROOT, 'scripts', 'soak.ts');

function soak(args: string[]) {
  return execa(process.execPath, ['--import', 'tsx', SCRIPT, ...args], {
    cwd: REPO_ROOT,
    reject: false,
    stdin: 'ignore',
    timeout: 60_000,
    env: { NO_COLOR: '1' },
  });
}

describe('soak: argument errors exit 2 with a clear message', () => {
  const cases: Array<[string[], RegExp]> = [
    [['--minutes', '0'], /--minutes must be a number of minutes greater than 0 .*got "0"/],
    [['--minutes', 'x'], /--minutes must be a number of minutes greater than 0 .*got "x"/],
    [['--actors', '99'], /--actors must be an integer from 1 to 32, got "99"/],
    [['--bogus'], /unknown option --bogus/],
  ];
  for (const [args, message] of cases) {
    it(args.join(' '), async () => {
      const r = await soak(args);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1); // one line, no stack
      expect(r.stdout).toBe('');
    });
  }

  it('--help exits 0 and prints the usage on stdout', async () => {
    const r = await soak(['--help']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^Usage: npm run soak -- \[options\]/);
    for (const flag of ['--minutes', '--actors', '--seed', '--state-dir', '--kill-every', '--keep', '--help']) expect(r.stdout).toContain(flag);
    expect(r.stderr).toBe('');
  });

  it('the npm script runs the same file', async () => {
    const r = await execa('npm', ['run', '--silent', 'soak', '--', '--actors', '0'], { cwd: REPO_ROOT, reject: false, stdin: 'ignore', timeout: 60_000 });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--actors must be an integer from 1 to 32, got "0"/);
  });
});

describe('parseSoakArgs', () => {
  it('defaults: 5 minutes, 4 actors, server kill every 5 cycles, a seed from the clock, a temporary state dir', () => {
    const o = parseSoakArgs([], 1_700_000_000_123);
    expect(o).toEqual({ help: false, minutes: 5, actors: 4, seed: 1_700_000_000_123 % 4_294_967_296, seedGiven: false, stateDir: undefined, keep: false, killEvery: 5 });
  });

  it('takes fractional minutes, both --flag value and --flag=value, and resolves --state-dir', () => {
    const o = parseSoakArgs(['--minutes', '0.5', '--actors=32', '--seed', '42', '--state-dir', 'rel/dir', '--kill-every', '0', '--keep']);
    expect(o).toMatchObject({ minutes: 0.5, actors: 32, seed: 42, seedGiven: true, keep: true, killEvery: 0 });
    expect(o.stateDir).toBe(path.resolve('rel/dir'));
    expect(parseSoakArgs(['-h']).help).toBe(true);
  });

  const bad: Array<[string[], RegExp]> = [
    [['--minutes', '-1'], /--minutes must be a number of minutes greater than 0/],
    [['--minutes', '1e3'], /--minutes must be/],
    [['--minutes'], /--minutes needs a value/],
    [['--minutes', '--actors', '2'], /--minutes needs a value/],
    [['--actors', '0'], /--actors must be an integer from 1 to 32/],
    [['--actors', '2.5'], /--actors must be an integer from 1 to 32/],
    [['--seed', '-3'], /--seed must be an integer from 0 to 4294967295/],
    [['--seed', '4294967296'], /--seed must be an integer from 0 to 4294967295/],
    [['--kill-every', 'often'], /--kill-every must be an integer ≥ 0/],
    [['--state-dir='], /--state-dir needs a value/],
    [['--keep=yes'], /--keep takes no value/],
    [['--actors', '2', '--actors', '3'], /--actors was given more than once/],
    [['stray'], /unexpected argument "stray"/],
  ];
  for (const [args, message] of bad) {
    it(`refuses ${JSON.stringify(args)}`, () => {
      expect(() => parseSoakArgs(args)).toThrow(UsageError);
      expect(() => parseSoakArgs(args)).toThrow(message);
    });
  }
});

describe('the schedule', () => {
  it('is the same for the same seed and differs for another', () => {
    const plan = (seed: number) => {
      const rng = rngOf(seed);
      return Array.from({ length: 20 }, (_, i) => planCycle(rng, i + 1, 4, 5));
    };
    expect(plan(7)).toEqual(plan(7));
    expect(plan(7)).not.toEqual(plan(8));
  });

  it('kills the server every --kill-every cycles, never with 0, and draws every kind of operation and worker kills', () => {
    const rng = rngOf(1);
    const plans = Array.from({ length: 200 }, (_, i) => planCycle(rng, i + 1, 4, 5));
    expect(plans.filter((p) => p.serverKill).length).toBe(40);
    expect(plans.every((p, i) => p.serverKill === ((i + 1) % 5 === 0))).toBe(true);
    expect(planCycle(rngOf(1), 5, 4, 0).serverKill).toBe(false);
    const kinds = new Set(plans.flatMap((p) => p.ops.map((o) => o.kind)));
    expect([...kinds].sort()).toEqual(['count', 'migrate', 'pause', 'suspend']);
    const kills = plans.filter((p) => p.workerKill).length;
    expect(kills).toBeGreaterThan(25); // ~1 in 4
    expect(kills).toBeLessThan(80);
    for (const p of plans) if (p.workerKill) expect(p.workerKill.victim).toBeLessThan(4);
  });

  it('passes only when every figure is checked and zero', () => {
    const clean = { losses: [], failures: [], actorsLost: 0, runscLeft: 0, netnsLeft: 0, snapshotsLeaked: 0, interrupted: false, timedOut: false };
    expect(passed(clean)).toBe(true);
    expect(passed({ ...clean, snapshotsLeaked: undefined })).toBe(false);
    expect(passed({ ...clean, runscLeft: 1 })).toBe(false);
    expect(passed({ ...clean, interrupted: true })).toBe(false);
    expect(passed({ ...clean, losses: [{ cycle: 1, actor: 'a0', after: 'x', expected: 2, got: 1 }] })).toBe(false);
  });
});
