/** Defaults of the node log's flood guard (docs/security.md, "The log"). */
export const LOG_FLOOD_DEFAULTS = {
  /** Lines of one kind written per interval; the rest are counted and summarised. */
  burst: 20,
  intervalMs: 10_000,
  /** Kinds tracked at once; lines of further kinds share one. */
  maxKinds: 512,
} as const;

export interface LogFloodOptions {
  burst?: number;
  intervalMs?: number;
  maxKinds?: number;
  /** Milliseconds from a monotonic clock (default `performance.now`). */
  now?: () => number;
  /** Timers for the end-of-interval summaries (tests pass their own). */
  setTimer?: (fn: () => void, ms: number) => void;
}

/** What the guard held back since the process started, per kind (`level message`). */
export interface LogFloodStats {
  suppressedTotal: number;
  suppressed: Record<string, number>;
}

interface KindState {
  windowStart: number;
  written: number;
  suppressed: number;
  total: number;
  summaryArmed: boolean;
}

/** The kind every line beyond `maxKinds` distinct kinds counts under. */
const OTHER_KIND = '(other kinds)';

/**
 * Keeps a log from being used to fill the disk, as journald's RateLimitBurst and the kernel's
 * printk_ratelimit do: of each kind of line (its level and message text, which keyhop writes as
 * fixed strings with the details in fields), at most `burst` per interval are written. The others
 * are counted; when an interval that suppressed lines ends, one summary line says how many. Exact
 * totals stay available through `stats()` (`keyhop node show --json`).
 */
export class LogFloodGuard {
  private readonly burst: number;
  private readonly intervalMs: number;
  private readonly maxKinds: number;
  private readonly now: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => void;
  private readonly kinds = new Map<string, KindState>();
  private suppressedTotal = 0;

  constructor(options: LogFloodOptions = {}) {
    this.burst = options.burst ?? LOG_FLOOD_DEFAULTS.burst;
    this.intervalMs = options.intervalMs ?? LOG_FLOOD_DEFAULTS.intervalMs;
    this.maxKinds = options.maxKinds ?? LOG_FLOOD_DEFAULTS.maxKinds;
    this.now = options.now ?? (() => performance.now());
    this.setTimer =
      options.setTimer ??
      ((fn, ms) => {
        setTimeout(fn, ms).unref();
      });
  }

  /**
   * Whether a line of `kind` may be written now. When it may not, `summarise` is called once at
   * the end of the interval with the number held back in it (and not again until more are).
   */
  admit(kind: string, summarise: (suppressed: number) => void): boolean {
    const now = this.now();
    let key = kind;
    let state = this.kinds.get(key);
    if (state === undefined) {
      if (this.kinds.size >= this.maxKinds) key = OTHER_KIND;
      state = this.kinds.get(key);
      if (state === undefined) {
        state = { windowStart: now, written: 0, suppressed: 0, total: 0, summaryArmed: false };
        this.kinds.set(key, state);
      }
    }
    if (now - state.windowStart >= this.intervalMs && !state.summaryArmed) {
      state.windowStart = now;
      state.written = 0;
    }
    if (state.written < this.burst) {
      state.written++;
      return true;
    }
    state.suppressed++;
    state.total++;
    this.suppressedTotal++;
    if (!state.summaryArmed) {
      state.summaryArmed = true;
      const s = state;
      this.setTimer(
        () => {
          const n = s.suppressed;
          s.suppressed = 0;
          s.summaryArmed = false;
          s.windowStart = this.now();
          s.written = 0;
          summarise(n);
        },
        Math.max(0, s.windowStart + this.intervalMs - now),
      );
    }
    return false;
  }

  stats(): LogFloodStats {
    const suppressed: Record<string, number> = {};
    for (const [k, s] of this.kinds) if (s.total > 0) suppressed[k] = s.total;
    return { suppressedTotal: this.suppressedTotal, suppressed };
  }
}
