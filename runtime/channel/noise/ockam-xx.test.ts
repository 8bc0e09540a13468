import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { CryptoProvider } from '../../../vaults/provider.js';
import { dhKeyFromPrivate } from './dh-key.js';
import { HandshakeState, type SplitCipherStates } from './handshake-state.js';
import { type NoiseSuite, resolveProtocol } from './protocol.js';
import { SymmetricState } from './symmetric-state.js';
import { hex, PROVIDERS, unhex } from './test-support.js';

// Ockam's Noise XX profile (test/vectors/ockam/noise_xx.json): X25519, AES-256-GCM, SHA-256, empty
// prologue, a 32-byte protocol name used as is. Ockam swaps the split roles (its initiator
// encrypts with k2); that is the channel layer's business, so here the keys are checked as c1/c2.

interface Message {
  payload: string;
  bytes: string;
}
interface FinalState {
  handshake_hash: string;
  k1: string;
  k2: string;
}
interface Vector {
  id: string;
  protocol_name_ascii?: string;
  protocol_name_hex?: string;
  prologue?: string;
  expected_h_after_initialize?: string;
  expected_ck_after_initialize?: string;
  h_after_initialize?: string;
  messages?: (Message & { plaintext?: string; ciphertext_and_tag?: string; associated_data?: string })[];
  final_state?: FinalState;
  first_initiator_data_message?: { nonce: number; plaintext: string; wire_bytes: string };
  rekey_k1?: string;
  rekey_k2?: string;
}

const file = JSON.parse(
  readFileSync(new URL('../../../test/vectors/ockam/noise_xx.json', import.meta.url), 'utf8'),
) as {
  keys: {
    initiator_static_private: string;
    initiator_ephemeral_private: string;
    responder_static_private: string;
    responder_ephemeral_private: string;
    public_keys: Record<string, string>;
  };
  vectors: Vector[];
};
const K = file.keys;
const vector = (id: string): Vector => {
  const v = file.vectors.find((x) => x.id === id);
  if (!v) throw new Error(`no vector ${id}`);
  return v;
};

const OCKAM_SUITE: NoiseSuite = { pattern: 'XX', dh: '25519', cipher: 'AESGCM', hash: 'SHA256' };
const PRODUCTION_NAME = 'OCKAM_XX_25519_AES256_GCM_SHA256';

/** Both parties with the vector keys; the suite only for the production name. */
function parties(provider: CryptoProvider, protocolName: string) {
  const suite = protocolName === PRODUCTION_NAME ? OCKAM_SUITE : undefined;
  const make = (initiator: boolean, s: string, e: string) =>
    new HandshakeState({
      provider,
      protocolName,
      suite,
      initiator,
      prologue: new Uint8Array(0),
      s: dhKeyFromPrivate(provider, '25519', unhex(s)),
      e: dhKeyFromPrivate(provider, '25519', unhex(e)),
    });
  return {
    initiator: make(true, K.initiator_static_private, K.initiator_ephemeral_private),
    responder: make(false, K.responder_static_private, K.responder_ephemeral_private),
  };
}

/** Runs the three XX messages, checking every byte; returns both splits. */
function handshake(provider: CryptoProvider, v: Vector) {
  const { initiator, responder } = parties(provider, v.protocol_name_ascii!);
  const order = [initiator, responder, initiator];
  for (const [i, m] of v.messages!.entries()) {
    const sender = order[i]!;
    const receiver = sender === initiator ? responder : initiator;
    const bytes = sender.writeMessage(unhex(m.payload));
    expect(hex(bytes), `message ${i + 1}`).toBe(m.bytes);
    expect(hex(receiver.readMessage(bytes))).toBe(m.payload);
  }
  expect(initiator.isComplete && responder.isComplete).toBe(true);
  expect(hex(initiator.remoteStaticPublicKey!)).toBe(K.public_keys.responder_static_public);
  expect(hex(responder.remoteStaticPublicKey!)).toBe(K.public_keys.initiator_static_public);
  const hash = hex(initiator.handshakeHash);
  expect(hex(responder.handshakeHash)).toBe(hash);
  return { hash, initiator: initiator.split(), responder: responder.split() };
}

function expectKeys(split: SplitCipherStates, f: FinalState): void {
  expect(hex(split.c1.exportKey()!)).toBe(f.k1);
  expect(hex(split.c2.exportKey()!)).toBe(f.k2);
}

describe.each(PROVIDERS.map((p) => [p.name, p] as const))(
  'Ockam Noise XX vectors, %s provider',
  (_, provider) => {
    it('test_initialization: h and ck after InitializeSymmetric + empty prologue', () => {
      const v = vector('test_initialization');
      const name = v.protocol_name_ascii!;
      expect(hex(new TextEncoder().encode(name)).padEnd(64, '0')).toBe(v.protocol_name_hex);
      const { initiator, responder } = parties(provider, name);
      expect(hex(initiator.handshakeHash)).toBe(v.expected_h_after_initialize);
      expect(hex(responder.handshakeHash)).toBe(v.expected_h_after_initialize);
      const sym = new SymmetricState(provider, resolveProtocol(name));
      expect(hex(sym.chainingKey)).toBe(v.expected_ck_after_initialize);
      expect(hex(sym.handshakeHash)).toBe(v.protocol_name_hex);
      expect(sym.hasKey()).toBe(false);
    });

    it.each(['test_full_handshake1', 'test_full_handshake2'])('%s: message bytes, hash, k1/k2', (id) => {
      const v = vector(id);
      const r = handshake(provider, v);
      expect(r.hash).toBe(v.final_state!.handshake_hash);
      expectKeys(r.initiator, v.final_state!);
      expectKeys(r.responder, v.final_state!);
    });

    it('c_xx_legacy_transport: k1 is the responder-to-initiator key in Ockam (AD = h, nonce 0)', () => {
      const r = handshake(provider, vector('test_full_handshake1'));
      const [toInitiator, toResponder] = vector('c_xx_legacy_transport').messages!;
      // Ockam: responder encrypts with k1 (= c1), initiator with k2 (= c2).
      const h = unhex(r.hash);
      expect(hex(r.responder.c1.encryptWithAd(h, unhex(toInitiator!.plaintext!)))).toBe(
        toInitiator!.ciphertext_and_tag,
      );
      expect(hex(r.initiator.c1.decryptWithAd(h, unhex(toInitiator!.ciphertext_and_tag!)))).toBe(
        toInitiator!.plaintext,
      );
      expect(hex(r.initiator.c2.encryptWithAd(h, unhex(toResponder!.plaintext!)))).toBe(
        toResponder!.ciphertext_and_tag,
      );
    });

    it('test_name_transport_examples: first data message and REKEY of k1/k2', () => {
      const v = vector('test_name_transport_examples');
      const r = handshake(provider, vector('test_full_handshake1'));
      const m = v.first_initiator_data_message!;
      const ciphertext = r.initiator.c2.encryptWithAd(new Uint8Array(0), unhex(m.plaintext));
      expect(`${'0'.repeat(16)}${hex(ciphertext)}`).toBe(m.wire_bytes);
      r.initiator.c1.rekey();
      r.initiator.c2.rekey();
      expect(hex(r.initiator.c1.exportKey()!)).toBe(v.rekey_k1);
      expect(hex(r.initiator.c2.exportKey()!)).toBe(v.rekey_k2);
      // Rekey keeps the nonce (§11.3).
      expect(r.initiator.c2.nonce).toBe(1n);
    });

    it(`production name ${PRODUCTION_NAME} through an explicit suite`, () => {
      const v = vector('production_name_empty_payloads');
      expect(v.protocol_name_ascii).toBe(PRODUCTION_NAME);
      expect(hex(new TextEncoder().encode(PRODUCTION_NAME))).toBe(v.protocol_name_hex);
      const { initiator } = parties(provider, PRODUCTION_NAME);
      expect(initiator.protocol.suite).toEqual(OCKAM_SUITE);
      expect(hex(initiator.handshakeHash)).toBe(v.h_after_initialize);
      const r = handshake(provider, v);
      expect(r.hash).toBe(v.final_state!.handshake_hash);
      expectKeys(r.initiator, v.final_state!);
      expectKeys(r.responder, v.final_state!);
      const m = v.first_initiator_data_message!;
      r.initiator.c2.setNonce(BigInt(m.nonce));
      const ciphertext = r.initiator.c2.encryptWithAd(new Uint8Array(0), unhex(m.plaintext));
      expect(`${m.nonce.toString(16).padStart(16, '0')}${hex(ciphertext)}`).toBe(m.wire_bytes);
      expect(hex(r.responder.c2.decryptWithAd(new Uint8Array(0), ciphertext))).toBe(m.plaintext);
      r.responder.c1.rekey();
      r.responder.c2.rekey();
      expect(hex(r.responder.c1.exportKey()!)).toBe(v.rekey_k1);
      expect(hex(r.responder.c2.exportKey()!)).toBe(v.rekey_k2);
    });

    it('without the suite, the production name is refused (it is not a Noise_ name)', () => {
      expect(
        () =>
          new HandshakeState({
            provider,
            protocolName: PRODUCTION_NAME,
            initiator: true,
            s: dhKeyFromPrivate(provider, '25519', unhex(K.initiator_static_private)),
          }),
      ).toThrow(expect.objectContaining({ code: 'UNSUPPORTED' }));
    });
  },
);
