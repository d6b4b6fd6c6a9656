// How `serve` and `local serve` end: every stop signal runs the clean stop and exits 0; an unhandled promise
// rejection or an uncaught exception anywhere is logged, runs the same clean stop, and exits 1.
import { execa } from 'execa';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const LIFECYCLE = join(import.meta.dirname, '../../src/common/lifecycle.ts');

/** A process that serves until runUntilStopped resolves, after `trigger` (JS run once it is waiting). */
function child(trigger: string) {
  const code = `
    const { runUntilStopped } = await import(${JSON.stringify(LIFECYCLE)});
    setInterval(() => {}, 1000);
    setTimeout(() => { ${trigger} }, 200);
    const status = await runUntilStopped(async () => { process.stdout.write('stopped cleanly\\n'); }, { what: 'test' });
    process.exit(status);
  `;
  return execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { reject: false, timeout: 30_000 });
}

describe('runUntilStopped', () => {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    it(`${sig}: clean stop, exit 0`, async () => {
      const r = await child(`process.kill(process.pid, '${sig}')`);
      expect(r.stdout).toContain('stopped cleanly');
      expect(r.exitCode).toBe(0);
    });
  }

  it('an unhandled promise rejection: logged, clean stop, exit 1', async () => {
    const r = await child(`Promise.reject(new Error('boom in some callback'))`);
    expect(r.stdout).toContain('stopped cleanly');
    expect(r.stderr).toMatch(/"msg":"unhandled promise rejection; stopping".*boom in some callback/);
    expect(r.exitCode).toBe(1);
  });

  it('an uncaught exception: logged, clean stop, exit 1', async () => {
    const r = await child(`setImmediate(() => { throw new Error('thrown from a timer') })`);
    expect(r.stdout).toContain('stopped cleanly');
    expect(r.stderr).toMatch(/"msg":"uncaught exception; stopping".*thrown from a timer/);
    expect(r.exitCode).toBe(1);
  });
});
