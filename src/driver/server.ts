// The driver's gRPC server on its Unix socket (plain h2c, as the gateway dials it), with socket hygiene and a
// bounded graceful shutdown that does not hang on open watch streams.
import * as grpc from '@grpc/grpc-js';
import { dualServiceDefinition } from './generations.js';
import { logger } from '../common/log.js';
import type { SubstrateDriver } from './driver.js';
import type { DriverMetrics, MetricsServer } from './metrics.js';
import { serveMetrics } from './metrics.js';
import { computeDriverService } from './service.js';
import { prepareSocketPath, removeSocketIfOurs, secureBoundSocket } from './socket.js';

const log = logger('driver.server');

export interface DriverServerOptions {
  driver: SubstrateDriver;
  socketPath: string;
  metrics?: DriverMetrics;
  /** host:port for /healthz, /readyz, /metrics; empty = none. */
  metricsListen?: string;
  /** Upper bound of a graceful shutdown before in-flight calls are cut (ms). */
  shutdownGraceMs?: number;
}

export interface DriverServer {
  socketPath: string;
  /** Bound metrics address (host:port), when serving metrics. */
  metricsAddress?: string;
  close(): Promise<void>;
}

/** Starts the driver (records, polling) and serves it on the socket. */
export async function serveDriver(o: DriverServerOptions): Promise<DriverServer> {
  await prepareSocketPath(o.socketPath);
  let metricsServer: MetricsServer | undefined;
  if (o.metrics) o.metrics.setSources(() => o.driver.countByPhase(), () => o.driver.hub.count);
  if (o.metricsListen && o.metrics) {
    metricsServer = await serveMetrics(o.metricsListen, o.metrics, () => o.driver.ready);
  }
  try {
    await o.driver.start();
  } catch (e) {
    await metricsServer?.close();
    throw e;
  }
  const server = new grpc.Server({
    // ListSandboxes answers must stay under the gateway's 4 MiB; requests are small.
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
  });
  // One socket, both gateway generations (see generations.ts).
  server.addService(dualServiceDefinition(() => o.driver.generation.current), computeDriverService(o.driver, o.metrics) as unknown as grpc.UntypedServiceImplementation);
  const oldUmask = process.umask(0o177);
  let ino: string;
  try {
    await new Promise<number>((resolve, reject) =>
      server.bindAsync(`unix:${o.socketPath}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    ino = secureBoundSocket(o.socketPath);
  } catch (e) {
    process.umask(oldUmask);
    await o.driver.stop();
    await metricsServer?.close();
    throw e;
  }
  process.umask(oldUmask);
  log.info('driver listening', { socket: o.socketPath });

  let closing: Promise<void> | undefined;
  const grace = o.shutdownGraceMs ?? 5_000;
  return {
    socketPath: o.socketPath,
    metricsAddress: metricsServer?.address,
    close: () =>
      (closing ??= (async () => {
        log.info('driver shutting down', { socket: o.socketPath });
        // Ends every watch stream first: an open stream would otherwise hold tryShutdown forever.
        await o.driver.stop();
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            log.warn('graceful shutdown timed out; cutting in-flight calls', { grace_ms: grace });
            server.forceShutdown();
            resolve();
          }, grace);
          t.unref();
          server.tryShutdown(() => {
            clearTimeout(t);
            resolve();
          });
        });
        removeSocketIfOurs(o.socketPath, ino);
        await metricsServer?.close();
      })()),
  };
}
