import { Cfg, SLOT_COUNT, Status } from '../constants.js';
import { type ChipCommand, type ChipContext, type CommandResult, ok, status } from '../context.js';
import { ecdhX } from '../p256.js';
import { isP256PrivateSlot, u16 } from '../policy.js';

/**
 * ECDH (0x43, §2.1, §2.2.5). Data = the peer public key X‖Y; the result is the x-coordinate.
 * Mode bit 0 = source (0 slot param2, 1 ephemeral key in TempKey), bit 1 = encrypted output,
 * bits 2-3 = result: 00 508-compatible (SlotConfig bit 3: 0 clear output, 1 written to slot N+1,
 * status 0), 01 slot N+1, 10 TempKey, 11 clear output.
 *
 * Needs both zones locked for a slot source (tests only run it then, §3.5), a P-256 private slot with
 * SlotConfig bit 2 and a key. Clear output is refused (0x0F) when ChipOptions.ECDHProt (bits 8-9)
 * is non-zero. §9.5 decision: a peer key that is not on the curve answers 0x0F. Encrypted output
 * (IO protection key) and a slot result with a TempKey source are not emulated (0x03).
 */
export function ecdh(ctx: ChipContext, cmd: ChipCommand): CommandResult {
  const mode = cmd.param1;
  const fromTempKey = (mode & 0x01) !== 0;
  const encrypted = (mode & 0x02) !== 0;
  const result = (mode >> 2) & 0x03;
  if ((mode & 0xf0) !== 0 || cmd.data.length !== 64 || encrypted) return status(Status.PARSE_ERROR);
  if (fromTempKey && (result === 0 || result === 1)) return status(Status.PARSE_ERROR);
  if (!fromTempKey && cmd.param2 >= SLOT_COUNT) return status(Status.PARSE_ERROR);
  const { mem, vol } = ctx;
  if (!mem.configLocked) return status(Status.EXECUTION_ERROR);

  let key: Uint8Array | undefined;
  let toNextSlot = result === 1;
  if (fromTempKey) {
    key = vol.tempKey.valid && vol.tempKey.holdsPrivateKey ? vol.tempKey.value.slice(0, 32) : undefined;
  } else {
    const slot = cmd.param2;
    const sc = mem.slotConfig(slot);
    if (!mem.dataLocked || !isP256PrivateSlot(mem.keyConfig(slot)) || !sc.ecdh) {
      return status(Status.EXECUTION_ERROR);
    }
    key = mem.privateKeys[slot];
    if (result === 0) toNextSlot = sc.ecdhToNextSlot;
  }
  if (key === undefined) return status(Status.EXECUTION_ERROR);
  const clearOutput = result === 3 || (result === 0 && !toNextSlot);
  const ecdhProt = (u16(mem.config, Cfg.CHIP_OPTIONS) >> 8) & 0x03;
  if (clearOutput && ecdhProt !== 0) return status(Status.EXECUTION_ERROR);
  if (toNextSlot && cmd.param2 + 1 >= SLOT_COUNT) return status(Status.EXECUTION_ERROR);
  if (ctx.eccFault()) return status(Status.ECC_FAULT);

  const shared = ecdhX(key, cmd.data);
  if (shared === undefined) return status(Status.EXECUTION_ERROR);
  if (clearOutput) return ok(shared);
  if (result === 2) {
    vol.setTempKey(shared, 'other');
  } else {
    const target = mem.slots[cmd.param2 + 1];
    target?.set(shared, 0);
  }
  return status(Status.SUCCESS);
}
