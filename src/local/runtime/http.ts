// HTTP to a sandbox through the runtime's hub forwarder (no address in the root netns).
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Runtime, WorkerSlot } from './types.js';

type CreateConnection = (opts: unknown, cb: (err: Error | null, socket?: Socket) => void) => undefined;

/**
 * A `createConnection` for http.request / http.Agent options: every new connection is
 * `runtime.connect(slot, port)`. Example: `http.request({ createConnection: sandboxConnector(rt, slot, 8080), path: '/' })`.
 */
export function sandboxConnector(runtime: Pick<Runtime, 'connect'>, slot: WorkerSlot, port: number): CreateConnection {
  return (_opts, cb) => {
    runtime.connect(slot, port).then(
      (s) => cb(null, s),
      (e: Error) => cb(e),
    );
    return undefined;
  };
}

export interface HttpViaOptions {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  timeoutMs?: number;
}

export interface HttpViaResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
}

/** One HTTP request to <slot ip>:<port> inside the worker namespace, through the forwarder. */
export function httpRequestVia(runtime: Pick<Runtime, 'connect'>, slot: WorkerSlot, port: number, o: HttpViaOptions = {}): Promise<HttpViaResponse> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { host: `${slot.ip}:${port}`, connection: 'close', ...(o.headers ?? {}) };
    if (o.body !== undefined) headers['content-length'] = Buffer.byteLength(o.body);
    const req = http.request({
      method: o.method ?? 'GET',
      path: o.path ?? '/',
      headers,
      createConnection: sandboxConnector(runtime, slot, port) as unknown as http.RequestOptions['createConnection'],
    });
    const timer = setTimeout(() => req.destroy(new Error(`HTTP ${o.method ?? 'GET'} ${o.path ?? '/'} to ${slot.ip}:${port} timed out after ${timeoutMs} ms`)), timeoutMs);
    req.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      res.once('end', () => {
        clearTimeout(timer);
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString('utf8') });
      });
    });
    req.end(o.body);
  });
}
