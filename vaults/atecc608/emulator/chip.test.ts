import { p256 } from '@noble/curves/nist.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { describe, expect, it } from 'vitest';
import { atcaCrc } from '../protocol/crc.js';
import { Atecc608Chip } from './chip.js';
import { COUNTER_MAX, Op, RANDOM_TEST_PATTERN } from './constants.js';
import { dataZoneCrc, hex, manualClock, packet, run, toHex, writeTestConfig } from './test-helpers.js';

const READ_CFG = 0x00;
const READ_DATA = 0x02;

function configLocked(seed = 'chip-test'): Atecc608Chip {
  const chip = new Atecc608Chip({ seed });
  const config = writeTestConfig(chip);
  expect(run(chip, Op.LOCK, 0x00, atcaCrc(config)).status).toBe(0x00);
  return chip;
}

function fullyLocked(seed = 'chip-test'): Atecc608Chip {
  const chip = configLocked(seed);
  expect(run(chip, Op.LOCK, 0x81).status).toBe(0x00);
  return chip;
}

function readConfig(chip: Atecc608Chip): Uint8Array {
  const out = new Uint8Array(128);
  for (let b = 0; b < 4; b++) out.set(run(chip, Op.READ, 0x80 | READ_CFG, b << 3).data, b * 32);
  return out;
}

/** Nonce pass-through of a digest into MsgDigBuf (mode 0x43), as calib_sign does on the 608. */
function loadDigest(chip: Atecc608Chip, digest: Uint8Array, mode = 0x43): void {
  expect(run(chip, Op.NONCE, mode, 0, digest).status).toBe(0x00);
}

function sec1(xy: Uint8Array): Uint8Array {
  const out = new Uint8Array(65);
  out[0] = 4;
  out.set(xy, 1);
  return out;
}

describe('wake and frames', () => {
  it('starts asleep and answers the wake token', () => {
    const chip = new Atecc608Chip({ seed: 'w' });
    expect(chip.awake).toBe(false);
    expect(chip.wake()).toBe(true);
    expect(toHex(chip.output)).toBe('04 11 33 43');
    expect(chip.wake()).toBe(false);
  });

  it('ignores commands while not awake', () => {
    const chip = new Atecc608Chip({ seed: 'w' });
    expect(chip.execute(packet(Op.INFO, 0)).response.length).toBe(0);
  });

  it('answers Info(Revision) like a 608A and a 608B (§1.5)', () => {
    const a = new Atecc608Chip({ seed: 'a' });
    a.wake();
    expect(toHex(a.execute(hex('07 30 00 00 00 03 5D')).response)).toBe('07 00 00 60 02 80 38');
    const b = new Atecc608Chip({ seed: 'b', revision: '608B' });
    b.wake();
    expect(toHex(b.execute(hex('07 30 00 00 00 03 5D')).response)).toBe('07 00 00 60 03 83 BB');
  });

  it('answers the status frames of §1.5', () => {
    const chip = new Atecc608Chip({ seed: 's' });
    chip.wake();
    const bad = hex('07 30 00 00 00 03 5E');
    expect(toHex(chip.execute(bad).response)).toBe('04 FF 01 42');
    expect(toHex(chip.execute(packet(0x99, 0)).response)).toBe('04 03 83 42');
    expect(toHex(chip.execute(packet(Op.READ, READ_DATA, 0)).response)).toBe('04 0F 23 42');
  });

  it('reports a CRC error before anything else and bad lengths as parse errors', () => {
    const chip = new Atecc608Chip({ seed: 's' });
    chip.wake();
    expect(chip.execute(new Uint8Array(0)).response[1]).toBe(0xff);
    expect(chip.execute(hex('07 30 00')).response[1]).toBe(0xff); // fewer bytes than count
    const short = new Uint8Array([0x05, 0x30, 0, 0, 0]);
    const crc = atcaCrc(short, 0, 3);
    short[3] = crc & 0xff;
    short[4] = crc >> 8;
    expect(chip.execute(short).response[1]).toBe(0x03);
    expect(run(chip, Op.INFO, 0, 0, new Uint8Array(4)).status).toBe(0x03); // Info takes no data
    expect(run(chip, Op.RANDOM, 0, 0, new Uint8Array(1)).status).toBe(0x03);
    expect(run(chip, Op.NONCE, 0x03, 0, new Uint8Array(31)).status).toBe(0x03);
  });

  it('answers 0x03 for opcodes it does not emulate', () => {
    const chip = new Atecc608Chip({ seed: 's' });
    for (const op of [
      Op.CHECKMAC,
      Op.DERIVE_KEY,
      Op.GENDIG,
      Op.MAC,
      Op.KDF,
      Op.AES,
      Op.SECURE_BOOT,
      Op.PRIV_WRITE,
    ]) {
      expect(run(chip, op, 0).status).toBe(0x03);
    }
  });
});

describe('factory state and lock order (§3.5)', () => {
  it('has the documented blank config bytes 0-15 and lock bytes', () => {
    const chip = new Atecc608Chip({ seed: 'f' });
    const c = readConfig(chip);
    expect(toHex(c.subarray(0, 2))).toBe('01 23');
    expect(toHex(c.subarray(4, 8))).toBe('00 00 60 02');
    expect(c[12]).toBe(0xee);
    expect(c[13]).toBe(0x01);
    expect(c[14]).toBe(0x01);
    expect(c[16]).toBe(0xc0);
    expect(toHex(c.subarray(86, 90))).toBe('55 55 FF FF');
    expect(chip.i2cAddress).toBe(0x60);
  });

  it('answers the Random test pattern until the config is locked', () => {
    const chip = new Atecc608Chip({ seed: 'r' });
    expect(run(chip, Op.RANDOM, 0).data).toEqual(RANDOM_TEST_PATTERN);
    expect(toHex(RANDOM_TEST_PATTERN.subarray(0, 8))).toBe('FF FF 00 00 FF FF 00 00');
    const locked = configLocked('r');
    const one = run(locked, Op.RANDOM, 0).data;
    const two = run(locked, Op.RANDOM, 0).data;
    expect(one.length).toBe(32);
    expect(one).not.toEqual(RANDOM_TEST_PATTERN);
    expect(one).not.toEqual(two);
  });

  it('refuses data/OTP reads before the data lock and reads config always', () => {
    const chip = new Atecc608Chip({ seed: 'l' });
    expect(run(chip, Op.READ, 0x80 | READ_DATA, 11 << 3).status).toBe(0x0f);
    expect(run(chip, Op.READ, 0x01, 0).status).toBe(0x0f);
    expect(run(chip, Op.READ, READ_CFG, 4).data.length).toBe(4);
    const locked = configLocked('l');
    expect(run(locked, Op.READ, 0x80 | READ_DATA, 11 << 3).status).toBe(0x0f);
    expect(run(locked, Op.READ, 0x80 | READ_CFG, 0).data.length).toBe(32);
  });

  it('refuses bytes 0-15, bytes 84-87 and a 32-byte block 2 in the config zone', () => {
    const chip = new Atecc608Chip({ seed: 'l' });
    for (let word = 0; word < 4; word++)
      expect(run(chip, Op.WRITE, 0x00, word, new Uint8Array(4)).status).toBe(0x0f);
    expect(run(chip, Op.WRITE, 0x80, 0, new Uint8Array(32)).status).toBe(0x0f);
    expect(run(chip, Op.WRITE, 0x00, 21, new Uint8Array(4)).status).toBe(0x0f);
    expect(run(chip, Op.WRITE, 0x80, 2 << 3, new Uint8Array(32)).status).toBe(0x0f);
    expect(run(chip, Op.WRITE, 0x00, 20, hex('01 02 03 04')).status).toBe(0x00);
    expect(toHex(run(chip, Op.READ, 0x00, 20).data)).toBe('01 02 03 04');
  });

  it('enforces lock order and single locks', () => {
    const chip = new Atecc608Chip({ seed: 'l' });
    expect(run(chip, Op.LOCK, 0x81).status).toBe(0x0f); // data before config
    expect(run(chip, Op.WRITE, 0x82, 11 << 3, new Uint8Array(32)).status).toBe(0x0f); // data write before config lock
    const config = writeTestConfig(chip);
    expect(run(chip, Op.LOCK, 0x00, atcaCrc(config) ^ 1).status).toBe(0x0f); // wrong summary CRC
    expect(run(chip, Op.LOCK, 0x00, atcaCrc(config)).status).toBe(0x00);
    expect(run(chip, Op.LOCK, 0x80).status).toBe(0x0f); // twice
    expect(run(chip, Op.WRITE, 0x00, 5, new Uint8Array(4)).status).toBe(0x0f); // config after lock
    expect(run(chip, Op.WRITE, 0x02, 11 << 3, new Uint8Array(4)).status).toBe(0x0f); // 4-byte before data lock
    expect(run(chip, Op.WRITE, 0x82, 0 << 3, new Uint8Array(32)).status).toBe(0x0f); // private-key slot
    expect(run(chip, Op.WRITE, 0x82, 11 << 3, new Uint8Array(32).fill(7)).status).toBe(0x00);
    expect(run(chip, Op.LOCK, 0x81).status).toBe(0x00);
    expect(run(chip, Op.LOCK, 0x81).status).toBe(0x0f);
  });

  it('checks the config-lock CRC against the Lock-config reference frame (§1.5)', () => {
    expect(toHex(packet(Op.LOCK, 0x80))).toBe('07 17 80 00 00 39 8D');
  });
});

describe('provisioning life cycle on the cryptoauthlib test config (§3.3)', () => {
  it('runs write config → lock config → GenKey → write data/OTP → lock data → use', () => {
    const chip = new Atecc608Chip({ seed: 'life' });
    const config = writeTestConfig(chip);
    const readBack = readConfig(chip);
    expect(readBack).toEqual(config);
    expect(run(chip, Op.GENKEY, 0x04, 2).status).toBe(0x0f); // config unlocked
    expect(run(chip, Op.LOCK, 0x00, atcaCrc(readBack)).status).toBe(0x00);

    const pub2 = run(chip, Op.GENKEY, 0x04, 2).data;
    expect(pub2.length).toBe(64);
    expect(run(chip, Op.GENKEY, 0x00, 2).data).toEqual(pub2);
    expect(run(chip, Op.INFO, 0x01, 2).data[0]).toBe(1);
    expect(run(chip, Op.INFO, 0x01, 0).data[0]).toBe(0);
    expect(run(chip, Op.GENKEY, 0x04, 11).status).toBe(0x0f); // public-key slot

    const written = new Map<number, Uint8Array>();
    const slot11 = Uint8Array.from({ length: 72 }, (_, i) => i);
    for (let block = 0; block < 3; block++) {
      const chunk = new Uint8Array(32);
      chunk.set(slot11.subarray(block * 32, block * 32 + 32));
      expect(run(chip, Op.WRITE, 0x82, (block << 8) | (11 << 3), chunk).status).toBe(0x00);
    }
    written.set(11, slot11);
    const otp = Uint8Array.from({ length: 64 }, (_, i) => 0xa0 ^ i);
    expect(run(chip, Op.WRITE, 0x81, 0, otp.slice(0, 32)).status).toBe(0x00);
    expect(run(chip, Op.WRITE, 0x81, 1 << 3, otp.slice(32)).status).toBe(0x00);
    expect(run(chip, Op.LOCK, 0x01, dataZoneCrc(written, otp) ^ 0x100).status).toBe(0x0f);
    expect(run(chip, Op.LOCK, 0x01, dataZoneCrc(written, otp)).status).toBe(0x00);

    // After the data lock.
    expect(run(chip, Op.READ, 0x82, (2 << 8) | (11 << 3)).data.subarray(0, 8)).toEqual(
      slot11.subarray(64, 72),
    );
    expect(run(chip, Op.READ, 0x02, (1 << 8) | (11 << 3) | 1).data).toEqual(slot11.subarray(36, 40));
    expect(run(chip, Op.READ, 0x81, 1 << 3).data).toEqual(otp.subarray(32));
    expect(run(chip, Op.WRITE, 0x81, 0, new Uint8Array(32)).status).toBe(0x0f); // OTP read-only
    expect(run(chip, Op.READ, 0x82, 2 << 3).status).toBe(0x0f); // private key
    expect(run(chip, Op.READ, 0x82, 1 << 3).status).toBe(0x0f); // encrypted read
    expect(run(chip, Op.READ, 0x82, 4 << 3).status).toBe(0x0f); // IsSecret
    expect(run(chip, Op.WRITE, 0x02, 12 << 3, hex('DE AD BE EF')).status).toBe(0x00); // 4-byte ok now
    expect(run(chip, Op.WRITE, 0x02, 3 << 3, hex('DE AD BE EF')).status).toBe(0x0f); // WriteConfig 0xF
    expect(run(chip, Op.WRITE, 0x42, 12 << 3, new Uint8Array(36)).status).toBe(0x0f); // encrypted write

    const digest = sha256(new TextEncoder().encode('life cycle'));
    loadDigest(chip, digest);
    const sig = run(chip, Op.SIGN, 0xa0, 2).data;
    expect(p256.verify(sig, digest, sec1(pub2), { prehash: false, lowS: false })).toBe(true);

    // Slot 0 (0x2FAF): GenKey allowed after the data lock, ECDH to slot 1, lockable.
    const pub0 = run(chip, Op.GENKEY, 0x04, 0).data;
    expect(pub0.length).toBe(64);
    const peer = p256.keygen();
    expect(run(chip, Op.ECDH, 0x00, 0, p256.getPublicKey(peer.secretKey, false).subarray(1)).status).toBe(
      0x00,
    );
    expect(run(chip, Op.LOCK, 0x02 | (0 << 2)).status).toBe(0x00);
    expect(run(chip, Op.LOCK, 0x02 | (0 << 2)).status).toBe(0x0f);
    expect(run(chip, Op.GENKEY, 0x04, 0).status).toBe(0x0f);
    expect(run(chip, Op.LOCK, 0x02 | (2 << 2)).status).toBe(0x0f); // slot 2 not lockable
    expect(readConfig(chip)[88]).toBe(0xfe);
  });
});

describe('keys, signatures, ECDH and Verify', () => {
  it('signs external digests that verify independently, never twice the same', () => {
    const chip = fullyLocked('sign');
    const pub = run(chip, Op.GENKEY, 0x04, 2).data;
    const seen = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const digest = sha256(Uint8Array.of(i % 3));
      loadDigest(chip, digest, i % 2 === 0 ? 0x43 : 0x03);
      const sig = run(chip, Op.SIGN, i % 2 === 0 ? 0xa0 : 0x80, 2).data;
      expect(sig.length).toBe(64);
      expect(p256.verify(sig, digest, sec1(pub), { prehash: false, lowS: false })).toBe(true);
      seen.add(toHex(sig));
    }
    expect(seen.size).toBe(12);
  });

  it('refuses Sign without a message, on the wrong slot or before the data lock', () => {
    const chip = fullyLocked('sign2');
    run(chip, Op.GENKEY, 0x04, 2);
    expect(run(chip, Op.SIGN, 0xa0, 2).status).toBe(0x0f); // no MsgDigBuf
    loadDigest(chip, new Uint8Array(32).fill(1));
    expect(run(chip, Op.SIGN, 0xa0, 11).status).toBe(0x0f); // not a private slot
    expect(run(chip, Op.SIGN, 0xa0, 2).data.length).toBe(64);
    expect(run(chip, Op.SIGN, 0xa0, 2).status).toBe(0x0f); // message used up (§9.4)
    loadDigest(chip, new Uint8Array(32).fill(1));
    expect(run(chip, Op.SIGN, 0x00, 2).status).toBe(0x0f); // internal sign: no GenDig/GenKey message
    expect(run(chip, Op.SIGN, 0x81, 2).status).toBe(0x03);

    const unlocked = configLocked('sign3');
    run(unlocked, Op.GENKEY, 0x04, 2);
    loadDigest(unlocked, new Uint8Array(32));
    expect(run(unlocked, Op.SIGN, 0xa0, 2).status).toBe(0x0f);
  });

  it('keeps the message after Sign with the keepMessageAfterSign quirk', () => {
    const chip = new Atecc608Chip({ seed: 'q', quirks: { keepMessageAfterSign: true } });
    writeTestConfig(chip);
    run(chip, Op.LOCK, 0x80);
    run(chip, Op.LOCK, 0x81);
    run(chip, Op.GENKEY, 0x04, 2);
    loadDigest(chip, new Uint8Array(32).fill(9));
    expect(run(chip, Op.SIGN, 0xa0, 2).data.length).toBe(64);
    expect(run(chip, Op.SIGN, 0xa0, 2).data.length).toBe(64);
  });

  it('computes the Nonce random-mode TempKey with the host formula (§2.1)', () => {
    const chip = fullyLocked('nonce');
    const pub = run(chip, Op.GENKEY, 0x04, 2).data;
    const numIn = Uint8Array.from({ length: 20 }, (_, i) => i + 1);
    const randOut = run(chip, Op.NONCE, 0x00, 0, numIn).data;
    expect(randOut.length).toBe(32);
    const tempKey = sha256(new Uint8Array([...randOut, ...numIn, 0x16, 0x00, 0x00]));
    const sig = run(chip, Op.SIGN, 0x80, 2).data;
    expect(p256.verify(sig, tempKey, sec1(pub), { prehash: false, lowS: false })).toBe(true);
    expect(run(chip, Op.NONCE, 0x00, 0, new Uint8Array(32)).status).toBe(0x03); // NumIn is 20 bytes
  });

  it('computes the ECDH x-coordinate like noble, to the output, TempKey or slot N+1', () => {
    const chip = fullyLocked('ecdh');
    const pub = run(chip, Op.GENKEY, 0x04, 2).data;
    const peer = p256.keygen();
    const peerXY = p256.getPublicKey(peer.secretKey, false).subarray(1);
    const expected = p256.getSharedSecret(peer.secretKey, sec1(pub)).subarray(1);
    expect(run(chip, Op.ECDH, 0x00, 2, peerXY).data).toEqual(expected); // SlotConfig bit 3 = 0 → clear
    expect(run(chip, Op.ECDH, 0x0c, 2, peerXY).data).toEqual(expected);
    expect(run(chip, Op.ECDH, 0x08, 2, peerXY).status).toBe(0x00);
    const offCurve = new Uint8Array(64).fill(1);
    expect(run(chip, Op.ECDH, 0x0c, 2, offCurve).status).toBe(0x0f); // §9.5
    expect(run(chip, Op.ECDH, 0x0e, 2, peerXY).status).toBe(0x03); // encrypted output not emulated
    expect(run(chip, Op.ECDH, 0x0c, 11, peerXY).status).toBe(0x0f);
    expect(run(chip, Op.ECDH, 0x0c, 2, peerXY.subarray(0, 32)).status).toBe(0x03);
  });

  it('runs ephemeral ECDH from a TempKey key (GenKey 0xFFFF, ECDH 0x0D)', () => {
    const chip = fullyLocked('eph');
    const ephPub = run(chip, Op.GENKEY, 0x04, 0xffff).data;
    const peer = p256.keygen();
    const peerXY = p256.getPublicKey(peer.secretKey, false).subarray(1);
    const expected = p256.getSharedSecret(peer.secretKey, sec1(ephPub)).subarray(1);
    expect(run(chip, Op.ECDH, 0x0d, 0, peerXY).data).toEqual(expected);
    chip.sleep();
    expect(run(chip, Op.ECDH, 0x0d, 0, peerXY).status).toBe(0x0f);
  });

  it('refuses clear ECDH output when ChipOptions.ECDHProt is set', () => {
    const chip = new Atecc608Chip({ seed: 'prot' });
    const config = writeTestConfig(chip);
    expect(run(chip, Op.WRITE, 0x00, 22, Uint8Array.of(config[88]!, config[89]!, 0x0e, 0x41)).status).toBe(0);
    run(chip, Op.LOCK, 0x80);
    run(chip, Op.LOCK, 0x81);
    run(chip, Op.GENKEY, 0x04, 2);
    const peerXY = p256.getPublicKey(p256.keygen().secretKey, false).subarray(1);
    expect(run(chip, Op.ECDH, 0x0c, 2, peerXY).status).toBe(0x0f);
    expect(run(chip, Op.ECDH, 0x08, 2, peerXY).status).toBe(0x00);
  });

  it('verifies external signatures: 0x00 pass, 0x01 miscompare', () => {
    const chip = new Atecc608Chip({ seed: 'verify' });
    const key = p256.keygen();
    const pub = p256.getPublicKey(key.secretKey, false).subarray(1);
    const digest = sha256(Uint8Array.of(1, 2, 3));
    const sig = p256.sign(digest, key.secretKey, { prehash: false });
    loadDigest(chip, digest);
    expect(run(chip, Op.VERIFY, 0x22, 0x0004, new Uint8Array([...sig, ...pub])).status).toBe(0x00);
    const bad = sig.slice();
    bad[10] = (bad[10] ?? 0) ^ 1;
    expect(run(chip, Op.VERIFY, 0x22, 0x0004, new Uint8Array([...bad, ...pub])).status).toBe(0x01);
    expect(run(chip, Op.VERIFY, 0x22, 0x0004, new Uint8Array([...new Uint8Array(64), ...pub])).status).toBe(
      0x01,
    );
    expect(run(chip, Op.VERIFY, 0x22, 0x0005, new Uint8Array([...sig, ...pub])).status).toBe(0x03);
    // TempKey source (mode 0x02) without a TempKey message.
    expect(run(chip, Op.VERIFY, 0x02, 0x0004, new Uint8Array([...sig, ...pub])).status).toBe(0x0f);
  });

  it('verifies against a stored public key (mode 0)', () => {
    const chip = fullyLocked('stored');
    const key = p256.keygen();
    const pub = p256.getPublicKey(key.secretKey, false).subarray(1);
    const slot = new Uint8Array(96);
    slot.set(pub.subarray(0, 32), 4);
    slot.set(pub.subarray(32), 40);
    for (let block = 0; block < 3; block++) {
      expect(
        run(chip, Op.WRITE, 0x82, (block << 8) | (15 << 3), slot.slice(block * 32, block * 32 + 32)).status,
      ).toBe(0);
    }
    const digest = sha256(Uint8Array.of(4));
    const sig = p256.sign(digest, key.secretKey, { prehash: false });
    loadDigest(chip, digest);
    expect(run(chip, Op.VERIFY, 0x20, 15, sig).status).toBe(0x00);
    expect(run(chip, Op.VERIFY, 0x20, 15, new Uint8Array(64).fill(3)).status).toBe(0x01);
    expect(run(chip, Op.VERIFY, 0x20, 14, sig).status).toBe(0x0f); // PubInfo: needs validation
  });
});

describe('volatile state, watchdog and timing', () => {
  it('keeps TempKey across idle and loses it on sleep', () => {
    const chip = fullyLocked('idle');
    const pub = run(chip, Op.GENKEY, 0x04, 2).data;
    const digest = sha256(Uint8Array.of(7));
    loadDigest(chip, digest, 0x03);
    chip.idle();
    expect(chip.awake).toBe(false);
    chip.wake();
    const sig = run(chip, Op.SIGN, 0x80, 2).data;
    expect(p256.verify(sig, digest, sec1(pub), { prehash: false, lowS: false })).toBe(true);
    loadDigest(chip, digest, 0x03);
    chip.sleep();
    chip.wake();
    expect(run(chip, Op.SIGN, 0x80, 2).status).toBe(0x0f);
  });

  it('sleeps after 1.3 s awake (13 s with ChipMode bit 2)', () => {
    const clock = manualClock();
    const chip = new Atecc608Chip({ seed: 'wd', now: clock.now });
    chip.wake();
    run(chip, Op.NONCE, 0x03, 0, new Uint8Array(32));
    clock.advance(1300);
    expect(chip.checkWatchdog()).toBe(false);
    clock.advance(1);
    expect(chip.checkWatchdog()).toBe(true);
    expect(chip.awake).toBe(false);
    chip.wake();
    expect(toHex(chip.output)).toBe('04 11 33 43');

    const slow = new Atecc608Chip({ seed: 'wd2', now: clock.now });
    expect(run(slow, Op.WRITE, 0x00, 4, Uint8Array.of(0xc0, 0, 0, 0x04)).status).toBe(0);
    clock.advance(5000);
    expect(slow.checkWatchdog()).toBe(false);
    clock.advance(8001);
    expect(slow.checkWatchdog()).toBe(true);
  });

  it('answers 0xEE when the command would outlast the watchdog', () => {
    const clock = manualClock();
    const chip = new Atecc608Chip({ seed: 'ee', now: clock.now, timing: 'datasheet' });
    chip.wake();
    clock.advance(1280); // Random's 23 ms budget no longer fits in 1.3 s
    expect(toHex(chip.execute(packet(Op.RANDOM, 0)).response)).toBe('04 EE 31 41');
    expect(chip.execute(packet(Op.INFO, 0)).response[0]).toBe(7); // 5 ms still fits
  });

  it('models datasheet budgets per clock divider and a scale', () => {
    const chip = new Atecc608Chip({ seed: 't', timing: 'datasheet' });
    chip.wake();
    expect(chip.execute(packet(Op.SIGN, 0x80, 0)).execMs).toBe(115);
    expect(chip.execute(packet(Op.INFO, 0)).execMs).toBe(5);
    expect(chip.execute(hex('07 30 00 00 00 03 5E')).execMs).toBe(0);
    run(chip, Op.WRITE, 0x00, 4, Uint8Array.of(0xc0, 0, 0, 0x28)); // ChipMode divider M1
    expect(chip.execute(packet(Op.SIGN, 0x80, 0)).execMs).toBe(220);
    const half = new Atecc608Chip({ seed: 't', timing: { scale: 0.5 } });
    half.wake();
    expect(half.execute(packet(Op.GENKEY, 0x04, 0)).execMs).toBe(57.5);
    const zero = new Atecc608Chip({ seed: 't' });
    zero.wake();
    expect(zero.execute(packet(Op.GENKEY, 0x04, 0)).execMs).toBe(0);
  });
});

describe('other commands and fault injection', () => {
  it('hashes with SHA Start/Update/End like SHA-256', () => {
    const chip = new Atecc608Chip({ seed: 'sha' });
    const message = Uint8Array.from({ length: 64 + 20 }, (_, i) => i * 3);
    expect(run(chip, Op.SHA, 0x01, 64, message.slice(0, 64)).status).toBe(0x0f); // no Start
    expect(run(chip, Op.SHA, 0x00).status).toBe(0);
    expect(run(chip, Op.SHA, 0x01, 64, message.slice(0, 64)).status).toBe(0);
    chip.idle();
    chip.wake();
    expect(run(chip, Op.SHA, 0xc2, 20, message.slice(64)).data).toEqual(sha256(message));
    expect(run(chip, Op.SHA, 0x00).status).toBe(0);
    expect(run(chip, Op.SHA, 0x02, 0).data).toEqual(sha256(new Uint8Array(0)));
  });

  it('counts up to the limit and refuses past it', () => {
    const chip = new Atecc608Chip({ seed: 'ctr' });
    expect(toHex(run(chip, Op.COUNTER, 0, 1).data)).toBe('00 00 00 00');
    expect(toHex(run(chip, Op.COUNTER, 1, 1).data)).toBe('01 00 00 00');
    expect(toHex(run(chip, Op.COUNTER, 0, 1).data)).toBe('01 00 00 00');
    expect(run(chip, Op.COUNTER, 1, 2).status).toBe(0x03);
    const image = chip.exportImage();
    const full = Atecc608Chip.fromImage({ ...image, counters: [COUNTER_MAX - 1, 0] });
    expect(toHex(run(full, Op.COUNTER, 1, 0).data)).toBe('FF FF 1F 00');
    expect(run(full, Op.COUNTER, 1, 0).status).toBe(0x0f);
  });

  it('sets UserExtra/UserExtraAdd once after the lock and moves the address after sleep', () => {
    const chip = new Atecc608Chip({ seed: 'ux' });
    expect(run(chip, Op.UPDATE_EXTRA, 0, 0x12).status).toBe(0x0f); // non-zero before lock
    const config = writeTestConfig(chip);
    config[19] = 0x01; // ChipMode: use UserExtraAdd
    expect(run(chip, Op.WRITE, 0x00, 4, config.slice(16, 20)).status).toBe(0);
    expect(run(chip, Op.LOCK, 0x80).status).toBe(0);
    expect(run(chip, Op.UPDATE_EXTRA, 1, 0x6a).status).toBe(0);
    expect(run(chip, Op.UPDATE_EXTRA, 1, 0x6c).status).toBe(0x0f);
    expect(run(chip, Op.UPDATE_EXTRA, 0, 0x12).status).toBe(0);
    expect(run(chip, Op.UPDATE_EXTRA, 2, 0).status).toBe(0x0f);
    expect(chip.i2cAddress).toBe(0x60);
    chip.sleep();
    expect(chip.i2cAddress).toBe(0x35);
  });

  it('injects response CRC errors and ECC faults', () => {
    const chip = fullyLocked('inj');
    chip.inject({ responseCrcError: 1, eccFault: 1 });
    const broken = run(chip, Op.INFO, 0).raw;
    expect(toHex(broken.subarray(0, 5))).toBe('07 00 00 60 02');
    expect(broken[6]).not.toBe(0x38);
    expect(toHex(run(chip, Op.INFO, 0).raw)).toBe('07 00 00 60 02 80 38');
    expect(run(chip, Op.GENKEY, 0x04, 2).status).toBe(0x05);
    expect(run(chip, Op.GENKEY, 0x04, 2).data.length).toBe(64);
  });

  it('reports self-test failures and enters failure mode', () => {
    const chip = new Atecc608Chip({ seed: 'st' });
    expect(toHex(run(chip, Op.SELFTEST, 0x3b).raw)).toBe('04 00 03 40');
    expect(run(chip, Op.SELFTEST, 0x04).status).toBe(0x03);
    chip.inject({ selfTestFailure: 0x02 });
    expect(run(chip, Op.SELFTEST, 0x3b).status).toBe(0x02);
    expect(run(chip, Op.RANDOM, 0).status).toBe(0x07);
    expect(run(chip, Op.INFO, 0).data.length).toBe(4);
    chip.inject({ selfTestFailure: false });
    expect(run(chip, Op.SELFTEST, 0x3b).status).toBe(0x00);
    expect(run(chip, Op.RANDOM, 0).data.length).toBe(32);
  });

  it('answers 04 07 C4 40 on wake when the power-on self-test fails (§9.1)', () => {
    const chip = new Atecc608Chip({ seed: 'post', timing: 'datasheet' });
    chip.wake();
    expect(run(chip, Op.WRITE, 0x00, 22, Uint8Array.of(0xff, 0xff, 0x01, 0x00)).status).toBe(0);
    expect(chip.wakeDelayMs).toBe(20);
    chip.inject({ selfTestFailure: true });
    chip.sleep();
    chip.wake();
    expect(toHex(chip.output)).toBe('04 07 C4 40');
    expect(run(chip, Op.READ, 0, 0).status).toBe(0x07);
  });

  it('round-trips through an image, keys and RNG included', () => {
    const chip = fullyLocked('img');
    const pub = run(chip, Op.GENKEY, 0x04, 2).data;
    const image = JSON.parse(JSON.stringify(chip.exportImage()));
    const copy = Atecc608Chip.fromImage(image);
    expect(run(copy, Op.GENKEY, 0x00, 2).data).toEqual(pub);
    expect(run(copy, Op.RANDOM, 0).data).toEqual(run(chip, Op.RANDOM, 0).data);
  });

  it('is reproducible for a seed', () => {
    const a = fullyLocked('same');
    const b = fullyLocked('same');
    expect(run(a, Op.GENKEY, 0x04, 2).data).toEqual(run(b, Op.GENKEY, 0x04, 2).data);
    expect(readConfig(a)).toEqual(readConfig(b));
  });
});
