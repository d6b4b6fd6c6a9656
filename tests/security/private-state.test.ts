// Issue 7, items 7 and 9: the state directory and what it holds are private, and snapshot locations are trusted
// only inside the instance's own snapshot store. A real local Substrate in a temporary state directory.
//
// Substrate v0.4: state is one SQLite database (substrate.db), and there is no resource API token any more.
// A snapshot is addressed by URI (<storage_location>/atespaces/...), and the local store keeps each one under
// <state>/objects/<sha256 of the URI>: a template's storage_location (caller input) names a URI, never a path,
// so no location, `..` or file:// included, makes the runtime read or write outside the state directory; and
// snapshot URIs in a request's status (server-owned) are ignored.
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import type * as pb from '../../src/gen/ateapi.js';
import { readLocalJson, startLocalSubstrate } from '../../src/local/index.js';
import { SnapshotStore } from '../../src/local/snapshots.js';
import { counterTemplate, defaultImageRef, ensureAtespace, expectCode, startTestSubstrate, viaRouter, waitGolden } from '../local/helpers.js';

const mode = (p: string) => statSync(p).mode & 0o777;

describe('private state', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('a state directory that existed readable by others is made 0700; substrate.db, its WAL and SHM, the socket and local.json are 0600', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'sec-state-'));
    dirs.push(stateDir);
    chmodSync(stateDir, 0o755);
    const s = await startTestSubstrate({ stateDir, workers: 1 });
    try {
      await s.rpc('createAtespace', { atespace: { metadata: { name: 'written' } } }); // something in the WAL
      expect(mode(stateDir)).toBe(0o700);
      for (const f of ['substrate.db', 'substrate.db-wal', 'substrate.db-shm', 'local.json', 'ateapi.sock']) {
        expect(mode(join(stateDir, f)), f).toBe(0o600);
      }
    } finally {
      await s.close();
    }
  });
  it('a state directory owned by another user is refused with the remedy, and left as it was', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'sec-other-'));
    dirs.push(parent);
    const stateDir = join(parent, 'state');
    mkdirSync(stateDir, { mode: 0o755 });
    chownSync(stateDir, 65534, 65534);
    await expect(startLocalSubstrate({ stateDir, workers: 1, routerListen: '127.0.0.1:0' })).rejects.toThrow(/belongs to uid 65534.*--state-dir/);
    expect(mode(stateDir)).toBe(0o755);
    expect(statSync(stateDir).uid).toBe(65534);
  });
});

describe('local.json is believed only when it is private', () => {
  it('ignores one that others could have written, that belongs to someone else, or that points the socket elsewhere', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sec-lj-'));
    try {
      const lj = { pid: process.pid, nonce: 'n', api_endpoint: `unix:${join(dir, 'ateapi.sock')}`, api_tls: false, socket_path: join(dir, 'ateapi.sock'), router_url: 'http://127.0.0.1:1', state_dir: dir, started_at: '' };
      writeFileSync(join(dir, 'local.json'), JSON.stringify(lj), { mode: 0o600 });
      expect(readLocalJson(dir)?.nonce).toBe('n');
      chmodSync(join(dir, 'local.json'), 0o666);
      expect(readLocalJson(dir)).toBeNull();
      chmodSync(join(dir, 'local.json'), 0o600);
      chmodSync(dir, 0o777);
      expect(readLocalJson(dir)).toBeNull();
      chmodSync(dir, 0o700);
      // A socket somewhere else would send the owner's (unauthenticated) calls to whoever listens there.
      writeFileSync(join(dir, 'local.json'), JSON.stringify({ ...lj, socket_path: '/tmp/elsewhere/ateapi.sock' }), { mode: 0o600 });
      expect(readLocalJson(dir)).toBeNull();
      writeFileSync(join(dir, 'local.json'), JSON.stringify(lj), { mode: 0o600 });
      chownSync(join(dir, 'local.json'), 65534, 65534);
      expect(readLocalJson(dir)).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('snapshot locations', () => {
  it('every URI, file:// and .. included, names a directory of <state>/objects', () => {
    const store = new SnapshotStore('/state');
    for (const uri of ['file:///etc', 'file://x/../../../../etc/shadow', 'gs://b/../../..', '/etc', '../../x']) {
      expect(store.dirOf(uri)).toMatch(/^\/state\/objects\/[0-9a-f]{64}$/);
    }
  });

  it("a template's storage location never makes the runtime read or write outside the state directory", async () => {
    const elsewhere = mkdtempSync(join(tmpdir(), 'sec-elsewhere-'));
    const s = await startTestSubstrate({ workers: 2 });
    try {
      const image = await defaultImageRef(s.stateDir);
      await ensureAtespace(s.rpc, 'p');
      // A location with no bucket (file:///etc) is not a snapshot location at all.
      const etc = counterTemplate('p', 'etc', image);
      etc.snapshotConfig!.storageLocation = 'file:///etc';
      await expectCode(s.rpc('createActorTemplate', { actorTemplate: etc }), grpc.status.INVALID_ARGUMENT, /snapshot_config\.storage_location: Invalid value: "file:\/\/\/etc": invalid snapshot location .*missing bucket/);
      // One that climbs out of its bucket to a host directory is a valid URI, and only a URI.
      const climb = `file://x/../../../..${elsewhere}`;
      const t = counterTemplate('p', 'climb', image);
      t.snapshotConfig!.storageLocation = climb;
      await s.rpc('createActorTemplate', { actorTemplate: t });
      await waitGolden(s.rpc, 'p', 'climb');
      // A snapshot URI in a request's status is the server's to set: ignored.
      const a = await s.rpc<pb.Actor>('createActor', {
        actor: { metadata: { atespace: 'p', name: 'p1' }, actorTemplate: { atespace: 'p', name: 'climb' }, status: { externalSnapshot: { snapshotUri: `file://${elsewhere}/planted` } } },
      });
      expect(a.status?.externalSnapshot?.snapshotUri).toMatch(/\/atespaces\/ate-golden\/tags\//);
      const n1 = JSON.parse((await viaRouter(s.h.routerUrl, 'p', 'p1', '/count')).body).n as number;
      const sus = await s.rpc<pb.SuspendActorResponse>('suspendActor', { actor: { atespace: 'p', name: 'p1' } });
      const uri = sus.actor!.status!.externalSnapshot!.snapshotUri;
      expect(uri.startsWith(`${climb}/atespaces/p/actors/`)).toBe(true);
      const tag = await s.rpc<pb.Tag>('createTag', { tag: { metadata: { atespace: 'p', name: 'kept' }, scope: 1, sourceActor: { atespace: 'p', name: 'p1' }, status: { snapshot: { snapshotUri: '/etc/shadow' } } } });
      expect(tag.status?.snapshot?.snapshotUri.startsWith(`${climb}/atespaces/p/tags/`)).toBe(true);
      // Nothing was written where the location points; the snapshots are in the store under hashed names.
      expect(readdirSync(elsewhere)).toEqual([]);
      const store = new SnapshotStore(s.stateDir);
      for (const u of [uri, tag.status!.snapshot!.snapshotUri]) expect(store.exists(u), u).toBe(true);
      expect(readdirSync(join(s.stateDir, 'objects')).every((d) => /^[0-9a-f]{64}$/.test(d))).toBe(true);
      // A snapshot is the workload's memory (its env values included): every file owner-only, every directory 0700.
      for (const d of readdirSync(join(s.stateDir, 'objects'))) {
        expect(mode(join(s.stateDir, 'objects', d)), d).toBe(0o700);
        for (const f of readdirSync(join(s.stateDir, 'objects', d))) expect(mode(join(s.stateDir, 'objects', d, f)), `${d}/${f}`).toBe(0o600);
      }
      // And the actor comes back from that snapshot, memory included.
      expect(JSON.parse((await viaRouter(s.h.routerUrl, 'p', 'p1', '/count')).body).n).toBe(n1 + 1);
    } finally {
      await s.close();
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });
});
