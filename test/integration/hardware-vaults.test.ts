import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { softhsmSkipReason, startSoftHsm } from '../rig/softhsm.js';
import { startSwtpm, swtpmSkipReason } from '../rig/swtpm.js';

/**
 * Identities in a TPM (swtpm) and in a PKCS#11 token (SoftHSM2), made and used only through the
 * CLI: vaults created with --backend, identities in them, an authority whose keys are in the token
 * issuing a credential, and nodes with those identities opening secure channels to each other and
 * to a software identity, with the credential checked by policy.
 */
const run = promisify(execFile);
const main = join(import.meta.dirname, '../../dist/runtime/cli/main.js');
const skip = swtpmSkipReason() ?? softhsmSkipReason();

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe.skipIf(skip !== undefined)('TPM and PKCS#11 vaults through the CLI', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let tpm: Awaited<ReturnType<typeof startSwtpm>>;
  let hsm: Awaited<ReturnType<typeof startSoftHsm>>;

  const keyhop = (...args: string[]) =>
    run(process.execPath, [main, ...args], { env, timeout: 30_000 }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
  async function json(...args: string[]) {
    const r = await keyhop(...args, '--json');
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    return JSON.parse(r.stdout);
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kh-hwv-'));
    tpm = await startSwtpm();
    hsm = await startSoftHsm({ label: 'keyhop-ci', pin: '246810' });
    env = { ...process.env, ...hsm.env, KEYHOP_HOME: join(dir, 'home'), KEYHOP_PKCS11_PIN: hsm.pin };
  });

  afterAll(async () => {
    for (const n of ['tnode', 'hnode', 'snode']) await keyhop('node', 'stop', n);
    await tpm?.stop();
    await hsm?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates identities in a TPM and a token, issues a credential from the token, and opens channels all ways', async () => {
    await json('vault', 'create', 'tpm', '--backend', 'tpm', '--tcti', tpm.tcti);
    await json('vault', 'create', 'hsm', '--backend', 'pkcs11', '--module', hsm.module, '--token', hsm.label);
    const t = await json('identity', 'create', 'gw', '--vault', 'tpm');
    const h = await json('identity', 'create', 'sensor', '--vault', 'hsm', '--key-type', 'ed25519');
    const ca = await json('identity', 'create', 'ca', '--vault', 'hsm');
    expect((await json('identity', 'show', 'gw')).changes[0].keyType).toBe('P256');
    expect((await json('identity', 'show', 'sensor')).changes[0].keyType).toBe('Ed25519');
    expect((await json('identity', 'show', 'ca')).changes[0].keyType).toBe('P256');

    // The authority's credential-signing key is made in the token too; its credentials verify.
    const { credential } = await json(
      'credential',
      'issue',
      '--as',
      'ca',
      '--for',
      t.identifier,
      '--attribute',
      'role=gateway',
    );
    const verified = await json('credential', 'verify', credential, '--authority', 'ca');
    expect(verified).toMatchObject({
      issuer: ca.identifier,
      subject: t.identifier,
      attributes: { role: 'gateway' },
    });
    await json('credential', 'store', credential, '--identity', 'gw');

    // gw (TPM) listens; sensor (token) accepts only credentialed gateways; snode is software.
    const tPort = await freePort();
    const hPort = await freePort();
    await json('node', 'start', 'tnode', '--identity', 'gw', '--tcp-listener', `127.0.0.1:${tPort}`);
    await json(
      'node',
      'start',
      'hnode',
      '--identity',
      'sensor',
      '--tcp-listener',
      `127.0.0.1:${hPort}`,
      '--authority',
      'ca',
      '--policy',
      '(= subject.role "gateway")',
    );
    const sPort = await freePort();
    await json('node', 'start', 'snode', '--tcp-listener', `127.0.0.1:${sPort}`);

    // TPM → token: the token side's policy admits the TPM identity by its token-signed credential.
    const th = await json(
      'secure-channel',
      'create',
      '--from',
      'tnode',
      '--to',
      `1#127.0.0.1:${hPort} => api`,
    );
    expect(th.peer).toBe(h.identifier);
    const echo = await json(
      'message',
      'send',
      'tpm to token',
      '--from',
      'tnode',
      '--to',
      `${th.encryptor} => echo`,
    );
    expect(echo.reply).toBe('tpm to token');
    // Token → TPM, software → TPM.
    const ht = await json(
      'secure-channel',
      'create',
      '--from',
      'hnode',
      '--to',
      `1#127.0.0.1:${tPort} => api`,
    );
    expect(ht.peer).toBe(t.identifier);
    const st = await json(
      'secure-channel',
      'create',
      '--from',
      'snode',
      '--to',
      `1#127.0.0.1:${tPort} => api`,
    );
    expect(st.peer).toBe(t.identifier);
    // Software → token: the token side's policy refuses it (no credential). The responder says so
    // after message 3 (an encrypted Close), so the command fails and names who refused whom.
    const refused = await keyhop(
      'secure-channel',
      'create',
      '--from',
      'snode',
      '--to',
      `1#127.0.0.1:${hPort} => api`,
    );
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      new RegExp(
        `^keyhop: error \\[TRUST_REFUSED\\]: the responder ${h.identifier} refused this node's identity I[0-9a-f]{64}`,
      ),
    );
    const atSensor = await json('secure-channel', 'list', '--at', 'hnode');
    // Its two channels are both with the TPM identity (one each way); none with the software node.
    expect(atSensor.map((c: { peer: string }) => c.peer)).toEqual([t.identifier, t.identifier]);
  });

  it('refuses what cannot work, with one clear error each', async () => {
    const noTpm = await keyhop(
      'vault',
      'create',
      'nope',
      '--backend',
      'tpm',
      '--tcti',
      'swtpm:host=127.0.0.1,port=1',
    );
    expect(noTpm.code).toBe(1);
    expect(noTpm.stderr).toMatch(/\[HARDWARE_UNAVAILABLE\]/);
    const wrongPin = await run(
      process.execPath,
      [main, 'vault', 'create', 'bad', '--backend', 'pkcs11', '--module', hsm.module, '--token', hsm.label],
      { env: { ...env, KEYHOP_PKCS11_PIN: '000000' } },
    ).catch((e: { code: number; stderr: string }) => e);
    expect((wrongPin as { code: number }).code).toBe(1);
    expect((wrongPin as { stderr: string }).stderr).toMatch(/PIN/);
    expect((wrongPin as { stderr: string }).stderr).not.toContain('000000');
    const noToken = await keyhop(
      'vault',
      'create',
      'bad2',
      '--backend',
      'pkcs11',
      '--module',
      hsm.module,
      '--token',
      'nosuch',
    );
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toMatch(/\[HARDWARE_UNAVAILABLE\].*nosuch/);
    const tpmEd = await keyhop('identity', 'create', 'nope', '--vault', 'tpm', '--key-type', 'ed25519');
    expect(tpmEd.code).toBe(1);
    expect(tpmEd.stderr).toMatch(/\[UNSUPPORTED\]/);
  });
});
