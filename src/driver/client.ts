// A promise-based client of the driver's own socket (the generated ComputeDriverClient over h2c on a Unix
// socket, exactly as the gateway dials it). Used by `substrate-driver sandboxes` and the contract tests.
import * as grpc from '@grpc/grpc-js';
import {
  ComputeDriverClient,
  type DriverSandbox,
  type GetCapabilitiesResponse,
  type GatewayListenerRequirement,
  type WatchSandboxesEvent,
} from '../gen/compute_driver.js';

export class DriverClient {
  readonly raw: ComputeDriverClient;

  constructor(socketPath: string, options: grpc.ClientOptions = {}) {
    this.raw = new ComputeDriverClient(`unix:${socketPath}`, grpc.credentials.createInsecure(), {
      // The gateway's tonic client caps decoded responses at 4 MiB; so does this one.
      'grpc.max_receive_message_length': 4 * 1024 * 1024,
      ...options,
    });
  }

  close(): void {
    this.raw.close();
  }

  private unary<Req, Res>(method: string, req: Req, deadlineMs?: number): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const fn = (this.raw as unknown as Record<string, Function>)[method]!;
      const opts: Partial<grpc.CallOptions> = deadlineMs ? { deadline: Date.now() + deadlineMs } : {};
      fn.call(this.raw, req, new grpc.Metadata(), opts, (err: grpc.ServiceError | null, res: Res) => (err ? reject(err) : resolve(res)));
    });
  }

  getCapabilities(): Promise<GetCapabilitiesResponse> {
    return this.unary('getCapabilities', {});
  }

  async getGatewayListenerRequirements(): Promise<GatewayListenerRequirement[]> {
    const r = await this.unary<unknown, { requirements: GatewayListenerRequirement[] }>('getGatewayListenerRequirements', {});
    return r.requirements;
  }

  async validateSandboxCreate(sandbox: DriverSandbox): Promise<void> {
    await this.unary('validateSandboxCreate', { sandbox });
  }

  async createSandbox(sandbox: DriverSandbox): Promise<void> {
    await this.unary('createSandbox', { sandbox });
  }

  async getSandbox(sandboxId: string, sandboxName = ''): Promise<DriverSandbox> {
    const r = await this.unary<unknown, { sandbox?: DriverSandbox }>('getSandbox', { sandboxId, sandboxName });
    return r.sandbox!;
  }

  async listSandboxes(): Promise<DriverSandbox[]> {
    const r = await this.unary<unknown, { sandboxes: DriverSandbox[] }>('listSandboxes', {});
    return r.sandboxes;
  }

  async stopSandbox(sandboxId: string, sandboxName = ''): Promise<void> {
    await this.unary('stopSandbox', { sandboxId, sandboxName });
  }

  async startSandbox(sandboxId: string, sandboxName = ''): Promise<void> {
    await this.unary('startSandbox', { sandboxId, sandboxName });
  }

  async deleteSandbox(sandboxId: string, sandboxName = ''): Promise<boolean> {
    const r = await this.unary<unknown, { deleted: boolean }>('deleteSandbox', { sandboxId, sandboxName });
    return r.deleted;
  }

  async ensureWorkspace(workspace: string): Promise<void> {
    await this.unary('ensureWorkspace', { workspace });
  }

  async deleteWorkspace(workspace: string): Promise<void> {
    await this.unary('deleteWorkspace', { workspace });
  }

  /** Opens WatchSandboxes; the returned stream emits 'data' (WatchSandboxesEvent), 'error', 'end'. */
  watch(): grpc.ClientReadableStream<WatchSandboxesEvent> {
    return this.raw.watchSandboxes({});
  }
}
