// One local Substrate per state directory. `<state-dir>/instance.lock` names the holder by pid and process
// start time (so a reused pid never passes for it); a second instance is refused before it touches any
// socket, local.json or catalog of the first. A lock left by a process that is gone is taken over.
import { chmodSync, closeSync, linkSync, openSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { pidAlive, procStat } from './runtime/exec.js';

interface Holder {
  pid: number;
  start_time: string;
  started_at: string;
}

export interface InstanceLock {
  release(): void;
}

export class InstanceRunning extends Error {
  constructor(
    readonly stateDir: string,
    readonly holder: Holder,
  ) {
    super(
      `a local Substrate already runs for ${stateDir} (pid ${holder.pid}, started ${holder.started_at}); stop it first (kill -TERM ${holder.pid}) or use another --state-dir`,
    );
    this.name = 'InstanceRunning';
  }
}

function readHolder(file: string): Holder | undefined {
  try {
    const h = JSON.parse(readFileSync(file, 'utf8')) as Partial<Holder>;
    if (typeof h.pid === 'number' && typeof h.start_time === 'string') return { pid: h.pid, start_time: h.start_time, started_at: String(h.started_at ?? '') };
  } catch {
    // unreadable or half-written: treated as no holder
  }
  return undefined;
}

const alive = (h: Holder | undefined): h is Holder => !!h && h.pid !== process.pid && pidAlive(h.pid, h.start_time);

export function acquireInstanceLock(stateDir: string): InstanceLock {
  const file = join(stateDir, 'instance.lock');
  const me: Holder = { pid: process.pid, start_time: procStat(process.pid)?.startTime ?? '', started_at: new Date().toISOString() };
  const mine = `${file}.${process.pid}-${randomBytes(4).toString('hex')}`;
  const fd = openSync(mine, 'wx', 0o600);
  try {
    writeSync(fd, JSON.stringify(me) + '\n');
  } finally {
    closeSync(fd);
  }
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        linkSync(mine, file); // atomic: fails with EEXIST when a lock file is there
        return {
          release() {
            const h = readHolder(file);
            if (h && h.pid === me.pid && h.start_time === me.start_time) rmSync(file, { force: true });
          },
        };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const holder = readHolder(file);
      if (alive(holder)) throw new InstanceRunning(stateDir, holder);
      // Stale: move it aside atomically; if what we moved is not the stale lock we read (another starter
      // replaced it meanwhile), put it back and look again.
      const aside = `${file}.stale-${randomBytes(4).toString('hex')}`;
      try {
        renameSync(file, aside);
      } catch {
        continue;
      }
      const moved = readHolder(aside);
      if (alive(moved)) {
        try {
          linkSync(aside, file);
        } catch {
          /* someone else holds it now; the next round sees them */
        }
      }
      rmSync(aside, { force: true });
    }
    throw new Error(`could not take the instance lock ${file}: it keeps changing; is another local Substrate starting?`);
  } finally {
    try {
      unlinkSync(mine);
    } catch {
      /* gone */
    }
  }
}

/** The state directory's owner and mode are ours to fix: 0700, owned by this user. */
export function checkStateDirPrivate(stateDir: string): 'ok' | 'tightened' {
  const st = statSync(stateDir);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new Error(`state directory ${stateDir} belongs to uid ${st.uid}, not to this user (uid ${uid}); use a directory of your own (--state-dir) or chown it`);
  }
  if ((st.mode & 0o077) === 0) return 'ok';
  chmodSync(stateDir, 0o700);
  return 'tightened';
}
