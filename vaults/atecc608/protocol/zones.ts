import { ErrorCodes, KeyhopError } from '../../../runtime/errors.js';
import { Zone } from './opcodes.js';

/** Zone geometry (atecc608.md §2.3, §3.1; cryptoauthlib calib_get_zone_size). */
export const CONFIG_ZONE_SIZE = 128;
export const OTP_ZONE_SIZE = 64;
export const BLOCK_SIZE = 32;
export const WORD_SIZE = 4;
export const SLOT_COUNT = 16;
export const WORDS_PER_BLOCK = BLOCK_SIZE / WORD_SIZE;

/** Bytes in data slot `slot`: 36 for slots 0–7, 416 for slot 8, 72 for slots 9–15. */
export function slotSize(slot: number): number {
  checkSlot(slot);
  if (slot < 8) return 36;
  return slot === 8 ? 416 : 72;
}

/** Throws KEY_INVALID unless `slot` is 0..15. */
export function checkSlot(slot: number, what = 'slot'): void {
  if (!Number.isInteger(slot) || slot < 0 || slot >= SLOT_COUNT) {
    throw new KeyhopError(ErrorCodes.KEY_INVALID, `ATECC ${what} ${slot} is not 0..15`);
  }
}

export type ZoneName = 'config' | 'otp' | 'data';

/** Where a Read or Write lands. `offset` is the 4-byte word inside the 32-byte block (0..7). */
export type ZoneAddress =
  | { readonly zone: 'config' | 'otp'; readonly block: number; readonly offset?: number }
  | { readonly zone: 'data'; readonly slot: number; readonly block: number; readonly offset?: number };

export type AccessSize = 4 | 32;

export const ZONE_CODES: Readonly<Record<ZoneName, number>> = {
  config: Zone.CONFIG,
  otp: Zone.OTP,
  data: Zone.DATA,
};

/** Bytes addressable in the zone (or slot) `address` names. */
export function zoneSize(address: ZoneAddress): number {
  if (address.zone === 'data') return slotSize(address.slot);
  return address.zone === 'config' ? CONFIG_ZONE_SIZE : OTP_ZONE_SIZE;
}

/**
 * The param2 of a Read or Write (§2.3, calib_get_addr): config/OTP `block << 3 | word`, data
 * `block << 8 | slot << 3 | word`. Checks the block and word against the zone size; a 32-byte
 * access must start at word 0 and may cover a short last block (the chip ignores the excess).
 */
export function encodeAddress(address: ZoneAddress, size: AccessSize): number {
  const offset = address.offset ?? 0;
  const { block } = address;
  if (address.zone === 'data') checkSlot(address.slot);
  const limit = zoneSize(address);
  const where = describeAddress(address);
  if (!Number.isInteger(block) || block < 0 || block * BLOCK_SIZE >= limit) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC ${where}: block ${block} is outside the zone`);
  }
  if (!Number.isInteger(offset) || offset < 0 || offset >= WORDS_PER_BLOCK) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC ${where}: word ${offset} is not 0..7`);
  }
  if (size === 32 && offset !== 0) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC ${where}: a 32-byte access must start at word 0`);
  }
  if (size === 4 && block * BLOCK_SIZE + (offset + 1) * WORD_SIZE > limit) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `ATECC ${where}: word ${offset} is past the end of the slot`,
    );
  }
  if (size !== 4 && size !== 32) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC ${where}: access size ${size} is not 4 or 32`);
  }
  if (address.zone === 'data') return (block << 8) | (address.slot << 3) | offset;
  return (block << 3) | offset;
}

/** `config block 0 word 4`, `data slot 8 block 2`, for messages. */
export function describeAddress(address: ZoneAddress): string {
  const word = address.offset ? ` word ${address.offset}` : '';
  const slot = address.zone === 'data' ? ` slot ${address.slot}` : '';
  return `${address.zone}${slot} block ${address.block}${word}`;
}
