/**
 * Ockam's receive window (nonce_tracker.rs): nonces are accepted at most 32 behind the highest
 * nonce accepted so far (32 behind included, as Ockam does) and at most 32 ahead of it, and each
 * only once. `check` has no side
 * effects; the caller `accept`s only after the message decrypted, so a forged message can never
 * move the window (Ockam PR #4756).
 */
export const WINDOW = 32;
/** The widest receive window keyhop accepts (queue mode: docs/protocols/secure-channel.md). */
export const MAX_WINDOW = 65_536;

/** width and mask by window size, shared by every window of that size. */
const CONSTANTS = new Map<number, { width: bigint; mask: bigint }>();

/**
 * The same rule for a wider window W (a receiver-local setting, nothing changes on the wire):
 * at most W behind and W ahead, each nonce once.
 */
export class ReplayWindow {
  /** Highest accepted nonce; -1n before the first message. */
  private highest = -1n;
  /** Bit i set = nonce (highest - i) was accepted, for i in 0..size. */
  private seen = 0n;
  private readonly width: bigint;
  private readonly mask: bigint;

  constructor(readonly size: number = WINDOW) {
    // Shared per size: two BigInts per open channel end otherwise.
    let c = CONSTANTS.get(size);
    if (c === undefined) {
      c = { width: BigInt(size), mask: (1n << BigInt(size + 1)) - 1n };
      CONSTANTS.set(size, c);
    }
    this.width = c.width;
    this.mask = c.mask;
  }

  /** Why `nonce` cannot be accepted, or undefined if it can. */
  check(nonce: bigint): 'replayed' | 'too_old' | 'too_far_ahead' | undefined {
    if (nonce > this.highest) {
      const limit = this.highest < 0n ? this.width : this.highest + this.width;
      return nonce > limit ? 'too_far_ahead' : undefined;
    }
    const behind = this.highest - nonce;
    if (behind > this.width) return 'too_old';
    return (this.seen >> behind) & 1n ? 'replayed' : undefined;
  }

  accept(nonce: bigint): void {
    if (nonce > this.highest) {
      const shift = this.highest < 0n ? this.width + 1n : nonce - this.highest;
      this.seen = shift > this.width ? 1n : ((this.seen << shift) | 1n) & this.mask;
      this.highest = nonce;
    } else {
      this.seen |= 1n << (this.highest - nonce);
    }
  }

  get highestAccepted(): bigint {
    return this.highest;
  }

  /** What a restored window needs: the highest accepted nonce and which of those behind it were seen. */
  snapshot(): { size: number; highest: bigint; seen: bigint } {
    return { size: this.size, highest: this.highest, seen: this.seen };
  }

  static restore(s: { size: number; highest: bigint; seen: bigint }): ReplayWindow {
    const w = new ReplayWindow(s.size);
    w.highest = s.highest;
    w.seen = s.seen & w.mask;
    return w;
  }
}
