import { Cfg, SLOT_COUNT, Status } from '../constants.js';
import { type ChipCommand, type ChipContext, type CommandResult, ok, status } from '../context.js';
import { isP256PrivateSlot } from '../policy.js';

/**
 * Info (0x30, §2.1). Revision answers RevNum (config bytes 4-7: `00 00 60 02` on a 608A,
 * `00 00 60 03` on a 608B). KeyValid answers 1 when a P-256 private slot holds a key. State is an
 * approximation (the layout is not in the public sources): byte 0 bit 4 = TempKey.SourceFlag
 * (1 = input), byte 1 bit 7 = TempKey.Valid. GPIO and the VolatileKeyPermit latch are not emulated
 * (0x03).
 */
export function info(ctx: ChipContext, cmd: ChipCommand): CommandResult {
  if (cmd.data.length !== 0) return status(Status.PARSE_ERROR);
  switch (cmd.param1) {
    case 0x00:
      return ok(ctx.mem.config.slice(Cfg.REVNUM, Cfg.REVNUM + 4));
    case 0x01: {
      if (cmd.param2 >= SLOT_COUNT) return status(Status.PARSE_ERROR);
      const valid =
        isP256PrivateSlot(ctx.mem.keyConfig(cmd.param2)) && ctx.mem.privateKeys[cmd.param2] !== undefined;
      return ok(Uint8Array.of(valid ? 1 : 0, 0, 0, 0));
    }
    case 0x02: {
      const t = ctx.vol.tempKey;
      return ok(Uint8Array.of(t.source === 'input' ? 0x10 : 0x00, t.valid ? 0x80 : 0x00, 0, 0));
    }
    default:
      return status(Status.PARSE_ERROR);
  }
}
