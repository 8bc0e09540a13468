import { describe, expect, it } from 'vitest';
import { sourceKey } from './source-key.js';

describe('sourceKey', () => {
  it('keeps IPv4 addresses, also IPv4-mapped ones', () => {
    expect(sourceKey('127.0.0.2')).toBe('127.0.0.2');
    expect(sourceKey('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(sourceKey('::FFFF:10.1.2.3')).toBe('10.1.2.3');
  });

  it('groups IPv6 addresses by /64, however they are written', () => {
    const k = '2001:db8:1:2::/64';
    expect(sourceKey('2001:db8:1:2::1')).toBe(k);
    expect(sourceKey('2001:0db8:0001:0002:aaaa:bbbb:cccc:dddd')).toBe(k);
    expect(sourceKey('2001:DB8:1:2:ffff::')).toBe(k);
    expect(sourceKey('2001:db8:1:2::1%eth0')).toBe(k);
    expect(sourceKey('2001:db8:1:3::1')).not.toBe(k);
    expect(sourceKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(sourceKey('::1')).toBe('0:0:0:0::/64');
    expect(sourceKey('fe80::1%2')).toBe('fe80:0:0:0::/64');
    expect(sourceKey('64:ff9b::192.0.2.1')).toBe('64:ff9b:0:0::/64');
    expect(sourceKey('1:2:3:4:5::6.7.8.9')).toBe('1:2:3:4::/64');
  });
});
