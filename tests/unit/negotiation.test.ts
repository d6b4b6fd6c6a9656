// OpenShell v0.1 extension negotiation, driver side: our metadata passes upstream's negotiate() rules, and a
// gateway's metadata is checked by the same rules (FAILED_PRECONDITION naming the problem).
import { describe, expect, it } from 'vitest';
import { Code } from '../../src/common/errors.js';
import type { PeerMetadata } from '../../src/gen/extension.js';
import { gatewayMetadata } from '../integration/gateway/harness.js';
import { capabilityProblem, CONTRACT_CAPABILITY, driverMetadata, negotiationRefusal } from '../../src/driver/negotiation.js';

const ours = driverMetadata('1.2.3');
/** What an OpenShell v0.1 gateway sends, with `over` changed. */
const gateway = (over: Partial<PeerMetadata> = {}): PeerMetadata => ({ ...gatewayMetadata(), ...over });

describe('our metadata', () => {
  it("satisfies upstream's negotiate() checks on an extension", () => {
    expect(ours.protocolVersion).toEqual({ major: 1, minor: 0 });
    expect(ours.implementationName.trim()).not.toBe('');
    expect(Buffer.byteLength(ours.implementationName)).toBeLessThanOrEqual(128);
    expect(ours.supportedCapabilities).toContain(CONTRACT_CAPABILITY);
    for (const c of [...ours.supportedCapabilities, ...ours.requiredCapabilities]) expect(capabilityProblem(c)).toBeNull();
    // Only what the driver truly needs: the contract, which every gateway advertises.
    expect(ours.requiredCapabilities).toEqual([CONTRACT_CAPABILITY]);
  });
});

describe("a gateway's metadata", () => {
  it('is accepted when compatible, with minor skew and either supported-capability set upstream ships', () => {
    expect(negotiationRefusal(gateway(), ours)).toBeNull();
    expect(negotiationRefusal(gateway({ protocolVersion: { major: 1, minor: 99 } }), ours)).toBeNull();
    expect(negotiationRefusal(gateway({ supportedCapabilities: [CONTRACT_CAPABILITY] }), ours)).toBeNull();
  });

  const refused: Array<[string, Partial<PeerMetadata>, RegExp]> = [
    ['another major version', { protocolVersion: { major: 2, minor: 0 } }, /extension protocol 2\.0 .* 1\.0; major versions must match/],
    ['no protocol version', { protocolVersion: undefined }, /has no protocol_version/],
    ['a blank implementation name', { implementationName: '  ' }, /implementation_name is empty/],
    ['oversized implementation text', { implementationVersion: 'v'.repeat(129) }, /implementation_version is 129 bytes; at most 128/],
    ['a control character', { implementationName: 'gw\u0007' }, /implementation_name contains a control character/],
    ['a capability without the openshell. prefix', { supportedCapabilities: ['ryno.compute.contract'] }, /does not start with "openshell\."/],
    ['a malformed capability name', { supportedCapabilities: [CONTRACT_CAPABILITY, 'openshell.Compute'] }, /not at least three dot-separated segments/],
    ['a duplicate capability', { requiredCapabilities: [CONTRACT_CAPABILITY, CONTRACT_CAPABILITY] }, /lists "openshell\.compute\.contract" twice/],
    ['too many capabilities', { supportedCapabilities: Array.from({ length: 129 }, (_, i) => `openshell.x.c${i}`) }, /has 129 entries; at most 128/],
    ['a required capability we lack', { requiredCapabilities: [CONTRACT_CAPABILITY, 'openshell.compute.isolation-backend-registration'] }, /gateway requires "openshell\.compute\.isolation-backend-registration".*upgrade the driver/],
    ['not supporting what we require', { supportedCapabilities: ['openshell.compute.launch-authentication'], requiredCapabilities: [] }, /this driver requires "openshell\.compute\.contract", which the gateway does not advertise/],
  ];
  for (const [what, over, msg] of refused) {
    it(`is refused with FAILED_PRECONDITION for ${what}`, () => {
      const e = negotiationRefusal(gateway(over), ours);
      expect(e?.code).toBe(Code.FAILED_PRECONDITION);
      expect(e?.message).toMatch(msg);
      // Oversized text is never echoed whole.
      expect(e!.message.length).toBeLessThan(600);
    });
  }
});
