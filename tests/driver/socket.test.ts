// Unix socket hygiene with real sockets on disk (upstream's external_driver_socket.rs cases): private parent
// directory, refusal of a live socket, of a non-socket file and of a symlinked directory, replacement of a
// stale socket, and removal of only our own socket on exit.
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync, existsSync, chmodSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { prepareSocketPath, removeSocketIfOurs, secureBoundSocket, socketIsLive, SocketError } from '../../src/driver/socket.js';

const root = mkdtempSync(join(tmpdir(), 'drv-sock-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let k = 0;
const fresh = () => join(root, `d${k++}`);

/** A socket left behind by a process that was killed (SIGKILL: no cleanup ran). */
async function staleSocket(path: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (c) => reject(new Error(`listener exited ${c}`)));
  });
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

function listen(path: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(path, () => resolve(s));
  });
}

describe('socket hygiene', () => {
  it('creates the parent directory 0700 and tightens an existing one', async () => {
    const d = fresh();
    await prepareSocketPath(join(d, 'a', 'driver.sock'));
    expect(statSync(join(d, 'a')).mode & 0o777).toBe(0o700);
    const open = fresh();
    mkdirSync(open, { mode: 0o755 });
    chmodSync(open, 0o755);
    await prepareSocketPath(join(open, 'driver.sock'));
    expect(statSync(open).mode & 0o777).toBe(0o700);
  });

  it('refuses a live socket', async () => {
    const d = fresh();
    mkdirSync(d, { mode: 0o700 });
    const p = join(d, 'driver.sock');
    const s = await listen(p);
    try {
      expect(await socketIsLive(p)).toBe(true);
      await expect(prepareSocketPath(p)).rejects.toThrow(/in use: another process is serving on it/);
      expect(existsSync(p)).toBe(true);
    } finally {
      s.close();
    }
  });

  it('replaces a stale socket of ours', async () => {
    const d = fresh();
    mkdirSync(d, { mode: 0o700 });
    const p = join(d, 'driver.sock');
    await staleSocket(p);
    expect(statSync(p).isSocket()).toBe(true);
    expect(await socketIsLive(p)).toBe(false);
    await prepareSocketPath(p);
    expect(existsSync(p)).toBe(false);
  });

  it('refuses a path that is not a socket', async () => {
    const d = fresh();
    mkdirSync(d, { mode: 0o700 });
    const p = join(d, 'driver.sock');
    writeFileSync(p, 'not a socket');
    await expect(prepareSocketPath(p)).rejects.toThrow(/exists but is not a Unix socket/);
    expect(existsSync(p)).toBe(true);
  });

  it('refuses a symlinked socket directory', async () => {
    const real = fresh();
    mkdirSync(real, { mode: 0o700 });
    const link = fresh();
    symlinkSync(real, link);
    await expect(prepareSocketPath(join(link, 'driver.sock'))).rejects.toThrow(SocketError);
    await expect(prepareSocketPath(join(link, 'driver.sock'))).rejects.toThrow(/symlink/);
  });

  it('refuses relative and over-long paths', async () => {
    await expect(prepareSocketPath('rel/driver.sock')).rejects.toThrow(/absolute/);
    await expect(prepareSocketPath(`/${'x'.repeat(120)}/d.sock`)).rejects.toThrow(/107 bytes/);
  });

  it('sets the socket 0600 and removes only the socket it bound', async () => {
    const d = fresh();
    mkdirSync(d, { mode: 0o700 });
    const p = join(d, 'driver.sock');
    await staleSocket(p);
    const ino = secureBoundSocket(p);
    expect(statSync(p).mode & 0o777).toBe(0o600);
    // A successor replaced the socket: ours must not remove it.
    rmSync(p);
    await staleSocket(p);
    removeSocketIfOurs(p, ino);
    expect(existsSync(p)).toBe(true);
    removeSocketIfOurs(p, secureBoundSocket(p));
    expect(existsSync(p)).toBe(false);
  });
});
