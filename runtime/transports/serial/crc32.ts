/**
 * CRC-32 as in IEEE 802.3, zlib, PNG and HDLC (CRC-32/ISO-HDLC in the RevEng catalogue):
 * polynomial 0x04C11DB7 processed reflected (0xEDB88320), initial value and final XOR
 * 0xFFFFFFFF, check value CRC32("123456789") = 0xCBF43926. Byte-at-a-time with a 1 KiB table:
 * small enough for boards, and fast enough for serial line rates.
 */

const TABLE: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 of `data[start..end)`, an unsigned 32-bit integer. */
export function crc32(data: Uint8Array, start = 0, end = data.length): number {
  return crc32Update(0, data, start, end);
}

/**
 * Continues a CRC-32 over more bytes: `crc32Update(crc32(a), b)` equals `crc32(a ‖ b)`. Start from
 * 0 for the CRC of `data` alone.
 */
export function crc32Update(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  let c = ~crc;
  for (let i = start; i < end; i++) c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
