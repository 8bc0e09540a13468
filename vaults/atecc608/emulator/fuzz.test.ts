import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { crcMatches } from '../protocol/crc.js';
import { encodeCommand } from '../protocol/packet.js';
import { Atecc608Chip } from './chip.js';
import { Op } from './constants.js';
import { EmulatedI2cBus } from './i2c-bus.js';
import { I2cSocketServer } from './i2c-socket-server.js';
import { run, writeTestConfig } from './test-helpers.js';

/** Chips in the three lock states, with keys where the state allows them. */
function chips(): Atecc608Chip[] {
  const blank = new Atecc608Chip({ seed: 'fuzz' });
  const configLocked = new Atecc608Chip({ seed: 'fuzz' });
  writeTestConfig(configLocked);
  run(configLocked, Op.LOCK, 0x80);
  run(configLocked, Op.GENKEY, 0x04, 2);
  const locked = new Atecc608Chip({ seed: 'fuzz' });
  writeTestConfig(locked);
  run(locked, Op.LOCK, 0x80);
  run(locked, Op.LOCK, 0x81);
  run(locked, Op.GENKEY, 0x04, 0);
  run(locked, Op.GENKEY, 0x04, 2);
  return [blank, configLocked, locked];
}

function expectFrame(response: Uint8Array): void {
  const count = response[0] ?? 0;
  expect(count).toBeGreaterThanOrEqual(4);
  expect(response.length).toBe(count);
  expect(crcMatches(response)).toBe(true);
}

const opcodes = [
  Op.INFO,
  Op.RANDOM,
  Op.NONCE,
  Op.GENKEY,
  Op.SIGN,
  Op.VERIFY,
  Op.ECDH,
  Op.SHA,
  Op.READ,
  Op.WRITE,
  Op.LOCK,
  Op.UPDATE_EXTRA,
  Op.COUNTER,
  Op.SELFTEST,
  Op.KDF,
  Op.AES,
  0x00,
  0xff,
];

const command = fc.record({
  opcode: fc.oneof(fc.constantFrom(...opcodes), fc.integer({ min: 0, max: 255 })),
  param1: fc.oneof(
    fc.constantFrom(0x00, 0x03, 0x04, 0x0c, 0x43, 0x80, 0x81, 0x82, 0xa0),
    fc.integer({ min: 0, max: 255 }),
  ),
  param2: fc.oneof(
    fc.integer({ min: 0, max: 16 }),
    fc.constantFrom(0x0004, 0xffff, 0x8000),
    fc.integer({ min: 0, max: 0xffff }),
  ),
  data: fc.oneof(
    fc.constantFrom(0, 4, 20, 32, 64, 128).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
    fc.uint8Array({ maxLength: 155 }),
  ),
});

describe('property: the emulator never throws or hangs', () => {
  it('answers any well-framed command sequence with a valid frame', () => {
    fc.assert(
      fc.property(fc.array(command, { maxLength: 12 }), fc.integer({ min: 0, max: 2 }), (commands, which) => {
        const chip = chips()[which]!;
        chip.wake();
        for (const c of commands) {
          const { response, execMs } = chip.execute(encodeCommand(c));
          expectFrame(response);
          expect(execMs).toBe(0);
        }
      }),
      { numRuns: propertyRuns(150) },
    );
  });

  it('answers random bytes with a valid frame', () => {
    const all = chips();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 2 }), (bytes, which) => {
        const chip = all[which]!;
        chip.wake();
        expectFrame(chip.execute(bytes).response);
      }),
      { numRuns: propertyRuns(500) },
    );
  });

  it('answers any bus transaction with ack, nack or exactly the bytes asked for', () => {
    const transaction = fc.oneof(
      fc.record({
        kind: fc.constant('write' as const),
        address: fc.constantFrom(0x00, 0x60, 0x35, 0x7f),
        bytes: fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          command.map((c) => new Uint8Array([0x03, ...encodeCommand(c)])),
          fc.constantFrom(Uint8Array.of(0), Uint8Array.of(1), Uint8Array.of(2)),
        ),
      }),
      fc.record({
        kind: fc.constant('read' as const),
        address: fc.constantFrom(0x00, 0x60, 0x7f),
        length: fc.integer({ min: 0, max: 100 }),
      }),
    );
    fc.assert(
      fc.property(fc.array(transaction, { maxLength: 30 }), fc.integer({ min: 0, max: 2 }), (txs, which) => {
        const bus = new EmulatedI2cBus();
        bus.attach(chips()[which]!);
        for (const tx of txs) {
          if (tx.kind === 'write') {
            expect(['ack', 'nack']).toContain(bus.write(tx.address, tx.bytes));
          } else {
            const r = bus.read(tx.address, tx.length);
            if (r !== 'nack') expect(r.length).toBe(tx.length);
          }
        }
      }),
      { numRuns: propertyRuns(100) },
    );
  });

  it('answers any byte stream on the socket with well-formed replies and stays up', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'keyhop-fuzz-'));
    const bus = new EmulatedI2cBus();
    bus.attach(new Atecc608Chip({ seed: 'sock-fuzz' }));
    const path = join(dir, 's.sock');
    const server = await I2cSocketServer.listen(path, new Map([[1, bus]]));
    const stream = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.constant(Uint8Array.of(0x48, 0, 1, 0, 1)),
      fc.constant(Uint8Array.of(0x52, 0x60, 4, 0)),
      fc.constant(Uint8Array.of(0x57, 0x00, 1, 0, 0)),
    );
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(stream, { maxLength: 8 }), async (parts) => {
          const socket = connect(path);
          await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
          let received = Buffer.alloc(0);
          socket.on('data', (chunk: Buffer) => {
            received = Buffer.concat([received, chunk]);
          });
          for (const p of parts) socket.write(p);
          // Give the server time to answer, then stop; it must not hang or crash either way.
          await new Promise((r) => setTimeout(r, 5));
          socket.destroy();
          let at = 0;
          while (at + 3 <= received.length) {
            const status = received[at]!;
            const length = received.readUInt16LE(at + 1);
            expect([0, 1, 2]).toContain(status);
            if (status !== 0) expect(length).toBe(0);
            at += 3 + length;
          }
          expect(at).toBe(received.length);
        }),
        { numRuns: propertyRuns(60) },
      );
      const probe = connect(path);
      await new Promise<void>((resolve) => probe.once('connect', () => resolve()));
      probe.write(Uint8Array.of(0x48, 0, 1, 0, 1));
      const reply = await new Promise<Buffer>((resolve) => probe.once('data', resolve));
      expect([...reply]).toEqual([0, 0, 0]);
      probe.destroy();
    } finally {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
