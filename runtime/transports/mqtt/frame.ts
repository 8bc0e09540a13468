import { ErrorCodes, KeyhopError } from '../../errors.js';

/**
 * keyhop's MQTT payload, version 1 (docs/protocols/mqtt.md):
 *
 *   DATA  01 01 | stream id (8) | seq u32 BE | base u32 BE | CBOR routing message
 *   ACK   01 02 | stream id (8) | acked u32 BE
 *
 * A stream is one sender mailbox's ordered messages to one receiver mailbox. `seq` starts at 1;
 * `base` is the oldest seq the sender still keeps (everything before it was acknowledged or given
 * up), so a receiver that has no state for the stream starts there; `acked` says every seq up to
 * it was delivered.
 */
export const MQTT_FRAME_VERSION = 0x01;
export const FrameKind = { DATA: 0x01, ACK: 0x02 } as const;

export const STREAM_ID_BYTES = 8;
export const DATA_HEAD_BYTES = 2 + STREAM_ID_BYTES + 4 + 4;
export const ACK_BYTES = 2 + STREAM_ID_BYTES + 4;
/** The largest seq; a stream that reaches it is replaced by a new one. */
export const MAX_SEQ = 0xffff_ffff;

export interface DataFrame {
  kind: typeof FrameKind.DATA;
  stream: Uint8Array;
  seq: number;
  base: number;
  /** The routing message's bytes (a view into the payload, not a copy). */
  body: Uint8Array;
}

export interface AckFrame {
  kind: typeof FrameKind.ACK;
  stream: Uint8Array;
  acked: number;
}

export type MqttFrame = DataFrame | AckFrame;

export function encodeData(stream: Uint8Array, seq: number, base: number, body: Uint8Array): Uint8Array {
  checkStream(stream);
  const out = new Uint8Array(DATA_HEAD_BYTES + body.length);
  const v = new DataView(out.buffer);
  out[0] = MQTT_FRAME_VERSION;
  out[1] = FrameKind.DATA;
  out.set(stream, 2);
  v.setUint32(10, checkSeq(seq, 1), false);
  v.setUint32(14, checkSeq(base, 1), false);
  out.set(body, DATA_HEAD_BYTES);
  return out;
}

export function encodeAck(stream: Uint8Array, acked: number): Uint8Array {
  checkStream(stream);
  const out = new Uint8Array(ACK_BYTES);
  out[0] = MQTT_FRAME_VERSION;
  out[1] = FrameKind.ACK;
  out.set(stream, 2);
  new DataView(out.buffer).setUint32(10, checkSeq(acked, 0), false);
  return out;
}

/**
 * Reads one payload. DECODE_VERSION for another version, DECODE_TRUNCATED / DECODE_INVALID for
 * bad bytes, DECODE_LIMIT for a body over `maxBodyBytes` (checked before anything is copied).
 */
export function decodeFrame(payload: Uint8Array, maxBodyBytes: number): MqttFrame {
  if (payload.length < 2) throw bad(ErrorCodes.DECODE_TRUNCATED, `${payload.length} bytes, no header`);
  if (payload[0] !== MQTT_FRAME_VERSION) {
    throw bad(ErrorCodes.DECODE_VERSION, `version ${payload[0]}, this node speaks ${MQTT_FRAME_VERSION}`);
  }
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const kind = payload[1];
  if (kind === FrameKind.DATA) {
    if (payload.length < DATA_HEAD_BYTES) throw bad(ErrorCodes.DECODE_TRUNCATED, 'DATA header cut short');
    const bodyBytes = payload.length - DATA_HEAD_BYTES;
    if (bodyBytes > maxBodyBytes) {
      throw bad(ErrorCodes.DECODE_LIMIT, `DATA body of ${bodyBytes} bytes exceeds ${maxBodyBytes}`);
    }
    if (bodyBytes === 0) throw bad(ErrorCodes.DECODE_INVALID, 'DATA without a routing message');
    const seq = v.getUint32(10, false);
    const base = v.getUint32(14, false);
    if (seq === 0 || base === 0 || base > seq) {
      throw bad(ErrorCodes.DECODE_INVALID, `DATA seq ${seq} base ${base}: need 1 <= base <= seq`);
    }
    return {
      kind: FrameKind.DATA,
      stream: payload.subarray(2, 2 + STREAM_ID_BYTES),
      seq,
      base,
      body: payload.subarray(DATA_HEAD_BYTES),
    };
  }
  if (kind === FrameKind.ACK) {
    if (payload.length !== ACK_BYTES) {
      throw bad(
        payload.length < ACK_BYTES ? ErrorCodes.DECODE_TRUNCATED : ErrorCodes.DECODE_INVALID,
        `ACK of ${payload.length} bytes, expected ${ACK_BYTES}`,
      );
    }
    return {
      kind: FrameKind.ACK,
      stream: payload.subarray(2, 2 + STREAM_ID_BYTES),
      acked: v.getUint32(10, false),
    };
  }
  throw bad(ErrorCodes.DECODE_INVALID, `unknown frame kind ${kind}`);
}

/** A stream id as a map key. */
export function streamKey(stream: Uint8Array): string {
  return Buffer.from(stream.buffer, stream.byteOffset, stream.byteLength).toString('hex');
}

function checkStream(stream: Uint8Array): void {
  if (stream.length !== STREAM_ID_BYTES) {
    throw new KeyhopError(
      ErrorCodes.INTERNAL,
      `stream id of ${stream.length} bytes, expected ${STREAM_ID_BYTES}`,
    );
  }
}

function checkSeq(n: number, min: number): number {
  if (!Number.isInteger(n) || n < min || n > MAX_SEQ) {
    throw new KeyhopError(ErrorCodes.INTERNAL, `sequence number ${n} out of range`);
  }
  return n;
}

function bad(code: (typeof ErrorCodes)[keyof typeof ErrorCodes], detail: string): KeyhopError {
  return new KeyhopError(code, `MQTT frame: ${detail}`);
}
