import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nobleCrypto } from '../../vaults/software/noble-provider.js';
import { nodeCrypto } from '../../vaults/software/node-provider.js';
import type { DhKey } from '../../vaults/vault.js';
import { decodeKey, encodeKey, x3dhInitiator, x3dhResponder } from './x3dh.js';

interface Pair {
  private: string;
  public: string;
}
interface Case {
  name: string;
  info: string;
  IK_A: Pair;
  EK_A: Pair;
  IK_B: Pair;
  SPK_B: Pair;
  OPK_B?: Pair;
  SK: string;
}

const vectors = JSON.parse(
  readFileSync(join(import.meta.dirname, '../../test/vectors/x3dh/x3dh.json'), 'utf8'),
) as { cases: Case[] };
const bytes = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe.each([nodeCrypto, nobleCrypto])('X3DH ($name provider)', (provider) => {
  const key = (p: Pair): DhKey => {
    const priv = bytes(p.private);
    const pub = decodeKey(bytes(p.public), 'vector key');
    expect(hex(provider.dhPublicKey('25519', priv))).toBe(hex(pub));
    return { publicKey: pub, dh: (peer) => provider.dh('25519', priv, peer) };
  };

  it.each(vectors.cases.map((c) => [c.name, c] as const))(
    'agrees with libsignal-protocol-typescript: %s',
    (_name, c) => {
      const [ikA, ekA, ikB, spkB] = [key(c.IK_A), key(c.EK_A), key(c.IK_B), key(c.SPK_B)];
      const opkB = c.OPK_B ? key(c.OPK_B) : undefined;
      const alice = x3dhInitiator({
        provider,
        ikA,
        ekA,
        ikB: ikB.publicKey,
        spkB: spkB.publicKey,
        ...(opkB ? { opkB: opkB.publicKey } : {}),
        info: c.info,
      });
      const bob = x3dhResponder({
        provider,
        ikB,
        spkB,
        ...(opkB ? { opkB } : {}),
        ikA: ikA.publicKey,
        ekA: ekA.publicKey,
        info: c.info,
      });
      expect(hex(alice.sk)).toBe(c.SK);
      expect(hex(bob.sk)).toBe(c.SK);
      expect(hex(alice.ad)).toBe(c.IK_A.public + c.IK_B.public);
      expect(hex(bob.ad)).toBe(hex(alice.ad));
    },
  );

  it('derives different keys for another info, and without the one-time prekey', () => {
    const c = vectors.cases[0]!;
    const [ikA, ekA, ikB, spkB] = [key(c.IK_A), key(c.EK_A), key(c.IK_B), key(c.SPK_B)];
    const base = { provider, ikA, ekA, ikB: ikB.publicKey, spkB: spkB.publicKey };
    const a = x3dhInitiator({ ...base, info: 'keyhop enrollment X3DH 1' }).sk;
    expect(hex(a)).not.toBe(c.SK);
    expect(hex(x3dhInitiator({ ...base, info: c.info }).sk)).not.toBe(c.SK); // 3-DH ≠ 4-DH
  });

  it('refuses keys of the wrong shape', () => {
    expect(() => encodeKey(new Uint8Array(31))).toThrow(/32 bytes/);
    expect(() => decodeKey(new Uint8Array(33), 'k')).toThrow(/not an encoded X25519 key/);
  });
});
