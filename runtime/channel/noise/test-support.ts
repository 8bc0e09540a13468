/**
 * TEST ONLY: helpers shared by the Noise engine's test files (the cacophony vectors are split over
 * several files so vitest runs them in parallel). Nothing imports this outside tests.
 */
import { readFileSync } from 'node:fs';
import type { CryptoProvider } from '../../../vaults/provider.js';
import { nobleCrypto } from '../../../vaults/software/noble-provider.js';
import { nodeCrypto } from '../../../vaults/software/node-provider.js';
import type { CipherState } from './cipher-state.js';
import { dhKeyFromPrivate, generateDhKey } from './dh-key.js';
import { type HandshakeOptions, HandshakeState } from './handshake-state.js';
import { parseProtocolName, resolveProtocol } from './protocol.js';

/** Both CryptoProviders; every vector suite runs against each (describe.each). */
export const PROVIDERS: readonly CryptoProvider[] = [nodeCrypto, nobleCrypto];

/**
 * `provider` with `dh` and `dhPublicKey` memoized by their inputs (both are pure functions).
 * Cacophony uses the same six private keys per curve in all 472 of its vectors, so the vector
 * suites still run every distinct X25519/X448 computation on the provider, once, while the
 * pure-JS X448 (about 2.5 ms a call, some 10 calls a vector) stops dominating the run time. The
 * engine side is unchanged: it still calls DhKey.dh for every token. Hashes, HMAC and AEAD are
 * never memoized.
 */
export function withMemoizedDh(provider: CryptoProvider): CryptoProvider {
  const cache = new Map<string, Uint8Array>();
  const memo = (k: string, f: () => Uint8Array) => {
    let v = cache.get(k);
    if (v === undefined) {
      v = f();
      cache.set(k, v);
    }
    return Uint8Array.from(v);
  };
  return {
    ...provider,
    dhPublicKey: (name, priv) => memo(`p${name}:${hex(priv)}`, () => provider.dhPublicKey(name, priv)),
    dh: (name, priv, pub) => memo(`d${name}:${hex(priv)}:${hex(pub)}`, () => provider.dh(name, priv, pub)),
  };
}

/**
 * The providers for the cacophony suites: node as is, noble with memoized DH (see
 * `withMemoizedDh`; the unit and property tests use noble unmemoized).
 */
export const VECTOR_PROVIDERS: readonly (readonly [string, CryptoProvider])[] = [
  [nodeCrypto.name, nodeCrypto],
  [`${nobleCrypto.name} (DH memoized)`, withMemoizedDh(nobleCrypto)],
];

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
export const unhex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));

export interface CacophonyVector {
  protocol_name: string;
  init_prologue: string;
  init_static?: string;
  init_ephemeral: string;
  init_remote_static?: string;
  init_psks?: string[];
  resp_prologue: string;
  resp_static?: string;
  resp_ephemeral?: string;
  resp_remote_static?: string;
  resp_psks?: string[];
  handshake_hash: string;
  messages: { payload: string; ciphertext: string }[];
}

let cached: CacophonyVector[] | undefined;

/** The 944 vectors of test/vectors/noise/cacophony.json. */
export function cacophonyVectors(): CacophonyVector[] {
  cached ??= (
    JSON.parse(
      readFileSync(new URL('../../../test/vectors/noise/cacophony.json', import.meta.url), 'utf8'),
    ) as { vectors: CacophonyVector[] }
  ).vectors;
  return cached;
}

/** What replaying a vector produced, in the vector's own terms (lowercase hex). */
export interface Replay {
  ciphertexts: string[];
  payloads: string[];
  handshakeMessages: number;
  initiatorHash: string;
  responderHash: string;
}

/**
 * Drives both parties of a cacophony vector from its keys: each message is written by its sender
 * (standard roles: initiator first, alternating; one-way patterns use the initiator only) and
 * read by the other side. Transport messages use the Split CipherStates, initiator sending with c1.
 */
export function replayCacophony(provider: CryptoProvider, v: CacophonyVector): Replay {
  const { dh } = parseProtocolName(v.protocol_name);
  const key = (h: string | undefined) =>
    h === undefined ? undefined : dhKeyFromPrivate(provider, dh, unhex(h));
  const pub = (h: string | undefined) => (h === undefined ? undefined : unhex(h));
  const party = (initiator: boolean) => {
    const p = initiator ? 'init' : 'resp';
    return new HandshakeState({
      provider,
      protocolName: v.protocol_name,
      initiator,
      prologue: unhex(v[`${p}_prologue`]),
      s: key(v[`${p}_static`]),
      e: key(v[`${p}_ephemeral`]),
      rs: pub(v[`${p}_remote_static`]),
      psks: v[`${p}_psks`]?.map(unhex),
    });
  };
  const init = party(true);
  const resp = party(false);
  const oneWay = init.protocol.pattern.oneWay;
  const out: Replay = {
    ciphertexts: [],
    payloads: [],
    handshakeMessages: 0,
    initiatorHash: '',
    responderHash: '',
  };
  let transport: {
    init: { send: CipherState; recv: CipherState };
    resp: { send: CipherState; recv: CipherState };
  };
  for (const [i, m] of v.messages.entries()) {
    const fromInitiator = oneWay || i % 2 === 0;
    const payload = unhex(m.payload);
    let ciphertext: Uint8Array;
    let received: Uint8Array;
    if (!init.isComplete) {
      const [sender, receiver] = fromInitiator ? [init, resp] : [resp, init];
      ciphertext = sender.writeMessage(payload);
      received = receiver.readMessage(ciphertext);
      out.handshakeMessages++;
      if (init.isComplete !== resp.isComplete) throw new Error('the parties disagree on completion');
      if (init.isComplete) {
        out.initiatorHash = hex(init.handshakeHash);
        out.responderHash = hex(resp.handshakeHash);
        const i1 = init.split();
        const r1 = resp.split();
        transport = { init: { send: i1.c1, recv: i1.c2 }, resp: { send: r1.c2, recv: r1.c1 } };
      }
    } else {
      const [sender, receiver] = fromInitiator
        ? [transport!.init, transport!.resp]
        : [transport!.resp, transport!.init];
      ciphertext = sender.send.encryptWithAd(new Uint8Array(0), payload);
      received = receiver.recv.decryptWithAd(new Uint8Array(0), ciphertext);
    }
    out.ciphertexts.push(hex(ciphertext));
    out.payloads.push(hex(received));
  }
  return out;
}

export const key32 = (b: number): Uint8Array => new Uint8Array(32).fill(b);

/**
 * Both parties of `protocolName` with generated static keys, `rs` where the pattern pre-shares
 * it, and PSKs 0101…, 0202…; `extra` overrides any option of both.
 */
export function pair(
  provider: CryptoProvider,
  protocolName: string,
  extra: Partial<HandshakeOptions> = {},
): { initiator: HandshakeState; responder: HandshakeState } {
  const protocol = resolveProtocol(protocolName, extra.suite);
  const dh = protocol.suite.dh;
  const p = protocol.pattern;
  const usesS = (fromInitiator: boolean) =>
    (fromInitiator ? p.initiatorPreMessage : p.responderPreMessage).includes('s') ||
    p.messages.some((m) => m.fromInitiator === fromInitiator && m.tokens.includes('s'));
  const iS = usesS(true) ? generateDhKey(provider, dh) : undefined;
  const rS = usesS(false) ? generateDhKey(provider, dh) : undefined;
  const psks = Array.from({ length: p.pskCount }, (_, i) => key32(i + 1));
  const initiator = new HandshakeState({
    provider,
    protocolName,
    initiator: true,
    s: iS,
    rs: p.responderPreMessage.includes('s') ? rS?.publicKey : undefined,
    psks,
    ...extra,
  });
  const responder = new HandshakeState({
    provider,
    protocolName,
    initiator: false,
    s: rS,
    rs: p.initiatorPreMessage.includes('s') ? iS?.publicKey : undefined,
    psks,
    ...extra,
  });
  return { initiator, responder };
}

/**
 * Runs the handshake to completion (message i carries `payloads[i]`, empty when absent) and
 * returns what each receiver got.
 */
export function run(
  a: HandshakeState,
  b: HandshakeState,
  payloads: readonly Uint8Array[] = [],
): Uint8Array[] {
  const received: Uint8Array[] = [];
  while (!a.isComplete) {
    const [w, r] = a.isMyTurn ? [a, b] : [b, a];
    received.push(r.readMessage(w.writeMessage(payloads[received.length] ?? new Uint8Array(0))));
  }
  return received;
}
