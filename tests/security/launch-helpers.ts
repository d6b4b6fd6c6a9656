// A stand-in for the OpenShell v0.1 gateway's launch signing (openshell-core jwt.rs SessionJwtIssuer): an
// Ed25519 key pair per gateway, and SandboxLaunchAuthentication bundles minted for one sandbox and auth epoch
// exactly as the gateway serializes them (serde_json; `public_key_pem` as a JSON array of bytes).
import { createHash, randomUUID } from 'node:crypto';
import { SignJWT, exportSPKI, generateKeyPair, type CryptoKey } from 'jose';

export interface Minted {
  /** The gateway's bytes (what `launch_authentication` carries). */
  bytes: Buffer;
  gatewayToken: string;
  sandboxToken: string;
  authEpoch: number;
  /** sha256 hex of the gateway token: what the supervisor stand-in reports. */
  digest: string;
}

export interface MintOptions {
  sandboxId: string;
  authEpoch: number;
  runtimeGeneration?: string;
  /** Seconds from now; default 3600. Negative: already expired. */
  ttlS?: number;
  /** Claims for the sandbox_id of both tokens (default options.sandboxId). */
  claimSandboxId?: string;
  /** Sign with this gateway's key but present another gateway's public keys (or extra ones). */
  verificationKeys?: Array<{ key_id: string; public_key_pem: string }>;
  /** Last-minute edits of the bundle object (before serialization). */
  edit?: (bundle: Record<string, any>) => void;
  alg?: 'EdDSA' | 'none';
}

export class GatewayStandin {
  private constructor(
    readonly gatewayId: string,
    readonly keyId: string,
    private readonly privateKey: CryptoKey,
    readonly publicKeyPem: string,
  ) {}

  static async create(gatewayId = 'gw-test', keyId = 'key-1'): Promise<GatewayStandin> {
    const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    return new GatewayStandin(gatewayId, keyId, privateKey, await exportSPKI(publicKey));
  }

  publicKeys(): Array<{ key_id: string; public_key_pem: string }> {
    return [{ key_id: this.keyId, public_key_pem: this.publicKeyPem }];
  }

  private async token(profile: 'gateway' | 'sandbox', o: MintOptions, iat: number, exp: number): Promise<string> {
    const iss = `openshell-gateway:${this.gatewayId}`;
    const sid = o.claimSandboxId ?? o.sandboxId;
    const claims = {
      iss,
      sub: `spiffe://openshell/sandbox/${sid}`,
      aud: profile === 'gateway' ? iss : 'openshell-sandbox',
      iat,
      exp,
      jti: randomUUID(),
      sandbox_id: sid,
      runtime_generation: o.runtimeGeneration ?? 'g0000000000000001',
      auth_epoch: o.authEpoch,
      component: 'openshell-supervisor',
    };
    const typ = profile === 'gateway' ? 'openshell-gateway-session+jwt' : 'openshell-sandbox-session+jwt';
    if (o.alg === 'none') {
      const enc = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');
      return `${enc({ alg: 'none', typ, kid: this.keyId })}.${enc(claims)}.${Buffer.alloc(64).toString('base64url')}`;
    }
    return new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', typ, kid: this.keyId }).sign(this.privateKey);
  }

  async mint(o: MintOptions): Promise<Minted> {
    const now = Math.floor(Date.now() / 1000);
    const ttl = o.ttlS ?? 3600;
    const iat = ttl < 0 ? now + ttl - 600 : now;
    const exp = ttl < 0 ? now + ttl : now + ttl;
    const gatewayToken = await this.token('gateway', o, iat, exp);
    const sandboxToken = await this.token('sandbox', o, iat, exp);
    const bundle: Record<string, any> = {
      supervisor: {
        session_id: randomUUID(),
        runtime_generation: o.runtimeGeneration ?? 'g0000000000000001',
        session_rotation: 1,
        auth_epoch: o.authEpoch,
        gateway_token: gatewayToken,
        gateway_expires_at: exp,
        sandbox_token: sandboxToken,
        sandbox_expires_at: exp,
      },
      gateway_id: this.gatewayId,
      verification_keys: (o.verificationKeys ?? this.publicKeys()).map((k) => ({ key_id: k.key_id, public_key_pem: [...Buffer.from(k.public_key_pem, 'utf8')] })),
    };
    o.edit?.(bundle);
    return {
      bytes: Buffer.from(JSON.stringify(bundle)),
      gatewayToken,
      sandboxToken,
      authEpoch: o.authEpoch,
      digest: createHash('sha256').update(gatewayToken).digest('hex'),
    };
  }
}

/** The parts of a token that must never show anywhere: the whole token and its signature. */
export function secretPartsOf(m: Minted): string[] {
  return [m.gatewayToken, m.sandboxToken, m.gatewayToken.split('.')[2]!, m.sandboxToken.split('.')[2]!];
}

/** What the supervisor stand-in (tests/integration/gateway/supervisor-standin.mjs) answers on GET /session. */
export interface Session {
  connected: boolean;
  sandbox_id?: string;
  auth_epoch?: number;
  gateway_token_sha256?: string;
  sandbox_token_verified?: boolean;
  endpoint?: string | null;
  gateway_id?: string;
  reason?: string;
}
