import { describe, expect, it } from 'vitest';
import { DEFAULT_BAUD_RATE, parseSerialAddress } from './serial-transport.js';

describe('parseSerialAddress', () => {
  it('takes a numeric @ suffix as the baud rate, otherwise the default', () => {
    expect(parseSerialAddress('/dev/ttyUSB0')).toEqual({ path: '/dev/ttyUSB0', baudRate: DEFAULT_BAUD_RATE });
    expect(parseSerialAddress('/dev/ttyUSB0@921600')).toEqual({ path: '/dev/ttyUSB0', baudRate: 921_600 });
    expect(parseSerialAddress('/tmp/odd@name')).toEqual({
      path: '/tmp/odd@name',
      baudRate: DEFAULT_BAUD_RATE,
    });
  });
});
