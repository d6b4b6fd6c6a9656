// Names and addresses of one runtime instance. Everything is derived from the state directory, so a crashed
// instance's leftovers can be found again from the same directory.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Hub-side address, the same for every worker (a /32 on the hub's lo). Sandboxes reach it on-link. */
export const HUB_IP = '10.77.0.1';
/** Highest slot index: sandbox addresses are 10.77.0.2 .. 10.77.255.254 (/32 each). */
export const MAX_SLOT_INDEX = 65_532;

export function instanceTagOf(stateDir: string): string {
  return createHash('sha256').update(path.resolve(stateDir)).digest('hex').slice(0, 6);
}

export interface InstancePaths {
  stateDir: string;
  tag: string;
  /** Prefix of every netns this instance creates. */
  netnsPrefix: string;
  hubNetns: string;
  runscRoot: string;
  bundles: string;
  runDir: string;
  procsysScratch: string;
  forwarderSock: string;
  egressSock: string;
  forwarderPidFile: string;
  forwarderLog: string;
  cgroupParent: string;
}

export function instancePaths(stateDir: string, tag = instanceTagOf(stateDir)): InstancePaths {
  const s = path.resolve(stateDir);
  const runDir = path.join(s, 'run');
  return {
    stateDir: s,
    tag,
    netnsPrefix: `sbx-${tag}-`,
    hubNetns: `sbx-${tag}-hub`,
    runscRoot: path.join(s, 'runsc-root'),
    bundles: path.join(s, 'bundles'),
    runDir,
    procsysScratch: path.join(runDir, '.procsys'),
    forwarderSock: path.join(runDir, 'fwd.sock'),
    egressSock: path.join(runDir, 'egress.sock'),
    forwarderPidFile: path.join(runDir, 'forwarder.pid'),
    forwarderLog: path.join(runDir, 'forwarder.log'),
    cgroupParent: `substrate-${tag}`,
  };
}

export function workerNetns(tag: string, index: number): string {
  return `sbx-${tag}-w${index}`;
}

/** Hub-side veth name (≤ 15 chars: 3 + 6 + up to 5 digits). The sandbox side is always `eth0`. */
export function hubVeth(tag: string, index: number): string {
  return `sbh${tag}${index}`;
}

export function slotIp(index: number): string {
  const n = index + 2;
  return `10.77.${n >> 8}.${n & 255}`;
}

/** Project root (the directory with this project's package.json), for .tools/runsc and forwarder.mjs. */
export function projectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if (JSON.parse(readFileSync(pj, 'utf8')).name === 'openshell-driver-substrate') return dir;
      } catch {
        /* keep walking */
      }
    }
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

/** runsc binary: explicit option, else $SUBSTRATE_RUNSC, else <project>/.tools/runsc. */
export function defaultRunscPath(): string {
  return process.env.SUBSTRATE_RUNSC || path.join(projectRoot(), '.tools', 'runsc');
}

export function forwarderScript(): string {
  const sibling = fileURLToPath(new URL('./forwarder.mjs', import.meta.url));
  if (existsSync(sibling)) return sibling;
  return path.join(projectRoot(), 'src', 'local', 'runtime', 'forwarder.mjs');
}

export const REQUIRED_RUNSC_VERSION = '0.0~20240729';
