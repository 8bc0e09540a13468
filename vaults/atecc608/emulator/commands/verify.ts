import { KEY_TYPE_P256, SLOT_COUNT, Status, slotSize } from '../constants.js';
import { type ChipCommand, type ChipContext, type CommandResult, status } from '../context.js';
import { isValidPublicKey, verifyDigest } from '../p256.js';

/**
 * Verify (0x45, §2.1, §2.2.4). Message from TempKey, or MsgDigBuf with mode bit 0x20.
 * - External (mode 2): param2 = key type (0x0004 = P-256 only), data = R‖S ‖ X‖Y (128 bytes).
 * - Stored (mode 0): param2 = slot, data = R‖S; the slot must be a P-256 public-key slot (Private = 0,
 *   KeyType 4) of 72 bytes laid out `pad4 ‖ X ‖ pad4 ‖ Y` (§2.2.2), both zones locked (§3.5). A
 *   PubInfo (validated-key) slot needs a validation the emulator does not implement → 0x0F.
 * Answers 0x00 when the signature verifies, 0x01 (miscompare) when it does not. A public key that
 * is not on the curve answers 0x0F, the same choice as ECDH (§9.5). The validate/invalidate modes
 * and the MAC output (0x80) are not emulated (0x03). Verify leaves TempKey and MsgDigBuf as they are.
 */
export function verify(ctx: ChipContext, cmd: ChipCommand): CommandResult {
  const kind = cmd.param1 & 0x07;
  if ((cmd.param1 & ~0x27) !== 0 || (kind !== 0 && kind !== 2)) return status(Status.PARSE_ERROR);
  const { mem, vol } = ctx;
  let signature: Uint8Array;
  let publicKey: Uint8Array;
  if (kind === 2) {
    if (cmd.param2 !== KEY_TYPE_P256 || cmd.data.length !== 128) return status(Status.PARSE_ERROR);
    signature = cmd.data.subarray(0, 64);
    publicKey = cmd.data.subarray(64, 128);
  } else {
    if (cmd.param2 >= SLOT_COUNT || cmd.data.length !== 64) return status(Status.PARSE_ERROR);
    if (!mem.configLocked || !mem.dataLocked) return status(Status.EXECUTION_ERROR);
    const slot = cmd.param2;
    const kc = mem.keyConfig(slot);
    if (kc.private || kc.keyType !== KEY_TYPE_P256 || kc.pubInfo || slotSize(slot) < 72) {
      return status(Status.EXECUTION_ERROR);
    }
    const stored = mem.slots[slot] ?? new Uint8Array(72);
    publicKey = new Uint8Array(64);
    publicKey.set(stored.subarray(4, 36), 0);
    publicKey.set(stored.subarray(40, 72), 32);
    signature = cmd.data;
  }
  const buffer = (cmd.param1 & 0x20) !== 0 ? vol.msgDigBuf : vol.tempKey;
  if (!buffer.valid) return status(Status.EXECUTION_ERROR);
  if (!isValidPublicKey(publicKey)) return status(Status.EXECUTION_ERROR);
  if (ctx.eccFault()) return status(Status.ECC_FAULT);
  const good = verifyDigest(signature, buffer.value.subarray(0, 32), publicKey);
  return status(good ? Status.SUCCESS : Status.MISCOMPARE);
}
