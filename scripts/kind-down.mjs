#!/usr/bin/env node
// Tear down what scripts/kind-up.mjs set up: port-forwards, the kind cluster, the registry container upstream's
// hack/create-kind-cluster.sh started (only if it carries that script's label) and kind-up's files.
// Run `node scripts/kind-down.mjs --help`.
import { runMain } from './lib/cli.mjs';
import { KIND_DOWN_HELP, buildKindDownPlan, formatPlan, parseKindDownArgs } from './lib/kind-plan.mjs';
import { KIND_DOWN_TOOLS, checkPrerequisites, executePlan, formatProblems } from './lib/kind-run.mjs';

const PROG = 'kind-down';

await runMain(
  PROG,
  async () => {
    const opts = parseKindDownArgs(process.argv.slice(2));
    if (opts.help) {
      process.stdout.write(KIND_DOWN_HELP);
      return 0;
    }
    const plan = buildKindDownPlan(opts);
    if (opts.dryRun) {
      process.stdout.write(formatPlan(plan));
      return 0;
    }
    const problems = checkPrerequisites(KIND_DOWN_TOOLS);
    if (problems.length > 0) {
      process.stderr.write(formatProblems(PROG, problems));
      process.stderr.write(`${PROG}: nothing was done. Fix the above and run again (--dry-run shows the plan).\n`);
      return 1;
    }
    try {
      await executePlan(plan, { prog: PROG });
    } catch (err) {
      process.stderr.write(`${PROG}: ${err instanceof Error ? err.message : String(err)}\n`);
      return 1;
    }
    process.stdout.write(`kind cluster "${opts.clusterName}" and its port-forwards are gone; ${opts.outDir} is cleaned up.\n`);
    return 0;
  },
  "run 'node scripts/kind-down.mjs --help' for usage",
);
