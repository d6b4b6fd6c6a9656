// Small shared helpers for the operator scripts (scripts/*.mjs): strict flag parsing on top of zx's minimist,
// usage errors with exit status 2, and the repository root.
import { minimist, path } from 'zx';
import { fileURLToPath } from 'node:url';

/** Absolute path of this repository's root (scripts/lib/../..). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A bad command line: the message says what is wrong and how to fix it; the process exits 2. */
export class UsageError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * Parse flags strictly. Every flag must be declared in `spec.string` or `spec.boolean`; anything else (unknown
 * flags, stray positional arguments unless `spec.positional` allows them) is a UsageError naming it.
 * String flags given without a value (`--dir` at the end, or `--dir --x`) are a UsageError too.
 *
 * @param {string[]} args
 * @param {{ string?: string[], boolean?: string[], default?: Record<string, unknown>, positional?: number }} spec
 * @returns {Record<string, any> & { _: string[] }}
 */
export function parseFlags(args, spec) {
  const strings = spec.string ?? [];
  const booleans = spec.boolean ?? [];
  const known = new Set([...strings, ...booleans]);
  /** @type {string[]} */
  const unknown = [];
  if (booleans.includes('help')) args = args.map((a) => (a === '-h' ? '--help' : a));
  const parsed = minimist(args, {
    string: strings,
    boolean: booleans,
    default: spec.default ?? {},
    unknown: (arg) => {
      if (arg.startsWith('-')) {
        const name = arg.replace(/^--?/, '').replace(/=.*$/, '').replace(/^no-/, '');
        if (!known.has(name)) unknown.push(arg.replace(/=.*$/, ''));
        return known.has(name);
      }
      return true;
    },
  });
  if (unknown.length > 0) {
    throw new UsageError(`unknown option${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}`);
  }
  for (const name of strings) {
    const v = parsed[name];
    if (Array.isArray(v)) throw new UsageError(`--${name} was given more than once`);
    // minimist turns `--dir` with no value into '' (string flags); a following `--flag` is not taken as a value.
    if (v === '' && args.some((a) => a === `--${name}` || a === `--${name}=`)) {
      throw new UsageError(`--${name} needs a value`);
    }
  }
  for (const name of booleans) {
    const v = parsed[name];
    // minimist reads `--flag=anything` as true; only `--flag`, `--flag=true`, `--flag=false` are meant.
    const withValue = args.find((a) => a.startsWith(`--${name}=`) && !/^(true|false)$/.test(a.slice(name.length + 3)));
    if (typeof v !== 'boolean' || withValue !== undefined) throw new UsageError(`--${name} takes no value`);
  }
  const maxPositional = spec.positional ?? 0;
  if (parsed._.length > maxPositional) {
    // The values are not echoed: a stray argument may be a secret pasted in the wrong place (e.g. a token).
    const n = parsed._.length - maxPositional;
    throw new UsageError(`unexpected ${n} positional argument${n > 1 ? 's' : ''} (not shown); this command takes only --options`);
  }
  return parsed;
}

/**
 * Run a CLI main function: UsageError → message + hint on stderr, exit 2; any other error → message on stderr,
 * exit 1. Error messages never include secrets (callers make sure of that); stacks are not printed.
 *
 * @param {string} prog  e.g. "jwt.mjs"
 * @param {() => Promise<number | void>} main
 * @param {string} [helpHint]
 */
export async function runMain(prog, main, helpHint) {
  try {
    const code = await main();
    process.exitCode = typeof code === 'number' ? code : 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${prog}: ${err.message}\n`);
      if (helpHint) process.stderr.write(`${helpHint}\n`);
      process.exitCode = 2;
    } else {
      const msg = err instanceof Error ? err.message : String(err);
      process.stderr.write(`${prog}: error: ${msg}\n`);
      process.exitCode = 1;
    }
  }
}
