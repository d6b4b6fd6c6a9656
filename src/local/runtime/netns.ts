// Network namespaces of one runtime instance. Layout (nothing in the root netns):
//   hub netns  sbx-<tag>-hub: lo has 127.0.0.1 and HUB_IP/32; one veth `sbh<tag><i>` per worker with a /32
//              route to that worker's sandbox address. No forwarding between workers (ip_forward stays 0).
//   worker     sbx-<tag>-w<i>: lo up, `eth0` (peer of sbh<tag><i>) with <slot ip>/32 and a single on-link
//              route to HUB_IP/32. No default route, so any other destination fails fast with EHOSTUNREACH.
// The veth pair is created directly inside the two namespaces, so it never appears in the root netns.
import { existsSync } from 'node:fs';
import { run, runOk } from './exec.js';
import { HUB_IP, hubVeth } from './paths.js';

export async function listNetns(): Promise<string[]> {
  const r = await run('ip', ['netns', 'list']);
  if (r.code !== 0) return [];
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((n): n is string => !!n);
}

export async function netnsExists(name: string): Promise<boolean> {
  return existsSync(`/run/netns/${name}`) || (await listNetns()).includes(name);
}

async function ipq(args: string[]): Promise<boolean> {
  return (await run('ip', args)).code === 0;
}

export async function ensureHub(hub: string): Promise<void> {
  if (!(await netnsExists(hub))) {
    const r = await run('ip', ['netns', 'add', hub]);
    if (r.code !== 0 && !/File exists/.test(r.stderr)) throw new Error(`ip netns add ${hub} failed: ${r.stderr.trim()}`);
  }
  await runOk('ip', ['-n', hub, 'link', 'set', 'lo', 'up']);
  await runOk('ip', ['-n', hub, 'addr', 'replace', `${HUB_IP}/32`, 'dev', 'lo']);
}

async function ipBatch(ns: string, lines: string[]): Promise<void> {
  const r = await run('ip', ['-n', ns, '-batch', '-'], { input: lines.join('\n') + '\n' });
  if (r.code !== 0) throw new Error(`ip -n ${ns} -batch failed: ${(r.stderr || r.stdout).trim()}`);
}

/** Creates (or repairs) a worker namespace wired to the hub. Idempotent. */
export async function ensureWorker(hub: string, tag: string, index: number, netns: string, ip: string): Promise<void> {
  const veth = hubVeth(tag, index);
  const create = `link add ${veth} netns ${hub} type veth peer name eth0 netns ${netns}`;
  if (!existsSync(`/run/netns/${netns}`)) {
    // Fresh namespace: create it and its veth pair in one ip call.
    const r = await run('ip', ['-batch', '-'], { input: `netns add ${netns}\n${create}\n` });
    if (r.code !== 0) throw new Error(`creating worker namespace ${netns} failed: ${(r.stderr || r.stdout).trim()}`);
  } else if (!(await ipq(['-n', netns, 'link', 'show', 'eth0']))) {
    // A veth pair lives or dies as a whole (deleting the hub netns destroys both ends), so a missing eth0
    // means the pair is gone: re-create it.
    await runOk('ip', create.split(' '));
  }
  await ipBatch(hub, [`link set ${veth} up`, `route replace ${ip}/32 dev ${veth} scope link`]);
  await readdAddress(netns, ip);
}

/**
 * runsc's netstack takes the address (and with it the route) off the veth when a sandbox starts, so this
 * runs before every run/restore in the namespace.
 */
export async function readdAddress(netns: string, ip: string): Promise<void> {
  await ipBatch(netns, ['link set lo up', 'link set eth0 up', `addr replace ${ip}/32 dev eth0`, `route replace ${HUB_IP}/32 dev eth0 scope link`]);
}

/** True when the worker namespace and both ends of its veth exist. */
export function workerReady(netns: string): boolean {
  return existsSync(`/run/netns/${netns}`);
}

export async function deleteNetns(name: string): Promise<void> {
  const r = await run('ip', ['netns', 'del', name]);
  if (r.code !== 0 && !/No such file|not found|does not exist/i.test(r.stderr)) {
    throw new Error(`ip netns del ${name} failed: ${r.stderr.trim()}`);
  }
}
