// The resource API's storage in the local Substrate: rows of the catalog's SQLite database, so templates,
// pools and secrets are as durable as actors.
import type { KubeObject } from '../template/types.js';
import type { ResourceStorage } from '../template/apiserver.js';
import type { Catalog } from './catalog.js';

export function sqliteStorage(catalog: Catalog): ResourceStorage {
  return {
    get: (key) => (catalog.getResource(key) as KubeObject | null) ?? undefined,
    put: (key, obj) => catalog.putResource(key, obj),
    delete: (key) => catalog.deleteResource(key),
    list: (prefix) => catalog.listResources(prefix).map((r) => r.obj as KubeObject),
  };
}
