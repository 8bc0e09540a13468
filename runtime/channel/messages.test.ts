import { encode } from 'cborg';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hex, unhex } from '../../test/support/bytes.js';
import { propertyRuns } from '../../test/support/property-runs.js';
import { encodeBareString } from '../codec/bare.js';
import { KeyhopError } from '../errors.js';
import { Route } from '../routing/route.js';
import {
  type ChannelMessage,
  decodeChannelMessage,
  encodeChannelMessage,
  encodeChannelMessageParts,
} from './messages.js';

const ascii = (s: string) => Buffer.from(s).toString('hex');

describe('secure channel plaintext messages', () => {
  it('encodes Close as Ockam does (messages_test.exs: 8282028040)', () => {
    expect(hex(encodeChannelMessage({ kind: 'close' }))).toBe('8282028040');
    expect(decodeChannelMessage(unhex('8282028040'))).toEqual({ kind: 'close' });
  });

  it('encodes a Payload message byte-exact (ockam.md §3.5 example)', () => {
    const m: ChannelMessage = {
      kind: 'payload',
      onward: Route.of('echoer'),
      returnRoute: Route.of('app'),
      payload: encodeBareString('hello'),
    };
    const expected =
      `8282008183818200 46${ascii('echoer')} 81820043${ascii('app')} 46 05${ascii('hello')} 40`.replace(
        / /g,
        '',
      );
    expect(hex(encodeChannelMessage(m))).toBe(expected);
    const back = decodeChannelMessage(unhex(expected));
    expect(back.kind).toBe('payload');
    if (back.kind === 'payload') {
      expect(back.onward.toString()).toBe('0#echoer');
      expect(back.returnRoute.toString()).toBe('0#app');
      expect(hex(back.payload)).toBe(hex(m.payload));
    }
  });

  it('round-trips RefreshCredentials with embedded CBOR items', () => {
    const historyValue = [[new Uint8Array([1, 2]), [0, [new Uint8Array(64)]]]];
    const credentialValue = [
      [new Uint8Array([9]), [0, [new Uint8Array(64)]]],
      [new Uint8Array([7]), 1],
    ];
    const changeHistory = encode(historyValue);
    const credentials = [encode(credentialValue)];
    const bytes = encodeChannelMessage({ kind: 'refresh_credentials', changeHistory, credentials });
    expect(hex(bytes)).toBe(hex(encode([[1, [[historyValue, [credentialValue]]]], new Uint8Array(0)])));
    const back = decodeChannelMessage(bytes);
    expect(back).toEqual({ kind: 'refresh_credentials', changeHistory, credentials });
  });

  it('accepts padding and rejects unknown variants, trailing bytes and oversized padding', () => {
    expect(decodeChannelMessage(unhex('828202804401020304'))).toEqual({ kind: 'close' });
    expect(() => decodeChannelMessage(unhex('8282038040'))).toThrow(KeyhopError);
    expect(() => decodeChannelMessage(unhex('828202804000'))).toThrow(KeyhopError);
    const big = encode([[2, []], new Uint8Array(256)]);
    expect(() => decodeChannelMessage(big)).toThrow(/more than 255/);
  });

  it('decodes random bytes or throws KeyhopError (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        try {
          decodeChannelMessage(b);
        } catch (e) {
          expect(e).toBeInstanceOf(KeyhopError);
        }
      }),
      { numRuns: propertyRuns(2000) },
    );
  });

  it('round-trips random payload messages and matches cborg byte for byte (property)', () => {
    const addr = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ minLength: 1, maxLength: 40 }));
    fc.assert(
      fc.property(
        fc.array(addr, { maxLength: 6 }),
        fc.array(addr, { maxLength: 6 }),
        fc.uint8Array({ maxLength: 70_000 }),
        (on, ret, payload) => {
          const m: ChannelMessage = {
            kind: 'payload',
            onward: Route.from(on),
            returnRoute: Route.from(ret),
            payload,
          };
          const bytes = encodeChannelMessage(m);
          // Pieces above the copy threshold, one buffer below it: the same bytes either way.
          const parts = encodeChannelMessageParts(m);
          expect(Array.isArray(parts)).toBe(payload.length > 2048);
          expect(hex(Array.isArray(parts) ? Buffer.concat(parts) : parts)).toBe(hex(bytes));
          expect(hex(bytes)).toBe(hex(encode([[0, [[on, ret, payload]]], new Uint8Array(0)])));
          const back = decodeChannelMessage(bytes);
          expect(
            back.kind === 'payload' && back.onward.equals(m.onward) && back.returnRoute.equals(m.returnRoute),
          ).toBe(true);
        },
      ),
      { numRuns: propertyRuns(200) },
    );
  });
});
