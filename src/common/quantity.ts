// Kubernetes resource quantities ("500m", "2", "1.5", "512Mi", "1G", "1e3"), as ActorTemplate resource
// limits and the gateway's resource requirements write them.

const SUFFIX: Readonly<Record<string, number>> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

const RE = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)|[eE]([+-]?\d+))?$/;

/** The quantity's value (cores for cpu, bytes for memory), or undefined when it is not a quantity. */
export function parseQuantity(q: string): number | undefined {
  const m = RE.exec(q.trim());
  if (!m || q.trim() !== q) return undefined;
  const base = Number(m[1]);
  const v = m[3] !== undefined ? base * 10 ** Number(m[3]) : base * SUFFIX[m[2] ?? '']!;
  return Number.isFinite(v) ? v : undefined;
}
