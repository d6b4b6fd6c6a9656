// The gVisor runtime of the local Substrate, on real runsc (no fakes): boot, HTTP through the hub forwarder,
// checkpoint → restore onto another worker slot, egress confinement and allowances, failure handling,
// leftovers after a crash, and a clean shutdown.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../src/common/errors.js';
import { buildImageFromDir } from '../../src/local/images.js';
import {
  HUB_IP,
  createRuntime,
  httpRequestVia,
  listNetns,
  readSnapshot,
  removeInstanceLeftovers,
  runscPidsOf,
  type GvisorRuntime,
  type HttpViaResponse,
} from '../../src/local/runtime/index.js';
import type { Runtime, WorkerSlot, WorkloadSpec } from '../../src/local/runtime/types.js';

/**
 * Node HTTP server on :8080. /count increments an in-memory counter; /write?v= writes /tmp/note; /read reads it;
 * /connect?host=&port= tries an outbound TCP connection and reports what happened (code, data, ms).
 */
const SERVER_JS = `
const http = require('http'), fs = require('fs'), net = require('net');
let n = 0;
http.createServer((q, s) => {
  const u = new URL(q.url, 'http://x');
  if (u.pathname === '/count') { n++; return s.end(JSON.stringify({ n })); }
  if (u.pathname === '/write') { fs.writeFileSync('/tmp/note', u.searchParams.get('v') || ''); return s.end('written'); }
  if (u.pathname === '/read') { try { return s.end(fs.readFileSync('/tmp/note', 'utf8')); } catch (e) { return s.end('missing:' + e.code); } }
  if (u.pathname === '/alloc') { const keep = globalThis.keep || (globalThis.keep = []); for (let i = 0; i < Number(u.searchParams.get('mb')); i++) keep.push(Buffer.alloc(1 << 20, i + 1)); return s.end('allocated'); }
  if (u.pathname === '/connect') {
    const t0 = Date.now(); let data = ''; let connected = false; let done = false;
    const c = net.connect(Number(u.searchParams.get('port')), u.searchParams.get('host'));
    const finish = (code) => { if (done) return; done = true; c.destroy(); s.end(JSON.stringify({ connected, data, code, ms: Date.now() - t0 })); };
    c.setTimeout(8000, () => finish('TIMEOUT'));
    c.on('connect', () => { connected = true; });
    c.on('data', (d) => { data += d; });
    c.on('end', () => finish(null));
    c.on('error', (e) => finish(e.code));
    return;
  }
  s.end('hello');
}).listen(8080, () => console.log('listening on 8080'));
`;

interface ConnectResult {
  connected: boolean;
  data: string;
  code: string | null;
  ms: number;
}

/** Polls GET <path> until it answers 200 (a server that is still starting refuses connections). */
async function waitHttp(rt: Runtime, slot: WorkerSlot, p = '/', timeoutMs = 30_000): Promise<HttpViaResponse> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const r = await httpRequestVia(rt, slot, 8080, { path: p, timeoutMs: 5000 });
      if (r.status === 200) return r;
      last = new Error(`status ${r.status}`);
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`sandbox on slot ${slot.index} did not answer ${p} within ${timeoutMs} ms: ${(last as Error)?.message}`);
}

async function getJson<T>(rt: Runtime, slot: WorkerSlot, p: string): Promise<T> {
  const r = await httpRequestVia(rt, slot, 8080, { path: p, timeoutMs: 15_000 });
  expect(r.status).toBe(200);
  return JSON.parse(r.text) as T;
}

async function getText(rt: Runtime, slot: WorkerSlot, p: string): Promise<string> {
  const r = await httpRequestVia(rt, slot, 8080, { path: p, timeoutMs: 15_000 });
  expect(r.status).toBe(200);
  return r.text;
}

async function codeOf(p: Promise<unknown>): Promise<{ code?: number; message: string }> {
  try {
    await p;
  } catch (e) {
    return { code: (e as { code?: number }).code, message: (e as Error).message };
  }
  throw new Error('expected a rejection, but the call succeeded');
}

const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-rt-'));
let rt: GvisorRuntime;
let spec: WorkloadSpec;
const logFile = path.join(stateDir, 'logs', 'workload.log');
const extraStateDirs: string[] = [];

beforeAll(async () => {
  const app = path.join(stateDir, 'app-src');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'server.js'), SERVER_JS);
  const img = await buildImageFromDir(stateDir, 'counter', app);
  spec = { command: ['/usr/bin/node', '/app/server.js'], env: { GREETING: 'hi' }, rootfs: img.rootfs, imageDigest: img.digest, egress: [] };
  rt = createRuntime({ stateDir });
  await rt.init();
});

afterAll(async () => {
  await rt?.shutdown().catch(() => undefined);
  for (const d of [stateDir, ...extraStateDirs]) {
    await removeInstanceLeftovers({ stateDir: d });
    fs.rmSync(d, { recursive: true, force: true });
  }
});

describe('gVisor runtime', () => {
  it('boots a Node server in the image and serves HTTP through connect()', async () => {
    const slot = rt.slot(0);
    await rt.prepareWorker(slot);
    const h = await rt.boot(slot, spec, logFile);
    try {
      expect(h.sandboxId).toMatch(new RegExp(`^s${rt.tag}-[0-9a-f]{16}$`));
      expect(h.worker).toEqual(slot);
      expect(rt.isAlive(h)).toBe(true);
      await waitHttp(rt, slot);
      expect(await getJson<{ n: number }>(rt, slot, '/count')).toEqual({ n: 1 });
      expect(await getJson<{ n: number }>(rt, slot, '/count')).toEqual({ n: 2 });
      // The workload's stdout went to the log file (opened O_APPEND).
      expect(fs.readFileSync(logFile, 'utf8')).toContain('listening on 8080');
      // runsc knows it under this runtime's root.
      expect((await rt.list()).map((s) => s.sandboxId)).toContain(h.sandboxId);
      // One sandbox per slot.
      expect((await codeOf(rt.boot(slot, spec, logFile))).code).toBe(Code.FAILED_PRECONDITION);
    } finally {
      await rt.destroy(h.sandboxId);
    }
    expect((await rt.list()).map((s) => s.sandboxId)).not.toContain(h.sandboxId);
  });

  it('confines egress: no route out (fails fast), the hub has nothing listening', async () => {
    const slot = rt.slot(2);
    const h = await rt.boot(slot, spec, logFile);
    try {
      await waitHttp(rt, slot);
      const out = await getJson<ConnectResult>(rt, slot, '/connect?host=203.0.113.7&port=80');
      expect(out.connected).toBe(false);
      expect(['EHOSTUNREACH', 'ENETUNREACH']).toContain(out.code);
      const hub = await getJson<ConnectResult>(rt, slot, `/connect?host=${HUB_IP}&port=9`);
      expect(hub).toMatchObject({ connected: false, code: 'ECONNREFUSED' });
      // Another worker's sandbox address is not reachable either (no route between workers).
      const other = await getJson<ConnectResult>(rt, slot, `/connect?host=${rt.slot(0).ip}&port=8080`);
      expect(other.connected).toBe(false);
    } finally {
      await rt.destroy(h.sandboxId);
    }
  });

  it('checkpoints and restores onto a different worker slot: the counter continues and /tmp survives', async () => {
    const a = rt.slot(3);
    const b = rt.slot(4);
    expect(b.netns).not.toBe(a.netns);
    expect(b.ip).not.toBe(a.ip);
    const h = await rt.boot(a, spec, logFile);
    await waitHttp(rt, a);
    expect(await getJson<{ n: number }>(rt, a, '/count')).toEqual({ n: 1 });
    expect(await getJson<{ n: number }>(rt, a, '/count')).toEqual({ n: 2 });
    expect(await getText(rt, a, '/write?v=kept-across-restore')).toBe('written');

    const snap = path.join(stateDir, 'snapshots', 'one');
    const meta = await rt.checkpoint(h, snap, { imageDigest: spec.imageDigest, platform: rt.platform, runscVersion: rt.runscVersion });
    expect(meta.imageDigest).toBe(spec.imageDigest);
    expect(meta.platform).toBe('ptrace');
    expect(meta.runscVersion).toMatch(/^0\.0~20240729/);
    expect(meta.bytes).toBeGreaterThan(0);
    expect(fs.existsSync(path.join(snap, 'meta.json'))).toBe(true);
    expect(fs.readdirSync(path.dirname(snap))).toEqual(['one']); // no temp dir left behind
    expect(rt.isAlive(h)).toBe(false);
    // The old slot serves nothing any more.
    await expect(httpRequestVia(rt, a, 8080, { path: '/count', timeoutMs: 5000 })).rejects.toThrow();

    const h2 = await rt.restore(b, spec, snap, logFile);
    try {
      expect(h2.sandboxId).not.toBe(h.sandboxId);
      expect(h2.worker).toEqual(b);
      expect(rt.isAlive(h2)).toBe(true);
      expect(await getJson<{ n: number }>(rt, b, '/count')).toEqual({ n: 3 });
      expect(await getText(rt, b, '/read')).toBe('kept-across-restore');
      // Egress confinement holds in the new namespace too.
      const out = await getJson<ConnectResult>(rt, b, '/connect?host=203.0.113.7&port=80');
      expect(['EHOSTUNREACH', 'ENETUNREACH']).toContain(out.code);
      // The snapshot is reusable: it is still intact after a restore.
      await expect(readSnapshot(snap)).resolves.toMatchObject({ imageDigest: spec.imageDigest });
    } finally {
      await rt.destroy(h2.sandboxId);
    }
  });

  it('refuses broken or mismatched snapshots with a clear error and leaves nothing running', async () => {
    const slot = rt.slot(5);
    const h = await rt.boot(slot, spec, logFile);
    await waitHttp(rt, slot);
    const snap = path.join(stateDir, 'snapshots', 'two');
    await rt.checkpoint(h, snap, { imageDigest: spec.imageDigest, platform: 'ptrace', runscVersion: '' });
    const before = new Set((await rt.list()).map((s) => s.sandboxId));

    // Missing snapshot.
    const missing = await codeOf(rt.restore(slot, spec, path.join(stateDir, 'snapshots', 'nope'), logFile));
    expect(missing.code).toBe(Code.FAILED_PRECONDITION);
    expect(missing.message).toMatch(/does not exist/);

    // Image changed since the snapshot.
    const other = await codeOf(rt.restore(slot, { ...spec, imageDigest: `sha256:${'0'.repeat(64)}` }, snap, logFile));
    expect(other.code).toBe(Code.FAILED_PRECONDITION);
    expect(other.message).toMatch(/identical image/);

    // A truncated image file.
    const trunc = path.join(stateDir, 'snapshots', 'truncated');
    fs.cpSync(snap, trunc, { recursive: true });
    const img = path.join(trunc, 'checkpoint.img');
    fs.truncateSync(img, Math.floor(fs.statSync(img).size / 2));
    const t = await codeOf(rt.restore(slot, spec, trunc, logFile));
    expect(t.code).toBe(Code.FAILED_PRECONDITION);
    expect(t.message).toBe('snapshot truncated is unusable: checkpoint.img does not have the size its meta.json records (truncated or corrupt)');
    // Neither the host path nor file sizes appear in the error.
    expect(t.message).not.toContain(stateDir);
    expect(t.message).not.toMatch(/\d+ bytes/);

    // Truncated, with meta.json doctored to match: runsc itself refuses, and the runtime reports it
    // (never a silent cold boot).
    const meta = JSON.parse(fs.readFileSync(path.join(trunc, 'meta.json'), 'utf8'));
    meta.files['checkpoint.img'] = fs.statSync(img).size;
    fs.writeFileSync(path.join(trunc, 'meta.json'), JSON.stringify(meta));
    const r = await codeOf(rt.restore(slot, spec, trunc, logFile));
    expect(r.code).toBe(Code.INTERNAL);
    expect(r.message).toMatch(/restore/);

    // Corrupt meta.json.
    fs.writeFileSync(path.join(trunc, 'meta.json'), '{"format":');
    const c = await codeOf(rt.restore(slot, spec, trunc, logFile));
    expect(c.code).toBe(Code.FAILED_PRECONDITION);
    expect(c.message).toMatch(/meta\.json is corrupt/);

    // Nothing was left running, and the slot is usable: the good snapshot restores on it.
    expect((await rt.list()).filter((s) => !before.has(s.sandboxId))).toEqual([]);
    const h2 = await rt.restore(slot, spec, snap, logFile);
    try {
      expect(await getJson<{ n: number }>(rt, slot, '/count')).toEqual({ n: 1 });
    } finally {
      await rt.destroy(h2.sandboxId);
    }
  });

  it('notices a kill -9 of the sandbox process; destroy() cleans up', async () => {
    const slot = rt.slot(6);
    const h = await rt.boot(slot, spec, logFile);
    await waitHttp(rt, slot);
    expect(rt.isAlive(h)).toBe(true);
    process.kill(h.pid, 'SIGKILL');
    for (let i = 0; i < 500 && rt.isAlive(h); i++) await new Promise((r) => setTimeout(r, 10));
    expect(rt.isAlive(h)).toBe(false);
    await rt.destroy(h.sandboxId);
    await rt.destroy(h.sandboxId); // idempotent
    expect((await rt.list()).map((s) => s.sandboxId)).not.toContain(h.sandboxId);
    expect(fs.existsSync(path.join(stateDir, 'bundles', h.sandboxId))).toBe(false);
    // The slot takes a new sandbox (the address runsc took off the veth is put back).
    const h2 = await rt.boot(slot, spec, logFile);
    try {
      await waitHttp(rt, slot);
    } finally {
      await rt.destroy(h2.sandboxId);
    }
  });

  it('lets a sandbox reach an allowed host loopback port through the hub, and only that sandbox', async () => {
    const host = net.createServer((s) => s.end('host-says-hi'));
    await new Promise<void>((r) => host.listen(0, '127.0.0.1', () => r()));
    const port = (host.address() as net.AddressInfo).port;
    const allowed = rt.slot(7);
    const denied = rt.slot(8);
    const ha = await rt.boot(allowed, { ...spec, egress: [{ host: '127.0.0.1', port }] }, logFile);
    const hd = await rt.boot(denied, spec, logFile);
    try {
      await waitHttp(rt, allowed);
      await waitHttp(rt, denied);
      expect(rt.egressAddress({ host: '127.0.0.1', port })).toBe(`${HUB_IP}:${port}`);
      const ok = await getJson<ConnectResult>(rt, allowed, `/connect?host=${HUB_IP}&port=${port}`);
      expect(ok).toMatchObject({ connected: true, data: 'host-says-hi' });
      const no = await getJson<ConnectResult>(rt, denied, `/connect?host=${HUB_IP}&port=${port}`);
      expect(no.data).toBe('');
      expect(no.code === 'ECONNREFUSED' || no.code === 'ECONNRESET').toBe(true);
      // A port that is not allowed for anyone: nothing listens on the hub.
      const other = await getJson<ConnectResult>(rt, allowed, `/connect?host=${HUB_IP}&port=${port === 65535 ? 65534 : port + 1}`);
      expect(other).toMatchObject({ connected: false, code: 'ECONNREFUSED' });
    } finally {
      await rt.destroy(ha.sandboxId);
      await rt.destroy(hd.sandboxId);
      host.close();
    }
    // Revoked with the sandbox: the hub stops listening on that port.
    const again = await rt.boot(allowed, spec, logFile);
    try {
      await waitHttp(rt, allowed);
      const gone = await getJson<ConnectResult>(rt, allowed, `/connect?host=${HUB_IP}&port=${port}`);
      expect(gone).toMatchObject({ connected: false, code: 'ECONNREFUSED' });
    } finally {
      await rt.destroy(again.sandboxId);
    }
  });

  it('enforces memoryLimitBytes (the sandbox is OOM-killed past it) and removes its cgroups', async () => {
    const slot = rt.slot(11);
    const h = await rt.boot(slot, { ...spec, memoryLimitBytes: 128 * 1024 * 1024 }, logFile);
    await waitHttp(rt, slot);
    expect(await getText(rt, slot, '/alloc?mb=16')).toBe('allocated'); // well under the limit
    expect(rt.isAlive(h)).toBe(true);
    const big = httpRequestVia(rt, slot, 8080, { path: '/alloc?mb=400', timeoutMs: 60_000 }).then(
      (r) => r.text,
      (e: Error) => e,
    );
    for (let i = 0; i < 1000 && rt.isAlive(h); i++) await new Promise((r) => setTimeout(r, 20));
    expect(rt.isAlive(h)).toBe(false);
    await rt.destroy(h.sandboxId);
    // destroy() closes connections that were still open to the dead sandbox.
    const res = await big;
    expect(res).toBeInstanceOf(Error);
    expect(String(res)).not.toMatch(/timed out/);
    const leftovers = (dir: string): string[] => {
      const out: string[] = [];
      const walk = (d: string, depth: number) => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
          if (!e.isDirectory()) continue;
          const p = path.join(d, e.name);
          if (p.includes(h.sandboxId)) out.push(p);
          else if (depth < 4) walk(p, depth + 1);
        }
      };
      walk(dir, 0);
      return out;
    };
    expect(leftovers('/sys/fs/cgroup')).toEqual([]);
  });

  it('rejects bad input with INVALID_ARGUMENT', async () => {
    const slot = rt.slot(9);
    expect((await codeOf(rt.boot({ ...slot, ip: '10.77.9.9' }, spec, logFile))).code).toBe(Code.INVALID_ARGUMENT);
    expect((await codeOf(rt.boot({ ...slot, netns: 'someone-elses' }, spec, logFile))).code).toBe(Code.INVALID_ARGUMENT);
    expect((await codeOf(rt.boot(slot, { ...spec, command: [] }, logFile))).code).toBe(Code.INVALID_ARGUMENT);
    expect((await codeOf(rt.boot(slot, { ...spec, imageDigest: 'latest' }, logFile))).code).toBe(Code.INVALID_ARGUMENT);
    const eg = await codeOf(rt.boot(slot, { ...spec, egress: [{ host: '8.8.8.8' as '127.0.0.1', port: 53 }] }, logFile));
    expect(eg.code).toBe(Code.INVALID_ARGUMENT);
    expect(eg.message).toMatch(/only host "127\.0\.0\.1"/);
    expect(() => rt.slot(-1)).toThrow(/slot index/);
    expect((await codeOf(rt.connect(slot, 0))).code).toBe(Code.INVALID_ARGUMENT);
    expect((await codeOf(rt.destroy('not-an-id'))).code).toBe(Code.INVALID_ARGUMENT);
    expect(() => createRuntime({ stateDir: 'relative/dir' })).toThrow(/absolute/);
    expect((await codeOf(rt.boot(slot, { ...spec, memoryLimitBytes: 1000 }, logFile))).code).toBe(Code.INVALID_ARGUMENT);
  });

  it('init() of the same state dir removes a crashed run, or adopts its live sandboxes when asked', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-rt2-'));
    extraStateDirs.push(dir);
    const first = createRuntime({ stateDir: dir });
    await first.init();
    const slot = first.slot(0);
    const h = await first.boot(slot, spec, path.join(dir, 'w.log'));
    await waitHttp(first, slot);
    expect(await getJson<{ n: number }>(first, slot, '/count')).toEqual({ n: 1 });
    // "Crash": the first runtime is abandoned without shutdown(). A new one adopts the live sandbox.
    const second = createRuntime({ stateDir: dir, adoptLeftovers: true });
    await second.init();
    expect((await second.list()).map((s) => s.sandboxId)).toEqual([h.sandboxId]);
    expect(second.isAlive(h)).toBe(true);
    expect(await getJson<{ n: number }>(second, slot, '/count')).toEqual({ n: 2 });
    // A third one without adoption removes everything of the crashed runs.
    const third = createRuntime({ stateDir: dir });
    await third.init();
    expect(await third.list()).toEqual([]);
    expect(third.isAlive(h)).toBe(false);
    expect((await listNetns()).filter((n) => n.startsWith(`sbx-${third.tag}-`))).toEqual([`sbx-${third.tag}-hub`]);
    await third.shutdown();
    expect(runscPidsOf(path.join(dir, 'runsc-root'))).toEqual([]);
  });

  it('shutdown() leaves no network namespace and no runsc process of the instance', async () => {
    const slot = rt.slot(10);
    const h = await rt.boot(slot, spec, logFile);
    await waitHttp(rt, slot);
    const fwdPid = Number(fs.readFileSync(path.join(stateDir, 'run', 'forwarder.pid'), 'utf8'));
    expect((await listNetns()).filter((n) => n.startsWith(`sbx-${rt.tag}-`)).length).toBeGreaterThan(1);
    await rt.shutdown();
    expect((await listNetns()).filter((n) => n.startsWith(`sbx-${rt.tag}-`))).toEqual([]);
    expect(runscPidsOf(path.join(stateDir, 'runsc-root'))).toEqual([]);
    expect(fs.existsSync(`/proc/${h.pid}`) && !fs.readFileSync(`/proc/${h.pid}/stat`, 'utf8').includes(') Z')).toBe(false);
    expect(fs.existsSync(`/proc/${fwdPid}`) && fs.readFileSync(`/proc/${fwdPid}/cmdline`, 'utf8').includes('forwarder.mjs')).toBe(false);
    // The instance's cgroup parent (created for memory limits) is gone too.
    const cg = fs.readdirSync('/sys/fs/cgroup').flatMap((c) => {
      const d = path.join('/sys/fs/cgroup', c, `substrate-${rt.tag}`);
      return fs.existsSync(d) ? [d] : [];
    });
    expect(cg).toEqual([]);
  });
});
