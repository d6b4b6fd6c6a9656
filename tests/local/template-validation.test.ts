// ActorTemplate validation of the local Substrate (src/local/template-validation.ts): upstream v0.4's rules
// and messages (Kubernetes field.ErrorList rendering), the defaults, and the local restrictions.
import { describe, expect, it } from 'vitest';
import * as pb from '../../src/gen/ateapi.js';
import { ApiError, Code } from '../../src/common/errors.js';
import {
  MICROVM_UNAVAILABLE,
  applyTemplateDefaults,
  everyContainerProbed,
  isPinnedImage,
  parseImageReference,
  pinnedImageError,
  projectedPathError,
  snapshotLocationError,
  validateActorTemplate,
} from '../../src/local/template-validation.js';

const HEX = 'a'.repeat(64);
const IMAGE = `local/node@sha256:${HEX}`;

function base(over: Partial<pb.ActorTemplate> = {}): pb.ActorTemplate {
  return pb.ActorTemplate.fromPartial({
    metadata: { atespace: 'demo', name: 'counter' },
    containers: [{ name: 'app', image: IMAGE }],
    snapshotConfig: { storageLocation: 'gs://bucket/demo' },
    sandboxConfig: { sandboxClass: pb.SandboxClass.SANDBOX_CLASS_GVISOR, configName: 'gvisor-default' },
    ...over,
  });
}

/** The error validateActorTemplate throws (code and message). */
function errorOf(t: pb.ActorTemplate): { code: number; message: string } {
  try {
    validateActorTemplate(t);
  } catch (e) {
    expect(e).toBeInstanceOf(ApiError);
    return { code: (e as ApiError).code, message: (e as ApiError).message };
  }
  throw new Error('expected validation to fail');
}
const invalidMsg = (t: pb.ActorTemplate) => {
  const e = errorOf(t);
  expect(e.code).toBe(Code.INVALID_ARGUMENT);
  return e.message;
};
const withContainer = (c: Partial<pb.Container>) => base({ containers: [pb.Container.fromPartial({ name: 'app', image: IMAGE, ...c })] });

describe('a valid template', () => {
  it('passes, including upstream\'s documented smoke-test shape', () => {
    expect(() => validateActorTemplate(base())).not.toThrow();
    const smoke = base({
      containers: [
        pb.Container.fromPartial({
          name: 'counter',
          image: `us-central1-docker.pkg.dev/gke-demos-345619/ax/substrate/counter@sha256:${'5'.repeat(64)}`,
          command: ['/ko-app/counter', '--extra-port=9090'],
          wakeupProbe: { httpGet: { path: '/readyz', port: 80 } },
          env: [{ name: 'SSL_CERT_FILE', value: '/run/ate/trust-bundle.pem' }],
          volumeMounts: [
            { name: 'data', mountPath: '/home/counter' },
            { name: 'trust', mountPath: '/run/ate' },
          ],
        }),
      ],
      resources: { limits: [{ name: 'cpu', quantity: '1' }, { name: 'memory', quantity: '512Mi' }] },
      volumes: [
        pb.Volume.fromPartial({ name: 'data', durableDir: {} }),
        pb.Volume.fromPartial({ name: 'trust', systemInfo: { dataSources: [{ trustBundle: { names: ['egress-mitm.ate.dev', 'system-roots.ate.dev'], path: 'trust-bundle.pem' } }] } }),
      ],
    });
    expect(() => validateActorTemplate(smoke)).not.toThrow();
  });

  it('ignores status and server-assigned metadata', () => {
    const t = base({ status: { goldenSnapshotStatus: { errorMessage: 'x'.repeat(10_000), goldenTag: { atespace: 'BAD', name: 'BAD' } } } });
    t.metadata!.uid = 'not-a-uuid';
    t.metadata!.version = -4;
    expect(() => validateActorTemplate(t)).not.toThrow();
  });
});

describe('defaults', () => {
  it('on_commit FULL, probe path "/" and timeout 30, only inside objects that are set', () => {
    const d = applyTemplateDefaults(withContainer({ wakeupProbe: { httpGet: { path: '', port: 8080 }, timeoutSeconds: 0 } }));
    expect(d.snapshotConfig!.onCommit).toBe(pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_FULL);
    expect(d.containers[0]!.wakeupProbe).toEqual({ httpGet: { path: '/', port: 8080 }, timeoutSeconds: 30 });
    const none = applyTemplateDefaults(base({ snapshotConfig: undefined }));
    expect(none.snapshotConfig).toBeUndefined();
    expect(none.containers[0]!.wakeupProbe).toBeUndefined();
  });

  it('does not modify its input', () => {
    const t = withContainer({ wakeupProbe: { httpGet: { path: '', port: 1 }, timeoutSeconds: 0 } });
    applyTemplateDefaults(t);
    expect(t.snapshotConfig!.onCommit).toBe(pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_UNSPECIFIED);
    expect(t.containers[0]!.wakeupProbe!.timeoutSeconds).toBe(0);
  });

  it('everyContainerProbed needs a wakeup_probe on every container', () => {
    expect(everyContainerProbed(base())).toBe(false);
    expect(everyContainerProbed(withContainer({ wakeupProbe: { httpGet: { path: '/', port: 80 }, timeoutSeconds: 30 } }))).toBe(true);
  });
});

describe('required fields (exact upstream text)', () => {
  it.each([
    ['metadata', base({ metadata: undefined }), 'actor_template.metadata: Required value'],
    ['metadata.atespace', base({ metadata: { atespace: '', name: 'x', uid: '', version: 0 } }), 'actor_template.metadata.atespace: Required value'],
    ['metadata.name', base({ metadata: { atespace: 'demo', name: '', uid: '', version: 0 } }), 'actor_template.metadata.name: Required value'],
    ['containers', base({ containers: [] }), 'actor_template.containers: Required value'],
    ['snapshot_config', base({ snapshotConfig: undefined }), 'actor_template.snapshot_config: Required value'],
    ['storage_location', base({ snapshotConfig: { storageLocation: '', onCommit: 1 } }), 'actor_template.snapshot_config.storage_location: Required value'],
    ['sandbox_config', base({ sandboxConfig: undefined }), 'actor_template.sandbox_config: Required value'],
    ['sandbox_class', base({ sandboxConfig: { sandboxClass: 0, configName: 'gvisor-default' } }), 'actor_template.sandbox_config.sandbox_class: Required value'],
    ['config_name', base({ sandboxConfig: { sandboxClass: 1, configName: '' } }), 'actor_template.sandbox_config.config_name: Required value'],
    ['container name', withContainer({ name: '' }), 'actor_template.containers[0].name: Required value'],
    ['container image', withContainer({ image: '' }), 'actor_template.containers[0].image: Required value'],
    ['probe http_get', withContainer({ wakeupProbe: { httpGet: undefined, timeoutSeconds: 5 } }), 'actor_template.containers[0].wakeup_probe.http_get: Required value'],
    ['probe port', withContainer({ wakeupProbe: { httpGet: { path: '/', port: 0 }, timeoutSeconds: 5 } }), 'actor_template.containers[0].wakeup_probe.http_get.port: Required value'],
  ])('%s', (_what, t, msg) => {
    expect(invalidMsg(t)).toBe(msg);
  });

  it('several errors form a bracketed aggregate', () => {
    expect(invalidMsg(base({ snapshotConfig: undefined, sandboxConfig: undefined }))).toBe(
      '[actor_template.snapshot_config: Required value, actor_template.sandbox_config: Required value]',
    );
  });
});

describe('names', () => {
  it('metadata.name must be a DNS label', () => {
    expect(invalidMsg(base({ metadata: { atespace: 'demo', name: 'Bad_Name', uid: '', version: 0 } }))).toBe(
      `actor_template.metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
    );
  });

  it('config_name is a long name (DNS subdomain): dots allowed', () => {
    expect(() => validateActorTemplate(base({ sandboxConfig: { sandboxClass: 1, configName: 'gvisor.default' } }))).not.toThrow();
    expect(invalidMsg(base({ sandboxConfig: { sandboxClass: 1, configName: 'Gvisor' } }))).toMatch(/^actor_template\.sandbox_config\.config_name: Invalid value: "Gvisor": a lowercase RFC 1123 subdomain/);
  });

  it('container names are unique', () => {
    const t = base({ containers: [pb.Container.fromPartial({ name: 'a', image: IMAGE }), pb.Container.fromPartial({ name: 'a', image: IMAGE })] });
    expect(invalidMsg(t)).toContain('actor_template.containers[1].name: Duplicate value: "a"');
  });
});

describe('images', () => {
  it('must be pinned by digest', () => {
    expect(invalidMsg(withContainer({ image: 'nginx:1.27' }))).toBe(
      'actor_template.containers[0].image: Invalid value: "nginx:1.27": must be pinned by digest (changing the image invalidates snapshots)',
    );
  });

  it('must be well formed', () => {
    expect(invalidMsg(withContainer({ image: 'team/Agent:v1@sha256:' + HEX }))).toBe(
      `actor_template.containers[0].image: Invalid value: "team/Agent:v1@sha256:${HEX}": must be a well-formed image reference: invalid reference format: repository name (team/Agent) must be lowercase`,
    );
    expect(pinnedImageError(`REGISTRY/app@sha256:${HEX}`)).toBeUndefined(); // an upper-case first component is a registry
    expect(pinnedImageError('nginx@sha256:abc')).toBe('must be a well-formed image reference: invalid reference format');
    expect(pinnedImageError(`nginx@sha256:${'A'.repeat(64)}`)).toBe('must be a well-formed image reference: invalid checksum digest format');
    expect(pinnedImageError(`nginx@sha256:${'a'.repeat(40)}`)).toBe('must be a well-formed image reference: invalid checksum digest length');
    expect(pinnedImageError(`nginx@md5:${'a'.repeat(32)}`)).toBe('must be a well-formed image reference: unsupported digest algorithm');
    expect(pinnedImageError(HEX)).toMatch(/cannot specify 64-byte hexadecimal strings/);
  });

  it('may be at most 512 bytes', () => {
    const long = `${'a'.repeat(500)}@sha256:${HEX}`;
    expect(invalidMsg(withContainer({ image: long }))).toBe('actor_template.containers[0].image: Too long: may not be more than 512 bytes');
  });

  it('isPinnedImage / parseImageReference accept registries, ports, tags and local images', () => {
    expect(isPinnedImage(IMAGE)).toBe(true);
    expect(isPinnedImage(`localhost:5000/team/app:v1@sha256:${HEX}`)).toBe(true);
    expect(isPinnedImage(`registry.k8s.io/pause:3.10.2@sha256:${HEX}`)).toBe(true);
    expect(isPinnedImage('local/node')).toBe(false);
    expect(isPinnedImage('')).toBe(false);
    expect(parseImageReference(`localhost:5000/team/app:v1@sha256:${HEX}`)).toEqual({ name: 'localhost:5000/team/app', tag: 'v1', digest: `sha256:${HEX}` });
    expect(parseImageReference(`nginx@sha256:${HEX}`)).toEqual({ name: 'docker.io/library/nginx', digest: `sha256:${HEX}` });
    expect(parseImageReference(IMAGE).name).toBe('docker.io/local/node');
  });

  it('image volumes are pinned too', () => {
    const t = withContainer({ volumeMounts: [{ name: 'tools', mountPath: '/opt/tools' }] });
    t.volumes = [pb.Volume.fromPartial({ name: 'tools', image: { reference: 'tools:latest' } })];
    expect(invalidMsg(t)).toBe('actor_template.volumes[0].image.reference: Invalid value: "tools:latest": must be pinned by digest (changing the image invalidates snapshots)');
  });
});

describe('command, args and env', () => {
  it('command and args: at most 64 items of at most 4096 bytes', () => {
    expect(invalidMsg(withContainer({ command: Array(65).fill('x') }))).toBe('actor_template.containers[0].command: Too many: 65: must have at most 64 items');
    expect(invalidMsg(withContainer({ args: ['ok', 'y'.repeat(4097)] }))).toBe('actor_template.containers[0].args[1]: Too long: may not be more than 4096 bytes');
  });

  it('env: at most 32, unique names, printable ASCII except "="', () => {
    const many = Array.from({ length: 33 }, (_, i) => ({ name: `V${i}`, value: '' }));
    expect(invalidMsg(withContainer({ env: many }))).toBe('actor_template.containers[0].env: Too many: 33: must have at most 32 items');
    expect(invalidMsg(withContainer({ env: [{ name: 'A', value: '1' }, { name: 'A', value: '2' }] }))).toBe('actor_template.containers[0].env[1].name: Duplicate value: "A"');
    expect(invalidMsg(withContainer({ env: [{ name: 'A=B', value: '' }] }))).toBe(
      `actor_template.containers[0].env[0].name: Invalid value: "A=B": may contain any printable ASCII character except '='`,
    );
    expect(invalidMsg(withContainer({ env: [{ name: 'x'.repeat(257), value: '' }] }))).toBe('actor_template.containers[0].env[0].name: Too long: may not be more than 256 bytes');
    expect(() => validateActorTemplate(withContainer({ env: [{ name: 'lower.case-and spaces', value: '' }] }))).not.toThrow();
  });

  it('an env value over 32768 bytes is rejected without printing it', () => {
    const secret = 'S3CRET-'.repeat(5000);
    const msg = invalidMsg(withContainer({ env: [{ name: 'TOKEN', value: secret }] }));
    expect(msg).toBe('actor_template.containers[0].env[0].value: Too long: may not be more than 32768 bytes');
    expect(msg).not.toContain('S3CRET');
  });

  it('no error ever carries an env value', () => {
    const msg = invalidMsg(base({ containers: [pb.Container.fromPartial({ name: 'Bad', image: 'x', env: [{ name: 'K', value: 'hunter2' }, { name: 'K', value: 'hunter3' }] })] }));
    expect(msg).not.toContain('hunter');
  });
});

describe('wakeup_probe', () => {
  const probe = (path: string, port: number, timeoutSeconds: number) => withContainer({ wakeupProbe: { httpGet: { path, port }, timeoutSeconds } });
  it('path is an RFC 3986 path without query', () => {
    expect(invalidMsg(probe('/healthz?x=1', 80, 5))).toBe(
      `actor_template.containers[0].wakeup_probe.http_get.path: Invalid value: "/healthz?x=1": must be a URL path starting with '/', using only RFC 3986 path-segment characters, without query or fragment`,
    );
    expect(invalidMsg(probe('x'.repeat(1025), 80, 5))).toBe('actor_template.containers[0].wakeup_probe.http_get.path: Too long: may not be more than 1024 bytes');
  });
  it('port 1-65535, timeout 1-3600', () => {
    expect(invalidMsg(probe('/', 70000, 5))).toBe('actor_template.containers[0].wakeup_probe.http_get.port: Invalid value: 70000: must be less than or equal to 65535');
    expect(invalidMsg(probe('/', -1, 5))).toBe('actor_template.containers[0].wakeup_probe.http_get.port: Invalid value: -1: must be greater than or equal to 1');
    expect(invalidMsg(probe('/', 80, 3601))).toBe('actor_template.containers[0].wakeup_probe.timeout_seconds: Invalid value: 3601: must be less than or equal to 3600');
  });
  it('path and timeout default, so an empty path and zero timeout pass', () => {
    expect(() => validateActorTemplate(probe('', 80, 0))).not.toThrow();
  });
});

describe('volumes and mounts', () => {
  const durable = (name: string) => pb.Volume.fromPartial({ name, durableDir: {} });
  it('a mount must name a declared volume', () => {
    expect(invalidMsg(withContainer({ volumeMounts: [{ name: 'data', mountPath: '/data' }] }))).toBe(
      'actor_template.containers[0].volume_mounts[0].name: Invalid value: "data": must reference a volume declared in the template',
    );
  });
  it('mount paths are clean absolute paths that do not nest', () => {
    const t = withContainer({ volumeMounts: [{ name: 'data', mountPath: '/data/../etc' }] });
    t.volumes = [durable('data')];
    expect(invalidMsg(t)).toBe(
      `actor_template.containers[0].volume_mounts[0].mount_path: Invalid value: "/data/../etc": must be a clean absolute Unix path: must start with '/', not be '/', and contain no ':', '..', '.', '//', trailing '/', or control characters`,
    );
    const nest = withContainer({ volumeMounts: [{ name: 'data', mountPath: '/data' }, { name: 'info', mountPath: '/data/info' }] });
    nest.volumes = [durable('data'), pb.Volume.fromPartial({ name: 'info', systemInfo: { dataSources: [{ actorMetadata: { items: [{ field: 1, path: 'name' }] } }] } })];
    expect(invalidMsg(nest)).toBe('actor_template.containers[0].volume_mounts[1].mount_path: Invalid value: "/data/info": must not nest under or over another mount ("/data")');
  });
  it('every declared volume must be mounted', () => {
    expect(invalidMsg(base({ volumes: [durable('data')] }))).toBe('actor_template.volumes[0].name: Invalid value: "data": every declared volume must be mounted by at least one container');
  });
  it('exactly one source per volume', () => {
    const t = withContainer({ volumeMounts: [{ name: 'v', mountPath: '/v' }] });
    t.volumes = [pb.Volume.fromPartial({ name: 'v' })];
    expect(invalidMsg(t)).toBe('actor_template.volumes[0]: Invalid value: "": must specify one of: `durable_dir`, `external_volume_template`, `system_info`, `image`');
    t.volumes = [pb.Volume.fromPartial({ name: 'v', durableDir: {}, image: { reference: IMAGE } })];
    expect(invalidMsg(t)).toBe('actor_template.volumes[0]: Invalid value: "{`durable_dir`, `image`}": must specify exactly one of: `durable_dir`, `external_volume_template`, `system_info`, `image`');
  });
  it('gvisor allows at most one durable_dir', () => {
    const t = withContainer({ volumeMounts: [{ name: 'a', mountPath: '/a' }, { name: 'b', mountPath: '/b' }] });
    t.volumes = [durable('a'), durable('b')];
    expect(invalidMsg(t)).toBe('actor_template.volumes[1].durable_dir: Forbidden: a gvisor template may declare at most one durable_dir volume');
  });
  it('DATA snapshots need a mounted durable_dir', () => {
    expect(invalidMsg(base({ snapshotConfig: { onCommit: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_DATA, storageLocation: 'gs://b/x' } }))).toBe(
      'actor_template.snapshot_config.on_commit: Invalid value: "SNAPSHOT_CONTENT_SCOPE_DATA": DATA snapshots require a mounted durable-dir volume',
    );
    const ok = withContainer({ volumeMounts: [{ name: 'data', mountPath: '/data' }] });
    ok.volumes = [durable('data')];
    ok.snapshotConfig = { onCommit: pb.SnapshotContentScope.SNAPSHOT_CONTENT_SCOPE_DATA, storageLocation: 'gs://b/x' };
    expect(() => validateActorTemplate(ok)).not.toThrow();
  });
  it('external volume templates need a quantity and a storage class', () => {
    const t = withContainer({ volumeMounts: [{ name: 'v', mountPath: '/v' }] });
    t.volumes = [pb.Volume.fromPartial({ name: 'v', externalVolumeTemplate: { capacity: 'lots', storageClassName: '' } })];
    expect(invalidMsg(t)).toBe(
      `[actor_template.volumes[0].external_volume_template.capacity: Invalid value: "lots": must be a Kubernetes resource quantity: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$', actor_template.volumes[0].external_volume_template.storage_class_name: Required value]`,
    );
  });
});

describe('system_info data sources', () => {
  const withInfo = (dataSources: pb.SystemInfoDataSource[]) => {
    const t = withContainer({ volumeMounts: [{ name: 'info', mountPath: '/run/ate' }] });
    t.volumes = [pb.Volume.fromPartial({ name: 'info', systemInfo: { dataSources } })];
    return t;
  };
  const p = 'actor_template.volumes[0].system_info.data_sources';
  it('projected paths are clean relative paths, unique across sources', () => {
    expect(invalidMsg(withInfo([{ actorMetadata: { items: [{ field: 1, path: '/abs' }] } }]))).toBe(
      `${p}[0].actor_metadata.items[0].path: Invalid value: "/abs": must be a relative path with no empty segments: no leading, trailing, or doubled '/'`,
    );
    expect(invalidMsg(withInfo([{ actorMetadata: { items: [{ field: 1, path: 'x' }] } }, { trustBundle: { names: ['system-roots.ate.dev'], path: 'x' } }]))).toBe(
      `${p}[1].trust_bundle.path: Duplicate value: "x"`,
    );
    expect(projectedPathError('a/../b')).toBe('must not contain a ".." path segment');
    expect(projectedPathError(Array(17).fill('a').join('/'))).toBe('must have at most 16 path segments');
  });
  it('actor metadata fields are 1-3 and not repeated', () => {
    expect(invalidMsg(withInfo([{ actorMetadata: { items: [{ field: 1, path: 'a' }, { field: 1, path: 'b' }] } }]))).toBe(`${p}[0].actor_metadata.items[1].field: Duplicate value: 1`);
    expect(invalidMsg(withInfo([{ actorMetadata: { items: [{ field: 0, path: 'a' }] } }]))).toBe(`${p}[0].actor_metadata.items[0].field: Required value`);
  });
  it('trust bundle names come from the allowlist', () => {
    expect(invalidMsg(withInfo([{ trustBundle: { names: ['corp.example.com'], path: 'ca.pem' } }]))).toBe(
      `${p}[0].trust_bundle.names[0]: Unsupported value: "corp.example.com": supported values: "egress-mitm.ate.dev", "system-roots.ate.dev"`,
    );
  });
  it('at most 8 data sources, exactly one kind each', () => {
    expect(invalidMsg(withInfo(Array.from({ length: 9 }, (_, i) => ({ trustBundle: { names: ['system-roots.ate.dev'], path: `f${i}` } }))))).toBe(`${p}: Too many: 9: must have at most 8 items`);
    expect(invalidMsg(withInfo([{}]))).toBe(`${p}[0]: Invalid value: "": must specify one of: \`actor_metadata\`, \`trust_bundle\``);
  });
});

describe('capabilities', () => {
  const caps = (add: string[], drop: string[] = []) => withContainer({ securityContext: { capabilities: { add, drop } } });
  it('no CAP_ prefix, uppercase names, ALL only in drop', () => {
    expect(invalidMsg(caps(['CAP_NET_ADMIN']))).toBe(
      `actor_template.containers[0].security_context.capabilities.add[0]: Invalid value: "CAP_NET_ADMIN": must be named without the 'CAP_' prefix (e.g. 'NET_BIND_SERVICE')`,
    );
    expect(invalidMsg(caps(['net_admin']))).toBe(
      `actor_template.containers[0].security_context.capabilities.add[0]: Invalid value: "net_admin": must be an uppercase capability name like 'NET_BIND_SERVICE'`,
    );
    expect(invalidMsg(caps(['ALL']))).toBe(
      `actor_template.containers[0].security_context.capabilities.add[0]: Invalid value: "ALL": add does not accept 'ALL'; name the individual capabilities the container needs`,
    );
    expect(() => validateActorTemplate(caps(['NET_BIND_SERVICE'], ['ALL']))).not.toThrow();
  });
});

describe('resources', () => {
  const limits = (l: Array<{ name: string; quantity: string }>) => base({ resources: { limits: l } });
  it('cpu and memory only, each once, at most two', () => {
    expect(invalidMsg(limits([{ name: 'gpu', quantity: '1' }]))).toBe('actor_template.resources.limits[0].name: Unsupported value: "gpu": supported values: "cpu", "memory"');
    expect(invalidMsg(limits([{ name: 'cpu', quantity: '1' }, { name: 'cpu', quantity: '2' }]))).toBe('actor_template.resources.limits[1].name: Duplicate value: "cpu"');
    expect(invalidMsg(limits([{ name: 'cpu', quantity: '1' }, { name: 'memory', quantity: '1Gi' }, { name: 'memory', quantity: '2Gi' }]))).toBe(
      'actor_template.resources.limits: Too many: 3: must have at most 2 items',
    );
  });
  it('quantity > 0 and cpu < 1000 cores', () => {
    expect(invalidMsg(limits([{ name: 'memory', quantity: '0' }]))).toBe('actor_template.resources.limits[0].quantity: Invalid value: "0": must be greater than zero');
    expect(invalidMsg(limits([{ name: 'cpu', quantity: '1k' }]))).toBe('actor_template.resources.limits[0].quantity: Invalid value: "1k": cpu limit must be less than 1000 cores');
    expect(invalidMsg(limits([{ name: 'cpu', quantity: '' }]))).toBe('actor_template.resources.limits[0].quantity: Required value');
    expect(() => validateActorTemplate(limits([{ name: 'cpu', quantity: '999' }, { name: 'memory', quantity: '512Mi' }]))).not.toThrow();
  });
  it('per-container resources are for microvm only', () => {
    expect(invalidMsg(withContainer({ resources: { limits: [{ name: 'memory', quantity: '1Gi' }] } }))).toBe(
      'actor_template.containers[0].resources: Forbidden: per-container limits are supported only for sandbox_class SANDBOX_CLASS_MICROVM (gVisor applies limits to the whole sandbox: use actor_template.resources)',
    );
  });
});

describe('snapshot_config', () => {
  it('storage_location is a URI with a bucket and only scheme, bucket and path', () => {
    const loc = (storageLocation: string) => base({ snapshotConfig: { storageLocation, onCommit: 1 } });
    expect(invalidMsg(loc('just-a-path'))).toBe('actor_template.snapshot_config.storage_location: Invalid value: "just-a-path": invalid snapshot location "just-a-path": missing bucket');
    expect(invalidMsg(loc('gs://b/x?y=1'))).toBe(
      'actor_template.snapshot_config.storage_location: Invalid value: "gs://b/x?y=1": invalid snapshot location "gs://b/x?y=1": must contain only a scheme, bucket, and path',
    );
    expect(snapshotLocationError('s3://user:pw@b/x')).toBe('invalid snapshot location "s3://user:pw@b/x": must contain only a scheme, bucket, and path');
    expect(snapshotLocationError('gs:opaque')).toMatch(/must contain only a scheme, bucket, and path/);
    expect(snapshotLocationError('gs://bucket/deep/prefix/')).toBeUndefined();
    expect(invalidMsg(loc(`gs://b/${'x'.repeat(1020)}`))).toBe('actor_template.snapshot_config.storage_location: Too long: may not be more than 1024 bytes');
  });
  it('on_commit out of range', () => {
    expect(invalidMsg(base({ snapshotConfig: { storageLocation: 'gs://b', onCommit: 3 as pb.SnapshotContentScope } }))).toBe(
      'actor_template.snapshot_config.on_commit: Invalid value: 3: must be less than or equal to 2',
    );
  });
});

describe('local restrictions', () => {
  it('exactly one container: more is INVALID_ARGUMENT naming the local rule', () => {
    const t = base({ containers: [pb.Container.fromPartial({ name: 'a', image: IMAGE }), pb.Container.fromPartial({ name: 'b', image: IMAGE })] });
    expect(invalidMsg(t)).toBe('actor_template.containers: Too many: 2: must have at most 1 item: the local Substrate runs one container per actor');
  });
  it('more than 10 containers reports upstream\'s limit only', () => {
    const t = base({ containers: Array.from({ length: 11 }, (_, i) => pb.Container.fromPartial({ name: `c${i}`, image: IMAGE })) });
    expect(invalidMsg(t)).toBe('actor_template.containers: Too many: 11: must have at most 10 items');
  });
  it('microvm is FAILED_PRECONDITION once the template is otherwise valid', () => {
    const micro = base({ sandboxConfig: { sandboxClass: pb.SandboxClass.SANDBOX_CLASS_MICROVM, configName: 'microvm' } });
    expect(errorOf(micro)).toEqual({ code: Code.FAILED_PRECONDITION, message: MICROVM_UNAVAILABLE });
    micro.containers[0]!.resources = { limits: [{ name: 'memory', quantity: '1Gi' }] }; // allowed for microvm upstream
    expect(errorOf(micro).code).toBe(Code.FAILED_PRECONDITION);
    micro.snapshotConfig = undefined;
    expect(errorOf(micro)).toEqual({ code: Code.INVALID_ARGUMENT, message: 'actor_template.snapshot_config: Required value' });
  });
  it('sandbox_class beyond the enum', () => {
    expect(invalidMsg(base({ sandboxConfig: { sandboxClass: 7 as pb.SandboxClass, configName: 'x' } }))).toBe('actor_template.sandbox_config.sandbox_class: Invalid value: 7: must be less than or equal to 2');
  });
});
