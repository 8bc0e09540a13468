import { RANDOM_TEST_PATTERN, Status } from '../constants.js';
import { type ChipCommand, type ChipContext, type CommandResult, ok, status } from '../context.js';

/**
 * Random (0x1B, §2.1): 32 bytes; mode 0 updates the seed, 1 does not (the emulator's DRBG needs no
 * reseed). While the config zone is unlocked the chip answers the test pattern FF FF 00 00 × 8
 * (issues #51, #85, #121).
 */
export function random(ctx: ChipContext, cmd: ChipCommand): CommandResult {
  if (cmd.data.length !== 0 || cmd.param1 > 0x01 || cmd.param2 !== 0) return status(Status.PARSE_ERROR);
  return ok(chipRandom(ctx));
}

/** What the chip's RNG gives: the test pattern until the config zone is locked. */
export function chipRandom(ctx: ChipContext): Uint8Array {
  return ctx.mem.configLocked ? ctx.rng.bytes(32) : RANDOM_TEST_PATTERN.slice();
}
