/**
 * Exponential back-off with jitter for a node's remote dependencies (relays, inlet channels):
 * 0.5 s doubling to 30 s, each delay drawn in [0.8, 1.2] of its nominal value so that many nodes
 * that lost the same peer do not all call it back at the same instant.
 */
export class Backoff {
  private nominal: number;

  constructor(
    private readonly minMs = 500,
    private readonly maxMs = 30_000,
  ) {
    this.nominal = minMs;
  }

  /** The next delay (and doubles the one after). */
  next(): number {
    const delay = this.nominal * (0.8 + 0.4 * Math.random());
    this.nominal = Math.min(this.nominal * 2, this.maxMs);
    return Math.round(delay);
  }

  reset(): void {
    this.nominal = this.minMs;
  }
}
