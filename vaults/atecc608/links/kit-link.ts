import { ErrorCodes, isKeyhopError, KeyhopError } from '../../../runtime/errors.js';
import type { AteccLink, CommandStep, TransactOptions } from '../link.js';
import { encodeStatus, WAKE_SELFTEST_FAILED, WAKE_TOKEN } from '../protocol/packet.js';
import {
  CHIP_STATUS_BY_KIT_STATUS,
  deviceRequest,
  ECC_TARGET,
  expectKitOk,
  hex2,
  idleRequest,
  isEcc608Name,
  isOldEcc108Name,
  type KitDeviceLine,
  type KitReply,
  KitStatus,
  parseDeviceLine,
  parseKitReply,
  selectRequest,
  sleepRequest,
  talkRequest,
  wakeRequest,
} from './kit-protocol.js';

/**
 * One line-oriented connection to a kit (USB HID reports or a serial port). Lines are passed
 * without their `\n`.
 */
export interface KitLineChannel {
  writeLine(line: string): Promise<void>;
  /** The next line; rejects with TIMEOUT when none completes in time, DECODE_LIMIT when too long. */
  readLine(timeoutMs: number): Promise<string>;
  close(): Promise<void>;
  /** Drops lines received but not read yet (a late answer to a request that timed out). */
  discardInput?(): void;
}

export interface KitLinkOptions {
  /** `kit-hid` or `kit-serial`. */
  readonly kind: string;
  /** HID path or serial path, for logs. */
  readonly location: string;
  /** `board:device(NN)` index to use; default: the first ECC608 among 00-07 (as `kit_init` scans). */
  readonly index?: number;
  /** 8-bit I2C address to select instead of the one the kit reports (0xC0 = 7-bit 0x60). */
  readonly address8?: number;
  /** How long the kit may take to answer a non-talk request, ms. Default 1000. */
  readonly replyTimeoutMs?: number;
  /** Added to a step's maxExecMs for the talk reply (USB/serial latency, the kit's polling). Default 500. */
  readonly execMarginMs?: number;
}

/** Indexes `kit_init` scans (KIT_MAX_SCAN_COUNT). */
const SCAN_COUNT = 8;

/**
 * An AteccLink over the kit protocol: the kit does the wake pulse, polling and reads on its own bus
 * (§4.4), so a transaction is `E:w()`, one `E:t(…)` per step, then `E:i()` or `E:s()`.
 */
export class KitLink implements AteccLink {
  readonly kind: string;
  readonly location: string;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** A request went unanswered: its reply may still arrive and must not be taken for the next one. */
  private stale = false;

  private constructor(
    private readonly channel: KitLineChannel,
    readonly device: KitDeviceLine,
    readonly address8: number,
    private readonly options: KitLinkOptions,
  ) {
    this.kind = options.kind;
    this.location = `${options.location} (${device.name} ${device.iface || '?'} 0x${hex2(address8)})`;
  }

  /**
   * Finds the device (`board:device(NN)`) and selects it (`E:physical:select(C0)`). Closes the
   * channel when that fails.
   */
  static async open(channel: KitLineChannel, options: KitLinkOptions): Promise<KitLink> {
    try {
      const timeout = options.replyTimeoutMs ?? 1000;
      const device = await findDevice(channel, options, timeout);
      const address8 = options.address8 ?? device.address8 ?? 0xc0;
      await channel.writeLine(selectRequest(address8, ECC_TARGET));
      expectKitOk(parseKitReply(await channel.readLine(timeout)), `physical:select(${hex2(address8)})`);
      return new KitLink(channel, device, address8, options);
    } catch (e) {
      await channel.close().catch(() => undefined);
      throw e;
    }
  }

  transact(steps: readonly CommandStep[], options: TransactOptions = {}): Promise<Uint8Array[]> {
    const run = this.queue.then(() => this.run(steps, options.end ?? 'idle'));
    this.queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    await this.channel.close();
  }

  private async run(steps: readonly CommandStep[], end: 'idle' | 'sleep'): Promise<Uint8Array[]> {
    if (this.closed)
      throw new KeyhopError(ErrorCodes.HARDWARE_UNAVAILABLE, `kit link ${this.location} is closed`);
    if (this.stale) {
      this.channel.discardInput?.();
      this.stale = false;
    }
    const responses: Uint8Array[] = [];
    try {
      await this.wake();
      for (const step of steps) {
        const line = await this.request(talkRequest(step.packet), step.maxExecMs + this.execMargin);
        responses.push(talkResponse(parseKitReply(line)));
      }
      await this.simple(end === 'sleep' ? sleepRequest() : idleRequest(), end);
      return responses;
    } catch (e) {
      // Unanswered: the kit (or the line) is gone or busy; another request would only wait again.
      if (!isKeyhopError(e, ErrorCodes.TIMEOUT)) await this.bestEffortSleep();
      throw e;
    }
  }

  private async wake(): Promise<void> {
    let reply = parseKitReply(await this.request(wakeRequest(), this.replyTimeout));
    if (!isWakeToken(reply) && !isSelfTestToken(reply)) {
      // A chip left awake (an earlier transaction failed half-way) ignores the wake and the kit
      // hands back its output buffer (§1.2): idle it and wake once more, as node-atecc does.
      await this.simple(idleRequest(), 'idle');
      reply = parseKitReply(await this.request(wakeRequest(), this.replyTimeout));
    }
    if (isWakeToken(reply)) return;
    if (isSelfTestToken(reply)) {
      throw new KeyhopError(
        ErrorCodes.HARDWARE_FAULT,
        `ATECC at ${this.location} woke with a failed self-test`,
      );
    }
    const data = expectKitOk(reply, 'wake');
    throw new KeyhopError(
      ErrorCodes.HARDWARE_IO,
      `ATECC at ${this.location} did not answer the wake with the wake token (${data.length} bytes)`,
    );
  }

  private async simple(request: string, what: string): Promise<void> {
    expectKitOk(parseKitReply(await this.request(request, this.replyTimeout)), what);
  }

  private async bestEffortSleep(): Promise<void> {
    try {
      await this.simple(sleepRequest(), 'sleep');
    } catch {
      // The original failure is what the caller needs to see.
    }
  }

  private async request(line: string, timeoutMs: number): Promise<string> {
    await this.channel.writeLine(line);
    try {
      return await this.channel.readLine(timeoutMs);
    } catch (e) {
      if (isKeyhopError(e, ErrorCodes.TIMEOUT)) this.stale = true;
      throw e;
    }
  }

  private get replyTimeout(): number {
    return this.options.replyTimeoutMs ?? 1000;
  }

  private get execMargin(): number {
    return this.options.execMarginMs ?? 500;
  }
}

/**
 * A talk reply's response packet. A kit running Microchip's `ascii_kit_host` answers a chip error
 * with the ATCA_STATUS and no data (`F4()` for status 0x0F): that is turned back into the chip's
 * status packet so the protocol core sees the same thing from every kit.
 */
function talkResponse(reply: KitReply): Uint8Array {
  if (reply.status === KitStatus.SUCCESS) {
    if (reply.data.length === 0)
      throw new KeyhopError(ErrorCodes.HARDWARE_IO, 'kit answered talk with no response');
    return reply.data;
  }
  const chipStatus = CHIP_STATUS_BY_KIT_STATUS.get(reply.status);
  if (chipStatus !== undefined && reply.data.length === 0) return encodeStatus(chipStatus);
  return expectKitOk(reply, 'talk');
}

async function findDevice(
  channel: KitLineChannel,
  options: KitLinkOptions,
  timeout: number,
): Promise<KitDeviceLine> {
  const indexes = options.index === undefined ? [...Array(SCAN_COUNT).keys()] : [options.index];
  const seen: string[] = [];
  let ecc108 = false;
  for (const i of indexes) {
    await channel.writeLine(deviceRequest(i));
    const device = parseDeviceLine(await channel.readLine(timeout));
    if (device === undefined || device.status !== KitStatus.SUCCESS) continue;
    if (isEcc608Name(device.name)) return device;
    seen.push(`${hex2(i)}: ${device.name}`);
    ecc108 ||= isOldEcc108Name(device.name);
  }
  const where = `kit at ${options.location}`;
  const listed = seen.length > 0 ? ` (it reports ${seen.join(', ')})` : '';
  if (ecc108) {
    throw new KeyhopError(
      ErrorCodes.HARDWARE_UNAVAILABLE,
      `${where} has no ECC608${listed}. Old AT88CK kit firmware reports an ATECC608 as ECC108, which ` +
        'cryptoauthlib and keyhop do not accept (only names starting with "ECC6" are; cryptoauthlib ' +
        "issues #139, #167; atecc608.md §7.12). Update the kit firmware with Microchip's current release.",
    );
  }
  const which =
    options.index === undefined ? `indexes 00-${hex2(SCAN_COUNT - 1)}` : `index ${hex2(options.index)}`;
  throw new KeyhopError(ErrorCodes.HARDWARE_UNAVAILABLE, `${where} has no ECC608 at ${which}${listed}`);
}

function isWakeToken(reply: KitReply): boolean {
  return reply.status === KitStatus.SUCCESS && sameBytes(reply.data, WAKE_TOKEN);
}

/** Old kits pass the chip's token with status 00; `ascii_kit_host` answers D7 (SELFTEST_ERROR) with it. */
function isSelfTestToken(reply: KitReply): boolean {
  return (
    (reply.status === KitStatus.SUCCESS || reply.status === KitStatus.STATUS_SELFTEST_ERROR) &&
    sameBytes(reply.data, WAKE_SELFTEST_FAILED)
  );
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
