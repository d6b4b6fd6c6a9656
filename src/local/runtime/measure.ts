// Measures the gVisor runtime on this machine for an idle Node HTTP server in the default image:
// boot → first HTTP 200, checkpoint time, snapshot size, restore (onto another slot) → first HTTP 200.
// Median of N runs per compression mode.   Usage: npx tsx src/local/runtime/measure.ts [runs=5]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setLogLevel } from '../../common/log.js';
import { ensureDefaultImage } from '../images.js';
import { createRuntime, removeInstanceLeftovers, type Compression } from './gvisor.js';
import { httpRequestVia } from './http.js';
import type { WorkerSlot, WorkloadSpec } from './types.js';
import type { GvisorRuntime } from './gvisor.js';

const SERVER = `let n=0;require('http').createServer((q,s)=>s.end(String(++n))).listen(8080)`;

async function first200(rt: GvisorRuntime, slot: WorkerSlot): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    try {
      const r = await httpRequestVia(rt, slot, 8080, { timeoutMs: 5000 });
      if (r.status === 200) return;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('no HTTP 200 within 30 s');
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

async function main(): Promise<void> {
  setLogLevel('warn');
  const runs = Number(process.argv[2] ?? 5);
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-measure-'));
  try {
    const img = await ensureDefaultImage(stateDir);
    const spec: WorkloadSpec = { command: ['/usr/bin/node', '-e', SERVER], env: {}, rootfs: img.rootfs, imageDigest: img.digest, egress: [] };
    const results: Record<string, Record<string, number>> = {};
    for (const compression of ['none', 'flate-best-speed'] as Compression[]) {
      const rt = createRuntime({ stateDir, compression });
      await rt.init();
      const boot: number[] = [];
      const ckpt: number[] = [];
      const size: number[] = [];
      const restore: number[] = [];
      for (let i = 0; i < runs; i++) {
        const a = rt.slot(0);
        const b = rt.slot(1);
        let t = performance.now();
        const h = await rt.boot(a, spec, path.join(stateDir, 'w.log'));
        await first200(rt, a);
        boot.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, 300)); // idle
        const snap = path.join(stateDir, 'snap', `${compression}-${i}`);
        t = performance.now();
        const meta = await rt.checkpoint(h, snap, { imageDigest: img.digest, platform: rt.platform, runscVersion: rt.runscVersion });
        ckpt.push(performance.now() - t);
        size.push(meta.bytes);
        t = performance.now();
        const h2 = await rt.restore(b, spec, snap, path.join(stateDir, 'w.log'));
        await first200(rt, b);
        restore.push(performance.now() - t);
        await rt.destroy(h2.sandboxId);
      }
      await rt.shutdown();
      results[compression] = {
        'boot→200 ms': Math.round(median(boot)),
        'checkpoint ms': Math.round(median(ckpt)),
        'image MB': Number((median(size) / 1e6).toFixed(1)),
        'restore→200 ms': Math.round(median(restore)),
      };
      process.stderr.write(`${compression}: boot ${boot.map(Math.round)} ckpt ${ckpt.map(Math.round)} restore ${restore.map(Math.round)}\n`);
    }
    process.stdout.write(`load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}; median of ${runs}\n`);
    console.table(results);
  } finally {
    await removeInstanceLeftovers({ stateDir });
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
}

await main();
