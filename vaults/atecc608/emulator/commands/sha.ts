import { sha256 } from '@noble/hashes/sha2.js';
import { Status } from '../constants.js';
import { type ChipCommand, type ChipContext, type CommandResult, ok, status } from '../context.js';
import { setBuffer } from '../volatile.js';

/**
 * SHA (0x47, §2.1): Start (0), Update (1, exactly 64 bytes, param2 = 64), End (2, 0-63 bytes,
 * param2 = length). End answers the digest and also leaves it in TempKey (target 0x00) or MsgDigBuf
 * (0x40); 0xC0 = output only. Update/End without Start → 0x0F. The context survives idle (assumption:
 * cryptoauthlib wakes and idles around each of Start/Update/End, so it must). Public, HMAC and
 * context read/write modes are not emulated (0x03).
 */
export function sha(ctx: ChipContext, cmd: ChipCommand): CommandResult {
  const kind = cmd.param1 & 0x07;
  const target = cmd.param1 & 0xc0;
  if ((cmd.param1 & 0x38) !== 0 || target === 0x80) return status(Status.PARSE_ERROR);
  const { vol } = ctx;
  switch (kind) {
    case 0:
      if (cmd.data.length !== 0 || cmd.param2 !== 0 || target !== 0) return status(Status.PARSE_ERROR);
      vol.sha = sha256.create();
      return status(Status.SUCCESS);
    case 1:
      if (cmd.data.length !== 64 || cmd.param2 !== 64 || target !== 0) return status(Status.PARSE_ERROR);
      if (vol.sha === undefined) return status(Status.EXECUTION_ERROR);
      vol.sha.update(cmd.data);
      return status(Status.SUCCESS);
    case 2: {
      if (cmd.data.length > 63 || cmd.param2 !== cmd.data.length) return status(Status.PARSE_ERROR);
      if (vol.sha === undefined) return status(Status.EXECUTION_ERROR);
      const digest = vol.sha.update(cmd.data).digest();
      vol.sha = undefined;
      if (target === 0x00) vol.setTempKey(digest, 'input');
      else if (target === 0x40) setBuffer(vol.msgDigBuf, digest);
      return ok(digest);
    }
    default:
      return status(Status.PARSE_ERROR);
  }
}
