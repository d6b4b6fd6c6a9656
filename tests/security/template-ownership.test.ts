// Issue 7, item 4: template ownership
//
// A sandbox may name a pre-provisioned ActorTemplate (template.driver_config.actor_template or the platform
// annotation substrate_actor_template), which hands it that template's golden snapshot, identity and
// environment. It may name only templates meant to be shared: never one the driver synthesized (content-named
// `sbx-tpl-<hash>` on Substrate v0.4, shared only by sandboxes of the same spec), and a pre-provisioned one only
// when the operator labelled it `openshell.ai/sandbox-attachable: "true"` (and, with
// `openshell.ai/sandbox-attachable-workspace`, only from that workspace). v0.4 templates carry no labels, so the
// operator's labels come from the driver's `template_labels` config, never from the template or the caller.
// ValidateSandboxCreate and CreateSandbox both refuse with FAILED_PRECONDITION, and a refused CreateSandbox leaves
// no sandbox behind.
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
import { defaultAdmissionConfig, type TemplateLabels } from '../../src/driver/admission-policy.js';
import { Code } from '../../src/common/errors.js';
import { labelValueError, qualifiedNameError } from '../../src/common/dns.js';
import { synthesizeActorTemplate } from '../../src/template/synthesize.js';
import {
  eventually,
  expectGrpcError,
  operatorTemplate,
  provisionTemplate,
  readyOf,
  sandboxOf,
  startEnv,
  templateRefOf,
  waitSandbox,
  type TestEnv,
} from '../driver/helpers.js';

const SYNTHESIZED = /^ActorTemplate default\/sbx-tpl-[0-9a-f]{20} was synthesized by the driver for other sandboxes and cannot be attached: a sandbox may name only pre-provisioned templates marked attachable/;
const UNLABELLED = (name: string) =>
  new RegExp(`^external resource not admitted by required labels: ActorTemplate default/${name} needs label openshell\\.ai/sandbox-attachable="true"`);
const OTHER_WORKSPACE = /^external resource not admitted by required labels: ActorTemplate team-x\/shared-x has label openshell\.ai\/sandbox-attachable-workspace="team-x".*workspace "team-x".*this sandbox is in workspace "team-y"/;

describe('template ownership: the admission rule itself', () => {
  // The operator's policy (upstream default: both labels required); template_labels give the template `ns/t` its labels.
  const POLICY = defaultAdmissionConfig();
  const tl = (labels?: Record<string, string>): TemplateLabels => (labels === undefined ? {} : { 'ns/t': labels });

  it('uses the label names of OpenShell v0.1 resource admission, and they are valid Kubernetes labels', () => {
    expect(ATTACHABLE_LABEL).toBe('openshell.ai/sandbox-attachable');
    expect(ATTACHABLE_WORKSPACE_LABEL).toBe('openshell.ai/sandbox-attachable-workspace');
    expect(DEFAULT_ADMISSION_LABELS).toEqual({ attachable: ATTACHABLE_LABEL, workspace: ATTACHABLE_WORKSPACE_LABEL });
    for (const k of [ATTACHABLE_LABEL, ATTACHABLE_WORKSPACE_LABEL]) expect(qualifiedNameError(k)).toBeNull();
    for (const v of ['true', 'team-x']) expect(labelValueError(v)).toBeNull();
  });

  it('refuses a driver-synthesized template even when the operator (or the sandbox) marks it attachable', () => {
    // The sandbox asks for the attachable label on its template; v0.4 templates carry no labels, so it is not there.
    const victim = sandboxOf({ image: 'local/x@sha256:' + '1'.repeat(64), id: 'victim' });
    victim.spec!.template!.labels = { [ATTACHABLE_LABEL]: 'true' };
    const cfg = { snapshotsLocation: 'gs://bucket/s/', sandboxClass: 'gvisor' as const, gatewayEndpoint: '' };
    const { template: t } = synthesizeActorTemplate(victim, cfg);
    const name = t.metadata!.name;
    expect(name).toMatch(/^sbx-tpl-[0-9a-f]{20}$/);
    expect(JSON.stringify(t)).not.toContain(ATTACHABLE_LABEL);
    // Even an operator's template_labels entry for it does not make it attachable: ownership wins over labels.
    const marked: TemplateLabels = { [`default/${name}`]: { [ATTACHABLE_LABEL]: 'true' } };
    for (const labels of [{}, marked]) {
      const e = attachRefusal('default', name, 'default', POLICY, labels);
      expect(e?.code).toBe(Code.FAILED_PRECONDITION);
      expect(e?.message).toMatch(SYNTHESIZED);
    }
  });

  it('requires attachable="true" exactly', () => {
    const cases: Array<Record<string, string> | undefined> = [undefined, {}, { [ATTACHABLE_LABEL]: 'false' }, { [ATTACHABLE_LABEL]: 'True' }, { [ATTACHABLE_LABEL]: '' }];
    for (const labels of cases) {
      const e = attachRefusal('ns', 't', 'default', POLICY, tl(labels));
      expect(e?.code, JSON.stringify(labels)).toBe(Code.FAILED_PRECONDITION);
      expect(e?.message).toMatch(/^external resource not admitted by required labels: ActorTemplate ns\/t needs label openshell\.ai\/sandbox-attachable="true"/);
    }
    expect(attachRefusal('ns', 't', 'default', POLICY, tl({ [ATTACHABLE_LABEL]: 'true', [ATTACHABLE_WORKSPACE_LABEL]: 'default' }))).toBeNull();
    // Labels of another template do not count.
    expect(attachRefusal('ns', 't', 'default', POLICY, { 'ns/other': { [ATTACHABLE_LABEL]: 'true' } })?.code).toBe(Code.FAILED_PRECONDITION);
  });

  it('scopes by the workspace label: without it the template is shared (attachable label only), with it only that workspace may attach', () => {
    // Shared operator infrastructure (upstream admit_shared): the fixed approval label alone admits, from any workspace.
    expect(attachRefusal('ns', 't', 'default', POLICY, tl({ [ATTACHABLE_LABEL]: 'true' }))).toBeNull();
    expect(attachRefusal('ns', 't', 'team-y', POLICY, tl({ [ATTACHABLE_LABEL]: 'true' }))).toBeNull();
    const x = tl({ [ATTACHABLE_LABEL]: 'true', [ATTACHABLE_WORKSPACE_LABEL]: 'team-x' });
    expect(attachRefusal('ns', 't', 'team-x', POLICY, x)).toBeNull();
    const e = attachRefusal('ns', 't', 'team-y', POLICY, x);
    expect(e?.code).toBe(Code.FAILED_PRECONDITION);
    expect(e?.message).toContain(ATTACHABLE_WORKSPACE_LABEL);
    expect(e?.message).toContain('"team-x"');
    expect(e?.message).toContain('"team-y"');
    expect(attachRefusal('ns', 't', 'default', POLICY, tl({ [ATTACHABLE_LABEL]: 'true', [ATTACHABLE_WORKSPACE_LABEL]: '' }))?.code).toBe(Code.FAILED_PRECONDITION);
  });

  it('reads only own properties (an inherited template entry or label does not admit)', () => {
    const labels = Object.create({ [ATTACHABLE_LABEL]: 'true' }) as Record<string, string>;
    expect(attachRefusal('ns', 't', 'default', POLICY, tl(labels))?.code).toBe(Code.FAILED_PRECONDITION);
    const inherited = Object.create({ 'ns/t': { [ATTACHABLE_LABEL]: 'true' } }) as TemplateLabels;
    expect(attachRefusal('ns', 't', 'default', POLICY, inherited)?.code).toBe(Code.FAILED_PRECONDITION);
  });

  it("evaluates the operator's policy (required_labels replace the defaults)", () => {
    const custom = { allowDriverConfig: false, resourceAdmission: { enabled: true, requiredLabels: { 'example.com/shared': 'true' } } };
    expect(attachRefusal('ns', 't', 'default', custom, tl({ 'example.com/shared': 'true' }))).toBeNull();
    expect(attachRefusal('ns', 't', 'default', custom, tl({ [ATTACHABLE_LABEL]: 'true' }))?.message).toMatch(/needs label example\.com\/shared="true"/);
  });
});

describe('template ownership through the driver (ValidateSandboxCreate and CreateSandbox)', () => {
  let env: TestEnv;
  /** Sandbox A: created normally, so the driver synthesizes its (content-named) template. */
  let a: DriverSandbox;
  let aTemplate: string;

  beforeAll(async () => {
    // The operator's labels, in the driver's template_labels: `unlabelled` has no entry at all.
    const labels: TemplateLabels = {
      'default/shared-any': { [ATTACHABLE_LABEL]: 'true' },
      'team-x/shared-x': { [ATTACHABLE_LABEL]: 'true', [ATTACHABLE_WORKSPACE_LABEL]: 'team-x' },
      'default/not-true': { [ATTACHABLE_LABEL]: 'yes' },
    };
    env = await startEnv({ flags: { template_labels: JSON.stringify(labels) } });
    for (const name of ['shared-any', 'unlabelled', 'not-true']) await provisionTemplate(env, operatorTemplate(name, env.image));
    // The workspace-scoped one lives in its workspace's atespace (the local Substrate lets an actor use only templates
    // of its own atespace; see the report), named "team-x/shared-x".
    await provisionTemplate(env, operatorTemplate('shared-x', env.image, { atespace: 'team-x' }));

    a = sandboxOf({ image: env.image, name: 'victim', token: 'victim-token-secret' });
    // A asks for the attachable label on its own template: v0.4 templates carry no labels, and ownership wins anyway.
    a.spec!.template!.labels = { [ATTACHABLE_LABEL]: 'true' };
    await env.client.validateSandboxCreate(a);
    await env.client.createSandbox(a);
    aTemplate = templateRefOf(env, a.id).name;
    // Provisioning creates A's template in the background; the attack needs only that it exists.
    await eventually(`the driver to create ${aTemplate}`, () => env.ateapi.findActorTemplate({ atespace: 'default', name: aTemplate }));
  }, 300_000);

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
    expect(aTemplate).toMatch(/^sbx-tpl-[0-9a-f]{20}$/);
    expect(templateRefOf(env, a.id).owned).toBe(true);
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
    await refused(sandboxOf({ image: env.image, name: 'wrong-ws', workspace: 'team-y', driverConfig: { actor_template: 'team-x/shared-x' } }), OTHER_WORKSPACE);
    // No workspace means "default", which is not team-x either.
    await refused(sandboxOf({ image: env.image, name: 'default-ws', workspace: '', driverConfig: { actor_template: 'team-x/shared-x' } }), /not admitted by required labels.*this sandbox is in workspace "default"/);

    const ok = sandboxOf({ image: env.image, name: 'right-ws', workspace: 'team-x', driverConfig: { actor_template: 'team-x/shared-x' } });
    await env.client.validateSandboxCreate(ok);
    // The local Substrate here has 2 workers, and a template's golden actor holds one until its golden snapshot is
    // taken: wait for A's (the operator templates were provisioned with theirs), so the sandbox finds a free worker.
    await eventually(`the golden snapshot of ${aTemplate}`, async () => (await env.ateapi.getActorTemplate({ atespace: 'default', name: aTemplate })).status?.goldenSnapshotStatus?.goldenTag, 120_000, 200);
    await env.client.createSandbox(ok);
    const sb = await waitSandbox(env.client, ok.id, (x) => readyOf(x)?.status === 'True' || readyOf(x)?.status === 'False');
    expect(readyOf(sb), readyOf(sb)?.message).toMatchObject({ status: 'True' });
    expect((await env.ateapi.getActor({ atespace: 'team-x', name: ok.id })).actorTemplate).toEqual({ atespace: 'team-x', name: 'shared-x' });
    expect(await env.client.deleteSandbox(ok.id, ok.name)).toBe(true);
  });

  it('keeps the message for a template that does not exist', async () => {
    await refused(
      sandboxOf({ image: env.image, name: 'missing', driverConfig: { actor_template: 'no-such-template' } }),
      /^ActorTemplate default\/no-such-template named by template\.driver_config\.actor_template does not exist; create it first/,
    );
  });
});
