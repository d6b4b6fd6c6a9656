// A stand-in for the actor and atespace RPCs of the local Substrate (src/local/actors.ts, atespaces.ts), for
// the template and tag tests that exercise the real Templates and Tags modules without gVisor. It keeps the
// v0.4 rules those modules rely on: a new actor is SUSPENDED without a snapshot; resume → RUNNING; suspend
// from RUNNING writes a new actor-owned external snapshot and deletes the previous one; delete only from
// SUSPENDED or CRASHED unless any_state, removing the actor's own snapshot; a crashing resume leaves the actor
// CRASHED. It records every call and forwards tag and template RPCs to the real Tags and Templates.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as pb from '../../src/gen/ateapi.js';
import { ApiError, Code, aborted, alreadyExists, failedPrecondition, notFound } from '../../src/common/errors.js';
import type { ControlApi } from '../../src/local/api.js';
import type { SnapshotStore } from '../../src/local/snapshots.js';
import type { Tags } from '../../src/local/tags.js';
import type { Templates } from '../../src/local/templates.js';

export class StandInControl implements ControlApi {
  readonly calls: string[] = [];
  readonly atespaces = new Map<string, pb.Atespace>();
  readonly actors = new Map<string, pb.Actor>();
  templates!: Templates;
  tags!: Tags;
  /** Actor names whose next resume crashes them (crash message). */
  readonly crashOnResume = new Map<string, string>();
  /** Errors the next resumes throw without changing state (transient failures). */
  readonly resumeErrors: ApiError[] = [];
  private seq = 0;

  constructor(private readonly snapshots: SnapshotStore) {}

  private key = (r: pb.ObjectRef) => `${r.atespace}/${r.name}`;
  private actor(r: pb.ObjectRef | undefined): pb.Actor {
    const a = r && this.actors.get(this.key(r));
    if (!a) throw notFound(`Actor ${r ? this.key(r) : ''} not found`);
    return a;
  }
  private set(a: pb.Actor, status: Partial<pb.ActorStatus>): pb.Actor {
    const next = pb.Actor.fromPartial({ ...a, metadata: { ...a.metadata!, version: a.metadata!.version + 1 }, status: { ...a.status!, ...status } });
    this.actors.set(this.key(a.metadata!), next);
    return next;
  }
  private ownSnapshot(a: pb.Actor): string | undefined {
    const uri = a.status?.externalSnapshot?.snapshotUri;
    return uri && uri.includes(`/actors/${a.metadata!.uid}/`) ? uri : undefined;
  }

  // atespaces
  async createAtespace(r: pb.CreateAtespaceRequest): Promise<pb.Atespace> {
    const name = r.atespace!.metadata!.name;
    this.calls.push(`createAtespace ${name}`);
    if (this.atespaces.has(name)) throw alreadyExists(`Atespace ${name} already exists`);
    const a = { metadata: { atespace: '', name, uid: `as-${++this.seq}`, version: 1 } };
    this.atespaces.set(name, a);
    return a;
  }
  async getAtespace(r: pb.GetAtespaceRequest): Promise<pb.Atespace> {
    const a = this.atespaces.get(r.atespace!.name);
    if (!a) throw notFound(`Atespace ${r.atespace!.name} not found`);
    return a;
  }
  async listAtespaces(): Promise<pb.ListAtespacesResponse> {
    return { atespaces: [...this.atespaces.values()], nextPageToken: '' };
  }
  async deleteAtespace(): Promise<pb.Atespace> {
    throw new ApiError(Code.UNIMPLEMENTED, 'not in the stand-in');
  }

  // actors
  async getActor(r: pb.GetActorRequest): Promise<pb.Actor> {
    return this.actor(r.actor);
  }
  async createActor(r: pb.CreateActorRequest): Promise<pb.Actor> {
    const a = r.actor!;
    const md = a.metadata!;
    this.calls.push(`createActor ${md.atespace}/${md.name}`);
    if (!this.atespaces.has(md.atespace)) throw failedPrecondition(`atespace ${md.atespace} does not exist`);
    if (this.actors.has(`${md.atespace}/${md.name}`)) throw alreadyExists(`Actor ${md.atespace}/${md.name} already exists`);
    let template: pb.ActorTemplate;
    try {
      template = await this.templates.getActorTemplate({ actorTemplate: a.actorTemplate });
    } catch {
      throw failedPrecondition(`actor template not found; ObjectRef: ${a.actorTemplate?.atespace}/${a.actorTemplate?.name} `);
    }
    // Freeze the template's golden default (borrowed, not owned).
    let externalSnapshot: pb.ExternalSnapshot | undefined;
    const golden = template.status?.goldenSnapshotStatus?.goldenTag;
    if (golden) externalSnapshot = (await this.tags.getTag({ tag: golden })).status?.snapshot;
    const out = pb.Actor.fromPartial({
      metadata: { atespace: md.atespace, name: md.name, uid: `00000000-0000-4000-8000-${String(++this.seq).padStart(12, '0')}`, version: 1 },
      actorTemplate: a.actorTemplate,
      status: { state: pb.ActorState.ACTOR_STATE_SUSPENDED, externalSnapshot },
    });
    this.actors.set(`${md.atespace}/${md.name}`, out);
    return out;
  }
  async resumeActor(r: pb.ResumeActorRequest): Promise<pb.ResumeActorResponse> {
    this.calls.push(`resumeActor ${this.key(r.actor!)}`);
    const a = this.actor(r.actor);
    const s = a.status!.state;
    if (s === pb.ActorState.ACTOR_STATE_RUNNING) return { actor: a, resumed: false };
    if (s !== pb.ActorState.ACTOR_STATE_SUSPENDED && s !== pb.ActorState.ACTOR_STATE_PAUSED) {
      throw failedPrecondition(`AssignWorker prerequisite not met for Actor: ${this.key(r.actor!)} (got: ${pb.actorStateToJSON(s)}, want ACTOR_STATE_SUSPENDED or ACTOR_STATE_PAUSED)`);
    }
    const e = this.resumeErrors.shift();
    if (e) throw e;
    const crash = this.crashOnResume.get(a.metadata!.name);
    if (crash !== undefined) {
      this.set(a, { state: pb.ActorState.ACTOR_STATE_CRASHED, crash: { message: crash, crashTime: new Date() } });
      throw aborted(`actor ${this.key(r.actor!)} crashed`);
    }
    return { actor: this.set(a, { state: pb.ActorState.ACTOR_STATE_RUNNING }), resumed: true };
  }
  async suspendActor(r: pb.SuspendActorRequest): Promise<pb.SuspendActorResponse> {
    this.calls.push(`suspendActor ${this.key(r.actor!)}`);
    const a = this.actor(r.actor);
    if (a.status!.state === pb.ActorState.ACTOR_STATE_SUSPENDED) return { actor: a };
    if (a.status!.state !== pb.ActorState.ACTOR_STATE_RUNNING) {
      throw failedPrecondition(`MarkSuspending prerequisite not met for Actor: ${this.key(r.actor!)} (got: ${pb.actorStateToJSON(a.status!.state)}, want ACTOR_STATE_RUNNING or ACTOR_STATE_PAUSED)`);
    }
    const template = await this.templates.getActorTemplate({ actorTemplate: a.actorTemplate });
    const uri = this.snapshots.actorSnapshotUri(template.snapshotConfig!.storageLocation, a.metadata!.atespace, a.metadata!.uid);
    mkdirSync(this.snapshots.dirOf(uri), { recursive: true });
    writeFileSync(join(this.snapshots.dirOf(uri), 'checkpoint.img'), `memory of ${this.key(r.actor!)} #${++this.seq}`);
    await this.snapshots.seal(uri);
    const previous = this.ownSnapshot(a);
    if (previous) await this.snapshots.remove(previous);
    const next = this.set(a, {
      state: pb.ActorState.ACTOR_STATE_SUSPENDED,
      externalSnapshot: { snapshotUri: uri, contentScope: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, actorTemplateUid: template.metadata!.uid },
    });
    return { actor: next };
  }
  async deleteActor(r: pb.DeleteActorRequest): Promise<pb.Actor> {
    this.calls.push(`deleteActor ${this.key(r.actor!)}${r.anyState ? ' any_state' : ''}`);
    const a = this.actor(r.actor);
    const s = a.status!.state;
    if (!r.anyState && s !== pb.ActorState.ACTOR_STATE_SUSPENDED && s !== pb.ActorState.ACTOR_STATE_CRASHED) {
      throw failedPrecondition(`Actor ${this.key(r.actor!)} is not in a deletable state (state: ${pb.actorStateToJSON(s)})`);
    }
    const own = this.ownSnapshot(a);
    if (own) await this.snapshots.remove(own);
    this.actors.delete(this.key(r.actor!));
    return a;
  }
  async listActors(): Promise<pb.ListActorsResponse> {
    return { actors: [...this.actors.values()], nextPageToken: '' };
  }
  async updateActor(): Promise<pb.Actor> {
    throw new ApiError(Code.UNIMPLEMENTED, 'not in the stand-in');
  }
  async pauseActor(): Promise<pb.PauseActorResponse> {
    throw new ApiError(Code.UNIMPLEMENTED, 'not in the stand-in');
  }
  async revertActor(): Promise<pb.RevertActorResponse> {
    throw new ApiError(Code.UNIMPLEMENTED, 'not in the stand-in');
  }

  // tags and templates: the real modules
  createTag = async (r: pb.CreateTagRequest) => (this.calls.push(`createTag ${this.key(r.tag!.metadata!)}`), this.tags.createTag(r));
  getTag = (r: pb.GetTagRequest) => this.tags.getTag(r);
  listTags = (r: pb.ListTagsRequest) => this.tags.listTags(r);
  updateTag = (r: pb.UpdateTagRequest) => this.tags.updateTag(r);
  deleteTag = async (r: pb.DeleteTagRequest) => (this.calls.push(`deleteTag ${this.key(r.tag!)}`), this.tags.deleteTag(r));
  createActorTemplate = (r: pb.CreateActorTemplateRequest) => this.templates.createActorTemplate(r);
  getActorTemplate = (r: pb.GetActorTemplateRequest) => this.templates.getActorTemplate(r);
  listActorTemplates = (r: pb.ListActorTemplatesRequest) => this.templates.listActorTemplates(r);
  deleteActorTemplate = (r: pb.DeleteActorTemplateRequest) => this.templates.deleteActorTemplate(r);

  // not used here
  getActorEgressPolicy = () => Promise.reject(new ApiError(Code.UNIMPLEMENTED, 'not in the stand-in'));
  createActorEgressPolicy = () => Promise.reject(new ApiError(Code.UNIMPLEMENTED, 'not in the stand-in'));
  updateActorEgressPolicy = () => Promise.reject(new ApiError(Code.UNIMPLEMENTED, 'not in the stand-in'));
  deleteActorEgressPolicy = () => Promise.reject(new ApiError(Code.UNIMPLEMENTED, 'not in the stand-in'));
  listWorkers = () => Promise.reject(new ApiError(Code.UNIMPLEMENTED, 'not in the stand-in'));
  getWorker = () => Promise.reject(new ApiError(Code.UNIMPLEMENTED, 'not in the stand-in'));
  drainWorker = () => Promise.reject(new ApiError(Code.UNIMPLEMENTED, 'not in the stand-in'));
  listWorkerActorAssignments = () => Promise.reject(new ApiError(Code.UNIMPLEMENTED, 'not in the stand-in'));
}

// ---------------------------------------------------------------------------------------------------------
