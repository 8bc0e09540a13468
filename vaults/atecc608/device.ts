import { describeError, ErrorCodes, isKeyhopError, KeyhopError } from '../../runtime/errors.js';
import { type Logger, silentLogger } from '../../runtime/log.js';
import type { AfterTransaction, AteccLink, CommandStep } from './link.js';
import {
  counterCommand,
  DIGEST_SIZE,
  ecdhCommand,
  genKeyPrivateCommand,
  genKeyPublicCommand,
  infoCommand,
  lockConfigCommand,
  lockDataCommand,
  lockSlotCommand,
  noncePassThroughCommand,
  PUBLIC_KEY_SIZE,
  parseCounter,
  RANDOM_SIZE,
  randomCommand,
  readCommand,
  SECRET_SIZE,
  SIGNATURE_SIZE,
  selfTestCommand,
  selfTestFailures,
  shaEndCommand,
  shaStartCommand,
  shaUpdateCommand,
  signExternalCommand,
  type UpdateExtraKind,
  updateExtraCommand,
  verifyExternalCommand,
  verifyVerdict,
  writeCommand,
} from './protocol/commands.js';
import {
  ConfigOffset,
  configWritePlan,
  lockSummaryCrc,
  type ParsedConfig,
  parseConfigZone,
} from './protocol/config.js';
import { opcodeName, SelfTestBit, SHA_BLOCK_SIZE, UpdateExtraMode } from './protocol/opcodes.js';
import { type Command, type DecodedResponse, decodeResponse, encodeCommand } from './protocol/packet.js';
import { type AteccStatusError, Status, statusError } from './protocol/status.js';
import { budgetIsFixed, budgetMs, type ClockDivider, dividerFromChipMode } from './protocol/timing.js';
import {
  type AccessSize,
  BLOCK_SIZE,
  CONFIG_ZONE_SIZE,
  checkSlot,
  describeAddress,
  type ZoneAddress,
} from './protocol/zones.js';

export { isTestPattern } from './protocol/commands.js';
export type { ClockDivider } from './protocol/timing.js';

export type AteccModel = '608A' | '608B' | 'unknown';

export interface Atecc608Options {
  /** Clock divider for execution budgets. Default: learned from config byte 19 (ChipMode) on first need. */
  readonly divider?: ClockDivider;
  /** How often a transiently failed transaction is repeated. Default 3. */
  readonly retries?: number;
  readonly logger?: Logger;
}

/** Largest input sha256() sends in one wake; longer data risks the ~1.3 s watchdog (§1.2). */
export const SHA_MAX_INPUT = 4096;
/** 12 × the slowest SHA budget (75 ms at M2) stays well inside one watchdog period. */
const SHA_STEPS_PER_WAKE = 12;

interface Step {
  readonly command: Command;
  /** For messages: `Sign slot 2`. */
  readonly context: string;
  /** Data bytes the response must carry, or `status` for a bare success. */
  readonly expect: number | 'status';
  /** Statuses that are answers rather than errors (Verify's miscompare, SelfTest's bitmap). */
  readonly accept?: (status: number) => boolean;
}

/**
 * `always`: the whole transaction may run again (reads, signatures, writes of the same bytes).
 * `unexecuted`: only when the chip certainly did not run it (CRC error on the command, watchdog,
 * ECC fault); for Lock, Counter increment and UpdateExtra, whose repetition is not harmless.
 */
type RetryPolicy = 'always' | 'unexecuted';

type Outcome =
  | { readonly ok: true; readonly responses: DecodedResponse[] }
  | {
      readonly ok: false;
      readonly error: KeyhopError;
      readonly retry: 'never' | 'always' | 'unexecuted';
      readonly watchdog?: boolean;
    };

const slotContext = (what: string, slot: number) => `${what} slot ${slot}`;

function checkBytes(
  what: string,
  bytes: Uint8Array,
  size: number,
  code: 'KEY_INVALID' | 'ENCODE_LIMIT',
): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== size) {
    const got = bytes instanceof Uint8Array ? `${bytes.length} bytes` : typeof bytes;
    throw new KeyhopError(ErrorCodes[code], `ATECC ${what} must be ${size} bytes, got ${got}`);
  }
}

/** Model from the Info revision: byte 2 0x60 is a 608; byte 3 0x02 the A, 0x03 and later the B (§7.9). */
export function modelOf(revision: Uint8Array): AteccModel {
  if (revision[2] !== 0x60) return 'unknown';
  const rev = revision[3] ?? 0;
  if (rev === 0x02) return '608A';
  return rev >= 0x03 ? '608B' : 'unknown';
}

/**
 * An ATECC608 behind any AteccLink: builds commands, checks every response's CRC and status,
 * retries transient failures and turns the rest into typed errors. Key material is never logged.
 */
export class Atecc608 {
  readonly link: AteccLink;
  readonly #retries: number;
  readonly #log: Logger;
  readonly #fixedDivider: ClockDivider | undefined;
  #divider: Promise<ClockDivider> | undefined;

  constructor(link: AteccLink, options: Atecc608Options = {}) {
    const retries = options.retries ?? 3;
    if (!Number.isInteger(retries) || retries < 0 || retries > 100) {
      throw new KeyhopError(ErrorCodes.CONFIG_INVALID, `ATECC retries ${retries} is not 0..100`);
    }
    this.link = link;
    this.#retries = retries;
    this.#log = options.logger ?? silentLogger;
    this.#fixedDivider = options.divider;
    if (options.divider !== undefined) this.#divider = Promise.resolve(options.divider);
  }

  // ---- identity and configuration ----

  async info(): Promise<{ revision: Uint8Array; model: AteccModel }> {
    const [r] = await this.#run([{ command: infoCommand('revision'), context: 'Info revision', expect: 4 }]);
    const revision = dataOf(r);
    return { revision, model: modelOf(revision) };
  }

  /** The 9-byte serial number (config bytes 0–3 and 8–12). */
  async serialNumber(): Promise<Uint8Array> {
    const block0 = await this.read({ zone: 'config', block: 0 }, 32);
    this.#learn(block0[ConfigOffset.CHIP_MODE]!);
    const sn = new Uint8Array(9);
    sn.set(block0.subarray(ConfigOffset.SN_0_3, ConfigOffset.SN_0_3 + 4));
    sn.set(block0.subarray(ConfigOffset.SN_4_8, ConfigOffset.SN_4_8 + 5), 4);
    return sn;
  }

  /** All 128 config bytes: four 32-byte Reads in one wake. */
  async readConfigZone(): Promise<Uint8Array> {
    const steps = [0, 1, 2, 3].map((block) => ({
      command: readCommand({ zone: 'config', block }, 32),
      context: `Read config block ${block}`,
      expect: BLOCK_SIZE,
    }));
    const responses = await this.#run(steps);
    const zone = new Uint8Array(CONFIG_ZONE_SIZE);
    responses.forEach((r, i) => {
      zone.set(dataOf(r), i * BLOCK_SIZE);
    });
    this.#learn(zone[ConfigOffset.CHIP_MODE]!);
    return zone;
  }

  async config(): Promise<ParsedConfig> {
    return parseConfigZone(await this.readConfigZone());
  }

  // ---- keys and crypto ----

  /**
   * 32 bytes from the RNG. While the config zone is unlocked this is the fixed test pattern
   * (`isTestPattern`); deciding whether that is acceptable is the caller's job.
   */
  async random(): Promise<Uint8Array> {
    const [r] = await this.#run([{ command: randomCommand(), context: 'Random', expect: RANDOM_SIZE }]);
    return dataOf(r);
  }

  /** A new P-256 key in `slot` (GenKey 0x04); returns its public key X‖Y. */
  async genKey(slot: number): Promise<Uint8Array> {
    const step = {
      command: genKeyPrivateCommand(slot),
      context: slotContext('GenKey', slot),
      expect: PUBLIC_KEY_SIZE,
    };
    return dataOf((await this.#run([step]))[0]);
  }

  /** The public key X‖Y of the private key in `slot` (GenKey 0x00). */
  async publicKey(slot: number): Promise<Uint8Array> {
    const step = {
      command: genKeyPublicCommand(slot),
      context: slotContext('GenKey public', slot),
      expect: PUBLIC_KEY_SIZE,
    };
    return dataOf((await this.#run([step]))[0]);
  }

  /**
   * ECDSA over a 32-byte digest with the key in `slot`: Nonce pass-through into MsgDigBuf (0x43)
   * then Sign external from MsgDigBuf (0xA0), in one wake so the buffer survives (§2.2 item 3).
   * Returns R‖S.
   */
  async sign(slot: number, digest: Uint8Array): Promise<Uint8Array> {
    checkSlot(slot);
    checkBytes('digest', digest, DIGEST_SIZE, 'ENCODE_LIMIT');
    const responses = await this.#run([
      {
        command: noncePassThroughCommand(digest, 'msgdigbuf'),
        context: 'Nonce (digest to sign)',
        expect: 'status',
      },
      {
        command: signExternalCommand(slot, 'msgdigbuf'),
        context: slotContext('Sign', slot),
        expect: SIGNATURE_SIZE,
      },
    ]);
    return dataOf(responses[1]);
  }

  /** Verifies R‖S over `digest` with the public key X‖Y on the chip; a miscompare (0x01) is `false`. */
  async verifyExternal(digest: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): Promise<boolean> {
    checkBytes('digest', digest, DIGEST_SIZE, 'ENCODE_LIMIT');
    checkBytes('signature', signature, SIGNATURE_SIZE, 'KEY_INVALID');
    checkBytes('public key', publicKey, PUBLIC_KEY_SIZE, 'KEY_INVALID');
    const responses = await this.#run([
      {
        command: noncePassThroughCommand(digest, 'msgdigbuf'),
        context: 'Nonce (digest to verify)',
        expect: 'status',
      },
      {
        command: verifyExternalCommand(signature, publicKey, 'msgdigbuf'),
        context: 'Verify external',
        expect: 'status',
        accept: (s) => s === Status.MISCOMPARE,
      },
    ]);
    return verifyVerdict(statusOf(responses[1])) === true;
  }

  /** ECDH (mode 0x0C) between the key in `slot` and `peer` X‖Y: the shared x-coordinate, in clear. */
  async ecdh(slot: number, peer: Uint8Array): Promise<Uint8Array> {
    checkSlot(slot);
    checkBytes('peer public key', peer, PUBLIC_KEY_SIZE, 'KEY_INVALID');
    const step = {
      command: ecdhCommand(slot, peer),
      context: slotContext('ECDH', slot),
      expect: SECRET_SIZE,
    };
    return dataOf((await this.#run([step]))[0]);
  }

  // ---- zones ----

  async read(address: ZoneAddress, size: AccessSize = 32): Promise<Uint8Array> {
    const step = {
      command: readCommand(address, size),
      context: `Read ${describeAddress(address)}`,
      expect: size,
    };
    return dataOf((await this.#run([step]))[0]);
  }

  async write(address: ZoneAddress, data: Uint8Array): Promise<void> {
    const step: Step = {
      command: writeCommand(address, data),
      context: `Write ${describeAddress(address)}`,
      expect: 'status',
    };
    await this.#run([step]);
  }

  /**
   * Writes `zone` (128 bytes) the way cryptoauthlib does (configWritePlan: never bytes 0–15 or
   * 84–87), then sets UserExtra/UserExtraAdd (bytes 84/85) with UpdateExtra when they are non-zero
   * and differ from the chip's. Does not lock.
   */
  async writeConfigZone(zone: Uint8Array): Promise<void> {
    checkBytes('config zone', zone, CONFIG_ZONE_SIZE, 'ENCODE_LIMIT');
    const steps: Step[] = configWritePlan(zone).map((w) => ({
      command: writeCommand(w.address, w.data),
      context: `Write ${describeAddress(w.address)}`,
      expect: 'status',
    }));
    await this.#run(steps);
    this.#forgetDivider();
    const extras = [
      [ConfigOffset.USER_EXTRA, UpdateExtraMode.USER_EXTRA],
      [ConfigOffset.USER_EXTRA_ADD, UpdateExtraMode.USER_EXTRA_ADD],
    ] as const;
    if (extras.every(([at]) => zone[at] === 0)) return;
    const word = await this.read({ zone: 'config', block: 2, offset: 5 }, 4);
    for (const [at, mode] of extras) {
      const want = zone[at]!;
      if (want !== 0 && word[at - ConfigOffset.USER_EXTRA] !== want) await this.updateExtra(mode, want);
    }
  }

  /** Locks the config zone; with `expectedZone` the chip checks its CRC (mode 0x00), else mode 0x80. */
  async lockConfig(expectedZone?: Uint8Array): Promise<void> {
    const command = lockConfigCommand(expectedZone === undefined ? undefined : lockSummaryCrc(expectedZone));
    await this.#run([{ command, context: 'Lock config', expect: 'status' }], { retry: 'unexecuted' });
    this.#forgetDivider();
  }

  /** Locks the data and OTP zones; with `expectedCrc` mode 0x01, else 0x81. */
  async lockData(expectedCrc?: number): Promise<void> {
    const step = { command: lockDataCommand(expectedCrc), context: 'Lock data', expect: 'status' } as const;
    await this.#run([step], { retry: 'unexecuted' });
  }

  async lockSlot(slot: number): Promise<void> {
    const step = {
      command: lockSlotCommand(slot),
      context: slotContext('Lock', slot),
      expect: 'status',
    } as const;
    await this.#run([step], { retry: 'unexecuted' });
  }

  // ---- the rest ----

  /** SHA-256 on the chip: Start, Update per 64 bytes, End with the rest, in one wake. */
  async sha256(data: Uint8Array): Promise<Uint8Array> {
    if (!(data instanceof Uint8Array) || data.length > SHA_MAX_INPUT) {
      throw new KeyhopError(ErrorCodes.ENCODE_LIMIT, `ATECC sha256 takes at most ${SHA_MAX_INPUT} bytes`);
    }
    const steps: Step[] = [{ command: shaStartCommand(), context: 'SHA Start', expect: 'status' }];
    const full = data.length - (data.length % SHA_BLOCK_SIZE);
    for (let at = 0; at < full; at += SHA_BLOCK_SIZE) {
      steps.push({
        command: shaUpdateCommand(data.subarray(at, at + SHA_BLOCK_SIZE)),
        context: 'SHA Update',
        expect: 'status',
      });
    }
    steps.push({ command: shaEndCommand(data.subarray(full)), context: 'SHA End', expect: DIGEST_SIZE });
    // One wake must end before the watchdog (~1.3 s) and links carry at most 16 commands per wake,
    // so long inputs go in several wakes; the SHA context survives idle (cryptoauthlib idles
    // between Start, Update and End too). A group is resent only when the chip surely did not run
    // it: a repeated Update would silently change the digest.
    let responses: DecodedResponse[] = [];
    for (let at = 0; at < steps.length; at += SHA_STEPS_PER_WAKE) {
      const group = steps.slice(at, at + SHA_STEPS_PER_WAKE);
      responses = await this.#run(group, {
        retry: at === 0 && group.length === steps.length ? 'always' : 'unexecuted',
      });
    }
    return dataOf(responses[responses.length - 1]);
  }

  /** Runs the chip's self tests; returns the bitmap of failed tests (0 = all passed). */
  async selfTest(bitmap: number = SelfTestBit.ALL): Promise<number> {
    const step: Step = {
      command: selfTestCommand(bitmap),
      context: 'SelfTest',
      expect: 'status',
      accept: (s) => selfTestFailures(s, bitmap) !== undefined,
    };
    const [r] = await this.#run([step]);
    return statusOf(r);
  }

  /** Reads (or increments, then returns) monotonic counter 0 or 1. */
  async counter(id: number, increment = false): Promise<number> {
    const step = {
      command: counterCommand(id, increment),
      context: `Counter ${id} ${increment ? 'increment' : 'read'}`,
      expect: 4,
    };
    const [r] = await this.#run([step], { retry: increment ? 'unexecuted' : 'always' });
    return parseCounter(dataOf(r));
  }

  /** UpdateExtra: byte 84 (mode 0), byte 85 (mode 1), or decrement slot `value`'s limited-use counter (mode 2). */
  async updateExtra(mode: UpdateExtraKind | number, value: number): Promise<void> {
    const step = {
      command: updateExtraCommand(mode, value),
      context: 'UpdateExtra',
      expect: 'status',
    } as const;
    await this.#run([step], { retry: 'unexecuted' });
  }

  /** Puts the chip to sleep, clearing TempKey, the message-digest buffer and all other volatile state. */
  async sleep(): Promise<void> {
    await this.link.transact([], { end: 'sleep' });
  }

  // ---- machinery ----

  #learn(chipMode: number): void {
    if (this.#fixedDivider !== undefined) return;
    this.#divider = Promise.resolve(this.#dividerOf(chipMode));
  }

  #forgetDivider(): void {
    if (this.#fixedDivider === undefined) this.#divider = undefined;
  }

  #dividerOf(chipMode: number): ClockDivider {
    const divider = dividerFromChipMode(chipMode);
    if (divider !== undefined) return divider;
    // An undocumented divider code: assume the slowest so no budget is too short.
    this.#log.warn({ chipMode }, 'ATECC ChipMode has an unknown clock divider; using M2 budgets');
    return 'M2';
  }

  async #dividerFor(steps: readonly Step[]): Promise<ClockDivider> {
    if (this.#divider === undefined && steps.every((s) => budgetIsFixed(s.command.opcode))) return 'M0';
    if (this.#divider === undefined) {
      const learning = this.read({ zone: 'config', block: 0 }, 32).then((b) =>
        this.#dividerOf(b[ConfigOffset.CHIP_MODE]!),
      );
      this.#divider = learning;
      learning.catch(() => {
        if (this.#divider === learning) this.#divider = undefined;
      });
    }
    return this.#divider;
  }

  async #run(
    steps: readonly Step[],
    options: { retry?: RetryPolicy; end?: AfterTransaction } = {},
  ): Promise<DecodedResponse[]> {
    const policy = options.retry ?? 'always';
    const divider = await this.#dividerFor(steps);
    const packets: CommandStep[] = steps.map((s) => ({
      packet: encodeCommand(s.command),
      maxExecMs: budgetMs(s.command.opcode, divider),
    }));
    const what = steps.map((s) => opcodeName(s.command.opcode)).join('+');
    for (let attempt = 1; ; attempt++) {
      const raw = await this.link.transact(packets, options.end ? { end: options.end } : {});
      const outcome = check(steps, raw);
      if (outcome.ok) return outcome.responses;
      const retryable = outcome.retry === 'unexecuted' || (outcome.retry === 'always' && policy === 'always');
      if (!retryable || attempt > this.#retries) {
        this.#log.debug({ command: what, attempt, code: outcome.error.code }, 'ATECC command failed');
        throw outcome.error;
      }
      this.#log.debug({ command: what, attempt, reason: outcome.error.message }, 'ATECC retrying');
      // After a watchdog warning, sleep resets the watchdog before the next wake (§7.5).
      if (outcome.watchdog) await this.sleep();
    }
  }
}

/** Checks each response against its step; the first problem decides. */
function check(steps: readonly Step[], raw: readonly Uint8Array[]): Outcome {
  if (raw.length !== steps.length) {
    const error = new KeyhopError(
      ErrorCodes.HARDWARE_IO,
      `ATECC link returned ${raw.length} responses for ${steps.length} commands`,
    );
    return { ok: false, error, retry: 'never' };
  }
  const responses: DecodedResponse[] = [];
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    let r: DecodedResponse;
    try {
      r = decodeResponse(raw[i]!);
    } catch (e) {
      const error = isKeyhopError(e) ? e : new KeyhopError(ErrorCodes.HARDWARE_IO, describeError(e));
      return {
        ok: false,
        error: new KeyhopError(error.code, `${step.context}: ${error.message}`, { cause: e }),
        retry: 'always',
      };
    }
    if (r.kind === 'status') {
      const answered = (step.expect === 'status' && r.status === Status.SUCCESS) || step.accept?.(r.status);
      if (!answered) {
        const failure = statusFailure(r.status, step.context);
        // The steps before this one did run: resending the transaction repeats them, which only
        // a caller whose commands are all repeatable ('always') may allow.
        return i > 0 && failure.retry === 'unexecuted' ? { ...failure, retry: 'always' } : failure;
      }
    } else if (step.expect !== r.data.length) {
      const expected = step.expect === 'status' ? 'a status' : `${step.expect} bytes`;
      const error = new KeyhopError(
        ErrorCodes.HARDWARE_IO,
        `${step.context}: the chip answered with ${r.data.length} data bytes where ${expected} was expected`,
      );
      return { ok: false, error, retry: 'always' };
    }
    responses.push(r);
  }
  return { ok: true, responses };
}

function statusFailure(status: number, context: string): Extract<Outcome, { ok: false }> {
  const error: AteccStatusError = statusError(status, context);
  switch (status) {
    case Status.COMM_ERROR:
    case Status.ECC_FAULT:
      return { ok: false, error, retry: 'unexecuted' };
    case Status.WATCHDOG:
      return { ok: false, error, retry: 'unexecuted', watchdog: true };
    case Status.WAKE:
      // The chip slept (watchdog) somewhere in the transaction: whether the command ran is unknown.
      return { ok: false, error, retry: 'always' };
    default:
      return { ok: false, error, retry: 'never' };
  }
}

function dataOf(r: DecodedResponse | undefined): Uint8Array {
  if (r?.kind !== 'data') throw new KeyhopError(ErrorCodes.HARDWARE_IO, 'ATECC response carried no data');
  return r.data;
}

function statusOf(r: DecodedResponse | undefined): number {
  if (r?.kind !== 'status') throw new KeyhopError(ErrorCodes.HARDWARE_IO, 'ATECC response carried no status');
  return r.status;
}
