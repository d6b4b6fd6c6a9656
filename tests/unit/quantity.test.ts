// Kubernetes quantities as template limits and the gateway's resource requirements write them.
import { describe, expect, it } from 'vitest';
import { parseQuantity } from '../../src/common/quantity.js';
import { validateActorTemplate } from '../../src/template/validate.js';

describe('parseQuantity', () => {
  it('reads decimal and binary suffixes, millis and exponents', () => {
    expect(parseQuantity('500m')).toBe(0.5);
    expect(parseQuantity('2')).toBe(2);
    expect(parseQuantity('1.5')).toBe(1.5);
    expect(parseQuantity('512Mi')).toBe(512 * 2 ** 20);
    expect(parseQuantity('1Gi')).toBe(2 ** 30);
    expect(parseQuantity('1G')).toBe(1e9);
    expect(parseQuantity('1e3')).toBe(1000);
  });
  it('refuses what is not a quantity', () => {
    for (const q of ['', ' 1', '1 ', 'abc', '1Q', '--1', '1..2', 'Mi']) expect(parseQuantity(q), q).toBeUndefined();
  });
});

describe('ActorTemplate spec.resources.limits', () => {
  const tpl = (limits: unknown) => ({
    apiVersion: 'ate.dev/v1alpha1',
    kind: 'ActorTemplate',
    metadata: { name: 't', namespace: 'default' },
    spec: {
      pauseImage: `p@sha256:${'a'.repeat(64)}`,
      containers: [{ name: 'app', image: `i@sha256:${'b'.repeat(64)}` }],
      snapshotsConfig: { location: 'file:///x/' },
      resources: { limits },
    },
  });
  it('accepts cpu and memory once each', () => {
    expect(validateActorTemplate(tpl([{ name: 'cpu', quantity: '250m' }, { name: 'memory', quantity: '1Gi' }]))).toEqual([]);
  });
  it('refuses other names, duplicates, bad or non-positive quantities, and 1000 cores or more', () => {
    expect(validateActorTemplate(tpl([{ name: 'gpu', quantity: '1' }])).join()).toMatch(/spec.resources.limits\[0\].name: Unsupported value: "gpu"/);
    expect(validateActorTemplate(tpl([{ name: 'cpu', quantity: '1' }, { name: 'cpu', quantity: '2' }])).join()).toMatch(/Duplicate value: "cpu"/);
    expect(validateActorTemplate(tpl([{ name: 'memory', quantity: 'lots' }])).join()).toMatch(/must be a quantity/);
    expect(validateActorTemplate(tpl([{ name: 'memory', quantity: '0' }])).join()).toMatch(/greater than 0/);
    expect(validateActorTemplate(tpl([{ name: 'cpu', quantity: '1000' }])).join()).toMatch(/less than 1000 cores/);
    expect(validateActorTemplate(tpl([{ name: 'cpu', quantity: '1' }, { name: 'memory', quantity: '1Gi' }, { name: 'cpu', quantity: '1' }])).join()).toMatch(/Too many/);
  });
});
