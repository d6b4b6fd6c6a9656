// Issue 7, item 4: template ownership
//
// A sandbox may name a pre-provisioned ActorTemplate (template.driver_config.actor_template or the platform
// annotation substrate_actor_template), which hands it that template's golden snapshot, identity and
// environment. It may name only templates meant to be shared: never one the driver synthesized for another
// sandbox (`oss-<id>`, carrying the driver's owner annotation), and a pre-provisioned one only when the
// operator labelled it `openshell.ai/sandbox-attachable: "true"` (and, with
// `openshell.ai/sandbox-attachable-workspace`, only from that workspace). ValidateSandboxCreate and
// CreateSandbox both refuse with FAILED_PRECONDITION, and a refused CreateSandbox leaves no sandbox behind.
//
// The driver tests' harness: the real local Substrate (gVisor), the driver on a real Unix socket, the
// generated ComputeDriverClient.
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DriverSandbox } from '../../src/gen/compute_driver.js';
import {
  ATTACHABLE_LABEL,
  ATTACHABLE_WORKSPACE_LABEL,
  attachRefusal,
  DEFAULT_ADMISSION_LABELS,
} from '../../src/driver/admission.js';
import { defaultAdmissionConfig } from '../../src/driver/admission-policy.js';
import { Code } from '../../src/common/errors.js';
import { OWNER_ANNOTATION, OWNER_VALUE, templateNameFor, synthesizeActorTemplate } from '../../src/template/synthesize.js';
import type { ActorTemplate } from '../../src/template/types.js';
import { validateActorTemplate } from '../../src/template/validate.js';
import { expectGrpcError, operatorTemplate, readyOf, sandboxOf, startEnv, waitSandbox, type TestEnv } from '../driver/helpers.js';

const SYNTHESIZED = /^ActorTemplate default\/oss-[^ ]+ was synthesized by the driver for another sandbox and cannot be attached: a sandbox may name only pre-provisioned templates marked attachable/;
const UNLABELLED = (name: string) =>
  new RegExp(`^external resource not admitted by required labels: ActorTemplate default/${name} needs label openshell\\.ai/sandbox-attachable="true"`);
const OTHER_WORKSPACE = /^external resource not admitted by required labels: ActorTemplate default\/shared-x has label openshell\.ai\/sandbox-attachable-workspace="team-x".*workspace "team-x".*this sandbox is in workspace "team-y"/;

/** An operator template with the given labels (operatorTemplate's own attachable label replaced). */
function labelled(name: string, image: string, labels: Record<string, string>) {
  const t = operatorTemplate(name, image);
  return { ...t, metadata: { ...t.metadata, labels } };
}

describe('template ownership: the admission rule itself', () => {
  // The operator's policy (upstream default: both labels required) and template_labels (none).
  const POLICY = defaultAdmissionConfig();
  const NO_TL = {};
  const base = (labels?: Record<string, string>, annotations?: Record<string, string>): ActorTemplate =>
    ({ ...operatorTemplate('t', 'local/x@sha256:' + '1'.repeat(64)), metadata: { name: 't', namespace: 'ns', labels, annotations } }) as ActorTemplate;

  it('uses the label names of OpenShell v0.1 resource admission, and they are valid Kubernetes labels', () => {
    expect(ATTACHABLE_LABEL).toBe('openshell.ai/sandbox-attachable');
    expect(ATTACHABLE_WORKSPACE_LABEL).toBe('openshell.ai/sandbox-attachable-workspace');
    expect(DEFAULT_ADMISSION_LABELS).toEqual({ attachable: ATTACHABLE_LABEL, workspace: ATTACHABLE_WORKSPACE_LABEL });
    expect(validateActorTemplate(base({ [ATTACHABLE_LABEL]: 'true', [ATTACHABLE_WORKSPACE_LABEL]: 'team-x' }))).toEqual([]);
  });

  it('refuses a driver-synthesized template even when it carries the attachable label', () => {
    // A sandbox's own template labels are copied onto its synthesized template: it can label itself attachable.
    const victim = sandboxOf({ image: 'local/x@sha256:' + '1'.repeat(64), id: 'victim' });
    victim.spec!.template!.labels = { [ATTACHABLE_LABEL]: 'true' };
    const cfg = { namespace: 'default', pauseImage: 'p@sha256:' + '2'.repeat(64), snapshotsLocation: 'file:///s/', sandboxClass: 'gvisor' as const, gatewayEndpoint: '' };
    const t = synthesizeActorTemplate(victim, cfg);
    expect(t.metadata.labels?.[ATTACHABLE_LABEL]).toBe('true');
    expect(t.metadata.annotations?.[OWNER_ANNOTATION]).toBe(OWNER_VALUE);
    const e = attachRefusal(t, 'default', t.metadata.name!, 'default', POLICY, NO_TL);
    expect(e?.code).toBe(Code.FAILED_PRECONDITION);
    expect(e?.message).toMatch(SYNTHESIZED);
  });

  it('requires attachable="true" exactly', () => {
    const cases: Array<Record<string, string> | undefined> = [undefined, {}, { [ATTACHABLE_LABEL]: 'false' }, { [ATTACHABLE_LABEL]: 'True' }, { [ATTACHABLE_LABEL]: '' }];
    for (const labels of cases) {
      const e = attachRefusal(base(labels), 'ns', 't', 'default', POLICY, NO_TL);
      expect(e?.code, JSON.stringify(labels)).toBe(Code.FAILED_PRECONDITION);
      expect(e?.message).toMatch(/^external resource not admitted by required labels: ActorTemplate ns\/t needs label openshell\.ai\/sandbox-attachable="true"/);
    }
    expect(attachRefusal(base({ [ATTACHABLE_LABEL]: 'true', [ATTACHABLE_WORKSPACE_LABEL]: 'default' }), 'ns', 't', 'default', POLICY, NO_TL)).toBeNull();
  });

  it('scopes by the workspace label: without it the template is shared (attachable label only), with it only that workspace may attach', () => {
    // Shared operator infrastructure (upstream admit_shared): the fixed approval label alone admits, from any workspace.
    expect(attachRefusal(base({ [ATTACHABLE_LABEL]: 'true' }), 'ns', 't', 'default', POLICY, NO_TL)).toBeNull();
    expect(attachRefusal(base({ [ATTACHABLE_LABEL]: 'true' }), 'ns', 't', 'team-y', POLICY, NO_TL)).toBeNull();
    const x = base({ [ATTACHABLE_LABEL]: 'true', [ATTACHABLE_WORKSPACE_LABEL]: 'team-x' });
    expect(attachRefusal(x, 'ns', 't', 'team-x', POLICY, NO_TL)).toBeNull();
    const e = attachRefusal(x, 'ns', 't', 'team-y', POLICY, NO_TL);
    expect(e?.code).toBe(Code.FAILED_PRECONDITION);
    expect(e?.message).toContain(ATTACHABLE_WORKSPACE_LABEL);
    expect(e?.message).toContain('"team-x"');
    expect(e?.message).toContain('"team-y"');
    expect(attachRefusal(base({ [ATTACHABLE_LABEL]: 'true', [ATTACHABLE_WORKSPACE_LABEL]: '' }), 'ns', 't', 'default', POLICY, NO_TL)?.code).toBe(Code.FAILED_PRECONDITION);
  });

  it('reads only own label properties (an inherited one does not admit)', () => {
    const labels = Object.create({ [ATTACHABLE_LABEL]: 'true' }) as Record<string, string>;
    expect(attachRefusal(base(labels), 'ns', 't', 'default', POLICY, NO_TL)?.code).toBe(Code.FAILED_PRECONDITION);
  });

  it("evaluates the operator's policy (required_labels replace the defaults)", () => {
    const custom = { allowDriverConfig: false, resourceAdmission: { enabled: true, requiredLabels: { 'example.com/shared': 'true' } } };
    expect(attachRefusal(base({ 'example.com/shared': 'true' }), 'ns', 't', 'default', custom, NO_TL)).toBeNull();
    expect(attachRefusal(base({ [ATTACHABLE_LABEL]: 'true' }), 'ns', 't', 'default', custom, NO_TL)?.message).toMatch(/needs label example\.com\/shared="true"/);
  });
});

describe('template ownership through the driver (ValidateSandboxCreate and CreateSandbox)', () => {
  let env: TestEnv;
  /** Sandbox A: created normally, so the driver synthesizes its template `oss-<A's id>`. */
  let a: DriverSandbox;
  let aTemplate: string;

  beforeAll(async () => {
    env = await startEnv();
    await env.store.apply(operatorTemplate('shared-any', env.image) as never);
    await env.store.apply(labelled('shared-x', env.image, { [ATTACHABLE_LABEL]: 'true', [ATTACHABLE_WORKSPACE_LABEL]: 'team-x' }) as never);
    await env.store.apply(labelled('unlabelled', env.image, {}) as never);
    await env.store.apply(labelled('not-true', env.image, { [ATTACHABLE_LABEL]: 'yes' }) as never);

    a = sandboxOf({ image: env.image, name: 'victim', token: 'victim-token-secret' });
    // A labels its own template attachable (sandbox template labels are copied onto the synthesized template):
    // ownership must win over labels.
    a.spec!.template!.labels = { [ATTACHABLE_LABEL]: 'true' };
    await env.client.validateSandboxCreate(a);
    await env.client.createSandbox(a);
    aTemplate = templateNameFor(a.id);
    // Provisioning applies A's template in the background; the attack needs only that it exists.
    const deadline = Date.now() + 60_000;
    while (!(await env.store.get('default', aTemplate))) {
      if (Date.now() > deadline) throw new Error(`the driver did not apply ${aTemplate}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  afterAll(async () => {
    await env?.close();
  });

  /** Expects Validate and Create to refuse with FAILED_PRECONDITION and `message`, and no sandbox to remain. */
  async function refused(sb: DriverSandbox, message: RegExp): Promise<void> {
    await expectGrpcError(env.client.validateSandboxCreate(sb), status.FAILED_PRECONDITION, message);
    await expectGrpcError(env.client.createSandbox(sb), status.FAILED_PRECONDITION, message);
    await expectGrpcError(env.client.getSandbox(sb.id, sb.name), status.NOT_FOUND);
    expect((await env.client.listSandboxes()).map((s) => s.id)).not.toContain(sb.id);
  }

  it("refuses a sandbox naming another sandbox's synthesized template, by name, ns/name or annotation", async () => {
    const t = await env.store.get('default', aTemplate);
    expect(t?.metadata.annotations?.[OWNER_ANNOTATION]).toBe(OWNER_VALUE);
    expect(t?.metadata.labels?.[ATTACHABLE_LABEL]).toBe('true');
    await refused(sandboxOf({ image: env.image, name: 'thief-1', driverConfig: { actor_template: aTemplate } }), SYNTHESIZED);
    await refused(sandboxOf({ image: env.image, name: 'thief-2', driverConfig: { actor_template: `default/${aTemplate}` } }), SYNTHESIZED);
    await refused(
      sandboxOf({ image: env.image, name: 'thief-3', platformConfig: { annotations: { substrate_actor_template: `default/${aTemplate}` } } }),
      SYNTHESIZED,
    );
    // From another workspace too.
    await refused(sandboxOf({ image: env.image, name: 'thief-4', workspace: 'team-y', driverConfig: { actor_template: aTemplate } }), SYNTHESIZED);
    // A itself is untouched.
    expect((await env.client.getSandbox(a.id, a.name)).id).toBe(a.id);
  });

  it('refuses a pre-provisioned template without the attachable label', async () => {
    await refused(sandboxOf({ image: env.image, name: 'nolabel', driverConfig: { actor_template: 'unlabelled' } }), UNLABELLED('unlabelled'));
    await refused(
      sandboxOf({ image: env.image, name: 'nolabel-ann', platformConfig: { annotations: { substrate_actor_template: 'default/unlabelled' } } }),
      UNLABELLED('unlabelled'),
    );
    await refused(sandboxOf({ image: env.image, name: 'not-true', driverConfig: { actor_template: 'not-true' } }), UNLABELLED('not-true'));
  });

  it('accepts a pre-provisioned template labelled attachable', async () => {
    await env.client.validateSandboxCreate(sandboxOf({ image: env.image, name: 'ok-1', driverConfig: { actor_template: 'shared-any' } }));
    await env.client.validateSandboxCreate(sandboxOf({ image: env.image, name: 'ok-2', workspace: 'team-y', driverConfig: { actor_template: 'default/shared-any' } }));
    await env.client.validateSandboxCreate(
      sandboxOf({ image: env.image, name: 'ok-3', platformConfig: { annotations: { substrate_actor_template: 'shared-any' } } }),
    );
  });

  it('refuses per-sandbox cpu/memory limits on a shared template (its actors share its limits), never ignoring them', async () => {
    const sb = sandboxOf({ image: env.image, name: 'limited', driverConfig: { actor_template: 'shared-any' } });
    sb.spec!.template!.resources = { cpuRequest: '', cpuLimit: '500m', memoryRequest: '', memoryLimit: '' };
    await refused(sb, /template\.resources sets cpu\/memory limits, but the sandbox names the pre-provisioned ActorTemplate default\/shared-any/);
  });

  it('honours the workspace restriction: refused from another workspace, accepted (and created) from its own', async () => {
    await refused(sandboxOf({ image: env.image, name: 'wrong-ws', workspace: 'team-y', driverConfig: { actor_template: 'shared-x' } }), OTHER_WORKSPACE);
    // No workspace means "default", which is not team-x either.
    await refused(sandboxOf({ image: env.image, name: 'default-ws', workspace: '', driverConfig: { actor_template: 'shared-x' } }), /not admitted by required labels.*this sandbox is in workspace "default"/);

    const ok = sandboxOf({ image: env.image, name: 'right-ws', workspace: 'team-x', driverConfig: { actor_template: 'shared-x' } });
    await env.client.validateSandboxCreate(ok);
    // The local Substrate here has 2 workers, and each template's golden actor holds one until its golden
    // snapshot is taken: wait for all of them, so the sandbox finds a free worker.
    for (const t of ['shared-any', 'shared-x', 'unlabelled', 'not-true', aTemplate]) await env.store.waitReady('default', t, 120_000);
    await env.client.createSandbox(ok);
    const sb = await waitSandbox(env.client, ok.id, (x) => readyOf(x)?.status === 'True' || readyOf(x)?.status === 'False');
    expect(readyOf(sb)?.status).toBe('True');
    expect((await env.ateapi.getActor({ atespace: 'team-x', name: ok.id })).actorTemplateName).toBe('shared-x');
    expect(await env.client.deleteSandbox(ok.id, ok.name)).toBe(true);
  });

  it('keeps the message for a template that does not exist', async () => {
    await refused(
      sandboxOf({ image: env.image, name: 'missing', driverConfig: { actor_template: 'no-such-template' } }),
      /^ActorTemplate default\/no-such-template named by template\.driver_config\.actor_template does not exist; create it first/,
    );
  });
});
