// Where the driver and the CLI dial ateapi, and when plaintext is allowed: a Unix socket, a local
// Substrate on loopback, or an explicit api_plaintext; TLS everywhere else.
import { describe, expect, it } from 'vitest';
import { isLoopbackTarget, loadConfig, targetHost } from '../../src/common/config.js';
import { resolveApiTarget } from '../../src/substrate/client.js';

const cfg = (flags: Record<string, string | boolean> = {}) => loadConfig({ env: { HOME: '/h' }, flags });

describe('resolveApiTarget', () => {
  it('uses TLS for a configured TCP endpoint, loopback included', () => {
    expect(resolveApiTarget(cfg({ api_endpoint: 'api.ate-system.svc:443' }))).toEqual({ endpoint: 'api.ate-system.svc:443', plaintext: false, origin: 'config' });
    expect(resolveApiTarget(cfg({ api_endpoint: '127.0.0.1:8443' })).plaintext).toBe(false);
  });

  it('allows plaintext for a Unix socket, for api_plaintext, and for the running local Substrate', () => {
    expect(resolveApiTarget(cfg({ api_endpoint: 'unix:/run/ate.sock' })).plaintext).toBe(true);
    expect(resolveApiTarget(cfg({ api_endpoint: '10.0.0.5:80', api_plaintext: true })).plaintext).toBe(true);
    expect(resolveApiTarget(cfg(), 'unix:/s/ateapi.sock')).toEqual({ endpoint: 'unix:/s/ateapi.sock', plaintext: true, origin: 'local' });
    expect(resolveApiTarget(cfg(), '127.0.0.1:7000').plaintext).toBe(true);
    expect(resolveApiTarget(cfg({ api_endpoint: '127.0.0.1:7000' }), '127.0.0.1:7000')).toEqual({ endpoint: '127.0.0.1:7000', plaintext: true, origin: 'local' });
  });

  it('keeps TLS for a local Substrate that serves TLS', () => {
    expect(resolveApiTarget(cfg(), '127.0.0.1:7000', true).plaintext).toBe(false);
  });

  it('prefers the configured endpoint over a local Substrate', () => {
    expect(resolveApiTarget(cfg({ api_endpoint: 'api:443' }), 'unix:/s/ateapi.sock')).toEqual({ endpoint: 'api:443', plaintext: false, origin: 'config' });
  });

  it('names what to configure when there is no endpoint at all', () => {
    expect(() => resolveApiTarget(cfg())).toThrow(/no ateapi endpoint: set api_endpoint/);
  });
});

describe('target parsing', () => {
  it('finds the host of every grpc-js target form', () => {
    expect(targetHost('dns:///api.ate-system.svc:443')).toBe('api.ate-system.svc');
    expect(targetHost('dns://8.8.8.8/api:443')).toBe('api');
    expect(targetHost('[::1]:50051')).toBe('::1');
    expect(targetHost('localhost:1')).toBe('localhost');
    expect(targetHost('unix:/x')).toBe('');
    expect(isLoopbackTarget('127.3.4.5:1')).toBe(true);
    expect(isLoopbackTarget('[::1]:1')).toBe(true);
    expect(isLoopbackTarget('10.0.0.1:1')).toBe(false);
  });
});
