import { Status } from '../constants.js';
import { type ChipCommand, type ChipContext, type CommandResult, status } from '../context.js';
import { locate, zoneOf } from './address.js';

/**
 * Write (0x12, §2.1, §2.3, §3.4, §3.5). param1 bits 0-1 zone, bit 6 encrypted (+32-byte MAC),
 * bit 7 = 32 bytes.
 * - Config: only while the config zone is unlocked; bytes 0-15 never (so 4-byte words 0-3 and a
 *   32-byte block 0 are refused) and bytes 84-87 never (UpdateExtra/Lock only; so word 21 and a
 *   32-byte block 2 are refused), all with 0x0F.
 * - Data and OTP: need the config zone locked. Before the data lock only 32-byte writes
 *   (`write_invalid_block_len`: 4-byte → 0x0F; applied to OTP too, 508A datasheet rule); private-key
 *   slots never (`write_boundary_conditions`). After the data lock OTP is read-only and a data slot
 *   takes clear writes only when WriteConfig is 0 (Always) or 1 (PubInvalid; the emulator keeps no
 *   validation state, so stored public keys count as invalid), and only while the slot is not locked.
 * - Encrypted writes are not emulated (0x0F, they would need GenDig). A 32-byte write to a short last
 *   block writes only the valid bytes (§2.3).
 */
export function write(ctx: ChipContext, cmd: ChipCommand): CommandResult {
  const zone = zoneOf(cmd.param1);
  if (zone === undefined || (cmd.param1 & 0x3c) !== 0) return status(Status.PARSE_ERROR);
  const size = (cmd.param1 & 0x80) !== 0 ? 32 : 4;
  const encrypted = (cmd.param1 & 0x40) !== 0;
  if (cmd.data.length !== size + (encrypted ? 32 : 0)) return status(Status.PARSE_ERROR);
  const at = locate(zone, cmd.param2, size);
  if (at === undefined) return status(Status.PARSE_ERROR);
  const { mem } = ctx;
  const value = cmd.data.subarray(0, size);

  if (zone === 'config') {
    if (mem.configLocked || encrypted) return status(Status.EXECUTION_ERROR);
    const end = at.offset + size;
    if (at.offset < 16 || (at.offset < 88 && end > 84)) return status(Status.EXECUTION_ERROR);
    mem.config.set(value, at.offset);
    return status(Status.SUCCESS);
  }

  if (!mem.configLocked || encrypted) return status(Status.EXECUTION_ERROR);
  if (!mem.dataLocked && size !== 32) return status(Status.EXECUTION_ERROR);
  if (zone === 'otp') {
    if (mem.dataLocked) return status(Status.EXECUTION_ERROR);
    mem.otp.set(value, at.offset);
    return status(Status.SUCCESS);
  }
  if (mem.keyConfig(at.slot).private) return status(Status.EXECUTION_ERROR);
  if (mem.dataLocked) {
    const wc = mem.slotConfig(at.slot).writeConfig;
    if ((wc !== 0 && wc !== 1) || mem.slotLocked(at.slot)) return status(Status.EXECUTION_ERROR);
  }
  mem.slots[at.slot]?.set(value.subarray(0, at.valid), at.offset);
  return status(Status.SUCCESS);
}
