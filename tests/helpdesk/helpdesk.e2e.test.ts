// End to end: `node scripts/helpdesk.mjs` (what `npm run helpdesk` runs) on this machine — the real driver binary
// on a Unix socket driven by the OpenShell gateway stand-in (tests/integration/gateway/harness.ts) in each generation's
// mode (--gateway v0.1, the default, and --gateway v0.0), the local Substrate on real gVisor, the helpdesk agent image
// built from examples/helpdesk/app. Each run must pass all ten beats, print exactly one PASS line per beat, exit 0, and
// leave nothing behind (temporary state directory, runsc processes, network namespaces). Needs root and runsc (npm run
// setup), like the local Substrate's own tests.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const SCRIPT = join(ROOT, 'scripts', 'helpdesk.mjs');
const ANSI = /\x1b\[[0-9;]*m/g;

function run(args: string[], timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [SCRIPT, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FORCE_COLOR: '0' } });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      // SIGINT: the script's own cleanup stops what it started.
      child.kill('SIGINT');
      reject(new Error(`helpdesk.mjs did not finish within ${timeoutMs / 1000} s; output so far:\n${out}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, out: out.replace(ANSI, '') });
    });
  });
}

const scratch = mkdtempSync(join(tmpdir(), 'helpdesk-e2e-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('scripts/helpdesk.mjs command line', () => {
  it('--help describes the ten beats and the targets, exit 0', async () => {
    const r = await run(['--help'], 30_000);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^usage: node scripts\/helpdesk\.mjs/);
    for (const n of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) expect(r.out).toMatch(new RegExp(`^\\s*${n}\\. `, 'm'));
    expect(r.out).toContain('--socket PATH');
    expect(r.out).toContain('--config FILE');
    expect(r.out).toMatch(/--gateway v0\.1\|v0\.0 +the OpenShell gateway generation the stand-in plays \(default v0\.1\)/);
    expect(r.out).toContain('platform_config.annotations.substrate_actor_template');
  });

  it('rejects bad flags with exit 2 and says what is wrong', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--frobnicate'], /unknown option: --frobnicate/],
      [['--workspace', 'Not_A_Label'], /--workspace "Not_A_Label" must be a DNS-1123 label/],
      [['--image', 'helpdesk:latest'], /--image "helpdesk:latest" is not pinned/],
      [['--workers', 'many'], /--workers must be an integer/],
      [['--probe-url', 'ftp://127.0.0.1/'], /--probe-url must be an http/],
      [['--socket', '/tmp/x.sock'], /--socket needs --state-dir/],
      [['--config', join(scratch, 'missing.toml')], /no such file/],
      [['--gateway', 'v2'], /--gateway must be one of v0\.1, v0\.0/],
      [['--gateway'], /--gateway needs a value/],
    ];
    for (const [args, msg] of cases) {
      const r = await run(args, 30_000);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.out).toMatch(msg);
    }
  });
});

describe('npm run helpdesk: the ten beats on the local Substrate', () => {
  it.each([
    ['v0.1', []],
    ['v0.0', ['--gateway', 'v0.0']],
  ] as Array<[string, string[]]>)(
    'through the %s gateway stand-in: passes all ten beats, exits 0 and leaves nothing behind',
    async (generation, extra) => {
      const report = join(scratch, `report-${generation}.json`);
      const r = await run([...extra, '--report', report], 290_000);
      expect(r.out).toContain(`through the OpenShell ${generation} gateway stand-in`);
      expect(r.out).toMatch(generation === 'v0.1' ? /gateway v0\.1: GetCapabilities with gateway metadata: .* negotiated; admission acknowledgement verified: v1:/ : /gateway 0\.0\.x: GetCapabilities: driver substrate .*; GetGatewayListenerRequirements: 0 requirement/);
      const passLines = r.out.split('\n').filter((l) => /^PASS beat \d+\/10: /.test(l));
      const failLines = r.out.split('\n').filter((l) => /^FAIL /.test(l));
      expect(failLines, r.out).toEqual([]);
      expect(passLines.map((l) => Number(/^PASS beat (\d+)\//.exec(l)![1])), r.out).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toMatch(/helpdesk: all 10 beats passed in/);

      const j = JSON.parse(readFileSync(report, 'utf8')) as { passed: number; beats: Array<{ n: number; result: string; ms: number }> };
      expect(j.passed).toBe(10);
      expect(j.beats.map((b) => b.result)).toEqual(Array(10).fill('PASS'));

      // Cleanup: the temporary state directory is gone, and so is everything rooted in it.
      const m = /^state dir (\/\S+) \(temporary\)$/m.exec(r.out);
      expect(m, 'the script names its temporary state directory').not.toBeNull();
      const stateDir = m![1]!;
      expect(existsSync(stateDir)).toBe(false);
      expect(existsSync(resolve(stateDir, '..'))).toBe(false);
      const tag = createHash('sha256').update(stateDir).digest('hex').slice(0, 6);
      const netns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
      expect(netns.split('\n').filter((l) => l.startsWith(`sbx-${tag}-`))).toEqual([]);
      const procs = readdirSync('/proc')
        .filter((d) => /^\d+$/.test(d))
        .filter((pid) => {
          try {
            return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(stateDir);
          } catch {
            return false;
          }
        });
      expect(procs).toEqual([]);
    },
    300_000,
  );
});
