// The driver's memory across restarts: one record per sandbox, holding what the gateway will never send again
// (id, name, workspace, the sandbox token, the latest launch authentication) and what the driver decided
// (atespace, template, whether it synthesized that template, the desired state, the runtime identity).
// Stored through a RecordBackend (record-backends.ts): the driver's own SQLite file (0600) locally,
// labelled Kubernetes Secrets in a cluster. The string-map form below is the same for both (and the same
// keys the Kubernetes-template era used, so cluster records written then are still read).
//
// Record contents are never logged: the token and the launch authentication are in there.
import type { DriverSandbox } from '../gen/compute_driver.js';
import type { RecordBackend } from './ports.js';

export type Desired = 'running' | 'stopped';

export interface SandboxRecord {
  id: string;
  name: string;
  workspace: string;
  atespace: string;
  /** The atespace of the template the actor is created from. */
  templateAtespace: string;
  template: string;
  /** The driver synthesized the template (content-named, shared); it is deleted when no record uses it. */
  owned: boolean;
  /** Content hash of a synthesized template (checked when it already exists); "" for pre-provisioned ones. */
  templateHash: string;
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

/** Record keys of the secrets. */
export const TOKEN_KEY = 'token';
export const LAUNCH_KEY = 'launch_authentication';

/** The string-map form of a record (what a backend stores). */
export function recordToData(r: SandboxRecord): Record<string, string> {
  const data: Record<string, string> = {
    id: r.id,
    name: r.name,
    workspace: r.workspace,
    atespace: r.atespace,
    template_namespace: r.templateAtespace,
    template: r.template,
    owned: String(r.owned),
    template_hash: r.templateHash,
    desired: r.desired,
    created_at: r.createdAt,
    provisioned: String(r.provisioned),
    worker_selector: JSON.stringify(r.workerSelector),
    sandbox: JSON.stringify(stripToken(r.sandbox)),
    [TOKEN_KEY]: r.token,
    [LAUNCH_KEY]: r.launch,
    instance: r.instance,
    runtime_generation: String(r.runtimeGeneration),
  };
  if (r.failureReason) {
    data.failure_reason = r.failureReason;
    data.failure_message = r.failureMessage ?? '';
  }
  return data;
}

/** Parses a stored record; returns the reason for one that is not a usable record (never its content). */
export function recordFromData(key: string, d: Record<string, string>): { record: SandboxRecord } | { error: string } {
  const need = ['id', 'name', 'workspace', 'atespace', 'template_namespace', 'template', 'desired'];
  const missing = need.filter((k) => typeof d[k] !== 'string' || d[k] === '');
  if (missing.length > 0) return { error: `record ${key} lacks ${missing.join(', ')}` };
  if (d.desired !== 'running' && d.desired !== 'stopped') return { error: `record ${key} has an unknown desired state` };
  let sandbox: DriverSandbox;
  let workerSelector: Record<string, string> = {};
  try {
    sandbox = d.sandbox ? (JSON.parse(d.sandbox) as DriverSandbox) : { id: d.id!, name: d.name!, namespace: '', workspace: d.workspace! };
    if (d.worker_selector) workerSelector = JSON.parse(d.worker_selector) as Record<string, string>;
  } catch {
    return { error: `record ${key} holds unreadable JSON` };
  }
  // JSON turned the launch bytes into {type:'Buffer',data} or a plain object: they were stripped anyway.
  if (sandbox.spec) sandbox = { ...sandbox, spec: { ...sandbox.spec, sandboxToken: '', launchAuthentication: Buffer.alloc(0) } };
  return {
    record: {
      id: d.id!,
      name: d.name!,
      workspace: d.workspace!,
      atespace: d.atespace!,
      templateAtespace: d.template_namespace!,
      template: d.template!,
      owned: d.owned === 'true',
      templateHash: d.template_hash ?? '',
      desired: d.desired,
      token: d[TOKEN_KEY] ?? '',
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

/** In-memory map of records, written through to the backend before any change is visible. */
export class RecordStore {
  private readonly byId = new Map<string, SandboxRecord>();

  constructor(private readonly backend: RecordBackend) {}

  get describe(): string {
    return this.backend.describe;
  }

  /** Prepares the backend and loads every record; returns the problems with records that could not be read. */
  async load(): Promise<string[]> {
    await this.backend.init();
    const problems: string[] = [];
    const rows = await this.backend.list();
    this.byId.clear();
    for (const row of rows) {
      const r = recordFromData(row.key, row.data);
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
    await this.backend.put(r.id, recordToData(r));
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
    await this.backend.remove(id);
    this.byId.delete(id);
  }

  /** Records (other than `exceptId`) whose sandbox uses the template atespace/name. */
  usersOf(atespace: string, name: string, exceptId?: string): SandboxRecord[] {
    return this.all().filter((r) => r.id !== exceptId && r.templateAtespace === atespace && r.template === name);
  }

  close(): void {
    this.backend.close?.();
  }
}
