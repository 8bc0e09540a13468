import { type ErrorCode, ErrorCodes, KeyhopError } from '../../runtime/errors.js';

/**
 * TPM 2.0 / TSS2 response codes (TCG TPM 2.0 Library Part 2 §6.6 "TPM_RC"; TSS2 layers from the TCG
 * TSS 2.0 overview, tss2_common.h): names, format-one decoding, retry and KeyhopError classification.
 *
 * A TSS2_RC is `layer << 16 | code`. Layer 0 is the TPM itself; a TPM code is
 * - format one (bit 7 set): error number in bits 0..5 (+ 0x080), and bits 6..11 say where it is:
 *   bit 6 set → parameter N = bits 8..11; else bit 11 set → session N = bits 8..10; else handle
 *   N = bits 8..10;
 * - format zero: bit 8 set = TPM 2.0 code (0x100 VER1 range), bit 11 set as well = warning
 *   (0x900 range), bit 10 = vendor-defined.
 */

const LAYER_NAMES: Record<number, string> = {
  0: 'tpm',
  6: 'fapi',
  7: 'esapi',
  8: 'sys',
  9: 'mu',
  10: 'tcti',
  11: 'resmgr',
  12: 'resmgr-tpm',
};

const VER1: Record<number, string> = {
  0: 'INITIALIZE',
  1: 'FAILURE',
  3: 'SEQUENCE',
  11: 'PRIVATE',
  25: 'HMAC',
  32: 'DISABLED',
  33: 'EXCLUSIVE',
  36: 'AUTH_TYPE',
  37: 'AUTH_MISSING',
  38: 'POLICY',
  39: 'PCR',
  40: 'PCR_CHANGED',
  45: 'UPGRADE',
  46: 'TOO_MANY_CONTEXTS',
  47: 'AUTH_UNAVAILABLE',
  48: 'REBOOT',
  49: 'UNBALANCED',
  66: 'COMMAND_SIZE',
  67: 'COMMAND_CODE',
  68: 'AUTHSIZE',
  69: 'AUTH_CONTEXT',
  70: 'NV_RANGE',
  71: 'NV_SIZE',
  72: 'NV_LOCKED',
  73: 'NV_AUTHORIZATION',
  74: 'NV_UNINITIALIZED',
  75: 'NV_SPACE',
  76: 'NV_DEFINED',
  80: 'BAD_CONTEXT',
  81: 'CPHASH',
  82: 'PARENT',
  83: 'NEEDS_TEST',
  84: 'NO_RESULT',
  85: 'SENSITIVE',
};

const FMT1: Record<number, string> = {
  1: 'ASYMMETRIC',
  2: 'ATTRIBUTES',
  3: 'HASH',
  4: 'VALUE',
  5: 'HIERARCHY',
  7: 'KEY_SIZE',
  8: 'MGF',
  9: 'MODE',
  10: 'TYPE',
  11: 'HANDLE',
  12: 'KDF',
  13: 'RANGE',
  14: 'AUTH_FAIL',
  15: 'NONCE',
  16: 'PP',
  18: 'SCHEME',
  21: 'SIZE',
  22: 'SYMMETRIC',
  23: 'TAG',
  24: 'SELECTOR',
  26: 'INSUFFICIENT',
  27: 'SIGNATURE',
  28: 'KEY',
  29: 'POLICY_FAIL',
  31: 'INTEGRITY',
  32: 'TICKET',
  33: 'RESERVED_BITS',
  34: 'BAD_AUTH',
  35: 'EXPIRED',
  36: 'POLICY_CC',
  37: 'BINDING',
  38: 'CURVE',
  39: 'ECC_POINT',
};

const WARN: Record<number, string> = {
  1: 'CONTEXT_GAP',
  2: 'OBJECT_MEMORY',
  3: 'SESSION_MEMORY',
  4: 'MEMORY',
  5: 'SESSION_HANDLES',
  6: 'OBJECT_HANDLES',
  7: 'LOCALITY',
  8: 'YIELDED',
  9: 'CANCELED',
  10: 'TESTING',
  32: 'NV_RATE',
  33: 'LOCKOUT',
  34: 'RETRY',
  35: 'NV_UNAVAILABLE',
};
for (let i = 0; i < 7; i++) {
  WARN[0x010 + i] = `REFERENCE_H${i}`;
  WARN[0x018 + i] = `REFERENCE_S${i}`;
}

/** TSS2_BASE_RC_* (the low 16 bits of an error from the software layers). */
const BASE: Record<number, string> = {
  1: 'GENERAL_FAILURE',
  2: 'NOT_IMPLEMENTED',
  3: 'BAD_CONTEXT',
  4: 'ABI_MISMATCH',
  5: 'BAD_REFERENCE',
  6: 'INSUFFICIENT_BUFFER',
  7: 'BAD_SEQUENCE',
  8: 'NO_CONNECTION',
  9: 'TRY_AGAIN',
  10: 'IO_ERROR',
  11: 'BAD_VALUE',
  12: 'NOT_PERMITTED',
  13: 'INVALID_SESSIONS',
  14: 'NO_DECRYPT_PARAM',
  15: 'NO_ENCRYPT_PARAM',
  16: 'BAD_SIZE',
  17: 'MALFORMED_RESPONSE',
  18: 'INSUFFICIENT_CONTEXT',
  19: 'INSUFFICIENT_RESPONSE',
  20: 'INCOMPATIBLE_TCTI',
  21: 'NOT_SUPPORTED',
  22: 'BAD_TCTI_STRUCTURE',
  23: 'MEMORY',
  24: 'BAD_TR',
  25: 'MULTIPLE_DECRYPT_SESSIONS',
  26: 'MULTIPLE_ENCRYPT_SESSIONS',
  27: 'RSP_AUTH_FAILED',
};

/** Response codes with names, for tests and callers. */
export const TPM_RC = {
  SUCCESS: 0x000,
  INITIALIZE: 0x100,
  FAILURE: 0x101,
  VALUE: 0x084,
  HANDLE: 0x08b,
  AUTH_FAIL: 0x08e,
  SCHEME: 0x092,
  SIZE: 0x095,
  KEY: 0x09c,
  INTEGRITY: 0x09f,
  ECC_POINT: 0x0a7,
  NV_SPACE: 0x14b,
  OBJECT_MEMORY: 0x902,
  SESSION_MEMORY: 0x903,
  YIELDED: 0x908,
  TESTING: 0x90a,
  LOCKOUT: 0x921,
  RETRY: 0x922,
} as const;

export interface DecodedRc {
  readonly rc: number;
  /** 'tpm', 'esapi', 'tcti', … */
  readonly layer: string;
  /** `TPM_RC_VALUE`, `TSS2_BASE_RC_IO_ERROR`, or `TPM_RC_0x…` for a code with no name here. */
  readonly name: string;
  /** The TPM error without its parameter/handle/session number (format one: rc & 0xBF). */
  readonly base: number;
  readonly format: 'one' | 'zero' | 'warning' | 'vendor' | 'tpm1.2' | 'tss';
  readonly parameter?: number;
  readonly handle?: number;
  readonly session?: number;
}

const hex = (n: number, width = 3) => `0x${n.toString(16).padStart(width, '0')}`;

export function decodeRc(rc: number): DecodedRc {
  const code = rc >>> 0;
  const layerNum = (code >>> 16) & 0xff;
  const layer = LAYER_NAMES[layerNum] ?? `layer${layerNum}`;
  const low = code & 0xffff;
  if (layerNum !== 0 && layerNum !== 11 && layerNum !== 12) {
    const n = BASE[low];
    return {
      rc: code,
      layer,
      name: n ? `TSS2_BASE_RC_${n}` : `TSS2_RC_${hex(code, 6)}`,
      base: low,
      format: 'tss',
    };
  }
  // The resource manager layers forward TPM-shaped codes.
  if ((low & 0x080) !== 0) {
    const base = low & 0x0bf;
    const n = FMT1[base & 0x3f];
    const where = (low >>> 8) & 0xf;
    const out: { -readonly [K in keyof DecodedRc]: DecodedRc[K] } = {
      rc: code,
      layer,
      name: n ? `TPM_RC_${n}` : `TPM_RC_${hex(base)}`,
      base,
      format: 'one',
    };
    if ((low & 0x040) !== 0) out.parameter = where;
    else if ((where & 0x8) !== 0) out.session = where & 0x7;
    else if (where !== 0) out.handle = where;
    return out;
  }
  if ((low & 0x100) === 0) {
    return { rc: code, layer, name: `TPM_RC_${hex(low)} (TPM 1.2)`, base: low, format: 'tpm1.2' };
  }
  if ((low & 0x400) !== 0) {
    return { rc: code, layer, name: `TPM_RC_VENDOR_${hex(low & 0x7f)}`, base: low, format: 'vendor' };
  }
  const warning = (low & 0x800) !== 0;
  const n = (warning ? WARN : VER1)[low & 0x7f];
  return {
    rc: code,
    layer,
    name: n ? `TPM_RC_${n}` : `TPM_RC_${hex(low)}`,
    base: low & 0x97f,
    format: warning ? 'warning' : 'zero',
  };
}

/** TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING (and a TCTI TRY_AGAIN): try the command again. */
export function isRetryable(rc: number): boolean {
  const d = decodeRc(rc);
  if (d.format === 'tss') return d.layer === 'tcti' && d.base === 9;
  return d.base === TPM_RC.RETRY || d.base === TPM_RC.YIELDED || d.base === TPM_RC.TESTING;
}

/** "TPM_RC_VALUE (parameter 1)" etc. */
export function describeRc(rc: number): string {
  const d = decodeRc(rc);
  const where =
    d.parameter !== undefined
      ? ` (parameter ${d.parameter})`
      : d.handle !== undefined
        ? ` (handle ${d.handle})`
        : d.session !== undefined
          ? ` (session ${d.session})`
          : '';
  return `${d.name}${where}`;
}

/** Which KeyhopError code a failed TPM/TSS call maps to. */
export function errorCodeOf(rc: number): ErrorCode {
  const d = decodeRc(rc);
  if (d.format === 'tss') {
    if (d.layer === 'tcti') return d.base === 11 ? ErrorCodes.CONFIG_INVALID : ErrorCodes.HARDWARE_IO;
    if (d.layer === 'mu') return ErrorCodes.KEY_INVALID;
    if (d.base === 27 || d.base === 17 || d.base === 19) return ErrorCodes.HARDWARE_IO;
    if (d.base === 8) return ErrorCodes.HARDWARE_UNAVAILABLE;
    return ErrorCodes.HARDWARE_REFUSED;
  }
  switch (d.base) {
    case TPM_RC.HANDLE:
      return ErrorCodes.KEY_NOT_FOUND;
    case TPM_RC.INTEGRITY:
    case TPM_RC.KEY:
    case TPM_RC.ECC_POINT:
    case 0x081: // ASYMMETRIC
    case 0x087: // KEY_SIZE
    case 0x0a5: // BINDING
    case 0x0a6: // CURVE
      return ErrorCodes.KEY_INVALID;
    case TPM_RC.FAILURE:
      return ErrorCodes.HARDWARE_FAULT;
    case TPM_RC.RETRY:
    case TPM_RC.YIELDED:
    case TPM_RC.TESTING:
    case 0x909: // CANCELED
      return ErrorCodes.HARDWARE_IO;
    default:
      return ErrorCodes.HARDWARE_REFUSED;
  }
}

/** Extra advice for codes a user can act on. */
function hintOf(rc: number): string {
  const d = decodeRc(rc);
  switch (d.base) {
    case TPM_RC.OBJECT_MEMORY:
      return ': the TPM is out of object slots (another program keeps transient objects loaded; use /dev/tpmrm0, the kernel resource manager)';
    case TPM_RC.SESSION_MEMORY:
      return ': the TPM is out of session slots (use /dev/tpmrm0)';
    case TPM_RC.LOCKOUT:
      return ': the TPM is in dictionary-attack lockout (wait, or tpm2_dictionarylockout --clear-lockout)';
    case TPM_RC.NV_SPACE:
      return ': no room left in the TPM for persistent objects (delete some keys, or open the vault without persist)';
    case TPM_RC.INTEGRITY:
      return ': the saved key blob does not belong to this TPM’s storage key or was altered';
    default:
      return '';
  }
}

/** A KeyhopError for a failed TPM/TSS call: "TPM sign: TPM_RC_VALUE (parameter 1): <decode text>". */
export function tpmError(what: string, rc: number, decoded?: string, cause?: unknown): KeyhopError {
  const text = decoded !== undefined && decoded !== '' ? `: ${decoded}` : '';
  return new KeyhopError(
    errorCodeOf(rc),
    `TPM ${what} failed with ${describeRc(rc)} (rc ${hex(rc >>> 0, 3)})${text}${hintOf(rc)}`,
    cause === undefined ? undefined : { cause },
  );
}

/**
 * Runs `fn`, trying again after short back-offs while it fails with a retryable response code
 * (RETRY, YIELDED, TESTING). `rcOf` pulls the rc out of a rejection (undefined = not a TPM error).
 */
export async function withTpmRetry<T>(
  fn: () => Promise<T>,
  rcOf: (e: unknown) => number | undefined,
  options: { attempts?: number; backoffMs?: number } = {},
): Promise<T> {
  const attempts = options.attempts ?? 4;
  const backoff = options.backoffMs ?? 5;
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (e) {
      const rc = rcOf(e);
      if (rc === undefined || !isRetryable(rc) || i >= attempts) throw e;
      await new Promise((r) => setTimeout(r, backoff * 2 ** (i - 1)));
    }
  }
}
