import { p256 } from '@noble/curves/nist.js';
import { describe, expect, it } from 'vitest';
import { isKeyhopError } from '../../runtime/errors.js';
import { Atecc608Vault, keySlotsOf } from './atecc608-vault.js';
import { Atecc608 } from './device.js';
import { Atecc608Chip } from './emulator/chip.js';
import { EmulatorLink } from './emulator/emulator-link.js';
import { provision } from './provision.js';

function freshChip(seed: string) {
  const chip = new Atecc608Chip({ seed });
  return { chip, device: new Atecc608(new EmulatorLink(chip)) };
}

describe('Atecc608Vault', () => {
  async function provisioned() {
    const { chip, device } = freshChip('vault');
    await provision(device, { yes: true });
    return { chip, device, vault: new Atecc608Vault(device) };
  }

  it('generates keys in free slots, signs SHA-256(data) and does ECDH like software', async () => {
    const { vault } = await provisioned();
    const a = await vault.generateSigningKey('P256');
    const b = await vault.generateSigningKey('P256');
    expect([a, b]).toEqual(['slot0', 'slot1']);
    const key = await vault.publicKey(a);
    expect(key.type).toBe('P256');
    const data = new TextEncoder().encode('hello chip');
    const sig = await vault.sign(a, data);
    expect(p256.verify(sig, data, key.bytes, { prehash: true, lowS: false })).toBe(true);

    const peer = p256.utils.randomSecretKey();
    const shared = await vault.ecdh(a, p256.getPublicKey(peer, false));
    expect(shared).toEqual(p256.getSharedSecret(peer, key.bytes, true).subarray(1));

    const r = await vault.random(100);
    expect(r).toHaveLength(100);
    await vault.deleteKey(a);
    expect(await vault.listKeys()).toEqual(['slot1']);
    expect(await vault.generateSigningKey('P256')).toBe('slot0');
  });

  it('refuses Ed25519 and unknown keys, and says when it is full', async () => {
    const { vault } = await provisioned();
    expect(isKeyhopError(await vault.generateSigningKey('Ed25519').catch((e) => e), 'UNSUPPORTED')).toBe(
      true,
    );
    expect(isKeyhopError(await vault.sign('slot9', new Uint8Array(1)).catch((e) => e), 'KEY_NOT_FOUND')).toBe(
      true,
    );
    const ids = await Promise.all(Array.from({ length: 8 }, () => vault.generateSigningKey('P256')));
    expect(new Set(ids).size).toBe(8);
    const full = await vault.generateSigningKey('P256').catch((e: unknown) => e);
    expect(isKeyhopError(full, 'UNSUPPORTED')).toBe(true);
    expect((full as Error).message).toMatch(/no free key slot/);
  });

  it('has no key slots on an unprovisioned chip, and refuses randomness from it', async () => {
    const { device } = freshChip('blank');
    const vault = new Atecc608Vault(device);
    expect(keySlotsOf(await device.config())).toEqual([]);
    expect(isKeyhopError(await vault.random(32).catch((e) => e), 'HARDWARE_REFUSED')).toBe(true);
    expect(isKeyhopError(await vault.generateSigningKey('P256').catch((e) => e), 'UNSUPPORTED')).toBe(true);
  });
});
