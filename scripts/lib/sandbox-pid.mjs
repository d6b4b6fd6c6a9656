// The runsc sandbox process of a local Substrate worker, found the way an operator would: `runsc list` under the
// instance's runsc root, each sandbox's OCI bundle, and the worker's network namespace. A local worker named
// `<pool>-<idx>` (WorkerAssignment.worker_pod, ListWorkers) owns slot <idx>, whose namespace is `sbx-<tag>-w<idx>`
// (<tag>: the first 6 hex digits of SHA-256 of the absolute state directory; src/local/runtime/paths.ts). The
// sandbox whose bundle joins that namespace is the one hosting the worker's actor. Used by the soak (scripts/soak.ts)
// and the helpdesk's beat 9 (scripts/helpdesk.mjs) to kill -9 exactly that process. Plain JavaScript so both can
// import it; nothing here changes anything.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnOptions } from '../../src/common/child-env.mjs';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The runsc binary the local Substrate uses: $SUBSTRATE_RUNSC, else <repo>/.tools/runsc. */
export function runscBinary() {
  return process.env.SUBSTRATE_RUNSC || path.join(REPO_ROOT, '.tools', 'runsc');
}

/**
 * Names of one local Substrate instance, derived from its state directory (as src/local/runtime/paths.ts does).
 * @param {string} stateDir
 */
export function instanceOf(stateDir) {
  const abs = path.resolve(stateDir);
  const tag = createHash('sha256').update(abs).digest('hex').slice(0, 6);
  return { stateDir: abs, tag, runscRoot: path.join(abs, 'runsc-root'), bundles: path.join(abs, 'bundles'), netnsPrefix: `sbx-${tag}-` };
}

/** The slot index of a local worker name (`default-3`, `helpdesk-pool-12` → 3, 12); undefined for another shape. */
export function slotOfWorker(workerName) {
  const m = /-(\d+)$/.exec(workerName ?? '');
  return m ? Number(m[1]) : undefined;
}

function pidAlive(pid) {
  if (!pid || pid <= 0) return false;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * `runsc --root=<root> list -format=json` of the instance: [{id, pid, status, bundle}].
 * @param {string} stateDir
 * @returns {Promise<Array<{id: string, pid: number, status: string, bundle: string}>>}
 */
export function runscSandboxes(stateDir) {
  const inst = instanceOf(stateDir);
  if (!fs.existsSync(inst.runscRoot)) return Promise.resolve([]);
  return new Promise((resolve, reject) => {
    execFile(runscBinary(), [`--root=${inst.runscRoot}`, 'list', '-format=json'], spawnOptions({ timeout: 30_000, encoding: 'utf8' }), (err, stdout, stderr) => {
      if (err) return reject(new Error(`runsc list under ${inst.runscRoot} failed: ${String(stderr || err.message).trim().split('\n').slice(-2).join(' | ')}`));
      try {
        const list = JSON.parse(String(stdout).trim() || 'null') ?? [];
        resolve(list.map((c) => ({ id: c.id, pid: c.pid, status: c.status, bundle: c.bundle || path.join(inst.bundles, c.id) })));
      } catch (e) {
        reject(new Error(`runsc list printed no JSON: ${e.message}`));
      }
    });
  });
}

/** The network namespace a bundle's sandbox joins (its name), or ''. */
function netnsOfBundle(bundle) {
  try {
    const cfg = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'));
    const ns = (cfg?.linux?.namespaces ?? []).find((n) => n.type === 'network');
    return ns?.path ? path.basename(ns.path) : '';
  } catch {
    return '';
  }
}

/**
 * The live sandbox process of a local worker: the running runsc sandbox whose bundle joins the worker's network
 * namespace. Undefined when none runs there (free worker, or the sandbox already died).
 * @param {string} stateDir
 * @param {string} workerName  `<pool>-<idx>` as WorkerAssignment.worker_pod / ListWorkers name it
 * @returns {Promise<{sandboxId: string, pid: number, netns: string} | undefined>}
 */
export async function sandboxOfWorker(stateDir, workerName) {
  const idx = slotOfWorker(workerName);
  if (idx === undefined) return undefined;
  const netns = `${instanceOf(stateDir).netnsPrefix}w${idx}`;
  const hits = [];
  for (const s of await runscSandboxes(stateDir)) {
    if (s.status !== 'running' || !pidAlive(s.pid)) continue;
    if (netnsOfBundle(s.bundle) === netns) hits.push({ sandboxId: s.id, pid: s.pid, netns });
  }
  // One slot hosts one sandbox; two would be a leak worth failing on rather than guessing.
  if (hits.length > 1) throw new Error(`worker ${workerName}: ${hits.length} running sandboxes join ${netns} (${hits.map((h) => h.sandboxId).join(', ')})`);
  return hits[0];
}
