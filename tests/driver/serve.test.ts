// `substrate-driver serve --local` as a user runs it: a child process embedding the local Substrate, the
// driver on its default socket under the state directory, the sandboxes CLI finding it without flags
// beyond --state-dir, and a clean exit on SIGTERM that removes the socket and local.json.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureDefaultImage } from '../../src/local/images.js';
import type { LocalJson } from '../../src/local/index.js';
import { SubstrateClient } from '../../src/substrate/client.js';
import { attachableFlags, operatorTemplate, provisionTemplateVia } from './helpers.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'substrate-driver.js');

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => (out += d));
    c.stderr.on('data', (d) => (err += d));
    c.on('exit', (code) => resolve({ code, out, err }));
  });
}

describe('substrate-driver serve --local', () => {
  const dir = mkdtempSync(join(tmpdir(), 'drv-serve-'));
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves, answers the CLI, and shuts down cleanly on SIGTERM', async () => {
    child = spawn(
      process.execPath,
      [
        BIN, 'serve', '--local', '--state-dir', dir, '--metrics-listen', '127.0.0.1:0', '--router-url', 'http://127.0.0.1:0', '--log-level', 'warn',
        '--template-labels', attachableFlags('cli-tpl').template_labels!,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child!.stdout!.on('data', (d) => {
        out += d;
        const i = out.indexOf('\n');
        if (i >= 0) resolve(out.slice(0, i));
      });
      child!.once('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
    });
    const info = JSON.parse(line) as { socket: string; api: string; metrics: string };
    expect(info.socket).toBe(join(dir, 'run', 'driver.sock'));
    expect(info.api).toBe(`unix:${join(dir, 'ateapi.sock')}`);
    expect(statSync(info.socket).mode & 0o777).toBe(0o600);
    expect(existsSync(join(dir, 'local.json'))).toBe(true);
    expect((await fetch(`http://${info.metrics}/readyz`)).status).toBe(200);

    const list = await run(['sandboxes', 'list', '--json', '--state-dir', dir]);
    expect(list.err).toBe('');
    expect(list.code).toBe(0);
    expect(JSON.parse(list.out)).toEqual([]);
    const actors = await run(['actors', 'list', '--all', '--state-dir', dir]);
    expect(actors.code).toBe(0);
    expect(actors.out).toMatch(/^ATESPACE\s+NAME\s+TEMPLATE\s+STATE/);

    // `sandboxes watch` streams what `sandboxes create` and `sandboxes delete` do. The sandbox uses an
    // operator's pre-provisioned template, created through the ateapi on the owner-only socket named in
    // local.json (made attachable by the --template-labels the driver was started with).
    const lj = JSON.parse(readFileSync(join(dir, 'local.json'), 'utf8')) as LocalJson;
    const image = (await ensureDefaultImage(dir)).ref;
    const ateapi = new SubstrateClient({ endpoint: `unix:${lj.socket_path}`, plaintext: true });
    try {
      await provisionTemplateVia(ateapi, operatorTemplate('cli-tpl', image));
    } finally {
      ateapi.close();
    }
    const watcher = spawn(process.execPath, [BIN, 'sandboxes', 'watch', '--json', '--state-dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let wout = '';
    watcher.stdout!.on('data', (d) => (wout += d));
    // Wait until its stream is open (the driver's watch-stream gauge), so it sees everything from here on.
    for (let i = 0; ; i++) {
      const m = await (await fetch(`http://${info.metrics}/metrics`)).text();
      if (/^substrate_driver_watch_streams 1$/m.test(m)) break;
      if (i > 300 || watcher.exitCode !== null) throw new Error(`sandboxes watch did not open a stream: ${m.match(/^substrate_driver_watch_streams.*$/m)?.[0]}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const created = await run(['sandboxes', 'create', '--name', 'cli-box', '--actor-template', 'cli-tpl', '--wait', '--json', '--state-dir', dir]);
    expect(created.err).toBe('');
    expect(created.code).toBe(0);
    const { id, name } = JSON.parse(created.out) as { id: string; name: string };
    expect(name).toBe('cli-box');
    const bad = await run(['sandboxes', 'create', '--image', 'ubuntu:24.04', '--state-dir', dir]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/not pinned.*\(INVALID_ARGUMENT\)/);
    const del = await run(['sandboxes', 'delete', 'cli-box', '--state-dir', dir]);
    expect(del.code).toBe(0);
    expect(del.out).toBe(`deleted sandbox cli-box (${id})\n`);
    for (let i = 0; i < 50 && !wout.includes('"deleted"'); i++) await new Promise((r) => setTimeout(r, 100));
    const wexit = new Promise<number | null>((r) => watcher.once('exit', (code) => r(code)));
    watcher.kill('SIGINT');
    expect(await wexit).toBe(0);
    // The proto3 JSON mapping: one of sandbox / deleted / platformEvent per line.
    type Ev = { sandbox?: { sandbox?: { id: string; name: string } }; platformEvent?: { sandboxId: string }; deleted?: { sandboxId: string } };
    const events = wout.trim().split('\n').map((l) => JSON.parse(l) as Ev);
    expect(events.some((e) => e.sandbox?.sandbox?.id === id && e.sandbox.sandbox.name === 'cli-box')).toBe(true);
    expect(events.some((e) => e.platformEvent?.sandboxId === id)).toBe(true);
    expect(events.at(-1)?.deleted?.sandboxId).toBe(id);

    // A second driver on the same socket is refused while the first one lives.
    const second = await run(['serve', '--state-dir', dir, '--api-endpoint', info.api]);
    expect(second.code).toBe(1);
    expect(second.err).toMatch(/in use: another process is serving on it/);

    const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(existsSync(info.socket)).toBe(false);
    expect(existsSync(join(dir, 'local.json'))).toBe(false);
  });
});
