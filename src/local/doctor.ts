// `substrate-driver local doctor`: checks that this machine can run the local Substrate's gVisor runtime and
// prints the exact remedy for each failure. Every check is real (namespaces and a sandbox are created and
// removed again); nothing is left behind.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { messageOf } from '../common/errors.js';
import { childEnv, run } from './runtime/exec.js';
import { REQUIRED_RUNSC_VERSION, defaultRunscPath, instancePaths } from './runtime/paths.js';
import { MASK_SCRIPT, cgroupLimitSupport, runscVersionOf } from './runtime/gvisor.js';

export interface DoctorResult {
  check: string;
  ok: boolean;
  detail: string;
  remedy?: string;
}

export interface DoctorOptions {
  stateDir: string;
  runscPath?: string;
  /** Free space required in the state dir (bytes); default 2 GiB. */
  minFreeBytes?: number;
}

const INSTALL = 'bash scripts/install-runsc.sh';

export async function runDoctor(opts: DoctorOptions): Promise<DoctorResult[]> {
  const out: DoctorResult[] = [];
  const add = (check: string, ok: boolean, detail: string, remedy?: string) => out.push(ok ? { check, ok, detail } : { check, ok, detail, remedy });
  const runsc = opts.runscPath ?? defaultRunscPath();
  const stateDir = path.resolve(opts.stateDir);
  const isRoot = process.getuid?.() === 0;

  // runsc
  let runscOk = false;
  try {
    const v = await runscVersionOf(runsc);
    runscOk = true;
    add('runsc', true, `${runsc} is runsc ${v}`);
  } catch (e) {
    add('runsc', false, messageOf(e), `${INSTALL}   (fetches runsc ${REQUIRED_RUNSC_VERSION} from Debian trixie into .tools/runsc; or set SUBSTRATE_RUNSC)`);
  }

  add('root', isRoot, isRoot ? 'running as root' : `running as uid ${process.getuid?.()}; network namespaces and runsc need root`, 'run the command as root (sudo -E ...)');

  const ip = await run('ip', ['-V']).catch(() => undefined);
  add('ip', !!ip && ip.code === 0, ip?.code === 0 ? ip.stdout.trim() : "'ip' (iproute2) not found", 'apt-get install -y iproute2   (or: bash scripts/install-runsc.sh, which installs it when missing)');

  const unshare = await run('unshare', ['--version']).catch(() => undefined);
  add('unshare', !!unshare && unshare.code === 0, unshare?.code === 0 ? unshare.stdout.trim() : "'unshare' (util-linux) not found", 'apt-get install -y util-linux');

  // Resource limits: which ones this host's cgroups enforce.
  const cg = cgroupLimitSupport();
  const enforced = (['memory', 'cpu', 'pids'] as const).filter((c) => cg[c]);
  const missing = (['memory', 'cpu', 'pids'] as const).filter((c) => !cg[c]);
  add(
    'resource limits',
    missing.length === 0,
    missing.length === 0
      ? `memory, cpu and pids limits are enforced per actor (cgroup ${cg.version}); /tmp size and log rotation always`
      : `cgroup ${cg.version}: enforced ${enforced.join(', ') || 'none'}; NOT enforced: ${missing.join(', ')} (actors run without those limits); /tmp size and log rotation always`,
    'mount the missing cgroup controllers (cgroup v2: enable them in cgroup.subtree_control; v1: mount each hierarchy under /sys/fs/cgroup)',
  );

  // State dir: exists/creatable, socket paths short enough, free space.
  let stateOk = false;
  try {
    await fsp.mkdir(stateDir, { recursive: true, mode: 0o700 });
    const p = instancePaths(stateDir);
    const longest = Math.max(Buffer.byteLength(p.forwarderSock), Buffer.byteLength(p.egressSock));
    if (longest > 100) add('state dir', false, `${stateDir}: Unix socket paths under it would be ${longest} bytes (limit 100)`, 'use a shorter --state-dir path');
    else {
      stateOk = true;
      add('state dir', true, `${stateDir} is usable`);
    }
  } catch (e) {
    add('state dir', false, `cannot create ${stateDir}: ${messageOf(e)}`, 'pick a writable --state-dir');
  }
  try {
    const sf = await fsp.statfs(fs.existsSync(stateDir) ? stateDir : path.dirname(stateDir));
    const free = sf.bavail * sf.bsize;
    const min = opts.minFreeBytes ?? 2 * 1024 ** 3;
    add('disk space', free >= min, `${(free / 1024 ** 3).toFixed(1)} GiB free in ${stateDir} (need ${(min / 1024 ** 3).toFixed(1)} GiB for images and snapshots)`, `free space on that filesystem or use another --state-dir`);
  } catch (e) {
    add('disk space', false, `cannot stat ${stateDir}: ${messageOf(e)}`, 'pick an existing, writable --state-dir');
  }

  if (!isRoot || !ip || ip.code !== 0) {
    add('network namespaces', false, 'skipped: needs root and ip', 'fix the checks above first');
    add('/proc/sys/net masking', false, 'skipped: needs root', 'fix the checks above first');
    add('sandbox', false, 'skipped: needs root', 'fix the checks above first');
    return out;
  }

  // netns + veth, created and removed again.
  const ns = `sbx-doctor-${process.pid}-${randomBytes(2).toString('hex')}`;
  try {
    const steps: string[][] = [
      ['netns', 'add', ns],
      ['-n', ns, 'link', 'set', 'lo', 'up'],
      ['-n', ns, 'link', 'add', 'dtest0', 'type', 'veth', 'peer', 'name', 'dtest1'],
      ['-n', ns, 'addr', 'add', '10.77.0.1/32', 'dev', 'dtest0'],
    ];
    let failed = '';
    for (const s of steps) {
      const r = await run('ip', s);
      if (r.code !== 0) {
        failed = `ip ${s.join(' ')}: ${r.stderr.trim()}`;
        break;
      }
    }
    add('network namespaces', !failed, failed || 'netns + veth pair + address inside a namespace work', 'the kernel needs network namespaces and veth (CONFIG_NET_NS, CONFIG_VETH); run as root, outside a restricted container');
  } finally {
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  }

  // /proc/sys/net masking (runsc's root-netns check) in a private mount namespace.
  const scratch = stateOk ? path.join(stateDir, 'run', `.doctor-${randomBytes(3).toString('hex')}`) : fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-doctor-'));
  await fsp.mkdir(scratch, { recursive: true });
  try {
    const r = await run('unshare', ['-m', '--propagation', 'private', '/bin/sh', '-ec', MASK_SCRIPT, '/bin/sh', '-c', 'test ! -e /proc/sys/net/core/rmem_default && test -e /proc/sys/vm/mmap_min_addr && echo masked'], {
      env: childEnv({ set: { SBX_PROCSYS: scratch } }),
      timeoutMs: 15_000,
    });
    const ok = r.code === 0 && r.stdout.includes('masked');
    add('/proc/sys/net masking', ok, ok ? '/proc/sys/net hidden, /proc/sys/{kernel,vm,fs} kept in a private mount namespace' : `failed: ${(r.stderr || r.stdout).trim()}`, 'needs root and mount namespaces (unshare -m); on kernels where this fails runsc refuses --network=sandbox in a user-made netns');
  } finally {
    await fsp.rm(scratch, { recursive: true, force: true });
  }

  // A real sandbox on the ptrace platform (no network).
  if (!runscOk) {
    add('sandbox', false, 'skipped: runsc missing or the wrong version', INSTALL);
  } else {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sbx-doctor-root-'));
    try {
      const r = await run(runsc, [`--root=${root}`, '--platform=ptrace', '--network=none', '--ignore-cgroups', 'do', 'true'], { timeoutMs: 60_000 });
      add(
        'sandbox',
        r.code === 0,
        r.code === 0 ? 'runsc --platform=ptrace ran a sandbox (do true)' : `runsc do true failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`,
        'ptrace must be allowed (kernel.yama.ptrace_scope ≤ 1, no seccomp policy blocking ptrace); rerun with --debug-log to see why',
      );
    } finally {
      await fsp.rm(root, { recursive: true, force: true });
    }
  }
  const scope = await fsp.readFile('/proc/sys/kernel/yama/ptrace_scope', 'utf8').catch(() => '');
  if (scope.trim() !== '') {
    const v = Number(scope.trim());
    add('ptrace', v <= 1, `kernel.yama.ptrace_scope = ${v}`, 'sysctl -w kernel.yama.ptrace_scope=1');
  } else {
    add('ptrace', true, 'no Yama ptrace restriction on this kernel');
  }
  return out;
}
