// Actor egress policies of the local Substrate (v0.4): at most one EgressPolicy per actor, named "default",
// nested under the actor (Get/Create/Update/DeleteActorEgressPolicy), stored in the ResourceTable
// `egress_policies` keyed by the actor's atespace and name. Schema, defaults, validation and messages follow
// upstream (shared/reference/substrate-v0.4-addendum.md §5; apivalidation/egress_policy.go and
// controlapi/egress_policy.go): http ports default to 80 and https ports to 443 before validation; a
// Kubernetes field.ErrorList aggregate as INVALID_ARGUMENT; NOT_FOUND "EgressPolicy for actor %s not found" (get)
// and "EgressPolicy not found"; ALREADY_EXISTS "EgressPolicy already exists"; ABORTED "EgressPolicy UID conflict" /
// "EgressPolicy version conflict"; INVALID_ARGUMENT "EgressPolicy UID and version are required" (update);
// FAILED_PRECONDITION "parent Actor does not exist". One deliberate difference: an invalid credential_uri is
// reported without its value (credential URIs are never put in errors or logs here).
//
// Enforcement on one machine (egressFor): the only destinations a sandbox may reach are host loopback ports, through
// the runtime's hub (src/local/runtime/types.ts EgressRule; "the network stays home"). So a rule whose hostnames
// include `localhost` allows those loopback port numbers. Everything else is a valid policy that the local
// Substrate cannot route: nothing leaves the machine. Not mapped either, with a note: a `localhost` rule on every
// port (all ports of the host is not a destination this runtime opens), and a `localhost` rule with effects
// (credential injection needs upstream's MITM egress gateway; v0.4.0's own gateway answers 501 for actor_jwt;
// a plain port forward would pass the placeholder header instead of the credential). No policy: no egress.
import type Database from 'better-sqlite3';
import { isIP } from 'node:net';
import * as pb from '../gen/ateapi.js';
import { aborted, alreadyExists, failedPrecondition, invalid, notFound, ApiError, Code } from '../common/errors.js';
import { logger } from '../common/log.js';
import type { ControlApi } from './api.js';
import { bumped, checkShortName, newMetadata, required } from './meta.js';
import { ResourceTable, type Codec } from './table.js';
import type { EgressRule as RuntimeEgressRule } from './runtime/types.js';
import { collect, throwAggregate } from './atespaces.js';

const log = logger('local.egress');

export const EGRESS_POLICY_NAME = 'default';
export const MAX_RULES = 256;
export const MAX_HOSTNAMES = 256;
export const MAX_PORT_NUMBERS = 16;
export const MAX_REPLACE_HEADERS = 16;
export const MAX_AUDIENCES = 16;
export const MAX_AUDIENCE_LENGTH = 512;
export const MIN_JWT_EXPIRATION_SECONDS = 300;
export const MAX_JWT_EXPIRATION_SECONDS = 3600;
export const DEFAULT_HTTP_PORT = 80;
export const DEFAULT_HTTPS_PORT = 443;

/** The hostname that names this machine's loopback: the one destination the local Substrate routes. */
export const LOOPBACK_HOSTNAME = 'localhost';

// ---------------------------------------------------------------------------------------------------------
// Validation (field paths and messages rendered as Kubernetes field.Error does)

const q = (v: string) => JSON.stringify(v);
const invalidAt = (path: string, value: string | number, detail: string) =>
  `${path}: Invalid value: ${typeof value === 'string' ? q(value) : value}: ${detail}`;
const requiredAt = (path: string, detail?: string) => `${path}: Required value${detail ? `: ${detail}` : ''}`;
const tooMany = (path: string, n: number, max: number) => `${path}: Too many: ${n}: must have at most ${max} items`;
const duplicate = (path: string, value: string | number) => `${path}: Duplicate value: ${typeof value === 'string' ? q(value) : value}`;
const union = (path: string, set: string[], all: string[]) =>
  set.length === 0
    ? invalidAt(path, '', `must specify one of: ${all.map((f) => `\`${f}\``).join(', ')}`)
    : invalidAt(path, `{${set.join(', ')}}`, `must specify exactly one of: ${all.map((f) => `\`${f}\``).join(', ')}`);

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * upstream's egresspolicy.ParseHostnamePattern: "*" alone, or a lowercase RFC 1123 name (no trailing dot, no IP
 * literal, no port, no URL) optionally prefixed with "*." standing for exactly one complete leftmost label.
 */
export function isHostnamePattern(raw: string): boolean {
  if (raw === '*') return true;
  const name = raw.startsWith('*.') ? raw.slice(2) : raw;
  if (name.length === 0 || name.length > 253) return false;
  if (isIP(name) !== 0) return false;
  return name.split('.').every((l) => l.length <= 63 && DNS_LABEL.test(l));
}

function validHeaderName(v: string): boolean {
  return /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/.test(v);
}

function validHeaderValue(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c !== 0x09 && (c < 0x20 || c === 0x7f)) return false;
  }
  return true;
}

/** ate-secret://<provider-class>/<provider-name>/<provider-specific-tail>, as upstream's validCredentialURI. */
export function validCredentialUri(raw: string): boolean {
  const m = /^ate-secret:\/\/([^/?#]*)(\/[^?#]*)?$/.exec(raw);
  if (!m) return false;
  const host = m[1]!;
  const path = m[2] ?? '';
  if (!host || host.includes('@') || host.includes(':') || host.length > 253) return false;
  if (!host.split('.').every((l) => l.length <= 63 && DNS_LABEL.test(l))) return false;
  if (path.includes('%') || !path.startsWith('/') || path.endsWith('/')) return false;
  const parts = path.slice(1).split('/');
  return parts.length >= 2 && parts.every((p) => p !== '');
}

const chars = (s: string) => [...s].length;

/** What a rule matches on: its member, hostnames and ports (member empty when no member is set). */
function ruleMatch(rule: pb.EgressRule): { member: '' | 'http' | 'https' | 'tls_passthrough'; hostnames: string[]; ports?: pb.Ports } {
  if (rule.http) return { member: 'http', hostnames: rule.http.hostnames, ports: rule.http.ports };
  if (rule.https) return { member: 'https', hostnames: rule.https.hostnames, ports: rule.https.ports };
  if (rule.tlsPassthrough) return { member: 'tls_passthrough', hostnames: rule.tlsPassthrough.hostnames, ports: rule.tlsPassthrough.ports };
  return { member: '', hostnames: [] };
}

/** Defaults upstream applies before validation: http ports 80, https ports 443 (tls_passthrough has none). */
export function applyDefaults(rules: pb.EgressRule[]): void {
  for (const r of rules) {
    if (r.http && !r.http.ports) r.http.ports = { numbers: [DEFAULT_HTTP_PORT] };
    if (r.https && !r.https.ports) r.https.ports = { numbers: [DEFAULT_HTTPS_PORT] };
  }
}

function validateHostnames(path: string, hostnames: string[], errs: string[]): void {
  if (hostnames.length === 0) {
    errs.push(requiredAt(path));
    return;
  }
  if (hostnames.length > MAX_HOSTNAMES) errs.push(tooMany(path, hostnames.length, MAX_HOSTNAMES));
  const seen = new Set<string>();
  hostnames.forEach((h, j) => {
    const p = `${path}[${j}]`;
    if (seen.has(h)) errs.push(duplicate(p, h));
    seen.add(h);
    if (h === '') errs.push(requiredAt(p));
    else if (!isHostnamePattern(h)) errs.push(invalidAt(p, h, 'must be a DNS hostname, optionally with a complete leftmost-label wildcard, or "*"'));
  });
}

function validatePorts(path: string, ports: pb.Ports | undefined, requiredPorts: boolean, errs: string[]): void {
  if (!ports) {
    if (requiredPorts) errs.push(requiredAt(path));
    return;
  }
  const set = [...(ports.all ? ['all'] : []), ...(ports.numbers.length ? ['numbers'] : [])];
  if (set.length !== 1) {
    errs.push(union(path, set, ['all', 'numbers']));
    if (set.length === 0) return;
  }
  const np = `${path}.numbers`;
  if (ports.numbers.length > MAX_PORT_NUMBERS) errs.push(tooMany(np, ports.numbers.length, MAX_PORT_NUMBERS));
  const seen = new Set<number>();
  ports.numbers.forEach((n, k) => {
    const p = `${np}[${k}]`;
    if (seen.has(n)) errs.push(duplicate(p, n));
    seen.add(n);
    if (n < 1) errs.push(invalidAt(p, n, 'must be greater than or equal to 1'));
    else if (n > 65535) errs.push(invalidAt(p, n, 'must be less than or equal to 65535'));
  });
}

function validateEffects(path: string, effects: pb.HttpRuleEffects | undefined, errs: string[]): void {
  if (!effects) return;
  const headers = effects.replaceHeaders;
  if (headers.length === 0) {
    errs.push(requiredAt(path, 'at least one effect must be specified'));
    return;
  }
  const hp = `${path}.replace_headers`;
  if (headers.length > MAX_REPLACE_HEADERS) errs.push(tooMany(hp, headers.length, MAX_REPLACE_HEADERS));
  const seen = new Set<string>();
  headers.forEach((h, k) => {
    const p = `${hp}[${k}]`;
    const norm = h.header.toLowerCase();
    if (h.header && seen.has(norm)) errs.push(duplicate(`${p}.header`, h.header));
    seen.add(norm);
    if (!h.header) errs.push(requiredAt(`${p}.header`));
    else if (!validHeaderName(h.header)) errs.push(invalidAt(`${p}.header`, h.header, 'must be an HTTP header name'));
    if (!validHeaderValue(h.prefix)) errs.push(invalidAt(`${p}.prefix`, h.prefix, 'must be a valid HTTP field value prefix'));
    const members = [...(h.credentialUri ? ['credential_uri'] : []), ...(h.actorJwt ? ['actor_jwt'] : [])];
    if (members.length !== 1) errs.push(union(p, members, ['credential_uri', 'actor_jwt']));
    // The value is left out: a credential URI names a secret and never goes into an error.
    if (h.credentialUri && !validCredentialUri(h.credentialUri)) {
      errs.push(`${p}.credential_uri: Invalid value: must be ate-secret://<provider-class>/<provider-name>/<provider-specific-tail>`);
    }
    if (h.actorJwt) validateActorJwt(`${p}.actor_jwt`, h.actorJwt, errs);
  });
}

function validateActorJwt(path: string, src: pb.ActorJWTSource, errs: string[]): void {
  const ap = `${path}.audiences`;
  if (src.audiences.length === 0) errs.push(requiredAt(ap));
  else {
    if (src.audiences.length > MAX_AUDIENCES) errs.push(tooMany(ap, src.audiences.length, MAX_AUDIENCES));
    const seen = new Set<string>();
    src.audiences.forEach((a, k) => {
      const p = `${ap}[${k}]`;
      if (seen.has(a)) errs.push(duplicate(p, a));
      seen.add(a);
      if (chars(a) < 1) errs.push(`${p}: Too short: may not be less than 1 characters`);
      else if (chars(a) > MAX_AUDIENCE_LENGTH) errs.push(`${p}: Too long: may not be more than ${MAX_AUDIENCE_LENGTH} characters`);
    });
  }
  const ep = `${path}.expiration_seconds`;
  const s = src.expirationSeconds;
  if (!s) errs.push(requiredAt(ep));
  else if (s < MIN_JWT_EXPIRATION_SECONDS) errs.push(invalidAt(ep, s, `must be greater than or equal to ${MIN_JWT_EXPIRATION_SECONDS}`));
  else if (s > MAX_JWT_EXPIRATION_SECONDS) errs.push(invalidAt(ep, s, `must be less than or equal to ${MAX_JWT_EXPIRATION_SECONDS}`));
}

/**
 * Validates rules (defaults already applied) under `path` (e.g. "egress_policy.rules"); returns the messages.
 * Includes upstream's tie check: no two rules may match the same pattern on the same port (or both on every
 * port), whatever their protocols.
 */
export function validateRules(path: string, rules: pb.EgressRule[]): string[] {
  const errs: string[] = [];
  if (rules.length > MAX_RULES) errs.push(tooMany(path, rules.length, MAX_RULES));
  rules.forEach((rule, i) => {
    const rp = `${path}[${i}]`;
    const members = [...(rule.http ? ['http'] : []), ...(rule.https ? ['https'] : []), ...(rule.tlsPassthrough ? ['tls_passthrough'] : [])];
    if (members.length !== 1) errs.push(union(rp, members, ['http', 'https', 'tls_passthrough']));
    if (rule.http) {
      validateHostnames(`${rp}.http.hostnames`, rule.http.hostnames, errs);
      validatePorts(`${rp}.http.ports`, rule.http.ports, false, errs);
      validateEffects(`${rp}.http.effects`, rule.http.effects, errs);
    }
    if (rule.https) {
      validateHostnames(`${rp}.https.hostnames`, rule.https.hostnames, errs);
      validatePorts(`${rp}.https.ports`, rule.https.ports, false, errs);
      validateEffects(`${rp}.https.effects`, rule.https.effects, errs);
    }
    if (rule.tlsPassthrough) {
      validateHostnames(`${rp}.tls_passthrough.hostnames`, rule.tlsPassthrough.hostnames, errs);
      validatePorts(`${rp}.tls_passthrough.ports`, rule.tlsPassthrough.ports, true, errs);
    }
  });
  // Ties (upstream's ValidateCustom_EgressPolicy_Rules).
  const seen = new Map<string, { rule: number; path: string }>();
  rules.forEach((rule, i) => {
    const { member, hostnames, ports } = ruleMatch(rule);
    if (!member) return;
    const keys = ports?.all ? ['every port'] : (ports?.numbers ?? []).map((n) => `port ${n}`);
    hostnames.forEach((pattern, j) => {
      const p = `${path}[${i}].${member}.hostnames[${j}]`;
      for (const port of keys) {
        const k = `${pattern}\u0000${port}`;
        const prior = seen.get(k);
        if (!prior) seen.set(k, { rule: i, path: p });
        else if (prior.rule !== i) errs.push(invalidAt(p, pattern, `ties with ${prior.path} on ${port}`));
      }
    });
  });
  return errs;
}

/** An ObjectRef to an actor: atespace and name required, both resource names. */
function checkActorRef(path: string, ref: pb.ObjectRef | undefined, errs: string[]): void {
  if (!ref) {
    errs.push(requiredAt(path));
    return;
  }
  collect(errs, () => checkShortName(`${path}.atespace`, ref.atespace));
  collect(errs, () => checkShortName(`${path}.name`, ref.name));
}

/** The request-level checks shared by create and update. */
function validatePolicyRequest(actor: pb.ObjectRef | undefined, policy: pb.EgressPolicy | undefined, errs: string[]): void {
  checkActorRef('actor', actor, errs);
  if (!policy) {
    errs.push(requiredAt('egress_policy'));
    return;
  }
  const md = policy.metadata;
  if (!md) errs.push(requiredAt('egress_policy.metadata'));
  else {
    if (!md.atespace) errs.push(requiredAt('egress_policy.metadata.atespace'));
    else if (actor?.atespace && md.atespace !== actor.atespace) errs.push(invalidAt('egress_policy.metadata.atespace', md.atespace, 'must match actor.atespace'));
    if (!md.name) errs.push(requiredAt('egress_policy.metadata.name'));
    else if (md.name !== EGRESS_POLICY_NAME) errs.push(invalidAt('egress_policy.metadata.name', md.name, `must be "${EGRESS_POLICY_NAME}"`));
  }
  errs.push(...validateRules('egress_policy.rules', policy.rules));
}

// ---------------------------------------------------------------------------------------------------------
// Storage

/** A row: the policy, keyed by its actor (metadata.name of the row is the actor's name, not "default"). */
interface Row {
  metadata: { atespace: string; name: string; version: number };
  policy: pb.EgressPolicy;
}

const rowCodec: Codec<Row> = {
  toJSON: (r) => ({ actor: r.metadata.name, policy: pb.EgressPolicy.toJSON(r.policy) }),
  fromJSON: (o) => {
    const j = o as { actor?: unknown; policy?: unknown };
    const policy = pb.EgressPolicy.fromJSON(j.policy);
    return { metadata: { atespace: policy.metadata?.atespace ?? '', name: String(j.actor ?? ''), version: policy.metadata?.version ?? 0 }, policy };
  },
};

const rowOf = (actor: string, policy: pb.EgressPolicy): Row => ({
  metadata: { atespace: policy.metadata!.atespace, name: actor, version: policy.metadata!.version },
  policy,
});

/** What egressFor decided for one actor: the loopback ports it may reach, and why other rules route nowhere. */
export interface EgressPlan {
  allow: RuntimeEgressRule[];
  notes: string[];
}

export class EgressPolicies {
  private readonly table: ResourceTable<Row>;

  constructor(
    db: Database.Database,
    /** The parent actor must exist (the facade: src/local/api.ts). */
    private readonly api: Pick<ControlApi, 'getActor'>,
  ) {
    this.table = new ResourceTable(db, 'egress_policies', rowCodec);
  }

  private async actorExists(ref: pb.ObjectRef): Promise<boolean> {
    try {
      await this.api.getActor({ actor: { atespace: ref.atespace, name: ref.name } });
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.code === Code.NOT_FOUND) return false;
      throw e;
    }
  }

  async getActorEgressPolicy(r: pb.GetActorEgressPolicyRequest): Promise<pb.EgressPolicy> {
    const errs: string[] = [];
    checkActorRef('actor', r.actor, errs);
    throwAggregate(errs);
    const { atespace, name } = r.actor!;
    const row = this.table.get(atespace, name);
    if (!row) throw notFound(`EgressPolicy for actor ${atespace}/${name} not found`);
    return row.policy;
  }

  async createActorEgressPolicy(r: pb.CreateActorEgressPolicyRequest): Promise<pb.EgressPolicy> {
    const given = r.egressPolicy ? pb.EgressPolicy.fromPartial(r.egressPolicy) : undefined;
    if (given) applyDefaults(given.rules);
    const errs: string[] = [];
    validatePolicyRequest(r.actor, given, errs);
    throwAggregate(errs);
    const actor = r.actor!;
    if (!(await this.actorExists(actor))) throw failedPrecondition('parent Actor does not exist');
    // Only atespace and name are taken from the caller's metadata; uid, version and times are the server's.
    const policy: pb.EgressPolicy = { metadata: newMetadata(actor.atespace, EGRESS_POLICY_NAME), rules: given!.rules };
    if (!this.table.insert(rowOf(actor.name, policy))) throw alreadyExists('EgressPolicy already exists');
    return policy;
  }

  async updateActorEgressPolicy(r: pb.UpdateActorEgressPolicyRequest): Promise<pb.EgressPolicy> {
    const given = r.egressPolicy ? pb.EgressPolicy.fromPartial(r.egressPolicy) : undefined;
    if (given) applyDefaults(given.rules);
    const errs: string[] = [];
    validatePolicyRequest(r.actor, given, errs);
    throwAggregate(errs);
    const actor = r.actor!;
    const md = given!.metadata!;
    if (!md.uid || !md.version) throw invalid('EgressPolicy UID and version are required');
    const row = this.table.get(actor.atespace, actor.name);
    if (!row) throw notFound('EgressPolicy not found');
    const stored = row.policy.metadata!;
    if (md.uid !== stored.uid) throw aborted('EgressPolicy UID conflict');
    if (md.version !== stored.version) throw aborted('EgressPolicy version conflict');
    if (!(await this.actorExists(actor))) throw failedPrecondition('parent Actor does not exist');
    // A whole replace: the rules are the request's, the metadata the stored one, one version on.
    const policy: pb.EgressPolicy = { metadata: bumped(stored), rules: given!.rules };
    try {
      this.table.replace(rowOf(actor.name, policy), stored.version);
    } catch (e) {
      if (e instanceof ApiError && e.code === Code.ABORTED) throw aborted('EgressPolicy version conflict');
      throw e;
    }
    return policy;
  }

  async deleteActorEgressPolicy(r: pb.DeleteActorEgressPolicyRequest): Promise<pb.EgressPolicy> {
    const errs: string[] = [];
    checkActorRef('actor', r.actor, errs);
    throwAggregate(errs);
    const { atespace, name } = r.actor!;
    const row = this.table.get(atespace, name);
    if (!row) throw notFound('EgressPolicy not found');
    const stored = row.policy.metadata!;
    if (r.options?.uid && r.options.uid !== stored.uid) throw aborted('EgressPolicy UID conflict');
    if (r.options?.version && r.options.version !== stored.version) throw aborted('EgressPolicy version conflict');
    if (!this.table.remove(atespace, name, stored.version)) {
      if (!this.table.get(atespace, name)) throw notFound('EgressPolicy not found');
      throw aborted('EgressPolicy version conflict');
    }
    return row.policy;
  }

  /** Removes an actor's policy with the actor (the actors module calls it on delete); true when there was one. */
  deleteForActor(atespace: string, name: string): boolean {
    return this.table.remove(atespace, name);
  }

  /** The loopback ports the actor's workload may reach, and notes on every rule that routes nowhere. */
  async egressPlan(atespace: string, name: string): Promise<EgressPlan> {
    const row = this.table.get(atespace, name);
    if (!row) return { allow: [], notes: [] };
    const ports = new Set<number>();
    const notes: string[] = [];
    row.policy.rules.forEach((rule, i) => {
      const { member, hostnames, ports: p } = ruleMatch(rule);
      if (!member) return;
      const loopback = hostnames.includes(LOOPBACK_HOSTNAME);
      const others = hostnames.filter((h) => h !== LOOPBACK_HOSTNAME);
      if (others.length) {
        notes.push(`rules[${i}].${member}: ${others.join(', ')}: not routed; the local Substrate reaches only ${LOOPBACK_HOSTNAME} (host loopback ports), nothing leaves this machine`);
      }
      if (!loopback) return;
      const effects = rule.http?.effects ?? rule.https?.effects;
      if (effects && effects.replaceHeaders.length > 0) {
        notes.push(`rules[${i}].${member}: ${LOOPBACK_HOSTNAME} not mapped: the rule replaces request headers with credentials, which the local Substrate cannot inject (no MITM egress gateway)`);
        return;
      }
      if (p?.all) {
        notes.push(`rules[${i}].${member}: ${LOOPBACK_HOSTNAME} on every port not mapped: the local Substrate opens loopback ports by number only`);
        return;
      }
      const numbers = p?.numbers.length ? p.numbers : rule.http ? [DEFAULT_HTTP_PORT] : rule.https ? [DEFAULT_HTTPS_PORT] : [];
      for (const n of numbers) if (n >= 1 && n <= 65535) ports.add(n);
    });
    return { allow: [...ports].sort((a, b) => a - b).map((port) => ({ host: '127.0.0.1' as const, port })), notes };
  }

  /** The runtime egress rules for the actor's workload (WorkloadSpec.egress); no policy: none. */
  async egressFor(atespace: string, name: string): Promise<RuntimeEgressRule[]> {
    const plan = await this.egressPlan(atespace, name);
    for (const note of plan.notes) {
      if (note.includes('not mapped')) log.warn('egress rule for localhost not mapped', { atespace, actor: name, note });
      else log.info('egress rule not routed', { atespace, actor: name, note });
    }
    return plan.allow;
  }
}
