// `substrate-driver sandboxes ...`: a client of the driver socket for people. The same RPCs the gateway
// makes, printed as a table or as JSON (--json).
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { loadConfig } from '../common/config.js';
import { DriverSandbox, WatchSandboxesEvent } from '../gen/compute_driver.js';
import { DriverClient } from '../driver/client.js';
import { derivePhase } from '../driver/conditions.js';
import { runSubcommand, table, UsageError, type CommandSpec, type FlagSpec } from './args.js';

const COMMON: Record<string, FlagSpec> = {
  socket: { type: 'string', arg: 'PATH', desc: 'driver socket (default: socket_path from config, or <state-dir>/run/driver.sock)' },
  config: { type: 'string', arg: 'FILE', desc: 'TOML file with an [openshell.drivers.substrate] table' },
  'state-dir': { type: 'string', arg: 'DIR', desc: 'state directory (locates the default socket)' },
  json: { type: 'boolean', desc: 'print JSON instead of a table' },
};

const USAGE = `Usage: substrate-driver sandboxes <command> [flags]

A client of the driver's Unix socket (the ComputeDriver RPCs the OpenShell gateway makes).

Commands:
  list                      list every sandbox the driver manages
  get <id|name>             show one sandbox
  create [-- command...]    validate and create a sandbox (returns once accepted; --wait to wait for it)
  stop <id|name>            stop (suspend) a sandbox; returns once it is stopped
  start <id|name>           start (resume) a sandbox; returns once it runs
  delete <id|name>          delete a sandbox
  watch                     stream sandbox events (snapshot first, then changes)

Run "substrate-driver sandboxes <command> --help" for its flags.
`;

const SPECS: Record<string, CommandSpec> = {
  list: {
    usage: 'substrate-driver sandboxes list [--json] [--workspace W]',
    summary: 'List every sandbox the driver manages, with the phase the gateway derives from its conditions.',
    flags: { ...COMMON, workspace: { type: 'string', arg: 'W', desc: 'only this workspace' } },
  },
  get: {
    usage: 'substrate-driver sandboxes get <id|name> [--json] [--workspace W]',
    summary: 'Show one sandbox (GetSandbox).',
    flags: { ...COMMON, workspace: { type: 'string', arg: 'W', desc: 'workspace of a sandbox given by name' } },
    minPositionals: 1,
    maxPositionals: 1,
  },
  create: {
    usage: 'substrate-driver sandboxes create [--name N] [--image IMAGE] [--env K=V]... [--wait] [-- command args...]',
    summary: 'Validate and create a sandbox (ValidateSandboxCreate, then CreateSandbox), as the gateway does.',
    flags: {
      ...COMMON,
      name: { type: 'string', arg: 'N', desc: 'sandbox name (default: a generated one)' },
      id: { type: 'string', arg: 'UUID', desc: 'sandbox id (default: a fresh UUID v4)' },
      workspace: { type: 'string', arg: 'W', desc: 'workspace (default "default")' },
      image: { type: 'string', arg: 'IMAGE', desc: 'pinned image (default: the driver default_image)' },
      env: { type: 'string', multiple: true, arg: 'K=V', desc: 'environment variable (repeatable)' },
      tty: { type: 'boolean', desc: 'run the command with a TTY' },
      'actor-template': { type: 'string', arg: '[NS/]NAME', desc: 'use a pre-provisioned ActorTemplate' },
      'token-file': { type: 'string', arg: 'FILE', desc: 'file holding the sandbox token (JWT) to hand the supervisor' },
      wait: { type: 'boolean', desc: 'wait until the sandbox runs (or fails)' },
      timeout: { type: 'string', arg: 'SECS', desc: 'with --wait: give up after this many seconds (default 300)' },
    },
    epilog: 'Without a command after --, the gateway default ["/bin/bash","-l"] with a TTY is used.',
  },
  stop: { usage: 'substrate-driver sandboxes stop <id|name>', summary: 'Stop a sandbox (StopSandbox).', flags: { ...COMMON, workspace: { type: 'string', arg: 'W', desc: 'workspace of a sandbox given by name' } }, minPositionals: 1, maxPositionals: 1 },
  start: { usage: 'substrate-driver sandboxes start <id|name>', summary: 'Start a sandbox (StartSandbox).', flags: { ...COMMON, workspace: { type: 'string', arg: 'W', desc: 'workspace of a sandbox given by name' } }, minPositionals: 1, maxPositionals: 1 },
  delete: { usage: 'substrate-driver sandboxes delete <id|name>', summary: 'Delete a sandbox (DeleteSandbox).', flags: { ...COMMON, workspace: { type: 'string', arg: 'W', desc: 'workspace of a sandbox given by name' } }, minPositionals: 1, maxPositionals: 1 },
  watch: { usage: 'substrate-driver sandboxes watch [--json]', summary: 'Stream WatchSandboxes events until interrupted.', flags: COMMON },
};

function socketOf(flags: Record<string, unknown>): string {
  const cfg = loadConfig({
    flags: {
      config: flags.config as string | undefined,
      state_dir: flags['state-dir'] as string | undefined,
      socket_path: flags.socket as string | undefined,
    },
  });
  if (!existsSync(cfg.socketPath)) {
    throw new Error(`no driver socket at ${cfg.socketPath}: start the driver with \`substrate-driver serve\` (or give --socket / --state-dir)`);
  }
  return cfg.socketPath;
}

function readyOf(sb: DriverSandbox): { phase: string; ready: string; reason: string; message: string } {
  const conds = sb.status?.conditions ?? [];
  const phase = derivePhase(sb.status ? conds : undefined, sb.status?.deleting);
  const susp = conds.find((c) => c.type === 'Suspended' && c.status === 'True');
  const r = susp ?? conds.find((c) => c.type === 'Ready');
  return { phase, ready: conds.find((c) => c.type === 'Ready')?.status ?? '', reason: r?.reason ?? '', message: r?.message ?? '' };
}

async function resolveId(c: DriverClient, idOrName: string, workspace?: string): Promise<DriverSandbox> {
  try {
    return await c.getSandbox(idOrName);
  } catch (e) {
    if ((e as { code?: number }).code !== 5) throw e;
  }
  const all = await c.listSandboxes();
  const hits = all.filter((s) => s.name === idOrName && (!workspace || s.workspace === workspace));
  if (hits.length === 0) throw Object.assign(new Error(`no sandbox with id or name "${idOrName}"`), { code: 5 });
  if (hits.length > 1) {
    throw new UsageError(`"${idOrName}" names sandboxes in ${hits.length} workspaces (${hits.map((h) => h.workspace).join(', ')}); give --workspace or the id`);
  }
  return hits[0]!;
}

function petName(): string {
  const a = ['brisk', 'calm', 'deft', 'eager', 'fond', 'keen', 'lucid', 'merry', 'quiet', 'swift', 'tidy', 'vivid'];
  const b = ['otter', 'finch', 'lynx', 'heron', 'koala', 'marten', 'panda', 'raven', 'seal', 'wren', 'yak', 'zebu'];
  const r = randomBytes(3);
  return `${a[r[0]! % a.length]}-${b[r[1]! % b.length]}-${(r[2]! % 90) + 10}`;
}

function printSandbox(sb: DriverSandbox, json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify(DriverSandbox.toJSON(sb), null, 2) + '\n');
    return;
  }
  const r = readyOf(sb);
  const lines = [
    `id:         ${sb.id}`,
    `name:       ${sb.name}`,
    `workspace:  ${sb.workspace}`,
    `phase:      ${r.phase}`,
    `instance:   ${sb.status?.instanceId || '-'}`,
    `deleting:   ${sb.status?.deleting ? 'yes' : 'no'}`,
    'conditions:',
    ...(sb.status?.conditions ?? []).map((c) => `  ${c.type}=${c.status} ${c.reason}: ${c.message} (since ${c.transitionTime?.toISOString() ?? '-'})`),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

function parseEnv(list: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new UsageError(`--env ${kv}: expected K=V`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

async function waitRunning(c: DriverClient, id: string, timeoutSecs: number): Promise<DriverSandbox> {
  const until = Date.now() + timeoutSecs * 1000;
  for (;;) {
    const sb = await c.getSandbox(id);
    const r = readyOf(sb);
    if (r.phase === 'READY' || r.phase === 'ERROR' || r.phase === 'STOPPED') return sb;
    if (Date.now() > until) throw Object.assign(new Error(`sandbox ${id} is still ${r.phase} after ${timeoutSecs}s: ${r.message}`), { code: 4 });
    await new Promise((res) => setTimeout(res, 500));
  }
}

export async function main(argv: string[]): Promise<number> {
  return runSubcommand('sandboxes', argv, USAGE, SPECS, async (sub, p) => {
    const json = p.flags.json === true;
    const c = new DriverClient(socketOf(p.flags), { tool: true });
    try {
      switch (sub) {
        case 'list': {
          const ws = p.flags.workspace as string | undefined;
          const all = (await c.listSandboxes()).filter((s) => !ws || s.workspace === ws);
          if (json) {
            process.stdout.write(JSON.stringify(all.map((s) => DriverSandbox.toJSON(s)), null, 2) + '\n');
          } else {
            const rows = all.map((s) => {
              const r = readyOf(s);
              return [s.id, s.name, s.workspace, r.phase, r.reason, s.status?.instanceId || '-'];
            });
            process.stdout.write(table(['ID', 'NAME', 'WORKSPACE', 'PHASE', 'REASON', 'INSTANCE'], rows));
          }
          return 0;
        }
        case 'get': {
          printSandbox(await resolveId(c, p.positionals[0]!, p.flags.workspace as string | undefined), json);
          return 0;
        }
        case 'create': {
          const id = (p.flags.id as string | undefined) ?? randomUUID();
          const name = (p.flags.name as string | undefined) ?? petName();
          const tokenFile = p.flags['token-file'] as string | undefined;
          let token = '';
          if (tokenFile) {
            try {
              token = readFileSync(tokenFile, 'utf8').trim();
            } catch (e) {
              throw new UsageError(`cannot read --token-file ${tokenFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
            }
          }
          const caps = await c.getCapabilities();
          const image = (p.flags.image as string | undefined) ?? caps.defaultImage;
          const tmpl = p.flags['actor-template'] as string | undefined;
          const command = p.rest.length > 0 ? p.rest : ['/bin/bash', '-l'];
          const tty = p.rest.length > 0 ? p.flags.tty === true : true;
          const sandbox: DriverSandbox = {
            id,
            name,
            namespace: '',
            workspace: (p.flags.workspace as string | undefined) ?? 'default',
            spec: {
              logLevel: '',
              environment: parseEnv(p.flags.env as string[] | undefined),
              template: {
                image,
                agentSocketPath: '',
                labels: {},
                environment: {},
                driverConfig: tmpl ? { actor_template: tmpl } : undefined,
              },
              sandboxToken: '',
              command,
              tty,
              awaitMainProcessAttachment: false,
              launchAuthentication: Buffer.alloc(0),
            },
          };
          await c.validateSandboxCreate(sandbox);
          await c.createSandbox({ ...sandbox, spec: { ...sandbox.spec!, sandboxToken: token } });
          if (p.flags.wait) {
            const secs = Number((p.flags.timeout as string | undefined) ?? '300');
            if (!Number.isFinite(secs) || secs <= 0) throw new UsageError('--timeout must be a positive number of seconds');
            const sb = await waitRunning(c, id, secs);
            printSandbox(sb, json);
            return readyOf(sb).phase === 'ERROR' ? 1 : 0;
          }
          if (json) process.stdout.write(JSON.stringify({ id, name, workspace: sandbox.workspace }) + '\n');
          else process.stdout.write(`created sandbox ${name} (${id})\n`);
          return 0;
        }
        case 'stop':
        case 'start':
        case 'delete': {
          const sb = await resolveId(c, p.positionals[0]!, p.flags.workspace as string | undefined);
          const t0 = Date.now();
          if (sub === 'stop') await c.stopSandbox(sb.id, sb.name);
          else if (sub === 'start') await c.startSandbox(sb.id, sb.name);
          else {
            const deleted = await c.deleteSandbox(sb.id, sb.name);
            if (json) process.stdout.write(JSON.stringify({ id: sb.id, deleted }) + '\n');
            else process.stdout.write(deleted ? `deleted sandbox ${sb.name} (${sb.id})\n` : `sandbox ${sb.id} was already gone\n`);
            return 0;
          }
          const ms = Date.now() - t0;
          if (json) process.stdout.write(JSON.stringify({ id: sb.id, action: sub, ms }) + '\n');
          else process.stdout.write(`${sub === 'stop' ? 'stopped' : 'started'} sandbox ${sb.name} (${sb.id}) in ${ms} ms\n`);
          return 0;
        }
        case 'watch': {
          const stream = c.watch();
          const done = new Promise<number>((resolve) => {
            stream.on('data', (ev: WatchSandboxesEvent) => {
              if (json) {
                process.stdout.write(JSON.stringify(WatchSandboxesEvent.toJSON(ev)) + '\n');
                return;
              }
              const t = new Date().toISOString();
              const pl = ev.payload;
              if (pl?.$case === 'sandbox' && pl.value.sandbox) {
                const sb = pl.value.sandbox;
                const r = readyOf(sb);
                process.stdout.write(`${t} sandbox  ${sb.id} ${sb.name} ${r.phase} ${r.reason}: ${r.message}\n`);
              } else if (pl?.$case === 'deleted') {
                process.stdout.write(`${t} deleted  ${pl.value.sandboxId}\n`);
              } else if (pl?.$case === 'platformEvent') {
                const e = pl.value.event;
                process.stdout.write(`${t} event    ${pl.value.sandboxId} ${e?.type} ${e?.reason}: ${e?.message}\n`);
              }
            });
            stream.on('error', (e: Error & { code?: number; details?: string }) => {
              if (e.code === 1) return resolve(0); // cancelled by us
              process.stderr.write(`substrate-driver sandboxes watch: ${e.details ?? e.message}\n`);
              resolve(1);
            });
            stream.on('end', () => resolve(0));
            const stop = () => stream.cancel();
            process.once('SIGINT', stop);
            process.once('SIGTERM', stop);
          });
          return await done;
        }
      }
      return 2;
    } finally {
      c.close();
    }
  });
}
