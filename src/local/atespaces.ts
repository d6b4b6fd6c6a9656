// Atespaces of the local Substrate (v0.4): global-scoped resources `Atespace{metadata}` keyed by
// metadata.name (metadata.atespace is always empty), stored in the ResourceTable `atespaces`.
// Validation and messages follow upstream's controlapi (create_atespace.go / atespace.go, shared/reference/
// substrate-v0.4.md §8): a Kubernetes field.ErrorList aggregate as INVALID_ARGUMENT, ALREADY_EXISTS
// "Atespace %s already exists", NOT_FOUND "Atespace %s not found", FAILED_PRECONDITION "Atespace %s is not empty"
// while actors or tags remain.
//
// `ate-golden` (GOLDEN_ATESPACE) holds golden actors. Clients can neither create nor delete it; the template
// controller creates it through ensureGolden().
import type Database from 'better-sqlite3';
import * as pb from '../gen/ateapi.js';
import { ApiError, alreadyExists, failedPrecondition, invalid, notFound, aborted } from '../common/errors.js';
import { GOLDEN_ATESPACE, type ControlApi } from './api.js';
import { checkDeleteOptions, checkShortName, decodePageToken, newMetadata, pageSizeOf, required } from './meta.js';
import { ResourceTable } from './table.js';

/** Throws the errors as upstream does: one message, or the Kubernetes aggregate `[a, b]`. */
export function throwAggregate(errs: string[]): void {
  const uniq = [...new Set(errs)];
  if (uniq.length === 0) return;
  throw invalid(uniq.length === 1 ? uniq[0]! : `[${uniq.join(', ')}]`);
}

/** Runs a check that throws an INVALID_ARGUMENT ApiError, collecting its message instead. */
export function collect(errs: string[], fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof ApiError) errs.push(e.message);
    else throw e;
  }
}

/** A reference to a global-scoped resource: atespace empty, name a valid resource name (ValidateGlobalObjectRef). */
function checkGlobalRef(path: string, ref: pb.ObjectRef | undefined, errs: string[]): void {
  if (!ref) {
    errs.push(required(path).message);
    return;
  }
  if (ref.atespace) errs.push(`${path}.atespace: Invalid value: ${JSON.stringify(ref.atespace)}: must be empty for a global-scoped resource`);
  collect(errs, () => checkShortName(`${path}.name`, ref.name));
}

const reserved = (path: string, name: string) =>
  `${path}: Invalid value: ${JSON.stringify(name)}: is reserved for golden actors; the local Substrate creates and keeps it itself`;

export class Atespaces {
  private readonly table: ResourceTable<pb.Atespace>;

  constructor(
    db: Database.Database,
    /** Asked whether an atespace still holds anything (the facade: src/local/api.ts). */
    private readonly api: Pick<ControlApi, 'listActors' | 'listTags'>,
  ) {
    this.table = new ResourceTable(db, 'atespaces', pb.Atespace);
  }

  /** True when the atespace exists (for modules that must refuse resources in a missing atespace). */
  has(name: string): boolean {
    return this.table.get('', name) !== undefined;
  }

  async createAtespace(r: pb.CreateAtespaceRequest): Promise<pb.Atespace> {
    const errs: string[] = [];
    const a = r.atespace;
    if (!a) throw required('atespace');
    const given = a.metadata?.atespace ?? '';
    if (given) errs.push(`atespace.metadata.atespace: Invalid value: ${JSON.stringify(given)}: must be empty for a global-scoped resource`);
    const name = a.metadata?.name ?? '';
    collect(errs, () => checkShortName('atespace.metadata.name', name));
    if (name === GOLDEN_ATESPACE) errs.push(reserved('atespace.metadata.name', name));
    throwAggregate(errs);
    return this.insert(name);
  }

  /** Creates `ate-golden` when absent; returns it either way. Internal: the template controller calls it. */
  ensureGolden(): pb.Atespace {
    const existing = this.table.get('', GOLDEN_ATESPACE);
    if (existing) return existing;
    const created: pb.Atespace = { metadata: newMetadata('', GOLDEN_ATESPACE) };
    if (!this.table.insert(created)) return this.table.get('', GOLDEN_ATESPACE)!;
    return created;
  }

  private insert(name: string): pb.Atespace {
    // Only the name is taken from the request; uid, version and times are the server's.
    const created: pb.Atespace = { metadata: newMetadata('', name) };
    if (!this.table.insert(created)) throw alreadyExists(`Atespace ${name} already exists`);
    return created;
  }

  async getAtespace(r: pb.GetAtespaceRequest): Promise<pb.Atespace> {
    const errs: string[] = [];
    checkGlobalRef('atespace', r.atespace, errs);
    throwAggregate(errs);
    const name = r.atespace!.name;
    const a = this.table.get('', name);
    if (!a) throw notFound(`Atespace ${name} not found`);
    return a;
  }

  async listAtespaces(r: pb.ListAtespacesRequest): Promise<pb.ListAtespacesResponse> {
    // Checked here with the request's own field paths; the table then pages with the same values.
    pageSizeOf('page_size', r.pageSize);
    decodePageToken('page_token', 'atespaces', r.pageToken);
    const page = this.table.page('request', undefined, r.pageSize, r.pageToken);
    return { atespaces: page.items, nextPageToken: page.nextPageToken };
  }

  async deleteAtespace(r: pb.DeleteAtespaceRequest): Promise<pb.Atespace> {
    const errs: string[] = [];
    checkGlobalRef('atespace', r.atespace, errs);
    if (r.atespace?.name === GOLDEN_ATESPACE) errs.push(reserved('atespace.name', GOLDEN_ATESPACE));
    throwAggregate(errs);
    const name = r.atespace!.name;
    const stored = this.table.get('', name);
    if (!stored) throw notFound(`Atespace ${name} not found`);
    checkDeleteOptions(`Atespace ${name}`, stored.metadata!, r.options);
    const [actors, tags] = await Promise.all([
      this.api.listActors({ atespace: name, pageSize: 1, pageToken: '' }),
      this.api.listTags({ atespace: name, pageSize: 1, pageToken: '' }),
    ]);
    if (actors.actors.length > 0 || tags.tags.length > 0) throw failedPrecondition(`Atespace ${name} is not empty`);
    if (!this.table.remove('', name, stored.metadata!.version)) {
      // Deleted or changed since it was read.
      if (!this.table.get('', name)) throw notFound(`Atespace ${name} not found`);
      throw aborted('concurrent update conflict, please retry');
    }
    return stored;
  }
}
