#!/usr/bin/env node
// Stand up a kind cluster running the released Agent Substrate v0.4.0, installed with upstream's own kind scripts
// from a verified checkout of the tag, add a WorkerPool, port-forward the API and router, and write a driver config
// for them. Run `node scripts/kind-up.mjs --help`.
// Plan: scripts/lib/kind-plan.mjs (pure); checkout check: scripts/lib/kind-checkout.mjs (read-only git);
// execution and prerequisite checks: scripts/lib/kind-run.mjs.
import { chalk } from 'zx';
import { UsageError, runMain } from './lib/cli.mjs';
import { TEST_ONLY_COMMIT_ENV, expectedCommitFrom, verifyCheckout } from './lib/kind-checkout.mjs';
import {
  API_SERVER_NAME,
  ATE_NAMESPACE,
  CLIENT_SERVICE_ACCOUNT,
  KIND_UP_HELP,
  SUBSTRATE_RELEASE,
  buildKindUpPlan,
  formatPlan,
  kindUpPlanHeader,
  kubeContext,
  outFiles,
  parseKindUpArgs,
} from './lib/kind-plan.mjs';
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

    // The checkout check runs first, in --dry-run too (read-only git), unless --no-verify-checkout (dry run only).
    /** @type {Parameters<typeof kindUpPlanHeader>[1]} */
    let check = { verified: false };
    if (opts.verifyCheckout) {
      let expected;
      try {
        expected = expectedCommitFrom(process.env);
      } catch (err) {
        throw new UsageError(err instanceof Error ? err.message : String(err));
      }
      if (expected.testOverride) {
        process.stderr.write(
          `${PROG}: WARNING: ${TEST_ONLY_COMMIT_ENV} is set: expecting commit ${expected.commit} instead of ${SUBSTRATE_RELEASE.tag}'s ${SUBSTRATE_RELEASE.commit}. This is for tests only; unset it.\n`,
        );
      }
      const r = verifyCheckout(opts.substrateDir, { expectedCommit: expected.commit, allowDirty: opts.allowDirty });
      if (!r.ok) throw new UsageError(r.problem);
      check = { verified: true, head: r.head, tags: r.tags, dirty: r.dirty, testOverride: expected.testOverride };
      if (r.dirty.length > 0) process.stderr.write(`${PROG}: warning: --allow-dirty: ${r.dirty.length} changed tracked file(s) in ${opts.substrateDir} will be built into the images\n`);
    }

    const plan = buildKindUpPlan(opts);
    const header = kindUpPlanHeader(opts, check);
    if (opts.dryRun) {
      process.stdout.write(formatPlan(plan, header));
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
        `kind cluster "${opts.clusterName}" already exists (upstream's create-kind-cluster.sh would delete it)\n  remedy: tear it down with node scripts/kind-down.mjs --cluster ${opts.clusterName}, or pick another --cluster`,
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

    process.stderr.write(formatPlan([], header));
    try {
      await executePlan(plan, { prog: PROG });
    } catch (err) {
      process.stderr.write(`${PROG}: ${err instanceof Error ? err.message : String(err)}\n`);
      process.stderr.write(
        `${PROG}: the setup is partial. Fix the cause, then tear down with: node scripts/kind-down.mjs --cluster ${opts.clusterName} --out-dir ${opts.outDir}\n`,
      );
      return 1;
    }

    const f = outFiles(opts.outDir);
    const lines = [
      chalk.green(`kind cluster "${opts.clusterName}" with Agent Substrate ${SUBSTRATE_RELEASE.tag} is up.`),
      `  driver config  ${f.driverConfig}`,
      `  API            127.0.0.1:${opts.apiPort} (TLS, server name ${API_SERVER_NAME}, CA ${f.caPath})`,
      `  API token      ${f.tokenPath} (valid ${opts.tokenDuration}; renew: kubectl --kubeconfig ${f.kubeconfig} create token ${CLIENT_SERVICE_ACCOUNT} -n ${ATE_NAMESPACE} --audience ${API_SERVER_NAME} --duration ${opts.tokenDuration} > ${f.tokenPath})`,
      `  router         http://127.0.0.1:${opts.routerPort}`,
      `  workers        WorkerPool ${opts.namespace}/${opts.workerPool} (${opts.workers} ready, gVisor)`,
      `  kubeconfig     ${f.kubeconfig} (context ${kubeContext(opts.clusterName)})`,
      '',
      'Point the driver at it (Substrate v0.4 wire; the token is re-read from its file on every call):',
      `  substrate-driver serve --config ${f.driverConfig}`,
      `  # = --api-endpoint 127.0.0.1:${opts.apiPort} --api-tls-ca-path ${f.caPath} --api-tls-server-name ${API_SERVER_NAME} --api-bearer-token-path ${f.tokenPath}`,
      `  # token: kubectl -n ${ATE_NAMESPACE} create token ${CLIENT_SERVICE_ACCOUNT} --audience=${API_SERVER_NAME} > ${f.tokenPath}`,
      '',
      'The live test tier (tests/live) against this cluster, once a pre-provisioned ActorTemplate with a golden tag',
      'exists (e.g. substrate-driver local apply -f TEMPLATE.yaml --config DRIVER.toml --wait) and a test image holding the',
      "driver's bootstrap agent is in the registry:",
      `  SUBSTRATE_LIVE_API_ENDPOINT=127.0.0.1:${opts.apiPort} SUBSTRATE_LIVE_CA_PATH=${f.caPath} \\`,
      `  SUBSTRATE_LIVE_BEARER_TOKEN_PATH=${f.tokenPath} SUBSTRATE_LIVE_ROUTER_URL=http://127.0.0.1:${opts.routerPort} \\`,
      `  SUBSTRATE_LIVE_TEMPLATE_NAME=ATESPACE/NAME SUBSTRATE_LIVE_TEST_IMAGE=localhost:5001/IMAGE@sha256:DIGEST \\`,
      `  SUBSTRATE_LIVE_SNAPSHOTS_LOCATION=gs://ate-snapshots/openshell-live/ npx vitest run tests/live`,
      '',
      `Tear down: node scripts/kind-down.mjs --cluster ${opts.clusterName} --out-dir ${opts.outDir}`,
      '',
    ];
    process.stdout.write(lines.join('\n'));
    return 0;
  },
  "run 'node scripts/kind-up.mjs --help' for usage",
);
