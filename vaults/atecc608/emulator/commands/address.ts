import { SLOT_COUNT, slotSize } from '../constants.js';

/**
 * Read/Write addressing (§2.3, `calib_get_addr`): config and OTP use (block << 3) | word; data uses
 * (block << 8) | (slot << 3) | word, a word being 4 bytes. For 32-byte accesses the word bits are
 * ignored. Returns undefined for an address outside the zone (the caller answers 0x03).
 */
export type Zone = 'config' | 'otp' | 'data';

export interface Location {
  readonly zone: Zone;
  /** Slot number for the data zone. */
  readonly slot: number;
  /** Byte offset inside the zone (config, OTP) or the slot (data). */
  readonly offset: number;
  /** Bytes of the access that exist; a short last block of a slot has fewer than 32 (§2.3). */
  readonly valid: number;
}

export function zoneOf(param1: number): Zone | undefined {
  switch (param1 & 0x03) {
    case 0:
      return 'config';
    case 1:
      return 'otp';
    case 2:
      return 'data';
    default:
      return undefined;
  }
}

export function locate(zone: Zone, address: number, size: 4 | 32): Location | undefined {
  const word = size === 32 ? 0 : address & 0x07;
  if (zone === 'config' || zone === 'otp') {
    const blocks = zone === 'config' ? 4 : 2;
    if (address >> 5 !== 0) return undefined;
    const block = (address >> 3) & 0x03;
    if (block >= blocks) return undefined;
    return { zone, slot: 0, offset: block * 32 + word * 4, valid: size };
  }
  const slot = (address >> 3) & 0x0f;
  const block = address >> 8;
  if (slot >= SLOT_COUNT) return undefined;
  const offset = block * 32 + word * 4;
  const length = slotSize(slot);
  if (offset >= length) return undefined;
  const valid = Math.min(size, length - offset);
  // A 4-byte word must lie wholly inside the slot; 32-byte blocks may be short (§2.3).
  if (size === 4 && valid < 4) return undefined;
  return { zone, slot, offset, valid };
}
