// Property access for objects decoded from untrusted input (request bodies, YAML, JSON). Reads see own
// properties only and writes define own data properties, so a key such as `__proto__`, `constructor` or
// `prototype` is never followed into Object.prototype or a constructor, whatever the input holds.

/** The key whose assignment would replace an object's prototype; never copied from input. */
export const PROTO_KEY = '__proto__';

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** o[k] when k is o's own property, else undefined (never an inherited value). */
export function ownGet(o: unknown, k: string): unknown {
  return isRecord(o) && Object.hasOwn(o, k) ? o[k] : undefined;
}

/** Defines k as an own data property of o; never invokes a setter (`__proto__`) or writes through to a prototype. */
export function ownSet(o: Record<string, unknown>, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });
}

/** Own enumerable entries, without `__proto__`. */
export function ownEntries(o: Record<string, unknown>): Array<[string, unknown]> {
  return Object.entries(o).filter(([k]) => k !== PROTO_KEY);
}

/** The path of the first `__proto__` key anywhere in v (e.g. `spec.__proto__`), or undefined. */
export function findProtoKey(v: unknown, path = ''): string | undefined {
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const hit = findProtoKey(v[i], `${path}[${i}]`);
      if (hit) return hit;
    }
  } else if (isRecord(v)) {
    for (const k of Object.keys(v)) {
      const p = path ? `${path}.${k}` : k;
      if (k === PROTO_KEY) return p;
      const hit = findProtoKey(v[k], p);
      if (hit) return hit;
    }
  }
  return undefined;
}
