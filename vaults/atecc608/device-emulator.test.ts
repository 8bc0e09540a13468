/**
 * The protocol core (Atecc608) against the chip emulator, in process: every device method over
 * EmulatorLink(new Atecc608Chip(...)), the provisioning life cycle with cryptoauthlib's test config
 * (atecc608.md §3.3), and every signature, shared secret and digest checked by independent code
 * (@noble/curves, node:crypto) rather than by the chip itself.
 */
import { createHash } from 'node:crypto';
import { p256 } from '@noble/curves/nist.js';
import { describe, expect, it } from 'vitest';
import { describeError, ErrorCodes, isKeyhopError, type KeyhopError } from '../../runtime/errors.js';
import { Atecc608, isTestPattern } from './device.js';
import { Atecc608Chip, type ChipOptions } from './emulator/chip.js';
import { EmulatorLink } from './emulator/emulator-link.js';
import { dataZoneCrc, manualClock, testConfig } from './emulator/test-helpers.js';
import type { AteccLink, CommandStep, TransactOptions } from './link.js';
import { Opcode, SelfTestBit } from './protocol/opcodes.js';

/** EmulatorLink plus a record of every transaction (opcodes sent, how it ended). */
class RecordingLink implements AteccLink {
  readonly kind = 'emulator';
  readonly location: string;
  readonly transactions: { opcodes: number[]; budgets: number[]; end: string }[] = [];
  readonly inner: EmulatorLink;

  constructor(chip: Atecc608Chip) {
    this.inner = new EmulatorLink(chip);
    this.location = this.inner.location;
  }

  transact(steps: readonly CommandStep[], options: TransactOptions = {}): Promise<Uint8Array[]> {
    this.transactions.push({
      opcodes: steps.map((s) => s.packet[1]!),
      budgets: steps.map((s) => s.maxExecMs),
      end: options.end ?? 'idle',
    });
    return this.inner.transact(steps, options);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** Opcodes of every transaction so far, then forgets them. */
  take(): number[][] {
    return this.transactions.splice(0).map((t) => t.opcodes);
  }
}

function setup(options: ChipOptions = {}, device: ConstructorParameters<typeof Atecc608>[1] = {}) {
  const chip = new Atecc608Chip({ seed: 'device-emulator', ...options });
  const link = new RecordingLink(chip);
  return { chip, link, device: new Atecc608(link, device) };
}

const KEY_SLOTS = [0, 2, 7] as const;

/**
 * The provisioning life cycle as an application runs it: write cryptoauthlib's test config through
 * the driver, lock it with its summary CRC, generate keys, optionally write data and lock the data
 * zone. Returns what was written, for later checks.
 */
async function provision(
  device: Atecc608,
  options: { lockData?: boolean; slot8?: Uint8Array; otp?: Uint8Array } = {},
): Promise<{ zone: Uint8Array; keys: Map<number, Uint8Array> }> {
  const zone = testConfig(await device.readConfigZone());
  await device.writeConfigZone(zone);
  expect(await device.readConfigZone()).toEqual(zone);
  await device.lockConfig(zone);
  const keys = new Map<number, Uint8Array>();
  for (const slot of KEY_SLOTS) keys.set(slot, await device.genKey(slot));
  if (options.slot8 !== undefined) await device.write({ zone: 'data', slot: 8, block: 0 }, options.slot8);
  if (options.otp !== undefined) await device.write({ zone: 'otp', block: 0 }, options.otp);
  if (options.lockData !== false) {
    const slots = new Map<number, Uint8Array>();
    if (options.slot8 !== undefined) slots.set(8, options.slot8);
    const otp = new Uint8Array(64);
    if (options.otp !== undefined) otp.set(options.otp);
    await device.lockData(dataZoneCrc(slots, otp));
  }
  return { zone, keys };
}

async function lockedDevice(options: ChipOptions = {}) {
  const s = setup(options);
  const provisioned = await provision(s.device);
  s.link.take();
  return { ...s, ...provisioned };
}

const sha256 = (data: Uint8Array) => new Uint8Array(createHash('sha256').update(data).digest());
const uncompressed = (xy: Uint8Array) => Uint8Array.from([0x04, ...xy]);
const verifies = (sig: Uint8Array, digest: Uint8Array, xy: Uint8Array) =>
  p256.verify(sig, digest, uncompressed(xy), { prehash: false, lowS: false });

async function rejection(p: Promise<unknown>): Promise<KeyhopError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  if (!isKeyhopError(e)) throw new Error(`expected a KeyhopError, got ${describeError(e)}`);
  return e;
}

describe('Atecc608 over the emulator: identity', () => {
  it('reads the revision of a 608A and a 608B', async () => {
    const a = setup({ revision: '608A' });
    expect(await a.device.info()).toEqual({ revision: Uint8Array.of(0, 0, 0x60, 0x02), model: '608A' });
    const b = setup({ revision: '608B' });
    expect(await b.device.info()).toEqual({ revision: Uint8Array.of(0, 0, 0x60, 0x03), model: '608B' });
    expect(a.link.take()).toEqual([[Opcode.INFO]]);
  });

  it('reads the serial number and the config zone of a factory-blank part', async () => {
    const { device, link } = setup();
    const sn = await device.serialNumber();
    expect(sn).toHaveLength(9);
    expect([sn[0], sn[1], sn[8]]).toEqual([0x01, 0x23, 0xee]);
    const zone = await device.readConfigZone();
    expect(zone).toHaveLength(128);
    expect(Uint8Array.from([...zone.subarray(0, 4), ...zone.subarray(8, 13)])).toEqual(sn);
    const cfg = await device.config();
    expect(cfg.serialNumber).toEqual(sn);
    expect(cfg.revision).toEqual(Uint8Array.of(0, 0, 0x60, 0x02));
    expect(cfg.i2cAddress).toBe(0x60);
    expect(cfg.configLocked).toBe(false);
    expect(cfg.dataLocked).toBe(false);
    expect(cfg.aesEnabled).toBe(true);
    // One Read for the serial number; readConfigZone is four Reads in one wake.
    expect(link.take()).toEqual([[Opcode.READ], Array(4).fill(Opcode.READ), Array(4).fill(Opcode.READ)]);
  });

  it('answers the test pattern from Random until the config zone is locked, then random bytes', async () => {
    const { device } = setup();
    const before = await device.random();
    expect(isTestPattern(before)).toBe(true);
    const zone = testConfig(await device.readConfigZone());
    await device.writeConfigZone(zone);
    expect(isTestPattern(await device.random())).toBe(true);
    await device.lockConfig(zone);
    const a = await device.random();
    const b = await device.random();
    expect(isTestPattern(a)).toBe(false);
    expect(a).toHaveLength(32);
    expect(a).not.toEqual(b);
  });
});

describe('Atecc608 over the emulator: provisioning life cycle', () => {
  it('writes the cryptoauthlib test config, locks it with its CRC, generates keys and locks data', async () => {
    const { device, link } = setup();
    expect(await device.random().then(isTestPattern)).toBe(true);
    link.take();
    const zone = testConfig(await device.readConfigZone());
    await device.writeConfigZone(zone);
    // configWritePlan in one wake: 4 words of block 0, block 1, 7 words of block 2, block 3.
    const writes = link.take().at(-1)!;
    expect(writes).toEqual(Array(13).fill(Opcode.WRITE));
    await device.lockConfig(zone);
    const cfg = await device.config();
    expect(cfg.configLocked).toBe(true);
    expect(cfg.dataLocked).toBe(false);
    expect(cfg.bytes.subarray(16, 84)).toEqual(zone.subarray(16, 84));
    expect(cfg.slots[2]?.slotConfig).toMatchObject({
      externalSign: true,
      ecdhAllowed: true,
      genKeyAllowed: true,
    });
    expect(cfg.slots[2]?.keyConfig).toMatchObject({ private: true, pubInfo: true, keyType: 'P256' });

    const keys = new Map<number, Uint8Array>();
    for (const slot of KEY_SLOTS) {
      const pub = await device.genKey(slot);
      expect(pub).toHaveLength(64);
      expect(p256.Point.fromBytes(uncompressed(pub)).assertValidity()).toBeUndefined();
      keys.set(slot, pub);
    }
    expect(new Set([...keys.values()].map((k) => Buffer.from(k).toString('hex'))).size).toBe(3);
    for (const slot of KEY_SLOTS) expect(await device.publicKey(slot)).toEqual(keys.get(slot));

    // Sign needs the data zone locked (§3.5).
    const digest = sha256(new TextEncoder().encode('before data lock'));
    const early = await rejection(device.sign(2, digest));
    expect(early.code).toBe(ErrorCodes.HARDWARE_REFUSED);
    expect(early.message).toMatch(/Sign slot 2: execution error \(0x0F\)/);

    await device.lockData(dataZoneCrc(new Map(), new Uint8Array(64)));
    const locked = await device.config();
    expect(locked.dataLocked).toBe(true);
    for (const slot of KEY_SLOTS) {
      const sig = await device.sign(slot, digest);
      expect(sig).toHaveLength(64);
      expect(verifies(sig, digest, keys.get(slot)!)).toBe(true);
    }
    // GenKey after the data lock: allowed where SlotConfig bit 13 is set (slots 0, 2 and 7 here).
    const fresh = await device.genKey(2);
    expect(fresh).not.toEqual(keys.get(2));
    expect(await device.publicKey(2)).toEqual(fresh);
  });

  it('refuses a config lock with a wrong CRC and leaves the zone unlocked', async () => {
    const { device } = setup();
    const zone = testConfig(await device.readConfigZone());
    await device.writeConfigZone(zone);
    const other = zone.slice();
    other[20]! ^= 0x01;
    const e = await rejection(device.lockConfig(other));
    expect(e.code).toBe(ErrorCodes.HARDWARE_REFUSED);
    expect(e.message).toContain('Lock config');
    expect((await device.config()).configLocked).toBe(false);
    await device.lockConfig(zone);
    expect((await device.config()).configLocked).toBe(true);
    // A second lock is refused too.
    expect((await rejection(device.lockConfig(zone))).code).toBe(ErrorCodes.HARDWARE_REFUSED);
  });

  it('refuses a data lock with a wrong CRC, and locks without one', async () => {
    const { device } = setup();
    const zone = testConfig(await device.readConfigZone());
    await device.writeConfigZone(zone);
    await device.lockConfig(zone);
    const good = dataZoneCrc(new Map(), new Uint8Array(64));
    expect((await rejection(device.lockData(good ^ 0x0101))).code).toBe(ErrorCodes.HARDWARE_REFUSED);
    expect((await device.config()).dataLocked).toBe(false);
    await device.lockData();
    expect((await device.config()).dataLocked).toBe(true);
  });

  it('refuses a config Write over bytes 84-87 in the driver, before anything is sent', async () => {
    const { device, link } = setup();
    link.take();
    for (const bad of [
      device.write({ zone: 'config', block: 2, offset: 5 }, new Uint8Array(4)),
      device.write({ zone: 'config', block: 2 }, new Uint8Array(32)),
      device.write({ zone: 'config', block: 0, offset: 1 }, new Uint8Array(4)),
    ]) {
      expect((await rejection(bad)).code).toBe(ErrorCodes.ENCODE_LIMIT);
    }
    expect(link.take()).toEqual([]);
    // The chip would have refused them as well: its bytes 84-87 are still 00 00 55 55.
    expect((await device.read({ zone: 'config', block: 2, offset: 5 }, 4)).join()).toBe('0,0,85,85');
  });

  it('sets UserExtra and UserExtraAdd once after the config lock', async () => {
    const { device } = setup();
    const zone = testConfig(await device.readConfigZone());
    await device.writeConfigZone(zone);
    // Before the lock only value 0 is accepted (§9.6).
    await device.updateExtra('userExtra', 0);
    expect((await rejection(device.updateExtra('userExtra', 0x42))).code).toBe(ErrorCodes.HARDWARE_REFUSED);
    await device.lockConfig(zone);
    await device.updateExtra('userExtra', 0x42);
    expect((await device.config()).userExtra).toBe(0x42);
    expect((await rejection(device.updateExtra('userExtra', 0x43))).code).toBe(ErrorCodes.HARDWARE_REFUSED);
    await device.updateExtra(1, 0xc2);
    expect((await device.config()).userExtraAdd).toBe(0xc2);
  });
});

describe('Atecc608 over the emulator: keys and crypto', () => {
  it('signs digests verifiably with every key slot, repeatedly', async () => {
    const { device, keys } = await lockedDevice({ seed: 'sign' });
    for (const slot of KEY_SLOTS) {
      for (let i = 0; i < 3; i++) {
        const digest = sha256(Uint8Array.of(slot, i));
        const sig = await device.sign(slot, digest);
        expect(verifies(sig, digest, keys.get(slot)!)).toBe(true);
        const wrong = digest.slice();
        wrong[0]! ^= 0x80;
        expect(verifies(sig, wrong, keys.get(slot)!)).toBe(false);
      }
    }
  });

  it('verifies external signatures: true for a good one, false for a bad one', async () => {
    const { device, keys } = await lockedDevice({ seed: 'verify' });
    const digest = sha256(new TextEncoder().encode('verify me'));
    const chipSig = await device.sign(2, digest);
    expect(await device.verifyExternal(digest, chipSig, keys.get(2)!)).toBe(true);
    expect(await device.verifyExternal(digest, chipSig, keys.get(0)!)).toBe(false);
    // A signature made by independent code with a host key.
    const host = p256.utils.randomSecretKey();
    const hostPub = p256.getPublicKey(host, false).subarray(1);
    const hostSig = p256.sign(digest, host, { prehash: false });
    expect(await device.verifyExternal(digest, hostSig, hostPub)).toBe(true);
    const other = sha256(new TextEncoder().encode('something else'));
    expect(await device.verifyExternal(other, hostSig, hostPub)).toBe(false);
  });

  it('computes ECDH secrets equal to the x-coordinate noble computes', async () => {
    const { device, keys } = await lockedDevice({ seed: 'ecdh' });
    for (const slot of [0, 2]) {
      const host = p256.utils.randomSecretKey();
      const hostPub = p256.getPublicKey(host, false).subarray(1);
      const secret = await device.ecdh(slot, hostPub);
      const expected = p256.getSharedSecret(host, uncompressed(keys.get(slot)!), true).subarray(1);
      expect(secret).toEqual(expected);
    }
    // Slot 7 does not allow ECDH (SlotConfig 0x6483, bit 2 clear).
    const peer = p256.getPublicKey(p256.utils.randomSecretKey(), false).subarray(1);
    expect((await rejection(device.ecdh(7, peer))).code).toBe(ErrorCodes.HARDWARE_REFUSED);
  });

  it('hashes with SHA-256 exactly like node:crypto', async () => {
    const { device, link } = setup({ seed: 'sha' });
    for (const n of [0, 1, 63, 64, 65, 200, 4096]) {
      const data = Uint8Array.from({ length: n }, (_, i) => (i * 7 + n) & 0xff);
      expect(Buffer.from(await device.sha256(data)).toString('hex')).toBe(
        createHash('sha256').update(data).digest('hex'),
      );
    }
    // SHA's budget depends on the clock divider: one Read of config block 0 learns it first. Then
    // one wake per digest (Start, one Update per full 64-byte block, End), in wakes of at most 12
    // commands so a long input never outlives the watchdog or a link's per-wake limit.
    const lengths = link.take().map((t) => t.length);
    expect(lengths).toEqual([1, 2, 2, 2, 3, 3, 5, 12, 12, 12, 12, 12, 6]);
    const e = await rejection(device.sha256(new Uint8Array(4097)));
    expect(e.code).toBe(ErrorCodes.ENCODE_LIMIT);
  });

  it('hashes 4 KiB with datasheet timing without running into the watchdog', async () => {
    // 66 commands × 36 ms would be 2.4 s in one wake, past the 1.3 s watchdog.
    const { device } = setup({ seed: 'sha-slow', timing: 'datasheet' });
    const data = new Uint8Array(4096).fill(0x5a);
    expect(Buffer.from(await device.sha256(data)).toString('hex')).toBe(
      createHash('sha256').update(data).digest('hex'),
    );
  }, 15_000);

  it('runs the self tests, and reports an injected failure as a bitmap', async () => {
    const { device, chip } = setup({ seed: 'selftest' });
    expect(await device.selfTest()).toBe(0);
    expect(await device.selfTest(SelfTestBit.ECDSA)).toBe(0);
    chip.inject({ selfTestFailure: SelfTestBit.ECDSA });
    expect(await device.selfTest(SelfTestBit.ALL)).toBe(SelfTestBit.ECDSA);
    // In failure mode other commands answer 0x07 (a fault) until a SelfTest passes.
    const e = await rejection(device.random());
    expect(e.code).toBe(ErrorCodes.HARDWARE_FAULT);
    expect(e.message).toContain('self-test error');
    expect(await device.selfTest(SelfTestBit.RNG)).toBe(0);
    expect(await device.random()).toHaveLength(32);
  });

  it('refuses to work with a chip whose power-on self-test failed (04 07 C4 40 on wake)', async () => {
    const { device, chip } = setup({ seed: 'post' });
    const zone = testConfig(await device.readConfigZone());
    zone[90]! |= 0x01; // ChipOptions bit 0: power-on self-test
    await device.writeConfigZone(zone);
    await device.lockConfig(zone);
    expect((await device.config()).chipOptions.powerOnSelfTest).toBe(true);
    chip.inject({ selfTestFailure: true });
    await device.sleep();
    const e = await rejection(device.info());
    expect(e.code).toBe(ErrorCodes.HARDWARE_FAULT);
    expect(e.message).toContain('self-test failure');
    // The next power-on self-test passes again.
    chip.inject({ selfTestFailure: false });
    chip.sleep();
    expect((await device.info()).model).toBe('608A');
    expect(await device.random()).toHaveLength(32);
  });

  it('reads and increments the monotonic counters', async () => {
    const { device } = setup({ seed: 'counter' });
    expect(await device.counter(0)).toBe(0);
    expect(await device.counter(0, true)).toBe(1);
    expect(await device.counter(0, true)).toBe(2);
    expect(await device.counter(0)).toBe(2);
    expect(await device.counter(1)).toBe(0);
    expect((await rejection(device.counter(2))).code).toBe(ErrorCodes.ENCODE_LIMIT);
  });
});

describe('Atecc608 over the emulator: zones per lock state', () => {
  const block = (v: number) => new Uint8Array(32).fill(v);

  it('reads and writes data slot 8 and the OTP zone as each lock state allows', async () => {
    const { device } = setup({ seed: 'zones' });
    const slot8 = { zone: 'data', slot: 8, block: 0 } as const;
    const otp = { zone: 'otp', block: 0 } as const;
    const refused = async (p: Promise<unknown>) => expect((await rejection(p)).code).toBe('HARDWARE_REFUSED');

    // Config unlocked: neither zone can be read or written.
    await refused(device.write(slot8, block(0x11)));
    await refused(device.read(slot8));
    await refused(device.write(otp, block(0x22)));
    await refused(device.read(otp));

    const zone = testConfig(await device.readConfigZone());
    await device.writeConfigZone(zone);
    await device.lockConfig(zone);
    // Config locked, data unlocked: 32-byte writes only, no reads; private-key slots never.
    await device.write(slot8, block(0x11));
    await device.write(otp, block(0x22));
    await refused(device.write({ ...slot8, block: 1 }, new Uint8Array(4)));
    await refused(device.write({ zone: 'data', slot: 2, block: 0 }, block(0)));
    await refused(device.read(slot8));
    await refused(device.read(otp));
    await device.write({ zone: 'data', slot: 12, block: 0 }, block(0x33));

    const slots = new Map([
      [8, block(0x11)],
      [12, block(0x33)],
    ]);
    const otpZone = new Uint8Array(64);
    otpZone.set(block(0x22));
    await device.lockData(dataZoneCrc(slots, otpZone));

    // Both locked: OTP is read-only; slot 8 (IsSecret, EncryptRead) cannot be read or written in
    // clear; slot 12 (0x0F0F, clear data) can be both.
    expect(await device.read(otp)).toEqual(block(0x22));
    expect(await device.read({ ...otp, block: 1 }, 4)).toEqual(new Uint8Array(4));
    await refused(device.write(otp, block(0x44)));
    await refused(device.read(slot8));
    await refused(device.write(slot8, block(0x55)));
    const slot12 = { zone: 'data', slot: 12, block: 0 } as const;
    expect(await device.read(slot12)).toEqual(block(0x33));
    await device.write({ ...slot12, offset: 1 }, Uint8Array.of(1, 2, 3, 4));
    expect(await device.read({ ...slot12, offset: 1 }, 4)).toEqual(Uint8Array.of(1, 2, 3, 4));
  });

  it('locks a lockable slot: it keeps working for reads, refuses writes and GenKey, and locks once', async () => {
    const { device, keys } = await lockedDevice({ seed: 'slot-lock' });
    const slot12 = { zone: 'data', slot: 12, block: 0 } as const;
    await device.write(slot12, block(0x5a));
    await device.lockSlot(12);
    expect((await device.config()).slots[12]?.locked).toBe(true);
    expect(await device.read(slot12)).toEqual(block(0x5a));
    expect((await rejection(device.write(slot12, block(0)))).code).toBe(ErrorCodes.HARDWARE_REFUSED);
    expect((await rejection(device.lockSlot(12))).code).toBe(ErrorCodes.HARDWARE_REFUSED);

    // Slot 0 is a lockable key slot (KeyConfig 0x0033): after the lock it still signs, but GenKey
    // can no longer replace its key.
    await device.lockSlot(0);
    const digest = sha256(Uint8Array.of(0));
    expect(verifies(await device.sign(0, digest), digest, keys.get(0)!)).toBe(true);
    expect((await rejection(device.genKey(0))).code).toBe(ErrorCodes.HARDWARE_REFUSED);
    // Slot 2 (KeyConfig 0x0013) is not lockable.
    expect((await rejection(device.lockSlot(2))).code).toBe(ErrorCodes.HARDWARE_REFUSED);
  });
});

describe('Atecc608 over the emulator: errors', () => {
  it('refuses to sign with a slot that holds no private key (HARDWARE_REFUSED)', async () => {
    const { device } = await lockedDevice({ seed: 'nokey' });
    const digest = sha256(Uint8Array.of(1));
    for (const slot of [8, 11, 15]) {
      const e = await rejection(device.sign(slot, digest));
      expect(e.code).toBe(ErrorCodes.HARDWARE_REFUSED);
      expect(e.message).toContain(`Sign slot ${slot}`);
    }
    // GenKey public of a non-key slot is refused too.
    expect((await rejection(device.publicKey(11))).code).toBe(ErrorCodes.HARDWARE_REFUSED);
  });

  it('refuses GenKey before the config lock', async () => {
    const { device } = setup({ seed: 'early-genkey' });
    expect((await rejection(device.genKey(2))).code).toBe(ErrorCodes.HARDWARE_REFUSED);
  });

  it('checks arguments before sending anything', async () => {
    const { device, link } = await lockedDevice({ seed: 'args' });
    expect((await rejection(device.sign(16, new Uint8Array(32)))).code).toBe(ErrorCodes.KEY_INVALID);
    expect((await rejection(device.sign(2, new Uint8Array(31)))).code).toBe(ErrorCodes.ENCODE_LIMIT);
    expect((await rejection(device.ecdh(2, new Uint8Array(65)))).code).toBe(ErrorCodes.KEY_INVALID);
    expect(link.take()).toEqual([]);
  });
});

describe('Atecc608 over the emulator: faults and recovery', () => {
  it('retries a response with a corrupt CRC, and gives up after its retries', async () => {
    const { device, chip, link } = setup({ seed: 'crc' }, { retries: 2 });
    chip.inject({ responseCrcError: 1 });
    expect((await device.info()).model).toBe('608A');
    expect(link.take()).toEqual([[Opcode.INFO], [Opcode.INFO]]);
    chip.inject({ responseCrcError: 3 });
    const e = await rejection(device.info());
    expect(e.code).toBe(ErrorCodes.HARDWARE_IO);
    expect(e.message).toContain('CRC');
    expect(link.take()).toHaveLength(3);
    expect((await device.info()).model).toBe('608A');
  });

  it('retries an ECC fault: the whole Nonce + Sign transaction runs again', async () => {
    const { device, chip, link, keys } = await lockedDevice({ seed: 'ecc' });
    chip.inject({ eccFault: 1 });
    const digest = sha256(Uint8Array.of(5));
    const sig = await device.sign(2, digest);
    expect(verifies(sig, digest, keys.get(2)!)).toBe(true);
    expect(link.take()).toEqual([
      [Opcode.NONCE, Opcode.SIGN],
      [Opcode.NONCE, Opcode.SIGN],
    ]);
    chip.inject({ eccFault: 2 });
    const pub = p256.getPublicKey(p256.utils.randomSecretKey(), false).subarray(1);
    expect(await device.ecdh(0, pub)).toHaveLength(32);
    chip.inject({ eccFault: 10 });
    const e = await rejection(device.genKey(7));
    expect(e.code).toBe(ErrorCodes.HARDWARE_FAULT);
    expect(e.message).toContain('ECC fault');
  });

  it('recovers from the watchdog: 0xEE → sleep, then the transaction again in a fresh wake', async () => {
    const clock = manualClock();
    const s = setup({ seed: 'watchdog', now: clock.now, timing: { scale: 0.01 } });
    const { keys } = await provision(s.device);
    s.link.take();
    // The host stalls for just under the 1.3 s watchdog between Nonce and Sign: the chip answers
    // Sign with 0xEE (too little time left) instead of running it.
    const execute = s.chip.execute.bind(s.chip);
    let stalls = 1;
    s.chip.execute = (packet: Uint8Array) => {
      if (packet[1] === Opcode.SIGN && stalls > 0) {
        stalls -= 1;
        clock.advance(1299.5);
      }
      return execute(packet);
    };
    const digest = sha256(Uint8Array.of(0xee));
    const sig = await s.device.sign(2, digest);
    expect(verifies(sig, digest, keys.get(2)!)).toBe(true);
    const ends = s.link.transactions.map((t) => [t.opcodes, t.end]);
    expect(ends).toEqual([
      [[Opcode.NONCE, Opcode.SIGN], 'idle'],
      [[], 'sleep'],
      [[Opcode.NONCE, Opcode.SIGN], 'idle'],
    ]);
  });

  it('fails one call when the watchdog puts the chip to sleep mid-transaction; the next works', async () => {
    const clock = manualClock();
    const s = setup({ seed: 'watchdog-sleep', now: clock.now });
    const { keys } = await provision(s.device);
    const execute = s.chip.execute.bind(s.chip);
    let stalls = 1;
    s.chip.execute = (packet: Uint8Array) => {
      if (packet[1] === Opcode.SIGN && stalls-- > 0) clock.advance(1400);
      return execute(packet);
    };
    const digest = sha256(Uint8Array.of(0x11));
    const e = await rejection(s.device.sign(2, digest));
    expect(e.code).toBe(ErrorCodes.HARDWARE_IO);
    expect(s.chip.powerState).toBe('sleep');
    expect(verifies(await s.device.sign(2, digest), digest, keys.get(2)!)).toBe(true);
  });

  it('sleep() clears the message-digest buffer; idle between transactions keeps the chip usable', async () => {
    const { device, chip } = await lockedDevice({ seed: 'sleep' });
    await device.sleep();
    expect(chip.powerState).toBe('sleep');
    expect((await device.info()).model).toBe('608A');
    expect(chip.powerState).toBe('idle');
  });
});

describe('Atecc608 over the emulator: datasheet timing', () => {
  it('runs the whole life cycle with datasheet timing scaled to 1 %', async () => {
    const { device, link } = setup({ seed: 'timed', timing: { scale: 0.01 } });
    const started = performance.now();
    const { keys } = await provision(device);
    const digest = sha256(Uint8Array.of(1, 2, 3));
    expect(verifies(await device.sign(2, digest), digest, keys.get(2)!)).toBe(true);
    // 13 Writes (0.45 ms each), 3 GenKeys (1.15 ms), Nonce + Sign, ...: well above zero.
    expect(performance.now() - started).toBeGreaterThan(10);
    // Budgets are M0's (ChipMode 0x00 in the test config): GenKey 115 ms, Sign 115 ms.
    const sign = link.transactions.at(-1)!;
    expect(sign.budgets).toEqual([20, 115]);
  });

  it('learns a slower clock divider from ChipMode and gives budgets that cover the chip', async () => {
    const { device, link, chip } = setup({ seed: 'divider', timing: { scale: 0.05 } });
    const zone = testConfig(await device.readConfigZone());
    zone[19] = 0x68; // ChipMode: clock divider M2 (§3.1)
    await device.writeConfigZone(zone);
    await device.lockConfig(zone);
    expect(chip.clockDivider).toBe('M2');
    link.take();
    await device.genKey(2);
    // The divider is learned with one Read of config block 0, then GenKey gets M2's budget.
    expect(link.transactions.map((t) => [t.opcodes, t.budgets])).toEqual([
      [[Opcode.READ], [5]],
      [[Opcode.GENKEY], [653]],
    ]);
    link.take();
    await device.lockData();
    const digest = sha256(Uint8Array.of(9));
    await device.sign(2, digest);
    expect(link.transactions.at(-1)?.budgets).toEqual([20, 665]);
  });

  it('times out (TIMEOUT) when the driver is told a faster divider than the chip runs', async () => {
    // Provision on a zero-timing chip, then run its locked image with datasheet timing at M2.
    const fast = new Atecc608Chip({ seed: 'slow-chip' });
    const fastDevice = new Atecc608(new EmulatorLink(fast));
    const zone = testConfig(await fastDevice.readConfigZone());
    zone[19] = 0x68; // M2
    await fastDevice.writeConfigZone(zone);
    await fastDevice.lockConfig(zone);
    const slow = Atecc608Chip.fromImage(fast.exportImage(), { timing: 'datasheet' });
    // GenKey takes 653 ms at M2; told M0, the driver allows 115 ms (+ the link's margin): the
    // message names the budget it gave up after.
    const wrong = new Atecc608(new EmulatorLink(slow), { divider: 'M0' });
    const e = await rejection(wrong.genKey(2));
    expect(e.code).toBe(ErrorCodes.TIMEOUT);
    expect(e.message).toContain('115 ms');
    const right = new Atecc608(new EmulatorLink(slow));
    expect(await right.genKey(2)).toHaveLength(64);
  });
});
