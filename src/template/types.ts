// Shapes of the Kubernetes objects the driver and the local Substrate exchange: the pinned
// `ate.dev/v1alpha1` ActorTemplate and WorkerPool CRDs (ateapi.md §3) and the core v1 Namespace and Secret
// subsets we use. Field names are the JSON names of the upstream Go types
// (pkg/api/v1alpha1/actortemplate_types.go, workerpool_types.go).

export const ATE_GROUP = 'ate.dev';
export const ATE_VERSION = 'v1alpha1';
export const ATE_API_VERSION = 'ate.dev/v1alpha1';

/** metav1.ObjectMeta, the subset we read and write. */
export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  resourceVersion?: string;
  uid?: string;
  creationTimestamp?: string;
  generation?: number;
  managedFields?: ManagedFieldsEntry[];
}

export interface ManagedFieldsEntry {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion: string;
  time?: string;
  fieldsType?: 'FieldsV1';
  fieldsV1?: Record<string, unknown>;
  subresource?: string;
}

/** metav1.Condition. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  observedGeneration?: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

/** metav1.LabelSelector. */
export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

// ---------------------------------------------------------------------------------------------------------
// ActorTemplate

export type SandboxClass = 'gvisor' | 'microvm';
export type SnapshotScope = 'Full' | 'Data';
export type ActorTemplatePhase = '' | 'ResumeGoldenActor' | 'WaitGoldenActor' | 'Ready' | 'Failed';

export interface SecretKeySelector {
  name: string;
  key: string;
  optional?: boolean;
}

/** Exactly one property; only secretKeyRef exists in the pinned CRD. */
export interface EnvVarSource {
  secretKeyRef?: SecretKeySelector;
}

/** Exactly one of value / valueFrom. No $(VAR) expansion, no envFrom. */
export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: EnvVarSource;
}

export interface HTTPGetAction {
  /** Default `/readyz`. */
  path?: string;
  port: number;
}

export interface ContainerReadyz {
  httpGet: HTTPGetAction;
}

export interface VolumeMount {
  name: string;
  mountPath: string;
}

export interface Container {
  name: string;
  image: string;
  command?: string[];
  env?: EnvVar[];
  readyz?: ContainerReadyz;
  volumeMounts?: VolumeMount[];
}

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface DurableDirVolumeSource {}

export interface Volume {
  name: string;
  durableDir?: DurableDirVolumeSource;
}

export interface SnapshotsConfig {
  location: string;
  /** Default `Full`. */
  onPause?: SnapshotScope;
  /** Default `Full`; must be a subset of onPause. */
  onCommit?: SnapshotScope;
}

export interface ActorTemplateSpec {
  pauseImage: string;
  containers?: Container[];
  volumes?: Volume[];
  snapshotsConfig: SnapshotsConfig;
  /** Default `gvisor`. */
  sandboxClass?: SandboxClass;
  workerSelector?: LabelSelector;
  /** Substrate v0.4's template resources: cpu and memory limits (Kubernetes quantities). */
  resources?: { limits?: Array<{ name: 'cpu' | 'memory'; quantity: string }> };
}

export interface ActorTemplateStatus {
  phase?: ActorTemplatePhase | string;
  goldenActorID?: string;
  /** metav1.Time (RFC 3339). */
  takeGoldenSnapshotAt?: string;
  goldenSnapshot?: string;
  conditions?: Condition[];
}

export interface ActorTemplate {
  apiVersion: 'ate.dev/v1alpha1';
  kind: 'ActorTemplate';
  metadata: ObjectMeta;
  spec: ActorTemplateSpec;
  status?: ActorTemplateStatus;
}

// ---------------------------------------------------------------------------------------------------------
// WorkerPool

export interface WorkerPoolPodTemplate {
  nodeSelector?: Record<string, string>;
  /** corev1.Toleration, at most 16. */
  tolerations?: Array<Record<string, unknown>>;
  priorityClassName?: string;
  /** corev1.NodeAffinity. */
  nodeAffinity?: Record<string, unknown>;
  /** corev1.ResourceRequirements. */
  resources?: Record<string, unknown>;
}

export interface WorkerPoolSpec {
  replicas: number;
  ateomImage: string;
  /** Default `gvisor`. */
  sandboxClass?: SandboxClass;
  sandboxConfigName?: string;
  template?: WorkerPoolPodTemplate;
}

export interface WorkerPoolStatus {
  replicas?: number;
  readyReplicas?: number;
  selector?: string;
}

export interface WorkerPool {
  apiVersion: 'ate.dev/v1alpha1';
  kind: 'WorkerPool';
  metadata: ObjectMeta;
  spec: WorkerPoolSpec;
  status?: WorkerPoolStatus;
}

// ---------------------------------------------------------------------------------------------------------
// Core v1

export interface Namespace {
  apiVersion: 'v1';
  kind: 'Namespace';
  metadata: ObjectMeta;
  spec?: { finalizers?: string[] };
  status?: { phase?: 'Active' | 'Terminating' };
}

export interface Secret {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: ObjectMeta;
  /** Default `Opaque`. */
  type?: string;
  /** Values are base64. */
  data?: Record<string, string>;
  /** Write-only convenience: merged into `data` by the API server, never stored or returned. */
  stringData?: Record<string, string>;
  immutable?: boolean;
}

/** Anything with apiVersion/kind/metadata. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [k: string]: unknown;
}

export type ManifestObject = Namespace | Secret | WorkerPool | ActorTemplate;

/** metav1.Status, as the API server returns on errors (and some deletes). */
export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}
export interface KubeStatus {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, unknown>;
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: { name?: string; group?: string; kind?: string; uid?: string; causes?: StatusCause[] };
  code: number;
}
