import { COUNTER_MAX, Status } from '../constants.js';
import { type ChipCommand, type ChipContext, type CommandResult, ok, status } from '../context.js';

/**
 * Counter (0x24, §2.1): mode 0 read, 1 increment; param2 = counter 0 or 1. Answers the (new) value
 * as 4 bytes little-endian; incrementing past 2 097 151 answers 0x0F. The emulator keeps the counters
 * apart from config bytes 52-67 (their initial-value encoding is not public) and starts them at 0.
 */
export function counter(ctx: ChipContext, cmd: ChipCommand): CommandResult {
  if (cmd.data.length !== 0 || cmd.param1 > 1 || cmd.param2 > 1) return status(Status.PARSE_ERROR);
  const which = cmd.param2 as 0 | 1;
  if (cmd.param1 === 1) {
    if (ctx.mem.counters[which] >= COUNTER_MAX) return status(Status.EXECUTION_ERROR);
    ctx.mem.counters[which] += 1;
  }
  const v = ctx.mem.counters[which];
  return ok(Uint8Array.of(v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff));
}
