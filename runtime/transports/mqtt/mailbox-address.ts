import { ErrorCodes, KeyhopError } from '../../errors.js';
import { Address, TransportType } from '../../routing/address.js';

/**
 * A mailbox name: one MQTT topic level that is also a safe broker user name or client id, so an
 * operator's ACL can confine a device to `keyhop/%u/+` (docs/protocols/mqtt.md).
 */
const MAILBOX = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** A broker name as addresses write it: a connection's name, or `host:port` / `[v6]:port`. */
const BROKER = /^[A-Za-z0-9_.:[\]-]{1,255}$/;
/** Topic prefix levels: no wildcards, no empty level, not a `$` system topic. */
const PREFIX_LEVEL = /^[A-Za-z0-9_.-]{1,64}$/;

export interface MailboxAddress {
  broker: string;
  mailbox: string;
}

export function checkMailboxName(s: string, what = 'mailbox'): string {
  if (typeof s !== 'string' || !MAILBOX.test(s)) {
    throw new KeyhopError(
      ErrorCodes.ADDRESS_INVALID,
      `${what} "${String(s).slice(0, 80)}" is not a mailbox name (1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit)`,
    );
  }
  return s;
}

export function checkBrokerName(s: string): string {
  if (typeof s !== 'string' || !BROKER.test(s)) {
    throw new KeyhopError(
      ErrorCodes.ADDRESS_INVALID,
      `broker name "${String(s).slice(0, 80)}" is not valid (1-255 of A-Z a-z 0-9 _ . : - [ ])`,
    );
  }
  return s;
}

export function checkTopicPrefix(prefix: string): string {
  const levels = typeof prefix === 'string' ? prefix.split('/') : [];
  if (levels.length === 0 || levels.length > 8 || !levels.every((l) => PREFIX_LEVEL.test(l))) {
    throw new KeyhopError(
      ErrorCodes.CONFIG_INVALID,
      `MQTT topic prefix "${String(prefix).slice(0, 80)}" must be 1-8 levels of A-Z a-z 0-9 _ . - (no wildcards, no $)`,
    );
  }
  return prefix;
}

/** Where a broker URL points. */
export interface BrokerEndpoint {
  host: string;
  port: number;
  tls: boolean;
  /** `host:port` as addresses may name the broker (IPv6 in brackets). */
  hostPort: string;
}

/** `mqtt://host[:1883]` or `mqtts://host[:8883]`, nothing else (CONFIG_INVALID). */
export function parseBrokerUrl(text: string): BrokerEndpoint {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (
    !url ||
    (url.protocol !== 'mqtt:' && url.protocol !== 'mqtts:') ||
    (url.pathname !== '' && url.pathname !== '/') ||
    url.hostname === ''
  ) {
    throw new KeyhopError(
      ErrorCodes.CONFIG_INVALID,
      `"${String(text).slice(0, 200)}" is not a broker URL (mqtt://host:port or mqtts://host:port)`,
    );
  }
  const tls = url.protocol === 'mqtts:';
  const port = Number(url.port || (tls ? 8883 : 1883));
  return { host: url.hostname.replace(/^\[|\]$/g, ''), port, tls, hostPort: `${url.hostname}:${port}` };
}

/** `7#broker/mailbox` → its parts. The mailbox is after the last `/`. */
export function parseMailboxAddress(address: Address): MailboxAddress {
  if (address.type !== TransportType.MQTT) {
    throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `${address} is not an MQTT mailbox address`);
  }
  const text = address.text;
  const slash = text.lastIndexOf('/');
  if (slash <= 0) {
    throw new KeyhopError(ErrorCodes.ADDRESS_INVALID, `${address}: an MQTT address is 7#broker/mailbox`);
  }
  return { broker: checkBrokerName(text.slice(0, slash)), mailbox: checkMailboxName(text.slice(slash + 1)) };
}

export function mailboxAddress(broker: string, mailbox: string): Address {
  return new Address(TransportType.MQTT, `${checkBrokerName(broker)}/${checkMailboxName(mailbox)}`);
}

/** The topic that carries frames from `from` to `to`. */
export function mailboxTopic(prefix: string, to: string, from: string): string {
  return `${prefix}/${to}/${from}`;
}

/** The subscription that receives every frame sent to `mailbox`. */
export function inboxFilter(prefix: string, mailbox: string): string {
  return `${prefix}/${mailbox}/+`;
}

/**
 * The sender's mailbox named by a topic that arrived on `inboxFilter(prefix, mailbox)`, or
 * undefined when the topic is not one (a broker may deliver anything to a subscriber).
 */
export function senderOfTopic(prefix: string, mailbox: string, topic: string): string | undefined {
  const head = `${prefix}/${mailbox}/`;
  if (typeof topic !== 'string' || !topic.startsWith(head)) return undefined;
  const from = topic.slice(head.length);
  return MAILBOX.test(from) ? from : undefined;
}
