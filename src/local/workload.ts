// From an ActorTemplate (v0.4, src/gen/ateapi.ts) to what the local gVisor runtime runs (WorkloadSpec), and
// the wakeup probe that gates a resume.
//
// One container per actor locally: a template with more is refused at template creation (src/local/templates.ts);
// one that reaches us anyway runs containers[0] (logged). argv = command + args, literal env values (never
// logged), the image resolved to a local root filesystem, limits = the instance's ceilings lowered by the
// template's cpu/memory limits, egress = instance-wide allowances plus the actor's own.
import http from 'node:http';
import * as pb from '../gen/ateapi.js';
import { failedPrecondition } from '../common/errors.js';
import { logger } from '../common/log.js';
import { parseQuantity } from '../common/quantity.js';
import type { EgressRule, Runtime, WorkerSlot, WorkloadSpec } from './runtime/types.js';
import type { SandboxClassName } from './workers.js';

const log = logger('local.workload');

export interface ImageResolver {
  /** `local/<name>@sha256:<hex>` → its root filesystem and digest (src/local/images.ts resolveImage). */
  resolve(ref: string): Promise<{ rootfs: string; digest: string }>;
}

/** What one actor may use. */
export interface ActorLimits {
  memoryBytes: number;
  cpuMillis: number;
  /** Tasks (processes and threads) inside the sandbox. */
  pids: number;
  /** Size of the workload's /tmp. */
  tmpBytes: number;
  /** The workload log is rotated (one previous file kept) once it passes this size. */
  logBytes: number;
}

export const DEFAULT_ACTOR_LIMITS: Readonly<ActorLimits> = {
  memoryBytes: 1024 * 1024 * 1024,
  cpuMillis: 1000,
  pids: 1024,
  tmpBytes: 256 * 1024 * 1024,
  logBytes: 16 * 1024 * 1024,
};

/** Default wakeup probe timeout (ContainerWakeupProbe.timeout_seconds unset). */
export const DEFAULT_WAKEUP_TIMEOUT_S = 30;

/** DEFAULT_ACTOR_LIMITS with what the instance was configured with (unset keys keep the default). */
export function instanceLimits(partial?: Partial<ActorLimits>): ActorLimits {
  const l: ActorLimits = { ...DEFAULT_ACTOR_LIMITS };
  for (const k of Object.keys(l) as Array<keyof ActorLimits>) {
    const v = partial?.[k];
    if (v !== undefined) l[k] = v;
  }
  return l;
}

/**
 * The instance's limits lowered by the template's own cpu and memory limits where it sets them. The instance's
 * limits are ceilings set by the operator: a template can ask for less, never for more.
 */
export function limitsOf(tpl: Pick<pb.ActorTemplate, 'resources'>, instance: ActorLimits): ActorLimits {
  const l = { ...instance };
  for (const { name, quantity } of tpl.resources?.limits ?? []) {
    const v = parseQuantity(quantity);
    if (v === undefined || v <= 0) continue; // validated at template creation
    if (name === 'memory') l.memoryBytes = Math.min(l.memoryBytes, Math.max(16 * 1024 * 1024, Math.round(v)));
    if (name === 'cpu') l.cpuMillis = Math.min(l.cpuMillis, Math.max(10, Math.round(v * 1000)));
  }
  return l;
}

/** The limits as a Resources message (what a worker assignment records). */
export function resourcesOf(l: ActorLimits): pb.Resources {
  return {
    limits: [
      { name: 'cpu', quantity: `${l.cpuMillis}m` },
      { name: 'memory', quantity: String(l.memoryBytes) },
    ],
  };
}

export function sandboxClassOf(tpl: Pick<pb.ActorTemplate, 'sandboxConfig'>): SandboxClassName {
  return tpl.sandboxConfig?.sandboxClass === pb.SandboxClass.SANDBOX_CLASS_MICROVM ? 'microvm' : 'gvisor';
}

function templateName(tpl: pb.ActorTemplate): string {
  return `${tpl.metadata?.atespace ?? ''}/${tpl.metadata?.name ?? ''}`;
}

/** The container the local Substrate runs for a template. */
export function containerOf(tpl: pb.ActorTemplate): pb.Container {
  const c = tpl.containers[0];
  if (!c) throw failedPrecondition(`ActorTemplate ${templateName(tpl)} has no containers`);
  if (tpl.containers.length > 1) {
    log.warn('template has more than one container; the local Substrate runs only the first', { template: templateName(tpl), containers: tpl.containers.length });
  }
  return c;
}

export interface WorkloadOptions {
  images: ImageResolver;
  limits: ActorLimits;
  /** Instance-wide allowances plus the actor's own. */
  egress: EgressRule[];
}

/** The runtime's workload for a template. FAILED_PRECONDITION for what no start could fix (argv, image). */
export async function workloadOf(tpl: pb.ActorTemplate, o: WorkloadOptions): Promise<WorkloadSpec> {
  const c = containerOf(tpl);
  const argv = [...c.command, ...c.args];
  if (c.command.length === 0 || argv.length === 0) {
    throw failedPrecondition(
      `container "${c.name}" of ActorTemplate ${templateName(tpl)} has no command; local images have no default entrypoint, so set containers[0].command`,
    );
  }
  const env: Record<string, string> = {};
  for (const e of c.env) Object.defineProperty(env, e.name, { value: e.value, enumerable: true, configurable: true, writable: true });
  let image: { rootfs: string; digest: string };
  try {
    image = await o.images.resolve(c.image);
  } catch (e) {
    throw failedPrecondition(`container "${c.name}": ${(e as Error).message}`);
  }
  const l = limitsOf(tpl, o.limits);
  return {
    command: argv,
    env,
    rootfs: image.rootfs,
    imageDigest: image.digest,
    egress: dedupeEgress(o.egress),
    memoryLimitBytes: l.memoryBytes,
    cpuMillis: l.cpuMillis,
    pidsLimit: l.pids,
    tmpBytes: l.tmpBytes,
  };
}

function dedupeEgress(rules: EgressRule[]): EgressRule[] {
  const seen = new Set<number>();
  const out: EgressRule[] = [];
  for (const r of rules) {
    if (seen.has(r.port)) continue;
    seen.add(r.port);
    out.push({ host: '127.0.0.1', port: r.port });
  }
  return out;
}

/** The wakeup probe of the container, if it declares one. */
export function wakeupProbeOf(tpl: pb.ActorTemplate): { path: string; port: number; timeoutMs: number } | undefined {
  const p = containerOf(tpl).wakeupProbe;
  if (!p?.httpGet) return undefined;
  return {
    path: p.httpGet.path || '/',
    port: p.httpGet.port,
    timeoutMs: (p.timeoutSeconds > 0 ? p.timeoutSeconds : DEFAULT_WAKEUP_TIMEOUT_S) * 1000,
  };
}

/**
 * One HTTP GET into a worker namespace through the runtime's forwarder, bounded by `timeoutMs` whatever
 * happens (connect included): http.request's own timeout never fires on a socket handed in through
 * createConnection, and a sandbox killed mid-probe never closes its end.
 */
export async function httpStatus(runtime: Pick<Runtime, 'connect'>, slot: WorkerSlot, port: number, path: string, timeoutMs: number): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const sock = await Promise.race([runtime.connect(slot, port), deadline]);
    return await Promise.race([
      new Promise<number>((resolve, reject) => {
        const req = http.request({ createConnection: () => sock, path, method: 'GET', headers: { host: `${slot.ip}:${port}`, connection: 'close' } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      }),
      deadline.catch((e: unknown) => {
        sock.destroy();
        throw e;
      }),
    ]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}
