// OpenShell v0.1 extension negotiation (shared/reference/openshell-v0.1.md §2.2-2.4), driver side.
//
// A v0.1 gateway sends its PeerMetadata in GetCapabilitiesRequest.gateway and requires ours in the answer's
// `extension`; a 0.0.x gateway sends nothing and ignores the field. The gateway's `negotiate()` checks our
// metadata; we check theirs by the same rules (text and capability-name shape, protocol major, each side's
// requirements met by the other) and answer FAILED_PRECONDITION naming what is wrong.
import type { PeerMetadata } from '../gen/extension.js';
import { failedPrecondition, type ApiError } from '../common/errors.js';

export const PROTOCOL_MAJOR = 1;
export const PROTOCOL_MINOR = 0;
/** Every compute extension must support it; the gateway requires it. */
export const CONTRACT_CAPABILITY = 'openshell.compute.contract';
/** The gateway can mint launch authentication; we consume it when sent (not required: see README). */
export const LAUNCH_AUTH_CAPABILITY = 'openshell.compute.launch-authentication';
export const IMPLEMENTATION_NAME = 'openshell-driver-substrate';

const MAX_TEXT_BYTES = 128;
const MAX_CAPABILITIES = 128;
const CAPABILITY_PREFIX = 'openshell.';
const SEGMENT = /^[a-z0-9-]+$/;

/** What the driver says about itself in GetCapabilitiesResponse.extension. */
export function driverMetadata(version: string): PeerMetadata {
  return {
    protocolVersion: { major: PROTOCOL_MAJOR, minor: PROTOCOL_MINOR },
    implementationName: IMPLEMENTATION_NAME,
    implementationVersion: version,
    supportedCapabilities: [CONTRACT_CAPABILITY, LAUNCH_AUTH_CAPABILITY],
    requiredCapabilities: [CONTRACT_CAPABILITY],
  };
}

function shown(s: string): string {
  const cut = s.length > 40 ? `${s.slice(0, 40)}…` : s;
  return JSON.stringify(cut);
}

/** Upstream validate_text: non-blank after trim, at most 128 bytes, no control characters. */
function textProblem(field: string, v: string): string | null {
  if (v.trim() === '') return `${field} is empty`;
  const bytes = Buffer.byteLength(v, 'utf8');
  if (bytes > MAX_TEXT_BYTES) return `${field} is ${bytes} bytes; at most ${MAX_TEXT_BYTES} are allowed`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(v)) return `${field} contains a control character`;
  return null;
}

/** Upstream valid_capability: ≤128 bytes, `openshell.` prefix, ≥3 dot-separated [a-z0-9-]+ segments. */
export function capabilityProblem(c: string): string | null {
  if (Buffer.byteLength(c, 'utf8') > MAX_TEXT_BYTES) return `capability ${shown(c)} is longer than ${MAX_TEXT_BYTES} bytes`;
  if (!c.startsWith(CAPABILITY_PREFIX)) return `capability ${shown(c)} does not start with "${CAPABILITY_PREFIX}"`;
  const parts = c.split('.');
  if (parts.length < 3 || parts.some((p) => !SEGMENT.test(p))) {
    return `capability ${shown(c)} is not at least three dot-separated segments of lowercase letters, digits and "-"`;
  }
  return null;
}

function listProblem(field: string, list: string[]): string | null {
  if (list.length > MAX_CAPABILITIES) return `${field} has ${list.length} entries; at most ${MAX_CAPABILITIES} are allowed`;
  const seen = new Set<string>();
  for (const c of list) {
    const p = capabilityProblem(c);
    if (p) return `${field}: ${p}`;
    if (seen.has(c)) return `${field} lists ${shown(c)} twice`;
    seen.add(c);
  }
  return null;
}

/**
 * Checks a v0.1 gateway's metadata against ours. null = compatible; otherwise FAILED_PRECONDITION with a
 * message that says what to change (the gateway logs it and refuses to start).
 */
export function negotiationRefusal(gateway: PeerMetadata, ours: PeerMetadata): ApiError | null {
  const fail = (why: string) =>
    failedPrecondition(`compute extension negotiation failed: gateway metadata ${why}; use an OpenShell gateway that speaks extension protocol ${PROTOCOL_MAJOR}.x (v0.1 or later)`);
  const v = gateway.protocolVersion;
  if (!v) return fail('has no protocol_version');
  if (v.major !== PROTOCOL_MAJOR) {
    return failedPrecondition(
      `compute extension negotiation failed: the gateway speaks extension protocol ${v.major}.${v.minor} and this driver speaks ${PROTOCOL_MAJOR}.${PROTOCOL_MINOR}; major versions must match (upgrade whichever side is older)`,
    );
  }
  for (const [field, value] of [
    ['implementation_name', gateway.implementationName],
    ['implementation_version', gateway.implementationVersion],
  ] as const) {
    const p = textProblem(field, value);
    if (p) return fail(p);
  }
  for (const [field, list] of [
    ['supported_capabilities', gateway.supportedCapabilities],
    ['required_capabilities', gateway.requiredCapabilities],
  ] as const) {
    const p = listProblem(field, list);
    if (p) return fail(p);
  }
  const missingHere = gateway.requiredCapabilities.filter((c) => !ours.supportedCapabilities.includes(c));
  if (missingHere.length > 0) {
    return failedPrecondition(
      `compute extension negotiation failed: the gateway requires ${missingHere.map((c) => JSON.stringify(c)).join(', ')}, which ${IMPLEMENTATION_NAME} ${ours.implementationVersion} does not support (it supports ${ours.supportedCapabilities.join(', ')}); upgrade the driver`,
    );
  }
  const missingThere = ours.requiredCapabilities.filter((c) => !gateway.supportedCapabilities.includes(c));
  if (missingThere.length > 0) {
    return failedPrecondition(
      `compute extension negotiation failed: this driver requires ${missingThere.map((c) => JSON.stringify(c)).join(', ')}, which the gateway does not advertise; upgrade the gateway`,
    );
  }
  return null;
}
