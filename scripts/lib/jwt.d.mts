// Types for jwt.mjs.
import type { KeyObject } from 'node:crypto';

export declare const REPO_ROOT: string;
export declare const KEY_FILES: Readonly<{ signing: 'signing.pem'; public: 'public.pem'; kid: 'kid' }>;
export type JwtAlg = 'EdDSA' | 'ES256' | 'RS256';
export declare const SUPPORTED_ALGS: readonly JwtAlg[];
export declare const GATEWAY_EXP_LEEWAY_SECS: number;
export declare const API_AUDIENCE: string;
export declare const DEFAULT_API_SUBJECT: string;

export declare class JwtError extends Error {
  constructor(message: string);
}

export interface KeyPaths {
  dir: string;
  signingKeyPath: string;
  publicKeyPath: string;
  kidPath: string;
}
export interface EnsureKeypairResult extends KeyPaths {
  alg: JwtAlg;
  kid: string;
  created: string[];
  reused: string[];
  notes: string[];
}

export declare function isUuid(s: unknown): s is string;
export declare function sandboxSubject(sandboxId: string): string;
export declare function gatewayIssuer(gatewayId?: string): string;
export declare function keyPaths(dir: string): KeyPaths;
export declare function isInsideRepo(p: string, repoRoot?: string): boolean;
export declare function assertOutsideRepo(dir: string, repoRoot?: string): void;
export declare function algForKey(key: KeyObject): JwtAlg;
export declare function readKid(dir: string): string;
export declare function loadPublicKey(dir: string): KeyObject;
export declare function loadSigningKey(dir: string): KeyObject;
export declare function ensureKeypair(dir: string, opts?: { alg?: JwtAlg; repoRoot?: string }): EnsureKeypairResult;
export declare function gatewayJwtToml(dir: string, opts?: { gatewayId?: string; ttlSecs?: number }): string;
export declare function renderSecretManifest(dir: string, opts?: { name?: string; namespace?: string }): string;
export declare function mintSandboxToken(
  dir: string,
  opts: { sandboxId: string; gatewayId?: string; ttlSecs?: number; now?: number },
): Promise<string>;
export declare function verifySandboxToken(
  token: string,
  dir: string,
  opts?: { gatewayId?: string; now?: number },
): Promise<{ header: Record<string, unknown>; claims: Record<string, unknown> }>;
export declare function mintApiToken(
  dir: string,
  opts: { issuer: string; audience?: string; alg?: JwtAlg; ttlSecs?: number; sub?: string; now?: number },
): Promise<string>;
export declare function publicJwks(dir: string): Promise<{ keys: Array<Record<string, unknown>> }>;
