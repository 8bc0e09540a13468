import { describeError, isKeyhopError } from '../errors.js';

export interface OutputOptions {
  json?: boolean;
}

/** Prints `data` as JSON (for scripts) or as `text(data)` for people. */
export function print<T>(options: OutputOptions, data: T, text: (d: T) => string): void {
  process.stdout.write(options.json ? `${JSON.stringify(data, null, 2)}\n` : `${text(data)}\n`);
}

/** One clear line on stderr and a non-zero exit code: 2 for usage errors, 1 for everything else. */
export function reportError(e: unknown): never {
  if (isKeyhopError(e)) {
    // One line, whatever the message holds (a device's multi-line text, a child's output).
    process.stderr.write(`keyhop: error [${e.code}]: ${e.message.replace(/\s*\n\s*/g, ' ')}\n`);
    process.exit(e.code === 'USAGE' ? 2 : 1);
  }
  const text = describeError(e).replace(/\s*\n\s*/g, ' ');
  process.stderr.write(
    `keyhop: error [INTERNAL]: ${text} (a bug in keyhop: please report it with the command you ran)\n`,
  );
  process.exit(1);
}
