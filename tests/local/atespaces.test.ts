// Atespaces of the local Substrate (src/local/atespaces.ts) on a real SQLite database: validation messages,
// ALREADY_EXISTS / NOT_FOUND, paging, delete preconditions and the "not empty" rule, the reserved ate-golden.
import Database from 'better-sqlite3';
import { beforeEach, describe, expect, it } from 'vitest';
import type * as pb from '../../src/gen/ateapi.js';
import { Code } from '../../src/common/errors.js';
import { GOLDEN_ATESPACE } from '../../src/local/api.js';
import { Atespaces } from '../../src/local/atespaces.js';
import { expectApiError } from './api-error.js';


const create = (name: string, atespace = ''): pb.CreateAtespaceRequest => ({ atespace: { metadata: { atespace, name, uid: '', version: 0 } } });

describe('Atespaces', () => {
  let a: Atespaces;
  let actors: Map<string, number>;
  let tags: Map<string, number>;
  let asked: Array<{ what: string; atespace: string; pageSize: number }>;

  beforeEach(() => {
    actors = new Map();
    tags = new Map();
    asked = [];
    const api = {
      listActors: async (r: pb.ListActorsRequest): Promise<pb.ListActorsResponse> => {
        asked.push({ what: 'actors', atespace: r.atespace, pageSize: r.pageSize });
        return { actors: Array.from({ length: Math.min(actors.get(r.atespace) ?? 0, r.pageSize) }, () => ({}) as pb.Actor), nextPageToken: '' };
      },
      listTags: async (r: pb.ListTagsRequest): Promise<pb.ListTagsResponse> => {
        asked.push({ what: 'tags', atespace: r.atespace, pageSize: r.pageSize });
        return { tags: Array.from({ length: Math.min(tags.get(r.atespace) ?? 0, r.pageSize) }, () => ({}) as pb.Tag), nextPageToken: '' };
      },
    };
    a = new Atespaces(new Database(':memory:'), api);
  });

  it('creates an atespace with server metadata; only the name is taken from the request', async () => {
    const req = create('demo');
    req.atespace!.metadata!.uid = 'client-chosen';
    req.atespace!.metadata!.version = 42;
    const got = await a.createAtespace(req);
    expect(got.metadata).toMatchObject({ atespace: '', name: 'demo', version: 1 });
    expect(got.metadata!.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(got.metadata!.createTime).toBeInstanceOf(Date);
    expect(await a.getAtespace({ atespace: { atespace: '', name: 'demo' } })).toEqual(got);
    expect(a.has('demo')).toBe(true);
    await expectApiError(a.createAtespace(create('demo')), Code.ALREADY_EXISTS, 'Atespace demo already exists');
  });

  it('validates the request with field paths, aggregating several errors', async () => {
    await expectApiError(a.createAtespace({}), Code.INVALID_ARGUMENT, 'atespace: Required value');
    await expectApiError(a.createAtespace(create('')), Code.INVALID_ARGUMENT, 'atespace.metadata.name: Required value');
    await expectApiError(a.createAtespace(create('Bad_Name')), Code.INVALID_ARGUMENT, /^atespace\.metadata\.name: Invalid value: "Bad_Name": /);
    await expectApiError(a.createAtespace(create('x'.repeat(64))), Code.INVALID_ARGUMENT, /^atespace\.metadata\.name: Invalid value: /);
    await expectApiError(
      a.createAtespace(create('ok', 'ns')),
      Code.INVALID_ARGUMENT,
      'atespace.metadata.atespace: Invalid value: "ns": must be empty for a global-scoped resource',
    );
    const e = await expectApiError(a.createAtespace(create('', 'ns')), Code.INVALID_ARGUMENT);
    expect(e.message).toBe('[atespace.metadata.atespace: Invalid value: "ns": must be empty for a global-scoped resource, atespace.metadata.name: Required value]');
    expect(a.has('ok')).toBe(false);
  });

  it('reserves ate-golden: clients cannot create or delete it, ensureGolden() creates it once', async () => {
    await expectApiError(a.createAtespace(create(GOLDEN_ATESPACE)), Code.INVALID_ARGUMENT, /^atespace\.metadata\.name: Invalid value: "ate-golden": is reserved for golden actors/);
    expect(a.has(GOLDEN_ATESPACE)).toBe(false);
    const g1 = a.ensureGolden();
    const g2 = a.ensureGolden();
    expect(g1.metadata!.name).toBe(GOLDEN_ATESPACE);
    expect(g2.metadata!.uid).toBe(g1.metadata!.uid);
    expect((await a.getAtespace({ atespace: { atespace: '', name: GOLDEN_ATESPACE } })).metadata!.uid).toBe(g1.metadata!.uid);
    await expectApiError(a.deleteAtespace({ atespace: { atespace: '', name: GOLDEN_ATESPACE } }), Code.INVALID_ARGUMENT, /^atespace\.name: Invalid value: "ate-golden": is reserved/);
    expect(a.has(GOLDEN_ATESPACE)).toBe(true);
  });

  it('gets by a global reference: NOT_FOUND when absent, INVALID_ARGUMENT for a bad reference', async () => {
    await expectApiError(a.getAtespace({ atespace: { atespace: '', name: 'nope' } }), Code.NOT_FOUND, 'Atespace nope not found');
    await expectApiError(a.getAtespace({}), Code.INVALID_ARGUMENT, 'atespace: Required value');
    await expectApiError(a.getAtespace({ atespace: { atespace: 'x', name: 'demo' } }), Code.INVALID_ARGUMENT, 'atespace.atespace: Invalid value: "x": must be empty for a global-scoped resource');
    await expectApiError(a.getAtespace({ atespace: { atespace: '', name: '' } }), Code.INVALID_ARGUMENT, 'atespace.name: Required value');
  });

  it('lists in pages with opaque tokens', async () => {
    for (const n of ['e', 'a', 'd', 'b', 'c']) await a.createAtespace(create(n));
    const names: string[][] = [];
    let token = '';
    do {
      const page = await a.listAtespaces({ pageSize: 2, pageToken: token });
      names.push(page.atespaces.map((x) => x.metadata!.name));
      token = page.nextPageToken;
    } while (token);
    expect(names).toEqual([['a', 'b'], ['c', 'd'], ['e']]);
    expect((await a.listAtespaces({ pageSize: 0, pageToken: '' })).atespaces).toHaveLength(5);
    await expectApiError(a.listAtespaces({ pageSize: -1, pageToken: '' }), Code.INVALID_ARGUMENT, 'page_size: Invalid value: -1: must be greater than or equal to 0');
    await expectApiError(a.listAtespaces({ pageSize: 1, pageToken: 'garbage' }), Code.INVALID_ARGUMENT, /^page_token: Invalid value: "garbage": /);
  });

  it('refuses to delete while actors or tags remain, asking with page_size 1', async () => {
    await a.createAtespace(create('busy'));
    actors.set('busy', 3);
    await expectApiError(a.deleteAtespace({ atespace: { atespace: '', name: 'busy' } }), Code.FAILED_PRECONDITION, 'Atespace busy is not empty');
    expect(asked).toContainEqual({ what: 'actors', atespace: 'busy', pageSize: 1 });
    actors.delete('busy');
    tags.set('busy', 1);
    await expectApiError(a.deleteAtespace({ atespace: { atespace: '', name: 'busy' } }), Code.FAILED_PRECONDITION, 'Atespace busy is not empty');
    expect(asked).toContainEqual({ what: 'tags', atespace: 'busy', pageSize: 1 });
    tags.delete('busy');
    const deleted = await a.deleteAtespace({ atespace: { atespace: '', name: 'busy' } });
    expect(deleted.metadata!.name).toBe('busy');
    expect(a.has('busy')).toBe(false);
  });

  it('honours DeleteOptions and returns the deleted atespace', async () => {
    const created = await a.createAtespace(create('demo'));
    await expectApiError(
      a.deleteAtespace({ atespace: { atespace: '', name: 'demo' }, options: { uid: '00000000-0000-0000-0000-000000000000', version: 0 } }),
      Code.ABORTED,
      'Atespace demo does not have uid 00000000-0000-0000-0000-000000000000',
    );
    await expectApiError(a.deleteAtespace({ atespace: { atespace: '', name: 'demo' }, options: { uid: '', version: 7 } }), Code.ABORTED, 'concurrent update conflict, please retry');
    const deleted = await a.deleteAtespace({ atespace: { atespace: '', name: 'demo' }, options: { uid: created.metadata!.uid, version: 1 } });
    expect(deleted).toEqual(created);
    await expectApiError(a.deleteAtespace({ atespace: { atespace: '', name: 'demo' } }), Code.NOT_FOUND, 'Atespace demo not found');
    await expectApiError(a.getAtespace({ atespace: { atespace: '', name: 'demo' } }), Code.NOT_FOUND, 'Atespace demo not found');
  });
});
