// The CLI's API verbs end to end over real gRPC, against a small in-test ateapi.Control + LocalAdmin server on
// a Unix socket advertised through local.json (as a running local Substrate does), and on loopback TCP with a
// bearer token. The server is a fake with just enough state to answer as Substrate v0.4 does; what is under
// test is the CLI: request shapes, apply order and idempotence, --wait, output formats, exit codes.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { parse as parseYaml } from 'yaml';
import * as pb from '../../src/gen/ateapi.js';
import * as adminPb from '../../src/gen/local_admin.js';
import { main } from '../../src/cli/main.js';

const PIN = `@sha256:${'e'.repeat(64)}`;

// ---------------------------------------------------------------------------------------------- the fake

interface Call {
  method: string;
  auth: string | undefined;
  req: unknown;
}

function grpcError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() }) as grpc.ServiceError;
}

class FakeSubstrate {
  calls: Call[] = [];
  atespaces = new Map<string, pb.Atespace>();
  templates = new Map<string, pb.ActorTemplate>();
  templateGets = new Map<string, number>();
  actors = new Map<string, pb.Actor>();
  policies = new Map<string, pb.EgressPolicy>();
  tags = new Map<string, pb.Tag>();
  pools: adminPb.WorkerPool[] = [];
  configs: adminPb.SandboxConfig[] = [{ name: 'gvisor-default', sandboxClass: 'gvisor', pauseImage: `pause${PIN}`, assets: {}, builtIn: true }];
  uid = 0;

  meta(atespace: string, name: string): pb.ResourceMetadata {
    return { atespace, name, uid: `uid-${++this.uid}`, version: 1, createTime: new Date(Date.now() - 90_000), updateTime: new Date() };
  }

  control(): Record<string, (req: any) => unknown> {
    const key = (r: { atespace: string; name: string } | undefined) => `${r?.atespace}/${r?.name}`;
    const actor = (r: pb.ObjectRef | undefined) => {
      const a = this.actors.get(key(r));
      if (!a) throw grpcError(grpc.status.NOT_FOUND, `actor "${key(r)}" not found`);
      return a;
    };
    const page = <T>(list: T[], token: string) => {
      const i = token ? Number(token) : 0;
      return { items: list.slice(i, i + 1), next: i + 1 < list.length ? String(i + 1) : '' };
    };
    return {
      createAtespace: (r: pb.CreateAtespaceRequest) => {
        const name = r.atespace!.metadata!.name;
        if (this.atespaces.has(name)) throw grpcError(grpc.status.ALREADY_EXISTS, `atespace "${name}" already exists`);
        const a = { metadata: this.meta('', name) };
        this.atespaces.set(name, a);
        return a;
      },
      getAtespace: (r: pb.GetAtespaceRequest) => {
        const a = this.atespaces.get(r.atespace!.name);
        if (!a) throw grpcError(grpc.status.NOT_FOUND, `atespace "${r.atespace!.name}" not found`);
        return a;
      },
      listAtespaces: (r: pb.ListAtespacesRequest) => {
        const p = page([...this.atespaces.values()], r.pageToken);
        return { atespaces: p.items, nextPageToken: p.next };
      },
      createActorTemplate: (r: pb.CreateActorTemplateRequest) => {
        const t = r.actorTemplate!;
        const k = key(t.metadata);
        if (!this.atespaces.has(t.metadata!.atespace)) throw grpcError(grpc.status.FAILED_PRECONDITION, `atespace "${t.metadata!.atespace}" not found`);
        if (this.templates.has(k)) throw grpcError(grpc.status.ALREADY_EXISTS, `actor template "${k}" already exists`);
        // The server fills in defaults (the CLI must still see an identical template as "unchanged").
        const stored = pb.ActorTemplate.fromPartial({ ...t, metadata: this.meta(t.metadata!.atespace, t.metadata!.name), status: { goldenSnapshotStatus: { errorMessage: '' } } });
        for (const c of stored.containers) if (c.wakeupProbe) c.wakeupProbe.timeoutSeconds ||= 30;
        this.templates.set(k, stored);
        return stored;
      },
      getActorTemplate: (r: pb.GetActorTemplateRequest) => {
        const k = key(r.actorTemplate);
        const t = this.templates.get(k);
        if (!t) throw grpcError(grpc.status.NOT_FOUND, `actor template "${k}" not found`);
        const n = (this.templateGets.get(k) ?? 0) + 1;
        this.templateGets.set(k, n);
        if (n >= 2) {
          t.status = {
            goldenSnapshotStatus:
              r.actorTemplate!.name === 'broken'
                ? { errorMessage: 'GoldenActorCrashed: the golden actor crashed: exit status 3' }
                : { goldenTag: { atespace: 'ate-golden', name: `golden-${t.metadata!.uid}` }, errorMessage: '' },
          };
        }
        return t;
      },
      listActorTemplates: (r: pb.ListActorTemplatesRequest) => {
        const p = page([...this.templates.values()].filter((t) => !r.atespace || t.metadata!.atespace === r.atespace), r.pageToken);
        return { actorTemplates: p.items, nextPageToken: p.next };
      },
      deleteActorTemplate: (r: pb.DeleteActorTemplateRequest) => {
        const t = this.templates.get(key(r.actorTemplate));
        if (!t) throw grpcError(grpc.status.NOT_FOUND, 'not found');
        this.templates.delete(key(r.actorTemplate));
        return t;
      },
      createActor: (r: pb.CreateActorRequest) => {
        const a = r.actor!;
        if (!this.templates.has(key(a.actorTemplate))) throw grpcError(grpc.status.FAILED_PRECONDITION, `actor template "${key(a.actorTemplate)}" not found`);
        const stored = pb.Actor.fromPartial({ ...a, metadata: this.meta(a.metadata!.atespace, a.metadata!.name), status: { state: pb.ActorState.ACTOR_STATE_SUSPENDED } });
        this.actors.set(key(a.metadata), stored);
        return stored;
      },
      getActor: (r: pb.GetActorRequest) => actor(r.actor),
      listActors: (r: pb.ListActorsRequest) => {
        const p = page([...this.actors.values()].filter((a) => !r.atespace || a.metadata!.atespace === r.atespace), r.pageToken);
        return { actors: p.items, nextPageToken: p.next };
      },
      resumeActor: (r: pb.ResumeActorRequest) => {
        const a = actor(r.actor);
        const resumed = a.status!.state !== pb.ActorState.ACTOR_STATE_RUNNING;
        const sel = a.workerSelector?.matchLabels.pool;
        a.status = { ...a.status!, state: pb.ActorState.ACTOR_STATE_RUNNING, workerAssignment: pb.WorkerAssignment.fromPartial({ worker: { atespace: '', name: sel ? `${sel}-0` : 'default-0' }, nodeName: sel ? 'node-b' : 'node-a' }) };
        a.metadata!.version++;
        return { actor: a, resumed };
      },
      suspendActor: (r: pb.SuspendActorRequest) => {
        const a = actor(r.actor);
        a.status = { ...a.status!, state: pb.ActorState.ACTOR_STATE_SUSPENDED, workerAssignment: undefined };
        a.metadata!.version++;
        return { actor: a };
      },
      updateActor: (r: pb.UpdateActorRequest) => {
        const a = actor(r.actor!.metadata);
        if (r.actor!.metadata!.version !== a.metadata!.version || r.actor!.metadata!.uid !== a.metadata!.uid) throw grpcError(grpc.status.ABORTED, 'version mismatch');
        a.workerSelector = r.actor!.workerSelector;
        a.metadata!.version++;
        return a;
      },
      deleteActor: (r: pb.DeleteActorRequest) => {
        const a = actor(r.actor);
        if (a.status!.state !== pb.ActorState.ACTOR_STATE_SUSPENDED && !r.anyState) {
          throw grpcError(grpc.status.FAILED_PRECONDITION, `actor must be suspended or crashed to be deleted (got: ${pb.actorStateToJSON(a.status!.state)})`);
        }
        this.actors.delete(key(r.actor));
        return a;
      },
      getActorEgressPolicy: (r: pb.GetActorEgressPolicyRequest) => {
        const p = this.policies.get(key(r.actor));
        if (!p) throw grpcError(grpc.status.NOT_FOUND, 'egress policy not found');
        return p;
      },
      createActorEgressPolicy: (r: pb.CreateActorEgressPolicyRequest) => {
        actor(r.actor);
        const p = { ...r.egressPolicy!, metadata: this.meta(r.actor!.atespace, 'default') };
        this.policies.set(key(r.actor), p);
        return p;
      },
      createTag: (r: pb.CreateTagRequest) => {
        const src = actor(r.tag!.sourceActor);
        if (src.status!.state !== pb.ActorState.ACTOR_STATE_SUSPENDED) throw grpcError(grpc.status.FAILED_PRECONDITION, 'actor must be SUSPENDED to be tagged');
        const t = pb.Tag.fromPartial({ ...r.tag!, metadata: this.meta(r.tag!.metadata!.atespace, r.tag!.metadata!.name) });
        this.tags.set(key(t.metadata), t);
        return t;
      },
      getTag: (r: pb.GetTagRequest) => {
        const t = this.tags.get(key(r.tag));
        if (!t) throw grpcError(grpc.status.NOT_FOUND, `tag "${key(r.tag)}" not found`);
        return t;
      },
      listTags: (r: pb.ListTagsRequest) => ({ tags: [...this.tags.values()].filter((t) => !r.atespace || t.metadata!.atespace === r.atespace), nextPageToken: '' }),
      updateTag: (r: pb.UpdateTagRequest) => {
        const t = this.tags.get(key(r.tag!.metadata))!;
        if (r.tag!.metadata!.version !== t.metadata!.version) throw grpcError(grpc.status.ABORTED, 'stale');
        t.scope = r.tag!.scope;
        t.metadata!.version++;
        return t;
      },
      listWorkers: () => ({
        workers: ['default-0', 'gpu-0'].map((name, i) =>
          pb.Worker.fromPartial({
            metadata: this.meta('', name),
            workerNamespace: 'ate-system',
            workerPool: name.split('-')[0],
            nodeName: `node-${'ab'[i]}`,
            status: { state: pb.WorkerState.WORKER_STATE_ACTIVE, capacity: { actors: 1 }, allocated: { actors: i } },
          }),
        ),
        nextPageToken: '',
      }),
      listWorkerActorAssignments: (r: pb.ListWorkerActorAssignmentsRequest) => ({
        actorAssignments: r.worker!.name === 'gpu-0' ? [pb.ActorAssignment.fromPartial({ actor: { atespace: 'smoke', name: 'a1' }, actorUid: 'uid-x', workerEpoch: 1 })] : [],
        nextPageToken: '',
      }),
    };
  }

  admin(): Record<string, (req: any) => unknown> {
    return {
      applyWorkerPool: (r: adminPb.ApplyWorkerPoolRequest) => {
        const p = r.workerPool!;
        this.pools = [...this.pools.filter((x) => !(x.namespace === p.namespace && x.name === p.name)), p];
        return p;
      },
      listWorkerPools: () => ({ workerPools: this.pools }),
      applySandboxConfig: (r: adminPb.ApplySandboxConfigRequest) => {
        const c = r.sandboxConfig!;
        if (c.name === 'gvisor-default') throw grpcError(grpc.status.FAILED_PRECONDITION, 'SandboxConfig "gvisor-default" is built in and cannot be replaced');
        this.configs = [...this.configs.filter((x) => x.name !== c.name), c];
        return c;
      },
      listSandboxConfigs: () => ({ sandboxConfigs: this.configs }),
    };
  }
}

async function serve(fake: FakeSubstrate, address: string): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  const wrap = (impls: Record<string, (req: any) => unknown>) =>
    Object.fromEntries(
      Object.entries(impls).map(([m, fn]) => [
        m,
        (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
          fake.calls.push({ method: m, auth: call.metadata.get('authorization')[0]?.toString(), req: call.request });
          try {
            cb(null, fn(call.request));
          } catch (e) {
            cb(e as grpc.ServiceError, null);
          }
        },
      ]),
    );
  server.addService(pb.ControlService, wrap(fake.control()) as never);
  server.addService(adminPb.LocalAdminService, wrap(fake.admin()) as never);
  const port = await new Promise<number>((res, rej) => server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  return { server, port };
}

// ---------------------------------------------------------------------------------------------- the CLI

async function cli(args: string[], stdin?: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => ((stdout += String(c)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => ((stderr += String(c)), true));
  try {
    let argv = args;
    if (stdin !== undefined) {
      // `-f -` reads standard input; in-process the test hands the text over as a file.
      const f = join(dir, `stdin-${Math.random().toString(36).slice(2)}.yaml`);
      writeFileSync(f, stdin);
      argv = args.map((a) => (a === '-' ? f : a));
    }
    const exitCode = await main([...argv, '--state-dir', stateDir]);
    return { exitCode, stdout, stderr };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'sdl-cli-api-'));
const stateDir = join(dir, 'state');
let fake: FakeSubstrate;
let servers: grpc.Server[] = [];
let tcpPort = 0;

beforeAll(async () => {
  const { mkdirSync } = await import('node:fs');
  mkdirSync(stateDir, { mode: 0o700 });
});

beforeEach(async () => {
  for (const s of servers) s.forceShutdown();
  fake = new FakeSubstrate();
  const sock = join(stateDir, 'ateapi.sock');
  rmSync(sock, { force: true });
  const unix = await serve(fake, `unix:${sock}`);
  const tcp = await serve(fake, '127.0.0.1:0');
  servers = [unix.server, tcp.server];
  tcpPort = tcp.port;
  // What a running local Substrate advertises (src/local/index.ts LocalJson); this process plays its pid.
  writeFileSync(
    join(stateDir, 'local.json'),
    JSON.stringify({
      pid: process.pid,
      nonce: 'n',
      api_endpoint: `unix:${sock}`,
      api_tls: false,
      socket_path: sock,
      router_url: 'http://127.0.0.1:8000',
      state_dir: stateDir,
      started_at: new Date().toISOString(),
    }),
    { mode: 0o600 },
  );
});

afterAll(() => {
  for (const s of servers) s.forceShutdown();
  rmSync(dir, { recursive: true, force: true });
});

const TEMPLATE = (name: string, image = `local/node${PIN}`) => `
metadata: {atespace: smoke, name: ${name}}
containers:
- name: counter
  image: ${image}
  wakeupProbe: {httpGet: {path: /readyz, port: 80}}
  env: [{name: API_KEY, value: sk-secret-in-template}]
snapshotConfig: {storageLocation: "file:///snapshots"}
sandboxConfig: {sandboxClass: SANDBOX_CLASS_GVISOR, configName: gvisor-local}
`;
const MANIFESTS = [
  TEMPLATE('counter'),
  'kind: Atespace\nmetadata: {name: smoke}\n',
  `apiVersion: ate.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: gpu, namespace: ate-system}\nspec: {replicas: 2, workerImage: "w${PIN}", template: {labels: {pool: gpu}}}\n`,
  `apiVersion: ate.dev/v1alpha1\nkind: SandboxConfig\nmetadata: {name: gvisor-local}\nspec: {sandboxClass: gvisor, pauseImage: "p${PIN}"}\n`,
].join('---\n');

describe('local apply', () => {
  it('applies SandboxConfigs, WorkerPools, Atespaces, then ActorTemplates; a second apply is all "unchanged"', async () => {
    const r = await cli(['local', 'apply', '-f', '-'], MANIFESTS);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([
      'sandboxconfig.ate.dev gvisor-local created',
      'workerpool.ate.dev ate-system/gpu created',
      'atespace smoke created',
      'actortemplate smoke/counter created',
    ]);
    expect(fake.calls.map((c) => c.method)).toEqual(['listSandboxConfigs', 'applySandboxConfig', 'listWorkerPools', 'applyWorkerPool', 'createAtespace', 'createActorTemplate']);
    expect(fake.pools).toEqual([{ namespace: 'ate-system', name: 'gpu', labels: { pool: 'gpu' }, replicas: 2, sandboxClass: 'gvisor', workerImage: `w${PIN}` }]);
    expect(fake.calls.every((c) => c.auth === undefined)).toBe(true); // the Unix socket takes no token
    const t = fake.templates.get('smoke/counter')!;
    expect(t.containers[0]!.env).toEqual([{ name: 'API_KEY', value: 'sk-secret-in-template' }]);
    expect(t.sandboxConfig).toEqual({ sandboxClass: pb.SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-local' });

    const again = await cli(['local', 'apply', '-f', '-'], MANIFESTS);
    expect(again.exitCode).toBe(0);
    expect(again.stdout.trim().split('\n')).toEqual([
      'sandboxconfig.ate.dev gvisor-local unchanged',
      'workerpool.ate.dev ate-system/gpu unchanged',
      'atespace smoke unchanged',
      'actortemplate smoke/counter unchanged',
    ]);
    const scaled = await cli(['local', 'apply', '-f', '-'], MANIFESTS.replace('replicas: 2', 'replicas: 3'));
    expect(scaled.stdout).toContain('workerpool.ate.dev ate-system/gpu configured');
    expect(fake.pools[0]!.replicas).toBe(3);
  });

  it('a different template under an existing name is an error (immutable), naming paths but no values', async () => {
    await cli(['local', 'apply', '-f', '-'], MANIFESTS);
    const r = await cli(['local', 'apply', '-f', '-'], MANIFESTS.replace('value: sk-secret-in-template', 'value: sk-other-secret').replace(`local/node${PIN}`, `local/app${PIN}`));
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      'ALREADY_EXISTS: actortemplate smoke/counter exists with different content (containers[0].image, containers[0].env[0].value); ActorTemplates are immutable: delete it (substrate-driver templates delete counter -a smoke) and apply again',
    );
    expect(r.stderr).not.toMatch(/sk-(other-)?secret/);
  });

  it('an API error stops the apply: exit 1 and CODE: message', async () => {
    const r = await cli(['local', 'apply', '-f', '-'], TEMPLATE('lonely'));
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe('FAILED_PRECONDITION: atespace "smoke" not found');
    const builtIn = await cli(['local', 'apply', '-f', '-'], 'apiVersion: ate.dev/v1alpha1\nkind: SandboxConfig\nmetadata: {name: gvisor-default}\nspec: {sandboxClass: gvisor, pauseImage: "other' + PIN + '"}\n');
    expect(builtIn.exitCode).toBe(1);
    expect(builtIn.stderr.trim()).toBe('FAILED_PRECONDITION: SandboxConfig "gvisor-default" is built in and cannot be replaced');
  });

  it('--wait waits for each golden tag; a terminal error_message is printed and exits 1', async () => {
    const ok = await cli(['local', 'apply', '-f', '-', '--wait'], MANIFESTS);
    expect(ok.exitCode).toBe(0);
    expect(ok.stderr).toContain('actortemplate smoke/counter: waiting for the golden snapshot');
    expect(ok.stdout).toMatch(/actortemplate smoke\/counter: golden tag ate-golden\/golden-uid-\d+ ready/);
    const bad = await cli(['local', 'apply', '-f', '-', '--wait'], TEMPLATE('broken'));
    expect(bad.exitCode).toBe(1);
    expect(bad.stdout).toContain('actortemplate smoke/broken created');
    expect(bad.stderr).toContain('actortemplate smoke/broken: golden snapshot failed: GoldenActorCrashed: the golden actor crashed: exit status 3');
  });

  it('WorkerPools and SandboxConfigs are refused on another Substrate before anything is applied', async () => {
    const tok = join(dir, 'tok');
    writeFileSync(tok, 'tok-1\n');
    const r = await cli(['local', 'apply', '-f', '-', '--endpoint', `127.0.0.1:${tcpPort}`, '--token-file', tok, '--api-plaintext'], MANIFESTS);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/WorkerPool and SandboxConfig documents are applied through the local instance's admin service; 127\.0\.0\.1:\d+ is another Substrate/);
    expect(fake.calls).toEqual([]);
  });
});

describe('templates and atespaces', () => {
  beforeEach(async () => {
    await cli(['local', 'apply', '-f', '-'], MANIFESTS + '---\n' + TEMPLATE('second'));
  });

  it('list: kubectl-ate columns, every page; -o yaml prints {items}', async () => {
    const r = await cli(['templates', 'list', '-a', 'smoke']);
    expect(r.exitCode).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ATESPACE\s+NAME\s+SANDBOX CLASS\s+GOLDEN TAG\s+ERROR\s+AGE$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 3))).toEqual([
      ['smoke', 'counter', 'SANDBOX_CLASS_GVISOR'],
      ['smoke', 'second', 'SANDBOX_CLASS_GVISOR'],
    ]);
    expect(lines[1]).toMatch(/\s90s$/); // kubectl's AGE
    expect(fake.calls.filter((c) => c.method === 'listActorTemplates')).toHaveLength(2); // one per page
    const y = parseYaml((await cli(['templates', 'list', '-A', '-o', 'yaml'])).stdout) as { items: unknown[] };
    expect(y.items).toHaveLength(2);
  });

  it('get -o yaml prints the bare object, which templates create takes back', async () => {
    const r = await cli(['templates', 'get', 'counter', '-a', 'smoke', '-o', 'yaml']);
    expect(r.exitCode).toBe(0);
    const o = parseYaml(r.stdout) as Record<string, any>;
    expect(o.metadata).toMatchObject({ atespace: 'smoke', name: 'counter', version: 1 });
    expect(o.containers[0].env).toEqual([{ name: 'API_KEY', value: 'sk-secret-in-template' }]); // -o yaml prints what the user wrote
    expect(o.items).toBeUndefined();
    const two = JSON.parse((await cli(['templates', 'get', 'counter', 'second', '-a', 'smoke', '-o', 'json'])).stdout) as { items: unknown[] };
    expect(two.items).toHaveLength(2);
    // Re-applying the printed manifest elsewhere: the strict parser accepts everything get printed.
    await cli(['atespaces', 'create', 'copy']);
    const copy = r.stdout.replace('atespace: smoke', 'atespace: copy');
    const c = await cli(['templates', 'create', '-f', '-'], copy);
    expect(c.stderr).toBe('');
    expect(c.stdout.trim()).toBe('actortemplate copy/counter created');
  });

  it('NOT_FOUND is exit 1 with CODE: message; delete passes --uid/--version guards', async () => {
    const r = await cli(['templates', 'get', 'nope', '-a', 'smoke']);
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim()).toBe('NOT_FOUND: actor template "smoke/nope" not found');
    const d = await cli(['templates', 'delete', 'second', '-a', 'smoke', '--uid', 'u-9', '--version', '4']);
    expect(d.stdout.trim()).toBe('actortemplate smoke/second deleted');
    expect(fake.calls.at(-1)!.req).toMatchObject({ actorTemplate: { atespace: 'smoke', name: 'second' }, options: { uid: 'u-9', version: 4 } });
  });

  it('atespaces create/get/list', async () => {
    expect((await cli(['atespaces', 'create', 'team-b'])).stdout.trim()).toBe('atespace team-b created');
    const dup = await cli(['atespaces', 'create', 'team-b']);
    expect(dup.exitCode).toBe(1);
    expect(dup.stderr.trim()).toBe('ALREADY_EXISTS: atespace "team-b" already exists');
    const l = await cli(['atespaces', 'list']);
    expect(l.stdout.trim().split('\n').map((x) => x.split(/\s+/)[0])).toEqual(['NAME', 'smoke', 'team-b']);
    const g = JSON.parse((await cli(['atespaces', 'get', 'smoke', '-o', 'json'])).stdout) as { metadata: { name: string } };
    expect(g.metadata.name).toBe('smoke');
  });
});

describe('actors, tags, egress policies, workers', () => {
  beforeEach(async () => {
    await cli(['local', 'apply', '-f', '-'], MANIFESTS);
  });

  it('create → resume → migrate with a selector → suspend → delete, with kubectl-ate shapes', async () => {
    const c = await cli(['actors', 'create', 'a1', '-a', 'smoke', '--template', 'counter']);
    expect(c.exitCode).toBe(0);
    expect(c.stdout.trim()).toBe('actor smoke/a1 created (SUSPENDED, template smoke/counter)');
    expect(fake.calls.at(-1)!.req).toEqual({ actor: pb.Actor.fromPartial({ metadata: { atespace: 'smoke', name: 'a1' }, actorTemplate: { atespace: 'smoke', name: 'counter' } }) });
    const r = await cli(['actors', 'resume', 'a1', '-a', 'smoke']);
    expect(r.stdout).toMatch(/^smoke\/a1: RUNNING on default-0 \(\d+ ms\)\n$/);
    const again = await cli(['actors', 'resume', 'a1', '-a', 'smoke']);
    expect(again.stdout).toMatch(/RUNNING on default-0 \(already running\)/);
    const m = await cli(['actors', 'migrate', 'a1', '-a', 'smoke', '--selector', 'pool=gpu']);
    expect(m.exitCode).toBe(0);
    expect(m.stdout).toMatch(/^migrated smoke\/a1: default-0 \(node node-a\) -> gpu-0 \(node node-b\) in \d+ ms\n$/);
    expect(fake.calls.filter((x) => x.method !== 'listWorkers' && x.method !== 'getActor').slice(-3).map((x) => x.method)).toEqual(['suspendActor', 'updateActor', 'resumeActor']);
    const list = await cli(['actors', 'list', '-a', 'smoke']);
    expect(list.stdout.split('\n')[0]).toMatch(/^ATESPACE\s+NAME\s+TEMPLATE\s+STATE\s+WORKER\s+NODE\s+VERSION\s+AGE$/);
    expect(list.stdout.split('\n')[1]!.split(/\s+/).slice(0, 6)).toEqual(['smoke', 'a1', 'smoke/counter', 'RUNNING', 'gpu-0', 'node-b']);
    const legacy = JSON.parse((await cli(['actors', 'list', '-a', 'smoke', '--json'])).stdout) as Array<{ metadata: { name: string }; status: { state: string } }>;
    expect(legacy.map((a) => [a.metadata.name, a.status.state])).toEqual([['a1', 'ACTOR_STATE_RUNNING']]);
    const del = await cli(['actors', 'delete', 'a1', '-a', 'smoke']);
    expect(del.exitCode).toBe(1);
    expect(del.stderr.trim()).toBe('FAILED_PRECONDITION: actor must be suspended or crashed to be deleted (got: ACTOR_STATE_RUNNING)');
    const anyState = await cli(['actors', 'delete', 'a1', '-a', 'smoke', '--any-state']);
    expect(anyState.stdout.trim()).toBe('actor smoke/a1 deleted');
    const gone = await cli(['actors', 'get', 'a1', '-a', 'smoke']);
    expect(gone.exitCode).toBe(1);
    expect(gone.stderr.trim()).toBe('NOT_FOUND: actor "smoke/a1" not found');
  });

  it('actors get -o yaml prints the bare Actor; create --tag names the tag', async () => {
    await cli(['actors', 'create', 'a1', '-a', 'smoke', '--template', 'smoke/counter']);
    const y = parseYaml((await cli(['actors', 'get', 'a1', '-a', 'smoke', '-o', 'yaml'])).stdout) as Record<string, any>;
    expect(y).toMatchObject({ metadata: { atespace: 'smoke', name: 'a1' }, actorTemplate: { atespace: 'smoke', name: 'counter' }, status: { state: 'ACTOR_STATE_SUSPENDED' } });
    const t = await cli(['tags', 'create', 'v1', '-a', 'smoke', '--actor', 'a1', '--scope', 'published']);
    expect(t.stdout.trim()).toBe('tag smoke/v1 created from actor smoke/a1');
    expect(fake.tags.get('smoke/v1')).toMatchObject({ scope: pb.TagScope.TAG_SCOPE_PUBLISHED, sourceActor: { atespace: 'smoke', name: 'a1' } });
    const u = await cli(['tags', 'update', 'v1', '-a', 'smoke', '--scope', 'atespace']);
    expect(u.stdout.trim()).toBe('tag smoke/v1 updated (scope atespace)');
    const c2 = await cli(['actors', 'create', 'a2', '-a', 'smoke', '--template', 'counter', '--tag', 'v1']);
    expect(c2.stdout.trim()).toBe('actor smoke/a2 created (SUSPENDED, template smoke/counter, tag smoke/v1)');
    const tl = await cli(['tags', 'list', '-a', 'smoke']);
    expect(tl.stdout.split('\n')[1]!.split(/\s+/).slice(0, 4)).toEqual(['smoke', 'v1', 'ATESPACE', 'smoke/a1']);
  });

  it('egress-policy: no policy is not an error; a missing actor is; create then get -o yaml', async () => {
    await cli(['actors', 'create', 'a1', '-a', 'smoke', '--template', 'counter']);
    const none = await cli(['egress-policy', 'get', 'a1', '-a', 'smoke']);
    expect(none.exitCode).toBe(0);
    expect(none.stderr.trim()).toBe('actor "a1" in atespace "smoke" has no egress policy (all egress denied)');
    const missing = await cli(['egress-policy', 'get', 'zz', '-a', 'smoke']);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr.trim()).toBe('NOT_FOUND: actor "zz" in atespace "smoke" not found');
    const policy = 'rules:\n- https: {hostnames: [api.example.com], effects: {replaceHeaders: [{header: Authorization, prefix: "Bearer ", credentialUri: "ate-secret://k8s.io/default/ns/s/k"}]}}\n';
    const c = await cli(['egress-policy', 'create', 'a1', '-a', 'smoke', '-f', '-'], policy);
    expect(c.stdout.trim()).toBe('egress policy for actor "a1" in atespace "smoke" created (1 rule, version 1)');
    expect(fake.calls.at(-1)!.req).toMatchObject({ actor: { atespace: 'smoke', name: 'a1' }, egressPolicy: { metadata: { atespace: 'smoke', name: 'default' } } });
    const y = parseYaml((await cli(['egress-policy', 'get', 'a1', '-a', 'smoke', '-o', 'yaml'])).stdout) as Record<string, any>;
    expect(y.metadata).toMatchObject({ atespace: 'smoke', name: 'default', version: 1 });
    expect(y.rules[0].https.hostnames).toEqual(['api.example.com']);
    const t = await cli(['egress-policy', 'get', 'a1', '-a', 'smoke']);
    expect(t.stdout.split('\n')[1]!.split(/\s+/).slice(0, 4)).toEqual(['smoke', 'a1', '1', '1']);
  });

  it('workers list/assignments and local workers', async () => {
    const l = await cli(['workers', 'list']);
    expect(l.stdout.trim().split('\n').map((x) => x.split(/\s+/).slice(0, 5))).toEqual([
      ['NAME', 'POOL', 'NODE', 'STATE', 'ACTORS'],
      ['default-0', 'ate-system/default', 'node-a', 'ACTIVE', '0/1'],
      ['gpu-0', 'ate-system/gpu', 'node-b', 'ACTIVE', '1/1'],
    ]);
    const a = await cli(['workers', 'assignments', 'gpu-0']);
    expect(a.stdout.split('\n')[1]!.split(/\s+/).slice(0, 2)).toEqual(['smoke/a1', 'uid-x']);
    const lw = JSON.parse((await cli(['local', 'workers', '--json'])).stdout) as Array<{ worker: string; actors: string[] }>;
    expect(lw.map((w) => [w.worker, w.actors])).toEqual([
      ['default-0', []],
      ['gpu-0', ['smoke/a1']],
    ]);
  });

  it('another Substrate over TCP: the bearer token on every call, never printed', async () => {
    const tok = join(dir, 'tok');
    writeFileSync(tok, 'tok-abc-123\n');
    const r = await cli(['atespaces', 'list', '--endpoint', `127.0.0.1:${tcpPort}`, '--token-file', tok, '--api-plaintext']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('smoke');
    expect(fake.calls.at(-1)!.auth).toBe('Bearer tok-abc-123');
    const nf = await cli(['actors', 'get', 'zz', '-a', 'smoke', '--endpoint', `127.0.0.1:${tcpPort}`, '--token-file', tok, '--api-plaintext']);
    expect(nf.exitCode).toBe(1);
    expect(nf.stdout + nf.stderr).not.toContain('tok-abc-123');
  });
});
