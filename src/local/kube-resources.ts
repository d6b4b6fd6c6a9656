// The control plane's view of ActorTemplates, WorkerPools and Secrets, read in-process from the local
// Substrate's Kubernetes-shaped resource API (the same validation, resourceVersions and watch events the
// driver and `local apply` see over HTTP).
import type { ApiServerHandle } from '../template/apiserver.js';
import type { PoolObj, Resources, TemplateObj } from './resources.js';

export function apiResources(api: ApiServerHandle): Resources {
  return {
    async getTemplate(ns, name) {
      return (await api.get('actortemplates', ns, name)) as unknown as TemplateObj | null;
    },
    async listTemplates() {
      return (await api.list('actortemplates')) as unknown as TemplateObj[];
    },
    async setTemplateStatus(ns, name, status) {
      await api.updateStatus('actortemplates', ns, name, () => status as Record<string, unknown>);
    },
    async listPools() {
      return (await api.list('workerpools')) as unknown as PoolObj[];
    },
    async getSecretValue(ns, name, key) {
      const s = (await api.get('secrets', ns, name)) as { data?: Record<string, string>; stringData?: Record<string, string> } | null;
      if (!s) return { found: 'secret-missing' };
      if (s.stringData && key in s.stringData) return { value: s.stringData[key]! };
      if (s.data && key in s.data) return { value: Buffer.from(s.data[key]!, 'base64').toString('utf8') };
      return { found: 'key-missing' };
    },
  };
}
