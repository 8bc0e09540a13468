import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KeyhopError } from '../../runtime/errors.js';
import { hex } from '../../test/support/bytes.js';
import { propertyRuns } from '../../test/support/property-runs.js';
import {
  DEFAULT_SCRYPT,
  DirectoryKeyStore,
  type KeyStore,
  keyIdOf,
  MAX_KEY_FILE_SIZE,
  MemoryKeyStore,
  type StoredKey,
  type StoredKeyType,
} from './key-store.js';
import { nodeCrypto } from './node-provider.js';
import { parseStoreHeader } from './store-header.js';

/** Cheap scrypt for the tests that do not look at its cost. */
const FAST = { N: 2 ** 10, r: 8, p: 1 };

function makeKey(type: StoredKeyType): StoredKey {
  const { privateKey, publicKey } =
    type === 'X25519' ? nodeCrypto.dhGenerate('25519') : nodeCrypto.signingGenerate(type);
  return { id: keyIdOf(publicKey), type, publicKey, privateKey };
}

async function failure(p: Promise<unknown>): Promise<KeyhopError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(KeyhopError);
    return e as KeyhopError;
  }
  throw new Error('expected a KeyhopError, the promise resolved');
}

/** The parts of a key file the tests change. */
interface KeyFileJson {
  [field: string]: unknown;
  publicKey: string;
  privateKey: { [field: string]: unknown; key: string; scrypt: { N: number } };
}

/** Rewrites a key file as a deliberate tamperer would: valid JSON with a recomputed checksum. */
async function rewrite(path: string, change: (json: KeyFileJson) => void): Promise<void> {
  const json = JSON.parse(await readFile(path, 'utf8')) as KeyFileJson;
  change(json);
  delete json.checksum;
  json.checksum = createHash('sha256').update(JSON.stringify(json)).digest('hex');
  await writeFile(path, JSON.stringify(json));
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'keyhop-keystore-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('MemoryKeyStore', () => {
  it('stores copies, lists, deletes', async () => {
    const store: KeyStore = new MemoryKeyStore();
    const key = makeKey('Ed25519');
    await store.put(key);
    const got = await store.get(key.id);
    expect(hex(got.privateKey)).toBe(hex(key.privateKey));
    got.privateKey.fill(0);
    expect(hex((await store.get(key.id)).privateKey)).toBe(hex(key.privateKey));
    expect(await store.list()).toEqual([{ id: key.id, type: 'Ed25519' }]);
    await store.delete(key.id);
    expect((await failure(store.get(key.id))).code).toBe('KEY_NOT_FOUND');
    expect((await failure(store.delete(key.id))).code).toBe('KEY_NOT_FOUND');
  });

  it('refuses malformed keys', async () => {
    const key = makeKey('P256');
    const store = new MemoryKeyStore();
    expect((await failure(store.put({ ...key, privateKey: new Uint8Array(31) }))).code).toBe('KEY_INVALID');
    expect((await failure(store.put({ ...key, id: 'nope' }))).code).toBe('KEY_INVALID');
    expect((await failure(store.put({ ...key, type: 'RSA' as never }))).code).toBe('UNSUPPORTED');
  });
});

describe('DirectoryKeyStore', () => {
  it('creates the directory 0700 and writes one 0600 file per key, atomically', async () => {
    const keysDir = join(dir, 'nested', 'keys');
    const store = await DirectoryKeyStore.create(keysDir);
    expect((await stat(keysDir)).mode & 0o777).toBe(0o700);
    const keys = (['Ed25519', 'P256', 'X25519'] as const).map(makeKey);
    for (const key of keys) await store.put(key);
    const names = (await readdir(keysDir)).sort();
    expect(names).toEqual(
      [
        `ed25519-${keys[0]!.id}.json`,
        `p256-${keys[1]!.id}.json`,
        `x25519-${keys[2]!.id}.json`,
        'keystore.json',
      ].sort(),
    );
    for (const name of names) expect((await stat(join(keysDir, name))).mode & 0o777).toBe(0o600);
    expect(await store.list()).toEqual(keys.map((k) => ({ id: k.id, type: k.type })).sort(byId));
    for (const key of keys) {
      const got = await store.get(key.id);
      expect(got.type).toBe(key.type);
      expect(hex(got.publicKey)).toBe(hex(key.publicKey));
      expect(hex(got.privateKey)).toBe(hex(key.privateKey));
      expect(hex((await store.info(key.id)).publicKey)).toBe(hex(key.publicKey));
    }
  });

  it('writes the documented clear format', async () => {
    const store = await DirectoryKeyStore.create(dir);
    const key = makeKey('Ed25519');
    await store.put(key);
    const json = JSON.parse(await readFile(join(dir, `ed25519-${key.id}.json`), 'utf8'));
    expect(Object.keys(json)).toEqual([
      'format',
      'version',
      'id',
      'type',
      'publicKey',
      'privateKey',
      'checksum',
    ]);
    expect(json).toMatchObject({
      format: 'keyhop-key',
      version: 1,
      id: key.id,
      type: 'Ed25519',
      publicKey: hex(key.publicKey),
      privateKey: { encryption: 'none', key: hex(key.privateKey) },
    });
    const { checksum, ...body } = json;
    expect(checksum).toBe(createHash('sha256').update(JSON.stringify(body)).digest('hex'));
  });

  it('encrypts at rest with scrypt (default N=2^15, r=8, p=1, fresh salt per file) and AES-256-GCM', async () => {
    const store = await DirectoryKeyStore.create(dir, { passphrase: 'correct horse' });
    const keys = [makeKey('Ed25519'), makeKey('Ed25519')];
    for (const key of keys) await store.put(key);
    const salts = new Set<string>();
    for (const key of keys) {
      const raw = await readFile(join(dir, `ed25519-${key.id}.json`));
      const text = raw.toString('utf8');
      expect(text).not.toContain(hex(key.privateKey));
      expect(raw.includes(Buffer.from(key.privateKey))).toBe(false);
      expect(text).not.toContain('correct horse');
      const pk = JSON.parse(text).privateKey;
      expect(Object.keys(pk)).toEqual(['encryption', 'scrypt', 'passphraseCheck', 'nonce', 'ciphertext']);
      expect(pk.encryption).toBe('scrypt-aes-256-gcm');
      expect(pk.scrypt).toMatchObject({ N: DEFAULT_SCRYPT.N, r: 8, p: 1 });
      expect(DEFAULT_SCRYPT.N).toBe(32768);
      expect(pk.scrypt.salt).toMatch(/^[0-9a-f]{32}$/);
      expect(pk.ciphertext).toMatch(/^[0-9a-f]{96}$/); // 32-byte key + 16-byte tag
      salts.add(pk.scrypt.salt);
    }
    expect(salts.size).toBe(2);
    const reopened = await DirectoryKeyStore.open(dir, { passphrase: 'correct horse' });
    for (const key of keys) expect(hex((await reopened.get(key.id)).privateKey)).toBe(hex(key.privateKey));
  });

  it('NFC-normalizes string passphrases', async () => {
    const key = makeKey('P256');
    await (await DirectoryKeyStore.create(dir, { passphrase: 'caf\u00e9', scrypt: FAST })).put(key);
    const store = await DirectoryKeyStore.open(dir, { passphrase: 'cafe\u0301' });
    expect(hex((await store.get(key.id)).privateKey)).toBe(hex(key.privateKey));
  });

  describe('passphrase errors are KEY_STORE_LOCKED', () => {
    let key: StoredKey;
    beforeEach(async () => {
      key = makeKey('X25519');
      await (await DirectoryKeyStore.create(dir, { passphrase: 'right', scrypt: FAST })).put(key);
    });

    it('a wrong passphrase fails at open', async () => {
      const e = await failure(DirectoryKeyStore.open(dir, { passphrase: 'hunter2' }));
      expect(e.code).toBe('KEY_STORE_LOCKED');
      expect(e.message).not.toContain('hunter2');
    });

    it('no passphrase: the public part is readable, the private key is locked', async () => {
      const store = await DirectoryKeyStore.open(dir);
      expect(hex((await store.info(key.id)).publicKey)).toBe(hex(key.publicKey));
      expect((await failure(store.get(key.id))).code).toBe('KEY_STORE_LOCKED');
    });

    it('a file encrypted under another passphrase fails at use', async () => {
      const store = await DirectoryKeyStore.open(dir, { passphrase: 'right' });
      const other = makeKey('X25519');
      const otherDir = join(dir, 'other');
      await (await DirectoryKeyStore.create(otherDir, { passphrase: 'other', scrypt: FAST })).put(other);
      const name = `x25519-${other.id}.json`;
      await writeFile(join(dir, name), await readFile(join(otherDir, name)));
      expect((await failure(store.get(other.id))).code).toBe('KEY_STORE_LOCKED');
      expect(hex((await store.get(key.id)).privateKey)).toBe(hex(key.privateKey));
    });

    it('close() forgets the passphrase', async () => {
      const store = await DirectoryKeyStore.open(dir, { passphrase: 'right' });
      store.close();
      expect((await failure(store.get(key.id))).code).toBe('KEY_STORE_LOCKED');
    });
  });

  describe('damaged files are KEY_STORE_CORRUPT, naming the file', () => {
    async function expectCorrupt(store: DirectoryKeyStore, key: StoredKey, path: string) {
      const e = await failure(store.get(key.id));
      expect(e.code).toBe('KEY_STORE_CORRUPT');
      expect(e.message).toContain(path);
      expect(e.message).not.toContain(hex(key.privateKey));
    }

    it('truncated at any length', async () => {
      const store = await DirectoryKeyStore.create(dir);
      const key = makeKey('P256');
      await store.put(key);
      const path = join(dir, `p256-${key.id}.json`);
      const size = (await stat(path)).size;
      for (const length of [0, 1, 10, Math.floor(size / 2), size - 3]) {
        await store.put(key);
        await truncate(path, length);
        await expectCorrupt(store, key, path);
      }
    });

    it('one flipped bit anywhere', async () => {
      const store = await DirectoryKeyStore.create(dir);
      const key = makeKey('Ed25519');
      await store.put(key);
      const path = join(dir, `ed25519-${key.id}.json`);
      const original = await readFile(path);
      for (let i = 0; i < original.length; i++) {
        const damaged = Buffer.from(original);
        damaged[i]! ^= 0x01;
        await writeFile(path, damaged);
        await expectCorrupt(store, key, path);
      }
    });

    it('one flipped bit in each field of an encrypted file', async () => {
      const store = await DirectoryKeyStore.create(dir, { passphrase: 'pw', scrypt: FAST });
      const key = makeKey('Ed25519');
      await store.put(key);
      const path = join(dir, `ed25519-${key.id}.json`);
      const original = await readFile(path, 'utf8');
      const json = JSON.parse(original);
      const pk = json.privateKey;
      for (const value of [pk.scrypt.salt, pk.passphraseCheck, pk.nonce, pk.ciphertext, json.checksum]) {
        const at = original.indexOf(value) + 5;
        const damaged = Buffer.from(original);
        damaged[at]! ^= 0x01;
        await writeFile(path, damaged);
        await expectCorrupt(store, key, path);
      }
      await writeFile(path, original.replace('"N": 1024', '"N": 2048'));
      await expectCorrupt(store, key, path);
    });

    it('garbage, wrong shapes, extra fields, oversized files', async () => {
      const store = await DirectoryKeyStore.create(dir);
      const key = makeKey('Ed25519');
      await store.put(key);
      const path = join(dir, `ed25519-${key.id}.json`);
      const good = JSON.parse(await readFile(path, 'utf8'));
      const bad = [
        '{not json',
        'null',
        '[]',
        '{}',
        '"keyhop-key"',
        '\u00ff\u00fe',
        JSON.stringify({ ...good, extra: 1 }),
        JSON.stringify({
          ...good,
          privateKey: { ...good.privateKey, key: good.privateKey.key.toUpperCase() },
        }),
        JSON.stringify({ ...good, version: 0 }),
        JSON.stringify({ ...good, version: '1' }),
        `${JSON.stringify(good)}${' '.repeat(MAX_KEY_FILE_SIZE)}`,
      ];
      for (const text of bad) {
        await writeFile(path, text);
        await expectCorrupt(store, key, path);
      }
      await writeFile(path, Buffer.from([0xc3, 0x28]));
      await expectCorrupt(store, key, path);
    });

    it('deliberate tampering with a recomputed checksum is still caught', async () => {
      const store = await DirectoryKeyStore.create(dir, { passphrase: 'pw', scrypt: FAST });
      const [a, b] = [makeKey('P256'), makeKey('P256')];
      await store.put(a);
      await store.put(b);
      const pathA = join(dir, `p256-${a.id}.json`);
      const pathB = join(dir, `p256-${b.id}.json`);
      const fileB = JSON.parse(await readFile(pathB, 'utf8')) as KeyFileJson;
      // b's encrypted key moved into a's file: the AAD binds it to b's id, so it does not open
      await rewrite(pathA, (j) => {
        j.privateKey = fileB.privateKey;
      });
      await expectCorrupt(store, a, pathA);
      // a file under another key's name
      await writeFile(pathA, JSON.stringify(fileB));
      await expectCorrupt(store, a, pathA);
      // a public key that does not hash to the id
      await store.put(a);
      await rewrite(pathA, (j) => {
        j.publicKey = fileB.publicKey;
      });
      await expectCorrupt(store, a, pathA);
      // scrypt parameters asking for too much memory are refused before any derivation
      await store.put(a);
      await rewrite(pathA, (j) => {
        j.privateKey.scrypt.N = 2 ** 30;
      });
      await expectCorrupt(store, a, pathA);
    });

    it('a clear private key that does not match its public key', async () => {
      const store = await DirectoryKeyStore.create(dir);
      const key = makeKey('X25519');
      await store.put(key);
      const path = join(dir, `x25519-${key.id}.json`);
      await rewrite(path, (j) => {
        j.privateKey.key = hex(nodeCrypto.randomBytes(32));
      });
      await expectCorrupt(store, key, path);
    });

    it('a newer format version is UNSUPPORTED', async () => {
      const store = await DirectoryKeyStore.create(dir);
      const key = makeKey('Ed25519');
      await store.put(key);
      const path = join(dir, `ed25519-${key.id}.json`);
      await rewrite(path, (j) => {
        j.version = 2;
      });
      expect((await failure(store.get(key.id))).code).toBe('UNSUPPORTED');
    });

    it('a wrong passphrase check at open skips damaged files but still finds the wrong passphrase', async () => {
      const store = await DirectoryKeyStore.create(dir, { passphrase: 'pw', scrypt: FAST });
      const [a, b] = [makeKey('Ed25519'), makeKey('Ed25519')];
      await store.put(a);
      await store.put(b);
      const first = [a, b].sort(byId)[0]!;
      await truncate(join(dir, `ed25519-${first.id}.json`), 20);
      expect((await failure(DirectoryKeyStore.open(dir, { passphrase: 'nope' }))).code).toBe(
        'KEY_STORE_LOCKED',
      );
      const reopened = await DirectoryKeyStore.open(dir, { passphrase: 'pw' });
      expect((await failure(reopened.get(first.id))).code).toBe('KEY_STORE_CORRUPT');
    });
  });

  it('ignores temporary and foreign files; unknown and malformed ids are KEY_NOT_FOUND', async () => {
    const store = await DirectoryKeyStore.create(dir);
    const key = makeKey('Ed25519');
    await store.put(key);
    await writeFile(join(dir, `.ed25519-${key.id}.json.0011223344556677.tmp`), 'partial');
    await writeFile(join(dir, 'README'), 'x');
    expect(await store.list()).toEqual([{ id: key.id, type: 'Ed25519' }]);
    for (const id of ['0'.repeat(64), '../../etc/passwd', key.id.toUpperCase(), '']) {
      expect((await failure(store.get(id))).code).toBe('KEY_NOT_FOUND');
      expect((await failure(store.info(id))).code).toBe('KEY_NOT_FOUND');
      expect((await failure(store.delete(id))).code).toBe('KEY_NOT_FOUND');
    }
    await store.delete(key.id);
    expect(await store.list()).toEqual([]);
    expect((await failure(store.get(key.id))).code).toBe('KEY_NOT_FOUND');
  });

  it('leaves no temporary files behind, even with many concurrent writes', async () => {
    const store = await DirectoryKeyStore.create(dir, { passphrase: 'pw', scrypt: FAST });
    const keys = Array.from({ length: 40 }, (_, i) =>
      makeKey((['Ed25519', 'P256', 'X25519'] as const)[i % 3]!),
    );
    await Promise.all(keys.map((k) => store.put(k)));
    const names = await readdir(dir);
    expect(names.length).toBe(41); // and keystore.json
    expect(names.some((n) => n.endsWith('.tmp'))).toBe(false);
    const got = await Promise.all(keys.map((k) => store.get(k.id)));
    for (const [i, g] of got.entries()) expect(hex(g.privateKey)).toBe(hex(keys[i]!.privateKey));
  });

  it('refuses unusable configurations with CONFIG_INVALID (or KEY_STORE_IO when the file system refuses)', async () => {
    const file = join(dir, 'a-file');
    await writeFile(file, 'x');
    expect((await failure(DirectoryKeyStore.open(file))).code).toBe('KEY_STORE_IO');
    expect((await failure(DirectoryKeyStore.open(join(file, 'sub')))).code).toBe('KEY_STORE_IO');
    expect((await failure(DirectoryKeyStore.open(dir, { passphrase: '' }))).code).toBe('CONFIG_INVALID');
    for (const scrypt of [{ N: 1000 }, { N: 2 ** 24 }, { r: 0 }, { p: 17 }, { N: 1.5 }]) {
      expect((await failure(DirectoryKeyStore.open(dir, { scrypt }))).code).toBe('CONFIG_INVALID');
    }
  });
});

describe('DirectoryKeyStore: what it was created as, it stays (never a silent downgrade)', () => {
  it('an encrypted store opened without its passphrase writes nothing and says how to unlock it', async () => {
    const key = makeKey('Ed25519');
    await (await DirectoryKeyStore.create(dir, { passphrase: 'pw', scrypt: FAST })).put(key);
    const store = await DirectoryKeyStore.open(dir, { lockedHint: 'set KEYHOP_VAULT_PASSPHRASE' });
    expect(store.encrypted).toBe(true);
    expect(store.locked).toBe(true);
    const before = (await readdir(dir)).sort();
    const e = await failure(store.put(makeKey('P256')));
    expect(e.code).toBe('KEY_STORE_LOCKED');
    expect(e.message).toMatch(
      /encrypted at rest and was opened without its passphrase: set KEYHOP_VAULT_PASSPHRASE$/,
    );
    expect((await readdir(dir)).sort()).toEqual(before);
    expect((await failure(store.get(key.id))).code).toBe('KEY_STORE_LOCKED');
    expect(hex((await store.info(key.id)).publicKey)).toBe(hex(key.publicKey));
  });

  it('checks the passphrase of an encrypted store before it holds any key', async () => {
    await DirectoryKeyStore.create(dir, { passphrase: 'pw', scrypt: FAST });
    expect((await failure(DirectoryKeyStore.open(dir, { passphrase: 'other' }))).code).toBe(
      'KEY_STORE_LOCKED',
    );
    const store = await DirectoryKeyStore.open(dir, { passphrase: 'pw' });
    const key = makeKey('X25519');
    await store.put(key);
    const pk = JSON.parse(await readFile(join(dir, `x25519-${key.id}.json`), 'utf8')).privateKey;
    expect(pk.encryption).toBe('scrypt-aes-256-gcm');
  });

  it('a store created in clear refuses a passphrase instead of mixing clear and encrypted keys', async () => {
    await (await DirectoryKeyStore.create(dir)).put(makeKey('Ed25519'));
    const e = await failure(DirectoryKeyStore.open(dir, { passphrase: 'pw' }));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toMatch(/created without a passphrase/);
  });

  it('creating is explicit: a missing or empty directory is not a store, an existing store is not replaced', async () => {
    expect((await failure(DirectoryKeyStore.open(join(dir, 'nope')))).code).toBe('VAULT_NOT_FOUND');
    expect((await failure(DirectoryKeyStore.open(dir))).code).toBe('VAULT_NOT_FOUND');
    await DirectoryKeyStore.create(dir);
    expect((await failure(DirectoryKeyStore.create(dir))).code).toBe('VAULT_EXISTS');
    expect((await failure(DirectoryKeyStore.create(dir, { passphrase: 'pw', scrypt: FAST }))).code).toBe(
      'VAULT_EXISTS',
    );
    const created = await Promise.allSettled(
      [1, 2, 3].map(() => DirectoryKeyStore.create(join(dir, 'race'), { scrypt: FAST })),
    );
    expect(created.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
  });

  it('recognises stores written before the header from their key files, and adds the header', async () => {
    const clear = makeKey('Ed25519');
    const clearDir = join(dir, 'clear');
    await (await DirectoryKeyStore.create(clearDir)).put(clear);
    await rm(join(clearDir, 'keystore.json'));
    expect((await failure(DirectoryKeyStore.open(clearDir, { passphrase: 'pw' }))).code).toBe(
      'CONFIG_INVALID',
    );
    const reopened = await DirectoryKeyStore.open(clearDir);
    expect(reopened.encrypted).toBe(false);
    expect(JSON.parse(await readFile(join(clearDir, 'keystore.json'), 'utf8')).encryption).toBe('none');

    const secret = makeKey('P256');
    const encDir = join(dir, 'enc');
    await (await DirectoryKeyStore.create(encDir, { passphrase: 'pw', scrypt: FAST })).put(secret);
    await rm(join(encDir, 'keystore.json'));
    const locked = await DirectoryKeyStore.open(encDir);
    expect(locked.locked).toBe(true);
    expect((await failure(locked.put(makeKey('P256')))).code).toBe('KEY_STORE_LOCKED');
    expect((await failure(DirectoryKeyStore.open(encDir, { passphrase: 'wrong' }))).code).toBe(
      'KEY_STORE_LOCKED',
    );
    const unlocked = await DirectoryKeyStore.open(encDir, { passphrase: 'pw', scrypt: FAST });
    expect(hex((await unlocked.get(secret.id)).privateKey)).toBe(hex(secret.privateKey));
    expect(JSON.parse(await readFile(join(encDir, 'keystore.json'), 'utf8')).encryption).toBe(
      'scrypt-aes-256-gcm',
    );
  });

  it('encrypt() turns a clear store into an encrypted one, and finishes an interrupted run', async () => {
    const store = await DirectoryKeyStore.create(dir, { scrypt: FAST });
    const keys = [makeKey('Ed25519'), makeKey('P256'), makeKey('X25519')];
    for (const k of keys) await store.put(k);
    expect(await store.encrypt('pw')).toBe(3);
    for (const k of keys) {
      const text = await readFile(join(dir, `${k.type.toLowerCase()}-${k.id}.json`), 'utf8');
      expect(text).not.toContain(hex(k.privateKey));
    }
    const locked = await DirectoryKeyStore.open(dir);
    expect(locked.locked).toBe(true);
    const unlocked = await DirectoryKeyStore.open(dir, { passphrase: 'pw' });
    for (const k of keys) expect(hex((await unlocked.get(k.id)).privateKey)).toBe(hex(k.privateKey));
    // A clear file left by an interrupted run is encrypted by the next one (with the same passphrase).
    const straggler = makeKey('Ed25519');
    await (await DirectoryKeyStore.create(join(dir, 'x'))).put(straggler);
    const name = `ed25519-${straggler.id}.json`;
    await writeFile(join(dir, name), await readFile(join(dir, 'x', name)));
    expect((await failure(unlocked.encrypt('not it'))).code).toBe('KEY_STORE_LOCKED');
    expect(await unlocked.encrypt('pw')).toBe(1);
    expect(await readFile(join(dir, name), 'utf8')).not.toContain(hex(straggler.privateKey));
  });

  it('reports a damaged or newer header, and never throws anything but KeyhopErrors on any header text', async () => {
    await DirectoryKeyStore.create(dir, { passphrase: 'pw', scrypt: FAST });
    const path = join(dir, 'keystore.json');
    const good = await readFile(path, 'utf8');
    await writeFile(path, good.replace('"version": 1', '"version": 2'));
    expect((await failure(DirectoryKeyStore.open(dir))).code).toBe('UNSUPPORTED');
    await writeFile(path, good.replace('"N": 1024', '"N": 2048'));
    expect((await failure(DirectoryKeyStore.open(dir))).code).toBe('KEY_STORE_CORRUPT');
    await writeFile(path, good.replace('scrypt-aes-256-gcm', 'none'));
    expect((await failure(DirectoryKeyStore.open(dir))).code).toBe('KEY_STORE_CORRUPT');
    await writeFile(path, 'x'.repeat(5000));
    expect((await failure(DirectoryKeyStore.open(dir))).code).toBe('KEY_STORE_CORRUPT');
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json(), fc.constant(good)), (text) => {
        try {
          parseStoreHeader(path, text);
        } catch (e) {
          if (!(e instanceof KeyhopError)) throw e;
        }
      }),
      { numRuns: propertyRuns(300) },
    );
  });
});

const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
