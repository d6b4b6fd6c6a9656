// `npm start` and `npm test` run scripts/ensure-setup.sh first: silent when everything setup provides is there,
// the setup (with its progress) when something is missing. The real setup installs Debian and npm packages,
// so here a stand-in scripts/setup.sh in a scratch copy of the project records that it ran.
import { execa } from 'execa';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const REPO = join(import.meta.dirname, '../..');
const dirs: string[] = [];

function scratch(): string {
  const d = mkdtempSync(join(tmpdir(), 'ensure-setup-'));
  dirs.push(d);
  mkdirSync(join(d, 'scripts'));
  copyFileSync(join(REPO, 'scripts/ensure-setup.sh'), join(d, 'scripts/ensure-setup.sh'));
  writeFileSync(join(d, 'scripts/setup.sh'), 'echo "stand-in setup ran" >&2\n');
  writeFileSync(join(d, 'package-lock.json'), '{}\n');
  mkdirSync(join(d, '.tools'));
  writeFileSync(join(d, '.tools/runsc'), '#!/bin/sh\n');
  chmodSync(join(d, '.tools/runsc'), 0o755);
  mkdirSync(join(d, 'node_modules'));
  writeFileSync(join(d, 'node_modules/.package-lock.json'), '{}\n');
  const past = new Date(Date.now() - 60_000);
  utimesSync(join(d, 'package-lock.json'), past, past);
  return d;
}

const run = (d: string) => execa('bash', [join(d, 'scripts/ensure-setup.sh')], { reject: false, env: { PATH: process.env.PATH ?? '' }, extendEnv: false });

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('ensure-setup', () => {
  it('says nothing and runs nothing when everything is there', async () => {
    const r = await run(scratch());
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('');
  });

  it('runs the setup, saying why, when runsc, the npm packages or a changed lock are missing', async () => {
    const noRunsc = scratch();
    rmSync(join(noRunsc, '.tools/runsc'));
    const noModules = scratch();
    rmSync(join(noModules, 'node_modules'), { recursive: true });
    const newerLock = scratch();
    utimesSync(join(newerLock, 'package-lock.json'), new Date(), new Date(Date.now() + 5_000));
    for (const [d, what] of [
      [noRunsc, 'runsc'],
      [noModules, 'npm-packages'],
      [newerLock, 'npm-packages'],
    ] as const) {
      const r = await run(d);
      expect(r.stderr).toContain(`setup: missing: ${what}; running scripts/setup.sh first`);
      expect(r.stderr).toContain('stand-in setup ran');
    }
  });
});
