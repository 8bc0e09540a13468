import { describe, expect, it } from 'vitest';
import { type CacophonyVector, cacophonyVectors, replayCacophony, VECTOR_PROVIDERS } from './test-support.js';

// The X448 half of the cacophony vectors (the other half is in the sibling file, so vitest runs
// the two in parallel): every ciphertext byte-exact, both handshake hashes equal to the vector's.
const vectors = cacophonyVectors().filter((v) => v.protocol_name.split('_')[2] === '448');

describe.each(VECTOR_PROVIDERS)('cacophony X448 vectors, %s provider', (_, provider) => {
  it('has all 472 X448 vectors', () => {
    expect(vectors).toHaveLength(472);
    expect(new Set(vectors.map((v) => v.protocol_name)).size).toBe(472);
  });

  it.each(vectors.map((v) => [v.protocol_name, v] as [string, CacophonyVector]))('%s', (_name, v) => {
    const r = replayCacophony(provider, v);
    expect(r.ciphertexts).toEqual(v.messages.map((m) => m.ciphertext));
    expect(r.payloads).toEqual(v.messages.map((m) => m.payload));
    expect(r.initiatorHash).toBe(v.handshake_hash);
    expect(r.responderHash).toBe(v.handshake_hash);
  });
});
