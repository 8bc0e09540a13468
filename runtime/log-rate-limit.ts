/** The part of a (pino) logger the rate limiter writes through. */
export interface LineLogger {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export type RateLimitedLevel = 'debug' | 'info' | 'warn' | 'error';

export interface RateLimitedLogOptions {
  /** At most one line per kind in this many milliseconds; default 10 s. */
  intervalMs?: number;
  /** Milliseconds from a monotonic clock (default `performance.now`): a wall clock set by NTP jumps. */
  now?: () => number;
}

interface KindState {
  writtenAt: number;
  suppressed: number;
}

/**
 * Logs events an attacker can repeat at will (refused connections, protocol violations) without
 * letting them flood the log: at most one line per kind per interval. The next line written for a
 * kind says how many of that kind were not (`suppressed`). Kinds are a small fixed set chosen by
 * the caller, never peer-controlled strings: one state is kept per kind.
 */
export class RateLimitedLog {
  private readonly intervalMs: number;
  private readonly now: () => number;
  private readonly kinds = new Map<string, KindState>();

  constructor(
    private readonly log: LineLogger,
    options: RateLimitedLogOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 10_000;
    this.now = options.now ?? (() => performance.now());
  }

  /** Writes the line unless one of this kind was written less than the interval ago; true if written. */
  write(level: RateLimitedLevel, kind: string, fields: Record<string, unknown>, message: string): boolean {
    const now = this.now();
    const state = this.kinds.get(kind);
    if (state !== undefined && now - state.writtenAt < this.intervalMs) {
      state.suppressed++;
      return false;
    }
    const suppressed = state?.suppressed ?? 0;
    this.kinds.set(kind, { writtenAt: now, suppressed: 0 });
    this.log[level](suppressed > 0 ? { ...fields, kind, suppressed } : { ...fields, kind }, message);
    return true;
  }

  /** Lines of this kind not written since the last one that was. */
  suppressed(kind: string): number {
    return this.kinds.get(kind)?.suppressed ?? 0;
  }
}
