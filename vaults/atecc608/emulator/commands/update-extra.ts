import { Cfg, Status } from '../constants.js';
import { type ChipCommand, type ChipContext, type CommandResult, status } from '../context.js';

/**
 * UpdateExtra (0x20, §2.1, §3.4): mode 0 writes UserExtra (byte 84), mode 1 UserExtraAdd (byte 85,
 * the alternate I2C address, effective after the next sleep), each only while the byte is 0. Before
 * the config lock only value 0 is accepted (§9.6: cryptoauthlib's write_config_zone test needs that
 * to succeed); anything else then answers 0x0F. Mode 2 (decrement a limited-use counter) is not
 * emulated and answers 0x0F.
 */
export function updateExtra(ctx: ChipContext, cmd: ChipCommand): CommandResult {
  if (cmd.data.length !== 0 || cmd.param1 > 2) return status(Status.PARSE_ERROR);
  if (cmd.param1 === 2) return status(Status.EXECUTION_ERROR);
  const { mem } = ctx;
  const at = cmd.param1 === 0 ? Cfg.USER_EXTRA : Cfg.USER_EXTRA_ADD;
  const value = cmd.param2 & 0xff;
  if (!mem.configLocked) return status(value === 0 ? Status.SUCCESS : Status.EXECUTION_ERROR);
  if (mem.config[at] !== 0) return status(Status.EXECUTION_ERROR);
  mem.config[at] = value;
  return status(Status.SUCCESS);
}
