// The driver as an OpenShell v0.1 gateway sees it: harness.ts in v0.1 mode (a STAND-IN for the gateway, which cannot run
// here; its rules come from shared/reference/openshell-v0.1.md and -addendum.md) drives the REAL driver binary
// (`node bin/substrate-driver.js serve --local`, spawned and killed as a process) with its embedded local Substrate on
// real gVisor. The stand-in negotiates with the gateway's PeerMetadata, verifies the admission acknowledgement and re-reads
// it before every Validate/Create/Start, validates every Timestamp, derives phases with the v0.1 rules, sends launch
// authentication and the recorded runtime identity, and deletes in the background after `deleted` events and prunes.
// Supervisor: the stand-in's DEFAULT probe (backendReadyProbe: a backend-READY sandbox counts as connected), because no
// supervisor stand-in runs inside these actors. Reconcile every 2 s instead of 60 s, orphan grace 15 s instead of 300 s.
//
// UPSTREAM'S DRIVER CONFORMANCE CASES (addendum §2.1; they drive the `openshell` CLI against a gateway, never the driver
// RPCs, so each applies to an extension driver exactly as far as its capabilities allow; "Sup" = needs the OpenShell
// supervisor session and relay, which no actor here runs):
//   smoke/control-plane ............. APPLIES. create → Ready → listed → delete → gone: 'walks the full lifecycle' below
//                                     (+ ListSandboxes in 'survives a driver crash').
//   smoke/exec ...................... Sup (exec relay): not applicable here; the nearest check is the workload answering
//                                     through the router in every test.
//   sandbox-lifecycle/control-plane . APPLIES. Ready → stop → Stopped → delete → absent: 'walks the full lifecycle'.
//   sandbox-lifecycle/restart-persistence  PARTLY. Exec (Sup) does not apply. Persistence across stop/start applies and
//                                     holds stronger than asked (the process memory survives): 'walks the full lifecycle'
//                                     (counter continues). Its "canonical main ran twice" assertion would NOT hold on this
//                                     driver: Start resumes the checkpointed process, it does not re-run main.
//   sandbox-lifecycle/canonical-main  Sup (exit reporting is supervisor → gateway): not applicable; the driver reports no
//                                     exits (COMPLETED is not modelled by the stand-in either).
//   sandbox-environment/declared .... Sup to observe; the driver side (spec.environment reaches the workload) is covered by
//                                     tests/driver/contract.test.ts 'gives the workload the supervisor environment'.
//   file-transfer/round-trip, git-filtering, path-safety ........ Sup: not applicable.
//   policy-advisor/mechanistic-proposal, new-hostname-proposal, sandbox-local ... Sup: not applicable.
//   (other stored versions)
//   sandbox-lifecycle/state-transitions  APPLIES: 'walks the full lifecycle' and 'a stopped sandbox stays stopped'.
//   sandbox-lifecycle/relay-readiness, relay-reconnect ........... Sup: not applicable.
//   smoke (aggregate), sandbox-lifecycle (aggregate) ............. as their parts above.
//   sandbox-templates/lifecycle ..... gateway-side templates; what reaches the driver (template image, labels,
//                                     environment, resources) is DriverSandboxTemplate, covered by tests/template/*;
//                                     naming a pre-provisioned ActorTemplate by annotation: 'bravo' below.
//   sandbox-templates/get-after-delete, duplicate-name, missing-template, workspace-terminating: gateway-only, never
//                                     reach the driver: nothing to test here.
//   workspace-lifecycle ............. APPLIES through EnsureWorkspace/DeleteWorkspace: contract.test.ts 'workspaces'.
//   settings-management, provider-auto-create ..................... Sup: not applicable.
//   sandbox-continuity .............. APPLIES: running and stopped sandboxes keep phase and memory across host actions:
//                                     'survives a driver crash (kill -9)', 'survives a restart of the embedded local
//                                     Substrate' below, and local-restart.test.ts (both generations).
//   podman-userns ................... Podman only: not applicable.
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DriverClient } from '../../../src/driver/client.js';
import { ActorState } from '../../../src/gen/ateapi.js';
import { ateapiFor, count, gatewaySandbox, operatorTemplate, TEMPLATE, TEMPLATE_LABEL_ARGS } from './fixtures.js';
import {
  DRIVER_CONFIG_DISABLED,
  DriverProcess,
  Gateway,
  GatewayError,
  admissionAcknowledgement,
  decodeLaunch,
  defaultGatewayAdmission,
  negotiate,
  readLocalJson,
  targetActorRequest,
  type GatewayRow,
} from './harness.js';

const IDENTITY = /^substrate:default\/([0-9a-f-]{36}):([0-9a-f]+)#g(\d+)$/;

describe('OpenShell v0.1 gateway stand-in driving `substrate-driver serve --local`', () => {
  let dir: string;
  let stateDir: string;
  let socketPath: string;
  let driver: DriverProcess;
  let gw: Gateway;
  let image: string;
  const serveArgs = ['--router-listen', '127.0.0.1:0', '--log-level', 'warn', ...TEMPLATE_LABEL_ARGS];
  const startDriver = () => DriverProcess.start({ socketPath, stateDir, local: true, extraArgs: serveArgs });
  const ateapi = () => ateapiFor(stateDir);
  const removedHistories = new Map<string, string[]>();
  let b: GatewayRow;
  let c: GatewayRow;

  const noErrorEver = (row: GatewayRow) => expect(row.history, `phase history of ${row.name}`).not.toContain('ERROR');
  /** Every v0.1 time the driver sent so far was valid: nothing dropped, no Get refused. */
  const timesAllValid = () => {
    expect(gw.droppedEvents).toEqual([]);
    expect(gw.failedGets).toEqual([]);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gw-v01-'));
    stateDir = join(dir, 'state');
    mkdirSync(join(dir, 'sock'), { mode: 0o700 });
    socketPath = join(dir, 'sock', 'driver.sock');
    const t0 = Date.now();
    driver = await startDriver();
    console.info(`[gateway v0.1] driver serve --local started in ${Date.now() - t0} ms`);
    gw = new Gateway({ socketPath, generation: 'v0.1', reconcileIntervalMs: 2000, orphanGraceMs: 15_000 });
    await gw.start();
    image = gw.capabilities!.defaultImage;
    await operatorTemplate(stateDir, image);
    c = await gw.createSandbox(gatewaySandbox({ name: 'charlie', image, generation: 'v0.1' }));
  }, 300_000);

  afterAll(async () => {
    await gw?.stop();
    const r = await driver?.stop();
    if (r && r.exitCode !== 0) console.info(`[gateway v0.1] driver exit: ${JSON.stringify(r)}; stderr tail: ${driver.stderr.slice(-1500)}`);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('negotiates at startup as a v0.1 gateway: one GetCapabilities with gateway metadata, the admission ack matches byte for byte', () => {
    expect(gw.opts.supervisor?.kind).toBe('backend-ready');
    const startup = gw.calls.filter((x) => x.origin === 'gateway').slice(0, 1);
    expect(startup.map((x) => [x.method, x.code])).toEqual([['GetCapabilities', 'OK']]);
    expect((startup[0]!.request as { gateway: { implementationName: string } }).gateway.implementationName).toBe('openshell/gateway');
    expect(gw.callsOf('GetGatewayListenerRequirements')).toEqual([]);
    const caps = gw.capabilities!;
    expect(caps).toMatchObject({ driverName: 'substrate', gatewayManagesLifecycle: false, supportsSandboxAuthentication: false, driverReportsRuntimeReadiness: false });
    expect(negotiate('substrate', gw.opts.gatewayMetadata, caps.extension)).toBeNull();
    expect(caps.extension).toMatchObject({ protocolVersion: { major: 1 }, implementationName: 'openshell-driver-substrate' });
    expect(caps.extension!.supportedCapabilities).toContain('openshell.compute.contract');
    expect(caps.resourceAdmissionPolicy).toBe(admissionAcknowledgement(defaultGatewayAdmission()));
    expect(image).toMatch(/@sha256:[0-9a-f]{64}$/);
    expect(gw.watchStreams.length).toBeGreaterThanOrEqual(1);
  });

  it('refuses a caller driver_config (allow_driver_config = false) at the gateway, without a driver call, and at the driver itself', async () => {
    const viaConfig = gatewaySandbox({ name: 'by-config', image, generation: 'v0.0', preProvisioned: true });
    const from = gw.calls.length;
    const e = (await gw.createSandbox(viaConfig).catch((x: unknown) => x)) as GatewayError;
    expect(e).toBeInstanceOf(GatewayError);
    expect([e.code, e.message]).toEqual([status.FAILED_PRECONDITION, DRIVER_CONFIG_DISABLED]);
    expect(gw.calls.length).toBe(from);
    // The driver enforces the same gate for a v0.1 request (workload_identity marks it), whoever sends it.
    const direct = new DriverClient(socketPath, { tool: true });
    try {
      const sb = { ...viaConfig, spec: { ...viaConfig.spec!, workloadIdentity: { user: '', group: '' } } };
      await expect(direct.validateSandboxCreate(sb)).rejects.toMatchObject({ code: status.FAILED_PRECONDITION, details: expect.stringContaining('caller driver config is disabled') });
    } finally {
      direct.close();
    }
  });

  it('walks the full lifecycle: create → READY → stop → STOPPED → start → READY → delete → gone, with launch authentication and runtime identity', async () => {
    const a = gatewaySandbox({ name: 'alpha', image, generation: 'v0.1' });
    const from = gw.calls.length;
    const row = await gw.createSandbox(a);
    expect(row.phase).toBe('PROVISIONING');
    const made = gw.calls.slice(from).filter((x) => x.origin === 'gateway');
    expect(made.map((x) => [x.method, x.code])).toEqual([
      ['GetCapabilities', 'OK'],
      ['ValidateSandboxCreate', 'OK'],
      ['GetCapabilities', 'OK'],
      ['CreateSandbox', 'OK'],
    ]);
    const created = (made[3]!.request as { sandbox: typeof a }).sandbox.spec!;
    const bundle = decodeLaunch(created.launchAuthentication);
    expect(bundle.supervisor.auth_epoch).toBe(1);
    const m = IDENTITY.exec(row.runtimeIdentity);
    expect(m, row.runtimeIdentity).not.toBeNull();
    expect([m![1], m![3]]).toEqual([a.id, '1']);

    await gw.waitPhase(a.id, 'READY', 150_000);
    expect(row.backendPhase).toBe('READY');
    expect(row.supervisorConnected).toBe(true);
    const n1 = await count(stateDir, row);

    await gw.stopSandbox(a.id);
    expect(row.phase).toBe('STOPPED');
    const rep = await gw.reconcileOnce();
    expect(rep.aborted).toBeUndefined();
    expect(row.phase).toBe('STOPPED');
    expect(row.backendPhase).toBe('STOPPED');

    const before = row.runtimeIdentity;
    let at = gw.calls.length;
    await gw.startSandbox(a.id);
    const start = gw.callsOf('StartSandbox', at);
    expect(start).toHaveLength(1);
    expect(gw.calls.slice(at).filter((x) => x.origin === 'gateway').map((x) => x.method)).toEqual(['GetCapabilities', 'StartSandbox']);
    const req = start[0]!.request as { expectedRuntimeIdentity: string; generationId: string; launchAuthentication: Buffer; name: string };
    expect(req.expectedRuntimeIdentity).toBe(before);
    expect(req.generationId).toBe(row.runtimeGeneration);
    expect(req.name).toBe('alpha');
    const fresh = decodeLaunch(req.launchAuthentication);
    expect(fresh.supervisor).toMatchObject({ auth_epoch: 2, runtime_generation: row.runtimeGeneration });
    expect(fresh.supervisor.gateway_token).not.toBe(bundle.supervisor.gateway_token);
    // The stable part names the same compute resource; the generation part moved on.
    const m2 = IDENTITY.exec(row.runtimeIdentity)!;
    expect(m2, row.runtimeIdentity).not.toBeNull();
    expect([m2[1], m2[2]]).toEqual([m![1], m![2]]);
    expect(Number(m2[3])).toBeGreaterThan(Number(m![3]));
    await gw.waitPhase(a.id, 'READY', 60_000);
    expect(await count(stateDir, row)).toBe(n1 + 1);

    at = gw.calls.length;
    const [d1, d2] = await Promise.all([gw.deleteSandbox(a.id), gw.deleteSandbox(a.id)]);
    expect([d1, d2]).toEqual([true, true]);
    expect(gw.callsOf('DeleteSandbox', at).filter((x) => x.origin === 'gateway')).toHaveLength(1);
    await gw.waitGone(a.id, 30_000);
    expect(gw.removals).toContainEqual([a.id, 'watch deleted event']);
    removedHistories.set(a.id, row.history);
    expect(row.history).toEqual(['PROVISIONING', 'READY', 'STOPPING', 'STOPPED', 'STARTING', 'READY', 'DELETING']);
    // The background DeleteSandbox after the `deleted` event: skipped while our delete held the gate, or answered false.
    await gw.waitFor('the background delete of alpha', () => gw.backgroundDeletes.find((x) => x.id === a.id)?.outcome, 15_000);
    expect(['skipped: lifecycle gate held', 'deleted=false']).toContain(gw.backgroundDeletes.find((x) => x.id === a.id)!.outcome);
    const got = await gw.driverGet(row).catch((x: unknown) => x);
    expect(got).toMatchObject({ code: status.NOT_FOUND });
    timesAllValid();
  }, 300_000);

  it('refuses stop and start of a PROVISIONING sandbox without calling the driver; the annotation attaches the pre-provisioned template', async () => {
    const sb = gatewaySandbox({ name: 'bravo', image, generation: 'v0.1', preProvisioned: true });
    b = await gw.createSandbox(sb);
    const from = gw.calls.length;
    expect(b.phase).toBe('PROVISIONING');
    await expect(gw.stopSandbox(sb.id)).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    await expect(gw.startSandbox(sb.id)).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    expect(gw.callsOf('StopSandbox', from)).toHaveLength(0);
    expect(gw.callsOf('StartSandbox', from)).toHaveLength(0);
    await gw.waitPhase(sb.id, 'READY', 60_000);
    const api = ateapi();
    try {
      const actor = await api.findActor({ atespace: 'default', name: sb.id });
      expect(actor?.actorTemplate).toEqual({ atespace: 'default', name: TEMPLATE });
    } finally {
      api.close();
    }
    await gw.waitPhase(c.id, 'READY', 150_000);
  }, 300_000);

  it('a stopped sandbox stays stopped: one request through the router wakes the actor, the row stays STOPPED, the driver never says Ready=True, and suspends it again', async () => {
    const n = await count(stateDir, b);
    await gw.stopSandbox(b.id);
    expect(b.phase).toBe('STOPPED');
    const historyAtStop = [...b.history];
    const snapsAtStop = b.snapshots.length;
    const eventsAtStop = b.platformEvents.length;
    // A new user's request, naming the actor as Substrate's router takes it.
    const r = await targetActorRequest(readLocalJson(stateDir).router_url, 'default', b.id, '/count');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ n: n + 1 });
    const api = ateapi();
    try {
      // The driver notices and suspends it again; the stand-in keeps the row STOPPED throughout.
      await gw.waitFor(
        'the driver to suspend the woken actor again',
        () => b.platformEvents.slice(eventsAtStop).some((e) => e.reason === 'Stopped' && /woke/.test(e.message)),
        30_000,
      );
      await gw.waitFor('Suspended=True again', () => b.snapshots.at(-1)?.backend === 'STOPPED' && b.snapshots.length > snapsAtStop, 30_000);
      const actor = await api.findActor({ atespace: 'default', name: b.id });
      expect(actor?.status?.state).toBe(ActorState.ACTOR_STATE_SUSPENDED);
    } finally {
      api.close();
    }
    const after = b.snapshots.slice(snapsAtStop);
    expect(after.length).toBeGreaterThan(0);
    expect(after.filter((s) => s.conditions.some((x) => x.type === 'Ready' && x.status === 'True'))).toEqual([]);
    expect(after.every((s) => s.phaseAfter === 'STOPPED')).toBe(true);
    expect(b.history).toEqual(historyAtStop);
    expect(b.phase).toBe('STOPPED');
    await gw.startSandbox(b.id);
    await gw.waitPhase(b.id, 'READY', 60_000);
    expect(await count(stateDir, b)).toBe(n + 2);
    timesAllValid();
  }, 120_000);

  it('an out-of-band suspend (ateapi SuspendActor) never derives ERROR or STOPPED, and a request brings it back', async () => {
    const n = await count(stateDir, b);
    const api = ateapi();
    try {
      await api.suspendActor({ atespace: 'default', name: b.id });
    } finally {
      api.close();
    }
    await gw.waitPhase(b.id, 'PROVISIONING', 30_000);
    expect(b.backendPhase).toBe('PROVISIONING');
    expect(b.conditions.find((x) => x.type === 'Ready')).toMatchObject({ status: 'Unknown' });
    expect(await count(stateDir, b)).toBe(n + 1);
    await gw.waitPhase(b.id, 'READY', 30_000);
    noErrorEver(b);
    expect(b.history.slice(-3)).toEqual(['READY', 'PROVISIONING', 'READY']);
  });

  it('survives a driver crash (kill -9): the generation is remembered (valid Timestamps), every sandbox is kept, Create and Start work', async () => {
    await gw.stopSandbox(c.id);
    expect(c.phase).toBe('STOPPED');
    await gw.waitPhase(b.id, 'READY', 30_000);
    const nb = await count(stateDir, b);
    const streamsBefore = gw.watchStreams.length;

    const killedAt = Date.now();
    expect((await driver.kill('SIGKILL')).signal).toBe('SIGKILL');
    await gw.waitFor('the watch stream to end', () => gw.watchStreams[streamsBefore - 1]!.end, 15_000);
    const down = await gw.reconcileOnce();
    expect(down.aborted).toMatch(/ListSandboxes failed/);

    driver = await startDriver();
    const restartedAt = Date.now();
    // The restarted driver has not seen a GetCapabilities: it must still encode for v0.1 (its generation file).
    const live = await gw.waitFor(
      'a watch stream bootstrapped by the restarted driver',
      () => gw.watchStreams.find((s) => s.openedAt >= restartedAt - 3000 && s.events >= 2 && !s.end),
      30_000,
    );
    expect(live.events).toBeGreaterThanOrEqual(2);
    timesAllValid();
    gw.opts.orphanGraceMs = 0;
    const rep = await gw.reconcileOnce();
    gw.opts.orphanGraceMs = 15_000;
    expect(rep.aborted).toBeUndefined();
    expect(rep.pruned).toEqual([]);
    expect(rep.erroredMissing).toEqual([]);
    expect([...gw.rows.keys()].sort()).toEqual([b.id, c.id].sort());
    const listed = await gw.listSandboxes();
    expect(listed.sandboxes.map((s) => s.name).sort()).toEqual(['bravo', 'charlie']);
    expect(c.phase).toBe('STOPPED');
    await gw.waitPhase(b.id, 'READY', 30_000);
    console.info(`[gateway v0.1] kill -9 -> serving again ${restartedAt - killedAt} ms -> bravo READY ${Date.now() - killedAt} ms`);
    expect(await count(stateDir, b)).toBe(nb + 1);

    // Start with a fresh launch authentication (auth_epoch 2) and the identity recorded before the crash.
    const before = c.runtimeIdentity;
    const at = gw.calls.length;
    await gw.startSandbox(c.id);
    const req = gw.callsOf('StartSandbox', at)[0]!.request as { expectedRuntimeIdentity: string; launchAuthentication: Buffer };
    expect(req.expectedRuntimeIdentity).toBe(before);
    expect(decodeLaunch(req.launchAuthentication).supervisor.auth_epoch).toBe(2);
    await gw.waitPhase(c.id, 'READY', 60_000);
    // A create after the restart passes the admission re-check.
    const d = await gw.createSandbox(gatewaySandbox({ name: 'delta', image, generation: 'v0.1', preProvisioned: true }));
    await gw.waitPhase(d.id, 'READY', 60_000);
    expect(await gw.deleteSandbox(d.id)).toBe(true);
    await gw.waitGone(d.id, 30_000);
    noErrorEver(b);
    noErrorEver(c);
    timesAllValid();
  }, 300_000);

  it('survives a restart of the embedded local Substrate (SIGTERM): actors come back with their memory', async () => {
    const nb = await count(stateDir, b);
    const nc = await count(stateDir, c);
    expect((await driver.stop()).exitCode).toBe(0);
    driver = await startDriver();
    await gw.waitFor('both sandboxes to read resumable', () => b.backendPhase === 'PROVISIONING' && c.backendPhase === 'PROVISIONING', 30_000);
    expect(await count(stateDir, b)).toBe(nb + 1);
    expect(await count(stateDir, c)).toBe(nc + 1);
    await gw.waitPhase(b.id, 'READY', 30_000);
    await gw.waitPhase(c.id, 'READY', 30_000);
    await gw.stopSandbox(b.id);
    await gw.startSandbox(b.id);
    await gw.waitPhase(b.id, 'READY', 60_000);
    expect(await count(stateDir, b)).toBe(nb + 2);
    noErrorEver(b);
    noErrorEver(c);
    timesAllValid();
  }, 300_000);

  it('a sandbox deleted behind the gateway: the watch `deleted` removes the row and the background DeleteSandbox answers deleted=false', async () => {
    const e = await gw.createSandbox(gatewaySandbox({ name: 'echo', image, generation: 'v0.1', preProvisioned: true }));
    await gw.waitPhase(e.id, 'READY', 60_000);
    const direct = new DriverClient(socketPath, { tool: true });
    try {
      expect(await direct.deleteSandbox(e.id, e.name)).toBe(true);
    } finally {
      direct.close();
    }
    await gw.waitGone(e.id, 30_000);
    expect(gw.removals).toContainEqual([e.id, 'watch deleted event']);
    const bg = await gw.waitFor('the background delete', () => gw.backgroundDeletes.find((x) => x.id === e.id && x.outcome), 15_000);
    expect(bg).toMatchObject({ why: 'watch deleted', outcome: 'deleted=false' });
    expect(gw.calls.filter((x) => x.origin === 'cleanup' && (x.request as { sandboxId: string }).sandboxId === e.id).map((x) => [x.method, x.code])).toEqual([['DeleteSandbox', 'OK']]);
  });

  it('prunes a row the driver does not know after the grace period and deletes it in the background (idempotent: deleted=false)', async () => {
    const ghost = gw.insertRow({ id: randomUUID(), name: 'ghost', phase: 'READY', createdAtMs: Date.now() - 60_000 });
    await gw.reconcileOnce();
    // Sweeps never overlap, but the stand-in's own loop (every 2 s) may be the sweep that prunes it.
    const rep = gw.reconciles.find((r) => r.pruned.includes(ghost.id));
    expect(rep?.pruned).toEqual([ghost.id]);
    expect(gw.rows.has(ghost.id)).toBe(false);
    const bg = await gw.waitFor('the background delete', () => gw.backgroundDeletes.find((x) => x.id === ghost.id && x.outcome), 15_000);
    expect(bg).toMatchObject({ why: 'reconcile prune', outcome: 'deleted=false' });
  });

  it('deletes what is left; nothing ever derived ERROR; every time the driver sent was valid', async () => {
    for (const row of [b, c]) {
      expect(await gw.deleteSandbox(row.id)).toBe(true);
      await gw.waitGone(row.id, 30_000);
      removedHistories.set(row.id, row.history);
    }
    expect(gw.rows.size).toBe(0);
    for (const h of removedHistories.values()) expect(h).not.toContain('ERROR');
    expect(gw.warnings.filter((w) => w.includes('sandbox name cannot be changed'))).toEqual([]);
    timesAllValid();
    const api = ateapi();
    try {
      for (const id of removedHistories.keys()) expect(await api.findActor({ atespace: 'default', name: id })).toBeUndefined();
    } finally {
      api.close();
    }
  });
});
