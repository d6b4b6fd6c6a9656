// The one way this project builds a child process's environment: from an explicit list of names, read only
// from process.env's own properties, into an object without a prototype. Node copies every enumerable key
// of `env` it can reach with for...in (inherited ones included), so an environment built any other way
// would carry whatever a polluted Object.prototype holds into runsc, ip, unshare and the scripts we start.
// Plain JavaScript so the operator scripts (plain node) and the TypeScript sources share it.

/** Names every child may inherit: where to find programs, who it runs as, locale and time zone. */
export const BASE_ENV_NAMES = Object.freeze(['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'TERM']);

/**
 * A null-prototype environment: the BASE_ENV_NAMES, plus `pass` names and every name starting with one of
 * `prefixes` that process.env itself holds (all of its own names with `inherit`, for operator tools run in
 * the operator's own shell), plus `set` (own keys only; undefined values dropped). `from` replaces
 * process.env as the source.
 * @param {{ from?: Record<string, string | undefined>, inherit?: boolean, pass?: readonly string[], prefixes?: readonly string[], set?: Record<string, string | undefined> }} [opts]
 * @returns {Record<string, string>}
 */
export function childEnv(opts = {}) {
  const env = Object.create(null);
  const src = opts.from ?? process.env;
  const names = new Set([...BASE_ENV_NAMES, ...(opts.pass ?? [])]);
  for (const name of Object.keys(src)) {
    if (opts.inherit || names.has(name) || (opts.prefixes ?? []).some((p) => name.startsWith(p))) {
      const v = src[name];
      if (typeof v === 'string') env[name] = v;
    }
  }
  if (env.PATH === undefined) env.PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
  const set = opts.set ?? {};
  for (const name of Object.keys(set)) {
    const v = set[name];
    if (typeof v === 'string') env[name] = v;
  }
  return env;
}

/**
 * Spawn options without a prototype, so no option a polluted Object.prototype holds (shell, cwd, uid,
 * argv0, ...) is read by child_process; `env` defaults to childEnv().
 * @template {object} T
 * @param {T} opts
 * @returns {T & { env: Record<string, string> }}
 */
export function spawnOptions(opts) {
  const o = Object.assign(Object.create(null), { env: childEnv() }, opts);
  return o;
}
