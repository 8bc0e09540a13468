/**
 * The ATECC608 kit protocol end to end (atecc608.md §4.4, §4.6 route 2): KitLink over the emulated
 * kit's HID endpoint (a fake node-hid device) and over a real socat PTY pair with serialport, in
 * front of the emulated chip: Info, Random, locking, GenKey and Sign (checked with @noble/curves).
 */
import { p256 } from '@noble/curves/nist.js';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../runtime/errors.js';
import { Atecc608Chip } from '../../vaults/atecc608/emulator/chip.js';
import {
  EmulatedHidKit,
  EmulatedKit,
  type KitLineHandler,
  serveKitOnSerial,
} from '../../vaults/atecc608/emulator/kit-device.js';
import type { AteccLink } from '../../vaults/atecc608/link.js';
import { openKitHid } from '../../vaults/atecc608/links/kit-hid.js';
import { openKitSerial } from '../../vaults/atecc608/links/kit-serial.js';
import { CRYPTOAUTHLIB_KIT_TRACE } from '../../vaults/atecc608/links/kit-test-support.js';
import {
  genKeyPrivateCommand,
  infoCommand,
  isTestPattern,
  lockConfigCommand,
  lockDataCommand,
  noncePassThroughCommand,
  randomCommand,
  signExternalCommand,
} from '../../vaults/atecc608/protocol/commands.js';
import { Opcode } from '../../vaults/atecc608/protocol/opcodes.js';
import { type Command, decodeResponse, encodeCommand } from '../../vaults/atecc608/protocol/packet.js';
import { budgetMs } from '../../vaults/atecc608/protocol/timing.js';
import { type SocatPair, socatSkipReason, startSocatPair } from '../rig/socat.js';

const skipPty = socatSkipReason();

function step(cmd: Command) {
  return { packet: encodeCommand(cmd), maxExecMs: budgetMs(cmd.opcode, 'M0') };
}

/** Runs one command and returns its data; fails the test on a status response. */
async function run(link: AteccLink, cmd: Command): Promise<Uint8Array> {
  const [raw] = await link.transact([step(cmd)]);
  const r = decodeResponse(raw ?? new Uint8Array());
  if (r.kind === 'status') {
    if (r.status === 0) return new Uint8Array(0);
    throw new Error(`chip answered status 0x${r.status.toString(16)}`);
  }
  return r.data;
}

/** Info, Random, lock both zones (raw Lock 0x80 / 0x81), GenKey slot 0, Nonce + Sign in one wake. */
async function provisionAndSign(link: AteccLink): Promise<void> {
  expect([...(await run(link, infoCommand('revision')))]).toEqual([0x00, 0x00, 0x60, 0x02]);
  expect(isTestPattern(await run(link, randomCommand()))).toBe(true);
  await run(link, lockConfigCommand());
  const random = await run(link, randomCommand());
  expect(random).toHaveLength(32);
  expect(isTestPattern(random)).toBe(false);
  await run(link, lockDataCommand());
  const publicKey = await run(link, genKeyPrivateCommand(0));
  expect(publicKey).toHaveLength(64);

  const digest = p256.utils.randomSecretKey().slice(0, 32);
  const [nonce, sig] = await link.transact(
    [step(noncePassThroughCommand(digest, 'msgdigbuf')), step(signExternalCommand(0))],
    {
      end: 'sleep',
    },
  );
  expect(decodeResponse(nonce ?? new Uint8Array())).toEqual({ kind: 'status', status: 0 });
  const signed = decodeResponse(sig ?? new Uint8Array());
  if (signed.kind !== 'data') throw new Error(`Sign answered status ${JSON.stringify(signed)}`);
  expect(signed.data).toHaveLength(64);
  const ok = p256.verify(signed.data, digest, Uint8Array.of(0x04, ...publicKey), {
    prehash: false,
    lowS: false,
  });
  expect(ok).toBe(true);
}

describe('ATECC608 kit protocol over (fake) USB HID', () => {
  it('runs Info, Random, locks, GenKey and Sign', async () => {
    const chip = new Atecc608Chip({ seed: 'kit-hid', timing: 'zero' });
    const kit = new EmulatedKit(chip);
    const link = await openKitHid({ device: new EmulatedHidKit(kit) });
    try {
      await provisionAndSign(link);
    } finally {
      await link.close();
    }
    expect(kit.requests.slice(0, 2)).toEqual(['board:device(00)', 'E:physical:select(C0)']);
    expect(kit.requests).toContain(
      `E:t(${Buffer.from(encodeCommand({ opcode: Opcode.LOCK, param1: 0x80, param2: 0 }))
        .toString('hex')
        .toUpperCase()})`,
    );
  });

  it('gets a status packet back from a kit that reports chip errors as ATCA_STATUS', async () => {
    const kit = new EmulatedKit(new Atecc608Chip({ seed: 'kit-hid-2', timing: 'zero' }), {
      talkErrors: 'atca-status',
    });
    const link = await openKitHid({ device: new EmulatedHidKit(kit) });
    // GenKey needs the config zone locked: execution error 0x0F travels as F4() and comes back.
    const [raw] = await link.transact([step(genKeyPrivateCommand(0))]);
    expect(decodeResponse(raw ?? new Uint8Array())).toEqual({ kind: 'status', status: 0x0f });
    await link.close();
  });
});

describe.skipIf(skipPty !== undefined)('ATECC608 kit protocol over a serial line (socat PTYs)', () => {
  let pair: SocatPair | undefined;
  const closers: (() => Promise<void>)[] = [];

  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
    await pair?.stop();
    pair = undefined;
  });

  async function serve(handler: KitLineHandler): Promise<string> {
    pair = await startSocatPair();
    const server = await serveKitOnSerial(pair.a, handler);
    closers.push(() => server.close());
    return pair.b;
  }

  it('runs the cryptoauthlib trace and returns the 608A revision', async () => {
    const kit = new EmulatedKit(new Atecc608Chip({ seed: 'kit-pty-trace', timing: 'datasheet' }));
    const link = await openKitSerial({ path: await serve(kit) });
    closers.push(() => link.close());
    await link.transact([step({ opcode: Opcode.READ, param1: 0x80, param2: 0 })]);
    const [rev] = await link.transact([step(infoCommand('revision'))]);
    expect([...(rev ?? [])]).toEqual([0x07, 0x00, 0x00, 0x60, 0x02, 0x80, 0x38]);
    expect(kit.requests).toEqual(CRYPTOAUTHLIB_KIT_TRACE);
    expect(link.kind).toBe('kit-serial');
  });

  it('runs Info, Random, locks, GenKey and Sign with datasheet timing', async () => {
    const kit = new EmulatedKit(new Atecc608Chip({ seed: 'kit-pty', timing: 'datasheet' }));
    const link = await openKitSerial({ path: await serve(kit) });
    closers.push(() => link.close());
    await provisionAndSign(link);
  });

  it('times out when the kit never answers', async () => {
    const mute: KitLineHandler = { handleLine: () => new Promise(() => undefined) };
    const path = await serve(mute);
    await expect(openKitSerial({ path, replyTimeoutMs: 200 })).rejects.toMatchObject({
      code: ErrorCodes.TIMEOUT,
    });
  });

  it('refuses a reply line over the limit', async () => {
    const babbler: KitLineHandler = { handleLine: async () => `ECC608 TWI 00(${'C0'.repeat(2000)})` };
    const path = await serve(babbler);
    await expect(openKitSerial({ path })).rejects.toMatchObject({ code: ErrorCodes.DECODE_LIMIT });
  });

  it('explains a kit that reports the 608 as ECC108', async () => {
    const kit = new EmulatedKit({ chip: new Atecc608Chip({ seed: 'kit-108' }), name: 'ECC108' });
    const path = await serve(kit);
    await expect(openKitSerial({ path })).rejects.toMatchObject({
      code: ErrorCodes.HARDWARE_UNAVAILABLE,
      message: expect.stringMatching(/ECC108.*firmware/s),
    });
  });

  it('fails to open a missing port with HARDWARE_UNAVAILABLE', async () => {
    await expect(openKitSerial({ path: '/nonexistent/tty' })).rejects.toMatchObject({
      code: ErrorCodes.HARDWARE_UNAVAILABLE,
    });
  });
});
