// Which ActorTemplates a sandbox may name (template.driver_config.actor_template or the annotation
// substrate_actor_template). Attaching a template gives the sandbox that template's golden snapshot, its
// identity and whatever environment (token references included) its author put there, so:
//
// 1. A template the driver synthesized (content-named `sbx-tpl-<hash>`) can never be named: it may carry
//    another sandbox's identity in its environment, and its life is tied to the sandboxes that use it. This
//    holds whatever the policy says.
// 2. A pre-provisioned template is an external resource under OpenShell v0.1 resource admission
//    (admission-policy.ts), and the operator chooses its scope by how it is labelled:
//    - attachable to ONE workspace: it carries the policy's `${workspace}` label(s) (default policy:
//      `openshell.ai/sandbox-attachable-workspace: "<workspace>"`) → upstream's admit(workspace): every
//      required label must match, the `${workspace}` ones with the sandbox's workspace;
//    - attachable to EVERY workspace: it carries none of the `${workspace}` labels → upstream's admit_shared
//      (as for shared operator infrastructure such as a RuntimeClass): the fixed approval labels must match
//      (default policy: `openshell.ai/sandbox-attachable: "true"`).
//    The operator's `resource_admission` table replaces the labels; `enabled = false` admits every
//    pre-provisioned template.
//
// Where a template's labels come from: Substrate v0.4 ActorTemplates carry no labels, so the operator marks
// templates attachable in the driver's config, `[openshell.drivers.substrate.template_labels."<atespace>/<name>"]`,
// and that is the only source. It is operator-controlled; caller metadata is never a label source.
//
// ValidateSandboxCreate and CreateSandbox both go through SubstrateDriver.validate, which calls
// attachRefusal once the named template has been read.
import { failedPrecondition, type ApiError } from '../common/errors.js';
import { isRecord, ownGet, ownSet } from '../common/own.js';
import { isSynthesizedTemplateName } from '../template/synthesize.js';
import {
  admissionFailure,
  DEFAULT_REQUIRED_LABELS,
  INVALID_WORKSPACE,
  NOT_ADMITTED,
  WORKSPACE_PLACEHOLDER,
  type DriverAdmissionConfig,
  type TemplateLabels,
} from './admission-policy.js';

export { NOT_ADMITTED } from './admission-policy.js';

/** Label an operator sets to "true" on a pre-provisioned ActorTemplate that sandboxes may name (default policy). */
export const ATTACHABLE_LABEL = 'openshell.ai/sandbox-attachable';
/** The value ATTACHABLE_LABEL must have under the default policy (exactly; label values are case-sensitive). */
export const ATTACHABLE_VALUE = DEFAULT_REQUIRED_LABELS[ATTACHABLE_LABEL]!;
/** Label naming the one workspace whose sandboxes may attach a resource (default policy: "${workspace}"). */
export const ATTACHABLE_WORKSPACE_LABEL = 'openshell.ai/sandbox-attachable-workspace';

/** @deprecated The label names of the default policy; the policy itself is a DriverAdmissionConfig now. */
export interface AdmissionLabels {
  attachable: string;
  workspace: string;
}

/** @deprecated See AdmissionLabels. */
export const DEFAULT_ADMISSION_LABELS: Readonly<AdmissionLabels> = Object.freeze({
  attachable: ATTACHABLE_LABEL,
  workspace: ATTACHABLE_WORKSPACE_LABEL,
});

/** The key of a template in template_labels: "<atespace>/<name>". */
export function templateRef(atespace: string, name: string): string {
  return `${atespace}/${name}`;
}

/**
 * The labels admission sees for the template `atespace/name`: `templateLabels["atespace/name"]` (v0.4
 * templates carry no labels of their own). Own string properties only; a null-prototype map.
 */
export function effectiveTemplateLabels(atespace: string, name: string, templateLabels: TemplateLabels): Record<string, string> {
  const out = Object.create(null) as Record<string, string>;
  const src = ownGet(templateLabels, templateRef(atespace, name));
  if (isRecord(src)) {
    for (const k of Object.keys(src)) {
      const v = src[k];
      if (typeof v === 'string') ownSet(out, k, v);
    }
  }
  return out;
}

const show = (v: string): string => JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v);

/**
 * Why a sandbox of `workspace` may not attach the existing template `atespace/name`, as a FAILED_PRECONDITION
 * ApiError, or null when it may. `policy` is the operator's admission policy (DriverConfig.admission) and
 * `templateLabels` the operator's template_labels (DriverConfig.templateLabels).
 */
export function attachRefusal(
  namespace: string,
  name: string,
  workspace: string,
  policy: DriverAdmissionConfig,
  templateLabels: TemplateLabels,
): ApiError | null {
  const ref = `ActorTemplate ${namespace}/${name}`;
  if (isSynthesizedTemplateName(name)) {
    return failedPrecondition(
      `${ref} was synthesized by the driver for other sandboxes and cannot be attached: a sandbox may name only pre-provisioned templates marked attachable`,
    );
  }
  const labels = effectiveTemplateLabels(namespace, name, templateLabels);
  // Workspace-scoped when it carries a label the policy fills with the workspace; shared otherwise.
  const scoped = Object.entries(policy.resourceAdmission.requiredLabels).some(
    ([k, v]) => v === WORKSPACE_PLACEHOLDER && Object.prototype.hasOwnProperty.call(labels, k),
  );
  const f = admissionFailure(policy, scoped ? workspace : null, labels);
  if (!f) return null;
  switch (f.kind) {
    case 'invalid-policy':
      return failedPrecondition(f.message);
    case 'invalid-workspace':
      return failedPrecondition(`${INVALID_WORKSPACE}: ${show(workspace)} is not a valid label value`);
    case 'unmet': {
      const how = `the operator marks a pre-provisioned template attachable with that label, in the driver config [openshell.drivers.substrate.template_labels."${templateRef(namespace, name)}"]`;
      if (f.workspace && f.actual !== undefined) {
        return failedPrecondition(
          `${NOT_ADMITTED}: ${ref} has label ${f.key}=${show(f.actual)}, which admits only sandboxes of workspace ${show(f.actual)}; this sandbox is in workspace ${show(workspace)}`,
        );
      }
      const has = f.actual === undefined ? 'it has no such label' : `it has ${f.key}=${show(f.actual)}`;
      const what = f.workspace ? " (the sandbox's workspace)" : '';
      return failedPrecondition(`${NOT_ADMITTED}: ${ref} needs label ${f.key}=${show(f.expected)}${what} (${has}); ${how}`);
    }
  }
}
