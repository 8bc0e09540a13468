import { ErrorCodes, KeyhopError } from '../../errors.js';
import { MAX_MESSAGE_BYTES } from '../../routing/codec/limits.js';
import { cobsDecodeInto, cobsEncodeInto, cobsMaxEncodedLength } from './cobs.js';
import { crc32 } from './crc32.js';

/**
 * keyhop's serial frame (docs/protocols/serial.md). Ockam defines no serial transport, so this
 * format is keyhop's own:
 *
 *   wire  = 00 ‖ COBS(body) ‖ 00
 *   body  = version u8 (= 1) ‖ type u8 ‖ seq u16 BE ‖ payload ‖ crc u32 BE
 *
 * `crc` is the CRC-32 (IEEE 802.3) of every body byte before it. The leading 00 ends whatever
 * line noise came before, so a frame whose trailing delimiter was lost costs only that frame,
 * not the next one too.
 */

/** The version byte that starts every frame body. */
export const SERIAL_PROTOCOL_VERSION = 1;
/** Frame delimiter on the wire. COBS guarantees it never occurs inside a frame. */
export const FRAME_DELIMITER = 0x00;
/** version + type + seq. */
export const FRAME_HEADER_BYTES = 4;
/** The CRC-32 trailer. */
export const FRAME_CRC_BYTES = 4;
/** Body bytes besides the payload. */
export const FRAME_OVERHEAD_BYTES = FRAME_HEADER_BYTES + FRAME_CRC_BYTES;
/** Default largest payload of one frame: 64 KiB. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024;
/** No link may be configured above this: the largest routing message with 64 KiB of routes. */
export const MAX_PAYLOAD_BYTES_LIMIT = MAX_MESSAGE_BYTES + 64 * 1024;

/** Frame types. Unknown types pass the framing layer and are dropped by the link layer. */
export const FrameType = {
  /** Payload without reliability (the link's reliability is off). `seq` counts frames, for diagnostics. */
  DATA: 0,
  /** Cumulative acknowledgement: `seq` is the next RDATA sequence number expected. Empty payload. */
  ACK: 1,
  /** Start of a sending epoch: `seq` is its first RDATA number; payload nonce u32 ‖ flags u8. */
  RESET: 2,
  /** Answer to RESET: `seq` and the nonce (payload, u32) echoed. */
  RESET_ACK: 3,
  /** Payload with reliability: `seq` numbers it, mod 2^16. */
  RDATA: 4,
} as const;

export type FrameTypeName = keyof typeof FrameType;

export interface SerialFrame {
  /** u8; see FrameType. */
  type: number;
  /** u16. */
  seq: number;
  payload: Uint8Array;
}

/** Why the reader discarded the bytes between two delimiters. */
export type SerialDropReason = 'cobs' | 'truncated' | 'crc' | 'version' | 'too_large';

export type SerialDrops = Record<SerialDropReason, number>;

/** Most bytes a frame with a payload of at most `maxPayloadBytes` takes on the wire, delimiters included. */
export function maxWireBytes(maxPayloadBytes: number): number {
  return 2 + cobsMaxEncodedLength(FRAME_OVERHEAD_BYTES + maxPayloadBytes);
}

function checkMaxPayload(maxPayloadBytes: number): number {
  if (
    !Number.isSafeInteger(maxPayloadBytes) ||
    maxPayloadBytes < 0 ||
    maxPayloadBytes > MAX_PAYLOAD_BYTES_LIMIT
  ) {
    throw new KeyhopError(
      ErrorCodes.CONFIG_INVALID,
      `serial maxPayloadBytes must be an integer in 0..${MAX_PAYLOAD_BYTES_LIMIT}, got ${maxPayloadBytes}`,
    );
  }
  return maxPayloadBytes;
}

/**
 * The wire bytes of one frame, both delimiters included. Throws KeyhopError ENCODE_LIMIT if the
 * payload is larger than `maxPayloadBytes`, or the type or seq are out of range.
 */
export function encodeFrame(frame: SerialFrame, maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES): Uint8Array {
  const { type, seq, payload } = frame;
  if (!Number.isInteger(type) || type < 0 || type > 0xff) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `serial frame type ${type} is not a u8`);
  }
  if (!Number.isInteger(seq) || seq < 0 || seq > 0xffff) {
    throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `serial frame seq ${seq} is not a u16`);
  }
  if (payload.length > maxPayloadBytes) {
    throw new KeyhopError(
      ErrorCodes.ENCODE_LIMIT,
      `serial frame payload of ${payload.length} bytes exceeds the ${maxPayloadBytes}-byte limit`,
    );
  }
  const n = FRAME_OVERHEAD_BYTES + payload.length;
  const body = new Uint8Array(n);
  body[0] = SERIAL_PROTOCOL_VERSION;
  body[1] = type;
  body[2] = seq >>> 8;
  body[3] = seq & 0xff;
  body.set(payload, FRAME_HEADER_BYTES);
  const crc = crc32(body, 0, n - FRAME_CRC_BYTES);
  body[n - 4] = crc >>> 24;
  body[n - 3] = (crc >>> 16) & 0xff;
  body[n - 2] = (crc >>> 8) & 0xff;
  body[n - 1] = crc & 0xff;
  const out = new Uint8Array(2 + cobsMaxEncodedLength(n));
  out[0] = FRAME_DELIMITER;
  const end = cobsEncodeInto(body, out, 1);
  out[end] = FRAME_DELIMITER;
  return out.subarray(0, end + 1);
}

type DecodeResult =
  | { frame: SerialFrame; reason?: undefined }
  | { frame?: undefined; reason: SerialDropReason; version?: number };

/**
 * Decodes the COBS bytes `src[start..end)` found between two delimiters, without throwing. Checks
 * in this order: COBS, length, CRC, version. The CRC comes before the version so that line noise
 * counts as `crc`; a `version` drop is a well-formed frame from another protocol version.
 */
function tryDecode(src: Uint8Array, start: number, end: number, maxPayloadBytes: number): DecodeResult {
  if (end - start > cobsMaxEncodedLength(FRAME_OVERHEAD_BYTES + maxPayloadBytes))
    return { reason: 'too_large' };
  const body = new Uint8Array(Math.max(0, end - start - 1));
  const n = cobsDecodeInto(src, start, end, body);
  if (n < 0) return { reason: 'cobs' };
  if (n < FRAME_OVERHEAD_BYTES) return { reason: 'truncated' };
  if (n - FRAME_OVERHEAD_BYTES > maxPayloadBytes) return { reason: 'too_large' };
  const crcAt = n - FRAME_CRC_BYTES;
  const sent =
    ((body[crcAt]! << 24) | (body[crcAt + 1]! << 16) | (body[crcAt + 2]! << 8) | body[crcAt + 3]!) >>> 0;
  if (crc32(body, 0, crcAt) !== sent) return { reason: 'crc' };
  if (body[0] !== SERIAL_PROTOCOL_VERSION) return { reason: 'version', version: body[0]! };
  return {
    frame: {
      type: body[1]!,
      seq: (body[2]! << 8) | body[3]!,
      payload: body.subarray(FRAME_HEADER_BYTES, crcAt),
    },
  };
}

/**
 * Decodes exactly one frame as encodeFrame writes it; the two delimiters may be present or not.
 * Throws KeyhopError: DECODE_INVALID (bad COBS, a delimiter inside, CRC mismatch),
 * DECODE_TRUNCATED (body shorter than 8 bytes), DECODE_LIMIT (payload above `maxPayloadBytes`),
 * DECODE_VERSION (a version other than 1).
 */
export function decodeFrame(wire: Uint8Array, maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES): SerialFrame {
  let start = 0;
  let end = wire.length;
  if (start < end && wire[start] === FRAME_DELIMITER) start++;
  if (start < end && wire[end - 1] === FRAME_DELIMITER) end--;
  const r = tryDecode(wire, start, end, maxPayloadBytes);
  if (r.frame) return r.frame;
  switch (r.reason) {
    case 'cobs':
      throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'serial frame: invalid COBS encoding');
    case 'crc':
      throw new KeyhopError(ErrorCodes.DECODE_INVALID, 'serial frame: CRC-32 mismatch');
    case 'truncated':
      throw new KeyhopError(
        ErrorCodes.DECODE_TRUNCATED,
        'serial frame: shorter than its 8-byte header and CRC',
      );
    case 'too_large':
      throw new KeyhopError(
        ErrorCodes.DECODE_LIMIT,
        `serial frame: payload exceeds the ${maxPayloadBytes}-byte limit`,
      );
    case 'version':
      throw new KeyhopError(
        ErrorCodes.DECODE_VERSION,
        `serial frame: version 0x${r.version?.toString(16)}, expected 0x01`,
      );
  }
}

export interface SerialFrameReaderOptions {
  /** Largest payload accepted. Default 64 KiB; at most MAX_PAYLOAD_BYTES_LIMIT. */
  maxPayloadBytes?: number;
  /**
   * Called on every drop with the bytes discarded (for `too_large`, those seen when the limit was
   * crossed). For debug logging; must not throw.
   */
  onDrop?: (reason: SerialDropReason, bytes: number) => void;
}

const INITIAL_CAPACITY = 256;

/**
 * Splits a serial byte stream into frames. Never throws on any input: whatever lies between two
 * delimiters and is not a valid frame is dropped, counted by reason in `drops`, and reading
 * resumes at the next delimiter. Memory is bounded: the bytes of a frame are only buffered while
 * they fit in maxWireBytes(maxPayloadBytes) − 2; a longer run is counted as `too_large` the moment
 * it overflows and is skipped, unbuffered, up to the next delimiter.
 */
export class SerialFrameReader {
  readonly drops: SerialDrops = { cobs: 0, truncated: 0, crc: 0, version: 0, too_large: 0 };
  /** Frames returned so far. */
  accepted = 0;
  readonly maxPayloadBytes: number;
  /** Most COBS bytes between two delimiters that are buffered. */
  readonly maxEncodedBytes: number;
  private readonly onDrop: ((reason: SerialDropReason, bytes: number) => void) | undefined;
  private buf: Uint8Array;
  private len = 0;
  /** Skipping an over-long run until the next delimiter. */
  private discarding = false;

  constructor(options: SerialFrameReaderOptions = {}) {
    this.maxPayloadBytes = checkMaxPayload(options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES);
    this.maxEncodedBytes = cobsMaxEncodedLength(FRAME_OVERHEAD_BYTES + this.maxPayloadBytes);
    this.onDrop = options.onDrop;
    this.buf = new Uint8Array(Math.min(INITIAL_CAPACITY, this.maxEncodedBytes));
  }

  /** Feeds bytes; returns the frames they complete, appended to `frames`. */
  push(chunk: Uint8Array, frames: SerialFrame[] = []): SerialFrame[] {
    let pos = 0;
    const size = chunk.length;
    while (pos < size) {
      const z = chunk.indexOf(FRAME_DELIMITER, pos);
      const end = z < 0 ? size : z;
      const n = end - pos;
      if (this.discarding) {
        // Skipping an over-long run: nothing is kept.
      } else if (this.len + n > this.maxEncodedBytes) {
        // Checked before buffering: the run is too long whatever follows, so stop keeping it.
        this.drop('too_large', this.len + n);
        this.len = 0;
        this.discarding = true;
      } else if (z >= 0 && this.len === 0) {
        // A whole frame inside this chunk: decode it in place, no copy.
        if (n > 0) this.finish(chunk, pos, end, frames);
      } else {
        this.append(chunk, pos, end);
      }
      if (z < 0) break;
      if (this.discarding) {
        this.discarding = false;
      } else if (this.len > 0) {
        this.finish(this.buf, 0, this.len, frames);
      }
      this.len = 0;
      pos = z + 1;
    }
    return frames;
  }

  /** Bytes buffered for an incomplete frame. */
  get pending(): number {
    return this.len;
  }

  /** Forgets a partial frame (for example when the port is reopened). */
  reset(): void {
    this.len = 0;
    this.discarding = false;
  }

  private append(src: Uint8Array, start: number, end: number): void {
    const need = this.len + (end - start);
    if (need > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < need) cap *= 2;
      const grown = new Uint8Array(Math.min(cap, this.maxEncodedBytes));
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    this.buf.set(src.subarray(start, end), this.len);
    this.len = need;
  }

  private finish(src: Uint8Array, start: number, end: number, frames: SerialFrame[]): void {
    const r = tryDecode(src, start, end, this.maxPayloadBytes);
    if (r.frame) {
      this.accepted++;
      frames.push(r.frame);
    } else {
      this.drop(r.reason, end - start);
    }
  }

  private drop(reason: SerialDropReason, bytes: number): void {
    this.drops[reason]++;
    this.onDrop?.(reason, bytes);
  }
}
