import { ErrorCodes, KeyhopError } from '../../../runtime/errors.js';
import { Opcode, opcodeName } from './opcodes.js';

export type ClockDivider = 'M0' | 'M1' | 'M2';

/** ChipMode bits 3–7 for each divider (§3.1: 0x00 M0, 0x05 M1, 0x0D M2). */
export const CLOCK_DIVIDER_CODES: Readonly<Record<ClockDivider, number>> = { M0: 0x00, M1: 0x05, M2: 0x0d };

/**
 * Longest execution per opcode in ms for [M0, M1, M2]: cryptoauthlib's ATCA_NO_POLL tables for the
 * 608 (calib_execution.c; same in at-cryptoauth clock_divider.rs), atecc608.md §1.7.
 */
const BUDGETS: ReadonlyMap<number, readonly [number, number, number]> = new Map([
  [Opcode.AES, [27, 27, 27]],
  [Opcode.CHECK_MAC, [40, 40, 40]],
  [Opcode.COUNTER, [25, 25, 25]],
  [Opcode.DERIVE_KEY, [50, 50, 50]],
  [Opcode.ECDH, [75, 172, 531]],
  [Opcode.GEN_DIG, [25, 35, 35]],
  [Opcode.GENKEY, [115, 215, 653]],
  [Opcode.INFO, [5, 5, 5]],
  [Opcode.KDF, [165, 165, 165]],
  [Opcode.LOCK, [35, 35, 35]],
  [Opcode.MAC, [55, 55, 55]],
  [Opcode.NONCE, [20, 20, 20]],
  [Opcode.PRIV_WRITE, [50, 50, 50]],
  [Opcode.RANDOM, [23, 23, 23]],
  [Opcode.READ, [5, 5, 5]],
  [Opcode.SECURE_BOOT, [80, 160, 480]],
  [Opcode.SELF_TEST, [250, 625, 2324]],
  [Opcode.SHA, [36, 42, 75]],
  [Opcode.SIGN, [115, 220, 665]],
  [Opcode.UPDATE_EXTRA, [10, 10, 10]],
  [Opcode.VERIFY, [105, 295, 1085]],
  [Opcode.WRITE, [45, 45, 45]],
]);

const INDEX: Readonly<Record<ClockDivider, 0 | 1 | 2>> = { M0: 0, M1: 1, M2: 2 };

/** Execution budget of `opcode` at `divider`, ms. */
export function budgetMs(opcode: number, divider: ClockDivider): number {
  const row = BUDGETS.get(opcode);
  if (row === undefined) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `No execution budget is known for ${opcodeName(opcode)}`);
  }
  return row[INDEX[divider]];
}

/** True when the budget of `opcode` does not depend on the clock divider. */
export function budgetIsFixed(opcode: number): boolean {
  const row = BUDGETS.get(opcode);
  return row !== undefined && row[0] === row[1] && row[1] === row[2];
}

/** The divider a ChipMode byte (config byte 19) selects, or undefined for an undocumented code. */
export function dividerFromChipMode(chipMode: number): ClockDivider | undefined {
  const code = (chipMode >> 3) & 0x1f;
  for (const [name, value] of Object.entries(CLOCK_DIVIDER_CODES) as [ClockDivider, number][]) {
    if (value === code) return name;
  }
  return undefined;
}
