// Types for kind-plan.mjs.
export { SUBSTRATE_RELEASE, SUBSTRATE_SCRIPTS } from './kind-checkout.mjs';
export declare const ATE_NAMESPACE: string;
export declare const PODCERT_NAMESPACE: string;
export declare const API_SERVER_NAME: string;
export declare const CA_SIGNER: string;
export declare const CA_BUNDLE_LABEL: string;
export declare const CLIENT_SERVICE_ACCOUNT: string;
export declare const REGISTRY_CONTAINER: string;
export declare const REGISTRY_LABEL: string;
export declare const KO_DOCKER_REPO: string;
export declare const CREDENTIAL_PROVIDER: string;
export declare const DEFAULT_SANDBOX_CONFIG: string;
export declare const WORKER_IMAGE_KO: string;
export declare const CHILD_ENV_NAMES: readonly string[];
export declare const STEP_LIMITS: Readonly<{
  createCluster: number;
  install: number;
  koResolve: number;
  kubectl: number;
  waitSlack: number;
  portForward: number;
}>;
export declare const KIND_UP_DEFAULTS: Readonly<{
  clusterName: string;
  outDir: string;
  namespace: string;
  workerPool: string;
  workers: number;
  apiPort: number;
  routerPort: number;
  tokenDuration: string;
  timeout: string;
}>;
export declare const KIND_UP_HELP: string;
export declare const KIND_DOWN_HELP: string;

export interface KindUpOptions {
  substrateDir: string;
  clusterName: string;
  outDir: string;
  namespace: string;
  workerPool: string;
  workers: number;
  apiPort: number;
  routerPort: number;
  tokenDuration: string;
  timeout: string;
  goarch: string;
  allowDirty: boolean;
  verifyCheckout: boolean;
  dryRun: boolean;
}
export interface KindDownOptions {
  clusterName: string;
  outDir: string;
  keepRegistry: boolean;
  dryRun: boolean;
}
export type Step =
  | { type: 'mkdir'; path: string; mode: number; desc: string }
  | {
      type: 'run';
      argv: string[];
      cwd?: string;
      env?: Record<string, string>;
      timeoutSecs: number;
      stdoutTo?: { path: string; mode: number; nonEmpty?: boolean };
      onlyIf?: string[];
      allowFail?: boolean;
      desc: string;
    }
  | { type: 'background'; argv: string[]; logPath: string; pidPath: string; desc: string }
  | { type: 'wait-tcp'; host: string; port: number; timeoutSecs: number; logPath?: string; desc: string }
  | { type: 'write'; path: string; mode: number; content: string; desc: string }
  | { type: 'kill-pidfile'; pidPath: string; match: string; desc: string }
  | { type: 'remove'; paths: string[]; desc: string };
export type CheckoutSummary =
  | { verified: false }
  | { verified: true; head: string; tags: string[]; dirty: string[]; testOverride: boolean };

export declare function goArch(nodeArch?: string): string;
export declare function durationSeconds(s: string): number | null;
export declare function parseKindUpArgs(args: string[], ctx?: { cwd?: string; arch?: string }): { help: true } | ({ help: false } & KindUpOptions);
export declare function parseKindDownArgs(args: string[], ctx?: { cwd?: string }): { help: true } | ({ help: false } & KindDownOptions);
export declare function outFiles(outDir: string): {
  kubeconfig: string;
  caPath: string;
  tokenPath: string;
  namespaceManifest: string;
  workerPoolManifest: string;
  workerPoolResolved: string;
  driverConfig: string;
  apiPid: string;
  apiLog: string;
  routerPid: string;
  routerLog: string;
};
export declare function kubeContext(clusterName: string): string;
export declare function renderDriverConfig(o: KindUpOptions): string;
export declare function renderNamespaceManifest(ns: string): string;
export declare function renderWorkerPoolManifest(o: KindUpOptions): string;
export declare function buildKindUpPlan(o: KindUpOptions): Step[];
export declare function buildKindDownPlan(o: KindDownOptions): Step[];
export declare function shellQuote(s: string): string;
export declare function formatStep(s: Step): string;
export declare function formatPlan(steps: Step[], header?: string[]): string;
export declare function kindUpPlanHeader(o: KindUpOptions, check: CheckoutSummary): string[];
