// The driver's side of ActorTemplates on Substrate v0.4: they are ateapi resources (Create/Get/Delete, no
// update), and the driver shares the ones it synthesizes between sandboxes of the same spec.
//
// - ensure(): CreateActorTemplate; ALREADY_EXISTS → reuse after checking the existing one has the same
//   content (the name is the content's hash, so anything else is someone else's template). An existing
//   template whose golden snapshot failed (terminal error_message) and that no other live sandbox uses is
//   deleted and created again, so a transient failure does not poison a spec forever.
// - waitGolden(): polls GetActorTemplate until status.golden_snapshot_status.golden_tag is set (an actor
//   created now borrows the golden snapshot) or error_message is non-empty (terminal). An actor created
//   before the golden tag exists would cold-boot on every resume until its own first suspend.
// - release(): reference counting over the sandbox records — a synthesized template is deleted once no
//   record uses it (which also deletes its golden tag upstream). Pre-provisioned templates are never deleted.
//
// ensure() and release() of one template are serialized in this process (the one owner of the records), so a
// sandbox being created never sees its template deleted under it by one being deleted.
import * as pb from '../gen/ateapi.js';
import { ApiError, Code, grpcCodeOf } from '../common/errors.js';
import { logger } from '../common/log.js';
import { canonicalJson, isSynthesizedTemplateName, templateContentHash, type SynthesizedTemplate } from '../template/synthesize.js';
import type { ControlPort } from './ports.js';
import type { RecordStore } from './records.js';
import { sleep } from '../common/sleep.js';

const log = logger('driver.templates');

export interface GoldenProgress {
  message: string;
}

/** `a/b` of a template. */
export function templateKey(ref: pb.ObjectRef): string {
  return `${ref.atespace}/${ref.name}`;
}

/** The golden snapshot's state: ready (tag), failed (terminal message) or pending. */
export function goldenOf(t: pb.ActorTemplate | undefined): { tag?: pb.ObjectRef; error?: string } {
  const g = t?.status?.goldenSnapshotStatus;
  if (g?.errorMessage) return { error: g.errorMessage };
  if (g?.goldenTag?.name) return { tag: g.goldenTag };
  return {};
}

/** `theirs` restricted to the keys `ours` sets, recursively (a server may materialize defaults on read). */
function projectOnto(ours: unknown, theirs: unknown): unknown {
  if (Array.isArray(ours)) {
    if (!Array.isArray(theirs) || theirs.length !== ours.length) return theirs;
    return ours.map((o, i) => projectOnto(o, theirs[i]));
  }
  if (ours !== null && typeof ours === 'object') {
    if (theirs === null || typeof theirs !== 'object' || Array.isArray(theirs)) return theirs;
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(ours as Record<string, unknown>)) out[k] = projectOnto((ours as Record<string, unknown>)[k], (theirs as Record<string, unknown>)[k]);
    return out;
  }
  return theirs;
}

/** Whether the stored template `theirs` is the content the driver synthesized as `ours`. */
export function sameContent(ours: pb.ActorTemplate, hash: string, theirs: pb.ActorTemplate): boolean {
  if (templateContentHash(theirs) === hash) return true;
  const strip = (t: pb.ActorTemplate) => {
    const j = pb.ActorTemplate.toJSON({ ...t, metadata: undefined, status: undefined }) as Record<string, unknown>;
    delete j.metadata;
    delete j.status;
    return j;
  };
  const o = strip(ours);
  return canonicalJson(o) === canonicalJson(projectOnto(o, strip(theirs)));
}

export interface TemplateManagerOptions {
  control: ControlPort;
  records: RecordStore;
  /** First and longest gap between GetActorTemplate polls (ms). */
  pollMinMs?: number;
  pollMaxMs?: number;
}

export class TemplateManager {
  private readonly locks = new Map<string, Promise<void>>();
  private readonly pollMinMs: number;
  private readonly pollMaxMs: number;

  constructor(private readonly o: TemplateManagerOptions) {
    this.pollMinMs = o.pollMinMs ?? 250;
    this.pollMaxMs = o.pollMaxMs ?? 2000;
  }

  private async locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const chained = prev.then(() => mine);
    this.locks.set(key, chained);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(key) === chained) this.locks.delete(key);
    }
  }

  /**
   * Makes sure the synthesized template exists with this content; returns it as stored. `userId`: the
   * sandbox asking (its record must already exist, so release() by another sandbox keeps the template).
   */
  async ensure(st: SynthesizedTemplate, userId: string): Promise<pb.ActorTemplate> {
    const ref = { atespace: st.template.metadata!.atespace, name: st.template.metadata!.name };
    return this.locked(templateKey(ref), async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          const created = await this.o.control.createActorTemplate(st.template);
          log.info('ActorTemplate created', { template: templateKey(ref) });
          return created;
        } catch (e) {
          if (grpcCodeOf(e) !== Code.ALREADY_EXISTS) throw e;
        }
        const existing = await this.o.control.findActorTemplate(ref);
        if (!existing) {
          if (attempt >= 2) throw new ApiError(Code.ABORTED, `ActorTemplate ${templateKey(ref)} exists and does not: it is being deleted; retry`);
          continue; // deleted between the two calls: create again
        }
        if (!sameContent(st.template, st.hash, existing)) {
          throw new ApiError(
            Code.FAILED_PRECONDITION,
            `ActorTemplate ${templateKey(ref)} already exists with other content than this sandbox's spec (content hash ${st.hash.slice(0, 20)}); the driver did not make it: delete it, or name it with the substrate_actor_template annotation`,
          );
        }
        const golden = goldenOf(existing);
        const others = this.o.records.usersOf(ref.atespace, ref.name, userId).filter((r) => !r.failureReason);
        if (golden.error && others.length === 0 && attempt < 2) {
          // A failed golden snapshot is terminal for that template; nobody live uses it: start over.
          log.info('recreating an ActorTemplate whose golden snapshot failed', { template: templateKey(ref) });
          try {
            await this.o.control.deleteActorTemplate(ref, { uid: existing.metadata?.uid });
          } catch (e) {
            if (grpcCodeOf(e) !== Code.NOT_FOUND) throw e;
          }
          continue;
        }
        log.info('ActorTemplate reused (same spec)', { template: templateKey(ref) });
        return existing;
      }
    });
  }

  /**
   * Polls the template until its golden tag is set (resolves with the template) or its golden snapshot failed
   * (FAILED_PRECONDITION with upstream's `<Reason>: <detail>`). DEADLINE_EXCEEDED after timeoutMs, NOT_FOUND
   * when the template is gone, CANCELLED when `signal` aborts.
   */
  async waitGolden(ref: pb.ObjectRef, o: { timeoutMs: number; signal?: AbortSignal; onProgress?: (p: GoldenProgress) => void }): Promise<pb.ActorTemplate> {
    const deadline = Date.now() + o.timeoutMs;
    let delay = this.pollMinMs;
    let said = '';
    for (;;) {
      if (o.signal?.aborted) throw new ApiError(Code.CANCELLED, `waiting for ActorTemplate ${templateKey(ref)} was cancelled`);
      const t = await this.o.control.getActorTemplate(ref);
      const g = goldenOf(t);
      if (g.error) throw new ApiError(Code.FAILED_PRECONDITION, `the golden snapshot of ActorTemplate ${templateKey(ref)} failed: ${g.error}`);
      if (g.tag) return t;
      const at = t.status?.goldenSnapshotStatus?.takeGoldenSnapshotAt;
      const msg = at ? `golden snapshot due at ${at.toISOString()}` : 'waiting for the golden actor to boot';
      if (msg !== said) {
        said = msg;
        o.onProgress?.({ message: msg });
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ApiError(Code.DEADLINE_EXCEEDED, `ActorTemplate ${templateKey(ref)} had no golden snapshot after ${Math.round(o.timeoutMs / 1000)} s (${msg}); raise template_ready_timeout_secs or check the Substrate's golden actors`);
      }
      await sleep(Math.min(delay, left), o.signal);
      delay = Math.min(this.pollMaxMs, delay * 2);
    }
  }

  /**
   * The sandbox `userId` no longer uses the template: deletes it when it is a synthesized one and no other
   * record uses it. true when deleted. Pre-provisioned templates are never touched.
   */
  async release(ref: pb.ObjectRef, userId: string): Promise<boolean> {
    if (!isSynthesizedTemplateName(ref.name)) return false;
    return this.locked(templateKey(ref), async () => {
      const others = this.o.records.usersOf(ref.atespace, ref.name, userId);
      if (others.length > 0) return false;
      try {
        await this.o.control.deleteActorTemplate(ref);
        log.info('ActorTemplate deleted (no sandbox uses it)', { template: templateKey(ref) });
        return true;
      } catch (e) {
        if (grpcCodeOf(e) === Code.NOT_FOUND) return false;
        throw e;
      }
    });
  }
}
