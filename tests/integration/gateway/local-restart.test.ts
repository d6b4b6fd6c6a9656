// The driver next to a SEPARATELY run local Substrate (`substrate-driver local serve`), found through
// <state-dir>/local.json, with the local Substrate restarted under the running driver — once per gateway generation.
// The gateway is the stand-in of harness.ts (the OpenShell gateway cannot run here): 0.0.x mode implements
// shared/reference/compute-driver.md, v0.1 mode shared/reference/openshell-v0.1.md (negotiation, admission re-checks,
// Timestamp validation, v0.1 phase rules, launch authentication on Start). Everything else is real processes: the local
// Substrate on gVisor, the driver binary, and a counting workload reached through the router.
//
// The reconcile period is 2 s instead of the gateway's 60 s; the rules are the gateway's, only the clock is faster.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { count, gatewaySandbox, LocalSubstrateProcess, operatorTemplate, TEMPLATE_LABEL_ARGS } from './fixtures.js';
import { DriverProcess, Gateway, GatewayError, decodeLaunch, routerSupervisor, type GatewayGeneration, type GatewayRow } from './harness.js';

describe.each(['v0.0', 'v0.1'] as GatewayGeneration[])('%s gateway stand-in with a separately run local Substrate that restarts under the driver', (generation) => {
  let dir: string;
  let stateDir: string;
  let socketPath: string;
  let local: LocalSubstrateProcess;
  let driver: DriverProcess;
  let gw: Gateway;
  let x: GatewayRow;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gw-ext-'));
    stateDir = join(dir, 'state');
    mkdirSync(stateDir, { mode: 0o700 });
    mkdirSync(join(dir, 'sock'), { mode: 0o700 });
    socketPath = join(dir, 'sock', 'driver.sock');
    local = new LocalSubstrateProcess(stateDir);
    await local.start();
    // No --local and no --api-endpoint: the driver finds the local Substrate through <state-dir>/local.json.
    driver = await DriverProcess.start({ socketPath, stateDir, local: false, extraArgs: ['--log-level', 'warn', ...TEMPLATE_LABEL_ARGS] });
    // 0.0.x: the workload answering /readyz stands for the supervisor session; v0.1: the default probe.
    gw = new Gateway({
      socketPath,
      generation,
      reconcileIntervalMs: 2000,
      orphanGraceMs: 15_000,
      ...(generation === 'v0.0' ? { supervisor: routerSupervisor(stateDir) } : {}),
    });
    await gw.start();
    const image = gw.capabilities!.defaultImage;
    await operatorTemplate(stateDir, image);
    x = await gw.createSandbox(gatewaySandbox({ name: 'xray', image, generation, preProvisioned: true }));
    await gw.waitPhase(x.id, 'READY', 60_000);
  }, 300_000);

  afterAll(async () => {
    await gw?.stop();
    await driver?.stop();
    await local?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('keeps the sandbox through a local Substrate restart: no ERROR, memory kept, stop and start still work', async () => {
    const n = await count(stateDir, x);
    const w0 = gw.warnings.length;
    expect(await local.stop()).toBe(0);

    // While the local Substrate is down: a user's stop fails with the driver's code and recovery through
    // GetSandbox is inconclusive, so the row stays STOPPING (the gateway retries it); reconcile sweeps abort.
    const err = await gw.stopSandbox(x.id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe(status.UNAVAILABLE);
    expect((err as GatewayError).message).toMatch(/^stop sandbox failed: /);
    expect(x.phase).toBe('STOPPING');
    const down = await gw.reconcileOnce();
    expect(down.aborted).toMatch(/GetSandbox|ListSandboxes/);

    await local.start();
    // Back up: the driver reconnects on its own; its snapshots say resumable (suspended at shutdown), which
    // keeps a STOPPING row STOPPING until the stop completes.
    await gw.waitFor('a snapshot from the restarted local Substrate', () => x.backendPhase === 'PROVISIONING', 30_000);
    expect(x.phase).toBe('STOPPING');
    // The stop is retried (allowed from STOPPING) and completes.
    await gw.stopSandbox(x.id);
    expect(x.phase).toBe('STOPPED');
    await gw.startSandbox(x.id);
    await gw.waitPhase(x.id, 'READY', 60_000);
    expect(await count(stateDir, x)).toBe(n + 1);
    expect(x.history).not.toContain('ERROR');
    if (generation === 'v0.1') {
      // The Start carried a fresh launch authentication and the identity recorded at Create.
      const req = gw.callsOf('StartSandbox').at(-1)!.request as { launchAuthentication: Buffer; expectedRuntimeIdentity: string };
      expect(decodeLaunch(req.launchAuthentication).supervisor.auth_epoch).toBe(2);
      expect(req.expectedRuntimeIdentity).toMatch(new RegExp(`^substrate:default/${x.id}:`));
      expect(gw.droppedEvents).toEqual([]);
      expect(gw.failedGets).toEqual([]);
    }
    console.info(`[gateway ${generation}] warnings while the local Substrate restarted: ${gw.warnings.slice(w0).length}`);
  }, 300_000);

  it('deletes the sandbox after the restart', async () => {
    expect(await gw.deleteSandbox(x.id)).toBe(true);
    await gw.waitGone(x.id, 30_000);
    expect(x.history).not.toContain('ERROR');
  });
});
