import { describe, expect, it, vi } from 'vitest';
import { isKeyhopError } from '../../../errors.js';
import { HciGattLink } from './link.js';

function link(mtu = 23) {
  const sent: Buffer[] = [];
  const l: HciGattLink = new HciGattLink('central', 'aa:bb:cc:dd:ee:ff', mtu, {
    send: (v) => void sent.push(v),
    disconnect: async (): Promise<void> => l.closed('asked'),
  });
  return { l, sent };
}

describe('HciGattLink', () => {
  it('hands values of at most mtu − 3 bytes to the stack and rejects larger ones', async () => {
    const { l, sent } = link(23);
    await l.send(new Uint8Array(20));
    expect(sent).toHaveLength(1);
    const e = await l.send(new Uint8Array(21)).catch((x: unknown) => x);
    expect(isKeyhopError(e, 'ENCODE_LIMIT')).toBe(true);
    l.setMtu(100);
    await l.send(new Uint8Array(97));
    expect(sent).toHaveLength(2);
  });

  it('keeps values that arrive before a listener, then delivers in order', () => {
    const { l } = link();
    l.deliver(Buffer.of(1));
    l.deliver(Buffer.of(2));
    const got: number[] = [];
    l.onValue((v) => got.push(v[0]!));
    l.deliver(Buffer.of(3));
    expect(got).toEqual([1, 2, 3]);
  });

  it('copies delivered values (stacks hand out slices of reused packets)', () => {
    const { l } = link();
    const got: Uint8Array[] = [];
    l.onValue((v) => got.push(v));
    const packet = Buffer.of(9, 9);
    l.deliver(packet);
    packet[0] = 0;
    expect(got[0]).toEqual(Uint8Array.of(9, 9));
  });

  it('closes once, then rejects sends and ignores late values', async () => {
    const { l } = link();
    const reasons: string[] = [];
    l.onClose((r) => reasons.push(r));
    await l.disconnect();
    l.closed('again');
    await l.disconnect();
    expect(reasons).toEqual(['asked']);
    expect(l.isOpen).toBe(false);
    const e = await l.send(new Uint8Array(1)).catch((x: unknown) => x);
    expect(isKeyhopError(e, 'CONNECTION_CLOSED')).toBe(true);
  });

  it('reports MTU changes and wraps stack failures in SEND_FAILED', async () => {
    const l = new HciGattLink('peripheral', 'aa:bb:cc:dd:ee:ff', 23, {
      send: () => {
        throw new Error('not subscribed');
      },
      disconnect: async () => undefined,
    });
    const mtus: number[] = [];
    l.onMtu((m) => mtus.push(m));
    l.setMtu(247);
    l.setMtu(247);
    expect(mtus).toEqual([247]);
    const e = await l.send(new Uint8Array(1)).catch((x: unknown) => x);
    expect(isKeyhopError(e, 'SEND_FAILED')).toBe(true);
  });

  it('rethrows a listener error outside the stack, after the other listeners ran', () => {
    const { l } = link();
    const thrown = new Error('listener bug');
    const second = vi.fn();
    l.onValue(() => {
      throw thrown;
    });
    l.onValue(second);
    const deferred: (() => void)[] = [];
    const spy = vi.spyOn(globalThis, 'queueMicrotask').mockImplementation((cb) => void deferred.push(cb));
    try {
      l.deliver(Buffer.of(1));
    } finally {
      spy.mockRestore();
    }
    expect(second).toHaveBeenCalledTimes(1);
    expect(deferred).toHaveLength(1);
    expect(() => deferred[0]!()).toThrow(thrown);
  });
});
