import { type ErrorCode, ErrorCodes, isKeyhopError, KeyhopError } from '../errors.js';
import { type RouteLike, toRoute } from '../routing/route.js';
import type { Router } from '../routing/router.js';
import { decodeAnswer, encodeAnswer } from './codec.js';

/**
 * A refusal with a reason a script can act on (`token_used`, `mailbox_full`, …), sent as the
 * answer's code; the KeyhopError code is the general class (TRUST_REFUSED unless said otherwise).
 */
export class EnrollmentRefused extends KeyhopError {
  constructor(
    readonly reason: string,
    message: string,
    code: ErrorCode = ErrorCodes.TRUST_REFUSED,
  ) {
    super(code, message);
  }
}

/** Names of the enrollment workers. */
export const DIRECTORY_ADDRESS = 'enrollment_directory';
export const AUTHORITY_ADDRESS = 'authority';

/**
 * One request and its answer (an AuthorityAnswer): the value on success, a KeyhopError with the
 * answering service's code otherwise. `route` ends at the service (e.g. `1#hub:4000 =>
 * enrollment_directory`, or `[channel encryptor, authority]`).
 */
export async function ask(
  router: Router,
  route: RouteLike,
  request: Uint8Array,
  timeoutMs = 10_000,
): Promise<Uint8Array | null> {
  const ctx = await router.context();
  const to = toRoute(route);
  try {
    await ctx.send(to, request);
    const m = await ctx.receive(timeoutMs).catch((e: unknown) => {
      if (!isKeyhopError(e, ErrorCodes.TIMEOUT)) throw e;
      throw new KeyhopError(
        ErrorCodes.TIMEOUT,
        `no answer from ${to} within ${timeoutMs} ms (is the service running there, and reachable from here?)`,
      );
    });
    const a = decodeAnswer(m.payload);
    if (a.ok) return a.value;
    if (Object.hasOwn(ErrorCodes, a.code)) throw new KeyhopError(a.code as ErrorCode, `${to}: ${a.message}`);
    throw new EnrollmentRefused(a.code, `${to}: ${a.message}`);
  } finally {
    await ctx.stop();
  }
}

/** The answer a service sends for a failure: its KeyhopError code, or the refusal reason. */
export function failure(e: unknown, fallback: string): Uint8Array {
  const code = e instanceof EnrollmentRefused ? e.reason : isKeyhopError(e) ? e.code : fallback;
  const message = isKeyhopError(e) ? e.message : 'internal error';
  return encodeAnswer({ ok: false, code, message });
}
