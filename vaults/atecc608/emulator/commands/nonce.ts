import { sha256 } from '@noble/hashes/sha2.js';
import { Op, Status } from '../constants.js';
import { type ChipCommand, type ChipContext, type CommandResult, ok, status } from '../context.js';
import { setBuffer } from '../volatile.js';
import { chipRandom } from './random.js';

/**
 * Nonce (0x16, §2.1).
 * - Random modes 0/1 (20-byte NumIn, TempKey only): TempKey = SHA-256(RandOut ‖ NumIn ‖ 0x16 ‖ mode ‖
 *   LSB(param2)) with SourceFlag = Random (`atcah_nonce`); the answer is RandOut. With param2 bit 15
 *   (0x8000) the answer is the computed TempKey instead of RandOut and the flags are left as they
 *   were, which is how `atcah_nonce` reads that mode (it copies RandOut into TempKey, flags
 *   unchanged). Unverified on hardware.
 * - Pass-through mode 3 (32 bytes, or 64 with 0x20): copied into TempKey (0x00), MsgDigBuf (0x40) or
 *   AltKeyBuf (0x80); SourceFlag = Input; answers status 0.
 */
export function nonce(ctx: ChipContext, cmd: ChipCommand): CommandResult {
  const low = cmd.param1 & 0x03;
  const wide = (cmd.param1 & 0x20) !== 0;
  const target = cmd.param1 & 0xc0;
  if ((cmd.param1 & 0x1c) !== 0 || low === 2 || target === 0xc0) return status(Status.PARSE_ERROR);

  if (low === 3) {
    if (cmd.param2 !== 0 || cmd.data.length !== (wide ? 64 : 32)) return status(Status.PARSE_ERROR);
    if (target === 0x00) ctx.vol.setTempKey(cmd.data, 'input');
    else setBuffer(target === 0x40 ? ctx.vol.msgDigBuf : ctx.vol.altKeyBuf, cmd.data);
    return status(Status.SUCCESS);
  }

  if (wide || target !== 0 || cmd.data.length !== 20) return status(Status.PARSE_ERROR);
  if ((cmd.param2 & 0x7fff) !== 0) return status(Status.PARSE_ERROR);
  const randOut = chipRandom(ctx);
  const message = new Uint8Array(32 + 20 + 3);
  message.set(randOut, 0);
  message.set(cmd.data, 32);
  message.set([Op.NONCE, cmd.param1, cmd.param2 & 0xff], 52);
  const value = sha256(message);
  if ((cmd.param2 & 0x8000) !== 0) {
    const flags = ctx.vol.tempKey;
    ctx.vol.setTempKey(value, flags.source);
    return ok(value);
  }
  ctx.vol.setTempKey(value, 'random');
  return ok(randOut);
}
