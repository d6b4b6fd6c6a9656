// Types for kind-run.mjs.
import type { Step } from './kind-plan.mjs';

export declare function kindChildEnv(o?: { from?: Record<string, string | undefined>; set?: Record<string, string> }): Record<string, string>;
export declare const TOOL_REMEDIES: Readonly<Record<string, string>>;
export declare const KIND_UP_TOOLS: readonly string[];
export declare const KIND_DOWN_TOOLS: readonly string[];
export interface Problem {
  tool: string;
  problem: string;
  remedy: string;
}
export declare function checkPrerequisites(tools: readonly string[], opts?: { env?: NodeJS.ProcessEnv; dockerTimeoutMs?: number }): Problem[];
export declare function formatProblems(prog: string, problems: Problem[]): string;
export declare function existingKindClusters(opts?: { env?: NodeJS.ProcessEnv }): string[];
export declare function portInUse(host: string, port: number): Promise<boolean>;
export declare class StepError extends Error {
  constructor(message: string);
}
export declare function processAlive(pid: number): boolean;
export declare function runStep(s: Step, io: { warn: (msg: string) => void }): Promise<void>;
export declare function executePlan(steps: Step[], o: { prog: string }): Promise<void>;
