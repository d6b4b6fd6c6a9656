// Composition of the driver process: config → ateapi client → TemplateStore → SubstrateDriver → gRPC server
// on the Unix socket (+ metrics). Used by `substrate-driver serve` and by the contract tests.
import { readFileSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { ConfigError, type DriverConfig } from '../common/config.js';
import { clientFromConfig, resolveApiTarget, type ApiTarget, type SubstrateClient } from '../substrate/client.js';
import { instanceStore, kubeConfigFor, kubeTemplateStore, type KubeAccess } from '../template/store.js';
import { unavailable } from '../common/errors.js';
import type { SynthesisConfig } from '../template/synthesize.js';
import { storePort, templatePort } from './adapters.js';
import { SubstrateDriver } from './driver.js';
import { DriverMetrics } from './metrics.js';
import { serveDriver, type DriverServer } from './server.js';
import { GatewayGeneration } from './generations.js';
import { checkDriverConfig } from './admission-policy.js';
import { cgroupLimitSupport } from '../local/runtime/gvisor.js';
import { LaunchDelivery } from './launch.js';
import type { SandboxRecord } from './records.js';

/** Hands a sandbox's latest launch authentication to the bootstrap agent in its actor, via the router. */
async function deliverLaunch(r: SandboxRecord, routerUrl: string, endpoint: string, signal?: AbortSignal): Promise<void> {
  await new LaunchDelivery({ routerUrl }).deliver(
    { atespace: r.atespace, actor: r.id },
    { sandboxId: r.id, launchAuthentication: Buffer.from(r.launch, 'base64'), endpoint: endpoint || undefined },
    signal,
  );
}

/** The local Substrate enforces template cpu/memory limits where this machine's cgroups allow it. */
function localLimits(): { cpu: boolean; memory: boolean } {
  const cg = cgroupLimitSupport();
  return { cpu: cg.cpu, memory: cg.memory };
}

export { SubstrateDriver } from './driver.js';
export { DriverMetrics } from './metrics.js';
export { serveDriver } from './server.js';

/** Pinned pause image used when none is configured for a local Substrate (which does not pull images). */
export const LOCAL_PAUSE_IMAGE = 'registry.k8s.io/pause:3.10@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a';

/** A local Substrate to talk to (embedded, or found through <state-dir>/local.json). */
export interface LocalEndpoints {
  apiEndpoint: string;
  /** The local Substrate serves TLS (it does on a non-loopback address). */
  apiTls?: boolean;
  /** The local Substrate's resource API and its bearer token. */
  kube: KubeAccess;
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
   * before every call to its resource API; undefined when none runs (the call then fails UNAVAILABLE).
   */
  relocateLocal?: () => LocalEndpoints | undefined;
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

/** The KubeConfig of the resource API: the local Substrate's, or the configured / default one. */
export function kubeConfigOf(cfg: DriverConfig, local?: LocalEndpoints): KubeConfig {
  if (local) return kubeConfigFor(local.kube);
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

export function synthesisConfigOf(cfg: DriverConfig, local?: LocalEndpoints): SynthesisConfig {
  return {
    namespace: cfg.defaultNamespace,
    pauseImage: cfg.pauseImage || (local ? LOCAL_PAUSE_IMAGE : ''),
    snapshotsLocation: cfg.snapshotsLocation || (local ? `file://${local.stateDir}/snapshots/` : ''),
    sandboxClass: cfg.sandboxClass,
    gatewayEndpoint: cfg.gatewayEndpoint,
  };
}

export async function runDriver(o: RunDriverOptions): Promise<RunningDriver> {
  const cfg = o.config;
  const target = resolveApiTarget(cfg, o.local?.apiEndpoint, o.local?.apiTls);
  const metrics = new DriverMetrics({ defaultMetrics: o.processMetrics ?? true });
  const client = clientFromConfig(cfg, target, (m, c, s) => metrics.observeBackend(m, c, s));
  try {
    let store = kubeTemplateStore(kubeConfigOf(cfg, o.local));
    if (o.relocateLocal) {
      const relocate = o.relocateLocal;
      const stateDir = o.local?.stateDir ?? cfg.stateDir;
      store = instanceStore(() => {
        const now = relocate();
        if (!now) throw unavailable(`the local Substrate for ${stateDir} is not running (its local.json names no live instance); start it again`);
        return { id: now.nonce ?? '', access: now.kube };
      });
    }
    // A local Substrate's router as it actually listens (followed across its restarts; with --local,
    // router_url is only where to listen and may say port 0), else router_url.
    const routerOf = (): string => o.relocateLocal?.()?.routerUrl || o.local?.routerUrl || cfg.routerUrl;
    const driver = new SubstrateDriver({
      control: client,
      store: storePort(store),
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
