// `npm run bench`: runs every benchmark suite in bench/ (each bench/*.ts module that exports
// `run(opts): Promise<Table[]>`), then prints the machine and every suite's tables as Markdown on stdout.
// Progress goes to stderr.   npm run bench -- --help
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// Before any project module is loaded: the project's logger reads its level once, at import.
process.env.SUBSTRATE_LOG_LEVEL ??= 'warn';

const lib = await import('./lib.js');
type SuiteModule = import('./lib.js').SuiteModule;
type Table = import('./lib.js').Table;

const here = path.dirname(fileURLToPath(import.meta.url));
const NOT_SUITES = new Set(['run.ts', 'lib.ts']);

interface Suite extends SuiteModule {
  name: string;
}

async function discover(): Promise<Suite[]> {
  const suites: Suite[] = [];
  for (const f of fs.readdirSync(here).sort()) {
    if (!f.endsWith('.ts') || f.endsWith('.d.ts') || NOT_SUITES.has(f)) continue;
    const mod = (await import(pathToFileURL(path.join(here, f)).href)) as Partial<SuiteModule>;
    if (typeof mod.run !== 'function') continue;
    suites.push({ name: f.slice(0, -3), run: mod.run, description: mod.description, options: mod.options });
  }
  return suites;
}

function usage(suites: Suite[]): string {
  const lines = [
    'Usage: npm run bench -- [options]',
    '',
    'Runs the benchmark suites in bench/ and prints Markdown tables (median (min–max) of N runs).',
    '',
    'Options:',
    '  --suite NAME     run only this suite (repeatable, or comma-separated); default: all',
    '  --runs N         runs per figure (default 5)',
    '  --quick          a short run: --runs 2 and smaller suite defaults (e.g. --actors 10)',
    '  --json FILE      also write the results (tables and raw samples) as JSON to FILE',
    '  --help           this text',
  ];
  for (const s of suites) {
    for (const o of s.options ?? []) lines.push(`  --${`${o.name}${o.arg ? ` ${o.arg}` : ''}`.padEnd(14)} [${s.name}] ${o.help}`);
  }
  lines.push('', 'Suites:');
  for (const s of suites) lines.push(`  ${s.name.padEnd(10)} ${s.description ?? ''}`);
  lines.push('', 'Environment: SUBSTRATE_LOG_LEVEL (default warn), SUBSTRATE_RUNSC (runsc binary; default .tools/runsc).');
  return lines.join('\n') + '\n';
}

interface Parsed {
  help: boolean;
  suites: string[];
  runs?: number;
  quick: boolean;
  json?: string;
  flags: Record<string, string | true>;
}

function parse(argv: string[], suites: Suite[]): Parsed {
  const known = new Map<string, boolean>(); // suite flag → takes a value
  for (const s of suites) for (const o of s.options ?? []) known.set(o.name, !!o.arg);
  const p: Parsed = { help: false, suites: [], quick: false, flags: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf('=');
    const name = a.startsWith('--') ? a.slice(2, eq > 0 ? eq : undefined) : a === '-h' ? 'help' : '';
    const inline = eq > 0 ? a.slice(eq + 1) : undefined;
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || (inline === undefined && v.startsWith('--'))) throw new lib.UsageError(`--${name} needs a value`);
      return v;
    };
    switch (name) {
      case 'help':
        p.help = true;
        break;
      case 'quick':
        p.quick = true;
        break;
      case 'suite':
        p.suites.push(...value().split(',').map((x) => x.trim()).filter(Boolean));
        break;
      case 'runs': {
        const v = value();
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1) throw new lib.UsageError(`--runs must be an integer ≥ 1, got "${v}"`);
        p.runs = n;
        break;
      }
      case 'json':
        p.json = path.resolve(value());
        break;
      default:
        if (name && known.has(name)) p.flags[name] = known.get(name) ? value() : true;
        else throw new lib.UsageError(`unknown option "${a}" (see --help)`);
    }
  }
  const names = new Set(suites.map((s) => s.name));
  for (const s of p.suites) if (!names.has(s)) throw new lib.UsageError(`unknown suite "${s}"; available: ${[...names].join(', ') || '(none)'}`);
  return p;
}

async function main(): Promise<number> {
  const suites = await discover();
  let args: Parsed;
  try {
    args = parse(process.argv.slice(2), suites);
  } catch (e) {
    if (e instanceof lib.UsageError) {
      process.stderr.write(`bench: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (args.help) {
    process.stdout.write(usage(suites));
    return 0;
  }
  const selected = args.suites.length ? suites.filter((s) => args.suites.includes(s.name)) : suites;
  if (selected.length === 0) {
    process.stderr.write('bench: no suites found in bench/\n');
    return 2;
  }
  const log = (m: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}\n`);
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled) return;
    signalled = true;
    log(`${sig}: cleaning up`);
    lib.interrupt();
    void lib.runCleanups(log).finally(() => {
      log('cleanup done');
      process.exit(130);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const machine = lib.machineFacts();
  const loadBefore = lib.loadAverage();
  const started = new Date();
  const runs = args.runs ?? (args.quick ? 2 : 5);
  const results: Array<{ suite: string; tables: Table[]; error?: string }> = [];
  let failed = false;
  for (const s of selected) {
    log(`suite ${s.name}: runs=${runs}${args.quick ? ' (quick)' : ''}`);
    try {
      const tables = await s.run({ runs, quick: args.quick, flags: args.flags, machine, log });
      results.push({ suite: s.name, tables });
      if (tables.some((t) => t.failures?.length)) failed = true;
    } catch (e) {
      if (e instanceof lib.UsageError) {
        process.stderr.write(`bench: ${e.message}\n`);
        await lib.runCleanups(log);
        return 2;
      }
      failed = true;
      log(`suite ${s.name} failed: ${(e as Error).stack ?? e}`);
      results.push({ suite: s.name, tables: [], error: (e as Error).message });
    }
  }
  await lib.runCleanups(log);
  machine['load average (1/5/15 min)'] = `${loadBefore} before, ${lib.loadAverage()} after`;
  machine['date'] = started.toISOString().slice(0, 10);

  const out: string[] = [];
  out.push(
    lib.formatTable({
      title: 'Machine',
      columns: ['item', 'value'],
      rows: Object.entries(machine).map(([k, v]) => [k, v]),
    }),
  );
  for (const r of results) {
    for (const t of r.tables) out.push(lib.formatTable(t));
    if (r.error) out.push(`### ${r.suite}\n\n* **FAILED:** ${r.error}\n`);
  }
  process.stdout.write(out.join('\n'));
  if (args.json) {
    fs.mkdirSync(path.dirname(args.json), { recursive: true });
    fs.writeFileSync(args.json, JSON.stringify({ machine, runs, quick: args.quick, flags: args.flags, results }, null, 2) + '\n');
    log(`results written to ${args.json}`);
  }
  return failed ? 1 : 0;
}

process.exitCode = await main();
