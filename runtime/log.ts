import { type DestinationStream, type LogFn, type Logger, pino } from 'pino';
import { LogFloodGuard, type LogFloodOptions, type LogFloodStats } from './log-flood-guard.js';

export type { Logger } from 'pino';

const guards = new WeakMap<Logger, LogFloodGuard>();

/**
 * keyhop logs structured JSON through pino. Libraries get a silent logger unless they are handed
 * one; the node process and the CLI create a real one. Never log key material, PINs or plaintext:
 * log sizes, addresses and reasons.
 *
 * Every line of a logger made here (children included) passes a flood guard: of each kind (level
 * and message text) at most `burst` lines per interval are written, then a summary of how many
 * were not (`floodGuard: false` turns it off).
 */
export function createLogger(
  options: { level?: string; name?: string; floodGuard?: LogFloodOptions | false } = {},
  destination?: DestinationStream,
): Logger {
  const level = options.level ?? process.env.KEYHOP_LOG ?? 'info';
  const guard = options.floodGuard === false ? undefined : new LogFloodGuard(options.floodGuard ?? {});
  const opts = {
    level,
    base: options.name ? { node: options.name } : {},
    ...(guard ? { hooks: { logMethod: guardedLogMethod(guard) } } : {}),
  };
  const log = destination ? pino(opts, destination) : pino(opts, pino.destination(2));
  if (guard) guards.set(log, guard);
  return log;
}

/** What the flood guard of a logger made by createLogger held back (undefined: none there). */
export function logFloodStats(log: Logger): LogFloodStats | undefined {
  return guards.get(log)?.stats();
}

function guardedLogMethod(guard: LogFloodGuard) {
  return function logMethod(this: Logger, args: Parameters<LogFn>, method: LogFn, level: number): void {
    const first = args[0] as unknown;
    const msg = typeof first === 'string' ? first : typeof args[1] === 'string' ? args[1] : '';
    const admitted = guard.admit(`${pino.levels.labels[level] ?? level} ${msg}`, (suppressed) =>
      method.call(this, { suppressed, suppressedMessage: msg }, 'log lines suppressed (flood guard)'),
    );
    if (admitted) method.apply(this, args);
  };
}

export const silentLogger: Logger = pino({ level: 'silent' });
