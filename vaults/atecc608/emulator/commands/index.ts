import { Op } from '../constants.js';
import type { ChipCommand, ChipContext, CommandResult } from '../context.js';
import { counter } from './counter.js';
import { ecdh } from './ecdh.js';
import { genKey } from './genkey.js';
import { info } from './info.js';
import { lock } from './lock.js';
import { nonce } from './nonce.js';
import { random } from './random.js';
import { read } from './read.js';
import { selfTest } from './selftest.js';
import { sha } from './sha.js';
import { sign } from './sign.js';
import { updateExtra } from './update-extra.js';
import { verify } from './verify.js';
import { write } from './write.js';

export type Handler = (ctx: ChipContext, cmd: ChipCommand) => CommandResult;

/**
 * The emulated commands. Anything else — unknown opcodes and the 608 commands the emulator does
 * not implement (CheckMac, DeriveKey, GenDig, MAC, KDF, AES, SecureBoot, PrivWrite) — answers 0x03,
 * as the chip does for an opcode it does not know. A test that needs one of them must fail loudly
 * rather than see a plausible but invented answer.
 */
export const HANDLERS: ReadonlyMap<number, Handler> = new Map<number, Handler>([
  [Op.INFO, info],
  [Op.RANDOM, random],
  [Op.NONCE, nonce],
  [Op.GENKEY, genKey],
  [Op.SIGN, sign],
  [Op.VERIFY, verify],
  [Op.ECDH, ecdh],
  [Op.SHA, sha],
  [Op.READ, read],
  [Op.WRITE, write],
  [Op.LOCK, lock],
  [Op.UPDATE_EXTRA, updateExtra],
  [Op.COUNTER, counter],
  [Op.SELFTEST, selfTest],
]);
