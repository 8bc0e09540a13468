import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hex, unhex } from '../../test/support/bytes.js';
import { propertyRuns } from '../../test/support/property-runs.js';
import { nobleCrypto } from '../../vaults/software/noble-provider.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import { KeyhopError } from '../errors.js';
import { DataDecryptor, DataEncryptor, rekey } from './data-cipher.js';

interface Vector {
  id: string;
  final_state?: { k1: string; k2: string };
  first_initiator_data_message?: { plaintext: string; wire_bytes: string };
  rekey_k1?: string;
  rekey_k2?: string;
}
const vectors = (
  JSON.parse(readFileSync(new URL('../../test/vectors/ockam/noise_xx.json', import.meta.url), 'utf8')) as {
    vectors: Vector[];
  }
).vectors;
const handshake = vectors.find((v) => v.id === 'test_full_handshake1')!.final_state!;
const transport = vectors.find((v) => v.id === 'test_name_transport_examples')!;

describe.each([nodeCrypto, nobleCrypto])('Ockam data messages ($name provider)', (provider) => {
  it('encrypts the first initiator message exactly as the vector (k2, nonce 0)', () => {
    const e = new DataEncryptor(provider, unhex(handshake.k2));
    const m = transport.first_initiator_data_message!;
    expect(hex(e.encrypt(unhex(m.plaintext)))).toBe(m.wire_bytes);
    const d = new DataDecryptor(provider, unhex(handshake.k2));
    expect(hex(d.decrypt(unhex(m.wire_bytes)).plaintext)).toBe(m.plaintext);
  });

  it('derives the rekeyed keys of the vector', () => {
    expect(hex(rekey(provider, unhex(handshake.k2)))).toBe(transport.rekey_k2);
    expect(hex(rekey(provider, unhex(handshake.k1)))).toBe(transport.rekey_k1);
  });

  it('rekeys every 32 messages, tolerates reordering across a bucket boundary, and refuses replays', () => {
    const e = new DataEncryptor(provider, unhex(handshake.k1));
    const d = new DataDecryptor(provider, unhex(handshake.k1));
    const wires = Array.from({ length: 100 }, (_, i) => e.encrypt(new TextEncoder().encode(`m${i}`)));
    // Message 33 uses the rekeyed key: check it against the derived key directly.
    const k1r = rekey(provider, unhex(handshake.k1));
    const alone = new DataDecryptor(provider, k1r, false);
    expect(() => alone.decrypt(wires[31]!)).toThrow(KeyhopError);
    const order = [...Array(100).keys()];
    [order[30], order[33]] = [order[33]!, order[30]!]; // 33 before 30, across the boundary at 32
    for (const i of order) expect(new TextDecoder().decode(d.decrypt(wires[i]!).plaintext)).toBe(`m${i}`);
    expect(() => d.decrypt(wires[99]!)).toThrow(/replayed/);
    expect(() => d.decrypt(wires[10]!)).toThrow(/too_old/);
  });

  it('without keeping raw keys (not persistent): the same wire bytes, any order within the window, and no snapshot (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 140 }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 40 }),
        (count, swaps) => {
          const kept = new DataEncryptor(provider, unhex(handshake.k1));
          const lean = new DataEncryptor(provider, unhex(handshake.k1), true, false);
          const wires = Array.from({ length: count }, (_, i) => {
            const p = new TextEncoder().encode(`m${i}`);
            const w = lean.encrypt(p);
            expect(hex(w)).toBe(hex(kept.encrypt(p)));
            return w;
          });
          // Swaps between neighbours up to 8 apart stay inside Ockam's window of 32.
          const order = [...wires.keys()];
          for (const [a, b] of swaps) {
            const i = a % count;
            const j = Math.min(count - 1, i + (b % 8));
            [order[i], order[j]] = [order[j]!, order[i]!];
          }
          const d = new DataDecryptor(provider, unhex(handshake.k1), true, 32, false);
          for (const i of order)
            expect(new TextDecoder().decode(d.decrypt(wires[i]!).plaintext)).toBe(`m${i}`);
          expect(() => d.decrypt(wires[count - 1]!)).toThrow(/replayed/);
          expect(() => lean.snapshot()).toThrow(KeyhopError);
          expect(() => d.snapshot()).toThrow(KeyhopError);
        },
      ),
      { numRuns: propertyRuns(60) },
    );
  });

  it("queue mode: a wider receive window takes messages a queue reordered or held back beyond Ockam's 32, once each", () => {
    const e = new DataEncryptor(provider, unhex(handshake.k1));
    const wires = Array.from({ length: 600 }, (_, i) => e.encrypt(Uint8Array.of(i & 0xff, i >> 8)));
    // 0, then 300 (9 buckets ahead), then everything in between backwards: too far for Ockam's window.
    const order = [
      0,
      300,
      ...[...Array(299).keys()].map((i) => 299 - i),
      ...[...Array(299).keys()].map((i) => 301 + i),
    ];
    const ockam = new DataDecryptor(provider, unhex(handshake.k1));
    ockam.decrypt(wires[0]!);
    expect(() => ockam.decrypt(wires[300]!)).toThrow(/too_far_ahead/);
    const wide = new DataDecryptor(provider, unhex(handshake.k1), true, 512);
    const got = order.map((i) => {
      const p = wide.decrypt(wires[i]!).plaintext;
      return p[0]! | (p[1]! << 8);
    });
    expect(got).toEqual(order);
    for (const i of [100, 300, 599]) expect(() => wide.decrypt(wires[i]!)).toThrow(/replayed/);
    expect(() => wide.decrypt(wires[0]!)).toThrow(/too_old/);
    // Beyond the wide window the same rules hold: too far ahead, and too old once passed.
    const more = Array.from({ length: 1200 }, () => e.encrypt(Uint8Array.of(1)));
    expect(() => wide.decrypt(more[1000]!)).toThrow(/too_far_ahead/);
    wide.decrypt(more[400]!); // nonce 1000
    expect(() => wide.decrypt(wires[450]!)).toThrow(/too_old/);
  });

  it('queue mode accepts every permutation within the window exactly once', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 32, max: 300 }),
        fc.array(fc.nat(), { maxLength: 400 }),
        (window, swaps) => {
          const e = new DataEncryptor(provider, unhex(handshake.k2));
          const n = window;
          const wires = Array.from({ length: n }, (_, i) => e.encrypt(Uint8Array.of(i & 0xff)));
          const order = [...Array(n).keys()];
          for (const x of swaps) {
            const i = x % n;
            const j = (x >> 3) % n;
            [order[i], order[j]] = [order[j]!, order[i]!];
          }
          const d = new DataDecryptor(provider, unhex(handshake.k2), true, window);
          for (const i of order) expect(d.decrypt(wires[i]!).nonce).toBe(BigInt(i));
          for (const i of order.slice(0, 5)) expect(() => d.decrypt(wires[i]!)).toThrow(KeyhopError);
        },
      ),
      { numRuns: propertyRuns(15) },
    );
  });

  it('goes on from a snapshot exactly as it would have: the same messages accepted, replays refused, nonces skipped ahead', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 150 }),
        fc.integer({ min: 0, max: 100 }),
        fc.constantFrom(32, 64, 256),
        (cut, skip, window) => {
          const e = new DataEncryptor(provider, unhex(handshake.k1));
          const d = new DataDecryptor(provider, unhex(handshake.k1), true, window);
          const before = Array.from({ length: cut }, (_, i) => e.encrypt(Uint8Array.of(i & 0xff)));
          for (const w of before) d.decrypt(w);
          // A crash: both ends come back from their snapshots; the sender skips `skip` nonces
          // (accepted while the new nonce is at most `window` past the highest one received)
          // (the rest of a reserved block).
          const e2 = DataEncryptor.restore(provider, e.snapshot(), e.nextNonce + BigInt(skip));
          const d2 = DataDecryptor.restore(provider, d.snapshot());
          for (const w of before.slice(-3)) expect(() => d2.decrypt(w)).toThrow(/replayed|too_old/);
          const fresh = e2.encrypt(Uint8Array.of(7));
          if (skip < window) {
            expect(d2.decrypt(fresh).nonce).toBe(BigInt(cut + skip));
            // The same message into the original decryptor gives the same answer.
            expect(d.decrypt(fresh).nonce).toBe(BigInt(cut + skip));
          } else {
            expect(() => d2.decrypt(fresh)).toThrow(/too_far_ahead/);
          }
          // And the plain continuation agrees with an encryptor that never stopped.
          const cont = DataEncryptor.restore(provider, e.snapshot());
          expect(hex(cont.encrypt(Uint8Array.of(1)))).toBe(hex(e.encrypt(Uint8Array.of(1))));
        },
      ),
      { numRuns: propertyRuns(40) },
    );
  });

  it('refuses short, tampered and unauthenticated messages without moving the window', () => {
    const e = new DataEncryptor(provider, unhex(handshake.k1));
    const d = new DataDecryptor(provider, unhex(handshake.k1));
    const w = e.encrypt(new Uint8Array([1, 2, 3]));
    expect(() => d.decrypt(w.subarray(0, 20))).toThrow(expect.objectContaining({ code: 'DECODE_TRUNCATED' }));
    const bad = Uint8Array.from(w);
    bad[10]! ^= 1;
    expect(() => d.decrypt(bad)).toThrow(expect.objectContaining({ code: 'AEAD_FAILED' }));
    // The forged copy did not consume nonce 0: the real message still decrypts.
    expect(Array.from(d.decrypt(w).plaintext)).toEqual([1, 2, 3]);
  });

  it('encrypts plaintext given in pieces, with a prefix, exactly like the joined plaintext', () => {
    const key = unhex(handshake.k1);
    const nonce = new Uint8Array(12).fill(3);
    const parts = [
      new Uint8Array([1, 2, 3]),
      new Uint8Array(0),
      new Uint8Array(20_000).fill(9),
      Uint8Array.of(0x40),
    ];
    const joined = Buffer.concat(parts);
    const prefix = Uint8Array.of(7, 7);
    const whole = provider.aeadEncrypt('AESGCM', key, nonce, new Uint8Array(0), joined);
    const pieces = provider.aeadEncrypt('AESGCM', key, nonce, new Uint8Array(0), parts, prefix);
    expect(hex(pieces)).toBe(hex(Buffer.concat([prefix, whole])));
  });
});
