import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { ErrorCodes, KeyhopError } from '../../../runtime/errors.js';
import { CONFIG_SIZE, COUNTER_MAX, OTP_SIZE, SLOT_COUNT, slotSize } from './constants.js';
import { ChipMemory, type Revision } from './memory.js';

export const CHIP_IMAGE_VERSION = 1;

/**
 * A chip's persistent state as plain JSON: the EEPROM zones, the private keys (hex, per slot; this is
 * test key material, never log it), the counters and the RNG state, so a saved chip resumes exactly
 * where it was (same next random bytes). Volatile state (TempKey, …) is not part of it: saving is a
 * power cycle.
 */
export interface ChipImage {
  readonly version: typeof CHIP_IMAGE_VERSION;
  readonly revision: Revision;
  readonly config: string;
  readonly otp: string;
  readonly slots: readonly string[];
  readonly privateKeys: readonly (string | null)[];
  readonly counters: readonly [number, number];
  readonly rng: { readonly k: string; readonly v: string };
}

export function imageOf(mem: ChipMemory, revision: Revision, rng: { k: string; v: string }): ChipImage {
  return {
    version: CHIP_IMAGE_VERSION,
    revision,
    config: bytesToHex(mem.config),
    otp: bytesToHex(mem.otp),
    slots: mem.slots.map(bytesToHex),
    privateKeys: mem.privateKeys.map((k) => (k === undefined ? null : bytesToHex(k))),
    counters: [mem.counters[0], mem.counters[1]],
    rng: { ...rng },
  };
}

export function memoryOf(image: ChipImage): ChipMemory {
  return new ChipMemory({
    config: hexToBytes(image.config),
    otp: hexToBytes(image.otp),
    slots: image.slots.map((s) => hexToBytes(s)),
    privateKeys: image.privateKeys.map((k) => (k === null ? undefined : hexToBytes(k))),
    counters: [image.counters[0], image.counters[1]],
  });
}

/** Checks an untrusted value (parsed JSON) field by field; throws DECODE_VERSION or DECODE_INVALID. */
export function parseChipImage(value: unknown): ChipImage {
  if (!isRecord(value)) throw invalid('not an object');
  if (value.version !== CHIP_IMAGE_VERSION) {
    throw new KeyhopError(
      ErrorCodes.DECODE_VERSION,
      `chip image version ${String(value.version)} is not supported`,
    );
  }
  const { revision, config, otp, slots, privateKeys, counters, rng } = value;
  if (revision !== '608A' && revision !== '608B') throw invalid('revision');
  const hex = (v: unknown, bytes: number, what: string): string => {
    if (typeof v !== 'string' || v.length !== 2 * bytes || !/^[0-9a-f]*$/.test(v)) throw invalid(what);
    return v;
  };
  if (!Array.isArray(slots) || slots.length !== SLOT_COUNT) throw invalid('slots');
  if (!Array.isArray(privateKeys) || privateKeys.length !== SLOT_COUNT) throw invalid('privateKeys');
  if (!Array.isArray(counters) || counters.length !== 2) throw invalid('counters');
  const counter = (v: unknown): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > COUNTER_MAX) throw invalid('counters');
    return v;
  };
  if (!isRecord(rng)) throw invalid('rng');
  return {
    version: CHIP_IMAGE_VERSION,
    revision,
    config: hex(config, CONFIG_SIZE, 'config'),
    otp: hex(otp, OTP_SIZE, 'otp'),
    slots: slots.map((s, i) => hex(s, slotSize(i), `slot ${i}`)),
    privateKeys: privateKeys.map((k, i) => (k === null ? null : hex(k, 32, `private key ${i}`))),
    counters: [counter(counters[0]), counter(counters[1])],
    rng: { k: hex(rng.k, 32, 'rng'), v: hex(rng.v, 32, 'rng') },
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(what: string): KeyhopError {
  return new KeyhopError(ErrorCodes.DECODE_INVALID, `chip image: invalid ${what}`);
}
