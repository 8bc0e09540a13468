import { describe, expect, it } from 'vitest';
import { nativeAeadKey, nativeAeadUnavailable } from '../../vaults/software/native-aead.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import { hex } from '../support/bytes.js';
import { addonSources } from '../support/native-build.js';

/**
 * The AEAD addon as built (node-gyp's build/Release, or with KEYHOP_AEAD_ADDON the cmake-js build:
 * .ci/run runs this file with both). The Wycheproof vectors run in vaults/software/providers.test.ts.
 */
describe('native AEAD addon build files', () => {
  it('binding.gyp and native/CMakeLists.txt build the same keyhop_aead sources', () => {
    const { gyp, cmake } = addonSources('keyhop_aead', 'KEYHOP_AEAD_SOURCES');
    expect(gyp).toEqual(['native/aead/addon.cc']);
    expect(cmake).toEqual(gyp);
  });
});

const missing = nativeAeadUnavailable();
if (missing !== undefined && process.env.KEYHOP_REQUIRE_RIG === '1')
  throw new Error(`KEYHOP_REQUIRE_RIG=1 but the native AEAD addon is not available: ${missing}`);

describe.skipIf(missing !== undefined)('native AEAD addon', () => {
  it('is the one node:crypto providers use for channel keys, and agrees with node:crypto at every size up to 64 KiB', () => {
    for (const size of [0, 1, 15, 16, 17, 64, 1024, 16 * 1024, 64 * 1024]) {
      for (const cipher of ['AESGCM', 'ChaChaPoly'] as const) {
        const key = nodeCrypto.randomBytes(32);
        const nonce = nodeCrypto.randomBytes(12);
        const ad = nodeCrypto.randomBytes(size % 7);
        const msg = nodeCrypto.randomBytes(size);
        const k = nativeAeadKey(cipher, key)!;
        const sealed = k.seal(nonce, ad, msg);
        expect(hex(sealed)).toBe(hex(nodeCrypto.aeadEncrypt(cipher, key, nonce, ad, msg)));
        expect(hex(k.open(nonce, ad, sealed))).toBe(hex(msg));
        expect(() => k.open(nonce, nodeCrypto.randomBytes(3), sealed)).toThrow(/authentication failed/);
        k.destroy();
      }
    }
    expect(nodeCrypto.aeadKey!('AESGCM', new Uint8Array(32))).toBeDefined();
  });

  it('refuses bad keys and nonces with a typed error, not a crash', () => {
    expect(() => nativeAeadKey('AESGCM', new Uint8Array(31))).toThrow(
      expect.objectContaining({ code: 'KEY_INVALID' }),
    );
    expect(() => nativeAeadKey('Nope' as 'AESGCM', new Uint8Array(32))).toThrow(
      expect.objectContaining({ code: 'UNSUPPORTED' }),
    );
    const k = nativeAeadKey('AESGCM', new Uint8Array(32))!;
    expect(() => k.seal(new Uint8Array(8), new Uint8Array(0), new Uint8Array(1))).toThrow(
      expect.objectContaining({ code: 'KEY_INVALID' }),
    );
    k.destroy();
    // Destroyed: unusable, and says so (the addon throws a TypeError; nothing is encrypted).
    expect(() => k.seal(new Uint8Array(12), new Uint8Array(0), new Uint8Array(1))).toThrow();
  });
});
