import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { codeOf, hex } from '../../../test/support/bytes.js';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { ErrorCodes, KeyhopError } from '../../errors.js';
import { FrameReader, TCP_PROTOCOL_VERSION } from './frame-reader.js';

const MiB = 1024 * 1024;

function frame(body: Uint8Array): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(body.length, 0);
  return Buffer.concat([h, body]);
}

function stream(bodies: Uint8Array[], version = TCP_PROTOCOL_VERSION): Buffer {
  return Buffer.concat([Buffer.of(version), ...bodies.map(frame)]);
}

function pushAll(reader: FrameReader, chunks: Buffer[]): string[] {
  const out: string[] = [];
  for (const c of chunks) for (const f of reader.push(c)) out.push(hex(f));
  return out;
}

describe('protocol version byte', () => {
  it('is 0x01', () => {
    expect(TCP_PROTOCOL_VERSION).toBe(1);
  });

  it('accepts 0x01', () => {
    const r = new FrameReader(1024);
    expect(r.versionReceived).toBe(false);
    expect(r.push(Buffer.of(0x01))).toEqual([]);
    expect(r.versionReceived).toBe(true);
    expect(r.pending).toBe(0);
  });

  it('waits for the byte when given an empty chunk', () => {
    const r = new FrameReader(1024);
    expect(r.push(Buffer.alloc(0))).toEqual([]);
    expect(r.versionReceived).toBe(false);
    expect(r.push(Buffer.of(0x01, 0, 0))).toEqual([]);
    expect(r.versionReceived).toBe(true);
    expect(r.pending).toBe(2);
  });

  it('rejects every other value with PROTOCOL_VERSION', () => {
    for (let v = 0; v < 256; v++) {
      if (v === 1) continue;
      const r = new FrameReader(1024);
      expect(codeOf(() => r.push(Buffer.of(v)))).toBe(ErrorCodes.PROTOCOL_VERSION);
      expect(r.versionReceived).toBe(false);
    }
  });

  it('rejects a bad version even when frames follow in the same chunk', () => {
    const r = new FrameReader(1024);
    expect(codeOf(() => r.push(stream([Buffer.from('hi')], 0x02)))).toBe(ErrorCodes.PROTOCOL_VERSION);
    expect(() => new FrameReader(1024).push(Buffer.of(0x00))).toThrow(/0x0, expected 0x01/);
  });

  it('checks the version only once: a later 0x02 byte is frame data', () => {
    const r = new FrameReader(1024);
    r.push(Buffer.of(0x01));
    expect(r.push(frame(Buffer.of(0x02))).map(hex)).toEqual(['02']);
  });
});

describe('framing', () => {
  it('returns whole frames from one chunk', () => {
    const r = new FrameReader(1024);
    const bodies = [Buffer.from('hello'), Buffer.from('world!'), Buffer.of(0xff)];
    expect(pushAll(r, [stream(bodies)])).toEqual(['68656c6c6f', '776f726c6421', 'ff']);
    expect(r.pending).toBe(0);
  });

  it('returns Buffers with exactly the frame bytes', () => {
    const r = new FrameReader(1024);
    const [f] = r.push(stream([Buffer.from('abc')]));
    expect(Buffer.isBuffer(f)).toBe(true);
    expect(f!.length).toBe(3);
    expect(f!.toString()).toBe('abc');
  });

  it('handles zero-length frames', () => {
    const r = new FrameReader(1024);
    const frames = r.push(stream([Buffer.alloc(0), Buffer.from('x'), Buffer.alloc(0)]));
    expect(frames.map(hex)).toEqual(['', '78', '']);
    expect(frames[0]!.length).toBe(0);
    expect(r.pending).toBe(0);
    // a lone zero-length frame arriving header byte by header byte
    const r2 = new FrameReader(1024);
    expect(pushAll(r2, [Buffer.of(1), Buffer.of(0), Buffer.of(0), Buffer.of(0)])).toEqual([]);
    expect(r2.pending).toBe(3);
    expect(pushAll(r2, [Buffer.of(0)])).toEqual(['']);
    expect(r2.pending).toBe(0);
  });

  it('reassembles identically when split at every byte boundary', () => {
    const bodies = [
      Buffer.from('first'),
      Buffer.alloc(0),
      Buffer.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
      Buffer.of(0x42),
    ];
    const s = stream(bodies);
    const expected = bodies.map(hex);
    for (let i = 0; i <= s.length; i++) {
      expect(pushAll(new FrameReader(1024), [s.subarray(0, i), s.subarray(i)])).toEqual(expected);
      for (let j = i; j <= s.length; j++) {
        const r = new FrameReader(1024);
        expect(pushAll(r, [s.subarray(0, i), s.subarray(i, j), s.subarray(j)])).toEqual(expected);
        expect(r.pending).toBe(0);
      }
    }
  });

  it('reassembles one byte at a time', () => {
    const bodies = [Buffer.from('abc'), Buffer.from('defgh')];
    const s = stream(bodies);
    const r = new FrameReader(1024);
    const out: string[] = [];
    for (let i = 0; i < s.length; i++) out.push(...r.push(s.subarray(i, i + 1)).map(hex));
    expect(out).toEqual(['616263', '6465666768']);
  });

  it('is not affected by the caller reusing a chunk buffer after a multi-chunk frame', () => {
    const r = new FrameReader(1024);
    const a = Buffer.from([1, 0, 0, 0, 4, 0xaa, 0xbb]);
    const b = Buffer.from([0xcc, 0xdd]);
    const [f] = [...r.push(a), ...r.push(b)];
    a.fill(0);
    b.fill(0);
    expect(hex(f!)).toBe('aabbccdd');
  });

  it('reassembles random frames under random chunking (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (bodies, cutSeeds) => {
          const s = stream(bodies);
          const cuts = [...new Set(cutSeeds.map((c) => c % (s.length + 1)))].sort((x, y) => x - y);
          const chunks: Buffer[] = [];
          let prev = 0;
          for (const c of [...cuts, s.length]) {
            chunks.push(s.subarray(prev, c));
            prev = c;
          }
          const r = new FrameReader(300);
          expect(pushAll(r, chunks)).toEqual(bodies.map(hex));
          expect(r.pending).toBe(0);
          expect(r.versionReceived).toBe(true);
        },
      ),
      { numRuns: propertyRuns(500) },
    );
  });
});

describe('frame size limit', () => {
  it('rejects an oversized length from the 4-byte header alone', () => {
    const r = new FrameReader(16 * MiB);
    const header = Buffer.alloc(5);
    header[0] = 0x01;
    header.writeUInt32BE(17 * MiB, 1);
    let err: unknown;
    try {
      r.push(header);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KeyhopError);
    expect((err as KeyhopError).code).toBe(ErrorCodes.DECODE_LIMIT);
    expect((err as KeyhopError).message).toBe(
      `frame of ${17 * MiB} bytes exceeds the ${16 * MiB}-byte limit`,
    );
    expect(r.pending).toBe(0);
  });

  it('rejects as soon as the last header byte arrives', () => {
    const r = new FrameReader(16 * MiB);
    expect(r.push(Buffer.of(0x01, 0x01, 0x10))).toEqual([]);
    expect(r.pending).toBe(2);
    expect(r.push(Buffer.of(0x00))).toEqual([]);
    expect(codeOf(() => r.push(Buffer.of(0x00)))).toBe(ErrorCodes.DECODE_LIMIT); // 0x01100000 = 17 MiB
  });

  it('rejects 0xffffffff', () => {
    expect(codeOf(() => new FrameReader(16 * MiB).push(Buffer.of(1, 0xff, 0xff, 0xff, 0xff)))).toBe(
      ErrorCodes.DECODE_LIMIT,
    );
  });

  it('accepts exactly maxFrame and rejects maxFrame + 1', () => {
    const ok = new FrameReader(10);
    expect(ok.push(stream([Buffer.alloc(10, 7)])).map(hex)).toEqual(['07'.repeat(10)]);
    expect(codeOf(() => new FrameReader(10).push(stream([Buffer.alloc(11)])))).toBe(ErrorCodes.DECODE_LIMIT);
    expect(codeOf(() => new FrameReader(0).push(stream([Buffer.alloc(1)])))).toBe(ErrorCodes.DECODE_LIMIT);
    expect(new FrameReader(0).push(stream([Buffer.alloc(0)])).map(hex)).toEqual(['']);
  });

  it('rejects an oversized frame that follows valid frames in later pushes', () => {
    const r = new FrameReader(4);
    expect(r.push(stream([Buffer.from('ok')])).map(hex)).toEqual(['6f6b']);
    expect(codeOf(() => r.push(frame(Buffer.alloc(5))))).toBe(ErrorCodes.DECODE_LIMIT);
  });
});

describe('pending', () => {
  it('counts the bytes held for an incomplete frame', () => {
    const r = new FrameReader(1024);
    expect(r.pending).toBe(0);
    r.push(Buffer.of(0x01));
    expect(r.pending).toBe(0);
    r.push(Buffer.of(0, 0));
    expect(r.pending).toBe(2); // half a header
    r.push(Buffer.of(0, 10));
    expect(r.pending).toBe(0); // header consumed, no body yet
    r.push(Buffer.from('abc'));
    expect(r.pending).toBe(3);
    r.push(Buffer.from('defg'));
    expect(r.pending).toBe(7);
    const frames = r.push(Buffer.concat([Buffer.from('hij'), Buffer.of(0, 0)]));
    expect(frames.map((f) => f.toString())).toEqual(['abcdefghij']);
    expect(r.pending).toBe(2); // the start of the next header
    expect(r.push(Buffer.of(0, 1))).toEqual([]);
    expect(r.pending).toBe(0);
    expect(r.push(Buffer.from('z')).map((f) => f.toString())).toEqual(['z']);
    expect(r.pending).toBe(0);
  });
});

describe('frames before a violation', () => {
  it('hands over the frames completed before an oversized header, then throws', () => {
    const r = new FrameReader(16);
    const out: Buffer[] = [];
    const bytes = Buffer.concat([
      Buffer.of(1),
      Buffer.from('00000002abcd', 'hex'),
      Buffer.from('000000ff', 'hex'),
    ]);
    expect(() => r.push(bytes, out)).toThrow(KeyhopError);
    expect(out.map((f) => hex(f))).toEqual(['abcd']);
  });
});

describe('memory held for a frame', () => {
  it('reserves nothing for a declared length: only the bytes that arrived are held', () => {
    const big = 0xfffffff0; // what a u32 prefix can claim; the reader's limit allows it here
    const r = new FrameReader(big);
    const spies = [
      vi.spyOn(Buffer, 'alloc'),
      vi.spyOn(Buffer, 'allocUnsafe'),
      vi.spyOn(Buffer, 'allocUnsafeSlow'),
      vi.spyOn(Buffer, 'concat'),
    ];
    try {
      const header = Buffer.alloc(5);
      header[0] = TCP_PROTOCOL_VERSION;
      header.writeUInt32BE(big, 1);
      for (const s of spies) s.mockClear();
      expect(r.push(header)).toEqual([]);
      expect(r.pending).toBe(0);
      expect(r.partialFrameBytes).toBe(4);
      for (let i = 0; i < 100; i++) expect(r.push(Buffer.alloc(1000, i))).toEqual([]);
      expect(r.pending).toBe(100_000);
      expect(r.partialFrameBytes).toBe(100_004);
      // Nothing of the declared size was ever asked for: the largest allocation is a merge of
      // small chunks that arrived.
      const sizes = spies.flatMap((s) =>
        s.mock.calls.map((c) =>
          typeof c[0] === 'number' ? c[0] : (c[0] as Buffer[]).reduce((n, b) => n + b.length, 0),
        ),
      );
      expect(Math.max(0, ...sizes)).toBeLessThanOrEqual(100_000);
    } finally {
      for (const s of spies) s.mockRestore();
    }
  });

  it('merges small chunks, so a frame trickled a byte at a time is held in few buffers', () => {
    const body = Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 7) & 0xff));
    const s = stream([body]);
    const r = new FrameReader(1 << 20);
    let maxHeld = 0;
    const out: Buffer[] = [];
    for (let i = 0; i < s.length; i++) {
      r.push(s.subarray(i, i + 1), out);
      maxHeld = Math.max(maxHeld, r.heldChunks);
    }
    expect(out).toHaveLength(1);
    expect(out[0]!.equals(body)).toBe(true);
    // ~50,000 one-byte chunks held in a few dozen buffers (each merge stops at 4 KiB).
    expect(maxHeld).toBeLessThan(64);
    expect(r.heldChunks).toBe(0);
    expect(r.pending).toBe(0);
  });

  it('does not merge large chunks', () => {
    const r = new FrameReader(1 << 24);
    const header = Buffer.alloc(5);
    header[0] = TCP_PROTOCOL_VERSION;
    header.writeUInt32BE(100 * 8192, 1);
    r.push(header);
    const chunks = Array.from({ length: 100 }, (_, i) => Buffer.alloc(8192, i));
    for (const c of chunks.slice(0, 99)) r.push(c);
    expect(r.heldChunks).toBe(99);
    const [f] = r.push(chunks[99]!);
    expect(f!.equals(Buffer.concat(chunks))).toBe(true);
  });

  it('reports the partial frame only after the version byte and between frames -1', () => {
    const r = new FrameReader(1024);
    expect(r.partialFrameBytes).toBe(-1);
    r.push(Buffer.of(1));
    expect(r.partialFrameBytes).toBe(-1);
    r.push(Buffer.of(0, 0));
    expect(r.partialFrameBytes).toBe(2);
    r.push(Buffer.of(0, 3, 0xaa));
    expect(r.partialFrameBytes).toBe(5);
    expect(r.push(Buffer.of(0xbb, 0xcc)).map(hex)).toEqual(['aabbcc']);
    expect(r.partialFrameBytes).toBe(-1);
  });

  it('reassembles random frames under random small chunking with merges (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 20_000 }), { maxLength: 4 }),
        fc.array(fc.integer({ min: 1, max: 6000 }), { minLength: 1, maxLength: 20 }),
        (bodies, sizes) => {
          const s = stream(bodies);
          const chunks: Buffer[] = [];
          for (let off = 0, i = 0; off < s.length; i++) {
            const n = sizes[i % sizes.length]!;
            chunks.push(s.subarray(off, off + n));
            off += n;
          }
          const r = new FrameReader(20_000);
          expect(pushAll(r, chunks)).toEqual(bodies.map(hex));
          expect(r.pending).toBe(0);
        },
      ),
      { numRuns: propertyRuns(100) },
    );
  });
});
