// Images of the local Substrate: the default "node" rootfs (hardlinked from the machine, never the host root),
// app images with a directory at /app, content digests, pinned references, and concurrent builds.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Code } from '../../src/common/errors.js';
import { buildImageFromDir, ensureDefaultImage, imageDigestOf, listImages, resolveImage } from '../../src/local/images.js';

const dirs: string[] = [];
function tmp(prefix: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

async function codeOf(p: Promise<unknown>): Promise<{ code?: number; message: string }> {
  try {
    await p;
  } catch (e) {
    return { code: (e as { code?: number }).code, message: (e as Error).message };
  }
  throw new Error('expected a rejection, but the call succeeded');
}

const REF_RE = /^local\/node@sha256:[0-9a-f]{64}$/;

describe('local images', () => {
  const state = tmp('sbx-img-');

  it('builds the default node image from the machine, hardlinked, with a minimal /etc', async () => {
    const img = await ensureDefaultImage(state);
    expect(img.name).toBe('node');
    expect(img.ref).toMatch(REF_RE);
    expect(img.ref).toBe(`local/node@${img.digest}`);
    expect(img.rootfs.startsWith(path.join(state, 'images'))).toBe(true);
    const node = path.join(img.rootfs, 'usr/bin/node');
    const host = fs.realpathSync(process.execPath);
    // Same inode as the host binary (state dir and /usr share a filesystem here): no copy.
    if (fs.statSync(path.dirname(state)).dev === fs.statSync(host).dev) expect(fs.statSync(node).ino).toBe(fs.statSync(host).ino);
    expect(fs.readFileSync(path.join(img.rootfs, 'etc/passwd'), 'utf8')).toMatch(/^root:x:0:0:/);
    for (const f of ['etc/group', 'etc/hosts', 'etc/nsswitch.conf']) expect(fs.statSync(path.join(img.rootfs, f)).size).toBeGreaterThan(0);
    expect(fs.readFileSync(path.join(img.rootfs, 'etc/resolv.conf'), 'utf8')).toBe('');
    expect(fs.statSync(path.join(img.rootfs, 'tmp')).mode & 0o7777).toBe(0o1777);
    expect(fs.existsSync(path.join(img.rootfs, 'lib64/ld-linux-x86-64.so.2')) || fs.existsSync(path.join(img.rootfs, 'lib/ld-linux-aarch64.so.1'))).toBe(true);
    // Not the host root: nothing else of the machine is in there.
    expect(fs.existsSync(path.join(img.rootfs, 'etc/shadow'))).toBe(false);
    expect(fs.existsSync(path.join(img.rootfs, 'work'))).toBe(false);
    // The digest is the content digest of the rootfs.
    expect(await imageDigestOf(img.rootfs)).toBe(img.digest);
    // Second call re-uses it.
    const again = await ensureDefaultImage(state);
    expect(again).toEqual(img);
    expect(await listImages(state)).toEqual([img]);
    await expect(resolveImage(state, img.ref)).resolves.toEqual({ rootfs: img.rootfs, digest: img.digest });
  });

  it('builds app images at /app; the digest follows the content', async () => {
    const src = tmp('sbx-app-');
    fs.writeFileSync(path.join(src, 'server.js'), 'console.log(1)\n');
    fs.mkdirSync(path.join(src, 'lib'));
    fs.writeFileSync(path.join(src, 'lib', 'util.js'), 'module.exports = 2;\n');
    const a = await buildImageFromDir(state, 'helpdesk', src);
    expect(a.ref).toMatch(/^local\/helpdesk@sha256:[0-9a-f]{64}$/);
    expect(fs.readFileSync(path.join(a.rootfs, 'app/server.js'), 'utf8')).toBe('console.log(1)\n');
    expect(fs.readFileSync(path.join(a.rootfs, 'app/lib/util.js'), 'utf8')).toBe('module.exports = 2;\n');
    expect(fs.existsSync(path.join(a.rootfs, 'usr/bin/node'))).toBe(true);

    // Same content → same digest (deterministic, independent of build time).
    const same = await buildImageFromDir(state, 'helpdesk', src);
    expect(same.digest).toBe(a.digest);

    // One byte changed → another digest; the first image is untouched (files are copied, not linked).
    fs.writeFileSync(path.join(src, 'server.js'), 'console.log(2)\n');
    const b = await buildImageFromDir(state, 'helpdesk', src);
    expect(b.digest).not.toBe(a.digest);
    expect(fs.readFileSync(path.join(a.rootfs, 'app/server.js'), 'utf8')).toBe('console.log(1)\n');
    await expect(resolveImage(state, a.ref)).resolves.toMatchObject({ digest: a.digest });
    await expect(resolveImage(state, b.ref)).resolves.toMatchObject({ digest: b.digest });

    // A mode change changes the digest too.
    fs.chmodSync(path.join(src, 'server.js'), 0o755);
    const c = await buildImageFromDir(state, 'helpdesk', src);
    expect(c.digest).not.toBe(b.digest);

    const refs = (await listImages(state)).map((i) => i.ref);
    expect(refs).toEqual(expect.arrayContaining([a.ref, b.ref, c.ref]));
    expect(fs.readdirSync(path.join(state, 'images')).filter((n) => n.startsWith('.tmp'))).toEqual([]);
  });

  it('resolves only pinned local references, with clear errors', async () => {
    const img = await ensureDefaultImage(state);
    const unpinned = await codeOf(resolveImage(state, 'local/node'));
    expect(unpinned.code).toBe(Code.INVALID_ARGUMENT);
    expect(unpinned.message).toContain('All images must be pinned (changing the image invalidates snapshots)');
    expect(unpinned.message).toContain(img.ref);

    const unknown = await codeOf(resolveImage(state, `local/node@sha256:${'a'.repeat(64)}`));
    expect(unknown.code).toBe(Code.NOT_FOUND);
    expect(unknown.message).toContain(img.ref);

    const remote = await codeOf(resolveImage(state, `docker.io/library/node@sha256:${'b'.repeat(64)}`));
    expect(remote.code).toBe(Code.NOT_FOUND);
    expect(remote.message).toMatch(/no registry access/);

    const badName = await codeOf(buildImageFromDir(state, 'Bad Name', state));
    expect(badName.code).toBe(Code.INVALID_ARGUMENT);
    const noDir = await codeOf(buildImageFromDir(state, 'x', path.join(state, 'does-not-exist')));
    expect(noDir.code).toBe(Code.INVALID_ARGUMENT);
  });

  it('refuses an image whose files changed on disk after it was built', async () => {
    const src = tmp('sbx-app2-');
    fs.writeFileSync(path.join(src, 'main.js'), 'x\n');
    const img = await buildImageFromDir(state, 'tampered', src);
    fs.appendFileSync(path.join(img.rootfs, 'app/main.js'), 'evil\n');
    const r = await codeOf(resolveImage(state, img.ref));
    expect(r.code).toBe(Code.FAILED_PRECONDITION);
    expect(r.message).toMatch(/modified on disk/);
  });

  it('two processes building the default image at once end with one image', async () => {
    const s = tmp('sbx-img2-');
    const mod = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/local/images.ts');
    const script = `import { ensureDefaultImage } from ${JSON.stringify(mod)}; const i = await ensureDefaultImage(${JSON.stringify(s)}); process.stdout.write(i.ref);`;
    const runOne = () =>
      new Promise<string>((resolve, reject) => {
        const c = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SUBSTRATE_LOG_LEVEL: 'error' } });
        let out = '';
        let err = '';
        c.stdout.on('data', (d) => (out += d));
        c.stderr.on('data', (d) => (err += d));
        c.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`builder exited ${code}: ${err}`))));
      });
    const [r1, r2] = await Promise.all([runOne(), runOne()]);
    expect(r1).toMatch(REF_RE);
    expect(r2).toBe(r1);
    expect(fs.readdirSync(path.join(s, 'images')).sort()).toEqual(['node']);
    expect(fs.readdirSync(path.join(s, 'images', 'node'))).toHaveLength(1);
    expect(await listImages(s)).toHaveLength(1);
  });
});
