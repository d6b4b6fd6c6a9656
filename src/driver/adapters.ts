// Wiring of the driver's ports to the real implementations: the TemplateStore of src/template/ over
// @kubernetes/client-node, and the pure template synthesis.
import type { DriverSandbox } from '../gen/compute_driver.js';
import type { TemplateStore } from '../template/store.js';
import {
  TOKEN_SECRET_KEY,
  synthesisProblem,
  synthesizeActorTemplate,
  templateNameFor,
  tokenSecretNameFor,
  type SynthesisConfig,
} from '../template/synthesize.js';
import type { StorePort, TemplatePort } from './ports.js';

export function storePort(s: TemplateStore): StorePort {
  return {
    ensureNamespace: (ns) => s.ensureNamespace(ns),
    applyTemplate: async (t) => {
      await s.apply(t);
    },
    getTemplate: (ns, name) => s.get(ns, name),
    deleteOwnedTemplate: (ns, name) => s.deleteOwned(ns, name),
    waitTemplateReady: async (ns, name, o) => {
      await s.waitReady(ns, name, o.timeoutMs, (phase, message) => o.onProgress?.({ phase, message }), o.signal);
    },
    putSecret: (ns, name, data, labels) => s.putSecret(ns, name, data, labels),
    getSecret: async (ns, name) => {
      const r = await s.getSecret(ns, name);
      return r ? { name, labels: r.labels, data: r.data } : null;
    },
    listSecrets: async (ns, sel) => (await s.listSecrets(ns, sel)).map((r) => ({ name: r.name, labels: r.labels, data: r.data })),
    deleteSecret: (ns, name) => s.deleteSecret(ns, name),
  };
}

export function templatePort(cfg: SynthesisConfig): TemplatePort {
  return {
    validate: (sb: DriverSandbox) => {
      const p = synthesisProblem(sb, cfg);
      if (p) throw p;
    },
    synthesize: (sb, hasToken) => synthesizeActorTemplate(sb, cfg, { hasToken }),
    templateNameFor,
    tokenSecretNameFor,
    tokenSecretKey: TOKEN_SECRET_KEY,
  };
}
