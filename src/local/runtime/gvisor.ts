// The gVisor (runsc 0.0~20240729) implementation of the local Substrate's Runtime contract.
// Recipe and the reasons behind each flag: /work/shared/reference/gvisor-local.md (§0 wrapper, §2 netns,
// §3 C/R, §6 failure modes). In short:
//   * `--platform=ptrace --net-disconnect-ok --network=sandbox --overlay2=none`; root read-only, /tmp tmpfs
//     (tmpfs contents are part of the checkpoint image).
//   * one netns per worker slot, wired by a veth to one hub netns per runtime instance (see netns.ts);
//     run/restore go through an `unshare -m` wrapper that hides /proc/sys/net (runsc's isRootNS() check);
//     the sandbox address is re-added before every run/restore (runsc takes it off the veth).
//   * the host reaches sandboxes through forwarder.mjs, a process in the hub netns on a Unix socket.
//   * liveness by PID of the runsc sandbox process (runsc's state is stale after a kill -9); cleanup by
//     `runsc delete --force`.
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net, { type Socket } from 'node:net';
import path from 'node:path';
import { ApiError, Code, failedPrecondition, internal, invalid, unavailable } from '../../common/errors.js';
import { logger } from '../../common/log.js';
import { childEnv, pidAlive, procCmdline, procStat, run, sleep, spawnToFd } from './exec.js';
import { spawnOptions } from '../../common/child-env.mjs';
import { deleteNetns, ensureHub, ensureWorker, listNetns, readdAddress, workerReady } from './netns.js';
import {
  HUB_IP,
  MAX_SLOT_INDEX,
  REQUIRED_RUNSC_VERSION,
  defaultRunscPath,
  LAUNCH_WRITABLE_DIRS,
  forwarderScript,
  instancePaths,
  slotIp,
  workerNetns,
  type InstancePaths,
} from './paths.js';
import type { EgressRule, Runtime, SandboxHandle, SnapshotMeta, WorkerSlot, WorkloadSpec } from './types.js';

const log = logger('local.runtime');

export type Platform = 'ptrace' | 'systrap';
export type Compression = 'none' | 'flate-best-speed';

export interface RuntimeOptions {
  /** Absolute directory for this runtime instance (runsc root, bundles, sockets). */
  stateDir: string;
  /** runsc binary; default $SUBSTRATE_RUNSC, else <project>/.tools/runsc. */
  runscPath?: string;
  /** gVisor platform; default 'ptrace' (systrap burns ~7 % of a core per idle sandbox on this VM). */
  platform?: Platform;
  /** Checkpoint image compression; default 'none' (see measurements in the runtime report). */
  compression?: Compression;
  /**
   * Keep sandboxes that are still alive from a previous run of this instance (the caller adopts them by
   * sandboxId, see list()); dead ones are removed either way. Default false: init() removes all leftovers.
   */
  adoptLeftovers?: boolean;
  /** Wait after `restore -detach` before the liveness check (ms); default 0 (the caller probes readiness next). */
  restoreSettleMs?: number;
  /** Node binary for the hub forwarder; default process.execPath. */
  nodePath?: string;
}

/** What the runtime remembers about a sandbox it started (also persisted as <bundle>/sandbox.json). */
interface SandboxRecord {
  sandboxId: string;
  slot: WorkerSlot;
  pid: number;
  startTime?: string;
  imageDigest: string;
  egress: number[];
  cgroup: boolean;
}

interface SnapshotFile {
  format: string;
  imageDigest: string;
  platform: string;
  runscVersion: string;
  createdAt: string;
  bytes: number;
  compression: Compression;
  files: Record<string, number>;
}

/** How long a sandbox's network stack is given to take the resets of its connections before a checkpoint. */
const CHECKPOINT_RESET_SETTLE_MS = 50;
const SNAPSHOT_FORMAT = 'substrate-gvisor-snapshot/v1';
const SANDBOX_ID_RE = /^s[0-9a-f]{6}-[0-9a-f]{16}$/;
/** Runs runsc in a private mount namespace with /proc/sys/net hidden (see gvisor-local.md §0). */
export const MASK_SCRIPT = [
  'mount --bind /proc/sys "$SBX_PROCSYS"',
  'mount -t tmpfs -o size=16k,mode=555 sbx-mask /proc/sys',
  'for d in kernel vm fs; do mkdir /proc/sys/$d; mount --bind "$SBX_PROCSYS/$d" /proc/sys/$d; done',
  'umount -l "$SBX_PROCSYS"',
  'exec "$0" "$@"',
].join('\n');

export class GvisorRuntime implements Runtime {
  readonly paths: InstancePaths;
  readonly tag: string;
  readonly runscPath: string;
  readonly platform: Platform;
  readonly compression: Compression;
  /** Address every sandbox reaches the hub at; allowed egress ports listen here. */
  readonly hubIp = HUB_IP;
  private version = '';
  private readonly adopt: boolean;
  private readonly settleMs: number;
  private readonly nodePath: string;
  private readonly records = new Map<string, SandboxRecord>();
  private forwarder?: ChildProcess;
  private egressServer?: net.Server;
  private readonly slotLocks = new Map<number, Promise<unknown>>();
  private readonly pendingDeletes = new Map<string, Promise<void>>();
  /** Slots wired up by this runtime instance (ensureWorker ran since init). */
  private readonly prepared = new Set<number>();
  private initialized = false;

  constructor(opts: RuntimeOptions) {
    if (!opts.stateDir || !path.isAbsolute(opts.stateDir)) throw invalid(`runtime stateDir must be an absolute path, got "${opts.stateDir}"`);
    this.paths = instancePaths(opts.stateDir);
    this.tag = this.paths.tag;
    this.runscPath = opts.runscPath ?? defaultRunscPath();
    this.platform = opts.platform ?? 'ptrace';
    this.compression = opts.compression ?? 'none';
    this.adopt = opts.adoptLeftovers ?? false;
    this.settleMs = opts.restoreSettleMs ?? 0;
    this.nodePath = opts.nodePath ?? process.execPath;
    for (const p of [this.paths.forwarderSock, this.paths.egressSock]) {
      if (Buffer.byteLength(p) > 100) throw invalid(`runtime stateDir "${opts.stateDir}" is too long: Unix socket path ${p} exceeds 100 bytes`);
    }
  }

  private readonly limitSupport = cgroupLimitSupport();
  private limitWarned = false;

  /** The spec without the limits this host's cgroups cannot enforce (said once in the log). */
  private enforceable(spec: WorkloadSpec): WorkloadSpec {
    const sup = this.limitSupport;
    const drop: string[] = [];
    const out = { ...spec };
    if (out.memoryLimitBytes !== undefined && !sup.memory) (drop.push('memory'), delete out.memoryLimitBytes);
    if (out.cpuMillis !== undefined && !sup.cpu) (drop.push('cpu'), delete out.cpuMillis);
    if (out.pidsLimit !== undefined && !sup.pids) (drop.push('pids'), delete out.pidsLimit);
    if (drop.length && !this.limitWarned) {
      this.limitWarned = true;
      log.warn('this host cannot enforce some actor limits (cgroup controllers missing); they are not applied', { missing: drop, cgroups: sup.version });
    }
    return out;
  }

  /** runsc version string, e.g. "0.0~20240729.0" (known after init()). */
  get runscVersion(): string {
    return this.version;
  }

  /** The worker slot for an index: netns sbx-<tag>-w<index>, address 10.77.x.y. */
  slot(index: number, node = 'local'): WorkerSlot {
    if (!Number.isInteger(index) || index < 0 || index > MAX_SLOT_INDEX) throw invalid(`worker slot index must be an integer in 0..${MAX_SLOT_INDEX}, got ${index}`);
    return { index, node, netns: workerNetns(this.tag, index), ip: slotIp(index) };
  }

  /** Host-side view of an egress rule: the address:port the workload connects to. */
  egressAddress(rule: EgressRule): string {
    return `${HUB_IP}:${rule.port}`;
  }

  // ---------------------------------------------------------------------------------------------------------
  async init(): Promise<void> {
    if (this.initialized) return;
    if (process.getuid?.() !== 0) throw failedPrecondition('the gVisor runtime needs root (network namespaces and runsc); run as root');
    this.version = await runscVersionOf(this.runscPath);
    for (const d of [this.paths.stateDir, this.paths.runDir, this.paths.procsysScratch, this.paths.bundles, this.paths.runscRoot]) {
      await fsp.mkdir(d, { recursive: true, mode: 0o700 });
    }
    await stopForwarderByPidFile(this.paths);
    if (this.adopt) await this.adoptLeftovers();
    else await cleanupInstance(this.paths, this.runscPath, { keepStateFiles: true });
    await ensureHub(this.paths.hubNetns);
    await this.startEgressServer();
    await this.startForwarder();
    for (const r of this.records.values()) if (r.egress.length) await this.setEgress(r.slot.ip, r.egress);
    this.initialized = true;
    log.info('runtime ready', { tag: this.tag, stateDir: this.paths.stateDir, platform: this.platform, runsc: this.version, adopted: this.records.size });
  }

  async prepareWorker(slot: WorkerSlot): Promise<void> {
    this.checkSlot(slot);
    // A slot hosting a sandbox adopted from a previous run is wired already; re-adding its address would
    // cut the sandbox off from the hub.
    for (const r of this.records.values()) {
      if (r.slot.index === slot.index && pidAlive(r.pid, r.startTime)) {
        this.prepared.add(slot.index);
        return;
      }
    }
    await this.withSlot(slot.index, () => this.ensureSlot(slot, true));
  }

  adopted(sandboxId: string): { handle: SandboxHandle; imageDigest: string } | undefined {
    const r = this.records.get(sandboxId);
    if (!r || !r.pid || !pidAlive(r.pid, r.startTime)) return undefined;
    return { handle: { sandboxId: r.sandboxId, pid: r.pid, worker: r.slot }, imageDigest: r.imageDigest };
  }

  async boot(slot: WorkerSlot, spec: WorkloadSpec, logFile: string): Promise<SandboxHandle> {
    this.requireInit();
    this.checkSlot(slot);
    checkSpec(spec);
    return this.withSlot(slot.index, async () => {
      await this.clearSlot(slot);
      await this.ensureSlot(slot, false);
      const id = this.newSandboxId();
      const rec = await this.startSandbox('run', id, slot, spec, logFile, []);
      log.info('sandbox booted', { sandboxId: id, slot: slot.index, pid: rec.pid });
      return { sandboxId: id, pid: rec.pid, worker: slot };
    });
  }

  async restore(slot: WorkerSlot, spec: WorkloadSpec, snapshotDir: string, logFile: string): Promise<SandboxHandle> {
    this.requireInit();
    this.checkSlot(slot);
    checkSpec(spec);
    const meta = await readSnapshot(snapshotDir);
    if (meta.imageDigest !== spec.imageDigest) {
      throw failedPrecondition(`snapshot ${path.basename(snapshotDir)} was taken from image ${meta.imageDigest}, but the workload now uses ${spec.imageDigest}; a snapshot only restores onto the identical image`);
    }
    if (meta.platform !== this.platform) {
      throw failedPrecondition(`snapshot ${path.basename(snapshotDir)} was taken on gVisor platform "${meta.platform}", this runtime uses "${this.platform}"; restoring across platforms crashes the workload`);
    }
    if (meta.runscVersion !== this.version) {
      throw failedPrecondition(`snapshot ${path.basename(snapshotDir)} was taken with runsc ${meta.runscVersion}, this runtime has runsc ${this.version}`);
    }
    const abs = path.resolve(snapshotDir);
    return this.withSlot(slot.index, async () => {
      await this.clearSlot(slot);
      await this.ensureSlot(slot, false);
      const id = this.newSandboxId();
      const logStart = fs.existsSync(logFile) ? fs.statSync(logFile).size : 0;
      const rec = await this.startSandbox('restore', id, slot, spec, logFile, ['--image-path', abs]);
      // runsc restore returns 0 even when the restored app dies right away (platform or rootfs mismatch).
      // Without a settle time only the sandbox process is checked here: the caller probes the workload's
      // readiness next (and verifyRunning() asks runsc about the container when there is no probe).
      const st = this.settleMs > 0 ? (await sleep(this.settleMs), await this.state(id)) : { pid: rec.pid, status: 'running' };
      if (!pidAlive(rec.pid, rec.startTime) || st?.status !== 'running') {
        const tail = await logTail(path.resolve(logFile), logStart);
        await this.teardown(id, true);
        throw internal(`restore of snapshot ${path.basename(snapshotDir)} failed: the sandbox ${st ? `is "${st.status}"` : 'vanished'} right after restore (pid ${rec.pid} ${pidAlive(rec.pid) ? 'alive' : 'dead'})${tail ? `; log tail: ${tail}` : ''}`);
      }
      log.info('sandbox restored', { sandboxId: id, slot: slot.index, pid: rec.pid, snapshotDir: abs });
      return { sandboxId: id, pid: rec.pid, worker: slot };
    });
  }

  async checkpoint(handle: SandboxHandle, snapshotDir: string, meta: Omit<SnapshotMeta, 'bytes' | 'createdAt'>): Promise<SnapshotMeta> {
    this.requireInit();
    const rec = this.records.get(handle.sandboxId);
    if (!rec) throw failedPrecondition(`sandbox ${handle.sandboxId} is not running on this runtime`);
    if (meta.platform !== this.platform) throw invalid(`checkpoint meta says platform "${meta.platform}" but this runtime runs "${this.platform}"`);
    // An empty runscVersion means "whatever this runtime runs"; the snapshot records the real one.
    if (meta.runscVersion && meta.runscVersion !== this.version) throw invalid(`checkpoint meta says runsc "${meta.runscVersion}" but this runtime runs "${this.version}"`);
    if (meta.imageDigest !== rec.imageDigest) throw invalid(`checkpoint meta says image ${meta.imageDigest} but sandbox ${rec.sandboxId} runs ${rec.imageDigest}`);
    if (!pidAlive(rec.pid, rec.startTime)) throw failedPrecondition(`sandbox ${rec.sandboxId} is not alive (pid ${rec.pid}); nothing to checkpoint`);
    return this.withSlot(rec.slot.index, () => this.checkpointLocked(rec, snapshotDir, meta));
  }

  private async checkpointLocked(rec: SandboxRecord, snapshotDir: string, meta: Omit<SnapshotMeta, 'bytes' | 'createdAt'>): Promise<SnapshotMeta> {
    if (!this.records.has(rec.sandboxId)) throw failedPrecondition(`sandbox ${rec.sandboxId} was destroyed before its checkpoint started`);
    const dest = path.resolve(snapshotDir);
    await mkdirDurable(path.dirname(dest));
    const tmp = `${dest}.tmp-${randomBytes(4).toString('hex')}`;
    await fsp.mkdir(tmp, { mode: 0o700 });
    const t0 = Date.now();
    let teardown: Promise<void> | undefined;
    let survived = false;
    try {
      await this.resetConnections(rec.slot.ip);
      const r = await run(this.runscPath, [...this.globalFlags(rec.cgroup), 'checkpoint', `--compression=${this.compression}`, '--image-path', tmp, rec.sandboxId], { timeoutMs: 300_000 });
      const tCk = Date.now() - t0;
      if (r.code !== 0) {
        const why = runscErrorOf(r.stderr || r.stdout);
        // A checkpoint that failed before the sandbox stopped (a full disk, say) leaves it running: it keeps
        // its memory and the caller decides.
        survived = pidAlive(rec.pid, rec.startTime) && (await this.state(rec.sandboxId))?.status === 'running';
        if (/no space left on device|ENOSPC|disk quota exceeded/i.test(why)) throw storeFull(survived);
        throw internal(`runsc checkpoint of ${rec.sandboxId} failed (exit ${r.code}): ${why}`);
      }
      // Without --leave-running the sandbox exits by itself after a checkpoint: tear it down while the
      // image is made durable below.
      teardown = this.teardown(rec.sandboxId, false);
      const files: Record<string, number> = {};
      let bytes = 0;
      for (const name of (await fsp.readdir(tmp)).sort()) {
        const st = await fsp.stat(path.join(tmp, name));
        if (!st.isFile()) continue;
        // runsc writes the image with its umask (0644): it is the workload's memory, so owner-only.
        await fsp.chmod(path.join(tmp, name), 0o600);
        files[name] = st.size;
        bytes += st.size;
      }
      if (!files['checkpoint.img']) throw internal(`runsc checkpoint of ${rec.sandboxId} wrote no checkpoint.img`);
      const out: SnapshotMeta = { imageDigest: meta.imageDigest, platform: this.platform, runscVersion: this.version, createdAt: new Date().toISOString(), bytes };
      const file: SnapshotFile = { format: SNAPSHOT_FORMAT, ...out, compression: this.compression, files };
      await fsp.writeFile(path.join(tmp, 'meta.json'), JSON.stringify(file, null, 2) + '\n', { mode: 0o600 });
      await Promise.all([...Object.keys(files), 'meta.json'].map((name) => fsyncPath(path.join(tmp, name))));
      await fsyncPath(tmp);
      await replaceDir(tmp, dest);
      log.info('sandbox checkpointed', { sandboxId: rec.sandboxId, snapshotDir: dest, bytes, runscMs: tCk, totalMs: Date.now() - t0 });
      return out;
    } catch (e) {
      await fsp.rm(tmp, { recursive: true, force: true });
      if (isNoSpace(e)) throw storeFull(false);
      throw e;
    } finally {
      if (!survived) await (teardown ?? this.teardown(rec.sandboxId, false));
    }
  }

  /**
   * Resets every connection the hub forwarder pipes to a sandbox, and gives its network stack a moment to
   * take the resets, before a checkpoint: a TCP connection frozen open in a checkpoint (a request in flight,
   * say) left the restored workload unable to answer anyone. Clients of those connections see them reset;
   * the caller is suspending the actor anyway.
   */
  private async resetConnections(ip: string): Promise<void> {
    if (!this.forwarder) return;
    let n = 0;
    try {
      const sock = net.connect(this.paths.forwarderSock);
      await new Promise<void>((resolve, reject) => {
        sock.once('connect', () => resolve());
        sock.once('error', reject);
      });
      sock.write(`RESET ${ip}\n`);
      const reply = await readLine(sock, 5_000);
      sock.destroy();
      n = Number(/^OK (\d+)$/.exec(reply)?.[1] ?? 0);
    } catch (e) {
      log.warn('could not reset connections before a checkpoint', { ip, error: e });
      return;
    }
    if (n > 0) await sleep(CHECKPOINT_RESET_SETTLE_MS);
  }

  async destroy(sandboxId: string): Promise<void> {
    if (!SANDBOX_ID_RE.test(sandboxId)) throw invalid(`"${sandboxId}" is not a sandbox id of this runtime`);
    const rec = this.records.get(sandboxId);
    if (rec) await this.withSlot(rec.slot.index, () => this.teardown(sandboxId, true));
    else await this.teardown(sandboxId, true);
  }

  /**
   * Kills the sandbox process (so the worker's namespace is free at once), forgets the record, then runs
   * `runsc delete --force`. On this VM PID 1 reaps orphaned zombies only every ~1.5 s and runsc delete waits
   * for that, so after a checkpoint the delete runs in the background (shutdown() and destroy() await it).
   */
  private async teardown(sandboxId: string, wait: boolean): Promise<void> {
    if (!SANDBOX_ID_RE.test(sandboxId)) throw invalid(`"${sandboxId}" is not a sandbox id of this runtime`);
    const pending = this.pendingDeletes.get(sandboxId);
    if (pending) {
      if (wait) await pending;
      return;
    }
    const rec = this.records.get(sandboxId);
    let pid = rec?.pid ?? 0;
    let startTime = rec?.startTime;
    if (!pid) {
      const st = await this.state(sandboxId);
      pid = st?.pid ?? 0;
      startTime = undefined;
      if (pid && !(procCmdline(pid) + ' ').includes(`--root=${this.paths.runscRoot} `)) pid = 0; // not ours (PID reused)
    }
    if (pid && pidAlive(pid, startTime)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      const died = async () => {
        for (let i = 0; i < 500 && pidAlive(pid, startTime); i++) await sleep(10);
      };
      // The next sandbox on this slot must wait until this one is gone (it holds the slot's interface).
      // A caller that does not wait (a checkpoint, whose image is complete) gets its answer now; the slot's
      // queue carries the wait instead.
      if (wait || !rec) await died();
      else void this.withSlot(rec.slot.index, died);
    }
    if (rec) {
      this.records.delete(sandboxId);
      const successor = [...this.records.values()].some((r) => r.slot.index === rec.slot.index);
      if (this.forwarder && !successor) {
        // Connections to the gone sandbox would otherwise hang (nothing answers at that address any more).
        await forwarderConnect(this.paths.forwarderSock, `DROP ${rec.slot.ip}`).then((s) => s.destroy(), () => undefined);
        if (rec.egress.length) await this.setEgress(rec.slot.ip, []).catch(() => undefined);
      }
    }
    const p = (async () => {
      const r = await run(this.runscPath, [`--root=${this.paths.runscRoot}`, 'delete', '--force', sandboxId], { timeoutMs: 60_000 });
      if (r.code !== 0 && !/does not exist|not found|no such|cannot find/i.test(r.stderr)) {
        log.warn('runsc delete --force failed', { sandboxId, stderr: lastLines(r.stderr) });
      }
      await fsp.rm(path.join(this.paths.bundles, sandboxId), { recursive: true, force: true });
      if (rec?.cgroup) await removeCgroups(this.paths.cgroupParent, sandboxId);
    })().finally(() => this.pendingDeletes.delete(sandboxId));
    this.pendingDeletes.set(sandboxId, p);
    if (wait) await p;
    else p.catch((e: unknown) => log.warn('background delete failed', { sandboxId, error: e }));
  }

  /** Asks runsc whether the container is still running (a restore can succeed and its app die right after). */
  async verifyRunning(handle: SandboxHandle): Promise<boolean> {
    if (!this.isAlive(handle)) return false;
    return (await this.state(handle.sandboxId))?.status === 'running';
  }

  isAlive(handle: SandboxHandle): boolean {
    const rec = this.records.get(handle.sandboxId);
    if (rec) return pidAlive(handle.pid, rec.startTime);
    // Forgotten (destroyed or checkpointed): alive only if that PID is still a runsc process of ours.
    return pidAlive(handle.pid) && (procCmdline(handle.pid) + ' ').includes(`--root=${this.paths.runscRoot} `);
  }

  async connect(slot: WorkerSlot, port: number): Promise<Socket> {
    this.requireInit();
    this.checkSlot(slot);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid(`port must be 1..65535, got ${port}`);
    // Without a sandbox the address is on no interface and a connect would wait ~3 s for ARP to give up.
    if (![...this.records.values()].some((r) => r.slot.index === slot.index && r.pid > 0)) {
      throw unavailable(`no sandbox is running on worker slot ${slot.index} (${slot.netns})`);
    }
    return forwarderConnect(this.paths.forwarderSock, `CONNECT ${slot.ip}:${port}`);
  }

  async list(): Promise<Array<{ sandboxId: string; pid: number; status: string }>> {
    return runscList(this.runscPath, this.paths.runscRoot);
  }

  async shutdown(): Promise<void> {
    await Promise.all([...this.records.keys()].map((id) => this.teardown(id, false).catch(() => undefined)));
    await Promise.all([...this.pendingDeletes.values()].map((p) => p.catch(() => undefined)));
    await this.stopForwarder();
    await new Promise<void>((r) => (this.egressServer ? this.egressServer.close(() => r()) : r()));
    this.egressServer = undefined;
    await cleanupInstance(this.paths, this.runscPath, { keepStateFiles: true });
    this.records.clear();
    this.prepared.clear();
    this.initialized = false;
    log.info('runtime shut down', { tag: this.tag });
  }

  // ---------------------------------------------------------------------------------------------------------
  private requireInit(): void {
    if (!this.initialized) throw failedPrecondition('runtime not initialised: call init() first');
  }

  private checkSlot(slot: WorkerSlot): void {
    const want = this.slot(slot.index, slot.node);
    if (slot.netns !== want.netns || slot.ip !== want.ip) {
      throw invalid(`worker slot ${slot.index} must be netns "${want.netns}" with ip ${want.ip} on this runtime (got "${slot.netns}", ${slot.ip}); build slots with runtime.slot(index, node)`);
    }
  }

  /** Refuses a slot that hosts a live sandbox; tears down dead ones left on it (kill -9, OOM, exited). */
  private async clearSlot(slot: WorkerSlot): Promise<void> {
    for (const r of [...this.records.values()]) {
      if (r.slot.index !== slot.index) continue;
      if (pidAlive(r.pid, r.startTime)) {
        throw failedPrecondition(`worker slot ${slot.index} already hosts sandbox ${r.sandboxId}; destroy or checkpoint it first`);
      }
      await this.teardown(r.sandboxId, false);
    }
  }

  private async withSlot<T>(index: number, fn: () => Promise<T>): Promise<T> {
    const prev = this.slotLocks.get(index) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(fn);
    this.slotLocks.set(index, next);
    try {
      return await next;
    } finally {
      if (this.slotLocks.get(index) === next) this.slotLocks.delete(index);
    }
  }

  /** Wires the slot's namespace once per runtime life (or again when it vanished, or when forced). */
  private async ensureSlot(slot: WorkerSlot, force: boolean): Promise<void> {
    if (!force && this.prepared.has(slot.index) && workerReady(slot.netns)) return;
    await ensureWorker(this.paths.hubNetns, this.tag, slot.index, slot.netns, slot.ip);
    this.prepared.add(slot.index);
  }

  private newSandboxId(): string {
    return `s${this.tag}-${randomBytes(8).toString('hex')}`;
  }

  /** runsc's global flags for every command of this runtime (exported for benchmarks that call runsc directly). */
  globalFlags(cgroup: boolean): string[] {
    const f = [`--root=${this.paths.runscRoot}`, `--platform=${this.platform}`, '--net-disconnect-ok', '--network=sandbox', '--overlay2=none'];
    if (!cgroup) f.push('--ignore-cgroups');
    return f;
  }

  private async startSandbox(kind: 'run' | 'restore', id: string, slot: WorkerSlot, spec: WorkloadSpec, logFile: string, extra: string[]): Promise<SandboxRecord> {
    const bundle = path.join(this.paths.bundles, id);
    spec = this.enforceable(spec);
    const cgroup = spec.memoryLimitBytes !== undefined || spec.cpuMillis !== undefined || spec.pidsLimit !== undefined;
    await fsp.mkdir(bundle, { recursive: true, mode: 0o700 });
    await fsp.writeFile(path.join(bundle, 'config.json'), JSON.stringify(ociConfig(spec, slot.netns, cgroup ? `${this.paths.cgroupParent}/${id}` : undefined)), { mode: 0o600 });
    const egress = [...new Set(spec.egress.map((r) => r.port))].sort((a, b) => a - b);
    const rec: SandboxRecord = { sandboxId: id, slot, pid: 0, imageDigest: spec.imageDigest, egress, cgroup };
    this.records.set(id, rec); // visible to the egress server from the first packet on
    const logPath = path.resolve(logFile);
    await fsp.mkdir(path.dirname(logPath), { recursive: true });
    const fd = fs.openSync(logPath, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o600);
    const logStart = fs.fstatSync(fd).size;
    const T: Record<string, number> = {};
    let tp = Date.now();
    const mark = (k: string) => {
      T[k] = Date.now() - tp;
      tp = Date.now();
    };
    try {
      await this.setEgress(slot.ip, egress);
      mark('egress');
      await readdAddress(slot.netns, slot.ip);
      const pidFile = path.join(bundle, 'pid');
      const args = ['-m', '--propagation', 'private', '/bin/sh', '-ec', MASK_SCRIPT, this.runscPath, ...this.globalFlags(cgroup), kind, ...extra, '-detach', '--pid-file', pidFile, '--bundle', bundle, id];
      mark('readd');
      const code = await spawnToFd('unshare', args, fd, { timeoutMs: 120_000, env: childEnv({ set: { SBX_PROCSYS: this.paths.procsysScratch } }) });
      mark('runsc');
      if (code !== 0) throw internal(`runsc ${kind} failed (exit ${code})${await tailSuffix(logPath, logStart)}`);
      // runsc writes the sandbox process id to --pid-file (the same pid `runsc state` reports), which saves a
      // `runsc state` round trip on every start.
      const pid = Number((await fsp.readFile(pidFile, 'utf8').catch(() => '')).trim());
      if (!pid) throw internal(`runsc ${kind} returned but wrote no sandbox pid for ${id}${await tailSuffix(logPath, logStart)}`);
      rec.pid = pid;
      rec.startTime = procStat(pid)?.startTime;
      if (!pidAlive(rec.pid, rec.startTime)) throw internal(`sandbox ${id} died right after runsc ${kind}${await tailSuffix(logPath, logStart)}`);
      await fsp.writeFile(path.join(bundle, 'sandbox.json'), JSON.stringify(rec), { mode: 0o600 });
      mark('state');
      log.debug(`runsc ${kind} phases`, T);
      return rec;
    } catch (e) {
      await this.teardown(id, true).catch(() => undefined);
      throw e;
    } finally {
      fs.closeSync(fd);
    }
  }

  private async state(id: string): Promise<{ pid: number; status: string } | undefined> {
    const r = await run(this.runscPath, [`--root=${this.paths.runscRoot}`, 'state', id], { timeoutMs: 30_000 });
    if (r.code !== 0) return undefined;
    try {
      const j = JSON.parse(r.stdout) as { pid?: number; status?: string };
      return { pid: j.pid ?? 0, status: j.status ?? 'unknown' };
    } catch {
      return undefined;
    }
  }

  private async adoptLeftovers(): Promise<void> {
    for (const s of await this.list()) {
      let rec: SandboxRecord | undefined;
      try {
        rec = JSON.parse(await fsp.readFile(path.join(this.paths.bundles, s.sandboxId, 'sandbox.json'), 'utf8')) as SandboxRecord;
      } catch {
        rec = undefined;
      }
      if (rec && s.status === 'running' && pidAlive(rec.pid, rec.startTime)) {
        this.records.set(s.sandboxId, rec);
        log.info('adopted sandbox from a previous run', { sandboxId: s.sandboxId, slot: rec.slot.index, pid: rec.pid });
      } else {
        await this.destroy(s.sandboxId);
      }
    }
  }

  private async setEgress(ip: string, ports: number[]): Promise<void> {
    if (!this.forwarder) {
      if (ports.length) throw failedPrecondition('hub forwarder is not running; egress cannot be set up');
      return;
    }
    const line = `EGRESS-SET ${ip} ${ports.length ? ports.join(',') : '-'}`;
    const sock = await forwarderConnect(this.paths.forwarderSock, line);
    sock.destroy();
  }

  private async startEgressServer(): Promise<void> {
    await fsp.rm(this.paths.egressSock, { force: true });
    const server = net.createServer((sock) => {
      sock.on('error', () => undefined);
      readLine(sock, 10_000).then(
        (line) => {
          const m = /^EGRESS (\S+) (\d+)$/.exec(line);
          const port = m ? Number(m[2]) : 0;
          const rec = m ? [...this.records.values()].find((r) => r.slot.ip === m[1] && pidAlive(r.pid, r.startTime)) : undefined;
          if (!rec || !rec.egress.includes(port)) {
            sock.end('ERR not allowed\n');
            return;
          }
          const up = net.connect({ host: '127.0.0.1', port });
          const onErr = (e: Error) => sock.end(`ERR ${(e as NodeJS.ErrnoException).code ?? e.message}\n`);
          up.once('error', onErr);
          up.once('connect', () => {
            up.off('error', onErr);
            sock.write('OK\n');
            pipeBoth(sock, up);
          });
        },
        () => sock.destroy(),
      );
    });
    const old = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.paths.egressSock, () => resolve());
      });
    } finally {
      process.umask(old);
    }
    await fsp.chmod(this.paths.egressSock, 0o600);
    server.unref();
    this.egressServer = server;
  }

  private async startForwarder(): Promise<void> {
    const logFd = fs.openSync(this.paths.forwarderLog, 'a', 0o600);
    const child = spawn('ip', ['netns', 'exec', this.paths.hubNetns, this.nodePath, forwarderScript(), this.paths.forwarderSock, this.paths.egressSock, HUB_IP], spawnOptions({
      stdio: ['pipe', 'pipe', logFd] as ['pipe', 'pipe', number],
    }));
    fs.closeSync(logFd);
    try {
      await new Promise<void>((resolve, reject) => {
        let out = '';
        const timer = setTimeout(() => reject(new Error('hub forwarder did not become ready within 10 s')), 10_000);
        child.stdout!.on('data', (c: Buffer) => {
          out += c.toString();
          if (out.includes('READY')) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`hub forwarder exited with ${code}; see ${this.paths.forwarderLog}`));
        });
        child.once('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
      });
    } catch (e) {
      child.kill('SIGKILL');
      throw internal(`cannot start the hub forwarder: ${(e as Error).message}`);
    }
    child.stdout!.removeAllListeners('data');
    child.stdout!.resume();
    (child.stdin as unknown as Socket).unref?.();
    (child.stdout as unknown as Socket).unref?.();
    child.unref();
    await fsp.writeFile(this.paths.forwarderPidFile, String(child.pid));
    this.forwarder = child;
  }

  private async stopForwarder(): Promise<void> {
    const child = this.forwarder;
    this.forwarder = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    }
    await stopForwarderByPidFile(this.paths);
  }
}

export function createRuntime(opts: RuntimeOptions): GvisorRuntime {
  return new GvisorRuntime(opts);
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers shared with reconciliation and tests.

/** `runsc --version` → "0.0~20240729.0"; throws with the install remedy when missing or the wrong version. */
export async function runscVersionOf(runscPath: string): Promise<string> {
  const remedy = 'run: bash scripts/install-runsc.sh (or set SUBSTRATE_RUNSC to a runsc 0.0~20240729 binary)';
  if (!fs.existsSync(runscPath)) throw failedPrecondition(`runsc not found at ${runscPath}; ${remedy}`);
  const r = await run(runscPath, ['--version'], { timeoutMs: 10_000 }).catch((e: Error) => ({ code: 1, stdout: '', stderr: e.message }));
  const m = /runsc version (\S+)/.exec(r.stdout);
  if (r.code !== 0 || !m) {
    const said = (r.stderr || r.stdout).trim().split('\n')[0] || `exit ${r.code}`;
    throw failedPrecondition(`${runscPath} is not a working runsc (--version said: ${said}); ${remedy}`);
  }
  if (!m[1].startsWith(REQUIRED_RUNSC_VERSION)) {
    throw failedPrecondition(`runsc at ${runscPath} is version ${m[1]}, need ${REQUIRED_RUNSC_VERSION} (older releases cannot checkpoint TCP listeners); ${remedy}`);
  }
  return m[1];
}

export async function runscList(runscPath: string, root: string): Promise<Array<{ sandboxId: string; pid: number; status: string }>> {
  if (!fs.existsSync(root)) return [];
  const r = await run(runscPath, [`--root=${root}`, 'list', '-format=json'], { timeoutMs: 30_000 });
  if (r.code !== 0) throw internal(`runsc list failed: ${lastLines(r.stderr)}`);
  const j = JSON.parse(r.stdout.trim() || 'null') as Array<{ id: string; pid: number; status: string }> | null;
  return (j ?? []).map((c) => ({ sandboxId: c.id, pid: c.pid, status: c.status }));
}

/**
 * Removes every leftover of a runtime instance identified by its state directory: sandboxes under its runsc
 * root, its hub forwarder, its network namespaces, its cgroups and bundles. Safe to call when nothing is left.
 * Used by init() (no adoption), shutdown(), reconciliation and tests' afterAll.
 */
export async function removeInstanceLeftovers(opts: { stateDir: string; runscPath?: string }): Promise<void> {
  const paths = instancePaths(opts.stateDir);
  await stopForwarderByPidFile(paths);
  await cleanupInstance(paths, opts.runscPath ?? defaultRunscPath(), { keepStateFiles: false });
}

async function cleanupInstance(paths: InstancePaths, runscPath: string, o: { keepStateFiles: boolean }): Promise<void> {
  let listed: Array<{ sandboxId: string; pid: number }> = [];
  if (fs.existsSync(runscPath)) listed = await runscList(runscPath, paths.runscRoot).catch(() => []);
  for (const s of listed) {
    await run(runscPath, [`--root=${paths.runscRoot}`, 'delete', '--force', s.sandboxId], { timeoutMs: 60_000 });
  }
  // Anything of ours runsc lost track of (state removed by hand, a half-started sandbox): by PID, only
  // processes whose command line carries this instance's own --root.
  for (const pid of runscPidsOf(paths.runscRoot)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const ns of await listNetns()) {
    if (ns.startsWith(paths.netnsPrefix)) await deleteNetns(ns);
  }
  await removeCgroups(paths.cgroupParent);
  await fsp.rm(paths.bundles, { recursive: true, force: true });
  if (!o.keepStateFiles) {
    await fsp.rm(paths.runscRoot, { recursive: true, force: true });
    await fsp.rm(paths.runDir, { recursive: true, force: true });
  } else {
    await fsp.mkdir(paths.bundles, { recursive: true, mode: 0o700 }).catch(() => undefined);
  }
}

/** PIDs of runsc processes (sandbox, gofer, CLI) started with this --root. */
export function runscPidsOf(runscRoot: string): number[] {
  const out: number[] = [];
  const needle = `--root=${runscRoot} `;
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    const cmd = procCmdline(pid) + ' ';
    if (cmd.includes(needle) && pidAlive(pid)) out.push(pid);
  }
  return out;
}

async function stopForwarderByPidFile(paths: InstancePaths): Promise<void> {
  let pid = 0;
  try {
    pid = Number((await fsp.readFile(paths.forwarderPidFile, 'utf8')).trim());
  } catch {
    return;
  }
  const cmd = pid ? procCmdline(pid) : '';
  if (pid && cmd.includes('forwarder.mjs') && cmd.includes(paths.forwarderSock) && pidAlive(pid)) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    for (let i = 0; i < 30 && pidAlive(pid); i++) await sleep(100);
    if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
  }
  await fsp.rm(paths.forwarderPidFile, { force: true });
  await fsp.rm(paths.forwarderSock, { force: true });
}

/** rmdir the cgroup dirs runsc created for this instance (v1: one per controller; runsc leaves the parent). */
async function removeCgroups(parent: string, leaf?: string): Promise<void> {
  const base = '/sys/fs/cgroup';
  let ctrls: string[] = [];
  try {
    ctrls = (await fsp.readdir(base, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => path.join(base, d.name));
  } catch {
    return;
  }
  if (fs.existsSync(path.join(base, 'cgroup.controllers'))) ctrls.push(base); // pure v2
  const own = new Set<string>(['/']);
  try {
    for (const l of fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
      const p = l.split(':')[2];
      if (p) own.add(p);
    }
  } catch {
    /* none */
  }
  for (const c of ctrls) {
    for (const o of own) {
      const dir = path.join(c, o, parent);
      if (!fs.existsSync(dir)) continue;
      const leaves = leaf ? [leaf] : fs.readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
      for (const l of leaves) await fsp.rmdir(path.join(dir, l)).catch(() => undefined);
      if (!leaf) await fsp.rmdir(dir).catch(() => undefined);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
function checkSpec(spec: WorkloadSpec): void {
  if (!Array.isArray(spec.command) || spec.command.length === 0 || spec.command.some((a) => typeof a !== 'string')) {
    throw invalid('workload command must be a non-empty list of strings');
  }
  if (!path.isAbsolute(spec.rootfs) || !fs.existsSync(spec.rootfs)) throw invalid(`workload rootfs ${spec.rootfs} must be an existing absolute path`);
  if (!/^sha256:[0-9a-f]{64}$/.test(spec.imageDigest)) throw invalid(`workload imageDigest must be "sha256:<64 hex>", got "${spec.imageDigest}"`);
  for (const k of Object.keys(spec.env)) {
    if (!k || k.includes('=') || k.includes('\0')) throw invalid(`environment variable name "${k}" is invalid`);
  }
  for (const r of spec.egress) {
    if (r.host !== '127.0.0.1' || !Number.isInteger(r.port) || r.port < 1 || r.port > 65535) {
      throw invalid(`egress rule ${JSON.stringify(r)} is invalid: only host "127.0.0.1" with a port 1..65535 is allowed`);
    }
  }
  if (spec.memoryLimitBytes !== undefined && (!Number.isInteger(spec.memoryLimitBytes) || spec.memoryLimitBytes < 16 * 1024 * 1024)) {
    throw invalid(`memoryLimitBytes must be an integer ≥ 16 MiB, got ${spec.memoryLimitBytes}`);
  }
  if (spec.cpuMillis !== undefined && (!Number.isInteger(spec.cpuMillis) || spec.cpuMillis < 10)) {
    throw invalid(`cpuMillis must be an integer ≥ 10, got ${spec.cpuMillis}`);
  }
  if (spec.pidsLimit !== undefined && (!Number.isInteger(spec.pidsLimit) || spec.pidsLimit < 8)) {
    throw invalid(`pidsLimit must be an integer ≥ 8, got ${spec.pidsLimit}`);
  }
  if (spec.tmpBytes !== undefined && (!Number.isInteger(spec.tmpBytes) || spec.tmpBytes < 1024 * 1024)) {
    throw invalid(`tmpBytes must be an integer ≥ 1 MiB, got ${spec.tmpBytes}`);
  }
}

const CPU_PERIOD_US = 100_000;
/** Size of each launch directory's tmpfs: a bundle is a few KiB. */
const LAUNCH_DIR_BYTES = 1024 * 1024;

/**
 * Which per-sandbox limits this host's cgroups can enforce: v1 with a hierarchy per controller (memory, cpu,
 * pids), or v2 with the controllers listed in cgroup.controllers.
 */
export function cgroupLimitSupport(base = '/sys/fs/cgroup'): { version: 'v1' | 'v2' | 'none'; memory: boolean; cpu: boolean; pids: boolean } {
  try {
    const v2 = path.join(base, 'cgroup.controllers');
    if (fs.existsSync(v2)) {
      const c = new Set(fs.readFileSync(v2, 'utf8').trim().split(/\s+/));
      return { version: 'v2', memory: c.has('memory'), cpu: c.has('cpu'), pids: c.has('pids') };
    }
    const has = (ctrl: string) => fs.readdirSync(base).some((d) => d.split(',').includes(ctrl) && fs.existsSync(path.join(base, d, 'tasks')));
    const r = { version: 'v1' as const, memory: has('memory'), cpu: has('cpu'), pids: has('pids') };
    return r.memory || r.cpu || r.pids ? r : { version: 'none', memory: false, cpu: false, pids: false };
  } catch {
    return { version: 'none', memory: false, cpu: false, pids: false };
  }
}

/** The OCI bundle config of a sandbox (exported for benchmarks that call runsc directly). */
export function ociConfig(spec: WorkloadSpec, netns: string, cgroupsPath?: string): object {
  const env = Object.entries(spec.env).map(([k, v]) => `${k}=${v}`);
  if (!('PATH' in spec.env)) env.push('PATH=/usr/local/bin:/usr/bin:/bin');
  const caps = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
  const linux: Record<string, unknown> = {
    namespaces: [{ type: 'pid' }, { type: 'network', path: `/var/run/netns/${netns}` }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
  };
  if (cgroupsPath) {
    linux.cgroupsPath = cgroupsPath;
    const resources: Record<string, unknown> = {};
    if (spec.memoryLimitBytes !== undefined) resources.memory = { limit: spec.memoryLimitBytes };
    if (spec.cpuMillis !== undefined) resources.cpu = { quota: Math.round((spec.cpuMillis * CPU_PERIOD_US) / 1000), period: CPU_PERIOD_US };
    if (spec.pidsLimit !== undefined) resources.pids = { limit: spec.pidsLimit };
    linux.resources = resources;
  }
  const tmpOptions = ['nosuid', 'nodev', 'mode=1777', ...(spec.tmpBytes !== undefined ? [`size=${spec.tmpBytes}`] : [])];
  return {
    ociVersion: '1.0.0',
    process: {
      user: { uid: 0, gid: 0 },
      args: spec.command,
      env,
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, inheritable: caps, permitted: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 65536, soft: 65536 }],
    },
    root: { path: path.resolve(spec.rootfs), readonly: true },
    hostname: 'sandbox',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs' },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: tmpOptions },
      // Per-actor writable launch directories (credentials the bootstrap agent writes), in the sandbox's memory.
      ...LAUNCH_WRITABLE_DIRS.filter((d) => fs.existsSync(path.join(spec.rootfs, d))).map((d) => ({
        destination: `/${d}`,
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'nodev', 'noexec', 'mode=755', `size=${LAUNCH_DIR_BYTES}`],
      })),
    ],
    linux,
  };
}

/** Reads and checks a snapshot directory; throws FAILED_PRECONDITION naming what is wrong. */
export async function readSnapshot(snapshotDir: string): Promise<SnapshotFile> {
  const dir = path.resolve(snapshotDir);
  let st: fs.Stats;
  try {
    st = await fsp.stat(dir);
  } catch {
    throw failedPrecondition(`snapshot ${path.basename(dir)} does not exist`);
  }
  if (!st.isDirectory()) throw failedPrecondition(`snapshot ${path.basename(dir)} is not a directory`);
  let meta: SnapshotFile;
  try {
    meta = JSON.parse(await fsp.readFile(path.join(dir, 'meta.json'), 'utf8')) as SnapshotFile;
  } catch (e) {
    throw failedPrecondition(`snapshot ${path.basename(dir)} is unusable: meta.json is ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'corrupt'}`);
  }
  if (
    meta?.format !== SNAPSHOT_FORMAT ||
    typeof meta.imageDigest !== 'string' ||
    typeof meta.platform !== 'string' ||
    typeof meta.runscVersion !== 'string' ||
    typeof meta.files !== 'object' ||
    meta.files === null ||
    !('checkpoint.img' in meta.files)
  ) {
    throw failedPrecondition(`snapshot ${path.basename(dir)} is unusable: meta.json is corrupt or not a ${SNAPSHOT_FORMAT} file`);
  }
  for (const [name, size] of Object.entries(meta.files)) {
    let actual: number;
    try {
      actual = (await fsp.stat(path.join(dir, name))).size;
    } catch {
      throw failedPrecondition(`snapshot ${path.basename(dir)} is unusable: ${name} is missing`);
    }
    if (actual !== size) throw failedPrecondition(`snapshot ${path.basename(dir)} is unusable: ${name} does not have the size its meta.json records (truncated or corrupt)`);
  }
  return meta;
}

async function fsyncPath(p: string): Promise<void> {
  const fh = await fsp.open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** rename(tmp → dest); an existing dest is moved aside first and removed after the new one is in place. */
function storeFull(sandboxSurvived: boolean): ApiError {
  return new ApiError(Code.RESOURCE_EXHAUSTED, `checkpoint failed: the snapshot store is full (no space left on device)${sandboxSurvived ? '; the sandbox keeps running' : ''}`);
}

function isNoSpace(e: unknown): boolean {
  return (e as NodeJS.ErrnoException)?.code === 'ENOSPC' || (e as NodeJS.ErrnoException)?.code === 'EDQUOT';
}

/** mkdir -p, then fsync every directory it created and the parent of the first one, so the path survives a power loss. */
async function mkdirDurable(dir: string): Promise<void> {
  const first = await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  if (!first) return;
  let d = dir;
  for (;;) {
    await fsyncPath(d);
    if (d === first) break;
    d = path.dirname(d);
  }
  await fsyncPath(path.dirname(first));
}

async function replaceDir(tmp: string, dest: string): Promise<void> {
  let aside: string | undefined;
  if (fs.existsSync(dest)) {
    aside = `${dest}.old-${randomBytes(4).toString('hex')}`;
    await fsp.rename(dest, aside);
  }
  await fsp.rename(tmp, dest);
  await fsyncPath(path.dirname(dest));
  if (aside) await fsp.rm(aside, { recursive: true, force: true });
}

function lastLines(s: string, n = 6): string {
  return s.trim().split('\n').slice(-n).join(' | ');
}

/** The lines of runsc output that say what went wrong (not the Go stack traces that may follow). */
export function runscErrorOf(text: string): string {
  const lines = text.split('\n').map((l) => l.trimEnd()).filter(Boolean);
  const noise = /^\s|^gvisor\.dev\/|^goroutine |^created by |^panic\(|^reflect\.|^runtime\.|^main\.|^:$|^\{|^W\d{4} |^I\d{4} /;
  const wanted = lines.filter((l) => !noise.test(l) && /error|failed|cannot|unable|refus|mismatch|EOF|no such|denied|invalid|not supported/i.test(l));
  return (wanted.length ? wanted.slice(0, 3) : lines.slice(-4)).join(' | ').slice(0, 1500);
}

async function logTail(file: string, from: number): Promise<string> {
  try {
    const fh = await fsp.open(file, 'r');
    try {
      const size = (await fh.stat()).size;
      const start = Math.max(from, size - 64 * 1024);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      return runscErrorOf(buf.toString('utf8'));
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}

async function tailSuffix(file: string, from: number): Promise<string> {
  const t = await logTail(file, from);
  return t ? `: ${t}` : '';
}

// ---- forwarder client ------------------------------------------------------------------------------------------

/** Reads one '\n'-terminated line without switching the socket to flowing mode; extra bytes are unshifted. */
export function readLine(sock: Socket, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => done(new Error('timed out waiting for the forwarder')), timeoutMs);
    const done = (err: Error | null, line?: string) => {
      clearTimeout(timer);
      sock.off('readable', onReadable);
      sock.off('error', onErr);
      sock.off('end', onEnd);
      if (err) {
        sock.destroy();
        reject(err);
      } else resolve(line!);
    };
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = sock.read() as Buffer | null) !== null) {
        buf = Buffer.concat([buf, chunk]);
        const i = buf.indexOf(10);
        if (i >= 0) {
          const rest = buf.subarray(i + 1);
          if (rest.length) sock.unshift(rest);
          done(null, buf.subarray(0, i).toString('utf8'));
          return;
        }
        if (buf.length > 4096) {
          done(new Error('forwarder reply too long'));
          return;
        }
      }
    };
    const onErr = (e: Error) => done(e);
    const onEnd = () => done(new Error('forwarder closed the connection'));
    sock.on('readable', onReadable);
    sock.on('error', onErr);
    sock.on('end', onEnd);
  });
}

async function forwarderConnect(sockPath: string, line: string): Promise<Socket> {
  const sock = net.connect(sockPath);
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('error', (e) => reject(unavailableErr(`hub forwarder at ${sockPath} is not reachable: ${e.message}`)));
  });
  sock.write(line + '\n');
  const reply = await readLine(sock, 15_000);
  if (reply === 'OK' || reply.startsWith('OK ')) return sock;
  sock.destroy();
  const what = line.split(' ').slice(0, 2).join(' ');
  throw unavailableErr(`${what}: ${reply.replace(/^ERR /, '')}`);
}

const unavailableErr = (m: string) => unavailable(m);

function pipeBoth(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const kill = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', kill);
  b.on('error', kill);
}
