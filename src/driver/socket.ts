// Unix socket hygiene for the driver's gRPC endpoint, after upstream's external_driver_socket.rs:
// - the parent directory is created if needed, must not be a symlink, must be owned by us, and is set to 0700;
// - an existing path is refused unless it is a Unix socket owned by us; a live socket (something accepts
//   connections on it) is refused; a stale one is replaced;
// - the socket is bound inside the 0700 directory (no window where others can connect) and set to 0600;
// - on exit it is removed, but only if it is still the socket we bound (same file), so a draining driver
//   never deletes its successor's socket.
// Node cannot read SO_PEERCRED without a native addon; the 0700 directory gives the same same-uid guarantee
// (root excepted).
import { chmodSync, lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';

export class SocketError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SocketError';
  }
}

const euid = () => (typeof process.geteuid === 'function' ? process.geteuid() : -1);

/** Resolves true when something accepts a connection on the socket. */
export function socketIsLive(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path });
    const done = (v: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(true), timeoutMs); // a hung listener is still a listener
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Prepares `path` for binding: private parent directory, no live or foreign socket in the way. */
export async function prepareSocketPath(path: string): Promise<void> {
  if (!path.startsWith('/')) throw new SocketError(`socket path ${path} must be absolute`);
  if (Buffer.byteLength(path) > 107) throw new SocketError(`socket path ${path} is longer than the 107 bytes a Unix socket address allows`);
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const d = lstatSync(dir);
  if (d.isSymbolicLink()) throw new SocketError(`socket directory ${dir} is a symlink; refusing it`);
  if (!d.isDirectory()) throw new SocketError(`socket directory ${dir} is not a directory`);
  const uid = euid();
  if (uid >= 0 && d.uid !== uid) throw new SocketError(`socket directory ${dir} is owned by uid ${d.uid}, not by this process (uid ${uid})`);
  chmodSync(dir, 0o700);

  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) throw new SocketError(`${path} exists but is not a Unix socket; refusing to replace it`);
  if (uid >= 0 && st.uid !== uid) throw new SocketError(`${path} exists but is not an owned Unix socket (uid ${st.uid}); refusing to replace it`);
  if (await socketIsLive(path)) throw new SocketError(`${path} is in use: another process is serving on it (is a driver already running?)`);
  unlinkSync(path); // stale socket of ours
}

/** Identity of a file: inode numbers are reused, so birth and change times (ns precision) go with it. */
function identityOf(st: { ino: number; birthtimeMs: number; ctimeMs: number }): string {
  return `${st.ino}:${st.birthtimeMs}:${st.ctimeMs}`;
}

/** Makes the bound socket private and returns its identity for a safe removal later. */
export function secureBoundSocket(path: string): string {
  chmodSync(path, 0o600);
  return identityOf(statSync(path));
}

/** Removes the socket if it is still the one we bound (same identity). */
export function removeSocketIfOurs(path: string, identity: string | undefined): void {
  try {
    const st = lstatSync(path);
    if (st.isSocket() && (identity === undefined || identityOf(st) === identity)) unlinkSync(path);
  } catch {
    /* already gone */
  }
}
