// Read-only checks that --substrate-dir is a clean checkout of the released Agent Substrate v0.4.0 (the only
// thing scripts/kind-up.mjs installs). Runs git (rev-parse, tag --points-at, status) and nothing else; needs no
// network. Facts: /work/shared/reference/substrate-v0.4-addendum.md §1.1 (tag and commit), §4.3 (kind steps).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { childEnv, spawnOptions } from '../../src/common/child-env.mjs';

/** The release kind-up installs. */
export const SUBSTRATE_RELEASE = Object.freeze({
  tag: 'v0.4.0',
  commit: '756c2a53741121e728f4cc3066c8a19e575b4919',
  repo: 'https://github.com/agent-substrate/substrate',
});

/**
 * TEST-ONLY: replaces the expected commit (a test's throwaway repository cannot have commit 756c2a53). The tag must
 * still be v0.4.0. Whenever it is set, kind-up warns on stderr and the plan says so; never set it for a real install.
 */
export const TEST_ONLY_COMMIT_ENV = 'KIND_UP_TEST_ONLY_EXPECTED_COMMIT';

/** Upstream files kind-up runs from the checkout (all present in the v0.4.0 tree). */
export const SUBSTRATE_SCRIPTS = Object.freeze(['hack/create-kind-cluster.sh', 'hack/install-ate-kind.sh', 'hack/run-tool.sh']);

/** How to get the right checkout, for error messages. @param {string} dir */
export function checkoutRemedy(dir) {
  const t = SUBSTRATE_RELEASE.tag;
  return (
    `get it with: git clone ${SUBSTRATE_RELEASE.repo} ${dir} && git -C ${dir} checkout ${t}\n` +
    `  (an existing clone: git -C ${dir} fetch --tags && git -C ${dir} checkout ${t})`
  );
}

/**
 * The expected commit: the release's, or the TEST-ONLY override from `env` (must be 40 hex digits).
 * @param {Record<string, string | undefined>} env
 * @returns {{ commit: string, testOverride: boolean }}
 */
export function expectedCommitFrom(env) {
  const v = env[TEST_ONLY_COMMIT_ENV];
  if (v === undefined || v === '') return { commit: SUBSTRATE_RELEASE.commit, testOverride: false };
  if (!/^[0-9a-f]{40}$/.test(v)) throw new Error(`${TEST_ONLY_COMMIT_ENV} must be a full 40-digit lowercase commit hash`);
  return { commit: v, testOverride: true };
}

/**
 * @typedef {{ ok: true, head: string, tags: string[], dirty: string[] }
 *   | { ok: false, problem: string }} CheckoutResult
 */

/** @param {string} dir @param {string[]} args */
function git(dir, args) {
  const r = spawnSync('git', ['-C', dir, ...args], spawnOptions({
    // Only the base names (PATH, HOME, locale): GIT_DIR, GIT_WORK_TREE and friends from the operator's shell
    // would point these checks at another repository. No optional locks: `git status` must not write the index.
    env: childEnv({ set: { GIT_OPTIONAL_LOCKS: '0', GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' } }),
    encoding: 'utf8',
    timeout: 30_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  if (r.error) {
    const code = /** @type {NodeJS.ErrnoException} */ (r.error).code;
    return { ok: false, out: '', err: code === 'ENOENT' ? 'git is not installed (not found on PATH)' : r.error.message };
  }
  return { ok: r.status === 0, out: r.stdout, err: (r.stderr || '').trim() || `exit status ${r.status}` };
}

/**
 * Verify that `dir` is a checkout of `tag` at `expectedCommit` without tracked changes (unless `allowDirty`).
 * Untracked files are not counted (upstream's own scripts write some, e.g. bin/kind-config.yaml, which is ignored).
 * @param {string} dir absolute path
 * @param {{ expectedCommit?: string, tag?: string, allowDirty?: boolean }} [o]
 * @returns {CheckoutResult}
 */
export function verifyCheckout(dir, o = {}) {
  const expected = o.expectedCommit ?? SUBSTRATE_RELEASE.commit;
  const tag = o.tag ?? SUBSTRATE_RELEASE.tag;
  const what = `Agent Substrate ${tag} (commit ${expected})`;
  const fail = (/** @type {string} */ problem) => /** @type {CheckoutResult} */ ({ ok: false, problem: `${problem}\n  remedy: ${checkoutRemedy(dir)}` });

  let st;
  try {
    st = fs.statSync(dir);
  } catch {
    return fail(`--substrate-dir ${dir} does not exist; kind-up needs a checkout of ${what}`);
  }
  if (!st.isDirectory()) return fail(`--substrate-dir ${dir} is not a directory`);
  const missing = SUBSTRATE_SCRIPTS.filter((s) => !fs.existsSync(path.join(dir, s)));
  if (missing.length > 0) return fail(`--substrate-dir ${dir} does not look like an Agent Substrate checkout: missing ${missing.join(', ')}`);

  const top = git(dir, ['rev-parse', '--show-toplevel']);
  if (!top.ok) return fail(`--substrate-dir ${dir} is not a git checkout ('git rev-parse' failed: ${top.err})`);
  if (fs.realpathSync(top.out.trim()) !== fs.realpathSync(dir)) {
    return fail(`--substrate-dir ${dir} is inside the git repository ${top.out.trim()}, not the root of an Agent Substrate checkout`);
  }
  const headR = git(dir, ['rev-parse', '--verify', 'HEAD^{commit}']);
  if (!headR.ok) return fail(`--substrate-dir ${dir}: cannot read HEAD (${headR.err})`);
  const head = headR.out.trim();
  const tagsR = git(dir, ['tag', '--points-at', 'HEAD']);
  if (!tagsR.ok) return fail(`--substrate-dir ${dir}: 'git tag --points-at HEAD' failed (${tagsR.err})`);
  const tags = tagsR.out.split('\n').map((l) => l.trim()).filter(Boolean);
  const tagText = tags.length > 0 ? `tags ${tags.join(', ')}` : 'no tag';
  if (head !== expected) {
    return fail(`--substrate-dir ${dir} is at commit ${head} (${tagText}), not ${what}`);
  }
  if (!tags.includes(tag)) {
    return fail(`--substrate-dir ${dir} is at commit ${head}, but no tag ${tag} points at it (${tagText})`);
  }
  const statusR = git(dir, ['status', '--porcelain', '--untracked-files=no']);
  if (!statusR.ok) return fail(`--substrate-dir ${dir}: 'git status' failed (${statusR.err})`);
  const dirty = statusR.out.split('\n').filter((l) => l.trim() !== '').map((l) => l.slice(3));
  if (dirty.length > 0 && !o.allowDirty) {
    const shown = dirty.slice(0, 10).join(', ') + (dirty.length > 10 ? `, and ${dirty.length - 10} more` : '');
    return {
      ok: false,
      problem:
        `--substrate-dir ${dir} is ${tag} but has changes to tracked files (${shown}); they would be built into the images\n` +
        `  remedy: review them with git -C ${dir} status, put them away with git -C ${dir} stash, or pass --allow-dirty to install them anyway`,
    };
  }
  return { ok: true, head, tags, dirty };
}
