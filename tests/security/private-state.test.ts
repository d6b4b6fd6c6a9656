// Issue 7, items 7 and 9: the state directory and what it holds are private, and snapshot locations are trusted
// only inside the instance's own snapshot store. A real local Substrate in a temporary state directory.
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { readLocalJson, startLocalSubstrate } from '../../src/local/index.js';
import { applyObject, counterTemplate, defaultImageRef, expectCode, startTestSubstrate, waitTemplateReady } from '../local/helpers.js';

const mode = (p: string) => statSync(p).mode & 0o777;

describe('private state', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('a state directory that existed readable by others is made 0700; catalog, WAL, SHM, token and local.json are 0600', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'sec-state-'));
    dirs.push(stateDir);
    chmodSync(stateDir, 0o755);
    const s = await startTestSubstrate({ stateDir, workers: 1 });
    try {
      await s.rpc('createAtespace', { name: 'written' }); // something in the WAL
      expect(mode(stateDir)).toBe(0o700);
      for (const f of ['catalog.db', 'catalog.db-wal', 'catalog.db-shm', 'kube.token', 'local.json']) {
        expect(mode(join(stateDir, f)), f).toBe(0o600);
      }
      expect(mode(readLocalJson(stateDir)!.kube_token_path)).toBe(0o600);
    } finally {
      await s.close();
    }
  });

  it('a state directory owned by another user is refused with the remedy, and left as it was', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'sec-other-'));
    dirs.push(parent);
    const stateDir = join(parent, 'state');
    mkdirSync(stateDir, { mode: 0o755 });
    chownSync(stateDir, 65534, 65534);
    await expect(startLocalSubstrate({ stateDir, workers: 1, routerListen: '127.0.0.1:0' })).rejects.toThrow(/belongs to uid 65534.*--state-dir/);
    expect(mode(stateDir)).toBe(0o755);
    expect(statSync(stateDir).uid).toBe(65534);
  });
});

describe('local.json is believed only when it is private', () => {
  it('ignores one that others could have written, or that points the token elsewhere', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sec-lj-'));
    try {
      const lj = { pid: process.pid, nonce: 'n', api_endpoint: 'unix:/x', api_tls: false, router_url: 'http://127.0.0.1:1', kube_url: 'http://127.0.0.1:2', kube_token_path: join(dir, 'kube.token'), state_dir: dir, started_at: '' };
      writeFileSync(join(dir, 'local.json'), JSON.stringify(lj), { mode: 0o600 });
      expect(readLocalJson(dir)?.nonce).toBe('n');
      chmodSync(join(dir, 'local.json'), 0o666);
      expect(readLocalJson(dir)).toBeNull();
      chmodSync(join(dir, 'local.json'), 0o600);
      chmodSync(dir, 0o777);
      expect(readLocalJson(dir)).toBeNull();
      chmodSync(dir, 0o700);
      writeFileSync(join(dir, 'local.json'), JSON.stringify({ ...lj, kube_token_path: '/etc/shadow' }), { mode: 0o600 });
      expect(readLocalJson(dir)).toBeNull();
      writeFileSync(join(dir, 'local.json'), JSON.stringify(lj), { mode: 0o600 });
      chownSync(join(dir, 'local.json'), 65534, 65534);
      expect(readLocalJson(dir)).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('snapshot locations', () => {
  it('a golden-snapshot location outside the snapshot store is never restored from, and the error names no host path', async () => {
    const s = await startTestSubstrate({ workers: 1 });
    try {
      const image = await defaultImageRef(s.stateDir);
      expect((await applyObject(s.h.kube, counterTemplate('counter', image) as never)).status).toBeLessThan(300);
      const tpl = await waitTemplateReady(s.h.kube, 'default', 'counter');
      // Someone with the resource API's token points the template's golden snapshot elsewhere on the host.
      const elsewhere = mkdtempSync(join(tmpdir(), 'sec-elsewhere-'));
      try {
        const path = '/apis/ate.dev/v1alpha1/namespaces/default/actortemplates/counter/status';
        const put = await fetch(`${s.h.kube.url}${path}`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${s.h.kube.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ ...tpl, status: { ...tpl.status, goldenSnapshot: `file://${elsewhere}` } }),
        });
        expect(put.status).toBe(200);
        await s.rpc('createAtespace', { name: 'p' });
        await s.rpc('createActor', { actorRef: { atespace: 'p', name: 'p1' }, actorTemplateNamespace: 'default', actorTemplateName: 'counter' });
        const e = await expectCode(s.rpc('resumeActor', { actorRef: { atespace: 'p', name: 'p1' } }), grpc.status.FAILED_PRECONDITION, /outside this local Substrate's snapshot store/);
        expect(e.details).not.toContain(elsewhere);
        expect(e.details).not.toContain(s.stateDir);
      } finally {
        rmSync(elsewhere, { recursive: true, force: true });
      }
    } finally {
      await s.close();
    }
  });
});
