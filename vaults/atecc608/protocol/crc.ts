/**
 * The ATECC CRC-16 (atecc608.md §1.5): polynomial 0x8005, initial 0, each data byte fed LSB first
 * into an unreflected register, no final XOR, stored little-endian. It is not a catalogued CRC
 * (it equals bitrev16(CRC-16/ARC)); check value over "123456789" is 0xBCDD. Frames are at most a
 * few hundred bytes, so the bitwise form is fast enough and matches the datasheet's description.
 */
export function atcaCrc(data: Uint8Array, start = 0, end = data.length): number {
  let crc = 0;
  for (let i = start; i < end; i++) {
    const byte = data[i]!;
    for (let bit = 0; bit < 8; bit++) {
      const dataBit = (byte >> bit) & 1;
      const msb = crc >> 15;
      crc = (crc << 1) & 0xffff;
      if (dataBit !== msb) crc ^= 0x8005;
    }
  }
  return crc;
}

/** `body` followed by its CRC, little-endian. */
export function withCrc(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.length + 2);
  out.set(body);
  const crc = atcaCrc(body);
  out[body.length] = crc & 0xff;
  out[body.length + 1] = crc >> 8;
  return out;
}

/** True when the last two bytes of `frame` are the little-endian CRC of the bytes before them. */
export function crcMatches(frame: Uint8Array): boolean {
  if (frame.length < 3) return false;
  const crc = atcaCrc(frame, 0, frame.length - 2);
  return frame[frame.length - 2] === (crc & 0xff) && frame[frame.length - 1] === crc >> 8;
}
