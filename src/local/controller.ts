// The ActorTemplate controller, as upstream's (shared/reference/ateapi.md §3.2): phases
// "" → ResumeGoldenActor → WaitGoldenActor → Ready, a golden actor with a fresh UUID name in atespace
// `ate-golden`, its snapshot taken once every container's readyz answers (0 s delay) or after 20 s when
// some container has none; then status.goldenSnapshot and condition Ready=True. Errors are retried with
// backoff, as controller-runtime does; the last error is recorded in a Ready=False condition message
// with a transient reason so operators can see why a template is not ready yet.
import { randomUUID } from 'node:crypto';
import { Actor_Status } from '../gen/june/ateapi.js';
import { grpcCodeOf, messageOf, Code } from '../common/errors.js';
import { logger } from '../common/log.js';
import { GOLDEN_ATESPACE, type LocalControl } from './control.js';
import type { Resources, TemplateObj } from './resources.js';

const log = logger('local.templates');
const GOLDEN_DELAY_MS = 20_000;

export class TemplateController {
  private readonly busy = new Map<string, Promise<void>>();
  private readonly abort = new AbortController();
  private readonly backoff = new Map<string, { until: number; delay: number }>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly control: LocalControl,
    private readonly resources: Resources,
  ) {}

  start(): void {
    const tick = async () => {
      if (this.stopped) return;
      try {
        await this.sweep();
      } catch (e) {
        log.warn('template sweep failed', { error: e });
      }
      if (!this.stopped) this.timer = setTimeout(tick, 250);
    };
    this.timer = setTimeout(tick, 0);
  }

  /** Stops reconciling: cancels waits, and resolves once in-flight reconciles have returned. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    if (this.timer) clearTimeout(this.timer);
    await Promise.allSettled([...this.busy.values()]);
  }

  /** Called when a template changes, so reconciliation does not wait for the next sweep. */
  poke(): void {
    void this.sweep().catch(() => undefined);
  }

  private async sweep(): Promise<void> {
    if (this.stopped) return;
    for (const t of await this.resources.listTemplates()) {
      if (this.stopped) return;
      if (t.status?.phase === 'Ready') continue;
      const key = `${t.metadata.namespace}/${t.metadata.name}`;
      const b = this.backoff.get(key);
      if (this.busy.has(key) || (b && Date.now() < b.until)) continue;
      const run = this.reconcile(t)
        .then(() => {
          this.backoff.delete(key);
        })
        .catch(async (e) => {
          if (this.stopped) return;
          const delay = Math.min(30_000, (b?.delay ?? 500) * 2);
          this.backoff.set(key, { until: Date.now() + delay, delay });
          log.warn('template reconcile failed; retrying', { template: key, error: messageOf(e), retryInMs: delay });
          const cur = await this.resources.getTemplate(t.metadata.namespace, t.metadata.name).catch(() => null);
          if (cur) {
            await this.resources
              .setTemplateStatus(t.metadata.namespace, t.metadata.name, {
                ...(cur.status ?? {}),
                conditions: [cond('False', 'Reconciling', `golden snapshot not taken yet: ${messageOf(e)}`)],
              })
              .catch(() => undefined);
          }
        })
        .finally(() => this.busy.delete(key));
      this.busy.set(key, run);
    }
  }

  private async reconcile(t: TemplateObj): Promise<void> {
    if (this.stopped) return;
    const ns = t.metadata.namespace;
    const name = t.metadata.name;
    const status = { ...(t.status ?? {}) };
    const phase = status.phase ?? '';
    if (phase === '') {
      try {
        await this.control.createAtespace(GOLDEN_ATESPACE);
      } catch (e) {
        if (grpcCodeOf(e) !== Code.ALREADY_EXISTS) throw e;
      }
      const id = randomUUID();
      await this.control.createActor({ actorRef: { atespace: GOLDEN_ATESPACE, name: id }, actorTemplateNamespace: ns, actorTemplateName: name, workerSelector: undefined });
      status.goldenActorID = id;
      status.phase = 'ResumeGoldenActor';
      status.conditions = [cond('False', 'Reconciling', 'starting the golden actor')];
      await this.resources.setTemplateStatus(ns, name, status);
      return this.reconcile({ ...t, status });
    }
    if (phase === 'ResumeGoldenActor') {
      await this.control.resumeActor({ actorRef: { atespace: GOLDEN_ATESPACE, name: status.goldenActorID! }, boot: false });
      const allReadyz = t.spec.containers.every((c) => !!c.readyz?.httpGet);
      status.takeGoldenSnapshotAt = new Date(Date.now() + (allReadyz ? 0 : GOLDEN_DELAY_MS)).toISOString();
      status.phase = 'WaitGoldenActor';
      status.conditions = [cond('False', 'Reconciling', 'golden actor running; waiting to take its snapshot')];
      await this.resources.setTemplateStatus(ns, name, status);
      return this.reconcile({ ...t, status });
    }
    if (phase === 'WaitGoldenActor') {
      const wait = Date.parse(status.takeGoldenSnapshotAt ?? '') - Date.now();
      if (wait > 0) await abortableSleep(wait, this.abort.signal);
      if (this.stopped) return;
      const golden = await this.control.suspendActor({ actorRef: { atespace: GOLDEN_ATESPACE, name: status.goldenActorID! } });
      if (golden.status !== Actor_Status.STATUS_SUSPENDED || golden.latestSnapshotInfo?.data?.$case !== 'external') {
        throw new Error('golden actor has no external snapshot after suspend');
      }
      status.goldenSnapshot = golden.latestSnapshotInfo.data.value.snapshotUriPrefix;
      status.phase = 'Ready';
      status.conditions = [cond('True', 'Ready', 'Actor template is ready for use')];
      await this.resources.setTemplateStatus(ns, name, status);
      log.info('template ready', { template: `${ns}/${name}`, goldenActor: status.goldenActorID });
      return;
    }
    throw new Error(`unrecognized phase ${phase}`);
  }
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}

function cond(statusValue: 'True' | 'False', reason: string, message: string) {
  return { type: 'Ready', status: statusValue, reason, message, lastTransitionTime: new Date().toISOString() };
}
