/**
 * Direct CBOR writing for the hot paths (frame heads, channel plaintexts): compute the size, then
 * fill one buffer. Heads are always in shortest form (RFC 8949 §3.1), which strict decoders
 * require. Everything else encodes through cborg; tests compare both byte for byte.
 */
export const MAJOR_UINT = 0;
export const MAJOR_BYTES = 2;
export const MAJOR_ARRAY = 4;

export function headerSize(n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x1_0000_0000 ? 5 : 9;
}

/**
 * Writes a head of major type `major` with argument `n` (an unsigned safe integer: up to 2^53 - 1)
 * at `pos`; returns the next position.
 */
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
  if (n < 0x1_0000_0000) {
    out[pos] = m | 26;
    out[pos + 1] = n >>> 24;
    out[pos + 2] = (n >>> 16) & 0xff;
    out[pos + 3] = (n >>> 8) & 0xff;
    out[pos + 4] = n & 0xff;
    return pos + 5;
  }
  const hi = Math.floor(n / 0x1_0000_0000);
  const lo = n >>> 0;
  out[pos] = m | 27;
  out[pos + 1] = hi >>> 24;
  out[pos + 2] = (hi >>> 16) & 0xff;
  out[pos + 3] = (hi >>> 8) & 0xff;
  out[pos + 4] = hi & 0xff;
  out[pos + 5] = lo >>> 24;
  out[pos + 6] = (lo >>> 16) & 0xff;
  out[pos + 7] = (lo >>> 8) & 0xff;
  out[pos + 8] = lo & 0xff;
  return pos + 9;
}

/** A byte string: head and bytes. */
export function writeBytes(out: Uint8Array, pos: number, bytes: Uint8Array): number {
  const p = writeHeader(out, pos, MAJOR_BYTES, bytes.length);
  out.set(bytes, p);
  return p + bytes.length;
}
