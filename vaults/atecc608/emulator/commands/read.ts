import { Status } from '../constants.js';
import { type ChipCommand, type ChipContext, type CommandResult, ok, status } from '../context.js';
import { locate, zoneOf } from './address.js';

/**
 * Read (0x02, §2.1, §2.3). param1 bits 0-1 zone, bit 7 = 32 bytes. The config zone is always
 * readable. OTP and data reads are refused (0x0F) until the data zone is locked (§3.5). After that a
 * clear read of a private-key slot, an IsSecret slot or an EncryptRead slot is refused (0x0F);
 * encrypted reads need GenDig, which is not emulated. A 32-byte read of a slot's short last block
 * answers the valid bytes followed by zeros (assumption, mirroring the documented short-block write).
 */
export function read(ctx: ChipContext, cmd: ChipCommand): CommandResult {
  const zone = zoneOf(cmd.param1);
  if (zone === undefined || (cmd.param1 & 0x7c) !== 0 || cmd.data.length !== 0)
    return status(Status.PARSE_ERROR);
  const size = (cmd.param1 & 0x80) !== 0 ? 32 : 4;
  const at = locate(zone, cmd.param2, size);
  if (at === undefined) return status(Status.PARSE_ERROR);
  const { mem } = ctx;
  const out = new Uint8Array(size);
  if (zone === 'config') {
    out.set(mem.config.subarray(at.offset, at.offset + size));
    return ok(out);
  }
  if (!mem.dataLocked) return status(Status.EXECUTION_ERROR);
  if (zone === 'otp') {
    out.set(mem.otp.subarray(at.offset, at.offset + size));
    return ok(out);
  }
  const sc = mem.slotConfig(at.slot);
  if (mem.keyConfig(at.slot).private || sc.isSecret || sc.encryptRead) return status(Status.EXECUTION_ERROR);
  const slot = mem.slots[at.slot];
  if (slot === undefined) return status(Status.PARSE_ERROR);
  out.set(slot.subarray(at.offset, at.offset + at.valid));
  return ok(out);
}
