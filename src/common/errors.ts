// Errors that carry a gRPC status code, and the one table that maps backend errors to the codes the
// driver returns. Messages are written for a person: what failed and what to do about it. They never carry
// a token or a key.
import { status } from '@grpc/grpc-js';

export { status as Code };

export class ApiError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const invalid = (m: string) => new ApiError(status.INVALID_ARGUMENT, m);
export const notFound = (m: string) => new ApiError(status.NOT_FOUND, m);
export const alreadyExists = (m: string) => new ApiError(status.ALREADY_EXISTS, m);
export const failedPrecondition = (m: string) => new ApiError(status.FAILED_PRECONDITION, m);
export const aborted = (m: string) => new ApiError(status.ABORTED, m);
export const unauthenticated = (m: string) => new ApiError(status.UNAUTHENTICATED, m);
export const permissionDenied = (m: string) => new ApiError(status.PERMISSION_DENIED, m);
export const unavailable = (m: string) => new ApiError(status.UNAVAILABLE, m);
export const deadlineExceeded = (m: string) => new ApiError(status.DEADLINE_EXCEEDED, m);
export const internal = (m: string) => new ApiError(status.INTERNAL, m);

/** A gRPC ServiceError as @grpc/grpc-js delivers it to clients. */
export interface GrpcLikeError {
  code: number;
  details?: string;
  message: string;
}

export function isGrpcError(e: unknown): e is GrpcLikeError {
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'number' && 'message' in e;
}

export function grpcCodeOf(e: unknown): status | undefined {
  if (e instanceof ApiError) return e.code;
  if (isGrpcError(e)) return e.code as status;
  return undefined;
}

/** The message of an error without grpc-js's "13 INTERNAL: " prefix. */
export function messageOf(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (isGrpcError(e)) return e.details ?? e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

/**
 * Converts anything thrown inside a server handler into what grpc-js sends: coded errors keep their code and
 * message; anything else becomes INTERNAL with the upstream's "internal server error: " prefix.
 */
export function toServiceError(e: unknown): { code: status; details: string } {
  if (e instanceof ApiError) return { code: e.code, details: e.message };
  if (isGrpcError(e)) return { code: e.code as status, details: messageOf(e) };
  return { code: status.INTERNAL, details: `internal server error: ${messageOf(e)}` };
}

// ---------------------------------------------------------------------------------------------------------
// The one table from backend errors to driver gRPC codes.
//
// Three kinds of backend error reach the driver: gRPC errors from ateapi.Control, HTTP errors from the
// Kubernetes resource API (ApiException of @kubernetes/client-node, or anything with an HTTP `statusCode`),
// and Node runtime errors (errno codes of sockets and files, aborts and timeouts). Each maps to the code the
// driver returns to the gateway, and the message names what the driver was doing. Messages come from the
// backend's own text (ateapi's status details, the Kubernetes Status `message`), never from headers or
// request bodies, so credentials cannot leak through them.

/** ateapi gRPC code → driver code. Codes not listed map to INTERNAL. */
export const GRPC_BACKEND_CODES: Readonly<Record<number, status>> = {
  [status.CANCELLED]: status.CANCELLED,
  [status.UNKNOWN]: status.INTERNAL,
  [status.INVALID_ARGUMENT]: status.INVALID_ARGUMENT,
  [status.DEADLINE_EXCEEDED]: status.DEADLINE_EXCEEDED,
  [status.NOT_FOUND]: status.NOT_FOUND,
  [status.ALREADY_EXISTS]: status.ALREADY_EXISTS,
  // The driver's own credentials were refused by ateapi: an operator must fix the driver's configuration;
  // the gateway's caller is not the one unauthenticated.
  [status.PERMISSION_DENIED]: status.FAILED_PRECONDITION,
  [status.RESOURCE_EXHAUSTED]: status.RESOURCE_EXHAUSTED,
  [status.FAILED_PRECONDITION]: status.FAILED_PRECONDITION,
  [status.ABORTED]: status.ABORTED,
  [status.OUT_OF_RANGE]: status.INVALID_ARGUMENT,
  // An ateapi without the RPC is a version mismatch, not "the driver lacks the RPC" (the gateway treats a
  // driver's UNIMPLEMENTED on workspace RPCs as success, which would hide the problem).
  [status.UNIMPLEMENTED]: status.FAILED_PRECONDITION,
  [status.INTERNAL]: status.INTERNAL,
  [status.UNAVAILABLE]: status.UNAVAILABLE,
  [status.DATA_LOSS]: status.INTERNAL,
  [status.UNAUTHENTICATED]: status.FAILED_PRECONDITION,
};

/** Kubernetes API HTTP status → driver code. Other 4xx → FAILED_PRECONDITION, other 5xx → UNAVAILABLE. */
export const KUBE_HTTP_CODES: Readonly<Record<number, status>> = {
  400: status.INVALID_ARGUMENT,
  401: status.FAILED_PRECONDITION,
  403: status.FAILED_PRECONDITION,
  404: status.NOT_FOUND,
  409: status.ABORTED,
  410: status.ABORTED,
  415: status.INTERNAL,
  422: status.INVALID_ARGUMENT,
  429: status.RESOURCE_EXHAUSTED,
  500: status.INTERNAL,
  502: status.UNAVAILABLE,
  503: status.UNAVAILABLE,
  504: status.DEADLINE_EXCEEDED,
};

/** Node runtime errno / error name → driver code. Others → INTERNAL. */
export const RUNTIME_ERROR_CODES: Readonly<Record<string, status>> = {
  ECONNREFUSED: status.UNAVAILABLE,
  ECONNRESET: status.UNAVAILABLE,
  EPIPE: status.UNAVAILABLE,
  EHOSTUNREACH: status.UNAVAILABLE,
  ENETUNREACH: status.UNAVAILABLE,
  ENOTFOUND: status.UNAVAILABLE,
  EAI_AGAIN: status.UNAVAILABLE,
  ETIMEDOUT: status.DEADLINE_EXCEEDED,
  TimeoutError: status.DEADLINE_EXCEEDED,
  AbortError: status.CANCELLED,
  ENOENT: status.FAILED_PRECONDITION,
  EACCES: status.FAILED_PRECONDITION,
  EPERM: status.FAILED_PRECONDITION,
  ENOSPC: status.RESOURCE_EXHAUSTED,
  EMFILE: status.RESOURCE_EXHAUSTED,
};

const HINTS: Partial<Record<string, string>> = {
  'grpc:16': 'ateapi refused the driver credentials; check api_bearer_token_path',
  'grpc:7': 'ateapi refused the driver credentials; check api_bearer_token_path',
  'grpc:12': 'the Substrate API does not implement this call; check that it matches the pinned ateapi version',
  'http:401': 'the Kubernetes API refused the driver credentials; check kubeconfig and kube_context',
  'http:403': 'the driver lacks Kubernetes RBAC for this; grant it in the configured namespace',
};

interface HttpLikeError {
  statusCode: number;
  body?: unknown;
}

function httpStatusOf(e: unknown): HttpLikeError | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const o = e as Record<string, unknown>;
  // @kubernetes/client-node v1 ApiException: numeric HTTP `code` plus `body` and `headers`.
  if (typeof o.code === 'number' && 'body' in o && 'headers' in o && o.code >= 100 && o.code < 600) {
    return { statusCode: o.code, body: o.body };
  }
  if (typeof o.statusCode === 'number' && o.statusCode >= 100 && o.statusCode < 600) {
    return { statusCode: o.statusCode, body: o.body };
  }
  return undefined;
}

/** The Kubernetes Status `message` of an error body (object or JSON text), or undefined. */
function kubeMessageOf(body: unknown): string | undefined {
  let b: unknown = body;
  if (typeof body === 'string') {
    try {
      b = JSON.parse(body);
    } catch {
      return body.length > 0 && body.length < 500 ? body : undefined;
    }
  }
  if (typeof b === 'object' && b !== null && typeof (b as { message?: unknown }).message === 'string') {
    return (b as { message: string }).message;
  }
  return undefined;
}

/**
 * Maps any backend error to the ApiError the driver returns. `what` names the action ("SuspendActor
 * demo/sb-1", "apply ActorTemplate default/x") and prefixes the message. An ApiError passes through with
 * the prefix added.
 */
export function mapBackendError(e: unknown, what?: string): ApiError {
  const prefix = what ? `${what}: ` : '';
  // Errors already coded by a backend adapter (e.g. the TemplateStore's UNAUTHENTICATED for a 401) go
  // through the same table, so the gateway never sees a code about its own credentials.
  if (e instanceof ApiError) return new ApiError(GRPC_BACKEND_CODES[e.code] ?? e.code, prefix + e.message);
  const http = httpStatusOf(e);
  if (http) {
    const code =
      KUBE_HTTP_CODES[http.statusCode] ??
      (http.statusCode >= 500 ? status.UNAVAILABLE : http.statusCode >= 400 ? status.FAILED_PRECONDITION : status.INTERNAL);
    const msg = kubeMessageOf(http.body) ?? `HTTP ${http.statusCode}`;
    const hint = HINTS[`http:${http.statusCode}`];
    return new ApiError(code, `${prefix}Kubernetes API returned ${http.statusCode}: ${msg}${hint ? ` (${hint})` : ''}`);
  }
  if (isGrpcError(e)) {
    const code = GRPC_BACKEND_CODES[e.code] ?? status.INTERNAL;
    const tls = e.code === status.UNAVAILABLE && /certificate|self[- ]signed|SSL|TLS|handshake|altnames|hostname/i.test(messageOf(e));
    const hint = tls
      ? 'the TLS handshake with ateapi failed; check api_tls_ca_path (the CA that signs its certificate) and api_tls_server_name (the name in it, e.g. api.ate-system.svc)'
      : HINTS[`grpc:${e.code}`];
    const name = status[e.code] ?? String(e.code);
    return new ApiError(code, `${prefix}ateapi ${name}: ${messageOf(e)}${hint ? ` (${hint})` : ''}`);
  }
  if (e instanceof Error) {
    const errno = (e as NodeJS.ErrnoException).code;
    const key = typeof errno === 'string' && errno in RUNTIME_ERROR_CODES ? errno : e.name;
    const code = RUNTIME_ERROR_CODES[key] ?? status.INTERNAL;
    return new ApiError(code, prefix + e.message);
  }
  return new ApiError(status.INTERNAL, prefix + String(e));
}
