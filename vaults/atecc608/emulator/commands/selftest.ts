import { Status } from '../constants.js';
import { type ChipCommand, type ChipContext, type CommandResult, ok, status } from '../context.js';

/**
 * Test bits: 0x01 RNG, 0x02 ECDSA sign/verify, 0x08 ECDH, 0x10 AES, 0x20 SHA; 0x3B runs all. §2.1 of
 * the research lists ECDSA as 0x04, but then 0x3B ("all") would not include it: 0x3B = 0x01 | 0x02 |
 * 0x08 | 0x10 | 0x20, so ECDSA is taken as 0x02 and 0x04 is a parse error.
 */
export const SELFTEST_ALL = 0x3b;

/**
 * SelfTest (0x77, §2.1). Answers one byte: 0 = every requested test passed, else the bitmap of the
 * failed ones (a count-4 frame, the ambiguity `calib_selftest.c` describes). A failure puts the chip
 * in failure mode (other commands answer 0x07) until a SelfTest passes.
 */
export function selfTest(ctx: ChipContext, cmd: ChipCommand): CommandResult {
  if (cmd.data.length !== 0 || cmd.param2 !== 0 || cmd.param1 === 0 || (cmd.param1 & ~SELFTEST_ALL) !== 0) {
    return status(Status.PARSE_ERROR);
  }
  const failed = cmd.param1 & ctx.selfTestFailMask();
  ctx.setSelfTestFailed(failed !== 0);
  return ok(Uint8Array.of(failed));
}
