import { type ErrorCode, ErrorCodes, KeyhopError } from '../../../runtime/errors.js';

/** Status bytes a 4-byte response carries (atecc608.md §1.6). */
export const Status = {
  SUCCESS: 0x00,
  MISCOMPARE: 0x01,
  PARSE_ERROR: 0x03,
  ECC_FAULT: 0x05,
  SELF_TEST_ERROR: 0x07,
  HEALTH_TEST_ERROR: 0x08,
  EXECUTION_ERROR: 0x0f,
  WAKE: 0x11,
  WATCHDOG: 0xee,
  COMM_ERROR: 0xff,
} as const;

interface StatusInfo {
  readonly name: string;
  readonly explanation: string;
  readonly code: ErrorCode;
}

const TABLE: ReadonlyMap<number, StatusInfo> = new Map([
  [Status.SUCCESS, info('success', 'the command succeeded', ErrorCodes.HARDWARE_FAULT)],
  [Status.MISCOMPARE, info('miscompare', 'the signature or MAC did not verify', ErrorCodes.HARDWARE_REFUSED)],
  [
    Status.PARSE_ERROR,
    info('parse error', 'the chip rejected the length, opcode or parameters', ErrorCodes.HARDWARE_REFUSED),
  ],
  [Status.ECC_FAULT, info('ECC fault', 'the computation failed inside the chip', ErrorCodes.HARDWARE_FAULT)],
  [
    Status.SELF_TEST_ERROR,
    info('self-test error', 'the chip failed a self test and is in failure mode', ErrorCodes.HARDWARE_FAULT),
  ],
  [
    Status.HEALTH_TEST_ERROR,
    info(
      'health-test error',
      'the random number generator failed its health test',
      ErrorCodes.HARDWARE_FAULT,
    ),
  ],
  [
    Status.EXECUTION_ERROR,
    info(
      'execution error',
      "the chip's state or the slot's policy forbids this",
      ErrorCodes.HARDWARE_REFUSED,
    ),
  ],
  [
    Status.WAKE,
    info('wake token', 'the chip had gone to sleep and lost the command', ErrorCodes.HARDWARE_IO),
  ],
  [
    Status.WATCHDOG,
    info('watchdog', 'too little watchdog time was left; the command was not run', ErrorCodes.HARDWARE_IO),
  ],
  [
    Status.COMM_ERROR,
    info('CRC or communication error', 'the chip received a corrupted command', ErrorCodes.HARDWARE_IO),
  ],
]);

function info(name: string, explanation: string, code: ErrorCode): StatusInfo {
  return { name, explanation, code };
}

const hex2 = (v: number): string => `0x${v.toString(16).toUpperCase().padStart(2, '0')}`;

/** `execution error`, `parse error`, … or `unknown status` for a byte the table lacks. */
export function statusName(status: number): string {
  return TABLE.get(status)?.name ?? 'unknown status';
}

/**
 * Statuses after which repeating the command can succeed: a corrupted command (0xFF), the watchdog
 * (0xEE), a chip that slept in between (0x11), an ECC computation fault (0x05; §1.6 "retry").
 */
export function isTransientStatus(status: number): boolean {
  return (
    status === Status.COMM_ERROR ||
    status === Status.WATCHDOG ||
    status === Status.WAKE ||
    status === Status.ECC_FAULT
  );
}

/** The chip reported a status other than the one the command needed. */
export class AteccStatusError extends KeyhopError {
  readonly status: number;
  readonly statusName: string;

  constructor(status: number, context: string) {
    const entry = TABLE.get(status);
    const name = entry?.name ?? 'unknown status';
    const explanation =
      status === Status.SUCCESS
        ? 'the chip returned a bare status where data was expected'
        : (entry?.explanation ?? 'the chip returned a status byte keyhop does not know');
    super(entry?.code ?? ErrorCodes.HARDWARE_FAULT, `${context}: ${name} (${hex2(status)}): ${explanation}`);
    this.name = 'AteccStatusError';
    this.status = status;
    this.statusName = name;
  }
}

/**
 * The typed error for `status` seen while running `context` (e.g. "Sign slot 2"). Parse and
 * execution errors are refusals, ECC/self-test/health failures are faults, and CRC, watchdog and
 * wake statuses are I/O problems (the caller may have retried them already).
 */
export function statusError(status: number, context: string): AteccStatusError {
  return new AteccStatusError(status, context);
}
