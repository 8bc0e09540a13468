import { describe, expect, it } from 'vitest';
import { isKeyhopError } from '../../../errors.js';
import { KEYHOP_PROFILE, NUS_PROFILE } from '../gatt-link.js';
import { buildAdvertisingPayload, fromStackUuid, MAX_LEGACY_AD_BYTES, toStackUuid } from './advertising.js';

describe('BLE advertising payload', () => {
  it('puts flags and the 128-bit service UUID (little-endian) in the advertising data', () => {
    const { advertisement } = buildAdvertisingPayload({ name: 'x', profile: NUS_PROFILE });
    expect(advertisement.toString('hex')).toBe(
      // len 2, flags 0x06 | len 17, complete 128-bit UUIDs, 6e400001-b5a3-f393-e0a9-e50e24dcca9e reversed
      '020106' + '1107' + '9ecadc240ee5a9e093f3a3b50100406e',
    );
  });

  it('puts the complete local name and manufacturer data in the scan response', () => {
    const { scanResponse } = buildAdvertisingPayload({
      name: 'kh',
      profile: KEYHOP_PROFILE,
      manufacturerData: Uint8Array.of(0xff, 0xff, 1, 2),
    });
    expect(scanResponse.toString('hex')).toBe('03096b68' + '05ffffff0102');
  });

  it('fills the scan response up to 31 bytes and rejects one byte more', () => {
    const mfg = new Uint8Array(10).fill(7);
    const name = 'n'.repeat(MAX_LEGACY_AD_BYTES - 4 - mfg.length);
    expect(
      buildAdvertisingPayload({ name, profile: KEYHOP_PROFILE, manufacturerData: mfg }).scanResponse,
    ).toHaveLength(31);
    let error: unknown;
    try {
      buildAdvertisingPayload({ name: `${name}n`, profile: KEYHOP_PROFILE, manufacturerData: mfg });
    } catch (e) {
      error = e;
    }
    expect(isKeyhopError(error, 'ENCODE_LIMIT')).toBe(true);
  });

  it('counts the name in UTF-8 bytes', () => {
    expect(() => buildAdvertisingPayload({ name: 'é'.repeat(15), profile: KEYHOP_PROFILE })).toThrow(
      /32 bytes/,
    );
  });

  it('rejects a manufacturer data without company identifier and a short service UUID', () => {
    expect(() =>
      buildAdvertisingPayload({ name: 'x', profile: KEYHOP_PROFILE, manufacturerData: Uint8Array.of(1) }),
    ).toThrow(/company identifier/);
    expect(() =>
      buildAdvertisingPayload({ name: 'x', profile: { ...KEYHOP_PROFILE, service: '180d' } }),
    ).toThrow(/128-bit/);
  });

  it('converts UUIDs to the stacks spelling and back', () => {
    expect(toStackUuid(KEYHOP_PROFILE.service)).toBe('c6a1f3e05b7d4e299a446b8d2f0e1c01');
    expect(fromStackUuid('C6A1F3E05B7D4E299A446B8D2F0E1C01')).toBe(KEYHOP_PROFILE.service);
    expect(fromStackUuid('180d')).toBe('180d');
  });
});
