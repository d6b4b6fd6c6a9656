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
export declare const MAX_BODY_BYTES: number;
export declare const AGENT_IMAGE_PATH: '/opt/openshell-substrate/bootstrap-agent.mjs';
/** Files relative to the root the agent writes under ("/" inside an actor). */
export declare const FILES: Readonly<{ auth: string; bootstrap: string; token: string; endpoint: string }>;

export interface LaunchHandler {
  handle(body: unknown): Promise<{ status: number; body: Record<string, unknown> }>;
  status(): { pinned: boolean; sandbox_id: string | null; auth_epoch: number | null };
}
export declare function createLaunchHandler(opts?: {
  root?: string;
  gatewayKeysText?: string;
  sandboxId?: string;
  now?: () => number;
  log?: (line: string) => void;
}): LaunchHandler;
export declare function createAgentServer(handler: LaunchHandler): Server;
