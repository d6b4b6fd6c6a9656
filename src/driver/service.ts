// The ComputeDriver gRPC service bound to a SubstrateDriver: argument checks, error shaping (coded errors
// keep code and message; anything else is INTERNAL), per-RPC metrics and logs. Request bodies are never
// logged (CreateSandbox carries the sandbox token).
import * as grpc from '@grpc/grpc-js';
import type { ComputeDriverServer } from '../gen/compute_driver.js';
import type { GetGatewayListenerRequirementsResponse } from '../gen/v0/compute_driver.js';
import { ApiError, Code, toServiceError } from '../common/errors.js';
import { logger } from '../common/log.js';
import type { SubstrateDriver } from './driver.js';
import type { DriverMetrics } from './metrics.js';

const log = logger('driver.rpc');

type Unary<Req, Res> = grpc.handleUnaryCall<Req, Res>;

/** gRPC metadata key the project's own tools send: their GetCapabilities says nothing about the gateway. */
export const TOOL_CLIENT_HEADER = 'openshell-substrate-tool';

/** The methods served on the socket: v0.1's, plus 0.0.x's GetGatewayListenerRequirements. */
export type DualComputeDriverServer = ComputeDriverServer & {
  getGatewayListenerRequirements: grpc.handleUnaryCall<unknown, GetGatewayListenerRequirementsResponse>;
};

export function computeDriverService(driver: SubstrateDriver, metrics?: DriverMetrics): DualComputeDriverServer {
  function unary<Req, Res>(method: string, fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res> | Res): Unary<Req, Res> {
    return (call, cb) => {
      const started = process.hrtime.bigint();
      void (async () => {
        let code = 'OK';
        try {
          const res = await fn(call.request, call);
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
    // The project's own clients (CLI, tests' probes) mark themselves so that they do not change which
    // gateway generation the responses are encoded for.
    getCapabilities: unary('GetCapabilities', (req, call) =>
      driver.capabilities(req.gateway, call.metadata.get(TOOL_CLIENT_HEADER).length === 0),
    ),
    // 0.0.x gateways only (v0.1 removed it): no extra gateway listener is needed.
    getGatewayListenerRequirements: unary('GetGatewayListenerRequirements', () => ({ requirements: [] })),
    // The credential is a secret: never logged, never echoed.
    authenticateSandbox: unary('AuthenticateSandbox', (req) => driver.authenticate(req.credential)),
    validateSandboxCreate: unary('ValidateSandboxCreate', async (req) => {
      await driver.validate(req.sandbox);
      return {};
    }),
    getSandbox: unary('GetSandbox', async (req) => ({ sandbox: await driver.getSandbox(req.sandboxId) })),
    listSandboxes: unary('ListSandboxes', async () => ({ sandboxes: await driver.listSandboxes() })),
    createSandbox: unary('CreateSandbox', async (req) => ({ runtimeIdentity: await driver.create(req.sandbox) })),
    stopSandbox: unary('StopSandbox', async (req) => {
      await driver.stopSandbox(req.sandboxId);
      return {};
    }),
    startSandbox: unary('StartSandbox', async (req) => ({ runtimeIdentity: await driver.startSandbox(req) })),
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
