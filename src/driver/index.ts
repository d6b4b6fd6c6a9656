// Composition of the driver process: config → ateapi v0.4 client → record backend (SQLite locally, Kubernetes
// Secrets in a cluster) → SubstrateDriver → gRPC server on the Unix socket (+ metrics). Used by
// `substrate-driver serve` and by the contract tests. Templates are ateapi resources: no Kubernetes API is
// needed for them any more.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { ConfigError, type DriverConfig } from '../common/config.js';
import { logger } from '../common/log.js';
import { clientFromConfig, resolveApiTarget, type ApiTarget, type SubstrateClient } from '../substrate/client.js';
import type { SynthesisConfig } from '../template/synthesize.js';
import { templatePort } from './adapters.js';
import { SubstrateDriver } from './driver.js';
import { DriverMetrics } from './metrics.js';
import { serveDriver, type DriverServer } from './server.js';
import { GatewayGeneration } from './generations.js';
import { checkDriverConfig } from './admission-policy.js';
import { cgroupLimitSupport } from '../local/runtime/gvisor.js';
import { deliverToSandbox } from './launch.js';
import type { SandboxRecord } from './records.js';
import type { RecordBackend } from './ports.js';
import { KubeSecretRecordBackend, SqliteRecordBackend } from './record-backends.js';

const log = logger('driver');

/** Hands the bootstrap agent in a sandbox's actor, via the router, its v0.1 launch authentication or 0.0.x identity. */
async function deliverLaunch(r: SandboxRecord, routerUrl: string, endpoint: string, signal?: AbortSignal): Promise<void> {
  await deliverToSandbox(r, { routerUrl, endpoint }, signal);
}

/** The local Substrate enforces template cpu/memory limits where this machine's cgroups allow it. */
function localLimits(): { cpu: boolean; memory: boolean } {
  const cg = cgroupLimitSupport();
  return { cpu: cg.cpu, memory: cg.memory };
}

export { SubstrateDriver } from './driver.js';
export { DriverMetrics } from './metrics.js';
export { serveDriver } from './server.js';

/** snapshots_location of synthesized templates on a local Substrate (it maps every URI into its state dir). */
export const LOCAL_SNAPSHOTS_LOCATION = 'local://snapshots/';

/** @deprecated Substrate v0.4 templates carry no pause image (it is part of the SandboxConfig). */
export const LOCAL_PAUSE_IMAGE = 'registry.k8s.io/pause:3.10@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a';

/** A local Substrate to talk to (embedded, or found through <state-dir>/local.json). */
export interface LocalEndpoints {
  apiEndpoint: string;
  /** The local Substrate serves TLS (it does on a non-loopback address). */
  apiTls?: boolean;
  /**
   * A bearer token file for the local Substrate's TCP endpoint (v0.4 authenticates every TCP call). Not
   * needed for its Unix socket, which is owner-only.
   */
  apiTokenPath?: string;
  /** @deprecated The Kubernetes-shaped resource API of the June local Substrate; unused. */
  kube?: unknown;
  /** The instance's per-start nonce from local.json (absent when embedded in this process). */
  nonce?: string;
  stateDir: string;
  /** The local Substrate's default image reference, used when default_image is not configured. */
  defaultImage?: string;
  /** Its actor router (launch credentials reach actors through it). */
  routerUrl?: string;
}

export interface RunDriverOptions {
  config: DriverConfig;
  local?: LocalEndpoints;
  watchBufferLimit?: number;
  shutdownGraceMs?: number;
  /** Include Node process metrics (default true). */
  processMetrics?: boolean;
  /**
   * For a local Substrate the driver found (not embedded): the instance running now, read from local.json
   * (its router is followed across restarts); undefined when none runs.
   */
  relocateLocal?: () => LocalEndpoints | undefined;
  /** Where sandbox records live; default: recordBackendFor(config, local). */
  records?: RecordBackend;
}

export interface RunningDriver {
  driver: SubstrateDriver;
  server: DriverServer;
  client: SubstrateClient;
  metrics: DriverMetrics;
  target: ApiTarget;
  close(): Promise<void>;
}

/** The driver's version: package.json's, found from this file in src/ or dist/src/. */
export function driverVersion(): string {
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'openshell-driver-substrate' && pkg.version) return pkg.version;
    } catch {
      /* next */
    }
  }
  return '0.0.0';
}

/** The configured (or default / in-cluster) KubeConfig, for the Kubernetes record backend. */
export function kubeConfigOf(cfg: DriverConfig): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (cfg.kubeconfig) kc.loadFromFile(cfg.kubeconfig);
    else kc.loadFromDefault();
  } catch (e) {
    const src = cfg.sources.kubeconfig === 'default' ? 'default' : cfg.sources.kubeconfig;
    throw new ConfigError('kubeconfig', src, `cannot load the Kubernetes config${cfg.kubeconfig ? ` ${cfg.kubeconfig}` : ''}: ${(e as Error).message}`);
  }
  if (cfg.kubeContext) {
    if (!kc.getContextObject(cfg.kubeContext)) {
      throw new ConfigError('kube_context', cfg.sources.kube_context, `invalid config kube_context: "${cfg.kubeContext}" is not a context of the Kubernetes config`);
    }
    kc.setCurrentContext(cfg.kubeContext);
  }
  if (!kc.getCurrentCluster()) {
    throw new ConfigError('kubeconfig', cfg.sources.kubeconfig, 'no Kubernetes cluster configured: set kubeconfig (and kube_context), run in a cluster, or use a local Substrate');
  }
  return kc;
}

/** Whether a Kubernetes config is present: kubeconfig set, $KUBECONFIG, ~/.kube/config, or in-cluster. */
export function kubeConfigPresent(cfg: DriverConfig, env: NodeJS.ProcessEnv = process.env): boolean {
  if (cfg.kubeconfig) return true;
  if (env.KUBECONFIG) return true;
  if (env.KUBERNETES_SERVICE_HOST && existsSync('/var/run/secrets/kubernetes.io/serviceaccount/token')) return true;
  return existsSync(join(env.HOME || homedir(), '.kube', 'config'));
}

/**
 * Where sandbox records live: with a local Substrate (or `local`), or with no Kubernetes config, the driver's
 * own SQLite file `<state_dir>/driver.db` (0600); in a cluster (a Kubernetes config present and not local),
 * labelled Secrets in `default_namespace`.
 */
export function recordBackendFor(cfg: DriverConfig, local?: LocalEndpoints, env: NodeJS.ProcessEnv = process.env): RecordBackend {
  if (cfg.local || local || !kubeConfigPresent(cfg, env)) return SqliteRecordBackend.inStateDir(cfg.stateDir);
  return new KubeSecretRecordBackend(kubeConfigOf(cfg), cfg.defaultNamespace);
}

export function synthesisConfigOf(cfg: DriverConfig, local?: LocalEndpoints): SynthesisConfig {
  if (cfg.pauseImage) {
    log.warn('pause_image does not apply to Substrate v0.4 (the pause image belongs to the SandboxConfig); ignored', { source: cfg.sources.pause_image });
  }
  return {
    // The local Substrate keeps every snapshot under its state directory whatever the URI says; v0.4 wants a
    // URI with a bucket (scheme://bucket/path), so the local default names its own store.
    snapshotsLocation: cfg.snapshotsLocation || (local ? LOCAL_SNAPSHOTS_LOCATION : ''),
    sandboxClass: cfg.sandboxClass,
    gatewayEndpoint: cfg.gatewayEndpoint,
  };
}

export async function runDriver(o: RunDriverOptions): Promise<RunningDriver> {
  const cfg = o.config;
  const target = resolveApiTarget(cfg, o.local?.apiEndpoint, o.local?.apiTls, o.local?.apiTokenPath);
  const metrics = new DriverMetrics({ defaultMetrics: o.processMetrics ?? true });
  const client = clientFromConfig(cfg, target, (m, c, s) => metrics.observeBackend(m, c, s));
  try {
    const records = o.records ?? recordBackendFor(cfg, o.local);
    // A local Substrate's router as it actually listens (followed across its restarts; with --local,
    // router_url is only where to listen and may say port 0), else router_url.
    const routerOf = (): string => o.relocateLocal?.()?.routerUrl || o.local?.routerUrl || cfg.routerUrl;
    const driver = new SubstrateDriver({
      control: client,
      records,
      templates: templatePort(synthesisConfigOf(cfg, o.local)),
      namespace: cfg.defaultNamespace,
      stopMode: cfg.stopMode,
      defaultImage: cfg.defaultImage || o.local?.defaultImage || '',
      version: driverVersion(),
      workerSelector: cfg.workerSelector,
      templateReadyTimeoutMs: cfg.templateReadyTimeoutSecs * 1000,
      pollIntervalMs: cfg.pollIntervalMs,
      watchBufferLimit: o.watchBufferLimit,
      onWatchAborted: () => metrics.watchAborted.inc(),
      generation: new GatewayGeneration(`${cfg.socketPath}.generation`),
      admission: cfg.admission,
      admissionAck: cfg.admissionAck,
      templateLabels: cfg.templateLabels,
      checkDriverConfig: (dc) => checkDriverConfig(cfg.admission.allowDriverConfig, dc),
      // A remote Substrate's enforcement is not observable from here: claim none.
      limitsEnforced: o.local ? localLimits() : { cpu: false, memory: false },
      resolvedIdentity: o.local ? { uid: 0, gid: 0, supplementaryGids: [], source: 'substrate-local-runtime' } : undefined,
      deliverLaunch: routerOf() ? (r, signal) => deliverLaunch(r, routerOf(), cfg.gatewayEndpoint, signal) : undefined,
    });
    const server = await serveDriver({
      driver,
      socketPath: cfg.socketPath,
      metrics,
      metricsListen: cfg.metricsListen || undefined,
      shutdownGraceMs: o.shutdownGraceMs,
    });
    let closing: Promise<void> | undefined;
    return {
      driver,
      server,
      client,
      metrics,
      target,
      close: () =>
        (closing ??= (async () => {
          await server.close();
          client.close();
        })()),
    };
  } catch (e) {
    client.close();
    throw e;
  }
}
