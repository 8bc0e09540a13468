import { timingSafeEqual } from 'node:crypto';
import type { CryptoProvider } from '../../vaults/provider.js';
import type { Route } from '../routing/route.js';

/**
 * keyhop's handshake cookie (docs/protocols/handshake-cookie.md): a listener under load answers a
 * first message that carries no valid cookie with a Retry instead of a handshake slot, as
 * WireGuard's cookie reply and QUIC's Retry do. The initiator proves it receives what is sent to
 * its return route by sending message 1 again with the cookie as its (plaintext, hashed) payload.
 * The listener keeps no state per Retry: the cookie is a MAC under a secret that changes every
 * `COOKIE_EPOCH_MS`, over where the first message came from.
 */

const ascii = (s: string) => new TextEncoder().encode(s);

/** A Retry: "KHRETRY" ‖ version 1 ‖ epoch (u32 BE) ‖ cookie (16 bytes) = 28 bytes. */
export const RETRY_MAGIC = ascii('KHRETRY\x01');
/** Message 1's payload echoing it: "KHCOOKI" ‖ version 1 ‖ epoch (u32 BE) ‖ cookie (16 bytes). */
export const COOKIE_MAGIC = ascii('KHCOOKI\x01');
export const COOKIE_BYTES = 16;
export const COOKIE_BLOCK_BYTES = 8 + 4 + COOKIE_BYTES;
/** A cookie is valid in the epoch it was made in and the next: 60 to 120 s. */
export const COOKIE_EPOCH_MS = 60_000;
/** Ockam's message 1 is an X25519 key (32 bytes) ‖ payload; message 2 is at least 96 bytes. */
const E_BYTES = 32;
const CONTEXT = ascii('keyhop handshake cookie v1');

function hasPrefix(bytes: Uint8Array, prefix: Uint8Array, at = 0): boolean {
  if (bytes.length < at + prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[at + i] !== prefix[i]) return false;
  return true;
}

function block(magic: Uint8Array, epoch: number, cookie: Uint8Array): Uint8Array {
  const out = new Uint8Array(COOKIE_BLOCK_BYTES);
  out.set(magic, 0);
  new DataView(out.buffer).setUint32(8, epoch);
  out.set(cookie, 12);
  return out;
}

function readBlock(bytes: Uint8Array, at: number): { epoch: number; cookie: Uint8Array } {
  return {
    epoch: new DataView(bytes.buffer, bytes.byteOffset + at + 8, 4).getUint32(0),
    cookie: bytes.subarray(at + 12, at + 12 + COOKIE_BYTES),
  };
}

/** A Retry's cookie block, when `payload` (an answer to message 1) is a Retry; else undefined. */
export function parseRetry(payload: Uint8Array): Uint8Array | undefined {
  if (payload.length !== COOKIE_BLOCK_BYTES || !hasPrefix(payload, RETRY_MAGIC)) return undefined;
  const { epoch, cookie } = readBlock(payload, 0);
  return block(COOKIE_MAGIC, epoch, cookie);
}

/** Where a first message came from, as the cookie binds it. */
export interface CookieSource {
  /** The transport and the peer's socket address, e.g. `udp:192.0.2.7:4000`. */
  source: string;
  /** The return route of message 1 without its first hop (this node's own transport worker). */
  returnRoute: Route;
}

/** Makes and checks cookies for one listener. */
export class CookieJar {
  private epochNumber = -1;
  private current: Uint8Array = new Uint8Array(0);
  private previous: Uint8Array | undefined;

  constructor(
    private readonly provider: CryptoProvider,
    private readonly listener: string,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The current epoch's number, rotating the secrets when it changed. */
  private epoch(): number {
    const e = Math.floor(this.now() / COOKIE_EPOCH_MS) >>> 0;
    if (e !== this.epochNumber) {
      this.previous = e === this.epochNumber + 1 ? this.current : undefined;
      this.current = this.provider.randomBytes(32);
      this.epochNumber = e;
    }
    return e;
  }

  private mac(secret: Uint8Array, from: CookieSource): Uint8Array {
    const parts = [CONTEXT, ascii(this.listener), ascii(from.source), ascii(from.returnRoute.toString())];
    const data = new Uint8Array(parts.reduce((n, p) => n + 2 + p.length, 0));
    let at = 0;
    for (const p of parts) {
      data[at] = p.length >> 8;
      data[at + 1] = p.length & 0xff;
      data.set(p, at + 2);
      at += 2 + p.length;
    }
    return this.provider.hmac('SHA256', secret, data).subarray(0, COOKIE_BYTES);
  }

  /** The Retry to send back for a first message from `from`. */
  retry(from: CookieSource): Uint8Array {
    const e = this.epoch();
    return block(RETRY_MAGIC, e, this.mac(this.current, from));
  }

  /** Whether message 1 (`e ‖ payload`) carries a valid cookie for `from`. */
  check(message1: Uint8Array, from: CookieSource): boolean {
    if (message1.length !== E_BYTES + COOKIE_BLOCK_BYTES || !hasPrefix(message1, COOKIE_MAGIC, E_BYTES))
      return false;
    const { epoch, cookie } = readBlock(message1, E_BYTES);
    const now = this.epoch();
    const secret = epoch === now ? this.current : epoch === now - 1 ? this.previous : undefined;
    if (secret === undefined) return false;
    return timingSafeEqual(this.mac(secret, from), cookie);
  }
}
