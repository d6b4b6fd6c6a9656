// Kubernetes name rules used by Substrate (internal/resources/actor.go) and the ActorTemplate CRD.

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function isDnsLabel(s: string): boolean {
  return s.length > 0 && s.length <= 63 && DNS1123_LABEL.test(s);
}

export function isDnsSubdomain(s: string): boolean {
  return s.length > 0 && s.length <= 253 && DNS1123_SUBDOMAIN.test(s);
}

/**
 * Upstream's ValidateActorID / ValidateAtespace. Returns the exact upstream message, or null when valid.
 * `what` is "actor_id" or "atespace".
 */
export function dnsLabelError(what: string, s: string): string | null {
  if (s.length > 63) return `invalid ${what}: must be no more than 63 characters`;
  if (!DNS1123_LABEL.test(s)) {
    return `invalid ${what}: must start and end with a lower case alphanumeric character, and consist only of lower case alphanumeric characters or '-'`;
  }
  return null;
}

const QUALIFIED_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** k8s IsQualifiedName: optional DNS subdomain prefix + '/' + name part of at most 63 characters. */
export function qualifiedNameError(key: string): string | null {
  const parts = key.split('/');
  let name = key;
  if (parts.length === 2) {
    const [prefix, n] = parts as [string, string];
    if (prefix.length === 0) return 'prefix part must be non-empty';
    if (!isDnsSubdomain(prefix)) return 'prefix part must be a lowercase RFC 1123 subdomain';
    name = n;
  } else if (parts.length > 2) {
    return "a qualified name must consist of alphanumeric characters, '-', '_' or '.', with an optional DNS subdomain prefix and '/'";
  }
  if (name.length === 0) return 'name part must be non-empty';
  if (name.length > 63) return 'name part must be no more than 63 characters';
  if (!QUALIFIED_NAME_PART.test(name)) {
    return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
  }
  return null;
}

/** k8s IsValidLabelValue. */
export function labelValueError(v: string): string | null {
  if (v.length > 63) return 'must be no more than 63 characters';
  if (!LABEL_VALUE.test(v)) {
    return "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
  }
  return null;
}

const DNS_LABEL_SRC = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const DNS_SUBDOMAIN_SRC = '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*';

/** apimachinery IsDNS1123Label messages (what upstream's k8s-short-name format reports). */
export function dnsLabelMessages(v: string): string[] {
  const out: string[] = [];
  if (v.length > 63) out.push('must be no more than 63 characters');
  if (!DNS1123_LABEL.test(v)) {
    out.push(
      `a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '${DNS_LABEL_SRC}')`,
    );
  }
  return out;
}

/** apimachinery IsDNS1123Subdomain messages (k8s-long-name). */
export function dnsSubdomainMessages(v: string): string[] {
  const out: string[] = [];
  if (v.length > 253) out.push('must be no more than 253 characters');
  if (!DNS1123_SUBDOMAIN.test(v)) {
    out.push(
      `a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '${DNS_SUBDOMAIN_SRC}')`,
    );
  }
  return out;
}
