// `substrate-driver actors ...`: actor verbs against ateapi.Control on the released Substrate v0.4 wire, as
// kubectl-ate has them (create, get, list, resume, suspend, pause, revert, delete [--any-state]), plus
// today's `migrate` (suspend → UpdateActor(worker_selector) → resume). By default they talk to the local
// instance over its Unix socket; --endpoint/--token-file for another Substrate (src/cli/connect.ts).
import { parseSelector } from '../common/config.js';
import { Actor, ActorState, actorStateToJSON, type Worker } from '../gen/ateapi.js';
import { UsageError, table, type CommandSpec, type FlagSpec, type FlagValues } from './args.js';
import {
  CONNECTION_FLAGS,
  OUTPUT_FLAGS,
  age,
  connect,
  listAll,
  outputFormat,
  printObject,
  printObjects,
  refOf,
  runGroup,
  type Connection,
} from './connect.js';

const COMMON: Record<string, FlagSpec> = {
  atespace: { type: 'string', short: 'a', arg: 'A', desc: 'atespace of the actor (default "default")' },
  json: { type: 'boolean', desc: 'print JSON (same as -o json)' },
  ...OUTPUT_FLAGS,
  ...CONNECTION_FLAGS,
};

const USAGE = `Usage: substrate-driver actors <command> [flags]

Actor commands against ateapi.Control (Substrate v0.4), as kubectl-ate has them. By default they use the local
Substrate running for the state directory, over its Unix socket; --endpoint and --token-file reach another one.

Commands:
  create <name>        create an actor from a template: --template [A/]T [--tag [A/]TAG] [--selector k=v,...]
  list                 list actors (-a A, default "default"; -A/--all for every atespace)
  get <name>           show one actor (-o json|yaml prints the object)
  resume <name>        resume (restore) the actor on a worker
  suspend <name>       checkpoint to an external snapshot and free the worker
  pause <name>         checkpoint to a node-local snapshot and free the worker
  revert <name>        discard running, paused or crashed state: back to SUSPENDED on its last snapshot
  migrate <name>       suspend, optionally change the worker selector (UpdateActor), resume; prints both workers
  delete <name>        delete a suspended or crashed actor (--any-state: from any state)

Exit status: 0 ok, 1 API error (printed as CODE: message), 2 usage or configuration error.
Run "substrate-driver actors <command> --help" for its flags.
`;

const one = (verb: string, summary: string, extra: Record<string, FlagSpec> = {}, usageExtra = ''): CommandSpec => ({
  usage: `substrate-driver actors ${verb} <name> [-a A]${usageExtra} [flags]`,
  summary,
  flags: { ...COMMON, ...extra },
  minPositionals: 1,
  maxPositionals: 1,
});

const SPECS: Record<string, CommandSpec> = {
  create: one(
    'create',
    'Create an actor (CreateActor). It starts SUSPENDED on the template\'s golden snapshot (or the tag\'s), or cold-boots when there is none.',
    {
      template: { type: 'string', short: 't', arg: '[A/]T', desc: 'the ActorTemplate (a bare name is in the actor\'s atespace)' },
      tag: { type: 'string', arg: '[A/]TAG', desc: 'start from this tag\'s snapshot instead of the golden one' },
      selector: { type: 'string', arg: 'k=v,k=v', desc: 'worker selector (match labels)' },
    },
    ' --template [A/]T [--tag [A/]TAG]',
  ),
  list: {
    usage: 'substrate-driver actors list [-a A | -A] [-o json|yaml]',
    summary: 'List actors (ListActors, every page).',
    flags: { ...COMMON, all: { type: 'boolean', short: 'A', desc: 'every atespace' }, 'all-atespaces': { type: 'boolean', desc: 'same as -A' } },
  },
  get: one('get', 'Show one actor (GetActor).'),
  resume: one('resume', 'Resume an actor (ResumeActor).', {
    boot: { type: 'boolean', desc: 'not in Substrate v0.4 (ResumeActorRequest.boot was removed); rejected' },
  }),
  suspend: one('suspend', 'Suspend an actor (SuspendActor): external snapshot, worker freed.'),
  pause: one('pause', 'Pause an actor (PauseActor): node-local snapshot, worker freed.'),
  revert: one('revert', 'Revert an actor (RevertActor): back to SUSPENDED on its last external snapshot.'),
  migrate: one('migrate', 'Move an actor: SuspendActor, optionally UpdateActor with a new worker selector, ResumeActor.', {
    selector: { type: 'string', arg: 'k=v,k=v', desc: 'new worker selector (replaces the old one; "" clears it)' },
  }),
  delete: one('delete', 'Delete an actor (DeleteActor; SUSPENDED or CRASHED unless --any-state).', {
    'any-state': { type: 'boolean', desc: 'delete from any state (terminates a running workload)' },
    uid: { type: 'string', arg: 'UID', desc: 'delete only if the actor still has this uid' },
    version: { type: 'string', arg: 'N', desc: 'delete only if the actor is still at this version' },
  }),
};

export function stateName(s: ActorState | undefined): string {
  return actorStateToJSON(s ?? ActorState.ACTOR_STATE_UNSPECIFIED).replace(/^ACTOR_STATE_/, '');
}

function workerOf(a: Actor): string {
  const w = a.status?.workerAssignment;
  if (!w) return '';
  if (w.worker?.name) return w.worker.atespace ? `${w.worker.atespace}/${w.worker.name}` : w.worker.name;
  return w.workerPod ? `${w.workerNamespace}/${w.workerPod}` : '';
}

function nodeOf(a: Actor, workers: Worker[] = []): string {
  const w = a.status?.workerAssignment;
  if (w?.nodeName) return w.nodeName;
  const ws = workers.find((x) => x.metadata?.name === w?.worker?.name);
  return ws?.nodeName ?? a.status?.assignedNode ?? '';
}

function refText(r: { atespace: string; name: string } | undefined): string {
  return r ? `${r.atespace}/${r.name}` : '-';
}

function printActor(a: Actor, format: 'table' | 'json' | 'yaml'): void {
  if (format !== 'table') {
    printObject(Actor.toJSON(a), format);
    return;
  }
  const md = a.metadata;
  const snap = a.status?.externalSnapshot;
  const local = a.status?.localSnapshot;
  const lines = [
    `name:        ${md?.name ?? ''}`,
    `atespace:    ${md?.atespace ?? ''}`,
    `state:       ${stateName(a.status?.state)}`,
    `version:     ${md?.version ?? 0}`,
    `uid:         ${md?.uid ?? ''}`,
    `template:    ${refText(a.actorTemplate)}`,
    `source tag:  ${a.sourceTag ? refText(a.sourceTag) : '-'}`,
    `worker:      ${workerOf(a) || '-'}${a.status?.workerAssignment?.workerPodIps.length ? ` (${a.status.workerAssignment.workerPodIps.join(', ')})` : ''}`,
    `node:        ${nodeOf(a) || '-'}`,
    `selector:    ${Object.entries(a.workerSelector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '-'}`,
    `snapshot:    ${snap?.snapshotUri ? `external ${snap.snapshotUri}` : '-'}${local?.snapshotName ? `; local ${local.snapshotName}` : ''}`,
    `age:         ${age(md?.createTime)}`,
  ];
  if (a.status?.crash?.message) lines.push(`crash:       ${a.status.crash.message}`);
  process.stdout.write(lines.join('\n') + '\n');
}

function selectorOf(v: unknown): Record<string, string> | undefined {
  if (typeof v !== 'string') return undefined;
  try {
    return parseSelector(v);
  } catch (e) {
    throw new UsageError(`--selector: ${(e as Error).message}`);
  }
}

function deleteOptions(flags: FlagValues): { uid: string; version: number } | undefined {
  const uid = flags.uid;
  const version = flags.version;
  if (uid === undefined && version === undefined) return undefined;
  if (uid === '') throw new UsageError('--uid must not be empty');
  let n = 0;
  if (version !== undefined) {
    n = Number(version);
    if (!Number.isSafeInteger(n) || n < 1) throw new UsageError('--version must be a positive integer');
  }
  return { uid: typeof uid === 'string' ? uid : '', version: n };
}

export async function main(argv: string[]): Promise<number> {
  return runGroup('actors', argv, USAGE, SPECS, async (verb, p) => {
    const format = outputFormat(p.flags);
    const atespace = (p.flags.atespace as string | undefined) ?? 'default';
    const selector = selectorOf(p.flags.selector);
    if (verb === 'resume' && p.flags.boot === true) {
      throw new UsageError('--boot: Substrate v0.4 has no cold-boot resume (ResumeActorRequest.boot was removed); an actor without a snapshot boots cold');
    }
    if (verb === 'create' && typeof p.flags.template !== 'string') throw new UsageError('--template [ATESPACE/]TEMPLATE is required');
    const delOpts = verb === 'delete' ? deleteOptions(p.flags) : undefined;
    if (verb === 'list' && (p.flags.all || p.flags['all-atespaces']) && p.flags.atespace !== undefined) throw new UsageError('-a/--atespace and -A/--all are mutually exclusive');
    const ref = { atespace, name: p.positionals[0] ?? '' };
    // Checked before dialing, so a mistake costs no connection.
    const refs =
      verb === 'create'
        ? { template: refOf(p.flags.template as string, atespace, '--template'), tag: typeof p.flags.tag === 'string' ? refOf(p.flags.tag, atespace, '--tag') : undefined }
        : undefined;
    const c = await connect(p.flags);
    try {
      return await run(c, verb, p.flags, ref, format, selector, delOpts, refs);
    } finally {
      c.close();
    }
  });
}

async function run(
  c: Connection,
  verb: string,
  flags: FlagValues,
  ref: { atespace: string; name: string },
  format: 'table' | 'json' | 'yaml',
  selector: Record<string, string> | undefined,
  delOpts: { uid: string; version: number } | undefined,
  refs?: { template: { atespace: string; name: string }; tag?: { atespace: string; name: string } },
): Promise<number> {
  const legacyJson = flags.json === true && flags.output === undefined;
  const show = `${ref.atespace}/${ref.name}`;
  switch (verb) {
    case 'create': {
      const { template, tag } = refs!;
      const a = await c.api.createActor({
        actor: Actor.fromPartial({
          metadata: { atespace: ref.atespace, name: ref.name },
          actorTemplate: template,
          ...(tag ? { sourceTag: tag } : {}),
          ...(selector && Object.keys(selector).length > 0 ? { workerSelector: { matchLabels: selector } } : {}),
        }),
      });
      if (format !== 'table') printActor(a, format);
      else process.stdout.write(`actor ${show} created (${stateName(a.status?.state)}, template ${refText(a.actorTemplate)}${a.sourceTag ? `, tag ${refText(a.sourceTag)}` : ''})\n`);
      return 0;
    }
    case 'list': {
      const all = flags.all === true || flags['all-atespaces'] === true;
      const actors = await listAll((pageToken) => c.api.listActors({ atespace: all ? '' : ref.atespace, pageSize: 500, pageToken }), (r) => r.actors);
      actors.sort((x, y) => (x.metadata?.atespace ?? '').localeCompare(y.metadata?.atespace ?? '') || (x.metadata?.name ?? '').localeCompare(y.metadata?.name ?? ''));
      if (legacyJson) {
        process.stdout.write(JSON.stringify(actors.map((a) => Actor.toJSON(a)), null, 2) + '\n');
      } else if (format !== 'table') {
        printObjects(actors.map((a) => Actor.toJSON(a)), format, false);
      } else {
        process.stdout.write(
          table(
            ['ATESPACE', 'NAME', 'TEMPLATE', 'STATE', 'WORKER', 'NODE', 'VERSION', 'AGE'],
            actors.map((a) => [
              a.metadata?.atespace ?? '',
              a.metadata?.name ?? '',
              refText(a.actorTemplate),
              stateName(a.status?.state),
              workerOf(a) || '-',
              nodeOf(a) || '-',
              String(a.metadata?.version ?? 0),
              age(a.metadata?.createTime),
            ]),
          ),
        );
      }
      return 0;
    }
    case 'get':
      printActor(await c.api.getActor({ actor: ref }), format);
      return 0;
    case 'resume':
    case 'suspend':
    case 'pause':
    case 'revert': {
      const t0 = Date.now();
      let a: Actor | undefined;
      let note = '';
      if (verb === 'resume') {
        const r = await c.api.resumeActor({ actor: ref });
        a = r.actor;
        if (!r.resumed) note = ' (already running)';
      } else if (verb === 'suspend') a = (await c.api.suspendActor({ actor: ref })).actor;
      else if (verb === 'pause') a = (await c.api.pauseActor({ actor: ref })).actor;
      else a = (await c.api.revertActor({ actor: ref })).actor;
      const ms = Date.now() - t0;
      if (legacyJson) process.stdout.write(JSON.stringify({ actor: a ? Actor.toJSON(a) : null, ms }) + '\n');
      else if (format !== 'table') printActor(a ?? Actor.fromPartial({}), format);
      else {
        const w = a ? workerOf(a) : '';
        process.stdout.write(`${show}: ${stateName(a?.status?.state)}${w ? ` on ${w}` : ''}${note} (${ms} ms)\n`);
      }
      return 0;
    }
    case 'delete': {
      const a = await c.api.deleteActor({ actor: ref, anyState: flags['any-state'] === true, ...(delOpts ? { options: delOpts } : {}) });
      if (legacyJson) process.stdout.write(JSON.stringify({ atespace: ref.atespace, name: ref.name, deleted: true }) + '\n');
      else if (format !== 'table') printActor(a, format);
      else process.stdout.write(`actor ${show} deleted\n`);
      return 0;
    }
    case 'migrate': {
      const t0 = Date.now();
      const workers = await listAll((pageToken) => c.api.listWorkers({ pageSize: 500, pageToken }), (r) => r.workers).catch(() => [] as Worker[]);
      let a = await c.api.getActor({ actor: ref });
      const from = { worker: workerOf(a), node: nodeOf(a, workers) };
      // v0.4: SuspendActor also takes a PAUSED actor (it uploads the node-local snapshot; no worker needed).
      if (a.status?.state !== ActorState.ACTOR_STATE_SUSPENDED) a = (await c.api.suspendActor({ actor: ref })).actor ?? (await c.api.getActor({ actor: ref }));
      if (selector !== undefined) {
        a = await c.api.getActor({ actor: ref });
        a = await c.api.updateActor({ actor: { ...a, workerSelector: { matchLabels: selector } } });
      }
      a = (await c.api.resumeActor({ actor: ref })).actor ?? (await c.api.getActor({ actor: ref }));
      const ms = Date.now() - t0;
      const workersAfter = await listAll((pageToken) => c.api.listWorkers({ pageSize: 500, pageToken }), (r) => r.workers).catch(() => [] as Worker[]);
      const to = { worker: workerOf(a), node: nodeOf(a, workersAfter) };
      if (legacyJson || format === 'json') {
        process.stdout.write(JSON.stringify({ atespace: ref.atespace, name: ref.name, from, to, ms, status: stateName(a.status?.state) }) + '\n');
      } else {
        const fmt = (w: { worker: string; node: string }) => (w.worker ? `${w.worker}${w.node ? ` (node ${w.node})` : ''}` : '(not running)');
        process.stdout.write(`migrated ${show}: ${fmt(from)} -> ${fmt(to)} in ${ms} ms\n`);
      }
      return 0;
    }
  }
  return 2;
}
