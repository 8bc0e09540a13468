import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { codeOf, hex, unhex } from '../../../test/support/bytes.js';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { BareWriter } from '../../codec/bare.js';
import { KeyhopError } from '../../errors.js';
import {
  decodePortalMessage,
  describePortalMessage,
  encodeFlowMessage,
  encodePayload,
  encodePortalMessage,
  type FlowMessage,
  nextCounter,
  PORTAL_MAX_PAYLOAD,
  PORTAL_MAX_RECEIVED_PAYLOAD,
  PORTAL_MIN_WINDOW,
  type PortalMessage,
} from './portal-message.js';

interface VectorMessage {
  type: 'ping' | 'pong' | 'disconnect' | 'payload';
  data?: string;
  packet_counter?: number | null;
}
interface VectorCase {
  message: VectorMessage;
  bytes?: string;
  rust_head_encoder_bytes?: string;
}
interface Vector extends Partial<VectorCase> {
  id: string;
  direction?: 'encode' | 'decode';
  cases?: VectorCase[];
}

const wire = JSON.parse(
  readFileSync(new URL('../../../test/vectors/ockam/wire.json', import.meta.url), 'utf8'),
) as { portal_messages: { vectors: Vector[] } };
const vectors = wire.portal_messages.vectors;

function toMessage(v: VectorMessage, withCounter: boolean): PortalMessage {
  if (v.type !== 'payload') return { type: v.type };
  const counter = withCounter ? (v.packet_counter ?? undefined) : undefined;
  return counter === undefined
    ? { type: 'payload', data: unhex(v.data!) }
    : { type: 'payload', data: unhex(v.data!), counter };
}

/** Plain object for comparisons (Uint8Array views compare by content as hex). */
function plain(m: PortalMessage): Record<string, unknown> {
  if (m.type !== 'payload') return { ...m };
  return m.counter === undefined
    ? { type: 'payload', data: hex(m.data) }
    : { type: 'payload', data: hex(m.data), counter: m.counter };
}

describe('wire.json portal_messages vectors', () => {
  it('has the vectors this suite expects', () => {
    expect(vectors.map((v) => v.id)).toEqual([
      'elixir_payload_no_counter',
      'elixir_payload_with_counter',
      'elixir_decode_old_format',
      'elixir_roundtrip_set',
      'rust_portal_message_compat',
    ]);
  });

  // Elixir always writes the counter field (00, or 01 + u16 LE): our `counterField` encoding.
  for (const v of vectors.filter((x) => x.id.startsWith('elixir') && x.message !== undefined)) {
    it(`${v.id} (${v.direction})`, () => {
      const bytes = unhex(v.bytes!);
      const message = toMessage(v.message!, true);
      expect(plain(decodePortalMessage(bytes))).toEqual(plain(message));
      if (v.direction === 'encode')
        expect(hex(encodePortalMessage(message, { counterField: true }))).toBe(v.bytes);
      else {
        // The old format is what keyhop writes by default (like Rust HEAD).
        expect(hex(encodePortalMessage(message))).toBe(v.bytes);
      }
    });
  }

  const roundtrip = vectors.find((v) => v.id === 'elixir_roundtrip_set')!;
  for (const [i, c] of roundtrip.cases!.entries()) {
    it(`elixir_roundtrip_set[${i}] ${c.message.type}${c.message.packet_counter ? ' with counter' : ''}`, () => {
      const message = toMessage(c.message, true);
      expect(hex(encodePortalMessage(message, { counterField: true }))).toBe(c.bytes);
      expect(plain(decodePortalMessage(unhex(c.bytes!)))).toEqual(plain(message));
    });
  }

  // Rust HEAD omits the counter field even when a counter is given.
  const rust = vectors.find((v) => v.id === 'rust_portal_message_compat')!;
  for (const [i, c] of rust.cases!.entries()) {
    it(`rust_portal_message_compat[${i}] ${c.message.type}${c.message.packet_counter ? ' (counter dropped)' : ''}`, () => {
      const expected = c.bytes ?? c.rust_head_encoder_bytes!;
      expect(hex(encodePortalMessage(toMessage(c.message, true)))).toBe(expected);
      expect(plain(decodePortalMessage(unhex(expected)))).toEqual(plain(toMessage(c.message, false)));
    });
  }
});

describe('portal message decoder rule', () => {
  it('reads a counter only when at least 3 bytes follow the data and the flag is 01', () => {
    expect(plain(decodePortalMessage(unhex('030105')))).toEqual({ type: 'payload', data: '05' });
    expect(plain(decodePortalMessage(unhex('03010500')))).toEqual({ type: 'payload', data: '05' });
    expect(plain(decodePortalMessage(unhex('0301050001')))).toEqual({ type: 'payload', data: '05' });
    // Two bytes after the data: too short for flag + u16, so no counter (even with flag 01).
    expect(plain(decodePortalMessage(unhex('0301050102')))).toEqual({ type: 'payload', data: '05' });
    expect(plain(decodePortalMessage(unhex('030105000102')))).toEqual({ type: 'payload', data: '05' });
    expect(plain(decodePortalMessage(unhex('030105020102')))).toEqual({ type: 'payload', data: '05' });
    expect(plain(decodePortalMessage(unhex('030105013412')))).toEqual({
      type: 'payload',
      data: '05',
      counter: 0x1234,
    });
    // Bytes after the counter are ignored, as the Rust decoder ignores them.
    expect(plain(decodePortalMessage(unhex('030105013412ff')))).toEqual({
      type: 'payload',
      data: '05',
      counter: 0x1234,
    });
  });

  it('decodes the unit variants from their tag', () => {
    expect(decodePortalMessage(unhex('00')).type).toBe('ping');
    expect(decodePortalMessage(unhex('01')).type).toBe('pong');
    expect(decodePortalMessage(unhex('02')).type).toBe('disconnect');
  });

  it('returns the data as a view, not a copy', () => {
    const bytes = unhex('0303616263');
    const m = decodePortalMessage(bytes);
    if (m.type !== 'payload') throw new Error('not a payload');
    expect(m.data.buffer).toBe(bytes.buffer);
  });

  it('rejects empty input, unknown tags and truncated payloads', () => {
    expect(codeOf(() => decodePortalMessage(new Uint8Array()))).toBe('DECODE_TRUNCATED');
    expect(codeOf(() => decodePortalMessage(unhex('04')))).toBe('DECODE_INVALID');
    expect(codeOf(() => decodePortalMessage(unhex('ff')))).toBe('DECODE_INVALID');
    expect(codeOf(() => decodePortalMessage(unhex('03')))).toBe('DECODE_TRUNCATED');
    expect(codeOf(() => decodePortalMessage(unhex('0305616263')))).toBe('DECODE_TRUNCATED');
    expect(codeOf(() => decodePortalMessage(unhex('0380')))).toBe('DECODE_TRUNCATED');
  });

  it('checks the length against the limit before looking at the data', () => {
    // Claims 2^40 bytes in a 7-byte message: a limit error, nothing allocated.
    expect(codeOf(() => decodePortalMessage(unhex('038080808080200000')))).toBe('DECODE_LIMIT');
    // More than 64 bits of ULEB128.
    expect(codeOf(() => decodePortalMessage(unhex('03ffffffffffffffffff7f')))).toBe('DECODE_LIMIT');
    const big = encodePayload(new Uint8Array(100), undefined, {}, 100);
    expect(decodePortalMessage(big, 100).type).toBe('payload');
    expect(codeOf(() => decodePortalMessage(big, 99))).toBe('DECODE_LIMIT');
    const atLimit = new BareWriter()
      .u8(3)
      .bytesValue(new Uint8Array(PORTAL_MAX_RECEIVED_PAYLOAD + 1))
      .finish();
    expect(codeOf(() => decodePortalMessage(atLimit))).toBe('DECODE_LIMIT');
  });
});

describe('portal message encoder', () => {
  it('refuses payloads above 48 KiB and counters that are not u16', () => {
    expect(PORTAL_MAX_PAYLOAD).toBe(49152);
    expect(encodePayload(new Uint8Array(PORTAL_MAX_PAYLOAD)).length).toBe(PORTAL_MAX_PAYLOAD + 4);
    expect(codeOf(() => encodePayload(new Uint8Array(PORTAL_MAX_PAYLOAD + 1)))).toBe('ENCODE_LIMIT');
    expect(codeOf(() => encodePayload(new Uint8Array(1), 0x10000, { counterField: true }))).toBe(
      'ENCODE_LIMIT',
    );
    expect(codeOf(() => encodePayload(new Uint8Array(1), -1))).toBe('ENCODE_LIMIT');
    expect(codeOf(() => encodePayload(new Uint8Array(1), 1.5))).toBe('ENCODE_LIMIT');
  });

  it('matches the generic BARE writer byte for byte', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 20_000 }),
        fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: undefined }),
        fc.boolean(),
        (data, counter, counterField) => {
          const w = new BareWriter().u8(3).bytesValue(data);
          if (counterField) {
            if (counter === undefined) w.u8(0);
            else w.u8(1).u16le(counter);
          }
          expect(hex(encodePayload(data, counter, { counterField }))).toBe(hex(w.finish()));
        },
      ),
      { numRuns: propertyRuns(200) },
    );
  });

  it('describes messages without their data', () => {
    expect(describePortalMessage({ type: 'payload', data: new Uint8Array(3), counter: 7 })).toBe(
      'payload(3 bytes, counter 7)',
    );
    expect(describePortalMessage({ type: 'pong' })).toBe('pong');
  });

  it('wraps counters like Rust', () => {
    expect(nextCounter(0xffff)).toBe(0);
    expect(nextCounter(0)).toBe(1);
    expect(nextCounter(0xfffe)).toBe(0xffff);
  });
});

const arbMessage: fc.Arbitrary<PortalMessage> = fc.oneof(
  fc.constant<PortalMessage>({ type: 'ping' }),
  fc.constant<PortalMessage>({ type: 'pong' }),
  fc.constant<PortalMessage>({ type: 'disconnect' }),
  fc
    .record({
      data: fc.uint8Array({ maxLength: 600 }),
      counter: fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: undefined }),
    })
    .map(
      ({ data, counter }): PortalMessage =>
        counter === undefined ? { type: 'payload', data } : { type: 'payload', data, counter },
    ),
);

describe('portal message properties', () => {
  it('random bytes decode or fail with a KeyhopError DECODE_* code', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          const m = decodePortalMessage(bytes);
          expect(['ping', 'pong', 'disconnect', 'payload', 'offer', 'accept', 'start', 'credit']).toContain(
            m.type,
          );
        } catch (e) {
          expect(e).toBeInstanceOf(KeyhopError);
          expect((e as KeyhopError).code).toMatch(/^DECODE_/);
        }
      }),
      { numRuns: propertyRuns(5000) },
    );
  });

  it('payload-shaped random input decodes or fails with a DECODE_* code', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 0, max: 64 }), (rest, limit) => {
        try {
          decodePortalMessage(Uint8Array.of(3, ...rest), limit);
        } catch (e) {
          const code = (e as KeyhopError).code;
          // DECODE_INVALID only for a flow-control message (a window or credit out of range).
          if (hex(Uint8Array.from(rest.slice(0, 4))) === '00006b68') expect(code).toMatch(/^DECODE_/);
          else expect(code).toMatch(/^DECODE_(TRUNCATED|LIMIT)$/);
        }
      }),
      { numRuns: propertyRuns(3000) },
    );
  });

  it('round trips with the counter field (Elixir form)', () => {
    fc.assert(
      fc.property(arbMessage, (m) => {
        expect(plain(decodePortalMessage(encodePortalMessage(m, { counterField: true })))).toEqual(plain(m));
      }),
      { numRuns: propertyRuns(1000) },
    );
  });

  it('round trips without it (Rust form): the counter is not sent', () => {
    fc.assert(
      fc.property(arbMessage, (m) => {
        const expected = m.type === 'payload' ? { type: 'payload', data: hex(m.data) } : plain(m);
        expect(plain(decodePortalMessage(encodePortalMessage(m)))).toEqual(expected);
      }),
      { numRuns: propertyRuns(1000) },
    );
  });
});

/**
 * What Ockam's decoders make of a Payload (implemented here from their rules, for the
 * compatibility claim): Rust HEAD reads a counter only if >= 3 bytes follow the data and the flag
 * is 01, and ignores anything after; Elixir reads an optional u16 after the data (flag 00 = none)
 * and ignores bytes after the tuple.
 */
function ockamView(bytes: Uint8Array): { rust: string; elixir: string } {
  const r = { pos: 1 };
  let len = 0;
  for (let shift = 0; ; shift += 7) {
    const b = bytes[r.pos++]!;
    len |= (b & 0x7f) << shift;
    if ((b & 0x80) === 0) break;
  }
  const data = hex(bytes.subarray(r.pos, r.pos + len));
  const after = bytes.subarray(r.pos + len);
  const rustCounter = after.length >= 3 && after[0] === 1 ? String(after[1]! | (after[2]! << 8)) : 'none';
  const elixirCounter =
    after.length === 0 || after[0] === 0
      ? 'none'
      : after.length >= 3
        ? String(after[1]! | (after[2]! << 8))
        : 'bad';
  return {
    rust: `payload(${data}) counter ${rustCounter}`,
    elixir: `payload(${data}) counter ${elixirCounter}`,
  };
}

const arbFlow: fc.Arbitrary<FlowMessage> = fc.oneof(
  fc
    .integer({ min: PORTAL_MIN_WINDOW, max: 0xffff_ffff })
    .map((window): FlowMessage => ({ type: 'offer', window })),
  fc
    .integer({ min: PORTAL_MIN_WINDOW, max: 0xffff_ffff })
    .map((window): FlowMessage => ({ type: 'accept', window })),
  fc.constant<FlowMessage>({ type: 'start' }),
  fc.integer({ min: 1, max: 0xffff_ffff }).map((bytes): FlowMessage => ({ type: 'credit', bytes })),
);

describe('flow-control messages (keyhop extension)', () => {
  it('have the documented layout', () => {
    expect(hex(encodeFlowMessage({ type: 'offer', window: 1024 * 1024 }))).toBe('0300006b680100001000');
    expect(hex(encodeFlowMessage({ type: 'accept', window: 0x12345678 }))).toBe('0300006b680278563412');
    expect(hex(encodeFlowMessage({ type: 'start' }))).toBe('0300006b6803');
    expect(hex(encodeFlowMessage({ type: 'credit', bytes: 65536 }))).toBe('0300006b680400000100');
    expect(hex(encodePortalMessage({ type: 'credit', bytes: 0xffffffff }))).toBe('0300006b6804ffffffff');
    expect(plain(decodePortalMessage(unhex('0300006b680100001000')))).toEqual({
      type: 'offer',
      window: 1048576,
    });
    expect(plain(decodePortalMessage(unhex('0300006b6804ffffffff')))).toEqual({
      type: 'credit',
      bytes: 0xffffffff,
    });
  });

  it('are an empty Payload without a counter to Ockam decoders, which write nothing for it', () => {
    fc.assert(
      fc.property(arbFlow, (m) => {
        expect(ockamView(encodeFlowMessage(m))).toEqual({
          rust: 'payload() counter none',
          elixir: 'payload() counter none',
        });
      }),
      { numRuns: propertyRuns(200) },
    );
  });

  it('are never confused with what Ockam peers send', () => {
    // Elixir's empty Payload (flag 00 and nothing after) and Rust's are Payloads; so is the marker
    // without a kind, and a kind this version does not know (forward compatible: ignored).
    for (const h of ['0300', '030000', '0300006b68', '0300006b6800', '0300006b6805aabbccdd', '0300016b68']) {
      expect(decodePortalMessage(unhex(h)).type, h).toBe('payload');
    }
    // The marker counts only after empty data.
    expect(plain(decodePortalMessage(unhex('0301aa006b6803')))).toEqual({ type: 'payload', data: 'aa' });
  });

  it('reject out-of-range values and truncation; ignore trailing bytes', () => {
    expect(codeOf(() => decodePortalMessage(unhex('0300006b6801ff030000')))).toBe('DECODE_INVALID');
    expect(codeOf(() => decodePortalMessage(unhex('0300006b680400000000')))).toBe('DECODE_INVALID');
    expect(codeOf(() => decodePortalMessage(unhex('0300006b68010000')))).toBe('DECODE_TRUNCATED');
    expect(codeOf(() => decodePortalMessage(unhex('0300006b6804')))).toBe('DECODE_TRUNCATED');
    expect(plain(decodePortalMessage(unhex('0300006b680400040000ffff')))).toEqual({
      type: 'credit',
      bytes: 1024,
    });
    expect(plain(decodePortalMessage(unhex('0300006b6803ff')))).toEqual({ type: 'start' });
  });

  it('refuse to encode values the layout cannot carry', () => {
    expect(codeOf(() => encodeFlowMessage({ type: 'offer', window: PORTAL_MIN_WINDOW - 1 }))).toBe(
      'ENCODE_LIMIT',
    );
    expect(codeOf(() => encodeFlowMessage({ type: 'accept', window: 2 ** 32 }))).toBe('ENCODE_LIMIT');
    expect(codeOf(() => encodeFlowMessage({ type: 'credit', bytes: 0 }))).toBe('ENCODE_LIMIT');
    expect(codeOf(() => encodeFlowMessage({ type: 'credit', bytes: 1.5 }))).toBe('ENCODE_LIMIT');
    expect(describePortalMessage({ type: 'credit', bytes: 5 })).toBe('credit(5 bytes)');
    expect(describePortalMessage({ type: 'offer', window: 4096 })).toBe('offer(window 4096)');
  });

  it('round trip', () => {
    fc.assert(
      fc.property(arbFlow, (m) => {
        expect(plain(decodePortalMessage(encodeFlowMessage(m)))).toEqual(plain(m));
      }),
      { numRuns: propertyRuns(1000) },
    );
  });

  it('random bytes after the marker decode or fail with a DECODE_* code', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), (rest) => {
        try {
          const m = decodePortalMessage(Uint8Array.of(3, 0, 0, 0x6b, 0x68, ...rest));
          expect(['payload', 'offer', 'accept', 'start', 'credit']).toContain(m.type);
        } catch (e) {
          expect(e).toBeInstanceOf(KeyhopError);
          expect((e as KeyhopError).code).toMatch(/^DECODE_(TRUNCATED|INVALID)$/);
        }
      }),
      { numRuns: propertyRuns(3000) },
    );
  });
});
