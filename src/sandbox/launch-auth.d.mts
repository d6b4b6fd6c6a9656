// Types of launch-auth.mjs (plain JavaScript: it also runs inside actors, where there is no TypeScript loader).
import type { KeyObject } from 'node:crypto';

export declare const GATEWAY_KEYS_ENV: 'OPENSHELL_SUBSTRATE_GATEWAY_KEYS';
export declare const GATEWAY_TOKEN_TYPE: 'openshell-gateway-session+jwt';
export declare const SANDBOX_TOKEN_TYPE: 'openshell-sandbox-session+jwt';
export declare const SANDBOX_AUDIENCE: 'openshell-sandbox';

/** A refusal with the HTTP status the agent answers (400 malformed, 403 not trusted, 409 stale, 500). */
export declare class LaunchError extends Error {
  constructor(status: number, message: string);
  readonly status: number;
}
export declare function bad(message: string): LaunchError;
export declare function denied(message: string): LaunchError;

export interface SupervisorAuthBundle {
  session_id: string;
  runtime_generation: string;
  session_rotation: number;
  auth_epoch: number;
  gateway_token: string;
  gateway_expires_at: number;
  sandbox_token: string;
  sandbox_expires_at: number;
}

/** A verification key with its PEM as a UTF-8 string (the workload-side form). */
export interface GatewayKey {
  key_id: string;
  public_key_pem: string;
}

export interface LaunchAuthentication {
  supervisor: SupervisorAuthBundle;
  gateway_id: string;
  verification_keys: GatewayKey[];
}

export interface VerifiedClaims {
  sandbox_id: string;
  runtime_generation: string;
  auth_epoch: number;
  exp: number;
  iat: number;
}

export type KeyRing = Map<string, { key: KeyObject; der: Buffer }>;

export declare function nameOf(k: string): string;
export declare function exactFields(o: unknown, fields: readonly string[], what: string, optional?: readonly string[]): void;
export declare function isIdent(v: unknown, max?: number): boolean;
export declare function isUnsigned(v: unknown): boolean;
export declare function isJwtText(v: unknown): boolean;
export declare function isGenerationId(v: unknown): boolean;
export declare function isSessionId(v: unknown): boolean;
export declare function publicKeyOf(pem: string, keyId: string): KeyObject;
export declare function parseLaunchAuthentication(input: Uint8Array | string): LaunchAuthentication;
export declare function parseGatewayKeys(text: string): GatewayKey[];
export declare function keyRing(list: readonly GatewayKey[]): KeyRing;
export declare function peekClaims(token: string): Record<string, unknown> | undefined;
export declare function verifySessionJwt(
  token: string,
  o: { profile: 'gateway' | 'sandbox'; gatewayId: string; ring: KeyRing; nowSec?: number; label?: string },
): VerifiedClaims;
