// Types for kind-checkout.mjs.
export declare const SUBSTRATE_RELEASE: Readonly<{ tag: string; commit: string; repo: string }>;
export declare const TEST_ONLY_COMMIT_ENV: string;
export declare const SUBSTRATE_SCRIPTS: readonly string[];
export declare function checkoutRemedy(dir: string): string;
export declare function expectedCommitFrom(env: Record<string, string | undefined>): { commit: string; testOverride: boolean };
export type CheckoutResult = { ok: true; head: string; tags: string[]; dirty: string[] } | { ok: false; problem: string };
export declare function verifyCheckout(dir: string, o?: { expectedCommit?: string; tag?: string; allowDirty?: boolean }): CheckoutResult;
