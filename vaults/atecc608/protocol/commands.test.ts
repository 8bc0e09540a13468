import { describe, expect, it } from 'vitest';
import { codeOf, hex, unhex } from '../../../test/support/bytes.js';
import {
  counterCommand,
  ecdhCommand,
  genKeyPrivateCommand,
  genKeyPublicCommand,
  infoCommand,
  isTestPattern,
  lockConfigCommand,
  lockDataCommand,
  lockSlotCommand,
  noncePassThroughCommand,
  nonceRandomCommand,
  parseCounter,
  parseEcdhEncrypted,
  parseKeyValid,
  parsePublicKey,
  randomCommand,
  readCommand,
  selfTestCommand,
  selfTestFailures,
  shaEndCommand,
  shaPublicCommand,
  shaStartCommand,
  shaUpdateCommand,
  signExternalCommand,
  updateExtraCommand,
  verifyExternalCommand,
  verifyStoredCommand,
  verifyVerdict,
  writeCommand,
} from './commands.js';
import { withCrc } from './crc.js';
import { type Command, decodeCommand, encodeCommand } from './packet.js';
import { encodeAddress } from './zones.js';

const wire = (c: Command) => hex(encodeCommand(c));
const fill = (n: number, v = 0xab) => new Uint8Array(n).fill(v);
/** Header (count … param2) of an encoded command, without its data and CRC. */
const header = (c: Command) => wire(c).slice(0, 10);

describe('reference frames (atecc608.md §1.5)', () => {
  it.each([
    ['Info revision', infoCommand(), '0730000000035d'],
    ['Random', randomCommand(), '071b00000024cd'],
    ['Read config block 0', readCommand({ zone: 'config', block: 0 }, 32), '070280000009ad'],
    ['Read config word 4', readCommand({ zone: 'config', block: 0, offset: 4 }, 4), '07020004001d6d'],
    ['GenKey private slot 2', genKeyPrivateCommand(2), '07400402008507'],
    ['GenKey public slot 2', genKeyPublicCommand(2), '07400002000685'],
    ['Sign external MsgDigBuf slot 2', signExternalCommand(2), '0741a002007d05'],
    ['Lock config, no CRC', lockConfigCommand(), '0717800000398d'],
  ])('%s', (_name, command, bytes) => {
    expect(wire(command)).toBe(bytes);
  });
});

describe('command builders', () => {
  it('builds Info KeyValid and State', () => {
    expect(header(infoCommand('keyValid', 9))).toBe('0730010900');
    expect(header(infoCommand('state'))).toBe('0730020000');
    expect(codeOf(() => infoCommand('keyValid', 16))).toBe('KEY_INVALID');
  });

  it('builds Nonce random and pass-through modes', () => {
    expect(header(nonceRandomCommand(fill(20)))).toBe('1b16000000');
    expect(header(nonceRandomCommand(fill(20), { updateSeed: false, useTempKey: true }))).toBe('1b16010080');
    expect(header(noncePassThroughCommand(fill(32)))).toBe('2716430000');
    expect(header(noncePassThroughCommand(fill(32), 'tempkey'))).toBe('2716030000');
    expect(header(noncePassThroughCommand(fill(64), 'altkeybuf'))).toBe('4716a30000');
    expect(codeOf(() => nonceRandomCommand(fill(32)))).toBe('ENCODE_LIMIT');
    expect(codeOf(() => noncePassThroughCommand(fill(33)))).toBe('ENCODE_LIMIT');
  });

  it('puts the digest after the Nonce header and checks the frame', () => {
    const digest = fill(32, 0x5a);
    const packet = encodeCommand(noncePassThroughCommand(digest));
    const decoded = decodeCommand(packet);
    expect(decoded.ok && hex(decoded.command.data)).toBe(hex(digest));
  });

  it('builds GenKey into TempKey and Sign from TempKey', () => {
    expect(header(genKeyPrivateCommand('tempkey'))).toBe('074004ffff');
    expect(header(signExternalCommand(15, 'tempkey'))).toBe('0741800f00');
    expect(codeOf(() => signExternalCommand(-1))).toBe('KEY_INVALID');
    expect(codeOf(() => genKeyPublicCommand(1.5))).toBe('KEY_INVALID');
  });

  it('builds Verify external (P256 key type) and stored', () => {
    const sig = fill(64, 1);
    const pub = fill(64, 2);
    const ext = encodeCommand(verifyExternalCommand(sig, pub));
    expect(hex(ext.subarray(0, 5))).toBe('8745220400');
    expect(hex(ext.subarray(5, 69))).toBe(hex(sig));
    expect(hex(ext.subarray(69, 133))).toBe(hex(pub));
    expect(header(verifyExternalCommand(sig, pub, 'tempkey'))).toBe('8745020400');
    expect(header(verifyStoredCommand(15, sig))).toBe('4745200f00');
    expect(codeOf(() => verifyExternalCommand(fill(63), pub))).toBe('KEY_INVALID');
    expect(codeOf(() => verifyExternalCommand(sig, fill(65)))).toBe('KEY_INVALID');
    expect([verifyVerdict(0), verifyVerdict(1), verifyVerdict(0x0f)]).toEqual([true, false, undefined]);
  });

  it('builds the ECDH modes', () => {
    const peer = fill(64);
    expect(header(ecdhCommand(2, peer))).toBe('47430c0200');
    expect(header(ecdhCommand(0, peer, { result: 'compat' }))).toBe('4743000000');
    expect(header(ecdhCommand(0, peer, { encrypt: true }))).toBe('47430e0000');
    expect(header(ecdhCommand(0, peer, { result: 'tempkey' }))).toBe('4743080000');
    expect(header(ecdhCommand('tempkey', peer))).toBe('47430d0000');
    expect(header(ecdhCommand('tempkey', peer, { encrypt: true }))).toBe('47430f0000');
    expect(header(ecdhCommand('tempkey', peer, { result: 'slot' }))).toBe('4743050000');
    expect(codeOf(() => ecdhCommand(2, fill(65)))).toBe('KEY_INVALID');
  });

  it('encodes addresses per §2.3 and checks them against the zone sizes', () => {
    expect(encodeAddress({ zone: 'config', block: 3 }, 32)).toBe(0x18);
    expect(encodeAddress({ zone: 'otp', block: 1, offset: 7 }, 4)).toBe(0x0f);
    expect(encodeAddress({ zone: 'data', slot: 8, block: 12, offset: 7 }, 4)).toBe(0x0c47);
    expect(encodeAddress({ zone: 'data', slot: 15, block: 2, offset: 1 }, 4)).toBe(0x0279);
    expect(encodeAddress({ zone: 'data', slot: 0, block: 1 }, 32)).toBe(0x0100);
    const bad = [
      [{ zone: 'config', block: 4 }, 32],
      [{ zone: 'otp', block: 2 }, 32],
      [{ zone: 'config', block: 0, offset: 8 }, 4],
      [{ zone: 'config', block: 0, offset: 1 }, 32],
      [{ zone: 'data', slot: 0, block: 1, offset: 1 }, 4], // slot 0 is 36 bytes: block 1 holds one word
      [{ zone: 'data', slot: 9, block: 3 }, 32],
      [{ zone: 'data', slot: 9, block: 2, offset: 2 }, 4],
      [{ zone: 'data', slot: 8, block: 13 }, 32],
    ] as const;
    for (const [address, size] of bad)
      expect(codeOf(() => encodeAddress(address, size))).toBe('ENCODE_LIMIT');
    expect(codeOf(() => encodeAddress({ zone: 'data', slot: 16, block: 0 }, 32))).toBe('KEY_INVALID');
  });

  it('builds Read and Write for every zone', () => {
    expect(header(readCommand({ zone: 'otp', block: 1 }, 32))).toBe('0702810800');
    expect(header(readCommand({ zone: 'data', slot: 11, block: 2, offset: 1 }, 4))).toBe('0702025902');
    expect(header(writeCommand({ zone: 'data', slot: 8, block: 1 }, fill(32)))).toBe('2712824001');
    expect(header(writeCommand({ zone: 'config', block: 0, offset: 4 }, fill(4)))).toBe('0b12000400');
    expect(codeOf(() => writeCommand({ zone: 'data', slot: 8, block: 0 }, fill(5)))).toBe('ENCODE_LIMIT');
  });

  it('refuses config Writes over bytes 0–15 and 84–87', () => {
    expect(codeOf(() => writeCommand({ zone: 'config', block: 0 }, fill(32)))).toBe('ENCODE_LIMIT');
    expect(codeOf(() => writeCommand({ zone: 'config', block: 0, offset: 3 }, fill(4)))).toBe('ENCODE_LIMIT');
    expect(codeOf(() => writeCommand({ zone: 'config', block: 2 }, fill(32)))).toBe('ENCODE_LIMIT');
    expect(codeOf(() => writeCommand({ zone: 'config', block: 2, offset: 5 }, fill(4)))).toBe('ENCODE_LIMIT');
    expect(() => writeCommand({ zone: 'config', block: 2, offset: 4 }, fill(4))).not.toThrow();
    expect(() => writeCommand({ zone: 'config', block: 2, offset: 6 }, fill(4))).not.toThrow();
  });

  it('builds the Lock modes', () => {
    expect(header(lockConfigCommand(0x1234))).toBe('0717003412');
    expect(header(lockDataCommand())).toBe('0717810000');
    expect(header(lockDataCommand(0xbeef))).toBe('071701efbe');
    expect(header(lockSlotCommand(7))).toBe('07171e0000');
    expect(codeOf(() => lockConfigCommand(0x10000))).toBe('ENCODE_LIMIT');
  });

  it('builds SHA Start, Update, End and Public', () => {
    expect(header(shaStartCommand())).toBe('0747000000');
    expect(header(shaUpdateCommand(fill(64)))).toBe('4747014000');
    expect(header(shaEndCommand(fill(3)))).toBe('0a47020300');
    expect(header(shaEndCommand(new Uint8Array(0), 'output'))).toBe('0747c20000');
    expect(header(shaEndCommand(fill(63), 'msgdigbuf'))).toBe('4647423f00');
    expect(header(shaPublicCommand(11))).toBe('0747030b00');
    expect(codeOf(() => shaUpdateCommand(fill(63)))).toBe('ENCODE_LIMIT');
    expect(codeOf(() => shaEndCommand(fill(64)))).toBe('ENCODE_LIMIT');
  });

  it('builds SelfTest, Counter and UpdateExtra', () => {
    expect(header(selfTestCommand())).toBe('07773b0000');
    expect(header(selfTestCommand(0x02))).toBe('0777020000');
    expect(codeOf(() => selfTestCommand(0x04))).toBe('ENCODE_LIMIT');
    expect(codeOf(() => selfTestCommand(0))).toBe('ENCODE_LIMIT');
    expect(header(counterCommand(1, true))).toBe('0724010100');
    expect(header(counterCommand(0, false))).toBe('0724000000');
    expect(codeOf(() => counterCommand(2, false))).toBe('ENCODE_LIMIT');
    expect(header(updateExtraCommand('userExtraAdd', 0x6a))).toBe('0720016a00');
    expect(header(updateExtraCommand(0, 0x12))).toBe('0720001200');
    expect(header(updateExtraCommand('decrementLimited', 5))).toBe('0720020500');
    expect(codeOf(() => updateExtraCommand(3, 0))).toBe('ENCODE_LIMIT');
    expect(codeOf(() => updateExtraCommand(2, 16))).toBe('KEY_INVALID');
    expect(codeOf(() => updateExtraCommand(0, 256))).toBe('ENCODE_LIMIT');
  });

  it('copies caller data so later edits do not change a built command', () => {
    const digest = fill(32, 1);
    const c = noncePassThroughCommand(digest);
    digest[0] = 9;
    expect(c.data?.[0]).toBe(1);
  });
});

describe('response parsers', () => {
  it('parses with exact lengths', () => {
    expect(parseKeyValid(unhex('01000000'))).toBe(true);
    expect(parseKeyValid(unhex('00000000'))).toBe(false);
    expect(parseCounter(unhex('ffff1f00'))).toBe(2_097_151);
    expect(parseCounter(unhex('ffffffff'))).toBe(0xffffffff);
    const enc = parseEcdhEncrypted(fill(64, 3));
    expect(enc.encrypted.length + enc.outNonce.length).toBe(64);
    expect(codeOf(() => parsePublicKey(fill(65)))).toBe('DECODE_INVALID');
    expect(codeOf(() => parseCounter(fill(3)))).toBe('DECODE_INVALID');
  });

  it('recognises the unlocked-chip Random pattern only', () => {
    const pattern = unhex('ffff0000'.repeat(8));
    expect(isTestPattern(pattern)).toBe(true);
    expect(isTestPattern(pattern.subarray(0, 28))).toBe(false);
    const almost = pattern.slice();
    almost[31] = 1;
    expect(isTestPattern(almost)).toBe(false);
  });

  it('reads SelfTest results apart from real errors', () => {
    expect(selfTestFailures(0x00, 0x3b)).toBe(0);
    expect(selfTestFailures(0x02, 0x3b)).toBe(0x02);
    expect(selfTestFailures(0x28, 0x3b)).toBe(0x28);
    expect(selfTestFailures(0x0f, 0x3b)).toBeUndefined();
    expect(selfTestFailures(0x08, 0x01)).toBeUndefined();
    expect(selfTestFailures(0x11, 0x3b)).toBeUndefined();
    expect(selfTestFailures(0xee, 0x3b)).toBeUndefined();
  });

  it('agrees with the CRC helper on a whole frame', () => {
    expect(wire(randomCommand())).toBe(hex(withCrc(unhex('071b000000'))));
  });
});
