// What the driver needs from its collaborators, as narrow interfaces. The production implementations are
// the ateapi client (src/substrate/client.ts) and the TemplateStore of src/template/ over
// @kubernetes/client-node (the same store in cluster and local mode: the local Substrate serves a
// Kubernetes-shaped API on loopback). See src/driver/adapters.ts for the wiring.
import type { Actor, ActorRef, Atespace } from '../gen/june/ateapi.js';
import type { DriverSandbox } from '../gen/compute_driver.js';
import type { ActorTemplate } from '../template/types.js';

/** The subset of SubstrateClient the driver uses. */
export interface ControlPort {
  getActor(ref: ActorRef): Promise<Actor>;
  findActor(ref: ActorRef): Promise<Actor | undefined>;
  createActor(req: {
    actorRef: ActorRef;
    actorTemplateNamespace: string;
    actorTemplateName: string;
    workerSelector?: { matchLabels: Record<string, string> };
  }): Promise<Actor>;
  resumeActor(ref: ActorRef, boot?: boolean): Promise<Actor>;
  suspendActor(ref: ActorRef): Promise<Actor>;
  pauseActor(ref: ActorRef): Promise<Actor>;
  deleteActor(ref: ActorRef): Promise<void>;
  listAllActors(atespace?: string): Promise<Actor[]>;
  ensureAtespace(name: string): Promise<void>;
  getAtespace(name: string): Promise<Atespace>;
  deleteAtespace(name: string): Promise<void>;
}

/** A Secret as the driver reads and writes it: string values (the store handles base64). */
export interface StoredSecret {
  name: string;
  labels: Record<string, string>;
  data: Record<string, string>;
}

export interface WaitProgress {
  phase: string;
  message: string;
}

/** The subset of the TemplateStore the driver uses. */
export interface StorePort {
  ensureNamespace(namespace: string): Promise<void>;
  applyTemplate(t: ActorTemplate): Promise<void>;
  getTemplate(namespace: string, name: string): Promise<ActorTemplate | null>;
  /** Deletes the template only when it carries the driver's owner annotation; true when deleted. */
  deleteOwnedTemplate(namespace: string, name: string): Promise<boolean>;
  waitTemplateReady(
    namespace: string,
    name: string,
    opts: { timeoutMs: number; signal?: AbortSignal; onProgress?: (p: WaitProgress) => void },
  ): Promise<void>;
  putSecret(namespace: string, name: string, data: Record<string, string>, labels: Record<string, string>): Promise<void>;
  getSecret(namespace: string, name: string): Promise<StoredSecret | null>;
  listSecrets(namespace: string, labelSelector: string): Promise<StoredSecret[]>;
  /** true when a secret was deleted, false when none existed. */
  deleteSecret(namespace: string, name: string): Promise<boolean>;
}

/** Template synthesis and naming (src/template/). */
export interface TemplatePort {
  /** Throws an ApiError (INVALID_ARGUMENT / FAILED_PRECONDITION) naming what to fix. */
  validate(sandbox: DriverSandbox): void;
  /** `hasToken`: whether the sandbox's Secret holds a non-empty token the template should reference. */
  synthesize(sandbox: DriverSandbox, hasToken: boolean): ActorTemplate;
  templateNameFor(id: string): string;
  tokenSecretNameFor(id: string): string;
  /** Key of the sandbox token inside the per-sandbox Secret the synthesized template references. */
  tokenSecretKey: string;
}
