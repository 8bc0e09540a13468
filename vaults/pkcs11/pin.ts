import { readFile, stat } from 'node:fs/promises';
import { describeError, ErrorCodes, KeyhopError } from '../../runtime/errors.js';
import { CKR, ckrName } from './ckr.js';
import { CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY } from './constants.js';

/**
 * Where the token's user PIN comes from: an environment variable or a file, never the command line
 * (argv is visible to every user in `ps`) and never a configuration file keyhop writes. The PIN
 * itself appears in no message, log or error: they name only its source.
 */
export type PinSource = { readonly env: string } | { readonly file: string };

/** A PIN file larger than this is not a PIN file. */
export const MAX_PIN_FILE = 4096;

export function describePinSource(source: PinSource): string {
  return 'env' in source ? `environment variable ${source.env}` : `file ${source.file}`;
}

/** Checks the shape of a PinSource from configuration (CONFIG_INVALID). */
export function checkPinSource(source: unknown): PinSource {
  const s = source as { env?: unknown; file?: unknown } | null;
  const env = typeof s === 'object' && s !== null ? s.env : undefined;
  const file = typeof s === 'object' && s !== null ? s.file : undefined;
  if (typeof env === 'string' && env !== '' && file === undefined) return { env };
  if (typeof file === 'string' && file !== '' && env === undefined) return { file };
  throw new KeyhopError(
    ErrorCodes.CONFIG_INVALID,
    'the PKCS#11 PIN source must be { env: <variable name> } or { file: <path> }',
  );
}

/**
 * Reads the PIN, dropping one trailing newline (`\n` or `\r\n`, as `echo` and editors leave).
 * A missing or empty variable, or an unreadable, oversized or empty file, is CONFIG_INVALID.
 */
export async function readPin(source: PinSource, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const where = describePinSource(source);
  let raw: string;
  if ('env' in source) {
    const value = env[source.env];
    if (value === undefined) {
      throw new KeyhopError(
        ErrorCodes.CONFIG_INVALID,
        `the PKCS#11 user PIN is read from ${where}, which is not set`,
      );
    }
    raw = value;
  } else {
    try {
      const st = await stat(source.file);
      if (!st.isFile()) throw new Error('not a regular file');
      if (st.size > MAX_PIN_FILE) throw new Error(`${st.size} bytes, more than ${MAX_PIN_FILE}`);
      raw = await readFile(source.file, 'utf8');
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code ?? describeError(e);
      throw new KeyhopError(
        ErrorCodes.CONFIG_INVALID,
        `cannot read the PKCS#11 user PIN from ${where}: ${why}`,
      );
    }
  }
  const pin = raw.endsWith('\r\n') ? raw.slice(0, -2) : raw.endsWith('\n') ? raw.slice(0, -1) : raw;
  if (pin === '')
    throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `the PKCS#11 user PIN in ${where} is empty`);
  return pin;
}

/**
 * The one error for a failed C_Login. keyhop tries the PIN once per login and never retries a
 * refused one: each wrong try counts towards the token's lockout.
 *
 * - wrong PIN (CKR_PIN_INCORRECT), or one the token cannot take (CKR_PIN_INVALID,
 *   CKR_PIN_LEN_RANGE): KEY_STORE_LOCKED, as for a software key store's wrong passphrase; the
 *   token's own warning flags (attempts failed, final try) are added when it sets them;
 * - locked PIN (CKR_PIN_LOCKED): HARDWARE_REFUSED, only the security officer can unblock it;
 * - expired PIN (CKR_PIN_EXPIRED): HARDWARE_REFUSED, change it with the token's tools.
 */
export function pinError(rv: number, token: string, source: PinSource, flags?: number): KeyhopError {
  const where = describePinSource(source);
  const name = ckrName(rv);
  if (rv === CKR.PIN_LOCKED) return pinLocked(token);
  if (rv === CKR.PIN_EXPIRED) {
    return new KeyhopError(
      ErrorCodes.HARDWARE_REFUSED,
      `the user PIN of PKCS#11 token "${token}" has expired (${name}): set a new one with the token's tools`,
    );
  }
  if (rv === CKR.PIN_INVALID || rv === CKR.PIN_LEN_RANGE) {
    return new KeyhopError(
      ErrorCodes.KEY_STORE_LOCKED,
      `PKCS#11 token "${token}" cannot take the user PIN from ${where} (${name}: wrong length or characters)`,
    );
  }
  let warning = '';
  if (flags !== undefined && (flags & CKF_USER_PIN_FINAL_TRY) !== 0) {
    warning = '; the token warns that one more wrong PIN locks it';
  } else if (flags !== undefined && (flags & CKF_USER_PIN_COUNT_LOW) !== 0) {
    warning = '; the token has counted failed PIN attempts and may lock after more';
  }
  return new KeyhopError(
    ErrorCodes.KEY_STORE_LOCKED,
    `wrong user PIN for PKCS#11 token "${token}" from ${where} (${name}); keyhop tried it once and will not retry${warning}`,
  );
}

export function pinLocked(token: string): KeyhopError {
  return new KeyhopError(
    ErrorCodes.HARDWARE_REFUSED,
    `the user PIN of PKCS#11 token "${token}" is locked (CKR_PIN_LOCKED): the token refuses every login until its security officer unblocks or resets the PIN`,
  );
}
