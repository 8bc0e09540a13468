import { ErrorCodes, KeyhopError } from '../../../runtime/errors.js';
import { Atecc608Chip } from '../emulator/chip.js';
import type { KitChip, KitLineHandler } from '../emulator/kit-device.js';
import type { KitLineChannel } from './kit-link.js';

/**
 * Test helpers for the kit protocol: an in-memory line channel in front of any KitLineHandler, and
 * emulated chips.
 */

/**
 * What cryptoauthlib sends for atcab_init() then atcab_info() over a kit (atecc608.md §4.6,
 * recorded from the stock cryptoauth_test binary): config block 0, then Info(Revision).
 */
export const CRYPTOAUTHLIB_KIT_TRACE: readonly string[] = [
  'board:device(00)',
  'E:physical:select(C0)',
  'E:w()',
  'E:t(070280000009AD)',
  'E:i()',
  'E:w()',
  'E:t(0730000000035D)',
  'E:i()',
];

/** A KitLineChannel that hands each line to `handler` and queues its reply. */
export class HandlerChannel implements KitLineChannel {
  private readonly replies: string[] = [];
  private wake: (() => void) | undefined;
  readonly written: string[] = [];
  closed = false;

  constructor(private readonly handler: KitLineHandler) {}

  async writeLine(line: string): Promise<void> {
    if (this.closed) throw new KeyhopError(ErrorCodes.HARDWARE_UNAVAILABLE, 'closed');
    this.written.push(line);
    void this.handler.handleLine(line).then((reply) => {
      this.replies.push(reply);
      this.wake?.();
    });
  }

  async readLine(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.replies.shift();
      if (r !== undefined) return r;
      const left = deadline - Date.now();
      if (left <= 0) throw new KeyhopError(ErrorCodes.TIMEOUT, `no reply in ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  discardInput(): void {
    this.replies.length = 0;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** A fresh emulated 608A with commands taking no time. */
export function testChip(seed = 'kit-test'): Atecc608Chip {
  return new Atecc608Chip({ seed, timing: 'zero', revision: '608A' });
}

/** The chip seen at another 7-bit address (several chips behind one kit). */
export function atAddress(chip: KitChip, i2cAddress: number): KitChip {
  return {
    get awake() {
      return chip.awake;
    },
    get output() {
      return chip.output;
    },
    i2cAddress,
    wake: () => chip.wake(),
    idle: () => chip.idle(),
    sleep: () => chip.sleep(),
    execute: (packet) => chip.execute(packet),
  };
}
