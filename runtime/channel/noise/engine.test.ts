import { describe, expect, it } from 'vitest';
import { codeOf } from '../../../test/support/bytes.js';
import type { DhName } from '../../../vaults/provider.js';
import type { DhKey } from '../../../vaults/vault.js';
import { ErrorCodes } from '../../errors.js';
import { aeadNonce, MAX_NONCE, NOISE_MAX_MESSAGE_LENGTH } from './algorithms.js';
import { CipherState } from './cipher-state.js';
import { dhKeyFromPrivate, generateDhKey } from './dh-key.js';
import { type HandshakeOptions, HandshakeState } from './handshake-state.js';
import { BASE_PATTERN_NAMES, checkPatternValidity, parsePattern } from './patterns.js';
import { parseProtocolName, resolveProtocol } from './protocol.js';
import { SymmetricState } from './symmetric-state.js';
import { hex, key32, PROVIDERS, pair, run } from './test-support.js';

describe('handshake patterns', () => {
  it('knows the 38 patterns of the spec: 3 one-way, 12 fundamental, 23 deferred', () => {
    expect(BASE_PATTERN_NAMES).toHaveLength(38);
    expect(BASE_PATTERN_NAMES.filter((n) => parsePattern(n).oneWay)).toEqual(['N', 'K', 'X']);
    expect(BASE_PATTERN_NAMES.filter((n) => n.includes('1'))).toHaveLength(23);
  });

  it('every built-in pattern and every valid pskN passes the §7.3/§9.3 checks', () => {
    let count = 0;
    for (const name of BASE_PATTERN_NAMES) {
      const p = parsePattern(name);
      for (let n = 0; n <= p.messages.length; n++) {
        const q = parsePattern(`${name}psk${n}`);
        expect(q.pskCount).toBe(1);
        count++;
      }
    }
    expect(count).toBeGreaterThan(100);
  });

  it('places psk0 first in message 1 and pskN last in message N', () => {
    const p = parsePattern('NNpsk0+psk2');
    expect(p.baseName).toBe('NN');
    expect(p.modifiers).toEqual(['psk0', 'psk2']);
    expect(p.messages.map((m) => m.tokens.join(','))).toEqual(['psk,e', 'e,ee,psk']);
    expect(parsePattern('XXpsk3').messages[2]!.tokens).toEqual(['s', 'se', 'psk']);
    expect(parsePattern('I1K1').messages.map((m) => m.tokens.join(','))).toEqual(['e,s', 'e,ee,es', 'se']);
    expect(parsePattern('I1K1').responderPreMessage).toEqual(['s']);
  });

  it.each([
    ['XY'],
    ['XXpsk4'],
    ['Npsk2'],
    ['XXpsk3+psk3'],
    ['XXfallback'],
    ['XXfallback+psk0'],
    ['XXpsk01'],
    ['XXhfs'],
    ['xx'],
    [''],
    ['XX+'],
  ])('refuses pattern %j with UNSUPPORTED', (name) => {
    expect(codeOf(() => parsePattern(name))).toBe(ErrorCodes.UNSUPPORTED);
  });

  it('the validity check catches broken patterns', () => {
    const base = parsePattern('NN');
    const broken = (
      messages: { fromInitiator: boolean; tokens: ('e' | 's' | 'ee' | 'es' | 'se' | 'ss' | 'psk')[] }[],
    ) => codeOf(() => checkPatternValidity({ ...base, name: 'broken', messages }));
    // DH before the key is known; a key sent twice; a DH twice; same sender twice.
    expect(broken([{ fromInitiator: true, tokens: ['ee', 'e'] }])).toBe(ErrorCodes.UNSUPPORTED);
    expect(
      broken([
        { fromInitiator: true, tokens: ['e'] },
        { fromInitiator: false, tokens: ['e', 'ee'] },
        { fromInitiator: true, tokens: ['e'] },
      ]),
    ).toBe(ErrorCodes.UNSUPPORTED);
    expect(
      broken([
        { fromInitiator: true, tokens: ['e'] },
        { fromInitiator: false, tokens: ['e', 'ee', 'ee'] },
      ]),
    ).toBe(ErrorCodes.UNSUPPORTED);
    expect(
      broken([
        { fromInitiator: true, tokens: ['e'] },
        { fromInitiator: true, tokens: ['s'] },
      ]),
    ).toBe(ErrorCodes.UNSUPPORTED);
    // Rule 4: the responder encrypts after "es" without "ee".
    expect(
      broken([
        { fromInitiator: true, tokens: ['e'] },
        { fromInitiator: false, tokens: ['s', 'es'] },
      ]),
    ).toBe(ErrorCodes.UNSUPPORTED);
    // §9.3: encrypting after psk without having sent e.
    expect(
      broken([
        { fromInitiator: true, tokens: ['psk'] },
        { fromInitiator: false, tokens: ['e'] },
      ]),
    ).toBe(ErrorCodes.UNSUPPORTED);
  });
});

describe('protocol names', () => {
  it('parses Noise_<pattern>_<dh>_<cipher>_<hash>', () => {
    expect(parseProtocolName('Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s')).toEqual({
      pattern: 'XXpsk3',
      dh: '25519',
      cipher: 'ChaChaPoly',
      hash: 'BLAKE2s',
    });
    const p = resolveProtocol('Noise_NK1_448_AESGCM_BLAKE2b');
    expect([p.dhLen, p.hashLen, p.blockLen]).toEqual([56, 64, 128]);
    expect(resolveProtocol('Noise_NN_25519_AESGCM_SHA512').blockLen).toBe(128);
    expect(resolveProtocol('Noise_NN_25519_AESGCM_BLAKE2s').hashLen).toBe(32);
  });

  it.each([
    'Noise_XX_25519_AESGCM',
    'Noise_XX_25519_AESGCM_SHA256_extra',
    'Noisy_XX_25519_AESGCM_SHA256',
    'Noise_XX_P256_AESGCM_SHA256',
    'Noise_XX_25519+hfs_AESGCM_SHA256',
    'Noise_XX_25519_AES256GCM_SHA256',
    'Noise_XX_25519_AESGCM_SHA3',
    'Noise_ZZ_25519_AESGCM_SHA256',
    'OCKAM_XX_25519_AES256_GCM_SHA256',
  ])('refuses %s with UNSUPPORTED', (name) => {
    expect(codeOf(() => resolveProtocol(name))).toBe(ErrorCodes.UNSUPPORTED);
  });

  it('with a suite, takes any name of 1..255 bytes, string or bytes', () => {
    const suite = { pattern: 'XX', dh: '25519', cipher: 'AESGCM', hash: 'SHA256' } as const;
    expect(resolveProtocol('anything', suite).suite).toEqual(suite);
    expect(resolveProtocol(new Uint8Array(255).fill(0x41), suite).nameBytes).toHaveLength(255);
    expect(codeOf(() => resolveProtocol(new Uint8Array(256), suite))).toBe(ErrorCodes.UNSUPPORTED);
    expect(codeOf(() => resolveProtocol('', suite))).toBe(ErrorCodes.UNSUPPORTED);
    expect(codeOf(() => resolveProtocol(new Uint8Array(3)))).toBe(ErrorCodes.UNSUPPORTED);
    expect(codeOf(() => resolveProtocol('x', { ...suite, dh: '521' as DhName }))).toBe(
      ErrorCodes.UNSUPPORTED,
    );
    expect(codeOf(() => resolveProtocol('x', { ...suite, pattern: 'XXX' }))).toBe(ErrorCodes.UNSUPPORTED);
  });
});

describe.each(PROVIDERS.map((p) => [p.name, p] as const))('engine, %s provider', (_, provider) => {
  describe('InitializeSymmetric (§5.2)', () => {
    it('pads a name of at most HASHLEN bytes with zeros and hashes a longer one', () => {
      const short = new SymmetricState(provider, resolveProtocol('Noise_NN_25519_AESGCM_BLAKE2b'));
      expect(hex(short.handshakeHash)).toBe(
        hex(new TextEncoder().encode('Noise_NN_25519_AESGCM_BLAKE2b')).padEnd(128, '0'),
      );
      const name = 'Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s'; // 37 bytes > 32
      const long = new SymmetricState(provider, resolveProtocol(name));
      expect(hex(long.handshakeHash)).toBe(hex(provider.hash('BLAKE2s', new TextEncoder().encode(name))));
      expect(hex(long.chainingKey)).toBe(hex(long.handshakeHash));
      const exact = 'OCKAM_XX_25519_AES256_GCM_SHA256';
      const sym = new SymmetricState(
        provider,
        resolveProtocol(exact, { pattern: 'XX', dh: '25519', cipher: 'AESGCM', hash: 'SHA256' }),
      );
      expect(hex(sym.chainingKey)).toBe(hex(new TextEncoder().encode(exact)));
    });
  });

  describe('CipherState', () => {
    it('AESGCM nonces are big-endian, ChaChaPoly nonces little-endian, after 4 zero bytes', () => {
      expect(hex(aeadNonce('AESGCM', 0x0102n))).toBe('000000000000000000000102');
      expect(hex(aeadNonce('ChaChaPoly', 0x0102n))).toBe('000000000201000000000000');
      expect(hex(aeadNonce('AESGCM', MAX_NONCE))).toBe('00000000ffffffffffffffff');
    });

    it.each(['AESGCM', 'ChaChaPoly'] as const)(
      '%s: rekey is ENCRYPT(k, 2^64-1, empty, zeros)[0..32]',
      (cipher) => {
        const k = key32(7);
        const cs = new CipherState(provider, cipher, k);
        cs.setNonce(5n);
        cs.rekey();
        const expected = provider.aeadEncrypt(
          cipher,
          k,
          aeadNonce(cipher, MAX_NONCE),
          new Uint8Array(0),
          new Uint8Array(32),
        );
        expect(hex(cs.exportKey()!)).toBe(hex(expected.subarray(0, 32)));
        expect(cs.nonce).toBe(5n);
      },
    );

    it('2^64-1 is reserved: NONCE_EXHAUSTED for encrypt and decrypt, rekey still works', () => {
      const a = new CipherState(provider, 'ChaChaPoly', key32(1));
      const b = new CipherState(provider, 'ChaChaPoly', key32(1));
      a.setNonce(MAX_NONCE - 1n);
      b.setNonce(MAX_NONCE - 1n);
      const ct = a.encryptWithAd(new Uint8Array(0), Uint8Array.of(1, 2, 3));
      expect(b.decryptWithAd(new Uint8Array(0), ct)).toEqual(Uint8Array.of(1, 2, 3));
      expect(a.nonce).toBe(MAX_NONCE);
      expect(codeOf(() => a.encryptWithAd(new Uint8Array(0), new Uint8Array(0)))).toBe(
        ErrorCodes.NONCE_EXHAUSTED,
      );
      expect(codeOf(() => b.decryptWithAd(new Uint8Array(0), ct))).toBe(ErrorCodes.NONCE_EXHAUSTED);
      a.rekey();
      expect(codeOf(() => a.encryptWithAd(new Uint8Array(0), new Uint8Array(0)))).toBe(
        ErrorCodes.NONCE_EXHAUSTED,
      );
      expect(codeOf(() => a.setNonce(MAX_NONCE + 1n))).toBe(ErrorCodes.NONCE_EXHAUSTED);
      expect(codeOf(() => a.setNonce(-1n))).toBe(ErrorCodes.NONCE_EXHAUSTED);
    });

    it('a failed decryption throws AEAD_FAILED and does not advance the nonce', () => {
      const a = new CipherState(provider, 'AESGCM', key32(2));
      const b = new CipherState(provider, 'AESGCM', key32(2));
      const ct = a.encryptWithAd(Uint8Array.of(9), Uint8Array.of(1));
      const bad = Uint8Array.from(ct);
      bad[0]! ^= 1;
      expect(codeOf(() => b.decryptWithAd(Uint8Array.of(9), bad))).toBe(ErrorCodes.AEAD_FAILED);
      expect(codeOf(() => b.decryptWithAd(Uint8Array.of(8), ct))).toBe(ErrorCodes.AEAD_FAILED);
      expect(codeOf(() => b.decryptWithAd(Uint8Array.of(9), ct.subarray(0, 15)))).toBe(
        ErrorCodes.AEAD_FAILED,
      );
      expect(b.nonce).toBe(0n);
      expect(b.decryptWithAd(Uint8Array.of(9), ct)).toEqual(Uint8Array.of(1));
      expect(b.nonce).toBe(1n);
    });

    it('enforces the 65535-byte message limit unless raised, and passes data through without a key', () => {
      const cs = new CipherState(provider, 'AESGCM', key32(3));
      expect(cs.encryptWithAd(new Uint8Array(0), new Uint8Array(65535 - 16))).toHaveLength(65535);
      expect(codeOf(() => cs.encryptWithAd(new Uint8Array(0), new Uint8Array(65535 - 15)))).toBe(
        ErrorCodes.ENCODE_LIMIT,
      );
      expect(codeOf(() => cs.decryptWithAd(new Uint8Array(0), new Uint8Array(65536)))).toBe(
        ErrorCodes.DECODE_LIMIT,
      );
      const big = new CipherState(provider, 'AESGCM', key32(3), { maxMessageLength: 1 << 20 });
      expect(big.encryptWithAd(new Uint8Array(0), new Uint8Array(100_000))).toHaveLength(100_016);
      const none = new CipherState(provider, 'AESGCM');
      expect(none.hasKey()).toBe(false);
      expect(none.encryptWithAd(Uint8Array.of(1), Uint8Array.of(5))).toEqual(Uint8Array.of(5));
      expect(none.nonce).toBe(0n);
      expect(codeOf(() => none.rekey())).toBe(ErrorCodes.KEY_INVALID);
      expect(codeOf(() => new CipherState(provider, 'AESGCM', new Uint8Array(16)))).toBe(
        ErrorCodes.KEY_INVALID,
      );
    });

    it('clone is independent; destroy zeroes and disables', () => {
      const a = new CipherState(provider, 'AESGCM', key32(4));
      a.encryptWithAd(new Uint8Array(0), new Uint8Array(0));
      const b = a.clone();
      expect(b.nonce).toBe(1n);
      b.rekey();
      expect(hex(a.exportKey()!)).toBe(hex(key32(4)));
      a.destroy();
      expect(codeOf(() => a.encryptWithAd(new Uint8Array(0), new Uint8Array(0)))).toBe(
        ErrorCodes.KEY_INVALID,
      );
      expect(b.hasKey()).toBe(true);
    });
  });

  describe('DhKey helpers', () => {
    it.each(['25519', '448'] as const)('X%s: from a private key, generated, sizes checked', (dh) => {
      const len = dh === '25519' ? 32 : 56;
      const a = generateDhKey(provider, dh);
      const b = generateDhKey(provider, dh);
      expect(a.publicKey).toHaveLength(len);
      expect(hex(a.dh(b.publicKey))).toBe(hex(b.dh(a.publicKey)));
      const priv = new Uint8Array(len).fill(9);
      const c = dhKeyFromPrivate(provider, dh, priv);
      expect(hex(c.publicKey)).toBe(hex(provider.dhPublicKey(dh, priv)));
      priv.fill(0); // the key kept its own copy
      expect(hex(c.dh(a.publicKey))).toBe(hex(a.dh(c.publicKey)));
      expect(codeOf(() => dhKeyFromPrivate(provider, dh, new Uint8Array(len - 1)))).toBe(
        ErrorCodes.KEY_INVALID,
      );
      expect(codeOf(() => c.dh(new Uint8Array(len + 1)))).toBe(ErrorCodes.KEY_INVALID);
      c.wipe();
      expect(c.wiped).toBe(true);
      expect(codeOf(() => c.dh(a.publicKey))).toBe(ErrorCodes.KEY_INVALID);
      expect(Object.keys(c)).not.toContain('privateKey');
    });
  });

  describe('HandshakeState', () => {
    it('runs XX with generated ephemerals; both agree; remote statics learnt; ephemerals wiped', () => {
      const { initiator, responder } = pair(provider, 'Noise_XX_25519_ChaChaPoly_BLAKE2b');
      expect(initiator.isMyTurn).toBe(true);
      expect(responder.isMyTurn).toBe(false);
      const m1 = initiator.writeMessage(Uint8Array.of(1));
      expect(m1).toHaveLength(33);
      expect(responder.readMessage(m1)).toEqual(Uint8Array.of(1));
      const m2 = responder.writeMessage(Uint8Array.of(2));
      expect(m2).toHaveLength(32 + 48 + 17);
      expect(initiator.readMessage(m2)).toEqual(Uint8Array.of(2));
      expect(initiator.remoteStaticPublicKey).toHaveLength(32);
      const m3 = initiator.writeMessage(Uint8Array.of(3));
      expect(m3).toHaveLength(48 + 17);
      expect(responder.readMessage(m3)).toEqual(Uint8Array.of(3));
      expect(initiator.isComplete && responder.isComplete).toBe(true);
      expect(initiator.messageIndex).toBe(3);
      expect(hex(initiator.handshakeHash)).toBe(hex(responder.handshakeHash));
      expect(initiator.handshakeHash).toHaveLength(64);
      expect(hex(responder.remoteEphemeralPublicKey!)).toBe(hex(initiator.localEphemeralPublicKey!));
      const a = initiator.split();
      const b = responder.split();
      expect(
        hex(b.c1.decryptWithAd(new Uint8Array(0), a.c1.encryptWithAd(new Uint8Array(0), Uint8Array.of(4)))),
      ).toBe('04');
      expect(
        hex(a.c2.decryptWithAd(new Uint8Array(0), b.c2.encryptWithAd(new Uint8Array(0), Uint8Array.of(5)))),
      ).toBe('05');
      expect(codeOf(() => initiator.split())).toBe(ErrorCodes.HANDSHAKE_FAILED);
      expect(codeOf(() => initiator.writeMessage())).toBe(ErrorCodes.HANDSHAKE_FAILED);
      expect(initiator.handshakeHash).toHaveLength(64); // still readable after split
    });

    it('X448 with a PSK and a pre-message static (IKpsk2)', () => {
      const { initiator, responder } = pair(provider, 'Noise_IKpsk2_448_AESGCM_SHA512');
      run(initiator, responder);
      expect(hex(initiator.handshakeHash)).toBe(hex(responder.handshakeHash));
      expect(hex(initiator.split().c1.exportKey()!)).toBe(hex(responder.split().c1.exportKey()!));
    });

    it('a one-way pattern completes after one message and only the initiator writes', () => {
      const { initiator, responder } = pair(provider, 'Noise_Xpsk1_25519_AESGCM_SHA256');
      expect(responder.isMyTurn).toBe(false);
      expect(codeOf(() => responder.writeMessage())).toBe(ErrorCodes.HANDSHAKE_FAILED);
      responder.readMessage(initiator.writeMessage(Uint8Array.of(1)));
      expect(initiator.isComplete && responder.isComplete).toBe(true);
    });

    it('validates keys and PSKs at construction', () => {
      const name = 'Noise_XXpsk3_25519_AESGCM_SHA256';
      const s = generateDhKey(provider, '25519');
      const s448 = generateDhKey(provider, '448');
      const base = { provider, protocolName: name, initiator: true, s, psks: [key32(1)] };
      expect(() => new HandshakeState(base)).not.toThrow();
      const bad: Partial<HandshakeOptions>[] = [
        { psks: [] },
        { psks: undefined },
        { psks: [key32(1), key32(2)] },
        { psks: [new Uint8Array(31)] },
        { s: undefined },
        { s: s448 },
        { rs: s.publicKey },
        { re: s.publicKey },
      ];
      for (const b of bad)
        expect(codeOf(() => new HandshakeState({ ...base, ...b }))).toBe(ErrorCodes.KEY_INVALID);
      const nn = { provider, protocolName: 'Noise_NN_25519_AESGCM_SHA256', initiator: true };
      expect(codeOf(() => new HandshakeState({ ...nn, s }))).toBe(ErrorCodes.KEY_INVALID);
      expect(codeOf(() => new HandshakeState({ ...nn, psks: [key32(1)] }))).toBe(ErrorCodes.KEY_INVALID);
      const nk = { provider, protocolName: 'Noise_NK_25519_AESGCM_SHA256', initiator: true };
      expect(codeOf(() => new HandshakeState(nk))).toBe(ErrorCodes.KEY_INVALID);
      expect(codeOf(() => new HandshakeState({ ...nk, rs: new Uint8Array(31) }))).toBe(
        ErrorCodes.KEY_INVALID,
      );
      // The responder of a one-way pattern never sends an ephemeral key.
      const n = { provider, protocolName: 'Noise_N_25519_AESGCM_SHA256', initiator: false, s };
      expect(codeOf(() => new HandshakeState({ ...n, e: generateDhKey(provider, '25519') }))).toBe(
        ErrorCodes.KEY_INVALID,
      );
    });

    it('out-of-turn writes are refused without harm; oversized writes too (ENCODE_LIMIT)', () => {
      const { initiator, responder } = pair(provider, 'Noise_NN_25519_AESGCM_SHA256');
      expect(codeOf(() => responder.writeMessage())).toBe(ErrorCodes.HANDSHAKE_FAILED);
      expect(responder.isFailed).toBe(false);
      // Message 1 is e (32 bytes) plus the plaintext payload: 65503 bytes of payload at most.
      expect(codeOf(() => initiator.writeMessage(new Uint8Array(65504)))).toBe(ErrorCodes.ENCODE_LIMIT);
      expect(initiator.isFailed).toBe(false);
      const m1 = initiator.writeMessage(new Uint8Array(65503));
      expect(m1).toHaveLength(NOISE_MAX_MESSAGE_LENGTH);
      responder.readMessage(m1);
      // Message 2 is e + encrypted payload: 65535 - 32 - 16.
      expect(codeOf(() => responder.writeMessage(new Uint8Array(65488)))).toBe(ErrorCodes.ENCODE_LIMIT);
      initiator.readMessage(responder.writeMessage(new Uint8Array(65487)));
      expect(initiator.isComplete).toBe(true);
    });

    it('an oversized read throws DECODE_LIMIT and leaves the state unusable', () => {
      const { responder } = pair(provider, 'Noise_NN_25519_AESGCM_SHA256');
      expect(codeOf(() => responder.readMessage(new Uint8Array(65536)))).toBe(ErrorCodes.DECODE_LIMIT);
      expect(responder.isFailed).toBe(true);
      expect(codeOf(() => responder.readMessage(new Uint8Array(32)))).toBe(ErrorCodes.HANDSHAKE_FAILED);
      expect(codeOf(() => responder.handshakeHash)).toBe(ErrorCodes.HANDSHAKE_FAILED);
    });

    it('a tampered, truncated or out-of-turn read fails with HANDSHAKE_FAILED and poisons the state', () => {
      for (const tamper of [
        (m: Uint8Array) => {
          m[m.length - 1]! ^= 0x80;
          return m;
        },
        (m: Uint8Array) => m.subarray(0, 40),
        (m: Uint8Array) => m.subarray(0, m.length - 1),
      ]) {
        const { initiator, responder } = pair(provider, 'Noise_XX_25519_AESGCM_SHA256');
        responder.readMessage(initiator.writeMessage());
        const m2 = tamper(responder.writeMessage(Uint8Array.of(1, 2, 3)));
        expect(codeOf(() => initiator.readMessage(m2))).toBe(ErrorCodes.HANDSHAKE_FAILED);
        expect(initiator.isFailed).toBe(true);
        expect(codeOf(() => initiator.writeMessage())).toBe(ErrorCodes.HANDSHAKE_FAILED);
        expect(codeOf(() => initiator.split())).toBe(ErrorCodes.HANDSHAKE_FAILED);
      }
      const { initiator } = pair(provider, 'Noise_NN_25519_AESGCM_SHA256');
      expect(codeOf(() => initiator.readMessage(new Uint8Array(48)))).toBe(ErrorCodes.HANDSHAKE_FAILED);
      expect(initiator.isFailed).toBe(true);
    });

    it('rejects all-zero DH outputs (low-order peer keys), on write and on read', () => {
      const name = 'Noise_NN_25519_AESGCM_SHA256';
      // Responder: receives a low-order e (all zeros); its "ee" when writing message 2 fails.
      const { initiator, responder } = pair(provider, name);
      const m1 = initiator.writeMessage();
      responder.readMessage(new Uint8Array(32));
      expect(codeOf(() => responder.writeMessage())).toBe(ErrorCodes.HANDSHAKE_FAILED);
      expect(responder.isFailed).toBe(true);
      // Initiator: reads a message 2 whose e is the low-order point 1 (u = 1).
      const low = new Uint8Array(32);
      low[0] = 1;
      const forged = new Uint8Array(48);
      forged.set(low);
      expect(codeOf(() => initiator.readMessage(forged))).toBe(ErrorCodes.HANDSHAKE_FAILED);
      expect(m1).toHaveLength(32);
    });

    it("the all-zero check is the engine's own, whatever the DhKey does", () => {
      const name = 'Noise_NN_25519_AESGCM_SHA256';
      // Two keys whose DH always returns zeros would agree on everything: only the check stops it.
      const zeroKey = (): DhKey => ({
        publicKey: generateDhKey(provider, '25519').publicKey,
        dh: () => new Uint8Array(32),
      });
      const a = new HandshakeState({ provider, protocolName: name, initiator: true, e: zeroKey() });
      const b = new HandshakeState({ provider, protocolName: name, initiator: false, e: zeroKey() });
      b.readMessage(a.writeMessage());
      expect(() => b.writeMessage()).toThrow(/all zero/);
      expect(b.isFailed).toBe(true);
      // And on read: the initiator's "ee" is computed while reading message 2.
      const c = new HandshakeState({ provider, protocolName: name, initiator: true, e: zeroKey() });
      const d = new HandshakeState({ provider, protocolName: name, initiator: false });
      d.readMessage(c.writeMessage());
      const m2 = d.writeMessage();
      expect(() => c.readMessage(m2)).toThrow(
        expect.objectContaining({
          code: ErrorCodes.HANDSHAKE_FAILED,
          message: expect.stringMatching(/all zero/),
        }),
      );
    });

    it('only ever calls publicKey and dh() on a DhKey', () => {
      const real = generateDhKey(provider, '25519');
      const touched = new Set<PropertyKey>();
      const guarded = new Proxy(real, {
        get(target, prop) {
          touched.add(prop);
          if (prop !== 'publicKey' && prop !== 'dh') throw new Error(`engine read DhKey.${String(prop)}`);
          const v = Reflect.get(target, prop, target);
          return typeof v === 'function' ? v.bind(target) : v;
        },
      }) as DhKey;
      const rs = generateDhKey(provider, '25519');
      const initiator = new HandshakeState({
        provider,
        protocolName: 'Noise_XX_25519_AESGCM_SHA256',
        initiator: true,
        s: guarded,
      });
      const responder = new HandshakeState({
        provider,
        protocolName: 'Noise_XX_25519_AESGCM_SHA256',
        initiator: false,
        s: rs,
      });
      run(initiator, responder);
      expect([...touched].sort()).toEqual(['dh', 'publicKey']);
    });

    it('the prologue must match', () => {
      const { initiator } = pair(provider, 'Noise_NN_25519_AESGCM_SHA256', { prologue: Uint8Array.of(1) });
      const responder = new HandshakeState({
        provider,
        protocolName: 'Noise_NN_25519_AESGCM_SHA256',
        initiator: false,
        prologue: Uint8Array.of(2),
      });
      responder.readMessage(initiator.writeMessage());
      expect(codeOf(() => initiator.readMessage(responder.writeMessage()))).toBe(ErrorCodes.HANDSHAKE_FAILED);
    });

    it('split takes a larger transport limit for channels that frame their own messages', () => {
      const { initiator, responder } = pair(provider, 'Noise_NN_25519_AESGCM_SHA256');
      run(initiator, responder);
      expect(
        codeOf(() =>
          new HandshakeState({
            provider,
            protocolName: 'Noise_NN_25519_AESGCM_SHA256',
            initiator: true,
          }).split(),
        ),
      ).toBe(ErrorCodes.HANDSHAKE_FAILED);
      const { c1 } = initiator.split({ maxMessageLength: 1 << 20 });
      const { c1: r1 } = responder.split({ maxMessageLength: 1 << 20 });
      expect(
        r1.decryptWithAd(new Uint8Array(0), c1.encryptWithAd(new Uint8Array(0), new Uint8Array(70_000))),
      ).toHaveLength(70_000);
    });

    it('psks are copied at construction', () => {
      const psk = key32(5);
      const { initiator, responder } = pair(provider, 'Noise_NNpsk0_25519_AESGCM_SHA256', { psks: [psk] });
      psk.fill(0);
      run(initiator, responder);
      expect(hex(initiator.handshakeHash)).toBe(hex(responder.handshakeHash));
    });
  });
});
