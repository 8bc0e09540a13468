import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { codeOf, hex, unhex } from '../../../test/support/bytes.js';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { writeCommand } from './commands.js';
import {
  buildConfigZone,
  type ConfigZoneFields,
  configWritePlan,
  decodeKeyConfig,
  decodeSlotConfig,
  describeSlot,
  encodeKeyConfig,
  encodeSlotConfig,
  lockSummaryCrc,
  parseConfigZone,
  withSlot,
} from './config.js';
import { atcaCrc } from './crc.js';

/**
 * cryptoauthlib's test_ecc608_configdata (test/api_calib/test_calib_config.c) with the lock bytes
 * at 0x55 (unlocked), as decoded in atecc608.md §3.3.
 */
const TEST_CONFIG_HEX = [
  '01230000 00006000 04050607 ee010100',
  'c000a100 af2fc444 8720c4f4 8f0f0f0f',
  '9f8f8364 c444c464 0f0f0f0f 0f0f0f0f',
  '0f0f0f0f ffffffff 00000000 ffffffff',
  '00000000 ff8403bc 09697600 00000000',
  '00000000 00005555 ffff0e40 00000000',
  '33001c00 13001c00 3c003a10 1c003300',
  '1c001c00 38003000 3c003c00 32003000',
].join('');

/** SlotConfig / KeyConfig per slot, the table of §3.3. */
const TABLE: readonly (readonly [number, number])[] = [
  [0x2faf, 0x0033],
  [0x44c4, 0x001c],
  [0x2087, 0x0013],
  [0xf4c4, 0x001c],
  [0x0f8f, 0x003c],
  [0x0f0f, 0x103a],
  [0x8f9f, 0x001c],
  [0x6483, 0x0033],
  [0x44c4, 0x001c],
  [0x64c4, 0x001c],
  [0x0f0f, 0x0038],
  [0x0f0f, 0x0030],
  [0x0f0f, 0x003c],
  [0x0f0f, 0x003c],
  [0x0f0f, 0x0032],
  [0x0f0f, 0x0030],
];

function testConfigFromTable(): Uint8Array {
  const fields: ConfigZoneFields = {
    serialNumber: unhex('0123000004050607ee'),
    revision: unhex('00006000'),
    aesEnabled: true,
    i2cEnabled: true,
    i2cAddress: 0x60, // 8-bit 0xC0
    countMatch: { raw: 0xa1 },
    chipMode: { raw: 0x00 },
    slots: TABLE.map(([sc, kc]) => ({ slotConfig: decodeSlotConfig(sc), keyConfig: decodeKeyConfig(kc) })),
    counters: [unhex('ffffffff00000000'), unhex('ffffffff00000000')],
    useLock: { raw: 0xff },
    volatileKeyPermission: { raw: 0x84 },
    secureBoot: { raw: 0xbc03 },
    kdfIvLoc: 0x09,
    kdfIvStr: unhex('6976'),
    chipOptions: { raw: 0x400e },
    configLocked: false,
    dataLocked: false,
  };
  const zone = buildConfigZone(fields);
  zone[13] = 0x01; // AES_Enable and I2C_Enable bytes as in the test image
  zone[14] = 0x01;
  return zone;
}

describe('config zone: cryptoauthlib test config', () => {
  const bytes = unhex(TEST_CONFIG_HEX);
  const cfg = parseConfigZone(bytes);

  it('builds the 128 bytes from the §3.3 table', () => {
    expect(hex(testConfigFromTable())).toBe(TEST_CONFIG_HEX.replace(/\s/g, ''));
  });

  it('decodes the device fields', () => {
    expect(hex(cfg.serialNumber)).toBe('0123000004050607ee');
    expect(hex(cfg.revision)).toBe('00006000');
    expect(cfg.aesEnabled).toBe(true);
    expect(cfg.i2cEnabled).toBe(true);
    expect(cfg.i2cAddress).toBe(0x60);
    expect(cfg.countMatch).toEqual({ enabled: true, slot: 0x0a, raw: 0xa1 });
    expect(cfg.chipMode).toEqual({
      useUserExtraAdd: false,
      ttlEnable: false,
      watchdogLong: false,
      clockDivider: 'M0',
      clockDividerCode: 0,
      raw: 0,
    });
    expect(cfg.useLock).toEqual({ enabled: false, slot: 15, raw: 0xff });
    expect(cfg.volatileKeyPermission).toEqual({ enabled: true, slot: 4, raw: 0x84 });
    expect(cfg.secureBoot).toEqual({
      mode: 3,
      persist: false,
      randomNonce: false,
      digestSlot: 12,
      publicKeySlot: 11,
      raw: 0xbc03,
    });
    expect(cfg.kdfIvLoc).toBe(9);
    expect(hex(cfg.kdfIvStr)).toBe('6976');
    expect([cfg.userExtra, cfg.userExtraAdd]).toEqual([0, 0]);
    expect([cfg.configLocked, cfg.dataLocked]).toEqual([false, false]);
    expect(cfg.chipOptions).toMatchObject({
      powerOnSelfTest: false,
      ioProtection: true,
      kdfAesEnabled: true,
      ecdhProtection: 0,
      kdfProtection: 0,
      ioProtectionKey: 4,
    });
    expect(hex(cfg.counters[0])).toBe('ffffffff00000000');
    expect(cfg.x509format).toEqual(Array(4).fill({ publicPosition: 0, templateLength: 0 }));
    expect(cfg.slots.map((s) => s.size)).toEqual([
      36, 36, 36, 36, 36, 36, 36, 36, 416, 72, 72, 72, 72, 72, 72, 72,
    ]);
    expect(cfg.slots.every((s) => !s.locked)).toBe(true);
  });

  it('decodes the sign/genkey slot 2 and the ECDH slot 0', () => {
    const s2 = cfg.slots[2]!;
    expect(s2.slotConfig).toMatchObject({
      externalSign: true,
      internalSign: true,
      ecdhAllowed: true,
      ecdhToNextSlot: false,
      isSecret: true,
      genKeyAllowed: true,
      privWriteAllowed: false,
      encryptRead: false,
      limitedUse: false,
      noMac: false,
      readKey: 7,
      writeKey: 0,
      writeConfig: 2,
    });
    expect(s2.keyConfig).toEqual({
      private: true,
      pubInfo: true,
      keyType: 'P256',
      keyTypeCode: 4,
      lockable: false,
      reqRandom: false,
      reqAuth: false,
      authKey: 0,
      persistentDisable: false,
      rfu: false,
      x509id: 0,
    });
    expect(describeSlot(cfg, 2)).toBe(
      'P256 private key: external sign, internal sign, ECDH (clear), GenKey allowed',
    );
    expect(describeSlot(cfg, 0)).toBe(
      'P256 private key: external sign, internal sign, ECDH (to slot 1), GenKey allowed, limited use, lockable',
    );
    expect(describeSlot(cfg, 7)).toBe(
      'P256 private key: external sign, internal sign, GenKey allowed, PrivWrite allowed (key 4), lockable',
    );
  });

  it('describes the other slot kinds', () => {
    expect(cfg.slots[5]!.keyConfig).toMatchObject({
      keyType: 'AES',
      persistentDisable: true,
      lockable: true,
    });
    expect(describeSlot(cfg, 5)).toBe('AES key: clear read, writable, persistent-disable, lockable');
    expect(describeSlot(cfg, 1)).toBe('secret data: encrypted read (key 4), encrypted write (key 4)');
    expect(describeSlot(cfg, 6)).toBe('secret data: not readable, not writable');
    expect(describeSlot(cfg, 14)).toBe('P256 public key (validated): clear read, writable, lockable');
    expect(describeSlot(cfg, 15)).toBe('P256 public key: clear read, writable, lockable');
    expect(codeOf(() => describeSlot(cfg, 16))).toBe('KEY_INVALID');
  });

  it('round-trips build(parse(bytes))', () => {
    expect(hex(buildConfigZone(cfg))).toBe(hex(bytes));
  });

  it('lets provisioning state a slot by name', () => {
    const vaultSlot = {
      slotConfig: { externalSign: true, ecdhAllowed: true, isSecret: true, genKeyAllowed: true },
      keyConfig: { private: true, pubInfo: true, keyType: 'P256' as const },
    };
    expect(encodeSlotConfig(vaultSlot.slotConfig)).toBe(0x2085);
    expect(encodeKeyConfig(vaultSlot.keyConfig)).toBe(0x0013);
    expect(encodeSlotConfig({ ...cfg.slots[2]!.slotConfig, internalSign: false })).toBe(0x2085);
    expect(encodeKeyConfig({ ...cfg.slots[2]!.keyConfig, lockable: true })).toBe(0x0033);
    const edited = parseConfigZone(withSlot(bytes, 9, vaultSlot));
    expect(describeSlot(edited, 9)).toBe('P256 private key: external sign, ECDH (clear), GenKey allowed');
    expect(hex(edited.bytes.subarray(38, 40))).toBe('8520');
    expect(hex(edited.bytes.subarray(114, 116))).toBe('1300');
    const locked = parseConfigZone(withSlot(bytes, 3, { locked: true }));
    expect(locked.slots.map((s) => s.locked)).toEqual(Array.from({ length: 16 }, (_, i) => i === 3));
    expect(hex(locked.bytes.subarray(88, 90))).toBe('f7ff');
  });

  it('builds named device fields', () => {
    const zone = buildConfigZone({
      i2cAddress: 0x35,
      chipMode: { useUserExtraAdd: true, watchdogLong: true, clockDivider: 'M2' },
      useLock: { enabled: true, slot: 3 },
      chipOptions: { ioProtection: true, ecdhProtection: 1, ioProtectionKey: 6 },
      userExtraAdd: 0x6a,
      configLocked: true,
    });
    expect(zone[16]).toBe(0x6a);
    expect(zone[19]).toBe(0x6d);
    expect(zone[68]).toBe(0x3a);
    expect(hex(zone.subarray(90, 92))).toBe('0261');
    expect([zone[85], zone[86], zone[87]]).toEqual([0x6a, 0x55, 0x00]);
    const cfg2 = parseConfigZone(zone);
    expect(cfg2.chipMode.clockDivider).toBe('M2');
    expect(cfg2.useLock).toMatchObject({ enabled: true, slot: 3 });
    expect(cfg2.configLocked).toBe(true);
    expect(codeOf(() => buildConfigZone({ i2cAddress: 0x80 }))).toBe('ENCODE_LIMIT');
    expect(codeOf(() => buildConfigZone({ serialNumber: new Uint8Array(8) }))).toBe('ENCODE_LIMIT');
    expect(codeOf(() => buildConfigZone({ slots: [{ slotConfig: { writeKey: 16 } }] }))).toBe('ENCODE_LIMIT');
    expect(codeOf(() => encodeKeyConfig({ keyType: 'RFU' }))).toBe('ENCODE_LIMIT');
    expect(encodeKeyConfig({ keyType: 'RFU', keyTypeCode: 5 })).toBe(0x14);
  });

  it('computes the Lock summary CRC over all 128 bytes', () => {
    expect(lockSummaryCrc(bytes)).toBe(atcaCrc(bytes));
    expect(codeOf(() => lockSummaryCrc(bytes.subarray(0, 127)))).toBe('ENCODE_LIMIT');
  });

  it('rejects a zone of the wrong size', () => {
    expect(codeOf(() => parseConfigZone(bytes.subarray(0, 127)))).toBe('DECODE_TRUNCATED');
    expect(codeOf(() => parseConfigZone(new Uint8Array(129)))).toBe('DECODE_INVALID');
  });
});

describe('configWritePlan', () => {
  const covered = (zone: Uint8Array) => {
    const touched = new Set<number>();
    for (const w of configWritePlan(zone)) {
      const start = w.address.block * 32 + (w.address.offset ?? 0) * 4;
      for (let i = 0; i < w.data.length; i++) {
        expect(touched.has(start + i)).toBe(false);
        touched.add(start + i);
        expect(w.data[i]).toBe(zone[start + i]);
      }
    }
    return touched;
  };

  it('writes bytes 16–83 and 88–127 only, in cryptoauthlib order', () => {
    const zone = unhex(TEST_CONFIG_HEX);
    const plan = configWritePlan(zone);
    expect(plan.map((w) => `${w.address.block}.${w.address.offset}/${w.data.length}`)).toEqual([
      '0.4/4',
      '0.5/4',
      '0.6/4',
      '0.7/4',
      '1.0/32',
      '2.0/4',
      '2.1/4',
      '2.2/4',
      '2.3/4',
      '2.4/4',
      '2.6/4',
      '2.7/4',
      '3.0/32',
    ]);
    const touched = covered(zone);
    for (let i = 0; i < 128; i++) expect(touched.has(i)).toBe(!(i < 16 || (i >= 84 && i < 88)));
    for (const w of plan) expect(() => writeCommand(w.address, w.data)).not.toThrow();
  });

  it('never touches bytes 0–15 or 84–87 for any zone', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 128, maxLength: 128 }), (zone) => {
        const touched = covered(zone);
        for (let i = 0; i < 16; i++) expect(touched.has(i)).toBe(false);
        for (let i = 84; i < 88; i++) expect(touched.has(i)).toBe(false);
      }),
      { numRuns: propertyRuns(50) },
    );
  });
});

describe('SlotConfig and KeyConfig codecs', () => {
  it('round-trip every 16-bit word', () => {
    for (let w = 0; w <= 0xffff; w++) {
      if (encodeSlotConfig(decodeSlotConfig(w)) !== w) throw new Error(`SlotConfig 0x${w.toString(16)}`);
      if (encodeKeyConfig(decodeKeyConfig(w)) !== w) throw new Error(`KeyConfig 0x${w.toString(16)}`);
    }
  });

  it('refuses words outside 16 bits', () => {
    expect(codeOf(() => decodeSlotConfig(0x10000))).toBe('DECODE_INVALID');
    expect(codeOf(() => decodeKeyConfig(-1))).toBe('DECODE_INVALID');
  });
});
