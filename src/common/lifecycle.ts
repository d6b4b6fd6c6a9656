// How a long-running command (`serve`, `local serve`) ends: SIGINT, SIGTERM and SIGHUP all stop it cleanly;
// an unhandled promise rejection or an uncaught exception anywhere is logged, the same clean stop runs
// (running actors are suspended, so nothing is lost that can be kept), and the process exits non-zero.
// A second signal during the stop exits at once; a stop that hangs is cut off after `graceMs`.
import { logger } from './log.js';

const log = logger('lifecycle');

export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Resolves with the exit status once `stop` has run after a signal (0) or a fault (1). */
export function runUntilStopped(stop: () => Promise<void>, opts: { graceMs?: number; what?: string } = {}): Promise<number> {
  const grace = opts.graceMs ?? 60_000;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const begin = (code: number, why: string) => {
      if (stopping) return;
      stopping = true;
      const force = setTimeout(() => {
        log.error('stop took too long; exiting', { graceMs: grace });
        process.exit(1);
      }, grace);
      force.unref();
      for (const s of STOP_SIGNALS) process.once(s, () => process.exit(130));
      log.info('stopping', { why, what: opts.what ?? '' });
      stop()
        .catch((e: unknown) => {
          log.error('stop failed', { error: e });
          code = 1;
        })
        .finally(() => {
          clearTimeout(force);
          resolve(code);
        });
    };
    for (const s of STOP_SIGNALS) process.once(s, () => begin(0, s));
    process.on('unhandledRejection', (e) => {
      log.error('unhandled promise rejection; stopping', { error: e });
      begin(1, 'unhandled rejection');
    });
    process.on('uncaughtException', (e) => {
      log.error('uncaught exception; stopping', { error: e });
      begin(1, 'uncaught exception');
    });
  });
}
