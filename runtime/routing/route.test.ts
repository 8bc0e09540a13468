import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { codeOf } from '../../test/support/bytes.js';
import { ErrorCodes } from '../errors.js';
import { Address } from './address.js';
import { MAX_ROUTE_LENGTH, Route, toRoute } from './route.js';

const texts = (r: Route) => r.addresses.map((a) => a.toString());
const names = (n: number, p = 'w') => Array.from({ length: n }, (_, i) => `${p}${i}`);

describe('Route.parse', () => {
  it('parses the => form', () => {
    const r = Route.parse('1#127.0.0.1:4000 => echo');
    expect(r.length).toBe(2);
    expect(texts(r)).toEqual(['1#127.0.0.1:4000', '0#echo']);
    expect(r.addresses[0]!.type).toBe(1);
    expect(r.addresses[1]!.isLocal).toBe(true);
  });

  it('parses the comma form', () => {
    expect(texts(Route.parse('a, b,c'))).toEqual(['0#a', '0#b', '0#c']);
  });

  it('parses a mix of both separators and trims whitespace', () => {
    expect(texts(Route.parse('  a=>b ,  2#10.0.0.1:9 =>c  '))).toEqual(['0#a', '0#b', '2#10.0.0.1:9', '0#c']);
  });

  it('parses a single address and a bracketed IPv6 address', () => {
    expect(texts(Route.parse('echo'))).toEqual(['0#echo']);
    expect(texts(Route.parse('1#[::1]:4000 => api'))).toEqual(['1#[::1]:4000', '0#api']);
  });

  it.each([[''], ['   '], [' => '], [',,'], ['=> , =>']])('rejects an empty route (%j)', (text) => {
    expect(codeOf(() => Route.parse(text))).toBe(ErrorCodes.ROUTE_EMPTY);
  });

  it.each([['1#127.0.0.1:4000 =>'], ['=> echo'], ['a => => b'], ['a,,b']])(
    'rejects a separator too many instead of guessing (%j)',
    (text) => {
      expect(codeOf(() => Route.parse(text))).toBe(ErrorCodes.ROUTE_INVALID);
    },
  );

  it('passes address errors through', () => {
    expect(codeOf(() => Route.parse('a => 1#x#y'))).toBe(ErrorCodes.ADDRESS_INVALID);
    expect(codeOf(() => Route.parse('a => 1#'))).toBe(ErrorCodes.ADDRESS_INVALID);
    expect(codeOf(() => Route.parse('300#x'))).toBe(ErrorCodes.ADDRESS_INVALID);
  });

  it('accepts 64 addresses and rejects 65', () => {
    expect(MAX_ROUTE_LENGTH).toBe(64);
    expect(Route.parse(names(64).join(' => ')).length).toBe(64);
    expect(codeOf(() => Route.parse(names(65).join(' => ')))).toBe(ErrorCodes.ROUTE_INVALID);
  });
});

describe('Route.of / Route.from / toRoute', () => {
  it('builds from address-likes', () => {
    const r = Route.of('1#h:1', [0, 'echo'], Address.local('x'));
    expect(texts(r)).toEqual(['1#h:1', '0#echo', '0#x']);
  });

  it('returns the same Route instance', () => {
    const r = Route.of('a');
    expect(Route.from(r)).toBe(r);
    expect(toRoute(r)).toBe(r);
  });

  it('toRoute accepts text and arrays', () => {
    expect(texts(toRoute('a => b'))).toEqual(['0#a', '0#b']);
    expect(texts(toRoute(['1#h:1', 'b']))).toEqual(['1#h:1', '0#b']);
    expect(toRoute([]).isEmpty).toBe(true);
  });

  it('enforces the length limit', () => {
    expect(Route.from(names(64)).length).toBe(64);
    expect(codeOf(() => Route.from(names(65)))).toBe(ErrorCodes.ROUTE_INVALID);
    expect(codeOf(() => Route.of(...names(65)))).toBe(ErrorCodes.ROUTE_INVALID);
    expect(codeOf(() => toRoute(names(65)))).toBe(ErrorCodes.ROUTE_INVALID);
  });

  it('copies the input array', () => {
    const input = ['a', 'b'];
    const r = Route.from(input);
    input.push('c');
    input[0] = 'z';
    expect(texts(r)).toEqual(['0#a', '0#b']);
  });

  it('EMPTY is empty', () => {
    expect(Route.EMPTY.length).toBe(0);
    expect(Route.EMPTY.isEmpty).toBe(true);
    expect(Route.EMPTY.next).toBeUndefined();
    expect(Route.EMPTY.last).toBeUndefined();
    expect(Route.EMPTY.toString()).toBe('');
  });
});

describe('Route accessors', () => {
  it('next, last, length, isEmpty', () => {
    const r = Route.parse('a => b => c');
    expect(r.next!.text).toBe('a');
    expect(r.last!.text).toBe('c');
    expect(r.length).toBe(3);
    expect(r.isEmpty).toBe(false);
  });
});

describe('Route operations are immutable', () => {
  const base = () => Route.parse('a => b => c');

  it('step drops the first address', () => {
    const r = base();
    const s = r.step();
    expect(texts(s)).toEqual(['0#b', '0#c']);
    expect(texts(r)).toEqual(['0#a', '0#b', '0#c']);
    expect(s).not.toBe(r);
    expect(texts(s.step().step())).toEqual([]);
    expect(s.step().step().step().isEmpty).toBe(true);
  });

  it('dropLast drops the last address', () => {
    const r = base();
    expect(texts(r.dropLast())).toEqual(['0#a', '0#b']);
    expect(texts(r)).toEqual(['0#a', '0#b', '0#c']);
    expect(Route.EMPTY.dropLast().isEmpty).toBe(true);
  });

  it('prepend adds in order, flattening routes', () => {
    const r = base();
    const p = r.prepend('x', Route.parse('y => z'), [1, 'h:1']);
    expect(texts(p)).toEqual(['0#x', '0#y', '0#z', '1#h:1', '0#a', '0#b', '0#c']);
    expect(texts(r)).toEqual(['0#a', '0#b', '0#c']);
  });

  it('append adds in order, flattening routes', () => {
    const r = base();
    const p = r.append('x', Route.parse('y => z'));
    expect(texts(p)).toEqual(['0#a', '0#b', '0#c', '0#x', '0#y', '0#z']);
    expect(texts(r)).toEqual(['0#a', '0#b', '0#c']);
  });

  it('prepend and append with nothing give an equal route', () => {
    const r = base();
    expect(r.prepend().equals(r)).toBe(true);
    expect(r.append().equals(r)).toBe(true);
  });

  it('replaceNext replaces only the first address', () => {
    const r = Route.parse('1#127.0.0.1:4000 => echo');
    const q = r.replaceNext(Address.local('conn_1'));
    expect(texts(q)).toEqual(['0#conn_1', '0#echo']);
    expect(texts(r)).toEqual(['1#127.0.0.1:4000', '0#echo']);
  });

  it('prepend and append enforce the length limit', () => {
    const r63 = Route.from(names(63));
    expect(r63.prepend('x').length).toBe(64);
    expect(r63.append('x').length).toBe(64);
    expect(codeOf(() => r63.prepend('x', 'y'))).toBe(ErrorCodes.ROUTE_INVALID);
    expect(codeOf(() => r63.append('x', 'y'))).toBe(ErrorCodes.ROUTE_INVALID);
    const r64 = Route.from(names(64));
    expect(codeOf(() => r64.prepend('x'))).toBe(ErrorCodes.ROUTE_INVALID);
    expect(codeOf(() => r64.append(Route.of('x')))).toBe(ErrorCodes.ROUTE_INVALID);
    expect(codeOf(() => Route.from(names(40)).append(Route.from(names(40, 'v'))))).toBe(
      ErrorCodes.ROUTE_INVALID,
    );
  });

  it('never changes the receiver (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('a', 'b', '1#h:1', '2#u:2', 'c'), { maxLength: 10 }),
        fc.array(fc.constantFrom('step', 'dropLast', 'prepend', 'append', 'replaceNext'), { maxLength: 8 }),
        (start, ops) => {
          let r = Route.from(start);
          for (const op of ops) {
            const before = texts(r);
            const next =
              op === 'step'
                ? r.step()
                : op === 'dropLast'
                  ? r.dropLast()
                  : op === 'prepend'
                    ? r.prepend('p')
                    : op === 'append'
                      ? r.append('q')
                      : r.replaceNext(Address.local('n'));
            expect(texts(r)).toEqual(before);
            r = next;
          }
        },
      ),
    );
  });
});

describe('Route.equals', () => {
  it('compares type and bytes of each address, in order', () => {
    const r = Route.parse('1#h:1 => echo');
    expect(r.equals(Route.parse('1#h:1, 0#echo'))).toBe(true);
    expect(r.equals(Route.of([1, 'h:1'], [0, 'echo']))).toBe(true);
    expect(r.equals(Route.parse('echo => 1#h:1'))).toBe(false);
    expect(r.equals(Route.parse('2#h:1 => echo'))).toBe(false);
    expect(r.equals(Route.parse('1#h:1'))).toBe(false);
    expect(r.equals(Route.parse('1#h:1 => echo => x'))).toBe(false);
    expect(Route.EMPTY.equals(Route.from([]))).toBe(true);
    expect(Route.EMPTY.equals(r)).toBe(false);
  });

  it('distinguishes non-UTF-8 values with the same lossy text', () => {
    const a = Route.of([0, Uint8Array.of(0xff)]);
    const b = Route.of([0, Uint8Array.of(0xfe)]);
    expect(a.toString()).toBe(b.toString());
    expect(a.equals(b)).toBe(false);
  });
});

describe('Route.toString / toJSON', () => {
  it('formats with =>', () => {
    expect(Route.parse('1#127.0.0.1:4000, echo').toString()).toBe('1#127.0.0.1:4000 => 0#echo');
    expect(JSON.stringify(Route.parse('a => 1#h:1'))).toBe('["0#a","1#h:1"]');
  });

  it('round-trips through parse (property)', () => {
    const value = fc
      .string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 20 })
      .filter((s) => !/[#,]|=>/.test(s) && s.trim() === s && s.length > 0);
    const addr = fc.tuple(fc.integer({ min: 0, max: 255 }), value).map(([t, v]) => new Address(t, v));
    fc.assert(
      fc.property(fc.array(addr, { minLength: 1, maxLength: 64 }), (addresses) => {
        const r = Route.from(addresses);
        const back = Route.parse(r.toString());
        expect(back.equals(r)).toBe(true);
        expect(back.toString()).toBe(r.toString());
      }),
    );
  });
});
