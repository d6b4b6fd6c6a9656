// kubectl-ate's resource verbs on the released Substrate v0.4 wire, grouped the way this CLI groups them:
//   substrate-driver atespaces create|get|list|delete
//   substrate-driver templates create|get|list|delete        (kubectl ate ... actor-template)
//   substrate-driver tags create|get|list|update|delete
//   substrate-driver egress-policy create|get|update|delete ACTOR -a A [-f FILE]
//   substrate-driver workers list|get|drain|assignments
// Connection, output (-o json|yaml prints the bare object via the generated toJSON) and exit codes are those
// of src/cli/connect.ts. Actors are in src/cli/actors.ts; `local apply` in src/cli/local.ts.
import { readFileSync } from 'node:fs';
import { status as Code } from '@grpc/grpc-js';
import {
  ActorAssignment,
  ActorTemplate,
  Atespace,
  EgressPolicy,
  sandboxClassToJSON,
  Tag,
  TagScope,
  tagScopeToJSON,
  Worker,
  workerStateToJSON,
} from '../gen/ateapi.js';
import type { ControlApi } from '../local/api.js';
import { UsageError, table, type CommandSpec, type FlagSpec, type FlagValues } from './args.js';
import { CONNECTION_FLAGS, OUTPUT_FLAGS, age, CliError, connect, grpcCode, listAll, outputFormat, printObjects, refOf, runGroup, type OutputFormat } from './connect.js';
import { parseEgressPolicyManifest, parseManifests } from './manifests.js';

const ATESPACE: FlagSpec = { type: 'string', short: 'a', arg: 'A', desc: 'atespace' };
const ALL: FlagSpec = { type: 'boolean', short: 'A', desc: 'every atespace' };
const FILE: FlagSpec = { type: 'string', short: 'f', arg: 'FILE', desc: 'manifest file (YAML or JSON); - reads standard input' };
const GUARDS: Record<string, FlagSpec> = {
  uid: { type: 'string', arg: 'UID', desc: 'only if the resource still has this uid (as get -o yaml printed it)' },
  version: { type: 'string', arg: 'N', desc: 'only if the resource is still at this version' },
};
const BASE: Record<string, FlagSpec> = { ...OUTPUT_FLAGS, ...CONNECTION_FLAGS };
const EXIT = 'Exit status: 0 ok, 1 API error (printed as CODE: message), 2 usage, configuration or manifest error.';

export function readManifestFile(path: string): string {
  try {
    return path === '-' ? readFileSync(0, 'utf8') : readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${path === '-' ? 'standard input' : path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function guards(flags: FlagValues): { uid: string; version: number } | undefined {
  if (flags.uid === undefined && flags.version === undefined) return undefined;
  if (flags.uid === '') throw new UsageError('--uid must not be empty');
  let version = 0;
  if (flags.version !== undefined) {
    version = Number(flags.version);
    if (!Number.isSafeInteger(version) || version < 1) throw new UsageError('--version must be a positive integer');
  }
  return { uid: typeof flags.uid === 'string' ? flags.uid : '', version };
}

function requireAtespace(flags: FlagValues, what: string): string {
  const a = flags.atespace;
  if (typeof a !== 'string' || a === '') throw new UsageError(`-a/--atespace is required (${what} live in an atespace)`);
  return a;
}

/** -a A or -A for a list; '' = every atespace. */
function listScope(flags: FlagValues): string {
  if (flags.all === true && flags.atespace !== undefined) throw new UsageError('-a/--atespace and -A/--all are mutually exclusive');
  if (flags.all === true) return '';
  if (typeof flags.atespace !== 'string' || flags.atespace === '') throw new UsageError('give -a ATESPACE to list one atespace, or -A for all');
  return flags.atespace;
}

async function withConnection(flags: FlagValues, fn: (api: ControlApi) => Promise<number>): Promise<number> {
  const c = await connect(flags);
  try {
    return await fn(c.api);
  } finally {
    c.close();
  }
}

function print<T>(items: T[], toJSON: (x: T) => unknown, format: OutputFormat, single: boolean, tableOf: () => string): void {
  if (format === 'table') process.stdout.write(tableOf());
  else printObjects(items.map(toJSON), format, single);
}

// ------------------------------------------------------------------------------------------------ atespaces

const ATESPACES_USAGE = `Usage: substrate-driver atespaces <command> [flags]

Atespaces are the isolation boundary of actors, templates and tags (kubectl ate create|get|delete atespace).

Commands:
  create <name>        create an atespace
  get <name>...        show atespaces
  list                 list every atespace
  delete <name>        delete an empty atespace (no actors or tags left)

${EXIT}
`;

const ATESPACES: Record<string, CommandSpec> = {
  create: { usage: 'substrate-driver atespaces create <name>', summary: 'Create an atespace (CreateAtespace).', flags: BASE, minPositionals: 1, maxPositionals: 1 },
  get: { usage: 'substrate-driver atespaces get <name>... [-o json|yaml]', summary: 'Show atespaces (GetAtespace).', flags: BASE, minPositionals: 1, maxPositionals: 100 },
  list: { usage: 'substrate-driver atespaces list [-o json|yaml]', summary: 'List atespaces (ListAtespaces, every page).', flags: BASE },
  delete: { usage: 'substrate-driver atespaces delete <name> [--uid U --version N]', summary: 'Delete an atespace (DeleteAtespace); it must be empty.', flags: { ...BASE, ...GUARDS }, minPositionals: 1, maxPositionals: 1 },
};

export async function atespacesMain(argv: string[]): Promise<number> {
  return runGroup('atespaces', argv, ATESPACES_USAGE, ATESPACES, async (verb, p) => {
    const format = outputFormat(p.flags);
    const opts = verb === 'delete' ? guards(p.flags) : undefined;
    const rows = (list: Atespace[]) => () => table(['NAME', 'AGE'], list.map((a) => [a.metadata?.name ?? '', age(a.metadata?.createTime)]));
    return withConnection(p.flags, async (api) => {
      const name = p.positionals[0] ?? '';
      switch (verb) {
        case 'create': {
          const a = await api.createAtespace({ atespace: { metadata: { atespace: '', name, uid: '', version: 0 } } });
          if (format === 'table') process.stdout.write(`atespace ${name} created\n`);
          else print([a], Atespace.toJSON, format, true, rows([a]));
          return 0;
        }
        case 'get': {
          const list: Atespace[] = [];
          for (const n of p.positionals) list.push(await api.getAtespace({ atespace: { atespace: '', name: n } }));
          print(list, Atespace.toJSON, format, true, rows(list));
          return 0;
        }
        case 'list': {
          const list = await listAll((pageToken) => api.listAtespaces({ pageSize: 500, pageToken }), (r) => r.atespaces);
          list.sort((x, y) => (x.metadata?.name ?? '').localeCompare(y.metadata?.name ?? ''));
          print(list, Atespace.toJSON, format, false, rows(list));
          return 0;
        }
        case 'delete': {
          const a = await api.deleteAtespace({ atespace: { atespace: '', name }, ...(opts ? { options: opts } : {}) });
          if (format === 'table') process.stdout.write(`atespace ${name} deleted\n`);
          else print([a], Atespace.toJSON, format, true, rows([a]));
          return 0;
        }
      }
      return 2;
    });
  });
}

// ------------------------------------------------------------------------------------------------ templates

const TEMPLATES_USAGE = `Usage: substrate-driver templates <command> [flags]

ActorTemplates (kubectl ate create|get|delete actor-template). Templates are immutable: delete and recreate
to change one. \`substrate-driver local apply -f\` also creates them, with SandboxConfigs, WorkerPools and
atespaces from the same file, and can wait for their golden snapshots.

Commands:
  create -f FILE       create templates from protojson-shaped manifests (one or more documents; - = stdin)
  get <name>... -a A   show templates (-o yaml prints the re-applyable manifest)
  list -a A | -A       list templates
  delete <name> -a A   delete a template (and its golden actor and golden tag)

${EXIT}
`;

export function templateRow(t: ActorTemplate): string[] {
  const g = t.status?.goldenSnapshotStatus;
  return [
    t.metadata?.atespace ?? '',
    t.metadata?.name ?? '',
    t.sandboxConfig ? sandboxClassToJSON(t.sandboxConfig.sandboxClass) : '-',
    g?.goldenTag?.name ? g.goldenTag.name : '',
    g?.errorMessage ? 'ERROR' : '',
    age(t.metadata?.createTime),
  ];
}

export function templatesTable(list: ActorTemplate[]): string {
  return table(['ATESPACE', 'NAME', 'SANDBOX CLASS', 'GOLDEN TAG', 'ERROR', 'AGE'], list.map(templateRow));
}

const TEMPLATES: Record<string, CommandSpec> = {
  create: {
    usage: 'substrate-driver templates create -f FILE [-o json|yaml]',
    summary: 'Create ActorTemplates (CreateActorTemplate) from protojson manifests, as kubectl ate create actor-template -f.',
    flags: { ...BASE, filename: FILE },
  },
  get: {
    usage: 'substrate-driver templates get <name>... -a A [-o json|yaml]',
    summary: 'Show ActorTemplates (GetActorTemplate).',
    flags: { ...BASE, atespace: ATESPACE },
    minPositionals: 1,
    maxPositionals: 100,
  },
  list: { usage: 'substrate-driver templates list -a A | -A [-o json|yaml]', summary: 'List ActorTemplates (ListActorTemplates, every page).', flags: { ...BASE, atespace: ATESPACE, all: ALL } },
  delete: {
    usage: 'substrate-driver templates delete <name> -a A [--uid U --version N]',
    summary: 'Delete an ActorTemplate (DeleteActorTemplate); its golden actor and golden tag go with it.',
    flags: { ...BASE, atespace: ATESPACE, ...GUARDS },
    minPositionals: 1,
    maxPositionals: 1,
  },
};

export async function templatesMain(argv: string[]): Promise<number> {
  return runGroup(
    'templates',
    argv,
    TEMPLATES_USAGE,
    TEMPLATES,
    async (verb, p) => {
      const format = outputFormat(p.flags);
      switch (verb) {
        case 'create': {
          if (typeof p.flags.filename !== 'string') throw new UsageError('-f FILE is required (- reads standard input)');
          const { docs, warnings } = parseManifests(readManifestFile(p.flags.filename), { only: ['ActorTemplate'] });
          for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
          return withConnection(p.flags, async (api) => {
            const created: ActorTemplate[] = [];
            for (const d of docs) {
              if (d.kind !== 'ActorTemplate') continue;
              const t = await api.createActorTemplate({ actorTemplate: d.template });
              created.push(t);
              if (format === 'table') process.stdout.write(`actortemplate ${t.metadata?.atespace}/${t.metadata?.name} created\n`);
            }
            if (format !== 'table') printObjects(created.map((t) => ActorTemplate.toJSON(t)), format, true);
            return 0;
          });
        }
        case 'get': {
          const atespace = requireAtespace(p.flags, 'templates');
          return withConnection(p.flags, async (api) => {
            const list: ActorTemplate[] = [];
            for (const n of p.positionals) list.push(await api.getActorTemplate({ actorTemplate: { atespace, name: n } }));
            print(list, ActorTemplate.toJSON, format, true, () => templatesTable(list));
            return 0;
          });
        }
        case 'list': {
          const atespace = listScope(p.flags);
          return withConnection(p.flags, async (api) => {
            const list = await listAll((pageToken) => api.listActorTemplates({ atespace, pageSize: 100, pageToken }), (r) => r.actorTemplates);
            print(list, ActorTemplate.toJSON, format, false, () => templatesTable(list));
            return 0;
          });
        }
        case 'delete': {
          const atespace = requireAtespace(p.flags, 'templates');
          const opts = guards(p.flags);
          const name = p.positionals[0]!;
          return withConnection(p.flags, async (api) => {
            const t = await api.deleteActorTemplate({ actorTemplate: { atespace, name }, ...(opts ? { options: opts } : {}) });
            if (format === 'table') process.stdout.write(`actortemplate ${atespace}/${name} deleted\n`);
            else printObjects([ActorTemplate.toJSON(t)], format, true);
            return 0;
          });
        }
      }
      return 2;
    },
  );
}

// ------------------------------------------------------------------------------------------------ tags

const TAGS_USAGE = `Usage: substrate-driver tags <command> [flags]

Tags give a suspended actor's snapshot a stable, atespace-owned name (their own copy); published tags may be
used from other atespaces (kubectl ate create|get|update|delete tag).

Commands:
  create <tag> -a A --actor N [--scope published]   tag the snapshot a suspended actor holds
  get <tag>... -a A                                 show tags
  list -a A | -A                                    list tags
  update <tag> -a A --scope atespace|published      publish or unpublish
  delete <tag> -a A                                 delete a tag (not while actors created from it exist)

${EXIT}
`;

const SCOPE: FlagSpec = { type: 'string', arg: 'SCOPE', desc: 'atespace (default) or published' };

const TAGS: Record<string, CommandSpec> = {
  create: {
    usage: 'substrate-driver tags create <tag> -a A --actor N [--scope published]',
    summary: 'Create a tag (CreateTag) from the snapshot of a SUSPENDED actor.',
    flags: { ...BASE, atespace: ATESPACE, actor: { type: 'string', arg: 'N', desc: 'the suspended actor (in the same atespace)' }, scope: SCOPE },
    minPositionals: 1,
    maxPositionals: 1,
  },
  get: { usage: 'substrate-driver tags get <tag>... -a A [-o json|yaml]', summary: 'Show tags (GetTag).', flags: { ...BASE, atespace: ATESPACE }, minPositionals: 1, maxPositionals: 100 },
  list: { usage: 'substrate-driver tags list -a A | -A [-o json|yaml]', summary: 'List tags (ListTags, every page).', flags: { ...BASE, atespace: ATESPACE, all: ALL } },
  update: {
    usage: 'substrate-driver tags update <tag> -a A --scope atespace|published',
    summary: 'Change a tag\'s scope (UpdateTag, with the uid/version it was read at).',
    flags: { ...BASE, atespace: ATESPACE, scope: SCOPE },
    minPositionals: 1,
    maxPositionals: 1,
  },
  delete: { usage: 'substrate-driver tags delete <tag> -a A [--uid U --version N]', summary: 'Delete a tag (DeleteTag).', flags: { ...BASE, atespace: ATESPACE, ...GUARDS }, minPositionals: 1, maxPositionals: 1 },
};

function scopeOf(v: unknown): TagScope {
  if (v === undefined) return TagScope.TAG_SCOPE_ATESPACE;
  const s = String(v).toLowerCase();
  if (s === 'atespace' || s === 'tag_scope_atespace') return TagScope.TAG_SCOPE_ATESPACE;
  if (s === 'published' || s === 'tag_scope_published') return TagScope.TAG_SCOPE_PUBLISHED;
  throw new UsageError(`--scope must be atespace or published, got "${String(v)}"`);
}

function tagsTable(list: Tag[]): string {
  return table(
    ['ATESPACE', 'NAME', 'SCOPE', 'SOURCE ACTOR', 'AGE'],
    list.map((t) => [
      t.metadata?.atespace ?? '',
      t.metadata?.name ?? '',
      tagScopeToJSON(t.scope).replace(/^TAG_SCOPE_/, ''),
      t.sourceActor ? `${t.sourceActor.atespace}/${t.sourceActor.name}` : '-',
      age(t.metadata?.createTime),
    ]),
  );
}

export async function tagsMain(argv: string[]): Promise<number> {
  return runGroup('tags', argv, TAGS_USAGE, TAGS, async (verb, p) => {
    const format = outputFormat(p.flags);
    const name = p.positionals[0] ?? '';
    switch (verb) {
      case 'create': {
        const atespace = requireAtespace(p.flags, 'tags');
        if (typeof p.flags.actor !== 'string' || p.flags.actor === '') throw new UsageError('--actor NAME is required (the suspended actor whose snapshot is tagged)');
        const scope = scopeOf(p.flags.scope);
        const actor = p.flags.actor;
        return withConnection(p.flags, async (api) => {
          const t = await api.createTag({ tag: Tag.fromPartial({ metadata: { atespace, name }, scope, sourceActor: { atespace, name: actor } }) });
          if (format === 'table') process.stdout.write(`tag ${atespace}/${name} created from actor ${atespace}/${actor}\n`);
          else printObjects([Tag.toJSON(t)], format, true);
          return 0;
        });
      }
      case 'get': {
        const atespace = requireAtespace(p.flags, 'tags');
        return withConnection(p.flags, async (api) => {
          const list: Tag[] = [];
          for (const n of p.positionals) list.push(await api.getTag({ tag: { atespace, name: n } }));
          print(list, Tag.toJSON, format, true, () => tagsTable(list));
          return 0;
        });
      }
      case 'list': {
        const atespace = listScope(p.flags);
        return withConnection(p.flags, async (api) => {
          const list = await listAll((pageToken) => api.listTags({ atespace, pageSize: 500, pageToken }), (r) => r.tags);
          print(list, Tag.toJSON, format, false, () => tagsTable(list));
          return 0;
        });
      }
      case 'update': {
        const atespace = requireAtespace(p.flags, 'tags');
        if (p.flags.scope === undefined) throw new UsageError('--scope atespace|published is required');
        const scope = scopeOf(p.flags.scope);
        return withConnection(p.flags, async (api) => {
          const cur = await api.getTag({ tag: { atespace, name } });
          const t = await api.updateTag({ tag: { ...cur, scope } });
          if (format === 'table') process.stdout.write(`tag ${atespace}/${name} updated (scope ${tagScopeToJSON(t.scope).replace(/^TAG_SCOPE_/, '').toLowerCase()})\n`);
          else printObjects([Tag.toJSON(t)], format, true);
          return 0;
        });
      }
      case 'delete': {
        const atespace = requireAtespace(p.flags, 'tags');
        const opts = guards(p.flags);
        return withConnection(p.flags, async (api) => {
          const t = await api.deleteTag({ tag: { atespace, name }, ...(opts ? { options: opts } : {}) });
          if (format === 'table') process.stdout.write(`tag ${atespace}/${name} deleted\n`);
          else printObjects([Tag.toJSON(t)], format, true);
          return 0;
        });
      }
    }
    return 2;
  });
}

// ------------------------------------------------------------------------------------------------ egress-policy

const EGRESS_USAGE = `Usage: substrate-driver egress-policy <command> <actor> -a A [flags]

An actor's egress policy (at most one, named "default"); without one all egress is denied
(kubectl ate create|get|update|delete egress-policy).

Commands:
  create <actor> -a A -f FILE    create it from a manifest (metadata may be omitted)
  get <actor> -a A               show it (-o yaml prints the manifest update takes)
  update <actor> -a A -f FILE    replace it; the manifest's metadata.uid and metadata.version are preconditions
  delete <actor> -a A            delete it (--uid/--version: only if still the one read)

${EXIT}
`;

const EGRESS: Record<string, CommandSpec> = {
  create: {
    usage: 'substrate-driver egress-policy create <actor> -a A -f FILE',
    summary: 'Create an actor\'s egress policy (CreateActorEgressPolicy) from a protojson EgressPolicy manifest.',
    flags: { ...BASE, atespace: ATESPACE, filename: FILE },
    minPositionals: 1,
    maxPositionals: 1,
  },
  get: { usage: 'substrate-driver egress-policy get <actor> -a A [-o json|yaml]', summary: 'Show an actor\'s egress policy (GetActorEgressPolicy).', flags: { ...BASE, atespace: ATESPACE }, minPositionals: 1, maxPositionals: 1 },
  update: {
    usage: 'substrate-driver egress-policy update <actor> -a A -f FILE',
    summary: 'Replace an actor\'s egress policy (UpdateActorEgressPolicy); metadata.uid and metadata.version are required.',
    flags: { ...BASE, atespace: ATESPACE, filename: FILE },
    minPositionals: 1,
    maxPositionals: 1,
  },
  delete: {
    usage: 'substrate-driver egress-policy delete <actor> -a A [--uid U --version N]',
    summary: 'Delete an actor\'s egress policy (DeleteActorEgressPolicy); the actor keeps running with all egress denied.',
    flags: { ...BASE, atespace: ATESPACE, ...GUARDS },
    minPositionals: 1,
    maxPositionals: 1,
  },
};

function policyTable(actor: string, p: EgressPolicy): string {
  return table(['ATESPACE', 'ACTOR', 'RULES', 'VERSION', 'AGE'], [[p.metadata?.atespace ?? '', actor, String(p.rules.length), String(p.metadata?.version ?? 0), age(p.metadata?.createTime)]]);
}

export async function egressPolicyMain(argv: string[]): Promise<number> {
  return runGroup(
    'egress-policy',
    argv,
    EGRESS_USAGE,
    EGRESS,
    async (verb, p) => {
      const format = outputFormat(p.flags);
      const atespace = requireAtespace(p.flags, 'actors');
      const actorName = p.positionals[0]!;
      const actor = { atespace, name: actorName };
      const who = `actor "${actorName}" in atespace "${atespace}"`;
      let manifest: EgressPolicy | undefined;
      if (verb === 'create' || verb === 'update') {
        if (typeof p.flags.filename !== 'string') throw new UsageError('-f FILE is required (- reads standard input)');
        manifest = parseEgressPolicyManifest(readManifestFile(p.flags.filename), { atespace, actor: actorName, update: verb === 'update' });
      }
      const opts = verb === 'delete' ? guards(p.flags) : undefined;
      return withConnection(p.flags, async (api) => {
        // The server answers NOT_FOUND for a missing actor and a missing policy alike: read the actor to tell.
        const notFound = async (e: unknown, none: string): Promise<never> => {
          if (grpcCode(e) !== Code.NOT_FOUND) throw e;
          try {
            await api.getActor({ actor });
          } catch (e2) {
            if (grpcCode(e2) === Code.NOT_FOUND) throw new CliError(`NOT_FOUND: ${who} not found`);
            throw e2;
          }
          throw new CliError(none);
        };
        let out: EgressPolicy;
        switch (verb) {
          case 'get':
            try {
              out = await api.getActorEgressPolicy({ actor });
            } catch (e) {
              if (grpcCode(e) !== Code.NOT_FOUND) throw e;
              try {
                await api.getActor({ actor });
              } catch (e2) {
                if (grpcCode(e2) === Code.NOT_FOUND) throw new CliError(`NOT_FOUND: ${who} not found`);
                throw e2;
              }
              // No policy is a valid state, not a failure: all egress is denied.
              process.stderr.write(`${who} has no egress policy (all egress denied)\n`);
              return 0;
            }
            break;
          case 'create':
            out = await api.createActorEgressPolicy({ actor, egressPolicy: manifest });
            break;
          case 'update':
            try {
              out = await api.updateActorEgressPolicy({ actor, egressPolicy: manifest });
            } catch (e) {
              if (grpcCode(e) === Code.ABORTED) {
                throw new CliError(
                  `ABORTED: the manifest's uid and version preconditions do not match the stored egress policy of ${who} (changed since it was read, or read from another actor's policy); run "egress-policy get -o yaml" again and reapply the edit`,
                );
              }
              out = await notFound(e, `NOT_FOUND: ${who} has no egress policy to update; create it with: substrate-driver egress-policy create`);
            }
            break;
          case 'delete':
            try {
              out = await api.deleteActorEgressPolicy({ actor, ...(opts ? { options: opts } : {}) });
            } catch (e) {
              out = await notFound(e, `NOT_FOUND: ${who} has no egress policy`);
            }
            if (format === 'table') {
              process.stdout.write(`egress policy for ${who} deleted\n`);
              return 0;
            }
            break;
          default:
            return 2;
        }
        if (format === 'table') {
          if (verb === 'create' || verb === 'update') process.stdout.write(`egress policy for ${who} ${verb}d (${out.rules.length} rule${out.rules.length === 1 ? '' : 's'}, version ${out.metadata?.version ?? 0})\n`);
          else process.stdout.write(policyTable(actorName, out));
        } else printObjects([EgressPolicy.toJSON(out)], format, true);
        return 0;
      });
    },
  );
}

// ------------------------------------------------------------------------------------------------ workers

const WORKERS_USAGE = `Usage: substrate-driver workers <command> [flags]

Workers (ListWorkers, GetWorker, DrainWorker, ListWorkerActorAssignments). A worker is named [NAMESPACE/]NAME
as ListWorkers prints it.

Commands:
  list                 list workers: pool, node, state, actors hosted/capacity
  get <worker>         show a worker
  drain <worker>       stop placing actors on a worker (DRAINING)
  assignments <worker> list the actors assigned to a worker

${EXIT}
`;

const WORKERS: Record<string, CommandSpec> = {
  list: { usage: 'substrate-driver workers list [-o json|yaml]', summary: 'List workers (ListWorkers, every page).', flags: BASE },
  get: { usage: 'substrate-driver workers get <worker> [-o json|yaml]', summary: 'Show a worker (GetWorker).', flags: BASE, minPositionals: 1, maxPositionals: 1 },
  drain: { usage: 'substrate-driver workers drain <worker>', summary: 'Drain a worker (DrainWorker): no new actors are placed on it.', flags: BASE, minPositionals: 1, maxPositionals: 1 },
  assignments: {
    usage: 'substrate-driver workers assignments <worker> [-o json|yaml]',
    summary: 'List the actors assigned to a worker (ListWorkerActorAssignments, every page).',
    flags: BASE,
    minPositionals: 1,
    maxPositionals: 1,
  },
};

function workerRef(s: string): { atespace: string; name: string } {
  return refOf(s, '', 'worker');
}

function workersTable(list: Worker[]): string {
  return table(
    ['NAME', 'POOL', 'NODE', 'STATE', 'ACTORS', 'AGE'],
    list.map((w) => [
      w.metadata?.atespace ? `${w.metadata.atespace}/${w.metadata.name}` : (w.metadata?.name ?? ''),
      w.workerPool ? `${w.workerNamespace ? `${w.workerNamespace}/` : ''}${w.workerPool}` : '-',
      w.nodeName || '-',
      workerStateToJSON(w.status?.state ?? 0).replace(/^WORKER_STATE_/, ''),
      `${w.status?.allocated?.actors ?? 0}/${w.status?.capacity?.actors ?? 0}`,
      age(w.metadata?.createTime),
    ]),
  );
}

export async function workersMain(argv: string[]): Promise<number> {
  return runGroup('workers', argv, WORKERS_USAGE, WORKERS, async (verb, p) => {
    const format = outputFormat(p.flags);
    if (p.positionals[0] !== undefined) workerRef(p.positionals[0]);
    return withConnection(p.flags, async (api) => {
      switch (verb) {
        case 'list': {
          const list = await listAll((pageToken) => api.listWorkers({ pageSize: 500, pageToken }), (r) => r.workers);
          print(list, Worker.toJSON, format, false, () => workersTable(list));
          return 0;
        }
        case 'get': {
          const w = await api.getWorker({ worker: workerRef(p.positionals[0]!) });
          print([w], Worker.toJSON, format, true, () => workersTable([w]));
          return 0;
        }
        case 'drain': {
          const w = await api.drainWorker({ worker: workerRef(p.positionals[0]!) });
          if (format === 'table') process.stdout.write(`worker ${p.positionals[0]} ${workerStateToJSON(w.status?.state ?? 0).replace(/^WORKER_STATE_/, '').toLowerCase()}\n`);
          else printObjects([Worker.toJSON(w)], format, true);
          return 0;
        }
        case 'assignments': {
          const worker = workerRef(p.positionals[0]!);
          const list = await listAll((pageToken) => api.listWorkerActorAssignments({ worker, pageSize: 500, pageToken }), (r) => r.actorAssignments);
          print(list, ActorAssignment.toJSON, format, false, () =>
            table(
              ['ACTOR', 'UID', 'TEMPLATE', 'EPOCH'],
              list.map((x) => [x.actor ? `${x.actor.atespace}/${x.actor.name}` : '-', x.actorUid, x.actorTemplateRef ? `${x.actorTemplateRef.atespace}/${x.actorTemplateRef.name}` : '-', String(x.workerEpoch)]),
            ),
          );
          return 0;
        }
      }
      return 2;
    });
  });
}
