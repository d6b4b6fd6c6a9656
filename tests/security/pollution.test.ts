// Issue 7, item 1: untrusted input never reaches Object.prototype (nor any decoded object's prototype), and no
// child process inherits what a polluted prototype holds.
//
// The Kubernetes-shaped resource API (and its handler) is gone with Substrate v0.4; what takes untrusted
// structured input now is:
//  * the local Substrate's gRPC edge (src/local/server.ts): protobuf maps (`map<string, string>` labels and
//    selectors, `map<string, Message>` SandboxConfig assets) arrive as key/value entries that a decoder would
//    assign with `obj[key] = value`. The requests below are hand-encoded bytes sent to a real local Substrate
//    over its Unix socket (ateapi.Control and the LocalAdmin service), since no well-behaved client would send
//    them;
//  * `local apply` manifests (src/cli/manifests.ts, YAML/JSON);
//  * env names of a template's containers, which become the sandbox environment (src/local/workload.ts);
//  * child processes, whose environment is built from an explicit list.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import * as ateapi from '../../src/gen/ateapi.js';
import * as adm from '../../src/gen/local_admin.js';
import { ManifestError, parseManifests } from '../../src/cli/manifests.js';
import { childEnv, spawnOptions } from '../../src/common/child-env.mjs';
import { run } from '../../src/local/runtime/exec.js';
import { workloadOf, DEFAULT_ACTOR_LIMITS } from '../../src/local/workload.js';
import { startTestSubstrate, type TestSubstrate } from '../local/helpers.js';

const MARKER = 'SBX_POLLUTION_MARKER';
const proto = Object.prototype as Record<string, unknown>;

afterEach(() => {
  delete proto[MARKER];
  delete proto.env;
  delete proto.shell;
});

/** The environment a child started by the runtime's own helper sees. */
async function childEnvironment(): Promise<string> {
  return (await run('/bin/sh', ['-c', 'env'])).stdout;
}

/** An object whose own (enumerable) key is `__proto__`, as JSON.parse makes it: what an attacker's map holds. */
function ownProto<T>(value: T, more: Record<string, T> = {}): Record<string, T> {
  const o = JSON.parse(`{"__proto__": ${JSON.stringify(value)}}`) as Record<string, T>;
  return Object.assign(o, more);
}

type Raw = { code: grpc.status; details: string; value?: Buffer };

/** One unary call with the request given as bytes (the server's own decoding is what is tested). */
function rawCall(target: string, path: string, bytes: Uint8Array): Promise<Raw> {
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  return new Promise<Raw>((resolve) => {
    client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.from(bytes),
      new grpc.Metadata(),
      { deadline: Date.now() + 30_000 },
      (e, v) => {
        client.close();
        resolve(e ? { code: e.code, details: e.details } : { code: grpc.status.OK, details: '', value: v });
      },
    );
  });
}

describe('the gRPC edge never lets a map key reach a prototype', () => {
  let s: TestSubstrate;
  let target: string;
  beforeAll(async () => {
    s = await startTestSubstrate({ workers: 1 });
    target = `unix:${s.h.socketPath}`;
    await s.rpc('createAtespace', { atespace: { metadata: { name: 'p' } } });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('CreateActor with a __proto__ key in worker_selector.match_labels, or in a status map, is refused before decoding', async () => {
    const selector = ateapi.CreateActorRequest.encode({
      actor: {
        metadata: { atespace: 'p', name: 'a1', uid: '', version: 0 },
        actorTemplate: { atespace: 'p', name: 't' },
        workerSelector: { matchLabels: ownProto('x', { fine: 'y' }) },
      },
    }).finish();
    const r = await rawCall(target, '/ateapi.Control/CreateActor', selector);
    expect({ code: r.code, details: r.details }).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'actor.worker_selector.match_labels: Invalid value: "__proto__": not a permitted map key',
    });
    const volumes = ateapi.CreateActorRequest.encode({
      actor: {
        metadata: { atespace: 'p', name: 'a1', uid: '', version: 0 },
        actorTemplate: { atespace: 'p', name: 't' },
        status: { ...ateapi.ActorStatus.fromPartial({}), actorVolumes: [{ ...ateapi.ExternalVolume.fromPartial({ volumeName: 'v' }), volumeContext: ownProto(MARKER) }] },
      },
    }).finish();
    const v = await rawCall(target, '/ateapi.Control/CreateActor', volumes);
    expect(v.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(v.details).toBe('actor.status.actor_volumes[0].volume_context: Invalid value: "__proto__": not a permitted map key');
    expect(proto[MARKER]).toBeUndefined();
    // Nothing was created by the refused calls.
    expect((await s.rpc<ateapi.ListActorsResponse>('listActors', { atespace: 'p' })).actors).toEqual([]);
  });

  it('CreateActorTemplate with a __proto__ selector key is refused, and no template exists afterwards', async () => {
    const t = ateapi.ActorTemplate.fromPartial({ metadata: { atespace: 'p', name: 't' } });
    t.workerSelector = { matchLabels: ownProto(MARKER) };
    const r = await rawCall(target, '/ateapi.Control/CreateActorTemplate', ateapi.CreateActorTemplateRequest.encode({ actorTemplate: t }).finish());
    expect({ code: r.code, details: r.details }).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'actor_template.worker_selector.match_labels: Invalid value: "__proto__": not a permitted map key',
    });
    expect((await s.rpc<ateapi.ListActorTemplatesResponse>('listActorTemplates', { atespace: 'p' })).actorTemplates).toEqual([]);
    expect(proto[MARKER]).toBeUndefined();
  });

  it('LocalAdmin: a WorkerPool label and a SandboxConfig asset keyed __proto__ are refused; nothing is stored', async () => {
    const pool = adm.ApplyWorkerPoolRequest.encode({
      workerPool: { namespace: 'default', name: 'evil', labels: ownProto(MARKER), replicas: 1, sandboxClass: 'gvisor', workerImage: 'w' },
    }).finish();
    const r = await rawCall(target, '/substrate.local.v1.LocalAdmin/ApplyWorkerPool', pool);
    expect({ code: r.code, details: r.details }).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'worker_pool.labels: Invalid value: "__proto__": not a permitted map key',
    });
    // A map<string, Message>: a decoder assigning the value would make it the prototype of `assets`.
    const assets = ownProto<adm.ArchAssets>({ files: { [MARKER]: { url: 'https://example.test/x', sha256: 'a'.repeat(64) } } });
    const sc = adm.ApplySandboxConfigRequest.encode({ sandboxConfig: { name: 'evil', sandboxClass: 'gvisor', pauseImage: 'p', assets, builtIn: false } }).finish();
    const c = await rawCall(target, '/substrate.local.v1.LocalAdmin/ApplySandboxConfig', sc);
    expect({ code: c.code, details: c.details }).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'sandbox_config.assets: Invalid value: "__proto__": not a permitted map key',
    });
    expect(proto[MARKER]).toBeUndefined();
    const pools = adm.ListWorkerPoolsResponse.decode((await rawCall(target, '/substrate.local.v1.LocalAdmin/ListWorkerPools', new Uint8Array())).value!);
    expect(pools.workerPools.map((p) => p.name)).not.toContain('evil');
    const configs = adm.ListSandboxConfigsResponse.decode((await rawCall(target, '/substrate.local.v1.LocalAdmin/ListSandboxConfigs', new Uint8Array())).value!);
    expect(configs.sandboxConfigs.map((x) => x.name)).not.toContain('evil');
  });

  it('constructor and prototype keys stay plain data: applied, read back as own keys, never followed', async () => {
    const pool = adm.ApplyWorkerPoolRequest.encode({
      workerPool: { namespace: 'default', name: 'plain', labels: { constructor: 'a', prototype: 'b' }, replicas: 1, sandboxClass: 'gvisor', workerImage: 'w' },
    }).finish();
    const r = await rawCall(target, '/substrate.local.v1.LocalAdmin/ApplyWorkerPool', pool);
    expect(r.code, r.details).toBe(grpc.status.OK);
    const back = adm.WorkerPool.decode(r.value!);
    expect(Object.keys(back.labels).sort()).toEqual(['constructor', 'prototype']);
    const w = (await s.rpc<ateapi.ListWorkersResponse>('listWorkers', {})).workers.find((x) => x.workerPool === 'plain');
    expect(w?.labels).toEqual({ constructor: 'a', prototype: 'b' });
    expect(typeof Object.prototype.constructor).toBe('function');
    expect(proto.prototype).toBeUndefined();
  });
});

describe('local apply manifests never write into a prototype', () => {
  it('a __proto__ mapping at the top, under labels, under a selector or under assets is an error naming the field', () => {
    const cases: Array<[string, RegExp]> = [
      [`__proto__:\n  ${MARKER}: injected\nmetadata:\n  atespace: a\n  name: t\n`, /__proto__: unknown field/],
      [
        `apiVersion: ate.dev/v1alpha1\nkind: WorkerPool\nmetadata:\n  name: p\n  namespace: default\n  labels:\n    __proto__:\n      ${MARKER}: x\nspec:\n  replicas: 1\n`,
        /metadata\.labels\["__proto__"\]/,
      ],
      [`{"metadata":{"atespace":"a","name":"t"},"workerSelector":{"matchLabels":{"__proto__":{"${MARKER}":"y"}}}}`, /workerSelector\.matchLabels\["__proto__"\]/],
      [
        `apiVersion: ate.dev/v1alpha1\nkind: SandboxConfig\nmetadata:\n  name: sc\nspec:\n  sandboxClass: gvisor\n  pauseImage: p\n  assets:\n    __proto__:\n      ${MARKER}: {url: u, sha256: s}\n`,
        /assets/,
      ],
    ];
    for (const [text, why] of cases) {
      expect(() => parseManifests(text), text).toThrow(ManifestError);
      expect(() => parseManifests(text)).toThrow(why);
      expect(proto[MARKER]).toBeUndefined();
    }
  });
});

describe("a template's env names are data", () => {
  it('__proto__ and constructor as env names become own entries of the workload env, nothing else', async () => {
    const tpl = ateapi.ActorTemplate.fromPartial({
      metadata: { atespace: 'a', name: 't' },
      containers: [{ name: 'c', image: 'local/x@sha256:' + '0'.repeat(64), command: ['/bin/true'], env: [{ name: '__proto__', value: MARKER }, { name: 'constructor', value: 'c' }] }],
    });
    const spec = await workloadOf(tpl, { images: { resolve: async () => ({ rootfs: '/nonexistent', digest: 'sha256:0' }) }, limits: DEFAULT_ACTOR_LIMITS, egress: [] });
    expect(Object.getPrototypeOf(spec.env)).toBe(Object.prototype);
    expect(Object.keys(spec.env).sort()).toEqual(['__proto__', 'constructor']);
    expect(Object.getOwnPropertyDescriptor(spec.env, '__proto__')?.value).toBe(MARKER);
    expect(proto[MARKER]).toBeUndefined();
    expect(typeof Object.prototype.constructor).toBe('function');
  });
});

describe('children get an environment built from an explicit list', () => {
  it('a polluted Object.prototype does not reach a child started by the runtime helper', async () => {
    proto[MARKER] = 'from-the-prototype';
    const env = await childEnvironment();
    expect(env).not.toContain(MARKER);
    expect(env).toMatch(/^PATH=/m);
  });

  it('nor one started with spawnOptions, even with env and shell on the prototype', async () => {
    proto.env = { [MARKER]: 'x', PATH: '/usr/bin:/bin' };
    proto.shell = '/bin/false';
    const out = await new Promise<string>((resolve, reject) => {
      const c = spawn('/usr/bin/env', [], spawnOptions({ stdio: ['ignore', 'pipe', 'inherit'] as ['ignore', 'pipe', 'inherit'] }));
      let s = '';
      c.stdout!.on('data', (b: Buffer) => (s += b.toString()));
      c.once('error', reject);
      c.once('exit', () => resolve(s));
    });
    expect(out).not.toContain(MARKER);
    expect(out).toMatch(/^PATH=/m);
  });

  it('childEnv passes only the listed names and what it is told to set', () => {
    process.env.SBX_NOT_LISTED = 'secret-ish';
    try {
      const env = childEnv({ set: { ONLY: 'this' } });
      expect(Object.getPrototypeOf(env)).toBeNull();
      expect(env.SBX_NOT_LISTED).toBeUndefined();
      expect(env.ONLY).toBe('this');
      expect(childEnv({ pass: ['SBX_NOT_LISTED'] }).SBX_NOT_LISTED).toBe('secret-ish');
    } finally {
      delete process.env.SBX_NOT_LISTED;
    }
  });
});
