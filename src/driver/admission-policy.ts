// OpenShell v0.1 resource admission, driver side: the operator's policy, the acknowledgement the driver
// reports to the gateway, and the label check for external resources a sandbox attaches.
//
// Facts come from upstream `crates/openshell-core/src/resource_admission.rs` (the OpenShell-named "variant
// A"; see /work/shared/reference/openshell-v0.1-addendum.md §1.1) and openshell-v0.1.md §2.5/§4.2. This is
// an independent implementation of the same rules and messages.
//
// Configuration: keys of the `[openshell.drivers.substrate]` table, the same table the gateway reads its own
// copy of this policy from, so one gateway.toml configures both sides and the acknowledgement matches.
//
//   allow_driver_config = false        # bool, default false. Lets callers send a non-empty
//                                      #   template.driver_config.substrate block (flag --allow-driver-config,
//                                      #   env OPENSHELL_SUBSTRATE_ALLOW_DRIVER_CONFIG).
//   [openshell.drivers.substrate.resource_admission]
//   enabled = true                     # bool, default true. false = every external resource is admitted.
//   required_labels = { "openshell.ai/sandbox-attachable" = "true",
//                       "openshell.ai/sandbox-attachable-workspace" = "${workspace}" }
//                                      # string -> string; a supplied map REPLACES these defaults. A value of
//                                      #   exactly "${workspace}" means "the sandbox's workspace".
//                                      # Flag --resource-admission / env OPENSHELL_SUBSTRATE_RESOURCE_ADMISSION
//                                      #   take the same table as JSON: {"enabled":true,"required_labels":{...}}.
//   [openshell.drivers.substrate.template_labels."<namespace>/<name>"]
//   "openshell.ai/sandbox-attachable" = "true"
//   "openshell.ai/sandbox-attachable-workspace" = "team-a"
//                                      # Labels the driver treats as carried by the pre-provisioned
//                                      #   ActorTemplate <namespace>/<name> (Substrate v0.4 ActorTemplates carry
//                                      #   no labels). They overlay the template's own metadata.labels. Concrete
//                                      #   values only: "${workspace}" is refused here. Flag --template-labels /
//                                      #   env OPENSHELL_SUBSTRATE_TEMPLATE_LABELS take JSON:
//                                      #   {"<namespace>/<name>":{"<label>":"<value>"}}.
//
// Rules (upstream `serde(default, deny_unknown_fields)` plus `validate()`): unknown keys inside
// resource_admission and wrong types are errors; required_labels must not be empty while enabled; keys must
// be valid Kubernetes label keys and not the driver-owned openshell.ai/managed-by, openshell.ai/gateway-id or
// openshell.ai/sandbox-workspace; values must be valid label values or exactly "${workspace}" (no partial
// substitution); while enabled at least one label must be a fixed (non-"${workspace}") approval label.
//
// The acknowledgement ("v1:" + upstream's serde JSON of the policy) is reported as
// resource_admission_policy in GetCapabilities. The gateway compares it at startup with its own table, and
// before every ValidateSandboxCreate / CreateSandbox / StartSandbox byte-for-byte with the first answer, so
// it is computed once at config load and never changes for the life of the process.
//
// Note on the default label names: upstream has a variant ("B") whose workspace label is
// `openshell.ai/workspace`; this driver matches variant A (`openshell.ai/sandbox-attachable-workspace`), the
// one the Kubernetes driver's tests and peer drivers use. Which one each v0.1.x tag ships is UNVERIFIED; an
// operator who configures required_labels explicitly (on both sides, from the same table) is unaffected.
import { ConfigError, type ConfigSource } from '../common/config.js';
import { failedPrecondition, type ApiError } from '../common/errors.js';
import { isRecord, ownGet, ownSet, PROTO_KEY } from '../common/own.js';
import { isDnsLabel, isDnsSubdomain } from '../common/dns.js';

/** A required label value that stands for the sandbox's workspace (whole value only). */
export const WORKSPACE_PLACEHOLDER = '${workspace}';

/** Driver-owned metadata labels that a policy may not require (upstream driver_utils.rs). */
export const RESERVED_LABEL_KEYS: readonly string[] = Object.freeze([
  'openshell.ai/managed-by',
  'openshell.ai/gateway-id',
  'openshell.ai/sandbox-workspace',
]);

/** Upstream's default required labels (OpenShell-named variant A). */
export const DEFAULT_REQUIRED_LABELS: Readonly<Record<string, string>> = Object.freeze({
  'openshell.ai/sandbox-attachable': 'true',
  'openshell.ai/sandbox-attachable-workspace': WORKSPACE_PLACEHOLDER,
});

export interface ResourceAdmissionConfig {
  enabled: boolean;
  /** label key → required value (or WORKSPACE_PLACEHOLDER). A null-prototype map when built by this module. */
  requiredLabels: Record<string, string>;
}

export interface DriverAdmissionConfig {
  allowDriverConfig: boolean;
  resourceAdmission: ResourceAdmissionConfig;
}

/** ns/name → labels the operator assigns to that pre-provisioned ActorTemplate. */
export type TemplateLabels = Record<string, Record<string, string>>;

function labelMap(entries: Iterable<[string, string]> = []): Record<string, string> {
  const m = Object.create(null) as Record<string, string>;
  for (const [k, v] of entries) ownSet(m, k, v);
  return m;
}

/** A fresh copy of upstream's default policy (allow_driver_config false, admission enabled, default labels). */
export function defaultAdmissionConfig(): DriverAdmissionConfig {
  return {
    allowDriverConfig: false,
    resourceAdmission: { enabled: true, requiredLabels: labelMap(Object.entries(DEFAULT_REQUIRED_LABELS)) },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Label syntax, as upstream's valid_label_value / valid_label_key accept it.

const ALNUM = /^[A-Za-z0-9]$/;

/** Upstream valid_label_value: "" or ≤63 chars of [A-Za-z0-9-_.] beginning and ending alphanumeric. */
export function isValidLabelValue(v: string): boolean {
  if (v === '') return true;
  return v.length <= 63 && ALNUM.test(v[0]!) && ALNUM.test(v[v.length - 1]!) && /^[A-Za-z0-9._-]+$/.test(v);
}

/**
 * Upstream valid_label_key: `[prefix/]name`, split at the first '/'. The name is a non-empty label value; the
 * prefix, when present, is ≤253 chars of dot-separated parts, each 1..63 chars of [a-z0-9-] beginning and
 * ending alphanumeric.
 */
export function isValidLabelKey(k: string): boolean {
  const slash = k.indexOf('/');
  const prefix = slash >= 0 ? k.slice(0, slash) : undefined;
  const name = slash >= 0 ? k.slice(slash + 1) : k;
  if (name === '' || !isValidLabelValue(name)) return false;
  if (prefix === undefined) return true;
  if (prefix === '' || prefix.length > 253) return false;
  return prefix.split('.').every((p) => p.length >= 1 && p.length <= 63 && /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(p));
}

/** Own entries of a label map, sorted by UTF-8 byte order (Rust BTreeMap<String, _> order). */
function sortedEntries(m: Record<string, string>): Array<[string, string]> {
  return Object.keys(m)
    .map((k): [string, string] => [k, m[k]!])
    .sort(([a], [b]) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
}

/** Upstream ResourceAdmissionConfig::validate: the first problem as upstream words it, or null. */
export function validateResourceAdmission(ra: ResourceAdmissionConfig): string | null {
  const entries = sortedEntries(ra.requiredLabels);
  if (ra.enabled && entries.length === 0) return 'resource_admission.required_labels must not be empty while enabled';
  for (const [key, value] of entries) {
    if (RESERVED_LABEL_KEYS.includes(key)) return `resource admission label key is reserved for driver-owned metadata: ${key}`;
    if (!isValidLabelKey(key)) return `invalid resource admission label key: ${key}`;
    if (value !== WORKSPACE_PLACEHOLDER && !isValidLabelValue(value)) {
      return `invalid resource admission label value for ${key}; only whole-value \${workspace} substitution is supported`;
    }
  }
  if (ra.enabled && entries.every(([, v]) => v === WORKSPACE_PLACEHOLDER)) {
    return 'resource_admission.required_labels must include a shared approval label';
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------------
// Parsing operator configuration (TOML tables, or JSON from a flag or the environment).

/** A short, safe description of an untrusted config value for a message. */
function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v);
  if (Array.isArray(v)) return 'an array';
  if (isRecord(v)) return 'a table';
  return String(v);
}

function configError(keyPath: string, where: string, source: ConfigSource | 'config', why: string): never {
  throw new ConfigError(keyPath, source, `invalid config ${keyPath} (from ${where}): ${why}`);
}

/** The string → string map at `keyPath`, refusing `__proto__`, non-string values and non-tables. */
function parseStringMap(v: unknown, keyPath: string, where: string, source: ConfigSource | 'config'): Record<string, string> {
  if (!isRecord(v)) configError(keyPath, where, source, 'must be a table of string values');
  const out = labelMap();
  for (const k of Object.keys(v)) {
    if (k === PROTO_KEY) configError(keyPath, where, source, `key "${PROTO_KEY}" is not allowed`);
    const val = v[k];
    if (typeof val !== 'string') configError(keyPath, where, source, `value of "${k}" must be a string`);
    ownSet(out, k, val);
  }
  return out;
}

/**
 * The `resource_admission` table (TOML value, or parsed JSON): `enabled` (bool, default true) and
 * `required_labels` (string map replacing the defaults when given). Unknown keys and wrong types are
 * errors, then upstream's validate() applies. Throws ConfigError naming the key path and `where`.
 */
export function parseResourceAdmission(value: unknown, where: string, source: ConfigSource | 'config' = 'config'): ResourceAdmissionConfig {
  const key = 'resource_admission';
  if (!isRecord(value)) configError(key, where, source, 'must be a table with keys enabled and required_labels');
  for (const k of Object.keys(value)) {
    if (k !== 'enabled' && k !== 'required_labels') {
      configError(`${key}.${k}`, where, source, `unknown field \`${k}\`, expected \`enabled\` or \`required_labels\``);
    }
  }
  const ra = defaultAdmissionConfig().resourceAdmission;
  const enabled = ownGet(value, 'enabled');
  if (enabled !== undefined) {
    if (typeof enabled !== 'boolean') configError(`${key}.enabled`, where, source, `${show(enabled)} is not a boolean (true/false)`);
    ra.enabled = enabled;
  }
  const labels = ownGet(value, 'required_labels');
  if (labels !== undefined) ra.requiredLabels = parseStringMap(labels, `${key}.required_labels`, where, source);
  const why = validateResourceAdmission(ra);
  if (why) configError(`${key}.required_labels`, where, source, why);
  return ra;
}

/** allow_driver_config as TOML gives it (a boolean; absent = false). */
export function parseAllowDriverConfig(value: unknown, where: string, source: ConfigSource | 'config' = 'config'): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') configError('allow_driver_config', where, source, `${show(value)} is not a boolean (true/false)`);
  return value;
}

/**
 * The admission policy from the `[openshell.drivers.substrate]` table's `allow_driver_config` and
 * `resource_admission` values (other keys of the table are not looked at). Absent keys take upstream's
 * defaults. Throws ConfigError naming the key path and `where` (e.g. "file /etc/openshell/gateway.toml").
 */
export function parseAdmissionTable(table: unknown, where: string, source: ConfigSource | 'config' = 'config'): DriverAdmissionConfig {
  if (table !== undefined && !isRecord(table)) configError('openshell.drivers.substrate', where, source, 'must be a table');
  const ra = ownGet(table, 'resource_admission');
  return {
    allowDriverConfig: parseAllowDriverConfig(ownGet(table, 'allow_driver_config'), where, source),
    resourceAdmission: ra === undefined ? defaultAdmissionConfig().resourceAdmission : parseResourceAdmission(ra, where, source),
  };
}

/**
 * The `template_labels` table: `"<namespace>/<name>"` → label map. Keys name a template (namespace a DNS-1123
 * label, name a DNS-1123 subdomain); labels must be valid keys and values, and concrete: "${workspace}" is
 * refused (a template's label names one workspace). Returns null-prototype maps.
 */
export function parseTemplateLabels(value: unknown, where: string, source: ConfigSource | 'config' = 'config'): TemplateLabels {
  const key = 'template_labels';
  if (!isRecord(value)) configError(key, where, source, 'must be a table of "<namespace>/<name>" = { label = "value", ... }');
  const out = Object.create(null) as TemplateLabels;
  for (const ref of Object.keys(value)) {
    const path = `${key}.${JSON.stringify(ref)}`;
    if (ref === PROTO_KEY) configError(key, where, source, `key "${PROTO_KEY}" is not allowed`);
    const parts = ref.split('/');
    if (parts.length !== 2 || !isDnsLabel(parts[0]!) || !isDnsSubdomain(parts[1]!)) {
      configError(path, where, source, `"${ref}" is not "<namespace>/<name>" of an ActorTemplate (namespace a DNS-1123 label, name a DNS-1123 subdomain), e.g. "default/${parts[parts.length - 1] || 'shared'}"`);
    }
    const labels = parseStringMap(value[ref], path, where, source);
    for (const [k, v] of Object.entries(labels)) {
      if (!isValidLabelKey(k)) configError(path, where, source, `invalid label key: ${k}`);
      if (v === WORKSPACE_PLACEHOLDER) {
        configError(path, where, source, `label ${k} = "${WORKSPACE_PLACEHOLDER}" is not allowed here; give the concrete workspace the template is for`);
      }
      if (!isValidLabelValue(v)) configError(path, where, source, `invalid label value for ${k}: ${show(v)}`);
    }
    ownSet(out, ref, labels);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// The acknowledgement.

/**
 * "v1:" + the JSON upstream's serde_json::to_string produces for DriverAdmissionConfig: compact, fields in
 * struct order, required_labels keys in byte order. (JSON.stringify escapes strings as serde_json does for
 * everything a valid policy can hold: validated keys and values are ASCII without quotes or backslashes.)
 */
export function admissionAcknowledgement(cfg: DriverAdmissionConfig): string {
  const labels = sortedEntries(cfg.resourceAdmission.requiredLabels)
    .map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`)
    .join(',');
  return (
    `v1:{"allow_driver_config":${cfg.allowDriverConfig ? 'true' : 'false'},` +
    `"resource_admission":{"enabled":${cfg.resourceAdmission.enabled ? 'true' : 'false'},"required_labels":{${labels}}}}`
  );
}

// ---------------------------------------------------------------------------------------------------------
// Admission.

/** Prefix of every refusal for a missing or mismatched required label (upstream's whole message). */
export const NOT_ADMITTED = 'external resource not admitted by required labels';
/** Upstream's refusal when the workspace identity is not a valid label value. */
export const INVALID_WORKSPACE = 'resource not admitted: invalid workspace identity';

/** Why labels were not admitted, for callers that word their own refusal (e.g. attachRefusal). */
export type AdmissionFailure =
  | { kind: 'invalid-policy'; message: string }
  | { kind: 'invalid-workspace' }
  /** `actual` is undefined when the label is missing (or not a string); `workspace` when expected came from ${workspace}. */
  | { kind: 'unmet'; key: string; expected: string; actual: string | undefined; workspace: boolean };

/**
 * Upstream admit_labels: the first unmet requirement in required_labels' byte order, or null when admitted.
 * `workspace` null = shared scope (admit_shared: "${workspace}" entries skipped). Reads only own string
 * properties of `labels` (they come from a resource, never trusted to be a plain object).
 */
export function admissionFailure(cfg: DriverAdmissionConfig, workspace: string | null, labels: unknown): AdmissionFailure | null {
  const ra = cfg.resourceAdmission;
  const invalid = validateResourceAdmission(ra);
  if (invalid) return { kind: 'invalid-policy', message: invalid };
  if (!ra.enabled) return null;
  for (const [key, required] of sortedEntries(ra.requiredLabels)) {
    let expected = required;
    const fromWorkspace = required === WORKSPACE_PLACEHOLDER;
    if (fromWorkspace) {
      if (workspace === null) continue;
      if (workspace === '' || !isValidLabelValue(workspace)) return { kind: 'invalid-workspace' };
      expected = workspace;
    }
    const got = ownGet(labels, key);
    if (got !== expected) {
      return { kind: 'unmet', key, expected, actual: typeof got === 'string' ? got : undefined, workspace: fromWorkspace };
    }
  }
  return null;
}

function refusalOf(f: AdmissionFailure): ApiError {
  switch (f.kind) {
    case 'invalid-policy':
      return failedPrecondition(f.message);
    case 'invalid-workspace':
      return failedPrecondition(INVALID_WORKSPACE);
    case 'unmet':
      return failedPrecondition(
        `${NOT_ADMITTED}: label ${f.key} must be ${JSON.stringify(f.expected)}${f.workspace ? " (the sandbox's workspace)" : ''}`,
      );
  }
}

/**
 * Workspace-scoped admission (upstream `admit`): every required label must be on `labels` with exactly the
 * required value, "${workspace}" standing for `workspace`. FAILED_PRECONDITION ApiError, or null when admitted
 * (always when the policy is disabled). `labels` must be read from the resource's authority, never from the
 * caller.
 */
export function admit(cfg: DriverAdmissionConfig, workspace: string, labels: Record<string, string> | undefined): ApiError | null {
  const f = admissionFailure(cfg, workspace, labels);
  return f ? refusalOf(f) : null;
}

/** Shared-scope admission (upstream `admit_shared`): fixed labels apply, "${workspace}" entries are skipped. */
export function admitShared(cfg: DriverAdmissionConfig, labels: Record<string, string> | undefined): ApiError | null {
  const f = admissionFailure(cfg, null, labels);
  return f ? refusalOf(f) : null;
}

/**
 * Upstream check_driver_config: a non-empty caller driver_config block is refused unless the operator set
 * allow_driver_config. An absent or empty block always passes.
 */
export function checkDriverConfig(allowed: boolean, driverConfig: Record<string, unknown> | undefined): ApiError | null {
  if (!allowed && isRecord(driverConfig) && Object.keys(driverConfig).length > 0) {
    return failedPrecondition('caller driver config is disabled; a gateway administrator must enable allow_driver_config');
  }
  return null;
}
