// The one table from backend errors (ateapi gRPC codes, Kubernetes API errors, Node runtime errors) to the
// codes the driver returns to the gateway.
import { ApiException } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { ApiError, Code, GRPC_BACKEND_CODES, KUBE_HTTP_CODES, mapBackendError } from '../../src/common/errors.js';

const grpcErr = (code: number, details: string) => Object.assign(new Error(`${code} ${Code[code]}: ${details}`), { code, details, metadata: {} });

describe('ateapi gRPC codes', () => {
  const cases: Array<[Code, Code]> = [
    [Code.NOT_FOUND, Code.NOT_FOUND],
    [Code.ALREADY_EXISTS, Code.ALREADY_EXISTS],
    [Code.INVALID_ARGUMENT, Code.INVALID_ARGUMENT],
    [Code.FAILED_PRECONDITION, Code.FAILED_PRECONDITION],
    [Code.ABORTED, Code.ABORTED],
    [Code.UNAVAILABLE, Code.UNAVAILABLE],
    [Code.DEADLINE_EXCEEDED, Code.DEADLINE_EXCEEDED],
    [Code.RESOURCE_EXHAUSTED, Code.RESOURCE_EXHAUSTED],
    [Code.INTERNAL, Code.INTERNAL],
    [Code.UNKNOWN, Code.INTERNAL],
    [Code.DATA_LOSS, Code.INTERNAL],
    [Code.UNAUTHENTICATED, Code.FAILED_PRECONDITION],
    [Code.PERMISSION_DENIED, Code.FAILED_PRECONDITION],
    [Code.UNIMPLEMENTED, Code.FAILED_PRECONDITION],
    [Code.CANCELLED, Code.CANCELLED],
    [Code.OUT_OF_RANGE, Code.INVALID_ARGUMENT],
  ];
  for (const [from, to] of cases) {
    it(`${Code[from]} → ${Code[to]}`, () => {
      const m = mapBackendError(grpcErr(from, 'upstream says so'), 'SuspendActor demo/sb');
      expect(m).toBeInstanceOf(ApiError);
      expect(m.code).toBe(to);
      expect(m.message).toContain('SuspendActor demo/sb: ateapi');
      expect(m.message).toContain('upstream says so');
      expect(m.message).not.toMatch(/^\d+ [A-Z_]+:/); // grpc-js's "9 FAILED_PRECONDITION:" prefix is dropped
    });
  }

  it('UNAVAILABLE from a failed TLS handshake names the TLS settings to check', () => {
    const tls = mapBackendError(grpcErr(Code.UNAVAILABLE, 'No connection established. Last error: Error: self-signed certificate'), 'create atespace default');
    expect(tls.code).toBe(Code.UNAVAILABLE);
    expect(tls.message).toMatch(/check api_tls_ca_path .* api_tls_server_name/);
    const plain = mapBackendError(grpcErr(Code.UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1'));
    expect(plain.message).not.toMatch(/api_tls_ca_path/);
  });

  it('covers every gRPC code', () => {
    for (let c = 1; c <= 16; c++) expect(GRPC_BACKEND_CODES[c]).toBeDefined();
  });

  it('tells what to fix when ateapi refuses the driver credentials', () => {
    expect(mapBackendError(grpcErr(Code.UNAUTHENTICATED, 'missing bearer token')).message).toMatch(/api_bearer_token_path/);
  });
});

describe('Kubernetes API errors', () => {
  const kube = (code: number, body: unknown) => new ApiException(code, 'error', body, { authorization: 'Bearer SECRET-HEADER-VALUE' });

  it('uses the Status message and never the headers', () => {
    const m = mapBackendError(kube(422, { kind: 'Status', message: 'spec.pauseImage: Invalid value', code: 422 }), 'apply ActorTemplate default/x');
    expect(m.code).toBe(Code.INVALID_ARGUMENT);
    expect(m.message).toBe('apply ActorTemplate default/x: Kubernetes API returned 422: spec.pauseImage: Invalid value');
    expect(m.message).not.toContain('SECRET-HEADER-VALUE');
  });

  it('reads a Status body given as JSON text', () => {
    expect(mapBackendError(kube(404, JSON.stringify({ message: 'actortemplates "x" not found' }))).message).toContain('actortemplates "x" not found');
  });

  for (const [http, code] of Object.entries(KUBE_HTTP_CODES)) {
    it(`HTTP ${http} → ${Code[code]}`, () => {
      expect(mapBackendError(kube(Number(http), { message: 'm' })).code).toBe(code);
    });
  }

  it('other 4xx → FAILED_PRECONDITION, other 5xx → UNAVAILABLE; RBAC gets a hint', () => {
    expect(mapBackendError(kube(418, {})).code).toBe(Code.FAILED_PRECONDITION);
    expect(mapBackendError(kube(507, {})).code).toBe(Code.UNAVAILABLE);
    expect(mapBackendError(kube(403, { message: 'forbidden' })).message).toMatch(/RBAC/);
  });
});

describe('runtime errors', () => {
  const sys = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:1`), { code });
  it('maps socket, file, timeout and abort errors', () => {
    expect(mapBackendError(sys('ECONNREFUSED')).code).toBe(Code.UNAVAILABLE);
    expect(mapBackendError(sys('ECONNRESET')).code).toBe(Code.UNAVAILABLE);
    expect(mapBackendError(sys('ETIMEDOUT')).code).toBe(Code.DEADLINE_EXCEEDED);
    expect(mapBackendError(sys('EACCES')).code).toBe(Code.FAILED_PRECONDITION);
    expect(mapBackendError(sys('ENOENT')).code).toBe(Code.FAILED_PRECONDITION);
    expect(mapBackendError(sys('ENOSPC')).code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(mapBackendError(Object.assign(new Error('aborted'), { name: 'AbortError' })).code).toBe(Code.CANCELLED);
    expect(mapBackendError(Object.assign(new Error('t'), { name: 'TimeoutError' })).code).toBe(Code.DEADLINE_EXCEEDED);
    expect(mapBackendError(new Error('boom')).code).toBe(Code.INTERNAL);
    expect(mapBackendError('text').code).toBe(Code.INTERNAL);
  });

  it('keeps an ApiError code and prefixes the action', () => {
    const m = mapBackendError(new ApiError(Code.NOT_FOUND, 'gone'), 'GetActor a/b');
    expect(m.code).toBe(Code.NOT_FOUND);
    expect(m.message).toBe('GetActor a/b: gone');
  });

  it('normalizes adapter codes about the driver credentials the same way', () => {
    expect(mapBackendError(new ApiError(Code.UNAUTHENTICATED, 'apply: 401')).code).toBe(Code.FAILED_PRECONDITION);
    expect(mapBackendError(new ApiError(Code.PERMISSION_DENIED, 'apply: 403')).code).toBe(Code.FAILED_PRECONDITION);
    expect(mapBackendError(new ApiError(Code.UNKNOWN, 'odd')).code).toBe(Code.INTERNAL);
  });
});
