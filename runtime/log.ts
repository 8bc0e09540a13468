import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger } from 'pino';

/**
 * keyhop logs structured JSON through pino. Libraries get a silent logger unless they are handed
 * one; the node process and the CLI create a real one. Never log key material, PINs or plaintext:
 * log sizes, addresses and reasons.
 */
export function createLogger(
  options: { level?: string; name?: string } = {},
  destination?: DestinationStream,
): Logger {
  const level = options.level ?? process.env.KEYHOP_LOG ?? 'info';
  const opts = { level, base: options.name ? { node: options.name } : {} };
  return destination ? pino(opts, destination) : pino(opts, pino.destination(2));
}

export const silentLogger: Logger = pino({ level: 'silent' });
