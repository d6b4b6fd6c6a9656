// What the local Substrate's control plane reads from its Kubernetes-shaped resources (ActorTemplates,
// WorkerPools, Secrets), independent of how the resource API stores them.

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }>;
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean } };
}

export interface ContainerSpec {
  name: string;
  image: string;
  command?: string[];
  env?: EnvVar[];
  readyz?: { httpGet?: { path?: string; port: number } };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}

export interface TemplateObj {
  apiVersion: string;
  kind: 'ActorTemplate';
  metadata: { name: string; namespace: string; labels?: Record<string, string>; annotations?: Record<string, string>; uid?: string };
  spec: {
    pauseImage: string;
    containers: ContainerSpec[];
    volumes?: Array<{ name: string; durableDir?: Record<string, never> }>;
    snapshotsConfig: { location: string; onPause?: 'Full' | 'Data'; onCommit?: 'Full' | 'Data' };
    sandboxClass?: 'gvisor' | 'microvm';
    workerSelector?: LabelSelector;
    /** Local Substrate extension: host loopback ports the workload may reach (default none). */
    egress?: Array<{ port: number }>;
    /** cpu and memory limits (Substrate v0.4's template resources). */
    resources?: { limits?: Array<{ name: string; quantity: string }> };
  };
  status?: {
    phase?: string;
    goldenActorID?: string;
    takeGoldenSnapshotAt?: string;
    goldenSnapshot?: string;
    conditions?: Array<{ type: string; status: string; reason?: string; message?: string; lastTransitionTime?: string }>;
  };
}

export interface PoolObj {
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  spec: { replicas: number; ateomImage: string; sandboxClass?: 'gvisor' | 'microvm' };
}

export interface Resources {
  getTemplate(namespace: string, name: string): Promise<TemplateObj | null>;
  listTemplates(): Promise<TemplateObj[]>;
  /** Writes status only (the status subresource); spec is immutable. */
  setTemplateStatus(namespace: string, name: string, status: NonNullable<TemplateObj['status']>): Promise<void>;
  listPools(): Promise<PoolObj[]>;
  getSecretValue(namespace: string, name: string, key: string): Promise<{ found: 'secret-missing' | 'key-missing' } | { value: string }>;
}

export function selectorMatches(sel: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!sel) return true;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    const val = labels[e.key];
    switch (e.operator) {
      case 'In':
        if (!has || !(e.values ?? []).includes(val!)) return false;
        break;
      case 'NotIn':
        if (has && (e.values ?? []).includes(val!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}
