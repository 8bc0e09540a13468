import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { KeyhopError } from '../../runtime/errors.js';
import { hex, unhex } from '../../test/support/bytes.js';
import { Atecc608, isTestPattern, modelOf } from './device.js';
import type { AteccLink, CommandStep, TransactOptions } from './link.js';
import { configWritePlan } from './protocol/config.js';
import { decodeCommand, encodeResponse, encodeStatus, WAKE_TOKEN } from './protocol/packet.js';
import { AteccStatusError } from './protocol/status.js';

type Reply = (steps: readonly CommandStep[]) => Uint8Array[];

/** A link that answers each transact from a script and records what it was sent. */
class ScriptedLink implements AteccLink {
  readonly kind = 'scripted';
  readonly location = 'test';
  readonly calls: { packets: string[]; budgets: number[]; end: string | undefined }[] = [];
  readonly #script: Reply[];

  constructor(script: Reply[]) {
    this.#script = [...script];
  }

  async transact(steps: readonly CommandStep[], options?: TransactOptions): Promise<Uint8Array[]> {
    this.calls.push({
      packets: steps.map((s) => hex(s.packet)),
      budgets: steps.map((s) => s.maxExecMs),
      end: options?.end,
    });
    const next = this.#script.shift();
    if (!next) throw new Error(`unexpected transact #${this.calls.length}`);
    return next(steps);
  }

  async close(): Promise<void> {}

  get remaining(): number {
    return this.#script.length;
  }
}

const ok = encodeStatus(0x00);
const status = (s: number) => encodeStatus(s);
const data = (bytes: Uint8Array) => encodeResponse(bytes);
const fill = (n: number, v: number) => new Uint8Array(n).fill(v);
const always =
  (...responses: Uint8Array[]): Reply =>
  () =>
    responses;
const corrupt = (frame: Uint8Array) => {
  const bad = frame.slice();
  bad[1]! ^= 0x01;
  return bad;
};

const device = (script: Reply[], retries?: number) => {
  const link = new ScriptedLink(script);
  const dev = new Atecc608(link, { divider: 'M0', ...(retries !== undefined ? { retries } : {}) });
  return { link, dev };
};

async function rejection(p: Promise<unknown>): Promise<KeyhopError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(KeyhopError);
  return e as KeyhopError;
}

describe('Atecc608 over a scripted link', () => {
  it('reads the revision and names the model', async () => {
    const { link, dev } = device([always(data(unhex('00006002'))), always(data(unhex('00006003')))]);
    expect(await dev.info()).toEqual({ revision: unhex('00006002'), model: '608A' });
    expect((await dev.info()).model).toBe('608B');
    expect(link.calls[0]!.packets).toEqual(['0730000000035d']);
    expect(modelOf(unhex('00005000'))).toBe('unknown');
  });

  it('signs with exactly Nonce 0x43 + Sign 0xA0 in one transact', async () => {
    const digest = fill(32, 0x11);
    const sig = fill(64, 0x22);
    const { link, dev } = device([always(ok, data(sig))]);
    expect(hex(await dev.sign(2, digest))).toBe(hex(sig));
    expect(link.calls).toHaveLength(1);
    const [nonce, sign] = link.calls[0]!.packets;
    expect(nonce!.slice(0, 10)).toBe('2716430000');
    expect(nonce!.slice(10, 74)).toBe(hex(digest));
    expect(sign).toBe('0741a002007d05');
    expect(link.calls[0]!.budgets).toEqual([20, 115]);
    expect(link.calls[0]!.end).toBeUndefined();
  });

  it('retries the whole transact after a response CRC error, then succeeds', async () => {
    const sig = fill(64, 0x33);
    const { link, dev } = device([always(ok, corrupt(data(sig))), always(ok, data(sig))]);
    expect(hex(await dev.sign(2, fill(32, 1)))).toBe(hex(sig));
    expect(link.calls).toHaveLength(2);
    expect(link.calls[1]!.packets).toEqual(link.calls[0]!.packets);
  });

  it('gives up after `retries` repeats with HARDWARE_IO', async () => {
    const bad = always(corrupt(data(fill(32, 1))));
    const { link, dev } = device([bad, bad, bad], 2);
    const e = await rejection(dev.random());
    expect(e.code).toBe('HARDWARE_IO');
    expect(e.message).toMatch(/^Random: .*CRC/);
    expect(link.calls).toHaveLength(3);
  });

  it('does not retry an execution error (0x0F) and names the command', async () => {
    const { link, dev } = device([always(ok, status(0x0f))]);
    const e = await rejection(dev.sign(2, fill(32, 1)));
    expect(e).toBeInstanceOf(AteccStatusError);
    expect(e.code).toBe('HARDWARE_REFUSED');
    expect((e as AteccStatusError).status).toBe(0x0f);
    expect(e.message).toBe(
      "Sign slot 2: execution error (0x0F): the chip's state or the slot's policy forbids this",
    );
    expect(link.calls).toHaveLength(1);
  });

  it('does not retry a parse error (0x03) either, and reports the first failing step', async () => {
    const { link, dev } = device([always(status(0x03), status(0x0f))]);
    const e = await rejection(dev.sign(2, fill(32, 1)));
    expect(e.message).toMatch(/^Nonce \(digest to sign\): parse error/);
    expect(link.calls).toHaveLength(1);
  });

  it('sleeps after a watchdog status (0xEE) and retries', async () => {
    const key = fill(64, 0x44);
    const { link, dev } = device([always(status(0xee)), () => [], always(data(key))]);
    expect(hex(await dev.genKey(3))).toBe(hex(key));
    expect(link.calls.map((c) => [c.packets.length, c.end])).toEqual([
      [1, undefined],
      [0, 'sleep'],
      [1, undefined],
    ]);
  });

  it('retries when the chip answers with the wake token (it slept) or an ECC fault', async () => {
    const secret = fill(32, 0x55);
    const { link, dev } = device([always(WAKE_TOKEN), always(status(0x05)), always(data(secret))]);
    expect(hex(await dev.ecdh(0, fill(64, 1)))).toBe(hex(secret));
    expect(link.calls).toHaveLength(3);
    expect(link.calls[0]!.packets[0]!.slice(0, 10)).toBe('47430c0000');
  });

  it('retries a data answer where a status was expected', async () => {
    const { link, dev } = device([always(data(fill(4, 0))), always(ok)]);
    await dev.write({ zone: 'data', slot: 8, block: 0 }, fill(32, 7));
    expect(link.calls).toHaveLength(2);
  });

  it('verifies: 0x00 true, 0x01 false, anything else an error', async () => {
    const { link, dev } = device([always(ok, ok), always(ok, status(0x01)), always(ok, status(0x0f))]);
    const args = [fill(32, 1), fill(64, 2), fill(64, 3)] as const;
    expect(await dev.verifyExternal(...args)).toBe(true);
    expect(await dev.verifyExternal(...args)).toBe(false);
    expect((await rejection(dev.verifyExternal(...args))).code).toBe('HARDWARE_REFUSED');
    const [nonce, verify] = link.calls[0]!.packets;
    expect(nonce!.slice(0, 10)).toBe('2716430000');
    expect(verify!.slice(0, 10)).toBe('8745220400');
    expect(verify!.slice(10, 266)).toBe(hex(fill(64, 2)) + hex(fill(64, 3)));
  });

  it('validates arguments before touching the link', async () => {
    const { link, dev } = device([]);
    expect((await rejection(dev.sign(16, fill(32, 0)))).code).toBe('KEY_INVALID');
    expect((await rejection(dev.sign(2, fill(31, 0)))).code).toBe('ENCODE_LIMIT');
    expect((await rejection(dev.ecdh(2, fill(65, 0)))).code).toBe('KEY_INVALID');
    expect((await rejection(dev.verifyExternal(fill(32, 0), fill(63, 0), fill(64, 0)))).code).toBe(
      'KEY_INVALID',
    );
    expect((await rejection(dev.genKey(-1))).code).toBe('KEY_INVALID');
    expect((await rejection(dev.read({ zone: 'config', block: 4 }))).code).toBe('ENCODE_LIMIT');
    expect((await rejection(dev.writeConfigZone(fill(127, 0)))).code).toBe('ENCODE_LIMIT');
    expect((await rejection(dev.sha256(new Uint8Array(4097)))).code).toBe('ENCODE_LIMIT');
    expect(link.calls).toHaveLength(0);
  });

  it('learns the clock divider from config byte 19 once when no divider is given', async () => {
    const block0 = fill(32, 0);
    block0[19] = 0x28; // M1
    const link = new ScriptedLink([
      always(data(block0)),
      always(ok, data(fill(64, 1))),
      always(ok, data(fill(64, 2))),
    ]);
    const dev = new Atecc608(link);
    await dev.sign(2, fill(32, 9));
    await dev.sign(2, fill(32, 9));
    expect(link.calls[0]!.packets).toEqual(['070280000009ad']);
    expect(link.calls[1]!.budgets).toEqual([20, 220]);
    expect(link.calls).toHaveLength(3);
  });

  it('does not read the config for commands whose budget is the same at every divider', async () => {
    const link = new ScriptedLink([always(data(fill(32, 5)))]);
    const random = await new Atecc608(link).random();
    expect(hex(random)).toBe(hex(fill(32, 5)));
    expect(link.calls).toHaveLength(1);
  });

  it('reads the config zone with four 32-byte reads in one transact', async () => {
    const blocks = [0, 1, 2, 3].map((i) => fill(32, i));
    blocks[2]![23] = 0x55; // LockConfig byte 87
    const { link, dev } = device([always(...blocks.map(data))]);
    const cfg = await dev.config();
    expect(link.calls[0]!.packets.map((p) => p.slice(0, 10))).toEqual([
      '0702800000',
      '0702800800',
      '0702801000',
      '0702801800',
    ]);
    expect(cfg.configLocked).toBe(false);
    expect(cfg.dataLocked).toBe(true);
  });

  it('reads the serial number from config block 0', async () => {
    const block0 = unhex('0123aabb00006002ccddeeff11 01 01 00 c0 00 00 00'.replace(/ /g, '').padEnd(64, '0'));
    const { dev } = device([always(data(block0))]);
    expect(hex(await dev.serialNumber())).toBe('0123aabbccddeeff11');
  });

  it('writes the config zone by plan and UpdateExtra only for changed non-zero bytes 84/85', async () => {
    const zone = fill(128, 0x0f);
    zone[84] = 0;
    zone[85] = 0x6a;
    const plan = configWritePlan(zone);
    const { link, dev } = device([
      always(...plan.map(() => ok)),
      always(data(unhex('00005555'))), // bytes 84..87 now
      always(ok),
    ]);
    await dev.writeConfigZone(zone);
    expect(link.calls[0]!.packets).toHaveLength(plan.length);
    for (const p of link.calls[0]!.packets) {
      const cmd = decodeCommand(unhex(p));
      expect(cmd.ok && cmd.command.opcode).toBe(0x12);
    }
    expect(link.calls[1]!.packets.map((p) => p.slice(0, 10))).toEqual(['0702001500']); // config word 21
    expect(link.calls[2]!.packets[0]!.slice(0, 10)).toBe('0720016a00');
    expect(link.remaining).toBe(0);
  });

  it('skips UpdateExtra when bytes 84/85 are zero', async () => {
    const zone = fill(128, 0);
    const { link, dev } = device([always(...configWritePlan(zone).map(() => ok))]);
    await dev.writeConfigZone(zone);
    expect(link.calls).toHaveLength(1);
  });

  it('locks the config with the summary CRC, and never repeats a Lock whose answer was garbled', async () => {
    const zone = fill(128, 0x42);
    const { link, dev } = device([
      always(ok),
      always(ok),
      always(corrupt(ok)),
      always(status(0xff)),
      always(ok),
    ]);
    await dev.lockConfig(zone);
    await dev.lockConfig();
    expect(link.calls[0]!.packets[0]!.slice(0, 6)).toBe('071700');
    expect(link.calls[1]!.packets[0]!.slice(0, 10)).toBe('0717800000');
    expect((await rejection(dev.lockData())).code).toBe('HARDWARE_IO');
    await dev.lockSlot(3); // 0xFF: the chip did not run it, so it is repeated
    expect(link.calls.slice(3).map((c) => c.packets[0]!.slice(0, 10))).toEqual(['07170e0000', '07170e0000']);
  });

  it('hashes any length with Start, Update×n and End in one transact', async () => {
    const digest = fill(32, 0x77);
    const { link, dev } = device([always(ok, ok, ok, data(digest))]);
    expect(hex(await dev.sha256(fill(130, 1)))).toBe(hex(digest));
    expect(link.calls[0]!.packets.map((p) => p.slice(0, 10))).toEqual([
      '0747000000',
      '4747014000',
      '4747014000',
      '0947020200',
    ]);
  });

  it('never resends SHA Updates that already ran: a CRC status mid-wake fails instead of a wrong digest', async () => {
    // 16 blocks: Start + 16 Updates + End = 18 commands, in wakes of 12 and 6.
    const input = fill(16 * 64, 2);
    const okAll = (steps: readonly CommandStep[]) => steps.map(() => ok);
    // The second wake: its first Update answers 0xFF (not run): safe to resend that wake.
    const resent = device([
      okAll,
      (steps) => [status(0xff), ...steps.slice(1).map(() => ok)],
      (steps) => [...steps.slice(0, -1).map(() => ok), data(fill(32, 9))],
    ]);
    expect(hex(await resent.dev.sha256(input))).toBe(hex(fill(32, 9)));
    expect(resent.link.calls.map((c) => c.packets.length)).toEqual([12, 6, 6]);
    // Its third command answers 0xFF: the two before it ran, so resending would hash them twice.
    const midway = device([okAll, (steps) => [ok, ok, status(0xff), ...steps.slice(3).map(() => ok)]]);
    const e = await rejection(midway.dev.sha256(input));
    expect(e.code).toBe('HARDWARE_IO');
    expect(midway.link.remaining).toBe(0);
    expect(midway.link.calls).toHaveLength(2);
  });

  it('reports self-test failures as a bitmap and real errors as errors', async () => {
    const { dev } = device([always(ok), always(status(0x02)), always(status(0x0f))]);
    expect(await dev.selfTest()).toBe(0);
    expect(await dev.selfTest()).toBe(0x02);
    expect((await rejection(dev.selfTest())).code).toBe('HARDWARE_REFUSED');
  });

  it('reads and increments counters', async () => {
    const { link, dev } = device([always(data(unhex('2a000000'))), always(data(unhex('2b000000')))]);
    expect(await dev.counter(0)).toBe(42);
    expect(await dev.counter(0, true)).toBe(43);
    expect(link.calls[1]!.packets[0]!.slice(0, 10)).toBe('0724010000');
  });

  it('sleeps with an empty transact', async () => {
    const { link, dev } = device([() => []]);
    await dev.sleep();
    expect(link.calls).toEqual([{ packets: [], budgets: [], end: 'sleep' }]);
  });

  it('refuses a link that returns the wrong number of responses', async () => {
    const { link, dev } = device([always(ok)]);
    expect((await rejection(dev.sign(2, fill(32, 0)))).code).toBe('HARDWARE_IO');
    expect(link.calls).toHaveLength(1);
  });

  it('passes the unlocked-chip Random pattern through for the caller to judge', async () => {
    const { dev } = device([always(data(unhex('ffff0000'.repeat(8))))]);
    expect(isTestPattern(await dev.random())).toBe(true);
  });

  it('never logs key material, digests or signatures', async () => {
    let logged = '';
    const sink = new Writable({
      write(chunk, _enc, done) {
        logged += chunk.toString();
        done();
      },
    });
    const logger = pino({ level: 'trace' }, sink);
    const digest = fill(32, 0xd1);
    const sig = fill(64, 0x5e);
    const secret = fill(32, 0x5c);
    const link = new ScriptedLink([
      always(ok, corrupt(data(sig))),
      always(ok, data(sig)),
      always(status(0xee)),
      () => [],
      always(data(secret)),
    ]);
    const dev = new Atecc608(link, { divider: 'M0', logger });
    await dev.sign(1, digest);
    await dev.ecdh(1, fill(64, 0x9a));
    await new Promise((r) => setImmediate(r));
    expect(logged).toContain('ATECC retrying');
    for (const secretish of [digest, sig, secret, fill(64, 0x9a)]) {
      expect(logged).not.toContain(hex(secretish).slice(0, 16));
    }
  });
});
