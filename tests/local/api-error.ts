// The in-process module tests' assertion on a thrown ApiError: its gRPC code and, when given, its message.
import { expect } from 'vitest';
import { ApiError, Code } from '../../src/common/errors.js';

/** Awaits `p` (or calls it) and asserts it failed with an ApiError of `code` (and `message`, exact or pattern). */
export async function expectApiError(p: Promise<unknown> | (() => unknown), code: Code, message?: string | RegExp): Promise<ApiError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(ApiError);
    const ae = e as ApiError;
    expect(Code[ae.code], ae.message).toBe(Code[code]);
    if (typeof message === 'string') expect(ae.message).toBe(message);
    else if (message) expect(ae.message).toMatch(message);
    return ae;
  }
  throw new Error(`expected ${Code[code]}, but the call succeeded`);
}
