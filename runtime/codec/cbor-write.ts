/**
 * Direct CBOR writing for the hot paths (frame heads, channel plaintexts): compute the size, then
 * fill one buffer. Heads are always in shortest form (RFC 8949 §3.1), which strict decoders
 * require. Everything else encodes through cborg; tests compare both byte for byte.
 */
export const MAJOR_UINT = 0;
export const MAJOR_BYTES = 2;
export const MAJOR_ARRAY = 4;

export function headerSize(n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

/** Writes a head of major type `major` with argument `n` (< 2^32) at `pos`; returns the next position. */
export function writeHeader(out: Uint8Array, pos: number, major: number, n: number): number {
  const m = major << 5;
  if (n < 24) {
    out[pos] = m | n;
    return pos + 1;
  }
  if (n < 0x100) {
    out[pos] = m | 24;
    out[pos + 1] = n;
    return pos + 2;
  }
  if (n < 0x10000) {
    out[pos] = m | 25;
    out[pos + 1] = n >>> 8;
    out[pos + 2] = n & 0xff;
    return pos + 3;
  }
  out[pos] = m | 26;
  out[pos + 1] = n >>> 24;
  out[pos + 2] = (n >>> 16) & 0xff;
  out[pos + 3] = (n >>> 8) & 0xff;
  out[pos + 4] = n & 0xff;
  return pos + 5;
}

/** A byte string: head and bytes. */
export function writeBytes(out: Uint8Array, pos: number, bytes: Uint8Array): number {
  const p = writeHeader(out, pos, MAJOR_BYTES, bytes.length);
  out.set(bytes, p);
  return p + bytes.length;
}
