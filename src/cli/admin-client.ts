// The CLI's client of the local Substrate's LocalAdmin service (proto/local_admin.proto, src/local/admin.ts):
// WorkerPools and SandboxConfigs, served only on the instance's owner-only Unix socket. Speaks the registry
// shapes of src/local/api.ts (WorkerPoolSpec, SandboxConfigSpec) so `local apply` maps manifests once.
import * as grpc from '@grpc/grpc-js';
import * as pb from '../gen/local_admin.js';
import type { SandboxConfigSpec, WorkerPoolSpec } from '../local/api.js';

export interface LocalAdminApi {
  applyWorkerPool(p: WorkerPoolSpec): Promise<WorkerPoolSpec>;
  listWorkerPools(): Promise<WorkerPoolSpec[]>;
  deleteWorkerPool(namespace: string, name: string): Promise<void>;
  applySandboxConfig(c: SandboxConfigSpec): Promise<SandboxConfigSpec>;
  listSandboxConfigs(): Promise<SandboxConfigSpec[]>;
  deleteSandboxConfig(name: string): Promise<void>;
}

const TIMEOUT_MS = 60_000;

export function poolToPb(p: WorkerPoolSpec): pb.WorkerPool {
  return pb.WorkerPool.fromPartial({ namespace: p.namespace, name: p.name, labels: { ...p.labels }, replicas: p.replicas, sandboxClass: p.sandboxClass, workerImage: p.workerImage });
}

export function poolFromPb(p: pb.WorkerPool): WorkerPoolSpec {
  return {
    namespace: p.namespace,
    name: p.name,
    labels: { ...p.labels },
    replicas: p.replicas,
    sandboxClass: p.sandboxClass === 'microvm' ? 'microvm' : 'gvisor',
    workerImage: p.workerImage,
  };
}

export function configToPb(c: SandboxConfigSpec): pb.SandboxConfig {
  const assets: Record<string, pb.ArchAssets> = {};
  for (const [arch, files] of Object.entries(c.assets ?? {})) assets[arch] = { files: { ...files } };
  return pb.SandboxConfig.fromPartial({ name: c.name, sandboxClass: c.sandboxClass, pauseImage: c.pauseImage ?? '', assets, builtIn: false });
}

export function configFromPb(c: pb.SandboxConfig): SandboxConfigSpec {
  const assets: NonNullable<SandboxConfigSpec['assets']> = {};
  for (const [arch, a] of Object.entries(c.assets)) {
    assets[arch] = {};
    for (const [name, f] of Object.entries(a.files)) assets[arch]![name] = { url: f.url, sha256: f.sha256 };
  }
  return {
    name: c.name,
    sandboxClass: c.sandboxClass === 'microvm' ? 'microvm' : 'gvisor',
    ...(c.pauseImage ? { pauseImage: c.pauseImage } : {}),
    ...(Object.keys(assets).length > 0 ? { assets } : {}),
    ...(c.builtIn ? { builtIn: true } : {}),
  };
}

/** A LocalAdmin client on the instance's Unix socket (`unix:/abs/path`). */
export function connectLocalAdmin(target: string): LocalAdminApi & { close(): void } {
  const client = new pb.LocalAdminClient(target, grpc.credentials.createInsecure());
  const call = <Req, Res>(method: string, req: Req): Promise<Res> =>
    new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, Function>)[method]!;
      fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + TIMEOUT_MS }, (err: grpc.ServiceError | null, res: Res) => (err ? reject(err) : resolve(res)));
    });
  return {
    applyWorkerPool: async (p) => poolFromPb(await call<pb.ApplyWorkerPoolRequest, pb.WorkerPool>('applyWorkerPool', { workerPool: poolToPb(p) })),
    listWorkerPools: async () => (await call<pb.ListWorkerPoolsRequest, pb.ListWorkerPoolsResponse>('listWorkerPools', {})).workerPools.map(poolFromPb),
    deleteWorkerPool: async (namespace, name) => {
      await call<pb.DeleteWorkerPoolRequest, pb.DeleteWorkerPoolResponse>('deleteWorkerPool', { namespace, name });
    },
    applySandboxConfig: async (c) => configFromPb(await call<pb.ApplySandboxConfigRequest, pb.SandboxConfig>('applySandboxConfig', { sandboxConfig: configToPb(c) })),
    listSandboxConfigs: async () => (await call<pb.ListSandboxConfigsRequest, pb.ListSandboxConfigsResponse>('listSandboxConfigs', {})).sandboxConfigs.map(configFromPb),
    deleteSandboxConfig: async (name) => {
      await call<pb.DeleteSandboxConfigRequest, pb.DeleteSandboxConfigResponse>('deleteSandboxConfig', { name });
    },
    close: () => client.close(),
  };
}
