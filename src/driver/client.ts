// A promise-based client of the driver's own socket (the generated v0.1 ComputeDriverClient over h2c on a
// Unix socket, exactly as the gateway dials it). Used by `substrate-driver sandboxes` and the contract tests.
// `tool: true` marks calls as the project's own (GetCapabilities then leaves the driver's idea of which
// gateway generation is talking alone); the gateway stand-in leaves it off.
import * as grpc from '@grpc/grpc-js';
import {
  ComputeDriverClient,
  DriverSandbox,
  StartSandboxRequest,
  type GetCapabilitiesResponse,
  type WatchSandboxesEvent,
} from '../gen/compute_driver.js';
import type { PeerMetadata } from '../gen/extension.js';
import { ComputeDriverService as V0Service, type GatewayListenerRequirement } from '../gen/v0/compute_driver.js';
import { TOOL_CLIENT_HEADER } from './service.js';

export class DriverClient {
  readonly raw: ComputeDriverClient;

  private readonly tool: boolean;

  constructor(socketPath: string, options: grpc.ClientOptions & { tool?: boolean } = {}) {
    const { tool, ...grpcOptions } = options;
    this.tool = tool ?? false;
    this.raw = new ComputeDriverClient(`unix:${socketPath}`, grpc.credentials.createInsecure(), {
      // The gateway's tonic client caps decoded responses at 4 MiB; so does this one.
      'grpc.max_receive_message_length': 4 * 1024 * 1024,
      ...grpcOptions,
    });
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.tool) md.set(TOOL_CLIENT_HEADER, '1');
    return md;
  }

  close(): void {
    this.raw.close();
  }

  private unary<Req, Res>(method: string, req: Req, deadlineMs?: number): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const fn = (this.raw as unknown as Record<string, Function>)[method]!;
      const opts: Partial<grpc.CallOptions> = deadlineMs ? { deadline: Date.now() + deadlineMs } : {};
      fn.call(this.raw, req, this.metadata(), opts, (err: grpc.ServiceError | null, res: Res) => (err ? reject(err) : resolve(res)));
    });
  }

  /** With `gateway` metadata as a v0.1 gateway calls it; without, as a 0.0.x gateway does. */
  getCapabilities(gateway?: PeerMetadata): Promise<GetCapabilitiesResponse> {
    return this.unary('getCapabilities', { gateway });
  }

  /** 0.0.x only (v0.1 removed the RPC); answered on the same socket. */
  getGatewayListenerRequirements(): Promise<GatewayListenerRequirement[]> {
    const m = V0Service.getGatewayListenerRequirements;
    return new Promise((resolve, reject) =>
      this.raw.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, {}, this.metadata(), (err, res) =>
        err || !res ? reject(err) : resolve(res.requirements),
      ),
    );
  }

  async authenticateSandbox(credential: string): Promise<{ sandboxId: string; runtimeIdentity: string }> {
    return this.unary('authenticateSandbox', { credential });
  }

  async validateSandboxCreate(sandbox: DriverSandbox): Promise<void> {
    await this.unary('validateSandboxCreate', { sandbox: DriverSandbox.fromPartial(sandbox) });
  }

  /** Returns the runtime identity. */
  async createSandbox(sandbox: DriverSandbox): Promise<string> {
    const r = await this.unary<unknown, { runtimeIdentity: string }>('createSandbox', { sandbox: DriverSandbox.fromPartial(sandbox) });
    return r.runtimeIdentity;
  }

  async getSandbox(sandboxId: string, name = ''): Promise<DriverSandbox> {
    const r = await this.unary<unknown, { sandbox?: DriverSandbox }>('getSandbox', { sandboxId, name });
    return r.sandbox!;
  }

  async listSandboxes(): Promise<DriverSandbox[]> {
    const r = await this.unary<unknown, { sandboxes: DriverSandbox[] }>('listSandboxes', {});
    return r.sandboxes;
  }

  async stopSandbox(sandboxId: string, name = ''): Promise<void> {
    await this.unary('stopSandbox', { sandboxId, name });
  }

  /** Returns the runtime identity. `more`: v0.1's launch authentication, generation and expected identity. */
  async startSandbox(sandboxId: string, name = '', more: Partial<StartSandboxRequest> = {}): Promise<string> {
    const r = await this.unary<unknown, { runtimeIdentity: string }>('startSandbox', StartSandboxRequest.fromPartial({ ...more, sandboxId, name }));
    return r.runtimeIdentity;
  }

  async deleteSandbox(sandboxId: string, name = ''): Promise<boolean> {
    const r = await this.unary<unknown, { deleted: boolean }>('deleteSandbox', { sandboxId, name });
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
    return this.raw.watchSandboxes({}, this.metadata());
  }
}
