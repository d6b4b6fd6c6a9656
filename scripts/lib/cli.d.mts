// Types for cli.mjs (the scripts are plain ESM JavaScript run by node; these let TypeScript import them).
export declare const REPO_ROOT: string;
export declare class UsageError extends Error {
  constructor(message: string);
}
export interface FlagSpec {
  string?: string[];
  boolean?: string[];
  default?: Record<string, unknown>;
  positional?: number;
}
export declare function parseFlags(args: string[], spec: FlagSpec): Record<string, any> & { _: string[] };
export declare function runMain(prog: string, main: () => Promise<number | void>, helpHint?: string): Promise<void>;
