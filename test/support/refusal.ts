import { EnrollmentRefused } from '../../runtime/enrollment/client.js';
import { isKeyhopError } from '../../runtime/errors.js';

/**
 * What `p` was refused with: an enrollment refusal's reason (`ticket_used`, `rollback`, …), else
 * the KeyhopError code; `accepted` when it resolved. Anything that is not a KeyhopError is thrown
 * on (a crash is not a refusal).
 */
export async function refusalOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof EnrollmentRefused) return e.reason;
    if (isKeyhopError(e)) return e.code;
    throw e;
  }
  return 'accepted';
}
