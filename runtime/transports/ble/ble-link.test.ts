import { describe, expect, it } from 'vitest';
import { memoryGattPair } from '../../../test/support/memory-gatt.js';
import { until } from '../../../test/support/wait.js';
import { ErrorCodes, type KeyhopError } from '../../errors.js';
import { silentLogger } from '../../log.js';
import { FramedBleLink, type FramedLinkOptions } from './ble-link.js';
import { encodeHello, FragmentKind } from './framing.js';

function link(gatt: ReturnType<typeof memoryGattPair>['central'], over: Partial<FramedLinkOptions> = {}) {
  const received: Uint8Array[] = [];
  const closes: { reason: string; error?: KeyhopError }[] = [];
  const l = new FramedBleLink(gatt, {
    maxMessage: 256 * 1024,
    window: 8,
    helloTimeoutMs: 2000,
    maxQueuedBytes: 64 * 1024,
    onMessage: (m) => received.push(m),
    onClose: (reason, error) => closes.push({ reason, error }),
    log: silentLogger,
    ...over,
  });
  return { l, received, closes };
}

function message(i: number, size: number): Uint8Array {
  const m = new Uint8Array(size);
  for (let k = 0; k < size; k++) m[k] = (i * 31 + k * 7) & 0xff;
  if (size >= 4) new DataView(m.buffer).setUint32(0, i);
  return m;
}

describe('FramedBleLink', () => {
  it('carries messages of 1 byte to 64 KiB both ways at MTU 23 and 247, in order', async () => {
    for (const mtu of [23, 247]) {
      const g = memoryGattPair({ mtu });
      const a = link(g.central);
      const b = link(g.peripheral);
      await Promise.all([a.l.start(), b.l.start()]);
      const sizes = [1, 19, 20, 21, 100, 244, 245, 1000, 4096, 65536];
      for (const [i, s] of sizes.entries()) {
        void a.l.send(message(i, s));
        void b.l.send(message(i + 100, s));
      }
      await until(() => a.received.length === sizes.length && b.received.length === sizes.length, 10_000);
      expect(b.received).toEqual(sizes.map((s, i) => message(i, s)));
      expect(a.received).toEqual(sizes.map((s, i) => message(i + 100, s)));
      expect(g.central.sent.every((v) => v.length <= mtu - 3)).toBe(true);
      expect(a.closes).toEqual([]);
    }
  });

  it('never has more values in the stack than the window: a full notification queue drops nothing', async () => {
    // The stack holds 8 values (the window) and drains one per tick: without credits a burst
    // would overflow it.
    const g = memoryGattPair({ mtu: 23, stackQueue: 8 + 2, perTick: 1 });
    const a = link(g.central, { window: 8 });
    const b = link(g.peripheral, { window: 8 });
    await Promise.all([a.l.start(), b.l.start()]);
    for (let i = 0; i < 50; i++) void b.l.send(message(i, 200));
    await until(() => a.received.length === 50, 10_000);
    expect(g.peripheral.dropped + g.central.dropped).toBe(0);
    expect(a.received).toEqual(Array.from({ length: 50 }, (_, i) => message(i, 200)));
    expect(b.l.stats().creditStalls).toBeGreaterThan(0);
  });

  it('stops the sender while grants are paused and resumes without loss', async () => {
    const g = memoryGattPair({ mtu: 23 });
    const a = link(g.central, { window: 4 });
    const b = link(g.peripheral);
    await Promise.all([a.l.start(), b.l.start()]);
    a.l.pauseGrants();
    for (let i = 0; i < 10; i++) void b.l.send(message(i, 50));
    // a got the whole window, and granted none of it back: b stopped there.
    await until(() => a.l.stats().fragmentsIn === 4);
    expect(a.l.stats().creditsGranted).toBe(0);
    expect(b.l.stats().fragmentsOut).toBe(4);
    a.l.resumeGrants();
    await until(() => a.received.length === 10);
    expect(a.received[9]).toEqual(message(9, 50));
  });

  it('follows the MTU when it changes mid-message', async () => {
    const g = memoryGattPair({ mtu: 23 });
    const a = link(g.central);
    const b = link(g.peripheral);
    await Promise.all([a.l.start(), b.l.start()]);
    void a.l.send(message(1, 5000));
    g.central.setMtu(247);
    await until(() => b.received.length === 1);
    expect(b.received[0]).toEqual(message(1, 5000));
    expect(Math.max(...g.central.sent.map((v) => v.length))).toBe(244);
  });

  it('makes the caller wait when the queue is over its limit (back-pressure)', async () => {
    const g = memoryGattPair({ mtu: 23 });
    const a = link(g.central, { maxQueuedBytes: 1000 });
    const b = link(g.peripheral);
    await Promise.all([a.l.start(), b.l.start()]);
    let resolved = false;
    void a.l.send(message(0, 5000)).then(() => {
      resolved = true;
    });
    await new Promise((r) => setImmediate(r));
    expect(resolved).toBe(false);
    await until(() => resolved);
    await until(() => b.received.length === 1);
  });

  it('refuses a message over the peer limit with ENCODE_LIMIT', async () => {
    const g = memoryGattPair();
    const a = link(g.central);
    const b = link(g.peripheral, { maxMessage: 100 });
    await Promise.all([a.l.start(), b.l.start()]);
    await expect(a.l.send(new Uint8Array(101))).rejects.toMatchObject({ code: ErrorCodes.ENCODE_LIMIT });
  });

  it('drops the link on a protocol violation: data before HELLO, garbage, too many fragments', async () => {
    for (const bad of [
      [Uint8Array.of(FragmentKind.SINGLE, 1)],
      [encodeHello({ version: 1, maxMessage: 10, credits: 1 }), Uint8Array.of(0x7f)],
      [
        encodeHello({ version: 1, maxMessage: 10, credits: 1 }),
        encodeHello({ version: 1, maxMessage: 10, credits: 1 }),
      ],
      [
        encodeHello({ version: 1, maxMessage: 10, credits: 1 }),
        ...Array.from({ length: 9 }, () => Uint8Array.of(0x03, 0, 0, 1, 0, 1)),
      ],
    ]) {
      const g = memoryGattPair();
      const a = link(g.central, { window: 8 });
      void a.l.start().catch(() => undefined);
      for (const v of bad) await g.peripheral.send(v);
      await until(() => a.closes.length === 1);
      expect(a.closes[0]!.error?.code).toMatch(/DECODE_INVALID|DECODE_LIMIT/);
      expect(g.central.isOpen).toBe(false);
    }
  });

  it('takes a peer HELLO that arrived before start() (a reconnection) without timing out', async () => {
    const g = memoryGattPair();
    const b = link(g.peripheral);
    const bReady = b.l.start();
    // The stack hands values over in a setImmediate queued before this one: b's HELLO now waits
    // in a's stack.
    await new Promise((r) => setImmediate(r));
    const a = link(g.central, { helloTimeoutMs: 100 });
    await a.l.start();
    await bReady;
    await new Promise((r) => setTimeout(r, 250)); // longer than a's HELLO timeout: it must not fire
    expect(a.closes).toEqual([]);
    expect(b.closes).toEqual([]);
    void a.l.send(Uint8Array.of(1, 2, 3));
    await until(() => b.received.length === 1);
  });

  it('times out without a HELLO', async () => {
    const g = memoryGattPair();
    const a = link(g.central, { helloTimeoutMs: 30 });
    await expect(a.l.start()).rejects.toMatchObject({ code: ErrorCodes.TIMEOUT });
    expect(g.central.isOpen).toBe(false);
  });

  it('gives back unsent messages whole after a disconnect (a cut message is resent from its start)', async () => {
    const g = memoryGattPair({ mtu: 23, perTick: 1 });
    const a = link(g.central, { window: 4 });
    const b = link(g.peripheral, { window: 4 });
    await Promise.all([a.l.start(), b.l.start()]);
    b.l.pauseGrants();
    void a.l.send(message(1, 500)).catch(() => undefined);
    void a.l.send(message(2, 30)).catch(() => undefined);
    await until(() => b.l.stats().fragmentsIn === 4); // the window's worth of message 1 is across
    await g.peripheral.disconnect();
    expect(a.closes).toHaveLength(1);
    const unsent = a.l.takeUnsent();
    expect(unsent).toEqual([message(1, 500), message(2, 30)]);
    expect(b.received).toEqual([]);
  });
});
