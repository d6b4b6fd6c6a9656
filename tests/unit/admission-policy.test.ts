// OpenShell v0.1 resource admission on the driver side (src/driver/admission-policy.ts): the operator's
// policy as upstream's DriverAdmissionConfig parses and validates it, the "v1:" acknowledgement the gateway
// compares byte-for-byte, admit / admitShared, the caller driver_config gate, and the template_labels overlay
// that attachRefusal evaluates.
import { describe, expect, it } from 'vitest';
import { Code } from '../../src/common/errors.js';
import { ConfigError } from '../../src/common/config.js';
import {
  admissionAcknowledgement,
  admit,
  admitShared,
  checkDriverConfig,
  DEFAULT_REQUIRED_LABELS,
  defaultAdmissionConfig,
  isValidLabelKey,
  isValidLabelValue,
  parseAdmissionTable,
  parseResourceAdmission,
  parseTemplateLabels,
  RESERVED_LABEL_KEYS,
  type DriverAdmissionConfig,
} from '../../src/driver/admission-policy.js';
import { attachRefusal, effectiveTemplateLabels } from '../../src/driver/admission.js';

const DEFAULT_ACK =
  'v1:{"allow_driver_config":false,"resource_admission":{"enabled":true,"required_labels":{"openshell.ai/sandbox-attachable":"true","openshell.ai/sandbox-attachable-workspace":"${workspace}"}}}';
const WHERE = 'file /etc/openshell/gateway.toml';
const A = 'openshell.ai/sandbox-attachable';
const W = 'openshell.ai/sandbox-attachable-workspace';

function configErr(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

/** The validation message for a resource_admission table (parsed as from the file). */
function why(ra: unknown): string {
  const e = configErr(() => parseResourceAdmission(ra, WHERE, 'file'));
  expect(e.source).toBe('file');
  expect(e.message).toContain(`(from ${WHERE})`);
  return e.message;
}

const policy = (requiredLabels: Record<string, string>, enabled = true, allowDriverConfig = false): DriverAdmissionConfig => ({
  allowDriverConfig,
  resourceAdmission: { enabled, requiredLabels },
});
const labels = (workspace: string) => ({ [A]: 'true', [W]: workspace });

describe('the acknowledgement', () => {
  it('is byte-identical to upstream for the default policy', () => {
    expect(admissionAcknowledgement(defaultAdmissionConfig())).toBe(DEFAULT_ACK);
    expect(admissionAcknowledgement(parseAdmissionTable({}, WHERE))).toBe(DEFAULT_ACK);
    expect(admissionAcknowledgement(parseAdmissionTable(undefined, WHERE))).toBe(DEFAULT_ACK);
    expect(DEFAULT_REQUIRED_LABELS).toEqual({ [A]: 'true', [W]: '${workspace}' });
  });

  it('sorts required_labels keys by byte order, whatever the insertion order', () => {
    const cfg = parseAdmissionTable(
      { resource_admission: { required_labels: { 'z.example/b': 'x', 'a.example/a': '${workspace}', a: '2', B: '1', 'a-b': '3' } } },
      WHERE,
    );
    expect(admissionAcknowledgement(cfg)).toBe(
      'v1:{"allow_driver_config":false,"resource_admission":{"enabled":true,"required_labels":{"B":"1","a":"2","a-b":"3","a.example/a":"${workspace}","z.example/b":"x"}}}',
    );
  });

  it('echoes a custom table: allow_driver_config, enabled and a replacing map', () => {
    expect(admissionAcknowledgement(parseAdmissionTable({ allow_driver_config: true, resource_admission: { enabled: false, required_labels: {} } }, WHERE))).toBe(
      'v1:{"allow_driver_config":true,"resource_admission":{"enabled":false,"required_labels":{}}}',
    );
    // A supplied map replaces the defaults; an omitted one keeps them.
    expect(admissionAcknowledgement(parseAdmissionTable({ resource_admission: { required_labels: { 'example.com/approved': 'yes' } } }, WHERE))).toBe(
      'v1:{"allow_driver_config":false,"resource_admission":{"enabled":true,"required_labels":{"example.com/approved":"yes"}}}',
    );
    expect(admissionAcknowledgement(parseAdmissionTable({ resource_admission: { enabled: false } }, WHERE))).toBe(
      'v1:{"allow_driver_config":false,"resource_admission":{"enabled":false,"required_labels":{"openshell.ai/sandbox-attachable":"true","openshell.ai/sandbox-attachable-workspace":"${workspace}"}}}',
    );
  });

  it('ignores the other keys of the [openshell.drivers.substrate] table', () => {
    expect(admissionAcknowledgement(parseAdmissionTable({ socket_path: '/run/x.sock', stop_mode: 'pause' }, WHERE))).toBe(DEFAULT_ACK);
  });
});

describe('validation, with upstream messages, naming the key path and the source', () => {
  it('an empty map while enabled (but not while disabled)', () => {
    expect(why({ required_labels: {} })).toMatch(
      /^invalid config resource_admission\.required_labels \(from file \/etc\/openshell\/gateway\.toml\): resource_admission\.required_labels must not be empty while enabled$/,
    );
    expect(parseResourceAdmission({ enabled: false, required_labels: {} }, WHERE).requiredLabels).toEqual({});
  });

  it('reserved driver-owned keys, even while disabled', () => {
    expect(RESERVED_LABEL_KEYS).toEqual(['openshell.ai/managed-by', 'openshell.ai/gateway-id', 'openshell.ai/sandbox-workspace']);
    for (const key of RESERVED_LABEL_KEYS) {
      expect(why({ required_labels: { 'example.com/approved': 'true', [key]: 'operator-value' } })).toContain(
        `resource admission label key is reserved for driver-owned metadata: ${key}`,
      );
      expect(why({ enabled: false, required_labels: { [key]: 'x' } })).toContain('reserved for driver-owned metadata');
    }
  });

  it('invalid label keys (upstream valid_label_key)', () => {
    for (const key of ['', '/a', 'bad_domain/a', 'a/b/c', '-a', 'a/', 'Example.com/a', 'a..b/c', `${'a'.repeat(64)}`, `${'a'.repeat(64)}.io/x`]) {
      expect(isValidLabelKey(key), key).toBe(false);
      expect(why({ required_labels: { 'example.com/approved': 'true', [key]: 'v' } })).toContain(`invalid resource admission label key: ${key}`);
    }
    for (const key of [A, W, 'approved', 'A_b.c', 'example.com/Approved_1', 'a-1.b-2.io/x', `${'a'.repeat(63)}`]) {
      expect(isValidLabelKey(key), key).toBe(true);
    }
  });

  it('invalid values: only whole-value ${workspace} substitution', () => {
    for (const value of ['${workspace.id}', 'prefix-${workspace}', '$HOME', '*', 'x/y', '-a', 'a'.repeat(64)]) {
      expect(isValidLabelValue(value), value).toBe(false);
      expect(why({ required_labels: { approved: value } })).toContain(
        'invalid resource admission label value for approved; only whole-value ${workspace} substitution is supported',
      );
    }
    for (const value of ['', 'true', 'a.b_c-D', 'a'.repeat(63)]) expect(isValidLabelValue(value), value).toBe(true);
  });

  it('at least one shared approval label while enabled', () => {
    expect(why({ required_labels: { [W]: '${workspace}' } })).toContain('resource_admission.required_labels must include a shared approval label');
    expect(parseResourceAdmission({ enabled: false, required_labels: { [W]: '${workspace}' } }, WHERE).enabled).toBe(false);
  });

  it('unknown keys and wrong types (serde deny_unknown_fields)', () => {
    const unknown = configErr(() => parseResourceAdmission({ enabled: true, required_label: {} }, WHERE, 'file'));
    expect(unknown.key).toBe('resource_admission.required_label');
    expect(unknown.message).toContain('unknown field `required_label`, expected `enabled` or `required_labels`');
    expect(configErr(() => parseResourceAdmission({ enabled: 'yes' }, WHERE)).key).toBe('resource_admission.enabled');
    expect(configErr(() => parseResourceAdmission({ enabled: 1n }, WHERE)).message).toContain('1 is not a boolean');
    expect(configErr(() => parseResourceAdmission({ required_labels: { approved: true } }, WHERE)).key).toBe('resource_admission.required_labels');
    expect(configErr(() => parseResourceAdmission({ required_labels: ['a'] }, WHERE)).message).toContain('must be a table');
    expect(configErr(() => parseResourceAdmission('enabled', WHERE)).key).toBe('resource_admission');
    expect(configErr(() => parseAdmissionTable({ allow_driver_config: 'true' }, WHERE)).key).toBe('allow_driver_config');
  });

  it('refuses __proto__ keys and never touches a prototype', () => {
    const a = JSON.parse('{"__proto__":{"enabled":false}}') as unknown;
    expect(configErr(() => parseResourceAdmission(a, WHERE)).message).toContain('unknown field `__proto__`');
    const b = JSON.parse('{"required_labels":{"example.com/ok":"yes","__proto__":"x"}}') as unknown;
    expect(configErr(() => parseResourceAdmission(b, WHERE)).message).toContain('"__proto__" is not allowed');
    // An inherited field is not a field.
    const inherited = Object.create({ enabled: false, required_labels: {} }) as Record<string, unknown>;
    expect(parseResourceAdmission(inherited, WHERE).enabled).toBe(true);
    expect(({} as Record<string, unknown>).enabled).toBeUndefined();
  });
});

describe('admit and admitShared (upstream semantics)', () => {
  const def = defaultAdmissionConfig();

  it('workspace scope substitutes ${workspace}; shared scope skips it; missing is a mismatch', () => {
    expect(admit(def, 'a', labels('a'))).toBeNull();
    expect(admit(def, 'b', labels('a'))?.code).toBe(Code.FAILED_PRECONDITION);
    expect(admitShared(def, labels('a'))).toBeNull();
    expect(admitShared(def, { [A]: 'true' })).toBeNull();
    expect(admit(def, 'a', {})?.code).toBe(Code.FAILED_PRECONDITION);
    expect(admitShared(def, {})?.code).toBe(Code.FAILED_PRECONDITION);
    expect(admit(def, 'a', undefined)?.code).toBe(Code.FAILED_PRECONDITION);
    expect(admit(def, 'a', { [A]: 'true' })?.message).toMatch(
      /^external resource not admitted by required labels: label openshell\.ai\/sandbox-attachable-workspace must be "a"/,
    );
  });

  it('compares values exactly and names the label and the expected value', () => {
    const e = admit(def, 'a', { [A]: 'True', [W]: 'a' });
    expect(e?.code).toBe(Code.FAILED_PRECONDITION);
    expect(e?.message).toBe('external resource not admitted by required labels: label openshell.ai/sandbox-attachable must be "true"');
    expect(admit(def, 'a', { [A]: 'true', [W]: 'A' })?.code).toBe(Code.FAILED_PRECONDITION);
  });

  it('refuses an invalid workspace identity', () => {
    for (const ws of ['', 'bad ws', '-x', 'x/y', 'a'.repeat(64)]) {
      const e = admit(def, ws, labels(ws));
      expect(e?.code, ws).toBe(Code.FAILED_PRECONDITION);
      expect(e?.message).toBe('resource not admitted: invalid workspace identity');
    }
    // Shared scope never looks at a workspace.
    expect(admitShared(def, { [A]: 'true' })).toBeNull();
  });

  it('checks required labels in byte order, as upstream does', () => {
    const p = policy({ 'z.example/approved': 'yes', 'a.example/ws': '${workspace}' });
    expect(admit(p, '', {})?.message).toBe('resource not admitted: invalid workspace identity');
    const q = policy({ 'a.example/approved': 'yes', 'z.example/ws': '${workspace}' });
    expect(admit(q, '', {})?.message).toMatch(/^external resource not admitted by required labels: label a\.example\/approved/);
  });

  it('admits everything while disabled', () => {
    const off = policy({}, false);
    expect(admit(off, 'a', {})).toBeNull();
    expect(admit(off, '', undefined)).toBeNull();
    expect(admitShared(off, {})).toBeNull();
    expect(admit(policy({ approved: 'x' }, false), 'bad ws', {})).toBeNull();
  });

  it('refuses with the validation message when the policy itself is invalid', () => {
    const e = admit(policy({}), 'a', {});
    expect(e?.code).toBe(Code.FAILED_PRECONDITION);
    expect(e?.message).toBe('resource_admission.required_labels must not be empty while enabled');
  });

  it('reads only own label properties', () => {
    const inherited = Object.create(labels('a')) as Record<string, string>;
    expect(admit(def, 'a', inherited)?.code).toBe(Code.FAILED_PRECONDITION);
    const parsed = JSON.parse(`{"__proto__":${JSON.stringify(labels('a'))}}`) as Record<string, string>;
    expect(admit(def, 'a', parsed)?.code).toBe(Code.FAILED_PRECONDITION);
    expect(admit(policy({ toString: 'x' }), 'a', {})?.code).toBe(Code.FAILED_PRECONDITION);
  });
});

describe('checkDriverConfig', () => {
  it('refuses a non-empty caller driver_config unless allowed; empty or absent always passes', () => {
    const e = checkDriverConfig(false, { actor_template: 'x' });
    expect(e?.code).toBe(Code.FAILED_PRECONDITION);
    expect(e?.message).toBe('caller driver config is disabled; a gateway administrator must enable allow_driver_config');
    expect(checkDriverConfig(true, { actor_template: 'x' })).toBeNull();
    expect(checkDriverConfig(false, {})).toBeNull();
    expect(checkDriverConfig(false, undefined)).toBeNull();
    expect(checkDriverConfig(false, JSON.parse('{"__proto__":{}}') as Record<string, unknown>)?.code).toBe(Code.FAILED_PRECONDITION);
  });

  it('is independent of the label opt-out', () => {
    for (const enabled of [true, false]) {
      const p = policy({ ...DEFAULT_REQUIRED_LABELS }, enabled);
      expect(checkDriverConfig(p.allowDriverConfig, { gpu_device_ids: null })?.code).toBe(Code.FAILED_PRECONDITION);
    }
  });
});

describe('template_labels', () => {
  it('parses "<namespace>/<name>" tables of concrete labels', () => {
    const tl = parseTemplateLabels({ 'default/shared': { [A]: 'true', [W]: 'team-a' }, 'ns-2/t.v1': {} }, WHERE, 'file');
    expect(tl['default/shared']).toEqual({ [A]: 'true', [W]: 'team-a' });
    expect(Object.getPrototypeOf(tl)).toBeNull();
    expect(Object.getPrototypeOf(tl['default/shared'])).toBeNull();
  });

  it('refuses bad refs, ${workspace}, bad labels and __proto__, naming the key and source', () => {
    const ws = configErr(() => parseTemplateLabels({ 'default/shared': { [W]: '${workspace}' } }, WHERE, 'file'));
    expect(ws.key).toBe('template_labels."default/shared"');
    expect(ws.source).toBe('file');
    expect(ws.message).toContain(`(from ${WHERE})`);
    expect(ws.message).toContain('${workspace}');
    expect(configErr(() => parseTemplateLabels({ shared: { [A]: 'true' } }, WHERE)).message).toContain('is not "<namespace>/<name>"');
    expect(configErr(() => parseTemplateLabels({ 'Bad_NS/x': {} }, WHERE)).message).toContain('is not "<namespace>/<name>"');
    expect(configErr(() => parseTemplateLabels({ 'a/b/c': {} }, WHERE)).message).toContain('is not "<namespace>/<name>"');
    expect(configErr(() => parseTemplateLabels({ 'd/t': { 'bad key': 'x' } }, WHERE)).message).toContain('invalid label key: bad key');
    expect(configErr(() => parseTemplateLabels({ 'd/t': { [A]: 'not valid' } }, WHERE)).message).toContain('invalid label value');
    expect(configErr(() => parseTemplateLabels({ 'd/t': { [A]: 1 } }, WHERE)).message).toContain('must be a string');
    expect(configErr(() => parseTemplateLabels(JSON.parse('{"__proto__":{"x":"y"}}'), WHERE)).message).toContain('"__proto__" is not allowed');
    expect(configErr(() => parseTemplateLabels(JSON.parse('{"d/t":{"__proto__":"y"}}'), WHERE)).message).toContain('"__proto__" is not allowed');
    expect(configErr(() => parseTemplateLabels('d/t', WHERE)).key).toBe('template_labels');
  });

  const def = defaultAdmissionConfig();

  it('take a template’s labels only from template_labels (v0.4 templates carry none)', () => {
    expect(attachRefusal('ns', 't', 'team-a', def, {})?.code).toBe(Code.FAILED_PRECONDITION);
    const tl = parseTemplateLabels({ 'ns/t': { [A]: 'true', [W]: 'team-a' } }, WHERE);
    expect(attachRefusal('ns', 't', 'team-a', def, tl)).toBeNull();
    // Only for that workspace, and only for that template.
    expect(attachRefusal('ns', 't', 'team-b', def, tl)?.message).toMatch(/has label openshell\.ai\/sandbox-attachable-workspace="team-a".*this sandbox is in workspace "team-b"/);
    expect(attachRefusal('ns', 'other', 'team-a', def, tl)?.code).toBe(Code.FAILED_PRECONDITION);
    expect(attachRefusal('other-ns', 't', 'team-a', def, tl)?.code).toBe(Code.FAILED_PRECONDITION);
    // Shared (no workspace label): every workspace.
    const shared = parseTemplateLabels({ 'ns/t': { [A]: 'true' } }, WHERE);
    expect(attachRefusal('ns', 't', 'team-x', def, shared)).toBeNull();
    expect(effectiveTemplateLabels('ns', 't', tl)).toEqual({ [A]: 'true', [W]: 'team-a' });
    expect(effectiveTemplateLabels('ns', 'nope', tl)).toEqual({});
  });

  it('never makes a driver-synthesized (content-named) template attachable, and names how to fix a refusal', () => {
    const name = 'sbx-tpl-0123456789abcdef0123';
    const tl = parseTemplateLabels({ [`ns/${name}`]: { [A]: 'true', [W]: 'team-a' } }, WHERE);
    expect(attachRefusal('ns', name, 'team-a', def, tl)?.message).toMatch(/was synthesized by the driver for other sandboxes/);
    expect(attachRefusal('ns', name, 'team-a', policy({}, false), tl)?.message).toMatch(/was synthesized by the driver/);
    // Only the exact synthesized shape: a look-alike operator name is judged by its labels.
    expect(attachRefusal('ns', 'sbx-tpl-mine', 'team-a', policy({}, false), {})).toBeNull();
    const e = attachRefusal('ns', 't', 'team-a', def, {});
    expect(e?.message).toMatch(
      /^external resource not admitted by required labels: ActorTemplate ns\/t needs label openshell\.ai\/sandbox-attachable="true" \(it has no such label\);.*template_labels\."ns\/t"/,
    );
    const bad = parseTemplateLabels({ 'ns/t': { [A]: 'true' } }, WHERE);
    expect(attachRefusal('ns', 't', 'bad ws', { ...def, resourceAdmission: { ...def.resourceAdmission } }, { ...bad, 'ns/t': { [A]: 'true', [W]: 'x' } })?.message).toMatch(/^resource not admitted: invalid workspace identity/);
    // Disabled policy: any pre-provisioned template.
    expect(attachRefusal('ns', 't', 'team-a', policy({}, false), {})).toBeNull();
  });
});
