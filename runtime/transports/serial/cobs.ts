import { ErrorCodes, KeyhopError } from '../../errors.js';

/**
 * Consistent Overhead Byte Stuffing (S. Cheshire and M. Baker, "Consistent Overhead Byte
 * Stuffing", IEEE/ACM Transactions on Networking 7(2), 1999). It rewrites any byte string into
 * one that contains no 0x00, so 0x00 can delimit frames on a serial line. The cost is at most one
 * byte per 254 bytes of data, plus one.
 *
 * The encoding is a sequence of groups. A group is a code byte `c` (1..255) followed by `c − 1`
 * data bytes, none of them zero. Groups with `c < 255` stand for their data bytes followed by a
 * 0x00. A group with `c = 255` stands for its 254 data bytes alone. The zero implied by the last
 * group is not part of the data.
 *
 * keyhop encodes in the minimal form: when the data ends with a full run of 254 non-zero bytes,
 * the encoding ends with that `FF` group. The paper's own `StuffData`, and common embedded
 * encoders such as Arduino's PacketSerial, add an empty `01` group in that case. The decoder
 * accepts both forms.
 */

/** Largest COBS encoding of `n` data bytes, in either accepted form. */
export function cobsMaxEncodedLength(n: number): number {
  return n + 1 + Math.floor(n / 254);
}

/** Encodes `data`. The result contains no 0x00 and is at most cobsMaxEncodedLength(n) bytes. */
export function cobsEncode(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(cobsMaxEncodedLength(data.length));
  const n = cobsEncodeInto(data, out, 0);
  return out.subarray(0, n);
}

/**
 * Encodes `data` into `out` at `at` and returns the position after the last written byte. `out`
 * must have cobsMaxEncodedLength(data.length) bytes free from `at`.
 */
export function cobsEncodeInto(data: Uint8Array, out: Uint8Array, at: number): number {
  let codeAt = at;
  let w = at + 1;
  let code = 1;
  const end = data.length;
  for (let i = 0; i < end; i++) {
    const b = data[i]!;
    if (b === 0) {
      out[codeAt] = code;
      codeAt = w++;
      code = 1;
      continue;
    }
    out[w++] = b;
    code++;
    if (code === 0xff) {
      out[codeAt] = code;
      code = 1;
      // Minimal form: no empty group after a full run that ends the data.
      if (i + 1 === end) return w;
      codeAt = w++;
    }
  }
  out[codeAt] = code;
  return w;
}

/**
 * Decodes one COBS-encoded frame, without its delimiters. Throws KeyhopError DECODE_INVALID if
 * `encoded` is empty, contains 0x00, or has a code byte that runs past its end.
 */
export function cobsDecode(encoded: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.max(0, encoded.length - 1));
  const n = cobsDecodeInto(encoded, 0, encoded.length, out);
  if (n < 0) throw new KeyhopError(ErrorCodes.DECODE_INVALID, `COBS: ${COBS_ERRORS[-n - 1]}`);
  return out.subarray(0, n);
}

const COBS_ERRORS = ['empty input', 'zero byte inside the frame', 'code byte runs past the end'] as const;

/**
 * Decodes `src[start..end)` into `out` (which needs `end − start − 1` bytes) without throwing:
 * returns the decoded length, or −1 (empty input), −2 (a zero byte) or −3 (a group that runs past
 * the end). For the frame reader, which drops garbage without paying for an exception.
 */
export function cobsDecodeInto(src: Uint8Array, start: number, end: number, out: Uint8Array): number {
  if (end <= start) return -1;
  let r = start;
  let w = 0;
  while (r < end) {
    const code = src[r++]!;
    if (code === 0) return -2;
    const groupEnd = r + code - 1;
    if (groupEnd > end) return -3;
    for (; r < groupEnd; r++) {
      const b = src[r]!;
      if (b === 0) return -2;
      out[w++] = b;
    }
    if (code !== 0xff && r < end) out[w++] = 0;
  }
  return w;
}
