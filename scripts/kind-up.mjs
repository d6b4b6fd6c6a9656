#!/usr/bin/env node
// Stand up a kind cluster with a local registry and Agent Substrate from a checkout, port-forward its API and
// router, and write a driver config for them. Run `node scripts/kind-up.mjs --help`.
// Plan: scripts/lib/kind-plan.mjs (pure); execution and checks: scripts/lib/kind-run.mjs.
import { chalk } from 'zx';
import { runMain } from './lib/cli.mjs';
import { API_SERVER_NAME, KIND_UP_HELP, buildKindUpPlan, formatPlan, kubeContext, outFiles, parseKindUpArgs } from './lib/kind-plan.mjs';
import {
  KIND_UP_TOOLS,
  checkPrerequisites,
  executePlan,
  existingKindClusters,
  formatProblems,
  portInUse,
} from './lib/kind-run.mjs';

const PROG = 'kind-up';

await runMain(
  PROG,
  async () => {
    const opts = parseKindUpArgs(process.argv.slice(2));
    if (opts.help) {
      process.stdout.write(KIND_UP_HELP);
      return 0;
    }
    const plan = buildKindUpPlan(opts);
    if (opts.dryRun) {
      process.stdout.write(formatPlan(plan));
      return 0;
    }

    // Everything below runs only after all of these checks pass.
    const problems = checkPrerequisites(KIND_UP_TOOLS);
    if (problems.length > 0) {
      process.stderr.write(formatProblems(PROG, problems));
      process.stderr.write(`${PROG}: nothing was done. Fix the above and run again (--dry-run shows the plan).\n`);
      return 1;
    }
    const preflight = [];
    if (existingKindClusters().includes(opts.clusterName)) {
      preflight.push(
        `kind cluster "${opts.clusterName}" already exists\n  remedy: tear it down with node scripts/kind-down.mjs --cluster-name ${opts.clusterName}, or pick another --cluster-name`,
      );
    }
    for (const [flag, port] of [['--api-port', opts.apiPort], ['--router-port', opts.routerPort]]) {
      if (await portInUse('127.0.0.1', /** @type {number} */ (port))) {
        preflight.push(`127.0.0.1:${port} is already in use\n  remedy: stop what listens there (an old port-forward? run kind-down) or choose another ${flag}`);
      }
    }
    if (preflight.length > 0) {
      for (const p of preflight) process.stderr.write(`${PROG}: ${p}\n`);
      process.stderr.write(`${PROG}: nothing was done.\n`);
      return 1;
    }

    try {
      await executePlan(plan, { prog: PROG });
    } catch (err) {
      process.stderr.write(`${PROG}: ${err instanceof Error ? err.message : String(err)}\n`);
      process.stderr.write(
        `${PROG}: the setup is partial. Fix the cause, then tear down with: node scripts/kind-down.mjs --cluster-name ${opts.clusterName} --out-dir ${opts.outDir}\n`,
      );
      return 1;
    }

    const f = outFiles(opts.outDir);
    const lines = [
      chalk.green(`kind cluster "${opts.clusterName}" with Agent Substrate (auth mode ${opts.authMode}) is up.`),
      `  driver config  ${f.driverConfig}`,
      `  API            127.0.0.1:${opts.apiPort} (TLS, server name ${API_SERVER_NAME}, CA ${f.caPath})`,
      `  router         http://127.0.0.1:${opts.routerPort}`,
      `  kubeconfig     ${f.kubeconfig} (context ${kubeContext(opts.clusterName)})`,
    ];
    if (opts.authMode === 'jwt') {
      lines.push(
        `  API token      ${f.tokenPath} (valid ${opts.tokenDuration}; renew: kubectl --kubeconfig ${f.kubeconfig} create token ate-client -n ate-system --audience ${API_SERVER_NAME} --duration ${opts.tokenDuration} > ${f.tokenPath})`,
      );
    }
    lines.push(
      '',
      'Live tests against it:',
      `  SUBSTRATE_LIVE_API_ENDPOINT=127.0.0.1:${opts.apiPort} SUBSTRATE_LIVE_CA_PATH=${f.caPath} SUBSTRATE_LIVE_TLS_SERVER_NAME=${API_SERVER_NAME} \\`,
      `  ${opts.authMode === 'jwt' ? `SUBSTRATE_LIVE_BEARER_TOKEN_PATH=${f.tokenPath} ` : ''}SUBSTRATE_LIVE_NAMESPACE=${opts.namespace} npx vitest run tests/live`,
      `Tear down: node scripts/kind-down.mjs --cluster-name ${opts.clusterName} --out-dir ${opts.outDir}`,
      '',
    );
    process.stdout.write(lines.join('\n'));
    return 0;
  },
  "run 'node scripts/kind-up.mjs --help' for usage",
);
