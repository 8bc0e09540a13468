import { concatBytes } from '@noble/hashes/utils.js';
import { atcaCrc } from '../../protocol/crc.js';
import { Cfg, LOCKED, Status } from '../constants.js';
import { type ChipCommand, type ChipContext, type CommandResult, status } from '../context.js';

/**
 * Lock (0x17, §2.1, §3.5). Mode bits 0-1: 0 config, 1 data+OTP, 2 one slot (bits 2-5 = slot);
 * bit 7 = ignore the summary CRC in param2.
 * - Config: the CRC (§1.5 algorithm) covers all 128 config bytes as they are before locking.
 *   Refused (0x0F) when already locked or on a CRC mismatch.
 * - Data+OTP: refused before the config lock or when already locked. The CRC covers the data zone
 *   (slots 0-15 in order at their full sizes, 1 208 bytes) then the OTP zone (64 bytes) — the order
 *   the 508A datasheet gives; private keys live apart in this emulator and are not covered, so lock
 *   with 0x81 after GenKey (assumption, unverified).
 * - Slot: needs the data lock, KeyConfig.Lockable and a slot not yet locked. §9.7 decision:
 *   cryptoauthlib sends param2 = 0 without bit 7 for slot locks, so the summary is not checked.
 */
export function lock(ctx: ChipContext, cmd: ChipCommand): CommandResult {
  const kind = cmd.param1 & 0x03;
  const ignoreCrc = (cmd.param1 & 0x80) !== 0;
  if (cmd.data.length !== 0 || kind === 3 || (cmd.param1 & 0x40) !== 0) return status(Status.PARSE_ERROR);
  if (kind !== 2 && (cmd.param1 & 0x3c) !== 0) return status(Status.PARSE_ERROR);
  const { mem } = ctx;

  if (kind === 0) {
    if (mem.configLocked) return status(Status.EXECUTION_ERROR);
    if (!ignoreCrc && atcaCrc(mem.config) !== cmd.param2) return status(Status.EXECUTION_ERROR);
    mem.config[Cfg.LOCK_CONFIG] = LOCKED;
    return status(Status.SUCCESS);
  }
  if (kind === 1) {
    if (!mem.configLocked || mem.dataLocked) return status(Status.EXECUTION_ERROR);
    if (!ignoreCrc && dataZoneCrc(ctx) !== cmd.param2) return status(Status.EXECUTION_ERROR);
    mem.config[Cfg.LOCK_VALUE] = LOCKED;
    return status(Status.SUCCESS);
  }
  const slot = (cmd.param1 >> 2) & 0x0f;
  if (!mem.dataLocked || !mem.keyConfig(slot).lockable || mem.slotLocked(slot)) {
    return status(Status.EXECUTION_ERROR);
  }
  mem.lockSlot(slot);
  return status(Status.SUCCESS);
}

/** The summary CRC a host passes to lock data+OTP: slots 0-15 in order, then OTP. */
export function dataZoneCrc(ctx: Pick<ChipContext, 'mem'>): number {
  const parts = [...ctx.mem.slots, ctx.mem.otp];
  return atcaCrc(concatBytes(...parts));
}
