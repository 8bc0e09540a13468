import { SLOT_COUNT, Status } from '../constants.js';
import { type ChipCommand, type ChipContext, type CommandResult, ok, status } from '../context.js';
import { generatePrivateKey, publicKeyOf } from '../p256.js';
import { isP256PrivateSlot } from '../policy.js';

const TEMPKEY = 0xffff;

/**
 * GenKey (0x40, §2.1, §2.2).
 * - 0x04 private: a new P-256 key in a private-key slot (KeyConfig.Private, KeyType 4). Needs the
 *   config zone locked (508A datasheet rule; §3.5 gives 0x0F as the likely code) and, after the data
 *   lock, SlotConfig bit 13 and an unlocked slot. param2 0xFFFF puts an ephemeral key in TempKey (608).
 *   Answers the public key X‖Y.
 * - 0x00 public: X‖Y of the key in a private-key slot; needs KeyConfig.PubInfo and a key (an empty
 *   slot answers 0x0F; the real part would compute from whatever bytes the slot holds).
 * The digest (0x08), PubKey-digest (0x10) and MAC (0x20) variants are not emulated (0x03).
 */
export function genKey(ctx: ChipContext, cmd: ChipCommand): CommandResult {
  if (cmd.data.length !== 0 || (cmd.param1 !== 0x04 && cmd.param1 !== 0x00))
    return status(Status.PARSE_ERROR);
  const ephemeral = cmd.param2 === TEMPKEY;
  if (!ephemeral && cmd.param2 >= SLOT_COUNT) return status(Status.PARSE_ERROR);
  const { mem, vol } = ctx;

  if (cmd.param1 === 0x00) {
    const key = ephemeral
      ? vol.tempKey.valid && vol.tempKey.holdsPrivateKey
        ? vol.tempKey.value.subarray(0, 32)
        : undefined
      : mem.privateKeys[cmd.param2];
    if (!ephemeral) {
      const kc = mem.keyConfig(cmd.param2);
      if (!isP256PrivateSlot(kc) || !kc.pubInfo) return status(Status.EXECUTION_ERROR);
    }
    if (key === undefined) return status(Status.EXECUTION_ERROR);
    if (ctx.eccFault()) return status(Status.ECC_FAULT);
    return ok(publicKeyOf(key));
  }

  if (!mem.configLocked) return status(Status.EXECUTION_ERROR);
  if (!ephemeral) {
    const slot = cmd.param2;
    if (!isP256PrivateSlot(mem.keyConfig(slot))) return status(Status.EXECUTION_ERROR);
    if (mem.dataLocked && (!mem.slotConfig(slot).genKeyAllowed || mem.slotLocked(slot))) {
      return status(Status.EXECUTION_ERROR);
    }
  }
  if (ctx.eccFault()) return status(Status.ECC_FAULT);
  const privateKey = generatePrivateKey(ctx.rng);
  if (ephemeral) vol.setTempKey(privateKey, 'random', true);
  else mem.privateKeys[cmd.param2] = privateKey;
  return ok(publicKeyOf(privateKey));
}
