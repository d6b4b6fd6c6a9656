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

/**
 * Directories of an image root that each actor gets writable, as its own tmpfs (the root filesystem is
 * read-only): the OpenShell launch files the bootstrap agent writes (src/sandbox/bootstrap-agent.mjs). A tmpfs
 * lives in the sandbox's memory, so a checkpoint carries the actor's own files and a golden snapshot, taken
 * before any delivery, carries none. Mounted only where the image has the directory (images.ts creates both).
 */
export const LAUNCH_WRITABLE_DIRS: readonly string[] = ['.openshell', 'etc/openshell'];

/** Where the bootstrap agent's files go in every local image (the agent imports its sibling). */
export const BOOTSTRAP_AGENT_DIR = 'opt/openshell-substrate';
const BOOTSTRAP_AGENT_FILES = ['bootstrap-agent.mjs', 'launch-auth.mjs'];

/** The bootstrap agent's sources (src/sandbox/), copied into every local image under BOOTSTRAP_AGENT_DIR. */
export function bootstrapAgentFiles(): Array<{ rel: string; path: string }> {
  return BOOTSTRAP_AGENT_FILES.map((name) => {
    const beside = fileURLToPath(new URL(`../../sandbox/${name}`, import.meta.url));
    return { rel: `${BOOTSTRAP_AGENT_DIR}/${name}`, path: existsSync(beside) ? beside : path.join(projectRoot(), 'src', 'sandbox', name) };
  });
}

export const REQUIRED_RUNSC_VERSION = '0.0~20240729';
