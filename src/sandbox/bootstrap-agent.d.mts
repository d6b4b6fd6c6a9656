// Types of the bootstrap agent's exports (plain JavaScript: it runs inside actors).
import type { Server } from 'node:http';

export {
  GATEWAY_KEYS_ENV,
  GATEWAY_TOKEN_TYPE,
  SANDBOX_AUDIENCE,
  SANDBOX_TOKEN_TYPE,
  LaunchError,
  isGenerationId,
  isSessionId,
  keyRing,
  parseGatewayKeys,
  parseLaunchAuthentication,
  peekClaims,
  publicKeyOf,
  verifySessionJwt,
  type GatewayKey,
  type KeyRing,
  type LaunchAuthentication,
  type SupervisorAuthBundle,
  type VerifiedClaims,
} from './launch-auth.mjs';
export declare const DEFAULT_PORT: number;
export declare const PORT_ENV: 'OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT';
export declare const SANDBOX_ID_ENV: 'OPENSHELL_SANDBOX_ID';
export declare const LAUNCH_PATH: '/v1/launch';
export declare const IDENTITY_PATH: '/v1/identity';
export declare const DELIVERY_ENV: 'OPENSHELL_SUBSTRATE_DELIVERY';
export declare const IDENTITY_DELIVERY: 'identity';
export declare const IDENTITY_ENV: Readonly<{ id: 'OPENSHELL_SANDBOX_ID'; name: 'OPENSHELL_SANDBOX'; token: 'OPENSHELL_SANDBOX_TOKEN' }>;
export declare const MAX_BODY_BYTES: number;
export declare const AGENT_IMAGE_PATH: '/opt/openshell-substrate/bootstrap-agent.mjs';
/** Files relative to the root the agent writes under ("/" inside an actor). */
export declare const FILES: Readonly<{ auth: string; bootstrap: string; token: string; endpoint: string }>;

export interface LaunchHandler {
  readonly path: '/v1/launch';
  handle(body: unknown): Promise<{ status: number; body: Record<string, unknown> }>;
  status(): { pinned: boolean; sandbox_id: string | null; auth_epoch: number | null };
}

/** A 0.0.x sandbox's identity as delivered (the token may be ""). */
export interface SandboxIdentity {
  sandboxId: string;
  sandboxName: string;
  sandboxToken: string;
}

export interface IdentityHandler {
  readonly path: '/v1/identity';
  handle(body: unknown): Promise<{ status: number; body: Record<string, unknown> }>;
  status(): { pinned: boolean; sandbox_id: string | null; started: boolean };
}
export declare function createIdentityHandler(opts: { start: (id: SandboxIdentity) => Promise<void>; sandboxId?: string; log?: (line: string) => void }): IdentityHandler;
/** The workload's environment in identity mode: `base` without OPENSHELL_SUBSTRATE_* and identity names, plus `id`. */
export declare function workloadEnv(base: Readonly<Record<string, string | undefined>>, id: SandboxIdentity): Record<string, string>;
export declare function createLaunchHandler(opts?: {
  root?: string;
  gatewayKeysText?: string;
  sandboxId?: string;
  now?: () => number;
  log?: (line: string) => void;
}): LaunchHandler;
export declare function createAgentServer(handler: LaunchHandler | IdentityHandler | Omit<LaunchHandler, 'path'>): Server;
