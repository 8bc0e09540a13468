import { crcMatches } from '../protocol/crc.js';
import { encodeResponse, encodeStatus, WAKE_SELFTEST_FAILED, WAKE_TOKEN } from '../protocol/packet.js';
import { HANDLERS } from './commands/index.js';
import { SELFTEST_ALL } from './commands/selftest.js';
import {
  type ClockDivider,
  EXEC_BUDGET_MS,
  Op,
  PACKET_MAX,
  PACKET_MIN,
  Status,
  T_WHI_MS,
  T_WHIST_MS,
  WATCHDOG_LONG_MS,
  WATCHDOG_MS,
} from './constants.js';
import type { ChipCommand, ChipContext, ChipQuirks, CommandResult } from './context.js';
import { type ChipImage, imageOf, memoryOf, parseChipImage } from './image.js';
import { ChipMemory, type Revision } from './memory.js';
import { ChipRng } from './rng.js';
import { VolatileState } from './volatile.js';

export type { ChipImage } from './image.js';
export type { Revision } from './memory.js';

/** 'zero': commands take no time; 'datasheet': cryptoauthlib's budgets (§1.7); or budgets × scale. */
export type ChipTiming = 'zero' | 'datasheet' | { readonly scale: number };

export interface ChipOptions {
  /** Seeds the chip RNG (keys, nonces, signatures, serial number). Default: from the OS. */
  readonly seed?: string | Uint8Array;
  readonly timing?: ChipTiming;
  readonly revision?: Revision;
  /** Clock in ms; default `performance.now`. */
  readonly now?: () => number;
  /** Resume from a saved image (its revision wins over `revision`). */
  readonly image?: ChipImage;
  readonly quirks?: Partial<ChipQuirks>;
}

export interface FaultInjection {
  /** The next N responses carry a corrupt CRC. */
  readonly responseCrcError?: number;
  /** The next N ECC operations (GenKey, Sign, Verify, ECDH) answer 0x05. */
  readonly eccFault?: number;
  /** SelfTest (and the power-on self-test, if ChipOptions bit 0) fails: true = every test, or a bitmap. */
  readonly selfTestFailure?: boolean | number;
  /** Overrides the watchdog period (ms). */
  readonly watchdogMs?: number;
}

export interface ExecuteResult {
  /** The response packet (count … CRC); empty when the chip was not awake and ignored the bytes. */
  readonly response: Uint8Array;
  /** How long the chip stays busy (NACKs) after receiving the command. */
  readonly execMs: number;
}

export type ChipPower = 'sleep' | 'idle' | 'awake';

/**
 * An ATECC608A/B as seen through its command interface (atecc608.md). The chip starts powered on and
 * asleep. Faults are always answered with a status packet, never a throw:
 * CRC 0xFF before everything (§1.6), then parse 0x03, watchdog 0xEE, self-test 0x07, ECC 0x05,
 * execution 0x0F, Verify miscompare 0x01.
 *
 * Command behaviour is documented on each handler in ./commands. In failure mode (a failed SelfTest
 * or power-on self-test) every command but SelfTest and Info answers 0x07.
 *
 * Open questions of atecc608.md §9, as decided here:
 * - §9.1 the self-test-failed wake token is `04 07 C4 40`, as cryptoauthlib expects (not its CRC).
 * - §9.2 reads past the response (or with none pending) return 0xFF, never a NACK (i2c-bus.ts).
 * - §9.3 KeyConfig.ReqRandom is not enforced for external Sign, GenKey or ECDH.
 * - §9.4 Sign invalidates TempKey, and MsgDigBuf when it signed from it (`quirks.keepMessageAfterSign`).
 * - §9.5 ECDH (and Verify) with a public key that is not on the curve answers 0x0F.
 * - §9.6 UpdateExtra with value 0 succeeds before the config lock; non-zero values need the lock.
 * - §9.7 slot locks do not check the summary CRC in param2.
 * - §9.8 a new I2C address (byte 16, or UserExtraAdd with ChipMode bit 0) applies after the next sleep.
 * Unimplemented opcodes (CheckMac, DeriveKey, GenDig, MAC, KDF, AES, SecureBoot, PrivWrite) and
 * unimplemented modes answer 0x03; an operation that needs GenDig/IO-protection state the emulator
 * never produces (internal Sign, encrypted Read/Write) answers 0x0F.
 */
export class Atecc608Chip {
  readonly revision: Revision;
  readonly now: () => number;
  private readonly mem: ChipMemory;
  private readonly vol = new VolatileState();
  private readonly rng: ChipRng;
  private readonly scale: number;
  private readonly quirks: ChipQuirks;
  private power: ChipPower = 'sleep';
  private wokeAt = 0;
  private address: number;
  private lastOutput: Uint8Array = new Uint8Array(0);
  private selfTestFailed = false;
  /** The failure came from the power-on self-test: only then does a wake answer 04 07 C4 40. */
  private powerOnSelfTestFailed = false;
  private faults = {
    responseCrcError: 0,
    eccFault: 0,
    selfTestMask: 0,
    watchdogMs: undefined as number | undefined,
  };
  private readonly ctx: ChipContext;

  constructor(options: ChipOptions = {}) {
    this.now = options.now ?? (() => performance.now());
    this.scale = timingScale(options.timing ?? 'zero');
    this.quirks = { keepMessageAfterSign: false, ...options.quirks };
    if (options.image !== undefined) {
      const image = parseChipImage(options.image);
      this.revision = image.revision;
      this.mem = memoryOf(image);
      this.rng = ChipRng.fromState(image.rng);
    } else {
      this.revision = options.revision ?? '608A';
      this.rng = ChipRng.fromSeed(options.seed);
      this.mem = ChipMemory.factory(this.revision, this.rng.bytes(6));
    }
    this.address = this.mem.configuredI2cAddress();
    this.ctx = {
      revision: this.revision,
      mem: this.mem,
      vol: this.vol,
      rng: this.rng,
      quirks: this.quirks,
      eccFault: () => {
        if (this.faults.eccFault <= 0) return false;
        this.faults.eccFault -= 1;
        return true;
      },
      selfTestFailMask: () => this.faults.selfTestMask,
      setSelfTestFailed: (failed) => {
        this.selfTestFailed = failed;
        if (!failed) this.powerOnSelfTestFailed = false;
      },
    };
  }

  static fromImage(image: ChipImage, options: Omit<ChipOptions, 'image'> = {}): Atecc608Chip {
    return new Atecc608Chip({ ...options, image });
  }

  exportImage(): ChipImage {
    return imageOf(this.mem, this.revision, this.rng.state());
  }

  get awake(): boolean {
    return this.power === 'awake';
  }

  get powerState(): ChipPower {
    return this.power;
  }

  /** 7-bit address the chip answers; a new byte 16 / UserExtraAdd applies after the next sleep (§9.8). */
  get i2cAddress(): number {
    return this.address;
  }

  /** Multiplier applied to datasheet times (0 for 'zero'). */
  get timingScale(): number {
    return this.scale;
  }

  /** tWHI, or tWHIST with the power-on self-test enabled (ChipOptions bit 0), scaled (§1.2). */
  get wakeDelayMs(): number {
    return (this.powerOnSelfTest ? T_WHIST_MS : T_WHI_MS) * this.scale;
  }

  /** The output buffer: the last response, or the wake token after a wake. */
  get output(): Uint8Array {
    return this.lastOutput;
  }

  get watchdogMs(): number {
    return this.faults.watchdogMs ?? ((this.mem.chipMode & 0x04) !== 0 ? WATCHDOG_LONG_MS : WATCHDOG_MS);
  }

  /** ChipMode bits 3-7 (§3.1); values other than 0x05/0x0D run at M0 budgets (assumption). */
  get clockDivider(): ClockDivider {
    const div = this.mem.chipMode >> 3;
    return div === 0x05 ? 'M1' : div === 0x0d ? 'M2' : 'M0';
  }

  /** A wake pulse. False when the chip was already awake (the pulse is ignored, §1.2). */
  wake(): boolean {
    if (this.power === 'awake') return false;
    const fromSleep = this.power === 'sleep';
    this.power = 'awake';
    this.wokeAt = this.now();
    if (fromSleep && this.powerOnSelfTest) {
      // Each power-on self-test decides afresh; a failed SelfTest command is not its business.
      if (this.faults.selfTestMask !== 0) this.selfTestFailed = true;
      else if (this.powerOnSelfTestFailed) this.selfTestFailed = false;
      this.powerOnSelfTestFailed = this.faults.selfTestMask !== 0;
    }
    // §9.1: the self-test-failed token is emitted as cryptoauthlib expects it, CRC and all. It
    // reports the power-on self-test (§1.2, tWHIST); a failed SelfTest command leaves the wake
    // token alone, or no host (cryptoauthlib's hal_check_wake, the addon, the kit links all refuse
    // that token) could ever wake the chip to run the SelfTest that clears the failure mode.
    this.lastOutput = (this.powerOnSelfTestFailed ? WAKE_SELFTEST_FAILED : WAKE_TOKEN).slice();
    return true;
  }

  /** Idle: ignores the bus until the next wake; TempKey, MsgDigBuf, AltKeyBuf (and SHA context) kept. */
  idle(): void {
    if (this.power === 'awake') this.power = 'idle';
  }

  /** Sleep: all volatile state cleared; a pending I2C address change takes effect. */
  sleep(): void {
    this.power = 'sleep';
    this.vol.clear();
    this.lastOutput = new Uint8Array(0);
    this.address = this.mem.configuredI2cAddress();
  }

  /** Puts an awake chip to sleep once the watchdog has expired. True if it did. */
  checkWatchdog(): boolean {
    if (this.power !== 'awake' || this.now() - this.wokeAt <= this.watchdogMs) return false;
    this.sleep();
    return true;
  }

  inject(faults: FaultInjection): void {
    if (faults.responseCrcError !== undefined)
      this.faults.responseCrcError = Math.max(0, faults.responseCrcError);
    if (faults.eccFault !== undefined) this.faults.eccFault = Math.max(0, faults.eccFault);
    if (faults.selfTestFailure !== undefined) {
      const f = faults.selfTestFailure;
      this.faults.selfTestMask = f === true ? SELFTEST_ALL : f === false ? 0 : f & SELFTEST_ALL;
    }
    if (faults.watchdogMs !== undefined) this.faults.watchdogMs = faults.watchdogMs;
  }

  /** Runs one command packet (count … CRC, no word address). */
  execute(packet: Uint8Array): ExecuteResult {
    if (this.power !== 'awake' || this.checkWatchdog()) return { response: new Uint8Array(0), execMs: 0 };
    const { result, execMs } = this.run(packet);
    let response = 'status' in result ? encodeStatus(result.status) : encodeResponse(result.data);
    if (this.faults.responseCrcError > 0) {
      this.faults.responseCrcError -= 1;
      response = response.slice();
      const last = response.length - 1;
      response[last] = (response[last] ?? 0) ^ 0xff;
    }
    this.lastOutput = response;
    return { response, execMs };
  }

  private run(packet: Uint8Array): { result: CommandResult; execMs: number } {
    const fast = (code: number) => ({ result: { status: code }, execMs: 0 });
    const count = packet[0];
    // The chip takes `count` bytes; too few received, or a CRC that does not match, is a
    // communication error and comes before any other error (§1.6).
    if (count === undefined || count < 3 || packet.length < count) return fast(Status.CRC_ERROR);
    if (!crcMatches(packet.subarray(0, count))) return fast(Status.CRC_ERROR);
    if (count < PACKET_MIN || count > PACKET_MAX) return fast(Status.PARSE_ERROR);
    const cmd: ChipCommand = {
      opcode: packet[1]!,
      param1: packet[2]!,
      param2: packet[3]! | (packet[4]! << 8),
      data: packet.slice(5, count - 2),
    };
    const handler = HANDLERS.get(cmd.opcode);
    if (handler === undefined) return fast(Status.PARSE_ERROR);
    const execMs = this.budgetMs(cmd.opcode);
    if (this.now() - this.wokeAt + execMs > this.watchdogMs) return fast(Status.WATCHDOG_ABOUT_TO_EXPIRE);
    if (this.selfTestFailed && cmd.opcode !== Op.SELFTEST && cmd.opcode !== Op.INFO) {
      return fast(Status.SELFTEST_ERROR);
    }
    return { result: handler(this.ctx, cmd), execMs };
  }

  private budgetMs(opcode: number): number {
    const budgets = EXEC_BUDGET_MS[opcode];
    if (budgets === undefined || this.scale === 0) return 0;
    const index = { M0: 0, M1: 1, M2: 2 }[this.clockDivider];
    return (budgets[index] ?? 0) * this.scale;
  }

  private get powerOnSelfTest(): boolean {
    return (this.mem.chipOptions & 0x0001) !== 0;
  }
}

function timingScale(timing: ChipTiming): number {
  if (timing === 'zero') return 0;
  if (timing === 'datasheet') return 1;
  return Number.isFinite(timing.scale) && timing.scale > 0 ? timing.scale : 0;
}
