import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KeyhopError } from '../../runtime/errors.js';
import { hex } from '../../test/support/bytes.js';
import type { CryptoProvider, SigningKeyType } from '../provider.js';
import type { SecureChannelVault, SignatureVerifier, SigningVault } from '../vault.js';
import { nobleCrypto } from './noble-provider.js';
import { nodeCrypto } from './node-provider.js';
import { SoftwareVault, SoftwareVerifier } from './software-vault.js';

const FAST = { N: 2 ** 10, r: 8, p: 1 };
const utf8 = (s: string) => new TextEncoder().encode(s);
const TYPES: SigningKeyType[] = ['Ed25519', 'P256'];

async function failure(p: Promise<unknown>): Promise<KeyhopError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(KeyhopError);
    return e as KeyhopError;
  }
  throw new Error('expected a KeyhopError, the promise resolved');
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'keyhop-vault-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe.each([nodeCrypto, nobleCrypto])(
  'SoftwareVault over the $name provider',
  (provider: CryptoProvider) => {
    it('is a SigningVault, a SignatureVerifier and a SecureChannelVault', () => {
      const vault = SoftwareVault.inMemory({ provider });
      const asSigning: SigningVault = vault;
      const asVerifier: SignatureVerifier = vault;
      const asChannel: SecureChannelVault = vault;
      expect(asSigning.backend).toBe('software');
      expect(asVerifier).toBe(asChannel);
      expect(vault.provider).toBe(provider);
      expect(vault.location).toBe('memory');
    });

    it.each(TYPES)(
      '%s: generate, sign, verify; key id is the hex SHA-256 of the public key',
      async (type) => {
        const vault = SoftwareVault.inMemory({ provider });
        const id = await vault.generateSigningKey(type);
        const pub = await vault.publicKey(id);
        expect(pub.type).toBe(type);
        expect(pub.bytes.length).toBe(type === 'Ed25519' ? 32 : 65);
        expect(id).toBe(hex(nodeCrypto.hash('SHA256', pub.bytes)));
        // Ockam signs a 32-byte SHA-256 digest
        const data = vault.sha256(utf8('change history'));
        const sig = await vault.sign(id, data);
        expect(sig.length).toBe(64);
        expect(vault.verify(pub, data, sig)).toBe(true);
        expect(vault.verify(pub, vault.sha256(utf8('other')), sig)).toBe(false);
        // the other provider agrees: P256 is ECDSA over SHA-256(data), Ed25519 over data itself
        const other = provider === nodeCrypto ? nobleCrypto : nodeCrypto;
        expect(other.verify(type, pub.bytes, data, sig)).toBe(true);
        expect(new SoftwareVerifier(other).verify(pub, data, sig)).toBe(true);
        expect(await vault.listKeys()).toEqual([id]);
      },
    );

    it('keeps signing and X25519 keys apart', async () => {
      const vault = SoftwareVault.inMemory({ provider });
      const signing = await vault.generateSigningKey('Ed25519');
      const dhId = await vault.generateStaticX25519();
      expect(await vault.listKeys()).toEqual([signing]);
      expect(await vault.listStaticX25519()).toEqual([dhId]);
      expect((await failure(vault.sign(dhId, utf8('x')))).code).toBe('KEY_INVALID');
      expect((await failure(vault.publicKey(dhId))).code).toBe('KEY_INVALID');
      expect((await failure(vault.staticX25519(signing))).code).toBe('KEY_INVALID');
      expect((await failure(vault.generateSigningKey('X25519' as never))).code).toBe('UNSUPPORTED');
    });

    it('staticX25519: a DhKey whose private half is not reachable', async () => {
      const a = SoftwareVault.inMemory({ provider });
      const b = SoftwareVault.inMemory({ provider });
      const ka = await a.staticX25519(await a.generateStaticX25519());
      const kb = await b.staticX25519(await b.generateStaticX25519());
      expect(hex(ka.dh(kb.publicKey))).toBe(hex(kb.dh(ka.publicKey)));
      expect(ka.publicKey.length).toBe(32);
      expect(Reflect.ownKeys(ka).sort()).toEqual(['dh', 'publicKey']);
      expect(Object.isFrozen(ka)).toBe(true);
      expect(JSON.stringify(ka)).not.toMatch(/private/i);
      const secret = hex(await a.exportPrivateKey(hex(nodeCrypto.hash('SHA256', ka.publicKey))));
      for (const key of Reflect.ownKeys(ka)) {
        const value = (ka as unknown as Record<PropertyKey, unknown>)[key];
        if (value instanceof Uint8Array) expect(hex(value)).not.toBe(secret);
      }
      expect((await failure(Promise.resolve().then(() => ka.dh(new Uint8Array(32))))).code).toBe(
        'KEY_INVALID',
      );
    });

    it('exportPrivateKey returns a copy of the key; deleteKey removes the key everywhere', async () => {
      const vault = SoftwareVault.inMemory({ provider });
      const id = await vault.generateStaticX25519();
      const dh = await vault.staticX25519(id);
      const secret = await vault.exportPrivateKey(id);
      expect(hex(provider.dhPublicKey('25519', secret))).toBe(hex(dh.publicKey));
      secret.fill(0);
      expect(hex(provider.dhPublicKey('25519', await vault.exportPrivateKey(id)))).toBe(hex(dh.publicKey));
      await vault.deleteKey(id);
      const peer = provider.dhGenerate('25519').publicKey;
      expect((await failure(Promise.resolve().then(() => dh.dh(peer)))).code).toBe('KEY_NOT_FOUND');
      for (const p of [vault.staticX25519(id), vault.exportPrivateKey(id), vault.deleteKey(id)]) {
        expect((await failure(p)).code).toBe('KEY_NOT_FOUND');
      }
    });

    it('persists keys across reopening the directory', async () => {
      const first = await SoftwareVault.create({ dir, provider });
      expect(first.location).toBe(dir);
      const ed = await first.generateSigningKey('Ed25519');
      const p256 = await first.generateSigningKey('P256');
      const x = await first.generateStaticX25519();
      const pubs = { ed: await first.publicKey(ed), p256: await first.publicKey(p256) };
      const peer = provider.dhGenerate('25519');
      const shared = hex((await first.staticX25519(x)).dh(peer.publicKey));
      await first.close();

      const second = await SoftwareVault.open({ dir, provider });
      expect((await second.listKeys()).sort()).toEqual([ed, p256].sort());
      expect(await second.listStaticX25519()).toEqual([x]);
      expect(hex((await second.publicKey(ed)).bytes)).toBe(hex(pubs.ed.bytes));
      expect(hex((await second.publicKey(p256)).bytes)).toBe(hex(pubs.p256.bytes));
      const data = utf8('after restart');
      expect(second.verify(pubs.ed, data, await second.sign(ed, data))).toBe(true);
      expect(second.verify(pubs.p256, data, await second.sign(p256, data))).toBe(true);
      expect(hex((await second.staticX25519(x)).dh(peer.publicKey))).toBe(shared);
      await second.deleteKey(p256);
      const third = await SoftwareVault.open({ dir, provider });
      expect(await third.listKeys()).toEqual([ed]);
    });

    it('encrypts keys at rest; the right passphrase opens them, a wrong one is KEY_STORE_LOCKED', async () => {
      const vault = await SoftwareVault.create({ dir, passphrase: 'pass phrase', provider, scrypt: FAST });
      const ids = [
        await vault.generateSigningKey('Ed25519'),
        await vault.generateSigningKey('P256'),
        await vault.generateStaticX25519(),
      ];
      const secrets = await Promise.all(ids.map((id) => vault.exportPrivateKey(id)));
      for (const name of (await readdir(dir)).filter((n) => n !== 'keystore.json')) {
        const raw = await readFile(join(dir, name));
        for (const secret of secrets) {
          expect(raw.includes(Buffer.from(secret))).toBe(false);
          expect(raw.toString('utf8')).not.toContain(hex(secret));
        }
      }
      const reopened = await SoftwareVault.open({ dir, passphrase: 'pass phrase', provider });
      expect(hex(await reopened.exportPrivateKey(ids[1]!))).toBe(hex(secrets[1]!));
      expect((await failure(SoftwareVault.open({ dir, passphrase: 'Pass phrase', provider }))).code).toBe(
        'KEY_STORE_LOCKED',
      );
      const noPassphrase = await SoftwareVault.open({ dir, provider });
      expect((await noPassphrase.publicKey(ids[0]!)).type).toBe('Ed25519');
      expect((await failure(noPassphrase.sign(ids[0]!, utf8('x')))).code).toBe('KEY_STORE_LOCKED');
      expect((await failure(noPassphrase.staticX25519(ids[2]!))).code).toBe('KEY_STORE_LOCKED');
      // a public key is served even while a load of the private key is failing
      const [signed, pub] = await Promise.allSettled([
        noPassphrase.sign(ids[1]!, utf8('x')),
        noPassphrase.publicKey(ids[1]!),
      ]);
      expect(signed.status).toBe('rejected');
      expect(pub.status === 'fulfilled' && pub.value.type).toBe('P256');
    });

    it('files are 0600 in a 0700 directory', async () => {
      const keysDir = join(dir, 'keys');
      const vault = await SoftwareVault.create({ dir: keysDir, provider });
      await vault.generateSigningKey('Ed25519');
      await vault.generateStaticX25519();
      expect((await stat(keysDir)).mode & 0o777).toBe(0o700);
      for (const name of await readdir(keysDir)) {
        expect((await stat(join(keysDir, name))).mode & 0o777).toBe(0o600);
      }
    });

    describe('a damaged key file is KEY_STORE_CORRUPT, never silently a new key', () => {
      let id: string;
      let path: string;
      beforeEach(async () => {
        const vault = await SoftwareVault.create({ dir, provider });
        id = await vault.generateSigningKey('P256');
        path = join(dir, `p256-${id}.json`);
      });

      async function expectCorrupt(): Promise<void> {
        const vault = await SoftwareVault.open({ dir, provider });
        const e = await failure(vault.sign(id, utf8('x')));
        expect(e.code).toBe('KEY_STORE_CORRUPT');
        expect(e.message).toContain(path);
        expect((await failure(vault.publicKey(id))).code).toBe('KEY_STORE_CORRUPT');
        // the failure is not cached, and nothing was created in the key's place
        expect((await failure(vault.sign(id, utf8('x')))).code).toBe('KEY_STORE_CORRUPT');
        expect(await vault.listKeys()).toEqual([id]);
        expect((await readdir(dir)).sort()).toEqual(['keystore.json', `p256-${id}.json`]);
      }

      it('truncated', async () => {
        await truncate(path, 100);
        await expectCorrupt();
      });

      it('a flipped byte', async () => {
        const bytes = await readFile(path);
        bytes[bytes.indexOf('"key": "') + 20]! ^= 0x04;
        await writeFile(path, bytes);
        await expectCorrupt();
      });

      it('garbage JSON', async () => {
        await writeFile(path, '{"format": "keyhop-key", "version": 1, ');
        await expectCorrupt();
      });

      it('empty', async () => {
        await writeFile(path, '');
        await expectCorrupt();
      });
    });

    it.each([false, true])('generates many keys concurrently (encrypted: %s)', async (encrypted) => {
      const vault = await SoftwareVault.create({
        dir,
        provider,
        ...(encrypted && { passphrase: 'pw', scrypt: FAST }),
      });
      const count = 60;
      const ids = await Promise.all(
        Array.from({ length: count }, (_, i) =>
          i % 3 === 2 ? vault.generateStaticX25519() : vault.generateSigningKey(TYPES[i % 3]!),
        ),
      );
      expect(new Set(ids).size).toBe(count);
      const names = (await readdir(dir)).filter((n) => n !== 'keystore.json');
      expect(names.length).toBe(count);
      expect(names.every((n) => /^(ed25519|p256|x25519)-[0-9a-f]{64}\.json$/.test(n))).toBe(true);
      const reopened = await SoftwareVault.open({ dir, provider, ...(encrypted && { passphrase: 'pw' }) });
      expect((await reopened.listKeys()).length).toBe(40);
      expect((await reopened.listStaticX25519()).length).toBe(20);
      const signing = await reopened.listKeys();
      const sigs = await Promise.all(signing.map((id) => reopened.sign(id, utf8('m'))));
      for (const [i, id] of signing.entries()) {
        expect(reopened.verify(await reopened.publicKey(id), utf8('m'), sigs[i]!)).toBe(true);
      }
    });
  },
);

describe('SoftwareVault.open', () => {
  it('without a dir is in memory; a passphrase without a dir is refused', async () => {
    expect((await SoftwareVault.open()).location).toBe('memory');
    expect((await SoftwareVault.open()).provider).toBe(nodeCrypto);
    expect((await failure(SoftwareVault.open({ passphrase: 'x' }))).code).toBe('CONFIG_INVALID');
  });

  it('close() zeroes the keys of an in-memory vault', async () => {
    const vault = SoftwareVault.inMemory();
    const id = await vault.generateStaticX25519();
    const dh = await vault.staticX25519(id);
    await vault.close();
    expect((await failure(vault.exportPrivateKey(id))).code).toBe('KEY_NOT_FOUND');
    expect((await failure(Promise.resolve().then(() => dh.dh(dh.publicKey)))).code).toBe('KEY_NOT_FOUND');
  });
});

describe('SoftwareVerifier', () => {
  it('verifies any key type and hashes with SHA-256', async () => {
    const verifier = new SoftwareVerifier();
    expect(hex(verifier.sha256(utf8('abc')))).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
    const vault = SoftwareVault.inMemory({ provider: nobleCrypto });
    for (const type of TYPES) {
      const id = await vault.generateSigningKey(type);
      const sig = await vault.sign(id, utf8('data'));
      expect(verifier.verify(await vault.publicKey(id), utf8('data'), sig)).toBe(true);
    }
    expect(() =>
      verifier.verify({ type: 'P256', bytes: new Uint8Array(64) }, utf8('data'), new Uint8Array(64)),
    ).toThrow(KeyhopError);
  });
});
