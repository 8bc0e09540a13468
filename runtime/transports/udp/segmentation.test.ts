import { readFileSync } from 'node:fs';
import { encode } from 'cborg';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { codeOf, hex } from '../../../test/support/bytes.js';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { ErrorCodes, KeyhopError } from '../../errors.js';
import {
  decodeDatagram,
  encodeDatagram,
  isNewerRoutingNumber,
  MAX_ON_THE_WIRE_SIZE,
  MAX_PAYLOAD_SIZE,
  nextRoutingNumber,
  segment,
  UDP_PROTOCOL_VERSION,
} from './segmentation.js';

const unhex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));

const wire = JSON.parse(
  readFileSync(new URL('../../../test/vectors/ockam/wire.json', import.meta.url), 'utf8'),
) as {
  udp: {
    constants: Record<string, number>;
    max_size_case: { header_bytes: string; expected_length: number; bytes: string };
  };
};

describe('UDP constants', () => {
  it('match Ockam', () => {
    expect(MAX_ON_THE_WIRE_SIZE).toBe(wire.udp.constants.MAX_ON_THE_WIRE_SIZE);
    expect(MAX_PAYLOAD_SIZE).toBe(wire.udp.constants.MAX_PAYLOAD_SIZE);
    expect(UDP_PROTOCOL_VERSION).toBe(wire.udp.constants.CURRENT_VERSION);
  });
});

describe('encodeDatagram', () => {
  it('reproduces the 508-byte max-size vector (udp.max_size_case)', () => {
    const v = wire.udp.max_size_case;
    const d = encodeDatagram({
      version: 255,
      routingNumber: 65535,
      offset: 4294967295,
      isLast: true,
      payload: new Uint8Array(MAX_PAYLOAD_SIZE),
    });
    expect(d.length).toBe(v.expected_length);
    expect(d.length).toBe(MAX_ON_THE_WIRE_SIZE);
    expect(hex(d.subarray(0, 15))).toBe(v.header_bytes);
    expect(hex(d.subarray(0, 15))).toBe('8518ff19ffff1afffffffff55901ed');
    expect(hex(d)).toBe(v.bytes);
  });

  it('refuses to decode the vector: version 255 is unknown', () => {
    expect(codeOf(() => decodeDatagram(unhex(wire.udp.max_size_case.bytes)))).toBe(ErrorCodes.DECODE_VERSION);
  });

  it('round-trips the same datagram with version 1', () => {
    const d = encodeDatagram({
      routingNumber: 65535,
      offset: 4294967295,
      isLast: false,
      payload: new Uint8Array(MAX_PAYLOAD_SIZE).fill(7),
    });
    expect(hex(d.subarray(0, 14))).toBe('850119ffff1afffffffff45901ed');
    expect(d.length).toBe(507);
    const back = decodeDatagram(d);
    expect(back).toEqual({
      version: 1,
      routingNumber: 65535,
      offset: 4294967295,
      isLast: false,
      payload: new Uint8Array(MAX_PAYLOAD_SIZE).fill(7),
    });
  });

  it('writes a small datagram in shortest form', () => {
    const d = encodeDatagram({ routingNumber: 5, offset: 0, isLast: true, payload: Uint8Array.of(1, 2) });
    expect(hex(d)).toBe('85010500f5420102');
  });

  it('writes exactly what a canonical CBOR encoder writes', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.boolean(),
        fc.uint8Array({ maxLength: MAX_PAYLOAD_SIZE }),
        (version, routingNumber, offset, isLast, payload) => {
          const d = encodeDatagram({ version, routingNumber, offset, isLast, payload });
          expect(hex(d)).toBe(hex(encode([version, routingNumber, offset, isLast, payload])));
          expect(d.length).toBeLessThanOrEqual(MAX_ON_THE_WIRE_SIZE);
        },
      ),
    );
  });

  it('rejects out-of-range fields with ENCODE_LIMIT', () => {
    const ok = { routingNumber: 0, offset: 0, isLast: true, payload: new Uint8Array(0) };
    expect(codeOf(() => encodeDatagram({ ...ok, payload: new Uint8Array(494) }))).toBe(
      ErrorCodes.ENCODE_LIMIT,
    );
    expect(codeOf(() => encodeDatagram({ ...ok, routingNumber: 65536 }))).toBe(ErrorCodes.ENCODE_LIMIT);
    expect(codeOf(() => encodeDatagram({ ...ok, routingNumber: -1 }))).toBe(ErrorCodes.ENCODE_LIMIT);
    expect(codeOf(() => encodeDatagram({ ...ok, offset: 2 ** 32 }))).toBe(ErrorCodes.ENCODE_LIMIT);
    expect(codeOf(() => encodeDatagram({ ...ok, offset: 1.5 }))).toBe(ErrorCodes.ENCODE_LIMIT);
    expect(codeOf(() => encodeDatagram({ ...ok, version: 256 }))).toBe(ErrorCodes.ENCODE_LIMIT);
  });
});

describe('decodeDatagram', () => {
  const valid = encodeDatagram({ routingNumber: 300, offset: 986, isLast: false, payload: Uint8Array.of(9) });

  it('decodes a valid datagram', () => {
    expect(decodeDatagram(valid)).toEqual({
      version: 1,
      routingNumber: 300,
      offset: 986,
      isLast: false,
      payload: Uint8Array.of(9),
    });
  });

  it.each([
    ['empty', '', ErrorCodes.DECODE_TRUNCATED],
    ['truncated payload', '85010500f54201', ErrorCodes.DECODE_TRUNCATED],
    ['four fields', '84010500f5', ErrorCodes.DECODE_INVALID],
    ['six fields', '86010500f54001', ErrorCodes.DECODE_LIMIT],
    ['not an array', 'a0', ErrorCodes.DECODE_INVALID],
    ['version 0', '85000500f540', ErrorCodes.DECODE_VERSION],
    ['version 2', '85020500f540', ErrorCodes.DECODE_VERSION],
    ['routing number > u16', '85011a0001000000f540', ErrorCodes.DECODE_LIMIT],
    ['offset > u32', '8501051b0000000100000000f540', ErrorCodes.DECODE_LIMIT],
    ['non-shortest integer', '8501180500f540', ErrorCodes.DECODE_INVALID],
    ['is_last not a bool', '8501050001 40', ErrorCodes.DECODE_INVALID],
    ['payload as text', '85010500f560', ErrorCodes.DECODE_INVALID],
    ['negative offset', '85010520f540', ErrorCodes.DECODE_INVALID],
    ['trailing byte', '85010500f54000', ErrorCodes.DECODE_INVALID],
    ['indefinite array', '9f010500f540ff', ErrorCodes.DECODE_INVALID],
    ['tagged payload', '85010500f5c240', ErrorCodes.DECODE_INVALID],
  ])('rejects %s', (_name, h, code) => {
    expect(codeOf(() => decodeDatagram(unhex(h.replace(/ /g, ''))))).toBe(code);
  });

  it('rejects a payload longer than 493 bytes and a datagram longer than 508', () => {
    const head = unhex('85010000f5'); // version 1, rn 0, offset 0, last
    const big = new Uint8Array([...head, 0x59, 0x01, 0xee, ...new Uint8Array(494)]);
    expect(big.length).toBe(502);
    expect(codeOf(() => decodeDatagram(big))).toBe(ErrorCodes.DECODE_LIMIT);
    expect(codeOf(() => decodeDatagram(new Uint8Array(509)))).toBe(ErrorCodes.DECODE_LIMIT);
  });

  it('either decodes random bytes or throws a KeyhopError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        try {
          const d = decodeDatagram(bytes);
          expect(d.version).toBe(1);
        } catch (e) {
          expect(e).toBeInstanceOf(KeyhopError);
        }
      }),
      { numRuns: propertyRuns(2000) },
    );
  });

  it('either decodes mutated valid datagrams or throws a KeyhopError', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.boolean(),
        fc.uint8Array({ maxLength: MAX_PAYLOAD_SIZE }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        (routingNumber, offset, isLast, payload, edits, cut) => {
          const d = encodeDatagram({ routingNumber, offset, isLast, payload }).slice();
          for (const [at, v] of edits) d[at % d.length] = v;
          const bytes = cut % 3 === 0 ? d.subarray(0, cut % (d.length + 1)) : d;
          try {
            const back = decodeDatagram(bytes);
            expect(back.payload.length).toBeLessThanOrEqual(MAX_PAYLOAD_SIZE);
          } catch (e) {
            expect(e).toBeInstanceOf(KeyhopError);
          }
        },
      ),
      { numRuns: propertyRuns(2000) },
    );
  });
});

describe('segment', () => {
  const pieces = (n: number, rn = 7) =>
    segment(
      new Uint8Array(n).map((_, i) => i & 0xff),
      rn,
    ).map(decodeDatagram);

  it('sends an empty message as one empty final piece', () => {
    expect(pieces(0)).toEqual([
      { version: 1, routingNumber: 7, offset: 0, isLast: true, payload: new Uint8Array(0) },
    ]);
  });

  it('sends up to 493 bytes in one datagram', () => {
    const p = pieces(493);
    expect(p).toHaveLength(1);
    expect(p[0]!.isLast).toBe(true);
    expect(p[0]!.payload.length).toBe(493);
  });

  it('cuts larger messages into 493-byte pieces with byte offsets', () => {
    const p = pieces(494 + 493, 65535);
    expect(p.map((d) => [d.offset, d.payload.length, d.isLast, d.routingNumber])).toEqual([
      [0, 493, false, 65535],
      [493, 493, false, 65535],
      [986, 1, true, 65535],
    ]);
    expect(pieces(986).map((d) => [d.offset, d.isLast])).toEqual([
      [0, false],
      [493, true],
    ]);
  });

  it('keeps every datagram within 508 bytes and the pieces in order', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), fc.integer({ min: 0, max: 0xffff }), (msg, rn) => {
        const ds = segment(msg, rn);
        const decoded = ds.map(decodeDatagram);
        expect(ds.every((d) => d.length <= MAX_ON_THE_WIRE_SIZE)).toBe(true);
        expect(decoded.filter((d) => d.isLast)).toHaveLength(1);
        expect(decoded.at(-1)!.isLast).toBe(true);
        expect(Buffer.concat(decoded.map((d) => d.payload)).equals(Buffer.from(msg))).toBe(true);
        let offset = 0;
        for (const d of decoded) {
          expect(d.offset).toBe(offset);
          expect(d.routingNumber).toBe(rn);
          offset += d.payload.length;
        }
      }),
    );
  });

  it('rejects a routing number outside u16', () => {
    expect(codeOf(() => segment(new Uint8Array(1), 65536))).toBe(ErrorCodes.ENCODE_LIMIT);
  });
});

describe('routing numbers', () => {
  it('compare with wrap-around like Ockam', () => {
    expect(isNewerRoutingNumber(6, 5)).toBe(true);
    expect(isNewerRoutingNumber(5, 6)).toBe(false);
    expect(isNewerRoutingNumber(5, 5)).toBe(false);
    expect(isNewerRoutingNumber(0, 65535)).toBe(true);
    expect(isNewerRoutingNumber(65535, 0)).toBe(false);
    expect(isNewerRoutingNumber(65535, 65534)).toBe(true);
    expect(isNewerRoutingNumber(32767, 0)).toBe(true);
    expect(isNewerRoutingNumber(32768, 0)).toBe(false);
    expect(isNewerRoutingNumber(0, 32768)).toBe(false);
    expect(isNewerRoutingNumber(100, 100 + 32769)).toBe(true);
  });

  it('increment wraps', () => {
    expect(nextRoutingNumber(65535)).toBe(0);
    expect(nextRoutingNumber(41)).toBe(42);
  });

  it('a number is newer than the 32767 before it and older than the 32767 after it', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 1, max: 32767 }), (n, k) => {
        expect(isNewerRoutingNumber((n + k) & 0xffff, n)).toBe(true);
        expect(isNewerRoutingNumber(n, (n + k) & 0xffff)).toBe(false);
      }),
    );
  });
});
