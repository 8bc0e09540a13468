import { SLOT_COUNT, Status } from '../constants.js';
import { type ChipCommand, type ChipContext, type CommandResult, ok, status } from '../context.js';
import { signDigest } from '../p256.js';
import { isP256PrivateSlot } from '../policy.js';

/**
 * Sign (0x41, §2.1, §2.2.3). External signing: 0x80 (message in TempKey) or 0xA0 (MsgDigBuf); the
 * 0x40 "include SN" bit is accepted and has no effect on external signatures (the TNG/TFLX
 * datasheets list 0xC0 too). Needs both zones locked (tests only run Sign then, §3.5), a P-256
 * private slot with SlotConfig bit 0 and a key, and a valid message buffer (an ephemeral private key
 * in TempKey is not a message). KeyConfig.ReqRandom is not enforced (§9.3: TNG parts sign external
 * digests after a pass-through Nonce).
 *
 * Internal signing (bit 7 clear) signs a message GenDig/GenKey left in TempKey; neither digest mode
 * is emulated, so TempKey never qualifies and internal Sign answers 0x0F.
 *
 * §9.4 decision: after a Sign, TempKey is invalid (the flag model of cryptoauthlib's `atca_host.c`),
 * and so is MsgDigBuf when it held the message; `quirks.keepMessageAfterSign` keeps both.
 */
export function sign(ctx: ChipContext, cmd: ChipCommand): CommandResult {
  const mode = cmd.param1 & ~0x40;
  if (cmd.data.length !== 0 || cmd.param2 >= SLOT_COUNT) return status(Status.PARSE_ERROR);
  if (mode !== 0x80 && mode !== 0xa0 && (mode & ~0x21) !== 0) return status(Status.PARSE_ERROR);
  const { mem, vol } = ctx;
  if (!mem.configLocked || !mem.dataLocked) return status(Status.EXECUTION_ERROR);
  if ((mode & 0x80) === 0) return status(Status.EXECUTION_ERROR);

  const slot = cmd.param2;
  const key = mem.privateKeys[slot];
  if (!isP256PrivateSlot(mem.keyConfig(slot)) || !mem.slotConfig(slot).externalSign || key === undefined) {
    return status(Status.EXECUTION_ERROR);
  }
  const fromMsgDigBuf = mode === 0xa0;
  const buffer = fromMsgDigBuf ? vol.msgDigBuf : vol.tempKey;
  if (!buffer.valid || (!fromMsgDigBuf && vol.tempKey.holdsPrivateKey)) return status(Status.EXECUTION_ERROR);
  if (ctx.eccFault()) return status(Status.ECC_FAULT);

  const signature = signDigest(buffer.value.slice(0, 32), key, ctx.rng);
  if (!ctx.quirks.keepMessageAfterSign) {
    vol.invalidateTempKey();
    if (fromMsgDigBuf) {
      vol.msgDigBuf.valid = false;
      vol.msgDigBuf.value.fill(0);
    }
  }
  return ok(signature);
}
