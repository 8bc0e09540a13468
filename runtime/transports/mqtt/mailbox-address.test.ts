import { describe, expect, it } from 'vitest';
import { Address } from '../../routing/address.js';
import {
  checkTopicPrefix,
  inboxFilter,
  mailboxAddress,
  mailboxTopic,
  parseMailboxAddress,
  senderOfTopic,
} from './mailbox-address.js';

describe('MQTT mailbox addresses and topics', () => {
  it('parses 7#broker/mailbox, the broker being a name or host:port', () => {
    expect(parseMailboxAddress(Address.parse('7#fleet/sensor-1'))).toEqual({
      broker: 'fleet',
      mailbox: 'sensor-1',
    });
    expect(parseMailboxAddress(Address.parse('7#127.0.0.1:1883/hub'))).toEqual({
      broker: '127.0.0.1:1883',
      mailbox: 'hub',
    });
    expect(parseMailboxAddress(Address.parse('7#[::1]:1883/hub'))).toEqual({
      broker: '[::1]:1883',
      mailbox: 'hub',
    });
    expect(mailboxAddress('fleet', 'a.b_c-d').toString()).toBe('7#fleet/a.b_c-d');
  });

  it.each([
    '7#fleet',
    '7#/mailbox',
    '7#fleet/',
    '7#fleet/has+plus',
    '7#fleet/has#hash'.replace('#hash', '%23'),
    '7#fleet/-leading-dash',
    `7#fleet/${'x'.repeat(65)}`,
    '7#a/b/c+',
    '7#fle et/box',
    '1#fleet/box',
  ])('refuses %s', (text) => {
    expect(() => parseMailboxAddress(Address.parse(text))).toThrow(
      expect.objectContaining({ code: 'ADDRESS_INVALID' }),
    );
  });

  it('names topics so a broker ACL can confine a mailbox (read keyhop/%u/+, write keyhop/+/%u)', () => {
    expect(mailboxTopic('keyhop', 'bob', 'alice')).toBe('keyhop/bob/alice');
    expect(inboxFilter('keyhop', 'bob')).toBe('keyhop/bob/+');
    expect(senderOfTopic('keyhop', 'bob', 'keyhop/bob/alice')).toBe('alice');
    expect(senderOfTopic('site/keyhop', 'bob', 'site/keyhop/bob/alice')).toBe('alice');
    for (const bad of [
      'keyhop/bob',
      'keyhop/carol/alice',
      'keyhop/bob/a/b',
      'keyhop/bob/',
      'other/bob/alice',
      'keyhop/bob/+',
    ]) {
      expect(senderOfTopic('keyhop', 'bob', bad)).toBeUndefined();
    }
  });

  it('refuses topic prefixes with wildcards, empty levels or a $', () => {
    expect(checkTopicPrefix('site-1/keyhop')).toBe('site-1/keyhop');
    for (const bad of ['', 'a//b', 'a/+', 'a/#', '$SYS', '/a', 'a/']) {
      expect(() => checkTopicPrefix(bad)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    }
  });
});
