import { BareReader } from '../../codec/bare.js';
import { ErrorCodes, KeyhopError } from '../../errors.js';

/**
 * Ockam's TCP portal protocol (`ockam_transport_tcp/src/portal/portal_message.rs`, Elixir
 * `tunnel_protocol.ex`): a BARE union.
 *
 * ```
 * 00                                    Ping        inlet -> outlet, opens a portal connection
 * 01                                    Pong        outlet -> inlet, sent from the new outlet worker
 * 02                                    Disconnect  either way, the sender's socket closed
 * 03 uleb128(len) data [00 | 01 u16le]  Payload     socket bytes, with an optional packet counter
 * ```
 *
 * Decoding follows the Rust rule: after the data, a counter field is read only if at least 3
 * bytes remain, and only a flag byte `01` means a counter follows. Anything shorter (the `00`
 * Elixir writes, or nothing as Rust writes) means "no counter"; trailing bytes are ignored, as
 * the Rust decoder ignores them.
 */
export type PortalMessage =
  | { readonly type: 'ping' }
  | { readonly type: 'pong' }
  | { readonly type: 'disconnect' }
  | { readonly type: 'payload'; readonly data: Uint8Array; readonly counter?: number | undefined };

export const PortalTag = { PING: 0, PONG: 1, DISCONNECT: 2, PAYLOAD: 3 } as const;

/**
 * Most socket bytes keyhop puts in one Payload: Ockam's `MAX_PAYLOAD_SIZE` (48 KiB since
 * `94c10b97`, 2022-05-24), the read-buffer size of its portal receiver.
 */
export const PORTAL_MAX_PAYLOAD = 48 * 1024;

/** Socket bytes per Payload keyhop sends by default (see `PortalTuning.maxPayload`). */
export const PORTAL_DEFAULT_CHUNK = 16 * 1024;

/**
 * Most payload bytes keyhop accepts in one received Payload. Rust never sends more than 48 KiB,
 * but the Elixir implementation forwards whole `gen_tcp` reads, which can be larger; the limit
 * is checked before anything is sliced or allocated.
 */
export const PORTAL_MAX_RECEIVED_PAYLOAD = 256 * 1024;

export interface PortalEncodeOptions {
  /**
   * Write the optional counter field (`00`, or `01` + u16 LE when the message has a counter), as
   * Elixir does. Default false: like Rust HEAD, which omits the field (and so any counter) until
   * "the orchestrator accepts it"; every decoder accepts both forms.
   */
  counterField?: boolean;
}

export const PING: PortalMessage = Object.freeze({ type: 'ping' });
export const PONG: PortalMessage = Object.freeze({ type: 'pong' });
export const DISCONNECT: PortalMessage = Object.freeze({ type: 'disconnect' });

const PING_BYTES = Uint8Array.of(PortalTag.PING);
const PONG_BYTES = Uint8Array.of(PortalTag.PONG);
const DISCONNECT_BYTES = Uint8Array.of(PortalTag.DISCONNECT);

/** uleb128 size of `n` (n < 2^53). */
function ulebSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/**
 * Encodes one Payload with a single allocation and one copy of `data` (the hot path: every socket
 * read becomes one of these).
 */
export function encodePayload(
  data: Uint8Array,
  counter?: number,
  options: PortalEncodeOptions = {},
  maxPayload = PORTAL_MAX_PAYLOAD,
): Uint8Array {
  if (data.length > maxPayload) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `portal payload of ${data.length} bytes exceeds the limit of ${maxPayload}`,
    );
  }
  if (counter !== undefined && (!Number.isInteger(counter) || counter < 0 || counter > 0xffff)) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `portal packet counter ${counter} is not a u16`);
  }
  const head = 1 + ulebSize(data.length);
  const tail = options.counterField ? (counter === undefined ? 1 : 3) : 0;
  const out = new Uint8Array(head + data.length + tail);
  out[0] = PortalTag.PAYLOAD;
  let n = data.length;
  let i = 1;
  while (n >= 0x80) {
    out[i++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[i++] = n;
  out.set(data, i);
  i += data.length;
  if (tail === 1) out[i] = 0;
  else if (tail === 3) {
    out[i] = 1;
    out[i + 1] = counter! & 0xff;
    out[i + 2] = counter! >>> 8;
  }
  return out;
}

export function encodePortalMessage(message: PortalMessage, options: PortalEncodeOptions = {}): Uint8Array {
  switch (message.type) {
    case 'ping':
      return PING_BYTES.slice();
    case 'pong':
      return PONG_BYTES.slice();
    case 'disconnect':
      return DISCONNECT_BYTES.slice();
    case 'payload':
      return encodePayload(message.data, message.counter, options);
    default:
      throw new KeyhopError(
        ErrorCodes.ENCODE_LIMIT,
        `unknown portal message type ${(message as { type: unknown }).type}`,
      );
  }
}

/**
 * Decodes a portal message. A Payload's `data` is a view into `bytes` (no copy). Throws
 * DECODE_TRUNCATED, DECODE_INVALID or DECODE_LIMIT (data longer than `maxPayload`, checked before
 * slicing).
 */
export function decodePortalMessage(
  bytes: Uint8Array,
  maxPayload = PORTAL_MAX_RECEIVED_PAYLOAD,
): PortalMessage {
  const r = new BareReader(bytes, 'portal message');
  const tag = r.u8();
  switch (tag) {
    case PortalTag.PING:
      return PING;
    case PortalTag.PONG:
      return PONG;
    case PortalTag.DISCONNECT:
      return DISCONNECT;
    case PortalTag.PAYLOAD: {
      const data = r.bytesValue(maxPayload);
      if (r.remaining >= 3 && r.u8() === 1) return { type: 'payload', data, counter: r.u16le() };
      return { type: 'payload', data };
    }
    default:
      return r.fail(`unknown portal message tag ${tag}`);
  }
}

/** Text form for logs and errors (never the data itself). */
export function describePortalMessage(m: PortalMessage): string {
  if (m.type !== 'payload') return m.type;
  return `payload(${m.data.length} bytes${m.counter === undefined ? '' : `, counter ${m.counter}`})`;
}

/** The u16 that follows `counter`, wrapping like Rust's (`u16::MAX` -> 0). */
export function nextCounter(counter: number): number {
  return (counter + 1) & 0xffff;
}
