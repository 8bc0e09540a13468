import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { codeOf, hex, unhex } from '../../../test/support/bytes.js';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { ErrorCodes } from '../../errors.js';
import { decodeCborFrame, encodeCborFrame } from '../../routing/codec/cbor-frame.js';
import { Message } from '../../routing/message.js';
import { Route } from '../../routing/route.js';
import { cobsEncode, cobsMaxEncodedLength } from './cobs.js';
import { crc32 } from './crc32.js';
import {
  DEFAULT_MAX_PAYLOAD_BYTES,
  decodeFrame,
  encodeFrame,
  FRAME_OVERHEAD_BYTES,
  FrameType,
  MAX_PAYLOAD_BYTES_LIMIT,
  maxWireBytes,
  SERIAL_PROTOCOL_VERSION,
  type SerialDropReason,
  type SerialFrame,
  SerialFrameReader,
} from './frame.js';

const cat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A frame body with any version and a correct CRC, COBS-encoded between delimiters. */
function rawFrame(head: number[], payload: Uint8Array = new Uint8Array(0), crcDelta = 0): Uint8Array {
  const body = cat(Uint8Array.from(head), payload);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE((crc32(body) ^ crcDelta) >>> 0);
  return cat(unhex('00'), cobsEncode(cat(body, crc)), unhex('00'));
}

function frameKey(f: SerialFrame): string {
  return `${f.type}/${f.seq}/${hex(f.payload)}`;
}

function pushAll(reader: SerialFrameReader, chunks: Uint8Array[]): SerialFrame[] {
  const out: SerialFrame[] = [];
  for (const c of chunks) reader.push(c, out);
  return out;
}

/** Splits `bytes` at the given cut points (taken modulo the length). */
function chunked(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % (bytes.length + 1))))].sort(
    (a, b) => a - b,
  );
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...at, bytes.length]) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  return out;
}

const totalDrops = (r: SerialFrameReader): number => Object.values(r.drops).reduce((a, b) => a + b, 0);

describe('frame format', () => {
  it('has version 1 and 8 bytes of header and CRC', () => {
    expect(SERIAL_PROTOCOL_VERSION).toBe(1);
    expect(FRAME_OVERHEAD_BYTES).toBe(8);
    expect(FrameType).toEqual({ DATA: 0, ACK: 1, RESET: 2, RESET_ACK: 3, RDATA: 4 });
    expect(DEFAULT_MAX_PAYLOAD_BYTES).toBe(65536);
    // 64 KiB payload + 8 bytes, COBS (+1 +258), 2 delimiters.
    expect(maxWireBytes(DEFAULT_MAX_PAYLOAD_BYTES)).toBe(65536 + 8 + 1 + 258 + 2);
  });

  it('encodes the worked example of docs/protocols/serial.md byte for byte', () => {
    // RDATA seq 1 carrying the CBOR routing message onward [echo], return [], payload "hi".
    const cbor = encodeCborFrame(Message.create(Route.of('echo'), text('hi')));
    expect(hex(cbor)).toBe('83818200446563686f80426869');
    const body = unhex('01 04 0001 83818200446563686f80426869');
    expect(crc32(body)).toBe(0x97db61c6);
    const wire = encodeFrame({ type: FrameType.RDATA, seq: 1, payload: cbor });
    expect(hex(wire)).toBe(hex(unhex('00 03 0104 05 01838182 0e 446563686f80426869 97db61c6 00')));
    const back = decodeFrame(wire);
    expect(back.type).toBe(FrameType.RDATA);
    expect(back.seq).toBe(1);
    const msg = decodeCborFrame(back.payload);
    expect(msg.onward.toString()).toBe(Route.of('echo').toString());
    expect(new TextDecoder().decode(msg.payload)).toBe('hi');
  });

  it('encodes the control frames of the docs', () => {
    const empty = new Uint8Array(0);
    expect(hex(encodeFrame({ type: FrameType.ACK, seq: 2, payload: empty }))).toBe('0003010106027634b36200');
    expect(hex(encodeFrame({ type: FrameType.DATA, seq: 0, payload: empty }))).toBe('00020101010599f8b87900');
    expect(hex(encodeFrame({ type: FrameType.RESET, seq: 0x1234, payload: unhex('a1b2c3d4 01') }))).toBe(
      '000e01021234a1b2c3d401277be76f00',
    );
    expect(hex(encodeFrame({ type: FrameType.RESET_ACK, seq: 0x1234, payload: unhex('a1b2c3d4') }))).toBe(
      '000d01031234a1b2c3d4d0bbbee200',
    );
  });

  it('round-trips any frame, with or without the delimiters', () => {
    const frames = fc.record({
      type: fc.integer({ min: 0, max: 255 }),
      seq: fc.integer({ min: 0, max: 0xffff }),
      payload: fc.uint8Array({ maxLength: 1200 }),
    });
    fc.assert(
      fc.property(frames, (f) => {
        const wire = encodeFrame(f);
        expect(wire[0]).toBe(0);
        expect(wire[wire.length - 1]).toBe(0);
        expect(wire.subarray(1, -1).includes(0)).toBe(false);
        expect(wire.length).toBeLessThanOrEqual(maxWireBytes(f.payload.length));
        expect(frameKey(decodeFrame(wire))).toBe(frameKey(f));
        expect(frameKey(decodeFrame(wire.subarray(1, -1)))).toBe(frameKey(f));
      }),
      { numRuns: propertyRuns(300) },
    );
  });

  it('refuses to encode out-of-range fields with ENCODE_LIMIT', () => {
    const payload = new Uint8Array(0);
    expect(codeOf(() => encodeFrame({ type: 256, seq: 0, payload }))).toBe(ErrorCodes.ENCODE_LIMIT);
    expect(codeOf(() => encodeFrame({ type: -1, seq: 0, payload }))).toBe(ErrorCodes.ENCODE_LIMIT);
    expect(codeOf(() => encodeFrame({ type: 0, seq: 0x10000, payload }))).toBe(ErrorCodes.ENCODE_LIMIT);
    expect(codeOf(() => encodeFrame({ type: 0, seq: 1.5, payload }))).toBe(ErrorCodes.ENCODE_LIMIT);
    expect(codeOf(() => encodeFrame({ type: 0, seq: 0, payload: new Uint8Array(11) }, 10))).toBe(
      ErrorCodes.ENCODE_LIMIT,
    );
    expect(encodeFrame({ type: 0, seq: 0, payload: new Uint8Array(10) }, 10).length).toBeGreaterThan(10);
  });
});

describe('decodeFrame', () => {
  it('reports each defect with its own code', () => {
    const good = encodeFrame({ type: 0, seq: 7, payload: text('hello') });
    const flipped = good.slice();
    flipped[6]! ^= 0x01;
    expect(codeOf(() => decodeFrame(flipped))).toBe(ErrorCodes.DECODE_INVALID);
    expect(() => decodeFrame(flipped)).toThrow(/CRC-32/);
    expect(codeOf(() => decodeFrame(unhex('00 05 11 00 22 00')))).toBe(ErrorCodes.DECODE_INVALID);
    expect(() => decodeFrame(unhex('05 11 22'))).toThrow(/COBS/);
    expect(codeOf(() => decodeFrame(unhex('00 00')))).toBe(ErrorCodes.DECODE_INVALID);
    expect(codeOf(() => decodeFrame(cobsEncode(unhex('01 00 00 00 00 00 00'))))).toBe(
      ErrorCodes.DECODE_TRUNCATED,
    );
    expect(codeOf(() => decodeFrame(rawFrame([2, 0, 0, 0])))).toBe(ErrorCodes.DECODE_VERSION);
    expect(() => decodeFrame(rawFrame([0x7f, 0, 0, 0]))).toThrow(/version 0x7f/);
    expect(codeOf(() => decodeFrame(encodeFrame({ type: 0, seq: 0, payload: new Uint8Array(11) }), 10))).toBe(
      ErrorCodes.DECODE_LIMIT,
    );
  });

  it('checks the CRC before the version: noise in the version byte counts as a CRC error', () => {
    const good = encodeFrame({ type: 0, seq: 0x0101, payload: text('abc') });
    const bad = good.slice();
    bad[2] = 0x02; // body[0], the version byte (first code byte is at [1])
    expect(() => decodeFrame(bad)).toThrow(/CRC/);
  });
});

describe('SerialFrameReader', () => {
  const frames: SerialFrame[] = [
    { type: FrameType.DATA, seq: 0, payload: text('first') },
    { type: FrameType.RDATA, seq: 0xffff, payload: new Uint8Array(300) },
    { type: FrameType.ACK, seq: 0, payload: new Uint8Array(0) },
    { type: 0xee, seq: 0x1234, payload: Uint8Array.from({ length: 600 }, (_, i) => i & 0xff) },
  ];
  const stream = cat(...frames.map((f) => encodeFrame(f)));

  it('returns every frame from one chunk, unknown types included', () => {
    const r = new SerialFrameReader();
    expect(r.push(stream).map(frameKey)).toEqual(frames.map(frameKey));
    expect(r.accepted).toBe(4);
    expect(r.pending).toBe(0);
    expect(totalDrops(r)).toBe(0);
  });

  it('returns the same frames however the stream is cut', () => {
    const r = new SerialFrameReader();
    const byteByByte = Array.from(stream, (b) => Uint8Array.of(b));
    expect(pushAll(r, byteByByte).map(frameKey)).toEqual(frames.map(frameKey));
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 40 }), (cuts) => {
        const reader = new SerialFrameReader();
        expect(pushAll(reader, chunked(stream, cuts)).map(frameKey)).toEqual(frames.map(frameKey));
        expect(totalDrops(reader)).toBe(0);
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('does not alias the caller’s chunk or its own buffer', () => {
    const r = new SerialFrameReader();
    const chunk = encodeFrame(frames[0]!).slice();
    const [f] = r.push(chunk);
    chunk.fill(0xaa);
    expect(new TextDecoder().decode(f!.payload)).toBe('first');
    const [a] = r.push(encodeFrame({ type: 0, seq: 1, payload: text('one') }).subarray(0, 5));
    expect(a).toBeUndefined();
    const [b] = r.push(encodeFrame({ type: 0, seq: 1, payload: text('one') }).subarray(5));
    const [c] = r.push(encodeFrame({ type: 0, seq: 2, payload: text('two') }));
    expect([b, c].map((x) => new TextDecoder().decode(x!.payload))).toEqual(['one', 'two']);
  });

  it('ignores empty runs between delimiters without counting them', () => {
    const r = new SerialFrameReader();
    const out = r.push(
      cat(unhex('00 00 00'), encodeFrame(frames[0]!), unhex('00 00'), encodeFrame(frames[2]!)),
    );
    expect(out.length).toBe(2);
    expect(totalDrops(r)).toBe(0);
  });

  it('drops and counts each kind of defect, and resynchronises at the next delimiter', () => {
    const seen: [SerialDropReason, number][] = [];
    const r = new SerialFrameReader({
      maxPayloadBytes: 300,
      onDrop: (reason, bytes) => seen.push([reason, bytes]),
    });
    const ok = encodeFrame({ type: 0, seq: 9, payload: text('ok') });
    const crcBad = encodeFrame({ type: 0, seq: 1, payload: text('bad crc') }).slice();
    crcBad[8]! ^= 0x40;
    // A 309-byte body (one over the limit) that COBS-encodes into exactly the 310 bytes allowed.
    const oversizedBody = new Uint8Array(309).fill(0x11);
    oversizedBody[100] = 0;
    const oversized = cat(unhex('00'), cobsEncode(oversizedBody), unhex('00'));
    expect(oversized.length - 2).toBe(cobsMaxEncodedLength(308));
    const input = cat(
      text('line noise before anything'), // crc (or cobs): it is decoded as a frame
      ok,
      unhex('00 05 11 22 00'), // cobs: the group runs past the end
      ok,
      cat(unhex('00'), cobsEncode(unhex('01 00 00 00 00')), unhex('00')), // truncated
      ok,
      crcBad,
      ok,
      rawFrame([9, 0, 0, 1], text('future')), // version
      ok,
      oversized, // too_large, after decoding
      ok,
      cat(unhex('00'), new Uint8Array(5000).fill(0x7e), unhex('00')), // too_large, while streaming
      ok,
    );
    const out = r.push(input);
    expect(out.map(frameKey)).toEqual(Array(7).fill(frameKey(decodeFrame(ok))));
    expect(r.drops.cobs + r.drops.crc).toBe(3);
    expect(r.drops.cobs).toBeGreaterThanOrEqual(1);
    expect(r.drops.truncated).toBe(1);
    expect(r.drops.version).toBe(1);
    expect(r.drops.too_large).toBe(2);
    expect(seen.length).toBe(7);
    expect(seen.find(([reason]) => reason === 'truncated')?.[1]).toBe(
      cobsEncode(unhex('01 00 00 00 00')).length,
    );
    expect(r.pending).toBe(0);
  });

  it('enforces the limit before buffering: an endless run costs no more than the limit', () => {
    const r = new SerialFrameReader({ maxPayloadBytes: 1000 });
    expect(r.maxEncodedBytes).toBe(cobsMaxEncodedLength(1008));
    const junk = new Uint8Array(4096).fill(0x42);
    let peak = 0;
    for (let i = 0; i < 512; i++) {
      expect(r.push(junk)).toEqual([]);
      peak = Math.max(peak, r.pending);
    }
    expect(peak).toBeLessThanOrEqual(r.maxEncodedBytes);
    expect(r.pending).toBe(0);
    expect(r.drops.too_large).toBe(1);
    // The next delimiter ends the skipped run; the frame after it is read normally.
    const f = { type: 0, seq: 5, payload: new Uint8Array(1000).fill(0x33) };
    expect(r.push(encodeFrame(f, 1000)).map(frameKey)).toEqual([frameKey(f)]);
    expect(r.drops.too_large).toBe(1);
    // The largest frame allowed fits exactly; one byte more does not.
    const worst = { type: 0, seq: 0, payload: new Uint8Array(1000).fill(0x01) };
    expect(r.push(encodeFrame(worst, 1000)).length).toBe(1);
    expect(r.push(encodeFrame({ ...worst, payload: new Uint8Array(1001).fill(1) }, 1001)).length).toBe(0);
    expect(r.drops.too_large).toBe(2);
  });

  it('counts a frame that is too long once, however it is split', () => {
    const r = new SerialFrameReader({ maxPayloadBytes: 16 });
    const big = encodeFrame({ type: 0, seq: 0, payload: new Uint8Array(100).fill(9) }, 100);
    expect(
      pushAll(
        r,
        Array.from(big, (b) => Uint8Array.of(b)),
      ),
    ).toEqual([]);
    expect(r.drops.too_large).toBe(1);
    expect(totalDrops(r)).toBe(1);
  });

  it('reset() forgets a partial frame', () => {
    const r = new SerialFrameReader();
    const wire = encodeFrame(frames[0]!);
    r.push(wire.subarray(0, 6));
    expect(r.pending).toBe(5);
    r.reset();
    expect(r.pending).toBe(0);
    expect(r.push(wire.subarray(6))).toEqual([]);
    expect(totalDrops(r)).toBe(1);
    expect(r.push(wire).length).toBe(1);
  });

  it('refuses a limit outside 0..MAX_PAYLOAD_BYTES_LIMIT', () => {
    expect(codeOf(() => new SerialFrameReader({ maxPayloadBytes: -1 }))).toBe(ErrorCodes.CONFIG_INVALID);
    expect(codeOf(() => new SerialFrameReader({ maxPayloadBytes: MAX_PAYLOAD_BYTES_LIMIT + 1 }))).toBe(
      ErrorCodes.CONFIG_INVALID,
    );
    expect(codeOf(() => new SerialFrameReader({ maxPayloadBytes: 1.5 }))).toBe(ErrorCodes.CONFIG_INVALID);
    expect(new SerialFrameReader({ maxPayloadBytes: 0 }).push(encodeFrame(frames[2]!)).length).toBe(1);
  });
});

describe('SerialFrameReader under line noise', () => {
  const frameArb = fc.record({
    type: fc.integer({ min: 0, max: 4 }),
    seq: fc.integer({ min: 0, max: 0xffff }),
    payload: fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.uint8Array({ minLength: 200, maxLength: 700 }),
      fc.integer({ min: 0, max: 600 }).map((n) => new Uint8Array(n)),
    ),
  });

  it('never throws on random bytes, stays within its limit, and returns only well-formed frames', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.uint8Array({ maxLength: 300 }),
            fc.constant(unhex('00')),
            fc.constant(unhex('00 01 00')),
          ),
          {
            maxLength: 40,
          },
        ),
        fc.integer({ min: 0, max: 600 }),
        (chunks, max) => {
          const r = new SerialFrameReader({ maxPayloadBytes: max });
          for (const c of chunks) {
            for (const f of r.push(c)) {
              expect(f.payload.length).toBeLessThanOrEqual(max);
              expect(frameKey(decodeFrame(encodeFrame(f, max), max))).toBe(frameKey(f));
            }
            expect(r.pending).toBeLessThanOrEqual(r.maxEncodedBytes);
          }
        },
      ),
      { numRuns: propertyRuns(1000) },
    );
  });

  type Op =
    | { kind: 'flip'; at: number; bit: number }
    | { kind: 'drop'; at: number }
    | { kind: 'dup'; at: number }
    | { kind: 'insert'; at: number; bytes: Uint8Array };

  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ kind: fc.constant('drop' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('dup' as const), at: fc.nat() }),
    fc.record({
      kind: fc.constant('insert' as const),
      at: fc.nat(),
      bytes: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.constant(unhex('00'))),
    }),
  );

  /** Applies the ops; returns the corrupted stream and the original indices they touched. */
  function corrupt(stream: Uint8Array, ops: Op[]): { bytes: Uint8Array; dirty: Set<number> } {
    const n = stream.length;
    const dirty = new Set<number>();
    const before = new Map<number, Uint8Array[]>();
    const flips = new Map<number, number>();
    const drops = new Set<number>();
    const dups = new Set<number>();
    for (const op of ops) {
      const at = op.at % n;
      if (op.kind === 'insert') {
        before.set(at, [...(before.get(at) ?? []), op.bytes]);
        dirty.add(at);
        if (at > 0) dirty.add(at - 1);
        continue;
      }
      dirty.add(at);
      if (op.kind === 'flip') flips.set(at, (flips.get(at) ?? 0) ^ (1 << op.bit));
      else if (op.kind === 'drop') drops.add(at);
      else dups.add(at);
    }
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      for (const b of before.get(i) ?? []) out.push(...b);
      if (drops.has(i)) continue;
      const v = stream[i]! ^ (flips.get(i) ?? 0);
      out.push(v);
      if (dups.has(i)) out.push(v);
    }
    return { bytes: Uint8Array.from(out), dirty };
  }

  let falseAccepts = 0;
  let corruptedRuns = 0;

  it('accepts nothing that was not sent, and recovers every frame the noise did not touch', () => {
    const stats = { crc: 0, cobs: 0, truncated: 0, version: 0, too_large: 0 };
    fc.assert(
      fc.property(
        fc.array(frameArb, { minLength: 1, maxLength: 12 }),
        fc.array(opArb, { minLength: 1, maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (sent, ops, cuts) => {
          const wires = sent.map((f) => encodeFrame(f));
          const stream = cat(...wires);
          const { bytes, dirty } = corrupt(stream, ops);
          const r = new SerialFrameReader({ maxPayloadBytes: 700 });
          const got = pushAll(r, chunked(bytes, cuts)).map(frameKey);
          const sentKeys = new Set(sent.map(frameKey));
          const bogus = got.filter((k) => !sentKeys.has(k));
          falseAccepts += bogus.length;
          expect(bogus).toEqual([]);
          // Every frame whose bytes, both delimiters included, were left alone comes out.
          let pos = 0;
          const clean: string[] = [];
          wires.forEach((w, i) => {
            let touched = false;
            for (let k = pos; k < pos + w.length; k++) if (dirty.has(k)) touched = true;
            if (!touched) clean.push(frameKey(sent[i]!));
            pos += w.length;
          });
          const remaining = [...got];
          for (const k of clean) {
            const i = remaining.indexOf(k);
            expect(i).toBeGreaterThanOrEqual(0);
            remaining.splice(i, 1);
          }
          corruptedRuns++;
          for (const key of Object.keys(stats) as SerialDropReason[]) stats[key] += r.drops[key];
        },
      ),
      { numRuns: propertyRuns(3000) },
    );
    expect(falseAccepts).toBe(0);
    expect(corruptedRuns).toBe(3000);
    // The CRC, not only COBS, did the rejecting.
    expect(stats.crc).toBeGreaterThan(1000);
    expect(stats.cobs).toBeGreaterThan(100);
  });

  it('survives every single-bit flip, dropped byte and duplicated byte of a frame', () => {
    const f = {
      type: FrameType.RDATA,
      seq: 0x0100,
      payload: Uint8Array.from({ length: 40 }, (_, i) => (i * 37) & 0xff),
    };
    const next = { type: FrameType.ACK, seq: 0x0101, payload: new Uint8Array(0) };
    const wire = encodeFrame(f);
    const tail = encodeFrame(next);
    const variants: Uint8Array[] = [];
    for (let i = 0; i < wire.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const v = wire.slice();
        v[i]! ^= 1 << bit;
        variants.push(v);
      }
      variants.push(cat(wire.subarray(0, i), wire.subarray(i + 1)));
      variants.push(cat(wire.subarray(0, i + 1), wire.subarray(i)));
    }
    for (const v of variants) {
      const r = new SerialFrameReader();
      const got = r.push(cat(v, tail)).map(frameKey);
      // Duplicating a delimiter or the lone 01 code of an empty group changes nothing decoded.
      const allowed = [frameKey(f), frameKey(next)];
      expect(got.every((k) => allowed.includes(k))).toBe(true);
      expect(got.at(-1)).toBe(frameKey(next));
    }
  });
});
