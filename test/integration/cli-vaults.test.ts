/**
 * Vaults through the real CLI, as a user meets them: a key store never gets weaker than it was
 * created (docs/security.md, "No silent fallback"), and vaults are only ever created on purpose.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { errorLine, keyhop } from '../support/cli.js';

let home: string;
beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'kh-vaults-'));
});
afterEach(() => {
  rmSync(home, { recursive: true, force: true });
});

const PASS = { KEYHOP_VAULT_PASSPHRASE: 'correct horse battery staple' };

/** Every private key file of software vault `name`, parsed. */
function keyFiles(name: string): { privateKey: { encryption: string } }[] {
  const dir = join(home, 'vaults', name);
  return readdirSync(dir)
    .filter((f) => /^(ed25519|p256|x25519)-[0-9a-f]{64}\.json$/.test(f))
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')));
}

describe('software vaults never get weaker than they were created', () => {
  it('an encrypted vault used without its passphrase refuses, in one line, and writes nothing in clear', async () => {
    const created = await keyhop(home, ['vault', 'create', 'secure'], PASS);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/vault secure created \(software, private keys encrypted at rest/);
    expect((await keyhop(home, ['identity', 'create', 'first', '--vault', 'secure'], PASS)).code).toBe(0);

    const r = await keyhop(home, ['identity', 'create', 'second', '--vault', 'secure']);
    expect(r.code).toBe(1);
    expect(errorLine(r)).toEqual({
      code: 'KEY_STORE_LOCKED',
      message: expect.stringMatching(
        /encrypted at rest .*set KEYHOP_VAULT_PASSPHRASE to the passphrase of vault "secure"/,
      ),
    });
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(join(home, 'identities', 'second.json'))).toBe(false);
    const files = keyFiles('secure');
    expect(files).toHaveLength(1);
    expect(files.every((f) => f.privateKey.encryption === 'scrypt-aes-256-gcm')).toBe(true);

    // Public parts still work without the passphrase; a node cannot start without it.
    expect((await keyhop(home, ['identity', 'show', 'first'])).code).toBe(0);
    const wrong = await keyhop(home, ['identity', 'create', 'third', '--vault', 'secure'], {
      KEYHOP_VAULT_PASSPHRASE: 'wrong',
    });
    expect(errorLine(wrong)).toEqual({
      code: 'KEY_STORE_LOCKED',
      message: 'wrong passphrase for vault "secure" (KEYHOP_VAULT_PASSPHRASE)',
    });
  });

  it('a vault made in clear refuses a passphrase until it is encrypted, and then needs it', async () => {
    expect((await keyhop(home, ['vault', 'create', 'plain'])).stdout).toMatch(
      /private keys in clear on disk/,
    );
    expect((await keyhop(home, ['identity', 'create', 'a', '--vault', 'plain'])).code).toBe(0);
    const mixed = await keyhop(home, ['identity', 'create', 'b', '--vault', 'plain'], PASS);
    expect(errorLine(mixed)).toEqual({
      code: 'CONFIG_INVALID',
      message: expect.stringMatching(
        /keeps its keys in clear .*keyhop vault encrypt plain, or unset KEYHOP_VAULT_PASSPHRASE$/,
      ),
    });
    expect(keyFiles('plain')).toHaveLength(1);

    const needsPass = await keyhop(home, ['vault', 'encrypt', 'plain']);
    expect(errorLine(needsPass).code).toBe('USAGE');
    const enc = await keyhop(home, ['vault', 'encrypt', 'plain', '--json'], PASS);
    expect(enc.code, enc.stderr).toBe(0);
    expect(JSON.parse(enc.stdout)).toEqual({ vault: 'plain', encrypted: true, keysEncrypted: 1 });
    expect(keyFiles('plain').every((f) => f.privateKey.encryption === 'scrypt-aes-256-gcm')).toBe(true);
    expect(errorLine(await keyhop(home, ['identity', 'create', 'b', '--vault', 'plain'])).code).toBe(
      'KEY_STORE_LOCKED',
    );
    expect((await keyhop(home, ['identity', 'create', 'b', '--vault', 'plain'], PASS)).code).toBe(0);
    const list = await keyhop(home, ['vault', 'list', '--json']);
    expect(JSON.parse(list.stdout)).toEqual([{ name: 'plain', backend: 'software', encrypted: true }]);
  });

  it('an unknown vault name is an error listing the vaults there are; nothing is created', async () => {
    await keyhop(home, ['vault', 'create', 'main'], PASS);
    const r = await keyhop(home, ['identity', 'create', 'sensor', '--vault', 'mian'], PASS);
    expect(r.code).toBe(1);
    expect(errorLine(r)).toEqual({
      code: 'VAULT_NOT_FOUND',
      message:
        'no vault "mian" (vaults here: main (software, encrypted)); create it with: keyhop vault create mian',
    });
    expect(existsSync(join(home, 'vaults', 'mian'))).toBe(false);
    expect(existsSync(join(home, 'identities', 'sensor.json'))).toBe(false);
    const again = await keyhop(home, ['vault', 'create', 'main']);
    expect(errorLine(again)).toEqual({
      code: 'VAULT_EXISTS',
      message: 'vault "main" already exists (software)',
    });
  });

  it('the default vault is made on first use, and says how its keys are kept', async () => {
    const clear = await keyhop(home, ['identity', 'create']);
    expect(clear.code).toBe(0);
    expect(clear.stderr).toMatch(
      /^keyhop: created vault "default" \(software, private keys in clear on disk/,
    );
    expect((await keyhop(home, ['identity', 'create', 'two'])).stderr).toBe('');

    const other = mkdtempSync(join(tmpdir(), 'kh-vaults-'));
    try {
      const enc = await keyhop(other, ['identity', 'create'], PASS);
      expect(enc.stderr).toBe('keyhop: created vault "default" (software, private keys encrypted at rest)\n');
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
