// The `substrate-driver local ...` commands as a person runs them: help, argument errors with exit 2,
// apply (including the rejection of unknown kinds), images and workers as tables and JSON, and doctor.
import { execa } from 'execa';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlClient, counterTemplate, defaultImageRef, startTestSubstrate, type TestSubstrate } from './helpers.js';
import { stringify } from 'yaml';

const BIN = join(import.meta.dirname, '../../bin/substrate-driver.js');
const cli = (args: string[], opts: { input?: string } = {}) => execa('node', [BIN, ...args], { reject: false, input: opts.input });

describe('substrate-driver local', () => {
  const emptyState = mkdtempSync(join(tmpdir(), 'sdl-cli-empty-'));
  let s: TestSubstrate;
  let image: string;

  beforeAll(async () => {
    s = await startTestSubstrate({ workers: 1 });
    image = await defaultImageRef(s.stateDir);
  });
  afterAll(async () => {
    await s?.close();
    rmSync(emptyState, { recursive: true, force: true });
  });

  it('prints help and rejects bad arguments with exit 2 and a message', async () => {
    const help = await cli(['local', '--help']);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toMatch(/serve/);
    expect(help.stdout).toMatch(/doctor/);
    const serveHelp = await cli(['local', 'serve', '--help']);
    expect(serveHelp.exitCode).toBe(0);
    expect(serveHelp.stdout).toMatch(/--router-listen/);
    const unknown = await cli(['local', 'bogus']);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command "local bogus"/);
    const badWorkers = await cli(['local', 'serve', '--state-dir', emptyState, '--workers', '0']);
    expect(badWorkers.exitCode).toBe(2);
    expect(badWorkers.stderr).toMatch(/--workers must be an integer from 1/);
    const halfTls = await cli(['local', 'serve', '--state-dir', emptyState, '--tls-cert', '/x.pem']);
    expect(halfTls.exitCode).toBe(2);
    expect(halfTls.stderr).toMatch(/--tls-cert and --tls-key go together/);
    const flag = await cli(['local', 'images', '--state-dir', emptyState, '--nope']);
    expect(flag.exitCode).toBe(2);
    const top = await cli(['nonsense']);
    expect(top.exitCode).toBe(2);
  });

  it('apply: applies templates from YAML and waits for Ready; rejects unknown kinds naming the document', async () => {
    const file = join(s.stateDir, 'tpl.yaml');
    writeFileSync(file, [stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team-a' } }), stringify(counterTemplate('clitpl', image, { namespace: 'team-a' }))].join('---\n'));
    const ok = await cli(['local', 'apply', '-f', file, '--wait', '--timeout', '90', '--state-dir', s.stateDir]);
    expect(ok.stderr + ok.stdout).toMatch(/actortemplate.ate.dev\/clitpl ready/);
    expect(ok.exitCode).toBe(0);
    const bad = await cli(['local', 'apply', '-f', '-', '--state-dir', s.stateDir], {
      input: 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n',
    });
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/document 1/);
    expect(bad.stderr).toMatch(/Deployment/);
    expect(bad.stderr).toMatch(/ActorTemplate/);
    const invalidTpl = counterTemplate('unpinned', 'local/node:latest');
    const inv = await cli(['local', 'apply', '-f', '-', '--state-dir', s.stateDir], { input: stringify(invalidTpl) });
    expect(inv.exitCode).toBe(1);
    expect(inv.stderr).toMatch(/All images must be pinned/);
    const none = await cli(['local', 'apply', '-f', file, '--state-dir', emptyState]);
    expect(none.exitCode).toBe(1);
    expect(none.stderr).toMatch(/no local Substrate runs for/);
  });

  it('images: lists the default image with its pinned reference', async () => {
    const j = await cli(['local', 'images', '--json', '--state-dir', s.stateDir]);
    expect(j.exitCode).toBe(0);
    const list = JSON.parse(j.stdout) as Array<{ name: string; ref: string }>;
    expect(list.find((i) => i.name === 'node')?.ref).toBe(image);
    expect(image).toMatch(/^local\/node@sha256:[0-9a-f]{64}$/);
    const t = await cli(['local', 'images', '--state-dir', s.stateDir]);
    expect(t.stdout).toMatch(/^NAME\s+REFERENCE/);
  });

  it('images build: makes an app image from a directory and prints its pinned reference', async () => {
    const app = join(s.stateDir, 'app-src');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(app, { recursive: true });
    writeFileSync(join(app, 'main.js'), 'console.log(1)\n');
    const b = await cli(['local', 'images', 'build', '--name', 'myapp', '--from', app, '--state-dir', s.stateDir]);
    expect(b.exitCode).toBe(0);
    expect(b.stdout.trim()).toMatch(/^local\/myapp@sha256:[0-9a-f]{64}$/);
    const list = JSON.parse((await cli(['local', 'images', '--json', '--state-dir', s.stateDir])).stdout) as Array<{ ref: string }>;
    expect(list.map((i) => i.ref)).toContain(b.stdout.trim());
    writeFileSync(join(app, 'main.js'), 'console.log(2)\n');
    const b2 = await cli(['local', 'images', 'build', '--name', 'myapp', '--from', app, '--state-dir', s.stateDir]);
    expect(b2.stdout.trim()).not.toBe(b.stdout.trim()); // the digest follows the content
    const bad = await cli(['local', 'images', 'build', '--name', 'Bad Name', '--from', app, '--state-dir', s.stateDir]);
    expect(bad.exitCode).toBe(2);
    const missing = await cli(['local', 'images', 'build', '--name', 'x', '--from', join(app, 'nope'), '--state-dir', s.stateDir]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toMatch(/is not a directory/);
  });

  it('workers: shows the running actor and its sandbox process id', async () => {
    const c = controlClient(s.h.apiEndpoint);
    try {
      await c.rpc('createAtespace', { name: 'cli' });
      await c.rpc('createActor', { actorRef: { atespace: 'cli', name: 'w1' }, actorTemplateNamespace: 'team-a', actorTemplateName: 'clitpl' });
      await c.rpc('resumeActor', { actorRef: { atespace: 'cli', name: 'w1' } });
      const j = await cli(['local', 'workers', '--json', '--state-dir', s.stateDir]);
      expect(j.exitCode).toBe(0);
      const rows = JSON.parse(j.stdout) as Array<{ actor: string; pid: number; state: string }>;
      const row = rows.find((r) => r.actor === 'cli/w1')!;
      expect(row.state).toBe('running');
      expect(row.pid).toBe(s.h.control.sandboxOf('cli', 'w1')!.pid);
      await c.rpc('suspendActor', { actorRef: { atespace: 'cli', name: 'w1' } });
      const after = JSON.parse((await cli(['local', 'workers', '--json', '--state-dir', s.stateDir])).stdout) as Array<{ actor: string; state: string }>;
      expect(after.every((r) => r.state === 'free' && r.actor === '')).toBe(true);
    } finally {
      c.close();
    }
  });

  it('doctor: every check passes on this machine', async () => {
    const r = await cli(['local', 'doctor', '--json', '--state-dir', emptyState]);
    const checks = JSON.parse(r.stdout) as Array<{ check: string; ok: boolean; remedy?: string }>;
    expect(checks.length).toBeGreaterThan(3);
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    expect(r.exitCode).toBe(0);
  });
});
