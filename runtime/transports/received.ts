import type { Address } from '../routing/address.js';
import { decodeCborFrame } from '../routing/codec/cbor-frame.js';
import { type LocalInfo, Message } from '../routing/message.js';

/**
 * A routing message as it arrived from a link's peer: decoded (DECODE_* KeyhopError on bad
 * bytes), the link's sender worker prepended to the return route so answers go back the same
 * way, and the link's local info attached. Undefined for an empty onward route (a heartbeat).
 */
export function receivedMessage(
  bytes: Uint8Array,
  what: string,
  sender: Address,
  localInfo: readonly LocalInfo[],
): Message | undefined {
  const m = decodeCborFrame(bytes, what);
  if (m.onward.isEmpty) return undefined;
  return new Message(m.onward, m.returnRoute.prepend(sender), m.payload, localInfo);
}
