// The ComputeDriver gRPC service bound to a SubstrateDriver: argument checks, error shaping (coded errors
// keep code and message; anything else is INTERNAL), per-RPC metrics and logs. Request bodies are never
// logged (CreateSandbox carries the sandbox token).
import * as grpc from '@grpc/grpc-js';
import type { ComputeDriverServer } from '../gen/compute_driver.js';
import { ApiError, Code, toServiceError } from '../common/errors.js';
import { logger } from '../common/log.js';
import type { SubstrateDriver } from './driver.js';
import type { DriverMetrics } from './metrics.js';

const log = logger('driver.rpc');

type Unary<Req, Res> = grpc.handleUnaryCall<Req, Res>;

export function computeDriverService(driver: SubstrateDriver, metrics?: DriverMetrics): ComputeDriverServer {
  function unary<Req, Res>(method: string, fn: (req: Req) => Promise<Res> | Res): Unary<Req, Res> {
    return (call, cb) => {
      const started = process.hrtime.bigint();
      void (async () => {
        let code = 'OK';
        try {
          const res = await fn(call.request);
          cb(null, res);
        } catch (e) {
          const se = toServiceError(e);
          code = Code[se.code] ?? String(se.code);
          if (se.code === Code.INTERNAL || !(e instanceof ApiError)) {
            log.error('rpc failed', { method, code, error: se.details });
          } else {
            log.info('rpc refused', { method, code, error: se.details });
          }
          cb({ code: se.code, details: se.details, metadata: new grpc.Metadata() } as grpc.ServiceError);
        } finally {
          const secs = Number(process.hrtime.bigint() - started) / 1e9;
          metrics?.observeRpc(method, code, secs);
          log.debug('rpc', { method, code, ms: Math.round(secs * 1e6) / 1e3 });
        }
      })();
    };
  }

  return {
    getCapabilities: unary('GetCapabilities', () => driver.capabilities()),
    getGatewayListenerRequirements: unary('GetGatewayListenerRequirements', () => ({ requirements: [] })),
    validateSandboxCreate: unary('ValidateSandboxCreate', async (req) => {
      await driver.validate(req.sandbox);
      return {};
    }),
    getSandbox: unary('GetSandbox', async (req) => ({ sandbox: await driver.getSandbox(req.sandboxId) })),
    listSandboxes: unary('ListSandboxes', async () => ({ sandboxes: await driver.listSandboxes() })),
    createSandbox: unary('CreateSandbox', async (req) => {
      await driver.create(req.sandbox);
      return {};
    }),
    stopSandbox: unary('StopSandbox', async (req) => {
      await driver.stopSandbox(req.sandboxId);
      return {};
    }),
    startSandbox: unary('StartSandbox', async (req) => {
      await driver.startSandbox(req.sandboxId);
      return {};
    }),
    deleteSandbox: unary('DeleteSandbox', async (req) => ({ deleted: await driver.deleteSandbox(req.sandboxId) })),
    watchSandboxes: (call) => {
      // A stream's latency is its lifetime; only the opening is counted.
      metrics?.rpcTotal.inc({ method: 'WatchSandboxes', code: 'OK' });
      driver.watch(call).catch((e) => {
        const se = toServiceError(e);
        log.error('watch failed', { error: se.details });
        call.emit('error', { code: se.code, details: se.details });
      });
    },
    ensureWorkspace: unary('EnsureWorkspace', async (req) => {
      await driver.ensureWorkspace(req.workspace);
      return {};
    }),
    deleteWorkspace: unary('DeleteWorkspace', async (req) => {
      await driver.deleteWorkspace(req.workspace);
      return {};
    }),
  };
}
