import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isKeyhopError } from '../errors.js';
import { openVault, readDescriptor, withDescriptorLock, writeDescriptor } from './vault-registry.js';

const dirs: string[] = [];
function home(): string {
  const d = mkdtempSync(join(tmpdir(), 'kh-vaults-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const KEY = { slot: 0, publicKey: 'ab'.repeat(64) };

describe('vault descriptors', () => {
  it('round-trips an ATECC608 descriptor and opens a software vault where there is none', async () => {
    const h = home();
    await writeDescriptor(h, 'chip', {
      version: 1,
      backend: 'atecc608',
      link: { type: 'i2c', bus: 1, address: 0x60 },
      keys: { slot0: KEY },
    });
    expect(await readDescriptor(h, 'chip')).toEqual({
      version: 1,
      backend: 'atecc608',
      link: { type: 'i2c', bus: 1, address: 0x60 },
      keys: { slot0: KEY },
    });
    expect(await readDescriptor(h, 'nothing')).toBeUndefined();
    const soft = await openVault(h, 'default');
    expect(soft.backend).toBe('software');
  });

  it.each([
    ['not JSON', '{'],
    ['no version', '{"backend":"atecc608"}'],
    ['unknown backend', '{"version":1,"backend":"floppy"}'],
    ['bad link', '{"version":1,"backend":"atecc608","link":{"type":"i2c","address":300},"keys":{}}'],
    [
      'bad key',
      '{"version":1,"backend":"atecc608","link":{"type":"i2c"},"keys":{"slot1":{"slot":2,"publicKey":"00"}}}',
    ],
    ['bad slots', '{"version":1,"backend":"atecc608","link":{"type":"i2c"},"keys":{},"slots":[16]}'],
    ['a TPM without TCTI', '{"version":1,"backend":"tpm","keys":{}}'],
    [
      'a relative PKCS#11 module',
      '{"version":1,"backend":"pkcs11","module":"lib.so","token":"t","pin":{"env":"P"}}',
    ],
    [
      'a PKCS#11 PIN in the file',
      '{"version":1,"backend":"pkcs11","module":"/l.so","token":"t","pin":"1234"}',
    ],
    [
      'a PKCS#11 token label too long',
      `{"version":1,"backend":"pkcs11","module":"/l.so","token":"${'x'.repeat(33)}","pin":{"env":"P"}}`,
    ],
  ])('refuses a descriptor with %s', async (_what, text) => {
    const h = home();
    mkdirSync(join(h, 'vaults', 'v'), { recursive: true });
    writeFileSync(join(h, 'vaults', 'v', 'vault.json'), text);
    const err = await readDescriptor(h, 'v').catch((e: unknown) => e);
    expect(isKeyhopError(err, 'KEY_STORE_CORRUPT') || isKeyhopError(err, 'CONFIG_INVALID')).toBe(true);
  });
});

describe('hardware vaults open lazily', () => {
  it('round-trips TPM and PKCS#11 descriptors', async () => {
    const h = home();
    const tpm = { version: 1, backend: 'tpm', tcti: 'swtpm:host=127.0.0.1,port=1', keys: {} } as const;
    const hsm = {
      version: 1,
      backend: 'pkcs11',
      module: '/usr/lib/softhsm/libsofthsm2.so',
      token: 'keyhop',
      pin: { env: 'KEYHOP_PKCS11_PIN' },
    } as const;
    await writeDescriptor(h, 'tpm', tpm);
    await writeDescriptor(h, 'hsm', hsm);
    expect(await readDescriptor(h, 'tpm')).toEqual(tpm);
    expect(await readDescriptor(h, 'hsm')).toEqual(hsm);
  });

  it('opens a vault whose device is unreachable, and fails only when a key is used (then again, not cached)', async () => {
    const h = home();
    await writeDescriptor(h, 'tpm', {
      version: 1,
      backend: 'tpm',
      tcti: 'swtpm:host=127.0.0.1,port=1',
      keys: {},
    });
    const opened = await openVault(h, 'tpm');
    expect(opened.backend).toBe('tpm');
    expect(opened.vault.backend).toBe('tpm');
    for (let i = 0; i < 2; i++) {
      const err = await opened.vault.generateSigningKey('P256').catch((e: unknown) => e);
      expect(isKeyhopError(err, 'HARDWARE_UNAVAILABLE')).toBe(true);
    }
    await opened.close();
  });
});

describe('withDescriptorLock', () => {
  it('never lets two holders overlap', async () => {
    const h = home();
    mkdirSync(join(h, 'vaults', 'v'), { recursive: true });
    let inside = 0;
    let most = 0;
    await Promise.all(
      Array.from({ length: 6 }, () =>
        withDescriptorLock(h, 'v', async () => {
          inside++;
          most = Math.max(most, inside);
          await new Promise((r) => setTimeout(r, 10));
          inside--;
        }),
      ),
    );
    expect(most).toBe(1);
  });

  it('takes over a lock left by a process that is gone', async () => {
    const h = home();
    const lock = join(h, 'vaults', 'v', 'vault.json.lock');
    mkdirSync(lock, { recursive: true });
    writeFileSync(join(lock, 'pid'), '2147483646');
    expect(await withDescriptorLock(h, 'v', async () => 'got it')).toBe('got it');
  });

  it('takes over a lock without a pid once it is old (its maker died between mkdir and writing its pid)', async () => {
    const h = home();
    const lock = join(h, 'vaults', 'v', 'vault.json.lock');
    mkdirSync(lock, { recursive: true });
    const old = new Date(Date.now() - 60_000);
    utimesSync(lock, old, old);
    expect(await withDescriptorLock(h, 'v', async () => 'got it')).toBe('got it');
  });
});
