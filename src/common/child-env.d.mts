export declare const BASE_ENV_NAMES: readonly string[];
export declare function childEnv(opts?: {
  from?: Record<string, string | undefined>;
  inherit?: boolean;
  pass?: readonly string[];
  prefixes?: readonly string[];
  set?: Record<string, string | undefined>;
}): Record<string, string>;
export declare function spawnOptions<T extends object>(opts: T): T & { env: Record<string, string> };
