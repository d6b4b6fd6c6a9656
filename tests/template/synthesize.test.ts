// ActorTemplate synthesis from a DriverSandbox: CRD rules, env precedence and driver overrides, the token only
// by Secret reference (0.0.x gateways) or not at all (v0.1 launch authentication: the bootstrap agent wraps the
// command, public keys only), and OPENSHELL_MAIN_PROCESS_SPEC exactly as the supervisor decodes it.
import { beforeAll, describe, expect, it } from 'vitest';
import { ApiError, Code } from '../../src/common/errors.js';
import { isDnsLabel } from '../../src/common/dns.js';
import type { DriverSandbox } from '../../src/gen/compute_driver.js';
import { AGENT_IMAGE_PATH } from '../../src/sandbox/bootstrap-agent.mjs';
import { GatewayStandin, secretPartsOf, type Minted } from '../security/launch-helpers.js';
import {
  BOOTSTRAP_AGENT_COMMAND,
  OWNER_ANNOTATION,
  OWNER_VALUE,
  synthesizeActorTemplate,
  synthesisProblem,
  templateNameFor,
  tokenSecretNameFor,
  validateSandboxForSynthesis,
  type SynthesisConfig,
} from '../../src/template/synthesize.js';
import { jsonEqual, validateActorTemplate } from '../../src/template/validate.js';
import type { EnvVar } from '../../src/template/types.js';

const ID = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
const IMAGE = `ghcr.io/acme/agent@sha256:${'a'.repeat(64)}`;
const TOKEN = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzcGlmZmUifQ.c2lnbmF0dXJlLXRoYXQtbXVzdC1uZXZlci1sZWFr';

function cfg(over: Partial<SynthesisConfig> = {}): SynthesisConfig {
  return {
    namespace: 'openshell',
    pauseImage: `registry.k8s.io/pause:3.10.2@sha256:${'f'.repeat(64)}`,
    snapshotsLocation: 'gs://snapshots/openshell/',
    sandboxClass: 'gvisor',
    gatewayEndpoint: 'http://127.0.0.1:8080',
    ...over,
  };
}

function sandbox(over: { spec?: Partial<NonNullable<DriverSandbox['spec']>>; template?: Partial<NonNullable<NonNullable<DriverSandbox['spec']>['template']>>; name?: string; id?: string } = {}): DriverSandbox {
  return {
    id: over.id ?? ID,
    name: over.name ?? 'my-box',
    namespace: '',
    workspace: 'default',
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
    } as NonNullable<DriverSandbox['spec']>,
  };
}

const envOf = (t: { spec: { containers?: Array<{ env?: EnvVar[] }> } }) => t.spec.containers![0]!.env!;
const valueOf = (env: EnvVar[], name: string) => env.find((e) => e.name === name)?.value;

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

describe('names', () => {
  it('derives a deterministic DNS-1123 template name from the sandbox id', () => {
    expect(templateNameFor(ID)).toBe(`oss-${ID}`);
    expect(templateNameFor(ID)).toBe(templateNameFor(ID));
    expect(tokenSecretNameFor(ID)).toBe(`oss-${ID}-token`);
  });
  it('maps invalid characters and truncates with a hash suffix, never colliding', () => {
    const odd = ['Sandbox_ONE', 'sandbox_one', 'x'.repeat(200), `${'x'.repeat(199)}y`, 'a.b/c', '-lead-', ''];
    const names = odd.map(templateNameFor);
    for (const n of names) {
      expect(isDnsLabel(n), n).toBe(true);
      expect(n.length).toBeLessThanOrEqual(63);
    }
    expect(new Set(names).size).toBe(odd.length);
    for (const id of odd) expect(isDnsLabel(tokenSecretNameFor(id))).toBe(true);
  });
});

describe('synthesizeActorTemplate', () => {
  it('builds a template that passes every CRD rule, owned and labelled by sandbox', () => {
    const t = synthesizeActorTemplate(sandbox(), cfg());
    expect(validateActorTemplate(t)).toEqual([]);
    expect(t.apiVersion).toBe('ate.dev/v1alpha1');
    expect(t.kind).toBe('ActorTemplate');
    expect(t.metadata.name).toBe(templateNameFor(ID));
    expect(t.metadata.namespace).toBe('openshell');
    expect(t.metadata.annotations).toMatchObject({ [OWNER_ANNOTATION]: OWNER_VALUE, 'openshell.ai/sandbox-id': ID, 'openshell.ai/sandbox-name': 'my-box', 'openshell.ai/workspace': 'default' });
    expect(OWNER_VALUE).toBe('openshell-driver-substrate');
    expect(t.metadata.labels).toMatchObject({ 'openshell.ai/sandbox-id': ID, 'openshell.ai/sandbox-name': 'my-box', 'openshell.ai/workspace': 'default' });
    expect(t.spec.pauseImage).toBe(cfg().pauseImage);
    expect(t.spec.snapshotsConfig).toEqual({ location: 'gs://snapshots/openshell/', onPause: 'Full', onCommit: 'Full' });
    expect(t.spec.sandboxClass).toBe('gvisor');
    expect(t.spec.containers).toHaveLength(1);
    expect(t.spec.containers![0]!.name).not.toBe('pause');
    expect(t.spec.containers![0]!.image).toBe(IMAGE);
    expect(t.spec.workerSelector).toBeUndefined();
  });

  it('rejects an unpinned image with INVALID_ARGUMENT and says how to pin it', () => {
    expectCode(() => synthesizeActorTemplate(sandbox({ template: { image: 'ghcr.io/acme/agent:latest' } }), cfg()), Code.INVALID_ARGUMENT, /"ghcr\.io\/acme\/agent:latest" is not pinned.*@sha256:/);
  });
  it('rejects a missing image with INVALID_ARGUMENT', () => {
    expectCode(() => synthesizeActorTemplate(sandbox({ template: { image: '' } }), cfg()), Code.INVALID_ARGUMENT, /has no image/);
  });
  it('rejects an unpinned pause image as a config error (FAILED_PRECONDITION)', () => {
    expectCode(() => synthesizeActorTemplate(sandbox(), cfg({ pauseImage: 'registry.k8s.io/pause:3.10' })), Code.FAILED_PRECONDITION, /pause_image .* is not pinned/);
  });
  it('rejects an empty snapshots location and an invalid namespace as config errors', () => {
    expectCode(() => synthesizeActorTemplate(sandbox(), cfg({ snapshotsLocation: '' })), Code.FAILED_PRECONDITION, /snapshots_location/);
    expectCode(() => synthesizeActorTemplate(sandbox(), cfg({ namespace: 'Bad_NS' })), Code.FAILED_PRECONDITION, /namespace "Bad_NS"/);
  });

  it('merges template.environment then spec.environment, the spec winning, in a stable order', () => {
    const t = synthesizeActorTemplate(sandbox({ spec: { environment: { B: 'spec', C: 'spec' } }, template: { environment: { A: 'tmpl', B: 'tmpl' } } }), cfg());
    const env = envOf(t);
    expect(valueOf(env, 'A')).toBe('tmpl');
    expect(valueOf(env, 'B')).toBe('spec');
    expect(valueOf(env, 'C')).toBe('spec');
    expect(env.filter((e) => e.name === 'B')).toHaveLength(1);
    // Same sandbox, maps in another insertion order: the same spec (it is immutable once applied).
    const t2 = synthesizeActorTemplate(sandbox({ spec: { environment: { C: 'spec', B: 'spec' } }, template: { environment: { B: 'tmpl', A: 'tmpl' } } }), cfg());
    expect(jsonEqual(t.spec, t2.spec)).toBe(true);
  });

  it('sets the supervisor variables, overriding anything the user supplied', () => {
    const user = {
      OPENSHELL_SANDBOX_ID: 'spoofed',
      OPENSHELL_SANDBOX: 'spoofed',
      OPENSHELL_ENDPOINT: 'http://127.0.0.9:1',
      OPENSHELL_MAIN_PROCESS_SPEC: '{"version":1,"command":["sleep","infinity"],"tty":false}',
      OPENSHELL_LOG_LEVEL: 'trace',
    };
    const t = synthesizeActorTemplate(sandbox({ spec: { environment: user, logLevel: 'debug', command: ['node', 'server.js'], tty: false } }), cfg());
    const env = envOf(t);
    expect(valueOf(env, 'OPENSHELL_SANDBOX_ID')).toBe(ID);
    expect(valueOf(env, 'OPENSHELL_SANDBOX')).toBe('my-box');
    expect(valueOf(env, 'OPENSHELL_ENDPOINT')).toBe('http://127.0.0.1:8080');
    expect(valueOf(env, 'OPENSHELL_LOG_LEVEL')).toBe('debug');
    expect(valueOf(env, 'OPENSHELL_MAIN_PROCESS_SPEC')).toBe('{"version":1,"command":["node","server.js"],"tty":false}');
    for (const name of Object.keys(user)) expect(env.filter((e) => e.name === name)).toHaveLength(1);
  });

  it('defaults the log level to info and omits OPENSHELL_ENDPOINT when no gateway endpoint is configured', () => {
    const t = synthesizeActorTemplate(sandbox(), cfg({ gatewayEndpoint: '' }));
    expect(valueOf(envOf(t), 'OPENSHELL_LOG_LEVEL')).toBe('info');
    expect(envOf(t).some((e) => e.name === 'OPENSHELL_ENDPOINT')).toBe(false);
  });

  it('passes the sandbox token only by secretKeyRef, never as a literal anywhere', () => {
    const t = synthesizeActorTemplate(sandbox({ spec: { sandboxToken: TOKEN, environment: { OPENSHELL_SANDBOX_TOKEN: TOKEN, OPENSHELL_SANDBOX_TOKEN_FILE: '/tmp/tok' } } }), cfg());
    const entries = envOf(t).filter((e) => e.name === 'OPENSHELL_SANDBOX_TOKEN');
    expect(entries).toEqual([{ name: 'OPENSHELL_SANDBOX_TOKEN', valueFrom: { secretKeyRef: { name: tokenSecretNameFor(ID), key: 'token' } } }]);
    expect(envOf(t).some((e) => e.name === 'OPENSHELL_SANDBOX_TOKEN_FILE')).toBe(false);
    const text = JSON.stringify(t);
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain(TOKEN.split('.')[2]);
  });

  it('adds the token reference only when a token exists, or when told one does', () => {
    const none = synthesizeActorTemplate(sandbox(), cfg());
    expect(envOf(none).some((e) => e.name.startsWith('OPENSHELL_SANDBOX_TOKEN'))).toBe(false);
    const told = synthesizeActorTemplate(sandbox(), cfg(), { hasToken: true });
    expect(envOf(told).find((e) => e.name === 'OPENSHELL_SANDBOX_TOKEN')?.valueFrom?.secretKeyRef?.name).toBe(tokenSecretNameFor(ID));
    const denied = synthesizeActorTemplate(sandbox({ spec: { sandboxToken: TOKEN } }), cfg(), { hasToken: false });
    expect(JSON.stringify(denied)).not.toContain('OPENSHELL_SANDBOX_TOKEN');
  });

  it("carries a v0.1 gateway's await_main_process_attachment hint in OPENSHELL_MAIN_PROCESS_SPEC, only when set", () => {
    const base = sandbox();
    const hinted = { ...base, spec: { ...base.spec!, awaitMainProcessAttachment: true } };
    expect(JSON.parse(valueOf(envOf(synthesizeActorTemplate(hinted, cfg())), 'OPENSHELL_MAIN_PROCESS_SPEC')!)).toMatchObject({ version: 1, await_main_process_attachment: true });
    expect(valueOf(envOf(synthesizeActorTemplate(base, cfg())), 'OPENSHELL_MAIN_PROCESS_SPEC')).not.toContain('await_main_process_attachment');
  });

  it('encodes OPENSHELL_MAIN_PROCESS_SPEC exactly, with the scratch default for an empty command', () => {
    const spec = (s: DriverSandbox) => valueOf(envOf(synthesizeActorTemplate(s, cfg())), 'OPENSHELL_MAIN_PROCESS_SPEC');
    expect(spec(sandbox({ spec: { command: [], tty: false } }))).toBe('{"version":1,"command":["/bin/bash","-l"],"tty":true}');
    expect(spec(sandbox({ spec: { command: ['python3', '-c', 'print("a b")'], tty: true } }))).toBe('{"version":1,"command":["python3","-c","print(\\"a b\\")"],"tty":true}');
    const decoded = JSON.parse(spec(sandbox({ spec: { command: ['sh', '-c', 'echo $HOME && ls'], tty: false } }))!);
    expect(Object.keys(decoded)).toEqual(['version', 'command', 'tty']);
    expect(decoded).toEqual({ version: 1, command: ['sh', '-c', 'echo $HOME && ls'], tty: false });
  });

  it("runs the sandbox's own command, or the supervisor wrapper without trailing args; never an idle sleep", () => {
    const own = synthesizeActorTemplate(sandbox({ spec: { command: ['node', 'server.js'], tty: false } }), cfg());
    expect(own.spec.containers![0]!.command).toEqual(['node', 'server.js']);
    const scratch = synthesizeActorTemplate(sandbox({ spec: { command: [] } }), cfg());
    expect(scratch.spec.containers![0]!.command).toEqual(['/bin/bash', '-l']);
    const wrapped = synthesizeActorTemplate(sandbox({ spec: { command: ['node', 'server.js'] } }), cfg({ supervisorCommand: ['/usr/local/bin/openshell-sandbox'] }));
    expect(wrapped.spec.containers![0]!.command).toEqual(['/usr/local/bin/openshell-sandbox']);
    for (const t of [own, scratch, wrapped]) expect(JSON.stringify(t.spec.containers![0]!.command)).not.toMatch(/sleep/);
  });

  it('allows 32 env entries in total and rejects 33 with the count', () => {
    // 6 driver entries with a token (ID, name, endpoint, log level, process spec, token ref) + 26 user = 32.
    const user = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`VAR_${i}`, 'x']));
    const ok = synthesizeActorTemplate(sandbox({ spec: { environment: user(26), sandboxToken: TOKEN } }), cfg());
    expect(envOf(ok)).toHaveLength(32);
    expectCode(() => synthesizeActorTemplate(sandbox({ spec: { environment: user(27), sandboxToken: TOKEN } }), cfg()), Code.INVALID_ARGUMENT, /needs 33 environment variables \(27 from .*at most 32.*remove at least 1/);
  });

  it('validation counts the token slot before the gateway mints the token', () => {
    const user = Object.fromEntries(Array.from({ length: 27 }, (_, i) => [`VAR_${i}`, 'x']));
    // Without a token this fits (27 + 5), but Create will add the token reference.
    expect(() => synthesizeActorTemplate(sandbox({ spec: { environment: user } }), cfg())).not.toThrow();
    expect(validateSandboxForSynthesis(sandbox({ spec: { environment: user } }), cfg())).toMatch(/needs 33 environment variables/);
    expect(synthesisProblem(sandbox({ spec: { environment: user } }), cfg())?.code).toBe(Code.INVALID_ARGUMENT);
    expect(validateSandboxForSynthesis(sandbox(), cfg())).toBeNull();
  });

  it('rejects env names the CRD pattern refuses', () => {
    expectCode(() => synthesizeActorTemplate(sandbox({ spec: { environment: { 'A=B': 'x' } } }), cfg()), Code.INVALID_ARGUMENT, /"A=B".*\^\[ -<>-~\]\+\$/);
    expectCode(() => synthesizeActorTemplate(sandbox({ template: { environment: { 'NAÏVE': 'x' } } }), cfg()), Code.INVALID_ARGUMENT, /NAÏVE/);
  });

  it('allows 64 command items and rejects 65', () => {
    expect(synthesizeActorTemplate(sandbox({ spec: { command: Array(64).fill('a') } }), cfg()).spec.containers![0]!.command).toHaveLength(64);
    expectCode(() => synthesizeActorTemplate(sandbox({ spec: { command: Array(65).fill('a') } }), cfg()), Code.INVALID_ARGUMENT, /65 items.*at most 64/);
    expectCode(() => synthesizeActorTemplate(sandbox({ spec: { command: ['', 'x'] } }), cfg()), Code.INVALID_ARGUMENT, /command\[0\] is empty/);
  });

  it('carries the worker selector, sandbox class and readyz from config', () => {
    const t = synthesizeActorTemplate(sandbox(), cfg({ workerSelector: { 'ate.dev/pool': 'helpdesk' }, sandboxClass: 'microvm', readyz: { path: '/healthz', port: 8080 } }));
    expect(validateActorTemplate(t)).toEqual([]);
    expect(t.spec.workerSelector).toEqual({ matchLabels: { 'ate.dev/pool': 'helpdesk' } });
    expect(t.spec.sandboxClass).toBe('microvm');
    expect(t.spec.containers![0]!.readyz).toEqual({ httpGet: { path: '/healthz', port: 8080 } });
    expectCode(() => synthesizeActorTemplate(sandbox(), cfg({ workerSelector: { 'bad key': 'x' } })), Code.FAILED_PRECONDITION, /worker_selector key "bad key"/);
    expectCode(() => synthesizeActorTemplate(sandbox(), cfg({ readyz: { path: 'nope', port: 80 } })), Code.FAILED_PRECONDITION, /readyz path/);
  });

  it("carries the gateway's cpu and memory limits as template resource limits, refusing what is not a quantity", () => {
    const res = (r: Partial<{ cpuRequest: string; cpuLimit: string; memoryRequest: string; memoryLimit: string }>) =>
      sandbox({ template: { resources: { cpuRequest: '', cpuLimit: '', memoryRequest: '', memoryLimit: '', ...r } } });
    expect(synthesizeActorTemplate(res({}), cfg()).spec.resources).toBeUndefined();
    const t = synthesizeActorTemplate(res({ cpuLimit: '500m', memoryLimit: '512Mi', cpuRequest: '100m' }), cfg());
    expect(validateActorTemplate(t)).toEqual([]);
    expect(t.spec.resources).toEqual({ limits: [{ name: 'cpu', quantity: '500m' }, { name: 'memory', quantity: '512Mi' }] });
    expectCode(() => synthesizeActorTemplate(res({ memoryLimit: 'lots' }), cfg()), Code.INVALID_ARGUMENT, /memory_limit "lots" is not a positive quantity/);
    expectCode(() => synthesizeActorTemplate(res({ cpuLimit: '1000' }), cfg()), Code.INVALID_ARGUMENT, /less than 1000 cores/);
    expectCode(() => synthesizeActorTemplate(res({ memoryLimit: '1Mi' }), cfg()), Code.INVALID_ARGUMENT, /below the 16Mi/);
  });

  it('keeps template labels when valid, rejects invalid ones, and keeps unlabelable values in annotations only', () => {
    const t = synthesizeActorTemplate(sandbox({ template: { labels: { team: 'support', 'openshell.ai/sandbox-id': 'spoof' } } }), cfg());
    expect(t.metadata.labels).toMatchObject({ team: 'support', 'openshell.ai/sandbox-id': ID });
    expectCode(() => synthesizeActorTemplate(sandbox({ template: { labels: { team: 'has space' } } }), cfg()), Code.INVALID_ARGUMENT, /template label "team"/);
    const long = 'n'.repeat(70);
    const t2 = synthesizeActorTemplate(sandbox({ name: long }), cfg());
    expect(t2.metadata.labels?.['openshell.ai/sandbox-name']).toBeUndefined();
    expect(t2.metadata.annotations?.['openshell.ai/sandbox-name']).toBe(long);
  });

  it('rejects an empty sandbox id', () => {
    expectCode(() => synthesizeActorTemplate(sandbox({ id: '' }), cfg()), Code.INVALID_ARGUMENT, /sandbox id is empty/);
  });
});

describe('synthesizeActorTemplate for v0.1 gateways (launch authentication)', () => {
  let gw: GatewayStandin;
  let m: Minted;
  const secretFree = (t: unknown) => {
    const text = JSON.stringify(t);
    for (const part of secretPartsOf(m)) expect(text).not.toContain(part);
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain('secretKeyRef');
    expect(text).not.toMatch(/PRIVATE KEY/);
  };
  const launch = (over: Parameters<typeof sandbox>[0] = {}) =>
    sandbox({ ...over, spec: { sandboxToken: m.gatewayToken, launchAuthentication: m.bytes, command: ['node', 'server.js'], tty: false, ...over.spec } });

  beforeAll(async () => {
    gw = await GatewayStandin.create('gw-1', 'key-a');
    m = await gw.mint({ sandboxId: ID, authEpoch: 1 });
  });

  it('wraps the command with the bootstrap agent and carries no token, no Secret reference, only public keys', () => {
    const t = synthesizeActorTemplate(launch(), cfg());
    expect(validateActorTemplate(t)).toEqual([]);
    expect(t.spec.containers![0]!.command).toEqual(['/usr/bin/node', AGENT_IMAGE_PATH, '--', 'node', 'server.js']);
    expect(BOOTSTRAP_AGENT_COMMAND).toEqual(['/usr/bin/node', '/opt/openshell-substrate/bootstrap-agent.mjs', '--']);
    const env = envOf(t);
    expect(env.some((e) => e.name.startsWith('OPENSHELL_SANDBOX_TOKEN'))).toBe(false);
    expect(JSON.parse(valueOf(env, 'OPENSHELL_SUBSTRATE_GATEWAY_KEYS')!)).toEqual(gw.publicKeys());
    expect(valueOf(env, 'OPENSHELL_ENDPOINT')).toBe('http://127.0.0.1:8080');
    expect(valueOf(env, 'OPENSHELL_SANDBOX_ID')).toBe(ID);
    // The supervisor still gets the gateway's own command through the process spec.
    expect(valueOf(env, 'OPENSHELL_MAIN_PROCESS_SPEC')).toBe('{"version":1,"command":["node","server.js"],"tty":false}');
    secretFree(t);
  });

  it('never a token, whatever the caller says about the token Secret or the user puts in the environment', () => {
    const user = { OPENSHELL_SANDBOX_TOKEN: TOKEN, OPENSHELL_SUBSTRATE_GATEWAY_KEYS: '[{"key_id":"evil","public_key_pem":"x"}]', OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT: '1' };
    for (const t of [
      synthesizeActorTemplate(launch({ spec: { environment: user } }), cfg(), { hasToken: true }),
      synthesizeActorTemplate(launch({ template: { environment: user } }), cfg()),
    ]) {
      secretFree(t);
      expect(envOf(t).filter((e) => e.name === 'OPENSHELL_SUBSTRATE_GATEWAY_KEYS')).toHaveLength(1);
      expect(JSON.parse(valueOf(envOf(t), 'OPENSHELL_SUBSTRATE_GATEWAY_KEYS')!)).toEqual(gw.publicKeys());
      expect(envOf(t).some((e) => e.name === 'OPENSHELL_SUBSTRATE_BOOTSTRAP_PORT')).toBe(false);
    }
  });

  it('re-synthesis without the bundle (the gateway sends it on Create only) gives the same template when given the keys', () => {
    const fromBundle = synthesizeActorTemplate(launch(), cfg());
    const later = synthesizeActorTemplate(sandbox({ spec: { command: ['node', 'server.js'], tty: false } }), cfg(), { launchDelivery: { gatewayKeys: gw.publicKeys() } });
    expect(jsonEqual(fromBundle.spec, later.spec)).toBe(true);
    // No keys: trust on first use, nothing in the template but the wrapper.
    const tofu = synthesizeActorTemplate(sandbox(), cfg(), { launchDelivery: {} });
    expect(tofu.spec.containers![0]!.command!.slice(0, 3)).toEqual([...BOOTSTRAP_AGENT_COMMAND]);
    expect(envOf(tofu).some((e) => e.name.startsWith('OPENSHELL_SUBSTRATE_'))).toBe(false);
    // launchDelivery false forces the 0.0.x mode: the Secret reference, no wrapper.
    const legacy = synthesizeActorTemplate(launch(), cfg(), { launchDelivery: false });
    expect(legacy.spec.containers![0]!.command).toEqual(['node', 'server.js']);
    expect(envOf(legacy).find((e) => e.name === 'OPENSHELL_SANDBOX_TOKEN')?.valueFrom?.secretKeyRef?.name).toBe(tokenSecretNameFor(ID));
    // A custom agent command (an image that keeps the agent elsewhere).
    const custom = synthesizeActorTemplate(launch(), cfg({ bootstrapAgentCommand: ['/bin/agent', '--'] }));
    expect(custom.spec.containers![0]!.command).toEqual(['/bin/agent', '--', 'node', 'server.js']);
  });

  it('refuses a malformed bundle and private keys without repeating any of it', async () => {
    const bad = await gw.mint({ sandboxId: ID, authEpoch: 1, edit: (b) => (b.supervisor.secret = b.supervisor.gateway_token) });
    try {
      synthesizeActorTemplate(sandbox({ spec: { launchAuthentication: bad.bytes } }), cfg());
      throw new Error('accepted');
    } catch (e) {
      expect((e as ApiError).code).toBe(Code.INVALID_ARGUMENT);
      expect((e as ApiError).message).toMatch(/launch_authentication is invalid: .*unknown field "secret"/);
      expect((e as ApiError).message).not.toContain(bad.gatewayToken);
    }
    const priv = '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n';
    expectCode(() => synthesizeActorTemplate(sandbox(), cfg(), { launchDelivery: { gatewayKeys: [{ key_id: 'k', public_key_pem: priv }] } }), Code.INVALID_ARGUMENT, /not a PEM public key/);
    expectCode(
      () => synthesizeActorTemplate(sandbox(), cfg(), { launchDelivery: { gatewayKeys: [...gw.publicKeys(), ...gw.publicKeys()] } }),
      Code.INVALID_ARGUMENT,
      /must be unique/,
    );
  });

  it("counts the agent's argv against the 64 command items, and validation counts it before Create", () => {
    expect(synthesizeActorTemplate(launch({ spec: { command: Array(61).fill('a') } }), cfg()).spec.containers![0]!.command).toHaveLength(64);
    expectCode(() => synthesizeActorTemplate(launch({ spec: { command: Array(62).fill('a') } }), cfg()), Code.INVALID_ARGUMENT, /65 items \(with the 3 of the bootstrap agent\)/);
    // Validate carries no bundle (the gateway sends it on Create only): 62 items must already be refused.
    expect(validateSandboxForSynthesis(sandbox({ spec: { command: Array(62).fill('a') } }), cfg())).toMatch(/65 items/);
    // The anchor takes the token's env slot: 26 user variables still fit.
    const user = Object.fromEntries(Array.from({ length: 26 }, (_, i) => [`VAR_${i}`, 'x']));
    expect(envOf(synthesizeActorTemplate(launch({ spec: { environment: user } }), cfg()))).toHaveLength(32);
  });
});
