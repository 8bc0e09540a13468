/**
 * The TPM 2.0 vault end to end against a real software TPM: `swtpm socket --tpm2` started by the
 * rig (test/rig/swtpm.ts) with its own state directory and ports, driven through keyhop's ESAPI
 * addon (native/tpm2). swtpm serves one client connection at a time, so every test closes its
 * vault before the next one opens a context.
 */
import { randomBytes } from 'node:crypto';
import { p256 } from '@noble/curves/nist.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, isKeyhopError, KeyhopError } from '../../runtime/errors.js';
import { loadTpm2Addon } from '../../vaults/tpm/native-tpm.js';
import {
  memoryTpmRecords,
  type TpmKeyRecord,
  type TpmKeyRecords,
  TpmVault,
  type TpmVaultOptions,
  timeTpmOps,
} from '../../vaults/tpm/tpm-vault.js';
import { type Swtpm, startSwtpm, swtpmSkipReason } from '../rig/swtpm.js';
import { addonSources } from '../support/native-build.js';
import { verifyP256Both } from '../support/p256.js';

const skip = swtpmSkipReason();

describe('TPM addon build files', () => {
  it('binding.gyp and native/CMakeLists.txt build the same keyhop_tpm2 sources', () => {
    const { gyp, cmake } = addonSources('keyhop_tpm2', 'KEYHOP_TPM2_SOURCES');
    expect(gyp.length).toBeGreaterThan(0);
    expect(gyp.every((s) => s.startsWith('native/tpm2/'))).toBe(true);
    expect(cmake).toEqual(gyp);
  });
});

const message = new TextEncoder().encode('keyhop on a TPM');

const verifies = verifyP256Both;

describe.skipIf(skip !== undefined)('TPM vault against swtpm', () => {
  let tpm: Swtpm;
  const opened: TpmVault[] = [];
  const open = async (o: Partial<TpmVaultOptions> = {}) => {
    const v = await TpmVault.open({ tcti: tpm.tcti, ...o });
    opened.push(v);
    return v;
  };

  beforeAll(async () => {
    tpm = await startSwtpm();
  });
  afterEach(async () => {
    for (const v of opened.splice(0)) await v.close();
  });
  afterAll(async () => {
    await tpm?.stop();
  });

  it('generates a P-256 key and signs SHA-256(data): raw r ‖ s that noble and node:crypto verify', async () => {
    const vault = await open();
    expect(vault.backend).toBe('tpm');
    const keyId = await vault.generateSigningKey('P256');
    expect(keyId).toMatch(/^tpm-[0-9a-f]{16}$/);
    const pub = await vault.publicKey(keyId);
    expect(pub.type).toBe('P256');
    expect(pub.bytes).toHaveLength(65);
    expect(pub.bytes[0]).toBe(0x04);
    expect(p256.Point.fromBytes(pub.bytes)).toBeDefined();
    for (let i = 0; i < 5; i++) {
      const data = randomBytes(1 + i * 50);
      const sig = await vault.sign(keyId, data);
      expect(sig).toHaveLength(64);
      expect(verifies(pub.bytes, data, sig)).toEqual({ noble: true, node: true });
    }
    // stable public key
    expect(Buffer.from((await vault.publicKey(keyId)).bytes)).toEqual(Buffer.from(pub.bytes));
    expect(await vault.listKeys()).toEqual([keyId]);
    expect(await vault.keyKind(keyId)).toBe('sign');
  });

  it('refuses Ed25519 and mixing key kinds', async () => {
    const vault = await open();
    await expect(vault.generateSigningKey('Ed25519')).rejects.toMatchObject({ code: ErrorCodes.UNSUPPORTED });
    const ecdhKey = await vault.generateEcdhKey();
    const signKey = await vault.generateSigningKey('P256');
    await expect(vault.sign(ecdhKey, message)).rejects.toMatchObject({ code: ErrorCodes.KEY_INVALID });
    await expect(
      vault.ecdh(signKey, p256.getPublicKey(p256.utils.randomSecretKey(), false)),
    ).rejects.toMatchObject({
      code: ErrorCodes.KEY_INVALID,
    });
    await expect(vault.sign('tpm-0000000000000000', message)).rejects.toMatchObject({
      code: ErrorCodes.KEY_NOT_FOUND,
    });
  });

  it('ECDH (ZGen) equals the x-coordinate of noble getSharedSecret', async () => {
    const vault = await open();
    const keyId = await vault.generateEcdhKey();
    const pub = await vault.publicKey(keyId);
    for (let i = 0; i < 3; i++) {
      const peer = p256.utils.randomSecretKey();
      const peerPub = p256.getPublicKey(peer, false);
      const z = await vault.ecdh(keyId, peerPub);
      const expected = p256.getSharedSecret(peer, pub.bytes, true).subarray(1);
      expect(Buffer.from(z).toString('hex')).toBe(Buffer.from(expected).toString('hex'));
      // 64-byte X ‖ Y works too
      expect(Buffer.from(await vault.ecdh(keyId, peerPub.subarray(1)))).toEqual(Buffer.from(z));
    }
    // a point off the curve: the TPM refuses it, readably
    const bad = p256.getPublicKey(p256.utils.randomSecretKey(), false);
    bad[64] = (bad[64] ?? 0) ^ 1;
    const err = await vault.ecdh(keyId, bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyhopError);
    expect((err as KeyhopError).message).toMatch(/TPM_RC_/);
    await expect(vault.ecdh(keyId, new Uint8Array(33))).rejects.toMatchObject({
      code: ErrorCodes.KEY_INVALID,
    });
  });

  it('returns random bytes of any length', async () => {
    const vault = await open();
    for (const n of [0, 1, 32, 64, 65, 100]) {
      const r = await vault.random(n);
      expect(r).toHaveLength(n);
    }
    const a = await vault.random(32);
    const b = await vault.random(32);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
    await expect(vault.random(-1)).rejects.toMatchObject({ code: ErrorCodes.USAGE });
  });

  it('reloads keys from their records in a new vault (new ESAPI context)', async () => {
    const records = memoryTpmRecords();
    const first = await open({ records });
    const signKey = await first.generateSigningKey('P256');
    const ecdhKey = await first.generateEcdhKey();
    const pub = (await first.publicKey(signKey)).bytes;
    const ecdhPub = (await first.publicKey(ecdhKey)).bytes;
    await first.close();
    await expect(first.sign(signKey, message)).rejects.toMatchObject({
      code: ErrorCodes.HARDWARE_UNAVAILABLE,
    });

    const second = await open({ records });
    expect(await second.listKeys()).toEqual([ecdhKey, signKey].sort());
    const sig = await second.sign(signKey, message);
    expect(verifies(pub, message, sig)).toEqual({ noble: true, node: true });
    const peer = p256.utils.randomSecretKey();
    expect(Buffer.from(await second.ecdh(ecdhKey, p256.getPublicKey(peer, false)))).toEqual(
      Buffer.from(p256.getSharedSecret(peer, ecdhPub, true).subarray(1)),
    );
  });

  it('persists keys with EvictControl, and deleteKey evicts them', async () => {
    const records = memoryTpmRecords();
    const vault = await open({ records, persist: true });
    const a = await vault.generateSigningKey('P256');
    const b = await vault.generateEcdhKey();
    const recA = await vault.keyRecord(a);
    const recB = await vault.keyRecord(b);
    expect(recA.persistentHandle).toBe(0x81000100);
    expect(recB.persistentHandle).toBe(0x81000101);
    const pubA = (await vault.publicKey(a)).bytes;
    expect(verifies(pubA, message, await vault.sign(a, message)).noble).toBe(true);
    await vault.close();

    // A new context finds them by handle (the blobs are not needed: drop them from the records).
    const stripped: Record<string, TpmKeyRecord> = {};
    for (const [id, r] of Object.entries(await records.load())) stripped[id] = { ...r, privateBlob: '0000' };
    const again = await open({ records: memoryTpmRecords(stripped) });
    expect(verifies(pubA, message, await again.sign(a, message)).noble).toBe(true);
    await again.deleteKey(a);
    expect(await again.listKeys()).toEqual([b]);
    await again.close();

    const ctx = await loadTpm2Addon().open(tpm.tcti);
    try {
      expect(await ctx.persistentHandles(0x81000000, 0x1000)).toEqual([0x81000101]);
    } finally {
      await ctx.close();
    }
    const last = await open({ records });
    await last.deleteKey(b);
    await last.close();
    const ctx2 = await loadTpm2Addon().open(tpm.tcti);
    try {
      expect(await ctx2.persistentHandles(0x81000000, 0x1000)).toEqual([]);
    } finally {
      await ctx2.close();
    }
  });

  it('creates 10 keys in a row and signs with each: transients are flushed (no TPM_RC_OBJECT_MEMORY)', async () => {
    for (const cacheSize of [0, 1, 2]) {
      const vault = await open({ cacheSize });
      const keys: string[] = [];
      for (let i = 0; i < 10; i++) keys.push(await vault.generateSigningKey('P256'));
      for (let round = 0; round < 2; round++) {
        for (const k of keys) {
          const sig = await vault.sign(k, message);
          expect(verifies((await vault.publicKey(k)).bytes, message, sig).noble).toBe(true);
        }
      }
      await vault.close();
    }
  });

  it('serialises concurrent calls on one vault: Promise.all of 10 signs (and ECDH, random) all correct', async () => {
    const vault = await open();
    const keys = [await vault.generateSigningKey('P256'), await vault.generateSigningKey('P256')];
    const ecdhKey = await vault.generateEcdhKey();
    const ecdhPub = (await vault.publicKey(ecdhKey)).bytes;
    const peer = p256.utils.randomSecretKey();
    const data = Array.from({ length: 10 }, (_, i) => randomBytes(20 + i));
    const [sigs, z, rnd] = await Promise.all([
      Promise.all(data.map((d, i) => vault.sign(keys[i % 2]!, d))),
      vault.ecdh(ecdhKey, p256.getPublicKey(peer, false)),
      vault.random(100),
    ]);
    for (let i = 0; i < 10; i++) {
      const pub = (await vault.publicKey(keys[i % 2]!)).bytes;
      expect(verifies(pub, data[i]!, sigs[i]!)).toEqual({ noble: true, node: true });
    }
    expect(Buffer.from(z)).toEqual(Buffer.from(p256.getSharedSecret(peer, ecdhPub, true).subarray(1)));
    expect(rnd).toHaveLength(100);
  });

  it('keeps the event loop ticking while the TPM works', async () => {
    const vault = await open();
    const keyId = await vault.generateSigningKey('P256');
    // One tick per turn of the event loop, whatever the machine's speed. A TPM call that blocked
    // the loop (or answered without leaving it) would let none through; one on a worker thread
    // lets at least one through per round, since its answer only comes in a later turn.
    let ticks = 0;
    let ticker = setImmediate(function tick() {
      ticks++;
      ticker = setImmediate(tick);
    });
    const rounds = 20;
    try {
      for (let i = 0; i < rounds; i++) {
        const before = ticks;
        await Promise.all([vault.sign(keyId, message), vault.random(64), vault.sign(keyId, message)]);
        expect(ticks, `round ${i}`).toBeGreaterThan(before);
      }
    } finally {
      clearImmediate(ticker);
    }
  });

  it('encrypts parameters with a salted HMAC session on Create, Load, Sign, ECDH_ZGen and GetRandom', async () => {
    const vault = await open({ cacheSize: 0 });
    const s = await vault.generateSigningKey('P256');
    const e = await vault.generateEcdhKey();
    await vault.sign(s, message);
    await vault.ecdh(e, p256.getPublicKey(p256.utils.randomSecretKey(), false));
    await vault.random(8);
    const info = await vault.sessionInfo();
    expect(info).toMatchObject({ active: true, type: 'hmac-salted', symmetric: 'AES-128-CFB' });
    const DECRYPT = 0x20;
    const ENCRYPT = 0x40;
    const CONTINUE = 0x01;
    expect(info.commands).toEqual({
      Create: DECRYPT | ENCRYPT | CONTINUE,
      Load: DECRYPT | ENCRYPT | CONTINUE,
      Sign: DECRYPT | CONTINUE,
      ECDH_ZGen: DECRYPT | ENCRYPT | CONTINUE,
      GetRandom: ENCRYPT | CONTINUE,
    });
    await vault.close();
    const plain = await open({ paramEncryption: false });
    await plain.random(8);
    expect(await plain.sessionInfo()).toMatchObject({ active: false, commands: {} });
  });

  it('reports TPM errors readably: a corrupted key blob → KEY_INVALID naming TPM_RC_INTEGRITY', async () => {
    const records = memoryTpmRecords();
    const vault = await open({ records });
    const keyId = await vault.generateSigningKey('P256');
    await vault.close();
    const all = await records.load();
    const rec = all[keyId]!;
    const priv = Buffer.from(rec.privateBlob, 'hex');
    priv[priv.length - 5] = (priv[priv.length - 5] ?? 0) ^ 0xff;
    const broken = await open({
      records: memoryTpmRecords({ [keyId]: { ...rec, privateBlob: priv.toString('hex') } }),
    });
    const err = await broken.sign(keyId, message).catch((e: unknown) => e);
    expect(isKeyhopError(err, ErrorCodes.KEY_INVALID)).toBe(true);
    expect((err as Error).message).toMatch(/TPM Load failed with TPM_RC_INTEGRITY \(parameter 1\)/);
    // the vault stays usable
    expect(await broken.random(4)).toHaveLength(4);
  });

  it('times sign, ECDH and random for benchmarks', async () => {
    const vault = await open();
    const t = await timeTpmOps(vault, {
      iterations: 5,
      peerPublicKey: p256.getPublicKey(p256.utils.randomSecretKey(), false),
    });
    for (const op of [t.sign, t.ecdh, t.random]) {
      expect(op.iterations).toBe(5);
      expect(op.opsPerSec).toBeGreaterThan(0);
    }
  });
});

describe.skipIf(skip !== undefined)('TPM vault: connection and restart', () => {
  it('a TCTI that reaches no TPM → HARDWARE_UNAVAILABLE', async () => {
    for (const tcti of ['swtpm:host=127.0.0.1,port=1', 'device:/dev/keyhop-no-such-tpm']) {
      const err = await TpmVault.open({ tcti }).catch((e: unknown) => e);
      expect(isKeyhopError(err, ErrorCodes.HARDWARE_UNAVAILABLE)).toBe(true);
      expect((err as Error).message).toContain(tcti);
    }
    await expect(TpmVault.open({ tcti: '' })).rejects.toMatchObject({ code: ErrorCodes.CONFIG_INVALID });
  });

  it('keeps persisted keys (and blob-loadable keys) across a swtpm restart with the same state', async () => {
    const records: TpmKeyRecords = memoryTpmRecords();
    const first = await startSwtpm();
    let keyId: string;
    let blobKey: string;
    let pub: Uint8Array;
    try {
      const vault = await TpmVault.open({ tcti: first.tcti, records, persist: true });
      keyId = await vault.generateSigningKey('P256');
      pub = (await vault.publicKey(keyId)).bytes;
      await vault.close();
      const plain = await TpmVault.open({ tcti: first.tcti, records });
      blobKey = await plain.generateSigningKey('P256');
      await plain.close();
    } finally {
      await first.stop({ keepState: true });
    }
    const second = await startSwtpm({ stateDir: first.stateDir });
    try {
      expect(second.pid).not.toBe(first.pid);
      const vault = await TpmVault.open({ tcti: second.tcti, records });
      expect(verifies(pub, message, await vault.sign(keyId, message)).noble).toBe(true);
      const blobPub = (await vault.publicKey(blobKey)).bytes;
      expect(verifies(blobPub, message, await vault.sign(blobKey, message)).noble).toBe(true);
      await vault.deleteKey(keyId);
      await vault.close();
    } finally {
      await second.stop();
    }
  });
});
