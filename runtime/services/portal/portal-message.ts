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
 *
 * keyhop's flow-control extension (docs/protocols/portal.md, "Flow control") rides in that
 * tolerance: an empty Payload whose counter flag `00` is followed by `6b 68` ("kh"), a kind and
 * its fields. Rust and Elixir read it as an empty Payload without a counter, and write nothing.
 *
 * ```
 * 03 00 00 6b 68 01 u32le(window)  Offer   outlet -> inlet, right after Pong
 * 03 00 00 6b 68 02 u32le(window)  Accept  inlet -> outlet, answers Offer
 * 03 00 00 6b 68 03                Start   outlet -> inlet, answers Accept
 * 03 00 00 6b 68 04 u32le(bytes)   Credit  either way, bytes consumed
 * ```
 */
export type PortalMessage =
  | { readonly type: 'ping' }
  | { readonly type: 'pong' }
  | { readonly type: 'disconnect' }
  | { readonly type: 'payload'; readonly data: Uint8Array; readonly counter?: number | undefined }
  | FlowMessage;

/** keyhop's flow-control messages (never sent to a peer that has not shown it is keyhop, but Offer). */
export type FlowMessage =
  | { readonly type: 'offer'; readonly window: number }
  | { readonly type: 'accept'; readonly window: number }
  | { readonly type: 'start' }
  | { readonly type: 'credit'; readonly bytes: number };

export const PortalTag = { PING: 0, PONG: 1, DISCONNECT: 2, PAYLOAD: 3 } as const;

/** The kind byte of a flow-control message. */
export const FlowKind = { OFFER: 1, ACCEPT: 2, START: 3, CREDIT: 4 } as const;

/** `03 00 00 6b 68`: an empty Payload, "no counter", then keyhop's marker "kh". */
const FLOW_PREFIX = Uint8Array.of(PortalTag.PAYLOAD, 0, 0, 0x6b, 0x68);

/** Smallest receive window a peer may offer (smaller ones are DECODE_INVALID: no flow control). */
export const PORTAL_MIN_WINDOW = 1024;

/** Largest window or credit a flow-control message can carry (u32). */
export const PORTAL_MAX_WINDOW = 0xffff_ffff;

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
    case 'offer':
    case 'accept':
    case 'start':
    case 'credit':
      return encodeFlowMessage(message);
    default:
      throw new KeyhopError(
        ErrorCodes.ENCODE_LIMIT,
        `unknown portal message type ${(message as { type: unknown }).type}`,
      );
  }
}

/** Encodes a flow-control message (10 bytes, 6 for Start). */
export function encodeFlowMessage(message: FlowMessage): Uint8Array {
  let kind: number;
  let value: number | undefined;
  let min = 1;
  switch (message.type) {
    case 'offer':
      kind = FlowKind.OFFER;
      value = message.window;
      min = PORTAL_MIN_WINDOW;
      break;
    case 'accept':
      kind = FlowKind.ACCEPT;
      value = message.window;
      min = PORTAL_MIN_WINDOW;
      break;
    case 'start':
      kind = FlowKind.START;
      break;
    case 'credit':
      kind = FlowKind.CREDIT;
      value = message.bytes;
      break;
    default:
      throw new KeyhopError(
        ErrorCodes.ENCODE_LIMIT,
        `unknown flow-control message type ${(message as { type: unknown }).type}`,
      );
  }
  if (value !== undefined && (!Number.isInteger(value) || value < min || value > PORTAL_MAX_WINDOW)) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `portal ${message.type} of ${value} is outside ${min}..${PORTAL_MAX_WINDOW}`,
    );
  }
  const out = new Uint8Array(FLOW_PREFIX.length + 1 + (value === undefined ? 0 : 4));
  out.set(FLOW_PREFIX);
  out[FLOW_PREFIX.length] = kind;
  if (value !== undefined) {
    const i = FLOW_PREFIX.length + 1;
    out[i] = value & 0xff;
    out[i + 1] = (value >>> 8) & 0xff;
    out[i + 2] = (value >>> 16) & 0xff;
    out[i + 3] = (value >>> 24) & 0xff;
  }
  return out;
}

/** Whether the counter field at `r.pos` is keyhop's flow-control marker (`00 6b 68` + kind). */
function atFlowMarker(r: BareReader): boolean {
  const b = r.bytes;
  const p = r.pos;
  return r.remaining >= 4 && b[p] === 0 && b[p + 1] === 0x6b && b[p + 2] === 0x68;
}

function u32le(r: BareReader): number {
  const b0 = r.u8();
  const b1 = r.u8();
  const b2 = r.u8();
  const b3 = r.u8();
  return (b0 | (b1 << 8) | (b2 << 16)) + b3 * 0x100_0000;
}

/** The rest of a flow-control message, after the marker. Unknown kinds are an empty Payload. */
function decodeFlow(r: BareReader, data: Uint8Array): PortalMessage {
  r.pos += 3;
  const kind = r.u8();
  switch (kind) {
    case FlowKind.OFFER:
    case FlowKind.ACCEPT: {
      const window = u32le(r);
      if (window < PORTAL_MIN_WINDOW) r.fail(`flow-control window ${window} below ${PORTAL_MIN_WINDOW}`);
      return kind === FlowKind.OFFER ? { type: 'offer', window } : { type: 'accept', window };
    }
    case FlowKind.START:
      return { type: 'start' };
    case FlowKind.CREDIT: {
      const bytes = u32le(r);
      if (bytes === 0) r.fail('flow-control credit of 0 bytes');
      return { type: 'credit', bytes };
    }
    default:
      // A later kind: what an older keyhop (and Ockam) sees, an empty Payload, ignored.
      return { type: 'payload', data };
  }
}

/**
 * Decodes a portal message. A Payload's `data` is a view into `bytes` (no copy). Throws
 * DECODE_TRUNCATED, DECODE_INVALID or DECODE_LIMIT (data longer than `maxPayload`, checked before
 * slicing). Flow-control messages decode to their own types.
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
      if (data.length === 0 && atFlowMarker(r)) return decodeFlow(r, data);
      if (r.remaining >= 3 && r.u8() === 1) return { type: 'payload', data, counter: r.u16le() };
      return { type: 'payload', data };
    }
    default:
      return r.fail(`unknown portal message tag ${tag}`);
  }
}

/** Text form for logs and errors (never the data itself). */
export function describePortalMessage(m: PortalMessage): string {
  if (m.type === 'offer' || m.type === 'accept') return `${m.type}(window ${m.window})`;
  if (m.type === 'credit') return `credit(${m.bytes} bytes)`;
  if (m.type !== 'payload') return m.type;
  return `payload(${m.data.length} bytes${m.counter === undefined ? '' : `, counter ${m.counter}`})`;
}

/** The u16 that follows `counter`, wrapping like Rust's (`u16::MAX` -> 0). */
export function nextCounter(counter: number): number {
  return (counter + 1) & 0xffff;
}
