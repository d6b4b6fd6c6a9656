// The local Substrate's Control API in-process: one promise-returning method per ateapi.Control RPC
// (v0.4, src/gen/ateapi.ts), taking the generated request type and returning the generated response type.
// The gRPC server binds each RPC to the method of the same name; the modules that implement it
// (atespaces, actors, workers, tags, templates, egress) call each other only through this interface, so the
// golden-snapshot flow drives an actor exactly as a client would.
import type * as pb from '../gen/ateapi.js';

export interface ControlApi {
  // actors (src/local/actors.ts)
  getActor(r: pb.GetActorRequest): Promise<pb.Actor>;
  createActor(r: pb.CreateActorRequest): Promise<pb.Actor>;
  updateActor(r: pb.UpdateActorRequest): Promise<pb.Actor>;
  suspendActor(r: pb.SuspendActorRequest): Promise<pb.SuspendActorResponse>;
  pauseActor(r: pb.PauseActorRequest): Promise<pb.PauseActorResponse>;
  resumeActor(r: pb.ResumeActorRequest): Promise<pb.ResumeActorResponse>;
  revertActor(r: pb.RevertActorRequest): Promise<pb.RevertActorResponse>;
  deleteActor(r: pb.DeleteActorRequest): Promise<pb.Actor>;
  listActors(r: pb.ListActorsRequest): Promise<pb.ListActorsResponse>;
  // egress policies (src/local/egress.ts)
  getActorEgressPolicy(r: pb.GetActorEgressPolicyRequest): Promise<pb.EgressPolicy>;
  createActorEgressPolicy(r: pb.CreateActorEgressPolicyRequest): Promise<pb.EgressPolicy>;
  updateActorEgressPolicy(r: pb.UpdateActorEgressPolicyRequest): Promise<pb.EgressPolicy>;
  deleteActorEgressPolicy(r: pb.DeleteActorEgressPolicyRequest): Promise<pb.EgressPolicy>;
  // tags (src/local/tags.ts)
  createTag(r: pb.CreateTagRequest): Promise<pb.Tag>;
  getTag(r: pb.GetTagRequest): Promise<pb.Tag>;
  listTags(r: pb.ListTagsRequest): Promise<pb.ListTagsResponse>;
  updateTag(r: pb.UpdateTagRequest): Promise<pb.Tag>;
  deleteTag(r: pb.DeleteTagRequest): Promise<pb.Tag>;
  // workers (src/local/workers.ts)
  listWorkers(r: pb.ListWorkersRequest): Promise<pb.ListWorkersResponse>;
  getWorker(r: pb.GetWorkerRequest): Promise<pb.Worker>;
  drainWorker(r: pb.DrainWorkerRequest): Promise<pb.Worker>;
  listWorkerActorAssignments(r: pb.ListWorkerActorAssignmentsRequest): Promise<pb.ListWorkerActorAssignmentsResponse>;
  // atespaces (src/local/atespaces.ts)
  createAtespace(r: pb.CreateAtespaceRequest): Promise<pb.Atespace>;
  getAtespace(r: pb.GetAtespaceRequest): Promise<pb.Atespace>;
  listAtespaces(r: pb.ListAtespacesRequest): Promise<pb.ListAtespacesResponse>;
  deleteAtespace(r: pb.DeleteAtespaceRequest): Promise<pb.Atespace>;
  // templates (src/local/templates.ts)
  createActorTemplate(r: pb.CreateActorTemplateRequest): Promise<pb.ActorTemplate>;
  getActorTemplate(r: pb.GetActorTemplateRequest): Promise<pb.ActorTemplate>;
  listActorTemplates(r: pb.ListActorTemplatesRequest): Promise<pb.ListActorTemplatesResponse>;
  deleteActorTemplate(r: pb.DeleteActorTemplateRequest): Promise<pb.ActorTemplate>;
}

/** RPCs the local Substrate answers UNIMPLEMENTED, with why (see src/local/server.ts). */
export const NOT_PROVIDED_LOCALLY: Readonly<Record<string, string>> = {
  MintActorJWT: 'the local Substrate does not mint actor identity JWTs',
  MintActorCertificate: 'the local Substrate does not mint actor certificates',
  CreateWorker: 'local workers are the instance\'s own worker slots; they are not registered through the API',
  UpdateWorker: 'local workers are the instance\'s own worker slots; they are not updated through the API',
  DeleteWorker: 'local workers are the instance\'s own worker slots; they are not deregistered through the API',
  GetGlobalAccessPolicy: 'access policies are not provided by the local Substrate (authorization is off, as in v0.4 without --experimental-enable-authz)',
  CreateGlobalAccessPolicy: 'access policies are not provided by the local Substrate',
  UpdateGlobalAccessPolicy: 'access policies are not provided by the local Substrate',
  GetAtespaceAccessPolicy: 'access policies are not provided by the local Substrate',
  CreateAtespaceAccessPolicy: 'access policies are not provided by the local Substrate',
  UpdateAtespaceAccessPolicy: 'access policies are not provided by the local Substrate',
  DeleteAtespaceAccessPolicy: 'access policies are not provided by the local Substrate',
};

/** Reserved atespace of golden actors (upstream's `ate-golden`). */
export const GOLDEN_ATESPACE = 'ate-golden';
/** The built-in SandboxConfig the local Substrate ships, as upstream's install does. */
export const BUILTIN_SANDBOX_CONFIG = 'gvisor-default';

/**
 * A WorkerPool as the local Substrate keeps it: upstream's `ate.dev/v1alpha1` WorkerPool CRD mapped onto
 * this machine (each replica is one worker slot, a network namespace that hosts one actor at a time).
 * Applied with `local apply -f` through the instance's admin service (src/local/admin.ts), Unix socket only.
 */
export interface WorkerPoolSpec {
  namespace: string;
  name: string;
  /** The pool object's labels: what template and actor worker_selectors match. */
  labels: Record<string, string>;
  replicas: number;
  /** WorkerPool `spec.sandboxClass` vocabulary. */
  sandboxClass: 'gvisor' | 'microvm';
  /** `spec.workerImage` as written (recorded, not run: local workers are this process's own). */
  workerImage: string;
}

export interface WorkerPoolRegistry {
  applyWorkerPool(p: WorkerPoolSpec): Promise<WorkerPoolSpec>;
  listWorkerPools(): Promise<WorkerPoolSpec[]>;
  /** NOT_FOUND when absent; FAILED_PRECONDITION while one of its workers hosts an actor. */
  deleteWorkerPool(namespace: string, name: string): Promise<void>;
}

/** A cluster-scoped SandboxConfig (`ate.dev/v1alpha1`), addendum §2. */
export interface SandboxConfigSpec {
  name: string;
  sandboxClass: 'gvisor' | 'microvm';
  pauseImage?: string;
  /** arch → asset name → {url, sha256}; recorded, not fetched (the local runtime is this machine's runsc). */
  assets?: Record<string, Record<string, { url: string; sha256: string }>>;
  /** True for the built-in `gvisor-default`, which cannot be deleted or replaced. */
  builtIn?: boolean;
}

export interface SandboxConfigRegistry {
  getSandboxConfig(name: string): SandboxConfigSpec | undefined;
  applySandboxConfig(c: SandboxConfigSpec): Promise<SandboxConfigSpec>;
  listSandboxConfigs(): Promise<SandboxConfigSpec[]>;
  deleteSandboxConfig(name: string): Promise<void>;
}
