// What the driver needs from its collaborators, as narrow interfaces. The production implementations are
// the ateapi v0.4 client (src/substrate/client.ts: actors AND templates, one protocol whatever the backend),
// the record backends of record-backends.ts (SQLite locally, Kubernetes Secrets in a cluster) and the pure
// template synthesis of src/template/synthesize.ts. See src/driver/adapters.ts and index.ts for the wiring.
import type * as pb from '../gen/ateapi.js';
import type { DriverSandbox } from '../gen/compute_driver.js';
import type { SynthesizedTemplate } from '../template/synthesize.js';

/** The subset of SubstrateClient the driver uses. */
export interface ControlPort {
  getActor(ref: pb.ObjectRef): Promise<pb.Actor>;
  findActor(ref: pb.ObjectRef): Promise<pb.Actor | undefined>;
  createActor(req: { actor: pb.ObjectRef; template: pb.ObjectRef; workerSelector?: Record<string, string> }): Promise<pb.Actor>;
  resumeActor(ref: pb.ObjectRef): Promise<pb.ResumeActorResponse>;
  suspendActor(ref: pb.ObjectRef): Promise<pb.Actor>;
  pauseActor(ref: pb.ObjectRef): Promise<pb.Actor>;
  revertActor(ref: pb.ObjectRef): Promise<pb.Actor>;
  deleteActor(ref: pb.ObjectRef, o?: { anyState?: boolean; uid?: string; version?: number }): Promise<pb.Actor>;
  listAllActors(atespace?: string): Promise<pb.Actor[]>;
  ensureAtespace(name: string): Promise<void>;
  getAtespace(name: string): Promise<pb.Atespace>;
  deleteAtespace(name: string): Promise<pb.Atespace>;
  createActorTemplate(t: pb.ActorTemplate): Promise<pb.ActorTemplate>;
  getActorTemplate(ref: pb.ObjectRef): Promise<pb.ActorTemplate>;
  findActorTemplate(ref: pb.ObjectRef): Promise<pb.ActorTemplate | undefined>;
  deleteActorTemplate(ref: pb.ObjectRef, o?: { uid?: string; version?: number }): Promise<pb.ActorTemplate>;
}

/**
 * Durable storage of sandbox records, one string map per sandbox id. Values may be secret (the sandbox
 * token, the launch authentication): a backend stores them as its secrets (a 0600 SQLite file, Kubernetes
 * Secrets) and never logs them.
 */
export interface RecordBackend {
  /** Where the records live, for logs (never a secret). */
  readonly describe: string;
  /** Prepares the storage (creates the table / namespace). */
  init(): Promise<void>;
  list(): Promise<Array<{ key: string; data: Record<string, string> }>>;
  /** Creates or replaces the record of `id`. */
  put(id: string, data: Record<string, string>): Promise<void>;
  /** true when a record was deleted, false when none existed. */
  remove(id: string): Promise<boolean>;
  close?(): void;
}

/** Template synthesis (src/template/). */
export interface TemplatePort {
  /** Throws an ApiError (INVALID_ARGUMENT / FAILED_PRECONDITION) naming what to fix. */
  validate(sandbox: DriverSandbox): void;
  /** The sandbox's content-named template (launch mode when the sandbox carries launch authentication). */
  synthesize(sandbox: DriverSandbox): SynthesizedTemplate;
}
