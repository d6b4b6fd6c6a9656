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
