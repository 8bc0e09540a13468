import {
  describeError,
  type ErrorCode,
  ErrorCodes,
  isKeyhopError,
  KeyhopError,
  thrownProperty,
} from '../../runtime/errors.js';

/**
 * PKCS#11 return values (CK_RV): their names, and how the vault treats each one. Pure tables and
 * functions, no native code, so they are unit-tested on their own.
 */

/** CK_RV values of PKCS#11 2.40 (and 3.0's few additions keyhop can meet). */
export const CKR_NAMES: Readonly<Record<number, string>> = {
  0: 'CKR_OK',
  1: 'CKR_CANCEL',
  2: 'CKR_HOST_MEMORY',
  3: 'CKR_SLOT_ID_INVALID',
  5: 'CKR_GENERAL_ERROR',
  6: 'CKR_FUNCTION_FAILED',
  7: 'CKR_ARGUMENTS_BAD',
  8: 'CKR_NO_EVENT',
  9: 'CKR_NEED_TO_CREATE_THREADS',
  10: 'CKR_CANT_LOCK',
  16: 'CKR_ATTRIBUTE_READ_ONLY',
  17: 'CKR_ATTRIBUTE_SENSITIVE',
  18: 'CKR_ATTRIBUTE_TYPE_INVALID',
  19: 'CKR_ATTRIBUTE_VALUE_INVALID',
  27: 'CKR_ACTION_PROHIBITED',
  32: 'CKR_DATA_INVALID',
  33: 'CKR_DATA_LEN_RANGE',
  48: 'CKR_DEVICE_ERROR',
  49: 'CKR_DEVICE_MEMORY',
  50: 'CKR_DEVICE_REMOVED',
  64: 'CKR_ENCRYPTED_DATA_INVALID',
  65: 'CKR_ENCRYPTED_DATA_LEN_RANGE',
  80: 'CKR_FUNCTION_CANCELED',
  81: 'CKR_FUNCTION_NOT_PARALLEL',
  84: 'CKR_FUNCTION_NOT_SUPPORTED',
  96: 'CKR_KEY_HANDLE_INVALID',
  98: 'CKR_KEY_SIZE_RANGE',
  99: 'CKR_KEY_TYPE_INCONSISTENT',
  100: 'CKR_KEY_NOT_NEEDED',
  101: 'CKR_KEY_CHANGED',
  102: 'CKR_KEY_NEEDED',
  103: 'CKR_KEY_INDIGESTIBLE',
  104: 'CKR_KEY_FUNCTION_NOT_PERMITTED',
  105: 'CKR_KEY_NOT_WRAPPABLE',
  106: 'CKR_KEY_UNEXTRACTABLE',
  112: 'CKR_MECHANISM_INVALID',
  113: 'CKR_MECHANISM_PARAM_INVALID',
  130: 'CKR_OBJECT_HANDLE_INVALID',
  144: 'CKR_OPERATION_ACTIVE',
  145: 'CKR_OPERATION_NOT_INITIALIZED',
  160: 'CKR_PIN_INCORRECT',
  161: 'CKR_PIN_INVALID',
  162: 'CKR_PIN_LEN_RANGE',
  163: 'CKR_PIN_EXPIRED',
  164: 'CKR_PIN_LOCKED',
  176: 'CKR_SESSION_CLOSED',
  177: 'CKR_SESSION_COUNT',
  179: 'CKR_SESSION_HANDLE_INVALID',
  180: 'CKR_SESSION_PARALLEL_NOT_SUPPORTED',
  181: 'CKR_SESSION_READ_ONLY',
  182: 'CKR_SESSION_EXISTS',
  183: 'CKR_SESSION_READ_ONLY_EXISTS',
  184: 'CKR_SESSION_READ_WRITE_SO_EXISTS',
  192: 'CKR_SIGNATURE_INVALID',
  193: 'CKR_SIGNATURE_LEN_RANGE',
  208: 'CKR_TEMPLATE_INCOMPLETE',
  209: 'CKR_TEMPLATE_INCONSISTENT',
  224: 'CKR_TOKEN_NOT_PRESENT',
  225: 'CKR_TOKEN_NOT_RECOGNIZED',
  226: 'CKR_TOKEN_WRITE_PROTECTED',
  240: 'CKR_UNWRAPPING_KEY_HANDLE_INVALID',
  241: 'CKR_UNWRAPPING_KEY_SIZE_RANGE',
  242: 'CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT',
  256: 'CKR_USER_ALREADY_LOGGED_IN',
  257: 'CKR_USER_NOT_LOGGED_IN',
  258: 'CKR_USER_PIN_NOT_INITIALIZED',
  259: 'CKR_USER_TYPE_INVALID',
  260: 'CKR_USER_ANOTHER_ALREADY_LOGGED_IN',
  261: 'CKR_USER_TOO_MANY_TYPES',
  272: 'CKR_WRAPPED_KEY_INVALID',
  274: 'CKR_WRAPPED_KEY_LEN_RANGE',
  275: 'CKR_WRAPPING_KEY_HANDLE_INVALID',
  276: 'CKR_WRAPPING_KEY_SIZE_RANGE',
  277: 'CKR_WRAPPING_KEY_TYPE_INCONSISTENT',
  288: 'CKR_RANDOM_SEED_NOT_SUPPORTED',
  289: 'CKR_RANDOM_NO_RNG',
  304: 'CKR_DOMAIN_PARAMS_INVALID',
  320: 'CKR_CURVE_NOT_SUPPORTED',
  336: 'CKR_BUFFER_TOO_SMALL',
  352: 'CKR_SAVED_STATE_INVALID',
  368: 'CKR_INFORMATION_SENSITIVE',
  384: 'CKR_STATE_UNSAVEABLE',
  400: 'CKR_CRYPTOKI_NOT_INITIALIZED',
  401: 'CKR_CRYPTOKI_ALREADY_INITIALIZED',
  416: 'CKR_MUTEX_BAD',
  417: 'CKR_MUTEX_NOT_LOCKED',
  432: 'CKR_NEW_PIN_MODE',
  433: 'CKR_NEXT_OTP',
  437: 'CKR_EXCEEDED_MAX_ITERATIONS',
  438: 'CKR_FIPS_SELF_TEST_FAILED',
  439: 'CKR_LIBRARY_LOAD_FAILED',
  440: 'CKR_PIN_TOO_WEAK',
  441: 'CKR_PUBLIC_KEY_INVALID',
  512: 'CKR_FUNCTION_REJECTED',
};

const CKR_BY_NAME: ReadonlyMap<string, number> = new Map(
  Object.entries(CKR_NAMES).map(([value, name]) => [name, Number(value)]),
);

export const CKR = {
  OK: 0x0,
  CRYPTOKI_ALREADY_INITIALIZED: 0x191,
  CRYPTOKI_NOT_INITIALIZED: 0x190,
  USER_ALREADY_LOGGED_IN: 0x100,
  USER_NOT_LOGGED_IN: 0x101,
  SESSION_CLOSED: 0xb0,
  SESSION_HANDLE_INVALID: 0xb3,
  OBJECT_HANDLE_INVALID: 0x82,
  KEY_HANDLE_INVALID: 0x60,
  PIN_INCORRECT: 0xa0,
  PIN_INVALID: 0xa1,
  PIN_LEN_RANGE: 0xa2,
  PIN_EXPIRED: 0xa3,
  PIN_LOCKED: 0xa4,
  MECHANISM_INVALID: 0x70,
  ATTRIBUTE_TYPE_INVALID: 0x12,
  ATTRIBUTE_SENSITIVE: 0x11,
} as const;

const VENDOR_DEFINED = 0x80000000;

/** `CKR_PIN_INCORRECT`, or `CKR_VENDOR_DEFINED+0x12` / `CK_RV 0x…` for values not in the table. */
export function ckrName(rv: number): string {
  const name = CKR_NAMES[rv];
  if (name !== undefined) return name;
  if (Number.isSafeInteger(rv) && rv >= VENDOR_DEFINED && rv <= 0xffffffff) {
    return `CKR_VENDOR_DEFINED+0x${(rv - VENDOR_DEFINED).toString(16)}`;
  }
  return Number.isSafeInteger(rv) && rv >= 0 ? `CK_RV 0x${rv.toString(16)}` : `CK_RV ${String(rv)}`;
}

/**
 * The CK_RV of something pkcs11js threw: its Pkcs11Error carries `code` and a message that is the
 * CKR name (sometimes `NAME:value`). Undefined for anything that is not a PKCS#11 return value
 * (a TypeError from a bad argument, a failed dlopen).
 */
export function ckrOf(e: unknown): number | undefined {
  const message = thrownProperty(e, 'message');
  const code = thrownProperty(e, 'code');
  if (typeof message !== 'string') return undefined;
  const m = /(CKR_[A-Z0-9_]+)(?::(\d+))?/.exec(message);
  if (m === null) return undefined;
  if (typeof code === 'number' && Number.isSafeInteger(code) && code > 0) return code;
  if (m[2] !== undefined) return Number(m[2]);
  return m[1] === undefined ? undefined : CKR_BY_NAME.get(m[1]);
}

/** What the vault may do, once, before retrying an operation that failed with `rv`. */
export type Recovery = 'login' | 'session' | 'handles';

export function recoveryFor(rv: number): Recovery | undefined {
  switch (rv) {
    case CKR.USER_NOT_LOGGED_IN:
      return 'login';
    case CKR.SESSION_HANDLE_INVALID:
    case CKR.SESSION_CLOSED:
      return 'session';
    case CKR.OBJECT_HANDLE_INVALID:
    case CKR.KEY_HANDLE_INVALID:
      return 'handles';
    default:
      return undefined;
  }
}

/** True for the return values of C_Login that concern the PIN itself (see pin.ts). */
export function isPinError(rv: number): boolean {
  return (
    rv === CKR.PIN_INCORRECT ||
    rv === CKR.PIN_INVALID ||
    rv === CKR.PIN_LEN_RANGE ||
    rv === CKR.PIN_EXPIRED ||
    rv === CKR.PIN_LOCKED
  );
}

const UNAVAILABLE = new Set([
  0x3, // SLOT_ID_INVALID
  0x32, // DEVICE_REMOVED
  0xe0, // TOKEN_NOT_PRESENT
  0xe1, // TOKEN_NOT_RECOGNIZED
  0x190, // CRYPTOKI_NOT_INITIALIZED
  0x1b7, // LIBRARY_LOAD_FAILED
]);
const IO = new Set([
  0x2, // HOST_MEMORY
  0x5, // GENERAL_ERROR
  0x6, // FUNCTION_FAILED
  0x30, // DEVICE_ERROR
  0x31, // DEVICE_MEMORY
  0x50, // FUNCTION_CANCELED
  0xa, // CANT_LOCK
  0x1a0, // MUTEX_BAD
]);
const FAULT = new Set([
  0x1b6, // FIPS_SELF_TEST_FAILED
  0x121, // RANDOM_NO_RNG
]);
const UNSUPPORTED = new Set([
  0x54, // FUNCTION_NOT_SUPPORTED
  0x70, // MECHANISM_INVALID
  0x71, // MECHANISM_PARAM_INVALID
  0x130, // DOMAIN_PARAMS_INVALID
  0x140, // CURVE_NOT_SUPPORTED
]);
const KEY_INVALID = new Set([
  0x20, // DATA_INVALID
  0x21, // DATA_LEN_RANGE
  0x62, // KEY_SIZE_RANGE
  0x63, // KEY_TYPE_INCONSISTENT
  0x1b9, // PUBLIC_KEY_INVALID
]);
const KEY_NOT_FOUND = new Set([
  0x60, // KEY_HANDLE_INVALID
  0x82, // OBJECT_HANDLE_INVALID
]);

/**
 * The KeyhopError code for a CK_RV once the vault has given up on it (after its one recovery, if
 * any): a missing or removed token is HARDWARE_UNAVAILABLE, a device or library failure
 * HARDWARE_IO, a failed self-test HARDWARE_FAULT, a mechanism or curve the token lacks
 * UNSUPPORTED, bad key material KEY_INVALID, a vanished object KEY_NOT_FOUND, a wrong PIN
 * KEY_STORE_LOCKED, and everything else (policy, a locked or expired PIN, read-only token,
 * another user logged in) HARDWARE_REFUSED.
 */
export function errorCodeFor(rv: number): ErrorCode {
  if (UNAVAILABLE.has(rv)) return ErrorCodes.HARDWARE_UNAVAILABLE;
  if (IO.has(rv)) return ErrorCodes.HARDWARE_IO;
  if (FAULT.has(rv)) return ErrorCodes.HARDWARE_FAULT;
  if (UNSUPPORTED.has(rv)) return ErrorCodes.UNSUPPORTED;
  if (KEY_INVALID.has(rv)) return ErrorCodes.KEY_INVALID;
  if (KEY_NOT_FOUND.has(rv)) return ErrorCodes.KEY_NOT_FOUND;
  if (rv === CKR.PIN_INCORRECT || rv === CKR.PIN_INVALID || rv === CKR.PIN_LEN_RANGE) {
    return ErrorCodes.KEY_STORE_LOCKED;
  }
  return ErrorCodes.HARDWARE_REFUSED;
}

/**
 * A KeyhopError for anything a pkcs11js call threw: `${context}: CKR_NAME`. Errors that are not
 * PKCS#11 return values (a TypeError, say) keep their message under HARDWARE_IO. Only the CKR
 * name and our own context go into the message: never call arguments (a PIN).
 */
export function pkcs11Error(e: unknown, context: string): KeyhopError {
  if (isKeyhopError(e)) return e;
  const rv = ckrOf(e);
  if (rv === undefined) {
    const detail = describeError(e);
    return new KeyhopError(ErrorCodes.HARDWARE_IO, `${context}: ${detail}`, { cause: e });
  }
  return new KeyhopError(errorCodeFor(rv), `${context}: ${ckrName(rv)}${hintFor(rv)}`, { cause: e });
}

function hintFor(rv: number): string {
  switch (rv) {
    case 0x68: // KEY_FUNCTION_NOT_PERMITTED
      return ' (the key\u2019s attributes forbid this use)';
    case 0xe2: // TOKEN_WRITE_PROTECTED
    case 0xb5: // SESSION_READ_ONLY
      return ' (the token is read-only)';
    case 0x104: // USER_ANOTHER_ALREADY_LOGGED_IN
      return ' (the security officer is logged in to this token)';
    case 0x32:
    case 0xe0:
      return ' (the token was removed)';
    case 0x70:
    case 0x54:
      return ' (the token does not support this mechanism)';
    default:
      return '';
  }
}
