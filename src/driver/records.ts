// The driver's memory across restarts: one labelled Secret per sandbox in the configured namespace, holding
// what the gateway will never send again (id, name, workspace, the token) and what the driver decided
// (atespace, template, whether it owns the template, the desired state). The same Secret is the one the
// synthesized ActorTemplate references for the sandbox token (a secretKeyRef, never a literal).
//
// Record contents are never logged: the token and the launch authentication are in there.
import type { DriverSandbox } from '../gen/compute_driver.js';
import type { StorePort, StoredSecret } from './ports.js';

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'openshell-driver-substrate';
export const SANDBOX_ID_LABEL = 'openshell.ai/sandbox-id';
export const WORKSPACE_LABEL = 'openshell.ai/workspace';
/** Marks the Secret as a sandbox record (templates and other objects carry managed-by too). */
export const RECORD_LABEL = 'openshell.ai/sandbox-record';
export const RECORD_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY},${RECORD_LABEL}=v1`;

export type Desired = 'running' | 'stopped';

export interface SandboxRecord {
  id: string;
  name: string;
  workspace: string;
  atespace: string;
  templateNamespace: string;
  template: string;
  /** The driver synthesized the template and deletes it with the sandbox. */
  owned: boolean;
  desired: Desired;
  /** The gateway's sandbox JWT (may be ""). Secret. */
  token: string;
  createdAt: string;
  /** CreateActor succeeded: from here on, a missing actor is a failure. */
  provisioned: boolean;
  /** A provisioning failure, reported as Ready=False until the sandbox is deleted. */
  failureReason?: string;
  failureMessage?: string;
  /** Extra CreateActor worker selector (config plus driver_config). */
  workerSelector: Record<string, string>;
  /** The sandbox as the gateway sent it, without its secrets (for resuming provisioning after a restart). */
  sandbox: DriverSandbox;
  /** Random id fixed at create: the stable part of the runtime identity (a recreated sandbox gets another). */
  instance: string;
  /** Generation part of the runtime identity; bumped by every StartSandbox that starts the actor. */
  runtimeGeneration: number;
  /** The latest launch authentication (v0.1 gateways), base64 of the gateway's bytes; "" = none. Secret. */
  launch: string;
}

/** Record key of the launch authentication (in the same Secret as the token). */
export const LAUNCH_KEY = 'launch_authentication';

/** The Secret form. `tokenKey` is the key the synthesized template references. */
export function recordToSecret(r: SandboxRecord, tokenKey: string): { data: Record<string, string>; labels: Record<string, string> } {
  const sandbox = stripToken(r.sandbox);
  const data: Record<string, string> = {
    id: r.id,
    name: r.name,
    workspace: r.workspace,
    atespace: r.atespace,
    template_namespace: r.templateNamespace,
    template: r.template,
    owned: String(r.owned),
    desired: r.desired,
    created_at: r.createdAt,
    provisioned: String(r.provisioned),
    worker_selector: JSON.stringify(r.workerSelector),
    sandbox: JSON.stringify(sandbox),
  };
  data[tokenKey] = r.token;
  data[LAUNCH_KEY] = r.launch;
  data.instance = r.instance;
  data.runtime_generation = String(r.runtimeGeneration);
  if (r.failureReason) {
    data.failure_reason = r.failureReason;
    data.failure_message = r.failureMessage ?? '';
  }
  return {
    data,
    // Label values must be valid label values; the gateway's ids (UUIDs) and workspaces (DNS labels) are.
    labels: { [MANAGED_BY_LABEL]: MANAGED_BY, [RECORD_LABEL]: 'v1', [SANDBOX_ID_LABEL]: r.id, [WORKSPACE_LABEL]: r.workspace },
  };
}

/** Parses a record Secret; returns null (and the reason) for a Secret that is not a usable record. */
export function recordFromSecret(s: StoredSecret, tokenKey: string): { record: SandboxRecord } | { error: string } {
  const d = s.data;
  const need = ['id', 'name', 'workspace', 'atespace', 'template_namespace', 'template', 'desired'];
  const missing = need.filter((k) => typeof d[k] !== 'string' || d[k] === '');
  if (missing.length > 0) return { error: `secret ${s.name} lacks ${missing.join(', ')}` };
  if (d.desired !== 'running' && d.desired !== 'stopped') return { error: `secret ${s.name} has desired state "${d.desired}"` };
  let sandbox: DriverSandbox;
  let workerSelector: Record<string, string> = {};
  try {
    sandbox = d.sandbox ? (JSON.parse(d.sandbox) as DriverSandbox) : { id: d.id!, name: d.name!, namespace: '', workspace: d.workspace! };
    if (d.worker_selector) workerSelector = JSON.parse(d.worker_selector) as Record<string, string>;
  } catch {
    return { error: `secret ${s.name} holds unreadable JSON` };
  }
  return {
    record: {
      id: d.id!,
      name: d.name!,
      workspace: d.workspace!,
      atespace: d.atespace!,
      templateNamespace: d.template_namespace!,
      template: d.template!,
      owned: d.owned === 'true',
      desired: d.desired,
      token: d[tokenKey] ?? '',
      createdAt: d.created_at ?? '',
      provisioned: d.provisioned === 'true',
      failureReason: d.failure_reason || undefined,
      failureMessage: d.failure_message || undefined,
      workerSelector,
      sandbox,
      // Records written before runtime identities existed: their creation time is stable too.
      instance: d.instance || `c${Date.parse(d.created_at ?? '') || 0}`,
      runtimeGeneration: Math.max(1, Number.parseInt(d.runtime_generation ?? '1', 10) || 1),
      launch: d[LAUNCH_KEY] ?? '',
    },
  };
}

/** The sandbox without its secrets (sandbox token, launch authentication). */
export function stripToken(s: DriverSandbox): DriverSandbox {
  if (!s.spec) return s;
  return { ...s, spec: { ...s.spec, sandboxToken: '', launchAuthentication: Buffer.alloc(0) } };
}

/** In-memory map of records, written through to Secrets before any change is visible. */
export class RecordStore {
  private readonly byId = new Map<string, SandboxRecord>();

  constructor(
    private readonly store: StorePort,
    readonly namespace: string,
    private readonly secretNameFor: (id: string) => string,
    private readonly tokenKey: string,
  ) {}

  /** Loads every record Secret; returns the problems with Secrets that could not be read. */
  async load(): Promise<string[]> {
    const problems: string[] = [];
    const secrets = await this.store.listSecrets(this.namespace, RECORD_SELECTOR);
    this.byId.clear();
    for (const s of secrets) {
      const r = recordFromSecret(s, this.tokenKey);
      if ('error' in r) problems.push(r.error);
      else this.byId.set(r.record.id, r.record);
    }
    return problems;
  }

  get(id: string): SandboxRecord | undefined {
    return this.byId.get(id);
  }

  all(): SandboxRecord[] {
    return [...this.byId.values()];
  }

  get size(): number {
    return this.byId.size;
  }

  /** Persists then publishes a record (create or replace). */
  async put(r: SandboxRecord): Promise<void> {
    const { data, labels } = recordToSecret(r, this.tokenKey);
    await this.store.putSecret(this.namespace, this.secretNameFor(r.id), data, labels);
    this.byId.set(r.id, r);
  }

  /** Applies a change to a copy, persists it, then publishes it. */
  async update(id: string, change: Partial<SandboxRecord>): Promise<SandboxRecord> {
    const cur = this.byId.get(id);
    if (!cur) throw new Error(`no record for sandbox ${id}`);
    const next = { ...cur, ...change };
    await this.put(next);
    return next;
  }

  async remove(id: string): Promise<void> {
    await this.store.deleteSecret(this.namespace, this.secretNameFor(id));
    this.byId.delete(id);
  }
}
