// Prometheus metrics (prom-client, a private registry per driver) and the HTTP endpoint that serves them
// with /healthz and /readyz. Label values are bounded: RPC method names, gRPC code names and phases.
import http from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { logger } from '../common/log.js';
import { isLoopbackHost, loopbackHostHeaders } from '../common/net.js';

const log = logger('driver.metrics');

export class DriverMetrics {
  readonly registry = new Registry();
  readonly rpcTotal: Counter<'method' | 'code'>;
  readonly rpcSeconds: Histogram<'method' | 'code'>;
  readonly backendSeconds: Histogram<'method' | 'code'>;
  readonly sandboxes: Gauge<'state'>;
  readonly watchStreams: Gauge;
  readonly watchAborted: Counter;
  private stateSource: () => Record<string, number> = () => ({});
  private watchSource: () => number = () => 0;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.rpcTotal = new Counter({
      name: 'substrate_driver_rpc_total',
      help: 'ComputeDriver RPCs handled, by method and gRPC status code',
      labelNames: ['method', 'code'],
      registers,
    });
    this.rpcSeconds = new Histogram({
      name: 'substrate_driver_rpc_duration_seconds',
      help: 'ComputeDriver RPC latency, by method and gRPC status code',
      labelNames: ['method', 'code'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.backendSeconds = new Histogram({
      name: 'substrate_driver_backend_duration_seconds',
      help: 'ateapi.Control call latency as seen by the driver (retries included), by method and gRPC status code',
      labelNames: ['method', 'code'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    const self = this;
    this.sandboxes = new Gauge({
      name: 'substrate_driver_sandboxes',
      help: 'Sandboxes managed by the driver, by the phase the gateway derives from their conditions',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        for (const [state, n] of Object.entries(self.stateSource())) this.set({ state }, n);
      },
    });
    this.watchStreams = new Gauge({
      name: 'substrate_driver_watch_streams',
      help: 'Open WatchSandboxes streams',
      registers,
      collect() {
        this.set(self.watchSource());
      },
    });
    this.watchAborted = new Counter({
      name: 'substrate_driver_watch_aborted_total',
      help: 'Watch streams ended with ABORTED because the consumer fell behind',
      registers,
    });
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'substrate_driver_' });
  }

  setSources(states: () => Record<string, number>, watches: () => number): void {
    this.stateSource = states;
    this.watchSource = watches;
  }

  observeRpc(method: string, code: string, seconds: number): void {
    this.rpcTotal.inc({ method, code });
    this.rpcSeconds.observe({ method, code }, seconds);
  }

  observeBackend(method: string, code: string, seconds: number): void {
    this.backendSeconds.observe({ method, code }, seconds);
  }
}

export interface MetricsServer {
  /** host:port actually bound. */
  address: string;
  close(): Promise<void>;
}

/** Serves /healthz (the process is up), /readyz (`ready()`), /metrics. */
export async function serveMetrics(listen: string, metrics: DriverMetrics, ready: () => boolean): Promise<MetricsServer> {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(listen.slice(i + 1));
  // On loopback only local clients may ask: the Host must name the listener (a page reached through DNS
  // rebinding sends its own name) and no browser Origin is accepted.
  let hosts: Set<string> | undefined;
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if ((hosts && !hosts.has(String(req.headers.host ?? '').toLowerCase())) || req.headers.origin !== undefined) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('forbidden: a local client on the listener\'s own address only\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ok = ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ready\n' : 'not ready\n');
    } else if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (e) => res.writeHead(500).end(String(e)),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; try /healthz, /readyz or /metrics\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  const bound = typeof addr === 'object' && addr ? `${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}` : listen;
  if (typeof addr === 'object' && addr && isLoopbackHost(addr.address)) hosts = loopbackHostHeaders(addr.address, addr.port);
  log.info('metrics listening', { address: bound });
  return {
    address: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
