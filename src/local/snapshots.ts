// The local Substrate's snapshot storage: external snapshots addressed by URI as upstream addresses them in
// object storage, node-local (pause) snapshots by name on their virtual node.
//
// Upstream layout (shared/reference/substrate-v0.4.md §4.4), kept as the URI:
//   <storage_location>/atespaces/<atespace>/actors/<actor uid>/snapshots/<snapshot name>   (actor-owned)
//   <storage_location>/atespaces/<atespace>/tags/<tag uid>                                 (tag-owned)
// Every snapshot has exactly one owner. Here a URI names a directory under <state-dir>/objects/, derived from
// the URI's SHA-256, so no URI (a template's storage_location is caller input) can point outside the store.
// The directory holds the runsc checkpoint the runtime wrote (src/local/runtime/) and a `uri` file.
import { createHash, randomUUID } from 'node:crypto';
import { cp, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export class SnapshotStore {
  constructor(private readonly stateDir: string) {}

  /** Base URI without a trailing slash. */
  private static base(storageLocation: string): string {
    return storageLocation.replace(/\/+$/, '');
  }

  /** A new actor-owned snapshot URI. */
  actorSnapshotUri(storageLocation: string, atespace: string, actorUid: string, name = randomUUID()): string {
    return `${SnapshotStore.base(storageLocation)}/atespaces/${atespace}/actors/${actorUid}/snapshots/${name}`;
  }

  /** The URI of a tag's own copy. */
  tagSnapshotUri(storageLocation: string, atespace: string, tagUid: string): string {
    return `${SnapshotStore.base(storageLocation)}/atespaces/${atespace}/tags/${tagUid}`;
  }

  /** Where an external snapshot's files live on this machine. */
  dirOf(uri: string): string {
    return join(this.stateDir, 'objects', createHash('sha256').update(uri, 'utf8').digest('hex'));
  }

  /** Where a node-local (pause) snapshot lives. */
  localDirOf(node: string, snapshotName: string): string {
    return join(this.stateDir, 'nodes', node, 'snapshots', snapshotName);
  }

  exists(uri: string): boolean {
    return existsSync(join(this.dirOf(uri), 'uri'));
  }

  /** Records the URI in a directory the runtime has just checkpointed into (marks it complete). */
  async seal(uri: string): Promise<void> {
    await writeFile(join(this.dirOf(uri), 'uri'), `${uri}\n`, { mode: 0o600 });
  }

  /** Copies a snapshot to a new owner's URI (atomically: a temp directory renamed into place). */
  async copy(fromUri: string, toUri: string): Promise<void> {
    const from = this.dirOf(fromUri);
    if (!this.exists(fromUri)) throw new Error(`snapshot ${fromUri} does not exist`);
    const to = this.dirOf(toUri);
    const tmp = `${to}.tmp-${process.pid}-${Date.now()}`;
    await mkdir(join(this.stateDir, 'objects'), { recursive: true, mode: 0o700 });
    await cp(from, tmp, { recursive: true, errorOnExist: true, force: false });
    await writeFile(join(tmp, 'uri'), `${toUri}\n`, { mode: 0o600 });
    await rm(to, { recursive: true, force: true });
    await rename(tmp, to);
  }

  /** Deletes a snapshot (no error when it is already gone). */
  async remove(uri: string): Promise<void> {
    await rm(this.dirOf(uri), { recursive: true, force: true });
  }

  async removeLocal(node: string, snapshotName: string): Promise<void> {
    await rm(this.localDirOf(node, snapshotName), { recursive: true, force: true });
  }
}
