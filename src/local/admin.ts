// The local Substrate's admin service (proto/local_admin.proto, `substrate.local.v1.LocalAdmin`): `local apply -f`
// of the objects upstream keeps as cluster CRDs, WorkerPool and SandboxConfig, which ateapi does not carry.
// Bound to the WorkerPoolRegistry and SandboxConfigRegistry of src/local/api.ts. src/local/server.ts serves it
// only on the instance's Unix socket (0600, owner-only) and refuses to start it on TCP.
//
// This module maps messages to specs and back; the registries own validation and storage. Map fields are
// rebuilt with Object.fromEntries (own properties only); the server already refused a `__proto__` map key
// before decoding.
import type * as adm from '../gen/local_admin.js';
import { invalid } from '../common/errors.js';
import type { SandboxConfigRegistry, SandboxConfigSpec, WorkerPoolRegistry, WorkerPoolSpec } from './api.js';

export interface AdminRegistries {
  workerPools: WorkerPoolRegistry;
  sandboxConfigs: SandboxConfigRegistry;
}

const CLASSES = ['gvisor', 'microvm'] as const;

/** `spec.sandboxClass`: gvisor or microvm; empty means gvisor, the CRDs' default. */
function sandboxClassOf(path: string, v: string): 'gvisor' | 'microvm' {
  if (v === '') return 'gvisor';
  if ((CLASSES as readonly string[]).includes(v)) return v as 'gvisor' | 'microvm';
  throw invalid(`${path}: Unsupported value: ${JSON.stringify(v)}: supported values: "gvisor", "microvm"`);
}

export function workerPoolSpecOf(p: adm.WorkerPool): WorkerPoolSpec {
  return {
    namespace: p.namespace,
    name: p.name,
    labels: Object.fromEntries(Object.entries(p.labels)),
    replicas: p.replicas,
    sandboxClass: sandboxClassOf('worker_pool.sandbox_class', p.sandboxClass),
    workerImage: p.workerImage,
  };
}

export function workerPoolMessageOf(s: WorkerPoolSpec): adm.WorkerPool {
  return {
    namespace: s.namespace,
    name: s.name,
    labels: Object.fromEntries(Object.entries(s.labels)),
    replicas: s.replicas,
    sandboxClass: s.sandboxClass,
    workerImage: s.workerImage,
  };
}

export function sandboxConfigSpecOf(c: adm.SandboxConfig): SandboxConfigSpec {
  const spec: SandboxConfigSpec = { name: c.name, sandboxClass: sandboxClassOf('sandbox_config.sandbox_class', c.sandboxClass) };
  if (c.pauseImage) spec.pauseImage = c.pauseImage;
  const arches = Object.entries(c.assets);
  if (arches.length > 0) {
    spec.assets = Object.fromEntries(
      arches.map(([arch, a]) => [arch, Object.fromEntries(Object.entries(a.files).map(([n, f]) => [n, { url: f.url, sha256: f.sha256 }]))]),
    );
  }
  // built_in is output only: whatever the request says is ignored.
  return spec;
}

export function sandboxConfigMessageOf(s: SandboxConfigSpec): adm.SandboxConfig {
  return {
    name: s.name,
    sandboxClass: s.sandboxClass,
    pauseImage: s.pauseImage ?? '',
    assets: Object.fromEntries(
      Object.entries(s.assets ?? {}).map(([arch, files]) => [
        arch,
        { files: Object.fromEntries(Object.entries(files).map(([n, f]) => [n, { url: f.url, sha256: f.sha256 }])) },
      ]),
    ),
    builtIn: !!s.builtIn,
  };
}

/** One promise function per LocalAdmin RPC, keyed as the generated service definition. */
export function localAdminMethods(r: AdminRegistries): {
  applyWorkerPool(req: adm.ApplyWorkerPoolRequest): Promise<adm.WorkerPool>;
  listWorkerPools(req: adm.ListWorkerPoolsRequest): Promise<adm.ListWorkerPoolsResponse>;
  deleteWorkerPool(req: adm.DeleteWorkerPoolRequest): Promise<adm.DeleteWorkerPoolResponse>;
  applySandboxConfig(req: adm.ApplySandboxConfigRequest): Promise<adm.SandboxConfig>;
  listSandboxConfigs(req: adm.ListSandboxConfigsRequest): Promise<adm.ListSandboxConfigsResponse>;
  deleteSandboxConfig(req: adm.DeleteSandboxConfigRequest): Promise<adm.DeleteSandboxConfigResponse>;
} {
  return {
    async applyWorkerPool(req) {
      if (!req.workerPool) throw invalid('worker_pool: Required value');
      return workerPoolMessageOf(await r.workerPools.applyWorkerPool(workerPoolSpecOf(req.workerPool)));
    },
    async listWorkerPools() {
      return { workerPools: (await r.workerPools.listWorkerPools()).map(workerPoolMessageOf) };
    },
    async deleteWorkerPool(req) {
      await r.workerPools.deleteWorkerPool(req.namespace, req.name);
      return {};
    },
    async applySandboxConfig(req) {
      if (!req.sandboxConfig) throw invalid('sandbox_config: Required value');
      return sandboxConfigMessageOf(await r.sandboxConfigs.applySandboxConfig(sandboxConfigSpecOf(req.sandboxConfig)));
    },
    async listSandboxConfigs() {
      return { sandboxConfigs: (await r.sandboxConfigs.listSandboxConfigs()).map(sandboxConfigMessageOf) };
    },
    async deleteSandboxConfig(req) {
      await r.sandboxConfigs.deleteSandboxConfig(req.name);
      return {};
    },
  };
}
