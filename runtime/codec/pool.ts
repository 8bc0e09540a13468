/**
 * Short-lived byte buffers for the data path (frame heads, ciphertexts, plaintexts), carved from a
 * shared slab as Node's Buffer.allocUnsafe does: a new ArrayBuffer per message costs more than the
 * AEAD of a 64-byte message. Unlike Buffer.allocUnsafe, these are plain Uint8Arrays, so `slice()`
 * copies (a Buffer's `slice()` is a view, which code that copies a key and zeroes the original
 * must never get). The bytes are not initialised: the caller writes every one. As with Node's
 * pool, a small buffer kept for long keeps its slab (32 KiB) alive: keep a copy instead.
 */
const SLAB_BYTES = 32 * 1024;
/** Larger requests get an ArrayBuffer of their own (still not zero-filled). */
const POOLED_BELOW = SLAB_BYTES / 4;

// Not `new ArrayBuffer`: that one is zero-filled, and measured at several microseconds (a slab's
// worth of 1 KiB messages each paid a share of it).
const newSlab = (): ArrayBufferLike => Buffer.allocUnsafeSlow(SLAB_BYTES).buffer;
let slab = newSlab();
let offset = 0;

export function pooledBytes(length: number): Uint8Array {
  if (length >= POOLED_BELOW) {
    const b = Buffer.allocUnsafeSlow(length);
    return new Uint8Array(b.buffer, b.byteOffset, length);
  }
  if (offset + length > SLAB_BYTES) {
    slab = newSlab();
    offset = 0;
  }
  const out = new Uint8Array(slab, offset, length);
  // 8-byte alignment, as Node's pool keeps it.
  offset = (offset + length + 7) & ~7;
  return out;
}
