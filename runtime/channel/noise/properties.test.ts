import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { propertyRuns } from '../../../test/support/property-runs.js';
import { describeError, ErrorCodes, KeyhopError } from '../../errors.js';
import type { HandshakeState } from './handshake-state.js';
import { BASE_PATTERN_NAMES, parsePattern } from './patterns.js';
import { hex, PROVIDERS, pair, run } from './test-support.js';

// Protocols for the properties: every base pattern, plain and with one valid pskN, over all
// cipher/hash pairs; X448 (slow in pure JS) for a fifth of the draws.
const SUITES = ['AESGCM_SHA256', 'AESGCM_BLAKE2b', 'ChaChaPoly_SHA512', 'ChaChaPoly_BLAKE2s'];
const patternArb = fc.constantFrom(...BASE_PATTERN_NAMES).chain((base) =>
  fc.oneof(
    fc.constant(base),
    fc.nat(parsePattern(base).messages.length).map((n) => `${base}psk${n}`),
  ),
);
const protocolArb = fc
  .tuple(patternArb, fc.constantFrom('25519', '25519', '25519', '25519', '448'), fc.constantFrom(...SUITES))
  .map(([pattern, dh, suite]) => `Noise_${pattern}_${dh}_${suite}`);

/** What to feed a party: pure noise, or an honest message with a flipped byte, cut or extended. */
const inputArb = fc.oneof(
  fc.record({ kind: fc.constant('random' as const), bytes: fc.uint8Array({ maxLength: 300 }) }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('extend' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 32 }) }),
  fc.record({ kind: fc.constant('huge' as const), extra: fc.integer({ min: 1, max: 100 }) }),
);

function expectOnlyKeyhopErrors(f: () => unknown): 'ok' | KeyhopError {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (!(e instanceof KeyhopError)) throw new Error(`not a KeyhopError: ${describeError(e)}`, { cause: e });
    return e;
  }
}

describe.each(PROVIDERS.map((p) => [p.name, p] as const))('Noise properties, %s provider', (_, provider) => {
  // Pure-JS X25519/X448 is several times slower than OpenSSL: fewer runs keep the suite quick.
  const runs = (n: number) => (provider.name === 'noble' ? Math.round(n * 0.6) : n);
  it('readMessage on arbitrary bytes, at any point of any handshake, throws only KeyhopErrors', () => {
    fc.assert(
      fc.property(
        protocolArb,
        fc.nat(4),
        fc.boolean(),
        inputArb,
        fc.nat(3),
        (name, steps, pickInitiator, input, again) => {
          const { initiator, responder } = pair(provider, name);
          const total = initiator.protocol.pattern.messages.length;
          // Advance the honest handshake by `steps` messages (capped at completion).
          let honest: Uint8Array | undefined;
          const reader: HandshakeState = pickInitiator ? initiator : responder;
          for (let i = 0; i < Math.min(steps, total); i++) {
            const [w, r] = initiator.isMyTurn ? [initiator, responder] : [responder, initiator];
            r.readMessage(w.writeMessage(Uint8Array.of(i)));
          }
          if (!initiator.isComplete) {
            // The next honest message, which the tamperings start from. When the party under test
            // is its writer, that party now reads out of turn: one more state to cover.
            const writer = initiator.isMyTurn ? initiator : responder;
            honest = writer.writeMessage(Uint8Array.of(42));
          }
          const base = honest ?? new Uint8Array(64);
          let bytes: Uint8Array;
          switch (input.kind) {
            case 'random':
              bytes = input.bytes;
              break;
            case 'flip':
              bytes = Uint8Array.from(base);
              if (bytes.length > 0) bytes[input.at % bytes.length]! ^= 1 << input.bit;
              break;
            case 'cut':
              bytes = base.subarray(0, base.length === 0 ? 0 : input.at % base.length);
              break;
            case 'extend':
              bytes = new Uint8Array([...base, ...input.bytes]);
              break;
            case 'huge':
              bytes = new Uint8Array(65535 + input.extra);
              break;
          }
          const first = expectOnlyKeyhopErrors(() => reader.readMessage(bytes));
          if (first !== 'ok') {
            expect(reader.isFailed).toBe(true);
            expect([ErrorCodes.HANDSHAKE_FAILED, ErrorCodes.DECODE_LIMIT]).toContain(first.code);
            if (input.kind === 'huge') expect(first.code).toBe(ErrorCodes.DECODE_LIMIT);
            for (let i = 0; i <= again; i++) {
              const later = expectOnlyKeyhopErrors(() => reader.readMessage(honest ?? bytes));
              expect(later !== 'ok' && later.code).toBe(ErrorCodes.HANDSHAKE_FAILED);
            }
          }
        },
      ),
      { numRuns: propertyRuns(runs(200)) },
    );
  });

  it('two fresh parties agree on the handshake hash and the split keys, for any payloads', () => {
    fc.assert(
      fc.property(
        protocolArb,
        fc.array(fc.uint8Array({ maxLength: 200 }), { minLength: 4, maxLength: 4 }),
        fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 4 }),
        (name, payloads, transport) => {
          const { initiator, responder } = pair(provider, name);
          const received = run(initiator, responder, payloads);
          expect(received.map(hex)).toEqual(payloads.slice(0, received.length).map(hex));
          expect(responder.isComplete).toBe(true);
          expect(hex(initiator.handshakeHash)).toBe(hex(responder.handshakeHash));
          const a = initiator.split();
          const b = responder.split();
          expect(hex(a.c1.exportKey()!)).toBe(hex(b.c1.exportKey()!));
          expect(hex(a.c2.exportKey()!)).toBe(hex(b.c2.exportKey()!));
          expect(hex(a.c1.exportKey()!)).not.toBe(hex(a.c2.exportKey()!));
          const oneWay = initiator.protocol.pattern.oneWay;
          for (const [i, m] of transport.entries()) {
            const [send, recv] = oneWay || i % 2 === 0 ? [a.c1, b.c1] : [b.c2, a.c2];
            expect(hex(recv.decryptWithAd(new Uint8Array(0), send.encryptWithAd(new Uint8Array(0), m)))).toBe(
              hex(m),
            );
          }
        },
      ),
      { numRuns: propertyRuns(runs(120)) },
    );
  });
});
