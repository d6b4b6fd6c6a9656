// The contract between the local Substrate's control plane (src/local/control.ts) and the gVisor runtime
// that hosts actors on worker slots (src/local/runtime/). The control plane owns the catalog and the status
// machine; the runtime owns runsc, network namespaces and snapshot files.
import type { Socket } from 'node:net';

/** A worker slot: one network namespace that hosts at most one actor sandbox at a time. */
export interface WorkerSlot {
  /** 0-based slot index, stable for the life of the state directory. */
  index: number;
  /** Virtual node the slot belongs to (pause snapshots stay on their node). */
  node: string;
  /** Network namespace name the sandbox runs in. */
  netns: string;
  /** IPv4 address of the sandbox inside its namespace (reachable only through the hub forwarder). */
  ip: string;
}

/** One egress allowance: a TCP port on the host loopback the workload may reach (through the hub). */
export interface EgressRule {
  host: '127.0.0.1';
  port: number;
}

export interface WorkloadSpec {
  /** argv; argv[0] is resolved inside the root filesystem. */
  command: string[];
  /** Fully resolved environment (no secret references left). */
  env: Record<string, string>;
  /** Absolute path of the image's root filesystem (mounted read-only; /tmp is a tmpfs). */
  rootfs: string;
  /** Content digest of the root filesystem ("sha256:<hex>"), recorded with every snapshot. */
  imageDigest: string;
  /** Optional memory limit in bytes (cgroup memory.limit: past it the sandbox is OOM-killed). */
  memoryLimitBytes?: number;
  /** Optional CPU limit in millicores (cgroup CPU quota: the sandbox is throttled past it). */
  cpuMillis?: number;
  /** Optional limit on the number of tasks (processes and threads) inside the sandbox. */
  pidsLimit?: number;
  /** Optional size of the workload's /tmp (a tmpfs): writes past it fail with ENOSPC. */
  tmpBytes?: number;
  /** Allowed egress; empty means none (an outbound connect fails fast). */
  egress: EgressRule[];
}

/** A running sandbox on a worker. */
export interface SandboxHandle {
  /** runsc container id, fixed length, unique per start. */
  sandboxId: string;
  /** PID of the runsc sandbox process (the one `kill -9` takes down). */
  pid: number;
  worker: WorkerSlot;
}

export interface SnapshotMeta {
  imageDigest: string;
  platform: string;
  runscVersion: string;
  createdAt: string;
  bytes: number;
}

export interface Runtime {
  /** Prepares the hub namespace and forwarder, and removes leftovers of a crashed run. */
  init(): Promise<void>;
  /** Creates (or re-uses) the namespace of a worker slot. Idempotent. */
  prepareWorker(slot: WorkerSlot): Promise<void>;
  /** Cold boot of a workload on a worker. Resolves once the sandbox process runs. */
  boot(slot: WorkerSlot, spec: WorkloadSpec, logFile: string): Promise<SandboxHandle>;
  /**
   * Restore from a snapshot directory on a worker. Verifies the snapshot's image digest equals
   * spec.imageDigest and that the sandbox is alive afterwards; throws a clear error otherwise
   * (a corrupt or missing snapshot is never silently replaced by a cold boot).
   */
  restore(slot: WorkerSlot, spec: WorkloadSpec, snapshotDir: string, logFile: string): Promise<SandboxHandle>;
  /**
   * Checkpoint a running sandbox into snapshotDir atomically (temp dir, fsync, rename). The sandbox is gone
   * afterwards and the worker's namespace is ready for its next sandbox.
   */
  checkpoint(handle: SandboxHandle, snapshotDir: string, meta: Omit<SnapshotMeta, 'bytes' | 'createdAt'>): Promise<SnapshotMeta>;
  /** Removes a sandbox whatever its state (runsc delete --force); no error when already gone. */
  destroy(sandboxId: string): Promise<void>;
  /** Liveness by PID (runsc's own state is not trusted after a kill -9). */
  isAlive(handle: SandboxHandle): boolean;
  /** Liveness by PID and runsc's container status (catches a restored app that died inside a live sandbox). */
  verifyRunning(handle: SandboxHandle): Promise<boolean>;
  /** A TCP connection to ip:port inside a worker namespace, through the hub forwarder. */
  connect(slot: WorkerSlot, port: number): Promise<Socket>;
  /**
   * A sandbox of a previous run that init() adopted (started with adoptLeftovers) and that is still alive:
   * its handle and the image digest it runs. Undefined for anything else.
   */
  adopted(sandboxId: string): { handle: SandboxHandle; imageDigest: string } | undefined;
  /** Sandboxes runsc knows under this runtime's root (for reconciliation after a crash). */
  list(): Promise<Array<{ sandboxId: string; pid: number; status: string }>>;
  /** Stops everything this runtime started and removes its namespaces. */
  shutdown(): Promise<void>;
}
