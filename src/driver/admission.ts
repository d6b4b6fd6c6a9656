// Which ActorTemplates a sandbox may name (template.driver_config.actor_template or the annotation
// substrate_actor_template). Attaching a template gives the sandbox that template's golden snapshot, its
// identity and whatever environment (token references included) its author put there, so:
//
// 1. A template the driver synthesized for a sandbox (it carries the driver's owner annotation) can never be
//    named: it is another sandbox's identity and token environment.
// 2. A pre-provisioned template must be marked attachable by the operator with the label
//    `openshell.ai/sandbox-attachable: "true"`; the optional label
//    `openshell.ai/sandbox-attachable-workspace: "<workspace>"` restricts it to sandboxes of that workspace.
//    The names are the ones OpenShell v0.1's resource admission uses by default.
//
// ValidateSandboxCreate and CreateSandbox both go through SubstrateDriver.validate, which calls
// attachRefusal once the named template has been read.
import { failedPrecondition, type ApiError } from '../common/errors.js';
import { OWNER_ANNOTATION, OWNER_VALUE } from '../template/synthesize.js';
import type { ActorTemplate } from '../template/types.js';

/** Label an operator sets to "true" on a pre-provisioned ActorTemplate that sandboxes may name. */
export const ATTACHABLE_LABEL = 'openshell.ai/sandbox-attachable';
/** The value ATTACHABLE_LABEL must have (exactly; label values are case-sensitive). */
export const ATTACHABLE_VALUE = 'true';
/** Optional label restricting an attachable template to the sandboxes of one workspace. */
export const ATTACHABLE_WORKSPACE_LABEL = 'openshell.ai/sandbox-attachable-workspace';

/** The label names admission checks; one object so a later change can make them configurable. */
export interface AdmissionLabels {
  attachable: string;
  workspace: string;
}

export const DEFAULT_ADMISSION_LABELS: Readonly<AdmissionLabels> = Object.freeze({
  attachable: ATTACHABLE_LABEL,
  workspace: ATTACHABLE_WORKSPACE_LABEL,
});

/** Prefix of every refusal for a missing or mismatched admission label. */
export const NOT_ADMITTED = 'external resource not admitted by required labels';

/**
 * Why a sandbox of `workspace` may not attach the existing template `t` (read from `namespace/name`), as a
 * FAILED_PRECONDITION ApiError, or null when it may.
 */
export function attachRefusal(
  t: ActorTemplate,
  namespace: string,
  name: string,
  workspace: string,
  labels: AdmissionLabels = DEFAULT_ADMISSION_LABELS,
): ApiError | null {
  const ref = `ActorTemplate ${namespace}/${name}`;
  if (t.metadata?.annotations?.[OWNER_ANNOTATION] === OWNER_VALUE) {
    return failedPrecondition(
      `${ref} was synthesized by the driver for another sandbox and cannot be attached: a sandbox may name only pre-provisioned templates marked attachable`,
    );
  }
  const l = t.metadata?.labels ?? {};
  const attachable = Object.prototype.hasOwnProperty.call(l, labels.attachable) ? l[labels.attachable] : undefined;
  if (attachable !== ATTACHABLE_VALUE) {
    const has = attachable === undefined ? 'it has no such label' : `it has ${labels.attachable}=${JSON.stringify(attachable)}`;
    return failedPrecondition(
      `${NOT_ADMITTED}: ${ref} needs label ${labels.attachable}=${JSON.stringify(ATTACHABLE_VALUE)} (${has}); the operator marks a pre-provisioned template attachable with that label`,
    );
  }
  if (Object.prototype.hasOwnProperty.call(l, labels.workspace)) {
    const only = l[labels.workspace] ?? '';
    if (only !== workspace) {
      return failedPrecondition(
        `${NOT_ADMITTED}: ${ref} has label ${labels.workspace}=${JSON.stringify(only)}, which admits only sandboxes of workspace ${JSON.stringify(only)}; this sandbox is in workspace ${JSON.stringify(workspace)}`,
      );
    }
  }
  return null;
}
