import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { codeOf, hex, unhex } from '../../../test/support/bytes.js';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { ErrorCodes, KeyhopError } from '../../errors.js';
import { Address } from '../address.js';
import { Message } from '../message.js';
import { Route } from '../route.js';
import { decodeBareTransportMessage, encodeBareTransportMessage } from './bare-transport-message.js';
import { MAX_MESSAGE_BYTES } from './limits.js';

interface VectorMessage {
  version: number;
  onward_route: [number, string][];
  return_route: [number, string][];
  payload: string;
  tracing_context?: string;
}
interface Vector {
  id: string;
  direction: 'encode' | 'decode';
  message: VectorMessage;
  bytes: string;
}

const wire = JSON.parse(
  readFileSync(new URL('../../../test/vectors/ockam/wire.json', import.meta.url), 'utf8'),
) as { bare_transport_message: { vectors: Vector[] } };
const vectors = wire.bare_transport_message.vectors;
const byId = (id: string) => {
  const v = vectors.find((x) => x.id === id);
  if (!v) throw new Error(`no vector ${id}`);
  return v;
};

const ascii = (s: string) => hex(new TextEncoder().encode(s));

const routeOf = (r: [number, string][]) => Route.from(r.map(([t, v]) => [t, v] as const));
const messageOf = (m: VectorMessage) =>
  new Message(routeOf(m.onward_route), routeOf(m.return_route), unhex(m.payload));
const pairs = (r: Route) => r.addresses.map((a) => [a.type, hex(a.value)]);
const vectorPairs = (r: [number, string][]) => r.map(([t, v]) => [t, ascii(v)]);

function expectMatches(decoded: Message, m: VectorMessage): void {
  expect(pairs(decoded.onward)).toEqual(vectorPairs(m.onward_route));
  expect(pairs(decoded.returnRoute)).toEqual(vectorPairs(m.return_route));
  expect(hex(decoded.payload)).toBe(m.payload);
  expect(decoded.localInfo).toEqual([]);
}

const elixirEncode = vectors.filter(
  (v) => v.direction === 'encode' && v.message.version === 1 && !v.id.startsWith('rust'),
);
const decodeVectors = vectors.filter((v) => v.direction === 'decode');

describe('wire.json bare_transport_message vectors', () => {
  it('has the vectors this file expects', () => {
    expect(vectors.map((v) => v.id)).toEqual([
      'elixir_encode_tcp',
      'elixir_encode_udp',
      'elixir_encode_tcp_minimal',
      'elixir_encode_udp_minimal',
      'elixir_decode_udp',
      'elixir_decode_tcp',
      'elixir_tracing_context_v2',
      'rust_v1_encoding_of_elixir_tcp_example',
    ]);
    expect(elixirEncode).toHaveLength(4);
    expect(decodeVectors).toHaveLength(2);
  });

  it.each(elixirEncode.map((v) => [v.id, v]))('%s encodes byte-exact (default elixir style)', (_id, v) => {
    const m = messageOf(v.message);
    expect(hex(encodeBareTransportMessage(m))).toBe(v.bytes);
    expect(hex(encodeBareTransportMessage(m, { style: 'elixir' }))).toBe(v.bytes);
  });

  it.each(elixirEncode.map((v) => [v.id, v]))('%s decodes back to its message', (_id, v) => {
    const d = decodeBareTransportMessage(unhex(v.bytes));
    expect(d.version).toBe(1);
    expect(d.tracing).toBeUndefined();
    expectMatches(d.message, v.message);
  });

  it.each(decodeVectors.map((v) => [v.id, v]))('%s decodes', (_id, v) => {
    const d = decodeBareTransportMessage(unhex(v.bytes));
    expect(d.version).toBe(v.message.version);
    expect(d.tracing).toBeUndefined();
    expectMatches(d.message, v.message);
    // and re-encodes to the same bytes
    expect(hex(encodeBareTransportMessage(d.message))).toBe(v.bytes);
  });

  it('rust_v1 vector encodes byte-exact with style rust and decodes', () => {
    const v = byId('rust_v1_encoding_of_elixir_tcp_example');
    const m = messageOf(v.message);
    expect(hex(encodeBareTransportMessage(m, { style: 'rust' }))).toBe(v.bytes);
    expect(hex(encodeBareTransportMessage(m))).toBe(byId('elixir_encode_tcp').bytes);
    const d = decodeBareTransportMessage(unhex(v.bytes));
    expect(d.version).toBe(1);
    expect(d.tracing).toBeUndefined();
    expectMatches(d.message, v.message);
  });

  it('version-2 tracing vector decodes with its tracing string', () => {
    const v = byId('elixir_tracing_context_v2');
    const d = decodeBareTransportMessage(unhex(v.bytes));
    expect(d.version).toBe(2);
    expect(d.tracing).toBe('{"traceparent":"00-1234-01","tracestate":{}}');
    expect(d.tracing).toBe(v.message.tracing_context);
    expectMatches(d.message, v.message);
  });

  it('the spec example from ockam.md §1.4 is the elixir_encode_tcp vector', () => {
    const m = Message.create(
      Route.parse('1#127.0.0.1:4000 => printer'),
      unhex(ascii('hello')),
      Route.parse('1#127.0.0.1:3000'),
    );
    expect(hex(encodeBareTransportMessage(m))).toBe(
      `0102010e${ascii('127.0.0.1:4000')}0007${ascii('printer')}01010e${ascii('127.0.0.1:3000')}05${ascii('hello')}`,
    );
  });
});

describe('decodeBareTransportMessage', () => {
  const minimal = '01000000'; // version 1, empty routes, empty payload

  it('decodes the minimal message', () => {
    const d = decodeBareTransportMessage(unhex(minimal));
    expect(d.version).toBe(1);
    expect(d.message.onward.isEmpty).toBe(true);
    expect(d.message.returnRoute.isEmpty).toBe(true);
    expect(d.message.payload.length).toBe(0);
    expect(d.tracing).toBeUndefined();
  });

  it.each([[0], [3], [4], [0x7f], [0x80], [0xff]])('rejects version %i with DECODE_VERSION', (v) => {
    const b = unhex(minimal);
    b[0] = v;
    expect(codeOf(() => decodeBareTransportMessage(b))).toBe(ErrorCodes.DECODE_VERSION);
  });

  it('rejects every unknown version byte (exhaustive)', () => {
    for (let v = 0; v < 256; v++) {
      // with the has-tracing flag, so that versions 1 and 2 are both complete
      const b = unhex(`${v.toString(16).padStart(2, '0')}00000000`);
      if (v === 1 || v === 2) expect(decodeBareTransportMessage(b).version).toBe(v);
      else expect(codeOf(() => decodeBareTransportMessage(b))).toBe(ErrorCodes.DECODE_VERSION);
    }
  });

  it('version 1 accepts a trailing 00 flag and a 01 + tracing string (Rust std builds)', () => {
    expect(decodeBareTransportMessage(unhex(`${minimal}00`)).tracing).toBeUndefined();
    const d = decodeBareTransportMessage(unhex(`${minimal}0102${ascii('tc')}`));
    expect(d.version).toBe(1);
    expect(d.tracing).toBe('tc');
  });

  it('version 2 requires the flag', () => {
    expect(codeOf(() => decodeBareTransportMessage(unhex('02000000')))).toBe(ErrorCodes.DECODE_TRUNCATED);
    const d = decodeBareTransportMessage(unhex('0200000000'));
    expect(d.version).toBe(2);
    expect(d.tracing).toBeUndefined();
  });

  it('rejects a has-tracing flag other than 0 or 1', () => {
    expect(codeOf(() => decodeBareTransportMessage(unhex(`${minimal}02`)))).toBe(ErrorCodes.DECODE_INVALID);
    expect(codeOf(() => decodeBareTransportMessage(unhex(`${minimal}ff`)))).toBe(ErrorCodes.DECODE_INVALID);
  });

  it('rejects trailing bytes after the flag or the tracing string', () => {
    expect(codeOf(() => decodeBareTransportMessage(unhex(`${minimal}0000`)))).toBe(ErrorCodes.DECODE_INVALID);
    expect(codeOf(() => decodeBareTransportMessage(unhex(`${minimal}010141ff`)))).toBe(
      ErrorCodes.DECODE_INVALID,
    );
  });

  it('rejects a tracing string that is not UTF-8 or is too long', () => {
    expect(codeOf(() => decodeBareTransportMessage(unhex(`${minimal}0101ff`)))).toBe(
      ErrorCodes.DECODE_INVALID,
    );
    const ok = `${minimal}01${hex(uleb(4096))}${'41'.repeat(4096)}`;
    expect(decodeBareTransportMessage(unhex(ok)).tracing).toHaveLength(4096);
    const long = `${minimal}01${hex(uleb(4097))}${'41'.repeat(4097)}`;
    expect(codeOf(() => decodeBareTransportMessage(unhex(long)))).toBe(ErrorCodes.DECODE_LIMIT);
  });

  it('reports every truncation of every vector with DECODE_TRUNCATED', () => {
    for (const v of vectors) {
      const b = unhex(v.bytes);
      for (let i = 0; i < b.length; i++) {
        const cut = b.subarray(0, i);
        if (v.id === 'rust_v1_encoding_of_elixir_tcp_example' && i === b.length - 1) {
          // without its trailing flag the Rust form is the (valid) Elixir form
          expect(hex(cut)).toBe(byId('elixir_encode_tcp').bytes);
          expect(decodeBareTransportMessage(cut).tracing).toBeUndefined();
          continue;
        }
        expect(codeOf(() => decodeBareTransportMessage(cut))).toBe(ErrorCodes.DECODE_TRUNCATED);
      }
    }
  });

  it('limits the route length to 64', () => {
    const route = (n: number) => hex(uleb(n)) + '000161'.repeat(n);
    const ok = decodeBareTransportMessage(unhex(`01${route(64)}0000`));
    expect(ok.message.onward.length).toBe(64);
    expect(codeOf(() => decodeBareTransportMessage(unhex(`01${route(65)}0000`)))).toBe(
      ErrorCodes.DECODE_LIMIT,
    );
    expect(codeOf(() => decodeBareTransportMessage(unhex(`0100${route(65)}00`)))).toBe(
      ErrorCodes.DECODE_LIMIT,
    );
    // a huge count is refused before any address is read
    expect(codeOf(() => decodeBareTransportMessage(unhex('01ffffffff0f')))).toBe(ErrorCodes.DECODE_LIMIT);
  });

  it('limits address values to 1024 bytes', () => {
    const addr = (n: number) => `0101${hex(uleb(n))}${'61'.repeat(n)}`;
    const ok = decodeBareTransportMessage(unhex(`01${addr(1024)}0000`));
    expect(ok.message.onward.next!.value.length).toBe(1024);
    expect(ok.message.onward.next!.type).toBe(1);
    expect(codeOf(() => decodeBareTransportMessage(unhex(`01${addr(1025)}0000`)))).toBe(
      ErrorCodes.DECODE_LIMIT,
    );
  });

  it('keeps address type bytes >= 128 as one raw byte', () => {
    const d = decodeBareTransportMessage(unhex('010180016100' + '00'));
    expect(d.message.onward.next!.type).toBe(0x80);
    expect(d.message.onward.next!.text).toBe('a');
  });

  it('limits the payload to maxPayload', () => {
    expect(hex(decodeBareTransportMessage(unhex('010000026869'), 3).message.payload)).toBe('6869');
    expect(codeOf(() => decodeBareTransportMessage(unhex('01000003686921'), 2))).toBe(
      ErrorCodes.DECODE_LIMIT,
    );
    expect(hex(decodeBareTransportMessage(unhex('01000003686921'), 3).message.payload)).toBe('686921');
    // default limit: 16 MiB, refused from the length alone
    expect(codeOf(() => decodeBareTransportMessage(unhex(`010000${hex(uleb(MAX_MESSAGE_BYTES + 1))}`)))).toBe(
      ErrorCodes.DECODE_LIMIT,
    );
    expect(codeOf(() => decodeBareTransportMessage(unhex(`010000${hex(uleb(MAX_MESSAGE_BYTES))}`)))).toBe(
      ErrorCodes.DECODE_TRUNCATED,
    );
  });

  it('never throws anything but KeyhopError on random bytes (property)', () => {
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      // mostly-valid prefixes so the decoder gets past the version byte
      fc
        .tuple(fc.constantFrom(1, 2), fc.uint8Array({ maxLength: 64 }))
        .map(([v, rest]) => Uint8Array.of(v, ...rest)),
      fc
        .tuple(fc.constantFrom(1, 2), fc.array(fc.integer({ min: 0, max: 8 }), { maxLength: 40 }))
        .map(([v, rest]) => Uint8Array.of(v, ...rest)),
    );
    fc.assert(
      fc.property(input, (b) => {
        try {
          const d = decodeBareTransportMessage(b);
          expect([1, 2]).toContain(d.version);
        } catch (e) {
          expect(e).toBeInstanceOf(KeyhopError);
        }
      }),
      { numRuns: propertyRuns(3000) },
    );
  });

  it('never throws anything but KeyhopError on mutated valid messages (property)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...vectors.map((v) => unhex(v.bytes))),
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        (b, at, value) => {
          const m = Uint8Array.from(b);
          m[at % m.length] = value;
          try {
            decodeBareTransportMessage(m);
          } catch (e) {
            expect(e).toBeInstanceOf(KeyhopError);
          }
        },
      ),
      { numRuns: propertyRuns(2000) },
    );
  });
});

function uleb(n: number): Uint8Array {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Uint8Array.from(out);
}

describe('encodeBareTransportMessage', () => {
  it('rejects a payload above 16 MiB with ENCODE_LIMIT', () => {
    const m = Message.create(Route.parse('x'), new Uint8Array(MAX_MESSAGE_BYTES + 1));
    expect(codeOf(() => encodeBareTransportMessage(m))).toBe(ErrorCodes.ENCODE_LIMIT);
  });

  it('writes a payload of exactly 16 MiB', () => {
    const m = Message.create(Route.EMPTY, new Uint8Array(MAX_MESSAGE_BYTES));
    const out = encodeBareTransportMessage(m);
    expect(out.length).toBe(3 + 4 + MAX_MESSAGE_BYTES);
    expect(hex(out.subarray(0, 7))).toBe('01000080808008');
  });

  it('writes address types >= 128 as one raw byte', () => {
    const m = Message.create(Route.of([200, 'a']), new Uint8Array(0));
    expect(hex(encodeBareTransportMessage(m))).toBe('0101c801610000');
  });

  it('does not write local info', () => {
    const m = Message.create(Route.parse('x'), unhex('aa')).withLocalInfo({ type: 't', data: 'secret' });
    expect(hex(encodeBareTransportMessage(m))).toBe('0101000178' + '0001aa');
  });

  it('encodes only the bytes of a payload view', () => {
    const backing = unhex('00112233');
    const m = Message.create(Route.EMPTY, backing.subarray(1, 3));
    expect(hex(encodeBareTransportMessage(m))).toBe('010000021122');
  });

  const address = fc
    .tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ minLength: 1, maxLength: 64 }))
    .map(([t, v]) => new Address(t, v));
  const route = fc.array(address, { maxLength: 8 }).map((a) => Route.from(a));
  const message = fc
    .tuple(route, route, fc.uint8Array({ maxLength: 4096 }))
    .map(([o, r, p]) => new Message(o, r, p));

  it('round-trips arbitrary messages in both styles (property)', () => {
    fc.assert(
      fc.property(message, fc.constantFrom<'elixir' | 'rust'>('elixir', 'rust'), (m, style) => {
        const bytes = encodeBareTransportMessage(m, { style });
        const d = decodeBareTransportMessage(bytes);
        expect(d.version).toBe(1);
        expect(d.tracing).toBeUndefined();
        expect(d.message.onward.equals(m.onward)).toBe(true);
        expect(d.message.returnRoute.equals(m.returnRoute)).toBe(true);
        expect(pairs(d.message.onward)).toEqual(pairs(m.onward));
        expect(hex(d.message.payload)).toBe(hex(m.payload));
        // re-encoding is stable
        expect(hex(encodeBareTransportMessage(d.message, { style }))).toBe(hex(bytes));
        // the rust style is the elixir bytes plus one 00
        if (style === 'rust') {
          expect(hex(bytes)).toBe(`${hex(encodeBareTransportMessage(m))}00`);
        }
      }),
      { numRuns: propertyRuns(300) },
    );
  });
});
