import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, isKeyhopError, KeyhopError } from '../../../runtime/errors.js';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { COMMAND_MAX } from '../protocol/packet.js';
import { KitLineBuffer } from './kit-lines.js';
import {
  deviceRequest,
  expectKitOk,
  formatKitReply,
  fromHex,
  idleRequest,
  isEcc608Name,
  KIT_MAX_LINE,
  matchKeyword,
  parseDeviceLine,
  parseKitReply,
  parseKitRequest,
  selectRequest,
  sleepRequest,
  talkRequest,
  toHex,
  wakeRequest,
} from './kit-protocol.js';

/** Runs `f`; passes when it returns or throws a KeyhopError, fails on anything else thrown. */
function valueOrKeyhopError(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof KeyhopError)) throw e;
  }
}

const latin1 = (bytes: Uint8Array) => Buffer.from(bytes).toString('latin1');

describe('kit protocol requests', () => {
  it('encodes the lines cryptoauthlib sends', () => {
    expect(deviceRequest(0)).toBe('board:device(00)');
    expect(deviceRequest(7)).toBe('board:device(07)');
    expect(selectRequest(0xc0)).toBe('E:physical:select(C0)');
    expect(wakeRequest()).toBe('E:w()');
    expect(idleRequest()).toBe('E:i()');
    expect(sleepRequest()).toBe('E:s()');
    expect(talkRequest(Uint8Array.of(0x07, 0x02, 0x80, 0x00, 0x00, 0x09, 0xad))).toBe('E:t(070280000009AD)');
  });

  it('refuses what is not a byte or too long a packet', () => {
    expect(() => deviceRequest(256)).toThrow(expect.objectContaining({ code: ErrorCodes.ENCODE_LIMIT }));
    expect(() => selectRequest(-1)).toThrow(expect.objectContaining({ code: ErrorCodes.ENCODE_LIMIT }));
    expect(() => talkRequest(new Uint8Array(0))).toThrow(
      expect.objectContaining({ code: ErrorCodes.ENCODE_LIMIT }),
    );
    expect(() => talkRequest(new Uint8Array(COMMAND_MAX + 1))).toThrow(
      expect.objectContaining({ code: ErrorCodes.ENCODE_LIMIT }),
    );
    // The longest talk request still fits a line.
    expect(talkRequest(new Uint8Array(COMMAND_MAX)).length).toBeLessThanOrEqual(KIT_MAX_LINE);
  });
});

describe('kit protocol replies', () => {
  it('parses status and data, upper or lower case, with or without line end', () => {
    expect(parseKitReply('00(04113343)')).toEqual({ status: 0, data: Uint8Array.of(0x04, 0x11, 0x33, 0x43) });
    expect(parseKitReply('00()\r\n')).toEqual({ status: 0, data: new Uint8Array(0) });
    expect(parseKitReply('f9()')).toEqual({ status: 0xf9, data: new Uint8Array(0) });
  });

  it('rejects malformed replies with DECODE_INVALID', () => {
    for (const bad of ['', '0(00)', '00(0)', '00(zz)', '00 (00)', '00(00', 'ECC608 TWI 00(C0)', '000()']) {
      expect(() => parseKitReply(bad), bad).toThrow(
        expect.objectContaining({ code: ErrorCodes.DECODE_INVALID }),
      );
    }
  });

  it('rejects a reply over the line limit with DECODE_LIMIT', () => {
    const long = `00(${'00'.repeat(KIT_MAX_LINE)})`;
    expect(() => parseKitReply(long)).toThrow(expect.objectContaining({ code: ErrorCodes.DECODE_LIMIT }));
    expect(() => parseDeviceLine(long)).toThrow(expect.objectContaining({ code: ErrorCodes.DECODE_LIMIT }));
  });

  it('turns a non-zero kit status into HARDWARE_IO naming it', () => {
    expect(expectKitOk({ status: 0, data: Uint8Array.of(1) }, 'wake')).toEqual(Uint8Array.of(1));
    expect(() => expectKitOk(parseKitReply('F0()'), 'talk')).toThrow(
      expect.objectContaining({
        code: ErrorCodes.HARDWARE_IO,
        message: expect.stringContaining('F0 (COMM_FAIL)'),
      }),
    );
    expect(() => expectKitOk(parseKitReply('C5()'), 'wake')).toThrow(/C5/);
  });

  it('round-trips formatKitReply', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 200 }), (status, data) => {
        expect(parseKitReply(formatKitReply(status, data))).toEqual({ status, data });
      }),
    );
  });
});

describe('kit device lines', () => {
  it('parses name, bus and 8-bit address', () => {
    expect(parseDeviceLine('ECC608 TWI 00(C0)')).toEqual({
      name: 'ECC608',
      iface: 'TWI',
      status: 0,
      address8: 0xc0,
    });
    expect(parseDeviceLine('ECC608A SWI 00()\n')).toEqual({
      name: 'ECC608A',
      iface: 'SWI',
      status: 0,
      address8: undefined,
    });
    expect(parseDeviceLine('ECC508 00(C0)')).toEqual({
      name: 'ECC508',
      iface: '',
      status: 0,
      address8: 0xc0,
    });
  });

  it('reads a bare reply as "no device here"', () => {
    expect(parseDeviceLine('E0()')).toBeUndefined();
    expect(parseDeviceLine('00()')).toBeUndefined();
  });

  it('rejects other text', () => {
    for (const bad of ['ECC608', 'ECC608 TWI 00(C0C0)', 'ECC608 TWI (C0)', '']) {
      expect(() => parseDeviceLine(bad), bad).toThrow(
        expect.objectContaining({ code: ErrorCodes.DECODE_INVALID }),
      );
    }
  });

  it('accepts a 608 by its first four characters, as kit_init does', () => {
    expect(isEcc608Name('ECC608')).toBe(true);
    expect(isEcc608Name('ECC608B')).toBe(true);
    expect(isEcc608Name('ECC6')).toBe(true);
    expect(isEcc608Name('ECC108')).toBe(false);
    expect(isEcc608Name('ECC508')).toBe(false);
  });
});

describe('kit requests (kit side)', () => {
  it('lowercases and splits', () => {
    expect(parseKitRequest('E:t(0730000000035D)')).toEqual({ words: ['e', 't'], arg: '0730000000035d' });
    expect(parseKitRequest('board:device(00)\n')).toEqual({ words: ['board', 'device'], arg: '00' });
    expect(parseKitRequest('E:physical:interface:i2c')).toEqual({
      words: ['e', 'physical', 'interface', 'i2c'],
      arg: '',
    });
    expect(parseKitRequest('E:t(07')).toBeUndefined();
    expect(parseKitRequest(':w()')).toBeUndefined();
  });

  it('matches abbreviations as prefixes of keywords', () => {
    expect(matchKeyword('e', ['board', 'ecc', 'sha', 'ta'])).toBe('ecc');
    expect(matchKeyword('s', ['board', 'ecc', 'sha', 'ta'])).toBe('sha');
    expect(matchKeyword('t', ['wake', 'idle', 'sleep', 'talk'])).toBe('talk');
    expect(matchKeyword('talking', ['talk'])).toBeUndefined();
    expect(matchKeyword('', ['talk'])).toBeUndefined();
    expect(matchKeyword(undefined, ['talk'])).toBeUndefined();
  });
});

describe('hex', () => {
  it('round-trips and is strict', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
        expect(fromHex(toHex(b), 'x')).toEqual(b);
      }),
    );
    expect(() => fromHex('0', 'x')).toThrow(expect.objectContaining({ code: ErrorCodes.DECODE_INVALID }));
    expect(() => fromHex('0g', 'x')).toThrow(expect.objectContaining({ code: ErrorCodes.DECODE_INVALID }));
  });
});

describe('parsers on arbitrary input', () => {
  it('return a value or throw a KeyhopError, never anything else', () => {
    const inputs = fc.oneof(
      fc.string({ maxLength: 700 }),
      fc.uint8Array({ maxLength: 700 }).map(latin1),
      fc
        .tuple(
          fc.constantFrom('00(', 'F9(', 'ECC608 TWI 00(', 'E:t(', 'board:device('),
          fc.string({ maxLength: 600 }),
        )
        .map(([a, b]) => a + b),
    );
    fc.assert(
      fc.property(inputs, (s) => {
        valueOrKeyhopError(() => parseKitReply(s));
        valueOrKeyhopError(() => parseDeviceLine(s));
        valueOrKeyhopError(() => parseKitRequest(s));
        valueOrKeyhopError(() => fromHex(s, 'x'));
      }),
      { numRuns: propertyRuns(2000) },
    );
  });
});

describe('KitLineBuffer', () => {
  it('joins chunks, drops NULs and \\r, and keeps the remainder', () => {
    const b = new KitLineBuffer();
    b.push(Buffer.from('00(04'));
    expect(b.next()).toBeUndefined();
    b.push(Buffer.from('113343)\r\n\0\0\0E0()\n00('));
    expect(b.next()).toBe('00(04113343)');
    expect(b.next()).toBe('E0()');
    expect(b.next()).toBeUndefined();
    b.push(Buffer.from(')\n'));
    expect(b.next()).toBe('00()');
  });

  it('replaces a line over the limit by one DECODE_LIMIT error without accumulating it', () => {
    const b = new KitLineBuffer(16);
    b.push(Buffer.from('0'.repeat(10)));
    b.push(Buffer.from('0'.repeat(10)));
    b.push(Buffer.from('0'.repeat(1000)));
    b.push(Buffer.from('00\n00()\n'));
    const e = b.next();
    expect(isKeyhopError(e, ErrorCodes.DECODE_LIMIT)).toBe(true);
    expect(b.next()).toBe('00()');
  });

  it('yields the same lines however the stream is cut', () => {
    const line = fc.stringMatching(/^[0-9A-F()]{1,40}$/);
    fc.assert(
      fc.property(
        fc.array(line, { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(50), { maxLength: 10 }),
        (lines, cuts) => {
          const bytes = Buffer.from(lines.map((l) => `${l}\n`).join(''), 'latin1');
          const b = new KitLineBuffer(64);
          let off = 0;
          for (const c of cuts) {
            b.push(bytes.subarray(off, Math.min(bytes.length, off + c)));
            off = Math.min(bytes.length, off + c);
          }
          b.push(bytes.subarray(off));
          const got: unknown[] = [];
          for (let e = b.next(); e !== undefined; e = b.next()) got.push(e);
          expect(got).toEqual(lines);
        },
      ),
    );
  });

  it('never throws on random bytes and never queues a line over the limit', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 10 }), (chunks) => {
        const b = new KitLineBuffer(100);
        for (const c of chunks) b.push(c);
        for (let e = b.next(); e !== undefined; e = b.next()) {
          if (typeof e === 'string') expect(e.length).toBeLessThanOrEqual(100);
          else expect(e.code).toBe(ErrorCodes.DECODE_LIMIT);
        }
      }),
    );
  });
});
