// `local doctor` and scripts/install-runsc.sh on this machine (real checks: namespaces and a sandbox are
// created and removed again).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runDoctor } from '../../src/local/doctor.js';
import { listNetns, projectRoot } from '../../src/local/runtime/index.js';

const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-doc-'));
afterAll(() => fs.rmSync(stateDir, { recursive: true, force: true }));

describe('local doctor', () => {
  it('passes every check on a machine that runs the runtime, and leaves nothing behind', async () => {
    const before = new Set(await listNetns());
    const res = await runDoctor({ stateDir });
    const failed = res.filter((r) => !r.ok);
    expect(failed).toEqual([]);
    expect(res.map((r) => r.check)).toEqual(
      expect.arrayContaining(['runsc', 'root', 'ip', 'unshare', 'network namespaces', '/proc/sys/net masking', 'sandbox', 'disk space', 'ptrace']),
    );
    expect(res.find((r) => r.check === 'runsc')!.detail).toMatch(/0\.0~20240729/);
    // Its probe namespace (named after this process) is gone again.
    expect((await listNetns()).filter((n) => !before.has(n) && n.startsWith(`sbx-doctor-${process.pid}-`))).toEqual([]);
  });

  it('names the exact remedy when runsc is missing or too old', async () => {
    const missing = await runDoctor({ stateDir, runscPath: path.join(stateDir, 'no-runsc') });
    const r = missing.find((x) => x.check === 'runsc')!;
    expect(r.ok).toBe(false);
    expect(r.detail).toMatch(/not found/);
    expect(r.remedy).toMatch(/^bash scripts\/install-runsc\.sh/);
    expect(missing.find((x) => x.check === 'sandbox')!.ok).toBe(false);

    const old = path.join(stateDir, 'old-runsc');
    fs.writeFileSync(old, '#!/bin/sh\necho "runsc version 0.0~20221219.0"\n', { mode: 0o755 });
    const o = (await runDoctor({ stateDir, runscPath: old })).find((x) => x.check === 'runsc')!;
    expect(o.ok).toBe(false);
    expect(o.detail).toMatch(/0\.0~20221219\.0, need 0\.0~20240729/);
    expect(o.remedy).toMatch(/bash scripts\/install-runsc\.sh/);
  });

  it('reports too little disk space with a remedy', async () => {
    const res = await runDoctor({ stateDir, minFreeBytes: Number.MAX_SAFE_INTEGER });
    const d = res.find((r) => r.check === 'disk space')!;
    expect(d.ok).toBe(false);
    expect(d.remedy).toMatch(/free space|--state-dir/);
  });
});

describe('scripts/install-runsc.sh', () => {
  it('is idempotent: with runsc 0.0~20240729 in .tools it changes nothing and exits 0', () => {
    const root = projectRoot();
    const bin = path.join(root, '.tools', 'runsc');
    // First run installs when missing (fetches from the machine's configured Debian mirror); the second is a no-op.
    const first = spawnSync('bash', [path.join(root, 'scripts', 'install-runsc.sh')], { encoding: 'utf8', timeout: 300_000 });
    expect(first.status, first.stderr).toBe(0);
    const mtime = fs.statSync(bin).mtimeMs;
    const second = spawnSync('bash', [path.join(root, 'scripts', 'install-runsc.sh')], { encoding: 'utf8', timeout: 60_000 });
    expect(second.status).toBe(0);
    expect(second.stderr).toMatch(/already installed: .*runsc version 0\.0~20240729/);
    expect(second.stdout).toBe('');
    expect(fs.statSync(bin).mtimeMs).toBe(mtime);
  });
});
