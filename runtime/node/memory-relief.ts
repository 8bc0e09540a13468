/** Defaults of the memory relief (docs/security.md, "The threat model"). */
export const MEMORY_RELIEF_DEFAULTS = {
  intervalMs: 10_000,
  /** Fewer messages than this routed in an interval: the node is quiet. */
  quietMessages: 1_000,
  /** The heap is this much above the least seen (and at least 4 MiB more) before a collection. */
  growth: 1.2,
} as const;

export interface MemoryReliefOptions {
  /** A full garbage collection (`globalThis.gc` under `--expose-gc`). */
  gc: () => void;
  /** A counter that grows with traffic (messages routed). */
  activity: () => number;
  /** The heap's size now (`process.memoryUsage().heapTotal`). */
  heapBytes: () => number;
  intervalMs?: number;
  quietMessages?: number;
  growth?: number;
}

/**
 * Gives back the memory a burst of traffic (a flood) left behind once the node is quiet again. V8
 * returns pages to the system only after a full collection, which an idle process never runs: a
 * node flooded for a minute would otherwise keep tens of megabytes of garbage for good. One full
 * collection when the node turned quiet with its heap well above what it was; none again until
 * traffic came back.
 */
export class MemoryRelief {
  private readonly timer: NodeJS.Timeout;
  private lastActivity: number;
  private least: number;
  private collected = false;
  /** Collections run (for node show and tests). */
  runs = 0;

  constructor(private readonly o: MemoryReliefOptions) {
    this.lastActivity = o.activity();
    this.least = o.heapBytes();
    this.timer = setInterval(() => this.check(), o.intervalMs ?? MEMORY_RELIEF_DEFAULTS.intervalMs);
    this.timer.unref();
  }

  check(): void {
    const activity = this.o.activity();
    const busy =
      activity - this.lastActivity >= (this.o.quietMessages ?? MEMORY_RELIEF_DEFAULTS.quietMessages);
    this.lastActivity = activity;
    const heap = this.o.heapBytes();
    if (busy) {
      this.collected = false;
      return;
    }
    const growth = this.o.growth ?? MEMORY_RELIEF_DEFAULTS.growth;
    if (!this.collected && heap > this.least * growth && heap - this.least > 4 * 1024 * 1024) {
      this.collected = true;
      this.runs++;
      this.o.gc();
    }
    this.least = Math.min(this.least, this.o.heapBytes());
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
