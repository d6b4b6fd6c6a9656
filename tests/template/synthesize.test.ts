// ActorTemplate synthesis for Substrate v0.4 (pb.ActorTemplate, created with CreateActorTemplate): content-named
// templates shared by sandboxes of the same spec, never a credential in a template, env precedence and driver
// overrides, the bootstrap agent for v0.1 gateways (with its status endpoint as wakeup probe), and
// OPENSHELL_MAIN_PROCESS_SPEC exactly as the supervisor decodes it.
import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { ApiError, Code } from '../../src/common/errors.js';
import { isDnsLabel } from '../../src/common/dns.js';
import type { DriverSandbox } from '../../src/gen/compute_driver.js';
import * as pb from '../../src/gen/ateapi.js';
import { AGENT_IMAGE_PATH } from '../../src/sandbox/bootstrap-agent.mjs';
import { GatewayStandin, secretPartsOf, type Minted } from '../security/launch-helpers.js';
import {
  BOOTSTRAP_AGENT_COMMAND,
  canonicalJson,
  isSynthesizedTemplateName,
  recordSecretNameFor,
  synthesizeActorTemplate,
  templateContentHash,
  validateSandboxForSynthesis,
  type SynthesisConfig,
} from '../../src/template/synthesize.js';
import { sameContent } from '../../src/driver/templates.js';

const ID = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
const ID2 = '0f6f4c2a-1b7e-4d1c-9a51-2f1c3c9d8e70';
const IMAGE = `ghcr.io/acme/agent@sha256:${'a'.repeat(64)}`;
const TOKEN = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzcGlmZmUifQ.c2lnbmF0dXJlLXRoYXQtbXVzdC1uZXZlci1sZWFr';

function cfg(over: Partial<SynthesisConfig> = {}): SynthesisConfig {
  return { snapshotsLocation: 'gs://snapshots/openshell/', sandboxClass: 'gvisor', gatewayEndpoint: 'http://127.0.0.1:8080', ...over };
}

type Spec = NonNullable<DriverSandbox['spec']>;
function sandbox(over: { spec?: Partial<Spec>; template?: Partial<NonNullable<Spec['template']>>; name?: string; id?: string; workspace?: string } = {}): DriverSandbox {
  return {
    id: over.id ?? ID,
    name: over.name ?? 'my-box',
    namespace: '',
    workspace: over.workspace ?? 'default',
    spec: {
      logLevel: '',
      environment: {},
      sandboxToken: '',
      command: ['/bin/bash', '-l'],
      tty: true,
      awaitMainProcessAttachment: false,
      launchAuthentication: Buffer.alloc(0),
      ...over.spec,
      template: { image: IMAGE, agentSocketPath: '', labels: {}, environment: {}, ...over.template },
    } as Spec,
  };
}

const synth = (sb: DriverSandbox, c = cfg(), o?: Parameters<typeof synthesizeActorTemplate>[2]) => synthesizeActorTemplate(sb, c, o);
const envOf = (t: pb.ActorTemplate) => t.containers[0]!.env;
const valueOf = (env: pb.EnvVar[], name: string) => env.find((e) => e.name === name)?.value;
/** Everything a template would put on the wire, as text. */
const wireText = (t: pb.ActorTemplate) => JSON.stringify(pb.ActorTemplate.toJSON(t)) + Buffer.from(pb.ActorTemplate.encode(t).finish()).toString('latin1');

function expectCode(fn: () => unknown, code: number, msg: RegExp) {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ApiError);
    expect((e as ApiError).code).toBe(code);
    expect((e as ApiError).message).toMatch(msg);
    return;
  }
  throw new Error('expected an ApiError');
}

describe('content naming (templates shared by spec)', () => {
  let gw: GatewayStandin;
  let m1: Minted;
  let m2: Minted;
  const v01 = (id: string, m: Minted, over: Parameters<typeof sandbox>[0] = {}) =>
    sandbox({ ...over, id, name: `box-${id.slice(0, 4)}`, spec: { sandboxToken: m.gatewayToken, launchAuthentication: m.bytes, command: ['node', 'server.js'], tty: false, ...over.spec } });

  beforeAll(async () => {
    gw = await GatewayStandin.create('gw-1', 'key-a');
    m1 = await gw.mint({ sandboxId: ID, authEpoch: 1 });
    m2 = await gw.mint({ sandboxId: ID2, authEpoch: 3 });
  });

  it('the same spec gives the same template name for two sandboxes (v0.1: identity and credentials are delivered, not templated)', () => {
    const a = synth(v01(ID, m1));
    const b = synth(v01(ID2, m2));
    expect(a.template.metadata!.name).toBe(b.template.metadata!.name);
    expect(a.hash).toBe(b.hash);
    expect(a.template.metadata!.name).toMatch(/^sbx-tpl-[0-9a-f]{20}$/);
    expect(isDnsLabel(a.template.metadata!.name)).toBe(true);
    expect(isSynthesizedTemplateName(a.template.metadata!.name)).toBe(true);
    expect(a.template.metadata!.name).toBe(`sbx-tpl-${a.hash.slice(0, 20)}`);
    // In the atespace of the sandbox's workspace; the hash is over the content without metadata.
    expect(a.template.metadata!.atespace).toBe('default');
    expect(synth(v01(ID, m1, { workspace: 'team-a' })).template.metadata).toMatchObject({ atespace: 'team-a', name: a.template.metadata!.name });
    const json = pb.ActorTemplate.toJSON({ ...a.template, metadata: undefined }) as Record<string, unknown>;
    expect(a.hash).toBe(createHash('sha256').update(canonicalJson(json)).digest('hex'));
    expect(templateContentHash(a.template)).toBe(a.hash);
  });

  it('a different spec gives a different name', () => {
    const base = synth(v01(ID, m1)).template.metadata!.name;
    const variants: Array<Parameters<typeof sandbox>[0]> = [
      { template: { image: `ghcr.io/acme/agent@sha256:${'b'.repeat(64)}` } },
      { spec: { command: ['node', 'other.js'] } },
      { spec: { environment: { A: '1' } } },
      { template: { environment: { A: '2' } } },
      { spec: { logLevel: 'debug' } },
      { spec: { tty: true } },
      { template: { resources: { cpuLimit: '2', memoryLimit: '', cpuRequest: '', memoryRequest: '' } as never } },
    ];
    const names = variants.map((v) => synth(v01(ID, m1, v)).template.metadata!.name);
    for (const n of names) expect(n).not.toBe(base);
    expect(new Set(names).size).toBe(names.length);
    // Config is content too.
    expect(synth(v01(ID, m1), cfg({ snapshotsLocation: 'gs://other/' })).template.metadata!.name).not.toBe(base);
    expect(synth(v01(ID, m1), cfg({ gatewayEndpoint: 'http://gw:1' })).template.metadata!.name).not.toBe(base);
    expect(synth(v01(ID, m1), cfg({ workerSelector: { pool: 'big' } })).template.metadata!.name).not.toBe(base);
  });

  it('0.0.x sandboxes share too: their identity and token are delivered after restore to the agent holding the workload', () => {
    const a = synth(sandbox({ id: ID, name: 'one', spec: { sandboxToken: TOKEN } }));
    const b = synth(sandbox({ id: ID2, name: 'two', spec: { sandboxToken: `${TOKEN}x` } }));
    expect(a.template.metadata!.name).toBe(b.template.metadata!.name);
    expect(a.hash).toBe(b.hash);
    const c = a.template.containers[0]!;
    expect(c.command).toEqual([...BOOTSTRAP_AGENT_COMMAND, '/bin/bash', '-l']);
    expect(valueOf(c.env, 'OPENSHELL_SUBSTRATE_DELIVERY')).toBe('identity');
    for (const name of ['OPENSHELL_SANDBOX_ID', 'OPENSHELL_SANDBOX', 'OPENSHELL_SANDBOX_TOKEN']) expect(valueOf(c.env, name)).toBeUndefined();
    // Not the same spec: another template.
    expect(synth(sandbox({ id: ID2, spec: { command: ['node'] } })).template.metadata!.name).not.toBe(a.template.metadata!.name);
    // The agent's status endpoint is the wakeup probe, whatever the config says (the workload starts only
    // after delivery, so nothing else could answer before it).
    expect(c.wakeupProbe).toEqual({ httpGet: { path: '/v1/identity', port: 17461 }, timeoutSeconds: 30 });
    expect(synth(sandbox(), cfg({ wakeupProbe: { path: '/readyz', port: 80 } })).template.containers[0]!.wakeupProbe).toEqual(c.wakeupProbe);
    expect(wireText(a.template)).not.toContain(ID);
    expect(wireText(a.template)).not.toContain(TOKEN);
  });

  it('the hash survives the wire: a template read back from the server has the same content', () => {
    const a = synth(v01(ID, m1, { template: { resources: { cpuLimit: '500m', memoryLimit: '1Gi', cpuRequest: '', memoryRequest: '' } as never } }));
    const back = pb.ActorTemplate.decode(pb.ActorTemplate.encode(a.template).finish());
    // The server adds metadata (uid, version, times) and status; neither is content.
    back.metadata = { ...back.metadata!, uid: 'u-1', version: 3, createTime: new Date() };
    back.status = { goldenSnapshotStatus: { goldenTag: { atespace: 'ate-golden', name: 'x' }, errorMessage: '' } };
    expect(templateContentHash(back)).toBe(a.hash);
    expect(sameContent(a.template, a.hash, back)).toBe(true);
    // A server that materializes a default the driver did not set is still the same content ...
    const defaulted = pb.ActorTemplate.fromPartial({ ...back, containers: [{ ...back.containers[0]!, securityContext: { capabilities: { add: ['KILL'], drop: [] } } }] });
    expect(sameContent(a.template, a.hash, defaulted)).toBe(true);
    // ... but other content is not.
    const other = pb.ActorTemplate.fromPartial({ ...back, containers: [{ ...back.containers[0]!, image: IMAGE.replace('a'.repeat(64), 'c'.repeat(64)) }] });
    expect(sameContent(a.template, a.hash, other)).toBe(false);
  });
});

describe('no credential ever in a template', () => {
  let gw: GatewayStandin;
  let m: Minted;
  beforeAll(async () => {
    gw = await GatewayStandin.create('gw-2', 'key-b');
    m = await gw.mint({ sandboxId: ID, authEpoch: 1 });
  });

  const user = { OPENSHELL_SANDBOX_TOKEN: TOKEN, OPENSHELL_SANDBOX_TOKEN_FILE: '/x', OPENSHELL_SUBSTRATE_GATEWAY_KEYS: '[{"key_id":"evil","public_key_pem":"x"}]', OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT: '1' };

  for (const mode of ['0.0.x (token)', 'v0.1 (launch authentication)'] as const) {
    it(`${mode}: neither the sandbox token nor any part of the launch bundle, whatever the user sets`, () => {
      const spec: Partial<Spec> = mode.startsWith('v0.1') ? { sandboxToken: m.gatewayToken, launchAuthentication: m.bytes } : { sandboxToken: TOKEN };
      for (const sb of [sandbox({ spec: { ...spec, environment: user } }), sandbox({ spec, template: { environment: user } })]) {
        const { template } = synth(sb);
        const text = wireText(template);
        expect(text).not.toContain(TOKEN);
        for (const part of secretPartsOf(m)) expect(text).not.toContain(part);
        expect(text).not.toMatch(/PRIVATE KEY|secretKeyRef/);
        const env = envOf(template);
        expect(env.some((e) => e.name.startsWith('OPENSHELL_SANDBOX_TOKEN'))).toBe(false);
        expect(env.some((e) => e.name === 'OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT')).toBe(false);
        expect(env.filter((e) => e.name === 'OPENSHELL_SUBSTRATE_GATEWAY_KEYS').length).toBe(mode.startsWith('v0.1') ? 1 : 0);
      }
    });
  }

  it('v0.1: wraps the command with the bootstrap agent, probes its status endpoint, and carries only public keys', () => {
    const { template } = synth(sandbox({ spec: { launchAuthentication: m.bytes, command: ['node', 'server.js'], tty: false } }));
    const c = template.containers[0]!;
    expect(c.command).toEqual(['/usr/bin/node', AGENT_IMAGE_PATH, '--', 'node', 'server.js']);
    expect(BOOTSTRAP_AGENT_COMMAND).toEqual(['/usr/bin/node', '/opt/openshell-substrate/bootstrap-agent.mjs', '--']);
    expect(c.wakeupProbe).toEqual({ httpGet: { path: '/v1/launch', port: 17461 }, timeoutSeconds: 30 });
    expect(JSON.parse(valueOf(c.env, 'OPENSHELL_SUBSTRATE_GATEWAY_KEYS')!)).toEqual(gw.publicKeys());
    expect(valueOf(c.env, 'OPENSHELL_SANDBOX_ID')).toBeUndefined();
    expect(valueOf(c.env, 'OPENSHELL_MAIN_PROCESS_SPEC')).toBe('{"version":1,"command":["node","server.js"],"tty":false}');
    // Re-synthesis without the bundle (the gateway sends it on Create only) gives the same template given the keys.
    const later = synth(sandbox({ spec: { command: ['node', 'server.js'], tty: false } }), cfg(), { launchDelivery: { gatewayKeys: gw.publicKeys() } });
    expect(later.template.metadata!.name).toBe(template.metadata!.name);
    // Trust on first use: no keys, nothing in the template but the wrapper.
    const tofu = synth(sandbox(), cfg(), { launchDelivery: {} }).template;
    expect(tofu.containers[0]!.env.some((e) => e.name.startsWith('OPENSHELL_SUBSTRATE_'))).toBe(false);
  });

  it('refuses a malformed bundle and private keys without repeating any of it', async () => {
    const bad = await gw.mint({ sandboxId: ID, authEpoch: 1, edit: (b) => (b.supervisor.secret = b.supervisor.gateway_token) });
    try {
      synth(sandbox({ spec: { launchAuthentication: bad.bytes } }));
      throw new Error('accepted');
    } catch (e) {
      expect((e as ApiError).code).toBe(Code.INVALID_ARGUMENT);
      expect((e as ApiError).message).toMatch(/launch_authentication is invalid: .*unknown field "secret"/);
      expect((e as ApiError).message).not.toContain(bad.gatewayToken);
    }
    const priv = '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n';
    expectCode(() => synth(sandbox(), cfg(), { launchDelivery: { gatewayKeys: [{ key_id: 'k', public_key_pem: priv }] } }), Code.INVALID_ARGUMENT, /not a PEM public key/);
  });
});

describe('the v0.4 template', () => {
  it('has one container, a FULL snapshot config at snapshots_location, the gvisor-default SandboxConfig', () => {
    const { template: t } = synth(sandbox({ spec: { command: ['python3', 'app.py'], tty: false } }));
    expect(t.containers).toHaveLength(1);
    expect(t.containers[0]).toMatchObject({ name: 'sandbox', image: IMAGE, command: [...BOOTSTRAP_AGENT_COMMAND, 'python3', 'app.py'], args: [] });
    expect(t.containers[0]!.wakeupProbe).toEqual({ httpGet: { path: '/v1/identity', port: 17461 }, timeoutSeconds: 30 });
    expect(t.snapshotConfig).toEqual({ onCommit: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, storageLocation: 'gs://snapshots/openshell/' });
    expect(t.sandboxConfig).toEqual({ sandboxClass: pb.SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' });
    expect(t.status).toBeUndefined();
    expect(t.volumes).toEqual([]);
    expect(synth(sandbox(), cfg({ sandboxConfigName: 'gvisor-fast' })).template.sandboxConfig!.configName).toBe('gvisor-fast');
    expect(synth(sandbox(), cfg({ sandboxClass: 'microvm', sandboxConfigName: 'kata' })).template.sandboxConfig).toEqual({ sandboxClass: pb.SandboxClass.SANDBOX_CLASS_MICROVM, configName: 'kata' });
    expectCode(() => synth(sandbox(), cfg({ sandboxClass: 'microvm' })), Code.FAILED_PRECONDITION, /microvm SandboxConfig/);
    expectCode(() => synth(sandbox(), cfg({ snapshotsLocation: '' })), Code.FAILED_PRECONDITION, /snapshots_location is not set/);
    expectCode(() => synth(sandbox(), cfg({ snapshotsLocation: '/no/scheme' })), Code.FAILED_PRECONDITION, /must be a URI with a bucket.*missing bucket/);
    expectCode(() => synth(sandbox(), cfg({ snapshotsLocation: 'file:///var/snaps/' })), Code.FAILED_PRECONDITION, /missing bucket/);
  });

  it("carries the gateway's cpu and memory limits as template resources.limits (never container resources)", () => {
    const { template: t } = synth(sandbox({ template: { resources: { cpuLimit: '500m', memoryLimit: '1Gi', cpuRequest: '100m', memoryRequest: '' } as never } }));
    expect(t.resources).toEqual({ limits: [{ name: 'cpu', quantity: '500m' }, { name: 'memory', quantity: '1Gi' }] });
    expect(t.containers[0]!.resources).toBeUndefined();
    expect(synth(sandbox()).template.resources).toBeUndefined();
    expectCode(() => synth(sandbox({ template: { resources: { cpuLimit: 'lots', memoryLimit: '', cpuRequest: '', memoryRequest: '' } as never } })), Code.INVALID_ARGUMENT, /not a positive quantity/);
    expectCode(() => synth(sandbox({ template: { resources: { cpuLimit: '1000', memoryLimit: '', cpuRequest: '', memoryRequest: '' } as never } })), Code.INVALID_ARGUMENT, /less than 1000 cores/);
  });

  it('carries the worker selector and a wakeup probe from config (v0.1: the workload runs before delivery)', () => {
    const { template: t } = synth(sandbox(), cfg({ workerSelector: { pool: 'big' }, wakeupProbe: { path: '/readyz', port: 80 } }), { launchDelivery: {} });
    expect(t.workerSelector).toEqual({ matchLabels: { pool: 'big' } });
    expect(t.containers[0]!.wakeupProbe).toEqual({ httpGet: { path: '/readyz', port: 80 }, timeoutSeconds: 30 });
    expectCode(() => synth(sandbox(), cfg({ wakeupProbe: { path: 'readyz', port: 80 } })), Code.FAILED_PRECONDITION, /absolute URL path/);
  });

  it('requires an image pinned by a full sha256 digest', () => {
    for (const image of ['ghcr.io/acme/agent:1.0', `ghcr.io/acme/agent@sha256:${'a'.repeat(10)}`, `ghcr.io/acme/agent@sha512:${'a'.repeat(64)}`]) {
      expectCode(() => synth(sandbox({ template: { image } })), Code.INVALID_ARGUMENT, /not pinned by digest/);
    }
    expect(synth(sandbox({ template: { image: `ghcr.io/acme/agent:1.0@sha256:${'a'.repeat(64)}` } })).template.containers[0]!.image).toContain(':1.0@');
    expectCode(() => synth(sandbox({ template: { image: '' } })), Code.INVALID_ARGUMENT, /has no image/);
  });

  it('merges template.environment then spec.environment, the spec winning, sorted; driver variables win', () => {
    const { template: t } = synth(sandbox({ spec: { environment: { B: 'spec', A: 'a', OPENSHELL_SANDBOX_ID: 'spoof' } }, template: { environment: { B: 'tmpl', C: 'c' } } }));
    const env = envOf(t);
    expect(env.slice(0, 3)).toEqual([
      { name: 'A', value: 'a' },
      { name: 'B', value: 'spec' },
      { name: 'C', value: 'c' },
    ]);
    expect(env.filter((e) => e.name === 'OPENSHELL_SANDBOX_ID')).toEqual([]);
    expect(valueOf(env, 'OPENSHELL_ENDPOINT')).toBe('http://127.0.0.1:8080');
    expect(valueOf(env, 'OPENSHELL_LOG_LEVEL')).toBe('info');
    expect(valueOf(envOf(synth(sandbox(), cfg({ gatewayEndpoint: '' })).template), 'OPENSHELL_ENDPOINT')).toBeUndefined();
  });

  it('encodes OPENSHELL_MAIN_PROCESS_SPEC exactly, with the scratch default and the attachment hint only when set', () => {
    expect(valueOf(envOf(synth(sandbox({ spec: { command: [] } })).template), 'OPENSHELL_MAIN_PROCESS_SPEC')).toBe('{"version":1,"command":["/bin/bash","-l"],"tty":true}');
    expect(valueOf(envOf(synth(sandbox({ spec: { awaitMainProcessAttachment: true } })).template), 'OPENSHELL_MAIN_PROCESS_SPEC')).toBe(
      '{"version":1,"command":["/bin/bash","-l"],"tty":true,"await_main_process_attachment":true}',
    );
    expect(synth(sandbox({ spec: { command: ['sleep', 'x'] } }), cfg({ supervisorCommand: ['/usr/local/bin/openshell-sandbox'] })).template.containers[0]!.command).toEqual([
      ...BOOTSTRAP_AGENT_COMMAND,
      '/usr/local/bin/openshell-sandbox',
    ]);
  });

  it('enforces the v0.4 limits: 32 env entries, env names, 64 command items (the agent argv counted at validation)', () => {
    const max = Object.fromEntries(Array.from({ length: 28 }, (_, i) => [`V${i}`, 'x']));
    expect(envOf(synth(sandbox({ spec: { environment: max } })).template)).toHaveLength(32);
    expectCode(() => synth(sandbox({ spec: { environment: { ...max, ONE_MORE: 'x' } } })), Code.INVALID_ARGUMENT, /needs 33 environment variables .* remove at least 1/);
    expectCode(() => synth(sandbox({ spec: { environment: { 'A=B': 'x' } } })), Code.INVALID_ARGUMENT, /names must be 1\.\.256 printable ASCII/);
    expectCode(() => synth(sandbox({ spec: { environment: { BIG: 'x'.repeat(32769) } } })), Code.INVALID_ARGUMENT, /at most 32768/);
    // Both generations run the agent in front of the command: 61 items of the gateway's, 3 of the agent's.
    expect(synth(sandbox({ spec: { command: Array(61).fill('a') } })).template.containers[0]!.command).toHaveLength(64);
    expectCode(() => synth(sandbox({ spec: { command: Array(62).fill('a') } })), Code.INVALID_ARGUMENT, /65 items/);
    // Validate carries no bundle (the gateway sends it on Create only): 62 items must already be refused.
    expect(validateSandboxForSynthesis(sandbox({ spec: { command: Array(62).fill('a') } }), cfg())).toMatch(/65 items \(with the 3 of the bootstrap agent\)/);
    expect(validateSandboxForSynthesis(sandbox(), cfg())).toBeNull();
    expectCode(() => synth(sandbox({ id: '' })), Code.INVALID_ARGUMENT, /sandbox id is empty/);
  });
});

describe('record names (cluster mode)', () => {
  it('keeps the Secret name of the Kubernetes-template era, bounded and collision-free', () => {
    expect(recordSecretNameFor(ID)).toBe(`oss-${ID}-token`);
    const long = 'X'.repeat(80);
    expect(isDnsLabel(recordSecretNameFor(long))).toBe(true);
    expect(recordSecretNameFor(long)).not.toBe(recordSecretNameFor(`${long}y`));
  });
});
