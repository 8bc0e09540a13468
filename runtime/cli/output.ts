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
    process.stderr.write(`keyhop: error [${e.code}]: ${e.message}\n`);
    process.exit(e.code === 'USAGE' ? 2 : 1);
  }
  process.stderr.write(`keyhop: unexpected error: ${describeError(e)}\n`);
  process.exit(1);
}
