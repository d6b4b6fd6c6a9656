// Images of the local Substrate: content-addressed root filesystems built on this machine, never the host
// root. The default image "node" holds the machine's Node.js binary, its `ldd` libraries and a minimal /etc,
// hardlinked from the host (copied when the state dir is on another filesystem), plus the OpenShell launch
// bootstrap agent (copied, never linked) at /opt/openshell-substrate/{bootstrap-agent,launch-auth}.mjs and the mount points of
// the per-actor writable launch directories (/.openshell, /etc/openshell; see runtime/paths.ts). App images add
// a directory's contents at /app. Layout:
//   <stateDir>/images/<name>/<hex>/rootfs/      the root filesystem (mounted read-only by the runtime)
//   <stateDir>/images/<name>/<hex>/image.json   name, ref, digest, createdAt, bytes, per-file manifest
// Digest: sha256 over the sorted lines "<relative path>\t<mode>\t<sha256 of content>" of every entry
// (directories "d", symlinks "l" + sha256 of the target) → reference `local/<name>@sha256:<hex>`.
// Builds go to a temp dir and are renamed into place under a lock file, so two processes can build at once.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { failedPrecondition, invalid, notFound } from '../common/errors.js';
import { logger } from '../common/log.js';
import { run } from './runtime/exec.js';
import { BOOTSTRAP_AGENT_DIR, LAUNCH_WRITABLE_DIRS, bootstrapAgentFiles } from './runtime/paths.js';

const log = logger('local.images');

export interface ImageInfo {
  name: string;
  ref: string;
  /** "sha256:<hex>" */
  digest: string;
  rootfs: string;
  /** Apparent size of all files (hardlinked files count in full). */
  bytes: number;
  createdAt: string;
}

/** [relative path, mode, size, sha256 | symlink target hash | '', ino, mtimeMs] */
type ManifestEntry = [string, number, number, string, number, number];

interface ImageJson extends ImageInfo {
  format: 'substrate-local-image/v1';
  files: ManifestEntry[];
  /** Host files the default image was made from, to notice a Node upgrade. */
  sources?: Array<{ path: string; size: number; mtimeMs: number; ino: number }>;
}

const NAME_RE = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;
export const DEFAULT_IMAGE = 'node';
const PIN_RULE = 'All images must be pinned (changing the image invalidates snapshots)';

const ETC_FILES: Record<string, string> = {
  'etc/passwd': 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n',
  'etc/group': 'root:x:0:\nnogroup:x:65534:\n',
  'etc/hosts': '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n',
  'etc/nsswitch.conf': 'passwd: files\ngroup: files\nhosts: files dns\n',
  'etc/resolv.conf': '',
};
const DIRS: Array<[string, number]> = [
  ['etc', 0o755],
  ['tmp', 0o1777],
  ['proc', 0o555],
  ['dev', 0o755],
  ['sys', 0o555],
  ['root', 0o700],
  ['usr', 0o755],
  ['usr/bin', 0o755],
  ['opt', 0o755],
  [BOOTSTRAP_AGENT_DIR, 0o755],
  ...LAUNCH_WRITABLE_DIRS.map((d): [string, number] => [d, 0o755]),
];

function imagesDir(stateDir: string): string {
  return path.join(path.resolve(stateDir), 'images');
}

// ---- public API ------------------------------------------------------------------------------------------------

/** The default "node" image, built on first use (or again when the host's Node.js changed). */
export async function ensureDefaultImage(stateDir: string): Promise<ImageInfo> {
  const sources = await nodeSources();
  const fast = await findDefault(stateDir, sources);
  if (fast) return fast;
  return withLock(stateDir, async () => {
    const again = await findDefault(stateDir, sources);
    if (again) return again;
    return build(stateDir, DEFAULT_IMAGE, async (root) => {
      const files = await populateNodeRootfs(root, sources);
      return { known: files, sources: sources.map(({ path: p, size, mtimeMs, ino }) => ({ path: p, size, mtimeMs, ino })) };
    });
  });
}

/** The node rootfs plus the contents of `dir` at /app. Reference `local/<name>@sha256:<hex>`. */
export async function buildImageFromDir(stateDir: string, name: string, dir: string): Promise<ImageInfo> {
  if (!NAME_RE.test(name)) throw invalid(`image name "${name}" must be 1-63 lower-case letters, digits, '.', '_' or '-', starting and ending alphanumeric`);
  const src = path.resolve(dir);
  const st = await fsp.stat(src).catch(() => undefined);
  if (!st?.isDirectory()) throw invalid(`cannot build image "${name}": ${src} is not a directory`);
  const base = await ensureDefaultImage(stateDir);
  const baseJson = await readImageJson(path.dirname(base.rootfs));
  return withLock(stateDir, () =>
    build(stateDir, name, async (root) => {
      // Hardlink the default image's files (their hashes are known from its manifest), then copy the app.
      const known = new Map<string, string>();
      for (const [rel, mode, , sha] of baseJson.files) {
        const from = path.join(base.rootfs, rel);
        const to = path.join(root, rel);
        if ((mode & 0o170000) === 0o040000) {
          await fsp.mkdir(to, { recursive: true });
          await fsp.chmod(to, mode & 0o7777);
        } else if ((mode & 0o170000) === 0o100000) {
          await fsp.mkdir(path.dirname(to), { recursive: true });
          await linkOrCopy(from, to);
          known.set(rel, sha);
        } else if ((mode & 0o170000) === 0o120000) {
          await fsp.mkdir(path.dirname(to), { recursive: true });
          await fsp.symlink(await fsp.readlink(from), to);
        }
      }
      await fsp.mkdir(path.join(root, 'app'), { recursive: true, mode: 0o755 });
      await copyTree(src, path.join(root, 'app'));
      return { known };
    }),
  );
}

export async function listImages(stateDir: string): Promise<ImageInfo[]> {
  const out: ImageInfo[] = [];
  const base = imagesDir(stateDir);
  for (const name of await readdirSafe(base)) {
    if (name.startsWith('.')) continue;
    for (const hex of await readdirSafe(path.join(base, name))) {
      if (!/^[0-9a-f]{64}$/.test(hex)) continue;
      try {
        const j = await readImageJson(path.join(base, name, hex));
        out.push({ name: j.name, ref: j.ref, digest: j.digest, rootfs: j.rootfs, bytes: j.bytes, createdAt: j.createdAt });
      } catch {
        /* a broken entry is not an image */
      }
    }
  }
  return out.sort((a, b) => a.name.localeCompare(b.name) || a.createdAt.localeCompare(b.createdAt));
}

/**
 * `local/<name>@sha256:<hex>` → its rootfs and digest. Unpinned references are rejected with the CRD's rule;
 * unknown ones with the list of available references. A rootfs changed on disk since it was built is refused.
 */
export async function resolveImage(stateDir: string, ref: string): Promise<{ rootfs: string; digest: string }> {
  const available = async () => {
    const refs = (await listImages(stateDir)).map((i) => i.ref);
    return refs.length ? `available: ${refs.join(', ')}` : 'no images are built yet (the default one is built on first start)';
  };
  if (!ref.includes('@')) {
    throw invalid(`image "${ref}" is not pinned: ${PIN_RULE}. Use a reference with a digest, e.g. local/<name>@sha256:<hex>; ${await available()}`);
  }
  const m = /^local\/([a-z0-9][a-z0-9._-]*)(?::[\w][\w.-]*)?@sha256:([0-9a-f]{64})$/.exec(ref);
  if (!m) {
    throw notFound(`image "${ref}" is not available: the local Substrate has no registry access and only runs images built on this machine (local/<name>@sha256:<hex>); ${await available()}`);
  }
  const [, name, hex] = m as unknown as [string, string, string];
  const dir = path.join(imagesDir(stateDir), name, hex);
  let j: ImageJson;
  try {
    j = await readImageJson(dir);
  } catch {
    throw notFound(`image "${ref}" is not built on this machine; ${await available()}`);
  }
  for (const [rel, mode, size, , ino, mtimeMs] of j.files) {
    if ((mode & 0o170000) !== 0o100000) continue;
    const st = await fsp.lstat(path.join(j.rootfs, rel)).catch(() => undefined);
    if (!st || st.size !== size || st.ino !== ino || st.mtimeMs !== mtimeMs) {
      throw failedPrecondition(`image "${ref}" was modified on disk since it was built (${rel}); its digest no longer holds. Remove ${dir} and build it again`);
    }
  }
  return { rootfs: j.rootfs, digest: j.digest };
}

/** sha256 digest ("sha256:<hex>") of a root filesystem directory, by the scheme above. */
export async function imageDigestOf(rootfs: string, known?: Map<string, string>): Promise<string> {
  const entries = await manifestOf(rootfs, known);
  return digestOfManifest(entries);
}

// ---- building ----------------------------------------------------------------------------------------------------

async function build(
  stateDir: string,
  name: string,
  populate: (root: string) => Promise<{ known?: Map<string, string>; sources?: ImageJson['sources'] }>,
): Promise<ImageInfo> {
  const base = imagesDir(stateDir);
  const tmp = path.join(base, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const root = path.join(tmp, 'rootfs');
  await fsp.mkdir(root, { recursive: true, mode: 0o755 });
  try {
    const t0 = Date.now();
    const { known, sources } = await populate(root);
    const files = await manifestOf(root, known);
    const digest = digestOfManifest(files);
    const hex = digest.slice('sha256:'.length);
    const dest = path.join(base, name, hex);
    const info: ImageJson = {
      format: 'substrate-local-image/v1',
      name,
      ref: `local/${name}@${digest}`,
      digest,
      rootfs: path.join(dest, 'rootfs'),
      bytes: files.reduce((n, f) => n + ((f[1] & 0o170000) === 0o100000 ? f[2] : 0), 0),
      createdAt: new Date().toISOString(),
      files,
      ...(sources ? { sources } : {}),
    };
    await fsp.writeFile(path.join(tmp, 'image.json'), JSON.stringify(info) + '\n', { mode: 0o644 });
    await fsp.mkdir(path.join(base, name), { recursive: true });
    try {
      await fsp.rename(tmp, dest);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
      // Same content already built (by us earlier or by another process): keep the existing one.
      await fsp.rm(tmp, { recursive: true, force: true });
      const existing = await readImageJson(dest);
      return strip(existing);
    }
    log.info('image built', { ref: info.ref, files: files.length, bytes: info.bytes, ms: Date.now() - t0 });
    return strip(info);
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

function strip(j: ImageJson): ImageInfo {
  return { name: j.name, ref: j.ref, digest: j.digest, rootfs: j.rootfs, bytes: j.bytes, createdAt: j.createdAt };
}

interface SourceFile {
  /** where it goes inside the rootfs (relative) */
  rel: string;
  /** host path (real file) */
  path: string;
  /** Copy instead of hardlink (a project file that may be edited: the image must not change with it). */
  copy?: boolean;
  size: number;
  mtimeMs: number;
  ino: number;
}

/** The machine's Node.js and the shared libraries `ldd` lists for it. */
async function nodeSources(): Promise<SourceFile[]> {
  const exe = fs.realpathSync(process.execPath);
  const want = new Map<string, string>(); // rel -> host real path
  want.set('usr/bin/node', exe);
  const execRel = path.resolve(process.execPath).slice(1);
  if (execRel !== 'usr/bin/node') want.set(execRel, exe);
  let out: string;
  try {
    const r = await run('ldd', [exe], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error((r.stderr || r.stdout).trim() || `exit ${r.code}`);
    out = r.stdout;
  } catch (e) {
    throw failedPrecondition(`cannot list the libraries of ${exe} with ldd: ${(e as Error).message}; install libc-bin`);
  }
  for (const line of out.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (!m) {
      if (/not found/.test(line)) throw failedPrecondition(`ldd ${exe}: ${line.trim()}`);
      continue;
    }
    const p = m[1] as string;
    want.set(path.resolve(p).slice(1), fs.realpathSync(p));
  }
  const files: SourceFile[] = [...want].map(([rel, p]) => {
    const st = fs.statSync(p);
    return { rel, path: p, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
  });
  // The bootstrap agent is a source too: an edited agent makes a new default image.
  for (const f of bootstrapAgentFiles()) {
    try {
      const st = fs.statSync(f.path);
      files.push({ rel: f.rel, path: f.path, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, copy: true });
    } catch {
      throw failedPrecondition(`the OpenShell bootstrap agent file ${f.path} is missing; the default image needs it`);
    }
  }
  return files;
}

async function populateNodeRootfs(root: string, sources: SourceFile[]): Promise<Map<string, string>> {
  for (const [d, mode] of DIRS) {
    await fsp.mkdir(path.join(root, d), { recursive: true });
    await fsp.chmod(path.join(root, d), mode);
  }
  for (const s of sources) {
    await fsp.mkdir(path.join(root, path.dirname(s.rel)), { recursive: true, mode: 0o755 });
    if (s.copy) {
      await fsp.copyFile(s.path, path.join(root, s.rel));
      await fsp.chmod(path.join(root, s.rel), 0o644);
    } else await linkOrCopy(s.path, path.join(root, s.rel));
  }
  for (const [rel, text] of Object.entries(ETC_FILES)) await fsp.writeFile(path.join(root, rel), text, { mode: 0o644 });
  return new Map();
}

async function findDefault(stateDir: string, sources: SourceFile[]): Promise<ImageInfo | undefined> {
  const dir = path.join(imagesDir(stateDir), DEFAULT_IMAGE);
  const candidates: ImageJson[] = [];
  for (const hex of await readdirSafe(dir)) {
    if (!/^[0-9a-f]{64}$/.test(hex)) continue;
    try {
      candidates.push(await readImageJson(path.join(dir, hex)));
    } catch {
      /* skip */
    }
  }
  candidates.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  for (const j of candidates) {
    const same =
      j.sources?.length === sources.length &&
      sources.every((s) => j.sources!.some((o) => o.path === s.path && o.size === s.size && o.mtimeMs === s.mtimeMs && o.ino === s.ino));
    if (!same) continue;
    try {
      await resolveImage(stateDir, j.ref);
      return strip(j);
    } catch {
      /* modified on disk: build a fresh one */
    }
  }
  return undefined;
}

async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await fsp.link(from, to);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EXDEV' && code !== 'EPERM') throw e;
    await fsp.copyFile(from, to, fs.constants.COPYFILE_FICLONE);
    const st = await fsp.stat(from);
    await fsp.chmod(to, st.mode & 0o7777);
  }
}

/** Copies a directory tree (files copied, not linked: later edits of the source must not change the image). */
async function copyTree(src: string, dst: string): Promise<void> {
  for (const e of await fsp.readdir(src, { withFileTypes: true })) {
    const s = path.join(src, e.name);
    const d = path.join(dst, e.name);
    if (e.isDirectory()) {
      const st = await fsp.stat(s);
      await fsp.mkdir(d, { recursive: true });
      await copyTree(s, d);
      await fsp.chmod(d, st.mode & 0o7777);
    } else if (e.isFile()) {
      await fsp.copyFile(s, d, fs.constants.COPYFILE_FICLONE);
      await fsp.chmod(d, (await fsp.stat(s)).mode & 0o7777);
    } else if (e.isSymbolicLink()) {
      await fsp.symlink(await fsp.readlink(s), d);
    }
    // sockets, fifos and devices are not part of an image
  }
}

// ---- digest --------------------------------------------------------------------------------------------------------

async function manifestOf(root: string, known?: Map<string, string>): Promise<ManifestEntry[]> {
  const out: ManifestEntry[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const e of await fsp.readdir(path.join(root, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const abs = path.join(root, r);
      const st = await fsp.lstat(abs);
      if (st.isDirectory()) {
        out.push([r, st.mode, 0, '', st.ino, st.mtimeMs]);
        await walk(r);
      } else if (st.isFile()) {
        out.push([r, st.mode, st.size, known?.get(r) ?? (await sha256File(abs)), st.ino, st.mtimeMs]);
      } else if (st.isSymbolicLink()) {
        out.push([r, st.mode, 0, createHash('sha256').update(await fsp.readlink(abs)).digest('hex'), st.ino, st.mtimeMs]);
      }
    }
  };
  await walk('');
  return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function digestOfManifest(entries: ManifestEntry[]): string {
  const h = createHash('sha256');
  for (const [rel, mode, , sha] of entries) {
    const kind = (mode & 0o170000) === 0o040000 ? 'd' : (mode & 0o170000) === 0o120000 ? 'l' : 'f';
    h.update(`${rel}\t${kind}${(mode & 0o7777).toString(8)}\t${sha}\n`);
  }
  return `sha256:${h.digest('hex')}`;
}

function sha256File(p: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    fs.createReadStream(p)
      .on('data', (c) => h.update(c))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

// ---- misc ------------------------------------------------------------------------------------------------------------

async function readImageJson(dir: string): Promise<ImageJson> {
  const j = JSON.parse(await fsp.readFile(path.join(dir, 'image.json'), 'utf8')) as ImageJson;
  if (j.format !== 'substrate-local-image/v1') throw new Error(`${dir}/image.json: unknown format`);
  // The directory may have been renamed into place after image.json was written: trust the location.
  j.rootfs = path.join(dir, 'rootfs');
  return j;
}

async function readdirSafe(p: string): Promise<string[]> {
  try {
    return await fsp.readdir(p);
  } catch {
    return [];
  }
}

/** Serialises image builds of one state dir across processes (O_EXCL lock file; a dead holder's lock is stale). */
async function withLock<T>(stateDir: string, fn: () => Promise<T>): Promise<T> {
  const base = imagesDir(stateDir);
  await fsp.mkdir(base, { recursive: true, mode: 0o755 });
  const lock = path.join(base, '.lock');
  const deadline = Date.now() + 10 * 60_000;
  for (;;) {
    try {
      const fh = await fsp.open(lock, 'wx', 0o644);
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number((await fsp.readFile(lock, 'utf8').catch(() => '')).trim());
      let alive = false;
      if (holder > 0) {
        try {
          process.kill(holder, 0);
          alive = true;
        } catch (k) {
          alive = (k as NodeJS.ErrnoException).code === 'EPERM';
        }
      }
      const age = Date.now() - ((await fsp.stat(lock).catch(() => undefined))?.mtimeMs ?? Date.now());
      if ((holder > 0 && !alive) || (!holder && age > 5000)) {
        await fsp.rm(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw failedPrecondition(`image build lock ${lock} is held by pid ${holder} for more than 10 minutes`);
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
    }
  }
  try {
    return await fn();
  } finally {
    await fsp.rm(lock, { force: true });
  }
}
