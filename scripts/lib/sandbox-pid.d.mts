// Types for sandbox-pid.mjs (plain ESM JavaScript shared by scripts/soak.ts and scripts/helpdesk.mjs).
export declare function runscBinary(): string;
export declare function instanceOf(stateDir: string): { stateDir: string; tag: string; runscRoot: string; bundles: string; netnsPrefix: string };
export declare function slotOfWorker(workerName: string): number | undefined;
export declare function runscSandboxes(stateDir: string): Promise<Array<{ id: string; pid: number; status: string; bundle: string }>>;
export declare function sandboxOfWorker(stateDir: string, workerName: string): Promise<{ sandboxId: string; pid: number; netns: string } | undefined>;
