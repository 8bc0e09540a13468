import { describe, expect, it } from 'vitest';
import { isKeyhopError } from '../../../errors.js';
import { createCentral, createPeripheral } from './index.js';
import { describeHciTarget, type HciSelection, parseHciSetting, resolveHciTarget } from './target.js';

describe('HCI controller selection', () => {
  it.each([
    ['hci0', { hciDevice: 0 }],
    ['hci1', { hciDevice: 1 }],
    ['hci65534', { hciDevice: 65534 }],
    ['/dev/ttyACM0', { uartPath: '/dev/ttyACM0' }],
    ['/dev/serial1', { uartPath: '/dev/serial1' }],
    ['./pty', { uartPath: './pty' }],
    ['/tmp/hci0', { uartPath: '/tmp/hci0' }],
  ])('reads %s', (value, selection) => {
    expect(parseHciSetting(value)).toEqual(selection);
  });

  it.each(['', 'hci', 'hci01', 'hci-1', 'hci65535', 'HCI0', 'hci0 ', 'ttyACM0', '0'])(
    'refuses %j',
    (value) => {
      expect(parseHciSetting(value)).toBeUndefined();
    },
  );

  it('resolves a selection with defaults', () => {
    expect(resolveHciTarget({ uartPath: '/dev/ttyACM0' })).toEqual({
      kind: 'uart',
      path: '/dev/ttyACM0',
      baudRate: 1_000_000,
    });
    expect(resolveHciTarget({ uartPath: '/dev/ttyACM0', baudRate: 115200 })).toMatchObject({
      baudRate: 115200,
    });
    expect(resolveHciTarget({ hciDevice: 0 })).toEqual({ kind: 'kernel', devId: 0 });
    expect(describeHciTarget(resolveHciTarget({ hciDevice: 2 }))).toBe('hci2');
    expect(describeHciTarget(resolveHciTarget({ uartPath: '/dev/ttyACM0' }))).toBe('/dev/ttyACM0');
  });

  it.each([
    [{}, /needs uartPath \(an HCI UART\) or hciDevice/],
    [{ uartPath: '' }, /needs uartPath/],
    [{ uartPath: '/dev/x', hciDevice: 0 }, /either uartPath .* or hciDevice .*, not both/],
    [{ hciDevice: -1 }, /hciDevice must be an adapter number, 0 for hci0 \(got -1\)/],
    [{ hciDevice: 1.5 }, /hciDevice must be/],
    [{ hciDevice: '0' }, /hciDevice must be .*got "0"/],
    [{ hciDevice: 65535 }, /hciDevice must be/],
    [{ hciDevice: 0, baudRate: 115200 }, /baudRate is for an HCI UART/],
    [{ uartPath: '/dev/x', baudRate: 0 }, /baudRate must be a positive integer/],
  ])('refuses %j with CONFIG_INVALID, from createCentral and createPeripheral too', (selection, message) => {
    const s = selection as unknown as HciSelection;
    expect(() => resolveHciTarget(s)).toThrow(message);
    for (const create of [() => createCentral(s), () => createPeripheral(s)]) {
      const e = (() => {
        try {
          create();
        } catch (x) {
          return x;
        }
        return undefined;
      })();
      expect(isKeyhopError(e, 'CONFIG_INVALID')).toBe(true);
    }
  });
});
