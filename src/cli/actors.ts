// `substrate-driver actors ...`: operator commands against ateapi.Control (a real cluster through the
// configured api_endpoint and TLS settings, or a running local Substrate found through
// <state-dir>/local.json without extra flags).
import { ConfigError, loadConfig, parseSelector, type ConfigKey } from '../common/config.js';
import { Actor, Actor_Status, type Worker } from '../gen/june/ateapi.js';
import { clientFromConfig, resolveApiTarget, type SubstrateClient } from '../substrate/client.js';
import { configFlagValues, configFlags, runSubcommand, table, UsageError, type CommandSpec, type FlagSpec } from './args.js';

const API_KEYS: ConfigKey[] = [
  'state_dir',
  'api_endpoint',
  'api_tls_ca_path',
  'api_tls_cert_path',
  'api_tls_key_path',
  'api_tls_server_name',
  'api_plaintext',
  'api_bearer_token_path',
];

const COMMON: Record<string, FlagSpec> = {
  atespace: { type: 'string', short: 'a', arg: 'A', desc: 'atespace of the actor (default "default")' },
  json: { type: 'boolean', desc: 'print JSON' },
  ...configFlags(API_KEYS),
};

const USAGE = `Usage: substrate-driver actors <command> [flags]

Operator commands against ateapi.Control. Without --api-endpoint they use the local Substrate that runs for
the state directory (found through <state-dir>/local.json).

Commands:
  list                 list actors (--atespace, default "default"; --all for every atespace)
  get <name>           show one actor
  suspend <name>       checkpoint to an external snapshot and free the worker
  resume <name>        resume (restore) the actor on a worker
  pause <name>         checkpoint to a node-local snapshot and free the worker
  migrate <name>       suspend, optionally change the worker selector, resume; prints old and new worker
  delete <name>        delete a suspended actor

Run "substrate-driver actors <command> --help" for its flags.
`;

const one = (verb: string, summary: string, extra: Record<string, FlagSpec> = {}): CommandSpec => ({
  usage: `substrate-driver actors ${verb} <name> [--atespace A] [flags]`,
  summary,
  flags: { ...COMMON, ...extra },
  minPositionals: 1,
  maxPositionals: 1,
});

const SPECS: Record<string, CommandSpec> = {
  list: {
    usage: 'substrate-driver actors list [--atespace A | --all] [--json]',
    summary: 'List actors (ListActors, paged until done).',
    flags: { ...COMMON, all: { type: 'boolean', desc: 'every atespace' } },
  },
  get: one('get', 'Show one actor (GetActor).'),
  suspend: one('suspend', 'Suspend an actor (SuspendActor): external snapshot, worker freed.'),
  resume: one('resume', 'Resume an actor (ResumeActor).', { boot: { type: 'boolean', desc: 'cold boot instead of restoring the golden snapshot (ignored once the actor has its own snapshot)' } }),
  pause: one('pause', 'Pause an actor (PauseActor): node-local snapshot, worker freed.'),
  migrate: one('migrate', 'Move an actor: SuspendActor, optionally UpdateActor with a new worker selector, ResumeActor.', {
    selector: { type: 'string', arg: 'k=v,k=v', desc: 'new worker selector (replaces the old one; "" clears it)' },
  }),
  delete: one('delete', 'Delete an actor (DeleteActor; it must be SUSPENDED).'),
};

function statusOf(a: Actor): string {
  return (Actor_Status[a.status] ?? String(a.status)).replace(/^STATUS_/, '');
}

async function clientOf(flags: Record<string, unknown>): Promise<SubstrateClient> {
  const cfg = loadConfig({ flags: configFlagValues(flags as never) });
  let localEndpoint: string | undefined;
  let localTls = false;
  if (!cfg.apiEndpoint) {
    const { readLocalJson } = await import('../local/index.js');
    const lj = readLocalJson(cfg.stateDir);
    if (lj) {
      localEndpoint = lj.api_endpoint;
      localTls = lj.api_tls;
    }
  }
  if (!cfg.apiEndpoint && !localEndpoint) {
    throw new ConfigError(
      'api_endpoint',
      'default',
      `no ateapi endpoint: give --api-endpoint (or OPENSHELL_SUBSTRATE_API_ENDPOINT), or start a local Substrate for ${cfg.stateDir}`,
    );
  }
  const target = resolveApiTarget(cfg, localEndpoint, localTls);
  return clientFromConfig(cfg, target);
}

function workerText(a: Actor, workers: Worker[]): { worker: string; node: string } {
  if (!a.ateomPodName) return { worker: '', node: '' };
  const w = workers.find((x) => x.workerPod === a.ateomPodName && x.workerNamespace === a.ateomPodNamespace);
  return { worker: `${a.ateomPodNamespace}/${a.ateomPodName}`, node: w?.nodeName ?? '' };
}

function printActor(a: Actor, json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify(Actor.toJSON(a), null, 2) + '\n');
    return;
  }
  const snap = a.latestSnapshotInfo?.data;
  const lines = [
    `name:        ${a.actorId}`,
    `atespace:    ${a.atespace}`,
    `status:      ${statusOf(a)}`,
    `version:     ${a.version}`,
    `template:    ${a.actorTemplateNamespace}/${a.actorTemplateName}`,
    `worker:      ${a.ateomPodName ? `${a.ateomPodNamespace}/${a.ateomPodName} (${a.ateomPodIp})` : '-'}`,
    `pool:        ${a.workerPoolName || '-'}`,
    `selector:    ${Object.entries(a.workerSelector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '-'}`,
    `snapshot:    ${snap ? (snap.$case === 'external' ? `external ${snap.value.snapshotUriPrefix}` : `local ${snap.value.snapshotPrefix} on ${snap.value.nodeVmsWithLocalSnapshots.join(',')}`) : '-'}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

export async function main(argv: string[]): Promise<number> {
  return runSubcommand('actors', argv, USAGE, SPECS, async (sub, p) => {
    const json = p.flags.json === true;
    const atespace = (p.flags.atespace as string | undefined) ?? 'default';
    let selector: Record<string, string> | undefined;
    if (typeof p.flags.selector === 'string') {
      try {
        selector = parseSelector(p.flags.selector);
      } catch (e) {
        throw new UsageError(`--selector: ${(e as Error).message}`);
      }
    }
    const c = await clientOf(p.flags);
    try {
      const ref = { atespace, name: p.positionals[0] ?? '' };
      switch (sub) {
        case 'list': {
          const actors = await c.listAllActors(p.flags.all ? '' : atespace);
          actors.sort((x, y) => x.atespace.localeCompare(y.atespace) || x.actorId.localeCompare(y.actorId));
          if (json) {
            process.stdout.write(JSON.stringify(actors.map((a) => Actor.toJSON(a)), null, 2) + '\n');
          } else {
            process.stdout.write(
              table(
                ['ATESPACE', 'NAME', 'STATUS', 'WORKER', 'TEMPLATE', 'VERSION'],
                actors.map((a) => [a.atespace, a.actorId, statusOf(a), a.ateomPodName || '-', `${a.actorTemplateNamespace}/${a.actorTemplateName}`, String(a.version)]),
              ),
            );
          }
          return 0;
        }
        case 'get':
          printActor(await c.getActor(ref), json);
          return 0;
        case 'suspend':
        case 'resume':
        case 'pause': {
          const t0 = Date.now();
          const a =
            sub === 'suspend' ? await c.suspendActor(ref) : sub === 'pause' ? await c.pauseActor(ref) : await c.resumeActor(ref, p.flags.boot === true);
          const ms = Date.now() - t0;
          if (json) process.stdout.write(JSON.stringify({ actor: Actor.toJSON(a), ms }) + '\n');
          else process.stdout.write(`${atespace}/${ref.name}: ${statusOf(a)}${a.ateomPodName ? ` on ${a.ateomPodName}` : ''} (${ms} ms)\n`);
          return 0;
        }
        case 'delete': {
          await c.deleteActor(ref);
          if (json) process.stdout.write(JSON.stringify({ atespace, name: ref.name, deleted: true }) + '\n');
          else process.stdout.write(`deleted actor ${atespace}/${ref.name}\n`);
          return 0;
        }
        case 'migrate': {
          const t0 = Date.now();
          let a = await c.getActor(ref);
          const workersBefore = await c.listWorkers().catch(() => [] as Worker[]);
          const from = workerText(a, workersBefore);
          if (a.status === Actor_Status.STATUS_PAUSED || a.status === Actor_Status.STATUS_PAUSING) {
            // A paused actor's snapshot is pinned to its node: bring it back, then take an external one.
            a = await c.resumeActor(ref);
          }
          if (a.status !== Actor_Status.STATUS_SUSPENDED) a = await c.suspendActor(ref);
          if (selector !== undefined) a = await c.updateActor(ref, selector);
          a = await c.resumeActor(ref);
          const ms = Date.now() - t0;
          const to = workerText(a, await c.listWorkers().catch(() => [] as Worker[]));
          if (json) {
            process.stdout.write(JSON.stringify({ atespace, name: ref.name, from, to, ms, status: statusOf(a) }) + '\n');
          } else {
            const fmt = (w: { worker: string; node: string }) => (w.worker ? `${w.worker}${w.node ? ` (node ${w.node})` : ''}` : '(not running)');
            process.stdout.write(`migrated ${atespace}/${ref.name}: ${fmt(from)} -> ${fmt(to)} in ${ms} ms\n`);
          }
          return 0;
        }
      }
      return 2;
    } finally {
      c.close();
    }
  });
}
