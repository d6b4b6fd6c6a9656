// Kubernetes quantities as template limits and the gateway's resource requirements write them.
import { describe, expect, it } from 'vitest';
import { parseQuantity } from '../../src/common/quantity.js';
import * as pb from '../../src/gen/ateapi.js';
import { actorTemplateFieldErrors, renderFieldError } from '../../src/local/template-validation.js';

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

describe('ActorTemplate resources.limits (Substrate v0.4 rules)', () => {
  const tpl = (limits: Array<{ name: string; quantity: string }>) =>
    pb.ActorTemplate.fromPartial({
      metadata: { atespace: 'demo', name: 't' },
      containers: [{ name: 'app', image: `local/node@sha256:${'b'.repeat(64)}`, command: ['/bin/true'] }],
      snapshotConfig: { onCommit: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL, storageLocation: 'gs://bucket/x' },
      sandboxConfig: { sandboxClass: pb.SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' },
      resources: { limits },
    });
  const errs = (limits: Array<{ name: string; quantity: string }>) => actorTemplateFieldErrors(tpl(limits)).map(renderFieldError).join('; ');
  it('accepts cpu and memory once each', () => {
    expect(errs([{ name: 'cpu', quantity: '250m' }, { name: 'memory', quantity: '1Gi' }])).toBe('');
  });
  it('refuses other names, duplicates, bad or non-positive quantities, and 1000 cores or more', () => {
    expect(errs([{ name: 'gpu', quantity: '1' }])).toMatch(/actor_template\.resources\.limits\[0\]\.name: Unsupported value: "gpu"/);
    expect(errs([{ name: 'cpu', quantity: '1' }, { name: 'cpu', quantity: '2' }])).toMatch(/Duplicate value/);
    expect(errs([{ name: 'memory', quantity: 'lots' }])).toMatch(/quantity/);
    expect(errs([{ name: 'memory', quantity: '0' }])).toMatch(/must be greater than zero/);
    expect(errs([{ name: 'cpu', quantity: '1000' }])).toMatch(/1000/);
    expect(errs([{ name: 'cpu', quantity: '1' }, { name: 'memory', quantity: '1Gi' }, { name: 'cpu', quantity: '1' }])).toMatch(/Too many/);
  });
});
