import { setTimeout as delay } from 'node:timers/promises';
import { ErrorCodes, KeyhopError } from '../../../runtime/errors.js';
import type { AteccLink, CommandStep, TransactOptions } from '../link.js';
import { WAKE_SELFTEST_FAILED } from '../protocol/packet.js';
import type { Atecc608Chip } from './chip.js';

/**
 * Scheduling slack a link allows on top of a step's execution budget before it gives up, ms (the
 * native addon's kPollMarginUs).
 */
export const EXEC_MARGIN_MS = 50;

/**
 * An in-process link to an emulated chip, for unit tests of the vault and the protocol core. It does
 * what a real link does around the chip, without a bus: wake (if the chip is not awake; waiting
 * tWHI when the chip's timing is not 'zero'), run each step and wait its execution time, collect the
 * raw responses, then idle or sleep. A chip that falls asleep mid-transaction (watchdog) fails the
 * transaction with HARDWARE_IO, as a NACKed command write would on a bus. Like the I2C addon's
 * polling, it waits at most the step's `maxExecMs` plus EXEC_MARGIN_MS: a chip that is still busy
 * then fails the transaction with TIMEOUT (the budget was too short for the chip's clock divider).
 */
export class EmulatorLink implements AteccLink {
  readonly kind = 'emulator';
  readonly location: string;
  private readonly chip: Atecc608Chip;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(chip: Atecc608Chip, options: { location?: string } = {}) {
    this.chip = chip;
    this.location = options.location ?? `emulator@0x${chip.i2cAddress.toString(16).padStart(2, '0')}`;
  }

  transact(steps: readonly CommandStep[], options: TransactOptions = {}): Promise<Uint8Array[]> {
    const run = this.queue.then(() => this.run(steps, options.end ?? 'idle'));
    this.queue = run.catch(() => {});
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.queue;
  }

  private async run(steps: readonly CommandStep[], end: 'idle' | 'sleep'): Promise<Uint8Array[]> {
    if (this.closed) throw new KeyhopError(ErrorCodes.HARDWARE_UNAVAILABLE, `${this.location} is closed`);
    const chip = this.chip;
    chip.checkWatchdog();
    if (!chip.awake) {
      chip.wake();
      if (chip.wakeDelayMs > 0) await delay(chip.wakeDelayMs);
      // Like the I2C addon and the kit links (and cryptoauthlib's hal_check_wake): a chip whose
      // power-on self-test failed wakes with 04 07 C4 40, and the transaction stops there.
      if (sameBytes(chip.output, WAKE_SELFTEST_FAILED)) {
        chip.idle();
        throw new KeyhopError(
          ErrorCodes.HARDWARE_FAULT,
          `${this.location}: the chip woke with a self-test failure (04 07 c4 40)`,
        );
      }
    }
    const responses: Uint8Array[] = [];
    try {
      for (const [index, step] of steps.entries()) {
        const { response, execMs } = chip.execute(step.packet);
        if (response.length === 0) {
          throw new KeyhopError(
            ErrorCodes.HARDWARE_IO,
            `${this.location}: the chip went to sleep (watchdog)`,
          );
        }
        const limit = step.maxExecMs + EXEC_MARGIN_MS;
        if (execMs > limit) {
          await delay(limit);
          throw new KeyhopError(
            ErrorCodes.TIMEOUT,
            `${this.location}: step ${index + 1}/${steps.length}: no response within ${step.maxExecMs} ms ` +
              `(+${EXEC_MARGIN_MS} ms margin); the chip stayed busy`,
          );
        }
        if (execMs > 0) await delay(execMs);
        responses.push(response);
      }
    } finally {
      if (end === 'sleep') chip.sleep();
      else chip.idle();
    }
    return responses;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
