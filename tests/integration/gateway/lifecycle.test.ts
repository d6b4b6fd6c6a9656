// The driver as an OpenShell 0.0.x gateway sees it (the stand-in's 'v0.0' mode, decoding with src/gen/v0; the v0.1
// counterpart is lifecycle-v01.test.ts). The gateway itself cannot run here, so harness.ts is a STAND-IN
// for it that implements the gateway's rules from shared/reference/compute-driver.md (call sequences, watch
// loop reopened 2 s after it ends, reconcile with Get, derive_phase with the transient-reason list, composition
// with a modelled supervisor session, stickiness, stop/start/delete semantics). Everything else is real: the
// driver binary (`node bin/substrate-driver.js serve --local`, spawned and killed as a process), the local
// Substrate it embeds (real gVisor checkpoint/restore), and a workload whose memory is checked through the router.
//
// The reconcile period is 2 s here instead of the gateway's 60 s, and the orphan grace period 15 s instead of
// 300 s (0 while checking that a restarted driver still knows every sandbox): the rules are the gateway's, only
// the clock is faster.
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DriverClient } from '../../../src/driver/client.js';
import type { DriverSandbox } from '../../../src/gen/compute_driver.js';
import {
  DriverProcess,
  Gateway,
  GatewayError,
  readLocalJson,
  routerRequest,
  routerSupervisor,
  targetActorRequest,
  type GatewayRow,
} from './harness.js';
import { ActorState } from '../../../src/gen/ateapi.js';
import { ateapiFor, count, gatewaySandbox as fixtureSandbox, operatorTemplate, sha, TEMPLATE_LABEL_ARGS } from './fixtures.js';
import type * as v0 from '../../../src/gen/v0/compute_driver.js';

/** A DriverSandbox as a 0.0.x gateway's driver_sandbox_from_public builds it (§2.2). */
const gatewaySandbox = (o: { name: string; image: string; token?: string; preProvisioned?: boolean }): DriverSandbox =>
  fixtureSandbox({ ...o, generation: 'v0.0' });

function noErrorEver(gw: Gateway, id: string, removedHistory?: string[]): void {
  const h = removedHistory ?? gw.rows.get(id)?.history ?? [];
  expect(h, `phase history of ${id}`).not.toContain('ERROR');
}

describe('gateway stand-in driving `substrate-driver serve --local`', () => {
  let dir: string;
  let stateDir: string;
  let socketPath: string;
  let driver: DriverProcess;
  let gw: Gateway;
  let image: string;
  const serveArgs = ['--router-url', 'http://127.0.0.1:0', '--log-level', 'warn', ...TEMPLATE_LABEL_ARGS];
  const startDriver = () => DriverProcess.start({ socketPath, stateDir, local: true, extraArgs: serveArgs });
  const ateapi = () => ateapiFor(stateDir);
  /** Full phase histories of rows that left the store. */
  const removedHistories = new Map<string, string[]>();
  let b: GatewayRow;
  let c: GatewayRow;
  const tokenC = `gw-token-${randomUUID()}`;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gw-int-'));
    stateDir = join(dir, 'state');
    mkdirSync(join(dir, 'sock'), { mode: 0o700 });
    socketPath = join(dir, 'sock', 'driver.sock');
    const t0 = Date.now();
    driver = await startDriver();
    console.info(`[gateway] driver serve --local started in ${Date.now() - t0} ms`);
    gw = new Gateway({ socketPath, generation: 'v0.0', reconcileIntervalMs: 2000, orphanGraceMs: 15_000, supervisor: routerSupervisor(stateDir) });
    await gw.start();
    image = gw.capabilities!.defaultImage;
    await operatorTemplate(stateDir, image);
    // charlie gets a driver-synthesized template (so the driver wires its environment and token); its golden
    // snapshot is taken while the first tests run.
    c = await gw.createSandbox(gatewaySandbox({ name: 'charlie', image, token: tokenC }));
  }, 300_000);

  afterAll(async () => {
    await gw?.stop();
    const r = await driver?.stop();
    if (r && r.exitCode !== 0) console.info(`[gateway] driver exit: ${JSON.stringify(r)}; stderr tail: ${driver.stderr.slice(-1500)}`);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('probes at startup exactly as the gateway does: GetCapabilities, then GetGatewayListenerRequirements', () => {
    expect(gw.calls.slice(0, 2).map((x) => x.method)).toEqual(['GetCapabilities', 'GetGatewayListenerRequirements']);
    expect(gw.calls.slice(0, 2).map((x) => x.code)).toEqual(['OK', 'OK']);
    expect(gw.capabilities).toMatchObject({ driverName: 'substrate', gatewayManagesLifecycle: false });
    expect(image).toMatch(/@sha256:[0-9a-f]{64}$/);
    expect(gw.listenerRequirements).toEqual([]);
    // Then the loops: a watch stream and a first reconcile sweep (nothing to reconcile yet).
    expect(gw.watchStreams.length).toBeGreaterThanOrEqual(1);
    expect(gw.callsOf('ListSandboxes').length).toBeGreaterThanOrEqual(1);
  });

  it('passes a validation error through unchanged and persists nothing', async () => {
    const bad = gatewaySandbox({ name: 'unpinned', image: 'ubuntu:24.04' });
    const e = await gw.createSandbox(bad).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(GatewayError);
    expect((e as GatewayError).code).toBe(status.INVALID_ARGUMENT);
    expect((e as GatewayError).message).toMatch(/not pinned/);
    expect(gw.rows.has(bad.id)).toBe(false);
    expect(gw.callsOf('CreateSandbox').filter((x) => (x.request as { sandbox: DriverSandbox }).sandbox.id === bad.id)).toEqual([]);
  });

  it('walks a full lifecycle with the public phase at each step: create → READY → stop → STOPPED → start → READY → delete → gone', async () => {
    // A sandbox whose ActorTemplate the driver synthesizes (golden snapshot included): the whole write path.
    const a = gatewaySandbox({ name: 'alpha', image, token: `gw-token-${randomUUID()}` });
    const row = await gw.createSandbox(a);
    expect(row.phase).toBe('PROVISIONING');
    const made = gw.calls.filter((x) => x.origin === 'gateway'); // not the background reconcile loop's
    expect(made.slice(-2).map((x) => x.method)).toEqual(['ValidateSandboxCreate', 'CreateSandbox']);
    expect((made.at(-2)!.request as { sandbox: DriverSandbox }).sandbox.spec!.sandboxToken).toBe('');

    await gw.waitPhase(a.id, 'READY', 150_000);
    expect(row.backendPhase).toBe('READY');
    expect(row.supervisorConnected).toBe(true);
    expect(row.agentPod).not.toBe('');
    const n1 = await count(stateDir, row);
    expect(await count(stateDir, row)).toBe(n1 + 1);

    let from = gw.calls.length;
    await gw.stopSandbox(a.id);
    expect(row.phase).toBe('STOPPED');
    expect(gw.callsOf('StopSandbox', from)).toHaveLength(1);
    expect(row.supervisorConnected).toBe(false);
    // Repeated stop: no call. A reconcile sweep (List + Get) keeps it STOPPED.
    from = gw.calls.length;
    await gw.stopSandbox(a.id);
    expect(gw.callsOf('StopSandbox', from)).toHaveLength(0);
    const rep = await gw.reconcileOnce();
    expect(rep.aborted).toBeUndefined();
    expect(row.phase).toBe('STOPPED');
    expect(row.backendPhase).toBe('STOPPED');

    from = gw.calls.length;
    await gw.startSandbox(a.id);
    expect(gw.callsOf('StartSandbox', from)).toHaveLength(1);
    expect(['STARTING', 'READY']).toContain(row.phase);
    await gw.waitPhase(a.id, 'READY', 60_000);
    // READY plus start: no call.
    from = gw.calls.length;
    await gw.startSandbox(a.id);
    expect(gw.callsOf('StartSandbox', from)).toHaveLength(0);
    // The workload's memory survived Stop → Start.
    expect(await count(stateDir, row)).toBe(n1 + 2);

    // Two concurrent deletes call the driver once; deleted=true leaves the row DELETING until the watch's
    // deleted event removes it.
    from = gw.calls.length;
    const [d1, d2] = await Promise.all([gw.deleteSandbox(a.id), gw.deleteSandbox(a.id)]);
    expect([d1, d2]).toEqual([true, true]);
    expect(gw.callsOf('DeleteSandbox', from)).toHaveLength(1);
    await gw.waitGone(a.id, 30_000);
    expect(gw.removals).toContainEqual([a.id, 'watch deleted event']);
    removedHistories.set(a.id, row.history);
    expect(row.history).toEqual(['PROVISIONING', 'READY', 'STOPPING', 'STOPPED', 'STARTING', 'READY', 'DELETING']);
    const client = new DriverClient(socketPath);
    try {
      await expect(client.getSandbox(a.id, a.name)).rejects.toMatchObject({ code: status.NOT_FOUND });
      expect(await client.deleteSandbox(a.id, a.name)).toBe(false);
    } finally {
      client.close();
    }
  }, 300_000);

  it('refuses stop and start of a PROVISIONING sandbox without calling the driver', async () => {
    const sb = gatewaySandbox({ name: 'bravo', image, preProvisioned: true });
    b = await gw.createSandbox(sb);
    const from = gw.calls.length;
    // Create returned before the sandbox runs; no supervisor can be connected yet.
    expect(b.phase).toBe('PROVISIONING');
    await expect(gw.stopSandbox(sb.id)).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    await expect(gw.startSandbox(sb.id)).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
    expect(gw.callsOf('StopSandbox', from)).toHaveLength(0);
    expect(gw.callsOf('StartSandbox', from)).toHaveLength(0);
    await gw.waitPhase(sb.id, 'READY', 60_000);
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
    await gw.waitFor('the driver to suspend the woken actor again', () => b.platformEvents.slice(eventsAtStop).some((e) => e.reason === 'Stopped' && /woke/.test(e.message)), 30_000);
    await gw.waitFor('Suspended=True again', () => b.snapshots.length > snapsAtStop && b.snapshots.at(-1)!.backend === 'STOPPED', 30_000);
    const api = ateapi();
    try {
      expect((await api.findActor({ atespace: 'default', name: b.id }))?.status?.state).toBe(ActorState.ACTOR_STATE_SUSPENDED);
    } finally {
      api.close();
    }
    const after = b.snapshots.slice(snapsAtStop);
    expect(after.filter((x) => x.conditions.some((c) => c.type === 'Ready' && c.status === 'True'))).toEqual([]);
    expect(after.every((x) => x.phaseAfter === 'STOPPED')).toBe(true);
    expect(b.history).toEqual(historyAtStop);
    // What a 0.0.x gateway decoded: its own bindings, last_transition_time as RFC 3339 text.
    const raw = b.lastRaw as v0.DriverSandbox;
    expect(raw.status!.sandboxName).toBe('bravo');
    for (const c of raw.status!.conditions) expect(c.lastTransitionTime).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    await gw.startSandbox(b.id);
    await gw.waitPhase(b.id, 'READY', 60_000);
    expect(await count(stateDir, b)).toBe(n + 2);
  }, 120_000);

  it('an out-of-band suspend (ateapi SuspendActor) never derives ERROR or STOPPED, and a request brings it back', async () => {
    const n = await count(stateDir, b);
    const h0 = b.history.length;
    const api = ateapi();
    try {
      await api.suspendActor({ atespace: 'default', name: b.id });
    } finally {
      api.close();
    }
    // The driver reports Ready=Unknown (resumes on demand); the supervisor session drops: PROVISIONING.
    await gw.waitPhase(b.id, 'PROVISIONING', 30_000);
    expect(b.backendPhase).toBe('PROVISIONING');
    expect(b.conditions.find((x) => x.type === 'Ready')).toMatchObject({ status: 'Unknown' });
    await gw.reconcileOnce();
    expect(b.phase).toBe('PROVISIONING');
    // The next request resumes it; its memory was kept; the session comes back.
    expect(await count(stateDir, b)).toBe(n + 1);
    await gw.waitPhase(b.id, 'READY', 30_000);
    noErrorEver(gw, b.id);
    expect(b.history.slice(h0)).toEqual(['PROVISIONING', 'READY']);
  });

  it('survives a driver crash (kill -9): running sandboxes keep their memory, the watch reopens, List still has every sandbox, Start works without the token', async () => {
    await gw.stopSandbox(c.id);
    expect(c.phase).toBe('STOPPED');
    await gw.waitPhase(b.id, 'READY', 30_000);
    const nb = await count(stateDir, b); // in bravo's memory only
    const streamsBefore = gw.watchStreams.length;

    const killedAt = Date.now();
    expect((await driver.kill('SIGKILL')).signal).toBe('SIGKILL');
    await gw.waitFor('the watch stream to end', () => gw.watchStreams[streamsBefore - 1]!.end, 15_000);
    // While the driver is down, reconcile sweeps abort (nothing is pruned) and watch reopens fail.
    const down = await gw.reconcileOnce();
    expect(down.aborted).toMatch(/ListSandboxes failed/);

    driver = await startDriver();
    const restartedAt = Date.now();
    console.info(`[gateway] driver restarted ${restartedAt - killedAt} ms after kill -9`);
    // A stream opened after the restart bootstraps with a snapshot of every sandbox.
    const live = await gw.waitFor(
      'a watch stream bootstrapped by the restarted driver',
      () => gw.watchStreams.find((s) => s.openedAt >= restartedAt - 3000 && s.events >= 2 && !s.end),
      30_000,
    );
    const gaps = gw.watchStreams.slice(streamsBefore).map((s, i) => s.openedAt - gw.watchStreams[streamsBefore - 1 + i]!.endedAt!);
    console.info(`[gateway] watch reopened ${gw.watchStreams.length - streamsBefore} times after the crash; gaps after each end (ms): ${gaps.join(', ')}`);
    expect(gw.warnings.some((w) => /^watch stream (errored|ended)/.test(w))).toBe(true);
    expect(live.events).toBeGreaterThanOrEqual(2);

    // With the orphan grace at 0, any sandbox the driver forgot would be pruned now.
    gw.opts.orphanGraceMs = 0;
    const rep = await gw.reconcileOnce();
    gw.opts.orphanGraceMs = 15_000;
    expect(rep.aborted).toBeUndefined();
    expect(rep.pruned).toEqual([]);
    expect(rep.erroredMissing).toEqual([]);
    expect(rep.listed).toBe(2);
    expect([...gw.rows.keys()].sort()).toEqual([b.id, c.id].sort());
    expect(c.phase).toBe('STOPPED');
    // Bravo's sandbox outlived the crashed process: adopted RUNNING, READY, and its memory is intact.
    await gw.waitPhase(b.id, 'READY', 30_000);
    const readyAt = Date.now();
    console.info(`[gateway] kill -9 -> serving again ${restartedAt - killedAt} ms -> bravo READY ${readyAt - killedAt} ms`);
    expect(await count(stateDir, b)).toBe(nb + 1);

    // Start works after the restart, and the workload still gets the token sent only at Create.
    await gw.startSandbox(c.id);
    await gw.waitPhase(c.id, 'READY', 60_000);
    const env = JSON.parse((await routerRequest(readLocalJson(stateDir).router_url, c.id, 'default', '/env')).body) as { id: string; name: string; tokenSha: string };
    expect(env).toEqual({ id: c.id, name: 'charlie', tokenSha: sha(tokenC) });
    expect((await count(stateDir, b)) >= 1).toBe(true);
    await gw.waitPhase(b.id, 'READY', 30_000);
    noErrorEver(gw, b.id);
    noErrorEver(gw, c.id);
  }, 300_000);

  it('survives a restart of the embedded local Substrate (SIGTERM): actors are suspended with their memory and come back', async () => {
    const nb = await count(stateDir, b);
    const nc = await count(stateDir, c);
    const r = await driver.stop();
    expect(r.exitCode).toBe(0);
    const t0 = Date.now();
    driver = await startDriver();
    console.info(`[gateway] driver serve --local restarted in ${Date.now() - t0} ms`);
    // Both were suspended at shutdown: resumable, so PROVISIONING until a request resumes them.
    await gw.waitFor('both sandboxes to read resumable', () => b.backendPhase === 'PROVISIONING' && c.backendPhase === 'PROVISIONING', 30_000);
    expect(b.phase).toBe('PROVISIONING');
    expect(c.phase).toBe('PROVISIONING');
    expect(await count(stateDir, b)).toBe(nb + 1);
    expect(await count(stateDir, c)).toBe(nc + 1);
    await gw.waitPhase(b.id, 'READY', 30_000);
    await gw.waitPhase(c.id, 'READY', 30_000);
    // A stop and start after the restart work as before.
    await gw.stopSandbox(b.id);
    expect(b.phase).toBe('STOPPED');
    await gw.startSandbox(b.id);
    await gw.waitPhase(b.id, 'READY', 60_000);
    expect(await count(stateDir, b)).toBe(nb + 2);
    noErrorEver(gw, b.id);
    noErrorEver(gw, c.id);
  }, 300_000);

  it('never adopts sandboxes it did not create, and drops snapshots whose name differs from its row', async () => {
    const direct = new DriverClient(socketPath);
    const stranger = gatewaySandbox({ name: 'made-elsewhere', image, preProvisioned: true });
    try {
      await direct.createSandbox(stranger);
      const rep = await gw.reconcileOnce();
      expect(rep.skippedUnknown).toContain(stranger.id);
      expect(gw.rows.has(stranger.id)).toBe(false);
      // A row with that id but another name (what the seed driver caused by reporting the UUID as the name):
      // every snapshot is dropped with a warning, and the phase never moves.
      const ghost = gw.insertRow({ id: stranger.id, name: 'other-name', phase: 'PROVISIONING' });
      const w0 = gw.warnings.length;
      await gw.reconcileOnce();
      await gw.waitFor('a dropped snapshot', () => gw.warnings.slice(w0).some((w) => w.includes('sandbox name cannot be changed')), 10_000);
      expect(ghost.phase).toBe('PROVISIONING');
      expect(ghost.conditions).toEqual([]);
      gw.rows.delete(stranger.id);
    } finally {
      await direct.deleteSandbox(stranger.id, stranger.name).catch(() => undefined);
      direct.close();
    }
  });

  it('prunes rows the driver does not know only after the grace period, and errors stopped ones', async () => {
    const old = Date.now() - 60_000;
    const goneRunning = gw.insertRow({ id: randomUUID(), name: 'gone-running', phase: 'READY', createdAtMs: old });
    const goneStopped = gw.insertRow({ id: randomUUID(), name: 'gone-stopped', phase: 'STOPPED', createdAtMs: old });
    const young = gw.insertRow({ id: randomUUID(), name: 'young', phase: 'PROVISIONING' });
    const rep = await gw.reconcileOnce();
    expect(rep.pruned).toEqual([goneRunning.id]);
    expect(rep.erroredMissing).toEqual([goneStopped.id]);
    expect(gw.rows.has(goneRunning.id)).toBe(false);
    expect(goneStopped.phase).toBe('ERROR');
    expect(goneStopped.conditions[0]).toMatchObject({ reason: 'ComputeResourceMissing' });
    expect(gw.rows.has(young.id)).toBe(true);
    // The real sandboxes were not touched.
    expect(gw.rows.has(b.id) && gw.rows.has(c.id)).toBe(true);
    for (const r of [goneStopped, young]) gw.rows.delete(r.id);
  });

  it('an actor deleted behind the gateway: STOPPED stays STOPPED, then a failed Start is recovered through GetSandbox into ERROR', async () => {
    const d = await gw.createSandbox(gatewaySandbox({ name: 'delta', image, preProvisioned: true }));
    await gw.waitPhase(d.id, 'READY', 60_000);
    await gw.stopSandbox(d.id);
    const api = ateapi();
    try {
      await api.deleteActor({ atespace: 'default', name: d.id });
    } finally {
      api.close();
    }
    // The driver notices (Ready=False ActorMissing) but a stale or failing snapshot cannot move a STOPPED row.
    await gw.waitFor('the driver to report the actor missing', () => d.backendPhase === 'ERROR', 15_000);
    expect(d.phase).toBe('STOPPED');
    const from = gw.calls.length;
    const err = await gw.startSandbox(d.id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe(status.NOT_FOUND);
    expect((err as GatewayError).message).toMatch(/^start sandbox failed: .*no longer exists/);
    // The calls of this Start and its recovery (the background reconcile loop may run meanwhile).
    expect(gw.calls.slice(from).filter((x) => x.origin === 'gateway').map((x) => x.method)).toEqual(['StartSandbox', 'GetSandbox']);
    expect(d.phase).toBe('ERROR');
    expect(d.conditions.find((x) => x.type === 'Ready')).toMatchObject({ status: 'False', reason: 'ActorMissing' });
    // ERROR is terminal; only a delete gets it out of the store.
    await gw.reconcileOnce();
    expect(d.phase).toBe('ERROR');
    expect(await gw.deleteSandbox(d.id)).toBe(true);
    await gw.waitGone(d.id, 30_000);
  });

  it('deletes what is left; every snapshot the driver sent carried the gateway name', async () => {
    for (const row of [b, c]) {
      expect(await gw.deleteSandbox(row.id)).toBe(true);
      await gw.waitGone(row.id, 30_000);
      removedHistories.set(row.id, row.history);
    }
    expect(gw.rows.size).toBe(0);
    for (const h of removedHistories.values()) expect(h).not.toContain('ERROR');
    // The only dropped snapshots are the ones the rename test provoked.
    const dropped = gw.warnings.filter((w) => w.includes('sandbox name cannot be changed'));
    expect(dropped.every((w) => w.includes('"other-name"'))).toBe(true);
    const api = ateapi();
    try {
      for (const id of removedHistories.keys()) expect(await api.findActor({ atespace: 'default', name: id })).toBeUndefined();
    } finally {
      api.close();
    }
  });
});
